"""The few calls that differ between the numpy and pydicom releases the extension runs on.

3D Slicer bundles its own packages and an extension never upgrades them: Slicer 5.10 ships numpy 2.0
and pydicom 2.4, Slicer 5.12 numpy 2.4 and pydicom 3.0; headless use supports numpy 1.26 as well.
"""

import copy
import functools

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

#: pydicom 3 renamed ``save_as(write_like_original=False)`` to ``save_as(enforce_file_format=True)``.
PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])

#: numpy 2.0 renamed ``np.trapz`` to ``np.trapezoid`` (and deprecated the old name).
trapezoid = getattr(np, "trapezoid", None) or np.trapz


def save_dicom_file(ds, path):
    """Write ``ds`` to ``path`` in the DICOM file format (128-byte preamble, "DICM" prefix and a
    complete File Meta Information group), on pydicom 2.4 and 3.x alike.

    The Media Storage SOP Class and Instance UIDs are taken from the dataset's SOP Class and Instance
    UIDs; the Transfer Syntax UID must be in ``ds.file_meta`` (or follow from an implicit VR
    encoding). ``ds`` itself is left as it was.
    """
    if PYDICOM_MAJOR >= 3:
        ds.save_as(path, enforce_file_format=True)
        return
    # pydicom 2.4 completes the file meta of the dataset it writes: lend it a copy, then give the original back.
    original_meta = getattr(ds, "file_meta", None)
    encoding = (ds.is_little_endian, ds.is_implicit_VR)
    ds.file_meta = copy.deepcopy(original_meta) if original_meta is not None else FileMetaDataset()
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None:
        # pydicom 3 encodes by the file meta's transfer syntax; pydicom 2.4 by these flags: make them agree.
        ds.is_little_endian = syntax != ExplicitVRBigEndian
        ds.is_implicit_VR = syntax == ImplicitVRLittleEndian
    try:
        ds.save_as(path, write_like_original=False)
    finally:
        if original_meta is None:
            del ds.file_meta
        else:
            ds.file_meta = original_meta
        ds.is_little_endian, ds.is_implicit_VR = encoding


def lends_numpy_aliases_to_highdicom(function):
    """Decorator for a function that writes with highdicom: on numpy 2 with highdicom 0.22, the last
    release that runs on pydicom 2.4 (so the only one Slicer 5.10 can install), numpy's ``float_``
    alias of ``float64``, removed in numpy 2.0 but still used by highdicom 0.22's Segmentation, is
    restored for the duration of the call only."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            import highdicom
        except ImportError:
            return function(*args, **kwargs)
        release = tuple(int(part) for part in highdicom.__version__.split(".")[:2])
        if hasattr(np, "float_") or release >= (0, 23):
            return function(*args, **kwargs)
        np.float_ = np.float64
        try:
            return function(*args, **kwargs)
        finally:
            del np.float_
    return wrapper
