"""The end-to-end demonstration run by ``mibgdose demo`` (and ``make demo``).

It generates its own data with known truth and runs the whole workflow on it:

1. a calibration phantom set (Jaszczak cylinder, sphere inserts, dead-time series, OSEM series,
   TEW projections, Chang images) and its calibration into a calibration record;
2. a patient study (sequential SPECT/CT of a child with neuroblastoma);
3. the dose calculation: registration, VOIs, activities, time-activity curves, voxel dose, DVH,
   BED/EUD and uncertainties, with the Slicer scene, RT Dose, SEG and report;
4. a comparison of the calibration and of the doses against the phantoms' truth.

The demonstration passes when every compared figure is within its stated tolerance; the
tolerances are those the extension claims (calibration factor 2 %, dead time 5 %, mean doses of
organs and of lesions of at least 4 mL 10 %).
"""

import json
import os

from MIBGDosimetryLib import __version__

#: (figure, relative tolerance) of the calibration comparison.
CALIBRATION_TOLERANCES = {"calibration_factor": 0.02, "dead_time": 0.05}
DOSE_TOLERANCE = 0.10
#: Lesions smaller than this (mL) are reported but not held to the dose tolerance.
MIN_LESION_VOLUME_ML = 4.0
COMPARISON_FIELDS = ["name", "kind", "true_volume_ml", "volume_ml", "true_tia_MBq_h", "tia_MBq_h",
                     "true_mean_dose_Gy", "mean_dose_Gy", "dose_uncertainty_Gy", "relative_error", "tolerance",
                     "within_tolerance"]


def run_demo(out_dir, seed=1, log=print):
    """Run the demonstration into ``out_dir``; return a summary dict (``passed`` says whether every
    compared figure is within tolerance)."""
    from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs as write_record
    from MIBGDosimetryLib.phantoms import calibration, patient
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose
    from MIBGDosimetryLib.workflow.outputs import write_outputs

    out_dir = os.path.abspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise ValueError(f"The demo output folder {out_dir} is not empty; choose a new folder or remove it.")
    phantom_dir = os.path.join(out_dir, "calibration-phantom")
    study_dir = os.path.join(out_dir, "patient-study")
    record_path = os.path.join(out_dir, "calibration.json")
    dose_dir = os.path.join(out_dir, "dose")

    log(f"1/4 Writing the calibration phantom set to {phantom_dir}")
    calibration.write_calibration_set(phantom_dir, calibration.CalibrationConfig(seed=seed))
    log("2/4 Calibrating (Q, recovery, dead time, TEW, Chang, OSEM updates, adaptive threshold)")
    result = calibrate_phantom_folder(phantom_dir, log=lambda line: log(f"    {line}"))
    write_record(result, record_path)
    log(f"    calibration record: {record_path}")
    log(f"3/4 Writing the patient study to {study_dir}")
    patient.write_patient_study(study_dir, patient.PatientConfig(seed=seed))
    log("4/4 Dose calculation")
    calculation = run_dose(study_dir, record_path, DoseOptions(), log=lambda line: log(f"    {line}"))
    written = write_outputs(calculation, dose_dir, log=lambda line: log(f"    {line}"))

    calibration_rows = compare_calibration(result.record, _read_json(os.path.join(phantom_dir, "truth.json")))
    dose_rows = compare_doses(calculation.results, _read_json(os.path.join(study_dir, "truth.json")))
    comparison_path = os.path.join(out_dir, "truth-comparison.tsv")
    _write_comparison(dose_rows, comparison_path)
    for line in format_table(calibration_rows, dose_rows):
        log(line)
    passed = all(r["within_tolerance"] for r in calibration_rows) and all(
        r["within_tolerance"] for r in dose_rows if r["tolerance"] is not None)
    summary = {"software_version": __version__, "calibration_record": record_path, "study": study_dir,
               "outputs": written, "scene": written["scene"], "results": written["results"],
               "truth_comparison": comparison_path, "calibration_comparison": calibration_rows,
               "passed": passed}
    with open(os.path.join(out_dir, "demo-summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log("All compared figures are within tolerance." if passed else "SOME FIGURES ARE OUT OF TOLERANCE.")
    return summary


def compare_calibration(record, truth):
    """Calibration factor and dead time against the calibration phantom's truth."""
    rows = []
    for name, measured, true in (("calibration_factor", record.calibration_factor_cps_per_MBq, truth["Q_cps_per_MBq"]),
                                 ("dead_time", record.dead_time_s, truth["tau_s"])):
        error = measured / true - 1.0
        tolerance = CALIBRATION_TOLERANCES[name]
        rows.append({"name": name, "measured": measured, "true": true, "relative_error": error,
                     "tolerance": tolerance, "within_tolerance": bool(abs(error) <= tolerance)})
    return rows


def compare_doses(results, truth):
    """Per VOI: volume, TIA and mean dose against the patient phantom's truth (matched by name)."""
    structures = {s["name"]: s for s in truth["structures"]}
    rows = []
    for voi in results["vois"]:
        true = structures.get(voi["name"])
        if true is None:
            continue
        error = voi["mean_dose_Gy"] / true["mean_dose_Gy"] - 1.0
        held = true["kind"] == "organ" or true["volume_ml"] >= MIN_LESION_VOLUME_ML
        rows.append({"name": voi["name"], "kind": true["kind"], "true_volume_ml": true["volume_ml"],
                     "volume_ml": voi["volume_ml"], "true_tia_MBq_h": true["tia_MBq_h"], "tia_MBq_h": voi["tia_MBq_h"],
                     "true_mean_dose_Gy": true["mean_dose_Gy"], "mean_dose_Gy": voi["mean_dose_Gy"],
                     "dose_uncertainty_Gy": voi["dose_uncertainty_Gy"], "relative_error": error,
                     "tolerance": DOSE_TOLERANCE if held else None,
                     "within_tolerance": bool(abs(error) <= DOSE_TOLERANCE) if held else None})
    return rows


def format_table(calibration_rows, dose_rows):
    lines = ["", "Calibration against the phantom truth:"]
    for r in calibration_rows:
        lines.append(f"  {r['name']:<20} measured {r['measured']:.6g}  true {r['true']:.6g}  "
                     f"error {100 * r['relative_error']:+.1f} %  (tolerance {100 * r['tolerance']:.0f} %)  "
                     f"{'ok' if r['within_tolerance'] else 'OUT OF TOLERANCE'}")
    lines += ["", "Mean absorbed dose against the patient phantom truth:",
              f"  {'VOI':<30}{'true mL':>9}{'mL':>9}{'true Gy':>10}{'Gy':>10}{'+/- Gy':>9}{'error':>9}  verdict"]
    for r in dose_rows:
        verdict = ("ok" if r["within_tolerance"] else "OUT OF TOLERANCE") if r["tolerance"] is not None else \
            f"(lesion < {MIN_LESION_VOLUME_ML:g} mL, not held to the tolerance)"
        lines.append(f"  {r['name']:<30}{r['true_volume_ml']:9.1f}{r['volume_ml']:9.1f}{r['true_mean_dose_Gy']:10.2f}"
                     f"{r['mean_dose_Gy']:10.2f}{r['dose_uncertainty_Gy']:9.2f}{100 * r['relative_error']:+8.1f}%  {verdict}")
    return lines


def _write_comparison(rows, path):
    with open(path, "w") as f:
        f.write("\t".join(COMPARISON_FIELDS) + "\n")
        for r in rows:
            f.write("\t".join("" if r[k] is None else str(r[k]) for k in COMPARISON_FIELDS) + "\n")


def _read_json(path):
    with open(path) as f:
        return json.load(f)
