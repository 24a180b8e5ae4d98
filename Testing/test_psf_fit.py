"""Lesion volume by fitting a PSF-blurred ellipsoid, against simulated lesions of known volume.

The images are made as the project's phantoms make them: activity on a fine grid of half the SPECT
voxel (a voxel belongs to a structure when its centre lies inside it), blurred there by the Gaussian
of the camera, summed into 4.4 mm SPECT voxels and given Poisson noise. The true volume is that of
the fine voxels inside the structure.
"""

import time

import numpy as np
import pytest
from scipy import ndimage

from MIBGDosimetryLib.phantoms.camera import gaussian_blur
from MIBGDosimetryLib.phantoms.grid import PhantomGrid
from MIBGDosimetryLib.segmentation.psf_fit import refine_lesion

FWHM_MM = 17.0
SMALL_GRID = PhantomGrid(matrix=36, slices=36)


def ellipsoid_fine(grid, centre_ras_mm, semi_axes_mm):
    """Fine-grid voxels whose centre lies in the axis-aligned ellipsoid (semi-axes along R, A, S)."""
    offsets = (grid.fine_points_ras() - np.asarray(centre_ras_mm)) / np.asarray(semi_axes_mm)
    return np.sum(offsets ** 2, axis=-1) <= 1.0


def simulated_lesion(rng, volume_ml, background_counts, contrast, axis_ratios=(1.0, 1.0, 1.0), grid=SMALL_GRID,
                     neighbour=None):
    """(expected counts on the SPECT grid, fine lesion mask, true volume mL, centre RAS mm) of a lesion at a
    random sub-voxel position near the centre; ``neighbour`` = (fine mask, concentration relative to the
    background) adds a hot structure."""
    ratios = np.asarray(axis_ratios, dtype=float)
    radius_mm = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi * np.prod(ratios))) ** (1.0 / 3.0)
    centre = rng.uniform(-grid.spect_voxel_mm / 2.0, grid.spect_voxel_mm / 2.0, 3)
    lesion = ellipsoid_fine(grid, centre, radius_mm * ratios)
    per_fine = background_counts / grid.fine_factor ** 3
    activity = np.full(grid.fine_shape, per_fine) + lesion * (contrast - 1.0) * per_fine
    if neighbour is not None:
        activity += neighbour[0] * (neighbour[1] - 1.0) * per_fine
    # The whole grid is body: pad by the background before blurring so that no counts leave at the edges.
    pad = int(np.ceil(3.0 * FWHM_MM / grid.fine_voxel_mm))
    blurred = gaussian_blur(np.pad(activity, pad, constant_values=per_fine), FWHM_MM, grid.fine_voxel_mm)
    expected = grid.bin_to_spect(blurred[pad:-pad, pad:-pad, pad:-pad])
    return expected, lesion, float(lesion.sum()) * grid.fine_voxel_mm ** 3 / 1000.0, centre


def first_delineation(counts, background_counts):
    """The voxels of the image smoothed by one voxel above half way between background and maximum: a
    rough delineation, as a threshold gives, from which the fit starts."""
    smooth = ndimage.gaussian_filter(counts, 1.0)
    return smooth >= background_counts + 0.5 * (smooth.max() - background_counts)


def fit(rng, expected, background_counts, grid=SMALL_GRID, allowed_mask=None):
    counts = rng.poisson(expected).astype(float)
    mask = first_delineation(np.where(allowed_mask, counts, 0.0) if allowed_mask is not None else counts,
                             background_counts)
    return refine_lesion(grid.spect_volume(counts), mask, FWHM_MM, allowed_mask=allowed_mask)


@pytest.mark.parametrize("volume_ml, background_counts, contrast, axis_ratios, seed", [
    (4.0, 400.0, 8.0, (1.0, 1.0, 1.0), 11),
    (8.0, 200.0, 8.0, (1.0, 1.0, 1.0), 12),
    (8.0, 400.0, 4.0, (1.0, 1.0, 1.0), 13),
    (30.0, 100.0, 8.0, (1.0, 1.0, 1.0), 14),
    (30.0, 200.0, 4.0, (1.0, 1.0, 1.0), 15),
    (8.0, 200.0, 8.0, (1.5, 1.0, 0.7), 16),
])
def test_volume_within_five_percent(volume_ml, background_counts, contrast, axis_ratios, seed):
    rng = np.random.default_rng(seed)
    expected, lesion, true_ml, centre = simulated_lesion(rng, volume_ml, background_counts, contrast, axis_ratios)
    refined, info = fit(rng, expected, background_counts)
    print(f"{volume_ml} mL {contrast}:1 at {background_counts} counts, axes {axis_ratios}: true {true_ml:.3f} mL, "
          f"fitted {info['volume_ml']:.3f} +- {info['volume_uncertainty_ml']:.3f} mL "
          f"({100 * (info['volume_ml'] / true_ml - 1):+.1f} %), chi2/dof {info['reduced_chi_square']:.2f}")
    assert info["converged"], info["warning"]
    assert abs(info["volume_ml"] / true_ml - 1.0) < 0.05
    assert 0.8 < info["reduced_chi_square"] < 1.2
    # The centre, concentration and background agree with the simulation.
    assert np.linalg.norm(np.asarray(info["centre_ras_mm"]) - centre) < 1.0
    assert info["background"] == pytest.approx(background_counts, rel=0.02)
    assert info["concentration"] == pytest.approx((contrast - 1.0) * background_counts, rel=0.1)
    # The semi-axes follow the ellipsoid's shape (i towards -R, j towards -A, k towards +S: same lengths).
    radius_mm = (3.0 * true_ml * 1000.0 / (4.0 * np.pi * np.prod(axis_ratios))) ** (1.0 / 3.0)
    np.testing.assert_allclose(info["semi_axes_mm"], radius_mm * np.asarray(axis_ratios), rtol=0.1)
    # The refined mask holds about the fitted volume.
    assert info["mask_volume_ml"] == pytest.approx(info["volume_ml"], rel=0.2)


def test_stated_uncertainty_matches_scatter_over_noise_draws():
    rng = np.random.default_rng(21)
    expected, lesion, true_ml, centre = simulated_lesion(rng, 6.0, 200.0, 6.0)
    volumes, uncertainties = [], []
    for _ in range(10):
        _, info = fit(rng, expected, 200.0)
        volumes.append(info["volume_ml"])
        uncertainties.append(info["volume_uncertainty_ml"])
    scatter = float(np.std(volumes, ddof=1))
    stated = float(np.mean(uncertainties))
    print(f"6 mL 6:1, 10 noise draws: mean {np.mean(volumes):.3f} mL (true {true_ml:.3f}), scatter {scatter:.3f} mL, "
          f"stated {stated:.3f} mL, largest error {100 * np.max(np.abs(np.array(volumes) / true_ml - 1)):.1f} %")
    assert 0.5 < scatter / stated < 2.0
    assert abs(np.mean(volumes) / true_ml - 1.0) < 2.0 * stated / np.sqrt(10) / true_ml + 0.01


def test_excluded_hot_neighbour_does_not_bias_the_volume():
    rng = np.random.default_rng(31)
    grid = SMALL_GRID
    # A 65 mL hot organ whose surface lies 12 mm from the lesion's (spill-out reaches the lesion).
    neighbour = ellipsoid_fine(grid, (0.0, 0.0, -46.0), (25.0, 25.0, 25.0))
    expected, lesion, true_ml, centre = simulated_lesion(rng, 8.0, 200.0, 8.0, neighbour=(neighbour, 5.0))
    organ_voxels = grid.bin_to_spect(neighbour) > 0
    _, info = fit(rng, expected, 200.0, allowed_mask=~organ_voxels)
    error = info["volume_ml"] / true_ml - 1.0
    print(f"8 mL beside a 5:1 organ (excluded): fitted {info['volume_ml']:.3f} mL, true {true_ml:.3f} mL "
          f"({100 * error:+.1f} %), chi2/dof {info['reduced_chi_square']:.2f}")
    assert info["converged"], info["warning"]
    assert abs(error) < 0.05


def test_full_size_image_is_fitted_in_a_few_seconds_of_cpu():
    rng = np.random.default_rng(41)
    grid = PhantomGrid()  # 64 x 64 x 88 voxels of 4.4 mm
    expected, lesion, true_ml, centre = simulated_lesion(rng, 30.0, 200.0, 8.0, grid=grid)
    counts = rng.poisson(expected).astype(float)
    mask = first_delineation(counts, 200.0)
    # CPU time of the process, not wall-clock time: the limit is about the work done, which a machine busy
    # with other jobs does not change.
    start = time.process_time()
    _, info = refine_lesion(grid.spect_volume(counts), mask, FWHM_MM)
    elapsed_s = time.process_time() - start
    print(f"30 mL on 64 x 64 x 88: {elapsed_s:.2f} s CPU, {info['evaluations']} evaluations, "
          f"{100 * (info['volume_ml'] / true_ml - 1):+.1f} %")
    assert elapsed_s < 3.0  # about 1 s on an idle 2-core machine; a lost vectorisation costs far more
    assert abs(info["volume_ml"] / true_ml - 1.0) < 0.05


def test_inputs_are_not_modified():
    rng = np.random.default_rng(51)
    expected, _, _, _ = simulated_lesion(rng, 8.0, 200.0, 8.0)
    counts = rng.poisson(expected).astype(float)
    spect = SMALL_GRID.spect_volume(counts.copy())
    mask = first_delineation(counts, 200.0)
    allowed = np.ones(counts.shape, dtype=bool)
    refine_lesion(spect, mask.copy(), FWHM_MM, allowed_mask=allowed)
    np.testing.assert_array_equal(spect.array, counts)
    assert allowed.all()


@pytest.mark.parametrize("case, message", [
    ("empty", "mask is empty"),
    ("fwhm", "FWHM must be a positive"),
    ("edge", "edge of the SPECT image"),
    ("shape", "lesion mask has shape"),
    ("allowed_shape", "allowed mask has shape"),
])
def test_bad_input_is_refused(case, message):
    counts = np.full(SMALL_GRID.spect_shape, 100.0)
    mask = np.zeros(counts.shape, dtype=bool)
    mask[16:20, 16:20, 16:20] = True
    counts[mask] = 800.0
    fwhm_mm, allowed = FWHM_MM, None
    if case == "empty":
        mask[:] = False
    elif case == "fwhm":
        fwhm_mm = 0.0
    elif case == "edge":
        mask[:] = False
        mask[1:4, 16:20, 16:20] = True
    elif case == "shape":
        mask = mask[:-1]
    elif case == "allowed_shape":
        allowed = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match=message):
        refine_lesion(SMALL_GRID.spect_volume(counts), mask, fwhm_mm, allowed_mask=allowed)
