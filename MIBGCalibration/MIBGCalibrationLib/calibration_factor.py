"""Camera calibration factor Q from a uniform cylinder (EANM eq. 4).

The Jaszczak cylinder is found in the reconstruction (or on its CT), a cylindrical VOI of 75 % of
the physical diameter and height is centred on it and

    Q = C_VOI / A_VOI                                                    (EANM eq. 4)

with C_VOI the count rate in the VOI (cps) and A_VOI the decay-corrected activity concentration
times the VOI volume (MBq). Several small VOIs inside the large one test that Q does not depend on
where it is measured (uniformity, partial volume, noise).
"""

import dataclasses

import numpy as np

from MIBGCalibrationLib import voi

#: Fraction of the physical phantom size covered by the calibration VOI (EANM guidance, eq. 4 text).
VOI_FRACTION = 0.75

#: Fraction of the robust maximum that separates the filled cylinder from the outside.
SPECT_THRESHOLD_FRACTION = 0.5

#: CT number (HU) above which a voxel belongs to the water-filled cylinder (air is -1000 HU).
CT_THRESHOLD_HU = -500.0

#: Largest accepted relative difference between Q of a sub-VOI and Q of the whole VOI.
UNIFORMITY_TOLERANCE = 0.05


@dataclasses.dataclass
class CylinderFit:
    """Where the cylinder was found and its measured size."""

    centre_ras_mm: np.ndarray
    measured_diameter_mm: float
    measured_height_mm: float
    source: str


@dataclasses.dataclass
class CalibrationFactorResult:
    """Q with its uncertainty budget, the VOI used and the uniformity check."""

    q_cps_per_MBq: float
    q_uncertainty_cps_per_MBq: float
    uncertainty_components: dict
    count_rate_cps: float
    activity_in_voi_MBq: float
    voi_volume_ml: float
    concentration_at_scan_MBq_per_ml: float
    cylinder: CylinderFit
    sub_voi_q_cps_per_MBq: list
    sub_voi_max_relative_difference: float
    warnings: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {"Q_cps_per_MBq": self.q_cps_per_MBq, "Q_uncertainty_cps_per_MBq": self.q_uncertainty_cps_per_MBq,
                "uncertainty_components_cps_per_MBq": dict(self.uncertainty_components),
                "count_rate_cps": self.count_rate_cps, "activity_in_voi_MBq": self.activity_in_voi_MBq,
                "voi_volume_ml": self.voi_volume_ml,
                "concentration_at_scan_MBq_per_ml": self.concentration_at_scan_MBq_per_ml,
                "cylinder_centre_ras_mm": [float(c) for c in self.cylinder.centre_ras_mm],
                "cylinder_measured_diameter_mm": self.cylinder.measured_diameter_mm,
                "cylinder_measured_height_mm": self.cylinder.measured_height_mm,
                "cylinder_found_on": self.cylinder.source,
                "sub_voi_Q_cps_per_MBq": [float(q) for q in self.sub_voi_q_cps_per_MBq],
                "sub_voi_max_relative_difference": self.sub_voi_max_relative_difference,
                "warnings": list(self.warnings)}


def _measure(volume, mask, source):
    centre = voi.centroid_ras(volume, mask)
    slices = np.nonzero(mask.any(axis=(1, 2)))[0]
    height_mm = (slices.max() - slices.min() + 1) * volume.spacing_mm[2]
    middle = mask[slices[len(slices) // 2]]
    diameter_mm = 2.0 * np.sqrt(middle.sum() * volume.spacing_mm[0] * volume.spacing_mm[1] / np.pi)
    return CylinderFit(centre, float(diameter_mm), float(height_mm), source)


def find_cylinder(spect, expected_volume_ml, ct=None):
    """Locate the filled cylinder: on the CT when given, else on the SPECT (threshold + largest object).

    Raises ValueError when nothing of at least a fifth of the expected volume is found.
    """
    if ct is not None:
        mask, source, image = voi.largest_component(np.asarray(ct.array) > CT_THRESHOLD_HU), "CT", ct
    else:
        mask, source, image = voi.body_mask(spect.array, SPECT_THRESHOLD_FRACTION), "SPECT", spect
    found_ml = float(mask.sum()) * image.voxel_volume_ml
    if found_ml < 0.2 * expected_volume_ml:
        raise ValueError(
            f"No filled cylinder was found in the {source} image (largest object {found_ml:.0f} mL, expected about "
            f"{expected_volume_ml:.0f} mL). Check that the series is the uniform-cylinder acquisition and that it "
            "contains counts.")
    return _measure(image, mask, source)


def _sub_voi_centres(centre, radius_mm, half_height_mm, axes):
    """Centre and six points half-way to the VOI surface along the image axes."""
    shifts = [np.zeros(3)]
    for axis, reach in ((axes[:, 0], radius_mm), (axes[:, 1], radius_mm), (axes[:, 2], half_height_mm)):
        for sign in (-1.0, 1.0):
            shifts.append(sign * 0.5 * reach * axis)
    return [centre + s for s in shifts]


def calibration_factor(spect, duration_s, activity_at_scan_MBq, phantom_volume_ml, inner_diameter_mm,
                       inner_height_mm, ct=None, activity_uncertainty_MBq=0.0,
                       uniformity_tolerance=UNIFORMITY_TOLERANCE, dead_time_factor=1.0):
    """Q (cps/MBq) of a reconstruction of a uniform cylinder (EANM eq. 4).

    ``spect`` holds counts over the whole acquisition of ``duration_s`` seconds; ``activity_at_scan_MBq``
    is the phantom activity decay-corrected to the acquisition, uniformly filling ``phantom_volume_ml``.
    ``dead_time_factor`` (EANM eq. 7) restores counts lost to dead time, so that Q is the loss-free
    factor that EANM eq. 9 combines with the dead-time factor of each patient scan.
    The uncertainty combines counting statistics in the VOI, the spread of Q between the sub-VOIs
    (standard error of their mean) and the activity-meter uncertainty, in quadrature.
    """
    if duration_s <= 0:
        raise ValueError(f"The acquisition duration must be positive, got {duration_s} s.")
    if activity_at_scan_MBq <= 0 or phantom_volume_ml <= 0:
        raise ValueError("The phantom activity and volume must be positive.")
    cylinder = find_cylinder(spect, phantom_volume_ml, ct)
    warnings = []
    if abs(cylinder.measured_diameter_mm - inner_diameter_mm) > 0.15 * inner_diameter_mm:
        warnings.append(f"The cylinder found on the {cylinder.source} is {cylinder.measured_diameter_mm:.0f} mm wide, "
                        f"the recorded inner diameter is {inner_diameter_mm:.0f} mm.")
    radius_mm = 0.5 * VOI_FRACTION * inner_diameter_mm
    half_height_mm = 0.5 * VOI_FRACTION * inner_height_mm
    mask = voi.cylinder_mask(spect, cylinder.centre_ras_mm, radius_mm, half_height_mm)
    if not mask.any():
        raise ValueError("The calibration VOI lies outside the reconstructed image.")
    counts = np.asarray(spect.array, dtype=float)
    concentration = activity_at_scan_MBq / phantom_volume_ml
    voi_ml = float(mask.sum()) * spect.voxel_volume_ml
    rate_cps = float(counts[mask].sum()) / duration_s * dead_time_factor
    activity_voi = concentration * voi_ml
    q = rate_cps / activity_voi
    if q <= 0:
        raise ValueError("The calibration VOI holds no counts; check the uniform-cylinder series.")

    sub_radius_mm = max(0.25 * radius_mm, 2.0 * max(spect.spacing_mm))
    sub_q = []
    axes = spect.directions / np.linalg.norm(spect.directions, axis=0)
    for centre in _sub_voi_centres(cylinder.centre_ras_mm, radius_mm - sub_radius_mm,
                                   half_height_mm - sub_radius_mm, axes):
        weights = voi.sphere_weights(spect, centre, sub_radius_mm)
        sub_ml = weights.sum() * spect.voxel_volume_ml
        sub_q.append(float((counts * weights).sum()) * dead_time_factor / duration_s / (concentration * sub_ml))
    sub_q = np.array(sub_q)
    spread = float(np.max(np.abs(sub_q - q)) / q)
    if spread > uniformity_tolerance:
        warnings.append(f"Q differs by up to {100 * spread:.1f} % between small VOIs inside the calibration VOI "
                        f"(tolerance {100 * uniformity_tolerance:.0f} %): the image is not uniform enough or too "
                        "noisy.")
    total_counts = float(counts[mask].sum())
    components = {"counting": q / np.sqrt(total_counts),
                  "uniformity": float(np.std(sub_q, ddof=1) / np.sqrt(sub_q.size)),
                  "activity": q * float(activity_uncertainty_MBq) / activity_at_scan_MBq}
    uncertainty = float(np.sqrt(sum(v ** 2 for v in components.values())))
    return CalibrationFactorResult(q, uncertainty, components, rate_cps, activity_voi, voi_ml, concentration,
                                   cylinder, list(sub_q), spread, warnings)
