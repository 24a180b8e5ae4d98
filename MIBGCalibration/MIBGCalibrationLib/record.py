"""The calibration record: everything the dosimetry needs from the phantom calibration.

The record is saved as JSON and held in the scene as a text node (``vtkMRMLTextNode``) whose text is
that JSON; the dosimetry module refers to the node by its ID. Every value carries its uncertainty;
``provenance`` lists the input files with their SHA-256 hashes. Reading rejects unknown or missing
fields and records of another format version.
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
        missing = sorted(set(known) - set(data) - set(OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(f"Unknown fields in the calibration record: {unknown}.")
        if missing:
            raise ValueError(f"Fields missing from the calibration record: {missing}.")
        if data["version"] != RECORD_VERSION:
            raise ValueError(f"Calibration record version {data['version']} cannot be read; this software reads "
                             f"version {RECORD_VERSION}. Recalibrate or use the matching software version.")
        values = dict(data)
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


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot write {type(value).__name__} to a calibration record.")
