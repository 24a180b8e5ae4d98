"""The realistic 131I SPECT phantoms (MIBGDosimetryLib.phantoms.realistic): the generator checked
against analytic physics and published ranges, then the calibration chain and the dose workflow run
unchanged on its DICOM, their results compared with the analytic truth.

The whole tier is marked ``realistic`` (``pytest -m realistic``; ``-m "not realistic"`` leaves it
out). The calibration set and the patient study are generated, calibrated and dosed once per session
(about four minutes on an idle core, seven on a busy two-core machine).
"""

import json
import math
import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.realistic


@pytest.fixture(scope="session")
def realistic_run(tmp_path_factory):
    from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs
    from MIBGDosimetryLib.phantoms.realistic import calibration_set, patient_study
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    out = tmp_path_factory.mktemp("realistic")
    calibration_dir, study_dir, record = out / "calibration", out / "patient", out / "calibration.json"
    calibration_set.write_realistic_calibration_set(str(calibration_dir))
    write_outputs(calibrate_phantom_folder(str(calibration_dir)), str(record))
    patient_study.write_realistic_patient_study(str(study_dir))
    calculation = run_dose(str(study_dir), str(record), log=lambda *_: None)
    return {"calibration_dir": calibration_dir, "study_dir": study_dir, "record_path": record,
            "record": json.loads(record.read_text()), "results": calculation.results,
            "calibration_truth": json.loads((calibration_dir / "truth.json").read_text()),
            "truth": json.loads((study_dir / "truth.json").read_text())}


#: Noise seed of the patient on which the accuracy targets are asserted, used by no other test and
#: never for developing the analysis (seed 1 was).
UNSEEN_SEED = 41


@pytest.fixture(scope="session")
def unseen_run(realistic_run, tmp_path_factory):
    """The realistic patient with another noise, motion and CT-noise realisation, dosed with the same
    calibration (about two more minutes)."""
    from MIBGDosimetryLib.phantoms.realistic import patient_study
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    study_dir = tmp_path_factory.mktemp("realistic-unseen") / "patient"
    patient_study.write_realistic_patient_study(str(study_dir), patient_study.RealisticPatientConfig(seed=UNSEEN_SEED))
    calculation = run_dose(str(study_dir), str(realistic_run["record_path"]), log=lambda *_: None)
    return {"results": calculation.results, "truth": json.loads((study_dir / "truth.json").read_text())}


# --- the generator against physics it must reproduce ----------------------------------------------

def _water_cylinder(shape, voxel_mm, radius_mm):
    """mu (1/mm) of a water cylinder about the rotation axis, voxelised with its edge at ``radius_mm``
    (voxel centres within radius - voxel / 2)."""
    from MIBGDosimetryLib.phantoms.realistic import attenuation_map

    j, i = np.indices(shape[1:])
    centre = (np.array(shape[1:]) - 1) / 2.0
    inside = np.hypot(j - centre[0], i - centre[1]) * voxel_mm <= radius_mm - voxel_mm / 2.0
    return np.broadcast_to(inside * attenuation_map.WATER_MU_PER_MM, shape).copy()


def test_photon_yields_are_the_library_ones():
    from MIBGDosimetryLib.phantoms.realistic import spectrum

    assert spectrum.YIELD_364 == pytest.approx(0.817, abs=1e-3)
    assert spectrum.YIELD_284 / spectrum.YIELD_364 == pytest.approx(0.0751, abs=1e-3)
    assert spectrum.YIELD_HIGH / spectrum.YIELD_364 == pytest.approx(0.1095, abs=1e-3)


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 45.0])
def test_point_source_in_water_cylinder_gives_sensitivity_times_narrow_beam_attenuation(angle_deg):
    """Point source at the centre of a 99 mm radius water cylinder: geometric photopeak counts =
    S x A x exp(-mu R) (mu of water at 364 keV, NIST XCOM 0.1100 cm2/g), penetration adds its fraction."""
    from MIBGDosimetryLib.phantoms.realistic import collimator, projector

    voxel_mm, radius_mm = 2.0, 99.0
    shape = (141, 141, 141)
    activity = np.zeros(shape)
    activity[70, 70, 70] = 1.0
    view = projector.simulate_view(activity, _water_cylinder(shape, voxel_mm, radius_mm), voxel_mm, angle_deg, 200.0)
    expected = math.exp(-0.1100 * radius_mm / 10.0)
    assert view.geometric_364.sum() == pytest.approx(expected, rel=0.01)
    assert view.penetration_364.sum() == pytest.approx(collimator.PENETRATION_FRACTION * expected, rel=0.02)
    # Body scatter must exist and must not dominate a 10 cm depth in the photopeak window.
    assert 0.15 < view.object_scatter.sum() / view.geometric_364.sum() < 0.6


def _fwhm_mm(profile, pixel_mm):
    peak = int(np.argmax(profile))
    half = profile[peak] / 2.0
    left = peak - np.argmax(profile[peak::-1] < half)
    right = peak + np.argmax(profile[peak:] < half)
    left_x = left + (half - profile[left]) / (profile[left + 1] - profile[left])
    right_x = right - 1 + (profile[right - 1] - half) / (profile[right - 1] - profile[right])
    return (right_x - left_x) * pixel_mm


def test_line_source_fwhm_grows_linearly_with_distance_as_an_hegp_collimator():
    """Line sources in air along the rotation axis direction at 50-300 mm from the collimator face:
    the measured FWHM follows the geometric formula, grows linearly and is 12-14 mm at 10 cm, the
    system resolution that manufacturer data sheets quote for HEGP collimators at 364 keV."""
    from MIBGDosimetryLib.phantoms.realistic import collimator, projector

    voxel_mm, orbit_mm = 2.0, 210.0
    shape = (40, 201, 121)
    measured = {}
    for distance in (50.0, 100.0, 200.0, 300.0):
        activity = np.zeros(shape)
        activity[:, int(round(100 + (distance - orbit_mm) / voxel_mm)), 60] = 1.0
        view = projector.simulate_view(activity, np.zeros(shape), voxel_mm, 0.0, orbit_mm)
        measured[distance] = _fwhm_mm(view.window(0)[20], voxel_mm)
        assert measured[distance] == pytest.approx(float(collimator.fwhm_mm(distance)), rel=0.05), distance
    assert 12.0 <= measured[100.0] <= 14.0
    slope_near = (measured[200.0] - measured[100.0]) / 100.0
    slope_far = (measured[300.0] - measured[200.0]) / 100.0
    assert slope_near == pytest.approx(slope_far, rel=0.1)
    assert slope_near > 0.05


def test_scatter_fraction_of_the_water_cylinder_lies_in_the_published_range(realistic_run):
    """Photopeak-window scatter (body scatter and down-scatter) of the 20 cm water cylinder: Monte
    Carlo studies of 131I with high-energy collimators (e.g. Dewaraja et al., J Nucl Med
    2000;41:123-130) find scatter a large minority of photopeak events in water phantoms; we accept
    10-45 %. TEW (EANM eq. 8) must estimate it with the bias of a non-linear spectrum (neither exact
    nor off by more than a third)."""
    truth = realistic_run["calibration_truth"]
    assert 0.10 <= truth["jaszczak"]["photopeak_scatter_fraction"] <= 0.45
    assert 0.03 <= abs(truth["tew"]["tew_scatter_estimate_relative_error"]) <= 0.33


def test_dead_time_loss_follows_the_detected_rate_of_each_view(realistic_run):
    """Higher activity, more loss; the photopeak-equivalent tau exceeds the detector's by the ratio of
    all processed events to photopeak events."""
    truth = realistic_run["truth"]
    survival = [tp["dead_time_survival_fraction"] for tp in truth["timepoints"]]
    assert survival == sorted(survival)
    assert 0.80 < survival[0] < 0.95
    calibration = realistic_run["calibration_truth"]
    assert calibration["tau_s"] / calibration["detector_dead_time_s"] > 3.0


def test_realistic_dicom_validates_and_keeps_the_layout_of_the_image_domain_phantoms(realistic_run):
    study, calibration = realistic_run["study_dir"], realistic_run["calibration_dir"]
    assert sorted(p.name for p in study.iterdir()) == ["seeds.mrk.json", "segmentation.dcm", "tp1", "tp2", "tp3",
                                                       "tp4", "tp5", "truth.json"]
    assert sorted(p.name for p in calibration.iterdir()) == ["chang", "deadtime", "jaszczak", "osem", "phantom.json",
                                                             "spheres", "spheres_32to1", "tew", "truth.json"]
    for path in (study / "tp1" / "spect.dcm", calibration / "tew" / "projections.dcm",
                 calibration / "deadtime" / "step_01.dcm"):
        done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], path


# --- the calibration chain on realistic acquisitions ------------------------------------------------

def test_calibration_factor_and_dead_time_from_realistic_acquisitions(realistic_run):
    """Q against the camera's true photopeak sensitivity: measured -4.0 %, mostly the reconstruction's
    TEW over-estimate of the cylinder's scatter (+17 %), which no calibration removes (the patient's
    reconstructions share it, so it cancels in part); tau within 5 % (measured -0.1 %)."""
    record, truth = realistic_run["record"], realistic_run["calibration_truth"]
    q_error = record["calibration_factor_cps_per_MBq"] / truth["Q_cps_per_MBq"] - 1.0
    tau_error = record["dead_time_s"] / truth["tau_s"] - 1.0
    assert abs(q_error) <= 0.05, q_error
    assert abs(tau_error) <= 0.05, tau_error


def test_the_calibration_record_states_the_reconstruction_and_the_study_matches_it(realistic_run):
    """Calibration and patient are reconstructed alike (OSEM 4 x 8, 64 x 64 grid of 4.42 mm, TEW
    windows): the record states grid, label and updates, and the study raises no mismatch."""
    record = realistic_run["record"]
    assert record["image_grid"] == {"matrix_ij": [64, 64], "voxel_size_mm": [4.42, 4.42, 4.42]}
    assert record["post_filter"] == "OSEM 4i8s ACSC"
    assert record["reconstruction"]["updates"] == 32
    mismatches = [w for w in realistic_run["results"]["warnings"] if w.startswith("calibration match:")]
    assert mismatches == []


# --- the dose workflow on the realistic patient -------------------------------------------------------

def _errors(realistic_run):
    truth = {s["name"]: s for s in realistic_run["truth"]["structures"]}
    rows = {}
    for voi in realistic_run["results"]["vois"]:
        true = truth[voi["name"]]
        rows[voi["name"]] = {"kind": true["kind"], "true_volume_ml": true["volume_ml"],
                             "tia": voi["tia_MBq_h"] / true["tia_MBq_h"] - 1.0,
                             "dose": voi["mean_dose_Gy"] / true["mean_dose_Gy"] - 1.0,
                             "volume": voi["volume_ml"] / true["volume_ml"] - 1.0}
    return truth, rows


def test_organ_time_integrated_activities_within_10_percent(realistic_run):
    """The quantification chain (Q, dead time, registration, TAC) on organs of 30 mL or more:
    measured on seed 1 -5.3 % (bladder) to +4.1 % (left kidney)."""
    truth, rows = _errors(realistic_run)
    organs = [name for name, s in truth.items() if s["kind"] == "organ" and s["volume_ml"] >= 30.0]
    assert len(organs) == 6
    errors = {name: rows[name]["tia"] for name in organs}
    assert all(abs(e) <= 0.10 for e in errors.values()), errors


def test_every_seeded_lesion_is_reported(realistic_run):
    """A lesion the user seeded never disappears silently: it has a result or a warning naming it."""
    truth, rows = _errors(realistic_run)
    lesions = {name for name, s in truth.items() if s["kind"] == "lesion"}
    named_in_warnings = {name for name in lesions
                         if any(name in w for w in realistic_run["results"]["warnings"])}
    assert lesions <= set(rows) | named_in_warnings


def test_organ_doses_within_10_percent_on_an_unseen_noise_realisation(unseen_run):
    """Organs of 30 mL or more (mean dose from the whole-map kernel against the truth's):
    measured on seed 41 -5.8 % (bladder) to +2.7 % (liver)."""
    truth, rows = _errors(unseen_run)
    organs = [name for name, s in truth.items() if s["kind"] == "organ" and s["volume_ml"] >= 30.0]
    assert len(organs) == 6
    errors = {name: rows[name]["dose"] for name in organs}
    assert all(abs(e) <= 0.10 for e in errors.values()), errors


def test_bone_lesion_volumes_within_20_percent_on_an_unseen_noise_realisation(unseen_run):
    """Hot bone lesions (image contrast 35-40) outlined with the threshold model over volume and
    contrast: measured on seed 41 spine +2.3 %, pelvis +2.7 % (with fractions from the 8:1 spheres
    alone they were -84 % and -88 % on seed 1). The spine's only self-consistent region lies below the
    smallest insert, so its outline is the calibrated region closest to consistency, and says so."""
    truth, rows = _errors(unseen_run)
    bones = [name for name in truth if name.startswith("bone_met")]
    assert len(bones) == 2
    errors = {name: rows[name]["volume"] for name in bones}
    assert all(abs(e) <= 0.20 for e in errors.values()), errors
    spine = next(v for v in unseen_run["results"]["vois"] if v["name"] == "bone_met_spine")
    assert any("smaller than the smallest calibrated insert" in w for w in spine["warnings"])


def test_lesions_imaged_below_the_calibrated_contrast_take_the_contrast_consistent_outline(unseen_run):
    """The elongated para-aortic node (6.1 mL ellipsoid) images at half the contrast of an 8:1 sphere of
    its self-consistent region (21 mL: +243 % before the contrast check); the region at the fraction of
    the calibrated sphere with its contrast: measured +21 % on seed 41. Its segmentation uncertainty
    holds the distance between both readings (measured 55 %), so the volume error lies within it; the
    bone lesions image above the calibrated contrast and keep their self-consistent outlines."""
    truth, rows = _errors(unseen_run)
    vois = {v["name"]: v for v in unseen_run["results"]["vois"]}
    node = vois["soft_tissue_met_paraaortic"]
    check = node["adaptive_threshold"]["contrast_check"]
    assert check["used"] and check["shortfall"] > 0.3
    true_ml = truth["soft_tissue_met_paraaortic"]["volume_ml"]
    assert check["self_consistent_volume_ml"] > 2.0 * true_ml
    assert abs(rows["soft_tissue_met_paraaortic"]["volume"]) <= 0.25
    assert any("contrast-consistent" in w or "calibrated sphere with its contrast" in w for w in node["warnings"])
    segmentation = next(t for t in node["uncertainty_budget"] if t["term"] == "segmentation (volume)")
    assert abs(rows["soft_tissue_met_paraaortic"]["volume"]) <= 2.0 * segmentation["relative_uncertainty"]
    for name in ("bone_met_spine", "bone_met_pelvis"):
        assert vois[name]["adaptive_threshold"]["contrast_check"] is None


def test_compact_spheres_of_lower_uptake_lie_between_the_two_readings(tmp_path):
    """The limit of the contrast check: a compact sphere of an uptake ratio below the lowest calibrated
    one images below the calibrated contrast as well, and the contrast-consistent outline is then too
    small. Spheres of 4.2-33.5 mL filled 4:1, delineated with the model calibrated at 8:1 and 32:1 on
    the same phantom: measured -43 % to -53 % by the contrast reading and +16 % to +685 % by the
    self-consistent one. The true volume lies between the two, which the segmentation uncertainty
    spans (a rectangular distribution over their distance)."""
    from MIBGCalibrationLib import dicom_files
    from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs
    from MIBGCalibrationLib.record import CalibrationRecord
    from MIBGDosimetryLib.phantoms import calibration
    from MIBGDosimetryLib.phantoms.grid import PhantomGrid
    from MIBGDosimetryLib.phantoms.realistic import calibration_set
    from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask

    folder, record_path = tmp_path / "calibration", tmp_path / "calibration.json"
    base = calibration.CalibrationConfig(seed=9300, grid=PhantomGrid(64, 64, 4.42, 1), osem_updates=(16, 32))
    calibration_set.write_realistic_calibration_set(str(folder), calibration_set.RealisticCalibrationConfig(
        base=base, threshold_backgrounds_MBq_per_ml=(0.0025, 0.02)))
    description = json.loads((folder / "phantom.json").read_text())
    low = [s for s in description["threshold_spheres"] if s["background_concentration_MBq_per_ml"] == 0.02]
    assert len(low) == 1
    description["threshold_spheres"] = [s for s in description["threshold_spheres"] if s not in low]
    (folder / "phantom.json").write_text(json.dumps(description))
    write_outputs(calibrate_phantom_folder(str(folder), log=lambda *_: None), str(record_path))
    model = CalibrationRecord.from_json(str(record_path)).threshold_model
    assert model.lowest_row_contrast(10.0) is not None

    image = dicom_files.read_nm_tomo(str(folder / low[0]["series_dir"] / low[0]["file"]))
    checked = 0
    for insert in low[0]["inserts"]:
        if not 4.0 <= insert["volume_ml"] <= 40.0:
            continue
        _, info = adaptive_threshold_mask(image, seed_ras_mm=insert["centre_ras_mm"], model=model)
        check, true_ml = info["contrast_check"], insert["volume_ml"]
        assert check is not None and check["used"], (insert["name"], info["contrast"])
        assert info["volume_ml"] < true_ml < check["self_consistent_volume_ml"], (insert["name"], info["volume_ml"])
        spread = abs(check["self_consistent_volume_ml"] - info["volume_ml"]) / info["volume_ml"] / math.sqrt(12.0)
        assert abs(info["volume_ml"] / true_ml - 1.0) <= 2.0 * spread, (insert["name"], info["volume_ml"], spread)
        checked += 1
    assert checked == 3


@pytest.mark.xfail(strict=True, reason=(
    "measured on seed 41, truth dose with a 100 mm kernel reach: organs lungs -3.4 %, liver +2.7 %, heart -1.6 %, "
    "kidneys -0.4/+1.6 %, bladder -5.8 %, salivary glands +10.9 % (the glands, over-corrected by +6 % at the first "
    "time point on seed 1, are under-corrected at the later ones, which image them more widely); lesions of 4 mL or "
    "more: adrenal primary (irregular, 27 mL) dose +11 % volume +2 %, para-aortic (elongated, 6 mL) dose -17 % "
    "volume +21 %, necrotic mass (27 mL) dose -2 % volume +26 %, spine bone metastasis (4 mL) dose +2 % volume +2 % "
    "and pelvic bone metastasis (9 mL) dose +7 % volume +3 %. The soft-tissue lesions image below the contrast of "
    "the 8:1 spheres of their self-consistent regions and take the contrast-consistent outline (before: adrenal "
    "volume +12 %, para-aortic +243 %, necrotic +36 %); that outline is still that of a sphere, while the elongated "
    "and hollow lesions need a higher fraction still (on seeds 1 and 2 the para-aortic node's true volume lies at "
    "fraction 0.45-0.46 where the contrast-consistent reading gives 0.41, the necrotic mass's at 0.24-0.25 where "
    "it gives 0.19; see MIBGDosimetryLib.segmentation.adaptive_threshold)"))
def test_issue_accuracy_targets(unseen_run):
    """Organs within 10 %, lesions of 4 mL or more within 15 % of the true mean dose, their volumes
    within 20 %, on a noise realisation the analysis was not developed on."""
    truth, rows = _errors(unseen_run)
    failures = []
    for name, s in truth.items():
        if s["kind"] == "organ":
            if name not in rows or abs(rows[name]["dose"]) > 0.10:
                failures.append((name, rows.get(name)))
        elif s["volume_ml"] >= 4.0:
            row = rows.get(name)
            if row is None or abs(row["dose"]) > 0.15 or abs(row["volume"]) > 0.20:
                failures.append((name, row))
    assert failures == []


def test_gtm_and_the_recovery_curve_both_hold_on_the_organs(realistic_run):
    """The same study and calibration with the recovery-curve correction (EANM eq. 9) instead of the
    GTM: every organ of 30 mL or more within 10 % with the GTM, and the organs the curve corrects
    (compact ones within the calibrated volumes; the others take GTM activities in both runs) within
    10 % with either method. Measured on seed 1: heart and bladder -2.1 % and -5.3 % with the GTM,
    +4.8 % and -6.8 % with the recovery curve (neither method is the better on both); all organs of
    30 mL or more -5.3 % to +4.1 % with the GTM; salivary glands (14 mL) +9.6 % (+28 % before the GTM
    measured the PSF width around VOIs under 30 mL)."""
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose

    recovery = run_dose(str(realistic_run["study_dir"]), str(realistic_run["record_path"]),
                        DoseOptions(partial_volume="recovery"), log=lambda *_: None).results
    truth = {s["name"]: s for s in realistic_run["truth"]["structures"]}
    organs = [name for name, s in truth.items() if s["kind"] == "organ" and s["volume_ml"] >= 30.0]
    by_curve = [name for name in organs if name not in recovery["partial_volume"]["recovery_curve_not_applied"]]
    assert len(by_curve) >= 2

    def worst(results, names):
        rows = {v["name"]: v for v in results["vois"]}
        return max(abs(rows[name]["tia_MBq_h"] / truth[name]["tia_MBq_h"] - 1.0) for name in names)

    assert worst(realistic_run["results"], organs) <= 0.10
    assert worst(recovery, by_curve) <= 0.10


def test_gtm_resolution_uncertainty_covers_profile_and_recovery_estimates(realistic_run):
    """OSEM's resolution is not Gaussian: the profile fit of the spheres (13.6 mm on seed 1) and the
    FWHM that reproduces their recoveries (12.8 mm) differ by far more than the profile fit's own
    uncertainty (0.04 mm); the GTM's stated FWHM uncertainty covers that difference."""
    from MIBGCalibrationLib.resolution import fwhm_from_recoveries, recovery_background_ratio

    record = realistic_run["record"]
    inserts = record["recovery_inserts"]
    from_recoveries, _ = fwhm_from_recoveries([i["volume_ml"] for i in inserts], [i["recovery"] for i in inserts],
                                              recovery_background_ratio(record.get("details")))
    gtm = realistic_run["results"]["partial_volume"]
    assert gtm["fwhm_mm"] == pytest.approx(record["resolution_fwhm_mm"])
    assert abs(from_recoveries - gtm["fwhm_mm"]) > 5 * record["resolution_fwhm_mm_uncertainty"]
    assert gtm["fwhm_uncertainty_mm"] >= abs(from_recoveries - gtm["fwhm_mm"])


# --- the command line ---------------------------------------------------------------------------------

def test_phantom_command_writes_a_realistic_calibration_set(tmp_path, capsys):
    from MIBGDosimetryLib.cli import main

    out = tmp_path / "calibration"
    assert main(["phantom", "calibration", "--realistic", "--out", str(out), "--matrix", "32", "--slices", "32",
                 "--voxel-mm", "8", "--fine-factor", "1", "--sphere-diameters-mm", "60,40", "--iterations", "2",
                 "--subsets", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["generator"] == "realistic"
    record = json.loads((out / "phantom.json").read_text())
    assert [r["updates"] for r in record["osem"]["reconstructions"]] == [4, 8, 16, 32]
    assert record["camera"]["model"].startswith("Virtual gamma camera (projection model)")
    assert len(list((out / "deadtime").glob("step_*.dcm"))) == 11


def test_phantom_command_refuses_lesion_diameters_for_the_realistic_patient(tmp_path, capsys):
    from MIBGDosimetryLib.cli import main

    out = tmp_path / "patient"
    assert main(["phantom", "patient", "--realistic", "--out", str(out), "--lesion-diameters-mm", "20"]) == 2
    assert "--lesion-contrast" in capsys.readouterr().err
    assert not out.exists()
