"""Pixel data and geometry of one series as an :class:`ImageVolume` (CT, PET-style and NM multi-frame).

Each function reads whole files (with pixel data) and reports problems as StudyDataError with the
file and field named; the caller adds the series. A slice of a slice-per-file series that cannot be
read is left out with a warning, so that the stack check can tell whether a gap remains.
"""

import os

import numpy as np

from MIBGDosimetryLib.study import dicomfields
from MIBGDosimetryLib.study.errors import StudyDataError, where
from MIBGDosimetryLib.study.geometry import PlaneSlice, multiframe_grid, stack_slices
from MIBGDosimetryLib.study.scan import read_dataset


def pixel_frames(ds, path):
    """Stored pixel values as ``[frame, row, column]``; decoding failures name the file and field."""
    try:
        with dicomfields.quiet_pydicom():
            array = np.asarray(ds.pixel_array)
    except Exception as error:  # pydicom's decoders raise many kinds of errors for damaged data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        shown = f" in transfer syntax {syntax.name} ({syntax})" if syntax else ""
        raise StudyDataError(f"file '{path}': field PixelData{shown} cannot be decoded ({type(error).__name__}: "
                             f"{error}); if the data are not damaged, install the decoders the project lists "
                             f"(pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg) or re-export the series "
                             f"uncompressed", file=path, field="PixelData") from None
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise StudyDataError(f"file '{path}': field PixelData decodes to shape {array.shape}, not to grey-level "
                             f"frames (SamplesPerPixel must be 1)", file=path, field="PixelData")
    return array


#: The elements that can hold an image's pixels (integer, 32-bit and 64-bit float).
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def drop_pixels(ds):
    """Remove the pixel data, whichever element holds it, so that only the header is kept."""
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)


def required(value, keyword, path):
    """``value`` unless it is None, in which case the missing field is reported."""
    if value is None:
        raise StudyDataError(f"file '{path}': field {keyword} is missing", file=path, field=keyword)
    return value


def positive_spacing(values, keyword, path):
    if any(v <= 0 for v in values):
        raise StudyDataError(f"file '{path}': field {keyword} {values} must be positive", file=path, field=keyword)
    return tuple(values)


def located(function, path, *args):
    """Call ``function`` and add the file name to any FieldError it raises."""
    try:
        return function(*args)
    except dicomfields.FieldError as error:
        raise StudyDataError(f"file '{path}': {error}", file=path, field=error.field) from None


def read_slice_stack(series, root, resample_uneven, output_dtype=None, value_dtype=np.float64, counts_per_voxel=False):
    """Stack a slice-per-file series (CT, PET) or an enhanced multi-frame series; returns (grid, warnings, datasets).

    Uneven slice spacing is resampled onto the median spacing when ``resample_uneven`` (keeping the
    total when ``counts_per_voxel``), else refused.

    Only headers of the stacked files are kept in ``datasets`` (pixel data dropped after use).
    """
    slices, notes, headers, frames_of_reference = [], [], [], {}
    for path in series.paths:
        shown = os.path.relpath(path, root)
        try:
            ds = read_dataset(path, shown)
            if "PerFrameFunctionalGroupsSequence" in ds:
                new = enhanced_slices(ds, shown)
            else:
                new = [single_slice(ds, shown)]
            frame_of_reference = located(dicomfields.text, shown, ds, "FrameOfReferenceUID")
        except StudyDataError as error:
            notes.append(f"{where(series=series.label, file=shown)}: left out, {_without_file(error, shown)}")
            continue
        slices.extend(new)
        frames_of_reference.setdefault(frame_of_reference, []).append(shown)
        drop_pixels(ds)
        headers.append((path, ds))
    without = frames_of_reference.pop(None, [])
    if without and frames_of_reference:
        notes.append(f"{where(series=series.label, field='FrameOfReferenceUID')}: missing in {len(without)} file(s), "
                     f"e.g. '{without[0]}'; they are taken to be in the frame of reference of the other files")
    if len(frames_of_reference) > 1:
        listing = "; ".join(f"{uid}: {len(paths)} file(s) e.g. '{paths[0]}'"
                            for uid, paths in frames_of_reference.items())
        raise StudyDataError(f"{where(series=series.label, field='FrameOfReferenceUID')}: the files of one series are "
                             f"in different frames of reference ({listing}); separate them into their own series",
                             series=series.uid, field="FrameOfReferenceUID")
    try:
        grid = stack_slices(slices, resample_uneven, output_dtype, value_dtype, counts_per_voxel)
    except StudyDataError as error:
        raise StudyDataError(f"{where(series=series.label)}: {error}", series=series.uid) from None
    notes.extend(f"{where(series=series.label)}: {note}" for note in grid.notes)
    return grid, notes, headers


def single_slice(ds, path):
    """A PlaneSlice from a single-frame image (CT Image, PET Image); ``path`` names the file in messages."""
    position = required(located(dicomfields.numbers, path, ds, "ImagePositionPatient", 3), "ImagePositionPatient", path)
    orientation = required(located(dicomfields.numbers, path, ds, "ImageOrientationPatient", 6),
                           "ImageOrientationPatient", path)
    spacing = positive_spacing(required(located(dicomfields.numbers, path, ds, "PixelSpacing", 2), "PixelSpacing",
                                        path), "PixelSpacing", path)
    slope = located(dicomfields.number, path, ds, "RescaleSlope")
    intercept = located(dicomfields.number, path, ds, "RescaleIntercept")
    frames = pixel_frames(ds, path)
    if frames.shape[0] != 1:
        raise StudyDataError(f"file '{path}': holds {frames.shape[0]} frames without per-frame positions",
                             file=path, field="NumberOfFrames")
    return PlaneSlice(path, np.asarray(position), tuple(orientation), spacing, frames[0],
                      1.0 if slope is None else slope, 0.0 if intercept is None else intercept)


def enhanced_slices(ds, path):
    """PlaneSlices from an enhanced multi-frame image (functional groups give each frame its plane).

    ``path`` names the file in messages.
    """
    shared = located(dicomfields.first_item, path, ds, "SharedFunctionalGroupsSequence")
    per_frame = located(dicomfields.items, path, ds, "PerFrameFunctionalGroupsSequence")
    frames = pixel_frames(ds, path)
    if len(per_frame) != frames.shape[0]:
        raise StudyDataError(f"file '{path}': PerFrameFunctionalGroupsSequence has {len(per_frame)} items for "
                             f"{frames.shape[0]} frames", file=path, field="PerFrameFunctionalGroupsSequence")
    result = []
    for index, groups in enumerate(per_frame):
        def group_value(sequence, keyword, count=None):
            for source in (groups, shared):
                if source is None:
                    continue
                item = located(dicomfields.first_item, path, source, sequence)
                if item is not None and keyword in item:
                    if count is None:
                        return located(dicomfields.number, path, item, keyword)
                    return located(dicomfields.numbers, path, item, keyword, count)
            return None

        name = f"{path} frame {index + 1}"
        position = required(group_value("PlanePositionSequence", "ImagePositionPatient", 3),
                            "PlanePositionSequence/ImagePositionPatient", name)
        orientation = required(group_value("PlaneOrientationSequence", "ImageOrientationPatient", 6),
                               "PlaneOrientationSequence/ImageOrientationPatient", name)
        spacing = positive_spacing(required(group_value("PixelMeasuresSequence", "PixelSpacing", 2),
                                            "PixelMeasuresSequence/PixelSpacing", name), "PixelSpacing", name)
        slope = group_value("PixelValueTransformationSequence", "RescaleSlope")
        intercept = group_value("PixelValueTransformationSequence", "RescaleIntercept")
        result.append(PlaneSlice(name, np.asarray(position), tuple(orientation), spacing, frames[index],
                                 1.0 if slope is None else slope, 0.0 if intercept is None else intercept))
    return result


def read_nm_volume(ds, path):
    """Grid, notes and rescale values of an NM reconstructed tomographic multi-frame image.

    The position and orientation come from DetectorInformationSequence (where the NM Image IOD puts
    them); values at the top level of the dataset are used, with a note, when the sequence lacks them.
    ``path`` names the file in messages.
    """
    notes = []
    detector = located(dicomfields.first_item, path, ds, "DetectorInformationSequence")
    position = orientation = None
    if detector is not None:
        position = located(dicomfields.numbers, path, detector, "ImagePositionPatient", 3)
        orientation = located(dicomfields.numbers, path, detector, "ImageOrientationPatient", 6)
    for keyword, count in (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6)):
        value = position if keyword == "ImagePositionPatient" else orientation
        if value is None:
            value = located(dicomfields.numbers, path, ds, keyword, count)
            if value is None:
                raise StudyDataError(f"file '{path}': field DetectorInformationSequence/{keyword} is missing, so the "
                                     f"volume cannot be placed in the patient", file=path, field=keyword)
            notes.append(f"file '{path}': {keyword} taken from the top level of the dataset because "
                         f"DetectorInformationSequence does not give it")
            if keyword == "ImagePositionPatient":
                position = value
            else:
                orientation = value
    pixel_spacing = positive_spacing(required(located(dicomfields.numbers, path, ds, "PixelSpacing", 2),
                                              "PixelSpacing", path), "PixelSpacing", path)
    slice_spacing = located(dicomfields.number, path, ds, "SpacingBetweenSlices")
    if slice_spacing is None:
        slice_spacing = located(dicomfields.number, path, ds, "SliceThickness")
        if slice_spacing is None:
            raise StudyDataError(f"file '{path}': fields SpacingBetweenSlices and SliceThickness are both missing, so "
                                 f"the distance between frames is unknown", file=path, field="SpacingBetweenSlices")
        notes.append(f"file '{path}': SpacingBetweenSlices missing; SliceThickness {slice_spacing:g} mm used as the "
                     f"distance between frames")
    frames = pixel_frames(ds, path)
    slice_count = located(dicomfields.integer, path, ds, "NumberOfSlices")
    if slice_count is not None and slice_count != frames.shape[0]:
        raise StudyDataError(f"file '{path}': field NumberOfSlices is {slice_count} but the image has "
                             f"{frames.shape[0]} frames", file=path, field="NumberOfSlices")
    slope = located(dicomfields.number, path, ds, "RescaleSlope")
    intercept = located(dicomfields.number, path, ds, "RescaleIntercept")
    values = frames.astype(np.float64)
    if slope is not None or intercept is not None:
        values = values * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)
    try:
        grid = multiframe_grid(values, position, orientation, pixel_spacing, slice_spacing)
    except StudyDataError as error:
        raise StudyDataError(f"file '{path}': {error}", file=path) from None
    notes.extend(f"file '{path}': {note}" for note in grid.notes)
    return grid, notes, {"rescale_slope": slope, "rescale_intercept": intercept}


def _without_file(error, path):
    message = str(error)
    prefix = f"file '{path}': "
    return message[len(prefix):] if message.startswith(prefix) else message
