"""Radial energy deposition of photons around a point source in an infinite homogeneous medium.

Method: our own photon transport, deterministic for the first interaction and Monte Carlo for
everything after it (which gives attenuation and build-up from first principles):

- Interaction coefficients: photoelectric and incoherent (Compton) mass coefficients of the tissue from
  ``xraylib`` (:mod:`.materials`). Coherent (Rayleigh) scattering is left out of the transport: it
  transfers no energy and deflects 131I photons by a few degrees only (it is 0.3 % of the attenuation
  of water at 364 keV).
- Compton scattering samples the Klein-Nishina cross section (free electrons; Kahn's method as in
  EGS4, Nelson et al., SLAC-265 (1985)). The photoelectric effect absorbs the photon; fluorescence of
  the light elements of tissue (below 4 keV) is absorbed on the spot.
- Energy transferred to electrons is deposited at the interaction point (their ranges are below
  2.5 mm, short against the photon paths); photons below 5 keV are absorbed where they are.
- First interactions are scored analytically: a line of energy E and attenuation mu deposits
  (mu_pe E + mu_C <T>_KN) exp(-mu r) dr in the shell (r, r + dr), <T>_KN being the Klein-Nishina mean
  energy transfer. The Monte Carlo follows the photons scattered at the first interaction and scores
  only later depositions, which removes the statistical noise near the source.

Lengths are mass thicknesses (g/cm2), i.e. centimetres at unit density.
"""

import numpy as np

from MIBGDosimetryLib import compat
from MIBGDosimetryLib.physics.electron_transport import (ELECTRON_REST_ENERGY_MEV, _LogGrid, _rotate,
                                                         isotropic_directions)
from MIBGDosimetryLib.physics.materials import MAX_PHOTON_ENERGY_MEV, photon_coefficient_cm2_g

#: Photons below this energy (MeV) are absorbed locally.
PHOTON_CUTOFF_MEV = 0.005


def klein_nishina_mean_transfer_fraction(energy_MeV):
    """Mean fraction of the photon energy given to the electron in a Klein-Nishina Compton scattering."""
    k = np.atleast_1d(np.asarray(energy_MeV, dtype=float)) / ELECTRON_REST_ENERGY_MEV
    cos_theta = np.linspace(-1.0, 1.0, 4001)
    ratio = 1.0 / (1.0 + k[:, None] * (1.0 - cos_theta[None, :]))
    differential = ratio ** 2 * (ratio + 1.0 / ratio - (1.0 - cos_theta[None, :] ** 2))
    sigma = compat.trapezoid(differential, cos_theta, axis=1)
    transfer = compat.trapezoid(differential * (1.0 - ratio), cos_theta, axis=1)
    return transfer / sigma


def sample_klein_nishina(rng, energy_MeV):
    """Scattered photon energy fraction epsilon = E'/E and cos(theta), sampled from Klein-Nishina."""
    k = energy_MeV / ELECTRON_REST_ENERGY_MEV
    eps0 = 1.0 / (1.0 + 2.0 * k)
    alpha1 = np.log(1.0 / eps0)
    alpha2 = 0.5 * (1.0 - eps0 ** 2)
    epsilon = np.empty_like(energy_MeV)
    cos_theta = np.empty_like(energy_MeV)
    todo = np.arange(energy_MeV.size)
    while todo.size:
        a1, a2, e0, kk = alpha1[todo], alpha2[todo], eps0[todo], k[todo]
        r1, r2, r3 = rng.uniform(size=(3, todo.size))
        eps = np.where(r1 < a1 / (a1 + a2), np.exp(-a1 * r2), np.sqrt(e0 ** 2 + (1.0 - e0 ** 2) * r2))
        t = (1.0 - eps) / (kk * eps)
        sin2 = np.clip(t * (2.0 - t), 0.0, 1.0)
        accept = r3 < 1.0 - eps * sin2 / (1.0 + eps ** 2)
        epsilon[todo[accept]] = eps[accept]
        cos_theta[todo[accept]] = 1.0 - t[accept]
        todo = todo[~accept]
    return epsilon, cos_theta


def first_interaction_terms(material_name, energy_MeV, yield_per_decay):
    """Per line: attenuation coefficient mu (cm2/g, photoelectric + Compton) and the mean energy (MeV per
    decay) deposited at the first interaction, yield x (mu_pe E + mu_C <T>) / mu."""
    photo = photon_coefficient_cm2_g(material_name, "photoelectric", energy_MeV)
    compton = photon_coefficient_cm2_g(material_name, "incoherent", energy_MeV)
    mu = photo + compton
    mean_deposit = (photo * energy_MeV + compton * energy_MeV * klein_nishina_mean_transfer_fraction(energy_MeV)) / mu
    return mu, yield_per_decay * mean_deposit


def photon_scatter_deposition(material_name, energy_MeV, yield_per_decay, edges_g_cm2, photon_count, seed):
    """Energy (MeV per decay) deposited in each shell between ``edges_g_cm2`` after the first interaction
    of photons of the given lines emitted at the origin. Energy deposited beyond the last edge is not
    scored (it is lost to the kernel)."""
    rng = np.random.default_rng(seed)
    energy_MeV = np.asarray(energy_MeV, dtype=float)
    yield_per_decay = np.asarray(yield_per_decay, dtype=float)
    line = rng.choice(energy_MeV.size, size=photon_count, p=yield_per_decay / yield_per_decay.sum())
    weight = yield_per_decay.sum() / photon_count
    energy = energy_MeV[line]
    deposit = np.zeros(len(edges_g_cm2) - 1)
    r_max = edges_g_cm2[-1]

    grid = _LogGrid(PHOTON_CUTOFF_MEV, MAX_PHOTON_ENERGY_MEV, 2000)
    photo_table = photon_coefficient_cm2_g(material_name, "photoelectric", grid.x)
    compton_table = photon_coefficient_cm2_g(material_name, "incoherent", grid.x)

    def coefficients(e):
        located = grid.locate(e)
        return grid.value(photo_table, located), grid.value(compton_table, located)

    def score(where, energy_deposit):
        radius = np.sqrt(np.einsum("ij,ij->i", where, where))
        inside = radius < r_max
        index = np.searchsorted(edges_g_cm2, radius[inside], side="right") - 1
        deposit[:] += np.bincount(index, weights=energy_deposit[inside] * weight, minlength=deposit.size)

    photo, compton = coefficients(energy)
    direction = isotropic_directions(rng, photon_count)
    position = direction * rng.exponential(1.0 / (photo + compton))[:, None]
    scattered = rng.uniform(size=photon_count) * (photo + compton) >= photo
    energy, position, direction = energy[scattered], position[scattered], direction[scattered]
    epsilon, cos_theta = sample_klein_nishina(rng, energy)
    energy = energy * epsilon
    direction = _rotate(direction, cos_theta, rng.uniform(0.0, 2.0 * np.pi, energy.size))
    while energy.size:
        low = energy < PHOTON_CUTOFF_MEV
        score(position[low], energy[low])
        keep = ~low & (np.einsum("ij,ij->i", position, position) < r_max ** 2)
        energy, position, direction = energy[keep], position[keep], direction[keep]
        if not energy.size:
            break
        photo, compton = coefficients(energy)
        position = position + direction * rng.exponential(1.0 / (photo + compton))[:, None]
        absorbed = rng.uniform(size=energy.size) * (photo + compton) < photo
        score(position[absorbed], energy[absorbed])
        keep = ~absorbed
        energy, position, direction = energy[keep], position[keep], direction[keep]
        epsilon, cos_theta = sample_klein_nishina(rng, energy)
        score(position, energy * (1.0 - epsilon))
        energy = energy * epsilon
        direction = _rotate(direction, cos_theta, rng.uniform(0.0, 2.0 * np.pi, energy.size))
    return deposit
