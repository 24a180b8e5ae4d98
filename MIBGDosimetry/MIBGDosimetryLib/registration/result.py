"""The result of registering one time point to the reference."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class RegistrationResult:
    """Transform from the reference frame to a time point's frame, with its quality figures.

    ``matrix_ras`` (4x4, RAS, mm) maps reference-frame points to the moving time point's frame: the
    moving image resampled at ``matrix_ras @ x`` lies on the reference grid. For a deformable
    registration ``matrix_ras`` is its rigid part and ``transform`` the full SimpleITK transform
    (LPS, reference -> moving) to resample with.
    """

    matrix_ras: np.ndarray
    kind: str = "rigid"
    modality: str = "CT"
    metric_value: float = float("nan")
    metric_before: float = float("nan")
    iterations: int = 0
    stop_condition: str = ""
    elapsed_s: float = 0.0
    quality: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)
    transform: object = None

    @property
    def resampling_transform(self):
        """What to resample the moving images with: the full transform, or the matrix."""
        return self.transform if self.transform is not None else self.matrix_ras

    def to_dict(self):
        """JSON-ready summary (the deformable field itself is not included)."""
        return {"kind": self.kind, "modality": self.modality,
                "matrix_ras": np.asarray(self.matrix_ras).tolist(),
                "metric_value": float(self.metric_value), "metric_before": float(self.metric_before),
                "iterations": int(self.iterations), "stop_condition": self.stop_condition,
                "elapsed_s": float(self.elapsed_s), "quality": dict(self.quality),
                "warnings": list(self.warnings)}
