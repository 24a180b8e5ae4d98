"""``mibgdose wholebody``: whole-body and red-marrow absorbed dose from serial whole-body readings."""

import json

NAME = "wholebody"
HELP = ("whole-body and red-marrow absorbed dose from serial whole-body counts or dose rates (and blood "
        "samples), and the activity for a prescribed whole-body dose; prints JSON")


def add_arguments(parser):
    parser.add_argument("--measurements", required=True,
                        help="CSV of whole-body readings: time_h and counts or uSv_per_h (or value with kind, or "
                             "anterior and posterior conjugate views), "
                             "optional background; the first reading before any excretion")
    parser.add_argument("--administered-MBq", dest="administered_MBq", type=float, required=True,
                        help="administered activity (MBq)")
    parser.add_argument("--mass-kg", dest="mass_kg", type=float, required=True, help="patient mass (kg)")
    parser.add_argument("--blood", help="CSV of blood samples: time_h and MBq_per_mL or kBq_per_mL")
    parser.add_argument("--target-Gy", dest="target_Gy", type=float,
                        help="prescribed whole-body dose (Gy) for the next administration")
    parser.add_argument("--subtract-delivered", action="store_true",
                        help="the target is the total over both administrations: subtract this one's dose")
    parser.add_argument("--method", default="auto", choices=["auto", "mono", "bi", "trapezoid"],
                        help="retention model (default auto: bi-exponential when AICc prefers it, else mono)")
    parser.add_argument("--body-shape", default="sphere", choices=["sphere", "ellipsoid"],
                        help="body model for the photon absorbed fraction (default sphere: the upper estimate; "
                             "ellipsoid: MIRD-5 trunk proportions)")
    parser.add_argument("--rmblr", type=float, default=1.0,
                        help="red-marrow-to-blood concentration ratio for the blood method (default 1)")
    parser.add_argument("--rmblr-uncertainty", type=float, default=0.0, help="standard uncertainty of the RMBLR")
    parser.add_argument("--red-marrow-mass-g", type=float,
                        help="red-marrow mass (g); default ICRP 89 reference scaled to the body mass")


def run(args):
    from MIBGDosimetryLib.wholebody.assessment import assess_whole_body

    summary = assess_whole_body(args.measurements, args.administered_MBq, args.mass_kg, blood=args.blood,
                                target_Gy=args.target_Gy, subtract_delivered=args.subtract_delivered,
                                method=args.method, rmblr=args.rmblr, rmblr_uncertainty=args.rmblr_uncertainty,
                                red_marrow_mass_g=args.red_marrow_mass_g, shape=args.body_shape)
    print(json.dumps(summary, indent=2))
    return 0
