"""Digital phantoms: valid DICOM, deterministic, and a truth that agrees with independent
calculations (numerical integration, the dead-time law, analytic attenuation, curve fits)."""

import argparse
import csv
import dataclasses
import json
import math
import os
import subprocess

import numpy as np
import pydicom
import pytest
from scipy import integrate, optimize

from MIBGDosimetryLib.commands import phantom as phantom_command
from MIBGDosimetryLib.phantoms import anatomy, calibration, grid, patient
from MIBGDosimetryLib.physics import i131
from MIBGDosimetryLib.volume import LPS_TO_RAS

#: A coarse grid keeps the tests fast: 8.8 mm SPECT voxels, 4.4 mm CT and truth voxels.
SMALL_GRID = grid.PhantomGrid(matrix=32, slices=44, spect_voxel_mm=8.8, fine_factor=2)
SMALL = patient.PatientConfig(seed=7, timepoints_h=(21.0, 45.0, 93.0), grid=SMALL_GRID,
                              dose_kernel_half_width_mm=26.4)
#: Electron energy per decay (ICRP 107) in joules, for an independent local-deposition estimate.
ELECTRON_J = i131.ELECTRON_ENERGY_MEV * 1.602176634e-13


def dciodvfy_errors(path):
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def patient_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("patient") / "study"
    summary = patient.write_patient_study(out, SMALL)
    return out, summary, json.loads((out / "truth.json").read_text())


@pytest.fixture(scope="module")
def simulated():
    return patient.simulate_patient(SMALL)


@pytest.fixture(scope="module")
def calibration_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration") / "set"
    config = calibration.CalibrationConfig(seed=3, grid=grid.PhantomGrid(56, 52, 4.4, 2))
    calibration.write_calibration_set(out, config)
    return out, config, json.loads((out / "phantom.json").read_text()), json.loads((out / "truth.json").read_text())


def test_every_written_object_passes_dciodvfy(patient_study, calibration_set):
    study, _, _ = patient_study
    cal, _, _, _ = calibration_set
    paths = [study / "tp1" / "ct" / "ct_0001.dcm", study / "tp2" / "spect.dcm", study / "segmentation.dcm",
             cal / "jaszczak" / "spect.dcm", cal / "deadtime" / "step_01.dcm", cal / "tew" / "projections.dcm",
             cal / "osem" / "osem_008.dcm", cal / "chang" / "nac.dcm", cal / "chang" / "lower_window.dcm"]
    for path in paths:
        assert dciodvfy_errors(path) == [], path


def test_patient_folder_layout_and_truth_schema(patient_study):
    study, summary, truth = patient_study
    assert sorted(os.listdir(study)) == ["seeds.mrk.json", "segmentation.dcm", "tp1", "tp2", "tp3", "truth.json"]
    assert len(os.listdir(study / "tp1" / "ct")) == SMALL_GRID.fine_shape[0]
    assert truth["calibration"] == {"Q_cps_per_MBq": 22.0, "tau_s": 4.0e-6, "fwhm_mm": 17.0}
    assert [tp["label"] for tp in truth["timepoints"]] == ["tp1", "tp2", "tp3"]
    names = {s["name"]: s for s in truth["structures"]}
    assert {"liver", "heart", "salivary_glands", "bladder", "kidney_left", "kidney_right", "adrenal_primary",
            "bone_met_spine", "soft_tissue_met_paraaortic"} <= set(names)
    for s in truth["structures"]:
        assert set(s) >= {"name", "kind", "volume_ml", "mass_g", "activity_MBq", "tia_MBq_h", "mean_dose_Gy",
                          "centroid_ras_mm"}
        assert len(s["activity_MBq"]) == 3 and s["mean_dose_Gy"] > 0
    assert "voxel_s_kernel" in truth["dose_method"]
    # The first time point loses a noticeable fraction of counts to dead time, the last much less.
    survival = [tp["dead_time_survival_fraction"] for tp in truth["timepoints"]]
    assert survival[0] < 0.9 and survival[-1] > 0.93


def test_same_seed_same_images_other_seed_other_noise():
    config = dataclasses.replace(SMALL, timepoints_h=(21.0, 60.0))
    first, second = patient.simulate_patient(config), patient.simulate_patient(config)
    other = patient.simulate_patient(dataclasses.replace(config, seed=8))
    for a, b, c in zip(first.timepoints, second.timepoints, other.timepoints):
        np.testing.assert_array_equal(a.counts, b.counts)
        np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
        np.testing.assert_array_equal(a.transform_ras_4x4, b.transform_ras_4x4)
        assert not np.array_equal(a.counts, c.counts)
    assert not np.allclose(first.timepoints[1].transform_ras_4x4, other.timepoints[1].transform_ras_4x4)


def test_voxel_activities_sum_to_the_stated_activities(simulated, patient_study):
    _, _, truth = patient_study
    for index, tp in enumerate(simulated.timepoints):
        activity = simulated.activity_map_MBq(tp.labels, tp.hours_after_administration)
        for n, structure in enumerate(truth["structures"]):
            assert activity[tp.labels == n + 2].sum() == pytest.approx(structure["activity_MBq"][index], rel=1e-9)
        remainder = truth["remainder"]["activity_MBq"][index]
        listed = sum(s["activity_MBq"][index] for s in truth["structures"]) + remainder
        assert activity.sum() == pytest.approx(listed, rel=1e-9)
        assert truth["timepoints"][index]["total_activity_MBq"] == pytest.approx(listed, rel=1e-9)


def test_tia_equals_numerical_integral_of_the_kinetics(simulated, patient_study):
    _, _, truth = patient_study
    for n, structure in enumerate(simulated.anatomy.structures):
        numeric, _ = integrate.quad(lambda t: float(structure.kinetics.activity_MBq(t)), 0.0, np.inf, limit=200)
        assert truth["structures"][n]["tia_MBq_h"] == pytest.approx(numeric, rel=1e-6)
        assert all(structure.kinetics.activity_MBq(t) >= 0 for t in np.linspace(0.0, 500.0, 101))


def test_noise_free_counts_follow_the_paralysable_dead_time_law(simulated, patient_study):
    _, _, truth = patient_study
    q, tau = truth["calibration"]["Q_cps_per_MBq"], truth["calibration"]["tau_s"]
    for tp, record in zip(simulated.timepoints, truth["timepoints"]):
        incident = q * record["total_activity_MBq"]
        expected_rate = incident * math.exp(-incident * tau)
        # Counts that the PSF carries beyond the grid edge are lost: well below 0.1 % here.
        assert tp.expected_counts.sum() / tp.duration_s == pytest.approx(expected_rate, rel=1e-3)
        assert record["observed_count_rate_cps"] == pytest.approx(expected_rate, rel=1e-12)
        sigma = math.sqrt(tp.expected_counts.sum())
        assert abs(tp.counts.sum() - tp.expected_counts.sum()) < 5.0 * sigma


def test_repositioning_moves_the_anatomy_as_the_recorded_transform_says(simulated, patient_study):
    _, _, truth = patient_study
    reference = SMALL_GRID.fine_volume(np.zeros((1, 1, 1)))
    liver_label = 2 + [s["name"] for s in truth["structures"]].index("liver")
    transform = np.array(truth["timepoints"][2]["transform_ras_4x4"])
    assert not np.allclose(transform, np.eye(4))
    k, j, i = np.nonzero(simulated.timepoints[2].labels == liver_label)
    moved_centroid = reference.ras_of_ijk(np.stack([i, j, k], axis=-1).mean(axis=0))
    liver = next(s for s in truth["structures"] if s["name"] == "liver")
    predicted = transform[:3, :3] @ np.array(liver["centroid_ras_mm"]) + transform[:3, 3]
    np.testing.assert_allclose(moved_centroid, predicted, atol=0.5)


def test_lesion_volumes_and_doses_against_independent_estimates(patient_study):
    _, _, truth = patient_study
    for s in truth["structures"]:
        if s["kind"] != "lesion" or s["diameter_mm"] < 20.0:
            continue
        sphere_ml = math.pi / 6.0 * s["diameter_mm"] ** 3 / 1000.0
        assert s["volume_ml"] == pytest.approx(sphere_ml, rel=0.08)
        # All electron energy absorbed locally; the photon dose from the lesion and its neighbours
        # adds to it, electron escape from the surface takes a little away.
        local_Gy = s["tia_MBq_h"] * 3600.0 * 1.0e6 * ELECTRON_J / (s["mass_g"] / 1000.0)
        assert 0.9 * local_Gy < s["mean_dose_Gy"] < 1.25 * local_Gy, s["name"]


def test_written_study_reads_back_to_the_simulated_images(patient_study, simulated):
    study, _, truth = patient_study
    for tp, record in zip(simulated.timepoints, truth["timepoints"]):
        ds = pydicom.dcmread(study / tp.label / "spect.dcm")
        np.testing.assert_array_equal(ds.pixel_array, tp.counts)
        spect = SMALL_GRID.spect_volume(tp.counts)
        detector = ds.DetectorInformationSequence[0]
        np.testing.assert_allclose(LPS_TO_RAS @ np.array(detector.ImagePositionPatient, dtype=float),
                                   spect.origin_ras_mm, atol=1e-6)
        rotation = ds.RotationInformationSequence[0]
        duration_s = rotation.NumberOfFramesInRotation * rotation.ActualFrameDuration / 1000.0
        assert duration_s == record["duration_s"]
        assert ds.CountsAccumulated / duration_s == pytest.approx(record["observed_count_rate_cps"], rel=0.005)
        start = ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
        assert start.startswith("20260302090000")
        ct_first = pydicom.dcmread(study / tp.label / "ct" / "ct_0001.dcm")
        assert ct_first.StudyInstanceUID == ds.StudyInstanceUID
        assert ct_first.FrameOfReferenceUID == ds.FrameOfReferenceUID
        hu = ct_first.pixel_array * float(ct_first.RescaleSlope) + float(ct_first.RescaleIntercept)
        np.testing.assert_array_equal(hu, tp.ct_hu[0])
    seeds = json.loads((study / "seeds.mrk.json").read_text())["markups"][0]["controlPoints"]
    lesions = {s["name"]: s["centre_ras_mm"] for s in truth["structures"] if s["kind"] == "lesion"}
    assert {p["label"]: p["position"] for p in seeds} == lesions


def test_segmentation_holds_the_true_organ_masks(patient_study, simulated):
    study, _, truth = patient_study
    ds = pydicom.dcmread(study / "segmentation.dcm")
    labels = {s.SegmentNumber: s.SegmentLabel for s in ds.SegmentSequence}
    organs = [s["name"] for s in truth["structures"] if s["kind"] == "organ"]
    assert sorted(labels.values()) == sorted(organs)
    first_ct = pydicom.dcmread(study / "tp1" / "ct" / "ct_0001.dcm")
    z0, dz = float(first_ct.ImagePositionPatient[2]), SMALL_GRID.fine_voxel_mm
    voxels = {name: 0 for name in organs}
    liver_label = 2 + [s["name"] for s in truth["structures"]].index("liver")
    liver = np.zeros(SMALL_GRID.fine_shape, dtype=bool)
    for frame, group in zip(ds.pixel_array, ds.PerFrameFunctionalGroupsSequence):
        name = labels[group.SegmentIdentificationSequence[0].ReferencedSegmentNumber]
        voxels[name] += int(frame.sum())
        if name == "liver":
            k = int(round((float(group.PlanePositionSequence[0].ImagePositionPatient[2]) - z0) / dz))
            liver[k] = frame.astype(bool)
    voxel_ml = SMALL_GRID.fine_voxel_mm ** 3 / 1000.0
    for s in truth["structures"]:
        if s["kind"] == "organ":
            assert voxels[s["name"]] * voxel_ml == pytest.approx(s["volume_ml"], rel=1e-9)
    np.testing.assert_array_equal(liver, simulated.reference_labels == liver_label)


def test_calibration_folder_follows_the_agreed_layout(calibration_set):
    out, config, record, truth = calibration_set
    assert record["jaszczak"]["inner_diameter_mm"] == 200.0
    assert [i["diameter_mm"] for i in record["spheres"]["inserts"]] == [60.0, 40.0, 30.0, 20.0, 15.0]
    for step in record["deadtime"]["steps"]:
        assert (out / "deadtime" / step["file"]).is_file()
    for recon in record["osem"]["reconstructions"]:
        assert (out / "osem" / recon["file"]).is_file()
        assert recon["iterations"] * recon["subsets"] == recon["updates"]
    for key in ("Q_cps_per_MBq", "tau_s", "recovery", "threshold_fraction", "tew", "chang"):
        assert key in truth
    assert set(truth["recovery"]) == {"S1", "S2", "S3", "S4", "S5"}


def test_jaszczak_gives_back_the_calibration_factor(calibration_set):
    out, config, record, truth = calibration_set
    ds = pydicom.dcmread(out / "jaszczak" / "spect.dcm")
    image = ds.pixel_array.astype(float)
    rotation = ds.RotationInformationSequence[0]
    duration_s = rotation.NumberOfFramesInRotation * rotation.ActualFrameDuration / 1000.0
    g = config.grid
    volume = g.spect_volume(image)
    k, j, i = np.indices(image.shape)
    ras = volume.ras_of_ijk(np.stack([i, j, k], axis=-1))
    jz = record["jaszczak"]
    voi = (np.hypot(ras[..., 0], ras[..., 1]) <= 0.75 * jz["inner_diameter_mm"] / 2.0) & \
          (np.abs(ras[..., 2]) <= 0.75 * jz["inner_height_mm"] / 2.0)
    hours = 1.0  # scan one hour after the activity measurement (acquisition minus reference time)
    activity_at_scan = jz["activity_MBq"] * math.exp(-math.log(2.0) * hours / i131.HALF_LIFE_H)
    voi_activity = activity_at_scan / jz["volume_ml"] * voi.sum() * g.spect_voxel_mm ** 3 / 1000.0
    dead_time = math.exp(truth["Q_cps_per_MBq"] * activity_at_scan * truth["tau_s"])
    q = image[voi].sum() / duration_s / voi_activity * dead_time  # EANM eq. 4 with the dead-time factor
    assert q == pytest.approx(truth["Q_cps_per_MBq"], rel=0.01)


def test_dead_time_series_fits_back_tau_and_q(calibration_set):
    out, _, _, truth = calibration_set
    with open(out / "deadtime" / "series.csv") as f:
        rows = list(csv.DictReader(f))
    activity = np.array([float(r["activity_MBq"]) for r in rows])
    observed = np.array([float(r["observed_cps"]) for r in rows])

    def model(a, q, tau_us):
        return q * a * np.exp(-q * a * tau_us * 1e-6)

    (q, tau_us), _ = optimize.curve_fit(model, activity, observed, p0=(20.0, 3.0))
    assert q == pytest.approx(truth["Q_cps_per_MBq"], rel=0.01)
    assert tau_us * 1e-6 == pytest.approx(truth["tau_s"], rel=0.03)
    image = pydicom.dcmread(out / "deadtime" / "step_11.dcm")
    assert image.pixel_array.sum() / (image.ActualFrameDuration / 1000.0) == pytest.approx(observed[-1], rel=1e-9)


def test_tew_projections_estimate_the_true_scatter_within_a_few_percent(calibration_set):
    out, _, _, truth = calibration_set
    ds = pydicom.dcmread(out / "tew" / "projections.dcm")
    frames = ds.pixel_array.astype(float)
    windows = [(float(w.EnergyWindowRangeSequence[0].EnergyWindowLowerLimit),
                float(w.EnergyWindowRangeSequence[0].EnergyWindowUpperLimit)) for w in ds.EnergyWindowInformationSequence]
    vector = np.array(ds.EnergyWindowVector)
    totals = [frames[vector == n + 1].sum() for n in range(3)]
    widths = [hi - lo for lo, hi in windows]
    estimate = widths[0] / 2.0 * (totals[1] / widths[1] + totals[2] / widths[2])  # EANM eq. 8
    true_scatter = truth["tew"]["photopeak_scatter_counts"]
    assert estimate == pytest.approx(truth["tew"]["tew_scatter_estimate_noise_free"], rel=0.01)
    assert 0.0 < estimate / true_scatter - 1.0 < 0.05
    assert totals[0] == pytest.approx(truth["tew"]["photopeak_primary_counts"] + true_scatter, rel=0.01)


def test_chang_image_is_attenuated_as_the_analytic_cylinder_says(calibration_set):
    out, config, record, truth = calibration_set
    chang = truth["chang"]
    # At the centre of a uniform cylinder every path to the surface is the radius: exp(-mu R).
    analytic = math.exp(-chang["mu_per_cm"] * chang["body_outline"]["radius_mm"] / 10.0)
    ratio = chang["expected_nac_counts_at_centre_voxel"] / chang["attenuation_free_mean_counts_per_voxel"]
    assert ratio == pytest.approx(analytic, rel=0.015)
    nac = pydicom.dcmread(out / "chang" / "nac.dcm").pixel_array.astype(float)
    c = tuple(n // 2 for n in nac.shape)
    centre_block = nac[c[0] - 2:c[0] + 3, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + 2]
    assert centre_block.mean() == pytest.approx(chang["expected_nac_counts_at_centre_voxel"], rel=0.05)
    lower = pydicom.dcmread(out / "chang" / "lower_window.dcm")
    window = lower.EnergyWindowInformationSequence[0].EnergyWindowRangeSequence[0]
    assert float(window.EnergyWindowUpperLimit) == pytest.approx(327.6)


def test_osem_series_sharpens_and_gets_noisier_with_updates(calibration_set):
    _, _, record, truth = calibration_set
    recons = truth["osem"]["reconstructions"]
    assert [r["updates"] for r in recons] == [8, 16, 32, 64, 128]
    fwhm = [r["fwhm_mm"] for r in recons]
    noise = [r["background_relative_noise"] for r in recons]
    big = [r["recovery"]["S1"] for r in recons]
    assert fwhm == sorted(fwhm, reverse=True) and noise == sorted(noise) and big == sorted(big)
    # The reconstruction at the reference update number is the sphere image's resolution.
    assert recons[2]["recovery"] == pytest.approx(truth["recovery"], rel=1e-9)
    assert truth["recovery"]["S1"] > truth["recovery"]["S3"] > truth["recovery"]["S5"]


def test_command_line_writes_a_patient_and_refuses_bad_options(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    phantom_command.add_arguments(parser)
    args = parser.parse_args(["patient", "--out", str(tmp_path / "p"), "--matrix", "32", "--slices", "44",
                              "--voxel-mm", "8.8", "--timepoints-h", "24,72", "--lesion-diameters-mm", "30",
                              "--seed", "2"])
    with pytest.raises(ValueError, match="does not cover"):
        phantom_command.run(parser.parse_args(["patient", "--out", str(tmp_path / "q"), "--matrix", "16"]))
    assert not (tmp_path / "q").exists()
    with pytest.raises(ValueError, match="diameters"):
        phantom_command.run(parser.parse_args(["patient", "--out", str(tmp_path / "r"),
                                               "--lesion-diameters-mm", "80"]))
    assert phantom_command.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [tp["hours_after_administration"] for tp in summary["timepoints"]] == [24.0, 72.0]
    truth = json.loads((tmp_path / "p" / "truth.json").read_text())
    lesions = [s for s in truth["structures"] if s["kind"] == "lesion"]
    assert [(s["name"], s["diameter_mm"]) for s in lesions] == [("adrenal_primary", 30.0)]


def test_lesion_uptake_option_sets_the_amplitude_per_millilitre():
    lesions = anatomy.lesions_with_diameters((30.0, 10.0), (0.1, 0.2))
    body = anatomy.child_anatomy(5000.0, lesions)
    for spec, uptake in zip(lesions, (0.1, 0.2)):
        kinetics = body.structure(spec.name).kinetics
        volume_ml = math.pi / 6.0 * spec.diameter_mm ** 3 / 1000.0
        # A(t) = A_u (exp(-lc t) - exp(-lu t)): the first coefficient is the plateau amplitude.
        assert kinetics.coefficients_MBq[0] == pytest.approx(uptake / 100.0 * 5000.0 * volume_ml, rel=1e-12)
        assert kinetics.activity_MBq(0.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="one positive lesion uptake"):
        anatomy.lesions_with_diameters((30.0, 10.0), (0.1,))


def test_truth_far_photon_field_equals_direct_summation_over_the_whole_grid():
    """The truth's far field (photons from sources beyond the near kernel, out to the whole grid) by
    FFT equals the direct sum of the point kernel over every source voxel, at every voxel of the grid,
    also far outside the active region (no wrap-around)."""
    from MIBGDosimetryLib.phantoms import truth_dose

    rng = np.random.default_rng(1)
    tia = np.zeros((30, 20, 25))
    tia[8:14, 5:9, 10:18] = rng.uniform(size=(6, 4, 8))
    far = truth_dose.far_photon_dose_mGy(tia, 20.0, 1)
    sources = np.argwhere(tia > 0)
    weights = tia[tia > 0]
    for target in [(0, 0, 0), (29, 19, 24), (10, 6, 12), (10, 6, 14), (0, 19, 0), (25, 2, 20)]:
        offsets = np.array(target) - sources
        point = truth_dose.photon_point_kernel_mGy_per_MBq_s(np.linalg.norm(offsets, axis=1) * 2.0)
        direct = np.sum(weights * np.where(np.abs(offsets).max(axis=1) > 1, point, 0.0))
        assert far[target] == pytest.approx(direct, rel=1e-9, abs=1e-15), target
    assert far[0, 0, 0] > 0


def test_patient_variability_options_change_uptake_half_lives_and_organ_outlines_only_when_asked():
    exact = patient.simulate_patient(SMALL)
    assert set(exact.outline_shifts_mm.values()) == {0.0}
    varied = patient.simulate_patient(dataclasses.replace(SMALL, uptake_half_life_gsd=1.5, outline_error_sd_mm=2.0))
    nominal = {s.name: s.kinetics.rates_per_h for s in exact.anatomy.structures}
    factors = [nominal[s.name][1] / s.kinetics.rates_per_h[1] for s in varied.anatomy.structures]
    assert all(nominal[s.name][0] == s.kinetics.rates_per_h[0] for s in varied.anatomy.structures)
    assert np.std(np.log(factors)) > 0.1 and not np.allclose(factors, 1.0)
    # Noise, repositioning and CT come from their own streams: the same as without variability.
    np.testing.assert_array_equal(exact.timepoints[1].transform_ras_4x4, varied.timepoints[1].transform_ras_4x4)
    np.testing.assert_array_equal(exact.timepoints[1].ct_hu, varied.timepoints[1].ct_hu)
    # A delineated kidney grows or shrinks as its ellipsoid with every semi-axis moved by the drawn shift.
    organs = patient.delineated_organs(varied)
    kidney = varied.anatomy.structure("kidney_right")
    shift = varied.outline_shifts_mm["kidney_right"]
    assert abs(shift) > 1.0  # seed 7 draws -2.4 mm: the volume falls by about a third
    voxel_ml = SMALL_GRID.fine_voxel_mm ** 3 / 1000.0
    label = [s.name for s in varied.anatomy.structures].index("kidney_right") + 2
    exact_ml = np.count_nonzero(varied.reference_labels == label) * voxel_ml
    expected = np.prod(np.add(kidney.shape.semi_axes_mm, shift)) / np.prod(kidney.shape.semi_axes_mm)
    assert np.count_nonzero(organs["kidney_right"]) * voxel_ml / exact_ml == pytest.approx(expected, rel=0.08)


def test_an_outline_drawn_too_wide_takes_in_its_neighbours_only_by_the_shift():
    """An outline moved outwards covers the body within the shift of the organ, neighbouring organs
    included, and nothing farther: the lungs' ellipsoids enclose the heart, which the lungs' outline must
    not swallow whole. Lesions it leaves to the analysis' own outlines. Inwards, the outline stays inside
    the organ."""
    from scipy import ndimage

    varied = patient.simulate_patient(dataclasses.replace(SMALL, outline_error_sd_mm=1.0))
    names = [s.name for s in varied.anatomy.structures]
    varied.outline_shifts_mm.update({"lungs": 6.0, "kidney_right": 6.0, "liver": -6.0})
    organs = patient.delineated_organs(varied)
    labels = varied.reference_labels
    fine_mm = SMALL_GRID.fine_voxel_mm

    def exact(name):
        return labels == names.index(name) + 2

    heart_taken = organs["lungs"] & exact("heart")
    assert np.count_nonzero(heart_taken) > 0
    distance_mm = ndimage.distance_transform_edt(~exact("lungs"), sampling=fine_mm)
    assert distance_mm[heart_taken].max() <= 6.0 + 0.5 * np.sqrt(3) * fine_mm
    kidney = varied.anatomy.structure("kidney_right")
    expected = np.prod(np.add(kidney.shape.semi_axes_mm, 6.0)) / np.prod(kidney.shape.semi_axes_mm)
    grown = np.count_nonzero(organs["kidney_right"]) / np.count_nonzero(exact("kidney_right"))
    assert grown == pytest.approx(expected, rel=0.1)
    assert not np.any(organs["liver"] & ~exact("liver"))
    assert np.count_nonzero(organs["liver"]) < np.count_nonzero(exact("liver"))
    lesions = np.isin(labels, [n + 2 for n, s in enumerate(varied.anatomy.structures) if s.kind == "lesion"])
    assert lesions.any() and not any(np.any(mask & lesions) for mask in organs.values())
