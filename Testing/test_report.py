"""The patient report: PDF pages rasterised and checked as images, the HTML twin checked for content."""

import html
import math
import subprocess

import numpy as np
import pytest

from MIBGDosimetryLib.report import render_report
from MIBGDosimetryLib.report.figures import fitted_curve
from MIBGDosimetryLib.tac import fit_tac
from MIBGDosimetryLib.volume import ImageVolume

TIMES_H = [4.0, 24.0, 48.0, 96.0, 144.0]


def voi_result(name, kind, a_MBq, half_life_h, n):
    """A VOI result whose TAC is a mono-exponential sampled exactly and fitted with the library's fit."""
    activity = [a_MBq * math.exp(-math.log(2) / half_life_h * t) for t in TIMES_H]
    fit = fit_tac(TIMES_H, activity, [0.03 * a for a in activity], model="mono")
    dose = np.linspace(0, 10 + n, 50)
    return {"name": name, "kind": kind, "volume_ml": 10.0 + n, "mass_g": 10.4 + n,
            "tia_MBq_h": fit.tia_MBq_h, "tia_uncertainty_MBq_h": fit.tia_uncertainty_MBq_h,
            "mean_dose_Gy": 5.0 + n, "max_voxel_dose_Gy": 9.0 + n, "min_voxel_dose_Gy": 1.0,
            "max_block27_dose_Gy": 8.0 + n, "min_block27_dose_Gy": 1.5, "bed_Gy": 5.5 + n, "eud_Gy": 4.8 + n,
            "dose_uncertainty_Gy": 0.6, "tac_model": fit.model, "coverage_fraction": fit.coverage_fraction,
            "warnings": fit.warnings + ([f"{name}: VOI touches the edge <border> & may be cut"] if n == 2 else []),
            "sphere_s_dose_Gy": 5.1 + n, "local_deposition_dose_Gy": 5.3 + n,
            "uncertainty_budget": [{"term": "calibration factor", "relative_uncertainty": 0.0312,
                                    "applies_to": "activity", "correlation": "fully correlated", "source": "record"},
                                   {"term": "registration", "relative_uncertainty": 0.0047 * (n + 1),
                                    "applies_to": "activity", "correlation": "independent", "source": "shifts",
                                    "sensitivity_tia": 1.0, "sensitivity_dose": 0.74},
                                   {"term": "segmentation (volume)", "relative_uncertainty": 0.08,
                                    "applies_to": "volume", "correlation": "one value per VOI", "source": "outline",
                                    "sensitivity_tia": 0.7, "sensitivity_dose": -0.3}],
            "dvh": {"dose_Gy": dose.tolist(), "volume_fraction": np.exp(-dose / (3 + n)).tolist(),
                    "D2_Gy": 9.0, "D50_Gy": 3.0, "D98_Gy": 0.5},
            "tac": {"times_h": TIMES_H, "activity_MBq": activity,
                    "activity_uncertainty_MBq": [0.03 * a for a in activity], "parameters": fit.parameters}}


def results_dict(n_vois=6):
    kinds = ["lesion", "organ"]
    vois = [voi_result(f"VOI-{n}-{'lesion' if n % 2 == 0 else 'liver'}", kinds[n % 2], 100.0 + 10 * n,
                       30.0 + 40 * n, n) for n in range(n_vois)]
    return {"provenance": {"software": "mibgdose 0.1.0", "study": "TRIAL-007", "date": "2026-01-01T10:00:00"},
            "calibration": {"calibration_factor_cps_per_MBq": 9.1, "dead_time_s": 2.1e-6,
                            "camera": {"model": "Symbia"}},
            "timepoints": [{"label": f"tp{n + 1}", "hours_after_administration": t,
                            "registration": {"metric": -0.8 + 0.01 * n, "residual_mm": 1.2},
                            "warnings": ["mis-registration above 3 mm"] if n == 4 else []}
                           for n, t in enumerate(TIMES_H)],
            "vois": vois,
            "warnings": ["Calibration older than 12 months", "Dead-time factor > 1.2 at tp1"]}


def test_fitted_curve_in_the_report_is_the_analytic_curve():
    voi = voi_result("lesion", "lesion", 100.0, 50.0, 0)
    t = np.array([0.0, 10.0, 200.0])
    np.testing.assert_allclose(fitted_curve(voi, t), 100.0 * np.exp(-np.log(2) / 50.0 * t), rtol=1e-6)


def rasterise(pdf, tmp_path):
    from PIL import Image

    subprocess.run(["pdftoppm", "-r", "20", "-png", str(pdf), str(tmp_path / "page")], check=True)
    return [np.asarray(Image.open(p).convert("L"), dtype=float) for p in sorted(tmp_path.glob("page*.png"))]


def synthetic_volumes():
    shape = (12, 16, 20)
    k, j, i = np.indices(shape)
    dose = 30.0 * np.exp(-((i - 14) ** 2 + (j - 5) ** 2 + (k - 7) ** 2) / 8.0)
    dose_volume = ImageVolume(dose, (2.0, 2.0, 2.0), (-20.0, -16.0, -12.0), np.eye(3), "Gy")
    ct = ImageVolume(np.where((i - 10) ** 2 + (j - 8) ** 2 < 40, 40, -1000).astype(np.int16)[:, :, :],
                     (2.0, 2.0, 2.0), (-20.0, -16.0, -12.0), np.eye(3), "HU")
    masks = {"VOI-0-lesion": (i > 10) & (j < 9), "VOI-2-lesion": (i < 6)}
    return {"ct": ct, "dose": dose_volume, "masks": masks}


def test_report_pages_render_and_html_holds_every_voi_and_warning(tmp_path):
    results = results_dict()
    paths = render_report(results, tmp_path / "out", volumes=synthetic_volumes())
    pages = rasterise(paths["pdf"], tmp_path)
    # Summary, time points, dose table, uncertainty budget, 2 TAC pages (4 per page), coverage, DVH, imaging dose,
    # scan schedule, 2 lesion slice pages, warnings.
    assert len(pages) == 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 2 + 1
    for page in pages:
        height, width = page.shape
        assert width / height == pytest.approx(297 / 210, rel=0.02)
        # A page with content has dark pixels and contrast; a blank page has neither. The sparsest page (the scan
        # schedule) gives a standard deviation of 10 and 0.2 % dark pixels, depending slightly on the matplotlib release.
        assert page.std() > 5 and (page < 128).mean() > 0.001
    text = (tmp_path / "out" / "report.html").read_text()
    for voi in results["vois"]:
        assert html.escape(voi["name"]) in text
    expected_warnings = results["warnings"] + ["tp5: mis-registration above 3 mm"] + \
        [w for v in results["vois"] for w in v["warnings"]]
    assert any("<border>" in w for w in expected_warnings)
    for warning in expected_warnings:
        assert html.escape(warning) in text
    assert text.count("data:image/png;base64,") == 2 + 1 + 1 + 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.pdf"]


def test_uncertainty_budget_table_names_every_term_and_the_totals():
    from MIBGDosimetryLib.report.content import uncertainty_budget_table

    headings, rows = uncertainty_budget_table(results_dict(2))
    assert headings == ["VOI", "calibration factor (activity) %", "registration (activity) %",
                        "segmentation (volume) (volume) %", "TIA %", "Mean dose %"]
    # The registration term moves the mean dose by the VOI's self-dose share (0.74) only.
    assert rows[1][:4] == ["VOI-1-liver", "3.1", "0.94 (dose x0.74)", "8 (dose x-0.30)"]
    assert rows[1][5] == f"{100 * 0.6 / 6.0:.2g}"


def test_slice_page_passes_through_the_dose_maximum_inside_each_lesion(tmp_path):
    from MIBGDosimetryLib.report.figures import slice_pages

    volumes = synthetic_volumes()
    pages = slice_pages(volumes["ct"], volumes["dose"], volumes["masks"])
    titles = [p._suptitle.get_text() for p in pages]
    dose = volumes["dose"].array
    # Inside the first mask the global maximum (i=14, j=5, k=7) lies; inside the second, the voxel nearest it.
    assert titles[0].startswith(f"VOI-0-lesion: {dose.max():.3g} Gy at RAS (8.0, -6.0, 2.0)")
    inside = np.where(volumes["masks"]["VOI-2-lesion"], dose, -1)
    assert titles[1].startswith(f"VOI-2-lesion: {inside.max():.3g} Gy at RAS (-10.0, -6.0, 2.0)")


def test_report_without_volumes_and_bad_results(tmp_path):
    results = results_dict(2)
    render_report(results, tmp_path, basename="r")
    # Summary, time points, dose table, uncertainty budget, TAC, coverage, DVH, imaging dose, scan schedule, warnings.
    assert len(rasterise(tmp_path / "r.pdf", tmp_path)) == 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1
    with pytest.raises(ValueError, match="vois"):
        render_report({"provenance": {}}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
