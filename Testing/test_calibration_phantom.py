"""End-to-end calibration on the digital calibration phantoms (``mibgdose phantom calibration``).

The phantom set is written as DICOM with its answers in truth.json; the calibration reads only
phantom.json and the images. Every number below is compared with truth.json.
"""

import hashlib
import json
import shutil
import subprocess
import sys

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
