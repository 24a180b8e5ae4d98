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
TIMES_8 = np.array([20.0, 30.0, 44.0, 68.0, 96.0, 120.0, 150.0, 200.0])


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


# Mono-exponential truth: instantaneous uptake, so the head before the first scan is its back-extrapolation;
# bi and tri: the fitted uptake phase (their default head).
@pytest.mark.parametrize("name, times, curve, truth, head", [
    ("mono", TIMES_7, mono, mono_tia(), "extrapolate"),
    ("bi", TIMES_7, bi, bi_tia(), None),
    ("tri", TIMES_8, lambda t: tri(t, **TRI), tri_tia(**TRI), None),
])
def test_noise_free_tia_is_analytic_and_aicc_picks_the_generating_model(name, times, curve, truth, head):
    explicit = fit_tac(times, curve(times), model=name, head=head)
    assert explicit.tia_MBq_h == pytest.approx(truth, rel=0.01)
    auto = fit_tac(times, curve(times), head=head)
    assert auto.model == name
    assert set(auto.aicc) >= {"mono", "bi"}
    assert auto.tia_MBq_h == pytest.approx(truth, rel=0.01)
    later = np.linspace(times[0], 300.0, 13)
    np.testing.assert_allclose(auto.evaluate(later), curve(later), rtol=0.01, atol=1e-3 * curve(times).max())


def test_effective_half_life_is_the_terminal_phase():
    fit = fit_tac(TIMES_7, tri(TIMES_7, **TRI), model="tri")
    assert fit.effective_half_life_h == pytest.approx(TRI["h1"], rel=0.01)
    assert fit_tac(TIMES_7, bi(TIMES_7)).effective_half_life_h == pytest.approx(40.0, rel=1e-4)


def test_noisy_tia_lies_within_its_stated_uncertainty_in_the_expected_fraction_of_cases():
    rng = np.random.default_rng(7)
    times = np.array([22.0, 45.0, 70.0, 95.0])
    sigma = 0.04 * mono(times)
    pulls_absolute, pulls_relative = [], []
    for _ in range(300):
        noisy = mono(times) + sigma * rng.standard_normal(times.size)
        fit = fit_tac(times, noisy, sigma, model="mono", head="extrapolate")
        # The head before the first scan is an assumption with its own term; the fit term is tested here.
        pulls_absolute.append((fit.tia_MBq_h - mono_tia()) / fit.uncertainty_terms_MBq_h["fit"])
        relative = fit_tac(times, noisy, model="mono", head="extrapolate")
        pulls_relative.append((relative.tia_MBq_h - mono_tia()) / relative.uncertainty_terms_MBq_h["fit"])
    pulls_absolute = np.array(pulls_absolute)
    # With known uncertainties the pulls would be standard normal; the covariance is scaled up when the
    # points scatter more than stated (and never down), so at least 68 % lie inside one sigma.
    assert 0.68 < np.mean(np.abs(pulls_absolute) < 1) < 0.9
    assert 0.7 < np.std(pulls_absolute) < 1.05
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
    fit = fit_tac(TIMES_5, mono(TIMES_5), model="mono", head="extrapolate")
    assert fit.coverage_fraction == pytest.approx(np.exp(-lam * 20) - np.exp(-lam * 150), rel=1e-6)
    assert any("80 %" in w for w in fit.warnings)
    early = np.array([2.0, 24.0, 48.0, 96.0, 200.0])
    well = fit_tac(early, mono(early, half_life_h=30.0), model="mono", head="extrapolate")
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
    stated = fit_tac(TIMES_5, mono(TIMES_5), sigma, model="trapezoid").uncertainty_terms_MBq_h["fit"]
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
    with pytest.raises(ValueError, match="at least 2"):
        fit_tac([20.0], [10.0])
    with pytest.raises(ValueError, match="at least 2"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="effective half-life"):
        fit_tac([20.0], [10.0], model="single")
    with pytest.raises(ValueError, match="one activity per time point"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0])
    with pytest.raises(ValueError, match="positive activity uncertainty"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0, 3.0], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="simpler model"):
        fit_tac([20.0, 40.0], [10.0, 8.0], model="bi")
    with pytest.raises(ValueError, match="uptake half-time"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0, 6.0], head="uptake")
    with pytest.raises(ValueError, match="Unknown head"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0, 6.0], model="trapezoid", head="extrapolate")
    with pytest.raises(ValueError, match="Unknown"):
        fit_tac([20.0, 40.0, 60.0], [10.0, 8.0, 6.0], model="quad")


def test_inputs_are_not_modified_and_order_does_not_matter():
    times = np.array([96.0, 20.0, 68.0, 44.0])
    activity = mono(times)
    before = times.copy(), activity.copy()
    shuffled = fit_tac(times, activity, model="mono")
    assert shuffled.tia_MBq_h > 0
    np.testing.assert_array_equal(times, before[0])
    np.testing.assert_array_equal(activity, before[1])
    ordered = fit_tac(np.sort(times), mono(np.sort(times)), model="mono")
    assert shuffled.tia_MBq_h == pytest.approx(ordered.tia_MBq_h, rel=1e-12)


def test_command_line_prints_json():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["tac", "--times-h", ",".join(str(t) for t in TIMES_5),
                         "--activity-MBq", ",".join(repr(float(a)) for a in mono(TIMES_5)), "--model", "auto",
                         "--head", "extrapolate"])
    assert code == 0
    result = json.loads(out.getvalue())
    assert result["model"] == "mono"
    assert result["tia_MBq_h"] == pytest.approx(mono_tia(), rel=1e-6)
    assert result["effective_half_life_h"] == pytest.approx(40.0, rel=1e-6)
    assert result["coverage_fraction"] == pytest.approx(np.exp(-LN2 / 40 * 20) - np.exp(-LN2 / 40 * 150), rel=1e-6)
    assert {"tia_uncertainty_MBq_h", "parameters", "warnings"} <= set(result)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["tac", "--times-h", "20", "--activity-MBq", "10"]) == 2
    assert "at least 2" in err.getvalue()


# --- Few scans, uptake before the first scan, rising curves, scatter-scaled uncertainties -----------------

def uptake_clearance(t, a=100.0, clearance_h=40.0, uptake_h=6.0):
    """A(t) = a (exp(-l1 t) - exp(-l2 t)): uptake from zero at administration, then clearance."""
    return a * (np.exp(-LN2 / clearance_h * t) - np.exp(-LN2 / uptake_h * t))


def uptake_clearance_tia(a=100.0, clearance_h=40.0, uptake_h=6.0):
    return a * (clearance_h - uptake_h) / LN2


def test_aicc_counts_the_residual_variance_and_is_defined_only_for_n_minus_k_minus_1_positive():
    from MIBGDosimetryLib.tac_models import aicc, aicc_eligible

    # Mono-exponential (2 fitted parameters + variance: K = 3) with 6 points: n ln(WRSS/n) + 2K + 2K(K+1)/(n-K-1).
    assert aicc(0.6, 6, 2, 1.0) == pytest.approx(6 * np.log(0.1) + 6 + 24 / 2, rel=1e-12)
    assert [aicc_eligible(n, 2) for n in (3, 4, 5)] == [False, False, True]
    assert [aicc_eligible(n, 3) for n in (5, 6)] == [False, True]
    assert [aicc_eligible(n, 5) for n in (7, 8)] == [False, True]
    with pytest.raises(ValueError, match="not defined"):
        aicc(0.6, 4, 2, 1.0)


def test_three_scans_on_the_command_line_give_a_tia_with_every_field():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["tac", "--times-h", "24,72,144", "--activity-MBq", "80,40,15"])
    assert code == 0
    result = json.loads(out.getvalue())
    assert {"model", "tia_MBq_h", "coverage_fraction", "effective_half_life_h", "warnings"} <= set(result)
    assert {"uncertainty_terms_MBq_h", "tia_alternatives_MBq_h", "relative_sensitivities", "head"} <= set(result)
    assert result["model"] == "mono" and result["head"] == "extrapolate"
    # Linear uptake from zero gives the smallest TIA, back-extrapolation (the default) the largest.
    heads = result["tia_alternatives_MBq_h"]["before_first_scan"]
    assert heads["linear"] < heads["midpoint"] < result["tia_MBq_h"] == pytest.approx(heads["extrapolate"])
    assert heads["midpoint"] == pytest.approx((heads["linear"] + heads["extrapolate"]) / 2, rel=1e-12)
    # Before-first-scan term: truth uniform between the bounds, estimate at the upper one: (U - L) / sqrt 3.
    assert result["uncertainty_terms_MBq_h"]["before_first_scan"] == pytest.approx(
        (heads["extrapolate"] - heads["linear"]) / np.sqrt(3), rel=1e-9)
    assert result["relative_sensitivities"]["before_first_scan"]["linear"] == pytest.approx(
        heads["linear"] / result["tia_MBq_h"] - 1, rel=1e-9)
    # Between the scans a mono-exponential through 80, 40, 15 at 24, 72, 144 h: half-lives 48 and 50.6 h.
    assert 45.0 < result["effective_half_life_h"] < 55.0
    assert any("AICc" in w for w in result["warnings"])


def test_three_exact_mono_exponential_scans_give_the_analytic_tia_for_each_head():
    times = np.array([24.0, 72.0, 144.0])
    lam = LN2 / 40.0
    for head, head_area in [("extrapolate", 100 * (1 - np.exp(-lam * 24)) / lam),
                            ("linear", mono(24.0) * 24 / 2)]:
        fit = fit_tac(times, mono(times), head=head)
        assert fit.tia_MBq_h == pytest.approx(head_area + mono(24.0) / lam, rel=1e-6)


@pytest.mark.parametrize("times", [[24.0, 72.0, 144.0], [24.0, 48.0, 72.0, 96.0], [24.0, 48.0, 72.0, 120.0, 168.0]],
                         ids=["3 scans", "4 scans", "5 scans"])
@pytest.mark.parametrize("uptake_h", [2.0, 6.0])
def test_uptake_clearance_curves_with_few_scans(times, uptake_h):
    times = np.asarray(times)
    truth = uptake_clearance_tia(uptake_h=uptake_h)
    fit = fit_tac(times, uptake_clearance(times, uptake_h=uptake_h))
    terms = fit.uncertainty_terms_MBq_h
    assert set(terms) == {"fit", "before_first_scan", "after_last_scan"}
    assert fit.tia_uncertainty_MBq_h == pytest.approx(np.sqrt(sum(v ** 2 for v in terms.values())), rel=1e-12)
    # Exact activities: the stated uncertainty covers the error of the assumptions.
    assert abs(fit.tia_MBq_h - truth) < 2.0 * fit.tia_uncertainty_MBq_h
    heads = fit.tia_alternatives_MBq_h["before_first_scan"]
    assert {"linear", "extrapolate", "midpoint"} <= set(heads)
    sensitivities = fit.relative_sensitivities()["before_first_scan"]
    assert sensitivities["extrapolate"] == pytest.approx((heads["extrapolate"] - fit.tia_MBq_h) / fit.tia_MBq_h)
    # Instantaneous uptake overestimates; the default's error is at most about half of the spread.
    assert heads["extrapolate"] > truth
    assert abs(fit.tia_MBq_h - truth) < 0.6 * (heads["extrapolate"] - heads["linear"]) + 2 * terms["fit"]


def test_known_uptake_half_time_recovers_the_analytic_tia_from_three_scans():
    times = np.array([24.0, 72.0, 144.0])
    truth = uptake_clearance_tia(uptake_h=6.0)
    fit = fit_tac(times, uptake_clearance(times, uptake_h=6.0), uptake_half_life_h=6.0)
    assert fit.head == "uptake"
    assert fit.tia_MBq_h == pytest.approx(truth, rel=0.02)
    back = fit_tac(times, uptake_clearance(times, uptake_h=6.0), head="extrapolate")
    assert back.tia_MBq_h > 1.08 * truth  # what instantaneous uptake would overstate
    assert fit.tia_alternatives_MBq_h["before_first_scan"]["uptake"] == pytest.approx(fit.tia_MBq_h)


def test_zero_and_negative_points_are_left_out_with_a_warning_that_names_them():
    times = np.array([24.0, 48.0, 72.0, 96.0])
    activity = mono(times)
    activity[2] = 0.0
    sigma = 0.03 * activity
    fit = fit_tac(times, activity, sigma)
    assert any("72 h" in w and "zero" in w for w in fit.warnings)
    assert list(fit.used) == [True, True, False, True]
    reduced = fit_tac(times[[0, 1, 3]], activity[[0, 1, 3]], sigma[[0, 1, 3]])
    assert fit.tia_MBq_h == pytest.approx(reduced.tia_MBq_h, rel=1e-12)
    assert fit.to_dict()["excluded_times_h"] == [72.0]
    negative = activity.copy()
    negative[0] = -2.0
    fit = fit_tac(times, negative)
    assert any("24 h" in w and "negative" in w for w in fit.warnings)
    assert np.isfinite(fit.tia_MBq_h)
    two = fit_tac([24.0, 96.0], [mono(24.0), mono(96.0)], [1.0, 0.5], head="extrapolate")
    assert two.tia_MBq_h == pytest.approx(mono_tia(), rel=1e-6)
    assert any("at least 3" in w for w in two.warnings)
    # Two points without uncertainties: the curve passes through both, no fit uncertainty can be stated.
    bare = fit_tac([24.0, 96.0], [mono(24.0), mono(96.0)])
    assert bare.tia_MBq_h == pytest.approx(two.tia_MBq_h, rel=1e-9)
    assert bare.to_dict()["uncertainty_terms_MBq_h"]["fit"] is None
    assert any("cannot be estimated" in w for w in bare.warnings)


def test_rising_curve_at_the_last_scan_warns_with_the_physical_decay_alternative():
    # Slow uptake (half-time 60 h) still rising at 96 h; clearance half-life 150 h.
    times = np.array([24.0, 48.0, 72.0, 96.0])
    activity = uptake_clearance(times, clearance_h=150.0, uptake_h=60.0)
    assert activity[-1] > activity[-2]
    fit = fit_tac(times, activity, 0.02 * activity)
    alternative = fit.tia_alternatives_MBq_h["after_last_scan"]["trapezoid_physical_decay"]
    assert any("rising" in w and f"{alternative:.4g}" in w for w in fit.warnings)
    assert fit.uncertainty_terms_MBq_h["after_last_scan"] == pytest.approx(
        abs(alternative - fit.tia_MBq_h) / np.sqrt(3), rel=1e-9)
    truth = uptake_clearance_tia(clearance_h=150.0, uptake_h=60.0)
    assert abs(fit.tia_MBq_h - truth) < 2 * fit.tia_uncertainty_MBq_h


def test_tia_z_scores_with_lognormal_scatter_larger_than_stated_have_unit_spread():
    # Truth: uptake (half-time 2 h) and clearance (40 h). Measured activities scatter lognormally by 8 %,
    # while the stated uncertainties are 1 % (counting statistics only): the fit must see the scatter.
    rng = np.random.default_rng(2026)
    times = np.array([2.0, 6.0, 24.0, 48.0, 72.0, 120.0, 168.0])
    truth = uptake_clearance_tia(uptake_h=2.0)
    z = []
    for _ in range(300):
        noisy = uptake_clearance(times, uptake_h=2.0) * np.exp(0.08 * rng.standard_normal(times.size))
        fit = fit_tac(times, noisy, 0.01 * noisy)
        z.append((fit.tia_MBq_h - truth) / fit.tia_uncertainty_MBq_h)
    z = np.array(z)
    assert 0.7 < np.std(z) < 1.5
    assert abs(np.mean(z)) < 0.5


def test_scan_during_uptake_is_integrated_by_trapezoid_before_the_mono_exponential_fit():
    # Five scans, the first (4 h) while a 2 h uptake is still under way: only the mono-exponential is
    # eligible, and it is fitted from the maximum on.
    times = np.array([4.0, 24.0, 48.0, 96.0, 240.0])
    truth = uptake_clearance_tia(clearance_h=75.0, uptake_h=2.0)
    activity = uptake_clearance(times, clearance_h=75.0, uptake_h=2.0)
    fit = fit_tac(times, activity)
    assert fit.model == "mono" and any("rises until 24 h" in w for w in fit.warnings)
    # The trapezoid 4-24 h lies below the concave uptake curve: 1.3 % low here.
    assert fit.tia_MBq_h == pytest.approx(truth, rel=0.02)
    assert fit.effective_half_life_h == pytest.approx(75.0, rel=0.01)
    # Between first and last scan: trapezoid 4-24 h plus the fitted curve 24-240 h.
    a, lam = fit.parameters["a_MBq"], fit.parameters["lambda_per_h"]
    body = (activity[0] + activity[1]) / 2 * 20 + a / lam * (np.exp(-lam * 24) - np.exp(-lam * 240))
    assert fit.coverage_fraction == pytest.approx(body / fit.tia_MBq_h, rel=1e-6)


def test_uptake_prior_gives_the_population_mean_tia_and_its_spread():
    # Patients whose uptake half-times follow the log-normal prior and whose scans from a day on all read
    # the same clearance curve: each one's uptake-clearance curve through the first scan, integrated
    # analytically; the TIA under the prior is their mean, the head term their spread.
    times = np.array([24.0, 72.0, 144.0])
    prior = (1.0, 2.0)
    uptake_h = prior[0] * prior[1] ** np.random.default_rng(7).standard_normal(200_000)
    uptake_h = uptake_h[uptake_h < 30.0]
    t1, clearance_h = 24.0, 40.0
    amplitude = mono(t1) / (np.exp(-LN2 / clearance_h * t1) - np.exp(-LN2 / uptake_h * t1))
    head = amplitude * (clearance_h * -np.expm1(-LN2 / clearance_h * t1)
                        - uptake_h * -np.expm1(-LN2 / uptake_h * t1)) / LN2
    truths = head + mono(t1) * clearance_h / LN2
    fit = fit_tac(times, mono(times), uptake_prior=prior)
    assert fit.head == "prior"
    assert fit.tia_MBq_h == pytest.approx(truths.mean(), rel=2e-3)
    assert fit.uncertainty_terms_MBq_h["before_first_scan"] == pytest.approx(truths.std(), rel=0.05)
    assert fit.tia_alternatives_MBq_h["before_first_scan"]["prior"] == pytest.approx(fit.tia_MBq_h)
    with pytest.raises(ValueError, match="geometric standard deviation"):
        fit_tac(times, mono(times), uptake_prior=(1.0, 0.5))
