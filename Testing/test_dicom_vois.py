"""Import of organ VOIs from DICOM SEG (written here with highdicom, validated with dciodvfy) and
RTSTRUCT (written here with pydicom) onto reference grids, against the masks and contours written."""

import datetime
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from MIBGDosimetryLib import compat
from MIBGDosimetryLib.segmentation.dicom_vois import read_dicom_seg, read_rtstruct
from MIBGDosimetryLib.volume import LPS_TO_RAS, ImageVolume

CT_SPACING_MM = (2.0, 2.0, 3.0)  # along i, j, k
CT_SHAPE_KJI = (20, 40, 40)
CT_ORIGIN_LPS = np.array([-39.0, -39.0, -28.5])  # centre of the first voxel


def _ct_grid():
    """The CT grid in RAS: axial slices, rows along A->P (LPS +y), columns along R->L (LPS +x)."""
    return ImageVolume(np.zeros(CT_SHAPE_KJI), CT_SPACING_MM, tuple(LPS_TO_RAS @ CT_ORIGIN_LPS), LPS_TO_RAS.copy())


def _ct_series(uids):
    """Axial CT slices (pydicom datasets) of the CT grid, enough for a SEG to reference."""
    slices = []
    for k in range(CT_SHAPE_KJI[0]):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        ds.SOPClassUID = pydicom.uid.CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "VOI-TEST", "20200101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260302", "090000", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.Manufacturer = "Test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in CT_ORIGIN_LPS + [0.0, 0.0, k * CT_SPACING_MM[2]]]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [CT_SPACING_MM[1], CT_SPACING_MM[0]]
        ds.SliceThickness = CT_SPACING_MM[2]
        ds.Rows, ds.Columns = CT_SHAPE_KJI[1], CT_SHAPE_KJI[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = 0, 1, 120
        ds.PixelData = np.zeros(CT_SHAPE_KJI[1:], dtype=np.int16).tobytes()
        slices.append(ds)
    return slices


def _truth_masks(grid):
    k, j, i = np.indices(grid.array.shape)
    p = grid.ras_of_ijk(np.stack([i, j, k], -1))
    liver = (((p - (15.0, 5.0, 0.0)) / (14.0, 11.0, 12.0)) ** 2).sum(-1) <= 1.0
    kidney = (((p - (-20.0, -14.0, -6.0)) / (9.0, 11.0, 14.0)) ** 2).sum(-1) <= 1.0
    return {"liver": liver, "kidney": kidney}


@pytest.fixture
def seg_file(tmp_path):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    uids = (generate_uid(), generate_uid(), generate_uid())
    series = _ct_series(uids)
    truth = _truth_masks(_ct_grid())
    descriptions = [hd.seg.SegmentDescription(segment_number=n + 1, segment_label=name,
                                              segmented_property_category=codes.SCT.Organ,
                                              segmented_property_type=code,
                                              algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
                    for n, (name, code) in enumerate([("liver", codes.SCT.Liver), ("kidney", codes.SCT.Kidney)])]
    pixels = np.stack([truth["liver"], truth["kidney"]], axis=-1).astype(np.uint8)
    # highdicom 0.22, the release for pydicom 2.4, needs an alias numpy 2 removed (see compat).
    segmentation = compat.lends_numpy_aliases_to_highdicom(hd.seg.Segmentation)
    seg = segmentation(source_images=series, pixel_array=pixels,
                       segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                       segment_descriptions=descriptions, series_instance_uid=generate_uid(),
                       series_number=2, sop_instance_uid=generate_uid(), instance_number=1,
                       manufacturer="SlicerMIBGDosimetry tests", manufacturer_model_name="test",
                       software_versions="0", device_serial_number="0", omit_empty_frames=True)
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    return path, truth


def _dciodvfy_errors(path):
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy (dicom3tools) is needed to validate the DICOM files; `make test` installs it.")
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


def test_dicom_seg_is_valid_and_reads_back_exactly_on_its_ct(seg_file):
    path, truth = seg_file
    assert _dciodvfy_errors(path) == []
    masks = read_dicom_seg(path, _ct_grid())
    assert set(masks) == {"liver", "kidney"}
    for name in truth:
        np.testing.assert_array_equal(masks[name], truth[name])


def test_dicom_seg_onto_a_coarser_spect_grid_keeps_volume_and_position(seg_file):
    path, truth = seg_file
    ct = _ct_grid()
    spect = ImageVolume(np.zeros((10, 20, 20)), (4.0, 4.0, 6.0), tuple(LPS_TO_RAS @ (CT_ORIGIN_LPS + [1.0, 1.0, 1.5])),
                        LPS_TO_RAS.copy())
    masks = read_dicom_seg(path, spect)
    for name, mask in truth.items():
        volume_ct = mask.sum() * ct.voxel_volume_ml
        # The kidney covers about 60 coarse voxels, two thirds of them on its border: a few voxels of
        # majority votes either way make several per cent.
        assert masks[name].sum() * spect.voxel_volume_ml == pytest.approx(volume_ct, rel=0.08)
        centroid_ct = ct.ras_of_ijk(np.argwhere(mask).mean(0)[::-1])
        centroid_spect = spect.ras_of_ijk(np.argwhere(masks[name]).mean(0)[::-1])
        np.testing.assert_allclose(centroid_spect, centroid_ct, atol=1.0)


def test_wrong_file_types_are_refused(tmp_path, seg_file):
    path, _ = seg_file
    with pytest.raises(ValueError, match="RTSTRUCT"):
        read_rtstruct(path, _ct_grid())
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    with pytest.raises(ValueError, match="Cannot read"):
        read_dicom_seg(text, _ct_grid())


def _rtstruct(tmp_path, contours_by_roi):
    """An RT structure set with CLOSED_PLANAR contours given in LPS mm."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.RTStructureSetStorage
    ds.SOPClassUID = pydicom.uid.RTStructureSetStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "VOI-TEST", "20200101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260302", "090000", "1", "A1"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "RTSTRUCT", 3, 1, "Test"
    ds.StructureSetLabel = "VOIs"
    now = datetime.datetime(2026, 3, 2, 9, 0, 0)
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    frame_of_reference = generate_uid()
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference, ""
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, (name, contours) in enumerate(contours_by_roi.items(), start=1):
        roi = pydicom.Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame_of_reference
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        item = pydicom.Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor = number, [255, 0, 0]
        item.ContourSequence = []
        for points_lps in contours:
            contour = pydicom.Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points_lps)
            contour.ContourData = [f"{v:.3f}" for v in np.asarray(points_lps).ravel()]
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
        observation = pydicom.Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", ""
        ds.RTROIObservationsSequence.append(observation)
    path = tmp_path / "rtstruct.dcm"
    compat.save_dicom_file(ds, path)
    return path


def _circle_lps(centre_xy, radius_mm, z_mm, points=72):
    angles = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    return np.column_stack([centre_xy[0] + radius_mm * np.cos(angles), centre_xy[1] + radius_mm * np.sin(angles),
                            np.full(points, z_mm)])


def test_rtstruct_contours_fill_their_slices_with_holes(tmp_path):
    grid = _ct_grid()
    slices_z = CT_ORIGIN_LPS[2] + CT_SPACING_MM[2] * np.arange(5, 15)
    ring = [_circle_lps((5.0, -4.0), 20.0, z) for z in slices_z] + [_circle_lps((5.0, -4.0), 8.0, z) for z in slices_z]
    disc = [_circle_lps((-20.0, 15.0), 10.0, z) for z in slices_z[:4]]
    path = _rtstruct(tmp_path, {"tumour ring": ring, "node": disc})
    assert _dciodvfy_errors(path) == []
    masks = read_rtstruct(path, grid)
    k, j, i = np.indices(grid.array.shape)
    lps = grid.ras_of_ijk(np.stack([i, j, k], -1)) @ LPS_TO_RAS.T
    on_slices = np.isin(k, np.arange(5, 15))
    radius = np.hypot(lps[..., 0] - 5.0, lps[..., 1] + 4.0)
    truth_ring = on_slices & (radius <= 20.0) & (radius > 8.0)
    agreement = 1.0 - (masks["tumour ring"] ^ truth_ring).sum() / truth_ring.sum()
    assert agreement > 0.95
    area_mm2 = masks["tumour ring"].sum() / 10 * CT_SPACING_MM[0] * CT_SPACING_MM[1]
    assert area_mm2 == pytest.approx(np.pi * (20.0 ** 2 - 8.0 ** 2), rel=0.05)
    assert masks["node"].sum() / 4 * 4.0 == pytest.approx(np.pi * 10.0 ** 2, rel=0.08)
    assert not masks["node"][9:].any() and not masks["node"][:5].any()


def test_oblique_rtstruct_contour_is_filled_on_its_own_plane_and_a_warped_one_refused(tmp_path):
    tilted = _circle_lps((0.0, 0.0), 15.0, 0.0)
    tilted[:, 2] = 0.5 * tilted[:, 0]
    mask = read_rtstruct(_rtstruct(tmp_path, {"tilted": [tilted]}), _ct_grid())["tilted"]
    # A lone plane stands for a slab as thick as the grid's largest voxel extent along its normal
    # (the 3 mm slices, seen at the tilt: 3 / sqrt(1.25)); the tilted disc is an ellipse of semi-axes
    # 15 mm and 15 * sqrt(1.25) mm.
    slab_mm = CT_SPACING_MM[2] / np.sqrt(1.25)
    expected_mm3 = np.pi * 15.0 * 15.0 * np.sqrt(1.25) * slab_mm
    assert mask.sum() * np.prod(CT_SPACING_MM) == pytest.approx(expected_mm3, rel=0.15)
    warped = _circle_lps((0.0, 0.0), 15.0, 0.0)
    warped[::2, 2] = 3.0
    with pytest.raises(ValueError, match="not planar"):
        read_rtstruct(_rtstruct(tmp_path, {"warped": [warped]}), _ct_grid())


def test_patient_phantom_organ_segmentation_reads_back(tmp_path):
    """The phantom's own CT and SEG writers (as in its study folders), read back onto its CT grid
    and onto a grid twice as coarse."""
    from MIBGDosimetryLib.dicomio import common, ct, seg
    from MIBGDosimetryLib.phantoms.grid import PhantomGrid
    from MIBGDosimetryLib.phantoms.patient import PatientConfig, simulate_patient

    phantom = simulate_patient(PatientConfig(timepoints_h=(21.0,), grid=PhantomGrid(fine_factor=1)))
    grid, tp = phantom.config.grid, phantom.timepoints[0]
    study = common.StudyInfo(patient_name="MIBG^Phantom", patient_id="MIBG-VOI", study_datetime=tp.acquisition_datetime,
                             patient_birth_date="20220101", patient_sex="F", patient_weight_kg=16.0,
                             patient_size_m=1.02, study_description="VOI import", study_id="1")
    reference = grid.fine_volume(tp.ct_hu)
    ct_paths = ct.write_ct_series(reference, str(tmp_path / "ct"), study, tp.acquisition_datetime)
    organs = {s.name: phantom.reference_labels == n + 2
              for n, s in enumerate(phantom.anatomy.structures) if s.kind == "organ"}
    seg.write_segmentation(organs, {name: "organ" for name in organs}, ct_paths, str(tmp_path / "segmentation.dcm"))
    masks = read_dicom_seg(tmp_path / "segmentation.dcm", reference)
    assert set(masks) == set(organs)
    for name, mask in organs.items():
        np.testing.assert_array_equal(masks[name], mask)
    coarse = ImageVolume(np.zeros((44, 32, 32)), (8.8, 8.8, 8.8),
                         tuple(reference.ras_of_ijk((0.5, 0.5, 0.5))), reference.directions)
    on_coarse = read_dicom_seg(tmp_path / "segmentation.dcm", coarse)
    for name in ("liver", "lungs", "heart"):  # organs of 100 coarse voxels or more
        assert on_coarse[name].sum() * coarse.voxel_volume_ml == pytest.approx(
            organs[name].sum() * reference.voxel_volume_ml, rel=0.05)
