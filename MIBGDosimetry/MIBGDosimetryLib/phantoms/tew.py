"""Energy spectrum model behind the triple-energy-window (TEW) projections.

Windows (EANM guidance): a 20 % photopeak window at 364 keV and 6 % windows immediately below and
above it.

- Primary (unscattered) 364 keV photons are recorded with a Gaussian energy response of 9 %
  FWHM (typical of NaI(Tl) at 364 keV). Most fall in the photopeak window; the Gaussian tails put
  about 0.45 % of them in each adjacent window.
- Scattered photons have a spectrum that falls linearly with energy across the three windows,
  s(E) proportional to 1 - SCATTER_SLOPE_PER_KEV (E - 364 keV): more scatter below the peak, some
  above it (down-scatter of the 637 and 723 keV lines). Spatially the scatter is the primary
  projection blurred with a broad Gaussian, SCATTER_FWHM_MM, times SCATTER_TO_PRIMARY in the
  photopeak window.

For a linear scatter spectrum and windows symmetric about the peak the TEW estimate (EANM eq. 8)
of the photopeak scatter would be exact; the primary counts in the side windows make it
overestimate the scatter by about 1.5 % of the primary counts (about 4 % of the scatter for
SCATTER_TO_PRIMARY = 0.40, a scatter-to-primary ratio typical of 131I in a 20 cm water phantom). The truth file gives the true scatter and the noise-free TEW estimate.
"""

import math

from scipy.special import erf

from MIBGDosimetryLib.dicomio.nm import EnergyWindow

PHOTOPEAK_KEV = 364.0
ENERGY_RESOLUTION_FWHM_FRACTION = 0.09
SCATTER_SLOPE_PER_KEV = 0.005
SCATTER_TO_PRIMARY = 0.40
SCATTER_FWHM_MM = 60.0


def tew_windows(peak_fraction=0.20, side_fraction=0.06):
    """[photopeak, lower scatter, upper scatter] windows: adjacent, widths as fractions of 364 keV."""
    half = PHOTOPEAK_KEV * peak_fraction / 2.0
    side = PHOTOPEAK_KEV * side_fraction
    low, high = PHOTOPEAK_KEV - half, PHOTOPEAK_KEV + half
    return [EnergyWindow("PHOTOPEAK", low, high), EnergyWindow("LOWER SCATTER", low - side, low),
            EnergyWindow("UPPER SCATTER", high, high + side)]


def primary_fractions(windows):
    """Fraction of the primary photopeak counts recorded in each window (Gaussian energy response)."""
    sigma = ENERGY_RESOLUTION_FWHM_FRACTION * PHOTOPEAK_KEV / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    def cdf(e):
        return 0.5 * (1.0 + erf((e - PHOTOPEAK_KEV) / (sigma * math.sqrt(2.0))))

    return [cdf(w.upper_keV) - cdf(w.lower_keV) for w in windows]


def scatter_fractions(windows):
    """Scatter counts in each window relative to the scatter counts in the first (photopeak) window."""

    def integral(w):
        # Integral of 1 - slope (E - E0) over the window.
        mid = 0.5 * (w.lower_keV + w.upper_keV)
        return w.width_keV * (1.0 - SCATTER_SLOPE_PER_KEV * (mid - PHOTOPEAK_KEV))

    reference = integral(windows[0])
    return [integral(w) / reference for w in windows]


def tew_scatter_estimate(peak_counts, lower_counts, upper_counts, windows):
    """Photopeak scatter estimated by TEW, EANM eq. 8: W_peak / 2 (C1 / W1 + C2 / W2)."""
    peak, lower, upper = windows
    return peak.width_keV / 2.0 * (lower_counts / lower.width_keV + upper_counts / upper.width_keV)
