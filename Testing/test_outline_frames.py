"""Organ outlines drawn on another time point's scan are carried to the reference through that time
point's registration; outlines of a frame of reference no time point has are refused by file name.

Truth: a sphere outlined (RTSTRUCT, 2.5 mm planes) at a known place in the frame of the second time
point, whose registration to the reference is a known 34 mm translation: on the reference grid the
sphere must sit 34 mm away from where its coordinates read in the reference frame.
"""

import datetime

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from test_dicom_vois import _rtstruct
from test_rtstruct_raster import _ellipsoid_contours, CENTRE_LPS
from MIBGDosimetryLib.registration.result import RegistrationResult
from MIBGDosimetryLib.study.model import Study, TimePoint
from MIBGDosimetryLib.volume import LPS_TO_RAS, ImageVolume
from MIBGDosimetryLib.workflow.outline_frames import organ_vois_by_frame

SHIFT_RAS_MM = np.array([0.0, 34.0, 0.0])  # reference point x lies at x + SHIFT in the second scan's frame
RADIUS_MM = 20.0


def _grid(frame_uid, spacing=4.8, shape=(40, 40, 40)):
    origin_lps = CENTRE_LPS - (np.array(shape[::-1]) - 1) / 2.0 * spacing + np.array([0.0, -20.0, 0.0])
    return ImageVolume(np.zeros(shape), (spacing,) * 3, tuple(LPS_TO_RAS @ origin_lps), LPS_TO_RAS.copy(), "counts",
                       {"frame_of_reference_uid": frame_uid})


def _timepoint(label, hours, frame_uid):
    return TimePoint(label, hours, datetime.datetime(2026, 3, 2, 10) + datetime.timedelta(hours=hours), 1800.0,
                     _grid(frame_uid), None, None, {"frame_of_reference_uid": frame_uid})


def _outline(tmp_path, frame_uid):
    path = _rtstruct(tmp_path, {"liver": _ellipsoid_contours((RADIUS_MM,) * 3, 2.5)})
    ds = pydicom.dcmread(path)
    ds.FrameOfReferenceUID = frame_uid
    for roi in ds.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = frame_uid
    ds.save_as(path)
    return str(path)


def _centre_ras(mask, grid):
    k, j, i = np.nonzero(mask)
    return grid.ras_of_ijk(np.column_stack([i, j, k]).astype(float)).mean(0)


def _study(tmp_path, outline_frame):
    frames = [generate_uid() for _ in range(3)]
    timepoints = [_timepoint(f"tp{n + 1}", h, f) for n, (h, f) in enumerate(zip((4.0, 24.0, 72.0), frames))]
    study = Study(str(tmp_path), timepoints, segmentation_files=[_outline(tmp_path, outline_frame(frames))])
    translation = np.eye(4)
    translation[:3, 3] = SHIFT_RAS_MM
    registrations = [RegistrationResult(np.eye(4), kind="identity"), RegistrationResult(translation),
                     RegistrationResult(np.eye(4))]
    return study, registrations


def test_outline_of_the_reference_frame_is_read_in_place(tmp_path):
    study, registrations = _study(tmp_path, lambda frames: frames[0])
    reference = study.timepoints[0].spect
    (voi,) = organ_vois_by_frame(study, registrations, reference, 0)
    assert np.linalg.norm(_centre_ras(voi.mask, reference) - LPS_TO_RAS @ CENTRE_LPS) < 1.0


def test_outline_drawn_on_a_later_scan_follows_its_registration(tmp_path):
    study, registrations = _study(tmp_path, lambda frames: frames[1])
    reference = study.timepoints[0].spect
    (voi,) = organ_vois_by_frame(study, registrations, reference, 0)
    expected = LPS_TO_RAS @ CENTRE_LPS - SHIFT_RAS_MM
    # Rasterised on tp2's 4.8 mm grid and resampled once more: within half a voxel, not 34 mm off.
    assert np.linalg.norm(_centre_ras(voi.mask, reference) - expected) < 2.4
    assert voi.mask.sum() * reference.voxel_volume_ml == pytest.approx(4 / 3 * np.pi * RADIUS_MM ** 3 / 1000, rel=0.05)
    assert any("drawn on time point 'tp2'" in w for w in voi.warnings)


def test_outline_of_a_foreign_frame_is_refused_by_name(tmp_path):
    study, registrations = _study(tmp_path, lambda frames: generate_uid())
    with pytest.raises(ValueError, match=r"The RTSTRUCT 'rtstruct.dcm' is in the frame of reference .* which is the "
                                         r"frame of no time point"):
        organ_vois_by_frame(study, registrations, study.timepoints[0].spect, 0)
