"""``mibgdose calibrate``: the quantitative-SPECT calibration chain on a folder of phantom acquisitions."""

import json
import os
import sys

NAME = "calibrate"
HELP = ("calibrate the camera from phantom acquisitions (Q, recovery, dead time, TEW, Chang, OSEM updates, "
        "adaptive threshold) and write the calibration record (JSON)")


def add_arguments(parser):
    parser.add_argument("phantom_dir", metavar="PHANTOM_DIR", help="folder with phantom.json and the acquisitions")
    parser.add_argument("--out", required=True, help="calibration record to write (JSON)")
    parser.add_argument("--tew-out", default=None,
                        help="scatter-corrected projections (DICOM) to write; default: beside the record, "
                             "named after it with .tew.dcm")


def run(args):
    from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs

    out = os.path.abspath(args.out)
    result = calibrate_phantom_folder(args.phantom_dir, log=lambda line: print(line, file=sys.stderr, flush=True))
    write_outputs(result, out, args.tew_out)
    record = result.record
    summary = {"record": out, "Q_cps_per_MBq": record.calibration_factor_cps_per_MBq,
               "Q_uncertainty_cps_per_MBq": record.calibration_factor_cps_per_MBq_uncertainty,
               "tau_s": record.dead_time_s, "tau_s_uncertainty": record.dead_time_s_uncertainty,
               "recovery": {i["name"]: i["recovery"] for i in record.recovery_inserts},
               "suggested_osem_updates": record.reconstruction.get("suggested_updates"),
               "scatter_corrected_projections": result.tew_output, "warnings": record.warnings}
    print(json.dumps(summary, indent=2))
    return 0
