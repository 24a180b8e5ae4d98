"""Volumes of interest: adaptive-threshold lesions on SPECT, CT-based organs, DICOM SEG and RTSTRUCT
import, and VOIs carried between time points."""
