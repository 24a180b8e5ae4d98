"""Time-activity curves inside the dose workflow: a VOI with an empty scan, voxel TIA from each region's
kinetics and the rescaling of the voxel map to the VOI TIAs, against analytic curves."""

import types

import numpy as np
import pytest

from MIBGDosimetryLib.workflow.activity import ScanFactors
from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, _corrected_tia_map, _voi_tac, _voxel_tia
from MIBGDosimetryLib.workflow.vois import Voi

LN2 = np.log(2.0)
TIMES_H = np.array([24.0, 48.0, 72.0, 96.0])


def factors():
    return [ScanFactors(duration_s=1800.0, calibration_factor_cps_per_MBq=10.0, calibration_relative_uncertainty=0.03,
                        dead_time_factor=1.0, dead_time_factor_relative_uncertainty=0.0) for _ in TIMES_H]


def test_a_voi_with_an_empty_scan_gets_a_tia_and_a_warning_naming_the_scan():
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1:3, 1:3, 1:3] = True
    voi = Voi("liver", "organ", mask, "test")
    activities = 50.0 * np.exp(-LN2 / 30.0 * TIMES_H)
    activities[1] = 0.0  # no counts in this VOI at 48 h
    with np.errstate(divide="ignore"):
        relative = 1.0 / np.sqrt(activities * 1e4)  # Poisson: infinite for zero counts
    pv_info = {"method": "none"}
    entry, fit = _voi_tac(voi, activities, relative, 0.0, pv_info, TIMES_H, factors(),
                          DoseOptions(tac_head="extrapolate"))
    assert any("48 h" in w and "zero" in w for w in entry["warnings"])
    assert entry["tac"]["excluded_times_h"] == [48.0]
    # Mono-exponential through the exact remaining points, back-extrapolated to administration.
    assert entry["tia_MBq_h"] == pytest.approx(50.0 * 30.0 / LN2, rel=1e-6)
    terms = entry["_fit_uncertainty_MBq_h"]
    assert set(terms) == {"fit", "before_first_scan", "after_last_scan"}
    assert terms["before_first_scan"] > 0
    assert entry["tac"]["head"] == "extrapolate"


def test_by_default_the_activity_before_the_first_scan_follows_the_uptake_prior_of_the_voi_class():
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1:3, 1:3, 1:3] = True
    activities = 50.0 * np.exp(-LN2 / 30.0 * TIMES_H)
    relative = np.full(TIMES_H.size, 0.01)
    entries = {}
    for kind in ("organ", "lesion"):
        voi = Voi(kind, kind, mask, "test")
        entries[kind], _ = _voi_tac(voi, activities, relative, 0.0, {"method": "none"}, TIMES_H, factors(),
                                    DoseOptions(uptake_prior={"lesion": (4.0, 1.5)}))
        assert entries[kind]["tac"]["head"] == "prior"
    # Uptake with half-time T_u (much shorter than the first scan's 24 h) takes about A(0) T_u / ln 2 from
    # instantaneous uptake; the organ prior's mean T_u is median x exp(ln(gsd)^2 / 2).
    mean_uptake_h = 1.0 * np.exp(np.log(2.0) ** 2 / 2)
    assert 50.0 * 30.0 / LN2 - entries["organ"]["tia_MBq_h"] == pytest.approx(50.0 * mean_uptake_h / LN2, rel=0.03)
    # The slower uptake stated for lesions takes more.
    assert entries["lesion"]["tia_MBq_h"] < entries["organ"]["tia_MBq_h"] - 50.0 * 2.0 / LN2
    # The urinary bladder fills from the first minutes: its class takes the shorter median (0.5 h).
    bladder, _ = _voi_tac(Voi("urinary bladder", "organ", mask, "test"), activities, relative, 0.0,
                          {"method": "none"}, TIMES_H, factors(), DoseOptions())
    assert 50.0 * 30.0 / LN2 - bladder["tia_MBq_h"] == pytest.approx(50.0 * 0.5 * np.exp(np.log(2.0) ** 2 / 2) / LN2,
                                                                     rel=0.03)
    with pytest.raises(ValueError, match="'lesion' or 'bladder'"):
        DoseOptions(uptake_prior={"tumour": (1.0, 2.0)})


def test_voxel_tia_follows_each_region_and_the_corrected_map_sums_to_the_voi_tias():
    shape = (6, 6, 6)
    lesion = np.zeros(shape, dtype=bool)
    lesion[1:3, 1:3, 1:3] = True
    organ = np.zeros(shape, dtype=bool)
    organ[3:5, 2:6, 1:5] = True
    curves = {"lesion": 10.0 * np.exp(-LN2 / 60.0 * TIMES_H), "organ": 4.0 * np.exp(-LN2 / 20.0 * TIMES_H)}
    rng = np.random.default_rng(4)
    weights = rng.uniform(0.5, 1.5, shape)
    maps = np.zeros((TIMES_H.size,) + shape)
    rest = ~(lesion | organ)
    maps[:, rest] = 0.05 * np.exp(-LN2 / 40.0 * TIMES_H)[:, None]
    vois, results, fits = [], [], {}
    for name, mask in (("lesion", lesion), ("organ", organ)):
        share = weights[mask] / weights[mask].sum()
        maps[:, mask] = curves[name][:, None] * share[None]
        activities = curves[name] * 1.25  # partial-volume correction raises the VOI activity
        voi = Voi(name, "lesion" if name == "lesion" else "organ", mask, "test")
        entry, fit = _voi_tac(voi, activities, np.full(TIMES_H.size, 0.01), 0.0, {"method": "gtm"}, TIMES_H,
                              factors(), DoseOptions())
        vois.append(voi)
        results.append(entry)
        fits[name] = fit
    reference = types.SimpleNamespace(spacing_mm=(4.0, 4.0, 4.0), array=maps[0])
    voxel_tia, _ = _voxel_tia(TIMES_H, maps, reference, DoseOptions(kernel_half_width=1), lambda _: None, vois, fits)
    for voi, entry in zip(vois, results):
        lam = LN2 / (60.0 if voi.name == "lesion" else 20.0)
        # Uncorrected: each voxel its share of the VOI curve, integrated with the VOI's head and clearance.
        share = weights[voi.mask] / weights[voi.mask].sum()
        np.testing.assert_allclose(voxel_tia[voi.mask], share * entry["tia_MBq_h"] / 1.25, rtol=1e-6)
        assert fits[voi.name].parameters["lambda_per_h"] == pytest.approx(lam, rel=1e-6)
    corrected, scales = _corrected_tia_map(voxel_tia, vois, results, np.ones(shape, bool), None)
    for voi, entry in zip(vois, results):
        assert corrected[voi.mask].sum() == pytest.approx(entry["tia_MBq_h"], rel=1e-9)
        assert scales[voi.name] == pytest.approx(1.25, rel=1e-6)
    np.testing.assert_allclose(corrected[rest], voxel_tia[rest])
    assert np.all(voxel_tia[rest] > 0)
