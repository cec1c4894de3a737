#!/usr/bin/env python
"""n2p2 as the oracle of hdnnp's n2p2 export and import (developer check; CI uses golden values).

Needs n2p2's ``nnp-predict`` (build it with ``scripts/build_n2p2.sh``; pass its bin directory).

    python scripts/check_n2p2.py export MODEL.h5 FRAMES --n2p2-bin DIR [--frames 5]
        hdnnp export MODEL -> n2p2's nnp-predict on FRAMES (any file ASE reads, or prepared.h5)
        gives hdnnp's energies and forces? Also the round trip export -> import -> hdnnp.
    python scripts/check_n2p2.py import N2P2_DIR --n2p2-bin DIR [--length-unit bohr
            --energy-unit hartree] [--data input.data]
        hdnnp import N2P2_DIR gives nnp-predict's energies and forces on the structures of
        --data (an n2p2 input.data in the potential's units, default N2P2_DIR/input.data, or any
        file ASE reads, in Å), frame by frame.

Prints the largest relative energy and force differences per frame and exits 1 above the
tolerance (1e-8 relative to n2p2; 1e-12 for the round trip).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hdnnp.interop.n2p2 import ENERGY_UNITS, LENGTH_UNITS, export_potential, read_potential, unit_name
from hdnnp.io.n2p2 import iter_n2p2, write_n2p2
from hdnnp.model import Potential

TOL_N2P2, TOL_ROUND_TRIP = 1e-8, 1e-12


def nnp_predict(bin_dir, potential_dir, frame, length_unit="angstrom", energy_unit="eV"):
    """nnp-predict's energy (eV) and forces (eV/Å) of one :class:`hdnnp.frames.Frame`, the
    potential in the given units (the structure is written in them by ``write_n2p2``)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for f in Path(potential_dir).iterdir():
            if f.name in ("input.nn", "scaling.data") or f.name.startswith("weights."):
                (tmp / f.name).symlink_to(f.resolve())
        write_n2p2(tmp / "input.data", [frame], length_unit, energy_unit, "written by hdnnp scripts/check_n2p2.py")
        run = subprocess.run([str(Path(bin_dir) / "nnp-predict"), "0"], cwd=tmp, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"nnp-predict failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        e = None
        for line in (tmp / "energy.out").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                e = float(line.split()[3])  # conf natoms Eref Ennp Ediff E_offset
        forces = np.atleast_2d(np.loadtxt(tmp / "nnforces.out", comments="#"))[:, -3:]
    length, energy = LENGTH_UNITS[length_unit], ENERGY_UNITS[energy_unit]
    return e * energy, forces * energy / length


def hdnnp_predict(potential, frame):
    return potential.predict(frame.positions, frame.cell, frame.pbc, frame.species)


def compare(label, ref, got, tol):
    worst_e = abs(got[0] - ref[0]) / max(abs(ref[0]), 1e-300)
    worst_f = np.abs(got[1] - ref[1]).max() / max(np.abs(ref[1]).max(), 1e-300)
    ok = worst_e <= tol and worst_f <= tol
    print(f"{label}: energy {ref[0]:.10f} eV, rel. diff {worst_e:.2e}; forces max rel. diff {worst_f:.2e} "
          f"{'ok' if ok else 'FAIL'}")
    return ok


def load_frames(path, n, length_unit="angstrom", energy_unit="eV"):
    """The first ``n`` frames (:class:`hdnnp.frames.Frame`, Å) of prepared.h5[:GROUP], an n2p2
    input.data (``*.data``, in the given units) or any file ASE reads."""
    from itertools import islice

    spec, _, group = str(path).partition(":")
    if spec.endswith(".data"):
        return [f for _, f in islice(iter_n2p2(spec, length_unit, energy_unit), n)]
    if spec.endswith(".h5"):  # prepared.h5[:GROUP] (default: the first set)
        import h5py

        from hdnnp.baseline import iter_frames

        with h5py.File(spec) as h5:
            return list(islice(iter_frames(h5[group or list(h5.keys())[0]]), n))
    from hdnnp.io.ase_formats import iter_ase

    return [f for _, f in islice(iter_ase(spec), n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["export", "import"])
    ap.add_argument("source")
    ap.add_argument("frames", nargs="?")
    ap.add_argument("--n2p2-bin", required=True)
    ap.add_argument("--frames", dest="n_frames", type=int, default=5)
    ap.add_argument("--length-unit", default="angstrom", help=", ".join(LENGTH_UNITS))
    ap.add_argument("--energy-unit", default="eV", help=", ".join(ENERGY_UNITS))
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    units = unit_name(args.length_unit, LENGTH_UNITS), unit_name(args.energy_unit, ENERGY_UNITS)
    ok = True
    if args.mode == "export":
        potential = Potential.load(args.source)
        frames = load_frames(args.frames, args.n_frames)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "n2p2"
            export_potential(potential, out)
            back = read_potential(out)
            for k, frame in enumerate(frames):
                ours = hdnnp_predict(potential, frame)
                ok &= compare(f"frame {k} nnp-predict vs hdnnp", nnp_predict(args.n2p2_bin, out, frame), ours, TOL_N2P2)
                ok &= compare(f"frame {k} round trip", ours, hdnnp_predict(back, frame), TOL_ROUND_TRIP)
    else:
        potential = read_potential(args.source, *units)
        data = args.data or str(Path(args.source) / "input.data")
        for k, frame in enumerate(load_frames(data, args.n_frames, *units)):
            ref = nnp_predict(args.n2p2_bin, args.source, frame, *units)
            ok &= compare(f"frame {k} hdnnp import vs nnp-predict", ref, hdnnp_predict(potential, frame), TOL_N2P2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
