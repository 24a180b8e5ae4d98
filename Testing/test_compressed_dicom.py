"""Compressed transfer syntaxes common from PACS are decoded to the very pixels that were written.

Each study's SPECT and CT files are re-encoded here with an encoder other than the decoder the
study reader uses (RLE by pydicom's own encoder, JPEG Lossless and JPEG 2000 by GDCM, JPEG-LS by
CharLS; the reader decodes with pylibjpeg), then read by the loader and compared with the uncompressed original.
"""

import datetime
import os

import numpy as np
import pydicom
import pytest

import study_fixtures as fx
from MIBGDosimetryLib.study import load_study

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def _gdcm(syntax_name):
    def encode(path):
        _gdcm_encode(path, syntax_name)
    return encode


def _gdcm_encode(path, syntax_name):
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(path)
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax_name)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(path)
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()


def _pydicom_encoder(syntax):
    def encode(path):
        ds = pydicom.dcmread(path)
        try:
            ds.compress(syntax)
        except (RuntimeError, NotImplementedError, ValueError) as error:
            pytest.skip(f"no {syntax.name} encoder with pydicom {pydicom.__version__}: {error}")
        ds.save_as(path)
    return encode


ENCODERS = {
    "RLE Lossless": _pydicom_encoder(pydicom.uid.RLELossless),
    "JPEG Lossless SV1": _gdcm("JPEGLosslessProcess14_1"),
    "JPEG 2000 Lossless": _gdcm("JPEG2000Lossless"),
    "JPEG-LS Lossless": _pydicom_encoder(pydicom.uid.JPEGLSLossless),
}
EXPECTED_SYNTAX = {"RLE Lossless": pydicom.uid.RLELossless, "JPEG Lossless SV1": JPEG_LOSSLESS_SV1,
                   "JPEG 2000 Lossless": pydicom.uid.JPEG2000Lossless, "JPEG-LS Lossless": pydicom.uid.JPEGLSLossless}


def _study(root):
    """One time point, SPECT and CT of 32 x 32 pixels (JPEG 2000 encoders need more than a few pixels)."""
    administration = datetime.datetime(2026, 3, 2, 10, 30)
    visit = fx.Visit(administration + datetime.timedelta(hours=4))
    rng = np.random.default_rng(5)
    spect = rng.integers(0, 4000, size=(4, 32, 32)).astype(np.uint16)
    ct = rng.integers(0, 2500, size=(4, 32, 32)).astype(np.uint16)
    spect_path = fx.write_nm_tomo(os.path.join(root, "spect.dcm"), visit, spect, (4.8, 4.8), 4.8, (0.0, 0.0, 0.0),
                                  administration=administration)
    ct_paths = fx.write_ct(os.path.join(root, "ct"), visit, ct, (1.5, 1.5),
                           [np.array([0.0, 0.0, 3.0 * k]) for k in range(4)])
    return spect, ct.astype(np.float64) - 1024.0, [spect_path] + ct_paths


@pytest.mark.parametrize("syntax", sorted(ENCODERS))
def test_compressed_spect_and_ct_decode_to_the_written_pixels(tmp_path, syntax):
    spect, ct_hu, paths = _study(str(tmp_path))
    for path in paths:
        ENCODERS[syntax](path)
        assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == EXPECTED_SYNTAX[syntax]
    tp = load_study(str(tmp_path)).timepoints[0]
    np.testing.assert_array_equal(tp.spect.array, spect)
    np.testing.assert_array_equal(tp.ct.array, ct_hu)
