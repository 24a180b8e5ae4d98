"""``mibgdose study``: read a sequential SPECT/CT study folder and print what was found as JSON."""

import json

NAME = "study"
HELP = ("read a folder of DICOM files (any layout) as a sequential SPECT/CT study and print a JSON summary: per "
        "time point the hours after administration, modalities, shape [k, j, i], spacing (mm along i, j, k) and "
        "warnings")


def add_arguments(parser):
    parser.add_argument("folder", metavar="DIR", help="study folder (searched recursively)")
    parser.add_argument("--overrides", metavar="F",
                        help="JSON file of values that replace or complete the DICOM data (default: "
                             "DIR/mibg-overrides.json when present)")
    parser.add_argument("--accept-radionuclide", action="store_true",
                        help="use emission series whose headers name another radionuclide than 131I as 131I")


def run(args):
    from MIBGDosimetryLib.study import load_study

    study = load_study(args.folder, overrides=args.overrides,
                       accept_radionuclide=args.accept_radionuclide)
    print(json.dumps(study.summary(), indent=2))
    return 0
