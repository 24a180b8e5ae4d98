"""The calibration acquisitions imaged with the realistic camera and reconstructed exactly like the
patient (:func:`.patient_study.reconstruct_photopeak`), written in the layout of
:func:`MIBGDosimetryLib.phantoms.calibration.write_calibration_set` (same ``phantom.json``)::

    OUT/jaszczak/spect.dcm        uniform 20 cm water cylinder, OSEM
    OUT/spheres/spect.dcm         sphere inserts in a warm background, OSEM
    OUT/osem/osem_NNN.dcm         the same sphere acquisition after 1, 2, 4, 8 ... iterations
    OUT/tew/projections.dcm       the sphere acquisition's projections in the three windows
    OUT/deadtime/step_NN.dcm      planar views of the water cylinder at increasing activity
    OUT/deadtime/series.csv       activity_MBq,observed_cps of every step
    OUT/chang/nac.dcm             a uniform cylinder reconstructed without attenuation correction
    OUT/chang/lower_window.dcm    its lower-window reconstruction
    OUT/truth.json                the answers

The truth is the camera's: Q is the photopeak sensitivity without attenuation and body scatter
(:attr:`.acquisition.RealisticCamera.calibration_factor_cps_per_MBq`); tau is the photopeak-window
dead time equivalent to the detector's in the dead-time geometry. Recovery coefficients and
thresholds are properties of the reconstruction, not of the phantom, and have no truth here.
"""

import dataclasses
import datetime
import json
import os

import numpy as np

from MIBGDosimetryLib.phantoms import calibration, calibration_objects
from MIBGDosimetryLib.phantoms.grid import PhantomGrid
from MIBGDosimetryLib.phantoms.realistic import (acquisition, attenuation_map, collimator, osem, patient_study,
                                                 projector, spectrum)
from MIBGDosimetryLib.physics import i131


@dataclasses.dataclass(frozen=True)
class RealisticCalibrationConfig:
    """The image-domain calibration set's geometry, activities and times (``base``), imaged with
    the realistic camera and reconstructed with ``iterations`` x ``subsets`` OSEM."""

    base: calibration.CalibrationConfig = calibration.CalibrationConfig(grid=PhantomGrid(64, 64, 4.42, 2),
                                                                        osem_updates=(8, 16, 32, 64))
    camera: acquisition.RealisticCamera = acquisition.RealisticCamera()
    iterations: int = 4
    subsets: int = 8
    #: Background concentrations (MBq/mL at the spheres' reference time) of further acquisitions of the
    #: sphere phantom, for the threshold model's contrast axis: the inserts keep their concentration,
    #: so 0.0025 gives 32:1 beside the 8:1 of ``base``.
    threshold_backgrounds_MBq_per_ml: tuple = (0.0025,)
    #: Their frames last this many times the others': with a quarter of the background activity the
    #: small inserts' fractions would otherwise scatter by 0.05 between noise realisations.
    threshold_frame_factor: float = 4.0

    def __post_init__(self):
        if any(not 0 < b < self.base.sphere_MBq_per_ml for b in self.threshold_backgrounds_MBq_per_ml):
            raise ValueError("The threshold phantoms' background concentrations must be positive and below the "
                             f"spheres' {self.base.sphere_MBq_per_ml} MBq/mL.")
        for updates in self.base.osem_updates:
            if updates % self.subsets:
                raise ValueError(f"Every OSEM update number must be a multiple of the {self.subsets} subsets, "
                                 f"got {updates}.")
        if self.iterations * self.subsets not in self.base.osem_updates:
            raise ValueError(f"The OSEM series must include the clinical {self.iterations * self.subsets} updates.")


def _cylinder_ct_hu(water):
    """CT numbers of the water cylinder as its CT shows them (water 0 HU, air -1000 HU)."""
    return -1000.0 + 1000.0 * water


def simulate_calibration(config=RealisticCalibrationConfig(), log=None):
    """All calibration images and the truth, in memory: (inserts, images, truth) with the image
    keys of :func:`MIBGDosimetryLib.phantoms.calibration.simulate_calibration` plus the counts
    accumulated in each acquisition (``counts_accumulated``)."""
    say = log or (lambda message: None)
    base, camera = config.base, config.camera
    grid, cylinder = base.grid, base.cylinder
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(base.seed).spawn(5)]
    times = base.session
    n_views, frame_s = base.number_of_views, base.frame_duration_s
    duration_s = n_views * frame_s
    fine = grid.fine_voxel_mm
    inserts = calibration_objects.helix_inserts(base.sphere_diameters_mm, cylinder)
    water, spheres = calibration_objects.sphere_phantom_occupancy(grid, cylinder, inserts)
    true_mu = (water * attenuation_map.WATER_MU_PER_MM).astype(np.float32)
    ct_mu = patient_study.ct_mu_on_spect_grid(grid, _cylinder_ct_hu(water))
    images, accumulated = {}, {}
    truth = {"generator": "realistic projection and OSEM model (MIBGDosimetryLib.phantoms.realistic)",
             "Q_cps_per_MBq": camera.calibration_factor_cps_per_MBq,
             "Q_definition": "photopeak-window counts per second per MBq of a source without attenuation or body "
                             "scatter (geometric collimator response plus septal penetration)",
             "detector_dead_time_s": camera.dead_time_s, "fwhm_mm": float(collimator.fwhm_mm(100.0)),
             "fwhm_definition": "collimator-detector FWHM at 100 mm from the collimator face"}

    say("Uniform cylinder: projections per MBq")
    unit = (water / water.sum()).astype(np.float32)
    cylinder_rates, cylinder_parts = acquisition.noise_free_views(unit, true_mu, fine, camera, n_views,
                                                                  grid.fine_factor)

    say("Jaszczak cylinder: acquisition and OSEM")
    jaszczak_MBq = base.jaszczak_activity_MBq * float(i131.decay_factor(times["jaszczak_scan_h"]))
    acq = acquisition.record_counts(cylinder_rates * jaszczak_MBq, cylinder_parts * jaszczak_MBq, camera,
                                    frame_s, rngs[0])
    images["jaszczak"] = _reconstruct(acq, ct_mu, config)[config.iterations]
    accumulated["jaszczak"] = acq.photopeak_counts
    truth["jaszczak"] = {"activity_at_scan_MBq": jaszczak_MBq,
                         "concentration_at_scan_MBq_per_ml": jaszczak_MBq / cylinder.volume_ml,
                         "dead_time_survival_fraction": acq.observed_photopeak_cps / acq.incident_photopeak_cps,
                         "duration_s": duration_s,
                         **patient_study.acquisition_record(acq, camera)}

    say("Sphere phantom: acquisition and OSEM series")
    decay = float(i131.decay_factor(times["spheres_scan_h"] - times["spheres_reference_h"]))
    sphere_c, background_c = base.sphere_MBq_per_ml * decay, base.background_MBq_per_ml * decay
    activity = calibration_objects.activity_map_MBq(grid, water, background_c, spheres, sphere_c).astype(np.float32)
    acq = acquisition.acquire(activity, true_mu, fine, camera, n_views, frame_s, rngs[1], grid.fine_factor)
    series = _reconstruct(acq, ct_mu, config, [u // config.subsets for u in base.osem_updates])
    images["spheres"] = series[config.iterations]
    images["osem"] = {iterations * config.subsets: image for iterations, image in series.items()}
    accumulated["spheres"] = acq.photopeak_counts
    truth["spheres"] = {
        "sphere_concentration_at_scan_MBq_per_ml": sphere_c, "background_concentration_at_scan_MBq_per_ml":
            background_c, "dead_time_survival_fraction": acq.observed_photopeak_cps / acq.incident_photopeak_cps,
        "duration_s": duration_s, "insert_activity_at_scan_MBq": {ins.name: sphere_c * ins.volume_ml for ins in inserts},
        **patient_study.acquisition_record(acq, camera)}
    truth["osem"] = {"iterations_saved": sorted(series), "subsets": config.subsets,
                     "clinical_iterations": config.iterations}

    images["threshold_spheres"], truth["threshold_spheres"] = [], []
    for n, (background, rng) in enumerate(zip(config.threshold_backgrounds_MBq_per_ml,
                                              np.random.SeedSequence(base.seed).spawn(5)[4].spawn(
                                                  len(config.threshold_backgrounds_MBq_per_ml)))):
        say(f"Sphere phantom at {base.sphere_MBq_per_ml / background:g}:1: acquisition and OSEM")
        hours = _threshold_scan_h(base, n)
        decay_n = float(i131.decay_factor(hours - times["spheres_reference_h"]))
        activity_n = calibration_objects.activity_map_MBq(grid, water, background * decay_n, spheres,
                                                          base.sphere_MBq_per_ml * decay_n).astype(np.float32)
        acq_n = acquisition.acquire(activity_n, true_mu, fine, camera, n_views, frame_s * config.threshold_frame_factor,
                                    np.random.default_rng(rng), grid.fine_factor)
        images["threshold_spheres"].append({"image": _reconstruct(acq_n, ct_mu, config)[config.iterations],
                                            "counts": acq_n.photopeak_counts, "background_MBq_per_ml": background})
        truth["threshold_spheres"].append({"background_concentration_MBq_per_ml": background,
                                           "concentration_ratio": base.sphere_MBq_per_ml / background,
                                           "scan_hours_after_reference": hours})

    windows = spectrum.windows()
    estimate = (windows[0].width_keV / 2.0 * (acq.expected[1].sum() / windows[1].width_keV
                                              + acq.expected[2].sum() / windows[2].width_keV))
    true_scatter = acq.photopeak_scatter_counts + acq.photopeak_downscatter_counts
    images["tew"] = {"counts": acq.counts, "expected": acq.expected, "windows": windows}
    accumulated["tew"] = int(acq.counts.sum())
    truth["tew"] = {"activity_at_scan_MBq": float(activity.sum()),
                    "windows_keV": [[w.name, w.lower_keV, w.upper_keV] for w in windows],
                    "photopeak_primary_counts": acq.photopeak_geometric_counts + acq.photopeak_penetration_counts,
                    "photopeak_scatter_counts": true_scatter,
                    "tew_scatter_estimate_noise_free": float(estimate),
                    "tew_scatter_estimate_relative_error": float(estimate / true_scatter - 1.0),
                    "frame_duration_s": frame_s, "number_of_views": n_views,
                    "note": "the projections are those of the sphere acquisition (spheres/spect.dcm)"}

    say("Dead-time series and Chang pair")
    images["deadtime"], truth["deadtime"] = _deadtime_series(config, cylinder_rates, rngs[2])
    images["chang"], truth["chang"], accumulated["chang"] = _chang_pair(config, cylinder_rates, cylinder_parts,
                                                                        rngs[3])
    images["counts_accumulated"] = accumulated
    return inserts, images, truth


def _reconstruct(acq, ct_mu, config, save_after=None):
    base = config.base
    return patient_study.reconstruct_photopeak(acq, ct_mu, base.grid.spect_voxel_mm, base.number_of_views,
                                               config.camera, config.iterations, config.subsets, save_after)


def _deadtime_series(config, cylinder_rates, rng):
    """Planar views (view 0) of the water cylinder: paralysable dead time on the detected rate."""
    base, camera = config.base, config.camera
    view = cylinder_rates[:, 0]
    window_rate_per_MBq = float(view.sum())
    peak_rate_per_MBq = float(view[0].sum())
    ratio = camera.spectrum_to_windows_ratio * window_rate_per_MBq / peak_rate_per_MBq
    steps, images = [], []
    for n, activity_MBq in enumerate(base.deadtime_activities_MBq):
        detected = camera.spectrum_to_windows_ratio * window_rate_per_MBq * activity_MBq
        survival = float(np.exp(-detected * camera.dead_time_s))
        counts = rng.poisson(view[0] * activity_MBq * survival * base.deadtime_frame_s).astype(np.float64)
        images.append(counts)
        at = base.at(base.session["deadtime_start_h"] + n * base.session["deadtime_step_h"])
        steps.append({"file": f"step_{n + 1:02d}.dcm", "activity_MBq": float(activity_MBq), "datetime": at,
                      "incident_cps": peak_rate_per_MBq * activity_MBq,
                      "expected_observed_cps": peak_rate_per_MBq * activity_MBq * survival,
                      "observed_cps": float(counts.sum() / base.deadtime_frame_s)})
    truth = {"model": "paralysable on the detected rate: C_det = k x (rate in the three windows), every window keeps "
                      "exp(-C_det tau_detector); in photopeak terms C_obs = C_inc exp(-C_inc tau) with tau = "
                      "tau_detector x C_det / C_inc",
             "tau_s": camera.dead_time_s * ratio, "frame_duration_s": base.deadtime_frame_s,
             "photopeak_cps_per_MBq": peak_rate_per_MBq,
             "steps": [{k: (v.isoformat() if isinstance(v, datetime.datetime) else v) for k, v in s.items()}
                       for s in steps]}
    return {"images": images, "steps": steps}, truth


def _chang_pair(config, cylinder_rates, cylinder_parts, rng):
    """A uniform cylinder reconstructed without attenuation correction, and its lower window."""
    base, camera = config.base, config.camera
    grid, cylinder = base.grid, base.cylinder
    times = base.session
    activity_MBq = base.chang_activity_MBq * float(i131.decay_factor(times["chang_scan_h"] - times["chang_reference_h"]))
    acq = acquisition.record_counts(cylinder_rates * activity_MBq, cylinder_parts * activity_MBq, camera,
                                    base.frame_duration_s, rng)
    model = projector.SystemModel(np.zeros(grid.spect_shape, dtype=np.float32), grid.spect_voxel_mm,
                                  base.number_of_views, camera.orbit_radius_mm)
    nac = osem.reconstruct(acq.counts[0], model, config.iterations, config.subsets)[config.iterations]
    lower = osem.reconstruct(acq.counts[1], model, config.iterations, config.subsets)[config.iterations]
    survival = acq.observed_photopeak_cps / acq.incident_photopeak_cps
    truth = {"mu_per_cm": attenuation_map.MASS_ATTENUATION_WATER_CM2_PER_G, "activity_at_scan_MBq": activity_MBq,
             "body_outline": {"shape": "cylinder, axis along z through the RAS origin",
                              "radius_mm": cylinder.radius_mm, "height_mm": cylinder.inner_height_mm},
             "attenuation_free_mean_counts_per_voxel": camera.calibration_factor_cps_per_MBq * survival
             * base.number_of_views * base.frame_duration_s * activity_MBq / cylinder.volume_ml
             * grid.spect_voxel_mm ** 3 / 1000.0,
             "dead_time_survival_fraction": survival,
             "model": "OSEM of the photopeak (and lower-window) projections with neither attenuation nor scatter "
                      "correction, same collimator model"}
    return {"nac": nac, "lower": lower}, truth, acq.photopeak_counts


def _threshold_scan_h(base, n):
    """Scan time (h after the calibration's reference) of the n-th further sphere acquisition."""
    return base.session["chang_scan_h"] + 1.0 + n


def _threshold_folder(base, background):
    return f"spheres_{base.sphere_MBq_per_ml / background:g}to1"


def write_realistic_calibration_set(out_dir, config=RealisticCalibrationConfig(), log=None):
    """Simulate and write the realistic calibration set into ``out_dir`` (must not exist or be
    empty; written completely or not at all). Returns a summary dict."""
    from MIBGDosimetryLib.dicomio import common, nm

    inserts, images, truth = simulate_calibration(config, log)
    base, camera = config.base, config.camera
    grid, times = base.grid, base.session
    record = calibration._phantom_record(base, inserts)
    record["camera"].update({"model": camera.manufacturer_model, "collimator": camera.collimator})
    spacing = (grid.spect_voxel_mm, grid.spect_voxel_mm)
    accumulated = images["counts_accumulated"]
    recon = f"OSEM {config.iterations}i{config.subsets}s ACSC"

    def study(description, start):
        return common.StudyInfo(patient_name="MIBG^RealisticCalibration", patient_id="MIBG-CALIBRATION-R",
                                study_datetime=start, study_description=description, study_id="CAL")

    def acquisition_info(start, frame_s, windows, counts, reference=None, activity_MBq=0.0):
        return nm.NMAcquisition(
            acquisition_datetime=start, frame_duration_ms=frame_s * 1000.0,
            administration_datetime=reference or start, administered_activity_Bq=activity_MBq * 1.0e6,
            half_life_s=i131.HALF_LIFE_H * 3600.0, energy_windows=windows, counts_accumulated=int(counts),
            number_of_views=base.number_of_views, radial_position_mm=camera.orbit_radius_mm,
            manufacturer_model=camera.manufacturer_model, collimator_name=camera.collimator,
            collimator_type=camera.collimator_type)

    peak = [nm.photopeak_window()]
    with common.atomic_folder(out_dir) as folder:
        start = base.at(times["jaszczak_scan_h"])
        nm.write_nm_tomo(grid.spect_volume(images["jaszczak"]), os.path.join(folder, "jaszczak", "spect.dcm"),
                         study("Jaszczak cylinder", start),
                         acquisition_info(start, base.frame_duration_s, peak, accumulated["jaszczak"],
                                          base.at(times["jaszczak_reference_h"]), base.jaszczak_activity_MBq),
                         series_description="Jaszczak uniform cylinder", reconstruction_description=recon)

        start = base.at(times["spheres_scan_h"])
        sphere_study = study("Sphere phantom", start)
        reference = base.at(times["spheres_reference_h"])
        sphere_acquisition = acquisition_info(start, base.frame_duration_s, peak, accumulated["spheres"], reference)
        nm.write_nm_tomo(grid.spect_volume(images["spheres"]), os.path.join(folder, "spheres", "spect.dcm"),
                         sphere_study, sphere_acquisition, series_description="Sphere inserts",
                         reconstruction_description=recon)
        for n, (updates, image) in enumerate(sorted(images["osem"].items())):
            iterations = updates // config.subsets
            name = f"osem_{updates:03d}.dcm"
            nm.write_nm_tomo(grid.spect_volume(image), os.path.join(folder, "osem", name), sphere_study,
                             sphere_acquisition, series_number=10 + n,
                             series_description=f"Sphere inserts OSEM {iterations}i{config.subsets}s",
                             reconstruction_description=f"OSEM {iterations}i{config.subsets}s ACSC")
            record["osem"]["reconstructions"].append({"file": name, "iterations": iterations,
                                                      "subsets": config.subsets, "updates": int(updates)})

        record["threshold_spheres"] = []
        for n, item in enumerate(images["threshold_spheres"]):
            folder_name = _threshold_folder(base, item["background_MBq_per_ml"])
            start_n = base.at(_threshold_scan_h(base, n))
            nm.write_nm_tomo(grid.spect_volume(item["image"]), os.path.join(folder, folder_name, "spect.dcm"),
                             study("Sphere phantom", start_n),
                             acquisition_info(start_n, base.frame_duration_s * config.threshold_frame_factor, peak,
                                              item["counts"], reference),
                             series_number=30 + n, series_description=f"Sphere inserts {folder_name[8:]}",
                             reconstruction_description=recon)
            record["threshold_spheres"].append({**record["spheres"], "series_dir": folder_name,
                                                "background_concentration_MBq_per_ml": item["background_MBq_per_ml"]})

        tew_counts = images["tew"]["counts"]
        nm.write_nm_projections(tew_counts, spacing, os.path.join(folder, "tew", "projections.dcm"),
                                study("Sphere phantom TEW", start),
                                acquisition_info(start, base.frame_duration_s, images["tew"]["windows"],
                                                 accumulated["tew"], reference),
                                series_description="Sphere phantom projections, three windows")

        lines = ["activity_MBq,observed_cps"]
        for step, image in zip(images["deadtime"]["steps"], images["deadtime"]["images"]):
            nm.write_nm_static(image, spacing, os.path.join(folder, "deadtime", step["file"]),
                               study("Dead time", step["datetime"]),
                               acquisition_info(step["datetime"], base.deadtime_frame_s, peak, image.sum(),
                                                step["datetime"], step["activity_MBq"]),
                               series_description=f"Dead time {step['activity_MBq']:g} MBq")
            record["deadtime"]["steps"].append({"file": step["file"], "activity_MBq": step["activity_MBq"],
                                                "reference_datetime": step["datetime"].isoformat()})
            lines.append(f"{step['activity_MBq']:.6g},{step['observed_cps']:.6f}")
        with open(os.path.join(folder, "deadtime", "series.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")

        start = base.at(times["chang_scan_h"])
        chang_study = study("Chang attenuation", start)
        reference = base.at(times["chang_reference_h"])
        nm.write_nm_tomo(grid.spect_volume(images["chang"]["nac"]), os.path.join(folder, "chang", "nac.dcm"),
                         chang_study, acquisition_info(start, base.frame_duration_s, peak, accumulated["chang"],
                                                       reference, base.chang_activity_MBq),
                         series_description="Uniform cylinder, no attenuation correction",
                         reconstruction_description="OSEM NAC")
        nm.write_nm_tomo(grid.spect_volume(images["chang"]["lower"]), os.path.join(folder, "chang", "lower_window.dcm"),
                         chang_study, acquisition_info(start, base.frame_duration_s, [spectrum.windows()[1]],
                                                       images["chang"]["lower"].sum(), reference,
                                                       base.chang_activity_MBq),
                         series_number=3, series_description="Uniform cylinder, lower scatter window",
                         reconstruction_description="OSEM NAC")

        with open(os.path.join(folder, "phantom.json"), "w") as f:
            json.dump(record, f, indent=2)
        truth["tau_s"] = truth["deadtime"]["tau_s"]
        with open(os.path.join(folder, "truth.json"), "w") as f:
            json.dump(truth, f, indent=2)
    return {"kind": "calibration", "generator": "realistic", "out": os.path.abspath(out_dir), "seed": base.seed,
            "series": {name: record[name]["series_dir"] for name in
                       ("jaszczak", "spheres", "deadtime", "osem", "tew", "chang")},
            "inserts": [ins.name for ins in inserts], "phantom": "phantom.json", "truth": "truth.json"}
