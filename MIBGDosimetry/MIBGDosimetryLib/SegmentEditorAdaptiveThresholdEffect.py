"""Segment Editor effect "MIBG adaptive threshold": click a lesion on the SPECT, preview, apply.

A thin shell over :func:`MIBGDosimetryLib.segmentation.adaptive_threshold.adaptive_threshold_mask`,
which holds the method and its tests. The threshold model coefficients (fraction = a + b / V + c / C)
come from the calibration record written by the MIBG Calibration module.
"""

import os

import ctk
import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect
from slicer.i18n import tr as _

from MIBGCalibrationLib.record import NODE_ATTRIBUTE, CalibrationRecord
from MIBGCalibrationLib.threshold import ThresholdModel
from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask
from MIBGDosimetryLib.segmentation.segments import set_segment_mask
from MIBGDosimetryLib.volume import ImageVolume


class SegmentEditorAdaptiveThresholdEffect(AbstractScriptedSegmentEditorEffect):
    """Delineates the clicked lesion with the calibrated adaptive threshold."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "MIBG adaptive threshold"
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.seedRas = None
        self.previewMask = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "Icons",
                                "SegmentEditorAdaptiveThreshold.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self):
        return _("<html>Delineate a lesion on SPECT with the calibrated adaptive threshold.<p>"
                 "Click the lesion in a slice view, press <b>Preview</b> to see its volume, then <b>Apply</b> "
                 "to write it into the selected segment. The threshold fraction a + b/V + c/C comes from the "
                 "calibration record.</html>")

    def setupOptionsFrame(self):
        self.calibrationSelector = slicer.qMRMLNodeComboBox()
        self.calibrationSelector.nodeTypes = ["vtkMRMLTextNode"]
        self.calibrationSelector.addAttribute("vtkMRMLTextNode", NODE_ATTRIBUTE, "1")
        self.calibrationSelector.noneEnabled = True
        self.calibrationSelector.addEnabled = False
        self.calibrationSelector.removeEnabled = False
        self.calibrationSelector.setMRMLScene(slicer.mrmlScene)
        self.calibrationSelector.toolTip = _("Calibration record whose threshold model fills the coefficients below.")
        self.calibrationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onCalibrationChanged)
        self.scriptedEffect.addLabeledOptionsWidget(_("Calibration record:"), self.calibrationSelector)
        self.coefficientBoxes = {}
        for name, default in (("a", 0.40), ("b", 0.5), ("c", 0.0)):
            box = ctk.ctkDoubleSpinBox()
            box.decimals = 4
            box.minimum = -10.0
            box.maximum = 10.0
            box.singleStep = 0.01
            box.value = default
            box.toolTip = _("Threshold model coefficient {name} (fraction = a + b / V + c / C).").format(name=name)
            box.connect("valueChanged(double)", self.updateMRMLFromGUI)
            self.coefficientBoxes[name] = box
            self.scriptedEffect.addLabeledOptionsWidget(_("Model {name}:").format(name=name), box)
        self.seedLabel = qt.QLabel(_("Click the lesion in a slice view."))
        self.scriptedEffect.addOptionsWidget(self.seedLabel)
        self.resultLabel = qt.QLabel("")
        self.resultLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.resultLabel)
        self.previewButton = qt.QPushButton(_("Preview"))
        self.previewButton.connect("clicked()", self.onPreview)
        self.applyButton = qt.QPushButton(_("Apply"))
        self.applyButton.connect("clicked()", self.onApply)
        buttons = qt.QHBoxLayout()
        buttons.addWidget(self.previewButton)
        buttons.addWidget(self.applyButton)
        self.scriptedEffect.addOptionsWidget(buttons)

    def onCalibrationChanged(self, node):
        if node is None:
            return
        with slicer.util.tryWithErrorDisplay(_("This calibration record cannot be used."), waitCursor=True):
            model = CalibrationRecord.from_node(node).threshold_model
            if model is None:
                raise ValueError(_("The calibration record has no adaptive-threshold model; calibrate it with "
                                   "the sphere phantom."))
            for name, box in self.coefficientBoxes.items():
                box.value = getattr(model, name)

    def setMRMLDefaults(self):
        for name, default in (("a", 0.40), ("b", 0.5), ("c", 0.0)):
            self.scriptedEffect.setParameterDefault(f"Model{name}", default)

    def updateGUIFromMRML(self):
        for name, box in self.coefficientBoxes.items():
            wasBlocked = box.blockSignals(True)
            box.value = self.scriptedEffect.doubleParameter(f"Model{name}")
            box.blockSignals(wasBlocked)

    def updateMRMLFromGUI(self):
        for name, box in self.coefficientBoxes.items():
            self.scriptedEffect.setParameter(f"Model{name}", box.value)

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if eventId != vtk.vtkCommand.LeftButtonPressEvent or viewWidget.className() != "qMRMLSliceWidget":
            return False
        xy = callerInteractor.GetEventPosition()
        xyToRas = viewWidget.sliceLogic().GetSliceNode().GetXYToRAS()
        self.seedRas = [float(v) for v in xyToRas.MultiplyPoint((xy[0], xy[1], 0.0, 1.0))[:3]]
        self.previewMask = None
        self.seedLabel.text = _("Seed at R {0:.1f}, A {1:.1f}, S {2:.1f} mm").format(*self.seedRas)
        self.resultLabel.text = ""
        return True

    def _sourceNode(self):
        sourceNode = self.scriptedEffect.parameterSetNode().GetSourceVolumeNode()
        if sourceNode is None:
            raise ValueError(_("Select the SPECT as source volume."))
        return sourceNode

    def _compute(self):
        if self.seedRas is None:
            raise ValueError(_("Click the lesion in a slice view first."))
        sourceNode = self._sourceNode()
        spect = ImageVolume.from_node(slicer.mrmlScene, sourceNode)
        model = ThresholdModel(a=self.coefficientBoxes["a"].value, b=self.coefficientBoxes["b"].value,
                               c=self.coefficientBoxes["c"].value)
        mask, info = adaptive_threshold_mask(spect, self.seedRas, model)
        self.previewMask = (sourceNode.GetID(), mask, spect)
        state = _("converged") if info["converged"] else _("NOT converged, check the result")
        self.resultLabel.text = _("{volume:.2f} mL, threshold fraction {fraction:.3f}, {state}").format(
            volume=info["volume_ml"], fraction=info["fraction"], state=state)

    def onPreview(self):
        with slicer.util.tryWithErrorDisplay(_("Adaptive threshold failed."), waitCursor=True):
            self._compute()

    def onApply(self):
        with slicer.util.tryWithErrorDisplay(_("Adaptive threshold failed."), waitCursor=True):
            if self.previewMask is None or self.previewMask[0] != self._sourceNode().GetID():
                self._compute()
            _sourceId, mask, spect = self.previewMask
            parameterSetNode = self.scriptedEffect.parameterSetNode()
            self.scriptedEffect.saveStateForUndo()
            set_segment_mask(slicer.mrmlScene, parameterSetNode.GetSegmentationNode(),
                             parameterSetNode.GetSelectedSegmentID(), mask, spect)
            self.previewMask = None
