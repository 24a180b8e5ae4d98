"""Rigid registration of one time point to the reference with SimpleITK.

Multi-resolution (shrink 4, 2, 1 with smoothing 2, 1, 0 voxels) Mattes mutual information (64 bins
for CT, 32 for SPECT) with a random 20 % voxel sample and regular-step gradient descent on a Euler
(rotation + translation) transform. The start pose aligns the centres of mass of the two body
outlines, which copes with the large couch shifts of sequential scans. Images with voxels finer than
4 mm are averaged down to about 4 mm first. For CT the metric is restricted to the reference body
(with a margin), so that the couch, which does not move with the child, cannot pull the result.
"""

import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from MIBGDosimetryLib.registration import quality as quality_figures
from MIBGDosimetryLib.registration.resample import resample_mask
from MIBGDosimetryLib.registration.result import RegistrationResult
from MIBGDosimetryLib.registration.transforms import (matrix_from_sitk, rotation_angle_deg, sitk_from_matrix,
                                                      transform_points)
from MIBGDosimetryLib.segmentation.organs import body_mask, fill_holes_per_slice, largest_component
from MIBGDosimetryLib.volume import ImageVolume

#: Threads used by SimpleITK; the registrations run on shared workstations.
NUMBER_OF_THREADS = 2
#: Seed of the metric's random sampling, so that a registration is reproducible.
SAMPLING_SEED = 20260101
#: Mutual-information histogram bins: CT numbers cluster in a few tissue classes whose peaks need
#: fine bins to be told apart; SPECT has fewer useful samples and noisier values.
HISTOGRAM_BINS = {"CT": 64, "SPECT": 32}
#: Fraction of the SPECT's robust maximum above which a voxel counts as inside the body.
SPECT_BODY_FRACTION = 0.05
#: Images with finer voxels are averaged down to about this size before registration: sub-voxel
#: accuracy at 4 mm is far better than the 131I SPECT resolution, and it keeps a pair to seconds.
REGISTRATION_VOXEL_MM = 4.0
#: Margin added around the reference body for the CT metric mask.
METRIC_MASK_MARGIN_MM = 10.0


def spect_body_mask(spect):
    """Approximate body outline from SPECT: above 5 % of the 99.9th percentile, largest component."""
    values = np.asarray(spect.array, dtype=float)
    positive = values[values > 0]
    if positive.size == 0:
        raise ValueError("The SPECT image holds no counts; it cannot be registered.")
    mask = values > SPECT_BODY_FRACTION * np.percentile(positive, 99.9)
    return fill_holes_per_slice(largest_component(mask))


def outline_mask(volume, modality):
    """Body outline of a CT (HU) or SPECT (counts) image."""
    return body_mask(volume) if modality == "CT" else spect_body_mask(volume)


def _centre_of_mass_lps(volume, mask):
    kji = np.array(ndimage.center_of_mass(mask))
    ras = volume.ras_of_ijk(kji[::-1])
    return np.array([-ras[0], -ras[1], ras[2]])


def prepared_image(volume, modality):
    """SimpleITK float image for the metric; CT clamped to the range that carries anatomy."""
    image = volume.to_sitk()
    image = sitk.Cast(image, sitk.sitkFloat32)
    if modality == "CT":
        # Everything below air and above dense bone carries no extra alignment information.
        image = sitk.Clamp(image, sitk.sitkFloat32, -1000.0, 1500.0)
    return image


def metric_mask(fixed, fixed_body):
    """The reference body grown by a margin, as a SimpleITK mask restricting the metric."""
    distance_mm = ndimage.distance_transform_edt(~fixed_body, sampling=np.asarray(fixed.spacing_mm)[::-1])
    return fixed.with_array((distance_mm <= METRIC_MASK_MARGIN_MM).astype(np.uint8)).to_sitk()


def working_copy(volume):
    """The image averaged over blocks of voxels so that its voxels are about
    :data:`REGISTRATION_VOXEL_MM` wide (unchanged when they already are)."""
    factors = [max(1, int(round(REGISTRATION_VOXEL_MM / s))) for s in volume.spacing_mm]
    if factors == [1, 1, 1]:
        return volume
    image = sitk.BinShrink(sitk.Cast(volume.to_sitk(), sitk.sitkFloat32), factors)
    return ImageVolume.from_sitk(image, units=volume.units, metadata=volume.metadata)


def body_dice(fixed, fixed_body, moving, moving_body, transform):
    """Dice overlap of the body outlines once ``moving`` is carried onto ``fixed`` by ``transform``.

    The overlap is judged where both images see the patient, because a couch shift also moves the
    field of view.
    """
    seen = resample_mask(np.ones(moving_body.shape, dtype=bool), moving, fixed, transform)
    return quality_figures.dice(fixed_body & seen, resample_mask(moving_body, moving, fixed, transform))


def _modality(volume):
    return "CT" if volume.units.upper() == "HU" else "SPECT"


def _initial_transform(fixed, moving, fixed_body, moving_body, initial_matrix_ras):
    transform = sitk.Euler3DTransform()
    centre = _centre_of_mass_lps(fixed, fixed_body)
    transform.SetCenter(tuple(centre))
    if initial_matrix_ras is None:
        transform.SetTranslation(tuple(_centre_of_mass_lps(moving, moving_body) - centre))
    else:
        affine = sitk_from_matrix(initial_matrix_ras)
        rotation = np.asarray(affine.GetMatrix()).reshape(3, 3)
        transform.SetMatrix(tuple(rotation.ravel()), 1e-4)
        transform.SetTranslation(tuple(np.asarray(affine.TransformPoint(tuple(centre))) - centre))
    return transform


def register_rigid(fixed, moving, initial_matrix_ras=None, iterations=100):
    """Rigidly register ``moving`` to ``fixed`` (two ImageVolumes of the same modality).

    CT (units "HU") or SPECT (any other units) is recognised from the units of ``fixed``.
    ``initial_matrix_ras`` (optional RAS 4x4, reference -> moving) starts the search from a known
    pose, e.g. a transform corrected by the user. Returns a :class:`RegistrationResult` whose
    ``matrix_ras`` maps reference (fixed) points to moving points, with the final metric, the body
    Dice overlap before and after, and warnings when the result looks wrong.
    """
    modality = _modality(fixed)
    if _modality(moving) != modality:
        raise ValueError(f"Cannot register a {_modality(moving)} image to a {modality} image; register CT to CT "
                         "or SPECT to SPECT (each SPECT follows its own CT).")
    if min(fixed.array.shape) < 8 or min(moving.array.shape) < 8:
        raise ValueError("Images need at least 8 voxels along every axis to be registered.")
    start = time.perf_counter()
    fixed, moving = working_copy(fixed), working_copy(moving)
    fixed_body = outline_mask(fixed, modality)
    moving_body = outline_mask(moving, modality)
    if not fixed_body.any() or not moving_body.any():
        raise ValueError("No body was found in one of the images; check that CTs are in HU and SPECTs hold counts.")

    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(NUMBER_OF_THREADS)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS[modality])
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, SAMPLING_SEED)
    if modality == "CT":
        method.SetMetricFixedMask(metric_mask(fixed, fixed_body))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.001, numberOfIterations=iterations,
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    initial = _initial_transform(fixed, moving, fixed_body, moving_body, initial_matrix_ras)
    method.SetInitialTransform(initial, inPlace=False)

    fixed_image, moving_image = prepared_image(fixed, modality), prepared_image(moving, modality)
    metric_before = method.MetricEvaluate(fixed_image, moving_image)
    final = method.Execute(fixed_image, moving_image)
    matrix = matrix_from_sitk(final)

    centre_ras = fixed.ras_of_ijk((np.array(fixed.array.shape[::-1]) - 1) / 2.0)
    quality = {
        "metric": float(method.GetMetricValue()),
        "body_dice": body_dice(fixed, fixed_body, moving, moving_body, matrix),
        "body_dice_before": body_dice(fixed, fixed_body, moving, moving_body, np.eye(4)),
        "rotation_deg": rotation_angle_deg(matrix),
        "translation_mm": float(np.linalg.norm(transform_points(matrix, centre_ras) - centre_ras)),
    }
    return RegistrationResult(matrix_ras=matrix, kind="rigid", modality=modality,
                              metric_value=float(method.GetMetricValue()), metric_before=float(metric_before),
                              iterations=int(method.GetOptimizerIteration()),
                              stop_condition=method.GetOptimizerStopConditionDescription(),
                              elapsed_s=time.perf_counter() - start, quality=quality,
                              warnings=quality_figures.registration_warnings(quality))


def quality_of_matrix(fixed, moving, matrix_ras):
    """Quality figures of a given transform (reference -> moving, e.g. corrected by the user), judged as
    :func:`register_rigid` judges its own result: ``(quality, warnings)``."""
    modality = _modality(fixed)
    fixed, moving = working_copy(fixed), working_copy(moving)
    fixed_body, moving_body = outline_mask(fixed, modality), outline_mask(moving, modality)
    centre_ras = fixed.ras_of_ijk((np.array(fixed.array.shape[::-1]) - 1) / 2.0)
    matrix_ras = np.asarray(matrix_ras, dtype=float)
    quality = {
        "body_dice": body_dice(fixed, fixed_body, moving, moving_body, matrix_ras),
        "body_dice_before": body_dice(fixed, fixed_body, moving, moving_body, np.eye(4)),
        "rotation_deg": rotation_angle_deg(matrix_ras),
        "translation_mm": float(np.linalg.norm(transform_points(matrix_ras, centre_ras) - centre_ras)),
    }
    return quality, quality_figures.registration_warnings(quality)
