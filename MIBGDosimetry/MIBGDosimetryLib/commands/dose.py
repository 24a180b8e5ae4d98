"""``mibgdose dose``: absorbed doses of a sequential SPECT/CT study with a calibration record."""

import argparse
import json
import os

from MIBGDosimetryLib.segmentation.segment_vois import RULE_TEXT

NAME = "dose"
HELP = "compute absorbed doses per VOI and per voxel for a SPECT/CT study and write results, scene, RT Dose, SEG and report"
EPILOG = """Outputs are published as one unit: they are written into a hidden staging folder beside --out,
checked, and then take the place of --out by one rename. If --out already holds the results of an
earlier run, those are kept beside it as OUT.previous-<UTC time> (never mixed with the new ones);
a folder holding other files is refused. A lock file .OUT.lock (with the process id) refuses a second
run into the same folder while the first runs; staging folders and locks of killed runs are cleaned
up by the next run. Output folders are marked (mibgdose-output.json) and never read as study input.
Before the calculation the output folder, the reference index, the calibration record, unreadable
study files, the SPECT images, CT coverage and the memory needed are checked."""


def add_arguments(parser):
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="folder with the sequential SPECT/CT study (DICOM)")
    parser.add_argument("--calibration", required=True, help="calibration record (JSON) from 'mibgdose calibrate'")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--reference", type=int, default=0,
                        help="index of the reference time point (0 = first; organ outlines are on its CT)")
    parser.add_argument("--tac-model", default="auto", choices=["auto", "mono", "bi", "tri", "trapezoid"],
                        help="time-activity model of the VOIs (default auto: AICc)")
    parser.add_argument("--voxel-model", default="auto", choices=["auto", "mono", "bi", "tri", "trapezoid"],
                        help="time-activity model of the voxels (default auto: the kinetics of the voxel's VOI "
                             "with the voxel's own amplitude)")
    parser.add_argument("--tac-head", default=None,
                        choices=["extrapolate", "linear", "midpoint", "uptake", "fitted", "prior"],
                        help="activity before the first scan (default: the expectation over the uptake half-time "
                             "prior of the VOI class, the fitted uptake of bi/tri, or the uptake of "
                             "--uptake-half-life-h when given)")
    parser.add_argument("--uptake-half-life-h", type=float, default=None,
                        help="uptake half-time in hours (tracer study or population value) for the activity "
                             "before the first scan")
    parser.add_argument("--uptake-prior", action="append", default=[], metavar="CLASS=MEDIAN_H,GSD",
                        help="log-normal prior of the uptake half-time for a VOI class (organ, lesion, or bladder "
                             "for an organ named as the urinary bladder), e.g. organ=1.0,2.0 (default organ=1.0,2.0, "
                             "lesion=1.5,2.0 and bladder=0.5,2.0, assumptions)")
    parser.add_argument("--outline-uncertainty-mm", action="append", default=[], metavar="CLASS=MM",
                        help="standard uncertainty of the outline position for a VOI class, e.g. organ=1.0 "
                             "(default organ 1 mm; lesions the PSF fit's own volume uncertainty, else 0.5 mm); "
                             "0 for outlines known to be exact")
    parser.add_argument("--kernel-half-width", type=int, default=None,
                        help="reach of the voxel S-value kernel in voxels, at least 1 (default: the whole map, so "
                             "that every photon absorbed in the body counts; a shorter kernel leaves out photon dose)")
    parser.add_argument("--density-correction", action="store_true",
                        help="scale the kernel dose (soft tissue, 1.04 g/cm3) by 1.04 / density from the CT")
    parser.add_argument("--deformable", action="store_true", help="add a B-spline stage to the CT registration")
    parser.add_argument("--seeds", help="lesion seed points (Slicer markups .mrk.json) instead of those in the study")
    parser.add_argument("--segmentation", metavar="FILE",
                        help="VOIs drawn in Slicer: a segmentation saved from Slicer (.seg.nrrd, on any grid, e.g. the "
                             "reference CT) or a DICOM SEG/RTSTRUCT, used instead of the study's own outlines; "
                             + RULE_TEXT + "; seed points with a segment's name are not delineated again")
    parser.add_argument("--tissue-parameters", help="radiobiological tissue-parameter table (JSON)")
    parser.add_argument("--wholebody-measurements",
                        help="whole-body readings (CSV, see 'mibgdose wholebody') for the whole-body and red-marrow "
                             "dose in results.json")
    parser.add_argument("--blood", help="blood samples (CSV) for the blood method of the red-marrow dose")
    parser.add_argument("--mass-kg", dest="mass_kg", type=float, help="patient mass (kg), for the whole-body dose")
    parser.add_argument("--administered-MBq", dest="administered_MBq", type=float,
                        help="administered activity (MBq) when the study's DICOM does not give it")
    parser.add_argument("--accept-radionuclide", action="store_true",
                        help="use emission series whose headers name another radionuclide than 131I (code, half-life "
                             "or energy windows) as 131I; only when you know the headers are wrong")
    parser.add_argument("--lesion-outline", default="threshold",
                        choices=["threshold", "threshold+fill", "ct-assisted"],
                        help="lesion outline: the adaptive threshold, with enclosed cavities (necrotic core) "
                             "filled, or also CT-assisted for lesions in bone (default: threshold)")
    parser.add_argument("--gtm-resolution", default="profile", choices=["profile", "recoveries"],
                        help="FWHM the GTM partial-volume correction assumes: the calibration's profile fit, or the "
                             "FWHM whose blurred spheres reproduce the calibration's recovery coefficients")
    parser.add_argument("--no-dicom", action="store_true", help="do not write RT Dose and SEG")
    parser.add_argument("--no-report", action="store_true", help="do not write the PDF/HTML report")
    parser.add_argument("--exclude-timepoint", action="append", default=[], metavar="PATH",
                        help="leave out knowingly an unreadable file of the study, or the folder of its time point "
                             "(path relative to STUDY_DIR; repeatable). Without it an unreadable file stops the run.")
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def run(args):
    from MIBGDosimetryLib.workflow.preflight import check_output_folder
    from MIBGDosimetryLib.workflow.publish import output_lock

    check_output_folder(args.out)
    with output_lock(os.path.abspath(args.out)):
        return _run_locked(args)


def _per_class(values, option, count, classes=("organ", "lesion")):
    """``{class: (numbers...)}`` from ``CLASS=N[,N]`` arguments (CLASS one of ``classes``); None when none given."""
    parsed = {}
    for value in values:
        kind, _, numbers = value.partition("=")
        try:
            numbers = tuple(float(n) for n in numbers.split(","))
        except ValueError:
            numbers = ()
        if kind not in classes or len(numbers) != count:
            raise ValueError(f"{option} takes CLASS={','.join(['NUMBER'] * count)} with CLASS {' or '.join(classes)}, "
                             f"got '{value}'.")
        parsed[kind] = numbers if count > 1 else numbers[0]
    return parsed or None


def _run_locked(args):
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose
    from MIBGDosimetryLib.workflow.outputs import write_outputs
    from MIBGDosimetryLib.workflow.preflight import check_output_space

    seeds = None
    if args.seeds:
        from MIBGDosimetryLib.study.markups import read_seed_points

        seeds, _ = read_seed_points([args.seeds])
    options = DoseOptions(reference_index=args.reference, tac_model=args.tac_model, voxel_model=args.voxel_model,
                          tac_head=args.tac_head, uptake_half_life_h=args.uptake_half_life_h,
                          uptake_prior=_per_class(args.uptake_prior, "--uptake-prior", 2, ("organ", "lesion", "bladder")),
                          outline_uncertainty_mm=_per_class(args.outline_uncertainty_mm, "--outline-uncertainty-mm", 1),
                          kernel_half_width=args.kernel_half_width, density_correction=args.density_correction,
                          deformable_registration=args.deformable, seed_points_ras_mm=seeds,
                          tissue_parameters_path=args.tissue_parameters,
                          wholebody_measurements=args.wholebody_measurements, blood_samples=args.blood,
                          patient_mass_kg=args.mass_kg, administered_activity_MBq=args.administered_MBq,
                          excluded_paths=tuple(os.path.normpath(p) for p in args.exclude_timepoint),
                          accept_radionuclide=args.accept_radionuclide,
                          lesion_outline=args.lesion_outline, gtm_resolution=args.gtm_resolution)
    calculation = run_dose(args.study_dir, args.calibration, options, segmentation=args.segmentation,
                           check_study=lambda study: check_output_space(args.out, study))
    try:
        written = write_outputs(calculation, args.out, dicom=not args.no_dicom, report=not args.no_report)
    except OSError as error:
        raise ValueError(f"The results could not be written to {os.path.abspath(args.out)} ({error}); nothing was "
                         "published and earlier results there are unchanged. Free space on the output disk or "
                         "choose another folder.") from error
    summary = {"written": written,
               "vois": [{k: v.get(k) for k in ("name", "mean_dose_Gy", "dose_uncertainty_Gy", "tac_model",
                                               "coverage_fraction")} for v in calculation.results["vois"]],
               "warnings": calculation.results["warnings"]}
    if "whole_body" in calculation.results:
        summary["whole_body_dose_Gy"] = calculation.results["whole_body"]["wb_dose_Gy"]
        summary["red_marrow_dose_Gy"] = calculation.results["whole_body"]["red_marrow_dose_Gy"]
    print(json.dumps(summary, indent=2))
    return 0
