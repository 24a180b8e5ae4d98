"""The check that an export holds none of the patient's identifying values, before it is published.

Values are compared as whole words (tokens: runs of letters and digits, case-insensitive), so the
name part MARY is found in "Mary Doe" and in "DOE^MARY" but not inside "PRIMARY", and a record number
12345 not inside 123456. A value of several words is found when its words follow each other with any
separators ("Musterstrasse 12" in "Musterstrasse-12"). Dates are also searched in the usual written
forms (2019-04-01, 01.04.2019, 04/01/2019). Coded strings (VR CS) hold terms of the standard, so they
are only compared as whole values. The user can accept a flagged value after review; accepted values
are recorded in the mapping file.

Scanned: every file and folder name; every element of every DICOM file at any sequence depth, the
file meta and the preamble; the whole text of JSON, CSV, HTML files; PDF files on their objects
outside the streams (dictionaries, the document information) and on every stream as text: uncompressed
streams as they are, FlateDecode streams decompressed. The compressed bytes themselves are never read
as text: deflated data is random to the eye, and a 3-letter value would be "found" in it by chance.
Not scanned: the pixels of images (text burned into pixels is out of scope), image streams of PDF
figures, and streams in other compressions (refused as unreadable would be safer, but our reports
write none).
"""

import os
import re
import zlib

import pydicom

from MIBGDosimetryLib.export.annex_e import ROWS

TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
#: A single word shorter than this is only compared with whole values: a 2-letter name part or ID
#: would otherwise be "found" in every abbreviation.
MIN_WORD_LENGTH = 3
#: Words of the trade that a phantom's name or station may be made of ("MIBG^Phantom"): compared as
#: whole values only, or every tracer description and manufacturer name would be flagged.
TRADE_WORDS = {"MIBG", "PHANTOM", "TEST", "IODINE", "IOBENGUANE", "SPECT", "CT", "NM", "DOSIMETRY", "PATIENT",
               "ANONYMOUS", "ANONYMIZED", "DEIDENTIFIED", "UNKNOWN", "NONE"}
#: Table E.1-1 rows whose values are descriptions or comments (they have a Clean Descriptors action):
#: free text removed or cleaned, not identifiers to search for themselves.
DESCRIPTOR_TAGS = frozenset(tag for tag, (_, _, options) in ROWS.items() if "clean_descriptors" in options)
IDENTIFIER_VRS = ("AE", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT")
UID_PATTERN = re.compile(r"[0-9]+(?:\.[0-9]+)+")
#: A base64 data URI of an embedded image: a figure drawn from the checked results.
EMBEDDED_IMAGE = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,[A-Za-z0-9+/=\s]+")
PDF_STREAM = re.compile(rb"\bobj\s*(<<(?:(?!endobj).)*?>>)\s*stream\r?\n", re.DOTALL)
PDF_TEXT_OPERATOR = re.compile(r"\[((?:[^\]\\]|\\.)*)\]\s*TJ|(\((?:[^()\\]|\\.)*\))\s*Tj", re.DOTALL)
PDF_STRING = re.compile(r"\(((?:[^()\\]|\\.)*)\)", re.DOTALL)
#: The counters in the names the export makes (TP01, CT02, 0001.dcm) are not data: a device serial
#: number 0001 does not make the file name 0001.dcm identifying. Other parts of every name are checked.
GENERATED_COUNTER = re.compile(r"^(?:TP|[A-Z]+)?([0-9]{2,4})(?:\.dcm)?$")


def words(text):
    """The upper-case words of a text."""
    return tuple(t.upper() for t in TOKEN.findall(str(text)))


class Identifiers:
    """The identifying values of one patient's originals and the search for them in any text."""

    def __init__(self, accepted=()):
        #: word sequence -> the original value it came from (shown in findings)
        self.phrases = {}
        #: values compared only as whole values (short single words)
        self.whole_values = set()
        self.uids = set()
        #: the dates (YYYYMMDD) of the originals
        self.dates = set()
        self.accepted = {words(value) for value in accepted if words(value)}

    def collect(self, ds):
        """Remember the identifying values and instance UIDs of an original dataset."""
        from MIBGDosimetryLib.export.confidentiality import is_instance_uid

        def visit(dataset, element):
            if element.VR == "UI":
                self.uids.update(v for v in _values(element) if is_instance_uid(v))
            elif element.VR == "PN":
                for value in _values(element):
                    self.add(value)
                    for part in re.split(r"[\^=]", value):
                        self.add(part)
            elif element.VR in ("DA", "DT"):
                for value in _values(element):
                    self.add_date(value[:8])
            elif element.VR in IDENTIFIER_VRS and int(element.tag) in ROWS \
                    and int(element.tag) not in DESCRIPTOR_TAGS:
                for value in _values(element):
                    self.add(value)

        ds.walk(visit)

    def add(self, value):
        """Search for ``value`` from now on (ignored when it is empty or only trade words)."""
        phrase = words(value)
        if not phrase or phrase in self.accepted:
            return
        if len(phrase) == 1 and (len(phrase[0]) < MIN_WORD_LENGTH or phrase[0] in TRADE_WORDS):
            self.whole_values.add(phrase[0])
            return
        if all(word in TRADE_WORDS for word in phrase):
            return
        self.phrases.setdefault(phrase, str(value).strip())

    def add_date(self, value):
        if len(value) != 8 or not value.isdigit():
            return
        self.dates.add(value)
        year, month, day = value[:4], value[4:6], value[6:8]
        for phrase in ((value,), (year, month, day), (day, month, year), (month, day, year)):
            self.phrases.setdefault(phrase, value)

    def find(self, text, coded=False):
        """The original value found in ``text`` (as whole words), or None."""
        text = str(text)
        found = words(text)
        if not found:
            return None
        if coded:
            return self.phrases.get(found) or (found[0] if len(found) == 1 and found[0] in self.whole_values
                                               else None)
        joined = f" {' '.join(found)} "
        for phrase, original in self.phrases.items():
            if f" {' '.join(phrase)} " in joined:
                return original
        for uid in UID_PATTERN.findall(text):
            if uid in self.uids:
                return uid
        return None

    def replace(self, text, pseudonym):
        """``text`` with every identifying value replaced by ``pseudonym`` (for texts we write ourselves)."""
        for phrase in sorted(self.phrases, key=len, reverse=True):
            pattern = r"(?<![^\W_])" + r"[\W_]+".join(re.escape(w) for w in phrase) + r"(?![^\W_])"
            text = re.sub(pattern, pseudonym, text, flags=re.IGNORECASE)
        return text


def scan_dicom(ds, where, identifiers):
    """Findings ('where: element holds value') in every element of a dataset, its file meta and preamble."""
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
            for value in _values(element):
                hit = identifiers.find(value, coded=element.VR == "CS")
                if hit is None and element.VR in IDENTIFIER_VRS and words(value) and \
                        len(words(value)) == 1 and words(value)[0] in identifiers.whole_values:
                    hit = value
                if hit is not None:
                    found.append(f"{where}: {label} holds '{hit}'")

    scan(ds, "")
    if getattr(ds, "file_meta", None) is not None:
        scan(ds.file_meta, "file meta ")
    preamble = getattr(ds, "preamble", None) or b""
    hit = identifiers.find(preamble.decode("latin-1"))
    if hit is not None:
        found.append(f"{where}: preamble holds '{hit}'")
    return found


def scan_folder(folder, identifiers):
    """Findings for every name, DICOM element and text byte under ``folder``; empty when clean."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs) + sorted(files):
            relative = os.path.relpath(os.path.join(root, name), folder)
            counter = GENERATED_COUNTER.match(name)
            hit = identifiers.find(name[:counter.start(1)] + name[counter.end(1):] if counter else name)
            if hit is not None:
                found.append(f"the name '{relative}' holds '{hit}'")
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            found.extend(scan_file(path, relative, identifiers))
    return found


def scan_file(path, relative, identifiers):
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, KeyError):
        ds = None
    if ds is not None:
        return scan_dicom(ds, relative, identifiers)
    with open(path, "rb") as stream:
        data = stream.read()
    texts = [data.decode("utf-8", errors="replace")]
    if data.startswith(b"%PDF"):
        texts = [_pdf_outside_streams(data)] + [_pdf_text(part) for part in _pdf_streams(data)]
    found = []
    for text in texts:
        hit = identifiers.find(EMBEDDED_IMAGE.sub("data:", text))
        if hit is not None:
            found.append(f"{relative} holds '{hit}'")
            break
    return found


def _pdf_stream_spans(data):
    """(header, start, end) of every stream of a PDF: its dictionary and the byte range of its data."""
    for match in PDF_STREAM.finditer(data):
        start = match.end()
        end = data.find(b"endstream", start)
        yield match.group(1), start, (len(data) if end < 0 else end)


def _pdf_outside_streams(data):
    """The PDF's bytes as text with the data of every stream left out."""
    parts, position = [], 0
    for _, start, end in _pdf_stream_spans(data):
        parts.append(data[position:start])
        position = end
    parts.append(data[position:])
    return b"\n".join(parts).decode("latin-1")


def _pdf_streams(data):
    """The streams of a PDF as bytes: uncompressed ones as they are, FlateDecode ones decompressed.

    Image streams and streams in other compressions are skipped (see the module's note).
    """
    for header, start, end in _pdf_stream_spans(data):
        if re.search(rb"/Subtype\s*/Image", header):
            continue
        if b"/Filter" not in header:
            yield data[start:end]
            continue
        if b"/FlateDecode" not in header:
            continue
        try:
            yield zlib.decompressobj().decompress(data[start:end])
        except zlib.error:
            continue


def _pdf_text(stream):
    """The stream's bytes, then the strings of its text operators (Tj, TJ) joined as shown on the page.

    A TJ array splits a word into kerned pieces, "[(T) 170 (estperson)] TJ"; joined, the word is whole.
    Strings in hex form (glyph numbers of embedded fonts) are not decoded.
    """
    text = stream.decode("latin-1")
    shown = []
    for array, single in PDF_TEXT_OPERATOR.findall(text):
        shown.append("".join(_pdf_string(s) for s in PDF_STRING.findall(array or single)))
    return text + "\n" + "\n".join(shown)


def _pdf_string(literal):
    return re.sub(r"\\([()\\])", r"\1", literal)


def _values(element):
    if element.VR == "SQ" or element.value is None:
        return []
    value = element.value
    if isinstance(value, bytes):
        return [value.decode("latin-1")] if element.VR in ("OB", "UN", "OW") else []
    values = value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]
