"""Voxel grids of DICOM images: slice stacks (CT, PET), NM multi-frame volumes and enhanced multi-frame objects.

DICOM gives positions in the patient LPS frame: ImagePositionPatient is the centre of the first
transmitted pixel, ImageOrientationPatient the LPS directions of a row and of a column, and
PixelSpacing the distance between adjacent rows, then between adjacent columns. Slices are stacked
along the normal row x column. The result follows :class:`MIBGDosimetryLib.volume.ImageVolume`:
array ``[k, j, i]`` (i along a row, j down the columns, k along the normal), spacing along i, j, k,
origin and direction columns in RAS.
"""

import dataclasses

import numpy as np

from MIBGDosimetryLib.study.errors import StudyDataError
from MIBGDosimetryLib.volume import LPS_TO_RAS

#: Largest deviation (mm) tolerated between slice positions and a single straight stack.
POSITION_TOLERANCE_MM = 0.01
#: Slice gaps that differ by more than this fraction of the median gap make a stack uneven.
UNEVEN_RELATIVE_TOLERANCE = 1e-3


@dataclasses.dataclass
class PlaneSlice:
    """One 2-D image of a stack with where it lies and how its stored values become real values."""

    source: str
    position_lps_mm: np.ndarray
    orientation: tuple
    pixel_spacing_mm: tuple
    pixels: np.ndarray
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0


@dataclasses.dataclass
class Grid:
    """A stacked volume with RAS geometry and notes on anything that was adjusted."""

    array: np.ndarray
    spacing_mm: tuple
    origin_ras_mm: tuple
    directions: np.ndarray
    notes: list = dataclasses.field(default_factory=list)


def orientation_matrix_lps(orientation, name="ImageOrientationPatient"):
    """3x3 matrix whose columns are the LPS unit vectors of a row, a column and the slice normal."""
    values = np.asarray(orientation, dtype=float)
    if values.shape != (6,):
        raise StudyDataError(f"{name} must hold 6 numbers, it holds {values.size}")
    row, column = values[:3], values[3:]
    if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(column) - 1) > 1e-3
            or abs(np.dot(row, column)) > 1e-3):
        raise StudyDataError(f"{name} {values.tolist()} is not a pair of orthogonal unit vectors")
    row = row / np.linalg.norm(row)
    column = column / np.linalg.norm(column)
    return np.column_stack([row, column, np.cross(row, column)])


def multiframe_grid(pixels, position_lps_mm, orientation, pixel_spacing_mm, slice_spacing_mm):
    """Geometry of frames stacked along the normal at a fixed spacing (NM reconstructed tomography)."""
    pixels = np.asarray(pixels)
    directions_lps = orientation_matrix_lps(orientation)
    notes = []
    if slice_spacing_mm < 0:
        # A negative spacing stacks the frames against the normal; the direction is flipped to keep spacing positive.
        directions_lps[:, 2] *= -1
        slice_spacing_mm = -slice_spacing_mm
        notes.append("SpacingBetweenSlices is negative; frames were stacked against the row x column normal")
    if slice_spacing_mm == 0:
        raise StudyDataError("the spacing between frames is 0 mm")
    spacing = (float(pixel_spacing_mm[1]), float(pixel_spacing_mm[0]), float(slice_spacing_mm))
    return Grid(pixels, spacing, tuple(LPS_TO_RAS @ np.asarray(position_lps_mm, dtype=float)),
                LPS_TO_RAS @ directions_lps, notes)


def stack_slices(slices, resample_uneven, output_dtype=None, value_dtype=np.float64, counts_per_voxel=False):
    """Stack 2-D slices (any order) along their common normal.

    Slices must share orientation, pixel spacing and matrix size and lie on one straight line
    along the normal (no gantry tilt); otherwise a StudyDataError names the files. Uneven gaps are
    resampled linearly onto the median gap when ``resample_uneven`` (with a note), else rejected. With
    ``counts_per_voxel`` (emission counts) each slice's values are first divided by the thickness it
    stands for (half-way to its neighbours) and the resampled values multiplied by the new spacing,
    so that the total counts are kept.
    Stored values become real values with each slice's rescale slope and intercept, computed in
    ``value_dtype`` and returned as ``output_dtype`` when that holds every value exactly.
    """
    if not slices:
        raise StudyDataError("no readable slices")
    first = slices[0]
    for s in slices[1:]:
        for attribute, name in (("orientation", "ImageOrientationPatient"), ("pixel_spacing_mm", "PixelSpacing")):
            if not np.allclose(getattr(s, attribute), getattr(first, attribute), atol=1e-4):
                raise StudyDataError(f"{name} differs between '{first.source}' and '{s.source}' "
                                     f"({list(getattr(first, attribute))} vs {list(getattr(s, attribute))})")
        if s.pixels.shape != first.pixels.shape:
            raise StudyDataError(f"the image size differs between '{first.source}' {first.pixels.shape} "
                                 f"and '{s.source}' {s.pixels.shape}")
    directions_lps = orientation_matrix_lps(first.orientation)
    normal = directions_lps[:, 2]
    distance = np.array([np.dot(s.position_lps_mm, normal) for s in slices])
    order = np.argsort(distance, kind="stable")
    slices = [slices[n] for n in order]
    distance = distance[order]
    notes = []
    origin_lps = np.asarray(slices[0].position_lps_mm, dtype=float)
    for s, d in zip(slices, distance):
        offset = np.asarray(s.position_lps_mm) - origin_lps - (d - distance[0]) * normal
        if np.linalg.norm(offset) > POSITION_TOLERANCE_MM:
            raise StudyDataError(
                f"slice '{s.source}' lies {np.linalg.norm(offset):.3g} mm off the line through "
                f"'{slices[0].source}' along the slice normal (tilted gantry or several stacks in one series)")
    values = np.stack([s.pixels.astype(value_dtype) * value_dtype(s.rescale_slope) + value_dtype(s.rescale_intercept)
                       for s in slices])
    if len(slices) == 1:
        raise StudyDataError(f"only one slice ('{first.source}'), so the slice spacing is unknown")
    gaps = np.diff(distance)
    duplicates = np.flatnonzero(gaps < POSITION_TOLERANCE_MM)
    if duplicates.size:
        n = duplicates[0]
        raise StudyDataError(f"slices '{slices[n].source}' and '{slices[n + 1].source}' are at the same position "
                             f"({distance[n]:.3f} mm along the normal); dynamic or gated series are not supported")
    median_gap = float(np.median(gaps))
    if gaps.max() - gaps.min() > max(POSITION_TOLERANCE_MM, UNEVEN_RELATIVE_TOLERANCE * median_gap):
        n = int(np.argmax(np.abs(gaps - median_gap)))
        description = (f"uneven slice spacing: {gaps.min():.4g} to {gaps.max():.4g} mm (median {median_gap:.4g} mm); "
                       f"largest deviation between '{slices[n].source}' and '{slices[n + 1].source}' "
                       f"({gaps[n]:.4g} mm)")
        if not resample_uneven:
            raise StudyDataError(description)
        if counts_per_voxel:
            thickness = np.concatenate([[gaps[0]], (gaps[:-1] + gaps[1:]) / 2.0, [gaps[-1]]])
            values = values / thickness[:, None, None]
        values = _resample_along_normal(values, distance, median_gap).astype(value_dtype)
        if counts_per_voxel:
            values = values * median_gap
        notes.append(f"{description}; resampled by linear interpolation onto a regular {median_gap:.4g} mm grid "
                     f"of {values.shape[0]} slices" + (" with the total counts kept" if counts_per_voxel else ""))
        slice_spacing = median_gap
    else:
        slice_spacing = float((distance[-1] - distance[0]) / (len(slices) - 1))
    spacing = (float(first.pixel_spacing_mm[1]), float(first.pixel_spacing_mm[0]), slice_spacing)
    if output_dtype is not None:
        values = cast_exact(values, output_dtype)
    return Grid(values, spacing, tuple(LPS_TO_RAS @ origin_lps), LPS_TO_RAS @ directions_lps, notes)


def cast_exact(values, dtype):
    """``values`` as ``dtype`` when that keeps every value exactly, else unchanged."""
    candidate = values.astype(dtype)
    return candidate if np.array_equal(candidate, values) else values


def _resample_along_normal(values, distance, step):
    count = int(round((distance[-1] - distance[0]) / step)) + 1
    targets = distance[0] + step * np.arange(count)
    upper = np.clip(np.searchsorted(distance, targets, side="right"), 1, len(distance) - 1)
    lower = upper - 1
    weight = np.clip((targets - distance[lower]) / (distance[upper] - distance[lower]), 0.0, 1.0)
    return values[lower] * (1 - weight)[:, None, None] + values[upper] * weight[:, None, None]
