"""Segment Editor effect "MIBG adaptive threshold": click a lesion on the SPECT, preview, apply.

A thin shell over :func:`MIBGDosimetryLib.segmentation.lesion_effect.delineate_lesion`, which uses the
threshold model of the selected calibration record exactly as the dose workflow does.
Slicer loads this file as a module named after its folder (``MIBGAdaptiveThresholdEffectLib``).
"""

import os

import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect
from slicer.i18n import tr as _

from MIBGCalibrationLib.record import NODE_ATTRIBUTE
from MIBGDosimetryLib.segmentation.lesion_effect import (delineate_lesion, mark_seed, remove_preview, result_text,
                                                         show_preview, threshold_model_of_record_node)
from MIBGDosimetryLib.segmentation.segments import set_segment_mask

#: Effect parameter holding the ID of the calibration record node.
RECORD_PARAMETER = "CalibrationRecordNodeID"


class SegmentEditorMIBGAdaptiveThresholdEffect(AbstractScriptedSegmentEditorEffect):
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
        iconPath = os.path.join(os.path.dirname(__file__), "SegmentEditorMIBGAdaptiveThresholdEffect.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self):
        return _("<html>Delineate a lesion on SPECT with the calibrated adaptive threshold.<p>"
                 "Select the calibration record, click the lesion in a slice view (the seed is kept as a point "
                 "of the 'MIBG lesion seeds' markups, named after the segment), press <b>Preview</b> to see its "
                 "outline in yellow over the slice views and its volume, then <b>Apply</b> to write it into the "
                 "selected segment. The threshold model is the calibration record's, the same one the dose "
                 "calculation uses.</html>")

    def setupOptionsFrame(self):
        self.calibrationSelector = slicer.qMRMLNodeComboBox()
        self.calibrationSelector.nodeTypes = ["vtkMRMLTextNode"]
        self.calibrationSelector.addAttribute("vtkMRMLTextNode", NODE_ATTRIBUTE, "1")
        self.calibrationSelector.noneEnabled = True
        self.calibrationSelector.addEnabled = False
        self.calibrationSelector.removeEnabled = False
        self.calibrationSelector.setMRMLScene(slicer.mrmlScene)
        self.calibrationSelector.toolTip = _("Calibration record whose adaptive-threshold model delineates the lesion.")
        self.calibrationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onCalibrationChanged)
        self.scriptedEffect.addLabeledOptionsWidget(_("Calibration record:"), self.calibrationSelector)
        self.modelLabel = qt.QLabel("")
        self.modelLabel.wordWrap = True
        self.scriptedEffect.addLabeledOptionsWidget(_("Threshold model:"), self.modelLabel)
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
        self.scriptedEffect.setParameter(RECORD_PARAMETER, node.GetID() if node is not None else "")
        self.previewMask = None
        self.modelLabel.text = ""
        if node is None:
            return
        with slicer.util.tryWithErrorDisplay(_("This calibration record cannot be used."), waitCursor=True):
            self.modelLabel.text = threshold_model_of_record_node(node).describe()

    def setMRMLDefaults(self):
        self.scriptedEffect.setParameterDefault(RECORD_PARAMETER, "")

    def updateGUIFromMRML(self):
        node = self._recordNode()
        if self.calibrationSelector.currentNode() is not node:
            wasBlocked = self.calibrationSelector.blockSignals(True)
            self.calibrationSelector.setCurrentNode(node)
            self.calibrationSelector.blockSignals(wasBlocked)

    def updateMRMLFromGUI(self):
        node = self.calibrationSelector.currentNode()
        self.scriptedEffect.setParameter(RECORD_PARAMETER, node.GetID() if node is not None else "")

    def _segmentName(self):
        parameterSetNode = self.scriptedEffect.parameterSetNode()
        segment = parameterSetNode.GetSegmentationNode().GetSegmentation().GetSegment(
            parameterSetNode.GetSelectedSegmentID()) if parameterSetNode.GetSegmentationNode() else None
        return segment.GetName() if segment is not None else _("lesion")

    def deactivate(self):
        remove_preview(slicer.mrmlScene)

    def _recordNode(self):
        nodeId = self.scriptedEffect.parameter(RECORD_PARAMETER)
        return slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if eventId != vtk.vtkCommand.LeftButtonPressEvent or viewWidget.className() != "qMRMLSliceWidget":
            return False
        xy = callerInteractor.GetEventPosition()
        xyToRas = viewWidget.sliceLogic().GetSliceNode().GetXYToRAS()
        self.seedRas = [float(v) for v in xyToRas.MultiplyPoint((xy[0], xy[1], 0.0, 1.0))[:3]]
        self.previewMask = None
        remove_preview(slicer.mrmlScene)
        mark_seed(slicer.mrmlScene, self.seedRas, self._segmentName())
        self.seedLabel.text = _("Seed at R {0:.1f}, A {1:.1f}, S {2:.1f} mm").format(*self.seedRas)
        self.resultLabel.text = ""
        return True

    def _compute(self):
        sourceNode = self.scriptedEffect.parameterSetNode().GetSourceVolumeNode()
        mask, info, spect = delineate_lesion(slicer.mrmlScene, sourceNode, self.seedRas, self._recordNode())
        self.previewMask = (sourceNode.GetID(), mask, spect)
        show_preview(slicer.mrmlScene, mask, spect)
        self.resultLabel.text = result_text(info)

    def onPreview(self):
        with slicer.util.tryWithErrorDisplay(_("Adaptive threshold failed."), waitCursor=True):
            self._compute()

    def onApply(self):
        with slicer.util.tryWithErrorDisplay(_("Adaptive threshold failed."), waitCursor=True):
            sourceNode = self.scriptedEffect.parameterSetNode().GetSourceVolumeNode()
            if self.previewMask is None or sourceNode is None or self.previewMask[0] != sourceNode.GetID():
                self._compute()
            _sourceId, mask, spect = self.previewMask
            parameterSetNode = self.scriptedEffect.parameterSetNode()
            self.scriptedEffect.saveStateForUndo()
            set_segment_mask(slicer.mrmlScene, parameterSetNode.GetSegmentationNode(),
                             parameterSetNode.GetSelectedSegmentID(), mask, spect)
            self.previewMask = None
            remove_preview(slicer.mrmlScene)
