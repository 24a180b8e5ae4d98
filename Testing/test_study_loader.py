"""Reading sequential SPECT/CT studies from DICOM: geometry and values exact, timing, pairing, messages.

The truth is what the fixtures in ``study_fixtures`` wrote: stored arrays, slice positions, slopes,
times and durations. Geometry is checked point by point against positions computed from the DICOM
definitions (ImagePositionPatient + i x column spacing x row direction + ...), independently of the
loader's matrices.
"""

import datetime
import json
import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

import study_fixtures as fx
from MIBGDosimetryLib import mrml
from MIBGDosimetryLib.cli import main as cli_main
from MIBGDosimetryLib.study import StudyDataError, load_study
from MIBGDosimetryLib.study.mrml_loader import load_study_into_scene

ADMINISTRATION = datetime.datetime(2026, 3, 2, 10, 30)
FLIP = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS, written out here rather than taken from the library


def dicom_point_lps(origin_lps, orientation, spacing_ijk, ijk):
    """LPS position of voxel (i, j, k) by the DICOM definitions: i along the row, j down the column, k along row x column."""
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, column)
    i, j, k = ijk
    return (np.asarray(origin_lps, float) + i * spacing_ijk[0] * row + j * spacing_ijk[1] * column
            + k * spacing_ijk[2] * normal)


def assert_geometry(volume, origin_lps, orientation, spacing_ijk):
    shape = volume.array.shape
    corners = [(0, 0, 0), (shape[2] - 1, 0, 0), (0, shape[1] - 1, 0), (0, 0, shape[0] - 1),
               (shape[2] - 1, shape[1] - 1, shape[0] - 1), (2, 1, 1)]
    for ijk in corners:
        expected_ras = FLIP * dicom_point_lps(origin_lps, orientation, spacing_ijk, ijk)
        np.testing.assert_allclose(volume.ras_of_ijk(ijk), expected_ras, atol=1e-6)
    np.testing.assert_allclose(volume.spacing_mm, spacing_ijk, atol=1e-6)  # DS strings hold 10 digits


@pytest.fixture
def study_dir(tmp_path):
    root = tmp_path / "study"
    written = fx.write_study(str(root))
    return root, written


def test_values_geometry_and_times_are_exact(study_dir):
    root, written = study_dir
    study = load_study(str(root))
    assert [tp.label for tp in study.timepoints] == ["tp1", "tp2", "tp3"]
    assert study.warnings == []
    assert study.administration_datetime == ADMINISTRATION
    assert study.administered_activity_MBq == pytest.approx(3700.0, rel=1e-12)
    for tp, w in zip(study.timepoints, written):
        assert tp.hours_after_administration == pytest.approx(w.hours, abs=1e-9)
        assert tp.duration_s == pytest.approx(w.duration_s)  # 60 views x 20 s
        assert tp.observed_count_rate_cps == pytest.approx(w.counts_accumulated / w.duration_s, rel=1e-12)
        assert tp.spect.units == "counts" and tp.ct.units == "HU"
        np.testing.assert_array_equal(tp.spect.array, w.spect_stored)
        np.testing.assert_array_equal(tp.ct.array, w.ct_hu)
        assert_geometry(tp.spect, w.spect_origin_lps, (1, 0, 0, 0, 1, 0), w.spect_spacing_ijk)
        assert_geometry(tp.ct, w.ct_origin_lps, (1, 0, 0, 0, 1, 0), w.ct_spacing_ijk)
        assert tp.metadata["frame_of_reference_uid"] == w.visit.frame_of_reference_uid
        assert tp.ct.metadata["frame_of_reference_uid"] == w.visit.frame_of_reference_uid
        assert tp.metadata["collimator"] == {"name": "HEGP", "type": "PARA"}
        assert tp.metadata["energy_windows"] == [{"name": "PEAK", "lower_keV": 327.6, "upper_keV": 400.4}]
        assert tp.metadata["camera"]["model"] == "Test Camera"
        assert tp.metadata["radionuclide"] == "^131^Iodine"


def test_oblique_orientation_and_shuffled_layout(tmp_path):
    theta = np.deg2rad(20.0)
    # Rows turned 20 degrees about the patient's z axis, columns tilted 10 degrees out of the axial plane.
    row = np.array([np.cos(theta), np.sin(theta), 0.0])
    column = np.array([-np.sin(theta) * np.cos(0.17), np.cos(theta) * np.cos(0.17), np.sin(0.17)])
    orientation = (*row, *column)
    written = fx.write_study(str(tmp_path / "s"), hours=(2.0, 50.0), layout="deep/visit-{n}/x", orientation=orientation,
                             seed=3)
    study = load_study(str(tmp_path / "s"))
    for tp, w in zip(study.timepoints, written):
        np.testing.assert_array_equal(tp.spect.array, w.spect_stored)
        np.testing.assert_array_equal(tp.ct.array, w.ct_hu)
        assert_geometry(tp.spect, w.spect_origin_lps, orientation, w.spect_spacing_ijk)
        assert_geometry(tp.ct, w.ct_origin_lps, orientation, w.ct_spacing_ijk)


def test_ct_slices_are_sorted_along_the_normal_not_by_file_name(tmp_path):
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=3))
    stored = np.arange(4 * 3 * 2, dtype=np.uint16).reshape(4, 3, 2)
    positions = [np.array([0.0, 0.0, z]) for z in (10.0, 0.0, 30.0, 20.0)]  # written out of order
    fx.write_ct(str(tmp_path / "ct"), visit, stored, (1.0, 1.0), positions)
    fx.write_nm_tomo(str(tmp_path / "spect.dcm"), visit, np.ones((2, 2, 2), np.uint16), (4.0, 4.0), 4.0,
                     (0, 0, 0), administration=ADMINISTRATION)
    ct = load_study(str(tmp_path)).timepoints[0].ct
    np.testing.assert_array_equal(ct.array, stored[[1, 0, 3, 2]].astype(float) - 1024)
    assert ct.spacing_mm[2] == 10.0
    np.testing.assert_allclose(ct.origin_ras_mm, [0, 0, 0])


def test_uneven_ct_slices_are_resampled_and_said(tmp_path):
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=3))
    stored = np.array([np.full((2, 2), v) for v in (100, 200, 400, 500)], dtype=np.uint16)
    positions = [np.array([0.0, 0.0, z]) for z in (0.0, 5.0, 15.0, 20.0)]  # the slice at 10 mm is missing
    fx.write_ct(str(tmp_path / "ct"), visit, stored, (1.0, 1.0), positions)
    fx.write_nm_tomo(str(tmp_path / "spect.dcm"), visit, np.ones((2, 2, 2), np.uint16), (4.0, 4.0), 4.0,
                     (0, 0, 0), administration=ADMINISTRATION)
    study = load_study(str(tmp_path))
    ct = study.timepoints[0].ct
    assert ct.spacing_mm[2] == 5.0
    # Linear interpolation at 10 mm halfway between 200 and 400 (stored) -> 300 - 1024 HU.
    np.testing.assert_array_equal(ct.array[:, 0, 0], np.array([100, 200, 300, 400, 500]) - 1024.0)
    message = " ".join(study.warnings)
    assert "uneven slice spacing" in message and "5 to 10 mm" in message and "resampled" in message
    assert "ct/slice_" in message  # names the files on either side of the gap


def test_nm_negative_spacing_and_rescale_slope_are_honoured(tmp_path):
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=5))
    stored = np.arange(3 * 2 * 2, dtype=np.uint16).reshape(3, 2, 2)
    fx.write_nm_tomo(str(tmp_path / "spect.dcm"), visit, stored, (4.0, 4.0), -3.0, (1.0, 2.0, 3.0),
                     administration=ADMINISTRATION, rescale_slope=0.25)
    study = load_study(str(tmp_path))
    spect = study.timepoints[0].spect
    np.testing.assert_array_equal(spect.array, stored * 0.25)
    # Frame k lies 3 mm against the row x column normal (+z in LPS) per frame.
    np.testing.assert_allclose(spect.ras_of_ijk((0, 0, 2)), FLIP * np.array([1.0, 2.0, 3.0 - 6.0]))
    assert "SpacingBetweenSlices is negative" in " ".join(study.warnings)


def test_missing_administration_time_is_explained_and_can_be_overridden(tmp_path):
    omit = {"omit_radiopharmaceutical": ("RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime")}
    written = fx.write_study(str(tmp_path), hours=(4.0, 24.0, 70.0), spect_kwargs={i: omit for i in range(3)})
    with pytest.raises(StudyDataError) as caught:
        load_study(str(tmp_path))
    message = str(caught.value)
    assert "RadiopharmaceuticalStartDateTime is missing" in message
    assert os.path.join("tp2", "spect.dcm") in message
    assert pydicom.dcmread(written[1].spect_path).SeriesInstanceUID in message
    assert '"administration_datetime"' in message
    (tmp_path / "mibg-overrides.json").write_text(json.dumps({"study": {"administration_datetime": "2026-03-02T10:30"}}))
    study = load_study(str(tmp_path))
    np.testing.assert_allclose(study.times_h, [4.0, 24.0, 70.0])
    assert any("administration_datetime = 2026-03-02T10:30:00" in w for w in study.warnings)


def test_nm_activity_in_becquerel_is_read_as_such_with_a_note(tmp_path):
    """NM objects give RadionuclideTotalDose in MBq; a value that only makes sense in Bq is converted and said."""
    in_bq = {"replace_radiopharmaceutical": {"RadionuclideTotalDose": "3.7e9"}}
    fx.write_study(str(tmp_path), hours=(4.0, 24.0, 70.0), spect_kwargs={i: in_bq for i in range(3)})
    study = load_study(str(tmp_path))
    assert study.administered_activity_MBq == pytest.approx(3700.0, rel=1e-12)
    assert any("implausible in MBq" in w and "3700 MBq" in w for w in study.warnings)


def test_start_time_without_date_is_not_guessed(tmp_path):
    omit = {"omit_radiopharmaceutical": ("RadiopharmaceuticalStartDateTime",)}
    fx.write_study(str(tmp_path), hours=(4.0, 24.0), spect_kwargs={0: omit, 1: omit})
    with pytest.raises(StudyDataError, match=r"RadiopharmaceuticalStartTime \(10:30:00\) has no date"):
        load_study(str(tmp_path))


def test_administration_from_other_series_is_used_with_a_warning(tmp_path):
    omit = {"omit_radiopharmaceutical": ("RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime")}
    fx.write_study(str(tmp_path), hours=(4.0, 24.0, 70.0), spect_kwargs={1: omit})
    study = load_study(str(tmp_path))
    np.testing.assert_allclose(study.times_h, [4.0, 24.0, 70.0])
    warning = [w for w in study.timepoints[1].warnings if "RadiopharmaceuticalStartDateTime" in w]
    assert warning and "missing" in warning[0] and "2026-03-02T10:30:00" in warning[0]


def test_zero_duration_is_explained_and_can_be_overridden_by_label(tmp_path):
    fx.write_study(str(tmp_path), spect_kwargs={1: {"frame_duration_ms": (0,)}})
    with pytest.raises(StudyDataError) as caught:
        load_study(str(tmp_path))
    message = str(caught.value)
    assert "duration from RotationInformationSequence" in message and "is 0 s" in message
    assert os.path.join("tp2", "spect.dcm") in message and '"duration_s"' in message
    overrides = tmp_path.parent / "elsewhere.json"
    overrides.write_text(json.dumps({"tp2": {"duration_s": 1500}}))
    study = load_study(str(tmp_path), overrides=str(overrides))
    assert study.timepoints[1].duration_s == 1500.0
    assert study.timepoints[1].observed_count_rate_cps == pytest.approx(
        study.timepoints[1].metadata["counts_accumulated"] / 1500.0)
    assert any("duration_s = 1500.0" in w for w in study.timepoints[1].warnings)


def test_duration_sums_over_rotations(tmp_path):
    fx.write_study(str(tmp_path), hours=(6.0,), spect_kwargs={0: {"frames_in_rotation": (30, 30),
                                                                     "frame_duration_ms": (20000, 40000)}})
    assert load_study(str(tmp_path)).timepoints[0].duration_s == pytest.approx(30 * 20 + 30 * 40)


def test_mixed_frames_of_reference_in_a_ct_series_are_named(tmp_path):
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=3))
    positions = [np.array([0.0, 0.0, z]) for z in (0.0, 5.0, 10.0)]
    fx.write_ct(str(tmp_path / "ct"), visit, np.zeros((3, 2, 2), np.uint16), (1.0, 1.0), positions,
                frame_of_reference_per_slice={2: "1.2.3.4.5"})
    fx.write_nm_tomo(str(tmp_path / "spect.dcm"), visit, np.ones((2, 2, 2), np.uint16), (4.0, 4.0), 4.0,
                     (0, 0, 0), administration=ADMINISTRATION)
    study = load_study(str(tmp_path))
    assert study.timepoints[0].ct is None
    message = " ".join(study.warnings)
    assert "different frames of reference" in message and "FrameOfReferenceUID" in message and "1.2.3.4.5" in message
    assert "no CT paired" in message


def test_a_ct_slice_without_frame_of_reference_is_kept_with_a_warning(tmp_path):
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=3))
    positions = [np.array([0.0, 0.0, z]) for z in (0.0, 5.0, 10.0)]
    fx.write_ct(str(tmp_path / "ct"), visit, np.zeros((3, 2, 2), np.uint16), (1.0, 1.0), positions,
                omit_per_slice={1: ("FrameOfReferenceUID",)})
    fx.write_nm_tomo(str(tmp_path / "spect.dcm"), visit, np.ones((2, 2, 2), np.uint16), (4.0, 4.0), 4.0,
                     (0, 0, 0), administration=ADMINISTRATION)
    study = load_study(str(tmp_path))
    assert study.timepoints[0].ct.array.shape == (3, 2, 2)
    assert any("FrameOfReferenceUID: missing in 1 file(s), e.g. 'ct/slice_002.dcm'" in w for w in study.warnings)


def test_spect_and_ct_in_different_frames_of_reference_are_paired_with_a_warning(tmp_path):
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=3))
    other = fx.Visit(visit.acquisition + datetime.timedelta(minutes=20), study_uid=visit.study_uid)
    positions = [np.array([0.0, 0.0, z]) for z in (0.0, 5.0)]
    fx.write_ct(str(tmp_path / "ct"), other, np.zeros((2, 2, 2), np.uint16), (1.0, 1.0), positions)
    fx.write_nm_tomo(str(tmp_path / "spect.dcm"), visit, np.ones((2, 2, 2), np.uint16), (4.0, 4.0), 4.0,
                     (0, 0, 0), administration=ADMINISTRATION)
    tp = load_study(str(tmp_path)).timepoints[0]
    assert tp.ct is not None
    assert any("another frame of reference" in w for w in tp.warnings)


def test_wrong_modality_is_said_and_a_folder_without_spect_is_refused(tmp_path):
    fx.write_study(str(tmp_path / "a"), hours=(4.0,), spect_kwargs={0: {"replace": {"Modality": "CT"}}})
    study = load_study(str(tmp_path / "a"))
    assert any("field Modality: is 'CT' but the files are NM Image objects" in w for w in study.warnings)
    visit = fx.Visit(ADMINISTRATION)
    fx.write_ct(str(tmp_path / "b"), visit, np.zeros((2, 2, 2), np.uint16), (1.0, 1.0),
                [np.zeros(3), np.array([0, 0, 1.0])])
    with pytest.raises(StudyDataError, match="No reconstructed SPECT.*found: CT Image 'CT'"):
        load_study(str(tmp_path / "b"))


def test_truncated_files_are_reported_not_crashing(tmp_path):
    written = fx.write_study(str(tmp_path), hours=(4.0, 24.0, 70.0))
    data = open(written[1].spect_path, "rb").read()
    open(written[1].spect_path, "wb").write(data[:len(data) - 50])  # pixel data cut short
    with pytest.raises(StudyDataError) as caught:
        load_study(str(tmp_path))
    assert os.path.join("tp2", "spect.dcm") in str(caught.value) and "PixelData" in str(caught.value)
    open(written[1].spect_path, "wb").write(data[:300])  # header cut short: the file is skipped
    ct_slice = written[2].ct_paths[3]
    slice_data = open(ct_slice, "rb").read()
    open(ct_slice, "wb").write(slice_data[:-10])
    study = load_study(str(tmp_path))
    assert [tp.hours_after_administration for tp in study.timepoints] == pytest.approx([4.0, 70.0])
    message = " ".join(study.warnings)
    assert os.path.join("tp2", "spect.dcm") in message and "skipped" in message
    assert os.path.relpath(ct_slice, tmp_path) in message and "left out" in message
    assert "resampled" in message  # the CT gap the missing slice left
    assert any(f == os.path.join("tp2", "spect.dcm") for f, _ in study.unreadable_files)


def test_overrides_file_is_checked(tmp_path):
    fx.write_study(str(tmp_path), hours=(4.0,))
    bad = [({"tp1": {"duraton_s": 3}}, "unknown field 'duraton_s'"),
           ({"tp1": {"duration_s": -3}}, "must be positive"),
           ({"study": {"duration_s": 3}}, "cannot be given for the whole study"),
           ({"tp1": {"exclude": True}}, "cannot be given for a time point"),
           ({"1.2.3": {"duration_s": 3}}, "the key '1.2.3' matches no series"),
           ({"study": {"administration_datetime": "yesterday"}}, "not an ISO 8601 date-time")]
    for overrides, expected in bad:
        with pytest.raises(StudyDataError, match=expected):
            load_study(str(tmp_path), overrides=overrides)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(StudyDataError, match="not readable JSON"):
        load_study(str(tmp_path), overrides=str(tmp_path / "broken.json"))


def test_two_patients_in_one_folder_are_refused(tmp_path):
    fx.write_study(str(tmp_path), hours=(4.0, 24.0))
    path = tmp_path / "tp2" / "spect.dcm"
    ds = pydicom.dcmread(path)
    ds.PatientID = "SOMEONE-ELSE"
    ds.save_as(path)
    with pytest.raises(StudyDataError, match="more than one patient.*SOMEONE-ELSE"):
        load_study(str(tmp_path))


def test_two_reconstructions_of_one_visit_must_be_resolved(tmp_path):
    written = fx.write_study(str(tmp_path), hours=(4.0, 24.0))
    duplicate = tmp_path / "tp2" / "spect_ac.dcm"
    ds = pydicom.dcmread(written[1].spect_path)
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(duplicate)
    with pytest.raises(StudyDataError, match="0.0 min apart.*exclude"):
        load_study(str(tmp_path))
    study = load_study(str(tmp_path), overrides={ds.SeriesInstanceUID: {"exclude": True}})
    assert len(study.timepoints) == 2
    assert any(u["series_instance_uid"] == ds.SeriesInstanceUID for u in study.unused_series)


def test_seed_points_are_read_as_ras(tmp_path):
    fx.write_study(str(tmp_path), hours=(4.0,))
    markups = {"markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm",
                            "controlPoints": [{"label": "adrenal", "position": [10.0, -20.0, 30.0]}]},
                           {"type": "Fiducial", "coordinateSystem": "RAS",
                            "controlPoints": [{"label": "bone", "position": [1.0, 2.0, 3.0]}]}]}
    (tmp_path / "seeds.mrk.json").write_text(json.dumps(markups))
    study = load_study(str(tmp_path))
    np.testing.assert_array_equal(study.seed_points["adrenal"], [-10.0, 20.0, 30.0])
    np.testing.assert_array_equal(study.seed_points["bone"], [1.0, 2.0, 3.0])
    (tmp_path / "more.mrk.json").write_text(json.dumps(markups))
    with pytest.raises(StudyDataError, match="'adrenal' is defined twice"):
        load_study(str(tmp_path))


def test_rt_and_segmentation_files_are_listed(tmp_path):
    written = fx.write_study(str(tmp_path), hours=(4.0,))
    seg = fx.write_header_only(str(tmp_path / "segmentation.dcm"), "1.2.840.10008.5.1.4.1.1.66.4", written[0].visit,
                               "SEG")
    rtstruct = fx.write_header_only(str(tmp_path / "rois" / "rs.dcm"), "1.2.840.10008.5.1.4.1.1.481.3",
                                    written[0].visit, "RTSTRUCT")
    dose = fx.write_header_only(str(tmp_path / "dose.dcm"), "1.2.840.10008.5.1.4.1.1.481.2", written[0].visit,
                                "RTDOSE")
    study = load_study(str(tmp_path))
    assert sorted(study.segmentation_files) == sorted([seg, rtstruct])
    assert study.rt_dose_files == [dose]


def test_projection_windows_are_summed_per_window(tmp_path):
    written = fx.write_study(str(tmp_path), hours=(4.0,), spect_kwargs={0: {"counts_accumulated": None}})
    rng = np.random.default_rng(5)
    projections = rng.integers(0, 50, size=(3, 4, 5, 5)).astype(np.uint16)
    windows = (("LOWER", 291.2, 327.6), ("PEAK", 327.6, 400.4), ("UPPER", 400.4, 436.8))
    fx.write_nm_projections(str(tmp_path / "tp1" / "proj.dcm"), written[0].visit, projections, windows)
    tp = load_study(str(tmp_path)).timepoints[0]
    (summary,) = tp.projections
    assert [w["name"] for w in summary["energy_windows"]] == ["LOWER", "PEAK", "UPPER"]
    assert [w["counts"] for w in summary["energy_windows"]] == [float(projections[w].sum()) for w in range(3)]
    assert [w["frames"] for w in summary["energy_windows"]] == [4, 4, 4]
    assert summary["duration_s"] == pytest.approx(80.0)
    # Projections that share the SeriesInstanceUID of their reconstruction are still kept apart.
    ds = pydicom.dcmread(tmp_path / "tp1" / "proj.dcm")
    ds.SeriesInstanceUID = pydicom.dcmread(written[0].spect_path).SeriesInstanceUID
    ds.save_as(tmp_path / "tp1" / "proj.dcm")
    assert len(load_study(str(tmp_path)).timepoints[0].projections) == 1
    # The SPECT lacks CountsAccumulated: the rate comes from the photopeak window of the projections (the
    # window holding 364 keV) over their 4 x 20 s, as the dead time is calibrated; not from the scatter windows.
    assert tp.observed_count_rate_cps == pytest.approx(projections[1].sum() / 80.0, rel=1e-12)
    assert any("taken from the photopeak-window counts" in w for w in tp.warnings)


def test_spect_stored_as_pet_slices_and_as_enhanced_pet(tmp_path):
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=20))
    stored = np.arange(3 * 2 * 4, dtype=np.uint16).reshape(3, 2, 4)
    slopes = [0.5, 1.5, 2.0]
    positions = [np.array([5.0, 6.0, 7.0 + 4.0 * k]) for k in range(3)]
    fx.write_pet_slices(str(tmp_path / "a"), visit, stored, slopes, (3.0, 2.0), positions, ADMINISTRATION, 900000)
    study = load_study(str(tmp_path / "a"))
    tp = study.timepoints[0]
    np.testing.assert_array_equal(tp.spect.array, stored * np.array(slopes)[:, None, None])
    assert tp.hours_after_administration == pytest.approx(20.0) and tp.duration_s == 900.0
    assert_geometry(tp.spect, positions[0], (1, 0, 0, 0, 1, 0), (2.0, 3.0, 4.0))
    assert any("stored as PET Image objects" in w for w in study.warnings)
    assert tp.observed_count_rate_cps is None and any("CountsAccumulated is missing" in w for w in study.warnings)

    fx.write_enhanced_pet(str(tmp_path / "b" / "pet.dcm"), visit, stored[::-1], slopes[::-1], (3.0, 2.0),
                          positions[::-1], ADMINISTRATION, 900000)
    tp = load_study(str(tmp_path / "b")).timepoints[0]
    np.testing.assert_array_equal(tp.spect.array, stored * np.array(slopes)[:, None, None])
    assert_geometry(tp.spect, positions[0], (1, 0, 0, 0, 1, 0), (2.0, 3.0, 4.0))
    assert tp.duration_s == 900.0

    # Uneven slices (gaps 4 and 5 mm) are resampled as a CT's would be, with the counts kept: a uniform
    # activity gives each slice counts in proportion to the thickness it stands for (4, 4.5 and 5 mm).
    fx.write_pet_slices(str(tmp_path / "c"), visit, np.full((3, 2, 4), 1000, np.uint16), [4.0, 4.5, 5.0], (3.0, 2.0),
                        [np.array([0, 0, z]) for z in (0.0, 4.0, 9.0)], ADMINISTRATION, 900000)
    study = load_study(str(tmp_path / "c"))
    spect = study.timepoints[0].spect
    assert spect.spacing_mm[2] == pytest.approx(4.5)
    np.testing.assert_allclose(spect.array, 4500.0, rtol=1e-12)
    assert any("uneven slice spacing" in w and "total counts kept" in w for w in study.warnings)


def test_study_in_mrml_scene(study_dir, mrml_context):
    import slicer

    root, written = study_dir
    study = load_study(str(root))
    nodes = load_study_into_scene(study, mrml_context)
    scene = mrml_context.scene
    for tp, w, spect_node, ct_node in zip(study.timepoints, written, nodes.spect_nodes, nodes.ct_nodes):
        np.testing.assert_array_equal(mrml.array_from_volume(scene, spect_node), w.spect_stored)
        np.testing.assert_array_equal(mrml.array_from_volume(scene, ct_node), w.ct_hu)
        spacing, origin, directions = mrml.volume_geometry(spect_node)
        np.testing.assert_allclose(spacing, w.spect_spacing_ijk)
        np.testing.assert_allclose(origin, FLIP * w.spect_origin_lps)
        np.testing.assert_allclose(directions, np.diag(FLIP))
        assert float(spect_node.GetAttribute("MIBGDosimetry.HoursAfterAdministration")) == w.hours
        assert float(spect_node.GetAttribute("MIBGDosimetry.DurationSeconds")) == w.duration_s
        assert float(spect_node.GetAttribute("MIBGDosimetry.ObservedCountRateCps")) == pytest.approx(
            w.counts_accumulated / w.duration_s, rel=1e-15)
        assert spect_node.GetAttribute("MIBGDosimetry.Units") == "counts"
        assert ct_node.GetAttribute("MIBGDosimetry.Modality") == "CT"
    for modality in ("SPECT", "CT"):
        sequence = nodes.sequence_nodes[modality]
        assert sequence.GetNumberOfDataNodes() == 3
        assert [float(sequence.GetNthIndexValue(n)) for n in range(3)] == [4.0, 24.0, 72.0]
        assert sequence.GetIndexUnit() == "h"
    browser = nodes.browser_node
    browser.SetSelectedItemNumber(2)
    mrml_context.sequences_logic.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(nodes.sequence_nodes["CT"])
    np.testing.assert_array_equal(mrml.array_from_volume(scene, proxy), written[2].ct_hu)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = hierarchy.GetItemByDataNode(nodes.ct_nodes[1])
    folder = hierarchy.GetItemParent(item)
    assert hierarchy.GetItemName(folder) == "tp2 (24.0 h)"
    assert hierarchy.GetItemParent(folder) == nodes.study_item
    assert hierarchy.GetItemParent(nodes.study_item) == nodes.patient_item
    assert hierarchy.GetItemLevel(nodes.patient_item) == "Patient"
    assert hierarchy.GetItemAttribute(folder, "MIBGDosimetry.HoursAfterAdministration") == "24.0"
    assert hierarchy.GetItemUID(item, "DICOM") == pydicom.dcmread(written[1].ct_paths[0]).SeriesInstanceUID


def test_command_line_prints_the_summary(study_dir, capsys):
    root, written = study_dir
    assert cli_main(["study", str(root)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [tp["hours_after_administration"] for tp in summary["timepoints"]] == [4.0, 24.0, 72.0]
    first = summary["timepoints"][0]
    assert first["modalities"] == ["SPECT", "CT"]
    assert first["spect"]["shape_kji"] == list(written[0].spect_stored.shape)
    assert first["spect"]["spacing_mm"] == list(written[0].spect_spacing_ijk)
    assert first["ct"]["shape_kji"] == list(written[0].ct_stored.shape)
    assert first["duration_s"] == 1200.0 and summary["warnings"] == []
    assert cli_main(["study", str(root / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    overrides = root.parent / "overrides.json"
    overrides.write_text(json.dumps({"tp3": {"duration_s": 999}}))
    assert cli_main(["study", str(root), "--overrides", str(overrides)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["timepoints"][2]["duration_s"] == 999.0
    assert any("duration_s = 999.0" in w for w in summary["timepoints"][2]["warnings"])


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_fixture_files_are_valid_dicom(study_dir):
    _, written = study_dir
    for path in (written[0].spect_path, written[0].ct_paths[0]):
        result = subprocess.run(["dciodvfy", path], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], errors


def test_phantom_study_end_to_end(tmp_path, mrml_context, capsys):
    """Phantom -> DICOM (``mibgdose phantom patient``) -> loader -> MRML, against the phantom's own arrays and truth.json."""
    from MIBGDosimetryLib.phantoms import grid, patient

    out = tmp_path / "patient"
    arguments = ["--seed", "3", "--matrix", "48", "--slices", "66", "--voxel-mm", "6", "--fine-factor", "1",
                 "--timepoints-h", "21,93"]
    assert cli_main(["phantom", "patient", "--out", str(out)] + arguments) == 0
    capsys.readouterr()
    truth = json.loads((out / "truth.json").read_text())
    config = patient.PatientConfig(seed=3, timepoints_h=(21.0, 93.0), grid=grid.PhantomGrid(48, 66, 6.0, 1))
    simulated = patient.simulate_patient(config)

    assert cli_main(["study", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["warnings"] == []
    assert summary["administration_datetime"] == truth["administration_datetime"]
    assert summary["administered_activity_MBq"] == pytest.approx(truth["administered_activity_MBq"], rel=1e-12)
    assert [tp["label"] for tp in summary["timepoints"]] == [tp["label"] for tp in truth["timepoints"]]
    for row, expected in zip(summary["timepoints"], truth["timepoints"]):
        assert row["hours_after_administration"] == pytest.approx(expected["hours_after_administration"], abs=1e-9)
        assert row["duration_s"] == pytest.approx(expected["duration_s"], rel=1e-12)
        assert row["observed_count_rate_cps"] == pytest.approx(expected["counts_accumulated"] / expected["duration_s"],
                                                               rel=1e-12)
        # The recorded counts are a Poisson draw around the expected observed rate x duration.
        sigma_cps = np.sqrt(expected["observed_count_rate_cps"] * expected["duration_s"]) / expected["duration_s"]
        assert abs(row["observed_count_rate_cps"] - expected["observed_count_rate_cps"]) < 5 * sigma_cps
        assert row["modalities"] == ["SPECT", "CT"]
        assert row["spect"]["shape_kji"] == truth["grid"]["spect_shape_kji"]
        assert row["spect"]["spacing_mm"] == [truth["grid"]["spect_voxel_mm"]] * 3
        assert row["ct"]["shape_kji"] == truth["grid"]["fine_shape_kji"]
    lesions = {s["name"]: s for s in truth["structures"] if s["kind"] == "lesion"}
    assert set(summary["seed_points_ras_mm"]) == set(lesions)
    for name, position in summary["seed_points_ras_mm"].items():
        np.testing.assert_allclose(position, lesions[name]["centre_ras_mm"], atol=1e-6)
    assert summary["segmentation_files"] == [str(out / "segmentation.dcm")]

    study = load_study(str(out))
    nodes = load_study_into_scene(study, mrml_context)
    for tp, sim, node in zip(study.timepoints, simulated.timepoints, nodes.spect_nodes):
        spect_truth = config.grid.spect_volume(sim.counts)
        ct_truth = config.grid.fine_volume(sim.ct_hu)
        np.testing.assert_array_equal(tp.spect.array, spect_truth.array)
        np.testing.assert_array_equal(tp.ct.array, ct_truth.array)
        for loaded, expected in ((tp.spect, spect_truth), (tp.ct, ct_truth)):
            np.testing.assert_allclose(loaded.ijk_to_ras(), expected.ijk_to_ras(), atol=1e-6)
        np.testing.assert_array_equal(mrml.array_from_volume(mrml_context.scene, node), spect_truth.array)
        assert float(node.GetAttribute("MIBGDosimetry.HoursAfterAdministration")) == sim.hours_after_administration
    sequence = nodes.sequence_nodes["SPECT"]
    assert [float(sequence.GetNthIndexValue(n)) for n in range(sequence.GetNumberOfDataNodes())] == [21.0, 93.0]
