"""Convolution of a time-integrated activity map with a voxel S-value kernel by FFT.

The result at voxel x is ``sum_y tia[y] * kernel[x - y + c]`` with ``c`` the kernel centre (the
kernel value at the centre is the source voxel's self-dose), over the whole map with zeros outside:
a 'same'-size linear convolution, exactly what direct summation gives.

Memory: the map is cut into slabs along the slowest axis (k); each slab is convolved with real FFTs
of sizes chosen by :func:`scipy.fft.next_fast_len` (large enough for a linear, not circular,
convolution) and its result, which reaches ``kernel_size - 1`` slices into its neighbours, is
added into the output (overlap-add). The slab thickness keeps the FFT work buffers below the map's
size, so the peak memory stays below three times the map (input, output and those buffers) for
kernels much smaller than the map. A kernel as large as the map (photons reaching the whole body)
would make thin slabs all overlap: slabs are then at least as thick as the kernel's overlap, so the
padded work stays within twice the useful one, and the memory is set by the kernel's spectrum.
"""

import numpy as np
import scipy.fft

#: Padded voxels per slab relative to the map. A slab needs four buffers of its padded size (the
#: padded slab, its spectrum, the kernel's spectrum and the inverse transform), so the peak memory is
#: about (2 + 4 x SLAB_FRACTION) times the map; thicker slabs waste less work on the overlap.
SLAB_FRACTION = 0.2
#: Smallest slab size (padded voxels) worth an FFT of its own.
MIN_SLAB_VOXELS = 1 << 21


def convolve_kernel(tia_map, kernel, *, dtype=np.float64, slab_slices=None, workers=-1):
    """Convolve ``tia_map`` (3-D, [k, j, i]) with ``kernel`` (odd size along every axis, centre = source voxel).

    Units: the product's; with TIA in MBq s and a kernel in mGy/(MBq s) the result is in mGy.
    ``dtype`` (float32 or float64) sets the arithmetic and the output type. ``slab_slices``
    overrides the automatic slab thickness. The inputs are not modified.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"The convolution runs in float32 or float64, not {dtype}.")
    source = np.asarray(tia_map)
    k = np.asarray(kernel, dtype=dtype)
    if source.ndim != 3 or k.ndim != 3:
        raise ValueError(f"Map and kernel must be 3-D arrays (got {source.ndim}-D and {k.ndim}-D).")
    if any(n % 2 == 0 for n in k.shape):
        raise ValueError(f"The kernel needs an odd size along every axis so that it has a centre voxel, "
                         f"got shape {k.shape}.")
    if not (np.all(np.isfinite(source)) and np.all(np.isfinite(k))):
        raise ValueError("Map and kernel must contain finite numbers only.")
    if k.size == 1:
        # Local deposition: the whole energy stays in the source voxel.
        return source.astype(dtype) * k.flat[0]
    nz, ny, nx = source.shape
    kz, ky, kx = k.shape
    fy = scipy.fft.next_fast_len(ny + ky - 1, real=True)
    fx = scipy.fft.next_fast_len(nx + kx - 1, real=True)
    if slab_slices is None:
        budget = max(SLAB_FRACTION * source.size, MIN_SLAB_VOXELS)
        slab_slices = int(max(1, budget // (fy * fx) - (kz - 1), kz - 1))
    # Slabs of equal thickness: a thin last slab would cost a whole padded transform.
    n_slabs = -(-nz // int(min(max(1, slab_slices), nz)))
    slab = -(-nz // n_slabs)
    fz = scipy.fft.next_fast_len(slab + kz - 1, real=True)
    shape = (fz, fy, fx)
    kernel_spectrum = scipy.fft.rfftn(k, s=shape, workers=workers)
    output = np.zeros(source.shape, dtype=dtype)
    cz, cy, cx = kz // 2, ky // 2, kx // 2
    for z0 in range(0, nz, slab):
        block = source[z0:z0 + slab].astype(dtype, copy=False)
        spectrum = scipy.fft.rfftn(block, s=shape, workers=workers)
        spectrum *= kernel_spectrum
        full = scipy.fft.irfftn(spectrum, s=shape, workers=workers, overwrite_x=True)
        del spectrum
        # Full-convolution index m along k lands on output slice z0 + m - cz.
        first = max(0, cz - z0)
        last = min(block.shape[0] + kz - 1, nz - z0 + cz)
        output[z0 + first - cz:z0 + last - cz] += full[first:last, cy:cy + ny, cx:cx + nx]
        del full
    if source.min() >= 0 and k.min() >= 0:
        # The exact result cannot be negative here; FFT rounding leaves values of order 1e-16 x max.
        np.maximum(output, 0.0, out=output)
    return output
