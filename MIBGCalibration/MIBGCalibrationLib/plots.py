"""Calibration plots as Slicer plot charts: recovery curve, count-rate curve, recovery and noise
over OSEM updates.

Each chart is a ``vtkMRMLPlotChartNode`` whose series (``vtkMRMLPlotSeriesNode``) read their points
from table nodes, so the numbers behind every plot stay in the scene.
"""

import numpy as np
import slicer

from MIBGDosimetryLib import mrml

#: Points on fitted curves.
CURVE_POINTS = 100

_SERIES = slicer.vtkMRMLPlotSeriesNode
SCATTER, LINE, DASHED = _SERIES.PlotTypeScatter, _SERIES.PlotTypeLine, _SERIES.LineStyleDash


def _series(scene, name, table, x_column, y_column, plot_type, colour, line_style=None):
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName(x_column)
    series.SetYColumnName(y_column)
    series.SetPlotType(plot_type)
    series.SetColor(*colour)
    if plot_type == SCATTER and line_style is None:
        series.SetLineStyle(_SERIES.LineStyleNone)
        series.SetMarkerStyle(_SERIES.MarkerStyleCircle)
    elif line_style is not None:
        series.SetLineStyle(line_style)
    return series


def _chart(scene, name, title, x_title, y_title, series):
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(title)
    chart.SetXAxisTitle(x_title)
    chart.SetYAxisTitle(y_title)
    for item in series:
        chart.AddAndObservePlotSeriesNodeID(item.GetID())
    return chart


def recovery_chart(scene, inserts, curve, name_prefix="Recovery"):
    """Recovery coefficients per insert (points) and the fitted curve with its +/- 1 sigma band."""
    measured = mrml.add_table(scene, f"{name_prefix} inserts", {
        "insert": [i.name for i in inserts], "volume_ml": [i.volume_ml for i in inserts],
        "recovery": [i.recovery for i in inserts], "recovery_uncertainty": [i.recovery_uncertainty for i in inserts]})
    volumes = np.geomspace(0.5 * min(i.volume_ml for i in inserts), 2.0 * max(i.volume_ml for i in inserts),
                           CURVE_POINTS)
    value, uncertainty = curve.evaluate(volumes)
    fitted = mrml.add_table(scene, f"{name_prefix} curve", {
        "volume_ml": volumes, "recovery": value, "recovery_low": value - uncertainty,
        "recovery_high": value + uncertainty})
    series = [_series(scene, f"{name_prefix} measured", measured, "volume_ml", "recovery", SCATTER, (0.1, 0.3, 0.8)),
              _series(scene, f"{name_prefix} fit", fitted, "volume_ml", "recovery", LINE, (0.8, 0.2, 0.1)),
              _series(scene, f"{name_prefix} fit -1 sigma", fitted, "volume_ml", "recovery_low", LINE,
                      (0.8, 0.6, 0.5), DASHED),
              _series(scene, f"{name_prefix} fit +1 sigma", fitted, "volume_ml", "recovery_high", LINE,
                      (0.8, 0.6, 0.5), DASHED)]
    chart = _chart(scene, f"{name_prefix} chart", "Recovery coefficient (EANM eq. 5)", "Volume (mL)",
                   "Recovery coefficient", series)
    chart.SetXAxisLogScale(True)
    return chart


def count_rate_chart(scene, fit, name_prefix="Dead time"):
    """Observed count rates, the paralysable model (EANM eq. 6) and the incident (linear) rate."""
    measured = mrml.add_table(scene, f"{name_prefix} series", {
        "activity_MBq": fit.activity_MBq, "observed_cps": fit.observed_cps})
    activity = np.linspace(0.0, 1.1 * float(np.max(fit.activity_MBq)), CURVE_POINTS)
    model = mrml.add_table(scene, f"{name_prefix} model", {
        "activity_MBq": activity, "observed_cps": fit.model_observed_cps(activity),
        "incident_cps": fit.incident_cps(activity)})
    series = [_series(scene, f"{name_prefix} measured", measured, "activity_MBq", "observed_cps", SCATTER,
                      (0.1, 0.3, 0.8)),
              _series(scene, f"{name_prefix} paralysable fit", model, "activity_MBq", "observed_cps", LINE,
                      (0.8, 0.2, 0.1)),
              _series(scene, f"{name_prefix} incident rate", model, "activity_MBq", "incident_cps", LINE,
                      (0.3, 0.6, 0.3), DASHED)]
    return _chart(scene, f"{name_prefix} chart", f"Count rate, tau = {1e6 * fit.tau_s:.2f} us (EANM eq. 6)",
                  "Activity (MBq)", "Count rate (cps)", series)


def updates_chart(scene, choice, name_prefix="OSEM updates"):
    """Recovery of each insert and background noise (coefficient of variation) over OSEM updates."""
    columns = {"updates": [float(u) for u in choice.updates], "noise_cv": choice.noise_cv}
    for name, values in choice.recovery.items():
        columns[f"recovery_{name}"] = values
    table = mrml.add_table(scene, f"{name_prefix} table", columns)
    series = []
    count = max(len(choice.recovery), 1)
    for index, name in enumerate(choice.recovery):
        shade = 0.2 + 0.6 * index / count
        series.append(_series(scene, f"{name_prefix} recovery {name}", table, "updates", f"recovery_{name}", LINE,
                              (0.1, shade, 0.8)))
    series.append(_series(scene, f"{name_prefix} noise", table, "updates", "noise_cv", LINE, (0.8, 0.2, 0.1), DASHED))
    return _chart(scene, f"{name_prefix} chart",
                  f"Recovery and noise over OSEM updates (suggested {choice.suggested_updates})",
                  "OSEM updates (iterations x subsets)", "Recovery / coefficient of variation", series)
