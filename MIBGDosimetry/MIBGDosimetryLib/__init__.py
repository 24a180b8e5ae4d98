"""GUI-free library of the MIBGDosimetry module.

Everything that computes lives here (numpy/scipy/SimpleITK functions and logic classes that
take and return MRML nodes with the scene passed in), so that it runs both inside the Slicer
application and headless on Slicer's MRML library (``slicer-core``).
"""

__version__ = "0.1.0"
