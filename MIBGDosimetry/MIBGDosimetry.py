"""MIBGDosimetry: patient-specific absorbed dose for 131I-mIBG therapy from sequential SPECT/CT.

The module file holds only the Slicer glue (Module, parameter node, Widget, Logic adapter, Test);
the computation lives in the GUI-free package ``MIBGDosimetryLib``.
"""

import logging
import os
import pathlib

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper

#
# MIBGDosimetry
#


class MIBGDosimetry(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MIBG Dosimetry")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerMIBGDosimetry contributors"]
        self.parent.helpText = _(
            "Absorbed dose for 131I-mIBG molecular radiotherapy from sequential SPECT/CT: registration, "
            "VOIs with an adaptive threshold, activity from counts with a calibration record, "
            "time-activity curves, voxel-kernel dose, DVH, BED/EUD and uncertainties.")
        self.parent.acknowledgementText = _(
            "Methods follow the EANM dosimetry guidance for 131I-mIBG therapy of neuroblastoma.")
        slicer.app.connect("startupCompleted()", registerAdaptiveThresholdEffect)


def registerAdaptiveThresholdEffect():
    """Add the "MIBG adaptive threshold" effect to the Segment Editor (once, after Slicer has started)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    factory = slicer.qSlicerSegmentEditorEffectFactory.instance()
    if any(effect.name == "MIBG adaptive threshold" for effect in factory.registeredEffects()):
        return
    effect = effects.qSlicerSegmentEditorScriptedEffect(None)
    effectPath = os.path.join(os.path.dirname(__file__), "MIBGDosimetryLib", "SegmentEditorAdaptiveThresholdEffect.py")
    effect.setPythonSource(effectPath.replace("\\", "/"))
    effect.self().register()


#
# MIBGDosimetryParameterNode
#


@parameterNodeWrapper
class MIBGDosimetryParameterNode:
    """Settings of the module, saved with the scene.

    studyDirectory - folder with the sequential SPECT/CT DICOM study.
    calibrationFile - calibration record (JSON) written by the MIBGCalibration module.
    outputDirectory - folder that receives results, report and exports.
    """

    studyDirectory: pathlib.Path
    calibrationFile: pathlib.Path
    outputDirectory: pathlib.Path


#
# MIBGDosimetryWidget
#


class MIBGDosimetryWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: reads the panel, calls the logic, shows the results."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MIBGDosimetry.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MIBGDosimetryLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onApplyButton(self):
        with slicer.util.tryWithErrorDisplay(_("Dose calculation failed."), waitCursor=True):
            summary = self.logic.runDemo(self._parameterNode.outputDirectory)
            self.ui.statusLabel.text = _("Results written to {path}").format(path=summary["results"])


#
# MIBGDosimetryLogic
#


class MIBGDosimetryLogic(ScriptedLoadableModuleLogic):
    """Adapter between the Slicer application and the GUI-free ``MIBGDosimetryLib``."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MIBGDosimetryParameterNode(super().getParameterNode())

    def runDemo(self, outputDirectory):
        from MIBGDosimetryLib.demo import run_demo

        if not outputDirectory or str(outputDirectory) in ("", "."):
            raise ValueError(_("Choose an output folder first."))
        return run_demo(str(outputDirectory), log=logging.info)


#
# MIBGDosimetryTest
#


class MIBGDosimetryTest(ScriptedLoadableModuleTest):
    """Self-test run inside the Slicer application; the library's tests run with pytest."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_demo_writes_scene()

    def test_demo_writes_scene(self):
        import tempfile

        outputDirectory = tempfile.mkdtemp()
        summary = MIBGDosimetryLogic().runDemo(outputDirectory)
        self.assertTrue(os.path.exists(summary["scene"]))
        self.assertTrue(summary["passed"])
