"""The foundation: MRML scenes, the command line and the demo scene bundle."""

import subprocess
import sys

import numpy as np

from MIBGDosimetryLib import mrml


def test_scene_has_module_logics(mrml_context):
    assert mrml_context.volumes_logic.GetMRMLScene() is mrml_context.scene
    assert mrml_context.segmentations_logic.GetMRMLScene() is mrml_context.scene
    assert mrml_context.sequences_logic.GetMRMLScene() is mrml_context.scene


def test_volume_geometry_round_trip(mrml_context):
    rng = np.random.default_rng(0)
    array = rng.random((5, 6, 7)).astype(np.float32)
    directions = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    node = mrml.add_volume(mrml_context.scene, array, "v", (2.0, 3.0, 4.5), (10.0, -20.0, 30.0), directions)
    spacing, origin, dirs = mrml.volume_geometry(node)
    np.testing.assert_allclose(spacing, [2.0, 3.0, 4.5])
    np.testing.assert_allclose(origin, [10.0, -20.0, 30.0])
    np.testing.assert_allclose(dirs, directions)
    np.testing.assert_array_equal(mrml.array_from_volume(mrml_context.scene, node), array)
    array[0, 0, 0] = -1  # the node holds a copy, not the caller's array
    assert mrml.array_from_volume(mrml_context.scene, node)[0, 0, 0] != -1


def test_table_round_trip(mrml_context):
    node = mrml.add_table(mrml_context.scene, "t", {"name": ["a", "b"], "dose_Gy": [1.5, 2.25]})
    assert mrml.table_columns(node) == {"name": ["a", "b"], "dose_Gy": [1.5, 2.25]}


def test_cli_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "MIBGDosimetryLib.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "demo" in result.stdout


def test_bundle_reloads_volumes_and_tables_identically(tmp_path, mrml_context):
    rng = np.random.default_rng(2)
    volume = rng.random((6, 7, 8)) * 1e3
    mrml.add_volume(mrml_context.scene, volume, "dose", (2.5, 2.5, 3.0), (-10.0, 5.0, 2.0))
    columns = {"name": ["liver", "lesion"], "mean_dose_Gy": [1.23456789, 45.6]}
    mrml.add_table(mrml_context.scene, "results", columns)
    reloaded = mrml.load_bundle(mrml.save_bundle(mrml_context, str(tmp_path / "s.mrb")))
    node = reloaded.scene.GetFirstNodeByName("dose")
    np.testing.assert_array_equal(mrml.array_from_volume(reloaded.scene, node), volume)
    np.testing.assert_allclose(mrml.volume_geometry(node)[0], [2.5, 2.5, 3.0])
    saved = mrml.table_columns(mrml_context.scene.GetFirstNodeByName("results"))
    assert mrml.table_columns(reloaded.scene.GetFirstNodeByName("results")) == saved
    assert saved["mean_dose_Gy"] == [1.23457, 45.6]  # six significant digits, as Slicer stores tables


def test_existing_bundle_is_replaced_whole(tmp_path, mrml_context):
    target = tmp_path / "scene.mrb"
    target.write_bytes(b"old")
    mrml.add_volume(mrml_context.scene, np.ones((2, 2, 2)), "v")
    mrml.save_bundle(mrml_context, str(target))
    assert mrml.load_bundle(str(target)).scene.GetFirstNodeByName("v") is not None
    assert [p.name for p in tmp_path.iterdir()] == ["scene.mrb"]


def test_image_volume_round_trips_through_mrml_and_simpleitk(mrml_context):
    from MIBGDosimetryLib.volume import ImageVolume

    rng = np.random.default_rng(1)
    theta = np.deg2rad(10)
    directions = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    vol = ImageVolume(rng.random((4, 5, 6)), (2.0, 2.5, 3.0), (5.0, -7.0, 11.0), directions, "Bq/ml")
    node = vol.to_node(mrml_context.scene, "v")
    back = ImageVolume.from_node(mrml_context.scene, node)
    assert back.same_grid(vol)
    np.testing.assert_array_equal(back.array, vol.array)
    via_itk = ImageVolume.from_sitk(vol.to_sitk())
    assert via_itk.same_grid(vol)
    # voxel (1, 2, 3) lies where the IJK-to-RAS matrix says, in both representations
    ras = vol.ras_of_ijk([1, 2, 3])
    lps = vol.to_sitk().TransformIndexToPhysicalPoint((1, 2, 3))
    np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)
    np.testing.assert_allclose(vol.ijk_of_ras(ras), [1, 2, 3], atol=1e-9)
