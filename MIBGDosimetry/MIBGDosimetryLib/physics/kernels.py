"""Voxel S-value kernels of 131I for any voxel size (cubic or not).

The voxel S value S(d) is the mean absorbed dose in the target voxel at offset d (in voxels) per decay
uniformly distributed in the source voxel (MIRD Pamphlet 17, Bolch et al., J. Nucl. Med. 40 (1999)
11S). With the point kernel K(r) = Phi'(r) / (4 pi r^2 rho) of the radial cumulative deposition
Phi(r) (:mod:`.radial`) and voxels of edges a = (a_x, a_y, a_z) and volume V,

    S(d) = 1/V^2 * integral K(|h|) C(h - d a) d^3h,      C(u) = prod_i (a_i - |u_i|)_+,

C being the covariogram of the voxel (the volume shared by a voxel and its copy shifted by u).

- Offsets within reach of the electrons or next to the source voxel ("near" offsets) are integrated in
  spherical coordinates, where the 1/r^2 of the point kernel cancels:
  S(d) = 1/(4 pi rho V^2) * integral G_d(r) dPhi(r), G_d(r) = integral over the unit sphere of
  C(r Omega - d a) dOmega. G_d is evaluated with a Gauss-Legendre x uniform-azimuth product rule on the
  sphere, the radial integral with shells of an eightieth of the smallest voxel edge (dPhi exact per shell).
- Farther offsets see only photons, whose point kernel is smooth there: the integral is a product
  Gauss rule for the triangular weights (a_i - |u_i|) (Gauss-Jacobi nodes on each half), with four
  nodes per half up to ``DISTANT_OFFSET`` voxels, two up to twice that and one beyond, where the
  point kernel changes by a few per cent across a voxel (the rules differ by less than 5e-4 there).

Photons of 131I travel tens of centimetres: within 4.4 cm of a point source only 0.056 of the
0.383 MeV of photon energy per decay is absorbed, and the organ mean doses of the demo's child
phantom rise by 9 % (liver) to 33 % (lungs) when every photon absorbed in its body is counted (the
21^3 kernel falls short by more than 10 % for the lungs in
test_whole_map_kernel_counts_the_far_photons_of_the_whole_body). :func:`whole_map_kernel` therefore gives a kernel that
reaches from any voxel of a map to any other; it is zero only beyond the reach of the photon
calculation (60 g/cm2: 3 % of the photon energy of 131I is absorbed farther out in an infinite medium).

Assumption: the kernel is for soft tissue everywhere. Around a child's body there is air, so photons
that leave the body are not scattered back: for a source at the centre of an 8 cm tissue sphere
the infinite-medium kernel overestimates the photon energy absorbed in the sphere by 3-8 %, under 2 %
of all the energy absorbed there (test_tissue_outside_a_small_body_adds_a_few_percent_of_photon_energy);
more for sources and targets near the surface. This is not corrected.

Kernels are symmetric under reflection of each axis, so only one octant is computed, and under swaps
of axes with equal voxel edges. Results are cached per (voxel size, half width, density, tissue).
"""

import functools

import numpy as np
from scipy.special import roots_jacobi, roots_legendre

from MIBGDosimetryLib.physics.i131 import MGY_PER_MBQ_S_PER_MEV_PER_G
from MIBGDosimetryLib.physics.materials import get_material
from MIBGDosimetryLib.physics.radial import radial_kernel

MIN_VOXEL_MM = 0.5
MAX_VOXEL_MM = 20.0
MAX_HALF_WIDTH = 60
#: Largest kernel (voxels) :func:`whole_map_kernel` builds: about 0.5 GB in float64.
MAX_KERNEL_VOXELS = 64_000_000
#: Radial shell width of the near-offset integration, as a fraction of the smallest voxel edge.
SHELL_FRACTION = 1.0 / 80.0
#: Polar and azimuthal orders of the sphere quadrature.
POLAR_ORDER = 48
AZIMUTH_ORDER = 96
#: Gauss-Jacobi nodes per half voxel edge for far offsets, and for distant offsets (Chebyshev
#: distance above DISTANT_OFFSET voxels).
FAR_ORDER = 4
DISTANT_ORDER = 2
DISTANT_OFFSET = 12
REMOTE_ORDER = 1


def _sphere_rule():
    """Directions (n, 3) and weights of the product rule on the unit sphere, restricted to the octant of
    positive components (weights sum to 4 pi / 8).

    For a target offset d >= 0 the covariogram C(r Omega - d a) vanishes where Omega_i < 0 and d_i >= 1,
    and is even in Omega_i where d_i = 0, so the positive octant with the weight 2^(number of zero
    components of d) gives the whole sphere's integral; the rule is symmetric under each reflection."""
    cos_theta, polar_weight = roots_legendre(POLAR_ORDER)
    phi = (np.arange(AZIMUTH_ORDER) + 0.5) * 2.0 * np.pi / AZIMUTH_ORDER
    sin_theta = np.sqrt(1.0 - cos_theta ** 2)
    directions = np.stack([np.outer(sin_theta, np.cos(phi)), np.outer(sin_theta, np.sin(phi)),
                           np.outer(cos_theta, np.ones_like(phi))], axis=-1).reshape(-1, 3)
    weights = np.outer(polar_weight, np.full(AZIMUTH_ORDER, 2.0 * np.pi / AZIMUTH_ORDER)).ravel()
    positive = np.all(directions > 0.0, axis=1)
    return directions[positive], weights[positive]


def _triangle_rule(order=FAR_ORDER):
    """Nodes t in [-1, 1] and weights (sum 1) for integrals against the weight (1 - |t|)."""
    x, w = roots_jacobi(order, 1.0, 0.0)
    half_nodes = 0.5 * (x + 1.0)
    half_weights = 0.5 * w / w.sum()
    return np.concatenate([-half_nodes, half_nodes]), np.concatenate([half_weights, half_weights])


def _validate(voxel_mm, half_width, density_g_cm3):
    voxel = np.atleast_1d(np.asarray(voxel_mm, dtype=float))
    if voxel.size == 1:
        voxel = np.repeat(voxel, 3)
    if voxel.size != 3 or not np.all(np.isfinite(voxel)):
        raise ValueError("Give the voxel size as one edge length or three (x, y, z) in mm.")
    if np.any(voxel < MIN_VOXEL_MM) or np.any(voxel > MAX_VOXEL_MM):
        raise ValueError(f"Voxel edges must lie between {MIN_VOXEL_MM} and {MAX_VOXEL_MM} mm; got {voxel.tolist()} mm.")
    if int(half_width) != half_width or not 0 <= half_width <= MAX_HALF_WIDTH:
        raise ValueError(f"The kernel half width must be a whole number of voxels from 0 to {MAX_HALF_WIDTH}; "
                         f"got {half_width}.")
    if not (np.isfinite(density_g_cm3) and 0.01 <= density_g_cm3 <= 3.0):
        raise ValueError(f"The tissue density must lie between 0.01 and 3 g/cm3; got {density_g_cm3}.")
    return tuple(round(float(v), 9) for v in voxel)


def voxel_s_kernel(voxel_mm, half_width, density_g_cm3=None, material="soft_tissue"):
    """131I voxel S-value kernel in mGy/(MBq s).

    ``voxel_mm``: voxel edges (x, y, z) in mm (or one number for cubic voxels); ``half_width`` N:
    the kernel covers offsets -N..N; ``density_g_cm3``: tissue density (default: the material's nominal
    density, 1.04 g/cm3 for soft tissue); ``material``: tissue
    composition (see :mod:`.materials`). Returns a new float64 array of shape (2N+1, 2N+1, 2N+1) indexed
    [k, j, i] (k along z), with the source voxel at the centre."""
    if density_g_cm3 is None:
        density_g_cm3 = get_material(material).nominal_density_g_cm3
    get_material(material)
    voxel = _validate(voxel_mm, half_width, density_g_cm3)
    return _cached_kernel(voxel, int(half_width), float(density_g_cm3), material).copy()


@functools.lru_cache(maxsize=8)
def _cached_kernel(voxel_mm, half_width, density_g_cm3, material):
    octant = octant_s_values(voxel_mm, half_width, density_g_cm3, material)
    kernel = np.empty((2 * half_width + 1,) * 3)
    index = np.abs(np.arange(-half_width, half_width + 1))
    kernel[...] = octant[np.ix_(index, index, index)].transpose(2, 1, 0)
    kernel.setflags(write=False)
    return kernel


def whole_map_kernel(voxel_mm, shape_kji, density_g_cm3=None, material="soft_tissue", max_half_width=None):
    """131I voxel S-value kernel (mGy/(MBq s)) that reaches from any voxel of a map of ``shape_kji``
    voxels to any other, so that the convolution counts every photon absorbed within the map.

    ``max_half_width``: optional limit of the reach in voxels along every axis (at least 1); a
    shorter kernel leaves out photon dose. Offsets beyond the 60 g/cm2 of the photon calculation
    get S = 0. Returns a new float64 array of shape (2 N_z + 1, 2 N_y + 1, 2 N_x + 1), indexed
    [k, j, i], with N along each axis the smaller of the map size minus one and ``max_half_width``."""
    if density_g_cm3 is None:
        density_g_cm3 = get_material(material).nominal_density_g_cm3
    get_material(material)
    shape = tuple(int(n) for n in np.atleast_1d(shape_kji))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"The map shape must be three positive sizes (k, j, i), got {shape_kji}.")
    widths_zyx = [n - 1 for n in shape]
    if max_half_width is not None:
        validate_reach(max_half_width)
        widths_zyx = [min(w, int(max_half_width)) for w in widths_zyx]
    widths = tuple(max(w, 0) for w in widths_zyx[::-1])
    voxel = _validate(voxel_mm, 0, density_g_cm3)
    size = int(np.prod([2 * w + 1 for w in widths]))
    if size > MAX_KERNEL_VOXELS:
        raise ValueError(f"A kernel over the whole map would hold {size:,} voxels (more than {MAX_KERNEL_VOXELS:,}); "
                         "crop the SPECT to the patient's body or give a kernel half width.")
    return _cached_map_kernel(voxel, widths, float(density_g_cm3), material).copy()


def validate_reach(half_width):
    """Check a kernel reach given by the user (whole voxels, at least 1)."""
    if isinstance(half_width, bool) or int(half_width) != half_width or half_width < 1:
        raise ValueError(f"The kernel half width must be a whole number of voxels of at least 1 (got {half_width}): "
                         "a kernel of the source voxel alone leaves out the electrons crossing into the neighbours "
                         "and every photon. Leave it unset for a kernel over the whole map.")


@functools.lru_cache(maxsize=2)
def _cached_map_kernel(voxel_mm, widths_xyz, density_g_cm3, material):
    octant = octant_s_values(voxel_mm, widths_xyz, density_g_cm3, material, beyond_data="zero")
    index = [np.abs(np.arange(-w, w + 1)) for w in widths_xyz]
    kernel = octant[np.ix_(*index)].transpose(2, 1, 0)
    kernel.setflags(write=False)
    return kernel


def octant_s_values(voxel_mm, half_width, density_g_cm3=1.0, material="soft_tissue", *, beyond_data="raise"):
    """S values (mGy/(MBq s)) for the offsets i, j, k = 0..N along x, y, z, as an array [i, j, k].

    ``half_width``: N, or (N_x, N_y, N_z). Offsets beyond the reach of the photon calculation raise
    an error, or with ``beyond_data="zero"`` get S = 0."""
    edges_cm = np.asarray(voxel_mm, dtype=float) / 10.0
    widths = np.broadcast_to(np.asarray(half_width, dtype=int), (3,))
    volume_cm3 = float(np.prod(edges_cm))
    radial = radial_kernel(material)
    reach_cm = float(np.linalg.norm((widths + 1) * edges_cm))
    if beyond_data == "raise" and reach_cm * density_g_cm3 > radial.photon_max_radius_g_cm2:
        raise ValueError(f"A kernel reaching {reach_cm:.0f} cm at {density_g_cm3} g/cm3 exceeds the "
                         f"{radial.photon_max_radius_g_cm2:g} g/cm2 of the photon calculation; "
                         "use a smaller half width.")
    electron_reach_cm = radial.electron_range_g_cm2 / density_g_cm3
    offsets = np.stack(np.meshgrid(*[np.arange(w + 1) for w in widths], indexing="ij"), axis=-1).reshape(-1, 3)
    nearest_cm = np.linalg.norm(np.clip(offsets - 1, 0, None) * edges_cm, axis=1)
    near = (nearest_cm < electron_reach_cm) | (offsets.max(axis=1) <= 2)
    values = np.zeros(len(offsets))
    directions, weights = _sphere_rule()
    # Offsets that differ by a swap of axes with equal voxel edges have equal S values.
    done = {}
    for n in np.nonzero(near)[0]:
        key = tuple(sorted(zip(edges_cm.tolist(), offsets[n].tolist())))
        if key not in done:
            done[key] = _near_value(offsets[n] * edges_cm, edges_cm, volume_cm3, density_g_cm3, radial,
                                    directions, weights, nearest_cm[n])
        values[n] = done[key]
    # Beyond the photon data the kernel is zero (only with beyond_data="zero"; checked above otherwise).
    farthest_cm = np.linalg.norm((offsets + 1) * edges_cm, axis=1)
    known = farthest_cm * density_g_cm3 <= radial.photon_max_radius_g_cm2
    chebyshev = offsets.max(axis=1)
    distant = chebyshev > DISTANT_OFFSET
    remote = chebyshev > 2 * DISTANT_OFFSET
    for rule, chosen in ((FAR_ORDER, ~near & ~distant & known), (DISTANT_ORDER, ~near & distant & ~remote & known),
                         (REMOTE_ORDER, ~near & remote & known)):
        index = np.nonzero(chosen)[0]
        if index.size:
            values[index] = _far_values(offsets[index] * edges_cm, edges_cm, density_g_cm3, radial, rule)
    return values.reshape(tuple(widths + 1)) * MGY_PER_MBQ_S_PER_MEV_PER_G


def _near_value(centre_cm, edges_cm, volume_cm3, density_g_cm3, radial, directions, weights, nearest_cm):
    """S(d) in MeV/g per decay by the spherical-coordinate integral."""
    farthest_cm = float(np.linalg.norm(np.abs(centre_cm) + edges_cm))
    shell_cm = SHELL_FRACTION * edges_cm.min()
    count = max(int(np.ceil((farthest_cm - nearest_cm) / shell_cm)), 1)
    radius_edges_cm = np.linspace(nearest_cm, farthest_cm, count + 1)
    energy_MeV = np.diff(radial.cumulative_MeV(radius_edges_cm * density_g_cm3))
    radius_cm = 0.5 * (radius_edges_cm[1:] + radius_edges_cm[:-1])
    points = radius_cm[:, None, None] * directions[None, :, :] - centre_cm
    overlap = np.prod(np.clip(edges_cm - np.abs(points), 0.0, None), axis=-1)
    angular = (overlap @ weights) * 2.0 ** np.count_nonzero(centre_cm == 0.0)
    total = energy_MeV @ angular
    if not np.any(centre_cm):
        # Energy absorbed on the spot (r = 0), where the angular integral is 4 pi V.
        total += radial.electron_cumulative_MeV(0.0) * 4.0 * np.pi * volume_cm3
    return total / (4.0 * np.pi * density_g_cm3 * volume_cm3 ** 2)


def _far_values(centres_cm, edges_cm, density_g_cm3, radial, order=FAR_ORDER):
    """S(d) in MeV/g per decay by the product triangle rule on the (photon-only) point kernel."""
    nodes, node_weights = _triangle_rule(order)
    shifts = np.stack(np.meshgrid(*[nodes * e for e in edges_cm], indexing="ij"), axis=-1).reshape(-1, 3)
    shift_weights = np.einsum("i,j,k->ijk", node_weights, node_weights, node_weights).ravel()
    values = np.empty(len(centres_cm))
    block_size = max(1, 1_000_000 // len(shifts))
    for start in range(0, len(centres_cm), block_size):
        block = centres_cm[start:start + block_size]
        radius_cm = np.linalg.norm(block[:, None, :] + shifts[None, :, :], axis=-1)
        density = density_g_cm3 * radial.photon_density_MeV_per_g_cm2(radius_cm * density_g_cm3)
        point_kernel = density / (4.0 * np.pi * radius_cm ** 2 * density_g_cm3)
        values[start:start + block_size] = point_kernel @ shift_weights
    return values
