"""Whole-body and red-marrow absorbed dose of one administration, as one JSON-ready summary.

Used by ``mibgdose wholebody`` and by the SPECT/CT dose calculation (``mibgdose dose
--wholebody-measurements``). ``D_WB = A~_WB S(WB <- WB)`` (MIRD schema) with the whole-body TIA of
:mod:`.retention` and the S value of :mod:`.s_value`; red marrow by :mod:`.marrow`; the activity for a
prescribed whole-body dose by :mod:`.prescription`.
"""

import numpy as np

from MIBGDosimetryLib import __version__
from MIBGDosimetryLib.dose import radiobiology
from MIBGDosimetryLib.wholebody import marrow, prescription
from MIBGDosimetryLib.wholebody.measurements import read_blood_csv, read_retention_csv
from MIBGDosimetryLib.wholebody.retention import whole_body_tia
from MIBGDosimetryLib.wholebody.s_value import whole_body_s_value

ASSUMPTIONS = [
    "activity uniformly distributed in the whole body",
    "the first whole-body reading is taken before any excretion and equals the administered activity",
    "readings proportional to the activity in the body (same geometry, distance and patient position each time)",
    "electrons absorbed in the body; photons with the absorbed fraction of a soft-tissue sphere (the upper estimate) "
    "or ellipsoid of the patient's mass; the other shape's dose is given beside it",
    "the whole-body dose uncertainty covers the retention curve, not the S-value model",
]


def assess_whole_body(measurements, administered_MBq, mass_kg, *, blood=None, target_Gy=None,
                      subtract_delivered=False, method="auto", rmblr=marrow.DEFAULT_RMBLR, rmblr_uncertainty=0.0,
                      red_marrow_mass_g=None, tissue_parameters_path=None, shape="sphere"):
    """Whole-body dose summary. ``measurements`` and ``blood`` are CSV paths or already read
    :class:`RetentionReadings` / :class:`BloodSamples`. The BED of the whole-body dose uses the
    ``whole_body`` entry of the tissue-parameter table (:mod:`MIBGDosimetryLib.dose.radiobiology`), that
    of the red marrow by the whole-body method the ``red_marrow`` entry."""
    readings = read_retention_csv(measurements) if not hasattr(measurements, "retention") else measurements
    samples = None
    if blood is not None:
        samples = read_blood_csv(blood) if not hasattr(blood, "concentration_MBq_per_mL") else blood
    s_value = whole_body_s_value(mass_kg, shape)
    other_shape = "ellipsoid" if shape == "sphere" else "sphere"
    other_s = whole_body_s_value(mass_kg, other_shape)["S_Gy_per_MBq_h"]
    tia = whole_body_tia(readings, administered_MBq, method)
    s = s_value["S_Gy_per_MBq_h"]
    dose = tia["tia_MBq_h"] * s
    dose_u = tia["tia_uncertainty_MBq_h"] * s
    warnings = list(tia["warnings"])
    red_marrow = {"whole_body": marrow.whole_body_method(dose, dose_u)}
    red_marrow["whole_body"]["red_marrow_bed_Gy"] = _bed(dose, tia["terms"], tissue_parameters_path, "red_marrow")
    if samples is not None:
        red_marrow["blood"] = marrow.blood_method(samples, tia["tia_MBq_h"], s_value, mass_kg, rmblr,
                                                  rmblr_uncertainty, red_marrow_mass_g)
        warnings += [f"blood curve: {w}" for w in red_marrow["blood"].pop("warnings")]
    summary = {
        "administered_MBq": float(administered_MBq),
        "mass_kg": float(mass_kg),
        "retention_method": tia["method"],
        "wb_tia_MBq_h": tia["tia_MBq_h"],
        "wb_tia_uncertainty_MBq_h": _finite_or_none(tia["tia_uncertainty_MBq_h"]),
        "wb_tia_trapezoid_physical_decay_MBq_h": tia["tia_trapezoid_physical_decay_MBq_h"],
        "wb_dose_Gy": dose,
        "wb_dose_Gy_uncertainty": _finite_or_none(dose_u),
        "wb_dose_trapezoid_physical_decay_Gy": tia["tia_trapezoid_physical_decay_MBq_h"] * s,
        "wb_dose_per_activity_Gy_per_MBq": dose / administered_MBq,
        "wb_bed_Gy": _bed(dose, tia["terms"], tissue_parameters_path, "whole_body"),
        "s_value_Gy_per_MBq_h": s,
        "s_value": s_value,
        f"wb_dose_{other_shape}_Gy": tia["tia_MBq_h"] * other_s,
        f"s_value_{other_shape}_Gy_per_MBq_h": other_s,
        "effective_half_lives_h": tia["effective_half_lives_h"],
        "retention_parameters": tia["parameters"],
        "coverage_fraction": tia["coverage_fraction"],
        "red_marrow_dose_Gy": {name: entry["red_marrow_dose_Gy"] for name, entry in red_marrow.items()},
        "red_marrow": red_marrow,
        "activity_for_target_MBq": None,
        "measurements": readings.to_dict(),
        "assumptions": list(ASSUMPTIONS),
        "warnings": warnings,
        "software": f"SlicerMIBGDosimetry {__version__}",
    }
    if samples is not None:
        summary["blood_samples"] = samples.to_dict()
    if target_Gy is not None:
        target = prescription.activity_for_target(target_Gy, dose, dose_u, administered_MBq, subtract_delivered)
        summary["activity_for_target_MBq"] = target["activity_MBq"]
        summary["activity_for_target"] = target
        summary["assumptions"].append("the next administration has the kinetics of this one (same dose per MBq)")
    return summary


def _bed(dose_Gy, terms, tissue_parameters_path, tissue_name):
    """BED (Gy) of a dose delivered with the retention curve's time course, with the parameters of
    ``tissue_name`` in the tissue-parameter table (None without that entry)."""
    tissue = radiobiology.load_tissue_parameters(tissue_parameters_path).get(tissue_name)
    if tissue is None:
        return None
    g = radiobiology.lea_catcheside_g(terms[0], terms[1], tissue["repair_half_time_h"])
    return float(radiobiology.bed_Gy(dose_Gy, g, tissue["alpha_beta_Gy"]))


def _finite_or_none(value):
    return float(value) if value is not None and np.isfinite(value) else None
