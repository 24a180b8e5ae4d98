"""Small rigid repositioning of the patient between imaging sessions.

A transform is a 4x4 RAS matrix that maps a point of the patient in the reference session to
where the same point lies in the scanner at a later session.
"""

import math

import numpy as np


def rotation_matrix(angles_deg):
    """Rotation about x, then y, then z (degrees), as a 3x3 matrix R = Rz Ry Rx."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def rigid_transform(angles_deg, translation_mm, centre_ras_mm=(0.0, 0.0, 0.0)):
    """4x4 RAS matrix rotating about ``centre_ras_mm`` and then translating."""
    rotation = rotation_matrix(angles_deg)
    centre = np.asarray(centre_ras_mm, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre - rotation @ centre + np.asarray(translation_mm, dtype=float)
    return matrix


def random_repositioning(rng, max_rotation_deg=(2.0, 2.0, 3.0), max_translation_mm=4.0):
    """A rigid transform with rotations and translations drawn uniformly within the limits, as a
    patient lying down again on the table would move: a few millimetres and degrees."""
    angles = rng.uniform(-1.0, 1.0, 3) * np.asarray(max_rotation_deg, dtype=float)
    translation = rng.uniform(-1.0, 1.0, 3) * max_translation_mm
    return rigid_transform(angles, translation)


def apply_inverse(matrix, points_ras_mm):
    """Reference-frame coordinates of points given in the transformed frame."""
    inverse = np.linalg.inv(matrix)
    p = np.asarray(points_ras_mm)
    return p @ inverse[:3, :3].T + inverse[:3, 3]
