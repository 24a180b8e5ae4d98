"""Privacy of the de-identified export: every Annex E attribute, names, paths, free text, the mapping, identity.

The truth here is the planted data: every attribute of PS3.15 Table E.1-1 holds a unique marker, and
the export's bytes are searched for the markers directly (not with the export's own leak check).
"""

import datetime
import json
import os
import pathlib
import re
import shutil
import threading

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from export_fixtures import ADMINISTRATION, PATIENT, dciodvfy_errors, write_study
from MIBGDosimetryLib import cli
from MIBGDosimetryLib.export import annex_e, leakcheck
from MIBGDosimetryLib.export.deidentify import deidentify_study

IDENTITY = ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate")
KEPT_CHARACTERISTICS = {"PatientAge": "006Y", "PatientSex": "F", "PatientSize": "1.18", "PatientWeight": "21.5"}


def run_cli(*args):
    return cli.main(["deidentify", *[str(a) for a in args]])


def dicom_paths(folder):
    return sorted(p for p in pathlib.Path(folder).rglob("*") if p.is_file() and pydicom.misc.is_dicom(p))


def rewrite(folder, change):
    """Apply ``change(ds, path)`` to every DICOM file under ``folder`` and save it in place."""
    for path in dicom_paths(folder):
        ds = pydicom.dcmread(path)
        change(ds, path)
        ds.save_as(path)


def every_byte(folder):
    """{relative path: bytes} of every file of a folder, and the relative paths of every folder and file."""
    folder = pathlib.Path(folder)
    return ({str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()},
            [str(p.relative_to(folder)) for p in folder.rglob("*")])


def mapping_entries(path):
    return json.loads(pathlib.Path(path).read_text())["patients"]


@pytest.fixture
def study(tmp_path):
    folder = tmp_path / "study"
    write_study(folder, hours=(4.0, 24.0))
    return folder


# --- Every attribute of Table E.1-1 -------------------------------------------------------------------------

def _marker_value(vr, n, dates):
    """A unique value of the VR for row ``n`` (None when the VR cannot hold a marker)."""
    text = f"MRK{n:03d}Q"
    if vr in ("AE", "CS", "SH", "LO", "LT", "ST", "UT", "UC", "UR"):
        return text
    if vr == "PN":
        return f"{text}^GIVEN{n:03d}Q"
    if vr in ("DA", "DT"):
        day = datetime.date(2010, 1, 1) + datetime.timedelta(days=len(dates))
        dates.append(day.strftime("%Y%m%d"))
        return dates[-1] + ("101500" if vr == "DT" else "")
    if vr == "TM":
        return "101500"
    if vr == "UI":
        return f"2.25.{900000000 + n}"
    if vr in ("DS", "IS"):
        return str(70000 + n)
    if vr in ("US", "UL"):
        return 30000 + n
    if vr in ("OB", "UN", "OW"):
        return text.encode()
    if vr == "AS":
        return "012Y"
    return None


def planted_dataset(base_path):
    """A CT image with every Table E.1-1 attribute set to a unique marker, plus private, overlay, curve,
    file-meta and preamble markers. Returns (dataset, {keyword or tag: marker})."""
    ds = pydicom.dcmread(base_path)
    markers, dates = {}, []
    for n, tag in enumerate(sorted(annex_e.ROWS)):
        group = tag >> 16
        if group in (0x0000, 0x0002):
            continue  # command and file-meta groups are not attributes of a stored dataset
        keyword = pydicom.datadict.keyword_for_tag(tag)
        if not keyword:
            continue  # not in the installed pydicom's dictionary (pydicom 2.4)
        vr = dictionary_VR(tag).split(" ")[0]
        if keyword in KEPT_CHARACTERISTICS:
            setattr(ds, keyword, KEPT_CHARACTERISTICS[keyword])
            continue
        if keyword in IDENTITY:
            continue  # the identity stays that of the other files of the study (searched for below)
        if vr == "SQ":
            item = Dataset()
            item.TextValue = f"MRK{n:03d}S"
            item.PersonName = f"MRK{n:03d}P^SEQ"
            ds.add_new(tag, "SQ", Sequence([item]))
            markers[f"{keyword}[0].TextValue"] = item.TextValue
            markers[f"{keyword}[0].PersonName"] = "MRK{:03d}P".format(n)
            continue
        value = _marker_value(vr, n, dates)
        if value is None:
            continue
        ds.add_new(tag, vr, value)
        if vr not in ("TM", "AS"):
            markers[keyword] = value.decode() if isinstance(value, bytes) else str(value)
    block = ds.private_block(0x0099, "MARKER CREATOR", create=True)
    block.add_new(0x10, "LO", "MRKPRIVQ")
    markers["private"] = "MRKPRIVQ"
    ds.add_new(0x50003000, "OB", b"MRKCURVQ")
    markers["curve"] = "MRKCURVQ"
    ds.add_new(0x60004000, "LT", "MRKOVLCQ")
    markers["overlay comment"] = "MRKOVLCQ"
    ds.add_new(0x60003000, "OW", b"MRKOVLDQ")
    markers["overlay data"] = "MRKOVLDQ"
    ds.file_meta.SourceApplicationEntityTitle = "MRKSRCAEQ"
    markers["SourceApplicationEntityTitle"] = "MRKSRCAEQ"
    ds.preamble = b"MRKPREAMQ".ljust(128, b"\0")
    markers["preamble"] = "MRKPREAMQ"
    markers.update({keyword: str(ds[keyword].value).split("^")[0] for keyword in IDENTITY if keyword in ds})
    return ds, markers


def test_every_annex_e_attribute_is_classified_and_nothing_planted_survives(tmp_path):
    """Every row of Table E.1-1 (2024b: 620 rows, the private-attribute rule among them) is in the table, and a
    marker planted in each attribute (any VR, sequences included), in a private, overlay and curve element, the
    file meta and the preamble appears in no byte of the export."""
    assert len(annex_e.ROWS) + len(annex_e.MASKED_ROWS) == 620
    # pydicom 2.4's data dictionary predates 13 attributes of the 2024b table (pydicom 3's has them all); those
    # cannot be planted by keyword there, and the export removes them by tag all the same.
    unknown = [tag for tag in annex_e.ROWS if not pydicom.datadict.keyword_for_tag(tag)]
    assert len(unknown) <= (0 if int(pydicom.__version__.split(".")[0]) >= 3 else 13), [f"{t:08X}" for t in unknown]
    for tag, (name, action, options) in annex_e.ROWS.items():
        assert action in ("D", "Z", "X", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"), name
    for keyword in ("PatientTelecomInformation", "RequestedProcedureID", "ScheduledProcedureStepID",
                    "OriginalAttributesSequence", "IconImageSequence", "ContentSequence", "AcquisitionContextSequence"):
        assert pydicom.datadict.tag_for_keyword(keyword) in annex_e.ROWS, keyword

    folder = tmp_path / "study"
    write_study(folder, hours=(4.0,))
    base = sorted((folder / "tp1" / "ct").iterdir())[0]
    ds, markers = planted_dataset(base)
    ds.save_as(base)
    assert len(markers) > 600 - len(unknown)
    out, mapping = tmp_path / "export", tmp_path / "map.json"
    summary = deidentify_study(folder, out, mapping, pseudonym="TRIAL-777")
    files, names = every_byte(out)
    assert len(files) == len(summary["exported"]) == 7
    for label, marker in markers.items():
        # Whole values only: a date marker may occur by chance among the digits of a new random UID.
        pattern = re.compile(rb"(?<![0-9A-Za-z])" + re.escape(marker.encode()) + rb"(?![0-9A-Za-z])")
        for name, data in files.items():
            assert not pattern.search(data), f"{label} marker '{marker}' survives in {name}"
    exported = pydicom.dcmread(out / "TP01" / "CT" / "0001.dcm")
    original = pydicom.dcmread(base)
    for keyword, value in KEPT_CHARACTERISTICS.items():
        assert str(exported[keyword].value) == value, keyword
    # Modified dates: moved by the patient's offset; times of day kept.
    offset = datetime.timedelta(days=mapping_entries(mapping)[original.PatientID]["date_offset_days"])
    shifted = datetime.datetime.strptime(original.AcquisitionDate, "%Y%m%d") + offset
    assert exported.AcquisitionDate == shifted.strftime("%Y%m%d")
    assert exported.AcquisitionTime == original.AcquisitionTime
    assert {c.CodeValue for c in exported.DeidentificationMethodCodeSequence} == {"113100", "113107", "113108"}
    assert "SourceApplicationEntityTitle" not in exported.file_meta
    # The table itself removes the ethics committee's approval number (X) but gives its name a dummy (D), which
    # dciodvfy reports as a Type 1C attribute present without its condition: the standard's, not the export's.
    errors = {e for e in dciodvfy_errors(out / "TP01" / "CT" / "0001.dcm")
              if "Element=<ClinicalTrialProtocolEthicsCommitteeName>" not in e}
    assert errors <= set(dciodvfy_errors(base))


def test_gaps_of_the_old_attribute_lists_are_removed_or_emptied(study, tmp_path):
    """Telecom, procedure IDs, structured free text, icons, the file meta's AE title and original attributes
    (data a commercial anonymiser already touched) are exported without their values."""
    def plant(ds, path):
        ds.PatientTelecomInformation = "tel +41 61 555 12 34"
        ds.RequestedProcedureID = "RPID4455"
        ds.ScheduledProcedureStepID = "SPSID6677"
        note = Dataset()
        note.RelationshipType, note.ValueType, note.TextValue = "CONTAINS", "TEXT", "Seen on Ward 7 by Dr Weiss"
        ds.ContentSequence = [note]
        context = Dataset()
        context.ValueType, context.TextValue = "TEXT", "Lives at Birkenweg 3"
        ds.AcquisitionContextSequence = [context]
        icon = Dataset()
        icon.SamplesPerPixel, icon.PhotometricInterpretation = 1, "MONOCHROME2"
        icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
        icon.Rows, icon.Columns, icon.PixelData = 2, 4, b"ICONICON"
        ds.IconImageSequence = [icon]
        ds.file_meta.SourceApplicationEntityTitle = "HOSPITALPACS"
        previous = Dataset()
        previous.PatientName = "Realname^Before^Anonymiser"
        original = Dataset()
        original.ModifiedAttributesSequence = [previous]
        original.AttributeModificationDateTime = "20250301120000"
        original.ModifyingSystem = "COMMERCIAL ANON"
        original.ReasonForTheAttributeModification = "COERCE"
        ds.OriginalAttributesSequence = [original]

    rewrite(study, plant)
    out = tmp_path / "export"
    deidentify_study(study, out, tmp_path / "map.json", pseudonym="TRIAL-201")
    files, _ = every_byte(out)
    for value in ("555 12 34", "RPID4455", "SPSID6677", "Ward 7", "Weiss", "Birkenweg", "ICONICON", "HOSPITALPACS",
                  "Realname", "COMMERCIAL ANON"):
        assert not any(value.encode() in data for data in files.values()), value
    ds = pydicom.dcmread(out / "TP01" / "CT" / "0001.dcm")
    assert "OriginalAttributesSequence" not in ds and "IconImageSequence" not in ds
    assert ds.AcquisitionContextSequence == []


# --- Names and paths ------------------------------------------------------------------------------------------

def test_names_of_folders_and_files_never_reach_the_export(tmp_path):
    """A site's folders named after the patient and study date, files named by SOP Instance UID."""
    folder = tmp_path / f"Testperson_Johanna_{PATIENT['id']}_{ADMINISTRATION:%Y%m%d}"
    write_study(folder / f"{ADMINISTRATION:%Y-%m-%d} MIBG", hours=(4.0, 24.0))
    original_uids = set()
    for path in dicom_paths(folder):
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        original_uids.add(uid)
        path.rename(path.with_name(f"{uid}.dcm"))
    out = tmp_path / "export"
    assert run_cli(folder, "--out", out, "--mapping", tmp_path / "map.json") == 0
    files, names = every_byte(out)
    forbidden = ["Testperson", "Johanna", PATIENT["id"], f"{ADMINISTRATION:%Y%m%d}", f"{ADMINISTRATION:%Y-%m-%d}"]
    for name in names:
        assert not any(value.upper() in name.upper() for value in forbidden), name
        assert not any(uid in name for uid in original_uids), name
    for name, data in files.items():
        text = data.decode("latin-1").upper()
        assert not any(value.upper() in text for value in forbidden), name
        assert not any(uid in text for uid in original_uids), name
    assert sorted(names) == sorted(["TP01", "TP02"] + [f"TP0{n}/{kind}" for n in (1, 2) for kind in ("CT", "NM")]
                                   + [f"TP0{n}/CT/{k:04d}.dcm" for n in (1, 2) for k in range(1, 7)]
                                   + [f"TP0{n}/NM/0001.dcm" for n in (1, 2)])


def test_free_text_files_are_never_exported(study, tmp_path, capsys):
    (study / "notes.txt").write_text(f"Johanna, born 01/04/2019, Ward 7, ID {PATIENT['id']}")
    (study / "tp1" / "doses.csv").write_text("organ,dose\nliver,2.0\n")
    (study / "history.json").write_text(json.dumps({"comment": "referred from Ward 7"}))
    out = tmp_path / "export"
    assert run_cli(study, "--out", out, "--mapping", tmp_path / "map.json") == 0
    summary = json.loads(capsys.readouterr().out)
    files, names = every_byte(out)
    assert all(name.endswith(".dcm") for name in files)
    assert not any(b"Ward 7" in data or b"01/04/2019" in data for data in files.values())
    left_out = {entry["file"] for entry in summary["not_exported"]}
    assert left_out == {"notes.txt", os.path.join("tp1", "doses.csv"), "history.json"}


# --- The leak check -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["DOE^MARY", "DOE^GINA", "Prim^Ary"])
def test_names_inside_coded_words_are_not_flagged(study, tmp_path, name):
    """PRIMARY holds MARY, ORIGINAL holds GINA: whole words differ, the export goes through."""
    rewrite(study, lambda ds, path: setattr(ds, "PatientName", name))
    out = tmp_path / "export"
    summary = deidentify_study(study, out, tmp_path / "map.json", pseudonym="TRIAL-301")
    assert len(summary["exported"]) == 14
    ds = pydicom.dcmread(out / "TP01" / "CT" / "0001.dcm")
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]


def test_a_name_as_a_whole_word_is_still_flagged_in_any_attribute(study, tmp_path):
    def plant(ds, path):
        ds.PatientName = "DOE^MARY"
        ds.ManufacturerModelName = "Scanner of Mary"

    rewrite(study, plant)
    with pytest.raises(ValueError, match="ManufacturerModelName holds 'MARY'"):
        deidentify_study(study, tmp_path / "export", tmp_path / "map.json")
    assert not (tmp_path / "export").exists()


def test_text_in_compressed_pdf_streams_is_found(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure = pyplot.figure()
    figure.text(0.1, 0.5, "Patient Johanna Testperson")
    figure.savefig(tmp_path / "report.pdf")
    pyplot.close(figure)
    data = (tmp_path / "report.pdf").read_bytes()
    assert b"Testperson" not in data  # the page text is compressed
    identifiers = leakcheck.Identifiers()
    identifiers.add("Testperson^Johanna")
    identifiers.add("Testperson")
    assert leakcheck.scan_file(tmp_path / "report.pdf", "report.pdf", identifiers) == \
        ["report.pdf holds 'Testperson'"]


def test_a_reviewed_value_can_be_accepted_and_is_recorded(study, tmp_path, capsys):
    """The model name equals the station name (an identifier); the user checked it and accepts it."""
    rewrite(study, lambda ds, path: setattr(ds, "ManufacturerModelName", PATIENT["station"]))
    out, mapping = tmp_path / "export", tmp_path / "map.json"
    assert run_cli(study, "--out", out, "--mapping", mapping) == 2
    assert f"ManufacturerModelName holds '{PATIENT['station']}'" in capsys.readouterr().err
    assert run_cli(study, "--out", out, "--mapping", mapping, "--accept-value", PATIENT["station"]) == 0
    assert pydicom.dcmread(out / "TP01" / "CT" / "0001.dcm").ManufacturerModelName == PATIENT["station"]
    assert mapping_entries(mapping)[PATIENT["id"]]["accepted_values"] == [PATIENT["station"]]


def test_clean_descriptors_keeps_descriptions_without_identifying_words(study, tmp_path):
    rewrite(study, lambda ds, path: setattr(ds, "SeriesDescription", f"MIBG 24h Testperson {ADMINISTRATION:%Y%m%d}"))
    out = tmp_path / "export"
    assert run_cli(study, "--out", out, "--mapping", tmp_path / "map.json", "--clean-descriptors") == 0
    ds = pydicom.dcmread(out / "TP01" / "NM" / "0001.dcm")
    assert ds.SeriesDescription == "MIBG 24h"
    assert "113105" in {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}
    plain = tmp_path / "plain"
    assert run_cli(study, "--out", plain, "--mapping", tmp_path / "map.json") == 0
    assert "SeriesDescription" not in pydicom.dcmread(plain / "TP01" / "NM" / "0001.dcm")


# --- The mapping --------------------------------------------------------------------------------------------

def test_an_unwritable_mapping_path_is_refused_before_any_work(study, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    out = tmp_path / "export"
    assert run_cli(study, "--out", out, "--mapping", blocker / "map.json") == 2
    assert "cannot be written" in capsys.readouterr().err
    assert not out.exists()


def test_the_mapping_is_on_disk_before_the_export_is_published(study, tmp_path, monkeypatch):
    """A kill at the moment the export is renamed into place leaves a mapping that re-identifies it."""
    out, mapping = tmp_path / "export", tmp_path / "map.json"
    seen = {}
    real_replace = os.replace

    def killed_at_publish(source, target, *args, **kwargs):
        if os.path.realpath(target) == os.path.realpath(out):
            seen["mapping"] = mapping_entries(mapping) if mapping.exists() else {}
            raise KeyboardInterrupt("killed while publishing")
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed_at_publish)
    with pytest.raises(KeyboardInterrupt):
        deidentify_study(study, out, mapping, pseudonym="TRIAL-401")
    monkeypatch.undo()
    entry = seen["mapping"][PATIENT["id"]]
    assert entry["pseudonym"] == "TRIAL-401" and len(entry["uid_map"]) >= 14 and entry["exports"]
    assert not out.exists()
    deidentify_study(study, out, mapping)
    assert pydicom.dcmread(out / "TP01" / "CT" / "0001.dcm").PatientID == "TRIAL-401"


def test_exports_of_one_trial_share_pseudonyms_and_merge_the_mapping(study, tmp_path):
    """Two exports of one patient at the same time get one pseudonym; another patient adds an entry."""
    mapping = tmp_path / "map.json"
    outs = [tmp_path / "a", tmp_path / "b"]
    errors = []

    def export(out):
        try:
            deidentify_study(study, out, mapping)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=export, args=(out,)) for out in outs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = {pydicom.dcmread(next(out.rglob("*.dcm"))).PatientID for out in outs}
    assert len(ids) == 1
    entries = mapping_entries(mapping)
    assert list(entries) == [PATIENT["id"]] and entries[PATIENT["id"]]["pseudonym"] == ids.pop()
    assert len(entries[PATIENT["id"]]["exports"]) == 2

    other = tmp_path / "other"
    shutil.copytree(study, other)
    rewrite(other, lambda ds, path: (setattr(ds, "PatientID", "PAT0099999"), setattr(ds, "PatientName", "Other^Olaf")))
    deidentify_study(other, tmp_path / "c", mapping)
    entries = mapping_entries(mapping)
    assert set(entries) == {PATIENT["id"], "PAT0099999"}
    assert entries[PATIENT["id"]]["pseudonym"] != entries["PAT0099999"]["pseudonym"]


# --- Patient identity ---------------------------------------------------------------------------------------

def _two_patients_with_blank_ids(folder):
    def blank(ds, path):
        ds.PatientID = ""
        ds.PatientName = "Alpha^Anna" if "tp1" in str(path) else "Beta^Berta"

    rewrite(folder, blank)


def test_two_patients_with_blank_ids_are_not_exported_together(study, tmp_path):
    _two_patients_with_blank_ids(study)
    with pytest.raises(ValueError, match="more than one patient identity"):
        deidentify_study(study, tmp_path / "export", tmp_path / "map.json")
    assert not (tmp_path / "export").exists()


def test_two_patients_with_blank_ids_are_not_loaded_as_one_study(study):
    from MIBGDosimetryLib.study.loader import load_study

    _two_patients_with_blank_ids(study)
    with pytest.raises(ValueError, match="more than one patient"):
        load_study(str(study))


def test_same_patient_with_name_in_other_case_is_one_identity(study, tmp_path):
    rewrite(study, lambda ds, path: setattr(ds, "PatientName", PATIENT["name"].upper() if "tp2" in str(path)
                                            else PATIENT["name"]))
    summary = deidentify_study(study, tmp_path / "export", tmp_path / "map.json")
    assert len(summary["exported"]) == 14
    assert {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in dicom_paths(tmp_path / "export")} == \
        {summary["pseudonym"]}


def test_words_that_chance_puts_into_compressed_pdf_bytes_are_not_findings(tmp_path):
    """Deflated bytes read as text hold random 'words'; a 3-letter study ID (TP5) was once found in them."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure = pyplot.figure()
    axes = figure.add_subplot()
    for n in range(40):
        axes.plot(np.arange(50), np.cos(np.arange(50) * 0.1 * n) * n, label=f"curve {n}")
    figure.text(0.1, 0.95, "Report of subject 4711")
    figure.savefig(tmp_path / "report.pdf")
    pyplot.close(figure)
    data = (tmp_path / "report.pdf").read_bytes()
    readable = leakcheck._pdf_outside_streams(data) + "".join(
        leakcheck._pdf_text(part) for part in leakcheck._pdf_streams(data))
    readable_words = set(leakcheck.words(readable))
    chance = sorted({w for w in leakcheck.words(data.decode("latin-1"))
                     if len(w) >= leakcheck.MIN_WORD_LENGTH and w not in readable_words})
    assert chance, "the figure should deflate into bytes that hold some 3-letter 'words' by chance"
    identifiers = leakcheck.Identifiers()
    for word in chance:
        identifiers.add(word)
    identifiers.add("4711")
    assert leakcheck.scan_file(tmp_path / "report.pdf", "report.pdf", identifiers) == ["report.pdf holds '4711'"]


def test_the_date_offset_never_moves_a_study_date_onto_another_real_date(monkeypatch):
    """A scan on 2026-03-02 of a child born on 2022-03-02: an offset of -1461 days would move the scan
    date onto the birth date, which the leak check then (rightly) finds; such an offset is drawn again."""
    from MIBGDosimetryLib.export import mapping

    draws = iter([1461 - 365, 100])
    monkeypatch.setattr(mapping.secrets, "randbelow", lambda n: next(draws))
    assert mapping._date_offset_days({"20220302", "20260302", "not a date"}) == -465
    draws = iter([1461 - 365])
    assert mapping._date_offset_days({"20260302"}) == -1461  # nothing to collide with
