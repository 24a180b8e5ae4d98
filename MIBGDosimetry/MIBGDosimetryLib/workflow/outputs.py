"""Outputs of a dose calculation: results.json, result tables, the Slicer scene, RT Dose, SEG and report.

Everything is written into a staging folder beside the output folder, checked, and published as one
unit by renaming the whole folder (:mod:`MIBGDosimetryLib.workflow.publish`): an interrupted or failed
run leaves the output folder with the complete earlier results or the complete new ones, never a mix;
earlier results are kept beside it as ``<out>.previous-<UTC time>``.
"""

import json
import os
import shutil

import numpy as np

from MIBGDosimetryLib import mrml

#: Fields of each VOI in the results table (and, in this order, first in results.json).
TABLE_FIELDS = ["name", "kind", "volume_ml", "mass_g", "tia_MBq_h", "tia_uncertainty_MBq_h", "mean_dose_Gy",
                "dose_uncertainty_Gy", "max_voxel_dose_Gy", "min_voxel_dose_Gy", "max_block27_dose_Gy",
                "min_block27_dose_Gy", "bed_Gy", "eud_Gy", "sphere_s_dose_Gy", "local_deposition_dose_Gy",
                "tac_model", "coverage_fraction", "effective_half_life_h"]


def write_outputs(calculation, out_dir, log=print, dicom=True, report=True, scene=True):
    """Write every output of ``calculation`` (:class:`DoseCalculation`) as the folder ``out_dir``; return
    their paths. Raises ValueError (nothing published) when the folder cannot be written."""
    from MIBGDosimetryLib.workflow import publish

    out_dir = os.path.abspath(out_dir)
    publish.check_target(out_dir)
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    with publish.output_lock(out_dir):
        publish.remove_stale_staging(out_dir, log)
        publish.recover_interrupted_publish(out_dir, log)
        staging = publish.new_staging(out_dir)
        try:
            written = _write_all(calculation, staging, log, dicom, report, scene)
            publish.kill_point("staging-written")
            _check_written(written)
            publish.write_marker(staging, [os.path.basename(p) for p in written.values()])
            publish.publish(staging, out_dir, log)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return {key: os.path.join(out_dir, os.path.basename(path)) for key, path in written.items()}


def _write_all(calculation, staging, log, dicom, report, scene):
    written = {}
    written["results"] = _write_json(calculation.results, os.path.join(staging, "results.json"))
    written["table"] = _write_table(calculation.results, os.path.join(staging, "results.tsv"))
    if scene:
        log("Writing the Slicer scene")
        written["scene"] = save_scene(calculation, os.path.join(staging, "dosimetry.mrb"))
    if dicom:
        log("Writing DICOM RT Dose and SEG")
        written.update(_write_dicom(calculation, staging))
    if report:
        log("Writing the report")
        written.update(_write_report(calculation, staging))
    return written


def _check_written(written):
    """Every output present and not empty, results.json readable, before anything is published."""
    for key, path in written.items():
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise ValueError(f"The output {os.path.basename(path)} ({key}) was not written completely; nothing "
                               "was published. Check the free space of the output disk.")
    with open(written["results"]) as stream:
        json.load(stream)


def clean_results(results):
    """JSON-ready copy of a results dict (numpy numbers to Python, NaN to None)."""
    return json.loads(json.dumps(results, default=_json_default), parse_constant=lambda _: None)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _write_json(results, path):
    with open(path, "w") as f:
        json.dump(clean_results(results), f, indent=2, allow_nan=False)
    return path


def _write_table(results, path):
    with open(path, "w") as f:
        f.write("\t".join(TABLE_FIELDS) + "\n")
        for voi in results["vois"]:
            f.write("\t".join("" if voi.get(k) is None else str(voi.get(k)) for k in TABLE_FIELDS) + "\n")
    return path


def build_scene(calculation, context=None):
    """Put the calculation into an MRML scene: CT, SPECT sequence, TIA and dose maps, VOIs, transforms,
    tables and plots. Returns the :class:`mrml.SceneContext`."""
    from MIBGDosimetryLib.export.rtdose import add_dose_node
    from MIBGDosimetryLib.registration.mrml_nodes import add_transform_node, add_volume_sequence
    from MIBGDosimetryLib.segmentation.segments import add_mask_segment

    context = context or mrml.new_scene()
    scene = context.scene
    study = calculation.study
    reference_index = calculation.results["provenance"]["options"]["reference_index"]
    reference_tp = study.timepoints[reference_index]
    if reference_tp.ct is not None:
        reference_tp.ct.to_node(scene, f"CT {reference_tp.label}")
    hours = [tp.mid_acquisition_hours for tp in study.timepoints]
    add_volume_sequence(context, calculation.registered_spects, "SPECT registered (counts)", [round(h, 2) for h in hours])
    for tp, registration in zip(study.timepoints, calculation.registrations):
        add_transform_node(scene, registration, f"Registration {tp.label} to {reference_tp.label}")
    calculation.tia_map.to_node(scene, "Time-integrated activity (MBq h)")
    add_dose_node(context, calculation.dose_map, "Absorbed dose (Gy)")
    if calculation.voxel_dose_map is not None:
        add_dose_node(context, calculation.voxel_dose_map, "Absorbed dose without partial-volume correction (Gy)")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "VOIs")
    segmentation.CreateDefaultDisplayNodes()
    palette = _palette(len(calculation.vois))
    for voi, colour in zip(calculation.vois, palette):
        add_mask_segment(scene, segmentation, voi.mask, calculation.reference, voi.name, colour)
    results = calculation.results
    columns = {field: [_cell(v.get(field)) for v in results["vois"]] for field in TABLE_FIELDS}
    mrml.add_table(scene, "Dose results", columns)
    _tac_table_and_plot(context, results)
    _dvh_table_and_plot(context, results)
    return context


def save_scene(calculation, path):
    context = build_scene(calculation)
    try:
        return mrml.save_bundle(context, path)
    finally:
        context.scene.Clear(1)


def _cell(value):
    return "" if value is None else value


def _palette(n):
    import colorsys

    return [colorsys.hsv_to_rgb(i / max(n, 1), 0.75, 0.95) for i in range(n)]


def _tac_table_and_plot(context, results):
    scene = context.scene
    rows = [(voi["name"], t, a, s) for voi in results["vois"]
            for t, a, s in zip(voi["tac"]["times_h"], voi["tac"]["activity_MBq"], voi["tac"]["activity_uncertainty_MBq"])]
    mrml.add_table(scene, "TAC data", {"voi": [r[0] for r in rows], "time_h": [r[1] for r in rows],
                                       "activity_MBq": [r[2] for r in rows], "activity_uncertainty_MBq": [r[3] for r in rows]})
    parameters = [(voi["name"], voi["tac_model"], k, v) for voi in results["vois"]
                  for k, v in voi["tac"]["parameters"].items()]
    mrml.add_table(scene, "TAC fit parameters", {"voi": [p[0] for p in parameters], "model": [p[1] for p in parameters],
                                                 "parameter": [p[2] for p in parameters],
                                                 "value": [p[3] for p in parameters]})
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "Time-activity curves")
    chart.SetXAxisTitle("time after administration (h)")
    chart.SetYAxisTitle("activity (MBq)")
    for voi in results["vois"]:
        table = mrml.add_table(scene, f"TAC {voi['name']}", {"time_h": voi["tac"]["times_h"],
                                                             "activity_MBq": voi["tac"]["activity_MBq"]})
        chart.AddAndObservePlotSeriesNodeID(_series(scene, table, voi["name"], "time_h", "activity_MBq").GetID())


def _dvh_table_and_plot(context, results):
    scene = context.scene
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "Dose-volume histograms")
    chart.SetXAxisTitle("absorbed dose (Gy)")
    chart.SetYAxisTitle("volume fraction")
    for voi in results["vois"]:
        table = mrml.add_table(scene, f"DVH {voi['name']}", {"dose_Gy": voi["dvh"]["dose_Gy"],
                                                             "volume_fraction": voi["dvh"]["volume_fraction"]})
        series = _series(scene, table, voi["name"], "dose_Gy", "volume_fraction")
        series.SetMarkerStyle(series.MarkerStyleNone)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())


def _series(scene, table, name, x, y):
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName(x)
    series.SetYColumnName(y)
    series.SetPlotType(series.PlotTypeScatter)
    return series


def _write_dicom(calculation, folder):
    import pydicom

    from MIBGDosimetryLib.export.rtplan import write_rt_dose_with_plan
    from MIBGDosimetryLib.export.seg import write_seg
    from MIBGDosimetryLib.registration.resample import resample_mask

    reference_index = calculation.results["provenance"]["options"]["reference_index"]
    reference_tp = calculation.study.timepoints[reference_index]
    ct = reference_tp.ct
    written = {}
    ct_datasets = [pydicom.dcmread(path) for path in calculation.study.ct_paths(reference_tp)]
    written.update(write_rt_dose_with_plan(calculation.dose_map, folder,
                                           reference_ct=ct_datasets[0] if ct_datasets else None,
                                           patient=calculation.study.patient or {},
                                           administered_activity_MBq=calculation.study.administered_activity_MBq))
    if ct_datasets:
        masks = {voi.name: resample_mask(voi.mask, calculation.reference, ct, np.eye(4)) for voi in calculation.vois}
        masks = {name: m for name, m in masks.items() if m.any()}
        kinds = {voi.name: voi.kind for voi in calculation.vois}
        written["seg"] = write_seg(masks, ct, ct_datasets, os.path.join(folder, "vois-seg.dcm"), kinds=kinds)
    return written


def _write_report(calculation, folder):
    from MIBGDosimetryLib.report.document import render_report

    reference_index = calculation.results["provenance"]["options"]["reference_index"]
    volumes = {"dose": calculation.dose_map, "masks": {v.name: v.mask for v in calculation.vois}}
    ct = calculation.study.timepoints[reference_index].ct
    if ct is not None:
        volumes["ct"] = ct
    paths = render_report(clean_results(calculation.results), folder, volumes=volumes)
    return {"report_pdf": paths["pdf"], "report_html": paths["html"]}
