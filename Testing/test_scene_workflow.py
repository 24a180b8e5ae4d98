"""The dose calculation on VOIs drawn in Slicer: ``mibgdose dose --segmentation`` with a ``.seg.nrrd``,
and the scene logic (registration, then dose from whatever the segmentation node and the transform
nodes hold) on real MRML nodes.

The phantom study and its calibration are generated once for the module; the truth masks come from
the phantom's anatomy rasterised on the CT grid, not from the study's files. To reuse data generated
earlier (same seed), point the environment variable MIBG_TEST_PHANTOM_DIR at a folder holding
``calibration.json`` and ``patient-study``.
"""

import os

import numpy as np
import pytest
import scipy.ndimage
from dicom_module_loading import dicom_database_of, load_like_the_dicom_module

from MIBGDosimetryLib import mrml

#: The lesion edited in the tests: in the pelvis, far from every organ.
EDITED_LESION = "bone_met_pelvis"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Calibration record and patient study of the demo phantom (seed 1), with the truth anatomy."""
    from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs
    from MIBGDosimetryLib.phantoms import anatomy as anatomy_module
    from MIBGDosimetryLib.phantoms import calibration, patient

    out = tmp_path_factory.mktemp("scene-phantom")
    cached = os.environ.get("MIBG_TEST_PHANTOM_DIR")
    if cached and os.path.isfile(os.path.join(cached, "calibration.json")):
        out = cached
    else:
        calibration.write_calibration_set(str(out / "calibration-phantom"), calibration.CalibrationConfig(seed=1))
        write_outputs(calibrate_phantom_folder(str(out / "calibration-phantom"), log=lambda *_: None),
                      str(out / "calibration.json"))
        patient.write_patient_study(str(out / "patient-study"), patient.PatientConfig(seed=1))
    config = patient.PatientConfig(seed=1)
    anatomy = anatomy_module.child_anatomy(config.administered_activity_MBq, config.lesions)
    labels, _ = anatomy.labels_and_hu(config.grid.fine_points_ras())
    structures = {s.name: (s.kind, labels == n + 2) for n, s in enumerate(anatomy.structures)}
    lesion = next(s for s in config.lesions if s.name == EDITED_LESION)
    return {"study": os.path.join(out, "patient-study"), "calibration": os.path.join(out, "calibration.json"),
            "grid": config.grid, "structures": structures, "lesion": lesion}


def _quiet(*_):
    pass


def _doses(calculation):
    return {v["name"]: v["mean_dose_Gy"] for v in calculation.results["vois"]}


def _write_seg_nrrd(path, masks, grid, tags=None):
    """A .seg.nrrd as Slicer saves it, from ``{name: mask}`` on the grid of ImageVolume ``grid``."""
    from MIBGDosimetryLib.segmentation.segments import add_mask_segment

    context = mrml.new_scene()
    try:
        node = context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
        for name, mask in masks.items():
            segment_id = add_mask_segment(context.scene, node, mask, grid, name)
            for key, value in (tags or {}).get(name, {}).items():
                node.GetSegmentation().GetSegment(segment_id).SetTag(key, value)
        storage = context.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(path))
        assert storage.WriteData(node)
    finally:
        context.scene.Clear(1)
    return str(path)


def _lesion_on_spect_grid(phantom, reference, grow_voxels=0):
    """The edited lesion's sphere rasterised on the SPECT grid (voxel centres inside), grown by whole voxels."""
    k, j, i = np.indices(reference.array.shape)
    ras = reference.ras_of_ijk(np.stack([i, j, k], axis=-1))
    distance_mm = np.linalg.norm(ras - np.asarray(phantom["lesion"].centre_ras_mm), axis=-1)
    mask = distance_mm <= phantom["lesion"].diameter_mm / 2
    if grow_voxels:
        mask = scipy.ndimage.binary_dilation(mask, iterations=grow_voxels)
    return mask


@pytest.fixture(scope="module")
def study(phantom):
    from MIBGDosimetryLib.study import load_study

    return load_study(phantom["study"])


@pytest.fixture(scope="module")
def folder_run(phantom):
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    return run_dose(phantom["study"], phantom["calibration"], log=_quiet)


def test_seg_nrrd_of_the_truth_organs_gives_the_doses_of_the_study_segmentation(phantom, folder_run, tmp_path):
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    organs = {name: mask for name, (kind, mask) in phantom["structures"].items() if kind == "organ"}
    path = _write_seg_nrrd(tmp_path / "organs.seg.nrrd", organs,
                           phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8)))
    drawn = run_dose(phantom["study"], phantom["calibration"], log=_quiet, segmentation=path)
    expected, got = _doses(folder_run), _doses(drawn)
    assert set(got) == set(expected)
    errors = {name: got[name] / expected[name] - 1 for name in expected}
    # The segments carry the same masks as the study's SEG (both made from the truth): doses agree to round-off.
    assert all(abs(e) <= 1e-6 for e in errors.values()), errors
    sources = {v["name"]: v["source"] for v in drawn.results["vois"]}
    assert all(sources[name].startswith("segmentation ") for name in organs)
    assert drawn.results["provenance"]["inputs"]["segmentation"] == os.path.abspath(path)


def test_a_grown_lesion_segment_changes_that_lesion_dose_only(phantom, study, tmp_path):
    """Without partial-volume correction a VOI's activity is the counts inside it, so the grown
    lesion's mean dose follows the counts and masses inside the two outlines (summed here directly
    from the reference SPECT), while every other VOI keeps its dose."""
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, run_dose

    reference = study.timepoints[0].spect
    fine = phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8))
    organs = {name: mask for name, (kind, mask) in phantom["structures"].items() if kind == "organ"}
    options = DoseOptions(partial_volume="none")
    runs, masks = {}, {}
    for grow in (0, 1):
        masks[grow] = _lesion_on_spect_grid(phantom, reference, grow)
        organ_path = _write_seg_nrrd(tmp_path / f"organs{grow}.seg.nrrd", organs, fine)
        lesion_path = _write_seg_nrrd(tmp_path / f"lesion{grow}.seg.nrrd", {EDITED_LESION: masks[grow]}, reference,
                                      tags={EDITED_LESION: {"MIBG.VOIType": "lesion"}})
        combined = _merge_seg_files(tmp_path / f"all{grow}.seg.nrrd", [organ_path, lesion_path], fine)
        runs[grow] = run_dose(phantom["study"], phantom["calibration"], options, log=_quiet, segmentation=combined)
    before, after = _doses(runs[0]), _doses(runs[1])
    entries = {v["name"]: v for v in runs[1].results["vois"]}
    assert entries[EDITED_LESION]["kind"] == "lesion"
    assert entries[EDITED_LESION]["volume_ml"] == pytest.approx(np.count_nonzero(masks[1]) *
                                                                  reference.voxel_volume_ml, rel=1e-9)
    for name in before:
        if name != EDITED_LESION:
            assert after[name] == pytest.approx(before[name], rel=2e-3), name
    counts = {grow: float(reference.array[masks[grow]].sum()) for grow in (0, 1)}
    voxels = {grow: np.count_nonzero(masks[grow]) for grow in (0, 1)}
    expected_ratio = (counts[1] / counts[0]) * (voxels[0] / voxels[1])
    assert expected_ratio < 0.9
    assert after[EDITED_LESION] / before[EDITED_LESION] == pytest.approx(expected_ratio, rel=0.03)


def _merge_seg_files(path, paths, grid_for_write):
    """One .seg.nrrd holding the segments of several (as a user imports them into one segmentation)."""
    from MIBGDosimetryLib.segmentation.segment_vois import read_segmentation_file

    context = mrml.new_scene()
    try:
        target = read_segmentation_file(context.scene, paths[0])
        for other in paths[1:]:
            source = read_segmentation_file(context.scene, other)
            for n in range(source.GetSegmentation().GetNumberOfSegments()):
                segment_id = source.GetSegmentation().GetNthSegmentID(n)
                assert target.GetSegmentation().CopySegmentFromSegmentation(source.GetSegmentation(), segment_id)
        storage = context.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(path))
        assert storage.WriteData(target)
    finally:
        context.scene.Clear(1)
    return str(path)


# The scene logic on real MRML nodes. The tests below share one scene, registered once, and run in
# file order: the first ones leave the scene as it was, the last ones edit it.

@pytest.fixture(scope="module")
def scene(phantom, study):
    """The study in a scene as a user would have it: volumes, metadata tables, the calibration record
    node and a segmentation drawn on the reference CT (organs and lesions from the truth, lesions
    tagged as such); registered, with a first dose calculation."""
    from MIBGCalibrationLib.record import CalibrationRecord
    from MIBGDosimetryLib.scene.logic import SceneDoseLogic, add_study
    from MIBGDosimetryLib.segmentation.segment_vois import VOI_TYPE_TAG
    from MIBGDosimetryLib.segmentation.segments import add_mask_segment
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions

    context = mrml.new_scene()
    timepoints = add_study(context, study)
    calibration = CalibrationRecord.from_json(phantom["calibration"]).to_node(context.scene)
    segmentation = context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Organs and lesions")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(timepoints[0].ct)
    ct = study.timepoints[0].ct
    for name, (kind, mask) in phantom["structures"].items():
        segment_id = add_mask_segment(context.scene, segmentation, mask, ct, name)
        segmentation.GetSegmentation().GetSegment(segment_id).SetTag(VOI_TYPE_TAG, kind)
    logic = SceneDoseLogic(context)
    parameters = logic.new_parameter_node()
    logic.set_inputs(parameters, timepoints, segmentation, calibration)
    messages = []
    logic.register(parameters, progress=messages.append)
    options = DoseOptions(partial_volume="none")
    first = logic.compute_dose(parameters, options, progress=messages.append)
    yield {"context": context, "logic": logic, "parameters": parameters, "segmentation": segmentation,
           "options": options, "first": first, "messages": messages, "ct": ct, "reference": study.timepoints[0].spect}
    context.scene.Clear(1)


def _snapshot(scene):
    """Node IDs of the scene and the content of the parameter node's result nodes."""
    from MIBGDosimetryLib.scene import logic as scene_logic

    context, parameters = scene["context"], scene["parameters"]
    nodes = context.scene.GetNodes()
    ids = sorted(nodes.GetItemAsObject(n).GetID() for n in range(nodes.GetNumberOfItems()))
    references = {role: parameters.GetNodeReferenceID(role) for role in scene_logic.RESULT_ROLES}
    dose = mrml.array_from_volume(context.scene, parameters.GetNodeReference(scene_logic.DOSE_ROLE))
    return {"ids": ids, "references": references, "dose_sum": float(dose.sum()),
            "table": mrml.table_columns(parameters.GetNodeReference(scene_logic.RESULTS_TABLE_ROLE)),
            "json": parameters.GetNodeReference(scene_logic.RESULTS_TEXT_ROLE).GetText(),
            "transforms": [node.GetID() for node in scene["logic"].transform_nodes(parameters)]}


def test_scene_run_references_its_results_and_matches_the_truth_segments(scene):
    from MIBGDosimetryLib.scene import logic as scene_logic

    parameters = scene["parameters"]
    first = scene["first"]
    for role in scene_logic.RESULT_ROLES:
        assert parameters.GetNodeReference(role) is not None, role
    dose_node = parameters.GetNodeReference(scene_logic.DOSE_ROLE)
    assert dose_node.GetAttribute(mrml.DOSE_VOLUME_ATTRIBUTE) == "1"
    assert np.array_equal(mrml.array_from_volume(scene["context"].scene, dose_node), first.dose_map.array)
    kinds = {v["name"]: v["kind"] for v in first.results["vois"]}
    assert kinds == {name: kind for name, (kind, _) in _structures(scene).items()}
    assert len(scene["logic"].transform_nodes(parameters)) == len(first.study.timepoints)
    assert not any(m.startswith("Registering") for m in scene["messages"][1:]), "the dose step registered again"


def _structures(scene):
    segmentation = scene["segmentation"].GetSegmentation()
    from MIBGDosimetryLib.segmentation.segment_vois import segment_tag

    return {segmentation.GetNthSegment(n).GetName(): (segment_tag(segmentation.GetNthSegment(n)), None)
            for n in range(segmentation.GetNumberOfSegments())}


def test_cancel_mid_run_leaves_the_scene_as_it_was(scene):
    from MIBGDosimetryLib.scene.logic import DoseRunCancelled

    before = _snapshot(scene)
    cancelled = {"flag": False}
    seen = []

    def progress(message):
        seen.append(message)
        if message.startswith("Fitting time-activity curves per voxel"):
            cancelled["flag"] = True

    with pytest.raises(DoseRunCancelled):
        scene["logic"].compute_dose(scene["parameters"], scene["options"], progress=progress,
                                    cancel=lambda: cancelled["flag"])
    assert seen[-1].startswith("Fitting time-activity curves per voxel")
    assert _snapshot(scene) == before


def test_a_rerun_replaces_the_results_instead_of_adding_nodes(scene):
    before = _snapshot(scene)
    again = scene["logic"].compute_dose(scene["parameters"], scene["options"])
    after = _snapshot(scene)
    assert len(after["ids"]) == len(before["ids"])
    assert after["references"] != before["references"]
    assert not set(after["references"].values()) & set(after["ids"]) - set(after["references"].values())
    assert not set(before["references"].values()) & set(after["ids"])
    assert _doses(again) == _doses(scene["first"])


def test_scene_bundle_reopens_with_resolving_references_and_identical_numbers(scene, tmp_path):
    from MIBGDosimetryLib.scene import logic as scene_logic

    path = mrml.save_bundle(scene["context"], str(tmp_path / "dosimetry.mrb"))
    reopened = mrml.load_bundle(path)
    try:
        nodes = reopened.scene.GetNodesByClass("vtkMRMLScriptedModuleNode")
        parameters = [nodes.GetItemAsObject(n) for n in range(nodes.GetNumberOfItems())
                      if nodes.GetItemAsObject(n).GetAttribute("ModuleName") == scene_logic.MODULE_NAME]
        assert len(parameters) == 1
        parameters = parameters[0]
        for role in (scene_logic.SEGMENTATION_ROLE, scene_logic.CALIBRATION_ROLE) + scene_logic.RESULT_ROLES:
            assert parameters.GetNodeReference(role) is not None, role
        for role in (scene_logic.SPECT_ROLE, scene_logic.CT_ROLE, scene_logic.METADATA_ROLE,
                     scene_logic.TRANSFORM_ROLE):
            count = parameters.GetNumberOfNodeReferences(role)
            assert count == len(scene["first"].study.timepoints), role
            assert all(parameters.GetNthNodeReference(role, n) is not None for n in range(count)), role
        logic = scene_logic.SceneDoseLogic(reopened)
        assert logic.tac_chart(parameters, EDITED_LESION) is not None
        for role in (scene_logic.DVH_CHART_ROLE, scene_logic.REGISTRATION_TABLE_ROLE,
                     scene_logic.REGISTERED_SPECT_ROLE):
            assert parameters.GetNodeReference(role) is not None, role
        again = logic.compute_dose(parameters, scene["options"])
        expected = _doses(scene["first"])
        # Differences seen are below 1e-7 relative (round-off of the reloaded inputs, amplified by the fits).
        assert _doses(again) == pytest.approx(expected, rel=1e-6)
    finally:
        reopened.scene.Clear(1)


def test_edited_segments_change_exactly_the_edited_vois(scene):
    """A lesion grown by a 4.4 mm margin and the upper half of the liver erased, as Segment Editor
    effects do (binary labelmap replaced in the segment): only those two VOIs change; the lesion
    follows the counts and volumes of the two outlines summed directly on the reference SPECT."""
    from MIBGDosimetryLib.segmentation.segment_vois import segment_on_own_grid
    from MIBGDosimetryLib.segmentation.segments import set_segment_mask

    context, segmentation, ct = scene["context"], scene["segmentation"], scene["ct"]
    before = scene["logic"].compute_dose(scene["parameters"], scene["options"])
    ids = {segmentation.GetSegmentation().GetNthSegment(n).GetName(): segmentation.GetSegmentation().GetNthSegmentID(n)
           for n in range(segmentation.GetSegmentation().GetNumberOfSegments())}
    k, j, i = np.indices(ct.array.shape)
    ras = ct.ras_of_ijk(np.stack([i, j, k], axis=-1))
    lesion = _phantom_lesion(scene)
    margin_mm = 4.4
    grown = np.linalg.norm(ras - np.asarray(lesion.centre_ras_mm), axis=-1) <= lesion.diameter_mm / 2 + margin_mm
    set_segment_mask(context.scene, segmentation, ids[EDITED_LESION], grown, ct)
    liver = segment_on_own_grid(segmentation, ids["liver"])
    liver_mask = mrml_mask_on(liver, ct)
    upper = ras[..., 2] > float(np.median(ras[..., 2][liver_mask]))
    set_segment_mask(context.scene, segmentation, ids["liver"], liver_mask & ~upper, ct)
    after = scene["logic"].compute_dose(scene["parameters"], scene["options"])

    doses_before, doses_after = _doses(before), _doses(after)
    for name in doses_before:
        if name not in (EDITED_LESION, "liver"):
            assert doses_after[name] == pytest.approx(doses_before[name], rel=5e-3), name
    volumes = {v["name"]: v["volume_ml"] for v in after.results["vois"]}
    assert volumes["liver"] == pytest.approx(np.count_nonzero(liver_mask & ~upper) * ct.voxel_volume_ml, rel=1e-9)
    reference = scene["reference"]
    kk, jj, ii = np.indices(reference.array.shape)
    distance = np.linalg.norm(reference.ras_of_ijk(np.stack([ii, jj, kk], axis=-1)) -
                              np.asarray(lesion.centre_ras_mm), axis=-1)
    old_mask = distance <= lesion.diameter_mm / 2
    new_mask = distance <= lesion.diameter_mm / 2 + margin_mm
    expected_ratio = (reference.array[new_mask].sum() / reference.array[old_mask].sum() *
                      np.count_nonzero(old_mask) / np.count_nonzero(new_mask))
    assert expected_ratio < 0.9
    assert doses_after[EDITED_LESION] / doses_before[EDITED_LESION] == pytest.approx(expected_ratio, rel=0.05)


def _phantom_lesion(scene):
    from MIBGDosimetryLib.phantoms import patient

    return next(s for s in patient.PatientConfig(seed=1).lesions if s.name == EDITED_LESION)


def mrml_mask_on(volume, grid):
    """A mask on its own grid carried onto ``grid`` (here the same CT grid, so only the extent changes)."""
    from MIBGDosimetryLib.registration.resample import resample_mask

    return resample_mask(volume.array, volume, grid, np.eye(4))


def test_an_edited_registration_transform_is_used_by_the_next_dose_run(scene):
    """A 10 mm shift added to a time point's transform moves that time point's SPECT on the reference
    grid by 10 mm the other way (its centre of counts), and only that time point's activities change."""
    from MIBGDosimetryLib.registration.mrml_nodes import matrix_from_transform_node
    from MIBGDosimetryLib.registration.mrml_nodes import _vtk_matrix

    before = scene["logic"].compute_dose(scene["parameters"], scene["options"])
    index = 2
    node = scene["logic"].transform_nodes(scene["parameters"])[index]
    matrix = matrix_from_transform_node(node)
    shift = np.array([10.0, 0.0, 0.0])
    edited = matrix.copy()
    edited[:3, 3] += shift
    node.SetMatrixTransformFromParent(_vtk_matrix(edited))
    after = scene["logic"].compute_dose(scene["parameters"], scene["options"])

    def centre(volume):
        k, j, i = np.indices(volume.array.shape)
        ras = volume.ras_of_ijk(np.stack([i, j, k], axis=-1))
        weights = np.clip(volume.array, 0, None)
        return (ras * weights[..., None]).sum(axis=(0, 1, 2)) / weights.sum()

    moved = centre(after.registered_spects[index]) - centre(before.registered_spects[index])
    expected = -np.linalg.inv(matrix[:3, :3]) @ shift
    assert np.allclose(moved, expected, atol=0.5), moved
    for other in range(len(before.registered_spects)):
        if other != index:
            assert np.array_equal(after.registered_spects[other].array, before.registered_spects[other].array)
    tac_before = {v["name"]: v["tac"]["activity_MBq"] for v in before.results["vois"]}
    tac_after = {v["name"]: v["tac"]["activity_MBq"] for v in after.results["vois"]}
    assert tac_after[EDITED_LESION][index] < 0.9 * tac_before[EDITED_LESION][index]
    assert tac_after[EDITED_LESION][:index] == tac_before[EDITED_LESION][:index]
    timepoint = after.results["timepoints"][index]["registration"]
    assert "corrected in the scene" in timepoint["kind"]
    # The corrected transform's own figures: its translation at the CT centre is the old one plus the
    # shift (vector sum), and the body outlines overlap less than after the registration.
    ct = before.study.timepoints[0].ct
    centre = ct.ras_of_ijk((np.array(ct.array.shape[::-1]) - 1) / 2.0)
    moved_centre = matrix[:3, :3] @ centre + matrix[:3, 3]
    assert timepoint["quality"]["translation_mm"] == pytest.approx(
        float(np.linalg.norm(moved_centre + shift - centre)), abs=0.1)
    original = before.results["timepoints"][index]["registration"]["quality"]
    assert timepoint["quality"]["body_dice"] < original["body_dice"]
    assert timepoint["quality"]["body_dice_before"] == pytest.approx(original["body_dice_before"], abs=1e-9)


def test_a_failure_while_storing_results_leaves_the_scene_as_it_was(scene, monkeypatch):
    """The results table cannot be added (simulated): the dose and TIA nodes already added are removed
    and the earlier results stay referenced."""
    from MIBGDosimetryLib.scene import logic as scene_logic

    before = _snapshot(scene)

    def refuse(*_args, **_kwargs):
        raise RuntimeError("no room for the table")

    monkeypatch.setattr(scene_logic.mrml, "add_table", refuse)
    with pytest.raises(RuntimeError, match="no room"):
        scene["logic"].compute_dose(scene["parameters"], scene["options"])
    monkeypatch.undo()
    assert _snapshot(scene) == before


def test_cancel_during_registration_keeps_the_transforms(scene):
    from MIBGDosimetryLib.scene.logic import DoseRunCancelled

    before = _snapshot(scene)
    seen = []

    def progress(message):
        seen.append(message)

    with pytest.raises(DoseRunCancelled):
        scene["logic"].register(scene["parameters"], progress=progress, cancel=lambda: len(seen) >= 2)
    assert len(seen) == 2
    assert _snapshot(scene) == before


def test_mibgdose_dose_command_takes_the_segmentation(phantom, tmp_path, capsys):
    import json

    from MIBGDosimetryLib.cli import main

    organs = {name: mask for name, (kind, mask) in phantom["structures"].items() if kind == "organ"}
    path = _write_seg_nrrd(tmp_path / "organs.seg.nrrd", organs,
                           phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8)))
    assert main(["dose", phantom["study"], "--calibration", phantom["calibration"], "--out", str(tmp_path / "out"),
                 "--segmentation", path, "--no-dicom", "--no-report"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["provenance"]["inputs"]["segmentation"] == os.path.abspath(path)
    assert {v["name"] for v in results["vois"]} == set(phantom["structures"])
    capsys.readouterr()
    missing = str(tmp_path / "missing.seg.nrrd")
    assert main(["dose", phantom["study"], "--calibration", phantom["calibration"], "--out", str(tmp_path / "out2"),
                 "--segmentation", missing]) == 2
    assert "missing.seg.nrrd' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("name, tag, seeds, kind", [
    ("liver", None, (), "organ"), ("Lesion 3", None, (), "lesion"), ("tumour left", None, (), "lesion"),
    ("node_a", None, ("node_a",), "lesion"), ("lesion-like organ", "organ", (), "organ"),
    ("kidney", " Lesion ", (), "lesion")])
def test_segment_kind_rule(name, tag, seeds, kind):
    from MIBGDosimetryLib.segmentation.segment_vois import voi_kind

    assert voi_kind(name, tag, seeds) == kind


def test_bad_segments_are_refused_with_the_segment_named(mrml_context):
    from MIBGDosimetryLib.segmentation.segment_vois import VOI_TYPE_TAG, vois_from_segmentation_node, voi_kind
    from MIBGDosimetryLib.segmentation.segments import add_mask_segment
    from MIBGDosimetryLib.volume import ImageVolume

    with pytest.raises(ValueError, match="'spleen' has MIBG.VOIType = 'tumor'"):
        voi_kind("spleen", "tumor")
    grid = ImageVolume(np.zeros((10, 10, 10)), (4.0, 4.0, 4.0))
    far = ImageVolume(np.zeros((4, 4, 4)), (2.0, 2.0, 2.0), (500.0, 0.0, 0.0))
    node = mrml_context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    with pytest.raises(ValueError, match="holds no segment"):
        vois_from_segmentation_node(mrml_context.scene, node, grid)
    inside = np.zeros((10, 10, 10), dtype=bool)
    inside[3:6, 3:6, 3:6] = True
    add_mask_segment(mrml_context.scene, node, inside, grid, "cube")
    node.GetSegmentation().GetSegment(node.GetSegmentation().GetNthSegmentID(0)).SetTag(VOI_TYPE_TAG, "lesion")
    (voi,) = vois_from_segmentation_node(mrml_context.scene, node, grid)
    assert (voi.kind, voi.details["volume_ml"]) == ("lesion", pytest.approx(27 * 0.064))
    assert np.array_equal(voi.mask, inside)
    add_mask_segment(mrml_context.scene, node, np.ones((4, 4, 4), dtype=bool), far, "outside")
    with pytest.raises(ValueError, match="segment 'outside' covers no voxel of the SPECT grid"):
        vois_from_segmentation_node(mrml_context.scene, node, grid)


def test_time_points_out_of_time_order_are_refused(scene):
    from MIBGDosimetryLib.scene import logic as scene_logic

    parameters = scene["parameters"]
    count = parameters.GetNumberOfNodeReferences(scene_logic.SPECT_ROLE)
    reversed_nodes = [scene_logic.TimePointNodes(*(parameters.GetNthNodeReference(role, n) for role in (
        scene_logic.SPECT_ROLE, scene_logic.CT_ROLE, scene_logic.METADATA_ROLE))) for n in range(count)][::-1]
    other = scene["logic"].new_parameter_node("reversed")
    try:
        scene["logic"].set_inputs(other, reversed_nodes, scene["segmentation"],
                                  parameters.GetNodeReference(scene_logic.CALIBRATION_ROLE))
        with pytest.raises(ValueError, match="must be given in time order"):
            scene["logic"].register(other)
    finally:
        scene["context"].scene.RemoveNode(other)


# The headless command and the scene workflow on the same demo study, VOIs and calibration.

#: Fields compared per VOI between the two paths: activity, dose, size and their uncertainties.
PARITY_FIELDS = ("volume_ml", "mass_g", "tia_MBq_h", "tia_uncertainty_MBq_h", "mean_dose_Gy", "dose_uncertainty_Gy",
                 "max_voxel_dose_Gy", "min_voxel_dose_Gy", "max_block27_dose_Gy", "min_block27_dose_Gy", "bed_Gy",
                 "eud_Gy", "coverage_fraction", "effective_half_life_h")


def test_headless_command_and_scene_workflow_give_the_same_numbers(phantom, study, tmp_path):
    """`mibgdose dose --segmentation FILE` (run_dose) against the scene as a user builds it: the study's
    volumes and metadata tables, the same .seg.nrrd loaded as a segmentation node, the calibration
    record node; registered and computed by SceneDoseLogic with the default options. Every VOI's
    numbers agree to round-off; the time points, warnings and VOI kinds are the same."""
    from MIBGCalibrationLib.record import CalibrationRecord
    from MIBGDosimetryLib.scene.logic import SceneDoseLogic, add_study
    from MIBGDosimetryLib.segmentation.segment_vois import VOI_TYPE_TAG, read_segmentation_file
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    fine = phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8))
    masks = {name: mask for name, (kind, mask) in phantom["structures"].items()}
    tags = {name: {VOI_TYPE_TAG: kind} for name, (kind, mask) in phantom["structures"].items()}
    path = _write_seg_nrrd(tmp_path / "drawn.seg.nrrd", masks, fine, tags=tags)
    headless = run_dose(phantom["study"], phantom["calibration"], log=_quiet, segmentation=path)

    context = mrml.new_scene()
    try:
        timepoints = add_study(context, study)
        record = CalibrationRecord.from_json(phantom["calibration"]).to_node(context.scene)
        segmentation = read_segmentation_file(context.scene, path)
        logic = SceneDoseLogic(context)
        parameters = logic.new_parameter_node()
        logic.set_inputs(parameters, timepoints, segmentation, record)
        logic.register(parameters)
        in_scene = logic.compute_dose(parameters)
    finally:
        context.scene.Clear(1)

    expected = {v["name"]: v for v in headless.results["vois"]}
    got = {v["name"]: v for v in in_scene.results["vois"]}
    assert set(got) == set(expected) == set(masks)
    assert {n: v["kind"] for n, v in got.items()} == {n: v["kind"] for n, v in expected.items()}
    differences = {}
    for name, entry in expected.items():
        for field in PARITY_FIELDS:
            a, b = entry.get(field), got[name].get(field)
            if a is None or b is None:
                if a is not b:
                    differences[(name, field)] = (a, b)
            elif b != pytest.approx(a, rel=1e-6, abs=1e-12):
                differences[(name, field)] = (a, b)
        if entry["tac"]["activity_MBq"] != pytest.approx(got[name]["tac"]["activity_MBq"], rel=1e-6):
            differences[(name, "tac")] = (entry["tac"]["activity_MBq"], got[name]["tac"]["activity_MBq"])
    assert not differences, differences
    assert in_scene.results["warnings"] == headless.results["warnings"]
    # The imaging-dose log comes from the CT headers the scene keeps as header facts.
    assert in_scene.results["imaging_dose"] == headless.results["imaging_dose"]
    assert len(headless.results["imaging_dose"]["entries"]) == len(study.timepoints)
    assert np.allclose(in_scene.dose_map.array, headless.dose_map.array, rtol=1e-6, atol=1e-9 * headless.dose_map.array.max())


# Review nodes (results table, time-activity and DVH charts, registration review, time-point table).

def _series_of(chart):
    return [chart.GetNthPlotSeriesNode(n) for n in range(chart.GetNumberOfPlotSeriesNodes())]


def test_results_table_node_holds_each_voi_with_numbers_from_the_dose_volume(scene):
    """Maximum and minimum voxel dose in the table equal those read directly from the dose volume node
    over the VOI masks; the other columns are those of results.json, warnings included."""
    from MIBGDosimetryLib.scene import logic as scene_logic
    from MIBGDosimetryLib.workflow.outputs import TABLE_FIELDS

    context, parameters = scene["context"], scene["parameters"]
    calculation = scene["logic"].compute_dose(parameters, scene["options"])
    columns = mrml.table_columns(parameters.GetNodeReference(scene_logic.RESULTS_TABLE_ROLE))
    assert set(TABLE_FIELDS) | {"warnings"} <= set(columns)
    dose = mrml.array_from_volume(context.scene, parameters.GetNodeReference(scene_logic.DOSE_ROLE))
    entries = {v["name"]: v for v in calculation.results["vois"]}
    assert list(columns["name"]) == [v["name"] for v in calculation.results["vois"]]
    for row, name in enumerate(columns["name"]):
        mask = next(v.mask for v in calculation.vois if v.name == name)
        # Table cells keep 6 significant digits (mrml.TABLE_SIGNIFICANT_DIGITS).
        assert float(columns["max_voxel_dose_Gy"][row]) == pytest.approx(float(dose[mask].max()), rel=1e-5)
        assert float(columns["min_voxel_dose_Gy"][row]) == pytest.approx(float(dose[mask].min()), rel=1e-5)
        for field in ("mean_dose_Gy", "dose_uncertainty_Gy", "max_block27_dose_Gy", "min_block27_dose_Gy", "bed_Gy",
                      "eud_Gy", "tia_MBq_h", "tia_uncertainty_MBq_h", "coverage_fraction"):
            if entries[name][field] is None:
                assert columns[field][row] == "", (name, field)
            else:
                assert float(columns[field][row]) == pytest.approx(entries[name][field], rel=1e-5), (name, field)
        assert columns["warnings"][row] == "; ".join(entries[name]["warnings"])
    assert any(entries[name]["warnings"] for name in entries)


def test_tac_chart_per_voi_shows_points_uncertainties_fitted_curve_and_coverage(scene):
    """Per VOI a chart with the measured points, one ±1 SD line per point, the fitted curve and the
    first-to-last-scan part of it; that part's area (trapezoid rule on the plotted samples) is the
    coverage fraction of the TIA, to the sampling error of 200 points."""
    from MIBGDosimetryLib.scene import logic as scene_logic

    parameters = scene["parameters"]
    calculation = scene["logic"].compute_dose(parameters, scene["options"])
    assert parameters.GetNumberOfNodeReferences(scene_logic.TAC_CHART_ROLE) == len(calculation.results["vois"])
    for entry in calculation.results["vois"]:
        chart = scene["logic"].tac_chart(parameters, entry["name"])
        assert chart is not None, entry["name"]
        assert f"{100 * entry['coverage_fraction']:.1f} %" in chart.GetTitle()
        series = _series_of(chart)
        times = entry["tac"]["times_h"]
        assert len(series) == 3 + len(times)
        area, curve, measured = series[:3]
        assert area.GetPlotType() == area.PlotTypeBar and measured.GetPlotType() == measured.PlotTypeScatter
        points = mrml.table_columns(measured.GetTableNode())
        assert np.allclose(np.asarray(points["time_h"], float), times)
        assert np.allclose(np.asarray(points["activity_MBq"], float), entry["tac"]["activity_MBq"], rtol=1e-5)
        for n, bar in enumerate(series[3:]):
            column = mrml.table_columns(bar.GetTableNode())
            low, high = (float(v) for v in column[bar.GetYColumnName()])
            sd = entry["tac"]["activity_uncertainty_MBq"][n]
            assert (low, high) == pytest.approx((entry["tac"]["activity_MBq"][n] - sd,
                                                  entry["tac"]["activity_MBq"][n] + sd), rel=1e-5)
        shaded = mrml.table_columns(area.GetTableNode())
        t, a = np.asarray(shaded["time_h"], float), np.asarray(shaded["activity_MBq"], float)
        assert times[0] <= t.min() and t.max() <= times[-1]
        if entry["tac_model"] != "trapezoid":
            body = float(np.sum((a[1:] + a[:-1]) / 2 * np.diff(t)))
            step = (2 * times[-1]) / 199
            assert body / entry["tia_MBq_h"] == pytest.approx(entry["coverage_fraction"],
                                                              abs=2 * step * a.max() / entry["tia_MBq_h"])


def test_dvh_chart_has_every_voi_and_matches_the_dose_volume(scene):
    from MIBGDosimetryLib.scene import logic as scene_logic

    context, parameters = scene["context"], scene["parameters"]
    calculation = scene["logic"].compute_dose(parameters, scene["options"])
    chart = parameters.GetNodeReference(scene_logic.DVH_CHART_ROLE)
    series = {s.GetName(): s for s in _series_of(chart)}
    assert set(series) == {v.name for v in calculation.vois}
    dose = mrml.array_from_volume(context.scene, parameters.GetNodeReference(scene_logic.DOSE_ROLE))
    for voi in calculation.vois:
        if voi.kind != "organ":
            continue
        columns = mrml.table_columns(series[voi.name].GetTableNode())
        levels, fraction = np.asarray(columns["dose_Gy"], float), np.asarray(columns["volume_fraction"], float)
        counted = np.array([np.count_nonzero(dose[voi.mask] >= level) for level in levels]) / np.count_nonzero(voi.mask)
        # Mass-weighted histogram against a voxel count: equal to within the density spread.
        assert np.abs(fraction - counted).max() < 0.03, voi.name


def test_registration_review_nodes_show_quality_and_the_registered_spect(scene):
    """After the registration (and again after each dose run, with the transforms then in use): a
    table of quality figures per time point and the registered SPECT as a sequence over time."""
    from MIBGDosimetryLib.registration.mrml_nodes import array_at_sequence_item
    from MIBGDosimetryLib.scene import logic as scene_logic

    context, parameters = scene["context"], scene["parameters"]
    calculation = scene["logic"].compute_dose(parameters, scene["options"])
    table = mrml.table_columns(parameters.GetNodeReference(scene_logic.REGISTRATION_TABLE_ROLE))
    labels = [tp.label for tp in calculation.study.timepoints]
    assert list(table["time_point"]) == labels
    # The reference time point has no figures; a transform edited in the scene (an earlier test) is flagged.
    figures = 0
    for n, registration in enumerate(calculation.registrations):
        assert table["kind"][n] == registration.kind
        assert float(table["corrected_in_scene"][n]) == (1.0 if "corrected" in registration.kind else 0.0)
        if "body_dice" in registration.quality:
            assert float(table["body_dice"][n]) == pytest.approx(registration.quality["body_dice"], rel=1e-5)
            assert float(table["body_dice"][n]) > 0.9
            figures += 1
    assert figures >= 2
    sequence = parameters.GetNodeReference(scene_logic.REGISTERED_SPECT_ROLE)
    assert sequence.GetNumberOfDataNodes() == len(labels)
    proxy = scene["logic"].registered_spect_proxy(parameters)
    assert proxy is not None and proxy.IsA("vtkMRMLScalarVolumeNode")
    assert scene["logic"].reference_ct(parameters) is parameters.GetNthNodeReference(scene_logic.CT_ROLE, 0)
    for n, volume in enumerate(calculation.registered_spects):
        assert np.array_equal(array_at_sequence_item(context, sequence, n), volume.array)
        assert float(sequence.GetNthIndexValue(n)) == pytest.approx(calculation.study.timepoints[n].mid_acquisition_hours,
                                                                    abs=0.01)


def test_a_rerun_keeps_one_set_of_review_nodes(scene):
    from MIBGDosimetryLib.scene import logic as scene_logic

    scene_nodes = scene["context"].scene
    scene["logic"].compute_dose(scene["parameters"], scene["options"])
    counts = {cls: scene_nodes.GetNumberOfNodesByClass(cls) for cls in (
        "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode", "vtkMRMLTableNode", "vtkMRMLSequenceNode",
        "vtkMRMLSequenceBrowserNode", "vtkMRMLScalarVolumeNode")}
    scene["logic"].register(scene["parameters"])
    scene["logic"].compute_dose(scene["parameters"], scene["options"])
    assert {cls: scene_nodes.GetNumberOfNodesByClass(cls) for cls in counts} == counts
    vois = scene["parameters"].GetNumberOfNodeReferences(scene_logic.TAC_CHART_ROLE)
    assert counts["vtkMRMLPlotChartNode"] == vois + 1


def test_timepoint_table_flags_nothing_on_the_demo_and_names_bad_values():
    from MIBGDosimetryLib.scene.review import timepoint_flags

    good = {"TimePoint": "tp1", "HoursAfterAdministration": "24.0", "AcquisitionDateTime": "2026-03-03T09:00:00",
            "DurationSeconds": "1200", "AdministrationDateTime": "2026-03-02T09:00:00",
            "AdministeredActivityMBq": "7400"}
    later = dict(good, TimePoint="tp2", HoursAfterAdministration="48.0", AcquisitionDateTime="2026-03-04T09:00:00")
    assert timepoint_flags([good, later]) == [[], []]
    missing = dict(later, DurationSeconds="")
    wrong = dict(later, HoursAfterAdministration="30", DurationSeconds="5")
    earlier = dict(good, HoursAfterAdministration="12", AcquisitionDateTime="2026-03-02T21:00:00")
    flags = timepoint_flags([good, missing, wrong, earlier])
    assert flags[0] == []
    assert flags[1] == ["DurationSeconds missing"]
    assert any("acquisition started 48.00 h after" in f for f in flags[2])
    assert any("DurationSeconds 5 s is outside" in f for f in flags[2])
    assert flags[3] == ["not after the previous time point"]
    other_activity = dict(later, AdministeredActivityMBq="abc")
    assert "AdministeredActivityMBq 'abc' is not a number" in timepoint_flags([good, other_activity])[1]


def test_timepoint_table_node_of_the_scene(scene):
    from MIBGDosimetryLib.scene import logic as scene_logic

    parameters = scene["parameters"]
    table = scene["logic"].update_timepoint_table(parameters)
    again = scene["logic"].update_timepoint_table(parameters)
    assert not scene["context"].scene.IsNodePresent(table)
    assert parameters.GetNodeReference(scene_logic.TIMEPOINT_TABLE_ROLE) is again
    columns = mrml.table_columns(again)
    assert list(columns["TimePoint"]) == [tp.label for tp in scene["first"].study.timepoints]
    assert list(columns["flags"]) == [""] * len(columns["TimePoint"])


def test_values_edited_in_the_timepoint_table_reach_the_metadata_tables(scene):
    from MIBGDosimetryLib.scene import logic as scene_logic

    parameters, logic = scene["parameters"], scene["logic"]
    table = logic.update_timepoint_table(parameters)
    metadata = parameters.GetNthNodeReference(scene_logic.METADATA_ROLE, 1)
    facts = metadata.GetAttribute(scene_logic.HEADER_FACTS_ATTRIBUTE)
    original = mrml.table_columns(metadata)
    column = table.GetTable().GetColumnByName("DurationSeconds")
    kept = column.GetValue(1)
    column.SetValue(1, "5")
    flags = logic.apply_timepoint_edits(parameters)
    try:
        edited = dict(zip(*mrml.table_columns(metadata).values()))
        assert edited["DurationSeconds"] == "5"
        assert metadata.GetAttribute(scene_logic.HEADER_FACTS_ATTRIBUTE) == facts
        assert any("DurationSeconds 5 s is outside" in f for f in flags[1])
        shown = mrml.table_columns(parameters.GetNodeReference(scene_logic.TIMEPOINT_TABLE_ROLE))
        assert "DurationSeconds 5 s is outside" in shown["flags"][1]
        assert logic._study(parameters).timepoints[1].duration_s == 5.0
    finally:
        column = parameters.GetNodeReference(scene_logic.TIMEPOINT_TABLE_ROLE).GetTable().GetColumnByName(
            "DurationSeconds")
        column.SetValue(1, kept)
        assert logic.apply_timepoint_edits(parameters)[1] == []
    assert mrml.table_columns(metadata) == original


def test_a_session_as_the_panel_runs_it_saves_and_recomputes_identically(phantom, tmp_path):
    """The calls the panel's buttons make, in order, on the module's singleton parameter node: Load study
    into scene, Apply time-point edits, Register, Compute dose (segmentation and calibration chosen in the
    selectors); the scene saved as .mrb, reopened and computed again gives identical numbers."""
    from MIBGCalibrationLib.record import CalibrationRecord
    from MIBGDosimetryLib.scene import logic as scene_logic
    from MIBGDosimetryLib.segmentation.segment_vois import VOI_TYPE_TAG, read_segmentation_file
    from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions

    fine = phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8))
    masks = {name: mask for name, (kind, mask) in phantom["structures"].items()}
    tags = {name: {VOI_TYPE_TAG: kind} for name, (kind, mask) in phantom["structures"].items()}
    path = _write_seg_nrrd(tmp_path / "drawn.seg.nrrd", masks, fine, tags=tags)
    context = mrml.new_scene()
    try:
        node = slicer_singleton_parameter_node(context.scene)
        logic = scene_logic.SceneDoseLogic(context)
        logic.adopt_parameter_node(node)
        calibration = CalibrationRecord.from_json(phantom["calibration"]).to_node(context.scene)
        timepoints = logic.load_study_folder(node, phantom["study"], calibration)
        assert node.GetParameter(scene_logic.STUDY_DIRECTORY_PARAMETER) == os.path.abspath(phantom["study"])
        assert mrml.table_columns(node.GetNodeReference(scene_logic.TIMEPOINT_TABLE_ROLE))["flags"] == \
            [""] * len(timepoints)
        assert logic.apply_timepoint_edits(node) == [[]] * len(timepoints)
        logic.register(node)
        logic.select_segmentation(node, read_segmentation_file(context.scene, path))
        logic.select_calibration(node, calibration)
        options = DoseOptions(partial_volume="none")
        first = logic.compute_dose(node, options)
        bundle = mrml.save_bundle(context, str(tmp_path / "session.mrb"))
    finally:
        context.scene.Clear(1)
    reopened = mrml.load_bundle(bundle)
    try:
        nodes = reopened.scene.GetNodesByClass("vtkMRMLScriptedModuleNode")
        (node,) = [nodes.GetItemAsObject(n) for n in range(nodes.GetNumberOfItems())
                   if nodes.GetItemAsObject(n).GetAttribute("ModuleName") == scene_logic.MODULE_NAME]
        again = scene_logic.SceneDoseLogic(reopened).compute_dose(node, options)
    finally:
        reopened.scene.Clear(1)
    expected = {v["name"]: v for v in first.results["vois"]}
    for entry in again.results["vois"]:
        for field in PARITY_FIELDS:
            if expected[entry["name"]][field] is None:
                assert entry[field] is None
            else:
                assert entry[field] == pytest.approx(expected[entry["name"]][field], rel=1e-6), (entry["name"], field)
    assert again.results["warnings"] == first.results["warnings"]


def slicer_singleton_parameter_node(scene):
    """The module's parameter node as Slicer's ScriptedLoadableModuleLogic makes it (a singleton)."""
    import slicer

    node = slicer.vtkMRMLScriptedModuleNode()
    node.SetSingletonTag("MIBGDosimetry")
    node.SetName("MIBGDosimetry")
    node.SetModuleName("MIBGDosimetry")
    return scene.AddNode(node)


def test_time_points_from_volumes_of_the_scene_give_the_same_doses(scene):
    """Use selected volumes: the SPECT and CT volume nodes of the scene, selected in any order, make
    time points in time order whose metadata tables hold the loaded study's values and header facts;
    registered and computed they give the doses of the time points as loaded."""
    from MIBGDosimetryLib.scene import logic as scene_logic

    parameters, logic = scene["parameters"], scene["logic"]
    count = parameters.GetNumberOfNodeReferences(scene_logic.SPECT_ROLE)
    spects = [parameters.GetNthNodeReference(scene_logic.SPECT_ROLE, n) for n in range(count)]
    cts = [parameters.GetNthNodeReference(scene_logic.CT_ROLE, n) for n in range(count)]
    tables = [parameters.GetNthNodeReference(scene_logic.METADATA_ROLE, n) for n in range(count)]
    order = [2, 0, 4, 1, 3][:count]
    timepoints = logic.timepoints_from_volumes([spects[n] for n in order], [cts[n] for n in order])
    assert [tp.spect for tp in timepoints] == spects and [tp.ct for tp in timepoints] == cts
    for made, loaded in zip(timepoints, tables):
        assert mrml.table_columns(made.metadata) == mrml.table_columns(loaded)
        assert made.metadata.GetAttribute(scene_logic.HEADER_FACTS_ATTRIBUTE) == \
            loaded.GetAttribute(scene_logic.HEADER_FACTS_ATTRIBUTE)
    other = logic.new_parameter_node("from volumes")
    try:
        logic.set_inputs(other, timepoints, scene["segmentation"],
                         parameters.GetNodeReference(scene_logic.CALIBRATION_ROLE))
        logic.register(other)
        logic.register(parameters)
        expected = logic.compute_dose(parameters, scene["options"])
        got = logic.compute_dose(other, scene["options"])
        # Two registrations of the same images differ by round-off (multi-threaded metric).
        assert _doses(got) == pytest.approx(_doses(expected), rel=1e-6)
    finally:
        roles = (scene_logic.RESULT_ROLES + scene_logic.DOSE_REVIEW_ROLES + scene_logic.REGISTRATION_REVIEW_ROLES +
                 (scene_logic.TRANSFORM_ROLE,))
        scene_logic._remove_all(scene["context"].scene, [other.GetNthNodeReference(role, n) for role in roles
                                                         for n in range(other.GetNumberOfNodeReferences(role))])
        scene_logic._remove_all(scene["context"].scene, [tp.metadata for tp in timepoints])
        scene["context"].scene.RemoveNode(other)
    with pytest.raises(ValueError, match="select one CT per SPECT"):
        logic.timepoints_from_volumes(spects, cts[:2])


# Volumes loaded by Slicer's DICOM module: see dicom_module_loading.

def _dicom_loaded_volumes(context, folder):
    """The demo study's SPECT and CT volumes as the DICOM module loads them, with their time-point folder."""
    files, series = dicom_database_of(folder)
    volumes = {}
    for headers in series.values():
        timepoint = os.path.basename(os.path.dirname(headers[0].filename))
        if headers[0].Modality == "CT":
            timepoint = os.path.basename(os.path.dirname(os.path.dirname(headers[0].filename)))
        modality = "SPECT" if headers[0].Modality == "NM" else "CT"
        volumes.setdefault(timepoint, {})[modality] = load_like_the_dicom_module(
            context, headers, f"{headers[0].SeriesDescription or modality} ({timepoint})")
    return files, [volumes[tp] for tp in sorted(volumes)]


def test_volumes_loaded_by_the_dicom_module_give_the_numbers_of_mibgdose_dose(phantom, study, tmp_path):
    """Use selected volumes on the SPECT and CT volumes of the DICOM module (selected out of time order):
    the metadata tables and header facts are those of the study folder's files, nothing is flagged, and
    the dose run gives the numbers, warnings and imaging-dose log of `mibgdose dose` on the same folder,
    with the dead time corrected."""
    from MIBGCalibrationLib.record import CalibrationRecord
    from MIBGDosimetryLib.scene import logic as scene_logic
    from MIBGDosimetryLib.segmentation.segment_vois import VOI_TYPE_TAG, read_segmentation_file
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    fine = phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8))
    masks = {name: mask for name, (kind, mask) in phantom["structures"].items()}
    tags = {name: {VOI_TYPE_TAG: kind} for name, (kind, mask) in phantom["structures"].items()}
    path = _write_seg_nrrd(tmp_path / "drawn.seg.nrrd", masks, fine, tags=tags)
    headless = run_dose(phantom["study"], phantom["calibration"], log=_quiet, segmentation=path)

    context = mrml.new_scene()
    try:
        database, volumes = _dicom_loaded_volumes(context, phantom["study"])
        assert len(volumes) == len(study.timepoints)
        logic = scene_logic.SceneDoseLogic(context)
        order = [2, 0, 4, 1, 3][:len(volumes)]
        timepoints = logic.timepoints_from_volumes([volumes[n]["SPECT"] for n in order],
                                                   [volumes[n]["CT"] for n in order], database.get)
        assert [tp.spect for tp in timepoints] == [v["SPECT"] for v in volumes]
        assert [tp.ct for tp in timepoints] == [v["CT"] for v in volumes]
        from_folder = scene_logic.add_study(mrml.new_scene(), study)
        for made, loaded in zip(timepoints, from_folder):
            assert mrml.table_columns(made.metadata) == mrml.table_columns(loaded.metadata)
            assert json_of(made.metadata) == json_of(loaded.metadata)
        assert json_of(timepoints[0].metadata)["number_of_detectors"] is not None
        record = CalibrationRecord.from_json(phantom["calibration"]).to_node(context.scene)
        parameters = logic.new_parameter_node()
        logic.set_inputs(parameters, timepoints, read_segmentation_file(context.scene, path), record)
        table = logic.update_timepoint_table(parameters)
        assert mrml.table_columns(table)["flags"] == [""] * len(timepoints)
        logic.register(parameters)
        in_scene = logic.compute_dose(parameters)
    finally:
        context.scene.Clear(1)

    expected = {v["name"]: v for v in headless.results["vois"]}
    got = {v["name"]: v for v in in_scene.results["vois"]}
    assert set(got) == set(expected) == set(masks)
    differences = {}
    for name, entry in expected.items():
        for field in PARITY_FIELDS:
            a, b = entry.get(field), got[name].get(field)
            if (a is None or b is None) and a is not b:
                differences[(name, field)] = (a, b)
            elif a is not None and b != pytest.approx(a, rel=1e-6, abs=1e-12):
                differences[(name, field)] = (a, b)
    assert not differences, differences
    assert not [w for w in in_scene.results["warnings"] if "not corrected" in w or "unknown" in w]
    assert in_scene.results["warnings"] == headless.results["warnings"]
    assert in_scene.results["imaging_dose"] == headless.results["imaging_dose"]
    assert len(in_scene.results["imaging_dose"]["entries"]) == len(study.timepoints)


def json_of(table):
    import json

    from MIBGDosimetryLib.scene.logic import HEADER_FACTS_ATTRIBUTE

    return json.loads(table.GetAttribute(HEADER_FACTS_ATTRIBUTE))


def test_a_volume_without_dicom_files_gets_its_missing_facts_flagged(phantom):
    """A SPECT volume that does not come from the DICOM module (no DICOM.instanceUIDs) beside two that do:
    the two get their facts from their files; the other's acquisition, administration and header facts
    are flagged in the time-point table, and the dose run refuses it naming what is missing."""
    from MIBGDosimetryLib.scene import logic as scene_logic

    context = mrml.new_scene()
    try:
        database, volumes = _dicom_loaded_volumes(context, phantom["study"])
        spects = [v["SPECT"] for v in volumes[:3]]
        spects[1].RemoveAttribute("DICOM.instanceUIDs")
        logic = scene_logic.SceneDoseLogic(context)
        timepoints = logic.timepoints_from_volumes(spects, None, database.get)
        assert [tp.spect for tp in timepoints] == spects
        parameters = logic.new_parameter_node()
        logic.set_inputs(parameters, timepoints, None, None)
        flags = mrml.table_columns(logic.update_timepoint_table(parameters))["flags"]
        assert flags[0] == "" and flags[2] == ""
        for missing in ("AcquisitionDateTime missing", "HoursAfterAdministration missing", "DurationSeconds missing",
                        "AdministrationDateTime missing", "AdministeredActivityMBq missing",
                        "DICOM header facts missing", "dead-time losses are not corrected"):
            assert missing in flags[1], missing
        with pytest.raises(ValueError, match="lacks AcquisitionDateTime, HoursAfterAdministration, DurationSeconds"):
            logic.register(parameters)
        spects[1].SetAttribute("DICOM.instanceUIDs", "1.2.3.4.5")
        with pytest.raises(ValueError, match="not in the DICOM database"):
            logic.timepoints_from_volumes(spects, None, database.get)
        values = mrml.array_from_volume(context.scene, spects[0], copy=False)
        values *= 2
        spects[0].GetImageData().Modified()
        with pytest.raises(ValueError, match="differ from those its DICOM files give in counts"):
            logic.timepoints_from_volumes(spects[:1], None, database.get)
        moved = dict(database, **{spects[0].GetAttribute("DICOM.instanceUIDs"): "/nonexistent/spect.dcm"})
        with pytest.raises(ValueError, match="'/nonexistent/spect.dcm' of the volume .* does not exist"):
            logic.timepoints_from_volumes(spects[:1], None, moved.get)
    finally:
        context.scene.Clear(1)


def test_dicom_volumes_without_administration_time_are_flagged_and_completed_in_the_timepoint_table(phantom, study,
                                                                                                    tmp_path):
    """SPECT files without RadiopharmaceuticalStartDateTime (three time points of the demo, copied and
    edited): the study loader refuses them, so Use selected volumes fills each metadata table with what
    the headers give (acquisition start, duration, count rate, activity, detectors) and the time-point
    table flags the administration date-time and the hours after it; entered there, they give the hours
    of the complete study."""
    import shutil

    import pydicom

    from MIBGDosimetryLib.scene import logic as scene_logic

    folder = tmp_path / "no-administration-time"
    for label in ("tp1", "tp2", "tp3"):
        shutil.copytree(os.path.join(phantom["study"], label), folder / label)
        path = folder / label / "spect.dcm"
        ds = pydicom.dcmread(path)
        item = ds.RadiopharmaceuticalInformationSequence[0]
        for keyword in ("RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStartTime"):
            if keyword in item:
                delattr(item, keyword)
        ds.save_as(path)
    context = mrml.new_scene()
    try:
        database, volumes = _dicom_loaded_volumes(context, str(folder))
        logic = scene_logic.SceneDoseLogic(context)
        timepoints = logic.timepoints_from_volumes([v["SPECT"] for v in volumes], [v["CT"] for v in volumes],
                                                   database.get)
        parameters = logic.new_parameter_node()
        logic.set_inputs(parameters, timepoints, None, None)
        table = logic.update_timepoint_table(parameters)
        columns = mrml.table_columns(table)
        for n, loaded in enumerate(study.timepoints[:3]):
            assert "AdministrationDateTime missing" in columns["flags"][n]
            assert "HoursAfterAdministration missing" in columns["flags"][n]
            assert "DICOM header facts" not in columns["flags"][n]
            assert columns["AcquisitionDateTime"][n] == loaded.acquisition_datetime.isoformat()
            assert float(columns["DurationSeconds"][n]) == loaded.duration_s
            assert float(columns["ObservedCountRateCps"][n]) == pytest.approx(loaded.observed_count_rate_cps, rel=1e-12)
            assert float(columns["AdministeredActivityMBq"][n]) == loaded.metadata["administered_activity_MBq"]
            assert json_of(timepoints[n].metadata)["number_of_detectors"] == loaded.metadata["number_of_detectors"]
        hours = table.GetTable().GetColumnByName("HoursAfterAdministration")
        administered = table.GetTable().GetColumnByName("AdministrationDateTime")
        for n, loaded in enumerate(study.timepoints[:3]):
            hours.SetValue(n, repr(loaded.hours_after_administration))
            administered.SetValue(n, study.administration_datetime.isoformat())
        assert logic.apply_timepoint_edits(parameters) == [[], [], []]
        completed = logic._study(parameters)
        assert [tp.hours_after_administration for tp in completed.timepoints] == \
            [tp.hours_after_administration for tp in study.timepoints[:3]]
        assert completed.administration_datetime == study.administration_datetime
    finally:
        context.scene.Clear(1)


def _study_in_bq_per_ml(phantom, folder):
    """The phantom study with its SPECTs rewritten as a quantitative vendor reconstruction stores them:
    Units BQML, activity concentration C / (Q t V) by EANM eq. 9 written out here (as the headless test
    test_dose_workflow.py::test_the_same_study_stored_in_bq_per_ml_gives_the_same_doses makes it)."""
    import shutil

    from bq_per_ml_study import rewrite_spects_in_bq_per_ml
    from MIBGCalibrationLib.record import CalibrationRecord

    shutil.copytree(phantom["study"], folder)
    q = CalibrationRecord.from_json(phantom["calibration"]).calibration_factor_cps_per_MBq
    converted = rewrite_spects_in_bq_per_ml(str(folder), q)
    assert converted >= 3
    return str(folder)


def test_a_study_stored_in_bq_per_ml_gives_the_doses_of_the_counts_study_in_the_scene(phantom, tmp_path):
    """The study in Bq/ml put into the scene by the study-folder loader and as the DICOM module loads it
    (files through the uid -> path lookup): each time point keeps the units its headers state, so the
    calibration is applied once, not again. Every VOI's dose is that of the counts study within 1 % and
    that of `mibgdose dose` on the same Bq/ml folder to round-off."""
    from MIBGCalibrationLib.record import CalibrationRecord
    from MIBGDosimetryLib.scene import logic as scene_logic
    from MIBGDosimetryLib.segmentation.segment_vois import VOI_TYPE_TAG, read_segmentation_file
    from MIBGDosimetryLib.study import load_study
    from MIBGDosimetryLib.workflow.dose_workflow import run_dose

    fine = phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8))
    masks = {name: mask for name, (kind, mask) in phantom["structures"].items()}
    tags = {name: {VOI_TYPE_TAG: kind} for name, (kind, mask) in phantom["structures"].items()}
    seg = _write_seg_nrrd(tmp_path / "drawn.seg.nrrd", masks, fine, tags=tags)
    folder = _study_in_bq_per_ml(phantom, tmp_path / "bqml-study")
    counts = _doses(run_dose(phantom["study"], phantom["calibration"], log=_quiet, segmentation=seg))
    headless = run_dose(folder, phantom["calibration"], log=_quiet, segmentation=seg)
    assert all(tp["units_path"]["units"] == "Bq/ml" for tp in headless.results["timepoints"])

    def scene_run(make_timepoints):
        context = mrml.new_scene()
        try:
            logic = scene_logic.SceneDoseLogic(context)
            timepoints = make_timepoints(context, logic)
            record = CalibrationRecord.from_json(phantom["calibration"]).to_node(context.scene)
            parameters = logic.new_parameter_node()
            logic.set_inputs(parameters, timepoints, read_segmentation_file(context.scene, seg), record)
            logic.register(parameters)
            return logic.compute_dose(parameters)
        finally:
            context.scene.Clear(1)

    def from_dicom_module(context, logic):
        database, volumes = _dicom_loaded_volumes(context, folder)
        return logic.timepoints_from_volumes([v["SPECT"] for v in volumes], [v["CT"] for v in volumes], database.get)

    runs = {"study folder": scene_run(lambda context, logic: scene_logic.add_study(context, load_study(folder))),
            "DICOM module": scene_run(from_dicom_module)}
    for how, calculation in runs.items():
        assert all(tp["units_path"]["units"] == "Bq/ml" and tp["units_path"]["calibration_applied"] is False
                   for tp in calculation.results["timepoints"]), how
        found = _doses(calculation)
        assert set(found) == set(counts) == set(masks), how
        for name, dose in counts.items():
            assert found[name] == pytest.approx(dose, rel=0.01), (how, name)
            assert found[name] == pytest.approx(_doses(headless)[name], rel=1e-6), (how, name)
