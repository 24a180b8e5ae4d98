"""The dose calculation on VOIs drawn in Slicer: ``mibgdose dose --segmentation`` with a ``.seg.nrrd``,
and the scene logic (registration, then dose from whatever the segmentation node and the transform
nodes hold) on real MRML nodes.

The phantom study and its calibration are generated once for the module; the truth masks come from
the phantom's anatomy rasterised on the CT grid, not from the study's files.
"""

import os

import numpy as np
import pytest
import scipy.ndimage

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
    mask = np.linalg.norm(ras - np.asarray(phantom["lesion"].centre_ras_mm), axis=-1) <= phantom["lesion"].diameter_mm / 2
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
    path = _write_seg_nrrd(tmp_path / "organs.seg.nrrd", organs, phantom["grid"].fine_volume(np.zeros(phantom["grid"].fine_shape, dtype=np.uint8)))
    drawn = run_dose(phantom["study"], phantom["calibration"], log=_quiet, segmentation=path)
    expected, got = _doses(folder_run), _doses(drawn)
    assert set(got) == set(expected)
    errors = {name: got[name] / expected[name] - 1 for name in expected}
    assert all(abs(e) <= 0.01 for e in errors.values()), errors
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
