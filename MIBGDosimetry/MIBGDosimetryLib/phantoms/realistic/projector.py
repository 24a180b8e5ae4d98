"""Projections of a single-head camera on a circular orbit about the z axis (the volume's k axis).

View v looks at the volume rotated by v x 360 / n_views degrees about k: in the rotated volume
[k, j, i] the detector lies beyond j = 0, parallel to the (k, i) plane, ``orbit_radius_mm`` from
the rotation axis, so plane j lies d_j = orbit radius + (j - (n_j - 1) / 2) x voxel from the
collimator face. A projection is an image [k, i].

Two users share the geometry:

- :func:`simulate_view` is the camera: on a fine grid it sums, plane by plane, the activity
  attenuated with the true attenuation map, blurred with the collimator response of its distance,
  and adds septal penetration, body scatter and high-energy down-scatter (see :mod:`.spectrum`).
- :class:`SystemModel` is what a reconstruction knows: on the SPECT grid, attenuation from the CT
  (bilinear conversion) and a Gaussian collimator response per slab of planes.
"""

import dataclasses

import numpy as np
from scipy import ndimage, signal

from MIBGDosimetryLib.phantoms.realistic import attenuation_map, collimator, spectrum

#: Planes summed before one collimator blur (a slab); the response varies little within a slab.
SLAB_PLANES_FINE = 4
SLAB_PLANES_BROAD = 16
SLAB_PLANES_SPECT = 2
#: Spread of body scatter on the detector: FWHM = base + per mm of water-equivalent depth, added in
#: quadrature to the collimator response (scatter from deep sources spreads further).
SCATTER_BASE_FWHM_MM = 30.0
SCATTER_FWHM_PER_DEPTH = 0.5
DOWNSCATTER_FWHM_MM = 100.0


def view_angles_deg(n_views, scan_arc_deg=360.0):
    return np.arange(n_views) * scan_arc_deg / n_views


def rotate(volume, angle_deg):
    """``volume`` [k, j, i] rotated about k (linear interpolation, zero outside)."""
    if angle_deg == 0:
        return np.array(volume, copy=True)
    return ndimage.rotate(volume, angle_deg, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0,
                          prefilter=False)


def plane_distances_mm(n_planes, voxel_mm, orbit_radius_mm):
    """Distance (mm) of every plane j from the collimator face."""
    distances = orbit_radius_mm + (np.arange(n_planes) - (n_planes - 1) / 2.0) * voxel_mm
    if distances[0] <= 0:
        raise ValueError(f"An orbit radius of {orbit_radius_mm:g} mm puts the camera inside the "
                         f"{n_planes * voxel_mm:g} mm field of view; use a larger radius.")
    return distances


def attenuation_paths(mu_rotated_per_mm, voxel_mm):
    """Line integral of mu from the centre of every voxel to the detector (towards j = 0)."""
    cumulative = np.cumsum(mu_rotated_per_mm, axis=1) * voxel_mm
    return cumulative - 0.5 * mu_rotated_per_mm * voxel_mm


def _gaussian(image, sigma_px):
    return ndimage.gaussian_filter(image, sigma_px, mode="constant", cval=0.0, truncate=4.0)


@dataclasses.dataclass
class ViewComponents:
    """Noise-free counts per 364 keV geometric photopeak sensitivity unit of one view, [k, i] each."""

    geometric_364: np.ndarray
    penetration_364: np.ndarray
    geometric_284: np.ndarray
    object_scatter: np.ndarray
    downscatter: np.ndarray

    def window(self, index):
        """Expected counts (same units) in energy window ``index`` (0 photopeak, 1 lower, 2 upper)."""
        shares = spectrum.window_components()
        return ((self.geometric_364 + self.penetration_364) * shares["primary_364"][index]
                + self.geometric_284 * shares["primary_284"][index]
                + self.object_scatter * shares["object_scatter"][index]
                + self.downscatter * shares["downscatter"][index])


def simulate_view(activity_MBq, mu_per_mm, voxel_mm, angle_deg, orbit_radius_mm, penetration=None):
    """Noise-free components of one view of ``activity_MBq`` [k, j, i] in an object of true
    attenuation ``mu_per_mm`` (same grid, cubic voxels of ``voxel_mm``), in MBq-weighted units:
    multiply by the geometric sensitivity (cps/MBq) and the frame time for counts.

    ``penetration``: the penetration kernel of this pixel size (computed when None).
    """
    activity = rotate(activity_MBq, angle_deg)
    total = float(np.sum(activity_MBq))
    if activity.sum() > 0:
        activity *= total / activity.sum()
    path = attenuation_paths(rotate(mu_per_mm, angle_deg), voxel_mm)
    distances = plane_distances_mm(activity.shape[1], voxel_mm, orbit_radius_mm)
    primary = activity * np.exp(-path)
    primary_284 = activity * np.exp(-spectrum.MU_RATIO_284 * path)
    excess = activity * (np.exp(-spectrum.BROAD_BEAM_RATIO * path) - np.exp(-path))
    water_depth_mm = path / attenuation_map.WATER_MU_PER_MM
    shape = (activity.shape[0], activity.shape[2])
    geometric = np.zeros(shape)
    for start in range(0, activity.shape[1], SLAB_PLANES_FINE):
        planes = slice(start, start + SLAB_PLANES_FINE)
        slab = primary[:, planes].sum(axis=1)
        if slab.any():
            geometric += _gaussian(slab, float(collimator.sigma_pixels(distances[planes].mean(), voxel_mm)))
    # The 284 keV line and body scatter are broad or faint: blurred per thicker slab.
    geometric_284, scatter = np.zeros(shape), np.zeros(shape)
    for start in range(0, activity.shape[1], SLAB_PLANES_BROAD):
        planes = slice(start, start + SLAB_PLANES_BROAD)
        sigma_c = float(collimator.sigma_pixels(distances[planes].mean(), voxel_mm))
        slab_284 = primary_284[:, planes].sum(axis=1)
        if slab_284.any():
            geometric_284 += _gaussian(slab_284, sigma_c)
        slab_excess = excess[:, planes].sum(axis=1)
        weight = slab_excess.sum()
        if weight <= 0:
            continue
        depth = float((excess[:, planes] * water_depth_mm[:, planes]).sum() / weight)
        fwhm_s = SCATTER_BASE_FWHM_MM + SCATTER_FWHM_PER_DEPTH * depth
        scatter += _gaussian(slab_excess, float(np.hypot(sigma_c, fwhm_s / collimator.FWHM_PER_SIGMA / voxel_mm)))
    kernel = collimator.penetration_kernel(voxel_mm) if penetration is None else penetration
    penetrated = collimator.PENETRATION_FRACTION * signal.fftconvolve(geometric, kernel, mode="same")
    high = (activity * np.exp(-spectrum.MU_RATIO_HIGH * path)).sum(axis=1)
    downscatter = _gaussian(high, DOWNSCATTER_FWHM_MM / collimator.FWHM_PER_SIGMA / voxel_mm)
    return ViewComponents(geometric, np.clip(penetrated, 0.0, None), geometric_284, scatter, downscatter)


class SystemModel:
    """The reconstruction's model of the camera on the SPECT grid: attenuation from a mu map and a
    Gaussian collimator response per slab of :data:`SLAB_PLANES_SPECT` planes, no penetration and no
    scatter (scatter enters OSEM as an additive estimate)."""

    def __init__(self, mu_per_mm, voxel_mm, n_views, orbit_radius_mm, model_collimator=True):
        self.shape = mu_per_mm.shape
        self.voxel_mm = float(voxel_mm)
        self.angles = view_angles_deg(n_views)
        distances = plane_distances_mm(self.shape[1], voxel_mm, orbit_radius_mm)
        self.slabs = []
        for start in range(0, self.shape[1], SLAB_PLANES_SPECT):
            planes = slice(start, min(start + SLAB_PLANES_SPECT, self.shape[1]))
            sigma = float(collimator.sigma_pixels(distances[planes].mean(), voxel_mm)) if model_collimator else 0.0
            self.slabs.append((planes, sigma))
        self.attenuation = [np.exp(-attenuation_paths(rotate(mu_per_mm, a), voxel_mm)).astype(np.float32)
                            for a in self.angles]

    def forward(self, image, view):
        """Expected projection [k, i] of ``image`` [k, j, i] at view ``view``."""
        weighted = rotate(image, self.angles[view]) * self.attenuation[view]
        projection = np.zeros((self.shape[0], self.shape[2]))
        for planes, sigma in self.slabs:
            slab = weighted[:, planes].sum(axis=1)
            projection += _gaussian(slab, sigma) if sigma > 0 else slab
        return projection

    def back(self, projection, view):
        """Adjoint of :meth:`forward`: spread a projection [k, i] back into the volume."""
        volume = np.empty(self.shape, dtype=np.float32)
        for planes, sigma in self.slabs:
            blurred = _gaussian(projection, sigma) if sigma > 0 else projection
            volume[:, planes] = blurred[:, np.newaxis, :]
        volume *= self.attenuation[view]
        return rotate(volume, -self.angles[view])
