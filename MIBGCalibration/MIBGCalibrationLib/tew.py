"""Triple-energy-window scatter correction of 131I projections (EANM eq. 8, Ogawa et al. 1991).

    C_SC = C_peak - W_peak / 2 (C_1 / W_1 + C_2 / W_2)                   (EANM eq. 8)

C_1 and C_2 are the counts in the lower and upper scatter windows of widths W_1 and W_2 (keV) placed
immediately on either side of the photopeak window of width W_peak. The guidance recommends a 15-20 %
photopeak window and 6 % scatter windows; other set-ups are flagged.
"""

import dataclasses

import numpy as np

#: Main 131I gamma line, 364.489 keV (ICRP Publication 107 / ENSDF).
PHOTOPEAK_KEV = 364.489

#: Recommended photopeak window, as a fraction of the photopeak energy (EANM guidance).
PEAK_WIDTH_RANGE = (0.15, 0.20)

#: Recommended scatter-window width as a fraction of the photopeak energy (EANM guidance), and the
#: tolerance (fraction of the photopeak energy) within which a window counts as that width.
SCATTER_WIDTH = 0.06
SCATTER_WIDTH_TOLERANCE = 0.01

#: Gap (keV) up to which a scatter window still counts as immediately adjacent to the photopeak window.
ADJACENCY_TOLERANCE_KEV = 1.0


@dataclasses.dataclass(frozen=True)
class EnergyWindow:
    """One acquisition energy window; ``index`` is its 1-based number in the DICOM object."""

    index: int
    lower_keV: float
    upper_keV: float
    name: str = ""

    @property
    def width_keV(self):
        return self.upper_keV - self.lower_keV

    def to_dict(self):
        return {"index": self.index, "lower_keV": self.lower_keV, "upper_keV": self.upper_keV, "name": self.name}


@dataclasses.dataclass(frozen=True)
class TewWindows:
    """The photopeak window and its two adjacent scatter windows."""

    peak: EnergyWindow
    lower: EnergyWindow
    upper: EnergyWindow


def identify_windows(windows, photopeak_keV=PHOTOPEAK_KEV):
    """Pick the photopeak window (the one containing the 364 keV line) and the scatter windows closest
    below and above it. Raises ValueError when one of the three is missing."""
    windows = list(windows)
    peaks = [w for w in windows if w.lower_keV < photopeak_keV < w.upper_keV]
    if not peaks:
        raise ValueError(f"No energy window contains the {photopeak_keV:.0f} keV photopeak; the windows are "
                         + ", ".join(f"{w.lower_keV:.1f}-{w.upper_keV:.1f} keV" for w in windows) + ".")
    peak = min(peaks, key=lambda w: w.width_keV)
    below = [w for w in windows if w is not peak and w.upper_keV <= peak.lower_keV + ADJACENCY_TOLERANCE_KEV]
    above = [w for w in windows if w is not peak and w.lower_keV >= peak.upper_keV - ADJACENCY_TOLERANCE_KEV]
    if not below or not above:
        raise ValueError("Triple-energy-window scatter correction needs a scatter window below and one above the "
                         f"photopeak window {peak.lower_keV:.1f}-{peak.upper_keV:.1f} keV; "
                         f"found {len(below)} below and {len(above)} above.")
    lower = max(below, key=lambda w: w.upper_keV)
    upper = min(above, key=lambda w: w.lower_keV)
    return TewWindows(peak, lower, upper)


def window_setup_warnings(tew_windows, photopeak_keV=PHOTOPEAK_KEV):
    """Differences between the acquisition windows and the recommended set-up (EANM guidance)."""
    warnings = []
    peak_fraction = tew_windows.peak.width_keV / photopeak_keV
    if not (PEAK_WIDTH_RANGE[0] - 1e-3 <= peak_fraction <= PEAK_WIDTH_RANGE[1] + 1e-3):
        warnings.append(f"The photopeak window is {100 * peak_fraction:.1f} % wide; 15-20 % is recommended.")
    for label, window in (("lower", tew_windows.lower), ("upper", tew_windows.upper)):
        fraction = window.width_keV / photopeak_keV
        if abs(fraction - SCATTER_WIDTH) > SCATTER_WIDTH_TOLERANCE:
            warnings.append(f"The {label} scatter window is {100 * fraction:.1f} % wide; 6 % is recommended.")
    if tew_windows.peak.lower_keV - tew_windows.lower.upper_keV > ADJACENCY_TOLERANCE_KEV:
        warnings.append("The lower scatter window is not immediately adjacent to the photopeak window.")
    if tew_windows.upper.lower_keV - tew_windows.peak.upper_keV > ADJACENCY_TOLERANCE_KEV:
        warnings.append("The upper scatter window is not immediately adjacent to the photopeak window.")
    return warnings


def tew_scatter_estimate(lower_counts, upper_counts, peak_width_keV, lower_width_keV, upper_width_keV):
    """Scatter counts in the photopeak window, the subtracted term of EANM eq. 8."""
    if min(peak_width_keV, lower_width_keV, upper_width_keV) <= 0:
        raise ValueError("Energy-window widths must be positive.")
    lower = np.asarray(lower_counts, dtype=float)
    upper = np.asarray(upper_counts, dtype=float)
    return 0.5 * peak_width_keV * (lower / lower_width_keV + upper / upper_width_keV)


def tew_correct(peak_counts, lower_counts, upper_counts, peak_width_keV, lower_width_keV, upper_width_keV):
    """Scatter-corrected photopeak counts (EANM eq. 8), negative results clipped at 0.

    Returns ``(corrected, scatter, clipped_pixels)``; the inputs are not modified.
    """
    peak = np.asarray(peak_counts, dtype=float)
    scatter = tew_scatter_estimate(lower_counts, upper_counts, peak_width_keV, lower_width_keV, upper_width_keV)
    if scatter.shape != peak.shape:
        raise ValueError(f"The scatter windows ({scatter.shape}) and the photopeak window ({peak.shape}) "
                         "must have the same shape.")
    corrected = peak - scatter
    clipped = int(np.count_nonzero(corrected < 0))
    return np.clip(corrected, 0.0, None), scatter, clipped
