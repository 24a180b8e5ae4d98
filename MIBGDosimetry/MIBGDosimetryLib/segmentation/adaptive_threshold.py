"""Adaptive-threshold delineation of a lesion on SPECT with a calibrated threshold model.

The user marks a lesion with a seed point or a box. The lesion is the region around its peak of
points above

    background + fraction(V, C) * (maximum - background),

where ``fraction`` is the calibrated :class:`MIBGCalibrationLib.threshold.ThresholdModel` (the
EANM guidance recommends an adaptive threshold with factors from the calibration data), ``V`` the
lesion volume and ``C`` the lesion-to-background ratio. Because the threshold depends on the volume
it delineates, the volume is the fixed point of V -> threshold -> region -> V, located by a scan
over threshold fractions refined by bisection (the plain iteration diverges for small lesions),
with the background re-estimated around each new region until it settles. The self-consistency
amplifies errors: near 4-8 mL an error of 0.01 in the model's fraction moves the volume by about
10 %, which is why maximum, volume and background are defined to be insensitive to noise, grid
position, contrast and surroundings.

Measured on the project's phantoms (model calibrated by ``mibgdose calibrate`` on the calibration
phantom, 17 mm FWHM, 4.4 mm voxels, Poisson noise), noise seeds 1-5: the 33.5 and 8.2 mL lesions
within 5 %, the 4.2 mL lesion within 10 % for seeds 1-4 and 28 % too small for seed 5. The limit is
the calibration phantom's noise (about 120 counts per voxel in its 4 mL insert): the fraction of
that insert scatters by 0.016 between noise realisations. Below 4 mL volumes are overestimated (by
a factor of up to 2.7 at 0.9 mL); below the smallest insert the result is marked as not converged.

The fractions hold for lesions whose image looks like a sphere's. On OSEM images with resolution
modelling they do not for elongated or hollow lesions: the edge overshoot that OSEM gives a sphere's
image converges at its centre (on the realistic 131I phantom the spheres filled 8:1 show image
contrasts of 12.6 and 15.1 at 14 and 33 mL), which a thin or hollow object lacks, so its peak is
lower and its edge lies at a larger fraction of it. Measured on that phantom (noise seeds 1 and 2):
a 6.1 mL ellipsoid of semi-axes 8, 9 and 20 mm is recovered at a fraction of 0.45-0.46 where the
model gives 0.38, and its only self-consistent region is 3.6 times too large; a 38 mm sphere with a
16 mm cold core (26.5 mL of active shell) needs 0.24-0.25 where the model gives 0.18 (+36 %
volume); compact and bone lesions need what the model gives (within 0.03). Neither a Gaussian PSF
nor the candidate region corrects this: blurred by the calibration's 13.6 mm Gaussian, the
ellipsoid needs a smaller fraction than a sphere of its volume (0.42-0.43 against 0.475), the
opposite of the OSEM image; and the regions a threshold cuts from the blurred image are much
rounder than the lesion, so a correction computed from the candidate region's own shape, even with
a sharpening kernel fitted to the spheres' fractions, comes out between -0.05 and 0 on the
ellipsoid's regions (seed 1) where +0.07 is needed, and leaves the outline where it was.

Contrast check: the spheres calibrated at the lowest concentration ratio show at each volume an
image contrast (fitted maximum over background). A lesion whose self-consistent region has a lower
image contrast than they show at its volume lies outside the calibration: either its uptake ratio is
lower than the lowest calibrated one, or the lesion is smaller than the region, or not shaped like a
sphere (the elongated and hollow lesions above). The outline then used is the contrast-consistent
one, within the calibration: the region at the model's fraction for the calibrated sphere (lowest
ratio) whose image has the lesion's contrast. Both readings are kept (``info["contrast_check"]``)
and the distance between them enters the outline's uncertainty. Measured on the realistic 131I
phantom (noise seeds 1 and 41, delineated alone on the first time point), self-consistent and
contrast-consistent volumes: +11..+17 % and +1..+2 % for the irregular adrenal primary (26.9 mL),
+238..+250 % and +18 % for the elongated node (6.1 mL), +35 % and +25 % for the necrotic mass
(26.5 mL); the bone lesions' contrasts lie within the calibration and keep their outlines. The image
cannot tell a lower uptake ratio from a lesion's shape: compact spheres of 4.2-33.5 mL filled 4:1,
below the 8:1 and 32:1 of the calibration, come out -43 % to -53 % by the contrast reading and +16 %
to +685 % by the self-consistent one (their true volume lies between the two). Calibrate with inserts
at the lowest uptake ratio expected.

Definitions, shared with the calibration on sphere inserts
(:mod:`MIBGCalibrationLib.threshold_calibration` calls the functions of this module, so that a
calibrated fraction means the same here):

- peak: the hottest voxel of the image smoothed by a Gaussian of one voxel (noise does not move it
  far); with a seed it is reached by steepest ascent from the seed.
- maximum: the background plus the apex of a Gaussian fitted to the values above the background
  in the 5 x 5 x 5 voxels around the peak (a quadratic fitted to the logarithm of the excess,
  weighted by the squared excess), re-fitted whenever the background is re-estimated. The hottest
  noisy voxel is biased upwards by the noise (on the calibration phantom's 4 mL insert, about 120
  counts per voxel, by 10 % in one noise realisation) and, at 17 mm FWHM on 4.4 mm voxels, downwards
  by 5 % for an 8 mL sphere centred between voxel centres; the fitted apex varies by less than
  0.5 % with the grid position, has a noise of 2-3 % on that insert, and, fitted above the
  background, does not depend on the lesion's contrast (so the fractions of the 8:1 calibration
  phantom transfer to lesions of other contrast).
- region: the 26-connected voxels at or above the threshold around the peak (inside the allowed
  region), refined to sub-voxel precision: every voxel on its edge (the region's voxels with a
  neighbour below the threshold, and those neighbours) is divided into 4 x 4 x 4 sub-voxels whose
  values are interpolated trilinearly between voxel centres, and counts with the fraction of its
  sub-voxels at or above the threshold. The volume so found changes smoothly with the threshold and
  hardly with the lesion's position on the voxel grid (by 0.2 % for an 8 mL sphere, against 10 %
  for a count of whole voxels). The returned
  mask holds the voxels of which at least half the sub-voxels are inside; ``info["volume_ml"]`` is
  the sub-voxel volume.
- background: the interquartile mean of the values in a shell 15 to 25 mm outside the region's
  voxels (beyond most of the 131I spill-out), leaving out voxels at or above the threshold (other
  hot structures), voxels outside the allowed region and voxels below half the shell's median (air
  beyond the body outline); robust to a lesion near the skin and to the edges of organs that the
  shell cuts.

Leak guard: a region that joins another hot spot (a separate hill of the smoothed image rising
more than a tenth of maximum - background above the level where it meets the lesion's hill), that
spreads to one side of its peak (its centroid farther from the peak than half the radius of a
sphere of its volume: it runs along the flank of a neighbour; judged from 27 voxels on), or that reaches
:data:`MAX_RADIUS_MM` from the peak, is not accepted; when no consistent region is
left, the result is marked as not converged with the reason in ``info["warning"]``. So is a result
whose peak lies farther from the seed than the radius of the region's volume: the climb from the
seed then ran up the flank of a hotter neighbour and delineated the neighbour. The dose
workflow passes the complement of neighbouring organ VOIs as ``allowed_mask``, so that a small
lesion next to a hot organ is delineated without it.
"""

import numpy as np
from scipy import ndimage

#: 26-connectivity of regions.
CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
#: Width (voxels) of the Gaussian that smooths the image for finding the peak and other hot spots.
SMOOTHING_SIGMA_VOXELS = 1.0
#: Half-width (voxels) of the neighbourhood of the peak to which the maximum is fitted.
FIT_HALF_WIDTH = 2
#: Sub-voxels per voxel along each axis on the region's edge.
SUBVOXELS = 4
#: Start of the background shell outside the lesion (mm).
SHELL_GAP_MM = 15.0
#: Thickness of the background shell (mm).
SHELL_THICKNESS_MM = 10.0
#: Shell voxels below this fraction of the shell's median are air or cold, not the lesion's background.
COLD_FRACTION = 0.5
#: Relative change of the background (of maximum - background) below which it has settled.
BACKGROUND_TOLERANCE = 0.001
#: Largest difference between the fraction used and the model's fraction for the found volume
#: that still counts as consistent.
FRACTION_TOLERANCE = 0.01
#: Step of the scan over threshold fractions, and bisection steps refining a consistent fraction.
SCAN_STEP = 0.01
BISECTION_STEPS = 20
#: Scan steps either side of a consistent fraction over which the stability of its volume is measured.
STABILITY_WINDOW = 2
#: Fraction of the smoothed peak value that delimits the first region, before any background is known.
START_FRACTION = 0.5
#: Re-estimations of the background from the latest region.
MAX_BACKGROUND_UPDATES = 10
#: Farthest a lesion region may reach from its peak (mm): a sphere of this radius holds 1.4 L.
MAX_RADIUS_MM = 70.0
#: Rise (fraction of maximum - background) above its meeting level that makes a hill another hot spot.
HOT_SPOT_PROMINENCE = 0.1
#: Share of a region's voxels on other hot spots above which the region has leaked.
LEAK_SHARE = 0.05
#: Distance of a region's centroid from its peak, as a share of its equivalent-sphere radius, beyond
#: which the region has leaked along the flank of a neighbour.
LOPSIDED_SHARE = 0.5
#: Smallest region (voxels) judged for spreading to one side: a few voxels at the apex, cut by the highest
#: thresholds, lie to one side of the peak voxel whenever the apex falls between voxel centres (a 6-voxel
#: region stopped the scan of a 33 mL lesion at its first threshold, leaving it without an outline).
LOPSIDED_MIN_VOXELS = 27


def smoothed(values):
    """The image smoothed for locating peaks (one-voxel Gaussian)."""
    return ndimage.gaussian_filter(np.asarray(values, dtype=float), SMOOTHING_SIGMA_VOXELS)


def fitted_maximum(values, peak, background):
    """Maximum at the lesion's apex and the apex position (voxel offset k, j, i from ``peak``): a
    Gaussian on the ``background`` pedestal fitted to the 5 x 5 x 5 voxels around ``peak``, as a
    quadratic in the offsets fitted to the logarithm of the values above the background, weighted by
    the square of those values (so that the weighted fit approximates a least-squares fit of the
    Gaussian itself and voxels near the background, whose logarithm is all noise, hardly count).
    Fitting above the background makes the maximum independent of the lesion's contrast. Without a
    closed apex (flat top) the fitted value at the peak voxel is used; an apex beyond one voxel is
    taken one voxel away."""
    values = np.asarray(values)
    half = FIT_HALF_WIDTH
    if any(p < half or p > n - 1 - half for p, n in zip(peak, values.shape)):
        raise ValueError("The lesion's peak lies on the edge of the SPECT image; its maximum cannot be measured.")
    excess = np.asarray(values[tuple(slice(p - half, p + half + 1) for p in peak)], dtype=float).ravel() - background
    if excess[excess.size // 2] <= 0:
        raise ValueError("The lesion's peak is not above the background; place the seed on a hot spot.")
    weight = np.clip(excess, 0.0, None)
    log_excess = np.log(np.maximum(excess, 1e-12 * excess.max()))
    k, j, i = (axis.ravel() for axis in np.indices((2 * half + 1,) * 3) - half)
    design = np.stack([np.ones_like(k), k, j, i, k * k, j * j, i * i, k * j, k * i, j * i], axis=1).astype(float)
    c = np.linalg.lstsq(design * weight[:, None], log_excess * weight, rcond=None)[0]
    gradient = c[1:4]
    hessian = np.array([[2 * c[4], c[7], c[8]], [c[7], 2 * c[5], c[9]], [c[8], c[9], 2 * c[6]]])
    offset = np.zeros(3)
    if np.all(np.linalg.eigvalsh(hessian) < 0):
        offset = np.clip(np.linalg.solve(hessian, -gradient), -1.0, 1.0)
    log_value = c[0] + gradient @ offset + 0.5 * offset @ hessian @ offset
    return float(background + np.exp(log_value)), offset


class ThresholdRegion:
    """The image around a peak, with the regions above a threshold and their sub-voxel volumes.

    ``values`` is the whole image [k, j, i], ``peak`` the peak voxel, ``allowed`` a boolean array
    (or None) of voxels the region may occupy, ``reach_mm`` how far from the peak the region may
    extend, ``background_allowed`` (or None) the voxels the background shell may use.
    """

    def __init__(self, values, peak, spacing_kji_mm, voxel_ml, allowed=None, reach_mm=MAX_RADIUS_MM,
                 background_allowed=None):
        values = np.asarray(values, dtype=float)
        spacing = np.asarray(spacing_kji_mm, dtype=float)
        half = np.ceil((reach_mm + SHELL_GAP_MM + SHELL_THICKNESS_MM) / spacing).astype(int) + 1
        low = np.maximum(0, np.asarray(peak) - half)
        high = np.minimum(values.shape, np.asarray(peak) + half + 1)
        self.box = tuple(slice(a, b) for a, b in zip(low, high))
        self.shape = values.shape
        self.values = values[self.box]
        self.peak = tuple(int(p - a) for p, a in zip(peak, low))
        self.spacing = spacing
        self.voxel_ml = float(voxel_ml)
        offsets = [(np.arange(n) - p) * s for n, p, s in zip(self.values.shape, self.peak, spacing)]
        distance_mm = np.sqrt(sum(o ** 2 for o in np.meshgrid(*offsets, indexing="ij")))
        self.region = distance_mm <= reach_mm
        if allowed is not None:
            self.region &= np.asarray(allowed, dtype=bool)[self.box]
        self.rim = self.region & (distance_mm > reach_mm - 1.5 * spacing.max())
        self.background_allowed = (np.ones(self.values.shape, dtype=bool) if background_allowed is None
                                   else np.asarray(background_allowed, dtype=bool)[self.box])
        grid = (np.arange(SUBVOXELS) + 0.5) / SUBVOXELS - 0.5
        self._subvoxel_offsets = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)

    def component(self, level):
        """26-connected voxels at or above ``level`` around the peak, inside the region (box array)."""
        labels, _ = ndimage.label((self.values >= level) & self.region, structure=CONNECTIVITY)
        label = labels[self.peak]
        return labels == label if label else np.zeros(self.values.shape, dtype=bool)

    def volume(self, level):
        """(sub-voxel volume in mL, majority mask, voxel component) of the region at ``level``."""
        component = self.component(level)
        if not component.any():
            return 0.0, component, component
        interior = ndimage.binary_erosion(component, CONNECTIVITY, border_value=0)
        edge = ndimage.binary_dilation(component, CONNECTIVITY) & self.region & ~interior
        centres = np.argwhere(edge).astype(float)
        points = (centres[:, None, :] + self._subvoxel_offsets[None, :, :]).reshape(-1, 3)
        sub = ndimage.map_coordinates(self.values, points.T, order=1, mode="nearest")
        inside = (sub >= level).reshape(len(centres), -1).mean(axis=1)
        mask = interior.copy()
        mask[edge] = inside >= 0.5
        return (float(interior.sum()) + float(inside.sum())) * self.voxel_ml, mask, component

    def background(self, component, level):
        """Background around ``component``: the interquartile mean (mean of the values between the
        25th and 75th percentiles) of the tissue in the shell SHELL_GAP_MM..+SHELL_THICKNESS_MM
        outside it. Left out are voxels at or above ``level`` (other hot structures), outside the
        background's allowed voxels, and below COLD_FRACTION of the shell's median (air beyond the
        body outline, which is no background of a lesion near the skin). Unlike the mean, the
        interquartile mean is not pulled up by the edges of hot organs that the shell cuts; unlike
        the median, it does not move in whole counts."""
        distance_mm = ndimage.distance_transform_edt(~component, sampling=self.spacing)
        shell = ((distance_mm > SHELL_GAP_MM) & (distance_mm <= SHELL_GAP_MM + SHELL_THICKNESS_MM)
                 & (self.values < level) & self.background_allowed)
        if not shell.any():
            raise ValueError("No background is left around the lesion (it fills the image or touches hot structures "
                             "everywhere); use a larger field of view.")
        shell_values = self.values[shell]
        shell_values = shell_values[shell_values >= COLD_FRACTION * np.median(shell_values)]
        low, high = np.percentile(shell_values, [25.0, 75.0])
        return float(shell_values[(shell_values >= low) & (shell_values <= high)].mean())

    def lopsided(self, component):
        """Whether the centroid of ``component`` lies farther from the peak than LOPSIDED_SHARE of the
        radius of a sphere of its volume (plus half a voxel): a lesion's region surrounds its peak."""
        if not component.any():
            return False
        offset_mm = (np.argwhere(component).mean(axis=0) - np.asarray(self.peak)) * self.spacing
        radius_mm = (3.0 * component.sum() * self.voxel_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
        return float(np.linalg.norm(offset_mm)) > LOPSIDED_SHARE * radius_mm + 0.5 * float(self.spacing.max())

    def full(self, box_mask):
        """A box mask placed on the whole image grid."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.box] = box_mask
        return mask


def _seed_index(spect, seed_ras_mm):
    ijk = np.round(spect.ijk_of_ras(np.asarray(seed_ras_mm, dtype=float))).astype(int)
    kji = tuple(int(v) for v in ijk[::-1])
    if any(v < 0 or v >= n for v, n in zip(kji, spect.array.shape)):
        raise ValueError(f"The seed point {list(seed_ras_mm)} (RAS mm) lies outside the SPECT image; "
                         "place it on the lesion.")
    return kji


def _roi_region(spect, roi_ras_mm):
    corners = np.asarray(roi_ras_mm, dtype=float)
    if corners.shape != (2, 3):
        raise ValueError("The lesion box must be given as two opposite corners ((R, A, S), (R, A, S)) in mm.")
    ijk = spect.ijk_of_ras(np.array([[a, b, c] for a in corners[:, 0] for b in corners[:, 1] for c in corners[:, 2]]))
    low = np.maximum(0, np.floor(ijk.min(0) + 0.5)).astype(int)
    high = np.minimum(np.array(spect.array.shape[::-1]) - 1, np.ceil(ijk.max(0) - 0.5)).astype(int)
    if np.any(high < low):
        raise ValueError("The lesion box lies outside the SPECT image.")
    region = np.zeros(spect.array.shape, dtype=bool)
    region[low[2]:high[2] + 1, low[1]:high[1] + 1, low[0]:high[0] + 1] = True
    return region


def _climb_to_peak(values, start, region):
    """Steepest ascent over 26-neighbours from ``start`` on ``values``, staying inside ``region``."""
    current = start
    shape = values.shape
    while True:
        window = tuple(slice(max(0, c - 1), min(n, c + 2)) for c, n in zip(current, shape))
        local = np.where(region[window], values[window], -np.inf)
        offset = np.unravel_index(int(np.argmax(local)), local.shape)
        best = tuple(w.start + o for w, o in zip(window, offset))
        if values[best] <= values[current]:
            return current
        current = best


def _other_hot_spots(smooth_box, lesion, maximum, background):
    """Voxels of the smoothed image on hills other than the lesion's: at each level from the
    background up to the maximum (steps of 0.05 of maximum - background), the connected parts above
    the level that do not hold the peak and rise at least HOT_SPOT_PROMINENCE above it."""
    other = np.zeros(smooth_box.shape, dtype=bool)
    height = maximum - background
    for fraction in np.arange(0.05, 1.0, 0.05):
        level = background + fraction * height
        labels, count = ndimage.label((smooth_box >= level) & lesion.region, structure=CONNECTIVITY)
        if count < 2:
            continue
        tops = ndimage.maximum(smooth_box, labels, np.arange(1, count + 1))
        hot = np.flatnonzero(tops >= level + HOT_SPOT_PROMINENCE * height) + 1
        hot = hot[hot != labels[lesion.peak]]
        other |= np.isin(labels, hot)
    return other


def adaptive_threshold_mask(spect, seed_ras_mm=None, model=None, roi_ras_mm=None, max_iterations=200,
                            allowed_mask=None):
    """Delineate the lesion marked by ``seed_ras_mm`` (RAS mm) and/or the box ``roi_ras_mm``.

    ``spect`` is an ImageVolume (counts or activity); ``model`` a ThresholdModel. With a box, the
    lesion's peak is searched in the box and the region is kept inside it; with a seed, the peak is
    reached by climbing from the seed on the smoothed image. ``allowed_mask`` (boolean, SPECT grid)
    limits where the region may grow and which voxels count as background, e.g. the complement of
    neighbouring organ VOIs. Returns ``(mask, info)``: a boolean array on the SPECT grid (voxels at
    least half inside the region) and a dict with iterations (regions evaluated), threshold (image
    units), fraction, fraction_mismatch (model fraction for the found volume minus the fraction
    used), volume_ml (sub-voxel volume), mask_volume_ml (volume of the mask's voxels), converged,
    maximum (fitted apex), background, contrast, peak_ras_mm (fitted apex position), the volume
    history (mL), warning (None, or why the result is not to be trusted) and contrast_check (None, or
    the lesion's image contrast against the calibration's, see :func:`_contrast_check`, with ``used``
    and, when the contrast-consistent outline replaced the self-consistent one, that one's
    ``self_consistent_volume_ml`` and ``self_consistent_fraction``). ``converged`` is False
    when no consistent region was found, the region leaked into other hot spots or the background did
    not settle; the mask is then the closest acceptable one.
    """
    if model is None:
        raise ValueError("A calibrated threshold model is needed (from the calibration record).")
    if seed_ras_mm is None and roi_ras_mm is None:
        raise ValueError("Mark the lesion with a seed point or a box.")
    values = np.asarray(spect.array, dtype=float)
    region = np.ones(values.shape, dtype=bool) if roi_ras_mm is None else _roi_region(spect, roi_ras_mm)
    if allowed_mask is not None:
        allowed_mask = np.asarray(allowed_mask, dtype=bool)
        if allowed_mask.shape != values.shape:
            raise ValueError(f"The allowed mask has shape {allowed_mask.shape}, the SPECT {values.shape}; "
                             "give it on the SPECT grid.")
        region = region & allowed_mask
    smooth = smoothed(values)
    if seed_ras_mm is None:
        if not region.any():
            raise ValueError("The lesion box holds no allowed voxel.")
        start = np.unravel_index(int(np.argmax(np.where(region, smooth, -np.inf))), values.shape)
    else:
        start = _seed_index(spect, seed_ras_mm)
        if not region[start]:
            raise ValueError("The seed point lies outside the lesion box or the allowed region; "
                             "place it on the lesion.")
    peak = _climb_to_peak(smooth, tuple(int(v) for v in start), region)
    top = float(smooth[peak])
    if top <= float(np.median(values)):
        raise ValueError("The marked spot is not brighter than the rest of the image; place the seed on a lesion.")
    lesion = ThresholdRegion(values, peak, np.asarray(spect.spacing_mm)[::-1], spect.voxel_volume_ml, region,
                             background_allowed=allowed_mask)
    start_level = START_FRACTION * top
    background = lesion.background(lesion.component(start_level), start_level)
    if top <= background:
        raise ValueError("The marked spot is not brighter than its surroundings; place the seed on a lesion.")
    maximum, apex_offset = fitted_maximum(values, peak, background)
    other = _other_hot_spots(smooth[lesion.box], lesion, maximum, background)
    history = []
    for _ in range(MAX_BACKGROUND_UPDATES):
        solution = _consistent_volume(model, maximum, background, lesion, other, max_iterations)
        history.extend(solution["history"])
        component = solution["component"].copy()
        component[lesion.peak] = True  # an empty region (threshold above every voxel) is the peak voxel
        updated = lesion.background(component, solution["level"])
        settled = abs(updated - background) <= BACKGROUND_TOLERANCE * (maximum - background)
        if settled:
            break
        background = updated
        maximum, apex_offset = fitted_maximum(values, peak, background)
    check = _contrast_check(model, lesion, maximum, background, solution["volume_ml"])
    if check is not None:
        alternative = check.pop("region")
        if solution["converged"] and settled and 0 < check["alternative_volume_ml"] < solution["volume_ml"] \
                and not _leak(lesion, other, alternative["component"]):
            check["self_consistent_volume_ml"] = float(solution["volume_ml"])
            check["self_consistent_fraction"] = float(solution["fraction"])
            check["used"] = True
            solution = {**solution, **alternative,
                        "mismatch": abs(model.fraction(alternative["volume_ml"], maximum / background)
                                        - alternative["fraction"])}
        else:
            check["used"] = False
    warning = solution["warning"]
    converged = solution["converged"] and settled
    if warning is None and not settled:
        warning = "the background around the lesion did not settle"
    apex_kji = np.asarray(peak, dtype=float) + apex_offset
    apex_ras = spect.ras_of_ijk(apex_kji[::-1])
    window = tuple(slice(max(0, c - 1), c + 2) for c in peak)
    if np.any(~region[window] & (smooth[window] > smooth[peak])):
        # The climb stopped at the edge of the allowed region or box, not on a hot spot of its own.
        converged = False
        warning = ("the hottest point reached from the seed lies on the edge of the allowed region or box, next "
                   "to hotter excluded voxels: the lesion has no peak of its own there; check the outline")
    if seed_ras_mm is not None:
        # A seed beyond the radius of the delineated volume around its peak is not on that hot spot: the
        # climb from the seed ran up the flank of a hotter neighbour, and the region is the neighbour.
        seed_distance_mm = float(np.linalg.norm(apex_ras - np.asarray(seed_ras_mm, dtype=float)))
        radius_mm = (3.0 * max(solution["volume_ml"], 0.0) * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
        if seed_distance_mm > radius_mm + 0.5 * float(np.linalg.norm(spect.spacing_mm)):
            converged = False
            warning = (f"the hottest point reached from the seed lies {seed_distance_mm:.0f} mm away, beyond the "
                       f"{radius_mm:.0f} mm radius of the region found there: the seed seems to sit on the flank of "
                       "a hotter neighbouring structure; exclude it (allowed mask) or mark the lesion with a box")
    info = {"iterations": len(history), "threshold": float(solution["level"]), "fraction": solution["fraction"],
            "fraction_mismatch": solution["mismatch"], "volume_ml": solution["volume_ml"],
            "mask_volume_ml": float(solution["mask"].sum()) * spect.voxel_volume_ml,
            "converged": bool(converged), "maximum": maximum,
            "background": float(background),
            "contrast": float(maximum / background) if background > 0 else None,
            "peak_ras_mm": [float(v) for v in apex_ras],
            "volume_history_ml": history, "warning": warning,
            "consistent_volumes_ml": solution["consistent_volumes_ml"], "ambiguity": solution["ambiguity"],
            "contrast_check": check}
    return lesion.full(solution["mask"]), info


def contrast_check_text(check):
    """What ``info["contrast_check"]`` means, in a sentence for the user."""
    if check.get("used"):
        return (f"its image contrast ({check['contrast']:.1f}) is {100 * check['shortfall']:.0f} % below that of a "
                f"calibrated sphere of its self-consistent volume ({check['self_consistent_volume_ml']:.1f} mL, "
                f"contrast {check['calibrated_contrast']:.1f} at the lowest calibrated concentration ratio): its "
                "uptake ratio is lower than calibrated, or it is smaller or not shaped like a sphere (elongated, "
                "hollow). The outline used is the one of a calibrated sphere with its contrast "
                f"({check['sphere_volume_ml']:.1f} mL sphere, fraction {check['alternative_fraction']:.3f}: "
                f"{check['alternative_volume_ml']:.1f} mL); the difference between both is in its segmentation "
                "uncertainty; check the outline")
    return (f"its image contrast ({check['contrast']:.1f}) is {100 * check['shortfall']:.0f} % below that of a "
            f"calibrated sphere of its volume (contrast {check['calibrated_contrast']:.1f} at the lowest calibrated "
            "concentration ratio): the threshold's fraction is extrapolated; check the outline")


def _contrast_check(model, lesion, maximum, background, volume_ml):
    """Whether the lesion's image contrast is one the calibration spheres of its volume showed.

    A calibrated sphere of the found volume at the lowest calibrated concentration ratio images at a
    contrast C_cal; a lesion imaged at a lower contrast C lies outside the calibration: either its
    uptake ratio is lower, or it is smaller than, or not shaped like, the region found (an elongated or
    hollow lesion peaks lower than a sphere of its volume, and its edge lies at a larger fraction of
    the peak, see the module docstring). The second reading is the calibrated sphere with the image
    contrast C, of volume V_C, and the region at the fraction the model gives for V_C. Returns None
    when the model has no contrast rows, the volume is not positive or C >= C_cal; else a dict with
    ``calibrated_contrast`` (C_cal), ``contrast`` (C), ``shortfall`` (1 - C / C_cal),
    ``sphere_volume_ml`` (V_C), ``alternative_fraction`` and ``alternative_volume_ml`` (the region's
    sub-voxel volume at that fraction) and ``region`` (that region: volume_ml, mask, component, level,
    fraction)."""
    if volume_ml <= 0 or background <= 0 or maximum <= background:
        return None
    calibrated = model.lowest_row_contrast(volume_ml)
    contrast = maximum / background
    if calibrated is None or contrast >= calibrated:
        return None
    sphere_ml = model.sphere_volume_at_lowest_row(contrast)
    fraction = model.fraction(sphere_ml, contrast)
    level = background + fraction * (maximum - background)
    alternative_ml, mask, component = lesion.volume(level)
    return {"calibrated_contrast": float(calibrated), "contrast": float(contrast),
            "shortfall": float(1.0 - contrast / calibrated), "sphere_volume_ml": float(sphere_ml),
            "alternative_fraction": float(fraction), "alternative_volume_ml": float(alternative_ml),
            "region": {"volume_ml": float(alternative_ml), "mask": mask, "component": component, "level": float(level),
                       "fraction": float(fraction)}}


def _leak(lesion, other, component):
    """Why ``component`` is no lesion region (see the module docstring), or None."""
    if component[lesion.rim].any():
        return f"reaches {MAX_RADIUS_MM:.0f} mm from its peak"
    if (component & other).sum() > LEAK_SHARE * component.sum():
        return "joins another hot spot"
    if component.sum() >= LOPSIDED_MIN_VOXELS and lesion.lopsided(component):
        return "spreads to one side of its peak (along the flank of a neighbouring structure)"
    return None


def _consistent_volume(model, maximum, background, lesion, other, max_iterations):
    """The region whose volume V gives back, through the model, the fraction that delineated it.

    With h(f) = fraction(V(f), C) - f, V(f) the sub-voxel volume of the region above
    ``background + f (maximum - background)``, the delineation is consistent where h(f) = 0, and the
    iteration f -> V -> fraction(V) settles only where h falls through zero as f rises. That iteration
    itself diverges for small lesions (their volume reacts more strongly to the threshold than the
    model to the volume), so the fixed points are located by scanning f downwards from the model's
    largest fraction in steps of :data:`SCAN_STEP` until the region leaks (see the module docstring),
    and bisecting every fall of h through zero. Regions for which the model's fraction is clipped at
    its maximum do not count.

    An irregular or elongated lesion on a noisy image can have several consistent fractions, and
    which of them is lowest changes between noise realisations. Of several, the one whose volume is
    most stable against the fraction is taken (smallest relative change of the volume over
    :data:`STABILITY_WINDOW` scan steps either side: the threshold then lies on a steep edge of the
    lesion, not on a shoulder where the region spreads into its surroundings); the volumes of all
    are returned (``consistent_volumes_ml``) and described in ``ambiguity``. A result below the
    calibrated volume range is marked as not converged; when every consistent region lies there (where
    the model is held at the smallest insert's fraction, so the crossing is an artefact of that) and
    regions inside the range were scanned, the one of them closest to consistency is returned instead,
    also marked as not converged. Without any fall through zero the acceptable
    fraction with the smallest |h| is returned, marked as not converged, and the warning gives the
    scanned volume-versus-fraction curve. ``max_iterations`` bounds the number of regions evaluated.
    """
    contrast = maximum / background if background > 0 else None
    history = []
    evaluated = {}

    def evaluate(fraction):
        level = background + fraction * (maximum - background)
        volume_ml, mask, component = lesion.volume(level)
        history.append(volume_ml)
        leak = _leak(lesion, other, component)
        clipped = volume_ml <= 0 or model.fraction(volume_ml, contrast) >= model.max_fraction
        h = model.fraction(volume_ml, contrast) - fraction if volume_ml > 0 else 0.0
        evaluated[fraction] = {"h": h, "clipped": clipped, "leak": leak, "level": level, "volume_ml": volume_ml,
                               "mask": mask, "component": component, "fraction": float(fraction)}
        return evaluated[fraction]

    leak = None
    scan = []
    for fraction in np.arange(model.max_fraction, model.min_fraction - 1e-9, -SCAN_STEP):
        if len(history) >= max_iterations:
            break
        result = evaluate(round(float(fraction), 6))
        if result["leak"]:
            leak = result["leak"]
            break
        scan.append(result)
    scan = scan[::-1]
    usable = [r for r in scan if not r["clipped"]]
    crossings = [i for i in range(len(scan) - 1)
                 if scan[i]["h"] >= 0 > scan[i + 1]["h"] and not scan[i]["clipped"] and not scan[i + 1]["clipped"]]
    solutions = []
    for crossing in crossings:
        low, high = scan[crossing], scan[crossing + 1]
        for _ in range(BISECTION_STEPS):
            if len(history) >= max_iterations:
                break
            middle = evaluate(0.5 * (low["fraction"] + high["fraction"]))
            if middle["leak"] or middle["clipped"]:
                break
            low, high = (middle, high) if middle["h"] >= 0 else (low, middle)
        solution = dict(min((low, high), key=lambda r: abs(r["h"])))
        solution["sensitivity"] = _volume_sensitivity(scan, crossing)
        solutions.append(solution)
    consistent = [r for r in solutions if abs(r["h"]) <= FRACTION_TOLERANCE]
    calibrated = [r for r in usable if model.covers(r["volume_ml"])]
    if consistent and calibrated and not any(model.covers(r["volume_ml"]) for r in consistent):
        # Below the smallest insert the model is held at that insert's fraction, so a crossing there is
        # an artefact of the clamping, not a calibrated answer: the closest calibrated region is better.
        best = min(calibrated, key=lambda r: abs(r["h"]))
        listed = ", ".join(f"{r['volume_ml']:.2f} mL" for r in consistent)
        return _result(best, history, False, None, [float(r["volume_ml"]) for r in consistent], (
            f"the only self-consistent regions ({listed}) are smaller than the smallest calibrated insert "
            f"({model.volume_range_ml[0]:.2f} mL), where the model is extrapolated; the calibrated region closest "
            f"to consistency is used ({best['volume_ml']:.2f} mL at fraction {best['fraction']:.3f}, model fraction "
            f"off by {abs(best['h']):.3f}): check the outline ({_curve_text(scan, contrast, model)})"))
    ambiguity = None
    if consistent:
        best = min(consistent, key=lambda r: r["sensitivity"])
        if len(consistent) > 1:
            listed = ", ".join(f"{r['volume_ml']:.1f} mL at fraction {r['fraction']:.3f}" for r in consistent)
            ambiguity = (f"{len(consistent)} threshold fractions are self-consistent ({listed}); the volume ranges "
                         f"from {min(r['volume_ml'] for r in consistent):.1f} to "
                         f"{max(r['volume_ml'] for r in consistent):.1f} mL; the one whose volume changes least "
                         f"with the fraction ({best['volume_ml']:.1f} mL) is used")
    elif solutions:
        best = min(solutions, key=lambda r: abs(r["h"]))
    elif usable:
        best = min(usable, key=lambda r: abs(r["h"]))
    elif scan:
        best = scan[0]
    else:
        best = evaluate(model.max_fraction)
    mismatch = abs(best["h"])
    converged = bool(consistent)
    warning = None
    if not converged:
        if leak:
            warning = (f"the lesion region {leak} before a consistent threshold was found; mark the lesion with a "
                       "box or exclude the neighbouring organs")
        else:
            warning = (f"no threshold fraction is self-consistent with the calibrated model for this hot spot "
                       f"({_curve_text(scan, contrast, model)}); the region at fraction {best['fraction']:.2f} "
                       f"({best['volume_ml']:.2f} mL, model fraction off by {mismatch:.3f}) is used instead: its "
                       "uptake does not look like a compact lesion on a uniform background (e.g. a lesion in "
                       "active marrow or bone, or with a cold core)")
    elif model.volume_range_ml is not None and best["volume_ml"] < model.volume_range_ml[0]:
        converged = False
        warning = (f"the self-consistent region ({best['volume_ml']:.2f} mL) is smaller than the smallest calibrated "
                   f"insert ({model.volume_range_ml[0]:.2f} mL), so its threshold is extrapolated: either the "
                   "lesion is that small, or its uptake is not a compact hot spot (e.g. a lesion in active marrow or "
                   f"bone, or with a cold core) ({_curve_text(scan, contrast, model)})")
    result = _result(best, history, converged, ambiguity, [float(r["volume_ml"]) for r in consistent], warning)
    result["mismatch"] = float(mismatch)
    return result


def _result(best, history, converged, ambiguity, consistent_volumes_ml, warning):
    return {"component": best["component"], "mask": best["mask"], "level": best["level"],
            "fraction": best["fraction"], "volume_ml": best["volume_ml"], "history": history,
            "converged": bool(converged), "mismatch": float(abs(best["h"])), "warning": warning,
            "consistent_volumes_ml": consistent_volumes_ml, "ambiguity": ambiguity}


def _volume_sensitivity(scan, crossing):
    """Relative change of the volume per unit fraction around the crossing between scan points
    ``crossing`` and ``crossing + 1``, over STABILITY_WINDOW scan steps either side."""
    low = max(0, crossing - STABILITY_WINDOW + 1)
    high = min(len(scan) - 1, crossing + STABILITY_WINDOW)
    v_low, v_high = scan[low]["volume_ml"], scan[high]["volume_ml"]
    df = scan[high]["fraction"] - scan[low]["fraction"]
    if v_low <= 0 or v_high <= 0 or df <= 0:
        return float("inf")
    return float(abs(np.log(v_low / v_high)) / df)


def _curve_text(scan, contrast, model, points=6):
    """The scanned volume-versus-fraction curve, a few points of it, for warnings."""
    if not scan:
        return "no region could be evaluated"
    picks = sorted(set(np.linspace(0, len(scan) - 1, min(points, len(scan))).round().astype(int)))
    parts = []
    for i in picks:
        r = scan[i]
        wanted = model.fraction(r["volume_ml"], contrast) if r["volume_ml"] > 0 else float("nan")
        parts.append(f"{r['fraction']:.2f} -> {r['volume_ml']:.1f} mL (model {wanted:.2f})")
    return "fraction -> volume: " + ", ".join(parts)
