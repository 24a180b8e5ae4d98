"""Radiobiology of protracted irradiation: biologically effective dose (BED) and equivalent uniform dose (EUD).

BED (linear-quadratic model with incomplete repair, Dale RG, Br J Radiol 58 (1985) 515-528):
``BED = D + G D^2 / (alpha/beta)`` with the Lea-Catcheside factor

    G = (2 / D^2) int_0^inf R(t) int_0^t R(w) exp(-mu (t - w)) dw dt,

``mu = ln 2 / T_rep`` for mono-exponential repair. For a dose rate that is a sum of exponentials,
``R(t) = sum_j c_j exp(-lambda_j t)`` (the fitted time-activity curve scaled to the dose; the dose
rate follows the activity), the inner integral is ``sum_k c_k (exp(-lambda_k t) - exp(-mu t)) /
(mu - lambda_k)`` and the outer one gives, without any singular case,

    G = (2 / D^2) sum_j sum_k c_j c_k / ((lambda_j + lambda_k) (lambda_j + mu)),   D = sum_j c_j / lambda_j.

For a mono-exponential this is ``G = lambda / (lambda + mu)``. G does not depend on the scale of R,
so the coefficients of the activity curve serve directly.

EUD (Niemierko A, Med Phys 24 (1997) 103-110; O'Donoghue JA, J Nucl Med 40 (1999) 1337-1341): the
uniform dose with the same expected surviving fraction, ``EUD = -ln(mean(exp(-alpha D))) / alpha``
over the voxels (weighted by mass where given). Applied to voxel BEDs it gives the EUBED. That EUD
of the physical dose is linear-exponential: it ignores beta. The EUD consistent with the BED
(:func:`lq_eud_Gy`) is the uniform dose, delivered with the same time course (same G), whose BED equals
the EUBED: it solves ``EUD + G EUD^2 / (alpha/beta) = EUBED``, i.e. a uniform irradiation with the same
expected surviving fraction under the linear-quadratic model ``SF = exp(-alpha D - beta G D^2)``.

Tissue parameters (alpha/beta, repair half-time, alpha) are kept in ``tissue_parameters.json`` beside
this module, with their sources; pass another file to :func:`load_tissue_parameters` to change them.
"""

import json
import pathlib

import numpy as np
import scipy.special

TISSUE_PARAMETERS_FILE = pathlib.Path(__file__).with_name("tissue_parameters.json")


def load_tissue_parameters(path=None):
    """Tissue name -> dict with alpha_beta_Gy, repair_half_time_h, optional alpha_per_Gy, source."""
    path = pathlib.Path(path) if path is not None else TISSUE_PARAMETERS_FILE
    table = json.loads(path.read_text())
    tissues = {name: entry for name, entry in table.items() if not name.startswith("_")}
    for name, entry in tissues.items():
        for key in ("alpha_beta_Gy", "repair_half_time_h"):
            if not isinstance(entry.get(key), (int, float)) or entry[key] <= 0:
                raise ValueError(f"Tissue '{name}' in {path} needs a positive number for '{key}'.")
    return tissues


def lea_catcheside_g(coefficients, rates_per_h, repair_half_time_h):
    """Lea-Catcheside G factor of ``R(t) = sum_j c_j exp(-lambda_j t)`` with repair half-time ``T_rep`` (h).

    ``coefficients`` and ``rates_per_h`` have shape (terms,) or (terms, N) for N curves (voxels);
    the result has shape () or (N,).
    """
    c = np.asarray(coefficients, dtype=float)
    lam = np.asarray(rates_per_h, dtype=float)
    if c.shape != lam.shape:
        raise ValueError("Give one rate per coefficient.")
    if np.any(lam <= 0):
        raise ValueError("All rates must be positive for a finite dose.")
    if repair_half_time_h <= 0:
        raise ValueError("The repair half-time must be positive.")
    mu = np.log(2.0) / repair_half_time_h
    dose = np.sum(c / lam, axis=0)
    pair = c[:, None] * c[None, :] / ((lam[:, None] + lam[None, :]) * (lam[:, None] + mu))
    return 2.0 * np.sum(pair, axis=(0, 1)) / dose ** 2


def bed_Gy(dose_Gy, g_factor, alpha_beta_Gy):
    """BED = D + G D^2 / (alpha/beta) (Gy)."""
    if alpha_beta_Gy <= 0:
        raise ValueError("alpha/beta must be positive.")
    dose = np.asarray(dose_Gy, dtype=float)
    return dose + np.asarray(g_factor) * dose ** 2 / alpha_beta_Gy


def bed_from_tac_Gy(dose_Gy, tac_fit, alpha_beta_Gy, repair_half_time_h):
    """BED (Gy) of a mean dose delivered with the time course of a fitted exponential TAC (:class:`TacFit`)."""
    coefficients, rates = tac_fit.exponential_terms()
    return bed_Gy(dose_Gy, lea_catcheside_g(coefficients, rates, repair_half_time_h), alpha_beta_Gy)


def eud_Gy(dose_Gy, alpha_per_Gy, weights=None):
    """EUD = -ln(weighted mean of exp(-alpha D)) / alpha over the given voxel doses (Gy)."""
    d = np.asarray(dose_Gy, dtype=float).ravel()
    if d.size == 0:
        raise ValueError("No voxel doses were given.")
    if alpha_per_Gy <= 0:
        raise ValueError("alpha must be positive.")
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != d.shape or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("Give one non-negative weight per voxel, not all zero.")
    # log-sum-exp keeps exp(-alpha D) from underflowing for high doses.
    return float(-(scipy.special.logsumexp(-alpha_per_Gy * d, b=w) - np.log(w.sum())) / alpha_per_Gy)


def eubed_Gy(bed_Gy_values, alpha_per_Gy, weights=None):
    """EUBED: the EUD formula applied to voxel BEDs (Gy)."""
    return eud_Gy(bed_Gy_values, alpha_per_Gy, weights)


def dose_from_bed_Gy(bed_Gy_value, g_factor, alpha_beta_Gy):
    """The dose D (Gy) with ``D + G D^2 / (alpha/beta) = BED`` (the positive root; D = BED for G = 0)."""
    if alpha_beta_Gy <= 0:
        raise ValueError("alpha/beta must be positive.")
    bed = np.asarray(bed_Gy_value, dtype=float)
    g = np.asarray(g_factor, dtype=float)
    if np.any(g < 0) or np.any(bed < 0):
        raise ValueError("BED and the G factor must not be negative.")
    # 2 BED / (1 + sqrt(1 + 4 G BED / (alpha/beta))): the root without cancellation for small G.
    return 2.0 * bed / (1.0 + np.sqrt(1.0 + 4.0 * g * bed / alpha_beta_Gy))


def lq_eud_Gy(dose_Gy, alpha_per_Gy, alpha_beta_Gy, g_factor, weights=None):
    """EUD consistent with the BED: the uniform dose whose BED equals the EUBED of the voxel doses
    ``dose_Gy`` delivered with Lea-Catcheside factor ``g_factor`` (see the module docstring)."""
    voxel_bed = bed_Gy(dose_Gy, g_factor, alpha_beta_Gy)
    return float(dose_from_bed_Gy(eubed_Gy(voxel_bed, alpha_per_Gy, weights), g_factor, alpha_beta_Gy))
