"""DICOM plane geometry (LPS) of an :class:`~MIBGDosimetryLib.volume.ImageVolume` (RAS).

DICOM describes a stack of frames by the direction cosines of a row and a column
(ImageOrientationPatient), the position of each frame's first voxel (ImagePositionPatient) and the
in-plane spacing (row spacing, column spacing). The library's volumes hold RAS directions of the
i (column), j (row) and k (slice) axes, so the conversion is a sign flip of x and y plus a check
that the slices are stacked along the plane normal, which is what DICOM readers assume.
"""

import numpy as np

from MIBGDosimetryLib.volume import LPS_TO_RAS


def frame_stack_geometry(volume, tolerance=1e-4):
    """Return ``(array, orientation_lps, positions_lps, spacing_mm)`` with slices along the normal.

    ``array`` is the volume's array, flipped along k when the k axis runs against the normal
    row x column, so that frame positions increase along the normal as DICOM readers expect.
    ``orientation_lps`` holds the six ImageOrientationPatient values, ``positions_lps`` the
    ImagePositionPatient of every frame (shape (K, 3)) and ``spacing_mm`` the (i, j, k) spacing.
    Raises ValueError for sheared grids, which no DICOM image can describe.
    """
    directions = np.asarray(volume.directions, dtype=float)
    row_lps = LPS_TO_RAS @ directions[:, 0]
    column_lps = LPS_TO_RAS @ directions[:, 1]
    slice_lps = LPS_TO_RAS @ directions[:, 2]
    normal = np.cross(row_lps, column_lps)
    along = float(np.dot(slice_lps, normal))
    if abs(abs(along) - 1.0) > tolerance:
        raise ValueError("The volume's slice axis is not perpendicular to its rows and columns (a sheared "
                         "grid); resample it to an orthogonal grid before exporting it to DICOM.")
    array = np.asarray(volume.array)
    m = volume.ijk_to_ras()
    k_indices = np.arange(array.shape[0])
    if along < 0:
        array = array[::-1]
        k_indices = k_indices[::-1]
    first_voxels_ras = np.column_stack([np.zeros_like(k_indices), np.zeros_like(k_indices), k_indices]) @ m[:3, :3].T
    positions_lps = (first_voxels_ras + m[:3, 3]) @ LPS_TO_RAS.T
    orientation = np.concatenate([row_lps, column_lps])
    return array, orientation, positions_lps, tuple(volume.spacing_mm)


def ds_string(value, max_length=16):
    """A decimal string (DICOM DS) of at most ``max_length`` characters that parses to ``value``
    within the precision such a string allows."""
    for digits in range(12, 0, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= max_length:
            return text
    raise ValueError(f"The number {value} cannot be written as a DICOM decimal string.")


def volume_from_frames(array, orientation_lps, first_position_lps, pixel_spacing_rc_mm, frame_offsets_mm,
                       units="", metadata=None):
    """Build an ImageVolume from DICOM frame geometry.

    ``pixel_spacing_rc_mm`` is DICOM PixelSpacing (row spacing, column spacing); ``frame_offsets_mm``
    are the frame positions along the normal relative to the first frame (uniform spacing required).
    """
    from MIBGDosimetryLib.volume import ImageVolume

    orientation = np.asarray(orientation_lps, dtype=float)
    row_lps, column_lps = orientation[:3], orientation[3:]
    normal = np.cross(row_lps, column_lps)
    offsets = np.asarray(frame_offsets_mm, dtype=float)
    if offsets.size > 1:
        steps = np.diff(offsets)
        if not np.allclose(steps, steps[0], rtol=1e-4, atol=1e-4) or steps[0] == 0:
            raise ValueError("The frames are not evenly spaced; such a grid cannot be read as one volume.")
        slice_step = float(steps[0])
    else:
        slice_step = 1.0
    sign = 1.0 if slice_step > 0 else -1.0
    directions = LPS_TO_RAS @ np.column_stack([row_lps, column_lps, sign * normal])
    origin_ras = LPS_TO_RAS @ (np.asarray(first_position_lps, dtype=float) + offsets[0] * normal)
    spacing = (float(pixel_spacing_rc_mm[1]), float(pixel_spacing_rc_mm[0]), abs(slice_step))
    return ImageVolume(array, spacing, tuple(origin_ras), directions, units, dict(metadata or {}))
