"""VOIs from DICOM: segmentations (DICOM SEG) and RT structure sets (RTSTRUCT) onto a reference grid.

Both return ``{name: boolean mask}`` on the grid of the reference ImageVolume (usually the reference
time point's SPECT or CT). DICOM coordinates are LPS; they are converted to RAS at the edge.
SEG frames are stacked by their position along the slice normal (ImagePositionPatient) into a volume
in the SEG's own geometry, which is then carried onto the reference grid by nearest neighbour.
RTSTRUCT closed planar contours are filled on their own planes and carried onto the reference grid
as a fractional occupancy (:mod:`MIBGDosimetryLib.segmentation.contour_raster`).
"""

import numpy as np
import pydicom

from MIBGDosimetryLib.registration.resample import resample_mask
from MIBGDosimetryLib.segmentation.contour_raster import contour_occupancy
from MIBGDosimetryLib.volume import LPS_TO_RAS, ImageVolume

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def _read(path, sop_class, what):
    try:
        dataset = pydicom.dcmread(str(path))
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        raise ValueError(f"Cannot read '{path}' as DICOM: {error}.") from error
    if str(dataset.get("SOPClassUID", "")) != sop_class:
        from MIBGDosimetryLib.study.scan import sop_class_name

        found = sop_class_name(str(dataset.get("SOPClassUID", "")))
        raise ValueError(f"'{path}' is not a DICOM {what} (it is a {found} object).")
    return dataset


def _frame_attribute(dataset, frame, sequence, attribute):
    """An attribute of a functional group, per frame if present there, otherwise shared."""
    for groups in (dataset.PerFrameFunctionalGroupsSequence[frame],
                   dataset.get("SharedFunctionalGroupsSequence", [None])[0]):
        if groups is not None and sequence in groups and attribute in groups[sequence][0]:
            return groups[sequence][0][attribute].value
    raise ValueError(f"The DICOM SEG frame {frame + 1} has no {sequence} {attribute}.")


def _seg_frames(dataset):
    frames = dataset.pixel_array
    frames = frames[np.newaxis] if frames.ndim == 2 else frames
    if dataset.get("SegmentationType", "BINARY") == "FRACTIONAL":
        frames = frames >= 0.5 * float(dataset.get("MaximumFractionalValue", 255))
    return frames > 0


def read_dicom_seg(path, reference):
    """Segments of a DICOM SEG file as ``{segment label: mask}`` on the grid of ImageVolume ``reference``."""
    dataset = _read(path, SEGMENTATION_STORAGE, "segmentation (SEG)")
    labels = {int(item.SegmentNumber): str(item.get("SegmentLabel", f"Segment {item.SegmentNumber}"))
              for item in dataset.get("SegmentSequence", [])}
    if not labels:
        raise ValueError(f"The DICOM SEG '{path}' defines no segments.")
    frames = _seg_frames(dataset)
    count = frames.shape[0]
    orientation = np.array(_frame_attribute(dataset, 0, "PlaneOrientationSequence", "ImageOrientationPatient"),
                           dtype=float)
    row_lps, column_lps = orientation[:3], orientation[3:]
    normal_lps = np.cross(row_lps, column_lps)
    pixel_spacing = [float(v) for v in _frame_attribute(dataset, 0, "PixelMeasuresSequence", "PixelSpacing")]
    positions = np.array([_frame_attribute(dataset, f, "PlanePositionSequence", "ImagePositionPatient")
                          for f in range(count)], dtype=float)
    segment_of_frame = [int(_frame_attribute(dataset, f, "SegmentIdentificationSequence", "ReferencedSegmentNumber"))
                        for f in range(count)]
    heights = positions @ normal_lps
    distinct = np.unique(np.round(heights, 3))
    slice_mm = _slice_spacing(dataset, distinct)
    first = positions[int(np.argmin(heights))]
    slice_index = np.round((heights - heights.min()) / slice_mm).astype(int)
    grid = ImageVolume(np.zeros((int(slice_index.max()) + 1,) + frames.shape[1:], dtype=np.uint8),
                       (pixel_spacing[1], pixel_spacing[0], slice_mm), tuple(LPS_TO_RAS @ first),
                       LPS_TO_RAS @ np.column_stack([row_lps, column_lps, normal_lps]))
    masks = {}
    for number, label in labels.items():
        volume = np.zeros(grid.array.shape, dtype=bool)
        for frame in np.flatnonzero(np.array(segment_of_frame) == number):
            volume[slice_index[frame]] |= frames[frame]
        masks[label] = resample_mask(volume, grid, reference, np.eye(4))
    return masks


def _slice_spacing(dataset, distinct_heights):
    shared = dataset.get("SharedFunctionalGroupsSequence", [None])[0]
    if shared is not None and "PixelMeasuresSequence" in shared:
        measures = shared.PixelMeasuresSequence[0]
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            if keyword in measures and float(measures[keyword].value) > 0:
                return float(measures[keyword].value)
    if len(distinct_heights) > 1:
        return float(np.min(np.diff(distinct_heights)))
    return 1.0


def read_rtstruct(path, reference, threshold=0.5):
    """ROIs of an RT structure set as ``{ROI name: mask}`` on the grid of ImageVolume ``reference``.

    Each ROI's closed planar contours are rasterised on their own planes and carried onto the
    reference grid as a fractional occupancy (:mod:`contour_raster`); a voxel belongs to the ROI when
    at least ``threshold`` of it lies inside. Contours may be finer or coarser than the reference
    slices and need not be parallel to them, but the contours of one ROI must share one plane
    orientation.
    """
    return {name: occupancy >= threshold for name, occupancy in read_rtstruct_occupancy(path, reference).items()}


def read_rtstruct_occupancy(path, reference):
    """ROIs of an RT structure set as ``{ROI name: fraction of each voxel inside}`` on ``reference``."""
    dataset = _read(path, RT_STRUCTURE_SET_STORAGE, "RT structure set (RTSTRUCT)")
    names = {int(item.ROINumber): str(item.ROIName) for item in dataset.get("StructureSetROISequence", [])}
    if not names:
        raise ValueError(f"The RT structure set '{path}' defines no ROIs.")
    contours_of = {}
    for roi in dataset.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        name = names.get(number, f"ROI {number}")
        contours = contours_of.setdefault(name, [])
        for contour in roi.get("ContourSequence", []):
            if contour.get("ContourGeometricType", "") != "CLOSED_PLANAR":
                continue
            contours.append(np.asarray(contour.ContourData, dtype=float).reshape(-1, 3))
    return {name: contour_occupancy(contours, reference, name) for name, contours in contours_of.items()}
