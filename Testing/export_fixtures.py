"""DICOM written by the export tests: a small CT series and a SPECT (NM) image of one patient,
with identifying data in the places where real scanners put it."""

import datetime
import os

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from MIBGDosimetryLib import compat

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"

#: Identifying values a de-identified export must not keep.
PATIENT = {"name": "Testperson^Johanna^Maria", "id": "PAT0012345", "birth_date": "20180415",
           "institution": "Sankt Beispiel Kinderspital", "referring": "Referrer^Robert",
           "operator": "Operator^Olga", "serial": "SN-998877", "accession": "ACC778899",
           "address": "Musterstrasse 12, 4051 Basel", "station": "NMSTATION7"}
ADMINISTRATION = datetime.datetime(2025, 3, 10, 9, 30, 0)


def _common(ds, study_uid, frame_uid, series_uid, sop_class, modality, when):
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Modality = modality
    ds.PatientName = PATIENT["name"]
    ds.PatientID = PATIENT["id"]
    ds.PatientBirthDate = PATIENT["birth_date"]
    ds.PatientSex = "F"
    ds.PatientAge = "006Y"
    ds.PatientWeight = "21.5"
    ds.PatientSize = "1.18"
    ds.PatientAddress = PATIENT["address"]
    ds.OtherPatientIDs = PATIENT["id"] + "-B"
    ds.InstitutionName = PATIENT["institution"]
    ds.InstitutionAddress = PATIENT["address"]
    ds.ReferringPhysicianName = PATIENT["referring"]
    ds.OperatorsName = PATIENT["operator"]
    ds.PerformingPhysicianName = PATIENT["referring"]
    ds.StationName = PATIENT["station"]
    ds.DeviceSerialNumber = PATIENT["serial"]
    ds.AccessionNumber = PATIENT["accession"]
    ds.StudyID = "S1"
    ds.StudyDate = ADMINISTRATION.strftime("%Y%m%d")
    ds.StudyTime = ADMINISTRATION.strftime("%H%M%S")
    ds.SeriesDate = when.strftime("%Y%m%d")
    ds.SeriesTime = when.strftime("%H%M%S")
    ds.AcquisitionDate = when.strftime("%Y%m%d")
    ds.AcquisitionTime = when.strftime("%H%M%S")
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.Manufacturer = "TestVendor"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageComments = f"Patient {PATIENT['name']} scanned at {PATIENT['institution']}"
    ds.SeriesDescription = "SPECT/CT tp"
    ds.BurnedInAnnotation = "NO"
    ds.Laterality = ""
    ds.PatientPosition = "HFS"
    # A private block as a vendor would write one, holding the patient ID again.
    block = ds.private_block(0x0029, "TESTVENDOR PRIVATE", create=True)
    block.add_new(0x10, "LO", PATIENT["id"])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def ct_geometry(shape=(6, 16, 20), spacing_mm=(2.0, 2.0, 3.0), corner_lps=(-20.0, -16.0, -9.0)):
    """Shape [k, j, i], spacing (i, j, k) and the LPS position of voxel (0, 0, 0) of the test CT."""
    return shape, spacing_mm, corner_lps


def write_ct_series(folder, hours=24.0, study_uid=None, frame_uid=None, seed=0, geometry=None):
    """Write an axial CT series (one file per slice, HU) and return (paths, hu_array [k, j, i], uids)."""
    shape, spacing, corner = geometry or ct_geometry()
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    kk, jj, ii = np.indices(shape)
    hu = (-1000 + 1000 * (((ii - shape[2] / 2) / 8.0) ** 2 + ((jj - shape[1] / 2) / 6.0) ** 2 < 1)
          + 40 * np.sin(kk + ii / 3.0) + rng.integers(-5, 6, size=shape)).astype(np.int16)
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    series_uid = generate_uid()
    when = ADMINISTRATION + datetime.timedelta(hours=hours)
    paths = []
    for k in range(shape[0]):
        ds = Dataset()
        _common(ds, study_uid, frame_uid, series_uid, CT_IMAGE_STORAGE, "CT", when)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [corner[0], corner[1], corner[2] + k * spacing[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = shape[1], shape[2]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.AcquisitionNumber = 1
        ds.CTDIvol = 1.25 + 0.01 * k
        ds.PixelData = hu[k].tobytes()
        path = os.path.join(folder, f"ct_{k:03d}.dcm")
        compat.save_dicom_file(ds, path)
        paths.append(path)
    return paths, hu, {"study": study_uid, "frame": frame_uid, "series": series_uid}


def write_nm_spect(path, hours, study_uid, frame_uid, activity_MBq=5000.0, shape=(4, 8, 8), spacing_mm=4.0):
    """Write a reconstructed SPECT (NM Image Storage, multi-frame) with radiopharmaceutical timing."""
    when = ADMINISTRATION + datetime.timedelta(hours=hours)
    ds = Dataset()
    _common(ds, study_uid, frame_uid, generate_uid(), NM_IMAGE_STORAGE, "NM", when)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    rp = Dataset()
    rp.Radiopharmaceutical = "131I-mIBG"
    rp.RadiopharmaceuticalStartDateTime = ADMINISTRATION.strftime("%Y%m%d%H%M%S")
    rp.RadiopharmaceuticalStartTime = ADMINISTRATION.strftime("%H%M%S")
    rp.RadionuclideTotalDose = activity_MBq  # MBq in NM objects
    rp.RadionuclideHalfLife = 693377.0
    code = Dataset()
    code.CodeValue = "C-B1318"
    code.CodingSchemeDesignator = "SRT"
    code.CodeMeaning = "^131^Iodine"
    rp.RadionuclideCodeSequence = Sequence([code])
    ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
    detector = Dataset()
    detector.ImagePositionPatient = [-16.0, -16.0, -8.0]
    detector.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    detector.CollimatorGridName = "HEGP"
    detector.CollimatorType = "PARA"
    ds.DetectorInformationSequence = Sequence([detector])
    ds.NumberOfDetectors = 1
    rotation = Dataset()
    rotation.NumberOfFramesInRotation = 60
    rotation.ActualFrameDuration = 30000
    rotation.StartAngle = 0
    rotation.AngularStep = 6
    rotation.RotationDirection = "CW"
    rotation.ScanArc = 360
    ds.RotationInformationSequence = Sequence([rotation])
    ds.NumberOfRotations = 1
    window = Dataset()
    window_range = Dataset()
    window_range.EnergyWindowLowerLimit = 327.6
    window_range.EnergyWindowUpperLimit = 400.4
    window.EnergyWindowRangeSequence = Sequence([window_range])
    ds.EnergyWindowInformationSequence = Sequence([window])
    ds.NumberOfEnergyWindows = 1
    ds.FrameIncrementPointer = [pydicom.tag.Tag("SliceVector")]
    ds.SliceVector = list(range(1, shape[0] + 1))
    ds.NumberOfSlices = shape[0]
    ds.NumberOfFrames = shape[0]
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.SpacingBetweenSlices = spacing_mm
    ds.SliceThickness = spacing_mm
    ds.ImagePositionPatient = [-16.0, -16.0, -8.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = shape[1], shape[2]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.Units = "COUNTS"
    ds.CountsAccumulated = 1000000
    del ds.PatientPosition
    ds.PatientOrientationCodeSequence = Sequence()
    ds.PatientGantryRelationshipCodeSequence = Sequence()
    ds.PixelData = (np.arange(np.prod(shape)) % 97).astype(np.uint16).tobytes()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    compat.save_dicom_file(ds, path)
    return path


def write_study(folder, hours=(4.0, 24.0, 72.0)):
    """A patient study: tp<N>/ct/*.dcm and tp<N>/spect.dcm per time point, one study and frame per time point."""
    study_uid = generate_uid()
    uids = []
    for n, h in enumerate(hours, start=1):
        frame_uid = generate_uid()
        _, _, ct_uids = write_ct_series(os.path.join(folder, f"tp{n}", "ct"), hours=h, study_uid=study_uid,
                                        frame_uid=frame_uid, seed=n)
        write_nm_spect(os.path.join(folder, f"tp{n}", "spect.dcm"), h, study_uid, frame_uid)
        uids.append(ct_uids)
    return uids


def dciodvfy_errors(path):
    """The error lines dciodvfy reports for a file (warnings are left out)."""
    import subprocess

    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def dciodvfy_warnings(path):
    import subprocess

    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Warning")]


_PHANTOMS = {}


def phantom_study(hours):
    """A digital patient phantom (``mibgdose phantom patient``) scanned at ``hours``; built once per run.

    A coarse grid keeps it quick; the kinetics and the DICOM are those of the full-size phantom.
    """
    import atexit
    import shutil
    import tempfile

    from MIBGDosimetryLib import cli

    key = tuple(float(h) for h in hours)
    if key not in _PHANTOMS:
        folder = tempfile.mkdtemp(prefix="mibg-phantom-")
        atexit.register(shutil.rmtree, folder, True)
        study = os.path.join(folder, "study")
        code = cli.main(["phantom", "patient", "--out", study, "--matrix", "48", "--slices", "66",
                         "--voxel-mm", "6", "--fine-factor", "1", "--timepoints-h", ",".join(f"{h:g}" for h in key)])
        if code != 0:
            raise RuntimeError(f"The patient phantom could not be built (exit {code}).")
        _PHANTOMS[key] = study
    return _PHANTOMS[key]
