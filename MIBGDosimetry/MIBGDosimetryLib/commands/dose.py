"""``mibgdose dose``: absorbed doses of a sequential SPECT/CT study with a calibration record."""

import json

NAME = "dose"
HELP = "compute absorbed doses per VOI and per voxel for a SPECT/CT study and write results, scene, RT Dose, SEG and report"


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
    parser.add_argument("--accept-radionuclide", action="store_true",
                        help="use emission series whose headers name another radionuclide than 131I (code, half-life "
                             "or energy windows) as 131I; only when you know the headers are wrong")
    parser.add_argument("--no-dicom", action="store_true", help="do not write RT Dose and SEG")
    parser.add_argument("--no-report", action="store_true", help="do not write the PDF/HTML report")


def run(args):
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose
    from MIBGDosimetryLib.workflow.outputs import write_outputs

    seeds = None
    if args.seeds:
        from MIBGDosimetryLib.study.markups import read_seed_points

        seeds, _ = read_seed_points([args.seeds])
    options = DoseOptions(reference_index=args.reference, tac_model=args.tac_model, voxel_model=args.voxel_model,
                          kernel_half_width=args.kernel_half_width, density_correction=args.density_correction,
                          deformable_registration=args.deformable, seed_points_ras_mm=seeds,
                          tissue_parameters_path=args.tissue_parameters,
                          accept_radionuclide=args.accept_radionuclide)
    calculation = run_dose(args.study_dir, args.calibration, options)
    written = write_outputs(calculation, args.out, dicom=not args.no_dicom, report=not args.no_report)
    summary = {"written": written,
               "vois": [{k: v.get(k) for k in ("name", "mean_dose_Gy", "dose_uncertainty_Gy", "tac_model",
                                               "coverage_fraction")} for v in calculation.results["vois"]],
               "warnings": calculation.results["warnings"]}
    print(json.dumps(summary, indent=2))
    return 0
