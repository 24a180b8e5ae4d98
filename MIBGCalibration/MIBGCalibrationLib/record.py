"""The calibration record: everything the dosimetry needs from the phantom calibration.

The record is saved as JSON and held in the scene as a text node (``vtkMRMLTextNode``) whose text is
that JSON; the dosimetry module refers to the node by its ID. Every value carries its uncertainty;
``provenance`` lists the input files with their SHA-256 hashes. Reading rejects unknown or missing
fields and records of another format version. Fields added since version 1 (listed in
``FIELDS_ADDED``) take their default when a record lacks them, with a warning in the record.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import tempfile

import numpy as np

from MIBGCalibrationLib import __version__, deadtime
from MIBGCalibrationLib.recovery import RecoveryCurve
from MIBGCalibrationLib.threshold import ThresholdModel

#: Version of the record format; a reader refuses records of another version.
RECORD_VERSION = 1

#: Fields added to format version 1, with what a record without them means.
FIELDS_ADDED = {"dead_time_count_rate": "the dead time refers to the photopeak count rate of all detectors together"}

#: Node attribute marking a text node as a calibration record, and the attributes shown with it.
NODE_ATTRIBUTE = "MIBGCalibration.Record"
ATTRIBUTE_VERSION = "MIBGCalibration.RecordVersion"
ATTRIBUTE_Q = "MIBGCalibration.Q_cps_per_MBq"
ATTRIBUTE_DATE = "MIBGCalibration.Date"
#: Fields added after version 1 records were first written; older records read them as None.
OPTIONAL_FIELDS = ("image_grid", "post_filter")


def file_sha256(path):
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance_of(paths, root=None):
    """Provenance entries ``{"path", "sha256"}`` of input files, paths relative to ``root`` when given."""
    entries = []
    for path in sorted(str(p) for p in paths):
        shown = os.path.relpath(path, root) if root else path
        entries.append({"path": shown, "sha256": file_sha256(path)})
    return {"inputs": entries, "software": f"SlicerMIBGDosimetry {__version__}",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


@dataclasses.dataclass
class CalibrationRecord:
    """Quantitative 131I SPECT calibration of one camera, collimator, window set-up and reconstruction.

    Steps that were not calibrated hold ``None`` (for example no dead-time series): the dosimetry then
    reports that the correction is missing instead of guessing it. ``date`` is when the calibration
    phantom was acquired; ``provenance["created"]`` when the record was made.
    """

    calibration_factor_cps_per_MBq: float
    calibration_factor_cps_per_MBq_uncertainty: float
    recovery_curve: RecoveryCurve = None
    recovery_inserts: list = dataclasses.field(default_factory=list)
    resolution_fwhm_mm: float = None
    resolution_fwhm_mm_uncertainty: float = None
    dead_time_s: float = None
    dead_time_s_uncertainty: float = None
    #: The count rate the dead time refers to (:func:`deadtime.count_rate_definition`).
    dead_time_count_rate: dict = dataclasses.field(default_factory=deadtime.count_rate_definition)
    sensitivity_cps_per_MBq: float = None
    sensitivity_cps_per_MBq_uncertainty: float = None
    threshold_model: ThresholdModel = None
    camera: dict = dataclasses.field(default_factory=dict)
    collimator: str = ""
    energy_windows: list = dataclasses.field(default_factory=list)
    reconstruction: dict = dataclasses.field(default_factory=dict)
    scatter_correction: dict = None
    attenuation_correction: dict = None
    osem_updates: dict = None
    #: Reconstruction grid of the calibration images: {"matrix_ij": [columns, rows], "voxel_size_mm": [i, j, k]}.
    image_grid: dict = None
    #: Post-reconstruction filter (e.g. "Gaussian 8 mm"); None when none was used or it is not known.
    post_filter: str = None
    details: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)
    provenance: dict = dataclasses.field(default_factory=dict)
    date: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    radionuclide: str = "I-131"
    version: int = RECORD_VERSION

    def __post_init__(self):
        if not (np.isfinite(self.calibration_factor_cps_per_MBq) and self.calibration_factor_cps_per_MBq > 0):
            raise ValueError("The calibration factor must be a positive number, "
                             f"got {self.calibration_factor_cps_per_MBq}.")

    def recovery_coefficient(self, volume_ml):
        """(R, uncertainty of R) of a volume (mL) from the fitted recovery curve (EANM eq. 5)."""
        if self.recovery_curve is None:
            raise ValueError("This calibration record has no recovery curve; calibrate with the sphere phantom.")
        return self.recovery_curve.evaluate(volume_ml)

    def dead_time_factor(self, observed_cps):
        """Dead-time factor (EANM eq. 7) of an observed count rate (cps; number or array)."""
        if self.dead_time_s is None:
            raise ValueError("This calibration record has no dead time; calibrate with a dead-time series.")
        return deadtime.dead_time_factor(self.dead_time_s, observed_cps)

    # JSON
    def to_dict(self):
        data = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (RecoveryCurve, ThresholdModel)):
                value = value.to_dict()
            data[field.name] = value
        return data

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError("A calibration record must be a JSON object.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        missing = sorted(set(known) - set(data) - set(FIELDS_ADDED) - set(OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(f"Unknown fields in the calibration record: {unknown}.")
        if missing:
            raise ValueError(f"Fields missing from the calibration record: {missing}.")
        if data["version"] != RECORD_VERSION:
            raise ValueError(f"Calibration record version {data['version']} cannot be read; this software reads "
                             f"version {RECORD_VERSION}. Recalibrate or use the matching software version.")
        problems = record_problems(data)
        if problems:
            raise ValueError("The calibration record is not valid:\n" + "\n".join(f"- {p}" for p in problems)
                             + "\nRecalibrate, or correct the record from the calibration's own figures.")
        values = dict(data)
        for name, meaning in FIELDS_ADDED.items():
            if name not in values and values.get("dead_time_s") is not None:
                values["warnings"] = list(values["warnings"]) + [f"the record has no {name}: {meaning} is assumed"]
        if "dead_time_count_rate" in values:
            values["dead_time_count_rate"] = deadtime.check_count_rate_definition(values["dead_time_count_rate"])
        if values["recovery_curve"] is not None:
            values["recovery_curve"] = RecoveryCurve.from_dict(values["recovery_curve"])
        if values["threshold_model"] is not None:
            values["threshold_model"] = ThresholdModel.from_dict(values["threshold_model"])
        return cls(**values)

    def to_json(self, path):
        """Write the record as JSON, completely or not at all (temporary file renamed into place)."""
        text = json.dumps(self.to_dict(), indent=2, default=_json_default)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=".calibration-", suffix=".json", dir=folder)
        try:
            with os.fdopen(handle, "w") as stream:
                stream.write(text + "\n")
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        return path

    @classmethod
    def from_json(cls, path):
        if os.path.isdir(path):
            raise ValueError(f"The calibration record '{path}' is a folder; give the record's JSON file "
                             "(calibration.json from 'mibgdose calibrate').")
        if not os.path.isfile(path):
            raise ValueError(f"The calibration record '{path}' does not exist.")
        try:
            with open(path) as stream:
                data = json.load(stream)
        except json.JSONDecodeError as error:
            raise ValueError(f"'{path}' is not a calibration record (invalid JSON: {error}).") from error
        return cls.from_dict(data)

    # MRML
    def to_node(self, scene, name="Calibration record"):
        """Add a text node holding the record's JSON, with attributes that mark and summarise it."""
        node = scene.AddNewNodeByClass("vtkMRMLTextNode", name)
        node.SetText(json.dumps(self.to_dict(), default=_json_default))
        node.SetAttribute(NODE_ATTRIBUTE, "1")
        node.SetAttribute(ATTRIBUTE_VERSION, str(self.version))
        node.SetAttribute(ATTRIBUTE_Q, repr(float(self.calibration_factor_cps_per_MBq)))
        node.SetAttribute(ATTRIBUTE_DATE, self.date)
        return node

    @classmethod
    def from_node(cls, node):
        if node is None or not node.IsA("vtkMRMLTextNode") or node.GetAttribute(NODE_ATTRIBUTE) != "1":
            raise ValueError("The selected node is not a calibration record; choose the text node made by the "
                             "MIBG Calibration module.")
        try:
            data = json.loads(node.GetText())
        except json.JSONDecodeError as error:
            raise ValueError(f"The calibration record node '{node.GetName()}' does not hold valid JSON.") from error
        return cls.from_dict(data)


#: Plausible ranges (inclusive lower, exclusive upper) and units of the record's numbers; None means "may be
#: absent". FWHM: 131I SPECT with high-energy collimators resolves 8-25 mm (EANM guidance); the range is wide.
#: Dead time: paralysable tau of gamma cameras is of order microseconds.
NUMBER_RANGES = {
    "calibration_factor_cps_per_MBq": (0.0, 1e6, "cps/MBq", False),
    "calibration_factor_cps_per_MBq_uncertainty": (0.0, 1e6, "cps/MBq", False),
    "resolution_fwhm_mm": (1.0, 100.0, "mm", True),
    "resolution_fwhm_mm_uncertainty": (0.0, 100.0, "mm", True),
    "dead_time_s": (0.0, 1e-3, "s", True),
    "dead_time_s_uncertainty": (0.0, 1e-3, "s", True),
    "sensitivity_cps_per_MBq": (0.0, 1e6, "cps/MBq", True),
    "sensitivity_cps_per_MBq_uncertainty": (0.0, 1e6, "cps/MBq", True),
}
#: Relative difference above which Q disagrees with the count rate and activity it was measured from.
Q_CONSISTENCY = 0.02


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def record_problems(data):
    """Every problem of a record's fields (types, ranges, units, camera, internal consistency), one
    sentence each; an empty list for a valid record."""
    problems = []
    for name, (low, high, unit, optional) in NUMBER_RANGES.items():
        value = data.get(name)
        if value is None and optional:
            continue
        if not _is_number(value):
            problems.append(f"{name} must be a number in {unit}, got {value!r} ({type(value).__name__})")
        elif not (low <= value < high) or (name in ("calibration_factor_cps_per_MBq", "resolution_fwhm_mm",
                                                     "sensitivity_cps_per_MBq") and value <= low):
            problems.append(f"{name} = {value!r} {unit} is outside the plausible range [{low:g}, {high:g}) {unit}")
    q = data.get("calibration_factor_cps_per_MBq")
    q_u = data.get("calibration_factor_cps_per_MBq_uncertainty")
    if _is_number(q) and _is_number(q_u) and q > 0 and q_u >= q:
        problems.append(f"the uncertainty of Q ({q_u:g} cps/MBq) is not smaller than Q ({q:g} cps/MBq)")
    measured = (data.get("details") or {}).get("calibration_factor") if isinstance(data.get("details"), dict) else None
    if isinstance(measured, dict) and _is_number(q):
        rate, activity = measured.get("count_rate_cps"), measured.get("activity_in_voi_MBq")
        if _is_number(rate) and _is_number(activity) and activity > 0 and rate > 0:
            expected = rate / activity
            if abs(q / expected - 1.0) > Q_CONSISTENCY:
                problems.append(f"calibration_factor_cps_per_MBq = {q:g} cps/MBq disagrees with the count rate and "
                                f"activity it was measured from ({rate:g} cps / {activity:g} MBq = {expected:g} "
                                "cps/MBq); the record was altered")
    camera = data.get("camera")
    if not isinstance(camera, dict):
        problems.append(f"camera must be an object with the camera's manufacturer and model, got {camera!r}")
    else:
        for key, value in camera.items():
            if key == "crystal_mm":
                if not (_is_number(value) and 0 < value < 100):
                    problems.append(f"camera.crystal_mm = {value!r} must be a crystal thickness in mm (0-100)")
            elif not isinstance(value, str):
                problems.append(f"camera.{key} must be text, got {value!r}")
    if not isinstance(data.get("collimator"), str):
        problems.append(f"collimator must be text, got {data.get('collimator')!r}")
    if data.get("radionuclide") not in ("I-131", "131I"):
        problems.append(f"radionuclide is {data.get('radionuclide')!r}; this software calibrates 131I ('I-131')")
    problems.extend(_threshold_problems(data.get("threshold_model")))
    problems.extend(_recovery_problems(data.get("recovery_curve")))
    return problems


def _threshold_problems(model):
    if model is None:
        return []
    if not isinstance(model, dict):
        return [f"threshold_model must be an object, got {model!r}"]
    problems = []
    for key in ("min_fraction", "max_fraction"):
        value = model.get(key)
        if not (_is_number(value) and 0 < value < 1):
            problems.append(f"threshold_model.{key} = {value!r} must be a fraction of the maximum between 0 and 1")
    for key in ("a", "b", "c", "a_uncertainty", "b_uncertainty", "c_uncertainty"):
        if key in model and not _is_number(model[key]):
            problems.append(f"threshold_model.{key} must be a number, got {model[key]!r}")
    fractions = model.get("knot_fractions")
    if model.get("form") == "interpolated-contrast" and isinstance(fractions, (list, tuple)) \
            and all(isinstance(row, (list, tuple)) for row in fractions):
        fractions = [f for row in fractions for f in row]  # one row per concentration ratio
    if fractions is not None:
        if not isinstance(fractions, (list, tuple)) or not all(_is_number(f) for f in fractions):
            problems.append(f"threshold_model.knot_fractions must be a list of numbers, got {fractions!r}")
        elif any(not 0 < f < 1 for f in fractions):
            problems.append(f"threshold_model.knot_fractions {list(fractions)} must all lie between 0 and 1 "
                            "(fractions of the maximum)")
    volumes = model.get("knot_volumes_ml")
    if volumes is not None and (not isinstance(volumes, (list, tuple)) or not all(_is_number(v) and v > 0
                                                                                   for v in volumes)):
        problems.append(f"threshold_model.knot_volumes_ml must be positive volumes in mL, got {volumes!r}")
    if model.get("form", "inverse-volume") == "inverse-volume" and _is_number(model.get("a")) \
            and not 0 < model["a"] < 1:
        problems.append(f"threshold_model.a = {model['a']!r} must be a fraction of the maximum between 0 and 1")
    return problems


def _recovery_problems(curve):
    if curve is None:
        return []
    if not isinstance(curve, dict):
        return [f"recovery_curve must be an object, got {curve!r}"]
    problems = []
    for key, low, high in (("r_max", 0.0, 2.0), ("v0_ml", 0.0, 1e4), ("n", 0.0, 10.0)):
        value = curve.get(key)
        if not (_is_number(value) and low < value < high):
            problems.append(f"recovery_curve.{key} = {value!r} must be a number between {low:g} and {high:g}")
    return problems


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot write {type(value).__name__} to a calibration record.")
