"""``mibgdose deidentify``: de-identified copy of a patient study and its results for central review."""

import json

NAME = "deidentify"
HELP = ("write a de-identified copy of a study (DICOM PS3.15 Basic Confidentiality Profile, dates shifted, "
        "patient characteristics kept; generated file names; DICOM and our results only) for central review; "
        "the re-identification mapping stays local. Text burned into image pixels is not detected")


def add_arguments(parser):
    parser.add_argument("study", metavar="STUDY_DIR", help="patient study folder (DICOM, any layout)")
    parser.add_argument("--out", required=True, help="export folder (new or empty)")
    parser.add_argument("--mapping", default=None,
                        help="local JSON file keeping pseudonym, date offset and UID map (default: "
                             "<export folder>.mapping.json beside the export; never inside it)")
    parser.add_argument("--pseudonym", default=None, help="trial subject code to use as patient name and ID")
    parser.add_argument("--results", default=None,
                        help="results folder of 'mibgdose dose' to export with the study (report re-rendered)")
    parser.add_argument("--accept-value", action="append", default=[], metavar="TEXT",
                        help="a value the leak check flagged that you have reviewed and accept in the export "
                             "(repeatable; recorded in the mapping file)")
    parser.add_argument("--clean-descriptors", action="store_true",
                        help="keep descriptions and comments with identifying words removed (PS3.15 Clean "
                             "Descriptors Option) instead of removing them")


def run(args):
    import os

    from MIBGDosimetryLib.export.deidentify import deidentify_study

    mapping = args.mapping or os.path.abspath(args.out).rstrip(os.sep) + ".mapping.json"
    summary = deidentify_study(args.study, args.out, mapping, pseudonym=args.pseudonym,
                               results_dir=args.results, accept_values=args.accept_value,
                               clean_descriptors=args.clean_descriptors)
    print(json.dumps({"pseudonym": summary["pseudonym"], "out": summary["out_dir"],
                      "mapping": summary["mapping"], "exported_files": len(summary["exported"]),
                      "not_exported": summary["not_exported"],
                      "accepted_values": summary["accepted_values"]}, indent=2))
    return 0
