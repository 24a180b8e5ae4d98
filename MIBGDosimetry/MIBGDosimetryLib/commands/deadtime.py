"""``mibgdose deadtime``: paralysable dead time from an increasing-activity count-rate series (EANM eq. 6)."""

import json

NAME = "deadtime"
HELP = "fit the paralysable camera dead time to a count-rate series (CSV with activity_MBq,observed_cps)"


def add_arguments(parser):
    parser.add_argument("--csv", required=True, help="CSV file with the columns activity_MBq,observed_cps")


def run(args):
    from MIBGCalibrationLib.deadtime import fit_dead_time, read_count_rate_csv

    fit = fit_dead_time(*read_count_rate_csv(args.csv))
    print(json.dumps(fit.to_dict(), indent=2))
    return 0
