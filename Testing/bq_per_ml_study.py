"""A study's SPECTs rewritten as a quantitative vendor reconstruction stores them: Units BQML, the activity
concentration C / (Q t V) by EANM eq. 9 written out here, independently of the analysis' units code."""

import os

import pydicom


def rewrite_spects_in_bq_per_ml(folder, q_cps_per_MBq):
    """Rewrite every reconstructed NM series under ``folder`` in place to Units BQML; returns how many files."""
    converted = 0
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            if name.endswith((".json", ".csv")):
                continue
            ds = pydicom.dcmread(path, force=True)
            if ds.get("Modality") != "NM" or "RECON" not in str(list(ds.get("ImageType", []))[2:3]):
                continue
            duration_s = sum(int(r.NumberOfFramesInRotation) * float(r.ActualFrameDuration)
                             for r in ds.RotationInformationSequence) / 1000.0
            voxel_ml = float(ds.PixelSpacing[0]) * float(ds.PixelSpacing[1]) * float(ds.SpacingBetweenSlices) / 1000.0
            slope = float(ds.get("RescaleSlope", 1.0)) * 1e6 / (q_cps_per_MBq * duration_s * voxel_ml)
            ds.RescaleSlope, ds.RescaleIntercept, ds.Units = f"{slope:.12g}", "0", "BQML"
            ds.save_as(path)
            converted += 1
    return converted
