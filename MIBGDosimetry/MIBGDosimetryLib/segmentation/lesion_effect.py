"""What the Segment Editor effect "MIBG adaptive threshold" computes, without any GUI.

The effect delineates a clicked lesion with the threshold model of a calibration record node, the same
model object the dose workflow uses (``CalibrationRecord.threshold_model``), whatever its form
(inverse-volume coefficients or fractions interpolated between calibrated inserts).
"""

from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask
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
