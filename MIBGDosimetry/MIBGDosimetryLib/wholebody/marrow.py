"""Red-marrow absorbed dose of 131I-mIBG by the whole-body method and by the blood method.

Whole-body method: the red marrow receives the whole-body absorbed dose, ``D_RM = D_WB``. This is the
usual surrogate in 131I-mIBG therapy of neuroblastoma, where marrow toxicity limits the activity and
blood is not sampled (Buckley SE et al., J Nucl Med 50 (2009) 1518-1524; Gaze MN et al., Cancer
Biother Radiopharm 20 (2005) 195-199). Assumptions: activity uniform in the body and no specific
uptake in the marrow (marrow metastases, frequent in neuroblastoma, make it an underestimate).

Blood method (Sgouros G, J Nucl Med 34 (1993) 689-694; EANM guidelines for bone marrow and whole-body
dosimetry, Hindorf C et al., Eur J Nucl Med Mol Imaging 37 (2010) 1238-1250):

    D_RM = D_RM<-RM + D_RM<-RB

- self-dose: the marrow's TIA is ``A~_RM = [A~_blood] x RMBLR x m_RM`` with the time-integrated blood
  concentration ``[A~_blood]`` (MBq h per mL, taken per g of marrow) and the red-marrow-to-blood
  concentration ratio RMBLR (default 1: no specific marrow uptake and an activity that does not bind to
  blood cells, as the EANM guidelines recommend for small molecules; Sgouros's 0.19/(1 - Hct) applies
  to antibodies that stay in plasma). Its electrons are absorbed in the marrow: ``D_RM<-RM,e =
  A~_RM E_e / m_RM = [A~_blood] RMBLR E_e``, independent of the marrow mass;
- photon cross-dose: photons from the whole body's activity (remainder of the body plus the marrow's
  own) reach the marrow like any other tissue, ``D_ph = A~_WB S_ph(WB <- WB)`` with the photon part of
  the whole-body S value (:mod:`.s_value`): marrow spread through the skeleton sees the mean photon
  dose of a uniformly filled body.
"""

import numpy as np

from MIBGDosimetryLib.physics.i131 import GY_PER_MBQ_H_PER_MEV_PER_G
from MIBGDosimetryLib.tac import fit_tac
from MIBGDosimetryLib.wholebody.s_value import reference_red_marrow_mass_g

#: Red-marrow-to-blood concentration ratio without specific marrow uptake (Hindorf et al. 2010).
DEFAULT_RMBLR = 1.0


def whole_body_method(wb_dose_Gy, wb_dose_uncertainty_Gy):
    """Red-marrow dose (Gy) equal to the whole-body dose, with its assumptions."""
    return {"method": "whole body", "red_marrow_dose_Gy": float(wb_dose_Gy),
            "red_marrow_dose_uncertainty_Gy": _finite_or_none(wb_dose_uncertainty_Gy),
            "assumptions": ["the red marrow receives the whole-body absorbed dose (uniform activity in the body)",
                            "no specific uptake in the marrow: marrow involvement by neuroblastoma makes this an "
                            "underestimate"]}


def blood_method(blood, wb_tia_MBq_h, s_value, body_mass_kg, rmblr=DEFAULT_RMBLR, rmblr_uncertainty=0.0,
                 red_marrow_mass_g=None, model="auto"):
    """Red-marrow dose (Gy) by the blood method.

    ``blood``: :class:`BloodSamples`; ``wb_tia_MBq_h``: whole-body TIA; ``s_value``: the dict of
    :func:`whole_body_s_value`; ``rmblr`` and its standard uncertainty; ``red_marrow_mass_g`` (default:
    ICRP 89 reference scaled to the body mass); ``model``: time-activity model of the blood curve
    (``fit_tac``).
    """
    if not (np.isfinite(rmblr) and rmblr > 0):
        raise ValueError(f"The red-marrow-to-blood ratio must be positive; got {rmblr}.")
    if not (np.isfinite(rmblr_uncertainty) and rmblr_uncertainty >= 0):
        raise ValueError(f"The uncertainty of the red-marrow-to-blood ratio must be zero or positive; got "
                         f"{rmblr_uncertainty}.")
    if len(blood.times_h) < 2:
        raise ValueError(f"The blood method needs at least 2 blood samples; {blood.source} has {len(blood.times_h)}.")
    marrow_g = reference_red_marrow_mass_g(body_mass_kg) if red_marrow_mass_g is None else float(red_marrow_mass_g)
    if not (np.isfinite(marrow_g) and marrow_g > 0):
        raise ValueError(f"The red-marrow mass must be a positive number of grams; got {red_marrow_mass_g}.")
    fit = fit_tac(blood.times_h, blood.concentration_MBq_per_mL, model=model)
    concentration_tia = fit.tia_MBq_h  # MBq h per mL
    marrow_tia = concentration_tia * rmblr * marrow_g
    if marrow_tia >= wb_tia_MBq_h:
        raise ValueError(f"The marrow TIA from the blood samples ({marrow_tia:.4g} MBq h) is not below the whole-body "
                         f"TIA ({wb_tia_MBq_h:.4g} MBq h); check the blood concentration units (MBq/mL or kBq/mL).")
    self_electron = concentration_tia * rmblr * s_value["electron_energy_MeV"] * GY_PER_MBQ_H_PER_MEV_PER_G
    photon_per_tia = s_value["photon_Gy_per_MBq_h"]
    from_marrow, from_remainder = marrow_tia * photon_per_tia, (wb_tia_MBq_h - marrow_tia) * photon_per_tia
    dose = self_electron + from_marrow + from_remainder
    relative_self = np.hypot(_relative(fit.tia_uncertainty_MBq_h, concentration_tia), rmblr_uncertainty / rmblr)
    uncertainty = self_electron * relative_self
    return {"method": "blood", "red_marrow_dose_Gy": float(dose),
            "red_marrow_dose_uncertainty_Gy": _finite_or_none(uncertainty),
            "self_dose_Gy": float(self_electron + from_marrow), "self_electron_dose_Gy": float(self_electron),
            "cross_dose_from_remainder_of_body_Gy": float(from_remainder),
            "blood_tia_MBq_h_per_mL": float(concentration_tia), "red_marrow_tia_MBq_h": float(marrow_tia),
            "red_marrow_mass_g": marrow_g, "rmblr": float(rmblr), "rmblr_uncertainty": float(rmblr_uncertainty),
            "blood_tac": {"model": fit.model, "effective_half_life_h": fit.effective_half_life_h,
                          "tia_uncertainty_MBq_h_per_mL": _finite_or_none(fit.tia_uncertainty_MBq_h)},
            "warnings": list(fit.warnings),
            "assumptions": [f"red-marrow-to-blood concentration ratio {rmblr:g} (no specific marrow uptake; EANM "
                            "guidelines, Hindorf et al. 2010)",
                            "blood concentration per mL taken per g of marrow",
                            "marrow electrons absorbed in the marrow; photons reach the marrow as the mean photon "
                            "dose of a uniformly filled body (whole-body S value)",
                            f"red-marrow mass {marrow_g:.0f} g" + (" (ICRP 89 reference scaled to the body mass)"
                                                                   if red_marrow_mass_g is None else " (given)"),
                            "the uncertainty covers the blood curve and the RMBLR, not the photon cross-dose"]}


def _relative(uncertainty, value):
    return float(uncertainty) / value if uncertainty is not None and np.isfinite(uncertainty) else 0.0


def _finite_or_none(value):
    return float(value) if value is not None and np.isfinite(value) else None
