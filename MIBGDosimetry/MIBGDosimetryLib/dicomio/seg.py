"""DICOM Segmentation (binary) of structures drawn on a CT series, written with highdicom."""

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from MIBGDosimetryLib import __version__, compat
from MIBGDosimetryLib.dicomio import common

#: SNOMED CT category of anatomical structures and neoplasms (DICOM CID 7150) and property types
#: (CID 7151) of the structure names the phantoms use; other names are coded as "Tissue".
TISSUE = ("85756007", "SCT", "Tissue")
ANATOMICAL_STRUCTURE = ("91723000", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")
PROPERTY_TYPES = {
    "liver": ("10200004", "SCT", "Liver"),
    "heart": ("80891009", "SCT", "Heart"),
    "kidney": ("64033007", "SCT", "Kidney"),
    "bladder": ("89837001", "SCT", "Bladder"),
    "salivary": ("385294005", "SCT", "Salivary gland"),
    "lung": ("39607008", "SCT", "Lung"),
}
NEOPLASM = ("108369006", "SCT", "Neoplasm")


def segment_codes(name, kind="organ"):
    """(category, type) codes for a structure called ``name`` of ``kind`` "organ" or "lesion"."""
    if kind == "lesion":
        return MORPHOLOGICALLY_ABNORMAL, NEOPLASM
    for key, code in PROPERTY_TYPES.items():
        if key in name.lower():
            return ANATOMICAL_STRUCTURE, code
    return TISSUE, TISSUE


@compat.lends_numpy_aliases_to_highdicom
def write_segmentation(masks, kinds, ct_paths, path, series_number=100, series_description="Organ outlines"):
    """Write binary masks on a CT series as one DICOM SEG.

    ``masks`` maps segment labels to boolean arrays [k, j, i] on the grid of the CT series whose
    slice files are ``ct_paths`` (in the order of k); ``kinds`` maps each label to "organ" or
    "lesion". Segment numbers follow the order of ``masks``.
    """
    import highdicom as hd

    sources = [pydicom.dcmread(p) for p in ct_paths]
    names = list(masks)
    if not names:
        raise ValueError("A segmentation needs at least one segment.")
    shape = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    stack = np.zeros(shape + (len(names),), dtype=bool)
    for n, name in enumerate(names):
        mask = np.asarray(masks[name], dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"The mask '{name}' has shape {mask.shape}; the CT series has {shape}.")
        if not mask.any():
            raise ValueError(f"The mask '{name}' is empty; remove it or give it voxels.")
        stack[..., n] = mask
    descriptions = []
    for n, name in enumerate(names):
        category, property_type = segment_codes(name, kinds.get(name, "organ"))
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=name,
            segmented_property_category=hd.sr.CodedConcept(*category),
            segmented_property_type=hd.sr.CodedConcept(*property_type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=stack, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=common.MANUFACTURER,
        manufacturer_model_name="MIBGDosimetry", software_versions=__version__, device_serial_number="0001",
        series_description=series_description)
    return common.write_dataset(seg, path)
