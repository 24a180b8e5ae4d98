"""Parallel-hole projections of an activity distribution about the z axis (the camera rotation axis)."""

import numpy as np
from scipy import ndimage


def bin_2d(image, factor):
    """Sum blocks of ``factor`` x ``factor`` pixels (conserves the total)."""
    rows, columns = image.shape[0] // factor, image.shape[1] // factor
    return np.asarray(image).reshape(rows, factor, columns, factor).sum(axis=(1, 3))


def parallel_projections(volume, n_views, scan_arc_deg=360.0):
    """Projections of ``volume`` [k, j, i] at ``n_views`` angles, shape (views, k, i).

    View v looks along the j axis of the volume rotated by v * arc / n_views about k. Each view is
    rescaled to hold exactly the volume's total, so linear interpolation loses nothing.
    """
    volume = np.asarray(volume, dtype=float)
    total = volume.sum()
    views = np.empty((n_views, volume.shape[0], volume.shape[2]))
    for v in range(n_views):
        angle = v * scan_arc_deg / n_views
        rotated = volume if angle == 0 else ndimage.rotate(volume, angle, axes=(1, 2), reshape=False, order=1,
                                                            mode="constant", cval=0.0)
        view = rotated.sum(axis=1)
        views[v] = view * (total / view.sum()) if view.sum() > 0 else view
    return views
