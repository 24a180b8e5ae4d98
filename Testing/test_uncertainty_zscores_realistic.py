"""Are the stated uncertainties honest on realistic reconstructed SPECT? The z-scores of
test_uncertainty_zscores, on the realistic generator (projections, attenuation, depth-dependent
collimator response, penetration, scatter, TEW, dead time, OSEM): physics the analysis does not
model, so the budget's resolution, PSF-shape and outline terms meet errors they were not built from.

20 realisations (seeds 9201 onwards, used nowhere else) with a common calibration record (seed 9200),
two at a time; each draws its own uptake half-lives and organ outline errors, as in the image-domain
tier. Projections are simulated on the SPECT voxels (no finer grid) for calibration and patients
alike, so that the tier fits CI (16 minutes on two cores). Each VOI's values, truth and budget are
written to ``zscores-realistic.json`` in the tier's temporary folder for a look term by term.
"""

import os

import pytest
from test_uncertainty_zscores import CLASSES, REALISATIONS, zscore_table

import zscore_realisations

FIRST_SEED = 9201
#: Budget terms whose error the realistic generator cannot produce: its true doses come from the same
#: soft-tissue voxel S values at unit density as the analysis assumes (no kernel or density error).
NOT_SIMULATED = ("dose kernel", "tissue density")


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("zscore-realistic")
    zscore_realisations.write_realistic_calibration(str(out / "phantom"))
    record_path, q_ratio = zscore_realisations.calibrate(str(out))
    seeds = range(FIRST_SEED, FIRST_SEED + REALISATIONS)
    runs = zscore_realisations.run_realisations(zscore_realisations.write_realistic_study, out, seeds, record_path,
                                                workers=min(2, os.cpu_count() or 1))
    table = zscore_table(runs, q_ratio, NOT_SIMULATED)
    zscore_realisations.write_details(out / "zscores-realistic.json", runs, q_ratio)
    print(f"\nz-scores over {REALISATIONS} realisations (realistic), (n, mean, std): {table}; record Q / true Q "
          f"{q_ratio:.4f}")
    return table


# Measured (20 realisations, seeds 9201-9220, uptake half-lives spread by a geometric SD of 2 about each
# structure's nominal value, organ outlines moved by 1 mm SD over their whole surface; record Q / true Q 0.969):
# (n, mean z, std z) organ TIA (140, -0.24, 0.79), organ dose (140, -0.38, 0.82), lesion TIA (100, 0.26, 0.55),
# lesion dose (100, 0.17, 0.69); 16 min on two cores. While the elongated node and the necrotic mass took their
# self-consistent outlines (+229 % and +7 % volume here, +243 % and +36 % on seed 41) they were lesion TIA (0.81,
# 1.01) and lesion dose (-2.44, 6.0): the node's TIA error of +30 % held the lesion TIAs' spread inside 0.7-1.5.
# The lesion TIAs' spread was 0.68 while a small VOI's resolution term held half the change the calibration's FWHM
# would make beside its own measured FWHM (bone lesions' TIA z spread 0.13); the lungs' dose z spread was 1.72
# while the outline's effect on a mean dose was taken as the self-dose share of the activity's change less the
# volume's (1.38 since it is measured on the dose map: an outline drawn too wide takes in voxels next to the heart
# and liver, of another density and dose).

#: Classes whose z spread is not yet within 0.7-1.5 on the realistic generator, with the measured reason.
NOT_YET_HONEST = {
    "lesion tia": "z std 0.55 (100 lesions, 20 realisations), overstated: the bone lesions' TIA errors (+4 % +/- 5 % "
                  "spine, +5 % +/- 3 % pelvis) lie well inside their stated 10-13 %, of which the PSF-shape floor "
                  "(15 % of the spilled fraction) is 8-11 %; the elongated node's (-6 %) inside its 28 %, which "
                  "spans the distance between its contrast-consistent and self-consistent outlines",
    "lesion dose": "z std 0.69 (100 lesions, 20 realisations), overstated as the lesion TIAs are: per lesion mean z "
                   "from -0.49 (elongated node, dose -19 % against 56 % stated) to +0.92 (adrenal primary, +15 %)",
}
#: Classes whose z-scores are not yet centred on 0 on the realistic generator, with the measured reason.
NOT_YET_CENTRED = {}


@pytest.mark.zscore
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=NOT_YET_HONEST[name])]
                 if name in NOT_YET_HONEST else []) for name in CLASSES])
def test_realistic_zscores_of_tia_and_mean_dose_have_unit_spread(name, summary):
    n, _, std = summary[name]
    assert n >= REALISATIONS, name
    assert 0.7 <= std <= 1.5, summary


@pytest.mark.zscore
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=NOT_YET_CENTRED[name])]
                 if name in NOT_YET_CENTRED else []) for name in CLASSES])
def test_realistic_zscores_of_tia_and_mean_dose_are_centred(name, summary):
    n, mean, _ = summary[name]
    assert n >= REALISATIONS, name
    assert abs(mean) <= 0.5, summary
