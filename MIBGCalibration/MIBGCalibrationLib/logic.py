"""Scene-level calibration logic: run the chain on a phantom folder, or on phantom acquisitions loaded
into the scene by Slicer's DICOM module, write the record and put the record node and the calibration
plots into a given MRML scene.

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
    return _calibrate(scene, str(phantom_folder), _record_path(record_path), log, cancel)


def run_calibration_from_scene(scene, description_path, volumes_by_slot, record_path, file_for_instance,
                               log=None, cancel=None):
    """Calibrate from phantom acquisitions loaded into ``scene`` by Slicer's DICOM module.

    description_path: the phantom description (``phantom.json``: activities, times, geometry).
    volumes_by_slot: {slot key of :func:`acquisitions.acquisition_slots`: volume node}; a slot left out is
        read from the description's folder when its file is there.
    file_for_instance: SOPInstanceUID -> path ('' when unknown); in Slicer the DICOM database's
        ``fileForInstance``.
    The acquisitions are read from their DICOM files (the header facts the chain needs are not in the
    volume nodes); a volume whose voxel values differ from its file's (edited, or a value mapping) is
    refused. Results, ``log`` and ``cancel`` as :func:`run_calibration`; the record's provenance names the
    DICOM files of the volumes."""
    from MIBGCalibrationLib import acquisitions

    _, slots = acquisitions.description_slots(description_path)
    labels = {slot.key: slot.label for slot in slots}
    files = {}
    for key, node in volumes_by_slot.items():
        if node is None:
            continue
        if key not in labels:
            raise ValueError(f"The phantom description asks for no acquisition '{key}'.")
        files[key] = volume_file(scene, node, labels[key], file_for_instance)
    record_path = _record_path(record_path)
    with acquisitions.staged_calibration_folder(description_path, files) as (folder, origins):
        return _calibrate(scene, folder, record_path, log, cancel,
                          provenance=lambda p: acquisitions.with_original_inputs(p, origins))


def volume_file(scene, node, label, file_for_instance):
    """The one DICOM file of a calibration acquisition loaded as ``node``, checked against the node's voxels."""
    import numpy as np

    from MIBGCalibrationLib import dicom_files
    from MIBGDosimetryLib.scene.logic import dicom_files as files_of_volume
    from MIBGDosimetryLib.volume import ImageVolume

    files = files_of_volume(node, file_for_instance)
    if not files:
        raise ValueError(f"The volume '{node.GetName()}' chosen for '{label}' was not loaded by the DICOM module, so "
                         "its acquisition facts (times, windows, detectors) are unknown; load its series with the "
                         "DICOM module, or use the phantom folder.")
    if len(files) != 1:
        raise ValueError(f"The volume '{node.GetName()}' chosen for '{label}' is made of {len(files)} DICOM files; a "
                         "calibration acquisition is one NM object (all frames in one file).")
    total = float(np.sum(ImageVolume.from_node(scene, node, units="counts").array, dtype=float))
    expected = float(np.sum(dicom_files.counts_of(dicom_files.read_dataset(files[0])), dtype=float))
    if not np.isclose(total, expected, rtol=1e-6, atol=1e-9):
        raise ValueError(f"The voxel values of the volume '{node.GetName()}' (total {total:.6g}) differ from its DICOM "
                         f"file's counts (total {expected:.6g}): it was edited or a value mapping was applied. Load "
                         "its series again with the DICOM module.")
    return files[0]


def _record_path(record_path):
    if not record_path or os.path.isdir(str(record_path)):
        raise ValueError("Choose a file name for the calibration record (JSON).")
    return os.path.abspath(str(record_path))


def _calibrate(scene, folder, record_path, log, cancel, provenance=None):
    cancelled = getattr(cancel, "is_set", cancel)

    def step(message):
        if cancelled is not None and cancelled():
            raise CalibrationCancelled("The calibration was cancelled; no record was written.")
        if log is not None:
            log(message)

    result = phantom_calibration.calibrate_phantom_folder(folder, log=step)
    if provenance is not None:
        result.record.provenance = provenance(result.record.provenance)
    step("Writing the calibration record")
    phantom_calibration.write_outputs(result, record_path)
    node = result.record.to_node(scene, name=f"Calibration record {os.path.basename(record_path)}")
    charts = add_plots(scene, result)
    for chart in charts.values():
        chart.SetAttribute(RECORD_REFERENCE_ATTRIBUTE, node.GetID())
    return CalibrationOutputs(result, node, charts, record_path)


#: Node reference role of the volume chosen for an acquisition slot, on the module's parameter node
#: (saved with the scene). MRML reference roles cannot hold ':' or ';', so the slot's dots become '_'.
ACQUISITION_ROLE_PREFIX = "MIBGCalibrationAcquisition_"


def acquisition_role(slot_key):
    return ACQUISITION_ROLE_PREFIX + slot_key.replace(".", "_")


def set_scene_acquisition(parameter_node, slot_key, node):
    """Remember on ``parameter_node`` the volume chosen for a slot (None forgets it)."""
    parameter_node.SetNodeReferenceID(acquisition_role(slot_key), node.GetID() if node is not None else None)


def scene_acquisitions(parameter_node, slots):
    """{slot key: volume node} of the volumes remembered on ``parameter_node`` for ``slots``."""
    chosen = {}
    for slot in slots:
        node = parameter_node.GetNodeReference(acquisition_role(slot.key))
        if node is not None:
            chosen[slot.key] = node
    return chosen
