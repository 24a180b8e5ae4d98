"""Dead time (EANM eq. 6) and dead-time factor (EANM eq. 7) against analytic count-rate series."""

import json
import subprocess
import sys

import numpy as np
import pytest

from MIBGCalibrationLib import deadtime

TAU_S = 2.5e-6
SENSITIVITY_CPS_PER_MBQ = 150.0


def paralysable_series(seed, noise=0.003, steps=10):
    """Observed rates of an increasing-activity series from EANM eq. 6 with relative Gaussian noise."""
    activity = np.linspace(50.0, 3000.0, steps)
    incident = SENSITIVITY_CPS_PER_MBQ * activity
    observed = incident * np.exp(-incident * TAU_S)
    return activity, observed * (1.0 + noise * np.random.default_rng(seed).standard_normal(steps))


def test_fit_recovers_tau_and_sensitivity_from_noisy_series():
    activity, observed = paralysable_series(seed=3)
    fit = deadtime.fit_dead_time(activity, observed)
    assert fit.tau_s == pytest.approx(TAU_S, rel=0.05)
    assert fit.sensitivity_cps_per_MBq == pytest.approx(SENSITIVITY_CPS_PER_MBQ, rel=0.01)
    # The stated uncertainty covers the true value (3 sigma) and is not absurdly large.
    assert abs(fit.tau_s - TAU_S) < 3 * fit.tau_s_uncertainty
    assert fit.tau_s_uncertainty < 0.1 * TAU_S
    # The plain low-activity extrapolation underestimates the sensitivity (losses already there).
    assert fit.linear_sensitivity_cps_per_MBq < SENSITIVITY_CPS_PER_MBQ


def test_fit_is_exact_on_noise_free_series():
    activity, observed = paralysable_series(seed=0, noise=0.0)
    fit = deadtime.fit_dead_time(activity, observed)
    assert fit.tau_s == pytest.approx(TAU_S, rel=1e-6)
    np.testing.assert_allclose(fit.model_observed_cps(activity), observed, rtol=1e-8)


def test_too_few_points_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="At least 4"):
        deadtime.fit_dead_time([10, 20, 30], [1, 2, 3])
    with pytest.raises(ValueError, match="positive"):
        deadtime.fit_dead_time([10, 20, 30, 0], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="one count rate per activity"):
        deadtime.fit_dead_time([10, 20, 30, 40], [1, 2, 3])


def test_dtf_iteration_inverts_eq6():
    incident = np.array([1e3, 5e4, 1.5e5, 3.0e5])
    observed = incident * np.exp(-incident * TAU_S)
    dtf = deadtime.dead_time_factor(TAU_S, observed)
    # Incident rate = DTF x observed rate on the low-rate branch of eq. 6.
    np.testing.assert_allclose(dtf * observed, incident, rtol=1e-9)
    assert deadtime.dead_time_factor(TAU_S, float(observed[1])) == pytest.approx(incident[1] / observed[1], rel=1e-9)
    assert deadtime.dead_time_factor(0.0, 1e5) == 1.0


def test_dtf_at_the_maximum_is_e_and_beyond_it_is_an_error():
    maximum = deadtime.paralysable_maximum_cps(TAU_S)
    assert maximum == pytest.approx(1 / (np.e * TAU_S))
    assert deadtime.dead_time_factor(TAU_S, maximum) == pytest.approx(np.e, rel=1e-3)
    with pytest.raises(ValueError, match="paralysable maximum"):
        deadtime.dead_time_factor(TAU_S, 1.01 * maximum)
    with pytest.raises(ValueError, match="paralysable maximum"):
        deadtime.dead_time_factor(TAU_S, np.array([1e3, 1.5 * maximum]))


def test_per_projection_and_average_factors():
    incident = np.linspace(1e5, 2e5, 8)
    frame_s = 20.0
    counts = incident * np.exp(-incident * TAU_S) * frame_s
    per_view = deadtime.projection_dead_time_factors(TAU_S, counts, frame_s)
    np.testing.assert_allclose(per_view * counts / frame_s, incident, rtol=1e-9)
    average = deadtime.average_dead_time_factor(TAU_S, counts, frame_s)
    assert per_view.min() < average < per_view.max()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "MIBGDosimetryLib.cli", *args], capture_output=True, text=True)


def test_deadtime_and_dtf_commands(tmp_path):
    activity, observed = paralysable_series(seed=5)
    csv = tmp_path / "series.csv"
    csv.write_text("activity_MBq,observed_cps\n" + "".join(f"{a},{c}\n" for a, c in zip(activity, observed)))
    result = run_cli("deadtime", "--csv", str(csv))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["tau_s"] == pytest.approx(TAU_S, rel=0.05)
    assert output["tau_s_uncertainty"] > 0
    assert output["sensitivity_cps_per_MBq"] == pytest.approx(SENSITIVITY_CPS_PER_MBQ, rel=0.01)

    observed_cps = 1.2e5
    result = run_cli("dtf", "--tau-s", str(TAU_S), "--observed-cps", str(observed_cps))
    assert result.returncode == 0, result.stderr
    dtf = json.loads(result.stdout)["dtf"]
    incident = dtf * observed_cps
    assert incident * np.exp(-incident * TAU_S) == pytest.approx(observed_cps, rel=1e-9)

    result = run_cli("dtf", "--tau-s", str(TAU_S), "--observed-cps", "1e6")
    assert result.returncode == 2 and "paralysable maximum" in result.stderr
    short = tmp_path / "short.csv"
    short.write_text("activity_MBq,observed_cps\n1,100\n2,200\n")
    result = run_cli("deadtime", "--csv", str(short))
    assert result.returncode == 2 and "At least 4" in result.stderr


def _timepoint(rate_cps, projections=(), metadata=None):
    import types

    return types.SimpleNamespace(label="tp1", duration_s=1000.0, observed_count_rate_cps=rate_cps,
                                 projections=list(projections), metadata=dict(metadata or {}))


def _projection_summary(window_counts, detectors):
    """A projection-file summary as the study loader makes it: 20 s, three windows of 131I."""
    windows = [{"name": n, "lower_keV": lo, "upper_keV": hi, "counts": c}
               for (n, lo, hi), c in zip((("LOWER", 291.2, 327.6), ("PEAK", 327.6, 400.4), ("UPPER", 400.4, 436.8)),
                                         window_counts)]
    return {"file": "proj.dcm", "duration_s": 20.0, "counts_accumulated": None, "number_of_detectors": detectors,
            "energy_windows": windows}


def _record(definition):
    from MIBGCalibrationLib.record import CalibrationRecord

    return CalibrationRecord(20.0, 0.2, dead_time_s=TAU_S, dead_time_s_uncertainty=0.0,
                             dead_time_count_rate=definition)


def test_patient_count_rate_is_counted_as_the_calibration_defines_it():
    """Window and detectors of the dead-time count rate follow the record; the DTF is EANM eq. 7 of that rate."""
    from MIBGDosimetryLib.workflow.activity import scan_factors

    # 2 detectors, 20 s: photopeak 1.2e6 counts (60 kcps), scatter windows 0.4e6 (20 kcps).
    summary = _projection_summary((0.2e6, 1.2e6, 0.2e6), detectors=2)
    tp = _timepoint(60000.0, [summary], {"count_rate_source": "projections", "number_of_detectors": 1})
    cases = [(deadtime.count_rate_definition(), 60000.0),
             (deadtime.count_rate_definition("all"), 80000.0),
             (deadtime.count_rate_definition("photopeak", per_detector=True), 30000.0),
             (deadtime.count_rate_definition("all", per_detector=True), 40000.0)]
    for definition, expected_cps in cases:
        factors = scan_factors(tp, _record(definition))
        assert factors.observed_count_rate_cps == pytest.approx(expected_cps, rel=1e-12), definition
        assert factors.dead_time_factor == pytest.approx(deadtime.dead_time_factor(TAU_S, expected_cps), rel=1e-12)
    # Per detector vs all detectors together differs by far more than the DTF's uncertainty.
    summed = scan_factors(tp, _record(deadtime.count_rate_definition())).dead_time_factor
    per_head = scan_factors(tp, _record(deadtime.count_rate_definition(per_detector=True))).dead_time_factor
    assert summed / per_head - 1.0 > 0.05
    # A reconstruction whose CountsAccumulated counts every window: the projections' photopeak rate is used.
    spect_header = _timepoint(80000.0, [summary], {"count_rate_source": "spect", "number_of_detectors": 1})
    factors = scan_factors(spect_header, _record(deadtime.count_rate_definition()))
    assert factors.observed_count_rate_cps == pytest.approx(60000.0, rel=1e-12)
    assert any("photopeak window(s) of the projection data" in n for n in factors.notes)
    # A rate the user gave is used as it is.
    override = _timepoint(50000.0, [summary], {"count_rate_source": "override"})
    assert scan_factors(override, _record(deadtime.count_rate_definition("all", True))).observed_count_rate_cps == 50000.0
    # Per detector without a known number of detectors: no guess, no correction, and a note.
    bare = _timepoint(60000.0)
    factors = scan_factors(bare, _record(deadtime.count_rate_definition(per_detector=True)))
    assert factors.dead_time_factor == 1.0 and any("NumberOfDetectors" in n for n in factors.notes)


def test_count_rates_near_the_paralysable_maximum_are_flagged():
    from MIBGDosimetryLib.workflow.activity import scan_factors

    maximum = deadtime.paralysable_maximum_cps(TAU_S)
    record = _record(deadtime.count_rate_definition())
    assert not any("paralysable maximum" in n for n in scan_factors(_timepoint(0.75 * maximum), record).notes)
    notes = scan_factors(_timepoint(0.85 * maximum), record).notes
    assert any("85% of the paralysable maximum" in n for n in notes)
    with pytest.raises(ValueError, match="exceeds the paralysable maximum"):
        scan_factors(_timepoint(1.05 * maximum), record)


def test_count_rate_definition_in_the_record():
    from MIBGCalibrationLib.record import CalibrationRecord

    record = _record(deadtime.count_rate_definition("all", per_detector=True))
    again = CalibrationRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again.dead_time_count_rate == {"energy_window": "all", "per_detector": True}
    assert CalibrationRecord(20.0, 0.2).dead_time_count_rate == {"energy_window": "photopeak", "per_detector": False}
    # A record written before the field existed: photopeak rate of all detectors, said in its warnings.
    old = record.to_dict()
    del old["dead_time_count_rate"]
    read = CalibrationRecord.from_dict(old)
    assert read.dead_time_count_rate == deadtime.count_rate_definition()
    assert any("dead_time_count_rate" in w for w in read.warnings)
    for bad in ({"energy_window": "scatter", "per_detector": False}, {"energy_window": "all"},
                {"energy_window": "all", "per_detector": "yes"}):
        data = record.to_dict()
        data["dead_time_count_rate"] = bad
        with pytest.raises(ValueError, match="count"):
            CalibrationRecord.from_dict(data)
