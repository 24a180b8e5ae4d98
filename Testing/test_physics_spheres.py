"""131I sphere S values, organ S-value tables with mass adjustment and local energy deposition,
checked against limits, an independent voxel convolution, a Monte Carlo of the sphere geometry and
hand-computed doses."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import fftconvolve

from MIBGDosimetryLib.physics import i131, kernels, spheres
from MIBGDosimetryLib.physics.local import local_deposition_dose_Gy
from MIBGDosimetryLib.physics.organ_tables import mass_adjusted_self_s_value, read_organ_s_values

#: 1 MeV in J (CODATA 2018).
JOULE_PER_MEV = 1.602176634e-13


def full_electron_absorption_S(mass_g):
    """S value (mGy/(MBq s)) if all 131I electron energy (ICRP-107, 0.19185 MeV) stays in ``mass_g``."""
    return 0.19185 * JOULE_PER_MEV * 1e6 / (mass_g * 1e-3) * 1e3


def test_geometric_reduction_factor_matches_monte_carlo_of_the_sphere():
    rng = np.random.default_rng(7)
    count = 200_000
    points = rng.normal(size=(count, 3))
    points *= (rng.uniform(size=count) ** (1 / 3) / np.linalg.norm(points, axis=1))[:, None]
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    for ratio in [0.1, 0.5, 1.0, 1.5, 1.9]:
        inside = np.mean(np.linalg.norm(points + ratio * directions, axis=1) < 1.0)
        assert spheres.geometric_reduction_factor(ratio) == pytest.approx(inside, abs=0.004)
    assert spheres.geometric_reduction_factor(2.5) == 0.0


def test_large_spheres_tend_to_full_electron_absorption():
    previous = 0.0
    for mass_g in [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]:
        result = spheres.sphere_s_value(mass_g)
        assert previous < result["electron_absorbed_fraction"] < 1.0
        previous = result["electron_absorbed_fraction"]
        electron_only = result["S_mGy_per_MBq_s"] - result["photon_absorbed_fraction"] * 0.3827 \
            * JOULE_PER_MEV * 1e12 / mass_g
        assert electron_only == pytest.approx(
            result["electron_absorbed_fraction"] * full_electron_absorption_S(mass_g), rel=0.002)
    large = spheres.sphere_s_value(1000.0)
    assert large["electron_absorbed_fraction"] > 0.99
    # A kilogram sphere also absorbs a sizable part of the photon energy, a 10 mg one almost none.
    assert 0.08 < large["photon_absorbed_fraction"] < 0.3
    assert spheres.sphere_s_value(0.01)["photon_absorbed_fraction"] < 0.01


def test_sphere_agrees_with_voxelised_sphere_convolved_with_the_kernel():
    voxel_mm = 4.0
    radius_mm = 41.5  # about 300 mL
    grid = np.arange(-12, 13) * voxel_mm
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    inside = (x ** 2 + y ** 2 + z ** 2) <= radius_mm ** 2
    kernel = kernels.voxel_s_kernel(voxel_mm, 24)
    # Unit total activity spread uniformly over the sphere's voxels.
    dose = fftconvolve(inside / inside.sum(), kernel, mode="same")
    mean_dose = dose[inside].mean()
    mass_g = inside.sum() * (voxel_mm / 10) ** 3
    assert 250 < mass_g < 350
    assert mean_dose == pytest.approx(spheres.sphere_s_value(mass_g)["S_mGy_per_MBq_s"], rel=0.05)


def test_sphere_rejects_bad_input():
    with pytest.raises(ValueError, match="mass"):
        spheres.sphere_s_value(0.0)
    with pytest.raises(ValueError, match="mass"):
        spheres.sphere_s_value(float("nan"))
    with pytest.raises(ValueError, match="density"):
        spheres.sphere_s_value(10.0, density_g_cm3=0.0)


def test_sphere_command_prints_json(capsys):
    from MIBGDosimetryLib.cli import main

    result = subprocess.run([sys.executable, "-m", "MIBGDosimetryLib.cli", "sphere", "--mass-g", "20"],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    expected = spheres.sphere_s_value(20.0)
    for key in ["S_mGy_per_MBq_s", "electron_absorbed_fraction", "photon_absorbed_fraction"]:
        assert report[key] == pytest.approx(expected[key], rel=1e-12)
    assert main(["sphere", "--mass-g", "-3"]) == 2
    assert "mass" in capsys.readouterr().err


def test_organ_table_import_with_units(tmp_path):
    unit_column = tmp_path / "unit_column.csv"
    unit_column.write_text("target,source,S value,units\n"
                           "Liver,Liver,4.5E-05,mGy/MBq-s\n"
                           "Spleen,Liver,1.2E-06,mGy/MBq-s\n"
                           "Kidneys,Kidneys,2.0E-13,Gy/(Bq s)\n", encoding="utf-8")
    table = read_organ_s_values(unit_column)
    assert table[("Liver", "Liver")] == pytest.approx(4.5e-5)
    assert table[("Spleen", "Liver")] == pytest.approx(1.2e-6)
    assert table[("Kidneys", "Kidneys")] == pytest.approx(2.0e-4)
    header_unit = tmp_path / "header_unit.csv"
    header_unit.write_text("Target;Source;S value (rad/uCi-h)\nLiver;Liver;1.0\n", encoding="utf-8")
    # 1 rad/(uCi h) = 0.01 Gy / (0.037 MBq x 3600 s) = 0.0751 mGy/(MBq s).
    assert read_organ_s_values(header_unit)[("Liver", "Liver")] == pytest.approx(10 / 0.037 / 3600)
    no_unit = tmp_path / "no_unit.csv"
    no_unit.write_text("target,source,S value\nLiver,Liver,1.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unit"):
        read_organ_s_values(no_unit)
    bad_unit = tmp_path / "bad_unit.csv"
    bad_unit.write_text("target,source,S value,units\nLiver,Liver,1.0,Ci/kg\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Unknown S-value unit"):
        read_organ_s_values(bad_unit)
    not_a_table = tmp_path / "text.csv"
    not_a_table.write_text("liver dose report\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a table"):
        read_organ_s_values(not_a_table)
    with pytest.raises(FileNotFoundError):
        read_organ_s_values(tmp_path / "missing.csv")


def test_mass_adjustment_follows_the_sphere_model():
    """Adjusting a reference organ's self S value to another mass by the m^-1 (electrons) and m^-2/3
    (photons) scaling reproduces the sphere model of that mass within a few per cent."""
    reference_mass_g = 300.0
    reference = spheres.sphere_s_value(reference_mass_g)["S_mGy_per_MBq_s"]
    assert mass_adjusted_self_s_value(reference, reference_mass_g, reference_mass_g) == pytest.approx(reference)
    for patient_mass_g in [150.0, 600.0]:
        adjusted = mass_adjusted_self_s_value(reference, reference_mass_g, patient_mass_g)
        truth = spheres.sphere_s_value(patient_mass_g)["S_mGy_per_MBq_s"]
        assert adjusted == pytest.approx(truth, rel=0.03)
    with pytest.raises(ValueError, match="positive"):
        mass_adjusted_self_s_value(reference, 0.0, 100.0)
    with pytest.raises(ValueError, match="units"):
        mass_adjusted_self_s_value(reference / 100, reference_mass_g, 100.0)


def test_local_deposition_dose():
    # 1 MBq h = 3.6e9 decays, each leaving 0.19185 MeV in 1 g.
    expected_Gy = 3.6e9 * 0.19185 * JOULE_PER_MEV / 1e-3
    assert local_deposition_dose_Gy(1.0, 1.0) == pytest.approx(expected_Gy, rel=1e-4)
    tia = np.array([[0.0, 2.0], [4.0, 8.0]])
    dose = local_deposition_dose_Gy(tia, 0.5, density_g_cm3=1.04)
    assert dose == pytest.approx(tia * expected_Gy / (0.5 * 1.04), rel=1e-4)
    assert tia[1, 1] == 8.0
    with pytest.raises(ValueError, match="volume"):
        local_deposition_dose_Gy(tia, 0.0)
    with pytest.raises(ValueError, match="not finite"):
        local_deposition_dose_Gy([np.nan], 1.0)
    assert i131.ELECTRON_ENERGY_MEV == pytest.approx(0.19185, rel=1e-4)
