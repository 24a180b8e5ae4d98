"""DICOM RT Dose export: validated with dciodvfy, read back with pydicom and with Slicer's reader."""

import numpy as np
import pydicom
import pytest

from export_fixtures import dciodvfy_errors, write_ct_series
from MIBGDosimetryLib import mrml
from MIBGDosimetryLib.export import rtdose
from MIBGDosimetryLib.volume import ImageVolume

MISSING_PLAN = "Error - Missing attribute Type 1C Conditional Element=<ReferencedRTPlanSequence> Module=<RTDose>"


def rotation_z(degrees):
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def dose_volume(directions=None, shape=(5, 6, 7)):
    """A smooth dose map with a known maximum, in Gy."""
    k, j, i = np.indices(shape)
    dose = 40.0 * np.exp(-((i - 3) ** 2 + (j - 2) ** 2 + (k - 1) ** 2) / 6.0) + 0.01 * i
    return ImageVolume(dose, (2.0, 2.5, 3.0), (10.0, -20.0, 30.0),
                       np.diag([-1.0, -1.0, 1.0]) if directions is None else directions, "Gy")


def assert_same_dose_in_space(written, read, tolerance_Gy):
    """Every voxel of ``read`` sits at a voxel centre of ``written`` and holds its dose."""
    kk, jj, ii = np.indices(read.array.shape)
    ijk = np.stack([ii, jj, kk], axis=-1).reshape(-1, 3)
    source = written.ijk_of_ras(read.ras_of_ijk(ijk))
    np.testing.assert_allclose(source, np.rint(source), atol=1e-4)
    i, j, k = np.rint(source).astype(int).T
    np.testing.assert_allclose(read.array.reshape(-1), written.array[k, j, i], atol=tolerance_Gy, rtol=0)


@pytest.mark.parametrize("directions", [None, rotation_z(20.0), np.diag([1.0, 1.0, -1.0])],
                         ids=["axial", "oblique", "slices-against-normal"])
def test_rt_dose_reads_back_with_geometry_and_values(tmp_path, directions):
    dose = dose_volume(directions)
    path = rtdose.write_rt_dose(dose, tmp_path / "dose.dcm", patient={"name": "Doe^Jane", "id": "P1"})
    ds = pydicom.dcmread(path)
    assert (ds.DoseUnits, ds.DoseType, ds.BitsAllocated, ds.PixelRepresentation) == ("GY", "PHYSICAL", 32, 0)
    scaling = float(ds.DoseGridScaling)
    # The maximum dose maps to the top of the 32-bit range (up to the 10 digits of DoseGridScaling).
    assert 2 ** 32 - 1 - 10 <= ds.pixel_array.max() <= 2 ** 32 - 1
    assert scaling * (2 ** 32 - 1) == pytest.approx(dose.array.max(), rel=2e-9)
    assert [float(v) for v in ds.GridFrameOffsetVector] == pytest.approx([0, 3, 6, 9, 12])
    read = rtdose.read_rt_dose(path)
    assert read.units == "Gy" and read.spacing_mm == pytest.approx((2.0, 2.5, 3.0))
    assert_same_dose_in_space(dose, read, scaling / 2 * 1.0001)


def test_axial_dose_has_ct_style_lps_geometry(tmp_path):
    dose = dose_volume()
    ds = pydicom.dcmread(rtdose.write_rt_dose(dose, tmp_path / "dose.dcm"))
    # RAS directions (-1, -1, 1) are LPS (1, 1, 1): the axial orientation of a CT.
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([-10.0, 20.0, 30.0])
    assert [float(v) for v in ds.PixelSpacing] == [2.5, 2.0]


def test_dose_references_the_ct_study_frame_and_patient(tmp_path):
    paths, _, uids = write_ct_series(tmp_path / "ct")
    ct = pydicom.dcmread(paths[0])
    ds = pydicom.dcmread(rtdose.write_rt_dose(dose_volume(), tmp_path / "dose.dcm", reference_ct=ct))
    assert ds.StudyInstanceUID == uids["study"] and ds.FrameOfReferenceUID == uids["frame"]
    assert ds.SeriesInstanceUID != uids["series"]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientWeight"):
        assert ds[keyword].value == ct[keyword].value


def test_dose_without_ct_gets_new_uids_and_the_given_patient(tmp_path):
    a = pydicom.dcmread(rtdose.write_rt_dose(dose_volume(), tmp_path / "a.dcm",
                                             patient={"name": "Doe^Jane", "id": "P1", "sex": "F", "age": "005Y"}))
    b = pydicom.dcmread(rtdose.write_rt_dose(dose_volume(), tmp_path / "b.dcm"))
    assert (str(a.PatientName), a.PatientID, a.PatientSex, a.PatientAge) == ("Doe^Jane", "P1", "F", "005Y")
    assert a.StudyInstanceUID != b.StudyInstanceUID and a.FrameOfReferenceUID != b.FrameOfReferenceUID
    assert pydicom.uid.UID(a.FrameOfReferenceUID).is_valid


def test_dciodvfy_finds_no_error_but_the_missing_plan_reference(tmp_path):
    # dciodvfy (dicom3tools 2022) aborts on 32-bit pixel data, so the header is validated on the
    # 16-bit form of the same object; the 32-bit pixel module is checked by reading it back above.
    paths, _, _ = write_ct_series(tmp_path / "ct")
    ct = pydicom.dcmread(paths[0])
    plain = rtdose.write_rt_dose(dose_volume(), tmp_path / "dose.dcm", reference_ct=ct, bits=16)
    assert dciodvfy_errors(plain) == [MISSING_PLAN]
    with_plan = rtdose.write_rt_dose(dose_volume(), tmp_path / "plan.dcm", reference_ct=ct, bits=16,
                                     referenced_plan_uid=pydicom.uid.generate_uid())
    assert dciodvfy_errors(with_plan) == []
    read = rtdose.read_rt_dose(with_plan)
    scaling = float(pydicom.dcmread(with_plan).DoseGridScaling)
    assert scaling == pytest.approx(dose_volume().array.max() / 65535, rel=1e-6)
    assert_same_dose_in_space(dose_volume(), read, scaling / 2 * 1.0001)


def test_slicer_reader_gets_the_dose_in_gy(tmp_path, mrml_context):
    dose = dose_volume(rotation_z(20.0))
    path = rtdose.write_rt_dose(dose, tmp_path / "dose.dcm")
    node = rtdose.load_rt_dose_into_scene(mrml_context, str(path), name="Dose")
    assert node.GetAttribute(mrml.DOSE_VOLUME_ATTRIBUTE) == "1"
    read = ImageVolume.from_node(mrml_context.scene, node, units="Gy")
    scaling = float(pydicom.dcmread(path).DoseGridScaling)
    assert_same_dose_in_space(dose, read, scaling / 2 * 1.0001 + 1e-12)
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, dose.array.max()),
                                                                                      rel=1e-6)


def test_dose_node_is_tagged_and_shown_as_dose(mrml_context):
    dose = dose_volume()
    node = rtdose.add_dose_node(mrml_context, dose, "Dose", colour="Iron")
    assert node.GetAttribute(mrml.DOSE_VOLUME_ATTRIBUTE) == "1"
    assert node.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeIron"
    assert node.GetDisplayNode().GetColorNode() is mrml_context.scene.GetNodeByID("vtkMRMLColorTableNodeIron")
    assert node.GetDisplayNode().GetColorNode() is not None
    assert node.GetDisplayNode().GetWindowLevelMax() == pytest.approx(dose.array.max())
    np.testing.assert_array_equal(mrml.array_from_volume(mrml_context.scene, node), dose.array)


def test_bad_dose_maps_are_refused_and_nothing_is_written(tmp_path):
    negative = dose_volume().with_array(dose_volume().array - 1.0)
    with pytest.raises(ValueError, match="negative dose"):
        rtdose.write_rt_dose(negative, tmp_path / "neg.dcm")
    with pytest.raises(ValueError, match="needs Gy"):
        rtdose.write_rt_dose(dose_volume().with_array(dose_volume().array, units="MBq"), tmp_path / "u.dcm")
    sheared = np.array([[1.0, 0, 0.3], [0, 1.0, 0], [0, 0, 1.0]])
    with pytest.raises(ValueError, match="sheared"):
        rtdose.write_rt_dose(dose_volume(sheared / np.linalg.norm(sheared, axis=0)), tmp_path / "s.dcm")
    assert list(tmp_path.iterdir()) == []
