"""``mibgdose kernel``: compute the 131I voxel S-value kernel for a voxel size and save it (.npy)."""

import json
import os
import pathlib
import tempfile
import time

NAME = "kernel"
HELP = "compute the 131I voxel S-value kernel (mGy/(MBq s)) for a voxel size and write it as .npy"


def add_arguments(parser):
    parser.add_argument("--voxel-mm", required=True, nargs="+", type=float, metavar="MM",
                        help="voxel edge in mm (one value for cubic voxels, or three: x y z)")
    parser.add_argument("--half-width", required=True, type=int, metavar="N",
                        help="kernel half width in voxels: the kernel has (2N+1)^3 voxels")
    parser.add_argument("--density-g-cm3", type=float, default=None,
                        help="tissue density (default: the material's nominal density, 1.04 for soft tissue)")
    parser.add_argument("--material", default="soft_tissue", help="soft_tissue (default), water or bone")
    parser.add_argument("--out", required=True, help="output .npy file, array [k, j, i] in mGy/(MBq s)")


def write_npy_atomically(path, array):
    """Write ``array`` to ``path`` completely or not at all (temporary file beside it, then rename)."""
    import numpy as np

    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"The output folder {path.parent} does not exist.")
    handle, temporary = tempfile.mkstemp(suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, array)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def run(args):
    from MIBGDosimetryLib.physics.kernels import voxel_s_kernel
    from MIBGDosimetryLib.physics.materials import get_material

    if len(args.voxel_mm) not in (1, 3):
        raise ValueError("Give --voxel-mm as one value (cubic voxels) or three values (x y z).")
    if not str(args.out).endswith(".npy"):
        raise ValueError("The kernel is written as a NumPy file: give --out a name ending in .npy.")
    voxel_mm = args.voxel_mm * 3 if len(args.voxel_mm) == 1 else args.voxel_mm
    density = args.density_g_cm3
    if density is None:
        density = get_material(args.material).nominal_density_g_cm3
    start = time.perf_counter()
    kernel = voxel_s_kernel(voxel_mm, args.half_width, density, args.material)
    seconds = time.perf_counter() - start
    write_npy_atomically(args.out, kernel)
    centre = args.half_width
    print(json.dumps({
        "out": str(args.out), "voxel_mm": voxel_mm, "half_width": args.half_width, "shape": list(kernel.shape),
        "density_g_cm3": density, "material": args.material, "units": "mGy/(MBq s)",
        "index_order": "k, j, i (z, y, x)", "S000": float(kernel[centre, centre, centre]),
        "seconds": round(seconds, 3)}))
    return 0
