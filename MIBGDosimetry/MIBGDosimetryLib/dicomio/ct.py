"""CT Image Storage: one file per axial slice, Hounsfield units through RescaleSlope/Intercept."""

import os

import numpy as np
import pydicom
from pydicom.uid import CTImageStorage, generate_uid

from MIBGDosimetryLib.dicomio import common

#: Stored values are HU + 1024 as unsigned 16-bit integers (the usual CT convention), so air
#: (-1000 HU) is stored as 24 and the rescale intercept restores HU.
RESCALE_INTERCEPT_HU = -1024.0


def write_ct_series(volume_hu, folder, study, acquisition_datetime, series_number=1,
                    series_description="CT", kvp=120.0, file_prefix="ct", ctdivol_mGy=None):
    """Write an ImageVolume in HU as a CT series, one file per slice k, into ``folder``.

    ``ctdivol_mGy`` (optional) is written as CTDIvol (0018,9345) of every slice, referred to the
    16 cm CTDI phantom as for children.

    HU values must be integers between -1024 and 64511 (they are stored exactly). Slices are
    numbered (InstanceNumber, file name) in the order of increasing position along the slice
    normal. Returns the list of file paths in that order.
    """
    hu = np.asarray(volume_hu.array)
    if not np.all(np.isfinite(hu)) or not np.array_equal(hu, np.round(hu)):
        raise ValueError("CT values must be whole Hounsfield units; round the image before writing it.")
    stored = hu.astype(np.int64) - int(RESCALE_INTERCEPT_HU)
    if stored.min() < 0 or stored.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"CT values must lie in [-1024, 64511] HU, got [{hu.min()}, {hu.max()}].")
    stored = stored.astype(np.uint16)
    row, column, normal = common.lps_orientation(volume_hu)
    positions = common.slice_positions_lps(volume_hu)
    series_uid = generate_uid()
    rows, columns = stored.shape[1], stored.shape[2]
    paths = []
    for k in range(stored.shape[0]):
        ds = common.new_dataset(CTImageStorage, study, "CT", series_uid, series_number, k + 1,
                                acquisition_datetime, series_description)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.AcquisitionDate = common.dicom_date(acquisition_datetime)
        ds.AcquisitionTime = common.dicom_time(acquisition_datetime)
        ds.KVP = common.ds_decimal(kvp)
        if ctdivol_mGy is not None:
            ds.CTDIvol = float(ctdivol_mGy)
            phantom = pydicom.Dataset()
            phantom.CodeValue, phantom.CodingSchemeDesignator = "113690", "DCM"
            phantom.CodeMeaning = "IEC Head Dosimetry Phantom"
            ds.CTDIPhantomTypeCodeSequence = pydicom.Sequence([phantom])
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [common.ds_decimal(v, 10) for v in positions[k]]
        ds.ImageOrientationPatient = [common.ds_decimal(v, 10) for v in (*row, *column)]
        ds.SliceLocation = common.ds_decimal(float(positions[k] @ normal), 10)
        ds.SliceThickness = common.ds_decimal(volume_hu.spacing_mm[2])
        ds.PixelSpacing = [common.ds_decimal(volume_hu.spacing_mm[1]), common.ds_decimal(volume_hu.spacing_mm[0])]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = common.ds_decimal(RESCALE_INTERCEPT_HU)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = os.path.join(folder, f"{file_prefix}_{k + 1:04d}.dcm")
        paths.append(common.write_dataset(ds, path))
    return paths
