"""The realistic patient study: the child of :mod:`MIBGDosimetryLib.phantoms.anatomy` with lesions of
several shapes (:mod:`.lesions`), imaged at every time point by the projection camera
(:mod:`.acquisition`) and reconstructed by OSEM (:mod:`.osem`), written in the layout of
:func:`MIBGDosimetryLib.phantoms.patient.write_patient_study`::

    OUT/tp<N>/ct/ct_<k>.dcm   CT Image Storage, one file per slice (HU)
    OUT/tp<N>/spect.dcm       NM Image Storage, OSEM reconstruction (counts)
    OUT/segmentation.dcm      DICOM SEG of the organs on the reference CT (tp1)
    OUT/seeds.mrk.json        one control point per lesion (RAS, reference CT frame)
    OUT/truth.json            the answers

The truth comes from the analytic phantom: activities and time-integrated activities from each
structure's kinetics, volumes from its mask on the fine grid, mean doses from
:mod:`MIBGDosimetryLib.phantoms.truth_dose` with a kernel reaching far beyond the analysis' one.
No reconstruction enters the truth.
"""

import dataclasses
import datetime
import json
import os

import numpy as np

from MIBGDosimetryLib.phantoms import patient, repositioning, truth_dose
from MIBGDosimetryLib.phantoms.grid import PhantomGrid
from MIBGDosimetryLib.phantoms.realistic import acquisition, attenuation_map, collimator, lesions, osem, projector
from MIBGDosimetryLib.phantoms.realistic import spectrum
from MIBGDosimetryLib.physics import i131

#: Reach of the dose kernel of the truth (mm): all but a negligible part of the 131I photon energy
#: absorbed in a child's trunk is deposited within it, and it is far beyond the analysis' kernel.
TRUTH_DOSE_REACH_MM = 100.0


@dataclasses.dataclass(frozen=True)
class RealisticPatientConfig:
    """Everything that defines a realistic patient study; the same config gives the same files."""

    seed: int = 1
    administered_activity_MBq: float = 7400.0
    timepoints_h: tuple = (21.0, 45.0, 69.0, 93.0, 141.0)
    lesions: tuple = lesions.default_lesions()
    grid: PhantomGrid = PhantomGrid(64, 88, 4.42, 2)
    camera: acquisition.RealisticCamera = acquisition.RealisticCamera()
    number_of_views: int = 60
    #: Multiplies every frame duration: below 1 gives noisier images, above 1 smoother ones.
    count_scale: float = 1.0
    iterations: int = 4
    subsets: int = 8
    ct_noise_hu: float = 10.0
    ct_ctdivol_mGy: float = 1.5
    administration_datetime: datetime.datetime = patient.ADMINISTRATION_DATETIME
    #: Patients that differ beyond noise and position, as in the image-domain phantom
    #: (:mod:`MIBGDosimetryLib.phantoms.patient`): the uptake half-lives spread log-normally by this
    #: geometric SD, and the organ outlines of the SEG moved outwards by a normal error of this SD (mm).
    uptake_half_life_gsd: float = 1.0
    outline_error_sd_mm: float = 0.0

    def __post_init__(self):
        times = list(self.timepoints_h)
        if len(times) < 1 or any(t <= 0 for t in times) or times != sorted(set(times)):
            raise ValueError(f"Time points must be positive, distinct and increasing, got {times} h.")
        if self.count_scale <= 0:
            raise ValueError(f"The count scale must be positive, got {self.count_scale}.")
        if not self.uptake_half_life_gsd >= 1.0 or not self.outline_error_sd_mm >= 0.0:
            raise ValueError("The uptake half-life spread must be at least 1 and the outline error SD not negative, "
                             f"got {self.uptake_half_life_gsd} and {self.outline_error_sd_mm} mm.")
        if self.iterations < 1 or not 1 <= self.subsets <= self.number_of_views:
            raise ValueError(f"OSEM needs at least one iteration and 1-{self.number_of_views} subsets, got "
                             f"{self.iterations} iterations and {self.subsets} subsets.")
        for lesion in self.lesions:
            if lesion.clearance_half_life_h >= i131.HALF_LIFE_H:
                raise ValueError(f"The effective clearance half-life of {lesion.name} ({lesion.clearance_half_life_h} "
                                 f"h) must be shorter than the physical half-life of 131I.")

    def frame_duration_at(self, index):
        return patient.default_frame_duration_s(self.timepoints_h[index]) * self.count_scale


def reconstruct_photopeak(acq, mu_per_mm, voxel_mm, n_views, camera, iterations, subsets, save_after=None):
    """OSEM of an :class:`acquisition.Acquisition` with attenuation ``mu_per_mm`` on the SPECT grid
    and the TEW scatter estimate; returns {iterations: image}."""
    model = projector.SystemModel(np.asarray(mu_per_mm, dtype=np.float32), voxel_mm, n_views, camera.orbit_radius_mm)
    scatter = osem.tew_scatter_estimate(acq.counts[1], acq.counts[2], spectrum.windows(), voxel_mm)
    return osem.reconstruct(acq.counts[0], model, iterations, subsets, additive=scatter, save_after=save_after)


def ct_mu_on_spect_grid(grid, ct_hu):
    """The reconstruction's attenuation map: CT numbers -> mu (bilinear), averaged into SPECT voxels."""
    return grid.bin_to_spect(attenuation_map.bilinear_mu_per_mm(ct_hu)) / grid.fine_factor ** 3


def simulate_patient(config=RealisticPatientConfig(), log=None):
    """Simulate the study: returns (:class:`patient.PatientPhantom`, acquisition records per time point)."""
    say = log or (lambda message: None)
    anatomy = lesions.realistic_anatomy(config.administered_activity_MBq, config.lesions)
    grid = config.grid
    points = grid.fine_points_ras()
    phantom, (motion_rng, ct_rng, counts_rng) = patient.varied_patient(config, anatomy)
    anatomy = phantom.anatomy
    records = []
    for index, hours in enumerate(config.timepoints_h):
        say(f"Time point {index + 1}: {hours:g} h, projections and OSEM")
        transform = np.eye(4) if index == 0 else repositioning.random_repositioning(motion_rng)
        labels, hu = anatomy.labels_and_hu(repositioning.apply_inverse(transform, points))
        present = np.bincount(labels.ravel(), minlength=len(anatomy.structures) + 2)
        for n, structure in enumerate(anatomy.structures):
            if present[n + 2] == 0:
                raise ValueError(f"The structure '{structure.name}' covers no voxel of the simulation grid at time "
                                 f"point {index + 1}; make it larger or the grid finer.")
        ct_hu = np.round(hu + ct_rng.normal(0.0, config.ct_noise_hu, hu.shape) * (hu > -1000.0))
        activity = phantom.activity_map_MBq(labels, hours)
        frame_s = config.frame_duration_at(index)
        acq = acquisition.acquire(activity.astype(np.float32), attenuation_map.true_mu_per_mm(hu).astype(np.float32),
                                  grid.fine_voxel_mm, config.camera, config.number_of_views, frame_s, counts_rng,
                                  bin_factor=grid.fine_factor)
        image = reconstruct_photopeak(acq, ct_mu_on_spect_grid(grid, ct_hu), grid.spect_voxel_mm,
                                      config.number_of_views, config.camera, config.iterations,
                                      config.subsets)[config.iterations]
        phantom.timepoints.append(patient.SimulatedTimepoint(
            label=f"tp{index + 1}", hours_after_administration=float(hours),
            acquisition_datetime=config.administration_datetime + datetime.timedelta(hours=float(hours)),
            duration_s=frame_s * config.number_of_views, frame_duration_s=frame_s, transform_ras_4x4=transform,
            labels=labels, ct_hu=ct_hu.astype(np.int16), expected_counts=None, counts=image.astype(np.float64),
            total_activity_MBq=float(activity.sum()), incident_count_rate_cps=acq.incident_photopeak_cps,
            observed_count_rate_cps=acq.observed_photopeak_cps))
        records.append(acquisition_record(acq, config.camera))
    return phantom, records


def acquisition_record(acq, camera):
    """What the truth keeps of an acquisition (photopeak composition, dead time)."""
    peak = acq.photopeak_geometric_counts + acq.photopeak_penetration_counts
    scatter = acq.photopeak_scatter_counts + acq.photopeak_downscatter_counts
    return {
        "photopeak_counts_in_projections": acq.photopeak_counts,
        "photopeak_scatter_fraction": scatter / (peak + scatter) if peak + scatter > 0 else 0.0,
        "photopeak_penetration_fraction": acq.photopeak_penetration_counts / (peak + scatter) if peak else 0.0,
        "detected_count_rate_cps": acq.detected_cps,
        "photopeak_effective_dead_time_s": camera.dead_time_s * acq.detected_cps / acq.incident_photopeak_cps
        if acq.incident_photopeak_cps > 0 else camera.dead_time_s,
        "dead_time_survival_per_view_range": [float(acq.survival_per_view.min()), float(acq.survival_per_view.max())],
    }


def model_description(config):
    """The imaging model in words, for the truth file."""
    return {
        "summary": ("Projections of a rotating single-head camera (circular orbit, "
                    f"{config.number_of_views} views over 360 degrees, orbit radius "
                    f"{config.camera.orbit_radius_mm:g} mm) simulated on the fine grid with the true attenuation "
                    "of the phantom materials, a depth-dependent HEGP collimator response, septal penetration, body "
                    "scatter and 637/723 keV down-scatter in three energy windows, paralysable dead time on each "
                    "view's detected rate and Poisson noise; then OSEM "
                    f"({config.iterations} iterations x {config.subsets} subsets) with attenuation from the CT "
                    "(bilinear HU conversion), the smoothed TEW estimate as additive scatter and a Gaussian "
                    "depth-dependent collimator model."),
        "collimator": collimator.__doc__.strip(),
        "spectrum": spectrum.__doc__.strip(),
        "acquisition": acquisition.__doc__.strip(),
        "attenuation": attenuation_map.__doc__.strip(),
        "reconstruction": osem.__doc__.strip(),
        "collimator_fwhm_at_100_mm": float(collimator.fwhm_mm(100.0)),
    }


def truth_document(phantom, records, dose_Gy):
    """truth.json of a realistic patient study (field names of the image-domain phantom's truth)."""
    config = phantom.config
    camera = config.camera
    structures = patient.structure_truth(phantom, dose_Gy)
    by_name = {s.name: s for s in phantom.anatomy.structures}
    for record in structures:
        if record["kind"] == "lesion":
            shape = by_name[record["name"]].shape
            record["diameter_mm"] = lesions.equivalent_diameter_mm(record["volume_ml"])
            record["shape"] = shape.description
            record["seed_ras_mm"] = list(shape.centre_ras_mm)
    remainder = phantom.anatomy.remainder_kinetics
    return {
        "generator": "realistic projection and OSEM model (MIBGDosimetryLib.phantoms.realistic)",
        "seed": config.seed,
        "administration_datetime": config.administration_datetime.isoformat(),
        "administered_activity_MBq": config.administered_activity_MBq,
        "calibration": {"Q_cps_per_MBq": camera.calibration_factor_cps_per_MBq,
                        "tau_s": records[0]["photopeak_effective_dead_time_s"],
                        "detector_dead_time_s": camera.dead_time_s,
                        "tau_definition": "photopeak-window dead time equivalent to the detector's paralysable dead "
                                          "time at the first time point (tau x detected rate / photopeak rate)",
                        "fwhm_mm": float(collimator.fwhm_mm(100.0))},
        "grid": {"spect_voxel_mm": config.grid.spect_voxel_mm, "spect_shape_kji": list(config.grid.spect_shape),
                 "fine_voxel_mm": config.grid.fine_voxel_mm, "fine_shape_kji": list(config.grid.fine_shape),
                 "ct_is_fine_grid": True},
        "timepoints": [{
            "label": tp.label, "hours_after_administration": tp.hours_after_administration,
            "acquisition_datetime": tp.acquisition_datetime.isoformat(),
            "duration_s": tp.duration_s, "frame_duration_s": tp.frame_duration_s,
            "number_of_views": config.number_of_views,
            "transform_ras_4x4": tp.transform_ras_4x4.tolist(),
            "total_activity_MBq": tp.total_activity_MBq,
            "incident_count_rate_cps": tp.incident_count_rate_cps,
            "observed_count_rate_cps": tp.observed_count_rate_cps,
            "dead_time_survival_fraction": tp.observed_count_rate_cps / tp.incident_count_rate_cps,
            "counts_accumulated": record["photopeak_counts_in_projections"],
            "reconstructed_counts": float(tp.counts.sum()),
            **record,
        } for tp, record in zip(phantom.timepoints, records)],
        "structures": structures,
        "remainder": {"name": "body_remainder",
                      "activity_MBq": [float(remainder.activity_MBq(tp.hours_after_administration))
                                       for tp in phantom.timepoints],
                      "tia_MBq_h": remainder.tia_MBq_h, "kinetics": remainder.to_dict()},
        "dose_method": truth_dose.dose_method_text(config.grid.fine_voxel_mm, TRUTH_DOSE_REACH_MM),
        "activity_model": ("Each structure holds a uniform activity concentration (the necrotic core of a lesion "
                           "holds the body background); its activity at a time point is its kinetics evaluated at "
                           "the acquisition start and is held for the acquisition."),
        "imaging_model": model_description(config),
    }


def true_dose_map_Gy(phantom):
    """Absorbed dose of every fine voxel from the true time-integrated activity."""
    grid = phantom.config.grid
    return truth_dose.mean_dose_map_Gy(phantom.tia_map_MBq_h(), grid.fine_voxel_mm, TRUTH_DOSE_REACH_MM)


def write_realistic_patient_study(out_dir, config=RealisticPatientConfig(), log=None):
    """Simulate and write a realistic patient study folder (complete or not at all); returns a
    summary dict like :func:`MIBGDosimetryLib.phantoms.patient.write_patient_study`."""
    from MIBGDosimetryLib.dicomio import common, ct, markups, nm, seg

    phantom, records = simulate_patient(config, log)
    dose_Gy = true_dose_map_Gy(phantom)
    grid, camera = config.grid, config.camera
    birth = config.administration_datetime.replace(year=config.administration_datetime.year - 4)
    with common.atomic_folder(out_dir) as folder:
        reference_ct_paths = None
        for tp, record in zip(phantom.timepoints, records):
            study = common.StudyInfo(
                patient_name=f"MIBG^Realistic{config.seed}", patient_id=f"MIBG-REALISTIC-{config.seed}",
                study_datetime=tp.acquisition_datetime, patient_birth_date=common.dicom_date(birth),
                patient_sex="F", patient_weight_kg=16.0, patient_size_m=1.02,
                study_description=f"131I-mIBG SPECT/CT {tp.hours_after_administration:g} h", study_id=tp.label)
            tp_dir = os.path.join(folder, tp.label)
            ct_paths = ct.write_ct_series(grid.fine_volume(tp.ct_hu), os.path.join(tp_dir, "ct"), study,
                                          tp.acquisition_datetime + datetime.timedelta(seconds=tp.duration_s),
                                          series_number=1, series_description="CT for SPECT",
                                          ctdivol_mGy=config.ct_ctdivol_mGy)
            reference_ct_paths = reference_ct_paths or ct_paths
            acquisition_info = nm.NMAcquisition(
                acquisition_datetime=tp.acquisition_datetime, frame_duration_ms=tp.frame_duration_s * 1000.0,
                administration_datetime=config.administration_datetime,
                administered_activity_Bq=config.administered_activity_MBq * 1.0e6,
                half_life_s=i131.HALF_LIFE_H * 3600.0, energy_windows=[nm.photopeak_window()],
                counts_accumulated=record["photopeak_counts_in_projections"],
                number_of_views=config.number_of_views, radial_position_mm=camera.orbit_radius_mm,
                manufacturer_model=camera.manufacturer_model, collimator_name=camera.collimator,
                collimator_type=camera.collimator_type)
            nm.write_nm_tomo(grid.spect_volume(tp.counts), os.path.join(tp_dir, "spect.dcm"), study, acquisition_info,
                             series_number=2, series_description="131I SPECT OSEM AC SC RR",
                             reconstruction_description=f"OSEM {config.iterations}i{config.subsets}s ACSC")
        organs = patient.delineated_organs(phantom)
        seg.write_segmentation(organs, {name: "organ" for name in organs}, reference_ct_paths,
                               os.path.join(folder, "segmentation.dcm"))
        seeds = {s.name: s.shape.centre_ras_mm for s in phantom.anatomy.structures if s.kind == "lesion"}
        markups.write_seeds(seeds, os.path.join(folder, "seeds.mrk.json"))
        with open(os.path.join(folder, "truth.json"), "w") as f:
            json.dump(truth_document(phantom, records, dose_Gy), f, indent=2)
    return {
        "kind": "patient", "generator": "realistic", "out": os.path.abspath(out_dir), "seed": config.seed,
        "timepoints": [{"label": tp.label, "hours_after_administration": tp.hours_after_administration,
                        "spect": os.path.join(tp.label, "spect.dcm"), "ct_dir": os.path.join(tp.label, "ct"),
                        "ct_slices": int(grid.fine_shape[0])} for tp in phantom.timepoints],
        "segmentation": "segmentation.dcm", "seeds": "seeds.mrk.json", "truth": "truth.json",
        "structures": [s.name for s in phantom.anatomy.structures],
    }
