"""Organ outlines (DICOM SEG, RTSTRUCT) placed through their frame of reference.

An outline is drawn on one scan; its coordinates mean something only in that scan's frame of
reference (FrameOfReferenceUID). An outline of the reference time point's frame (its SPECT's or its
CT's) is read onto the reference SPECT grid directly. One drawn on another time point's scan is read
onto that time point's grid (its CT, else its SPECT) and carried to the reference through the
registration of that time point. An outline whose frame belongs to no time point of the study is
refused, naming the file: reading it as if it were on the reference scan would misplace it by the
patient's repositioning between scans.
"""

import os

import numpy as np

#: SOP classes whose frame of reference is read, and where they keep it.
SEGMENTATION_MODALITIES = ("SEG", "RTSTRUCT")


def outline_frame_of_reference(path):
    """``(modality, FrameOfReferenceUID or None)`` of a SEG or RTSTRUCT file."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    modality = str(ds.get("Modality", ""))
    uid = ds.get("FrameOfReferenceUID")
    if not uid and modality == "RTSTRUCT":
        for item in ds.get("ReferencedFrameOfReferenceSequence", []):
            uid = item.get("FrameOfReferenceUID")
            if uid:
                break
        if not uid:
            for item in ds.get("StructureSetROISequence", []):
                uid = item.get("ReferencedFrameOfReferenceUID")
                if uid:
                    break
    return modality, (str(uid) if uid else None)


def _frames_of(timepoint):
    """Frames of reference of a time point's SPECT and CT."""
    metadata = timepoint.metadata or {}
    candidates = [metadata.get("frame_of_reference_uid"), metadata.get("ct_frame_of_reference_uid"),
                  (timepoint.spect.metadata or {}).get("frame_of_reference_uid")]
    if timepoint.ct is not None:
        candidates.append((timepoint.ct.metadata or {}).get("frame_of_reference_uid"))
    return {uid for uid in candidates if uid}


def organ_vois_by_frame(study, registrations, reference, reference_index):
    """Organ VOIs of every SEG/RTSTRUCT of the study on the ``reference`` grid, each through its frame.

    How each file was placed is said in the warnings of its VOIs. Raises ValueError naming a file whose
    frame of reference belongs to no time point.
    """
    from MIBGDosimetryLib.registration.resample import resample_mask
    from MIBGDosimetryLib.workflow import vois as vois_module

    timepoints = study.timepoints
    reference_tp = timepoints[reference_index]
    reference_frames = _frames_of(reference_tp)
    vois = []
    for path in study.segmentation_files:
        shown = os.path.relpath(path, study.path) if study.path else path
        modality, frame = outline_frame_of_reference(path)
        if modality not in SEGMENTATION_MODALITIES:
            continue
        if frame is None or frame in reference_frames:
            found = vois_module.organ_vois([path], reference, reference_tp.ct)
            if frame is None:
                for voi in found:
                    voi.warnings.append(f"the {modality} '{shown}' states no frame of reference; it is taken to be "
                                        f"drawn on the reference time point '{reference_tp.label}'")
            vois.extend(found)
            continue
        index = next((n for n, tp in enumerate(timepoints) if frame in _frames_of(tp)), None)
        if index is None:
            listing = "; ".join(f"{tp.label}: {', '.join(sorted(_frames_of(tp))) or 'none'}" for tp in timepoints)
            raise ValueError(f"The {modality} '{shown}' is in the frame of reference {frame}, which is the frame of no "
                             f"time point of the study ({listing}). It was drawn on a scan that is not part of the "
                             f"study; redraw it on one of the study's scans or add that scan's CT.")
        source_tp = timepoints[index]
        grid = source_tp.ct if source_tp.ct is not None else source_tp.spect
        transform = registrations[index].resampling_transform
        for voi in vois_module.organ_vois([path], grid):
            voi.details.update(vois_module.outline_details(voi.mask, grid))
            if registrations[index].transform is None:  # a matrix: the outline can be moved on its own grid
                voi.drawn = vois_module.DrawnOutline.cropped(voi.mask, grid, registrations[index].matrix_ras)
            voi.mask = np.asarray(resample_mask(voi.mask, grid, reference, transform), dtype=bool)
            voi.details["drawn_on_timepoint"] = source_tp.label
            voi.source = f"{voi.source} (drawn on {source_tp.label}, mapped by its registration)"
            voi.warnings = [w for w in voi.warnings if "covers no voxel" not in w]
            if not voi.mask.any():
                voi.warnings.append(f"organ '{voi.name}' from {shown} covers no voxel of the SPECT grid after mapping "
                                    f"from {source_tp.label}")
            voi.warnings.append(f"the {modality} '{shown}' was drawn on time point '{source_tp.label}' (frame of "
                                f"reference {frame}); the outline was carried to '{reference_tp.label}' through that "
                                f"time point's registration")
            vois.append(voi)
    return vois
