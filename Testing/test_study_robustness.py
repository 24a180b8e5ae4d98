"""Damaged study folders: every outcome is a loaded study or a StudyDataError that says where the problem is.

A small valid study is damaged one file at a time in 300 deterministic ways (truncation, flipped
bytes, deleted attributes at the top level or inside sequences). Loading must never fail with any
other exception, must name the damaged file or its series when it refuses, must record every
skipped file in the warnings, and must leave the input files untouched.
"""

import datetime
import os

import numpy as np
import pydicom
import pytest

import study_fixtures as fx
from MIBGDosimetryLib.study import StudyDataError, load_study

SEED = 20261121
VARIANTS = 300


def _small_study(root):
    """tp1: SPECT, a 3-slice CT and 3-window projections; tp2: SPECT only."""
    administration = datetime.datetime(2026, 3, 2, 10, 30)
    for n, hours in enumerate((5.0, 30.0), start=1):
        visit = fx.Visit(administration + datetime.timedelta(hours=hours))
        folder = os.path.join(root, f"tp{n}")
        if n == 1:
            positions = [np.array([0.0, 0.0, 3.0 * k]) for k in range(3)]
            fx.write_ct(os.path.join(folder, "ct"), visit, np.full((3, 4, 4), 1000, np.uint16), (1.5, 1.5), positions)
            windows = (("LOWER", 291.2, 327.6), ("PEAK", 327.6, 400.4), ("UPPER", 400.4, 436.8))
            fx.write_nm_projections(os.path.join(folder, "projections.dcm"), visit,
                                    np.ones((3, 2, 4, 4), np.uint16), windows)
        fx.write_nm_tomo(os.path.join(folder, "spect.dcm"), visit, np.arange(48, dtype=np.uint16).reshape(3, 4, 4),
                         (4.0, 4.0), 4.0, (0, 0, 0), administration=administration, frames_in_rotation=(32,))


def _all_elements(ds):
    """(container dataset, tag) for every element, descending into sequence items."""
    for element in list(ds):
        yield ds, element.tag
        if element.VR == "SQ":
            for item in element.value:
                yield from _all_elements(item)


def _damage(path, rng):
    data = open(path, "rb").read()
    kind = ("truncate", "flip", "delete")[int(rng.integers(3))]
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        open(path, "wb").write(data[:cut])
        return f"truncated at byte {cut}"
    if kind == "flip":
        damaged = bytearray(data)
        positions = rng.integers(128, len(data), size=int(rng.integers(1, 6)))
        for p in positions:
            damaged[p] = int(rng.integers(256))
        open(path, "wb").write(bytes(damaged))
        return f"bytes changed at {sorted(int(p) for p in positions)}"
    ds = pydicom.dcmread(path)
    elements = list(_all_elements(ds))
    container, tag = elements[int(rng.integers(len(elements)))]
    del container[tag]
    ds.save_as(path)
    return f"deleted {tag}"


def test_damaged_files_never_crash_the_loader(tmp_path):
    folder = tmp_path / "study"
    _small_study(str(folder))
    files = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names)
    original = {f: (folder / f).read_bytes() for f in files}
    series_uids = {f: _series_uid(folder / f) for f in files}
    rng = np.random.default_rng(SEED)
    crashes, outcomes = [], {"loaded": 0, "refused": 0}
    for _ in range(VARIANTS):
        relative = files[int(rng.integers(len(files)))]
        what = _damage(str(folder / relative), rng)
        damaged = (folder / relative).read_bytes()
        try:
            study = load_study(str(folder))
        except StudyDataError as error:
            outcomes["refused"] += 1
            message = str(error)
            if relative not in message and series_uids[relative] not in message:
                crashes.append(f"{relative} {what}: the message names neither the file nor its series: {message}")
        except Exception as error:  # the point of the test: nothing but StudyDataError may escape
            crashes.append(f"{relative} {what}: {type(error).__name__}: {error}")
        else:
            outcomes["loaded"] += 1
            for skipped, _ in study.unreadable_files:
                if not any(skipped in w for w in study.warnings):
                    crashes.append(f"{relative} {what}: '{skipped}' skipped without a warning")
        if (folder / relative).read_bytes() != damaged:
            crashes.append(f"{relative} {what}: the input file was modified")
        (folder / relative).write_bytes(original[relative])
    assert not crashes, "\n".join(crashes[:20])
    # Both outcomes occur, so the damage reaches what matters and what does not.
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0, outcomes


def _series_uid(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


@pytest.mark.parametrize("content", [b"", b"not dicom at all", b"DICM" * 40])
def test_non_dicom_files_are_reported(tmp_path, content):
    _small_study(str(tmp_path))
    (tmp_path / "tp1" / "junk").write_bytes(content)
    study = load_study(str(tmp_path))
    assert len(study.timepoints) == 2
    assert [f for f, _ in study.unreadable_files] == [os.path.join("tp1", "junk")]
    assert any("tp1/junk" in w and "skipped" in w for w in study.warnings)
