"""The DICOM writers: objects pass dciodvfy without errors and read back with pydicom to the
same arrays and geometry."""

import datetime
import json
import os
import subprocess

import numpy as np
import pydicom
import pytest

from MIBGDosimetryLib.dicomio import common, ct, markups, nm, seg
from MIBGDosimetryLib.volume import LPS_TO_RAS, ImageVolume

WHEN = datetime.datetime(2026, 3, 3, 14, 30, 5)
ADMINISTERED = datetime.datetime(2026, 3, 2, 9, 0, 0)


def dciodvfy_errors(path):
    """Lines of dciodvfy's report that start with "Error"."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def oblique_directions():
    """An orthonormal, non-axial direction matrix (RAS columns of i, j, k)."""
    a = np.radians(10.0)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return rotation @ np.diag([-1.0, -1.0, 1.0])


@pytest.fixture
def study():
    return common.StudyInfo("Test^Writer", "WRITER-1", WHEN, patient_birth_date="20220302", patient_sex="F",
                            patient_weight_kg=16.0)


def acquisition(windows=None, views=60, counts=123456):
    return nm.NMAcquisition(WHEN, 20000.0, ADMINISTERED, 7.4e9, 693377.28, windows or [nm.photopeak_window()],
                            counts_accumulated=counts, number_of_views=views)


def volume_from_ct_files(folder):
    """Read a CT series with pydicom only: sort by position along the normal, apply the rescale."""
    datasets = [pydicom.dcmread(os.path.join(folder, f)) for f in os.listdir(folder)]
    iop = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets])
    positions = np.array([d.ImagePositionPatient for d in datasets], dtype=float)
    return datasets, hu, positions, iop, normal


def test_ct_series_reads_back_exactly_and_validates(tmp_path, study):
    rng = np.random.default_rng(3)
    hu = rng.integers(-1024, 3000, size=(6, 10, 12)).astype(float)
    volume = ImageVolume(hu, (0.8, 0.9, 2.5), (12.0, -30.0, -40.0), oblique_directions())
    paths = ct.write_ct_series(volume, tmp_path / "ct", study, WHEN)
    assert len(paths) == 6
    assert dciodvfy_errors(paths[0]) == []

    datasets, read_hu, positions, iop, normal = volume_from_ct_files(tmp_path / "ct")
    np.testing.assert_array_equal(read_hu, hu)
    assert [int(d.InstanceNumber) for d in datasets] == list(range(1, 7))
    directions_lps = LPS_TO_RAS @ volume.directions
    np.testing.assert_allclose(iop, np.concatenate([directions_lps[:, 0], directions_lps[:, 1]]), atol=1e-9)
    np.testing.assert_allclose(LPS_TO_RAS @ positions[0], volume.origin_ras_mm, atol=1e-6)
    np.testing.assert_allclose(np.diff(positions @ normal), 2.5, atol=1e-6)
    assert [float(v) for v in datasets[0].PixelSpacing] == [0.9, 0.8]
    assert len({d.SeriesInstanceUID for d in datasets}) == 1
    assert datasets[0].FrameOfReferenceUID == study.frame_of_reference_uid


def test_nm_tomo_reads_back_counts_geometry_and_radiopharmaceutical(tmp_path, study):
    counts = np.random.default_rng(4).poisson(300.0, size=(7, 9, 11)).astype(float)
    volume = ImageVolume(counts, (4.4, 4.4, 4.4), (100.0, 80.0, -150.0), np.diag([-1.0, -1.0, 1.0]), "counts")
    path = nm.write_nm_tomo(volume, tmp_path / "spect.dcm", study, acquisition())
    assert dciodvfy_errors(path) == []

    ds = pydicom.dcmread(path)
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    np.testing.assert_array_equal(ds.pixel_array, counts)
    assert "RescaleSlope" not in ds
    detector = ds.DetectorInformationSequence[0]
    np.testing.assert_allclose(LPS_TO_RAS @ np.array(detector.ImagePositionPatient, dtype=float), (100.0, 80.0, -150.0))
    np.testing.assert_allclose(np.array(detector.ImageOrientationPatient, dtype=float), [1, 0, 0, 0, 1, 0])
    assert float(ds.SpacingBetweenSlices) == 4.4 and float(ds.SliceThickness) == 4.4
    rotation = ds.RotationInformationSequence[0]
    assert rotation.NumberOfFramesInRotation * rotation.ActualFrameDuration / 1000.0 == 1200.0
    assert ds.CountsAccumulated == 123456
    radiopharmaceutical = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(radiopharmaceutical.RadionuclideTotalDose) == 7400.0  # MBq, as NM objects give it
    assert float(radiopharmaceutical.RadionuclideHalfLife) == pytest.approx(693377.28)
    assert radiopharmaceutical.RadiopharmaceuticalStartDateTime.startswith("20260302090000")
    assert radiopharmaceutical.RadionuclideCodeSequence[0].CodeValue == "1368003"
    window = ds.EnergyWindowInformationSequence[0].EnergyWindowRangeSequence[0]
    assert (float(window.EnergyWindowLowerLimit), float(window.EnergyWindowUpperLimit)) == (327.6, 400.4)
    assert ds.StudyInstanceUID == study.study_instance_uid
    assert ds.FrameOfReferenceUID == study.frame_of_reference_uid
    assert ds.AcquisitionDate == "20260303" and ds.AcquisitionTime.startswith("143005")


def test_nm_tomo_with_large_or_fractional_counts_writes_a_rescale_slope(tmp_path, study):
    counts = np.linspace(0.0, 2.0e5, 4 * 5 * 6).reshape(4, 5, 6) + 0.25
    volume = ImageVolume(counts, (4.0, 4.0, 4.0))
    ds = pydicom.dcmread(nm.write_nm_tomo(volume, tmp_path / "scaled.dcm", study, acquisition()))
    slope = float(ds.RescaleSlope)
    np.testing.assert_allclose(ds.pixel_array * slope, counts, atol=slope / 2.0 + 1e-9)


def test_nm_static_and_multi_window_projections_validate_and_keep_frame_order(tmp_path, study):
    image = np.arange(12 * 14, dtype=float).reshape(12, 14)
    static = nm.write_nm_static(image, (4.4, 4.4), tmp_path / "static.dcm", study, acquisition())
    assert dciodvfy_errors(static) == []
    ds = pydicom.dcmread(static)
    np.testing.assert_array_equal(ds.pixel_array, image)
    assert ds.ActualFrameDuration == 20000 and list(ds.ImageType)[2] == "STATIC"

    windows = [nm.EnergyWindow("PEAK", 327.6, 400.4), nm.EnergyWindow("LOW", 305.76, 327.6),
               nm.EnergyWindow("HIGH", 400.4, 422.24)]
    projections = np.random.default_rng(5).poisson(20.0, size=(3, 4, 8, 10)).astype(float)
    path = nm.write_nm_projections(projections, (4.4, 4.4), tmp_path / "proj.dcm", study,
                                   acquisition(windows, views=4))
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert list(ds.EnergyWindowVector) == [1] * 4 + [2] * 4 + [3] * 4
    assert list(ds.AngularViewVector) == [1, 2, 3, 4] * 3
    frames = ds.pixel_array
    for frame, (w, v) in enumerate((w, v) for w in range(3) for v in range(4)):
        np.testing.assert_array_equal(frames[frame], projections[w, v])
    lower = ds.EnergyWindowInformationSequence[1].EnergyWindowRangeSequence[0]
    assert float(lower.EnergyWindowLowerLimit) == 305.76


def test_segmentation_masks_read_back_on_the_ct_slices(tmp_path, study):
    hu = np.zeros((5, 16, 16))
    volume = ImageVolume(hu, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), np.diag([-1.0, -1.0, 1.0]))
    ct_paths = ct.write_ct_series(volume, tmp_path / "ct", study, WHEN)
    k, j, i = np.indices(hu.shape)
    masks = {"liver": (i < 8) & (k >= 1), "tumour": (np.hypot(i - 11, j - 11) < 3) & (k == 2)}
    path = seg.write_segmentation(masks, {"liver": "organ", "tumour": "lesion"}, ct_paths, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []

    ds = pydicom.dcmread(path)
    labels = {s.SegmentNumber: s.SegmentLabel for s in ds.SegmentSequence}
    assert labels == {1: "liver", 2: "tumour"}
    assert ds.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    ct_positions = [tuple(round(float(v), 3) for v in pydicom.dcmread(p).ImagePositionPatient) for p in ct_paths]
    rebuilt = {name: np.zeros(hu.shape, dtype=bool) for name in masks}
    for frame, group in zip(np.atleast_3d(ds.pixel_array).reshape(-1, 16, 16), ds.PerFrameFunctionalGroupsSequence):
        number = group.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        position = tuple(round(float(v), 3) for v in group.PlanePositionSequence[0].ImagePositionPatient)
        rebuilt[labels[number]][ct_positions.index(position)] = frame.astype(bool)
    for name in masks:
        np.testing.assert_array_equal(rebuilt[name], masks[name])
    assert ds.FrameOfReferenceUID == study.frame_of_reference_uid


def test_seed_markups_follow_the_slicer_fiducial_schema(tmp_path):
    path = markups.write_seeds({"primary": (1.5, -2.0, 30.0), "node": (0.0, 4.0, -8.0)}, tmp_path / "seeds.mrk.json")
    document = json.loads(open(path).read())
    assert document["@schema"].endswith("markups-schema-v1.0.3.json#")
    markup = document["markups"][0]
    assert markup["type"] == "Fiducial" and markup["coordinateSystem"] == "RAS"
    assert [(p["label"], p["position"]) for p in markup["controlPoints"]] == [
        ("primary", [1.5, -2.0, 30.0]), ("node", [0.0, 4.0, -8.0])]


def test_bad_input_is_refused_and_nothing_half_written(tmp_path, study):
    with pytest.raises(ValueError, match="whole Hounsfield"):
        ct.write_ct_series(ImageVolume(np.full((2, 3, 3), 0.5)), tmp_path / "ct", study, WHEN)
    with pytest.raises(ValueError, match="not negative"):
        nm.write_nm_tomo(ImageVolume(-np.ones((2, 3, 3))), tmp_path / "bad.dcm", study, acquisition())
    with pytest.raises(ValueError, match="windows"):
        nm.write_nm_projections(np.ones((2, 4, 3, 3)), (1, 1), tmp_path / "p.dcm", study, acquisition(views=4))
    assert not (tmp_path / "bad.dcm").exists() and not (tmp_path / "p.dcm").exists()

    target = tmp_path / "folder"
    with pytest.raises(RuntimeError):
        with common.atomic_folder(target) as folder:
            open(os.path.join(folder, "partial.txt"), "w").close()
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(FileExistsError):
        with common.atomic_folder(tmp_path / "full"):
            pass
    assert (tmp_path / "full" / "x").read_text() == "keep"
