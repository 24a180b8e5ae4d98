"""The GUI-free logic behind the Slicer modules, on slicer-core's real MRML: the lesion effect's threshold model,
the dose colour map, the application's own logics, the result bookkeeping of re-runs and the optional packages."""

import math
import os

import numpy as np
import pytest
import slicer
from scipy.special import erf

from MIBGCalibrationLib.record import CalibrationRecord
from MIBGCalibrationLib.threshold import ThresholdModel
from MIBGDosimetryLib import dependencies, dose_display, mrml, scene_results
from MIBGDosimetryLib.export.rtdose import add_dose_node
from MIBGDosimetryLib.segmentation.lesion_effect import delineate_lesion
from MIBGDosimetryLib.volume import ImageVolume

HERE = os.path.dirname(os.path.abspath(__file__))
FWHM_MM = 12.0
SPACING_MM = 2.0


def blurred_sphere_profile(r_mm, radius_mm, sigma_mm):
    """Activity concentration at distance r from the centre of a uniform unit sphere convolved with an isotropic
    Gaussian (closed form of the 3-D convolution)."""
    r = np.maximum(np.asarray(r_mm, dtype=float), 1e-9)
    s2 = math.sqrt(2.0) * sigma_mm
    return (0.5 * (erf((radius_mm - r) / s2) + erf((radius_mm + r) / s2))
            - sigma_mm / (r * math.sqrt(2 * math.pi))
            * (np.exp(-(r - radius_mm) ** 2 / (2 * sigma_mm ** 2)) - np.exp(-(r + radius_mm) ** 2 / (2 * sigma_mm ** 2))))


def edge_fraction(volume_ml, sigma_mm):
    """Threshold fraction (of the peak, no background) whose iso-surface is the sphere's true surface."""
    radius = (3 * volume_ml * 1000.0 / (4 * math.pi)) ** (1 / 3)
    return float(blurred_sphere_profile(radius, radius, sigma_mm) / blurred_sphere_profile(0.0, radius, sigma_mm))


def sphere_spect(volume_ml, sigma_mm, size=64):
    radius = (3 * volume_ml * 1000.0 / (4 * math.pi)) ** (1 / 3)
    centre = (size - 1) / 2 * SPACING_MM
    k, j, i = np.indices((size, size, size)) * SPACING_MM
    r = np.sqrt((i - centre) ** 2 + (j - centre) ** 2 + (k - centre) ** 2)
    image = 1000.0 * blurred_sphere_profile(r, radius, sigma_mm)
    return ImageVolume(image, (SPACING_MM,) * 3, (0.0, 0.0, 0.0)), [centre, centre, centre]


def record_node(scene, model):
    record = CalibrationRecord(calibration_factor_cps_per_MBq=10.0, calibration_factor_cps_per_MBq_uncertainty=0.1,
                               threshold_model=model)
    return record.to_node(scene, "Calibration record")


@pytest.mark.parametrize("volume_ml", [33.5, 4.2])
def test_effect_delineates_with_the_records_interpolated_model(mrml_context, volume_ml):
    """An interpolated model (a = b = c = 0) from analytic edge fractions of blurred spheres: the effect's lesion
    volume matches the sphere's true volume, where coefficients alone (fraction 0.05) overestimate it."""
    sigma = FWHM_MM / (2 * math.sqrt(2 * math.log(2)))
    knots = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    model = ThresholdModel(a=0.0, form="interpolated", knot_volumes_ml=knots,
                           knot_fractions=tuple(edge_fraction(v, sigma) for v in knots))
    spect, seed = sphere_spect(volume_ml, sigma)
    source = spect.to_node(mrml_context.scene, "SPECT")
    node = record_node(mrml_context.scene, model)
    mask, info, grid = delineate_lesion(mrml_context.scene, source, seed, node)
    assert info["volume_ml"] == pytest.approx(volume_ml, rel=0.10)
    assert mask.sum() * grid.voxel_volume_ml == pytest.approx(volume_ml, rel=0.15)
    # The coefficients alone (a = b = c = 0) threshold at the lowest fraction; a record holding such a model
    # is now refused as invalid instead of delineating a region far larger than the lesion.
    coefficients_only = ThresholdModel(a=model.a, b=model.b, c=model.c)
    assert coefficients_only.fraction(volume_ml) == pytest.approx(coefficients_only.min_fraction)
    with pytest.raises(ValueError, match="threshold_model.a"):
        delineate_lesion(mrml_context.scene, source, seed, record_node(mrml_context.scene, coefficients_only))


def test_effect_says_when_the_lesion_images_below_the_calibrated_contrast(mrml_context):
    """A sphere of 8 mL on a background, its image contrast about 6, with a model whose spheres imaged at
    contrast 40 and more: the effect takes the contrast-consistent outline (smaller than the
    self-consistent one) and its result text says why, with both volumes."""
    from MIBGDosimetryLib.segmentation.lesion_effect import result_text

    sigma = FWHM_MM / (2 * math.sqrt(2 * math.log(2)))
    knots = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    fractions = tuple(edge_fraction(v, sigma) for v in knots)
    model = ThresholdModel(a=0.0, form="interpolated-contrast", knot_volumes_ml=knots,
                           knot_fractions=(fractions, fractions), knot_contrasts=((40.0,) * 7, (80.0,) * 7))
    spect, seed = sphere_spect(8.0, sigma)
    spect = ImageVolume(spect.array + 100.0, spect.spacing_mm, spect.origin_ras_mm)
    source = spect.to_node(mrml_context.scene, "SPECT")
    _, info, _ = delineate_lesion(mrml_context.scene, source, seed, record_node(mrml_context.scene, model))
    check = info["contrast_check"]
    assert check["used"] and check["contrast"] < 40.0 and check["calibrated_contrast"] == pytest.approx(40.0)
    assert info["volume_ml"] == pytest.approx(check["alternative_volume_ml"])
    assert info["volume_ml"] < check["self_consistent_volume_ml"]
    text = result_text(info)
    assert text.startswith(f"{info['volume_ml']:.2f} mL, threshold fraction {info['fraction']:.3f}, converged")
    assert "below that of a calibrated sphere of its self-consistent volume" in text
    assert f"{check['self_consistent_volume_ml']:.1f} mL" in text


def test_effect_previews_the_outline_and_marks_the_seed_without_touching_the_segmentation(mrml_context):
    """Preview: the outline in a preview node of its own (outline only, not saved), the user's segment
    unchanged; a second preview replaces the first; the seed is a labelled markup point, moved when the
    same lesion is clicked again; removing the preview leaves the scene's own nodes."""
    from MIBGDosimetryLib.segmentation import lesion_effect
    from MIBGDosimetryLib.segmentation.segments import add_mask_segment, mask_from_segment

    sigma = FWHM_MM / (2 * math.sqrt(2 * math.log(2)))
    knots = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    model = ThresholdModel(a=0.0, form="interpolated", knot_volumes_ml=knots,
                           knot_fractions=tuple(edge_fraction(v, sigma) for v in knots))
    spect, seed = sphere_spect(8.0, sigma)
    scene = mrml_context.scene
    source = spect.to_node(scene, "SPECT")
    users = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "VOIs")
    drawn = np.zeros(spect.array.shape, dtype=bool)
    drawn[2:4, 2:4, 2:4] = True
    segment = add_mask_segment(scene, users, drawn, spect, "lesion_1")
    mask, _, grid = lesion_effect.delineate_lesion(scene, source, seed, record_node(scene, model))
    before = scene.GetNumberOfNodes()
    preview = lesion_effect.show_preview(scene, mask, grid)
    again = lesion_effect.show_preview(scene, mask, grid)
    assert scene.GetNodeByID(preview.GetID()) is None and scene.GetNumberOfNodes() == before + 2  # node + display
    assert not again.GetSaveWithScene() and again.GetHideFromEditors()
    assert again.GetDisplayNode().GetVisibility2DOutline() and not again.GetDisplayNode().GetVisibility2DFill()
    shown = again.GetSegmentation().GetNthSegmentID(0)
    np.testing.assert_array_equal(mask_from_segment(scene, again, shown, grid), mask)
    np.testing.assert_array_equal(mask_from_segment(scene, users, segment, spect), drawn)
    seeds = lesion_effect.mark_seed(scene, seed, "lesion_1")
    moved = [v + 4.0 for v in seed]
    assert lesion_effect.mark_seed(scene, moved, "lesion_1") is seeds
    lesion_effect.mark_seed(scene, seed, "lesion_2")
    assert [seeds.GetNthControlPointLabel(i) for i in range(seeds.GetNumberOfControlPoints())] == ["lesion_1",
                                                                                                     "lesion_2"]
    assert list(seeds.GetNthControlPointPosition(0)) == pytest.approx(moved)
    lesion_effect.remove_preview(scene)
    assert scene.GetNodeByID(again.GetID()) is None and scene.GetNodeByID(users.GetID()) is users
    kinds = [scene.GetNthNode(n).GetClassName() for n in range(scene.GetNumberOfNodes())]
    assert kinds.count("vtkMRMLSegmentationNode") == 1
    assert kinds.count("vtkMRMLSegmentationDisplayNode") == users.GetNumberOfDisplayNodes()


def test_effect_reports_a_record_without_threshold_model(mrml_context):
    spect, seed = sphere_spect(4.2, 5.0, size=24)
    source = spect.to_node(mrml_context.scene, "SPECT")
    record = CalibrationRecord(calibration_factor_cps_per_MBq=10.0, calibration_factor_cps_per_MBq_uncertainty=0.1)
    with pytest.raises(ValueError, match="no adaptive-threshold model"):
        delineate_lesion(mrml_context.scene, source, seed, record.to_node(mrml_context.scene))
    with pytest.raises(ValueError, match="Select the calibration record"):
        delineate_lesion(mrml_context.scene, source, seed, None)


def test_dose_over_ct_leaves_zero_dose_transparent(mrml_context):
    dose = ImageVolume(np.linspace(0.0, 40.0, 8 ** 3).reshape(8, 8, 8), (4.0,) * 3, (0.0,) * 3, units="Gy")
    node = add_dose_node(mrml_context, dose, "Absorbed dose (Gy)")
    display = node.GetDisplayNode()
    colours = display.GetColorNode()
    assert colours.GetSingletonTag() == dose_display.DOSE_COLOUR_TABLE_TAG
    rgba = [0.0] * 4
    colours.GetColor(0, rgba)
    assert rgba[3] == 0.0
    colours.GetColor(1, rgba)
    assert rgba == [0.0, 0.0, 1.0, 1.0]  # lowest drawn dose blue
    colours.GetColor(colours.GetNumberOfColors() - 1, rgba)
    assert rgba == [1.0, 0.0, 0.0, 1.0]  # highest dose red
    assert display.GetApplyThreshold()
    assert display.GetLowerThreshold() == pytest.approx(0.4)
    assert 0.0 < display.GetLowerThreshold()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, 40.0))
    again = add_dose_node(mrml_context, dose, "Second dose")
    assert again.GetDisplayNode().GetColorNodeID() == colours.GetID()  # one table per scene


@pytest.mark.parametrize("max_dose_Gy, expected", [
    (40.0, [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]),  # 1-2-5 levels from 1 % of the maximum (0.4 Gy) to below 40 Gy
    (3.7, [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),  # at most six, the highest kept
    (20.0, [0.2, 0.5, 1.0, 2.0, 5.0, 10.0]),  # the maximum itself is not a level
    (0.0, []), (float("nan"), []),
])
def test_isodose_levels_follow_the_1_2_5_series_below_the_maximum(max_dose_Gy, expected):
    assert dose_display.isodose_levels_Gy(max_dose_Gy) == expected


def test_application_context_uses_the_applications_logics():
    import types

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkMRMLApplicationLogic()
    app_logic.SetMRMLScene(scene)
    logics = {"volumes": slicer.vtkSlicerVolumesLogic(), "segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
              "transforms": slicer.vtkSlicerTransformLogic(), "sequences": slicer.vtkSlicerSequencesLogic(),
              "subjecthierarchy": slicer.vtkSlicerSubjectHierarchyModuleLogic(), "tables": slicer.vtkSlicerTablesLogic()}
    application = types.SimpleNamespace(
        mrmlScene=scene, app=types.SimpleNamespace(applicationLogic=lambda: app_logic),
        modules=types.SimpleNamespace(**{name: types.SimpleNamespace(logic=lambda logic=logic: logic)
                                         for name, logic in logics.items()}))
    context = mrml.SceneContext.of_application(application)
    assert context.scene is scene and context.app_logic is app_logic
    assert context.volumes_logic is logics["volumes"]
    assert context.segmentations_logic is logics["segmentations"]
    assert context.transform_logic is logics["transforms"]
    assert context.sequences_logic is logics["sequences"]
    assert context.subject_hierarchy_logic is logics["subjecthierarchy"]
    assert context.tables_logic is logics["tables"]


def test_previous_results_are_removed_through_references(mrml_context):
    scene = mrml_context.scene
    owner = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "MIBGDosimetry")
    kept = scene.AddNewNodeByClass("vtkMRMLTableNode", "Dose results")  # same name, not a result of a run
    old = [scene.AddNewNodeByClass("vtkMRMLTableNode", "Dose results"),
           scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Absorbed dose (Gy)")]
    for node in old:
        owner.AddNodeReferenceID(scene_results.RESULT_NODE_ROLE, node.GetID())
    owner.SetNodeReferenceID(scene_results.TABLE_ROLE, old[0].GetID())
    scene_results.remove_previous_results(scene, owner)
    assert all(not scene.IsNodePresent(node) for node in old)
    assert scene.IsNodePresent(kept)
    assert scene_results.shown_results(owner) == {"table": None, "dose": None, "ct": None}


def test_constraints_pin_the_bundled_packages_to_their_installed_versions():
    versions = {"numpy": "1.26.4", "pydicom": "2.4.4", "vtk": "9.4.2", "scipy": "1.13.1", "SimpleITK": "2.4.0",
                "requests": "2.32.3"}
    assert dependencies.bundled_constraints(versions) == [
        "numpy==1.26.4", "pydicom==2.4.4", "vtk==9.4.2", "scipy==1.13.1", "SimpleITK==2.4.0"]
    assert dependencies.bundled_constraints({"numpy": "2.0.2"}) == ["numpy==2.0.2"]


def test_requirements_come_from_the_installed_resource_file(tmp_path):
    import slicer_installation

    installed = slicer_installation.install_extension(os.path.dirname(HERE), str(tmp_path))
    requirements = dependencies.read_requirements(os.path.join(installed, "Resources", "requirements.txt"))
    assert [dependencies.requirement_name(r) for r in requirements] == [
        "xraylib", "icrp107-database", "highdicom", "matplotlib", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"]
    assert all(">=" in r and "==" not in r for r in requirements)


def test_missing_requirements_are_those_absent_or_too_old():
    import numpy

    assert dependencies.missing_requirements(
        ["mibg-dosimetry-absent-package>=1", "numpy>=1.0", "numpy>=999", f"numpy=={numpy.__version__}"]) == [
        "mibg-dosimetry-absent-package>=1", "numpy>=999"]
