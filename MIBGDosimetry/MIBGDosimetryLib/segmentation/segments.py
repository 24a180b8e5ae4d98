"""VOI masks in MRML segmentation nodes, and VOIs carried from the reference to a time point.

Masks are boolean arrays on the grid of an ImageVolume. Temporary labelmap nodes carry the
geometry to Slicer's segmentations logic and are removed again, so the scene keeps only the
segmentation.
"""

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from MIBGDosimetryLib import mrml
from MIBGDosimetryLib.registration.resample import resample_mask
from MIBGDosimetryLib.registration.transforms import check_matrix


def _check_mask(mask, grid):
    mask = np.asarray(mask)
    if mask.shape != grid.array.shape:
        raise ValueError(f"The mask has shape {mask.shape} but the image has shape {grid.array.shape}.")
    return mask.astype(bool)


def _labelmap_node(scene, grid, array, name):
    """A labelmap node without display nodes (it only carries data to the segmentations logic)."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    mrml.set_volume_geometry(node, grid.spacing_mm, grid.origin_ras_mm, grid.directions)
    image = vtk.vtkImageData()
    image.SetDimensions(*array.shape[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array, dtype=np.uint8).ravel(),
                                                               deep=True))
    node.SetAndObserveImageData(image)
    return node


def set_segment_mask(scene, segmentation_node, segment_id, mask, grid):
    """Replace the content of an existing segment by ``mask`` (on the grid of ImageVolume ``grid``)."""
    mask = _check_mask(mask, grid)
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError(f"The segmentation '{segmentation_node.GetName()}' has no segment '{segment_id}'.")
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    labelmap = _labelmap_node(scene, grid, mask.astype(np.uint8), "VOI labelmap")
    try:
        image = logic.CreateOrientedImageDataFromVolumeNode(labelmap)
        if not logic.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, logic.MODE_REPLACE):
            raise RuntimeError(f"Could not write the VOI into segment '{segment_id}'.")
    finally:
        scene.RemoveNode(labelmap)


def add_mask_segment(scene, segmentation_node, mask, grid, name, color=(1.0, 0.2, 0.2)):
    """Add ``mask`` (on the grid of ImageVolume ``grid``) as a new segment; returns its segment ID."""
    mask = _check_mask(mask, grid)
    if not mask.any():
        raise ValueError(f"The VOI '{name}' is empty; nothing to add to the segmentation.")
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", name, list(color))
    set_segment_mask(scene, segmentation_node, segment_id, mask, grid)
    return segment_id


def mask_from_segment(scene, segmentation_node, segment_id, grid):
    """The segment as a boolean array on the grid of ImageVolume ``grid`` (Slicer's export to a labelmap)."""
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError(f"The segmentation '{segmentation_node.GetName()}' has no segment '{segment_id}'.")
    geometry = _labelmap_node(scene, grid, np.zeros(grid.array.shape, dtype=np.uint8), "VOI geometry")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "VOI export")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, geometry, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
            raise RuntimeError(f"Could not export segment '{segment_id}'.")
        array = mrml.array_from_volume(scene, labelmap)
    finally:
        scene.RemoveNode(geometry)
        scene.RemoveNode(labelmap)
    return array > 0


def map_mask_to_timepoint(mask, reference_grid, timepoint_grid, matrix_ras):
    """Carry a VOI from the reference grid to a time point's grid (nearest neighbour).

    ``matrix_ras`` is the registration result of that time point (RAS 4x4, reference -> time point);
    the time point's grid points are taken back to the reference frame with its inverse.
    """
    mask = _check_mask(mask, reference_grid)
    return resample_mask(mask, reference_grid, timepoint_grid, np.linalg.inv(check_matrix(matrix_ras)))
