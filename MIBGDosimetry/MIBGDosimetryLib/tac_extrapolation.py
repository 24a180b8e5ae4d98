"""The parts of a time-activity curve that no scan measures: before the first scan and after the last.

Before the first scan (the "head", from administration at t = 0 to the first scan t1) the curve is
an assumption. With ``A1`` the activity of the curve at t1 and ``k1 = -A'(t1)/A(t1)`` its clearance
rate there (floored at 0), the choices are:

- ``"extrapolate"``: mono-exponential back-extrapolation, ``A1 (exp(k1 t1) - 1) / k1``: the clearance
  seen at the first scan held back to t = 0, i.e. instantaneous uptake. For a mono-exponential fit
  this is the fitted curve itself.
- ``"linear"``: linear uptake from zero at administration, ``A1 t1 / 2``.
- ``"midpoint"``: the mean of the two. An uptake curve ``a (exp(-k t) - exp(-k_u t))`` is concave
  before its inflection point (twice its peak time), so there it lies above its chord from the
  origin and below the clearance curve extrapolated back: ``"linear"`` and ``"extrapolate"`` bound
  the head, and the midpoint is the best estimate when nothing is known about the uptake.
- ``"uptake"``: uptake with a given half-time ``T_u`` (from a tracer study or a population value):
  ``A(t) = A1 h(t) / h(t1)`` with ``h(t) = exp(-k1 t) - exp(-ln2 t / T_u)``.
- ``"fitted"``: the fitted curve's own uptake phase (bi- and tri-exponential models only).
- ``"prior"``: uptake with a half-time that is not known for this patient but follows a stated
  prior, log-normal with median ``m`` and geometric standard deviation ``g`` (:data:`UPTAKE_PRIOR`
  per VOI class): the head area is the expectation of the ``"uptake"`` area over the prior and its
  standard uncertainty the standard deviation over the prior (Gauss-Hermite quadrature over
  ``ln T_u``, :func:`prior_head_MBq_h`), both for the fitted curve of this VOI.

Default of :func:`MIBGDosimetryLib.tac.fit_tac` (for the mono-exponential without a given uptake
half-time or prior): ``"extrapolate"``; the dose workflow gives every VOI its class's prior
(:data:`UPTAKE_PRIOR`), so its default is ``"prior"``, which removes the expected uptake. 131I-mIBG
is taken up by the noradrenaline transporter within hours of the infusion, while the first
post-therapy scan comes about a day later; an uptake with half-time ``T_u`` removes about
``T_u / T_eff`` of the TIA relative to instantaneous uptake (``T_eff`` the effective half-life), a
few per cent for ``T_u`` of 1-2 h. Linear uptake over the whole first day, the other bound, would
remove far more: about 15-50 % of the organ TIAs of the demonstration phantom (uptake half-times
0.5-2.5 h, first scan at 21 h; see ``tia_alternatives_MBq_h`` in its results), whose mean doses
Testing/test_dose_workflow.py checks to 10 % with the default. Where
the uptake is slower (several hours), a tracer study's uptake half-time with ``"uptake"`` removes
the overestimate; every result lists the TIA under each choice and its relative sensitivity.

With the ``"prior"`` head the standard uncertainty of the head is the prior's spread of the head
area. With any other head it treats the truth as
uniformly distributed between the bounds ``L`` (linear) and ``U`` (back-extrapolation) (GUM,
JCGM 100:2008, 4.3.7): the root-mean-square deviation of the chosen head area ``e`` from it is
``sqrt(((U - e)^3 + (e - L)^3) / (3 (U - L)))`` (``(U - L) / sqrt 3`` at a bound,
``(U - L) / (2 sqrt 3)`` at the midpoint), with the range widened to include ``e``.

After the last scan the fitted curve continues (EANM guidance: extrapolate the later time points
rather than assume physical decay). When the measured activity is still rising at the last scan, or
the fitted clearance is no faster than physical decay of 131I, that extrapolation is not supported by
the data; the alternative is then the model-free estimate (trapezoid through the measured activities,
physical decay after the last one) and the "extrapolation after the last scan" term is the
root-mean-square deviation for a truth uniformly distributed between the two:
``|TIA_alternative - TIA| / sqrt 3``.
"""

import numpy as np

from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H

HEADS = ("midpoint", "linear", "extrapolate", "uptake", "fitted", "prior")
#: Prior of the uptake half-time T_u (h) per VOI class, log-normal: (median, geometric standard
#: deviation). An assumption, not a published population value: 131I-mIBG is taken up by the
#: noradrenaline transporter within hours of an infusion of 1-2 h (the uptake half-time counted from
#: the infusion's start), so T_u between about 0.25 and 4 h (organs) or 0.4 and 6 h (lesions) at 95 %.
#: The urinary bladder is no uptake organ: it collects urine from the first minutes after the
#: infusion, 131I-mIBG being excreted unchanged by the kidneys, so its contents rise with the renal
#: clearance of the activity still in the blood; its class ("bladder", any organ VOI whose name
#: contains "bladder") takes a shorter median, again an assumption.
#: Change it (DoseOptions.uptake_prior) when a tracer study of the population gives it.
UPTAKE_PRIOR = {"organ": (1.0, 2.0), "lesion": (1.5, 2.0), "bladder": (0.5, 2.0)}


def prior_class(kind, name):
    """The uptake-prior class of a VOI: "bladder" for an organ named as the urinary bladder, else its kind."""
    return "bladder" if kind == "organ" and "bladder" in str(name).lower() else kind
#: Nodes of the Gauss-Hermite quadrature over the prior (exact for polynomials of degree < 2 x nodes in ln T_u).
PRIOR_NODES = 24
TRAPEZOID_HEADS = ("linear", "constant", "midpoint")
#: Head area in units of (first activity x first scan time) for a curve still rising at the first scan
#: (no clearance): linear 1/2, extrapolate (constant) 1, midpoint 3/4. "uptake" lies between; 3/4 is used
#: for its sensitivity to the first activity.
HEAD_FRACTION = {"linear": 0.5, "extrapolate": 1.0, "midpoint": 0.75}


def _decayed_area(rate_per_h, duration_h):
    """Integral of exp(rate t) from 0 to duration (stable for rate -> 0)."""
    rate = float(rate_per_h)
    if abs(rate) * duration_h < 1e-8:
        return duration_h * (1.0 + rate * duration_h / 2.0)
    return float(np.expm1(rate * duration_h) / rate)


def head_area_MBq_h(head, first_activity_MBq, first_time_h, clearance_rate_per_h, uptake_half_life_h=None):
    """Area (MBq h) under the curve from administration to the first scan for an assumed head shape.

    ``clearance_rate_per_h`` is the curve's rate of clearance at the first scan (negative values,
    a curve still rising there, count as 0). ``"fitted"`` is not handled here: it is the fitted
    model's own integral.
    """
    a1, t1 = float(first_activity_MBq), float(first_time_h)
    k1 = max(float(clearance_rate_per_h), 0.0)
    if head == "linear":
        return a1 * t1 / 2.0
    if head == "extrapolate":
        return a1 * _decayed_area(k1, t1)
    if head == "midpoint":
        return 0.5 * (a1 * t1 / 2.0 + a1 * _decayed_area(k1, t1))
    if head == "uptake":
        if uptake_half_life_h is None or not np.isfinite(uptake_half_life_h) or uptake_half_life_h <= 0:
            raise ValueError("The 'uptake' head needs a positive uptake half-time in hours.")
        ku = np.log(2.0) / float(uptake_half_life_h)
        if abs(ku - k1) < 1e-9 * ku:
            # exp(-k t) - exp(-ku t) vanishes for ku = k; the limit t exp(-k t) gives the same ratio.
            ku *= 1.0 + 1e-6
        # h(t) = exp(-k1 t) - exp(-ku t) = exp(-k1 t) (1 - exp(-(ku - k1) t)); both signs of ku - k1 work.
        integral = _decayed_area(-k1, t1) - _decayed_area(-ku, t1)
        at_first = np.exp(-k1 * t1) - np.exp(-ku * t1)
        return a1 * integral / at_first
    raise ValueError(f"Unknown head '{head}' (activity before the first scan); choose one of {', '.join(HEADS)}.")


def check_prior(prior):
    """``(median_h, gsd)`` of a log-normal uptake half-time prior, checked; raises ValueError."""
    try:
        median_h, gsd = (float(v) for v in prior)
    except (TypeError, ValueError):
        raise ValueError(f"An uptake half-time prior is (median hours, geometric standard deviation), got {prior!r}.")
    if not (np.isfinite(median_h) and median_h > 0 and np.isfinite(gsd) and gsd >= 1.0):
        raise ValueError(f"An uptake half-time prior needs a positive median (h) and a geometric standard deviation "
                         f"of at least 1, got {median_h:g} h and {gsd:g}.")
    return median_h, gsd


def prior_head_MBq_h(first_activity_MBq, first_time_h, clearance_rate_per_h, prior):
    """Mean and standard deviation (MBq h) of the head area over a log-normal prior ``(median_h, gsd)``
    of the uptake half-time (the ``"uptake"`` head at each quadrature node)."""
    median_h, gsd = check_prior(prior)
    nodes, weights = np.polynomial.hermite_e.hermegauss(PRIOR_NODES)
    weights = weights / weights.sum()
    areas = np.array([head_area_MBq_h("uptake", first_activity_MBq, first_time_h, clearance_rate_per_h,
                                      median_h * gsd ** z) for z in nodes])
    mean = float(weights @ areas)
    return mean, float(np.sqrt(max(float(weights @ (areas - mean) ** 2), 0.0)))


def head_uncertainty_MBq_h(estimate, lower, upper):
    """RMS deviation of ``estimate`` from a truth uniform on ``[lower, upper]`` (widened to include it)."""
    lo, hi = min(lower, upper, estimate), max(lower, upper, estimate)
    if hi - lo <= 0:
        return 0.0
    return float(np.sqrt(((hi - estimate) ** 3 + (estimate - lo) ** 3) / (3.0 * (hi - lo))))


def model_free_tia_MBq_h(times_h, activity_MBq, head_area):
    """Trapezoid through the measured activities plus ``head_area``, physical decay of 131I after the last scan."""
    t, y = np.asarray(times_h, float), np.asarray(activity_MBq, float)
    body = float(np.sum(np.diff(t) * (y[:-1] + y[1:]) / 2.0))
    return head_area + body + float(y[-1]) / DECAY_CONSTANT_PER_H


def tail_check(times_h, activity_MBq, terminal_rate_per_h, slope_at_last_scan):
    """Why the extrapolation after the last scan is unsupported, or None.

    ``slope_at_last_scan`` is dA/dt of the fitted curve at the last scan (MBq/h).
    """
    y = np.asarray(activity_MBq, float)
    if len(y) >= 2 and y[-1] > y[-2]:
        return "the measured activity is still rising at the last scan"
    if slope_at_last_scan > 0:
        return "the fitted curve is still rising at the last scan"
    if terminal_rate_per_h <= DECAY_CONSTANT_PER_H * (1.0 + 1e-6):
        return "the fitted clearance is no faster than physical decay of 131I (effective half-life at its upper bound)"
    return None
