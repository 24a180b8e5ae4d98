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
        self.parent.dependencies = ["MIBGCalibration", "Segmentations", "Sequences", "Tables", "Plots"]
        self.parent.contributors = [
            "SlicerMIBGDosimetry medical physicists (dosimetry methods and validation)",
            "SlicerMIBGDosimetry software developers (Slicer modules and library)"]
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
    # Slicer loads the file as a module named after its folder: the folder holds only the effect.
    effectPath = os.path.join(os.path.dirname(__file__), "MIBGAdaptiveThresholdEffectLib",
                              "SegmentEditorMIBGAdaptiveThresholdEffect.py")
    effect.setPythonSource(effectPath.replace("\\", "/"))
    effect.self().register()


def ensurePythonPackages():
    """Install the Python packages that Slicer does not bundle (``Resources/requirements.txt``), after asking.

    Slicer's bundled numpy, pydicom, vtk, scipy and SimpleITK are pinned to their installed versions with a
    pip constraints file, so installing e.g. highdicom never replaces them. Raises ``ValueError`` when the
    user declines.
    """
    import tempfile

    from MIBGDosimetryLib import dependencies

    requirementsPath = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
    missing = dependencies.missing_requirements(dependencies.read_requirements(requirementsPath))
    if not missing:
        return
    constraints = dependencies.bundled_constraints(dependencies.installed_versions())
    with tempfile.TemporaryDirectory() as folder:
        constraintsPath = os.path.join(folder, "constraints.txt")
        with open(constraintsPath, "w", encoding="utf-8") as stream:
            stream.write("\n".join(constraints) + "\n")
        try:
            from slicer import packaging
        except ImportError:  # Slicer before 5.12
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            # Asks the user, shows a progress dialog and reports a restart need (Slicer 5.12 and later).
            packaging.pip_ensure(missing, constraints=constraintsPath, requester="MIBG Dosimetry")
            return
        question = _("MIBG Dosimetry needs Python packages that Slicer does not include:\n\n{packages}\n\n"
                     "Install them now? This downloads them from the Python Package Index (a few minutes); "
                     "Slicer's own numpy, pydicom and VTK are kept as they are.").format(packages="\n".join(missing))
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("Install Python packages")):
            raise ValueError(_("The calculation needs the packages {packages}; they were not installed.").format(
                packages=", ".join(missing)))
        progress = slicer.util.createProgressDialog(labelText=_("Installing {packages}...").format(
            packages=", ".join(missing)), maximum=0)
        try:
            slicer.app.processEvents()
            slicer.util.pip_install(["-c", constraintsPath] + missing)
        finally:
            progress.close()


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
    """Thin GUI: a guided panel (1. Time points, 2. Registration, 3. VOIs, 4. Dose, 5. Review, and the
    Study folder run) that reads the panel, calls the logic and shows the nodes the logic made."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = False
        self._cancelRequested = False
        self._calculation = None
        self._written = {}

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
        self.ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudy)
        self.ui.useSelectedVolumesButton.connect("clicked(bool)", self.onUseSelectedVolumes)
        self.ui.applyTimePointEditsButton.connect("clicked(bool)", self.onApplyTimePointEdits)
        self.ui.registerButton.connect("clicked(bool)", self.onRegister)
        self.ui.showRegisteredButton.connect("clicked(bool)", self.onShowRegistered)
        self.ui.openSegmentEditorButton.connect("clicked(bool)", self.onOpenSegmentEditor)
        self.ui.computeDoseButton.connect("clicked(bool)", self.onComputeDose)
        self.ui.resultsTableView.connect("clicked(QModelIndex)", self.onVoiSelected)
        self.ui.showDvhButton.connect("clicked(bool)", self.onShowDvh)
        self.ui.showIsodoseButton.connect("clicked(bool)", self.onShowIsodose)
        self.ui.showIsodoseButton.enabled = hasattr(slicer.modules, "isodose")
        if not self.ui.showIsodoseButton.enabled:
            self.ui.showIsodoseButton.toolTip = _("Isodose lines need the SlicerRT extension (Extensions Manager).")
        self.ui.writeOutputsButton.connect("clicked(bool)", self.onWriteOutputs)
        self.ui.deidentifiedExportButton.connect("clicked(bool)", self.onDeidentifiedExport)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)
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
        self._calculation, self._written = None, {}

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
            self._showNodes()

    # 1. Time points
    def onLoadStudy(self):
        with slicer.util.tryWithErrorDisplay(_("Loading the study failed."), waitCursor=True):
            if not _isSet(self._parameterNode.studyDirectory):
                raise ValueError(_("Choose the folder with the SPECT/CT study first."))
            self.logic.sceneLogic().load_study_folder(self.logic.sceneNode(), str(self._parameterNode.studyDirectory),
                                                      self.ui.calibrationNodeSelector.currentNode(),
                                                      self.ui.segmentationSelector.currentNode())
            self._showNodes()

    def onUseSelectedVolumes(self):
        with slicer.util.tryWithErrorDisplay(_("The selected volumes could not be used."), waitCursor=True):
            sceneLogic, node = self.logic.sceneLogic(), self.logic.sceneNode()
            timepoints = sceneLogic.timepoints_from_volumes(self.ui.spectVolumesSelector.checkedNodes(),
                                                            self.ui.ctVolumesSelector.checkedNodes() or None,
                                                            self.logic.dicomFileLookup())
            sceneLogic.set_inputs(node, timepoints, self.ui.segmentationSelector.currentNode(),
                                  self.ui.calibrationNodeSelector.currentNode())
            sceneLogic.update_timepoint_table(node)
            self._showNodes()

    def onApplyTimePointEdits(self):
        with slicer.util.tryWithErrorDisplay(_("The time-point edits could not be applied."), waitCursor=True):
            flags = self.logic.sceneLogic().apply_timepoint_edits(self.logic.sceneNode())
            self._showNodes()
            flagged = sum(1 for found in flags if found)
            self.ui.statusLabel.text = (_("{count} time point(s) flagged: see the flags column.").format(
                count=flagged) if flagged else _("No missing or implausible values."))

    # 2. Registration
    def onRegister(self):
        with slicer.util.tryWithErrorDisplay(_("Registration failed."), waitCursor=True):
            self.logic.sceneLogic().register(self.logic.sceneNode(), progress=self.log)
            self._showNodes()
            self.onShowRegistered()

    def onShowRegistered(self):
        sceneLogic, node = self.logic.sceneLogic(), self.logic.sceneNode()
        proxy = sceneLogic.registered_spect_proxy(node)
        if proxy is None:
            slicer.util.errorDisplay(_("Register the time points first."))
            return
        slicer.util.setSliceViewerLayers(background=sceneLogic.reference_ct(node), foreground=proxy,
                                         foregroundOpacity=0.5, fit=True)

    # 3. VOIs
    def onOpenSegmentEditor(self):
        segmentation = self.ui.segmentationSelector.currentNode()
        slicer.util.selectModule("SegmentEditor")
        if segmentation is not None:
            slicer.modules.SegmentEditorWidget.editor.setSegmentationNode(segmentation)

    # 4. Dose
    def onComputeDose(self):
        if self._running:
            self._cancelRequested = True
            self.ui.statusLabel.text = _("Cancelling after the current step...")
            return
        from MIBGDosimetryLib.scene.logic import DoseRunCancelled

        self._setRunning(True)
        try:
            with slicer.util.tryWithErrorDisplay(_("Dose calculation failed; the earlier results are kept."),
                                                 waitCursor=False):
                ensurePythonPackages()
                sceneLogic, node = self.logic.sceneLogic(), self.logic.sceneNode()
                sceneLogic.select_segmentation(node, self.ui.segmentationSelector.currentNode())
                sceneLogic.select_calibration(node, self.ui.calibrationNodeSelector.currentNode())
                try:
                    self._calculation = sceneLogic.compute_dose(node, self.logic.doseOptions(self._parameterNode),
                                                                progress=self.log,
                                                                cancel=lambda: self._cancelRequested)
                except DoseRunCancelled as cancelled:
                    self.ui.statusLabel.text = str(cancelled)
                    return
                self._written = {}
                self._showNodes()
                self._showDose()
                self.ui.statusLabel.text = _("Dose computed. Select a VOI in 5. Review to plot its time-activity curve.")
        finally:
            self._setRunning(False)

    def _setRunning(self, running):
        self._running, self._cancelRequested = running, False
        self.ui.computeDoseButton.text = _("Cancel") if running else _("Compute dose")
        # Only Cancel answers while a run goes on (events are processed between its steps).
        for section in (self.ui.timePointsCollapsibleButton, self.ui.registrationCollapsibleButton,
                        self.ui.voisCollapsibleButton, self.ui.reviewCollapsibleButton,
                        self.ui.studyFolderCollapsibleButton):
            section.enabled = not running
        self.ui.progressBar.setRange(0, 0 if running else 1)
        self.ui.progressBar.setValue(0)

    def log(self, message):
        self.ui.statusLabel.text = message
        slicer.app.processEvents()

    # 5. Review
    def onVoiSelected(self, index):
        # The first column holds the VOI name; the view may be sorted, so read the clicked row's own cell.
        name = index.sibling(index.row(), 0).data()
        if not name:
            return
        chart = self.logic.sceneLogic().tac_chart(self.logic.sceneNode(), name)
        if chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chart)

    def onShowDvh(self):
        chart = self.logic.sceneNode().GetNodeReference(self.logic.dvhChartRole())
        if chart is None:
            slicer.util.errorDisplay(_("Compute the dose first."))
            return
        slicer.modules.plots.logic().ShowChartInLayout(chart)

    def onShowIsodose(self):
        with slicer.util.tryWithErrorDisplay(_("Could not draw the isodose lines."), waitCursor=True):
            from MIBGDosimetryLib.dose_display import show_isodose_lines

            dose = self.logic.sceneNode().GetNodeReference(self.logic.doseRole())
            if dose is None:
                raise ValueError(_("Compute the dose first."))
            if show_isodose_lines(slicer.mrmlScene, dose, slicer.modules.isodose.logic()) is None:
                raise ValueError(_("The dose map holds no dose; there are no isodose lines to draw."))
            self._showDose()

    def onWriteOutputs(self):
        with slicer.util.tryWithErrorDisplay(_("Writing the outputs failed."), waitCursor=True):
            self._written = self.logic.writeOutputs(self._calculation, self._parameterNode.outputDirectory, log=self.log)
            self.ui.statusLabel.text = _("Results written to {path}").format(path=self._written["results"])

    def onDeidentifiedExport(self):
        with slicer.util.tryWithErrorDisplay(_("The de-identified export failed."), waitCursor=True):
            summary = self.logic.deidentifiedExport(self._parameterNode.outputDirectory, self._written)
            self.ui.statusLabel.text = _("De-identified copy written to {path}; the mapping file {mapping} stays "
                                         "here.").format(path=summary["out_dir"], mapping=summary["mapping"])

    def onOpenReport(self):
        import qt

        path = self._written.get("report_pdf") or self._written.get("report_html")
        if not path:
            slicer.util.errorDisplay(_("Write the outputs first; the report is written with them."))
            return
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(path))

    def _showNodes(self):
        """Show the logic's current nodes in the panel's table views and the warnings."""
        node = self.logic.sceneNode()
        views = {self.ui.timePointTableView: self.logic.timePointTableRole(),
                 self.ui.registrationTableView: self.logic.registrationTableRole(),
                 self.ui.resultsTableView: self.logic.resultsTableRole()}
        for view, role in views.items():
            view.setMRMLTableNode(node.GetNodeReference(role))
        self.ui.warningsTextEdit.plainText = self.logic.warningsText(node)
        segmentation = node.GetNodeReference(self.logic.segmentationRole())
        if segmentation is not None:
            self.ui.segmentationSelector.setCurrentNode(segmentation)

    def _showDose(self):
        """The dose of the last run over the reference CT (the dose colour table leaves 0 Gy transparent)."""
        node = self.logic.sceneNode()
        dose = node.GetNodeReference(self.logic.doseRole())
        if dose is not None:
            slicer.util.setSliceViewerLayers(background=self.logic.sceneLogic().reference_ct(node), foreground=dose,
                                             foregroundOpacity=0.7, fit=True)

    # Study folder
    def onApplyButton(self):
        with slicer.util.tryWithErrorDisplay(_("Dose calculation failed."), waitCursor=True):
            ensurePythonPackages()
            p = self._parameterNode
            result = self.logic.process(p.studyDirectory, p.calibrationNode, p.calibrationFile, p.outputDirectory,
                                        partialVolumeMethod=p.partialVolumeMethod, tacModel=p.tacModel,
                                        densityCorrection=p.densityCorrection,
                                        deformableRegistration=p.deformableRegistration, log=self.log)
            self.ui.resultsTableView.setMRMLTableNode(result["table"])
            warnings = result["warnings"]
            self.ui.warningsTextEdit.plainText = "\n".join(warnings) if warnings else _("No warnings.")
            self._written = result["written"]
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
        from MIBGDosimetryLib.scene_results import replace_results
        from MIBGDosimetryLib.workflow.outputs import write_outputs

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
        # The previous run's nodes are replaced; the shown nodes are found through the parameter node's references.
        shown = replace_results(calculation, mrml.SceneContext.of_application(slicer),
                                ScriptedLoadableModuleLogic.getParameterNode(self))
        slicer.util.setSliceViewerLayers(background=shown["ct"], foreground=shown["dose"], foregroundOpacity=0.7,
                                         fit=True)
        return {"table": shown["table"], "dose": shown["dose"], "ct": shown["ct"], "written": written,
                "warnings": calculation.results["warnings"], "results": calculation.results,
                "calculation": calculation}

    # The guided panel: the scene logic on the module's parameter node
    def sceneLogic(self):
        from MIBGDosimetryLib import mrml
        from MIBGDosimetryLib.scene.logic import SceneDoseLogic

        return SceneDoseLogic(mrml.SceneContext.of_application(slicer))

    def dicomFileLookup(self):
        """SOPInstanceUID -> file path in Slicer's DICOM database (None when no database is open), for the
        volumes loaded by the DICOM module."""
        database = getattr(slicer, "dicomDatabase", None)
        if database is None or not database.isOpen:
            return None
        return database.fileForInstance

    def sceneNode(self):
        """The module's parameter node, which references every input and result node of the panel."""
        return self.sceneLogic().adopt_parameter_node(ScriptedLoadableModuleLogic.getParameterNode(self))

    def doseOptions(self, parameterNode):
        from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions

        return DoseOptions(partial_volume=parameterNode.partialVolumeMethod, tac_model=parameterNode.tacModel,
                           density_correction=parameterNode.densityCorrection,
                           deformable_registration=parameterNode.deformableRegistration)

    def warningsText(self, node):
        """The warnings of the last dose run, one per line, as the results hold them."""
        import json

        from MIBGDosimetryLib.scene.logic import RESULTS_TEXT_ROLE

        text = node.GetNodeReference(RESULTS_TEXT_ROLE)
        if text is None:
            return ""
        warnings = json.loads(text.GetText()).get("warnings") or []
        return "\n".join(warnings) if warnings else _("No warnings.")

    def writeOutputs(self, calculation, outputDirectory, log=logging.info):
        from MIBGDosimetryLib.workflow.outputs import write_outputs

        if calculation is None:
            raise ValueError(_("Compute the dose first: the outputs are written from this session's calculation."))
        if not _isSet(outputDirectory):
            raise ValueError(_("Choose an output folder first."))
        return write_outputs(calculation, str(outputDirectory), log=log)

    def deidentifiedExport(self, outputDirectory, written):
        """De-identified copy of the study folder and the written results, beside the output folder."""
        from MIBGDosimetryLib.export.deidentify import deidentify_study
        from MIBGDosimetryLib.scene.logic import STUDY_DIRECTORY_PARAMETER

        studyDirectory = self.sceneNode().GetParameter(STUDY_DIRECTORY_PARAMETER)
        if not studyDirectory:
            raise ValueError(_("Load the study with 'Load study into scene' first: the export copies its files."))
        if not written:
            raise ValueError(_("Write the outputs first: the export includes them."))
        target = os.path.abspath(str(outputDirectory)).rstrip(os.sep) + "-deidentified"
        return deidentify_study(studyDirectory, target, target + ".mapping.json",
                                results_dir=os.path.abspath(str(outputDirectory)))

    @staticmethod
    def timePointTableRole():
        from MIBGDosimetryLib.scene.logic import TIMEPOINT_TABLE_ROLE

        return TIMEPOINT_TABLE_ROLE

    @staticmethod
    def registrationTableRole():
        from MIBGDosimetryLib.scene.logic import REGISTRATION_TABLE_ROLE

        return REGISTRATION_TABLE_ROLE

    @staticmethod
    def resultsTableRole():
        from MIBGDosimetryLib.scene.logic import RESULTS_TABLE_ROLE

        return RESULTS_TABLE_ROLE

    @staticmethod
    def dvhChartRole():
        from MIBGDosimetryLib.scene.logic import DVH_CHART_ROLE

        return DVH_CHART_ROLE

    @staticmethod
    def segmentationRole():
        from MIBGDosimetryLib.scene.logic import SEGMENTATION_ROLE

        return SEGMENTATION_ROLE

    @staticmethod
    def doseRole():
        from MIBGDosimetryLib.scene.logic import DOSE_ROLE

        return DOSE_ROLE

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
    """Self-test run inside the Slicer application (Developer Tools > Self Tests, or
    ``Slicer --python-code "slicer.selfTests['MIBGDosimetry']()"``); the library's tests run with pytest.

    It generates its own data on the fly: no download, no sample data set.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.figures = {}
        self.setUp()
        self.test_missing_inputs_are_reported()
        self.setUp()
        self.test_dose_of_a_generated_patient_study()

    def test_missing_inputs_are_reported(self):
        with self.assertRaises(ValueError):
            MIBGDosimetryLogic().process("", None, "", "")

    def test_dose_of_a_generated_patient_study(self):
        """Calibration phantom -> calibration record node -> sequential SPECT/CT of a child phantom -> dose.

        Organ and lesion (at least 4 mL) mean doses must be within 10 % of the phantom's truth, which the phantom
        computes with its own activity distribution and transport, not with the dose code. A second Apply must
        replace the first run's nodes, and the dose over CT must leave 0 Gy transparent.
        """
        import json
        import tempfile

        from MIBGCalibrationLib.logic import run_calibration
        from MIBGDosimetryLib import dose_display, mrml, scene_results
        from MIBGDosimetryLib.demo import DOSE_TOLERANCE, compare_doses
        from MIBGDosimetryLib.phantoms import calibration, patient

        ensurePythonPackages()
        with tempfile.TemporaryDirectory() as folder:
            phantom = os.path.join(folder, "calibration-phantom")
            study = os.path.join(folder, "patient-study")
            self.delayDisplay("Generating and calibrating the calibration phantom")
            calibration.write_calibration_set(phantom, calibration.CalibrationConfig(seed=1))
            record = run_calibration(slicer.mrmlScene, phantom, os.path.join(folder, "calibration.json"))
            self.delayDisplay("Generating the patient study and calculating the dose")
            patient.write_patient_study(study, patient.PatientConfig(seed=1))
            logic = MIBGDosimetryLogic()
            result = logic.process(study, record.record_node, "", os.path.join(folder, "dose"))
            with open(os.path.join(study, "truth.json")) as stream:
                truth = json.load(stream)
            rows = [row for row in compare_doses(result["results"], truth) if row["tolerance"] is not None]
            self.assertGreaterEqual(len(rows), 8)
            errors = {row["name"]: row["relative_error"] for row in rows}
            self.figures["mean_dose_relative_errors"] = errors
            for name, error in errors.items():
                self.assertLessEqual(abs(error), DOSE_TOLERANCE, f"{name}: {100 * error:+.1f} %")
            self.assertTrue(os.path.isfile(result["written"]["results"]))

            display = result["dose"].GetDisplayNode()
            colours = display.GetColorNode()
            self.assertEqual(colours.GetSingletonTag(), dose_display.DOSE_COLOUR_TABLE_TAG)
            rgba = [0.0] * 4
            colours.GetColor(0, rgba)
            self.assertEqual(rgba[3], 0.0)
            self.assertTrue(display.GetApplyThreshold())
            self.assertGreater(display.GetLowerThreshold(), 0.0)

            parameterNode = ScriptedLoadableModuleLogic.getParameterNode(logic)
            firstNodeIds = [parameterNode.GetNthNodeReferenceID(scene_results.RESULT_NODE_ROLE, i)
                            for i in range(parameterNode.GetNumberOfNodeReferences(scene_results.RESULT_NODE_ROLE))]
            again = scene_results.replace_results(result["calculation"], mrml.SceneContext.of_application(slicer),
                                                  parameterNode)
            self.assertTrue(firstNodeIds)
            self.assertTrue(all(slicer.mrmlScene.GetNodeByID(nodeId) is None for nodeId in firstNodeIds))
            tables = slicer.mrmlScene.GetNodesByClassByName("vtkMRMLTableNode", scene_results.RESULTS_TABLE_NAME)
            self.assertEqual(tables.GetNumberOfItems(), 1)
            self.assertIs(scene_results.shown_results(parameterNode)["table"], again["table"])
            self.assertIsNot(again["dose"], result["dose"])
            self.figures["result_nodes_per_run"] = len(firstNodeIds)
            self.delayDisplay("The guided panel's steps on the same study")
            self._check_guided_panel(logic, study, record.record_node, result["calculation"],
                                     os.path.join(folder, "panel"))
        logging.info("MIBGDosimetry self-test passed")

    def _check_guided_panel(self, logic, study, recordNode, folderCalculation, outputDirectory):
        """What the panel's buttons call: Load study into scene, Register, a segmentation holding the folder
        run's VOIs, Compute dose, Write outputs. The mean doses equal those of ``mibgdose dose --segmentation``
        given the same segmentation saved as a .seg.nrrd."""
        from MIBGCalibrationLib.record import CalibrationRecord
        from MIBGDosimetryLib.segmentation.segment_vois import VOI_TYPE_TAG
        from MIBGDosimetryLib.segmentation.segments import add_mask_segment
        from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose

        sceneLogic, node = logic.sceneLogic(), logic.sceneNode()
        sceneLogic.load_study_folder(node, study, recordNode)
        sceneLogic.register(node)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Organs and lesions")
        for voi in folderCalculation.vois:
            segmentId = add_mask_segment(slicer.mrmlScene, segmentation, voi.mask, folderCalculation.reference,
                                         voi.name)
            segmentation.GetSegmentation().GetSegment(segmentId).SetTag(VOI_TYPE_TAG, voi.kind)
        sceneLogic.select_segmentation(node, segmentation)
        inScene = sceneLogic.compute_dose(node, DoseOptions())
        os.makedirs(outputDirectory)
        segmentationFile = os.path.join(outputDirectory, "drawn.seg.nrrd")
        storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(segmentationFile)
        self.assertTrue(storage.WriteData(segmentation))
        slicer.mrmlScene.RemoveNode(storage)
        headless = run_dose(study, CalibrationRecord.from_node(recordNode), DoseOptions(), log=logging.info,
                            segmentation=segmentationFile)
        expected = {v["name"]: v["mean_dose_Gy"] for v in headless.results["vois"]}
        got = {v["name"]: v["mean_dose_Gy"] for v in inScene.results["vois"]}
        self.assertEqual(set(got), set(expected))
        differences = {name: got[name] / expected[name] - 1.0 for name in expected}
        self.figures["panel_mean_dose_relative_differences"] = differences
        self.assertLessEqual(max(abs(d) for d in differences.values()), 1e-6, differences)
        self.assertIsNotNone(sceneLogic.tac_chart(node, folderCalculation.vois[0].name))
        self.assertTrue(logic.warningsText(node))
        written = logic.writeOutputs(inScene, os.path.join(outputDirectory, "outputs"))
        self.assertTrue(os.path.isfile(written["results"]))

