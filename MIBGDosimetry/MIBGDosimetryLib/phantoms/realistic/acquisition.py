"""A tomographic (or planar) acquisition with the realistic camera: noise-free views from
:func:`.projector.simulate_view` on the fine grid, binned to the projection pixels, paralysable dead
time on each view's total detected rate, Poisson noise.

Dead time acts on every event the electronics process, not only on those in the photopeak window:
the detected rate is ``spectrum_to_windows_ratio`` times the rate in the three windows (131I spectra
above a typical lower-level discriminator hold about three times the counts of the 305-422 keV
range: lead X-rays, the 284 keV line and much scatter below 300 keV). A view at rate R keeps the
fraction exp(-R tau) of its counts (paralysable model, EANM eq. 6). The photopeak-window dead time
that an increasing-activity series measures is therefore tau x R_detected / R_photopeak and depends
on the scatter conditions, as it does on a real camera.
"""

import dataclasses

import numpy as np

from MIBGDosimetryLib.phantoms.projection import bin_2d
from MIBGDosimetryLib.phantoms.realistic import collimator, projector, spectrum


@dataclasses.dataclass(frozen=True)
class RealisticCamera:
    """A single-head camera with an HEGP collimator on a circular orbit.

    ``geometric_sensitivity_cps_per_MBq``: 364 keV photopeak-window counts per second per MBq of a
    point source in air from photons through the holes (penetration adds
    :data:`collimator.PENETRATION_FRACTION` of it). ``dead_time_s``: paralysable dead time of the
    detector for all processed events.
    """

    geometric_sensitivity_cps_per_MBq: float = 21.0
    dead_time_s: float = 1.3e-6
    spectrum_to_windows_ratio: float = 3.0
    orbit_radius_mm: float = 200.0
    manufacturer_model: str = "Virtual gamma camera (projection model)"
    collimator: str = "HEGP"
    collimator_type: str = "PARA"
    crystal_mm: float = 15.9

    def __post_init__(self):
        if self.geometric_sensitivity_cps_per_MBq <= 0 or self.dead_time_s < 0 or self.spectrum_to_windows_ratio < 1:
            raise ValueError("The camera needs a positive sensitivity, a non-negative dead time and a spectrum-to-"
                             "windows ratio of at least 1.")

    @property
    def calibration_factor_cps_per_MBq(self):
        """The true Q: photopeak counts per second per MBq without attenuation or body scatter
        (geometric plus septal penetration), what a fully corrected reconstruction aims at."""
        return self.geometric_sensitivity_cps_per_MBq * (1.0 + collimator.PENETRATION_FRACTION)


@dataclasses.dataclass
class Acquisition:
    """Counts [window, view, row k, column i] and what the truth needs about them."""

    counts: np.ndarray
    expected: np.ndarray
    survival_per_view: np.ndarray
    incident_photopeak_cps: float
    observed_photopeak_cps: float
    detected_cps: float
    photopeak_geometric_counts: float
    photopeak_penetration_counts: float
    photopeak_scatter_counts: float
    photopeak_downscatter_counts: float

    @property
    def photopeak_counts(self):
        return int(self.counts[0].sum())


def noise_free_views(activity_MBq, mu_per_mm, voxel_mm, camera, n_views, bin_factor):
    """Per view, the expected counts per second in the three windows (no dead time), binned by
    ``bin_factor``, and the photopeak components summed over views (counts per second)."""
    kernel = collimator.penetration_kernel(voxel_mm)
    s = camera.geometric_sensitivity_cps_per_MBq
    rates, parts = [], np.zeros(4)
    for angle in projector.view_angles_deg(n_views):
        view = projector.simulate_view(activity_MBq, mu_per_mm, voxel_mm, angle, camera.orbit_radius_mm, kernel)
        rates.append([bin_2d(view.window(w), bin_factor) * s for w in range(3)])
        peak_scatter = view.object_scatter.sum()
        parts += s * np.array([view.geometric_364.sum(), view.penetration_364.sum(), peak_scatter,
                               view.downscatter.sum() * spectrum.window_components()["downscatter"][0]])
    return np.array(rates).transpose(1, 0, 2, 3), parts


def acquire(activity_MBq, mu_per_mm, voxel_mm, camera, n_views, frame_s, rng, bin_factor=1):
    """Simulate an acquisition of ``n_views`` frames of ``frame_s`` seconds: returns :class:`Acquisition`."""
    rates, parts = noise_free_views(activity_MBq, mu_per_mm, voxel_mm, camera, n_views, bin_factor)
    return record_counts(rates, parts, camera, frame_s, rng)


def record_counts(rates_cps, parts_cps, camera, frame_s, rng):
    """Dead time per view and Poisson noise on the noise-free rates [window, view, k, i]."""
    window_rate_per_view = rates_cps.sum(axis=(0, 2, 3))
    detected = camera.spectrum_to_windows_ratio * window_rate_per_view
    survival = np.exp(-detected * camera.dead_time_s)
    expected = rates_cps * survival[np.newaxis, :, np.newaxis, np.newaxis] * frame_s
    counts = rng.poisson(expected).astype(np.float64)
    peak_rate = rates_cps[0].sum(axis=(1, 2))
    mean_survival = float((peak_rate * survival).sum() / peak_rate.sum()) if peak_rate.sum() > 0 else 1.0
    return Acquisition(
        counts=counts, expected=expected, survival_per_view=survival,
        incident_photopeak_cps=float(peak_rate.mean()), observed_photopeak_cps=float(peak_rate.mean() * mean_survival),
        detected_cps=float(detected.mean()),
        photopeak_geometric_counts=float(parts_cps[0] * frame_s * mean_survival),
        photopeak_penetration_counts=float(parts_cps[1] * frame_s * mean_survival),
        photopeak_scatter_counts=float(parts_cps[2] * frame_s * mean_survival),
        photopeak_downscatter_counts=float(parts_cps[3] * frame_s * mean_survival))
