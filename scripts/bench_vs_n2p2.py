#!/usr/bin/env python
"""Side-by-side throughput of hdnnp and n2p2's libnnp on the same boxes (issue #18).

Measures boxes per second, one pinned core each, for

1. neighbour list          hdnnp.neighbors.neighbor_list          / Structure::calculateNeighborList
2. symmetry-function values  hdnnp.descriptors.compute_descriptors / + calculateSymmetryFunctionGroups
3. values + derivatives      compute_descriptors(derivatives=True)  / the same with derivatives
4. energy                    Potential.predict(forces=False)        / + atomic NNs + calculateEnergy
5. energy + forces           Potential.predict()                    / + dE/dG + calculateForces

Every evaluation starts from positions (hdnnp's functions build their own neighbour list, so the
n2p2 figures of 2-5 include its neighbour list as well). The n2p2 side is a small driver of our own,
``scripts/n2p2_bench_driver.cpp``, compiled here against n2p2's static ``libnnp.a`` with the flags
of n2p2's ``makefile.gnu`` (``-O3 -march=native -std=c++11 -DEIGEN_DONT_PARALLELIZE``); it times
n2p2's default path (symmetry-function groups, as ``nnp-predict`` / ``Mode::evaluateNNP``) on a fresh
copy of each box per evaluation, so no cached neighbour list or symmetry function is reused.

The boxes: ``--boxes`` frames of a frame-set group (``prepared.h5``, group ``predict``) made into
``--supercell`` supercells with random displacements (``--displacement`` Å standard deviation, fixed
``--seed``), so all differ. The model is exported with hdnnp's n2p2 export (Å, eV); both codes'
energies and forces are compared first (the maximum relative differences are printed).

Protocol: this process and the driver are pinned to ``--core`` with one thread
(OMP_NUM_THREADS=1 etc.); ``--rounds`` alternating rounds (hdnnp, then n2p2) each time every task
over all boxes ``--repeats`` times after one warm-up; the table gives the medians over rounds and
the ratio hdnnp/n2p2 (above 1: hdnnp faster). The numbers go to ``WORKDIR/bench_vs_n2p2.json``.

Usage (n2p2 built with ``make libnnp COMP=gnu``; about 30 s with the defaults on a 256-atom, 30-feature Te model)::

    python scripts/bench_vs_n2p2.py MODEL.h5 FRAMES.h5 --n2p2-src /path/to/n2p2 \\
        [--group predict] [--boxes 20] [--rounds 5] [--repeats 1] [--workdir ./bench_vs_n2p2]

Without ``--n2p2-src`` (and no N2P2_SRC in the environment) only hdnnp's figures are printed.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from hdnnp.baseline import iter_frames  # noqa: E402
from hdnnp.descriptors import compute_descriptors  # noqa: E402
from hdnnp.frames import Frame  # noqa: E402
from hdnnp.interop.n2p2 import export_potential  # noqa: E402
from hdnnp.io.n2p2 import write_n2p2  # noqa: E402
from hdnnp.model import Potential  # noqa: E402
from hdnnp.neighbors import neighbor_list  # noqa: E402

TASKS = [
    ("nl", "neighbour list"),
    ("sf", "symmetry-function values"),
    ("sfd", "values + derivatives"),
    ("energy", "energy"),
    ("forces", "energy + forces"),
]
DRIVER_SRC = Path(__file__).with_name("n2p2_bench_driver.cpp")
N2P2_FLAGS = ["-O3", "-march=native", "-std=c++11", "-DEIGEN_DONT_PARALLELIZE"]


def make_boxes(frames_path, group, n_boxes, supercell, displacement, seed):
    """``n_boxes`` supercells (positions, cell, pbc, species) of the group's frames, displaced."""
    rng = np.random.default_rng(seed)
    with h5py.File(frames_path, "r") as f:
        frames = []
        for fr in iter_frames(f[group]):
            frames.append(fr)
            if len(frames) == n_boxes:
                break
    if not frames:
        sys.exit(f"no frames in {frames_path}:{group}")
    shifts = np.array([(i, j, k) for i in range(supercell) for j in range(supercell) for k in range(supercell)])
    boxes = []
    for b in range(n_boxes):  # cycles through the frames if there are fewer; displacements differ
        fr = frames[b % len(frames)]
        cell = np.asarray(fr.cell, dtype=float)
        pos = np.asarray(fr.positions, dtype=float)
        pos = (pos[None, :, :] + (shifts @ cell)[:, None, :]).reshape(-1, 3)
        pos = pos + rng.normal(0.0, displacement, pos.shape)
        species = np.tile(np.asarray(fr.species), len(shifts))
        boxes.append((pos, cell * supercell, np.asarray(fr.pbc, dtype=bool), species))
    return boxes


def hdnnp_calls(potential):
    """Task -> function of one box doing that task's work with hdnnp."""
    fs, cutoff = potential.feature_set, float(np.max(potential.feature_set.cutoff))
    return {
        "nl": lambda pos, cell, pbc, sp: neighbor_list(pos, cell, pbc, cutoff),
        "sf": lambda pos, cell, pbc, sp: compute_descriptors(pos, cell, pbc, sp, fs),
        "sfd": lambda pos, cell, pbc, sp: compute_descriptors(pos, cell, pbc, sp, fs, derivatives=True),
        "energy": lambda pos, cell, pbc, sp: potential.predict(pos, cell, pbc, sp, forces=False),
        "forces": lambda pos, cell, pbc, sp: potential.predict(pos, cell, pbc, sp),
    }


def time_hdnnp(call, boxes, repeats):
    """Boxes per second of ``call`` over all boxes, ``repeats`` times (only the calls timed)."""
    seconds = 0.0
    for _ in range(repeats):
        for box in boxes:
            t0 = time.perf_counter()
            call(*box)
            seconds += time.perf_counter() - t0
    return len(boxes) * repeats / seconds


def build_driver(n2p2_src, workdir):
    """Compile the driver against ``n2p2_src``'s libnnp.a (rebuilt when the source is newer)."""
    lib_dir = Path(n2p2_src) / "src" / "libnnp"
    lib = lib_dir / "libnnp.a"
    if not lib.exists():
        sys.exit(f"{lib} not found: build n2p2's library first (cd {n2p2_src}/src && make libnnp COMP=gnu)")
    # Same -D options as the library (an ABI-relevant one such as N2P2_FULL_SFD_MEMORY must match).
    makefile = Path(n2p2_src) / "src" / "makefile.gnu"
    options = []
    if makefile.exists():
        for line in makefile.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("PROJECT_OPTIONS"):
                options += [w for w in line.split("=", 1)[1].split() if w.startswith("-D")]
    options = sorted(set(options) | {"-DEIGEN_DONT_PARALLELIZE"})
    exe = Path(workdir) / "n2p2_bench_driver"
    cmd = ["g++", *N2P2_FLAGS[:-1], *options, f"-I{lib_dir}", "-I/usr/include/eigen3",
           str(DRIVER_SRC), str(lib), "-lgsl", "-lgslcblas", "-o", str(exe)]
    stamp = Path(workdir) / "n2p2_bench_driver.cmd"
    if (not exe.exists() or exe.stat().st_mtime < max(DRIVER_SRC.stat().st_mtime, lib.stat().st_mtime)
            or not stamp.exists() or stamp.read_text() != " ".join(cmd)):
        print("compiling:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        stamp.write_text(" ".join(cmd))
    return exe, cmd


def run_driver(exe, potential_dir, data, repeats, tasks, core, results=None):
    """Driver's boxes per second per task (pinned to ``core``)."""
    cmd = ["taskset", "-c", str(core), str(exe), str(potential_dir), str(data), str(repeats), ",".join(tasks)]
    if results is not None:
        cmd.append(str(results))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {d["task"]: d["boxes_per_s"] for d in rows}


def read_results(path):
    """Energies and forces of the driver's RESULTS_OUT."""
    energies, forces, cur = [], [], None
    for line in Path(path).read_text().splitlines():
        w = line.split()
        if w[0] == "box":
            energies.append(float(w[3]))
            cur = []
            forces.append(cur)
        else:
            cur.append([float(x) for x in w])
    return np.array(energies), [np.array(f) for f in forces]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="hdnnp model (.h5)")
    ap.add_argument("frames", help="frame-set file (prepared.h5)")
    ap.add_argument("--group", default="predict", help="frame-set group (default predict)")
    ap.add_argument("--boxes", type=int, default=20)
    ap.add_argument("--supercell", type=int, default=2, help="n x n x n supercell of each frame")
    ap.add_argument("--displacement", type=float, default=0.05, help="random displacement, Å (std)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (hdnnp, n2p2)")
    ap.add_argument("--repeats", type=int, default=1, help="passes over all boxes per task and round")
    ap.add_argument("--core", type=int, default=0, help="CPU core both codes are pinned to")
    ap.add_argument("--n2p2-src", default=os.environ.get("N2P2_SRC"), help="n2p2 source tree (env N2P2_SRC)")
    ap.add_argument("--workdir", default="./bench_vs_n2p2")
    args = ap.parse_args(argv)

    os.sched_setaffinity(0, {args.core})
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    potential = Potential.load(args.model)
    boxes = make_boxes(args.frames, args.group, args.boxes, args.supercell, args.displacement, args.seed)
    n_atoms = sorted({len(b[0]) for b in boxes})
    nf = ", ".join(str(potential.feature_set.n_features(int(z))) for z in sorted({int(z) for b in boxes for z in b[3]}))
    print(f"{len(boxes)} boxes of {n_atoms} atoms, {nf} "
          f"features; core {args.core}, {args.rounds} rounds x {args.repeats} pass(es)", flush=True)
    calls = hdnnp_calls(potential)
    tasks = [t for t, _ in TASKS]

    report = {"model": str(args.model), "frames": f"{args.frames}:{args.group}", "boxes": len(boxes),
              "atoms_per_box": n_atoms, "rounds": args.rounds, "repeats": args.repeats, "core": args.core,
              "machine": platform.processor() or platform.machine(), "python": sys.version.split()[0]}

    driver = None
    if args.n2p2_src:
        potential_dir = workdir / "potential"
        export_potential(potential, potential_dir, overwrite=True)
        data = workdir / "input.data"
        write_n2p2(data, [Frame(positions=p, species=z, cell=c, pbc=pbc) for p, c, pbc, z in boxes],
                   comment="bench_vs_n2p2 box")
        exe, cmd = build_driver(args.n2p2_src, workdir)
        driver = (exe, potential_dir, data)
        report["n2p2_src"] = str(args.n2p2_src)
        report["driver_compile"] = " ".join(cmd)
        # Same work? Energies and forces of both codes.
        results = workdir / "n2p2_results.txt"
        run_driver(exe, potential_dir, data, 0, [], args.core, results)
        e_n2p2, f_n2p2 = read_results(results)
        de, df = [], []
        for box, e2, f2 in zip(boxes, e_n2p2, f_n2p2):
            e1, f1 = potential.predict(*box)
            de.append(abs(e1 - e2) / abs(e2))
            df.append(np.max(np.abs(f1 - f2)) / np.max(np.abs(f2)))
        report["max_rel_energy_diff"], report["max_rel_force_diff"] = float(max(de)), float(max(df))
        print(f"hdnnp vs n2p2: max relative energy difference {max(de):.2e}, "
              f"max force difference / max |force| {max(df):.2e}", flush=True)

    for t in tasks:  # warm-up (hdnnp; the driver warms up itself)
        time_hdnnp(calls[t], boxes[:2], 1)
    rounds = {"hdnnp": {t: [] for t in tasks}, "n2p2": {t: [] for t in tasks}}
    for r in range(args.rounds):
        for t in tasks:
            rounds["hdnnp"][t].append(time_hdnnp(calls[t], boxes, args.repeats))
        line = "  ".join(f"{t} {rounds['hdnnp'][t][-1]:.3g}" for t in tasks)
        print(f"round {r + 1}/{args.rounds} hdnnp: {line}", flush=True)
        if driver:
            got = run_driver(*driver, args.repeats, tasks, args.core)
            for t in tasks:
                rounds["n2p2"][t].append(got[t])
            line = "  ".join(f"{t} {got[t]:.3g}" for t in tasks)
            print(f"round {r + 1}/{args.rounds} n2p2:  {line}", flush=True)

    report["boxes_per_s"] = rounds if driver else {"hdnnp": rounds["hdnnp"]}
    report["median_boxes_per_s"] = {}
    print()
    if driver:
        print("| task | hdnnp (boxes/s) | n2p2 (boxes/s) | hdnnp/n2p2 |")
        print("|---|---:|---:|---:|")
    else:
        print("| task | hdnnp (boxes/s) |")
        print("|---|---:|")
    for t, name in TASKS:
        h = statistics.median(rounds["hdnnp"][t])
        med = {"hdnnp": h}
        if driver:
            n = statistics.median(rounds["n2p2"][t])
            med.update(n2p2=n, ratio=h / n)
            print(f"| {name} | {h:.3g} | {n:.3g} | {h / n:.2f}x |")
        else:
            print(f"| {name} | {h:.3g} |")
        report["median_boxes_per_s"][t] = med
    out = workdir / "bench_vs_n2p2.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
