"""The adaptive-threshold model used to delineate lesions on SPECT.

A voxel belongs to the lesion when its value exceeds

    background + fraction(V, C) * (maximum - background),

where ``fraction`` depends on the lesion volume ``V`` (mL). Two forms are known:

- ``"inverse-volume"``: ``a + b / V + c / C`` with ``C`` the lesion-to-background ratio (the contrast
  term is optional), falling with the volume as small lesions lose more of their peak to
  partial-volume blurring;
- ``"interpolated"``: the fractions measured on sphere inserts (``knot_volumes_ml``,
  ``knot_fractions``), joined by straight lines in ln V. Measured with sub-voxel volumes, the
  fraction first falls with the volume and then rises again towards 1/2 (the edge of a large blurred
  sphere lies at half its plateau), with a curvature that neither ``a + b / V`` nor a quadratic in
  ln V follows to the 0.01 that a 4 mL lesion needs for a volume within 10 % (the delineation's
  self-consistency multiplies a fraction error by about 12 in the volume at 4-8 mL); the
  interpolation passes through every measurement without overshoot;
- ``"interpolated-contrast"``: the same inserts imaged at several concentration ratios, one row of
  ``knot_fractions`` per ratio, with the image contrast (fitted maximum over background) each insert
  showed in ``knot_contrasts``. At a volume, each row gives a fraction and an image contrast
  (interpolated in ln V), and the fraction is interpolated between rows linearly in 1 / contrast
  (held at the end rows outside them). On OSEM images with resolution modelling the fraction falls
  with the contrast (the edge overshoot grows with it): measured on the realistic phantoms' 4 mL
  insert, 0.47 at image contrast 5 and 0.32 at 31, so fractions calibrated at one contrast do not
  transfer to hot bone lesions.

The coefficients or knots are calibrated on sphere inserts of known volume (see the MIBGCalibration
module). With ``volume_range_ml`` (for the interpolated form: the smallest and largest insert) the
volume is held inside that range before the model is evaluated, so that it is never extrapolated.
"""

import dataclasses
import math

import numpy as np

#: The known forms of the model.
FORMS = ("inverse-volume", "interpolated", "interpolated-contrast")


@dataclasses.dataclass(frozen=True)
class ThresholdModel:
    """fraction(V, C) = a + b / V + c / C, or interpolated between calibrated inserts; clipped to
    [min_fraction, max_fraction]."""

    a: float
    b: float = 0.0
    c: float = 0.0
    min_fraction: float = 0.05
    max_fraction: float = 0.95
    a_uncertainty: float = 0.0
    b_uncertainty: float = 0.0
    c_uncertainty: float = 0.0
    form: str = "inverse-volume"
    knot_volumes_ml: tuple = None
    knot_fractions: tuple = None
    volume_range_ml: tuple = None
    #: Image contrast of each knot, one row per concentration ratio ("interpolated-contrast" form).
    knot_contrasts: tuple = None

    def __post_init__(self):
        if self.form not in FORMS:
            raise ValueError(f"Unknown threshold-model form '{self.form}'; expected one of {list(FORMS)}.")
        if self.form == "interpolated-contrast":
            volumes = np.asarray(self.knot_volumes_ml if self.knot_volumes_ml is not None else [], dtype=float)
            fractions = np.asarray(self.knot_fractions if self.knot_fractions is not None else [], dtype=float)
            contrasts = np.asarray(self.knot_contrasts if self.knot_contrasts is not None else [], dtype=float)
            if volumes.ndim != 1 or volumes.size < 2 or np.any(np.diff(volumes) <= 0) or volumes[0] <= 0 \
                    or fractions.ndim != 2 or fractions.shape[0] < 2 or fractions.shape[1] != volumes.size \
                    or contrasts.shape != fractions.shape or np.any(contrasts <= 1):
                raise ValueError("A contrast-interpolated threshold model needs at least two increasing positive "
                                 "insert volumes (mL) and, for at least two concentration ratios, one fraction and "
                                 "one image contrast above 1 per volume.")
            object.__setattr__(self, "knot_volumes_ml", tuple(float(v) for v in volumes))
            object.__setattr__(self, "knot_fractions", tuple(tuple(float(f) for f in row) for row in fractions))
            object.__setattr__(self, "knot_contrasts", tuple(tuple(float(c) for c in row) for row in contrasts))
            object.__setattr__(self, "volume_range_ml", (float(volumes[0]), float(volumes[-1])))
        if self.form == "interpolated":
            volumes = np.asarray(self.knot_volumes_ml if self.knot_volumes_ml is not None else [], dtype=float)
            fractions = np.asarray(self.knot_fractions if self.knot_fractions is not None else [], dtype=float)
            if volumes.size < 2 or volumes.shape != fractions.shape or np.any(np.diff(volumes) <= 0) \
                    or volumes[0] <= 0:
                raise ValueError("An interpolated threshold model needs at least two increasing positive insert "
                                 "volumes (mL) and one fraction per volume.")
            object.__setattr__(self, "knot_volumes_ml", tuple(float(v) for v in volumes))
            object.__setattr__(self, "knot_fractions", tuple(float(f) for f in fractions))
            object.__setattr__(self, "volume_range_ml", (float(volumes[0]), float(volumes[-1])))
        if self.volume_range_ml is not None:
            low, high = (float(v) for v in self.volume_range_ml)
            if not 0 < low < high:
                raise ValueError(f"The calibrated volume range must be two increasing positive volumes (mL), "
                                 f"got {list(self.volume_range_ml)}.")
            object.__setattr__(self, "volume_range_ml", (low, high))

    def covers(self, volume_ml):
        """Whether ``volume_ml`` lies inside the calibrated volume range (always, without a range)."""
        if self.volume_range_ml is None:
            return True
        return self.volume_range_ml[0] <= volume_ml <= self.volume_range_ml[1]

    def fraction(self, volume_ml, contrast=None):
        """Threshold as a fraction of (maximum - background) above background."""
        if volume_ml <= 0:
            raise ValueError(f"The lesion volume must be positive to choose a threshold, got {volume_ml} mL.")
        if self.volume_range_ml is not None:
            volume_ml = min(self.volume_range_ml[1], max(self.volume_range_ml[0], volume_ml))
        if self.form == "inverse-volume":
            value = self.a + self.b / volume_ml
        elif self.form == "interpolated-contrast":
            return self._fraction_between_contrasts(volume_ml, contrast)
        else:
            value = float(np.interp(math.log(volume_ml), np.log(self.knot_volumes_ml), self.knot_fractions))
        if contrast is not None and self.c:
            if contrast <= 1:
                raise ValueError(f"The lesion-to-background contrast must exceed 1, got {contrast}.")
            value += self.c / contrast
        return min(self.max_fraction, max(self.min_fraction, value))

    def _fraction_between_contrasts(self, volume_ml, contrast):
        if contrast is not None and contrast <= 1:
            raise ValueError(f"The contrast-interpolated threshold model needs the lesion's image contrast above 1, "
                             f"got {contrast}.")
        log_knots = np.log(self.knot_volumes_ml)
        log_volume = math.log(volume_ml)
        fractions = [float(np.interp(log_volume, log_knots, row)) for row in self.knot_fractions]
        inverse_contrasts = [1.0 / float(np.interp(log_volume, log_knots, row)) for row in self.knot_contrasts]
        order = np.argsort(inverse_contrasts)
        # Without a contrast (no background around the lesion) it is infinite: the highest calibrated one holds.
        inverse = 0.0 if contrast is None else 1.0 / contrast
        value = float(np.interp(inverse, np.asarray(inverse_contrasts)[order], np.asarray(fractions)[order]))
        return min(self.max_fraction, max(self.min_fraction, value))

    def lowest_row_contrast(self, volume_ml):
        """Image contrast at ``volume_ml`` (held inside the calibrated range) of the inserts at the lowest
        calibrated concentration ratio (the row of lowest image contrasts); None without contrast rows."""
        if self.form != "interpolated-contrast":
            return None
        volume_ml = min(self.volume_range_ml[1], max(self.volume_range_ml[0], float(volume_ml)))
        row = self.knot_contrasts[self._lowest_row()]
        return float(np.interp(math.log(volume_ml), np.log(self.knot_volumes_ml), row))

    def sphere_volume_at_lowest_row(self, contrast):
        """The volume (mL) of a calibrated sphere at the lowest concentration ratio whose image has
        ``contrast``, on the part of that row where the image contrast rises with the volume (from the
        smallest insert to the one of highest contrast; held at its ends); None without contrast rows."""
        if self.form != "interpolated-contrast":
            return None
        row = np.asarray(self.knot_contrasts[self._lowest_row()])
        top = int(np.argmax(row)) + 1
        rising, volumes = np.maximum.accumulate(row[:top]), np.log(self.knot_volumes_ml[:top])
        if top < 2 or np.any(np.diff(rising) <= 0):
            return float(self.knot_volumes_ml[0]) if contrast <= row[0] else float(self.knot_volumes_ml[top - 1])
        return float(math.exp(np.interp(float(contrast), rising, volumes)))

    def _lowest_row(self):
        return int(np.argmin([np.mean(row) for row in self.knot_contrasts]))

    def describe(self):
        """The model in one line, for the user."""
        if self.form == "inverse-volume":
            text = f"fraction = {self.a:.3f} + {self.b:.3f} / V[mL]"
            return text + (f" + {self.c:.3f} / contrast" if self.c else "")
        if self.form == "interpolated-contrast":
            rows = "; ".join(", ".join(f"{v:.3g} mL: {f:.3f} (contrast {c:.1f})"
                                       for v, f, c in zip(self.knot_volumes_ml, fractions, contrasts))
                             for fractions, contrasts in zip(self.knot_fractions, self.knot_contrasts))
            return f"fraction interpolated between inserts and contrasts ({rows})"
        knots = ", ".join(f"{v:.3g} mL: {f:.3f}" for v, f in zip(self.knot_volumes_ml, self.knot_fractions))
        return f"fraction interpolated between inserts ({knots})"

    def to_dict(self):
        data = dataclasses.asdict(self)
        for key in ("knot_volumes_ml", "knot_fractions", "volume_range_ml", "knot_contrasts"):
            if data[key] is not None:
                data[key] = [list(v) if isinstance(v, tuple) else v for v in data[key]]
        return data

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown threshold-model fields {sorted(unknown)}; expected {sorted(known)}.")
        return cls(**data)
