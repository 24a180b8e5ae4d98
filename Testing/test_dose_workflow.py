"""The whole chain on digital phantoms with known truth: calibration phantom -> calibration record,
patient study -> registration, VOIs, activities, TACs, voxel dose -> results, Slicer scene,
RT Dose, SEG and report. The chain runs once per session through ``run_demo`` (what ``make demo``
runs); the tests check its outputs against the phantoms' truth and the file formats."""

import json
import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from MIBGDosimetryLib import mrml

RESULT_FIELDS = ["name", "volume_ml", "mass_g", "tia_MBq_h", "mean_dose_Gy", "max_voxel_dose_Gy", "min_voxel_dose_Gy",
                 "max_block27_dose_Gy", "min_block27_dose_Gy", "bed_Gy", "eud_Gy", "dose_uncertainty_Gy", "tac_model",
                 "coverage_fraction", "warnings"]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    from MIBGDosimetryLib.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    lines = []
    summary = run_demo(str(out / "run"), seed=1, log=lines.append)
    return {"summary": summary, "out": out / "run", "log": lines}


def _results(demo):
    return json.loads(open(demo["summary"]["results"]).read())


def _truth(demo):
    return json.loads((demo["out"] / "patient-study" / "truth.json").read_text())


def test_every_voi_has_the_result_fields_and_provenance(demo):
    results = _results(demo)
    truth_names = {s["name"] for s in _truth(demo)["structures"]}
    assert {v["name"] for v in results["vois"]} <= truth_names
    for voi in results["vois"]:
        for field in RESULT_FIELDS:
            assert field in voi, f"{voi['name']} lacks {field}"
    provenance = results["provenance"]
    assert provenance["software"].startswith("SlicerMIBGDosimetry")
    assert provenance["inputs"]["calibration"][0]["sha256"]
    assert set(provenance["methods"]) >= {"activity", "registration", "tac", "dose"}
    assert results["calibration"]["calibration_factor_cps_per_MBq"] > 0


def test_mean_doses_of_organs_and_lesions_of_at_least_4_ml_are_within_10_percent(demo):
    truth = {s["name"]: s for s in _truth(demo)["structures"]}
    results = _results(demo)
    held = [v for v in results["vois"]
            if truth[v["name"]]["kind"] == "organ" or truth[v["name"]]["volume_ml"] >= 4.0]
    assert len(held) >= 8
    errors = {v["name"]: v["mean_dose_Gy"] / truth[v["name"]]["mean_dose_Gy"] - 1 for v in held}
    assert all(abs(e) <= 0.10 for e in errors.values()), errors
    assert demo["summary"]["passed"]


def test_calibration_of_the_demo_matches_the_phantom(demo):
    rows = {r["name"]: r for r in demo["summary"]["calibration_comparison"]}
    assert abs(rows["calibration_factor"]["relative_error"]) <= 0.02
    assert abs(rows["dead_time"]["relative_error"]) <= 0.05


def test_scene_bundle_reloads_with_identical_volumes_and_tables(demo, tmp_path):
    from MIBGDosimetryLib.volume import ImageVolume
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose
    from MIBGDosimetryLib.workflow.outputs import build_scene

    calculation = run_dose(str(demo["out"] / "patient-study"), str(demo["out"] / "calibration.json"),
                           log=lambda *_: None)
    original = build_scene(calculation)
    reloaded = mrml.load_bundle(mrml.save_bundle(original, str(tmp_path / "again.mrb")))
    demo_scene = mrml.load_bundle(demo["summary"]["scene"])
    compared = 0
    for class_name in ("vtkMRMLScalarVolumeNode", "vtkMRMLTableNode"):
        nodes = original.scene.GetNodesByClass(class_name)
        for i in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(i)
            twins = reloaded.scene.GetNodesByClassByName(class_name, node.GetName())
            assert twins.GetNumberOfItems() == 1, node.GetName()
            twin = twins.GetItemAsObject(0)
            if class_name == "vtkMRMLTableNode":
                assert mrml.table_columns(twin) == mrml.table_columns(node), node.GetName()
            else:
                a = ImageVolume.from_node(original.scene, node)
                b = ImageVolume.from_node(reloaded.scene, twin)
                assert a.same_grid(b)
                np.testing.assert_array_equal(a.array, b.array)
            assert demo_scene.scene.GetNodesByClassByName(class_name, node.GetName()).GetNumberOfItems() == 1
            compared += 1
    assert compared >= 10
    dose = demo_scene.scene.GetFirstNodeByName("Absorbed dose (Gy)")
    assert dose.GetAttribute(mrml.DOSE_VOLUME_ATTRIBUTE) == "1"
    # the demo's saved dose map is the one exported as RT Dose
    from MIBGDosimetryLib.export.rtdose import read_rt_dose

    exported = read_rt_dose(demo["summary"]["outputs"]["rtdose"])
    saved = ImageVolume.from_node(demo_scene.scene, dose)
    assert saved.same_grid(exported)
    np.testing.assert_allclose(exported.array, saved.array, atol=saved.array.max() / 65535)


def _dciodvfy_errors(path):
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def test_rt_dose_plan_and_seg_validate_and_match_the_dose_map(demo):
    from MIBGDosimetryLib.export.rtdose import read_rt_dose

    outputs = demo["summary"]["outputs"]
    for key in ("rtdose", "rtplan", "seg"):
        assert _dciodvfy_errors(outputs[key]) == [], key
    dose = read_rt_dose(outputs["rtdose"])
    results = _results(demo)
    grid = results["dose_grid"]
    assert list(dose.array.shape) == grid["shape_kji"]
    np.testing.assert_allclose(dose.spacing_mm, grid["spacing_mm"], atol=1e-4)
    ct = pydicom.dcmread(sorted((demo["out"] / "patient-study" / "tp1" / "ct").iterdir())[0])
    rtdose = pydicom.dcmread(outputs["rtdose"])
    assert rtdose.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert rtdose.StudyInstanceUID == ct.StudyInstanceUID
    # the exported dose holds the maximum of the dose map within the grid scaling's precision
    top = max(v["max_voxel_dose_Gy"] for v in results["vois"])
    assert dose.array.max() >= top * (1 - 1e-4)


def test_report_pdf_and_html_name_every_voi_and_warning(demo):
    outputs = demo["summary"]["outputs"]
    html = open(outputs["report_html"], encoding="utf-8").read()
    results = _results(demo)
    for voi in results["vois"]:
        assert voi["name"] in html
    for heading in ("body Dice after", "dead-time factor", "effective dose (mSv)"):
        assert heading in html
    assert os.path.getsize(outputs["report_pdf"]) > 20000


def test_fewer_than_three_time_points_is_refused(demo, tmp_path):
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    study = demo["out"] / "patient-study"
    short = tmp_path / "two-scans"
    short.mkdir()
    for name in ("tp1", "tp2"):
        shutil.copytree(study / name, short / name)
    with pytest.raises(ValueError, match="at least 3"):
        run_dose(str(short), str(demo["out"] / "calibration.json"), log=lambda *_: None)


def test_deidentified_export_of_study_and_results_for_central_review(demo, tmp_path):
    from MIBGDosimetryLib.export.deidentify import deidentify_study
    from MIBGDosimetryLib.study import load_study

    study_dir = demo["out"] / "patient-study"
    out = tmp_path / "review"
    mapping = tmp_path / "mapping.json"
    deidentify_study(str(study_dir), str(out), str(mapping), results_dir=str(demo["out"] / "dose"),
                     log=lambda *_: None)
    original_ct = pydicom.dcmread(sorted((study_dir / "tp1" / "ct").iterdir())[0])
    identifying = [str(original_ct.PatientName), str(original_ct.PatientID), str(original_ct.PatientBirthDate)]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".dcm", ".json", ".tsv", ".html"):
            content = path.read_bytes().decode("latin-1")
            for value in identifying:
                assert value not in content, f"{path.name} still holds {value}"
    assert not str(mapping).startswith(str(out))
    np.testing.assert_allclose(load_study(str(out)).times_h, load_study(str(study_dir)).times_h, atol=1e-6)
    for name in ("RTDOSE", "RTPLAN", "SEG"):
        assert _dciodvfy_errors(out / "results" / name / "0001.dcm") == [], name


@pytest.mark.parametrize("seed, diameters_mm", [(2, None), (3, (30.0, 25.0, 20.0, 35.0, 18.0))])
def test_mean_doses_within_10_percent_for_other_seeds_and_lesion_sizes(demo, tmp_path, seed, diameters_mm):
    from MIBGDosimetryLib.phantoms import anatomy, patient
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    lesions = anatomy.DEFAULT_LESIONS if diameters_mm is None else anatomy.lesions_with_diameters(diameters_mm)
    study = tmp_path / "study"
    patient.write_patient_study(str(study), patient.PatientConfig(seed=seed, lesions=lesions))
    calculation = run_dose(str(study), str(demo["out"] / "calibration.json"), log=lambda *_: None)
    truth = {s["name"]: s for s in json.loads((study / "truth.json").read_text())["structures"]}
    errors = {}
    for voi in calculation.results["vois"]:
        true = truth[voi["name"]]
        if true["kind"] == "organ" or true["volume_ml"] >= 4.0:
            errors[voi["name"]] = voi["mean_dose_Gy"] / true["mean_dose_Gy"] - 1
    assert len(errors) >= 10
    assert all(abs(e) <= 0.10 for e in errors.values()), errors


def test_whole_body_readings_and_blood_samples_go_into_the_results(demo, tmp_path):
    """Whole-body dose-rate readings sampled from the phantom's true total activity: the retention TIA
    and the SPECT body TIA against the phantom's analytic total TIA, the blood method in results.json."""
    import math

    from MIBGDosimetryLib.report import content
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose

    truth = _truth(demo)
    curves = [truth["remainder"]["kinetics"]] + [s["kinetics"] for s in truth["structures"]]

    def total_MBq(hours):
        return sum(c * math.exp(-rate * hours)
                   for k in curves for c, rate in zip(k["coefficients_MBq"], k["rates_per_h"]))

    true_tia = truth["remainder"]["tia_MBq_h"] + sum(s["tia_MBq_h"] for s in truth["structures"])
    readings = tmp_path / "wb.csv"
    readings.write_text("time_h,uSv_per_h\n" + "".join(f"{h},{0.01 * total_MBq(h)!r}\n"
                                                       for h in (2, 6, 21, 45, 69, 93, 141)))
    blood = tmp_path / "blood.csv"
    blood.write_text("time_h,kBq_per_mL\n2,1.0\n24,0.6\n48,0.35\n96,0.12\n")
    options = DoseOptions(wholebody_measurements=str(readings), blood_samples=str(blood), patient_mass_kg=16.0,
                          administered_activity_MBq=total_MBq(2.0))
    results = run_dose(str(demo["out"] / "patient-study"), str(demo["out"] / "calibration.json"), options,
                       log=lambda *_: None).results
    whole_body = results["whole_body"]
    assert whole_body["wb_tia_MBq_h"] == pytest.approx(true_tia, rel=0.05)
    spect = whole_body["spect_comparison"]
    assert spect["field_of_view_covers_whole_body"]
    assert spect["spect_body_tia_MBq_h"] == pytest.approx(true_tia, rel=0.10)
    assert set(results["red_marrow"]) == {"whole_body", "blood"}
    assert results["red_marrow"]["whole_body"]["red_marrow_dose_Gy"] == whole_body["wb_dose_Gy"]
    assert any("whole body:" in w for w in results["warnings"])  # the phantom's CT body weighs less than 16 kg
    assert content.whole_body_lines(results)[0].startswith("Whole-body dose:")


def test_the_same_study_stored_in_bq_per_ml_gives_the_same_doses(demo, tmp_path):
    """The demo's SPECTs rewritten as a quantitative vendor reconstruction would store them (Units
    BQML, activity concentration C / (Q t V) by EANM eq. 9 written out here) give the doses of the
    counts study: the calibration is applied once, not again."""
    from bq_per_ml_study import rewrite_spects_in_bq_per_ml
    from MIBGCalibrationLib.record import CalibrationRecord
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    study = tmp_path / "study"
    shutil.copytree(demo["out"] / "patient-study", study)
    q = CalibrationRecord.from_json(str(demo["out"] / "calibration.json")).calibration_factor_cps_per_MBq
    converted = rewrite_spects_in_bq_per_ml(str(study), q)
    assert converted >= 3
    calculation = run_dose(str(study), str(demo["out"] / "calibration.json"), log=lambda *_: None)
    expected = {v["name"]: v["mean_dose_Gy"] for v in _results(demo)["vois"]}
    found = {v["name"]: v["mean_dose_Gy"] for v in calculation.results["vois"]}
    assert set(found) == set(expected)
    for name, dose in expected.items():
        assert found[name] == pytest.approx(dose, rel=0.01), name
    assert all(tp["units_path"]["units"] == "Bq/ml" and tp["units_path"]["calibration_applied"] is False
               for tp in calculation.results["timepoints"])
