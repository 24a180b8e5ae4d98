"""Registration of every time point of a study to a reference time point.

Each time point's CT is registered to the reference CT; its SPECT shares the CT's frame of reference
and follows the same transform. Without CTs the SPECTs are registered to each other. The SPECTs are
then resampled onto the reference SPECT grid with counts conserved, and the displacement of bright
SPECT structures is added to each result's quality figures.
"""

import numpy as np

from MIBGDosimetryLib.registration import quality as quality_figures
from MIBGDosimetryLib.registration.deformable import register_bspline
from MIBGDosimetryLib.registration.resample import resample_counts
from MIBGDosimetryLib.registration.result import RegistrationResult
from MIBGDosimetryLib.registration.rigid import register_rigid


def _images(timepoint):
    ct = getattr(timepoint, "ct", None)
    spect = getattr(timepoint, "spect", None)
    if spect is None:
        raise ValueError(f"Time point '{getattr(timepoint, 'label', '?')}' has no SPECT image.")
    return ct, spect


def register_timepoints(timepoints, reference_index=0, deformable=False, log=None):
    """Register each time point to ``timepoints[reference_index]``.

    ``timepoints`` are objects with ``spect`` and ``ct`` (ImageVolume or None) attributes, such as
    the study loader's time points. CT-to-CT registration is used when every time point has a CT,
    SPECT-to-SPECT otherwise. ``deformable=True`` adds a regularised B-spline stage after the rigid
    one (CT only). Returns ``(results, registered_spects)``: one :class:`RegistrationResult` and one
    counts-conserving SPECT on the reference SPECT grid per time point (identity for the reference).
    """
    if not timepoints:
        raise ValueError("No time points to register.")
    if not 0 <= reference_index < len(timepoints):
        raise ValueError(f"The reference time point index {reference_index} is outside 0..{len(timepoints) - 1}.")
    images = [_images(tp) for tp in timepoints]
    use_ct = all(ct is not None for ct, _ in images)
    if deformable and not use_ct:
        raise ValueError("Deformable registration needs a CT at every time point.")
    reference_ct, reference_spect = images[reference_index]
    results, registered = [], []
    for index, (ct, spect) in enumerate(images):
        if index == reference_index:
            result = RegistrationResult(matrix_ras=np.eye(4), kind="identity", modality="CT" if use_ct else "SPECT",
                                        quality={"reference": True})
        elif use_ct:
            result = register_rigid(reference_ct, ct)
            if deformable:
                result = register_bspline(reference_ct, ct, result)
        else:
            result = register_rigid(reference_spect, spect)
        moved = resample_counts(spect, reference_spect, result.resampling_transform)
        if index != reference_index:
            shifts = quality_figures.bright_structure_shifts_mm(reference_spect, moved)
            result.quality["bright_structures"] = shifts
            result.quality["max_bright_structure_shift_mm"] = max((s["shift_mm"] for s in shifts), default=None)
            result.quality["rms_bright_structure_shift_mm"] = (
                float(np.sqrt(np.mean([s["shift_mm"] ** 2 for s in shifts]))) if shifts else None)
            result.warnings = quality_figures.registration_warnings(result.quality)
        if log is not None:
            log(f"Time point {index}: {result.kind} registration, quality {result.quality}")
            for warning in result.warnings:
                log(f"Warning: {warning}")
        results.append(result)
        registered.append(moved)
    return results, registered
