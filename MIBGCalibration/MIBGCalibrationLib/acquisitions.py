"""The acquisitions a phantom description asks for, and a calibration folder made from files found elsewhere.

``phantom.json`` names every acquisition by a folder and a file name. Files that Slicer's DICOM
database holds are renamed by it (one file per SOPInstanceUID, in folders of UIDs), so a phantom loaded
through Slicer's DICOM module cannot be found by those names. Here each acquisition the description asks
for is a *slot* (the Jaszczak cylinder, each dead-time step, each OSEM reconstruction...); the user
assigns a file to each slot (in Slicer: a volume of the scene, whose files the DICOM database knows),
and :func:`staged_calibration_folder` lays the assigned files out under the names of the description,
so that the one calibration chain (:mod:`MIBGCalibrationLib.phantom_calibration`) reads them.

Slots not assigned are read from the description's own folder when the file is there. The inputs are
never changed: files are linked, or copied where the file system cannot link.
"""

import contextlib
import copy
import dataclasses
import json
import os
import shutil
import tempfile

from MIBGCalibrationLib.phantom_calibration import PHANTOM_FILE, load_description


@dataclasses.dataclass(frozen=True)
class AcquisitionSlot:
    """One acquisition the phantom description asks for."""

    #: Stable name of the slot: the path of its file entry in the description, e.g. "deadtime.steps.3.file".
    key: str
    #: What to show the user, e.g. "Dead-time step 4 (250 MBq)".
    label: str
    #: Folder (relative to the description) and file name the calibration chain reads.
    series_dir: str
    file_name: str
    #: True for a reconstructed SPECT (read as an image), False for projections or static acquisitions.
    reconstruction: bool


def acquisition_slots(description):
    """The :class:`AcquisitionSlot` of every acquisition a checked phantom description asks for, in the
    order of the calibration chain. Sections that name no file get a name here ("spect.dcm"...)."""
    slots = []

    def add(key, label, section, name_key, default, reconstruction):
        slots.append(AcquisitionSlot(key, label, section["series_dir"], section.get(name_key) or default,
                                     reconstruction))

    dead_time = description.get("deadtime")
    if dead_time:
        steps = dead_time.get("steps") or []
        if not steps:
            raise ValueError(f"{PHANTOM_FILE}: the dead-time section lists no steps; assigning acquisitions needs "
                             "one step (file, activity_MBq, reference_datetime) per acquisition.")
        section = dict(dead_time, series_dir=dead_time.get("series_dir", "deadtime"))
        for n, step in enumerate(steps):
            slots.append(AcquisitionSlot(f"deadtime.steps.{n}.file",
                                         f"Dead-time step {n + 1} ({step.get('activity_MBq', '?')} MBq)",
                                         section["series_dir"], step.get("file") or f"step_{n + 1:02d}.dcm", False))
    add("jaszczak.file", "Jaszczak cylinder (calibration factor Q)", description["jaszczak"], "file", "spect.dcm",
        True)
    spheres = description.get("spheres")
    if spheres:
        add("spheres.file", "Sphere phantom (recovery, resolution, thresholds)", spheres, "file", "spect.dcm", True)
        for n, extra in enumerate(description.get("threshold_spheres") or []):
            ratio = _contrast(extra)
            add(f"threshold_spheres.{n}.file", f"Sphere phantom for thresholds{ratio}", extra, "file", "spect.dcm",
                True)
        osem = description.get("osem")
        if osem:
            section = dict(osem, series_dir=osem.get("series_dir", "osem"))
            for n, item in enumerate(osem["reconstructions"]):
                slots.append(AcquisitionSlot(
                    f"osem.reconstructions.{n}.file",
                    f"OSEM reconstruction, {item['iterations']} iterations x {item['subsets']} subsets",
                    section["series_dir"], item["file"], True))
    if description.get("tew"):
        add("tew.file", "Projections in the three TEW windows", description["tew"], "file", "projections.dcm", False)
    if description.get("chang"):
        add("chang.nac_file", "Chang: photopeak reconstruction without attenuation correction",
            description["chang"], "nac_file", "nac.dcm", True)
        add("chang.lower_window_file", "Chang: lower scatter-window reconstruction", description["chang"],
            "lower_window_file", "lower_window.dcm", True)
    return slots


def _contrast(section):
    background = section.get("background_concentration_MBq_per_ml")
    if not background:
        return ""
    return f" ({float(section['sphere_concentration_MBq_per_ml']) / float(background):.0f}:1)"


def description_slots(description_path):
    """The phantom description read from ``description_path`` (a phantom.json) and its slots."""
    description_path = os.path.abspath(str(description_path))
    if os.path.basename(description_path) != PHANTOM_FILE:
        raise ValueError(f"Choose the phantom description file ({PHANTOM_FILE}); got '{description_path}'.")
    description = load_description(os.path.dirname(description_path))
    return description, acquisition_slots(description)


@contextlib.contextmanager
def staged_calibration_folder(description_path, files_by_slot):
    """A temporary calibration folder: the description with every slot's file under the name the
    description gives it; yields ``(folder, origins)`` with ``origins`` = {path in the folder, relative:
    original file}. The folder is removed afterwards; the original files are never changed.

    ``files_by_slot``: {slot key: path of the assigned DICOM file}. A slot not assigned is taken from the
    description's folder when its file is there; otherwise the error names the slots left to assign.
    """
    description, slots = description_slots(description_path)
    known = {slot.key for slot in slots}
    unknown = sorted(set(files_by_slot) - known)
    if unknown:
        raise ValueError(f"The phantom description asks for no acquisition {unknown}; it asks for {sorted(known)}.")
    own_folder = os.path.dirname(os.path.abspath(str(description_path)))
    sources, missing = {}, []
    for slot in slots:
        path = files_by_slot.get(slot.key)
        if not path:
            path = os.path.join(own_folder, slot.series_dir, slot.file_name)
            if not os.path.isfile(path):
                missing.append(slot.label)
                continue
        elif not os.path.isfile(path):
            raise ValueError(f"The file '{path}' assigned to '{slot.label}' does not exist.")
        sources[slot] = os.path.abspath(path)
    if missing:
        raise ValueError("Assign an acquisition to each of: " + "; ".join(missing) + ". Select the volume loaded "
                         f"from its DICOM series, or place its file where {PHANTOM_FILE} names it.")
    assigned = [os.path.realpath(path) for path in sources.values()]
    twice = sorted({path for path in assigned if assigned.count(path) > 1})
    if twice:
        raise ValueError(f"The same acquisition ('{twice[0]}') is assigned to more than one slot; each slot needs "
                         "its own acquisition.")

    staged = _with_file_names(description, slots)
    folder = tempfile.mkdtemp(prefix="mibg-calibration-")
    try:
        with open(os.path.join(folder, PHANTOM_FILE), "w") as stream:
            json.dump(staged, stream, indent=2)
        origins = {PHANTOM_FILE: os.path.abspath(str(description_path))}
        for slot, source in sources.items():
            relative = os.path.join(slot.series_dir, slot.file_name)
            target = os.path.join(folder, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _link_or_copy(source, target)
            origins[os.path.normpath(relative)] = source
        yield folder, origins
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _with_file_names(description, slots):
    """A copy of the description naming every slot's file explicitly."""
    staged = copy.deepcopy(description)
    for slot in slots:
        *path, last = slot.key.split(".")
        section = staged
        for part in path:
            section = section[int(part)] if isinstance(section, list) else section[part]
        section[last] = slot.file_name
    for name in ("deadtime", "osem"):
        if staged.get(name):
            staged[name].setdefault("series_dir", name)
    return staged


def _link_or_copy(source, target):
    try:
        os.symlink(source, target)
    except (OSError, NotImplementedError):
        shutil.copy2(source, target)


def with_original_inputs(provenance, origins):
    """The record's provenance with the staged files replaced by the files the user assigned (and the
    description by the user's own file, with its own checksum)."""
    from MIBGCalibrationLib.record import file_sha256

    entries = []
    for entry in provenance.get("inputs", []):
        source = origins.get(os.path.normpath(entry["path"]))
        entries.append({"path": source, "sha256": file_sha256(source)} if source else dict(entry))
    return dict(provenance, inputs=entries)
