"""Mass density from CT numbers, for VOI masses and the optional density correction of the dose.

Bilinear conversion (the usual shape of a stoichiometric CT calibration, Schneider U, Pedroni E,
Lomax A, Phys Med Biol 41 (1996) 111-124): from air (-1000 HU, 0.0012 g/cm3) to water (0 HU,
1.0 g/cm3) linearly, and above water with the smaller slope of bone-like tissue, reaching about
1.9 g/cm3 at 1500 HU (cortical bone). The slopes are generic; a centre with its own CT calibration
curve should pass its density map instead.
"""

import numpy as np

AIR_DENSITY_G_CM3 = 0.0012
#: g/cm3 per HU above water, so that 1500 HU gives 1.9 g/cm3.
BONE_SLOPE_G_CM3_PER_HU = 0.0006


def density_from_hu(hu):
    """Mass density (g/cm3) of CT numbers (HU)."""
    hu = np.asarray(hu, dtype=np.float64)
    below = 1.0 + hu * (1.0 - AIR_DENSITY_G_CM3) / 1000.0
    above = 1.0 + hu * BONE_SLOPE_G_CM3_PER_HU
    return np.clip(np.where(hu <= 0, below, above), AIR_DENSITY_G_CM3, None)
