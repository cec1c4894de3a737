#!/usr/bin/env python
"""Accuracy and cost of each optimiser of ``hdnnp train`` on held-out data.

For every optimiser: train on the training temperatures (CLI ``hdnnp train`` in a child process),
predict the prediction set, and report on it the energy RMSE (meV/atom) and its mean bias, the
force RMSE (meV/Å), the scale-free ratios

    energy ratio = RMSE(E/N) / std(E_ref/N)        force ratio = RMSE(F) / RMS(F_ref)

(1 means no better than a constant energy per atom / zero forces), training wall time and the
peak resident memory of the training process.

Data (pick one):
    --data-dir data/example --system Te --train 673,723,823,873,973 --predict 773   (default)
    --train-file input.data --predict-file other.data     (e.g. n2p2 Cu2S; any format prepare reads)
    --symmetry symmetry.h5                                 (already prepared and featurised)
    --synthetic                                            (Lennard-Jones liquid made here with ASE)

Example (2-core CPU; set OMP_NUM_THREADS=1):
    OMP_NUM_THREADS=1 python scripts/bench_train.py --time-limit 600 --optimizers lbfgs,adam,ekf
Results are printed as a table and written to ``<workdir>/bench_train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np


def _worker(argv):
    """Run one hdnnp command in this process; print its wall time and peak RSS as JSON."""
    from hdnnp.cli import main

    t0 = time.perf_counter()
    main(argv)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("BENCH " + json.dumps({"wall_s": time.perf_counter() - t0, "peak_mib": peak_kib / 1024.0}))


def _run(argv, env=None):
    proc = subprocess.run([sys.executable, __file__, "--worker", *argv], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed: hdnnp {' '.join(argv)}\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    return json.loads(line[6:]), proc.stdout, proc.stderr


def synthetic_frames(path_train, path_predict, n_train=160, n_predict=40, seed=0):
    """Lennard-Jones 'liquid' (smooth LJ, sigma 3 Å, epsilon 10 meV, rc 6 Å): 16 atoms on a perturbed
    grid in a periodic 9 Å cube; training jitter 0.12-0.18 Å, prediction jitter 0.15 Å; extxyz files."""
    import ase.io
    from ase import Atoms
    from ase.calculators.lj import LennardJones
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    calc = LennardJones(sigma=3.0, epsilon=0.01, rc=6.0, smooth=True)
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    grid = np.concatenate([grid, grid + 0.5]) * 4.5

    def make(n, jitters):
        out = []
        for k in range(n):
            a = Atoms("Ar16", positions=grid + rng.normal(0, jitters[k % len(jitters)], grid.shape),
                      cell=[9.0] * 3, pbc=True)
            a.calc = calc
            e, f = a.get_potential_energy(), a.get_forces()
            a.calc = SinglePointCalculator(a, energy=e, forces=f)
            out.append(a)
        return out

    ase.io.write(path_train, make(n_train, (0.12, 0.18)))
    ase.io.write(path_predict, make(n_predict, (0.15,)))


def metrics(pred_path, set_name="predict"):
    with h5py.File(pred_path) as h5:
        g = h5[set_name]
        n = g["n_atoms"][:]
        e_ref, e_pred = g["energy_reference"][:] / n, g["energy_predicted"][:] / n
        out = dict(frames=int(len(n)), extrapolating_frames=int(np.count_nonzero(g["extrapolation"][:])))
        err = e_pred - e_ref
        out.update(energy_rmse_mev=1e3 * float(np.sqrt(np.mean(err ** 2))), energy_bias_mev=1e3 * float(err.mean()),
                   energy_ratio=float(np.sqrt(np.mean(err ** 2)) / np.std(e_ref)))
        if "forces_predicted" in g:
            f_ref, f_pred = g["forces_reference"][:], g["forces_predicted"][:]
            if np.all(np.isfinite(f_ref)):
                rmse = float(np.sqrt(np.mean((f_pred - f_ref) ** 2)))
                out.update(force_rmse_mev=1e3 * rmse, force_ratio=rmse / float(np.sqrt(np.mean(f_ref ** 2))))
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="data/example")
    ap.add_argument("--system", default="Te")
    ap.add_argument("--train", default="673,723,823,873,973")
    ap.add_argument("--predict", default="773")
    ap.add_argument("--train-file", action="append", default=[])
    ap.add_argument("--predict-file", action="append", default=[])
    ap.add_argument("--symmetry", default=None, help="Use this symmetry.h5 (skip prepare and symmetry).")
    ap.add_argument("--synthetic", action="store_true", help="Lennard-Jones data made here (no input files).")
    ap.add_argument("--n-features", type=int, default=30)
    ap.add_argument("--optimizers", default="lbfgs,adam,ekf,derivative-free")
    ap.add_argument("--time-limit", type=float, default=600.0, help="Seconds of training per optimiser.")
    ap.add_argument("--hidden", default=None, help="Hidden widths for all optimisers except derivative-free.")
    ap.add_argument("--extra", default="", help="Extra options for hdnnp train, e.g. '--force-fraction 0.5'.")
    ap.add_argument("--workdir", default="bench_train_out")
    args = ap.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    report = dict(args=vars(args), machine=f"{os.cpu_count()} CPUs", runs={})
    symmetry = Path(args.symmetry) if args.symmetry else work / "symmetry.h5"
    if not args.symmetry:
        prepare = ["prepare", "-o", str(work / "prepared.h5"), "--overwrite", "-q"]
        if args.synthetic:
            synthetic_frames(work / "train.extxyz", work / "predict.extxyz")
            prepare += ["--train-file", f"{work / 'train.extxyz'}@300K", "--predict-file", f"{work / 'predict.extxyz'}@300K"]
        elif args.train_file:
            prepare += sum((["--train-file", f] for f in args.train_file), [])
            prepare += sum((["--predict-file", f] for f in args.predict_file), [])
        else:
            prepare += ["--data-dir", args.data_dir, "--system", args.system, "--train", args.train,
                        "--predict", args.predict]
        cost, _, _ = _run(prepare, env)
        report["prepare"] = cost
        cost, _, _ = _run(["symmetry", str(work / "prepared.h5"), "-o", str(symmetry), "--n-features",
                           str(args.n_features), "--device", "cpu", "--overwrite", "-q"], env)
        report["symmetry"] = cost
    for opt in [o for o in args.optimizers.split(",") if o]:
        model = work / f"model_{opt}.h5"
        cmd = ["train", str(symmetry), "-o", str(model), "--overwrite", "-q", "--time-limit", str(args.time_limit)]
        cmd += ["--preset", "seed"] if opt == "derivative-free" else ["--optimizer", opt]
        if args.hidden and opt != "derivative-free":
            cmd += ["--hidden", args.hidden]
        cmd += args.extra.split()
        cost, out, _ = _run(cmd, env)
        pred = work / f"pred_{opt}.h5"
        _run(["predict", str(symmetry), "--model", str(model), "-o", str(pred), "--forces", "--sets", "predict",
              "--overwrite", "-q"], env)
        with h5py.File(model) as h5:
            log = h5["training/log"]
            epochs = int(log["epoch"][-1]) if len(log["epoch"]) else 0
            stop = h5["training"].attrs.get("stop_reason", "")
        run = dict(train_wall_s=cost["wall_s"], train_peak_mib=cost["peak_mib"], epochs=epochs, stop_reason=str(stop),
                   **metrics(pred))
        report["runs"][opt] = run
        print(f"{opt:16s} E {run['energy_rmse_mev']:8.2f} meV/atom (bias {run['energy_bias_mev']:+7.2f}, "
              f"ratio {run['energy_ratio']:.3f})  F {run.get('force_rmse_mev', float('nan')):7.1f} meV/Å "
              f"(ratio {run.get('force_ratio', float('nan')):.3f})  {run['train_wall_s']:6.1f} s "
              f"{run['train_peak_mib']:6.0f} MiB  {epochs} epochs, {stop}", flush=True)
    (work / "bench_train.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {work / 'bench_train.json'}")


if __name__ == "__main__":
    main()
