"""Volumes of interest on the reference SPECT grid: organs from DICOM SEG/RTSTRUCT, lesions from
seed points by the adaptive threshold."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Voi:
    """A VOI on the reference SPECT grid."""

    name: str
    kind: str  # "organ" or "lesion"
    mask: np.ndarray
    source: str
    details: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)

    def volume_ml(self, voxel_volume_ml):
        return float(np.count_nonzero(self.mask)) * voxel_volume_ml


def organ_vois(segmentation_files, reference):
    """Organ VOIs from DICOM SEG and RTSTRUCT files, resampled onto ``reference`` (ImageVolume)."""
    import pydicom

    from MIBGDosimetryLib.segmentation import dicom_vois

    vois = []
    for path in segmentation_files:
        modality = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).Modality
        if modality == "SEG":
            masks = dicom_vois.read_dicom_seg(path, reference)
        elif modality == "RTSTRUCT":
            masks = dicom_vois.read_rtstruct(path, reference)
        else:
            continue
        for name, mask in masks.items():
            voi = Voi(name, "organ", np.asarray(mask, dtype=bool), f"{modality} {path}")
            if not voi.mask.any():
                voi.warnings.append(f"organ '{name}' from {path} covers no voxel of the SPECT grid")
            vois.append(voi)
    return vois


def lesion_vois(reference, seed_points_ras_mm, threshold_model):
    """Lesion VOIs by the adaptive threshold (calibrated model) from one seed point per lesion."""
    from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask

    if seed_points_ras_mm and threshold_model is None:
        raise ValueError("Lesion seed points were given but the calibration record has no adaptive-threshold "
                         "model; calibrate it with the sphere phantom or outline the lesions yourself.")
    vois = []
    for name, seed in seed_points_ras_mm.items():
        mask, info = adaptive_threshold_mask(reference, seed_ras_mm=seed, model=threshold_model)
        details = {k: info[k] for k in ("threshold", "fraction", "volume_ml", "converged", "background",
                                        "contrast", "peak_ras_mm", "iterations")}
        voi = Voi(name, "lesion", mask, "adaptive threshold from seed point", details)
        if not info["converged"]:
            voi.warnings.append(f"lesion '{name}': the adaptive threshold did not converge; check the outline")
        vois.append(voi)
    return vois


def check_unique_names(vois):
    names = [v.name for v in vois]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Several VOIs share the names {duplicates}; rename the segments or seed points.")
