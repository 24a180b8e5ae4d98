"""A loaded study in an MRML scene: volumes per time point, a sequence per modality, subject hierarchy.

Each time point gets a SPECT volume node and, when paired, a CT volume node, carrying the time
point's facts as node attributes (prefix ``MIBGDosimetry.``). The SPECT volumes, and the CT volumes,
are also gathered in one sequence node per modality indexed by hours after administration, played
together by one sequence browser. The subject hierarchy holds patient > study > time point folders
with the volumes inside.
"""

import dataclasses

import slicer

ATTRIBUTE_PREFIX = "MIBGDosimetry."


@dataclasses.dataclass
class StudyNodes:
    """The nodes and subject-hierarchy items created for a study; lists are in time-point order."""

    spect_nodes: list
    ct_nodes: list
    sequence_nodes: dict
    browser_node: object
    patient_item: int
    study_item: int
    timepoint_items: list


def load_study_into_scene(study, context):
    """Add ``study`` (a :class:`MIBGDosimetryLib.study.Study`) to ``context.scene``; returns StudyNodes."""
    scene = context.scene
    spect_nodes, ct_nodes = [], []
    for tp in study.timepoints:
        attributes = timepoint_attributes(study, tp)
        spect_nodes.append(tp.spect.to_node(scene, f"{tp.label} SPECT ({tp.hours_after_administration:.1f} h)",
                                            attributes={**attributes, **_volume_attributes(tp.spect)}))
        ct_nodes.append(None if tp.ct is None else tp.ct.to_node(
            scene, f"{tp.label} CT ({tp.hours_after_administration:.1f} h)",
            attributes={**attributes, **_volume_attributes(tp.ct)}))

    sequences = {"SPECT": _sequence(scene, "SPECT sequence", study.timepoints, spect_nodes)}
    if any(node is not None for node in ct_nodes):
        sequences["CT"] = _sequence(scene, "CT sequence", study.timepoints, ct_nodes)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "Study time points")
    browser.SetAndObserveMasterSequenceNodeID(sequences["SPECT"].GetID())
    if "CT" in sequences:
        browser.AddSynchronizedSequenceNode(sequences["CT"])
    context.sequences_logic.UpdateProxyNodesFromSequences(browser)

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient_name = study.patient.get("name") or study.patient.get("id") or "Patient"
    patient_item = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), patient_name)
    if study.patient.get("id"):
        hierarchy.SetItemAttribute(patient_item, ATTRIBUTE_PREFIX + "PatientID", study.patient["id"])
    administered = study.administration_datetime.isoformat() if study.administration_datetime else "unknown"
    study_item = hierarchy.CreateStudyItem(patient_item, f"131I-mIBG administered {administered}")
    hierarchy.SetItemAttribute(study_item, ATTRIBUTE_PREFIX + "AdministrationDateTime", administered)
    if study.administered_activity_MBq is not None:
        hierarchy.SetItemAttribute(study_item, ATTRIBUTE_PREFIX + "AdministeredActivityMBq",
                                   repr(study.administered_activity_MBq))
    timepoint_items = []
    for tp, spect_node, ct_node in zip(study.timepoints, spect_nodes, ct_nodes):
        folder = hierarchy.CreateFolderItem(study_item, f"{tp.label} ({tp.hours_after_administration:.1f} h)")
        for key, value in timepoint_attributes(study, tp).items():
            hierarchy.SetItemAttribute(folder, key, value)
        for node in (spect_node, ct_node):
            if node is not None:
                item = hierarchy.GetItemByDataNode(node)
                if item == hierarchy.GetInvalidItemID():
                    item = hierarchy.CreateItem(folder, node)
                else:
                    hierarchy.SetItemParent(item, folder)
                uid = node.GetAttribute(ATTRIBUTE_PREFIX + "SeriesInstanceUID")
                if uid:
                    hierarchy.SetItemUID(item, "DICOM", uid)
        timepoint_items.append(folder)
    return StudyNodes(spect_nodes, ct_nodes, sequences, browser, patient_item, study_item, timepoint_items)


def timepoint_attributes(study, tp):
    """The time point's facts as MRML attribute strings (numbers written with full precision by repr)."""
    values = {
        "TimePoint": tp.label,
        "HoursAfterAdministration": repr(float(tp.hours_after_administration)),
        "AcquisitionDateTime": tp.acquisition_datetime.isoformat(),
        "DurationSeconds": repr(float(tp.duration_s)),
        "ObservedCountRateCps": "" if tp.observed_count_rate_cps is None else repr(float(tp.observed_count_rate_cps)),
        "AdministrationDateTime": study.administration_datetime.isoformat() if study.administration_datetime else "",
        "AdministeredActivityMBq": ("" if tp.metadata.get("administered_activity_MBq") is None
                                    else repr(float(tp.metadata["administered_activity_MBq"]))),
        "StudyInstanceUID": tp.metadata.get("study_instance_uid") or "",
        "Camera": " ".join(v for v in (tp.metadata.get("camera") or {}).values() if v),
        "Collimator": (tp.metadata.get("collimator") or {}).get("name") or "",
    }
    return {ATTRIBUTE_PREFIX + key: value for key, value in values.items()}


def _volume_attributes(volume):
    values = {"Modality": volume.metadata.get("modality", ""), "Units": volume.units,
              "SeriesInstanceUID": volume.metadata.get("series_instance_uid") or "",
              "FrameOfReferenceUID": volume.metadata.get("frame_of_reference_uid") or ""}
    return {ATTRIBUTE_PREFIX + key: value for key, value in values.items()}


def _sequence(scene, name, timepoints, nodes):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time after administration")
    sequence.SetIndexUnit("h")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    for tp, node in zip(timepoints, nodes):
        if node is not None:
            sequence.SetDataNodeAtValue(node, repr(float(tp.hours_after_administration)))
    return sequence
