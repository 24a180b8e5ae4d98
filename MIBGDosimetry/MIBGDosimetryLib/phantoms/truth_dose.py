"""True absorbed doses of a phantom: the true time-integrated activity on the fine grid convolved
with the 131I voxel S kernel of that grid, averaged over each structure's true mask."""

import math

import numpy as np
from scipy import signal

#: Mass density used for structure masses (water-equivalent soft tissue); the kernel is the default
#: soft-tissue kernel, as the dose calculation uses.
DENSITY_G_PER_ML = 1.0
SECONDS_PER_HOUR = 3600.0


def kernel_half_width_voxels(voxel_mm, half_width_mm):
    return max(1, int(math.ceil(half_width_mm / voxel_mm)))


def mean_dose_map_Gy(tia_map_MBq_h, voxel_mm, half_width_mm):
    """Absorbed dose (Gy) of every fine voxel from the TIA map (MBq h) on a cubic grid of ``voxel_mm``.

    The kernel (mGy per MBq s) reaches ``half_width_mm`` from the source voxel in every direction.
    """
    from MIBGDosimetryLib.physics.kernels import voxel_s_kernel

    kernel = voxel_s_kernel((voxel_mm, voxel_mm, voxel_mm), kernel_half_width_voxels(voxel_mm, half_width_mm))
    dose_mGy = signal.fftconvolve(np.asarray(tia_map_MBq_h, dtype=float) * SECONDS_PER_HOUR, kernel, mode="same")
    return dose_mGy / 1000.0


def dose_method_text(voxel_mm, half_width_mm):
    n = kernel_half_width_voxels(voxel_mm, half_width_mm)
    return (f"The true time-integrated activity of every structure (analytic integral of its kinetics from 0 to "
            f"infinity) is spread uniformly over its voxels on the fine grid ({voxel_mm:g} mm cubic voxels, reference "
            f"position), converted to MBq s and convolved (FFT, zero outside the grid) with the 131I voxel S kernel "
            f"MIBGDosimetryLib.physics.kernels.voxel_s_kernel(({voxel_mm:g}, {voxel_mm:g}, {voxel_mm:g}), "
            f"half_width={n}) (soft tissue at its nominal density) in mGy/(MBq s), i.e. "
            f"{(2 * n + 1)} voxels along each axis; mean_dose_Gy is the mean over the structure's true mask. "
            f"Masses use {DENSITY_G_PER_ML:g} g/mL for every structure.")
