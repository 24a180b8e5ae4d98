"""Quality figures of a registration and the warnings raised when one looks wrong.

Thresholds (chosen for paediatric SPECT/CT of 131I, whose reconstructed resolution is about 15 mm FWHM):

- :data:`MIN_BODY_DICE`: the body outlines of reference and registered time point overlap with a
  Dice coefficient of at least 0.90 after registration. A correct rigid alignment of the same child a
  few days apart gives 0.95 or more; less means a wrong pose or a very different field of view.
- :data:`MAX_BLOB_SHIFT_MM`: the bright SPECT structures (lesions, bladder, salivary glands) move by
  less than 8 mm, about half the SPECT resolution, between reference and registered time point.
- :data:`MAX_PLAUSIBLE_ROTATION_DEG` / :data:`MAX_PLAUSIBLE_TRANSLATION_MM`: repositioning on the
  couch rarely exceeds 20 degrees or 100 mm; a larger result usually means a local optimum.
- :data:`MIN_JACOBIAN`: a deformable registration whose Jacobian determinant falls below 0.2 inside
  the body compresses tissue five-fold or folds it, which real anatomy does not do between scans.
- A registration that makes the body overlap worse than no registration is always reported.
"""

import numpy as np
from scipy import ndimage

MIN_BODY_DICE = 0.90
MAX_BLOB_SHIFT_MM = 8.0
MAX_PLAUSIBLE_ROTATION_DEG = 20.0
MAX_PLAUSIBLE_TRANSLATION_MM = 100.0
MIN_JACOBIAN = 0.2
#: Voxels above this percentile of the positive reference SPECT voxels seed the bright structures.
BLOB_PERCENTILE = 99.5
#: Number of bright structures followed (the ones with the most counts).
MAX_BLOBS = 5
#: Search margin around each bright structure; the shift is measured inside it.
BLOB_MARGIN_MM = 20.0


def dice(mask_a, mask_b):
    """Dice overlap 2|A & B| / (|A| + |B|) of two boolean masks (1 when both are empty)."""
    a = np.asarray(mask_a, dtype=bool)
    b = np.asarray(mask_b, dtype=bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def _normalised_cross_correlation(a, b):
    a = a - a.mean()
    b = b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else -1.0


def _subvoxel_peak(scores, best):
    """Offset of a parabola's vertex through the best score and its two neighbours along each axis."""
    offsets = np.zeros(3)
    for axis in range(3):
        index = list(best)
        if 0 < best[axis] < scores.shape[axis] - 1:
            index[axis] -= 1
            left = scores[tuple(index)]
            index[axis] += 2
            right = scores[tuple(index)]
            curvature = left - 2.0 * scores[best] + right
            if curvature < 0:
                offsets[axis] = 0.5 * (left - right) / curvature
    return offsets


def _patch_shift_voxels(reference, registered, box, search):
    """Shift (k, j, i voxels) that best matches ``registered`` to the ``reference`` patch ``box``,
    by normalised cross-correlation over shifts of up to ``search`` voxels, refined below a voxel."""
    padded = np.pad(registered, [(s, s) for s in search])
    patch = reference[box]
    scores = np.full(tuple(2 * s + 1 for s in search), -1.0)
    for offset in np.ndindex(scores.shape):
        window = tuple(slice(b.start + o, b.stop + o) for b, o in zip(box, offset))
        scores[offset] = _normalised_cross_correlation(patch, padded[window])
    best = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return np.array(best, dtype=float) + _subvoxel_peak(scores, best) - np.asarray(search)


def bright_structure_shifts_mm(reference_spect, registered_spect):
    """Displacement (mm) of the brightest SPECT structures after registration.

    Bright structures are the components of the reference SPECT above the 99.5th percentile of its
    positive voxels (up to five, the ones with most counts). The patch around each (the structure
    with a 20 mm margin) is matched to the registered image (same grid) by normalised cross-correlation
    over shifts of up to 20 mm; the best shift, refined below a voxel, is the displacement. The
    correlation ignores a change of uptake between time points. Returns a list of dicts with the
    reference centroid and the shift.
    """
    if not reference_spect.same_grid(registered_spect):
        raise ValueError("The registered SPECT must be on the reference SPECT grid to compare bright structures.")
    reference = np.asarray(reference_spect.array, dtype=float)
    registered = np.asarray(registered_spect.array, dtype=float)
    positive = reference[reference > 0]
    if positive.size == 0:
        return []
    labels, count = ndimage.label(reference >= np.percentile(positive, BLOB_PERCENTILE))
    if count == 0:
        return []
    sums = ndimage.sum(reference, labels, index=np.arange(1, count + 1))
    spacing_kji = np.asarray(reference_spect.spacing_mm)[::-1]
    margin = np.maximum(1, np.round(BLOB_MARGIN_MM / spacing_kji)).astype(int)
    objects = ndimage.find_objects(labels)
    shifts = []
    for label in np.argsort(sums)[::-1][:MAX_BLOBS] + 1:
        box = tuple(slice(max(0, s.start - m), min(n, s.stop + m))
                    for s, m, n in zip(objects[label - 1], margin, reference.shape))
        shift_kji = _patch_shift_voxels(reference, registered, box, margin)
        shift_mm = reference_spect.directions @ (shift_kji[::-1] * np.asarray(reference_spect.spacing_mm))
        kji = np.array(ndimage.center_of_mass(reference, labels, label))
        shifts.append({"centroid_ras_mm": [float(v) for v in reference_spect.ras_of_ijk(kji[::-1])],
                       "shift_mm": float(np.linalg.norm(shift_mm))})
    return shifts


def registration_warnings(quality):
    """Sentences for the user when the quality figures of one time point look wrong."""
    warnings = []
    dice_after = quality.get("body_dice")
    dice_before = quality.get("body_dice_before")
    if dice_after is not None and dice_after < MIN_BODY_DICE:
        warnings.append(f"Body outlines overlap poorly after registration (Dice {dice_after:.2f} < "
                        f"{MIN_BODY_DICE:.2f}); check the alignment and correct the transform if needed.")
    if dice_after is not None and dice_before is not None and dice_after < dice_before - 0.01:
        warnings.append(f"Registration made the body overlap worse (Dice {dice_before:.2f} before, "
                        f"{dice_after:.2f} after); the transform is probably wrong.")
    shift = quality.get("max_bright_structure_shift_mm")
    if shift is not None and shift > MAX_BLOB_SHIFT_MM:
        warnings.append(f"A bright SPECT structure is {shift:.1f} mm away from its position at the reference "
                        f"time point (> {MAX_BLOB_SHIFT_MM:.0f} mm); check the alignment of the lesions.")
    rotation = quality.get("rotation_deg")
    if rotation is not None and rotation > MAX_PLAUSIBLE_ROTATION_DEG:
        warnings.append(f"The registration rotates the patient by {rotation:.0f} degrees, more than "
                        f"{MAX_PLAUSIBLE_ROTATION_DEG:.0f}; this is unlikely for repositioning on the couch.")
    translation = quality.get("translation_mm")
    if translation is not None and translation > MAX_PLAUSIBLE_TRANSLATION_MM:
        warnings.append(f"The registration moves the patient by {translation:.0f} mm, more than "
                        f"{MAX_PLAUSIBLE_TRANSLATION_MM:.0f} mm; check the alignment.")
    jacobian = quality.get("min_jacobian")
    if jacobian is not None and jacobian < MIN_JACOBIAN:
        warnings.append(f"The deformable registration compresses or folds tissue (smallest Jacobian determinant "
                        f"{jacobian:.2f} < {MIN_JACOBIAN}); use the rigid result instead.")
    return warnings
