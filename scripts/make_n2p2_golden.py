#!/usr/bin/env python
"""Write tests/data/n2p2/: n2p2 potentials and n2p2's own predictions on a few structures, the
golden values CI checks hdnnp's import and export against (CI has no n2p2).

    python scripts/make_n2p2_golden.py --n2p2-bin DIR --te-model MODEL.h5 --te-frames prepared.h5:predict \\
        --mlearn ../shared/data/ge_si_pbe_mlearn [--commit HASH]

- ``synthetic/``: a made-up two-element (Cu, S) potential in Bohr and Hartree using what only
  n2p2 potentials use (types 3 with Rs and 9, cutoff type 6 with alpha, softplus and logistic
  layers, sigma scaling, mean_energy/conv_energy/conv_length, atom_energy, normalize_nodes),
  random weights, scaling statistics taken from its structures;
- ``te_export/``: ``hdnnp export`` of MODEL (the bundled example's potential);
- ``ge_mlearn/``: the published mlearn Ge potential (BSD-3, Zuo et al. 2020) with two test frames.

Each folder gets ``frames.json`` whose energies and forces are nnp-predict's (eV, eV/Å) and a
README with the n2p2 commit and the command.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from check_n2p2 import load_frames, nnp_predict  # noqa: E402

from hdnnp.frames import Frame  # noqa: E402
from hdnnp.interop.n2p2 import export_potential, read_potential  # noqa: E402
from hdnnp.model import Potential  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "n2p2"


def save_frames(path, frames, results):
    """Structures and nnp-predict's results as JSON, every number at full precision."""
    import json

    out = [{"numbers": a.species.tolist(), "positions": a.positions.tolist(), "cell": a.cell.tolist(),
            "pbc": a.pbc.tolist(), "energy": float(e), "forces": np.asarray(f).tolist()}
           for a, (e, f) in zip(frames, results)]
    Path(path).write_text(json.dumps(out, indent=1) + "\n")


def random_cu_s(seed, n=12, box=7.0):
    import ase

    rng = np.random.default_rng(seed)
    cell = np.diag([box, box * 1.05, box * 0.95]) + np.triu(rng.uniform(-0.4, 0.4, (3, 3)), 1)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, 1, 3) @ cell
        a = ase.Atoms("X" * (len(pos) + 1), positions=pos + [p], cell=cell, pbc=True)
        if len(pos) == 0 or a.get_distances(len(pos), range(len(pos)), mic=True).min() > 2.0:
            pos.append(p)
    a = ase.Atoms(["Cu", "S"] * (n // 2), positions=pos, cell=cell, pbc=True)
    return Frame(positions=a.positions, species=a.numbers, cell=a.cell.array, pbc=a.pbc)


SYNTHETIC_NN = """# A made-up potential exercising what only n2p2 potentials use (hdnnp tests; see README.md)
number_of_elements 2
elements Cu S          ! the element order in the file is not the index order
atom_energy S -0.31
atom_energy Cu -1.7
mean_energy -2.1
conv_energy 3.5
conv_length 1.3
cutoff_type 6 0.1
scale_symmetry_functions_sigma
scale_min_short 0.0
scale_max_short 1.0
global_hidden_layers_short 2
global_nodes_short 7 5
global_activation_short p s l
normalize_nodes
epochs 10              # a training keyword: ignored
"""


def synthetic(bin_dir, out):
    lines = [SYNTHETIC_NN]
    rc = 11.0  # Bohr
    for c in ("Cu", "S"):
        for n in ("Cu", "S"):
            for eta, rs in ((0.02, 0.0), (0.05, 4.0), (0.1, 5.5)):
                lines.append(f"symfunction_short {c} 2 {n} {eta} {rs} {rc if rs else 9.0}")
        for n1, n2 in (("Cu", "Cu"), ("Cu", "S"), ("S", "S")):
            lines.append(f"symfunction_short {c} 3 {n1} {n2} 0.01 -1 1.0 {rc}")
            lines.append(f"symfunction_short {c} 3 {n2} {n1} 0.02 1 2.0 {rc} 3.0")
            lines.append(f"symfunction_short {c} 9 {n1} {n2} 0.015 1 4.0 {rc}")
            lines.append(f"symfunction_short {c} 9 {n1} {n2} 0.03 -1 1.0 9.0 2.5")
    (out / "input.nn").write_text("\n".join(lines) + "\n")
    per = 3 * 2 + 4 * 3
    rows = [f"{e} {k} 0.0 1.0 0.5 1.0" for e in (1, 2) for k in range(1, per + 1)]
    (out / "scaling.data").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(7)
    for z in (16, 29):
        n_par = per * 7 + 7 + 7 * 5 + 5 + 5 + 1
        (out / f"weights.{z:03d}.data").write_text("\n".join(repr(float(v)) for v in rng.normal(0, 1.0, n_par)) + "\n")
    frames = [random_cu_s(s) for s in (1, 2)]
    # scaling statistics from the structures' raw values (so that the inputs are of order one)
    pot = read_potential(out, "bohr", "hartree")
    fs = pot.feature_set
    raw = {z: [] for z in fs.elements}
    from hdnnp.descriptors import compute_raw

    for a in frames:
        g = compute_raw(a.positions, a.cell, a.pbc, a.species, fs)
        for z in fs.elements:
            raw[z].append(g[a.species == z][:, fs.selected[z]])
    rows = []
    for e, z in enumerate(fs.elements):
        v = np.concatenate(raw[z])
        for k in range(v.shape[1]):
            col = v[:, k]
            rows.append(f"{e + 1} {k + 1} {float(col.min())!r} {float(col.max())!r} {float(col.mean())!r} "
                        f"{float(max(col.std(), 1e-3))!r}")
    (out / "scaling.data").write_text("# from the two structures of frames.json\n" + "\n".join(rows) + "\n")
    save_frames(out / "frames.json", frames, [nnp_predict(bin_dir, out, a, "bohr", "Hartree") for a in frames])


def te_export(bin_dir, model, frames_spec, out):
    potential = Potential.load(model)
    tmp = out.parent / ".te_export.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    export_potential(potential, tmp)
    for f in ("input.nn", "scaling.data", "weights.052.data"):
        shutil.copyfile(tmp / f, out / f)
    shutil.rmtree(tmp)
    frames = load_frames(frames_spec, 2)
    save_frames(out / "frames.json", frames, [nnp_predict(bin_dir, out, a) for a in frames])


def ge_mlearn(bin_dir, mlearn, out):
    from hdnnp.io.ase_formats import iter_ase

    src = Path(mlearn) / "n2p2_model_Ge"
    for f in ("input.nn", "scaling.data", "weights.032.data"):
        shutil.copyfile(src / f, out / f)
    test = [f for _, f in iter_ase(Path(mlearn) / "Ge.test.extxyz")]
    frames = sorted(test, key=lambda f: len(f.species))[:2]  # the two smallest
    save_frames(out / "frames.json", frames, [nnp_predict(bin_dir, out, a, "bohr", "Hartree") for a in frames])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n2p2-bin", required=True)
    ap.add_argument("--te-model", required=True)
    ap.add_argument("--te-frames", required=True)
    ap.add_argument("--mlearn", required=True)
    ap.add_argument("--commit", default="61daa0dfd065c842eaabc40ab283658510e066a5")
    args = ap.parse_args()
    for name, make in (("synthetic", lambda d: synthetic(args.n2p2_bin, d)),
                       ("te_export", lambda d: te_export(args.n2p2_bin, args.te_model, args.te_frames, d)),
                       ("ge_mlearn", lambda d: ge_mlearn(args.n2p2_bin, args.mlearn, d))):
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        make(d)
        print(f"wrote {d}")
    (OUT / "README.md").write_text(f"""# n2p2 golden values (tests/test_interop_n2p2.py)

Made by `python scripts/make_n2p2_golden.py --n2p2-bin BIN --te-model MODEL.h5 --te-frames
prepared.h5:predict --mlearn ../shared/data/ge_si_pbe_mlearn` with n2p2 built from
CompPhysVienna/n2p2 commit {args.commit} (`scripts/build_n2p2.sh`). In every folder,
`frames.json` holds structures (Å) with the energies (eV) and forces (eV/Å) that n2p2's
`nnp-predict` computed for them with that folder's potential (n2p2's units converted with hdnnp's
Bohr and Hartree, CODATA 2018, `hdnnp/units.py`).

- `synthetic/`: a made-up Cu–S potential in Bohr/Hartree (random weights, scaling statistics from
  its two random structures) using n2p2's types 3 (with Rs) and 9, cutoff type 6 with alpha,
  softplus and logistic layers, sigma scaling, normalisation, atom_energy and normalize_nodes.
- `te_export/`: `hdnnp export` of the potential `hdnnp run` trains on the bundled Te example
  (two frames of its 773 K prediction set).
- `ge_mlearn/`: the published n2p2 potential for Ge of the mlearn benchmark (Zuo et al., J. Phys.
  Chem. A 124, 731 (2020); github.com/materialsvirtuallab/mlearn, BSD-3-Clause, Copyright (c)
  2019 Materials Virtual Lab), Bohr/Hartree, with the two smallest frames of its test split (PBE
  energies replaced by n2p2's predictions).
""")


if __name__ == "__main__":
    main()
