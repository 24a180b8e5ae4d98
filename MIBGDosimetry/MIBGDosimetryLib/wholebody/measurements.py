"""Serial whole-body retention readings and blood samples read from CSV tables.

Whole-body retention: one row per reading, with the time in hours after the start of the
administration and the reading, either

- a ``value`` column and a ``kind`` column saying ``counts`` (whole-body scan or probe counts, count
  rate) or ``uSv_per_h`` (external dose rate at a fixed distance, e.g. a ceiling or hand-held probe
  at 1 m), or
- a value column named after its kind: ``counts``, ``cps`` or ``count_rate`` for counts, ``uSv_per_h``
  (also ``uSv/h``) for dose rates.

- ``anterior`` and ``posterior`` columns: conjugate views of a whole-body gamma-camera scan, combined
  as the geometric mean of their background-subtracted counts, which does not depend on the depth of
  the activity in the body (conjugate-view method, MIRD Pamphlet No. 16, Siegel JA et al., J Nucl Med
  40 (1999) 37S-61S).

An optional ``background`` column holds the background reading in the same unit (one value per row,
or only on the first row for all of them); for conjugate views, ``background_anterior`` and
``background_posterior`` may replace it. The retained fraction is the background-subtracted
reading over the first one: the first reading must be taken before any excretion (before the
patient first voids), when the whole administered activity is in the body. Readings of one kind
only: counts and dose rates have different geometries and cannot be normalised together. Lines
starting with ``#`` are comments.

Blood samples: ``time_h`` and the activity concentration, in a column named ``MBq_per_mL`` or
``kBq_per_mL`` (or ``value`` with a ``unit`` column), measured at the time of sampling (not decay
corrected).
"""

import csv
import dataclasses
import pathlib
import re

import numpy as np

COUNT_KINDS = ("counts", "cps", "count_rate", "countrate", "cpm")
DOSE_RATE_KINDS = ("usv_per_h", "usv/h", "usvh", "usvperh", "dose_rate_usv_per_h")
#: Net readings above this multiple of the first one mean the first was not the full body activity.
FIRST_READING_TOLERANCE = 1.05
_CONCENTRATION_UNITS = {"mbq_per_ml": 1.0, "mbq/ml": 1.0, "kbq_per_ml": 1.0e-3, "kbq/ml": 1.0e-3,
                        "bq_per_ml": 1.0e-6, "bq/ml": 1.0e-6}


@dataclasses.dataclass
class RetentionReadings:
    """Whole-body readings: ``times_h`` (sorted), net ``readings`` (background subtracted), their
    ``kind`` ("counts" or "uSv_per_h"), the ``retention`` (net reading / first net reading), the
    ``source`` (file name) and ``warnings``."""

    times_h: np.ndarray
    readings: np.ndarray
    kind: str
    retention: np.ndarray
    source: str = None
    warnings: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {"source": self.source, "kind": self.kind, "times_h": [float(t) for t in self.times_h],
                "net_readings": [float(r) for r in self.readings],
                "retention": [float(r) for r in self.retention], "warnings": list(self.warnings)}


@dataclasses.dataclass
class BloodSamples:
    """Blood activity concentrations ``concentration_MBq_per_mL`` at ``times_h`` (sorted)."""

    times_h: np.ndarray
    concentration_MBq_per_mL: np.ndarray
    source: str = None

    def to_dict(self):
        return {"source": self.source, "times_h": [float(t) for t in self.times_h],
                "concentration_MBq_per_mL": [float(c) for c in self.concentration_MBq_per_mL]}


def _key(text):
    return re.sub(r"\s+", "_", text.strip().lower().replace("µ", "u").replace("μ", "u"))


def _kind_of(text):
    key = _key(text)
    if key in COUNT_KINDS:
        return "counts"
    if key in DOSE_RATE_KINDS:
        return "uSv_per_h"
    return None


def _rows(path, what):
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} file {path} was not found.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path.name} is empty: give a header row and one row per {what} reading.")
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [[cell.strip() for cell in row] for row in csv.reader(lines, dialect)]
    return path, [_key(title) for title in rows[0]], rows[1:]


def _number(path, line, column, text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path.name} row {line}: '{text}' in column '{column}' is not a number.") from None
    if not np.isfinite(value):
        raise ValueError(f"{path.name} row {line}: '{text}' in column '{column}' is not a finite number.")
    return value


def _times(path, header, rows):
    if "time_h" not in header:
        raise ValueError(f"{path.name} needs a 'time_h' column (hours after the start of the administration); "
                         f"found the columns {', '.join(header)}.")
    column = header.index("time_h")
    times = np.array([_number(path, n, "time_h", row[column] if column < len(row) else "")
                      for n, row in enumerate(rows, start=2)])
    if np.any(times <= 0):
        raise ValueError(f"{path.name}: every time must be positive hours after the start of the administration.")
    if len(np.unique(times)) != len(times):
        raise ValueError(f"{path.name}: two rows have the same time; merge them or correct the times.")
    return times


def read_retention_csv(path):
    """Whole-body readings from a CSV table (see the module docstring) as :class:`RetentionReadings`."""
    path, header, rows = _rows(path, "whole-body")
    if len(rows) < 2:
        raise ValueError(f"{path.name} has {len(rows)} reading(s); the retention needs the first reading and at "
                         "least one later one.")
    times = _times(path, header, rows)
    named = [(index, _kind_of(title)) for index, title in enumerate(header) if _kind_of(title)]
    if "anterior" in header and "posterior" in header:
        net = _conjugate_views(path, header, rows)
        order = np.argsort(times)
        return retention_from_readings(times[order], net[order], "counts", source=path.name)
    if "value" in header:
        if "kind" not in header:
            raise ValueError(f"{path.name} has a 'value' column but no 'kind' column; add 'kind' (counts or "
                             "uSv_per_h) or name the value column 'counts' or 'uSv_per_h'.")
        value_column = header.index("value")
        kinds = {_kind_of(row[header.index("kind")]) if header.index("kind") < len(row) else None for row in rows}
        if None in kinds:
            raise ValueError(f"{path.name}: the 'kind' column must say 'counts' or 'uSv_per_h' on every row.")
        if len(kinds) > 1:
            raise ValueError(f"{path.name} mixes counts and dose rates; they have different geometries and cannot "
                             "be normalised together. Give one kind of reading per file.")
        kind = kinds.pop()
    elif len(named) == 1:
        value_column, kind = named[0]
    else:
        raise ValueError(f"{path.name} needs one reading column: 'value' with 'kind', or a column named 'counts' or "
                         f"'uSv_per_h'; found the columns {', '.join(header)}.")
    values = _column_values(path, header, rows, header[value_column])
    order = np.argsort(times)
    net = values - _background(path, header, rows, "background")
    return retention_from_readings(times[order], net[order], kind, source=path.name)


def _column_values(path, header, rows, name):
    column = header.index(name)
    return np.array([_number(path, n, name, row[column] if column < len(row) else "")
                     for n, row in enumerate(rows, start=2)])


def _background(path, header, rows, name):
    """Background per row from column ``name`` (every row, or the first row only), zero without it."""
    if name not in header:
        return np.zeros(len(rows))
    column = header.index(name)
    cells = [row[column] if column < len(row) else "" for row in rows]
    if cells[0] and not any(cells[1:]):
        cells = [cells[0]] * len(cells)
    if not all(cells):
        raise ValueError(f"{path.name}: give the {name.replace('_', ' ')} on every row or on the first row only.")
    background = np.array([_number(path, n, name, c) for n, c in enumerate(cells, start=2)])
    if np.any(background < 0):
        raise ValueError(f"{path.name}: a background reading cannot be negative.")
    return background


def _conjugate_views(path, header, rows):
    """Geometric mean of the background-subtracted anterior and posterior counts."""
    net = []
    for view in ("anterior", "posterior"):
        own = f"background_{view}"
        background = _background(path, header, rows, own if own in header else "background")
        net.append(_column_values(path, header, rows, view) - background)
    if np.any(net[0] <= 0) or np.any(net[1] <= 0):
        raise ValueError(f"{path.name}: an anterior or posterior count minus background is zero or negative; check "
                         "the counts and the background.")
    return np.sqrt(net[0] * net[1])


def retention_from_readings(times_h, net_readings, kind, source=None):
    """:class:`RetentionReadings` from background-subtracted readings (the first taken before any excretion)."""
    times = np.asarray(times_h, dtype=float)
    net = np.asarray(net_readings, dtype=float)
    where = source or "the whole-body readings"
    if np.any(net <= 0):
        bad = ", ".join(f"{t:g} h" for t in times[net <= 0])
        raise ValueError(f"In {where} the reading minus background is zero or negative at {bad}; check the "
                         "readings and the background (it must be measured with the patient out of the room).")
    retention = net / net[0]
    warnings = []
    if np.any(retention[1:] > FIRST_READING_TOLERANCE):
        warnings.append(f"In {where} a later reading exceeds the first by more than "
                        f"{100 * (FIRST_READING_TOLERANCE - 1):.0f} %: the first reading may not show the whole "
                        "administered activity (taken during the infusion, or in another geometry).")
    return RetentionReadings(times, net, kind, retention, source, warnings)


def read_blood_csv(path):
    """Blood samples from a CSV table (see the module docstring) as :class:`BloodSamples`."""
    path, header, rows = _rows(path, "blood sample")
    if not rows:
        raise ValueError(f"{path.name} has no blood samples.")
    times = _times(path, header, rows)
    units = [title for title in header if title in _CONCENTRATION_UNITS]
    if units:
        column, factors = header.index(units[0]), [_CONCENTRATION_UNITS[units[0]]] * len(rows)
    elif "value" in header and "unit" in header:
        column, unit_column = header.index("value"), header.index("unit")
        factors = []
        for n, row in enumerate(rows, start=2):
            unit = _key(row[unit_column]) if unit_column < len(row) else ""
            if unit not in _CONCENTRATION_UNITS:
                raise ValueError(f"{path.name} row {n}: unknown concentration unit '{unit}'; use MBq/mL, kBq/mL "
                                 "or Bq/mL.")
            factors.append(_CONCENTRATION_UNITS[unit])
    else:
        raise ValueError(f"{path.name} needs the concentration in a column 'MBq_per_mL' or 'kBq_per_mL' (or "
                         f"'value' with a 'unit' column); found the columns {', '.join(header)}.")
    values = np.array([_number(path, n, header[column], row[column] if column < len(row) else "") * f
                       for n, (row, f) in enumerate(zip(rows, factors), start=2)])
    if np.any(values < 0):
        raise ValueError(f"{path.name}: a blood activity concentration cannot be negative.")
    order = np.argsort(times)
    return BloodSamples(times[order], values[order], path.name)
