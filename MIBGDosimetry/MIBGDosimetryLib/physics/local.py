"""Local energy deposition: all electron energy of 131I absorbed where the decay happens.

The dose of a voxel (or region) is its time-integrated activity times the electron energy per decay
(ICRP-107 beta, conversion and Auger electrons, :data:`.i131.ELECTRON_ENERGY_MEV`) over its mass;
photons are neglected. This is the local-deposition method of voxel dosimetry (EANM guidance on
voxel-based dosimetry), appropriate for voxels much larger than the electron range (0.8 mm X90 in
soft tissue).
"""

import numpy as np

from MIBGDosimetryLib.physics.i131 import ELECTRON_ENERGY_MEV, GY_PER_MBQ_H_PER_MEV_PER_G


def local_deposition_dose_Gy(tia_MBq_h, voxel_volume_ml, density_g_cm3=1.0):
    """Absorbed dose (Gy) from local deposition of the 131I electron energy.

    ``tia_MBq_h``: time-integrated activity (scalar or array, MBq h); ``voxel_volume_ml``: volume of the
    voxel or region (mL); ``density_g_cm3``: tissue density (scalar or array broadcastable to the TIA)."""
    tia = np.asarray(tia_MBq_h, dtype=float)
    density = np.asarray(density_g_cm3, dtype=float)
    if not np.all(np.isfinite(tia)):
        raise ValueError("The time-integrated activity contains values that are not finite numbers.")
    if not (np.isfinite(voxel_volume_ml) and voxel_volume_ml > 0):
        raise ValueError(f"The voxel volume must be a positive number of mL; got {voxel_volume_ml}.")
    if np.any(~np.isfinite(density)) or np.any(density <= 0):
        raise ValueError("Tissue densities must be positive numbers of g/cm3.")
    mass_g = voxel_volume_ml * density
    dose_Gy = tia * ELECTRON_ENERGY_MEV * GY_PER_MBQ_H_PER_MEV_PER_G / mass_g
    return dose_Gy if dose_Gy.ndim else float(dose_Gy)
