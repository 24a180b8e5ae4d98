"""Benchmarks: our implementation and a baseline, measured in the same run on generated data.

Each measurement runs in a fresh Python process so that its peak memory (the rise of the resident
set size over the process's state just before the measured call, read from /proc) belongs to it alone.
Printed per benchmark: ``ours_s``, ``baseline_s``, ``ratio`` (baseline / ours), ``peak_mb`` and the
target with whether it was met.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
README = REPO / "README.md"
README_BEGIN = "<!-- benchmark-table:begin -->"
README_END = "<!-- benchmark-table:end -->"


def measure(snippet, setup="", timeout_s=3000):
    """Run ``setup`` then time ``snippet`` in a fresh interpreter; return (seconds, peak_mb, value).

    ``snippet`` may assign ``value`` (a JSON-serialisable result that the benchmark checks).
    """
    program = f"""
import json, time, gc
def _rss_kb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1])
{setup}
gc.collect()
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset the peak resident set size (VmHWM) to the current one
_before = _rss_kb('VmRSS:')
value = None
_t0 = time.perf_counter()
{snippet}
_elapsed = time.perf_counter() - _t0
_peak = _rss_kb('VmHWM:')
print('BENCHMARK-RESULT ' + json.dumps({{'seconds': _elapsed, 'peak_mb': (_peak - _before) / 1024.0, 'value': value}}))
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout_s,
                          cwd=str(REPO))
    if done.returncode != 0:
        raise RuntimeError(f"benchmark process failed:\n{done.stderr[-4000:]}")
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("BENCHMARK-RESULT ")][-1]
    result = json.loads(line.split(" ", 1)[1])
    return result["seconds"], result["peak_mb"], result["value"]


def best_of(n, snippet, setup=""):
    runs = [measure(snippet, setup) for _ in range(n)]
    return min(runs, key=lambda r: r[0])


KERNEL_SETUP = """
import numpy as np
from MIBGDosimetryLib.physics.kernels import voxel_s_kernel
kernel = voxel_s_kernel((4.42, 4.42, 4.42), 10)
"""


def bench_convolution_128():
    setup = KERNEL_SETUP + """
rng = np.random.default_rng(0)
tia = rng.gamma(2.0, 50.0, (128, 128, 128)).astype(np.float32)
from MIBGDosimetryLib.dose.convolution import convolve_kernel
import scipy.signal
"""
    ours = best_of(3, "out = convolve_kernel(tia, kernel, dtype=np.float32)", setup)
    base = best_of(3, "out = scipy.signal.fftconvolve(tia.astype(np.float64), kernel, mode='same')", setup)
    return row("convolution 128^3 (kernel 21^3), ours in float32", ours, base, "scipy.signal.fftconvolve float64",
               target="ours_s < 0.3", met=ours[0] < 0.3)


def bench_convolution_ct_grid(dtype="float32"):
    setup = KERNEL_SETUP + f"""
rng = np.random.default_rng(0)
tia = np.zeros((300, 512, 512), np.float32)
tia[60:240, 96:416, 96:416] = rng.gamma(2.0, 50.0, (180, 320, 320))
tia = tia.astype(np.{dtype})
input_mb = tia.nbytes / 2**20
from MIBGDosimetryLib.dose.convolution import convolve_kernel
import scipy.signal
"""
    ours = measure(f"out = convolve_kernel(tia, kernel, dtype=np.{dtype}); value = input_mb", setup)
    base = measure("out = scipy.signal.fftconvolve(tia.astype(np.float64), kernel, mode='same'); value = input_mb",
                   setup)
    input_mb = ours[2]
    met = ours[0] < 15.0 and ours[1] < 3.0 * input_mb
    return row(f"convolution 512x512x300 (kernel 21^3), ours in {dtype}", ours, base, "scipy.signal.fftconvolve float64",
               target=f"ours_s < 15 and peak_mb < 3 x input ({3 * input_mb:.0f} MB)", met=met)


def bench_convolution_direct():
    setup = KERNEL_SETUP + """
rng = np.random.default_rng(0)
tia = rng.gamma(2.0, 50.0, (40, 40, 40))
small = kernel[5:-5, 5:-5, 5:-5]  # 11^3
from MIBGDosimetryLib.dose.convolution import convolve_kernel

def direct(tia, kernel):
    # What a straightforward implementation does: one shifted multiply-add per kernel voxel.
    c = np.array(kernel.shape) // 2
    padded = np.pad(tia, [(n, n) for n in c])
    out = np.zeros_like(tia)
    nz, ny, nx = tia.shape
    for dz in range(kernel.shape[0]):
        for dy in range(kernel.shape[1]):
            for dx in range(kernel.shape[2]):
                out += kernel[dz, dy, dx] * padded[2 * c[0] - dz:2 * c[0] - dz + nz,
                                                   2 * c[1] - dy:2 * c[1] - dy + ny,
                                                   2 * c[2] - dx:2 * c[2] - dx + nx]
    return out
"""
    ours = best_of(3, "out = convolve_kernel(tia, small)", setup)
    base = best_of(1, "out = direct(tia, small)", setup)
    return row("convolution 40^3 (kernel 11^3)", ours, base, "direct summation (numpy shift-and-add loop)",
               target="ratio > 1", met=base[0] / ours[0] > 1)


def bench_whole_map_kernel():
    """What the dose calculation does on a 128^3 SPECT of 4.42 mm voxels: the voxel S kernel reaching the
    whole map (255^3, photons to 56 cm) computed and convolved in float64."""
    setup = """
import numpy as np
import scipy.signal
from MIBGDosimetryLib.physics import radial
from MIBGDosimetryLib.physics.kernels import whole_map_kernel
from MIBGDosimetryLib.dose.convolution import convolve_kernel
radial.radial_kernel()
rng = np.random.default_rng(0)
tia = rng.gamma(2.0, 50.0, (128, 128, 128))
"""
    ours = measure("kernel = whole_map_kernel(4.42, tia.shape); out = convolve_kernel(tia, kernel)", setup)
    base = measure("kernel = whole_map_kernel(4.42, tia.shape); out = scipy.signal.fftconvolve(tia, kernel, mode='same')",
                   setup)
    return row("whole-map kernel (255^3) computed and convolved with a 128^3 map, float64", ours, base,
               "the same kernel, scipy.signal.fftconvolve float64", target="ours_s < 20 and peak_mb < 4096",
               met=ours[0] < 20 and ours[1] < 4096)


VOXEL_SETUP = """
import numpy as np
from MIBGDosimetryLib.voxel_tac import fit_voxels
rng = np.random.default_rng(0)
times = np.array([22.0, 46.0, 70.0, 142.0])
n = 2_000_000
a0 = rng.uniform(0.01, 1.0, n)
rate = rng.uniform(0.005, 0.03, n)
clean = a0 * np.exp(-np.outer(times, rate))
maps = clean * (1 + 0.05 * rng.standard_normal(clean.shape))
"""


def bench_voxel_fit():
    ours = measure("tia, info = fit_voxels(times, maps, model='mono')", VOXEL_SETUP)
    sample = 400
    base = measure(f"""
from scipy.optimize import curve_fit
def mono(t, a, l):
    return a * np.exp(-l * t)
for v in range({sample}):
    y = maps[:, v]
    p, cov = curve_fit(mono, times, y, p0=(y[0], 0.01), sigma=y, maxfev=2000)
""", VOXEL_SETUP)
    scale = 2_000_000 / sample
    base = (base[0] * scale, base[1], base[2])
    ratio = base[0] / ours[0]
    return row("per-voxel TAC fit, 2e6 voxels x 4 time points", ours, base,
               f"scipy.optimize.curve_fit loop ({sample} voxels, scaled to 2e6)",
               target="ours_s < 20 and ratio >= 200", met=ours[0] < 20 and ratio >= 200)


PHANTOM_SETUP = """
import os, tempfile
from MIBGDosimetryLib.phantoms import patient, calibration
from MIBGCalibrationLib.phantom_calibration import calibrate_phantom_folder, write_outputs
work = os.environ['MIBG_BENCH_WORK']
study = os.path.join(work, 'patient-study')
record = os.path.join(work, 'calibration.json')
"""


def _prepare_phantoms(work):
    """Write the default patient study and calibration record once (not timed)."""
    os.environ["MIBG_BENCH_WORK"] = work
    if not os.path.exists(os.path.join(work, "calibration.json")):
        measure("""
patient.write_patient_study(study, patient.PatientConfig(seed=1))
calibration.write_calibration_set(os.path.join(work, 'calibration-phantom'), calibration.CalibrationConfig(seed=1))
write_outputs(calibrate_phantom_folder(os.path.join(work, 'calibration-phantom')), record)
""", PHANTOM_SETUP)


def bench_registration(work):
    _prepare_phantoms(work)
    setup = PHANTOM_SETUP + """
import SimpleITK as sitk
from MIBGDosimetryLib.study import load_study
from MIBGDosimetryLib.registration.rigid import register_rigid
timepoints = load_study(study).timepoints[:3]

def standard(fixed, moving):
    # SimpleITK's documented multi-resolution rigid registration, on the CTs as they are.
    f = sitk.Cast(fixed.to_sitk(), sitk.sitkFloat32)
    m = sitk.Cast(moving.to_sitk(), sitk.sitkFloat32)
    initial = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(0.01, seed=1)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=100, convergenceMinimumValue=1e-6,
                                    convergenceWindowSize=10)
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([4, 2, 1])
    r.SetSmoothingSigmasPerLevel([2, 1, 0])
    r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    r.SetInitialTransform(initial, inPlace=False)
    return r.Execute(f, m)
"""
    ours = measure("for tp in timepoints[1:]: register_rigid(timepoints[0].ct, tp.ct)", setup)
    base = measure("for tp in timepoints[1:]: standard(timepoints[0].ct, tp.ct)", setup)
    return row("rigid CT registration, 3 time points of the patient phantom", ours, base,
               "SimpleITK multi-resolution Euler3D / Mattes MI example settings", target="ratio >= 1",
               met=base[0] / ours[0] >= 1)


def bench_whole_dose(work):
    _prepare_phantoms(work)
    out = os.path.join(work, "dose-out")
    ours = measure(f"""
import shutil
shutil.rmtree({out!r}, ignore_errors=True)
from MIBGDosimetryLib.cli import main
assert main(['dose', study, '--calibration', record, '--out', {out!r}]) == 0
""", PHANTOM_SETUP)
    return row("whole 'mibgdose dose' on the default patient phantom (5 time points)", ours, None,
               "none (no open tool runs this chain)", target="ours_s < 60 and peak_mb < 4096",
               met=ours[0] < 60 and ours[1] < 4096)


def row(name, ours, base, baseline_name, target, met):
    return {
        "benchmark": name,
        "ours_s": round(ours[0], 4),
        "baseline_s": None if base is None else round(base[0], 4),
        "ratio": None if base is None else round(base[0] / ours[0], 2),
        "peak_mb": round(ours[1], 1),
        "baseline_peak_mb": None if base is None else round(base[1], 1),
        "baseline": baseline_name,
        "target": target,
        "met": bool(met),
    }


BENCHMARKS = {
    "conv128": bench_convolution_128,
    "convct": bench_convolution_ct_grid,
    "convct64": lambda: bench_convolution_ct_grid("float64"),
    "convdirect": bench_convolution_direct,
    "wholemap": bench_whole_map_kernel,
    "voxelfit": bench_voxel_fit,
    "registration": bench_registration,
    "dose": bench_whole_dose,
}
#: Benchmarks that need the phantoms written to a work folder.
NEEDS_WORK = {"registration", "dose"}


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory_gb:.0f} GB RAM, Python {platform.python_version()}"


def readme_table(rows, machine_text):
    lines = [f"Measured by `bench/run --json --update-readme` on {machine_text}.", "",
             "| benchmark | ours (s) | baseline (s) | baseline | ratio | peak (MB) | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['ours_s']} | {r['baseline_s'] if r['baseline_s'] is not None else '-'} | "
                     f"{r['baseline']} | {r['ratio'] if r['ratio'] is not None else '-'} | {r['peak_mb']} | "
                     f"{r['target']} | {'yes' if r['met'] else 'NO'} |")
    return "\n".join(lines)


def update_readme(rows, machine_text):
    text = README.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"README.md has no {README_BEGIN} ... {README_END} section to update.")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_BEGIN}\n{readme_table(rows, machine_text)}\n{README_END}{tail}"
    fd, tmp = tempfile.mkstemp(dir=str(REPO), prefix=".README.")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, README)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", help="comma-separated benchmark names: " + ", ".join(BENCHMARKS))
    parser.add_argument("--update-readme", action="store_true", help="rewrite the results table in README.md")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    rows = []
    work = tempfile.mkdtemp(prefix="mibg-bench-")
    for name in names:
        result = BENCHMARKS[name](work) if name in NEEDS_WORK else BENCHMARKS[name]()
        rows.append(result)
        if not args.json:
            print(json.dumps(result), flush=True)
    machine_text = machine()
    if args.json:
        print(json.dumps({"machine": machine_text, "benchmarks": rows}, indent=2))
    if args.update_readme:
        update_readme(rows, machine_text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
