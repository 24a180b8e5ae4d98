"""Linear attenuation coefficients at 364 keV: the true ones of the phantom materials (used to
simulate the acquisition) and the ones a reconstruction derives from CT numbers with a bilinear
conversion (used for attenuation correction). The two differ slightly, as they do in a clinic.

Mass attenuation coefficients (with coherent scattering) at 364 keV, interpolated log-log between
the 300 and 400 keV values of NIST XCOM: water 0.1100 cm2/g, ICRU soft tissue 0.1089 cm2/g,
ICRU cortical bone (1.92 g/cm3) 0.1042 cm2/g.
"""

import numpy as np

MASS_ATTENUATION_WATER_CM2_PER_G = 0.1100
MASS_ATTENUATION_SOFT_TISSUE_CM2_PER_G = 0.1089
MASS_ATTENUATION_CORTICAL_BONE_CM2_PER_G = 0.1042
CORTICAL_BONE_DENSITY_G_PER_CM3 = 1.92
#: CT number of cortical bone at 120 kVp assumed by both conversions (typical values 1500-2000 HU).
CORTICAL_BONE_HU = 1900.0
#: Density of soft tissue (ICRU 44) and the CT number below which a voxel is air.
SOFT_TISSUE_DENSITY_G_PER_CM3 = 1.04
SOFT_TISSUE_HU = 40.0
AIR_HU_LIMIT = -950.0
#: Above this CT number a voxel is taken as a mixture of soft tissue and cortical bone.
BONE_MIXTURE_HU = 100.0
#: Water at 364 keV (1/mm): the fill of the calibration phantoms.
WATER_MU_PER_MM = MASS_ATTENUATION_WATER_CM2_PER_G / 10.0


def true_mu_per_mm(hu):
    """Attenuation coefficient (1/mm) of the phantom material with CT number ``hu`` (noise-free).

    Air below -950 HU; lung and soft tissues with the mass attenuation of soft tissue and the density
    1 + HU/1000 g/cm3; above 100 HU a mixture of soft tissue and cortical bone whose bone volume
    fraction grows linearly from 0 at 40 HU to 1 at the cortical bone CT number, with mass-weighted
    attenuation.
    """
    hu = np.asarray(hu, dtype=float)
    density = np.clip(1.0 + hu / 1000.0, 0.0, None)
    mu_per_cm = density * MASS_ATTENUATION_SOFT_TISSUE_CM2_PER_G
    bone_fraction = np.clip((hu - SOFT_TISSUE_HU) / (CORTICAL_BONE_HU - SOFT_TISSUE_HU), 0.0, 1.0)
    bone_density = (1.0 - bone_fraction) * SOFT_TISSUE_DENSITY_G_PER_CM3 + bone_fraction * CORTICAL_BONE_DENSITY_G_PER_CM3
    bone_mass_fraction = bone_fraction * CORTICAL_BONE_DENSITY_G_PER_CM3 / bone_density
    bone_mu_per_cm = bone_density * ((1.0 - bone_mass_fraction) * MASS_ATTENUATION_SOFT_TISSUE_CM2_PER_G
                                     + bone_mass_fraction * MASS_ATTENUATION_CORTICAL_BONE_CM2_PER_G)
    mu_per_cm = np.where(hu > BONE_MIXTURE_HU, bone_mu_per_cm, mu_per_cm)
    return np.where(hu < AIR_HU_LIMIT, 0.0, mu_per_cm) / 10.0


def bilinear_mu_per_mm(hu):
    """Attenuation coefficient (1/mm) from CT numbers as a reconstruction converts them: water
    scaled by 1 + HU/1000 up to 0 HU, then a line to cortical bone at :data:`CORTICAL_BONE_HU`."""
    hu = np.asarray(hu, dtype=float)
    mu_water = MASS_ATTENUATION_WATER_CM2_PER_G
    mu_bone = MASS_ATTENUATION_CORTICAL_BONE_CM2_PER_G * CORTICAL_BONE_DENSITY_G_PER_CM3
    below = mu_water * np.clip(1.0 + hu / 1000.0, 0.0, None)
    above = mu_water + hu * (mu_bone - mu_water) / CORTICAL_BONE_HU
    return np.where(hu <= 0.0, below, above) / 10.0
