"""The whole calibration chain from a folder of phantom acquisitions described by ``phantom.json``.

Order of the steps, each using what the previous ones found:

1. dead time from the increasing-activity series (EANM eq. 6);
2. calibration factor Q from the Jaszczak cylinder (EANM eq. 4), its counts corrected for dead time
   (EANM eq. 7) when the dead time and the observed count rate are known;
3. recovery coefficients of the sphere inserts and the recovery curve (EANM eq. 5);
4. spatial resolution (FWHM) of the sphere image, adaptive-threshold fractions of the inserts and
   the threshold model (over volume and contrast when ``threshold_spheres`` lists the same inserts
   filled at other concentration ratios);
5. recovery and noise over OSEM updates and the suggested update number;
6. TEW scatter correction of the projections (EANM eq. 8), kept as a derived NM object;
7. Chang attenuation correction of the non-attenuation-corrected reconstruction.

Only the Jaszczak acquisition is required; the other sections are calibrated when ``phantom.json``
describes them. The record and the scatter-corrected projections are written by
:func:`write_outputs` only once every step has succeeded.
"""

import dataclasses
import glob
import json
import os

import numpy as np

from MIBGCalibrationLib import (calibration_factor, chang, deadtime, decay, dicom_files, osem, recovery, resolution,
                                tew, tew_dicom, threshold_calibration, voi)
from MIBGCalibrationLib.record import CalibrationRecord, file_sha256, provenance_of

PHANTOM_FILE = "phantom.json"

#: Background VOI margins: away from the blurred phantom edge and from the inserts' spill-out.
BACKGROUND_EDGE_MARGIN_MM = 20.0
BACKGROUND_SPHERE_MARGIN_MM = 20.0


@dataclasses.dataclass
class PhantomCalibration:
    """The calibration record and the intermediate results behind it (for plots and reports)."""

    record: CalibrationRecord
    q_result: calibration_factor.CalibrationFactorResult
    dead_time: deadtime.DeadTimeFit = None
    inserts: list = dataclasses.field(default_factory=list)
    recovery_curve: recovery.RecoveryCurve = None
    thresholds: list = dataclasses.field(default_factory=list)
    osem_choice: osem.UpdateChoice = None
    tew: tew_dicom.TewResult = None
    tew_dataset: object = None
    tew_output: str = None
    chang_result: chang.ChangResult = None
    chang_uniform_mean: float = None
    resolution_fit: resolution.ResolutionFit = None


def load_description(folder):
    """The phantom description ``phantom.json`` of a calibration folder, checked for the required parts."""
    path = os.path.join(str(folder), PHANTOM_FILE)
    if not os.path.isdir(str(folder)):
        raise ValueError(f"The calibration folder '{folder}' does not exist.")
    if not os.path.isfile(path):
        raise ValueError(f"The calibration folder '{folder}' has no {PHANTOM_FILE} describing the phantoms; "
                         "no phantom found.")
    try:
        with open(path) as stream:
            description = json.load(stream)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}.") from error
    if description.get("radionuclide", "I-131") != "I-131":
        raise ValueError(f"This calibration is for 131I; {path} describes {description.get('radionuclide')}.")
    jaszczak = description.get("jaszczak")
    if not isinstance(jaszczak, dict):
        raise ValueError(f"{path} describes no Jaszczak cylinder; the calibration factor Q needs it.")
    _require(jaszczak, ("series_dir", "inner_diameter_mm", "inner_height_mm", "volume_ml", "activity_MBq",
                        "reference_datetime"), "the Jaszczak description")
    spheres = description.get("spheres")
    if spheres:
        _require(spheres, ("series_dir", "reference_datetime", "sphere_concentration_MBq_per_ml", "inserts"),
                 "the sphere phantom description")
        for insert in spheres["inserts"]:
            _require(insert, ("name", "volume_ml", "centre_ras_mm"), "a sphere insert")
    for extra in description.get("threshold_spheres") or []:
        if not spheres:
            raise ValueError(f"{path}: threshold_spheres needs the sphere phantom ('spheres') as well.")
        _require(extra, ("series_dir", "reference_datetime", "sphere_concentration_MBq_per_ml",
                         "background_concentration_MBq_per_ml", "inserts"),
                 "a threshold sphere phantom (threshold_spheres)")
        for insert in extra["inserts"]:
            _require(insert, ("name", "volume_ml", "centre_ras_mm"), "a sphere insert")
    for name in ("deadtime", "osem", "tew", "chang"):
        if description.get(name):
            _require(description[name], ("series_dir",), f"the {name} description")
    if description.get("osem"):
        _require(description["osem"], ("reconstructions",), "the osem description")
        for item in description["osem"]["reconstructions"]:
            _require(item, ("file", "iterations", "subsets"), "an OSEM reconstruction")
    return description


def _require(section, keys, what):
    missing = [key for key in keys if key not in section]
    if missing:
        raise ValueError(f"{PHANTOM_FILE}: {what} lacks {missing}.")


def _nm_files(folder, what):
    files = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    if not files:
        raise ValueError(f"No DICOM files (*.dcm) found for the {what} in '{folder}'.")
    return files


def _series_file(folder, section, what, key="file"):
    """The file of a section: ``section[key]`` in its series folder, else the folder's only DICOM file."""
    series_dir = os.path.join(folder, section["series_dir"])
    if section.get(key):
        path = os.path.join(series_dir, section[key])
        if not os.path.isfile(path):
            raise ValueError(f"The {what} file '{path}' named in {PHANTOM_FILE} does not exist.")
        return path
    files = _nm_files(series_dir, what)
    if len(files) > 1:
        raise ValueError(f"'{series_dir}' holds {len(files)} DICOM files; name the {what} file in {PHANTOM_FILE} "
                         f"('{key}').")
    return files[0]


def _dead_time_factor_of(image, tau_s, warnings, what):
    """Dead-time factor of a scan from CountsAccumulated / duration (1 when either is unknown)."""
    counts = image.metadata.get("counts_accumulated")
    if tau_s is None:
        return 1.0
    if counts is None:
        warnings.append(f"The {what} states no CountsAccumulated; its counts are not corrected for dead time.")
        return 1.0
    return deadtime.dead_time_factor(tau_s, counts / image.metadata["duration_s"])


class _Inputs:
    """Collects every input file read, for the provenance of the record."""

    def __init__(self):
        self.paths = []

    def add(self, path):
        self.paths.append(os.path.abspath(path))
        return path


def _series_count_rate(path):
    """The count rate a dead-time series image measures: all of its frames (every energy window it
    holds), of one detector when it states NumberOfDetectors 1, else of all detectors together."""
    dataset = dicom_files.read_dataset(path)
    windows = dicom_files.acquisition_info(dataset)["energy_windows"]
    detectors = dataset.get("NumberOfDetectors")
    return deadtime.count_rate_definition("all" if len(windows) > 1 else "photopeak",
                                          per_detector=detectors is not None and int(detectors) == 1)


def _dead_time(folder, section, inputs):
    series_dir = os.path.join(folder, section.get("series_dir", "deadtime"))
    steps = section.get("steps") or []
    if steps:
        activity, observed = [], []
        for step in steps:
            _require(step, ("file", "activity_MBq", "reference_datetime"), "a dead-time step")
            path = inputs.add(os.path.join(series_dir, step["file"]))
            counts, duration, start = dicom_files.read_nm_static(path)
            reference = decay.parse_datetime(step["reference_datetime"], f"reference time of {step['file']}")
            activity.append(decay.activity_at_scan_MBq(step["activity_MBq"], reference, start, duration))
            observed.append(counts / duration)
        fit = deadtime.fit_dead_time(activity, observed)
        fit.count_rate = _series_count_rate(os.path.join(series_dir, steps[0]["file"]))
        return fit
    path = os.path.join(series_dir, "series.csv")
    if not os.path.isfile(path):
        raise ValueError(f"The dead-time section lists no steps and '{path}' does not exist.")
    return deadtime.fit_dead_time(*deadtime.read_count_rate_csv(inputs.add(path)))


def _photopeak_files(files):
    """Split NM reconstructions into the photopeak one(s) and the others by their energy windows."""
    peak, other = [], []
    for path in files:
        windows = dicom_files.acquisition_info(dicom_files.read_dataset(path))["energy_windows"]
        contains_peak = any(w["lower_keV"] < tew.PHOTOPEAK_KEV < w["upper_keV"] for w in windows)
        (peak if contains_peak else other).append(path)
    return peak, other


def _sphere_radius_mm(volume_ml):
    return (3.0 * float(volume_ml) * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)


def _sphere_background(spect, spheres, q, dtf, duration_s, concentration_bkg):
    expected = q * concentration_bkg * spect.voxel_volume_ml * duration_s / dtf
    excluded = [(i["centre_ras_mm"], _sphere_radius_mm(i["volume_ml"])) for i in spheres["inserts"]]
    mask = voi.background_mask(spect, expected, excluded, BACKGROUND_EDGE_MARGIN_MM, BACKGROUND_SPHERE_MARGIN_MM)
    if mask.sum() < 10:
        raise ValueError("No background region was found in the sphere phantom image (warm background expected).")
    return mask


def _spheres(spect, spheres, q, dtf, concentration_sphere):
    inserts = []
    for insert in spheres["inserts"]:
        inserts.append(recovery.insert_recovery(
            spect, spect.metadata["duration_s"], q, insert["name"], insert["centre_ras_mm"], float(insert["volume_ml"]),
            concentration_sphere, dead_time_factor=dtf))
    return inserts


def _concentrations(spheres, image):
    reference = decay.parse_datetime(spheres["reference_datetime"], "reference time of the sphere phantom")
    start, duration = image.metadata["acquisition_datetime"], image.metadata["duration_s"]
    sphere = decay.activity_at_scan_MBq(spheres["sphere_concentration_MBq_per_ml"], reference, start, duration)
    background = decay.activity_at_scan_MBq(spheres.get("background_concentration_MBq_per_ml", 0.0), reference,
                                            start, duration)
    return sphere, background


def calibrate_phantom_folder(folder, log=None):
    """Run the calibration chain on a phantom folder; returns a :class:`PhantomCalibration`.

    Nothing is written: :func:`write_outputs` writes the record and the scatter-corrected
    projections once every step has succeeded. ``log`` receives one line per step.
    """
    folder = os.path.abspath(str(folder))
    say = log or (lambda message: None)
    description = load_description(folder)
    inputs = _Inputs()
    inputs.add(os.path.join(folder, PHANTOM_FILE))
    warnings, details = [], {}

    fit = None
    if description.get("deadtime"):
        say("Dead time from the count-rate series (EANM eq. 6)")
        fit = _dead_time(folder, description["deadtime"], inputs)
        warnings += fit.warnings
        details["dead_time"] = fit.to_dict()
    tau = None if fit is None else fit.tau_s

    say("Calibration factor Q from the Jaszczak cylinder (EANM eq. 4)")
    spect, q_result, dtf = _calibration_factor(folder, description["jaszczak"], tau, inputs, warnings)
    details["calibration_factor"] = {**q_result.to_dict(), "dead_time_factor": dtf}
    result = PhantomCalibration(record=None, q_result=q_result, dead_time=fit)

    if description.get("spheres"):
        say("Recovery coefficients of the sphere inserts (EANM eq. 5) and adaptive thresholds")
        details.update(_sphere_phantom(folder, description["spheres"], result, tau, inputs, warnings))
        for extra in description.get("threshold_spheres") or []:
            say(f"Adaptive thresholds of the sphere phantom in {extra['series_dir']}")
            details.setdefault("threshold", {}).setdefault("other_contrasts", []).append(
                _threshold_spheres(folder, extra, result, tau, inputs, warnings))
        if description.get("osem"):
            say("Recovery and noise over OSEM updates")
            result.osem_choice = _osem(folder, description["osem"], description["spheres"],
                                       q_result.q_cps_per_MBq, tau, inputs, warnings)
            warnings += result.osem_choice.warnings
            details["osem"] = result.osem_choice.to_dict()

    if description.get("tew"):
        say("TEW scatter correction of the projections (EANM eq. 8)")
        projections = inputs.add(_series_file(folder, description["tew"], "TEW projections"))
        source = dicom_files.read_dataset(projections)
        result.tew = tew_dicom.correct_dataset(source)
        result.tew_dataset = tew_dicom.derived_dataset(source, result.tew)
        warnings += result.tew.warnings
        details["tew"] = result.tew.to_dict()

    if description.get("chang"):
        say("Chang attenuation correction")
        result.chang_result, result.chang_uniform_mean, details["chang"] = _chang(folder, description["chang"],
                                                                                 inputs)

    result.record = _record(description, spect, result, details, warnings, provenance_of(inputs.paths, root=folder))
    return result


def tew_output_for(record_path):
    """Where the scatter-corrected projections go by default: beside the record, named after it."""
    stem = record_path[:-5] if record_path.lower().endswith(".json") else record_path
    return stem + ".tew.dcm"


def write_outputs(result, record_path, tew_output_path=None):
    """Write the scatter-corrected projections (when there are any) and then the calibration record.

    Each file is written to a temporary file beside its target and renamed when complete.
    ``tew_output_path`` defaults to :func:`tew_output_for` of the record path.
    """
    record_path = os.path.abspath(str(record_path))
    if result.tew_dataset is not None:
        result.tew_output = os.path.abspath(tew_output_path or tew_output_for(record_path))
        tew_dicom.write_dataset(result.tew_dataset, result.tew_output)
        result.record.scatter_correction["output"] = os.path.basename(result.tew_output)
        result.record.scatter_correction["output_sha256"] = file_sha256(result.tew_output)
    result.record.to_json(record_path)
    return record_path


def _calibration_factor(folder, jaszczak, tau, inputs, warnings):
    """Q from the Jaszczak reconstruction (on its CT when a ct/ folder is beside it)."""
    jaszczak_dir = os.path.join(folder, jaszczak["series_dir"])
    spect = dicom_files.read_nm_tomo(inputs.add(_series_file(folder, jaszczak, "Jaszczak cylinder")))
    ct = None
    ct_files = glob.glob(os.path.join(jaszczak_dir, "ct", "*.dcm"))
    if ct_files:
        ct = dicom_files.read_ct_series(os.path.join(jaszczak_dir, "ct"))
        for path in ct_files:
            inputs.add(path)
    reference = decay.parse_datetime(jaszczak["reference_datetime"], "reference time of the Jaszczak activity")
    activity = decay.activity_at_scan_MBq(jaszczak["activity_MBq"], reference, spect.metadata["acquisition_datetime"],
                                          spect.metadata["duration_s"])
    relative_activity_uncertainty = (float(jaszczak.get("activity_uncertainty_MBq", 0.0))
                                     / float(jaszczak["activity_MBq"]))
    dtf = _dead_time_factor_of(spect, tau, warnings, "Jaszczak acquisition")
    q_result = calibration_factor.calibration_factor(
        spect, spect.metadata["duration_s"], activity, float(jaszczak["volume_ml"]),
        float(jaszczak["inner_diameter_mm"]), float(jaszczak["inner_height_mm"]), ct=ct,
        activity_uncertainty_MBq=relative_activity_uncertainty * activity, dead_time_factor=dtf)
    warnings += q_result.warnings
    return spect, q_result, dtf


def _sphere_phantom(folder, spheres, result, tau, inputs, warnings):
    """Recovery per insert, the recovery curve and, with a warm background, the spatial resolution and
    the threshold fractions."""
    q = result.q_result.q_cps_per_MBq
    image = dicom_files.read_nm_tomo(inputs.add(_series_file(folder, spheres, "sphere phantom")))
    dtf = _dead_time_factor_of(image, tau, warnings, "sphere phantom acquisition")
    concentration, background_concentration = _concentrations(spheres, image)
    result.inserts = _spheres(image, spheres, q, dtf, concentration)
    for insert in result.inserts:
        warnings += insert.warnings
    result.recovery_curve = recovery.fit_recovery_curve(
        [i.volume_ml for i in result.inserts], [i.recovery for i in result.inserts],
        [i.recovery_uncertainty for i in result.inserts], result.q_result.q_uncertainty_cps_per_MBq / q)
    details = {"recovery": {"inserts": [i.to_dict() for i in result.inserts], "dead_time_factor": dtf,
                            "sphere_concentration_at_scan_MBq_per_ml": concentration,
                            "background_concentration_at_scan_MBq_per_ml": background_concentration}}
    if background_concentration > 0:
        expected_background = q * background_concentration * image.voxel_volume_ml * image.metadata["duration_s"] / dtf
        body = voi.body_at_level(image.array, 0.5 * expected_background)
        result.resolution_fit = resolution.fit_resolution(
            image, [(i.centre_ras_mm, _sphere_radius_mm(i.volume_ml)) for i in result.inserts], body)
        details["resolution"] = result.resolution_fit.to_dict()
        background = _sphere_background(image, spheres, q, dtf, image.metadata["duration_s"], background_concentration)
        background_mean = float(image.array[background].mean())
        contrast = concentration / background_concentration
        result.thresholds = [threshold_calibration.insert_threshold(
            image, i.name, i.centre_ras_mm, i.volume_ml, background_mean, contrast) for i in result.inserts]
        details["threshold"] = {"background_mean_counts": background_mean, "contrast": contrast,
                                "inserts": [t.to_dict() for t in result.thresholds], "other_contrasts": []}
    return details


def _threshold_spheres(folder, spheres, result, tau, inputs, warnings):
    """Threshold fractions of the inserts of a sphere phantom filled at another concentration ratio
    (added to ``result.thresholds``); recovery and resolution come from the main sphere phantom."""
    q = result.q_result.q_cps_per_MBq
    image = dicom_files.read_nm_tomo(inputs.add(_series_file(folder, spheres, "threshold sphere phantom")))
    dtf = _dead_time_factor_of(image, tau, warnings, f"sphere phantom acquisition in {spheres['series_dir']}")
    concentration, background_concentration = _concentrations(spheres, image)
    if background_concentration <= 0:
        raise ValueError(f"The threshold sphere phantom in {spheres['series_dir']} needs a warm background.")
    background = _sphere_background(image, spheres, q, dtf, image.metadata["duration_s"], background_concentration)
    background_mean = float(image.array[background].mean())
    contrast = concentration / background_concentration
    found = [threshold_calibration.insert_threshold(image, i["name"], i["centre_ras_mm"], float(i["volume_ml"]),
                                                    background_mean, contrast) for i in spheres["inserts"]]
    result.thresholds = list(result.thresholds) + found
    return {"series_dir": spheres["series_dir"], "background_mean_counts": background_mean, "contrast": contrast,
            "inserts": [t.to_dict() for t in found]}


def _record(description, spect, result, details, warnings, provenance):
    """The calibration record of a finished chain."""
    fit, resolution_fit = result.dead_time, result.resolution_fit
    if result.tew is not None:
        windows = [w.to_dict() for w in (result.tew.windows.lower, result.tew.windows.peak, result.tew.windows.upper)]
    else:
        windows = spect.metadata["energy_windows"]
    camera = dict(description.get("camera") or {})
    reconstruction = {"description": spect.metadata.get("reconstruction", "")}
    updates = osem.updates_from_label(reconstruction["description"])
    if updates is not None:
        reconstruction["updates"] = updates
    if result.osem_choice is not None:
        reconstruction["suggested_updates"] = result.osem_choice.suggested_updates
        for item in description["osem"]["reconstructions"]:
            if _updates(item) == result.osem_choice.suggested_updates:
                reconstruction["suggested_iterations"] = int(item["iterations"])
                reconstruction["suggested_subsets"] = int(item["subsets"])
    threshold_model = threshold_calibration.fit_threshold_model(result.thresholds) if result.thresholds else None
    return CalibrationRecord(
        calibration_factor_cps_per_MBq=result.q_result.q_cps_per_MBq,
        calibration_factor_cps_per_MBq_uncertainty=result.q_result.q_uncertainty_cps_per_MBq,
        recovery_curve=result.recovery_curve, recovery_inserts=[i.to_dict() for i in result.inserts],
        resolution_fwhm_mm=None if resolution_fit is None else resolution_fit.fwhm_mm,
        resolution_fwhm_mm_uncertainty=None if resolution_fit is None else resolution_fit.fwhm_uncertainty_mm,
        dead_time_s=None if fit is None else fit.tau_s,
        dead_time_s_uncertainty=None if fit is None else fit.tau_s_uncertainty,
        dead_time_count_rate=deadtime.count_rate_definition() if fit is None else dict(fit.count_rate),
        sensitivity_cps_per_MBq=None if fit is None else fit.sensitivity_cps_per_MBq,
        sensitivity_cps_per_MBq_uncertainty=None if fit is None else fit.sensitivity_cps_per_MBq_uncertainty,
        threshold_model=threshold_model, camera=camera,
        collimator=str(camera.get("collimator") or spect.metadata.get("collimator", "")),
        energy_windows=windows, reconstruction=reconstruction,
        scatter_correction=details.get("tew"), attenuation_correction=details.get("chang"),
        osem_updates=details.get("osem"), image_grid=_image_grid(spect),
        post_filter=spect.metadata.get("reconstruction") or None, details=details, warnings=warnings, provenance=provenance,
        date=spect.metadata["acquisition_datetime"].isoformat())


def _image_grid(spect):
    """The reconstruction grid of the calibration image, as the dosimetry compares it with a study's."""
    return {"matrix_ij": [int(n) for n in spect.array.shape[:0:-1]],
            "voxel_size_mm": [float(v) for v in spect.spacing_mm]}


def _osem(folder, section, spheres, q, tau, inputs, warnings):
    series_dir = os.path.join(folder, section.get("series_dir", "osem"))
    updates, recoveries, noise = [], {}, []
    for item in section["reconstructions"]:
        image = dicom_files.read_nm_tomo(inputs.add(os.path.join(series_dir, item["file"])))
        dtf = _dead_time_factor_of(image, tau, warnings, f"OSEM reconstruction {item['file']}")
        concentration, background_concentration = _concentrations(spheres, image)
        for insert in _spheres(image, spheres, q, dtf, concentration):
            recoveries.setdefault(insert.name, []).append(insert.recovery)
        if background_concentration <= 0:
            raise ValueError("The noise over OSEM updates is measured in the warm background of the sphere "
                             "phantom, but its background concentration is 0.")
        mask = _sphere_background(image, spheres, q, dtf, image.metadata["duration_s"], background_concentration)
        noise.append(osem.coefficient_of_variation(image.array, mask))
        updates.append(_updates(item))
    return osem.choose_updates(updates, recoveries, noise)


def _updates(item):
    """OSEM updates of a reconstruction: as recorded, else iterations x subsets."""
    return int(item.get("updates", int(item["iterations"]) * int(item["subsets"])))


def _chang(folder, section, inputs):
    series_dir = os.path.join(folder, section["series_dir"])
    if section.get("nac_file") and section.get("lower_window_file"):
        peak = [_series_file(folder, section, "non-attenuation-corrected reconstruction", "nac_file")]
        other = [_series_file(folder, section, "lower scatter-window reconstruction", "lower_window_file")]
    else:
        peak, other = _photopeak_files(_nm_files(series_dir, "Chang attenuation correction"))
    if len(peak) != 1 or len(other) != 1:
        raise ValueError(f"'{series_dir}' must hold one photopeak reconstruction without attenuation correction and "
                         f"one lower scatter-window reconstruction; found {len(peak)} and {len(other)}.")
    nac = dicom_files.read_nm_tomo(inputs.add(peak[0]))
    scatter = dicom_files.read_nm_tomo(inputs.add(other[0]))
    mu = float(section.get("mu_per_cm", chang.MU_WATER_364KEV_PER_CM))
    corrected = chang.chang_correct(nac, scatter_image=scatter, mu_per_cm=mu)
    central = central_region(nac, corrected.body_mask)
    uniform_mean = float(corrected.corrected[central].mean())
    summary = {**corrected.summary(), "central_region_mean_counts": uniform_mean,
               "central_region_uncorrected_mean_counts": float(np.asarray(nac.array)[central].mean())}
    return corrected, uniform_mean, summary


def central_region(volume, body):
    """Cylinder of 75 % of the body's equivalent diameter and axial extent, centred on the body."""
    centre = voi.centroid_ras(volume, body)
    slices = np.nonzero(body.any(axis=(1, 2)))[0]
    middle = body[slices[len(slices) // 2]]
    radius_mm = np.sqrt(middle.sum() * volume.spacing_mm[0] * volume.spacing_mm[1] / np.pi)
    half_height_mm = 0.5 * (slices.max() - slices.min() + 1) * volume.spacing_mm[2]
    return voi.cylinder_mask(volume, centre, calibration_factor.VOI_FRACTION * radius_mm,
                             calibration_factor.VOI_FRACTION * half_height_mm) & body
