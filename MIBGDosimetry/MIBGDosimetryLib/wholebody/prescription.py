"""Activity of a further administration that gives a prescribed whole-body absorbed dose.

The absorbed dose per unit activity of the first administration, ``D_1 / A_1``, is taken to hold for
the next one (same kinetics; Buckley SE et al., J Nucl Med 50 (2009) 1518-1524; Gaze MN et al., Cancer
Biother Radiopharm 20 (2005) 195-199, who prescribe a total whole-body dose over two administrations):

- without subtraction: ``A_2 = D_target / (D_1 / A_1)``;
- with the dose already delivered subtracted (``D_target`` is the total over both administrations):
  ``A_2 = (D_target - D_1) / (D_1 / A_1) = A_1 (D_target / D_1 - 1)``.

Uncertainty (first order, GUM JCGM 100:2008 5.1.2) from that of ``D_1`` alone (the activities are
taken as exact): ``u(A_2) = A_2 u(D_1) / D_1`` without subtraction and ``A_1 D_target u(D_1) / D_1^2``
with it (``D_1`` enters numerator and denominator, fully correlated).
"""

import numpy as np


def activity_for_target(target_Gy, first_dose_Gy, first_dose_uncertainty_Gy, first_activity_MBq,
                        subtract_delivered=False):
    """Activity (MBq) of the next administration for ``target_Gy``; returns a dict with
    ``activity_MBq``, ``activity_uncertainty_MBq``, ``dose_per_activity_Gy_per_MBq`` and ``formula``."""
    for name, value in (("target dose", target_Gy), ("first whole-body dose", first_dose_Gy),
                        ("first administered activity", first_activity_MBq)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"The {name} must be a positive number; got {value}.")
    u = float(first_dose_uncertainty_Gy) if first_dose_uncertainty_Gy is not None else float("nan")
    per_MBq = first_dose_Gy / first_activity_MBq
    if subtract_delivered:
        if target_Gy <= first_dose_Gy:
            raise ValueError(f"The first administration already gave {first_dose_Gy:.3g} Gy, not below the target of "
                             f"{target_Gy:g} Gy: no further activity is needed for this target.")
        activity = (target_Gy - first_dose_Gy) / per_MBq
        uncertainty = first_activity_MBq * target_Gy * u / first_dose_Gy ** 2
        formula = "A2 = (D_target - D1) / (D1 / A1)"
    else:
        activity = target_Gy / per_MBq
        uncertainty = activity * u / first_dose_Gy
        formula = "A2 = D_target / (D1 / A1)"
    return {"activity_MBq": float(activity),
            "activity_uncertainty_MBq": float(uncertainty) if np.isfinite(uncertainty) else None,
            "dose_per_activity_Gy_per_MBq": float(per_MBq), "target_Gy": float(target_Gy),
            "subtract_delivered": bool(subtract_delivered), "formula": formula}
