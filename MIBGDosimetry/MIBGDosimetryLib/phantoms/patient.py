"""The patient phantom: sequential 131I-mIBG SPECT/CT of a child with neuroblastoma, with the
truth (activities, time-integrated activities, volumes, repositioning, absorbed doses) beside it.

:func:`simulate_patient` builds everything in memory; :func:`write_patient_study` writes the
study folder::

    OUT/tp<N>/ct/ct_<k>.dcm   CT Image Storage, one file per slice (HU)
    OUT/tp<N>/spect.dcm       NM Image Storage, reconstructed tomogram (counts)
    OUT/segmentation.dcm      DICOM SEG of the organs on the reference CT (tp1)
    OUT/seeds.mrk.json        Slicer markups: one control point per lesion (RAS, reference CT frame)
    OUT/truth.json            the answers

The first time point is the reference: the patient lies in the scanner as defined in
:mod:`MIBGDosimetryLib.phantoms.anatomy`. At every later time point it is repositioned by a
small rigid transform, and its anatomy is rasterised exactly in the new position.

Two options make patients differ beyond noise and position (both off by default, so the default
patient is the same for every seed):

- ``uptake_half_life_gsd``: each structure's uptake half-life is its nominal value times a factor
  drawn log-normally with this geometric standard deviation. The phantom's own population
  assumption: uptake by the noradrenaline transporter within hours, varying between children with
  the infusion's duration and the tissue's perfusion; 1.5 puts 95 % of the half-lives within a
  factor 2.2 of the nominal value.
- ``outline_error_sd_mm``: the organ outlines written to the DICOM SEG are each moved outwards by a
  distance drawn from a normal distribution with this standard deviation (a delineation that is
  systematically too wide or too tight, as between observers), over the whole surface inside the
  body, so that an outline drawn too wide may overlap a neighbouring organ's (not a lesion's); the truth
  stays the exact organs.
"""

import dataclasses
import datetime
import json
import os

import numpy as np
from scipy import ndimage

from MIBGDosimetryLib.phantoms import anatomy as anatomy_module
from MIBGDosimetryLib.phantoms import camera as camera_module
from MIBGDosimetryLib.phantoms import repositioning, truth_dose
from MIBGDosimetryLib.phantoms.grid import PhantomGrid
from MIBGDosimetryLib.physics import i131

#: Default administration: a fixed date so that generated studies are reproducible.
ADMINISTRATION_DATETIME = datetime.datetime(2026, 3, 2, 9, 0, 0)


def default_frame_duration_s(hours):
    """Time per projection: short while the count rate is high, longer as the activity falls
    (5 s to 60 s per projection are usual for 131I therapy imaging)."""
    if hours < 36.0:
        return 15.0
    if hours < 100.0:
        return 25.0
    return 40.0


@dataclasses.dataclass(frozen=True)
class PatientConfig:
    """Everything that defines a patient phantom; the same config and seed give the same images."""

    seed: int = 1
    administered_activity_MBq: float = 7400.0
    #: Five daily-ish scans: enough points for an uptake-and-clearance fit (3 parameters) with AICc.
    timepoints_h: tuple = (21.0, 45.0, 69.0, 93.0, 141.0)
    lesions: tuple = anatomy_module.DEFAULT_LESIONS
    grid: PhantomGrid = PhantomGrid()
    camera: camera_module.Camera = camera_module.Camera()
    number_of_views: int = 60
    frame_durations_s: tuple = None
    ct_noise_hu: float = 10.0
    #: CTDIvol of the low-dose CT of each time point (16 cm phantom), written to the CT headers.
    ct_ctdivol_mGy: float = 1.5
    dose_kernel_half_width_mm: float = 40.0
    administration_datetime: datetime.datetime = ADMINISTRATION_DATETIME
    #: Geometric standard deviation of each structure's uptake half-life about its nominal value (1: nominal).
    uptake_half_life_gsd: float = 1.0
    #: Standard deviation (mm) of the outward shift of each organ outline in the DICOM SEG (0: exact outlines).
    outline_error_sd_mm: float = 0.0

    def __post_init__(self):
        times = list(self.timepoints_h)
        if len(times) < 1 or any(t <= 0 for t in times) or times != sorted(set(times)):
            raise ValueError(f"Time points must be positive, distinct and increasing, got {times} h.")
        if self.frame_durations_s is not None and len(self.frame_durations_s) != len(times):
            raise ValueError("Give one frame duration per time point.")
        if not self.uptake_half_life_gsd >= 1.0 or not self.outline_error_sd_mm >= 0.0:
            raise ValueError(f"The uptake half-life's geometric SD must be at least 1 and the outline error's SD not "
                             f"negative, got {self.uptake_half_life_gsd} and {self.outline_error_sd_mm} mm.")
        for spec in self.lesions:
            if spec.clearance_half_life_h >= i131.HALF_LIFE_H:
                raise ValueError(f"The effective clearance half-life of {spec.name} ({spec.clearance_half_life_h} h) "
                                 f"must be shorter than the physical half-life of 131I ({i131.HALF_LIFE_H:.1f} h).")

    def frame_duration_at(self, index):
        if self.frame_durations_s is not None:
            return float(self.frame_durations_s[index])
        return default_frame_duration_s(self.timepoints_h[index])


@dataclasses.dataclass
class SimulatedTimepoint:
    """One imaging session: where the patient lay and what the camera recorded."""

    label: str
    hours_after_administration: float
    acquisition_datetime: datetime.datetime
    duration_s: float
    frame_duration_s: float
    transform_ras_4x4: np.ndarray
    labels: np.ndarray
    ct_hu: np.ndarray
    expected_counts: np.ndarray
    counts: np.ndarray
    total_activity_MBq: float
    incident_count_rate_cps: float
    observed_count_rate_cps: float


@dataclasses.dataclass
class PatientPhantom:
    """A simulated patient study in memory."""

    config: PatientConfig
    anatomy: anatomy_module.PatientAnatomy
    timepoints: list
    #: Outward shift (mm) of each organ's outline in the SEG, by name (all 0 without outline error).
    outline_shifts_mm: dict = dataclasses.field(default_factory=dict)

    @property
    def reference_labels(self):
        return self.timepoints[0].labels

    def structure_activities_MBq(self, hours):
        """Activity of the remainder (label 1) and of every structure (labels 2...) at ``hours``."""
        values = [float(self.anatomy.remainder_kinetics.activity_MBq(hours))]
        values += [float(s.kinetics.activity_MBq(hours)) for s in self.anatomy.structures]
        return np.array(values)

    def activity_map_MBq(self, labels, hours):
        """Activity (MBq) of every fine voxel: each structure's activity spread uniformly over its voxels."""
        return _spread(labels, self.structure_activities_MBq(hours))

    def tia_map_MBq_h(self):
        """True time-integrated activity (MBq h) of every fine voxel in the reference position."""
        tias = [self.anatomy.remainder_kinetics.tia_MBq_h] + [s.kinetics.tia_MBq_h for s in self.anatomy.structures]
        return _spread(self.reference_labels, np.array(tias))


def _spread(labels, per_label_values):
    """Values per voxel: ``per_label_values[n - 1]`` divided evenly over the voxels of label n >= 1."""
    counts = np.bincount(labels.ravel(), minlength=len(per_label_values) + 1)[1:]
    per_voxel = np.concatenate([[0.0], np.divide(per_label_values, counts, out=np.zeros(len(counts)),
                                                 where=counts > 0)])
    return per_voxel[labels]


def varied_patient(config, anatomy):
    """The phantom of ``config`` without time points, with the uptake half-lives and organ outline errors
    drawn for its seed (``uptake_half_life_gsd``, ``outline_error_sd_mm``), and its random streams for
    motion, CT noise and counts. Streams 0-2 are those of a phantom without patient variability, so its
    images stay the same."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(5)]
    motion_rng, ct_rng, counts_rng, uptake_rng, outline_rng = streams
    if config.uptake_half_life_gsd > 1.0:
        factors = config.uptake_half_life_gsd ** uptake_rng.standard_normal(len(anatomy.structures))
        anatomy = anatomy_module.with_uptake_half_lives(anatomy, factors)
    shifts = {s.name: (float(outline_rng.normal(0.0, config.outline_error_sd_mm))
                       if config.outline_error_sd_mm > 0 else 0.0)
              for s in anatomy.structures if s.kind == "organ"}
    return PatientPhantom(config, anatomy, [], shifts), (motion_rng, ct_rng, counts_rng)


def simulate_patient(config=PatientConfig()):
    """Simulate the patient study described by ``config`` (deterministic for its seed)."""
    anatomy = anatomy_module.child_anatomy(config.administered_activity_MBq, config.lesions)
    grid = config.grid
    _check_field_of_view(grid, config.camera)
    points = grid.fine_points_ras()
    phantom, (motion_rng, ct_rng, counts_rng) = varied_patient(config, anatomy)
    anatomy = phantom.anatomy
    for index, hours in enumerate(config.timepoints_h):
        transform = np.eye(4) if index == 0 else repositioning.random_repositioning(motion_rng)
        labels, hu = anatomy.labels_and_hu(repositioning.apply_inverse(transform, points))
        _check_every_structure_present(anatomy, labels, index)
        ct_hu = np.round(hu + ct_rng.normal(0.0, config.ct_noise_hu, hu.shape) * (hu > -1000.0))
        activity = phantom.activity_map_MBq(labels, hours)
        frame_s = config.frame_duration_at(index)
        duration_s = frame_s * config.number_of_views
        expected, incident, observed = camera_module.expected_tomo_counts(activity, grid, config.camera, duration_s)
        phantom.timepoints.append(SimulatedTimepoint(
            label=f"tp{index + 1}", hours_after_administration=float(hours),
            acquisition_datetime=config.administration_datetime + datetime.timedelta(hours=float(hours)),
            duration_s=duration_s, frame_duration_s=frame_s, transform_ras_4x4=transform, labels=labels,
            ct_hu=ct_hu.astype(np.int16), expected_counts=expected,
            counts=camera_module.poisson_counts(expected, counts_rng), total_activity_MBq=float(activity.sum()),
            incident_count_rate_cps=incident, observed_count_rate_cps=observed))
    return phantom


def _check_field_of_view(grid, camera):
    """The body, blurred by the camera and moved by up to ~10 mm, must stay inside the grid."""
    needed = np.array([95.0, 65.0, max(abs(z) for z in anatomy_module.BODY_Z_RANGE_MM)])
    margin_mm = 3.0 * camera.fwhm_mm / camera_module.FWHM_PER_SIGMA + 10.0
    if np.any(grid.half_extent_mm < needed + margin_mm):
        size = 2.0 * (needed + margin_mm)
        raise ValueError(f"The SPECT grid ({grid.matrix} x {grid.matrix} x {grid.slices} voxels of "
                         f"{grid.spect_voxel_mm} mm) does not cover the patient; it must span at least "
                         f"{size[0]:.0f} x {size[1]:.0f} x {size[2]:.0f} mm.")


def _check_every_structure_present(anatomy, labels, index):
    present = np.bincount(labels.ravel(), minlength=len(anatomy.structures) + 2)
    for n, structure in enumerate(anatomy.structures):
        if present[n + 2] == 0:
            raise ValueError(f"The structure '{structure.name}' covers no voxel of the simulation grid at time point "
                             f"{index + 1}; make it larger or the grid finer.")


def delineated_organs(phantom):
    """Organ masks of the SEG on the fine reference grid: the exact organs, or with outline error
    each organ's shape moved by its shift over its whole surface, inside the body: an outline drawn too
    wide overlaps neighbouring organs' by the shift (the analysis decides which VOI keeps shared voxels),
    but not the lesions, which the analysis outlines itself."""
    from MIBGDosimetryLib.phantoms import shapes

    labels = phantom.reference_labels
    points = None
    organs = {}
    for n, structure in enumerate(phantom.anatomy.structures):
        if structure.kind != "organ":
            continue
        exact = labels == n + 2
        shift = phantom.outline_shifts_mm.get(structure.name, 0.0)
        if shift == 0.0:
            organs[structure.name] = exact
            continue
        points = phantom.config.grid.fine_points_ras() if points is None else points
        moved = shapes.offset(structure.shape, shift).contains(points)
        if shift > 0:
            # The moved shape may enclose a structure that the organ's own shape surrounds (the heart
            # between the lungs' ellipsoids): the outline takes in only what lies within the shift of it.
            organ_labels = [m + 2 for m, other in enumerate(phantom.anatomy.structures) if other.kind == "organ"]
            tissue = (labels == 1) | np.isin(labels, organ_labels)
            moved &= tissue & (exact | (labels == 1) | _within(exact, shift, phantom.config.grid.fine_voxel_mm))
        else:
            moved &= exact
        organs[structure.name] = moved
    return organs


def _within(mask, distance_mm, voxel_mm):
    """Voxels whose centres lie within ``distance_mm`` (plus half a voxel diagonal) of ``mask``'s voxels."""
    from MIBGDosimetryLib.volume import padded_box

    box = padded_box(mask, int(np.ceil(distance_mm / voxel_mm)) + 2)
    near = np.zeros(mask.shape, dtype=bool)
    near[box] = ndimage.distance_transform_edt(~mask[box], sampling=voxel_mm) <= distance_mm + 0.5 * np.sqrt(3) * voxel_mm
    return near


def structure_truth(phantom, dose_Gy=None):
    """Per-structure truth records in reference position (field names of dose results)."""
    labels = phantom.reference_labels
    grid = phantom.config.grid
    voxel_ml = grid.fine_voxel_mm ** 3 / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(phantom.anatomy.structures) + 2)
    reference = grid.fine_volume(np.zeros((1, 1, 1)))
    records = []
    for n, structure in enumerate(phantom.anatomy.structures):
        label = n + 2
        k, j, i = np.nonzero(labels == label)
        centroid = reference.ras_of_ijk(np.stack([i, j, k], axis=-1).mean(axis=0))
        volume_ml = float(counts[label] * voxel_ml)
        record = {
            "name": structure.name, "kind": structure.kind, "volume_ml": volume_ml,
            "mass_g": volume_ml * truth_dose.DENSITY_G_PER_ML,
            "activity_MBq": [float(structure.kinetics.activity_MBq(tp.hours_after_administration))
                             for tp in phantom.timepoints],
            "tia_MBq_h": structure.kinetics.tia_MBq_h,
            "mean_dose_Gy": None if dose_Gy is None else float(dose_Gy[labels == label].mean()),
            "centroid_ras_mm": [float(c) for c in centroid],
            "kinetics": structure.kinetics.to_dict(),
            "ct_hu": structure.hu,
        }
        if structure.kind == "organ":
            record["outline_shift_mm"] = phantom.outline_shifts_mm.get(structure.name, 0.0)
        if structure.kind == "lesion":
            record["diameter_mm"] = 2.0 * structure.shape.semi_axes_mm[0]
            record["centre_ras_mm"] = list(structure.shape.centre_ras_mm)
        records.append(record)
    return records


def truth_document(phantom, dose_Gy):
    """The truth.json content of a simulated patient study."""
    config = phantom.config
    remainder = phantom.anatomy.remainder_kinetics
    return {
        "seed": config.seed,
        "administration_datetime": config.administration_datetime.isoformat(),
        "administered_activity_MBq": config.administered_activity_MBq,
        "uptake_half_life_gsd": config.uptake_half_life_gsd,
        "outline_error_sd_mm": config.outline_error_sd_mm,
        "calibration": {"Q_cps_per_MBq": config.camera.calibration_factor_cps_per_MBq,
                        "tau_s": config.camera.dead_time_s, "fwhm_mm": config.camera.fwhm_mm},
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
            "counts_accumulated": int(tp.counts.sum()),
        } for tp in phantom.timepoints],
        "structures": structure_truth(phantom, dose_Gy),
        "remainder": {"name": "body_remainder",
                      "activity_MBq": [float(remainder.activity_MBq(tp.hours_after_administration))
                                       for tp in phantom.timepoints],
                      "tia_MBq_h": remainder.tia_MBq_h, "kinetics": remainder.to_dict()},
        "dose_method": truth_dose.dose_method_text(config.grid.fine_voxel_mm, config.dose_kernel_half_width_mm),
        "activity_model": ("Each structure holds a uniform activity concentration; its activity at a time point "
                           "is its kinetics evaluated at the acquisition start and is held for the acquisition. "
                           "Counts = Q x activity x duration x exp(-Q x A_total x tau) (EANM eq. 6), blurred "
                           "with the Gaussian PSF on the fine grid, summed into SPECT voxels, Poisson noise."),
    }


def write_patient_study(out_dir, config=PatientConfig()):
    """Simulate and write a patient study folder; returns a summary dict. ``out_dir`` must not
    exist (or be empty); it is written completely or not at all."""
    from MIBGDosimetryLib.dicomio import common, ct, markups, nm, seg

    phantom = simulate_patient(config)
    dose_Gy = truth_dose.mean_dose_map_Gy(phantom.tia_map_MBq_h(), config.grid.fine_voxel_mm,
                                          config.dose_kernel_half_width_mm)
    grid = config.grid
    birth = config.administration_datetime.replace(year=config.administration_datetime.year - 4)
    with common.atomic_folder(out_dir) as folder:
        reference_ct_paths = None
        for tp in phantom.timepoints:
            study = common.StudyInfo(
                patient_name=f"MIBG^Phantom{config.seed}", patient_id=f"MIBG-PHANTOM-{config.seed}",
                study_datetime=tp.acquisition_datetime, patient_birth_date=common.dicom_date(birth),
                patient_sex="F", patient_weight_kg=16.0, patient_size_m=1.02,
                study_description=f"131I-mIBG SPECT/CT {tp.hours_after_administration:g} h", study_id=tp.label)
            tp_dir = os.path.join(folder, tp.label)
            ct_paths = ct.write_ct_series(grid.fine_volume(tp.ct_hu), os.path.join(tp_dir, "ct"), study,
                                          tp.acquisition_datetime + datetime.timedelta(seconds=tp.duration_s),
                                          series_number=1, series_description="CT for SPECT",
                                          ctdivol_mGy=config.ct_ctdivol_mGy)
            reference_ct_paths = reference_ct_paths or ct_paths
            acquisition = nm.NMAcquisition(
                acquisition_datetime=tp.acquisition_datetime, frame_duration_ms=tp.frame_duration_s * 1000.0,
                administration_datetime=config.administration_datetime,
                administered_activity_Bq=config.administered_activity_MBq * 1.0e6,
                half_life_s=i131.HALF_LIFE_H * 3600.0, energy_windows=[nm.photopeak_window()],
                counts_accumulated=int(tp.counts.sum()), number_of_views=config.number_of_views,
                manufacturer_model=config.camera.manufacturer_model, collimator_name=config.camera.collimator,
                collimator_type=config.camera.collimator_type)
            nm.write_nm_tomo(grid.spect_volume(tp.counts), os.path.join(tp_dir, "spect.dcm"), study, acquisition,
                             series_number=2, series_description="131I SPECT OSEM")
        organs = delineated_organs(phantom)
        seg.write_segmentation(organs, {name: "organ" for name in organs}, reference_ct_paths,
                               os.path.join(folder, "segmentation.dcm"))
        seeds = {s.name: s.shape.centre_ras_mm for s in phantom.anatomy.structures if s.kind == "lesion"}
        markups.write_seeds(seeds, os.path.join(folder, "seeds.mrk.json"))
        truth = truth_document(phantom, dose_Gy)
        with open(os.path.join(folder, "truth.json"), "w") as f:
            json.dump(truth, f, indent=2)
    return {
        "kind": "patient", "out": os.path.abspath(out_dir), "seed": config.seed,
        "timepoints": [{"label": tp.label, "hours_after_administration": tp.hours_after_administration,
                        "spect": os.path.join(tp.label, "spect.dcm"), "ct_dir": os.path.join(tp.label, "ct"),
                        "ct_slices": int(grid.fine_shape[0])} for tp in phantom.timepoints],
        "segmentation": "segmentation.dcm", "seeds": "seeds.mrk.json", "truth": "truth.json",
        "structures": [s.name for s in phantom.anatomy.structures],
    }
