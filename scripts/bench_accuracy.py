#!/usr/bin/env python
"""Accuracy on real DFT data (issue #17): Ge and Si (PBE, mlearn; train on the training split,
score on the test split) and Cu2S (PBE, n2p2's example data; trained and scored on its 20
structures, as the n2p2 figure is), beside the published n2p2 potentials' errors.

    python scripts/bench_accuracy.py [--data ../shared/data] [--sets ge,si,cu2s] [--workdir bench_accuracy]
        [--grid seed|auto] [--stress-weight W] [--epochs N] [--patience N] [--hidden 15,15]
        [--n-features 30] [--cutoff 6.0] [--activation tanh] [--optimizer ekf] [--train-fraction 1.0]

Every set runs ``hdnnp prepare`` (test split as --predict-file: never trained on), ``symmetry``
and ``train`` as separate processes (wall time and peak memory of each from /usr/bin/time),
then ``predict`` on both splits. Printed: energy RMSE (meV/atom), force-component RMSE
(meV/Å) and stress RMSE (GPa), overall and per group, training wall time and peak RSS, and the
n2p2 figures. ``--train-fraction F`` trains on a random fraction F of the training split (fixed
seed; the test split is unchanged): a learning curve shows whether the data limit the error.
The data are not part of hdnnp (see ../shared/data/*/README.md): this is a
developer benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

#: Sets whose frames carry reference stresses (--stress-weight applies to these only).
WITH_STRESS = {"ge", "si"}
#: Published n2p2 potentials' test errors, measured with n2p2's nnp-dataset (README, issue #17):
#: (energy meV/atom, force meV/Å).
N2P2 = {"ge": (7.63, 125.3), "si": (6.93, 169.7), "cu2s": (0.21, 33.0)}
SETS = {
    "ge": ("ge_si_pbe_mlearn/Ge.training.extxyz", "ge_si_pbe_mlearn/Ge.test.extxyz"),
    "si": ("ge_si_pbe_mlearn/Si.training.extxyz", "ge_si_pbe_mlearn/Si.test.extxyz"),
    "cu2s": ("cu2s_pbe/input.data", "cu2s_pbe/input.data"),
}


def timed(cmd, cwd) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: wall time (s) and peak RSS (MiB); fail loudly."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    h, m, s = (float(x) if x else 0.0 for x in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"wall_s": 3600 * h + 60 * m + s, "peak_rss_mib": rss / 1024, "stdout": proc.stdout}


def run_set(name, data, work, args) -> dict:
    from hdnnp.stages.predict import predict

    train, test = (data / p for p in SETS[name])
    work.mkdir(parents=True, exist_ok=True)
    if args.train_fraction < 1.0:
        if train == test:
            sys.exit(f"--train-fraction needs a set with a separate test split, not {name}")
        import ase.io
        import numpy as np

        frames = ase.io.read(train, index=":")
        keep = np.sort(np.random.default_rng(0).choice(len(frames), max(1, round(args.train_fraction * len(frames))),
                                                       replace=False))
        train = work / f"train_{args.train_fraction:g}.extxyz"
        ase.io.write(train, [frames[k] for k in keep], format="extxyz")
    hdnnp = [sys.executable, "-m", "hdnnp"]
    timed([*hdnnp, "prepare", "--train-file", str(train), "--predict-file", str(test), "-o", "prepared.h5",
           "--overwrite", "-q"], work)
    sym = timed([*hdnnp, "symmetry", "prepared.h5", "-o", "symmetry.h5", "--grid", args.grid, "--n-features",
                 str(args.n_features), "--cutoff", str(args.cutoff), "--overwrite", "-q"], work)
    train_cmd = [*hdnnp, "train", "symmetry.h5", "-o", "model.h5", "--overwrite", "-q", "--hidden", args.hidden,
                 "--activation", args.activation, "--optimizer", args.optimizer]
    if args.stress_weight is not None:  # else hdnnp train's automatic weight (0.1 where there are stresses)
        train_cmd += ["--stress-weight", str(args.stress_weight if name in WITH_STRESS else 0.0)]
    for opt in ("epochs", "patience"):
        if getattr(args, opt) is not None:
            train_cmd += [f"--{opt}", str(getattr(args, opt))]
    tr = timed(train_cmd, work)
    t0 = time.perf_counter()
    summary = predict(work / "model.h5", work / "prepared.h5", work / "predictions.h5", overwrite=True,
                      device="cpu", quiet=True)
    result = {"symmetry": {k: v for k, v in sym.items() if k != "stdout"},
              "train": {k: v for k, v in tr.items() if k != "stdout"}, "predict_wall_s": time.perf_counter() - t0,
              "sets": summary}
    (work / "result.json").write_text(json.dumps(result, indent=1))
    return result


def fmt(x, digits):
    return "-" if x is None else f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--sets", default="ge,si,cu2s")
    ap.add_argument("--workdir", default="bench_accuracy")
    ap.add_argument("--grid", default="seed")
    ap.add_argument("--stress-weight", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--patience", type=int, default=None)
    ap.add_argument("--hidden", default="15,15")
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--optimizer", default="ekf")
    ap.add_argument("--n-features", type=int, default=30)
    ap.add_argument("--cutoff", type=float, default=6.0)
    ap.add_argument("--train-fraction", type=float, default=1.0)
    args = ap.parse_args()
    if not 0.0 < args.train_fraction <= 1.0:
        sys.exit("--train-fraction must be in (0, 1]")
    data = Path(args.data)
    results = {}
    for name in [s for s in args.sets.split(",") if s]:
        if name not in SETS:
            sys.exit(f"unknown set {name} (choose from {', '.join(SETS)})")
        results[name] = run_set(name, data, Path(args.workdir) / name, args)
    out = Path(args.workdir) / "bench_accuracy.json"
    out.write_text(json.dumps({"options": vars(args), "results": results}, indent=1))
    print(f"options: {json.dumps(vars(args))}")
    print(f"{'set':6} {'split':8} {'group':10} {'frames':>6} {'E meV/atom':>10} {'F meV/Å':>8} {'S GPa':>6}   "
          f"{'n2p2 E':>6} {'n2p2 F':>6}")
    for name, r in results.items():
        for split, s in r["sets"].items():
            test = split == "predict"
            ref = N2P2[name] if test else (None, None)
            rows = [("all", s)] + list(s.get("groups", {}).items())
            for group, g in rows:
                print(f"{name:6} {'test' if test else 'train':8} {group:10} {g['n_frames']:6d} "
                      f"{fmt(g.get('energy_rmse_mev_per_atom'), 2):>10} {fmt(g.get('force_rmse_mev_per_angstrom'), 1):>8} "
                      f"{fmt(g.get('stress_rmse_gpa'), 3):>6}   "
                      f"{fmt(ref[0], 2) if group == 'all' else '':>6} {fmt(ref[1], 1) if group == 'all' else '':>6}")
        print(f"{name:6} training {r['train']['wall_s']:.0f} s, peak {r['train']['peak_rss_mib']:.0f} MiB; "
              f"symmetry {r['symmetry']['wall_s']:.0f} s, peak {r['symmetry']['peak_rss_mib']:.0f} MiB")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
