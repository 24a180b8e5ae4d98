"""Counts to activity (EANM eq. 9), per VOI and per voxel.

    A_v(t) = C_v(t) / (Q * R(v)) * DTF

with C_v the count rate in the VOI (counts over the acquisition divided by its duration), Q the
camera calibration factor (cps/MBq, EANM eq. 4), R(v) the recovery coefficient of the VOI volume
(EANM eq. 5) and DTF the dead-time factor of the acquisition (EANM eq. 7, from the observed count
rate of its projection data, counted as the calibration counted it: :mod:`.count_rate`). Recovery applies to VOI values only: a voxel map is converted with
Q and DTF alone.

The activity is attributed to the middle of the acquisition; decay during a SPECT of minutes
changes the count rate by well under 0.1 % for 131I and is not corrected.
"""

import dataclasses

import numpy as np

from MIBGCalibrationLib import deadtime
from MIBGDosimetryLib.workflow import count_rate


@dataclasses.dataclass
class ScanFactors:
    """What turns one time point's counts into activity, with relative uncertainties."""

    duration_s: float
    calibration_factor_cps_per_MBq: float
    calibration_relative_uncertainty: float
    dead_time_factor: float
    dead_time_factor_relative_uncertainty: float
    observed_count_rate_cps: float = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def mbq_per_count(self):
        """Activity per counted event in a voxel, without recovery (MBq)."""
        return self.dead_time_factor / (self.duration_s * self.calibration_factor_cps_per_MBq)


def scan_factors(timepoint, record):
    """:class:`ScanFactors` of a study time point under a calibration record."""
    if not timepoint.duration_s or timepoint.duration_s <= 0:
        raise ValueError(f"Time point '{timepoint.label}' has no acquisition duration; supply it as an override.")
    q = record.calibration_factor_cps_per_MBq
    q_rel = (record.calibration_factor_cps_per_MBq_uncertainty or 0.0) / q
    notes = []
    rate = None
    if record.dead_time_s is None:
        notes.append("no dead time in the calibration record: dead-time losses not corrected")
    elif timepoint.observed_count_rate_cps is None:
        notes.append(f"time point '{timepoint.label}': no observed count rate (CountsAccumulated) in the "
                     "SPECT header: dead-time losses not corrected")
    else:
        rate, rate_notes = count_rate.dead_time_count_rate_cps(timepoint, _count_rate_definition(record))
        notes.extend(rate_notes)
    if rate is None:
        dtf, dtf_rel = 1.0, 0.0
    else:
        near_maximum = deadtime.near_maximum_warning(record.dead_time_s, rate, f"time point '{timepoint.label}'")
        if near_maximum:
            notes.append(near_maximum)
        dtf = float(record.dead_time_factor(rate))
        tau_rel = (record.dead_time_s_uncertainty or 0.0) / record.dead_time_s
        # d ln(DTF) / d ln(tau) = ln(DTF) / (1 - ln(DTF)) for the paralysable model (from eq. 7's fixed point).
        log_dtf = np.log(dtf)
        dtf_rel = abs(log_dtf / (1.0 - log_dtf)) * tau_rel
    return ScanFactors(float(timepoint.duration_s), q, q_rel, dtf, dtf_rel, rate, notes)


def _count_rate_definition(record):
    definition = getattr(record, "dead_time_count_rate", None)
    return deadtime.count_rate_definition() if definition is None else definition


def activity_map_MBq(counts, factors):
    """Activity per voxel (MBq) of a counts map (EANM eq. 9 without recovery)."""
    return np.clip(np.asarray(counts, dtype=np.float64), 0.0, None) * factors.mbq_per_count


def voi_activity_MBq(counts, mask, factors, recovery):
    """Activity in a VOI (MBq) with recovery ``recovery = (R, uncertainty)`` (EANM eq. 9).

    Returns ``(activity_MBq, counting_relative_uncertainty)``: the Poisson uncertainty of the VOI's
    counts. Recovery, dead time and the calibration factor are common to all time points of a VOI
    and are propagated at the TIA level.
    """
    r, r_sd = recovery
    if not r > 0:
        raise ValueError(f"The recovery coefficient must be positive, got {r}.")
    total_counts = float(np.clip(np.asarray(counts, dtype=np.float64)[mask], 0.0, None).sum())
    activity = total_counts * factors.mbq_per_count / r
    counting_rel = 1.0 / np.sqrt(total_counts) if total_counts > 0 else 1.0
    return activity, float(counting_rel)
