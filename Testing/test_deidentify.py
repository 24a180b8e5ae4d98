"""De-identified export for central review: nothing identifying survives anywhere, timing and geometry do."""

import datetime
import json
import os
import pathlib
import subprocess

import numpy as np
import pydicom
import pytest

from export_fixtures import ADMINISTRATION, PATIENT, dciodvfy_errors, write_study
from MIBGDosimetryLib import cli
from MIBGDosimetryLib.export import rtplan, seg
from MIBGDosimetryLib.volume import ImageVolume

#: Every identifying value the fixture study holds, and the parts of the name.
FORBIDDEN = [v for k, v in PATIENT.items()] + PATIENT["name"].split("^")


def every_text(ds):
    """(path, text) of every element of a dataset, sequences included, file meta too, pixel data excluded."""
    found = []

    def visit(dataset, prefix):
        for element in dataset:
            label = f"{prefix}{element.keyword or element.tag}"
            if element.VR == "SQ":
                for n, item in enumerate(element.value):
                    visit(item, f"{label}[{n}].")
            elif element.tag != 0x7FE00010:
                value = element.value
                if isinstance(value, bytes):
                    found.append((label, value.decode("latin-1")))
                elif isinstance(value, (list, pydicom.multival.MultiValue)):
                    found.extend((label, str(v)) for v in value)
                else:
                    found.append((label, str(value)))

    visit(ds, "")
    visit(ds.file_meta, "meta.")
    return found


def dicom_files(folder):
    return sorted(str(p) for p in pathlib.Path(folder).rglob("*.dcm"))


def exported_by_original(folder, out, mapping, patient_key):
    """{original path relative to ``folder``: exported dataset}, matched through the mapping's UID map."""
    uid_map = json.loads(pathlib.Path(mapping).read_text())["patients"][patient_key]["uid_map"]
    exported = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in dicom_files(out)}
    matched = {}
    for path in dicom_files(folder):
        original = pydicom.dcmread(path, stop_before_pixels=True)
        matched[os.path.relpath(path, folder)] = pydicom.dcmread(exported[uid_map[str(original.SOPInstanceUID)]])
    return matched


def parse_dt(text):
    return datetime.datetime.strptime(text[:14], "%Y%m%d%H%M%S")


def acquisition_hours(ds):
    start = parse_dt(ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime)
    return (parse_dt(ds.AcquisitionDateTime) - start).total_seconds() / 3600.0


@pytest.fixture
def study(tmp_path):
    """A three-time-point study and a results folder (RT Dose on the first CT with its RT Plan, results.json,
    a report)."""
    folder = tmp_path / "study"
    write_study(folder, hours=(4.0, 24.0, 72.0))
    results_dir = tmp_path / "results"
    ct = pydicom.dcmread(dicom_files(folder / "tp1" / "ct")[0])
    dose = ImageVolume(np.random.default_rng(0).random((3, 4, 5)), (4.0, 4.0, 4.0), (-10, -10, 0), np.eye(3), "Gy")
    rtplan.write_rt_dose_with_plan(dose, results_dir, reference_ct=ct, administered_activity_MBq=3700.0,
                                   dose_filename="dose.dcm", plan_filename="plan.dcm")
    cts = [pydicom.dcmread(p) for p in dicom_files(folder / "tp1" / "ct")]
    grid = ImageVolume(np.stack([d.pixel_array for d in cts]), (2.0, 2.0, 3.0),
                       (20.0, 16.0, -9.0), np.diag([-1.0, -1.0, 1.0]), "HU")
    mask = np.zeros(grid.array.shape, dtype=bool)
    mask[2:4, 5:9, 6:12] = True
    seg.write_seg({"liver": mask}, grid, cts, results_dir / "seg.dcm")
    results = {"provenance": {"patient": PATIENT["name"], "study": str(folder), "study_uid": ct.StudyInstanceUID,
                              "computed": "2025-03-20T10:00:00"},
               "calibration": {"site": PATIENT["institution"]}, "timepoints": [],
               "vois": [{"name": "liver", "kind": "organ", "mean_dose_Gy": 2.0, "warnings": []}],
               "warnings": [f"Checked by {PATIENT['operator']}"]}
    (results_dir / "results.json").write_text(json.dumps(results))
    from MIBGDosimetryLib.report import render_report

    render_report(results, results_dir)
    (results_dir / "scene.mrb").write_bytes(b"binary scene")
    return folder, results_dir


def run_cli(*args):
    return cli.main(["deidentify", *[str(a) for a in args]])


def test_export_keeps_nothing_identifying_but_timing_geometry_and_characteristics(study, tmp_path, capsys):
    folder, results_dir = study
    out, mapping = tmp_path / "export", tmp_path / "local" / "map.json"
    assert run_cli(folder, "--out", out, "--mapping", mapping, "--pseudonym", "TRIAL-042",
                   "--results", results_dir) == 0
    originals = {os.path.relpath(p, folder): pydicom.dcmread(p) for p in dicom_files(folder)}
    # File and folder names are made by the export: time points in order, series by modality.
    expected = {f"TP{n:02d}/{kind}" for n in (1, 2, 3) for kind in [f"CT/{k:04d}.dcm" for k in range(1, 7)]
                + ["NM/0001.dcm"]} | {f"results/{m}/0001.dcm" for m in ("RTDOSE", "RTPLAN", "SEG")}
    assert {os.path.relpath(p, out).replace(os.sep, "/") for p in dicom_files(out)} == expected
    exported = exported_by_original(folder, out, mapping, PATIENT["id"])
    exported.update(exported_by_original(results_dir, out, mapping, PATIENT["id"]))
    exported = {k if k in originals else f"results/{k}": v for k, v in exported.items()}

    # Instance UIDs (studies, series, images, frames); registered UIDs and the writer's class UID stay.
    original_uids = {text for ds in originals.values() for label, text in every_text(ds)
                     if label.endswith("UID") and not label.endswith("ImplementationClassUID")
                     and not text.startswith("1.2.840.10008")}
    for name, ds in exported.items():
        for label, text in every_text(ds):
            for value in FORBIDDEN:
                assert value.upper() not in text.upper(), f"{name} {label} keeps '{value}'"
            assert text not in original_uids, f"{name} {label} keeps an original UID"
        assert all(not element.tag.is_private for element in ds.iterall())
        assert (ds.PatientName, ds.PatientID, ds.PatientIdentityRemoved) == ("TRIAL-042", "TRIAL-042", "YES")
        assert {c.CodeValue for c in ds.DeidentificationMethodCodeSequence} == {"113100", "113107", "113108"}
    for name, original in originals.items():
        ds = exported[name]
        # Patient characteristics kept, dates moved, times of day and geometry unchanged.
        for keyword in ("PatientAge", "PatientSex", "PatientWeight", "PatientSize", "AcquisitionTime",
                        "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            assert ds[keyword].value == original[keyword].value, f"{name} {keyword}"
        assert ds.StudyDate != original.StudyDate
        np.testing.assert_array_equal(ds.pixel_array, original.pixel_array)
        if original.Modality == "NM":
            assert acquisition_hours(ds) == pytest.approx(acquisition_hours(original), abs=1e-9)
    # Hours after administration of every CT, against the (shifted) administration of its time point.
    offset = (parse_dt(exported["tp1/spect.dcm"].AcquisitionDateTime)
              - parse_dt(originals["tp1/spect.dcm"].AcquisitionDateTime))
    assert offset.days <= -365 and offset.seconds == 0
    for n, hours in enumerate((4.0, 24.0, 72.0), start=1):
        ct = exported[f"tp{n}/ct/ct_000.dcm"]
        acquired = datetime.datetime.strptime(ct.AcquisitionDate + ct.AcquisitionTime, "%Y%m%d%H%M%S")
        assert (acquired - (ADMINISTRATION + offset)).total_seconds() / 3600 == pytest.approx(hours)

    # UIDs replaced consistently: series shared by the slices, frame shared by CT, SPECT and dose.
    series = {exported[f"tp1/ct/ct_{k:03d}.dcm"].SeriesInstanceUID for k in range(6)}
    assert len(series) == 1
    frame = exported["tp1/ct/ct_000.dcm"].FrameOfReferenceUID
    assert exported["tp1/spect.dcm"].FrameOfReferenceUID == frame
    assert exported["results/dose.dcm"].FrameOfReferenceUID == frame
    assert exported["results/seg.dcm"].FrameOfReferenceUID == frame
    assert exported["results/plan.dcm"].FrameOfReferenceUID == frame
    plan_reference = exported["results/dose.dcm"].ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
    assert plan_reference == exported["results/plan.dcm"].SOPInstanceUID
    assert plan_reference != pydicom.dcmread(results_dir / "plan.dcm").SOPInstanceUID
    # PS3.15 E.1-1: RT Plan Name and Description removed, the Type 1 RT Plan Label replaced by a dummy.
    assert "RTPlanName" not in exported["results/plan.dcm"] and "RTPlanDescription" not in exported["results/plan.dcm"]
    assert exported["results/plan.dcm"].RTPlanLabel == "DEIDENTIFIED"
    seg_references = {i.ReferencedSOPInstanceUID for s in exported["results/seg.dcm"].ReferencedSeriesSequence
                      for i in s.ReferencedInstanceSequence}
    assert seg_references == {exported[f"tp1/ct/ct_{k:03d}.dcm"].SOPInstanceUID for k in range(6)}
    assert len({ds.StudyInstanceUID for ds in exported.values()}) == 1
    assert exported["tp1/ct/ct_000.dcm"].file_meta.MediaStorageSOPInstanceUID == \
        exported["tp1/ct/ct_000.dcm"].SOPInstanceUID

    # Results: JSON scrubbed, report re-rendered, unreadable files left out; the whole export is text-clean.
    texts = [p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".json", ".html")]
    texts.append(subprocess.run(["pdftotext", str(out / "results" / "report.pdf"), "-"], capture_output=True,
                                text=True, check=True).stdout)
    assert "TRIAL-042" in texts[-1]
    for text in texts:
        for value in FORBIDDEN + [originals["tp1/ct/ct_000.dcm"].StudyInstanceUID]:
            assert value.upper() not in text.upper()
    assert not list(out.rglob("*.mrb"))
    results = json.loads((out / "results" / "results.json").read_text())
    assert results["provenance"]["study"] == "(path removed)"
    assert results["provenance"]["computed"] == (datetime.date(2025, 3, 20) + offset).isoformat() + "T10:00:00"
    summary = json.loads(capsys.readouterr().out)
    assert {"file": "results/scene.mrb",
            "reason": "not DICOM and not our results.json: its content cannot be de-identified"} in \
        summary["not_exported"]

    # dciodvfy finds no error in the export that the original did not have.
    for name, exported_name in (("tp1/ct/ct_000.dcm", "TP01/CT/0001.dcm"), ("tp2/spect.dcm", "TP02/NM/0001.dcm")):
        assert set(dciodvfy_errors(out / exported_name)) <= set(dciodvfy_errors(folder / name)), name
    for name in ("SEG", "RTDOSE", "RTPLAN"):
        assert dciodvfy_errors(out / "results" / name / "0001.dcm") == [], name

    # The local mapping re-identifies, and a second export reuses pseudonym, offset and UIDs.
    kept = json.loads(mapping.read_text())["patients"][PATIENT["id"]]
    assert kept["pseudonym"] == "TRIAL-042" and kept["date_offset_days"] == offset.days
    assert kept["uid_map"][originals["tp1/ct/ct_000.dcm"].FrameOfReferenceUID] == frame
    assert oct(mapping.stat().st_mode & 0o777) == "0o600"
    assert run_cli(folder, "--out", tmp_path / "again", "--mapping", mapping) == 0
    again = pydicom.dcmread(tmp_path / "again" / "TP01" / "CT" / "0001.dcm")
    assert (again.PatientID, again.FrameOfReferenceUID, again.StudyDate) == \
        ("TRIAL-042", frame, exported["tp1/ct/ct_000.dcm"].StudyDate)


def test_mapping_inside_the_export_or_the_study_is_refused(study, tmp_path, capsys):
    folder, _ = study
    out = tmp_path / "export"
    assert run_cli(folder, "--out", out, "--mapping", out / "map.json") == 2
    assert "must never travel with the export" in capsys.readouterr().err
    assert run_cli(folder, "--out", out, "--mapping", folder / "map.json") == 2
    assert not out.exists() and not (folder / "map.json").exists()


def test_an_identifying_value_the_profile_does_not_know_stops_the_export(study, tmp_path, capsys):
    folder, _ = study
    spect = folder / "tp2" / "spect.dcm"
    ds = pydicom.dcmread(spect)
    # A site typed the child's name into the radiopharmaceutical description, an attribute the profile keeps.
    ds.RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical = f"mIBG for {PATIENT['name']}"
    ds.save_as(spect)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "export"
    assert run_cli(folder, "--out", out, "--mapping", tmp_path / "map.json") == 2
    message = capsys.readouterr().err
    assert "still holds identifying values" in message
    assert f"{os.path.join('TP02', 'NM', '0001.dcm')}: RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical" \
        in message
    # No export; the mapping keeps the patient's reserved pseudonym, with no export recorded.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".map.json.lock") == sorted(before + ["map.json"])
    assert [e["exports"] for e in json.loads((tmp_path / "map.json").read_text())["patients"].values()] == [[]]


def test_existing_export_folder_is_not_overwritten(study, tmp_path):
    folder, _ = study
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert run_cli(folder, "--out", out, "--mapping", tmp_path / "map.json") == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_phantom_study_export_keeps_timing_and_links_but_no_identity(tmp_path):
    from export_fixtures import phantom_study

    folder = phantom_study([4.0, 24.0, 48.0, 96.0, 240.0])
    out, mapping = tmp_path / "export", tmp_path / "map.json"
    assert run_cli(folder, "--out", out, "--mapping", mapping, "--pseudonym", "TRIAL-101") == 0
    spect = pydicom.dcmread(os.path.join(folder, "tp1", "spect.dcm"), stop_before_pixels=True)
    forbidden = [str(spect.PatientName), spect.PatientID, spect.PatientBirthDate]
    for path in dicom_files(out):
        for label, text in every_text(pydicom.dcmread(path)):
            for value in forbidden:
                assert value not in text, f"{path} {label} keeps '{value}'"
    # truth.json is not DICOM and not our results: left out, like any other file of unknown content.
    assert not list(out.rglob("*.json"))
    exported = exported_by_original(folder, out, mapping, spect.PatientID)
    truth = json.loads((pathlib.Path(folder) / "truth.json").read_text())
    for n, tp in enumerate(truth["timepoints"], start=1):
        name = f"{tp['label']}/spect.dcm"
        original = pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
        ds = exported[name]
        assert acquisition_hours(ds) == pytest.approx(tp["hours_after_administration"], abs=1e-6)
        assert acquisition_hours(ds) == pytest.approx(acquisition_hours(original), abs=1e-9)
        assert os.path.samefile(ds.filename, out / f"TP{n:02d}" / "NM" / "0001.dcm")
        detector, original_detector = ds.DetectorInformationSequence[0], original.DetectorInformationSequence[0]
        assert detector.ImagePositionPatient == original_detector.ImagePositionPatient
        assert detector.ImageOrientationPatient == original_detector.ImageOrientationPatient
        assert ds.PixelSpacing == original.PixelSpacing
    # The organ SEG still points at the exported CT images of the reference time point.
    organ_seg = exported["segmentation.dcm"]
    referenced = {i.ReferencedSOPInstanceUID for s in organ_seg.ReferencedSeriesSequence
                  for i in s.ReferencedInstanceSequence}
    ct_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dicom_files(out / "TP01" / "CT")}
    assert referenced and referenced <= ct_uids
    assert os.path.samefile(organ_seg.filename, out / "SEG" / "0001.dcm")
    for name in ("segmentation.dcm", "tp1/spect.dcm", "tp2/ct/ct_0001.dcm"):
        assert set(dciodvfy_errors(exported[name].filename)) <= set(dciodvfy_errors(os.path.join(folder, name))), name
