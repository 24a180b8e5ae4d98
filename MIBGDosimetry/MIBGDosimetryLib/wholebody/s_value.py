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
  body lets more photons escape.
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


def whole_body_s_value(mass_kg):
    """Whole-body self-dose S value of 131I for a body of ``mass_kg`` (see the module docstring).

    Returns a dict: ``S_Gy_per_MBq_h``, its ``electron_Gy_per_MBq_h`` and ``photon_Gy_per_MBq_h``
    parts, ``photon_absorbed_fraction``, ``electron_energy_MeV``, ``photon_energy_MeV``, ``mass_kg``
    and ``model``.
    """
    if not (np.isfinite(mass_kg) and MIN_BODY_MASS_KG <= mass_kg <= MAX_BODY_MASS_KG):
        raise ValueError(f"The patient mass must lie between {MIN_BODY_MASS_KG:g} and {MAX_BODY_MASS_KG:g} kg; "
                         f"got {mass_kg} kg.")
    kernel = radial_kernel("soft_tissue")
    mass_g = 1000.0 * float(mass_kg)
    photon_fraction = sphere_s_value(mass_g, 1.0, "soft_tissue", max_mass_g=1000.0 * MAX_BODY_MASS_KG)[
        "photon_absorbed_fraction"]
    electron = kernel.electron_MeV / mass_g * GY_PER_MBQ_H_PER_MEV_PER_G
    photon = photon_fraction * kernel.photon_emitted_MeV / mass_g * GY_PER_MBQ_H_PER_MEV_PER_G
    return {"S_Gy_per_MBq_h": electron + photon, "electron_Gy_per_MBq_h": electron, "photon_Gy_per_MBq_h": photon,
            "photon_absorbed_fraction": photon_fraction, "electron_energy_MeV": kernel.electron_MeV,
            "photon_energy_MeV": kernel.photon_emitted_MeV, "mass_kg": float(mass_kg),
            "model": "electrons absorbed in the body; photons with the absorbed fraction of a soft-tissue sphere "
                     "(1 g/cm3) of the body's mass; activity uniform in the body"}


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
