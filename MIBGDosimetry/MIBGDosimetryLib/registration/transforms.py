"""Conversions between the registration matrix convention and SimpleITK transforms.

Convention used throughout the package: ``matrix_ras`` is a 4x4 RAS matrix that maps a point of the
reference (fixed) frame to the same anatomical point in the moving time point's frame. Resampling
the moving image at ``matrix_ras @ x`` for every reference-grid point ``x`` gives it on the reference
grid. SimpleITK uses the same direction (fixed to moving) but in LPS coordinates.
"""

import numpy as np
import SimpleITK as sitk

#: RAS <-> LPS for homogeneous 4x4 matrices.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def check_matrix(matrix_ras):
    """Return ``matrix_ras`` as a 4x4 float array or raise a ValueError that says what is wrong."""
    matrix = np.asarray(matrix_ras, dtype=float)
    if matrix.shape != (4, 4):
        raise ValueError(f"A registration matrix must be 4x4, got shape {matrix.shape}.")
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError("The last row of a registration matrix must be (0, 0, 0, 1).")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-6:
        raise ValueError("The registration matrix is singular; check the transform.")
    return matrix


def sitk_from_matrix(matrix_ras):
    """SimpleITK affine transform (LPS, fixed -> moving) from a RAS matrix."""
    matrix_lps = _FLIP @ check_matrix(matrix_ras) @ _FLIP
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(matrix_lps[:3, :3].ravel()))
    transform.SetTranslation(tuple(matrix_lps[:3, 3]))
    return transform


def matrix_from_sitk(transform):
    """RAS 4x4 matrix of a linear SimpleITK transform (fixed -> moving, LPS)."""
    dimension = transform.GetDimension()
    if dimension != 3:
        raise ValueError(f"Expected a 3-D transform, got {dimension}-D.")
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    columns = [np.array(transform.TransformPoint(tuple(e))) - origin for e in np.eye(3)]
    matrix_lps = np.eye(4)
    matrix_lps[:3, :3] = np.column_stack(columns)
    matrix_lps[:3, 3] = origin
    return _FLIP @ matrix_lps @ _FLIP


def transform_points(matrix_ras, points_ras_mm):
    """Apply a 4x4 RAS matrix to points of shape (..., 3)."""
    matrix = check_matrix(matrix_ras)
    points = np.asarray(points_ras_mm, dtype=float)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def rotation_angle_deg(matrix_ras):
    """Rotation angle (degrees) of the linear part of a rigid matrix."""
    rotation = check_matrix(matrix_ras)[:3, :3]
    cosine = (np.trace(rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def rigid_matrix(rotation_deg=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0), centre_ras_mm=(0.0, 0.0, 0.0)):
    """RAS 4x4 matrix of a rotation about the R, A and S axes (applied in that order, degrees) around
    ``centre_ras_mm`` followed by a translation (mm)."""
    rx, ry, rz = np.radians(rotation_deg)
    about_r = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    about_a = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    about_s = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    rotation = about_s @ about_a @ about_r
    centre = np.asarray(centre_ras_mm, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre - rotation @ centre + np.asarray(translation_mm, dtype=float)
    return matrix


def as_sitk_transform(transform):
    """A SimpleITK transform (LPS, fixed -> moving) from a RAS 4x4 matrix or a SimpleITK transform."""
    if isinstance(transform, sitk.Transform):
        return transform
    return sitk_from_matrix(transform)
