"""Figures of ``hdnnp analyze`` (matplotlib ``Figure`` objects, Agg, no pyplot).

Each function takes the per-set results of :func:`hdnnp.stages.analyze.analyze_frame_set`
(inputs, and the reference or None). Colours follow :mod:`hdnnp.plots`: the reference green,
the first input red, further inputs blue, purple, orange, brown.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from hdnnp.analysis.blocking import format_mean_error
from hdnnp.plots import PREDICTION_COLOR, REFERENCE_COLOR, save_figure  # noqa: F401 (re-export)

INPUT_COLORS = (PREDICTION_COLOR, "tab:blue", "tab:purple", "tab:orange", "tab:brown")
SERIES_LABELS = {"density_g_per_cm3": "density (g/cm³)", "pressure_gpa": "pressure (GPa)",
                 "energy_per_atom_ev": "potential energy (eV/atom)",
                 "temperature_k": "temperature (K)"}


def _sets(results, reference):
    """(result, colour, line width) of every set, the reference last (drawn on top)."""
    out = [(res, INPUT_COLORS[k % len(INPUT_COLORS)], 1.3) for k, res in enumerate(results)]
    if reference is not None:
        out.append((reference, REFERENCE_COLOR, 1.6))
    return out


def _short(spec) -> str:
    """The spec without the file's directory: ``runs/a/md.h5@700`` -> ``md.h5@700``."""
    return spec.text.replace(str(spec.path), spec.path.name, 1)


def _name(res, reference, sets=None):
    """Legend name of a set: the short spec unless two sets would then share it."""
    short = _short(res["spec"])
    if sets is not None and sum(_short(r["spec"]) == short for r, _, _ in sets) > 1:
        short = res["spec"].text
    return short + (" (reference)" if res is reference else "")


def _time_axis_label(sets, what: str) -> str:
    units = {res["time_unit"] for res, _, _ in sets}
    if units == {"ps"}:
        return f"{what} (ps)"
    if units == {"frame"}:
        return f"{what} (frames)"
    return f"{what} (ps; frames for sets marked [frames])"


def _unit_tag(res, sets) -> str:
    mixed = len({r["time_unit"] for r, _, _ in sets}) > 1
    return " [frames]" if mixed and res["time_unit"] == "frame" else ""


def rdf_figure(results, reference=None) -> Figure:
    """g(r) per element pair (one panel each; the total too when there are several elements),
    every set overlaid; first-peak position and height in the legend."""
    sets = _sets(results, reference)
    labels = []
    for res, _, _ in sets:
        for label in res["rdf"].g:
            if label not in labels and not (label == "total" and len(res["rdf"].g) == 2):
                labels.append(label)
    ncols = min(len(labels), 3)
    nrows = -(-len(labels) // ncols)
    fig = Figure(figsize=(max(6.4, 5.2 * ncols), 4.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, label in zip(axes, labels):
        for res, color, width in sets:
            if label not in res["rdf"].g:
                continue
            peak = res["summary"]["rdf"]["first_peak"][label]
            ax.plot(res["rdf"].r, res["rdf"].g[label], color=color, lw=width,
                    label=f"{_name(res, reference, sets)}: peak {peak['position_angstrom']:.2f} Å, "
                          f"g = {peak['height']:.2f}")
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel(f"g(r) {label}")
        ax.set_xlim(0.0, res["rdf"].edges[-1])
        ax.set_ylim(0.0, 1.3 * max(ax.get_ylim()[1], 1.0))  # room for the legend
        ax.legend(fontsize="small", loc="upper right")
    for ax in axes[len(labels):]:
        ax.set_axis_off()
    fig.suptitle("Radial distribution function (all periodic images, frame average)")
    return fig


def adf_figure(results, reference=None) -> Figure:
    """Bond-angle distribution P(θ) of every set, with the mean bond count."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    cutoff = None
    sets = _sets(results, reference)
    for res, color, width in sets:
        adf = res["adf"]
        cutoff = adf.bond_cutoff
        ax.plot(adf.theta, adf.density, color=color, lw=width,
                label=f"{_name(res, reference, sets)}: {adf.mean_bonds:.2f} bonds/atom")
    ax.set_xlabel("bond angle θ (degrees)")
    ax.set_ylabel("P(θ) (1/degree)")
    ax.set_xlim(0.0, 180.0)
    ax.set_ylim(0.0, 1.3 * ax.get_ylim()[1])
    ax.legend(fontsize="small", loc="upper right")
    ax.set_title(f"Bond angles j–i–k, both bonds ≤ {cutoff:g} Å")
    return fig


def msd_figure(results, reference=None) -> Figure:
    """MSD(t) (all atoms) of every set with the linear fit 6 D t + c over its window."""
    sets = _sets(results, reference)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    missing = []
    for res, color, width in sets:
        summary = res["summary"]["msd"]
        if res["msd"] is None:
            missing.append(f"{_name(res, reference, sets)}: no MSD ({summary['unavailable']})")
            continue
        lag, msd, fit = res["msd"]["lag"], res["msd"]["curves"]["all"], res["msd"]["fit"]
        text = f"D = {summary['D']:.3g} {summary['D_unit']}"
        if summary["D_cm2_per_s"] is not None:
            text += f" = {summary['D_cm2_per_s']:.3g} cm²/s"
        ax.plot(lag, msd, color=color, lw=width,
                label=f"{_name(res, reference, sets)}{_unit_tag(res, sets)}: {text}")
        if np.isfinite(fit["D"]):
            t = np.array([fit["fit_start"], fit["fit_end"]])
            ax.plot(t, 6.0 * fit["D"] * t + fit["intercept"], color="k", lw=1.0, ls="--")
    if missing:
        ax.text(0.02, 0.98, "\n".join(missing), transform=ax.transAxes, va="top", fontsize="small")
    ax.set_xlabel(_time_axis_label(sets, "lag"))
    ax.set_ylabel("MSD (Å²)")
    ax.set_xlim(left=0.0)
    ax.set_ylim(bottom=0.0)
    if len(missing) < len(sets):
        ax.legend(fontsize="small", loc="lower right")
    ax.set_title("Mean-square displacement (dashed: fit 6 D t + c)")
    return fig


def time_series_figure(results, reference=None) -> Figure:
    """Density, pressure, potential energy per atom and temperature against time (or frame),
    block-averaged mean ± standard error in each legend."""
    sets = _sets(results, reference)
    fig = Figure(figsize=(11.0, 7.0), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, ylabel) in zip(axes, SERIES_LABELS.items()):
        drawn = 0
        for res, color, width in sets:
            values = res["series"][key]
            stats = res["summary"]["time_series"][key]
            if stats is None:
                continue
            x = res["time"] if res["time"] is not None else np.arange(len(values))
            ax.plot(x, values, color=color, lw=width * 0.7,
                    label=f"{_name(res, reference, sets)}{_unit_tag(res, sets)}: "
                          f"{format_mean_error(stats['mean'], stats['error'])}")
            drawn += 1
        ax.set_xlabel(_time_axis_label(sets, "time"))
        ax.set_ylabel(ylabel)
        if drawn:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "not in these files", transform=ax.transAxes, ha="center",
                    va="center", color="0.4")
    fig.suptitle("Time series (legend: block-averaged mean ± standard error)")
    return fig
