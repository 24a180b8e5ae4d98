"""VOI masks in MRML segmentation nodes, and VOIs carried from the reference to a time point.

Masks are boolean arrays on the grid of an ImageVolume. A temporary volume node gives Slicer the
geometry and is removed again, so the scene keeps only the segmentation.
"""

import numpy as np
import slicer

from MIBGDosimetryLib import mrml
from MIBGDosimetryLib.registration.resample import resample_mask
from MIBGDosimetryLib.registration.transforms import check_matrix


def _check_mask(mask, grid):
    mask = np.asarray(mask)
    if mask.shape != grid.array.shape:
        raise ValueError(f"The mask has shape {mask.shape} but the image has shape {grid.array.shape}.")
    return mask.astype(bool)


def add_mask_segment(scene, segmentation_node, mask, grid, name, color=(1.0, 0.2, 0.2)):
    """Add ``mask`` (on the grid of ImageVolume ``grid``) as a new segment; returns its segment ID."""
    mask = _check_mask(mask, grid)
    if not mask.any():
        raise ValueError(f"The VOI '{name}' is empty; nothing to add to the segmentation.")
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", name, list(color))
    geometry = grid.with_array(np.zeros(mask.shape, dtype=np.uint8)).to_node(scene, f"{name} geometry")
    try:
        with mrml.util_scene(scene):
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), segmentation_node, segment_id,
                                                            geometry)
    finally:
        scene.RemoveNode(geometry)
    return segment_id


def mask_from_segment(scene, segmentation_node, segment_id, grid):
    """The segment as a boolean array on the grid of ImageVolume ``grid``."""
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError(f"The segmentation '{segmentation_node.GetName()}' has no segment '{segment_id}'.")
    geometry = grid.with_array(np.zeros(grid.array.shape, dtype=np.uint8)).to_node(scene, "VOI geometry")
    try:
        with mrml.util_scene(scene):
            array = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, geometry)
    finally:
        scene.RemoveNode(geometry)
    return np.asarray(array) > 0


def map_mask_to_timepoint(mask, reference_grid, timepoint_grid, matrix_ras):
    """Carry a VOI from the reference grid to a time point's grid (nearest neighbour).

    ``matrix_ras`` is the registration result of that time point (RAS 4x4, reference -> time point);
    the time point's grid points are taken back to the reference frame with its inverse.
    """
    mask = _check_mask(mask, reference_grid)
    return resample_mask(mask, reference_grid, timepoint_grid, np.linalg.inv(check_matrix(matrix_ras)))
