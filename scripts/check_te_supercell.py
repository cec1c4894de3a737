#!/usr/bin/env python
"""Brillouin-zone sampling error of the bundled Te data (development only; needs ``tblite``).

The example's reference energies and forces come from GFN1-xTB on 32-atom periodic boxes, and
tblite samples only the Γ point. Liquid Te is a (semi)metal, so a Γ-only energy of so small a
box carries a sampling error that depends on the band structure of the whole box, not on
local neighbourhoods. The same frame repeated n1×n2×n3 times and computed at Γ equals the small
box sampled on an n1×n2×n3 k-point grid, so for each chosen frame this script prints

    ΔE = E(supercell) / N_supercell − E(box) / N_box        (meV/atom)
    ΔF = RMS over the box's atoms and components of F(supercell) − F(box)   (meV/Å)

and the spread (standard deviation) of ΔE over the frames. A potential built from local atomic
energies cannot follow the frame-to-frame part of ΔE, so that spread is a floor under the
energy error reachable on this data.

Example (2-core CPU, ~50 s per 2×2×1 frame on one core)::

    OMP_NUM_THREADS=1 python scripts/check_te_supercell.py \\
        --history data/example/HISTORY.Te.773K.gz --frames 10,50,90 --repeat 2,2,1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / tblite load their thread pools

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdnnp.io.dlpoly import read_history  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--history", action="append", required=True, help="HISTORY file (repeatable)")
    ap.add_argument("--frames", default="10,50,90", help="0-based frame indices in each file")
    ap.add_argument("--repeat", default="2,2,1", help="supercell n1,n2,n3")
    ap.add_argument("--forces", action="store_true", help="also compare forces")
    ap.add_argument("--electronic-temperature", type=float, default=300.0, help="K (as the generator)")
    ap.add_argument("--method", default="GFN1-xTB")
    args = ap.parse_args()

    from ase import Atoms
    from tblite.ase import TBLite

    rep = tuple(int(x) for x in args.repeat.split(","))
    frames = [int(x) for x in args.frames.split(",")]

    def calc():
        return TBLite(method=args.method, verbosity=0, electronic_temperature=args.electronic_temperature)

    print(f"{args.method}, electronic temperature {args.electronic_temperature:g} K, supercell {rep}")
    print("| file | frame | E/N box (eV/atom) | ΔE (meV/atom) | ΔF RMS (meV/Å) | F RMS (meV/Å) | time (s) |")
    print("|---|---|---|---|---|---|---|")
    deltas = []
    for path in args.history:
        all_frames = read_history(path, forces_unit="dlpoly")
        for i in frames:
            f = all_frames[i]
            box = Atoms(numbers=[52] * len(f.positions), positions=f.positions, cell=f.cell, pbc=True)
            box.calc = calc()
            t0 = time.perf_counter()
            e1 = box.get_potential_energy() / len(box)
            big = box.repeat(rep)
            big.calc = calc()
            e2 = big.get_potential_energy() / len(big)
            df = frms = float("nan")
            if args.forces:
                f1 = box.get_forces()
                f2 = big.get_forces()[:len(box)]  # ase repeat keeps the original box first
                df = 1000 * np.sqrt(np.mean((f2 - f1) ** 2))
                frms = 1000 * np.sqrt(np.mean(f1 ** 2))
            deltas.append(1000 * (e2 - e1))
            print(f"| {Path(path).name} | {i} | {e1:.5f} | {deltas[-1]:+.2f} | {df:.0f} | {frms:.0f} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
    d = np.array(deltas)
    print(f"ΔE over {len(d)} frames: mean {d.mean():+.2f}, standard deviation {d.std(ddof=1) if len(d) > 1 else 0:.2f}, "
          f"range {d.min():+.2f} to {d.max():+.2f} meV/atom")


if __name__ == "__main__":
    main()
