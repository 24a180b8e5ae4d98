"""Time-activity curves of one VOI against analytic integrals, coverage fractions and Monte Carlo."""

import io
import json
import contextlib

import numpy as np
import pytest

from MIBGDosimetryLib import cli
from MIBGDosimetryLib.tac import fit_tac
from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H

LN2 = np.log(2.0)
TIMES_5 = np.array([20.0, 44.0, 68.0, 96.0, 150.0])
TIMES_7 = np.array([20.0, 30.0, 44.0, 68.0, 96.0, 120.0, 150.0])


def mono(t, a=100.0, half_life_h=40.0):
    return a * np.exp(-LN2 / half_life_h * t)


def mono_tia(a=100.0, half_life_h=40.0):
    return a * half_life_h / LN2


def bi(t, a=100.0, washout_h=40.0, uptake_h=6.0):
    return a * (np.exp(-LN2 / washout_h * t) - np.exp(-LN2 / uptake_h * t))


def bi_tia(a=100.0, washout_h=40.0, uptake_h=6.0):
    return a * (washout_h - uptake_h) / LN2


TRI = dict(a1=60.0, h1=70.0, a2=60.0, h2=15.0, hu=5.0)


def tri(t, a1, h1, a2, h2, hu):
    return a1 * np.exp(-LN2 / h1 * t) + a2 * np.exp(-LN2 / h2 * t) - (a1 + a2) * np.exp(-LN2 / hu * t)


def tri_tia(a1, h1, a2, h2, hu):
    return (a1 * h1 + a2 * h2 - (a1 + a2) * hu) / LN2


@pytest.mark.parametrize("name, times, curve, truth", [
    ("mono", TIMES_5, mono, mono_tia()),
    ("bi", TIMES_5, bi, bi_tia()),
    ("tri", TIMES_7, lambda t: tri(t, **TRI), tri_tia(**TRI)),
])
def test_noise_free_tia_is_analytic_and_aicc_picks_the_generating_model(name, times, curve, truth):
    explicit = fit_tac(times, curve(times), model=name)
    assert explicit.tia_MBq_h == pytest.approx(truth, rel=0.01)
    auto = fit_tac(times, curve(times))
    assert auto.model == name
    assert set(auto.aicc) >= {"mono", "bi"}
    assert auto.tia_MBq_h == pytest.approx(truth, rel=0.01)
    later = np.linspace(times[0], 300.0, 13)
    np.testing.assert_allclose(auto.evaluate(later), curve(later), rtol=0.01, atol=1e-3 * curve(times).max())


def test_effective_half_life_is_the_terminal_phase():
    fit = fit_tac(TIMES_7, tri(TIMES_7, **TRI), model="tri")
    assert fit.effective_half_life_h == pytest.approx(TRI["h1"], rel=0.01)
    assert fit_tac(TIMES_5, bi(TIMES_5)).effective_half_life_h == pytest.approx(40.0, rel=1e-4)


def test_noisy_tia_lies_within_its_stated_uncertainty_in_the_expected_fraction_of_cases():
    rng = np.random.default_rng(7)
    times = np.array([22.0, 45.0, 70.0, 95.0])
    sigma = 0.04 * mono(times)
    pulls_absolute, pulls_relative = [], []
    for _ in range(300):
        noisy = mono(times) + sigma * rng.standard_normal(times.size)
        fit = fit_tac(times, noisy, sigma, model="mono")
        pulls_absolute.append((fit.tia_MBq_h - mono_tia()) / fit.tia_uncertainty_MBq_h)
        relative = fit_tac(times, noisy, model="mono")
        pulls_relative.append((relative.tia_MBq_h - mono_tia()) / relative.tia_uncertainty_MBq_h)
    pulls_absolute = np.array(pulls_absolute)
    # With known uncertainties the pulls are standard normal: 68 % inside one sigma, unit spread.
    assert 0.60 < np.mean(np.abs(pulls_absolute) < 1) < 0.76
    assert np.std(pulls_absolute) == pytest.approx(1.0, abs=0.12)
    assert abs(np.mean(pulls_absolute)) < 0.2
    # With relative weights the scale is estimated from 2 degrees of freedom: Student t, wider tails.
    assert 0.5 < np.mean(np.abs(np.array(pulls_relative)) < 1) < 0.8


def test_noisy_bi_exponential_tia_within_one_percent_with_small_noise():
    rng = np.random.default_rng(3)
    noisy = bi(TIMES_7) * (1 + 0.003 * rng.standard_normal(TIMES_7.size))
    fit = fit_tac(TIMES_7, noisy, 0.003 * bi(TIMES_7), model="bi")
    assert fit.tia_MBq_h == pytest.approx(bi_tia(), rel=0.01)
    assert abs(fit.tia_MBq_h - bi_tia()) < 3 * fit.tia_uncertainty_MBq_h


def test_coverage_fraction_equals_the_analytic_value_and_warns_below_80_percent():
    lam = LN2 / 40.0
    fit = fit_tac(TIMES_5, mono(TIMES_5), model="mono")
    assert fit.coverage_fraction == pytest.approx(np.exp(-lam * 20) - np.exp(-lam * 150), rel=1e-6)
    assert any("80 %" in w for w in fit.warnings)
    early = np.array([2.0, 24.0, 48.0, 96.0, 200.0])
    well = fit_tac(early, mono(early, half_life_h=30.0), model="mono")
    lam = LN2 / 30.0
    assert well.coverage_fraction == pytest.approx(np.exp(-lam * 2) - np.exp(-lam * 200), rel=1e-6)
    assert well.coverage_fraction > 0.8
    assert not any("80 %" in w for w in well.warnings)
    uptake = fit_tac(TIMES_5, bi(TIMES_5), model="bi")
    inside = bi_tia() - (100 * (40 - 6) / LN2 - 100 * (40 * np.exp(-LN2 / 40 * 20) - 6 * np.exp(-LN2 / 6 * 20)) / LN2
                         + 100 * (40 * np.exp(-LN2 / 40 * 150) - 6 * np.exp(-LN2 / 6 * 150)) / LN2)
    assert uptake.coverage_fraction == pytest.approx(inside / bi_tia(), rel=1e-5)


def test_trapezoid_converges_to_the_integral_and_tail_options_differ_by_the_analytic_tail():
    dense = np.linspace(1.0, 400.0, 200)
    fit = fit_tac(dense, mono(dense), model="trapezoid", head="constant")
    assert fit.tia_MBq_h == pytest.approx(mono_tia(), rel=0.005)
    assert fit.parameters["tail_lambda_per_h"] == pytest.approx(LN2 / 40.0, rel=1e-9)
    fitted = fit_tac(TIMES_5, mono(TIMES_5), model="trapezoid")
    physical = fit_tac(TIMES_5, mono(TIMES_5), model="trapezoid", tail="physical")
    a_last = mono(TIMES_5[-1])
    assert physical.tia_MBq_h - fitted.tia_MBq_h == pytest.approx(
        a_last / DECAY_CONSTANT_PER_H - a_last / (LN2 / 40.0), rel=1e-9)
    assert physical.effective_half_life_h == pytest.approx(8.0252 * 24, rel=1e-9)
    # Linear head: the area before the first scan is the triangle from zero at t = 0.
    constant = fit_tac(TIMES_5, mono(TIMES_5), model="trapezoid", head="constant")
    assert constant.tia_MBq_h - fitted.tia_MBq_h == pytest.approx(mono(20.0) * 20.0 / 2, rel=1e-9)


def test_trapezoid_uncertainty_matches_monte_carlo():
    rng = np.random.default_rng(11)
    sigma = 0.03 * mono(TIMES_5)
    stated = fit_tac(TIMES_5, mono(TIMES_5), sigma, model="trapezoid").tia_uncertainty_MBq_h
    samples = [fit_tac(TIMES_5, mono(TIMES_5) + sigma * rng.standard_normal(5), sigma, model="trapezoid").tia_MBq_h
               for _ in range(2000)]
    assert np.std(samples) == pytest.approx(stated, rel=0.1)


def test_single_time_point_with_assumed_half_life():
    fit = fit_tac([48.0], [mono(48.0)], model="single", effective_half_life_h=40.0,
                  effective_half_life_uncertainty_h=4.0)
    assert fit.tia_MBq_h == pytest.approx(mono_tia(), rel=1e-12)

    # Analytic derivative of TIA(T) = A(t) exp(ln2 t / T) T / ln2 with respect to T, times u(T).
    def tia_of(half_life_h):
        return mono(48.0) * np.exp(LN2 * 48.0 / half_life_h) * half_life_h / LN2

    derivative = (tia_of(40.0 + 1e-4) - tia_of(40.0 - 1e-4)) / 2e-4
    assert fit.tia_uncertainty_MBq_h == pytest.approx(abs(derivative) * 4.0, rel=1e-5)
    assert any("single-time-point" in w.lower() for w in fit.warnings)


def test_too_few_points_and_bad_input_are_errors():
    with pytest.raises(ValueError, match="at least 3 time points"):
        fit_tac([20.0, 40.0], [10.0, 8.0])
    with pytest.raises(ValueError, match="effective half-life"):
        fit_tac([20.0], [10.0], model="single")
    with pytest.raises(ValueError, match="one activity per time point"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0])
    with pytest.raises(ValueError, match="non-negative"):
        fit_tac([20.0, 40.0, 60.0], [10.0, -8.0, 3.0])
    with pytest.raises(ValueError, match="simpler model"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0, 6.0], model="bi")
    with pytest.raises(ValueError, match="Unknown"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0, 6.0], model="quad")


def test_inputs_are_not_modified_and_order_does_not_matter():
    times = np.array([96.0, 20.0, 68.0, 44.0])
    activity = mono(times)
    before = times.copy(), activity.copy()
    shuffled = fit_tac(times, activity, model="mono")
    np.testing.assert_array_equal(times, before[0])
    np.testing.assert_array_equal(activity, before[1])
    ordered = fit_tac(np.sort(times), mono(np.sort(times)), model="mono")
    assert shuffled.tia_MBq_h == pytest.approx(ordered.tia_MBq_h, rel=1e-12)


def test_command_line_prints_json():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["tac", "--times-h", ",".join(str(t) for t in TIMES_5),
                         "--activity-MBq", ",".join(repr(float(a)) for a in mono(TIMES_5)), "--model", "auto"])
    assert code == 0
    result = json.loads(out.getvalue())
    assert result["model"] == "mono"
    assert result["tia_MBq_h"] == pytest.approx(mono_tia(), rel=1e-6)
    assert result["effective_half_life_h"] == pytest.approx(40.0, rel=1e-6)
    assert result["coverage_fraction"] == pytest.approx(np.exp(-LN2 / 40 * 20) - np.exp(-LN2 / 40 * 150), rel=1e-6)
    assert {"tia_uncertainty_MBq_h", "parameters", "warnings"} <= set(result)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["tac", "--times-h", "20,40", "--activity-MBq", "10,8"]) == 2
    assert "at least 3 time points" in err.getvalue()
