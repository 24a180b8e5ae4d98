"""131I physics: decay data, interaction data and voxel S-value kernels, checked against published
values (ICRP-107 sums, NIST XCOM/ESTAR data, Lanconelli et al. 2012 voxel S values, MIRD Pamphlet 17)
and against exact identities (symmetry, energy conservation, voxel merging)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from MIBGDosimetryLib import compat
from MIBGDosimetryLib.physics import i131, kernels, materials, radial
from MIBGDosimetryLib.physics.electron_transport import collision_stopping_power_MeV_cm2_g
from MIBGDosimetryLib.physics.i131 import MGY_PER_MBQ_S_PER_MEV_PER_G

#: Density of the soft tissue of the published kernels (Lanconelli et al. 2012; MIRD Pamphlet 17).
PUBLISHED_SOFT_TISSUE_G_CM3 = 1.04


def published_octant(reference_dir, voxel_mm):
    """{(i, j, k): S mGy/(MBq s)} from the Lanconelli et al. (2012) table for ``voxel_mm`` cubic voxels."""
    path = reference_dir / "voxel-s-values" / f"131I{voxel_mm}mmsoft.txt"
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) == 4 and all(f.isdigit() for f in fields[:3]):
            values[tuple(int(f) for f in fields[:3])] = float(fields[3])
    assert len(values) == 216, f"{path.name}: expected the 6x6x6 octant"
    return values


def value_at(kernel, i, j, k):
    centre = kernel.shape[0] // 2
    return kernel[centre + k, centre + j, centre + i]


def test_decay_data_agrees_with_icrp107_and_ensdf():
    beta_MeV, beta_density = i131.beta_spectrum()
    beta_mean_MeV = compat.trapezoid(beta_MeV * beta_density, beta_MeV)
    assert beta_mean_MeV == pytest.approx(i131.BETA_ENERGY_MEV, rel=0.003)
    ce_MeV, ce_yield = i131.conversion_electron_lines()
    auger_MeV, auger_yield = i131.auger_electron_lines()
    electrons = beta_mean_MeV + ce_MeV @ ce_yield + auger_MeV @ auger_yield
    assert electrons == pytest.approx(0.19185, rel=0.003)
    assert i131.ELECTRON_ENERGY_MEV == pytest.approx(0.19185, rel=1e-4)
    photon_MeV, photon_yield = i131.photon_lines()
    assert photon_MeV @ photon_yield == pytest.approx(0.381236 + 0.001522, rel=1e-3)
    for energy, expected_yield in i131.PHOTON_LINES:
        nearest = np.argmin(np.abs(photon_MeV - energy))
        assert photon_MeV[nearest] == pytest.approx(energy, abs=1e-5)
        assert photon_yield[nearest] == pytest.approx(expected_yield, rel=0.01)
    assert i131.HALF_LIFE_H == pytest.approx(8.0252 * 24)
    assert i131.decay_factor(i131.HALF_LIFE_H) == pytest.approx(0.5)
    assert i131.decay_factor([0.0, 2 * i131.HALF_LIFE_H]) == pytest.approx([1.0, 0.25])


def test_photon_coefficients_agree_with_xcom_for_water():
    # NIST XCOM / Hubbell-Seltzer values for water at 364.5 keV.
    assert materials.photon_coefficient_cm2_g("water", "total", 0.3645) == pytest.approx(0.1101, rel=0.01)
    assert materials.photon_coefficient_cm2_g("water", "energy_absorption", 0.3645) == pytest.approx(0.03256, rel=0.01)
    with pytest.raises(ValueError, match="between 1 keV and 800 keV"):
        materials.photon_coefficient_cm2_g("water", "total", 1.5)
    with pytest.raises(ValueError, match="Unknown tissue"):
        materials.get_material("lead")


def test_electron_stopping_power_agrees_with_estar():
    # NIST ESTAR collision stopping powers of liquid water (MeV cm2/g).
    water = materials.get_material("water")
    estar = {0.01: 22.56, 0.1: 4.115, 0.5: 2.034}
    for energy_MeV, expected in estar.items():
        assert collision_stopping_power_MeV_cm2_g(water, energy_MeV) == pytest.approx(expected, rel=0.005)


@pytest.mark.parametrize("voxel_mm", [3, 6])
def test_kernel_matches_published_voxel_s_values(reference_dir, voxel_mm):
    published = published_octant(reference_dir, voxel_mm)
    kernel = kernels.voxel_s_kernel((voxel_mm,) * 3, 5, PUBLISHED_SOFT_TISSUE_G_CM3)

    def deviation(i, j, k):
        return value_at(kernel, i, j, k) / published[(i, j, k)] - 1.0

    assert abs(deviation(0, 0, 0)) < 0.03
    centre = 5
    for axis in range(3):
        for sign in (-1, 1):
            index = [centre] * 3
            index[axis] += sign
            assert abs(kernel[tuple(index)] / published[(1, 0, 0)] - 1.0) < 0.10
    assert abs(deviation(0, 0, 5)) < 0.15
    assert abs(deviation(5, 5, 5)) < 0.15
    # Beyond the required points: the whole published octant agrees within 5 %.
    worst = max(abs(deviation(*key)) for key in published)
    assert worst < 0.05


@pytest.mark.parametrize("voxel_mm, mird17", [(3, 0.92), (6, 0.129)])
def test_self_dose_agrees_with_mird_pamphlet_17(voxel_mm, mird17):
    kernel = kernels.voxel_s_kernel(voxel_mm, 0, PUBLISHED_SOFT_TISSUE_G_CM3)
    assert kernel.shape == (1, 1, 1)
    assert kernel[0, 0, 0] == pytest.approx(mird17, rel=0.03)


@pytest.mark.parametrize("voxel_mm, density_g_cm3", [(2.0, 1.0), (4.42, 0.3), (10.0, 1.0)])
def test_kernel_conserves_energy(voxel_mm, density_g_cm3):
    """Sum of S x voxel mass = energy absorbed within the kernel's extent: all electron energy plus the
    photon energy absorbed there, bounded by the spheres inside and around the kernel's box."""
    half_width = 12
    kernel = kernels.voxel_s_kernel(voxel_mm, half_width, density_g_cm3)
    mass_g = (voxel_mm / 10.0) ** 3 * density_g_cm3
    absorbed_MeV = kernel.sum() * mass_g / MGY_PER_MBQ_S_PER_MEV_PER_G
    radial_kernel = radial.radial_kernel()
    inner_cm = (half_width + 0.5) * voxel_mm / 10.0 - math.sqrt(3) * voxel_mm / 20.0
    outer_cm = math.sqrt(3) * (half_width + 1.0) * voxel_mm / 10.0
    electrons = i131.ELECTRON_ENERGY_MEV
    lower = electrons + radial_kernel.photon_cumulative_MeV(inner_cm * density_g_cm3)
    upper = electrons + radial_kernel.photon_cumulative_MeV(outer_cm * density_g_cm3)
    assert lower * 0.995 < absorbed_MeV < upper * 1.005


def test_anisotropic_kernel_equals_merged_cubic_voxels():
    """A 3 x 3 x 6 mm voxel is two 3 mm voxels stacked along z: its S values are the averages of the
    cubic S values over source and target halves, S(i, j, k) = [2 S3(i,j,2k) + S3(i,j,2k-1) + S3(i,j,2k+1)] / 4."""
    tall = kernels.voxel_s_kernel((3.0, 3.0, 6.0), 3)
    cubic = kernels.voxel_s_kernel(3.0, 7)
    assert tall.shape == (7, 7, 7)
    for axis in range(3):
        assert np.allclose(tall, np.flip(tall, axis=axis), rtol=1e-12)
    assert np.allclose(tall, tall.transpose(0, 2, 1), rtol=1e-12)
    for i, j, k in [(0, 0, 0), (1, 0, 0), (0, 0, 1), (1, 1, 1), (2, 1, 0), (0, 0, 3), (3, 3, 3)]:
        merged = (2 * value_at(cubic, i, j, 2 * k) + value_at(cubic, i, j, 2 * k - 1)
                  + value_at(cubic, i, j, 2 * k + 1)) / 4
        assert value_at(tall, i, j, k) == pytest.approx(merged, rel=0.01), (i, j, k)
    # z is the first array axis: the 3 x 3 mm face passes less energy than the 3 x 6 mm face.
    assert tall[4, 3, 3] < tall[3, 3, 4]


def test_density_scaling_and_bone():
    """Electron energy absorbed in the source voxel depends on mass thickness: a 3 mm voxel at density 2
    equals a 6 mm voxel at density 1 in absorbed fraction (exact for electrons; the photon part differs)."""
    dense = kernels.voxel_s_kernel(3.0, 0, 2.0)[0, 0, 0] * 2.0 * 0.3 ** 3
    large = kernels.voxel_s_kernel(6.0, 0, 1.0)[0, 0, 0] * 0.6 ** 3
    assert dense == pytest.approx(large, rel=0.02)
    bone = kernels.voxel_s_kernel(3.0, 1, 1.92, material="bone")
    soft = kernels.voxel_s_kernel(3.0, 1, 1.92)
    assert bone[1, 1, 1] == pytest.approx(soft[1, 1, 1], rel=0.05)


def test_kernel_rejects_bad_input_and_returns_independent_copies():
    with pytest.raises(ValueError, match="between"):
        kernels.voxel_s_kernel(0.1, 3)
    with pytest.raises(ValueError, match="whole number"):
        kernels.voxel_s_kernel(4.0, 2.5)
    with pytest.raises(ValueError, match="one edge length or three"):
        kernels.voxel_s_kernel((4.0, 4.0), 2)
    with pytest.raises(ValueError, match="density"):
        kernels.voxel_s_kernel(4.0, 2, density_g_cm3=-1.0)
    with pytest.raises(ValueError, match="smaller half width"):
        kernels.voxel_s_kernel(20.0, 40)
    first = kernels.voxel_s_kernel(4.0, 2)
    first[:] = 0.0
    assert kernels.voxel_s_kernel(4.0, 2).max() > 0.0


def test_radial_kernel_cache_file_holds_the_computed_kernel():
    in_memory = radial.radial_kernel("soft_tissue")
    path = radial.cache_file("soft_tissue")
    assert path.is_file()
    from_file = radial._load("soft_tissue", path)
    for name in radial._ARRAYS:
        assert np.array_equal(getattr(from_file, name), getattr(in_memory, name)), name
    assert from_file.local_MeV == in_memory.local_MeV
    # All 131I electron energy is in the kernel (ICRP-107 beta + conversion + Auger).
    assert in_memory.electron_MeV == pytest.approx(i131.ELECTRON_ENERGY_MEV, rel=0.002)


def test_kernel_command_writes_npy_and_reports_json(tmp_path):
    out = tmp_path / "kernel.npy"
    result = subprocess.run([sys.executable, "-m", "MIBGDosimetryLib.cli", "kernel", "--voxel-mm", "4.42",
                             "--half-width", "3", "--out", str(out)], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    kernel = np.load(out)
    assert kernel.dtype == np.float64 and kernel.shape == (7, 7, 7)
    assert report["voxel_mm"] == [4.42, 4.42, 4.42]
    assert report["S000"] == pytest.approx(kernel[3, 3, 3], rel=1e-12)
    assert np.allclose(kernel, kernels.voxel_s_kernel(4.42, 3), rtol=1e-12)
    assert list(tmp_path.iterdir()) == [out]


def test_kernel_command_in_process_for_anisotropic_voxels_and_bad_input(tmp_path, capsys):
    from MIBGDosimetryLib.cli import main

    anisotropic = tmp_path / "tall.npy"
    assert main(["kernel", "--voxel-mm", "3", "3", "6", "--half-width", "2", "--out", str(anisotropic)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["voxel_mm"] == [3.0, 3.0, 6.0] and report["shape"] == [5, 5, 5]
    assert np.allclose(np.load(anisotropic), kernels.voxel_s_kernel((3, 3, 6), 2), rtol=1e-12)
    assert main(["kernel", "--voxel-mm", "3", "3", "--half-width", "2", "--out", str(tmp_path / "bad.npy")]) == 2
    assert "one value" in capsys.readouterr().err
    assert main(["kernel", "--voxel-mm", "30", "--half-width", "2", "--out", str(tmp_path / "big.npy")]) == 2
    assert "between" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tall.npy"]


@pytest.mark.parametrize("voxel_mm", [3, 6])
def test_kernel_command_defaults_reproduce_published_soft_tissue_values(tmp_path, reference_dir, voxel_mm):
    """A user who asks for a soft-tissue kernel without options gets the published values."""
    from MIBGDosimetryLib.cli import main

    out = tmp_path / "k.npy"
    assert main(["kernel", "--voxel-mm", str(voxel_mm), "--half-width", "5", "--out", str(out)]) == 0
    kernel = np.load(out)
    published = published_octant(reference_dir, voxel_mm)
    assert value_at(kernel, 0, 0, 0) == pytest.approx(published[(0, 0, 0)], rel=0.03)
    for face in [(1, 0, 0), (0, 1, 0), (0, 0, 1)]:
        assert value_at(kernel, *face) == pytest.approx(published[face], rel=0.10)
    for tail in [(0, 0, 5), (5, 5, 5)]:
        assert value_at(kernel, *tail) == pytest.approx(published[tail], rel=0.15)
