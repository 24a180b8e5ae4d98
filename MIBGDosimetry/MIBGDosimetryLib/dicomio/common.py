"""Patient, study and series attributes shared by every DICOM object the library writes, and
atomic writing of files and folders."""

import contextlib
import dataclasses
import datetime
import os
import shutil
import tempfile

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from MIBGDosimetryLib import __version__, compat
from MIBGDosimetryLib.volume import LPS_TO_RAS

MANUFACTURER = "MIBGDosimetry digital phantom"


@dataclasses.dataclass
class StudyInfo:
    """Patient and study identity of a set of DICOM objects.

    Objects that share a ``StudyInfo`` share StudyInstanceUID and FrameOfReferenceUID (a hybrid
    SPECT/CT visit); each visit of a patient gets its own.
    """

    patient_name: str
    patient_id: str
    study_datetime: datetime.datetime
    patient_birth_date: str = ""
    patient_sex: str = "O"
    patient_weight_kg: float = None
    patient_size_m: float = None
    study_description: str = ""
    study_id: str = "1"
    accession_number: str = ""
    study_instance_uid: str = dataclasses.field(default_factory=generate_uid)
    frame_of_reference_uid: str = dataclasses.field(default_factory=generate_uid)


def dicom_date(value):
    return value.strftime("%Y%m%d")


def dicom_time(value):
    return value.strftime("%H%M%S.%f")


def new_dataset(sop_class_uid, study, modality, series_uid, series_number, instance_number,
                content_datetime, series_description=""):
    """A dataset with the SOP Common, Patient, General Study, General Series, Frame of Reference
    and General Equipment attributes filled in."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate = dicom_date(content_datetime)
    ds.InstanceCreationTime = dicom_time(content_datetime)

    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    if study.patient_weight_kg is not None:
        ds.PatientWeight = f"{study.patient_weight_kg:.1f}"
    if study.patient_size_m is not None:
        ds.PatientSize = f"{study.patient_size_m:.2f}"

    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = dicom_date(study.study_datetime)
    ds.StudyTime = dicom_time(study.study_datetime)
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description

    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate = dicom_date(content_datetime)
    ds.SeriesTime = dicom_time(content_datetime)
    ds.SeriesDescription = series_description
    # An unpaired body part: General Series then asks for no Laterality.
    ds.BodyPartExamined = "CHESTABDPELVIS"
    ds.InstanceNumber = int(instance_number)
    ds.ContentDate = dicom_date(content_datetime)
    ds.ContentTime = dicom_time(content_datetime)

    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""

    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = __version__
    return ds


def lps_orientation(volume):
    """ImageOrientationPatient (row then column direction cosines, LPS) of a volume's slices,
    and the LPS unit normal along which its slices are stacked (the k axis)."""
    directions_lps = LPS_TO_RAS @ np.asarray(volume.directions, dtype=float)
    if not np.allclose(directions_lps.T @ directions_lps, np.eye(3), atol=1e-6):
        raise ValueError("The volume's direction matrix is not orthonormal; DICOM images need orthogonal axes.")
    return directions_lps[:, 0], directions_lps[:, 1], directions_lps[:, 2]


def slice_positions_lps(volume):
    """ImagePositionPatient (LPS, mm) of the first voxel of every slice k."""
    origin_lps = LPS_TO_RAS @ np.asarray(volume.origin_ras_mm, dtype=float)
    normal = lps_orientation(volume)[2]
    k = np.arange(volume.array.shape[0])
    return origin_lps[np.newaxis, :] + (k * volume.spacing_mm[2])[:, np.newaxis] * normal[np.newaxis, :]


def ds_decimal(value, digits=6):
    """A value for a DS attribute: at most 16 characters."""
    text = f"{float(value):.{digits}g}"
    while len(text) > 16 and digits > 1:
        digits -= 1
        text = f"{float(value):.{digits}g}"
    return text


def write_dataset(ds, path):
    """Write ``ds`` to ``path`` through a temporary file beside it, so the file is complete or absent."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".dcm", dir=folder)
    os.close(handle)
    try:
        compat.save_dicom_file(ds, temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temporary folder beside ``path`` that becomes ``path`` when the block succeeds.

    ``path`` must not exist or be an empty folder; on failure nothing is left behind.
    """
    path = os.path.abspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path) or os.listdir(path):
            raise FileExistsError(f"The output folder {path} already exists and is not empty; "
                                  f"choose a new folder or remove it.")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield temporary
        if os.path.isdir(path):
            os.rmdir(path)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
