"""The profile compared with an established de-identifier (dicognito); every difference is explained in
Testing/deidentification_comparison.md."""

import copy
import io
import pathlib
import re

import pytest
from pydicom.datadict import tag_for_keyword

from export_fixtures import write_study
from MIBGDosimetryLib import compat
from MIBGDosimetryLib.export.annex_e import ROWS
from MIBGDosimetryLib.export.confidentiality import Deidentifier
from MIBGDosimetryLib.export.leakcheck import Identifiers
from MIBGDosimetryLib.export.mapping import PatientEntry
from test_deidentify_privacy import planted_dataset

DOC = pathlib.Path(__file__).with_name("deidentification_comparison.md")
OUTSIDE = {"private", "curve", "overlay comment", "overlay data", "preamble", "SourceApplicationEntityTitle", "DataSetTrailingPadding"}


def kept_markers(ds, markers):
    """The labels whose marker is still in the written file."""
    buffer = io.BytesIO()
    compat.save_dicom_file(ds, buffer)
    data = buffer.getvalue()
    return {label for label, marker in markers.items()
            if re.search(rb"(?<![0-9A-Za-z])" + re.escape(marker.encode()) + rb"(?![0-9A-Za-z])", data)}


def group(label):
    """The group of the comparison document that explains a difference."""
    if label in OUTSIDE:
        return "outside"
    if "[0]." in label:
        return "sequence free text"
    if "clean_descriptors" in ROWS.get(tag_for_keyword(label) or 0, ("", "", {}))[2]:
        return "descriptors"
    if label.startswith("GPS"):
        return "GPS"
    return "other"


def test_every_difference_from_dicognito_is_explained(tmp_path):
    anonymizer = pytest.importorskip("dicognito.anonymizer")
    write_study(tmp_path / "study", hours=(4.0,))
    ds, markers = planted_dataset(sorted((tmp_path / "study" / "tp1" / "ct").iterdir())[0])

    ours = Deidentifier(PatientEntry("key", {}, "TRIAL-1", -400), Identifiers()).apply(ds)
    theirs = copy.deepcopy(ds)
    anonymizer.Anonymizer(seed="comparison").anonymize(theirs)
    kept_here, kept_there = kept_markers(ours, markers), kept_markers(theirs, markers)

    assert kept_here == set()
    differences = kept_there - kept_here
    counts = {}
    for label in differences:
        counts[group(label)] = counts.get(group(label), 0) + 1
    assert counts == {"outside": 7, "sequence free text": 61, "descriptors": 119, "GPS": 28, "other": 122}
    listed = DOC.read_text().split("```keywords")[1].split("```")[0].split()
    assert sorted(label for label in differences if group(label) == "other") == sorted(listed)
