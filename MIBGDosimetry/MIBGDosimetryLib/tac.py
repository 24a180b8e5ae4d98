"""Time-activity curve of one VOI: fit, model choice, time-integrated activity (TIA) and coverage.

:func:`fit_tac` integrates the activities measured at the scan times (hours after administration)
from zero to infinity with one of these methods:

- ``"mono"``, ``"bi"``, ``"tri"``: weighted least-squares fit of a sum of exponentials (see
  :mod:`MIBGDosimetryLib.tac_models`), integrated analytically from the first scan on.
- ``"auto"``: the exponential model with the smallest corrected Akaike information criterion
  (AICc, Glatting et al., Med. Phys. 34 (2007) 4285), ``AICc = n ln(WRSS/n) + 2K + 2K(K+1)/(n-K-1)``
  with n points, ``K = k + 1`` (k fitted parameters plus the residual variance) and the weighted
  residual sum of squares WRSS. AICc is defined only for ``n - K - 1 > 0``, so only those models
  compete: mono-exponential (k = 2) from 5 points, ``bi`` (k = 3) from 6 points and ``tri`` (k = 5)
  from 8 points. With fewer points (2 to 4) no model can be compared and the mono-exponential fit is
  used, with a note.
- ``"trapezoid"``: trapezoidal rule between the scans; before the first scan the activity rises
  linearly from zero at t = 0 (``head="linear"``, the default here), stays at the first value
  (``head="constant"``) or takes their mean (``"midpoint"``); after the last scan a
  mono-exponential tail starting at the last measured activity. The tail rate comes from a
  log-linear fit of the last 3 points (the effective clearance, as the EANM guidance recommends) or,
  with ``tail="physical"``, from physical decay of 131I.
- ``"single"``: a single-time-point estimate, a mono-exponential with the effective half-life the
  user supplies, scaled to the measured point(s). Chosen only explicitly.

Before the first scan: the exponential models integrate the part before the first scan as the
``head`` choice says (see :mod:`MIBGDosimetryLib.tac_extrapolation`, which also justifies the
default): with a given uptake half-time the uptake it implies; otherwise the fitted uptake phase
for ``bi``/``tri`` and, for the mono-exponential (and ``bi``/``tri`` whose uptake rate reaches its
bound, i.e. the scans do not resolve it), mono-exponential back-extrapolation, or with a prior of
the uptake half-time (``uptake_prior``) the expectation over that prior. Every result lists
the TIA under each head alternative and under the model-free tail alternative, and the TIA
uncertainty is split into three terms: ``fit`` (the parameter covariance), ``before_first_scan``
and ``after_last_scan``.

Points: a zero or negative activity (an empty VOI at that scan, noise after scatter subtraction)
cannot be fitted; that time point is left out with a warning naming it. Two usable points are the
least that gives a TIA (EANM guidance: at least 3 scans, said in a warning below 3).

Weights and fit uncertainty: with activity uncertainties the residuals are weighted by ``1/sigma``;
the parameter covariance ``(J^T J)^-1`` is scaled by the reduced chi-square ``WRSS/nu``
(``nu = n - k`` degrees of freedom) when the points scatter more than their uncertainties say, and
never below the covariance of the stated uncertainties. Without uncertainties the weights are
relative (``sigma`` proportional to the activity, floored at 1 % of the largest activity so that
empty points do not dominate) and the covariance is scaled by ``WRSS/nu``. A scatter estimated from
``nu`` degrees of freedom makes the TIA error t-distributed; for ``nu > 2`` the scale is multiplied
by ``nu / (nu - 2)``, the variance of Student's t (JCGM 101:2008, 6.4.9), so that the stated
uncertainty is a standard deviation. For ``nu <= 2`` that variance does not exist: the uncertainty
is then a rough estimate and a warning says so. The TIA uncertainty is propagated to first order
from the covariance with the gradient of the integral.

Coverage: the fraction of the TIA that lies between the first and the last scan; the EANM
guidance recommends more than 80 %, and a smaller fraction is reported as a warning.
"""

import dataclasses

import numpy as np
from scipy import optimize

from MIBGDosimetryLib import tac_extrapolation as extrapolation
from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H
from MIBGDosimetryLib.tac_models import (HEAD_WEIGHTS, MAX_RATE_PER_H, MODELS, MONO, TAIL_POINTS, aicc,
                                         aicc_eligible, relative_sigma, tail_rate_per_h, trapezoid_weights)

#: Minimum fraction of the TIA between the first and the last scan (EANM guidance).
MIN_COVERAGE_FRACTION = 0.8
#: Scans the EANM guidance asks for at least; fewer (down to 2) give a TIA with a warning.
RECOMMENDED_POINTS = 3

METHODS = ("auto", "mono", "bi", "tri", "trapezoid", "single")


@dataclasses.dataclass
class TacFit:
    """Result of :func:`fit_tac`.

    ``parameters`` maps parameter names (units in the name) to values; ``covariance`` is the
    parameter covariance matrix in the order of ``parameters``. ``tia_MBq_h`` is the
    time-integrated activity from 0 to infinity and ``tia_uncertainty_MBq_h`` its standard
    uncertainty from the three terms in ``uncertainty_terms_MBq_h`` (fit, before_first_scan,
    after_last_scan). ``aicc`` holds the AICc of every model compared (``"auto"`` only).
    ``times_h`` and ``activity_MBq`` are all the points given (sorted); ``used`` marks those fitted.
    ``tia_alternatives_MBq_h`` holds the TIA under each head choice (``before_first_scan``) and
    under the model-free tail (``after_last_scan``).
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
    used: np.ndarray = None
    uncertainty_terms_MBq_h: dict = dataclasses.field(default_factory=dict)
    tia_alternatives_MBq_h: dict = dataclasses.field(default_factory=dict)
    degrees_of_freedom: int = None
    covariance_scale: float = None
    uptake_half_life_h: float = None
    #: Log-normal prior (median h, geometric SD) of the uptake half-time behind the "prior" head.
    uptake_prior: tuple = None
    #: Mono-exponential fitted from its measured maximum on: the time of that maximum (h); before it
    #: the curve is the measured activities joined by straight lines.
    fitted_from_h: float = None

    @property
    def used_times_h(self):
        return self.times_h if self.used is None else self.times_h[self.used]

    @property
    def used_activity_MBq(self):
        return self.activity_MBq if self.used is None else self.activity_MBq[self.used]

    def evaluate(self, times_h):
        """Activity (MBq) of the fitted curve at ``times_h`` (hours after administration).

        For the exponential models this is the fitted sum of exponentials (the TIA replaces the part
        before the first scan by the ``head`` choice), except before ``fitted_from_h``, where it joins
        the measured activities (from zero at t = 0).
        """
        t = np.asarray(times_h, dtype=float)
        if self.model == "trapezoid":
            return self._trapezoid_curve(t)
        model = MONO if self.model == "single" else MODELS[self.model]
        p = np.array(list(self.parameters.values()))
        curve = model.value(t.ravel(), p)[:, 0].reshape(t.shape)
        if self.fitted_from_h is None:
            return curve
        rising = self.used_times_h <= self.fitted_from_h
        measured = np.interp(t, np.concatenate([[0.0], self.used_times_h[rising]]),
                             np.concatenate([[0.0], self.used_activity_MBq[rising]]))
        return np.where(t < self.fitted_from_h, measured, curve)

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

    def relative_sensitivities(self):
        """``(TIA_alternative - TIA) / TIA`` for every alternative in ``tia_alternatives_MBq_h``."""
        return {part: {name: (value - self.tia_MBq_h) / self.tia_MBq_h for name, value in alternatives.items()}
                for part, alternatives in self.tia_alternatives_MBq_h.items()}

    def to_dict(self):
        """JSON-ready summary."""
        used = np.ones(len(self.times_h), bool) if self.used is None else self.used
        return {
            "model": self.model,
            "tia_MBq_h": self.tia_MBq_h,
            "tia_uncertainty_MBq_h": _finite_or_none(self.tia_uncertainty_MBq_h),
            "uncertainty_terms_MBq_h": {k: _finite_or_none(v) for k, v in self.uncertainty_terms_MBq_h.items()},
            "coverage_fraction": self.coverage_fraction,
            "effective_half_life_h": self.effective_half_life_h,
            "head": self.head,
            "uptake_half_life_h": self.uptake_half_life_h,
            "uptake_prior": (None if self.uptake_prior is None else
                             {"median_h": float(self.uptake_prior[0]),
                              "geometric_sd": float(self.uptake_prior[1])}),
            "tia_alternatives_MBq_h": {part: dict(v) for part, v in self.tia_alternatives_MBq_h.items()},
            "relative_sensitivities": self.relative_sensitivities(),
            "parameters": dict(self.parameters),
            "parameter_uncertainties": {k: _finite_or_none(v) for k, v in self.parameter_uncertainties.items()},
            "covariance": [[_finite_or_none(v) for v in row] for row in np.asarray(self.covariance, dtype=float)],
            "covariance_scale": _finite_or_none(self.covariance_scale),
            "degrees_of_freedom": self.degrees_of_freedom,
            "fitted_from_h": self.fitted_from_h,
            "aicc": dict(self.aicc),
            "times_h": [float(t) for t in self.times_h],
            "activity_MBq": [float(a) for a in self.activity_MBq],
            "activity_uncertainty_MBq": (None if self.activity_uncertainty_MBq is None
                                         else [float(s) for s in self.activity_uncertainty_MBq]),
            "excluded_times_h": [float(t) for t in np.asarray(self.times_h)[~used]],
            "warnings": list(self.warnings),
        }

    def _trapezoid_curve(self, t):
        times, activity = self.used_times_h, self.used_activity_MBq
        t0, y0 = times[0], activity[0]
        rate = self.parameters["tail_lambda_per_h"]
        linear, constant = y0 * t / t0, np.full_like(t, y0)
        head = {"constant": constant, "midpoint": (linear + constant) / 2}.get(self.head, linear)
        tail = activity[-1] * np.exp(-rate * (t - times[-1]))
        body = np.interp(t, times, activity)
        return np.where(t < t0, head, np.where(t > times[-1], tail, body))


def fit_tac(times_h, activity_MBq, activity_uncertainty_MBq=None, model="auto", *,
            tail="fit", head=None, uptake_half_life_h=None, effective_half_life_h=None,
            effective_half_life_uncertainty_h=0.0, uptake_prior=None):
    """Fit and integrate a time-activity curve.

    Parameters
    ----------
    times_h : sequence of float
        Scan times in hours after administration (sorted here; the input is not modified).
    activity_MBq : sequence of float
        Activity of the VOI at those times. Zero or negative values are left out with a warning.
    activity_uncertainty_MBq : sequence of float, optional
        Standard uncertainties of the activities (positive wherever the activity is); without them
        the weights are relative.
    model : {"auto", "mono", "bi", "tri", "trapezoid", "single"}
    tail : {"fit", "physical"}
        Trapezoid only: tail after the last scan from the fitted clearance or physical decay.
    head : str, optional
        Activity before the first scan. Exponential models: "midpoint", "linear", "extrapolate",
        "uptake" (with ``uptake_half_life_h``) or "fitted" (bi, tri); default "uptake" when
        ``uptake_half_life_h`` is given, else "fitted" for bi/tri whose uptake the scans resolve,
        else "extrapolate". Trapezoid: "linear" (default), "constant" or "midpoint". Single time
        point: the mono-exponential from t = 0.
    uptake_half_life_h : float, optional
        Uptake half-time (h), e.g. from a tracer study; used by the default head of the exponential
        models and by ``head="uptake"``, and listed among the alternatives.
    uptake_prior : (float, float), optional
        Log-normal prior (median h, geometric standard deviation) of the uptake half-time when no
        ``uptake_half_life_h`` is given: the default head of the exponential models becomes "prior"
        instead of "extrapolate" (see :mod:`MIBGDosimetryLib.tac_extrapolation`).
    effective_half_life_h, effective_half_life_uncertainty_h : float
        ``model="single"`` only: the assumed effective half-life and its uncertainty.

    Raises ValueError for invalid input or fewer than 2 time points with a positive activity
    (unless ``model="single"``, which needs one).
    """
    t, y, sigma = _checked_inputs(times_h, activity_MBq, activity_uncertainty_MBq, model)
    used, notes = _usable_points(t, y, sigma, model)
    tu, yu = t[used], y[used]
    su = None if sigma is None else sigma[used]
    if model == "single":
        fit = _single_time_point(tu, yu, su, effective_half_life_h, effective_half_life_uncertainty_h)
        fit.head = "extrapolate"
    else:
        if len(tu) < RECOMMENDED_POINTS:
            notes.append(f"Only {len(tu)} usable time points: the EANM guidance asks for at least "
                         f"{RECOMMENDED_POINTS} scans; the TIA rests on a curve the data hardly constrain.")
        if model == "trapezoid":
            fit = _trapezoid(tu, yu, su, tail, "linear" if head is None else head)
        else:
            fit = _exponential(model, tu, yu, su, head, uptake_half_life_h, uptake_prior)
    fit.times_h, fit.activity_MBq, fit.activity_uncertainty_MBq, fit.used = t, y, sigma, used
    fit.warnings = notes + fit.warnings
    return fit


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
    order = np.argsort(t)
    t, y = t[order], y[order]
    if np.any(np.diff(t) == 0):
        raise ValueError("Two scans have the same time; merge them or correct the times.")
    sigma = None
    if activity_uncertainty_MBq is not None:
        sigma = np.array(activity_uncertainty_MBq, dtype=float).ravel()
        if sigma.size != t.size or not np.all(np.isfinite(sigma)):
            raise ValueError("Give one finite activity uncertainty per time point.")
        sigma = sigma[order]
    return t, y, sigma


def _usable_points(t, y, sigma, model):
    """Points with a positive activity, and a warning for every other one."""
    used = y > 0
    notes = []
    for time, value in zip(t[~used], y[~used]):
        what = "zero" if value == 0 else f"negative ({value:.4g} MBq)"
        notes.append(f"The activity at {time:g} h is {what}: that time point was left out of the fit.")
    needed = 1 if model == "single" else 2
    if np.count_nonzero(used) < needed:
        raise ValueError(f"Only {np.count_nonzero(used)} of the {t.size} time points have a positive activity; "
                         f"a time-integrated activity needs at least {needed}. Check the VOI and the images.")
    if sigma is not None and np.any(sigma[used] <= 0):
        raise ValueError("Give a positive activity uncertainty for every time point with a positive activity.")
    return used, notes


def _tail_rate(t, y):
    """Clearance rate (1/h) of the last points, or None when one of them is not positive."""
    rate = tail_rate_per_h(t, y[:, None], min(TAIL_POINTS, len(t)))[0]
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


def _exponential(model_name, t, y, sigma, head, uptake_half_life_h, uptake_prior=None):
    absolute = sigma is not None
    if model_name != "auto":
        candidate = MODELS[model_name]
        if candidate.n_parameters > len(t):
            raise ValueError(f"The '{model_name}' model has {candidate.n_parameters} parameters and needs at least "
                             f"{candidate.n_parameters} time points, got {len(t)}; choose a simpler model.")
        candidates, notes = [candidate], []
    else:
        candidates = [m for m in MODELS.values() if aicc_eligible(len(t), m.n_parameters)]
        notes = []
        if not candidates:
            candidates = [MONO]
            notes.append(f"With {len(t)} time points no model can be compared by AICc (it needs more points than "
                         "fitted parameters + 2); the mono-exponential fit was used.")
    rise = None
    if candidates == [MONO]:
        rise, t, y, sigma = _split_rise(t, y, sigma)
        if rise is not None:
            notes.append(f"The activity rises until {t[0]:g} h, which a mono-exponential cannot describe: it is "
                         f"fitted from {t[0]:g} h on, and before that the TIA follows the measured activities "
                         "(trapezoids).")
    weights_sigma = sigma if absolute else relative_sigma(y)
    fits = {m.name: _fit_exponential(m, t, y, weights_sigma, absolute) for m in candidates}
    finite = {name: fit for name, fit in fits.items() if np.isfinite(fit["tia"])}
    if not finite:
        raise ValueError("No exponential model could be fitted to this time-activity curve; "
                         "check the activities or use model='trapezoid'.")
    scores = {}
    if len(candidates) > 1:
        scale = np.mean((y / weights_sigma) ** 2)
        scores = {name: float(aicc(fit["wrss"], len(t), MODELS[name].n_parameters, scale))
                  for name, fit in finite.items()}
        best = min(scores, key=scores.get)
    else:
        best = next(iter(finite))
    return _exponential_result(MODELS[best], t, y, fits[best], scores, notes, head, uptake_half_life_h, rise,
                               uptake_prior)


def _split_rise(t, y, sigma):
    """Points before the maximum (uptake still under way) and the rest, when at least 2 points remain."""
    peak = int(np.argmax(y))
    if peak == 0 or len(t) - peak < 2:
        return None, t, y, sigma
    rise = (t[:peak + 1], y[:peak + 1], None if sigma is None else sigma[:peak + 1])
    return rise, t[peak:], y[peak:], None if sigma is None else sigma[peak:]


def _fit_exponential(model, t, y, sigma, absolute):
    """Bounded weighted least squares; returns parameters, covariance (scaled, see the module
    docstring), its scale, the degrees of freedom, WRSS and the TIA of the curve from t = 0."""
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
    dof = len(t) - model.n_parameters
    scale = _covariance_scale(wrss, dof, absolute)
    covariance = np.linalg.pinv(j.T @ j) * scale
    return {"p": p, "covariance": covariance, "scale": scale, "dof": dof, "wrss": wrss,
            "tia": float(model.integral(p)[0])}


def _covariance_scale(wrss, dof, absolute):
    """Factor on ``(J^T J)^-1``: the reduced chi-square (times the Student-t variance for dof > 2),
    never below 1 with stated uncertainties; NaN without uncertainties and without degrees of freedom."""
    if dof <= 0:
        return 1.0 if absolute else np.nan
    scatter = wrss / dof * (dof / (dof - 2.0) if dof > 2 else 1.0)
    return max(1.0, scatter) if absolute else scatter


def _default_head(model, p, uptake_half_life_h, uptake_prior=None):
    if uptake_half_life_h is not None:
        return "uptake"
    unresolved = "extrapolate" if uptake_prior is None else "prior"
    if model.name == "mono":
        return unresolved
    uptake_at_bound = np.isclose(p[-1], MAX_RATE_PER_H, rtol=1e-6)
    return unresolved if uptake_at_bound else "fitted"


def _check_head(model, head, uptake_half_life_h, uptake_prior=None):
    if head not in extrapolation.HEADS:
        raise ValueError(f"Unknown head '{head}' (activity before the first scan) for an exponential model; "
                         f"choose one of {', '.join(extrapolation.HEADS)}.")
    if head == "fitted" and model.name == "mono":
        raise ValueError("The mono-exponential has no uptake phase to integrate ('fitted' head); choose "
                         "'midpoint', 'linear', 'extrapolate' or 'uptake'.")
    if head == "uptake" and uptake_half_life_h is None:
        raise ValueError("The 'uptake' head needs the uptake half-time (uptake_half_life_h, hours).")
    if head == "prior" and uptake_prior is None:
        raise ValueError("The 'prior' head needs a prior of the uptake half-time (uptake_prior: median hours, "
                         "geometric standard deviation).")


def _exponential_result(model, t, y, fit, scores, notes, head, uptake_half_life_h, rise=None, uptake_prior=None):
    """The TacFit of a fitted exponential model. ``rise``: (times, activities, sigma) of the measured
    rising part before the first fitted point (its last point is the first fitted one), integrated by
    trapezoids; the head before the first scan then starts from the first measured activity."""
    p, covariance = fit["p"], fit["covariance"]
    if uptake_prior is not None:
        uptake_prior = extrapolation.check_prior(uptake_prior)
    head = _default_head(model, p, uptake_half_life_h, uptake_prior) if head is None else head
    _check_head(model, head, uptake_half_life_h, uptake_prior)
    t_start, tn = float(t[0]), float(t[-1])
    if rise is None:
        t1, rise_area, rise_weights = t_start, 0.0, np.zeros(0)
    else:
        rise_t, rise_y = rise[0], rise[1]
        t1 = float(rise_t[0])
        rise_weights = np.zeros(rise_t.size)
        rise_weights[:-1] += np.diff(rise_t) / 2
        rise_weights[1:] += np.diff(rise_t) / 2
        rise_area = float(rise_weights @ rise_y)

    def first_activity_and_rate(q):
        if rise is not None:
            # Still rising at the first scan: no clearance to extrapolate back.
            return rise[1][0], 0.0
        c, lam = model.terms(q)
        a1 = float(np.sum(c * np.exp(-lam * t1)))
        slope = float(-np.sum(c * lam * np.exp(-lam * t1)))
        return a1, (-slope / a1 if a1 > 0 else 0.0)

    def head_area(q, choice):
        if choice == "fitted" and rise is None:
            return float(model.integral(q, 0.0, t1)[0])
        a1, rate = first_activity_and_rate(q)
        if choice == "prior":
            return extrapolation.prior_head_MBq_h(a1, t1, rate, uptake_prior)[0]
        return extrapolation.head_area_MBq_h(choice, a1, t1, rate, uptake_half_life_h)

    def tia_of(q, choice=head):
        return head_area(q, choice) + rise_area + float(model.integral(q, t_start, np.inf)[0])

    tia = tia_of(p)
    body = rise_area + float(model.integral(p, t_start, tn)[0])
    gradient = _numerical_gradient(tia_of, p)
    fit_var = float(gradient @ covariance @ gradient) if np.all(np.isfinite(covariance)) else np.nan
    if rise is not None:
        fit_var += _rise_variance(rise, rise_weights, head, t1, fit)
    fit_sd = float(np.sqrt(max(fit_var, 0.0))) if np.isfinite(fit_var) else np.nan
    chosen_head = head_area(p, head)
    names = ["midpoint", "linear", "extrapolate"] + (["uptake"] if uptake_half_life_h is not None else []) \
        + (["fitted"] if model.name != "mono" else []) + (["prior"] if uptake_prior is not None else [])
    heads = {name: tia_of(p, name) for name in names}
    if head == "prior":
        a1, rate = first_activity_and_rate(p)
        head_sd = extrapolation.prior_head_MBq_h(a1, t1, rate, uptake_prior)[1]
    else:
        head_sd = extrapolation.head_uncertainty_MBq_h(chosen_head, head_area(p, "linear"),
                                                       head_area(p, "extrapolate"))

    terminal = float(model.terminal_rate(p)[0])
    c, lam = model.terms(p)
    slope_last = float(-np.sum(c * lam * np.exp(-lam * tn)))
    all_t = t if rise is None else np.concatenate([rise[0][:-1], t])
    all_y = y if rise is None else np.concatenate([rise[1][:-1], y])
    model_free = extrapolation.model_free_tia_MBq_h(all_t, all_y, chosen_head)
    reason = extrapolation.tail_check(t, y, terminal, slope_last)
    tail_sd = abs(model_free - tia) / np.sqrt(3.0) if reason else 0.0

    coverage = body / tia
    warnings = list(notes) + _fit_warnings(fit, model)
    rates = p[model.n_amplitudes:]
    if model.name != "mono" and np.isclose(rates[-1], MAX_RATE_PER_H, rtol=1e-6):
        warnings.append("The fitted uptake rate reached its upper bound: the scans do not resolve the uptake phase.")
    if reason:
        warnings.append(f"After the last scan {reason}: the fitted curve's extrapolation gives a TIA of {tia:.4g} "
                        f"MBq h, the trapezoid through the measured activities with physical decay after the last "
                        f"one {model_free:.4g} MBq h. Add a later scan or check the VOI.")
    warnings += _coverage_warnings(coverage)
    terms = {"fit": fit_sd, "before_first_scan": head_sd, "after_last_scan": tail_sd}
    return TacFit(model=model.name, parameters=dict(zip(model.parameter_names, (float(v) for v in p))),
                  covariance=covariance, tia_MBq_h=tia, tia_uncertainty_MBq_h=_quadrature(terms),
                  coverage_fraction=coverage, effective_half_life_h=float(np.log(2.0) / terminal), warnings=warnings,
                  times_h=t, activity_MBq=y, aicc=scores, head=head, uncertainty_terms_MBq_h=terms,
                  tia_alternatives_MBq_h={"before_first_scan": heads,
                                          "after_last_scan": {"fitted_curve": tia,
                                                              "trapezoid_physical_decay": model_free}},
                  degrees_of_freedom=int(fit["dof"]), covariance_scale=float(fit["scale"]),
                  uptake_half_life_h=uptake_half_life_h, uptake_prior=uptake_prior,
                  fitted_from_h=None if rise is None else t_start)


def _rise_variance(rise, rise_weights, head, t1, fit):
    """Variance of the trapezoids (and head) over the measured rising points, except the first fitted
    point (its uncertainty is in the fit). Without activity uncertainties the relative scatter of the
    fit stands in for them."""
    rise_t, rise_y, rise_sigma = rise
    weights = rise_weights[:-1].copy()
    weights[0] += t1 * extrapolation.HEAD_FRACTION.get(head, 0.75)
    if rise_sigma is None:
        relative = np.sqrt(fit["wrss"] / fit["dof"]) if fit["dof"] > 0 else 0.0
        sigma = relative * rise_y[:-1]
    else:
        sigma = rise_sigma[:-1] * np.sqrt(fit["scale"])
    return float(np.sum((weights * sigma) ** 2))


def _fit_warnings(fit, model):
    warnings = []
    terminal = float(model.terminal_rate(fit["p"])[0])
    if np.isclose(terminal, DECAY_CONSTANT_PER_H, rtol=1e-6):
        warnings.append("The fitted clearance is no faster than physical decay of 131I (the lower bound of the "
                        "fit): the data show no biological clearance.")
    dof, scale = fit["dof"], fit["scale"]
    if dof <= 0 and not np.isfinite(scale):
        warnings.append("The curve passes through every point and no activity uncertainties were given: the fit "
                        "uncertainty cannot be estimated; give activity uncertainties or add scans.")
    elif dof <= 0:
        warnings.append("The curve passes through every point: the fit uncertainty rests on the stated activity "
                        "uncertainties alone.")
    elif dof <= 2:
        warnings.append(f"The scatter about the fit is estimated from only {dof} degree(s) of freedom: the fit "
                        "uncertainty is a rough estimate.")
    return warnings


def _numerical_gradient(function, p):
    """Central differences of a scalar function of the parameter vector."""
    gradient = np.empty(p.size)
    for i in range(p.size):
        step = 1e-6 * max(abs(p[i]), 1e-9)
        up, down = p.copy(), p.copy()
        up[i] += step
        down[i] -= step
        gradient[i] = (function(up) - function(down)) / (2.0 * step)
    return gradient


def _quadrature(terms):
    return float(np.sqrt(sum(v ** 2 for v in terms.values())))


def _finite_or_none(value):
    return float(value) if value is not None and np.isfinite(value) else None


def _coverage_warnings(coverage):
    if coverage >= MIN_COVERAGE_FRACTION:
        return []
    return [f"Only {100 * coverage:.1f} % of the time-integrated activity lies between the first and the last "
            f"scan (EANM guidance: more than {100 * MIN_COVERAGE_FRACTION:.0f} %); the extrapolated part "
            "dominates, so treat the result with caution or add scans."]


def _trapezoid(t, y, sigma, tail, head):
    if tail not in ("fit", "physical"):
        raise ValueError(f"Unknown tail '{tail}'; choose 'fit' or 'physical'.")
    if head not in extrapolation.TRAPEZOID_HEADS:
        raise ValueError(f"Unknown head '{head}' for the trapezoid; choose one of "
                         f"{', '.join(extrapolation.TRAPEZOID_HEADS)}.")
    warnings = []
    n = len(t)
    n_tail = min(TAIL_POINTS, n)
    tail_idx = np.arange(n - n_tail, n)
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
        if fitted_rate is None or n_tail <= 2:
            sd_rel = 0.0
            warnings.append("No activity uncertainties and too few points to estimate the scatter: the TIA "
                            "uncertainty covers the extrapolation before the first scan only.")
        else:
            log_y = np.log(y[tail_idx])
            predicted = log_y.mean() - fitted_rate * (tt - tt.mean())
            sd_rel = float(np.sqrt(np.sum((log_y - predicted) ** 2) / (n_tail - 2)))
        sigma_used = sd_rel * y
    else:
        sigma_used = sigma
    fit_sd = float(np.sqrt(np.sum((gradient * sigma_used) ** 2)))
    rest = tia - HEAD_WEIGHTS[head] * t[0] * y[0]
    heads = {name: rest + weight * t[0] * y[0] for name, weight in HEAD_WEIGHTS.items()}
    head_sd = extrapolation.head_uncertainty_MBq_h(HEAD_WEIGHTS[head] * t[0] * y[0], 0.5 * t[0] * y[0], t[0] * y[0])
    physical_tail = tia - y[-1] / rate + y[-1] / DECAY_CONSTANT_PER_H
    coverage = body / tia
    warnings += _coverage_warnings(coverage)
    rate_var = float(np.sum((d_rate_dy * sigma_used) ** 2))
    terms = {"fit": fit_sd, "before_first_scan": head_sd, "after_last_scan": 0.0}
    return TacFit(model="trapezoid", parameters={"tail_lambda_per_h": rate}, covariance=np.array([[rate_var]]),
                  tia_MBq_h=tia, tia_uncertainty_MBq_h=_quadrature(terms), coverage_fraction=coverage,
                  effective_half_life_h=float(np.log(2.0) / rate), warnings=warnings, times_h=t, activity_MBq=y,
                  activity_uncertainty_MBq=sigma, head=head, uncertainty_terms_MBq_h=terms,
                  tia_alternatives_MBq_h={"before_first_scan": heads,
                                          "after_last_scan": {"tail_used": tia,
                                                              "trapezoid_physical_decay": physical_tail}})


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
    tia_sd = float(np.sqrt(gradient @ covariance @ gradient))
    return TacFit(model="single", parameters={"a_MBq": float(a), "lambda_per_h": float(rate)},
                  covariance=covariance, tia_MBq_h=tia, tia_uncertainty_MBq_h=tia_sd,
                  uncertainty_terms_MBq_h={"fit": tia_sd, "before_first_scan": 0.0, "after_last_scan": 0.0},
                  coverage_fraction=coverage, effective_half_life_h=float(half_life_h), warnings=warnings,
                  times_h=t, activity_MBq=y, activity_uncertainty_MBq=sigma)
