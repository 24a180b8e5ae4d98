"""MIBGCalibration: the quantitative 131I SPECT calibration chain (EANM guidance eqs. 4-8).

Camera calibration factor, recovery coefficients, paralysable dead time, TEW scatter and Chang
attenuation correction, OSEM update choice and adaptive-threshold calibration. The result is a
calibration record (MRML node and JSON) that the MIBGDosimetry module references.
The module file holds only the Slicer glue; the computation lives in ``MIBGCalibrationLib``.
"""

import logging
import pathlib

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper

#
# MIBGCalibration
#


class MIBGCalibration(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MIBG Calibration")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerMIBGDosimetry contributors"]
        self.parent.helpText = _(
            "Quantitative 131I SPECT calibration from phantom data: calibration factor Q, recovery "
            "coefficients, dead time, scatter and attenuation correction, OSEM updates and the "
            "adaptive-threshold model, saved as a calibration record.")
        self.parent.acknowledgementText = _(
            "Methods follow the EANM dosimetry guidance for 131I-mIBG therapy of neuroblastoma.")


#
# MIBGCalibrationParameterNode
#


@parameterNodeWrapper
class MIBGCalibrationParameterNode:
    """Settings of the module, saved with the scene.

    phantomDirectory - folder with the calibration phantom acquisitions (DICOM).
    outputFile - calibration record (JSON) to write.
    """

    phantomDirectory: pathlib.Path
    outputFile: pathlib.Path


#
# MIBGCalibrationWidget
#


class MIBGCalibrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: reads the panel, calls the logic, shows the results."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MIBGCalibration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MIBGCalibrationLogic()
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
        with slicer.util.tryWithErrorDisplay(_("Calibration failed."), waitCursor=True):
            self.logic.process(self._parameterNode.phantomDirectory, self._parameterNode.outputFile)
            self.ui.statusLabel.text = _("Calibration record written.")


#
# MIBGCalibrationLogic
#


class MIBGCalibrationLogic(ScriptedLoadableModuleLogic):
    """Adapter between the Slicer application and the GUI-free ``MIBGCalibrationLib``."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MIBGCalibrationParameterNode(super().getParameterNode())

    def process(self, phantomDirectory, outputFile):
        if not phantomDirectory or str(phantomDirectory) in ("", "."):
            raise ValueError(_("Choose the folder with the calibration phantom acquisitions first."))
        if not outputFile or str(outputFile) in ("", "."):
            raise ValueError(_("Choose where to write the calibration record first."))
        raise NotImplementedError(_("Phantom calibration is not available in this version."))


#
# MIBGCalibrationTest
#


class MIBGCalibrationTest(ScriptedLoadableModuleTest):
    """Self-test run inside the Slicer application; the library's tests run with pytest."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_missing_inputs_are_reported()

    def test_missing_inputs_are_reported(self):
        with self.assertRaises(ValueError):
            MIBGCalibrationLogic().process("", "")
        logging.info("MIBGCalibration self-test passed")
