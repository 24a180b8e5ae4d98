"""The uncertainty budget of one VOI: every term by name, what it applies to, how it correlates.

After the EANM guidance on uncertainty analysis for molecular radiotherapy dosimetry (Gear JI et al.,
EJNMMI 45 (2018) 2456-2474): the calibration factor, the recovery / partial-volume model, dead time,
registration, the time-activity fit and its extrapolations, the VOI volume and the dose kernel are
propagated to the time-integrated activity (TIA) and the mean absorbed dose.

Correlations (Gear et al., sections on the calibration factor and on recovery): the calibration
factor is one number for every time point of a VOI and for every VOI, so its relative uncertainty
enters the TIA once (it does not average out over the scans) and is common to all VOIs; recovery and
dead time are the same for all time points of a VOI and enter once too. Registration errors differ
between time points and are independent of each other: each time point's term is weighted by its
share of the TIA and those are added in quadrature. Terms of one VOI are independent of each other,
so the TIA and dose figures add them in quadrature with their sensitivities (GUM, JCGM 100:2008, 5.1.6).
A VOI's mean dose comes partly from the activity around it (131I photons reach across the body): an
error of the VOI's own activity, TIA or outline moves only the share its own activity gives (its
self-dose fraction, MIBGDosimetryLib.dose.absorbed_dose.self_dose_fractions), an error common to all
VOIs (the calibration factor, dead time) or of the dose itself (kernel, density) all of it.

Terms computed from the data of the run rather than assumed:

- registration: the VOI's activity in each registered SPECT when the VOI is moved by that time
  point's measured residual displacement (RMS of the bright structures' shifts after registration)
  along each axis, both ways (:func:`registration_changes`). A VOI centred on its own activity
  hardly changes to first order (its sum is at a maximum), so this is much smaller than the share of
  the volume the shift moves across the boundary, which a uniform, unblurred VOI would lose.
- segmentation: an outline moved by ``delta`` (the stated outline uncertainty, DoseOptions
  ``outline_uncertainty_mm``) changes the volume by ``S delta / V`` (relative); the activity changes
  by ``s`` times that and the mean dose (the activity's energy over the outline's mass) by
  ``s - 1`` times that (:func:`volume_term`). ``s`` is measured: with the GTM by solving it again
  with the VOI's outline moved out and in, a drawn outline by its outline uncertainty on the grid it
  was drawn on (the SPECT voxels its surface crosses change), any other by one SPECT voxel
  (MIBGDosimetryLib.workflow.partial_volume.outline_sensitivities); otherwise from the ratio of the
  concentration of the regions just outside the VOI to its own (:func:`outside_concentration_ratio`,
  the concentration a wider outline takes in).

A term whose input is missing is never silently zero: it takes a stated default and the budget
returns a warning naming the term and the default.
"""

import dataclasses

import numpy as np

#: Standard uncertainty of an activity-meter (dose calibrator) reading of 131I when the calibration
#: record does not state it: the acceptance tolerance of +/- 5 % for a calibrator's accuracy (IAEA
#: TRS-454, "Quality assurance for radioactivity measurement in nuclear medicine", 2006) read as a
#: rectangular distribution, 5 % / sqrt(3).
DEFAULT_ACTIVITY_METER_RELATIVE = 0.05 / np.sqrt(3.0)
#: Fraction of the spill of counts across a VOI's boundary that a Gaussian PSF model misses for 131I
#: (septal penetration and scatter tails of the high-energy collimator, which a Gaussian does not
#: carry; the model floor of the partial-volume correction).
PSF_SHAPE_SPILL_FRACTION = 0.15
#: Relative standard uncertainty of the voxel S-value kernel against published voxel S values
#: (differences of a few % between Monte Carlo codes for 131I, e.g. Lanconelli et al., Phys Med Biol
#: 57 (2012) 517-533).
KERNEL_RELATIVE = 0.03
#: Mean density assumed (soft tissue, 1.0 g/mL) when the dose is not density-corrected: soft tissues
#: lie within about +/- 5 % of it (ICRU 44), read as a rectangular distribution.
DENSITY_ASSUMPTION_RELATIVE = 0.05 / np.sqrt(3.0)
#: Standard uncertainty of a registered time point's position (mm) when the workflow measured none.
DEFAULT_REGISTRATION_MM = 2.0


@dataclasses.dataclass
class BudgetTerm:
    """One named term of a VOI's uncertainty budget (relative standard uncertainty)."""

    term: str
    relative_uncertainty: float
    applies_to: str
    correlation: str
    source: str
    #: Exponent of the quantity in the TIA or the mean dose (-1 for a divisor such as Q, R or the mass).
    sensitivity: float = 1.0
    #: Relative change of the TIA per relative change of a "volume" term (the mean dose's is ``sensitivity``).
    tia_sensitivity: float = 0.0
    #: Share of the mean dose that follows the quantity the term changes: 1 for a term common to every
    #: VOI (the calibration factor) or to the dose itself, the VOI's self-dose fraction for one of its own
    #: activity, TIA or outline (the dose its surroundings give it does not move with those).
    dose_share: float = 1.0
    #: Whether ``sensitivity`` is the whole mean dose's, measured (no self-dose share applies to it).
    dose_measured: bool = False

    def sensitivities(self):
        """``(on the TIA, on the mean dose)``."""
        if self.applies_to in ("activity", "tia"):
            return self.sensitivity, self.sensitivity * self.dose_share
        if self.applies_to == "volume":
            return self.tia_sensitivity, self.sensitivity * self.dose_share
        return 0.0, self.sensitivity

    def to_dict(self):
        on_tia, on_dose = self.sensitivities()
        return {"term": self.term, "relative_uncertainty": float(self.relative_uncertainty),
                "applies_to": self.applies_to, "correlation": self.correlation, "source": self.source,
                "sensitivity_tia": float(on_tia), "sensitivity_dose": float(on_dose)}


def calibration_term(record):
    """The calibration factor Q including the activity meter's uncertainty; returns ``(term, warnings)``."""
    q = record.calibration_factor_cps_per_MBq
    q_u = record.calibration_factor_cps_per_MBq_uncertainty or 0.0
    components = ((record.details or {}).get("calibration_factor") or {}).get("uncertainty_components_cps_per_MBq")
    warnings = []
    stated = (components or {}).get("activity")
    if stated:
        relative, source = q_u / q, "calibration record (counting, uniformity and activity meter)"
    else:
        others = sum(v ** 2 for k, v in (components or {}).items() if k != "activity")
        relative = np.sqrt((others if components else q_u ** 2) / q ** 2 + DEFAULT_ACTIVITY_METER_RELATIVE ** 2)
        source = (f"calibration record without the activity-meter term + default activity meter "
                  f"{100 * DEFAULT_ACTIVITY_METER_RELATIVE:.1f} % (IAEA TRS-454 tolerance 5 %, rectangular)")
        warnings.append("uncertainty budget: the calibration record does not state the activity meter's uncertainty; "
                        "the term 'calibration factor' uses a default of "
                        f"{100 * DEFAULT_ACTIVITY_METER_RELATIVE:.1f} %")
    return BudgetTerm("calibration factor", relative, "activity",
                      "fully correlated across the time points of a VOI and across VOIs", source, -1.0), warnings


def recovery_terms(method, pv_relative, volume_ml, surface_to_volume_per_mm, fwhm_mm, local_fwhm=False):
    """The partial-volume correction: the stated model uncertainty (FWHM spread for the GTM, the
    recovery curve's for EANM eq. 5) and a floor for a PSF that is not Gaussian, which scales with the
    fraction of the VOI's counts that spill across its boundary (about ``sigma S / (sqrt(2 pi) V)``).
    ``local_fwhm``: the GTM measured the VOI's own FWHM on each image (its term is that fit's uncertainty)."""
    if method == "none":
        return [BudgetTerm("recovery model", 0.0, "activity", "correlated across time points",
                           "no partial-volume correction (the bias is reported as a warning, not as uncertainty)",
                           -1.0)], []
    # The GTM's own info names it in full.
    gtm = method in ("gtm", "geometric transfer matrix")
    if not gtm:
        source = "recovery curve (EANM eq. 5) at the VOI volume"
    elif local_fwhm:
        source = ("GTM with the VOI's own FWHM measured on each image +/- that fit's uncertainty (neighbours: the "
                  "calibration's FWHM +/- its uncertainty), each time point weighted by its share of the TIA")
    else:
        source = "GTM with the FWHM +/- its uncertainty, each time point weighted by its share of the TIA"
    stated = BudgetTerm("recovery model", float(pv_relative), "activity", "fully correlated across time points",
                        source, -1.0)
    terms, warnings = [stated], []
    if fwhm_mm is None:
        fwhm_mm = 15.0
        warnings.append("uncertainty budget: no spatial resolution known; the term 'PSF shape' uses a default FWHM "
                        "of 15 mm")
    sigma_mm = fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    spill = min(1.0, sigma_mm * surface_to_volume_per_mm / np.sqrt(2.0 * np.pi))
    terms.append(BudgetTerm("PSF shape", PSF_SHAPE_SPILL_FRACTION * spill, "activity",
                            "fully correlated across time points",
                            f"model floor: {100 * PSF_SHAPE_SPILL_FRACTION:.0f} % of the spilled fraction "
                            f"{100 * spill:.1f} % (Gaussian PSF assumed; 131I tails)", -1.0))
    return terms, warnings


def correlated_over_time(relative_by_time, shares):
    """Relative effect on a TIA of one error common to every time point (the same partial-volume model
    for all scans) that changes each time point's activity by ``relative_by_time`` (magnitudes): the
    changes add linearly, each weighted by its time point's share of the TIA (:func:`tia_shares`). A
    time point that carries little of the TIA (an emptied bladder, a late scan of a washed-out organ)
    adds little, however large its relative change. One number stands for the same change at every time point."""
    shares = np.asarray(shares, dtype=float)
    return float(np.sum(np.abs(np.broadcast_to(np.asarray(relative_by_time, dtype=float), shares.shape)) * shares))


def registration_changes(image, masks, shift_mm, spacing_mm):
    """RMS relative change of each mask's sum of ``image`` (k, j, i) when the image moves by
    ``shift_mm`` along each axis, both ways (linear interpolation); one value per mask."""
    from scipy import ndimage

    image = np.asarray(image, dtype=float)
    sums = np.array([image[m].sum() for m in masks])
    changes = np.zeros((len(masks), 6))
    column = 0
    for axis, step_mm in zip((2, 1, 0), spacing_mm):
        for sign in (1.0, -1.0):
            offset = np.zeros(3)
            offset[axis] = sign * float(shift_mm) / float(step_mm)
            moved = ndimage.shift(image, offset, order=1, mode="constant", cval=0.0)
            changes[:, column] = [moved[m].sum() for m in masks]
            column += 1
    relative = np.divide(changes, sums[:, None], out=np.zeros_like(changes), where=sums[:, None] > 0) - 1.0
    return np.sqrt(np.mean(relative ** 2, axis=1))


def registration_term(relative_changes, tia_shares, source):
    """Each time point's relative activity change from misregistration (None for the reference),
    independent between time points, weighted by the time point's share of the TIA."""
    total = sum((float(change) * share) ** 2 for change, share in zip(relative_changes, tia_shares)
                if change is not None)
    return BudgetTerm("registration", float(np.sqrt(total)), "activity",
                      "independent between time points (added in quadrature, weighted by each scan's share of "
                      "the TIA)", source)


def tia_shares(times_h, activities):
    """Share of the TIA carried by each time point's activity: trapezoid weights, the first point
    carrying the area before it and the last the tail after it (their sum is 1)."""
    t = np.asarray(times_h, dtype=float)
    a = np.clip(np.asarray(activities, dtype=float), 0.0, None)
    weights = np.zeros(len(t))
    weights[0] += t[0]
    weights[:-1] += np.diff(t) / 2.0
    weights[1:] += np.diff(t) / 2.0
    if len(a) >= 2 and a[-2] > a[-1] > 0:
        weights[-1] += (t[-1] - t[-2]) / np.log(a[-2] / a[-1])
    else:
        weights[-1] += t[-1]
    area = weights * a
    return area / area.sum() if area.sum() > 0 else np.full(len(t), 1.0 / len(t))


def tac_terms(tia_MBq_h, terms_MBq_h):
    names = {"fit": ("TAC fit", "residual-scaled covariance of the fitted parameters"),
             "before_first_scan": ("before first scan", "spread of the assumptions for the uptake phase"),
             "after_last_scan": ("after last scan", "spread of the tail models after the last scan")}
    return [BudgetTerm(names[key][0], float(value) / tia_MBq_h, "tia", "one value per VOI (from its fit)",
                       f"time-activity fit: {names[key][1]}") for key, value in terms_MBq_h.items() if key in names]


def dead_time_term(relative, stated):
    source = "dead-time constant's uncertainty (EANM eq. 7)" if stated else \
        "no dead-time correction: losses are not corrected (see the warnings)"
    return BudgetTerm("dead time", float(relative), "activity",
                      "taken as fully correlated between time points (the largest)", source)


def outside_concentration_ratio(mask, region_concentration):
    """Mean of ``region_concentration`` (each voxel: the mean TIA concentration of the region it
    belongs to) over the voxels just outside ``mask``, over the mask's own; 0 for an empty surrounding."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    shell = ndimage.binary_dilation(mask) & ~mask
    inside = float(np.mean(region_concentration[mask])) if mask.any() else 0.0
    if not shell.any() or inside <= 0:
        return 0.0
    return float(np.mean(region_concentration[shell])) / inside


def volume_term(relative, outwards=0.0, inwards=None, outline_mm=None, how=None, dose=None):
    """The outline's term: ``relative`` = S x outline uncertainty / V; ``outwards`` and ``inwards`` the
    relative activity change per relative volume change when the outline moves out or in (equal when
    only one is known). A mean dose is the activity's energy over the outline's mass, so without
    ``dose`` its change is that of the activity less the volume's (sensitivity minus 1), for the share
    of the dose the VOI's own activity gives. ``dose`` = (outwards, inwards): the mean dose's relative
    change per relative volume change measured with the moved outlines on the dose map
    (:func:`outline_dose_sensitivities`), which also holds the dose its surroundings give the voxels the
    outline takes in or gives up. Either way is equally likely: the sensitivities are the root mean
    square over the two, signed by their mean."""
    inwards = outwards if inwards is None else inwards

    def rms(a, b):
        return float(np.copysign(np.sqrt((a * a + b * b) / 2.0), a + b))

    on_tia = rms(outwards, inwards)
    on_dose = rms(outwards - 1.0, inwards - 1.0) if dose is None else rms(*dose)
    stated = "" if outline_mm is None else f" ({outline_mm:g} mm)"
    measured = "" if dose is None else (f"; mean-dose change per volume change {dose[0]:.2f} outwards, "
                                        f"{dose[1]:.2f} inwards (moved outlines on the dose map)")
    return BudgetTerm("segmentation (volume)", float(relative), "volume", "one value per VOI",
                      f"surface area x outline-position uncertainty{stated} / volume; activity change per volume "
                      f"change {outwards:.2f} outwards, {inwards:.2f} inwards "
                      f"({how or 'concentration around the VOI'}){measured}",
                      on_dose, on_tia, dose_measured=dose is not None)


def outline_dose_sensitivities(dose_Gy, weights, tia_map, mask, moves, activity_sensitivities, self_dose_fraction):
    """The mean dose's relative change per relative volume change when a VOI's outline moves out and in:
    ``(outwards, inwards)``, None for a side without a move.

    ``moves`` = [(moved mask, relative volume change) or None for out, ... for in] (the moves its GTM
    activity sensitivities were measured with, MIBGDosimetryLib.workflow.partial_volume.outline_sensitivities),
    ``activity_sensitivities`` = (outwards, inwards) those sensitivities, ``weights`` the voxels' masses
    (None for equal). With the dose map ``dose_Gy`` held, the moved outline's mean dose takes in (or gives
    up) voxels with the dose they have: the VOI's own activity's edge, and whatever its neighbours give
    there (a lung outline taking in the heart wall, denser tissue next to the liver). The moved outline's
    voxels then scale to its new activity (the GTM's change ``s dV/V``) from what they hold in
    ``tia_map``, and with them the share of its dose its own activity gives (``self_dose_fraction``)."""
    dose = np.asarray(dose_Gy, dtype=np.float64)
    w = np.ones(dose.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)

    def mean(m):
        total = float(np.sum(w[m]))
        return float(np.sum(w[m] * dose[m])) / total if total > 0 else 0.0

    base, tia = mean(mask), float(np.sum(tia_map[mask]))
    result = []
    for move, s in zip(moves, activity_sensitivities):
        if move is None or base <= 0 or tia <= 0:
            result.append(None)
            continue
        moved, change = move
        held = float(np.sum(tia_map[moved]))
        if held <= 0:
            result.append(None)
            continue
        # The moved VOI's voxels all scale to its new activity, tia (1 + s dV/V), and so does their self dose.
        scale = tia * (1.0 + s * change) / held
        on_map = mean(moved) / base
        result.append((on_map * (1.0 + self_dose_fraction * (scale - 1.0)) - 1.0) / change)
    return tuple(result)


def kernel_terms(density_corrected):
    terms = [BudgetTerm("dose kernel", KERNEL_RELATIVE, "dose", "fully correlated across VOIs",
                        "voxel S values vs published tables (a few %)")]
    if not density_corrected:
        terms.append(BudgetTerm("tissue density", DENSITY_ASSUMPTION_RELATIVE, "dose", "one value per VOI",
                                "soft tissue 1.0 g/mL assumed (ICRU 44 soft tissues within 5 %)"))
    return terms


def combine(terms):
    """Relative standard uncertainties of the TIA and of the mean dose from the independent terms."""
    tia = np.sqrt(sum((t.sensitivities()[0] * t.relative_uncertainty) ** 2 for t in terms))
    dose = np.sqrt(sum((t.sensitivities()[1] * t.relative_uncertainty) ** 2 for t in terms))
    return float(tia), float(dose)


def surface_to_volume_per_mm(mask, spacing_mm):
    """Surface-to-volume ratio (1/mm) of a voxel mask, its face count scaled to a smooth surface (x 2/3)."""
    mask = np.asarray(mask, dtype=bool)
    sx, sy, sz = (float(s) for s in spacing_mm)
    face_area = {0: sx * sy, 1: sx * sz, 2: sy * sz}
    padded = np.pad(mask, 1)
    area = sum(np.count_nonzero(np.diff(padded, axis=axis)) * face_area[axis] for axis in range(3))
    return (2.0 / 3.0) * area / max(np.count_nonzero(mask) * sx * sy * sz, 1e-12)


def voi_budget(entry, mask, spacing_mm, record, context):
    """The budget of one VOI's result ``entry`` (with its ``tac``, TIA, mean dose and the private
    ``_`` keys the workflow leaves); ``context`` holds the run-wide inputs: ``partial_volume_method``,
    ``fwhm_mm``, ``registration_shifts_mm`` (one per time point, None for the reference or unmeasured),
    ``dead_time_stated``, ``density_corrected``, ``volume_relative``, ``outline_sensitivity`` (outwards,
    inwards, how; see :func:`volume_term`),
    ``outline_dose_sensitivity`` (outwards, inwards, measured on the dose map; None without), ``outline_mm``,
    ``registration_changes`` (this VOI's relative activity change per time point for
    its measured shift, None for the reference; missing for unmeasured time points) and
    ``self_dose_fraction`` (the share of its mean dose its own activity gives; terms of its own activity,
    TIA or outline move the mean dose by that share, see :attr:`BudgetTerm.dose_share`; 1 if missing).

    Returns ``(terms, tia_relative, dose_relative, warnings)``.
    """
    warnings = []
    s_over_v = surface_to_volume_per_mm(mask, spacing_mm)
    calibration, notes = calibration_term(record)
    warnings += notes
    # A VOI outside the recovery curve's scope took its activities from the GTM.
    method = "gtm" if entry.get("_recovery_by_gtm") else context["partial_volume_method"]
    recovery, notes = recovery_terms(method, entry["_recovery_relative"],
                                     entry.get("volume_ml"), s_over_v, context["fwhm_mm"],
                                     bool(entry.get("_local_fwhm")))
    warnings += notes
    changes = list(context["registration_changes"])
    for index, shift in enumerate(context["registration_shifts_mm"]):
        if shift is None and index != context["reference_index"]:
            # Misregistration by d mm moves about d S / (4 V) of a uniform VOI's activity across its
            # boundary (the mean projected area of a convex body is S/4, Cauchy).
            changes[index] = DEFAULT_REGISTRATION_MM * s_over_v / 4.0
            warnings.append(f"uncertainty budget: no registration quality figure for time point {index + 1}; the term "
                            f"'registration' uses a default of {DEFAULT_REGISTRATION_MM:g} mm moving "
                            f"{DEFAULT_REGISTRATION_MM:g} x S/(4V) of the activity")
    shares = tia_shares(entry["tac"]["times_h"], entry["tac"]["activity_MBq"])
    registration = registration_term(changes, shares,
                                     "activity change of the VOI in each registered SPECT when moved by that time "
                                     "point's measured residual shift (RMS of the bright structures' shifts)")
    dead_time = dead_time_term(entry["_dead_time_relative"], context["dead_time_stated"])
    terms = [calibration, *recovery, dead_time, registration,
             *tac_terms(entry["tia_MBq_h"], entry["_fit_uncertainty_MBq_h"]),
             volume_term(context["volume_relative"], *context["outline_sensitivity"][:2], context.get("outline_mm"),
                         context["outline_sensitivity"][2], context.get("outline_dose_sensitivity")),
             *kernel_terms(context["density_corrected"])]
    # The terms of the VOI's own activity, TIA and outline: all but those common to every VOI and the dose's.
    for term in terms:
        if term.applies_to != "dose" and term is not calibration and term is not dead_time and not term.dose_measured:
            term.dose_share = float(context.get("self_dose_fraction", 1.0))
    tia_relative, dose_relative = combine(terms)
    return terms, tia_relative, dose_relative, warnings
