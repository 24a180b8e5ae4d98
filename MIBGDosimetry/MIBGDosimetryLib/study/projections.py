"""NM projection and planar data (not reconstructed): what was acquired, per energy window.

Frames are assigned to energy windows through EnergyWindowVector (0054,0010); the counts of each
window are summed over its frames, which is what the triple-energy-window (TEW) scatter estimate and
a check of the observed count rate need. The photopeak window is the one holding the 364.49 keV line
of 131I (ICRP Publication 107).
"""

import os

import numpy as np

from MIBGDosimetryLib.study import dicomfields
from MIBGDosimetryLib.study.emission import read_emission_info
from MIBGDosimetryLib.study.errors import StudyDataError
from MIBGDosimetryLib.study.images import located, pixel_frames
from MIBGDosimetryLib.study.scan import read_dataset

#: Main gamma line of 131I (keV), ICRP Publication 107.
I131_PHOTOPEAK_KEV = 364.49


def photopeak_window(windows):
    """The window (dict with lower_keV, upper_keV) that holds the 131I photopeak, or None."""
    for window in windows:
        lower, upper = window.get("lower_keV"), window.get("upper_keV")
        if lower is not None and upper is not None and lower <= I131_PHOTOPEAK_KEV <= upper:
            return window
    return None


def window_count_rates_cps(summary):
    """{"photopeak": cps or None, "all": cps} of a projection-file summary, or None without a duration."""
    if not summary.get("duration_s"):
        return None
    windows = summary["energy_windows"]
    peak = photopeak_window(windows)
    total = sum(w["counts"] for w in windows) if windows else summary.get("counts_accumulated")
    if total is None:
        return None
    return {"photopeak": None if peak is None else peak["counts"] / summary["duration_s"],
            "all": total / summary["duration_s"]}


def read_projection_file(path, root):
    """Summary of one NM projection or planar file: image type, acquisition, energy windows with counts."""
    shown = os.path.relpath(path, root)
    ds = read_dataset(path, shown)
    frames = pixel_frames(ds, shown)
    info = read_emission_info([ds])
    windows = info.energy_windows
    vector = located(dicomfields.raw, shown, ds, "EnergyWindowVector")
    if vector is None:
        vector = [1] * frames.shape[0]
    vector = np.asarray(list(vector) if not isinstance(vector, (int, float)) else [vector], dtype=int)
    if vector.shape[0] != frames.shape[0]:
        raise StudyDataError(f"file '{shown}': field EnergyWindowVector has {vector.shape[0]} values for "
                             f"{frames.shape[0]} frames", file=path, field="EnergyWindowVector")
    slope = located(dicomfields.number, shown, ds, "RescaleSlope") or 1.0
    totals = frames.reshape(frames.shape[0], -1).sum(axis=1, dtype=np.float64) * slope
    for number, window in enumerate(windows, start=1):
        window["frames"] = int(np.count_nonzero(vector == number))
        window["counts"] = float(totals[vector == number].sum())
    return {
        "file": shown,
        "series_instance_uid": located(dicomfields.text, shown, ds, "SeriesInstanceUID"),
        "study_instance_uid": located(dicomfields.text, shown, ds, "StudyInstanceUID"),
        "frame_of_reference_uid": located(dicomfields.text, shown, ds, "FrameOfReferenceUID"),
        "image_type": "\\".join(located(dicomfields.texts, shown, ds, "ImageType")),
        "acquisition_datetime": None if info.acquisition_datetime is None else info.acquisition_datetime.isoformat(),
        "duration_s": info.duration_s,
        "counts_accumulated": info.counts_accumulated,
        "number_of_detectors": info.number_of_detectors,
        "number_of_frames": int(frames.shape[0]),
        "energy_windows": windows,
        "notes": [f"file '{shown}': {n}" for n in info.notes]
                 + [f"file '{shown}': {p}" for p in info.problems.values()],
    }
