"""Volumes of interest on the reference SPECT grid: organs from DICOM SEG/RTSTRUCT, lesions from
seed points by the adaptive threshold."""

import dataclasses

import numpy as np

#: How lesion outlines are made (``DoseOptions.lesion_outline``): the adaptive-threshold region as it
#: is; that region with its enclosed cavities filled (a necrotic core whose rim the threshold outlines
#: belongs to the lesion); or, in addition, confined to the CT's bone for lesions in bone (see
#: :func:`lesion_vois`).
LESION_OUTLINES = ("threshold", "threshold+fill", "ct-assisted")
#: CT number (HU) from which a voxel counts as bone for the CT-assisted lesion outline.
BONE_HU = 200.0


#: Sub-samples per SPECT voxel and axis at which a drawn outline is evaluated when it is moved.
OUTLINE_SUBSAMPLES = 4
#: Margin (fine voxels) kept around a drawn outline, beyond the largest move.
OUTLINE_MARGIN_VOXELS = 3


@dataclasses.dataclass
class DrawnOutline:
    """An outline on the grid it was drawn on (usually the CT's, finer than the SPECT's): ``outline``, a
    boolean ImageVolume (cropped around the outline), and ``to_grid``, the 4x4 RAS matrix that takes
    points of the reference SPECT's frame into that grid's frame (identity in the same frame)."""

    outline: object
    to_grid: np.ndarray

    @classmethod
    def cropped(cls, mask, grid, to_grid=None, reach_mm=5.0):
        """The outline ``mask`` on ImageVolume ``grid``, cropped to its bounding box plus ``reach_mm`` and a
        margin; None for an empty mask."""
        from MIBGDosimetryLib.volume import ImageVolume, padded_box

        mask = np.asarray(mask, dtype=bool)
        spacing_kji = np.asarray(grid.spacing_mm, dtype=float)[::-1]
        box = padded_box(mask, np.ceil(reach_mm / spacing_kji).astype(int) + OUTLINE_MARGIN_VOXELS)
        if box is None:
            return None
        origin = grid.ras_of_ijk(np.array([b.start for b in box[::-1]], dtype=float))
        return cls(ImageVolume(mask[box], grid.spacing_mm, tuple(origin), grid.directions),
                   np.eye(4) if to_grid is None else np.asarray(to_grid, float))

    def signed_distance_mm(self):
        """Distance (mm) of each fine voxel centre from the outline's surface, negative inside: the
        distance to the nearest voxel centre on the other side less half a voxel (the surface lies on
        the voxel faces)."""
        from scipy import ndimage

        mask = self.outline.array
        spacing_kji = np.asarray(self.outline.spacing_mm, dtype=float)[::-1]
        half = 0.5 * float(np.mean(spacing_kji))
        outside = ndimage.distance_transform_edt(~mask, sampling=spacing_kji)
        inside = ndimage.distance_transform_edt(mask, sampling=spacing_kji)
        return np.where(mask, half - inside, outside - half)

    def moved_occupancies(self, reference, distances_mm):
        """``(box, [occupancy])``: for each distance in ``distances_mm`` (positive outwards) the fraction of
        each voxel of ``reference`` (ImageVolume) inside the outline moved by that distance along its
        normals, for the voxels in ``box`` (slices of the reference grid around the outline); evaluated
        at OUTLINE_SUBSAMPLES^3 points per voxel on the signed distance, linearly interpolated."""
        from scipy import ndimage

        distance = self.signed_distance_mm()
        shape = self.outline.array.shape
        corners = np.array([[a, b, c] for a in (-0.5, shape[2] - 0.5)
                            for b in (-0.5, shape[1] - 0.5) for c in (-0.5, shape[0] - 0.5)])
        ras = self.outline.ras_of_ijk(corners)
        back = np.linalg.inv(self.to_grid)
        ras = ras @ back[:3, :3].T + back[:3, 3]
        ijk = reference.ijk_of_ras(ras)
        shape_kji = reference.array.shape
        low = np.maximum(np.floor(ijk.min(axis=0)).astype(int)[::-1], 0)
        high = np.minimum(np.ceil(ijk.max(axis=0)).astype(int)[::-1] + 1, shape_kji)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        if any(b <= a for a, b in zip(low, high)):
            return box, [np.zeros((0, 0, 0)) for _ in distances_mm]
        n = OUTLINE_SUBSAMPLES
        steps = (np.arange(n) + 0.5) / n - 0.5
        sub = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
        kk, jj, ii = np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high)), indexing="ij")
        centres_ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1).astype(float)
        box_shape = kk.shape
        occupancies = [np.zeros(centres_ijk.shape[0]) for _ in distances_mm]
        for offset in sub:
            points = reference.ras_of_ijk(centres_ijk + offset)
            points = points @ self.to_grid[:3, :3].T + self.to_grid[:3, 3]
            fine = self.outline.ijk_of_ras(points)
            values = ndimage.map_coordinates(distance, fine[:, ::-1].T, order=1, mode="constant", cval=1e6)
            for index, moved in enumerate(distances_mm):
                occupancies[index] += values < moved
        return box, [(o / len(sub)).reshape(box_shape) for o in occupancies]


@dataclasses.dataclass
class Voi:
    """A VOI on the reference SPECT grid; ``drawn`` the outline as drawn (:class:`DrawnOutline`), when known."""

    name: str
    kind: str  # "organ" or "lesion"
    mask: np.ndarray
    source: str
    details: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)
    drawn: DrawnOutline = None

    def volume_ml(self, voxel_volume_ml):
        return float(np.count_nonzero(self.mask)) * voxel_volume_ml


def outline_details(mask, grid):
    """Volume (mL) and surface-to-volume ratio (1/mm) of an outline on the grid it was drawn on
    (ImageVolume ``grid``), usually finer than the SPECT's: ``{"volume_ml", "surface_to_volume_per_mm"}``.
    An outline's position uncertainty is that of this outline; its surface counted on the coarser
    SPECT-grid mask comes out larger (a staircase of 4 mm voxels over a curved surface: +6 % for a
    kidney of the patient phantom, +8 % for its salivary glands)."""
    from MIBGDosimetryLib.dose.budget import surface_to_volume_per_mm

    mask = np.asarray(mask, dtype=bool)
    return {"volume_ml": float(np.count_nonzero(mask)) * grid.voxel_volume_ml,
            "surface_to_volume_per_mm": surface_to_volume_per_mm(mask, grid.spacing_mm)}


def organ_vois(segmentation_files, reference, outline_reference=None):
    """Organ VOIs from DICOM SEG and RTSTRUCT files, resampled onto ``reference`` (ImageVolume).

    With ``outline_reference`` (the CT the outlines were drawn on) each organ's volume and surface are
    also measured on that finer grid and kept in ``details`` (:func:`outline_details`): the SPECT-grid
    mask loses or gains partial voxels at the surface, which matters for small organs.
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
            details = outline_details(fine[name], outline_reference) if name in fine else {}
            drawn = DrawnOutline.cropped(fine[name], outline_reference) if name in fine else None
            voi = Voi(name, "organ", np.asarray(mask, dtype=bool), f"{modality} {path}", details, drawn=drawn)
            if not voi.mask.any():
                voi.warnings.append(f"organ '{name}' from {path} covers no voxel of the SPECT grid")
            vois.append(voi)
    return vois


def lesion_vois(reference, seed_points_ras_mm, threshold_model, organs=(), resolution_fwhm_mm=None,
                outline="threshold", ct_hu=None):
    """Lesion VOIs by the adaptive threshold (calibrated model) from one seed point per lesion.

    A lesion may not grow into an organ VOI unless its seed lies inside that organ, so that a small
    lesion beside a hot organ is not merged with it. With the images' spatial resolution (from the
    calibration) each outline is then refined by fitting a PSF-blurred uniform ellipsoid to the
    image around it (:func:`MIBGDosimetryLib.segmentation.psf_fit.refine_lesion`), which halves the
    volume error of small lesions; the threshold outline is kept where that fit does not converge.

    ``outline`` is one of :data:`LESION_OUTLINES`; "ct-assisted" needs ``ct_hu``, the CT (HU) on the
    reference grid: a lesion whose seed lies in bone (the CT's bone, dilated by one voxel) is then
    confined to it, so that its region cannot spread into the soft tissue or organs around the bone
    (this does not make the threshold's fraction right for a lesion whose image differs from the
    calibration spheres'), and enclosed cavities are filled. The method used is kept in each VOI's
    ``details["outline"]``; when several threshold fractions are self-consistent their volumes are
    kept in ``details["consistent_volumes_ml"]`` and the ambiguity is stated among the VOI's warnings.
    """
    from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask, contrast_check_text
    from MIBGDosimetryLib.segmentation.psf_fit import refine_lesion

    if outline not in LESION_OUTLINES:
        raise ValueError(f"Unknown lesion outline '{outline}'; choose one of {', '.join(LESION_OUTLINES)}.")
    if seed_points_ras_mm and outline == "ct-assisted" and ct_hu is None:
        raise ValueError("The CT-assisted lesion outline needs a CT in the reference time point; choose the "
                         "'threshold' or 'threshold+fill' outline for a study without CT.")
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
        bone = _bone_near(ct_hu, seed_kji) if outline == "ct-assisted" and inside else None
        if bone is not None:
            allowed &= bone
        mask, info = adaptive_threshold_mask(reference, seed_ras_mm=seed, model=threshold_model, allowed_mask=allowed)
        details = {k: info.get(k) for k in ("threshold", "fraction", "volume_ml", "mask_volume_ml", "converged",
                                            "background", "contrast", "peak_ras_mm", "iterations", "warning",
                                            "consistent_volumes_ml", "contrast_check")}
        details["outline"] = "threshold"
        voi = Voi(name, "lesion", mask, "adaptive threshold from seed point", details)
        if info.get("ambiguity"):
            voi.warnings.append(f"lesion '{name}': {info['ambiguity']}")
        check = info.get("contrast_check")
        if check:
            voi.warnings.append(f"lesion '{name}': {contrast_check_text(check)}")
        if outline in ("threshold+fill", "ct-assisted"):
            _fill_cavities(voi, allowed, reference.voxel_volume_ml)
        if bone is not None:
            voi.details["outline"] += ", confined to the CT's bone"
            voi.source += f", confined to the CT's bone (>= {BONE_HU:.0f} HU)"
        if not info["converged"]:
            reason = info.get("warning") or "no consistent threshold was found"
            voi.warnings.append(f"lesion '{name}': the adaptive threshold did not converge ({reason}); check the outline")
        elif resolution_fwhm_mm and not (check and check.get("used")):
            # A lesion outlined at its contrast-consistent threshold is one whose image the calibration's
            # spheres do not describe; a blurred uniform ellipsoid does not describe it either.
            _refine(voi, reference, resolution_fwhm_mm, allowed, refine_lesion)
        vois.append(voi)
    return vois


def _fill_cavities(voi, allowed, voxel_ml):
    """Add to a lesion the cavities its threshold region fully encloses in 3D (a cold necrotic core
    inside a hot rim), within the allowed voxels; the activity still comes from the counts."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(voi.mask) & (allowed | voi.mask)
    added = int(np.count_nonzero(filled & ~voi.mask))
    voi.details["outline"] = "threshold+fill"
    voi.details["filled_cavity_ml"] = added * voxel_ml
    if added:
        voi.mask = filled
        voi.details["threshold_volume_ml"] = voi.details.get("volume_ml")
        voi.details["volume_ml"] = (voi.details.get("volume_ml") or 0.0) + added * voxel_ml
        voi.source += ", enclosed cavity filled"


def _bone_near(ct_hu, seed_kji):
    """The CT's bone (HU >= BONE_HU) dilated by one voxel (the SPECT grid's partial voxels at its
    surface), when the seed lies in it; else None."""
    from scipy import ndimage

    bone = ndimage.binary_dilation(np.asarray(ct_hu) >= BONE_HU, np.ones((3, 3, 3), dtype=bool))
    return bone if bone[seed_kji] else None


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
