"""Calibration factor (EANM eq. 4), recovery (eq. 5) and adaptive-threshold calibration on analytic images.

Truths: a uniform cylinder of known activity imaged with a known Q; Gaussian-blurred spheres whose
recovery in a VOI of their own volume is the radial integral of the closed-form blurred-sphere profile.
"""

import dataclasses
import json

import numpy as np
import pytest
from scipy import integrate, special

from MIBGCalibrationLib import calibration_factor, recovery, threshold_calibration, voi
from MIBGCalibrationLib.threshold import ThresholdModel
from MIBGDosimetryLib.volume import ImageVolume

Q_TRUE = 85.0
DURATION_S = 1800.0
FWHM_MM = 12.0
SIGMA_MM = FWHM_MM / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def blurred_sphere_profile(r_mm, radius_mm, sigma_mm=SIGMA_MM):
    """Uniform sphere (value 1) convolved with an isotropic Gaussian, at distance r from its centre."""
    r = np.maximum(np.asarray(r_mm, dtype=float), 1e-9)
    s2 = np.sqrt(2.0) * sigma_mm
    gauss = sigma_mm / (r * np.sqrt(2.0 * np.pi)) * (np.exp(-((radius_mm - r) ** 2) / (2 * sigma_mm ** 2))
                                                     - np.exp(-((radius_mm + r) ** 2) / (2 * sigma_mm ** 2)))
    return 0.5 * (special.erf((radius_mm + r) / s2) + special.erf((radius_mm - r) / s2)) - gauss


def analytic_recovery(radius_mm):
    """Fraction of a blurred sphere's activity inside the sphere itself."""
    value, _ = integrate.quad(lambda r: blurred_sphere_profile(r, radius_mm) * 4 * np.pi * r ** 2, 0, radius_mm)
    return value / (4.0 / 3.0 * np.pi * radius_mm ** 3)


def grid(shape, spacing_mm):
    origin = tuple(-0.5 * (n - 1) * s for n, s in zip(shape[::-1], spacing_mm))
    return ImageVolume(np.zeros(shape), spacing_mm, origin)


def test_calibration_factor_of_a_uniform_cylinder():
    rng = np.random.default_rng(7)
    image = grid((56, 64, 64), (4.0, 4.0, 4.0))
    diameter_mm, height_mm, activity_MBq = 200.0, 186.0, 150.0
    volume_ml = np.pi * (diameter_mm / 20.0) ** 2 * height_mm / 10.0
    centre = np.array([6.0, -8.0, 4.0])
    # Voxel fractions inside the cylinder: disk fraction (5x5 sub-samples in-plane) x axial fraction.
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    x = image.origin_ras_mm[0] + 4.0 * np.arange(64) - centre[0]
    y = image.origin_ras_mm[1] + 4.0 * np.arange(64) - centre[1]
    z = image.origin_ras_mm[2] + 4.0 * np.arange(56) - centre[2]
    disk = np.mean([np.hypot(x[np.newaxis, :] + 4.0 * di, y[:, np.newaxis] + 4.0 * dj) <= diameter_mm / 2
                    for di in sub for dj in sub], axis=0)
    axial = np.clip((height_mm / 2 - np.abs(z)) / 4.0 + 0.5, 0.0, 1.0)
    fraction = axial[:, np.newaxis, np.newaxis] * disk[np.newaxis]
    expected = Q_TRUE * DURATION_S * activity_MBq / volume_ml * image.voxel_volume_ml * fraction
    spect = image.with_array(rng.poisson(expected).astype(float), units="counts")
    result = calibration_factor.calibration_factor(spect, DURATION_S, activity_MBq, volume_ml, diameter_mm, height_mm)
    assert result.q_cps_per_MBq == pytest.approx(Q_TRUE, rel=0.01)
    assert abs(result.q_cps_per_MBq - Q_TRUE) < 3 * result.q_uncertainty_cps_per_MBq
    np.testing.assert_allclose(result.cylinder.centre_ras_mm, centre, atol=1.0)
    expected_voi_ml = np.pi * (0.75 * diameter_mm / 20) ** 2 * 0.75 * height_mm / 10
    assert result.voi_volume_ml == pytest.approx(expected_voi_ml, rel=0.03)
    assert len(result.sub_voi_q_cps_per_MBq) == 7
    assert result.sub_voi_max_relative_difference < 0.05
    assert not result.warnings


def test_calibration_factor_warns_about_non_uniform_images_and_refuses_empty_ones():
    image = grid((40, 48, 48), (5.0, 5.0, 5.0))
    mask = voi.cylinder_mask(image, (0, 0, 0), 100.0, 90.0)
    ramp = 1.0 + 0.02 * np.arange(48)[np.newaxis, np.newaxis, :]
    spect = image.with_array(np.where(mask, 1000.0 * ramp, 0.0))
    volume_ml = np.pi * 10.0 ** 2 * 18.0
    result = calibration_factor.calibration_factor(spect, 100.0, 10.0, volume_ml, 200.0, 180.0)
    assert any("differs by up to" in w for w in result.warnings)
    with pytest.raises(ValueError, match="No filled cylinder"):
        calibration_factor.calibration_factor(image, 100.0, 10.0, volume_ml, 200.0, 180.0)


def blurred_spheres_image(radii_mm, centres, sphere_level, background_level, spacing_mm=2.0, shape=(48, 96, 96)):
    image = grid(shape, (spacing_mm,) * 3)
    points = voi.voxel_centres_ras(image)
    values = np.full(shape, float(background_level))
    for radius, centre in zip(radii_mm, centres):
        profile = blurred_sphere_profile(np.linalg.norm(points - np.asarray(centre), axis=-1), radius)
        values += (sphere_level - background_level) * profile
    return image.with_array(values, units="counts")


RADII_MM = [5.0, 7.5, 10.0, 14.0, 19.0]
CENTRES = [(-60.0, -40.0, 0.0), (-20.0, -40.0, 0.0), (30.0, -40.0, 0.0), (-35.0, 30.0, 0.0), (35.0, 30.0, 0.0)]


def binary_voi_recovery(image, centre, radius_mm):
    """Recovery in the VOI of voxel centres inside the sphere: the closed-form profile summed over those
    voxels, relative to the sphere's true volume."""
    points = voi.voxel_centres_ras(image)
    distance = np.linalg.norm(points - np.asarray(centre), axis=-1)
    inside = distance <= radius_mm
    return blurred_sphere_profile(distance[inside], radius_mm).sum() * image.voxel_volume_ml / (
        4.0 / 3.0 * np.pi * radius_mm ** 3 / 1000.0)


def test_insert_recovery_matches_blurred_sphere_profile():
    concentration = 2.0  # MBq/mL
    level = Q_TRUE * DURATION_S * concentration * 0.008  # counts per 2 mm voxel of fully recovered activity
    spect = blurred_spheres_image(RADII_MM, CENTRES, level, 0.0)
    measured = []
    for index, (radius, centre) in enumerate(zip(RADII_MM, CENTRES)):
        volume_ml = 4.0 / 3.0 * np.pi * radius ** 3 / 1000.0
        shifted = np.asarray(centre) + np.array([1.3, -0.9, 0.7])  # recorded centre 1.8 mm off
        result = recovery.insert_recovery(spect, DURATION_S, Q_TRUE, f"S{index}", shifted, volume_ml, concentration)
        assert np.linalg.norm(result.centre_ras_mm - np.asarray(centre)) < 0.5
        truth = binary_voi_recovery(spect, centre, radius)
        assert result.recovery == pytest.approx(truth, rel=0.01), (radius, result.recovery, truth)
        if radius >= 10.0:
            # Larger spheres: the voxelised VOI approaches the continuous integral.
            assert result.recovery == pytest.approx(analytic_recovery(radius), rel=0.04)
        measured.append((volume_ml, result.recovery))
    volumes, values = np.array(measured).T
    curve = recovery.fit_recovery_curve(volumes, values, 0.005 * values, q_relative_uncertainty=0.01)
    for volume, value in zip(volumes, values):
        fitted, uncertainty = curve.evaluate(volume)
        assert fitted == pytest.approx(value, rel=0.06)
        assert 0.01 * fitted <= uncertainty < 0.1 * fitted  # at least the common Q part, no runaway
    with pytest.raises(ValueError, match="At least 4 inserts"):
        recovery.fit_recovery_curve(volumes[:3], values[:3], values[:3] * 0.01)
    with pytest.raises(ValueError, match="outside the reconstructed image"):
        recovery.insert_recovery(spect, DURATION_S, Q_TRUE, "edge", (0.0, 0.0, 45.0), 4.0, concentration,
                                 refine=False)


def test_threshold_fraction_reproduces_analytic_isocontour_and_model_fit():
    background, sphere_level = 100.0, 800.0
    spect = blurred_spheres_image(RADII_MM, CENTRES, sphere_level, background)
    inserts = []
    for index, (radius, centre) in enumerate(zip(RADII_MM, CENTRES)):
        volume_ml = 4.0 / 3.0 * np.pi * radius ** 3 / 1000.0
        found = threshold_calibration.insert_threshold(spect, f"S{index}", centre, volume_ml, background,
                                                       sphere_level / background)
        # A spherically symmetric profile: the isocontour through the true radius holds the true volume.
        truth = blurred_sphere_profile(radius, radius) / blurred_sphere_profile(0.0, radius)
        print(f"r = {radius} mm: fraction {found.fraction:.4f}, isocontour {truth:.4f}, maximum {found.maximum:.2f}, "
              f"background {found.background:.2f}")
        # Fitted apex and sub-voxel volume: within 0.02 of the continuous isocontour (trilinear interpolation
        # flattens the profile's curvature a little), with the true background recovered by the shell.
        inserts.append(found)
    for found in inserts:
        assert found.background == pytest.approx(background, rel=0.005)
    for found, radius in zip(inserts, RADII_MM):
        truth = blurred_sphere_profile(radius, radius) / blurred_sphere_profile(0.0, radius)
        assert found.fraction == pytest.approx(truth, abs=0.02), (radius, found.fraction, truth)
    model = threshold_calibration.fit_threshold_model(inserts)
    assert model.form == "interpolated" and model.c == 0.0  # one contrast only: no contrast term
    for found in inserts:
        assert model.fraction(found.volume_ml) == pytest.approx(found.fraction, abs=1e-9)
    # Between inserts the model interpolates in ln V; outside their range it keeps the end values.
    small, next_small = sorted(inserts, key=lambda t: t.volume_ml)[:2]
    assert model.volume_range_ml == pytest.approx((small.volume_ml, max(t.volume_ml for t in inserts)))
    middle_ml = np.sqrt(small.volume_ml * next_small.volume_ml)
    assert model.fraction(middle_ml) == pytest.approx(0.5 * (small.fraction + next_small.fraction))
    assert model.fraction(0.1 * small.volume_ml) == pytest.approx(small.fraction)
    assert not model.covers(0.1 * small.volume_ml) and model.covers(middle_ml)
    with pytest.raises(ValueError, match="At least 3"):
        threshold_calibration.fit_threshold_model(inserts[:2])
    # The record keeps the model as JSON.
    back = ThresholdModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back == model and back.fraction(middle_ml) == model.fraction(middle_ml)
    assert "interpolated" in model.describe()
    with pytest.raises(ValueError, match="increasing positive insert volumes"):
        ThresholdModel(a=0.0, form="interpolated", knot_volumes_ml=(4.0, 2.0), knot_fractions=(0.5, 0.6))
    with pytest.raises(ValueError, match="Unknown threshold-model form"):
        ThresholdModel(a=0.4, form="cubic")
    # Several contrasts: the least-squares model a + b / V + c / C.
    mixed = [dataclasses.replace(t, contrast=c, fraction=0.3 + 0.2 / t.volume_ml + 0.5 / c)
             for t, c in zip(inserts, (4.0, 8.0, 4.0, 8.0, 6.0))]
    fitted = threshold_calibration.fit_threshold_model(mixed)
    assert fitted.form == "inverse-volume"
    assert (fitted.a, fitted.b, fitted.c) == pytest.approx((0.3, 0.2, 0.5), abs=1e-9)


def test_threshold_model_over_volume_and_image_contrast():
    """The same inserts at two concentration ratios: at each volume the fraction is interpolated
    linearly in 1 / image contrast between the two rows, and held at the end rows outside them."""
    volumes = (2.0, 4.0, 16.0)

    def insert(volume, ratio, fraction, image_contrast):
        return threshold_calibration.InsertThreshold(f"{volume:g}", volume, ratio, fraction,
                                                     maximum=10.0 * image_contrast, background=10.0)

    low = [insert(v, 8.0, f, c) for v, f, c in zip(volumes, (0.6, 0.45, 0.2), (3.0, 5.0, 12.0))]
    high = [insert(v, 32.0, f, c) for v, f, c in zip(volumes, (0.55, 0.3, 0.15), (8.0, 30.0, 60.0))]
    model = threshold_calibration.fit_threshold_model(low + high)
    assert model.form == "interpolated-contrast"
    assert np.allclose(model.knot_contrasts, ((3.0, 5.0, 12.0), (8.0, 30.0, 60.0)))
    # At a knot volume: 1 / C halfway between 1/5 and 1/30 gives the mean of 0.45 and 0.3.
    halfway = 1.0 / (0.5 * (1.0 / 5.0 + 1.0 / 30.0))
    assert model.fraction(4.0, halfway) == pytest.approx(0.375)
    assert model.fraction(4.0, 100.0) == pytest.approx(0.3) and model.fraction(4.0, 2.0) == pytest.approx(0.45)
    # Between knots both the fractions and the contrasts of each row are interpolated in ln V.
    assert model.fraction(8.0, 1.0 / (0.5 * (1.0 / 8.5 + 1.0 / 45.0))) == pytest.approx(0.5 * (0.325 + 0.225))
    assert model.fraction(4.0) == pytest.approx(0.3)  # no background: infinite contrast
    with pytest.raises(ValueError, match="image contrast above 1"):
        model.fraction(4.0, 0.8)
    back = ThresholdModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back == model
    assert record_problems_of(model) == []
    assert "contrast 30.0" in model.describe()
    # Sets of different volumes cannot share volume knots: the least-squares form is fitted instead.
    assert threshold_calibration.fit_threshold_model(low + high[:2] + [insert(20.0, 32.0, 0.15, 60.0)]).form \
        == "inverse-volume"


def test_the_lowest_ratio_spheres_contrast_and_the_sphere_of_a_given_contrast():
    """The contrast check of the adaptive threshold reads the row of the lowest concentration ratio:
    its image contrast at a volume (ln V interpolation, held at the end inserts) and, inverted on the
    part where the contrast rises with the volume, the sphere volume that images at a given contrast."""
    volumes = (2.0, 4.0, 16.0, 64.0)

    def insert(volume, ratio, fraction, image_contrast):
        return threshold_calibration.InsertThreshold(f"{volume:g}", volume, ratio, fraction,
                                                     maximum=10.0 * image_contrast, background=10.0)

    # The 8:1 row peaks at 16 mL and falls beyond, as OSEM's edge overshoot gives the realistic spheres.
    low = [insert(v, 8.0, f, c) for v, f, c in zip(volumes, (0.6, 0.45, 0.2, 0.25), (3.0, 5.0, 12.0, 10.0))]
    high = [insert(v, 32.0, f, c) for v, f, c in zip(volumes, (0.55, 0.3, 0.15, 0.2), (8.0, 30.0, 60.0, 50.0))]
    model = threshold_calibration.fit_threshold_model(high + low)
    assert model.lowest_row_contrast(8.0) == pytest.approx(8.5)
    assert model.lowest_row_contrast(1.0) == pytest.approx(3.0) and model.lowest_row_contrast(100.0) == 10.0
    assert model.sphere_volume_at_lowest_row(4.0) == pytest.approx(2.0 * 2.0 ** 0.5)
    assert model.sphere_volume_at_lowest_row(8.5) == pytest.approx(8.0)
    assert model.sphere_volume_at_lowest_row(2.0) == pytest.approx(2.0)  # held at the smallest insert
    assert model.sphere_volume_at_lowest_row(11.0) == pytest.approx(4.0 * 4.0 ** (6.0 / 7.0))
    assert model.sphere_volume_at_lowest_row(20.0) == pytest.approx(16.0)  # the falling part is not used
    one_ratio = threshold_calibration.fit_threshold_model(low)
    assert one_ratio.lowest_row_contrast(8.0) is None and one_ratio.sphere_volume_at_lowest_row(5.0) is None


def record_problems_of(model):
    from MIBGCalibrationLib.record import record_problems

    return [p for p in record_problems({"threshold_model": model.to_dict()}) if "threshold_model" in p]


def test_cylinder_found_on_ct_read_from_dicom(tmp_path):
    import datetime

    from MIBGCalibrationLib import dicom_files
    from MIBGDosimetryLib.dicomio import common, ct

    centre = np.array([10.0, -5.0, 7.5])  # symmetric on the CT grid: its voxel centroid is exact
    ct_grid = grid((48, 64, 64), (5.0, 5.0, 5.0))
    water = voi.cylinder_mask(ct_grid, centre, 100.0, 90.0)
    ct_volume = ct_grid.with_array(np.where(water, 0.0, -1000.0), units="HU")
    study = common.StudyInfo("Phantom^CT", "CT001", datetime.datetime(2026, 3, 1, 9, 0))
    ct.write_ct_series(ct_volume, str(tmp_path / "ct"), study, datetime.datetime(2026, 3, 1, 9, 0))
    read = dicom_files.read_ct_series(tmp_path / "ct")
    assert read.same_grid(ct_volume)
    np.testing.assert_array_equal(read.array, ct_volume.array)
    # SPECT on another grid, its cylinder spread by blur: the CT gives the centre.
    spect = grid((48, 56, 56), (4.0, 4.0, 4.0))
    counts = voi.cylinder_mask(spect, centre, 100.0, 90.0) * 500.0
    from scipy import ndimage

    spect = spect.with_array(ndimage.gaussian_filter(counts, 2.0))
    found = calibration_factor.find_cylinder(spect, np.pi * 10.0 ** 2 * 18.0, ct=read)
    assert found.source == "CT"
    np.testing.assert_allclose(found.centre_ras_mm, centre, atol=1.0)
    assert found.measured_diameter_mm == pytest.approx(200.0, rel=0.03)


def test_decay_correction_to_the_scan():
    import datetime

    from MIBGCalibrationLib import decay
    from MIBGDosimetryLib.physics import i131

    reference = datetime.datetime(2026, 3, 1, 8, 0)
    one_half_life = reference + datetime.timedelta(hours=i131.HALF_LIFE_H)
    assert decay.activity_at_scan_MBq(100.0, reference, one_half_life) == pytest.approx(50.0, rel=1e-9)
    # Mean over a 24 h acquisition starting at the reference: integral of exp(-lambda t) / T.
    lam = np.log(2) / (8.0252 * 24.0)
    mean = 100.0 * (1 - np.exp(-lam * 24.0)) / (lam * 24.0)
    assert decay.activity_at_scan_MBq(100.0, reference, reference, duration_s=24 * 3600.0) == pytest.approx(mean)
    with pytest.raises(ValueError, match="ISO date"):
        decay.parse_datetime("yesterday", "reference time")
