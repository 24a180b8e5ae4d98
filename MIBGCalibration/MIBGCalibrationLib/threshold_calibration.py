"""Calibration of the adaptive-threshold model on sphere inserts of known volume.

For each insert the threshold fraction f is found for which the region around the insert's peak,
of points above ``background + f (maximum - background)``, has the insert's true volume. Peak,
maximum (apex of a Gaussian fitted around the peak), region (26-connected, with sub-voxel volume on
its edge) and background (mean of a shell around the region) are computed by the functions of
:mod:`MIBGDosimetryLib.segmentation.adaptive_threshold`, which applies the model, so that a
calibrated fraction means the same there; its docstring gives the definitions and why they are
robust to noise and to the insert's position on the voxel grid. The fractions are then fitted by
linear least squares with ``f(V, C) = a + b / V + c / C`` (V in mL, C the insert-to-background
concentration ratio); the contrast term is fitted only when the inserts cover more than one contrast.
"""

import dataclasses

import numpy as np

from MIBGCalibrationLib import voi
from MIBGCalibrationLib.threshold import ThresholdModel
from MIBGDosimetryLib.segmentation import adaptive_threshold

#: Bisection steps on the threshold fraction (resolution 2**-30).
BISECTION_STEPS = 30
#: Re-estimations of the background from the shell around the region.
BACKGROUND_UPDATES = 10


@dataclasses.dataclass
class InsertThreshold:
    """The threshold fraction reproducing one insert's volume."""

    name: str
    volume_ml: float
    contrast: float
    fraction: float
    maximum: float
    background: float

    def to_dict(self):
        return dataclasses.asdict(self)


def _fraction_for_volume(insert, maximum, background, volume_ml):
    """Bisection on the fraction: the sub-voxel volume falls as the threshold rises."""
    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if insert.volume(background + middle * (maximum - background))[0] > volume_ml:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def insert_threshold(spect, name, centre_ras_mm, volume_ml, background, contrast):
    """Threshold fraction (of maximum - background, above background) giving the insert's true volume.

    The region grows around the insert's peak (the hottest voxel of the smoothed image within the
    search sphere) and is kept within 1.5 insert radii plus two voxels of the centre so that
    neighbouring inserts are not joined. ``background`` (image units) starts the search; it is then
    re-estimated, as the delineation does, as the mean of the shell around the region, until it settles.
    """
    radius_mm = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    search_mm = 1.5 * radius_mm + 2.0 * max(spect.spacing_mm)
    region = voi.sphere_weights(spect, centre_ras_mm, search_mm, subsamples=1) > 0
    if not region.any():
        raise ValueError(f"Insert '{name}' lies outside the image.")
    values = np.asarray(spect.array, dtype=float)
    smooth = adaptive_threshold.smoothed(values)
    peak = np.unravel_index(int(np.argmax(np.where(region, smooth, -np.inf))), values.shape)
    if smooth[peak] <= background:
        raise ValueError(f"Insert '{name}' is not brighter than the background; no threshold reproduces its volume.")
    # The search sphere is measured from the centre, the reach from the peak, which may lie a voxel or two away.
    insert = adaptive_threshold.ThresholdRegion(values, peak, np.asarray(spect.spacing_mm)[::-1],
                                                spect.voxel_volume_ml, allowed=region,
                                                reach_mm=search_mm + 2.0 * max(spect.spacing_mm))
    background = float(background)
    maximum, _ = adaptive_threshold.fitted_maximum(values, peak, background)
    for _ in range(BACKGROUND_UPDATES):
        fraction = _fraction_for_volume(insert, maximum, background, volume_ml)
        level = background + fraction * (maximum - background)
        component = insert.component(level)
        component[insert.peak] = True
        updated = insert.background(component, level)
        settled = abs(updated - background) <= adaptive_threshold.BACKGROUND_TOLERANCE * (maximum - background)
        background = updated
        maximum, _ = adaptive_threshold.fitted_maximum(values, peak, background)
        if settled:
            break
    fraction = _fraction_for_volume(insert, maximum, background, volume_ml)
    return InsertThreshold(name, float(volume_ml), float(contrast), fraction, maximum, background)


def fit_threshold_model(inserts):
    """The threshold model from the per-insert fractions; returns a :class:`ThresholdModel`.

    With one contrast the model interpolates the fractions of the inserts linearly in ln V (see
    :mod:`MIBGCalibrationLib.threshold`); inserts of equal volume are averaged. The same set of at
    least three insert volumes imaged at several concentration ratios gives the
    "interpolated-contrast" form, which interpolates also in the image contrast (fitted maximum over
    background) each insert showed. Other mixtures of contrasts are fitted with
    ``f = a + b / V + c / C`` by linear least squares (at least four inserts).
    """
    if len(inserts) < 3:
        raise ValueError(f"At least 3 inserts are needed to calibrate the adaptive threshold, got {len(inserts)}.")
    volume = np.array([t.volume_ml for t in inserts])
    contrast = np.array([t.contrast for t in inserts])
    fraction = np.array([t.fraction for t in inserts])
    by_contrast = _sets_by_contrast(inserts)
    if by_contrast is not None:
        knots = sorted(by_contrast[0])
        return ThresholdModel(a=0.0, form="interpolated-contrast", knot_volumes_ml=tuple(knots),
                              knot_fractions=tuple(tuple(float(np.mean([t.fraction for t in group[v]])) for v in knots)
                                                   for group in by_contrast),
                              knot_contrasts=tuple(tuple(float(np.mean([t.maximum / t.background for t in group[v]]))
                                                         for v in knots) for group in by_contrast))
    if np.ptp(1.0 / contrast) <= 1e-6 * np.max(1.0 / contrast):
        knots = np.unique(np.round(volume, 9))
        if knots.size < 3:
            raise ValueError("The inserts must have at least 3 different volumes to calibrate the adaptive threshold.")
        mean_fraction = [float(fraction[np.isclose(volume, v, rtol=1e-9)].mean()) for v in knots]
        return ThresholdModel(a=0.0, form="interpolated", knot_volumes_ml=tuple(float(v) for v in knots),
                              knot_fractions=tuple(mean_fraction))
    if len(inserts) < 4:
        raise ValueError("At least 4 inserts are needed to calibrate the adaptive threshold with several contrasts.")
    design = np.stack([np.ones_like(volume), 1.0 / volume, 1.0 / contrast], axis=1)
    coefficients, _, rank, _ = np.linalg.lstsq(design, fraction, rcond=None)
    if rank < design.shape[1]:
        raise ValueError("The insert volumes do not constrain the threshold model; use inserts of different volume.")
    dof = len(inserts) - design.shape[1]
    residual_variance = float(np.sum((fraction - design @ coefficients) ** 2) / dof) if dof > 0 else 0.0
    errors = np.sqrt(np.diag(residual_variance * np.linalg.inv(design.T @ design)))
    a, b, c = (float(v) for v in coefficients)
    return ThresholdModel(a=a, b=b, c=c, a_uncertainty=float(errors[0]), b_uncertainty=float(errors[1]),
                          c_uncertainty=float(errors[2]), volume_range_ml=(float(volume.min()), float(volume.max())))


def _sets_by_contrast(inserts):
    """The inserts as one {volume: [inserts]} per concentration ratio when there are several ratios,
    each with the same three or more volumes and a positive background; else None."""
    groups = {}
    for insert in inserts:
        key = round(float(insert.contrast), 6)
        groups.setdefault(key, {}).setdefault(round(float(insert.volume_ml), 9), []).append(insert)
    if len(groups) < 2:
        return None
    volume_sets = {tuple(sorted(group)) for group in groups.values()}
    if len(volume_sets) != 1 or len(next(iter(volume_sets))) < 3:
        return None
    if any(t.background <= 0 or t.maximum <= t.background for t in inserts):
        return None
    return [groups[key] for key in sorted(groups)]
