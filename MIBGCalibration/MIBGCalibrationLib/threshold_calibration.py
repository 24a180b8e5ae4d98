"""Calibration of the adaptive-threshold model on sphere inserts of known volume.

For each insert the threshold fraction f is found for which the connected region around the
insert's hottest voxel, of voxels above ``background + f (maximum - background)``, has the insert's
true volume. The fractions are then fitted by linear least squares with
``f(V, C) = a + b / V + c / C`` (V in mL, C the insert-to-background concentration ratio); the
contrast term is fitted only when the inserts cover more than one contrast.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from MIBGCalibrationLib import voi
from MIBGCalibrationLib.threshold import ThresholdModel

#: Bisection steps on the threshold fraction (resolution 2**-40).
BISECTION_STEPS = 40


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


def _region_volume_ml(values, region, seed_index, level, voxel_ml):
    above = region & (values >= level)
    labels, _ = ndimage.label(above, structure=np.ones((3, 3, 3)))
    label = labels[seed_index]
    return 0.0 if label == 0 else float((labels == label).sum()) * voxel_ml


def insert_threshold(spect, name, centre_ras_mm, volume_ml, background, contrast):
    """Threshold fraction (of maximum - background, above background) giving the insert's true volume.

    ``background`` is the mean voxel value of the surrounding background, on the same scale as the image.
    The search is confined to a sphere of 1.5 insert radii plus two voxels about the centre so that
    neighbouring inserts are not joined.
    """
    radius_mm = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    region = voi.sphere_weights(spect, centre_ras_mm, 1.5 * radius_mm + 2.0 * max(spect.spacing_mm),
                                subsamples=1) > 0
    values = np.asarray(spect.array, dtype=float)
    if not region.any():
        raise ValueError(f"Insert '{name}' lies outside the image.")
    masked = np.where(region, values, -np.inf)
    seed_index = np.unravel_index(int(np.argmax(masked)), values.shape)
    maximum = float(values[seed_index])
    if maximum <= background:
        raise ValueError(f"Insert '{name}' is not brighter than the background; no threshold reproduces its volume.")
    voxel_ml = spect.voxel_volume_ml
    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        level = background + middle * (maximum - background)
        if _region_volume_ml(values, region, seed_index, level, voxel_ml) > volume_ml:
            low = middle
        else:
            high = middle
    return InsertThreshold(name, float(volume_ml), float(contrast), 0.5 * (low + high), maximum, float(background))


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
