"""Where the recovery curve of the calibration may correct a VOI's activity (EANM eq. 9).

The curve is measured on spheres of known volume in a uniform background (EANM eq. 5). Its value
for another object holds only when that object resembles the calibrated spheres:

- its volume lies within the calibrated insert volumes (a fitted saturating curve says nothing
  reliable beyond them: extrapolated to a 550 mL lung it gave +37 %), widened by
  :data:`VOLUME_MARGIN` on each side;
- it is compact like a sphere: at least :data:`MIN_SPHERE_FRACTION` of its volume lies inside the
  sphere of equal volume centred on its centroid (a sphere gives 1, an ellipsoid of axes 1.5 : 1 : 1
  0.84, a pair of organs such as lungs, kidneys or salivary glands much less; their spill-out
  differs from a sphere's of the same volume).

Other VOIs are not corrected by the curve; each says why in its warnings. The geometric transfer
matrix corrects any shape: the dose workflow uses it for them when the spatial resolution (FWHM) is
known, and otherwise leaves them uncorrected.
"""

import numpy as np

#: Relative widening of the calibrated volume range on each side.
VOLUME_MARGIN = 0.25
#: Least fraction of a VOI inside its equal-volume sphere for it to count as sphere-like.
MIN_SPHERE_FRACTION = 0.8


def calibrated_volume_range_ml(record):
    """(smallest, largest) insert volume (mL) of the record's recovery curve, or None when the record
    does not list its inserts."""
    volumes = [float(i["volume_ml"]) for i in (record.recovery_inserts or []) if i.get("volume_ml")]
    if not volumes:
        return None
    return min(volumes), max(volumes)


def sphere_fraction(mask, spacing_mm):
    """Fraction of the VOI's voxels within the sphere of the VOI's volume centred on its centroid."""
    points = np.argwhere(np.asarray(mask, dtype=bool)) * np.asarray(spacing_mm, dtype=float)[::-1]
    if not len(points):
        return 0.0
    radius = (3.0 * len(points) * float(np.prod(spacing_mm)) / (4.0 * np.pi)) ** (1.0 / 3.0)
    distance = np.linalg.norm(points - points.mean(axis=0), axis=1)
    return float(np.mean(distance <= radius))


def recovery_curve_refusal(mask, volume_ml, spacing_mm, volume_range_ml):
    """None when the recovery curve may correct this VOI, else the reason (a sentence) why not."""
    if volume_range_ml is None:
        return ("the calibration record does not list the volumes of its recovery inserts, so the curve's valid "
                "range is unknown")
    low, high = volume_range_ml[0] * (1.0 - VOLUME_MARGIN), volume_range_ml[1] * (1.0 + VOLUME_MARGIN)
    if not low <= volume_ml <= high:
        return (f"its volume ({volume_ml:.1f} mL) lies outside the calibrated sphere volumes "
                f"({volume_range_ml[0]:.1f}-{volume_range_ml[1]:.1f} mL)")
    fraction = sphere_fraction(mask, spacing_mm)
    if fraction < MIN_SPHERE_FRACTION:
        return (f"it is not sphere-like (only {fraction:.0%} of it lies within the sphere of its volume, "
                f"at least {MIN_SPHERE_FRACTION:.0%} needed)")
    return None


def refusal_warning(reason, gtm):
    """The warning of a VOI the recovery curve may not correct; ``gtm``: whether the GTM corrects it instead."""
    if gtm:
        return f"recovery curve not applied: {reason}; its activity is corrected by the GTM (calibrated FWHM) instead"
    return (f"recovery curve not applied: {reason}; its activity is not corrected for partial volume (underestimated "
            "where counts spill out, overestimated where neighbours spill in). Calibrate the spatial resolution (FWHM) "
            "to correct it by the GTM")
