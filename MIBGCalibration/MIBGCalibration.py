"""MIBGCalibration: the quantitative 131I SPECT calibration chain (EANM guidance eqs. 4-8).

Camera calibration factor, recovery coefficients, paralysable dead time, TEW scatter and Chang
attenuation correction, OSEM update choice and adaptive-threshold calibration. The result is a
calibration record (MRML node and JSON) that the MIBGDosimetry module references.
The module file holds only the Slicer glue; the computation lives in ``MIBGCalibrationLib``.
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
# MIBGCalibration
#


class MIBGCalibration(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MIBG Calibration")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = ["Plots", "Tables"]
        self.parent.contributors = [
            "SlicerMIBGDosimetry medical physicists (calibration methods)",
            "SlicerMIBGDosimetry software developers (Slicer modules)"]
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
    phantomDescription - or: phantom.json of acquisitions loaded with the DICOM module; the volume chosen
        for each acquisition is a node reference of the parameter node (MIBGCalibrationLib.logic).
    outputFile - calibration record (JSON) to write.
    """

    phantomDirectory: pathlib.Path
    phantomDescription: pathlib.Path
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
        self._outputs = None
        self._running = False
        self._cancelRequested = False

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
        self.ui.showRecoveryPlotButton.connect("clicked(bool)", lambda: self.onShowPlot("recovery"))
        self.ui.showCountRatePlotButton.connect("clicked(bool)", lambda: self.onShowPlot("count_rate"))
        self.ui.showUpdatesPlotButton.connect("clicked(bool)", lambda: self.onShowPlot("updates"))
        self.ui.phantomDescriptionSelector.connect("currentPathChanged(QString)", self.updateAcquisitionsTable)
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
        self.updateAcquisitionsTable()

    def updateAcquisitionsTable(self, *_):
        """One row per acquisition the phantom description asks for, with a volume selector."""
        import qt

        table = self.ui.acquisitionsTable
        table.setRowCount(0)
        description = self._parameterNode.phantomDescription if self._parameterNode else None
        table.visible = _isSet(description)
        if not _isSet(description) or not description.is_file():
            return
        from MIBGCalibrationLib import acquisitions
        from MIBGCalibrationLib.logic import scene_acquisitions

        try:
            _description, slots = acquisitions.description_slots(description)
        except ValueError as error:
            self.ui.statusLabel.text = str(error)
            return
        chosen = scene_acquisitions(self._parameterNode.parameterNode, slots)
        table.setRowCount(len(slots))
        for row, slot in enumerate(slots):
            table.setItem(row, 0, qt.QTableWidgetItem(slot.label))
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.noneEnabled = True
            selector.addEnabled = False
            selector.removeEnabled = False
            selector.setMRMLScene(slicer.mrmlScene)
            selector.setCurrentNode(chosen.get(slot.key))
            selector.connect("currentNodeChanged(vtkMRMLNode*)",
                             lambda node, key=slot.key: self.onAcquisitionChosen(key, node))
            table.setCellWidget(row, 1, selector)
        table.resizeColumnToContents(0)

    def onAcquisitionChosen(self, slotKey, node):
        from MIBGCalibrationLib.logic import set_scene_acquisition

        if self._parameterNode:
            set_scene_acquisition(self._parameterNode.parameterNode, slotKey, node)

    def onApplyButton(self):
        if self._running:
            self._cancelRequested = True
            self.ui.statusLabel.text = _("Cancelling after the current step...")
            return
        from MIBGCalibrationLib.logic import CalibrationCancelled

        self._setRunning(True)
        try:
            with slicer.util.tryWithErrorDisplay(_("Calibration failed."), waitCursor=False):
                from MIBGDosimetry import ensurePythonPackages

                ensurePythonPackages()
                self.showProgress(_("Calibrating..."))
                try:
                    self._outputs = self.logic.process(self._parameterNode.phantomDirectory,
                                                       self._parameterNode.outputFile, log=self.showProgress,
                                                       cancel=lambda: self._cancelRequested,
                                                       phantomDescription=self._parameterNode.phantomDescription)
                except CalibrationCancelled as cancelled:
                    self.ui.statusLabel.text = str(cancelled)
                    return
                self.showResults(self._outputs.result)
                if self._outputs.charts:
                    slicer.modules.plots.logic().ShowChartInLayout(next(iter(self._outputs.charts.values())))
                self.ui.statusLabel.text = _("Calibration record written to {path}.").format(
                    path=self._outputs.record_path)
        finally:
            self._setRunning(False)

    def _setRunning(self, running):
        self._running, self._cancelRequested = running, False
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.progressBar.setRange(0, 0 if running else 1)
        self.ui.progressBar.setValue(0)

    def showProgress(self, message):
        self.ui.statusLabel.text = message
        slicer.app.processEvents()

    def showResults(self, result):
        record = result.record
        self.ui.qResultLabel.text = _("Q = {q:.4g} \u00b1 {u:.2g} cps/MBq (sub-VOI spread {s:.1f} %)").format(
            q=record.calibration_factor_cps_per_MBq, u=record.calibration_factor_cps_per_MBq_uncertainty,
            s=100 * result.q_result.sub_voi_max_relative_difference)
        if result.dead_time is not None:
            self.ui.deadTimeResultLabel.text = _("tau = {t:.3g} \u00b1 {u:.2g} us, sensitivity {s:.4g} cps/MBq").format(
                t=1e6 * result.dead_time.tau_s, u=1e6 * result.dead_time.tau_s_uncertainty,
                s=result.dead_time.sensitivity_cps_per_MBq)
        if result.inserts:
            lines = [_("{name}: {v:.1f} mL, R = {r:.3f} \u00b1 {u:.3f}").format(
                name=i.name, v=i.volume_ml, r=i.recovery, u=i.recovery_uncertainty) for i in result.inserts]
            if record.resolution_fwhm_mm is not None:
                lines.append(_("Spatial resolution FWHM = {f:.1f} \u00b1 {u:.1f} mm").format(
                    f=record.resolution_fwhm_mm, u=record.resolution_fwhm_mm_uncertainty))
            self.ui.recoveryResultLabel.text = "\n".join(lines)
        if record.threshold_model is not None:
            self.ui.thresholdResultLabel.text = record.threshold_model.describe()
        if result.osem_choice is not None:
            self.ui.osemResultLabel.text = _("Suggested OSEM updates: {n} ({rule})").format(
                n=result.osem_choice.suggested_updates, rule=result.osem_choice.rule)
        if result.tew is not None:
            self.ui.tewResultLabel.text = _("Scatter {s:.4g} of {p:.4g} photopeak counts; {c} pixels clipped at 0; "
                                            "written to {path}").format(
                s=float(result.tew.scatter_counts.sum()), p=float(result.tew.peak_counts.sum()),
                c=result.tew.clipped_pixels, path=result.tew_output)
        if result.chang_result is not None:
            summary = result.chang_result.summary()
            self.ui.changResultLabel.text = _("mu = {mu} /cm, outline from {src}; factors {lo:.2f}-{hi:.2f}").format(
                mu=summary["mu_per_cm"], src=summary["outline_source"], lo=summary["correction_factor_min"],
                hi=summary["correction_factor_max"])
        self.ui.warningsLabel.text = "\n".join(record.warnings) or _("No warnings.")
        for button, key in ((self.ui.showRecoveryPlotButton, "recovery"),
                            (self.ui.showCountRatePlotButton, "count_rate"),
                            (self.ui.showUpdatesPlotButton, "updates")):
            button.enabled = key in self._outputs.charts

    def onShowPlot(self, key):
        with slicer.util.tryWithErrorDisplay(_("Could not show the plot."), waitCursor=True):
            if self._outputs is None or key not in self._outputs.charts:
                raise ValueError(_("Run the calibration first."))
            slicer.modules.plots.logic().ShowChartInLayout(self._outputs.charts[key])


#
# MIBGCalibrationLogic
#


class MIBGCalibrationLogic(ScriptedLoadableModuleLogic):
    """Adapter between the Slicer application and the GUI-free ``MIBGCalibrationLib.logic``."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MIBGCalibrationParameterNode(super().getParameterNode())

    def process(self, phantomDirectory, outputFile, log=logging.info, cancel=None, phantomDescription=None):
        """Calibrate from the phantom folder, or from the acquisitions chosen in the scene for the phantom
        description, write the record to ``outputFile`` and add the record node and the calibration plots to
        the application's scene. Returns ``MIBGCalibrationLib.logic.CalibrationOutputs``."""
        from MIBGCalibrationLib import acquisitions
        from MIBGCalibrationLib.logic import run_calibration, run_calibration_from_scene, scene_acquisitions

        if not _isSet(outputFile):
            raise ValueError(_("Choose a file name for the calibration record first."))
        if _isSet(phantomDescription):
            if _isSet(phantomDirectory):
                raise ValueError(_("Both a phantom acquisitions folder and a phantom description are given; clear "
                                   "one of them."))
            _description, slots = acquisitions.description_slots(phantomDescription)
            chosen = scene_acquisitions(self.getParameterNode().parameterNode, slots)
            return run_calibration_from_scene(slicer.mrmlScene, str(phantomDescription), chosen, str(outputFile),
                                              slicer.dicomDatabase.fileForInstance, log=log, cancel=cancel)
        if not _isSet(phantomDirectory):
            raise ValueError(_("Choose the folder with the calibration phantom acquisitions, or a phantom "
                               "description with the acquisitions loaded in the scene, first."))
        return run_calibration(slicer.mrmlScene, str(phantomDirectory), str(outputFile), log=log, cancel=cancel)


def _isSet(path):
    return path is not None and str(path) not in ("", ".")


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
        self.setUp()
        self.test_calibration_of_the_digital_phantom()

    def test_missing_inputs_are_reported(self):
        with self.assertRaises(ValueError):
            MIBGCalibrationLogic().process("", "")
        logging.info("MIBGCalibration self-test passed")

    def test_calibration_of_the_digital_phantom(self):
        """The whole chain on a calibration phantom generated on the fly: Q and tau against the phantom's truth
        (the phantom's projections are simulated with its own camera model, not with the calibration code)."""
        import json
        import tempfile

        from MIBGDosimetry import ensurePythonPackages
        from MIBGDosimetryLib.phantoms.calibration import CalibrationConfig, write_calibration_set

        ensurePythonPackages()
        with tempfile.TemporaryDirectory() as folder:
            phantom = pathlib.Path(folder) / "phantom"
            write_calibration_set(str(phantom), CalibrationConfig(seed=2))
            truth = json.loads((phantom / "truth.json").read_text())
            outputs = MIBGCalibrationLogic().process(phantom, pathlib.Path(folder) / "calibration.json")
            record = outputs.result.record
            self.assertAlmostEqual(record.calibration_factor_cps_per_MBq / truth["Q_cps_per_MBq"], 1.0, delta=0.02)
            self.assertAlmostEqual(record.dead_time_s / truth["tau_s"], 1.0, delta=0.05)
            self.assertIsNotNone(record.threshold_model)
            self.assertTrue(os.path.isfile(outputs.record_path))
            self.assertIs(slicer.mrmlScene.GetNodeByID(outputs.record_node.GetID()), outputs.record_node)
            self.assertEqual(outputs.record_node.GetAttribute("MIBGCalibration.Record"), "1")
        logging.info("MIBGCalibration phantom self-test passed")
