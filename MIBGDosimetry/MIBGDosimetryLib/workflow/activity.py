"""Counts to activity (EANM eq. 9), per VOI and per voxel.

    A_v(t) = C_v(t) / (Q * R(v)) * DTF

with C_v the count rate in the VOI (counts over the acquisition divided by its duration), Q the
camera calibration factor (cps/MBq, EANM eq. 4), R(v) the recovery coefficient of the VOI volume
(EANM eq. 5) and DTF the dead-time factor of the acquisition (EANM eq. 7, from the observed count
rate of its projection data, counted as the calibration counted it: :mod:`.count_rate`). Recovery applies to VOI values only: a voxel map is converted with
Q and DTF alone.

The activity is attributed to the middle of the acquisition; decay during a SPECT of minutes
changes the count rate by well under 0.1 % for 131I and is not corrected.

Images already in activity units are not calibrated again: the time point's units path (see
:mod:`MIBGDosimetryLib.study.value_units`) decides. Counts are divided by Q and the duration, counts
per second by Q; Bq/ml values are multiplied by the voxel volume. Values decay corrected to the
acquisition start or to the administration are brought back to the activity present during the
acquisition (by DecayFactor when given, else by the 131I decay over the time corrected for). The
dead-time factor applies to every path unless the image says it is already dead-time corrected
(CorrectedImage DTIM).
"""

import dataclasses

import numpy as np

from MIBGCalibrationLib import deadtime
from MIBGDosimetryLib.workflow import count_rate


#: Units path of a time point whose headers were not read (values taken as counts).
COUNTS_PATH = {"units": "counts", "source": "default", "decay_correction": "NONE", "decay_factor": None,
               "dead_time_corrected": False}


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
    #: How the voxel values become activity: the units path of the image with the factors applied.
    units_path: dict = None
    #: Activity per voxel value (MBq) when the values are not counts; None for counts.
    mbq_per_value: float = None
    #: Counts detected per voxel value (for the Poisson uncertainty of a VOI).
    counts_per_value: float = 1.0

    @property
    def mbq_per_count(self):
        """Activity per voxel value (per counted event for a counts image), without recovery (MBq)."""
        if self.mbq_per_value is not None:
            return self.mbq_per_value
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
    metadata = getattr(timepoint, "metadata", None) or {}
    path = dict(metadata.get("units_path") or COUNTS_PATH)
    if path.get("source") == "default":
        notes.append(f"time point '{timepoint.label}': the units of the SPECT voxel values are not known (no DICOM "
                     "header facts), so they are taken as counts; if the volume holds counts/s or Bq/ml the "
                     "activities are wrong: use the volume loaded by the DICOM module or the study folder")
    if path.get("dead_time_corrected"):
        dtf, dtf_rel = 1.0, 0.0
        notes = [n for n in notes if "dead-time losses not corrected" not in n]
        notes.append(f"time point '{timepoint.label}': the image is already dead-time corrected (CorrectedImage DTIM); "
                     "the calibration's dead time is not applied again")
    factors = ScanFactors(float(timepoint.duration_s), q, q_rel, dtf, dtf_rel, rate, notes)
    decay = _decay_to_acquisition(timepoint, path)
    duration_s = float(timepoint.duration_s)
    if path["units"] == "Bq/ml":
        factors.mbq_per_value = timepoint.spect.voxel_volume_ml * 1e-6 * decay * dtf
        # The counts behind the activity, estimated through the calibration, for the Poisson uncertainty.
        factors.counts_per_value = factors.mbq_per_value * q * duration_s / dtf
    elif path["units"] == "counts/s":
        factors.mbq_per_value = decay * dtf / q
        factors.counts_per_value = duration_s * decay
    else:
        factors.mbq_per_value = decay * dtf / (duration_s * q)
        factors.counts_per_value = decay
    path.update(calibration_applied=path["units"] != "Bq/ml", decay_factor_applied=decay,
                dead_time_factor_applied=dtf, mbq_per_value=factors.mbq_per_value)
    path.pop("notes", None)
    factors.units_path = path
    return factors


def _decay_to_acquisition(timepoint, path):
    """Factor that takes decay-corrected values back to the activity during the acquisition (EANM eq. 9
    needs the activity at the time of imaging); 1 for values not decay corrected."""
    correction = path.get("decay_correction", "NONE")
    if correction == "NONE":
        return 1.0
    if path.get("decay_factor"):
        return 1.0 / float(path["decay_factor"])
    from MIBGDosimetryLib.physics import i131

    metadata = getattr(timepoint, "metadata", None) or {}
    half_life_h = (metadata.get("half_life_s") or i131.HALF_LIFE_H * 3600.0) / 3600.0
    elapsed_h = timepoint.duration_s / 7200.0
    if correction == "ADMIN":
        elapsed_h += timepoint.hours_after_administration
    return float(np.exp(-np.log(2.0) * elapsed_h / half_life_h))


def counts_image(volume, timepoint, record):
    """``volume`` (a time point's SPECT, possibly moved to another grid) in detected counts per voxel.

    Lesion delineation weights its fit for Poisson noise and judges it by a chi-square, which holds for
    counts only; an image in Bq/ml is turned back into the counts behind it (through the calibration)
    so that it is delineated exactly as the same acquisition stored in counts would be.
    """
    factors = scan_factors(timepoint, record)
    if factors.counts_per_value == 1.0:
        return volume
    return volume.with_array(np.asarray(volume.array, dtype=np.float64) * factors.counts_per_value)


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
    total_values = float(np.clip(np.asarray(counts, dtype=np.float64)[mask], 0.0, None).sum())
    activity = total_values * factors.mbq_per_count / r
    total_counts = total_values * factors.counts_per_value
    counting_rel = 1.0 / np.sqrt(total_counts) if total_counts > 0 else 1.0
    return activity, float(counting_rel)
