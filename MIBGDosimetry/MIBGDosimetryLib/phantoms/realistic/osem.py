"""OSEM reconstruction of the photopeak projections, as a clinical 131I protocol does it:
attenuation correction from the CT, the TEW scatter estimate as an additive term in the forward
model, and a Gaussian depth-dependent collimator response (resolution recovery). What the camera
does and this model leaves out (septal penetration, the non-Gaussian scatter reaching the photopeak,
the mismatch between CT-derived and true attenuation, TEW's bias) stays in the images, with the
edge overshoot that resolution recovery produces.

The image is scaled so that it holds counts of the whole acquisition: an activity A (MBq) reads
Q x A x duration x dead-time survival, as the EANM calibration (eq. 4) expects.
"""

import numpy as np
from scipy import ndimage

from MIBGDosimetryLib.phantoms.realistic import collimator

#: The TEW estimate is smoothed before use (it is noisy: few counts in narrow windows).
TEW_SMOOTHING_FWHM_MM = 20.0


def tew_scatter_estimate(lower, upper, windows, pixel_mm, smoothing_fwhm_mm=TEW_SMOOTHING_FWHM_MM):
    """Photopeak scatter of every projection pixel by TEW (EANM eq. 8), smoothed in each view."""
    peak, low, high = windows
    estimate = peak.width_keV / 2.0 * (np.asarray(lower) / low.width_keV + np.asarray(upper) / high.width_keV)
    sigma = smoothing_fwhm_mm / collimator.FWHM_PER_SIGMA / pixel_mm
    return ndimage.gaussian_filter(estimate, (0.0, sigma, sigma), mode="constant")


def subsets_of(n_views, subsets):
    """Interleaved view subsets: subset s holds views s, s + S, s + 2S, ..."""
    if not 1 <= subsets <= n_views:
        raise ValueError(f"OSEM needs between 1 and {n_views} subsets, got {subsets}.")
    return [list(range(s, n_views, subsets)) for s in range(subsets)]


def reconstruct(projections, model, iterations, subsets, additive=None, save_after=None, field_of_view=None):
    """OSEM of ``projections`` [view, k, i] with a :class:`projector.SystemModel`.

    ``additive`` [view, k, i]: expected counts not coming from the image (scatter estimate).
    ``save_after``: iteration numbers after which to keep a copy (default: ``iterations``); the
    reconstruction runs to the largest of them.
    ``field_of_view``: boolean mask of voxels allowed to hold activity (default: the cylinder that
    every view sees). Returns {iterations: image [k, j, i] in counts of the whole acquisition}.
    """
    if iterations < 1:
        raise ValueError(f"OSEM needs at least one iteration, got {iterations}.")
    projections = np.asarray(projections, dtype=float)
    n_views = projections.shape[0]
    additive = np.zeros_like(projections) if additive is None else np.asarray(additive, dtype=float)
    keep = set(save_after or [iterations])
    if min(keep) < 1:
        raise ValueError(f"Iteration numbers to keep must be positive, got {sorted(keep)}.")
    if field_of_view is None:
        field_of_view = _cylinder_mask(model.shape)
    groups = subsets_of(n_views, subsets)
    sensitivity = []
    for views in groups:
        total = sum(model.back(np.ones(projections.shape[1:]), v) for v in views)
        sensitivity.append(np.where(field_of_view & (total > 1e-6 * total.max()), total, np.inf))
    image = np.where(field_of_view, projections.sum() / n_views / max(field_of_view.sum(), 1), 0.0)
    saved = {}
    for iteration in range(1, max(keep) + 1):
        for views, norm in zip(groups, sensitivity):
            correction = np.zeros(model.shape)
            for v in views:
                expected = model.forward(image, v) + additive[v]
                ratio = np.divide(projections[v], expected, out=np.zeros_like(expected), where=expected > 0)
                correction += model.back(ratio, v)
            image = image * correction / norm
        if iteration in keep:
            saved[iteration] = image * n_views
    return saved


def _cylinder_mask(shape):
    j, i = np.indices(shape[1:])
    centre = (np.array(shape[1:]) - 1) / 2.0
    radius = min(shape[1:]) / 2.0 - 1.0
    inside = (j - centre[0]) ** 2 + (i - centre[1]) ** 2 <= radius ** 2
    return np.broadcast_to(inside, shape)
