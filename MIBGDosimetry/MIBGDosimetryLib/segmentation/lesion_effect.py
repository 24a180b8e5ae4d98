"""What the Segment Editor effect "MIBG adaptive threshold" computes, without any GUI.

The effect delineates a clicked lesion with the threshold model of a calibration record node, the same
model object the dose workflow uses (``CalibrationRecord.threshold_model``), whatever its form
(inverse-volume coefficients or fractions interpolated between calibrated inserts).
"""

from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask, contrast_check_text
from MIBGDosimetryLib.volume import ImageVolume


def threshold_model_of_record_node(record_node):
    """The adaptive-threshold model stored in a calibration record node (``vtkMRMLTextNode``)."""
    from MIBGCalibrationLib.record import CalibrationRecord

    if record_node is None:
        raise ValueError("Select the calibration record whose adaptive-threshold model delineates the lesion.")
    model = CalibrationRecord.from_node(record_node).threshold_model
    if model is None:
        raise ValueError(f"The calibration record '{record_node.GetName()}' has no adaptive-threshold model; "
                         "calibrate it with the sphere-insert phantom in the MIBG Calibration module.")
    return model


def delineate_lesion(scene, source_volume_node, seed_ras_mm, record_node):
    """Delineate the lesion at ``seed_ras_mm`` on ``source_volume_node`` (SPECT) with the record's model.

    Returns ``(mask, info, spect)``: the boolean mask on the SPECT grid, the information dict of
    :func:`adaptive_threshold_mask` and the SPECT as an :class:`ImageVolume` (the mask's grid).
    """
    if source_volume_node is None:
        raise ValueError("Select the SPECT as source volume.")
    if seed_ras_mm is None:
        raise ValueError("Click the lesion in a slice view first.")
    model = threshold_model_of_record_node(record_node)
    spect = ImageVolume.from_node(scene, source_volume_node)
    mask, info = adaptive_threshold_mask(spect, seed_ras_mm=list(seed_ras_mm), model=model)
    return mask, info, spect


def result_text(info):
    """The effect's one-paragraph result: volume, fraction, whether it converged, and why not or what
    the contrast check found (see :func:`adaptive_threshold_mask`)."""
    state = "converged" if info["converged"] else "NOT converged, check the result"
    text = f"{info['volume_ml']:.2f} mL, threshold fraction {info['fraction']:.3f}, {state}"
    notes = [info.get("warning"), info.get("ambiguity")]
    if info.get("contrast_check"):
        notes.append(contrast_check_text(info["contrast_check"]))
    notes = [note for note in notes if note]
    return text + ("" if not notes else ". " + ". ".join(note[0].upper() + note[1:] for note in notes) + ".")


#: Attribute of the segmentation node that previews an outline before it is applied (never saved).
PREVIEW_ATTRIBUTE = "MIBGDosimetry.ThresholdPreview"
PREVIEW_NODE_NAME = "MIBG adaptive threshold preview"
PREVIEW_COLOUR = (1.0, 1.0, 0.0)
#: Attribute of the markups node that holds the seed points clicked for lesions.
SEEDS_ATTRIBUTE = "MIBGDosimetry.LesionSeeds"
SEEDS_NODE_NAME = "MIBG lesion seeds"


def show_preview(scene, mask, spect):
    """Show ``mask`` (on the grid of ImageVolume ``spect``) as an outline over the slice views, in a
    segmentation node of its own that replaces any earlier preview and is not saved with the scene.
    The user's segmentation is not touched until the outline is applied. Returns the preview node."""
    from MIBGDosimetryLib.segmentation.segments import add_mask_segment

    remove_preview(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", PREVIEW_NODE_NAME)
    node.SetAttribute(PREVIEW_ATTRIBUTE, "1")
    node.SetHideFromEditors(True)
    node.SetSaveWithScene(False)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetVisibility2DFill(False)
    display.SetVisibility2DOutline(True)
    display.SetSliceIntersectionThickness(2)
    add_mask_segment(scene, node, mask, spect, "adaptive-threshold preview", PREVIEW_COLOUR)
    return node


def remove_preview(scene):
    """Remove the preview outline (if any)."""
    for node in [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]:
        if node is not None and node.GetAttribute(PREVIEW_ATTRIBUTE) == "1":
            displays = [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
            scene.RemoveNode(node)
            for display in displays:
                if display is not None and scene.GetNodeByID(display.GetID()) is display:
                    scene.RemoveNode(display)


def mark_seed(scene, seed_ras_mm, label):
    """Put the seed of the lesion ``label`` (the segment's name) into the scene's lesion-seed markups
    node, created on first use; an earlier seed of the same lesion is moved. Returns the markups node."""
    node = next((n for n in (scene.GetNthNodeByClass(i, "vtkMRMLMarkupsFiducialNode")
                             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")))
                 if n.GetAttribute(SEEDS_ATTRIBUTE) == "1"), None)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", SEEDS_NODE_NAME)
        node.SetAttribute(SEEDS_ATTRIBUTE, "1")
        node.CreateDefaultDisplayNodes()
    position = [float(v) for v in seed_ras_mm]
    for index in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointLabel(index) == label:
            node.SetNthControlPointPosition(index, *position)
            return node
    node.AddControlPoint(*position, label)
    return node
