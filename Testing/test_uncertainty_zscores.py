"""Are the stated uncertainties honest? z = (computed - true) / u over phantom realisations.

Each realisation is a patient study from a phantom generator with its own seed (9101 onwards, used
nowhere else) run through the whole dose calculation with one calibration record (seed 9100). Per
VOI class (organs; lesions of at least 4 mL) the z-scores of the TIA and of the mean dose are pooled;
their standard deviation must lie between 0.7 and 1.5 (an uncertainty budget that misses a term gives
a wider spread, one that overstates terms a narrower one).

The calibration record is common to every realisation, so its error would be common to every z. Its
calibration-factor error is known from the calibration phantom's truth: computed values are corrected
by it and the calibration-factor term is taken out of u (its own honesty is the calibration tests'
business). The resolution and recovery of the record are common too; their terms stay in u.

The phantom must make the errors the budget claims to cover: each realisation draws its own uptake
half-lives (the before-first-scan term) and hands the analysis organ outlines moved by a known error
(the segmentation term); the patients are repositioned between scans (the registration term).

Generators plug in through ``GENERATORS`` (name -> function writing a study folder for a seed, importable
by a worker process: the realisations run two at a time, see zscore_realisations); the realistic SPECT
generator has its own tier (test_uncertainty_zscores_realistic).
"""

import os

import numpy as np
import pytest

import zscore_realisations

REALISATIONS = int(os.environ.get("MIBG_ZSCORE_REALISATIONS", "20"))
FIRST_SEED = 9101
CALIBRATION_SEED = 9100
MIN_LESION_ML = 4.0


#: name -> (function writing a study for a seed, budget terms whose error the generator cannot produce and
#: which therefore stay out of u). The image-domain phantom blurs with a Gaussian PSF, so the non-Gaussian
#: PSF-shape floor has no counterpart in its images; its true doses come from the same soft-tissue voxel S
#: values at unit density that the analysis assumes, so neither the kernel's error against other Monte Carlo
#: codes nor a tissue density other than assumed exists in it.
GENERATORS = {"image-domain": (zscore_realisations.write_image_domain_study,
                                ("PSF shape", "dose kernel", "tissue density"))}


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    from MIBGDosimetryLib.phantoms import calibration as calibration_phantom

    out = tmp_path_factory.mktemp("zscore-calibration")
    calibration_phantom.write_calibration_set(str(out / "phantom"),
                                              calibration_phantom.CalibrationConfig(seed=CALIBRATION_SEED))
    return zscore_realisations.calibrate(str(out))


def zscores(results, truth, q_ratio, left_out=()):
    """``{class: {"tia": [z...], "dose": [z...]}}`` of one realisation, with the common calibration
    error (``q_ratio`` = record Q / true Q) removed from the values and its term from u, and the
    terms ``left_out`` taken out of u as well."""
    structures = {s["name"]: s for s in truth["structures"]}
    out = {"organ": {"tia": [], "dose": []}, "lesion": {"tia": [], "dose": []}}
    for voi in results["vois"]:
        true = structures[voi["name"]]
        if true["kind"] == "lesion" and true["volume_ml"] < MIN_LESION_ML:
            continue
        removed = {"tia": 0.0, "dose": 0.0}
        for term in voi["uncertainty_budget"]:
            if term["term"] in ("calibration factor", *left_out):
                # What the term adds to each figure's variance: its uncertainty times its stated sensitivity.
                for key in removed:
                    removed[key] += (term["relative_uncertainty"] * term[f"sensitivity_{key}"]) ** 2
        for key, value_key, u_key, true_key in (("tia", "tia_MBq_h", "tia_uncertainty_MBq_h", "tia_MBq_h"),
                                                ("dose", "mean_dose_Gy", "dose_uncertainty_Gy", "mean_dose_Gy")):
            value = voi[value_key] * q_ratio
            relative = voi[u_key] / voi[value_key]
            u = np.sqrt(max(relative ** 2 - removed[key], 0.0)) * value
            out[true["kind"]][key].append((value - true[true_key]) / u)
    return out


def zscore_table(runs, q_ratio, left_out=()):
    """``{"kind quantity": (n, mean z, std z)}`` over the realisations ``runs`` (``[(results, truth)]``),
    z-scores as :func:`zscores` gives them."""
    pooled = {"organ": {"tia": [], "dose": []}, "lesion": {"tia": [], "dose": []}}
    for results, truth in runs:
        for kind, scores in zscores(results, truth, q_ratio, left_out).items():
            for key in scores:
                pooled[kind][key].extend(scores[key])
    return {f"{kind} {key}": (len(z), round(float(np.mean(z)), 2), round(float(np.std(z, ddof=1)), 2))
            for kind in pooled for key, z in pooled[kind].items()}


#: Classes whose z spread is not yet within 0.7-1.5 on a generator, with the measured reason.
NOT_YET_HONEST = {}
CLASSES = ("organ tia", "organ dose", "lesion tia", "lesion dose")


@pytest.fixture(scope="module")
def summaries(calibration, tmp_path_factory):
    """generator -> (summary, summary without the before-first-scan term), each ``{class: (n, mean z, std z)}``,
    computed once per generator for all classes."""
    cache = {}

    def summary_of(generator):
        if generator not in cache:
            cache[generator] = _zscore_summary(generator, calibration, tmp_path_factory.mktemp(f"zscore-{generator}"))
        return cache[generator]

    return summary_of


def _zscore_summary(generator, calibration, folder):
    record_path, q_ratio = calibration
    write_study, not_simulated = GENERATORS[generator]
    runs = zscore_realisations.run_realisations(write_study, folder, range(FIRST_SEED, FIRST_SEED + REALISATIONS),
                                                record_path, workers=min(2, os.cpu_count() or 1))
    zscore_realisations.write_details(folder / f"zscores-{generator}.json", runs, q_ratio)
    summary = zscore_table(runs, q_ratio, not_simulated)
    # Diagnostic: the same without the before-first-scan term.
    without_head = zscore_table(runs, q_ratio, (*not_simulated, "before first scan"))
    print(f"\nz-scores over {REALISATIONS} realisations ({generator}), (n, mean, std): {summary}; without the "
          f"before-first-scan term: {without_head}")
    return summary, without_head


# Measured (20 realisations, image-domain, seeds 9101-9120; phantom with uptake half-lives spread by a geometric
# SD of 2 and organ outlines moved by 1 mm SD over their whole surface): (n, mean z, std z) organ TIA (140, -0.08,
# 0.81), organ dose (140, -0.10, 0.81), lesion TIA (60, 0.09, 0.79), lesion dose (60, 1.01, 0.73); without the
# before-first-scan term organ dose (140, -0.10, 0.99), lesion TIA (60, 0.02, 1.06). About 7 min on two cores.
# The organ doses' spread was 0.67 while the budget moved a VOI's whole mean dose with its own activity, TIA and
# outline (it moves the VOI's self-dose share: photons from elsewhere give the rest) and
# took the partial-volume model's largest effect over the time points instead of their TIA-weighted sum.
@pytest.mark.zscore
@pytest.mark.parametrize("generator, name", [
    pytest.param(generator, name, marks=[pytest.mark.xfail(strict=True, reason=NOT_YET_HONEST[generator, name])]
                 if (generator, name) in NOT_YET_HONEST else [])
    for generator in sorted(GENERATORS) for name in CLASSES])
def test_zscores_of_tia_and_mean_dose_have_unit_spread(generator, name, summaries):
    summary, _ = summaries(generator)
    n, _, std = summary[name]
    assert n >= REALISATIONS, name
    assert 0.7 <= std <= 1.5, summary


#: Classes whose z-scores are not yet centred on 0, with the measured reason.
NOT_YET_CENTRED = {
    ("image-domain", "lesion dose"): "mean z 1.01 (60 lesions, 20 realisations): the lesion TIAs are right (mean "
                                     "errors -0.4 to +0.9 %) but the mean dose per TIA is 1-4 % high; about "
                                     "half is the mass, the PSF-model fit's lesion volumes being 1.4 % (40 mm) and "
                                     "3.6 % (22 mm) small",
}


# An honest budget also leaves no bias it does not state: over n z-scores of unit spread the mean has a standard
# error of 1/sqrt(n) (0.08-0.13 here); a mean beyond 0.5 is a systematic error that no term covers.
@pytest.mark.zscore
@pytest.mark.parametrize("generator, name", [
    pytest.param(generator, name, marks=[pytest.mark.xfail(strict=True, reason=NOT_YET_CENTRED[generator, name])]
                 if (generator, name) in NOT_YET_CENTRED else [])
    for generator in sorted(GENERATORS) for name in CLASSES])
def test_zscores_of_tia_and_mean_dose_are_centred(generator, name, summaries):
    summary, _ = summaries(generator)
    n, mean, _ = summary[name]
    assert n >= REALISATIONS, name
    assert abs(mean) <= 0.5, summary
