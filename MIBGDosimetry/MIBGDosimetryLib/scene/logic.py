"""Registration and dose calculation on the nodes of an MRML scene.

The parameter node (a ``vtkMRMLScriptedModuleNode``) references every input and result:

- per time point (in time order, ``n``-th reference): the SPECT volume, the CT volume (all time
  points or none) and a metadata table (columns ``field`` and ``value``: TimePoint,
  HoursAfterAdministration, AcquisitionDateTime, DurationSeconds, ObservedCountRateCps,
  AdministrationDateTime, AdministeredActivityMBq; other header facts in an attribute);
- the segmentation on the reference time point (segments become VOIs by the rule of
  :mod:`MIBGDosimetryLib.segmentation.segment_vois`) and the calibration record text node;
- after :meth:`SceneDoseLogic.register`: one linear transform node per time point (reference ->
  time point, the convention of :mod:`MIBGDosimetryLib.registration.mrml_nodes`), which the user
  may correct;
- after :meth:`SceneDoseLogic.compute_dose`: the dose and TIA volumes, the results table and the
  full results (JSON text node).

:meth:`~SceneDoseLogic.compute_dose` takes whatever the segmentation and the transform nodes hold
and never registers again. A step reports through ``progress`` and checks ``cancel`` before it
starts; results are computed into new nodes and swapped in only at the end, so a cancelled or failed
run leaves the scene's earlier results untouched.
"""

import dataclasses
import datetime
import json
import os

import numpy as np

from MIBGDosimetryLib import mrml

MODULE_NAME = "MIBGDosimetry"
SPECT_ROLE = "TimePointSPECT"
CT_ROLE = "TimePointCT"
METADATA_ROLE = "TimePointMetadata"
TRANSFORM_ROLE = "RegistrationTransform"
SEGMENTATION_ROLE = "Segmentation"
CALIBRATION_ROLE = "CalibrationRecord"
DOSE_ROLE = "DoseVolume"
TIA_ROLE = "TIAVolume"
RESULTS_TABLE_ROLE = "DoseResultsTable"
RESULTS_TEXT_ROLE = "DoseResults"
REFERENCE_INDEX_PARAMETER = "ReferenceIndex"
#: Folder the time points were read from (for the de-identified export of the study).
STUDY_DIRECTORY_PARAMETER = "StudyDirectory"
RESULT_ROLES = (DOSE_ROLE, TIA_ROLE, RESULTS_TABLE_ROLE, RESULTS_TEXT_ROLE)
#: Review nodes of a dose run: one TAC chart per VOI (in the order of the results table), the DVH
#: chart, and the tables and plot series they show.
TAC_CHART_ROLE = "TACChart"
DVH_CHART_ROLE = "DVHChart"
DOSE_REVIEW_NODE_ROLE = "DoseReviewNode"
#: Review nodes of the registration: per-time-point quality table, the registered SPECT volumes as a
#: sequence (indexed by hours after administration) with its browser and proxy volume.
REGISTRATION_TABLE_ROLE = "RegistrationReviewTable"
REGISTERED_SPECT_ROLE = "RegisteredSPECTSequence"
REGISTRATION_REVIEW_NODE_ROLE = "RegistrationReviewNode"
#: The time-point table with flags for missing and implausible values.
TIMEPOINT_TABLE_ROLE = "TimePointTable"
DOSE_REVIEW_ROLES = (TAC_CHART_ROLE, DVH_CHART_ROLE, DOSE_REVIEW_NODE_ROLE)
REGISTRATION_REVIEW_ROLES = (REGISTRATION_TABLE_ROLE, REGISTERED_SPECT_ROLE, REGISTRATION_REVIEW_NODE_ROLE)
METADATA_FIELDS = ("TimePoint", "HoursAfterAdministration", "AcquisitionDateTime", "DurationSeconds",
                   "ObservedCountRateCps", "AdministrationDateTime", "AdministeredActivityMBq")
#: Attribute of the metadata table with the other header facts of the time point as JSON (units and
#: decay correction, number of detectors, energy windows, camera, collimator, half-life, CT dose
#: indices, patient age): the calculation uses them as it does when it reads the study's files. An
#: attribute, not a table row, because table cells are saved as TSV, which does not keep JSON intact.
HEADER_FACTS_ATTRIBUTE = "MIBGDosimetry.HeaderFacts"
#: Time point facts kept in their own rows, not in the header facts.
_OWN_ROWS = ("administration_datetime", "administered_activity_MBq")


class DoseRunCancelled(Exception):
    """The user cancelled a run; the scene is as it was before the run."""


@dataclasses.dataclass
class TimePointNodes:
    """The nodes of one time point: SPECT (counts, counts/s or Bq/ml as its header facts state), CT (HU, or
    None) and the metadata table."""

    spect: object
    ct: object
    metadata: object


class _Steps:
    """Progress messages, with the cancel flag checked before each step."""

    def __init__(self, progress, cancel):
        self.progress = progress
        self.cancel = getattr(cancel, "is_set", cancel)

    def check(self):
        if self.cancel is not None and self.cancel():
            raise DoseRunCancelled("The run was cancelled; the scene keeps its earlier results.")

    def __call__(self, message):
        self.check()
        if self.progress is not None:
            self.progress(message)


def metadata_table(scene, study, timepoint, name=None):
    """A metadata table node for a loaded study's time point (the facts the dose calculation needs,
    the header facts read from the study's files included)."""
    from MIBGDosimetryLib.study.mrml_loader import ATTRIBUTE_PREFIX, timepoint_attributes

    attributes = timepoint_attributes(study, timepoint)
    values = [attributes[ATTRIBUTE_PREFIX + field] for field in METADATA_FIELDS]
    table = mrml.add_table(scene, name or f"{timepoint.label} acquisition", {"field": list(METADATA_FIELDS),
                                                                              "value": values})
    table.SetAttribute(HEADER_FACTS_ATTRIBUTE, header_facts(study, timepoint))
    return table


def header_facts(study, timepoint):
    """The time point's header facts as JSON text, with the CT facts of the imaging-dose log."""
    from MIBGDosimetryLib.workflow.dose_workflow import imaging_facts

    facts = {key: value for key, value in (timepoint.metadata or {}).items() if key not in _OWN_ROWS}
    facts["imaging"] = imaging_facts(study, timepoint)
    facts["ct_files"] = study.ct_paths(timepoint)
    return json.dumps(facts, sort_keys=True)


def add_study(context, study):
    """Put a loaded study into the scene as a user would find it (volumes, sequences, subject hierarchy)
    with one metadata table per time point; returns the :class:`TimePointNodes` list."""
    from MIBGDosimetryLib.study.mrml_loader import load_study_into_scene

    nodes = load_study_into_scene(study, context)
    timepoints = []
    for tp, spect, ct in zip(study.timepoints, nodes.spect_nodes, nodes.ct_nodes):
        table = metadata_table(context.scene, study, tp)
        # Kept on the volume too, so that a table made later from the volume (Use selected volumes) has them.
        spect.SetAttribute(HEADER_FACTS_ATTRIBUTE, table.GetAttribute(HEADER_FACTS_ATTRIBUTE))
        timepoints.append(TimePointNodes(spect, ct, table))
    return timepoints


class SceneDoseLogic:
    """Registration and dose calculation on the nodes referenced by a parameter node."""

    def __init__(self, context):
        self.context = context
        self.scene = context.scene

    # Parameter node and inputs
    def new_parameter_node(self, name="MIBG Dosimetry"):
        node = self.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", name)
        node.SetAttribute("ModuleName", MODULE_NAME)
        return node

    def adopt_parameter_node(self, node):
        """Mark an existing scripted module node (e.g. the module's singleton parameter node) as this
        logic's parameter node, so that a reopened scene finds it; returns it."""
        node.SetAttribute("ModuleName", MODULE_NAME)
        return node

    def select_segmentation(self, parameter_node, segmentation_node):
        """Reference the segmentation whose segments are the VOIs (None to clear)."""
        parameter_node.SetNodeReferenceID(SEGMENTATION_ROLE, segmentation_node.GetID() if segmentation_node else None)

    def select_calibration(self, parameter_node, calibration_node):
        """Reference the calibration record node (None to clear)."""
        parameter_node.SetNodeReferenceID(CALIBRATION_ROLE, calibration_node.GetID() if calibration_node else None)

    def reference_ct(self, parameter_node):
        """The CT volume node of the reference time point (None without CT)."""
        return parameter_node.GetNthNodeReference(CT_ROLE, self.reference_index(parameter_node))

    def registered_spect_proxy(self, parameter_node):
        """The volume node that shows the registered SPECT of the browser's current time point (None
        before the registration)."""
        sequence = parameter_node.GetNodeReference(REGISTERED_SPECT_ROLE)
        for n in range(parameter_node.GetNumberOfNodeReferences(REGISTRATION_REVIEW_NODE_ROLE)):
            node = parameter_node.GetNthNodeReference(REGISTRATION_REVIEW_NODE_ROLE, n)
            if sequence is not None and node is not None and node.IsA("vtkMRMLSequenceBrowserNode"):
                return node.GetProxyNode(sequence)
        return None

    def set_inputs(self, parameter_node, timepoints, segmentation_node, calibration_node, reference_index=0):
        """Reference the inputs from ``parameter_node``; ``timepoints`` is a list of :class:`TimePointNodes`."""
        if len(timepoints) < 3:
            raise ValueError(f"{len(timepoints)} time point(s) given; a time-activity curve needs at least 3.")
        with_ct = [tp.ct is not None for tp in timepoints]
        if any(with_ct) and not all(with_ct):
            raise ValueError("Give a CT for every time point or for none (registration is CT to CT or SPECT to "
                             "SPECT for all time points).")
        if not 0 <= reference_index < len(timepoints):
            raise ValueError(f"The reference time point index {reference_index} is outside 0..{len(timepoints) - 1}.")
        for role in (SPECT_ROLE, CT_ROLE, METADATA_ROLE, TRANSFORM_ROLE):
            parameter_node.RemoveNodeReferenceIDs(role)
        for n, tp in enumerate(timepoints):
            if tp.spect is None or tp.metadata is None:
                raise ValueError(f"Time point {n + 1} needs a SPECT volume and a metadata table.")
            parameter_node.SetNthNodeReferenceID(SPECT_ROLE, n, tp.spect.GetID())
            parameter_node.SetNthNodeReferenceID(METADATA_ROLE, n, tp.metadata.GetID())
            if tp.ct is not None:
                parameter_node.SetNthNodeReferenceID(CT_ROLE, n, tp.ct.GetID())
        parameter_node.SetNodeReferenceID(SEGMENTATION_ROLE, segmentation_node.GetID() if segmentation_node else None)
        parameter_node.SetNodeReferenceID(CALIBRATION_ROLE, calibration_node.GetID() if calibration_node else None)
        parameter_node.SetParameter(REFERENCE_INDEX_PARAMETER, str(int(reference_index)))

    def reference_index(self, parameter_node):
        return int(parameter_node.GetParameter(REFERENCE_INDEX_PARAMETER) or 0)

    def transform_nodes(self, parameter_node):
        return [parameter_node.GetNthNodeReference(TRANSFORM_ROLE, n)
                for n in range(parameter_node.GetNumberOfNodeReferences(TRANSFORM_ROLE))]

    # Steps
    def register(self, parameter_node, progress=None, cancel=None):
        """Register every time point to the reference one (rigid, CT to CT when CTs are given) and
        reference one transform node per time point, replacing those of an earlier registration."""
        from MIBGDosimetryLib.registration.mrml_nodes import add_transform_node
        from MIBGDosimetryLib.registration.timepoints import register_timepoints

        steps = _Steps(progress, cancel)
        study = self._study(parameter_node)
        reference_index = self.reference_index(parameter_node)
        steps(f"Registering {len(study.timepoints)} time points to '{study.timepoints[reference_index].label}'")
        results, registered = register_timepoints(study.timepoints, reference_index, log=steps)
        steps.check()
        created = []
        try:
            nodes = [_kept(created, add_transform_node(self.scene, result, f"{tp.label} to reference"))
                     for tp, result in zip(study.timepoints, results)]
            new = {TRANSFORM_ROLE: nodes, **self._registration_review(study, results, registered, created)}
        except Exception:
            _remove_all(self.scene, created)
            raise
        _swap(self.scene, parameter_node, new)
        return nodes

    def timepoints_from_volumes(self, spect_nodes, ct_nodes=None, file_for_instance=None):
        """Time points from SPECT volume nodes of the scene (with their CT volume nodes, in the same order,
        or none), with one new metadata table per SPECT. Returned in time order when every time point's
        hours after administration are known, else in the order given.

        Volumes loaded by Slicer's DICOM module (attribute ``DICOM.instanceUIDs``) have their files found
        with ``file_for_instance`` (SOPInstanceUID -> path, '' when unknown; in Slicer
        ``slicer.dicomDatabase.fileForInstance``); those files are read by the study loader's rules, so
        the metadata tables and header facts are those a study folder of the same files gives (each SPECT
        paired with the CT selected with it). Other volumes take their facts from their
        ``MIBGDosimetry.*`` attributes (as a study loaded by this module sets them); what they lack is
        left empty and flagged in the time-point table for the user to fill in."""
        from MIBGDosimetryLib.study.mrml_loader import ATTRIBUTE_PREFIX

        ct_nodes = list(ct_nodes or [None] * len(spect_nodes))
        if len(ct_nodes) != len(spect_nodes):
            raise ValueError(f"{len(spect_nodes)} SPECT and {len(ct_nodes)} CT volumes are selected; select one CT "
                             "per SPECT, or no CT.")
        study, read, partial = self._study_of_dicom_volumes(spect_nodes, ct_nodes, file_for_instance)
        timepoints = []
        for spect, ct in zip(spect_nodes, ct_nodes):
            if spect.GetID() in read:
                table = metadata_table(self.scene, study, read[spect.GetID()])
                timepoints.append(TimePointNodes(spect, ct, table))
                continue
            if spect.GetID() in partial:
                timepoints.append(TimePointNodes(spect, ct, self._partial_metadata_table(spect, partial[spect.GetID()])))
                continue
            values = [spect.GetAttribute(ATTRIBUTE_PREFIX + field) or "" for field in METADATA_FIELDS]
            values[0] = values[0] or spect.GetName()
            table = mrml.add_table(self.scene, f"{values[0]} acquisition", {"field": list(METADATA_FIELDS),
                                                                              "value": values})
            if spect.GetAttribute(HEADER_FACTS_ATTRIBUTE):
                table.SetAttribute(HEADER_FACTS_ATTRIBUTE, spect.GetAttribute(HEADER_FACTS_ATTRIBUTE))
            timepoints.append(TimePointNodes(spect, ct, table))
        hours = [_facts_or_empty(tp.metadata).get("HoursAfterAdministration", "") for tp in timepoints]
        try:
            order = sorted(range(len(timepoints)), key=lambda n: float(hours[n]))
        except ValueError:
            order = range(len(timepoints))
        return [timepoints[n] for n in order]

    def _study_of_dicom_volumes(self, spect_nodes, ct_nodes, file_for_instance):
        """The study read from the DICOM files of the SPECT volumes loaded by Slicer's DICOM module and of
        their CT volumes, with ``{SPECT node ID: its TimePoint}``; ``(None, {})`` when no SPECT has files."""
        from MIBGDosimetryLib.study.loader import load_study_files
        from MIBGDosimetryLib.study.scan import read_header

        if file_for_instance is None:
            return None, {}, {}
        files, series_of, overrides, files_of = [], {}, {}, {}
        for spect, ct in zip(spect_nodes, ct_nodes):
            spect_files = dicom_files(spect, file_for_instance)
            if not spect_files:
                continue
            series_of[spect.GetID()] = _series_uid(read_header, spect, spect_files[0])
            files += spect_files
            ct_files = dicom_files(ct, file_for_instance) if ct is not None else []
            files_of[spect.GetID()] = (spect_files, ct_files)
            if ct_files:
                files += ct_files
                overrides[series_of[spect.GetID()]] = {"ct_series_uid": _series_uid(read_header, ct, ct_files[0])}
        if not files:
            return None, {}, {}
        try:
            study = load_study_files(list(dict.fromkeys(files)), overrides)
        except ValueError as error:
            return None, {}, _facts_to_complete(files_of, error)
        by_series = {tp.metadata["spect_series_instance_uid"]: tp for tp in study.timepoints}
        read = {}
        for node_id, uid in series_of.items():
            if uid not in by_series:
                name = self.scene.GetNodeByID(node_id).GetName()
                raise ValueError(f"The volume '{name}' is not a reconstructed 131I SPECT: "
                                 f"{_unused_reason(study, uid)}. Select it as a CT or leave it out.")
            read[node_id] = by_series[uid]
            _check_same_values(self.scene, self.scene.GetNodeByID(node_id), by_series[uid].spect)
        return study, read, {}

    def _partial_metadata_table(self, spect, facts):
        """A metadata table with what the SPECT's headers give, the rest left empty for the time-point table."""
        acquired, administered = facts["acquisition_datetime"], facts["administration_datetime"]
        hours = ("" if acquired is None or administered is None else
                 repr((acquired.replace(tzinfo=None) - administered.replace(tzinfo=None)).total_seconds() / 3600.0))
        values = [spect.GetName(), hours, acquired.isoformat() if acquired else "",
                  _optional_number(facts["duration_s"]), _optional_number(facts["observed_count_rate_cps"]),
                  administered.isoformat() if administered else "",
                  _optional_number(facts["administered_activity_MBq"])]
        table = mrml.add_table(self.scene, f"{spect.GetName()} acquisition", {"field": list(METADATA_FIELDS),
                                                                                "value": values})
        header = {key: value for key, value in facts["metadata"].items() if key not in _OWN_ROWS}
        header.update(imaging={}, ct_files=facts["ct_files"])
        table.SetAttribute(HEADER_FACTS_ATTRIBUTE, json.dumps(header, sort_keys=True))
        return table

    def load_study_folder(self, parameter_node, study_dir, calibration_node=None, segmentation_node=None):
        """Read a study folder into the scene (volumes, sequences, subject hierarchy and one metadata
        table per time point) and reference it as the inputs; returns the :class:`TimePointNodes`."""
        from MIBGDosimetryLib.study import load_study

        study = load_study(study_dir)
        timepoints = add_study(self.context, study)
        self.set_inputs(parameter_node, timepoints, segmentation_node, calibration_node)
        parameter_node.SetParameter(STUDY_DIRECTORY_PARAMETER, os.path.abspath(study_dir))
        self.update_timepoint_table(parameter_node)
        return timepoints

    def apply_timepoint_edits(self, parameter_node):
        """Copy the values edited in the time-point table into the time points' metadata tables, then
        flag the table again. Returns the flags (one list of sentences per time point)."""
        from MIBGDosimetryLib.scene import review

        table = parameter_node.GetNodeReference(TIMEPOINT_TABLE_ROLE)
        if table is None:
            raise ValueError("There is no time-point table yet; select the time points first.")
        edited = mrml.table_columns(table)
        count = parameter_node.GetNumberOfNodeReferences(METADATA_ROLE)
        if len(edited.get("TimePoint", [])) != count:
            raise ValueError(f"The time-point table has {len(edited.get('TimePoint', []))} rows for {count} time "
                             "points; rebuild it from the metadata tables.")
        for n in range(count):
            metadata = parameter_node.GetNthNodeReference(METADATA_ROLE, n)
            columns = mrml.table_columns(metadata)
            values = dict(zip(columns["field"], columns["value"]))
            values.update({field: _text(edited[field][n]) for field in METADATA_FIELDS if field in edited})
            attribute = metadata.GetAttribute(HEADER_FACTS_ATTRIBUTE)
            mrml.fill_table(metadata, {"field": list(values), "value": list(values.values())})
            if attribute is not None:
                metadata.SetAttribute(HEADER_FACTS_ATTRIBUTE, attribute)
        self.update_timepoint_table(parameter_node)
        return review.timepoint_flags(self._metadata_rows(parameter_node), self._header_facts_rows(parameter_node))

    def tac_chart(self, parameter_node, voi_name):
        """The time-activity chart of the VOI ``voi_name`` of the last dose run (None without one)."""
        for n in range(parameter_node.GetNumberOfNodeReferences(TAC_CHART_ROLE)):
            chart = parameter_node.GetNthNodeReference(TAC_CHART_ROLE, n)
            if chart is not None and chart.GetAttribute(VOI_ATTRIBUTE) == voi_name:
                return chart
        return None

    def update_timepoint_table(self, parameter_node):
        """Build (or rebuild) the time-point table from the metadata tables: one row per time point with
        a ``flags`` column naming missing and implausible values. Returns the table node."""
        from MIBGDosimetryLib.scene import review

        created = []
        try:
            table = review.timepoint_table(self.scene, self._metadata_rows(parameter_node), created,
                                           self._header_facts_rows(parameter_node))
        except Exception:
            _remove_all(self.scene, created)
            raise
        _swap(self.scene, parameter_node, {TIMEPOINT_TABLE_ROLE: table})
        return table

    def compute_dose(self, parameter_node, options=None, progress=None, cancel=None):
        """Dose from the segmentation's current segments and the referenced transforms (no new
        registration); returns the :class:`DoseCalculation` and replaces the result nodes."""
        from MIBGCalibrationLib.record import CalibrationRecord
        from MIBGDosimetryLib.registration.resample import resample_counts
        from MIBGDosimetryLib.segmentation.segment_vois import vois_from_segmentation_node
        from MIBGDosimetryLib.workflow.dose_workflow import DoseOptions, calculate

        steps = _Steps(progress, cancel)
        options = dataclasses.replace(options or DoseOptions(), reference_index=self.reference_index(parameter_node))
        study = self._study(parameter_node)
        record = CalibrationRecord.from_node(parameter_node.GetNodeReference(CALIBRATION_ROLE))
        transforms = self.transform_nodes(parameter_node)
        if len(transforms) != len(study.timepoints) or any(node is None for node in transforms):
            raise ValueError("The time points are not registered yet; run the registration first.")
        segmentation = parameter_node.GetNodeReference(SEGMENTATION_ROLE)
        if segmentation is None:
            raise ValueError("Select the segmentation that holds the organs and lesions.")
        reference_tp = study.timepoints[options.reference_index]
        reference_spect = reference_tp.spect
        registrations, registered = [], []
        for tp, node in zip(study.timepoints, transforms):
            steps(f"Moving '{tp.label}' onto the reference grid with the transform '{node.GetName()}'")
            result = _registration_from_node(node, reference_tp, tp)
            registrations.append(result)
            registered.append(resample_counts(tp.spect, reference_spect, result.matrix_ras))
        steps(f"Taking the VOIs from the segments of '{segmentation.GetName()}'")
        vois = vois_from_segmentation_node(self.scene, segmentation, reference_spect)
        calculation = calculate(study, record, options, steps, vois=vois, registration=(registrations, registered))
        steps.check()
        self._replace_results(parameter_node, calculation)
        return calculation

    def _metadata_rows(self, parameter_node):
        rows = []
        for n in range(parameter_node.GetNumberOfNodeReferences(METADATA_ROLE)):
            table = parameter_node.GetNthNodeReference(METADATA_ROLE, n)
            columns = mrml.table_columns(table) if table is not None else {}
            rows.append(dict(zip(columns.get("field", []), columns.get("value", []))))
        return rows

    def _header_facts_rows(self, parameter_node):
        """Per time point the header facts of its metadata table (None when the table has none)."""
        rows = []
        for n in range(parameter_node.GetNumberOfNodeReferences(METADATA_ROLE)):
            table = parameter_node.GetNthNodeReference(METADATA_ROLE, n)
            text = table.GetAttribute(HEADER_FACTS_ATTRIBUTE) if table is not None else None
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
            rows.append(parsed if isinstance(parsed, dict) else None)
        return rows

    def _registration_review(self, study, registrations, registered, created):
        """Registration review nodes by role: the quality table and the registered SPECT sequence."""
        from MIBGDosimetryLib.registration.mrml_nodes import add_volume_sequence
        from MIBGDosimetryLib.scene import review

        rows = {"timepoints": [{"label": tp.label, "registration": r.to_dict()}
                               for tp, r in zip(study.timepoints, registrations)]}
        table = review.registration_table(self.scene, rows, created)
        before = _node_ids(self.scene)
        added = []
        try:
            sequence, _ = add_volume_sequence(self.context, registered, "Registered SPECT",
                                              [round(tp.mid_acquisition_hours, 2) for tp in study.timepoints],
                                              index_name="time after administration")
        finally:
            added = [self.scene.GetNodeByID(i) for i in sorted(_node_ids(self.scene) - before)]
            created.extend(added)
        # The sequence browser and its proxy volume (with the proxy's display node).
        helpers = [node for node in added if node is not sequence and node.GetSingletonTag() is None]
        return {REGISTRATION_TABLE_ROLE: table, REGISTERED_SPECT_ROLE: sequence,
                REGISTRATION_REVIEW_NODE_ROLE: helpers}

    # Internals
    def _study(self, parameter_node):
        from MIBGDosimetryLib.study.model import Study

        count = parameter_node.GetNumberOfNodeReferences(SPECT_ROLE)
        if count == 0:
            raise ValueError("No time points are selected; set the SPECT, CT and metadata of each time point.")
        timepoints = [self._timepoint(parameter_node, n) for n in range(count)]
        hours = [tp.hours_after_administration for tp in timepoints]
        if any(later <= earlier for earlier, later in zip(hours, hours[1:])):
            raise ValueError(f"The time points must be given in time order; their hours after administration are "
                             f"{', '.join(f'{h:g}' for h in hours)}.")
        first = timepoints[0].metadata
        return Study(path="", timepoints=timepoints, administration_datetime=first["administration_datetime"],
                     administered_activity_MBq=first["administered_activity_MBq"])

    def _timepoint(self, parameter_node, n):
        from MIBGDosimetryLib.study.model import TimePoint
        from MIBGDosimetryLib.volume import ImageVolume

        spect_node = parameter_node.GetNthNodeReference(SPECT_ROLE, n)
        ct_node = parameter_node.GetNthNodeReference(CT_ROLE, n)
        table = parameter_node.GetNthNodeReference(METADATA_ROLE, n)
        if spect_node is None or table is None:
            raise ValueError(f"Time point {n + 1} lacks its SPECT volume or its metadata table.")
        facts = _facts(table)
        label = facts["TimePoint"] or spect_node.GetName()
        header = _header_facts(table, label)
        administration = facts["AdministrationDateTime"]
        return TimePoint(
            label=label,
            hours_after_administration=_number(facts, "HoursAfterAdministration", label, required=True),
            acquisition_datetime=datetime.datetime.fromisoformat(facts["AcquisitionDateTime"]),
            duration_s=_number(facts, "DurationSeconds", label, required=True),
            # The units the time point's headers state (the units path decides how the values become activity).
            spect=ImageVolume.from_node(self.scene, spect_node, units=(header.get("units_path") or {}).get("units")
                                        or "counts"),
            ct=None if ct_node is None else _ct_volume(self.scene, ct_node, header),
            observed_count_rate_cps=_number(facts, "ObservedCountRateCps", label),
            metadata={**header,
                      "administered_activity_MBq": _number(facts, "AdministeredActivityMBq", label),
                      "administration_datetime": (datetime.datetime.fromisoformat(administration)
                                                  if administration else None)})

    def _replace_results(self, parameter_node, calculation):
        """Add the result and review nodes, then swap the parameter node's references and remove the
        old nodes; nothing is left behind if adding fails."""
        from MIBGDosimetryLib.export.rtdose import add_dose_node
        from MIBGDosimetryLib.scene import review
        from MIBGDosimetryLib.workflow.outputs import clean_results

        results = calculation.results
        created = []
        try:
            new = {DOSE_ROLE: _kept(created, add_dose_node(self.context, calculation.dose_map, "Absorbed dose (Gy)")),
                   TIA_ROLE: _kept(created, calculation.tia_map.to_node(self.scene, "Time-integrated activity (MBq h)")),
                   RESULTS_TABLE_ROLE: review.results_table(self.scene, results, created)}
            text = _kept(created, self.scene.AddNewNodeByClass("vtkMRMLTextNode", "Dose results (JSON)"))
            text.SetText(json.dumps(clean_results(results)))
            new[RESULTS_TEXT_ROLE] = text
            charts = []
            for entry in results["vois"]:
                chart = review.tac_chart(self.scene, entry, calculation.tac_fits[entry["name"]], created)
                chart.SetAttribute(VOI_ATTRIBUTE, entry["name"])
                charts.append(chart)
            new[TAC_CHART_ROLE] = charts
            new[DVH_CHART_ROLE] = review.dvh_chart(self.scene, results, created)
            new.update(self._registration_review(calculation.study, calculation.registrations,
                                                 calculation.registered_spects, created))
        except Exception:
            _remove_all(self.scene, created)
            raise
        shown = {id(node) for value in new.values() for node in (value if isinstance(value, list) else [value])}
        new[DOSE_REVIEW_NODE_ROLE] = [node for node in created if id(node) not in shown]
        _swap(self.scene, parameter_node, new)


#: Attribute naming the VOI of a time-activity chart.
VOI_ATTRIBUTE = "MIBGDosimetry.VOI"


def _kept(created, node):
    created.append(node)
    return node


def _node_ids(scene):
    nodes = scene.GetNodes()
    return {nodes.GetItemAsObject(n).GetID() for n in range(nodes.GetNumberOfItems())}


def _remove_all(scene, nodes):
    for node in reversed(nodes):
        if node is not None and scene.IsNodePresent(node):
            _remove(scene, node)


def _swap(scene, parameter_node, new):
    """Reference the nodes of ``new`` (role -> node or list of nodes) from ``parameter_node`` in place of
    the nodes referenced before under those roles, and remove the old nodes from the scene."""
    old = []
    for role, value in new.items():
        nodes = value if isinstance(value, list) else [value]
        old += [parameter_node.GetNthNodeReference(role, n) for n in range(parameter_node.GetNumberOfNodeReferences(role))]
        parameter_node.RemoveNodeReferenceIDs(role)
        for n, node in enumerate(nodes):
            parameter_node.SetNthNodeReferenceID(role, n, node.GetID())
    _remove_all(scene, [node for node in old if node is not None])


def _remove(scene, node):
    """Remove a node with its display and storage nodes (the scene keeps those otherwise)."""
    companions = []
    if node.IsA("vtkMRMLDisplayableNode"):
        companions += [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
    if node.IsA("vtkMRMLStorableNode"):
        companions.append(node.GetStorageNode())
    scene.RemoveNode(node)
    for companion in companions:
        if companion is not None and scene.IsNodePresent(companion):
            scene.RemoveNode(companion)


def _facts(table):
    columns = mrml.table_columns(table)
    if "field" not in columns or "value" not in columns:
        raise ValueError(f"The metadata table '{table.GetName()}' needs the columns 'field' and 'value'.")
    facts = dict(zip(columns["field"], columns["value"]))
    missing = [f for f in ("AcquisitionDateTime", "HoursAfterAdministration", "DurationSeconds") if not facts.get(f)]
    if missing:
        raise ValueError(f"The metadata table '{table.GetName()}' lacks {', '.join(missing)}.")
    return {field: facts.get(field, "") for field in METADATA_FIELDS}


def _ct_volume(scene, node, header):
    """The CT of a time point; its DICOM files are named when they are all on this computer (the RT Dose
    and SEG exports then refer to that CT)."""
    from MIBGDosimetryLib.volume import ImageVolume

    ct = ImageVolume.from_node(scene, node, units="HU")
    files = header.get("ct_files") or []
    if files and all(os.path.isfile(path) for path in files):
        ct.metadata["files"] = list(files)
    return ct


#: Attribute of a volume loaded by Slicer's DICOM module: the SOPInstanceUIDs of its files, space-separated
#: ("Unknown" for a file without one), as Slicer's DICOMScalarVolumePlugin sets it.
DICOM_INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


def dicom_files(node, file_for_instance):
    """The DICOM files of a volume loaded by Slicer's DICOM module (empty for other volumes), found with
    ``file_for_instance`` (SOPInstanceUID -> path, '' when the file is not known)."""
    uids = (node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return []
    paths = [file_for_instance(uid) if uid != "Unknown" else "" for uid in uids]
    missing = [uid for uid, path in zip(uids, paths) if not path]
    if missing:
        raise ValueError(f"The DICOM files of the volume '{node.GetName()}' are not in the DICOM database "
                         f"({len(missing)} of {len(uids)} not found, e.g. instance '{missing[0]}'); import its "
                         "series into the DICOM database again, or load the study folder.")
    gone = [path for path in paths if not os.path.isfile(path)]
    if gone:
        raise ValueError(f"The DICOM file '{gone[0]}' of the volume '{node.GetName()}' does not exist ({len(gone)} of "
                         f"{len(paths)} files are gone): it was moved or deleted after it was imported. Import the "
                         "series into the DICOM database again, or load the study folder.")
    return list(dict.fromkeys(paths))


def _facts_to_complete(files_of, error):
    """When the study loader refuses the DICOM files of the selected volumes because the acquisition or
    administration times or the duration are missing or wrong, what each SPECT's headers give
    ({SPECT node ID: facts}), for the user to complete in the time-point table; any other refusal is
    raised with the loader's reasons."""
    from MIBGDosimetryLib.study.loader import emission_series_facts

    partial = {}
    for node_id, (spect_files, ct_files) in files_of.items():
        try:
            facts = emission_series_facts(spect_files)
        except ValueError:
            facts = None
        if facts is None:
            break
        partial[node_id] = dict(facts, ct_files=ct_files)
    needed = ("acquisition_datetime", "duration_s", "administration_datetime")
    if len(partial) != len(files_of) or not any(facts[key] is None for facts in partial.values() for key in needed):
        raise ValueError(f"The DICOM files of the selected volumes cannot be used as they are: {error}") from None
    return partial


def _optional_number(value):
    return "" if value is None else repr(float(value))


def _check_same_values(scene, node, read):
    """Refuse a volume whose total differs from that of the image the study loader reads from its files
    (e.g. a RealWorldValueMapping the DICOM module does not apply): the dose would be computed on other values
    than the header facts describe."""
    from MIBGDosimetryLib.volume import ImageVolume

    total = float(np.sum(ImageVolume.from_node(scene, node, units="counts").array, dtype=float))
    expected = float(np.sum(read.array, dtype=float))
    if not np.isclose(total, expected, rtol=1e-6, atol=1e-9):
        raise ValueError(f"The voxel values of the volume '{node.GetName()}' (total {total:.6g}) differ from those "
                         f"its DICOM files give in {read.units} (total {expected:.6g}), e.g. a value mapping the "
                         "DICOM module did not apply; load the study folder instead.")


def _series_uid(read_header, node, path):
    header, reason = read_header(path)
    if header is None or not header.get("SeriesInstanceUID"):
        raise ValueError(f"The DICOM file '{path}' of the volume '{node.GetName()}' cannot be read: "
                         f"{reason or 'it has no SeriesInstanceUID'}.")
    return str(header.SeriesInstanceUID)


def _unused_reason(study, series_uid):
    reasons = [entry["reason"] for entry in study.unused_series if entry["series_instance_uid"] == series_uid]
    return reasons[0] if reasons else "its series is not an emission image"


def _facts_or_empty(table):
    columns = mrml.table_columns(table)
    return dict(zip(columns.get("field", []), columns.get("value", [])))


def _header_facts(table, label):
    text = table.GetAttribute(HEADER_FACTS_ATTRIBUTE) or ""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        raise ValueError(f"Time point '{label}': the attribute {HEADER_FACTS_ATTRIBUTE} of the metadata table is not "
                         "valid JSON; restore it or remove it (the calculation then warns about what is unknown).") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"Time point '{label}': the attribute {HEADER_FACTS_ATTRIBUTE} of the metadata table must "
                         "hold a JSON object.")
    return {key: value for key, value in parsed.items() if key not in _OWN_ROWS}


def _number(facts, field, label, required=False):
    text = facts.get(field, "")
    if text == "":
        if required:
            raise ValueError(f"Time point '{label}': the metadata table gives no {field}.")
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"Time point '{label}': {field} '{text}' in the metadata table is not a number.") from None


def _registration_from_node(node, reference_tp, tp):
    """A :class:`RegistrationResult` from a transform node: its current matrix, with the quality
    figures of the registration that made it; a matrix changed since is reported as corrected, with the
    quality figures of the corrected matrix (body overlap of the CTs, or SPECTs without CT)."""
    from MIBGDosimetryLib.registration.mrml_nodes import QUALITY_ATTRIBUTE, matrix_from_transform_node
    from MIBGDosimetryLib.registration.result import RegistrationResult
    from MIBGDosimetryLib.registration.rigid import quality_of_matrix

    matrix = matrix_from_transform_node(node)
    stored = json.loads(node.GetAttribute(QUALITY_ATTRIBUTE) or "{}")
    result = RegistrationResult(matrix_ras=matrix, kind=stored.get("kind", "rigid"),
                                modality=stored.get("modality", "CT"), quality=dict(stored.get("quality", {})),
                                warnings=list(stored.get("warnings", [])))
    if "matrix_ras" in stored and not np.allclose(stored["matrix_ras"], matrix, atol=1e-6):
        with_ct = reference_tp.ct is not None and tp.ct is not None
        quality, warnings = quality_of_matrix(reference_tp.ct if with_ct else reference_tp.spect,
                                              tp.ct if with_ct else tp.spect, matrix)
        result.kind = f"{result.kind}, corrected in the scene"
        result.quality = {**quality, "corrected_in_scene": True}
        result.warnings = [f"the transform '{node.GetName()}' was changed after the registration; the changed "
                           "transform is used"] + warnings
    return result




def _text(value):
    """A table cell as the metadata table's text (numbers written in full, integers without '.0')."""
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    return str(value)
