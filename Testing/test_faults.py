"""Reliability of ``mibgdose dose`` under faults and bad input.

The study and calibration record are generated once per session (the demo's digital phantoms) and one
real run of the command into a folder serves as "the previous results". Faults are injected for real:
the process kills itself with SIGKILL at a named step (the test-only environment variable
``MIBGDOSE_TEST_KILL_AT`` read by :func:`MIBGDosimetryLib.workflow.publish.kill_point`), a read-only
and a full disk are small tmpfs mounts (skipped where mounting is not allowed), a second run starts
while the first holds the output folder. After every killed or failed run the output folder must
hold exactly the complete previous results or the complete new ones.
"""

import copy
import datetime
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest

MIBGDOSE = [sys.executable, "-m", "MIBGDosimetryLib.cli"]


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """Calibration record and patient study of the demo phantoms (seed 1)."""
    from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs as write_record
    from MIBGDosimetryLib.phantoms import calibration, patient

    root = tmp_path_factory.mktemp("faults")
    calibration.write_calibration_set(str(root / "phantom"), calibration.CalibrationConfig(seed=1))
    write_record(calibrate_phantom_folder(str(root / "phantom"), log=lambda *_: None), str(root / "calibration.json"))
    patient.write_patient_study(str(root / "study"), patient.PatientConfig(seed=1))
    return {"root": root, "study": root / "study", "calibration": root / "calibration.json"}


def _dose_command(inputs, out, *extra):
    return MIBGDOSE + ["dose", str(inputs["study"]), "--calibration", str(inputs["calibration"]), "--out", str(out),
                       "--no-report", *extra]


def _environment(**extra):
    env = dict(os.environ)
    env.pop("MIBGDOSE_TEST_KILL_AT", None)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def baseline(inputs):
    """One real run into ``baseline`` (the previous results of later tests), with a second run into the
    same folder started while the first holds it."""
    out = inputs["root"] / "baseline"
    first = subprocess.Popen(_dose_command(inputs, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_environment())
    lock = inputs["root"] / ".baseline.lock"
    deadline = time.time() + 120
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run(_dose_command(inputs, out), capture_output=True, text=True, env=_environment(),
                            timeout=600)
    stdout, stderr = first.communicate(timeout=900)
    peak_rss_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert first.returncode == 0, stderr
    return {"out": out, "first": (first.returncode, stdout, stderr), "second": second, "peak_rss_bytes": peak_rss_bytes}


@pytest.fixture(scope="session")
def study(inputs):
    from MIBGDosimetryLib.study import load_study

    return load_study(str(inputs["study"]))


@pytest.fixture(scope="session")
def record(inputs):
    from MIBGCalibrationLib.record import CalibrationRecord

    return CalibrationRecord.from_json(str(inputs["calibration"]))


@pytest.fixture(scope="session")
def calculation(inputs):
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    return run_dose(str(inputs["study"]), str(inputs["calibration"]), log=lambda *_: None)


@pytest.fixture
def study_copy(inputs, tmp_path):
    target = tmp_path / "study"
    shutil.copytree(inputs["study"], target)
    return target


def _digest(folder):
    """{file name: sha256} of a folder's files."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))}


def _tmpfs(path, size, read_only=False):
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the fault needs a real small disk")
    if read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    return path


def _unmount(path):
    subprocess.run(["umount", str(path)], check=False)


# ---------------------------------------------------------------------- 1. outputs published as one unit
def test_the_output_folder_is_marked_and_complete(baseline):
    out = baseline["out"]
    marker = json.loads((out / "mibgdose-output.json").read_text())
    assert set(marker["files"]) == set(os.listdir(out)) - {"mibgdose-output.json"}
    assert {"results.json", "results.tsv", "dosimetry.mrb", "rtdose.dcm", "vois-seg.dcm"} <= set(marker["files"])
    assert not [n for n in os.listdir(out.parent) if n.startswith(".baseline.")], "staging or lock left behind"


def test_a_second_run_into_a_folder_in_use_is_refused(baseline):
    second = baseline["second"]
    assert second.returncode == 2, second.stderr
    assert "Another dose calculation" in second.stderr
    assert "Reading the study" not in second.stdout, "the refused run should stop before any calculation"


def test_a_rerun_with_fewer_outputs_replaces_the_whole_folder(calculation, tmp_path):
    from MIBGDosimetryLib.workflow.outputs import write_outputs

    out = tmp_path / "dose"
    write_outputs(calculation, str(out), log=lambda *_: None, report=False, scene=False)
    assert (out / "rtdose.dcm").exists()
    write_outputs(calculation, str(out), log=lambda *_: None, dicom=False, report=False, scene=False)
    assert sorted(os.listdir(out)) == ["mibgdose-output.json", "results.json", "results.tsv"]
    backups = [n for n in os.listdir(tmp_path) if n.startswith("dose.previous-")]
    assert len(backups) == 1 and (tmp_path / backups[0] / "rtdose.dcm").exists()


def test_a_run_killed_before_publishing_leaves_the_previous_results(inputs, baseline, tmp_path):
    from MIBGDosimetryLib.workflow import publish

    out = tmp_path / "dose"
    shutil.copytree(baseline["out"], out)
    before = _digest(out)
    killed = subprocess.run(_dose_command(inputs, out, "--no-dicom"), capture_output=True, text=True,
                            env=_environment(MIBGDOSE_TEST_KILL_AT="staging-written"), timeout=900)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _digest(out) == before
    staging = [n for n in os.listdir(tmp_path) if n.startswith(".dose.staging-")]
    assert staging and os.listdir(tmp_path / staging[0]), "the killed run should have left its staging folder"
    # The next run removes the dead run's staging folder (it holds patient data) and takes over its lock.
    assert publish.remove_stale_staging(str(out), log=lambda *_: None) == staging
    with publish.output_lock(str(out)) as lock:
        assert open(lock).read() == str(os.getpid())


PUBLISH_SCRIPT = """
import os, sys
from MIBGDosimetryLib.workflow import publish
if sys.argv[3] == "no-exchange":
    publish._exchange = lambda a, b: False  # a system without an atomic swap of two paths
staging = publish.new_staging(sys.argv[1])
for name in ("results.json", "results.tsv"):
    open(os.path.join(staging, name), "w").write(sys.argv[2])
publish.write_marker(staging, ["results.json", "results.tsv"])
publish.publish(staging, sys.argv[1], log=lambda *_: None)
"""


@pytest.mark.parametrize("step, mode", [("after-exchange", "exchange"), ("between-renames", "no-exchange")])
def test_a_run_killed_while_publishing_leaves_one_complete_set(tmp_path, step, mode):
    from MIBGDosimetryLib.workflow import publish

    out = tmp_path / "dose"
    subprocess.run([sys.executable, "-c", PUBLISH_SCRIPT, str(out), "old", mode], check=True, env=_environment())
    killed = subprocess.run([sys.executable, "-c", PUBLISH_SCRIPT, str(out), "new", mode], capture_output=True,
                            env=_environment(MIBGDOSE_TEST_KILL_AT=step))
    assert killed.returncode == -signal.SIGKILL
    publish.recover_interrupted_publish(str(out), log=lambda *_: None)
    publish.remove_stale_staging(str(out), log=lambda *_: None)
    contents = {(out / name).read_text() for name in ("results.json", "results.tsv")}
    assert contents in ({"old"}, {"new"})
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".dose.staging-")]


def test_a_read_only_output_disk_is_refused_before_the_calculation(inputs, tmp_path):
    mount = _tmpfs(tmp_path / "ro", "1m", read_only=True)
    try:
        done = subprocess.run(_dose_command(inputs, mount / "dose"), capture_output=True, text=True,
                              env=_environment(), timeout=300)
    finally:
        _unmount(mount)
    assert done.returncode == 2, done.stderr
    assert "cannot be written" in done.stderr and "Read-only" in done.stderr
    assert "Reading the study" not in done.stdout


def test_a_full_output_disk_leaves_the_previous_results_and_no_partial_files(calculation, study, tmp_path):
    from MIBGDosimetryLib.workflow import preflight
    from MIBGDosimetryLib.workflow.outputs import write_outputs

    mount = _tmpfs(tmp_path / "small", "600k")
    try:
        out = mount / "dose"
        out.mkdir()
        (out / "results.json").write_text('{"previous": true}')
        (out / "mibgdose-output.json").write_text("{}")
        with pytest.raises(ValueError, match="need about"):
            preflight.check_output_space(str(out), study)
        with pytest.raises(OSError):
            write_outputs(calculation, str(out), log=lambda *_: None, dicom=True, report=False, scene=False)
        assert sorted(os.listdir(out)) == ["mibgdose-output.json", "results.json"]
        assert json.loads((out / "results.json").read_text()) == {"previous": True}
        assert sorted(os.listdir(mount)) == ["dose"], "staging folder or lock left on the full disk"
    finally:
        _unmount(mount)


def test_a_full_output_disk_is_refused_before_the_calculation(inputs, tmp_path):
    mount = _tmpfs(tmp_path / "small", "600k")
    try:
        done = subprocess.run(_dose_command(inputs, mount / "dose"), capture_output=True, text=True,
                              env=_environment(), timeout=600)
    finally:
        _unmount(mount)
    assert done.returncode == 2 and "the results need about" in done.stderr, done.stderr
    assert "Registering" not in done.stdout


# ---------------------------------------------------------------------- 4. no silent loss of time points, VOIs
def test_an_unreadable_spect_file_refuses_the_study_unless_excluded(study_copy, inputs):
    from MIBGDosimetryLib.study import load_study
    from MIBGDosimetryLib.workflow import preflight
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    spect = study_copy / "tp3" / "spect.dcm"
    spect.write_bytes(spect.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"could not be read[\s\S]*tp3/spect.dcm[\s\S]*--exclude-timepoint"):
        run_dose(str(study_copy), str(inputs["calibration"]), log=lambda *_: None)
    loaded = load_study(str(study_copy))
    assert len(loaded.timepoints) == 4
    preflight.check_unreadable_files(loaded, excluded=["tp3"])


def _voi(name, kind, mask, volume_ml=None):
    from MIBGDosimetryLib.workflow.vois import Voi

    return Voi(name, kind, mask, "test", {"volume_ml": volume_ml} if volume_ml else {})


def test_a_fully_overlapped_voi_is_reported_with_its_reason():
    from MIBGDosimetryLib.workflow import vois as vois_module

    outer = np.zeros((10, 10, 10), bool)
    outer[2:8, 2:8, 2:8] = True
    inner = np.zeros_like(outer)
    inner[4:6, 4:6, 4:6] = True
    vois = [_voi("liver", "organ", outer), _voi("gallbladder", "organ", inner)]
    vois_module.make_disjoint(vois)
    assert not vois[1].mask.any()
    assert "fully overlapped" in vois_module.empty_reason(vois[1]) and "liver" in vois_module.empty_reason(vois[1])
    assert "empty" in vois_module.empty_reason(_voi("spleen", "organ", np.zeros_like(outer)))


def test_every_requested_voi_is_in_the_results(calculation, study):
    results = calculation.results
    names = {v["name"] for v in results["vois"]} | {v["name"] for v in results["vois_without_result"]}
    assert set(study.seed_points) <= names
    assert {"liver", "heart", "lungs", "kidney_left", "kidney_right"} <= names


# ---------------------------------------------------------------------- 5. overlap bookkeeping
def test_an_organ_that_gives_up_voxels_loses_their_volume():
    """Two 4 x 4 x 4 organs overlapping by a 4 x 4 x 1 slab (voxels of 1 mL): the second keeps 48 mL."""
    from MIBGDosimetryLib.workflow import vois as vois_module

    first = np.zeros((10, 10, 10), bool)
    first[0:4, 0:4, 0:4] = True
    second = np.zeros_like(first)
    second[3:7, 0:4, 0:4] = True
    vois = [_voi("lungs", "organ", first, 64.0), _voi("heart", "organ", second, 64.0)]
    vois_module.make_disjoint(vois)
    assert vois[1].details["volume_ml"] == pytest.approx(48.0)
    assert vois[1].details["outline_volume_ml"] == pytest.approx(64.0)
    assert vois[0].details["volume_ml"] == pytest.approx(64.0)


def test_organ_volumes_match_the_phantom(calculation, inputs):
    truth = {s["name"]: s for s in json.loads((inputs["study"] / "truth.json").read_text())["structures"]}
    for voi in calculation.results["vois"]:
        if voi["kind"] == "organ":
            assert voi["volume_ml"] == pytest.approx(truth[voi["name"]]["volume_ml"], rel=0.03), voi["name"]


# ---------------------------------------------------------------------- 6. calibration record validation
def _record_dict(inputs):
    return json.loads(inputs["calibration"].read_text())


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(resolution_fwhm_mm=0.0), "resolution_fwhm_mm = 0.0 mm is outside"),
    (lambda d: d["threshold_model"].update(knot_fractions=[5.0] * len(d["threshold_model"]["knot_fractions"])),
     "knot_fractions"),
    (lambda d: d.update(calibration_factor_cps_per_MBq=2 * d["calibration_factor_cps_per_MBq"]),
     "disagrees with the count rate and activity"),
    (lambda d: d.update(dead_time_s="4e-6"), "dead_time_s must be a number in s"),
    (lambda d: d["camera"].update(crystal_mm="15.9"), "camera.crystal_mm"),
])
def test_an_implausible_calibration_record_is_refused(inputs, change, message):
    from MIBGCalibrationLib.record import CalibrationRecord

    data = _record_dict(inputs)
    change(data)
    with pytest.raises(ValueError, match=message):
        CalibrationRecord.from_dict(data)


def test_every_problem_of_a_record_is_listed_at_once(inputs):
    from MIBGCalibrationLib.record import record_problems

    data = _record_dict(inputs)
    assert record_problems(data) == []
    data.update(resolution_fwhm_mm=0.0, dead_time_s="x", calibration_factor_cps_per_MBq="22")
    assert len(record_problems(data)) == 3


def test_a_calibration_path_that_is_a_folder_gives_a_message(inputs, tmp_path):
    done = subprocess.run(MIBGDOSE + ["dose", str(inputs["study"]), "--calibration", str(tmp_path), "--out",
                                      str(tmp_path / "dose")], capture_output=True, text=True, env=_environment())
    assert done.returncode == 2 and "is a folder" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------- 7. plausibility
def test_activity_above_the_decayed_administered_activity_is_refused():
    """7400 MBq decay with 131I's 8.0252 d half-life (DDEP): after 192.6 h exactly half, 3700 MBq."""
    from MIBGDosimetryLib.workflow.plausibility import activity_problems, decayed_activity_MBq

    hours = np.array([8.0252 * 24.0])
    assert decayed_activity_MBq(7400.0, hours)[0] == pytest.approx(3700.0)
    assert activity_problems(["tp1"], hours, 7400.0, [5000.0], ["liver"], np.array([[100.0]])) == []
    problems = activity_problems(["tp1"], hours, 7400.0, [1000.0], ["liver"], np.array([[24 * 3700.0]]))
    assert len(problems) == 1 and "tp1" in problems[0] and "'liver'" in problems[0]


def test_spect_counts_far_from_the_camera_count_rate_are_refused(study, record):
    """Q = S = 20 cps/MBq: 2000 cps in the image and 2000 cps observed are 100 MBq both ways."""
    from MIBGDosimetryLib.workflow import plausibility

    assert plausibility.count_rate_problems(["tp1"], [2000.0], [2000.0], 20.0, 20.0) == []
    assert plausibility.count_rate_problems(["tp1"], [2000.0 * 9], [2000.0], 20.0, 20.0) == []
    problems = plausibility.count_rate_problems(["tp1", "tp2"], [2000.0, 2000.0 * 11], [2000.0, 2000.0], 20.0, 20.0)
    assert len(problems) == 1 and problems[0].startswith("scan tp2")
    plausibility.check_count_rates(study, record)
    wrong = copy.deepcopy(study)
    wrong.timepoints[3].spect.array = np.asarray(wrong.timepoints[3].spect.array, dtype=float) * 1e21
    with pytest.raises(ValueError, match="scan tp4: the SPECT's counts give"):
        plausibility.check_count_rates(wrong, record)


def test_a_scan_with_a_wrong_rescale_slope_stops_the_calculation(study, record):
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, calculate

    wrong = copy.deepcopy(study)
    wrong.timepoints[1].spect.array = np.asarray(wrong.timepoints[1].spect.array, dtype=float) * 1e21
    with pytest.raises(ValueError, match=r"scan tp2 .*field of view"):
        calculate(wrong, record, DoseOptions(), log=lambda *_: None)


# ---------------------------------------------------------------------- 8. outputs never read as inputs
def test_results_inside_the_study_folder_are_not_read_as_input(study_copy, baseline):
    from MIBGDosimetryLib.study import load_study

    shutil.copytree(baseline["out"], study_copy / "results")
    loaded = load_study(str(study_copy))
    inside = [os.path.relpath(f, study_copy) for f in loaded.segmentation_files + loaded.rt_dose_files]
    assert inside == ["segmentation.dcm"]
    assert any("earlier dose calculation" in w for w in loaded.warnings)


# ---------------------------------------------------------------------- 9. early and clear failures
def test_out_naming_a_file_is_refused_at_once(inputs, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("not a folder")
    done = subprocess.run(_dose_command(inputs, target), capture_output=True, text=True, env=_environment())
    assert done.returncode == 2 and "is a file" in done.stderr and "Reading the study" not in done.stdout
    assert target.read_text() == "not a folder"


def test_a_reference_index_out_of_range_gives_a_message(inputs, tmp_path):
    done = subprocess.run(_dose_command(inputs, tmp_path / "dose", "--reference", "7"), capture_output=True,
                          text=True, env=_environment(), timeout=600)
    assert done.returncode == 2 and "reference time point 7 does not exist" in done.stderr
    assert "Traceback" not in done.stderr and "Registering" not in done.stdout


def test_a_spect_stored_as_float_pixel_data_reads_like_its_integer_original(study_copy, study):
    from MIBGDosimetryLib.study import load_study

    path = study_copy / "tp2" / "spect.dcm"
    ds = pydicom.dcmread(path)
    values = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    del ds.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "SmallestImagePixelValue",
                    "LargestImagePixelValue", "RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    ds.save_as(path)
    loaded = load_study(str(study_copy))
    assert np.allclose(loaded.timepoints[1].spect.array, study.timepoints[1].spect.array, rtol=1e-6)


def _image_problem(study, change):
    from MIBGDosimetryLib.workflow import preflight

    bad = copy.deepcopy(study)
    change(bad.timepoints[2])
    with pytest.raises(ValueError) as error:
        preflight.check_images(bad)
    return str(error.value)


def test_unusable_spect_images_each_get_their_own_message(study):
    from MIBGDosimetryLib.workflow import preflight

    preflight.check_images(study)

    def set_array(tp, array):
        tp.spect.array = array

    def saturate(tp):
        array = np.asarray(tp.spect.array, dtype=float)
        set_array(tp, np.minimum(array, np.percentile(array[array > 0], 90)))

    assert "empty" in _image_problem(study, lambda tp: set_array(tp, np.zeros_like(tp.spect.array)))
    assert "negative" in _image_problem(study, lambda tp: set_array(tp, -np.asarray(tp.spect.array, dtype=float)))
    assert "saturated" in _image_problem(study, saturate)
    assert "1 slice" in _image_problem(study, lambda tp: set_array(tp, np.asarray(tp.spect.array)[:1]))
    for message in (_image_problem(study, lambda tp: setattr(tp.ct, "origin_ras_mm", (0.0, 0.0, 2000.0))),):
        assert "tp3" in message and "CT covers only 0 %" in message


def test_a_study_too_large_for_the_memory_is_refused_with_the_estimate(study):
    from MIBGDosimetryLib.workflow import preflight

    big = copy.copy(study)
    big.timepoints = [copy.copy(tp) for tp in study.timepoints]
    for tp in big.timepoints:
        tp.spect = tp.spect.with_array(np.zeros((400, 400, 400), dtype=np.uint8))
    need = preflight.estimate_memory_bytes(big)
    available = preflight.available_memory_bytes()
    if available is None or available > need:
        pytest.skip(f"this machine has {available} bytes available, more than the {need} the test needs to exceed")
    with pytest.raises(ValueError, match=r"needs about \d+ MB of memory .* only \d+ MB is available"):
        preflight.check_memory(big)


def test_the_memory_estimate_covers_the_measured_peak(baseline, study):
    from MIBGDosimetryLib.workflow import preflight

    estimate = preflight.estimate_memory_bytes(study)
    assert baseline["peak_rss_bytes"] <= estimate <= 3 * baseline["peak_rss_bytes"]


# ---------------------------------------------------------------------- 10. identity
def test_one_patient_id_under_two_names_is_refused(study_copy):
    from MIBGDosimetryLib.study import load_study

    path = study_copy / "tp2" / "spect.dcm"
    ds = pydicom.dcmread(path)
    ds.PatientName = "Other^Child"
    ds.save_as(path)
    with pytest.raises(ValueError, match="more than one patient"):
        load_study(str(study_copy))


def test_results_carry_the_patient_and_administration(calculation, study):
    identification = calculation.results["identification"]
    assert calculation.results["provenance"]["patient"] == f"{study.patient['name']} ({study.patient['id']})"
    assert identification["patient_id"] == study.patient["id"]
    assert identification["patient_name"] == study.patient["name"]
    assert identification["administered_activity_MBq"] == pytest.approx(7400.0)
    assert datetime.datetime.fromisoformat(identification["administration_datetime"]).year == 2026


def _paralysable_series(tau_s=4e-6, sensitivity=22.0):
    """Observed count rates m = n exp(-n tau) of n = S A (EANM eq. 6) for a dead-time series."""
    activity = np.array([10.0, 50.0, 100.0, 300.0, 600.0, 1000.0, 1500.0, 2000.0])
    incident = sensitivity * activity
    return activity, incident * np.exp(-incident * tau_s)


def test_a_dead_time_series_the_model_does_not_fit_is_refused_or_warned():
    from MIBGCalibrationLib.deadtime import fit_dead_time

    activity, observed = _paralysable_series()
    clean = fit_dead_time(activity, observed)
    assert clean.tau_s == pytest.approx(4e-6, rel=1e-4) and not clean.warnings
    bad = observed.copy()
    bad[4] *= 1.94
    with pytest.raises(ValueError, match=r"misses the count rate at 600 MBq"):
        fit_dead_time(activity, bad)
    off = observed.copy()
    off[4] *= 1.2
    assert any("misses the count rate" in w for w in fit_dead_time(activity, off).warnings)


def test_the_report_lists_a_voi_without_result_and_high_warnings_first():
    from MIBGDosimetryLib.report import content

    results = {"vois": [{"name": "liver", "kind": "organ", "mean_dose_Gy": 2.0, "warnings": ["a note"]}],
               "vois_without_result": [{"name": "gallbladder", "kind": "organ", "reason": "fully overlapped: every "
                                        "voxel belongs to 'liver'", "warnings": []}],
               "warnings": ["calibration is 3 months old", "VOI 'gallbladder' has no result: fully overlapped"]}
    _, rows = content.dose_table(results)
    assert rows[1][0] == "gallbladder" and "no result: fully overlapped" in " ".join(rows[1])
    lines = content.all_warnings(results)
    assert lines[0].startswith("[HIGH] VOI 'gallbladder' has no result")
