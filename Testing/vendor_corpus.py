"""A corpus of realistic vendor and archive header variants, each with the outcome it must have.

Built from the DICOM standard's NM, PET and related modules with :mod:`study_fixtures`; each case is
a three-visit study written the way some camera or archive writes it. ``CASES`` maps a case name to
``(writer, expected)``: the writer makes the study under a folder and returns the written time
points; ``expected`` is ``("computed", units)`` or ``("refused", regex of the reason)``.

The activity every computed case must give is the one of the plain counts study of the same seed:
Bq/ml variants are made from the counts by EANM eq. 9 written out by hand (C / (Q t V)).
"""

import datetime
import math
import os

import numpy as np
import pydicom
from pydicom.dataset import Dataset

import study_fixtures as fx

Q_CPS_PER_MBQ = 23.5
DURATION_S = 60 * 20.0
VOXEL_ML = 4.42 * 4.8 * 3.9 / 1000.0
HOURS = (4.0, 24.0, 72.0)
ADMINISTRATION = datetime.datetime(2026, 3, 2, 10, 30)
SEED = 11


def bq_per_ml_per_count():
    return 1e6 / (Q_CPS_PER_MBQ * DURATION_S * VOXEL_ML)


def _study(**spect_kwargs_of_index):
    def write(root):
        kwargs = {i: dict(spect_kwargs_of_index.get("all", {})) for i in range(len(HOURS))}
        return fx.write_study(root, hours=HOURS, seed=SEED, spect_kwargs=kwargs,
                              orientation=spect_kwargs_of_index.get("orientation", (1, 0, 0, 0, 1, 0)))
    return write


def _per_index(make):
    def write(root):
        return fx.write_study(root, hours=HOURS, seed=SEED, spect_kwargs={i: make(i) for i in range(len(HOURS))})
    return write


def _two_heads(root):
    """Dual-head camera: two DetectorInformationSequence items (one per head), the heads acquiring at
    once, so the duration is the frames of one rotation times the frame duration, not twice that."""
    written = fx.write_study(root, hours=HOURS, seed=SEED)
    for tp in written:
        ds = pydicom.dcmread(tp.spect_path)
        second = Dataset()
        for element in ds.DetectorInformationSequence[0]:
            second.add(element)
        ds.DetectorInformationSequence.append(second)
        ds.NumberOfDetectors = 2
        ds.save_as(tp.spect_path)
    return written


def _multi_bed(root):
    """Two bed positions reconstructed as separate series of one visit."""
    written = fx.write_study(root, hours=HOURS, seed=SEED)
    visit = fx.Visit(ADMINISTRATION + datetime.timedelta(hours=HOURS[0], minutes=22))
    stored = np.ones((5, 6, 7), np.uint16)
    fx.write_nm_tomo(os.path.join(root, "tp1", "bed2.dcm"), visit, stored, (4.8, 4.42), 3.9, (-20.0, -25.0, 300.0),
                     administration=ADMINISTRATION, description="SPECT bed 2")
    return written


def _pet_objects(root):
    """SPECT stored as PET Image objects (one file per slice, Units BQML, a slope per slice)."""
    written = fx.write_study(root, hours=HOURS, seed=SEED)
    for tp in written:
        os.remove(tp.spect_path)
        positions = [tp.spect_origin_lps + np.array([0.0, 0.0, 3.9 * k]) for k in range(tp.spect_stored.shape[0])]
        fx.write_pet_slices(os.path.join(os.path.dirname(tp.spect_path), "pet"), tp.visit, tp.spect_stored,
                            [bq_per_ml_per_count()] * len(positions), (4.8, 4.42), positions, ADMINISTRATION,
                            DURATION_S * 1000.0, units="BQML")
    return written


def _jpeg_lossless(root):
    """The archive's JPEG Lossless (process 14, first-order prediction) transfer syntax, by GDCM (the
    case is skipped where the test-only encoder is not installed)."""
    import pytest

    gdcm = pytest.importorskip("gdcm")

    written = fx.write_study(root, hours=HOURS, seed=SEED)
    for tp in written:
        reader = gdcm.ImageReader()
        reader.SetFileName(tp.spect_path)
        reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(tp.spect_path)
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        writer.Write()
    return written


TILT = math.radians(12.0)
CASES = {
    "NM multi-frame, counts": (_study(), ("computed", "counts")),
    "NM multi-frame, two heads": (_two_heads, ("computed", "counts")),
    "NM, float rescale to counts": (_study(all={"rescale_slope": 1.0}), ("computed", "counts")),
    "NM, Units BQML with float rescale": (_study(all={"rescale_slope": bq_per_ml_per_count(),
                                                      "replace": {"Units": "BQML"}}), ("computed", "Bq/ml")),
    "NM, BQML decay corrected to the administration": (_per_index(lambda i: {
        "rescale_slope": bq_per_ml_per_count() / fx.decay_factor(HOURS[i] + DURATION_S / 7200.0),
        "replace": {"Units": "BQML", "DecayCorrection": "ADMIN", "CorrectedImage": ["DECY", "ATTN", "SCAT"]}}),
        ("computed", "Bq/ml")),
    "NM, real-world value mapping to Bq/ml": (_study(all={"replace": {
        "RealWorldValueMappingSequence": fx.real_world_value_mapping(bq_per_ml_per_count())}}), ("computed", "Bq/ml")),
    "SPECT as PET Image objects, BQML": (_pet_objects, ("computed", "Bq/ml")),
    "NM, tilted orientation": (_study(orientation=(math.cos(TILT), 0.0, -math.sin(TILT), 0.0, 1.0, 0.0)),
                               ("computed", "counts")),
    "NM, JPEG Lossless from PACS": (_jpeg_lossless, ("computed", "counts")),
    "NM, two bed positions as two series": (_multi_bed, ("refused", r"two reconstructions or bed positions")),
    "NM, Tc-99m window and code": (_study(all={"radionuclide_code": ("C-163A8", "SRT", "^99m^Technetium"),
                                                "windows": (("TC", 129.0, 150.0),)}),
                                   ("refused", r"not a 131I acquisition.*129-150 keV")),
    "NM, Units SUV": (_study(all={"replace": {"Units": "GML"}}), ("refused", r"field Units is 'GML'")),
    "NM, unknown DecayCorrection": (_study(all={"replace": {"Units": "BQML", "DecayCorrection": "XYZ"}}),
                                    ("refused", r"DecayCorrection is 'XYZ'")),
}
