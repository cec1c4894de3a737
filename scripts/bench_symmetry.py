"""Benchmark of the symmetry functions: liquid-Te boxes per second, values and values + derivatives.

Boxes: 256 Te atoms at 5.7 g/cm³ (cubic side ≈ 21.2 Å, ≈ 24 neighbours within 6 Å), random
positions with a minimum distance of 2.6 Å. For each backend (cpu; gpu when CuPy sees one):
median over ``--repeats`` timed runs of ``--boxes`` boxes, with all 84 candidates of the
seed's grid and with 30 of them (a typical selection). Peak resident memory of the process is
printed at the end. Run on one core::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python scripts/bench_symmetry.py
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np

from hdnnp.descriptors import FeatureSet, compute_raw
from hdnnp.kernels import gpu_available
from hdnnp.units import AVOGADRO

TE_MASS_G_PER_MOL = 127.60


def liquid_te_box(rng, n_atoms=256, density_g_cm3=5.7, min_distance=2.6):
    """Random non-overlapping positions in a cubic box of the given density; returns (positions, side Å)."""
    number_density = density_g_cm3 / TE_MASS_G_PER_MOL * AVOGADRO * 1e-24  # atoms / Å³
    side = (n_atoms / number_density) ** (1 / 3)
    positions = np.empty((0, 3))
    while len(positions) < n_atoms:
        trial = rng.uniform(0, side, 3)
        d = positions - trial
        d -= side * np.round(d / side)
        if not len(d) or np.min(np.einsum("ij,ij->i", d, d)) >= min_distance ** 2:
            positions = np.vstack([positions, trial])
    return positions, side


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--atoms", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    boxes = [liquid_te_box(rng, args.atoms) for _ in range(args.boxes)]
    fs = FeatureSet.default([52])
    species = np.full(args.atoms, 52)
    side = boxes[0][1]
    from hdnnp.neighbors import neighbor_list

    nl = neighbor_list(boxes[0][0], np.eye(3) * side, True, fs.cutoff)
    print(f"box: {args.atoms} Te, side {side:.2f} Å, {len(nl) / args.atoms:.1f} neighbours/atom within "
          f"{fs.cutoff} Å; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    devices = ["cpu"] + (["gpu"] if gpu_available() else [])
    subset = np.arange(0, fs.n_candidates, 3)[:30]  # 30 columns spread over G2 and G4
    for device in devices:
        compute_raw(boxes[0][0], np.eye(3) * side, True, species, fs, derivatives=True, device=device)  # warm-up
        for label, cols in (("84 candidates", None), ("30 columns", subset)):
            for deriv in (False, True):
                rates, cpu_rates = [], []
                for _ in range(args.repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    for pos, side in boxes:
                        compute_raw(pos, np.eye(3) * side, True, species, fs, derivatives=deriv, device=device,
                                    candidates=cols)
                    rates.append(len(boxes) / (time.perf_counter() - t0))
                    cpu_rates.append(len(boxes) / (time.process_time() - c0))
                what = "values + derivatives" if deriv else "values"
                print(f"{device}  {label:14s} {what:21s} {statistics.median(rates):7.1f} boxes/s wall, "
                      f"{statistics.median(cpu_rates):7.1f} boxes/CPU-s (median of {args.repeats} x {len(boxes)} boxes)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
