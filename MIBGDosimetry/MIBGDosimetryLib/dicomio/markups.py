"""Seed points as a Slicer markups fiducial file (``.mrk.json``, markups schema v1.0.3)."""

import json
import os
import tempfile

MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                  "Resources/Schema/markups-schema-v1.0.3.json#")


def markups_fiducial_document(points_ras_mm):
    """The markups JSON document for ``points_ras_mm`` ({label: (R, A, S) mm}), in RAS."""
    control_points = []
    for n, (label, point) in enumerate(points_ras_mm.items()):
        control_points.append({
            "id": str(n + 1), "label": str(label), "description": "", "associatedNodeID": "",
            "position": [float(c) for c in point], "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
            "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"})
    return {"@schema": MARKUPS_SCHEMA,
            "markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "coordinateUnits": "mm", "locked": True,
                         "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "lastUsedControlPointNumber":
                         len(control_points), "controlPoints": control_points}]}


def write_seeds(points_ras_mm, path):
    """Write ``{label: (R, A, S) mm}`` as a markups fiducial JSON file (complete or not at all)."""
    document = markups_fiducial_document(points_ras_mm)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(document, f, indent=2)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path
