"""Imaging-dose log of a dosimetry study and an advisor on how many SPECT/CT time points it needs.

Children treated with 131I-mIBG are imaged often: every SPECT/CT for dosimetry adds CT dose, and
diagnostic tracer scans add more. The log gathers, per time point, the CT dose indices (CTDIvol
and DLP) from the image headers or from a CT Radiation Dose SR, converts DLP to an effective-dose
estimate with age-specific coefficients, adds the diagnostic tracer studies and sums it all. The
advisor refits each VOI's time-activity data on fewer time points and says whether the schedule
would still pass the 80 % coverage test (EANM guidance) and keep every TIA within a tolerance of
the all-points TIA, so that CT scans that add no information can be left out in future.
"""

import dataclasses
import itertools
import math

import numpy as np

#: DLP-to-effective-dose coefficients k (mSv per mGy cm) by body region and age (years):
#: AAPM Report No. 96 (2008), Table 4, after Shrimpton et al. (NRPB-W67, 2005); ICRP 60 tissue
#: weights. The report's note: the adult head and neck and all paediatric coefficients assume DLP
#: referred to the 16 cm (head) CTDI phantom, the other adult ones the 32 cm (body) phantom. Scanners
#: that refer a child's body scan to the 32 cm phantom report about half that DLP, so the log
#: records the phantom and warns.
DLP_TO_E_MSV_PER_MGY_CM = {
    "head": {0: 0.011, 1: 0.0067, 5: 0.0040, 10: 0.0032, 18: 0.0021},
    "head_and_neck": {0: 0.013, 1: 0.0085, 5: 0.0057, 10: 0.0042, 18: 0.0031},
    "neck": {0: 0.017, 1: 0.012, 5: 0.011, 10: 0.0079, 18: 0.0059},
    "chest": {0: 0.039, 1: 0.026, 5: 0.018, 10: 0.013, 18: 0.014},
    "abdomen_pelvis": {0: 0.049, 1: 0.030, 5: 0.020, 10: 0.015, 18: 0.015},
    "trunk": {0: 0.044, 1: 0.028, 5: 0.019, 10: 0.014, 18: 0.015},
}
DLP_TO_E_SOURCE = "AAPM Report 96 (2008) Table 4 (Shrimpton et al., NRPB-W67)"

#: Effective dose per administered activity (mSv/MBq) of diagnostic radiopharmaceuticals by age
#: (years): ICRP Publication 128 (2015), which reproduces ICRP 80 for 123I-mIBG.
TRACER_DOSE_COEFFICIENTS_MSV_PER_MBQ = {
    "123I-mIBG": {1: 0.068, 5: 0.037, 10: 0.026, 15: 0.017, 18: 0.013},
    "18F-FDG": {1: 0.095, 5: 0.056, 10: 0.037, 15: 0.024, 18: 0.019},
}
TRACER_SOURCE = "ICRP Publication 128 (2015)"

#: DICOM concept codes (DCM) of the CT Radiation Dose SR (PS3.16 TID 10011/10013).
CODE_MEAN_CTDIVOL = "113830"
CODE_DLP = "113838"
CODE_DLP_TOTAL = "113813"
X_RAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_X_RAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.76"
CODE_PHANTOM_TYPE = "113835"
#: CTDI phantom codes (DCM, CID 4052) and their diameters.
PHANTOM_CODES = {"113690": "16 cm", "113691": "32 cm"}

#: Default tolerance of the advisor: every VOI's TIA within 10 % of the all-points TIA.
DEFAULT_TIA_TOLERANCE = 0.10
#: EANM guidance: more than 80 % of the TIA between the first and the last scan.
MIN_COVERAGE_FRACTION = 0.8


def nearest_age_coefficient(table, age_years):
    """The coefficient of the tabulated age closest to ``age_years`` (the phantom age used)."""
    if age_years is None or age_years < 0:
        raise ValueError("The patient's age is needed for the effective-dose estimate; give it in years.")
    age = min(table, key=lambda a: (abs(a - age_years), a))
    return age, table[age]


def parse_dicom_age(text):
    """Years from a DICOM Age String ('006Y', '018M', '010W', '020D'), or None when empty."""
    text = str(text or "").strip()
    if not text:
        return None
    if len(text) != 4 or not text[:3].isdigit() or text[3] not in "DWMY":
        raise ValueError(f"'{text}' is not a DICOM age (nnnD, nnnW, nnnM or nnnY).")
    per_year = {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[text[3]]
    return int(text[:3]) / per_year


@dataclasses.dataclass
class CTExposure:
    """CT dose indices of one SPECT/CT time point."""

    label: str
    ctdivol_mGy: float
    dlp_mGy_cm: float
    source: str
    scan_length_cm: float = None
    phantom: str = None


def ct_exposure_from_images(label, datasets):
    """CTDIvol and DLP of a CT series from its image headers.

    CTDIvol (0018,9345) is averaged over the slices (with tube-current modulation it varies from
    slice to slice). DLP = CTDIvol x scan length (IEC 60601-2-44), the length being the
    reconstructed range: slice positions along the normal plus one slice thickness. The
    irradiated length is longer by the over-ranging of helical scans, so this DLP is a lower bound.
    """
    values = [float(ds.CTDIvol) for ds in datasets if "CTDIvol" in ds and ds.CTDIvol not in (None, "")]
    if not values:
        raise ValueError(f"The CT images of {label} carry no CTDIvol (0018,9345); give the CT dose report "
                         "(Radiation Dose SR) of that scan instead.")
    orientation = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    positions = sorted(float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in datasets)
    thickness_mm = float(datasets[0].get("SliceThickness", 0) or 0)
    length_cm = (positions[-1] - positions[0] + thickness_mm) / 10.0
    ctdivol = float(np.mean(values))
    phantom = None
    if datasets[0].get("CTDIPhantomTypeCodeSequence"):
        phantom = PHANTOM_CODES.get(datasets[0].CTDIPhantomTypeCodeSequence[0].CodeValue)
    return CTExposure(label, ctdivol, ctdivol * length_cm, "image headers", length_cm, phantom)


def ct_exposure_from_dose_sr(label, ds):
    """CTDIvol (largest of the acquisitions) and DLP (total) from a CT Radiation Dose SR."""
    if ds.SOPClassUID not in (X_RAY_RADIATION_DOSE_SR, ENHANCED_X_RAY_RADIATION_DOSE_SR):
        raise ValueError(f"The dose report for {label} is not an X-Ray Radiation Dose SR.")
    found = {CODE_MEAN_CTDIVOL: [], CODE_DLP: [], CODE_DLP_TOTAL: []}
    phantoms = set()

    def visit(items):
        for item in items:
            name = item.get("ConceptNameCodeSequence")
            if name and name[0].CodeValue in found and "MeasuredValueSequence" in item:
                found[name[0].CodeValue].append(float(item.MeasuredValueSequence[0].NumericValue))
            if name and name[0].CodeValue == CODE_PHANTOM_TYPE and "ConceptCodeSequence" in item:
                phantoms.add(PHANTOM_CODES.get(item.ConceptCodeSequence[0].CodeValue))
            if "ContentSequence" in item:
                visit(item.ContentSequence)

    visit(ds.get("ContentSequence", []))
    if not found[CODE_MEAN_CTDIVOL] or not (found[CODE_DLP] or found[CODE_DLP_TOTAL]):
        raise ValueError(f"The dose report for {label} holds no CTDIvol or DLP.")
    dlp = found[CODE_DLP_TOTAL][0] if found[CODE_DLP_TOTAL] else sum(found[CODE_DLP])
    phantom = phantoms.pop() if len(phantoms) == 1 else None
    return CTExposure(label, max(found[CODE_MEAN_CTDIVOL]), dlp, "Radiation Dose SR", None, phantom)


def imaging_dose_log(ct_exposures, age_years, region="trunk", tracer_studies=()):
    """Per-scan and cumulative effective-dose estimate of a dosimetry study.

    ct_exposures: :class:`CTExposure` per SPECT/CT time point.
    age_years: the patient's age (the tabulated age closest to it is used).
    region: key of :data:`DLP_TO_E_MSV_PER_MGY_CM` scanned at every time point.
    tracer_studies: dicts with "tracer", "activity_MBq", optional "label" and optional
        "dose_coefficient_mSv_per_MBq" (needed for tracers not in :data:`TRACER_DOSE_COEFFICIENTS_MSV_PER_MBQ`).
    Returns a JSON-ready dict with the entries, the totals (mSv) and the sources of the coefficients.
    """
    if region not in DLP_TO_E_MSV_PER_MGY_CM:
        raise ValueError(f"Unknown body region '{region}'; choose one of {', '.join(DLP_TO_E_MSV_PER_MGY_CM)}.")
    table_age, k = nearest_age_coefficient(DLP_TO_E_MSV_PER_MGY_CM[region], age_years)
    entries = []
    warnings = []
    for exposure in ct_exposures:
        entries.append({"label": exposure.label, "kind": "CT", "ctdivol_mGy": exposure.ctdivol_mGy,
                        "dlp_mGy_cm": exposure.dlp_mGy_cm, "scan_length_cm": exposure.scan_length_cm,
                        "phantom": exposure.phantom, "source": exposure.source, "k_mSv_per_mGy_cm": k,
                        "effective_dose_mSv": k * exposure.dlp_mGy_cm})
        if table_age < 18 and exposure.phantom == "32 cm":
            warnings.append(f"{exposure.label}: the DLP is referred to the 32 cm phantom, but the paediatric "
                            "coefficients assume the 16 cm phantom; the effective dose is underestimated by "
                            "about a factor of 2.")
    for n, study in enumerate(tracer_studies, start=1):
        tracer = study["tracer"]
        activity = float(study["activity_MBq"])
        if activity < 0:
            raise ValueError(f"The activity of tracer study {n} is negative.")
        coefficient = study.get("dose_coefficient_mSv_per_MBq")
        source = "given"
        if coefficient is None:
            if tracer not in TRACER_DOSE_COEFFICIENTS_MSV_PER_MBQ:
                raise ValueError(f"No dose coefficient is tabulated for '{tracer}'; give "
                                 "dose_coefficient_mSv_per_MBq for that study.")
            _, coefficient = nearest_age_coefficient(TRACER_DOSE_COEFFICIENTS_MSV_PER_MBQ[tracer], age_years)
            source = TRACER_SOURCE
        entries.append({"label": study.get("label", f"{tracer} study {n}"), "kind": "tracer", "tracer": tracer,
                        "activity_MBq": activity, "dose_coefficient_mSv_per_MBq": float(coefficient),
                        "source": source, "effective_dose_mSv": float(coefficient) * activity})
    ct_total = sum(e["effective_dose_mSv"] for e in entries if e["kind"] == "CT")
    tracer_total = sum(e["effective_dose_mSv"] for e in entries if e["kind"] == "tracer")
    return {"age_years": age_years, "region": region, "coefficient_age_years": table_age,
            "dlp_to_e_source": DLP_TO_E_SOURCE, "entries": entries, "ct_total_mSv": ct_total,
            "tracer_total_mSv": tracer_total, "total_mSv": ct_total + tracer_total, "warnings": warnings,
            "note": "Effective dose is a population-average risk quantity; it estimates, not measures, "
                    "the dose of this child."}


@dataclasses.dataclass
class ScheduleAdvice:
    """What the advisor found for one set of scan times.

    ``all_points`` holds each VOI's TIA and coverage with every time point; ``minimal_schedule``
    the fewest time points (indices into the sorted times) that still pass both tests, or None;
    ``removable`` the time points that can each be left out alone; ``late_scan_h`` the earliest
    last-scan time that would let every VOI pass the coverage test when the schedule does not.
    """

    times_h: list
    all_points: dict
    all_points_pass: bool
    minimal_schedule: list
    removable: list
    late_scan_h: float
    verdict: str
    subsets: list


def _voi_data(voi):
    """(times_h, activity_MBq, sigma or None) from a TacFit-like object or a (times, activities[, sigma]) tuple."""
    if hasattr(voi, "times_h") and hasattr(voi, "activity_MBq"):
        sigma = getattr(voi, "activity_uncertainty_MBq", None)
        return np.asarray(voi.times_h, float), np.asarray(voi.activity_MBq, float), \
            None if sigma is None else np.asarray(sigma, float)
    times, activity, *rest = voi
    return np.asarray(times, float), np.asarray(activity, float), np.asarray(rest[0], float) if rest else None


def advise_schedule(vois, tia_tolerance=DEFAULT_TIA_TOLERANCE, min_coverage=MIN_COVERAGE_FRACTION,
                    model="auto", min_points=3, fit=None):
    """Would fewer SPECT/CT time points give the same dosimetry?

    vois: {VOI name: TacFit-like object (times_h, activity_MBq, activity_uncertainty_MBq) or
        (times_h, activity_MBq[, activity_uncertainty_MBq])}; all VOIs share the scan times.
    A subset of time points passes when, for every VOI, its fit covers at least ``min_coverage`` of
    the TIA between first and last scan (EANM guidance) and its TIA lies within ``tia_tolerance``
    of the all-points TIA. ``fit`` is the TAC fit to use (default :func:`MIBGDosimetryLib.tac.fit_tac`).
    """
    if fit is None:
        from MIBGDosimetryLib.tac import fit_tac as fit
    if not vois:
        raise ValueError("Give at least one VOI's time-activity data.")
    data = {name: _voi_data(v) for name, v in vois.items()}
    times = next(iter(data.values()))[0]
    order = np.argsort(times)
    times = times[order]
    for name, (t, _, _) in data.items():
        if not np.allclose(np.sort(t), times):
            raise ValueError(f"The VOI '{name}' was measured at other times than the others; the advisor "
                             "needs one schedule for all VOIs.")
    data = {name: (t[np.argsort(t)], a[np.argsort(t)], None if s is None else s[np.argsort(t)])
            for name, (t, a, s) in data.items()}
    if len(times) < min_points:
        raise ValueError(f"The schedule has {len(times)} time points; at least {min_points} are needed.")

    def evaluate(indices, fits=None):
        result = {}
        # With 3 points no model can be compared by AICc; the mono-exponential is the fit's own choice then.
        chosen = "mono" if model == "auto" and len(indices) < 4 else model
        for name, (t, a, s) in data.items():
            f = fit(t[indices], a[indices], None if s is None else s[indices], model=chosen)
            result[name] = {"tia_MBq_h": float(f.tia_MBq_h), "coverage_fraction": float(f.coverage_fraction),
                            "effective_half_life_h": float(f.effective_half_life_h)}
            if fits is not None:
                fits[name] = f
        return result

    everything = list(range(len(times)))
    full_fits = {}
    reference = evaluate(everything, full_fits)
    all_pass = all(r["coverage_fraction"] >= min_coverage for r in reference.values())
    subsets = []
    for size in range(min_points, len(times)):
        for indices in itertools.combinations(everything, size):
            result = evaluate(list(indices))
            deviation = max(abs(result[n]["tia_MBq_h"] / reference[n]["tia_MBq_h"] - 1.0) for n in result)
            coverage = min(r["coverage_fraction"] for r in result.values())
            subsets.append({"indices": list(indices), "times_h": [float(times[i]) for i in indices],
                            "max_tia_deviation": deviation, "min_coverage_fraction": coverage,
                            "passes": bool(all_pass and deviation <= tia_tolerance and coverage >= min_coverage)})
    passing = [s for s in subsets if s["passes"]]
    minimal = min(passing, key=lambda s: (len(s["indices"]), s["max_tia_deviation"]))["indices"] if passing else None
    removable = [i for i in everything if any(s["passes"] and s["indices"] == [j for j in everything if j != i]
                                              for s in subsets)]
    late_scan_h = None if all_pass else max(_late_scan_needed(f, float(times[0]), min_coverage)
                                            for f in full_fits.values())
    verdict = _verdict(times, all_pass, minimal, late_scan_h, min_coverage, tia_tolerance)
    return ScheduleAdvice([float(t) for t in times], reference, all_pass, minimal, removable, late_scan_h,
                          verdict, subsets)


def _late_scan_needed(fit, first_h, min_coverage):
    """Earliest last-scan time (h) at which the fitted curve would have ``min_coverage`` of its TIA
    between ``first_h`` and that time (inf when the part before the first scan alone is too large).

    With the fitted curve A(t) = sum c_j exp(-l_j t), the covered share up to t is
    sum c_j (exp(-l_j t1) - exp(-l_j t)) / l_j divided by the TIA sum c_j / l_j; it grows with t
    and is solved for numerically. A curve that is not a sum of exponentials (trapezoid) is
    approximated by a mono-exponential with the fit's effective half-life.
    """
    from scipy.optimize import brentq

    try:
        c, rates = fit.exponential_terms()
    except ValueError:
        c, rates = np.array([1.0]), np.array([math.log(2.0) / fit.effective_half_life_h])
    c, rates = np.asarray(c, dtype=float), np.asarray(rates, dtype=float)
    tia = float(np.sum(c / rates))

    def shortfall(t):
        return float(np.sum(c * (np.exp(-rates * first_h) - np.exp(-rates * t)) / rates)) / tia - min_coverage

    if shortfall(1e7) <= 0:
        return math.inf
    if shortfall(first_h) >= 0:
        return first_h
    return brentq(shortfall, first_h, 1e7, xtol=1e-6)


def _verdict(times, all_pass, minimal, late_scan_h, min_coverage, tia_tolerance):
    if not all_pass:
        if late_scan_h is None or math.isinf(late_scan_h):
            return (f"The schedule does not cover {100 * min_coverage:.0f} % of the time-integrated activity and "
                    "no later scan alone can fix it: an earlier first scan is needed.")
        return (f"The schedule does not cover {100 * min_coverage:.0f} % of the time-integrated activity: add a "
                f"scan at {late_scan_h:.0f} h or later; leaving out time points would make it worse.")
    if minimal is None or len(minimal) == len(times):
        return "Every time point is needed: no smaller schedule keeps the coverage and the TIAs."
    kept = ", ".join(f"{times[i]:g} h" for i in minimal)
    return (f"{len(times) - len(minimal)} of {len(times)} SPECT/CT scans could be left out: the scans at {kept} "
            f"alone keep coverage >= {100 * min_coverage:.0f} % and every TIA within "
            f"{100 * tia_tolerance:.0f} % of the all-points value.")
