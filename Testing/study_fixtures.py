"""Small sequential SPECT/CT studies written with pydicom for the study-loader tests.

Each writer takes the stored arrays and geometry explicitly, so a test can compare what the loader
returns with exactly what was written. Keyword ``omit`` leaves named attributes out (top level,
RadiopharmaceuticalInformationSequence, RotationInformationSequence or DetectorInformationSequence
items), ``replace`` changes them, to build the bad inputs the loader must explain.
"""

import dataclasses
import datetime
import math
import os

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from MIBGDosimetryLib import compat

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
I131_HALF_LIFE_S = 8.0252 * 86400.0


@dataclasses.dataclass
class Visit:
    """Patient and DICOM study of one imaging visit (a SPECT and its CT share both UIDs)."""

    acquisition: datetime.datetime
    patient_id: str = "MIBG-TEST-01"
    study_uid: str = dataclasses.field(default_factory=generate_uid)
    frame_of_reference_uid: str = dataclasses.field(default_factory=generate_uid)


def _fmt(value):
    return f"{float(value):.10g}"


def _base(sop_class, visit, modality, series_uid, instance, description):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Phantom"
    ds.PatientID = visit.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = visit.study_uid
    ds.StudyDate = visit.acquisition.strftime("%Y%m%d")
    ds.StudyTime = visit.acquisition.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1 if modality == "CT" else 2
    ds.SeriesDescription = description
    # An unpaired body part, so that General Series asks for no Laterality.
    ds.BodyPartExamined = "CHESTABDPELVIS"
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = visit.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "Test Manufacturer"
    ds.ContentDate = visit.acquisition.strftime("%Y%m%d")
    ds.ContentTime = visit.acquisition.strftime("%H%M%S")
    return ds


def _pixels(ds, stored):
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()


def _edit(ds, omit=(), replace=None):
    for keyword in omit:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword, value in (replace or {}).items():
        setattr(ds, keyword, value)


def write_ct(folder, visit, stored, pixel_spacing_rc, positions_lps, orientation=(1, 0, 0, 0, 1, 0), slope=1.0,
             intercept=-1024.0, description="CT", series_uid=None, omit_per_slice=None, frame_of_reference_per_slice=None):
    """One CT Image file per slice; ``stored`` is [k, j, i] uint16/int16, slice k at ``positions_lps[k]``.

    Files are named in reverse slice order so that the loader cannot rely on file names.
    """
    os.makedirs(folder, exist_ok=True)
    series_uid = series_uid or generate_uid()
    thickness = np.linalg.norm(np.subtract(positions_lps[1], positions_lps[0])) if len(positions_lps) > 1 else 1.0
    paths = []
    for k in range(stored.shape[0]):
        ds = _base(CT_STORAGE, visit, "CT", series_uid, k + 1, description)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.AcquisitionDate = visit.acquisition.strftime("%Y%m%d")
        ds.AcquisitionTime = visit.acquisition.strftime("%H%M%S")
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [_fmt(v) for v in positions_lps[k]]
        ds.ImageOrientationPatient = [_fmt(v) for v in orientation]
        ds.SliceThickness = _fmt(thickness)
        ds.PixelSpacing = [_fmt(v) for v in pixel_spacing_rc]
        ds.RescaleIntercept = _fmt(intercept)
        ds.RescaleSlope = _fmt(slope)
        ds.RescaleType = "HU"
        if frame_of_reference_per_slice and k in frame_of_reference_per_slice:
            ds.FrameOfReferenceUID = frame_of_reference_per_slice[k]
        _pixels(ds, stored[k])
        _edit(ds, (omit_per_slice or {}).get(k, ()))
        path = os.path.join(folder, f"slice_{stored.shape[0] - k:03d}.dcm")
        compat.save_dicom_file(ds, path)
        paths.append(path)
    return paths


def write_nm_tomo(path, visit, stored, pixel_spacing_rc, slice_spacing_mm, position_lps, orientation=(1, 0, 0, 0, 1, 0),
                  administration=None, activity_Bq=3.7e9, frames_in_rotation=(60,), frame_duration_ms=(20000,),
                  counts_accumulated=12345678, rescale_slope=None, windows=(("PEAK", 327.6, 400.4),), description="SPECT",
                  omit=(), omit_radiopharmaceutical=(), omit_rotation=(), omit_detector=(), replace=None,
                  replace_radiopharmaceutical=None, replace_detector=None,
                  radionuclide_code=("1368003", "SCT", "^131^Iodine")):
    """An NM Image file of reconstructed tomography, frames along the normal of ``orientation``."""
    ds = _base(NM_STORAGE, visit, "NM", generate_uid(), 1, description)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.ManufacturerModelName = "Test Camera"
    ds.DeviceSerialNumber = "42"
    ds.StationName = "NM1"
    ds.AcquisitionDate = visit.acquisition.strftime("%Y%m%d")
    ds.AcquisitionTime = visit.acquisition.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = visit.acquisition.strftime("%Y%m%d%H%M%S.%f")
    ds.PatientOrientationCodeSequence = Sequence([])
    ds.PatientGantryRelationshipCodeSequence = Sequence([])
    ds.NumberOfFrames = stored.shape[0]
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x0054, 0x0080)
    ds.SliceVector = list(range(1, stored.shape[0] + 1))
    ds.NumberOfSlices = stored.shape[0]
    ds.PixelSpacing = [_fmt(v) for v in pixel_spacing_rc]
    ds.SliceThickness = _fmt(abs(slice_spacing_mm))
    ds.SpacingBetweenSlices = _fmt(slice_spacing_mm)
    ds.Units = "CNTS"
    if rescale_slope is not None:
        ds.RescaleSlope = _fmt(rescale_slope)
        ds.RescaleIntercept = "0"
    if counts_accumulated is not None:
        ds.CountsAccumulated = int(counts_accumulated)

    radiopharmaceutical = Dataset()
    radiopharmaceutical.Radiopharmaceutical = "Iobenguane I-131"
    if administration is not None:
        radiopharmaceutical.RadiopharmaceuticalStartDateTime = administration.strftime("%Y%m%d%H%M%S.%f")
        radiopharmaceutical.RadiopharmaceuticalStartTime = administration.strftime("%H%M%S")
    radiopharmaceutical.RadionuclideTotalDose = _fmt(activity_Bq / 1e6)  # MBq in NM objects
    radiopharmaceutical.RadionuclideHalfLife = _fmt(I131_HALF_LIFE_S)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = radionuclide_code
    radiopharmaceutical.RadionuclideCodeSequence = Sequence([code])
    _edit(radiopharmaceutical, omit_radiopharmaceutical, replace_radiopharmaceutical)
    ds.RadiopharmaceuticalInformationSequence = Sequence([radiopharmaceutical])

    rotations = []
    for frames, duration in zip(frames_in_rotation, frame_duration_ms):
        item = Dataset()
        item.StartAngle = "0"
        item.AngularStep = _fmt(360.0 / frames)
        item.RotationDirection = "CW"
        item.ScanArc = "360"
        item.ActualFrameDuration = int(duration)
        item.NumberOfFramesInRotation = int(frames)
        item.TableTraverse = "0"
        _edit(item, omit_rotation)
        rotations.append(item)
    ds.RotationInformationSequence = Sequence(rotations)
    ds.NumberOfRotations = len(rotations)

    detector = Dataset()
    detector.CollimatorGridName = "HEGP"
    detector.CollimatorType = "PARA"
    detector.ImagePositionPatient = [_fmt(v) for v in position_lps]
    detector.ImageOrientationPatient = [_fmt(v) for v in orientation]
    _edit(detector, omit_detector, replace_detector)
    ds.DetectorInformationSequence = Sequence([detector])
    ds.NumberOfDetectors = 1

    energy_windows = []
    for name, lower, upper in windows:
        energy_range = Dataset()
        energy_range.EnergyWindowLowerLimit = _fmt(lower)
        energy_range.EnergyWindowUpperLimit = _fmt(upper)
        item = Dataset()
        item.EnergyWindowRangeSequence = Sequence([energy_range])
        item.EnergyWindowName = name
        energy_windows.append(item)
    ds.EnergyWindowInformationSequence = Sequence(energy_windows)
    ds.NumberOfEnergyWindows = len(energy_windows)
    _pixels(ds, stored)
    _edit(ds, omit, replace)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    compat.save_dicom_file(ds, path)
    return path


@dataclasses.dataclass
class WrittenTimePoint:
    """What was written for one time point: the stored arrays, geometry and times."""

    hours: float
    ct_stored: np.ndarray
    ct_hu: np.ndarray
    ct_spacing_ijk: tuple
    ct_origin_lps: np.ndarray
    spect_stored: np.ndarray
    spect_spacing_ijk: tuple
    spect_origin_lps: np.ndarray
    duration_s: float
    counts_accumulated: int
    spect_path: str
    ct_paths: list
    visit: Visit


def write_study(root, hours=(4.0, 24.0, 72.0), administration=datetime.datetime(2026, 3, 2, 10, 30),
                activity_Bq=3.7e9, seed=0, layout="tp{n}", orientation=(1, 0, 0, 0, 1, 0), spect_kwargs=None):
    """A small study: per time point a 6-slice CT (8 x 10) and a 5-frame SPECT (6 x 7) of random values.

    ``spect_kwargs`` maps a time-point index to extra keywords for :func:`write_nm_tomo`.
    """
    rng = np.random.default_rng(seed)
    written = []
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, column)
    for index, h in enumerate(hours):
        visit = Visit(administration + datetime.timedelta(hours=h))
        folder = os.path.join(root, layout.format(n=index + 1))
        ct_stored = rng.integers(0, 2500, size=(6, 8, 10)).astype(np.uint16)
        ct_spacing = (0.9765625, 1.25, 2.5)
        ct_origin = np.array([-40.0 + index, -30.0, -100.0 + 2 * index])
        positions = [ct_origin + k * ct_spacing[2] * normal for k in range(6)]
        ct_paths = write_ct(os.path.join(folder, "ct"), visit, ct_stored, (ct_spacing[1], ct_spacing[0]), positions,
                            orientation)
        spect_stored = rng.integers(0, 4000, size=(5, 6, 7)).astype(np.uint16)
        spect_spacing = (4.42, 4.8, 3.9)
        spect_origin = np.array([-20.0, -25.0 + index, -95.0])
        counts = int(spect_stored.sum()) * 3
        kwargs = dict(administration=administration, activity_Bq=activity_Bq, counts_accumulated=counts)
        kwargs.update((spect_kwargs or {}).get(index, {}))
        spect_path = write_nm_tomo(os.path.join(folder, "spect.dcm"), visit, spect_stored,
                                   (spect_spacing[1], spect_spacing[0]), spect_spacing[2], spect_origin, orientation,
                                   **kwargs)
        duration = sum(f * d for f, d in zip(kwargs.get("frames_in_rotation", (60,)),
                                             kwargs.get("frame_duration_ms", (20000,)))) / 1000.0
        written.append(WrittenTimePoint(h, ct_stored, ct_stored.astype(np.float64) - 1024.0, ct_spacing, ct_origin,
                                        spect_stored, spect_spacing, spect_origin, duration,
                                        kwargs["counts_accumulated"], spect_path, ct_paths, visit))
    return written


def write_nm_projections(path, visit, stored_by_window, windows, frame_duration_ms=20000, description="Projections"):
    """NM TOMO projections, frames window-major; ``stored_by_window`` is [window, view, row, column]."""
    n_windows, n_views = stored_by_window.shape[:2]
    ds = _base(NM_STORAGE, visit, "NM", generate_uid(), 1, description)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    ds.AcquisitionDate = visit.acquisition.strftime("%Y%m%d")
    ds.AcquisitionTime = visit.acquisition.strftime("%H%M%S")
    ds.PatientOrientationCodeSequence = Sequence([])
    ds.PatientGantryRelationshipCodeSequence = Sequence([])
    ds.NumberOfFrames = n_windows * n_views
    ds.FrameIncrementPointer = [pydicom.tag.Tag(0x0054, 0x0010), pydicom.tag.Tag(0x0054, 0x0090)]
    ds.EnergyWindowVector = [w + 1 for w in range(n_windows) for _ in range(n_views)]
    ds.AngularViewVector = [v + 1 for _ in range(n_windows) for v in range(n_views)]
    ds.PixelSpacing = ["4.8", "4.8"]
    energy_windows = []
    for name, lower, upper in windows:
        energy_range = Dataset()
        energy_range.EnergyWindowLowerLimit = _fmt(lower)
        energy_range.EnergyWindowUpperLimit = _fmt(upper)
        item = Dataset()
        item.EnergyWindowRangeSequence = Sequence([energy_range])
        item.EnergyWindowName = name
        energy_windows.append(item)
    ds.EnergyWindowInformationSequence = Sequence(energy_windows)
    ds.NumberOfEnergyWindows = n_windows
    rotation = Dataset()
    rotation.ActualFrameDuration = int(frame_duration_ms)
    rotation.NumberOfFramesInRotation = n_views
    ds.RotationInformationSequence = Sequence([rotation])
    detector = Dataset()
    detector.CollimatorGridName = "HEGP"
    ds.DetectorInformationSequence = Sequence([detector])
    _pixels(ds, stored_by_window.reshape((n_windows * n_views,) + stored_by_window.shape[2:]))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    compat.save_dicom_file(ds, path)
    return path


def write_pet_slices(folder, visit, stored, slopes, pixel_spacing_rc, positions_lps, administration, frame_duration_ms,
                     orientation=(1, 0, 0, 0, 1, 0), units="CNTS", half_life_s=I131_HALF_LIFE_S):
    """A reconstructed emission volume stored as PET Image objects, one file per slice with its own slope."""
    os.makedirs(folder, exist_ok=True)
    series_uid = generate_uid()
    paths = []
    for k in range(stored.shape[0]):
        ds = _base(PET_STORAGE, visit, "PT", series_uid, k + 1, "SPECT as PET")
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.AcquisitionDate = visit.acquisition.strftime("%Y%m%d")
        ds.AcquisitionTime = visit.acquisition.strftime("%H%M%S")
        ds.ActualFrameDuration = int(frame_duration_ms)
        ds.Units = units
        ds.ImagePositionPatient = [_fmt(v) for v in positions_lps[k]]
        ds.ImageOrientationPatient = [_fmt(v) for v in orientation]
        ds.PixelSpacing = [_fmt(v) for v in pixel_spacing_rc]
        ds.RescaleSlope = _fmt(slopes[k])
        ds.RescaleIntercept = "0"
        radiopharmaceutical = Dataset()
        radiopharmaceutical.RadiopharmaceuticalStartDateTime = administration.strftime("%Y%m%d%H%M%S")
        radiopharmaceutical.RadionuclideTotalDose = "3.7e9"
        radiopharmaceutical.RadionuclideHalfLife = _fmt(half_life_s)
        ds.RadiopharmaceuticalInformationSequence = Sequence([radiopharmaceutical])
        _pixels(ds, stored[k])
        path = os.path.join(folder, f"pet_{k:03d}.dcm")
        compat.save_dicom_file(ds, path)
        paths.append(path)
    return paths


def write_enhanced_pet(path, visit, stored, slopes, pixel_spacing_rc, positions_lps, administration, frame_duration_ms,
                       orientation=(1, 0, 0, 0, 1, 0)):
    """A reconstructed emission volume as one Enhanced PET object: per-frame plane positions and rescale."""
    ds = _base("1.2.840.10008.5.1.4.1.1.130", visit, "PT", generate_uid(), 1, "SPECT as enhanced PET")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.AcquisitionDateTime = visit.acquisition.strftime("%Y%m%d%H%M%S")
    ds.NumberOfFrames = stored.shape[0]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_fmt(v) for v in pixel_spacing_rc]
    shared.PixelMeasuresSequence = Sequence([measures])
    plane_orientation = Dataset()
    plane_orientation.ImageOrientationPatient = [_fmt(v) for v in orientation]
    shared.PlaneOrientationSequence = Sequence([plane_orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(stored.shape[0]):
        groups = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [_fmt(v) for v in positions_lps[k]]
        groups.PlanePositionSequence = Sequence([position])
        transformation = Dataset()
        transformation.RescaleSlope = _fmt(slopes[k])
        transformation.RescaleIntercept = "0"
        groups.PixelValueTransformationSequence = Sequence([transformation])
        content = Dataset()
        content.FrameAcquisitionDuration = float(frame_duration_ms)
        groups.FrameContentSequence = Sequence([content])
        frames.append(groups)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    radiopharmaceutical = Dataset()
    radiopharmaceutical.RadiopharmaceuticalStartDateTime = administration.strftime("%Y%m%d%H%M%S")
    radiopharmaceutical.RadionuclideHalfLife = _fmt(I131_HALF_LIFE_S)
    ds.RadiopharmaceuticalInformationSequence = Sequence([radiopharmaceutical])
    _pixels(ds, stored)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    compat.save_dicom_file(ds, path)
    return path


def write_header_only(path, sop_class, visit, modality):
    """A header-only object (RT Structure Set, Segmentation, RT Dose) for the file listings."""
    ds = _base(sop_class, visit, modality, generate_uid(), 1, modality)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    compat.save_dicom_file(ds, path)
    return path


def decay_factor(hours):
    """131I decay over ``hours`` (ENSDF half-life 8.0252 d)."""
    return math.exp(-math.log(2.0) * hours / (8.0252 * 24.0))


def real_world_value_mapping(slope):
    """A RealWorldValueMappingSequence mapping stored values to Bq/ml by ``slope``."""
    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    item = Dataset()
    item.MeasurementUnitsCodeSequence = Sequence([unit])
    item.RealWorldValueSlope = slope
    item.RealWorldValueIntercept = 0.0
    item.LUTExplanation = "activity concentration"
    item.LUTLabel = "BQML"
    item.RealWorldValueFirstValueMapped = 0
    item.RealWorldValueLastValueMapped = 65535
    return Sequence([item])
