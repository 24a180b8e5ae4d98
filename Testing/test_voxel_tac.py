"""Voxel-wise time-integrated activity against analytic integrals and the per-VOI fit."""

import numpy as np
import pytest

from MIBGDosimetryLib import compat
from MIBGDosimetryLib.tac import fit_tac
from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H
from MIBGDosimetryLib.voxel_tac import fit_voxels

LN2 = np.log(2.0)
TIMES_4 = np.array([22.0, 45.0, 70.0, 95.0])
TIMES_6 = np.array([4.0, 20.0, 44.0, 68.0, 96.0, 150.0])


def test_noise_free_mono_exponential_map_is_analytic():
    rng = np.random.default_rng(0)
    shape = (6, 7, 8)
    amplitude = rng.uniform(0.1, 50.0, shape)
    rate = rng.uniform(LN2 / 150.0, LN2 / 10.0, shape)
    maps = amplitude * np.exp(-rate * TIMES_4[:, None, None, None])
    # Instantaneous uptake: the head before the first scan is the back-extrapolated curve.
    tia, info = fit_voxels(TIMES_4, maps, model="mono", head="extrapolate")
    np.testing.assert_allclose(tia, amplitude / rate, rtol=1e-7)
    np.testing.assert_allclose(info["terminal_rate_map_per_h"], rate, rtol=1e-7)
    assert info["counts"]["mono"] == amplitude.size


@pytest.mark.parametrize("model, times, curve", [
    ("mono", TIMES_4, lambda t: 80 * np.exp(-LN2 / 35 * t)),
    ("bi", TIMES_6, lambda t: 90 * (np.exp(-LN2 / 45 * t) - np.exp(-LN2 / 5 * t))),
    ("auto", TIMES_6, lambda t: 90 * (np.exp(-LN2 / 45 * t) - np.exp(-LN2 / 5 * t))),
    ("trapezoid", TIMES_4, lambda t: 80 * np.exp(-LN2 / 35 * t)),
])
def test_identical_voxels_get_the_tia_of_the_voi_fit(model, times, curve):
    rng = np.random.default_rng(5)
    noisy = curve(times) * (1 + 0.05 * rng.standard_normal(times.size))
    voi = fit_tac(times, noisy, model=model)
    maps = np.broadcast_to(noisy[:, None, None, None], (times.size, 3, 4, 5))
    tia, info = fit_voxels(times, maps, model=model)
    np.testing.assert_allclose(tia, voi.tia_MBq_h, rtol=1e-6)
    assert info["counts"][voi.model] == 60


def test_zero_noisy_and_empty_voxels_fall_back_and_are_counted():
    curve = 50 * np.exp(-LN2 / 30 * TIMES_4)
    maps = np.tile(curve[:, None, None, None], (1, 2, 2, 2))
    maps[2, 0, 0, 0] = 0.0  # a zero inside the curve: not fittable
    maps[:, 0, 0, 1] = [5.0, 40.0, 1.0, 30.0]  # noise: no exponential describes it
    maps[:, 1, 1, 1] = 0.0  # empty voxel
    maps[:, 1, 1, 0] = [-1.0, 2.0, 1.0, 0.5]  # negative noise counts as zero
    before = maps.copy()
    tia, info = fit_voxels(TIMES_4, maps, model="mono", head="extrapolate")
    np.testing.assert_array_equal(maps, before)
    counts = info["counts"]
    assert counts == {"mono": 4, "trapezoid_fallback": 3, "empty": 1}

    def trapezoid_physical(values):
        # Linear from zero at t = 0, trapezoids between scans, physical decay after the last one.
        values = np.clip(values, 0, None)
        t = np.concatenate([[0.0], TIMES_4])
        a = np.concatenate([[0.0], values])
        return compat.trapezoid(a, t) + values[-1] / DECAY_CONSTANT_PER_H

    for index in [(0, 0, 0), (0, 0, 1), (1, 1, 0)]:
        assert tia[index] == pytest.approx(trapezoid_physical(maps[(slice(None),) + index]), rel=1e-12)
    assert tia[1, 1, 1] == 0.0
    assert tia[0, 1, 0] == pytest.approx(50 * 30 / LN2, rel=1e-7)


def test_mask_limits_the_voxels():
    maps = np.ones((4, 2, 3, 4)) * np.exp(-LN2 / 30 * TIMES_4)[:, None, None, None]
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[1, 2, 3] = True
    tia, info = fit_voxels(TIMES_4, maps, mask=mask, head="extrapolate")
    assert info["voxels"] == 1
    assert np.count_nonzero(tia) == 1
    assert tia[1, 2, 3] == pytest.approx(30 / LN2, rel=1e-7)


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="one per time point"):
        fit_voxels(TIMES_4, np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        fit_voxels(TIMES_4, np.full((4, 2, 2), np.nan))
    with pytest.raises(ValueError, match="at least 3"):
        fit_voxels(TIMES_4[:2], np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="simpler model"):
        fit_voxels(TIMES_4, np.ones((4, 2, 2)), model="tri")


def test_exponential_terms_reproduce_the_tia_and_the_repair_factor_of_the_voi_curve():
    from MIBGDosimetryLib.dose.radiobiology import lea_catcheside_g

    rng = np.random.default_rng(8)
    curve = 90 * (np.exp(-LN2 / 45 * TIMES_6) - np.exp(-LN2 / 5 * TIMES_6))
    noisy = curve * (1 + 0.03 * rng.standard_normal(TIMES_6.size))
    maps = np.tile(noisy[:, None, None, None], (1, 1, 2, 2))
    maps[3, 0, 1, 1] = 0.0  # falls back to the trapezoid
    tia, info = fit_voxels(TIMES_6, maps, model="bi", return_terms=True)
    coefficients, rates = info["coefficients_MBq"], info["rates_per_h"]
    assert coefficients.shape == rates.shape == (3, 1, 2, 2)
    np.testing.assert_allclose(np.sum(coefficients / rates, axis=0), tia, rtol=1e-10)
    voi = fit_tac(TIMES_6, noisy, model="bi")
    expected = lea_catcheside_g(*voi.exponential_terms(), 2.8)
    assert lea_catcheside_g(coefficients[:, 0, 0, 0], rates[:, 0, 0, 0], 2.8) == pytest.approx(expected, rel=1e-6)
    # The fallback voxel decays physically after its TIA: G = lambda / (lambda + mu).
    mu = LN2 / 2.8
    assert lea_catcheside_g(coefficients[:, 0, 1, 1], rates[:, 0, 1, 1], 2.8) == pytest.approx(
        DECAY_CONSTANT_PER_H / (DECAY_CONSTANT_PER_H + mu), rel=1e-12)


# --- Voxel TIA from the kinetics of the voxel's region -----------------------------------------------

def uptake_clearance(t, clearance_h=40.0, uptake_h=2.0):
    return np.exp(-LN2 / clearance_h * t) - np.exp(-LN2 / uptake_h * t)


def test_regional_voxel_tia_is_unbiased_with_additive_noise_and_zeros():
    from MIBGDosimetryLib.voxel_tac import regional_voxel_tia, summed_region_fit

    # 8000 voxels with one uptake-clearance shape and amplitudes of 0.5-2, a quarter of them empty (necrosis);
    # additive Gaussian noise makes about half of the voxels zero or negative at some scan.
    times = np.array([1.0, 4.0, 24.0, 48.0, 72.0, 144.0])
    rng = np.random.default_rng(3)
    amplitude = rng.uniform(0.5, 2.0, (20, 20, 20))
    amplitude[:5] = 0.0
    noisy = amplitude[None] * uptake_clearance(times)[:, None, None, None] + 0.25 * rng.standard_normal((6, 20, 20, 20))
    active = amplitude > 0
    assert np.mean(np.any(noisy <= 0, axis=0)[active]) > 0.3
    truth = amplitude * (40.0 - 2.0) / LN2  # integral of a (exp(-l1 t) - exp(-l2 t)) from 0 to infinity
    region = np.ones(amplitude.shape, dtype=bool)
    fit, note = summed_region_fit(times, noisy, region)
    assert note is None
    tia, info = regional_voxel_tia(times, noisy, [(region, fit)])
    # Stated tolerance: the mean relative bias of the active voxels is below 2 %.
    assert abs(np.mean(tia[active] / truth[active] - 1)) < 0.02
    assert np.all(tia >= 0)
    assert info["voxels"] == region.size and info["regions"][0]["negative_voxels_set_to_zero"] > 0


def test_identical_voxels_of_a_region_share_its_tia_and_excluded_scans_are_left_out():
    from MIBGDosimetryLib.voxel_tac import regional_voxel_tia

    times = np.array([24.0, 48.0, 72.0, 96.0])
    curve = 80 * np.exp(-LN2 / 35 * times)
    maps = np.zeros((4, 2, 3, 4))
    maps[:, 0] = curve[:, None, None] / 12
    maps[2, 0] = 0.0  # the region's scan at 72 h is empty (e.g. outside the field of view)
    maps[:, 1] = 5.0  # not in any region
    region = np.zeros((2, 3, 4), dtype=bool)
    region[0] = True
    activity = curve.copy()
    activity[2] = 0.0
    fit = fit_tac(times, activity)
    assert not fit.used[2]
    tia, info = regional_voxel_tia(times, maps, [(region, fit)])
    np.testing.assert_allclose(tia[0], fit.tia_MBq_h / 12, rtol=1e-9)
    assert np.all(tia[1] == 0)
    with pytest.raises(ValueError, match="other times"):
        regional_voxel_tia(times + 1, maps, [(region, fit)])
    with pytest.raises(ValueError, match="shape"):
        regional_voxel_tia(times, maps, [(region[0], fit)])


def test_regional_voxel_tia_of_a_region_scanned_during_uptake_sums_to_the_region_tia():
    from MIBGDosimetryLib.voxel_tac import regional_voxel_tia

    times = np.array([4.0, 24.0, 48.0, 96.0, 240.0])
    curve = 100 * uptake_clearance(times, clearance_h=75.0)
    fit = fit_tac(times, curve)
    assert fit.fitted_from_h == 24.0
    np.testing.assert_allclose(fit.evaluate(times), curve, rtol=1e-3)  # the 4 h point exactly, the rest fitted
    maps = np.broadcast_to((curve / 8)[:, None, None, None], (5, 2, 2, 2))
    tia, _ = regional_voxel_tia(times, maps, [(np.ones((2, 2, 2), bool), fit)])
    assert tia.sum() == pytest.approx(fit.tia_MBq_h, rel=1e-3)
