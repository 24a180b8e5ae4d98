"""Reading the DICOM files of the calibration phantoms: NM tomograms, static NM images and CT series.

Values are counts; a RescaleSlope/RescaleIntercept present in the file is applied. A reconstructed
tomogram (one frame per slice) gets its geometry from DetectorInformationSequence[0]
(ImagePositionPatient of the first voxel, ImageOrientationPatient), PixelSpacing and
SpacingBetweenSlices; its duration is the sum over RotationInformationSequence items of
NumberOfFramesInRotation x ActualFrameDuration.
"""

import datetime
import glob
import os
import re

import numpy as np
import pydicom

from MIBGDosimetryLib.volume import LPS_TO_RAS, ImageVolume


def read_dataset(path):
    """A DICOM dataset, or a ValueError that names the file."""
    try:
        return pydicom.dcmread(str(path))
    except (pydicom.errors.InvalidDicomError, OSError) as error:
        raise ValueError(f"'{path}' is not a readable DICOM file: {error}.") from error


def counts_of(dataset):
    """Pixel values as counts (float, frames first), with RescaleSlope and RescaleIntercept applied."""
    pixels = np.asarray(dataset.pixel_array, dtype=float)
    if int(dataset.get("NumberOfFrames", 1) or 1) == 1 and pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    return pixels * slope + intercept


def acquisition_datetime(dataset):
    """Start of the acquisition from AcquisitionDateTime, or AcquisitionDate + AcquisitionTime."""
    text = str(dataset.get("AcquisitionDateTime", "") or "")
    if not text:
        text = str(dataset.get("AcquisitionDate", "") or "") + str(dataset.get("AcquisitionTime", "") or "")
    text = re.sub(r"[+-]\d{4}$", "", text)
    for pattern in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S", "%Y%m%d%H%M"):
        try:
            return datetime.datetime.strptime(text, pattern)
        except ValueError:
            continue
    raise ValueError(f"The NM file {dataset.filename} has no readable acquisition date and time ('{text}').")


def duration_s(dataset):
    """Acquisition duration (s): rotations x frames x frame duration, or the static frame duration."""
    rotations = dataset.get("RotationInformationSequence")
    if rotations:
        total_ms = sum(int(item.NumberOfFramesInRotation) * float(item.ActualFrameDuration) for item in rotations)
    elif "ActualFrameDuration" in dataset:
        total_ms = float(dataset.ActualFrameDuration)
    else:
        raise ValueError(f"The NM file {dataset.filename} states no frame duration (ActualFrameDuration).")
    if total_ms <= 0:
        raise ValueError(f"The NM file {dataset.filename} states a non-positive acquisition duration.")
    return total_ms / 1000.0


def acquisition_info(dataset):
    """Camera, collimator and energy windows as recorded in the file."""
    detector = (dataset.get("DetectorInformationSequence") or [None])[0]
    windows = []
    for item in dataset.get("EnergyWindowInformationSequence") or []:
        for window_range in item.get("EnergyWindowRangeSequence") or []:
            windows.append({"name": str(item.get("EnergyWindowName", "")),
                            "lower_keV": float(window_range.EnergyWindowLowerLimit),
                            "upper_keV": float(window_range.EnergyWindowUpperLimit)})
    return {"manufacturer": str(dataset.get("Manufacturer", "")),
            "model": str(dataset.get("ManufacturerModelName", "")),
            "collimator": "" if detector is None else str(detector.get("CollimatorGridName", "")),
            "collimator_type": "" if detector is None else str(detector.get("CollimatorType", "")),
            "energy_windows": windows,
            "reconstruction": str(dataset.get("ConvolutionKernel", "") or ""),
            "counts_accumulated": None if dataset.get("CountsAccumulated") in (None, "") else
            float(dataset.CountsAccumulated),
            "series_instance_uid": str(dataset.get("SeriesInstanceUID", ""))}


def read_nm_tomo(path):
    """A reconstructed NM tomogram as an :class:`ImageVolume` of counts.

    ``metadata`` holds ``duration_s``, ``acquisition_datetime`` and :func:`acquisition_info`.
    """
    dataset = read_dataset(path)
    if dataset.get("Modality") != "NM":
        raise ValueError(f"'{path}' is not an NM image (Modality {dataset.get('Modality')}).")
    detector = (dataset.get("DetectorInformationSequence") or [None])[0]
    if detector is None or "ImagePositionPatient" not in detector or "ImageOrientationPatient" not in detector:
        raise ValueError(f"'{path}' has no image position and orientation in DetectorInformationSequence; "
                         "it is not a reconstructed tomogram.")
    orientation = np.asarray([float(v) for v in detector.ImageOrientationPatient])
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    spacing_between = float(dataset.get("SpacingBetweenSlices", dataset.get("SliceThickness", 0)) or 0)
    if spacing_between == 0:
        raise ValueError(f"'{path}' states no spacing between its slices.")
    if spacing_between < 0:
        normal, spacing_between = -normal, -spacing_between
    pixel_spacing = [float(v) for v in dataset.PixelSpacing]
    directions = LPS_TO_RAS @ np.column_stack([row, column, normal])
    origin = LPS_TO_RAS @ np.asarray([float(v) for v in detector.ImagePositionPatient])
    metadata = {"duration_s": duration_s(dataset), "acquisition_datetime": acquisition_datetime(dataset),
                **acquisition_info(dataset)}
    return ImageVolume(counts_of(dataset), (pixel_spacing[1], pixel_spacing[0], spacing_between), tuple(origin),
                       directions, "counts", metadata)


def read_nm_static(path):
    """Total counts, duration (s) and acquisition start of a static NM image."""
    dataset = read_dataset(path)
    return float(counts_of(dataset).sum()), duration_s(dataset), acquisition_datetime(dataset)


def read_ct_series(folder):
    """A CT series (one file per slice) in HU as an :class:`ImageVolume`, slices sorted along their normal."""
    slices = []
    for path in sorted(glob.glob(os.path.join(str(folder), "*.dcm"))):
        dataset = read_dataset(path)
        if dataset.get("Modality") == "CT":
            slices.append(dataset)
    if len(slices) < 2:
        raise ValueError(f"The folder '{folder}' holds fewer than two CT slices.")
    orientation = np.asarray([float(v) for v in slices[0].ImageOrientationPatient])
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    positions = np.array([[float(v) for v in s.ImagePositionPatient] for s in slices])
    order = np.argsort(positions @ normal)
    positions = positions[order]
    gaps = np.diff(positions @ normal)
    if np.any(gaps <= 0) or np.ptp(gaps) > 1e-3 * max(gaps.mean(), 1.0) + 1e-3:
        raise ValueError(f"The CT slices in '{folder}' are not evenly spaced.")
    stack = []
    for index in order:
        s = slices[index]
        stack.append(np.asarray(s.pixel_array, dtype=float) * float(s.get("RescaleSlope", 1.0))
                     + float(s.get("RescaleIntercept", 0.0)))
    pixel_spacing = [float(v) for v in slices[0].PixelSpacing]
    directions = LPS_TO_RAS @ np.column_stack([row, column, normal])
    return ImageVolume(np.stack(stack), (pixel_spacing[1], pixel_spacing[0], float(gaps.mean())),
                       tuple(LPS_TO_RAS @ positions[0]), directions, "HU")
