"""``mibgdose``: the extension's command line for headless and batch work.

Each subcommand lives in its own module in :mod:`MIBGDosimetryLib.commands` and provides
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Commands report results on
standard output (JSON where a command says so) and problems on standard error with exit code 2.
"""

import argparse
import importlib
import pkgutil
import sys

from MIBGDosimetryLib import __version__, commands


def _command_modules():
    modules = []
    for info in pkgutil.iter_modules(commands.__path__):
        if not info.name.startswith("_"):
            modules.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    return sorted(modules, key=lambda m: m.NAME)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mibgdose",
        description="131I-mIBG dosimetry from the command line: calibration, study data, kernels, "
                    "time-activity curves and absorbed dose.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        command_parser = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"mibgdose {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
