"""Whole-body and red-marrow results of a SPECT/CT dose calculation, with the SPECT body for comparison.

The retention readings give the whole-body dose (:mod:`.assessment`). The SPECT/CT study gives a second
estimate where its field of view holds the whole body: the TIA in the patient's body (CT outline and
every VOI) of the partial-volume-corrected TIA map, times the whole-body S value. A body that touches
an edge of the field of view is cut off: its SPECT figure then covers the imaged part only (its TIA
with the S value of the imaged mass) and is flagged as not comparable.
"""

import numpy as np

from MIBGDosimetryLib.wholebody.assessment import assess_whole_body
from MIBGDosimetryLib.wholebody.measurements import read_blood_csv, read_retention_csv
from MIBGDosimetryLib.wholebody.s_value import MAX_BODY_MASS_KG, MIN_BODY_MASS_KG, whole_body_s_value


def spect_body_comparison(tia_map_MBq_h, dose_map_Gy, body_mask, voi_masks, density_g_ml, voxel_ml,
                          patient_mass_kg):
    """Whole-body figures of the SPECT/CT: body TIA, mass in the field of view, whether the body is
    cut off by the field of view (and at which faces), the whole-body dose from the body TIA and the
    mean of the dose map over the body."""
    region = np.asarray(body_mask, dtype=bool).copy()
    for mask in voi_masks:
        region |= np.asarray(mask, dtype=bool)
    if not region.any():
        raise ValueError("The SPECT/CT has no body outline to compare with the whole-body readings.")
    density = np.ones(region.shape) if density_g_ml is None else np.asarray(density_g_ml, dtype=float)
    mass_kg = float(density[region].sum() * voxel_ml / 1000.0)
    cut = [f"{side} of axis {'kji'[axis]}" for axis in range(region.ndim) for side, index in (("start", 0), ("end", -1))
           if np.take(region, index, axis=axis).any()]
    covered = not cut
    tia = float(np.asarray(tia_map_MBq_h)[region].sum())
    mean_dose = float(np.average(np.asarray(dose_map_Gy)[region], weights=density[region]))
    entry = {"spect_body_tia_MBq_h": tia, "spect_body_mass_kg": mass_kg, "field_of_view_covers_whole_body": covered,
             "body_cut_at": cut, "spect_body_mean_dose_Gy": mean_dose, "spect_wb_dose_Gy": None, "warnings": []}
    s_mass = patient_mass_kg if covered else mass_kg
    if MIN_BODY_MASS_KG <= s_mass <= MAX_BODY_MASS_KG:
        entry["spect_wb_dose_Gy"] = tia * whole_body_s_value(s_mass)["S_Gy_per_MBq_h"]
    if not covered:
        entry["warnings"].append(f"The SPECT field of view cuts the body ({', '.join(cut)}): its whole-body figures "
                                 f"cover the imaged {mass_kg:.1f} kg only and are not comparable with the "
                                 "whole-body readings.")
    elif abs(mass_kg - patient_mass_kg) > 0.2 * patient_mass_kg:
        entry["warnings"].append(f"The body outline on the CT weighs {mass_kg:.1f} kg, the patient "
                                 f"{patient_mass_kg:g} kg: check the outline and the mass.")
    return entry


def check_whole_body_inputs(options, study):
    """Read the whole-body readings and blood samples named in ``options`` and check the mass and the
    administered activity, so that bad input stops the calculation before the long part. Returns the
    readings, the blood samples (or None) and the administered activity (MBq)."""
    if options.patient_mass_kg is None:
        raise ValueError("The whole-body dose needs the patient's mass: give --mass-kg (patient_mass_kg).")
    whole_body_s_value(options.patient_mass_kg)
    activity = options.administered_activity_MBq or study.administered_activity_MBq
    if activity is None:
        raise ValueError("The whole-body dose needs the administered activity, which the study does not give: "
                         "give --administered-MBq (administered_activity_MBq).")
    readings = read_retention_csv(options.wholebody_measurements)
    blood = read_blood_csv(options.blood_samples) if options.blood_samples else None
    return readings, blood, activity


def study_whole_body(options, study, body_mask, vois, tia_map_MBq_h, dose_map_Gy, density_g_ml, voxel_ml):
    """``{"whole_body": ..., "red_marrow": ...}`` for the dose results, from ``options``
    (wholebody_measurements, blood_samples, patient_mass_kg, administered_activity_MBq) and the study."""
    readings, blood, activity = check_whole_body_inputs(options, study)
    summary = assess_whole_body(readings, activity, options.patient_mass_kg, blood=blood,
                                tissue_parameters_path=options.tissue_parameters_path)
    red_marrow = summary.pop("red_marrow")
    summary["spect_comparison"] = spect_body_comparison(tia_map_MBq_h, dose_map_Gy, body_mask,
                                                        [voi.mask for voi in vois], density_g_ml, voxel_ml,
                                                        options.patient_mass_kg)
    summary["warnings"] += summary["spect_comparison"].pop("warnings")
    return {"whole_body": summary, "red_marrow": red_marrow}
