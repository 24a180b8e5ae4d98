"""First-order Chang attenuation correction of reconstructions made without attenuation correction.

Each voxel inside the body outline is multiplied by

    C(x) = 1 / ( (1/M) sum_theta exp(-mu L_theta(x)) )

with L_theta(x) the path length from x to the outline along the projection direction theta (in the
transaxial plane, the camera rotating about the image k axis) and M projection angles (Chang 1978).
The guidance takes mu = 0.11 /cm for the 364 keV photons of 131I in water and lets the body outline
come from the lower scatter-window image when no CT is available.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from MIBGCalibrationLib import voi

#: Linear attenuation coefficient of 364 keV photons in water, 0.11 /cm (EANM 131I-mIBG guidance).
MU_WATER_364KEV_PER_CM = 0.11

#: Central part of the half-maximum outline (fraction of its equivalent radius and height) whose mean
#: value is taken as the plateau of the scatter-window image.
PLATEAU_FRACTION = 0.5

#: CT number (HU) above which a voxel is inside the body.
CT_BODY_THRESHOLD_HU = -500.0

#: Number of projection directions averaged over the full circle.
DEFAULT_ANGLES = 64


@dataclasses.dataclass
class ChangResult:
    """Corrected image, the correction map and the outline used."""

    corrected: np.ndarray
    correction_factor: np.ndarray
    body_mask: np.ndarray
    mu_per_cm: float
    outline_source: str

    def summary(self):
        inside = self.correction_factor[self.body_mask]
        return {"mu_per_cm": self.mu_per_cm, "outline_source": self.outline_source,
                "body_volume_voxels": int(self.body_mask.sum()),
                "correction_factor_min": float(inside.min()), "correction_factor_max": float(inside.max())}


def _rotate(array, angle_deg, order):
    return ndimage.rotate(array, angle_deg, axes=(1, 2), reshape=False, order=order, mode="constant", cval=0.0)


def chang_correction_factors(body_mask, spacing_mm, mu_per_cm=MU_WATER_364KEV_PER_CM, angles=DEFAULT_ANGLES):
    """Chang first-order correction factor per voxel (1 outside the body) for a mask ``[k, j, i]``.

    Opposite directions share one rotation of the mask: path lengths in +theta and -theta come from
    cumulative sums from both ends of each rotated row. Requires square in-plane voxels.
    """
    mask = np.asarray(body_mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError("The body outline must be a 3-D mask.")
    if not mask.any():
        raise ValueError("The body outline is empty: no attenuation correction is possible. Check the outline image.")
    if abs(spacing_mm[0] - spacing_mm[1]) > 1e-3 * spacing_mm[0]:
        raise ValueError(f"Chang correction needs square transaxial pixels, got {spacing_mm[0]} x {spacing_mm[1]} mm.")
    if mu_per_cm < 0 or angles < 2 or angles % 2:
        raise ValueError("mu must be non-negative and the number of angles an even number of at least 2.")
    mu_per_pixel = mu_per_cm * spacing_mm[0] / 10.0
    # Work on the bounding box of the body only; padding keeps the rotated mask inside it at every angle.
    k_any, j_any, i_any = (np.nonzero(mask.any(axis=axes))[0] for axes in ((1, 2), (0, 2), (0, 1)))
    box = (slice(k_any[0], k_any[-1] + 1), slice(j_any[0], j_any[-1] + 1), slice(i_any[0], i_any[-1] + 1))
    body = mask[box]
    rows, columns = body.shape[1:]
    pad = int(np.ceil(0.5 * (np.hypot(rows, columns) - min(rows, columns)))) + 2
    padded = np.pad(body.astype(float), ((0, 0), (pad, pad), (pad, pad)))
    transmission = np.zeros_like(padded)
    for angle in np.arange(angles // 2) * (360.0 / angles):
        rotated = _rotate(padded, angle, order=1)
        after = np.cumsum(rotated[..., ::-1], axis=-1)[..., ::-1] - 0.5 * rotated
        before = np.cumsum(rotated, axis=-1) - 0.5 * rotated
        both = np.exp(-mu_per_pixel * after) + np.exp(-mu_per_pixel * before)
        transmission += _rotate(both, -angle, order=1)
    transmission = transmission[:, pad:pad + rows, pad:pad + columns] / angles
    factors = np.ones(mask.shape, dtype=float)
    inside = np.ones(mask.shape, dtype=float)
    inside[box] = np.where(body, transmission, 1.0)
    factors[mask] = 1.0 / inside[mask]
    return factors


def volume_conserving_fraction(image):
    """Threshold (fraction of the robust maximum of :func:`voi.body_mask`) whose outline holds the volume
    that the image's counts fill at its plateau level.

    Blurring conserves counts, so for a uniformly filled body the total counts divided by the
    plateau value is the body volume whatever the blur; a fixed fraction such as half the maximum
    instead shrinks convex bodies blurred as widely as a scatter image (by several millimetres for a
    20 cm cylinder). The plateau is the mean over the central part of the half-maximum outline.
    """
    values = np.asarray(image, dtype=float)
    peak = float(np.percentile(ndimage.uniform_filter(values, size=3), 99.9))
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError("No body outline was found in the scatter-window image; it holds no counts.")
    half = voi.body_mask(values, 0.5)
    slices = np.nonzero(half.any(axis=(1, 2)))[0]
    centre_k = 0.5 * (slices.min() + slices.max())
    k, j, i = np.indices(values.shape)
    centre_j, centre_i = (np.mean(a[half]) for a in (j, i))
    radius_px = np.sqrt(half[int(round(centre_k))].sum() / np.pi)
    half_height_px = 0.5 * (slices.max() - slices.min() + 1)
    central = (((j - centre_j) ** 2 + (i - centre_i) ** 2 <= (PLATEAU_FRACTION * radius_px) ** 2)
               & (np.abs(k - centre_k) <= PLATEAU_FRACTION * half_height_px))
    plateau = float(values[central].mean())
    body_voxels = int(round(values.sum() / plateau))
    smoothed = ndimage.uniform_filter(values, size=3)
    level = np.sort(smoothed, axis=None)[::-1][min(body_voxels, smoothed.size - 1)]
    return float(level) / peak


def outline_from_scatter_image(scatter_image, threshold_fraction=None):
    """Body outline from the lower scatter-window reconstruction: threshold, largest object, holes filled.

    The threshold is ``threshold_fraction`` of the robust maximum, by default the volume-conserving
    level of :func:`volume_conserving_fraction`.
    """
    if threshold_fraction is None:
        threshold_fraction = volume_conserving_fraction(scatter_image)
    mask = voi.body_mask(scatter_image, threshold_fraction)
    if not mask.any():
        raise ValueError("No body outline was found in the scatter-window image; it holds no counts.")
    return mask


def outline_from_ct(ct, reference):
    """Body outline from a CT (HU) resampled onto the grid of ``reference`` (both ImageVolume)."""
    import SimpleITK as sitk

    resampled = sitk.Resample(ct.to_sitk(), reference.to_sitk(), sitk.Transform(), sitk.sitkLinear, -1000.0)
    mask = voi.largest_component(sitk.GetArrayFromImage(resampled) > CT_BODY_THRESHOLD_HU)
    mask = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    if not mask.any():
        raise ValueError("The CT does not overlap the reconstruction: no body outline on the SPECT grid.")
    return mask


def chang_correct(nac_image, scatter_image=None, ct=None, mu_per_cm=MU_WATER_364KEV_PER_CM, angles=DEFAULT_ANGLES,
                  threshold_fraction=None):
    """Chang-correct a non-attenuation-corrected reconstruction (ImageVolume).

    The body outline comes from ``ct`` when given, else from ``scatter_image`` (lower scatter window
    reconstruction on the same grid), thresholded at ``threshold_fraction`` of its robust maximum or, by
    default, at its volume-conserving level. The input is not modified.
    """
    if ct is not None:
        mask, source = outline_from_ct(ct, nac_image), "CT"
    elif scatter_image is not None:
        if scatter_image.array.shape != nac_image.array.shape:
            raise ValueError("The scatter-window image must be on the grid of the reconstruction to correct.")
        mask = outline_from_scatter_image(scatter_image.array, threshold_fraction)
        source = "lower scatter window"
    else:
        raise ValueError("Chang correction needs a body outline: give a CT or the lower scatter-window image.")
    factors = chang_correction_factors(mask, nac_image.spacing_mm, mu_per_cm, angles)
    corrected = np.asarray(nac_image.array, dtype=float) * factors
    return ChangResult(corrected, factors, mask, float(mu_per_cm), source)
