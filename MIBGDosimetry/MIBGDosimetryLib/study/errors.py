"""Errors and warnings about study data that name the series, file and field concerned.

Every problem met while reading a study is phrased for the person who has to fix it: which series
(description and SeriesInstanceUID), which file, which DICOM field, what is wrong and, where it
exists, which override supplies the missing value.
"""

import os


def where(series=None, file=None, field=None, root=None):
    """A phrase locating a problem, e.g. ``series 'SPECT day 2' (1.2.3), file 'tp2/spect.dcm', field Rows``.

    ``series`` is a (description, uid) pair or a plain string; ``file`` is shown relative to ``root``.
    """
    parts = []
    if series:
        if isinstance(series, tuple):
            description, uid = series
            parts.append(f"series '{description}' ({uid})" if description else f"series {uid}")
        else:
            parts.append(f"series {series}")
    if file:
        shown = os.path.relpath(file, root) if root and os.path.isabs(file) else file
        parts.append(f"file '{shown}'")
    if field:
        parts.append(f"field {field}")
    return ", ".join(parts)


class StudyDataError(ValueError):
    """The study folder cannot be read as asked; ``problems`` lists every problem found, each located.

    A subclass of ValueError, so the command line prints it as an error message (exit code 2).
    """

    def __init__(self, problems, series=None, file=None, field=None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.series = series
        self.file = file
        self.field = field
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the study data:\n" + "\n".join(
                f"  - {p}" for p in self.problems)
        super().__init__(message)


class FieldError(StudyDataError):
    """A DICOM field is missing or cannot be read; raised by the field readers, located by the caller."""

    def __init__(self, field, reason):
        self.reason = reason
        super().__init__(f"field {field} {reason}", field=field)
