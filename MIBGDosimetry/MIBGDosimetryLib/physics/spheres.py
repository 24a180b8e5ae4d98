"""S values of uniformly filled spheres of 131I (lesions, or organs of patient-specific mass).

For a source uniformly distributed in a sphere of radius R, the fraction of the emissions at distance
r from their origin that end inside the sphere is the geometric reduction factor
P(r) = 1 - 3x/4 + x^3/16 with x = r/R (0 for x > 2) (Berger, MIRD Pamphlet 7, J. Nucl. Med. 12 suppl. 5
(1971) 5). The absorbed fraction of a radiation is then integral P(r) dPhi(r) / E with the radial
cumulative deposition Phi(r) of :mod:`.radial` (the same physics as the voxel kernels), and the
S value is (E_e phi_e + E_ph phi_ph) / m.
"""

import numpy as np

from MIBGDosimetryLib.physics.i131 import MGY_PER_MBQ_S_PER_MEV_PER_G
from MIBGDosimetryLib.physics.radial import radial_kernel

MIN_MASS_G = 1.0e-3
MAX_MASS_G = 1.0e4
_SHELLS = 4000


def geometric_reduction_factor(radius_ratio):
    """Fraction of isotropic emissions from uniform points of a sphere that end within the sphere at the
    distance ``radius_ratio`` x sphere radius (Berger 1971)."""
    x = np.asarray(radius_ratio, dtype=float)
    return np.where(x < 2.0, 1.0 - 0.75 * x + x ** 3 / 16.0, 0.0)


def sphere_radius_cm(mass_g, density_g_cm3=1.0):
    """Radius (cm) of a sphere of ``mass_g`` at ``density_g_cm3``."""
    return (3.0 * mass_g / (4.0 * np.pi * density_g_cm3)) ** (1.0 / 3.0)


def sphere_s_value(mass_g, density_g_cm3=1.0, material="soft_tissue", max_mass_g=MAX_MASS_G):
    """Self-dose S value of a uniformly filled sphere of 131I.

    ``max_mass_g`` is the largest mass accepted (organs and lesions by default; the whole-body model
    raises it to body masses, which the photon kernel's 60 cm reach still covers).

    Returns a dict: ``S_mGy_per_MBq_s`` (mean absorbed dose rate in the sphere per unit activity),
    ``electron_absorbed_fraction`` (beta, conversion and Auger electrons), ``photon_absorbed_fraction``
    (gamma and X-rays), ``mass_g``, ``radius_mm``, ``density_g_cm3``, ``material``."""
    if not (np.isfinite(mass_g) and MIN_MASS_G <= mass_g <= max_mass_g):
        raise ValueError(f"The sphere mass must lie between {MIN_MASS_G} g and {max_mass_g:g} g; got {mass_g} g.")
    if not (np.isfinite(density_g_cm3) and 0.01 <= density_g_cm3 <= 3.0):
        raise ValueError(f"The tissue density must lie between 0.01 and 3 g/cm3; got {density_g_cm3}.")
    radial = radial_kernel(material)
    radius_cm = sphere_radius_cm(mass_g, density_g_cm3)
    diameter_g_cm2 = 2.0 * radius_cm * density_g_cm3
    if diameter_g_cm2 > radial.photon_max_radius_g_cm2:
        raise ValueError(f"A sphere of {mass_g} g at {density_g_cm3} g/cm3 is larger than the photon kernel "
                         f"({radial.photon_max_radius_g_cm2:g} g/cm2 in radius) allows.")
    fine = radial.electron_edges_g_cm2[radial.electron_edges_g_cm2 < diameter_g_cm2]
    edges = np.union1d(fine, np.linspace(0.0, diameter_g_cm2, _SHELLS + 1))
    reduction = geometric_reduction_factor(0.5 * (edges[1:] + edges[:-1]) / (radius_cm * density_g_cm3))
    electron_total_MeV = radial.electron_MeV
    photon_total_MeV = radial.photon_emitted_MeV
    # Energy absorbed on the spot (r = 0) stays in the sphere.
    electron_absorbed_MeV = (radial.electron_cumulative_MeV(0.0)
                             + np.diff(radial.electron_cumulative_MeV(edges)) @ reduction)
    photon_absorbed_MeV = np.diff(radial.photon_cumulative_MeV(edges)) @ reduction
    s_value = (electron_absorbed_MeV + photon_absorbed_MeV) / mass_g * MGY_PER_MBQ_S_PER_MEV_PER_G
    return {
        "S_mGy_per_MBq_s": float(s_value),
        "electron_absorbed_fraction": float(electron_absorbed_MeV / electron_total_MeV),
        "photon_absorbed_fraction": float(photon_absorbed_MeV / photon_total_MeV),
        "mass_g": float(mass_g),
        "radius_mm": float(10.0 * radius_cm),
        "density_g_cm3": float(density_g_cm3),
        "material": material,
    }
