"""Calibration record (JSON and MRML text node), calibration plots on real MRML and the OSEM update choice."""

import json

import numpy as np
import pytest

from MIBGCalibrationLib import deadtime, osem, plots, recovery
from MIBGCalibrationLib.record import CalibrationRecord
from MIBGCalibrationLib.threshold import ThresholdModel
from MIBGDosimetryLib import mrml

VOLUMES_ML = np.array([1.0, 3.0, 8.0, 20.0, 60.0, 110.0])


def curve_points(r_max=0.9, v0=4.0, n=1.2):
    return r_max / (1 + (v0 / VOLUMES_ML) ** n)


def make_record():
    values = curve_points()
    curve = recovery.fit_recovery_curve(VOLUMES_ML, values, 0.01 * values, q_relative_uncertainty=0.02)
    return CalibrationRecord(
        calibration_factor_cps_per_MBq=22.1, calibration_factor_cps_per_MBq_uncertainty=0.3,
        recovery_curve=curve, recovery_inserts=[{"name": "S1", "volume_ml": 1.0, "recovery": float(values[0])}],
        dead_time_s=4.0e-6, dead_time_s_uncertainty=1.0e-7, sensitivity_cps_per_MBq=22.0,
        threshold_model=ThresholdModel(a=0.35, b=0.4, a_uncertainty=0.01, b_uncertainty=0.05),
        camera={"manufacturer": "Test", "model": "Dual head", "crystal_mm": 15.9}, collimator="HEGP",
        energy_windows=[{"index": 2, "lower_keV": 328.0, "upper_keV": 401.0, "name": "PEAK"}],
        reconstruction={"description": "OSEM", "suggested_updates": 32},
        provenance={"inputs": [{"path": "phantom.json", "sha256": "0" * 64}]})


def test_record_round_trips_through_json_and_mrml(tmp_path, mrml_context):
    record = make_record()
    path = tmp_path / "calibration.json"
    record.to_json(str(path))
    from_file = CalibrationRecord.from_json(str(path))
    assert from_file == record
    node = record.to_node(mrml_context.scene)
    assert node.IsA("vtkMRMLTextNode")
    assert float(node.GetAttribute("MIBGCalibration.Q_cps_per_MBq")) == 22.1
    from_node = CalibrationRecord.from_node(mrml_context.scene.GetNodeByID(node.GetID()))
    assert from_node == record
    # The curve evaluated from the record equals the model it was fitted to (noise-free points).
    value, uncertainty = from_node.recovery_coefficient(5.0)
    assert value == pytest.approx(0.9 / (1 + (4.0 / 5.0) ** 1.2), rel=1e-4)
    assert uncertainty == pytest.approx(0.02 * value, rel=0.05)  # the common Q part dominates here
    incident = 1.5e5
    observed = incident * np.exp(-incident * 4.0e-6)
    assert from_node.dead_time_factor(observed) * observed == pytest.approx(incident, rel=1e-9)
    assert from_node.threshold_model.fraction(2.0) == pytest.approx(0.55)


def test_record_saved_in_a_scene_bundle_reloads(tmp_path, mrml_context):
    record = make_record()
    node = record.to_node(mrml_context.scene)
    bundle = mrml.save_bundle(mrml_context, str(tmp_path / "calibration.mrb"))
    reloaded = mrml.load_bundle(bundle)
    nodes = reloaded.scene.GetNodesByClass("vtkMRMLTextNode")
    found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())
             if nodes.GetItemAsObject(i).GetAttribute("MIBGCalibration.Record") == "1"]
    assert len(found) == 1 and found[0].GetName() == node.GetName()
    assert CalibrationRecord.from_node(found[0]) == record


def test_unknown_missing_and_foreign_records_are_refused(tmp_path, mrml_context):
    data = make_record().to_dict()
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**data, "surprise": 1}, default=float))
    with pytest.raises(ValueError, match="Unknown fields.*surprise"):
        CalibrationRecord.from_json(str(path))
    incomplete = dict(data)
    del incomplete["dead_time_s"]
    path.write_text(json.dumps(incomplete, default=float))
    with pytest.raises(ValueError, match="missing.*dead_time_s"):
        CalibrationRecord.from_json(str(path))
    path.write_text(json.dumps({**data, "version": 99}, default=float))
    with pytest.raises(ValueError, match="version 99"):
        CalibrationRecord.from_json(str(path))
    other = mrml_context.scene.AddNewNodeByClass("vtkMRMLTextNode", "notes")
    with pytest.raises(ValueError, match="not a calibration record"):
        CalibrationRecord.from_node(other)
    no_curve = CalibrationRecord(calibration_factor_cps_per_MBq=10.0, calibration_factor_cps_per_MBq_uncertainty=0.1)
    with pytest.raises(ValueError, match="no recovery curve"):
        no_curve.recovery_coefficient(3.0)
    with pytest.raises(ValueError, match="positive"):
        CalibrationRecord(calibration_factor_cps_per_MBq=0.0, calibration_factor_cps_per_MBq_uncertainty=0.0)


def test_plots_are_built_on_real_mrml(mrml_context):
    scene = mrml_context.scene
    inserts = [recovery.InsertRecovery(f"S{i}", float(v), 1.0, 1.0, float(r), 0.01, np.zeros(3), 0.0)
               for i, (v, r) in enumerate(zip(VOLUMES_ML, curve_points()))]
    curve = recovery.fit_recovery_curve(VOLUMES_ML, curve_points(), 0.01 * curve_points())
    chart = plots.recovery_chart(scene, inserts, curve)
    assert chart.GetNumberOfPlotSeriesNodes() == 4
    measured = chart.GetNthPlotSeriesNode(0)
    table = measured.GetTableNode()
    columns = mrml.table_columns(table)
    np.testing.assert_allclose(columns["recovery"], curve_points(), rtol=1e-5)
    fitted = mrml.table_columns(chart.GetNthPlotSeriesNode(1).GetTableNode())
    np.testing.assert_allclose(fitted["recovery"], 0.9 / (1 + (4.0 / np.array(fitted["volume_ml"])) ** 1.2),
                               rtol=1e-4)

    activity = np.linspace(100, 3000, 8)
    incident = 20.0 * activity
    fit = deadtime.fit_dead_time(activity, incident * np.exp(-incident * 3e-6))
    rate_chart = plots.count_rate_chart(scene, fit)
    model = mrml.table_columns(rate_chart.GetNthPlotSeriesNode(1).GetTableNode())
    expected = 20.0 * np.array(model["activity_MBq"]) * np.exp(-20.0 * np.array(model["activity_MBq"]) * 3e-6)
    np.testing.assert_allclose(model["observed_cps"], expected, rtol=1e-5)
    assert rate_chart.GetNthPlotSeriesNode(1).GetYColumnName() == "observed_cps"


def test_osem_choice_follows_the_documented_rule(mrml_context):
    updates = [8, 16, 32, 64, 128]
    # Recovery saturating with updates, noise growing with updates.
    recoveries = {"S1": [0.50, 0.62, 0.68, 0.70, 0.71], "S2": [0.80, 0.86, 0.88, 0.885, 0.89]}
    noise = [0.05, 0.07, 0.10, 0.14, 0.20]
    choice = osem.choose_updates(updates, recoveries, noise)
    # 0.95 x max: S1 needs >= 0.6745 (32 updates and more), S2 >= 0.8455 (16 and more); lowest noise -> 32.
    assert choice.suggested_updates == 32
    assert "95 %" in choice.rule
    chart = plots.updates_chart(mrml_context.scene, choice)
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    with pytest.raises(ValueError, match="At least 2"):
        osem.choose_updates([8], {"S1": [0.5]}, [0.1])
    with pytest.raises(ValueError, match="different number"):
        osem.choose_updates([8, 8], {"S1": [0.5, 0.6]}, [0.1, 0.2])
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    image = np.where(mask, 100.0, 0.0)
    image[1, 1, 1] = 110.0
    values = image[mask]
    assert osem.coefficient_of_variation(image, mask) == pytest.approx(values.std(ddof=1) / values.mean())
