"""Spatial resolution of the reconstructed images, from the sphere phantom.

The sphere-phantom image is modelled as the sum of every insert's known shape and of the warm
background, each with its own uniform value, blurred by a 3-D Gaussian point-spread function:

    image ~ sum_i c_i (G_fwhm * sphere_i) + c_b (G_fwhm * (body - spheres)).

For a given FWHM the values c are a linear least-squares fit; the FWHM is the one that leaves the
smallest residual in the neighbourhood of the inserts. Its standard uncertainty comes from the
curvature of the residual sum of squares, ``u^2 = 2 s^2 / RSS''`` with ``s^2 = RSS / (n - p)``.
The resolution is what the geometric-transfer-matrix partial-volume correction of the dosimetry
needs; it describes the whole chain (collimator, reconstruction, post-filter) as the recovery
coefficients do.
"""

import dataclasses

import numpy as np
import scipy.ndimage
import scipy.optimize

from MIBGCalibrationLib import voi

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Range searched for the FWHM (mm); 131I SPECT with high-energy collimators lies well inside.
FWHM_RANGE_MM = (3.0, 45.0)
#: The fit uses voxels within this distance (mm) of an insert's surface.
NEIGHBOURHOOD_MM = 40.0


@dataclasses.dataclass
class ResolutionFit:
    fwhm_mm: float
    fwhm_uncertainty_mm: float
    values: list
    voxels: int

    def to_dict(self):
        return dataclasses.asdict(self)


def fit_resolution(spect, inserts, body):
    """FWHM (mm) of the Gaussian PSF that best explains the sphere-phantom image.

    spect: ImageVolume of the sphere phantom; inserts: list of (centre_ras_mm, radius_mm);
    body: boolean mask of the phantom interior (background compartment plus inserts).
    """
    if not inserts:
        raise ValueError("The resolution fit needs at least one sphere insert.")
    image = np.asarray(spect.array, dtype=np.float64)
    weights = [voi.sphere_weights(spect, centre, radius) for centre, radius in inserts]
    if any(w.sum() == 0 for w in weights):
        raise ValueError("A sphere insert lies outside the reconstructed image; check the insert centres.")
    background = np.clip(np.asarray(body, dtype=np.float64) - np.sum(weights, axis=0), 0.0, 1.0)
    bases = weights + [background]
    centres = voi.voxel_centres_ras(spect)
    near = np.zeros(image.shape, dtype=bool)
    for centre, radius in inserts:
        near |= np.linalg.norm(centres - np.asarray(centre, dtype=float), axis=-1) <= radius + NEIGHBOURHOOD_MM
    observed = image[near]
    spacing_kji = np.asarray(spect.spacing_mm, dtype=float)[::-1]

    def design(fwhm_mm):
        sigma = fwhm_mm * FWHM_TO_SIGMA / spacing_kji
        return np.stack([scipy.ndimage.gaussian_filter(b, sigma, mode="constant")[near] for b in bases], axis=1)

    def residual(fwhm_mm):
        a = design(fwhm_mm)
        values, *_ = np.linalg.lstsq(a, observed, rcond=None)
        return float(np.sum((a @ values - observed) ** 2)), values

    coarse = np.linspace(*FWHM_RANGE_MM, 15)
    best = coarse[int(np.argmin([residual(f)[0] for f in coarse]))]
    step = coarse[1] - coarse[0]
    result = scipy.optimize.minimize_scalar(lambda f: residual(f)[0], bounds=(max(best - step, FWHM_RANGE_MM[0]),
                                            min(best + step, FWHM_RANGE_MM[1])), method="bounded",
                                            options={"xatol": 0.01})
    fwhm = float(result.x)
    rss, values = residual(fwhm)
    h = 0.25
    curvature = (residual(fwhm + h)[0] - 2.0 * rss + residual(fwhm - h)[0]) / h ** 2
    dof = max(observed.size - len(bases) - 1, 1)
    uncertainty = float(np.sqrt(2.0 * (rss / dof) / curvature)) if curvature > 0 else float("nan")
    return ResolutionFit(fwhm, uncertainty, [float(v) for v in values], int(observed.size))


def blurred_sphere_recovery(volume_ml, fwhm_mm):
    """Recovery coefficient of a uniform sphere of ``volume_ml`` blurred by a 3-D Gaussian of
    ``fwhm_mm``: the mean of the blurred image over the sphere over its true value. With the
    volume of overlap of two spheres of radius R whose centres lie d apart,
    pi (4R + d)(2R - d)^2 / 12, this is the one-dimensional integral
    (1 / V) int_0^2R 4 pi d^2 g(d) overlap(d) dd, g the Gaussian's density."""
    radius = (3.0 * float(volume_ml) * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    sigma = float(fwhm_mm) * FWHM_TO_SIGMA
    d = np.linspace(0.0, 2.0 * radius, 2001)
    density = np.exp(-d * d / (2.0 * sigma * sigma)) / (2.0 * np.pi * sigma * sigma) ** 1.5
    overlap = np.pi * (4.0 * radius + d) * (2.0 * radius - d) ** 2 / 12.0
    integrand = 4.0 * np.pi * d * d * density * overlap
    integral = float(np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(d)))
    return integral / (4.0 / 3.0 * np.pi * radius ** 3)


def fwhm_from_recoveries(volumes_ml, recoveries, background_ratio=0.0):
    """FWHM (mm) of the Gaussian whose blurred spheres reproduce the measured recovery coefficients
    best, in relative terms (least squares of the logarithm of the ratio, since a partial-volume
    correction divides by the recovery), with the largest relative misfit over the spheres.

    This is the resolution a geometric-transfer-matrix correction should assume to reproduce the
    recoveries actually measured on the calibration phantom: on OSEM reconstructions of 131I the
    profile of the image is no Gaussian (the reconstruction's resolution depends on the object and
    its counts), and the FWHM of a profile fit need not give the spheres' recoveries. Needs three
    spheres or more.

    ``background_ratio`` is the background's concentration over the spheres' at the scan: in a warm
    background a sphere's VOI also collects the background's spill-in, so its measured recovery is
    ``r + b (1 - r)`` with ``r`` the sphere's own recovery (the background is taken as uniform up to
    the sphere's surface). Ignoring it makes the spheres look sharper than they are (at 8 : 1, a
    17 mm blur looks like about 14 mm)."""
    background = float(background_ratio)
    if not 0.0 <= background < 1.0:
        raise ValueError(f"The background-to-sphere concentration ratio must lie in [0, 1), got {background:g}.")
    volumes = np.asarray(volumes_ml, dtype=float)
    measured = np.asarray(recoveries, dtype=float)
    if volumes.size < 3 or volumes.size != measured.size:
        raise ValueError("The FWHM from recoveries needs the volumes and recoveries of three spheres or more.")
    if np.any(measured <= 0) or np.any(volumes <= 0):
        raise ValueError("Sphere volumes and recoveries must be positive to derive a FWHM from them.")

    def cost(fwhm_mm):
        own = np.array([blurred_sphere_recovery(v, fwhm_mm) for v in volumes])
        return float(np.sum(np.log((own + background * (1.0 - own)) / measured) ** 2))

    result = scipy.optimize.minimize_scalar(cost, bounds=FWHM_RANGE_MM, method="bounded",
                                            options={"xatol": 0.01})
    fwhm = float(result.x)
    own = np.array([blurred_sphere_recovery(v, fwhm) for v in volumes])
    return fwhm, float(np.max(np.abs((own + background * (1.0 - own)) / measured - 1.0)))


def recovery_background_ratio(details):
    """Background-to-sphere concentration ratio of the sphere phantom the recoveries were measured on,
    from a calibration record's ``details`` (0 when it states no background)."""
    recovery = (details or {}).get("recovery") or {}
    sphere = recovery.get("sphere_concentration_at_scan_MBq_per_ml") or 0.0
    background = recovery.get("background_concentration_at_scan_MBq_per_ml") or 0.0
    return float(background) / float(sphere) if sphere > 0 and 0 < background < sphere else 0.0
