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


def _torso_phantom_4p4mm():
    """A child-sized torso on 4.4 mm voxels (k, j, i): body ellipsoid, lungs, a hot liver and kidneys
    (TIA in MBq s), with the organ masks."""
    shape = (80, 48, 56)
    k, j, i = np.indices(shape, dtype=float)

    def ellipsoid(centre, semi):
        return sum(((x - c) / s) ** 2 for x, c, s in zip((k, j, i), centre, semi)) <= 1.0

    body = ellipsoid((40, 24, 28), (38, 18, 24))
    organs = {"lungs": ellipsoid((56, 24, 28), (10, 12, 18)) & body,
              "liver": ellipsoid((38, 24, 22), (7, 10, 10)),
              "kidneys": ellipsoid((30, 30, 40), (6, 4, 3))}
    tia = np.where(body, 1.0, 0.0)
    tia[organs["lungs"]] = 1.5
    tia[organs["liver"]] = 12.0
    tia[organs["kidneys"]] = 6.0
    return tia * 3.6e5, organs


def test_whole_map_kernel_counts_the_far_photons_of_the_whole_body():
    """Organ mean doses with the whole-map kernel against an independent body-size reference: the near
    field by the 7^3 voxel S kernel, every farther offset by the photon point kernel at voxel centres
    (truth_dose). The 21^3 kernel (the former default) misses the far photons."""
    from MIBGDosimetryLib.dose.convolution import convolve_kernel
    from MIBGDosimetryLib.phantoms import truth_dose

    tia, organs = _torso_phantom_4p4mm()
    whole = convolve_kernel(tia, kernels.whole_map_kernel(4.4, tia.shape))
    reference = convolve_kernel(tia, kernels.voxel_s_kernel(4.4, 3)) + truth_dose.far_photon_dose_mGy(tia, 4.4, 3)
    short = convolve_kernel(tia, kernels.voxel_s_kernel(4.4, 10))
    for name, mask in organs.items():
        assert whole[mask].mean() == pytest.approx(reference[mask].mean(), rel=0.003), name
        assert short[mask].mean() < 0.975 * reference[mask].mean(), name
    assert short[organs["lungs"]].mean() < 0.9 * reference[organs["lungs"]].mean()


def test_whole_map_kernel_shape_inner_values_and_reach_limits():
    kernel = kernels.whole_map_kernel((4.0, 4.0, 5.0), (30, 20, 25))
    assert kernel.shape == (59, 39, 49)
    # Within DISTANT_OFFSET voxels it is the ordinary voxel S kernel.
    inner = kernels.voxel_s_kernel((4.0, 4.0, 5.0), 8)
    centre = np.array(kernel.shape) // 2
    np.testing.assert_allclose(kernel[tuple(slice(c - 8, c + 9) for c in centre)], inner, rtol=1e-12)
    limited = kernels.whole_map_kernel((4.0, 4.0, 5.0), (30, 20, 25), max_half_width=12)
    assert limited.shape == (25, 25, 25)
    # Energy: all electrons plus the photon energy absorbed between the spheres in and around the box.
    mass_g = 0.4 * 0.4 * 0.5 * 1.04
    absorbed_MeV = kernel.sum() * mass_g / MGY_PER_MBQ_S_PER_MEV_PER_G
    photons = radial.radial_kernel()
    inner_g_cm2 = 1.04 * (9.5 * 0.4 - 0.35)
    outer_g_cm2 = 1.04 * math.sqrt((15 * 0.4) ** 2 + (10 * 0.4) ** 2 + (30 * 0.5) ** 2)
    assert (i131.ELECTRON_ENERGY_MEV + photons.photon_cumulative_MeV(inner_g_cm2) < absorbed_MeV
            < i131.ELECTRON_ENERGY_MEV + photons.photon_cumulative_MeV(outer_g_cm2))
    # Beyond the 60 g/cm2 of the photon data (kernel zero there) lies 3 % of the photon energy.
    assert 0.02 < 1.0 - photons.photon_cumulative_MeV(60.0) / photons.photon_emitted_MeV < 0.04
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="at least 1"):
            kernels.whole_map_kernel(4.0, (10, 10, 10), max_half_width=bad)
    with pytest.raises(ValueError, match="crop the SPECT"):
        kernels.whole_map_kernel(1.0, (600, 600, 600))


def test_tissue_outside_a_small_body_adds_a_few_percent_of_photon_energy():
    """The kernels assume tissue everywhere; a child's torso is surrounded by air. For a point source at
    the centre of an 8 cm tissue sphere in vacuum (Monte Carlo with our photon transport, photons lost
    when they leave the sphere) the infinite-medium kernel overestimates the photon energy absorbed in
    the sphere by 3-8 % (backscatter from tissue that is not there), i.e. under 2 % of all energy
    absorbed there (electrons included)."""
    from MIBGDosimetryLib.physics.photon_transport import PHOTON_CUTOFF_MEV, photon_scatter_deposition

    photons = radial.radial_kernel()
    radius_g_cm2 = 8.0 * 1.04
    energy, yields = i131.photon_lines()
    transported = energy >= PHOTON_CUTOFF_MEV
    in_vacuum = photon_scatter_deposition("soft_tissue", energy[transported], yields[transported],
                                          np.linspace(0.0, radius_g_cm2, 41), 200_000, 11).sum()
    scatter_cumulative = np.concatenate([[0.0], np.cumsum(photons.scatter_deposit_MeV)])
    first = photons.photon_cumulative_MeV(radius_g_cm2) - np.interp(radius_g_cm2, photons.scatter_edges_g_cm2,
                                                                       scatter_cumulative)
    infinite = photons.photon_cumulative_MeV(radius_g_cm2)
    excess = infinite / (first + in_vacuum) - 1.0
    assert 0.03 < excess < 0.08
    assert (infinite - first - in_vacuum) / (infinite + i131.ELECTRON_ENERGY_MEV) < 0.02


def test_dose_command_refuses_a_kernel_of_the_source_voxel_alone(tmp_path, capsys):
    from MIBGDosimetryLib.cli import main
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions

    assert DoseOptions().kernel_half_width is None
    assert main(["dose", str(tmp_path / "no-study"), "--calibration", str(tmp_path / "no.json"),
                 "--out", str(tmp_path / "out"), "--kernel-half-width", "0"]) == 2
    message = capsys.readouterr().err
    assert "kernel half width" in message and "at least 1" in message and "whole map" in message
    assert not (tmp_path / "out").exists()
