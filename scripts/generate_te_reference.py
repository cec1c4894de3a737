#!/usr/bin/env python
"""Reference MD of liquid Te through the pipeline: ``hdnnp md --reference`` runs (development only).

Each run is one ``hdnnp md --reference tblite:GFN1-xTB`` process (the reference method itself
driving ASE's integrators, as a user would run it with their DFT code's ASE calculator), written
with ``--history`` as a DL_POLY HISTORY + E + STRESS triple that ``hdnnp prepare`` reads::

    <out>/HISTORY.<name>.<T>K.gz   positions, cell (changes under NPT), forces
    <out>/E.<name>.<T>K.gz         total potential energy (eV) per stored step
    <out>/STRESS.<name>.<T>K.gz    stress (eV/Å³, ASE's sign) per stored step
    <out>/summary.<name>.<T>K.json time series (time, density, E/atom, T, P) and the settings
    <out>/README.md                provenance table of every finished run (rewritten each time)

Plans (``--plan``):

* ``checks`` — the data the potential is never trained on (``data/example/checks``, which ``hdnnp
  run`` on the bundled example checks its potential against):
  ``Te-npt0`` at 573, 773 and 1073 K: NPT at 0 GPa for 5 ps from the bundled start
  (``data/example``'s start frame, 5.7 g/cm³), with the settings a model's check run uses
  (2 fs, isotropic MTK barostat, τ_T 100 fs, τ_P 1000 fs); ``Te-rho<ρ>`` at 773 K: NVT
  (Langevin) for 1.5 ps at 5.4, 6.2, 7.0, 7.8 and 8.6 g/cm³, for the P(V) isotherm (the first
  0.5 ps are equilibration): below 7 g/cm³ from the bundled start scaled to ρ, from 7 g/cm³ on
  from the frame of the 773 K NPT run nearest ρ, scaled to ρ (see :func:`start_of`).
* ``train`` — training and held-out data (``data/te_reference``): at each of 573, 673, 723, 773,
  823, 873, 973 and 1073 K two independent trajectories, ``Te-npt`` (NPT at 0 GPa, 2 ps from the
  5.70 g/cm³ start: the reference's own densification) and ``Te-vol`` (NVT for 1 ps at a
  density between 5.4 and 8.8 g/cm³, one per temperature; from 7 g/cm³ on started from the frame
  of that temperature's ``Te-npt`` run nearest the density).

Resumable: ``hdnnp md`` checkpoints every stored frame, so a killed run loses at most the steps
since the last one and continues with ``--resume``; a finished run (its HISTORY exists) is
skipped. Runs go one process each, ``--jobs`` at once, one OpenMP thread each.

Example::

    python scripts/generate_te_reference.py --plan checks --out data/example/checks --jobs 2
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = REPO / "data" / "example" / "HISTORY.Te.723K.gz"  # its last frame: the bundled start


@dataclass
class Run:
    name: str  # HISTORY.<name>.<T>K
    temperature: float
    ensemble: str
    time_ps: float
    seed: int
    density: float | None = None  # g/cm³: scale the start to it
    start_from: str | None = None  # tag of an NPT run of the plan: start from its frame nearest `density`
    pressure: float = 0.0
    timestep: float = 2.0
    write_every: int = 10
    extra: list = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{self.name}.{self.temperature:g}K"

    def history(self, out: Path) -> Path:
        return out / f"HISTORY.{self.tag}.gz"


def plan(name: str) -> list[Run]:
    if name == "checks":
        runs = [Run("Te-npt0", 773, "npt", 5.0, 41773)]
        runs += [Run(f"Te-rho{rho:.1f}", 773, "nvt", 1.5, 42000 + i, density=rho,
                     start_from=None if rho < 7.0 else "Te-npt0.773K")
                 for i, rho in enumerate((5.4, 6.2, 7.0, 7.8, 8.6))]
        runs += [Run("Te-npt0", t, "npt", 5.0, 41000 + t) for t in (573, 1073)]
        return runs
    if name == "train":
        # per temperature two independent trajectories: NPT at 0 GPa from the 5.70 g/cm³ start
        # (the reference's own densification, 2 ps) and NVT at a scaled density (1 ps), the
        # densities spread over 5.4-8.8 g/cm³ across the temperatures
        # the NPT runs first (the vol runs of 7 g/cm³ and more start from them), temperatures in
        # the order the main job needs them
        densities = {773: 6.4, 673: 5.4, 973: 8.4, 823: 7.6, 723: 8.8, 873: 6.0, 573: 7.2, 1073: 5.4}
        runs = [Run("Te-npt", t, "npt", 2.0, 51000 + t) for t in densities]
        runs += [Run("Te-vol", t, "nvt", 1.0, 52000 + t, density=rho,
                     start_from=None if rho < 7.0 else f"Te-npt.{t}K") for t, rho in densities.items()]
        return runs
    raise SystemExit(f"unknown plan {name!r}")


def start_of(run: Run, out: Path) -> tuple[Path, int]:
    """(structure file, frame) a run starts from: the bundled start, or the frame of the NPT run
    ``run.start_from`` whose density is nearest ``run.density`` (an equilibrated dense liquid of
    the reference itself instead of the 5.70 g/cm³ start squeezed, whose strain energy heated
    such a box beyond 3 T within 20 fs)."""
    if run.start_from is None:
        return START, -1
    sys.path.insert(0, str(REPO))
    from hdnnp.analysis.observables import mass_density
    from hdnnp.io.dlpoly import read_history

    source = out / f"HISTORY.{run.start_from}.gz"
    if not source.is_file():
        raise SystemExit(f"{run.tag}: needs {source} first (run the plan again when it is there)")
    rho = [mass_density(f.species, f.cell) for f in read_history(source)]
    return source, int(min(range(len(rho)), key=lambda k: (abs(rho[k] - run.density), -k)))


def command(run: Run, out: Path, reference: str, reference_args: str) -> list[str]:
    md = out / "work" / f"md.{run.tag}.h5"
    start, frame = start_of(run, out)
    cmd = [sys.executable, "-m", "hdnnp", "md", "--reference", reference, "--reference-args", reference_args,
           "--start", str(start), "--start-frame", str(frame), "--ensemble", run.ensemble,
           "--temperature", f"{run.temperature:g}", "--pressure", f"{run.pressure:g}",
           "--timestep", f"{run.timestep:g}", "--time", f"{run.time_ps:g}", "--seed", str(run.seed),
           "--write-every", str(run.write_every), "--guard-every", str(run.write_every),
           "-o", str(md), "--history", str(run.history(out)), "-q", *run.extra]
    if run.density is not None:
        cmd += ["--density", f"{run.density:g}"]
    if md.with_name(md.name + ".checkpoint").exists():
        cmd.append("--resume")
    return cmd


def summarise(run: Run, out: Path, wall_s: float, status: int, cmd: list[str]) -> Path:
    """summary.<tag>.json of the finished run (:func:`hdnnp.md.reference_checks.run_summary`)."""
    sys.path.insert(0, str(REPO))
    from hdnnp.md.reference_checks import run_summary

    return run_summary(out / "work" / f"md.{run.tag}.h5", run.history(out),
                       files=[f"HISTORY.{run.tag}.gz", f"E.{run.tag}.gz", f"STRESS.{run.tag}.gz"],
                       command=" ".join(cmd[2:]).replace(str(REPO) + "/", ""), exit_status=status, wall_s=wall_s,
                       date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                       host=f"{platform.node()} ({os.cpu_count()} CPUs)",
                       versions={p: importlib.metadata.version(p) for p in ("ase", "tblite", "numpy")}
                       | {"python": platform.python_version()})


def run_one(run: Run, out: Path, reference: str, reference_args: str) -> str:
    if run.history(out).exists() and (out / f"summary.{run.tag}.json").exists():
        return f"{run.tag}: done before"
    cmd = command(run, out, reference, reference_args)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    t0 = time.time()
    log = out / "work" / f"md.{run.tag}.log"
    with open(log, "a") as fh:
        status = subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if status not in (0, 3):  # 3: a guard stopped it (kept, and said so in the table)
        return f"{run.tag}: failed with exit status {status}, see {log}"
    summarise(run, out, wall, status, cmd)
    return f"{run.tag}: exit {status}, {wall:.0f} s"


def write_readme(out: Path, plan_name: str, reference: str, reference_args: str) -> None:
    rows = []
    def order(path):
        run = json.loads(path.read_text())["run"]
        return run["ensemble"], run["name"], run["temperature"]

    for path in sorted(out.glob("summary.*.json"), key=order):
        s = json.loads(path.read_text())
        r, ser = s["run"], s["series"]
        t = ser["time_ps"]
        last = [i for i, x in enumerate(t) if x >= t[-1] - 1.0]  # the last ps
        mean = (lambda key: sum(ser[key][i] for i in last) / len(last))
        start = s.get("md", {}).get("start", "").replace(str(REPO) + "/", "").replace(":@", " frame ")
        rows.append(f"| {r['name']} | {r['temperature']:g} | {r['ensemble']} | {start} | "
                    f"{r['density'] if r['density'] is not None else '5.70'} | {t[-1]:.2f} | {s['n_frames']} | "
                    f"{mean('density_g_cm3'):.3f} | {mean('energy_eV_per_atom'):.4f} | {mean('pressure_GPa'):.2f} | "
                    f"{mean('temperature_K'):.0f} | {min(ser['min_distance_angstrom']):.2f} | {r['seed']} | "
                    f"{s['wall_s']:.0f} | {s.get('status') or s['md'].get('status', '')} |")
    dense_source = "the 773 K NPT run" if plan_name == "checks" else "that temperature's NPT run"
    text = f"""# Reference MD of liquid Te ({plan_name}): GFN1-xTB through `hdnnp md --reference`

Generated by `scripts/generate_te_reference.py --plan {plan_name}` (do not edit by hand; rerun
the script, which resumes unfinished runs and rewrites this file). Each run is one
`hdnnp md --reference {reference} --reference-args '{reference_args}'` process (32 Te atoms),
from the last frame of `data/example/HISTORY.Te.723K.gz` (5.70 g/cm³) or, for NVT runs at
7 g/cm³ and more, from the frame of {dense_source} nearest that density (the 5.70 g/cm³ start
squeezed to 7.8 g/cm³ heated past 3 T within 20 fs), scaled to the density (the `start` column),
written with `--history`:
`HISTORY.<run>.gz` (positions, cell, forces), `E.<run>.gz` (potential energy, eV) and
`STRESS.<run>.gz` (eV/Å³, ASE's sign: positive = tensile), which `hdnnp prepare` reads
(`--train-file`/`--predict-file HISTORY...gz`), and `summary.<run>.json` (the command, versions,
wall time and the time series of density, E/atom, temperature, pressure with the kinetic term,
shortest distance). Frames every 10 steps of 2 fs. Licence: as the repository (MIT). The
wall time is that of the process that finished the run (a run resumed after a kill counts only
its last part); tblite on one core of a 2-core VM, often beside a second run.

Means over the last ps of each run:

| run | T (K) | ensemble | start | start ρ (g/cm³) | length (ps) | frames | ρ (g/cm³) | E (eV/atom) | P (GPa) | T_kin (K) | d_min (Å) | seed | wall (s) | status |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    (out / "README.md").write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", default="checks")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "example" / "checks")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--reference", default="tblite:GFN1-xTB")
    ap.add_argument("--reference-args", default='{"electronic_temperature": 300.0}')
    ap.add_argument("--only", default=None, help="comma-separated run tags to do (default: all of the plan)")
    args = ap.parse_args(argv)
    (args.out / "work").mkdir(parents=True, exist_ok=True)
    runs = plan(args.plan)
    if args.only:
        keep = set(args.only.split(","))
        runs = [r for r in runs if r.tag in keep]
    with ThreadPoolExecutor(args.jobs) as pool:
        for message in pool.map(lambda r: run_one(r, args.out, args.reference, args.reference_args), runs):
            print(message, flush=True)
            write_readme(args.out, args.plan, args.reference, args.reference_args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
