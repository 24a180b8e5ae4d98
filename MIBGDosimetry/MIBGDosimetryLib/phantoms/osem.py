"""A digital model of how OSEM reconstructions of 131I SPECT change with the number of updates
(iterations x subsets). It is a model of the behaviour, not a reconstruction:

- Resolution improves with updates towards a converged FWHM:
  FWHM(u) = FWHM_inf + (FWHM_ref - FWHM_inf) exp(-(u - u_ref) / U_RESOLUTION),
  with FWHM_ref the camera's reconstructed FWHM at the reference (clinical) update number u_ref.
- Noise rises with updates: the variance of a voxel is g(u) times its expected counts,
  g(u) = (u / u_ref) ** NOISE_EXPONENT (Poisson-like at u_ref, smoother below, noisier above).
  Counts are drawn from a Gaussian with that variance, rounded and clipped at zero.
"""

import numpy as np

FWHM_CONVERGED_MM = 14.0
REFERENCE_UPDATES = 32
U_RESOLUTION = 16.0
NOISE_EXPONENT = 0.75
SUBSETS = (8, 6, 4, 2, 1)


def fwhm_mm(updates, reference_fwhm_mm):
    """Reconstructed FWHM (mm) after ``updates`` updates."""
    return FWHM_CONVERGED_MM + (reference_fwhm_mm - FWHM_CONVERGED_MM) * np.exp(
        -(updates - REFERENCE_UPDATES) / U_RESOLUTION)


def variance_factor(updates):
    """Voxel variance divided by expected counts after ``updates`` updates."""
    return (updates / REFERENCE_UPDATES) ** NOISE_EXPONENT


def iterations_and_subsets(updates):
    """(iterations, subsets) giving ``updates``, with the largest usual subset number that divides it."""
    if int(updates) != updates or updates < 1:
        raise ValueError(f"OSEM update numbers must be positive whole numbers, got {updates}.")
    subsets = next(s for s in SUBSETS if updates % s == 0)
    return int(updates) // subsets, subsets


def noisy_reconstruction(expected_counts, updates, rng):
    """Counts of a reconstruction with ``updates`` updates around the noise-free ``expected_counts``."""
    expected = np.asarray(expected_counts, dtype=float)
    noise = rng.normal(0.0, 1.0, expected.shape) * np.sqrt(variance_factor(updates) * expected)
    return np.clip(np.round(expected + noise), 0.0, None)
