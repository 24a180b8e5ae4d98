"""De-identified export of a patient study and its results for central review.

Implements the DICOM Basic Application Level Confidentiality Profile (PS3.15 Annex E, table E.1-1)
for the attributes that identify a patient in nuclear-medicine and CT studies, with two options:

- Retain Longitudinal Temporal Information with Modified Dates: every date is moved by the same
  whole number of days per patient, times of day are kept, so the hours between administration
  and each acquisition are unchanged (they drive the time-activity curves);
- Retain Patient Characteristics: age, sex, weight and size are kept (the dosimetry and the
  imaging-dose estimate need them).

UIDs are replaced by new ones, the same new UID for the same original UID everywhere in the
export (references in sequences included). Private attributes are removed. The pseudonym, the UID
map and the date offset are kept in a mapping file that the user chooses and that may never lie
inside the export or the input folder. Before the export is put in place every element of every
exported object is searched for the original identifying values; if any remains the export is
removed and the function fails.
"""

import copy
import dataclasses
import datetime
import json
import os
import re
import secrets
import tempfile

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary, generate_uid

from MIBGDosimetryLib import compat
from MIBGDosimetryLib.dicomio.common import atomic_folder

#: PS3.15 E.1-1 action X (remove) for the attributes that identify patients, staff, places and devices.
REMOVE_KEYWORDS = (
    "PatientBirthTime", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "MilitaryRank", "BranchOfService",
    "EthnicGroup", "PatientReligiousPreference", "Occupation", "MedicalRecordLocator", "PatientComments",
    "AdditionalPatientHistory", "PatientInsurancePlanCodeSequence", "ResponsiblePerson", "ResponsibleOrganization",
    "CountryOfResidence", "RegionOfResidence", "IssuerOfPatientID", "PatientState", "MedicalAlerts", "Allergies",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "RequestingPhysician", "RequestingService",
    "OperatorIdentificationSequence", "ScheduledPerformingPhysicianName",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "DetectorID", "PlateID", "CassetteID", "GantryID", "DeviceUID",
    "StudyDescription", "SeriesDescription", "ProtocolName", "RequestedProcedureDescription",
    "PerformedProcedureStepDescription", "PerformedProcedureStepID", "ScheduledProcedureStepDescription",
    "ReasonForStudy", "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "DerivationDescription",
    "ImageComments", "AcquisitionComments", "FrameComments", "StudyComments", "InterpretationText",
    "RequestAttributesSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "PerformedLocation", "ScheduledStudyLocation",
    "CurrentPatientLocation", "PatientInstitutionResidence", "PerformingPhysicianIdentificationSequence",
    "ContentCreatorIdentificationCodeSequence", "VerifyingObserverName",
    "PersonName", "PersonAddress", "PersonTelephoneNumbers", "TextComments", "TextString",
    "DoseComment", "AuthorObserverSequence", "ParticipantSequence", "ConsultingPhysicianName",
    "IssuerOfAdmissionIDSequence", "AdmissionID", "ServiceEpisodeID", "ServiceEpisodeDescription",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest",
    "RTPlanName", "RTPlanDescription",
)
#: Action Z (replace by an empty value): Type 2 attributes that must stay present.
EMPTY_KEYWORDS = ("PatientBirthDate", "ReferringPhysicianName", "AccessionNumber", "StudyID",
                  "PatientSexNeutered", "ContentCreatorName", "OperatorsName")
#: Action D (replace by a dummy value): Type 1 in some IODs (Enhanced General Equipment of SEG, RT Plan).
DUMMY_VALUES = {"DeviceSerialNumber": "DEIDENTIFIED", "RTPlanLabel": "DEIDENTIFIED"}
#: Kept under the Retain Patient Characteristics Option.
PATIENT_CHARACTERISTICS = ("PatientAge", "PatientSex", "PatientWeight", "PatientSize")
#: Values searched for in the export: everything that names or locates the patient and the staff.
IDENTIFYING_KEYWORDS = ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
                        "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "PatientBirthDate",
                        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
                        "ReferringPhysicianName", "PerformingPhysicianName", "PhysiciansOfRecord",
                        "NameOfPhysiciansReadingStudy", "RequestingPhysician", "OperatorsName", "StationName",
                        "DeviceSerialNumber", "AccessionNumber", "MedicalRecordLocator", "ResponsiblePerson",
                        "IssuerOfPatientID", "DetectorID", "ConsultingPhysicianName", "PersonName")
#: PS3.16 CID 7050 codes of the profile and the options applied.
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
                ("113108", "Retain Patient Characteristics Option"))
#: Values shorter than this are searched as whole values only: a 2-character ID would otherwise be
#: "found" inside every other number.
MIN_SUBSTRING_LENGTH = 4
#: A base64 data URI of an image embedded in an HTML report.
EMBEDDED_IMAGE = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,[A-Za-z0-9+/=\s]+")
#: Words of the trade that a phantom's name or station may be made of ("MIBG^Phantom", "PHANTOM"):
#: searched for as whole values of identifying attributes only, or every tracer description and
#: manufacturer name would be flagged.
TRADE_WORDS = {"MIBG", "PHANTOM", "TEST", "IODINE", "IOBENGUANE", "SPECT", "CT", "NM", "DOSIMETRY", "PATIENT"}
#: Files re-rendered from de-identified results rather than copied.
REPORT_SUFFIXES = (".pdf", ".html", ".htm")
TEXT_SUFFIXES = (".json", ".csv", ".tsv", ".txt")


@dataclasses.dataclass
class PatientMapping:
    """What links a pseudonymised patient to the real one (kept only in the local mapping file)."""

    original_id: str
    original_name: str
    pseudonym: str
    date_offset_days: int
    uid_map: dict = dataclasses.field(default_factory=dict)


class Deidentifier:
    """Applies the profile to datasets of one patient with one consistent UID map and date offset."""

    def __init__(self, mapping):
        self.mapping = mapping
        #: Identifying values searched for in any text, each with the pattern that finds it.
        self.identifying_values = {}
        #: Short identifying values (e.g. a 3-digit ID), searched as whole values of identifying attributes.
        self.short_values = set()
        self.original_uids = set()

    # Collecting what must not survive
    def collect(self, ds):
        """Remember the identifying values and instance UIDs of an original dataset."""
        def visit(dataset, element):
            if element.keyword in IDENTIFYING_KEYWORDS:
                for value in _text_values(element):
                    self._remember(value, element.VR)
                    if element.VR == "PN":
                        for part in re.split(r"[\^= ]", value):
                            self._remember(part, "PN")
            if element.VR == "UI":
                self.original_uids.update(u for u in _text_values(element) if _is_instance_uid(u))

        ds.walk(visit)
        meta = getattr(ds, "file_meta", Dataset())
        if "MediaStorageSOPInstanceUID" in meta:
            visit(meta, meta["MediaStorageSOPInstanceUID"])

    def _remember(self, value, vr):
        if len(value) < MIN_SUBSTRING_LENGTH or value.upper() in TRADE_WORDS:
            if value:
                self.short_values.add(value)
            return
        escaped = re.escape(value)
        if vr == "DA":
            # A date also hides at the start of a date-time, and in ISO form in text files.
            self.identifying_values[value] = re.compile(rf"(?<![0-9.]){escaped}")
            iso = f"{value[:4]}-{value[4:6]}-{value[6:8]}"
            self.identifying_values[iso] = re.compile(rf"(?<![0-9.]){re.escape(iso)}")
        elif re.search(r"[A-Za-z]", value):
            self.identifying_values[value] = re.compile(escaped, re.IGNORECASE)
        else:
            # Numbers (IDs, serial numbers) count only as whole numbers, not as digits inside others.
            self.identifying_values[value] = re.compile(rf"(?<![0-9.]){escaped}(?![0-9.])")

    # Applying the profile
    def apply(self, ds):
        """Return a de-identified copy of a pydicom dataset (the input is left unchanged)."""
        if str(ds.get("BurnedInAnnotation", "NO")).upper() == "YES":
            raise ValueError(f"The image {ds.get('SOPInstanceUID', '')} has identifying text burned into its "
                             "pixels (BurnedInAnnotation YES); remove it from the study before exporting.")
        out = copy.deepcopy(ds)
        self._fill_age(out)
        out.remove_private_tags()
        _remove_overlays(out)
        out.walk(self._clean_element)
        out.PatientName = self.mapping.pseudonym
        out.PatientID = self.mapping.pseudonym
        out.PatientIdentityRemoved = "YES"
        out.LongitudinalTemporalInformationModified = "MODIFIED"
        out.DeidentificationMethod = ["PS3.15 E.1 Basic Profile", "Retain Longitudinal Modified Dates",
                                      "Retain Patient Characteristics"]
        codes = []
        for value, meaning in METHOD_CODES:
            code = Dataset()
            code.CodeValue = value
            code.CodingSchemeDesignator = "DCM"
            code.CodeMeaning = meaning
            codes.append(code)
        out.DeidentificationMethodCodeSequence = codes
        if hasattr(ds, "file_meta"):
            out.file_meta = copy.deepcopy(ds.file_meta)
            if "MediaStorageSOPInstanceUID" in out.file_meta:
                out.file_meta.MediaStorageSOPInstanceUID = self.new_uid(out.file_meta.MediaStorageSOPInstanceUID)
            out.file_meta.ImplementationVersionName = "MIBGDOSE"
        return out

    def new_uid(self, uid):
        uid = str(uid)
        if not _is_instance_uid(uid):
            return uid
        if uid not in self.mapping.uid_map:
            self.mapping.uid_map[uid] = generate_uid()
        return self.mapping.uid_map[uid]

    def shift_date(self, text):
        """Move a DA value (YYYYMMDD) by the patient's offset."""
        if not text:
            return text
        day = datetime.datetime.strptime(text[:8], "%Y%m%d") + datetime.timedelta(days=self.mapping.date_offset_days)
        return day.strftime("%Y%m%d")

    def shift_datetime(self, text):
        """Move a DT value (YYYYMMDD[HHMMSS[.F]][&ZZXX]) by the offset; the time of day is kept."""
        if not text or len(text) < 8:
            return text
        return self.shift_date(text[:8]) + text[8:]

    def _clean_element(self, dataset, element):
        keyword = element.keyword
        if keyword in PATIENT_CHARACTERISTICS:
            return
        if keyword in REMOVE_KEYWORDS:
            del dataset[element.tag]
        elif keyword in DUMMY_VALUES:
            element.value = DUMMY_VALUES[keyword]
        elif keyword in EMPTY_KEYWORDS:
            element.value = ""
        elif element.VR == "UI":
            element.value = _map_values(element.value, self.new_uid)
        elif element.VR == "DA":
            element.value = _map_values(element.value, self.shift_date)
        elif element.VR == "DT":
            element.value = _map_values(element.value, self.shift_datetime)

    @staticmethod
    def _fill_age(ds):
        """Keep the age that the birth date gave (Retain Patient Characteristics) before removing it."""
        if ds.get("PatientAge") or not ds.get("PatientBirthDate") or not ds.get("StudyDate"):
            return
        birth = datetime.datetime.strptime(str(ds.PatientBirthDate)[:8], "%Y%m%d")
        study = datetime.datetime.strptime(str(ds.StudyDate)[:8], "%Y%m%d")
        years = study.year - birth.year - ((study.month, study.day) < (birth.month, birth.day))
        if years >= 2:
            ds.PatientAge = f"{years:03d}Y"
        else:
            ds.PatientAge = f"{max((study - birth).days // 30, 0):03d}M"

    # Checking the result
    def find_remaining(self, ds, where):
        """List 'file: tag path = value' for every element still holding an original identifying value or UID."""
        found = []

        def scan(dataset, path):
            for element in dataset:
                label = f"{path}{element.keyword or element.tag}"
                if element.VR == "SQ":
                    for n, item in enumerate(element.value):
                        scan(item, f"{label}[{n}].")
                    continue
                if element.tag == 0x7FE00010:
                    continue
                for value in _searchable_values(element):
                    hit = self.matches(value)
                    if hit is None and element.keyword in IDENTIFYING_KEYWORDS and value in self.short_values:
                        hit = value
                    if hit is not None:
                        found.append(f"{where}: {label} holds '{hit}'")

        scan(ds, "")
        if hasattr(ds, "file_meta"):
            scan(ds.file_meta, "file meta ")
        return found

    def matches(self, text):
        """The original identifying value or UID contained in ``text``, or None."""
        for value, pattern in self.identifying_values.items():
            if pattern.search(text):
                return value
        for token in re.findall(r"[0-9]+(?:\.[0-9]+)+", text):
            if token in self.original_uids:
                return token
        return None


def deidentify_study(study_dir, out_dir, mapping_path, pseudonym=None, results_dir=None, log=None):
    """Write a de-identified copy of a study folder (and optionally a results folder) for central review.

    study_dir: the patient study (any layout of DICOM files; JSON/CSV/TSV/TXT files are scrubbed).
    out_dir: export folder; created; must not exist or be empty. Written completely or not at all.
    mapping_path: local JSON file with the pseudonym, the date offset and the UID map; read if it
        exists (so a patient keeps the same pseudonym, offset and UIDs in later exports), written
        otherwise. It must not lie inside ``out_dir``, ``study_dir`` or ``results_dir``.
    pseudonym: the trial's subject code; a random one is made when None and the mapping has none.
    results_dir: folder written by ``mibgdose dose`` (results.json, RT Dose, RT Plan, SEG, report); exported
        to ``out_dir/results`` with its report re-rendered from the de-identified results.

    Returns a summary dict: pseudonym, date_offset_days, files exported, files left out and why.
    """
    log = log or (lambda *_: None)
    study_dir = os.path.realpath(study_dir)
    out_dir = os.path.realpath(out_dir)
    mapping_path = os.path.realpath(mapping_path)
    sources = [("", study_dir)] + ([("results", os.path.realpath(results_dir))] if results_dir else [])
    _check_locations(sources, out_dir, mapping_path)

    originals = _read_inputs(sources)
    dicoms = [item for item in originals if item[2] is not None]
    if not dicoms:
        raise ValueError(f"No DICOM files were found in '{study_dir}'; nothing to export.")
    patient_ids = {str(ds.get("PatientID", "")) for _, _, ds in dicoms}
    if len(patient_ids) > 1:
        raise ValueError(f"The folders hold more than one patient ({len(patient_ids)} patient IDs); export "
                         "each patient's study on its own.")
    original_id = patient_ids.pop()
    original_name = str(dicoms[0][2].get("PatientName", ""))
    mapping = _load_or_create_mapping(mapping_path, original_id, original_name, pseudonym)
    if _contains_original(mapping.pseudonym, original_id, original_name):
        raise ValueError("The pseudonym contains the patient's ID or name; choose a trial subject code instead.")

    deidentifier = Deidentifier(mapping)
    for _, _, ds in dicoms:
        deidentifier.collect(ds)

    summary = {"pseudonym": mapping.pseudonym, "date_offset_days": mapping.date_offset_days,
               "exported": [], "not_exported": []}
    # The export is assembled beside its destination and becomes it only once the check has passed.
    with atomic_folder(out_dir) as work:
        results_json = None
        for prefix, relative, header in originals:
            source = os.path.join(dict(sources)[prefix], relative)
            target = os.path.join(work, prefix, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            suffix = os.path.splitext(relative)[1].lower()
            if header is not None:
                # One file at a time with its pixels: a study of several CTs does not fit in memory at once.
                clean = deidentifier.apply(pydicom.dcmread(source))
                compat.save_dicom_file(clean, target)
            elif suffix == ".json" or suffix in TEXT_SUFFIXES:
                with open(source, encoding="utf-8") as stream:
                    text = stream.read()
                cleaned = _scrub_text(text, deidentifier, suffix == ".json")
                with open(target, "w", encoding="utf-8") as stream:
                    stream.write(cleaned)
                if os.path.basename(relative) == "results.json":
                    results_json = target
            elif suffix in REPORT_SUFFIXES:
                summary["not_exported"].append({"file": os.path.join(prefix, relative),
                                                 "reason": "report re-rendered from the de-identified results"
                                                 if results_dir else "a report cannot be checked for names"})
                continue
            else:
                summary["not_exported"].append({"file": os.path.join(prefix, relative),
                                                 "reason": "not DICOM or text: its content cannot be checked"})
                continue
            summary["exported"].append(os.path.join(prefix, relative))
        if results_json is not None:
            from MIBGDosimetryLib.report import render_report

            with open(results_json, encoding="utf-8") as stream:
                results = json.load(stream)
            rendered = render_report(results, os.path.dirname(results_json), basename="report")
            summary["exported"].extend(os.path.relpath(p, work) for p in rendered.values())
        problems = verify_export(work, deidentifier)
        if problems:
            raise ValueError("The de-identified export still holds identifying values, so it was not written:\n  "
                             + "\n  ".join(problems[:20]))
    _write_mapping(mapping_path, mapping)
    log(f"Exported {len(summary['exported'])} files for {mapping.pseudonym} to {out_dir}")
    summary["out_dir"] = out_dir
    summary["mapping"] = mapping_path
    return summary


def verify_export(folder, deidentifier):
    """Scan every element of every DICOM file and every text in ``folder`` for original identifying values.

    DICOM: every element at every sequence depth and the file meta (pixel data excepted), whatever
    its VR; text files (JSON, CSV, TSV, TXT, HTML) whole; PDF files on their raw bytes, which
    holds their metadata but not their compressed page text, so a report in an export is always
    rendered from results that passed this check. Returns a list of findings ('file: where holds
    value'); empty when the export is clean.
    """
    problems = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            ds = _try_read_dicom(path)
            if ds is not None:
                problems.extend(deidentifier.find_remaining(ds, relative))
                continue
            suffix = os.path.splitext(name)[1].lower()
            if suffix in TEXT_SUFFIXES + (".html", ".htm"):
                with open(path, encoding="utf-8", errors="replace") as stream:
                    # Embedded images (base64) are figures drawn from the checked results; their
                    # encoded bytes would only give chance matches of short numbers.
                    text = EMBEDDED_IMAGE.sub("data:", stream.read())
                hit = deidentifier.matches(text)
                if hit is not None:
                    problems.append(f"{relative} holds '{hit}'")
            elif suffix == ".pdf":
                with open(path, "rb") as stream:
                    hit = deidentifier.matches(stream.read().decode("latin-1"))
                if hit is not None:
                    problems.append(f"{relative} holds '{hit}'")
    return problems


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
    """Every file of the input folders as (prefix, relative path, DICOM header without pixels or None)."""
    items = []
    for prefix, folder in sources:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                items.append((prefix, os.path.relpath(path, folder), _try_read_dicom(path, stop_before_pixels=True)))
    return items


def _try_read_dicom(path, stop_before_pixels=False):
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, KeyError):
        return None


def _load_or_create_mapping(path, original_id, original_name, pseudonym):
    patients = {}
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as stream:
                patients = json.load(stream)["patients"]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"The mapping file '{path}' cannot be read ({error}); give a new path or the file "
                             "written by an earlier export.") from error
    if original_id in patients:
        entry = patients[original_id]
        if pseudonym and pseudonym != entry["pseudonym"]:
            raise ValueError(f"The mapping file already gives this patient the pseudonym '{entry['pseudonym']}', "
                             f"not '{pseudonym}'; use that pseudonym or another mapping file.")
        return PatientMapping(original_id, entry["original_name"], entry["pseudonym"],
                              int(entry["date_offset_days"]), dict(entry["uid_map"]))
    if pseudonym and any(e["pseudonym"] == pseudonym for e in patients.values()):
        raise ValueError(f"The pseudonym '{pseudonym}' is already used for another patient in '{path}'.")
    # Shift dates back by one to ten years: far enough that no shifted date equals a real one of the study.
    offset = -(365 + secrets.randbelow(9 * 365))
    return PatientMapping(original_id, original_name, pseudonym or f"MIBG-{secrets.token_hex(4).upper()}", offset)


def _write_mapping(path, mapping):
    patients = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as stream:
            patients = json.load(stream)["patients"]
    patients[mapping.original_id] = {"original_name": mapping.original_name, "pseudonym": mapping.pseudonym,
                                     "date_offset_days": mapping.date_offset_days, "uid_map": mapping.uid_map}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".mapping-", dir=os.path.dirname(path))
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump({"patients": patients}, stream, indent=1)
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def _contains_original(pseudonym, original_id, original_name):
    upper = pseudonym.upper()
    parts = [original_id] + [p for p in re.split(r"[\^= ]", original_name)
                             if len(p) >= MIN_SUBSTRING_LENGTH and p.upper() not in TRADE_WORDS]
    return any(p and p.upper() in upper for p in parts)


_ISO_DATETIME = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?=[T ]\d{2}:\d{2}|\b)")


def _scrub_text(text, deidentifier, is_json):
    """Shift ISO dates, then replace identifying values and original UIDs in a text file."""
    def shift(match):
        day = datetime.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        day += datetime.timedelta(days=deidentifier.mapping.date_offset_days)
        return day.isoformat()

    text = _ISO_DATETIME.sub(shift, text)
    for value in sorted(deidentifier.identifying_values, key=len, reverse=True):
        text = deidentifier.identifying_values[value].sub(deidentifier.mapping.pseudonym, text)
    text = re.sub(r"[0-9]+(?:\.[0-9]+)+", lambda m: deidentifier.mapping.uid_map.get(m.group(0), m.group(0))
                  if m.group(0) in deidentifier.original_uids else m.group(0), text)
    if is_json:
        json.loads(text)
    return text


def _remove_overlays(ds):
    """Overlay planes (groups 6000-601E) can hold drawn names; PS3.15 removes their data and comments."""
    for tag in [t for t in ds.keys() if 0x6000 <= t.group <= 0x601E and t.group % 2 == 0]:
        del ds[tag]


def _is_instance_uid(uid):
    """UIDs made for instances (studies, series, images, frames) rather than registered DICOM UIDs."""
    uid = str(uid)
    return bool(uid) and uid not in UID_dictionary


def _map_values(value, function):
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return [function(str(v)) for v in value]
    return function(str(value)) if value not in (None, "") else value


def _text_values(element):
    if element.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return []
    value = element.value
    values = value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def _searchable_values(element):
    if element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        value = element.value
        return [value.decode("latin-1")] if isinstance(value, bytes) else []
    return _text_values(element)
