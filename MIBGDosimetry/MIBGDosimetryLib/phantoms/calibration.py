"""The calibration phantom set: what a physicist acquires to calibrate the camera for 131I, with
the answers beside it.

:func:`write_calibration_set` writes::

    OUT/phantom.json              what the physicist recorded (activities, times, geometry)
    OUT/jaszczak/spect.dcm        uniform 20 cm cylinder, reconstructed (counts)
    OUT/spheres/spect.dcm         sphere inserts in a warm background, reconstructed
    OUT/deadtime/step_NN.dcm      planar static images at increasing activity
    OUT/deadtime/series.csv       activity_MBq,observed_cps of every step
    OUT/osem/osem_NNN.dcm         the sphere phantom at several OSEM update numbers (NNN updates)
    OUT/tew/projections.dcm       sphere phantom projections in three energy windows
    OUT/chang/nac.dcm             uniform cylinder without attenuation correction
    OUT/chang/lower_window.dcm    its lower-scatter-window reconstruction
    OUT/truth.json                the answers

All images follow the camera model of :mod:`MIBGDosimetryLib.phantoms.camera` (calibration factor
Q, paralysable dead time on the count rate Q x activity, Gaussian resolution, Poisson noise).
Reconstructions are fully corrected except the Chang pair.
"""

import dataclasses
import datetime
import json
import math
import os

import numpy as np

from MIBGDosimetryLib.phantoms import attenuation, calibration_objects, osem, projection, tew
from MIBGDosimetryLib.phantoms import camera as camera_module
from MIBGDosimetryLib.phantoms.grid import PhantomGrid
from MIBGDosimetryLib.physics import i131

#: Start of the calibration session: fixed so that generated sets are reproducible.
REFERENCE_DATETIME = datetime.datetime(2026, 2, 16, 8, 0, 0)
#: FWHM of the lower-window image: scatter is spread far wider than the photopeak resolution.
LOWER_WINDOW_FWHM_MM = 40.0


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """Everything that defines the calibration set (activities in MBq at their reference times)."""

    seed: int = 1
    grid: PhantomGrid = PhantomGrid(64, 64, 4.4, 2)
    camera: camera_module.Camera = camera_module.Camera()
    cylinder: calibration_objects.Cylinder = calibration_objects.Cylinder()
    jaszczak_activity_MBq: float = 50.0
    sphere_diameters_mm: tuple = (60.0, 40.0, 30.0, 20.0, 15.0)
    sphere_MBq_per_ml: float = 0.08
    background_MBq_per_ml: float = 0.01
    deadtime_activities_MBq: tuple = (25.0, 100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0,
                                      5000.0, 6000.0)
    deadtime_frame_s: float = 60.0
    osem_updates: tuple = (8, 16, 32, 64, 128)
    chang_activity_MBq: float = 100.0
    number_of_views: int = 60
    frame_duration_s: float = 30.0
    reference_datetime: datetime.datetime = REFERENCE_DATETIME

    def __post_init__(self):
        positive = {"Jaszczak activity": self.jaszczak_activity_MBq, "sphere concentration": self.sphere_MBq_per_ml,
                    "Chang activity": self.chang_activity_MBq, "frame duration": self.frame_duration_s}
        for what, value in positive.items():
            if value <= 0:
                raise ValueError(f"The {what} must be positive, got {value}.")
        if self.background_MBq_per_ml < 0 or self.background_MBq_per_ml >= self.sphere_MBq_per_ml:
            raise ValueError("The background concentration must be non-negative and below the sphere concentration.")
        if not self.deadtime_activities_MBq or any(a <= 0 for a in self.deadtime_activities_MBq):
            raise ValueError("Give positive activities for the dead-time steps.")
        if not self.osem_updates:
            raise ValueError("Give at least one OSEM update number.")

    @property
    def session(self):
        """Times of the acquisitions (hours after the reference) and of the activity measurements."""
        return {"jaszczak_reference_h": 0.0, "jaszczak_scan_h": 1.0, "spheres_reference_h": 0.5,
                "spheres_scan_h": 2.0, "deadtime_start_h": 3.0, "deadtime_step_h": 0.25, "tew_scan_h": 4.0,
                "chang_reference_h": 4.5, "chang_scan_h": 5.0}

    def at(self, hours):
        return self.reference_datetime + datetime.timedelta(hours=hours)


def _check_field_of_view(grid, camera, cylinder):
    margin_mm = 3.0 * camera.fwhm_mm / camera_module.FWHM_PER_SIGMA
    needed = np.array([cylinder.radius_mm, cylinder.radius_mm, cylinder.inner_height_mm / 2.0]) + margin_mm
    if np.any(grid.half_extent_mm < needed):
        raise ValueError(f"The SPECT grid ({grid.matrix} x {grid.matrix} x {grid.slices} voxels of "
                         f"{grid.spect_voxel_mm} mm) must span at least {2 * needed[0]:.0f} x {2 * needed[1]:.0f} x "
                         f"{2 * needed[2]:.0f} mm to hold the {cylinder.inner_diameter_mm:g} mm cylinder.")


def sphere_voi_masks(grid, inserts):
    """SPECT voxels whose centre lies inside each sphere: the VOI matching the true volume."""
    volume = grid.spect_volume(np.zeros(grid.spect_shape))
    k, j, i = np.indices(grid.spect_shape)
    points = volume.ras_of_ijk(np.stack([i, j, k], axis=-1))
    return {insert.name: insert.shape.contains(points) for insert in inserts}


def recovery_coefficients(expected_counts, voi_masks, inserts, counts_per_MBq):
    """EANM eq. 5, R_i = C_i / (Q A_i), on a noise-free image: counts in the VOI of each insert
    divided by the counts its true activity would give (``counts_per_MBq`` = Q x survival x duration)
    times the true activity of the insert (``inserts`` maps name -> activity MBq)."""
    return {name: float(expected_counts[voi_masks[name]].sum() / (counts_per_MBq * activity_MBq))
            for name, activity_MBq in inserts.items()}


def threshold_fractions(expected_counts, grid, inserts, background_counts, fwhm_mm):
    """Per insert, the fraction f for which background + f (max - background) delineates exactly
    the true sphere volume on the noise-free image (searched within r + 2 FWHM of the centre)."""
    volume = grid.spect_volume(np.zeros(grid.spect_shape))
    k, j, i = np.indices(grid.spect_shape)
    points = volume.ras_of_ijk(np.stack([i, j, k], axis=-1))
    voxel_ml = grid.spect_voxel_mm ** 3 / 1000.0
    fractions = {}
    for insert in inserts:
        distance = np.linalg.norm(points - np.asarray(insert.centre_ras_mm), axis=-1)
        values = np.sort(expected_counts[distance <= insert.diameter_mm / 2.0 + 2.0 * fwhm_mm])[::-1]
        n = insert.volume_ml / voxel_ml
        below = int(math.floor(n))
        level = values[max(below - 1, 0)] + (n - below) * (values[below] - values[max(below - 1, 0)])
        peak = values[0]
        fractions[insert.name] = float((level - background_counts) / (peak - background_counts))
    return fractions


def _tomo(activity, config, fwhm_mm, duration_s, rng=None):
    """Noise-free counts of a reconstruction with resolution ``fwhm_mm`` (and Poisson counts if ``rng``)."""
    camera = dataclasses.replace(config.camera, fwhm_mm=fwhm_mm)
    expected, incident, observed = camera_module.expected_tomo_counts(activity, config.grid, camera, duration_s)
    counts = None if rng is None else camera_module.poisson_counts(expected, rng)
    return expected, counts, observed / incident


def simulate_calibration(config=CalibrationConfig()):
    """All calibration images (noise-free and noisy) and the truth, in memory."""
    grid, camera, cylinder = config.grid, config.camera, config.cylinder
    _check_field_of_view(grid, camera, cylinder)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(6)]
    times = config.session
    duration_s = config.number_of_views * config.frame_duration_s
    q = camera.calibration_factor_cps_per_MBq
    fine_voxel_ml = grid.fine_voxel_mm ** 3 / 1000.0
    spect_voxel_ml = grid.spect_voxel_mm ** 3 / 1000.0
    images, truth = {}, {"Q_cps_per_MBq": q, "tau_s": camera.dead_time_s, "fwhm_mm": camera.fwhm_mm}

    inserts = calibration_objects.helix_inserts(config.sphere_diameters_mm, cylinder)
    water, spheres = calibration_objects.sphere_phantom_occupancy(grid, cylinder, inserts)

    # Jaszczak: uniform cylinder scanned one hour after its activity was measured.
    jaszczak_scan_MBq = config.jaszczak_activity_MBq * float(i131.decay_factor(times["jaszczak_scan_h"]))
    activity = water * jaszczak_scan_MBq / cylinder.volume_ml * fine_voxel_ml
    expected, counts, survival = _tomo(activity, config, camera.fwhm_mm, duration_s, rngs[0])
    images["jaszczak"] = counts
    truth["jaszczak"] = {"activity_at_scan_MBq": jaszczak_scan_MBq,
                         "concentration_at_scan_MBq_per_ml": jaszczak_scan_MBq / cylinder.volume_ml,
                         "dead_time_survival_fraction": survival, "duration_s": duration_s,
                         "expected_counts_per_voxel_uniform_region":
                             q * survival * duration_s * jaszczak_scan_MBq / cylinder.volume_ml * spect_voxel_ml}

    # Spheres in a warm background; the OSEM series and the TEW projections image the same phantom.
    decay = float(i131.decay_factor(times["spheres_scan_h"] - times["spheres_reference_h"]))
    sphere_c, background_c = config.sphere_MBq_per_ml * decay, config.background_MBq_per_ml * decay
    activity = calibration_objects.activity_map_MBq(grid, water, background_c, spheres, sphere_c)
    expected, counts, survival = _tomo(activity, config, camera.fwhm_mm, duration_s, rngs[1])
    images["spheres"] = counts
    masks = sphere_voi_masks(grid, inserts)
    insert_activity = {ins.name: sphere_c * ins.volume_ml for ins in inserts}
    background_counts = q * survival * duration_s * background_c * spect_voxel_ml
    truth["spheres"] = {
        "sphere_concentration_at_scan_MBq_per_ml": sphere_c, "background_concentration_at_scan_MBq_per_ml":
            background_c, "dead_time_survival_fraction": survival, "duration_s": duration_s,
        "insert_activity_at_scan_MBq": insert_activity,
        "voi_voxels": {name: int(m.sum()) for name, m in masks.items()},
        "recovery_definition": "noise-free counts in the SPECT voxels whose centre lies inside the sphere, divided by "
                               "Q x dead-time survival x duration x true sphere activity (EANM eq. 5)",
        "background_counts_per_voxel": background_counts}
    truth["recovery"] = recovery_coefficients(expected, masks, insert_activity, q * survival * duration_s)
    truth["threshold_fraction"] = threshold_fractions(expected, grid, inserts, background_counts, camera.fwhm_mm)
    truth["threshold_definition"] = ("fraction f such that the voxels above background + f (max - background) of the "
                                     "noise-free sphere image, within r + 2 FWHM of the centre, hold the true volume; "
                                     "background = truth.spheres.background_counts_per_voxel")

    osem_images, osem_truth = {}, []
    for updates in config.osem_updates:
        iterations, subsets = osem.iterations_and_subsets(updates)
        fwhm = float(osem.fwhm_mm(updates, camera.fwhm_mm))
        expected_u, _, survival_u = _tomo(activity, config, fwhm, duration_s)
        osem_images[updates] = osem.noisy_reconstruction(expected_u, updates, rngs[2])
        osem_truth.append({
            "updates": int(updates), "iterations": iterations, "subsets": subsets, "fwhm_mm": fwhm,
            "recovery": recovery_coefficients(expected_u, masks, insert_activity, q * survival_u * duration_s),
            "background_relative_noise": float(math.sqrt(osem.variance_factor(updates) / background_counts))})
    images["osem"] = osem_images
    truth["osem"] = {"model": osem.__doc__.strip(), "reconstructions": osem_truth}

    images["tew"], truth["tew"] = _tew_projections(config, water, spheres, rngs[3])
    images["deadtime"], truth["deadtime"] = _deadtime_series(config, water, rngs[4])
    images["chang"], truth["chang"] = _chang_pair(config, water, duration_s, rngs[5])
    return inserts, images, truth


def _tew_projections(config, water, spheres, rng):
    grid, camera = config.grid, config.camera
    times = config.session
    decay = float(i131.decay_factor(times["tew_scan_h"] - times["spheres_reference_h"]))
    activity = calibration_objects.activity_map_MBq(grid, water, config.background_MBq_per_ml * decay, spheres,
                                                    config.sphere_MBq_per_ml * decay)
    total = float(activity.sum())
    survival = camera.survival_fraction(total)
    views = projection.parallel_projections(grid.bin_to_spect(activity), config.number_of_views)
    primary = np.stack([camera_module.gaussian_blur(v, camera.fwhm_mm, grid.spect_voxel_mm) for v in views])
    primary *= camera.calibration_factor_cps_per_MBq * survival * config.frame_duration_s
    scatter_peak = tew.SCATTER_TO_PRIMARY * np.stack(
        [camera_module.gaussian_blur(v, tew.SCATTER_FWHM_MM, grid.spect_voxel_mm) for v in primary])
    windows = tew.tew_windows()
    primary_fraction = tew.primary_fractions(windows)
    scatter_fraction = tew.scatter_fractions(windows)
    expected = np.stack([primary * (primary_fraction[w] / primary_fraction[0]) + scatter_peak * scatter_fraction[w]
                         for w in range(3)])
    counts = camera_module.poisson_counts(expected, rng)
    estimate = tew.tew_scatter_estimate(expected[0].sum(), expected[1].sum(), expected[2].sum(), windows)
    truth = {
        "activity_at_scan_MBq": total, "dead_time_survival_fraction": survival,
        "windows_keV": [[w.name, w.lower_keV, w.upper_keV] for w in windows],
        "photopeak_primary_counts": float(primary.sum()), "photopeak_scatter_counts": float(scatter_peak.sum()),
        "tew_scatter_estimate_noise_free": float(estimate),
        "tew_scatter_estimate_relative_error": float(estimate / scatter_peak.sum() - 1.0),
        "frame_duration_s": config.frame_duration_s, "number_of_views": config.number_of_views,
        "spectrum_model": tew.__doc__.strip()}
    return {"counts": counts, "expected": expected, "windows": windows}, truth


def _deadtime_series(config, water, rng):
    grid, camera = config.grid, config.camera
    times = config.session
    planar_shape = water.sum(axis=1)
    planar_shape = projection.bin_2d(camera_module.gaussian_blur(planar_shape, camera.fwhm_mm, grid.fine_voxel_mm),
                                     grid.fine_factor)
    planar_shape /= planar_shape.sum()
    steps, images = [], []
    for n, activity_MBq in enumerate(config.deadtime_activities_MBq):
        incident = camera.incident_rate_cps(activity_MBq)
        observed = camera.observed_rate_cps(incident)
        counts = camera_module.poisson_counts(planar_shape * observed * config.deadtime_frame_s, rng)
        images.append(counts)
        steps.append({"file": f"step_{n + 1:02d}.dcm", "activity_MBq": float(activity_MBq),
                      "datetime": config.at(times["deadtime_start_h"] + n * times["deadtime_step_h"]),
                      "incident_cps": incident, "expected_observed_cps": observed,
                      "observed_cps": float(counts.sum() / config.deadtime_frame_s)})
    truth = {"model": "paralysable, C_obs = C_inc exp(-C_inc tau) (EANM eq. 6), C_inc = Q x activity",
             "frame_duration_s": config.deadtime_frame_s,
             "steps": [{k: (v.isoformat() if isinstance(v, datetime.datetime) else v) for k, v in s.items()}
                       for s in steps]}
    return {"images": images, "steps": steps}, truth


def _chang_pair(config, water, duration_s, rng):
    grid, camera, cylinder = config.grid, config.camera, config.cylinder
    times = config.session
    activity_MBq = config.chang_activity_MBq * float(i131.decay_factor(times["chang_scan_h"] - times["chang_reference_h"]))
    concentration = activity_MBq / cylinder.volume_ml
    activity = water * concentration * grid.fine_voxel_mm ** 3 / 1000.0
    j, i = np.indices(grid.fine_shape[1:])
    plane = grid.fine_volume(np.zeros((1, 1, 1))).ras_of_ijk(np.stack([i, j, np.zeros_like(i)], axis=-1))
    factor = attenuation.mean_attenuation_factor(plane[..., 0], plane[..., 1], cylinder.radius_mm,
                                                 attenuation.MU_WATER_364KEV_PER_CM)
    survival = camera.survival_fraction(float(activity.sum()))
    scale = camera.calibration_factor_cps_per_MBq * survival * duration_s
    nac = grid.bin_to_spect(camera_module.gaussian_blur(activity * factor[np.newaxis] * scale, camera.fwhm_mm,
                                                        grid.fine_voxel_mm))
    windows = tew.tew_windows()
    lower_scale = scale * tew.SCATTER_TO_PRIMARY * tew.scatter_fractions(windows)[1]
    lower = grid.bin_to_spect(camera_module.gaussian_blur(activity * lower_scale, LOWER_WINDOW_FWHM_MM,
                                                          grid.fine_voxel_mm))
    spect_voxel_ml = grid.spect_voxel_mm ** 3 / 1000.0
    centre = tuple(n // 2 for n in grid.spect_shape)
    truth = {"mu_per_cm": attenuation.MU_WATER_364KEV_PER_CM, "activity_at_scan_MBq": activity_MBq,
             "body_outline": {"shape": "cylinder, axis along z through the RAS origin",
                              "radius_mm": cylinder.radius_mm, "height_mm": cylinder.inner_height_mm},
             "attenuation_free_mean_counts_per_voxel": scale * concentration * spect_voxel_ml,
             "expected_nac_counts_at_centre_voxel": float(nac[centre]),
             "centre_attenuation_factor": float(attenuation.mean_attenuation_factor(0.0, 0.0, cylinder.radius_mm)),
             "dead_time_survival_fraction": survival,
             "model": "NAC voxel = Q x survival x duration x activity x mean over 128 angles of exp(-mu L) (L: path "
                      "to the cylinder surface in the transaxial plane), blurred with the camera PSF; the lower "
                      "window image is the activity blurred with a 40 mm FWHM Gaussian times the lower-window "
                      "scatter yield."}
    return {"nac": camera_module.poisson_counts(nac, rng), "lower": camera_module.poisson_counts(lower, rng),
            "nac_expected": nac}, truth


def _phantom_record(config, inserts):
    """phantom.json: what the physicist recorded (inputs, not answers)."""
    times = config.session
    camera = config.camera
    return {
        "radionuclide": "I-131",
        "camera": {"manufacturer": "MIBGDosimetry digital phantom", "model": camera.manufacturer_model,
                   "collimator": camera.collimator, "crystal_mm": camera.crystal_mm},
        "jaszczak": {"series_dir": "jaszczak", "file": "spect.dcm",
                     "inner_diameter_mm": config.cylinder.inner_diameter_mm,
                     "inner_height_mm": config.cylinder.inner_height_mm, "volume_ml": config.cylinder.volume_ml,
                     "activity_MBq": config.jaszczak_activity_MBq,
                     "reference_datetime": config.at(times["jaszczak_reference_h"]).isoformat()},
        "spheres": {"series_dir": "spheres", "file": "spect.dcm",
                    "reference_datetime": config.at(times["spheres_reference_h"]).isoformat(),
                    "sphere_concentration_MBq_per_ml": config.sphere_MBq_per_ml,
                    "background_concentration_MBq_per_ml": config.background_MBq_per_ml,
                    "inserts": [{"name": ins.name, "diameter_mm": ins.diameter_mm, "volume_ml": ins.volume_ml,
                                 "centre_ras_mm": list(ins.centre_ras_mm)} for ins in inserts]},
        "deadtime": {"series_dir": "deadtime", "steps": []},
        "osem": {"series_dir": "osem", "reconstructions": []},
        "tew": {"series_dir": "tew", "file": "projections.dcm"},
        "chang": {"series_dir": "chang", "mu_per_cm": attenuation.MU_WATER_364KEV_PER_CM,
                  "nac_file": "nac.dcm", "lower_window_file": "lower_window.dcm"},
    }


def write_calibration_set(out_dir, config=CalibrationConfig()):
    """Simulate and write the calibration set into ``out_dir`` (must not exist or be empty;
    written completely or not at all). Returns a summary dict."""
    from MIBGDosimetryLib.dicomio import common, nm

    inserts, images, truth = simulate_calibration(config)
    grid, camera, times = config.grid, config.camera, config.session
    record = _phantom_record(config, inserts)
    spacing = (grid.spect_voxel_mm, grid.spect_voxel_mm)

    def study(description, start):
        return common.StudyInfo(patient_name="MIBG^CalibrationPhantom", patient_id="MIBG-CALIBRATION",
                                study_datetime=start, study_description=description, study_id="CAL")

    def acquisition(start, frame_s, windows, counts=None, reference=None, activity_MBq=0.0):
        return nm.NMAcquisition(
            acquisition_datetime=start, frame_duration_ms=frame_s * 1000.0,
            administration_datetime=reference or start, administered_activity_Bq=activity_MBq * 1.0e6,
            half_life_s=i131.HALF_LIFE_H * 3600.0, energy_windows=windows, counts_accumulated=counts,
            number_of_views=config.number_of_views, manufacturer_model=camera.manufacturer_model,
            collimator_name=camera.collimator, collimator_type=camera.collimator_type)

    peak = [nm.photopeak_window()]
    with common.atomic_folder(out_dir) as folder:
        start = config.at(times["jaszczak_scan_h"])
        counts = images["jaszczak"]
        nm.write_nm_tomo(grid.spect_volume(counts), os.path.join(folder, "jaszczak", "spect.dcm"),
                         study("Jaszczak cylinder", start),
                         acquisition(start, config.frame_duration_s, peak, int(counts.sum()),
                                     config.at(times["jaszczak_reference_h"]), config.jaszczak_activity_MBq),
                         series_description="Jaszczak uniform cylinder")

        start = config.at(times["spheres_scan_h"])
        sphere_study = study("Sphere phantom", start)
        reference = config.at(times["spheres_reference_h"])
        counts = images["spheres"]
        nm.write_nm_tomo(grid.spect_volume(counts), os.path.join(folder, "spheres", "spect.dcm"), sphere_study,
                         acquisition(start, config.frame_duration_s, peak, int(counts.sum()), reference),
                         series_description="Sphere inserts")
        for n, (updates, recon) in enumerate(images["osem"].items()):
            iterations, subsets = osem.iterations_and_subsets(updates)
            name = f"osem_{updates:03d}.dcm"
            nm.write_nm_tomo(grid.spect_volume(recon), os.path.join(folder, "osem", name), sphere_study,
                             acquisition(start, config.frame_duration_s, peak, int(images["spheres"].sum()),
                                         reference),
                             series_number=10 + n, series_description=f"Sphere inserts OSEM {iterations}i{subsets}s",
                             reconstruction_description=f"OSEM {iterations}i{subsets}s")
            record["osem"]["reconstructions"].append({"file": name, "iterations": iterations, "subsets": subsets,
                                                      "updates": int(updates)})

        start = config.at(times["tew_scan_h"])
        tew_counts = images["tew"]["counts"]
        nm.write_nm_projections(tew_counts, spacing, os.path.join(folder, "tew", "projections.dcm"),
                                study("Sphere phantom TEW", start),
                                acquisition(start, config.frame_duration_s, images["tew"]["windows"],
                                            int(tew_counts.sum()), reference),
                                series_description="Sphere phantom projections, three windows")

        lines = ["activity_MBq,observed_cps"]
        for step, image in zip(images["deadtime"]["steps"], images["deadtime"]["images"]):
            nm.write_nm_static(image, spacing, os.path.join(folder, "deadtime", step["file"]),
                               study("Dead time", step["datetime"]),
                               acquisition(step["datetime"], config.deadtime_frame_s, peak, int(image.sum()),
                                           step["datetime"], step["activity_MBq"]),
                               series_description=f"Dead time {step['activity_MBq']:g} MBq")
            record["deadtime"]["steps"].append({"file": step["file"], "activity_MBq": step["activity_MBq"],
                                                "reference_datetime": step["datetime"].isoformat()})
            lines.append(f"{step['activity_MBq']:.6g},{step['observed_cps']:.6f}")
        with open(os.path.join(folder, "deadtime", "series.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")

        start = config.at(times["chang_scan_h"])
        chang_study = study("Chang attenuation", start)
        reference = config.at(times["chang_reference_h"])
        nac = images["chang"]["nac"]
        nm.write_nm_tomo(grid.spect_volume(nac), os.path.join(folder, "chang", "nac.dcm"), chang_study,
                         acquisition(start, config.frame_duration_s, peak, int(nac.sum()), reference,
                                     config.chang_activity_MBq),
                         series_description="Uniform cylinder, no attenuation correction",
                         reconstruction_description="OSEM NAC")
        lower = images["chang"]["lower"]
        nm.write_nm_tomo(grid.spect_volume(lower), os.path.join(folder, "chang", "lower_window.dcm"), chang_study,
                         acquisition(start, config.frame_duration_s, [tew.tew_windows()[1]], int(lower.sum()),
                                     reference, config.chang_activity_MBq),
                         series_number=3, series_description="Uniform cylinder, lower scatter window",
                         reconstruction_description="OSEM NAC")

        with open(os.path.join(folder, "phantom.json"), "w") as f:
            json.dump(record, f, indent=2)
        with open(os.path.join(folder, "truth.json"), "w") as f:
            json.dump(truth, f, indent=2)
    return {"kind": "calibration", "out": os.path.abspath(out_dir), "seed": config.seed,
            "series": {name: record[name]["series_dir"] for name in
                       ("jaszczak", "spheres", "deadtime", "osem", "tew", "chang")},
            "inserts": [ins.name for ins in inserts], "phantom": "phantom.json", "truth": "truth.json"}
