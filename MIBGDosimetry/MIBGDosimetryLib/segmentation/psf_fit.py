"""Model-based refinement of a lesion delineated on SPECT, using the camera's known point-spread function.

A threshold delineation of a lesion only a few resolution lengths across depends on the noise at its
edge: near 4-8 mL its volume scatters by 10-17 % between noise realisations. The lesion's whole image,
not only its edge, carries information on its size, because the point-spread function (PSF) that
blurs it is known from the calibration. In a box around the lesion (its delineation plus
:data:`MARGIN_FWHM` FWHM on each side) the image is modelled as

    image = c * (G_fwhm * E)(x) + (G_fwhm * B)(x) (b0 + b . (x - x_box)) + sum_o c_o (G_fwhm * O_o)(x)

with E a uniform ellipsoid (centre, three semi-axes; its axes are those of the image grid, i, j, k:
a tilted lesion is fitted by the axis-aligned ellipsoid closest to it), G_fwhm the Gaussian PSF, c the
lesion's concentration above the background (image units per voxel), B the body (voxels not
colder than :data:`COLD_FRACTION` of the surroundings' median: air beyond the outline is no background)
with a concentration b0 and a linear gradient b, and O_o each connected structure excluded by
``allowed_mask`` (neighbouring organs), whose spill-out into the box is modelled as its blurred outline
with its own uniform concentration c_o. A margin of one FWHM holds the lesion's spill-out and enough
background; on the project's patient phantom wider boxes take in structure that this background model
does not follow (reduced chi-square 10-140 at 2.5 FWHM, 1.1-3.8 at 1 FWHM) and bias the volume by up to
50 %. Each model voxel is the mean of G * E over the voxel (see :data:`VOXEL_POINTS`): E is rasterised on
a grid of :data:`SUBVOXELS`^3 sub-voxels per voxel with a partial-volume ramp across its surface (so
that the model changes smoothly with the geometry) and convolved with the Gaussian axis by axis, as
matrix products.

The geometry (6 parameters) is fitted by non-linear least squares; the amplitudes (c, b0, b, c_o) enter
linearly and are solved in closed form inside the residual (variable projection), so that only the
geometry is searched. The residuals are weighted for Poisson noise, 1 / sqrt(expected value): first
with the image smoothed by one voxel as the expected value, then with the first fit's model. The
volume's standard uncertainty comes from the covariance of the fit, scaled by the reduced chi-square.

Voxels outside ``allowed_mask`` (neighbouring organs) and air do not enter the fit, nor do allowed
voxels within :data:`GUARD_FWHM` FWHM of them that lie outside the lesion's delineation (where the
edge of a voxelised organ outline is least like the organ). Other hot structures inside the box that
are not excluded bias the fit; exclude them through ``allowed_mask``. A fit whose reduced chi-square
exceeds :data:`MAX_REDUCED_CHI_SQUARE` (the image is not a blurred uniform ellipsoid on this
background: irregular or heterogeneous lesion, unmodelled neighbour) is marked as not converged, and
its stated uncertainty, which covers noise only, understates its error. (On the project's patient
phantoms, fits with a reduced chi-square up to 4.7 were within 9 % of the true volume; with 10-140,
off by 30-50 %.)
"""

import numpy as np
from scipy import ndimage, optimize

#: FWHM of a Gaussian in units of its standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Margin of the fitted box around the lesion's delineation, in FWHM of the PSF.
MARGIN_FWHM = 1.0
#: Least margin (FWHM) that must fit inside the image on every side, for the background to be seen.
MIN_MARGIN_FWHM = 1.0
#: A voxel's value is the mean of the blurred activity at the centres of its VOXEL_POINTS^3 equal parts,
#: as in the project's acquisition model (phantoms.camera: blurred on a grid of half the voxel size,
#: summed into voxels). The exact mean over the voxel would add a variance of voxel^2 / 48 per axis
#: (0.4 mm^2 at 4.4 mm), which changes the fitted volume of a 4 mL lesion by about 3 %.
VOXEL_POINTS = 2
#: Sub-voxels per voxel along each axis on which the ellipsoid is rasterised.
SUBVOXELS = 4
#: Allowed voxels within this distance (FWHM) of excluded ones, outside the lesion, are left out of the fit.
GUARD_FWHM = 0.5
#: Reach of the PSF (FWHM; 3.5 standard deviations) beyond the box from which excluded structures spill in.
SPILL_REACH_FWHM = 1.5
#: Reduced chi-square above which the model does not describe the image and the result is not trusted.
MAX_REDUCED_CHI_SQUARE = 5.0
#: Voxels below this fraction of the median of the lesion's surroundings are air (outside the body).
COLD_FRACTION = 0.5
#: Semi-axes are searched between this share of a voxel and the box's half size.
MIN_SEMI_AXIS_VOXELS = 0.25
#: Relative step of the finite-difference Jacobian.
DIFF_STEP = 1e-3


def _voxel_kernel(centres_mm, samples_mm, voxel_mm, sigma_mm, sample_mm):
    """Matrix (voxels x sub-voxel samples) giving each voxel's value from the samples: the Gaussian-blurred
    samples averaged over the centres of the voxel's VOXEL_POINTS equal parts along the axis, times the
    samples' width."""
    parts = ((np.arange(VOXEL_POINTS) + 0.5) / VOXEL_POINTS - 0.5) * voxel_mm
    t = centres_mm[:, None, None] + parts[None, None, :] - samples_mm[None, :, None]
    gaussian = np.exp(-0.5 * (t / sigma_mm) ** 2) / (np.sqrt(2.0 * np.pi) * sigma_mm)
    return gaussian.mean(axis=2) * sample_mm


class _LesionModel:
    """The blurred uniform ellipsoid on the voxels of a box (axes k, j, i; positions in mm from the box's
    first voxel centre)."""

    def __init__(self, shape, spacing_kji_mm, fwhm_mm):
        self.shape = shape
        self.spacing = np.asarray(spacing_kji_mm, dtype=float)
        self.sample = self.spacing / SUBVOXELS
        self.sigma = fwhm_mm / FWHM_PER_SIGMA
        self.centres = [np.arange(n) * h for n, h in zip(shape, self.spacing)]

    def profile(self, centre_mm, semi_axes_mm):
        """Mean of G * E over each voxel of the box (1 deep inside a large ellipsoid)."""
        axes = []
        for centre, semi, sample in zip(centre_mm, semi_axes_mm, self.sample):
            # Sub-voxel sample m is centred at (m + 1/2) s - h/2 (voxel n spans n h - h/2 .. n h + h/2), and
            # the samples reach two sample widths beyond the ellipsoid, past its partial-volume ramp.
            offset = SUBVOXELS / 2.0 - 0.5
            first = int(np.floor((centre - semi) / sample + offset)) - 2
            last = int(np.ceil((centre + semi) / sample + offset)) + 2
            axes.append((np.arange(first, last + 1) - offset) * sample)
        u = np.meshgrid(*[(a - c) / s for a, c, s in zip(axes, centre_mm, semi_axes_mm)], indexing="ij")
        radius = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
        # Distance to the surface to first order, (f - 1) / |grad f| with f = |u|; the partial volume of a
        # sub-voxel falls linearly over a width whose variance is that of the sub-voxel's extent along the
        # surface normal (sum of (n_i s_i)^2 / 12), so that the ramp smooths the surface as little as a cube does.
        gradient = [ui / si for ui, si in zip(u, semi_axes_mm)]
        norm = np.sqrt(gradient[0] ** 2 + gradient[1] ** 2 + gradient[2] ** 2)
        safe = np.maximum(norm, 1e-12)
        distance = (radius - 1.0) * np.maximum(radius, 1e-12) / safe
        width = np.sqrt(sum((g / safe * h) ** 2 for g, h in zip(gradient, self.sample)))
        inside = np.clip(0.5 - distance / np.maximum(width, 1e-12), 0.0, 1.0)
        inside[radius == 0] = 1.0
        # The ramp adds more volume outside the curved surface than it removes inside: rescale to the
        # ellipsoid's exact volume, so that the fitted amplitude is the lesion's concentration.
        inside *= 4.0 / 3.0 * np.pi * np.prod(semi_axes_mm) / (inside.sum() * np.prod(self.sample))
        k, j, i = (_voxel_kernel(c, a, h, self.sigma, dh)
                   for c, a, h, dh in zip(self.centres, axes, self.spacing, self.sample))
        # Separable convolution, one axis at a time as matrix products (no transposed copies).
        blurred = (k @ inside.reshape(inside.shape[0], -1)).reshape(k.shape[0], *inside.shape[1:])
        return (j @ blurred) @ i.T


def _check(spect, mask, fwhm_mm, allowed_mask):
    """(values, mask, allowed_mask) as float and boolean arrays, or a ValueError saying what is wrong."""
    values = np.asarray(spect.array, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise ValueError(f"The lesion mask has shape {mask.shape}, the SPECT {values.shape}; give it on the SPECT grid.")
    if not mask.any():
        raise ValueError("The lesion mask is empty; delineate the lesion (adaptive threshold) before refining it.")
    if not np.isfinite(fwhm_mm) or fwhm_mm <= 0:
        raise ValueError(f"The resolution FWHM must be a positive number of mm, got {fwhm_mm}; take it from the "
                         "calibration record.")
    if not np.all(np.isfinite(values)):
        raise ValueError("The SPECT image holds non-finite values; it cannot be fitted.")
    if allowed_mask is not None:
        allowed_mask = np.asarray(allowed_mask, dtype=bool)
        if allowed_mask.shape != values.shape:
            raise ValueError(f"The allowed mask has shape {allowed_mask.shape}, the SPECT {values.shape}; "
                             "give it on the SPECT grid.")
    return values, mask, allowed_mask


def _box(mask, spacing_kji_mm, fwhm_mm):
    """Slices of the fitted box: the mask's extent plus MARGIN_FWHM FWHM, clipped to the image, which
    must leave at least MIN_MARGIN_FWHM FWHM on every side."""
    where = np.argwhere(mask)
    low, high = where.min(axis=0), where.max(axis=0)
    margin = np.ceil(MARGIN_FWHM * fwhm_mm / spacing_kji_mm).astype(int)
    least = np.ceil(MIN_MARGIN_FWHM * fwhm_mm / spacing_kji_mm).astype(int)
    if np.any(low < least) or np.any(high > np.asarray(mask.shape) - 1 - least):
        raise ValueError(f"The lesion lies within {MIN_MARGIN_FWHM:g} FWHM ({MIN_MARGIN_FWHM * fwhm_mm:.0f} mm) of "
                         "the edge of the SPECT image; its surroundings are not imaged and it cannot be refined.")
    start = np.maximum(low - margin, 0)
    stop = np.minimum(high + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


def refine_lesion(spect, mask, fwhm_mm, allowed_mask=None):
    """Refine a lesion's delineation by fitting a PSF-blurred uniform ellipsoid (see the module docstring).

    ``spect`` is an :class:`MIBGDosimetryLib.volume.ImageVolume` (counts or any unit proportional to
    them), ``mask`` a boolean array on its grid (the lesion's delineation, e.g. from
    :func:`MIBGDosimetryLib.segmentation.adaptive_threshold.adaptive_threshold_mask`), ``fwhm_mm`` the
    FWHM of the Gaussian PSF (calibration record), ``allowed_mask`` (or None) the voxels that may belong
    to the lesion and to its background (neighbouring organs excluded). Inputs are not modified.

    Returns ``(refined_mask, info)``: the voxels whose centre lies inside the fitted ellipsoid (and in
    ``allowed_mask``), and a dict with volume_ml (4/3 pi a b c), volume_uncertainty_ml (standard
    uncertainty from the fit covariance), centre_ras_mm, semi_axes_mm (along the image axes i, j, k),
    concentration (lesion above background, image units per voxel), background (background model at
    the centre, image units per voxel), background_gradient_per_mm (along i, j, k), converged (the
    optimiser met its tolerance with no semi-axis or centre at its search limit and the reduced chi-square
    is at most MAX_REDUCED_CHI_SQUARE), reduced_chi_square,
    fit_voxels, evaluations, mask_volume_ml (volume of refined_mask's voxels) and warning (None, or why
    the result is not to be trusted).
    """
    values, mask, allowed_mask = _check(spect, mask, fwhm_mm, allowed_mask)
    spacing = np.asarray(spect.spacing_mm, dtype=float)[::-1]
    box = _box(mask, spacing, fwhm_mm)
    image = values[box]
    lesion = mask[box]
    allowed = np.ones(image.shape, dtype=bool) if allowed_mask is None else allowed_mask[box]
    smooth = ndimage.gaussian_filter(image, 1.0)
    surroundings = allowed & ~lesion
    if not surroundings.any():
        raise ValueError("No allowed voxel is left around the lesion to measure its background; check the "
                         "allowed mask.")
    # Air beyond the body outline is no background of the lesion; it is excluded like an organ.
    cold_level = COLD_FRACTION * float(np.median(smooth[surroundings]))
    usable = allowed & ((smooth >= cold_level) | lesion)
    near_excluded = ndimage.distance_transform_edt(usable, sampling=spacing) <= GUARD_FWHM * fwhm_mm
    fit = usable & (lesion | ~near_excluded)
    model = _LesionModel(image.shape, spacing, fwhm_mm)
    positions = np.meshgrid(*model.centres, indexing="ij")
    middle = [0.5 * c[-1] for c in model.centres]
    observed = image[fit]
    body, organs = _blurred_surroundings(values, allowed_mask, box, spacing, fwhm_mm, cold_level)
    # Background: the blurred body with a linear gradient (in units of 100 mm, which keeps the linear
    # system well conditioned), plus the spill-out of each excluded structure, modelled as its blurred
    # outline with its own uniform concentration.
    background_columns = [body] + [body * (p - m) / 100.0 for p, m in zip(positions, middle)] + organs
    background_design = np.stack(background_columns, axis=-1)
    design_fixed = background_design[fit]
    if observed.size <= 2 * (6 + 1 + design_fixed.shape[1]):
        raise ValueError("Too few voxels around the lesion can be fitted (the allowed mask or the body outline "
                         "leaves almost none); check the allowed mask.")

    def amplitudes(theta, weights):
        profile = model.profile(theta[:3], np.exp(theta[3:]))
        design = np.column_stack([profile[fit], design_fixed])
        coefficients = np.linalg.lstsq(design * weights[:, None], observed * weights, rcond=None)[0]
        return design, coefficients

    def residuals(theta, weights):
        design, coefficients = amplitudes(theta, weights)
        return (observed - design @ coefficients) * weights

    points_mm = np.argwhere(lesion) * spacing
    centre0 = points_mm.mean(axis=0)
    equivalent_mm = (3.0 * lesion.sum() * np.prod(spacing) / (4.0 * np.pi)) ** (1.0 / 3.0)
    # A uniform ellipsoid has variance a^2 / 5 along a semi-axis a; voxels add h^2 / 12.
    variance = points_mm.var(axis=0) - spacing ** 2 / 12.0
    semi0 = np.clip(np.sqrt(5.0 * np.maximum(variance, 0.0)), 0.5 * equivalent_mm, 2.0 * equivalent_mm)
    box_mm = np.array([c[-1] for c in model.centres])
    lower = np.concatenate([np.zeros(3), np.log(MIN_SEMI_AXIS_VOXELS * spacing)])
    upper = np.concatenate([box_mm, np.log(np.maximum(box_mm / 2.0, 2.0 * MIN_SEMI_AXIS_VOXELS * spacing))])
    theta = np.clip(np.concatenate([centre0, np.log(semi0)]), lower + 1e-6, upper - 1e-6)

    weights = _poisson_weights(smooth[fit])
    evaluations = 0
    for _ in range(2):
        result = optimize.least_squares(residuals, theta, args=(weights,), bounds=(lower, upper), method="trf",
                                        diff_step=DIFF_STEP, x_scale=np.concatenate([spacing, np.full(3, 0.1)]))
        evaluations += result.nfev
        theta = result.x
        design, coefficients = amplitudes(theta, weights)
        weights = _poisson_weights(design @ coefficients)
    design, coefficients = amplitudes(theta, weights)
    final = (observed - design @ coefficients) * weights
    free = observed.size - theta.size - coefficients.size
    reduced_chi_square = float(final @ final / max(free, 1))

    semi_axes = np.exp(theta[3:])
    volume_ml = float(4.0 / 3.0 * np.pi * np.prod(semi_axes) / 1000.0)
    # Variable projection: the Jacobian of the projected residual gives the geometry's covariance with the
    # amplitudes profiled out. The volume depends on the log semi-axes only, d V / d log a = V.
    jacobian = result.jac
    try:
        covariance = np.linalg.inv(jacobian.T @ jacobian) * reduced_chi_square
        volume_uncertainty_ml = float(volume_ml * np.sqrt(max(np.sum(covariance[3:, 3:]), 0.0)))
    except np.linalg.LinAlgError:
        volume_uncertainty_ml = float("inf")

    at_limit = bool(np.any(result.active_mask != 0) or np.any(np.isclose(theta, lower, atol=1e-4))
                    or np.any(np.isclose(theta, upper, atol=1e-4)))
    misfit = reduced_chi_square > MAX_REDUCED_CHI_SQUARE
    converged = bool(result.success and not at_limit and not misfit and coefficients[0] > 0
                     and np.isfinite(volume_uncertainty_ml))
    warning = None
    if coefficients[0] <= 0:
        warning = "the fitted lesion is not brighter than its background; check the seed and the delineation"
    elif at_limit:
        warning = "the fitted ellipsoid reached the limit of its search (box or voxel size); check the delineation"
    elif misfit:
        warning = (f"the image around the lesion does not follow the model of a blurred uniform ellipsoid on a "
                   f"smooth background (reduced chi-square {reduced_chi_square:.1f}); keep the threshold volume or "
                   "exclude neighbouring hot structures")
    elif not result.success:
        warning = f"the fit did not converge ({result.message})"

    offsets = np.stack(positions, axis=-1) - theta[:3]
    inside_box = np.sum((offsets / semi_axes) ** 2, axis=-1) <= 1.0
    refined = np.zeros(values.shape, dtype=bool)
    refined[box] = inside_box
    if allowed_mask is not None:
        refined &= allowed_mask
    first_voxel = np.array([s.start for s in box], dtype=float)
    centre_kji = first_voxel + theta[:3] / spacing
    gradient_kji = coefficients[2:5] / 100.0
    centre_voxel = tuple(int(v) for v in np.clip(np.round(theta[:3] / spacing), 0, np.array(image.shape) - 1))
    background_at_centre = float(background_design[centre_voxel] @ coefficients[1:])
    info = {"volume_ml": volume_ml, "volume_uncertainty_ml": volume_uncertainty_ml,
            "centre_ras_mm": [float(v) for v in spect.ras_of_ijk(centre_kji[::-1])],
            "semi_axes_mm": [float(v) for v in semi_axes[::-1]],
            "concentration": float(coefficients[0]), "background": background_at_centre,
            "background_gradient_per_mm": [float(v) for v in gradient_kji[::-1]],
            "converged": converged, "reduced_chi_square": reduced_chi_square, "fit_voxels": int(observed.size),
            "evaluations": int(evaluations), "mask_volume_ml": float(refined.sum()) * spect.voxel_volume_ml,
            "warning": warning}
    return refined, info


def _blurred_surroundings(values, allowed_mask, box, spacing_kji_mm, fwhm_mm, cold_level):
    """(body, organs) on the box: the body (voxels of the image smoothed by one voxel at or above
    ``cold_level``) and each connected structure outside ``allowed_mask``, blurred by the PSF. They
    are taken from a region SPILL_REACH_FWHM FWHM larger than the box, so that the spill-out of parts
    beyond the box is included."""
    extra = np.ceil(SPILL_REACH_FWHM * fwhm_mm / spacing_kji_mm).astype(int)
    outer = tuple(slice(max(0, s.start - e), min(n, s.stop + e)) for s, e, n in zip(box, extra, values.shape))
    inner = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer))
    sigma_voxels = fwhm_mm / FWHM_PER_SIGMA / spacing_kji_mm

    def blurred(indicator):
        return ndimage.gaussian_filter(indicator.astype(float), sigma_voxels, mode="nearest")[inner]

    body = blurred(ndimage.gaussian_filter(values[outer], 1.0) >= cold_level)
    organs = []
    if allowed_mask is not None:
        labels, count = ndimage.label(~allowed_mask[outer], structure=np.ones((3, 3, 3), dtype=bool))
        organs = [column for column in (blurred(labels == label) for label in range(1, count + 1))
                  if column.max() > 1e-3]
    return body, organs


def _poisson_weights(expected):
    """1 / sqrt(expected), floored at a thousandth of the largest expected value (for images in units
    other than counts, whose scale does not change the weights' proportions)."""
    expected = np.asarray(expected, dtype=float)
    floor = max(1e-3 * float(np.max(np.abs(expected))), np.finfo(float).tiny)
    return 1.0 / np.sqrt(np.maximum(expected, floor))
