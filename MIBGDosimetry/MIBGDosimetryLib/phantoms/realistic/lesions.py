"""Lesions of several shapes for the realistic patient: irregular (a union of spheres), elongated
(an ellipsoid), with a cold necrotic core (a spherical shell) and bone metastases at high contrast.

Every shape answers ``contains(points)`` like :mod:`MIBGDosimetryLib.phantoms.shapes` and carries
``centre_ras_mm`` (where its seed point goes) and ``semi_axes_mm`` (of its bounding ellipsoid), which
the truth file records.
"""

import dataclasses
import math

import numpy as np

from MIBGDosimetryLib.phantoms import anatomy, kinetics, shapes

#: Sampling step (mm) of the numerical volume of a shape.
VOLUME_STEP_MM = 0.5


@dataclasses.dataclass(frozen=True)
class LesionShape:
    """A solid (anything with ``contains``) with the seed point and bounding semi-axes of a lesion."""

    solid: object
    centre_ras_mm: tuple
    semi_axes_mm: tuple
    description: str

    def contains(self, points_ras_mm):
        return self.solid.contains(points_ras_mm)

    @property
    def volume_ml(self):
        """Volume by counting points of a :data:`VOLUME_STEP_MM` lattice over the bounding box."""
        axes = [np.arange(c - a, c + a + VOLUME_STEP_MM, VOLUME_STEP_MM)
                for c, a in zip(self.centre_ras_mm, self.semi_axes_mm)]
        total = 0
        for x in axes[0]:
            y, z = np.meshgrid(axes[1], axes[2], indexing="ij")
            points = np.stack([np.full_like(y, x), y, z], axis=-1)
            total += int(self.contains(points).sum())
        return total * VOLUME_STEP_MM ** 3 / 1000.0


@dataclasses.dataclass(frozen=True)
class Shell:
    """Points inside ``outer`` and outside ``inner``: a lesion around a necrotic core."""

    outer: object
    inner: object

    def contains(self, points_ras_mm):
        return self.outer.contains(points_ras_mm) & ~self.inner.contains(points_ras_mm)


def irregular(centre_ras_mm, lobes):
    """Union of spheres: ``lobes`` = ((offset x, y, z mm), diameter mm) about ``centre_ras_mm``."""
    centre = np.asarray(centre_ras_mm, dtype=float)
    parts = tuple(shapes.sphere(centre + np.asarray(offset), d) for offset, d in lobes)
    reach = max(np.abs(np.asarray(offset)).max() + d / 2.0 for offset, d in lobes)
    return LesionShape(shapes.Union(parts), tuple(centre), (reach,) * 3,
                       f"irregular: union of {len(lobes)} spheres")


def elongated(centre_ras_mm, semi_axes_mm):
    return LesionShape(shapes.Ellipsoid(tuple(centre_ras_mm), tuple(semi_axes_mm)), tuple(centre_ras_mm),
                       tuple(semi_axes_mm), f"elongated: ellipsoid with semi-axes {tuple(semi_axes_mm)} mm")


def necrotic(centre_ras_mm, diameter_mm, core_diameter_mm):
    if not 0 < core_diameter_mm < diameter_mm:
        raise ValueError(f"The necrotic core ({core_diameter_mm} mm) must be smaller than the lesion ({diameter_mm} mm).")
    solid = Shell(shapes.sphere(centre_ras_mm, diameter_mm), shapes.sphere(centre_ras_mm, core_diameter_mm))
    r = diameter_mm / 2.0
    return LesionShape(solid, tuple(centre_ras_mm), (r, r, r),
                       f"sphere of {diameter_mm:g} mm with a cold necrotic core of {core_diameter_mm:g} mm "
                       f"(the core holds the body background)")


def spherical(centre_ras_mm, diameter_mm):
    r = diameter_mm / 2.0
    return LesionShape(shapes.sphere(centre_ras_mm, diameter_mm), tuple(centre_ras_mm), (r, r, r),
                       f"sphere of {diameter_mm:g} mm")


@dataclasses.dataclass(frozen=True)
class RealisticLesion:
    """A lesion: its shape, uptake (per cent of the administered activity per mL at the uptake
    plateau), effective clearance and uptake half-lives (h) and CT number."""

    name: str
    shape: LesionShape
    uptake_percent_per_ml: float
    clearance_half_life_h: float
    uptake_half_life_h: float
    hu: float = anatomy.HU_LESION


def default_lesions(contrast=1.0):
    """The realistic patient's lesions; ``contrast`` multiplies every uptake."""
    if contrast <= 0:
        raise ValueError(f"The lesion contrast factor must be positive, got {contrast}.")
    return (
        RealisticLesion("adrenal_primary", irregular((-38.0, -22.0, -22.0), (
            ((0.0, 0.0, 0.0), 34.0), ((13.0, 4.0, 9.0), 24.0), ((-6.0, 6.0, -13.0), 20.0))),
            0.040 * contrast, 75.0, 2.0),
        RealisticLesion("soft_tissue_met_paraaortic", elongated((10.0, -14.0, -95.0), (8.0, 9.0, 20.0)),
                        0.060 * contrast, 65.0, 1.5),
        RealisticLesion("necrotic_mass", necrotic((-40.0, 22.0, -100.0), 38.0, 16.0), 0.045 * contrast, 70.0, 2.0),
        RealisticLesion("bone_met_spine", spherical((0.0, -45.0, 40.0), 20.0), 0.150 * contrast, 90.0, 2.5,
                        anatomy.HU_BONE),
        RealisticLesion("bone_met_pelvis", elongated((58.0, -25.0, -135.0), (13.0, 10.0, 17.0)),
                        0.100 * contrast, 80.0, 2.0, anatomy.HU_BONE),
        RealisticLesion("soft_tissue_met_mediastinal", spherical((4.0, 12.0, 88.0), 12.0), 0.080 * contrast,
                        60.0, 1.5),
    )


def realistic_anatomy(administered_activity_MBq, lesions):
    """The default child's body and organs with ``lesions`` (:class:`RealisticLesion`) added last."""
    base = anatomy.child_anatomy(administered_activity_MBq, lesions=())
    a = float(administered_activity_MBq)
    structures = []
    for lesion in lesions:
        amplitude_MBq = lesion.uptake_percent_per_ml / 100.0 * a * lesion.shape.volume_ml
        structures.append(anatomy.Structure(
            lesion.name, "lesion", lesion.shape,
            kinetics.uptake_clearance(amplitude_MBq, lesion.clearance_half_life_h, lesion.uptake_half_life_h),
            lesion.hu))
    return dataclasses.replace(base, structures=base.structures + tuple(structures))


def equivalent_diameter_mm(volume_ml):
    return (6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0)
