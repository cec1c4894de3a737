"""``hdnnp learn``: iterative refinement of a committee potential (query by committee).

Iteration 0 trains a committee on the training set of prepared.h5 (or takes ``--model``). Every
iteration k = 1, 2, ... then

(a) *explores*: MD with the current committee at every condition (temperature; NVT, NVE or NPT
    at a pressure; with ``--densities``, NVT runs at scaled volumes too) from the training frame
    nearest that temperature, with the guards of
    ``hdnnp md`` (extrapolation, shortest distance, temperature, ``--spread-max`` on the force
    spread); a condition is *stable* when it runs the requested time without a guard firing.
    If every condition is stable the loop has converged and stops;
(b) *selects* frames of those trajectories (:mod:`hdnnp.learning.selection`);
(c) *labels* them with the reference (:mod:`hdnnp.learning.references`: energy, forces and, for
    boxes periodic in all three directions, stress), one frame at a time
    appended to ``iter<k>/labels.extxyz`` (a killed or failing reference loses nothing: the
    loop resumes after the last labelled frame); with ``--reference external`` it writes the
    frames for another code and stops until ``--add-labels FILES``;
(d) *retrains*: the learned frames so far (``learned.extxyz``, with provenance: iteration,
    condition, trajectory frame, time, force spread, reference) are added to the training set
    (``iter<k>/prepared.h5``), the symmetry functions are selected and ranged again and a new
    committee is trained from scratch (the feature ranging changes, so old weights do not fit);
    held-out errors are those of the predict set of prepared.h5.

The state is ``WORK/learn.json`` (settings and one record per iteration, rewritten atomically
after every phase), so a killed loop continues with ``--resume`` from the phase it was in. Each
iteration is plotted in ``WORK/LEARNING_ITERATIONS.png``; the final committee is
``WORK/model.h5``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.h5io import atomic_output, claim_output, read_strings
from hdnnp.learning.references import parse_reference
from hdnnp.learning.selection import select, trajectory_candidates

STATE_FILE = "learn.json"
LEARNED_FILE = "learned.extxyz"
FIGURE = "LEARNING_ITERATIONS.png"
PHASES = ("explore", "select", "label", "train")
#: Exit status of ``hdnnp learn --reference external`` when it waits for labels.
EXIT_NEEDS_LABELS = 4
#: ``--spread-threshold auto``: this multiple of the 95th percentile of the per-frame force
#: spread of the current committee over the original training frames (not the learned ones:
#: those are hard by construction, and counting them would raise the bar every iteration).
AUTO_SPREAD_FACTOR = 2.0


class NeedsLabels(HdnnpError):
    """The external reference must label the written frames before the loop can go on."""


@dataclass
class LearnSettings:
    """Everything that defines a learning run (stored in learn.json; checked on ``--resume``)."""

    temperatures: list = field(default_factory=lambda: [300.0])  # K, one condition each
    densities: list = field(default_factory=list)  # g/cm³: per temperature, one NVT run more at each
    ensemble: str = "nvt"
    pressure_GPa: float = 0.0
    md_time_ps: float = 5.0
    timestep_fs: float = 2.0
    supercell: list = field(default_factory=lambda: [1, 1, 1])
    iterations: int = 5
    max_frames: int = 20
    spread_threshold: float = -1.0  # eV/Å; < 0: auto (AUTO_SPREAD_FACTOR x p95 on the original training frames)
    spread_max: float = math.inf  # eV/Å: frames beyond are not labelled, and MD stops there
    extrapolation_threshold: float = 0.05  # excess max|x'| - 1 that makes a frame a candidate
    min_separation_ps: float = 0.1
    write_every: int = 5  # MD steps between stored frames
    committee: int = 3
    n_features: int = 30
    selection: str = "cur"
    cutoff: float = 6.0
    train: dict = field(default_factory=dict)  # TrainOptions fields
    reference: str = "external"
    reference_args: str = ""
    seed: int = 0

    def check(self) -> None:
        from hdnnp.md.driver import ENSEMBLES

        if not self.temperatures or any(not (t > 0 and math.isfinite(t)) for t in self.temperatures):
            raise HdnnpError(f"--temperatures: expected temperatures > 0 K, got {self.temperatures}")
        if any(not (rho > 0 and math.isfinite(rho)) for rho in self.densities):
            raise HdnnpError(f"--densities: expected mass densities > 0 g/cm³, got {self.densities}")
        if self.ensemble not in ENSEMBLES:
            raise HdnnpError(f"--ensemble: expected one of {', '.join(ENSEMBLES)}, got '{self.ensemble}'")
        for name, value in (("--md-time", self.md_time_ps), ("--timestep", self.timestep_fs)):
            if not (value > 0 and math.isfinite(value)):
                raise HdnnpError(f"{name}: expected a positive number, got {value}")
        for name, value in (("--iterations", self.iterations), ("--max-frames", self.max_frames),
                            ("--committee", self.committee)):
            if value < 1:
                raise HdnnpError(f"{name}: expected at least 1, got {value}")
        if self.committee < 2:
            raise HdnnpError("--committee: query by committee needs at least 2 members")
        for name, value, positive in (("--spread-max", self.spread_max, True),
                                      ("--extrapolation-threshold", self.extrapolation_threshold, False),
                                      ("--min-separation", self.min_separation_ps, False)):
            ok = value > 0 if positive else (math.isfinite(value) and value >= 0)
            if not ok:
                raise HdnnpError(f"{name}: expected a number {'> 0' if positive else '>= 0'}, got {value}")
        for name, value in (("--n-features", self.n_features), ("--write-every", self.write_every)):
            if value < 1:
                raise HdnnpError(f"{name}: expected at least 1, got {value}")
        if not math.isfinite(self.pressure_GPa):
            raise HdnnpError(f"--pressure: expected a finite pressure in GPa, got {self.pressure_GPa}")
        if not 0 <= self.seed < 2 ** 32 - 1000:
            raise HdnnpError(f"--seed: expected an integer in [0, 2³²), got {self.seed}")
        parse_reference(self.reference, self.reference_args)
        from hdnnp.training.presets import make_options

        make_options(**{"preset": "default", **self.train})  # bad training options: one line, before any work

    def explorations(self) -> list[tuple[str, float, float | None]]:
        """(ensemble, temperature K, density g/cm³ or None) of every exploration run: per
        temperature one in ``ensemble`` from the start frame as read, then one NVT run at each of
        ``densities`` from the start frame scaled to it (DP-GEN's volume-scaled exploration)."""
        return [run for t in self.temperatures
                for run in [(self.ensemble, t, None)] + [("nvt", t, rho) for rho in self.densities]]

    def conditions(self) -> list[str]:
        return [condition_label(e, t, self.pressure_GPa, rho) for e, t, rho in self.explorations()]


def condition_label(ensemble: str, temperature: float, pressure: float, density: float | None = None) -> str:
    return (f"{ensemble}-{temperature:g}K" + (f"-{pressure:g}GPa" if ensemble == "npt" else "")
            + (f"-{density:g}gcm3" if density is not None else ""))


# -- state --------------------------------------------------------------------------------------


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, path)


class State:
    """learn.json: ``settings``, ``iterations`` (one dict each: ``done`` phases and results),
    ``status``."""

    def __init__(self, work: Path, data: dict):
        self.work, self.data = work, data

    @property
    def path(self) -> Path:
        return self.work / STATE_FILE

    def save(self) -> None:
        _write_json(self.path, self.data)

    def iteration(self, k: int) -> dict:
        its = self.data["iterations"]
        while len(its) <= k:
            its.append({"iteration": len(its), "done": []})
        return its[k]

    def mark(self, k: int, phase: str, wall_s: float = 0.0, **results) -> None:
        """Record that ``phase`` of iteration ``k`` is done (with its results and wall time, s)."""
        it = self.iteration(k)
        it.update(results)
        it.setdefault("wall_s", {})[phase] = it.get("wall_s", {}).get(phase, 0.0) + wall_s
        if phase not in it["done"]:
            it["done"].append(phase)
        self.save()


def _write_extxyz(path: Path, images) -> None:
    """Write ``images`` to ``path`` as extxyz atomically (:func:`hdnnp.h5io.atomic_output`)."""
    from ase.io import write

    with atomic_output(path, overwrite=True) as tmp:
        write(tmp, images, format="extxyz")


def iteration_dir(work: Path, k: int) -> Path:
    d = Path(work) / f"iter{k}"
    d.mkdir(parents=True, exist_ok=True)
    return d


# -- the loop -----------------------------------------------------------------------------------


def learn(prepared, work_dir, settings: LearnSettings, model=None, add_labels=None, resume: bool = False,
          overwrite: bool = False, quiet: bool = False, log=print) -> dict:
    """Run (or continue) the refinement loop; returns learn.json's content."""
    from hdnnp.h5io import open_stage_file

    settings.check()
    work = Path(work_dir)
    prepared = Path(prepared)
    with open_stage_file(prepared, "prepare") as h5:
        if "train" not in h5 or len(h5["train/frames/atom_offset"]) < 2:
            raise HdnnpError(f"{prepared}: no training frames")
    state_path = work / STATE_FILE
    if add_labels and not resume:
        raise HdnnpError("--add-labels continues a run that waits for labels: pass --resume too")
    if state_path.exists() and not resume and not overwrite:
        raise HdnnpError(f"{state_path}: a learning run is there; continue it with --resume, or pass "
                         "--overwrite to start again (its files are then replaced)")
    if not work.parent.is_dir():
        raise HdnnpError(f"{work.parent}: directory does not exist (--work-dir)")
    work.mkdir(exist_ok=True)
    claim_output(state_path)  # one learning run per work directory
    if state_path.exists() and not resume:  # --overwrite: remove what an earlier run made, nothing else
        for path in [state_path, work / LEARNED_FILE, work / "model.h5", work / FIGURE, *work.glob("iter[0-9]*")]:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    if resume:
        if not state_path.exists():
            raise HdnnpError(f"--resume: no {state_path}")
        data = json.loads(state_path.read_text())
        # a resumed run may change these: the iteration limit, and the reference (a failing
        # calculator fixed, external labels continued with a calculator, or the reverse)
        free = ("iterations", "reference", "reference_args")
        new = json.loads(json.dumps(asdict(settings), default=float))
        defaults = json.loads(json.dumps(asdict(LearnSettings()), default=float))  # keys newer than the run
        changed = sorted(k for k in new if k not in free and data["settings"].get(k, defaults[k]) != new[k])
        if changed:
            raise HdnnpError(f"{state_path}: the run was started with other settings ({', '.join(changed)}); "
                             "resume it with the same options (only --iterations and --reference may change)")
        data["settings"].update({k: new[k] for k in free})
        state = State(work, data)
        log(f"learn: resuming {state_path}")
    else:
        state = State(work, {"settings": json.loads(json.dumps(asdict(settings), default=float)),
                             "prepared": str(prepared.resolve()), "iterations": [], "status": "running"})
        state.save()
    reference = parse_reference(settings.reference, settings.reference_args)
    t_start = time.perf_counter()

    # iteration 0: the first committee
    it0 = state.iteration(0)
    clock = time.perf_counter
    if "train" not in it0["done"]:
        t0 = clock()
        d0 = iteration_dir(work, 0)
        if model is not None:
            shutil.copyfile(model, d0 / "model.h5")
            results = _evaluate(d0 / "model.h5", prepared, d0, settings, quiet)
        else:
            results = _train(prepared, d0, settings, resume=resume, quiet=quiet, log=log)
        state.mark(0, "train", wall_s=clock() - t0, **results)
        log(f"learn: iteration 0: {_errors_line(state.iteration(0))}")

    k = 1
    while True:
        it = state.iteration(k)
        prev = state.iteration(k - 1)
        d = iteration_dir(work, k)
        model_k = work / f"iter{k - 1}" / "model.h5"
        if "explore" not in it["done"]:
            t0 = clock()
            runs = [_explore(model_k, prepared, d, settings, e, t, rho, k, resume, quiet, log)
                    for e, t, rho in settings.explorations()]
            state.mark(k, "explore", wall_s=clock() - t0, md=runs)
            log(f"learn: iteration {k}: " + "; ".join(f"{r['condition']} {r['time_ps']:.2f} ps "
                                                      f"{'stable' if r['stable'] else 'stopped: ' + r['reason']}"
                                                      for r in runs))
        if all(r["stable"] for r in it["md"]):
            state.data["status"] = f"converged: every condition ran {settings.md_time_ps:g} ps with the model of iteration {k - 1}"
            return _finish(state, model_k, t_start, log)
        if k > settings.iterations:
            state.data["status"] = (f"iteration limit {settings.iterations} reached; the model of iteration "
                                    f"{k - 1} does not yet run every condition stably")
            return _finish(state, model_k, t_start, log)
        if "select" not in it["done"]:
            t0 = clock()
            threshold = (settings.spread_threshold if settings.spread_threshold > 0
                         else AUTO_SPREAD_FACTOR * prev.get("train_spread_p95", math.nan))
            chosen = _select(d, it["md"], settings, threshold, k)
            state.mark(k, "select", wall_s=clock() - t0, spread_threshold=threshold, n_selected=len(chosen))
            log(f"learn: iteration {k}: {len(chosen)} frames selected (force spread > {threshold:.3g} eV/Å or "
                f"extrapolation > {settings.extrapolation_threshold:g})")
        if "label" not in it["done"]:
            t0 = clock()
            n = _label(d, reference, add_labels, k, log)
            state.mark(k, "label", wall_s=clock() - t0, n_labelled=n, reference=settings.reference)
            add_labels = None
        if "train" not in it["done"]:
            t0 = clock()
            n_learned = _collect_learned(work, k)
            augmented = _augment(prepared, work / LEARNED_FILE, d / "prepared.h5")
            results = _train(augmented, d, settings, resume=resume, quiet=quiet, log=log,
                             first=work / "iter0" / "model.h5")
            state.mark(k, "train", wall_s=clock() - t0, n_learned=n_learned, **results)
            log(f"learn: iteration {k}: {n_learned} learned frames in all; {_errors_line(state.iteration(k))}")
            _figure(state)
        k += 1


def _finish(state: State, model_k: Path, t_start: float, log) -> dict:
    final = state.work / "model.h5"
    with atomic_output(final, overwrite=True) as tmp:
        shutil.copyfile(model_k, tmp)
    state.data["model"] = str(final)
    state.data["wall_s_last_session"] = time.perf_counter() - t_start
    state.save()
    _figure(state)
    log(f"learn: {state.data['status']}; final committee {final}; figure {state.work / FIGURE}")
    return state.data


def _errors_line(it: dict) -> str:
    e, f = it.get("heldout_energy_rmse", math.nan), it.get("heldout_force_rmse", math.nan)
    return (f"held-out errors {e:.2f} meV/atom, {f:.0f} meV/Å; force spread on the training frames "
            f"p95 {it.get('train_spread_p95', math.nan):.3g} eV/Å")


# -- (a) explore --------------------------------------------------------------------------------


def _start_frame(prepared: Path, temperature: float) -> int:
    """Index of the training frame whose temperature is nearest ``temperature`` (the first such)."""
    import h5py

    with h5py.File(prepared, "r") as h5:
        temps = h5["train/frames/temperature"][:]
    temps = np.where(np.isfinite(temps), temps, np.inf)
    return int(np.argmin(np.abs(temps - temperature)))


def _explore(model: Path, prepared: Path, d: Path, settings: LearnSettings, ensemble: str, temperature: float,
             density: float | None, k: int, resume: bool, quiet: bool, log) -> dict:
    import h5py

    from hdnnp.md.driver import MDSettings
    from hdnnp.md.guards import DEFAULT_MAX_TEMPERATURE_FACTOR, GuardLimits
    from hdnnp.md.trajectory import checkpoint_path
    from hdnnp.stages.md import md

    label = condition_label(ensemble, temperature, settings.pressure_GPa, density)
    out = d / f"md-{label}.h5"
    if not out.exists():
        md_settings = MDSettings(
            ensemble=ensemble, temperature_K=temperature, pressure_GPa=settings.pressure_GPa,
            timestep_fs=settings.timestep_fs, n_steps=int(round(settings.md_time_ps * 1000 / settings.timestep_fs)),
            seed=settings.seed + k, write_every=settings.write_every, guard_every=settings.write_every,
            # extrapolation only warns: the run goes on into the region to be learned, and stops
            # at a close contact, overheating or a force spread beyond --spread-max
            limits=GuardLimits(max_temperature_K=DEFAULT_MAX_TEMPERATURE_FACTOR * temperature,
                               max_force_spread=settings.spread_max, on_extrapolation="warn"))
        log(f"learn: iteration {k}: MD {label}, {settings.md_time_ps:g} ps -> {out}")
        md(model, prepared, out, md_settings, start_set="train", start_frame=_start_frame(prepared, temperature),
           supercell=tuple(settings.supercell), resume=resume and checkpoint_path(out).exists(), overwrite=True,
           quiet=quiet, log=lambda m: None, density=density)
    with h5py.File(out, "r") as h5:
        status = str(h5.attrs["status"])
        t = h5["trajectory/frames/time"][:]
        excess = h5["trajectory/guards/extrapolation_max_excess"][:]
        stored = MDSettings.from_json(h5.attrs["settings"])
    # stable: what hdnnp md's guards would have let run to the end (extrapolation stops there)
    outside = np.flatnonzero(excess > stored.limits.max_extrapolation_excess)
    ran_ps = float(t[-1]) if len(t) else 0.0
    reasons = [] if status == "complete" else [status.replace("stopped: ", "")]
    if len(outside):
        reasons.insert(0, f"left the training domain at {t[outside[0]]:.3f} ps (feature excess "
                          f"{excess[outside[0]]:.3g} > {stored.limits.max_extrapolation_excess:g})")
    return dict(condition=label, temperature_K=temperature, density_g_cm3=density, file=out.name, stable=not reasons,
                time_ps=float(t[outside[0]]) if len(outside) else ran_ps, ran_ps=ran_ps,
                requested_ps=stored.n_steps * settings.timestep_fs * 1e-3, reason="; ".join(reasons))


# -- (b) select ---------------------------------------------------------------------------------


def _select(d: Path, runs: list, settings: LearnSettings, threshold: float, k: int) -> list:
    import h5py
    from ase import Atoms

    candidates = []
    for r in runs:
        with h5py.File(d / r["file"], "r") as h5:
            g = h5["trajectory"]
            candidates += trajectory_candidates(
                r["condition"], g["frames/time"][:], g["guards/force_spread"][:],
                g["guards/extrapolation_max_excess"][:], threshold if np.isfinite(threshold) else np.inf,
                settings.extrapolation_threshold, settings.spread_max, stopped=not r["stable"])
    chosen = select(candidates, settings.max_frames, settings.min_separation_ps)
    images = []
    by_run = {r["condition"]: r for r in runs}
    from hdnnp.h5io import read_frames

    for c in chosen:
        r = by_run[c.condition]
        with h5py.File(d / r["file"], "r") as h5:
            f = read_frames(h5["trajectory"], c.frame, c.frame + 1)[0]
        atoms = Atoms(numbers=f.species, positions=f.positions, cell=f.cell, pbc=f.pbc)
        atoms.info.update(iteration=k, condition=c.condition, temperature=r["temperature_K"],
                          md_file=f"iter{k}/{r['file']}", md_frame=c.frame, time_ps=c.time_ps,
                          force_spread=c.force_spread, extrapolation_excess=c.extrapolation_excess)
        images.append(atoms)
    _write_extxyz(d / "selected.extxyz", images)
    return chosen


# -- (c) label ----------------------------------------------------------------------------------


def _label(d: Path, reference, add_labels, k: int, log) -> int:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    selected = read(d / "selected.extxyz", index=":") if (d / "selected.extxyz").stat().st_size else []
    labels_path = d / "labels.extxyz"
    if add_labels:
        frames = _read_labels(add_labels, selected)
        images = []
        for sel, f in zip(selected, frames):
            atoms = sel.copy()
            with_stress = f.stress is not None and bool(np.all(np.isfinite(f.stress)))
            atoms.calc = SinglePointCalculator(atoms, energy=f.energy, forces=f.forces,
                                               **({"stress": f.stress} if with_stress else {}))
            atoms.info["reference"] = f"external ({', '.join(Path(p).name for p in add_labels)})"
            images.append(atoms)
        _write_extxyz(labels_path, images)
        return len(images)
    if reference.external:
        if not selected:
            labels_path.write_text("")
            return 0
        _write_for_external(d, selected)
        raise NeedsLabels(
            f"{len(selected)} frames to label are in {d}/selected.extxyz (also selected_POSCAR/, selected_CONFIG/); "
            f"compute their energies and forces, then continue with hdnnp learn ... --resume --add-labels FILES "
            f"(extxyz, vasprun.xml, OUTCAR, DL_POLY HISTORY + E; one labelled frame per selected frame, in order)")
    done = read(labels_path, index=":") if labels_path.exists() and labels_path.stat().st_size else []
    if len(done) > len(selected):
        raise HdnnpError(f"{labels_path}: more labelled frames than selected ones; remove it to label again")
    calc = reference.calculator() if len(done) < len(selected) else None
    t0 = time.perf_counter()
    for n, atoms in enumerate(selected[len(done):], len(done)):
        energy, forces, stress = reference.label(atoms, calc, f"frame {n} of {d}/selected.extxyz "
                                                      f"({atoms.info.get('condition')}, {atoms.info.get('time_ps')} ps)")
        labelled = atoms.copy()
        results = dict(energy=energy, forces=forces) if stress is None else dict(energy=energy, forces=forces,
                                                                                 stress=stress)
        labelled.calc = SinglePointCalculator(labelled, **results)
        labelled.info["reference"] = reference.spec
        write(labels_path, labelled, format="extxyz", append=True)
        rate = (n + 1 - len(done)) / (time.perf_counter() - t0)
        log(f"learn: iteration {k}: labelled {n + 1}/{len(selected)} ({rate:.2f} frames/s)")
    if not labels_path.exists():
        labels_path.write_text("")
    return len(selected)


def _write_for_external(d: Path, selected) -> None:
    from ase.io import write

    for sub, fmt, name in (("selected_POSCAR", "vasp", "POSCAR"), ("selected_CONFIG", "dlp4", "CONFIG")):
        (d / sub).mkdir(exist_ok=True)
        for n, atoms in enumerate(selected):
            write(d / sub / f"{name}_{n:04d}", atoms, format=fmt)


def _read_labels(files, selected):
    """Frames of the label files (the readers of ``hdnnp prepare``), checked against the selection:
    as many frames, the same elements, positions equal up to lattice translations (1e-3 Å)."""
    from hdnnp.stages.predict import _read_structure_frames

    frames = []
    for path in files:
        frames += _read_structure_frames(path)
    if len(frames) != len(selected):
        raise HdnnpError(f"--add-labels: {len(frames)} labelled frames in {', '.join(map(str, files))}, but "
                         f"{len(selected)} frames were selected; give one labelled frame per selected frame, in order")
    for n, (f, sel) in enumerate(zip(frames, selected)):
        where = f"--add-labels: labelled frame {n}"
        if len(f.species) != len(sel) or not np.array_equal(np.asarray(f.species), sel.numbers):
            raise HdnnpError(f"{where} has other atoms than selected frame {n}")
        cell = sel.cell.array
        delta = np.asarray(f.positions) - sel.positions
        frac = np.linalg.solve(cell.T, delta.T).T if sel.pbc.all() else None
        if frac is not None:
            delta = (frac - np.round(frac)) @ cell
        if np.abs(delta).max() > 1e-3:
            raise HdnnpError(f"{where}: positions differ from selected frame {n} by up to "
                             f"{np.abs(delta).max():.3g} Å (wrong order or wrong file?)")
        if not np.isfinite(f.energy) or f.forces is None or not np.all(np.isfinite(f.forces)):
            raise HdnnpError(f"{where}: no finite energy and forces")
    return frames


# -- (d) retrain --------------------------------------------------------------------------------


def _collect_learned(work: Path, k: int) -> int:
    """Rewrite ``learned.extxyz`` as the labels of iterations 1..k (atomic); returns its frame count."""
    from ase.io import read

    images = []
    for j in range(1, k + 1):
        p = work / f"iter{j}" / "labels.extxyz"
        if p.exists() and p.stat().st_size:
            images += read(p, index=":")
    _write_extxyz(work / LEARNED_FILE, images)
    return len(images)


def _augment(prepared: Path, learned: Path, output: Path) -> Path:
    """prepared.h5 with the learned frames appended to its training set (source
    ``learned:iter<k>:<condition>``, temperature = the condition's); the predict set is copied."""
    import h5py
    from ase.io import read

    from hdnnp.frames import Frame
    from hdnnp.h5io import FrameSetWriter, iter_frame_chunks, write_root_attrs

    images = read(learned, index=":") if learned.exists() and learned.stat().st_size else []
    with atomic_output(output, overwrite=True) as tmp, h5py.File(prepared, "r") as src, h5py.File(tmp, "w") as out:
        write_root_attrs(out, "prepare", inputs=[prepared, learned])
        elements = set(int(z) for z in src.attrs["elements"]) | {int(z) for a in images for z in a.numbers}
        out.attrs["elements"] = np.array(sorted(elements), np.int32)
        for name in ("train", "predict"):
            if name not in src:
                continue
            g = src[name]
            with_forces = "atoms/forces" in g
            w = FrameSetWriter(out.create_group(name), with_forces=with_forces)
            sources = read_strings(g["sources"]) if "sources" in g else []
            for f0, chunk in iter_frame_chunks(g):
                src_index = g["frames/source"][f0:f0 + len(chunk)]
                frames = [chunk.frame(j) for j in range(len(chunk))]
                for f, s in zip(frames, src_index):
                    f.source = sources[s] if 0 <= s < len(sources) else ""
                w.append(frames)
            if name == "train":
                w.append([Frame(positions=a.positions, species=a.numbers, cell=a.cell.array, pbc=a.pbc,
                                energy=a.get_potential_energy(), forces=a.get_forces() if with_forces else None,
                                stress=_stress_of(a), temperature=float(a.info.get("temperature", math.nan)),
                                step=int(a.info.get("md_frame", 0)),
                                source=f"learned:iter{a.info.get('iteration')}:{a.info.get('condition')}")
                          for a in images])
            w.close()
            for key, value in g.attrs.items():
                out[name].attrs[key] = value
            if name == "train":
                temps = out["train/frames/temperature"][:]
                out["train"].attrs["temperatures"] = np.unique(temps[np.isfinite(temps)])
    return output


def _stress_of(atoms):
    """The reference stress (3, 3) eV/Å³ of a labelled frame, or None."""
    stress = getattr(atoms.calc, "results", {}).get("stress") if atoms.calc is not None else None
    if stress is None:
        return None
    from ase.stress import voigt_6_to_full_3x3_stress

    stress = np.asarray(stress, float)
    return voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress


def _train(prepared: Path, d: Path, settings: LearnSettings, resume: bool, quiet: bool, log,
           first: Path | None = None) -> dict:
    """symmetry + committee training in ``d``; then :func:`_evaluate`.

    The symmetry functions are selected and ranged again on the augmented data (keeping the
    first committee's selection instead made the Lennard-Jones test loop need 5 iterations
    instead of 2). ``first``: the first committee's model.h5, whose force weight (automatic:
    var(E/N)/<F²> of the original data) retraining keeps unless ``--force-weight`` was given:
    the learned frames, far from equilibrium, would otherwise shift the balance towards forces
    (on the bundled Te data it doubled in two iterations, while the held-out energy error
    tripled).
    """
    from hdnnp.model import Potential
    from hdnnp.stages.symmetry import symmetry
    from hdnnp.stages.train import train_committee
    from hdnnp.training.presets import make_options

    extra = {}
    if first is not None and "force_weight" not in settings.train:
        weight = Potential.load(first).training.get("attrs", {}).get("force_weight")
        if weight is not None:
            extra["force_weight"] = float(weight)
    options = make_options(**{"preset": "default", **settings.train, **extra, "seed": settings.seed})
    if not (d / "symmetry.h5").exists():
        symmetry(prepared, d / "symmetry.h5", n_features=settings.n_features, selection=settings.selection,
                 cutoff=settings.cutoff, device="cpu", quiet=True)
    if not (d / "model.h5").exists():
        log(f"learn: training a committee of {settings.committee} -> {d / 'model.h5'}")
        train_committee(d / "symmetry.h5", d / "model.h5", options, settings.committee, overwrite=not resume,
                        resume=resume, quiet=quiet, log=log)
    return _evaluate(d / "model.h5", d / "symmetry.h5", d, settings, quiet)


def _n_original_frames(path: Path) -> int:
    """Training frames of a prepared/symmetry file that are not learned ones (they come first)."""
    import h5py

    with h5py.File(path, "r") as h5:
        g = h5["train"]
        sources = read_strings(g["sources"])
        learned = np.array([s.startswith("learned:") for s in sources], bool)
        src = g["frames/source"][:]
        return int(np.count_nonzero(~learned[src])) if len(src) else 0


def _evaluate(model: Path, data: Path, d: Path, settings: LearnSettings, quiet: bool) -> dict:
    """Held-out errors (the predict set) and the force spread on the original training frames."""
    import h5py

    from hdnnp.stages.predict import predict

    import warnings

    with warnings.catch_warnings():  # extrapolating held-out frames are expected while learning
        warnings.simplefilter("ignore")
        summary = predict(model, data, d / "predictions.h5", forces=True, overwrite=True, quiet=True)
    with h5py.File(d / "predictions.h5", "r") as h5:
        spread = h5["train/forces_spread"][:] if "forces_spread" in h5["train"] else None
        offset = h5["train/atom_offset"][:]
    p95 = math.nan
    if spread is not None and len(spread):
        per_frame = np.maximum.reduceat(spread.max(axis=1), offset[:-1])
        p95 = float(np.percentile(per_frame[:max(_n_original_frames(data), 1)], 95))
    held = summary.get("predict", {})
    return dict(heldout_energy_rmse=held.get("energy_rmse_mev_per_atom", math.nan),
                heldout_force_rmse=held.get("force_rmse_mev_per_angstrom", math.nan),
                train_energy_rmse=summary["train"].get("energy_rmse_mev_per_atom", math.nan),
                train_spread_p95=p95)


# -- figure -------------------------------------------------------------------------------------


def _figure(state: State) -> None:
    from matplotlib.figure import Figure

    from hdnnp.plots import save_figure

    its = state.data["iterations"]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    conditions = list(dict.fromkeys(r["condition"] for it in its for r in it.get("md", [])))
    ax = axes[0]
    for condition in conditions:
        ks, times = [], []
        for it in its:
            for r in it.get("md", []):
                if r["condition"] == condition:
                    ks.append(it["iteration"] - 1)
                    times.append(r["time_ps"])
        ax.plot(ks, times, "o-", label=condition)
    ax.axhline(state.data["settings"]["md_time_ps"], color="k", lw=0.8, ls="--", label="requested")
    ax.set(xlabel="model of iteration", ylabel="MD time without a guard firing (ps)", title="stability")
    ax.legend(fontsize=8)
    ks = [it["iteration"] for it in its if "train" in it["done"]]
    axes[1].plot(ks, [it.get("n_learned", 0) for it in its if "train" in it["done"]], "o-")
    axes[1].set(xlabel="iteration", ylabel="learned frames (cumulative)", title="reference calls")
    ax = axes[2]
    ax.plot(ks, [it.get("heldout_energy_rmse", np.nan) for it in its if "train" in it["done"]], "o-",
            label="energy (meV/atom)")
    ax2 = ax.twinx()
    ax2.plot(ks, [it.get("heldout_force_rmse", np.nan) for it in its if "train" in it["done"]], "s--", color="C1",
             label="force (meV/Å)")
    ax.set(xlabel="iteration", ylabel="held-out energy RMSE (meV/atom)", title="held-out errors")
    ax2.set_ylabel("held-out force RMSE (meV/Å)")
    ax.legend(ax.get_lines() + ax2.get_lines(), ["energy (left axis)", "force (right axis)"], fontsize=8)
    for a in axes[1:]:
        a.xaxis.get_major_locator().set_params(integer=True)
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(state.data.get("status", ""), fontsize=9)
    fig.tight_layout()
    save_figure(fig, state.work / FIGURE)
