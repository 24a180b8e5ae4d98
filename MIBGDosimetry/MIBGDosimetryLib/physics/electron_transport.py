"""Radial energy deposition of electrons around a point source in an infinite homogeneous medium.

Method: a condensed-history Monte Carlo of our own, vectorised over all electrons.

- Energy loss (class II condensed history): collisions transferring more than the cut-off energy are
  sampled one by one from the Moller cross section and their knock-on electrons are followed; smaller
  losses are continuous, with the restricted Bethe collision stopping power (ICRU Report 37 (1984)
  eq. 2.2 and its restricted form). No density-effect correction (below 1 MeV it lowers water's
  stopping power by less than 1.5 %) and no radiative loss (under 0.5 % of the stopping power below
  1 MeV in water; that energy is deposited along the track instead). Step lengths are exact path
  lengths of the continuous loss between the step's energies, each step losing a fixed fraction of the
  kinetic energy.
- Angular deflection: the transport cross section of the screened Rutherford cross section with
  Moliere's screening parameter (Bethe, Phys. Rev. 89 (1953) 1256) and the first-order Mott correction
  for light nuclei (McKinley and Feshbach 1948), Z(Z+1) to include scattering on atomic electrons.
  Over a step s the mean of (1 - cos theta) is 1 - exp(-s/lambda_1) (Goudsmit-Saunderson); the
  deflection is sampled from a Wentzel-shaped distribution with that first moment.
- Spatial displacement: the "random hinge" (the deflection happens at a uniformly sampled point of the
  step, where the step's energy is deposited), which gives correct spatial moments for small steps.
- Electrons below the cut-off energy deposit their remaining energy where they stop (CSDA range of
  10 keV in water: 2.5 micrometres).

Lengths are mass thicknesses (g/cm2), i.e. centimetres at unit density; the radial distribution at
density rho follows by scaling the radius with 1/rho.
"""

import numpy as np

from MIBGDosimetryLib import compat
from MIBGDosimetryLib.physics.materials import atomic_weights

#: Electron rest energy (MeV), CODATA 2018.
ELECTRON_REST_ENERGY_MEV = 0.51099895
#: Classical electron radius (cm), CODATA 2018.
CLASSICAL_ELECTRON_RADIUS_CM = 2.8179403262e-13
#: Avogadro constant (1/mol), SI 2019 exact.
AVOGADRO_PER_MOL = 6.02214076e23
#: Fine-structure constant, CODATA 2018.
FINE_STRUCTURE = 7.2973525693e-3

#: Cut-off kinetic energy below which electrons deposit locally, and threshold of the Moller collisions (MeV).
CUTOFF_ENERGY_MEV = 0.010
#: Fractional kinetic-energy loss per condensed-history step.
STEP_ENERGY_FRACTION = 0.04


def _electrons_per_g(material):
    return AVOGADRO_PER_MOL * float(np.sum(np.array(material.mass_fractions) * np.array(material.atomic_numbers)
                                           / atomic_weights(material)))


def collision_stopping_power_MeV_cm2_g(material, energy_MeV, restriction_MeV=None):
    """Bethe mass collision stopping power of electrons (ICRU Report 37 eq. 2.2, delta = 0).

    With ``restriction_MeV`` the restricted stopping power for energy transfers below that value
    (the same formula with the Moller function F-(tau, Delta), Nelson et al., SLAC-265 (1985) eq. 2.13.16);
    it equals the unrestricted one for Delta = T/2."""
    energy_MeV = np.asarray(energy_MeV, dtype=float)
    tau = energy_MeV / ELECTRON_REST_ENERGY_MEV
    beta2 = tau * (tau + 2.0) / (tau + 1.0) ** 2
    excitation = material.mean_excitation_energy_eV * 1.0e-6 / ELECTRON_REST_ENERGY_MEV
    if restriction_MeV is None:
        delta = 0.5 * tau
    else:
        delta = np.minimum(restriction_MeV / ELECTRON_REST_ENERGY_MEV, 0.5 * tau)
    f_minus = (-1.0 - beta2 + np.log((tau - delta) * delta) + tau / (tau - delta)
               + (0.5 * delta ** 2 + (2.0 * tau + 1.0) * np.log1p(-delta / tau)) / (tau + 1.0) ** 2)
    prefactor = 2.0 * np.pi * CLASSICAL_ELECTRON_RADIUS_CM ** 2 * ELECTRON_REST_ENERGY_MEV * _electrons_per_g(material)
    return prefactor / beta2 * (np.log(2.0 * (tau + 2.0) / excitation ** 2) + f_minus)


def _moller_shape(energy_MeV, transfer_MeV):
    """Moller cross section per unit energy transfer W times W^2 (dimensionless, at most 2.25)."""
    tau = energy_MeV / ELECTRON_REST_ENERGY_MEV
    ratio = transfer_MeV / (energy_MeV - transfer_MeV)
    return (1.0 + ratio ** 2 + (tau / (tau + 1.0)) ** 2 * (transfer_MeV / energy_MeV) ** 2
            - (2.0 * tau + 1.0) / (tau + 1.0) ** 2 * ratio)


def moller_cross_section_cm2_g(material, energy_MeV, threshold_MeV):
    """Macroscopic Moller cross section (1/(g/cm2)) for energy transfers from ``threshold_MeV`` to T/2
    (Moller, Ann. Phys. 14 (1932) 531; form of SLAC-265 eq. 2.7.1), by numerical quadrature."""
    energy_MeV = np.atleast_1d(np.asarray(energy_MeV, dtype=float))
    tau = energy_MeV / ELECTRON_REST_ENERGY_MEV
    beta2 = tau * (tau + 2.0) / (tau + 1.0) ** 2
    fraction = np.linspace(0.0, 1.0, 201)
    result = np.zeros_like(energy_MeV)
    possible = energy_MeV > 2.0 * threshold_MeV
    e = energy_MeV[possible, None]
    # Quadrature in x = 1/W, where the 1/W^2 of the cross section becomes flat.
    x = 1.0 / threshold_MeV + fraction[None, :] * (2.0 / e - 1.0 / threshold_MeV)
    integrand = _moller_shape(e, 1.0 / x)
    result[possible] = compat.trapezoid(integrand, x, axis=1) * -1.0
    return (2.0 * np.pi * CLASSICAL_ELECTRON_RADIUS_CM ** 2 * ELECTRON_REST_ENERGY_MEV * _electrons_per_g(material)
            / beta2 * result)


def sample_moller_transfer(rng, energy_MeV, threshold_MeV):
    """Energy transfers W (MeV) in [threshold, T/2] sampled from the Moller cross section (1/W^2 proposal
    and rejection on the bounded remainder)."""
    transfer = np.empty_like(energy_MeV)
    todo = np.arange(energy_MeV.size)
    while todo.size:
        e = energy_MeV[todo]
        u = rng.uniform(size=todo.size)
        w = 1.0 / (1.0 / threshold_MeV - u * (1.0 / threshold_MeV - 2.0 / e))
        accept = 2.25 * rng.uniform(size=todo.size) < _moller_shape(e, w)
        transfer[todo[accept]] = w[accept]
        todo = todo[~accept]
    return transfer


def transport_cross_section_cm2_g(material, energy_MeV):
    """First transport macroscopic cross section 1/lambda_1 (cm2/g) of the screened Rutherford
    cross section with Moliere screening, summed over the elements of ``material``."""
    energy_MeV = np.asarray(energy_MeV, dtype=float)
    tau = energy_MeV / ELECTRON_REST_ENERGY_MEV
    beta2 = tau * (tau + 2.0) / (tau + 1.0) ** 2
    pc_MeV = np.sqrt(energy_MeV * (energy_MeV + 2.0 * ELECTRON_REST_ENERGY_MEV))
    pv_MeV = pc_MeV * np.sqrt(beta2)
    total = np.zeros_like(energy_MeV)
    weights = atomic_weights(material)
    for z, fraction, a in zip(material.atomic_numbers, material.mass_fractions, weights):
        atoms_per_g = AVOGADRO_PER_MOL * fraction / a
        # Moliere screening angle: (hbar / (p a_TF))^2 with a_TF = 0.885 a0 Z^(-1/3), corrected for
        # the Coulomb field (1.13 + 3.76 (alpha Z / beta)^2).
        screening = 0.25 * (FINE_STRUCTURE * z ** (1.0 / 3.0) * ELECTRON_REST_ENERGY_MEV / (0.885 * pc_MeV)) ** 2 \
            * (1.13 + 3.76 * (FINE_STRUCTURE * z) ** 2 / beta2)
        rutherford = 2.0 * np.pi * z * (z + 1.0) * (CLASSICAL_ELECTRON_RADIUS_CM * ELECTRON_REST_ENERGY_MEV / pv_MeV) ** 2
        # The first-order Mott factor (1 - beta^2 w / 2) (McKinley and Feshbach, Phys. Rev. 74 (1948) 1759)
        # integrated with the weight w^2: spin and relativity lower large-angle scattering on light nuclei.
        mott = 0.5 * beta2 * (2.0 - 4.0 * screening * np.log1p(1.0 / screening) + 2.0 * screening
                              - 2.0 * screening ** 2 / (1.0 + screening))
        total += atoms_per_g * rutherford * (np.log1p(1.0 / screening) - 1.0 / (1.0 + screening) - mott)
    return total


class _LogGrid:
    """Linear interpolation of tables on a uniform grid of log(x): faster than a bisection search."""

    def __init__(self, x_min, x_max, count):
        self.log_min = np.log(x_min)
        self.log_step = (np.log(x_max) - self.log_min) / (count - 1)
        self.count = count
        self.x = np.exp(self.log_min + self.log_step * np.arange(count))

    def locate(self, x):
        """Cell indices and fractions of ``x`` (clamped to the grid)."""
        position = np.clip((np.log(x) - self.log_min) / self.log_step, 0.0, self.count - 1.000001)
        index = position.astype(np.intp)
        return index, position - index

    @staticmethod
    def value(table, located):
        index, fraction = located
        low = table[index]
        return low + fraction * (table[index + 1] - low)


def _wentzel_screening_grid():
    """Grid of the mean of w = 1 - cos theta and the screening parameter A of p(w) ~ 1/(w + 2A)^2 with
    that mean, <w> = 2A(1+A)(ln(1 + 1/A) - 1/(1+A))."""
    screening = np.geomspace(1.0e-14, 1.0e4, 4000)
    mean_w = 2.0 * screening * (1.0 + screening) * (np.log1p(1.0 / screening) - 1.0 / (1.0 + screening))
    grid = _LogGrid(1.0e-12, 0.999, 2000)
    return grid, np.exp(np.interp(np.log(grid.x), np.log(mean_w), np.log(screening)))


def _rotate(direction, cos_theta, phi):
    """Directions deflected by polar angle theta and azimuth phi from ``direction`` (n, 3)."""
    u, v, w = direction[:, 0], direction[:, 1], direction[:, 2]
    sin_theta = np.sqrt(np.maximum(1.0 - cos_theta ** 2, 0.0))
    a = sin_theta * np.cos(phi)
    b = sin_theta * np.sin(phi)
    rho = np.sqrt(np.maximum(1.0 - w ** 2, 0.0))
    polar = rho < 1.0e-8
    inverse_rho = 1.0 / np.where(polar, 1.0, rho)
    out = np.empty_like(direction)
    out[:, 0] = u * cos_theta + (u * w * a - v * b) * inverse_rho
    out[:, 1] = v * cos_theta + (v * w * a + u * b) * inverse_rho
    out[:, 2] = w * cos_theta - rho * a
    if np.any(polar):
        # Along the z axis the azimuth is measured from x.
        out[polar, 0] = a[polar]
        out[polar, 1] = b[polar]
        out[polar, 2] = np.sign(w[polar]) * cos_theta[polar]
    out /= np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
    return out


def isotropic_directions(rng, count):
    """``count`` unit vectors uniformly distributed over the sphere."""
    cos_theta = rng.uniform(-1.0, 1.0, count)
    phi = rng.uniform(0.0, 2.0 * np.pi, count)
    sin_theta = np.sqrt(1.0 - cos_theta ** 2)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def electron_radial_deposition(material, energy_MeV, weight, shell_g_cm2, shell_count, seed):
    """Energy (MeV) deposited in each of ``shell_count`` spherical shells of thickness ``shell_g_cm2``
    around the origin by electrons started there with kinetic energies ``energy_MeV`` and statistical
    weights ``weight`` (per decay).

    Energy deposited beyond the last shell is added to it (it does not occur for 131I when the shells
    extend beyond the CSDA range of the most energetic electron)."""
    rng = np.random.default_rng(seed)
    grid = _LogGrid(1.0e-3, 2.0, 1200)
    inverse_stopping = 1.0 / collision_stopping_power_MeV_cm2_g(material, grid.x, CUTOFF_ENERGY_MEV)
    range_g_cm2 = np.concatenate([[0.0], np.cumsum(0.5 * (inverse_stopping[1:] + inverse_stopping[:-1])
                                                   * np.diff(grid.x))])
    transport_table = transport_cross_section_cm2_g(material, grid.x)
    moller_table = moller_cross_section_cm2_g(material, grid.x, CUTOFF_ENERGY_MEV)
    screening_grid, screening_table = _wentzel_screening_grid()

    energy = np.asarray(energy_MeV, dtype=float).copy()
    weight = np.asarray(weight, dtype=float).copy()
    position = np.zeros((energy.size, 3))
    direction = isotropic_directions(rng, energy.size)
    deposit = np.zeros(shell_count)

    def score(where, energy_deposit, particle_weight):
        radius = np.sqrt(np.einsum("ij,ij->i", where, where))
        index = np.minimum((radius / shell_g_cm2).astype(np.intp), shell_count - 1)
        deposit[:] += np.bincount(index, weights=energy_deposit * particle_weight, minlength=shell_count)

    below = energy <= CUTOFF_ENERGY_MEV
    score(position[below], energy[below], weight[below])
    alive = ~below
    energy, weight, position, direction = energy[alive], weight[alive], position[alive], direction[alive]
    while energy.size:
        # The last step ends exactly at the cut-off; the rest is deposited at the end of the track.
        next_energy = np.maximum(energy * (1.0 - STEP_ENERGY_FRACTION), CUTOFF_ENERGY_MEV)
        step = grid.value(range_g_cm2, grid.locate(energy)) - grid.value(range_g_cm2, grid.locate(next_energy))
        at_mid = grid.locate(0.5 * (energy + next_energy))
        mean_w = np.clip(-np.expm1(-step * grid.value(transport_table, at_mid)), 1.0e-12, 0.999)
        screening = grid.value(screening_table, screening_grid.locate(mean_w))
        hinge = rng.uniform(size=energy.size)
        position += (hinge * step)[:, None] * direction
        score(position, energy - next_energy, weight)
        # At most one hard collision per step (its probability stays below 0.15 for these steps): the
        # knock-on electron starts at the hinge, the primary loses its energy.
        moller = grid.value(moller_table, at_mid)
        hard = ((rng.uniform(size=energy.size) < -np.expm1(-step * moller))
                & (next_energy > 2.0 * CUTOFF_ENERGY_MEV))
        transfer = sample_moller_transfer(rng, next_energy[hard], CUTOFF_ENERGY_MEV)
        primary = next_energy[hard]
        cos_delta = np.sqrt(transfer * (primary + 2.0 * ELECTRON_REST_ENERGY_MEV)
                            / (primary * (transfer + 2.0 * ELECTRON_REST_ENERGY_MEV)))
        knock_on_direction = _rotate(direction[hard], cos_delta, rng.uniform(0.0, 2.0 * np.pi, transfer.size))
        knock_on_position = position[hard]
        knock_on_weight = weight[hard]
        next_energy[hard] -= transfer
        u = rng.uniform(size=energy.size)
        w = 2.0 * screening * u / (1.0 + screening - u)
        direction = _rotate(direction, 1.0 - w, rng.uniform(0.0, 2.0 * np.pi, energy.size))
        position += ((1.0 - hinge) * step)[:, None] * direction
        energy = next_energy
        stopped = energy <= CUTOFF_ENERGY_MEV
        if np.any(stopped):
            score(position[stopped], energy[stopped], weight[stopped])
            keep = ~stopped
            energy, weight, position, direction = energy[keep], weight[keep], position[keep], direction[keep]
        energy = np.concatenate([energy, transfer])
        weight = np.concatenate([weight, knock_on_weight])
        position = np.concatenate([position, knock_on_position])
        direction = np.concatenate([direction, knock_on_direction])
    return deposit
