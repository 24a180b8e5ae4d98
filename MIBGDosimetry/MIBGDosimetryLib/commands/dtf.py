"""``mibgdose dtf``: dead-time factor of an observed count rate (EANM eq. 7)."""

import json

NAME = "dtf"
HELP = "dead-time factor for an observed count rate and a camera dead time (EANM eq. 7)"


def add_arguments(parser):
    parser.add_argument("--tau-s", type=float, required=True, help="paralysable dead time of the camera (s)")
    parser.add_argument("--observed-cps", type=float, required=True, help="observed count rate (counts per second)")


def run(args):
    from MIBGCalibrationLib.deadtime import dead_time_factor

    dtf = dead_time_factor(args.tau_s, args.observed_cps)
    print(json.dumps({"tau_s": args.tau_s, "observed_cps": args.observed_cps, "dtf": dtf,
                      "incident_cps": dtf * args.observed_cps}, indent=2))
    return 0
