"""The MD check that ends ``hdnnp run``: does the potential survive a short NVT run at each
prediction temperature, and does its liquid look like the reference trajectory?

For each prediction temperature T: Langevin NVT at T (τ_T = 100 fs, 2 fs steps, ``time_ps``)
from the first reference frame at T, with the extrapolation guard set to *warn* so that the
run goes on to the end or to a collapse (shortest distance below the guard, or overheating).
Reported: whether and when the run first left the training domain (a scaled feature more than
``max_extrapolation_excess`` beyond [-1, 1], the same limit as ``hdnnp md``), when it collapsed,
and the total g(r) of the frames before it left the domain against g(r) of the reference
frames at T: first-peak position and height and ∫|Δg| dr (Å).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdnnp.md.driver import MDSettings, run_md
from hdnnp.md.guards import DEFAULT_MAX_TEMPERATURE_FACTOR, GuardLimits

MD_CHECK_FIGURE = "MD_CHECK.png"
#: Length of the check per temperature (ps) and its time step (fs).
DEFAULT_CHECK_TIME_PS = 2.0
CHECK_TIMESTEP_FS = 2.0
#: Range and bins of the g(r) compared (Å).
CHECK_RDF_R_MAX, CHECK_RDF_BINS = 6.0, 120


def check_path(work_dir, temperature_K: float) -> Path:
    """The trajectory of the check at one temperature: ``<work_dir>/md_check_<T>K.h5``."""
    return Path(work_dir) / f"md_check_{temperature_K:g}K.h5"


@dataclass
class CheckResult:
    temperature_K: float
    md_path: str
    time_ps: float  # simulated
    status: str  # "complete" or "stopped: ..."
    left_domain_ps: float | None  # first time beyond the extrapolation limit (None: never)
    r: np.ndarray
    g_md: np.ndarray
    g_reference: np.ndarray
    peak_md: tuple
    peak_reference: tuple
    rdf_abs_difference: float
    series: dict  # time_ps, extrapolation_max_excess, min_distance
    n_frames_inside: int = 0  # stored frames before the run first left the domain (g(r) of the MD)

    @property
    def stayed_in_domain(self) -> bool:
        return self.left_domain_ps is None and self.status == "complete"

    def line(self) -> str:
        where = ("stayed in its training domain" if self.stayed_in_domain else
                 f"left its training domain at {self.left_domain_ps:.2f} ps" if self.left_domain_ps is not None
                 else "stayed inside the extrapolation limit")
        end = "ran to the end" if self.status == "complete" else self.status.replace("stopped: ", "collapsed: ")
        return (f"{self.temperature_K:.0f} K: {self.time_ps:.2f} ps NVT, {where}, {end}; g(r) first peak "
                f"{self.peak_md[0]:.2f} Å / {self.peak_md[1]:.2f} (reference {self.peak_reference[0]:.2f} Å / "
                f"{self.peak_reference[1]:.2f}), ∫|Δg|dr = {self.rdf_abs_difference:.3f} Å")


def _frames_at(group, temperature: float):
    from hdnnp.h5io import read_frames

    temps = group["frames/temperature"][:]
    index = np.flatnonzero(np.isclose(temps, temperature))
    return [read_frames(group, int(f), int(f) + 1)[0] for f in index]


def md_check(model_path, prepared_path, work_dir, time_ps: float = DEFAULT_CHECK_TIME_PS, seed: int = 0,
             overwrite: bool = False, quiet: bool = False, log=print) -> list[CheckResult]:
    """Run the check at every temperature of the predict set of ``prepared_path``."""
    import h5py

    from hdnnp.analysis.rdf import RDFAccumulator, first_peak, integrated_abs_difference
    from hdnnp.ase_calculator import HDNNPCalculator
    from hdnnp.h5io import open_stage_file
    from hdnnp.model import Potential
    from hdnnp.md.driver import start_atoms

    potential = Potential.load(model_path)
    with open_stage_file(prepared_path, "prepare") as h5:
        group = h5["predict"]
        temperatures = sorted({float(t) for t in group["frames/temperature"][:] if np.isfinite(t)})
        references = {t: _frames_at(group, t) for t in temperatures}
    results = []
    for temperature in temperatures:
        reference = references[temperature]
        limits = GuardLimits(on_extrapolation="warn", max_temperature_K=DEFAULT_MAX_TEMPERATURE_FACTOR * temperature)
        settings = MDSettings(ensemble="nvt", temperature_K=temperature, timestep_fs=CHECK_TIMESTEP_FS,
                              n_steps=int(round(time_ps * 1000 / CHECK_TIMESTEP_FS)), seed=seed, limits=limits)
        atoms = start_atoms(reference[0])
        atoms.calc = HDNNPCalculator(potential)
        out = check_path(work_dir, temperature)
        log(f"[md check] {temperature:g} K: {time_ps:g} ps Langevin NVT from the first reference frame -> {out}")
        summary = run_md(atoms, settings, out, overwrite=overwrite, quiet=quiet, log=lambda m: None)
        with h5py.File(out) as h5:
            g = h5["trajectory"]
            status = h5.attrs["status"]
            series = dict(time_ps=g["frames/time"][:], extrapolation_max_excess=g["guards/extrapolation_max_excess"][:],
                          min_distance=g["guards/min_distance"][:])
            outside = np.flatnonzero(series["extrapolation_max_excess"] > limits.max_extrapolation_excess)
            n_inside = int(outside[0]) if len(outside) else len(series["time_ps"])
            from hdnnp.h5io import read_frames

            md_frames = read_frames(g, 0, max(n_inside, 1))
        acc_md, acc_ref = RDFAccumulator(CHECK_RDF_R_MAX, CHECK_RDF_BINS), RDFAccumulator(CHECK_RDF_R_MAX, CHECK_RDF_BINS)
        for f in md_frames:
            acc_md.add(f)
        for f in reference:
            acc_ref.add(f)
        rdf_md, rdf_ref = acc_md.result(), acc_ref.result()
        results.append(CheckResult(
            temperature_K=temperature, md_path=str(out), time_ps=summary["time_ps"], status=str(status),
            left_domain_ps=float(series["time_ps"][outside[0]]) if len(outside) else None, r=rdf_md.r,
            g_md=rdf_md.g["total"], g_reference=rdf_ref.g["total"], peak_md=first_peak(rdf_md.r, rdf_md.g["total"]),
            peak_reference=first_peak(rdf_ref.r, rdf_ref.g["total"]),
            rdf_abs_difference=integrated_abs_difference(rdf_md.r, rdf_md.g["total"], rdf_ref.g["total"]),
            series=series, n_frames_inside=len(md_frames)))
    return results


def md_check_figure(results: list[CheckResult]):
    """One row per temperature: g(r) of the MD (red, frames inside the domain) and of the
    reference (green); the largest feature excess and the shortest distance against time."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.6 * max(len(results), 1)), constrained_layout=True)
    axes = fig.subplots(max(len(results), 1), 2, squeeze=False)
    for row, res in zip(axes, results):
        ax = row[0]
        ax.plot(res.r, res.g_reference, color="green", label="reference trajectory")
        ax.plot(res.r, res.g_md, color="red",
                label=f"hdnnp MD ({res.n_frames_inside} frames inside the domain)")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.set_title(f"{res.temperature_K:g} K: ∫|Δg|dr = {res.rdf_abs_difference:.3f} Å")
        ax.legend(loc="upper right", fontsize=8)
        ax = row[1]
        t = res.series["time_ps"]
        ax.semilogy(t, np.maximum(res.series["extrapolation_max_excess"], 1e-4), color="C0",
                    label="largest feature excess max|x'|−1")
        ax.axhline(GuardLimits().max_extrapolation_excess, color="C0", ls="--", lw=0.8, label="guard limit")
        if res.left_domain_ps is not None:
            ax.axvline(res.left_domain_ps, color="k", ls=":", lw=1, label=f"left the domain ({res.left_domain_ps:.2f} ps)")
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("excess beyond the training range")
        twin = ax.twinx()
        twin.plot(t, res.series["min_distance"], color="C3", label="shortest distance")
        twin.set_ylabel("shortest distance (Å)", color="C3")
        title = (f"ran the full {res.time_ps:g} ps" if res.status == "complete"
                 else "collapsed: " + res.status.split(":", 2)[-1].strip())
        ax.set_title(f"{res.temperature_K:g} K: " + (title if len(title) < 70 else title[:67] + "..."), fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    return fig
