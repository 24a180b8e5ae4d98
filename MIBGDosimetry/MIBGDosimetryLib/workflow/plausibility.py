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
