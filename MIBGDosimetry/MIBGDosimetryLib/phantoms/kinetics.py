"""Time-activity curves of the phantom structures as sums of exponentials.

A(t) = sum_n c_n exp(-lambda_n t) for t >= 0 (hours after administration, MBq). The rates are
effective rates (biological clearance and physical decay together). An uptake-then-clearance
curve is A(t) = A_u (exp(-lambda_c t) - exp(-lambda_u t)) with lambda_u > lambda_c; a
bi-exponential clearance is a1 exp(-lambda1 t) + a2 exp(-lambda2 t). The time-integrated
activity from 0 to infinity is the analytic integral sum_n c_n / lambda_n (MBq h).
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Kinetics:
    """A(t) = sum_n coefficients_MBq[n] * exp(-rates_per_h[n] * t)."""

    coefficients_MBq: tuple
    rates_per_h: tuple

    def __post_init__(self):
        if len(self.coefficients_MBq) != len(self.rates_per_h) or not self.rates_per_h:
            raise ValueError("A time-activity curve needs one rate per coefficient and at least one term.")
        if any(rate <= 0 for rate in self.rates_per_h):
            raise ValueError(f"Effective rates must be positive, got {self.rates_per_h} per hour.")

    def activity_MBq(self, hours):
        """Activity (MBq) at ``hours`` after administration (scalar or array)."""
        t = np.asarray(hours, dtype=float)
        terms = [c * np.exp(-rate * t) for c, rate in zip(self.coefficients_MBq, self.rates_per_h)]
        return np.sum(terms, axis=0)

    @property
    def tia_MBq_h(self):
        """Time-integrated activity from administration to infinity (MBq h), analytically."""
        return float(sum(c / rate for c, rate in zip(self.coefficients_MBq, self.rates_per_h)))

    def to_dict(self):
        return {"model": "sum of exponentials A(t) = sum c_n exp(-lambda_n t)",
                "coefficients_MBq": [float(c) for c in self.coefficients_MBq],
                "rates_per_h": [float(r) for r in self.rates_per_h],
                "half_lives_h": [math.log(2.0) / r for r in self.rates_per_h]}


def uptake_clearance(amplitude_MBq, clearance_half_life_h, uptake_half_life_h):
    """A(t) = A_u (exp(-ln2 t / T_c) - exp(-ln2 t / T_u)): zero at administration, rising with
    the uptake half-life T_u and falling with the effective clearance half-life T_c > T_u."""
    if not 0 < uptake_half_life_h < clearance_half_life_h:
        raise ValueError(f"The uptake half-life ({uptake_half_life_h} h) must be positive and shorter than the "
                         f"clearance half-life ({clearance_half_life_h} h).")
    ln2 = math.log(2.0)
    return Kinetics((float(amplitude_MBq), -float(amplitude_MBq)),
                    (ln2 / clearance_half_life_h, ln2 / uptake_half_life_h))


def biexponential(amplitudes_MBq, half_lives_h):
    """A(t) = a1 exp(-ln2 t / T1) + a2 exp(-ln2 t / T2) with positive amplitudes."""
    if any(a < 0 for a in amplitudes_MBq):
        raise ValueError(f"Bi-exponential amplitudes must not be negative, got {amplitudes_MBq} MBq.")
    ln2 = math.log(2.0)
    return Kinetics(tuple(float(a) for a in amplitudes_MBq), tuple(ln2 / t for t in half_lives_h))
