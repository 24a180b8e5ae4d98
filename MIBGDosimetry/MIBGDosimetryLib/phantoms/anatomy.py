"""A child-sized torso (about four years old) with mIBG-avid organs and neuroblastoma lesions.

Coordinates are RAS millimetres with the origin at the centre of the torso: +x towards the
patient's right, +y anterior, +z superior. The body runs from the pelvis (z = -160 mm) to the
lower head (z = +160 mm, the phantom's top); it is about 19 cm wide and 13 cm deep.

Each structure has a shape, a CT number and its own kinetics (effective half-lives, i.e.
biological clearance and physical decay together). Organ amplitudes are fractions of the
administered activity, chosen in the range reported for 131I-mIBG in children: liver a few per
cent, salivary glands and kidneys below one per cent each, fast early urinary excretion through
the bladder and a bi-exponential whole-body remainder. Lesion amplitudes are given as per cent
of the administered activity per millilitre (uptake plateau). Later structures in
:attr:`PatientAnatomy.structures` overwrite earlier ones where they overlap (a lesion displaces
the organ it grows into).
"""

import dataclasses

import numpy as np

from MIBGDosimetryLib.phantoms import kinetics, shapes

#: CT numbers (HU) of the phantom tissues: typical values of unenhanced CT.
HU_AIR = -1000.0
HU_SOFT_TISSUE = 40.0
HU_BONE = 450.0
HU_LUNG = -780.0
HU_LIVER = 60.0
HU_HEART = 45.0
HU_KIDNEY = 32.0
HU_BLADDER = 8.0
HU_SALIVARY = 25.0
HU_LESION = 35.0

#: Axial extent of the phantom body (mm): everything outside lies outside the patient.
BODY_Z_RANGE_MM = (-160.0, 160.0)


@dataclasses.dataclass(frozen=True)
class Structure:
    """A region with uniform activity concentration, its kinetics and its CT number."""

    name: str
    kind: str
    shape: object
    kinetics: kinetics.Kinetics
    hu: float


@dataclasses.dataclass(frozen=True)
class LesionSpec:
    """A spherical neuroblastoma lesion: where, how large and how avid.

    ``uptake_percent_per_ml`` is the amplitude of its uptake-clearance curve in per cent of the
    administered activity per millilitre of lesion.
    """

    name: str
    centre_ras_mm: tuple
    diameter_mm: float
    uptake_percent_per_ml: float
    clearance_half_life_h: float
    uptake_half_life_h: float


#: The lesions of the default patient: an adrenal primary above the left kidney, soft-tissue
#: metastases in a para-aortic and a mediastinal node, bone metastases in a thoracic vertebra and
#: the right iliac bone.
#: Uptake half-lives of 1.5-2.5 h: the noradrenaline transporter of neuroblastoma cells takes up
#: mIBG within hours of the infusion, long before the first post-therapy scan.
DEFAULT_LESIONS = (
    LesionSpec("adrenal_primary", (-38.0, -22.0, -22.0), 40.0, 0.040, 75.0, 2.0),
    LesionSpec("soft_tissue_met_paraaortic", (10.0, -14.0, -95.0), 20.0, 0.060, 65.0, 1.5),
    LesionSpec("bone_met_spine", (0.0, -45.0, 40.0), 15.0, 0.070, 90.0, 2.5),
    LesionSpec("bone_met_pelvis", (58.0, -25.0, -135.0), 25.0, 0.050, 80.0, 2.0),
    LesionSpec("soft_tissue_met_mediastinal", (4.0, 12.0, 88.0), 12.0, 0.080, 60.0, 1.5),
)


def lesions_with_diameters(diameters_mm, uptake_percent_per_ml=None):
    """The default lesions, the first ``len(diameters_mm)`` of them, with the given diameters
    (and uptakes, when given)."""
    diameters_mm = list(diameters_mm)
    if not 1 <= len(diameters_mm) <= len(DEFAULT_LESIONS):
        raise ValueError(f"Give between 1 and {len(DEFAULT_LESIONS)} lesion diameters, got {len(diameters_mm)}.")
    if any(not 4.0 <= d <= 60.0 for d in diameters_mm):
        raise ValueError(f"Lesion diameters must lie between 4 and 60 mm, got {diameters_mm}.")
    uptakes = [spec.uptake_percent_per_ml for spec in DEFAULT_LESIONS[:len(diameters_mm)]]
    if uptake_percent_per_ml is not None:
        uptakes = list(uptake_percent_per_ml)
        if len(uptakes) != len(diameters_mm) or any(u <= 0 for u in uptakes):
            raise ValueError("Give one positive lesion uptake (% of administered activity per mL) per lesion diameter.")
    return tuple(dataclasses.replace(spec, diameter_mm=float(d), uptake_percent_per_ml=float(u))
                 for spec, d, u in zip(DEFAULT_LESIONS, diameters_mm, uptakes))


@dataclasses.dataclass(frozen=True)
class PatientAnatomy:
    """Body outline, bones, activity structures (in priority order) and remainder kinetics."""

    body: object
    bones: object
    structures: tuple
    remainder_kinetics: kinetics.Kinetics
    administered_activity_MBq: float

    def labels_and_hu(self, points_ras_mm):
        """Structure label (0 outside the body, 1 remainder of the body, 2 + n structure n) and
        CT number (HU) at each point."""
        points = np.asarray(points_ras_mm)
        body = self.body.contains(points)
        labels = body.astype(np.int16)
        hu = np.where(body, HU_SOFT_TISSUE, HU_AIR)
        hu[body & self.bones.contains(points)] = HU_BONE
        for n, structure in enumerate(self.structures):
            inside = body & structure.shape.contains(points)
            labels[inside] = n + 2
            hu[inside] = structure.hu
        return labels, hu

    def structure(self, name):
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(name)


def child_anatomy(administered_activity_MBq=7400.0, lesions=DEFAULT_LESIONS):
    """The default paediatric patient with the given administered activity and lesions."""
    if administered_activity_MBq <= 0:
        raise ValueError(f"The administered activity must be positive, got {administered_activity_MBq} MBq.")
    a = float(administered_activity_MBq)
    body = shapes.Intersection((
        shapes.Union((
            shapes.EllipticCylinder((0.0, 0.0), (95.0, 65.0), (-200.0, 100.0)),
            shapes.EllipticCylinder((0.0, 0.0), (38.0, 38.0), (90.0, 140.0)),
            shapes.Ellipsoid((0.0, 5.0, 215.0), (70.0, 80.0, 95.0)),
        )),
        shapes.EllipticCylinder((0.0, 0.0), (400.0, 400.0), BODY_Z_RANGE_MM),
    ))
    bones = shapes.Union((
        shapes.EllipticCylinder((0.0, -45.0), (12.0, 11.0), (-130.0, 150.0)),
        shapes.RibCage(shapes.EllipticCylinder((0.0, 0.0), (91.0, 61.0), (-30.0, 95.0)), 7.0, 8.0, 20.0),
        shapes.Ellipsoid((58.0, -25.0, -135.0), (28.0, 16.0, 32.0)),
        shapes.Ellipsoid((-58.0, -25.0, -135.0), (28.0, 16.0, 32.0)),
    ))
    organs = (
        Structure("lungs", "organ", shapes.Union((shapes.Ellipsoid((42.0, -5.0, 45.0), (32.0, 45.0, 55.0)),
                                                  shapes.Ellipsoid((-42.0, -5.0, 45.0), (30.0, 45.0, 52.0)))),
                  kinetics.uptake_clearance(0.030 * a, 30.0, 0.5), HU_LUNG),
        Structure("liver", "organ", shapes.Ellipsoid((40.0, 5.0, -25.0), (50.0, 45.0, 40.0)),
                  kinetics.uptake_clearance(0.070 * a, 45.0, 1.0), HU_LIVER),
        Structure("heart", "organ", shapes.Ellipsoid((-12.0, 18.0, 35.0), (33.0, 28.0, 33.0)),
                  # Myocardial uptake (sympathetic innervation takes up mIBG within about an hour) with the
                  # blood pool's clearance.
                  kinetics.uptake_clearance(0.012 * a, 40.0, 1.0), HU_HEART),
        Structure("kidney_right", "organ", shapes.Ellipsoid((45.0, -35.0, -80.0), (18.0, 15.0, 36.0)),
                  kinetics.uptake_clearance(0.006 * a, 25.0, 0.5), HU_KIDNEY),
        Structure("kidney_left", "organ", shapes.Ellipsoid((-45.0, -35.0, -78.0), (18.0, 15.0, 36.0)),
                  kinetics.uptake_clearance(0.006 * a, 25.0, 0.5), HU_KIDNEY),
        Structure("bladder", "organ", shapes.Ellipsoid((0.0, 25.0, -135.0), (28.0, 24.0, 20.0)),
                  # Urine collects within the first hour; the bladder empties with the body's clearance.
                  kinetics.uptake_clearance(0.020 * a, 12.0, 0.5), HU_BLADDER),
        Structure("salivary_glands", "organ", shapes.Union((
            shapes.Ellipsoid((40.0, 8.0, 140.0), (10.0, 14.0, 14.0)),
            shapes.Ellipsoid((-40.0, 8.0, 140.0), (10.0, 14.0, 14.0)),
            shapes.Ellipsoid((22.0, 16.0, 120.0), (8.0, 8.0, 7.0)),
            shapes.Ellipsoid((-22.0, 16.0, 120.0), (8.0, 8.0, 7.0)))),
                  kinetics.uptake_clearance(0.008 * a, 30.0, 2.0), HU_SALIVARY),
    )
    lesion_structures = []
    for spec in lesions:
        shape = shapes.sphere(spec.centre_ras_mm, spec.diameter_mm)
        amplitude_MBq = spec.uptake_percent_per_ml / 100.0 * a * shape.volume_ml
        lesion_structures.append(Structure(
            spec.name, "lesion", shape,
            kinetics.uptake_clearance(amplitude_MBq, spec.clearance_half_life_h, spec.uptake_half_life_h),
            HU_LESION))
    remainder = kinetics.biexponential((0.30 * a, 0.18 * a), (6.0, 55.0))
    return PatientAnatomy(body, bones, organs + tuple(lesion_structures), remainder, a)


def with_uptake_half_lives(anatomy, factors):
    """The anatomy with each structure's uptake half-life multiplied by its factor (same order as
    ``anatomy.structures``); amplitude and clearance half-life stay. An uptake half-life is kept
    below 90 % of the clearance half-life, which an uptake-clearance curve needs."""
    structures = []
    for structure, factor in zip(anatomy.structures, factors):
        amplitude = structure.kinetics.coefficients_MBq[0]
        clearance_rate, uptake_rate = structure.kinetics.rates_per_h
        clearance_h = np.log(2.0) / clearance_rate
        uptake_h = min(np.log(2.0) / uptake_rate * float(factor), 0.9 * clearance_h)
        structures.append(dataclasses.replace(
            structure, kinetics=kinetics.uptake_clearance(amplitude, clearance_h, uptake_h)))
    return dataclasses.replace(anatomy, structures=tuple(structures))
