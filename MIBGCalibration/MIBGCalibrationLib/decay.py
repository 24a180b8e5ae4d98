"""Decay correction of phantom activities from their reference time to the scan.

Activities of calibration phantoms are measured in an activity meter at a reference time and
corrected to the acquisition with the physical decay of 131I. Over an acquisition of duration T the
mean activity is ``A(t0) (1 - exp(-lambda T)) / (lambda T)``; that factor is applied so that the count
rate over the whole acquisition is compared with the activity present on average during it. The
131I decay data (ENSDF half-life 8.0252 d) come from :mod:`MIBGDosimetryLib.physics.i131`.
"""

import datetime

import numpy as np

from MIBGDosimetryLib.physics.i131 import DECAY_CONSTANT_PER_H, decay_factor


def parse_datetime(value, what):
    """A :class:`datetime.datetime` from an ISO 8601 string (or a datetime), naive times kept as given."""
    if isinstance(value, datetime.datetime):
        return value
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError as error:
        raise ValueError(f"The {what} '{value}' is not an ISO date and time (e.g. 2026-03-01T09:30:00).") from error


def hours_between(start, end):
    """Hours from ``start`` to ``end`` (datetimes; both naive or both aware)."""
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return (end - start).total_seconds() / 3600.0


def activity_at_scan_MBq(activity_MBq, reference_datetime, scan_start_datetime, duration_s=0.0):
    """Mean activity (MBq) during an acquisition from an activity measured at a reference time.

    Physical decay of 131I from the reference time to the scan start, times the mean decay over the
    acquisition of ``duration_s`` seconds.
    """
    elapsed_h = hours_between(reference_datetime, scan_start_datetime)
    at_start = float(activity_MBq) * float(decay_factor(elapsed_h))
    decay_during = DECAY_CONSTANT_PER_H * float(duration_s) / 3600.0
    mean_factor = 1.0 if decay_during == 0 else (1.0 - np.exp(-decay_during)) / decay_during
    return at_start * mean_factor
