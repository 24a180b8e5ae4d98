"""``mibgdose deadtime``: paralysable dead time from an increasing-activity count-rate series (EANM eq. 6)."""

import csv
import json

NAME = "deadtime"
HELP = "fit the paralysable camera dead time to a count-rate series (CSV with activity_MBq,observed_cps)"

COLUMNS = ("activity_MBq", "observed_cps")


def add_arguments(parser):
    parser.add_argument("--csv", required=True, help="CSV file with the columns activity_MBq,observed_cps")


def read_series(path):
    """Activities (MBq) and observed count rates (cps) from a CSV file with a header row."""
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"'{path}' lacks the column(s) {missing}; the header must be activity_MBq,observed_cps.")
        activity, observed = [], []
        for line, row in enumerate(reader, start=2):
            try:
                activity.append(float(row["activity_MBq"]))
                observed.append(float(row["observed_cps"]))
            except (TypeError, ValueError) as error:
                raise ValueError(f"'{path}' line {line}: activity and count rate must be numbers.") from error
    return activity, observed


def run(args):
    from MIBGCalibrationLib.deadtime import fit_dead_time

    fit = fit_dead_time(*read_series(args.csv))
    print(json.dumps(fit.to_dict(), indent=2))
    return 0
