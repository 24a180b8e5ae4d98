"""Sums of exponentials used as time-activity curve models, with analytic integrals and derivatives.

Every model is written as ``A(t) = sum_j c_j exp(-lambda_j t)`` (t in hours after administration,
A in MBq). The fitted parameters are a vector ``p = [amplitudes..., rates...]``; each coefficient
``c_j`` is a fixed linear combination of the amplitudes and each rate ``lambda_j`` is one of the
rate parameters. This one description gives the value, the Jacobian, the integral over any
interval and its gradient in closed form, for one curve or for millions of voxels at once
(parameter arrays of shape ``(k, N)``).

Models:

- ``mono``: ``a exp(-l t)``; instantaneous uptake at t = 0.
- ``bi``: ``a (exp(-l_w t) - exp(-l_u t))``; uptake with rate ``l_u`` and washout with rate
  ``l_w``, starting from zero at t = 0 (the amplitudes of the two terms sum to zero).
- ``tri``: ``a1 exp(-l1 t) + a2 exp(-l2 t) - (a1 + a2) exp(-l_u t)``; uptake and a two-phase
  washout, starting from zero at t = 0.

All amplitudes are non-negative and every rate is bounded below by the physical decay constant of
131I: without continued uptake, activity cannot disappear more slowly than by physical decay.
With non-negative amplitudes the ``bi`` and ``tri`` curves are non-negative only when the uptake
rate is the fastest, so the fit itself keeps the phases in order.
"""

import dataclasses

import numpy as np

from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H

#: Fastest rate a fit may use (1/h): a half-time of about 4 minutes, far below any scan interval.
MAX_RATE_PER_H = 10.0
#: Relative weights: sigma is the activity, but at least this fraction of the curve's largest
#: activity, so that near-empty points do not dominate the fit.
RELATIVE_SIGMA_FLOOR = 0.01
#: Number of last scans the clearance after the last scan is estimated from.
TAIL_POINTS = 3


@dataclasses.dataclass(frozen=True)
class ExponentialModel:
    """A time-activity model ``A(t) = sum_j c_j exp(-lambda_j t)`` with ``c = M a`` and
    ``lambda_j = r[rate_index[j]]`` for the parameter vector ``p = [a..., r...]``."""

    name: str
    amplitude_names: tuple
    rate_names: tuple
    amplitude_matrix: tuple  # one row per term: coefficients of the amplitudes
    rate_index: tuple  # one entry per term: which rate parameter the term decays with
    washout_rates: tuple  # indices of the rate parameters that describe clearance

    @property
    def parameter_names(self):
        return self.amplitude_names + self.rate_names

    @property
    def n_parameters(self):
        return len(self.amplitude_names) + len(self.rate_names)

    @property
    def n_amplitudes(self):
        return len(self.amplitude_names)

    def lower_bounds(self):
        return np.array([0.0] * self.n_amplitudes + [DECAY_CONSTANT_PER_H] * len(self.rate_names))

    def upper_bounds(self):
        return np.array([np.inf] * self.n_amplitudes + [MAX_RATE_PER_H] * len(self.rate_names))

    def terms(self, p):
        """Coefficients ``c`` (terms, N) in MBq and rates ``lambda`` (terms, N) in 1/h."""
        p = _as_columns(p)
        amplitudes = p[: self.n_amplitudes]
        rates = p[self.n_amplitudes:]
        # An explicit sum over the few amplitudes: cheaper than a BLAS call for these tiny matrices.
        coefficients = np.zeros((len(self.rate_index), p.shape[1]))
        for j, row in enumerate(self.amplitude_matrix):
            for m, factor in enumerate(row):
                if factor:
                    coefficients[j] += factor * amplitudes[m]
        return coefficients, rates[list(self.rate_index)]

    def value(self, times_h, p):
        """Activity (MBq) at ``times_h``: shape (T, N)."""
        c, lam = self.terms(p)
        t = np.asarray(times_h, dtype=float)[:, None, None]
        return np.sum(c[None] * np.exp(-lam[None] * t), axis=1)

    def jacobian(self, times_h, p):
        """dA/dp at ``times_h``: shape (k, T, N)."""
        return self.value_and_jacobian(times_h, p)[1]

    def value_and_jacobian(self, times_h, p):
        """Activity (T, N) and dA/dp (k, T, N) from one evaluation of the exponentials."""
        p = _as_columns(p)
        c, lam = self.terms(p)
        t = np.asarray(times_h, dtype=float)[:, None, None]
        e = np.exp(-lam[None] * t)  # (T, terms, N)
        ce = c[None] * e
        matrix = np.asarray(self.amplitude_matrix, dtype=float)
        jac = np.empty((self.n_parameters,) + e.shape[:1] + e.shape[2:])
        jac[: self.n_amplitudes] = np.einsum("jm,tjn->mtn", matrix, e)
        for q in range(len(self.rate_names)):
            terms = [j for j, idx in enumerate(self.rate_index) if idx == q]
            jac[self.n_amplitudes + q] = -t[:, 0] * ce[:, terms].sum(axis=1)
        return ce.sum(axis=1), jac

    def integral(self, p, start_h=0.0, stop_h=np.inf):
        """Integral of A(t) from ``start_h`` to ``stop_h`` (MBq h), shape (N,)."""
        c, lam = self.terms(p)
        return np.sum(c * _interval_weight(lam, start_h, stop_h), axis=0)

    def integral_gradient(self, p, start_h=0.0, stop_h=np.inf):
        """d(integral)/dp, shape (k, N)."""
        p = _as_columns(p)
        c, lam = self.terms(p)
        weight = _interval_weight(lam, start_h, stop_h)
        matrix = np.asarray(self.amplitude_matrix, dtype=float)
        grad = np.empty((self.n_parameters, p.shape[1]))
        grad[: self.n_amplitudes] = np.tensordot(matrix.T, weight, axes=(1, 0))
        d_weight = c * _interval_weight_rate_derivative(lam, start_h, stop_h)
        for q in range(len(self.rate_names)):
            terms = [j for j, idx in enumerate(self.rate_index) if idx == q]
            grad[self.n_amplitudes + q] = d_weight[terms].sum(axis=0)
        return grad

    def terminal_rate(self, p):
        """Rate of the slowest clearance phase (1/h), shape (N,)."""
        p = _as_columns(p)
        rates = p[self.n_amplitudes:]
        return np.min(rates[list(self.washout_rates)], axis=0)


def _as_columns(p):
    p = np.asarray(p, dtype=float)
    return p[:, None] if p.ndim == 1 else p


def _interval_weight(lam, start_h, stop_h):
    """Integral of exp(-lam t) from start to stop."""
    upper = 0.0 if np.isinf(stop_h) else np.exp(-lam * stop_h)
    return (np.exp(-lam * start_h) - upper) / lam


def _interval_weight_rate_derivative(lam, start_h, stop_h):
    """d/dlam of the integral of exp(-lam t) from start to stop."""
    e0 = np.exp(-lam * start_h)
    if np.isinf(stop_h):
        e1, t1e1 = 0.0, 0.0
    else:
        e1 = np.exp(-lam * stop_h)
        t1e1 = stop_h * e1
    return (-start_h * e0 + t1e1) / lam - (e0 - e1) / lam ** 2


MONO = ExponentialModel("mono", ("a_MBq",), ("lambda_per_h",), ((1.0,),), (0,), (0,))
BI = ExponentialModel("bi", ("a_MBq",), ("lambda_washout_per_h", "lambda_uptake_per_h"),
                      ((1.0,), (-1.0,)), (0, 1), (0,))
TRI = ExponentialModel("tri", ("a1_MBq", "a2_MBq"),
                       ("lambda1_per_h", "lambda2_per_h", "lambda_uptake_per_h"),
                       ((1.0, 0.0), (0.0, 1.0), (-1.0, -1.0)), (0, 1, 2), (0, 1))

#: The exponential models by name, simplest first.
MODELS = {m.name: m for m in (MONO, BI, TRI)}


def tail_rate_per_h(times_h, activity_MBq, n_points=3):
    """Clearance rate (1/h) from a log-linear least-squares fit of the last ``n_points`` scans.

    ``activity_MBq`` has shape (T, N); voxels with a non-positive activity among those points get
    NaN. The rate is not bounded here.
    """
    t = np.asarray(times_h, dtype=float)[-n_points:]
    y = np.asarray(activity_MBq, dtype=float)[-n_points:]
    dt = t - t.mean()
    positive = np.all(y > 0, axis=0)
    log_y = np.log(np.where(positive, y, 1.0))
    rate = -np.einsum("t,tn->n", dt, log_y) / np.sum(dt * dt)
    return np.where(positive, rate, np.nan)


def trapezoid_weights(times_h, tail_rate, head="linear"):
    """Weights ``w`` (T, N) with ``TIA = sum_t w_t A_t`` for the trapezoidal rule between scans,
    a head before the first scan (``"linear"`` from zero at t = 0, ``"constant"`` at the first
    activity, or ``"midpoint"``, their mean) and a mono-exponential tail
    ``A_last exp(-rate (t - t_last))`` after the last scan."""
    t = np.asarray(times_h, dtype=float)
    rate = np.atleast_1d(np.asarray(tail_rate, dtype=float))
    weights = np.zeros((t.size, rate.size))
    dt = np.diff(t)
    weights[:-1] += dt[:, None] / 2
    weights[1:] += dt[:, None] / 2
    weights[0] += t[0] * HEAD_WEIGHTS[head]
    weights[-1] += 1.0 / rate
    return weights


#: Area before the first scan of the trapezoid, in units of (first activity x first scan time).
HEAD_WEIGHTS = {"linear": 0.5, "constant": 1.0, "midpoint": 0.75}


def relative_sigma(activity_MBq):
    """Relative-weight sigma of curves (T, N): the activity, floored at RELATIVE_SIGMA_FLOOR x the curve maximum."""
    y = np.asarray(activity_MBq, dtype=float)
    return np.maximum(y, RELATIVE_SIGMA_FLOOR * y.max(axis=0))


def aicc_parameters(n_parameters):
    """Parameters AICc counts: the fitted ones plus the variance of the residuals (Burnham and Anderson,
    Model Selection and Multimodel Inference, 2nd ed. 2002, section 2.2)."""
    return n_parameters + 1


def aicc_eligible(n_points, n_parameters):
    """Whether AICc is defined for a model: ``n - K - 1 > 0`` with K counting the variance too."""
    return n_points - aicc_parameters(n_parameters) - 1 > 0


def aicc(wrss, n_points, n_parameters, mean_square_scale):
    """Corrected Akaike information criterion ``n ln(WRSS/n) + 2K + 2K(K+1)/(n-K-1)`` (Glatting G et al.,
    Med Phys 34 (2007) 4285-4292) with ``K = n_parameters + 1`` (the residual variance is estimated
    too), defined only for ``n - K - 1 > 0`` (:func:`aicc_eligible`; otherwise ValueError).

    WRSS below ``n x 1e-18 x mean_square_scale`` (the mean of (y/sigma)^2: a relative residual of
    1e-9) is rounding, not information, and is raised to that floor so that noise-free data compare
    models by their penalties.
    """
    n, k = n_points, aicc_parameters(n_parameters)
    if not aicc_eligible(n_points, n_parameters):
        raise ValueError(f"AICc is not defined for {n_parameters} fitted parameters and {n_points} points "
                         "(it needs more points than parameters + 2).")
    floor = n * 1e-18 * np.asarray(mean_square_scale, dtype=float) + 1e-300
    return n * np.log(np.maximum(wrss, floor) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
