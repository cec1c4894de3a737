#!/usr/bin/env python
"""Training memory against the data size (issue #18): symmetry, then training with the
descriptors streamed from symmetry.h5 (``hdnnp train --stream``). ``bench_scale.py`` measures
prepare and symmetry alone on larger synthetic sets.

For each size N in ``--frames``: N boxes of ``--supercell``-repeated frames of FRAMES.h5 (a
prepared.h5, e.g. of ``hdnnp run``), each displaced at random (``--displacement`` Å), labelled
with MODEL's energies and forces (a consistent target; the figures here are about memory and
time, not accuracy), written to prepared.h5 frame chunk by chunk; then ``hdnnp symmetry`` and
``hdnnp train --stream always --epochs E`` as separate processes under ``/usr/bin/time -v``.
Printed per size: wall time and peak RSS of each stage and the size of symmetry.h5. Flat peak
RSS across sizes is the claim; the disk grows with the data (the derivatives).

    OMP_NUM_THREADS=1 python scripts/bench_train_scale.py MODEL.h5 FRAMES.h5 --frames 500,2000 \\
        [--supercell 2] [--epochs 2] [--precision float32] [--optimizer ekf] [--workdir bench_train_scale]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from bench_accuracy import timed  # this directory: /usr/bin/time -v wall time and peak RSS


def make_prepared(path, model_path, frames_path, n_frames, supercell, displacement, seed, chunk=64):
    """N labelled supercell boxes (train set) and 4 more (predict set), written in chunks."""
    from hdnnp.baseline import iter_frames
    from hdnnp.frames import Frame
    from hdnnp.h5io import FrameSetWriter, write_root_attrs
    from hdnnp.model import Potential

    pot = Potential.load(model_path)
    rng = np.random.default_rng(seed)
    with h5py.File(frames_path, "r") as f:
        group = "train" if "train" in f else "predict"
        base = list(iter_frames(f[group]))
    k = supercell
    shifts = np.array([[i, j, m] for i in range(k) for j in range(k) for m in range(k)], float)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "prepare")
        h5.attrs["elements"] = np.array(sorted(set(base[0].species.tolist())), np.int32)
        for name, count in (("train", n_frames), ("predict", 4)):
            writer = FrameSetWriter(h5.create_group(name), with_forces=True)
            for c0 in range(0, count, chunk):
                out = []
                for n in range(c0, min(c0 + chunk, count)):
                    fr = base[n % len(base)]
                    pos = (fr.positions[None] + (shifts @ fr.cell)[:, None]).reshape(-1, 3)
                    pos = pos + rng.normal(0.0, displacement, pos.shape)
                    cell, species = fr.cell * k, np.tile(fr.species, len(shifts))
                    energy, forces = pot.predict(pos, cell, True, species)
                    out.append(Frame(positions=pos, species=species, cell=cell, pbc=np.ones(3, bool), energy=energy,
                                     forces=forces, temperature=fr.temperature, step=n, source="bench_train_scale"))
                writer.append(out)
            writer.close()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("frames")
    ap.add_argument("--frames", dest="sizes", default="500,2000")
    ap.add_argument("--supercell", type=int, default=2)
    ap.add_argument("--displacement", type=float, default=0.05)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--optimizer", default="ekf")
    ap.add_argument("--precision", default="float32", choices=["float32", "float64"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="bench_train_scale")
    args = ap.parse_args()
    hdnnp = [sys.executable, "-m", "hdnnp"]
    results = []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        work = Path(args.workdir) / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        label_s = make_prepared(work / "prepared.h5", args.model, args.frames, n, args.supercell, args.displacement,
                                args.seed)
        sym = timed([*hdnnp, "symmetry", "prepared.h5", "-o", "symmetry.h5", "--overwrite", "-q",
                     "--derivative-precision", args.precision], work)
        size_mb = (work / "symmetry.h5").stat().st_size / 1e6
        tr = timed([*hdnnp, "train", "symmetry.h5", "-o", "model.h5", "--overwrite", "-q", "--stream", "always",
                    "--epochs", str(args.epochs), "--patience", "0", "--optimizer", args.optimizer], work)
        row = dict(frames=n, label_s=label_s, symmetry=sym, train=tr, symmetry_h5_mb=size_mb)
        with h5py.File(work / "prepared.h5", "r") as h5:
            row["atoms"] = int(h5["train/frames/atom_offset"][-1])
        results.append(row)
        print(json.dumps(row), flush=True)
    Path(args.workdir, "bench_train_scale.json").write_text(json.dumps({"options": vars(args), "results": results},
                                                                 indent=1))
    print(f"\n| frames | atoms | symmetry wall | symmetry peak RSS | symmetry.h5 | train ({args.epochs} epochs "
          f"{args.optimizer}, streamed) wall | train peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['frames']} | {r['atoms']} | {r['symmetry']['wall_s']:.0f} s | "
              f"{r['symmetry']['peak_rss_mib']:.0f} MiB | {r['symmetry_h5_mb']:.0f} MB | {r['train']['wall_s']:.0f} s | "
              f"{r['train']['peak_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
