"""Paralysable dead time of the gamma camera (EANM eqs. 6 and 7).

The camera is characterised from a series of acquisitions of a source in a scatter medium with
increasing activity. The count rates at low activity, extrapolated linearly, give the incident
rate per MBq (the sensitivity); a non-linear least-squares fit of the paralysable model
(EANM eq. 6) ``C_obs = C_inc exp(-C_inc tau)`` with ``C_inc = S A`` then gives the dead time tau.
The dead-time factor of a patient acquisition follows from the iteration of EANM eq. 7.

The count rate in eqs. 6 and 7 must be the same quantity in the calibration and in the patient
scan. :func:`count_rate_definition` states it in the calibration record: which energy window(s)
count, and whether the rate is that of one detector (a series acquired with one detector: a
dual-head patient scan's total is divided by its number of detectors) or of all detectors together.
Counted from the series the calibration read: the photopeak window (the static images of the
series are photopeak images; ``energy_window`` "all" when they also hold scatter windows), and
per detector when the series images come from one detector.
"""

import csv
import dataclasses

import numpy as np
from scipy import optimize

#: Fewest acquisitions from which a dead time with an uncertainty can be fitted (two parameters
#: plus at least two degrees of freedom for the residual scale).
MIN_DEADTIME_POINTS = 4

#: Number of lowest-activity acquisitions used for the linear extrapolation of the sensitivity.
LOW_ACTIVITY_POINTS = 3

#: Columns of a count-rate series file.
CSV_COLUMNS = ("activity_MBq", "observed_cps")

#: Energy-window choices of the dead-time count rate.
COUNT_RATE_WINDOWS = ("photopeak", "all")
#: Fraction of the paralysable maximum count rate above which a scan is flagged: near the maximum the
#: dead-time factor grows steeply and its uncertainty with it (DTF = e at the maximum).
NEAR_MAXIMUM_FRACTION = 0.8


def count_rate_definition(energy_window="photopeak", per_detector=False):
    """The count rate that the dead time tau refers to (stored in the calibration record)."""
    if energy_window not in COUNT_RATE_WINDOWS:
        raise ValueError(f"The dead-time count rate counts the 'photopeak' window or 'all' windows, not "
                         f"'{energy_window}'.")
    return {"energy_window": energy_window, "per_detector": bool(per_detector)}


def check_count_rate_definition(definition):
    """A copy of a stored count-rate definition, validated."""
    if not isinstance(definition, dict) or set(definition) != {"energy_window", "per_detector"}:
        raise ValueError(f"The dead-time count-rate definition must hold energy_window and per_detector, got "
                         f"{definition!r}.")
    if not isinstance(definition["per_detector"], bool):
        raise ValueError("per_detector of the dead-time count-rate definition must be true or false.")
    return count_rate_definition(definition["energy_window"], definition["per_detector"])


def near_maximum_warning(tau_s, observed_cps, what):
    """A warning when ``observed_cps`` exceeds NEAR_MAXIMUM_FRACTION of the paralysable maximum, else None."""
    maximum = paralysable_maximum_cps(tau_s)
    if tau_s and observed_cps > NEAR_MAXIMUM_FRACTION * maximum:
        return (f"{what}: the observed count rate {observed_cps:.6g} cps is {observed_cps / maximum:.0%} of the "
                f"paralysable maximum 1/(e tau) = {maximum:.6g} cps; the dead-time factor is steep and uncertain "
                "there (check the count rate definition, or acquire later or with less activity in the field)")
    return None


@dataclasses.dataclass
class DeadTimeFit:
    """Result of the dead-time characterisation."""

    tau_s: float
    tau_s_uncertainty: float
    sensitivity_cps_per_MBq: float
    sensitivity_cps_per_MBq_uncertainty: float
    linear_sensitivity_cps_per_MBq: float
    activity_MBq: np.ndarray
    observed_cps: np.ndarray
    warnings: list = dataclasses.field(default_factory=list)
    #: The count rate ``observed_cps`` measures (:func:`count_rate_definition`).
    count_rate: dict = dataclasses.field(default_factory=count_rate_definition)

    def incident_cps(self, activity_MBq):
        """Incident count rate (cps) of an activity (MBq): the sensitivity times the activity."""
        return self.sensitivity_cps_per_MBq * np.asarray(activity_MBq, dtype=float)

    def model_observed_cps(self, activity_MBq):
        """Observed count rate predicted by EANM eq. 6 for an activity (MBq)."""
        incident = self.incident_cps(activity_MBq)
        return incident * np.exp(-incident * self.tau_s)

    def to_dict(self):
        return {"tau_s": self.tau_s, "tau_s_uncertainty": self.tau_s_uncertainty,
                "sensitivity_cps_per_MBq": self.sensitivity_cps_per_MBq,
                "sensitivity_cps_per_MBq_uncertainty": self.sensitivity_cps_per_MBq_uncertainty,
                "linear_sensitivity_cps_per_MBq": self.linear_sensitivity_cps_per_MBq,
                "count_rate": dict(self.count_rate), "warnings": list(self.warnings)}


#: Relative misfit of one step of the dead-time series above which the fit is warned about, and refused.
#: Counting noise of a step is well below 1 %, and the paralysable model describes cameras to a few %.
MAX_RESIDUAL_WARNED = 0.10
MAX_RESIDUAL_REFUSED = 0.50


def read_count_rate_csv(path):
    """Activities (MBq) and observed count rates (cps) from a CSV file with the header activity_MBq,observed_cps."""
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"'{path}' lacks the column(s) {missing}; the header must be activity_MBq,observed_cps.")
        activity, observed = [], []
        for line, row in enumerate(reader, start=2):
            try:
                activity.append(float(row["activity_MBq"]))
                observed.append(float(row["observed_cps"]))
            except (TypeError, ValueError) as error:
                raise ValueError(f"'{path}' line {line}: activity and count rate must be numbers.") from error
    return activity, observed


def _paralysable_cps(activity_MBq, sensitivity_cps_per_MBq, tau_s):
    incident = sensitivity_cps_per_MBq * activity_MBq
    return incident * np.exp(-incident * tau_s)


def fit_dead_time(activity_MBq, observed_cps, low_activity_points=LOW_ACTIVITY_POINTS):
    """Fit the paralysable dead time tau (s) to a count-rate series (EANM eq. 6).

    ``activity_MBq`` are the source activities at the acquisition times and ``observed_cps`` the
    observed count rates. The sensitivity is first found by a straight line through the origin
    fitted to the ``low_activity_points`` lowest activities (the guidance's linear extrapolation);
    the sensitivity and tau are then refined together by non-linear least squares, which removes the
    small losses already present at the lowest activities. Count rates are weighted as Poisson
    (variance proportional to the rate); the parameter covariance is scaled by the residuals.
    """
    activity = np.asarray(activity_MBq, dtype=float).ravel()
    observed = np.asarray(observed_cps, dtype=float).ravel()
    if activity.shape != observed.shape:
        raise ValueError(f"The dead-time series needs one count rate per activity, got {activity.size} activities "
                         f"and {observed.size} count rates.")
    if activity.size < MIN_DEADTIME_POINTS:
        raise ValueError(f"At least {MIN_DEADTIME_POINTS} acquisitions at different activities are needed to fit "
                         f"the dead time, got {activity.size}. Acquire more steps of the series.")
    if not (np.all(np.isfinite(activity)) and np.all(np.isfinite(observed))):
        raise ValueError("The dead-time series contains missing or non-numeric values.")
    if np.any(activity <= 0) or np.any(observed <= 0):
        raise ValueError("Activities and observed count rates of the dead-time series must all be positive.")
    if np.unique(activity).size < MIN_DEADTIME_POINTS:
        raise ValueError(f"The dead-time series needs at least {MIN_DEADTIME_POINTS} different activities.")
    order = np.argsort(activity)
    activity, observed = activity[order], observed[order]

    low = slice(0, min(low_activity_points, activity.size))
    linear_sensitivity = float(np.sum(activity[low] * observed[low]) / np.sum(activity[low] ** 2))
    # Initial tau from the largest relative loss against the linear extrapolation.
    loss = np.clip(observed / (linear_sensitivity * activity), 1e-6, 1.0)
    tau0 = float(np.max(-np.log(loss) / (linear_sensitivity * activity)))
    tau0 = tau0 if tau0 > 0 else 1e-7
    sigma = np.sqrt(observed)
    try:
        params, covariance = optimize.curve_fit(
            _paralysable_cps, activity, observed, p0=(linear_sensitivity, tau0), sigma=sigma,
            absolute_sigma=False, bounds=([0.0, 0.0], [np.inf, np.inf]), max_nfev=10000)
    except RuntimeError as error:
        raise ValueError(f"The paralysable dead-time model (EANM eq. 6) could not be fitted to the series: {error}. "
                         "Check that the activities and count rates belong together.") from error
    sensitivity, tau = (float(p) for p in params)
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    warnings = []
    max_incident = sensitivity * activity.max()
    if max_incident * tau < 0.05:
        loss_percent = 100 * (1 - np.exp(-max_incident * tau))
        warnings.append(f"The highest incident rate of the series loses only {loss_percent:.1f} % of its counts; "
                        "extend the series to higher activities for a reliable dead time.")
    if not np.isfinite(errors[1]) or errors[1] > 0.25 * tau:
        warnings.append("The dead time is poorly determined by this series (relative uncertainty above 25 %).")
    residuals = observed / _paralysable_cps(activity, sensitivity, tau) - 1.0
    worst = int(np.argmax(np.abs(residuals)))
    misfit = (f"the paralysable model (EANM eq. 6) misses the count rate at {activity[worst]:.4g} MBq by "
              f"{100 * residuals[worst]:+.0f} %")
    if abs(residuals[worst]) > MAX_RESIDUAL_REFUSED:
        raise ValueError(f"The dead-time series does not follow the camera model: {misfit}. Check that each "
                         "acquisition's activity and count rate belong together (a mislabelled step or a wrong "
                         "activity).")
    if abs(residuals[worst]) > MAX_RESIDUAL_WARNED:
        warnings.append(f"In the dead-time series {misfit}; check that step's activity and count rate.")
    return DeadTimeFit(tau_s=tau, tau_s_uncertainty=float(errors[1]), sensitivity_cps_per_MBq=sensitivity,
                       sensitivity_cps_per_MBq_uncertainty=float(errors[0]),
                       linear_sensitivity_cps_per_MBq=linear_sensitivity, activity_MBq=activity,
                       observed_cps=observed, warnings=warnings)


def paralysable_maximum_cps(tau_s):
    """Largest count rate a paralysable camera can observe: 1 / (e tau) (maximum of EANM eq. 6)."""
    return 1.0 / (np.e * tau_s)


def dead_time_factor(tau_s, observed_cps, tolerance=1e-12, max_iterations=100000):
    """Dead-time factor DTF by the iteration of EANM eq. 7, ``DTF_{i+1} = exp(DTF_i tau C_p)``.

    ``observed_cps`` may be a number (average correction) or an array (one value per projection);
    the result has the same shape. Starting from DTF = 1 the iteration rises monotonically to the
    fixed point on the low-rate branch of EANM eq. 6 (incident rate = DTF x observed rate). No fixed
    point exists for observed rates above the paralysable maximum 1 / (e tau).
    """
    tau = float(tau_s)
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"The dead time must be a non-negative number of seconds, got {tau_s}.")
    rate = np.asarray(observed_cps, dtype=float)
    if np.any(~np.isfinite(rate)) or np.any(rate < 0):
        raise ValueError("Observed count rates must be non-negative numbers (cps).")
    if tau > 0 and np.any(rate > paralysable_maximum_cps(tau)):
        worst = float(np.max(rate))
        raise ValueError(
            f"The observed count rate {worst:.6g} cps exceeds the paralysable maximum 1/(e tau) = "
            f"{paralysable_maximum_cps(tau):.6g} cps for tau = {tau:.6g} s: no dead-time correction exists. "
            "Check the dead time and the count rate (counts per second, not counts).")
    product = rate * tau
    dtf = np.ones_like(product)
    for _ in range(max_iterations):
        updated = np.exp(dtf * product)
        if np.all(np.abs(updated - dtf) <= tolerance * updated):
            dtf = updated
            break
        dtf = updated
    else:
        # Right at the maximum (fixed point DTF = e) the iteration converges only like 1/n.
        if np.any(np.abs(np.exp(dtf * product) - dtf) > 1e-6 * dtf):
            raise ValueError("The dead-time factor iteration (EANM eq. 7) did not converge.")
    return float(dtf) if np.ndim(dtf) == 0 else dtf


def average_dead_time_factor(tau_s, projection_counts, frame_duration_s):
    """One dead-time factor for a whole acquisition from the mean observed rate over all projections."""
    counts = np.asarray(projection_counts, dtype=float)
    if frame_duration_s <= 0:
        raise ValueError(f"The frame duration must be positive, got {frame_duration_s} s.")
    return dead_time_factor(tau_s, float(np.mean(counts)) / float(frame_duration_s))


def projection_dead_time_factors(tau_s, projection_counts, frame_duration_s):
    """Dead-time factor per projection from the observed rate of each projection (EANM eq. 7)."""
    counts = np.asarray(projection_counts, dtype=float)
    if frame_duration_s <= 0:
        raise ValueError(f"The frame duration must be positive, got {frame_duration_s} s.")
    return dead_time_factor(tau_s, counts / float(frame_duration_s))
