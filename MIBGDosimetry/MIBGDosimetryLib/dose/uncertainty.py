"""First-order propagation of uncertainty to the time-integrated activity and the mean absorbed dose.

Activity from counts (EANM eq. 9): ``A_v(t) = C_v(t) / (Q R(v)) x DTF``. The calibration factor Q and
the recovery coefficient R are the same for every time point of a VOI, so they scale the whole
curve and its integral (their errors do not average out over the scans):
``TIA = TIA_fit / (Q R)`` relative to the nominal values. The dead-time factor is treated the same
way (fully correlated between scans), which overstates its share when it differs between scans.
The mean self-dose of a VOI is ``D = TIA x S`` with S inversely proportional to the mass, and the mass
is proportional to the VOI volume, so ``D`` is proportional to ``TIA / V`` (times the S value's own
relative error, if given).

For a product ``y = prod x_i^e_i`` of independent quantities the first-order (linearised) relative
standard uncertainty is ``u(y)/y = sqrt(sum (e_i u(x_i)/x_i)^2)``: relative uncertainties add in
quadrature with their exponents as sensitivities (GUM, JCGM 100:2008, section 5.1.6). The
time-activity curve contributes three terms from :func:`MIBGDosimetryLib.tac.fit_tac`
(``TacFit.uncertainty_terms_MBq_h``): the fit itself, the extrapolation before the first scan (the
assumed uptake) and the extrapolation after the last scan.
"""

import numpy as np

TIA_SENSITIVITIES = {"fit": 1.0, "before_first_scan": 1.0, "after_last_scan": 1.0, "calibration": -1.0,
                     "recovery": -1.0, "dead_time": 1.0}
#: The time-activity curve's terms, in the order of TacFit.uncertainty_terms_MBq_h.
TAC_TERMS = ("fit", "before_first_scan", "after_last_scan")
DOSE_SENSITIVITIES = {"tia": 1.0, "volume": -1.0, "s_value": 1.0}


def combined_relative_uncertainty(relative_uncertainties, sensitivities):
    """``sqrt(sum (e_i u_i)^2)`` over the named relative uncertainties ``u_i`` with exponents ``e_i``."""
    total = 0.0
    for name, u in relative_uncertainties.items():
        if name not in sensitivities:
            raise ValueError(f"Unknown uncertainty component '{name}'; expected one of {', '.join(sensitivities)}.")
        if not np.isfinite(u) or u < 0:
            raise ValueError(f"The relative uncertainty '{name}' must be a non-negative number, got {u}.")
        total += (sensitivities[name] * u) ** 2
    return float(np.sqrt(total))


def tia_uncertainty(tia_MBq_h, fit_uncertainty_MBq_h, calibration_relative, recovery_relative,
                    dead_time_relative=0.0):
    """Standard uncertainty of a VOI's TIA (MBq h) from the time-activity curve, calibration factor Q,
    recovery R and dead time.

    ``fit_uncertainty_MBq_h`` is either one number (the curve's whole uncertainty, reported as
    ``fit``) or a dict of the curve's terms (``fit``, ``before_first_scan``, ``after_last_scan``, MBq h),
    each reported as its own component. Returns a dict with ``tia_uncertainty_MBq_h``, ``relative``
    and the relative ``components``.
    """
    if tia_MBq_h <= 0:
        raise ValueError("The time-integrated activity must be positive to express relative uncertainties.")
    terms = fit_uncertainty_MBq_h if isinstance(fit_uncertainty_MBq_h, dict) else {"fit": fit_uncertainty_MBq_h}
    unknown = set(terms) - set(TAC_TERMS)
    if unknown:
        raise ValueError(f"Unknown time-activity uncertainty term(s) {', '.join(sorted(unknown))}; expected "
                         f"{', '.join(TAC_TERMS)}.")
    components = {name: terms[name] / tia_MBq_h for name in TAC_TERMS if name in terms}
    components.update({"calibration": calibration_relative, "recovery": recovery_relative,
                       "dead_time": dead_time_relative})
    relative = combined_relative_uncertainty(components, TIA_SENSITIVITIES)
    return {"tia_uncertainty_MBq_h": relative * tia_MBq_h, "relative": relative, "components": components}


def dose_uncertainty(dose_Gy, tia_relative, volume_relative, s_value_relative=0.0):
    """Standard uncertainty of a VOI's mean absorbed dose (Gy) from TIA, volume (mass) and S value.

    Returns a dict with ``dose_uncertainty_Gy``, ``relative`` and the relative ``components``.
    """
    components = {"tia": tia_relative, "volume": volume_relative, "s_value": s_value_relative}
    relative = combined_relative_uncertainty(components, DOSE_SENSITIVITIES)
    return {"dose_uncertainty_Gy": relative * abs(float(dose_Gy)), "relative": relative, "components": components}
