#!/usr/bin/env python
"""Make the bundled example MD-ready: run ``hdnnp learn`` on it with its own reference method
(GFN1-xTB through tblite) and ship the learned frames in ``data/example/learned/``.

    pip install -e '.[xtb]'
    OMP_NUM_THREADS=1 python scripts/learn_example.py --work-dir /tmp/learn_example

Steps: ``hdnnp prepare`` of the example (train 673–973 K without 773 K, predict 773 K, as ``hdnnp
run``), then ``hdnnp learn`` exploring at training temperatures only (the held-out 773 K stays
unseen), then one extxyz per exploration temperature, ``learned.Te.<T>K.extxyz``, and a README with
the provenance (command, settings, versions, per-iteration log) written here, beside them. A
killed run continues with the same command plus ``--resume``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "example" / "learned"


def sh(*args):
    print("+", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default="learn_example")
    p.add_argument("--temperatures", default="673,823,973")
    p.add_argument("--md-time", default="3")
    p.add_argument("--iterations", default="10")
    p.add_argument("--max-frames", default="30")
    p.add_argument("--spread-max", default="3")
    p.add_argument("--committee", default="3")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    prepared = work / "prepared.h5"
    if not prepared.exists():
        sh("hdnnp", "prepare", "--data-dir", str(ROOT / "data" / "example"), "--system", "Te",
           "--train", "673K,723K,823K,873K,973K", "--predict", "773K", "-o", str(prepared))
    learn_args = ["hdnnp", "learn", str(prepared), "--work-dir", str(work / "learn"),
                  "--temperatures", args.temperatures, "--reference", "tblite:GFN1-xTB",
                  "--md-time", args.md_time, "--iterations", args.iterations, "--max-frames", args.max_frames,
                  "--spread-max", args.spread_max, "--committee", args.committee]
    sh(*learn_args, *(["--resume"] if args.resume else []))
    export(work / "learn", Path(args.out), learn_args)


def export(learn_dir: Path, out: Path, command) -> None:
    from ase.io import read, write

    import hdnnp

    state = json.loads((learn_dir / "learn.json").read_text())
    frames = read(learn_dir / "learned.extxyz", index=":")
    out.mkdir(parents=True, exist_ok=True)
    by_t = {}
    for a in frames:
        by_t.setdefault(float(a.info["temperature"]), []).append(a)
    files = []
    for t, images in sorted(by_t.items()):
        path = out / f"learned.Te.{t:g}K.extxyz"
        write(path, images, format="extxyz")
        files.append((path.name, len(images)))
    try:
        from importlib.metadata import version

        tblite = version("tblite")
    except Exception:
        tblite = "unknown"
    rows = []
    for it in state["iterations"]:
        md = "; ".join(f"{r['condition']} {r['time_ps']:.2f} ps{' (stable)' if r['stable'] else ''}"
                       for r in it.get("md", []))
        rows.append(f"| {it['iteration']} | {md or '-'} | {it.get('n_labelled', '-')} | {it.get('n_learned', '-')} | "
                    f"{it.get('heldout_energy_rmse', float('nan')):.2f} | {it.get('heldout_force_rmse', float('nan')):.0f} |")
    text = f"""# Learned frames of the bundled example

Written by `scripts/learn_example.py` on {datetime.date.today().isoformat()} (hdnnp {hdnnp.__version__},
tblite {tblite}, Python {sys.version.split()[0]}). Do not edit by hand: run the script again.

These frames were found by `hdnnp learn` (query by committee) with the potential's own MD and
labelled with the method of the original data, GFN1-xTB through tblite (which reproduces the
original energies to 1e-7 eV and forces to 3e-4 eV/Å). They are configurations the original
0.6 ps trajectories never visit but MD with a potential trained on them does. `hdnnp run
--learned` adds them to the training set (temperature = the exploration temperature); the
held-out 773 K trajectory was never explored. What they change is measured in the README
(section "hdnnp learn on the bundled example").

Command:

    {' '.join(str(c) for c in command)}

Status: {state['status']}

| file | frames |
|---|---|
""" + "\n".join(f"| {name} | {n} |" for name, n in files) + """

Per iteration (MD: time inside the training domain with the model of the previous iteration,
NVT Langevin, 32 atoms, 2 fs; errors: held-out 773 K with the committee trained at that iteration):

| iteration | MD | labelled | learned in all | energy RMSE (meV/atom) | force RMSE (meV/Å) |
|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Settings (learn.json):

```
{json.dumps(state['settings'], indent=1)}
```

Every frame carries its provenance in the extxyz comment line: `iteration`, `condition`,
`md_file` and `md_frame` (the exploration trajectory), `time_ps`, `force_spread` (eV/Å),
`extrapolation_excess`, `reference`.
"""
    (out / "README.md").write_text(text)
    print(f"wrote {out}: " + ", ".join(f"{n} ({k} frames)" for n, k in files))


if __name__ == "__main__":
    main()
