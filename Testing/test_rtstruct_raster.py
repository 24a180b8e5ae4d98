"""RTSTRUCT organs carried onto a SPECT grid coarser than the contour planes keep their volume.

The truth is analytic: ellipsoids and spheres contoured at 1.25, 2.5, 3 and 5 mm (the slice
spacings of clinical CTs), read onto SPECT grids of 4.42 and 4.8 mm voxels (shifted, and one tilted
about the patient axis), against (4/3) pi a b c.
"""

import numpy as np
import pytest

from test_dicom_vois import _rtstruct
from MIBGDosimetryLib.segmentation.dicom_vois import read_rtstruct, read_rtstruct_occupancy
from MIBGDosimetryLib.volume import LPS_TO_RAS, ImageVolume

CENTRE_LPS = np.array([12.3, -20.7, 31.1])


def _ellipse_lps(centre, a, b, z, points=240):
    angles = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    return np.column_stack([centre[0] + a * np.cos(angles), centre[1] + b * np.sin(angles), np.full(points, z)])


def _ellipsoid_contours(semi_axes_mm, plane_spacing_mm, first_offset_mm=0.37):
    """Axial contours of an ellipsoid on planes ``plane_spacing_mm`` apart (as drawn on a CT)."""
    a, b, c = semi_axes_mm
    z = np.arange(-c + first_offset_mm, c, plane_spacing_mm)
    contours = []
    for dz in z:
        scale = np.sqrt(1.0 - (dz / c) ** 2)
        if scale * min(a, b) > 0.5:
            contours.append(_ellipse_lps(CENTRE_LPS, a * scale, b * scale, CENTRE_LPS[2] + dz))
    return contours


def _spect_grid(spacing_mm, tilt_degrees=0.0, shape=(48, 64, 64)):
    """A SPECT grid (axial, optionally rotated about the patient axis) around the organ, offset by a
    fraction of a voxel."""
    angle = np.radians(tilt_degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1.0]])
    directions_lps = rotation
    centre_index = (np.array(shape[::-1]) - 1) / 2.0 + 0.31
    origin_lps = CENTRE_LPS - directions_lps @ (centre_index * spacing_mm)
    return ImageVolume(np.zeros(shape), (spacing_mm,) * 3, tuple(LPS_TO_RAS @ origin_lps), LPS_TO_RAS @ directions_lps)


@pytest.mark.parametrize("plane_spacing_mm", [1.25, 2.5, 3.0, 5.0])
@pytest.mark.parametrize("spect_spacing_mm", [4.42, 4.8])
def test_liver_sized_ellipsoid_keeps_its_volume_on_the_spect_grid(tmp_path, plane_spacing_mm, spect_spacing_mm):
    semi_axes = (62.0, 48.0, 30.0)  # 374 mL, an adult liver's volume
    truth_ml = 4.0 / 3.0 * np.pi * np.prod(semi_axes) / 1000.0
    path = _rtstruct(tmp_path, {"liver": _ellipsoid_contours(semi_axes, plane_spacing_mm)})
    grid = _spect_grid(spect_spacing_mm)
    mask = read_rtstruct(path, grid)["liver"]
    assert mask.sum() * grid.voxel_volume_ml == pytest.approx(truth_ml, rel=0.03)
    occupancy = read_rtstruct_occupancy(path, grid)["liver"]
    assert occupancy.sum() * grid.voxel_volume_ml == pytest.approx(truth_ml, rel=0.02)


@pytest.mark.parametrize("plane_spacing_mm", [1.25, 2.5, 3.0, 5.0])
def test_small_sphere_on_a_tilted_spect_grid_keeps_volume_and_place(tmp_path, plane_spacing_mm):
    radius = 22.0  # 44.6 mL, e.g. a kidney-sized organ
    truth_ml = 4.0 / 3.0 * np.pi * radius ** 3 / 1000.0
    path = _rtstruct(tmp_path, {"sphere": _ellipsoid_contours((radius,) * 3, plane_spacing_mm)})
    grid = _spect_grid(4.42, tilt_degrees=17.0)
    mask = read_rtstruct(path, grid)["sphere"]
    assert mask.sum() * grid.voxel_volume_ml == pytest.approx(truth_ml, rel=0.03)
    k, j, i = np.nonzero(mask)
    centre_lps = grid.ras_of_ijk(np.column_stack([i, j, k]).astype(float)).mean(0) @ LPS_TO_RAS.T
    assert np.linalg.norm(centre_lps - CENTRE_LPS) < 1.0


def test_gaps_between_contours_stay_empty_and_holes_are_cut_per_plane(tmp_path):
    """Two separate discs of one ROI 30 mm apart (contours every 2.5 mm) do not bridge; a ring
    (outer and inner contour on each plane) keeps its hole, on a coarser SPECT grid."""
    top = [_ellipse_lps(CENTRE_LPS, 20.0, 20.0, CENTRE_LPS[2] + dz) for dz in np.arange(0.0, 20.0, 2.5)]
    bottom = [_ellipse_lps(CENTRE_LPS, 20.0, 20.0, CENTRE_LPS[2] + dz) for dz in np.arange(50.0, 70.0, 2.5)]
    rings = []
    for dz in np.arange(-60.0, -30.0, 2.5):
        rings += [_ellipse_lps(CENTRE_LPS, 40.0, 40.0, CENTRE_LPS[2] + dz),
                  _ellipse_lps(CENTRE_LPS, 20.0, 20.0, CENTRE_LPS[2] + dz)]
    path = _rtstruct(tmp_path, {"two discs": top + bottom, "ring": rings})
    grid = _spect_grid(4.8)
    occupancy = read_rtstruct_occupancy(path, grid)
    discs_ml = 2 * np.pi * 20.0 ** 2 * 20.0 / 1000.0
    ring_ml = np.pi * (40.0 ** 2 - 20.0 ** 2) * 30.0 / 1000.0
    assert occupancy["two discs"].sum() * grid.voxel_volume_ml == pytest.approx(discs_ml, rel=0.03)
    assert occupancy["ring"].sum() * grid.voxel_volume_ml == pytest.approx(ring_ml, rel=0.03)
    centre_ijk = np.round(grid.ijk_of_ras(LPS_TO_RAS @ (CENTRE_LPS + [0.0, 0.0, 35.0]))).astype(int)
    assert occupancy["two discs"][centre_ijk[2], centre_ijk[1], centre_ijk[0]] == 0.0
    hole_ijk = np.round(grid.ijk_of_ras(LPS_TO_RAS @ (CENTRE_LPS + [0.0, 0.0, -45.0]))).astype(int)
    assert occupancy["ring"][hole_ijk[2], hole_ijk[1], hole_ijk[0]] == 0.0


def test_contours_of_one_roi_on_crossing_planes_are_refused(tmp_path):
    axial = _ellipse_lps(CENTRE_LPS, 20.0, 20.0, CENTRE_LPS[2])
    sagittal = axial[:, [2, 1, 0]]
    with pytest.raises(ValueError, match="not parallel"):
        read_rtstruct(_rtstruct(tmp_path, {"mixed": [axial, sagittal]}), _spect_grid(4.8))
