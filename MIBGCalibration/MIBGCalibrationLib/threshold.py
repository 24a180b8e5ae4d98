"""The adaptive-threshold model used to delineate lesions on SPECT.

A voxel belongs to the lesion when its value exceeds

    background + fraction(V) * (maximum - background),

where ``fraction(V) = a + b / V`` falls with the lesion volume ``V`` (mL): small lesions lose more
of their peak to partial-volume blurring and need a lower relative threshold. The coefficients are
calibrated on sphere inserts of known volume (see the MIBGCalibration module); ``contrast`` terms
enter through ``c`` (fraction(V, C) = a + b / V + c / C with C the lesion-to-background ratio).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ThresholdModel:
    """fraction(V, C) = a + b / V_ml + c / C, clipped to [min_fraction, max_fraction]."""

    a: float
    b: float = 0.0
    c: float = 0.0
    min_fraction: float = 0.05
    max_fraction: float = 0.95
    a_uncertainty: float = 0.0
    b_uncertainty: float = 0.0
    c_uncertainty: float = 0.0

    def fraction(self, volume_ml, contrast=None):
        """Threshold as a fraction of (maximum - background) above background."""
        if volume_ml <= 0:
            raise ValueError(f"The lesion volume must be positive to choose a threshold, got {volume_ml} mL.")
        value = self.a + self.b / volume_ml
        if contrast is not None and self.c:
            if contrast <= 1:
                raise ValueError(f"The lesion-to-background contrast must exceed 1, got {contrast}.")
            value += self.c / contrast
        return min(self.max_fraction, max(self.min_fraction, value))

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown threshold-model fields {sorted(unknown)}; expected {sorted(known)}.")
        return cls(**data)
