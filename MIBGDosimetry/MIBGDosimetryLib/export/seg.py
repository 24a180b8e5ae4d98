"""DICOM SEG export of the VOIs (binary masks on the reference CT grid) and reading them back.

The segmentation references the CT images it was drawn on, slice by slice, so a central reviewer's
viewer places every VOI on the right CT image. highdicom (imported inside the functions) builds the
object; reading back uses pydicom and the frames' positions only, so any grid equal to the CT's
receives the masks.
"""

import os

import numpy as np
import pydicom

from MIBGDosimetryLib import __version__, compat
from MIBGDosimetryLib.volume import LPS_TO_RAS

#: Position tolerance (mm) when matching mask slices to CT images and SEG frames to grid slices.
POSITION_TOLERANCE_MM = 0.01

#: (category, type) codes (SNOMED CT) of the VOI kinds, as PS3.16 CID 7150 / CID 7151 offer them.
KIND_CODES = {"organ": (("91723000", "Anatomical Structure"), ("91772007", "Organ")),
              "lesion": (("49755003", "Morphologically Abnormal Structure"), ("108369006", "Neoplasm"))}


@compat.lends_numpy_aliases_to_highdicom
def write_seg(masks, reference, ct_datasets, path, kinds=None, series_description="MIBG dosimetry VOIs",
              algorithm_name="MIBGDosimetry VOIs"):
    """Write VOI masks as a DICOM SEG referencing the CT images; completely or not at all.

    masks: {VOI name: boolean array [k, j, i] on the ``reference`` grid}.
    reference: the CT :class:`ImageVolume` the masks are on (the grid of ``ct_datasets``).
    ct_datasets: pydicom datasets of the CT images (any order); each mask slice is matched to the
        CT image at its position.
    kinds: {VOI name: "organ" | "lesion"} (default organ) for the segment category and type codes.
    """
    import highdicom as hd

    if not masks:
        raise ValueError("There are no VOIs to export.")
    ordered = _match_slices(reference, ct_datasets)
    names = list(masks)
    stack = np.zeros((len(ordered),) + reference.array.shape[1:] + (len(names),), dtype=bool)
    for s, name in enumerate(names):
        mask = np.asarray(masks[name], dtype=bool)
        if mask.shape != reference.array.shape:
            raise ValueError(f"The mask of '{name}' has shape {mask.shape}, not the CT grid's "
                             f"{reference.array.shape}; resample it onto the CT first.")
        if not mask.any():
            raise ValueError(f"The VOI '{name}' is empty; remove it or draw it before exporting.")
        stack[:, :, :, s] = mask
    kinds = kinds or {}
    descriptions = []
    for number, name in enumerate(names, start=1):
        kind = kinds.get(name, "organ")
        if kind not in KIND_CODES:
            raise ValueError(f"The kind of '{name}' is '{kind}'; use 'organ' or 'lesion'.")
        (category_value, category_meaning), (type_value, type_meaning) = KIND_CODES[kind]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64],
            segmented_property_category=hd.sr.CodedConcept(category_value, "SCT", category_meaning),
            segmented_property_type=hd.sr.CodedConcept(type_value, "SCT", type_meaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=algorithm_name, version=__version__,
                family=hd.sr.CodedConcept("123101", "DCM", "Neighborhood Analysis"))))
    seg = hd.seg.Segmentation(
        source_images=[ct_datasets[n] for n in ordered], pixel_array=stack,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=902, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="SlicerMIBGDosimetry", manufacturer_model_name="MIBGDosimetry",
        software_versions=__version__, device_serial_number="1", series_description=series_description,
        content_label="VOIS", content_description="VOIs of the absorbed-dose calculation",
        content_creator_name="", omit_empty_frames=True)
    _drop_invalid_type_of_patient_id(seg)
    from MIBGDosimetryLib.export.rtdose import save_dataset

    save_dataset(seg, path)
    return os.path.abspath(path)


#: Defined terms of TypeOfPatientID (0010,0022), a Type 3 attribute of the Patient module (PS3.3 C.7.1.1).
TYPE_OF_PATIENT_ID_TERMS = {"TEXT", "RFID", "BARCODE"}


def _drop_invalid_type_of_patient_id(dataset):
    """TypeOfPatientID copied from the CT is kept only when it holds a defined term; an empty or
    other value is left out (the attribute is optional)."""
    if "TypeOfPatientID" in dataset and str(dataset.TypeOfPatientID or "").strip().upper() not in \
            TYPE_OF_PATIENT_ID_TERMS:
        del dataset.TypeOfPatientID


def read_seg_masks(path, reference):
    """Read a DICOM SEG into {segment label: boolean array [k, j, i]} on the ``reference`` grid.

    Each frame is placed by its ImagePositionPatient; a frame that falls between the reference's
    slices or outside it is an error (the SEG belongs to another grid).
    """
    ds = pydicom.dcmread(path)
    if ds.SOPClassUID != "1.2.840.10008.5.1.4.1.1.66.4":
        raise ValueError(f"'{path}' is not a DICOM Segmentation object.")
    labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in ds.SegmentSequence}
    masks = {label: np.zeros(reference.array.shape, dtype=bool) for label in labels.values()}
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns).astype(bool)
    if (ds.Rows, ds.Columns) != reference.array.shape[1:]:
        raise ValueError(f"'{path}' has frames of {ds.Rows}x{ds.Columns} pixels; the reference slices are "
                         f"{reference.array.shape[1]}x{reference.array.shape[2]}.")
    for n, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        position_lps = np.array([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient])
        position_ras = LPS_TO_RAS @ position_lps
        k = int(round(reference.ijk_of_ras(position_ras)[2]))
        off_grid_mm = np.linalg.norm(position_ras - reference.ras_of_ijk([0, 0, k]))
        if off_grid_mm > POSITION_TOLERANCE_MM or not 0 <= k < reference.array.shape[0]:
            raise ValueError(f"Frame {n + 1} of '{path}' does not lie on a slice of the reference grid.")
        masks[labels[number]][k] |= frames[n]
    return masks


def _match_slices(reference, ct_datasets):
    """Index into ``ct_datasets`` of the CT image at each slice k of ``reference``."""
    if len(ct_datasets) == 0:
        raise ValueError("No CT images were given to reference.")
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in ct_datasets])
    order = []
    for k in range(reference.array.shape[0]):
        corner_lps = LPS_TO_RAS @ reference.ras_of_ijk([0, 0, k])
        distance = np.linalg.norm(positions - corner_lps, axis=1)
        best = int(np.argmin(distance))
        if distance[best] > POSITION_TOLERANCE_MM:
            raise ValueError(f"No CT image lies at slice {k} of the mask grid (nearest is {distance[best]:.2f} mm "
                             "away); the masks must be on the grid of the CT series given.")
        ds = ct_datasets[best]
        if (ds.Rows, ds.Columns) != reference.array.shape[1:]:
            raise ValueError("The CT images and the mask grid have different numbers of rows or columns.")
        order.append(best)
    return order
