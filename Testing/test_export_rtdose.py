"""DICOM RT Dose and its RT Plan: validated with dciodvfy, read back with pydicom and with Slicer's reader."""

import numpy as np
import pydicom
import pytest

from export_fixtures import dciodvfy_errors, write_ct_series
from MIBGDosimetryLib import mrml
from MIBGDosimetryLib.export import rtdose, rtplan
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


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("directions", [None, rotation_z(20.0), np.diag([1.0, 1.0, -1.0])],
                         ids=["axial", "oblique", "slices-against-normal"])
def test_rt_dose_reads_back_with_geometry_and_values(tmp_path, directions, bits):
    dose = dose_volume(directions)
    options = {} if bits == 16 else {"bits": 32}
    path = rtdose.write_rt_dose(dose, tmp_path / "dose.dcm", patient={"name": "Doe^Jane", "id": "P1"}, **options)
    ds = pydicom.dcmread(path)
    assert (ds.DoseUnits, ds.DoseType, ds.BitsAllocated, ds.PixelRepresentation) == ("GY", "PHYSICAL", bits, 0)
    scaling = float(ds.DoseGridScaling)
    # The maximum dose maps to the top of the integer range (up to the 12 digits of DoseGridScaling).
    top = 2 ** bits - 1
    assert top * (1 - 1e-9) - 1 <= ds.pixel_array.max() <= top
    assert scaling * top == pytest.approx(dose.array.max(), rel=2e-9)
    assert [float(v) for v in ds.GridFrameOffsetVector] == pytest.approx([0, 3, 6, 9, 12])
    read = rtdose.read_rt_dose(path)
    assert read.units == "Gy" and read.spacing_mm == pytest.approx((2.0, 2.5, 3.0))
    # Round-off: at most half a DoseGridScaling step, i.e. max/(2 (2^bits - 1)).
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


@pytest.mark.parametrize("with_ct", [True, False], ids=["on-ct", "no-ct"])
def test_dose_and_its_plan_pass_dciodvfy_and_the_dose_references_the_plan(tmp_path, with_ct):
    ct = pydicom.dcmread(write_ct_series(tmp_path / "ct")[0][0]) if with_ct else None
    paths = rtplan.write_rt_dose_with_plan(dose_volume(), tmp_path / "out", reference_ct=ct,
                                           patient=None if with_ct else {"name": "Doe^Jane", "id": "P1"},
                                           administered_activity_MBq=3700.0, plan_intent="CURATIVE")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["rtdose.dcm", "rtplan.dcm"]
    assert dciodvfy_errors(paths["rtdose"]) == []
    assert dciodvfy_errors(paths["rtplan"]) == []
    dose, plan = pydicom.dcmread(paths["rtdose"]), pydicom.dcmread(paths["rtplan"])
    assert dose.BitsAllocated == 16 and dose.DoseSummationType == "PLAN"
    reference = dose.ReferencedRTPlanSequence[0]
    assert (reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID) == \
        (plan.SOPClassUID, plan.SOPInstanceUID)
    assert plan.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.5" and plan.Modality == "RTPLAN"
    assert (plan.RTPlanLabel, plan.RTPlanGeometry, plan.PlanIntent) == ("131I-mIBG", "TREATMENT_DEVICE", "CURATIVE")
    assert "3700 MBq" in plan.RTPlanDescription
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert plan[keyword].value == dose[keyword].value, keyword
    assert plan.SeriesInstanceUID != dose.SeriesInstanceUID
    if with_ct:
        assert (plan.StudyInstanceUID, plan.FrameOfReferenceUID) == (ct.StudyInstanceUID, ct.FrameOfReferenceUID)
    read = rtdose.read_rt_dose(paths["rtdose"])
    scaling = float(dose.DoseGridScaling)
    assert scaling == pytest.approx(dose_volume().array.max() / 65535, rel=1e-9)
    assert_same_dose_in_space(dose_volume(), read, scaling / 2 * 1.0001)


def test_dose_without_a_plan_lacks_only_the_plan_reference(tmp_path):
    ct = pydicom.dcmread(write_ct_series(tmp_path / "ct")[0][0])
    plain = rtdose.write_rt_dose(dose_volume(), tmp_path / "dose.dcm", reference_ct=ct)
    assert dciodvfy_errors(plain) == [MISSING_PLAN]


def test_dose_and_plan_are_written_together_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="plan intent"):
        rtplan.write_rt_dose_with_plan(dose_volume(), out, plan_intent="HOPEFUL")
    with pytest.raises(ValueError, match="same file"):
        rtplan.write_rt_dose_with_plan(dose_volume(), out, dose_filename="x.dcm", plan_filename="x.dcm")
    with pytest.raises(ValueError, match="positive"):
        rtplan.write_rt_dose_with_plan(dose_volume(), out, administered_activity_MBq=0.0)
    out.mkdir()
    (out / "rtplan.dcm").mkdir()  # the plan cannot replace a folder: its rename fails after the dose's
    with pytest.raises(OSError):
        rtplan.write_rt_dose_with_plan(dose_volume(), out)
    assert sorted(p.name for p in out.iterdir()) == ["rtplan.dcm"] and not any((out / "rtplan.dcm").iterdir())


def test_slicer_reader_gets_the_dose_in_gy(tmp_path, mrml_context):
    dose = dose_volume(rotation_z(20.0))
    path = rtdose.write_rt_dose(dose, tmp_path / "dose.dcm")
    node = rtdose.load_rt_dose_into_scene(mrml_context, str(path), name="Dose")
    assert node.GetAttribute(mrml.DOSE_VOLUME_ATTRIBUTE) == "1"
    read = ImageVolume.from_node(mrml_context.scene, node, units="Gy")
    scaling = float(pydicom.dcmread(path).DoseGridScaling)
    assert_same_dose_in_space(dose, read, scaling / 2 * 1.0001 + 1e-12)
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == mrml_context.scene.GetSingletonNode("MIBGDosimetry.DoseColourTable", "vtkMRMLColorTableNode").GetID()
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
