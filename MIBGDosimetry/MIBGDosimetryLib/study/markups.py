"""Seed points from Slicer markups files (``*.mrk.json``): one control point per lesion, label = lesion name.

Positions are returned in RAS millimetres; files that declare ``"coordinateSystem": "LPS"`` (Slicer's
default when saving) are converted. Unnamed or undefined points, duplicate names and other units
are reported.
"""

import json
import os

import numpy as np

from MIBGDosimetryLib.study.errors import StudyDataError
from MIBGDosimetryLib.volume import LPS_TO_RAS


def read_seed_points(paths, root=None):
    """``({lesion name: RAS position (mm) as float array}, warnings)`` from markups files."""
    points, origins, notes = {}, {}, []
    for path in paths:
        shown = os.path.relpath(path, root) if root else path
        for label, position in _points_of_file(path, shown, notes):
            if label in points:
                raise StudyDataError(f"Seed point '{label}' is defined twice: in '{origins[label]}' and in '{shown}'. "
                                     f"Rename or remove one of them.", file=path)
            points[label] = position
            origins[label] = shown
    return points, notes


def _points_of_file(path, shown, notes):
    try:
        with open(path, encoding="utf-8") as stream:
            content = json.load(stream)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StudyDataError(f"The markups file '{shown}' is not readable JSON ({error}).", file=path) from None
    markups = content.get("markups") if isinstance(content, dict) else None
    if not isinstance(markups, list):
        raise StudyDataError(f"The markups file '{shown}' has no 'markups' list; it is not a Slicer markups file.",
                             file=path)
    result = []
    for markup in markups:
        if not isinstance(markup, dict):
            raise StudyDataError(f"The markups file '{shown}' holds an entry that is not a markup.", file=path)
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise StudyDataError(f"The markups file '{shown}' uses coordinate system '{system}'; only LPS and RAS are "
                                 f"understood.", file=path)
        if "coordinateSystem" not in markup:
            notes.append(f"file '{shown}': coordinateSystem not given; LPS assumed (the Slicer default).")
        units = markup.get("coordinateUnits", "mm")
        if units != "mm":
            raise StudyDataError(f"The markups file '{shown}' gives coordinates in '{units}'; millimetres (mm) are "
                                 f"required.", file=path)
        for number, point in enumerate(markup.get("controlPoints") or [], start=1):
            label = str(point.get("label", "")).strip() if isinstance(point, dict) else ""
            if not label:
                raise StudyDataError(f"Control point {number} of the markups file '{shown}' has no label; each seed "
                                     f"point must carry the lesion name.", file=path)
            if point.get("positionStatus", "defined") != "defined":
                notes.append(f"file '{shown}': seed point '{label}' has no defined position and is left out.")
                continue
            try:
                position = np.asarray(point["position"], dtype=float)
            except (KeyError, TypeError, ValueError):
                position = np.empty(0)
            if position.shape != (3,) or not np.all(np.isfinite(position)):
                raise StudyDataError(f"Seed point '{label}' in '{shown}' has no valid 3-D position.", file=path)
            result.append((label, LPS_TO_RAS @ position if system == "LPS" else position))
    return result
