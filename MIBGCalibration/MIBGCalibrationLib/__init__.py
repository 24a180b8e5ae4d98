"""GUI-free library of the MIBGCalibration module: the quantitative-SPECT calibration chain
(EANM 131I-mIBG dosimetry guidance, eqs. 4-8) and the calibration record."""

from MIBGDosimetryLib import __version__  # one version for the whole extension

__all__ = ["__version__"]
