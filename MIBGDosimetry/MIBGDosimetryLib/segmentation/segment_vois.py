"""VOIs from segments drawn in Slicer: a segmentation node, a ``.seg.nrrd`` file or a DICOM SEG/RTSTRUCT.

Every segment becomes one VOI named after the segment. Whether it is an organ or a lesion is
decided, in this order, by:

1. the segment tag ``MIBG.VOIType`` (``organ`` or ``lesion``), set by the extension's effects or by
   hand (Segment Editor > Segmentations > segment > tags);
2. the segment name: a name starting with ``lesion``, ``tumour`` or ``tumor`` (any case), or equal
   to the name of one of the study's lesion seed points, is a lesion;
3. otherwise the segment is an organ.

Masks are taken on the reference SPECT grid with the segment's geometry (a segmentation drawn on
the CT is exported by Slicer's segmentations logic onto the SPECT grid). Each VOI also keeps the
volume measured on the segmentation's own, usually finer, grid in ``details["volume_ml"]``.
"""

import numpy as np

#: Segment tag that says whether a segment is an organ or a lesion.
VOI_TYPE_TAG = "MIBG.VOIType"
VOI_TYPES = ("organ", "lesion")
LESION_NAME_PREFIXES = ("lesion", "tumour", "tumor")

RULE_TEXT = (f"each segment is a VOI named after it; the segment tag {VOI_TYPE_TAG} = organ|lesion decides its "
             f"kind, otherwise a name starting with {'/'.join(LESION_NAME_PREFIXES)} or equal to a lesion seed "
             "point's name makes it a lesion, and any other segment is an organ")


def voi_kind(name, tag=None, lesion_names=()):
    """``"organ"`` or ``"lesion"`` for a segment by the rule of this module."""
    if tag:
        kind = tag.strip().lower()
        if kind not in VOI_TYPES:
            raise ValueError(f"Segment '{name}' has {VOI_TYPE_TAG} = '{tag}'; it must be 'organ' or 'lesion'.")
        return kind
    if name.lower().startswith(LESION_NAME_PREFIXES) or name in set(lesion_names):
        return "lesion"
    return "organ"


def segment_ids(segmentation_node):
    """IDs of the segments of a segmentation node, in their order."""
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]


def segment_tag(segment, key=VOI_TYPE_TAG):
    """A segment's tag value, or None."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else None


def vois_from_segmentation_node(scene, segmentation_node, reference, lesion_names=(), source=None):
    """The segments of ``segmentation_node`` as :class:`Voi` objects on the grid of ImageVolume ``reference``.

    Each segment's binary labelmap is carried onto the reference grid by
    :func:`~MIBGDosimetryLib.registration.resample.resample_mask` (a coarse voxel belongs to the VOI
    when most of it lies inside the segment), as the study's DICOM SEG outlines are.
    """
    from MIBGDosimetryLib.registration.resample import resample_mask
    from MIBGDosimetryLib.segmentation.segments import mask_from_segment
    from MIBGDosimetryLib.workflow.vois import DrawnOutline, Voi, outline_details

    ids = segment_ids(segmentation_node)
    if not ids:
        raise ValueError(f"The segmentation '{segmentation_node.GetName()}' holds no segment; draw the organs and "
                         "lesions first.")
    source = source or f"segmentation '{segmentation_node.GetName()}'"
    vois = []
    for segment_id in ids:
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        name = segment.GetName()
        kind = voi_kind(name, segment_tag(segment), lesion_names)
        own = segment_on_own_grid(segmentation_node, segment_id)
        drawn = None
        if own is None:
            mask, details = mask_from_segment(scene, segmentation_node, segment_id, reference), {}
        else:
            mask = resample_mask(own.array, own, reference, np.eye(4))
            details = outline_details(own.array, own)
            drawn = DrawnOutline.cropped(own.array, own)
        vois.append(Voi(name, kind, _not_empty(mask, name), source, details, drawn=drawn))
    return vois


def _not_empty(mask, name):
    if not mask.any():
        raise ValueError(f"The segment '{name}' covers no voxel of the SPECT grid; draw it inside the SPECT's field "
                         "of view or delete it.")
    return mask


def segment_on_own_grid(segmentation_node, segment_id):
    """A segment's binary labelmap as a boolean :class:`ImageVolume` on its own grid (the grid it was
    drawn on), or None when the segmentation has no binary labelmap representation."""
    import vtk
    from vtk.util import numpy_support

    from MIBGDosimetryLib.volume import ImageVolume

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation("Binary labelmap")
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return None
    extent = labelmap.GetExtent()
    dims = [extent[2 * a + 1] - extent[2 * a] + 1 for a in range(3)]
    if min(dims) <= 0:
        return None
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1])
    image_to_world = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(image_to_world)
    matrix = np.array([[image_to_world.GetElement(r, c) for c in range(4)] for r in range(4)])
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    origin = matrix[:3, :3] @ np.array(extent[::2], dtype=float) + matrix[:3, 3]
    return ImageVolume(values == segment.GetLabelValue(), tuple(spacing), tuple(origin), matrix[:3, :3] / spacing)


def read_segmentation_file(scene, path):
    """A ``.seg.nrrd`` file (saved from Slicer) as a new segmentation node in ``scene``."""
    import os

    if not os.path.isfile(path):
        raise ValueError(f"The segmentation file '{path}' does not exist.")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", os.path.basename(path))
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(os.path.abspath(path))
    try:
        if not storage.ReadData(node) or node.GetSegmentation().GetNumberOfSegments() == 0:
            raise ValueError(f"'{path}' could not be read as a Slicer segmentation (.seg.nrrd) or holds no segment.")
    except Exception:
        scene.RemoveNode(node)
        raise
    finally:
        scene.RemoveNode(storage)
    return node


def vois_from_file(path, reference, lesion_names=()):
    """VOIs from a ``.seg.nrrd`` (Slicer segmentation) or a DICOM SEG/RTSTRUCT file, on ``reference``'s grid."""
    if path.lower().endswith(".nrrd"):
        from MIBGDosimetryLib import mrml

        context = mrml.new_scene()
        try:
            node = read_segmentation_file(context.scene, path)
            return vois_from_segmentation_node(context.scene, node, reference, lesion_names, f"segmentation {path}")
        finally:
            context.scene.Clear(1)
    return _vois_from_dicom(path, reference, lesion_names)


def _vois_from_dicom(path, reference, lesion_names):
    import pydicom

    from MIBGDosimetryLib.segmentation import dicom_vois
    from MIBGDosimetryLib.workflow.vois import Voi

    try:
        modality = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality")
    except Exception as error:  # pydicom raises several kinds of errors on non-DICOM files
        raise ValueError(f"'{path}' is neither a Slicer segmentation (.seg.nrrd) nor a DICOM file ({error}).") from None
    readers = {"SEG": dicom_vois.read_dicom_seg, "RTSTRUCT": dicom_vois.read_rtstruct}
    if modality not in readers:
        raise ValueError(f"'{path}' is a DICOM {modality or 'file without modality'}, not a SEG or RTSTRUCT; give a "
                         "segmentation.")
    return [Voi(name, voi_kind(name, None, lesion_names), _not_empty(np.asarray(mask, dtype=bool), name),
                f"{modality} {path}")
            for name, mask in readers[modality](path, reference).items()]
