"""The DICOM Basic Application Level Confidentiality Profile (PS3.15 Annex E) applied to one dataset.

Every attribute of Table E.1-1 (``annex_e.ROWS``) gets the action of the Basic Profile or of the
option in use:

- Retain Longitudinal Temporal Information with Modified Dates (CID 7050 code 113107): dates and
  date-times are moved by one whole number of days per patient; times of day are kept, so the hours
  between the administration and every acquisition are exact;
- Retain Patient Characteristics (113108): age, sex, size and weight are kept (the dosimetry and
  the imaging-dose estimate need them). The other characteristics the option would allow
  (ethnic group, smoking and pregnancy status, free-text allergies...) get the Basic Profile action:
  nothing in the dosimetry uses them;
- Clean Descriptors (113105), when chosen: descriptions and comments are kept with every word that
  is one of the patient's identifying values, or that holds four digits or more (dates, record
  numbers, telephone numbers), removed. Without the option they get the Basic Profile action
  (mostly X, removed).

Combined actions, which PS3.15 resolves by the attribute's Type in the IOD, are resolved to the
choice valid for every Type: X/Z -> Z (for sequences X, but the Type 2 Acquisition Context Sequence
is emptied), X/D, Z/D and X/Z/D -> D, X/Z/U* -> U. Sequences with action D or U keep their items,
each de-identified by the same rules, with free text (LT, ST, UT, UC, PN) that the table does not
list replaced by a dummy (Text Value in a Content Sequence); sequences with Z are emptied.

Attributes outside the table are kept, except: private attributes (odd groups) removed, since no
private attribute is on a safe list; overlay groups (6000-601E) removed whole; any UID that is not
a UID registered by DICOM replaced consistently; any date moved like the table's dates.
Text burned into pixels is out of scope: an image flagged BurnedInAnnotation YES is refused, and an
image that carries burned-in text without the flag is not detected.
"""

import copy
import dataclasses
import datetime
import re

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID_dictionary, generate_uid

from MIBGDosimetryLib.export.annex_e import MASKED_ROWS, REVISION, ROWS

#: Kept under the Retain Patient Characteristics Option: age, sex, size, weight.
KEPT_CHARACTERISTICS = frozenset((0x00101010, 0x00100040, 0x00101020, 0x00101030))
#: Sequences with action X/Z that are Type 2 (Acquisition Context Module, PS3.3 C.7.6.14): emptied, not removed.
TYPE_2_SEQUENCES = frozenset((0x00400555,))
#: PS3.16 CID 7050 (De-identification Method) codes.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
OPTION_CODES = {"modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
                "patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
                "clean_descriptors": ("113105", "Clean Descriptors Option")}
#: Replacement of action D by VR; texts are cut to the VR's length.
DUMMY_TEXT = "DEIDENTIFIED"
DUMMY_BY_VR = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
               "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0, "FD": 0.0, "UV": 0, "SV": 0}
TEXT_VRS = ("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT")
MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64}
FREE_TEXT_VRS = ("LT", "ST", "UT", "UC", "PN")
BINARY_VRS = ("OB", "OD", "OF", "OL", "OV", "OW", "UN")
#: The patient's ID and name become the pseudonym (PS3.15 allows a replacement in place of Z).
PSEUDONYM_TAGS = (0x00100010, 0x00100020)


@dataclasses.dataclass(frozen=True)
class ProfileOptions:
    """The profile's options in use (Retain Modified Dates and Patient Characteristics are always on)."""

    clean_descriptors: bool = False

    @property
    def names(self):
        return ("modified_dates", "patient_characteristics") + (("clean_descriptors",) if self.clean_descriptors
                                                                 else ())


def table_row(tag):
    """(name, Basic Profile action, option actions) of Table E.1-1 for ``tag``, or None if it is not listed."""
    tag = int(tag)
    if tag in ROWS:
        return ROWS[tag]
    for mask, value, name, action, options in MASKED_ROWS:
        if tag & mask == value:
            return name, action, options
    return None


def action_for(tag, vr, options):
    """The single action (D, Z, X, K, U, C-date, C-desc) applied to ``tag`` of VR ``vr``; None if not in the table."""
    row = table_row(tag)
    if row is None:
        return None
    _, basic, by_option = row
    if int(tag) in KEPT_CHARACTERISTICS:
        return "K"
    if by_option.get("modified_dates") == "C" and vr in ("DA", "DT", "TM"):
        return "C-date"
    if options.clean_descriptors and by_option.get("clean_descriptors") == "C" and vr in TEXT_VRS:
        return "C-desc"
    if basic == "X/Z":
        # An empty sequence is an error where a sequence is Type 3 (1-n items); only the Acquisition
        # Context Sequence is Type 2 in the IODs exported here.
        return "X" if vr == "SQ" and int(tag) not in TYPE_2_SEQUENCES else "Z"
    if basic in ("X/D", "Z/D", "X/Z/D"):
        return "D"
    if basic == "X/Z/U*":
        return "U"
    return basic


class Deidentifier:
    """Applies the profile to the datasets of one patient with one UID map and one date offset.

    mapping: the patient's :class:`MIBGDosimetryLib.export.mapping.PatientEntry` (pseudonym,
        date_offset_days, uid_map; the uid_map grows as new UIDs are met).
    identifiers: the :class:`MIBGDosimetryLib.export.leakcheck.Identifiers` of the study, used by
        Clean Descriptors.
    """

    def __init__(self, mapping, identifiers, options=ProfileOptions()):
        self.mapping = mapping
        self.identifiers = identifiers
        self.options = options

    def apply(self, ds):
        """Return a de-identified copy of a pydicom dataset (the input is left unchanged)."""
        if str(ds.get("BurnedInAnnotation", "NO")).upper() == "YES":
            raise ValueError(f"An image has identifying text burned into its pixels (BurnedInAnnotation YES, SOP "
                             f"class {ds.get('SOPClassUID', '')}); remove it from the study before exporting.")
        out = Dataset()
        for element in ds:
            out.add(copy.deepcopy(element))
        _fill_age(out)
        self._clean(out)
        out.PatientName = self.mapping.pseudonym
        out.PatientID = self.mapping.pseudonym
        out.PatientIdentityRemoved = "YES"
        out.LongitudinalTemporalInformationModified = "MODIFIED"
        out.DeidentificationMethod = [f"DICOM PS3.15 {REVISION} Basic Application Confidentiality Profile"] + [
            OPTION_CODES[name][1] for name in self.options.names]
        codes = []
        for value, meaning in [BASIC_PROFILE_CODE] + [OPTION_CODES[name] for name in self.options.names]:
            code = Dataset()
            code.CodeValue = value
            code.CodingSchemeDesignator = "DCM"
            code.CodeMeaning = meaning
            codes.append(code)
        out.DeidentificationMethodCodeSequence = codes
        out.file_meta = self._file_meta(ds, out)
        out.preamble = b"\0" * 128
        return out

    def _file_meta(self, original, out):
        """A new file meta group: no Source Application Entity Title or private information carried over."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = out.SOPClassUID
        meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        old = getattr(original, "file_meta", None)
        meta.TransferSyntaxUID = old.TransferSyntaxUID if old is not None and "TransferSyntaxUID" in old \
            else pydicom.uid.ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "MIBGDOSE"
        return meta

    def _clean(self, dataset, free_text_dummy=False):
        """Apply the profile to ``dataset`` in place; ``free_text_dummy`` inside a sequence of the table
        (Content Sequence, Referenced Image Sequence...): free text outside the table (Text Value...) gets
        a dummy too, since the standard lists the sequence as a whole."""
        for element in list(dataset):
            tag = element.tag
            if tag.is_private or (0x6000 <= tag.group <= 0x601E and tag.group % 2 == 0):
                del dataset[tag]
                continue
            if int(tag) in PSEUDONYM_TAGS:
                continue
            action = action_for(tag, element.VR, self.options)
            if action is None and free_text_dummy and element.VR in FREE_TEXT_VRS:
                element.value = _dummy(element.VR)
            elif action is None:
                self._outside_table(element, free_text_dummy)
            elif action == "X":
                del dataset[tag]
            elif action == "K":
                continue
            elif element.VR == "SQ":
                if action == "Z":
                    element.value = []
                else:
                    for item in element.value:
                        self._clean(item, free_text_dummy=True)
            elif action == "Z":
                element.value = b"" if element.VR in BINARY_VRS else ""
            elif action == "U" or (action == "D" and element.VR == "UI"):
                element.value = _map_values(element.value, self.new_uid)
            elif action == "C-date":
                self._shift(element)
            elif action == "C-desc":
                element.value = _map_values(element.value, self.clean_descriptor)
            elif action == "D":
                element.value = _dummy(element.VR)

    def _outside_table(self, element, free_text_dummy):
        if element.VR == "SQ":
            for item in element.value:
                self._clean(item, free_text_dummy)
        elif element.VR == "UI":
            element.value = _map_values(element.value, self.new_uid)
        elif element.VR in ("DA", "DT"):
            self._shift(element)

    def _shift(self, element):
        if element.VR == "DA":
            element.value = _map_values(element.value, self.shift_date)
        elif element.VR == "DT":
            element.value = _map_values(element.value, self.shift_datetime)

    def new_uid(self, uid):
        """The export's UID for an original instance UID (the same every time); registered DICOM UIDs are kept."""
        uid = str(uid).strip("\0 ")
        if not is_instance_uid(uid):
            return uid
        if uid not in self.mapping.uid_map:
            self.mapping.uid_map[uid] = generate_uid()
        return self.mapping.uid_map[uid]

    def shift_date(self, text):
        """Move a DA value (YYYYMMDD) by the patient's offset."""
        text = text.strip()
        if len(text) < 8 or not text[:8].isdigit():
            return ""
        day = datetime.datetime.strptime(text[:8], "%Y%m%d") + datetime.timedelta(days=self.mapping.date_offset_days)
        return day.strftime("%Y%m%d")

    def shift_datetime(self, text):
        """Move a DT value (YYYYMMDD[HHMMSS[.F]][&ZZXX]) by the offset; the time of day is kept."""
        text = text.strip()
        if len(text) < 8:
            return ""
        return self.shift_date(text[:8]) + text[8:]

    def clean_descriptor(self, text):
        """Clean Descriptors: drop every word that is an identifying value or holds four digits or more."""
        kept = [word for word in text.split()
                if not re.search(r"[0-9]{4}", word) and self.identifiers.find(word) is None]
        cleaned = " ".join(kept)
        return cleaned if self.identifiers.find(cleaned) is None else ""


def is_instance_uid(uid):
    """UIDs made for instances (studies, series, images, frames) rather than registered DICOM UIDs."""
    uid = str(uid)
    return bool(uid) and uid not in UID_dictionary


def _dummy(vr):
    if vr in DUMMY_BY_VR:
        return DUMMY_BY_VR[vr]
    if vr in BINARY_VRS:
        return b"\0\0"
    return DUMMY_TEXT[:MAX_LENGTH.get(vr, 64)]


def _fill_age(ds):
    """Keep the age that the birth date gave (Retain Patient Characteristics) before the birth date goes."""
    if ds.get("PatientAge") or not ds.get("PatientBirthDate") or not ds.get("StudyDate"):
        return
    birth = datetime.datetime.strptime(str(ds.PatientBirthDate)[:8], "%Y%m%d")
    study = datetime.datetime.strptime(str(ds.StudyDate)[:8], "%Y%m%d")
    years = study.year - birth.year - ((study.month, study.day) < (birth.month, birth.day))
    if years >= 2:
        ds.PatientAge = f"{years:03d}Y"
    else:
        ds.PatientAge = f"{max((study - birth).days // 30, 0):03d}M"


def _map_values(value, function):
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return [function(str(v)) for v in value]
    return function(str(value)) if value not in (None, "") else value
