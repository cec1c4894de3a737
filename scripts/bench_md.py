#!/usr/bin/env python
"""MD benchmark of an hdnnp potential: speed (atom-steps/s, memory) and stability.

Speed: ``hdnnp md`` style NVT (Langevin, 2 fs) for boxes of N atoms (the 32-atom Te start frame
repeated), a fixed number of steps each, one process per size so that the peak memory
(ru_maxrss) belongs to that run alone; memory flat in the trajectory length is checked by
running the largest size for 1x and 4x the steps.

Stability: time until a run leaves the training domain (a feature beyond the extrapolation
limit of the guards), and time until it collapses (shortest distance below the guard, or
overheating), for NVE and NVT at the given temperatures and sizes, capped at --max-time ps.

    python scripts/bench_md.py speed --model model.h5 --start prepared.h5 --sizes 32,256,2048 --steps 40
    python scripts/bench_md.py stability --model model.h5 --start prepared.h5 --temperatures 673,773,973 \\
        --sizes 32,256 --max-time 5

Run with OMP_NUM_THREADS=1 for one-core figures. Prints one line per run and a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def supercell_for(n_atoms: int, base: int = 32) -> tuple[int, int, int]:
    k = round((n_atoms / base) ** (1 / 3))
    if k ** 3 * base != n_atoms:
        raise SystemExit(f"{n_atoms} atoms is not {base} x k³")
    return (k, k, k)


def one_speed_run(model, start, n_atoms, steps, out_dir) -> dict:
    """In this process: NVT for ``steps`` steps, no frames stored except the first and last."""
    from hdnnp.md.driver import MDSettings
    from hdnnp.md.guards import GuardLimits
    from hdnnp.stages.md import md

    settings = MDSettings(ensemble="nvt", temperature_K=773.0, timestep_fs=2.0, n_steps=steps, write_every=steps,
                          guard_every=steps, limits=GuardLimits(on_extrapolation="warn", min_distance_angstrom=0.0))
    t0 = time.perf_counter()
    summary = md(model, start, Path(out_dir) / f"speed{n_atoms}.h5", settings, supercell=supercell_for(n_atoms),
                 overwrite=True, quiet=True, log=lambda m: None)
    wall = time.perf_counter() - t0
    return dict(n_atoms=n_atoms, steps=steps, wall_s=wall, atom_steps_per_s=summary["atom_steps_per_s"],
                ns_per_day=summary["ns_per_day"],
                peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def speed(args):
    rows = []
    sizes = [int(s) for s in args.sizes.split(",")]
    plan = [(n, args.steps) for n in sizes] + [(sizes[-1], 4 * args.steps)]
    with tempfile.TemporaryDirectory() as tmp:
        for n, steps in plan:
            for _ in range(args.repeats):
                cmd = [sys.executable, __file__, "_speed_one", "--model", args.model, "--start", args.start,
                       "--n-atoms", str(n), "--steps", str(steps), "--out-dir", tmp]
                row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n| atoms | steps | atom-steps/s (median) | ns/day | peak memory |\n|---|---|---|---|---|")
    for n, steps in plan:
        sel = [r for r in rows if r["n_atoms"] == n and r["steps"] == steps]
        print(f"| {n} | {steps} | {np.median([r['atom_steps_per_s'] for r in sel]):.0f} | "
              f"{np.median([r['ns_per_day'] for r in sel]):.3g} | {np.median([r['peak_mib'] for r in sel]):.0f} MiB |")


def stability(args):
    import h5py

    from hdnnp.md.driver import MDSettings
    from hdnnp.md.guards import DEFAULT_MAX_TEMPERATURE_FACTOR, GuardLimits
    from hdnnp.stages.md import md

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            for temperature in [float(t) for t in args.temperatures.split(",")]:
                for ensemble in ("nve", "nvt"):
                    limits = GuardLimits(on_extrapolation="warn",
                                         max_temperature_K=DEFAULT_MAX_TEMPERATURE_FACTOR * temperature)
                    settings = MDSettings(ensemble=ensemble, temperature_K=temperature, timestep_fs=args.timestep,
                                          n_steps=int(args.max_time * 1000 / args.timestep), write_every=10,
                                          guard_every=10, limits=limits, seed=args.seed)
                    out = Path(tmp) / f"{ensemble}{n}_{temperature:g}.h5"
                    # the start frame at this temperature when the file has one (DL_POLY start: frame 0)
                    start_set, start_frame = _frame_at(args.start, temperature)
                    s = md(args.model, args.start, out, settings, supercell=supercell_for(n), start_set=start_set,
                           start_frame=start_frame, overwrite=True, quiet=True, log=lambda m: None)
                    with h5py.File(out) as h5:
                        g = h5["trajectory"]
                        t = g["frames/time"][:]
                        excess = g["guards/extrapolation_max_excess"][:]
                        out_of_domain = np.flatnonzero(excess > limits.max_extrapolation_excess)
                        energy = g["frames/energy"][:] / n
                        conserved = g["frames/conserved_energy"][:] / n
                        shortest = float(g["guards/min_distance"][:].min())
                    # NVE drift: slope of the conserved energy per atom (least squares), meV/atom/ps
                    drift = (float(1e3 * np.polyfit(t, conserved, 1)[0]) if ensemble == "nve" and len(t) > 2
                             else None)
                    row = dict(n_atoms=n, temperature_K=temperature, ensemble=ensemble,
                               left_domain_ps=float(t[out_of_domain[0]]) if len(out_of_domain) else None,
                               collapse_ps=s["time_ps"] if s["status"] != "complete" else None,
                               ran_ps=s["time_ps"], reason=s["reason"],
                               energy_drop_mev_per_atom=float(1e3 * (energy[0] - energy.min())),
                               nve_drift_mev_per_atom_ps=drift, min_distance_angstrom=shortest,
                               atom_steps_per_s=s["atom_steps_per_s"])
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    print(f"\n| atoms | T (K) | ensemble | left the domain (ps) | collapsed (ps; cap {args.max_time:g}) | "
          f"lowest E/N below start (meV/atom) | shortest distance (Å) | NVE drift (meV/atom/ps) |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        left = "never" if r["left_domain_ps"] is None else f"{r['left_domain_ps']:.2f}"
        collapse = "no" if r["collapse_ps"] is None else f"{r['collapse_ps']:.2f}"
        print(f"| {r['n_atoms']} | {r['temperature_K']:g} | {r['ensemble']} | {left} | {collapse} | "
              f"{r['energy_drop_mev_per_atom']:.0f} | {r['min_distance_angstrom']:.2f} | "
              + ("-" if r["nve_drift_mev_per_atom_ps"] is None else f"{r['nve_drift_mev_per_atom_ps']:.3f}") + " |")


def _frame_at(start, temperature: float) -> tuple[str | None, int]:
    """(set, index) of the first frame at ``temperature`` in a prepared.h5 (predict set first,
    then train); (None, 0) for a structure file."""
    import h5py

    try:
        h5 = h5py.File(start, "r")
    except OSError:
        return None, 0
    with h5:
        for name in ("predict", "train"):
            if name in h5:
                hit = np.flatnonzero(np.isclose(h5[name]["frames/temperature"][:], temperature))
                if len(hit):
                    return name, int(hit[0])
    raise SystemExit(f"{start}: no frame at {temperature:g} K")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("speed", "stability", "_speed_one"):
        p = sub.add_parser(name)
        p.add_argument("--model", default="model.h5")
        p.add_argument("--start", default="prepared.h5")
        p.add_argument("--sizes", default="32,256,2048")
        p.add_argument("--steps", type=int, default=40)
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--temperatures", default="773")
        p.add_argument("--max-time", type=float, default=5.0)
        p.add_argument("--timestep", type=float, default=2.0)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--n-atoms", type=int, default=32)
        p.add_argument("--out-dir", default=".")
    args = parser.parse_args()
    if args.what == "_speed_one":
        print(json.dumps(one_speed_run(args.model, args.start, args.n_atoms, args.steps, args.out_dir)))
    else:
        {"speed": speed, "stability": stability}[args.what](args)


if __name__ == "__main__":
    main()
