"""Tissues for the dose calculation and their photon interaction coefficients.

Elemental mass fractions:

- ``water``: H2O (stoichiometric mass fractions, as in the NIST compound database of ``xraylib``).
- ``soft_tissue``: ICRU soft tissue, ICRU Report 44 (1989), "Tissue Substitutes in Radiation Dosimetry
  and Measurement", table 4.
- ``bone``: ICRU cortical bone, ICRU Report 44 (1989), table 4.

Photon cross sections per element come from ``xraylib`` (Schoonjans et al., Spectrochim. Acta B 66
(2011) 776) and are mixed by mass fraction (Bragg additivity). Mean excitation energies for the
electron stopping power are from ICRU Report 37 (1984): water 75.0 eV (used for soft tissue, whose
composition differs from water mainly by carbon replacing oxygen), cortical bone 106.4 eV.

All coefficients are mass coefficients (cm2/g); they scale with density for the same composition.
"""

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class Material:
    """A tissue: name, elemental composition (atomic numbers, mass fractions), nominal density and the
    mean excitation energy used in the electron stopping power."""

    name: str
    atomic_numbers: tuple
    mass_fractions: tuple
    nominal_density_g_cm3: float
    mean_excitation_energy_eV: float


#: Upper end (MeV) of the photon coefficient tables.
MAX_PHOTON_ENERGY_MEV = 0.8

MATERIALS = {
    "water": Material("water", (1, 8), (0.111894, 0.888106), 1.0, 75.0),
    "soft_tissue": Material(
        "soft_tissue", (1, 6, 7, 8, 11, 15, 16, 17, 19),
        # Nominal density 1.04 g/cm3: the soft tissue of the published 131I voxel S-value database
        # (Lanconelli et al., Phys Med Biol 57 (2012) 517-533), so that default kernels compare directly.
        (0.102, 0.143, 0.034, 0.708, 0.002, 0.003, 0.003, 0.002, 0.003), 1.04, 75.0),
    "bone": Material(
        "bone", (1, 6, 7, 8, 11, 12, 15, 16, 20),
        (0.034, 0.155, 0.042, 0.435, 0.001, 0.002, 0.103, 0.003, 0.225), 1.92, 106.4),
}


def get_material(name):
    """The :class:`Material` called ``name`` (one of ``MATERIALS``); ValueError for unknown names."""
    if name not in MATERIALS:
        raise ValueError(f"Unknown tissue '{name}'. Choose one of: {', '.join(sorted(MATERIALS))}.")
    return MATERIALS[name]


def atomic_weights(material):
    """Standard atomic weights (g/mol) of the material's elements, from xraylib."""
    import xraylib

    return np.array([xraylib.AtomicWeight(z) for z in material.atomic_numbers])


def _mixed(material, cross_section, energy_keV):
    total = 0.0
    for z, fraction in zip(material.atomic_numbers, material.mass_fractions):
        total += fraction * cross_section(z, energy_keV)
    return total


@functools.lru_cache(maxsize=None)
def photon_coefficient_table(material_name):
    """Mass coefficients (cm2/g) of ``material_name`` on a log-spaced energy grid from 1 keV to 800 keV
    (the range of xraylib's photoelectric data for light elements; 131I emits photons up to 723 keV).

    Returns a dict of arrays: energy_MeV, photoelectric, incoherent (Compton, with binding effects),
    coherent (Rayleigh), total (sum of the three) and energy_absorption (mu_en/rho)."""
    import xraylib

    material = get_material(material_name)
    energy_MeV = np.geomspace(1.0e-3, MAX_PHOTON_ENERGY_MEV, 400)
    table = {"energy_MeV": energy_MeV}
    for key, function in [("photoelectric", xraylib.CS_Photo), ("incoherent", xraylib.CS_Compt),
                          ("coherent", xraylib.CS_Rayl), ("energy_absorption", xraylib.CS_Energy)]:
        table[key] = np.array([_mixed(material, function, 1000.0 * e) for e in energy_MeV])
    table["total"] = table["photoelectric"] + table["incoherent"] + table["coherent"]
    return table


def photon_coefficient_cm2_g(material_name, kind, energy_MeV):
    """Mass coefficient ``kind`` (see :func:`photon_coefficient_table`) at ``energy_MeV`` (1-800 keV),
    interpolated log-log in the xraylib table."""
    table = photon_coefficient_table(material_name)
    energy_MeV = np.asarray(energy_MeV, dtype=float)
    if np.any(energy_MeV < 1.0e-3) or np.any(energy_MeV > MAX_PHOTON_ENERGY_MEV):
        raise ValueError("Photon energies must lie between 1 keV and 800 keV for the 131I calculation.")
    return np.exp(np.interp(np.log(energy_MeV), np.log(table["energy_MeV"]), np.log(table[kind])))
