"""Writing DICOM objects: CT series, NM tomographic/static/projection images, segmentations and
seed-point markups.

Geometry comes in as :class:`MIBGDosimetryLib.volume.ImageVolume` (RAS) and is converted to the
DICOM patient frame (LPS) here. Every writer writes to a temporary file beside the target and
renames it, so a file is either complete or absent.
"""
