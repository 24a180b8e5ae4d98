"""From a sequential SPECT/CT study and a calibration record to absorbed doses per VOI and per voxel.

Steps (each reported through ``log``):

1. load the study (DICOM) and the calibration record;
2. register every time point to the reference time point (CT to CT, SPECT follows its CT) and move
   each SPECT onto the reference SPECT grid with counts conserved;
3. VOIs on the reference grid: organs from the study's DICOM SEG/RTSTRUCT, lesions from seed points
   by the calibrated adaptive threshold;
4. activity from counts (EANM eq. 9): per VOI with recovery, per voxel without;
5. time-activity curves per VOI (model selection by AICc, coverage test) and per voxel;
6. absorbed dose: voxel S-value kernel for the SPECT voxel size, reaching the whole map (photons),
   convolved with the TIA map; local deposition and sphere S values side by side;
7. per VOI: mean, single-voxel and 27-voxel-block extremes, DVH, BED, EUD and uncertainties.

How VOI figures are formed: partial-volume correction applies to VOI values, not to single voxels.
The voxel TIA map keeps the shape of the activity inside each VOI but is scaled, VOI by VOI, so that
its sum over the VOI equals the VOI's corrected TIA (with the GTM also the rest of the body, whose
spilled-out counts outside the body are returned to the regions they came from). The convolution
of that map gives the dose map from which every VOI figure (mean, extremes, 27-voxel blocks, DVH,
EUD) is taken; it includes the cross-dose from every other region. The dose map of the uncorrected
voxel TIA is kept beside it (``voxel_dose_map``) and each VOI reports its mean as well.
"""

import dataclasses
import datetime
import os

import numpy as np

from MIBGDosimetryLib import __version__
from MIBGDosimetryLib.workflow import activity as activity_module
from MIBGDosimetryLib.workflow import plausibility, preflight, severity
from MIBGDosimetryLib.workflow import vois as vois_module
from MIBGDosimetryLib.workflow.density import density_from_hu


PARTIAL_VOLUME_METHODS = ("auto", "gtm", "recovery", "none")


@dataclasses.dataclass
class DoseOptions:
    """Choices of the dose calculation (all recorded in the results' provenance)."""

    reference_index: int = 0
    tac_model: str = "auto"
    voxel_model: str = "auto"
    #: Activity before the first scan (see MIBGDosimetryLib.tac_extrapolation): None for the default
    #: (the uptake with uptake_half_life_h when given; else the expectation over the uptake half-time
    #: prior of the VOI class, or the fitted uptake of bi/tri), "linear", "extrapolate", "midpoint",
    #: "uptake", "fitted" or "prior".
    tac_head: str = None
    #: Uptake half-time (h) from a tracer study or a population value, for tac_head="uptake".
    uptake_half_life_h: float = None
    #: Log-normal prior of the uptake half-time per VOI class, {"organ" | "lesion": (median h, geometric
    #: SD)}; None: MIBGDosimetryLib.tac_extrapolation.UPTAKE_PRIOR (an assumption, see there).
    uptake_prior: dict = None
    #: Standard uncertainty (mm) of a VOI's outline position per VOI class, {"organ" | "lesion": mm};
    #: None: SURFACE_UNCERTAINTY_MM. 0 for outlines known to be exact (e.g. a phantom's).
    outline_uncertainty_mm: dict = None
    #: Reach of the voxel S-value kernel in voxels; None: the whole map (every photon absorbed in it).
    kernel_half_width: int = None
    density_correction: bool = False
    deformable_registration: bool = False
    seed_points_ras_mm: dict = None
    tissue_parameters_path: str = None
    dvh_v_doses_Gy: tuple = (10.0, 20.0, 30.0)
    #: "auto" (GTM where the calibration gives the spatial resolution, else the recovery curve),
    #: "gtm", "recovery" (EANM eq. 9 with the recovery curve) or "none".
    partial_volume: str = "auto"
    #: Spatial resolution (FWHM, mm) to use instead of the calibration record's.
    resolution_fwhm_mm: float = None
    #: Where the GTM's resolution comes from without resolution_fwhm_mm: "profile" (the calibration's
    #: profile fit) or "recoveries" (the FWHM whose Gaussian-blurred spheres reproduce the calibration's
    #: measured recovery coefficients, see MIBGCalibrationLib.resolution.fwhm_from_recoveries; the
    #: profile fit's FWHM when the record has fewer than three spheres). On the realistic 131I OSEM
    #: phantom "recoveries" brings the small organs closer (Testing/test_realistic_spect.py), on the
    #: image-domain demo phantom it moves lesion doses by up to 25 % (test_dose_workflow.py): not the default.
    gtm_resolution: str = "profile"
    #: Lesion outline: "threshold" (adaptive threshold), "threshold+fill" (enclosed cavities such as a
    #: necrotic core filled) or "ct-assisted" (also uses the CT for lesions in bone); see
    #: MIBGDosimetryLib.workflow.vois.LESION_OUTLINES.
    lesion_outline: str = "threshold"
    #: Diagnostic tracer studies for the imaging-dose log: dicts with tracer, activity_MBq, optional
    #: label and dose_coefficient_mSv_per_MBq.
    tracer_studies: tuple = ()
    #: Patient age (years) for the imaging-dose log, when the DICOM headers do not give it.
    patient_age_years: float = None
    #: Whole-body retention readings (CSV) for the whole-body and red-marrow dose, blood samples (CSV)
    #: for the blood method, the patient's mass (kg) and the administered activity (MBq) when the study
    #: does not give it (see MIBGDosimetryLib.wholebody).
    wholebody_measurements: str = None
    blood_samples: str = None
    patient_mass_kg: float = None
    administered_activity_MBq: float = None
    #: Files or folders of the study (relative paths) left out knowingly although unreadable.
    excluded_paths: tuple = ()
    #: Use emission series whose headers say they are not 131I as 131I (the user knows better).
    accept_radionuclide: bool = False

    def __post_init__(self):
        if self.kernel_half_width is not None:
            from MIBGDosimetryLib.physics.kernels import validate_reach

            validate_reach(self.kernel_half_width)
        if self.gtm_resolution not in ("recoveries", "profile"):
            raise ValueError(f"Unknown GTM resolution source '{self.gtm_resolution}'; choose recoveries or profile.")
        if self.lesion_outline not in vois_module.LESION_OUTLINES:
            raise ValueError(f"Unknown lesion outline '{self.lesion_outline}'; choose one of "
                             f"{', '.join(vois_module.LESION_OUTLINES)}.")
        if self.partial_volume not in PARTIAL_VOLUME_METHODS:
            raise ValueError(f"Unknown partial-volume method '{self.partial_volume}'; choose one of "
                             f"{', '.join(PARTIAL_VOLUME_METHODS)}.")
        from MIBGDosimetryLib.tac_extrapolation import check_prior

        for kind, prior in (self.uptake_prior or {}).items():
            if kind not in ("organ", "lesion", "bladder"):
                raise ValueError(f"Uptake half-time priors are given per VOI class 'organ', 'lesion' or 'bladder', got "
                                 f"'{kind}'.")
            check_prior(prior)
        for kind, mm in (self.outline_uncertainty_mm or {}).items():
            if kind not in ("organ", "lesion") or not np.isfinite(mm) or mm < 0:
                raise ValueError(f"Outline uncertainties are given per VOI class 'organ' or 'lesion' as a "
                                 f"non-negative number of mm, got {kind}: {mm}.")
        if self.wholebody_measurements and self.patient_mass_kg is None:
            raise ValueError("The whole-body dose from whole-body readings needs the patient's mass (--mass-kg).")


@dataclasses.dataclass
class DoseCalculation:
    """Everything a dose calculation produced: the results dict and the images behind it."""

    results: dict
    study: object
    record: object
    reference: object
    registrations: list
    registered_spects: list
    activity_maps_MBq: np.ndarray
    tia_map: object
    dose_map: object
    density: np.ndarray
    vois: list
    tac_fits: dict
    voxel_tia_map: object = None
    voxel_dose_map: object = None


def run_dose(study_dir, calibration, options=None, log=print, check_study=None, segmentation=None):
    """Run the dose calculation on a study folder with a calibration record (JSON path or
    :class:`CalibrationRecord`, e.g. from the record node of the MIBG Calibration module).
    ``check_study(study)``, when given, runs after the study's own checks and before the calculation
    (e.g. whether the output disk has room for the results).

    ``segmentation`` (a ``.seg.nrrd`` saved from Slicer, or a DICOM SEG/RTSTRUCT) replaces the
    study's own organ outlines; see :mod:`MIBGDosimetryLib.segmentation.segment_vois` for how its
    segments become organs and lesions."""
    from MIBGCalibrationLib.record import CalibrationRecord, provenance_of
    from MIBGDosimetryLib.study import load_study

    options = options or DoseOptions()
    if isinstance(calibration, CalibrationRecord):
        record, calibration_source = calibration, {"record_date": calibration.date}
    else:
        log(f"Reading the calibration record {calibration}")
        record = CalibrationRecord.from_json(calibration)
        calibration_source = provenance_of([calibration])["inputs"]
    log(f"Reading the study in {study_dir}")
    study = load_study(study_dir, accept_radionuclide=options.accept_radionuclide)
    preflight.check_unreadable_files(study, options.excluded_paths)
    if len(study.timepoints) < 3:
        raise ValueError(f"The study has {len(study.timepoints)} time point(s); a time-activity curve needs at "
                         "least 3 (EANM guidance).")
    preflight.check_reference_index(study, options.reference_index)
    preflight.check_images(study)
    plausibility.check_count_rates(study, record)
    log(f"Memory needed: about {preflight.check_memory(study) / 2 ** 20:.0f} MB")
    if check_study is not None:
        check_study(study)
    vois = None
    if segmentation is not None:
        from MIBGDosimetryLib.segmentation.segment_vois import vois_from_file

        log(f"Reading the VOIs from {segmentation}")
        seeds = options.seed_points_ras_mm if options.seed_points_ras_mm is not None else study.seed_points
        vois = vois_from_file(segmentation, study.timepoints[options.reference_index].spect, lesion_names=seeds)
    calculation = calculate(study, record, options, log, vois=vois)
    calculation.results["identification"] = study.identification()
    calculation.results["provenance"]["patient"] = calculation.results["identification"]["patient"]
    calculation.results["provenance"]["inputs"] = {
        "study_dir": os.path.abspath(study_dir),
        "calibration": calibration_source,
    }
    if segmentation is not None:
        calculation.results["provenance"]["inputs"]["segmentation"] = os.path.abspath(segmentation)
    return calculation


def calculate(study, record, options, log=print, vois=None, registration=None):
    """The dose calculation on a loaded study (:class:`Study`) and :class:`CalibrationRecord`.

    ``vois`` (:class:`Voi` list on the reference SPECT grid) replaces the study's organ outlines and
    the seed-point lesions of the same names; ``registration`` = ``(results, registered_spects)``
    replaces the registration (e.g. transforms checked or corrected in the Slicer scene).
    """
    from MIBGDosimetryLib.registration.timepoints import register_timepoints
    from MIBGDosimetryLib.workflow.calibration_match import CalibrationMismatchError, compare_with_record

    warnings = list(study.warnings) + list(record.warnings)
    if options.wholebody_measurements:
        from MIBGDosimetryLib.wholebody.study_results import check_whole_body_inputs

        check_whole_body_inputs(options, study)
    match_warnings, refusal = compare_with_record(study.timepoints, record)
    if refusal:
        raise CalibrationMismatchError(f"The study does not match the calibration: {refusal}.")
    warnings.extend(f"calibration match: {w}" for w in match_warnings)
    reference_tp = study.timepoints[options.reference_index]
    if registration is None:
        log(f"Registering {len(study.timepoints)} time points to '{reference_tp.label}'")
        registrations, registered = register_timepoints(study.timepoints, options.reference_index,
                                                        deformable=options.deformable_registration)
    else:
        registrations, registered = registration
    reference = registered[options.reference_index]
    for tp, reg in zip(study.timepoints, registrations):
        warnings.extend(f"registration of '{tp.label}': {w}" for w in reg.warnings)

    density = _density_on_grid(reference_tp, reference)
    vois, vois_without_result = _define_vois(study, record, reference, options, log, registrations, vois)
    warnings.extend(f"VOI '{v['name']}' has no result: {v['reason']}" for v in vois_without_result)
    factors = [activity_module.scan_factors(tp, record) for tp in study.timepoints]
    for f in factors:
        warnings.extend(f.notes)
    times_h = np.array([tp.mid_acquisition_hours for tp in study.timepoints])
    activity_maps = np.stack([activity_module.activity_map_MBq(s.array, f) for s, f in zip(registered, factors)])

    body = _body_mask(reference_tp, reference, density)
    activities, relative, pv_relative, pv_info = _voi_activities(vois, registered, factors, record, reference, body,
                                                                 options, (study, registrations))
    warnings.extend(pv_info.pop("warnings"))
    plausibility.check_activities(study, vois, activities, activity_maps, times_h, warnings)
    log("Fitting time-activity curves per VOI")
    empty = [index for index in range(len(vois)) if np.count_nonzero(activities[index] > 0) < 2]
    for index in empty:
        warnings.append(f"VOI '{vois[index].name}' holds activity at fewer than 2 time points after the "
                        "partial-volume correction, so it gets no TIA and is left out; check its outline and its "
                        "neighbours'")
        vois_without_result.append(vois_module.without_result(
            vois[index], "activity at fewer than 2 time points after the partial-volume correction"))
    keep = [index for index in range(len(vois)) if index not in empty]
    vois, activities, relative, pv_relative = ([vois[i] for i in keep], activities[keep], relative[keep],
                                               pv_relative[keep])
    voi_results, tac_fits = [], {}
    for index, voi in enumerate(vois):
        entry, fit = _voi_tac(voi, activities[index], relative[index], pv_relative[index], pv_info, times_h, factors,
                              options)
        voi_results.append(entry)
        tac_fits[voi.name] = fit

    log("Fitting time-activity curves per voxel")
    voxel_tia, kernel = _voxel_tia(times_h, activity_maps, reference, options, log, vois, tac_fits)
    background_tia = _background_tia(pv_info, times_h, options)
    tia_map, scales = _corrected_tia_map(voxel_tia, vois, voi_results, body, background_tia)
    pv_info["region_scale_factors"] = scales
    log(f"Convolving with the {' x '.join(map(str, kernel.shape))} voxel S-value kernel for "
        f"{reference.spacing_mm} mm voxels")
    dose_map = _dose(tia_map, kernel, density, options)
    voxel_dose_map = _dose(voxel_tia, kernel, density, options)

    log("Summarising the dose per VOI")
    from MIBGDosimetryLib.dose import radiobiology

    tissues = radiobiology.load_tissue_parameters(options.tissue_parameters_path)
    budget_context = _budget_context(record, options, pv_info, registrations)
    changes = _registration_changes(vois, registered, reference, budget_context["registration_shifts_mm"])
    outline = _outline_sensitivities(vois, voi_results, registered, tia_map, body, pv_info, record, options, reference)
    self_dose = _self_dose_fractions(vois, tia_map, kernel, dose_map, density, options)
    outline_dose = _outline_dose_sensitivities(vois, outline, dose_map, density, tia_map, self_dose)
    for index, (voi, entry) in enumerate(zip(vois, voi_results)):
        context = {**budget_context, "registration_changes": [None if c is None else c[index] for c in changes],
                   "outline_sensitivity": (outline[0][index], outline[1][index], outline[2][index]),
                   "outline_dose_sensitivity": outline_dose[index],
                   "self_dose_fraction": self_dose[index]}
        _voi_dose(voi, entry, tac_fits[voi.name], tia_map, dose_map, voxel_dose_map, density, reference, tissues,
                  options, context)

    whole_body = {}
    if options.wholebody_measurements:
        from MIBGDosimetryLib.wholebody.study_results import study_whole_body

        log("Whole-body and red-marrow dose from the whole-body readings")
        whole_body = study_whole_body(options, study, body, vois, tia_map, dose_map, density, reference.voxel_volume_ml)
        warnings.extend(f"whole body: {w}" for w in whole_body["whole_body"]["warnings"])
    results = {
        **whole_body,
        "imaging_dose": _imaging_dose(study, options, warnings),
        "schedule_advice": _schedule_advice(tac_fits, warnings),
        "provenance": _provenance(options, record),
        "calibration": _calibration_summary(record),
        "timepoints": [_timepoint_entry(tp, reg, f) for tp, reg, f in zip(study.timepoints, registrations, factors)],
        "partial_volume": pv_info,
        "dose_grid": {"shape_kji": list(reference.array.shape), "spacing_mm": list(reference.spacing_mm),
                      "origin_ras_mm": list(reference.origin_ras_mm)},
        "vois": voi_results,
        "vois_without_result": vois_without_result,
    }
    ordered = severity.prioritised(warnings + [f"{e['name']}: {w}" for e in voi_results for w in e["warnings"]])
    results["warnings"] = [w["message"] for w in ordered]
    results["warning_severities"] = [w["severity"] for w in ordered]
    for entry in voi_results + vois_without_result:
        entry["warning_severity"] = max((severity.severity(w) for w in entry["warnings"]), default=None,
                                        key=lambda level: level == "high")
    return DoseCalculation(results, study, record, reference, registrations, registered, activity_maps,
                           reference.with_array(tia_map, units="MBq h"), reference.with_array(dose_map, units="Gy"),
                           density, vois, tac_fits, reference.with_array(voxel_tia, units="MBq h"),
                           reference.with_array(voxel_dose_map, units="Gy"))


def imaging_facts(study, timepoint):
    """What the imaging-dose log needs from a time point's CT headers: ``{"age_years", "ct_exposure"}``
    (the :class:`CTExposure` as a dict) or ``{"age_years", "ct_exposure_problem"}``; empty without CT
    files. A time point's ``metadata["imaging"]`` holds these facts when its files are not at hand
    (a time point taken from the Slicer scene)."""
    import pydicom

    from MIBGDosimetryLib.imaging_dose import ct_exposure_from_images

    datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in study.ct_paths(timepoint)]
    if not datasets:
        return {}
    facts = {"age_years": _age_from_header(study, datasets[0])}
    try:
        facts["ct_exposure"] = dataclasses.asdict(ct_exposure_from_images(timepoint.label, datasets))
    except ValueError as error:
        facts["ct_exposure_problem"] = str(error)
    return facts


def _age_from_header(study, ds):
    """Age at administration from a CT header (PatientAge, or birth date); None when neither is given."""
    from MIBGDosimetryLib.imaging_dose import parse_dicom_age

    if ds.get("PatientAge"):
        return parse_dicom_age(ds.PatientAge)
    birth = str(ds.get("PatientBirthDate", "") or "")
    if len(birth) == 8 and study.administration_datetime is not None:
        born = datetime.datetime.strptime(birth, "%Y%m%d")
        return (study.administration_datetime - born).days / 365.25
    return None


def _imaging_dose(study, options, warnings):
    """Imaging-dose log: CT dose indices per time point and the effective-dose estimate."""
    from MIBGDosimetryLib.imaging_dose import CTExposure, imaging_dose_log

    exposures, ages = [], []
    for tp in study.timepoints:
        facts = tp.metadata["imaging"] if "imaging" in (tp.metadata or {}) else imaging_facts(study, tp)
        if not facts:
            continue
        ages.append(facts.get("age_years"))
        if facts.get("ct_exposure"):
            exposures.append(CTExposure(**facts["ct_exposure"]))
        elif facts.get("ct_exposure_problem"):
            warnings.append(f"imaging-dose log: {facts['ct_exposure_problem']}")
    age = (float(options.patient_age_years) if options.patient_age_years is not None
           else next((a for a in ages if a is not None), None))
    if age is None:
        warnings.append("imaging-dose log: the patient's age is unknown (no PatientAge or birth date); give it "
                        "to estimate the effective dose")
        return {"entries": [{"label": e.label, "kind": "CT", "ctdivol_mGy": e.ctdivol_mGy, "dlp_mGy_cm": e.dlp_mGy_cm}
                            for e in exposures]}
    log = imaging_dose_log(exposures, age, tracer_studies=options.tracer_studies)
    warnings.extend(f"imaging-dose log: {w}" for w in log["warnings"])
    return log


def _schedule_advice(tac_fits, warnings):
    """Whether fewer SPECT/CT time points would still meet the coverage test and the TIA accuracy."""
    import dataclasses as dc

    from MIBGDosimetryLib.imaging_dose import advise_schedule

    fits = {name: fit for name, fit in tac_fits.items() if len(fit.times_h) >= 3}
    if not fits:
        return None
    try:
        advice = advise_schedule(fits)
    except ValueError as error:
        warnings.append(f"schedule advisor: {error}")
        return None
    return dc.asdict(advice)


def _density_on_grid(reference_tp, reference):
    """Density (g/cm3) on the reference SPECT grid from the reference CT, or unit density without CT."""
    if reference_tp.ct is None:
        return None
    from MIBGDosimetryLib.registration.resample import resample_image

    hu = resample_image(reference_tp.ct, reference, np.eye(4), "linear", -1000.0).array
    return density_from_hu(hu)


def _define_vois(study, record, reference, options, log, registrations, given=None):
    from MIBGDosimetryLib.workflow.outline_frames import organ_vois_by_frame

    seeds = options.seed_points_ras_mm if options.seed_points_ras_mm is not None else study.seed_points
    if given is None:
        organs, drawn = organ_vois_by_frame(study, registrations, reference, options.reference_index), []
    else:
        organs = [v for v in given if v.kind == "organ"]
        drawn = [v for v in given if v.kind == "lesion"]
        seeds = {name: point for name, point in seeds.items() if name not in {v.name for v in given}}
    log(f"Delineating {len(seeds)} lesion(s) by the adaptive threshold, {len(drawn)} drawn lesion(s), "
        f"{len(organs)} organ(s) from segmentations")
    fwhm = options.resolution_fwhm_mm or getattr(record, "resolution_fwhm_mm", None)
    ct_hu = None
    reference_ct = study.timepoints[options.reference_index].ct
    if options.lesion_outline == "ct-assisted" and reference_ct is not None and seeds:
        from MIBGDosimetryLib.registration.resample import resample_image

        ct_hu = resample_image(reference_ct, reference, np.eye(4), "linear", -1000.0).array
    counts = activity_module.counts_image(reference, study.timepoints[options.reference_index], record)
    lesions = drawn + vois_module.lesion_vois(counts, seeds, record.threshold_model, organs, fwhm,
                                              options.lesion_outline, ct_hu)
    vois = lesions + organs
    vois_module.make_disjoint(vois)
    dropped = [vois_module.without_result(v, vois_module.empty_reason(v)) for v in vois if not v.mask.any()]
    vois = [v for v in vois if v.mask.any()]
    if not vois:
        raise ValueError("No VOI was found: the study has no segmentation (SEG/RTSTRUCT) and no lesion seed "
                         "points. Add seed points (a .mrk.json file) or organ outlines.")
    vois_module.check_unique_names(vois)
    return vois, dropped


def _body_mask(reference_tp, reference, density):
    """The patient's body on the reference grid: CT above -500 HU, or the SPECT above 1 % of its maximum."""
    import scipy.ndimage

    if density is not None:
        body = density > 0.5
    else:
        smoothed = scipy.ndimage.gaussian_filter(np.asarray(reference.array, dtype=float), 1.0)
        body = smoothed > 0.01 * smoothed.max()
    return scipy.ndimage.binary_fill_holes(body)


def _resolution(record, options):
    if options.resolution_fwhm_mm is not None:
        return float(options.resolution_fwhm_mm), 0.0, "dose options"
    fwhm = getattr(record, "resolution_fwhm_mm", None)
    if fwhm is None:
        return None, None, None
    uncertainty = float(getattr(record, "resolution_fwhm_mm_uncertainty", 0.0) or 0.0)
    inserts = [i for i in (getattr(record, "recovery_inserts", None) or [])
               if (i.get("recovery") or 0) > 0 and (i.get("volume_ml") or 0) > 0]
    if len(inserts) < 3:
        return float(fwhm), uncertainty, "calibration record"
    from MIBGCalibrationLib.resolution import fwhm_from_recoveries, recovery_background_ratio

    fitted, misfit = fwhm_from_recoveries([i["volume_ml"] for i in inserts], [i["recovery"] for i in inserts],
                                          recovery_background_ratio(getattr(record, "details", None)))
    # The profile fit and the recoveries describe the same chain (a Gaussian stand-in for a resolution
    # that OSEM makes non-Gaussian); their difference is part of the uncertainty of either.
    spread = float(np.hypot(uncertainty, fitted - float(fwhm)))
    if options.gtm_resolution == "recoveries":
        return (fitted, spread, f"sphere recoveries of the calibration record (profile fit {float(fwhm):.2f} mm, "
                                f"largest recovery misfit {misfit:.1%})")
    return float(fwhm), spread, f"calibration record's profile fit (sphere recoveries give {fitted:.2f} mm)"


def _interpolation_variances(study, registrations, reference, options):
    """Per time point the blur (mm^2 per axis and voxel) its resampling onto the reference grid added,
    None for the reference and for time points not moved (see MIBGDosimetryLib.registration.resample)."""
    from MIBGDosimetryLib.registration.resample import interpolation_variance_mm2

    return [None if index == options.reference_index or reg.kind == "identity" else
            interpolation_variance_mm2(tp.spect, reference, reg.resampling_transform)
            for index, (tp, reg) in enumerate(zip(study.timepoints, registrations))]


def _voi_activities(vois, registered, factors, record, reference, body, options, moved=None):
    """Activity (MBq) of each VOI at each time point (EANM eq. 9) with the chosen partial-volume correction.

    ``moved`` = ``(study, registrations)`` lets the GTM model the blur that resampling each time point
    onto the reference grid added to it.

    Returns ``(activity[voi, time], counting_relative[voi, time], partial_volume_relative[voi], info)``:
    the counting uncertainty per time point and the relative uncertainty of the partial-volume
    correction, common to all time points of a VOI.
    """
    from MIBGDosimetryLib.workflow import recovery_scope
    from MIBGDosimetryLib.workflow.partial_volume import gtm_activities

    fwhm, fwhm_u, fwhm_source = _resolution(record, options)
    method = options.partial_volume
    warnings = []
    if method == "auto":
        method = "gtm" if fwhm is not None else ("recovery" if record.recovery_curve is not None else "none")
    if method == "gtm" and fwhm is None:
        raise ValueError("The GTM partial-volume correction needs the spatial resolution (FWHM) of the images: "
                         "recalibrate with the sphere phantom or give the FWHM in the dose options.")
    if method == "recovery" and record.recovery_curve is None:
        raise ValueError("The calibration record has no recovery curve; calibrate with the sphere phantom or "
                         "choose another partial-volume method.")
    if method == "none":
        warnings.append("partial-volume effects not corrected: VOI activities are underestimated, most for small VOIs")
    info = {"method": method, "warnings": warnings}
    activity = np.zeros((len(vois), len(registered)))
    relative = np.zeros_like(activity)
    pv_relative = np.zeros((len(vois), len(registered)))
    variances = None
    if moved is not None and fwhm is not None and method in ("gtm", "recovery"):
        variances = _interpolation_variances(*moved, reference, options)
    if method == "gtm":
        activity, relative, pv_relative, gtm_info = gtm_activities(vois, [s.array for s in registered],
                                                      [f.mbq_per_count for f in factors], body, fwhm, fwhm_u,
                                                      reference.spacing_mm,
                                                      interpolation_variances_mm2=variances)
        info.update(gtm_info, fwhm_source=fwhm_source)
        if gtm_info["condition_number"] > 1e3:
            warnings.append(f"the GTM system is ill-conditioned (condition number {gtm_info['condition_number']:.0f}): "
                            "VOIs too small or too close for the resolution; check the VOIs")
        return activity, relative, pv_relative, info
    if method == "recovery":
        info["recovery_curve_not_applied"] = {}
        volume_range_ml = recovery_scope.calibrated_volume_range_ml(record)
    for index, voi in enumerate(vois):
        volume_ml = voi.volume_ml(reference.voxel_volume_ml)
        recovery = (1.0, 0.0)
        if method == "recovery":
            reason = recovery_scope.recovery_curve_refusal(voi.mask, volume_ml, reference.spacing_mm, volume_range_ml)
            if reason is None:
                recovery = record.recovery_coefficient(volume_ml)
            else:
                voi.warnings.append(recovery_scope.refusal_warning(reason, gtm=fwhm is not None))
                info["recovery_curve_not_applied"][voi.name] = reason
        pv_relative[index, :] = recovery[1] / recovery[0]
        for t, (spect, f) in enumerate(zip(registered, factors)):
            activity[index, t], relative[index, t] = activity_module.voi_activity_MBq(spect.array, voi.mask, f,
                                                                                      recovery)
    refused = [i for i, voi in enumerate(vois) if voi.name in info.get("recovery_curve_not_applied", {})]
    if refused and fwhm is not None:
        # VOIs outside the curve's scope take their GTM activities (all VOIs and the body as regions).
        gtm = gtm_activities(vois, [s.array for s in registered], [f.mbq_per_count for f in factors], body, fwhm,
                             fwhm_u, reference.spacing_mm, interpolation_variances_mm2=variances)
        activity[refused], relative[refused], pv_relative[refused] = (gtm[0][refused], gtm[1][refused],
                                                                      gtm[2][refused])
        info.update(gtm_fwhm_mm=fwhm, fwhm_source=fwhm_source,
                    local_fwhm_mm={name: value for name, value in gtm[3]["local_fwhm_mm"].items()
                                   if name in info["recovery_curve_not_applied"]})
    return activity, relative, pv_relative, info


def _voi_tac(voi, activities, relative, pv_relative, pv_info, times_h, factors, options):
    from MIBGDosimetryLib.dose import budget
    from MIBGDosimetryLib.tac import fit_tac

    # A zero or negative activity has no meaningful uncertainty; fit_tac leaves that time point out and says so.
    sigma = np.multiply(activities, relative, out=np.zeros(len(activities)), where=activities > 0)
    fit = fit_tac(times_h, activities, sigma, model=options.tac_model, head=options.tac_head,
                  uptake_half_life_h=options.uptake_half_life_h, uptake_prior=_uptake_prior(voi, options))
    summary = fit.to_dict()
    entry = {
        "name": voi.name, "kind": voi.kind, "source": voi.source, "volume_ml": None,
        "partial_volume_method": pv_info["method"],
        "tia_MBq_h": float(fit.tia_MBq_h), "tac_model": fit.model,
        "coverage_fraction": float(fit.coverage_fraction),
        "effective_half_life_h": _finite_or_none(fit.effective_half_life_h),
        "tac": {"times_h": times_h.tolist(), "activity_MBq": activities.tolist(),
                "activity_uncertainty_MBq": sigma.tolist(),
                "parameters": {k: float(v) for k, v in fit.parameters.items()},
                "aicc": {k: _finite_or_none(v) for k, v in fit.aicc.items()},
                **{key: summary[key] for key in ("head", "uptake_prior", "uncertainty_terms_MBq_h",
                                                 "tia_alternatives_MBq_h",
                                                 "relative_sensitivities", "excluded_times_h",
                                                 "degrees_of_freedom", "covariance_scale")}},
        "adaptive_threshold": voi.details or None,
        "warnings": list(voi.warnings) + list(fit.warnings),
        "_fit_uncertainty_MBq_h": {k: float(v) for k, v in fit.uncertainty_terms_MBq_h.items()},
        # One model for every time point: its effects on their activities add up in the TIA.
        "_recovery_relative": budget.correlated_over_time(pv_relative, budget.tia_shares(times_h, activities)),
        "_recovery_by_gtm": voi.name in pv_info.get("recovery_curve_not_applied", {}),
        "_local_fwhm": voi.name in pv_info.get("local_fwhm_mm", {}),
        "_calibration_relative": factors[0].calibration_relative_uncertainty,
        "_dead_time_relative": float(max(f.dead_time_factor_relative_uncertainty for f in factors)),
    }
    return entry, fit


def _uptake_prior(voi, options):
    """The uptake half-time prior of the VOI's class, unless an uptake half-time or another head is chosen."""
    from MIBGDosimetryLib.tac_extrapolation import UPTAKE_PRIOR, prior_class

    if options.uptake_half_life_h is not None or options.tac_head not in (None, "prior"):
        return None
    priors = {**UPTAKE_PRIOR, **(options.uptake_prior or {})}
    kind = prior_class(voi.kind, voi.name)
    # A bladder prior the user did not set follows a user-set organ prior.
    if kind == "bladder" and "bladder" not in (options.uptake_prior or {}) and "organ" in (options.uptake_prior or {}):
        kind = "organ"
    return priors.get(kind)


def _voxel_tia(times_h, activity_maps, reference, options, log, vois=(), tac_fits=None):
    """Per-voxel TIA map (MBq h) and the voxel S-value kernel for the grid.

    ``voxel_model="auto"``: every voxel follows the fitted kinetics of its VOI (outside the VOIs, those
    of their summed activity) with its own amplitude, which no noisy voxel can bias
    (:func:`~MIBGDosimetryLib.voxel_tac.regional_voxel_tia`); an explicit model fits every voxel on its
    own (:func:`~MIBGDosimetryLib.voxel_tac.fit_voxels`).
    """
    from MIBGDosimetryLib.physics.kernels import whole_map_kernel
    from MIBGDosimetryLib.voxel_tac import fit_voxels, regional_voxel_tia, summed_region_fit

    kernel = whole_map_kernel(reference.spacing_mm, reference.array.shape,
                              max_half_width=options.kernel_half_width)
    if options.voxel_model != "auto" or not tac_fits:
        tia_map, info = fit_voxels(times_h, activity_maps, model=options.voxel_model)
        log(f"  {info['voxels']} voxels integrated in {info['elapsed_s']:.1f} s: {info['counts']}")
        return tia_map, kernel
    regions = [(voi.mask, tac_fits[voi.name]) for voi in vois]
    rest = ~np.any([voi.mask for voi in vois], axis=0)
    try:
        rest_fit, note = summed_region_fit(times_h, activity_maps, rest, options.tac_model)
        regions.append((rest, rest_fit))
    except ValueError as error:
        note = f"{error}; those voxels get no TIA"
    if note:
        log(f"  outside the VOIs: {note}")
    tia_map, info = regional_voxel_tia(times_h, activity_maps, regions)
    log(f"  {info['voxels']} voxels integrated with the kinetics of their region in {info['elapsed_s']:.1f} s")
    return tia_map, kernel


def _background_tia(pv_info, times_h, options):
    """TIA (MBq h) of the body outside the VOIs where the partial-volume correction gives it (GTM)."""
    from MIBGDosimetryLib.tac import fit_tac

    activity = pv_info.get("background_activity_MBq")
    if activity is None:
        return None
    fit = fit_tac(times_h, np.asarray(activity), model=options.tac_model)
    pv_info["background_tia_MBq_h"] = float(fit.tia_MBq_h)
    return float(fit.tia_MBq_h)


def _corrected_tia_map(voxel_tia, vois, voi_results, body, background_tia):
    """The voxel TIA map with each VOI (and, with the GTM, the rest of the body) scaled to its
    partial-volume-corrected TIA; the shape inside each region is kept.

    Counts that spilled out of the body belong to the regions they came from, which the corrected
    TIAs already contain, so the map is zero outside the body when the background is corrected too.
    """
    corrected = np.array(voxel_tia, dtype=np.float64)
    scales = {}
    rest = np.asarray(body, dtype=bool).copy()
    for voi, entry in zip(vois, voi_results):
        total = float(corrected[voi.mask].sum())
        scale = entry["tia_MBq_h"] / total if total > 0 else 0.0
        corrected[voi.mask] *= scale
        scales[voi.name] = scale
        rest &= ~voi.mask
    if background_tia is not None:
        total = float(voxel_tia[rest].sum())
        scale = background_tia / total if total > 0 else 0.0
        corrected[rest] *= scale
        scales["rest of body"] = scale
        inside = np.asarray(body, dtype=bool)
        for voi in vois:
            inside = inside | voi.mask
        corrected[~inside] = 0.0
    return corrected, scales


def _self_dose_fractions(vois, tia_map, kernel, dose_map, density, options):
    """Each VOI's share of its mean dose from its own activity (MIBGDosimetryLib.dose.absorbed_dose), its
    dose made as ``dose_map`` was and weighted by the voxels' masses, as the mean dose is."""
    from MIBGDosimetryLib.dose.absorbed_dose import self_dose_fractions

    return self_dose_fractions(tia_map, [voi.mask for voi in vois], kernel, dose_map,
                               **_density_arguments(density, options), weights=density)


def _dose(tia_map, kernel, density, options):
    from MIBGDosimetryLib.dose.absorbed_dose import dose_map_Gy

    return dose_map_Gy(tia_map, kernel, **_density_arguments(density, options))


def _density_arguments(density, options):
    """The density arguments of MIBGDosimetryLib.dose.absorbed_dose.dose_map_Gy for these options."""
    from MIBGDosimetryLib.physics.materials import get_material

    # The kernel is made for soft tissue at its nominal density (see _voxel_tia).
    return {"density_g_cm3": density if options.density_correction else None,
            "kernel_density_g_cm3": get_material("soft_tissue").nominal_density_g_cm3}


def _voi_dose(voi, entry, fit, tia_map, dose_map, voxel_dose_map, density, reference, tissues, options,
              budget_context):
    """Dose figures of one VOI from the partial-volume-corrected maps (``tia_map``, ``dose_map``);
    ``voxel_dose_map`` (uncorrected) is reported beside them for comparison."""
    from MIBGDosimetryLib.dose import radiobiology, statistics
    from MIBGDosimetryLib.dose.absorbed_dose import tia_to_dose_Gy
    from MIBGDosimetryLib.physics.local import local_deposition_dose_Gy
    from MIBGDosimetryLib.physics.spheres import sphere_s_value

    voxel_ml = reference.voxel_volume_ml
    stats = statistics.voi_dose_statistics(dose_map, voi.mask, voxel_ml, density)
    uncorrected = statistics.voi_dose_statistics(voxel_dose_map, voi.mask, voxel_ml, density)
    # A VOI's volume is known more finely than its SPECT-grid mask: the adaptive threshold measures a
    # lesion to a fraction of a voxel, an organ outline is measured on its CT. The energy the VOI
    # absorbs is that of the mask (mostly electrons, absorbed where they are emitted), so the mean
    # dose is that energy over the finer volume's mass.
    fine_volume_ml = (voi.details or {}).get("volume_ml")
    mass_scale = fine_volume_ml / stats["volume_ml"] if fine_volume_ml else 1.0
    for key in ("volume_ml", "mass_g"):
        stats[key] *= mass_scale
    stats["mean_dose_Gy"] /= mass_scale
    uncorrected["mean_dose_Gy"] /= mass_scale
    mass_g = stats["mass_g"]
    mean_density = mass_g / stats["volume_ml"]
    sphere = sphere_s_value(mass_g, mean_density)
    local = local_deposition_dose_Gy(tia_map[voi.mask], voxel_ml,
                                     1.0 if density is None else density[voi.mask])
    dvh = statistics.dvh(dose_map, voi.mask, density, v_doses_Gy=options.dvh_v_doses_Gy)
    entry.update({
        "volume_ml": stats["volume_ml"],
        "mass_g": mass_g,
        "mean_dose_Gy": stats["mean_dose_Gy"],
        "mean_dose_without_partial_volume_correction_Gy": uncorrected["mean_dose_Gy"],
        "max_voxel_dose_Gy": stats["max_voxel_dose_Gy"], "min_voxel_dose_Gy": stats["min_voxel_dose_Gy"],
        "max_block27_dose_Gy": stats["max_block27_dose_Gy"], "min_block27_dose_Gy": stats["min_block27_dose_Gy"],
        "block27_rule": stats["block27_rule"],
        "sphere_s_dose_Gy": float(tia_to_dose_Gy(entry["tia_MBq_h"], sphere["S_mGy_per_MBq_s"])),
        "local_deposition_dose_Gy": float(np.average(local, weights=None if density is None else density[voi.mask])),
        "dvh": {"dose_Gy": dvh["dose_Gy"], "volume_fraction": dvh["volume_fraction"], "D2_Gy": dvh["D2_Gy"],
                "D50_Gy": dvh["D50_Gy"], "D98_Gy": dvh["D98_Gy"],
                "V_Gy": {f"V{d:g}Gy": v for d, v in dvh["V_Gy"].items()}},
    })
    tissue_name = _tissue_for(voi, tissues)
    entry["tissue"] = tissue_name
    if tissue_name == "normal_tissue":
        entry["warnings"].append(f"no tissue-specific radiobiological parameters for '{voi.name}': the BED uses the "
                                 "generic normal-tissue values")
    entry["bed_Gy"] = entry["eud_Gy"] = None
    if tissue_name is None:
        entry["warnings"].append(f"no radiobiological parameters for '{voi.name}': BED and EUD not computed "
                                 "(add the tissue to the tissue-parameter table)")
    else:
        tissue = tissues[tissue_name]
        if fit.model in ("mono", "bi", "tri", "single"):
            entry["bed_Gy"] = float(radiobiology.bed_from_tac_Gy(entry["mean_dose_Gy"], fit, tissue["alpha_beta_Gy"],
                                                                 tissue["repair_half_time_h"]))
        else:
            entry["warnings"].append("BED needs an exponential time-activity model; the trapezoid gives none")
        if tissue.get("alpha_per_Gy"):
            weights = None if density is None else density[voi.mask]
            entry["eud_linear_Gy"] = radiobiology.eud_Gy(dose_map[voi.mask], tissue["alpha_per_Gy"], weights)
            entry["eud_Gy"] = entry["eud_linear_Gy"]
            if entry["bed_Gy"] is not None:
                # The EUD consistent with the BED: the uniform dose whose BED is the EUBED (beta included).
                g = radiobiology.lea_catcheside_g(*fit.exponential_terms(), tissue["repair_half_time_h"])
                entry["eud_Gy"] = radiobiology.lq_eud_Gy(dose_map[voi.mask], tissue["alpha_per_Gy"],
                                                         tissue["alpha_beta_Gy"], g, weights)
    volume_relative, outline_mm = _outline_uncertainty(voi, reference.spacing_mm, options)
    _uncertainty_budget(voi, entry, reference, volume_relative, {**budget_context, "outline_mm": outline_mm})


def _budget_context(record, options, pv_info, registrations):
    """Run-wide inputs of every VOI's uncertainty budget (MIBGDosimetryLib.dose.budget)."""
    fwhm, _, _ = _resolution(record, options)
    shifts = [None if index == options.reference_index else reg.quality.get("rms_bright_structure_shift_mm")
              for index, reg in enumerate(registrations)]
    return {"record": record, "partial_volume_method": pv_info["method"], "fwhm_mm": fwhm,
            "registration_shifts_mm": shifts,
            "reference_index": options.reference_index, "density_corrected": options.density_correction,
            "dead_time_stated": record.dead_time_s is not None}


def _registration_changes(vois, registered, reference, shifts_mm):
    """Per time point (None for the reference or an unmeasured one): each VOI's relative activity change
    in the registered SPECT when moved by the time point's measured residual shift."""
    from MIBGDosimetryLib.dose.budget import registration_changes

    masks = [voi.mask for voi in vois]
    return [None if shift is None else registration_changes(spect.array, masks, shift, reference.spacing_mm)
            for spect, shift in zip(registered, shifts_mm)]


def _outline_dose_sensitivities(vois, outline, dose_map, density, tia_map, self_dose):
    """Per VOI the mean dose's change per relative volume change for its outline moved out and in, measured
    on the dose map with the moves the GTM sensitivities used (MIBGDosimetryLib.dose.budget.
    outline_dose_sensitivities); None for a VOI without such moves."""
    from MIBGDosimetryLib.dose.budget import outline_dose_sensitivities

    result = []
    for index, voi in enumerate(vois):
        moves = outline[3][index]
        sides = (None, None) if moves is None else outline_dose_sensitivities(
            dose_map, density, tia_map, voi.mask, moves, (outline[0][index], outline[1][index]), self_dose[index])
        known = [v for v in sides if v is not None]
        result.append(None if not known else tuple(v if v is not None else known[0] for v in sides))
    return result


def _outline_sensitivities(vois, voi_results, registered, tia_map, body, pv_info, record, options, reference):
    """``(outwards[voi], inwards[voi], how[voi], moves[voi])``: each VOI's relative activity change per
    relative volume change when its outline moves; by the GTM itself when it corrected the activities
    (``moves`` then holds the moved outlines, see MIBGDosimetryLib.workflow.partial_volume.outline_sensitivities),
    else from the concentration around the VOI (``moves`` None; see MIBGDosimetryLib.dose.budget)."""
    from MIBGDosimetryLib.dose import budget

    # The GTM's info names its method in full.
    if pv_info["method"] in ("gtm", "geometric transfer matrix"):
        from MIBGDosimetryLib.workflow.partial_volume import drawn_outline_moves, outline_sensitivities

        weights = [budget.tia_shares(e["tac"]["times_h"], e["tac"]["activity_MBq"]) for e in voi_results]
        fwhm, _, _ = _resolution(record, options)
        # A stated uncertainty of 0 (exact outlines) leaves the term at 0 whatever its sensitivity: the
        # sensitivity is then measured at the default distance.
        stated = {**SURFACE_UNCERTAINTY_MM, **(options.outline_uncertainty_mm or {})}
        distances = {kind: float(mm) if float(mm) > 0 else SURFACE_UNCERTAINTY_MM[kind] for kind, mm in stated.items()}
        moves = drawn_outline_moves(vois, reference, distances)
        outwards, inwards, drawn, made = outline_sensitivities(vois, [s.array for s in registered], body, fwhm,
                                                               reference.spacing_mm, weights, moves)
        return outwards, inwards, [_outline_move_said(move, used, distances[voi.kind])
                                   for voi, move, used in zip(vois, moves, drawn)], made
    concentration = _region_concentration(vois, voi_results, tia_map, body)
    ratios = [budget.outside_concentration_ratio(voi.mask, concentration) for voi in vois]
    return ratios, ratios, ["concentration around the VOI"] * len(vois), [None] * len(vois)


def _outline_move_said(move, drawn, distance_mm):
    """How a VOI's outline was moved for its sensitivity (``drawn``: the drawn move made out, in)."""
    if move is None:
        return "GTM re-solved with the outline one voxel out and in"
    if all(drawn):
        return f"GTM re-solved with the drawn outline moved {distance_mm:g} mm out and in on its own grid"
    sides = " and ".join(side for side, used in zip(("out", "in"), drawn) if not used)
    return (f"GTM re-solved with the outline moved {distance_mm:g} mm on its own grid where that changes its SPECT "
            f"voxels, else one voxel ({sides}: the drawn outline is as coarse as the SPECT voxels)")


def _region_concentration(vois, voi_results, tia_map, body):
    """Each voxel's mean TIA concentration of its region (MBq h per voxel): a VOI's corrected TIA over its
    voxels, the rest of the body's mean, 0 outside the body."""
    concentration = np.zeros(np.shape(tia_map))
    rest = np.asarray(body, dtype=bool).copy()
    for voi, entry in zip(vois, voi_results):
        rest &= ~voi.mask
    if rest.any():
        concentration[rest] = float(np.mean(tia_map[rest]))
    for voi, entry in zip(vois, voi_results):
        concentration[voi.mask] = entry["tia_MBq_h"] / max(np.count_nonzero(voi.mask), 1)
    return concentration


def _uncertainty_budget(voi, entry, reference, volume_relative, context):
    """TIA and mean-dose uncertainties of a VOI from its named budget (every term in ``uncertainty_budget``)."""
    from MIBGDosimetryLib.dose import budget

    terms, tia_relative, dose_relative, warnings = budget.voi_budget(
        entry, voi.mask, reference.spacing_mm, context["record"],
        {**context, "volume_relative": volume_relative})
    entry["tia_uncertainty_MBq_h"] = tia_relative * entry["tia_MBq_h"]
    entry["dose_uncertainty_Gy"] = dose_relative * abs(entry["mean_dose_Gy"])
    entry["uncertainty_budget"] = [t.to_dict() for t in terms]
    entry["uncertainty_components"] = {"tia_relative": tia_relative, "dose_relative": dose_relative,
                                       "volume_relative": volume_relative,
                                       "self_dose_fraction": context.get("self_dose_fraction", 1.0)}
    entry["warnings"].extend(warnings)
    for key in ("_fit_uncertainty_MBq_h", "_recovery_relative", "_recovery_by_gtm", "_local_fwhm",
                "_calibration_relative", "_dead_time_relative"):
        entry.pop(key)


def _tissue_for(voi, tissues):
    """The tissue-parameter entry of a VOI: tumour for lesions, the organ's own entry when its name
    contains one, otherwise the generic normal tissue."""
    if voi.kind == "lesion":
        return "tumour" if "tumour" in tissues else None
    for name in tissues:
        if name in voi.name.lower():
            return name
    return "normal_tissue" if "normal_tissue" in tissues else None


#: Standard uncertainty of a VOI's surface position (mm): an outline drawn on CT (half a CT voxel of
#: about 2 mm), and a lesion surface placed by the calibrated adaptive threshold to a fraction of a
#: SPECT voxel (the spread of calibrated threshold fractions moves it by a few tenths of a mm).
SURFACE_UNCERTAINTY_MM = {"organ": 1.0, "lesion": 0.5}
#: A surface counted in voxel faces overestimates a smooth surface's area by about 3/2 on average
#: over orientations (a plane's projections onto the three axes sum to between 1 and sqrt(3) times it).
FACE_COUNT_TO_AREA = 2.0 / 3.0


def _outline_uncertainty(voi, spacing_mm, options):
    """``(relative volume uncertainty, outline-position uncertainty mm)`` of a VOI: the stated outline
    uncertainty of its class, for a lesion outlined at its contrast-consistent threshold (its image
    contrast below the calibration's, see MIBGDosimetryLib.segmentation.adaptive_threshold) combined with
    the difference between its two readings as a rectangular distribution; for a lesion whose outline the
    PSF-model fit refined, unless the options state one for lesions, the fit's own volume uncertainty
    (noise of this image; a lesion that is no ellipsoid or a PSF that is no Gaussian adds a model error the
    fit does not see)."""
    stated = options.outline_uncertainty_mm or {}
    refined = (voi.details or {}).get("psf_refinement") or {}
    measured = refined.get("volume_uncertainty_ml")
    if voi.kind == "lesion" and "lesion" not in stated and "threshold_volume_ml" in (voi.details or {}) \
            and measured is not None and np.isfinite(measured) and refined.get("volume_ml"):
        from MIBGDosimetryLib.dose.budget import surface_to_volume_per_mm

        relative = float(measured) / float(refined["volume_ml"])
        return relative, relative / surface_to_volume_per_mm(voi.mask, spacing_mm)
    outline_mm = float({**SURFACE_UNCERTAINTY_MM, **stated}[voi.kind])
    surface = _volume_relative_uncertainty(voi, spacing_mm, outline_mm)
    check = (voi.details or {}).get("contrast_check") or {}
    if voi.kind == "lesion" and "lesion" not in stated and check.get("used"):
        # Two readings of the lesion's image (see adaptive_threshold): the contrast-consistent outline
        # used and the self-consistent one; the volume lies between them, taken as a rectangular
        # distribution of that width. The surface term is proportional to the outline position.
        between = abs(check["self_consistent_volume_ml"] - check["alternative_volume_ml"]) / check["alternative_volume_ml"]
        relative = float(np.hypot(surface, between / np.sqrt(12.0)))
        return relative, outline_mm * relative / surface
    return surface, outline_mm


def _volume_relative_uncertainty(voi, spacing_mm, outline_mm=None):
    """Relative standard uncertainty of a VOI volume: surface area x surface-position uncertainty / volume,
    the surface-to-volume ratio of the outline as drawn when known (``details["surface_to_volume_per_mm"]``,
    see MIBGDosimetryLib.workflow.vois.outline_details), else of the SPECT-grid mask."""
    outline_mm = SURFACE_UNCERTAINTY_MM[voi.kind] if outline_mm is None else outline_mm
    drawn = (voi.details or {}).get("surface_to_volume_per_mm")
    if drawn:
        return float(drawn) * outline_mm
    mask = np.asarray(voi.mask, dtype=bool)
    sx, sy, sz = (float(s) for s in spacing_mm)
    face_area = {0: sx * sy, 1: sx * sz, 2: sy * sz}  # faces normal to k, j, i
    padded = np.pad(mask, 1)
    area_mm2 = 0.0
    for axis in range(3):
        area_mm2 += np.count_nonzero(np.diff(padded, axis=axis)) * face_area[axis]
    volume_mm3 = np.count_nonzero(mask) * sx * sy * sz
    return FACE_COUNT_TO_AREA * area_mm2 * outline_mm / max(volume_mm3, 1e-12)


def _timepoint_entry(tp, registration, factors):
    return {
        "label": tp.label, "hours_after_administration": tp.hours_after_administration,
        "mid_acquisition_hours": tp.mid_acquisition_hours, "duration_s": tp.duration_s,
        "observed_count_rate_cps": tp.observed_count_rate_cps, "dead_time_factor": factors.dead_time_factor,
        "dead_time_count_rate_cps": factors.observed_count_rate_cps,
        "units_path": factors.units_path,
        "registration": registration.to_dict(), "warnings": list(tp.warnings),
    }


def _calibration_summary(record):
    summary = {
        "calibration_factor_cps_per_MBq": record.calibration_factor_cps_per_MBq,
        "calibration_factor_cps_per_MBq_uncertainty": record.calibration_factor_cps_per_MBq_uncertainty,
        "dead_time_s": record.dead_time_s, "dead_time_s_uncertainty": record.dead_time_s_uncertainty,
        "camera": record.camera, "collimator": record.collimator, "date": record.date,
        "record_version": record.version,
    }
    if record.recovery_curve is not None:
        summary["recovery_curve"] = record.recovery_curve.to_dict()
    if record.threshold_model is not None:
        summary["threshold_model"] = record.threshold_model.to_dict()
    return summary


def _provenance(options, record):
    options_dict = dataclasses.asdict(options)
    options_dict["seed_points_ras_mm"] = (None if options.seed_points_ras_mm is None else
                                          {k: [float(x) for x in v] for k, v in options.seed_points_ras_mm.items()})
    return {
        "software": f"SlicerMIBGDosimetry {__version__}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": options_dict,
        "calibration_provenance": record.provenance,
        "methods": {
            "activity": "EANM eq. 9: A = C / (Q R(V)) x DTF; DTF by EANM eq. 7 from the observed count rate",
            "registration": "rigid CT-to-CT (SimpleITK, Mattes mutual information), SPECT follows its CT, "
                            "counts conserved on the reference SPECT grid",
            "tac": "per VOI: mono/bi/tri-exponential or trapezoid with fitted tail, AICc selection (K = parameters "
                   "+ 1), weighted least squares with scatter-scaled covariance, stated activity before the first "
                   "scan; per voxel: the kinetics of the voxel's VOI with the voxel's own amplitude "
                   "(voxel_model auto) or the exponential models fitted per voxel",
            "dose": "TIA map convolved (FFT) with the 131I voxel S-value kernel computed for the SPECT voxel size "
                    "(soft tissue, 1.04 g/cm3), reaching the whole map unless kernel_half_width limits it; "
                    "VOI means scaled by the recovery-corrected VOI TIA over the voxel TIA",
            "bed": "linear-quadratic model with Lea-Catcheside factor of the fitted dose-rate curve",
            "eud": "EUD: the uniform dose whose BED equals the EUBED = -ln(mean exp(-alpha BED)) / alpha over the "
                   "voxel BEDs (same G as the VOI); eud_linear_Gy = -ln(mean exp(-alpha D)) / alpha without beta",
        },
    }


def _finite_or_none(value):
    return float(value) if value is not None and np.isfinite(value) else None
