"""TEW scatter correction (EANM eq. 8) of real NM DICOM projections and Chang attenuation correction.

Truths: projections built from a known primary and a known scatter component that is linear in
energy across the three windows (the assumption under which eq. 8 is exact); a uniform cylinder,
for which the Chang factor has a closed form along each direction.
"""

import datetime
import subprocess

import numpy as np
import pydicom
import pytest

from MIBGCalibrationLib import chang, tew, tew_dicom
from MIBGDosimetryLib.dicomio import common, nm
from MIBGDosimetryLib.volume import ImageVolume

SCAN = datetime.datetime(2026, 3, 2, 10, 0, 0)


def acquisition(windows, views):
    return nm.NMAcquisition(acquisition_datetime=SCAN, frame_duration_ms=20000.0,
                            administration_datetime=SCAN - datetime.timedelta(hours=24),
                            administered_activity_Bq=400e6, half_life_s=8.0252 * 86400.0,
                            energy_windows=windows, counts_accumulated=123456, number_of_views=views)


def tew_projections(seed, peak_fraction=0.20, scatter_fraction=0.06):
    """Counts in (lower, peak, upper) windows: primary in the peak only, scatter density linear in energy."""
    rng = np.random.default_rng(seed)
    e = tew.PHOTOPEAK_KEV
    half_peak, scatter_width = 0.5 * peak_fraction * e, scatter_fraction * e
    peak = nm.EnergyWindow("PEAK", e - half_peak, e + half_peak)
    lower = nm.EnergyWindow("LOWER", peak.lower_keV - scatter_width, peak.lower_keV)
    upper = nm.EnergyWindow("UPPER", peak.upper_keV, peak.upper_keV + scatter_width)
    views, rows, columns = 8, 16, 16
    y, x = np.mgrid[0:rows, 0:columns]
    primary = 400.0 * np.exp(-((x - 8) ** 2 + (y - 7) ** 2) / 18.0) * np.ones((views, 1, 1))
    # Scatter density per keV falls linearly with energy; each window's counts are its integral.
    slope_per_keV = 0.004
    base = 3.0 + rng.random((views, rows, columns))

    def scatter_in(window):
        centre = 0.5 * (window.lower_keV + window.upper_keV)
        return base * (1.0 - slope_per_keV * (centre - e)) * window.width_keV

    true_scatter = scatter_in(peak)
    counts = np.stack([scatter_in(lower), primary + true_scatter, scatter_in(upper)])
    return [lower, peak, upper], counts, primary, true_scatter


def write_projections(path, windows, counts):
    study = common.StudyInfo("Phantom^TEW", "TEW001", SCAN)
    nm.write_nm_projections(counts, (4.0, 4.0), str(path), study, acquisition(windows, counts.shape[1]))


def test_tew_arrays_recover_known_scatter():
    windows, counts, primary, true_scatter = tew_projections(seed=1)
    lower, peak, upper = windows
    corrected, scatter, clipped = tew.tew_correct(counts[1], counts[0], counts[2], peak.width_keV,
                                                  lower.width_keV, upper.width_keV)
    np.testing.assert_allclose(scatter, true_scatter, rtol=1e-9)
    np.testing.assert_allclose(corrected, primary, atol=1e-9)
    assert clipped == 0
    _, _, clipped = tew.tew_correct(np.zeros((2, 2)), np.ones((2, 2)), np.ones((2, 2)), 60.0, 20.0, 20.0)
    assert clipped == 4


def test_tew_dicom_round_trip_is_valid_and_recovers_scatter(tmp_path):
    windows, counts, primary, true_scatter = tew_projections(seed=2)
    source = tmp_path / "projections.dcm"
    write_projections(source, windows, np.round(counts))
    before = source.read_bytes()
    output = tmp_path / "out" / "tew.dcm"
    result = tew_dicom.correct_file(str(source), str(output))
    assert source.read_bytes() == before
    assert result.warnings == []
    # The rounded projections differ from the analytic ones by at most 0.5 count per pixel and window.
    assert result.scatter_counts.sum() == pytest.approx(true_scatter.sum(), rel=0.01)
    derived = pydicom.dcmread(output)
    original = pydicom.dcmread(source)
    assert derived.SOPInstanceUID != original.SOPInstanceUID
    assert derived.SeriesInstanceUID != original.SeriesInstanceUID
    assert derived.StudyInstanceUID == original.StudyInstanceUID
    assert list(derived.ImageType)[:2] == ["DERIVED", "PRIMARY"]
    assert derived.NumberOfFrames == counts.shape[1] and derived.NumberOfEnergyWindows == 1
    assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    stored = derived.pixel_array * float(derived.get("RescaleSlope", 1.0))
    np.testing.assert_allclose(stored, result.corrected_counts, atol=float(derived.get("RescaleSlope", 1.0)))
    np.testing.assert_allclose(stored.sum(), primary.sum(), rtol=0.01)
    check = subprocess.run(["dciodvfy", str(output)], capture_output=True, text=True)
    errors = [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


def test_tew_warns_about_non_recommended_windows_and_refuses_missing_ones(tmp_path):
    windows, counts, _, _ = tew_projections(seed=3, peak_fraction=0.30, scatter_fraction=0.10)
    source = tmp_path / "wide.dcm"
    write_projections(source, windows, np.round(counts))
    result = tew_dicom.correct_file(str(source), str(tmp_path / "wide-tew.dcm"))
    assert any("photopeak window is 30.0 %" in w for w in result.warnings)
    assert any("lower scatter window is 10.0 %" in w for w in result.warnings)
    only_peak = tmp_path / "peak.dcm"
    write_projections(only_peak, windows[1:2], np.round(counts[1:2]))
    with pytest.raises(ValueError, match="scatter window below and one above"):
        tew_dicom.correct_file(str(only_peak), str(tmp_path / "never.dcm"))
    assert not (tmp_path / "never.dcm").exists()


def chang_factor_analytic(point_mm, radius_mm, mu_per_mm, angles=720):
    """1 / mean over directions of exp(-mu L), L the distance from the point to a circle of radius R."""
    theta = np.arange(angles) * 2 * np.pi / angles
    d = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    p = np.asarray(point_mm, dtype=float)
    pd = d @ p
    path = -pd + np.sqrt(radius_mm ** 2 - p @ p + pd ** 2)
    return 1.0 / np.mean(np.exp(-mu_per_mm * path))


def cylinder_volume(shape=(4, 96, 96), spacing=2.0):
    origin = (-0.5 * (shape[2] - 1) * spacing, -0.5 * (shape[1] - 1) * spacing, 0.0)
    return ImageVolume(np.zeros(shape), (spacing, spacing, spacing), origin)


def test_chang_factors_match_closed_form_in_a_cylinder():
    image = cylinder_volume()
    radius = 80.0
    k, j, i = np.indices(image.array.shape)
    x, y = image.origin_ras_mm[0] + 2.0 * i, image.origin_ras_mm[1] + 2.0 * j
    mask = x ** 2 + y ** 2 <= radius ** 2
    factors = chang.chang_correction_factors(mask, image.spacing_mm, mu_per_cm=0.11, angles=64)
    for px, py in [(0.0, 0.0), (40.0, 0.0), (-30.0, 50.0), (0.0, -70.0)]:
        ii, jj = int(round((px - image.origin_ras_mm[0]) / 2.0)), int(round((py - image.origin_ras_mm[1]) / 2.0))
        point = (image.origin_ras_mm[0] + 2.0 * ii, image.origin_ras_mm[1] + 2.0 * jj)
        truth = chang_factor_analytic(point, radius, 0.011)
        assert factors[1, jj, ii] == pytest.approx(truth, rel=0.005), (point, factors[1, jj, ii], truth)
    assert factors[1, 0, 0] == 1.0  # outside the body
    assert factors[1, 48, 48] == pytest.approx(np.exp(0.011 * radius), rel=0.005)


@pytest.mark.parametrize("blur_sigma_px", [3.0, 8.0])
def test_chang_correction_with_outline_from_scatter_image(blur_sigma_px):
    from scipy import ndimage

    image = cylinder_volume()
    radius = 80.0
    k, j, i = np.indices(image.array.shape)
    x, y = image.origin_ras_mm[0] + 2.0 * i, image.origin_ras_mm[1] + 2.0 * j
    inside = x ** 2 + y ** 2 <= radius ** 2
    truth = np.where(inside, 50.0, 0.0)
    analytic = chang.chang_correction_factors(inside, image.spacing_mm, angles=64)
    nac = image.with_array(truth / analytic)
    # The scatter image: the body blurred in-plane (sigma 6 or 16 mm, as wide as scatter images are).
    scatter = image.with_array(ndimage.gaussian_filter(np.where(inside, 10.0, 0.0), sigma=(0, blur_sigma_px,
                                                                                           blur_sigma_px)))
    result = chang.chang_correct(nac, scatter_image=scatter)
    assert result.outline_source == "lower scatter window"
    assert result.body_mask.sum() == pytest.approx(inside.sum(), rel=0.01)  # half maximum: -3 % at 16 mm
    uniform = (x ** 2 + y ** 2 <= (0.7 * radius) ** 2)
    assert result.corrected[uniform].mean() == pytest.approx(50.0, rel=0.01)
    assert not np.shares_memory(result.corrected, nac.array)
    with pytest.raises(ValueError, match="needs a body outline"):
        chang.chang_correct(nac)
    with pytest.raises(ValueError, match="empty"):
        chang.chang_correction_factors(np.zeros((2, 8, 8), bool), (2.0, 2.0, 2.0))


def test_chang_outline_from_ct_on_another_grid():
    image = cylinder_volume()
    radius = 80.0
    ct_grid = ImageVolume(np.zeros((6, 70, 70)), (3.0, 3.0, 2.0), (-103.5, -103.5, -2.0))
    k, j, i = np.indices(ct_grid.array.shape)
    x, y = ct_grid.origin_ras_mm[0] + 3.0 * i, ct_grid.origin_ras_mm[1] + 3.0 * j
    ct = ct_grid.with_array(np.where(x ** 2 + y ** 2 <= radius ** 2, 40.0, -1000.0), units="HU")
    result = chang.chang_correct(image.with_array(np.ones(image.array.shape)), ct=ct)
    assert result.outline_source == "CT"
    k, j, i = np.indices(image.array.shape)
    inside = (image.origin_ras_mm[0] + 2.0 * i) ** 2 + (image.origin_ras_mm[1] + 2.0 * j) ** 2 <= radius ** 2
    assert abs(int(result.body_mask.sum()) - int(inside.sum())) < 0.03 * inside.sum()
    assert result.correction_factor[1, 48, 48] == pytest.approx(np.exp(0.011 * radius), rel=0.02)


def _numeric_sphere_recovery(volume_ml, fwhm_mm, step_mm):
    """Recovery of a sphere voxelised at ``step_mm`` and blurred numerically (scipy's Gaussian filter)."""
    from scipy import ndimage

    radius = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    n = int(2.0 * (radius + 2.0 * fwhm_mm) / step_mm) | 1
    offsets = (np.indices((n, n, n)) - (n - 1) / 2.0) * step_mm
    sphere = (np.sqrt((offsets ** 2).sum(axis=0)) <= radius).astype(float)
    blurred = ndimage.gaussian_filter(sphere, fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / step_mm)
    return float(blurred[sphere > 0].mean())


@pytest.mark.parametrize("volume_ml,fwhm_mm", [(1.0, 12.0), (8.0, 15.0), (60.0, 20.0)])
def test_blurred_sphere_recovery_matches_a_numeric_convolution(volume_ml, fwhm_mm):
    from MIBGCalibrationLib.resolution import blurred_sphere_recovery

    expected = _numeric_sphere_recovery(volume_ml, fwhm_mm, 0.5)
    assert blurred_sphere_recovery(volume_ml, fwhm_mm) == pytest.approx(expected, rel=0.01)


def test_fwhm_from_recoveries_recovers_the_blur_of_numerically_blurred_spheres():
    """Recoveries of five spheres (1.8-113 mL) blurred numerically at 14 mm give back 14 mm."""
    from MIBGCalibrationLib.resolution import fwhm_from_recoveries

    volumes = [1.77, 4.19, 14.1, 33.5, 113.1]
    recoveries = [_numeric_sphere_recovery(v, 14.0, 1.0) for v in volumes]
    fwhm, misfit = fwhm_from_recoveries(volumes, recoveries)
    assert fwhm == pytest.approx(14.0, abs=0.3)
    assert misfit < 0.02
    with pytest.raises(ValueError, match="three spheres"):
        fwhm_from_recoveries(volumes[:2], recoveries[:2])


def _numeric_recovery_in_background(volume_ml, fwhm_mm, background_ratio, step_mm):
    """Measured recovery of a sphere in a uniform warm background (sphere 1, background ``background_ratio``)
    blurred numerically: the mean of the blurred image over the sphere."""
    from scipy import ndimage

    radius = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    n = int(2.0 * (radius + 3.0 * fwhm_mm) / step_mm) | 1
    offsets = (np.indices((n, n, n)) - (n - 1) / 2.0) * step_mm
    sphere = np.sqrt((offsets ** 2).sum(axis=0)) <= radius
    image = np.where(sphere, 1.0, background_ratio)
    blurred = ndimage.gaussian_filter(image, fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / step_mm, mode="nearest")
    return float(blurred[sphere].mean())


def test_fwhm_from_recoveries_in_a_warm_background_counts_the_background_spill_in():
    """Spheres at 8 : 1 over a uniform background blurred numerically at 17 mm: with the background
    ratio the fit gives back 17 mm; without it the spill-in makes the spheres look several mm sharper."""
    from MIBGCalibrationLib.resolution import fwhm_from_recoveries

    volumes = [1.77, 4.19, 14.1, 33.5, 113.1]
    recoveries = [_numeric_recovery_in_background(v, 17.0, 1.0 / 8.0, 1.0) for v in volumes]
    fwhm, misfit = fwhm_from_recoveries(volumes, recoveries, background_ratio=1.0 / 8.0)
    assert fwhm == pytest.approx(17.0, abs=0.3)
    assert misfit < 0.02
    ignored, _ = fwhm_from_recoveries(volumes, recoveries)
    assert ignored < 15.5
    with pytest.raises(ValueError, match="background-to-sphere"):
        fwhm_from_recoveries(volumes, recoveries, background_ratio=1.0)
