"""Whole-body self-dose S value of 131I for a patient of a given mass, and the reference red-marrow mass.

Model (the MIRD schema, Bolch WE et al., MIRD Pamphlet No. 21, J Nucl Med 50 (2009) 477-484, applied
to the whole body as one source and target region, as in the whole-body dosimetry of 131I-mIBG in
neuroblastoma: Buckley SE et al., J Nucl Med 50 (2009) 1518-1524; Gaze MN et al., Cancer Biother
Radiopharm 20 (2005) 195-199; EANM guidelines for bone marrow and whole-body dosimetry, Hindorf C et al.,
Eur J Nucl Med Mol Imaging 37 (2010) 1238-1250):

    S(WB <- WB) = (E_e + phi_ph E_ph) / m

- activity uniformly distributed in the body;
- electrons (beta, conversion and Auger, E_e = 0.1919 MeV per decay, ICRP Publication 107, with the
  energy absorbed on the spot) are absorbed entirely in the body (absorbed fraction 1: their range,
  below 3.4 mm, is tiny against the body);
- photons (E_ph = 0.3827 MeV per decay) are absorbed with the absorbed fraction phi_ph of a uniformly
  filled soft-tissue sphere of the body's mass (:func:`MIBGDosimetryLib.physics.spheres.sphere_s_value`,
  the project's photon transport in soft tissue with Berger's geometric reduction factor). Of all
  shapes of a given mass the sphere keeps its points closest together and so absorbs the largest
  photon fraction: the S value is an upper estimate (conservative for a dose limit), as an elongated
  body lets more photons escape. The alternative ``shape="ellipsoid"`` uses an ellipsoid with the
  proportions of the trunk of the MIRD adult phantom (elliptical cylinder 40 cm x 20 cm x 70 cm,
  Snyder WS et al., MIRD Pamphlet No. 5, J Nucl Med 10 suppl. 3 (1969)), semi-axes in the ratio
  2 : 1 : 3.5, scaled to the body's mass. Its geometric reduction factor (the fraction of emissions
  from uniform points that are still inside the ellipsoid at distance r) comes from the distances to
  the surface of random point-direction pairs (a fixed-seed Monte Carlo of the geometry only); the
  photon absorbed fraction is then integral P(r) dPhi_ph(r) / E_ph with the same radial photon kernel
  as the sphere.
"""

import numpy as np

from MIBGDosimetryLib.physics.i131 import GY_PER_MBQ_H_PER_MEV_PER_G
from MIBGDosimetryLib.physics.radial import radial_kernel
from MIBGDosimetryLib.physics.spheres import sphere_s_value

#: Patient masses (kg) the whole-body model accepts: a newborn to a large adult; the photon kernel
#: reaches 60 cm, the diameter of a 113 kg sphere of unit density.
MIN_BODY_MASS_KG = 2.0
MAX_BODY_MASS_KG = 110.0
#: Reference body mass (kg) and red (active) marrow mass (g): ICRP Publication 89 (2002), Basic anatomical
#: and physiological data for use in radiological protection, reference values (newborn, 1, 5, 10 and
#: 15 years, adult; male values for 15 years and adult).
ICRP89_BODY_KG = (3.5, 10.0, 19.0, 32.0, 56.0, 73.0)
ICRP89_RED_MARROW_G = (50.0, 150.0, 340.0, 630.0, 1080.0, 1170.0)
SHAPES = ("sphere", "ellipsoid")
#: Semi-axis proportions of the body ellipsoid: the MIRD Pamphlet 5 trunk (40 x 20 x 70 cm).
BODY_ELLIPSOID_RATIOS = (2.0, 1.0, 3.5)
_PAIRS = 400_000
_SEED = 131


def whole_body_s_value(mass_kg, shape="sphere"):
    """Whole-body self-dose S value of 131I for a body of ``mass_kg`` (see the module docstring);
    ``shape`` "sphere" (default, the upper estimate) or "ellipsoid".

    Returns a dict: ``S_Gy_per_MBq_h``, its ``electron_Gy_per_MBq_h`` and ``photon_Gy_per_MBq_h``
    parts, ``photon_absorbed_fraction``, ``electron_energy_MeV``, ``photon_energy_MeV``, ``mass_kg``,
    ``shape`` and ``model``.
    """
    if not (np.isfinite(mass_kg) and MIN_BODY_MASS_KG <= mass_kg <= MAX_BODY_MASS_KG):
        raise ValueError(f"The patient mass must lie between {MIN_BODY_MASS_KG:g} and {MAX_BODY_MASS_KG:g} kg; "
                         f"got {mass_kg} kg.")
    if shape not in SHAPES:
        raise ValueError(f"Unknown body shape '{shape}'; choose one of {', '.join(SHAPES)}.")
    kernel = radial_kernel("soft_tissue")
    mass_g = 1000.0 * float(mass_kg)
    if shape == "sphere":
        photon_fraction = sphere_s_value(mass_g, 1.0, "soft_tissue", max_mass_g=1000.0 * MAX_BODY_MASS_KG)[
            "photon_absorbed_fraction"]
    else:
        photon_fraction = ellipsoid_photon_absorbed_fraction(ellipsoid_semi_axes_cm(mass_g, BODY_ELLIPSOID_RATIOS))
    electron = kernel.electron_MeV / mass_g * GY_PER_MBQ_H_PER_MEV_PER_G
    photon = photon_fraction * kernel.photon_emitted_MeV / mass_g * GY_PER_MBQ_H_PER_MEV_PER_G
    return {"S_Gy_per_MBq_h": electron + photon, "electron_Gy_per_MBq_h": electron, "photon_Gy_per_MBq_h": photon,
            "photon_absorbed_fraction": photon_fraction, "electron_energy_MeV": kernel.electron_MeV,
            "photon_energy_MeV": kernel.photon_emitted_MeV, "mass_kg": float(mass_kg), "shape": shape,
            "model": f"electrons absorbed in the body; photons with the absorbed fraction of a soft-tissue {shape} "
                     "(1 g/cm3) of the body's mass; activity uniform in the body"}


def ellipsoid_semi_axes_cm(mass_g, ratios, density_g_cm3=1.0):
    """Semi-axes (cm) of an ellipsoid of ``mass_g`` whose semi-axes are in the proportions ``ratios``."""
    ratios = np.asarray(ratios, dtype=float)
    scale = (3.0 * mass_g / (4.0 * np.pi * density_g_cm3 * np.prod(ratios))) ** (1.0 / 3.0)
    return ratios * scale


def distances_to_surface_cm(semi_axes_cm, pairs=_PAIRS, seed=_SEED):
    """Distances from uniform random points of an ellipsoid to its surface along isotropic random
    directions (cm), sorted: ``P(r)`` is the fraction of them beyond r."""
    rng = np.random.default_rng(seed)
    axes = np.asarray(semi_axes_cm, dtype=float)
    ball = rng.normal(size=(pairs, 3))
    ball *= (rng.uniform(size=pairs) ** (1.0 / 3.0) / np.linalg.norm(ball, axis=1))[:, None]
    direction = rng.normal(size=(pairs, 3))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    # In coordinates scaled by the semi-axes the ellipsoid is the unit ball: |q + s e|^2 = 1 with
    # q = point / axes, e = direction / axes; the positive root is the exit distance s.
    q, e = ball, direction / axes
    a, b, c = np.einsum("ij,ij->i", e, e), np.einsum("ij,ij->i", q, e), np.einsum("ij,ij->i", q, q) - 1.0
    return np.sort((-b + np.sqrt(b * b - a * c)) / a)


def ellipsoid_reduction_factor(semi_axes_cm, radius_cm, pairs=_PAIRS, seed=_SEED):
    """Fraction of isotropic emissions from uniform points of an ellipsoid still inside it at ``radius_cm``."""
    exits = distances_to_surface_cm(semi_axes_cm, pairs, seed)
    return 1.0 - np.searchsorted(exits, np.asarray(radius_cm, dtype=float), side="right") / exits.size


def ellipsoid_photon_absorbed_fraction(semi_axes_cm, density_g_cm3=1.0):
    """Photon absorbed fraction of 131I uniformly filling a soft-tissue ellipsoid (semi-axes in cm)."""
    kernel = radial_kernel("soft_tissue")
    exits = distances_to_surface_cm(semi_axes_cm)
    longest_g_cm2 = min(float(exits[-1]) * density_g_cm3, kernel.photon_max_radius_g_cm2)
    edges = np.linspace(0.0, longest_g_cm2, 4001)
    middle_cm = 0.5 * (edges[1:] + edges[:-1]) / density_g_cm3
    inside = 1.0 - np.searchsorted(exits, middle_cm, side="right") / exits.size
    return float(np.diff(kernel.photon_cumulative_MeV(edges)) @ inside / kernel.photon_emitted_MeV)


def reference_red_marrow_mass_g(body_mass_kg):
    """Red-marrow mass (g) for a body of ``body_mass_kg``: the ICRP Publication 89 reference values,
    interpolated linearly in body mass, and scaled with body mass beyond the table's ends (the
    patient-specific scaling of the EANM guidelines, Hindorf et al. 2010)."""
    if not (np.isfinite(body_mass_kg) and body_mass_kg > 0):
        raise ValueError(f"The body mass must be a positive number of kilograms; got {body_mass_kg}.")
    body, marrow = np.array(ICRP89_BODY_KG), np.array(ICRP89_RED_MARROW_G)
    if body_mass_kg <= body[0]:
        return float(marrow[0] * body_mass_kg / body[0])
    if body_mass_kg >= body[-1]:
        return float(marrow[-1] * body_mass_kg / body[-1])
    return float(np.interp(body_mass_kg, body, marrow))
