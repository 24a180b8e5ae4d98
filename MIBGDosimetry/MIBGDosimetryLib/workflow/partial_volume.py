"""Partial-volume correction of VOI activities by the geometric transfer matrix (GTM).

The recovery curve of the calibration (EANM eq. 5) describes spheres in a uniform background; the
guidance warns that VOIs of other shapes, or next to other active regions, are corrected less
accurately by it. The GTM method (Rousset OG, Ma Y, Evans AC, J Nucl Med 39 (1998) 904-911) instead
models the image as the sum of every region's uniform activity blurred by the system's point-spread
function: with ``m_i`` the mean image value in region i and ``g_ij`` the mean, over region i, of
region j's indicator blurred by the PSF,

    m_i = sum_j g_ij c_j,

a linear system for the true mean values ``c_j``. It corrects spill-out of every region and
spill-in from every neighbour at once, for any shape. Regions are the VOIs plus the rest of the body
(which carries the background activity); voxels claimed by several VOIs are assigned to the first
one. The PSF is a 3-D Gaussian of the FWHM measured in the calibration (spatial resolution of the
reconstructed images). A region is a source that fills its voxels uniformly, as the activity does,
and the image value of a voxel is the mean of the blurred activity over it (:func:`voxel_kernel`):
regions blurred as points at the voxel centres and sampled there spill less than the activity
they stand for, and a 26 mm box's activity came out 2 % low at 17 mm FWHM on 4.4 mm voxels
(Testing/test_workflow_units.py).

OSEM does not blur every object alike: a small region much hotter than its surroundings converges
faster than the calibration spheres did and its image is sharper (on the realistic 131I phantom a
14 mL gland and 4-9 mL bone lesions image like a 9-11 mm Gaussian where the sphere phantom gives
13.6 mm), so the calibration's FWHM over-corrects them. For every VOI under
:data:`LOCAL_RESOLUTION_MAX_ML` the FWHM of its column of the GTM is therefore measured on the images
themselves (:func:`local_fwhm_mm`): the one that best explains each time point's image around the VOI,
within :data:`LOCAL_FWHM_RANGE` times the calibration's (never wider than it). It is measured at every
time point, because the sharpness changes as the VOI's contrast does: on that phantom (noise seed 1)
the 4 mL spine lesion, whose background clears faster than it does, goes from 11.0 mm at the first
time point to 8.9 mm at the last, the salivary glands, which clear faster than their background, from
11.9 to 13.0 mm; one FWHM from the first time point made the spine lesion's activity drift from +6 %
to +19 % over the time points and its dose +24 %. The local FWHM's own uncertainty (the least-squares
fit's, with the noise the residuals show) is then the VOI's resolution term: the calibration's FWHM,
which the images show to be wrong for it, is no alternative to it. With half the difference the two make
in it (and the calibration FWHM's uncertainty applied to the local one), the 4 mL spine lesion's term was
31 % on that phantom, where its TIA error was 6 % r.m.s. over 20 noise realisations.
"""

import numpy as np
import scipy.ndimage
import scipy.optimize

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Relative standard uncertainty of the GTM model itself, as a fraction of the mean image value a VOI
#: shows before correction (region shapes and PSF are approximations of the real ones).
MODEL_UNCERTAINTY = 0.02
#: VOIs below this volume (mL) get their own FWHM measured on the images (larger ones take the
#: calibration's: their partial-volume effect is small and hardly tells the resolution).
LOCAL_RESOLUTION_MAX_ML = 30.0
#: The local FWHM is searched between these multiples of the calibration's FWHM: never wider, since
#: OSEM sharpens hot compact objects beyond the calibration spheres but does not blur them more (on
#: the image-domain phantom, whose blur the calibration measures, a wider local fit moved a 9 mL bone
#: lesion's dose from within 10 % to +12 %).
LOCAL_FWHM_RANGE = (0.5, 1.0)
#: The local fit uses the voxels within this many voxels of the VOI.
LOCAL_NEIGHBOURHOOD_VOXELS = 6


def exclusive_regions(masks, body):
    """Disjoint regions: each mask minus the masks before it, then the body minus all of them."""
    taken = np.zeros(body.shape, dtype=bool)
    regions = []
    for mask in masks:
        region = np.asarray(mask, dtype=bool) & ~taken
        taken |= region
        regions.append(region)
    regions.append(np.asarray(body, dtype=bool) & ~taken)
    return regions


def voxel_kernel(sigma_mm, voxel_mm):
    """One axis of the image of a voxel uniformly filled with activity, value 1, through a Gaussian PSF of
    ``sigma_mm``, as the mean image value over the voxels ``n`` = -r..r away (``r`` reaching 4 sigma
    beyond the voxel's faces): with ``Psi(x) = x Phi(x / sigma) + sigma phi(x / sigma)``, an integral of
    the Gaussian's cumulative distribution ``Phi``,

        K[n] = (Psi((n + 1) h) - 2 Psi(n h) + Psi((n - 1) h)) / h.

    The activity fills the voxels, and a voxel's value is the mean of the blurred activity over it (a
    reconstruction's voxel basis, a simulation's binning of a finer grid); the calibration's FWHM is
    measured with the same meaning (MIBGCalibrationLib.resolution: each sphere as the fraction of every
    voxel it fills, blurred and compared with the voxel values). Its variance is sigma^2 + h^2 / 6."""
    from scipy.special import ndtr

    radius = int(np.ceil(4.0 * sigma_mm / voxel_mm + 1.0))
    n = np.arange(-radius, radius + 1, dtype=float)
    if sigma_mm <= 0:
        return np.clip(1.0 - np.abs(n), 0.0, None)

    def psi(x_mm):
        u = x_mm / sigma_mm
        return x_mm * ndtr(u) + sigma_mm * np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)

    return (psi((n + 1.0) * voxel_mm) - 2.0 * psi(n * voxel_mm) + psi((n - 1.0) * voxel_mm)) / voxel_mm


def _blurred(region, fwhm_mm, spacing_mm, added_variance_mm2=None):
    """Mean value over every voxel of ``region``, a source that fills its voxels, blurred by a Gaussian PSF
    of ``fwhm_mm`` widened along each axis (k, j, i) by ``added_variance_mm2`` when given
    (:func:`voxel_kernel`)."""
    spacing_kji = np.asarray(spacing_mm, dtype=float)[::-1]
    added = np.zeros(3) if added_variance_mm2 is None else np.asarray(added_variance_mm2, dtype=float)
    sigma_mm = np.sqrt((fwhm_mm * FWHM_TO_SIGMA) ** 2 + added)
    blurred = np.asarray(region, dtype=np.float64)
    for axis in range(3):
        kernel = voxel_kernel(sigma_mm[axis], spacing_kji[axis])
        blurred = scipy.ndimage.correlate1d(blurred, kernel, axis=axis, mode="constant")
    return blurred


def transfer_matrix(regions, fwhm_mm, spacing_mm, added_variance_mm2=None):
    """GTM ``g[i, j]``: mean over region i of region j blurred by a Gaussian PSF of ``fwhm_mm`` (one
    FWHM for all regions, or a sequence with one per region: the PSF of the source region j).

    ``added_variance_mm2[j]`` (k, j, i order), when given, widens the PSF of region j along each axis
    by that variance: the blur a resampling of the image added there (see :func:`region_variances_mm2`)."""
    n = len(regions)
    fwhms = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (n,))
    added = np.zeros((n, 3)) if added_variance_mm2 is None else np.asarray(added_variance_mm2, dtype=float)
    g = np.zeros((n, n))
    sizes = np.array([np.count_nonzero(r) for r in regions], dtype=float)
    for j, region in enumerate(regions):
        if sizes[j] == 0:
            continue
        blurred = _blurred(region, fwhms[j], spacing_mm, added[j])
        for i, other in enumerate(regions):
            if sizes[i]:
                g[i, j] = blurred[other].mean()
    return g


def local_fwhm_mm(image, regions, index, fwhm_mm, spacing_mm, added_variance_mm2=None):
    """FWHM (mm) of region ``index``'s own PSF, measured on ``image`` (:func:`local_fwhm_fit`)."""
    return local_fwhm_fit(image, regions, index, fwhm_mm, spacing_mm, added_variance_mm2)[0]


def local_fwhm_fit(image, regions, index, fwhm_mm, spacing_mm, added_variance_mm2=None):
    """``(FWHM, its standard uncertainty or None)`` (mm) of region ``index``'s own PSF, measured on
    ``image``: the image within :data:`LOCAL_NEIGHBOURHOOD_VOXELS` of the region is fitted (linear least
    squares) by the region blurred with the trial FWHM plus every other region blurred with ``fwhm_mm``;
    the trial FWHM with the smallest residual wins, searched on a grid of about 0.25 mm over
    :data:`LOCAL_FWHM_RANGE` x ``fwhm_mm`` (both ends included) and refined by a parabola through the
    best three. ``added_variance_mm2[region]`` (k, j, i), when given, is the blur a resampling added to
    ``image``: it widens every blur of the fit, so that the FWHM found is the reconstruction's own.

    The uncertainty is the least-squares one with the noise the residuals show: its variance is
    ``J' S J / (J' J)^2``, with ``J`` the change of the fitted image per mm of FWHM and ``S`` the
    covariance of the voxels' noise, estimated from the residuals ``r`` themselves (products ``r_a r_b``
    of voxels up to :data:`NOISE_CORRELATION_VOXELS` apart, with Bartlett weights that keep it
    positive). Reconstructed noise is neither uniform (it follows the counts) nor independent between
    neighbouring voxels (OSEM correlates it); taking it as both understated the FWHM's scatter over
    noise realisations by a factor of 1.7 for a 4 mL sphere at 400 counts per voxel. A best FWHM at
    either end of the searched range has no parabola and no uncertainty of its own (None)."""
    added = [None] * len(regions) if added_variance_mm2 is None else added_variance_mm2
    image = np.asarray(image, dtype=np.float64)
    region = regions[index]
    near = scipy.ndimage.binary_dilation(region, iterations=LOCAL_NEIGHBOURHOOD_VOXELS)
    others = []
    for k, other in enumerate(regions):
        if k == index or not other.any():
            continue
        column = _blurred(other, fwhm_mm, spacing_mm, added[k])[near]
        if column.max() > 1e-3:
            others.append(column)
    observed = image[near]
    # Both ends are trials: the calibration's FWHM itself must be reachable.
    low, high = LOCAL_FWHM_RANGE[0] * fwhm_mm, LOCAL_FWHM_RANGE[1] * fwhm_mm
    trials = np.linspace(low, high, max(int(round((high - low) / 0.25)), 1) + 1)
    residuals, models = [], []
    for trial in trials:
        design = np.stack([_blurred(region, trial, spacing_mm, added[index])[near]] + others, axis=1)
        values, *_ = np.linalg.lstsq(design, observed, rcond=None)
        models.append(design @ values)
        residuals.append(float(np.sum((models[-1] - observed) ** 2)))
    best = int(np.argmin(residuals))
    if 0 < best < len(trials) - 1:
        before, mid, after = residuals[best - 1:best + 2]
        curvature = before - 2.0 * mid + after
        if curvature > 0:
            step = float(trials[1] - trials[0])
            offset = 0.5 * (before - after) / curvature
            slope = (models[best + 1] - models[best - 1]) / (2.0 * step)
            variance = _correlated_noise_product(near, slope * (observed - models[best])) / float(slope @ slope) ** 2
            return float(trials[best] + step * offset), float(np.sqrt(max(variance, 0.0)))
    return float(trials[best]), None


#: Reach (voxels, along each axis) of the noise correlation counted in a local FWHM's uncertainty.
NOISE_CORRELATION_VOXELS = 2


def _correlated_noise_product(mask, values):
    """``sum_a sum_b w(a - b) v_a v_b`` over the voxels of ``mask`` (``values`` in its order) for voxel
    offsets up to :data:`NOISE_CORRELATION_VOXELS` along each axis, with Bartlett weights
    ``prod (1 - |offset| / (reach + 1))``: the variance of ``sum v`` when neighbouring terms are
    correlated (a spatial heteroscedasticity- and correlation-consistent estimate)."""
    reach = NOISE_CORRELATION_VOXELS
    box = tuple(slice(max(int(a.min()) - reach, 0), int(a.max()) + reach + 1) for a in np.nonzero(mask))
    field = np.zeros(mask.shape)
    field[mask] = values
    field = np.pad(field[box], reach)
    core = tuple(slice(reach, n - reach) for n in field.shape)
    total = 0.0
    for offset in np.ndindex(*(2 * reach + 1,) * 3):
        shift = np.asarray(offset) - reach
        weight = float(np.prod(1.0 - np.abs(shift) / (reach + 1.0)))
        moved = tuple(slice(c.start + d, c.stop + d) for c, d in zip(core, shift))
        total += weight * float(np.sum(field[core] * field[moved]))
    return total


def region_variances_mm2(regions, variance_mm2):
    """Mean over each region of a per-voxel variance map ``(3, k, j, i)`` (mm^2): ``(regions, 3)``."""
    return np.array([variance_mm2[:, r].mean(axis=1) if r.any() else np.zeros(3) for r in regions])


def regional_means(image, regions):
    """Mean image value in every region (0 for an empty region)."""
    image = np.asarray(image)
    return np.array([image[r].mean() if r.any() else 0.0 for r in regions])


def solve_transfer(observed, g):
    """True mean values of the regions from their observed means.

    The GTM system is solved by non-negative least squares: activity cannot be negative, and for
    small, poorly conditioned regions an unconstrained solution may dip below zero through noise.
    Regions whose row of ``g`` is empty (no voxels) get 0.
    """
    used = np.abs(np.diag(g)) > 0
    solution = np.zeros(len(observed))
    solution[used] = scipy.optimize.nnls(g[np.ix_(used, used)], np.asarray(observed)[used])[0]
    return solution


def corrected_means(image, regions, g):
    """True mean value of every region of ``image`` (see :func:`solve_transfer`)."""
    return solve_transfer(regional_means(image, regions), g)


def condition_number(g):
    used = np.abs(np.diag(g)) > 0
    return float(np.linalg.cond(g[np.ix_(used, used)]))


def gtm_activities(vois, counts_images, mbq_per_count, body, fwhm_mm, fwhm_uncertainty_mm, spacing_mm,
                   local_resolution=True, interpolation_variances_mm2=None):
    """Activities (MBq) of every VOI at every time point by the GTM, with relative uncertainties.

    counts_images: counts arrays on the common (reference) grid, one per time point;
    mbq_per_count: activity per count of each time point (calibration factor, duration, dead time);
    interpolation_variances_mm2: per time point None (an image not resampled, such as the reference)
    or the blur its resampling onto the common grid added, ``(3, k, j, i)`` mm^2
    (MIBGDosimetryLib.registration.resample.interpolation_variance_mm2). A moved image is smoother
    than the calibration's resolution says; a GTM that ignores it underestimates the spill-out of
    small VOIs at every resampled time point (3.4 % of a 26 mm box moved by fractions of its 4.4 mm
    voxels at 17 mm FWHM, Testing/test_workflow_units.py).
    Returns ``(activity[voi, time], relative[voi, time], resolution_relative[voi], info)``:

    - ``relative``: the standard uncertainty of each corrected activity at each time point, relative
      to it: the Poisson noise of the regions' mean counts carried through the inverse of the GTM
      (first order), combined with a model floor of :data:`MODEL_UNCERTAINTY` of the activity the
      VOI shows before correction (spill-in that the GTM removes is known only as well as the region
      shapes and the PSF describe it; a VOI that holds little activity next to hot neighbours thus
      gets a large uncertainty and little weight in its time-activity fit);
    - ``resolution_relative[voi, time]``: the relative effect of the FWHM's uncertainty on each time
      point's activity (one FWHM for all time points, so the effects are fully correlated: a TIA takes
      them weighted by the time points' shares of it, see MIBGDosimetryLib.dose.budget.correlated_over_time);
      with ``local_resolution`` VOIs under :data:`LOCAL_RESOLUTION_MAX_ML` get their own FWHM,
      :func:`local_fwhm_fit`, measured on each time point's image with the blur its resampling added,
      and their own column of the GTM moves by that fit's uncertainty (by ``fwhm_uncertainty_mm`` where
      the fit ends at either end of its range), every other column by ``fwhm_uncertainty_mm``. A VOI
      without activity at a time point has no effect there (that time point carries no weight in its fit).

    ``info["background_activity_MBq"]`` holds the activity of the rest of the body at each time point,
    ``info["local_fwhm_mm_by_timepoint"]`` each small VOI's FWHM at each time point,
    ``info["local_fwhm_uncertainty_mm_by_timepoint"]`` the uncertainty its GTM column moved by, and
    ``info["local_fwhm_mm"]`` their mean.
    """
    regions = exclusive_regions([v.mask for v in vois], body)
    sizes = np.array([np.count_nonzero(r) for r in regions], dtype=float)
    voxel_ml = float(np.prod(np.asarray(spacing_mm, dtype=float))) / 1000.0
    variances = list(interpolation_variances_mm2 or [None] * len(counts_images))
    small = [j for j in range(len(vois)) if local_resolution and 0 < sizes[j] * voxel_ml < LOCAL_RESOLUTION_MAX_ML]
    added_by_time = [None if v is None else region_variances_mm2(regions, v) for v in variances]
    # One FWHM per region and time point: how sharply OSEM images a small VOI changes with its
    # contrast, which changes as its activity and its surroundings' clear at different rates.
    fwhms = np.full((len(counts_images), len(regions)), float(fwhm_mm))
    # How far each region's column moves for the resolution term: a local FWHM by its own fit's uncertainty.
    deltas = np.full(fwhms.shape, float(fwhm_uncertainty_mm or 0.0))
    for t, counts in enumerate(counts_images):
        image = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
        for j in small:
            fwhms[t, j], fitted = local_fwhm_fit(image, regions, j, float(fwhm_mm), spacing_mm, added_by_time[t])
            if fitted is not None:
                deltas[t, j] = fitted
    local = {vois[j].name: [float(f) for f in fwhms[:, j]] for j in small}
    n = len(vois)
    activity = np.zeros((n + 1, len(counts_images)))
    relative = np.zeros((n, len(counts_images)))
    resolution_relative = np.zeros((n, len(counts_images)))
    used = sizes > 0
    matrices = {}
    for t, (counts, factor) in enumerate(zip(counts_images, mbq_per_count)):
        added = added_by_time[t]
        key = (tuple(fwhms[t]), tuple(deltas[t]), None if added is None else t)
        if key not in matrices:
            matrices[key] = _transfer_matrices(regions, fwhms[t], deltas[t], spacing_mm, added, used)
        g, inverse, spread = matrices[key]
        counts = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
        observed = regional_means(counts, regions)
        means = solve_transfer(observed, g)
        activity[:, t] = means * sizes * factor
        means = means[:n]
        # Poisson: the variance of a region's mean count is its mean over its voxel number.
        variance_means = np.divide(observed, sizes, out=np.zeros_like(observed), where=used)
        counting_sd = np.sqrt(inverse ** 2 @ variance_means)[:n]
        model_sd = MODEL_UNCERTAINTY * observed[:n]
        with np.errstate(divide="ignore", invalid="ignore"):
            relative[:, t] = np.where(means > 0, np.hypot(counting_sd, model_sd) / means, 1.0)
        effect = np.zeros(n)
        if spread:
            low, high = (solve_transfer(observed, gs)[:n] for gs in spread)
            effect = np.divide(np.abs(high - low) / 2.0, means, out=np.zeros(n), where=means > 0)
        resolution_relative[:, t] = effect
    info = {"method": "geometric transfer matrix", "fwhm_mm": fwhm_mm, "fwhm_uncertainty_mm": fwhm_uncertainty_mm,
            "local_fwhm_mm": {name: float(np.mean(values)) for name, values in local.items()},
            "local_fwhm_mm_by_timepoint": local,
            "local_fwhm_uncertainty_mm_by_timepoint": {vois[j].name: [float(d) for d in deltas[:, j]] for j in small},
            "condition_number": condition_number(matrices[next(iter(matrices))][0]),
            "interpolation_blur_modelled": any(v is not None for v in variances),
            "background_voxels": int(np.count_nonzero(regions[-1])),
            "background_activity_MBq": activity[n].tolist()}
    return activity[:n], relative, resolution_relative, info


def _transfer_matrices(regions, fwhm_mm, fwhm_uncertainty_mm, spacing_mm, added, used):
    """``(g, its inverse on the used regions, [g at the FWHMs -/+ their uncertainties])``; FWHMs and
    uncertainties one per region (a column's source) or one for all."""
    fwhm_mm = np.asarray(fwhm_mm, dtype=float)
    uncertainty = np.broadcast_to(np.asarray(0.0 if fwhm_uncertainty_mm is None else fwhm_uncertainty_mm,
                                             dtype=float), (len(regions),))
    g = transfer_matrix(regions, fwhm_mm, spacing_mm, added)
    inverse = np.zeros((len(regions), len(regions)))
    inverse[np.ix_(used, used)] = np.linalg.pinv(g[np.ix_(used, used)])
    spread = []
    if np.any(uncertainty > 0):
        spread = [transfer_matrix(regions, np.maximum(fwhm_mm + sign * uncertainty, 0.0), spacing_mm, added)
                  for sign in (-1.0, 1.0)]
    return g, inverse, spread


#: A drawn outline's move is made on the SPECT voxels when the voxels it gives or takes make at least this
#: fraction of the volume change of the moved outline itself; otherwise the outline moves by one voxel.
FOLLOWED_FRACTION = 0.5


def outline_sensitivities(vois, counts_images, body, fwhm_mm, spacing_mm, weights, moves=None):
    """How each VOI's GTM activity follows its outline: ``(outwards[voi], inwards[voi], drawn[voi], made[voi])``, the
    relative activity change over the relative volume change when the VOI's outline moves out (taking in the rest
    of the body and the VOIs after it in ``vois``, which give up the voxels they share with it, as when
    VOIs are made disjoint) or in, everything else unchanged.

    ``moves[voi]`` (or None) gives a VOI's outline moved on the grid it was drawn on: ``((outwards mask,
    relative volume change), (inwards mask, relative volume change))`` on the SPECT grid (see
    :func:`drawn_outline_moves`); without it, or when such a move changes fewer SPECT voxels than
    :data:`FOLLOWED_FRACTION` of its volume change (an outline drawn on voxels as coarse as the SPECT's),
    the outline moves by one SPECT voxel. ``drawn[voi]`` says per side (out, in) whether the drawn move
    was made. The volume change is counted on the SPECT voxels the move changes, as the GTM sees it. The
    distinction matters: a sub-voxel move of a drawn outline changes the voxels its surface crosses, whose
    counts lie on the image's edge, while a whole-voxel move takes in voxels farther out with fewer counts,
    so it understates how far the activity follows the outline.

    ``weights[voi, time]`` weigh the time points (e.g. their shares of the VOI's TIA). A VOI the GTM
    treats as concentration times volume gives 1, one whose activity it conserves (its counts stay
    assigned to it) 0. ``made[voi]`` = ``[(out mask, relative volume change) or None, (in mask, ...) or
    None]``: the moved outlines the sensitivities were measured with
    (MIBGDosimetryLib.dose.budget.outline_dose_sensitivities follows the mean dose with them).
    """
    regions = exclusive_regions([v.mask for v in vois], body)

    def blur(region):
        return _blurred(region, fwhm_mm, spacing_mm)

    def activities(regions, blurred):
        flat = np.stack([b.ravel() for b in blurred])
        g = np.array([flat[:, r.ravel()].mean(axis=1) if r.any() else np.zeros(len(regions)) for r in regions])
        sizes = np.array([np.count_nonzero(r) for r in regions], dtype=float)
        return np.array([solve_transfer(regional_means(c, regions), g) * sizes for c in counts])

    counts = [np.clip(np.asarray(c, dtype=np.float64), 0.0, None) for c in counts_images]
    blurred = [blur(r) for r in regions]
    base = activities(regions, blurred)
    n = len(vois)
    result = np.zeros((2, n))
    # What an outline moving out takes in: the rest of the body and the VOIs after it, which give up
    # voxels they share with it (see exclusive_regions and MIBGDosimetryLib.workflow.vois.make_disjoint).
    takeable = [None] * n
    after = regions[-1].copy()
    for i in reversed(range(n)):
        takeable[i] = after.copy()
        after |= regions[i]
    moves = moves or [None] * n
    drawn = [[False, False] for _ in range(n)]
    made = [[None, None] for _ in range(n)]
    for i in range(n):
        own = regions[i]
        size = max(np.count_nonzero(own), 1)
        for column in (0, 1):  # out, in
            moved = None
            if moves[i] is not None:
                mask, change = moves[i][column]
                candidate = own | (mask & takeable[i]) if column == 0 else own & mask
                # The change the GTM sees is that of the voxels the moved outline gives or takes. An outline
                # drawn on voxels as coarse as the SPECT's, moved by less than a voxel, keeps its voxels but
                # a few at its corners (their inside fraction stays on the same side of one half): those
                # few do not represent the move, which then is made by one SPECT voxel.
                counted = (np.count_nonzero(candidate) - np.count_nonzero(own)) / size
                if change != 0 and candidate.any() and counted / change >= FOLLOWED_FRACTION:
                    moved, volume_change = candidate, counted
                    drawn[i][column] = True
            if moved is None:
                moved = (own | (scipy.ndimage.binary_dilation(own) & takeable[i]) if column == 0
                         else scipy.ndimage.binary_erosion(own))
                volume_change = (np.count_nonzero(moved) - np.count_nonzero(own)) / size
            if volume_change == 0 or not moved.any():
                continue
            made[i][column] = (moved, volume_change)
            changed = list(regions)
            changed_blurred = list(blurred)
            changed[i] = moved
            for j in range(i + 1, n):
                if np.any(regions[j] & moved):
                    changed[j] = regions[j] & ~moved
                    changed_blurred[j] = blur(changed[j])
            changed[-1] = regions[-1] & ~moved | (own & ~moved)
            changed_blurred[i], changed_blurred[-1] = blur(changed[i]), blur(changed[-1])
            new = activities(changed, changed_blurred)
            w = np.asarray(weights[i], dtype=float)
            before, after = float(w @ base[:, i]), float(w @ new[:, i])
            if before > 0:
                result[column, i] = (after / before - 1.0) / volume_change
    return result[0], result[1], [tuple(d) for d in drawn], made


def drawn_outline_moves(vois, reference, distance_mm):
    """For each VOI with a drawn outline (``voi.drawn``), its outline moved ``distance_mm`` (a number, or
    a dict by VOI kind) out and in on
    the grid it was drawn on and carried to ``reference`` (ImageVolume): ``((outwards mask, relative
    volume change), (inwards mask, relative volume change))``, a voxel belonging to a moved outline when
    at least half of it lies inside (as when the outline itself is resampled); None for other VOIs. The
    volume changes are those of the moved outlines themselves (their voxels' inside fractions summed)."""
    moves = []
    for voi in vois:
        distance = distance_mm.get(voi.kind, 0.0) if isinstance(distance_mm, dict) else distance_mm
        if getattr(voi, "drawn", None) is None or distance <= 0:
            moves.append(None)
            continue
        box, (base, outwards, inwards) = voi.drawn.moved_occupancies(reference, (0.0, distance, -distance))
        volume = float(base.sum())
        if volume <= 0:
            moves.append(None)
            continue
        result = []
        for occupancy in (outwards, inwards):
            mask = np.zeros(reference.array.shape, dtype=bool)
            mask[box] = occupancy >= 0.5
            result.append((mask, float(occupancy.sum()) / volume - 1.0))
        moves.append(tuple(result))
    return moves
