"""The compatibility layer over numpy 1.26/2.x and pydicom 2.4/3.x, on whichever releases are installed
(``make test`` runs the suite once per environment of Testing/environments/)."""

import os
import pathlib
import re
import struct

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from MIBGDosimetryLib import compat

REPO = pathlib.Path(__file__).resolve().parents[1]
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _dataset(transfer_syntax=ExplicitVRLittleEndian):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Compat^Test", "COMPAT-1", "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    return ds


def _file_meta_bytes(path):
    """Preamble, prefix and the raw (0002,eeee) elements of a file, parsed by hand (explicit VR LE)."""
    data = pathlib.Path(path).read_bytes()
    elements, offset = {}, 132
    while offset + 8 <= len(data) and struct.unpack_from("<H", data, offset)[0] == 0x0002:
        group, element = struct.unpack_from("<HH", data, offset)
        vr = data[offset + 4:offset + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
            length, start = struct.unpack_from("<I", data, offset + 8)[0], offset + 12
        else:
            length, start = struct.unpack_from("<H", data, offset + 6)[0], offset + 8
        elements[element] = data[start:start + length]
        offset = start + length
    return data[:128], data[128:132], elements


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_dicom_file_has_preamble_prefix_and_complete_file_meta(tmp_path, transfer_syntax):
    ds = _dataset(transfer_syntax)
    path = tmp_path / "object.dcm"
    compat.save_dicom_file(ds, path)

    preamble, prefix, meta = _file_meta_bytes(path)
    assert preamble == b"\x00" * 128 and prefix == b"DICM"
    # PS3.10 7.1: version, media storage class and instance, transfer syntax, implementation class.
    assert meta[0x0001] == b"\x00\x01"
    assert meta[0x0002].rstrip(b"\x00").decode() == SECONDARY_CAPTURE
    assert meta[0x0003].rstrip(b"\x00").decode() == ds.SOPInstanceUID
    assert meta[0x0010].rstrip(b"\x00").decode() == transfer_syntax
    assert meta[0x0012]
    back = pydicom.dcmread(path)  # without force: refused unless the file format is right
    assert (back.PatientName, back.PatientID, back.Modality) == ("Compat^Test", "COMPAT-1", "OT")


def test_writing_leaves_the_dataset_as_it_was(tmp_path):
    ds = _dataset()
    before = dict(ds.file_meta)
    compat.save_dicom_file(ds, tmp_path / "object.dcm")
    assert dict(ds.file_meta) == before
    assert "MediaStorageSOPClassUID" not in ds.file_meta


def test_missing_transfer_syntax_is_refused(tmp_path):
    ds = _dataset()
    del ds.file_meta.TransferSyntaxUID
    with pytest.raises((ValueError, AttributeError)):
        compat.save_dicom_file(ds, tmp_path / "object.dcm")


def test_trapezoid_is_exact_for_piecewise_linear_and_converges_for_sine():
    x = np.array([0.0, 1.0, 3.0, 4.0])
    y = np.array([0.0, 2.0, 2.0, 0.0])  # a trapezoid of height 2, bases 4 and 2: area 6
    assert compat.trapezoid(y, x) == 6.0
    grid = np.linspace(0.0, np.pi, 2001)
    rows = np.vstack([np.sin(grid), 2.0 * np.sin(grid)])
    np.testing.assert_allclose(compat.trapezoid(rows, grid, axis=1), [2.0, 4.0], rtol=1e-6)


def test_highdicom_writers_leave_numpy_unchanged():
    had_alias = hasattr(np, "float_")
    seen = []

    @compat.lends_numpy_aliases_to_highdicom
    def probe():
        seen.append(hasattr(np, "float_"))
        return "result"

    assert probe() == "result"
    assert hasattr(np, "float_") == had_alias
    assert seen == [_highdicom_needs_the_alias() or had_alias]


def _highdicom_needs_the_alias():
    try:
        import highdicom
    except ImportError:
        return False
    return not hasattr(np, "float_") and tuple(int(p) for p in highdicom.__version__.split(".")[:2]) < (0, 23)


def test_no_release_specific_call_outside_the_compatibility_module():
    """numpy-2-only and pydicom-3-only calls break Slicer 5.10 (numpy 2.0, pydicom 2.4) or numpy 1.26."""
    forbidden = re.compile(r"np\.trapezoid\(|np\.trapz\(|enforce_file_format|write_like_original|pydicom\.examples"
                           r"|set_pixel_data|pydicom\.pixels|np\.float_\b")
    offenders = []
    for folder in ("MIBGDosimetry", "MIBGCalibration", "Testing", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name in ("compat.py", os.path.basename(__file__)):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if forbidden.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "use MIBGDosimetryLib.compat instead:\n" + "\n".join(offenders)
