"""Registration results in the MRML scene: transform nodes the user can inspect and correct, and the
registered SPECTs as a sequence.

A transform node's "from parent" transform maps reference (world) points to the time point's frame,
which is the resampling convention of ``matrix_ras``: placing a time point's volume under the node
shows it aligned with the reference, and a transform corrected by hand in Slicer's Transforms module
is read back with :func:`matrix_from_transform_node`.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from MIBGDosimetryLib import mrml
from MIBGDosimetryLib.registration.transforms import check_matrix

#: Node attribute holding a result's quality figures and warnings (JSON).
QUALITY_ATTRIBUTE = "MIBGDosimetry.RegistrationQuality"


def _vtk_matrix(matrix):
    vtk_matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vtk_matrix.SetElement(r, c, float(matrix[r, c]))
    return vtk_matrix


def _read_itk_transform_node(scene, transform, name):
    """A general transform node read from an ITK transform file written by SimpleITK."""
    work = tempfile.mkdtemp(prefix="mibg-transform-")
    try:
        path = os.path.join(work, "transform.h5")
        sitk.WriteTransform(transform, path)
        node = scene.AddNewNodeByClass("vtkMRMLTransformNode", name)
        storage = scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
        storage.SetFileName(path)
        if not storage.ReadData(node):
            raise RuntimeError(f"Could not read the deformable transform '{name}' into the scene.")
        scene.RemoveNode(storage)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return node


def add_transform_node(scene, result, name):
    """Add a transform node for a RegistrationResult: linear for rigid results, the full B-spline
    transform otherwise. Quality figures and warnings are stored in the node attribute
    :data:`QUALITY_ATTRIBUTE`."""
    if result.transform is None:
        node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
        node.SetMatrixTransformFromParent(_vtk_matrix(check_matrix(result.matrix_ras)))
    else:
        node = _read_itk_transform_node(scene, result.transform, name)
    node.SetAttribute(QUALITY_ATTRIBUTE, json.dumps(result.to_dict()))
    return node


def matrix_from_transform_node(node):
    """RAS 4x4 matrix (reference -> time point) of a linear transform node, e.g. after manual correction."""
    if not node.IsLinear():
        raise ValueError(f"The transform '{node.GetName()}' is not linear; choose a rigid registration result.")
    vtk_matrix = vtk.vtkMatrix4x4()
    node.GetMatrixTransformFromParent(vtk_matrix)
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def add_volume_sequence(context, volumes, name, index_values, index_name="time", index_unit="h"):
    """Add a sequence of volumes (one ImageVolume per index value) with a browser node.

    Returns ``(sequence_node, browser_node)``; the browser's proxy volume shows the current item.
    """
    if len(volumes) != len(index_values):
        raise ValueError(f"{len(volumes)} volumes but {len(index_values)} index values for sequence '{name}'.")
    scene = context.scene
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(index_unit)
    sequence.SetIndexType(sequence.NumericIndex)
    for volume, value in zip(volumes, index_values):
        item = volume.to_node(scene, f"{name} {value}")
        sequence.SetDataNodeAtValue(item, f"{float(value):g}")
        scene.RemoveNode(item)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    context.sequences_logic.UpdateProxyNodesFromSequences(browser)
    return sequence, browser


def array_at_sequence_item(context, sequence, item_index):
    """Voxel array of the volume stored at ``item_index`` of a sequence node."""
    with mrml.util_scene(context.scene):
        return np.array(slicer.util.arrayFromVolume(sequence.GetNthDataNode(item_index)))


def add_registration_to_scene(context, results, registered_spects, labels, hours_after_administration):
    """Put a study's registration into the scene: one transform node per time point (named
    "<label> to reference") and the registered SPECTs as the sequence "SPECT on reference grid",
    indexed by hours after administration. Returns ``(transform_nodes, sequence_node, browser_node)``.
    """
    if not len(results) == len(registered_spects) == len(labels) == len(hours_after_administration):
        raise ValueError("Give one registration result, registered SPECT, label and time per time point.")
    nodes = [add_transform_node(context.scene, result, f"{label} to reference")
             for result, label in zip(results, labels)]
    sequence, browser = add_volume_sequence(context, registered_spects, "SPECT on reference grid",
                                            hours_after_administration)
    return nodes, sequence, browser
