"""What an emission image (reconstructed SPECT stored as NM or PET objects) records about its acquisition.

Acquisition start, duration and accumulated counts; the administration (radiopharmaceutical start
date-time, administered activity, radionuclide); camera, collimator and energy windows; the units
of the voxel values. A field that is missing or implausible is recorded as a problem (for values
the study cannot do without) or a note (for the others), each naming the field.
"""

import dataclasses
import datetime

from MIBGDosimetryLib.study import dicomfields
from MIBGDosimetryLib.study.errors import FieldError
from MIBGDosimetryLib.study.radionuclide import radionuclide_problems
from MIBGDosimetryLib.study.value_units import read_value_units

#: Acquisitions longer than this are taken as a wrong duration (a SPECT lasts minutes, not days).
LONGEST_PLAUSIBLE_DURATION_S = 6 * 3600.0
#: Administered activities outside this range (MBq) are taken as a wrong value or a wrong unit.
PLAUSIBLE_ACTIVITY_MBQ = (1.0, 100000.0)


@dataclasses.dataclass
class EmissionInfo:
    """Acquisition and administration facts of one emission series; None where unknown."""

    acquisition_datetime: datetime.datetime = None
    duration_s: float = None
    counts_accumulated: float = None
    administration_datetime: datetime.datetime = None
    administration_time_without_date: datetime.time = None
    administered_activity_MBq: float = None
    radionuclide: str = None
    radiopharmaceutical: str = None
    half_life_s: float = None
    units: str = "counts"
    units_path: dict = dataclasses.field(default_factory=dict)
    radionuclide_code: tuple = None
    camera: dict = dataclasses.field(default_factory=dict)
    collimator: dict = dataclasses.field(default_factory=dict)
    #: NumberOfDetectors (0054,0021): detectors whose counts the acquisition holds.
    number_of_detectors: int = None
    energy_windows: list = dataclasses.field(default_factory=list)
    #: ReconstructionMethod and ConvolutionKernel (the post-filter) where the header gives them.
    reconstruction: dict = dataclasses.field(default_factory=dict)
    #: Why the series is not a 131I acquisition (code, half-life, energy windows); empty when nothing says so.
    other_radionuclide: list = dataclasses.field(default_factory=list)
    problems: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)


def read_emission_info(headers):
    """EmissionInfo from the headers of an emission series (one NM file, or the files of a PET series)."""
    info = EmissionInfo()
    first = headers[0]
    _acquisition_start(info, headers)
    _duration(info, first)
    _counts(info, first)
    _administration(info, first)
    _units(info, first)
    _equipment(info, first)
    info.other_radionuclide = radionuclide_problems(info.radionuclide_code, info.half_life_s, info.energy_windows)
    return info


def _guard(info, keyword, function, *args, required_for=None):
    """Run a field reader; a damaged field becomes a problem of the value ``required_for`` (an
    override name such as "duration_s") or, for optional fields, a note."""
    try:
        return function(*args)
    except FieldError as error:
        if required_for:
            info.problems.setdefault(required_for, str(error))
        else:
            info.notes.append(f"{error}; the value is ignored")
        return None


def _acquisition_start(info, headers):
    """Earliest acquisition start over the files: AcquisitionDateTime, else AcquisitionDate + Time,
    else the series or content date and time (with a note)."""
    candidates = []
    for ds in headers:
        value = _guard(info, "AcquisitionDateTime", dicomfields.datetime_field, ds, "AcquisitionDateTime",
                       required_for="acquisition_datetime")
        if value is None:
            value = _guard(info, "AcquisitionDate", dicomfields.date_and_time, ds, "AcquisitionDate",
                           "AcquisitionTime", required_for="acquisition_datetime")
        if value is not None:
            candidates.append(value)
    if candidates:
        info.acquisition_datetime = min(candidates, key=_naive)
        damaged = info.problems.pop("acquisition_datetime", None)
        if damaged:
            info.notes.append(f"{damaged}; the acquisition start {info.acquisition_datetime.isoformat()} is taken "
                              f"from the other acquisition date and time fields")
        return
    for date_keyword, time_keyword in (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime")):
        value = _guard(info, date_keyword, dicomfields.date_and_time, headers[0], date_keyword, time_keyword)
        if value is not None:
            info.acquisition_datetime = value
            info.notes.append(f"fields AcquisitionDateTime and AcquisitionDate/AcquisitionTime are missing; the "
                              f"acquisition start is taken from {date_keyword}/{time_keyword} ({value.isoformat()})")
            return
    info.problems.setdefault("acquisition_datetime", "field AcquisitionDateTime (or AcquisitionDate and "
                                                     "AcquisitionTime) is missing, so the acquisition start is unknown")


def _duration(info, ds):
    """Acquisition duration: sum over RotationInformationSequence of NumberOfFramesInRotation x
    ActualFrameDuration (NM tomography), else ActualFrameDuration or the frame content's
    FrameAcquisitionDuration (PET objects)."""
    rotations = _guard(info, "RotationInformationSequence", dicomfields.items, ds, "RotationInformationSequence",
                       required_for="duration_s")
    if rotations:
        total_ms = 0.0
        for number, item in enumerate(rotations, start=1):
            frames = _guard(info, "NumberOfFramesInRotation", dicomfields.integer, item, "NumberOfFramesInRotation",
                            required_for="duration_s")
            frame_ms = _guard(info, "ActualFrameDuration", dicomfields.number, item, "ActualFrameDuration",
                              required_for="duration_s")
            if frames is None or frame_ms is None:
                missing = "NumberOfFramesInRotation" if frames is None else "ActualFrameDuration"
                info.problems.setdefault(
                    "duration_s", f"field RotationInformationSequence[{number}]/{missing} is missing or unreadable, "
                                  f"so the acquisition duration is unknown")
                return
            total_ms += frames * frame_ms
        _set_duration(info, total_ms / 1000.0, "RotationInformationSequence (frames x ActualFrameDuration)")
        return
    frame_ms = _guard(info, "ActualFrameDuration", dicomfields.number, ds, "ActualFrameDuration",
                      required_for="duration_s")
    if frame_ms is None:
        frame_content = _guard(info, "PerFrameFunctionalGroupsSequence", dicomfields.first_item, ds,
                               "PerFrameFunctionalGroupsSequence")
        content = None if frame_content is None else _guard(info, "FrameContentSequence", dicomfields.first_item,
                                                              frame_content, "FrameContentSequence")
        if content is not None:
            frame_ms = _guard(info, "FrameAcquisitionDuration", dicomfields.number, content,
                              "FrameAcquisitionDuration", required_for="duration_s")
    if frame_ms is None:
        info.problems.setdefault("duration_s", "fields RotationInformationSequence and ActualFrameDuration are "
                                               "missing, so the acquisition duration is unknown")
        return
    _set_duration(info, frame_ms / 1000.0, "ActualFrameDuration")


def _set_duration(info, duration_s, source):
    if duration_s <= 0:
        info.problems["duration_s"] = (f"the acquisition duration from {source} is {duration_s:g} s; a duration must "
                                       f"be positive")
    elif duration_s > LONGEST_PLAUSIBLE_DURATION_S:
        info.problems["duration_s"] = (f"the acquisition duration from {source} is {duration_s:g} s "
                                       f"({duration_s / 3600:.3g} h), which is implausible for a SPECT acquisition")
    else:
        info.duration_s = duration_s


def _counts(info, ds):
    counts = _guard(info, "CountsAccumulated", dicomfields.number, ds, "CountsAccumulated")
    if counts is None:
        info.notes.append("field CountsAccumulated is missing, so the observed count rate (needed for the dead-time "
                          "correction) is unknown")
    elif counts < 0:
        info.notes.append(f"field CountsAccumulated is negative ({counts:g}); the value is ignored")
    else:
        info.counts_accumulated = counts


def _administration(info, ds):
    item = _guard(info, "RadiopharmaceuticalInformationSequence", dicomfields.first_item, ds,
                  "RadiopharmaceuticalInformationSequence")
    if item is None:
        info.notes.append("field RadiopharmaceuticalInformationSequence is missing (no administration date-time, "
                          "activity or radionuclide)")
        return
    info.administration_datetime = _guard(info, "RadiopharmaceuticalStartDateTime", dicomfields.datetime_field, item,
                                          "RadiopharmaceuticalStartDateTime")
    if info.administration_datetime is None:
        start_time = _guard(info, "RadiopharmaceuticalStartTime", dicomfields.text, item,
                            "RadiopharmaceuticalStartTime")
        if start_time is not None:
            info.administration_time_without_date = _guard(info, "RadiopharmaceuticalStartTime",
                                                           dicomfields.parse_time, start_time,
                                                           "RadiopharmaceuticalStartTime")
    total_dose = _guard(info, "RadionuclideTotalDose", dicomfields.number, item, "RadionuclideTotalDose")
    if total_dose is None:
        info.notes.append("field RadionuclideTotalDose is missing, so the administered activity is unknown")
    else:
        _administered_activity(info, total_dose, str(ds.get("Modality", "")))
    info.radiopharmaceutical = _guard(info, "Radiopharmaceutical", dicomfields.text, item, "Radiopharmaceutical")
    code = _guard(info, "RadionuclideCodeSequence", dicomfields.first_item, item, "RadionuclideCodeSequence")
    if code is not None:
        info.radionuclide = _guard(info, "CodeMeaning", dicomfields.text, code, "CodeMeaning")
        info.radionuclide_code = (_guard(info, "CodingSchemeDesignator", dicomfields.text, code,
                                         "CodingSchemeDesignator"),
                                  _guard(info, "CodeValue", dicomfields.text, code, "CodeValue"), info.radionuclide)
    info.half_life_s = _guard(info, "RadionuclideHalfLife", dicomfields.number, item, "RadionuclideHalfLife")
    if info.half_life_s is None and info.radionuclide is None:
        info.notes.append("fields RadionuclideHalfLife and RadionuclideCodeSequence are missing; the radionuclide is "
                          "taken to be 131I")


def _administered_activity(info, total_dose, modality):
    """RadionuclideTotalDose is in MBq in NM objects and in Bq in PET objects (DICOM PS3.3, NM/PET
    Isotope and Radiopharmaceutical Information modules). A value that is implausible in the unit of
    its modality but plausible in the other is taken in the other unit, with a note."""
    low, high = PLAUSIBLE_ACTIVITY_MBQ
    to_MBq = 1e-6 if modality == "PT" else 1.0
    stated_unit, other_unit = ("Bq", "MBq") if modality == "PT" else ("MBq", "Bq")
    activity_MBq = total_dose * to_MBq
    if low <= activity_MBq <= high:
        info.administered_activity_MBq = activity_MBq
        return
    other_MBq = total_dose * (1.0 if modality == "PT" else 1e-6)
    if low <= other_MBq <= high:
        info.administered_activity_MBq = other_MBq
        info.notes.append(f"field RadionuclideTotalDose is {total_dose:g}, implausible in {stated_unit} (the unit of "
                          f"{modality or 'this'} objects) but plausible in {other_unit}: read as {other_MBq:g} MBq")
        return
    info.notes.append(f"field RadionuclideTotalDose is {total_dose:g} {stated_unit}, outside the plausible range "
                      f"{low:g} to {high:g} MBq; the value is ignored")


def _units(info, ds):
    info.units_path = read_value_units(ds)
    info.units = info.units_path["units"]
    info.notes.extend(info.units_path["notes"])


def _equipment(info, ds):
    camera = {}
    for key, keyword in (("manufacturer", "Manufacturer"), ("model", "ManufacturerModelName"),
                         ("serial_number", "DeviceSerialNumber"), ("station", "StationName"),
                         ("software_versions", "SoftwareVersions")):
        camera[key] = _guard(info, keyword, dicomfields.text, ds, keyword)
    info.camera = camera
    detector = _guard(info, "DetectorInformationSequence", dicomfields.first_item, ds, "DetectorInformationSequence")
    if detector is not None:
        info.collimator = {"name": _guard(info, "CollimatorGridName", dicomfields.text, detector, "CollimatorGridName"),
                           "type": _guard(info, "CollimatorType", dicomfields.text, detector, "CollimatorType")}
    detectors = _guard(info, "NumberOfDetectors", dicomfields.integer, ds, "NumberOfDetectors")
    info.number_of_detectors = detectors if detectors is not None and detectors > 0 else None
    info.energy_windows = read_energy_windows(info, ds)
    info.reconstruction = {"method": _guard(info, "ReconstructionMethod", dicomfields.text, ds, "ReconstructionMethod"),
                           "filter": _guard(info, "ConvolutionKernel", dicomfields.text, ds, "ConvolutionKernel")}


def read_energy_windows(info, ds):
    """[{"name", "lower_keV", "upper_keV"}] from EnergyWindowInformationSequence, one entry per range."""
    windows = []
    for number, item in enumerate(_guard(info, "EnergyWindowInformationSequence", dicomfields.items, ds,
                                         "EnergyWindowInformationSequence") or [], start=1):
        name = _guard(info, "EnergyWindowName", dicomfields.text, item, "EnergyWindowName") or f"window {number}"
        for energy_range in _guard(info, "EnergyWindowRangeSequence", dicomfields.items, item,
                                   "EnergyWindowRangeSequence") or []:
            lower = _guard(info, "EnergyWindowLowerLimit", dicomfields.number, energy_range, "EnergyWindowLowerLimit")
            upper = _guard(info, "EnergyWindowUpperLimit", dicomfields.number, energy_range, "EnergyWindowUpperLimit")
            windows.append({"name": name, "lower_keV": lower, "upper_keV": upper})
    return windows


def _naive(value):
    return value.replace(tzinfo=None)
