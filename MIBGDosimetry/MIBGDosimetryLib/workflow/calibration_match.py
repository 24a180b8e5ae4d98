"""Does the study come from the camera set-up the calibration record was made with?

A calibration factor, recovery curve and dead time hold for one camera, collimator, set of energy
windows and reconstruction. Each time point's headers are compared with the record: differences
are warnings kept with the results, except a collimator of another energy class (a low- or
medium-energy collimator where the record's is high-energy, or any low-energy collimator for 131I),
which changes sensitivity and septal penetration so much that the study is refused. What the record
does not state is said too ("the calibration record does not state ..."), so that an old record is
not taken as a match. The OSEM update number is compared where the reconstruction labels
(ReconstructionMethod, ConvolutionKernel) state iterations and subsets, as in "OSEM 4i8s".
"""

#: Energy class of a collimator from the words vendors put in CollimatorGridName (and the record).
COLLIMATOR_CLASS_WORDS = (
    ("high", ("HE", "HIGH", "HEGP", "HEAP", "HEHR", "HEHS", "HEPB")),
    ("medium", ("ME", "MEDIUM", "MEGP", "MELP", "MEAP", "MEHR")),
    ("low", ("LE", "LOW", "LEHR", "LEAP", "LEGP", "LEUHR", "LEHS", "LPHR", "LEHRES")),
)
#: Energy window limits closer than this (keV) agree.
WINDOW_TOLERANCE_KEV = 1.0
#: Voxel sizes closer than this (relative) agree.
VOXEL_TOLERANCE = 0.01


class CalibrationMismatchError(ValueError):
    """The study was acquired with a set-up the calibration cannot describe."""


def collimator_class(name):
    """"high", "medium", "low" or None from a collimator name such as "HEGP", "LEHR" or "ME"."""
    if not name:
        return None
    upper = str(name).upper()
    tokens = upper.replace("-", " ").replace("_", " ").replace("/", " ").split()
    for energy, words in COLLIMATOR_CLASS_WORDS:
        if any(token in words for token in tokens):
            return energy
    for energy, words in COLLIMATOR_CLASS_WORDS:
        if upper.startswith((words[0], words[1])):
            return energy
    return None


def compare_with_record(timepoints, record):
    """``(warnings, refusal)``: what differs between the time points' set-up and the record's, and the
    reason for refusing the study (None when it can be computed)."""
    warnings, refusal = [], None
    record_camera = record.camera or {}
    record_collimator = record.collimator or record_camera.get("collimator")
    record_class = collimator_class(record_collimator)
    for keyword, key in (("Manufacturer", "manufacturer"), ("ManufacturerModelName", "model")):
        if not record_camera.get(key):
            warnings.append(f"the calibration record does not state the camera {key.replace('_', ' ')}; the camera "
                            f"of the study cannot be checked against it")
    if not record_collimator:
        warnings.append("the calibration record does not state the collimator; the collimator of the study cannot be "
                        "checked against it")
    if not record.energy_windows:
        warnings.append("the calibration record does not state the energy windows")
    grid = getattr(record, "image_grid", None)
    if not grid:
        warnings.append("the calibration record does not state the reconstruction matrix and voxel size")
    for tp in timepoints:
        label = tp.label
        camera = tp.metadata.get("camera") or {}
        for key in ("manufacturer", "model"):
            theirs, ours = camera.get(key), record_camera.get(key)
            if theirs and ours and str(theirs).strip().upper() != str(ours).strip().upper():
                warnings.append(f"{label}: camera {key} '{theirs}' differs from the calibration record's '{ours}'")
        collimator = tp.metadata.get("collimator") or {}
        name = collimator.get("name")
        study_class = collimator_class(name)
        if study_class == "low":
            refusal = refusal or (f"{label}: the SPECT was acquired with a low-energy collimator ('{name}'); 131I "
                                  f"(364 keV) needs a high-energy collimator, and no calibration corrects the septal "
                                  f"penetration")
        elif study_class and record_class and study_class != record_class:
            refusal = refusal or (f"{label}: the SPECT was acquired with a {study_class}-energy collimator ('{name}') "
                                  f"but the calibration with a {record_class}-energy one ('{record_collimator}'); "
                                  f"calibrate this camera with the collimator used for the patient")
        elif name and record_collimator and str(name).upper() != str(record_collimator).upper():
            warnings.append(f"{label}: collimator '{name}' differs from the calibration record's "
                            f"'{record_collimator}' (same energy class)")
        elif not name:
            warnings.append(f"{label}: the SPECT header does not name its collimator (CollimatorGridName)")
        warnings.extend(f"{label}: {w}" for w in _window_differences(tp.metadata.get("energy_windows") or [],
                                                                      record.energy_windows or []))
        if grid:
            warnings.extend(f"{label}: {w}" for w in _grid_differences(tp.spect, grid))
        warnings.extend(f"{label}: {w}" for w in _update_differences(tp.metadata.get("reconstruction") or {},
                                                                      record.reconstruction or {}))
        study_filter = (tp.metadata.get("reconstruction") or {}).get("filter")
        record_filter = getattr(record, "post_filter", None)
        if study_filter and record_filter and study_filter.strip().upper() != record_filter.strip().upper():
            warnings.append(f"{label}: post-filter '{study_filter}' (ConvolutionKernel) differs from the calibration "
                            f"record's '{record_filter}'")
    return list(dict.fromkeys(warnings)), refusal


def _update_differences(study_reconstruction, record_reconstruction):
    """OSEM updates differ: recovery, thresholds and the calibration factor of an OSEM image change with
    them. Only labels that state iterations and subsets can be compared (no DICOM attribute holds them)."""
    from MIBGCalibrationLib.osem import updates_from_label

    theirs = updates_from_label(study_reconstruction.get("method"), study_reconstruction.get("filter"))
    if theirs is None:
        return []
    ours = record_reconstruction.get("updates")
    if ours is None:
        ours = updates_from_label(record_reconstruction.get("description"))
    if ours is None:
        return [f"the calibration record does not state its OSEM updates; the study's {theirs} updates cannot be "
                "checked against it"]
    if int(ours) != theirs:
        return [f"reconstruction with {theirs} OSEM updates (iterations x subsets) differs from the calibration "
                f"record's {int(ours)}: recovery, threshold fractions and the calibration factor depend on it"]
    return []


def _window_differences(study_windows, record_windows):
    def ranges(windows):
        return [(float(w["lower_keV"]), float(w["upper_keV"])) for w in windows
                if w.get("lower_keV") is not None and w.get("upper_keV") is not None]

    ours, theirs = ranges(record_windows), ranges(study_windows)
    if not ours or not theirs:
        return []
    # A reconstruction lists the windows it was made from, often the photopeak alone, where the record
    # lists its scatter windows too: every window of the study must be one of the record's.
    foreign = [t for t in theirs if not any(abs(r[0] - t[0]) <= WINDOW_TOLERANCE_KEV
                                            and abs(r[1] - t[1]) <= WINDOW_TOLERANCE_KEV for r in ours)]
    if not foreign:
        return []
    shown = ", ".join(f"{a:g}-{b:g} keV" for a, b in theirs)
    wanted = ", ".join(f"{a:g}-{b:g} keV" for a, b in ours)
    return [f"energy windows ({shown}) differ from the calibration record's ({wanted})"]


def _grid_differences(spect, grid):
    notes = []
    matrix = grid.get("matrix_ij")
    if matrix and list(spect.array.shape[:0:-1]) != [int(v) for v in matrix]:
        notes.append(f"reconstruction matrix {list(spect.array.shape[:0:-1])} differs from the calibration record's "
                     f"{list(matrix)}")
    voxel = grid.get("voxel_size_mm")
    if voxel and any(abs(a / b - 1.0) > VOXEL_TOLERANCE for a, b in zip(spect.spacing_mm, voxel)):
        notes.append(f"voxel size {[round(v, 3) for v in spect.spacing_mm]} mm differs from the calibration record's "
                     f"{list(voxel)} mm: recovery and threshold calibrations depend on it")
    return notes
