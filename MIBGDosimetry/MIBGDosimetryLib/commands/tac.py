"""``mibgdose tac``: fit and integrate one time-activity curve, print the result as JSON."""

import json

NAME = "tac"
HELP = ("fit a time-activity curve and print the time-integrated activity, coverage, half-life, the TIA under "
        "each assumption before the first and after the last scan and the uncertainty terms as JSON")


def _numbers(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"'{text}' is not a comma-separated list of numbers.") from None


def add_arguments(parser):
    parser.add_argument("--times-h", required=True, type=_numbers,
                        help="scan times in hours after administration, comma-separated")
    parser.add_argument("--activity-MBq", required=True, type=_numbers, help="activities in MBq, comma-separated")
    parser.add_argument("--uncertainty-MBq", type=_numbers, default=None,
                        help="standard uncertainties of the activities (default: relative weights)")
    parser.add_argument("--model", default="auto", choices=("auto", "mono", "bi", "tri", "trapezoid", "single"),
                        help="time-activity model (default auto: AICc choice among the exponential models)")
    parser.add_argument("--tail", default="fit", choices=("fit", "physical"),
                        help="trapezoid: tail after the last scan from the fitted clearance or physical decay")
    parser.add_argument("--head", default=None,
                        choices=("midpoint", "linear", "extrapolate", "uptake", "fitted", "constant"),
                        help="activity before the first scan: extrapolate (mono-exponential back-extrapolation, "
                             "the default), linear (uptake from zero at administration), midpoint (their mean), "
                             "uptake (with --uptake-half-life-h, then the default), fitted (bi/tri: the fitted "
                             "uptake, their default); trapezoid: linear (default), constant or midpoint")
    parser.add_argument("--uptake-half-life-h", type=float, default=None,
                        help="uptake half-time in hours (tracer study or population value) for --head uptake; "
                             "also listed among the alternatives")
    parser.add_argument("--effective-half-life-h", type=float, default=None,
                        help="single: assumed effective half-life in hours")
    parser.add_argument("--effective-half-life-uncertainty-h", type=float, default=0.0,
                        help="single: uncertainty of the assumed effective half-life in hours")


def run(args):
    from MIBGDosimetryLib.tac import fit_tac

    fit = fit_tac(args.times_h, args.activity_MBq, args.uncertainty_MBq, model=args.model, tail=args.tail,
                  head=args.head, uptake_half_life_h=args.uptake_half_life_h,
                  effective_half_life_h=args.effective_half_life_h,
                  effective_half_life_uncertainty_h=args.effective_half_life_uncertainty_h)
    print(json.dumps(fit.to_dict(), indent=2))
    return 0
