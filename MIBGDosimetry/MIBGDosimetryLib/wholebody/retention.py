"""Whole-body time-integrated activity from serial retention readings.

The activity in the body is ``A(t) = A_0 R(t)`` with the administered activity ``A_0`` and the
retained fraction ``R`` (:mod:`.measurements`). Before the first reading the whole administered
activity is in the body (the first reading is taken before any excretion and defines 100 %), so
that part contributes ``A_0 t_1``. After it, one of:

- ``"mono"``: a mono-exponential fitted by :func:`MIBGDosimetryLib.tac.fit_tac` (weighted least
  squares, relative weights, scatter-scaled covariance), integrated from the first reading on;
- ``"bi"``: a bi-exponential clearance ``a_1 exp(-l_1 t) + a_2 exp(-l_2 t)`` (fast urinary phase and
  slow phase), fitted the same way with the sum-of-exponentials machinery of
  :mod:`MIBGDosimetryLib.tac_models` (4 parameters: at least 4 readings, an uncertainty from 5);
- ``"auto"``: the bi-exponential when AICc (Glatting et al., Med Phys 34 (2007) 4285) prefers it and
  the readings allow the comparison (at least 7), else the mono-exponential;
- ``"trapezoid"``: trapezoids between the readings and physical decay of 131I after the last one (no
  further biological clearance): model-free and never below the truth when clearance continues, the
  conservative alternative. It is reported with every fit.

The TIA uncertainty is the fit's (first-order propagation of the parameter covariance, as in
:mod:`MIBGDosimetryLib.tac`) and, where the extrapolation after the last reading is not supported by
the data, the extrapolation term of ``fit_tac``.
"""

import numpy as np
from scipy import optimize

from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H
from MIBGDosimetryLib.tac import MIN_COVERAGE_FRACTION, fit_tac
from MIBGDosimetryLib.tac_extrapolation import head_area_MBq_h
from MIBGDosimetryLib.tac_models import (MAX_RATE_PER_H, MONO, ExponentialModel, aicc, aicc_eligible,
                                         relative_sigma)

METHODS = ("auto", "mono", "bi", "trapezoid")
#: Bi-exponential clearance without an uptake phase: the body holds the whole activity at once.
BI_CLEARANCE = ExponentialModel("bi_clearance", ("a1_MBq", "a2_MBq"), ("lambda1_per_h", "lambda2_per_h"),
                                ((1.0, 0.0), (0.0, 1.0)), (0, 1), (0, 1))


def whole_body_tia(readings, administered_MBq, method="auto"):
    """Whole-body TIA (MBq h) from :class:`RetentionReadings` and the administered activity (MBq).

    Returns a dict with ``method`` (the model used), ``tia_MBq_h``, ``tia_uncertainty_MBq_h``,
    ``tia_trapezoid_physical_decay_MBq_h`` (the conservative alternative), ``parameters``,
    ``effective_half_lives_h``, ``terms`` (coefficients and rates of the activity after the first
    reading as a sum of exponentials; physical decay alone for the trapezoid), ``coverage_fraction``
    and ``warnings``.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown whole-body retention method '{method}'; choose one of {', '.join(METHODS)}.")
    if not (np.isfinite(administered_MBq) and administered_MBq > 0):
        raise ValueError(f"The administered activity must be a positive number of MBq; got {administered_MBq}.")
    t = np.asarray(readings.times_h, dtype=float)
    activity = float(administered_MBq) * np.asarray(readings.retention, dtype=float)
    warnings = list(readings.warnings)
    head = float(administered_MBq) * t[0]
    trapezoid = fit_tac(t, activity, model="trapezoid", tail="physical", head="constant")
    if method == "auto":
        method = _auto_choice(t, activity)
    if method == "trapezoid":
        # Only the readings' scatter: the part before the first reading is known (the whole activity).
        result = {"tia_MBq_h": trapezoid.tia_MBq_h, "tia_uncertainty_MBq_h": trapezoid.uncertainty_terms_MBq_h["fit"],
                  "parameters": {"tail_lambda_per_h": DECAY_CONSTANT_PER_H},
                  "terms": ([1.0], [DECAY_CONSTANT_PER_H]),
                  "effective_half_lives_h": [float(np.log(2.0) / DECAY_CONSTANT_PER_H)]}
        warnings += trapezoid.warnings
    elif method == "mono":
        result = _mono(t, activity, head, warnings)
    else:
        result = _bi(t, activity, head, warnings)
    measured = head + float(np.sum(np.diff(t) * (activity[:-1] + activity[1:]) / 2.0))
    coverage = measured / result["tia_MBq_h"]
    if coverage < MIN_COVERAGE_FRACTION:
        warnings.append(f"Only {100 * coverage:.1f} % of the whole-body TIA lies before the last reading (EANM "
                        f"guidance: more than {100 * MIN_COVERAGE_FRACTION:.0f} %); add later readings.")
    result.update({"method": method, "coverage_fraction": coverage,
                   "tia_trapezoid_physical_decay_MBq_h": trapezoid.tia_MBq_h, "warnings": warnings})
    return result


def _auto_choice(t, activity):
    if not aicc_eligible(len(t), BI_CLEARANCE.n_parameters):
        return "mono"
    sigma = relative_sigma(activity)
    scale = float(np.mean((activity / sigma) ** 2))
    scores = {}
    for name, model in (("mono", MONO), ("bi", BI_CLEARANCE)):
        p, _, wrss, _ = _fit(model, t, activity)
        scores[name] = aicc(wrss, len(t), model.n_parameters, scale)
    return min(scores, key=scores.get)


def _mono(t, activity, head, warnings):
    fit = fit_tac(t, activity, model="mono", head="extrapolate")
    warnings += fit.warnings
    c, lam = fit.exponential_terms()
    if fit.fitted_from_h is None:
        fitted_head = head_area_MBq_h("extrapolate", float(fit.evaluate(t[0])), t[0], float(lam[0]))
    else:
        fitted_head = head_area_MBq_h("extrapolate", activity[0], t[0], 0.0)
    terms = fit.uncertainty_terms_MBq_h
    uncertainty = float(np.hypot(terms.get("fit") or 0.0, terms.get("after_last_scan") or 0.0))
    return {"tia_MBq_h": head + fit.tia_MBq_h - fitted_head, "tia_uncertainty_MBq_h": uncertainty,
            "parameters": dict(fit.parameters), "effective_half_lives_h": [float(np.log(2.0) / lam[0])],
            "terms": (c.tolist(), lam.tolist())}


def _bi(t, activity, head, warnings):
    if len(t) < BI_CLEARANCE.n_parameters:
        raise ValueError(f"The bi-exponential retention needs at least {BI_CLEARANCE.n_parameters} readings, got "
                         f"{len(t)}; use the mono-exponential or the trapezoid.")
    p, covariance, _, dof = _fit(BI_CLEARANCE, t, activity)
    order = np.argsort(-p[2:])  # fast phase first
    p = np.concatenate([p[:2][order], p[2:][order]])
    covariance = covariance[np.ix_(np.concatenate([order, 2 + order]), np.concatenate([order, 2 + order]))]
    tail = float(BI_CLEARANCE.integral(p, t[0])[0])
    gradient = BI_CLEARANCE.integral_gradient(p, t[0])[:, 0]
    if dof <= 0:
        uncertainty = float("nan")
        warnings.append("The bi-exponential passes through every reading: its uncertainty cannot be estimated; "
                        "add readings.")
    else:
        uncertainty = float(np.sqrt(max(gradient @ covariance @ gradient, 0.0)))
    if np.any(np.isclose(p[2:], MAX_RATE_PER_H, rtol=1e-6)):
        warnings.append("A fitted clearance rate reached its upper bound: the readings do not resolve the fast phase.")
    return {"tia_MBq_h": head + tail, "tia_uncertainty_MBq_h": uncertainty,
            "parameters": dict(zip(BI_CLEARANCE.parameter_names, (float(v) for v in p))),
            "effective_half_lives_h": [float(np.log(2.0) / rate) for rate in p[2:]],
            "terms": (p[:2].tolist(), p[2:].tolist())}


def _fit(model, t, y):
    """Relative-weight least squares of a clearance model; returns parameters, covariance (scaled by
    the scatter, times the Student-t variance for more than 2 degrees of freedom), WRSS and dof."""
    sigma = relative_sigma(y)
    lower, upper = model.lower_bounds(), model.upper_bounds()

    def residuals(p):
        return (model.value(t, p)[:, 0] - y) / sigma

    def jacobian(p):
        return model.jacobian(t, p)[:, :, 0].T / sigma[:, None]

    late = max(DECAY_CONSTANT_PER_H, float(np.log(y[-2] / y[-1]) / (t[-1] - t[-2])) if y[-1] < y[-2] else 0.0)
    if model.n_parameters == 2:
        starts = [np.array([y[0] * np.exp(late * t[0]), late])]
    else:
        starts = [np.array([0.5 * y[0], 0.5 * y[0], fast, late]) for fast in (0.05, 0.2, 1.0) if fast > late] \
            or [np.array([0.5 * y[0], 0.5 * y[0], 2.0 * late, late])]
    best = None
    for start in starts:
        start = np.clip(start, lower, upper)
        result = optimize.least_squares(residuals, start, jac=jacobian, bounds=(lower, upper), method="trf",
                                        x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=2000)
        if best is None or result.cost < best.cost:
            best = result
    p = best.x
    wrss = float(np.sum(residuals(p) ** 2))
    dof = len(t) - model.n_parameters
    scale = wrss / dof * (dof / (dof - 2.0) if dof > 2 else 1.0) if dof > 0 else np.nan
    j = jacobian(p)
    return p, np.linalg.pinv(j.T @ j) * scale, wrss, dof
