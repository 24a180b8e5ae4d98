"""Choice of the number of OSEM updates from recovery and noise (EANM guidance, image reconstruction).

For reconstructions of the sphere phantom at several update numbers (iterations x subsets), the
recovery of every insert (EANM eq. 5) and the noise, the coefficient of variation in a background
VOI, are computed. Rule: an update number is acceptable when every insert reaches at least
``recovery_fraction`` (95 %) of the largest recovery it attains over the series; of the acceptable
ones the one with the lowest noise is suggested (the fewest updates on a tie).
"""

import dataclasses
import re

import numpy as np

#: Fraction of each insert's best recovery that an acceptable update number must reach.
RECOVERY_FRACTION = 0.95
#: Iterations and subsets as reconstruction labels write them ("OSEM 4i8s", "4 iterations 8 subsets", "4it 8sub").
_ITERATIONS_SUBSETS = re.compile(r"(\d+)\s*(?:iterations?|iter|it|i)(?![a-z])[\s,x/_-]*(\d+)\s*(?:subsets?|sub|ss|s)"
                                 r"(?![a-z])", re.IGNORECASE)


@dataclasses.dataclass
class UpdateChoice:
    """Recovery and noise over update numbers, and the suggested number."""

    updates: list
    recovery: dict
    noise_cv: list
    suggested_updates: int
    rule: str
    warnings: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {"updates": list(self.updates), "recovery": {k: list(v) for k, v in self.recovery.items()},
                "noise_cv": list(self.noise_cv), "suggested_updates": self.suggested_updates, "rule": self.rule,
                "warnings": list(self.warnings)}


def updates_from_label(*labels):
    """OSEM updates (iterations x subsets) stated in reconstruction labels such as ConvolutionKernel
    or ReconstructionMethod ("OSEM 4i8s ACSC"), or None when none of them states both."""
    for label in labels:
        found = _ITERATIONS_SUBSETS.search(str(label or ""))
        if found:
            return int(found.group(1)) * int(found.group(2))
    return None


def coefficient_of_variation(image, mask):
    """Standard deviation over mean of the voxels in a VOI."""
    values = np.asarray(image, dtype=float)[mask]
    if values.size < 2 or values.mean() <= 0:
        raise ValueError("The background VOI for the noise measurement is empty or holds no counts.")
    return float(values.std(ddof=1) / values.mean())


def choose_updates(updates, recovery_by_insert, noise_cv, recovery_fraction=RECOVERY_FRACTION):
    """Suggest an update number from recovery per insert (``{name: [R per update]}``) and noise per update."""
    updates = [int(u) for u in updates]
    noise = np.asarray(noise_cv, dtype=float)
    if len(updates) < 2:
        raise ValueError(f"At least 2 reconstructions with different update numbers are needed, got {len(updates)}.")
    if len(set(updates)) != len(updates):
        raise ValueError("Each reconstruction of the OSEM series must have a different number of updates.")
    if noise.size != len(updates) or not recovery_by_insert:
        raise ValueError("Recovery per insert and noise are needed for every update number.")
    relative = []
    for name, values in recovery_by_insert.items():
        values = np.asarray(values, dtype=float)
        if values.size != len(updates):
            raise ValueError(f"Insert '{name}' has {values.size} recoveries for {len(updates)} update numbers.")
        relative.append(values / values.max())
    relative = np.array(relative)
    warnings = []
    candidates = [i for i in range(len(updates)) if np.all(relative[:, i] >= recovery_fraction)]
    if not candidates:
        # The inserts peak at different update numbers: take the best mean relative recovery instead.
        best_mean = relative.mean(axis=0)
        candidates = [int(np.argmax(best_mean))]
        warnings.append("No update number brings every insert within "
                        f"{100 * recovery_fraction:.0f} % of its best recovery; the number with the best mean "
                        "relative recovery is suggested.")
    best = min(candidates, key=lambda i: (noise[i], updates[i]))
    rule = (f"every insert within {100 * recovery_fraction:.0f} % of its maximum recovery over the series; "
            "of those, the lowest background coefficient of variation (fewest updates on a tie)")
    return UpdateChoice(updates, {k: [float(v) for v in vals] for k, vals in recovery_by_insert.items()},
                        [float(n) for n in noise], updates[best], rule, warnings)
