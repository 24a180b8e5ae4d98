"""End-to-end calibration on the digital calibration phantoms (``mibgdose phantom calibration``).

The phantom set is written as DICOM with its answers in truth.json; the calibration reads only
phantom.json and the images. Every number below is compared with truth.json.
"""

import hashlib
import os
import json
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
import pytest

from MIBGCalibrationLib import logic, osem
from MIBGCalibrationLib.record import CalibrationRecord
from MIBGDosimetryLib import mrml


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "MIBGDosimetryLib.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration") / "phantom"
    result = run_cli("phantom", "calibration", "--out", str(folder), "--fine-factor", "1", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return folder, json.loads((folder / "truth.json").read_text())


@pytest.fixture(scope="module")
def calibrated(phantom, tmp_path_factory):
    folder, truth = phantom
    context = mrml.new_scene()
    record_path = tmp_path_factory.mktemp("record") / "calibration.json"
    outputs = logic.run_calibration(context.scene, str(folder), str(record_path))
    yield outputs, truth, context
    context.scene.Clear(1)


def test_calibration_factor_and_dead_time_match_truth(calibrated):
    outputs, truth, _ = calibrated
    record = outputs.result.record
    assert record.calibration_factor_cps_per_MBq == pytest.approx(truth["Q_cps_per_MBq"], rel=0.02)
    assert 0 < record.calibration_factor_cps_per_MBq_uncertainty < 0.02 * record.calibration_factor_cps_per_MBq
    assert record.dead_time_s == pytest.approx(truth["tau_s"], rel=0.05)
    assert 0 < record.dead_time_s_uncertainty < 0.05 * record.dead_time_s
    # The series' static images are single-detector photopeak images: the dead time is per detector.
    assert record.dead_time_count_rate == {"energy_window": "photopeak", "per_detector": True}
    # The Jaszczak counts were corrected with the dead-time factor the camera model applied.
    survival = truth["jaszczak"]["dead_time_survival_fraction"]
    assert record.details["calibration_factor"]["dead_time_factor"] == pytest.approx(1 / survival, rel=1e-3)


def test_recovery_coefficients_and_curve_match_truth(calibrated):
    outputs, truth, _ = calibrated
    record = outputs.result.record
    assert {i["name"] for i in record.recovery_inserts} == set(truth["recovery"])
    for insert in record.recovery_inserts:
        assert insert["recovery"] == pytest.approx(truth["recovery"][insert["name"]], rel=0.05), insert["name"]
        value, uncertainty = record.recovery_coefficient(insert["volume_ml"])
        assert value == pytest.approx(truth["recovery"][insert["name"]], rel=0.10)
        assert uncertainty > 0


def test_spatial_resolution_matches_the_camera(calibrated):
    outputs, truth, _ = calibrated
    record = outputs.result.record
    assert record.resolution_fwhm_mm == pytest.approx(truth["fwhm_mm"], rel=0.05)
    assert 0 < record.resolution_fwhm_mm_uncertainty < 0.05 * record.resolution_fwhm_mm


def test_tew_scatter_and_derived_dicom(calibrated):
    outputs, truth, _ = calibrated
    tew = outputs.result.tew
    scatter = float(tew.scatter_counts.sum())
    # Eq. 8 on the noisy projections against eq. 8 on the noise-free ones, and against the true scatter
    # (the phantom's spectrum puts some primary counts into the side windows).
    assert scatter == pytest.approx(truth["tew"]["tew_scatter_estimate_noise_free"], rel=0.05)
    assert scatter == pytest.approx(truth["tew"]["photopeak_scatter_counts"], rel=0.05)
    assert tew.warnings == []
    derived = pydicom.dcmread(outputs.result.tew_output)
    assert derived.NumberOfFrames == truth["tew"]["number_of_views"]
    stored = derived.pixel_array * float(derived.get("RescaleSlope", 1.0))
    assert stored.sum() == pytest.approx(float(tew.corrected_counts.sum()), rel=1e-3)
    check = subprocess.run(["dciodvfy", outputs.result.tew_output], capture_output=True, text=True)
    errors = [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    recorded = outputs.result.record.scatter_correction
    with open(outputs.result.tew_output, "rb") as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == recorded["output_sha256"]


def test_chang_corrected_mean_matches_attenuation_free_truth(calibrated):
    outputs, truth, _ = calibrated
    corrected = outputs.result.chang_uniform_mean
    assert corrected == pytest.approx(truth["chang"]["attenuation_free_mean_counts_per_voxel"], rel=0.05)
    uncorrected = outputs.result.record.attenuation_correction["central_region_uncorrected_mean_counts"]
    assert uncorrected < 0.6 * corrected  # the correction did something substantial


def test_osem_choice_and_noise_follow_truth(calibrated):
    outputs, truth, _ = calibrated
    choice = outputs.result.osem_choice
    reconstructions = truth["osem"]["reconstructions"]
    assert choice.updates == [r["updates"] for r in reconstructions]
    np.testing.assert_allclose(choice.noise_cv, [r["background_relative_noise"] for r in reconstructions], rtol=0.1)
    truth_recovery = {name: [r["recovery"][name] for r in reconstructions] for name in reconstructions[0]["recovery"]}
    expected = osem.choose_updates(choice.updates, truth_recovery,
                                   [r["background_relative_noise"] for r in reconstructions])
    assert choice.suggested_updates == expected.suggested_updates


def test_threshold_model_is_calibrated(calibrated):
    outputs, truth, _ = calibrated
    model = outputs.result.record.threshold_model
    for found in outputs.result.thresholds:
        assert 0.2 < found.fraction < 0.8
        # The model reproduces the per-insert fractions it was fitted to.
        assert model.fraction(found.volume_ml) == pytest.approx(found.fraction, abs=0.08)
    fractions = [t.fraction for t in sorted(outputs.result.thresholds, key=lambda t: t.volume_ml)]
    assert fractions[0] > fractions[-1]  # smaller inserts need a higher fraction, as in the truth
    names = sorted(truth["threshold_fraction"], key=lambda n: truth["threshold_fraction"][n])
    assert truth["threshold_fraction"][names[-1]] > truth["threshold_fraction"][names[0]]


def test_record_node_plots_and_provenance(calibrated, phantom):
    outputs, _, context = calibrated
    folder, _ = phantom
    node = context.scene.GetNodeByID(outputs.record_node.GetID())
    from_node = CalibrationRecord.from_node(node)
    assert from_node == CalibrationRecord.from_json(outputs.record_path)
    assert set(outputs.charts) == {"recovery", "count_rate", "updates"}
    for chart in outputs.charts.values():
        assert chart.GetAttribute(logic.RECORD_REFERENCE_ATTRIBUTE) == node.GetID()
        assert chart.GetNumberOfPlotSeriesNodes() >= 2
    measured = mrml.table_columns(outputs.charts["count_rate"].GetNthPlotSeriesNode(0).GetTableNode())
    csv_rows = (folder / "deadtime" / "series.csv").read_text().split()[1:]
    assert len(measured["observed_cps"]) == len(csv_rows)
    inputs = {entry["path"]: entry["sha256"] for entry in from_node.provenance["inputs"]}
    assert "jaszczak/spect.dcm" in inputs and "phantom.json" in inputs
    for path, digest in inputs.items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == digest


def reduced_copy(folder, target, keep, edit=None):
    """A copy of the phantom folder with only some sections in phantom.json and their series (optionally edited)."""
    description = json.loads((folder / "phantom.json").read_text())
    description = {k: v for k, v in description.items() if k in keep or k in ("radionuclide", "camera")}
    target.mkdir()
    for section in keep:
        shutil.copytree(folder / description[section]["series_dir"], target / description[section]["series_dir"])
    if edit:
        edit(description)
    (target / "phantom.json").write_text(json.dumps(description))
    return target


def calibrate_in_process(capsys, folder, out):
    from MIBGDosimetryLib import cli

    code = cli.main(["calibrate", str(folder), "--out", str(out)])
    return code, capsys.readouterr().err


def test_calibrate_command_writes_the_record(phantom, tmp_path):
    folder, truth = phantom
    quick = reduced_copy(folder, tmp_path / "quick", {"jaszczak", "deadtime"})
    out = tmp_path / "out" / "calibration.json"
    result = run_cli("calibrate", str(quick), "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["Q_cps_per_MBq"] == pytest.approx(truth["Q_cps_per_MBq"], rel=0.02)
    record = CalibrationRecord.from_json(str(out))
    assert record.dead_time_s == pytest.approx(truth["tau_s"], rel=0.05)
    assert record.recovery_curve is None and record.threshold_model is None
    assert sorted(p.name for p in out.parent.iterdir()) == ["calibration.json"]


def test_recorded_centres_off_by_millimetres_are_found(phantom, tmp_path):
    folder, truth = phantom

    def shift(description):
        for n, insert in enumerate(description["spheres"]["inserts"]):
            insert["centre_ras_mm"] = list(np.asarray(insert["centre_ras_mm"]) + [3.0, -2.0, 2.5 * (-1) ** n])

    shifted = reduced_copy(folder, tmp_path / "shifted", {"jaszczak", "spheres"}, shift)
    result = logic.phantom_calibration.calibrate_phantom_folder(str(shifted))
    for insert in result.inserts:
        assert insert.centre_shift_mm > 3.0
        # Within 5 %, or within twice the stated uncertainty, which holds the VOI's voxelisation: a
        # sub-millimetre difference in centre changes which voxels a 15 mm sphere VOI holds.
        tolerance = max(0.05 * insert.recovery, 2.0 * insert.recovery_uncertainty)
        assert abs(insert.recovery - truth["recovery"][insert.name]) < tolerance, insert.name
        if insert.volume_ml > 4.0:
            assert insert.recovery == pytest.approx(truth["recovery"][insert.name], rel=0.05), insert.name


def test_bad_calibration_inputs_give_clear_errors(phantom, tmp_path, capsys):
    folder, _ = phantom
    never = tmp_path / "never.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, errors = calibrate_in_process(capsys, empty, never)
    assert code == 2 and "no phantom found" in errors

    def three_steps(description):
        description["deadtime"]["steps"] = description["deadtime"]["steps"][:3]

    short = reduced_copy(folder, tmp_path / "short", {"jaszczak", "deadtime"}, three_steps)
    code, errors = calibrate_in_process(capsys, short, never)
    assert code == 2 and "At least 4" in errors

    blank = reduced_copy(folder, tmp_path / "blank", {"jaszczak"})
    image = pydicom.dcmread(blank / "jaszczak" / "spect.dcm")
    image.PixelData = np.zeros_like(image.pixel_array).tobytes()
    image.save_as(blank / "jaszczak" / "spect.dcm")
    code, errors = calibrate_in_process(capsys, blank, never)
    assert code == 2 and "No filled cylinder" in errors
    assert not never.exists()

    # A failure in a late step (Chang, after TEW) leaves no output at all.
    broken = reduced_copy(folder, tmp_path / "broken", {"jaszczak", "tew", "chang"})
    (broken / "chang" / "lower_window.dcm").unlink()
    outputs = tmp_path / "outputs"
    code, errors = calibrate_in_process(capsys, broken, outputs / "calibration.json")
    assert code == 2 and "lower_window.dcm" in errors
    assert not outputs.exists() or not any(outputs.iterdir())


def test_cancelled_calibration_writes_nothing_and_adds_no_node(phantom, tmp_path):
    """Cancel after the first step: the calibration stops before the next one, no record file, no node."""
    folder, _ = phantom
    context = mrml.new_scene()
    try:
        seen = []
        before = context.scene.GetNumberOfNodes()
        with pytest.raises(logic.CalibrationCancelled, match="no record was written"):
            logic.run_calibration(context.scene, str(folder), str(tmp_path / "calibration.json"), log=seen.append,
                                  cancel=lambda: len(seen) >= 1)
        assert len(seen) == 1
        assert not (tmp_path / "calibration.json").exists()
        assert list(tmp_path.iterdir()) == []
        assert context.scene.GetNumberOfNodes() == before
    finally:
        context.scene.Clear(1)


# The phantom acquisitions loaded into the scene by Slicer's DICOM module: the database renames every
# file after its SOPInstanceUID, so the description's file names no longer find them.

@pytest.fixture(scope="module")
def loaded_phantom(phantom, tmp_path_factory):
    """The phantom's DICOM files in a database folder under their UIDs, each loaded as the DICOM module
    loads it; the description alone in another folder. Yields (description path, {slot key: node},
    fileForInstance, database folder, context)."""
    from dicom_module_loading import load_like_the_dicom_module
    from MIBGCalibrationLib import acquisitions

    folder, _ = phantom
    root = tmp_path_factory.mktemp("slicer-dicom")
    database, description_dir = root / "dicom", root / "description"
    database.mkdir()
    description_dir.mkdir()
    shutil.copy(folder / "phantom.json", description_dir / "phantom.json")
    description, slots = acquisitions.description_slots(description_dir / "phantom.json")
    context = mrml.new_scene()
    files, nodes = {}, {}
    for slot in slots:
        header = pydicom.dcmread(folder / slot.series_dir / slot.file_name, stop_before_pixels=True)
        path = database / f"{header.SOPInstanceUID}.dcm"
        shutil.copy(folder / slot.series_dir / slot.file_name, path)
        header = pydicom.dcmread(path, stop_before_pixels=True)
        files[str(header.SOPInstanceUID)] = str(path)
        nodes[slot.key] = load_like_the_dicom_module(context, [header], slot.label)
    yield description_dir / "phantom.json", nodes, lambda uid: files.get(uid, ""), database, context
    context.scene.Clear(1)


def test_acquisitions_asked_for_by_the_description(phantom):
    from MIBGCalibrationLib import acquisitions

    folder, _ = phantom
    description, slots = acquisitions.description_slots(folder / "phantom.json")
    keys = [slot.key for slot in slots]
    steps = len(description["deadtime"]["steps"])
    assert keys[:steps] == [f"deadtime.steps.{n}.file" for n in range(steps)]
    assert keys[steps:steps + 2] == ["jaszczak.file", "spheres.file"]
    assert "tew.file" in keys and "chang.nac_file" in keys and "chang.lower_window_file" in keys
    assert len([k for k in keys if k.startswith("osem.")]) == len(description["osem"]["reconstructions"])
    # Every slot names a file the phantom folder holds.
    assert all((folder / slot.series_dir / slot.file_name).is_file() for slot in slots)
    with pytest.raises(ValueError, match="phantom.json"):
        acquisitions.description_slots(folder / "truth.json")


def test_calibration_from_volumes_loaded_by_the_dicom_module(loaded_phantom, calibrated, tmp_path, monkeypatch):
    """The record made from the scene's volumes is the folder's record: same numbers for every step,
    so the same agreement with the phantom's truth; its provenance names the database files."""

    description, nodes, file_for_instance, database, context = loaded_phantom
    folder_outputs, truth, _ = calibrated
    from MIBGCalibrationLib import acquisitions

    staged, original = [], tempfile.mkdtemp

    def mkdtemp(**kwargs):
        staged.append(original(**kwargs))
        return staged[-1]

    monkeypatch.setattr(acquisitions.tempfile, "mkdtemp", mkdtemp)
    before = context.scene.GetNumberOfNodes()
    outputs = logic.run_calibration_from_scene(context.scene, str(description), nodes, str(tmp_path / "cal.json"),
                                               file_for_instance)
    record, expected = outputs.result.record, folder_outputs.result.record
    assert record.calibration_factor_cps_per_MBq == pytest.approx(truth["Q_cps_per_MBq"], rel=0.02)
    made, folder_made = record.to_dict(), expected.to_dict()
    for values in (made, folder_made):
        for key in ("provenance", "date"):
            values.pop(key)
        for key in ("output", "output_sha256"):  # the derived projections' name and new UIDs
            values["scatter_correction"].pop(key, None)
    assert made == folder_made
    # Provenance: the database files and the user's description, with their own checksums.
    paths = {entry["path"]: entry["sha256"] for entry in record.provenance["inputs"]}
    assert str(description) in paths
    assert {p for p in paths if p != str(description)} == {str(p) for p in database.iterdir()}
    assert paths[str(description)] == hashlib.sha256(description.read_bytes()).hexdigest()
    # The outputs as from a folder: record file, scatter-corrected projections, record node and plots.
    assert CalibrationRecord.from_json(tmp_path / "cal.json").calibration_factor_cps_per_MBq == \
        record.calibration_factor_cps_per_MBq
    assert (tmp_path / "cal.tew.dcm").is_file()
    assert context.scene.GetNumberOfNodes() > before and set(outputs.charts) == set(folder_outputs.charts)
    # The temporary calibration folder is gone; the database is as it was.
    assert len(staged) == 1 and not os.path.exists(staged[0])
    assert sorted(p.name for p in database.iterdir()) == sorted(f"{uid}.dcm" for uid in
                                                               _uids(database))


def _uids(database):
    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in database.iterdir()]


def test_scene_acquisitions_that_cannot_be_used_are_refused(loaded_phantom, tmp_path):
    """Unassigned slots are named; volumes not from the DICOM module, unknown to the database, edited, or
    given for two slots are refused; a cancelled run writes nothing and adds no node."""
    description, nodes, file_for_instance, _, context = loaded_phantom
    record = str(tmp_path / "cal.json")
    scene = context.scene
    run = logic.run_calibration_from_scene
    partial = {key: node for key, node in nodes.items() if key != "jaszczak.file"}
    with pytest.raises(ValueError, match=r"Assign an acquisition to each of: Jaszczak cylinder"):
        run(scene, str(description), partial, record, file_for_instance)
    with pytest.raises(ValueError, match="asks for no acquisition 'spheres.extra'"):
        run(scene, str(description), dict(nodes, **{"spheres.extra": nodes["spheres.file"]}), record,
            file_for_instance)
    with pytest.raises(ValueError, match="more than one slot"):
        run(scene, str(description), dict(nodes, **{"jaszczak.file": nodes["spheres.file"]}), record,
            file_for_instance)
    with pytest.raises(ValueError, match="not in the DICOM database"):
        run(scene, str(description), nodes, record, lambda uid: "")
    plain = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "copy")
    plain.Copy(nodes["jaszczak.file"])
    plain.RemoveAttribute("DICOM.instanceUIDs")
    with pytest.raises(ValueError, match="not loaded by the DICOM module"):
        run(scene, str(description), dict(nodes, **{"jaszczak.file": plain}), record, file_for_instance)
    edited = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "edited")
    edited.Copy(nodes["jaszczak.file"])
    image = nodes["jaszczak.file"].GetImageData().NewInstance()
    image.DeepCopy(nodes["jaszczak.file"].GetImageData())
    image.GetPointData().GetScalars().SetValue(0, image.GetPointData().GetScalars().GetValue(0) + 1000)
    edited.SetAndObserveImageData(image)
    with pytest.raises(ValueError, match="differ from its DICOM file's counts"):
        run(scene, str(description), dict(nodes, **{"jaszczak.file": edited}), record, file_for_instance)
    before, seen = scene.GetNumberOfNodes(), []
    with pytest.raises(logic.CalibrationCancelled):
        run(scene, str(description), nodes, record, file_for_instance, log=seen.append,
            cancel=lambda: len(seen) >= 2)
    assert scene.GetNumberOfNodes() == before and list(tmp_path.iterdir()) == []


def test_chosen_acquisitions_are_saved_with_the_scene(loaded_phantom):
    """The volumes chosen per slot are node references of the parameter node: a scene saved and read
    back gives the same choice (roles must not hold MRML's separators ':' and ';')."""
    from MIBGCalibrationLib import acquisitions

    description, nodes, _, _, context = loaded_phantom
    _, slots = acquisitions.description_slots(description)
    parameter_node = context.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "MIBGCalibration")
    for key, node in nodes.items():
        logic.set_scene_acquisition(parameter_node, key, node)
    logic.set_scene_acquisition(parameter_node, "tew.file", None)
    context.scene.SetSaveToXMLString(1)
    context.scene.Commit()
    xml = context.scene.GetSceneXMLString()
    reopened = mrml.new_scene()
    try:
        reopened.scene.SetLoadFromXMLString(1)
        reopened.scene.SetSceneXMLString(xml)
        reopened.scene.Import()
        restored = reopened.scene.GetNodeByID(parameter_node.GetID())
        chosen = logic.scene_acquisitions(restored, slots)
        assert {key: node.GetName() for key, node in chosen.items()} == \
            {key: node.GetName() for key, node in nodes.items() if key != "tew.file"}
    finally:
        reopened.scene.Clear(1)
        context.scene.RemoveNode(parameter_node)
