#!/usr/bin/env python
"""Benchmark ``hdnnp prepare``: throughput (MB/s of HISTORY) and peak memory vs. file size.

Generates, in a temporary directory, DL_POLY 4 HISTORY files of 256 atoms with forces
(keytrj = 2; liquid-like: uniformly random positions in a cubic box of liquid-Te density)
and their energy files, one per size. For each size, ``hdnnp.stages.prepare.prepare`` runs
in a fresh subprocess (so every peak is its own), ``--repeats`` times; the script prints the
median throughput (per wall-clock and per CPU second: the latter is steadier on a shared
machine) and the peak resident memory (ru_maxrss) of those runs, plus the peak of
Python/NumPy allocations (tracemalloc) of one extra, untimed run. Memory that does not grow
with the file size is the point of the streaming readers (RSS also holds the HDF5 library's
own caches, which grow slowly with the number of chunks written).

    OMP_NUM_THREADS=1 python scripts/bench_prepare.py --sizes-mb 50,200 --repeats 3

To keep generation fast, 16 distinct frames are formatted (as
:func:`hdnnp.io.dlpoly_write.write_history` does) and cycled with increasing step numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_ATOMS = 256
N_DISTINCT = 16
BOX_ANGSTROM = 20.99  # 256 Te atoms at 5.7 g/cm³ (liquid Te)


def _pad(text: str) -> str:
    return f"{text:<72s}\n"


def _frame_body(rng) -> str:
    """Cell and atom records of one frame (DL_POLY 4 layout, keytrj 2)."""
    out = []
    cell = np.eye(3) * BOX_ANGSTROM
    for row in cell:
        out.append(_pad("".join(f"{v:20.10f}" for v in row)))
    positions = rng.uniform(0.0, BOX_ANGSTROM, (N_ATOMS, 3))
    velocities = rng.normal(0.0, 3.0, (N_ATOMS, 3))
    forces = rng.normal(0.0, 1.0, (N_ATOMS, 3)) * 9648.5332
    for i in range(N_ATOMS):
        out.append(_pad(f"{'Te':<8s}{i + 1:10d}{127.6:12.6f}{0.0:12.6f}{0.0:12.6f}"))
        for vec in (positions[i], velocities[i], forces[i]):
            out.append(_pad("".join(f"{v:20.10f}" for v in vec)))
    return "".join(out)


def generate(directory: Path, size_mb: float, seed: int = 0) -> tuple[Path, int]:
    """Write ``HISTORY.Te.<n>K`` + ``E.Te.<n>K`` of about ``size_mb`` MB; returns path, frames."""
    rng = np.random.default_rng(seed)
    bodies = [_frame_body(rng) for _ in range(N_DISTINCT)]
    frame_bytes = len(bodies[0]) + 73
    n_frames = max(1, int(size_mb * 1e6 / frame_bytes))
    tag = f"Te.{int(size_mb)}K"
    hist = directory / f"HISTORY.{tag}"
    n_records = 4 + N_ATOMS * 4
    with open(hist, "w") as fh:
        fh.write(_pad("bench: liquid-like Te, 256 atoms"))
        fh.write(_pad(f"{2:10d}{1:10d}{N_ATOMS:10d}{n_frames:21d}{2 + n_records * n_frames:21d}"))
        for k in range(n_frames):
            step = 100 * k
            fh.write(_pad(f"timestep{step:10d}{N_ATOMS:10d}{2:10d}{1:10d}{0.001:12.6f}{step * 0.001:12.6f}"))
            fh.write(bodies[k % N_DISTINCT])
    energies = -800.0 + rng.normal(0.0, 1.0, n_frames)
    with open(directory / f"E.{tag}", "w") as fh:
        fh.write("# step energy_eV\n")
        fh.writelines(f"{100 * k} {e:.8f}\n" for k, e in enumerate(energies))
    return hist, n_frames


def worker(history: str, output: str, traced: bool) -> None:
    """One measured run (in its own process): prints a JSON line.

    ``traced``: also trace Python/NumPy allocations (tracemalloc; slower, so not timed).
    """
    import tracemalloc

    from hdnnp.inputs import resolve_inputs
    from hdnnp.stages.prepare import prepare

    selection = resolve_inputs(train_files=[history])
    if traced:
        tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    summary = prepare(selection, output, overwrite=True, quiet=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    traced_mib = tracemalloc.get_traced_memory()[1] / 2**20 if traced else None
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": peak_mib, "traced_peak_mib": traced_mib,
                      "frames": summary["sets"]["train"]["n_frames"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="50,200", help="comma-separated HISTORY sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--worker", nargs=3, metavar=("HISTORY", "OUTPUT", "TRACED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.worker[2] == "1")
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        print(f"{'size MB':>8s} {'frames':>7s} {'median s':>9s} {'MB/s':>7s} {'MB/cpu-s':>11s} {'peak RSS MiB':>13s} "
              f"{'traced peak MiB':>16s}")
        for size in (float(s) for s in args.sizes_mb.split(",")):
            hist, n_frames = generate(tmp, size)
            mb = hist.stat().st_size / 1e6
            runs = []
            for traced in [False] * args.repeats + [True]:
                res = subprocess.run([sys.executable, __file__, "--worker", str(hist),
                                      str(tmp / "prepared.h5"), "1" if traced else "0"], env=env,
                                     check=True, capture_output=True, text=True)
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
            seconds = statistics.median(r["seconds"] for r in runs[:-1])
            cpu = statistics.median(r["cpu_seconds"] for r in runs[:-1])
            peak = max(r["peak_rss_mib"] for r in runs[:-1])
            traced_peak = runs[-1]["traced_peak_mib"]
            print(f"{mb:8.1f} {n_frames:7d} {seconds:9.2f} {mb / seconds:7.1f} {mb / cpu:11.1f} {peak:13.1f} "
                  f"{traced_peak:16.1f}", flush=True)
            hist.unlink()


if __name__ == "__main__":
    main()
