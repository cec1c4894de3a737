#!/usr/bin/env python
"""Time and temporary memory of one full-set loss + gradient evaluation against ``--batch-boxes``.

L-BFGS, the derivative-free search and the per-epoch validation evaluate the loss of a whole set;
``--batch-boxes`` (NUMBER_OF_BOXES_TO_OPT) splits that evaluation into blocks of boxes whose
contributions are summed (:func:`hdnnp.training.loss.evaluate`). This script loads the training
set of a ``symmetry.h5`` with forces, evaluates energy + force loss and gradient (15-15 networks,
random weights) for each block size, and prints the median wall time of ``--repeats`` runs and
the peak of the memory allocated during the evaluation (``tracemalloc``: NumPy's temporaries;
the training data themselves are not counted). Block size 0 is the one-pass evaluation.

Example (builds symmetry.h5 from the bundled example if not given; 2-core CPU, one thread)::

    OMP_NUM_THREADS=1 python scripts/bench_batch_boxes.py --blocks 0,100,32,8 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symmetry", default=None, help="symmetry.h5 with a training set with forces.")
    ap.add_argument("--workdir", default="bench_batch_boxes_out")
    ap.add_argument("--blocks", default="0,100,32,8", help="Block sizes in boxes (0: one pass).")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hidden", default="15,15")
    args = ap.parse_args()

    from hdnnp import nn
    from hdnnp.descriptors import FeatureSet
    from hdnnp.stages.train import load_training_data
    from hdnnp.training.loss import element_reference_energies, evaluate

    sym = args.symmetry
    if sym is None:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
        sym = str(work / "symmetry.h5")
        if not Path(sym).exists():
            hdnnp = [sys.executable, "-m", "hdnnp"]
            subprocess.run([*hdnnp, "prepare", "--data-dir", "data/example", "--system", "Te", "--train",
                            "673,723,823,873,973", "--predict", "773", "-o", str(work / "prepared.h5"),
                            "--overwrite", "-q"], check=True)
            subprocess.run([*hdnnp, "symmetry", str(work / "prepared.h5"), "-o", sym, "--overwrite", "-q"],
                           check=True)
    with h5py.File(sym, "r") as h:
        fs = FeatureSet.from_h5(h["feature_set"])
        data = load_training_data(h["train"], fs.elements, True)
    arch = nn.Architecture(elements=data.elements, n_inputs={z: len(fs.selected[z]) for z in fs.elements},
                           hidden=tuple(int(x) for x in args.hidden.split(",")))
    theta = nn.init_parameters(arch, np.random.default_rng(0), element_reference_energies(data), output_scale=0.01)
    print(f"{sym}: {data.n_frames} boxes, {data.n_atoms_total} atoms, training data {data.nbytes() / 2**20:.0f} MiB; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| --batch-boxes | blocks | loss + gradient (s, median) | temporaries peak (MiB) | loss |")
    print("|---|---|---|---|---|")
    for bb in (int(b) for b in args.blocks.split(",")):
        evaluate(arch, theta, data, 1e-3, block_boxes=bb)  # warm-up
        tracemalloc.start()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ev = evaluate(arch, theta, data, 1e-3, block_boxes=bb)
            times.append(time.perf_counter() - t)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        n_blocks = -(-data.n_frames // bb) if 0 < bb < data.n_frames else 1
        print(f"| {bb or 'one pass'} | {n_blocks} | {np.median(times):.3f} | {peak / 2**20:.1f} | {ev.loss:.12e} |")


if __name__ == "__main__":
    main()
