"""Recovery coefficients of fillable inserts and the recovery curve over volume (EANM eq. 5).

For each insert i of known volume and activity, with a VOI of the voxels inside a sphere of the true
volume,

    R_i = C_i / (Q A_i)                                                  (EANM eq. 5)

C_i being the count rate in the VOI and A_i the decay-corrected activity in the insert. The
coefficients are summarised by a saturating curve over volume

    R(V) = R_max / (1 + (V_0 / V)^n)

fitted by weighted least squares; its parameter covariance gives the uncertainty of R at any V.
"""

import dataclasses

import numpy as np
from scipy import optimize

from MIBGCalibrationLib import voi

#: Fewest inserts from which a three-parameter curve and its uncertainty can be fitted.
MIN_INSERTS = 4

#: Centre refinement stops after this many steps; an insert found further than half its radius plus
#: one voxel from its recorded centre keeps the recorded centre (and a warning).
CENTRE_ITERATIONS = 6


@dataclasses.dataclass
class InsertRecovery:
    """Recovery of one insert."""

    name: str
    volume_ml: float
    activity_MBq: float
    count_rate_cps: float
    recovery: float
    recovery_uncertainty: float
    centre_ras_mm: np.ndarray
    centre_shift_mm: float
    voi_volume_ml: float = None
    warnings: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {"name": self.name, "volume_ml": self.volume_ml, "voi_volume_ml": self.voi_volume_ml,
                "activity_MBq": self.activity_MBq,
                "count_rate_cps": self.count_rate_cps, "recovery": self.recovery,
                "recovery_uncertainty": self.recovery_uncertainty,
                "centre_ras_mm": [float(c) for c in self.centre_ras_mm], "centre_shift_mm": self.centre_shift_mm,
                "warnings": list(self.warnings)}


def refine_centre(spect, centre_ras_mm, radius_mm):
    """Centre of the hot object near ``centre_ras_mm``, iterated: the centroid of the image above the
    local background (median of a two-voxel shell) within the sphere of ``radius_mm`` plus two voxels.

    Weighting every voxel of the object by its excess over the background, rather than only its
    hottest voxels, keeps the centre steady on noisy images of small inserts.
    """
    centre = np.asarray(centre_ras_mm, dtype=float)
    values = np.asarray(spect.array, dtype=float)
    voxel_mm = max(spect.spacing_mm)
    k, j, i = np.indices(values.shape)
    for _ in range(CENTRE_ITERATIONS):
        region = voi.sphere_weights(spect, centre, radius_mm + 2.0 * voxel_mm, subsamples=1) > 0
        shell = (voi.sphere_weights(spect, centre, radius_mm + 4.0 * voxel_mm, subsamples=1) > 0) & ~region
        if not region.any() or not shell.any():
            break
        weights = np.where(region, np.clip(values - np.median(values[shell]), 0.0, None), 0.0)
        total = weights.sum()
        if total <= 0:
            break
        ijk = np.array([(weights * i).sum(), (weights * j).sum(), (weights * k).sum()]) / total
        new = spect.ras_of_ijk(ijk)
        moved = np.linalg.norm(new - centre)
        centre = new
        if moved < 0.01 * min(spect.spacing_mm):
            break
    return centre


def insert_recovery(spect, duration_s, q_cps_per_MBq, name, centre_ras_mm, volume_ml, concentration_MBq_per_ml,
                    refine=True, dead_time_factor=1.0):
    """Recovery coefficient of one spherical insert (EANM eq. 5).

    The VOI is made of the voxels whose centres lie in a sphere of the insert's true volume, as a
    segmentation of a lesion is, so that the recovery applies to patient VOIs made the same way; the
    recovery relates the count rate in it to the insert's true activity (``concentration_MBq_per_ml``
    at the scan times the true volume). The sphere is centred on the recorded centre, or on the centre
    found on the image when ``refine`` is set and the two differ by more than a quarter voxel (a
    smaller shift is within what noise moves the found centre). ``dead_time_factor`` (EANM eq. 7)
    restores the counts lost to dead time during the scan. The uncertainty returned combines counting
    statistics with the voxelisation of the VOI (its volume differs from the true volume by a
    fraction that depends on where the centre falls on the voxel grid); the common uncertainty of Q
    enters the recovery curve separately.
    """
    if volume_ml <= 0 or concentration_MBq_per_ml <= 0:
        raise ValueError(f"Insert '{name}': volume and activity concentration must be positive.")
    radius_mm = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    nominal = np.asarray(centre_ras_mm, dtype=float)
    warnings = []
    centre = nominal
    if refine:
        found = refine_centre(spect, nominal, radius_mm)
        shift = np.linalg.norm(found - nominal)
        if shift > 0.5 * radius_mm + max(spect.spacing_mm):
            warnings.append(f"Insert '{name}' was not found near its recorded centre; the recorded centre is used.")
        elif shift > 0.25 * min(spect.spacing_mm):
            centre = found
    if voi.sphere_weights(spect, centre, radius_mm).sum() * spect.voxel_volume_ml < 0.99 * volume_ml:
        raise ValueError(f"Insert '{name}' lies (partly) outside the reconstructed image.")
    mask = voi.sphere_weights(spect, centre, radius_mm, subsamples=1) > 0
    counts = float(np.asarray(spect.array, dtype=float)[mask].sum())
    if counts <= 0:
        raise ValueError(f"The VOI of insert '{name}' holds no counts; check its centre and the sphere series.")
    rate = counts / duration_s * dead_time_factor
    activity = concentration_MBq_per_ml * volume_ml
    recovery = rate / (q_cps_per_MBq * activity)
    voi_ml = float(mask.sum()) * spect.voxel_volume_ml
    uncertainty = recovery * np.hypot(1.0 / np.sqrt(counts), (voi_ml - volume_ml) / volume_ml)
    return InsertRecovery(name, float(volume_ml), float(activity), rate, float(recovery), float(uncertainty), centre,
                          float(np.linalg.norm(centre - nominal)), voi_ml, warnings)


def _curve(volume_ml, r_max, v0_ml, n):
    return r_max / (1.0 + (v0_ml / volume_ml) ** n)


@dataclasses.dataclass
class RecoveryCurve:
    """R(V) = r_max / (1 + (v0_ml / V)^n) with parameter covariance; ``q_relative_uncertainty`` is the
    relative uncertainty of Q, common to every recovery coefficient."""

    r_max: float
    v0_ml: float
    n: float
    covariance: list
    q_relative_uncertainty: float = 0.0

    def evaluate(self, volume_ml):
        """(R, uncertainty of R) at ``volume_ml`` (number or array, mL)."""
        volume = np.asarray(volume_ml, dtype=float)
        if np.any(volume <= 0):
            raise ValueError(f"A recovery coefficient needs a positive volume, got {volume_ml} mL.")
        value = _curve(volume, self.r_max, self.v0_ml, self.n)
        ratio = (self.v0_ml / volume) ** self.n
        denominator = 1.0 + ratio
        gradient = np.stack([1.0 / denominator,
                             -self.r_max * self.n * ratio / self.v0_ml / denominator ** 2,
                             -self.r_max * ratio * np.log(self.v0_ml / volume) / denominator ** 2])
        covariance = np.asarray(self.covariance, dtype=float)
        variance = np.einsum("i...,ij,j...->...", gradient, covariance, gradient)
        uncertainty = np.sqrt(np.clip(variance, 0.0, None) + (value * self.q_relative_uncertainty) ** 2)
        if np.ndim(value) == 0:
            return float(value), float(uncertainty)
        return value, uncertainty

    def to_dict(self):
        return {"model": "R_max / (1 + (V0_ml / V_ml)^n)", "r_max": self.r_max, "v0_ml": self.v0_ml, "n": self.n,
                "covariance": [[float(c) for c in row] for row in self.covariance],
                "q_relative_uncertainty": self.q_relative_uncertainty}

    @classmethod
    def from_dict(cls, data):
        expected = {"model", "r_max", "v0_ml", "n", "covariance", "q_relative_uncertainty"}
        if set(data) != expected:
            raise ValueError(f"Recovery curve fields {sorted(data)} differ from the expected {sorted(expected)}.")
        return cls(float(data["r_max"]), float(data["v0_ml"]), float(data["n"]),
                   [[float(c) for c in row] for row in data["covariance"]], float(data["q_relative_uncertainty"]))


def fit_recovery_curve(volume_ml, recovery, recovery_uncertainty, q_relative_uncertainty=0.0):
    """Weighted least-squares fit of R(V) = R_max / (1 + (V0/V)^n) to per-insert recovery coefficients.

    The weights are the per-insert (counting) uncertainties; the covariance is scaled by the residuals,
    so that the fitted uncertainty also covers the scatter of the points about the model.
    """
    volume = np.asarray(volume_ml, dtype=float)
    values = np.asarray(recovery, dtype=float)
    sigma = np.asarray(recovery_uncertainty, dtype=float)
    if volume.size < MIN_INSERTS:
        raise ValueError(f"At least {MIN_INSERTS} inserts of different volume are needed to fit the recovery curve, "
                         f"got {volume.size}.")
    if np.unique(volume).size < MIN_INSERTS:
        raise ValueError(f"The recovery curve needs at least {MIN_INSERTS} different insert volumes.")
    if np.any(volume <= 0) or np.any(values <= 0):
        raise ValueError("Insert volumes and recovery coefficients must be positive.")
    # A floor on the weights keeps nearly noise-free points from dominating the fit completely.
    sigma = np.maximum(sigma, 1e-3 * values)
    order = np.argsort(volume)
    half = 0.5 * values.max()
    v0_start = float(np.interp(half, values[order], volume[order])) if values.min() < half else float(volume.min())
    try:
        params, covariance = optimize.curve_fit(
            _curve, volume, values, p0=(values.max(), v0_start, 1.0), sigma=sigma, absolute_sigma=False,
            bounds=([1e-6, 1e-6, 0.1], [10.0, 1e6, 10.0]), max_nfev=20000)
    except RuntimeError as error:
        raise ValueError(f"The recovery curve could not be fitted to the insert recoveries: {error}.") from error
    return RecoveryCurve(float(params[0]), float(params[1]), float(params[2]), covariance.tolist(),
                         float(q_relative_uncertainty))
