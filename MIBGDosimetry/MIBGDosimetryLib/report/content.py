"""What the report says, taken from a results dict (``results.json`` of ``mibgdose dose``).

Plain data only (strings, rows, numbers) so that the PDF and the HTML show the same content.
"""

import math

from MIBGDosimetryLib.workflow import severity

#: Columns of the dose table: (heading, key in a VOI result, uncertainty key or None, digits).
DOSE_COLUMNS = (
    ("VOI", "name", None, None),
    ("Kind", "kind", None, None),
    ("Volume (ml)", "volume_ml", None, 3),
    ("Mass (g)", "mass_g", None, 3),
    ("TIA (MBq h)", "tia_MBq_h", "tia_uncertainty_MBq_h", 3),
    ("Mean dose (Gy)", "mean_dose_Gy", "dose_uncertainty_Gy", 3),
    ("Max voxel (Gy)", "max_voxel_dose_Gy", None, 3),
    ("Min voxel (Gy)", "min_voxel_dose_Gy", None, 3),
    ("Max 27-block (Gy)", "max_block27_dose_Gy", None, 3),
    ("Min 27-block (Gy)", "min_block27_dose_Gy", None, 3),
    ("BED (Gy)", "bed_Gy", None, 3),
    ("EUD (Gy)", "eud_Gy", None, 3),
    ("Sphere S (Gy)", "sphere_s_dose_Gy", None, 3),
    ("Local dep. (Gy)", "local_deposition_dose_Gy", None, 3),
    ("TAC model", "tac_model", None, None),
    ("Coverage", "coverage_fraction", None, None),
)


def number(value, digits=3):
    """A number for a table cell with ``digits`` significant digits ('-' when missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}g}"
    return str(value)


def dose_table(results):
    """``(headings, rows)`` of the dose table: one row per VOI, values with uncertainties."""
    headings = [c[0] for c in DOSE_COLUMNS]
    rows = []
    for voi in results.get("vois", []):
        row = []
        for _, key, uncertainty_key, digits in DOSE_COLUMNS:
            value = voi.get(key)
            if key == "coverage_fraction":
                row.append("-" if value is None else f"{100 * value:.0f} %")
            elif digits is None:
                row.append("-" if value is None else str(value))
            elif uncertainty_key and voi.get(uncertainty_key) is not None and value is not None:
                row.append(f"{number(value, digits)} ± {number(voi[uncertainty_key], 2)}")
            else:
                row.append(number(value, digits))
        rows.append(row)
    # A VOI that was asked for but has no dose keeps its row, with the reason where the dose would be.
    for voi in results.get("vois_without_result", []):
        row = ["-"] * len(DOSE_COLUMNS)
        row[0], row[1] = str(voi.get("name")), str(voi.get("kind"))
        row[[c[1] for c in DOSE_COLUMNS].index("mean_dose_Gy")] = f"no result: {voi.get('reason')}"
        rows.append(row)
    return headings, rows


def uncertainty_budget_table(results):
    """``(headings, rows)`` of the uncertainty budget: one row per VOI, one column per term (relative
    standard uncertainty in %, with what it applies to in the heading; a volume term, and a VOI's own term
    that moves only its self-dose share of the mean dose, also with its sensitivity on the mean dose), then
    the TIA and mean-dose totals."""
    terms = []
    for voi in results.get("vois", []):
        for item in voi.get("uncertainty_budget") or []:
            if (item["term"], item["applies_to"]) not in terms:
                terms.append((item["term"], item["applies_to"]))
    headings = ["VOI"] + [f"{term} ({applies_to}) %" for term, applies_to in terms] + ["TIA %", "Mean dose %"]
    rows = []
    for voi in results.get("vois", []):
        values = {(i["term"], i["applies_to"]): _budget_cell(i) for i in voi.get("uncertainty_budget") or []}
        row = [voi.get("name", "-")]
        row += [values.get(key, "-") for key in terms]
        for value_key, uncertainty_key in (("tia_MBq_h", "tia_uncertainty_MBq_h"),
                                           ("mean_dose_Gy", "dose_uncertainty_Gy")):
            value, uncertainty = voi.get(value_key), voi.get(uncertainty_key)
            row.append("-" if not value or uncertainty is None else f"{100 * uncertainty / abs(value):.2g}")
        rows.append(row)
    return headings, rows


def _budget_cell(item):
    """The term's relative uncertainty in %, with its sensitivity on the mean dose where that is not the one on
    the TIA: a volume term's, or a VOI's own term that moves only its self-dose share."""
    text = f"{100 * item['relative_uncertainty']:.2g}"
    on_dose, on_tia = item.get("sensitivity_dose"), item.get("sensitivity_tia")
    if on_dose is not None and (item["applies_to"] == "volume" or
                                (on_tia is not None and item["applies_to"] in ("activity", "tia")
                                 and abs(abs(on_dose) - abs(on_tia)) > 0.005)):
        text += f" (dose x{on_dose:.2f})"
    return text


def key_values(section):
    """``[(key, text)]`` for the scalar entries of a dict section (nested dicts one level deep)."""
    pairs = []
    for key, value in (section or {}).items():
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                if not isinstance(sub_value, (dict, list)):
                    pairs.append((f"{key}.{sub_key}", number(sub_value, 5)))
        elif isinstance(value, list):
            if value and all(not isinstance(v, (dict, list)) for v in value):
                pairs.append((key, ", ".join(number(v, 5) for v in value)))
        else:
            pairs.append((key, number(value, 5)))
    return pairs


#: Columns of the time-point table: (heading, path into a time-point entry of results.json).
TIMEPOINT_COLUMNS = (
    ("time point", ("label",)),
    ("hours after administration", ("hours_after_administration",)),
    ("duration (s)", ("duration_s",)),
    ("observed rate (cps)", ("observed_count_rate_cps",)),
    ("dead-time factor", ("dead_time_factor",)),
    ("registration", ("registration", "kind")),
    ("rotation (deg)", ("registration", "quality", "rotation_deg")),
    ("translation (mm)", ("registration", "quality", "translation_mm")),
    ("body Dice before", ("registration", "quality", "body_dice_before")),
    ("body Dice after", ("registration", "quality", "body_dice")),
    ("bright-structure shift (mm)", ("registration", "quality", "max_bright_structure_shift_mm")),
)


def timepoint_table(results):
    """``(headings, rows)`` of the time points: timing, dead time and the registration quality figures."""
    rows = []
    for tp in results.get("timepoints", []):
        row = []
        for _, path in TIMEPOINT_COLUMNS:
            value = tp
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            row.append(number(value, 4))
        rows.append(row)
    return [heading for heading, _ in TIMEPOINT_COLUMNS], rows


def imaging_dose_table(results):
    """``(headings, rows)`` of the imaging-dose log: one row per CT or tracer study, then the total."""
    log = results.get("imaging_dose") or {}
    headings = ["scan", "kind", "CTDIvol (mGy)", "DLP (mGy cm)", "activity (MBq)", "effective dose (mSv)"]
    rows = [[e.get("label", "-"), e.get("kind", "-"), number(e.get("ctdivol_mGy")), number(e.get("dlp_mGy_cm")),
             number(e.get("activity_MBq")), number(e.get("effective_dose_mSv"))] for e in log.get("entries", [])]
    if "total_mSv" in log:
        rows.append(["total", "", "", "", "", number(log["total_mSv"])])
    return headings, rows


def schedule_lines(results):
    """What the schedule advisor says, with the coverage of each VOI."""
    advice = results.get("schedule_advice")
    if not advice:
        return ["The schedule advisor had too few time points to judge the scan schedule."]
    lines = [advice.get("verdict", "")]
    for name, entry in (advice.get("all_points") or {}).items():
        lines.append(f"{name}: coverage {number(entry.get('coverage_fraction'))}")
    return lines


def whole_body_lines(results):
    """The whole-body and red-marrow dose (from whole-body readings), with the SPECT body beside it and
    the assumptions; empty when no whole-body readings were given."""
    wb = results.get("whole_body")
    if not wb:
        return []
    lines = [f"Whole-body dose: {number(wb.get('wb_dose_Gy'))} ± {number(wb.get('wb_dose_Gy_uncertainty'), 2)} Gy "
             f"(TIA {number(wb.get('wb_tia_MBq_h'))} MBq h, {wb.get('retention_method')} retention, S value "
             f"{number(wb.get('s_value_Gy_per_MBq_h'))} Gy/(MBq h) for {number(wb.get('mass_kg'))} kg); "
             f"trapezoid with physical decay: {number(wb.get('wb_dose_trapezoid_physical_decay_Gy'))} Gy"]
    for name, entry in (results.get("red_marrow") or {}).items():
        dose = number(entry.get("red_marrow_dose_Gy"))
        lines.append(f"Red-marrow dose, {entry.get('method', name)} method: {dose} Gy; "
                     + "; ".join(entry.get("assumptions", [])))
    spect = wb.get("spect_comparison") or {}
    if spect:
        covered = "covers" if spect.get("field_of_view_covers_whole_body") else "does NOT cover"
        lines.append(f"SPECT body ({covered} the whole body, {number(spect.get('spect_body_mass_kg'))} kg imaged): "
                     f"TIA {number(spect.get('spect_body_tia_MBq_h'))} MBq h, whole-body dose "
                     f"{number(spect.get('spect_wb_dose_Gy'))} Gy")
    if wb.get("activity_for_target_MBq") is not None:
        lines.append(f"Activity for the target dose: {number(wb['activity_for_target_MBq'])} MBq")
    lines.append("Assumptions: " + "; ".join(wb.get("assumptions", [])))
    return lines


def all_warnings(results):
    """Every warning in the results, each prefixed with where it comes from."""
    warnings = [str(w) for w in results.get("warnings", [])]
    for source in ("calibration", "provenance"):
        warnings.extend(f"{source}: {w}" for w in (results.get(source) or {}).get("warnings", []))
    for tp in results.get("timepoints", []):
        label = tp.get("label", "time point")
        warnings.extend(f"{label}: {w}" for w in tp.get("warnings", []))
    for voi in results.get("vois", []) + results.get("vois_without_result", []):
        warnings.extend(f"{voi.get('name', 'VOI')}: {w}" for w in voi.get("warnings", []))
    return [f"[{w['severity'].upper()}] {w['message']}" if w["severity"] == "high" else w["message"]
            for w in severity.prioritised(warnings)]


def title(results):
    provenance = results.get("provenance") or {}
    subject = provenance.get("patient") or provenance.get("pseudonym") or provenance.get("study") or ""
    return f"131I-mIBG absorbed-dose report {subject}".strip()
