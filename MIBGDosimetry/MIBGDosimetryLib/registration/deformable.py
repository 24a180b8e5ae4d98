"""Optional deformable (B-spline) refinement of a rigid CT-to-CT registration, for soft tissue.

The deformation is regularised in two ways: a coarse control-point grid (50 mm spacing, so nothing
smaller than an organ can be deformed on its own) and bounded control-point displacements (at most
15 mm, the soft-tissue motion between sequential scans of a child repositioned on the couch). The
metric is the mean squared HU difference: CT numbers are calibrated, so the same tissue has the same
value at every time point, and this metric is several times cheaper than mutual information. The
smallest Jacobian determinant is kept with the result: a value near or below zero means the
deformation folds tissue and must not be used.
"""

import time

import numpy as np
import SimpleITK as sitk

from MIBGDosimetryLib.registration import quality as quality_figures
from MIBGDosimetryLib.registration.resample import jacobian_determinant
from MIBGDosimetryLib.registration.result import RegistrationResult
from MIBGDosimetryLib.registration.rigid import (NUMBER_OF_THREADS, SAMPLING_SEED, body_dice, metric_mask,
                                                 outline_mask, prepared_image, working_copy)
from MIBGDosimetryLib.registration.transforms import sitk_from_matrix

#: Control-point spacing of the B-spline grid (mm).
CONTROL_POINT_SPACING_MM = 50.0
#: Bound on every control-point displacement (mm).
MAX_CONTROL_POINT_DISPLACEMENT_MM = 15.0


def register_bspline(fixed, moving, rigid_result, iterations=30):
    """Refine ``rigid_result`` (a RegistrationResult of ``moving`` CT to ``fixed`` CT) with a B-spline.

    Returns a new RegistrationResult of kind "bspline": ``transform`` is the full SimpleITK transform
    (reference -> moving, LPS) and ``matrix_ras`` stays the rigid part.
    """
    if fixed.units.upper() != "HU" or moving.units.upper() != "HU":
        raise ValueError("Deformable registration is done between CTs (units HU).")
    start = time.perf_counter()
    fixed, moving = working_copy(fixed), working_copy(moving)
    rigid = sitk_from_matrix(rigid_result.matrix_ras)
    fixed_image, moving_image = prepared_image(fixed, "CT"), prepared_image(moving, "CT")
    fixed_body = outline_mask(fixed, "CT")
    extent_mm = np.array(fixed_image.GetSize()) * np.array(fixed_image.GetSpacing())
    mesh_size = [max(1, int(round(e / CONTROL_POINT_SPACING_MM))) for e in extent_mm]
    bspline = sitk.BSplineTransformInitializer(fixed_image, mesh_size, order=3)

    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(NUMBER_OF_THREADS)
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, SAMPLING_SEED)
    method.SetMetricFixedMask(metric_mask(fixed, fixed_body))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=4 * iterations,
                                costFunctionConvergenceFactor=1e7,
                                lowerBound=-MAX_CONTROL_POINT_DISPLACEMENT_MM,
                                upperBound=MAX_CONTROL_POINT_DISPLACEMENT_MM)
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1, 0])
    method.SetMovingInitialTransform(rigid)
    method.SetInitialTransform(bspline, inPlace=True)
    metric_before = float(method.MetricEvaluate(fixed_image, moving_image))
    method.Execute(fixed_image, moving_image)
    # Fixed point -> B-spline -> rigid -> moving point (ITK composites apply the last transform first).
    full = sitk.CompositeTransform([rigid, bspline])

    moving_body = outline_mask(moving, "CT")
    quality = {k: v for k, v in rigid_result.quality.items() if k != "metric"}
    quality["body_dice_rigid"] = quality.get("body_dice")
    quality["body_dice"] = body_dice(fixed, fixed_body, moving, moving_body, full)
    quality["min_jacobian"] = float(jacobian_determinant(fixed, full)[fixed_body].min())
    return RegistrationResult(matrix_ras=np.asarray(rigid_result.matrix_ras), kind="bspline", modality="CT",
                              metric_value=float(method.GetMetricValue()), metric_before=metric_before,
                              iterations=int(method.GetOptimizerIteration()),
                              stop_condition=method.GetOptimizerStopConditionDescription(),
                              elapsed_s=rigid_result.elapsed_s + time.perf_counter() - start, quality=quality,
                              warnings=quality_figures.registration_warnings(quality), transform=full)
