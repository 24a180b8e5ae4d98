"""Phantom realisations for the z-score tier, run in worker processes (two at once on two cores).

Each realisation writes a study with its own seed, runs the whole dose calculation with the common
calibration record and returns what the test needs of results and truth; the study folder is then
removed. A function here is importable by a spawned worker, which a test module's function is not.
"""

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor

# Phantom options that make the errors the budget claims to cover (see test_uncertainty_zscores).

#: Organ outline error of the phantom's SEG (SD of each outline's outward shift, mm): the analysis' default
#: outline uncertainty for organs, so that the segmentation term meets the error it claims to cover.
OUTLINE_ERROR_SD_MM = 1.0
#: Between-patient spread of the phantom's uptake half-lives (geometric SD about each structure's nominal
#: value): the spread of the analysis' stated uptake prior (MIBGDosimetryLib.tac_extrapolation.UPTAKE_PRIOR,
#: 2 about its median), so that the before-first-scan term meets a population as wide as the one it
#: claims; the phantom's own nominal values per structure (0.5-2.5 h) stay, so its medians are not the
#: prior's. With a spread of 1.5 the term overstated (organ dose z std 0.57 without the outline changes).
UPTAKE_HALF_LIFE_GSD = 2.0


def write_image_domain_study(folder, seed):
    """A study of the image-domain phantom with three lesions of at least 4 mL (fewer VOIs keep a
    realisation affordable)."""
    from MIBGDosimetryLib.phantoms import anatomy, patient

    lesions = anatomy.lesions_with_diameters((40.0, 25.0, 22.0))
    patient.write_patient_study(folder, patient.PatientConfig(
        seed=seed, lesions=lesions, uptake_half_life_gsd=UPTAKE_HALF_LIFE_GSD, outline_error_sd_mm=OUTLINE_ERROR_SD_MM))


def realistic_grid():
    """The realistic tier's grid with the projections simulated on the SPECT voxels (no finer grid):
    four times faster, so that 20 realisations fit in CI; calibration and patients share it."""
    from MIBGDosimetryLib.phantoms.grid import PhantomGrid

    return PhantomGrid(64, 88, 4.42, 1)


def write_realistic_calibration(folder):
    from MIBGDosimetryLib.phantoms import calibration
    from MIBGDosimetryLib.phantoms.grid import PhantomGrid
    from MIBGDosimetryLib.phantoms.realistic import calibration_set

    base = calibration.CalibrationConfig(seed=9200, grid=PhantomGrid(64, 64, 4.42, 1), osem_updates=(16, 32))
    calibration_set.write_realistic_calibration_set(folder, calibration_set.RealisticCalibrationConfig(base=base))


def write_realistic_study(folder, seed):
    from MIBGDosimetryLib.phantoms.realistic import patient_study

    patient_study.write_realistic_patient_study(folder, patient_study.RealisticPatientConfig(
        seed=seed, grid=realistic_grid(), uptake_half_life_gsd=UPTAKE_HALF_LIFE_GSD,
        outline_error_sd_mm=OUTLINE_ERROR_SD_MM))


def calibrate(folder):
    """Calibrate the calibration phantom written in ``folder``/phantom into ``folder``/calibration.json;
    returns ``(record path, record Q / true Q)``."""
    from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs

    phantom, record_path = os.path.join(folder, "phantom"), os.path.join(folder, "calibration.json")
    result = calibrate_phantom_folder(phantom, log=lambda *_: None)
    write_outputs(result, record_path)
    with open(os.path.join(phantom, "truth.json")) as stream:
        truth = json.load(stream)
    return record_path, result.record.calibration_factor_cps_per_MBq / truth["Q_cps_per_MBq"]


def _realisation(writer, folder, seed, record_path):
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    study = os.path.join(folder, f"study-{seed}")
    try:
        writer(study, seed)
        calculation = run_dose(study, record_path, log=lambda *_: None)
        with open(os.path.join(study, "truth.json")) as stream:
            truth = json.load(stream)
        return calculation.results, truth
    finally:
        shutil.rmtree(study, ignore_errors=True)


def run_realisations(writer, folder, seeds, record_path, workers=2):
    """``[(results, truth)]`` of the realisations ``seeds`` in order, ``workers`` at a time."""
    if workers <= 1:
        return [_realisation(writer, folder, seed, record_path) for seed in seeds]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_realisation, writer, str(folder), seed, record_path) for seed in seeds]
        return [future.result() for future in futures]


def write_details(path, runs, q_ratio):
    """Each realisation's VOIs with their values, truth and budget terms (JSON), to look at a tier's
    z-scores term by term; ``q_ratio`` is the record's calibration factor over the true one."""
    details = {"record_Q_over_true_Q": q_ratio, "realisations": []}
    for results, truth in runs:
        structures = {s["name"]: s for s in truth["structures"]}
        details["realisations"].append([
            {"name": voi["name"], "kind": structures[voi["name"]]["kind"],
             **{key: voi.get(key) for key in ("volume_ml", "tia_MBq_h", "tia_uncertainty_MBq_h", "mean_dose_Gy",
                                               "dose_uncertainty_Gy", "uncertainty_budget")},
             "truth": {key: structures[voi["name"]].get(key) for key in ("volume_ml", "tia_MBq_h", "mean_dose_Gy")}}
            for voi in results["vois"]])
    with open(path, "w") as stream:
        json.dump(details, stream, indent=1)
