"""Loading a sequential SPECT/CT study from a folder of DICOM files (any layout).

Each reconstructed emission series (NM reconstructed tomography, or SPECT stored as PET objects) is
one time point; time points are ordered by acquisition start and labelled tp1, tp2, ... Each is
paired with the CT of the same frame of reference (else of the same DICOM study acquired within
:data:`PAIRING_WINDOW_H`). Hours after administration run from the radiopharmaceutical start
date-time to the acquisition start.

Values the study cannot do without (administration date-time, acquisition start and duration) must
be present and plausible or supplied as overrides; otherwise a StudyDataError lists every such
problem with the series, file and field and the override that would supply it. Everything else
that is missing, unreadable or assumed is recorded in the warnings.
"""

import dataclasses
import datetime
import json
import os

import numpy as np

from MIBGDosimetryLib.study import dicomfields
from MIBGDosimetryLib.study.emission import read_emission_info
from MIBGDosimetryLib.study.errors import StudyDataError, where
from MIBGDosimetryLib.study.images import PIXEL_KEYWORDS, read_nm_volume, read_slice_stack
from MIBGDosimetryLib.study.markups import read_seed_points
from MIBGDosimetryLib.study.model import Study, TimePoint
from MIBGDosimetryLib.study.overrides import check_scope, load_overrides
from MIBGDosimetryLib.study.projections import read_projection_file, window_count_rates_cps
from MIBGDosimetryLib.study.scan import NM_IMAGE, read_dataset, scan_files, scan_folder, sop_class_name
from MIBGDosimetryLib.study.value_units import mapped_values, read_value_units
from MIBGDosimetryLib.volume import ImageVolume

#: A CT (or projection data) of another frame of reference but the same DICOM study is paired with a
#: SPECT only when acquired within this many hours of it.
PAIRING_WINDOW_H = 2.0
#: Emission series starting closer together than this are taken as one imaging visit (e.g. two reconstructions).
SAME_VISIT_MINUTES = 30.0
#: Administration date-times in different series that differ by more than this disagree.
ADMINISTRATION_AGREEMENT_S = 60.0
#: Relative difference above which administered activities in different series disagree.
ACTIVITY_AGREEMENT = 0.01


@dataclasses.dataclass
class _Emission:
    series: object
    volume: ImageVolume
    info: object
    file: str
    study_uid: str
    frame_of_reference_uid: str
    warnings: list
    overrides: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _CT:
    series: object
    volume: ImageVolume
    study_uid: str
    frame_of_reference_uid: str
    acquisition_datetime: object


def load_study(path, overrides=None, accept_radionuclide=False):
    """Read the study under ``path`` into a :class:`Study`.

    ``overrides`` is a dict or the path of a JSON overrides file (see
    :mod:`MIBGDosimetryLib.study.overrides`); when None, ``mibg-overrides.json`` in the folder is
    used if present. Emission series whose headers say they are not 131I (radionuclide code,
    half-life, energy windows) are left out with the reason, unless ``accept_radionuclide`` is set
    (they are then used as 131I, with a warning). Raises StudyDataError (a ValueError) listing every
    problem that prevents loading.
    """
    return _load_scan(scan_folder(path), overrides, accept_radionuclide)


def load_study_files(paths, overrides=None, accept_radionuclide=False):
    """Read the study made of the DICOM files ``paths`` (e.g. the series a user loaded with Slicer's DICOM
    module) by the rules of :func:`load_study`; ``overrides`` is a dict or the path of an overrides file
    (None: no overrides). Raises StudyDataError listing every problem that prevents loading."""
    return _load_scan(scan_files(paths), overrides if overrides is not None else {}, accept_radionuclide)


def _load_scan(scan, overrides, accept_radionuclide):
    root = scan.root
    options, override_notes = load_overrides(overrides, root)
    warnings, problems = list(scan.warnings) + override_notes, []
    if options.entries:
        warnings.append(f"Overrides read from {options.source}.")
    patient = _patient(scan, problems)
    found = _read_all_series(scan, options, warnings, problems, accept_radionuclide)
    emissions, cts, unused = found["emissions"], found["cts"], found["unused"]
    _acquisition_times(emissions, options, problems)
    if not emissions and not problems:
        raise StudyDataError(_no_emission_message(scan, unused))
    if problems:
        raise StudyDataError(problems)

    emissions.sort(key=lambda e: _naive(e.info.acquisition_datetime))
    problems.extend(_same_visit_problems(emissions, options.source))
    labels = [f"tp{n}" for n in range(1, len(emissions) + 1)]
    for label, emission in zip(labels, emissions):
        problems.extend(check_scope(options, label, "timepoint"))
        emission.overrides.update(options.get(label))
    administration = _administration(emissions, options, warnings, problems)
    activity_MBq = _administered_activity(emissions, options, warnings)

    timepoints = []
    for label, emission in zip(labels, emissions):
        tp = _timepoint(label, emission, administration, options.source, problems)
        if tp is not None:
            timepoints.append(tp)
    problems.extend(f"{options.source}: the key '{key}' matches no series, time point or 'study'; check it"
                    for key in options.unused_keys())
    if problems:
        raise StudyDataError(problems)

    _pair_ct(timepoints, emissions, cts, options, unused, warnings, root)
    _attach_projections(timepoints, emissions, found["projection_files"], unused, warnings, root)
    seed_points, seed_notes = read_seed_points(scan.markups_files, root)
    warnings.extend(seed_notes)
    for tp in timepoints:
        warnings.extend(f"{tp.label}: {w}" for w in tp.warnings)
    return Study(root, timepoints, administration, activity_MBq, patient, seed_points, found["segmentation_files"],
                 found["rt_dose_files"], unused, [(os.path.relpath(f, root), r) for f, r in scan.unreadable_files],
                 [os.path.relpath(f, root) for f in scan.ignored_files], warnings)


def _no_emission_message(scan, unused):
    """Why no series of the folder was taken as a reconstructed 131I SPECT, series by series."""
    reasons = {entry["series_instance_uid"]: entry["reason"] for entry in unused}
    lines = []
    for series in scan.series.values():
        reason = reasons.get(series.uid) or _role_reason(series)
        lines.append(f"{sop_class_name(series.sop_class_uid)} '{series.description}' (series {series.uid}): {reason}")
    listing = "; ".join(lines) or "no DICOM series"
    return (f"No reconstructed SPECT of 131I (NM reconstructed tomography, or SPECT stored as PET objects) was found "
            f"in '{scan.root}' (found: {listing}).")


def _role_reason(series):
    if series.role == "projection":
        image_type = "\\".join(dicomfields.texts(series.headers[0], "ImageType")) or "missing"
        return (f"ImageType {image_type} is not a reconstruction (the third value must be RECON TOMO or RECON "
                f"GATED TOMO); projections and planar images are not used as time points")
    if series.role == "ct":
        return "CT"
    if series.role == "localizer":
        return "CT localizer"
    if series.role in ("segmentation", "rtdose"):
        return "not an emission image"
    return "not used for dosimetry"


def _read_all_series(scan, options, warnings, problems, accept_radionuclide=False):
    """Read every series by its role: emission volumes, CT volumes, and the file lists of the others."""
    root = scan.root
    found = {"emissions": [], "cts": [], "projection_files": [], "segmentation_files": [], "rt_dose_files": [],
             "unused": []}
    for series in scan.series.values():
        first = os.path.relpath(series.paths[0], root)
        if series.role in ("emission", "ct", "projection") and options.get(series.uid).get("exclude"):
            warnings.append(f"{where(series=series.label, file=first)}: excluded by {options.source}.")
            found["unused"].append(_unused(series, root, "excluded by the overrides"))
        elif series.role == "emission":
            try:
                emission = _read_emission(series, root)
            except StudyDataError as error:
                problems.append(str(error))
                continue
            other = emission.info.other_radionuclide
            if other and not accept_radionuclide:
                reason = f"not a 131I acquisition: {'; '.join(other)}"
                found["unused"].append(_unused(series, root, reason))
                warnings.append(f"{where(series=series.label, file=first)}: not used, {reason}. If it is 131I data "
                                f"nonetheless, accept it knowingly with --accept-radionuclide.")
                continue
            if other:
                emission.warnings.append(f"{where(series=series.label, file=first)}: used as 131I as asked "
                                         f"(--accept-radionuclide) although {'; '.join(other)}; the 131I half-life "
                                         f"and S values are applied")
            found["emissions"].append(emission)
        elif series.role == "ct":
            try:
                found["cts"].append(_read_ct(series, root, warnings))
            except StudyDataError as error:
                warnings.append(f"CT not used: {error}")
                found["unused"].append(_unused(series, root, str(error)))
        elif series.role in ("projection", "segmentation", "rtdose"):
            key = {"projection": "projection_files", "segmentation": "segmentation_files",
                   "rtdose": "rt_dose_files"}[series.role]
            found[key].extend(series.paths)
        else:
            reason = "CT localizer" if series.role == "localizer" else (
                f"SOP class {sop_class_name(series.sop_class_uid)} not used for dosimetry")
            found["unused"].append(_unused(series, root, reason))
    return found


def _acquisition_times(emissions, options, problems):
    """Attach each emission series' overrides and apply an acquisition start given for it."""
    for emission in emissions:
        emission.overrides = options.get(emission.series.uid)
        problems.extend(check_scope(options, emission.series.uid, "series"))
        if "acquisition_datetime" in emission.overrides:
            _apply(emission, "acquisition_datetime", emission.overrides["acquisition_datetime"],
                   emission.info.acquisition_datetime, options.source)
            emission.info.acquisition_datetime = emission.overrides["acquisition_datetime"]
            emission.info.problems.pop("acquisition_datetime", None)
        if emission.info.acquisition_datetime is None:
            problems.append(_problem(emission, "acquisition_datetime"))


#: The attributes that together identify the patient of a file (PS3.3 Patient Module).
IDENTITY_KEYWORDS = ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate")


def patient_identity(header):
    """The patient identity of a file: ID, issuer, name and birth date ('' when blank or absent)."""
    identity = {}
    for keyword in IDENTITY_KEYWORDS:
        try:
            value = dicomfields.text(header, keyword) or ""
        except StudyDataError:
            value = ""
        identity[keyword] = value
    return identity


def identity_key(identity):
    """What two files of one patient share: the identity with the name's case and empty components ignored."""
    return tuple(value.rstrip("^ ").upper() if keyword == "PatientName" else value
                 for keyword, value in identity.items())


def _patient(scan, problems):
    """Patient identity; files of more than one identity in one folder are an error, blank values included."""
    patients = {}
    for series in scan.series.values():
        for path, header in zip(series.paths, series.headers):
            identity = patient_identity(header)
            patients.setdefault(identity_key(identity), (identity, series, path))
    if len(patients) > 1:
        listing = "; ".join(f"PatientID '{identity['PatientID']}', name '{identity['PatientName']}', birth date "
                            f"'{identity['PatientBirthDate']}' in {where(series=s.label, file=p, root=scan.root)}"
                            for identity, s, p in patients.values())
        problems.append(f"The folder holds the files of more than one patient ({listing}). Put each patient's "
                        f"study in its own folder; files differing in Patient ID, Issuer, Name or Birth Date "
                        f"(a blank value counts as different) are not combined.")
    if not patients:
        return {"id": None, "name": None}
    identity = next(iter(patients.values()))[0]
    return {"id": identity["PatientID"] or None, "name": identity["PatientName"] or None}


def _read_emission(series, root):
    """The volume and facts of an emission series (values in the units of its units path)."""
    first = os.path.relpath(series.paths[0], root)
    if series.sop_class_uid == NM_IMAGE:
        if len(series.paths) != 1:
            files = ", ".join(f"'{os.path.relpath(p, root)}'" for p in series.paths)
            raise StudyDataError(f"{where(series=series.label)}: a reconstructed NM series must be one multi-frame "
                                 f"file, found {len(series.paths)} ({files}); exclude the series or keep one file",
                                 series=series.uid)
        try:
            ds = read_dataset(series.paths[0], first)
            grid, notes, rescale = read_nm_volume(ds, first)
        except StudyDataError as error:
            raise StudyDataError(f"{where(series=series.label)}: {error}", series=series.uid, file=first) from None
        for keyword in PIXEL_KEYWORDS:
            if keyword in ds:
                delattr(ds, keyword)
        headers = [ds]
        warnings = [f"{where(series=series.label)}: {note}" for note in notes]
    else:
        # Uneven slices are resampled as for CT; counts images keep their total, Bq/ml images their values.
        counts = read_value_units(series.headers[0])["units"] != "Bq/ml"
        grid, warnings, pairs = read_slice_stack(series, root, resample_uneven=True, counts_per_voxel=counts)
        headers = [ds for _, ds in pairs]
        rescale = {}
        warnings.append(f"{where(series=series.label, file=first)}: reconstructed emission image stored as "
                        f"{sop_class_name(series.sop_class_uid)} objects (modality {series.modality}); read as "
                        f"SPECT.")
    info = read_emission_info(headers)
    array = _activity_values(series, grid.array, info, rescale, first)
    warnings.extend(f"{where(series=series.label, file=first)}: {note}" for note in info.notes)
    frame_of_reference = _optional_text(headers[0], "FrameOfReferenceUID")
    study_uid = _optional_text(headers[0], "StudyInstanceUID")
    volume = ImageVolume(array, grid.spacing_mm, grid.origin_ras_mm, grid.directions, info.units, {
        "modality": "SPECT", "series_instance_uid": series.uid, "series_description": series.description,
        "study_instance_uid": study_uid, "frame_of_reference_uid": frame_of_reference,
        "sop_class": sop_class_name(series.sop_class_uid), "files": [os.path.relpath(p, root) for p in series.paths],
        "sop_instance_uids": [_optional_text(ds, "SOPInstanceUID") for ds in headers],
        **{k: v for k, v in rescale.items() if v is not None}})
    return _Emission(series, volume, info, first, study_uid, frame_of_reference, warnings)


def _activity_values(series, values, info, rescale, first):
    """The voxel values in the units of ``info.units_path``: a RealWorldValueMapping is applied to
    the stored values of an NM image; units that cannot become activity are refused."""
    path = info.units_path
    if path["problem"]:
        raise StudyDataError(f"{where(series=series.label, file=first)}: {path['problem']}", series=series.uid,
                             file=first)
    mapping = path["real_world_value_mapping"]
    if mapping is None:
        return values
    if series.sop_class_uid != NM_IMAGE:
        raise StudyDataError(f"{where(series=series.label, file=first)}: a RealWorldValueMappingSequence in a "
                             f"slice-per-file series is not supported; export the series with Units BQML",
                             series=series.uid, file=first)
    slope = rescale.get("rescale_slope")
    intercept = rescale.get("rescale_intercept")
    stored = (values - (intercept or 0.0)) / (1.0 if slope is None else slope)
    return mapped_values(stored, mapping)


def _read_ct(series, root, warnings):
    # HU need no more than single precision; a clinical CT held in float64 takes hundreds of megabytes.
    grid, notes, headers = read_slice_stack(series, root, resample_uneven=True, output_dtype=np.int16,
                                            value_dtype=np.float32)
    warnings.extend(notes)
    first = headers[0][1]
    acquisition = None
    for date_keyword, time_keyword in (("AcquisitionDate", "AcquisitionTime"), ("SeriesDate", "SeriesTime"),
                                       ("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
        try:
            acquisition = dicomfields.date_and_time(first, date_keyword, time_keyword)
        except StudyDataError:
            acquisition = None
        if acquisition is not None:
            break
    study_uid = _optional_text(first, "StudyInstanceUID")
    frame_of_reference = _optional_text(first, "FrameOfReferenceUID")
    volume = ImageVolume(grid.array, grid.spacing_mm, grid.origin_ras_mm, grid.directions, "HU", {
        "modality": "CT", "series_instance_uid": series.uid, "series_description": series.description,
        "study_instance_uid": study_uid, "frame_of_reference_uid": frame_of_reference,
        "sop_class": sop_class_name(series.sop_class_uid),
        "files": [os.path.relpath(p, root) for p, _ in headers],
        "sop_instance_uids": [_optional_text(ds, "SOPInstanceUID") for _, ds in headers]})
    return _CT(series, volume, study_uid, frame_of_reference, acquisition)


def _optional_text(ds, keyword):
    try:
        return dicomfields.text(ds, keyword)
    except StudyDataError:
        return None


#: Placeholder values shown in the override examples of error messages.
_EXAMPLE_VALUES = {"duration_s": 1800, "administration_datetime": "YYYY-MM-DDTHH:MM:SS",
                   "acquisition_datetime": "YYYY-MM-DDTHH:MM:SS"}


def _problem(emission, override_field, message=None):
    """A located problem with the override that would supply the value."""
    message = message or emission.info.problems.get(override_field) or f"{override_field} is unknown"
    example = json.dumps({emission.series.uid: {override_field: _EXAMPLE_VALUES[override_field]}})
    return (f"{where(series=emission.series.label, file=emission.file)}: {message}. Supply it as an override, "
            f"e.g. {example} in mibg-overrides.json in the study folder or a file given with --overrides.")


def _apply(emission, field, value, previous, source):
    shown = value.isoformat() if hasattr(value, "isoformat") else value
    was = previous.isoformat() if hasattr(previous, "isoformat") else previous
    emission.warnings.append(f"{where(series=emission.series.label, file=emission.file)}: {field} = {shown} from "
                             f"{source}" + (f" (the DICOM value was {was})" if previous is not None else ""))


def _same_visit_problems(emissions, source):
    problems = []
    for earlier, later in zip(emissions, emissions[1:]):
        gap_min = (_naive(later.info.acquisition_datetime) - _naive(earlier.info.acquisition_datetime)
                   ).total_seconds() / 60.0
        if gap_min < SAME_VISIT_MINUTES:
            problems.append(
                f"{where(series=earlier.series.label, file=earlier.file)} and "
                f"{where(series=later.series.label, file=later.file)} start {gap_min:.1f} min apart: two "
                f"reconstructions or bed positions of one visit cannot both be time points. Exclude one in "
                f"{source if source != 'no overrides' else 'mibg-overrides.json'}, e.g. "
                f"{json.dumps({later.series.uid: {'exclude': True}})}.")
    return problems


def _administration(emissions, options, warnings, problems):
    """The administration date-time: the study override, else the value all emission series agree on."""
    study_value = options.get("study").get("administration_datetime")
    if study_value is not None:
        warnings.append(f"administration_datetime = {study_value.isoformat()} from {options.source}.")
        return study_value
    for emission in emissions:
        if "administration_datetime" in emission.overrides:
            _apply(emission, "administration_datetime", emission.overrides["administration_datetime"],
                   emission.info.administration_datetime, options.source)
            emission.info.administration_datetime = emission.overrides["administration_datetime"]
    known = [e for e in emissions if e.info.administration_datetime is not None]
    if not known:
        for emission in emissions:
            time_only = emission.info.administration_time_without_date
            detail = (f"field RadiopharmaceuticalStartDateTime is missing and RadiopharmaceuticalStartTime "
                      f"({time_only.isoformat()}) has no date" if time_only is not None else
                      "field RadiopharmaceuticalInformationSequence/RadiopharmaceuticalStartDateTime is missing")
            problems.append(_problem(emission, "administration_datetime",
                                     f"{detail}, so the time since administration is unknown"))
        problems.append('The administration date-time can be given once for the whole study: '
                        '{"study": {"administration_datetime": "YYYY-MM-DDTHH:MM:SS"}}.')
        return None
    reference = known[0]
    disagreeing = [e for e in known if abs((_naive(e.info.administration_datetime)
                                            - _naive(reference.info.administration_datetime)).total_seconds())
                   > ADMINISTRATION_AGREEMENT_S]
    if disagreeing:
        listing = "; ".join(f"{e.info.administration_datetime.isoformat()} in {where(series=e.series.label)}"
                            for e in [reference] + disagreeing)
        problems.append(f"The series disagree on RadiopharmaceuticalStartDateTime ({listing}). Give the right "
                        f'value as {{"study": {{"administration_datetime": "YYYY-MM-DDTHH:MM:SS"}}}} in the '
                        f"overrides.")
        return None
    for emission in emissions:
        if emission.info.administration_datetime is None:
            emission.warnings.append(
                f"{where(series=emission.series.label, file=emission.file, field='RadiopharmaceuticalStartDateTime')}"
                f": missing; the administration date-time {reference.info.administration_datetime.isoformat()} of "
                f"{where(series=reference.series.label)} is used.")
    return reference.info.administration_datetime


def _administered_activity(emissions, options, warnings):
    """Administered activity (MBq): the study override, else the value all series agree on (else None, warned)."""
    study_value = options.get("study").get("administered_activity_MBq")
    if study_value is not None:
        warnings.append(f"administered_activity_MBq = {study_value:g} from {options.source}.")
        return study_value
    values = {}
    for emission in emissions:
        value = emission.overrides.get("administered_activity_MBq")
        if value is not None:
            _apply(emission, "administered_activity_MBq", value, emission.info.administered_activity_MBq,
                   options.source)
            emission.info.administered_activity_MBq = value
        if emission.info.administered_activity_MBq is not None:
            values[emission.series.uid] = emission.info.administered_activity_MBq
    if not values:
        warnings.append("The administered activity is unknown (no series gives RadionuclideTotalDose); give it as "
                        '{"study": {"administered_activity_MBq": ...}} in the overrides if it is needed.')
        return None
    low, high = min(values.values()), max(values.values())
    if high - low > ACTIVITY_AGREEMENT * high:
        warnings.append(f"The series disagree on RadionuclideTotalDose ({low:g} to {high:g} MBq), so the "
                        f"administered activity is left unknown; give it as "
                        '{"study": {"administered_activity_MBq": ...}} in the overrides.')
        return None
    return float(np.mean(list(values.values())))


def _timepoint(label, emission, administration, source, problems):
    """The TimePoint of an emission series, or None after adding to ``problems`` what prevents it."""
    info, overrides = emission.info, emission.overrides
    duration_s = overrides.get("duration_s")
    if duration_s is not None:
        _apply(emission, "duration_s", duration_s, info.duration_s, source)
        info.problems.pop("duration_s", None)
    else:
        duration_s = info.duration_s
    if duration_s is None:
        problems.append(_problem(emission, "duration_s",
                                 info.problems.get("duration_s", "the acquisition duration is unknown")))
    if administration is None or duration_s is None or info.problems:
        return None
    hours = (_naive(info.acquisition_datetime) - _naive(administration)).total_seconds() / 3600.0
    if (info.acquisition_datetime.tzinfo is None) != (administration.tzinfo is None):
        emission.warnings.append(f"{where(series=emission.series.label, file=emission.file)}: only one of the "
                                 f"acquisition and administration date-times has a time-zone offset; both are taken "
                                 f"as local times")
    elif info.acquisition_datetime.tzinfo is not None:
        hours = (info.acquisition_datetime - administration).total_seconds() / 3600.0
    if hours < 0:
        problems.append(_problem(emission, "administration_datetime",
                                 f"the acquisition started {-hours:.2f} h before the administration "
                                 f"({administration.isoformat()}); one of the two date-times is wrong"))
        return None
    rate = None if info.counts_accumulated is None else info.counts_accumulated / duration_s
    rate_source = None if rate is None else "spect"
    if "observed_count_rate_cps" in overrides:
        _apply(emission, "observed_count_rate_cps", overrides["observed_count_rate_cps"], rate, source)
        rate, rate_source = overrides["observed_count_rate_cps"], "override"
    metadata = _timepoint_metadata(info, emission.series.uid, emission.study_uid, emission.frame_of_reference_uid,
                                   emission.file, rate_source)
    return TimePoint(label, hours, info.acquisition_datetime, duration_s, emission.volume, None, rate, metadata,
                     list(emission.warnings))


def _timepoint_metadata(info, series_uid, study_uid, frame_of_reference_uid, spect_file, rate_source):
    """A time point's header facts from the EmissionInfo of its SPECT series."""
    return {
        "camera": info.camera, "collimator": info.collimator, "energy_windows": info.energy_windows,
        "reconstruction": info.reconstruction,
        "administered_activity_MBq": info.administered_activity_MBq, "radionuclide": info.radionuclide,
        "radiopharmaceutical": info.radiopharmaceutical, "half_life_s": info.half_life_s,
        "counts_accumulated": info.counts_accumulated, "count_rate_source": rate_source,
        "number_of_detectors": info.number_of_detectors,
        "spect_series_instance_uid": series_uid,
        "study_instance_uid": study_uid, "frame_of_reference_uid": frame_of_reference_uid,
        "spect_file": spect_file, "units": info.units, "units_path": info.units_path,
    }


def emission_series_facts(paths):
    """What the headers of one emission series (the DICOM files ``paths``) give by the rules of
    :func:`load_study`, for a series that cannot make a study as it is (e.g. its administration
    date-time is missing): a dict with acquisition_datetime, duration_s, observed_count_rate_cps,
    administration_datetime, administered_activity_MBq (None where unknown) and metadata (the header
    facts of the time point). Raises StudyDataError when the files are not one emission series."""
    scan = scan_files(paths)
    emissions = [series for series in scan.series.values() if series.role == "emission"]
    if len(emissions) != 1 or len(scan.series) != 1:
        raise StudyDataError(f"The files are not one reconstructed SPECT series (found: "
                             f"{', '.join(sop_class_name(s.sop_class_uid) for s in scan.series.values()) or 'none'}).")
    series = emissions[0]
    info = read_emission_info(series.headers)
    rate = (info.counts_accumulated / info.duration_s
            if info.counts_accumulated is not None and info.duration_s else None)
    metadata = _timepoint_metadata(info, series.uid, _optional_text(series.headers[0], "StudyInstanceUID"),
                                   _optional_text(series.headers[0], "FrameOfReferenceUID"),
                                   os.path.relpath(series.paths[0], scan.root), None if rate is None else "spect")
    return {"acquisition_datetime": info.acquisition_datetime, "duration_s": info.duration_s,
            "observed_count_rate_cps": rate, "administration_datetime": info.administration_datetime,
            "administered_activity_MBq": info.administered_activity_MBq, "metadata": metadata}


def _pair_ct(timepoints, emissions, cts, options, unused, warnings, root):
    """Give each time point its CT: an explicit override, else same frame of reference, else same study
    within PAIRING_WINDOW_H; the closest in time first, each CT used once."""
    by_uid = {ct.series.uid: ct for ct in cts}
    emission_of = {e.series.uid: e for e in emissions}
    taken, candidates = set(), []
    for index, tp in enumerate(timepoints):
        emission = emission_of[tp.metadata["spect_series_instance_uid"]]
        chosen = emission.overrides.get("ct_series_uid")
        if chosen is not None:
            if chosen not in by_uid:
                raise StudyDataError(f"{options.source}: ct_series_uid '{chosen}' for {tp.label} is not a usable CT "
                                     f"series of the study (CT series: {', '.join(by_uid) or 'none'}).")
            _assign(tp, by_uid[chosen], f"chosen by {options.source}")
            taken.add(chosen)
            continue
        for ct in cts:
            gap_h = _gap_h(tp.acquisition_datetime, ct.acquisition_datetime)
            if ct.frame_of_reference_uid and ct.frame_of_reference_uid == emission.frame_of_reference_uid:
                candidates.append((0, gap_h, index, ct))
            elif ct.study_uid and ct.study_uid == emission.study_uid and gap_h <= PAIRING_WINDOW_H:
                candidates.append((1, gap_h, index, ct))
    done = {i for i, tp in enumerate(timepoints) if tp.ct is not None}
    for rank, gap_h, index, ct in sorted(candidates, key=lambda c: c[:3]):
        if index in done or ct.series.uid in taken:
            continue
        tp = timepoints[index]
        if rank == 0:
            note = None if gap_h <= PAIRING_WINDOW_H else (
                f"shares the frame of reference but was acquired {gap_h:.1f} h from the SPECT")
        else:
            note = ("has another frame of reference than the SPECT (same DICOM study, acquired within "
                    f"{PAIRING_WINDOW_H:g} h); the two are not registered by the scanner")
        _assign(tp, ct, note)
        done.add(index)
        taken.add(ct.series.uid)
    for tp in timepoints:
        if tp.ct is None:
            tp.warnings.append("no CT of the same frame of reference or study was found; the time point has SPECT "
                               "only")
            warnings.append(f"{tp.label}: no CT paired with the SPECT.")
    for ct in cts:
        if ct.series.uid not in taken:
            unused.append(_unused(ct.series, root, "CT not paired with any SPECT"))


def _assign(tp, ct, note):
    tp.ct = ct.volume
    tp.metadata["ct_series_instance_uid"] = ct.series.uid
    tp.metadata["ct_frame_of_reference_uid"] = ct.frame_of_reference_uid
    if note:
        tp.warnings.append(f"CT {where(series=ct.series.label)} {note}")


def _attach_projections(timepoints, emissions, paths, unused, warnings, root):
    """Attach each projection or planar file to the time point of its frame of reference or study."""
    emission_of = {e.series.uid: e for e in emissions}
    for path in paths:
        try:
            summary = read_projection_file(path, root)
        except StudyDataError as error:
            warnings.append(f"Projection data not used: {error}")
            continue
        frame_of_reference = summary["frame_of_reference_uid"]
        study_uid = summary["study_instance_uid"]
        best = None
        for tp in timepoints:
            emission = emission_of[tp.metadata["spect_series_instance_uid"]]
            acquired = summary["acquisition_datetime"]
            gap_h = (_gap_h(tp.acquisition_datetime, _fromiso(acquired)) if acquired else float("inf"))
            if frame_of_reference and frame_of_reference == emission.frame_of_reference_uid:
                key = (0, gap_h)
            elif study_uid and study_uid == emission.study_uid and gap_h <= PAIRING_WINDOW_H:
                key = (1, gap_h)
            else:
                continue
            if best is None or key < best[0]:
                best = (key, tp)
        if best is None:
            unused.append({"series_instance_uid": summary["series_instance_uid"], "files": [summary["file"]],
                           "reason": "projection data of no time point"})
            continue
        tp = best[1]
        tp.projections.append(summary)
        tp.warnings.extend(summary.pop("notes"))
        rates = window_count_rates_cps(summary)
        if tp.observed_count_rate_cps is None and rates is not None:
            # The dead time is calibrated on photopeak count rates (see MIBGCalibrationLib.deadtime); the
            # scatter windows would raise the rate by their counts.
            if rates["photopeak"] is not None:
                tp.observed_count_rate_cps, source = rates["photopeak"], "the photopeak-window counts"
            else:
                tp.observed_count_rate_cps, source = rates["all"], "the counts of all energy windows (no window holds 364 keV)"
            tp.metadata["count_rate_source"] = "projections"
            tp.warnings.append(f"observed count rate {tp.observed_count_rate_cps:.6g} cps taken from {source} of the "
                               f"projection data '{summary['file']}' over its duration {summary['duration_s']:g} s")


def _unused(series, root, reason):
    return {"series_instance_uid": series.uid, "description": series.description,
            "sop_class": sop_class_name(series.sop_class_uid),
            "role": series.role, "files": [os.path.relpath(p, root) for p in series.paths], "reason": reason}


def _gap_h(a, b):
    if a is None or b is None:
        return float("inf")
    return abs((_naive(a) - _naive(b)).total_seconds()) / 3600.0


def _fromiso(text):
    return datetime.datetime.fromisoformat(text)


def _naive(value):
    return value.replace(tzinfo=None)
