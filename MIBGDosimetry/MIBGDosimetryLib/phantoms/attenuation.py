"""Photon attenuation in a uniform cylinder, averaged over projection angles: the factor that the
first-order Chang correction divides by."""

import numpy as np

#: Linear attenuation coefficient of water at 364 keV (EANM guidance: 0.11 /cm).
MU_WATER_364KEV_PER_CM = 0.11


def mean_attenuation_factor(x_mm, y_mm, radius_mm, mu_per_cm=MU_WATER_364KEV_PER_CM, n_angles=128):
    """mean over angles theta of exp(-mu L(theta)) for points (x, y) inside a circle of ``radius_mm``
    about the origin; L is the path from the point to the circle towards direction theta.

    Outside the circle the factor is 1 (no activity there).
    """
    x = np.asarray(x_mm, dtype=float)
    y = np.asarray(y_mm, dtype=float)
    r2 = x * x + y * y
    inside = r2 <= radius_mm ** 2
    total = np.zeros(np.broadcast(x, y).shape)
    for theta in (np.arange(n_angles) + 0.5) * 2.0 * np.pi / n_angles:
        p_dot_u = x * np.cos(theta) + y * np.sin(theta)
        path_mm = -p_dot_u + np.sqrt(np.clip(p_dot_u ** 2 - (r2 - radius_mm ** 2), 0.0, None))
        total += np.exp(-mu_per_cm * path_mm / 10.0)
    return np.where(inside, total / n_angles, 1.0)
