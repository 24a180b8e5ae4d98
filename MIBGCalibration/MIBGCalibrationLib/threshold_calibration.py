"""Calibration of the adaptive-threshold model on sphere inserts of known volume.

For each insert the threshold fraction f is found for which the connected region around the
insert's hottest voxel, of voxels above ``background + f (maximum - background)``, has the insert's
true volume. Maximum (hottest voxel), connectivity and background (mean of a shell around the
region) are those of :mod:`MIBGDosimetryLib.segmentation.adaptive_threshold`, which applies the
model. The fractions are then fitted by linear least squares with ``f(V, C) = a + b / V + c / C``
(V in mL, C the insert-to-background concentration ratio); the contrast term is fitted only when
the inserts cover more than one contrast.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from MIBGCalibrationLib import voi
from MIBGCalibrationLib.threshold import ThresholdModel
from MIBGDosimetryLib.segmentation import adaptive_threshold

#: Bisection steps on the threshold fraction (resolution 2**-40).
BISECTION_STEPS = 40

#: 26-connected regions and the background shell of the adaptive-threshold delineation, so that the
#: calibrated fractions mean the same there.
CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
SHELL_GAP_MM = adaptive_threshold.SHELL_GAP_MM
SHELL_THICKNESS_MM = adaptive_threshold.SHELL_THICKNESS_MM
BACKGROUND_TOLERANCE = adaptive_threshold.BACKGROUND_TOLERANCE

#: Re-estimations of the background from the shell around the region.
BACKGROUND_UPDATES = 5


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


def _component(values, region, seed_index, level):
    labels, _ = ndimage.label(region & (values >= level), structure=CONNECTIVITY)
    label = labels[seed_index]
    return labels == label if label else np.zeros(values.shape, dtype=bool)


def shell_background(values, component, level, spacing_mm):
    """Mean value in the shell SHELL_GAP_MM..SHELL_GAP_MM + SHELL_THICKNESS_MM outside ``component``,
    leaving out voxels at or above ``level`` (other hot objects): the background of the delineation."""
    distance_mm = ndimage.distance_transform_edt(~component, sampling=np.asarray(spacing_mm)[::-1])
    shell = (distance_mm > SHELL_GAP_MM) & (distance_mm <= SHELL_GAP_MM + SHELL_THICKNESS_MM) & (values < level)
    if not shell.any():
        raise ValueError("No background is left around the insert; the image is too small.")
    return float(values[shell].mean())


def _fraction_for_volume(values, region, seed_index, maximum, background, volume_ml, voxel_ml):
    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        level = background + middle * (maximum - background)
        if _component(values, region, seed_index, level).sum() * voxel_ml > volume_ml:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def insert_threshold(spect, name, centre_ras_mm, volume_ml, background, contrast):
    """Threshold fraction (of maximum - background, above background) giving the insert's true volume.

    The region is the 26-connected set of voxels above the threshold around the insert's hottest
    voxel, searched within 1.5 insert radii plus two voxels of the centre so that neighbouring inserts
    are not joined. ``background`` (image units) starts the search; it is then re-estimated, as the
    delineation does, as the mean of the shell around the region, until it settles.
    """
    radius_mm = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    region = voi.sphere_weights(spect, centre_ras_mm, 1.5 * radius_mm + 2.0 * max(spect.spacing_mm),
                                subsamples=1) > 0
    values = np.asarray(spect.array, dtype=float)
    if not region.any():
        raise ValueError(f"Insert '{name}' lies outside the image.")
    seed_index = np.unravel_index(int(np.argmax(np.where(region, values, -np.inf))), values.shape)
    maximum = float(values[seed_index])
    if maximum <= background:
        raise ValueError(f"Insert '{name}' is not brighter than the background; no threshold reproduces its volume.")
    background = float(background)
    for _ in range(BACKGROUND_UPDATES):
        fraction = _fraction_for_volume(values, region, seed_index, maximum, background, volume_ml,
                                        spect.voxel_volume_ml)
        level = background + fraction * (maximum - background)
        updated = shell_background(values, _component(values, region, seed_index, level), level, spect.spacing_mm)
        settled = abs(updated - background) <= BACKGROUND_TOLERANCE * (maximum - background)
        background = updated
        if settled:
            break
    fraction = _fraction_for_volume(values, region, seed_index, maximum, background, volume_ml, spect.voxel_volume_ml)
    return InsertThreshold(name, float(volume_ml), float(contrast), fraction, maximum, background)


def fit_threshold_model(inserts):
    """Fit ``f = a + b / V (+ c / C)`` to the per-insert fractions; returns a :class:`ThresholdModel`."""
    if len(inserts) < 3:
        raise ValueError(f"At least 3 inserts are needed to calibrate the adaptive threshold, got {len(inserts)}.")
    volume = np.array([t.volume_ml for t in inserts])
    contrast = np.array([t.contrast for t in inserts])
    fraction = np.array([t.fraction for t in inserts])
    use_contrast = np.ptp(1.0 / contrast) > 1e-6 * np.max(1.0 / contrast) and len(inserts) >= 4
    columns = [np.ones_like(volume), 1.0 / volume] + ([1.0 / contrast] if use_contrast else [])
    design = np.stack(columns, axis=1)
    coefficients, _, rank, _ = np.linalg.lstsq(design, fraction, rcond=None)
    if rank < design.shape[1]:
        raise ValueError("The insert volumes do not constrain the threshold model; use inserts of different volume.")
    dof = len(inserts) - design.shape[1]
    residual_variance = float(np.sum((fraction - design @ coefficients) ** 2) / dof) if dof > 0 else 0.0
    errors = np.sqrt(np.diag(residual_variance * np.linalg.inv(design.T @ design)))
    a, b = coefficients[:2]
    c = coefficients[2] if use_contrast else 0.0
    return ThresholdModel(a=float(a), b=float(b), c=float(c), a_uncertainty=float(errors[0]),
                          b_uncertainty=float(errors[1]), c_uncertainty=float(errors[2]) if use_contrast else 0.0)
