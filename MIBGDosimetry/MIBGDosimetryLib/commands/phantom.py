"""``mibgdose phantom``: digital phantoms with known truth, written as DICOM.

``mibgdose phantom patient --out DIR`` writes a sequential SPECT/CT study of a child with
neuroblastoma; ``mibgdose phantom calibration --out DIR`` writes the calibration acquisitions
(Jaszczak cylinder, sphere inserts, dead-time series, OSEM series, TEW projections, Chang
attenuation). Both write ``truth.json`` beside the images and print a JSON summary.

With ``--realistic`` both are imaged by the projection camera of
:mod:`MIBGDosimetryLib.phantoms.realistic` (attenuation, collimator response, penetration, scatter,
dead time, noise) and reconstructed by OSEM, in the same folder layouts; the patient then has lesions
of several shapes. It takes a few minutes where the default image-domain phantoms take seconds.
"""

import json
import sys

NAME = "phantom"
HELP = "write digital phantoms with known truth (patient study or calibration set) as DICOM"


def _floats(text):
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"Expected comma-separated numbers, got '{text}'.") from None


def add_arguments(parser):
    parser.add_argument("kind", choices=["patient", "calibration"], help="which phantom to write")
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (noise, repositioning); default 1")
    parser.add_argument("--matrix", type=int, default=64, help="SPECT matrix size in-plane (default 64)")
    parser.add_argument("--slices", type=int, default=None,
                        help="number of SPECT slices (default 88 for the patient, 64 for the calibration set)")
    parser.add_argument("--voxel-mm", type=float, default=None,
                        help="SPECT voxel size in mm (default 4.4; 4.42 with --realistic)")
    parser.add_argument("--fine-factor", type=int, default=2,
                        help="fine simulation (and CT) voxels per SPECT voxel along each axis (default 2)")
    parser.add_argument("--realistic", action="store_true",
                        help="simulate projections with attenuation, collimator response, penetration, scatter and "
                             "dead time, and reconstruct them with OSEM (slower; lesions of several shapes)")
    realistic = parser.add_argument_group("realistic (with --realistic)")
    realistic.add_argument("--lesion-contrast", type=float, default=1.0,
                           help="factor on every lesion uptake of the realistic patient (default 1)")
    realistic.add_argument("--count-scale", type=float, default=1.0,
                           help="factor on the realistic patient's frame durations: below 1 noisier (default 1)")
    realistic.add_argument("--iterations", type=int, default=4, help="OSEM iterations (default 4)")
    realistic.add_argument("--subsets", type=int, default=8, help="OSEM subsets (default 8)")
    patient = parser.add_argument_group("patient")
    patient.add_argument("--administered-activity-MBq", type=float, default=7400.0,
                         help="administered 131I-mIBG activity in MBq (default 7400)")
    patient.add_argument("--timepoints-h", type=_floats, default=(21.0, 45.0, 69.0, 93.0, 141.0),
                         help="imaging times after administration in hours, comma-separated (default 21,45,69,93,141)")
    patient.add_argument("--lesion-diameters-mm", type=_floats, default=None,
                         help="diameters of the first N default lesions, comma-separated (default 40,20,15,25,12)")
    patient.add_argument("--lesion-uptake-percent-per-ml", type=_floats, default=None,
                         help="lesion uptake amplitudes in %% of administered activity per mL, one per diameter")
    calibration = parser.add_argument_group("calibration")
    calibration.add_argument("--sphere-diameters-mm", type=_floats, default=(60.0, 40.0, 30.0, 20.0, 15.0),
                             help="sphere insert diameters in mm, comma-separated (default 60,40,30,20,15)")
    calibration.add_argument("--osem-updates", type=_floats, default=None,
                             help="OSEM update numbers of the reconstruction series (default 8,16,32,64,128; "
                                  "8,16,32,64 with --realistic, multiples of the subsets)")


def run(args):
    from MIBGDosimetryLib.phantoms import anatomy, grid

    slices = args.slices if args.slices is not None else (88 if args.kind == "patient" else 64)
    voxel_mm = args.voxel_mm if args.voxel_mm is not None else (4.42 if args.realistic else 4.4)
    phantom_grid = grid.PhantomGrid(args.matrix, slices, voxel_mm, args.fine_factor)
    if args.realistic:
        summary = _run_realistic(args, phantom_grid)
    elif args.kind == "patient":
        from MIBGDosimetryLib.phantoms import patient

        lesions = anatomy.DEFAULT_LESIONS
        if args.lesion_diameters_mm is not None:
            lesions = anatomy.lesions_with_diameters(args.lesion_diameters_mm, args.lesion_uptake_percent_per_ml)
        elif args.lesion_uptake_percent_per_ml is not None:
            raise ValueError("Give --lesion-diameters-mm together with --lesion-uptake-percent-per-ml.")
        config = patient.PatientConfig(seed=args.seed, administered_activity_MBq=args.administered_activity_MBq,
                                       timepoints_h=tuple(args.timepoints_h), lesions=lesions, grid=phantom_grid)
        summary = patient.write_patient_study(args.out, config)
    else:
        from MIBGDosimetryLib.phantoms import calibration

        updates = args.osem_updates if args.osem_updates is not None else (8.0, 16.0, 32.0, 64.0, 128.0)
        config = calibration.CalibrationConfig(seed=args.seed, grid=phantom_grid,
                                               sphere_diameters_mm=tuple(args.sphere_diameters_mm),
                                               osem_updates=tuple(int(u) for u in updates))
        summary = calibration.write_calibration_set(args.out, config)
    print(json.dumps(summary, indent=2))
    return 0


def _run_realistic(args, phantom_grid):
    def log(line):
        print(line, file=sys.stderr, flush=True)

    if args.kind == "patient":
        from MIBGDosimetryLib.phantoms.realistic import lesions, patient_study

        if args.lesion_diameters_mm is not None or args.lesion_uptake_percent_per_ml is not None:
            raise ValueError("The realistic patient has its own lesion shapes; use --lesion-contrast instead of "
                             "--lesion-diameters-mm and --lesion-uptake-percent-per-ml.")
        config = patient_study.RealisticPatientConfig(
            seed=args.seed, administered_activity_MBq=args.administered_activity_MBq,
            timepoints_h=tuple(args.timepoints_h), lesions=lesions.default_lesions(args.lesion_contrast),
            grid=phantom_grid, count_scale=args.count_scale, iterations=args.iterations, subsets=args.subsets)
        return patient_study.write_realistic_patient_study(args.out, config, log)
    from MIBGDosimetryLib.phantoms import calibration
    from MIBGDosimetryLib.phantoms.realistic import calibration_set

    updates = args.osem_updates if args.osem_updates is not None else tuple(
        float(args.subsets * n) for n in (1, 2, 4, 8))
    base = calibration.CalibrationConfig(seed=args.seed, grid=phantom_grid,
                                         sphere_diameters_mm=tuple(args.sphere_diameters_mm),
                                         osem_updates=tuple(int(u) for u in updates))
    config = calibration_set.RealisticCalibrationConfig(base=base, iterations=args.iterations, subsets=args.subsets)
    return calibration_set.write_realistic_calibration_set(args.out, config, log)
