"""How absorbed dose is shown over CT: a dose colour table whose lowest value is transparent and a lower
display threshold, so that voxels without dose leave the CT visible (as SlicerRT shows dose).
"""

import numpy as np
import slicer

#: Singleton tag of the dose colour table; one table per scene, shared by every dose volume.
DOSE_COLOUR_TABLE_TAG = "MIBGDosimetry.DoseColourTable"
DOSE_COLOUR_TABLE_NAME = "MIBG dose"
#: Number of colours of the table; entry 0 (no dose) is fully transparent.
NUMBER_OF_COLOURS = 256
#: Doses below this fraction of the maximum dose are not drawn.
LOWER_THRESHOLD_FRACTION = 0.01
#: Colour ramp from low to high dose: blue, cyan, green, yellow, red (RGB, 0-1).
_RAMP = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def dose_colour_table(scene):
    """The scene's dose colour table, created on first use: index 0 transparent, then blue to red."""
    node = scene.GetSingletonNode(DOSE_COLOUR_TABLE_TAG, "vtkMRMLColorTableNode")
    if node is not None:
        return node
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(DOSE_COLOUR_TABLE_NAME)
    node.SetSingletonTag(DOSE_COLOUR_TABLE_TAG)
    node.SetTypeToUser()
    node.SetNumberOfColors(NUMBER_OF_COLOURS)
    node.SetColor(0, "no dose", 0.0, 0.0, 0.0, 0.0)
    positions = np.linspace(0.0, 1.0, len(_RAMP))
    for index in range(1, NUMBER_OF_COLOURS):
        t = (index - 1) / (NUMBER_OF_COLOURS - 2)
        r, g, b = (float(np.interp(t, positions, _RAMP[:, channel])) for channel in range(3))
        node.SetColor(index, f"{index}", r, g, b, 1.0)
    node.SetHideFromEditors(False)
    return scene.AddNode(node)


def show_as_dose(scene, volume_node, max_dose_Gy):
    """Display ``volume_node`` with the dose colour table, a window from 0 Gy to ``max_dose_Gy`` and a lower
    threshold at :data:`LOWER_THRESHOLD_FRACTION` of the maximum, so 0 Gy is not drawn over the CT."""
    max_dose_Gy = max(float(max_dose_Gy), 1e-12)
    colour = dose_colour_table(scene)
    display = volume_node.GetDisplayNode()
    if display is None:
        volume_node.CreateDefaultDisplayNodes()
        display = volume_node.GetDisplayNode()
    display.SetAndObserveColorNodeID(colour.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, max_dose_Gy)
    display.AutoThresholdOff()
    display.SetLowerThreshold(LOWER_THRESHOLD_FRACTION * max_dose_Gy)
    display.SetUpperThreshold(max_dose_Gy * 1e3)
    display.ApplyThresholdOn()
    return display


#: Isodose levels are taken from the 1-2-5 series (Gy), at most this many, the highest below the maximum dose.
MAX_ISODOSE_LEVELS = 6
#: Colours of the isodose lines from the lowest to the highest level (RGB, 0-1).
ISODOSE_COLOURS = ((0.0, 0.0, 1.0), (0.0, 0.8, 1.0), (0.0, 1.0, 0.0), (1.0, 1.0, 0.0), (1.0, 0.5, 0.0), (1.0, 0.0, 0.0))


def isodose_levels_Gy(max_dose_Gy, lowest_fraction=LOWER_THRESHOLD_FRACTION):
    """Isodose levels (Gy) for a dose map: values of the 1-2-5 series between ``lowest_fraction`` of the
    maximum dose and the maximum itself, the highest ones kept when there are more than
    :data:`MAX_ISODOSE_LEVELS`. Empty for a map without dose."""
    if not np.isfinite(max_dose_Gy) or max_dose_Gy <= 0:
        return []
    lowest = lowest_fraction * max_dose_Gy
    levels = []
    for exponent in range(int(np.floor(np.log10(lowest))), int(np.ceil(np.log10(max_dose_Gy))) + 1):
        for mantissa in (1.0, 2.0, 5.0):
            level = float(f"{mantissa * 10.0 ** exponent:.6g}")
            if lowest <= level < max_dose_Gy:
                levels.append(level)
    return levels[-MAX_ISODOSE_LEVELS:]


def show_isodose_lines(scene, dose_node, isodose_logic):
    """Isodose lines of ``dose_node`` at :func:`isodose_levels_Gy`, drawn by SlicerRT's Isodose module
    (``isodose_logic`` is its logic, ``slicer.modules.isodose.logic()``). Returns the isodose parameter
    node, or None when the map holds no dose. The lines are models that SlicerRT shows in the slice views."""
    max_dose_Gy = float(dose_node.GetImageData().GetScalarRange()[1]) if dose_node.GetImageData() else 0.0
    levels = isodose_levels_Gy(max_dose_Gy)
    if not levels:
        return None
    parameters = scene.AddNewNodeByClass("vtkMRMLIsodoseNode", f"{dose_node.GetName()} isodose")
    parameters.SetAndObserveDoseVolumeNode(dose_node)
    colours = isodose_logic.SetupColorTableNodeForDoseVolumeNode(dose_node)
    parameters.SetAndObserveColorTableNode(colours)
    parameters.SetDoseUnits(parameters.Gy)
    isodose_logic.SetNumberOfIsodoseLevels(parameters, len(levels))
    offset = len(ISODOSE_COLOURS) - len(levels)
    for index, level in enumerate(levels):
        red, green, blue = ISODOSE_COLOURS[offset + index]
        colours.SetColor(index, f"{level:g}", red, green, blue, 1.0)
    parameters.SetShowIsodoseLines(True)
    parameters.SetShowIsodoseSurfaces(False)
    if not isodose_logic.CreateIsodoseSurfaces(parameters):
        raise ValueError(f"SlicerRT could not make the isodose lines of '{dose_node.GetName()}'.")
    return parameters
