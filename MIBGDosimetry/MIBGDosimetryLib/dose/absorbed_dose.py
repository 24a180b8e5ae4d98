"""Absorbed dose from time-integrated activity with S values or voxel S-value kernels.

``dose_Gy = TIA_MBq_s x S_mGy_per_MBq_s / 1000`` (MIRD schema, absorbed dose = cumulated activity
times S value); TIA arrives in MBq h and is converted here, at the edge.

Density correction: a voxel S-value kernel is computed for one medium at its reference density
rho_k (soft tissue at 1.04 g/cm3 by default). The energy a voxel receives is taken as in that
medium, so the absorbed dose (energy per mass) in a voxel of density rho is the kernel dose times
``rho_k / rho``; a voxel of the kernel's own density keeps the kernel dose. Densities below
``MIN_DENSITY_G_CM3`` (air around and inside the patient) are raised to it, because there the
approximation fails and an unbounded factor would create meaningless dose spikes.
"""

import numpy as np

from MIBGDosimetryLib.dose.convolution import convolve_kernel

SECONDS_PER_HOUR = 3600.0
#: Lowest density (g/cm3) used in the density correction: below every tissue of the body (inflated
#: lung is about 0.26 g/cm3, ICRU Report 46, 1992), so only air is raised to it.
MIN_DENSITY_G_CM3 = 0.1


def tia_to_dose_Gy(tia_MBq_h, s_value_mGy_per_MBq_s):
    """Absorbed dose (Gy) = TIA (MBq h -> MBq s) x S (mGy/(MBq s)) / 1000."""
    return np.asarray(tia_MBq_h, dtype=float) * SECONDS_PER_HOUR * np.asarray(s_value_mGy_per_MBq_s) / 1000.0


def dose_map_Gy(tia_map_MBq_h, kernel_mGy_per_MBq_s, density_g_cm3=None, *, kernel_density_g_cm3=None,
                dtype=np.float64):
    """Absorbed-dose map (Gy) from a TIA map (MBq h per voxel) and a voxel S-value kernel.

    ``density_g_cm3``: optional density map on the same grid for the density correction (dose scaled
    by ``kernel_density_g_cm3 / density``, see the module documentation); ``kernel_density_g_cm3``,
    the density the kernel was computed for, is then required.
    """
    dose = convolve_kernel(tia_map_MBq_h, kernel_mGy_per_MBq_s, dtype=dtype)
    dose *= SECONDS_PER_HOUR / 1000.0
    if density_g_cm3 is not None:
        density = np.asarray(density_g_cm3)
        if density.shape != dose.shape:
            raise ValueError(f"The density map shape {density.shape} differs from the TIA map shape {dose.shape}.")
        if not np.all(np.isfinite(density)):
            raise ValueError("The density map contains non-finite values.")
        if kernel_density_g_cm3 is None or not 0.0 < kernel_density_g_cm3 < np.inf:
            raise ValueError("The density correction needs the density the kernel was computed for "
                             f"(kernel_density_g_cm3), got {kernel_density_g_cm3}.")
        dose *= kernel_density_g_cm3 / np.maximum(density, MIN_DENSITY_G_CM3).astype(dtype, copy=False)
    return dose


def self_dose_fractions(tia_map_MBq_h, masks, kernel_mGy_per_MBq_s, dose_Gy, density_g_cm3=None, *,
                        kernel_density_g_cm3=None, weights=None):
    """Share of each VOI's mean absorbed dose that its own activity gives (the rest comes from the
    activity around it, mostly as photons): the dose of the TIA inside the VOI alone over ``dose_Gy``, the
    dose map of the whole TIA map (:func:`dose_map_Gy` with the same kernel and density arguments),
    averaged over the VOI with ``weights`` (the voxels' masses, as the mean dose is; None for equal).

    An error in a VOI's own activity or TIA (its fit, partial-volume correction, outline) moves its mean
    dose by this share of the relative error only; an error common to every VOI (the calibration factor)
    moves all of it. 1 for a VOI without dose.
    """
    from MIBGDosimetryLib.volume import padded_box

    tia = np.asarray(tia_map_MBq_h, dtype=np.float64)
    kernel = np.asarray(kernel_mGy_per_MBq_s, dtype=np.float64)
    total = np.asarray(dose_Gy, dtype=np.float64)
    weights = np.ones(tia.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    fractions = []
    for mask in masks:
        mask = np.asarray(mask, dtype=bool)
        box = padded_box(mask, 0)
        denominator = float(np.sum(weights[mask] * total[mask])) if box is not None else 0.0
        if denominator <= 0:
            fractions.append(1.0)
            continue
        inside = mask[box]
        source = np.where(inside, tia[box], 0.0)
        # Only the kernel's offsets that join two voxels of the box matter.
        reach = [min(k // 2, n - 1) for k, n in zip(kernel.shape, source.shape)]
        centre = [k // 2 for k in kernel.shape]
        cropped = kernel[tuple(slice(c - r, c + r + 1) for c, r in zip(centre, reach))]
        own = dose_map_Gy(source, cropped, None if density_g_cm3 is None else np.asarray(density_g_cm3)[box],
                          kernel_density_g_cm3=kernel_density_g_cm3)
        fractions.append(float(np.clip(np.sum(weights[box][inside] * own[inside]) / denominator, 0.0, 1.0)))
    return fractions
