"""VOIs: adaptive-threshold lesions on simulated SPECT (threshold model calibrated on simulated
sphere inserts imaged with the same camera resolution), MRML segments, CT organ helpers, VOIs carried
to time points and DICOM SEG / RTSTRUCT import."""

import numpy as np
import pytest
from scipy import ndimage

from MIBGCalibrationLib.threshold import ThresholdModel
from MIBGCalibrationLib.threshold_calibration import fit_threshold_model, insert_threshold
from MIBGDosimetryLib.registration.transforms import rigid_matrix, transform_points
from MIBGDosimetryLib.segmentation import organs, segments
from MIBGDosimetryLib.segmentation.adaptive_threshold import adaptive_threshold_mask
from MIBGDosimetryLib.volume import ImageVolume

SPECT_VOXEL_MM = 4.4
FINE = 2  # simulation voxels per SPECT voxel along each axis
CAMERA_FWHM_MM = 17.0
BACKGROUND = 1.0  # activity concentration, arbitrary units per mL


def _simulate(shape_kji, objects):
    """A reconstructed SPECT of ``objects`` [(centre RAS mm, semi-axes mm, concentration)] in a uniform
    background: activity on a fine grid, Gaussian blur with the camera FWHM, binned (summed) onto the
    SPECT grid. Returns the ImageVolume (counts proportional to activity) and the true masks' volumes."""
    fine_mm = SPECT_VOXEL_MM / FINE
    fine_shape = tuple(n * FINE for n in shape_kji)
    origin_fine = -(np.array(fine_shape[::-1]) - 1) / 2.0 * fine_mm
    k, j, i = np.indices(fine_shape)
    points = np.stack([i, j, k], -1) * fine_mm + origin_fine
    activity = np.full(fine_shape, BACKGROUND)
    for centre, axes, concentration in objects:
        inside = (((points - np.asarray(centre)) / np.asarray(axes)) ** 2).sum(-1) <= 1.0
        activity[inside] = concentration
    blurred = ndimage.gaussian_filter(activity, CAMERA_FWHM_MM / (2 * np.sqrt(2 * np.log(2))) / fine_mm)
    counts = blurred.reshape(shape_kji[0], FINE, shape_kji[1], FINE, shape_kji[2], FINE).sum(axis=(1, 3, 5))
    origin = -(np.array(shape_kji[::-1]) - 1) / 2.0 * SPECT_VOXEL_MM
    return ImageVolume(counts, (SPECT_VOXEL_MM,) * 3, tuple(origin), units="counts")


def _sphere_volume_ml(diameter_mm):
    return np.pi / 6.0 * diameter_mm ** 3 / 1000.0


@pytest.fixture(scope="module")
def threshold_model():
    """Calibrated on six sphere inserts (20-60 mm, 8:1 contrast), one image per insert so that inserts
    do not cross-talk, with the calibration module's own insert analysis and fit."""
    inserts = []
    for diameter in (20.0, 26.0, 32.0, 40.0, 50.0, 60.0):
        spect = _simulate((28, 28, 28), [((0.0, 0.0, 0.0), (diameter / 2,) * 3, 8.0 * BACKGROUND)])
        background = BACKGROUND * FINE ** 3 * (SPECT_VOXEL_MM / FINE) ** 3 / (SPECT_VOXEL_MM / FINE) ** 3
        inserts.append(insert_threshold(spect, f"{diameter:.0f} mm", (0.0, 0.0, 0.0), _sphere_volume_ml(diameter),
                                        background, 8.0))
    return fit_threshold_model(inserts)


LESIONS = [  # name, centre RAS mm (off the voxel grid), semi-axes mm, concentration
    ("4 mL sphere", (-30.3, 21.7, 12.9), (9.85, 9.85, 9.85), 8.0),
    ("8 mL ellipsoid", (31.1, -18.2, -20.6), (14.0, 11.0, 12.4), 8.0),
    ("25 mL sphere", (27.9, 30.8, 25.3), (18.1, 18.1, 18.1), 8.0),
    ("60 mL ellipsoid", (-25.6, -30.1, -15.4), (27.0, 22.0, 24.1), 8.0),
]


@pytest.mark.parametrize("name,centre,axes,concentration", LESIONS)
def test_adaptive_threshold_volume_within_10_percent(threshold_model, name, centre, axes, concentration):
    spect = _simulate((30, 36, 36), [(centre, axes, concentration)])
    true_ml = 4.0 / 3.0 * np.pi * np.prod(axes) / 1000.0
    seed = np.asarray(centre) + np.array([4.0, -3.0, 2.0])  # the user clicks near, not at, the centre
    mask, info = adaptive_threshold_mask(spect, seed, threshold_model)
    error = info["volume_ml"] / true_ml - 1.0
    print(f"{name}: true {true_ml:.2f} mL, found {info['volume_ml']:.2f} mL ({100 * error:+.1f} %), "
          f"{info['iterations']} iterations, fraction {info['fraction']:.3f}, background {info['background']:.3f}")
    assert info["converged"]
    assert abs(error) < 0.10
    assert mask.sum() * spect.voxel_volume_ml == pytest.approx(info["volume_ml"])
    np.testing.assert_allclose(info["peak_ras_mm"], centre, atol=1.5 * SPECT_VOXEL_MM)
