"""Checks made before any computation of a dose calculation, so that a run that cannot succeed stops
at once with a message saying what is wrong, instead of after the whole calculation.

- the output folder: not a file, not a folder of other files, on a writable disk with room;
- the reference time point index;
- files of the study that could not be read (they refuse the study unless excluded explicitly);
- each time point's SPECT (not empty, not negative, not saturated, more than one slice) and whether
  its CT covers it;
- the memory the calculation needs against the memory available.
"""

import os
import shutil
import tempfile

import numpy as np

#: Bytes of memory per voxel of the reference SPECT grid per time point and independent of the time
#: points, measured as the peak resident memory of `mibgdose dose` on the demo phantom (see
#: Testing/test_faults.py::test_the_memory_estimate_covers_the_measured_peak) with a margin. The part
#: independent of the time points is dominated by the convolution with the whole-map kernel (a kernel
#: of about 8 times the map's voxels, transformed on a padded grid of about 27 times the map's voxels,
#: cut into slabs); measured up to 1.73 GB on the demo phantom with Slicer 5.10's numpy and scipy.
BYTES_PER_VOXEL_PER_TIMEPOINT = 200
BYTES_PER_VOXEL = 3500
#: Memory of the interpreter and libraries before any image is read (bytes).
BASE_BYTES = 400 * 2 ** 20
#: Bytes written per voxel of the dose grid (scene with TIA, dose and SPECT sequence, RT Dose, report figures).
OUTPUT_BYTES_PER_VOXEL_PER_TIMEPOINT = 8
OUTPUT_BYTES_PER_VOXEL = 40
OUTPUT_BASE_BYTES = 20 * 2 ** 20
#: Fraction of a SPECT's counts that must lie inside its CT's field of view.
MIN_CT_COVERAGE = 0.9
#: A SPECT is saturated when at least this many voxels (and 0.1 % of the non-zero ones) hold its maximum.
SATURATED_VOXELS = 10


def check_output_folder(out_dir):
    """Refuse an output path that cannot receive results: a file, a folder of other files, a read-only
    or missing disk. Creates (and removes) a probe folder beside it."""
    from MIBGDosimetryLib.workflow import publish

    out_dir = os.path.abspath(out_dir)
    publish.check_target(out_dir)
    parent = os.path.dirname(out_dir)
    existing = parent
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"The output folder {out_dir} cannot be made: {existing} is a file.")
    try:
        os.makedirs(parent, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".mibgdose-probe-", dir=parent)
        with open(os.path.join(probe, "probe"), "wb") as stream:
            stream.write(b"\0" * 4096)
        shutil.rmtree(probe)
    except OSError as error:
        raise ValueError(f"The output folder {out_dir} cannot be written ({error.strerror or error}); choose a "
                         "folder on a writable disk.") from error
    return out_dir


def check_output_space(out_dir, study):
    """Refuse when the output disk has less free space than the outputs are estimated to need."""
    need = estimate_output_bytes(study)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(out_dir))).free
    if free < need:
        raise ValueError(f"The output disk has {_mb(free)} free but the results need about {_mb(need)}; free some "
                         "space or choose another output folder.")
    return need


def estimate_output_bytes(study):
    voxels, timepoints = _grid_voxels(study)
    return OUTPUT_BASE_BYTES + voxels * (OUTPUT_BYTES_PER_VOXEL + OUTPUT_BYTES_PER_VOXEL_PER_TIMEPOINT * timepoints)


def check_reference_index(study, index):
    count = len(study.timepoints)
    if not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        labels = ", ".join(f"{n} = {tp.label}" for n, tp in enumerate(study.timepoints))
        raise ValueError(f"The reference time point {index} does not exist: the study has {count} time point(s) "
                         f"({labels}); give --reference between 0 and {count - 1}.")


def check_unreadable_files(study, excluded=()):
    """Refuse a study with files that could not be read unless each one was excluded explicitly: an
    unreadable SPECT file would otherwise silently drop its time point."""
    excluded = [os.path.normpath(e) for e in excluded]
    left = [(f, reason) for f, reason in study.unreadable_files if not _excluded(f, excluded)]
    if left:
        listing = "\n".join(f"- {f}: {reason}" for f, reason in left)
        raise ValueError(f"{len(left)} file(s) of the study could not be read, so the time point(s) they belong to "
                         f"may be incomplete or missing:\n{listing}\nRepair or replace them, or leave them out "
                         "knowingly with --exclude-timepoint PATH (the file, or the folder of the time point).")


def _excluded(relative, excluded):
    relative = os.path.normpath(relative)
    return any(relative == e or relative.startswith(e + os.sep) for e in excluded)


def spect_problems(timepoint):
    """Problems of one time point's SPECT that make its activity meaningless, one sentence each."""
    array = np.asarray(timepoint.spect.array)
    where = f"time point {timepoint.label}"
    if array.shape[0] < 2 or min(array.shape) < 2:
        return [f"{where}: the SPECT has {array.shape[0]} slice(s) (shape {list(array.shape)}); a tomographic "
                "reconstruction is needed, not a single slice or planar image"]
    if not np.all(np.isfinite(array)):
        return [f"{where}: the SPECT holds non-finite values (NaN or infinity); check the reconstruction"]
    positive = float(array[array > 0].sum())
    negative = float(-array[array < 0].sum())
    if positive == 0 and negative == 0:
        return [f"{where}: the SPECT is empty (every voxel is zero); check the series or the reconstruction"]
    if negative > 0.01 * positive:
        return [f"{where}: the SPECT holds negative counts ({negative:.4g} against {positive:.4g} positive); the "
                "image is not a count reconstruction (check RescaleSlope and the series)"]
    maximum = float(array.max())
    at_max = int(np.count_nonzero(array == maximum))
    if at_max >= max(SATURATED_VOXELS, 0.001 * np.count_nonzero(array)):
        return [f"{where}: the SPECT is saturated ({at_max} voxels at its maximum {maximum:.6g}); the stored values "
                "were clipped, so counts are lost: reconstruct or export it again with a larger value range"]
    return []


def ct_coverage(timepoint):
    """Fraction of the SPECT's counts inside its CT's field of view (1 without CT)."""
    ct, spect = timepoint.ct, timepoint.spect
    if ct is None:
        return 1.0
    values = np.clip(np.asarray(spect.array, dtype=float), 0.0, None)
    k, j, i = np.nonzero(values)
    weights = values[k, j, i]
    if weights.sum() <= 0:
        return 1.0
    ras = spect.ras_of_ijk(np.stack([i, j, k], axis=-1))
    ijk = ct.ijk_of_ras(ras)
    shape_ijk = np.array(ct.array.shape[::-1], dtype=float)
    inside = np.all((ijk >= -0.5) & (ijk <= shape_ijk - 0.5), axis=-1)
    return float(weights[inside].sum() / weights.sum())


def check_images(study):
    """Refuse a study whose SPECT images cannot give activities, or whose CTs miss their SPECT."""
    problems = []
    for tp in study.timepoints:
        found = spect_problems(tp)
        problems.extend(found)
        if not found:
            coverage = ct_coverage(tp)
            if coverage < MIN_CT_COVERAGE:
                problems.append(f"time point {tp.label}: its CT covers only {100 * coverage:.0f} % of the SPECT's "
                                "counts; the CT does not belong to this SPECT or was cut short (pair the right CT or "
                                "exclude it in the overrides)")
    if problems:
        raise ValueError("The study's images cannot be used:\n" + "\n".join(f"- {p}" for p in problems))


def _grid_voxels(study):
    reference = study.timepoints[0].spect.array.shape
    return int(np.prod(reference)), len(study.timepoints)


def estimate_memory_bytes(study):
    """Peak memory (bytes) of the calculation on this study's SPECT grid."""
    voxels, timepoints = _grid_voxels(study)
    return BASE_BYTES + voxels * (BYTES_PER_VOXEL + BYTES_PER_VOXEL_PER_TIMEPOINT * timepoints)


def available_memory_bytes():
    """Memory this process can still use: the smallest of the system's available memory, the cgroup's
    limit left and the address-space limit (None where none can be read)."""
    limits = []
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as stream:
                text = stream.read().strip()
            with open(usage_file) as stream:
                usage = int(stream.read().strip())
            if text != "max" and int(text) < 2 ** 60:
                limits.append(int(text) - usage)
                break
        except (OSError, ValueError):
            continue
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft - _virtual_memory_bytes())
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def _virtual_memory_bytes():
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def check_memory(study):
    """Refuse a study that does not fit into the available memory, with the estimate."""
    need = estimate_memory_bytes(study)
    available = available_memory_bytes()
    voxels, timepoints = _grid_voxels(study)
    if available is not None and need > available:
        raise ValueError(f"The calculation needs about {_mb(need)} of memory ({voxels} voxels x {timepoints} time "
                         f"points) but only {_mb(available)} is available; free memory, raise the memory limit, or "
                         "reconstruct the SPECT on a coarser grid.")
    return need


def _mb(n_bytes):
    return f"{n_bytes / 2 ** 20:.0f} MB"
