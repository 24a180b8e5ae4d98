"""Time-activity curve of one VOI: fit, model choice, time-integrated activity (TIA) and coverage.

:func:`fit_tac` integrates the activities measured at the scan times (hours after administration)
from zero to infinity with one of these methods:

- ``"mono"``, ``"bi"``, ``"tri"``: weighted least-squares fit of a sum of exponentials (see
  :mod:`MIBGDosimetryLib.tac_models`), integrated analytically.
- ``"auto"``: the exponential model with the smallest corrected Akaike information criterion
  (AICc, Glatting et al., Med. Phys. 34 (2007) 4285), ``AICc = n ln(WRSS/n) + 2k + 2k(k+1)/(n-k-1)``
  with n points, k fitted parameters and the weighted residual sum of squares WRSS. AICc is
  defined only for ``k < n - 1``, so only those models compete: mono-exponential (k = 2) from 4
  points, ``bi`` (k = 3) from 5 points and ``tri`` (k = 5) from 7 points. With 3 points no model
  qualifies and the mono-exponential fit is used, with a warning.
- ``"trapezoid"``: trapezoidal rule between the scans; before the first scan the activity rises
  linearly from zero at t = 0 (``head="linear"``, uptake) or stays at the first value
  (``head="constant"``, instantaneous uptake); after the last scan a mono-exponential tail
  starting at the last measured activity. The tail rate comes from a log-linear fit of the last 3
  points (the effective clearance, as the EANM guidance recommends) or, with
  ``tail="physical"``, from physical decay of 131I.
- ``"single"``: a single-time-point estimate, a mono-exponential with the effective half-life the
  user supplies, scaled to the measured point(s). Chosen only explicitly.

Weights: with activity uncertainties the residuals are weighted by ``1/sigma`` and the parameter
covariance is ``(J^T J)^-1`` (absolute uncertainties). Without, the weights are relative
(``sigma`` proportional to the activity, floored at 1 % of the largest activity so that empty
points do not dominate) and the covariance is scaled by ``WRSS/(n - k)``. The TIA uncertainty is
propagated to first order from the covariance with the analytic gradient of the integral.

Coverage: the fraction of the TIA that lies between the first and the last scan; the EANM
guidance recommends more than 80 %, and a smaller fraction is reported as a warning.
"""

import dataclasses

import numpy as np
from scipy import optimize

from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H
from MIBGDosimetryLib.tac_models import (MAX_RATE_PER_H, MODELS, MONO, TAIL_POINTS, aicc, relative_sigma,
                                         tail_rate_per_h, trapezoid_weights)

#: Minimum fraction of the TIA between the first and the last scan (EANM guidance).
MIN_COVERAGE_FRACTION = 0.8

METHODS = ("auto", "mono", "bi", "tri", "trapezoid", "single")


@dataclasses.dataclass
class TacFit:
    """Result of :func:`fit_tac`.

    ``parameters`` maps parameter names (units in the name) to values; ``covariance`` is the
    parameter covariance matrix in the order of ``parameters``. ``tia_MBq_h`` is the
    time-integrated activity from 0 to infinity. ``aicc`` holds the AICc of every model compared
    (``"auto"`` only).
    """

    model: str
    parameters: dict
    covariance: np.ndarray
    tia_MBq_h: float
    tia_uncertainty_MBq_h: float
    coverage_fraction: float
    effective_half_life_h: float
    warnings: list
    times_h: np.ndarray
    activity_MBq: np.ndarray
    activity_uncertainty_MBq: np.ndarray = None
    aicc: dict = dataclasses.field(default_factory=dict)
    head: str = "linear"

    def evaluate(self, times_h):
        """Activity (MBq) of the fitted curve at ``times_h`` (hours after administration)."""
        t = np.asarray(times_h, dtype=float)
        if self.model == "trapezoid":
            return self._trapezoid_curve(t)
        model = MONO if self.model == "single" else MODELS[self.model]
        p = np.array(list(self.parameters.values()))
        return model.value(t.ravel(), p)[:, 0].reshape(t.shape)

    def exponential_terms(self):
        """``(coefficients_MBq, rates_per_h)`` with ``A(t) = sum c_j exp(-rate_j t)``.

        Only for the exponential and single-time-point models; the trapezoid curve is piecewise.
        """
        if self.model == "trapezoid":
            raise ValueError("A trapezoidal time-activity curve is not a sum of exponentials; "
                             "fit an exponential model to use it here.")
        model = MONO if self.model == "single" else MODELS[self.model]
        c, lam = model.terms(np.array(list(self.parameters.values())))
        return c[:, 0], lam[:, 0]

    @property
    def parameter_uncertainties(self):
        """Standard uncertainties of the parameters (square roots of the covariance diagonal)."""
        sd = np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))
        return dict(zip(self.parameters, (float(s) for s in sd)))

    def to_dict(self):
        """JSON-ready summary."""
        return {
            "model": self.model,
            "tia_MBq_h": self.tia_MBq_h,
            "tia_uncertainty_MBq_h": self.tia_uncertainty_MBq_h,
            "coverage_fraction": self.coverage_fraction,
            "effective_half_life_h": self.effective_half_life_h,
            "parameters": dict(self.parameters),
            "parameter_uncertainties": self.parameter_uncertainties,
            "covariance": np.asarray(self.covariance, dtype=float).tolist(),
            "aicc": dict(self.aicc),
            "times_h": [float(t) for t in self.times_h],
            "activity_MBq": [float(a) for a in self.activity_MBq],
            "activity_uncertainty_MBq": (None if self.activity_uncertainty_MBq is None
                                         else [float(s) for s in self.activity_uncertainty_MBq]),
            "warnings": list(self.warnings),
        }

    def _trapezoid_curve(self, t):
        t0, y0 = self.times_h[0], self.activity_MBq[0]
        rate = self.parameters["tail_lambda_per_h"]
        head = y0 * t / t0 if self.head == "linear" else np.full_like(t, y0)
        tail = self.activity_MBq[-1] * np.exp(-rate * (t - self.times_h[-1]))
        body = np.interp(t, self.times_h, self.activity_MBq)
        return np.where(t < t0, head, np.where(t > self.times_h[-1], tail, body))


def fit_tac(times_h, activity_MBq, activity_uncertainty_MBq=None, model="auto", *,
            tail="fit", head="linear", effective_half_life_h=None, effective_half_life_uncertainty_h=0.0):
    """Fit and integrate a time-activity curve.

    Parameters
    ----------
    times_h : sequence of float
        Scan times in hours after administration (sorted here; the input is not modified).
    activity_MBq : sequence of float
        Activity of the VOI at those times.
    activity_uncertainty_MBq : sequence of float, optional
        Standard uncertainties of the activities; without them the weights are relative.
    model : {"auto", "mono", "bi", "tri", "trapezoid", "single"}
    tail : {"fit", "physical"}
        Trapezoid only: tail after the last scan from the fitted clearance or physical decay.
    head : {"linear", "constant"}
        Trapezoid only: activity before the first scan.
    effective_half_life_h, effective_half_life_uncertainty_h : float
        ``model="single"`` only: the assumed effective half-life and its uncertainty.

    Raises ValueError for invalid input or fewer than 3 time points (unless ``model="single"``).
    """
    t, y, sigma = _checked_inputs(times_h, activity_MBq, activity_uncertainty_MBq, model)
    if model == "single":
        return _single_time_point(t, y, sigma, effective_half_life_h, effective_half_life_uncertainty_h)
    if len(t) < 3:
        raise ValueError(f"A time-activity curve needs at least 3 time points (EANM guidance), got {len(t)}; "
                         "add scans, or choose model='single' with an effective half-life.")
    if model == "trapezoid":
        return _trapezoid(t, y, sigma, tail, head)
    absolute = sigma is not None
    weights_sigma = sigma if absolute else relative_sigma(y)
    if model != "auto":
        candidate = MODELS[model]
        if candidate.n_parameters >= len(t):
            raise ValueError(f"The '{model}' model has {candidate.n_parameters} parameters and needs more than "
                             f"{candidate.n_parameters} time points, got {len(t)}; choose a simpler model.")
        return _exponential_result(candidate, t, y, sigma, _fit_exponential(candidate, t, y, weights_sigma, absolute),
                                   {}, [])
    candidates = [m for m in MODELS.values() if m.n_parameters < len(t) - 1]
    notes = []
    if not candidates:
        candidates = [MONO]
        notes.append(f"With {len(t)} time points no model can be compared by AICc (it needs more points "
                     "than parameters + 1); the mono-exponential fit was used.")
    fits = {m.name: _fit_exponential(m, t, y, weights_sigma, absolute) for m in candidates}
    scale = np.mean((y / weights_sigma) ** 2)
    scores = {name: float(aicc(fit["wrss"], len(t), MODELS[name].n_parameters, scale))
              for name, fit in fits.items() if np.isfinite(fit["tia"])}
    if not scores:
        raise ValueError("No exponential model could be fitted to this time-activity curve; "
                         "check the activities or use model='trapezoid'.")
    best = min(scores, key=scores.get)
    return _exponential_result(MODELS[best], t, y, sigma, fits[best], scores if len(candidates) > 1 else {}, notes)


def _checked_inputs(times_h, activity_MBq, activity_uncertainty_MBq, model):
    if model not in METHODS:
        raise ValueError(f"Unknown time-activity model '{model}'; choose one of {', '.join(METHODS)}.")
    t = np.array(times_h, dtype=float).ravel()
    y = np.array(activity_MBq, dtype=float).ravel()
    if t.size != y.size or t.size == 0:
        raise ValueError(f"Give one activity per time point (got {t.size} times and {y.size} activities).")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(y))):
        raise ValueError("Times and activities must be finite numbers.")
    if np.any(t <= 0):
        raise ValueError("Scan times must be positive hours after administration.")
    if np.any(y < 0) or not np.any(y > 0):
        raise ValueError("Activities must be non-negative and at least one must be positive.")
    order = np.argsort(t)
    t, y = t[order], y[order]
    if np.any(np.diff(t) == 0):
        raise ValueError("Two scans have the same time; merge them or correct the times.")
    sigma = None
    if activity_uncertainty_MBq is not None:
        sigma = np.array(activity_uncertainty_MBq, dtype=float).ravel()
        if sigma.size != t.size or not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
            raise ValueError("Give one positive activity uncertainty per time point.")
        sigma = sigma[order]
    return t, y, sigma


def _tail_rate(t, y):
    """Clearance rate (1/h) of the last points, or None when one of them is not positive."""
    rate = tail_rate_per_h(t, y[:, None], TAIL_POINTS)[0]
    return None if np.isnan(rate) else float(rate)


def _initial_estimates(model, t, y, sigma):
    """Starting points: rates on a small grid around the observed clearance, amplitudes by NNLS."""
    rate = _tail_rate(t, y)
    rate = DECAY_CONSTANT_PER_H if rate is None else float(np.clip(rate, DECAY_CONSTANT_PER_H, MAX_RATE_PER_H))
    uptake = np.log(2.0) / np.array([0.5, 2.0, 8.0])
    if model.name == "mono":
        # The log-linear rate is already close to the weighted optimum of a single exponential.
        grid = [(rate,)]
    elif model.name == "bi":
        grid = [(rate * f, u) for f in (0.7, 1.0, 1.4) for u in uptake if u > rate * f]
    else:
        grid = [(rate, rate * f, u) for f in (3.0, 10.0, 30.0) for u in uptake if u > rate * f]
    starts = []
    for rates in grid:
        rates = np.clip(np.array(rates), DECAY_CONSTANT_PER_H, MAX_RATE_PER_H)
        p = np.concatenate([np.ones(model.n_amplitudes), rates])
        design = model.jacobian(t, p)[: model.n_amplitudes, :, 0].T / sigma[:, None]
        amplitudes, residual = optimize.nnls(design, y / sigma)
        amplitudes = np.maximum(amplitudes, 1e-6 * y.max())
        starts.append((residual, np.concatenate([amplitudes, rates])))
    starts.sort(key=lambda s: s[0])
    return [p for _, p in starts[:3]]


def _fit_exponential(model, t, y, sigma, absolute):
    """Bounded weighted least squares; returns parameters, covariance, WRSS and TIA."""
    lower, upper = model.lower_bounds(), model.upper_bounds()

    def residuals(p):
        return (model.value(t, p)[:, 0] - y) / sigma

    def jacobian(p):
        return model.jacobian(t, p)[:, :, 0].T / sigma[:, None]

    best = None
    for start in _initial_estimates(model, t, y, sigma):
        start = np.clip(start, lower, upper)
        result = optimize.least_squares(residuals, start, jac=jacobian, bounds=(lower, upper), method="trf",
                                        x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=400)
        if best is None or result.cost < best.cost:
            best = result
    p = best.x
    j = jacobian(p)
    wrss = float(np.sum(residuals(p) ** 2))
    covariance = np.linalg.pinv(j.T @ j)
    dof = len(t) - model.n_parameters
    if not absolute:
        covariance = covariance * (wrss / dof if dof > 0 else np.nan)
    return {"p": p, "covariance": covariance, "wrss": wrss, "tia": float(model.integral(p)[0])}


def _exponential_result(model, t, y, sigma, fit, scores, notes):
    p, covariance = fit["p"], fit["covariance"]
    gradient = model.integral_gradient(p)[:, 0]
    tia = fit["tia"]
    tia_sd = float(np.sqrt(max(gradient @ covariance @ gradient, 0.0)))
    coverage = float(model.integral(p, t[0], t[-1])[0]) / tia
    terminal = float(model.terminal_rate(p)[0])
    warnings = list(notes)
    rates = p[model.n_amplitudes:]
    if np.isclose(terminal, DECAY_CONSTANT_PER_H, rtol=1e-6):
        warnings.append("The fitted clearance is no faster than physical decay of 131I (the lower bound of the "
                        "fit): the data show no biological clearance.")
    if model.name != "mono" and np.isclose(rates[-1], MAX_RATE_PER_H, rtol=1e-6):
        warnings.append("The fitted uptake rate reached its upper bound: the scans do not resolve the uptake phase.")
    warnings += _coverage_warnings(coverage)
    return TacFit(model=model.name, parameters=dict(zip(model.parameter_names, (float(v) for v in p))),
                  covariance=covariance, tia_MBq_h=tia, tia_uncertainty_MBq_h=tia_sd, coverage_fraction=coverage,
                  effective_half_life_h=float(np.log(2.0) / terminal), warnings=warnings, times_h=t,
                  activity_MBq=y, activity_uncertainty_MBq=sigma, aicc=scores)


def _coverage_warnings(coverage):
    if coverage >= MIN_COVERAGE_FRACTION:
        return []
    return [f"Only {100 * coverage:.1f} % of the time-integrated activity lies between the first and the last "
            f"scan (EANM guidance: more than {100 * MIN_COVERAGE_FRACTION:.0f} %); the extrapolated part "
            "dominates, so treat the result with caution or add scans."]


def _trapezoid(t, y, sigma, tail, head):
    if tail not in ("fit", "physical"):
        raise ValueError(f"Unknown tail '{tail}'; choose 'fit' or 'physical'.")
    if head not in ("linear", "constant"):
        raise ValueError(f"Unknown head '{head}'; choose 'linear' or 'constant'.")
    warnings = []
    n = len(t)
    tail_idx = np.arange(n - TAIL_POINTS, n)
    fitted_rate = _tail_rate(t, y)
    rate_varies = False
    if tail == "physical":
        rate = DECAY_CONSTANT_PER_H
    elif fitted_rate is None:
        rate = DECAY_CONSTANT_PER_H
        warnings.append("The last activities include zeros; the tail after the last scan uses physical decay.")
    elif fitted_rate < DECAY_CONSTANT_PER_H:
        rate = DECAY_CONSTANT_PER_H
        warnings.append("The last scans show clearance slower than physical decay of 131I; the tail after the last "
                        "scan uses physical decay.")
    else:
        rate, rate_varies = fitted_rate, True

    # d(TIA)/d(activity_i): trapezoid weights, head, tail and the tail rate's dependence on the last points.
    weights = trapezoid_weights(t, rate, head)[:, 0]
    dt = np.diff(t)
    tia = float(weights @ y)
    body = float(np.sum(dt * (y[:-1] + y[1:]) / 2))
    tt = t[tail_idx]
    d_rate_dy = np.zeros(n)
    if rate_varies:
        d_rate_dy[tail_idx] = -(tt - tt.mean()) / (np.sum((tt - tt.mean()) ** 2) * y[tail_idx])
    gradient = weights - y[-1] / rate ** 2 * d_rate_dy

    if sigma is None:
        # Relative scatter of the tail points about their log-linear fit stands in for the unknown uncertainty.
        if fitted_rate is None:
            sd_rel = 0.0
        else:
            log_y = np.log(y[tail_idx])
            predicted = log_y.mean() - fitted_rate * (tt - tt.mean())
            sd_rel = float(np.sqrt(np.sum((log_y - predicted) ** 2) / (TAIL_POINTS - 2)))
        sigma_used = sd_rel * y
    else:
        sigma_used = sigma
    tia_sd = float(np.sqrt(np.sum((gradient * sigma_used) ** 2)))
    coverage = body / tia
    warnings += _coverage_warnings(coverage)
    rate_var = float(np.sum((d_rate_dy * sigma_used) ** 2))
    return TacFit(model="trapezoid", parameters={"tail_lambda_per_h": rate}, covariance=np.array([[rate_var]]),
                  tia_MBq_h=tia, tia_uncertainty_MBq_h=tia_sd, coverage_fraction=coverage,
                  effective_half_life_h=float(np.log(2.0) / rate), warnings=warnings, times_h=t, activity_MBq=y,
                  activity_uncertainty_MBq=sigma, head=head)


def _single_time_point(t, y, sigma, half_life_h, half_life_sd_h):
    if half_life_h is None or not np.isfinite(half_life_h) or half_life_h <= 0:
        raise ValueError("The single-time-point method needs a positive effective half-life (hours).")
    if half_life_sd_h is None or half_life_sd_h < 0:
        raise ValueError("The uncertainty of the effective half-life must be zero or positive.")
    rate = np.log(2.0) / half_life_h
    rate_var = (rate * half_life_sd_h / half_life_h) ** 2
    f = np.exp(-rate * t)
    w = 1.0 / (sigma ** 2 if sigma is not None else relative_sigma(y) ** 2)
    num, den = np.sum(w * f * y), np.sum(w * f * f)
    a = num / den
    warnings = [f"Single-time-point estimate: the TIA rests on the assumed effective half-life of {half_life_h:g} h."]
    if sigma is not None:
        a_var = 1.0 / den
    elif len(t) > 1:
        a_var = np.sum(w * (y - a * f) ** 2) / (len(t) - 1) / den
    else:
        a_var = 0.0
        warnings.append("No activity uncertainty was given; the TIA uncertainty covers the half-life only.")
    # The amplitude is scaled to the data with the assumed rate, so it moves with the rate.
    d_num, d_den = np.sum(w * (-t * f) * y), np.sum(2 * w * f * (-t * f))
    da_drate = (d_num * den - num * d_den) / den ** 2
    covariance = np.array([[a_var + da_drate ** 2 * rate_var, da_drate * rate_var],
                           [da_drate * rate_var, rate_var]])
    p = np.array([a, rate])
    gradient = MONO.integral_gradient(p)[:, 0]
    tia = float(MONO.integral(p)[0])
    coverage = float(MONO.integral(p, t[0], t[-1])[0]) / tia
    warnings += _coverage_warnings(coverage)
    return TacFit(model="single", parameters={"a_MBq": float(a), "lambda_per_h": float(rate)},
                  covariance=covariance, tia_MBq_h=tia,
                  tia_uncertainty_MBq_h=float(np.sqrt(gradient @ covariance @ gradient)),
                  coverage_fraction=coverage, effective_half_life_h=float(half_life_h), warnings=warnings,
                  times_h=t, activity_MBq=y, activity_uncertainty_MBq=sigma)
