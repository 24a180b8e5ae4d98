"""Time-integrated activity maps, two ways.

:func:`regional_voxel_tia` (what the dose workflow uses by default): every voxel follows the fitted
kinetics of the region (VOI) it belongs to and only its amplitude is its own. With the region's
fitted curve ``A_R(t)`` (shape ``g = A_R / TIA_R``) and weights ``1/g(t_i)`` (variance proportional
to the expected counts, as for Poisson counts) the least-squares amplitude has a closed form, and the
voxel's TIA is

    ``TIA_v = TIA_R x sum_i y_v(t_i) / sum_i A_R(t_i)``

over the region's fitted time points. It is linear in the measured activities, so zero-mean noise
(also zeros and negative values after scatter subtraction) averages out: no voxel falls back to
another method and no clipping biases it. The price: kinetics that differ within a region are not
resolved (the activity distribution at each time is). A voxel whose sum is negative gets TIA 0.

:func:`fit_voxels`: the time-activity models of :mod:`MIBGDosimetryLib.tac` fitted in every voxel at
once (chosen with an explicit voxel model).

The exponential fits minimise the same relatively weighted residuals as :func:`MIBGDosimetryLib.tac.fit_tac`
without activity uncertainties (sigma proportional to the activity, floored at 1 % of the voxel's
largest activity) under the same bounds, so a voxel whose curve equals a VOI's curve gets that VOI's
TIA. Instead of a per-voxel optimiser loop, all voxels of a chunk are fitted together:

1. initial estimates in closed form: a log-linear least-squares fit (``mono``) or a small grid of
   rates around the voxel's observed clearance with amplitudes from linear least squares
   (``bi``, ``tri``), the best grid point per voxel;
2. projected Levenberg-Marquardt steps on all voxels at once (the k x k normal equations of all
   voxels solved together, in closed form for k <= 2; steps clipped to the bounds, the damping
   adapted per voxel).

``model="auto"`` picks per voxel the model with the smallest AICc among those allowed by the same
rule as for VOIs (``T - K - 1 > 0`` with K = k + 1; with 3 or 4 time points the mono-exponential).
Before the first scan the same default head as for VOIs without an uptake half-time:
mono-exponential back-extrapolation, or the fitted uptake of ``bi``/``tri`` when it is resolved
(see :mod:`MIBGDosimetryLib.tac_extrapolation`).

Fallback (biased for noisy voxels, which is why the workflow uses :func:`regional_voxel_tia`): a
voxel whose fit is not valid gets the trapezoidal TIA (linear head from zero at t = 0)
with a physical-decay tail. A fit is not valid when a voxel activity is not positive at some time
point (zero or noise-dominated voxel: neither a log-linear start nor relative weights make sense),
when the optimisation gives a non-finite result, or when the relative root-mean-square residual
exceeds ``max_relative_residual`` (default 0.3: the model does not describe the voxel). Voxels whose
activity is zero at every time point get TIA 0. Negative activities (noise after scatter
subtraction) are treated as zero. ``info`` counts each case.
"""

import time

import numpy as np

from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H
from MIBGDosimetryLib.tac_models import (MAX_RATE_PER_H, MODELS, RELATIVE_SIGMA_FLOOR, TAIL_POINTS, aicc,
                                         aicc_eligible, relative_sigma, tail_rate_per_h, trapezoid_weights)

#: Voxels fitted together; bounds the memory of the per-voxel work arrays (normal equations, Jacobians).
CHUNK_VOXELS = 1 << 17
VOXEL_METHODS = ("auto", "mono", "bi", "tri", "trapezoid")
VOXEL_HEADS = (None, "midpoint", "linear", "extrapolate", "fitted")
#: Most exponential terms of any model (tri).
MAX_TERMS = 3


def fit_voxels(times_h, activity_maps_MBq, model="auto", *, mask=None, iterations=60, tail="fit",
               max_relative_residual=0.3, return_terms=False, head=None):
    """Time-integrated activity (MBq h) of every voxel.

    Parameters
    ----------
    times_h : sequence of float, length T
        Scan times in hours after administration, increasing.
    activity_maps_MBq : array (T, ...)
        Activity per voxel at each time point on one common grid (registered and resampled).
    model : {"auto", "mono", "bi", "tri", "trapezoid"}
    mask : bool array (...), optional
        Voxels to integrate; the others get 0. Default: every voxel.
    iterations : int
        Largest number of Levenberg-Marquardt steps after the closed-form start (voxels that have
        converged stop earlier).
    tail : {"fit", "physical"}
        ``"trapezoid"`` only: tail from the log-linear fit of the last 3 points (never slower than
        physical decay) or physical decay.
    max_relative_residual : float
        Largest relative RMS residual of a valid exponential fit.
    head : {None, "midpoint", "linear", "extrapolate", "fitted"}
        Exponential models: the activity before the first scan, as in :func:`MIBGDosimetryLib.tac.fit_tac`
        (None: its default). The trapezoid always rises linearly from zero.
    return_terms : bool
        Also return each voxel's curve as a sum of exponentials (for the Lea-Catcheside factor of
        :mod:`MIBGDosimetryLib.dose.radiobiology`): ``info["coefficients_MBq"]`` and
        ``info["rates_per_h"]``, shape (3, ...), unused terms with coefficient 0. Trapezoid and
        fallback voxels are described by the mono-exponential with their tail rate and the same TIA.

    Returns ``(tia_map_MBq_h, info)``: the map has the shape of one activity map (float64);
    ``info`` holds ``model``, ``voxels`` (number integrated), ``counts`` (voxels per model actually
    used, ``trapezoid_fallback`` and ``empty``), ``terminal_rate_map_per_h`` (clearance rate of the
    curve used in each voxel, NaN outside the mask and for empty voxels) and ``elapsed_s``.
    """
    started = time.perf_counter()
    t, activity, mask = _checked_inputs(times_h, activity_maps_MBq, model, mask, tail, head)
    shape = activity.shape[1:]
    flat = activity.reshape(len(t), -1)
    selected = np.flatnonzero(mask.ravel())
    tia = np.zeros(flat.shape[1])
    terminal = np.full(flat.shape[1], np.nan)
    names = ["trapezoid"] if model == "trapezoid" else _candidates(model, len(t))
    counts = dict.fromkeys(names + ["trapezoid_fallback", "empty"], 0)
    if return_terms:
        coefficients = np.zeros((MAX_TERMS, flat.shape[1]))
        rates = np.full((MAX_TERMS, flat.shape[1]), DECAY_CONSTANT_PER_H)
    for begin in range(0, selected.size, CHUNK_VOXELS):
        index = selected[begin:begin + CHUNK_VOXELS]
        y = np.clip(flat[:, index], 0.0, None).astype(float)
        chunk_tia, chunk_rate, chosen, chunk_terms = _integrate_chunk(t, y, names, iterations, tail,
                                                                      max_relative_residual, head)
        tia[index] = chunk_tia
        terminal[index] = chunk_rate
        if return_terms:
            coefficients[:, index], rates[:, index] = chunk_terms
        for code, name in enumerate(list(counts)):
            counts[name] += int(np.count_nonzero(chosen == code))
    info = {"model": model, "voxels": int(selected.size), "counts": counts,
            "terminal_rate_map_per_h": terminal.reshape(shape)}
    if return_terms:
        info["coefficients_MBq"] = coefficients.reshape((MAX_TERMS,) + shape)
        info["rates_per_h"] = rates.reshape((MAX_TERMS,) + shape)
    info["elapsed_s"] = time.perf_counter() - started
    return tia.reshape(shape), info


def _checked_inputs(times_h, activity_maps_MBq, model, mask, tail, head):
    if model not in VOXEL_METHODS:
        raise ValueError(f"Unknown voxel time-activity model '{model}'; choose one of {', '.join(VOXEL_METHODS)}.")
    if tail not in ("fit", "physical"):
        raise ValueError(f"Unknown tail '{tail}'; choose 'fit' or 'physical'.")
    if head not in VOXEL_HEADS:
        raise ValueError(f"Unknown head '{head}'; choose one of midpoint, linear, extrapolate, fitted (or None).")
    t = np.asarray(times_h, dtype=float).ravel()
    activity = np.asarray(activity_maps_MBq)
    if activity.ndim < 2 or activity.shape[0] != t.size:
        raise ValueError(f"The activity maps must be stacked along the first axis, one per time point "
                         f"({t.size} times, maps of shape {activity.shape}).")
    if t.size < 3:
        raise ValueError(f"Voxel time-activity curves need at least 3 time points, got {t.size}.")
    if not np.all(np.isfinite(t)) or np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise ValueError("Scan times must be positive, finite and strictly increasing.")
    if not np.all(np.isfinite(activity)):
        raise ValueError("The activity maps contain non-finite values (NaN or infinity).")
    if mask is None:
        mask = np.ones(activity.shape[1:], dtype=bool)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != activity.shape[1:]:
            raise ValueError(f"The mask shape {mask.shape} differs from the map shape {activity.shape[1:]}.")
    if model in MODELS and MODELS[model].n_parameters >= t.size:
        raise ValueError(f"The '{model}' model needs more than {MODELS[model].n_parameters} time points, "
                         f"got {t.size}; choose a simpler model.")
    return t, activity, mask


def _candidates(model, n_times):
    if model != "auto":
        return [model]
    names = [name for name, m in MODELS.items() if aicc_eligible(n_times, m.n_parameters)]
    return names or ["mono"]


def _integrate_chunk(t, y, names, iterations, tail, max_relative_residual, head):
    """TIA, terminal rate, the index (into names + [fallback, empty]) of the method and the
    exponential terms (coefficients, rates) per voxel."""
    n = y.shape[1]
    empty = ~np.any(y > 0, axis=0)
    fitted_rate = tail_rate_per_h(t, y, TAIL_POINTS)
    if names == ["trapezoid"]:
        usable = np.isfinite(fitted_rate) & (tail == "fit")
        rate = np.where(usable, np.clip(np.nan_to_num(fitted_rate, nan=0.0), DECAY_CONSTANT_PER_H, None),
                        DECAY_CONSTANT_PER_H)
        tia = np.where(empty, 0.0, np.sum(trapezoid_weights(t, rate) * y, axis=0))
        chosen = np.where(empty, 2, 0)
        return tia, np.where(empty, np.nan, rate), chosen, _mono_terms(tia, rate)

    sigma = relative_sigma(y)
    sigma[:, empty] = 1.0
    best_tia = np.full(n, np.nan)
    best_rate = np.full(n, np.nan)
    best_score = np.full(n, np.inf)
    best_c, best_lam = _mono_terms(np.zeros(n), np.full(n, DECAY_CONSTANT_PER_H))
    chosen = np.full(n, len(names))
    fittable = np.all(y > 0, axis=0)
    for code, name in enumerate(names):
        m = MODELS[name]
        p = _initial_estimate(m, t, y, sigma, fitted_rate)
        p, wrss = _levenberg_marquardt(m, t, y, sigma, p, iterations)
        tia = _tia_with_head(m, p, t[0], head)
        relative_rms = np.sqrt(wrss / len(t))
        valid = fittable & np.isfinite(tia) & np.all(np.isfinite(p), axis=0) & (relative_rms <= max_relative_residual)
        # One candidate needs no comparison (and may have too many parameters for AICc).
        score = (aicc(wrss, len(t), m.n_parameters, np.mean((y / sigma) ** 2, axis=0)) if len(names) > 1
                 else np.zeros(n))
        better = valid & (score < best_score)
        best_score = np.where(better, score, best_score)
        best_tia = np.where(better, tia, best_tia)
        best_rate = np.where(better, m.terminal_rate(p), best_rate)
        c, lam = m.terms(p)
        best_c[:c.shape[0]] = np.where(better, c, best_c[:c.shape[0]])
        best_c[c.shape[0]:] = np.where(better, 0.0, best_c[c.shape[0]:])
        best_lam[:lam.shape[0]] = np.where(better, lam, best_lam[:lam.shape[0]])
        chosen = np.where(better, code, chosen)
    fallback = ~np.isfinite(best_score) & ~empty
    tia = np.sum(trapezoid_weights(t, np.full(n, DECAY_CONSTANT_PER_H)) * y, axis=0)
    best_tia = np.where(fallback, tia, best_tia)
    best_rate = np.where(fallback, DECAY_CONSTANT_PER_H, best_rate)
    chosen = np.where(empty, len(names) + 1, chosen)
    best_tia = np.where(empty, 0.0, best_tia)
    fallback_c, fallback_lam = _mono_terms(best_tia, best_rate)
    replace = fallback | empty
    best_c = np.where(replace, fallback_c, best_c)
    best_lam = np.where(replace, fallback_lam, best_lam)
    # The head before the first scan differs from the exponentials' own start; keep their shape, match the TIA.
    integral = np.sum(best_c / best_lam, axis=0)
    best_c = best_c * np.where(integral > 0, best_tia / np.where(integral > 0, integral, 1.0), 1.0)
    return best_tia, np.where(empty, np.nan, best_rate), chosen, (best_c, best_lam)


def _tia_with_head(model, p, first_time_h, head):
    """TIA of fitted curves (N,) with a head before the first scan as in :func:`MIBGDosimetryLib.tac.fit_tac`.

    ``head=None``: the fitted uptake for bi/tri unless the uptake rate sits at its bound, otherwise
    mono-exponential back-extrapolation (see :mod:`MIBGDosimetryLib.tac_extrapolation`); or one of
    "midpoint", "linear", "extrapolate", "fitted".
    """
    t1 = float(first_time_h)
    c, lam = model.terms(p)
    decay = np.exp(-lam * t1)
    a1 = np.sum(c * decay, axis=0)
    rate = np.where(a1 > 0, np.sum(c * lam * decay, axis=0) / np.where(a1 > 0, a1, 1.0), 0.0)
    rate = np.maximum(rate, 0.0)
    x = rate * t1
    back = a1 * t1 * np.where(x > 1e-8, np.expm1(x) / np.where(x > 1e-8, x, 1.0), 1.0 + x / 2.0)
    midpoint = 0.5 * (a1 * t1 / 2.0 + back)
    after = model.integral(p, t1, np.inf)
    chosen = {"midpoint": midpoint, "linear": a1 * t1 / 2.0, "extrapolate": back}
    if head in chosen:
        return after + chosen[head]
    if model.name == "mono":
        return after + back
    fitted = model.integral(p, 0.0, t1)
    if head == "fitted":
        return after + fitted
    resolved = ~np.isclose(np.asarray(p)[-1], MAX_RATE_PER_H, rtol=1e-6)
    return after + np.where(resolved, fitted, back)


def _mono_terms(tia, rate):
    """Exponential terms of the mono-exponential with the given TIA and rate (other terms empty)."""
    rate = np.where(np.isfinite(rate), rate, DECAY_CONSTANT_PER_H)
    coefficients = np.zeros((MAX_TERMS, tia.size))
    rates = np.full((MAX_TERMS, tia.size), DECAY_CONSTANT_PER_H)
    coefficients[0] = tia * rate
    rates[0] = rate
    return coefficients, rates


def _initial_estimate(model, t, y, sigma, tail_rate):
    """Closed-form start: log-linear fit (mono) or the best of a small rate grid (bi, tri)."""
    log_y = np.log(np.maximum(y, RELATIVE_SIGMA_FLOOR * y.max(axis=0) + 1e-300))
    dt = t - t.mean()
    overall = -np.einsum("t,tn->n", dt, log_y) / np.sum(dt * dt)
    lo, hi = DECAY_CONSTANT_PER_H, MAX_RATE_PER_H
    if model.name == "mono":
        grid = [np.clip(overall, lo, hi)[None]]
    else:
        base = np.clip(np.where(np.isfinite(tail_rate), tail_rate, overall), lo, hi)
        uptake = np.log(2.0) / np.array([0.5, 2.0, 8.0])
        grid = []
        if model.name == "bi":
            for f in (0.7, 1.0, 1.4):
                for u in uptake:
                    grid.append(np.stack([base * f, np.maximum(np.full_like(base, u), 1.5 * base * f)]))
        else:
            for f in (3.0, 10.0, 30.0):
                for u in uptake:
                    grid.append(np.stack([base, base * f, np.maximum(np.full_like(base, u), 1.5 * base * f)]))
    best_p, best_cost = None, None
    for rates in grid:
        rates = np.clip(rates, lo, hi)
        amplitudes = _linear_amplitudes(model, t, y, sigma, rates)
        p = np.concatenate([amplitudes, rates])
        cost = np.sum(((model.value(t, p) - y) / sigma) ** 2, axis=0)
        if best_p is None:
            best_p, best_cost = p, cost
        else:
            better = cost < best_cost
            best_p = np.where(better, p, best_p)
            best_cost = np.where(better, cost, best_cost)
    return best_p


def _linear_amplitudes(model, t, y, sigma, rates):
    """Weighted least-squares amplitudes for fixed rates, floored at a small positive value."""
    k_a = model.n_amplitudes
    p = np.concatenate([np.ones((k_a, rates.shape[1])), rates])
    design = model.jacobian(t, p)[:k_a] / sigma  # (k_a, T, N)
    target = y / sigma
    normal = np.einsum("atn,btn->nab", design, design)
    rhs = np.einsum("atn,tn->na", design, target)
    normal += np.eye(k_a) * (1e-12 * np.trace(normal, axis1=1, axis2=2)[:, None, None] + 1e-300)
    amplitudes = _solve(normal, rhs)
    return np.maximum(amplitudes, 1e-6 * y.max(axis=0))


def _levenberg_marquardt(model, t, y, sigma, p, iterations):
    """Projected, per-voxel damped Gauss-Newton steps; returns parameters and WRSS.

    A voxel leaves the iteration once a step lowers its cost by less than a relative 1e-12 (or its
    damping has grown beyond any useful step), so well-determined voxels cost only a few steps.
    """
    lower = model.lower_bounds()[:, None]
    upper = model.upper_bounds()[:, None]
    diagonal = np.arange(model.n_parameters)
    p = np.clip(p, lower, upper)
    residual = (model.value(t, p) - y) / sigma
    cost = np.sum(residual ** 2, axis=0)
    active = np.arange(p.shape[1])
    damping = np.full(active.size, 1e-3)
    for _ in range(iterations):
        if active.size == 0:
            break
        pa, ya, sa, ca, ra = p[:, active], y[:, active], sigma[:, active], cost[active], residual[:, active]
        jac = model.jacobian(t, pa) / sa
        normal = np.einsum("atn,btn->nab", jac, jac)
        gradient = np.einsum("atn,tn->na", jac, ra)
        scale = normal[:, diagonal, diagonal]
        normal[:, diagonal, diagonal] += damping[:, None] * scale + 1e-12 * scale.max(axis=1, keepdims=True) + 1e-300
        candidate = np.clip(pa + _solve(normal, -gradient), lower, upper)
        candidate_residual = (model.value(t, candidate) - ya) / sa
        candidate_cost = np.sum(candidate_residual ** 2, axis=0)
        better = candidate_cost < ca
        p[:, active] = np.where(better, candidate, pa)
        cost[active] = np.where(better, candidate_cost, ca)
        residual[:, active] = np.where(better, candidate_residual, ra)
        damping = np.where(better, damping * 0.3, damping * 10.0)
        done = (better & (ca - candidate_cost <= 1e-12 * ca)) | (damping > 1e10)
        active, damping = active[~done], damping[~done]
    return p, cost


def _solve(normal, rhs):
    """Solutions x (k, N) of the N systems normal[n] x = rhs[n]; 1 x 1 and 2 x 2 in closed form."""
    if normal.shape[1] == 1:
        return (rhs[:, 0] / normal[:, 0, 0])[None]
    if normal.shape[1] == 2:
        a, b, c, d = normal[:, 0, 0], normal[:, 0, 1], normal[:, 1, 0], normal[:, 1, 1]
        det = a * d - b * c
        return np.stack([(d * rhs[:, 0] - b * rhs[:, 1]) / det, (a * rhs[:, 1] - c * rhs[:, 0]) / det])
    return np.linalg.solve(normal, rhs[..., None])[..., 0].T


def regional_voxel_tia(times_h, activity_maps_MBq, regions):
    """Time-integrated activity (MBq h) of every voxel from the fitted kinetics of its region.

    Parameters
    ----------
    times_h : sequence of float, length T
        Scan times in hours after administration, increasing, as in the regions' fits.
    activity_maps_MBq : array (T, ...)
        Activity per voxel at each time point on one common grid.
    regions : sequence of (mask, TacFit)
        Each region's voxels (bool array of the map shape) and the fit of its time-activity curve
        (:func:`MIBGDosimetryLib.tac.fit_tac`; only its shape matters, so a fit of partial-volume
        corrected activities serves as well). A voxel in several masks belongs to the first; voxels
        in none get 0.

    Returns ``(tia_map_MBq_h, info)``; ``info["regions"]`` lists per region the voxels, the factor
    ``TIA_R / sum_i A_R(t_i)`` (h) and the number of voxels whose negative sum was set to 0.
    """
    started = time.perf_counter()
    t = np.asarray(times_h, dtype=float).ravel()
    activity = np.asarray(activity_maps_MBq)
    if activity.ndim < 2 or activity.shape[0] != t.size:
        raise ValueError(f"The activity maps must be stacked along the first axis, one per time point "
                         f"({t.size} times, maps of shape {activity.shape}).")
    if not np.all(np.isfinite(activity)):
        raise ValueError("The activity maps contain non-finite values (NaN or infinity).")
    shape = activity.shape[1:]
    flat = activity.reshape(t.size, -1)
    tia = np.zeros(flat.shape[1])
    claimed = np.zeros(flat.shape[1], dtype=bool)
    summaries = []
    for mask, fit in regions:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"A region mask has shape {mask.shape}; the maps have {shape}.")
        fit_times = np.asarray(fit.times_h, dtype=float)
        if fit_times.shape != t.shape or not np.allclose(fit_times, t):
            raise ValueError("A region's time-activity fit was made at other times than the activity maps.")
        used = np.ones(t.size, dtype=bool) if fit.used is None else np.asarray(fit.used, dtype=bool)
        curve_sum = float(np.sum(fit.evaluate(t[used])))
        if not curve_sum > 0 or not np.isfinite(fit.tia_MBq_h):
            raise ValueError("A region's fitted time-activity curve is not positive at its scan times.")
        factor_h = fit.tia_MBq_h / curve_sum
        index = np.flatnonzero(mask.ravel() & ~claimed)
        summed = flat[used][:, index].sum(axis=0, dtype=np.float64)
        tia[index] = np.maximum(summed, 0.0) * factor_h
        claimed[index] = True
        summaries.append({"voxels": int(index.size), "hours_per_summed_MBq": float(factor_h),
                          "negative_voxels_set_to_zero": int(np.count_nonzero(summed < 0))})
    info = {"model": "regional", "voxels": int(np.count_nonzero(claimed)), "regions": summaries,
            "elapsed_s": time.perf_counter() - started}
    return tia.reshape(shape), info


def summed_region_fit(times_h, activity_maps_MBq, mask, model="auto"):
    """Fit of the summed activity of the voxels in ``mask`` (e.g. everything outside the VOIs), for
    :func:`regional_voxel_tia`. Returns ``(fit, note)``: when the chosen model cannot be fitted, the
    trapezoid (linear head, physical-decay tail) is used and ``note`` says why; otherwise ``note`` is None."""
    from MIBGDosimetryLib.tac import fit_tac

    activity = np.asarray(activity_maps_MBq)
    summed = activity.reshape(activity.shape[0], -1)[:, np.asarray(mask, dtype=bool).ravel()].sum(axis=1)
    try:
        return fit_tac(times_h, summed, model=model), None
    except ValueError as error:
        fit = fit_tac(times_h, summed, model="trapezoid", tail="physical")
        return fit, f"the '{model}' fit of the summed activity failed ({error}); the trapezoid was used"
