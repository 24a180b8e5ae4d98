"""Render the patient report as a PDF (matplotlib PdfPages) and an HTML twin with embedded PNGs.

Both documents carry the same content: provenance and calibration, time points with their
registration quality, the dose table with uncertainties, time-activity curves with fits and the
coverage figure, dose-volume histograms, dose over CT through the lesion maxima, and every warning.
"""

import base64
import html
import io
import os
import tempfile
import textwrap

from MIBGDosimetryLib.report import content, figures

#: Rows of a table per PDF page.
ROWS_PER_PAGE = 18
#: Warning lines per PDF page.
LINES_PER_PAGE = 40


def render_report(results, out_dir, volumes=None, basename="report"):
    """Write ``<basename>.pdf`` and ``<basename>.html`` into ``out_dir`` and return their paths.

    results: the results dict of ``mibgdose dose`` (``results.json``).
    volumes: optional {"ct": ImageVolume (HU), "dose": ImageVolume (Gy), "masks": {VOI name: boolean
        array on the dose grid}} for the pages of dose over CT; without it those pages are left out.
    Files are written under temporary names and renamed when both are complete.
    """
    if not isinstance(results, dict) or "vois" not in results:
        raise ValueError("The report needs a results dict with a 'vois' list (results.json of mibgdose dose).")
    volumes = volumes or {}
    sections = _sections(results, volumes)
    os.makedirs(out_dir, exist_ok=True)
    targets = {"pdf": os.path.join(out_dir, f"{basename}.pdf"), "html": os.path.join(out_dir, f"{basename}.html")}
    partials = {}
    try:
        for kind in targets:
            handle, partials[kind] = tempfile.mkstemp(prefix=f".{basename}-", suffix=f".{kind}", dir=out_dir)
            os.close(handle)
        _write_pdf(results, sections, partials["pdf"])
        _write_html(results, sections, partials["html"])
        for kind, target in targets.items():
            os.replace(partials[kind], target)
    finally:
        for partial in partials.values():
            if os.path.exists(partial):
                os.remove(partial)
    return targets


def _sections(results, volumes):
    """The report as a list of (heading, kind, payload); kinds: pairs, table, figures, lines."""
    dose_headings, dose_rows = content.dose_table(results)
    tp_headings, tp_rows = content.timepoint_table(results)
    whole_body = content.whole_body_lines(results)
    return [
        ("Patient and administration", "pairs", content.key_values(results.get("identification"))),
        ("Provenance", "pairs", content.key_values(results.get("provenance"))),
        ("Calibration used", "pairs", content.key_values(results.get("calibration"))),
        ("Time points and registration quality", "table", (tp_headings, tp_rows)),
        ("Absorbed doses (value ± standard uncertainty)", "table", (dose_headings, dose_rows)),
        ("Uncertainty budget per VOI (relative standard uncertainty, %; Gear et al., EJNMMI 2018)", "table",
         content.uncertainty_budget_table(results)),
        ("Time-activity curves", "figures", figures.tac_pages(results)),
        ("Coverage", "figures", figures.coverage_page(results)),
        ("Dose-volume histograms", "figures", figures.dvh_page(results)),
    ] + ([("Whole-body and red-marrow dose", "lines", whole_body)] if whole_body else []) + [
        ("Imaging dose of the dosimetry study", "table", content.imaging_dose_table(results)),
        ("Scan schedule", "lines", content.schedule_lines(results)),
        ("Dose over CT", "figures", figures.slice_pages(volumes.get("ct"), volumes.get("dose"),
                                                         volumes.get("masks"))),
        ("Warnings", "lines", content.all_warnings(results) or ["No warnings."]),
    ]


def _write_pdf(results, sections, path):
    from matplotlib.backends.backend_pdf import PdfPages

    metadata = {"Title": content.title(results), "Creator": "SlicerMIBGDosimetry", "CreationDate": None}
    with PdfPages(path, metadata=metadata) as pdf:
        first = figures.page_figure()
        first.text(0.05, 0.93, content.title(results), fontsize=18, weight="bold")
        y = 0.86
        for heading, kind, payload in sections[:3]:
            first.text(0.05, y, heading, fontsize=13, weight="bold")
            y -= 0.035
            for key, value in payload:
                first.text(0.07, y, f"{key}: {value}", fontsize=8, family="monospace")
                y -= 0.022
                if y < 0.05:
                    break
            y -= 0.02
        pdf.savefig(first)
        for heading, kind, payload in sections[3:]:
            if kind == "table":
                for page in _table_pages(heading, *payload):
                    pdf.savefig(page)
            elif kind == "figures":
                for page in payload:
                    pdf.savefig(page)
            elif kind == "lines":
                for page in _line_pages(heading, payload):
                    pdf.savefig(page)


def _table_pages(heading, headings, rows):
    pages = []
    for start in range(0, max(len(rows), 1), ROWS_PER_PAGE):
        fig = figures.page_figure()
        fig.suptitle(heading, fontsize=13, weight="bold")
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        chunk = rows[start:start + ROWS_PER_PAGE]
        if headings and chunk:
            table = ax.table(cellText=[[str(c) for c in row] for row in chunk],
                             colLabels=["\n".join(textwrap.wrap(h, 12)) for h in headings], loc="upper center")
            table.auto_set_font_size(False)
            table.set_fontsize(6.5)
            table.auto_set_column_width(list(range(len(headings))))
            table.scale(1.0, 1.6)
        else:
            ax.text(0.5, 0.5, "none", ha="center")
        pages.append(fig)
    return pages


def _line_pages(heading, lines):
    wrapped = [part for line in lines for part in (textwrap.wrap(line, 140) or [""])]
    pages = []
    for start in range(0, len(wrapped), LINES_PER_PAGE):
        fig = figures.page_figure()
        fig.suptitle(heading, fontsize=13, weight="bold")
        for n, line in enumerate(wrapped[start:start + LINES_PER_PAGE]):
            fig.text(0.04, 0.9 - n * 0.021, line, fontsize=8)
        pages.append(fig)
    return pages


def _png_base64(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _write_html(results, sections, path):
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(content.title(results))}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:90%}"
             "td,th{border:1px solid #999;padding:2px 6px;text-align:right}th{background:#eee}"
             "td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
             f"<h1>{esc(content.title(results))}</h1>"]
    for heading, kind, payload in sections:
        parts.append(f"<h2>{esc(heading)}</h2>")
        if kind == "pairs":
            parts.append("<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in payload)
                         + "</table>")
        elif kind == "table":
            headings, rows = payload
            parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headings) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                                   for row in rows) + "</table>")
        elif kind == "figures":
            for fig in payload:
                parts.append(f'<p><img alt="{esc(heading)}" src="data:image/png;base64,{_png_base64(fig)}"></p>')
        elif kind == "lines":
            parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in payload) + "</ul>")
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("\n".join(parts))
