"""Volumes of interest on phantom images: cylinders, spheres and the phantom body.

Masks are arrays on the image grid (``[k, j, i]``). Sphere VOIs carry the fraction of each voxel
that lies inside the sphere, so that a VOI of a small insert has exactly the insert's true volume
instead of a staircase of whole voxels.
"""

import numpy as np
from scipy import ndimage

#: Sub-samples per voxel edge used to compute the fraction of a voxel inside a sphere.
SPHERE_SUBSAMPLES = 5


def voxel_centres_ras(volume):
    """RAS coordinates (mm) of all voxel centres, shape ``array.shape + (3,)``."""
    k, j, i = np.indices(volume.array.shape, dtype=float)
    return volume.ras_of_ijk(np.stack([i, j, k], axis=-1))


def cylinder_mask(volume, centre_ras_mm, radius_mm, half_height_mm):
    """Voxels whose centres lie in a cylinder whose axis runs along the image k axis."""
    axis = volume.directions[:, 2] / np.linalg.norm(volume.directions[:, 2])
    offset = voxel_centres_ras(volume) - np.asarray(centre_ras_mm, dtype=float)
    along = offset @ axis
    radial = np.linalg.norm(offset - along[..., np.newaxis] * axis, axis=-1)
    return (radial <= radius_mm) & (np.abs(along) <= half_height_mm)


def sphere_weights(volume, centre_ras_mm, radius_mm, subsamples=SPHERE_SUBSAMPLES):
    """Fraction (0..1) of each voxel inside a sphere, from ``subsamples**3`` points per voxel."""
    weights = np.zeros(volume.array.shape, dtype=float)
    centre_ijk = volume.ijk_of_ras(np.asarray(centre_ras_mm, dtype=float))
    reach = radius_mm / np.asarray(volume.spacing_mm) + 1.0
    low = np.maximum(np.floor(centre_ijk - reach).astype(int), 0)
    high = np.minimum(np.ceil(centre_ijk + reach).astype(int) + 1, np.array(volume.array.shape[::-1]))
    if np.any(high <= low):
        return weights
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3)
    kk, jj, ii = np.meshgrid(np.arange(low[2], high[2]), np.arange(low[1], high[1]), np.arange(low[0], high[0]),
                             indexing="ij")
    ijk = np.stack([ii, jj, kk], axis=-1).astype(float)
    points = ijk[..., np.newaxis, :] + sub
    inside = np.linalg.norm(volume.ras_of_ijk(points) - np.asarray(centre_ras_mm, dtype=float), axis=-1) <= radius_mm
    weights[low[2]:high[2], low[1]:high[1], low[0]:high[0]] = inside.mean(axis=-1)
    return weights


def largest_component(mask):
    """The largest 26-connected component of a boolean mask (empty if the mask is empty)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    return labels == (1 + int(np.argmax(sizes)))


def body_mask(image, threshold_fraction):
    """The largest object brighter than ``threshold_fraction`` of a robust maximum, with holes filled.

    The robust maximum is the 99.9th percentile of a lightly smoothed image so that single noisy
    voxels do not set the threshold. Holes are filled slice by slice (transaxial) and in 3-D.
    """
    smoothed = ndimage.uniform_filter(np.asarray(image, dtype=float), size=3)
    peak = float(np.percentile(smoothed, 99.9))
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros(smoothed.shape, dtype=bool)
    mask = largest_component(smoothed > threshold_fraction * peak)
    mask = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    return ndimage.binary_fill_holes(mask)


def centroid_ras(volume, mask):
    """RAS centre (mm) of the voxels of a mask."""
    k, j, i = np.nonzero(mask)
    return volume.ras_of_ijk(np.array([i.mean(), j.mean(), k.mean()]))


def body_at_level(image, level):
    """The largest object of the lightly smoothed image above ``level`` (image units), holes filled.

    At half the level of a uniformly filled body this is the body's outline, whatever the blur of its edge.
    """
    smoothed = ndimage.uniform_filter(np.asarray(image, dtype=float), size=3)
    body = largest_component(smoothed > level)
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def background_mask(volume, expected_level, excluded_spheres, edge_margin_mm, sphere_margin_mm):
    """Warm background of a sphere phantom: the body brighter than half the expected background level,
    at least ``edge_margin_mm`` inside its outline and ``sphere_margin_mm`` away from every insert.

    ``excluded_spheres`` lists ``(centre_ras_mm, radius_mm)``. The margins keep the blurred edges and the
    spill-out of the inserts out of the background VOI.
    """
    body = body_at_level(volume.array, 0.5 * expected_level)
    depth_mm = ndimage.distance_transform_edt(body, sampling=volume.spacing_mm[::-1])
    mask = depth_mm > edge_margin_mm
    centres = voxel_centres_ras(volume)
    for centre, radius in excluded_spheres:
        mask &= np.linalg.norm(centres - np.asarray(centre, dtype=float), axis=-1) > radius + sphere_margin_mm
    return mask
