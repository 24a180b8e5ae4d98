"""Volumes as Slicer's DICOM module loads them, for tests on slicer-core's real MRML.

A volume node is read by vtkITK (GDCM) through the volumes logic from the series' files, with the
attribute DICOM.instanceUIDs (as Slicer's DICOMScalarVolumePlugin sets it). The DICOM database itself
(CTK) cannot exist here: its fileForInstance is stood in for by a dict from scanned files.
"""

import os

import numpy as np


def dicom_database_of(folder):
    """SOPInstanceUID -> path of every DICOM file under ``folder``, and the series' files by modality."""
    import pydicom

    files, series = {}, {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            if not name.endswith(".dcm"):
                continue
            path = os.path.join(root, name)
            header = pydicom.dcmread(path, stop_before_pixels=True)
            files[str(header.SOPInstanceUID)] = path
            if header.Modality in ("NM", "CT"):
                series.setdefault(str(header.SeriesInstanceUID), []).append(header)
    return files, series


def load_like_the_dicom_module(context, headers, name):
    """A volume node as DICOMScalarVolumePlugin loads a series: the files sorted along the slice normal,
    read by vtkITK (GDCM) through the volumes logic, and DICOM.instanceUIDs in that order."""
    import vtk

    def position(header):
        if "ImagePositionPatient" not in header:
            return 0.0
        normal = np.cross(*np.reshape(np.asarray(header.ImageOrientationPatient, dtype=float), (2, 3)))
        return float(np.dot(normal, np.asarray(header.ImagePositionPatient, dtype=float)))

    ordered = sorted(headers, key=position)
    paths = vtk.vtkStringArray()
    for header in ordered:
        paths.InsertNextValue(header.filename)
    node = context.volumes_logic.AddArchetypeVolume(ordered[0].filename, name, 0, paths)
    assert node is not None, name
    node.SetAttribute("DICOM.instanceUIDs", " ".join(str(h.SOPInstanceUID) for h in ordered))
    return node
