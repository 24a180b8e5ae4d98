"""Radial energy-deposition kernels of 131I around a point source in an infinite tissue.

A :class:`RadialKernel` holds, per decay, the energy deposited within a sphere of radius r around a
point source (the cumulative kernel Phi(r), MeV) at unit density, split into

- electrons (ICRP-107 beta spectrum and conversion electrons, :mod:`.electron_transport`),
- energy absorbed on the spot (Auger electrons and X-rays below 5 keV, ICRP-107),
- photons (all ICRP-107 gamma and X-ray lines, :mod:`.photon_transport`): the first interaction
  analytically, everything after it by Monte Carlo.

At density rho the same composition gives Phi_rho(r) = Phi(rho r) (all interaction lengths scale
with 1/rho). The kernels are computed once per tissue with fixed random seeds, kept in memory and in
``~/.cache/mibg-dosimetry`` (or the folder named by the environment variable MIBG_DOSIMETRY_CACHE),
and recomputed whenever the calculation's parameters (``MODEL_VERSION``) change.
"""

import dataclasses
import functools
import os
import pathlib
import tempfile

import numpy as np
from scipy.signal import savgol_filter

from MIBGDosimetryLib.physics import i131
from MIBGDosimetryLib.physics.electron_transport import electron_radial_deposition
from MIBGDosimetryLib.physics.materials import get_material
from MIBGDosimetryLib.physics.photon_transport import (PHOTON_CUTOFF_MEV, first_interaction_terms,
                                                       photon_scatter_deposition)

#: Identifies the calculation below; part of the cache file name.
MODEL_VERSION = "4"
BETA_HISTORIES = 200_000
CONVERSION_ELECTRON_HISTORIES = 50_000
PHOTON_HISTORIES = 1_000_000
SEED = 131
#: Electron shells: 5 micrometre (at unit density) up to 4 mm, beyond the 0.81 MeV CSDA range (3.4 mm).
ELECTRON_SHELL_G_CM2 = 0.0005
ELECTRON_SHELL_COUNT = 800
#: Scattered-photon shells: 0.25 mm up to 5 cm, then 2.5 mm up to 60 cm.
SCATTER_EDGES_NEAR_G_CM2 = np.linspace(0.0, 5.0, 201)
SCATTER_EDGES_FAR_G_CM2 = np.linspace(5.0, 60.0, 221)


@dataclasses.dataclass(frozen=True)
class RadialKernel:
    """Radial energy deposition of 131I per decay at unit density (radii in g/cm2, energies in MeV).

    ``photon_emitted_MeV`` is the energy of the transported photons (lines of 5 keV and more) per decay;
    ``photon_first_MeV`` and ``photon_mu_cm2_g`` give each line's first-interaction deposition and
    attenuation; the shells hold the energy deposited by electrons and by scattered photons."""

    material: str
    electron_edges_g_cm2: np.ndarray
    electron_deposit_MeV: np.ndarray
    local_MeV: float
    photon_emitted_MeV: float
    photon_mu_cm2_g: np.ndarray
    photon_first_MeV: np.ndarray
    scatter_edges_g_cm2: np.ndarray
    scatter_deposit_MeV: np.ndarray

    @property
    def electron_MeV(self):
        """Electron energy per decay in the kernel, including energy absorbed on the spot."""
        return float(self.electron_deposit_MeV.sum() + self.local_MeV)

    @property
    def electron_range_g_cm2(self):
        """Radius beyond which electrons deposit no energy."""
        return float(self.electron_edges_g_cm2[np.nonzero(self.electron_deposit_MeV)[0][-1] + 1])

    @property
    def photon_max_radius_g_cm2(self):
        """Largest radius at which photon deposition is known."""
        return float(self.scatter_edges_g_cm2[-1])

    def electron_cumulative_MeV(self, radius_g_cm2):
        """Electron energy (MeV per decay) deposited within ``radius_g_cm2``, on-the-spot energy included."""
        cumulative = np.concatenate([[0.0], np.cumsum(self.electron_deposit_MeV)])
        return self.local_MeV + np.interp(radius_g_cm2, self.electron_edges_g_cm2, cumulative)

    def photon_cumulative_MeV(self, radius_g_cm2):
        """Photon energy (MeV per decay) deposited within ``radius_g_cm2``."""
        radius = np.asarray(radius_g_cm2, dtype=float)
        first = np.sum(self.photon_first_MeV * -np.expm1(-np.multiply.outer(radius, self.photon_mu_cm2_g)), axis=-1)
        cumulative = np.concatenate([[0.0], np.cumsum(self.scatter_deposit_MeV)])
        return first + np.interp(radius, self.scatter_edges_g_cm2, cumulative)

    def cumulative_MeV(self, radius_g_cm2):
        """All energy (MeV per decay) deposited within ``radius_g_cm2``."""
        return self.electron_cumulative_MeV(radius_g_cm2) + self.photon_cumulative_MeV(radius_g_cm2)

    def photon_density_MeV_per_g_cm2(self, radius_g_cm2):
        """dPhi/dr of the photons: energy per decay deposited per unit radius (smoothed scatter part),
        interpolated in a table with 0.1 mm spacing."""
        table_radius, table_density = self._photon_density_table
        return np.interp(radius_g_cm2, table_radius, table_density)

    @functools.cached_property
    def _photon_density_table(self):
        radius = np.linspace(0.0, self.photon_max_radius_g_cm2, int(round(self.photon_max_radius_g_cm2 / 0.01)) + 1)
        first = np.sum(self.photon_first_MeV * self.photon_mu_cm2_g
                       * np.exp(-np.multiply.outer(radius, self.photon_mu_cm2_g)), axis=-1)
        return radius, first + np.interp(radius, *self._scatter_density)

    @functools.cached_property
    def _scatter_density(self):
        centres, densities = [], []
        edges = self.scatter_edges_g_cm2
        width = np.diff(edges)
        # Smooth each run of equal-width shells separately: a quadratic Savitzky-Golay filter keeps the
        # smooth shape and removes the Monte Carlo noise.
        breaks = np.nonzero(~np.isclose(width[1:], width[:-1]))[0] + 1
        for part in np.split(np.arange(width.size), breaks):
            density = self.scatter_deposit_MeV[part] / width[part]
            centres.append(0.5 * (edges[part] + edges[part + 1]))
            densities.append(savgol_filter(density, 11, 2, mode="interp"))
        return np.concatenate(centres), np.concatenate(densities)


def compute_radial_kernel(material_name):
    """Compute the radial kernel of 131I in ``material_name`` (see :mod:`.electron_transport`,
    :mod:`.photon_transport`); takes some seconds."""
    material = get_material(material_name)
    rng = np.random.default_rng(SEED)
    beta_MeV, beta_density = i131.beta_spectrum()
    beta_cdf = np.concatenate([[0.0], np.cumsum(0.5 * (beta_density[1:] + beta_density[:-1]) * np.diff(beta_MeV))])
    beta_sample = np.interp(rng.uniform(0.0, beta_cdf[-1], BETA_HISTORIES), beta_cdf, beta_MeV)
    # Normalise the beta spectrum to the ICRP-107 mean beta energy per decay.
    beta_weight = np.full(BETA_HISTORIES, i131.BETA_ENERGY_MEV / beta_sample.sum())
    ce_MeV, ce_yield = i131.conversion_electron_lines()
    ce_sample = ce_MeV[rng.choice(ce_MeV.size, CONVERSION_ELECTRON_HISTORIES, p=ce_yield / ce_yield.sum())]
    ce_weight = np.full(CONVERSION_ELECTRON_HISTORIES, ce_yield.sum() / CONVERSION_ELECTRON_HISTORIES)
    electron_deposit = electron_radial_deposition(
        material, np.concatenate([beta_sample, ce_sample]), np.concatenate([beta_weight, ce_weight]),
        ELECTRON_SHELL_G_CM2, ELECTRON_SHELL_COUNT, SEED + 1)
    auger_MeV, auger_yield = i131.auger_electron_lines()
    photon_MeV, photon_yield = i131.photon_lines()
    transported = photon_MeV >= PHOTON_CUTOFF_MEV
    local = float(np.sum(auger_MeV * auger_yield) + np.sum(photon_MeV[~transported] * photon_yield[~transported]))
    mu, first = first_interaction_terms(material_name, photon_MeV[transported], photon_yield[transported])
    scatter_edges = np.concatenate([SCATTER_EDGES_NEAR_G_CM2, SCATTER_EDGES_FAR_G_CM2[1:]])
    scatter = photon_scatter_deposition(material_name, photon_MeV[transported], photon_yield[transported],
                                        scatter_edges, PHOTON_HISTORIES, SEED + 2)
    emitted = float(np.sum(photon_MeV[transported] * photon_yield[transported]))
    electron_edges = ELECTRON_SHELL_G_CM2 * np.arange(ELECTRON_SHELL_COUNT + 1)
    return RadialKernel(material_name, electron_edges, electron_deposit, local, emitted, mu, first,
                        scatter_edges, scatter)


def cache_folder():
    """Folder of the radial-kernel cache files."""
    configured = os.environ.get("MIBG_DOSIMETRY_CACHE")
    return pathlib.Path(configured) if configured else pathlib.Path.home() / ".cache" / "mibg-dosimetry"


def cache_file(material_name):
    """Cache file of the radial kernel of ``material_name`` for this ``MODEL_VERSION``."""
    return cache_folder() / f"i131-radial-kernel-{material_name}-v{MODEL_VERSION}.npz"


_ARRAYS = ("electron_edges_g_cm2", "electron_deposit_MeV", "photon_mu_cm2_g", "photon_first_MeV",
           "scatter_edges_g_cm2", "scatter_deposit_MeV")


def _save(kernel, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(handle)
    try:
        np.savez(temporary, local_MeV=kernel.local_MeV, photon_emitted_MeV=kernel.photon_emitted_MeV,
                 **{name: getattr(kernel, name) for name in _ARRAYS})
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _load(material_name, path):
    with np.load(path) as data:
        return RadialKernel(material_name, local_MeV=float(data["local_MeV"]),
                            photon_emitted_MeV=float(data["photon_emitted_MeV"]),
                            **{name: data[name].copy() for name in _ARRAYS})


@functools.lru_cache(maxsize=None)
def radial_kernel(material_name="soft_tissue"):
    """The radial kernel of 131I in ``material_name``: from memory, else from the cache file, else
    computed and written to the cache file (an unreadable cache file is recomputed)."""
    get_material(material_name)
    path = cache_file(material_name)
    if path.is_file():
        try:
            return _load(material_name, path)
        except (OSError, KeyError, ValueError):
            pass
    kernel = compute_radial_kernel(material_name)
    try:
        _save(kernel, path)
    except OSError:
        # A read-only home folder only costs the recomputation next time.
        pass
    return kernel
