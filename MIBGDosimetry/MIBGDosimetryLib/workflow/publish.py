"""Publishing a dose calculation's outputs as one unit.

The outputs are written into a staging folder beside the output folder and, once complete and
checked, take the output folder's place by one rename of the whole folder. The results of an earlier
run in that folder are kept beside it as a dated backup (``<out>.previous-<UTC time>``), so the
output folder always holds one complete set of results: the old one or the new one, never a mix.

A lock file beside the output folder (``.<out>.lock``, holding the process id) keeps two runs from
writing the same folder at once; the lock of a process that no longer runs is taken over. Staging
folders of runs that were killed (their process id no longer runs) are removed by the next run,
since they may hold patient data.

A marker file (:data:`MARKER_FILE`) in every published folder says that the folder holds results of
this software, so that a study loader can recognise earlier outputs and not read them as inputs.
"""

import contextlib
import ctypes
import datetime
import json
import os
import shutil
import tempfile

from MIBGDosimetryLib import __version__
from MIBGDosimetryLib.study.scan import OUTPUT_MARKER_FILE, is_output_folder

#: File in every published output folder that marks it as results of a dose calculation.
MARKER_FILE = OUTPUT_MARKER_FILE
#: Environment variable naming a step at which the process kills itself (fault-injection tests only;
#: see Testing/test_faults.py). Unset in normal use, when it has no effect.
KILL_AT_ENV = "MIBGDOSE_TEST_KILL_AT"


def kill_point(step):
    """Fault-injection hook: the process kills itself (SIGKILL) at ``step`` when the test environment
    variable :data:`KILL_AT_ENV` names it, so tests can check what an interrupted run leaves behind."""
    if os.environ.get(KILL_AT_ENV) == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_prefix(out_dir):
    return f".{os.path.basename(out_dir)}.staging-"


def _lock_path(out_dir):
    return os.path.join(os.path.dirname(out_dir), f".{os.path.basename(out_dir)}.lock")


def remove_stale_staging(out_dir, log=print):
    """Remove staging folders of earlier runs into ``out_dir`` whose process no longer runs."""
    parent, prefix = os.path.dirname(out_dir), _staging_prefix(out_dir)
    removed = []
    if not os.path.isdir(parent):
        return removed
    for name in sorted(os.listdir(parent)):
        if not name.startswith(prefix):
            continue
        try:
            pid = int(name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(name)
            log(f"Removed the staging folder {name} left by an interrupted run (process {pid})")
    return removed


@contextlib.contextmanager
def output_lock(out_dir):
    """Hold the lock of ``out_dir`` for the block; refuse when another running process holds it. A
    process that holds the lock already (an outer block) keeps it."""
    path = _lock_path(out_dir)
    if _lock_owner(path) == os.getpid():
        yield path
        return
    os.makedirs(os.path.dirname(out_dir), exist_ok=True)
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = _lock_owner(path)
            if owner is not None and _pid_alive(owner):
                raise ValueError(f"Another dose calculation (process {owner}) is writing to {out_dir}; wait for "
                                   f"it to finish or choose another output folder. If no such run exists, remove "
                                   f"the lock file {path}.") from None
            # The lock of a process that has ended: take it over.
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    else:
        raise ValueError(f"Could not take the lock {path} of the output folder; another run may be starting.")
    with os.fdopen(handle, "w") as stream:
        stream.write(str(os.getpid()))
    try:
        yield path
    finally:
        if _lock_owner(path) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _lock_owner(path):
    try:
        with open(path) as stream:
            return int(stream.read().strip() or 0)
    except (OSError, ValueError):
        return None


def check_target(out_dir):
    """Refuse an output path that is a file, or a non-empty folder that is not an earlier output."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"The output path {out_dir} is a file, not a folder; give a folder for --out.")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not is_output_folder(out_dir):
        raise ValueError(f"The output folder {out_dir} holds files that are not results of a dose calculation; "
                         "choose a new or empty folder (results are never mixed with other files).")


def new_staging(out_dir):
    """A new staging folder beside ``out_dir`` named after this process."""
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f"{_staging_prefix(out_dir)}{os.getpid()}-", dir=parent)
    # mkdtemp makes the folder private; the published folder gets the permissions of any new folder.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    return staging


def write_marker(staging, files):
    """Write the marker of an output folder listing its files."""
    marker = {"software": f"SlicerMIBGDosimetry {__version__}", "pid": os.getpid(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "files": sorted(files)}
    with open(os.path.join(staging, MARKER_FILE), "w") as stream:
        json.dump(marker, stream, indent=2)


def publish(staging, out_dir, log=print):
    """Make ``staging`` the output folder ``out_dir`` by one rename; an earlier output folder is kept as
    ``<out>.previous-<UTC time>``. Returns the backup's path (or None)."""
    check_target(out_dir)
    if os.path.isdir(out_dir) and not os.listdir(out_dir):
        os.rmdir(out_dir)
    if not os.path.exists(out_dir):
        os.rename(staging, out_dir)
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    backup = f"{out_dir}.previous-{stamp}"
    if _exchange(staging, out_dir):
        # The staging path now holds the earlier results.
        kill_point("after-exchange")
        os.rename(staging, backup)
    else:
        os.rename(out_dir, backup)
        kill_point("between-renames")
        os.rename(staging, out_dir)
    log(f"The earlier results in {out_dir} were kept as {backup}")
    return backup


def _exchange(a, b):
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def recover_interrupted_publish(out_dir, log=print):
    """After a run killed between the two renames of :func:`publish` (systems without an atomic swap)
    the output folder is missing and its results are in the newest backup: put them back."""
    if os.path.exists(out_dir):
        return None
    parent, prefix = os.path.dirname(out_dir), f"{os.path.basename(out_dir)}.previous-"
    if not os.path.isdir(parent):
        return None
    backups = sorted(name for name in os.listdir(parent) if name.startswith(prefix))
    if not backups:
        return None
    newest = os.path.join(parent, backups[-1])
    os.rename(newest, out_dir)
    log(f"Restored {out_dir} from {newest}, left by an interrupted run")
    return out_dir
