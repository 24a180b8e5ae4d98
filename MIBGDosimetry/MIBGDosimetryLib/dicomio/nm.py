"""NM Image Storage (multi-frame): reconstructed tomography, static planar images and
multi-window projections.

Voxel and pixel values are counts. They are stored as unsigned 16-bit integers without scaling
when they are whole numbers up to 65535; otherwise a RescaleSlope is written and must be applied
by the reader (stored x slope = counts).
"""

import dataclasses
import datetime

import numpy as np
import pydicom
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import NuclearMedicineImageStorage, generate_uid

from MIBGDosimetryLib.dicomio import common

#: SNOMED CT codes of the radionuclide and the radiopharmaceutical (DICOM CID 18 and CID 25).
I131_CODE = ("1368003", "SCT", "^131^Iodine")
MIBG_I131_CODE = ("395789007", "SCT", "Iodine^131^ 3-Iodobenzylguanidine")

ENERGY_WINDOW_VECTOR = Tag(0x0054, 0x0010)
DETECTOR_VECTOR = Tag(0x0054, 0x0020)
ROTATION_VECTOR = Tag(0x0054, 0x0050)
ANGULAR_VIEW_VECTOR = Tag(0x0054, 0x0090)
SLICE_VECTOR = Tag(0x0054, 0x0080)


@dataclasses.dataclass
class EnergyWindow:
    """An acquisition energy window (keV)."""

    name: str
    lower_keV: float
    upper_keV: float

    @property
    def width_keV(self):
        return self.upper_keV - self.lower_keV


def photopeak_window(centre_keV=364.0, width_fraction=0.20, name="PHOTOPEAK"):
    """A window of ``width_fraction`` of ``centre_keV`` centred on it."""
    half = centre_keV * width_fraction / 2.0
    return EnergyWindow(name, centre_keV - half, centre_keV + half)


@dataclasses.dataclass
class NMAcquisition:
    """What the camera and the administration record for an NM acquisition.

    ``frame_duration_ms`` is the duration of one frame (projection view, or the whole static
    image); a tomographic acquisition lasts ``number_of_views * frame_duration_ms``.
    ``counts_accumulated`` is the total number of counts observed in the projection data.
    """

    acquisition_datetime: datetime.datetime
    frame_duration_ms: float
    administration_datetime: datetime.datetime
    administered_activity_Bq: float
    half_life_s: float
    energy_windows: list
    counts_accumulated: int = None
    number_of_views: int = 60
    start_angle_deg: float = 0.0
    scan_arc_deg: float = 360.0
    radial_position_mm: float = 250.0
    manufacturer_model: str = "Virtual gamma camera"
    collimator_name: str = "HEGP"
    collimator_type: str = "PARA"
    station_name: str = "PHANTOM"
    device_serial_number: str = "0001"

    @property
    def angular_step_deg(self):
        return self.scan_arc_deg / self.number_of_views


def _stored_counts(counts):
    """uint16 stored values and the RescaleSlope (None when the counts are stored exactly)."""
    counts = np.asarray(counts, dtype=float)
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ValueError("NM images hold counts: the values must be finite and not negative.")
    limit = np.iinfo(np.uint16).max
    if np.array_equal(counts, np.round(counts)) and counts.max() <= limit:
        return counts.astype(np.uint16), None
    slope = max(float(counts.max()), 1e-30) / limit
    return np.round(counts / slope).astype(np.uint16), slope


def _code_item(code):
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _radiopharmaceutical_sequence(acq):
    item = pydicom.Dataset()
    item.Radiopharmaceutical = "Iobenguane (131I-mIBG)"
    start = acq.administration_datetime
    item.RadiopharmaceuticalStartTime = common.dicom_time(start)
    item.RadiopharmaceuticalStartDateTime = start.strftime("%Y%m%d%H%M%S.%f")
    # NM objects give the administered activity in MBq (PS3.3 NM Isotope Module).
    item.RadionuclideTotalDose = common.ds_decimal(acq.administered_activity_Bq / 1.0e6, 12)
    item.RadionuclideHalfLife = common.ds_decimal(acq.half_life_s, 10)
    item.RadionuclideCodeSequence = Sequence([_code_item(I131_CODE)])
    item.RadiopharmaceuticalCodeSequence = Sequence([_code_item(MIBG_I131_CODE)])
    item.AdministrationRouteCodeSequence = Sequence([_code_item(("47625008", "SCT", "Intravenous route"))])
    return Sequence([item])


def _energy_window_sequence(windows):
    items = []
    for window in windows:
        rng = pydicom.Dataset()
        rng.EnergyWindowLowerLimit = common.ds_decimal(window.lower_keV)
        rng.EnergyWindowUpperLimit = common.ds_decimal(window.upper_keV)
        item = pydicom.Dataset()
        item.EnergyWindowRangeSequence = Sequence([rng])
        item.EnergyWindowName = window.name
        items.append(item)
    return Sequence(items)


def _detector_item(acq, position_lps=None, orientation=None):
    item = pydicom.Dataset()
    item.CollimatorGridName = acq.collimator_name
    item.CollimatorType = acq.collimator_type
    item.FieldOfViewShape = "RECTANGLE"
    item.StartAngle = common.ds_decimal(acq.start_angle_deg)
    item.RadialPosition = common.ds_decimal(acq.radial_position_mm)
    if position_lps is None:
        item.ImagePositionPatient = None
        item.ImageOrientationPatient = None
    else:
        item.ImagePositionPatient = [common.ds_decimal(v, 10) for v in position_lps]
        item.ImageOrientationPatient = [common.ds_decimal(v, 10) for v in orientation]
    return item


def _rotation_sequence(acq):
    item = pydicom.Dataset()
    item.StartAngle = common.ds_decimal(acq.start_angle_deg)
    item.AngularStep = common.ds_decimal(acq.angular_step_deg)
    item.RotationDirection = "CW"
    item.ScanArc = common.ds_decimal(acq.scan_arc_deg)
    item.ActualFrameDuration = int(round(acq.frame_duration_ms))
    item.RadialPosition = common.ds_decimal(acq.radial_position_mm)
    item.NumberOfFramesInRotation = int(acq.number_of_views)
    item.TableTraverse = "0"
    item.TableHeight = "0"
    return Sequence([item])


def _nm_dataset(acq, study, image_type, series_number, series_description, frames, pixel_spacing_mm):
    """The attributes common to every NM image the library writes, with pixel data."""
    stored, slope = _stored_counts(frames)
    ds = common.new_dataset(NuclearMedicineImageStorage, study, "NM", generate_uid(), series_number, 1,
                            acq.acquisition_datetime, series_description)
    ds.ImageType = image_type
    ds.ManufacturerModelName = acq.manufacturer_model
    ds.StationName = acq.station_name
    ds.DeviceSerialNumber = acq.device_serial_number
    ds.AcquisitionDate = common.dicom_date(acq.acquisition_datetime)
    ds.AcquisitionTime = common.dicom_time(acq.acquisition_datetime)
    ds.AcquisitionDateTime = acq.acquisition_datetime.strftime("%Y%m%d%H%M%S.%f")
    ds.AcquisitionNumber = 1
    ds.PatientOrientation = ""
    ds.AcquisitionContextSequence = Sequence([])
    ds.PatientOrientationCodeSequence = Sequence([])
    ds.PatientGantryRelationshipCodeSequence = Sequence([])

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = stored.shape[0]
    ds.Rows = stored.shape[1]
    ds.Columns = stored.shape[2]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [common.ds_decimal(pixel_spacing_mm[1]), common.ds_decimal(pixel_spacing_mm[0])]
    if slope is not None:
        ds.RescaleSlope = common.ds_decimal(slope, 10)
        ds.RescaleIntercept = "0"
    ds.Units = "COUNTS"

    ds.CountsAccumulated = None if acq.counts_accumulated is None else int(acq.counts_accumulated)
    ds.EnergyWindowInformationSequence = _energy_window_sequence(acq.energy_windows)
    ds.NumberOfEnergyWindows = len(acq.energy_windows)
    ds.RadiopharmaceuticalInformationSequence = _radiopharmaceutical_sequence(acq)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds


def write_nm_tomo(volume_counts, path, study, acquisition, series_number=2, series_description="SPECT",
                  reconstruction_description="OSEM", image_type_value4="EMISSION"):
    """Write an ImageVolume of counts as a reconstructed NM tomogram (one frame per slice k).

    ImageType is ORIGINAL\\PRIMARY\\RECON TOMO\\EMISSION; the geometry goes into
    DetectorInformationSequence[0] (ImagePositionPatient of the first voxel, ImageOrientationPatient),
    PixelSpacing, SliceThickness and SpacingBetweenSlices.
    """
    row, column, _ = common.lps_orientation(volume_counts)
    position = common.slice_positions_lps(volume_counts)[0]
    ds = _nm_dataset(acquisition, study, ["ORIGINAL", "PRIMARY", "RECON TOMO", image_type_value4],
                     series_number, series_description, volume_counts.array, volume_counts.spacing_mm)
    n_slices = volume_counts.array.shape[0]
    ds.FrameIncrementPointer = SLICE_VECTOR
    ds.SliceVector = list(range(1, n_slices + 1))
    ds.NumberOfSlices = n_slices
    ds.NumberOfDetectors = 1
    ds.DetectorInformationSequence = Sequence([_detector_item(acquisition, position, (*row, *column))])
    ds.NumberOfRotations = 1
    ds.RotationInformationSequence = _rotation_sequence(acquisition)
    ds.TypeOfDetectorMotion = "STEP AND SHOOT"
    ds.SliceThickness = common.ds_decimal(volume_counts.spacing_mm[2])
    ds.SpacingBetweenSlices = common.ds_decimal(volume_counts.spacing_mm[2])
    ds.ReconstructionDiameter = common.ds_decimal(volume_counts.array.shape[2] * volume_counts.spacing_mm[0])
    ds.ConvolutionKernel = reconstruction_description
    return common.write_dataset(ds, path)


def write_nm_static(image_counts, pixel_spacing_mm, path, study, acquisition, series_number=1,
                    series_description="Static"):
    """Write a 2-D planar image of counts (rows, columns) as a one-frame NM static image.

    ``pixel_spacing_mm`` is (column spacing, row spacing). The acquisition lasted
    ``acquisition.frame_duration_ms`` (ActualFrameDuration).
    """
    image = np.asarray(image_counts)
    if image.ndim != 2:
        raise ValueError(f"A static NM image must be 2-D (rows, columns), got shape {image.shape}.")
    ds = _nm_dataset(acquisition, study, ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"], series_number,
                     series_description, image[np.newaxis], pixel_spacing_mm)
    ds.FrameIncrementPointer = [ENERGY_WINDOW_VECTOR, DETECTOR_VECTOR]
    ds.EnergyWindowVector = [1]
    ds.DetectorVector = [1]
    ds.NumberOfDetectors = 1
    ds.DetectorInformationSequence = Sequence([_detector_item(acquisition)])
    ds.ActualFrameDuration = int(round(acquisition.frame_duration_ms))
    return common.write_dataset(ds, path)


def write_nm_projections(projections_counts, pixel_spacing_mm, path, study, acquisition, series_number=1,
                         series_description="Projections"):
    """Write projections of shape (energy windows, views, rows, columns) as an NM TOMO image.

    Frames are ordered window-major (all views of window 1, then window 2, ...), as
    EnergyWindowVector and AngularViewVector state; ``acquisition.energy_windows`` lists the
    windows in that order.
    """
    projections = np.asarray(projections_counts)
    if projections.ndim != 4:
        raise ValueError(f"Projections must have shape (windows, views, rows, columns), got {projections.shape}.")
    n_windows, n_views = projections.shape[:2]
    if n_windows != len(acquisition.energy_windows) or n_views != acquisition.number_of_views:
        raise ValueError(f"The projections hold {n_windows} windows x {n_views} views but the acquisition "
                         f"describes {len(acquisition.energy_windows)} windows x {acquisition.number_of_views} views.")
    frames = projections.reshape((n_windows * n_views,) + projections.shape[2:])
    ds = _nm_dataset(acquisition, study, ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"], series_number,
                     series_description, frames, pixel_spacing_mm)
    ds.FrameIncrementPointer = [ENERGY_WINDOW_VECTOR, DETECTOR_VECTOR, ROTATION_VECTOR, ANGULAR_VIEW_VECTOR]
    ds.EnergyWindowVector = [w + 1 for w in range(n_windows) for _ in range(n_views)]
    ds.DetectorVector = [1] * (n_windows * n_views)
    ds.RotationVector = [1] * (n_windows * n_views)
    ds.AngularViewVector = [v + 1 for _ in range(n_windows) for v in range(n_views)]
    ds.NumberOfDetectors = 1
    ds.DetectorInformationSequence = Sequence([_detector_item(acquisition)])
    ds.NumberOfRotations = 1
    ds.RotationInformationSequence = _rotation_sequence(acquisition)
    ds.TypeOfDetectorMotion = "STEP AND SHOOT"
    return common.write_dataset(ds, path)
