"""Registration of sequential SPECT/CT time points to a reference time point.

Matrix convention: ``matrix_ras`` is a RAS 4x4 matrix mapping reference-frame points to a time
point's frame, so resampling that time point's image at ``matrix_ras @ x`` puts it on the reference grid.
"""

from MIBGDosimetryLib.registration.resample import resample_counts, resample_image, resample_mask
from MIBGDosimetryLib.registration.result import RegistrationResult
from MIBGDosimetryLib.registration.rigid import register_rigid

__all__ = ["RegistrationResult", "register_rigid", "resample_counts", "resample_image", "resample_mask"]
