"""Registration of sequential SPECT/CT time points: known repositioning of a synthetic child torso,
counts conservation, quality warnings and the MRML transform and sequence nodes."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MIBGDosimetryLib.registration import register_rigid, resample_counts, resample_image
from MIBGDosimetryLib.registration import mrml_nodes, quality
from MIBGDosimetryLib.registration.deformable import register_bspline
from MIBGDosimetryLib.registration.timepoints import register_timepoints
from MIBGDosimetryLib.registration.transforms import (matrix_from_sitk, rigid_matrix, sitk_from_matrix,
                                                      transform_points)
from MIBGDosimetryLib.volume import ImageVolume

# A child's torso in its own (reference) frame, RAS mm: elliptic body 180 x 140 mm, liver on the right,
# two lungs, the spine, the bladder and two lesions. Values: CT numbers (HU) and activity concentration.
LESIONS = {"lesion A": ((-30.0, 10.0, -20.0), 12.0, 50.0), "lesion B": ((20.0, -20.0, -40.0), 10.0, 40.0)}
REPOSITIONING = rigid_matrix(rotation_deg=(3.0, -2.0, 5.0), translation_mm=(8.0, -12.0, 15.0))
SPECT_FWHM_MM = 15.0


def _in_ellipsoid(points, centre, axes):
    return (((points - np.asarray(centre)) / np.asarray(axes)) ** 2).sum(-1) <= 1.0


def _in_body(points):
    return (points[..., 0] / 90.0) ** 2 + (points[..., 1] / 70.0) ** 2 <= 1.0


def _ct_hu(points):
    hu = np.full(points.shape[:-1], -1000.0)
    body = _in_body(points)
    hu[body] = 40.0
    hu[_in_ellipsoid(points, (45, 0, 30), (35, 40, 35))] = 60.0
    for x in (-35.0, 35.0):
        hu[_in_ellipsoid(points, (x, -5, 60), (25, 35, 40)) & body] = -800.0
    hu[(points[..., 0] ** 2 + (points[..., 1] + 45) ** 2 <= 12.0 ** 2) & body] = 700.0
    return hu


def _concentration(points, lesion_scale=1.0):
    c = np.zeros(points.shape[:-1])
    c[_in_body(points)] = 1.0
    c[_in_ellipsoid(points, (45, 0, 30), (35, 40, 35))] = 6.0
    c[_in_ellipsoid(points, (0, 20, -70), (18, 18, 18))] = 30.0
    for centre, radius, value in LESIONS.values():
        c[_in_ellipsoid(points, centre, (radius,) * 3)] = value * lesion_scale
    return c


def _centred_grid(shape_kji, spacing_mm):
    origin = -(np.array(shape_kji[::-1]) - 1) / 2.0 * np.asarray(spacing_mm)
    return ImageVolume(np.zeros(shape_kji), spacing_mm, tuple(origin))


def _seen_from(grid, matrix_ras, function):
    """The patient moved by ``matrix_ras`` (reference -> this frame): the value at y is f(M^-1 y)."""
    k, j, i = np.indices(grid.array.shape)
    points = grid.ras_of_ijk(np.stack([i, j, k], -1))
    return function(transform_points(np.linalg.inv(matrix_ras), points))


def _ct(matrix_ras):
    grid = _centred_grid((40, 64, 64), (3.5, 3.5, 4.0))
    # A slight blur stands for the CT's own resolution (about 1 mm at 0.7 voxel).
    return grid.with_array(ndimage.gaussian_filter(_seen_from(grid, matrix_ras, _ct_hu), 0.7), units="HU")


def _spect(matrix_ras, lesion_scale=1.0):
    grid = _centred_grid((40, 48, 48), (4.8, 4.8, 4.8))
    activity = _seen_from(grid, matrix_ras, lambda p: _concentration(p, lesion_scale)) * 100.0
    sigma_voxels = SPECT_FWHM_MM / (2.0 * np.sqrt(2.0 * np.log(2.0))) / 4.8
    return grid.with_array(ndimage.gaussian_filter(activity, sigma_voxels), units="counts")


def _lesion_residuals_mm(estimated, true):
    return {name: float(np.linalg.norm(transform_points(estimated, c) - transform_points(true, c)))
            for name, (c, _, _) in LESIONS.items()}


class _TimePoint:
    def __init__(self, ct, spect):
        self.ct, self.spect = ct, spect


def test_matrix_round_trips_through_simpleitk_in_lps():
    matrix = rigid_matrix((10.0, -5.0, 20.0), (3.0, 4.0, -5.0), centre_ras_mm=(10.0, 0.0, -30.0))
    np.testing.assert_allclose(matrix_from_sitk(sitk_from_matrix(matrix)), matrix, atol=1e-12)
    # RAS (x, y, z) is LPS (-x, -y, z): a pure shift of +10 mm towards R is -10 mm in LPS.
    shift = sitk_from_matrix(rigid_matrix(translation_mm=(10.0, 0.0, 0.0)))
    np.testing.assert_allclose(shift.TransformPoint((0.0, 0.0, 0.0)), (-10.0, 0.0, 0.0))


def test_resampling_at_matrix_puts_the_moving_image_on_the_reference_grid():
    grid = _centred_grid((21, 21, 21), (2.0, 2.0, 2.0))
    matrix = rigid_matrix((0.0, 0.0, 90.0), (6.0, 0.0, 4.0))
    point_reference = np.array([8.0, 0.0, 0.0])
    point_moving = transform_points(matrix, point_reference)
    moving = grid.with_array(np.zeros(grid.array.shape))
    i, j, k = np.round(grid.ijk_of_ras(point_moving)).astype(int)
    moving.array[k, j, i] = 1.0
    moved = resample_image(moving, grid, matrix, "nearest")
    k2, j2, i2 = np.argwhere(moved.array == 1.0)[0]
    np.testing.assert_allclose(grid.ras_of_ijk((i2, j2, k2)), point_reference, atol=1e-6)


def test_resample_counts_conserves_total_counts_across_grids():
    moving = _centred_grid((30, 36, 36), (4.8, 4.8, 4.8))
    reference = _centred_grid((40, 44, 44), (4.0, 4.0, 4.0))
    matrix = rigid_matrix((5.0, 0.0, -8.0), (-7.0, 5.0, 3.0))
    centre_moving = np.array([10.0, -6.0, 4.0])
    k, j, i = np.indices(moving.array.shape)
    r2 = ((moving.ras_of_ijk(np.stack([i, j, k], -1)) - centre_moving) ** 2).sum(-1)
    counts = moving.with_array(1000.0 * np.exp(-r2 / (2 * 9.0 ** 2)), units="counts")
    moved = resample_counts(counts, reference, matrix)
    assert moved.array.sum() == pytest.approx(counts.array.sum(), rel=2e-3)
    kji = np.array(ndimage.center_of_mass(moved.array))
    np.testing.assert_allclose(reference.ras_of_ijk(kji[::-1]),
                               transform_points(np.linalg.inv(matrix), centre_moving), atol=0.2)
    assert counts.array.max() == pytest.approx(1000.0, rel=0.05)  # input untouched


def test_ct_rigid_registration_recovers_known_repositioning():
    result = register_rigid(_ct(np.eye(4)), _ct(REPOSITIONING))
    residuals = _lesion_residuals_mm(result.matrix_ras, REPOSITIONING)
    before = _lesion_residuals_mm(np.eye(4), REPOSITIONING)
    print("CT-to-CT residuals (mm):", residuals, "before:", before, "time (s):", result.elapsed_s)
    assert max(residuals.values()) < 2.0
    assert all(residuals[n] < before[n] for n in residuals)
    assert result.quality["body_dice"] > 0.95 > result.quality["body_dice_before"]
    assert result.metric_value < result.metric_before
    assert result.warnings == []


def test_spect_rigid_registration_without_ct():
    result = register_rigid(_spect(np.eye(4)), _spect(REPOSITIONING))
    residuals = _lesion_residuals_mm(result.matrix_ras, REPOSITIONING)
    print("SPECT-to-SPECT residuals (mm):", residuals)
    assert result.modality == "SPECT"
    assert max(residuals.values()) < 2.0


def test_wrong_registration_is_flagged():
    fixed, moving = _ct(np.eye(4)), _ct(REPOSITIONING)
    wrong_start = REPOSITIONING @ rigid_matrix((0.0, 0.0, 90.0))
    result = register_rigid(fixed, moving, initial_matrix_ras=wrong_start, iterations=1)
    assert result.quality["rotation_deg"] > quality.MAX_PLAUSIBLE_ROTATION_DEG
    assert result.quality["body_dice"] < quality.MIN_BODY_DICE
    assert any("rotates the patient" in w for w in result.warnings)
    assert any("overlap" in w for w in result.warnings)


def test_ct_and_spect_must_not_be_mixed():
    with pytest.raises(ValueError, match="CT to CT"):
        register_rigid(_ct(np.eye(4)), _spect(np.eye(4)))


def test_timepoints_follow_their_ct_and_keep_lesion_counts():
    moved_again = rigid_matrix((-4.0, 2.0, -6.0), (-10.0, 6.0, -12.0))
    washout = [1.0, 0.6, 0.3]
    timepoints = [_TimePoint(_ct(m), _spect(m, s)) for m, s in zip((np.eye(4), REPOSITIONING, moved_again), washout)]
    results, registered = register_timepoints(timepoints)
    assert results[0].kind == "identity"
    reference = timepoints[0].spect
    centre, radius, _ = LESIONS["lesion A"]
    k, j, i = np.indices(reference.array.shape)
    voi = np.linalg.norm(reference.ras_of_ijk(np.stack([i, j, k], -1)) - centre, axis=-1) <= radius + 20.0
    truth = [_spect(np.eye(4), s) for s in washout]  # the same activity, never moved
    for result, volume, expected in zip(results, registered, truth):
        assert volume.same_grid(reference)
        assert volume.array[voi].sum() == pytest.approx(expected.array[voi].sum(), rel=0.02)
        assert result.warnings == []
    for result, matrix in zip(results[1:], (REPOSITIONING, moved_again)):
        assert max(_lesion_residuals_mm(result.matrix_ras, matrix).values()) < 2.0
        # Uptake changes between time points limit this figure's precision to a few mm.
        assert result.quality["max_bright_structure_shift_mm"] < 5.0


def test_bright_structure_shift_measures_a_known_displacement():
    reference = _spect(np.eye(4))
    shifted = _spect(rigid_matrix(translation_mm=(0.0, 6.0, -8.0)), lesion_scale=0.5)
    shifts = [s["shift_mm"] for s in quality.bright_structure_shifts_mm(reference, shifted)]
    print("measured shifts of a 10 mm displacement (mm):", shifts)
    assert len(shifts) == 3  # bladder and two lesions
    np.testing.assert_allclose(shifts, 10.0, atol=2.0)
    assert quality.registration_warnings({"max_bright_structure_shift_mm": max(shifts)})


def test_bspline_refinement_follows_a_soft_tissue_displacement():
    fixed = _ct(np.eye(4))
    grid = _centred_grid((40, 64, 64), (3.5, 3.5, 4.0))
    liver_centre = np.array([45.0, 0.0, 30.0])

    def displacement(points):
        # The liver region pushed 6 mm along R by a smooth (30 mm Gaussian) field, as by a full stomach.
        bump = np.exp(-((points - liver_centre) ** 2).sum(-1) / (2 * 30.0 ** 2))
        return 6.0 * bump[..., None] * np.array([1.0, 0.0, 0.0])

    # Tissue at reference point q = p + d(p) is seen at M p in the time point's frame.
    moving = grid.with_array(ndimage.gaussian_filter(
        _seen_from(grid, REPOSITIONING, lambda p: _ct_hu(p + displacement(p))), 0.7), units="HU")
    p = liver_centre.copy()
    for _ in range(50):  # fixed point of p = q - d(p): the liver centre before the push
        p = liver_centre - displacement(p)
    truth = transform_points(REPOSITIONING, p)

    def error_mm(transform):
        lps = transform.TransformPoint((-liver_centre[0], -liver_centre[1], liver_centre[2]))
        return float(np.linalg.norm(np.array([-lps[0], -lps[1], lps[2]]) - truth))

    rigid = register_rigid(fixed, moving)
    refined = register_bspline(fixed, moving, rigid)
    errors = error_mm(sitk_from_matrix(rigid.matrix_ras)), error_mm(refined.transform)
    print("liver-centre error rigid, B-spline (mm):", errors, "min Jacobian:", refined.quality["min_jacobian"],
          "time (s):", refined.elapsed_s)
    assert errors[0] > 4.0  # the rigid stage cannot follow the push
    assert errors[1] < 2.5
    assert refined.quality["min_jacobian"] > quality.MIN_JACOBIAN
    assert refined.metric_value < refined.metric_before


def test_transform_nodes_show_time_points_aligned_in_slicer(mrml_context):
    scene = mrml_context.scene
    result = register_rigid(_ct(np.eye(4)), _ct(REPOSITIONING))
    node = mrml_nodes.add_transform_node(scene, result, "tp2 to reference")
    np.testing.assert_allclose(mrml_nodes.matrix_from_transform_node(node), result.matrix_ras, atol=1e-9)
    assert json.loads(node.GetAttribute(mrml_nodes.QUALITY_ATTRIBUTE))["quality"]["body_dice"] > 0.95
    # Slicer's own transform logic: a time-point volume under the node, hardened, lands on the reference.
    spect = _spect(REPOSITIONING)
    volume_node = spect.to_node(scene, "tp2 SPECT")
    volume_node.SetAndObserveTransformNodeID(node.GetID())
    mrml_context.transform_logic.hardenTransform(volume_node)
    hardened = ImageVolume.from_node(scene, volume_node)
    centre = np.asarray(LESIONS["lesion A"][0])
    k, j, i = np.indices(hardened.array.shape)
    near = np.linalg.norm(hardened.ras_of_ijk(np.stack([i, j, k], -1)) - centre, axis=-1) <= 25.0
    values = np.where(near, hardened.array, 0.0)
    kji = np.array(ndimage.center_of_mass(np.where(values > 0.5 * values.max(), values, 0.0)))
    np.testing.assert_allclose(hardened.ras_of_ijk(kji[::-1]), centre, atol=2.0)
    # Without the transform the lesion sits where the repositioning put it, about 20 mm away.
    assert np.linalg.norm(transform_points(REPOSITIONING, centre) - centre) > 15.0


def test_bspline_transform_node_maps_points_like_simpleitk(mrml_context):
    fixed, moving = _ct(np.eye(4)), _ct(REPOSITIONING)
    refined = register_bspline(fixed, moving, register_rigid(fixed, moving), iterations=5)
    node = mrml_nodes.add_transform_node(mrml_context.scene, refined, "tp2 deformable")
    for point_ras in ([0.0, 0.0, 0.0], [40.0, -20.0, 30.0]):
        lps = refined.transform.TransformPoint((-point_ras[0], -point_ras[1], point_ras[2]))
        mapped = node.GetTransformFromParent().TransformPoint(point_ras)
        np.testing.assert_allclose(mapped, (-lps[0], -lps[1], lps[2]), atol=1e-3)


def test_registered_spects_form_a_sequence(mrml_context):
    volumes = [_spect(np.eye(4), s) for s in (1.0, 0.5)]
    sequence, browser = mrml_nodes.add_volume_sequence(mrml_context, volumes, "SPECT registered", [24.0, 96.0])
    assert sequence.GetNumberOfDataNodes() == 2
    assert sequence.GetNthIndexValue(1) == "96"
    np.testing.assert_allclose(mrml_nodes.array_at_sequence_item(mrml_context, sequence, 1), volumes[1].array,
                               rtol=1e-6)
    assert browser.GetMasterSequenceNode() is sequence


@pytest.fixture(scope="module")
def patient_phantom():
    """The project's patient phantom (three time points, CT on the 4.4 mm SPECT grid for speed)."""
    from MIBGDosimetryLib.phantoms.grid import PhantomGrid
    from MIBGDosimetryLib.phantoms.patient import PatientConfig, simulate_patient, structure_truth

    phantom = simulate_patient(PatientConfig(timepoints_h=(21.0, 45.0, 93.0), grid=PhantomGrid(fine_factor=1)))
    return phantom, structure_truth(phantom)


def test_patient_phantom_repositioning_is_recovered(patient_phantom):
    phantom, truth = patient_phantom
    grid = phantom.config.grid
    timepoints = [_TimePoint(grid.fine_volume(tp.ct_hu.astype(float), "HU"), grid.spect_volume(tp.counts))
                  for tp in phantom.timepoints]
    results, registered = register_timepoints(timepoints)
    lesions = [s for s in truth if s["kind"] == "lesion"]
    for result, tp in zip(results[1:], phantom.timepoints[1:]):
        true_matrix = tp.transform_ras_4x4
        after = [np.linalg.norm(transform_points(result.matrix_ras, s["centroid_ras_mm"])
                                - transform_points(true_matrix, s["centroid_ras_mm"])) for s in lesions]
        before = [np.linalg.norm(np.asarray(s["centroid_ras_mm"]) - transform_points(true_matrix, s["centroid_ras_mm"]))
                  for s in lesions]
        print(f"{tp.label}: lesion residuals {np.round(after, 2)} mm (before {np.round(before, 2)} mm), "
              f"body Dice {result.quality['body_dice']:.3f}, bright-structure shift "
              f"{result.quality['max_bright_structure_shift_mm']:.1f} mm, {result.elapsed_s:.1f} s")
        assert max(after) < 2.0
        assert all(a < b for a, b in zip(after, before))
        assert result.warnings == []
    assert all(volume.same_grid(timepoints[0].spect) for volume in registered)


def test_patient_phantom_registration_in_the_scene(patient_phantom, mrml_context):
    phantom, _ = patient_phantom
    grid = phantom.config.grid
    tp = phantom.timepoints[1]
    result = register_rigid(grid.fine_volume(phantom.timepoints[0].ct_hu.astype(float), "HU"),
                            grid.fine_volume(tp.ct_hu.astype(float), "HU"))
    spect = grid.spect_volume(tp.counts)
    moved = resample_counts(spect, grid.spect_volume(phantom.timepoints[0].counts), result.matrix_ras)
    nodes, sequence, _ = mrml_nodes.add_registration_to_scene(mrml_context, [result], [moved], [tp.label],
                                                              [tp.hours_after_administration])
    assert nodes[0].GetName() == "tp2 to reference"
    np.testing.assert_allclose(mrml_nodes.matrix_from_transform_node(nodes[0]), result.matrix_ras)
    assert sequence.GetNthIndexValue(0) == "45"
    # Counts conserved: the registered SPECT holds the time point's counts (the body stays in view).
    assert mrml_nodes.array_at_sequence_item(mrml_context, sequence, 0).sum() == pytest.approx(spect.array.sum(),
                                                                                               rel=0.01)


def test_resample_counts_through_a_deformation_keeps_counts():
    grid = _centred_grid((40, 40, 40), (4.0, 4.0, 4.0))
    k, j, i = np.indices(grid.array.shape)
    r2 = (grid.ras_of_ijk(np.stack([i, j, k], -1)) ** 2).sum(-1)
    counts = grid.with_array(500.0 * np.exp(-r2 / (2 * 12.0 ** 2)), units="counts")
    # A B-spline whose control points move by 20 % of their distance from the centre: a smooth
    # stretch by 1.2 along each axis (volume change 1.728) where the counts are.
    bspline = sitk.BSplineTransformInitializer(grid.to_sitk(), [4, 4, 4], order=3)
    displacement = []
    for axis, image in enumerate(bspline.GetCoefficientImages()):
        # Parameters run with x fastest (ITK buffer order); the displacement is in LPS like the points.
        indices = [index[::-1] for index in np.ndindex(image.GetSize()[::-1])]
        positions = np.array([image.TransformIndexToPhysicalPoint(index) for index in indices])
        displacement.append(0.2 * positions[:, axis])
    bspline.SetParameters(tuple(np.concatenate(displacement)))
    moved = resample_counts(counts, grid, bspline)
    assert moved.array.sum() == pytest.approx(counts.array.sum(), rel=0.01)
    # Without the volume change the counts would be off by the factor 1.728.
    sampled_only = resample_image(counts, grid, bspline).array.sum()
    assert sampled_only == pytest.approx(counts.array.sum() / 1.728, rel=0.03)


def test_timepoints_with_deformable_refinement():
    timepoints = [_TimePoint(_ct(m), _spect(m)) for m in (np.eye(4), REPOSITIONING)]
    results, registered = register_timepoints(timepoints, deformable=True)
    assert results[1].kind == "bspline" and results[1].transform is not None
    for name, (centre, _, _) in LESIONS.items():
        lps = results[1].transform.TransformPoint((-centre[0], -centre[1], centre[2]))
        mapped = np.array([-lps[0], -lps[1], lps[2]])
        assert np.linalg.norm(mapped - transform_points(REPOSITIONING, centre)) < 2.0, name
    reference = timepoints[0].spect
    k, j, i = np.indices(reference.array.shape)
    voi = np.linalg.norm(reference.ras_of_ijk(np.stack([i, j, k], -1)) - LESIONS["lesion A"][0], axis=-1) <= 32.0
    assert registered[1].array[voi].sum() == pytest.approx(reference.array[voi].sum(), rel=0.03)
    with pytest.raises(ValueError, match="CT at every time point"):
        register_timepoints([_TimePoint(None, tp.spect) for tp in timepoints], deformable=True)
