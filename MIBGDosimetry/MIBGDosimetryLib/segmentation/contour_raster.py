"""Closed planar contours (RTSTRUCT) turned into a fractional occupancy of any image grid.

An RTSTRUCT outlines an organ as closed polygons on parallel planes, usually the slices of the CT it
was drawn on (1.25 to 5 mm apart). Filling each polygon into the nearest slice of a coarser grid
loses or cancels contours when two planes fall into one slice. Here instead:

1. each contour is filled on its own plane, on a fine in-plane raster (even-odd rule between the
   contours of one plane, so that a contour inside another cuts a hole; contours on different planes
   never interact);
2. each plane stands for a slab of the organ reaching half-way to its neighbouring planes (at most
   half the usual plane spacing, so that a gap in the contours stays a gap);
3. every voxel of the target grid is sampled at sub-voxel points; its occupancy is the fraction of
   those points that fall inside the slab of a plane and inside that plane's filled contours.

The result is correct for any relation between the contour planes and the target grid (finer,
coarser, shifted, tilted). Coordinates are DICOM LPS (mm) throughout.
"""

import numpy as np

from MIBGDosimetryLib.volume import LPS_TO_RAS

#: Points of one contour farther than this from its plane make the contour non-planar (mm).
PLANARITY_TOLERANCE_MM = 0.5
#: Contours whose normals differ by more than this angle are not on parallel planes (cos of 2 degrees).
PARALLEL_COSINE = np.cos(np.radians(2.0))
#: Contour heights closer than this are on the same plane (mm).
SAME_PLANE_MM = 0.05
#: In-plane raster pitch relative to the finest target spacing, and its bounds (mm).
RASTER_FRACTION = 0.125
RASTER_PITCH_MM = (0.1, 0.5)
#: Sub-samples per target voxel along each axis are chosen so that they are at most this far apart (mm).
SUBSAMPLE_PITCH_MM = 1.25
MAX_SUBSAMPLES = 4


def _normal(points):
    """Unit normal of a closed polygon (Newell's method); None when the polygon has no area."""
    shifted = np.roll(points, -1, axis=0)
    normal = np.array([np.sum((points[:, 1] - shifted[:, 1]) * (points[:, 2] + shifted[:, 2])),
                       np.sum((points[:, 2] - shifted[:, 2]) * (points[:, 0] + shifted[:, 0])),
                       np.sum((points[:, 0] - shifted[:, 0]) * (points[:, 1] + shifted[:, 1]))])
    length = np.linalg.norm(normal)
    return None if length < 1e-9 else normal / length


def _plane_axes(normal):
    """Two unit vectors spanning the plane of ``normal``, with it a right-handed frame."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(helper, normal)
    u /= np.linalg.norm(u)
    return u, np.cross(normal, u)


def contour_planes(contours_lps, name):
    """Normal, in-plane axes and the contours grouped by plane: ``(normal, u, v, [(height, [uv points])])``.

    Raises ValueError naming the ROI when a contour is not planar or the contours are not on parallel
    planes.
    """
    normal = None
    for points in contours_lps:
        n = _normal(points)
        if n is None:
            continue
        if normal is None:
            normal = n
        elif abs(np.dot(n, normal)) < PARALLEL_COSINE:
            raise ValueError(f"The contours of '{name}' lie on planes that are not parallel; an RTSTRUCT ROI must be "
                             "drawn on parallel planes (the slices of one image).")
    if normal is None:
        return None, None, None, []
    u, v = _plane_axes(normal)
    planes = []
    for points in contours_lps:
        heights = points @ normal
        if np.ptp(heights) > 2 * PLANARITY_TOLERANCE_MM:
            raise ValueError(f"A contour of '{name}' is not planar (its points lie {np.ptp(heights):.2f} mm apart "
                             "along the normal of its plane); the RTSTRUCT cannot be read.")
        planes.append((float(np.mean(heights)), np.column_stack([points @ u, points @ v])))
    planes.sort(key=lambda item: item[0])
    grouped = []
    for height, uv in planes:
        if grouped and height - grouped[-1][0] < SAME_PLANE_MM:
            grouped[-1][1].append(uv)
        else:
            grouped.append((height, [uv]))
    return normal, u, v, grouped


def slab_bounds(heights, single_plane_thickness_mm):
    """``(low, high)`` of the slab each plane stands for: half-way to its neighbours, but never more
    than half the median plane spacing on either side (so that a gap between contours stays empty)."""
    heights = np.asarray(heights, dtype=float)
    if len(heights) == 1:
        half = 0.5 * single_plane_thickness_mm
        return heights - half, heights + half
    gaps = np.diff(heights)
    half = 0.5 * float(np.median(gaps))
    below = np.minimum(np.concatenate([[2 * half], gaps]) / 2, half)
    above = np.minimum(np.concatenate([gaps, [2 * half]]) / 2, half)
    return heights - below, heights + above


def _fill_even_odd(polygons_uv, origin_uv, pitch_mm, shape_vu):
    """Raster cells (v, u) whose centres lie inside an odd number of the polygons."""
    inside = np.zeros(shape_vu, dtype=bool)
    for polygon in polygons_uv:
        inside ^= _fill_polygon((polygon - origin_uv) / pitch_mm, shape_vu)
    return inside


def _fill_polygon(points_xy, shape_yx):
    """Cell centres (integer y, x) inside a polygon with continuous (x, y) vertices, even-odd rule."""
    inside = np.zeros(shape_yx, dtype=bool)
    low = np.maximum(0, np.floor(points_xy.min(0)).astype(int))
    high = np.minimum(np.array(shape_yx[::-1]) - 1, np.ceil(points_xy.max(0)).astype(int))
    if np.any(high < low):
        return inside
    rows = np.arange(low[1], high[1] + 1, dtype=float)
    xs = np.arange(low[0], high[0] + 1, dtype=float)
    x1, y1 = points_xy[:, 0], points_xy[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crossing = np.zeros((len(rows), len(xs)), dtype=bool)
    for a, b, c, d in zip(x1, y1, x2, y2):
        if b == d:
            continue
        spans = (b > rows) != (d > rows)
        if not spans.any():
            continue
        x_cross = a + (rows[spans] - b) * (c - a) / (d - b)
        crossing[spans] ^= xs[np.newaxis, :] < x_cross[:, np.newaxis]
    inside[low[1]:high[1] + 1, low[0]:high[0] + 1] = crossing
    return inside


def contour_occupancy(contours_lps, grid, name):
    """Fraction (0 to 1) of each voxel of ``grid`` (ImageVolume) inside the closed planar contours.

    ``contours_lps`` is a list of (N, 3) arrays of contour points in DICOM LPS mm.
    """
    occupancy = np.zeros(grid.array.shape, dtype=np.float32)
    normal, u, v, planes = contour_planes(contours_lps, name)
    if not planes:
        return occupancy
    spacing = np.asarray(grid.spacing_mm, dtype=float)
    directions_lps = LPS_TO_RAS @ np.asarray(grid.directions, dtype=float)
    across = float(np.max(np.abs(directions_lps.T @ normal) * spacing))
    low_h, high_h = slab_bounds([h for h, _ in planes], across)

    pitch = float(np.clip(RASTER_FRACTION * spacing.min(), *RASTER_PITCH_MM))
    all_uv = np.concatenate([uv for _, polygons in planes for uv in polygons])
    origin_uv = all_uv.min(0) - pitch
    shape_vu = tuple((np.ceil((all_uv.max(0) - origin_uv) / pitch).astype(int) + 2)[::-1])
    rasters = np.stack([_fill_even_odd(polygons, origin_uv, pitch, shape_vu) for _, polygons in planes])

    box = _bounding_box_ijk(grid, normal, u, v, origin_uv, shape_vu, pitch, low_h[0], high_h[-1])
    if box is None:
        return occupancy
    (i0, j0, k0), (i1, j1, k1) = box
    subsamples = np.clip(np.ceil(spacing / SUBSAMPLE_PITCH_MM).astype(int), 1, MAX_SUBSAMPLES)
    offsets = [(np.arange(n) + 0.5) / n - 0.5 for n in subsamples]
    di, dj, dk = np.meshgrid(*offsets, indexing="ij")
    sub = np.column_stack([di.ravel(), dj.ravel(), dk.ravel()])
    jj, ii = np.mgrid[j0:j1 + 1, i0:i1 + 1]
    for k in range(k0, k1 + 1):
        ijk = (np.stack([ii, jj, np.full(ii.shape, k)], -1)[:, :, np.newaxis, :] + sub).reshape(-1, 3)
        lps = grid.ras_of_ijk(ijk) @ LPS_TO_RAS.T
        height = lps @ normal
        plane = np.searchsorted(low_h, height, side="right") - 1
        valid = (plane >= 0) & (height < high_h[np.clip(plane, 0, None)])
        cu = np.floor((lps @ u - origin_uv[0]) / pitch).astype(int)
        cv = np.floor((lps @ v - origin_uv[1]) / pitch).astype(int)
        valid &= (cu >= 0) & (cu < shape_vu[1]) & (cv >= 0) & (cv < shape_vu[0])
        hit = np.zeros(len(height), dtype=bool)
        hit[valid] = rasters[plane[valid], cv[valid], cu[valid]]
        occupancy[k, j0:j1 + 1, i0:i1 + 1] = hit.reshape(ii.shape + (len(sub),)).mean(-1)
    return occupancy


def _bounding_box_ijk(grid, normal, u, v, origin_uv, shape_vu, pitch, low_h, high_h):
    """Inclusive (i, j, k) index range of ``grid`` that can touch the contours' box; None if outside."""
    corners = []
    for cu in (origin_uv[0], origin_uv[0] + shape_vu[1] * pitch):
        for cv in (origin_uv[1], origin_uv[1] + shape_vu[0] * pitch):
            for h in (low_h, high_h):
                corners.append(cu * u + cv * v + h * normal)
    ijk = grid.ijk_of_ras(np.asarray(corners) @ LPS_TO_RAS.T)
    shape_ijk = np.array(grid.array.shape[::-1])
    low = np.maximum(np.floor(ijk.min(0)).astype(int) - 1, 0)
    high = np.minimum(np.ceil(ijk.max(0)).astype(int) + 1, shape_ijk - 1)
    if np.any(high < low):
        return None
    return tuple(low), tuple(high)
