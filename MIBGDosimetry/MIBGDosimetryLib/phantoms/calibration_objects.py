"""Activity distributions of the calibration phantoms on the fine simulation grid.

A Jaszczak-type water cylinder (axis along z) with an optional set of sphere inserts on a helix
around the axis. Sphere voxels at the surface get the fraction of their volume inside the sphere
(sub-voxel sampling), rescaled so that each insert holds exactly concentration x true volume.
"""

import dataclasses
import math

import numpy as np

from MIBGDosimetryLib.phantoms import shapes

#: Sub-samples per fine voxel edge when computing partial sphere occupancy.
SUBSAMPLES = 4


@dataclasses.dataclass(frozen=True)
class Insert:
    """A fillable sphere: name, diameter (mm) and centre (RAS, mm)."""

    name: str
    diameter_mm: float
    centre_ras_mm: tuple

    @property
    def volume_ml(self):
        return math.pi / 6.0 * self.diameter_mm ** 3 / 1000.0

    @property
    def shape(self):
        return shapes.sphere(self.centre_ras_mm, self.diameter_mm)


@dataclasses.dataclass(frozen=True)
class Cylinder:
    """The phantom body: inner diameter and height (mm), centred on the RAS origin, axis along z."""

    inner_diameter_mm: float = 200.0
    inner_height_mm: float = 180.0

    @property
    def radius_mm(self):
        return self.inner_diameter_mm / 2.0

    @property
    def volume_ml(self):
        return math.pi * self.radius_mm ** 2 * self.inner_height_mm / 1000.0

    @property
    def shape(self):
        h = self.inner_height_mm / 2.0
        return shapes.EllipticCylinder((0.0, 0.0), (self.radius_mm, self.radius_mm), (-h, h))


def helix_inserts(diameters_mm, cylinder, ring_radius_mm=55.0, plane_offset_mm=40.0):
    """Spheres named S1, S2, ... placed at equal angles on a ring around the axis, alternately
    ``plane_offset_mm`` above and below the centre plane, so that neighbours are far apart.

    Raises ValueError when a sphere would leave the cylinder or touch another one.
    """
    diameters = [float(d) for d in diameters_mm]
    if not diameters or any(d <= 0 for d in diameters):
        raise ValueError(f"Give at least one positive sphere diameter, got {diameters_mm}.")
    inserts = []
    for n, d in enumerate(diameters):
        angle = 2.0 * math.pi * n / len(diameters)
        z = plane_offset_mm if n % 2 == 0 else -plane_offset_mm
        centre = (ring_radius_mm * math.cos(angle), ring_radius_mm * math.sin(angle), z)
        inserts.append(Insert(f"S{n + 1}", d, centre))
    for insert in inserts:
        r = insert.diameter_mm / 2.0
        radial = math.hypot(insert.centre_ras_mm[0], insert.centre_ras_mm[1])
        if radial + r > cylinder.radius_mm or abs(insert.centre_ras_mm[2]) + r > cylinder.inner_height_mm / 2.0:
            raise ValueError(f"A {insert.diameter_mm:g} mm sphere does not fit in the {cylinder.inner_diameter_mm:g} mm "
                             f"cylinder; use spheres of at most 60 mm.")
    for a in range(len(inserts)):
        for b in range(a + 1, len(inserts)):
            gap = np.linalg.norm(np.subtract(inserts[a].centre_ras_mm, inserts[b].centre_ras_mm))
            if gap < (inserts[a].diameter_mm + inserts[b].diameter_mm) / 2.0 + 10.0:
                raise ValueError(f"Spheres {inserts[a].name} and {inserts[b].name} would touch; use fewer or smaller "
                                 f"spheres.")
    return inserts


def occupancy(shape, grid, volume_ml=None, points=None):
    """Fraction of every fine voxel inside ``shape`` (sub-voxel sampling within the shape's
    neighbourhood). With ``volume_ml`` the fractions are rescaled to sum to exactly that volume.
    ``points`` are the fine voxel centres (``grid.fine_points_ras()``) when already at hand."""
    points = grid.fine_points_ras() if points is None else points
    inside_centre = shape.contains(points)
    fraction = inside_centre.astype(float)
    # Only voxels near the surface need sub-sampling: those whose centre state differs from a neighbour.
    boundary = np.zeros_like(inside_centre)
    for axis in range(3):
        for shift in (1, -1):
            boundary |= inside_centre != np.roll(inside_centre, shift, axis=axis)
    v = grid.fine_voxel_mm
    offsets = (np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES - 0.5
    sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3) * v
    boundary_points = points[boundary]
    inside = np.zeros(len(boundary_points))
    for s in sub:
        inside += shape.contains(boundary_points + s)
    fraction[boundary] = inside / len(sub)
    if volume_ml is not None:
        fraction *= volume_ml / (fraction.sum() * v ** 3 / 1000.0)
    return fraction


def sphere_phantom_occupancy(grid, cylinder, inserts):
    """Occupancy maps of the sphere phantom: the water fraction of the cylinder and each insert's
    fraction ({name: map}, each summing to the insert's true volume)."""
    points = grid.fine_points_ras()
    water = occupancy(cylinder.shape, grid, points=points)
    spheres = {insert.name: occupancy(insert.shape, grid, insert.volume_ml, points) for insert in inserts}
    return water, spheres


def activity_map_MBq(grid, water, background_MBq_per_ml, spheres=None, sphere_MBq_per_ml=0.0):
    """Activity (MBq) per fine voxel: the water occupancy at ``background_MBq_per_ml`` with the
    sphere occupancies ({name: map}) at ``sphere_MBq_per_ml`` (each sphere holding exactly
    concentration x true volume)."""
    voxel_ml = grid.fine_voxel_mm ** 3 / 1000.0
    activity = water * background_MBq_per_ml * voxel_ml
    for fraction in (spheres or {}).values():
        activity += fraction * (sphere_MBq_per_ml - background_MBq_per_ml) * voxel_ml
    return activity
