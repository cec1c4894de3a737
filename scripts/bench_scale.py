#!/usr/bin/env python
"""Scale benchmark: wall time and peak memory of ``prepare`` and ``symmetry`` vs data size.

Generates a synthetic data set of 256-atom Te boxes with forces (fcc lattice, 4x4x4
conventional cells, a = 5.3 Å, i.e. liquid-Te density 0.027 Å⁻³; Gaussian displacements of
0.1 Å × sqrt(T / 600 K); harmonic energies E = E0 + k/2 sum |r - r0|^2 and forces F = -k (r - r0), k = 1 eV/Å²)
written as DL_POLY 4 HISTORY + energy files in chunks (never the whole set in memory), then
runs each stage in its own process and reports its wall time and peak resident memory
(``ru_maxrss`` from ``wait4`` of that process, cross-checked by polling with psutil).

The frames of one size are split over two training temperatures (600 K, 700 K) and one
prediction temperature (800 K) in the ratio 2:2:1.

``symmetry`` on 20 000 frames would take about an hour on one core and write about 75 GB
(derivatives dG/dr of 30 features for every neighbour pair: ~3.8 MB per 256-atom frame), so it
runs on prepared files of ``--symmetry-frames`` frames written directly with
:class:`hdnnp.h5io.FrameSetWriter`; its time per frame is measured and extrapolated (labelled
so), its peak memory measured at each size run.

Example (2-core machine, OMP_NUM_THREADS=1; about 6 minutes, 1.5 GB of scratch disk)::

    OMP_NUM_THREADS=1 python scripts/bench_scale.py --frames 2000 20000 \
        --symmetry-frames 100 400 --workdir /tmp/hdnnp_bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from hdnnp.frames import Frame
from hdnnp.h5io import FrameSetWriter, write_root_attrs
from hdnnp.io.dlpoly_write import write_history

#: Lattice constant of the fcc supercell (Å): 4 atoms / a^3 = 0.0269 Å⁻³, liquid Te.
LATTICE_ANGSTROM = 5.3
N_CELLS = 4  # 4 x 4 x 4 conventional cells x 4 atoms = 256 atoms
TE = 52
SPRING_EV_PER_ANGSTROM2 = 1.0
DISPLACEMENT_ANGSTROM = 0.1
ENERGY0_EV_PER_ATOM = -3.0
#: (temperature K, share of the frames, role)
TEMPERATURES = ((600, 0.4, "train"), (700, 0.4, "train"), (800, 0.2, "predict"))
CHUNK_FRAMES = 200
#: DL_POLY 4 HISTORY size per frame: (4 + 256 * 4) records of 73 bytes.
HISTORY_BYTES_PER_FRAME = (4 + 256 * 4) * 73
#: symmetry.h5 size per 256-atom frame with derivatives (measured: 7.67 GB for 2000 frames).
SYMMETRY_BYTES_PER_FRAME = 3.84e6
#: ... without derivatives: raw (84) and scaled (30) values in float64 per atom, copied frames.
SYMMETRY_BYTES_PER_FRAME_NO_DERIVATIVES = 256 * (84 + 30 + 6) * 8


def lattice() -> tuple[np.ndarray, np.ndarray]:
    """fcc positions (256, 3) Å, centred on the origin as DL_POLY writes them, and the cubic
    cell (3, 3) Å."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + 0.25
    cells = np.indices((N_CELLS,) * 3).reshape(3, -1).T
    frac = (cells[:, None, :] + basis[None, :, :]).reshape(-1, 3) / N_CELLS - 0.5
    cell = np.eye(3) * LATTICE_ANGSTROM * N_CELLS
    return frac @ cell, cell


def synthetic_frames(n_frames: int, temperature: float, seed: int, first_step: int = 0):
    """Yield ``n_frames`` frames lazily (harmonic energies and forces, see module docstring)."""
    rng = np.random.default_rng(seed)
    r0, cell = lattice()
    n = len(r0)
    scale = DISPLACEMENT_ANGSTROM * np.sqrt(temperature / 600.0)
    for k in range(n_frames):
        d = scale * rng.standard_normal((n, 3))
        energy = ENERGY0_EV_PER_ATOM * n + 0.5 * SPRING_EV_PER_ANGSTROM2 * float(np.sum(d * d))
        yield Frame(positions=r0 + d, species=np.full(n, TE, np.int32), cell=cell,
                    pbc=np.ones(3, bool), energy=energy, forces=-SPRING_EV_PER_ANGSTROM2 * d,
                    temperature=float(temperature), step=first_step + 10 * k, source="synthetic")


def _chunks(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_dataset(directory: Path, n_frames: int, system: str = "Te") -> dict:
    """Write HISTORY.<system>.<T>K and E.<system>.<T>K for every temperature, in chunks.

    The DL_POLY 4 header line (which holds the frame and record counts) is written once;
    each chunk is formatted by :func:`write_history` into a scratch file and appended without
    its two header lines. Returns {temperature: n_frames}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for seed, (temperature, share, _) in enumerate(TEMPERATURES):
        count = int(round(share * n_frames))
        counts[temperature] = count
        history = directory / f"HISTORY.{system}.{temperature}K"
        energies = directory / f"E.{system}.{temperature}K"
        scratch = directory / ".chunk"
        natms = N_CELLS ** 3 * 4
        keytrj, imcon = 2, 1
        nrec = 2 + count * (4 + natms * (2 + keytrj))
        with open(history, "w") as hist, open(energies, "w") as ene:
            hist.write(f"{'hdnnp bench_scale synthetic Te':<72s}\n")
            hist.write(f"{f'{keytrj:10d}{imcon:10d}{natms:10d}{count:21d}{nrec:21d}':<72s}\n")
            ene.write("# step  energy_eV\n")
            for chunk in _chunks(synthetic_frames(count, temperature, seed), CHUNK_FRAMES):
                write_history(scratch, chunk, layout="dlpoly4", keytrj=keytrj)
                with open(scratch) as fh:
                    fh.readline()
                    fh.readline()
                    shutil.copyfileobj(fh, hist)
                for fr in chunk:
                    ene.write(f"{fr.step:d} {fr.energy:.10f}\n")
        scratch.unlink(missing_ok=True)
    return counts


def write_prepared(path: Path, n_frames: int) -> None:
    """A prepared.h5 (stage 'prepare' contract, DESIGN.md) of ``n_frames`` synthetic frames,
    split train/predict like the HISTORY data, written in chunks."""
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "prepare", elements=np.array([TE], np.int32))
        for set_name in ("train", "predict"):
            writer = FrameSetWriter(h5.create_group(set_name), with_forces=True)
            for seed, (temperature, share, role) in enumerate(TEMPERATURES):
                if role != set_name:
                    continue
                count = max(1, int(round(share * n_frames)))
                for chunk in _chunks(synthetic_frames(count, temperature, seed), CHUNK_FRAMES):
                    writer.append(chunk)
            writer.close()


def measure(command: list[str], log_path: Path, poll_s: float = 0.2) -> dict:
    """Run ``command`` in its own process; wall time (s) and peak RSS (MiB) of that process.

    Peak RSS: ``ru_maxrss`` of the child from ``os.wait4`` (kernel's high-water mark of the
    child and its reaped descendants, kB on Linux); ``psutil_peak_mib``: the largest sum of
    RSS over the process tree seen by polling every ``poll_s`` seconds (a lower bound).
    """
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        peak = [0]
        done = threading.Event()

        def poll():
            try:
                import psutil
            except ImportError:
                return
            try:
                root = psutil.Process(proc.pid)
                while not done.is_set():
                    rss = 0
                    for p in [root, *root.children(recursive=True)]:
                        try:
                            rss += p.memory_info().rss
                        except psutil.Error:
                            pass
                    peak[0] = max(peak[0], rss)
                    time.sleep(poll_s)
            except psutil.Error:
                return

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"command": " ".join(command), "returncode": proc.returncode, "wall_s": round(wall, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "psutil_peak_mib": round(peak[0] / 2**20, 1)}


def hdnnp_command(*args) -> list[str]:
    return [sys.executable, "-m", "hdnnp", *map(str, args)]


def prepare_command(data_dir: Path, out: Path) -> list[str]:
    train = [f"{t}K" for t, _, role in TEMPERATURES if role == "train"]
    predict = [f"{t}K" for t, _, role in TEMPERATURES if role == "predict"]
    return hdnnp_command("prepare", "--data-dir", data_dir, "--system", "Te",
                         "--train", ",".join(train), "--predict", ",".join(predict),
                         "-o", out, "--overwrite", "-q")


def symmetry_command(prepared: Path, out: Path, extra=()) -> list[str]:
    return hdnnp_command("symmetry", prepared, "-o", out, "--device", "cpu", "--overwrite", "-q",
                         *extra)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[2000, 20000],
                        help="data set sizes (frames in all) for prepare")
    parser.add_argument("--symmetry-frames", type=int, nargs="*", default=[100, 400],
                        help="sizes of the prepared files symmetry runs on (0: skip symmetry)")
    parser.add_argument("--symmetry-args", default="",
                        help="extra options for hdnnp symmetry, e.g. --symmetry-args='--derivatives never'")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hdnnp_bench"))
    parser.add_argument("--skip-prepare", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the generated HISTORY files")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(args.workdir).free / 1e9
    need_gb = 0 if args.skip_prepare else max(args.frames) * HISTORY_BYTES_PER_FRAME / 1e9
    per_frame = (SYMMETRY_BYTES_PER_FRAME_NO_DERIVATIVES if "--derivatives never" in args.symmetry_args
                 else SYMMETRY_BYTES_PER_FRAME)
    need_gb = max([need_gb, *(n * per_frame / 1e9 for n in args.symmetry_frames)])
    print(f"workdir {args.workdir}: {free_gb:.0f} GB free, largest run needs about "
          f"{need_gb:.1f} GB of scratch", flush=True)
    if need_gb > 0.8 * free_gb:
        print("not enough disk space", file=sys.stderr)
        return 1
    results = []
    if not args.skip_prepare:
        for n_frames in args.frames:
            data_dir = args.workdir / f"data_{n_frames}"
            t0 = time.perf_counter()
            counts = write_dataset(data_dir, n_frames)
            size_gb = sum(p.stat().st_size for p in data_dir.iterdir()) / 1e9
            print(f"generated {n_frames} frames {counts} ({size_gb:.2f} GB) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            out = args.workdir / f"prepared_{n_frames}.h5"
            row = measure(prepare_command(data_dir, out), args.workdir / f"prepare_{n_frames}.log")
            row.update(stage="prepare", frames=n_frames, atoms=n_frames * 256, input_gb=round(size_gb, 2),
                       output_gb=round(out.stat().st_size / 1e9, 3) if out.exists() else None)
            print(json.dumps(row), flush=True)
            results.append(row)
            if not args.keep:
                shutil.rmtree(data_dir)
                out.unlink(missing_ok=True)
    for n_frames in [n for n in args.symmetry_frames if n > 0]:
        prepared = args.workdir / f"prepared_direct_{n_frames}.h5"
        write_prepared(prepared, n_frames)
        out = args.workdir / f"symmetry_{n_frames}.h5"
        row = measure(symmetry_command(prepared, out, args.symmetry_args.split()),
                      args.workdir / f"symmetry_{n_frames}.log")
        row.update(stage="symmetry", frames=n_frames, atoms=n_frames * 256,
                   output_gb=round(out.stat().st_size / 1e9, 3) if out.exists() else None,
                   s_per_frame=round(row["wall_s"] / n_frames, 4),
                   extrapolated_20000_frames_h=round(row["wall_s"] / n_frames * 20000 / 3600, 2))
        print(json.dumps(row), flush=True)
        results.append(row)
        out.unlink(missing_ok=True)
        prepared.unlink(missing_ok=True)
    print()
    print(f"{'stage':<9s} {'frames':>7s} {'wall s':>9s} {'peak RSS MiB':>13s} {'psutil MiB':>11s}  rc")
    for r in results:
        print(f"{r['stage']:<9s} {r['frames']:>7d} {r['wall_s']:>9.1f} {r['peak_rss_mib']:>13.1f} "
              f"{r['psutil_peak_mib']:>11.1f}  {r['returncode']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
