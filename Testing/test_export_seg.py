"""DICOM SEG export of the VOIs: valid (dciodvfy), referencing the CT images, masks read back unchanged."""

import numpy as np
import pydicom
import pytest

from export_fixtures import ct_geometry, dciodvfy_errors, write_ct_series
from MIBGDosimetryLib.export import seg
from MIBGDosimetryLib.volume import ImageVolume


@pytest.fixture
def ct(tmp_path):
    paths, hu, uids = write_ct_series(tmp_path / "ct")
    shape, spacing, corner = ct_geometry()
    # Axial CT: LPS corner (x, y, z) is RAS (-x, -y, z); rows and columns run along -R and -A.
    reference = ImageVolume(hu, spacing, (-corner[0], -corner[1], corner[2]), np.diag([-1.0, -1.0, 1.0]), "HU")
    return reference, [pydicom.dcmread(p) for p in paths], uids


def test_seg_is_valid_references_the_ct_and_reads_back(tmp_path, ct):
    reference, datasets, uids = ct
    k, j, i = np.indices(reference.array.shape)
    masks = {"liver": (i < 10) & (k > 1), "lesion A": ((i - 14) ** 2 + (j - 8) ** 2 < 9) & (k == 3)}
    # The CT images are given in reverse order: slices are matched by position, not by list order.
    path = seg.write_seg(masks, reference, datasets[::-1], tmp_path / "seg.dcm", kinds={"lesion A": "lesion"})
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == uids["study"] and ds.FrameOfReferenceUID == uids["frame"]
    referenced = {item.ReferencedSOPInstanceUID for series in ds.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    assert referenced == {d.SOPInstanceUID for d in datasets}
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver", "lesion A"]
    assert ds.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    # Empty frames are left out: the lesion lies on one slice, the liver on four.
    assert int(ds.NumberOfFrames) == 4 + 1
    back = seg.read_seg_masks(path, reference)
    assert set(back) == set(masks)
    for name, mask in masks.items():
        np.testing.assert_array_equal(back[name], mask)


def test_masks_off_the_ct_grid_or_empty_are_refused(tmp_path, ct):
    reference, datasets, _ = ct
    mask = np.zeros(reference.array.shape, dtype=bool)
    with pytest.raises(ValueError, match="empty"):
        seg.write_seg({"liver": mask}, reference, datasets, tmp_path / "a.dcm")
    mask[2, 3, 4] = True
    shifted = ImageVolume(reference.array, reference.spacing_mm, (0.0, 0.0, 1.5), reference.directions)
    with pytest.raises(ValueError, match="No CT image lies"):
        seg.write_seg({"liver": mask}, shifted, datasets, tmp_path / "b.dcm")
    with pytest.raises(ValueError, match="resample"):
        seg.write_seg({"liver": mask[:, :, :-1]}, reference, datasets, tmp_path / "c.dcm")
    assert list(tmp_path.glob("*.dcm")) == []


@pytest.mark.parametrize("source_value", ["", "PASSPORT"])
def test_seg_of_a_ct_with_an_empty_or_invalid_type_of_patient_id_is_valid(tmp_path, ct, source_value):
    """Archives write TypeOfPatientID empty or with values outside TEXT / RFID / BARCODE; the SEG
    must not inherit them (Patient module, DICOM PS3.3 C.7.1.1)."""
    reference, datasets, _ = ct
    for ds in datasets:
        ds.TypeOfPatientID = source_value
    k, j, i = np.indices(reference.array.shape)
    path = seg.write_seg({"liver": (i < 10) & (k > 1)}, reference, datasets, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []
    assert "TypeOfPatientID" not in pydicom.dcmread(path)
