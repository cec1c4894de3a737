"""Checks of a potential against direct reference MD it was never trained on.

A checks directory holds reference trajectories made by ``hdnnp md --reference ... --history``
(``scripts/generate_te_reference.py --plan checks`` makes the bundled ``data/example/checks``),
each a DL_POLY triple ``HISTORY.<name>.<T>K.gz`` + ``E.<...>`` + ``STRESS.<...>`` with its
``summary.<name>.<T>K.json`` (the run's settings: ensemble, pressure, time step, length, seed,
stored-frame interval). Two kinds of run are compared:

- **isotherm** (NVT at fixed density, name ``<system>-rho<ρ>``): on the same frames (after
  :data:`ISOTHERM_EQUILIBRATION_PS`), the potential's virial pressure P = −tr σ / 3 against the
  reference's own stress, per density (the P(V) isotherm) and as an RMSE over all frames. The
  kinetic term 2 E_kin / (3V) is the same for both and left out.
- **npt** (name ``<system>-npt<P>``): the potential runs the same NPT simulation — the
  reference trajectory's first frame as start, the same thermostat, barostat, time step, length
  and seed (so the same initial velocities) — and its density and energy per atom are set
  against the reference's over time; the figure of merit is the mean density over the last
  :data:`NPT_WINDOW_PS` ps (the reference's compression of liquid Te takes picoseconds).
  Extrapolation only warns here (as in the MD check of ``hdnnp run``); a close contact or
  overheating stops the run, which is then reported as stopped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hdnnp.analysis.observables import mass_density, pressure_gpa
from hdnnp.errors import HdnnpError

#: Frames of an isotherm run before this time (ps) are equilibration and not compared.
ISOTHERM_EQUILIBRATION_PS = 0.5
#: The density of an NPT check is averaged over its last this many ps.
NPT_WINDOW_PS = 1.0
REFERENCE_CHECKS_FIGURE = "REFERENCE_CHECKS.png"

_NAME = re.compile(r"^summary\.(?P<name>.+)\.(?P<T>[0-9.]+)K\.json$")


@dataclass
class CheckRun:
    """One reference run of a checks directory."""

    name: str
    temperature_K: float
    history: Path
    settings: dict  # the summary's "run" block: ensemble, pressure, timestep, time_ps, seed, ...

    @property
    def kind(self) -> str:
        return "npt" if self.settings["ensemble"] == "npt" else "isotherm"

    def frames(self):
        """(frames with energy and stress, times ps) of the reference trajectory."""
        from hdnnp.io.dlpoly import EnergyMatcher, StressMatcher, read_history

        stem = self.history.name[len("HISTORY"):]
        frames = read_history(self.history, "dlpoly")
        energies = EnergyMatcher(self.history.with_name("E" + stem))  # merge-joins, as hdnnp prepare
        stresses = StressMatcher(self.history.with_name("STRESS" + stem))
        for f in frames:
            f.energy, f.stress = energies.energy(f.step), stresses.stress(f.step)
            if f.energy is None or f.stress is None:
                raise HdnnpError(f"{self.history}: step {f.step} has no energy or stress in its E/STRESS files")
        times = np.array([f.step * self.settings["timestep"] * 1e-3 for f in frames])
        return frames, times


def run_summary(md_path, history_path, **provenance) -> Path:
    """Write ``summary.<name>.<T>K.json`` beside ``history_path`` (``HISTORY.<name>.<T>K.gz``) from
    the md.h5 of the run that wrote it: the run's settings (``run``: ensemble, temperature,
    pressure, timestep fs, time_ps, seed, write_every, tdamp, pdamp), the time series (time,
    density, E/atom, temperature, pressure with the kinetic term, shortest distance), the md.h5's
    status and root attributes (reference, start) and ``provenance`` (anything JSON, e.g. wall
    time and versions). Written atomically; returns its path."""
    import h5py

    from hdnnp.analysis.observables import instantaneous_pressure_gpa
    from hdnnp.md.driver import MDSettings

    history_path = Path(history_path)
    tag = history_path.name[len("HISTORY."):].removesuffix(".gz")
    with h5py.File(md_path, "r") as h5:
        g = h5["trajectory"]
        n = int(g["frames/atom_offset"][1])
        species = g["atoms/species"][:n]
        cells = g["frames/cell"][:]
        settings = MDSettings.from_json(h5.attrs["settings"])
        attrs = {k: (v if isinstance(v, str) else v.item() if hasattr(v, "item") else v)
                 for k, v in h5.attrs.items() if k in ("reference", "reference_args", "start", "start_density",
                                                      "status", "model")}
        series = dict(time_ps=g["frames/time"][:].tolist(),
                      density_g_cm3=[mass_density(species, c) for c in cells],
                      energy_eV_per_atom=(g["frames/energy"][:] / n).tolist(),
                      temperature_K=g["frames/temperature"][:].tolist(),
                      pressure_GPa=instantaneous_pressure_gpa(g["frames/stress"][:], g["frames/kinetic_energy"][:],
                                                              cells).tolist(),
                      min_distance_angstrom=g["guards/min_distance"][:].tolist())
    run = dict(name=tag.rsplit(".", 1)[0], temperature=settings.temperature_K, ensemble=settings.ensemble,
               pressure=settings.pressure_GPa, timestep=settings.timestep_fs,
               time_ps=settings.n_steps * settings.timestep_fs * 1e-3, seed=settings.seed,
               write_every=settings.write_every, tdamp=settings.tdamp_fs, pdamp=settings.pdamp_fs,
               thermostat=settings.thermostat,
               density=None if not math.isfinite(attrs.get("start_density", math.nan)) else attrs["start_density"])
    summary = dict(run=run, n_atoms=n, n_frames=len(cells), md=attrs, series=series, **provenance)
    path = history_path.with_name(f"summary.{tag}.json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.replace(path)
    return path


def npt_output_path(work_dir, run: CheckRun) -> Path:
    """The potential's trajectory of an NPT check: ``<work_dir>/check_<name>_<T>K.h5``."""
    return Path(work_dir) / f"check_{run.name}_{run.temperature_K:g}K.h5"


def find_checks(directory) -> list[CheckRun]:
    """The runs of a checks directory, isotherms first, each kind by temperature and name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HdnnpError(f"{directory}: no such checks directory")
    runs = []
    for path in sorted(directory.glob("summary.*K.json")):
        m = _NAME.match(path.name)
        if not m:
            continue
        history = directory / f"HISTORY.{m['name']}.{m['T']}K.gz"
        if not history.is_file():
            continue  # an unfinished run: its summary is written only at the end
        runs.append(CheckRun(m["name"], float(m["T"]), history, json.loads(path.read_text())["run"]))
    return sorted(runs, key=lambda r: (r.kind != "isotherm", r.temperature_K, r.name))


@dataclass
class IsothermPoint:
    temperature_K: float
    density_g_cm3: float
    n_frames: int
    pressure_reference_GPa: float
    pressure_model_GPa: float
    squared_errors: np.ndarray = field(repr=False, default=None)


@dataclass
class NPTResult:
    md_path: str
    name: str
    temperature_K: float
    pressure_GPa: float
    status: str
    time_ps: float
    left_domain_ps: float | None
    reference: dict  # time_ps, density_g_cm3, energy_eV_per_atom
    model: dict
    density_reference: float  # mean over the last NPT_WINDOW_PS ps
    density_model: float

    @property
    def relative_density_error(self) -> float:
        return (self.density_model - self.density_reference) / self.density_reference


@dataclass
class ReferenceChecks:
    directory: str
    isotherm: list
    npt: list

    @property
    def pressure_rmse_GPa(self) -> float:
        errors = [p.squared_errors for p in self.isotherm]
        return float(np.sqrt(np.mean(np.concatenate(errors)))) if errors else math.nan

    def lines(self) -> list[str]:
        out = []
        if self.isotherm:
            by_t = {}
            for p in self.isotherm:
                by_t.setdefault(p.temperature_K, []).append(p)
            for t, points in by_t.items():
                diffs = ", ".join(f"{p.density_g_cm3:.1f}: {p.pressure_model_GPa - p.pressure_reference_GPa:+.2f}"
                                  for p in points)
                out.append(f"P(V) at {t:g} K, potential − reference virial pressure (GPa) at ρ (g/cm³) {diffs}; "
                           f"RMSE {self.pressure_rmse_GPa:.2f} GPa over {sum(p.n_frames for p in self.isotherm)} frames")
        for r in self.npt:
            end = ("ran to the end" if r.status == "complete"
                   else r.status.replace("stopped: ", "stopped at ").split(";")[0])
            left = "" if r.left_domain_ps is None else f", left its training domain at {r.left_domain_ps:.2f} ps"
            model = (f"potential {r.density_model:.2f} ({100 * r.relative_density_error:+.1f} %)"
                     if math.isfinite(r.density_model) else "potential: none (its run ended before that ps)")
            out.append(f"NPT {r.pressure_GPa:g} GPa {r.temperature_K:g} K, {r.reference['time_ps'][-1]:g} ps: "
                       f"reference ρ {r.density_reference:.2f} g/cm³ over the last {NPT_WINDOW_PS:g} ps, {model}; "
                       f"{end}{left}")
        return out


def isotherm_points(potential, run: CheckRun) -> IsothermPoint:
    """The potential's virial pressure on the frames of one isotherm run against the reference's."""
    frames, times = run.frames()
    keep = [f for f, t in zip(frames, times) if t >= ISOTHERM_EQUILIBRATION_PS]
    if not keep:
        raise HdnnpError(f"{run.history}: no frames after {ISOTHERM_EQUILIBRATION_PS} ps")
    p_ref = np.array([pressure_gpa(f.stress) for f in keep])
    p_model = np.array([pressure_gpa(potential.evaluate(f.positions, f.cell, f.pbc, f.species, forces=False,
                                                        stress=True).stress) for f in keep])
    return IsothermPoint(run.temperature_K, float(np.mean([mass_density(f.species, f.cell) for f in keep])),
                         len(keep), float(p_ref.mean()), float(p_model.mean()), (p_model - p_ref) ** 2)


def npt_result(potential, run: CheckRun, work_dir, overwrite: bool = False, quiet: bool = True) -> NPTResult:
    """The potential's run of the same NPT simulation (see the module docstring)."""
    import h5py
    from ase import Atoms

    from hdnnp.ase_calculator import HDNNPCalculator
    from hdnnp.md.driver import MDSettings, run_md
    from hdnnp.md.guards import DEFAULT_MAX_TEMPERATURE_FACTOR, GuardLimits

    frames, times = run.frames()
    n_atoms = len(frames[0].species)
    s = run.settings
    settings = MDSettings(ensemble="npt", temperature_K=run.temperature_K, pressure_GPa=s["pressure"],
                          timestep_fs=s["timestep"], n_steps=int(round(s["time_ps"] * 1000 / s["timestep"])),
                          tdamp_fs=s.get("tdamp", MDSettings.tdamp_fs), pdamp_fs=s.get("pdamp", MDSettings.pdamp_fs),
                          seed=int(s["seed"]), write_every=int(s["write_every"]), guard_every=int(s["write_every"]),
                          limits=GuardLimits(on_extrapolation="warn",
                                             max_temperature_K=DEFAULT_MAX_TEMPERATURE_FACTOR * run.temperature_K))
    start = frames[0]
    atoms = Atoms(numbers=start.species, positions=start.positions, cell=start.cell, pbc=start.pbc)
    atoms.calc = HDNNPCalculator(potential)
    out = npt_output_path(work_dir, run)
    summary = run_md(atoms, settings, out, overwrite=overwrite, quiet=quiet, log=lambda m: None)
    with h5py.File(out) as h5:
        g = h5["trajectory"]
        t_model = g["frames/time"][:]
        rho_model = np.array([mass_density(start.species, c) for c in g["frames/cell"][:]])
        e_model = g["frames/energy"][:] / n_atoms
        excess = g["guards/extrapolation_max_excess"][:]
        status = str(h5.attrs["status"])
    outside = np.flatnonzero(excess > GuardLimits().max_extrapolation_excess)
    rho_ref = np.array([mass_density(f.species, f.cell) for f in frames])
    window_ref = times >= times[-1] - NPT_WINDOW_PS
    window_model = t_model >= times[-1] - NPT_WINDOW_PS
    return NPTResult(
        md_path=str(out), name=run.name, temperature_K=run.temperature_K, pressure_GPa=s["pressure"], status=status,
        time_ps=summary["time_ps"], left_domain_ps=float(t_model[outside[0]]) if len(outside) else None,
        reference=dict(time_ps=times, density_g_cm3=rho_ref, energy_eV_per_atom=np.array([f.energy for f in frames]) / n_atoms),
        model=dict(time_ps=t_model, density_g_cm3=rho_model, energy_eV_per_atom=e_model),
        density_reference=float(rho_ref[window_ref].mean()),
        density_model=float(rho_model[window_model].mean()) if window_model.any() else math.nan)


def reference_checks(model_path, directory, work_dir, overwrite: bool = False, quiet: bool = True,
                     log=lambda m: None) -> ReferenceChecks:
    """Every check of ``directory`` with the potential of ``model_path``; NPT trajectories are
    written to :func:`npt_output_path`."""
    from hdnnp.model import Potential

    potential = Potential.load(model_path)
    runs = find_checks(directory)
    if not runs:
        raise HdnnpError(f"{directory}: no finished reference runs (summary.<name>.<T>K.json with its HISTORY)")
    isotherm, npt = [], []
    for run in runs:
        if run.kind == "isotherm":
            isotherm.append(isotherm_points(potential, run))
        else:
            log(f"[reference checks] NPT {run.temperature_K:g} K, {run.settings['time_ps']:g} ps, from the start "
                f"of {run.history.name}")
            npt.append(npt_result(potential, run, work_dir, overwrite=overwrite, quiet=quiet))
    isotherm.sort(key=lambda p: (p.temperature_K, p.density_g_cm3))
    return ReferenceChecks(str(directory), isotherm, npt)


def reference_checks_figure(checks: ReferenceChecks):
    """Left: the P(V) isotherm, reference and potential; right: density against time in each
    NPT check, reference (solid) and potential (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2), constrained_layout=True)
    ax_p, ax_rho = fig.subplots(1, 2)
    for t in sorted({p.temperature_K for p in checks.isotherm}):
        points = [p for p in checks.isotherm if p.temperature_K == t]
        rho = [p.density_g_cm3 for p in points]
        ax_p.plot(rho, [p.pressure_reference_GPa for p in points], "o-", color="green", label=f"reference {t:g} K")
        ax_p.plot(rho, [p.pressure_model_GPa for p in points], "s--", color="red", label=f"potential {t:g} K")
    ax_p.axhline(0.0, color="k", lw=0.6)
    ax_p.set(xlabel="density (g/cm³)", ylabel="virial pressure (GPa)",
             title=f"P(V), RMSE {checks.pressure_rmse_GPa:.2f} GPa")
    ax_p.legend(fontsize=8)
    for k, r in enumerate(checks.npt):
        color = f"C{k}"
        ax_rho.plot(r.reference["time_ps"], r.reference["density_g_cm3"], color=color, label=f"reference {r.temperature_K:g} K")
        ax_rho.plot(r.model["time_ps"], r.model["density_g_cm3"], color=color, ls="--",
                    label=f"potential {r.temperature_K:g} K" + ("" if r.status == "complete" else " (stopped)"))
    ax_rho.set(xlabel="time (ps)", ylabel="density (g/cm³)", title="NPT from the same start")
    ax_rho.legend(fontsize=8)
    return fig
