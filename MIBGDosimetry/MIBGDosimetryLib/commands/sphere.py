"""``mibgdose sphere``: S value and absorbed fractions of a uniformly filled 131I sphere."""

import json

NAME = "sphere"
HELP = "self-dose S value (mGy/(MBq s)) and absorbed fractions of a uniformly filled 131I sphere"


def add_arguments(parser):
    parser.add_argument("--mass-g", required=True, type=float, help="sphere mass in g")
    parser.add_argument("--density-g-cm3", type=float, default=1.0, help="tissue density (default 1.0)")
    parser.add_argument("--material", default="soft_tissue", help="soft_tissue (default), water or bone")


def run(args):
    from MIBGDosimetryLib.physics.spheres import sphere_s_value

    print(json.dumps(sphere_s_value(args.mass_g, args.density_g_cm3, args.material)))
    return 0
