"""Imaging-dose log (CT dose indices, effective dose, tracer studies) and the schedule advisor."""

import functools
import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from export_fixtures import ct_geometry, write_ct_series
from MIBGDosimetryLib import imaging_dose
from MIBGDosimetryLib.tac import fit_tac


def test_ct_dose_indices_from_image_headers(tmp_path):
    paths, _, _ = write_ct_series(tmp_path / "ct")
    datasets = [pydicom.dcmread(p) for p in paths]
    exposure = imaging_dose.ct_exposure_from_images("tp1", datasets[::-1])
    shape, spacing, _ = ct_geometry()
    # The fixture writes CTDIvol = 1.25 + 0.01 k mGy on slice k; slices 3 mm apart, 3 mm thick.
    expected_ctdivol = np.mean([1.25 + 0.01 * k for k in range(shape[0])])
    expected_length_cm = (spacing[2] * (shape[0] - 1) + spacing[2]) / 10
    assert exposure.ctdivol_mGy == pytest.approx(expected_ctdivol)
    assert exposure.scan_length_cm == pytest.approx(expected_length_cm)
    assert exposure.dlp_mGy_cm == pytest.approx(expected_ctdivol * expected_length_cm)
    for ds in datasets:
        del ds.CTDIvol
    with pytest.raises(ValueError, match="Radiation Dose SR"):
        imaging_dose.ct_exposure_from_images("tp1", datasets)


def code(value, meaning, scheme="DCM"):
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def numeric(value_code, meaning, number, unit):
    item = Dataset()
    item.ValueType = "NUM"
    item.ConceptNameCodeSequence = [code(value_code, meaning)]
    measured = Dataset()
    measured.NumericValue = number
    measured.MeasurementUnitsCodeSequence = [code(unit, unit, "UCUM")]
    item.MeasuredValueSequence = [measured]
    return item


def dose_report(acquisitions, total_dlp, phantom_code="113691"):
    """A CT Radiation Dose SR (TID 10011) with one CT Acquisition container per (CTDIvol, DLP)."""
    ds = Dataset()
    ds.SOPClassUID = imaging_dose.X_RAY_RADIATION_DOSE_SR
    accumulated = Dataset()
    accumulated.ValueType = "CONTAINER"
    accumulated.ConceptNameCodeSequence = [code("113811", "CT Accumulated Dose Data")]
    accumulated.ContentSequence = [numeric("113813", "CT Dose Length Product Total", total_dlp, "mGy.cm")]
    items = [accumulated]
    for ctdivol, dlp in acquisitions:
        dose = Dataset()
        dose.ValueType = "CONTAINER"
        dose.ConceptNameCodeSequence = [code("113829", "CT Dose")]
        phantom = Dataset()
        phantom.ValueType = "CODE"
        phantom.ConceptNameCodeSequence = [code("113835", "CTDIw Phantom Type")]
        phantom.ConceptCodeSequence = [code(phantom_code, "IEC Body Dosimetry Phantom")]
        dose.ContentSequence = [numeric("113830", "Mean CTDIvol", ctdivol, "mGy"),
                                numeric("113838", "DLP", dlp, "mGy.cm"), phantom]
        acquisition = Dataset()
        acquisition.ValueType = "CONTAINER"
        acquisition.ConceptNameCodeSequence = [code("113819", "CT Acquisition")]
        acquisition.ContentSequence = [dose]
        items.append(acquisition)
    ds.ContentSequence = items
    return ds


def test_ct_dose_from_radiation_dose_report():
    exposure = imaging_dose.ct_exposure_from_dose_sr("tp2", dose_report([(2.0, 50.0), (3.0, 70.0)], 120.0))
    assert (exposure.ctdivol_mGy, exposure.dlp_mGy_cm, exposure.phantom) == (3.0, 120.0, "32 cm")


def test_cumulative_effective_dose_with_published_coefficients():
    exposures = [imaging_dose.CTExposure("tp1", 2.0, 60.0, "image headers", phantom="16 cm"),
                 imaging_dose.ct_exposure_from_dose_sr("tp2", dose_report([(3.0, 70.0)], 70.0))]
    log = imaging_dose.imaging_dose_log(exposures, age_years=6.0, region="trunk",
                                        tracer_studies=[{"tracer": "123I-mIBG", "activity_MBq": 150.0},
                                                        {"tracer": "99mTc-MDP", "activity_MBq": 200.0,
                                                         "dose_coefficient_mSv_per_MBq": 0.005}])
    # AAPM Report 96 Table 4: trunk, 5-year-old phantom (nearest to 6 y): 0.019 mSv/(mGy cm).
    # ICRP 128: 123I-mIBG, 5-year-old: 0.037 mSv/MBq.
    assert log["coefficient_age_years"] == 5
    assert log["ct_total_mSv"] == pytest.approx(0.019 * (60.0 + 70.0))
    assert log["tracer_total_mSv"] == pytest.approx(0.037 * 150.0 + 0.005 * 200.0)
    assert log["total_mSv"] == pytest.approx(log["ct_total_mSv"] + log["tracer_total_mSv"])
    # The dose report refers the child's DLP to the 32 cm phantom: the estimate is flagged as low.
    assert len(log["warnings"]) == 1 and log["warnings"][0].startswith("tp2:")
    with pytest.raises(ValueError, match="dose_coefficient_mSv_per_MBq"):
        imaging_dose.imaging_dose_log([], 6.0, tracer_studies=[{"tracer": "99mTc-MDP", "activity_MBq": 1.0}])
    assert imaging_dose.parse_dicom_age("018M") == pytest.approx(1.5)


HALF_LIVES_H = {"tumour": 40.0, "liver": 25.0}


def sampled(times_h, a0_MBq=100.0):
    """Noise-free mono-exponential clearance after instantaneous uptake, per VOI."""
    return {name: (times_h, [a0_MBq * math.exp(-math.log(2) / t_half * t) for t in times_h])
            for name, t_half in HALF_LIVES_H.items()}


def analytic_coverage(first_h, last_h):
    """Share of each VOI's TIA between first and last scan: exp(-l t1) - exp(-l tn); the worst VOI."""
    return min(math.exp(-math.log(2) / h * first_h) - math.exp(-math.log(2) / h * last_h)
               for h in HALF_LIVES_H.values())


def test_advisor_with_a_late_time_point_finds_the_scans_that_can_go():
    times = [4.0, 24.0, 48.0, 96.0, 144.0]
    # Instantaneous uptake: the activity before the first scan is the back-extrapolated clearance.
    instantaneous = functools.partial(fit_tac, head="extrapolate")
    vois = {name: instantaneous(t, a, model="mono") for name, (t, a) in sampled(times).items()}
    advice = imaging_dose.advise_schedule(vois, model="mono", fit=instantaneous)
    assert advice.all_points_pass and analytic_coverage(4.0, 144.0) > 0.8
    for subset in advice.subsets:
        truth = analytic_coverage(subset["times_h"][0], subset["times_h"][-1])
        assert abs(truth - 0.8) > 1e-3  # no subset sits on the threshold
        # Exact mono-exponential data: every subset's TIA is the true TIA, coverage decides.
        assert subset["max_tia_deviation"] < 1e-4
        assert subset["min_coverage_fraction"] == pytest.approx(truth, abs=1e-4)
        assert subset["passes"] == (truth >= 0.8)
    assert [times[i] for i in advice.minimal_schedule] in ([4.0, 24.0, 144.0], [4.0, 48.0, 144.0],
                                                           [4.0, 96.0, 144.0])
    assert advice.removable == [1, 2, 3]
    assert advice.verdict.startswith("2 of 5 SPECT/CT scans could be left out")


def test_advisor_without_a_late_time_point_asks_for_one():
    times = [4.0, 24.0, 48.0]
    advice = imaging_dose.advise_schedule(sampled(times), model="mono")
    assert not advice.all_points_pass and analytic_coverage(4.0, 48.0) < 0.8
    assert advice.minimal_schedule is None and advice.removable == []
    # The slower VOI decides: exp(-l 4) - exp(-l t) = 0.8 at t = -ln(exp(-l 4) - 0.8) / l.
    rate = math.log(2) / max(HALF_LIVES_H.values())
    assert advice.late_scan_h == pytest.approx(-math.log(math.exp(-rate * 4.0) - 0.8) / rate, rel=1e-4)
    assert f"add a scan at {advice.late_scan_h:.0f} h" in advice.verdict
    # Sampling the same kinetics at that time makes the schedule pass.
    later = imaging_dose.advise_schedule(sampled(times + [math.ceil(advice.late_scan_h)]), model="mono")
    assert later.all_points_pass


def test_advisor_refuses_mixed_schedules():
    vois = sampled([4.0, 24.0, 48.0])
    vois["other"] = ([5.0, 24.0, 48.0], [1.0, 0.8, 0.6])
    with pytest.raises(ValueError, match="other times"):
        imaging_dose.advise_schedule(vois)


def true_coverage(structure, first_h, last_h):
    """Share of a phantom structure's true TIA between two times, from its kinetics in truth.json."""
    kinetics = structure["kinetics"]
    c, rates = np.array(kinetics["coefficients_MBq"]), np.array(kinetics["rates_per_h"])
    covered = np.sum(c * (np.exp(-rates * first_h) - np.exp(-rates * last_h)) / rates)
    return float(covered / np.sum(c / rates))


#: Scan times of the phantom; the last one is late enough for every structure's 80 % coverage.
PHANTOM_HOURS = [4.0, 24.0, 48.0, 96.0, 240.0]


@pytest.mark.parametrize("scans", [5, 4, 3], ids=["with-late-scan", "without-240h", "without-96h-and-240h"])
def test_advisor_verdict_agrees_with_the_phantom_truth(scans):
    """The phantom's lesions (slowest kinetics) scanned on all its time points or on the early ones only."""
    import json
    import os

    from export_fixtures import phantom_study

    truth = json.loads(open(os.path.join(phantom_study(PHANTOM_HOURS), "truth.json")).read())
    assert [tp["hours_after_administration"] for tp in truth["timepoints"]] == PHANTOM_HOURS
    times = PHANTOM_HOURS[:scans]
    lesions = [s for s in truth["structures"] if s["kind"] == "lesion"]
    coverage = {s["name"]: true_coverage(s, times[0], times[-1]) for s in lesions}
    assert all(abs(c - 0.8) > 0.005 for c in coverage.values())  # no lesion sits on the threshold
    truly_passes = min(coverage.values()) >= 0.8
    assert truly_passes == (scans == 5)
    vois = {s["name"]: (times, s["activity_MBq"][:scans]) for s in lesions}
    advice = imaging_dose.advise_schedule(vois)
    assert advice.all_points_pass == truly_passes
    if not truly_passes:
        assert advice.late_scan_h > times[-1] and "add a scan" in advice.verdict
