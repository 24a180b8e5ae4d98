"""Organ VOIs from CT numbers where a threshold is enough: body outline, lungs and bone.

The thresholds are ordinary CT-number landmarks: air is -1000 HU, lung parenchyma about -900 to
-500 HU, soft tissue -100 to +100 HU, bone above about +200 HU. ``ct`` is an ImageVolume in HU;
every function returns a boolean array on the CT grid.
"""

import numpy as np
from scipy import ndimage

#: Between air (-1000 HU) and fat (about -100 HU): separates the patient from the surrounding air.
BODY_THRESHOLD_HU = -500.0
#: Aerated lung lies below this value; soft tissue and fat lie above it.
LUNG_THRESHOLD_HU = -400.0
#: Cortical and trabecular bone lie above this value; contrast-free soft tissue lies below it.
BONE_THRESHOLD_HU = 200.0
#: Gas pockets smaller than this (bowel gas) are not lung.
MIN_LUNG_COMPONENT_ML = 5.0


def _check_ct(ct):
    if ct.array.ndim != 3 or ct.array.size == 0:
        raise ValueError("The CT must be a non-empty 3-D image.")
    if float(np.min(ct.array)) > -200.0:
        raise ValueError("The CT holds no air (no value below -200 HU); is it in Hounsfield units?")


def largest_component(mask):
    """The largest face-connected component of a boolean mask (empty if the mask is empty)."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes_per_slice(mask):
    """Fill holes in each axial slice (k) and in 3-D, so that lungs and bowel gas count as inside."""
    filled = np.array([ndimage.binary_fill_holes(s) for s in mask])
    return ndimage.binary_fill_holes(filled)


def body_mask(ct):
    """The patient's body outline: tissue above -500 HU, largest component, holes filled.

    A morphological opening first detaches the couch and cables that touch the skin.
    """
    _check_ct(ct)
    tissue = ndimage.binary_opening(ct.array > BODY_THRESHOLD_HU, structure=ndimage.generate_binary_structure(3, 1))
    return fill_holes_per_slice(largest_component(tissue))


def lung_mask(ct, body=None):
    """Lungs: air-like voxels (< -400 HU) inside the body, in the (up to) two largest components of at
    least 5 mL, so that bowel gas is left out."""
    _check_ct(ct)
    body = body_mask(ct) if body is None else body
    labels, count = ndimage.label((ct.array < LUNG_THRESHOLD_HU) & body)
    if count == 0:
        return np.zeros(ct.array.shape, dtype=bool)
    voxel_ml = ct.voxel_volume_ml
    sizes_ml = np.bincount(labels.ravel())[1:] * voxel_ml
    order = np.argsort(sizes_ml)[::-1][:2]
    keep = [int(i) + 1 for i in order if sizes_ml[i] >= MIN_LUNG_COMPONENT_ML]
    return np.isin(labels, keep)


def bone_mask(ct, body=None):
    """Bone: voxels above +200 HU inside the body."""
    _check_ct(ct)
    body = body_mask(ct) if body is None else body
    return (ct.array > BONE_THRESHOLD_HU) & body
