"""True absorbed doses of a phantom from the true time-integrated activity on the fine grid.

Two parts, computed on their own physics path, whatever kernel the dose workflow uses:

- near field (offsets up to ``half_width_mm`` along every axis): the 131I voxel S kernel of the fine
  grid (electrons, energy absorbed on the spot and photons), convolved by ``scipy.signal``;
- far field (every other offset, out to the whole phantom): photons only, from the radial point
  kernel of the photon transport (:mod:`MIBGDosimetryLib.physics.radial`),
  K(r) = Phi'_photon(r) / (4 pi r^2) in MeV/g per decay (rho cancels), sampled at voxel centres.
  Beyond the near field the point kernel changes by less than a tenth across a voxel, so its centre
  value is the voxel S value to well under 1 %.

The medium is soft tissue at its nominal density everywhere in the grid, outside the body too: the
truth, like the dose calculation, has the photons scattered back by tissue that is not there (air
around the body), which overestimates the dose near the body surface (see the tests for its size).
The far-field convolution is circular over a period longer than the grid plus the activity's extent,
so that no source wraps onto a target.
"""

import math

import numpy as np
import scipy.fft
from scipy import signal

#: Mass density used for structure masses (water-equivalent soft tissue); the kernel is the default
#: soft-tissue kernel, as the dose calculation uses.
DENSITY_G_PER_ML = 1.0
SECONDS_PER_HOUR = 3600.0


def kernel_half_width_voxels(voxel_mm, half_width_mm):
    return max(1, int(math.ceil(half_width_mm / voxel_mm)))


def mean_dose_map_Gy(tia_map_MBq_h, voxel_mm, half_width_mm):
    """Absorbed dose (Gy) of every fine voxel from the TIA map (MBq h) on a cubic grid of ``voxel_mm``:
    the near-field voxel S kernel reaching ``half_width_mm`` plus the far-field photon point kernel
    over the whole grid."""
    from MIBGDosimetryLib.physics.kernels import voxel_s_kernel

    tia_MBq_s = np.asarray(tia_map_MBq_h, dtype=float) * SECONDS_PER_HOUR
    near_width = kernel_half_width_voxels(voxel_mm, half_width_mm)
    kernel = voxel_s_kernel((voxel_mm, voxel_mm, voxel_mm), near_width)
    dose_mGy = signal.fftconvolve(tia_MBq_s, kernel, mode="same")
    dose_mGy += far_photon_dose_mGy(tia_MBq_s, voxel_mm, near_width)
    return dose_mGy / 1000.0


def photon_point_kernel_mGy_per_MBq_s(radius_cm, material="soft_tissue"):
    """Photon point kernel of 131I (mGy/(MBq s)) at ``radius_cm`` in ``material`` at its nominal
    density; zero beyond the photon calculation's reach."""
    from MIBGDosimetryLib.physics.i131 import MGY_PER_MBQ_S_PER_MEV_PER_G
    from MIBGDosimetryLib.physics.materials import get_material
    from MIBGDosimetryLib.physics.radial import radial_kernel

    radial = radial_kernel(material)
    density = get_material(material).nominal_density_g_cm3
    radius_cm = np.asarray(radius_cm, dtype=float)
    depth_g_cm2 = radius_cm * density
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = radial.photon_density_MeV_per_g_cm2(depth_g_cm2) / (4.0 * np.pi * radius_cm ** 2)
    kernel = np.where((depth_g_cm2 > 0) & (depth_g_cm2 <= radial.photon_max_radius_g_cm2), kernel, 0.0)
    return kernel * MGY_PER_MBQ_S_PER_MEV_PER_G


def far_photon_dose_mGy(tia_MBq_s, voxel_mm, near_width):
    """Photon dose (mGy) at every voxel from sources more than ``near_width`` voxels away along some
    axis, by a circular FFT convolution with the point kernel at voxel centres."""
    tia_MBq_s = np.asarray(tia_MBq_s, dtype=float)
    shape = tia_MBq_s.shape
    active = np.nonzero(tia_MBq_s)
    if not active[0].size:
        return np.zeros(shape)
    first = [int(a.min()) for a in active]
    last = [int(a.max()) + 1 for a in active]
    source = tia_MBq_s[tuple(slice(f, t) for f, t in zip(first, last))]
    periods, axis_offsets = [], []
    for n, f, t in zip(shape, first, last):
        period = scipy.fft.next_fast_len(n + (t - f) - 1, real=True)
        # Target minus source runs over [-(t - 1), n - 1 - f]; each offset is stored at its index modulo
        # the period (no two share one, as the period covers the range).
        offsets = np.full(period, np.inf)
        span = np.arange(-(t - 1), n - f)
        offsets[span % period] = span
        periods.append(period)
        axis_offsets.append(offsets)
    oz, oy, ox = np.meshgrid(*axis_offsets, indexing="ij", sparse=True)
    finite = np.isfinite(oz) & np.isfinite(oy) & np.isfinite(ox)
    with np.errstate(invalid="ignore"):
        chebyshev = np.maximum(np.maximum(np.abs(oz), np.abs(oy)), np.abs(ox))
        radius_cm = np.sqrt(oz ** 2 + oy ** 2 + ox ** 2) * voxel_mm / 10.0
    kernel = np.where(finite & (chebyshev > near_width), photon_point_kernel_mGy_per_MBq_s(np.where(finite, radius_cm, 0.0)),
                      0.0)
    spectrum = scipy.fft.rfftn(kernel, s=periods)
    del kernel
    spectrum *= scipy.fft.rfftn(source, s=periods)
    circular = scipy.fft.irfftn(spectrum, s=periods)
    del spectrum
    index = [(np.arange(n) - f) % p for n, f, p in zip(shape, first, periods)]
    return np.maximum(circular[np.ix_(*index)], 0.0)


def dose_method_text(voxel_mm, half_width_mm):
    n = kernel_half_width_voxels(voxel_mm, half_width_mm)
    return (f"The true time-integrated activity of every structure (analytic integral of its kinetics from 0 to "
            f"infinity) is spread uniformly over its voxels on the fine grid ({voxel_mm:g} mm cubic voxels, reference "
            f"position) and converted to MBq s. Near field: convolved (FFT, zero outside the grid) with the 131I voxel "
            f"S kernel MIBGDosimetryLib.physics.kernels.voxel_s_kernel(({voxel_mm:g}, {voxel_mm:g}, {voxel_mm:g}), "
            f"half_width={n}) (soft tissue at its nominal density) in mGy/(MBq s), i.e. {(2 * n + 1)} voxels along "
            f"each axis. Far field (all farther offsets, out to the whole grid): photons only, the radial photon point "
            f"kernel of the photon transport (MIBGDosimetryLib.physics.radial) sampled at voxel centres. Soft tissue "
            f"fills the whole grid (no air outside the body). mean_dose_Gy is the mean over the structure's true "
            f"mask. Masses use {DENSITY_G_PER_ML:g} g/mL for every structure.")
