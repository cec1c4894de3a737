#!/usr/bin/env python
"""n2p2 as the oracle of hdnnp's n2p2 export and import (developer check; CI uses golden values).

Needs n2p2's ``nnp-predict`` (build it with ``scripts/build_n2p2.sh``; pass its bin directory).

    python scripts/check_n2p2.py export MODEL.h5 FRAMES --n2p2-bin DIR [--frames 5]
        hdnnp export MODEL -> n2p2's nnp-predict on FRAMES (any file ASE reads, or prepared.h5)
        gives hdnnp's energies and forces? Also the round trip export -> import -> hdnnp.
    python scripts/check_n2p2.py import N2P2_DIR --n2p2-bin DIR [--length-unit bohr
            --energy-unit hartree] [--data input.data]
        hdnnp import N2P2_DIR gives nnp-predict's energies and forces on the structures of
        --data (n2p2's input.data format; default N2P2_DIR/input.data), frame by frame.

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

from hdnnp.interop.n2p2 import ENERGY_UNITS, LENGTH_UNITS, export_potential, read_potential
from hdnnp.model import Potential

TOL_N2P2, TOL_ROUND_TRIP = 1e-8, 1e-12


def write_input_data(path, atoms, length=1.0, energy=1.0):
    """One structure in n2p2's input.data format, lengths / ``length``, energies / ``energy``."""
    lines = ["begin", "comment written by hdnnp scripts/check_n2p2.py"]
    if atoms.pbc.all():
        lines += ["lattice " + " ".join(repr(float(x) / length) for x in v) for v in atoms.cell.array]
    for s, p in zip(atoms.get_chemical_symbols(), atoms.positions):
        lines.append("atom " + " ".join(repr(float(x) / length) for x in p) + f" {s} 0.0 0.0 0.0 0.0 0.0")
    lines += ["energy 0.0", "charge 0.0", "end"]
    Path(path).write_text("\n".join(lines) + "\n")


def read_input_data(path):
    """Structures of an n2p2 input.data as (positions, cell or None, symbols) in its units."""
    out, cur = [], None
    for line in Path(path).read_text().splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] == "begin":
            cur = {"lattice": [], "pos": [], "sym": []}
        elif w[0] == "lattice":
            cur["lattice"].append([float(x) for x in w[1:4]])
        elif w[0] == "atom":
            cur["pos"].append([float(x) for x in w[1:4]])
            cur["sym"].append(w[4])
        elif w[0] == "end":
            out.append((np.array(cur["pos"]), np.array(cur["lattice"]) if cur["lattice"] else None, cur["sym"]))
    return out


def nnp_predict(bin_dir, potential_dir, atoms, length=1.0, energy=1.0):
    """nnp-predict's energy (eV) and forces (eV/Å) of one structure, potential in given units."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for f in Path(potential_dir).iterdir():
            if f.name in ("input.nn", "scaling.data") or f.name.startswith("weights."):
                (tmp / f.name).symlink_to(f.resolve())
        write_input_data(tmp / "input.data", atoms, length, energy)
        run = subprocess.run([str(Path(bin_dir) / "nnp-predict"), "0"], cwd=tmp, capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"nnp-predict failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        e = None
        for line in (tmp / "energy.out").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                e = float(line.split()[3])  # conf natoms Eref Ennp Ediff E_offset
        forces = np.loadtxt(tmp / "nnforces.out", comments="#")
        f = np.atleast_2d(forces)[:, -3:]
    return e * energy, f * energy / length


def hdnnp_predict(potential, atoms):
    e, f = potential.predict(atoms.positions, atoms.cell.array, atoms.pbc, atoms.numbers)
    return e, f


def compare(label, ref, got, tol):
    worst_e = abs(got[0] - ref[0]) / max(abs(ref[0]), 1e-300)
    worst_f = np.abs(got[1] - ref[1]).max() / max(np.abs(ref[1]).max(), 1e-300)
    ok = worst_e <= tol and worst_f <= tol
    print(f"{label}: energy {ref[0]:.10f} eV, rel. diff {worst_e:.2e}; forces max rel. diff {worst_f:.2e} "
          f"{'ok' if ok else 'FAIL'}")
    return ok


def load_frames(path, n):
    """The first ``n`` frames of prepared.h5[:GROUP], an n2p2 input.data (``*.data``, its units
    taken as Å: ASE's reader would assume Bohr) or any file ASE reads."""
    import ase.io

    if str(path).endswith(".data"):
        import ase

        return [ase.Atoms(symbols=sym, positions=pos, cell=cell, pbc=cell is not None)
                for pos, cell, sym in read_input_data(path)[:n]]

    spec, _, group = str(path).partition(":")
    if spec.endswith(".h5"):  # prepared.h5[:GROUP] (default: the first set)
        import ase
        import h5py

        from hdnnp.baseline import iter_frames

        frames = []
        with h5py.File(spec) as h5:
            for f in iter_frames(h5[group or list(h5.keys())[0]]):
                frames.append(ase.Atoms(numbers=f.species, positions=f.positions, cell=f.cell, pbc=f.pbc))
                if len(frames) == n:
                    break
        return frames
    return ase.io.read(path, f":{n}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["export", "import"])
    ap.add_argument("source")
    ap.add_argument("frames", nargs="?")
    ap.add_argument("--n2p2-bin", required=True)
    ap.add_argument("--frames", dest="n_frames", type=int, default=5)
    ap.add_argument("--length-unit", choices=list(LENGTH_UNITS), default="angstrom")
    ap.add_argument("--energy-unit", choices=list(ENERGY_UNITS), default="eV")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    ok = True
    if args.mode == "export":
        import ase  # noqa: F401

        potential = Potential.load(args.source)
        frames = load_frames(args.frames, args.n_frames)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "n2p2"
            export_potential(potential, out)
            back = read_potential(out)
            for k, atoms in enumerate(frames):
                ours = hdnnp_predict(potential, atoms)
                ok &= compare(f"frame {k} nnp-predict vs hdnnp", nnp_predict(args.n2p2_bin, out, atoms), ours, TOL_N2P2)
                ok &= compare(f"frame {k} round trip", ours, hdnnp_predict(back, atoms), TOL_ROUND_TRIP)
    else:
        import ase

        length, energy = LENGTH_UNITS[args.length_unit], ENERGY_UNITS[args.energy_unit]
        potential = read_potential(args.source, args.length_unit, args.energy_unit)
        data = args.data or str(Path(args.source) / "input.data")
        for k, (pos, cell, sym) in enumerate(read_input_data(data)[:args.n_frames]):
            atoms = ase.Atoms(symbols=sym, positions=pos * length, cell=None if cell is None else cell * length,
                              pbc=cell is not None)
            ref = nnp_predict(args.n2p2_bin, args.source, atoms, length, energy)
            ok &= compare(f"frame {k} hdnnp import vs nnp-predict", ref, hdnnp_predict(potential, atoms), TOL_N2P2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
