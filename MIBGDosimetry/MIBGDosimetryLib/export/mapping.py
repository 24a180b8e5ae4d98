"""The local re-identification mapping of a trial: one JSON file, one entry per patient, never overwritten.

Every change is made under an exclusive lock of the hidden file ``.<mapping name>.lock`` beside it,
by reading the file, merging the change into it and replacing it with a fully written and fsynced
copy; so two exports of one patient get one pseudonym, another patient adds an entry, and no entry
is ever lost. The export writes the
mapping before it is published: an export that exists can always be re-identified. The patient's
entry (pseudonym, date offset) is reserved when an export starts, so an export that fails leaves
that entry, with no export recorded in it, and a second attempt uses the same pseudonym.
"""

import contextlib
import dataclasses
import datetime
import json
import os
import secrets
import tempfile

try:
    import fcntl
except ImportError:  # Windows: exports of one trial must then not run at the same time.
    fcntl = None


@dataclasses.dataclass
class PatientEntry:
    """What links a pseudonymised patient to the real one (kept only in the local mapping file)."""

    key: str
    identity: dict
    pseudonym: str
    date_offset_days: int
    uid_map: dict = dataclasses.field(default_factory=dict)
    accepted_values: list = dataclasses.field(default_factory=list)
    exports: list = dataclasses.field(default_factory=list)


def patient_key(identity):
    """The mapping key of a patient: the Patient ID (with its issuer), or name and birth date without one."""
    if identity.get("PatientID"):
        issuer = identity.get("IssuerOfPatientID")
        return f"{identity['PatientID']}@{issuer}" if issuer else identity["PatientID"]
    return f"name:{identity.get('PatientName', '')}|birth:{identity.get('PatientBirthDate', '')}"


def check_writable(path):
    """Raise ValueError unless the mapping at ``path`` can be read (if it exists) and written."""
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=".mapping-check-", dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"The mapping file '{path}' cannot be written ({error.strerror}); choose a local folder "
                         "you can write to. Nothing was exported.") from error
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK):
            raise ValueError(f"The mapping file '{path}' exists but cannot be read and written; fix its "
                             "permissions or choose another path. Nothing was exported.")
        _read(path)


def reserve(path, identity, pseudonym=None, study_dates=()):
    """The patient's entry, created and written now if the mapping has none (pseudonym and date offset).

    A given ``pseudonym`` must agree with the one the mapping already holds for this patient and must
    not belong to another patient. ``study_dates`` (YYYYMMDD) are the dates of the originals: a new date
    offset is drawn so that no moved date equals one of them (a moved scan date equal to the birth date
    would otherwise read as the birth date and stop the export).
    """
    key = patient_key(identity)
    with _locked(path):
        patients = _read(path)
        if key in patients:
            entry = _entry(key, patients[key])
            if pseudonym and pseudonym != entry.pseudonym:
                raise ValueError(f"The mapping file already gives this patient the pseudonym '{entry.pseudonym}', "
                                 f"not '{pseudonym}'; use that pseudonym or another mapping file.")
            return entry
        used = {e["pseudonym"] for e in patients.values()}
        if pseudonym and pseudonym in used:
            raise ValueError(f"The pseudonym '{pseudonym}' is already used for another patient in '{path}'.")
        while not pseudonym or pseudonym in used:
            pseudonym = f"MIBG-{secrets.token_hex(4).upper()}"
        # Dates move back by one to ten years, and no moved date may equal a real one of the study.
        offset = _date_offset_days(study_dates)
        entry = PatientEntry(key, dict(identity), pseudonym, offset)
        patients[key] = _as_json(entry)
        _write(path, patients)
        return entry


def _date_offset_days(study_dates):
    dates = set()
    for text in study_dates:
        try:
            dates.add(datetime.datetime.strptime(str(text), "%Y%m%d").date())
        except ValueError:
            continue
    while True:
        offset = -(365 + secrets.randbelow(9 * 365))
        if not {date + datetime.timedelta(days=offset) for date in dates} & dates:
            return offset


def record(path, entry, out_dir):
    """Merge the entry's UIDs, accepted values and this export into the mapping file, fsynced."""
    with _locked(path):
        patients = _read(path)
        stored = patients.get(entry.key, _as_json(entry))
        stored["uid_map"] = {**stored.get("uid_map", {}), **entry.uid_map}
        stored["accepted_values"] = sorted(set(stored.get("accepted_values", [])) | set(entry.accepted_values))
        stored.setdefault("exports", []).append(
            {"out_dir": out_dir, "written": datetime.datetime.now().isoformat(timespec="seconds")})
        patients[entry.key] = stored
        _write(path, patients)


@contextlib.contextmanager
def _locked(path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _read(path):
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)["patients"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"The mapping file '{path}' cannot be read ({error}); give the file written by an "
                         "earlier export of this trial, or a new path.") from error


def _write(path, patients):
    folder = os.path.dirname(path) or "."
    handle, partial = tempfile.mkstemp(prefix=".mapping-", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump({"patients": patients}, stream, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    if hasattr(os, "O_DIRECTORY"):
        directory = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _entry(key, stored):
    return PatientEntry(key, dict(stored.get("identity", {})), stored["pseudonym"], int(stored["date_offset_days"]),
                        dict(stored.get("uid_map", {})), list(stored.get("accepted_values", [])),
                        list(stored.get("exports", [])))


def _as_json(entry):
    return {"identity": entry.identity, "pseudonym": entry.pseudonym, "date_offset_days": entry.date_offset_days,
            "uid_map": entry.uid_map, "accepted_values": entry.accepted_values, "exports": entry.exports}
