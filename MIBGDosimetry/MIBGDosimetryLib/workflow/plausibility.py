"""Plausibility of the activities a dose calculation finds, checked before the doses are computed.

No VOI, and not the whole field of view, can hold more than the activity administered, decayed to the
scan (biological clearance only lowers it further). A result above that bound, allowing for counting
noise and calibration error, means a wrong calibration, a wrong RescaleSlope, the wrong administered
activity or a scan of another patient or administration: the calculation stops and names the scan.
"""

import numpy as np

from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H

#: Factor above the decayed administered activity accepted for noise, calibration and
#: partial-volume-correction error before a scan is refused.
ACTIVITY_TOLERANCE = 1.5


def decayed_activity_MBq(administered_MBq, hours):
    """Administered activity decayed (physical decay of 131I only) to ``hours`` after administration."""
    return administered_MBq * np.exp(-DECAY_CONSTANT_PER_H * np.asarray(hours, dtype=float))


def activity_problems(labels, times_h, administered_MBq, field_MBq, voi_names, voi_MBq, tolerance=ACTIVITY_TOLERANCE):
    """Problems (one sentence each) where the activity in the field of view (``field_MBq[t]``) or in a VOI
    (``voi_MBq[v, t]``) exceeds ``tolerance`` times the administered activity decayed to the scan."""
    problems = []
    bound = decayed_activity_MBq(administered_MBq, times_h)
    for t, label in enumerate(labels):
        limit = tolerance * bound[t]
        if field_MBq[t] > limit:
            problems.append(f"scan {label} ({times_h[t]:.1f} h): the field of view holds {field_MBq[t]:.4g} MBq, "
                            f"{field_MBq[t] / bound[t]:.3g} times the administered {administered_MBq:.4g} MBq decayed "
                            f"to the scan ({bound[t]:.4g} MBq)")
        for name, values in zip(voi_names, voi_MBq):
            if values[t] > limit:
                problems.append(f"scan {label} ({times_h[t]:.1f} h), VOI '{name}': {values[t]:.4g} MBq, "
                                f"{values[t] / bound[t]:.3g} times the administered activity decayed to the scan "
                                f"({bound[t]:.4g} MBq)")
    return problems


def check_activities(study, vois, voi_activities_MBq, activity_maps_MBq, times_h, warnings):
    """Stop when a scan holds more activity than was administered (see :func:`activity_problems`)."""
    administered = study.administered_activity_MBq
    if not administered:
        warnings.append("the administered activity is unknown, so the activities found cannot be checked "
                        "against it")
        return
    field = np.asarray(activity_maps_MBq, dtype=float).reshape(len(times_h), -1).sum(axis=1)
    problems = activity_problems([tp.label for tp in study.timepoints], times_h, administered, field,
                                 [v.name for v in vois], np.asarray(voi_activities_MBq, dtype=float))
    if problems:
        raise ValueError("The activities found are not plausible:\n" + "\n".join(f"- {p}" for p in problems)
                         + "\nCheck the calibration record (Q), the SPECT's RescaleSlope and units, the administered "
                         "activity and that every scan belongs to this patient and administration.")


#: Factor by which the activity in a SPECT (its counts over Q) may differ from the activity the camera's
#: observed count rate gives (over the planar sensitivity of the dead-time series) before a scan is
#: refused. Attenuation, scatter windows, the field of view and the number of heads make them differ by
#: up to a few times; a wrong scaling of the image (RescaleSlope, kBq or Bq for MBq) by far more.
COUNT_RATE_TOLERANCE = 10.0


def count_rate_problems(labels, image_cps, observed_cps, q_cps_per_MBq, sensitivity_cps_per_MBq,
                        tolerance=COUNT_RATE_TOLERANCE):
    """Problems where a SPECT's total counts per second over Q disagree with its observed count rate over
    the sensitivity by more than ``tolerance`` times (either way)."""
    problems = []
    for label, image, observed in zip(labels, image_cps, observed_cps):
        if not observed or observed <= 0 or image <= 0:
            continue
        from_image, from_rate = image / q_cps_per_MBq, observed / sensitivity_cps_per_MBq
        ratio = from_image / from_rate
        if not 1.0 / tolerance <= ratio <= tolerance:
            problems.append(f"scan {label}: the SPECT's counts give {from_image:.4g} MBq in the field of view but the "
                            f"camera's observed count rate ({observed:.4g} cps) gives {from_rate:.4g} MBq "
                            f"({ratio:.3g} times); the image's scaling (RescaleSlope, units) or the header's count "
                            "rate is wrong")
    return problems


def check_count_rates(study, record):
    """Stop when a SPECT's counts disagree with its camera count rate under the calibration (see
    :func:`count_rate_problems`); nothing is checked without the planar sensitivity."""
    sensitivity = record.sensitivity_cps_per_MBq
    if not sensitivity:
        return
    image_cps = [_image_counts(tp, record) / tp.duration_s if tp.duration_s else 0.0 for tp in study.timepoints]
    problems = count_rate_problems([tp.label for tp in study.timepoints], image_cps,
                                   [tp.observed_count_rate_cps for tp in study.timepoints],
                                   record.calibration_factor_cps_per_MBq, sensitivity)
    if problems:
        raise ValueError("The SPECT counts disagree with the camera's count rates:\n"
                         + "\n".join(f"- {p}" for p in problems)
                         + "\nCheck the SPECT series' RescaleSlope and units and the calibration record.")


def _image_counts(timepoint, record):
    """Detected counts behind a time point's SPECT, whatever its units (counts, counts/s, Bq/ml)."""
    from MIBGDosimetryLib.workflow.activity import scan_factors

    total = float(np.clip(np.asarray(timepoint.spect.array, dtype=float), 0.0, None).sum())
    return total * scan_factors(timepoint, record).counts_per_value
