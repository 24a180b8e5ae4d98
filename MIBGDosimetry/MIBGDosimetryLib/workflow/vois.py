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


def organ_vois(segmentation_files, reference, outline_reference=None):
    """Organ VOIs from DICOM SEG and RTSTRUCT files, resampled onto ``reference`` (ImageVolume).

    With ``outline_reference`` (the CT the outlines were drawn on) each organ's volume is also
    measured on that finer grid and kept in ``details["volume_ml"]``: the SPECT-grid mask loses or
    gains partial voxels at the surface, which matters for small organs.
    """
    import pydicom

    from MIBGDosimetryLib.segmentation import dicom_vois

    vois = []
    for path in segmentation_files:
        modality = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).Modality
        if modality == "SEG":
            read = dicom_vois.read_dicom_seg
        elif modality == "RTSTRUCT":
            read = dicom_vois.read_rtstruct
        else:
            continue
        masks = read(path, reference)
        fine = read(path, outline_reference) if outline_reference is not None else {}
        for name, mask in masks.items():
            details = {}
            if name in fine:
                details["volume_ml"] = float(np.count_nonzero(fine[name])) * outline_reference.voxel_volume_ml
            voi = Voi(name, "organ", np.asarray(mask, dtype=bool), f"{modality} {path}", details)
            if not voi.mask.any():
                voi.warnings.append(f"organ '{name}' from {path} covers no voxel of the SPECT grid")
            vois.append(voi)
    return vois


def lesion_vois(reference, seed_points_ras_mm, threshold_model, organs=(), resolution_fwhm_mm=None):
    """Lesion VOIs by the adaptive threshold (calibrated model) from one seed point per lesion.

    A lesion may not grow into an organ VOI unless its seed lies inside that organ, so that a small
    lesion beside a hot organ is not merged with it. With the images' spatial resolution (from the
    calibration) each outline is then refined by fitting a PSF-blurred uniform ellipsoid to the
    image around it (:func:`MIBGDosimetryLib.segmentation.psf_fit.refine_lesion`), which halves the
    volume error of small lesions; the threshold outline is kept where that fit does not converge.
    """
    from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask
    from MIBGDosimetryLib.segmentation.psf_fit import refine_lesion

    if seed_points_ras_mm and threshold_model is None:
        raise ValueError("Lesion seed points were given but the calibration record has no adaptive-threshold "
                         "model; calibrate it with the sphere phantom or outline the lesions yourself.")
    vois = []
    for name, seed in seed_points_ras_mm.items():
        seed_kji = tuple(int(v) for v in np.round(reference.ijk_of_ras(np.asarray(seed, dtype=float)))[::-1])
        inside = all(0 <= v < n for v, n in zip(seed_kji, reference.array.shape))
        allowed = np.ones(reference.array.shape, dtype=bool)
        for organ in organs:
            if not (inside and organ.mask[seed_kji]):
                allowed &= ~organ.mask
        mask, info = adaptive_threshold_mask(reference, seed_ras_mm=seed, model=threshold_model, allowed_mask=allowed)
        details = {k: info.get(k) for k in ("threshold", "fraction", "volume_ml", "mask_volume_ml", "converged",
                                            "background", "contrast", "peak_ras_mm", "iterations", "warning")}
        voi = Voi(name, "lesion", mask, "adaptive threshold from seed point", details)
        if not info["converged"]:
            reason = info.get("warning") or "no consistent threshold was found"
            voi.warnings.append(f"lesion '{name}': the adaptive threshold did not converge ({reason}); check the outline")
        elif resolution_fwhm_mm:
            _refine(voi, reference, resolution_fwhm_mm, allowed, refine_lesion)
        vois.append(voi)
    return vois


def _refine(voi, reference, fwhm_mm, allowed, refine_lesion):
    """Replace a lesion's threshold outline by the fitted ellipsoid when the fit converges."""
    try:
        refined, fit = refine_lesion(reference, voi.mask, fwhm_mm, allowed_mask=allowed)
    except ValueError as error:
        voi.warnings.append(f"lesion '{voi.name}': the PSF-model refinement was not possible ({error}); "
                            "the threshold outline is used")
        return
    keys = ("volume_ml", "volume_uncertainty_ml", "centre_ras_mm", "semi_axes_mm", "reduced_chi_square", "converged",
            "warning")
    voi.details["psf_refinement"] = {k: fit.get(k) for k in keys}
    if fit["converged"] and refined.any():
        voi.mask = refined
        voi.details["threshold_volume_ml"] = voi.details["volume_ml"]
        voi.details["volume_ml"] = fit["volume_ml"]
        voi.source = "adaptive threshold from seed point, refined by a PSF-blurred ellipsoid fit"
    else:
        reason = fit.get("warning") or "the fit did not converge"
        voi.warnings.append(f"lesion '{voi.name}': PSF-model refinement not used ({reason})")


def make_disjoint(vois):
    """Make VOIs disjoint in the order given: a voxel belongs to the first VOI that claims it (lesions
    are given first, so a lesion inside an organ keeps its voxels). Each VOI that gives up voxels
    says so in its warnings, and its finer outline volume (``details["volume_ml"]``, from which its mass
    is taken) shrinks by the fraction of voxels it gave up, so that volume, mass and dose all refer to
    the voxels the VOI keeps."""
    for index, voi in enumerate(vois):
        before = int(np.count_nonzero(voi.mask))
        for earlier in vois[:index]:
            overlap = int(np.count_nonzero(voi.mask & earlier.mask))
            if overlap:
                voi.mask = voi.mask & ~earlier.mask
                voi.warnings.append(f"{overlap} voxel(s) shared with {earlier.kind} '{earlier.name}' are counted there")
                voi.details.setdefault("overlapped_by", []).append(earlier.name)
        after = int(np.count_nonzero(voi.mask))
        if before and after < before and voi.details.get("volume_ml"):
            voi.details["outline_volume_ml"] = voi.details["volume_ml"]
            voi.details["volume_ml"] = voi.details["volume_ml"] * after / before


def without_result(voi, reason):
    """The results entry of a requested VOI that has no dose, with the reason."""
    return {"name": voi.name, "kind": voi.kind, "source": voi.source, "mean_dose_Gy": None, "reason": reason,
            "warnings": list(voi.warnings)}


def empty_reason(voi):
    """Why a VOI has no voxel left on the SPECT grid."""
    overlapped = voi.details.get("overlapped_by")
    if overlapped:
        return f"fully overlapped: every voxel belongs to {', '.join(repr(n) for n in overlapped)}"
    return "empty: the outline covers no voxel of the SPECT grid"


def check_unique_names(vois):
    names = [v.name for v in vois]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Several VOIs share the names {duplicates}; rename the segments or seed points.")
