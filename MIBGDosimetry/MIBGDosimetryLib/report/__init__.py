"""Patient dosimetry report (PDF and an HTML twin) from the results of ``mibgdose dose``."""

from MIBGDosimetryLib.report.document import render_report

__all__ = ["render_report"]
