"""Is an emission series a 131I acquisition? Evidence from its headers.

Three fields can tell: the radionuclide code (RadiopharmaceuticalInformationSequence /
RadionuclideCodeSequence), the half-life (RadionuclideHalfLife) and the energy windows
(EnergyWindowInformationSequence, whose ranges must include the 364 keV photopeak of 131I). Any of
them pointing to another radionuclide makes the series unusable for 131I dosimetry (its half-life,
photon yield and S values differ) unless the user accepts it knowingly.
"""

#: 131I half-life (s), ENSDF via NNDC: 8.0252 d.
I131_HALF_LIFE_S = 8.0252 * 86400.0
#: Main photopeak of 131I (keV), ENSDF via NNDC: 364.49 keV.
I131_PHOTOPEAK_KEV = 364.49
#: Codes of 131I: SNOMED CT 1368003 "Iodine-131" (DICOM CID 18 since 2019) and the older SNOMED RT
#: C-B1017 "^131^Iodine" (DICOM CID 18 before SNOMED CT codes replaced SRT ones).
I131_CODES = {("SCT", "1368003"), ("SRT", "C-B1017"), ("SNM3", "C-B1017"), ("99SDM", "C-B1017")}
#: Half-lives within this relative difference are taken as 131I's.
HALF_LIFE_TOLERANCE = 0.01


def radionuclide_problems(code, half_life_s, energy_windows):
    """Reasons why a series is not a 131I acquisition (empty when nothing says so).

    ``code`` is ``(scheme, value, meaning)`` of the radionuclide code or None; ``energy_windows``
    a list of ``{"name", "lower_keV", "upper_keV"}``.
    """
    reasons = []
    if code is not None:
        scheme, value, meaning = code
        if value and (str(scheme or "").upper(), str(value).upper()) not in I131_CODES:
            reasons.append(f"RadionuclideCodeSequence is {scheme or '?'} {value} ('{meaning or 'no meaning'}'), not "
                           f"131I (SCT 1368003 or SRT C-B1017)")
    if half_life_s is not None and abs(half_life_s / I131_HALF_LIFE_S - 1.0) > HALF_LIFE_TOLERANCE:
        reasons.append(f"RadionuclideHalfLife is {half_life_s:g} s ({half_life_s / 86400.0:.3g} d), not the 131I "
                       f"half-life {I131_HALF_LIFE_S:g} s (8.0252 d)")
    ranges = [(w["lower_keV"], w["upper_keV"]) for w in energy_windows
              if w.get("lower_keV") is not None and w.get("upper_keV") is not None]
    if ranges and not any(low <= I131_PHOTOPEAK_KEV <= high for low, high in ranges):
        shown = ", ".join(f"{low:g}-{high:g} keV" for low, high in ranges)
        reasons.append(f"the energy windows ({shown}) do not include the {I131_PHOTOPEAK_KEV:g} keV photopeak of 131I")
    return reasons
