"""MRML helpers shared by both modules: scenes, volumes, tables and scene bundles.

The functions take the scene explicitly. They work on Slicer's MRML library both inside the
application and headless (``slicer-core``). Arrays follow Slicer's convention: a volume array is
indexed ``[k, j, i]`` (slice, row, column); geometry is given as spacing (mm, along i, j, k),
origin (RAS, mm) and a 3x3 matrix whose columns are the RAS directions of i, j and k.
"""

import contextlib
import os
import shutil
import tempfile
import zipfile

import numpy as np
import slicer
import vtk

#: Attribute that SlicerRT uses to recognise dose volumes (DVH, isodose, RT export).
DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"


class SceneContext:
    """An MRML scene with the module logics the extension uses, wired to one application logic.

    Inside the Slicer application pass its scene and application logic; headless, both are new.
    """

    def __init__(self, scene=None, app_logic=None):
        self.scene = scene if scene is not None else slicer.vtkMRMLScene()
        if app_logic is None:
            app_logic = slicer.vtkMRMLApplicationLogic()
            app_logic.SetMRMLScene(self.scene)
        self.app_logic = app_logic
        self.volumes_logic = slicer.vtkSlicerVolumesLogic()
        self.segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.transform_logic = slicer.vtkSlicerTransformLogic()
        self.sequences_logic = slicer.vtkSlicerSequencesLogic()
        self.subject_hierarchy_logic = slicer.vtkSlicerSubjectHierarchyModuleLogic()
        self.tables_logic = slicer.vtkSlicerTablesLogic()
        for logic in (self.volumes_logic, self.segmentations_logic, self.transform_logic,
                      self.sequences_logic, self.subject_hierarchy_logic, self.tables_logic):
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)

    @classmethod
    def of_application(cls, slicer_module):
        """The running application's scene, application logic and module logics
        (``slicer.modules.<name>.logic()``), never second instances of them."""
        context = cls.__new__(cls)
        context.scene = slicer_module.mrmlScene
        context.app_logic = slicer_module.app.applicationLogic()
        modules = slicer_module.modules
        context.volumes_logic = modules.volumes.logic()
        context.segmentations_logic = modules.segmentations.logic()
        context.transform_logic = modules.transforms.logic()
        context.sequences_logic = modules.sequences.logic()
        context.subject_hierarchy_logic = modules.subjecthierarchy.logic()
        context.tables_logic = modules.tables.logic()
        return context


def new_scene():
    """Return a :class:`SceneContext` holding a new, empty scene."""
    return SceneContext()


@contextlib.contextmanager
def util_scene(scene):
    """Point ``slicer.mrmlScene`` (read by ``slicer.util``) at ``scene`` for the duration of a block."""
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = scene
    try:
        yield scene
    finally:
        slicer.mrmlScene = previous


def ijk_to_ras_matrix(spacing_mm, origin_ras_mm, directions=None):
    """4x4 IJK-to-RAS matrix from spacing, origin and direction columns."""
    directions = np.eye(3) if directions is None else np.asarray(directions, dtype=float)
    m = np.eye(4)
    m[:3, :3] = directions * np.asarray(spacing_mm, dtype=float)[np.newaxis, :]
    m[:3, 3] = origin_ras_mm
    return m


def set_volume_geometry(node, spacing_mm, origin_ras_mm, directions=None):
    """Set spacing, origin and directions of a volume node."""
    directions = np.eye(3) if directions is None else np.asarray(directions, dtype=float)
    node.SetSpacing(*[float(s) for s in spacing_mm])
    node.SetOrigin(*[float(o) for o in origin_ras_mm])
    vtk_dirs = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            vtk_dirs.SetElement(r, c, directions[r, c])
    node.SetIJKToRASDirectionMatrix(vtk_dirs)


def volume_geometry(node):
    """Return ``(spacing_mm, origin_ras_mm, directions)`` of a volume node as numpy arrays."""
    directions = np.zeros((3, 3))
    node.GetIJKToRASDirections(directions)
    return np.array(node.GetSpacing()), np.array(node.GetOrigin()), directions


def add_volume(scene, array, name, spacing_mm=(1.0, 1.0, 1.0), origin_ras_mm=(0.0, 0.0, 0.0),
               directions=None, class_name="vtkMRMLScalarVolumeNode", attributes=None):
    """Add a scalar volume node built from a ``[k, j, i]`` numpy array; the array is copied."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"Volume '{name}' must be a 3-D array, got shape {array.shape}.")
    node = scene.AddNewNodeByClass(class_name, name)
    node.CreateDefaultDisplayNodes()
    set_volume_geometry(node, spacing_mm, origin_ras_mm, directions)
    with util_scene(scene):
        slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    for key, value in (attributes or {}).items():
        node.SetAttribute(key, str(value))
    return node


def array_from_volume(scene, node, copy=True):
    """Return the voxel array of a volume node (``[k, j, i]``), a copy unless ``copy=False``."""
    with util_scene(scene):
        array = slicer.util.arrayFromVolume(node)
    return np.array(array) if copy else array


def add_table(scene, name, columns):
    """Add a table node from ``{column name: sequence}``; str columns stay strings, numbers become doubles."""
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    fill_table(node, columns)
    return node


#: Significant digits kept in numeric table cells. Slicer writes tables as text with this precision,
#: so values are rounded when the table is filled and a saved scene reloads with identical tables;
#: full-precision results are kept in the JSON outputs.
TABLE_SIGNIFICANT_DIGITS = 6


def fill_table(node, columns):
    """Replace the content of a table node with ``{column name: sequence}``.

    Numeric cells are rounded to :data:`TABLE_SIGNIFICANT_DIGITS` significant digits.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"Table '{node.GetName()}': columns have different lengths {sorted(lengths)}.")
    table = vtk.vtkTable()
    for column_name, values in columns.items():
        values = list(values)
        if values and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                          for v in values):
            array = vtk.vtkDoubleArray()
            for v in values:
                array.InsertNextValue(float(f"{float(v):.{TABLE_SIGNIFICANT_DIGITS}g}"))
        else:
            array = vtk.vtkStringArray()
            for v in values:
                array.InsertNextValue("" if v is None else str(v))
        array.SetName(column_name)
        table.AddColumn(array)
    node.SetAndObserveTable(table)
    return node


def table_columns(node):
    """Return a table node's content as ``{column name: list}`` (numbers as float, others as str)."""
    table = node.GetTable()
    result = {}
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        values = [column.GetValue(r) for r in range(table.GetNumberOfRows())]
        if isinstance(column, vtk.vtkDataArray):
            values = [float(v) for v in values]
        else:
            values = [str(v) for v in values]
        result[column.GetName()] = values
    return result


def save_bundle(context, mrb_path):
    """Write the whole scene as a Slicer data bundle (``.mrb``), completely or not at all.

    The bundle is assembled in a temporary folder and renamed into place only when it is complete,
    so an existing file is never left half-written.
    """
    mrb_path = os.path.abspath(mrb_path)
    os.makedirs(os.path.dirname(mrb_path), exist_ok=True)
    # Assembled beside the destination so that the final rename is atomic.
    work = tempfile.mkdtemp(prefix=".mibg-mrb-", dir=os.path.dirname(mrb_path))
    try:
        bundle_dir = os.path.join(work, os.path.splitext(os.path.basename(mrb_path))[0])
        os.makedirs(bundle_dir)
        for node in _storable_nodes(context.scene):
            if node.GetStorageNode() is None:
                node.AddDefaultStorageNode()
        if not context.app_logic.SaveSceneToSlicerDataBundleDirectory(bundle_dir, None):
            raise RuntimeError(f"Could not write the scene bundle for {mrb_path}.")
        partial = os.path.join(work, "bundle.mrb")
        if not context.app_logic.Zip(partial, bundle_dir) or not zipfile.is_zipfile(partial):
            raise RuntimeError(f"Could not compress the scene bundle for {mrb_path}.")
        os.replace(partial, mrb_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return mrb_path


def load_bundle(mrb_path):
    """Open a ``.mrb`` into a new scene and return its :class:`SceneContext`.

    ``OpenSlicerDataBundle`` may report failure for scenes that did load (e.g. with sequence
    browsers), so success is judged by the content: an empty scene is an error.
    """
    if not zipfile.is_zipfile(mrb_path):
        raise ValueError(f"'{mrb_path}' is not a Slicer scene bundle (.mrb zip file).")
    context = new_scene()
    work = tempfile.mkdtemp(prefix="mibg-open-")
    try:
        context.app_logic.OpenSlicerDataBundle(mrb_path, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if context.scene.GetNumberOfNodesByClass("vtkMRMLStorableNode") == 0:
        raise ValueError(f"The scene bundle '{mrb_path}' holds no data nodes.")
    return context


def _storable_nodes(scene):
    nodes = scene.GetNodesByClass("vtkMRMLStorableNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
