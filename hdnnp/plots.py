"""Every figure of the report (``hdnnp report``), as :class:`matplotlib.figure.Figure` objects.

Figures are built with the object-oriented API on ``Figure`` (no pyplot, no display: PNGs are
rendered by the Agg canvas), so this module works on headless machines and in notebooks alike.
Colours: reference data green, predictions red (the seed's convention); training / validation
/ prediction sets blue / orange / purple. Energies are plotted per atom (eV/atom) so boxes of
different sizes are comparable; errors in meV/atom and meV/Å as in :mod:`hdnnp.metrics`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from hdnnp.elements import symbol
from hdnnp.h5io import atomic_output
from hdnnp.metrics import MEV_PER_EV, PredictionSet

REFERENCE_COLOR = "tab:green"
PREDICTION_COLOR = "tab:red"
SUBSET_COLORS = {"training": "tab:blue", "validation": "tab:orange", "predict": "tab:purple"}
DPI = 120


class _PlainLogFormatter(ticker.LogFormatter):
    """Log-axis labels as plain numbers (0.2, 30) rather than 2e-01 or 3x10^1, on the ticks
    that :class:`matplotlib.ticker.LogFormatter` chooses to label (so labels do not crowd)."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _fmt(value, digits: int = 3) -> str:
    """A metric for a title: ``12.3`` or ``n/a`` (None / NaN)."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}"


def _energy_per_atom_ev(pset: PredictionSet):
    return pset.energy_reference / pset.n_atoms, pset.energy_predicted / pset.n_atoms


def _subsets(sets: dict):
    """(label, PredictionSet, frame mask) of training, validation and prediction frames."""
    out = []
    for name, pset in sets.items():
        if name == "train" and pset.is_validation is not None and pset.is_validation.any():
            out.append(("training", pset, ~pset.is_validation))
            out.append(("validation", pset, pset.is_validation))
        elif name == "train":
            out.append(("training", pset, np.ones(len(pset), bool)))
        else:
            out.append((name, pset, np.ones(len(pset), bool)))
    return out


def _energy_trace(ax, x, pset: PredictionSet, xlabel: str, order=None) -> None:
    """E/N of reference (wide, light, underneath) and prediction (thin, on top), so that both
    stay visible where they agree; ``order``: the frames' plotting order (default: stored)."""
    e_ref, e_pred = _energy_per_atom_ev(pset)
    if order is not None:
        e_ref, e_pred = e_ref[order], e_pred[order]
    ax.plot(x, e_ref, color=REFERENCE_COLOR, lw=3.0, alpha=0.45, label="reference", zorder=2)
    ax.plot(x, e_pred, color=PREDICTION_COLOR, lw=0.8, label="prediction", zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("potential energy per atom (eV/atom)")
    ax.grid(alpha=0.3)


def _temperature_bands(ax, temps) -> None:
    """Shade alternate runs of equal temperature and label each with its temperature."""
    edges = np.flatnonzero(temps[1:] != temps[:-1]) + 1  # (inf, inf: unknown temperatures, one band)
    starts, stops = np.concatenate([[0], edges]), np.concatenate([edges, [len(temps)]])
    for k, (a, b) in enumerate(zip(starts, stops)):
        if k % 2:
            ax.axvspan(a - 0.5, b - 0.5, color="0.92", zorder=0, lw=0)
        label = "?" if not np.isfinite(temps[a]) else f"{temps[a]:g} K"
        ax.text((a + b - 1) / 2, 0.02, label, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize="small", color="0.3")


def learning_process_figure(train: PredictionSet | None, log: dict | None,
                            summary: dict | None = None) -> Figure:
    """LEARNING_PROCESS: training sequence (reference green, prediction red) + learning curve.

    Top: E/N of every frame of the training set, grouped by temperature (shaded bands, labelled)
    and in MD-step order within each, validation frames marked. Bottom: train and validation
    RMSE against epoch (log scale), energies in meV/atom and, when trained, forces in meV/Å.
    """
    has_force_curve = log is not None and any(
        k in log and (np.isfinite(log[k]) & (log[k] > 0)).any()
        for k in ("train_force_rmse", "val_force_rmse"))
    fig = Figure(figsize=(11, 8.5), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2, 2 if has_force_curve else 1, height_ratios=(1.2, 1))
    ax = fig.add_subplot(grid[0, :])
    if train is not None and len(train):
        x = np.arange(len(train))
        temps = np.where(np.isfinite(train.temperature), train.temperature, np.inf)
        order = np.lexsort((train.step, temps))
        _energy_trace(ax, x, train, "training frame (grouped by temperature, MD-step order within each)", order)
        _temperature_bands(ax, temps[order])
        if train.is_validation is not None and train.is_validation.any():
            _, e_pred = _energy_per_atom_ev(train)
            val = train.is_validation[order]
            ax.plot(x[val], e_pred[order][val], ls="none", marker="o", ms=3.5, mfc="none",
                    color=SUBSET_COLORS["validation"], label="prediction, validation frame", zorder=4)
        m = (summary or {}).get("training") or (summary or {}).get("all") or {}
        v = (summary or {}).get("validation") or {}
        title = (f"Training set ({len(train)} frames): energy RMSE {_fmt(m.get('energy_per_atom_rmse_mev'))}"
                 f" meV/atom (fitted)")
        if v:
            title += f", {_fmt(v.get('energy_per_atom_rmse_mev'))} meV/atom (validation)"
        ax.set_title(title)
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no training set in predictions.h5", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()

    curves = [("energy_rmse", "energy RMSE (meV/atom)", "meV/atom")]
    if has_force_curve:
        curves.append(("force_rmse", "force RMSE (meV/Å)", "meV/Å"))
    for col, (key, ylabel, unit) in enumerate(curves):
        ax = fig.add_subplot(grid[1, col])
        if log is None:
            ax.text(0.5, 0.5, "no learning curve (no model.h5 given, or an imported potential)", ha="center",
                    va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        epoch = log["epoch"]
        best_text = ""
        for split, color, style in (("train", SUBSET_COLORS["training"], "-"),
                                    ("val", SUBSET_COLORS["validation"], "--")):
            values = log.get(f"{split}_{key}")
            if values is None:
                continue
            ok = np.isfinite(values) & (values > 0)
            if not ok.any():
                continue
            label = "training" if split == "train" else "validation"
            ax.plot(epoch[ok], values[ok], style, color=color, lw=1.5, label=label)
            if split == "val":
                best = int(np.argmin(np.where(ok, values, np.inf)))
                best_text = f"\nbest validation {_fmt(values[best])} {unit} at epoch {epoch[best]:g}"
        kept = np.flatnonzero(epoch == log.get("best_epoch", np.nan))
        if len(kept):
            ax.axvline(epoch[kept[0]], color="0.4", ls=":", lw=1,
                       label=f"weights kept (lowest validation loss), epoch {epoch[kept[0]]:g}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                        minor_thresholds=(2, 1.0)))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Learning curve, {key.split('_')[0]}{best_text}",
                     fontsize="medium" if len(curves) == 1 else "small")
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(loc="best", fontsize="small")
    return fig


def final_prediction_figure(predict: PredictionSet, summary: dict | None = None) -> Figure:
    """FINAL_PREDICTION: reference (green) and predicted (red) E/N over the prediction
    trajectory, and below it the error per frame (meV/atom) with its RMSE band.

    The x axis is the MD step when the set is one trajectory with increasing steps, else the
    frame index; several temperatures are separated by vertical lines.
    """
    m = (summary or {}).get("all") or {}
    fig = Figure(figsize=(11, 7), dpi=DPI, layout="constrained")
    ax_e, ax_d = fig.subplots(2, 1, sharex=True, height_ratios=(1.6, 1))
    steps_increase = len(predict) > 1 and np.all(np.diff(predict.step) > 0)
    x = predict.step if steps_increase else np.arange(len(predict))
    xlabel = "MD step" if steps_increase else "frame index in the prediction set"
    _energy_trace(ax_e, x, predict, xlabel)
    ax_e.set_xlabel("")
    ax_e.set_title(
        f"Prediction ({len(predict)} frames): energy MAE {_fmt(m.get('energy_per_atom_mae_mev'))},"
        f" RMSE {_fmt(m.get('energy_per_atom_rmse_mev'))} meV/atom"
        f" (per box: RMSE {_fmt(m.get('energy_rmse_ev'))} eV)"
        + (f"\n{m['extrapolating_frames']} frames extrapolate (features outside the training"
           " range)" if m.get("extrapolating_frames") else ""))
    error = predict.energy_error_per_atom_mev
    ax_d.plot(x, error, color=PREDICTION_COLOR, lw=1.0, label="prediction − reference")
    outside = predict.extrapolation > 0
    if outside.any():
        ax_d.plot(x[outside], error[outside], ls="none", marker="x", ms=6, color="black",
                  label="extrapolating frame")
    ax_d.axhline(0.0, color="0.3", lw=0.8)
    rmse = m.get("energy_per_atom_rmse_mev")
    if rmse is not None and np.isfinite(rmse):
        ax_d.axhspan(-rmse, rmse, color="0.85", zorder=0, label=f"± RMSE ({_fmt(rmse)} meV/atom)")
    ax_d.set_xlabel(xlabel)
    ax_d.set_ylabel("error (meV/atom)")
    ax_d.grid(alpha=0.3)
    ax_d.legend(loc="best", fontsize="small")
    # temperature segments
    temps = predict.temperature
    if len(predict) and len({t for t in temps if np.isfinite(t)}) > 1:
        change = np.flatnonzero(temps[1:] != temps[:-1]) + 1
        bounds = np.concatenate([[0], change, [len(predict)]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            if a > 0:
                for ax in (ax_e, ax_d):
                    ax.axvline(x[a] - 0.5 if not steps_increase else x[a], color="0.5", lw=0.8, ls="--")
            ax_e.text(0.5 * (x[a] + x[b - 1]), 0.97, f"{temps[a]:g} K", ha="center", va="top",
                      transform=ax_e.get_xaxis_transform(), fontsize="small",
                      bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.8))
    elif len(predict) and np.isfinite(temps[0]):
        ax_e.text(0.01, 0.02, f"T = {temps[0]:g} K", transform=ax_e.transAxes, fontsize="small")
    ax_e.legend(loc="best", fontsize="small")
    return fig


def parity_figure(sets: dict, summary: dict | None = None) -> Figure:
    """Parity plots: predicted against reference energy per atom (eV/atom) and, where stored,
    force components (eV/Å), coloured by subset, RMSE of each in the legend."""
    summary = summary or {}
    has_forces = any(p.has_forces for p in sets.values())
    fig = Figure(figsize=(12 if has_forces else 6.5, 6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2 if has_forces else 1, squeeze=False)[0]
    ax = axes[0]
    lo, hi = np.inf, -np.inf
    for label, pset, mask in _subsets(sets):
        e_ref, e_pred = _energy_per_atom_ev(pset)
        e_ref, e_pred = e_ref[mask], e_pred[mask]
        known = np.isfinite(e_ref)
        if not known.any():
            continue
        rmse = _subset_summary(summary, pset.name, label).get("energy_per_atom_rmse_mev")
        ax.scatter(e_ref[known], e_pred[known], s=8, alpha=0.6, color=SUBSET_COLORS.get(label),
                   label=f"{label} ({known.sum()} frames): RMSE {_fmt(rmse)} meV/atom",
                   rasterized=True)
        lo = min(lo, e_ref[known].min(), e_pred[known].min())
        hi = max(hi, e_ref[known].max(), e_pred[known].max())
    _diagonal(ax, lo, hi)
    ax.set_xlabel("reference energy per atom (eV/atom)")
    ax.set_ylabel("predicted energy per atom (eV/atom)")
    ax.set_title(_rmse_title("Energy per atom (axes in eV/atom)", "meV/atom", _energy_rmse_items(sets, summary)),
                 fontsize="medium")
    ax.legend(loc="upper left", fontsize="small")
    if has_forces:
        ax = axes[1]
        lo, hi = np.inf, -np.inf
        for name, pset in sets.items():
            if not pset.has_forces:
                continue
            label = "training + validation" if name == "train" else name
            rmse = summary.get("sets", {}).get(name, {}).get("all", {}).get("force_rmse_mev_per_angstrom")
            f_ref, f_pred = pset.force_sample_reference, pset.force_sample_predicted
            ax.scatter(f_ref, f_pred, s=2, alpha=0.3,
                       color=SUBSET_COLORS.get("training" if name == "train" else name),
                       label=f"{label}: RMSE {_fmt(rmse)} meV/Å", rasterized=True)
            if len(f_ref):
                lo = min(lo, f_ref.min(), f_pred.min())
                hi = max(hi, f_ref.max(), f_pred.max())
        _diagonal(ax, lo, hi)
        ax.set_xlabel("reference force component (eV/Å)")
        ax.set_ylabel("predicted force component (eV/Å)")
        ax.set_title(_rmse_title("Force components (axes in eV/Å)", "meV/Å", _force_rmse_items(sets, summary)),
                     fontsize="medium")
        ax.legend(loc="upper left", fontsize="small", markerscale=4)
    return fig


def _rmse_title(what: str, unit: str, items) -> str:
    """``Energy per atom`` / ``RMSE (meV/atom): training 1.44, validation 1.39`` (two lines)."""
    return f"{what}\nRMSE ({unit}): " + ", ".join(f"{label} {_fmt(v)}" for label, v in items)


def _energy_rmse_items(sets: dict, summary: dict):
    return [(label, _subset_summary(summary, pset.name, label).get("energy_per_atom_rmse_mev"))
            for label, pset, _ in _subsets(sets)]


def _force_rmse_items(sets: dict, summary: dict):
    return [("training + validation" if name == "train" else name,
             summary.get("sets", {}).get(name, {}).get("all", {}).get("force_rmse_mev_per_angstrom"))
            for name, pset in sets.items() if pset.has_forces]


def _subset_summary(summary: dict, set_name: str, label: str) -> dict:
    per_set = summary.get("sets", {}).get(set_name, {})
    return per_set.get(label) or per_set.get("all") or {}


def _diagonal(ax, lo, hi) -> None:
    if not np.isfinite(lo):
        return
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.2", lw=0.8, ls="--", label="y = x")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def error_histogram_figure(sets: dict, summary: dict | None = None) -> Figure:
    """Histograms of the energy error per atom (meV/atom) by subset and, where stored, of
    force-component errors (meV/Å), normalised to unit area so subsets of any size compare."""
    summary = summary or {}
    has_forces = any(p.has_forces for p in sets.values())
    fig = Figure(figsize=(12 if has_forces else 6.5, 5), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2 if has_forces else 1, squeeze=False)[0]
    ax = axes[0]
    errors = []
    for label, pset, mask in _subsets(sets):
        err = pset.energy_error_per_atom_mev[mask]
        err = err[np.isfinite(err)]
        if len(err):
            errors.append((label, pset.name, err))
    if errors:
        all_errors = np.concatenate([e for _, _, e in errors])
        n_bins = int(np.clip(np.sqrt(len(all_errors)), 10, 50))
        bins = np.histogram_bin_edges(all_errors, bins=n_bins)
        for label, set_name, err in errors:
            s = _subset_summary(summary, set_name, label)
            ax.hist(err, bins=bins, density=True, histtype="step", lw=1.5,
                    color=SUBSET_COLORS.get(label),
                    label=f"{label}: MAE {_fmt(s.get('energy_per_atom_mae_mev'))}, "
                          f"RMSE {_fmt(s.get('energy_per_atom_rmse_mev'))} meV/atom")
        ax.set_ylim(0, 1.3 * ax.get_ylim()[1])  # room for the legend
        ax.legend(loc="upper left", fontsize="small")
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_xlabel("energy error, prediction − reference (meV/atom)")
    ax.set_ylabel("probability density (1/(meV/atom))")
    ax.set_title(_rmse_title("Energy error per atom", "meV/atom",
                             _energy_rmse_items(sets, summary)), fontsize="medium")
    ax.grid(alpha=0.3)
    if has_forces:
        ax = axes[1]
        errs = [(name, MEV_PER_EV * (p.force_sample_predicted - p.force_sample_reference))
                for name, p in sets.items() if p.has_forces and len(p.force_sample_reference)]
        if errs:
            bins = np.histogram_bin_edges(np.concatenate([e for _, e in errs]), bins=60)
            for name, err in errs:
                s = summary.get("sets", {}).get(name, {}).get("all", {})
                ax.hist(err, bins=bins, density=True, histtype="step", lw=1.5,
                        color=SUBSET_COLORS.get("training" if name == "train" else name),
                        label=f"{'training + validation' if name == 'train' else name}: "
                              f"RMSE {_fmt(s.get('force_rmse_mev_per_angstrom'))} meV/Å")
            ax.set_ylim(0, 1.3 * ax.get_ylim()[1])
            ax.legend(loc="upper left", fontsize="small")
        ax.axvline(0.0, color="0.3", lw=0.8)
        ax.set_xlabel("force component error, prediction − reference (meV/Å)")
        ax.set_ylabel("probability density (1/(meV/Å))")
        ax.set_title(_rmse_title("Force component error", "meV/Å",
                                 _force_rmse_items(sets, summary)), fontsize="medium")
        ax.grid(alpha=0.3)
    return fig


def committee_spread_figure(sets: dict, summary: dict | None = None) -> Figure:
    """COMMITTEE_SPREAD: |E_pred − E_ref|/N against the committee's spread of E/N per frame
    (meV/atom, log-log), one colour per set, the line error = spread; Spearman ρ in the legend.
    A usable error estimate puts the points along (or above, by a constant factor) the line."""
    fig = Figure(figsize=(6.5, 5.5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    committee = (summary or {}).get("committee", {})
    lo, hi = np.inf, 0.0
    for (name, pset), color in zip(sets.items(), ("tab:green", "tab:red", "tab:blue")):
        if pset.energy_spread is None:
            continue
        err = np.abs(pset.energy_error_per_atom_mev)
        spread = 1e3 * pset.energy_spread
        ok = np.isfinite(err) & (err > 0) & (spread > 0)
        rho = (committee.get(name) or {}).get("spearman_abs_error_vs_spread")
        ax.scatter(spread[ok], err[ok], s=8, alpha=0.6, color=color,
                   label=f"{name} ({ok.sum()} frames, Spearman ρ = {_fmt(rho, 2) if rho is not None else '-'})")
        if ok.any():
            lo, hi = min(lo, spread[ok].min(), err[ok].min()), max(hi, spread[ok].max(), err[ok].max())
    if hi > 0:
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--", label="error = spread")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("committee spread of E/N (meV/atom)")
    ax.set_ylabel("|E/N error| (meV/atom)")
    ax.set_title("Is the committee spread an error estimate?")
    ax.legend(fontsize=8)
    return fig


def descriptor_check_figure(check: dict) -> Figure:
    """Descriptor check: d_ij = |G'_i - G'_j| against F_ij = |F_i - F_j| for atom pairs, one
    panel per number of features (``all``: every informative candidate), Pearson correlation
    in each title, pairs coloured by element. A good descriptor has no pairs near d = 0 with a
    large F (two atoms that look alike must feel alike forces)."""
    labels = list(check["labels"])
    ncols = min(len(labels), 4)
    nrows = int(np.ceil(len(labels) / ncols))
    fig = Figure(figsize=(3.8 * ncols + 0.6, 3.8 * nrows + 0.6), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    force_difference = check["force_difference"]
    element = check.get("element")
    groups = [(None, np.ones(len(force_difference), bool))]
    if element is not None and len(np.unique(element)) > 1:
        groups = [(int(z), element == z) for z in np.unique(element)]
    alpha = float(np.clip(2000.0 / max(len(force_difference), 1), 0.1, 0.5))  # dense clouds
    for ax, label, n, r in zip(axes, labels, check["n_features"], check["correlation"]):
        d = check["distance"][label]
        for z, mask in groups:
            name = "atom pairs" if z is None else f"{symbol(z)}–{symbol(z)} pairs"
            ax.scatter(d[mask], force_difference[mask], s=3, alpha=alpha, rasterized=True,
                       label=f"{int(mask.sum())} {name}")
        what = (f"all {int(n)} informative candidates" if label == "all"
                else f"first {int(n)} selected feature{'s' if n != 1 else ''}")
        ax.set_title(f"{what}\ncorrelation r = {_fmt(r, 3)}", fontsize="medium")
        ax.set_xlabel(r"descriptor distance $d_{ij} = \|G'_i - G'_j\|$ (dimensionless)")
        ax.set_ylabel(r"force difference $F_{ij} = \|F_i - F_j\|$ (eV/Å)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small", markerscale=3)
    for ax in axes[len(labels):]:
        ax.set_axis_off()
    fig.suptitle("Descriptor check: pairs of atoms with alike descriptors (small d) should feel alike forces (small F);\n"
                 "good: the upper left (small d, large F) empties as features are added. The force on an atom also "
                 "depends on its neighbours' environments,\nso a cloud and a small r remain even for a complete "
                 "descriptor: compare the panels, not r with 1", fontsize="medium")
    return fig


def save_figure(fig: Figure, path) -> Path:
    """Render ``fig`` to the PNG ``path`` atomically (temporary file, then rename). Figures are
    derived output: an existing one is replaced (data files keep their ``--overwrite`` guard)."""
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path
