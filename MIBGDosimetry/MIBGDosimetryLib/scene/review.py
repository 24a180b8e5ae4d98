"""Review nodes of a dose calculation in the scene: results table, per-VOI time-activity charts,
the DVH chart of all VOIs, the registration review table and the time-point table with its flags.

Every builder takes the scene and a ``created`` list to which it appends each node as soon as it is
added, so that a caller can remove everything a failed build left behind.

Plot series in MRML have no error bars and no filled areas; the time-activity chart draws each
measured point's standard uncertainty as a vertical line of its own and the part of the fitted curve
between the first and the last scan as bars under the curve, with the coverage figure in the title.
"""

import datetime

import numpy as np

from MIBGDosimetryLib import mrml

#: Points at which the fitted time-activity curve is drawn, from 0 h to twice the last scan time.
CURVE_SAMPLES = 200
#: Columns of the results table beyond the results.tsv fields.
WARNINGS_COLUMN = "warnings"
#: Hours after administration and the acquisition start disagree by more than this (h): flagged.
HOURS_TOLERANCE_H = 0.1
#: Acquisition durations outside this range (s) are flagged as implausible for a SPECT.
DURATION_RANGE_S = (60.0, 7200.0)


def results_table(scene, results, created):
    """Table node with one row per VOI: the results.tsv fields (mean, extremes, 27-voxel blocks, BED,
    EUD, uncertainties, coverage) and the VOI's warnings."""
    from MIBGDosimetryLib.workflow.outputs import TABLE_FIELDS

    columns = {field: [_cell(v.get(field)) for v in results["vois"]] for field in TABLE_FIELDS}
    columns[WARNINGS_COLUMN] = ["; ".join(v.get("warnings") or []) for v in results["vois"]]
    return _keep(created, mrml.add_table(scene, "Dose results", columns))


def tac_chart(scene, entry, fit, created):
    """Chart of one VOI's time-activity curve: measured points, their uncertainties, the fitted curve
    and the part of it between the first and the last scan; the title gives the coverage fraction."""
    name = entry["name"]
    times = np.asarray(entry["tac"]["times_h"], dtype=float)
    activity = np.asarray(entry["tac"]["activity_MBq"], dtype=float)
    sigma = np.asarray(entry["tac"]["activity_uncertainty_MBq"], dtype=float)
    curve_t = np.linspace(0.0, 2.0 * times.max(), CURVE_SAMPLES)
    inside = (curve_t >= times.min()) & (curve_t <= times.max())
    chart = _keep(created, scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"TAC {name}"))
    coverage = entry.get("coverage_fraction")
    chart.SetTitle(f"{name}: {entry.get('tac_model')}, {_percent(coverage)} of the TIA between the first and the "
                   "last scan")
    chart.SetXAxisTitle("time after administration (h)")
    chart.SetYAxisTitle("activity (MBq)")
    measured = _keep(created, mrml.add_table(scene, f"TAC {name} measured", {
        "time_h": times.tolist(), "activity_MBq": activity.tolist(), "activity_uncertainty_MBq": sigma.tolist()}))
    curve = _keep(created, mrml.add_table(scene, f"TAC {name} fitted", {
        "time_h": curve_t.tolist(), "activity_MBq": fit.evaluate(curve_t).tolist()}))
    area = _keep(created, mrml.add_table(scene, f"TAC {name} first to last scan", {
        "time_h": curve_t[inside].tolist(), "activity_MBq": fit.evaluate(curve_t[inside]).tolist()}))
    bars = {}
    for n, (t, a, s) in enumerate(zip(times, activity, sigma)):
        bars[f"time_h_{n}"] = [float(t), float(t)]
        bars[f"activity_MBq_{n}"] = [float(a - s), float(a + s)]
    error_table = _keep(created, mrml.add_table(scene, f"TAC {name} uncertainties", bars))
    series = [
        _series(scene, area, f"{name} first to last scan", "time_h", "activity_MBq", "Bar", created),
        _series(scene, curve, f"{name} fitted ({entry.get('tac_model')})", "time_h", "activity_MBq", "Line", created),
        _series(scene, measured, f"{name} measured", "time_h", "activity_MBq", "Scatter", created)]
    series += [_series(scene, error_table, f"{name} ±1 SD at {t:g} h", f"time_h_{n}", f"activity_MBq_{n}", "Line",
                       created) for n, t in enumerate(times)]
    for node in series:
        chart.AddAndObservePlotSeriesNodeID(node.GetID())
    return chart


def dvh_chart(scene, results, created):
    """Chart of the cumulative dose-volume histograms of all VOIs."""
    chart = _keep(created, scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "Dose-volume histograms"))
    chart.SetTitle("Dose-volume histograms")
    chart.SetXAxisTitle("absorbed dose (Gy)")
    chart.SetYAxisTitle("volume fraction")
    for entry in results["vois"]:
        table = _keep(created, mrml.add_table(scene, f"DVH {entry['name']}", {
            "dose_Gy": entry["dvh"]["dose_Gy"], "volume_fraction": entry["dvh"]["volume_fraction"]}))
        chart.AddAndObservePlotSeriesNodeID(
            _series(scene, table, entry["name"], "dose_Gy", "volume_fraction", "Line", created).GetID())
    return chart


def registration_table(scene, results, created):
    """One row per time point: how it was registered and its quality figures (body overlap after and
    before, rotation, translation), whether the transform was corrected in the scene, its warnings."""
    rows = results["timepoints"]
    quality = [tp["registration"].get("quality") or {} for tp in rows]
    return _keep(created, mrml.add_table(scene, "Registration review", {
        "time_point": [tp["label"] for tp in rows],
        "kind": [tp["registration"]["kind"] for tp in rows],
        "body_dice": [_cell(q.get("body_dice")) for q in quality],
        "body_dice_before": [_cell(q.get("body_dice_before")) for q in quality],
        "rotation_deg": [_cell(q.get("rotation_deg")) for q in quality],
        "translation_mm": [_cell(q.get("translation_mm")) for q in quality],
        "corrected_in_scene": [1 if q.get("corrected_in_scene") else 0 for q in quality],
        "warnings": ["; ".join(tp["registration"].get("warnings") or []) for tp in rows]}))


#: Header facts without which the calculation falls back to an assumption, with what is then lost.
HEADER_FACTS_NEEDED = {
    "number_of_detectors": "number of detectors",
    "units_path": "image units and decay correction",
    "energy_windows": "energy windows",
    "collimator": "collimator",
    "camera": "camera",
}


def timepoint_flags(rows, header_facts=None):
    """Flags per time point (a list of ``{field: text}`` rows of the metadata tables, in the order the
    time points are given): what is missing and what is implausible, as sentences. ``header_facts``
    (one dict per row, None for a table without them) adds a flag for the DICOM header facts the
    calculation lacks (the volume then was neither loaded by the DICOM module nor from a study folder)."""
    flags = []
    header_facts = header_facts if header_facts is not None else [{} for _ in rows]
    previous_hours = None
    activities = {row.get("AdministeredActivityMBq") for row in rows if row.get("AdministeredActivityMBq")}
    administrations = {row.get("AdministrationDateTime") for row in rows if row.get("AdministrationDateTime")}
    for row, facts in zip(rows, header_facts):
        found = [f"{field} missing" for field in ("AcquisitionDateTime", "HoursAfterAdministration",
                                                  "DurationSeconds", "AdministrationDateTime",
                                                  "AdministeredActivityMBq") if not row.get(field)]
        hours = _float(row.get("HoursAfterAdministration"), "HoursAfterAdministration", found)
        duration = _float(row.get("DurationSeconds"), "DurationSeconds", found)
        activity = _float(row.get("AdministeredActivityMBq"), "AdministeredActivityMBq", found)
        acquired = _datetime(row.get("AcquisitionDateTime"), "AcquisitionDateTime", found)
        administered = _datetime(row.get("AdministrationDateTime"), "AdministrationDateTime", found)
        if hours is not None and hours <= 0:
            found.append(f"HoursAfterAdministration {hours:g} h is not after the administration")
        if hours is not None and previous_hours is not None and hours <= previous_hours:
            found.append("not after the previous time point")
        if duration is not None and not DURATION_RANGE_S[0] <= duration <= DURATION_RANGE_S[1]:
            found.append(f"DurationSeconds {duration:g} s is outside {DURATION_RANGE_S[0]:g}-{DURATION_RANGE_S[1]:g} s")
        if activity is not None and activity <= 0:
            found.append(f"AdministeredActivityMBq {activity:g} MBq is not positive")
        if hours is not None and acquired is not None and administered is not None:
            elapsed_h = (acquired - administered).total_seconds() / 3600.0
            if abs(elapsed_h - hours) > HOURS_TOLERANCE_H:
                found.append(f"HoursAfterAdministration {hours:g} h but the acquisition started {elapsed_h:.2f} h "
                             "after the administration")
        if len(activities) > 1:
            found.append("AdministeredActivityMBq differs between the time points")
        if len(administrations) > 1:
            found.append("AdministrationDateTime differs between the time points")
        found.extend(_header_fact_flags(row, facts))
        flags.append(found)
        previous_hours = hours if hours is not None else previous_hours
    return flags


def _header_fact_flags(row, facts):
    if facts is None:
        flag = ("DICOM header facts missing (number of detectors, units, energy windows, collimator, camera, CT "
                "dose indices): select volumes loaded by the DICOM module, or load the study folder")
        if not row.get("ObservedCountRateCps"):
            flag += "; without ObservedCountRateCps dead-time losses are not corrected"
        return [flag]
    unknown = [name for key, name in HEADER_FACTS_NEEDED.items() if key in facts and not facts[key]]
    return [f"not in the DICOM header: {', '.join(unknown)}"] if unknown else []


def timepoint_table(scene, rows, created, header_facts=None):
    """The time-point table the user reviews: one row per time point with the metadata fields and the
    flags of :func:`timepoint_flags`."""
    from MIBGDosimetryLib.scene.logic import METADATA_FIELDS

    flags = timepoint_flags(rows, header_facts)
    columns = {field: [row.get(field, "") for row in rows] for field in METADATA_FIELDS}
    columns["flags"] = ["; ".join(found) for found in flags]
    return _keep(created, mrml.add_table(scene, "Time points", columns))


def _series(scene, table, name, x, y, kind, created):
    series = _keep(created, scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name))
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName(x)
    series.SetYColumnName(y)
    series.SetPlotType(getattr(series, f"PlotType{kind}"))
    if kind != "Scatter":
        series.SetMarkerStyle(series.MarkerStyleNone)
    return series


def _keep(created, node):
    created.append(node)
    return node


def _cell(value):
    return "" if value is None else value


def _percent(fraction):
    return "unknown" if fraction is None else f"{100.0 * fraction:.1f} %"


def _float(text, field, found):
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        found.append(f"{field} '{text}' is not a number")
        return None


def _datetime(text, field, found):
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        found.append(f"{field} '{text}' is not a date and time (YYYY-MM-DDTHH:MM:SS)")
        return None
