"""Values the user supplies where the DICOM data lack them or are wrong: the overrides file.

A JSON object whose keys are ``"study"`` (values for the whole study), a SeriesInstanceUID (values
for that series) or a time-point label such as ``"tp2"`` (values for that time point's SPECT)::

    {"study": {"administration_datetime": "2026-03-02T10:30:00", "administered_activity_MBq": 3700},
     "1.2.826.0.1.3680043.8.498.1": {"duration_s": 1800},
     "tp3": {"ct_series_uid": "1.2.826.0.1.3680043.8.498.7"}}

It is read from ``mibg-overrides.json`` in the study folder, or from a file or dict given
explicitly (which then replaces the folder's file). Every value applied is recorded as a warning.
"""

import dataclasses
import datetime
import json
import math
import os

from MIBGDosimetryLib.study.errors import StudyDataError
from MIBGDosimetryLib.study.scan import OVERRIDES_FILE_NAME

#: Field name -> (kind, where allowed, meaning).
FIELDS = {
    "administration_datetime": ("datetime", {"study", "series", "timepoint"},
                                "date and time the radiopharmaceutical was administered (ISO 8601)"),
    "administered_activity_MBq": ("positive", {"study", "series", "timepoint"}, "administered activity in MBq"),
    "duration_s": ("positive", {"series", "timepoint"}, "acquisition duration in seconds"),
    "acquisition_datetime": ("datetime", {"series"}, "acquisition start (ISO 8601)"),
    "observed_count_rate_cps": ("non-negative", {"series", "timepoint"},
                                "count rate observed in the projection data, counts/s"),
    "ct_series_uid": ("text", {"series", "timepoint"}, "SeriesInstanceUID of the CT to pair with this SPECT"),
    "exclude": ("boolean", {"series"}, "true to leave this series out of the study"),
}


@dataclasses.dataclass
class Overrides:
    """Parsed overrides: ``entries`` maps "study", series UIDs and time-point labels to {field: value}."""

    entries: dict = dataclasses.field(default_factory=dict)
    source: str = "no overrides"
    used_keys: set = dataclasses.field(default_factory=set)

    def get(self, key):
        """The fields given for ``key`` (empty dict when none), marking the key as used."""
        if key in self.entries:
            self.used_keys.add(key)
        return dict(self.entries.get(key, {}))

    def unused_keys(self):
        return sorted(set(self.entries) - self.used_keys)


def load_overrides(overrides, study_folder):
    """Overrides from a dict, a JSON file path, or (when None) ``mibg-overrides.json`` in the study folder.

    Returns ``(Overrides, notes)``; a note says when given overrides replace the folder's file.
    """
    default = os.path.join(study_folder, OVERRIDES_FILE_NAME)
    notes = []
    if overrides is None:
        if not os.path.isfile(default):
            return Overrides(), notes
        overrides = default
    elif os.path.isfile(default) and (isinstance(overrides, dict) or os.path.abspath(overrides) != default):
        notes.append(f"{OVERRIDES_FILE_NAME} in the study folder is not used: the overrides given replace it.")
    if isinstance(overrides, dict):
        return Overrides(parse_overrides(overrides, "the overrides given"), "the overrides given"), notes
    path = os.fspath(overrides)
    try:
        with open(path, encoding="utf-8") as stream:
            content = json.load(stream)
    except FileNotFoundError:
        raise StudyDataError(f"The overrides file '{path}' does not exist.", file=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StudyDataError(f"The overrides file '{path}' is not readable JSON ({error}).", file=path) from None
    return Overrides(parse_overrides(content, f"overrides file '{path}'"), f"overrides file '{path}'"), notes


def parse_overrides(content, source):
    """Check the structure, names and values of overrides; returns {key: {field: converted value}}."""
    if not isinstance(content, dict):
        raise StudyDataError(f"The {source} must be a JSON object keyed by 'study', a SeriesInstanceUID or a "
                             f"time-point label.")
    problems, entries = [], {}
    for key, fields in content.items():
        scope = "study" if key == "study" else None
        if not isinstance(fields, dict):
            problems.append(f"{source}: the value of '{key}' must be an object of fields")
            continue
        entries[key] = {}
        for name, value in fields.items():
            if name not in FIELDS:
                allowed = ", ".join(f"{n} ({meaning})" for n, (_, _, meaning) in FIELDS.items())
                problems.append(f"{source}: '{key}' has the unknown field '{name}'; allowed fields: {allowed}")
                continue
            kind, scopes, meaning = FIELDS[name]
            if scope == "study" and "study" not in scopes:
                problems.append(f"{source}: field '{name}' cannot be given for the whole study; give it per "
                                f"series or time point")
                continue
            try:
                entries[key][name] = _convert(kind, value)
            except ValueError as error:
                problems.append(f"{source}: '{key}'/'{name}' ({meaning}): {error}")
    if problems:
        raise StudyDataError(problems)
    return entries


def check_scope(overrides, key, scope):
    """Problems for fields given under ``key`` that are not allowed for a ``scope`` ("series"/"timepoint")."""
    return [f"{overrides.source}: field '{name}' cannot be given for a {'time point' if scope == 'timepoint' else scope} "
            f"('{key}'); give it for the SeriesInstanceUID instead"
            for name in overrides.entries.get(key, {}) if scope not in FIELDS[name][1]]


def _convert(kind, value):
    if kind == "datetime":
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO 8601 date-time string, got {value!r}")
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not an ISO 8601 date-time such as 2026-03-02T10:30:00") from None
    if kind in ("positive", "non-negative"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a number, got {value!r}")
        if value < 0 or (kind == "positive" and value == 0):
            raise ValueError(f"must be {'positive' if kind == 'positive' else 'zero or positive'}, got {value!r}")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()
