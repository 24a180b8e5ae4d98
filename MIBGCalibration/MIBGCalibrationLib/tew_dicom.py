"""TEW scatter correction of NM projection files: windows read from DICOM, corrected projections
written back as a derived NM object.

The energy windows come from EnergyWindowInformationSequence (lower and upper limits of each
window's EnergyWindowRangeSequence); frames are assigned to windows by EnergyWindowVector. The
derived object keeps the photopeak frames only, with new SOP instance and series UIDs, ImageType
DERIVED and a reference to its source. Its CountsAccumulated keeps the source value, because that
is the observed count total that the dead-time correction needs.
"""

import copy
import dataclasses
import datetime

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from MIBGCalibrationLib import dicom_files, tew
from MIBGDosimetryLib.dicomio import common

#: NM frame-pointer vectors whose entries are selected together with the frames they describe.
FRAME_VECTORS = ("EnergyWindowVector", "DetectorVector", "PhaseVector", "RotationVector", "RRIntervalVector",
                 "TimeSlotVector", "SliceVector", "AngularViewVector", "TimeSliceVector")


@dataclasses.dataclass
class TewResult:
    """Scatter-corrected photopeak projections and what was done."""

    corrected_counts: np.ndarray
    scatter_counts: np.ndarray
    peak_counts: np.ndarray
    windows: tew.TewWindows
    clipped_pixels: int
    warnings: list

    def to_dict(self):
        return {"peak_window": self.windows.peak.to_dict(), "lower_window": self.windows.lower.to_dict(),
                "upper_window": self.windows.upper.to_dict(), "clipped_pixels": self.clipped_pixels,
                "peak_counts": float(self.peak_counts.sum()), "scatter_counts": float(self.scatter_counts.sum()),
                "corrected_counts": float(self.corrected_counts.sum()), "warnings": list(self.warnings)}


def read_energy_windows(dataset):
    """The energy windows of an NM dataset as :class:`tew.EnergyWindow` (1-based index)."""
    sequence = dataset.get("EnergyWindowInformationSequence")
    if not sequence:
        raise ValueError("The NM file has no EnergyWindowInformationSequence; the energy windows are unknown.")
    windows = []
    for index, item in enumerate(sequence, start=1):
        ranges = item.get("EnergyWindowRangeSequence")
        if not ranges:
            raise ValueError(f"Energy window {index} has no EnergyWindowRangeSequence (lower/upper limits).")
        lower = min(float(r.EnergyWindowLowerLimit) for r in ranges)
        upper = max(float(r.EnergyWindowUpperLimit) for r in ranges)
        windows.append(tew.EnergyWindow(index, lower, upper, str(item.get("EnergyWindowName", ""))))
    return windows


def frames_by_window(dataset):
    """``{window index: frames array (n, rows, columns)}`` of a multi-frame NM dataset."""
    pixels = dicom_files.counts_of(dataset)
    count = int(dataset.get("NumberOfEnergyWindows", len(dataset.EnergyWindowInformationSequence)))
    if "EnergyWindowVector" in dataset:
        vector = np.asarray([int(v) for v in np.atleast_1d(dataset.EnergyWindowVector)])
    elif pixels.shape[0] % count == 0:
        vector = np.repeat(np.arange(1, count + 1), pixels.shape[0] // count)
    else:
        raise ValueError("The NM file has no EnergyWindowVector and its frames do not divide evenly among "
                         f"its {count} energy windows.")
    if vector.size != pixels.shape[0]:
        raise ValueError(f"EnergyWindowVector has {vector.size} entries for {pixels.shape[0]} frames.")
    return {index: pixels[vector == index] for index in np.unique(vector)}, vector


def correct_dataset(dataset):
    """TEW scatter correction (EANM eq. 8) of the projections of an NM dataset."""
    windows = tew.identify_windows(read_energy_windows(dataset))
    frames, _ = frames_by_window(dataset)
    for window in (windows.peak, windows.lower, windows.upper):
        if window.index not in frames:
            raise ValueError(f"No frames belong to energy window {window.index} "
                             f"({window.lower_keV:.1f}-{window.upper_keV:.1f} keV).")
    corrected, scatter, clipped = tew.tew_correct(
        frames[windows.peak.index], frames[windows.lower.index], frames[windows.upper.index],
        windows.peak.width_keV, windows.lower.width_keV, windows.upper.width_keV)
    return TewResult(corrected, scatter, frames[windows.peak.index], windows, clipped,
                     tew.window_setup_warnings(windows))


def _stored(counts):
    """uint16 pixel values and the RescaleSlope that maps them to counts (None when stored exactly)."""
    limit = np.iinfo(np.uint16).max
    if np.array_equal(counts, np.round(counts)) and counts.max(initial=0) <= limit:
        return counts.astype(np.uint16), None
    slope = max(float(counts.max(initial=0)), 1e-30) / limit
    return np.round(counts / slope).astype(np.uint16), slope


def derived_dataset(source, result):
    """A derived NM dataset holding the scatter-corrected photopeak frames.

    Whole-number counts are stored exactly; fractional counts (scaled source data) are stored with a
    RescaleSlope, as the source does.
    """
    values, slope = _stored(result.corrected_counts)
    _, vector = frames_by_window(source)
    keep = vector == result.windows.peak.index
    derived = copy.deepcopy(source)
    now = datetime.datetime.now()
    derived.SOPInstanceUID = generate_uid()
    derived.file_meta.MediaStorageSOPInstanceUID = derived.SOPInstanceUID
    derived.SeriesInstanceUID = generate_uid()
    derived.SeriesNumber = int(source.get("SeriesNumber", 0) or 0) + 1000
    derived.SeriesDescription = "TEW scatter-corrected projections"
    image_type = list(source.ImageType)
    derived.ImageType = ["DERIVED", "PRIMARY"] + image_type[2:]
    derived.InstanceCreationDate = now.strftime("%Y%m%d")
    derived.InstanceCreationTime = now.strftime("%H%M%S")
    derived.ContentDate, derived.ContentTime = derived.InstanceCreationDate, derived.InstanceCreationTime
    derived.DerivationDescription = (
        "Triple-energy-window scatter correction (EANM eq. 8): photopeak "
        f"{result.windows.peak.lower_keV:g}-{result.windows.peak.upper_keV:g} keV minus scatter estimated from "
        f"{result.windows.lower.lower_keV:g}-{result.windows.lower.upper_keV:g} keV and "
        f"{result.windows.upper.lower_keV:g}-{result.windows.upper.upper_keV:g} keV; "
        f"{result.clipped_pixels} negative pixels set to 0.")
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    derived.SourceImageSequence = Sequence([reference])
    derived.EnergyWindowInformationSequence = Sequence(
        [copy.deepcopy(source.EnergyWindowInformationSequence[result.windows.peak.index - 1])])
    derived.NumberOfEnergyWindows = 1
    for name in FRAME_VECTORS:
        if name in source:
            entries = np.atleast_1d(source.data_element(name).value)
            if len(entries) == len(vector):
                setattr(derived, name, [1 if name == "EnergyWindowVector" else int(v)
                                        for v, k in zip(entries, keep) if k])
    derived.NumberOfFrames = int(values.shape[0])
    for name in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if name in derived:
            del derived[name]
    derived.BitsAllocated, derived.BitsStored, derived.HighBit, derived.PixelRepresentation = 16, 16, 15, 0
    for name in ("RescaleSlope", "RescaleIntercept"):
        if name in derived:
            del derived[name]
    if slope is not None:
        derived.RescaleSlope = f"{slope:.10g}"
        derived.RescaleIntercept = "0"
    derived.PixelData = np.ascontiguousarray(values).tobytes()
    return derived


def write_dataset(dataset, path):
    """Write a dataset completely or not at all (temporary file beside ``path``, then a rename)."""
    return common.write_dataset(dataset, path)


def correct_file(source_path, output_path):
    """TEW-correct the NM projection file ``source_path`` and write the derived object to ``output_path``.

    Returns the :class:`TewResult`; the source file is not changed.
    """
    source = dicom_files.read_dataset(source_path)
    if source.get("Modality") != "NM":
        raise ValueError(f"'{source_path}' is not an NM object (Modality {source.get('Modality')}).")
    result = correct_dataset(source)
    write_dataset(derived_dataset(source, result), output_path)
    return result
