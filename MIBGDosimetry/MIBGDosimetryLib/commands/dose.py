"""``mibgdose dose``: absorbed doses of a sequential SPECT/CT study with a calibration record."""

import argparse
import json
import os

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
                        help="time-activity model of the voxels (default auto)")
    parser.add_argument("--kernel-half-width", type=int, default=10,
                        help="voxel S-value kernel half-width in voxels (default 10)")
    parser.add_argument("--density-correction", action="store_true",
                        help="scale the kernel dose by 1/density from the CT")
    parser.add_argument("--deformable", action="store_true", help="add a B-spline stage to the CT registration")
    parser.add_argument("--seeds", help="lesion seed points (Slicer markups .mrk.json) instead of those in the study")
    parser.add_argument("--tissue-parameters", help="radiobiological tissue-parameter table (JSON)")
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


def _run_locked(args):
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose
    from MIBGDosimetryLib.workflow.outputs import write_outputs
    from MIBGDosimetryLib.workflow.preflight import check_output_space

    seeds = None
    if args.seeds:
        from MIBGDosimetryLib.study.markups import read_seed_points

        seeds, _ = read_seed_points([args.seeds])
    options = DoseOptions(reference_index=args.reference, tac_model=args.tac_model, voxel_model=args.voxel_model,
                          kernel_half_width=args.kernel_half_width, density_correction=args.density_correction,
                          deformable_registration=args.deformable, seed_points_ras_mm=seeds,
                          tissue_parameters_path=args.tissue_parameters,
                          excluded_paths=tuple(os.path.normpath(p) for p in args.exclude_timepoint))
    calculation = run_dose(args.study_dir, args.calibration, options,
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
    print(json.dumps(summary, indent=2))
    return 0
