"""Scene-level calibration logic: run the chain on a phantom folder, write the record and put the
record node and the calibration plots into a given MRML scene.

This is what the module's GUI calls; it works on any scene (the application's or a headless one).
"""

import dataclasses
import os

from MIBGCalibrationLib import phantom_calibration, plots

#: Node attribute linking a plot chart to the calibration record node it illustrates.
RECORD_REFERENCE_ATTRIBUTE = "MIBGCalibration.RecordNodeID"


@dataclasses.dataclass
class CalibrationOutputs:
    """What a calibration run left in the scene and on disk."""

    result: phantom_calibration.PhantomCalibration
    record_node: object
    charts: dict
    record_path: str


def add_plots(scene, result):
    """Add the charts of a calibration to ``scene``: ``{"recovery"|"count_rate"|"updates": chart node}``."""
    charts = {}
    if result.recovery_curve is not None:
        charts["recovery"] = plots.recovery_chart(scene, result.inserts, result.recovery_curve)
    if result.dead_time is not None:
        charts["count_rate"] = plots.count_rate_chart(scene, result.dead_time)
    if result.osem_choice is not None:
        charts["updates"] = plots.updates_chart(scene, result.osem_choice)
    return charts


class CalibrationCancelled(Exception):
    """The user cancelled the calibration; nothing was written and nothing was added to the scene."""


def run_calibration(scene, phantom_folder, record_path, log=None, cancel=None):
    """Calibrate from ``phantom_folder``, write the record JSON to ``record_path`` (and the scatter-corrected
    projections beside it) and add the record node and the plots to ``scene``.

    ``log`` receives one line per step; ``cancel`` (a callable, or an object with ``is_set``) is checked
    before each step and before anything is written: when it answers True, :class:`CalibrationCancelled`
    is raised and neither the files nor the scene are changed."""
    if not phantom_folder or not os.path.isdir(str(phantom_folder)):
        raise ValueError("Choose an existing folder with the calibration phantom acquisitions "
                         f"(got '{phantom_folder}').")
    if not record_path or os.path.isdir(str(record_path)):
        raise ValueError("Choose a file name for the calibration record (JSON).")
    record_path = os.path.abspath(str(record_path))
    cancelled = getattr(cancel, "is_set", cancel)

    def step(message):
        if cancelled is not None and cancelled():
            raise CalibrationCancelled("The calibration was cancelled; no record was written.")
        if log is not None:
            log(message)

    result = phantom_calibration.calibrate_phantom_folder(phantom_folder, log=step)
    step("Writing the calibration record")
    phantom_calibration.write_outputs(result, record_path)
    node = result.record.to_node(scene, name=f"Calibration record {os.path.basename(record_path)}")
    charts = add_plots(scene, result)
    for chart in charts.values():
        chart.SetAttribute(RECORD_REFERENCE_ATTRIBUTE, node.GetID())
    return CalibrationOutputs(result, node, charts, record_path)
