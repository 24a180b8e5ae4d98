"""Dose numerics against direct summation, constructed maps and closed-form radiobiology."""

import json

import numpy as np
import pytest
from scipy import integrate

from MIBGDosimetryLib.dose import radiobiology, statistics, uncertainty
from MIBGDosimetryLib.dose.absorbed_dose import dose_map_Gy, tia_to_dose_Gy
from MIBGDosimetryLib.dose.convolution import convolve_kernel
from MIBGDosimetryLib.tac import fit_tac

LN2 = np.log(2.0)


def direct_convolution(source, kernel):
    """Shift-and-add: every kernel voxel spreads the whole map by its offset from the centre."""
    out = np.zeros_like(source, dtype=float)
    centre = np.array(kernel.shape) // 2
    n = source.shape
    for offset in np.ndindex(kernel.shape):
        o = np.array(offset) - centre
        src = tuple(slice(max(0, -d), s - max(0, d)) for d, s in zip(o, n))
        dst = tuple(slice(max(0, d), s - max(0, -d)) for d, s in zip(o, n))
        out[dst] += source[src] * kernel[offset]
    return out


@pytest.mark.parametrize("slab_slices", [None, 1, 2, 4, 9])
def test_convolution_equals_direct_summation(slab_slices):
    rng = np.random.default_rng(1)
    source = rng.random((9, 8, 7))
    kernel = rng.random((5, 3, 7))  # asymmetric and wider than the map along i
    expected = direct_convolution(source, kernel)
    result = convolve_kernel(source, kernel, slab_slices=slab_slices)
    assert result.shape == source.shape and result.dtype == np.float64
    assert np.max(np.abs(result - expected)) <= 1e-10 * np.max(np.abs(expected))
    single = convolve_kernel(source, kernel, dtype=np.float32, slab_slices=slab_slices)
    assert single.dtype == np.float32
    assert np.max(np.abs(single - expected)) <= 1e-5 * np.max(np.abs(expected))


def test_convolution_conserves_the_total_and_keeps_the_inputs():
    rng = np.random.default_rng(2)
    source = np.zeros((20, 21, 22))
    source[6:14, 7:14, 8:14] = rng.random((8, 7, 6))
    kernel = rng.random((7, 7, 7))
    before = source.copy(), kernel.copy()
    result = convolve_kernel(source, kernel, slab_slices=3)
    assert result.sum() == pytest.approx(source.sum() * kernel.sum(), rel=1e-12)
    np.testing.assert_array_equal(source, before[0])
    np.testing.assert_array_equal(kernel, before[1])


def test_local_deposition_is_the_trivial_kernel():
    source = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(convolve_kernel(source, np.full((1, 1, 1), 2.5)), 2.5 * source)
    with pytest.raises(ValueError, match="odd size"):
        convolve_kernel(source, np.ones((2, 3, 3)))


def test_dose_conversion_and_density_correction():
    # 1 MBq h = 3600 MBq s; times 1 mGy/(MBq s) = 3600 mGy = 3.6 Gy.
    assert tia_to_dose_Gy(1.0, 1.0) == pytest.approx(3.6)
    tia = np.zeros((9, 9, 9))
    tia[4, 4, 4] = 2.0
    kernel = np.zeros((3, 3, 3))
    kernel[1, 1, 1], kernel[1, 1, 2] = 0.5, 0.1
    # Soft tissue at the kernel's own density (1.04 g/cm3) everywhere but one voxel of 2 g/cm3.
    density = np.full(tia.shape, 1.04)
    density[4, 4, 5] = 2.0
    dose = dose_map_Gy(tia, kernel, density, kernel_density_g_cm3=1.04)
    # Tissue of the kernel's density keeps the kernel dose (no division by 1.04 as if made for water).
    assert dose[4, 4, 4] == pytest.approx(2.0 * 3600 * 0.5 / 1000)
    # The kernel entry one voxel along +i from the centre lands one voxel along +i from the source; the
    # same energy in 2/1.04 times the mass.
    assert dose[4, 4, 5] == pytest.approx(2.0 * 3600 * 0.1 / 1000 * 1.04 / 2.0)
    assert np.count_nonzero(np.abs(dose) > 1e-12) == 2
    assert dose.min() >= 0.0
    with pytest.raises(ValueError, match="density the kernel was computed for"):
        dose_map_Gy(tia, kernel, density)


def test_block27_extremes_on_a_constructed_map():
    dose = np.full((12, 12, 12), 5.0)
    mask = np.zeros(dose.shape, dtype=bool)
    mask[2:9, 2:9, 2:9] = True
    dose[3:6, 4:7, 4:7] = 20.0  # a hot 3x3x3 block wholly inside the VOI
    mask[1, 5, 5] = True  # a voxel sticking out of the VOI cube: no block around it fits in the VOI
    dose[1, 5, 5] = 1000.0
    dose[6:9, 6:9, 6:9] = 1.0  # the cold corner block, wholly inside
    stats = statistics.voi_dose_statistics(dose, mask, voxel_volume_ml=0.027)
    assert stats["max_block27_dose_Gy"] == pytest.approx(20.0)
    assert stats["min_block27_dose_Gy"] == pytest.approx(1.0)
    assert stats["block27_rule"] == statistics.BLOCK27_INSIDE
    assert stats["max_voxel_dose_Gy"] == 1000.0
    assert stats["min_voxel_dose_Gy"] == 1.0
    assert stats["volume_ml"] == pytest.approx(344 * 0.027)
    assert stats["mean_dose_Gy"] == pytest.approx(dose[mask].mean())

    # Brute force over every VOI voxel whose whole block lies in the VOI, on a random map.
    rng = np.random.default_rng(4)
    noisy = rng.random((10, 10, 10))
    voi = rng.random((10, 10, 10)) < 0.9
    means = [noisy[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2].mean()
             for k, j, i in zip(*np.nonzero(voi))
             if 0 < k < 9 and 0 < j < 9 and 0 < i < 9 and voi[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2].all()]
    found = statistics.block27_extremes(noisy, voi)
    assert found["max_block27_dose_Gy"] == pytest.approx(max(means), rel=1e-12)
    assert found["min_block27_dose_Gy"] == pytest.approx(min(means), rel=1e-12)


def test_block27_of_a_thin_voi_uses_blocks_centred_in_it():
    dose = np.zeros((5, 5, 5))
    dose[0, 0, 0] = 27.0
    mask = np.zeros(dose.shape, dtype=bool)
    mask[0:2, 0:2, 0:2] = True
    found = statistics.block27_extremes(dose, mask)
    assert found["block27_rule"] == statistics.BLOCK27_CENTRE
    # Centred at the corner voxel the block holds the 8 voxels inside the map.
    assert found["max_block27_dose_Gy"] == pytest.approx(27.0 / 8)
    assert found["min_block27_dose_Gy"] == pytest.approx(27.0 / 27)


def test_dvh_of_a_ramp_and_mass_weighting():
    dose = np.arange(1.0, 101.0).reshape(4, 5, 5)  # 100 voxels with 1, 2, ..., 100 Gy
    mask = np.ones(dose.shape, dtype=bool)
    result = statistics.dvh(dose, mask, dose_levels_Gy=[0.0, 0.5, 50.0, 99.5, 100.0, 101.0],
                            v_doses_Gy=[50.0, 20.0])
    # The hottest 2 % are 99 and 100 Gy; the hottest half 51 ... 100; the hottest 98 % 3 ... 100.
    assert (result["D2_Gy"], result["D50_Gy"], result["D98_Gy"]) == (99.0, 51.0, 3.0)
    assert result["volume_fraction"] == pytest.approx([1.0, 1.0, 0.51, 0.01, 0.01, 0.0])
    assert result["V_Gy"] == {50.0: pytest.approx(0.51), 20.0: pytest.approx(0.81)}
    density = np.where(dose > 50, 3.0, 1.0)
    weighted = statistics.dvh(dose, mask, density, dose_levels_Gy=[50.5])
    assert weighted["volume_fraction"][0] == pytest.approx(150 / 200)
    stats = statistics.voi_dose_statistics(dose, mask, 0.5, density)
    assert stats["mass_g"] == pytest.approx(200 * 0.5)
    assert stats["mean_dose_Gy"] == pytest.approx((np.sum(np.arange(1, 51)) + 3 * np.sum(np.arange(51, 101))) / 200)


def test_bed_of_mono_exponential_dose_rate_is_the_closed_form():
    dose, half_life_h, t_rep, alpha_beta = 30.0, 60.0, 1.5, 10.0
    lam, mu = LN2 / half_life_h, LN2 / t_rep
    g = radiobiology.lea_catcheside_g([1.0], [lam], t_rep)
    assert radiobiology.bed_Gy(dose, g, alpha_beta) == pytest.approx(
        dose * (1 + dose * lam / ((mu + lam) * alpha_beta)), rel=1e-12)
    times = np.array([20.0, 44.0, 68.0, 96.0])
    fit = fit_tac(times, 50 * np.exp(-lam * times), model="mono")
    assert radiobiology.bed_from_tac_Gy(dose, fit, alpha_beta, t_rep) == pytest.approx(
        dose * (1 + dose * lam / ((mu + lam) * alpha_beta)), rel=1e-6)


def test_g_factor_of_uptake_and_washout_matches_numerical_integration():
    washout, uptake, t_rep = LN2 / 40.0, LN2 / 4.0, 2.8
    mu = LN2 / t_rep
    closed = radiobiology.lea_catcheside_g([1.0, -1.0], [washout, uptake], t_rep)

    def rate(t):
        return np.exp(-washout * t) - np.exp(-uptake * t)

    inner = integrate.dblquad(lambda w, t: rate(t) * rate(w) * np.exp(-mu * (t - w)), 0, 2000, 0, lambda t: t,
                              epsabs=1e-10, epsrel=1e-10)[0]
    total = 1 / washout - 1 / uptake
    assert closed == pytest.approx(2 * inner / total ** 2, rel=1e-6)


def test_eud_of_uniform_dose_is_the_dose_and_stays_finite():
    assert radiobiology.eud_Gy(np.full(50, 12.5), 0.35) == pytest.approx(12.5, rel=1e-12)
    two_level = radiobiology.eud_Gy([10.0, 30.0], 0.3)
    assert two_level == pytest.approx(-np.log((np.exp(-3.0) + np.exp(-9.0)) / 2) / 0.3, rel=1e-12)
    assert 10.0 < two_level < 20.0
    assert radiobiology.eud_Gy([2000.0, 3000.0], 1.0, weights=[1.0, 3.0]) == pytest.approx(2000 + np.log(4.0), rel=1e-9)
    assert radiobiology.eubed_Gy(np.full(4, 40.0), 0.2) == pytest.approx(40.0)


def test_tissue_parameter_table(tmp_path):
    table = radiobiology.load_tissue_parameters()
    assert table["tumour"]["alpha_beta_Gy"] == 10.0 and table["tumour"]["repair_half_time_h"] == 1.5
    assert table["kidney"]["alpha_beta_Gy"] == 2.6 and table["kidney"]["repair_half_time_h"] == 2.8
    assert all(entry["source"] for entry in table.values())
    bad = tmp_path / "tissues.json"
    bad.write_text(json.dumps({"bone": {"alpha_beta_Gy": -1, "repair_half_time_h": 1.0}}))
    with pytest.raises(ValueError, match="bone"):
        radiobiology.load_tissue_parameters(bad)


def test_first_order_dose_uncertainty_agrees_with_monte_carlo():
    fit_rel, q_rel, r_rel, v_rel = 0.04, 0.03, 0.05, 0.06
    tia = uncertainty.tia_uncertainty(1000.0, fit_rel * 1000.0, q_rel, r_rel)
    dose = uncertainty.dose_uncertainty(10.0, tia["relative"], v_rel)
    rng = np.random.default_rng(9)
    n = 400_000
    # The measured quantities scatter about their true values; the dose follows D ~ TIA_fit / (Q R V).
    sample = (10.0 * (1 + fit_rel * rng.standard_normal(n)) / (1 + q_rel * rng.standard_normal(n))
              / (1 + r_rel * rng.standard_normal(n)) / (1 + v_rel * rng.standard_normal(n)))
    assert np.std(sample) == pytest.approx(dose["dose_uncertainty_Gy"], rel=0.05)
    assert tia["relative"] == pytest.approx(np.sqrt(fit_rel ** 2 + q_rel ** 2 + r_rel ** 2))
    with pytest.raises(ValueError, match="Unknown uncertainty component"):
        uncertainty.combined_relative_uncertainty({"mass": 0.1}, uncertainty.DOSE_SENSITIVITIES)


def test_tia_uncertainty_takes_the_time_activity_terms_as_separate_components():
    terms = {"fit": 30.0, "before_first_scan": 40.0, "after_last_scan": 0.0}
    tia = uncertainty.tia_uncertainty(1000.0, terms, 0.05, 0.0)
    assert tia["components"]["before_first_scan"] == pytest.approx(0.04)
    assert tia["relative"] == pytest.approx(np.sqrt(0.03 ** 2 + 0.04 ** 2 + 0.05 ** 2), rel=1e-12)
    with pytest.raises(ValueError, match="Unknown time-activity uncertainty term"):
        uncertainty.tia_uncertainty(1000.0, {"tail": 1.0}, 0.05, 0.0)
