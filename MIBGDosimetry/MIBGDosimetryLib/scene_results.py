"""Results of a dose calculation in the application's scene, found through node references.

Each run's nodes are referenced from an owner node (the module's parameter node); a new run removes the
previous run's nodes before adding its own, so the scene never holds two same-named sets and the views
show the latest results. The table, the reference CT and the dose volume have roles of their own.
"""

from MIBGDosimetryLib import mrml

#: Reference role of every node made by the last run.
RESULT_NODE_ROLE = "MIBGDosimetry.ResultNode"
#: Reference roles of the nodes the module shows.
TABLE_ROLE = "MIBGDosimetry.ResultsTable"
DOSE_ROLE = "MIBGDosimetry.DoseVolume"
CT_ROLE = "MIBGDosimetry.ReferenceCT"

RESULTS_TABLE_NAME = "Dose results"
DOSE_VOLUME_NAME = "Absorbed dose (Gy)"


def remove_previous_results(scene, owner_node):
    """Remove every node referenced by ``owner_node`` as a result of an earlier run."""
    previous = [owner_node.GetNthNodeReference(RESULT_NODE_ROLE, i)
                for i in range(owner_node.GetNumberOfNodeReferences(RESULT_NODE_ROLE))]
    owner_node.RemoveNodeReferenceIDs(RESULT_NODE_ROLE)
    for role in (TABLE_ROLE, DOSE_ROLE, CT_ROLE):
        owner_node.RemoveNodeReferenceIDs(role)
    for node in previous:
        if node is not None and scene.IsNodePresent(node):
            scene.RemoveNode(node)


def replace_results(calculation, context, owner_node):
    """Put ``calculation`` into ``context.scene`` in place of the previous run referenced by ``owner_node``.

    Returns ``{"table": node, "dose": node, "ct": node or None}``, also referenced from ``owner_node``.
    """
    from MIBGDosimetryLib.workflow.outputs import build_scene

    scene = context.scene
    remove_previous_results(scene, owner_node)
    before = {node.GetID() for node in _nodes(scene)}
    build_scene(calculation, context)
    added = [node for node in _nodes(scene) if node.GetID() not in before and _belongs_to_run(node)]
    for node in added:
        owner_node.AddNodeReferenceID(RESULT_NODE_ROLE, node.GetID())
    reference_index = calculation.results["provenance"]["options"]["reference_index"]
    ct_name = f"CT {calculation.study.timepoints[reference_index].label}"
    shown = {"table": _only(added, "vtkMRMLTableNode", RESULTS_TABLE_NAME),
             "dose": _only(added, "vtkMRMLScalarVolumeNode", DOSE_VOLUME_NAME),
             "ct": _only(added, "vtkMRMLScalarVolumeNode", ct_name, required=False)}
    for key, role in (("table", TABLE_ROLE), ("dose", DOSE_ROLE), ("ct", CT_ROLE)):
        if shown[key] is not None:
            owner_node.SetNodeReferenceID(role, shown[key].GetID())
    if shown["dose"].GetAttribute(mrml.DOSE_VOLUME_ATTRIBUTE) != "1":
        raise RuntimeError("The absorbed-dose volume was not marked as dose.")
    return shown


def shown_results(owner_node):
    """``{"table", "dose", "ct"}`` nodes of the last run referenced by ``owner_node`` (None when absent)."""
    return {"table": owner_node.GetNodeReference(TABLE_ROLE), "dose": owner_node.GetNodeReference(DOSE_ROLE),
            "ct": owner_node.GetNodeReference(CT_ROLE)}


def _nodes(scene):
    collection = scene.GetNodes()
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def _belongs_to_run(node):
    # Singletons (subject hierarchy, the shared dose colour table) and colour tables outlive a run.
    return node.GetSingletonTag() is None and not node.IsA("vtkMRMLColorNode")


def _only(nodes, class_name, name, required=True):
    matches = [node for node in nodes if node.IsA(class_name) and node.GetName() == name]
    if len(matches) > 1 or (required and not matches):
        raise RuntimeError(f"The dose calculation made {len(matches)} '{name}' nodes instead of one.")
    return matches[0] if matches else None
