"""MIBGDosimetry: patient-specific absorbed dose for 131I-mIBG therapy from sequential SPECT/CT.

The module file holds only the Slicer glue (Module, parameter node, Widget, Logic adapter, Test);
the computation lives in the GUI-free package ``MIBGDosimetryLib``.
"""

import logging
import os
import pathlib
from typing import Annotated

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper

#: Attribute that marks calibration record nodes (MIBGCalibrationLib.record.NODE_ATTRIBUTE).
CALIBRATION_NODE_ATTRIBUTE = "MIBGCalibration.Record"

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
    calibrationNode - calibration record node made by the MIBG Calibration module.
    calibrationFile - calibration record (JSON), used when no record node is selected.
    outputDirectory - folder that receives results, scene, RT Dose, SEG and report.
    partialVolumeMethod - auto, gtm, recovery or none.
    tacModel - time-activity model of the VOIs: auto, mono, bi, tri or trapezoid.
    densityCorrection - scale the kernel dose by (kernel density 1.04 g/cm3) / density from the CT.
    deformableRegistration - add a B-spline stage to the CT-to-CT registration.
    """

    studyDirectory: pathlib.Path
    calibrationNode: slicer.vtkMRMLTextNode
    calibrationFile: pathlib.Path
    outputDirectory: pathlib.Path
    partialVolumeMethod: Annotated[str, Choice(["auto", "gtm", "recovery", "none"])] = "auto"
    tacModel: Annotated[str, Choice(["auto", "mono", "bi", "tri", "trapezoid"])] = "auto"
    densityCorrection: bool = False
    deformableRegistration: bool = False


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
        self.ui.calibrationNodeSelector.addAttribute("vtkMRMLTextNode", CALIBRATION_NODE_ATTRIBUTE, "1")
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

    def log(self, message):
        self.ui.statusLabel.text = message
        slicer.app.processEvents()

    def onApplyButton(self):
        with slicer.util.tryWithErrorDisplay(_("Dose calculation failed."), waitCursor=True):
            p = self._parameterNode
            result = self.logic.process(p.studyDirectory, p.calibrationNode, p.calibrationFile, p.outputDirectory,
                                        partialVolumeMethod=p.partialVolumeMethod, tacModel=p.tacModel,
                                        densityCorrection=p.densityCorrection,
                                        deformableRegistration=p.deformableRegistration, log=self.log)
            self.ui.resultsTableView.setMRMLTableNode(result["table"])
            warnings = result["warnings"]
            self.ui.warningsTextEdit.plainText = "\n".join(warnings) if warnings else _("No warnings.")
            self.ui.statusLabel.text = _("Results written to {path}").format(path=result["written"]["results"])


#
# MIBGDosimetryLogic
#


class MIBGDosimetryLogic(ScriptedLoadableModuleLogic):
    """Adapter between the Slicer application and the GUI-free ``MIBGDosimetryLib``."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MIBGDosimetryParameterNode(super().getParameterNode())

    def process(self, studyDirectory, calibrationNode, calibrationFile, outputDirectory, partialVolumeMethod="auto",
                tacModel="auto", densityCorrection=False, deformableRegistration=False, log=logging.info):
        """Run the dose calculation, write its outputs and show the results in the scene.

        Returns a dict with the results table node, the written files and the warnings.
        """
        from MIBGCalibrationLib.record import CalibrationRecord
        from MIBGDosimetryLib import mrml
        from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose
        from MIBGDosimetryLib.workflow.outputs import build_scene, write_outputs

        if not _isSet(studyDirectory):
            raise ValueError(_("Choose the folder with the SPECT/CT study first."))
        if not _isSet(outputDirectory):
            raise ValueError(_("Choose an output folder first."))
        if calibrationNode is not None:
            calibration = CalibrationRecord.from_node(calibrationNode)
        elif _isSet(calibrationFile):
            calibration = str(calibrationFile)
        else:
            raise ValueError(_("Select a calibration record node or a calibration record file first."))
        options = DoseOptions(partial_volume=partialVolumeMethod, tac_model=tacModel,
                              density_correction=densityCorrection, deformable_registration=deformableRegistration)
        calculation = run_dose(str(studyDirectory), calibration, options, log=log)
        written = write_outputs(calculation, str(outputDirectory), log=log)
        context = mrml.SceneContext(slicer.mrmlScene, slicer.app.applicationLogic())
        build_scene(calculation, context)
        table = slicer.mrmlScene.GetFirstNodeByName("Dose results")
        ct = slicer.mrmlScene.GetFirstNodeByName(f"CT {calculation.study.timepoints[options.reference_index].label}")
        dose = slicer.mrmlScene.GetFirstNodeByName("Absorbed dose (Gy)")
        slicer.util.setSliceViewerLayers(background=ct, foreground=dose, foregroundOpacity=0.5, fit=True)
        return {"table": table, "written": written, "warnings": calculation.results["warnings"]}

    def runDemo(self, outputDirectory):
        from MIBGDosimetryLib.demo import run_demo

        if not _isSet(outputDirectory):
            raise ValueError(_("Choose an output folder first."))
        return run_demo(str(outputDirectory), log=logging.info)


def _isSet(path):
    return path is not None and str(path) not in ("", ".")


#
# MIBGDosimetryTest
#


class MIBGDosimetryTest(ScriptedLoadableModuleTest):
    """Self-test run inside the Slicer application; the library's tests run with pytest."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_missing_inputs_are_reported()

    def test_missing_inputs_are_reported(self):
        with self.assertRaises(ValueError):
            MIBGDosimetryLogic().process("", None, "", "")
