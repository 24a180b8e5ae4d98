"""DICOM RT Dose export of an absorbed-dose map, its reading back, and dose nodes in MRML.

The dose grid is written as one multi-frame RT Dose object (PS3.3 A.18) in Gy with unsigned
integer pixels and a DoseGridScaling that maps the largest dose to the top of the integer range.
Pixels have 16 bits by default (round-off at most 7.7e-6 of the maximum dose), which every DICOM
tool reads and dciodvfy can check; 32 bits (round-off at most 1.2e-10 of the maximum) remain an
option, but dciodvfy (dicom3tools) stops on 32-bit pixel data, so such a file cannot be checked
with it. When the CT that the dose was computed on is given, the object joins the CT's study and
frame of reference and copies its patient; otherwise new UIDs are made and the patient is
described by the arguments. The RT Plan that the dose references is written by
:mod:`MIBGDosimetryLib.export.rtplan`.
"""

import datetime
import os
import tempfile

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from MIBGDosimetryLib import __version__, compat, mrml
from MIBGDosimetryLib.export.dicomgeometry import ds_string, frame_stack_geometry, volume_from_frames

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"

#: Patient and study attributes copied from the CT so that the dose joins the CT's patient and study.
PATIENT_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                    "PatientAge", "PatientSize", "PatientWeight", "PatientIdentityRemoved",
                    "DeidentificationMethod", "DeidentificationMethodCodeSequence")
STUDY_KEYWORDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                  "AccessionNumber", "StudyDescription")

#: Dose Summation Type for the dose of one administration. PS3.3 C.8.8.3 makes every summation type
#: require a reference to an RT Plan (or, for RECORD, to a treatment record): without
#: ``referenced_plan_uid`` the object lacks that Type 1C reference, which dciodvfy reports as an
#: error. :func:`MIBGDosimetryLib.export.rtplan.write_rt_dose_with_plan` writes the plan as well.
DEFAULT_DOSE_SUMMATION_TYPE = "PLAN"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"

UINT32_MAX = 2 ** 32 - 1
UINT16_MAX = 2 ** 16 - 1


def dose_grid_scaling(max_dose_Gy, integer_max):
    """The DoseGridScaling (Gy per integer step) written for a dose maximum, as its DS string.

    The scaling is rounded up to a representable decimal string so that the maximum dose fits.
    """
    if max_dose_Gy <= 0:
        return "1"
    scaling = max_dose_Gy / integer_max
    text = ds_string(scaling)
    while float(text) * integer_max < max_dose_Gy:
        scaling *= 1.0 + 1e-9
        text = ds_string(scaling)
    return text


def dose_to_integers(dose_Gy, bits=16):
    """Return ``(integers, scaling_text)``: pixel values and the DoseGridScaling for a dose array.

    Dose below zero of more than 1e-6 of the maximum is an error (a dose map has no negative
    dose); smaller negative values are round-off of the convolution and are written as zero.
    """
    if bits not in (16, 32):
        raise ValueError(f"RT Dose pixels are written with 16 or 32 bits, not {bits}.")
    dose = np.asarray(dose_Gy, dtype=np.float64)
    if not np.all(np.isfinite(dose)):
        raise ValueError("The dose map holds NaN or infinite values; it cannot be exported.")
    max_dose = float(dose.max()) if dose.size else 0.0
    if dose.size and dose.min() < -1e-6 * max(max_dose, 0.0):
        raise ValueError(f"The dose map holds negative dose down to {dose.min():.3g} Gy; check the dose "
                         "calculation before exporting it.")
    integer_max = UINT32_MAX if bits == 32 else UINT16_MAX
    scaling_text = dose_grid_scaling(max(max_dose, 0.0), integer_max)
    integers = np.clip(np.rint(np.clip(dose, 0.0, None) / float(scaling_text)), 0, integer_max)
    return integers.astype(np.uint32 if bits == 32 else np.uint16), scaling_text


def build_rt_dose(dose, reference_ct=None, patient=None, dose_summation_type=DEFAULT_DOSE_SUMMATION_TYPE,
                  series_description="131I-mIBG absorbed dose", dose_comment=None, bits=16,
                  content_datetime=None, referenced_plan_uid=None):
    """Build an RT Dose dataset (pydicom) of a dose :class:`ImageVolume` in Gy.

    reference_ct: a pydicom dataset of the CT the dose was computed on (one slice suffices); its
        patient, study and FrameOfReferenceUID are copied. None makes new study and frame UIDs.
    patient: used when no CT is given: dict with any of name, id, birth_date (YYYYMMDD), sex
        (M/F/O), age (e.g. "006Y"), weight_kg, size_m.
    referenced_plan_uid: SOPInstanceUID of the RT Plan that describes the administration, written
        as the Referenced RT Plan Sequence; without it the object misses that Type 1C reference.
    bits: 16 (default; round-off at most half a step, 7.7e-6 of the maximum dose) or 32 (at most
        1.2e-10 of the maximum; dciodvfy cannot check 32-bit pixel data).
    """
    if dose.units and dose.units not in ("Gy", "GY"):
        raise ValueError(f"The dose volume is in '{dose.units}', but RT Dose export needs Gy.")
    array, orientation, positions, spacing = frame_stack_geometry(dose)
    integers, scaling_text = dose_to_integers(array, bits)
    now = content_datetime or datetime.datetime.now()

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RT_DOSE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    _set_patient_and_study(ds, reference_ct, patient or {}, now)
    ds.Modality = "RTDOSE"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 901
    ds.SeriesDescription = series_description
    ds.OperatorsName = ""
    ds.Manufacturer = "SlicerMIBGDosimetry"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")

    ds.PixelSpacing = [ds_string(spacing[1]), ds_string(spacing[0])]
    ds.ImageOrientationPatient = [ds_string(round(v, 10)) for v in orientation]
    ds.ImagePositionPatient = [ds_string(v) for v in positions[0]]
    ds.SliceThickness = ds_string(spacing[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(integers.shape[1]), int(integers.shape[2])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = int(integers.shape[0])
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.GridFrameOffsetVector = [ds_string(k * spacing[2]) for k in range(integers.shape[0])]
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = dose_summation_type
    ds.DoseGridScaling = scaling_text
    if referenced_plan_uid:
        plan = Dataset()
        plan.ReferencedSOPClassUID = RT_PLAN_STORAGE
        plan.ReferencedSOPInstanceUID = referenced_plan_uid
        ds.ReferencedRTPlanSequence = [plan]
    if dose_comment:
        ds.DoseComment = dose_comment[:10240]
    ds.PixelData = np.ascontiguousarray(integers).tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_rt_dose(dose, path, reference_ct=None, patient=None, **options):
    """Write a dose :class:`ImageVolume` (Gy) as a DICOM RT Dose file, completely or not at all.

    See :func:`build_rt_dose` for ``reference_ct``, ``patient`` and the options. Returns the path.
    """
    ds = build_rt_dose(dose, reference_ct=reference_ct, patient=patient, **options)
    save_dataset(ds, path)
    return os.path.abspath(path)


def save_dataset(ds, path):
    """Write a pydicom dataset with its file meta to ``path`` through a temporary file and a rename."""
    return save_datasets([(ds, path)])[0]


def save_datasets(datasets_and_paths):
    """Write several pydicom datasets, all of them or none: each goes to a temporary file beside its
    target, and only when every one is written are they renamed. Returns the absolute paths."""
    targets = [os.path.abspath(path) for _, path in datasets_and_paths]
    if len(set(targets)) != len(targets):
        raise ValueError("Two of the DICOM objects would be written to the same file; give each its own name.")
    partials, placed = [], []
    try:
        for (ds, _), target in zip(datasets_and_paths, targets):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            handle, partial = tempfile.mkstemp(prefix=".partial-", suffix=".dcm", dir=os.path.dirname(target))
            os.close(handle)
            partials.append(partial)
            compat.save_dicom_file(ds, partial)
        for partial, target in zip(partials, targets):
            os.replace(partial, target)
            placed.append(target)
    except BaseException:
        for path in partials[len(placed):] + placed:
            if os.path.exists(path):
                os.remove(path)
        raise
    return targets


def read_rt_dose(path):
    """Read an RT Dose file into an :class:`ImageVolume` in Gy (DoseGridScaling applied)."""
    ds = pydicom.dcmread(path)
    if ds.SOPClassUID != RT_DOSE_STORAGE:
        raise ValueError(f"'{path}' is not a DICOM RT Dose object.")
    if str(ds.DoseUnits).upper() != "GY":
        raise ValueError(f"'{path}' holds dose in '{ds.DoseUnits}', not Gy.")
    frames = ds.pixel_array.reshape(int(getattr(ds, "NumberOfFrames", 1)), ds.Rows, ds.Columns)
    dose = frames.astype(np.float64) * float(ds.DoseGridScaling)
    offsets = np.asarray([float(v) for v in ds.GridFrameOffsetVector], dtype=float)
    if offsets[0] != 0.0:
        raise ValueError(f"'{path}' gives absolute frame offsets; only relative offsets (first 0) are read.")
    metadata = {"FrameOfReferenceUID": str(ds.get("FrameOfReferenceUID", "")),
                "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
                "DoseSummationType": str(ds.get("DoseSummationType", ""))}
    return volume_from_frames(dose, [float(v) for v in ds.ImageOrientationPatient],
                              [float(v) for v in ds.ImagePositionPatient],
                              [float(v) for v in ds.PixelSpacing], offsets, units="Gy", metadata=metadata)


def _set_patient_and_study(ds, reference_ct, patient, now):
    if reference_ct is not None:
        if "FrameOfReferenceUID" not in reference_ct or "StudyInstanceUID" not in reference_ct:
            raise ValueError("The reference CT has no FrameOfReferenceUID or StudyInstanceUID; give a CT "
                             "image of the study, or no CT to start a new study.")
        for keyword in PATIENT_KEYWORDS + STUDY_KEYWORDS:
            if keyword in reference_ct:
                ds[keyword] = reference_ct[keyword]
        ds.FrameOfReferenceUID = reference_ct.FrameOfReferenceUID
        ds.PositionReferenceIndicator = reference_ct.get("PositionReferenceIndicator", "")
    else:
        ds.PatientName = patient.get("name", "")
        ds.PatientID = patient.get("id", "")
        ds.PatientBirthDate = patient.get("birth_date", "")
        ds.PatientSex = patient.get("sex", "")
        if patient.get("age"):
            ds.PatientAge = patient["age"]
        if patient.get("weight_kg") is not None:
            ds.PatientWeight = ds_string(patient["weight_kg"])
        if patient.get("size_m") is not None:
            ds.PatientSize = ds_string(patient["size_m"])
        ds.StudyInstanceUID = generate_uid()
        ds.StudyDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.FrameOfReferenceUID = generate_uid()
        ds.PositionReferenceIndicator = ""
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                    "StudyID", "AccessionNumber", "StudyDate", "StudyTime"):
        if keyword not in ds:
            setattr(ds, keyword, "")


#: Colour tables a dose volume can be shown with.
DOSE_COLOURS = ("Dose", "Rainbow", "Iron")


def add_dose_node(context, dose, name="Absorbed dose", colour="Dose"):
    """Add a dose :class:`ImageVolume` (Gy) to the scene as a dose volume node.

    The node carries the attribute :data:`mrml.DOSE_VOLUME_ATTRIBUTE` = "1" (so SlicerRT's DVH, isodose
    and export tools treat it as dose), a colour table and a window from 0 Gy to the maximum dose. ``"Dose"``
    is the dose colour table of :mod:`MIBGDosimetryLib.dose_display` (0 Gy transparent, lower threshold);
    ``"Rainbow"`` and ``"Iron"`` are Slicer's tables.
    """
    if colour not in DOSE_COLOURS:
        raise ValueError(f"Dose colour tables are {', '.join(DOSE_COLOURS)}, not '{colour}'.")
    node = dose.to_node(context.scene, name, attributes={mrml.DOSE_VOLUME_ATTRIBUTE: "1"})
    _show_as_dose(context.scene, node, float(np.max(dose.array)) if dose.array.size else 0.0, colour)
    return node


def load_rt_dose_into_scene(context, path, name=None, colour="Dose"):
    """Load an RT Dose file into the scene with Slicer's volume reader and return the dose node in Gy.

    Slicer's archetype reader (GDCM) reads the multi-frame geometry but returns the raw integers:
    the DoseGridScaling is applied here, and the node is tagged and shown as dose.
    """
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if ds.SOPClassUID != RT_DOSE_STORAGE:
        raise ValueError(f"'{path}' is not a DICOM RT Dose object.")
    import vtk

    files = vtk.vtkStringArray()
    files.InsertNextValue(path)
    name = name or str(ds.get("SeriesDescription", "") or "RT Dose")
    node = context.volumes_logic.AddArchetypeVolume(path, name, 0, files)
    if node is None:
        raise ValueError(f"Slicer could not read the RT Dose file '{path}'.")
    raw = mrml.array_from_volume(context.scene, node)
    dose_Gy = raw.astype(np.float64) * float(ds.DoseGridScaling)
    with mrml.util_scene(context.scene):
        import slicer

        slicer.util.updateVolumeFromArray(node, dose_Gy)
    node.SetAttribute(mrml.DOSE_VOLUME_ATTRIBUTE, "1")
    _show_as_dose(context.scene, node, float(dose_Gy.max()) if dose_Gy.size else 0.0, colour)
    return node


def _show_as_dose(scene, node, max_dose_Gy, colour):
    import slicer

    if colour == "Dose":
        from MIBGDosimetryLib.dose_display import show_as_dose

        show_as_dose(scene, node, max_dose_Gy)
        return

    colour_id = f"vtkMRMLColorTableNode{colour}"
    if scene.GetNodeByID(colour_id) is None:
        # A scene built outside the application has no default colour tables; the colour logic adds them.
        colour_logic = slicer.vtkMRMLColorLogic()
        colour_logic.SetMRMLScene(scene)
        colour_logic.SetMRMLScene(None)
    display = node.GetDisplayNode()
    if display is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(colour_id)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, max(max_dose_Gy, 1e-12))
