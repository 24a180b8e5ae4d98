"""``mibgdose demo``: the whole workflow on generated default data."""

import json

NAME = "demo"
HELP = "run the workflow on generated default data and write a Slicer scene (.mrb) and result tables"


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the generated data (default 1)")


def run(args):
    from MIBGDosimetryLib.demo import run_demo

    summary = run_demo(args.out, seed=args.seed, log=print)
    print(json.dumps(summary, indent=2))
    return 0 if summary.get("passed", True) else 1
