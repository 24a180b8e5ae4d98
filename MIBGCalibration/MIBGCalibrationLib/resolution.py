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
