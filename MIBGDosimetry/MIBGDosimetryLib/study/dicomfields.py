"""Reading single DICOM fields safely: a missing or malformed field becomes a :class:`FieldError`.

pydicom converts element values lazily, so a damaged value only fails when it is read. Every field
the study reader uses goes through these functions, which turn any such failure into a message
naming the field; the caller adds the series and file.
"""

import contextlib
import datetime
import logging
import re
import warnings

from MIBGDosimetryLib.study.errors import FieldError


@contextlib.contextmanager
def quiet_pydicom():
    """Silence pydicom's own warnings and log messages about damaged values for the duration of a block.

    The study reader reports every problem itself, located by series, file and field; pydicom's
    messages would only repeat them without saying where.
    """
    logger = logging.getLogger("pydicom")
    was_disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = was_disabled


def raw(ds, keyword):
    """The value of ``keyword`` in ``ds`` or None when absent or empty; unreadable values raise FieldError."""
    try:
        with quiet_pydicom():
            if keyword not in ds:
                return None
            value = ds[keyword].value
    except Exception as error:  # pydicom raises many kinds of errors for damaged elements
        raise FieldError(keyword, f"cannot be read ({type(error).__name__}: {error})") from None
    if value is None or (isinstance(value, (str, bytes, list)) and len(value) == 0):
        return None
    return value


def text(ds, keyword):
    """A string field, stripped, or None."""
    value = raw(ds, keyword)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        value = "\\".join(str(v) for v in value) if _is_multi(value) else str(value)
    value = value.strip().strip("\x00").strip()
    return value or None


def texts(ds, keyword):
    """A multi-valued string field as a list of upper-case strings (empty list when absent)."""
    value = raw(ds, keyword)
    if value is None:
        return []
    values = list(value) if _is_multi(value) else [value]
    return [str(v).strip().upper() for v in values]


def number(ds, keyword):
    """A single numeric field as float, or None when absent."""
    value = raw(ds, keyword)
    if value is None:
        return None
    if _is_multi(value):
        if len(value) != 1:
            raise FieldError(keyword, f"has {len(value)} values where one number is expected")
        value = value[0]
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise FieldError(keyword, f"is not a number ({value!r})") from None
    if result != result or result in (float("inf"), float("-inf")):
        raise FieldError(keyword, f"is not a finite number ({value!r})")
    return result


def numbers(ds, keyword, count):
    """A numeric field with exactly ``count`` values as a list of floats, or None when absent."""
    value = raw(ds, keyword)
    if value is None:
        return None
    values = list(value) if _is_multi(value) else [value]
    if len(values) != count:
        raise FieldError(keyword, f"has {len(values)} values where {count} are expected")
    try:
        result = [float(v) for v in values]
    except (TypeError, ValueError):
        raise FieldError(keyword, f"holds values that are not numbers ({values!r})") from None
    if any(v != v or v in (float("inf"), float("-inf")) for v in result):
        raise FieldError(keyword, f"holds values that are not finite ({values!r})")
    return result


def integer(ds, keyword):
    """A single integer field, or None when absent."""
    result = number(ds, keyword)
    if result is None:
        return None
    if result != int(result):
        raise FieldError(keyword, f"is not an integer ({result!r})")
    return int(result)


def items(ds, keyword):
    """The items of a sequence field (empty list when absent)."""
    value = raw(ds, keyword)
    if value is None:
        return []
    try:
        return list(value)
    except TypeError:
        raise FieldError(keyword, "is not a sequence") from None


def first_item(ds, keyword):
    """The first item of a sequence field, or None."""
    found = items(ds, keyword)
    return found[0] if found else None


_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def parse_datetime(value, keyword):
    """A DICOM DT string (YYYYMMDDHHMMSS.FFFFFF&ZZXX, trailing parts optional) as a datetime.

    A time-zone offset, when given, makes the result time-zone aware.
    """
    match = _DT.match(value.strip())
    if not match:
        raise FieldError(keyword, f"is not a DICOM date-time ({value!r})")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        result = datetime.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                                   int(second or 0), int((fraction or "0").ljust(6, "0")))
    except ValueError as error:
        raise FieldError(keyword, f"is not a valid date-time ({value!r}: {error})") from None
    if zone:
        sign = 1 if zone[0] == "+" else -1
        offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        result = result.replace(tzinfo=datetime.timezone(sign * offset))
    return result


def parse_date(value, keyword):
    """A DICOM DA string (YYYYMMDD; the old YYYY.MM.DD form is accepted) as a date."""
    cleaned = value.strip().replace(".", "").replace("-", "")
    try:
        return datetime.datetime.strptime(cleaned, "%Y%m%d").date()
    except ValueError:
        raise FieldError(keyword, f"is not a DICOM date ({value!r})") from None


def parse_time(value, keyword):
    """A DICOM TM string (HHMMSS.FFFFFF, trailing parts optional; old HH:MM:SS accepted) as a time."""
    cleaned = value.strip().replace(":", "")
    match = _TM.match(cleaned)
    if not match:
        raise FieldError(keyword, f"is not a DICOM time ({value!r})")
    hour, minute, second, fraction = match.groups()
    try:
        return datetime.time(int(hour), int(minute or 0), int(second or 0), int((fraction or "0").ljust(6, "0")))
    except ValueError as error:
        raise FieldError(keyword, f"is not a valid time ({value!r}: {error})") from None


def datetime_field(ds, keyword):
    """A DT field as datetime, or None when absent."""
    value = text(ds, keyword)
    return None if value is None else parse_datetime(value, keyword)


def date_and_time(ds, date_keyword, time_keyword):
    """A DA field and a TM field combined into a datetime; None when either is absent."""
    date = text(ds, date_keyword)
    time = text(ds, time_keyword)
    if date is None or time is None:
        return None
    return datetime.datetime.combine(parse_date(date, date_keyword), parse_time(time, time_keyword))


def _is_multi(value):
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
