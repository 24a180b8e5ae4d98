"""Whole-body and red-marrow absorbed dose: retention curves with known integrals, the electron-only
limit of the whole-body S value, photon absorbed-fraction bounds from NIST coefficients and the
escape probability of a sphere, counts against dose rates, the blood method with a known blood curve,
the activity for a prescribed dose, the command line and refused tables."""

import json
import math

import numpy as np
import pytest

from MIBGDosimetryLib import cli
from MIBGDosimetryLib.physics import i131
from MIBGDosimetryLib.wholebody import marrow, measurements, prescription, retention, s_value
from MIBGDosimetryLib.wholebody.assessment import assess_whole_body

#: 1 MeV in J (CODATA 2018) and decays per MBq h.
JOULE_PER_MEV = 1.602176634e-13
DECAYS_PER_MBQ_H = 3.6e9
#: ICRP-107 mean electron energy per decay of 131I (beta, conversion, Auger), MeV.
E_ELECTRON_MEV = 0.19185
#: 131I physical half-life, ENSDF (h).
T_PHYS_H = 8.0252 * 24


def write(path, text):
    path.write_text(text)
    return path


def mono_readings(times_h, half_life_h, first=1.0e5, background=0.0):
    k = math.log(2) / half_life_h
    return [first * math.exp(-k * (t - times_h[0])) + background for t in times_h]


def csv_of(times_h, values, header="time_h,counts", extra=""):
    return header + "\n" + "".join(f"{t},{v!r}{extra}\n" for t, v in zip(times_h, values))


# --- retention and TIA --------------------------------------------------------------------------

def test_mono_exponential_retention_gives_the_hand_computed_tia(tmp_path):
    # R = 1 until the first reading at 2 h, then exp(-ln2 (t - 2) / 30 h): TIA = A (2 h + 30 h / ln 2).
    times = [2, 20, 44, 68, 92]
    path = write(tmp_path / "wb.csv", csv_of(times, mono_readings(times, 30.0, background=120.0),
                                             "time_h,counts,background", ",120"))
    readings = measurements.read_retention_csv(path)
    result = retention.whole_body_tia(readings, 5000.0, "mono")
    assert result["tia_MBq_h"] == pytest.approx(5000 * (2 + 43.28085123), rel=1e-6)
    assert result["effective_half_lives_h"][0] == pytest.approx(30.0, rel=1e-6)
    # Exact data: no scatter, no uncertainty worth the name.
    assert result["tia_uncertainty_MBq_h"] < 1e-6 * result["tia_MBq_h"]
    # The conservative alternative: trapezoids, then physical decay only, is larger.
    assert result["tia_trapezoid_physical_decay_MBq_h"] > 1.2 * result["tia_MBq_h"]


def test_bi_exponential_retention_gives_the_hand_computed_tia():
    # 40 % cleared with 4 h, 60 % with 60 h after the first reading at 1 h:
    # TIA = A (1 + 0.4 x 4 / ln2 + 0.6 x 60 / ln2) = A x 55.24527 h.
    times = np.array([1, 3, 6, 12, 24, 48, 72, 96, 120, 144], float)
    r = 0.4 * np.exp(-math.log(2) / 4 * (times - 1)) + 0.6 * np.exp(-math.log(2) / 60 * (times - 1))
    readings = measurements.retention_from_readings(times, 2000.0 * r, "uSv_per_h")
    for method in ("bi", "auto"):
        result = retention.whole_body_tia(readings, 6000.0, method)
        assert result["method"] == "bi"
        assert result["tia_MBq_h"] == pytest.approx(6000 * 55.24527, rel=1e-5)
        assert sorted(result["effective_half_lives_h"]) == pytest.approx([4.0, 60.0], rel=1e-4)
    # Four readings fit a bi-exponential exactly but leave nothing to estimate its uncertainty from.
    exact = retention.whole_body_tia(measurements.retention_from_readings(times[[0, 2, 5, 9]], r[[0, 2, 5, 9]],
                                                                          "counts"), 6000.0, "bi")
    assert exact["tia_MBq_h"] == pytest.approx(6000 * 55.24527, rel=1e-4)
    assert any("cannot be estimated" in w for w in exact["warnings"])


def test_trapezoid_with_physical_tail_is_hand_computed():
    times = [1.0, 25.0, 49.0]
    readings = measurements.retention_from_readings(times, [100.0, 50.0, 25.0], "counts")
    result = retention.whole_body_tia(readings, 1000.0, "trapezoid")
    # 1000 x [1 + 24 (1 + 0.5)/2 + 24 (0.5 + 0.25)/2 + 0.25 x 192.6048 / ln2]
    assert result["tia_MBq_h"] == pytest.approx(1000 * (1 + 18 + 9 + 0.25 * T_PHYS_H / math.log(2)), rel=1e-6)


def test_dose_rate_and_counts_give_the_same_dose(tmp_path):
    times = [1, 24, 48, 96]
    counts = mono_readings(times, 40.0, first=8.0e4)
    rates = mono_readings(times, 40.0, first=35.0)
    a = write(tmp_path / "counts.csv",
              "time_h,value,kind\n" + "".join(f"{t},{v!r},counts\n" for t, v in zip(times, counts)))
    b = write(tmp_path / "rates.csv", csv_of(times, [v + 0.2 for v in rates], "time_h,uSv_per_h,background", ",0.2"))
    first, second = assess_whole_body(a, 4000.0, 25.0), assess_whole_body(b, 4000.0, 25.0)
    assert first["measurements"]["kind"] == "counts" and second["measurements"]["kind"] == "uSv_per_h"
    assert first["wb_dose_Gy"] == pytest.approx(second["wb_dose_Gy"], rel=1e-9)
    assert first["wb_dose_Gy"] == pytest.approx(4000 * (1 + 40 / math.log(2)) * first["s_value_Gy_per_MBq_h"],
                                                rel=1e-6)


# --- S value -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mass_kg", [5.0, 20.0, 70.0])
def test_electron_part_of_the_whole_body_s_value_is_energy_over_mass(mass_kg):
    s = s_value.whole_body_s_value(mass_kg)
    expected = E_ELECTRON_MEV * JOULE_PER_MEV * DECAYS_PER_MBQ_H / mass_kg  # Gy per MBq h
    assert s["electron_Gy_per_MBq_h"] == pytest.approx(expected, rel=1e-3)
    assert s["S_Gy_per_MBq_h"] == pytest.approx(s["electron_Gy_per_MBq_h"] + s["photon_Gy_per_MBq_h"], rel=1e-12)


#: NIST (Hubbell and Seltzer, NISTIR 5632) water: energy (MeV), mu/rho and mu_en/rho (cm2/g).
NIST_WATER = np.array([[0.08, 0.1837, 0.02597], [0.10, 0.1707, 0.02546], [0.15, 0.1505, 0.02764],
                       [0.20, 0.1370, 0.02967], [0.30, 0.1187, 0.03190], [0.40, 0.1061, 0.03279],
                       [0.50, 0.09687, 0.03299], [0.60, 0.08956, 0.03284], [0.80, 0.07865, 0.03206]])


def escape_probability(tau):
    """Uncollided escape probability from a uniform source in a sphere of optical radius tau
    (Case, de Hoffmann and Placzek, Introduction to the theory of neutron diffusion, 1953)."""
    return 3.0 / (8.0 * tau ** 3) * (2.0 * tau ** 2 - 1.0 + (1.0 + 2.0 * tau) * math.exp(-2.0 * tau))


@pytest.mark.parametrize("mass_kg", [10.0, 30.0, 70.0])
def test_photon_absorbed_fraction_lies_between_first_collision_and_escape_bounds(mass_kg):
    radius_cm = (3 * mass_kg * 1000 / (4 * math.pi)) ** (1 / 3)
    energy, yields = np.array(i131.PHOTON_LINES).T
    log_e = np.log(NIST_WATER[:, 0])
    mu = np.exp(np.interp(np.log(energy), log_e, np.log(NIST_WATER[:, 1])))
    mu_en = np.exp(np.interp(np.log(energy), log_e, np.log(NIST_WATER[:, 2])))
    escape = np.array([escape_probability(m * radius_cm) for m in mu])
    weight = energy * yields / np.sum(energy * yields)
    # At least the energy given to electrons at the first collision stays; at most what does not escape
    # uncollided. The listed lines carry 98.7 % of the photon energy: 2 % slack on either side.
    lower = np.sum(weight * (1 - escape) * mu_en / mu) - 0.02
    upper = np.sum(weight * (1 - escape)) + 0.02
    fraction = s_value.whole_body_s_value(mass_kg)["photon_absorbed_fraction"]
    assert lower < fraction < upper


def test_whole_body_s_value_refuses_masses_outside_the_model():
    with pytest.raises(ValueError, match="between 2 and 110 kg"):
        s_value.whole_body_s_value(150.0)


def test_reference_red_marrow_mass_follows_icrp_89():
    assert s_value.reference_red_marrow_mass_g(10.0) == pytest.approx(150.0)
    assert s_value.reference_red_marrow_mass_g(73.0) == pytest.approx(1170.0)
    assert s_value.reference_red_marrow_mass_g(25.5) == pytest.approx((340 + 630) / 2)


# --- red marrow --------------------------------------------------------------------------------

def test_blood_method_with_physical_decay_only_is_hand_computed():
    # Blood concentration 2 kBq/mL at t = 0 clearing only by physical decay: 0.002 MBq/mL x T/ln2.
    times = np.array([1.0, 4.0, 24.0, 48.0])
    blood = measurements.BloodSamples(times, 0.002 * np.exp(-math.log(2) / T_PHYS_H * times), "blood")
    s = s_value.whole_body_s_value(20.0)
    blood_tia = 0.002 * T_PHYS_H / math.log(2)
    for rmblr in (1.0, 0.5):
        result = marrow.blood_method(blood, 3.0e5, s, 20.0, rmblr=rmblr, red_marrow_mass_g=400.0)
        assert result["blood_tia_MBq_h_per_mL"] == pytest.approx(blood_tia, rel=1e-6)
        self_electron = blood_tia * rmblr * E_ELECTRON_MEV * JOULE_PER_MEV * DECAYS_PER_MBQ_H * 1000  # Gy (per g)
        assert result["self_electron_dose_Gy"] == pytest.approx(self_electron, rel=1e-3)
        assert result["red_marrow_tia_MBq_h"] == pytest.approx(blood_tia * rmblr * 400.0, rel=1e-6)
        photons = 3.0e5 * s["photon_Gy_per_MBq_h"]
        assert result["red_marrow_dose_Gy"] == pytest.approx(self_electron + photons, rel=1e-3)
        assert result["cross_dose_from_remainder_of_body_Gy"] == pytest.approx(
            (3.0e5 - blood_tia * rmblr * 400.0) * s["photon_Gy_per_MBq_h"], rel=1e-9)


def test_blood_method_refuses_a_marrow_tia_above_the_whole_body():
    blood = measurements.BloodSamples(np.array([1.0, 24.0]), np.array([2.0, 1.0]), "blood.csv")
    with pytest.raises(ValueError, match="check the blood concentration units"):
        marrow.blood_method(blood, 1.0e4, s_value.whole_body_s_value(20.0), 20.0)


# --- activity for a target dose ----------------------------------------------------------------

def test_activity_for_target_and_its_uncertainty():
    plain = prescription.activity_for_target(4.0, 2.0, 0.2, 5000.0)
    assert plain["activity_MBq"] == pytest.approx(10000.0)
    assert plain["activity_uncertainty_MBq"] == pytest.approx(1000.0)
    total = prescription.activity_for_target(4.0, 2.0, 0.2, 5000.0, subtract_delivered=True)
    assert total["activity_MBq"] == pytest.approx(5000.0)
    # A1 D_target u(D1) / D1^2 = 5000 x 4 x 0.2 / 4
    assert total["activity_uncertainty_MBq"] == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="already gave"):
        prescription.activity_for_target(2.0, 2.5, 0.2, 5000.0, subtract_delivered=True)


# --- command line and refused input ------------------------------------------------------------

def test_command_line_prints_the_whole_body_summary(tmp_path, capsys):
    times = [2, 20, 44, 68, 92]
    wb = write(tmp_path / "wb.csv", csv_of(times, mono_readings(times, 30.0)))
    blood = write(tmp_path / "blood.csv", "time_h,kBq_per_mL\n1,2.0\n24,1.0\n48,0.5\n")
    code = cli.main(["wholebody", "--measurements", str(wb), "--administered-MBq", "5000", "--mass-kg", "20",
                     "--blood", str(blood), "--target-Gy", "4"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for field in ("wb_tia_MBq_h", "wb_dose_Gy", "wb_dose_Gy_uncertainty", "s_value_Gy_per_MBq_h",
                  "red_marrow_dose_Gy", "activity_for_target_MBq", "assumptions", "warnings"):
        assert field in out
    assert out["wb_tia_MBq_h"] == pytest.approx(5000 * (2 + 43.28085123), rel=1e-6)
    assert out["wb_dose_Gy"] == pytest.approx(out["wb_tia_MBq_h"] * out["s_value_Gy_per_MBq_h"], rel=1e-12)
    assert set(out["red_marrow_dose_Gy"]) == {"whole_body", "blood"}
    assert out["red_marrow_dose_Gy"]["whole_body"] == out["wb_dose_Gy"]
    assert out["activity_for_target_MBq"] == pytest.approx(4.0 / (out["wb_dose_Gy"] / 5000), rel=1e-12)


@pytest.mark.parametrize("text, message", [
    ("hours,counts\n1,100\n24,50\n", "needs a 'time_h' column"),
    ("time_h,value\n1,100\n24,50\n", "no 'kind' column"),
    ("time_h,value,kind\n1,100,counts\n24,5,uSv_per_h\n", "mixes counts and dose rates"),
    ("time_h,counts\n1,100\n24,abc\n", "row 3: 'abc' in column 'counts' is not a number"),
    ("time_h,counts,background\n1,100,20\n24,15,20\n", "zero or negative at 24 h"),
    ("time_h,counts\n1,100\n1,50\n", "same time"),
    ("time_h,counts\n1,100\n", "at least one later one"),
    ("time_h,weight\n1,100\n24,50\n", "needs one reading column"),
    ("time_h,counts\n0,100\n24,50\n", "positive hours"),
])
def test_bad_whole_body_tables_are_refused_with_a_clear_message(tmp_path, capsys, text, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=message):
        measurements.read_retention_csv(path)
    code = cli.main(["wholebody", "--measurements", str(path), "--administered-MBq", "5000", "--mass-kg", "20"])
    assert code == 2
    assert "mibgdose wholebody: error:" in capsys.readouterr().err


def test_bad_blood_table_is_refused(tmp_path):
    with pytest.raises(ValueError, match="MBq_per_mL"):
        measurements.read_blood_csv(write(tmp_path / "blood.csv", "time_h,activity\n1,2\n24,1\n"))
    with pytest.raises(FileNotFoundError, match="was not found"):
        measurements.read_blood_csv(tmp_path / "missing.csv")


# --- the SPECT body beside the whole-body readings ---------------------------------------------

def ball(shape, centre, radius):
    k, j, i = np.indices(shape)
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius ** 2


def test_spect_body_inside_the_field_of_view_gives_the_whole_body_dose():
    from MIBGDosimetryLib.wholebody.study_results import spect_body_comparison

    body = ball((40, 40, 40), (20, 20, 20), 15)
    tumour = ball((40, 40, 40), (20, 20, 28), 3)
    tia = np.where(body, 10.0, 0.0) + np.where(tumour, 50.0, 0.0)
    dose = np.where(body, 2.0, 0.0)
    voxel_ml = 8.0  # 2 cm voxels: at 0.2 g/mL the ball weighs about 23 kg
    density = np.full(body.shape, 0.2)
    result = spect_body_comparison(tia, dose, body, [tumour], density, voxel_ml, 22.0)
    n = int(body.sum())
    assert result["field_of_view_covers_whole_body"] and result["body_cut_at"] == []
    assert result["spect_body_tia_MBq_h"] == pytest.approx(10.0 * n + 50.0 * int(tumour.sum()))
    assert result["spect_body_mass_kg"] == pytest.approx(n * 0.2 * 8.0 / 1000)
    assert result["spect_body_mean_dose_Gy"] == pytest.approx(2.0)
    assert result["spect_wb_dose_Gy"] == pytest.approx(
        result["spect_body_tia_MBq_h"] * s_value.whole_body_s_value(22.0)["S_Gy_per_MBq_h"])


def test_spect_body_cut_by_the_field_of_view_is_flagged():
    from MIBGDosimetryLib.wholebody.study_results import spect_body_comparison

    body = ball((30, 40, 40), (0, 20, 20), 15)  # centred on the first slice: half of it is outside
    result = spect_body_comparison(np.where(body, 1.0, 0.0), np.zeros(body.shape), body, [], None, 8.0, 20.0)
    assert not result["field_of_view_covers_whole_body"]
    assert result["body_cut_at"] == ["start of axis k"]
    assert "not comparable" in result["warnings"][0]
    # The dose of the imaged part uses the imaged mass, not the patient's.
    assert result["spect_wb_dose_Gy"] == pytest.approx(
        body.sum() * s_value.whole_body_s_value(body.sum() * 8.0 / 1000)["S_Gy_per_MBq_h"])


def test_dose_options_refuse_whole_body_readings_without_the_mass():
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions

    with pytest.raises(ValueError, match="--mass-kg"):
        DoseOptions(wholebody_measurements="wb.csv")


# --- radiobiology ------------------------------------------------------------------------------

def test_bed_of_the_whole_body_dose_follows_the_mono_exponential_g_factor(tmp_path):
    from MIBGDosimetryLib.dose import radiobiology

    times = [2, 20, 44, 68, 92]
    path = write(tmp_path / "wb.csv", csv_of(times, mono_readings(times, 30.0)))
    out = assess_whole_body(path, 5000.0, 20.0)
    tissue = radiobiology.load_tissue_parameters()["whole_body"]
    lam, mu = math.log(2) / 30.0, math.log(2) / tissue["repair_half_time_h"]
    # Mono-exponential dose rate: G = lambda / (lambda + mu) (Dale 1985).
    expected = out["wb_dose_Gy"] * (1 + lam / (lam + mu) * out["wb_dose_Gy"] / tissue["alpha_beta_Gy"])
    assert out["wb_bed_Gy"] == pytest.approx(expected, rel=1e-6)
    marrow_tissue = radiobiology.load_tissue_parameters()["red_marrow"]
    mu = math.log(2) / marrow_tissue["repair_half_time_h"]
    assert out["red_marrow"]["whole_body"]["red_marrow_bed_Gy"] == pytest.approx(
        out["wb_dose_Gy"] * (1 + lam / (lam + mu) * out["wb_dose_Gy"] / marrow_tissue["alpha_beta_Gy"]), rel=1e-6)


def test_lq_eud_of_a_uniform_dose_is_that_dose():
    from MIBGDosimetryLib.dose import radiobiology

    assert radiobiology.lq_eud_Gy(np.full(30, 12.0), 0.35, 10.0, 0.2) == pytest.approx(12.0, rel=1e-12)
    assert radiobiology.dose_from_bed_Gy(radiobiology.bed_Gy(7.0, 0.3, 3.0), 0.3, 3.0) == pytest.approx(7.0)


def test_lq_eud_of_two_compartments_has_their_mean_linear_quadratic_survival():
    from MIBGDosimetryLib.dose import radiobiology

    alpha, alpha_beta, g = 0.3, 10.0, 0.25
    beta = alpha / alpha_beta
    doses, weights = np.array([10.0, 40.0]), np.array([3.0, 1.0])
    # Surviving fraction of the linear-quadratic model with protraction factor G: exp(-alpha D - beta G D^2).
    mean_survival = np.average(np.exp(-alpha * doses - beta * g * doses ** 2), weights=weights)
    eud = radiobiology.lq_eud_Gy(doses, alpha, alpha_beta, g, weights)
    assert math.exp(-alpha * eud - beta * g * eud ** 2) == pytest.approx(mean_survival, rel=1e-9)
    # Without beta (G = 0) it is the linear EUD; beta lowers the EUD of a heterogeneous dose.
    assert radiobiology.lq_eud_Gy(doses, alpha, alpha_beta, 0.0, weights) == pytest.approx(
        radiobiology.eud_Gy(doses, alpha, weights), rel=1e-12)
    assert eud < radiobiology.eud_Gy(doses, alpha, weights)


def test_marrow_and_whole_body_tissue_parameters_say_where_they_come_from():
    from MIBGDosimetryLib.dose import radiobiology

    table = radiobiology.load_tissue_parameters()
    for name in ("red_marrow", "whole_body", "tumour"):
        assert table[name]["source"]
    assert "user value, no published consensus" in table["whole_body"]["source"]
    assert "user value, no published consensus" in table["red_marrow"]["source"]
    assert "user value, no published consensus" in table["tumour"]["source"]


def test_report_lines_state_the_whole_body_dose_and_its_assumptions(tmp_path):
    from MIBGDosimetryLib.report import content

    times = [2, 20, 44, 68, 92]
    summary = assess_whole_body(write(tmp_path / "wb.csv", csv_of(times, mono_readings(times, 30.0))), 5000.0, 20.0,
                                target_Gy=4.0)
    red_marrow = summary.pop("red_marrow")
    lines = content.whole_body_lines({"whole_body": summary, "red_marrow": red_marrow})
    assert lines[0].startswith(f"Whole-body dose: {summary['wb_dose_Gy']:.3g} ")
    assert any(line.startswith("Red-marrow dose, whole body method") for line in lines)
    assert any(f"{summary['activity_for_target_MBq']:.3g} MBq" in line for line in lines)
    assert "uniformly distributed" in lines[-1]
    assert content.whole_body_lines({}) == []


def test_whole_body_inputs_are_checked_before_the_dose_calculation(tmp_path):
    from MIBGDosimetryLib.study.model import Study
    from MIBGDosimetryLib.wholebody.study_results import check_whole_body_inputs
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions

    good = write(tmp_path / "wb.csv", "time_h,counts\n1,100\n24,60\n")
    bad = write(tmp_path / "bad.csv", "time_h,counts\n1,100\n24,x\n")
    study = Study(path=str(tmp_path), timepoints=[], administered_activity_MBq=None)
    with pytest.raises(ValueError, match="--administered-MBq"):
        check_whole_body_inputs(DoseOptions(wholebody_measurements=str(good), patient_mass_kg=20.0), study)
    with pytest.raises(ValueError, match="not a number"):
        check_whole_body_inputs(DoseOptions(wholebody_measurements=str(bad), patient_mass_kg=20.0,
                                            administered_activity_MBq=5000.0), study)
    readings, blood, activity = check_whole_body_inputs(
        DoseOptions(wholebody_measurements=str(good), patient_mass_kg=20.0), Study(str(tmp_path), [], None, 7400.0))
    assert activity == 7400.0 and blood is None and readings.retention[-1] == pytest.approx(0.6)


def test_conjugate_views_cancel_the_depth_of_the_activity(tmp_path):
    # A point-like activity moving between front and back of a 20 cm thick body (mu = 0.11 /cm at 364 keV):
    # anterior x posterior = A^2 exp(-mu T) whatever the depth, so the geometric mean follows A(t).
    mu, thickness = 0.11, 20.0
    times = [1.0, 24.0, 48.0, 96.0]
    activity = mono_readings(times, 35.0, first=1.0e5)
    depth = [5.0, 12.0, 16.0, 8.0]
    rows = "".join(f"{t},{a * math.exp(-mu * d) + 40!r},{a * math.exp(-mu * (thickness - d)) + 60!r},40,60\n"
                   for t, a, d in zip(times, activity, depth))
    path = write(tmp_path / "views.csv", "time_h,anterior,posterior,background_anterior,background_posterior\n" + rows)
    readings = measurements.read_retention_csv(path)
    assert readings.kind == "counts"
    assert readings.retention == pytest.approx([a / activity[0] for a in activity], rel=1e-9)
    # The anterior view alone would be off by the change in depth.
    anterior_only = activity[1] * math.exp(-mu * depth[1]) / (activity[0] * math.exp(-mu * depth[0]))
    assert anterior_only < 0.5 * readings.retention[1]


def test_dose_command_refuses_whole_body_readings_without_the_mass_before_reading_the_study(tmp_path, capsys):
    wb = write(tmp_path / "wb.csv", "time_h,counts\n1,100\n24,60\n")
    code = cli.main(["dose", str(tmp_path / "no-study"), "--calibration", str(tmp_path / "none.json"), "--out",
                     str(tmp_path / "out"), "--wholebody-measurements", str(wb)])
    assert code == 2
    assert "needs the patient's mass (--mass-kg)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- body shape --------------------------------------------------------------------------------

def test_ellipsoid_geometry_with_equal_axes_reproduces_the_sphere():
    from MIBGDosimetryLib.physics.spheres import geometric_reduction_factor

    ratios = np.array([0.1, 0.5, 1.0, 1.5, 1.9])
    # Berger's analytic factor 1 - 3x/4 + x^3/16 (MIRD Pamphlet 7), within the Monte Carlo noise.
    assert s_value.ellipsoid_reduction_factor([3.0, 3.0, 3.0], 3.0 * ratios) == pytest.approx(
        1 - 0.75 * ratios + ratios ** 3 / 16, abs=0.003)
    radius_cm = (3 * 20000 / (4 * math.pi)) ** (1 / 3)
    assert s_value.ellipsoid_photon_absorbed_fraction([radius_cm] * 3) == pytest.approx(
        s_value.whole_body_s_value(20.0)["photon_absorbed_fraction"], rel=0.005)
    assert geometric_reduction_factor(1.0) == pytest.approx(0.3125)


def test_body_ellipsoid_absorbs_fewer_photons_than_the_sphere(tmp_path):
    sphere, ellipsoid = s_value.whole_body_s_value(20.0), s_value.whole_body_s_value(20.0, "ellipsoid")
    assert ellipsoid["electron_Gy_per_MBq_h"] == sphere["electron_Gy_per_MBq_h"]
    assert 0.8 * sphere["photon_absorbed_fraction"] < ellipsoid["photon_absorbed_fraction"] \
        < 0.97 * sphere["photon_absorbed_fraction"]
    times = [2, 20, 44, 68, 92]
    out = assess_whole_body(write(tmp_path / "wb.csv", csv_of(times, mono_readings(times, 30.0))), 5000.0, 20.0)
    assert out["wb_dose_ellipsoid_Gy"] == pytest.approx(out["wb_tia_MBq_h"] * ellipsoid["S_Gy_per_MBq_h"])
    assert out["wb_dose_ellipsoid_Gy"] < out["wb_dose_Gy"]
    with pytest.raises(ValueError, match="Unknown body shape"):
        s_value.whole_body_s_value(20.0, "cube")


def test_trapezoid_uncertainty_has_no_term_for_the_known_start():
    # Readings exactly on a mono-exponential: no scatter, and the start (whole activity in the body) is known.
    times = [1.0, 24.0, 48.0, 72.0]
    readings = measurements.retention_from_readings(times, mono_readings(times, 30.0), "counts")
    result = retention.whole_body_tia(readings, 1000.0, "trapezoid")
    assert result["tia_uncertainty_MBq_h"] < 1e-9 * result["tia_MBq_h"]
