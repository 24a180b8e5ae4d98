"""Figures of the report (matplotlib, imported inside the functions): time-activity curves with
their fits and covered area, the coverage of every VOI, dose-volume histograms and dose over CT.

Each function returns a list of :class:`matplotlib.figure.Figure` (A4 landscape) built without
pyplot, so no display or global state is involved.
"""

import numpy as np

#: A4 landscape in inches.
PAGE_SIZE_IN = (11.69, 8.27)
#: Time-activity plots per page (rows x columns).
TAC_GRID = (2, 2)
#: Minimum fraction of the TIA between first and last scan recommended by the EANM guidance.
COVERAGE_THRESHOLD = 0.8


def page_figure():
    from matplotlib.figure import Figure

    return Figure(figsize=PAGE_SIZE_IN)


def fitted_curve(voi, times_h):
    """Activity (MBq) of a VOI's fitted TAC at ``times_h``, or None when the fit cannot be evaluated."""
    from MIBGDosimetryLib.tac import TacFit

    tac = voi.get("tac") or {}
    if not tac.get("parameters") or not voi.get("tac_model"):
        return None
    fit = TacFit(model=voi["tac_model"], parameters=dict(tac["parameters"]), covariance=None,
                 tia_MBq_h=voi.get("tia_MBq_h"), tia_uncertainty_MBq_h=voi.get("tia_uncertainty_MBq_h"),
                 coverage_fraction=voi.get("coverage_fraction"), effective_half_life_h=None, warnings=[],
                 times_h=np.asarray(tac.get("times_h", []), dtype=float),
                 activity_MBq=np.asarray(tac.get("activity_MBq", []), dtype=float))
    try:
        return np.asarray(fit.evaluate(np.asarray(times_h, dtype=float)), dtype=float)
    except (KeyError, ValueError, IndexError):
        return None


def tac_pages(results):
    """Time-activity curves: measured activities with uncertainties, the fit, and the scan interval
    whose share of the TIA is the coverage (shaded)."""
    vois = [v for v in results.get("vois", []) if (v.get("tac") or {}).get("times_h")]
    per_page = TAC_GRID[0] * TAC_GRID[1]
    pages = []
    for start in range(0, len(vois), per_page):
        fig = page_figure()
        fig.suptitle("Time-activity curves (shaded: between first and last scan)")
        for n, voi in enumerate(vois[start:start + per_page]):
            ax = fig.add_subplot(TAC_GRID[0], TAC_GRID[1], n + 1)
            tac = voi["tac"]
            t = np.asarray(tac["times_h"], dtype=float)
            a = np.asarray(tac["activity_MBq"], dtype=float)
            sigma = tac.get("activity_uncertainty_MBq")
            ax.errorbar(t, a, yerr=None if sigma is None else np.asarray(sigma, dtype=float), fmt="o",
                        color="black", capsize=3, label="measured")
            grid = np.linspace(0.0, 2.0 * t.max(), 400)
            curve = fitted_curve(voi, grid)
            if curve is not None:
                ax.plot(grid, curve, color="tab:blue", label=f"fit ({voi.get('tac_model')})")
                inside = (grid >= t.min()) & (grid <= t.max())
                ax.fill_between(grid[inside], 0, curve[inside], color="tab:blue", alpha=0.15)
            coverage = voi.get("coverage_fraction")
            cover_text = "" if coverage is None else f", coverage {100 * coverage:.0f} %"
            ax.set_title(f"{voi.get('name')}{cover_text}", color="tab:red" if coverage is not None
                         and coverage < COVERAGE_THRESHOLD else "black")
            ax.set_xlabel("hours after administration")
            ax.set_ylabel("activity (MBq)")
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        pages.append(fig)
    return pages


def coverage_page(results):
    """Fraction of each VOI's TIA between the first and last scan, with the 80 % line."""
    vois = [v for v in results.get("vois", []) if v.get("coverage_fraction") is not None]
    if not vois:
        return []
    fig = page_figure()
    ax = fig.add_subplot(1, 1, 1)
    fractions = np.array([v["coverage_fraction"] for v in vois])
    colours = ["tab:red" if f < COVERAGE_THRESHOLD else "tab:green" for f in fractions]
    ax.barh([v["name"] for v in vois], 100 * fractions, color=colours)
    ax.axvline(100 * COVERAGE_THRESHOLD, color="black", linestyle="--", label="80 % (EANM guidance)")
    ax.set_xlim(0, 100)
    ax.set_xlabel("TIA between first and last scan (% of total)")
    ax.set_title("Coverage of the time-activity curves")
    ax.legend()
    fig.tight_layout()
    return [fig]


def dvh_page(results):
    """Cumulative dose-volume histograms of every VOI that has one."""
    vois = [v for v in results.get("vois", []) if (v.get("dvh") or {}).get("dose_Gy")]
    if not vois:
        return []
    fig = page_figure()
    ax = fig.add_subplot(1, 1, 1)
    for voi in vois:
        dvh = voi["dvh"]
        ax.plot(dvh["dose_Gy"], 100 * np.asarray(dvh["volume_fraction"], dtype=float), label=voi["name"])
    ax.set_xlabel("absorbed dose (Gy)")
    ax.set_ylabel("volume receiving at least this dose (%)")
    ax.set_ylim(0, 101)
    ax.set_xlim(left=0)
    ax.set_title("Cumulative dose-volume histograms")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return [fig]


def slice_pages(ct, dose, masks=None, max_pages=6):
    """Axial, coronal and sagittal slices of dose over CT through the dose maximum of each VOI mask
    (``masks``: {name: boolean array on the dose grid}), or through the global maximum without masks."""
    if dose is None:
        return []
    dose_array = np.asarray(dose.array, dtype=float)
    ct_on_dose = _resample_to(ct, dose) if ct is not None else None
    targets = []
    for name, mask in (masks or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != dose_array.shape:
            raise ValueError(f"The mask of '{name}' does not lie on the dose grid; resample it first.")
        if mask.any():
            flat = np.argmax(np.where(mask, dose_array, -np.inf))
            targets.append((name, np.unravel_index(flat, dose_array.shape)))
    if not targets:
        targets.append(("dose maximum", np.unravel_index(np.argmax(dose_array), dose_array.shape)))
    pages = []
    vmax = float(dose_array.max()) if dose_array.size else 1.0
    for name, (k, j, i) in targets[:max_pages]:
        fig = page_figure()
        ras = dose.ras_of_ijk([i, j, k])
        fig.suptitle(f"{name}: {dose_array[k, j, i]:.3g} Gy at RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) mm")
        si, sj, sk = dose.spacing_mm
        # (name, cut through the array, pixel height / width so that millimetres look square)
        views = (("axial", lambda a: a[k], sj / si), ("coronal", lambda a: a[:, j], sk / si),
                 ("sagittal", lambda a: a[:, :, i], sk / sj))
        for n, (view, cut, aspect) in enumerate(views):
            ax = fig.add_subplot(1, 3, n + 1)
            if ct_on_dose is not None:
                ax.imshow(cut(ct_on_dose), cmap="gray", vmin=-400, vmax=600, origin="lower", aspect=aspect)
            overlay = np.ma.masked_less_equal(cut(dose_array), 0.02 * vmax)
            image = ax.imshow(overlay, cmap="jet", alpha=0.55, vmin=0, vmax=vmax, origin="lower", aspect=aspect)
            ax.set_title(view)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=fig.axes, shrink=0.6, label="absorbed dose (Gy)")
        pages.append(fig)
    return pages


def _resample_to(moving, reference):
    """``moving`` resampled onto ``reference``'s grid (linear), as an array [k, j, i]."""
    import SimpleITK as sitk

    if moving.same_grid(reference):
        return np.asarray(moving.array, dtype=float)
    resampled = sitk.Resample(moving.to_sitk(), reference.to_sitk(), sitk.Transform(), sitk.sitkLinear,
                              float(np.min(moving.array)), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled).astype(float)
