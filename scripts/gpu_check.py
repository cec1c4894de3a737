#!/usr/bin/env python
"""The GPU path checked against the CPU, then measured: one command on a GPU machine (issue #19).

Run from the source tree, no install needed (the GPU machine's packages suffice: numpy, scipy,
h5py, click, matplotlib, CuPy; Numba, ASE and pytest are used when present)::

    bash scripts/gpu_check.sh            # the GPU tests (if pytest is there), then this script
    python scripts/gpu_check.py [--boxes 512] [--repeats 5] [--md-supercells 2,4] [--skip-training] [--json FILE]

1. **Checks** (float64, GPU against the CPU path of the same process, max |GPU − CPU| / max |CPU|,
   tolerance 1e-10): raw values of the 84 seed candidates; scaled descriptors with per-pair and
   strain derivatives; energy, forces and stress of ``Potential.evaluate``; the training loss and
   its gradient on GPU-resident data; bitwise repeatability. The boxes: liquid Te from the
   bundled example (32 atoms, 773 K) made into 2×2×2 supercells of 256 atoms with random
   displacements (0.05 Å). The potential: the seed grid, 30 features selected on these boxes,
   15-15 tanh networks with random weights (the speed does not depend on the weights).
2. **float32 mode**: its error against float64 (values, forces, energy per atom).
3. **Throughput** in boxes/s of 256 atoms (median of ``--repeats`` after a warm-up; all
   ``--boxes`` per call, launches of at most 65,536 atoms): neighbour list; values; values +
   derivatives (training data, copied to the host); energy + forces (adjoint: networks and
   contraction on the device, forces copied back), float64 and float32. The CPU figure beside
   it: this process, one thread, the compiled path where Numba is installed (else NumPy).
   Then an MD step's evaluation, one box per call (256 and 2048 atoms), in atom-steps/s.
4. **Training epoch time** (unless ``--skip-training``): the bundled example through
   ``prepare`` and ``symmetry --device gpu``, then ``train`` for 2 and 6 epochs on each device;
   the time per epoch is the difference / 4 (start-up cancels).

Exit status 1 when a check fails. The figures also go to ``--json`` (default
``$OUT/gpu_check.json`` when ``OUT`` is set, else ``gpu_check.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from hdnnp import nn  # noqa: E402
from hdnnp.descriptors import FeatureSet, fast  # noqa: E402
from hdnnp.descriptors.compute import (adjoint_evaluation_batch, compute_descriptors_batch,  # noqa: E402
                                       compute_raw_batch)
from hdnnp.descriptors.symmetry_functions import ColumnPlan  # noqa: E402
from hdnnp.io.dlpoly import read_history  # noqa: E402
from hdnnp.kernels import gpu, gpu_status  # noqa: E402
from hdnnp.model import Potential  # noqa: E402
from hdnnp.training.loss import data_from_descriptors, evaluate  # noqa: E402

TE = 52
TOLERANCE = 1e-10


def te_boxes(n: int, seed: int = 0, supercell: int = 2):
    """``n`` liquid-Te boxes of 32·supercell³ atoms (256 by default): bundled 773 K frames made
    into supercells, displaced."""
    frames = read_history(ROOT / "data/example/HISTORY.Te.773K.gz")
    rng = np.random.default_rng(seed)
    r = range(supercell)
    shifts = np.array([(a, b, c) for a in r for b in r for c in r], float)
    out = []
    for k in range(n):
        f = frames[k % len(frames)]
        cell = np.asarray(f.cell, float)
        pos = (np.asarray(f.positions)[None, :, :] + (shifts @ cell)[:, None, :]).reshape(-1, 3)
        pos = pos + rng.normal(0.0, 0.05, pos.shape)
        out.append((pos, supercell * cell, np.array([True, True, True]), np.full(len(pos), TE)))
    return out


def potential(boxes):
    fs = FeatureSet.default([TE])
    raw = np.concatenate(compute_raw_batch(boxes[:8], fs, device="gpu"))
    fs.fit({TE: raw}, n_features=30)
    arch = nn.Architecture(elements=(TE,), n_inputs={TE: 30}, hidden=(15, 15))
    theta = nn.init_parameters(arch, np.random.default_rng(1), {TE: -3.0}, output_scale=0.1)
    return Potential(fs, arch, theta, {TE: -3.0})


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max(initial=0.0) / max(np.abs(b).max(initial=0.0), 1e-300))


def checks(pot, boxes):
    """[(name, relative error, passed)] of the GPU against the CPU, float64."""
    import cupy

    fs = pot.feature_set
    rows = []
    ref = compute_raw_batch(boxes, fs, device="cpu")
    got = compute_raw_batch(boxes, fs, device="gpu")
    rows.append(("raw values, 84 candidates", max(rel(g, r) for g, r in zip(got, ref))))
    d_cpu = compute_descriptors_batch(boxes, fs, derivatives=True, device="cpu", stress=True)
    d_gpu = compute_descriptors_batch(boxes, fs, derivatives=True, device="gpu", stress=True)
    for name in ("values", "dvalues", "virial"):
        rows.append((f"descriptors: {name}", max(rel(getattr(g[TE], name), getattr(c[TE], name))
                                                 for g, c in zip(d_gpu, d_cpu))))
    same_pairs = all(np.array_equal(g[TE].pair_atom, c[TE].pair_atom) for g, c in zip(d_gpu, d_cpu))
    rows.append(("descriptors: pair lists identical", 0.0 if same_pairs else float("inf")))
    p_cpu = [pot.evaluate(*b, forces=True, stress=True, device="cpu") for b in boxes]
    p_gpu = [pot.evaluate(*b, forces=True, stress=True, device="gpu") for b in boxes]
    for name in ("energy", "forces", "stress"):
        rows.append((f"evaluate: {name}", max(rel(getattr(g, name), getattr(c, name)) for g, c in zip(p_gpu, p_cpu))))
    n_atoms = [len(b[3]) for b in boxes]
    energies = [p.energy + 0.01 for p in p_cpu]
    forces = [p.forces * 1.01 for p in p_cpu]
    data_cpu = data_from_descriptors(d_cpu, n_atoms, energies, forces, elements=pot.elements)
    data_gpu = data_from_descriptors(d_gpu, n_atoms, energies, forces, elements=pot.elements).to(cupy)
    e_cpu = evaluate(pot.architecture, pot.theta, data_cpu, 0.5)
    e_gpu = evaluate(pot.architecture, cupy.asarray(pot.theta), data_gpu, 0.5)
    rows.append(("training: loss (data on the GPU)", rel(e_gpu.loss, e_cpu.loss)))
    rows.append(("training: gradient", rel(cupy.asnumpy(e_gpu.gradient), e_cpu.gradient)))
    plan = ColumnPlan(fs, np.arange(fs.n_candidates))
    again = [gpu.raw_batch(boxes, plan, derivatives=True, virial=True) for _ in range(2)]
    same = all(np.array_equal(a[0], b[0]) and np.array_equal(a[1][2], b[1][2]) and np.array_equal(a[2], b[2])
               for a, b in zip(*again))
    rows.append(("repeated launches bitwise equal", 0.0 if same else float("inf")))
    return [(name, err, err <= TOLERANCE) for name, err in rows]


def float32_errors(pot, boxes):
    single = adjoint_evaluation_batch(boxes, pot.feature_set, pot._member_networks, True, "gpu", "float32")
    double = adjoint_evaluation_batch(boxes, pot.feature_set, pot._member_networks, True, "gpu", "float64")
    values = max(rel(s[0][TE].values, d[0][TE].values) for s, d in zip(single, double))
    forces = max(rel(s[2], d[2]) for s, d in zip(single, double))
    forces_abs = max(float(np.abs(s[2] - d[2]).max()) for s, d in zip(single, double))
    energy = max(abs(s[1].sum() - d[1].sum()) / s[1].shape[1] for s, d in zip(single, double))
    return {"scaled descriptors (relative)": values, "forces (relative)": forces,
            "forces (max abs, meV/Å)": 1e3 * forces_abs, "energy (meV/atom)": 1e3 * energy}


def timed(func, repeats: int) -> float:
    import cupy

    func()  # warm-up (compilation, memory pool)
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        cupy.cuda.Device().synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(pot, boxes, repeats: int):
    """boxes/s per task and precision, and the CPU's on a few boxes."""
    fs = pot.feature_set
    selected = ColumnPlan(fs, fs.selected[TE])
    out = {}
    for precision in ("float64", "float32"):
        launcher = gpu.cuda_launcher(precision)
        tasks = {
            "neighbour list": lambda: [gpu.device_frames(launcher, boxes[k0:k1], fs.cutoff, selected.species_index)
                                       for k0, k1 in gpu._batches(boxes, gpu.BATCH_ATOMS)],
            "values (30 features)": lambda: gpu.raw_batch(boxes, selected, launcher=launcher),
            "values + derivatives": lambda: gpu.raw_batch(boxes, selected, derivatives=True, virial=True,
                                                          launcher=launcher),
            "energy + forces": lambda: adjoint_evaluation_batch(boxes, fs, pot._member_networks, False, "gpu",
                                                                precision),
        }
        for name, func in tasks.items():
            out[(name, precision)] = len(boxes) / timed(func, repeats)
    few = boxes[:4]
    cpu = {
        "values (30 features)": lambda: compute_descriptors_batch(few, fs, device="cpu"),
        "values + derivatives": lambda: compute_descriptors_batch(few, fs, derivatives=True, stress=True,
                                                                  device="cpu"),
        "energy + forces": lambda: [pot.evaluate(*b, device="cpu") for b in few],
    }
    for name, func in cpu.items():
        func()
        t0 = time.perf_counter()
        func()
        out[(name, "cpu")] = len(few) / (time.perf_counter() - t0)
    return out


def md_steps(pot, repeats: int, supercells=(2, 4)):
    """Atom-steps/s of one box's energy, forces and stress per call (an MD step's evaluation),
    boxes of 32·s³ atoms for s in ``supercells`` (256 and 2048), on the GPU (float64) and the CPU."""
    out = {}
    for supercell in supercells:
        box = te_boxes(1, seed=3, supercell=supercell)[0]
        n = len(box[3])
        out[(n, "gpu")] = n / timed(lambda: pot.evaluate(*box, stress=True, device="gpu"), repeats)
        pot.evaluate(*box, stress=True, device="cpu")
        t0 = time.perf_counter()
        pot.evaluate(*box, stress=True, device="cpu")
        out[(n, "cpu")] = n / (time.perf_counter() - t0)
    return out


def training_epochs(workdir: Path) -> dict:
    """Seconds per epoch of ``hdnnp train`` on each device, from runs of 2 and 6 epochs."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")

    def hdnnp(*args) -> float:
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "hdnnp", *args], cwd=workdir, env=env, capture_output=True,
                             text=True)
        if run.returncode:
            sys.exit(f"hdnnp {' '.join(args)} failed:\n{run.stderr[-3000:]}")
        return time.perf_counter() - t0

    out = {"prepare s": hdnnp("prepare", "--data-dir", str(ROOT / "data/example"), "--system", "Te",
                              "--train", "673K,723K", "--predict", "773K")}
    out["symmetry --device gpu s"] = hdnnp("symmetry", "prepared.h5", "-o", "symmetry.h5", "--device", "gpu")
    for device in ("gpu", "cpu"):
        t = {e: hdnnp("train", "symmetry.h5", "-o", f"model_{device}_{e}.h5", "--epochs", str(e), "--patience", "0",
                      "--device", device, "--overwrite") for e in (2, 6)}
        out[f"train epoch ({device}) s"] = (t[6] - t[2]) / 4
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check-boxes", type=int, default=3)
    parser.add_argument("--md-supercells", default="2,4", help="MD step boxes: supercells of the 32-atom frames")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--json", default=str(Path(os.environ.get("OUT", ".")) / "gpu_check.json"))
    args = parser.parse_args(argv)
    status = gpu_status()
    if status:
        print(f"no GPU: {status}")
        return 1
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"GPU: {name}; CuPy {cupy.__version__}; CPU path: {'Numba' if fast.AVAILABLE else 'NumPy'}")
    t0 = time.perf_counter()
    boxes = te_boxes(args.boxes)
    pot = potential(boxes)
    report = {"gpu": name, "cupy": cupy.__version__, "cpu_path": "numba" if fast.AVAILABLE else "numpy"}

    rows = checks(pot, boxes[:args.check_boxes])
    print(f"\n{'check (GPU vs CPU, float64)':42s} {'rel. error':>11s}  tolerance 1e-10")
    for name_, err, ok in rows:
        print(f"{name_:42s} {err:11.2e}  {'pass' if ok else 'FAIL'}")
    report["checks"] = {n: e for n, e, _ in rows}
    f32 = float32_errors(pot, boxes[:args.check_boxes])
    print(f"\n{'float32 against float64':42s} {'error':>11s}")
    for k, v in f32.items():
        print(f"{k:42s} {v:11.3g}")
    report["float32"] = f32

    rates = throughput(pot, boxes, args.repeats)
    print(f"\n{'boxes/s, 256 Te atoms':28s} {'GPU float64':>12s} {'GPU float32':>12s} {'CPU 1 thread':>13s}")
    for task in ("neighbour list", "values (30 features)", "values + derivatives", "energy + forces"):
        cpu = rates.get((task, "cpu"))
        print(f"{task:28s} {rates[(task, 'float64')]:12.0f} {rates[(task, 'float32')]:12.0f} "
              f"{'' if cpu is None else f'{cpu:13.1f}'}")
    report["boxes_per_s"] = {f"{t} [{p}]": v for (t, p), v in rates.items()}
    print(f"(energy + forces float64: {256 * rates[('energy + forces', 'float64')]:.3g} atom-environments/s)")
    steps = md_steps(pot, args.repeats, [int(s) for s in args.md_supercells.split(",")])
    print(f"\n{'MD step (E, F, stress)':28s} {'GPU float64':>12s} {'CPU 1 thread':>13s}  atom-steps/s")
    for n in sorted({n for n, _ in steps}):
        print(f"{f'{n} atoms':28s} {steps[(n, 'gpu')]:12.0f} {steps[(n, 'cpu')]:13.0f}")
    report["md_atom_steps_per_s"] = {f"{n} atoms [{d}]": v for (n, d), v in steps.items()}

    if not args.skip_training:
        with tempfile.TemporaryDirectory() as tmp:
            epochs = training_epochs(Path(tmp))
        print()
        for k, v in epochs.items():
            print(f"{k:42s} {v:11.2f}")
        report["training"] = epochs
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
