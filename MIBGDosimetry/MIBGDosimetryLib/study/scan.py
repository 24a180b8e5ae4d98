"""Finding the files of a study: every DICOM file under a folder (any layout), grouped by series.

Only headers are read here (pixel data later, per series). Files that look like DICOM but cannot be
read are reported with the reason; documents that are clearly not DICOM (JSON, CSV, text, images)
are listed as ignored. Slicer markups files (``*.mrk.json``) are collected as seed-point files.
"""

import dataclasses
import os

import pydicom

from MIBGDosimetryLib.study import dicomfields
from MIBGDosimetryLib.study.errors import StudyDataError, where

#: SOP classes the study reader knows, with the role of their series.
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.2"
NM_IMAGE = "1.2.840.10008.5.1.4.1.1.20"
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
LEGACY_ENHANCED_PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128.1"
ENHANCED_PET_IMAGE = "1.2.840.10008.5.1.4.1.1.130"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"

SOP_CLASS_NAMES = {
    CT_IMAGE: "CT Image", ENHANCED_CT_IMAGE: "Enhanced CT Image",
    LEGACY_ENHANCED_CT_IMAGE: "Legacy Converted Enhanced CT Image", NM_IMAGE: "NM Image",
    PET_IMAGE: "PET Image", LEGACY_ENHANCED_PET_IMAGE: "Legacy Converted Enhanced PET Image",
    ENHANCED_PET_IMAGE: "Enhanced PET Image", RT_DOSE: "RT Dose", RT_STRUCTURE_SET: "RT Structure Set",
    SEGMENTATION: "Segmentation",
}


def sop_class_name(uid):
    """A SOP class by name ("NM Image", "Secondary Capture Image Storage"), the UID itself when unknown."""
    if uid in SOP_CLASS_NAMES:
        return SOP_CLASS_NAMES[uid]
    if not uid:
        return "missing SOP class"
    name = pydicom.uid.UID(uid).name
    return name if name and name != uid else f"unknown SOP class {uid}"


CT_CLASSES = {CT_IMAGE, ENHANCED_CT_IMAGE, LEGACY_ENHANCED_CT_IMAGE}
PET_CLASSES = {PET_IMAGE, LEGACY_ENHANCED_PET_IMAGE, ENHANCED_PET_IMAGE}
#: Modality each known image SOP class should carry.
EXPECTED_MODALITY = {**{c: "CT" for c in CT_CLASSES}, NM_IMAGE: "NM", **{c: "PT" for c in PET_CLASSES},
                     RT_DOSE: "RTDOSE", RT_STRUCTURE_SET: "RTSTRUCT", SEGMENTATION: "SEG"}

#: File in every output folder of a dose calculation; such folders are never read as study input.
OUTPUT_MARKER_FILE = "mibgdose-output.json"
#: Extensions of documents that are never DICOM; such files are listed as ignored, not as unreadable.
NON_DICOM_EXTENSIONS = {".json", ".csv", ".tsv", ".txt", ".md", ".pdf", ".png", ".jpg", ".jpeg", ".html",
                        ".xml", ".yaml", ".yml", ".log", ".nrrd", ".nii", ".gz", ".mrb", ".mrml", ".zip", ".py"}
MARKUPS_SUFFIX = ".mrk.json"
OVERRIDES_FILE_NAME = "mibg-overrides.json"


@dataclasses.dataclass
class SeriesFiles:
    """The files of one DICOM series and its header datasets (pixel data not read)."""

    uid: str
    sop_class_uid: str
    modality: str
    description: str
    role: str
    paths: list = dataclasses.field(default_factory=list)
    headers: list = dataclasses.field(default_factory=list)

    @property
    def label(self):
        """(description, uid) pair used to name the series in messages."""
        return (self.description, self.uid)


@dataclasses.dataclass
class FolderScan:
    """What was found under a study folder."""

    root: str
    #: (SeriesInstanceUID, role) -> SeriesFiles
    series: dict = dataclasses.field(default_factory=dict)
    markups_files: list = dataclasses.field(default_factory=list)
    overrides_file: str = None
    ignored_files: list = dataclasses.field(default_factory=list)
    unreadable_files: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)


def scan_folder(root):
    """Read the headers of every file under ``root`` and group the DICOM files by series."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise StudyDataError(f"The study folder '{root}' does not exist or is not a folder.")
    scan = FolderScan(root)
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in [d for d in subfolders if is_output_folder(os.path.join(folder, d))]:
            subfolders.remove(name)
            scan.ignored_files.append(os.path.join(folder, name))
            scan.warnings.append(f"{where(file=os.path.join(folder, name), root=root)}: not read, the folder holds "
                                 "the results of an earlier dose calculation.")
        for name in sorted(names):
            path = os.path.join(folder, name)
            if name.startswith("."):
                continue
            if name.lower().endswith(MARKUPS_SUFFIX):
                scan.markups_files.append(path)
            elif name == OVERRIDES_FILE_NAME and folder == root:
                scan.overrides_file = path
            elif os.path.splitext(name)[1].lower() in NON_DICOM_EXTENSIONS or name == "DICOMDIR":
                scan.ignored_files.append(path)
            else:
                _add_file(scan, path)
    for series in scan.series.values():
        _check_modality(scan, series)
    return scan


def scan_files(paths):
    """Read the headers of the DICOM files ``paths`` (e.g. the files of series loaded by Slicer's DICOM
    module) and group them by series, as :func:`scan_folder` does; the root is their common folder."""
    paths = [os.path.abspath(p) for p in paths]
    if not paths:
        raise StudyDataError("No DICOM files were given.")
    scan = FolderScan(os.path.commonpath([os.path.dirname(p) for p in paths]))
    for path in paths:
        if not os.path.isfile(path):
            raise StudyDataError(f"The DICOM file '{path}' does not exist; it was moved or deleted after it was "
                                 "imported. Import the series again.", file=path)
        _add_file(scan, path)
    for series in scan.series.values():
        _check_modality(scan, series)
    return scan


def is_output_folder(path):
    """Whether ``path`` is a folder of results written by a dose calculation: it holds the marker file
    (:data:`OUTPUT_MARKER_FILE`), or results.json with the scene (versions that wrote no marker)."""
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, OUTPUT_MARKER_FILE)):
        return True
    return all(os.path.isfile(os.path.join(path, name)) for name in ("results.json", "dosimetry.mrb"))


def _add_file(scan, path):
    header, reason = read_header(path)
    if header is None:
        scan.unreadable_files.append((path, reason))
        scan.warnings.append(f"{where(file=path, root=scan.root)}: skipped, {reason}.")
        return
    try:
        sop_class = dicomfields.text(header, "SOPClassUID")
        if sop_class is None:
            sop_class = dicomfields.text(getattr(header, "file_meta", {}), "MediaStorageSOPClassUID")
        uid = dicomfields.text(header, "SeriesInstanceUID")
        modality = (dicomfields.text(header, "Modality") or "").upper()
        description = dicomfields.text(header, "SeriesDescription") or ""
        image_type = dicomfields.texts(header, "ImageType")
    except StudyDataError as error:
        scan.unreadable_files.append((path, str(error)))
        scan.warnings.append(f"{where(file=path, root=scan.root)}: skipped, {error}.")
        return
    missing = [name for name, value in (("SOPClassUID", sop_class), ("SeriesInstanceUID", uid)) if value is None]
    if missing:
        reason = f"{' and '.join(missing)} missing, so the file cannot be assigned to a series"
        scan.unreadable_files.append((path, reason))
        scan.warnings.append(f"{where(file=path, root=scan.root)}: skipped, {reason}.")
        return
    # Some cameras give projections and their reconstruction one SeriesInstanceUID; the role keeps them apart.
    role = _role(sop_class, image_type)
    series = scan.series.get((uid, role))
    if series is None:
        series = SeriesFiles(uid, sop_class, modality, description, role)
        scan.series[(uid, role)] = series
    elif sop_class != series.sop_class_uid:
        reason = (f"its SOP class {sop_class_name(sop_class)} differs from the SOP class "
                  f"{sop_class_name(series.sop_class_uid)} of the other files of series {uid}")
        scan.unreadable_files.append((path, reason))
        scan.warnings.append(f"{where(file=path, root=scan.root)}: skipped, {reason}.")
        return
    series.paths.append(path)
    series.headers.append(header)


def read_header(path):
    """``(dataset without pixel data, None)`` or ``(None, reason)`` when the file is not readable DICOM."""
    if os.path.getsize(path) == 0:
        return None, "the file is empty"
    try:
        with dicomfields.quiet_pydicom():
            try:
                return pydicom.dcmread(path, stop_before_pixels=True), None
            except pydicom.errors.InvalidDicomError:
                # Old files without the 128-byte preamble are still DICOM if they parse to a series.
                header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                if "SOPClassUID" in header and "SeriesInstanceUID" in header:
                    return header, None
                return None, "not a DICOM file (no DICM preamble and no SOP class or series)"
    except Exception as error:  # a damaged file can make pydicom fail in many ways
        return None, f"not readable as DICOM ({type(error).__name__}: {error})"


def read_dataset(path, shown=None):
    """The whole dataset of ``path`` including pixel data; raises StudyDataError naming the file (as ``shown``)."""
    shown = shown or path
    try:
        with dicomfields.quiet_pydicom():
            return pydicom.dcmread(path, force=True)
    except Exception as error:  # a damaged file can make pydicom fail in many ways
        raise StudyDataError(f"file '{shown}': not readable as DICOM ({type(error).__name__}: {error})",
                             file=path) from None


def _role(sop_class, image_type):
    if sop_class in CT_CLASSES:
        return "localizer" if "LOCALIZER" in image_type else "ct"
    if sop_class == NM_IMAGE:
        return "emission" if len(image_type) > 2 and image_type[2].startswith("RECON") else "projection"
    if sop_class in PET_CLASSES:
        return "emission"
    if sop_class == RT_DOSE:
        return "rtdose"
    if sop_class in (RT_STRUCTURE_SET, SEGMENTATION):
        return "segmentation"
    return "other"


def _check_modality(scan, series):
    expected = EXPECTED_MODALITY.get(series.sop_class_uid)
    name = sop_class_name(series.sop_class_uid)
    if series.role == "other":
        scan.warnings.append(
            f"{where(series=series.label, file=series.paths[0], root=scan.root)}: ignored, SOP class {name} "
            f"(modality {series.modality or 'missing'}) is not used for dosimetry.")
    elif expected and series.modality != expected:
        scan.warnings.append(
            f"{where(series=series.label, file=series.paths[0], field='Modality', root=scan.root)}: "
            f"is '{series.modality or 'missing'}' but the files are {name} objects (modality {expected}); "
            f"the series is read as {name}.")
