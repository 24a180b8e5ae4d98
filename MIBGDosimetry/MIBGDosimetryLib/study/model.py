"""The sequential SPECT/CT study as the library sees it: time points with their images and facts."""

import dataclasses
import datetime
import os

import numpy as np


@dataclasses.dataclass
class TimePoint:
    """One imaging visit after administration.

    ``spect`` holds the reconstructed emission volume (units "counts" when the DICOM values are
    counts over the whole acquisition); ``ct`` the paired CT in HU (or None). ``metadata`` keeps
    camera, collimator, energy_windows, administered_activity_MBq, radionuclide, series and study
    UIDs, frame_of_reference_uid, files and the rescale applied.
    """

    label: str
    hours_after_administration: float
    acquisition_datetime: datetime.datetime
    duration_s: float
    spect: object
    ct: object = None
    observed_count_rate_cps: float = None
    metadata: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)
    projections: list = dataclasses.field(default_factory=list)

    @property
    def mid_acquisition_hours(self):
        """Hours after administration at the middle of the acquisition."""
        return self.hours_after_administration + self.duration_s / 7200.0


@dataclasses.dataclass
class Study:
    """Everything found in a study folder, with every assumption recorded in ``warnings``."""

    path: str
    timepoints: list
    administration_datetime: datetime.datetime = None
    administered_activity_MBq: float = None
    patient: dict = dataclasses.field(default_factory=dict)
    seed_points: dict = dataclasses.field(default_factory=dict)
    segmentation_files: list = dataclasses.field(default_factory=list)
    rt_dose_files: list = dataclasses.field(default_factory=list)
    unused_series: list = dataclasses.field(default_factory=list)
    unreadable_files: list = dataclasses.field(default_factory=list)
    ignored_files: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    def ct_paths(self, timepoint):
        """Absolute paths of a time point's CT files (empty without a CT)."""
        files = (timepoint.ct.metadata.get("files") or []) if timepoint.ct is not None else []
        return [f if os.path.isabs(f) else os.path.join(self.path, f) for f in files]

    @property
    def times_h(self):
        """Hours after administration of the time points (acquisition start), in order."""
        return np.array([tp.hours_after_administration for tp in self.timepoints])

    def identification(self):
        """Who and which administration the study is of, for the results and the report."""
        name, pid = (self.patient or {}).get("name"), (self.patient or {}).get("id")
        shown = " ".join(part for part in (name, f"({pid})" if pid else None) if part) or None
        return {"patient": shown, "patient_name": name, "patient_id": pid,
                "administration_datetime": _iso(self.administration_datetime),
                "administered_activity_MBq": self.administered_activity_MBq,
                "radiopharmaceutical": "131I-mIBG"}

    def summary(self):
        """A JSON-ready description: per time point hours, modalities, shapes, spacings and warnings."""
        return {
            "path": self.path,
            "patient": self.patient,
            "administration_datetime": _iso(self.administration_datetime),
            "administered_activity_MBq": self.administered_activity_MBq,
            "timepoints": [_timepoint_summary(tp) for tp in self.timepoints],
            "seed_points_ras_mm": {name: [float(v) for v in p] for name, p in self.seed_points.items()},
            "segmentation_files": list(self.segmentation_files),
            "rt_dose_files": list(self.rt_dose_files),
            "unused_series": list(self.unused_series),
            "unreadable_files": [{"file": f, "reason": r} for f, r in self.unreadable_files],
            "ignored_files": list(self.ignored_files),
            "warnings": list(self.warnings),
        }


def volume_summary(volume):
    """Shape ([k, j, i]), spacing (along i, j, k), origin and units of an ImageVolume."""
    return {"shape_kji": [int(n) for n in volume.array.shape],
            "spacing_mm": [float(s) for s in volume.spacing_mm],
            "origin_ras_mm": [float(o) for o in volume.origin_ras_mm],
            "units": volume.units,
            "series_instance_uid": volume.metadata.get("series_instance_uid")}


def _timepoint_summary(tp):
    modalities = ["SPECT"] + (["CT"] if tp.ct is not None else [])
    return {
        "label": tp.label,
        "hours_after_administration": tp.hours_after_administration,
        "acquisition_datetime": _iso(tp.acquisition_datetime),
        "duration_s": tp.duration_s,
        "observed_count_rate_cps": tp.observed_count_rate_cps,
        "administered_activity_MBq": tp.metadata.get("administered_activity_MBq"),
        "modalities": modalities,
        "spect": volume_summary(tp.spect),
        "ct": None if tp.ct is None else volume_summary(tp.ct),
        "camera": tp.metadata.get("camera"),
        "collimator": tp.metadata.get("collimator"),
        "energy_windows": tp.metadata.get("energy_windows"),
        "units_path": tp.metadata.get("units_path"),
        "projections": [{k: v for k, v in p.items() if k != "headers"} for p in tp.projections],
        "warnings": list(tp.warnings),
    }


def _iso(value):
    return None if value is None else value.isoformat()
