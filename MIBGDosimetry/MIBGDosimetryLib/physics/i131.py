"""Decay and emission data of 131I.

Constants used throughout the extension:

- Half-life: 8.0252 d, ENSDF evaluation of 131I (NNDC, National Nuclear Data Center, Brookhaven).
  ICRP Publication 107 lists 8.0207 d; the extension uses the more recent ENSDF value everywhere
  (decay correction, time-integrated activity).
- Emission data (energies and yields per decay, beta spectrum): ICRP Publication 107, "Nuclear decay
  data for dosimetric calculations" (2008), read through the ``icrp107-database`` package.

Energies are in MeV, yields in particles per decay, spectra in particles per MeV per decay.
"""

import math

import numpy as np

#: ENSDF (NNDC) 131I half-life 8.0252(6) d, in hours.
HALF_LIFE_H = 8.0252 * 24.0
#: Physical decay constant in 1/h.
DECAY_CONSTANT_PER_H = math.log(2.0) / HALF_LIFE_H

#: ICRP Publication 107 mean energies per decay (MeV) of 131I.
BETA_ENERGY_MEV = 0.181868
CONVERSION_ELECTRON_ENERGY_MEV = 0.009567
AUGER_ELECTRON_ENERGY_MEV = 0.000413
#: All electrons (beta, conversion and Auger) per decay, ICRP Publication 107.
ELECTRON_ENERGY_MEV = BETA_ENERGY_MEV + CONVERSION_ELECTRON_ENERGY_MEV + AUGER_ELECTRON_ENERGY_MEV
#: Gamma and X-ray energy per decay (MeV), ICRP Publication 107.
GAMMA_ENERGY_MEV = 0.381236
XRAY_ENERGY_MEV = 0.001522

#: Main photon lines of 131I as (energy MeV, yield per decay), ICRP Publication 107 (gamma lines and
#: the iodine/xenon K X-rays). The dose calculation uses the complete list from :func:`photon_lines`.
PHOTON_LINES = (
    (0.364489, 0.8170),
    (0.636989, 0.07173),
    (0.284305, 0.06136),
    (0.080185, 0.02623),
    (0.722911, 0.01773),
    (0.503004, 0.00360),
)

_NUCLIDE = "I-131"

#: 1 MeV in joule (CODATA 2018 exact value of the elementary charge).
JOULE_PER_MEV = 1.602176634e-13
#: MeV per g per decay -> mGy per (MBq s): J/kg per Gy, 1000 g/kg, 1e6 decays per MBq s, 1000 mGy/Gy.
MGY_PER_MBQ_S_PER_MEV_PER_G = JOULE_PER_MEV * 1000.0 * 1.0e6 * 1000.0
#: MeV per g per decay -> Gy per (MBq h).
GY_PER_MBQ_H_PER_MEV_PER_G = JOULE_PER_MEV * 1000.0 * 1.0e6 * 3600.0


def decay_factor(hours):
    """Fraction of 131I activity left after ``hours`` (exp(-lambda t), ENSDF half-life)."""
    return np.exp(-DECAY_CONSTANT_PER_H * np.asarray(hours, dtype=float))


def _icrp107(kind):
    from icrp107_database import get_icrp107_spectrum

    data = get_icrp107_spectrum(_NUCLIDE, kind)
    return np.asarray(data["energies"], dtype=float), np.asarray(data["weights"], dtype=float)


def beta_spectrum():
    """ICRP-107 beta spectrum of 131I: (energy_MeV, particles per MeV per decay) on the tabulated grid."""
    return _icrp107("b-spectra")


def conversion_electron_lines():
    """ICRP-107 internal-conversion electron lines: (energy_MeV, yield per decay)."""
    return _icrp107("IE")


def auger_electron_lines():
    """ICRP-107 Auger electron lines: (energy_MeV, yield per decay)."""
    return _icrp107("auger")


def photon_lines():
    """All ICRP-107 gamma and X-ray lines of 131I: (energy_MeV, yield per decay), sorted by energy."""
    gamma_MeV, gamma_yield = _icrp107("gamma")
    xray_MeV, xray_yield = _icrp107("X")
    energy_MeV = np.concatenate([gamma_MeV, xray_MeV])
    yields = np.concatenate([gamma_yield, xray_yield])
    order = np.argsort(energy_MeV)
    return energy_MeV[order], yields[order]
