"""Absorbed-dose statistics of a VOI: mean, single-voxel and 27-voxel-block extremes, mass and DVH.

The EANM guidance on voxel-based dosimetry names the maximum and minimum single-voxel doses and,
as a less noise-prone variant, the maximum and minimum mean dose of a block of 27 voxels
(3 x 3 x 3). Here a block is centred on a voxel of the VOI and, by default, must lie entirely inside
the VOI (a sub-volume of it, as the guidance describes). A VOI too thin to hold one such block is
reported with blocks centred on its voxels that may reach outside it (``block27_rule`` says which
rule was used); voxels beyond the map's edge never count.

Weights: without a density map every voxel weighs the same (unit density, mass in g = volume in
ml); with one, the mean dose and the DVH are mass-weighted (mean absorbed dose = energy / mass)
and the mass is the sum of density x voxel volume.
"""

import numpy as np
import scipy.ndimage

BLOCK27_INSIDE = "block inside VOI"
BLOCK27_CENTRE = "block centred in VOI"


def voi_dose_statistics(dose_Gy, mask, voxel_volume_ml, density_g_cm3=None):
    """Mean, extremes and block-27 extremes (Gy), volume (ml) and mass (g) of the VOI ``mask``."""
    dose, mask, weights = _checked(dose_Gy, mask, density_g_cm3)
    if voxel_volume_ml <= 0:
        raise ValueError("The voxel volume must be positive.")
    values = dose[mask]
    w = weights[mask]
    block = block27_extremes(dose, mask)
    return {
        "n_voxels": int(values.size),
        "volume_ml": float(values.size * voxel_volume_ml),
        "mass_g": float(np.sum(w) * voxel_volume_ml),
        "mean_dose_Gy": float(np.sum(w * values) / np.sum(w)),
        "max_voxel_dose_Gy": float(values.max()),
        "min_voxel_dose_Gy": float(values.min()),
        **block,
    }


def block27_extremes(dose_Gy, mask):
    """Largest and smallest 3 x 3 x 3 block-mean dose over blocks centred in the VOI (see module)."""
    dose, mask, _ = _checked(dose_Gy, mask, None)
    # The VOI's bounding box plus one voxel (within the map) holds every block centred in the VOI;
    # zero padding beyond the map is excluded through the voxel count.
    where = np.nonzero(mask)
    region = tuple(slice(max(int(w.min()) - 1, 0), int(w.max()) + 2) for w in where)
    d = dose[region].astype(float)
    m = mask[region]
    block_sum = scipy.ndimage.uniform_filter(d, 3, mode="constant") * 27.0
    block_count = np.rint(scipy.ndimage.uniform_filter(np.ones(d.shape), 3, mode="constant") * 27.0)
    mask_count = np.rint(scipy.ndimage.uniform_filter(m.astype(float), 3, mode="constant") * 27.0)
    centres = m & (mask_count == 27)
    rule = BLOCK27_INSIDE
    if not np.any(centres):
        centres, rule = m, BLOCK27_CENTRE
    means = block_sum[centres] / block_count[centres]
    return {"max_block27_dose_Gy": float(means.max()), "min_block27_dose_Gy": float(means.min()),
            "block27_rule": rule}


def dvh(dose_Gy, mask, density_g_cm3=None, *, dose_levels_Gy=None, n_levels=201, v_doses_Gy=()):
    """Cumulative dose-volume histogram of the VOI.

    ``volume_fraction[i]`` is the fraction of the VOI (by mass with a density map) receiving at
    least ``dose_Gy[i]``; the default levels run from 0 to the maximum dose in ``n_levels`` steps.
    ``Dx_Gy`` is the minimum dose received by the hottest x % of the VOI: the dose of the voxel at
    which the hottest voxels first make up x % (D2, D50 and D98 are always given). ``V_Gy`` maps each
    dose in ``v_doses_Gy`` to the fraction receiving at least that dose.
    """
    dose, mask, weights = _checked(dose_Gy, mask, density_g_cm3)
    values = dose[mask].astype(float)
    w = weights[mask].astype(float)
    order = np.argsort(values)
    ascending, w_ascending = values[order], w[order]
    total = w_ascending.sum()
    below = np.concatenate([[0.0], np.cumsum(w_ascending)])

    def fraction_at_least(levels):
        return (total - below[np.searchsorted(ascending, levels, side="left")]) / total

    levels = (np.linspace(0.0, ascending[-1], n_levels) if dose_levels_Gy is None
              else np.asarray(dose_levels_Gy, dtype=float))
    hottest_first = ascending[::-1]
    hot_fraction = np.cumsum(w_ascending[::-1]) / total

    def d_at(percent):
        index = np.searchsorted(hot_fraction, percent / 100.0 - 1e-12, side="left")
        return float(hottest_first[min(index, hottest_first.size - 1)])

    return {
        "dose_Gy": [float(v) for v in levels],
        "volume_fraction": [float(v) for v in fraction_at_least(levels)],
        "D2_Gy": d_at(2.0),
        "D50_Gy": d_at(50.0),
        "D98_Gy": d_at(98.0),
        "V_Gy": {float(d): float(fraction_at_least(np.array([d]))[0]) for d in v_doses_Gy},
    }


def _checked(dose_Gy, mask, density_g_cm3):
    dose = np.asarray(dose_Gy)
    mask = np.asarray(mask, dtype=bool)
    if dose.ndim != 3 or mask.shape != dose.shape:
        raise ValueError(f"Dose map and VOI mask must be 3-D arrays of the same shape "
                         f"(got {dose.shape} and {mask.shape}).")
    if not np.any(mask):
        raise ValueError("The VOI mask is empty; there is no dose to summarise.")
    if not np.all(np.isfinite(dose[mask])):
        raise ValueError("The dose map has non-finite values inside the VOI.")
    if density_g_cm3 is None:
        weights = np.ones(dose.shape)
    else:
        weights = np.asarray(density_g_cm3, dtype=float)
        if weights.shape != dose.shape:
            raise ValueError(f"The density map shape {weights.shape} differs from the dose map shape {dose.shape}.")
        if not np.all(weights[mask] > 0):
            raise ValueError("The density must be positive inside the VOI.")
    return dose, mask, weights
