"""Analytic solids from which the digital phantoms are built.

Each solid answers ``contains(points_ras_mm)`` for an array of RAS points (shape (..., 3)) and
knows its exact volume, so that rasterised masks can be compared with the continuous shape.
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned ellipsoid: centre (RAS, mm) and semi-axes along x, y, z (mm)."""

    centre_ras_mm: tuple
    semi_axes_mm: tuple

    def contains(self, points_ras_mm):
        d = (np.asarray(points_ras_mm) - np.asarray(self.centre_ras_mm)) / np.asarray(self.semi_axes_mm)
        return np.einsum("...i,...i->...", d, d) <= 1.0

    @property
    def volume_ml(self):
        return 4.0 / 3.0 * math.pi * float(np.prod(self.semi_axes_mm)) / 1000.0


def sphere(centre_ras_mm, diameter_mm):
    """A sphere as an :class:`Ellipsoid` with equal semi-axes."""
    r = diameter_mm / 2.0
    return Ellipsoid(tuple(float(c) for c in centre_ras_mm), (r, r, r))


@dataclasses.dataclass(frozen=True)
class EllipticCylinder:
    """Cylinder along z with an elliptic cross-section: centre (x, y), semi-axes (x, y) and z range (mm)."""

    centre_xy_mm: tuple
    semi_axes_xy_mm: tuple
    z_range_mm: tuple

    def contains(self, points_ras_mm):
        p = np.asarray(points_ras_mm)
        d = (p[..., :2] - np.asarray(self.centre_xy_mm)) / np.asarray(self.semi_axes_xy_mm)
        z = p[..., 2]
        return (np.einsum("...i,...i->...", d, d) <= 1.0) & (z >= self.z_range_mm[0]) & (z <= self.z_range_mm[1])

    @property
    def volume_ml(self):
        return math.pi * float(np.prod(self.semi_axes_xy_mm)) * (self.z_range_mm[1] - self.z_range_mm[0]) / 1000.0


@dataclasses.dataclass(frozen=True)
class RibCage:
    """Ribs as elliptic bands of the chest wall: between an outer and an inner elliptic cylinder,
    in z bands of ``rib_width_mm`` repeating every ``pitch_mm`` within ``z_range_mm``."""

    outer: EllipticCylinder
    thickness_mm: float
    rib_width_mm: float
    pitch_mm: float

    def contains(self, points_ras_mm):
        p = np.asarray(points_ras_mm)
        inner = EllipticCylinder(self.outer.centre_xy_mm,
                                 tuple(a - self.thickness_mm for a in self.outer.semi_axes_xy_mm),
                                 self.outer.z_range_mm)
        band = np.mod(p[..., 2] - self.outer.z_range_mm[0], self.pitch_mm) < self.rib_width_mm
        return self.outer.contains(p) & ~inner.contains(p) & band


@dataclasses.dataclass(frozen=True)
class Union:
    """Points inside any of ``parts``."""

    parts: tuple

    def contains(self, points_ras_mm):
        inside = np.zeros(np.asarray(points_ras_mm).shape[:-1], dtype=bool)
        for part in self.parts:
            inside |= part.contains(points_ras_mm)
        return inside


@dataclasses.dataclass(frozen=True)
class Intersection:
    """Points inside all of ``parts``."""

    parts: tuple

    def contains(self, points_ras_mm):
        inside = np.ones(np.asarray(points_ras_mm).shape[:-1], dtype=bool)
        for part in self.parts:
            inside &= part.contains(points_ras_mm)
        return inside


def offset(shape, distance_mm):
    """The shape with its surface moved outwards by ``distance_mm`` (inwards when negative): the
    semi-axes of an ellipsoid grow by the distance (exact for a sphere, within a fraction of the
    distance for the phantom's ellipsoids), a union's parts each grow. Other shapes are refused."""
    if isinstance(shape, Union):
        return Union(tuple(offset(part, distance_mm) for part in shape.parts))
    if isinstance(shape, Ellipsoid):
        axes = tuple(a + float(distance_mm) for a in shape.semi_axes_mm)
        if min(axes) <= 0:
            raise ValueError(f"An outline moved by {distance_mm:g} mm leaves nothing of an ellipsoid with semi-axes "
                             f"{shape.semi_axes_mm} mm.")
        return Ellipsoid(shape.centre_ras_mm, axes)
    raise ValueError(f"Outlines of {type(shape).__name__} shapes cannot be moved.")
