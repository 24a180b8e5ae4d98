"""De-identified export of a patient study and its results for central review.

The DICOM files are de-identified after the Basic Application Level Confidentiality Profile of
DICOM PS3.15 Annex E with the Retain Longitudinal Temporal Information with Modified Dates and
Retain Patient Characteristics options, and Clean Descriptors when chosen
(:mod:`MIBGDosimetryLib.export.confidentiality`, table in :mod:`MIBGDosimetryLib.export.annex_e`).

File and folder names are made here, never copied (``TP01/CT/0001.dcm``: time points in the order of
their studies, series by modality, images by instance number), since a site's names often hold the
patient's name, ID or study date. Only DICOM files and our own results are exported: ``results.json``
of ``mibgdose dose`` in de-identified form and its report re-rendered from it; notes, text, CSV,
JSON of other origin, scenes (.mrb) and anything else are left out and listed, since free text cannot
be de-identified reliably.

The export is staged beside its destination, checked by :mod:`MIBGDosimetryLib.export.leakcheck`,
the re-identification mapping is merged into the local mapping file and fsynced, and only then is the
export published by one rename. An export that exists can therefore always be re-identified.
"""

import datetime
import json
import os
import re

import pydicom

from MIBGDosimetryLib.dicomio.common import atomic_folder
from MIBGDosimetryLib import compat
from MIBGDosimetryLib.export import mapping as mapping_file
from MIBGDosimetryLib.export.confidentiality import Deidentifier, ProfileOptions
from MIBGDosimetryLib.export.leakcheck import Identifiers, scan_folder
from MIBGDosimetryLib.study.loader import identity_key, patient_identity

#: Our own results, exported in de-identified form (the report is re-rendered from results.json).
RESULTS_JSON = "results.json"
REPORT_SUFFIXES = (".pdf", ".html", ".htm")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?=[T ]\d{2}:\d{2}|\b)")
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)+")


def deidentify_study(study_dir, out_dir, mapping_path, pseudonym=None, results_dir=None, log=None,
                     accept_values=(), clean_descriptors=False):
    """Write a de-identified copy of a study folder (and optionally a results folder) for central review.

    study_dir: the patient study (DICOM files in any layout; other files are listed, not exported).
    out_dir: export folder; created; must not exist or be empty. Written completely or not at all.
    mapping_path: local JSON mapping file of the trial (pseudonyms, date offsets, UID maps); checked
        for writing before any work, merged, never overwritten. Must lie outside every folder given.
    pseudonym: the trial's subject code; a random one is made when None and the mapping has none.
    results_dir: folder written by ``mibgdose dose``; its DICOM objects and results.json are exported
        de-identified to ``out_dir/results`` with the report re-rendered.
    accept_values: texts the user reviewed and accepts in the export although they equal an
        identifying value (e.g. a site name that is also a device name); recorded in the mapping.
    clean_descriptors: apply the Clean Descriptors Option instead of removing descriptions.

    Returns a summary dict: pseudonym, date_offset_days, files exported, files left out and why.
    """
    log = log or (lambda *_: None)
    study_dir = os.path.realpath(study_dir)
    out_dir = os.path.realpath(out_dir)
    mapping_path = os.path.realpath(mapping_path)
    sources = [("", study_dir)] + ([("results", os.path.realpath(results_dir))] if results_dir else [])
    _check_locations(sources, out_dir, mapping_path)
    mapping_file.check_writable(mapping_path)

    inputs = _read_inputs(sources)
    dicoms = [item for item in inputs if item["header"] is not None]
    if not dicoms:
        raise ValueError(f"No DICOM files were found in '{study_dir}'; nothing to export.")
    identity = _one_patient(dicoms)
    identifiers = Identifiers(accepted=accept_values)
    for item in dicoms:
        identifiers.collect(item["header"])
    if pseudonym and identifiers.find(pseudonym) is not None:
        raise ValueError("The pseudonym contains the patient's ID, name or a date of the study; choose a trial "
                         "subject code instead.")
    entry = mapping_file.reserve(mapping_path, identity, pseudonym, study_dates=identifiers.dates)
    entry.accepted_values = sorted(set(entry.accepted_values) | set(accept_values))
    deidentifier = Deidentifier(entry, identifiers, ProfileOptions(clean_descriptors=clean_descriptors))

    summary = {"pseudonym": entry.pseudonym, "date_offset_days": entry.date_offset_days, "exported": [],
               "not_exported": [], "accepted_values": list(accept_values)}
    names = _export_names(dicoms)
    with atomic_folder(out_dir) as work:
        for item in dicoms:
            target = os.path.join(work, names[id(item)])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            # One file at a time with its pixels: a study of several CTs does not fit in memory at once.
            compat.save_dicom_file(deidentifier.apply(pydicom.dcmread(item["path"])), target)
            summary["exported"].append(names[id(item)])
        for item in inputs:
            if item["header"] is not None:
                continue
            if item["prefix"] == "results" and item["relative"] == RESULTS_JSON:
                summary["exported"].extend(_export_results(item["path"], work, deidentifier))
            else:
                summary["not_exported"].append({"file": os.path.join(item["prefix"], item["relative"]),
                                                "reason": _reason(item)})
        problems = scan_folder(work, identifiers)
        if problems:
            raise ValueError("The de-identified export still holds identifying values, so it was not written:\n  "
                             + "\n  ".join(problems[:20]) + "\nRemove the value from the study, or, if you have "
                             "checked that it does not identify the patient, give it with --accept-value.")
        mapping_file.record(mapping_path, entry, out_dir)
    log(f"Exported {len(summary['exported'])} files for {entry.pseudonym} to {out_dir}")
    summary["out_dir"] = out_dir
    summary["mapping"] = mapping_path
    return summary


def _export_names(dicoms):
    """Generated relative paths: TP<nn>/<MODALITY>/<nnnn>.dcm for the study, results/<MODALITY>/<nnnn>.dcm.

    Time points are the NM series in the order of their acquisition; every other acquired series of
    the study joins the time point acquired nearest to it (as the study loader pairs CT with SPECT).
    Without NM series every acquired series is its own time point. Objects that were not acquired
    (no acquisition date: SEG, RT Dose, RT Plan...) go to <MODALITY>/ at the top.
    """
    series = {}
    for item in dicoms:
        series.setdefault((item["prefix"], str(item["header"].get("SeriesInstanceUID", ""))), []).append(item)
    for items in series.values():
        items.sort(key=lambda i: (_number(i["header"].get("InstanceNumber")), i["relative"]))
    keys = sorted(series, key=lambda k: (_when(series[k][0]["header"]) or datetime.datetime.max,
                                         _number(series[k][0]["header"].get("SeriesNumber")), series[k][0]["relative"]))
    study_keys = [k for k in keys if k[0] != "results" and _acquired(series[k][0]["header"])]
    anchors = [k for k in study_keys if str(series[k][0]["header"].get("Modality", "")).upper() == "NM"] or study_keys
    folders = {k: f"TP{n:02d}" for n, k in enumerate(anchors, start=1)}
    for key in study_keys:
        if key not in folders:
            when = _when(series[key][0]["header"])
            nearest = min(anchors, key=lambda a: _gap_s(when, _when(series[a][0]["header"])))
            folders[key] = folders[nearest]
    names, used = {}, set()
    for key in keys:
        parent = folders.get(key, "results" if key[0] == "results" else "")
        modality = re.sub(r"[^A-Z0-9]", "", str(series[key][0]["header"].get("Modality", "")).upper()) or "OT"
        folder, n = os.path.join(parent, modality), 1
        while folder in used:
            n += 1
            folder = os.path.join(parent, f"{modality}{n:02d}")
        used.add(folder)
        for index, item in enumerate(series[key], start=1):
            names[id(item)] = os.path.join(folder, f"{index:04d}.dcm")
    return names


def _when(header):
    """The acquisition (else series, content, study) date and time of a file, or None."""
    pairs = (("AcquisitionDate", "AcquisitionTime"), ("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime"),
             ("StudyDate", "StudyTime"))
    texts = [str(header.get("AcquisitionDateTime", "") or "")] + [
        str(header.get(d, "") or "") + str(header.get(t, "") or "") for d, t in pairs if header.get(d)]
    for text in texts:
        digits = re.sub(r"[^0-9]", "", text.split(".")[0])[:14]
        if len(digits) >= 8:
            try:
                return datetime.datetime.strptime(digits.ljust(14, "0"), "%Y%m%d%H%M%S")
            except ValueError:
                continue
    return None


def _acquired(header):
    return bool(header.get("AcquisitionDate") or header.get("AcquisitionDateTime"))


def _gap_s(a, b):
    if a is None or b is None:
        return float("inf")
    return abs((a - b).total_seconds())


def _number(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _reason(item):
    suffix = os.path.splitext(item["relative"])[1].lower()
    if item["prefix"] == "results" and suffix in REPORT_SUFFIXES:
        return "report re-rendered from the de-identified results"
    return "not DICOM and not our results.json: its content cannot be de-identified"


def _export_results(path, work, deidentifier):
    """results.json de-identified into work/results, and the report rendered from it."""
    from MIBGDosimetryLib.report import render_report

    with open(path, encoding="utf-8") as stream:
        results = json.load(stream)
    clean = _deidentify_json(results, deidentifier)
    folder = os.path.join(work, "results")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, RESULTS_JSON)
    with open(target, "w", encoding="utf-8") as stream:
        json.dump(clean, stream, indent=1)
    rendered = render_report(clean, folder, basename="report")
    return [os.path.relpath(target, work)] + [os.path.relpath(p, work) for p in rendered.values()]


def _deidentify_json(value, deidentifier):
    """Our results with dates moved, UIDs replaced, identifying values and file paths removed."""
    if isinstance(value, dict):
        return {_deidentify_text(str(k), deidentifier): _deidentify_json(v, deidentifier) for k, v in value.items()}
    if isinstance(value, list):
        return [_deidentify_json(v, deidentifier) for v in value]
    if isinstance(value, str):
        return _deidentify_text(value, deidentifier)
    return value


def _deidentify_text(text, deidentifier):
    if os.path.isabs(text) or re.match(r"^[A-Za-z]:[\\/]", text):
        return "(path removed)"

    def shift(match):
        day = datetime.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        return (day + datetime.timedelta(days=deidentifier.mapping.date_offset_days)).isoformat()

    text = _ISO_DATE.sub(shift, text)
    text = _UID.sub(lambda m: deidentifier.new_uid(m.group(0)) if m.group(0) in deidentifier.identifiers.uids
                    else m.group(0), text)
    return deidentifier.identifiers.replace(text, deidentifier.mapping.pseudonym)


def _one_patient(dicoms):
    """The one patient identity of all files; mixtures of identities (blank ones included) are refused."""
    identities = {}
    for item in dicoms:
        identity = patient_identity(item["header"])
        identities.setdefault(identity_key(identity), (identity, item))
    if len(identities) > 1:
        listing = "; ".join(f"'{os.path.join(item['prefix'], item['relative'])}' (" +
                            ", ".join(f"{k} '{v}'" for k, v in identity.items()) + ")"
                            for identity, item in identities.values())
        raise ValueError(f"The folders hold files of more than one patient identity ({listing}); files differing "
                         "in Patient ID, Issuer, Name or Birth Date (a blank value counts as different) are not "
                         "exported together. Export each patient's study on its own, or correct the files.")
    return next(iter(identities.values()))[0]


def _check_locations(sources, out_dir, mapping_path):
    for _, folder in sources:
        if not os.path.isdir(folder):
            raise ValueError(f"'{folder}' is not a folder.")
        if _inside(out_dir, folder) or _inside(folder, out_dir):
            raise ValueError(f"The export folder '{out_dir}' and the input folder '{folder}' overlap; export to "
                             "a separate folder.")
        if _inside(mapping_path, folder):
            raise ValueError(f"The mapping file '{mapping_path}' lies inside the input folder '{folder}'; keep it "
                             "in a separate, local place.")
    if _inside(mapping_path, out_dir):
        raise ValueError(f"The mapping file '{mapping_path}' lies inside the export folder '{out_dir}'; the "
                         "mapping re-identifies the patient and must never travel with the export. Choose a "
                         "local path outside the export.")
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise ValueError(f"The export folder '{out_dir}' already exists and is not empty; choose a new folder.")


def _inside(path, folder):
    return os.path.commonpath([path, folder]) == folder


def _read_inputs(sources):
    """Every file of the input folders: prefix, relative path, path, DICOM header without pixels or None."""
    items = []
    for prefix, folder in sources:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                items.append({"prefix": prefix, "relative": os.path.relpath(path, folder), "path": path,
                              "header": _try_read_dicom(path)})
    return items


def _try_read_dicom(path):
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, KeyError):
        return None
