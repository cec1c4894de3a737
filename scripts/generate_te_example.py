#!/usr/bin/env python
"""Generate the bundled liquid-Te example data in ``data/example/`` (development only).

Molecular dynamics of liquid tellurium with ASE and the GFN1-xTB tight-binding method
(``tblite``), one independent Langevin (NVT) run per temperature, written as DL_POLY 4
HISTORY files with forces (``keytrj = 2``) and energy files::

    data/example/HISTORY.Te.<T>K.gz   positions (Å), cell (Å), forces (DL_POLY 10 J/mol/Å)
    data/example/E.Te.<T>K.gz         "step  energy_eV": total potential energy of the box (eV)
    data/example/provenance.Te.<T>K.json  settings, versions, wall time, sanity figures
    data/example/README.md            provenance table of all temperatures (rewritten each run)

Needs, beyond hdnnp itself (never needed to *use* hdnnp)::

    pip install tblite ase

Physics and settings (all recorded in the provenance):

* N Te atoms (default 32) in a periodic cubic box of edge L = (N m_Te / ρ)^(1/3),
  ρ = 5.7 g/cm³ (liquid Te near the melting point), so L ≈ 10.60 Å for N = 32.
* Start: random packing with minimum image distance ≥ 2.5 Å, velocities drawn from a
  Maxwell–Boltzmann distribution at T (seeded per temperature: seed = base_seed + T).
* Langevin thermostat (``ase.md.langevin.Langevin``), time step Δt, friction γ (1/fs);
  ``equil_steps`` steps at T are run and dropped, then ``frames`` frames are stored every
  ``stride`` steps. The HISTORY ``nstep`` counts MD steps from the start of the run (including
  equilibration); the energy file uses the same step numbers.
* Energy: tblite's total potential energy (eV); forces: −∂E/∂r (eV/Å), converted to DL_POLY
  internal units by :func:`hdnnp.io.dlpoly_write.write_history`.

Resumable: a temperature whose HISTORY and energy files both exist is skipped unless
``--force``; every file is written under a temporary name and renamed when complete.
Run with one OpenMP thread per process (``OMP_NUM_THREADS=1``, set here by default) and
``--jobs 2`` to run two temperatures at once.

Example::

    OMP_NUM_THREADS=1 python scripts/generate_te_example.py --jobs 2
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / tblite load their thread pools

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hdnnp.frames import Frame  # noqa: E402
from hdnnp.io.dlpoly_write import write_energies, write_history  # noqa: E402

TE_ATOMIC_NUMBER = 52
#: g/cm³ → Da/Å³: 1 g/cm³ = N_A · 1e-24 Da/Å³.
AVOGADRO = 6.02214076e23
DEFAULT_TEMPERATURES_K = (673, 723, 773, 823, 873, 973)


def box_edge_angstrom(n_atoms: int, density_g_cm3: float, mass_da: float) -> float:
    """Cubic box edge L (Å) for n atoms of mass m (Da) at density ρ: L³ = n m / (ρ N_A 1e-24)."""
    return (n_atoms * mass_da / (density_g_cm3 * AVOGADRO * 1e-24)) ** (1.0 / 3.0)


def min_image_distances(positions: np.ndarray, edge: float) -> np.ndarray:
    """All pair distances (Å, i < j) under the minimum-image convention in a cubic box."""
    d = positions[:, None, :] - positions[None, :, :]
    d -= edge * np.round(d / edge)
    r = np.sqrt((d ** 2).sum(-1))
    return r[np.triu_indices(len(positions), 1)]


def random_packing(n_atoms: int, edge: float, min_distance: float, rng: np.random.Generator,
                   max_tries: int = 100000) -> np.ndarray:
    """Random sequential insertion of n points in a cubic box, all image distances ≥ min_distance."""
    pos = np.empty((0, 3))
    tries = 0
    while len(pos) < n_atoms:
        tries += 1
        if tries > max_tries:
            raise RuntimeError(f"could not pack {n_atoms} atoms at minimum distance {min_distance} Å")
        trial = rng.uniform(0.0, edge, 3)
        if len(pos):
            d = pos - trial
            d -= edge * np.round(d / edge)
            if np.min(np.sqrt((d ** 2).sum(-1))) < min_distance:
                continue
        pos = np.vstack([pos, trial])
    return pos


def file_names(out_dir: Path, temperature_k: int) -> dict:
    return {
        "history": out_dir / f"HISTORY.Te.{temperature_k}K.gz",
        "energy": out_dir / f"E.Te.{temperature_k}K.gz",
        "provenance": out_dir / f"provenance.Te.{temperature_k}K.json",
    }


def _atomic(path: Path) -> Path:
    """Temporary sibling name (same suffix, so gzip is still chosen by the writer)."""
    return path.with_name(f".tmp.{os.getpid()}.{path.name}")


def last_frame_positions(history_path: Path) -> np.ndarray:
    """Positions (Å) of the last frame of a keytrj = 2 DL_POLY 4 HISTORY file written by this script."""
    import gzip

    with gzip.open(history_path, "rt") as fh:
        lines = fh.read().splitlines()
    keytrj, _, natms = (int(v) for v in lines[1].split()[:3])
    per_atom = 2 + keytrj
    atom_lines = lines[len(lines) - natms * per_atom:]
    return np.array([[float(v) for v in atom_lines[a * per_atom + 1].split()] for a in range(natms)])


def run_temperature(temperature_k: int, settings: dict, out_dir: str, start: dict | None = None) -> dict:
    """One Langevin run at ``temperature_k``; writes its three files atomically; returns provenance.

    ``start``: ``{"positions_angstrom": (n, 3), "origin": text}``, a relaxed liquid to start from
    (see ``--start-history``); default: a random packing.
    """
    os.environ["OMP_NUM_THREADS"] = str(settings["omp_threads"])
    from ase import Atoms, units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from tblite.ase import TBLite

    out = Path(out_dir)
    names = file_names(out, temperature_k)
    seed = settings["base_seed"] + temperature_k
    rng = np.random.default_rng(seed)
    n = settings["n_atoms"]
    edge = settings["box_edge_angstrom"]
    if start:
        start_positions = np.asarray(start["positions_angstrom"], float)
        start_label = "start.Te.json"
    else:
        start_positions = random_packing(n, edge, settings["min_start_distance_angstrom"], rng)
        start_label = f"random packing, minimum distance {settings['min_start_distance_angstrom']} Å"
    atoms = Atoms(numbers=[TE_ATOMIC_NUMBER] * n, positions=start_positions, cell=np.eye(3) * edge, pbc=True)
    atoms.calc = TBLite(method=settings["method"], verbosity=0,
                        electronic_temperature=settings["electronic_temperature_k"])
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_k, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())  # no centre-of-mass drift (ASE's recommended form, not fixcm=True)
    dyn = Langevin(atoms, timestep=settings["timestep_fs"] * units.fs, temperature_K=temperature_k,
                   friction=settings["friction_per_fs"] / units.fs, fixcm=False, rng=rng)

    label = f"Te {temperature_k} K"
    total_steps = settings["equil_steps"] + settings["frames"] * settings["stride"]
    t0 = time.perf_counter()
    last_print = [t0]
    done = [0]
    kinetic_t = []

    def report(force: bool = False):
        now = time.perf_counter()
        if force or now - last_print[0] >= 30.0:
            last_print[0] = now
            rate = done[0] / max(now - t0, 1e-9)
            eta = (total_steps - done[0]) / rate if rate > 0 else float("inf")
            print(f"{label}: step {done[0]}/{total_steps} {rate:.2f} steps/s, ETA {eta / 60:.1f} min, "
                  f"T_kin {atoms.get_temperature():.0f} K, E {atoms.get_potential_energy() / n:.4f} eV/atom",
                  flush=True)

    for _ in range(settings["equil_steps"]):
        dyn.run(1)
        done[0] += 1
        report()

    frames = []
    for k in range(settings["frames"]):
        dyn.run(settings["stride"])
        done[0] += settings["stride"]
        kinetic_t.append(atoms.get_temperature())
        frames.append(Frame(positions=atoms.get_positions(wrap=True), species=atoms.numbers.copy(),
                            cell=np.array(atoms.cell), pbc=np.array([True] * 3),
                            energy=float(atoms.get_potential_energy()),
                            forces=np.array(atoms.get_forces(apply_constraint=False)),  # raw tblite forces
                            temperature=float(temperature_k),
                            step=settings["equil_steps"] + (k + 1) * settings["stride"]))
        report()
    report(force=True)
    wall = time.perf_counter() - t0

    energy_per_atom = np.array([f.energy for f in frames]) / n
    forces = np.concatenate([f.forces for f in frames])
    min_dist = min(float(min_image_distances(f.positions, edge).min()) for f in frames)
    steps = np.array([f.step for f in frames], float)
    drift = np.polyfit(steps * settings["timestep_fs"] * 1e-3, energy_per_atom, 1)[0]  # eV/atom/ps
    half = len(frames) // 2
    prov = {
        "temperature_K": temperature_k,
        "seed": seed,
        "start": start_label,
        "n_frames": len(frames),
        "wall_time_s": round(wall, 1),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "energy_per_atom_mean_eV": float(energy_per_atom.mean()),
        "energy_per_atom_std_eV": float(energy_per_atom.std()),
        "energy_per_atom_first_half_mean_eV": float(energy_per_atom[:half].mean()),
        "energy_per_atom_second_half_mean_eV": float(energy_per_atom[half:].mean()),
        "energy_drift_eV_per_atom_per_ps": float(drift),
        "force_rms_eV_per_angstrom": float(np.sqrt((forces ** 2).mean())),
        "force_max_abs_eV_per_angstrom": float(np.abs(forces).max()),
        "min_distance_angstrom": min_dist,
        "kinetic_temperature_mean_K": float(np.mean(kinetic_t)),
        "settings": settings,
    }

    title = (f"liquid Te {temperature_k} K, {n} atoms, {settings['method']} (tblite), "
             f"Langevin, seed {seed}")
    tmp = {key: _atomic(p) for key, p in names.items()}
    write_history(tmp["history"], frames, layout="dlpoly4", keytrj=2, title=title,
                  timestep_ps=settings["timestep_fs"] * 1e-3)
    write_energies(tmp["energy"], frames, header="step  energy_eV (total potential energy of the box)")
    tmp["provenance"].write_text(json.dumps(prov, indent=1) + "\n")
    for key in ("provenance", "energy", "history"):  # HISTORY last: its presence marks "done"
        os.replace(tmp[key], names[key])
    print(f"{label}: done in {wall / 60:.1f} min, E/atom {prov['energy_per_atom_mean_eV']:.4f} eV, "
          f"F_rms {prov['force_rms_eV_per_angstrom']:.3f} eV/Å, d_min {min_dist:.2f} Å", flush=True)
    return prov


def write_readme(out_dir: Path, common: dict) -> None:
    """README.md beside the data, built from all per-temperature provenance files found there."""
    provs = sorted((json.loads(p.read_text()) for p in out_dir.glob("provenance.Te.*K.json")),
                   key=lambda p: p["temperature_K"])
    s = provs[0]["settings"] if provs else common
    lines = [
        "# Bundled example data: liquid Te (GFN1-xTB molecular dynamics)",
        "",
        "Generated by `scripts/generate_te_example.py` (do not edit by hand; rerun the script).",
        "Files: `HISTORY.Te.<T>K.gz` (DL_POLY 4 HISTORY, keytrj = 2: positions Å, velocities written as",
        "zeros, forces in DL_POLY internal units 10 J/mol/Å) and `E.Te.<T>K.gz` (`step energy_eV`, the",
        "total potential energy of the box in eV, step matching HISTORY `nstep`).",
        "",
        "## Method",
        "",
        f"- Electronic structure: {s['method']} via tblite {s['versions']['tblite']} "
        f"(ASE calculator `tblite.ase.TBLite`, electronic temperature {s['electronic_temperature_k']} K)",
        f"- System: {s['n_atoms']} Te atoms, periodic cubic box, edge {s['box_edge_angstrom']:.4f} Å "
        f"(density {s['density_g_cm3']} g/cm³)",
        "- Start: see the `start` column (a random packing, or `start.Te.json`, described below);",
        "  Maxwell–Boltzmann velocities at T, centre of mass fixed (ase.constraints.FixCom)",
        f"- Dynamics: ase.md.langevin.Langevin, time step {s['timestep_fs']} fs, friction "
        f"{s['friction_per_fs']} 1/fs",
        f"- Equilibration: {s['equil_steps']} steps dropped; then {s['frames']} frames every "
        f"{s['stride']} steps",
        f"- Seed: base seed {s['base_seed']} + T (K)",
        f"- Versions: ase {s['versions']['ase']}, tblite {s['versions']['tblite']}, numpy "
        f"{s['versions']['numpy']}, Python {s['versions']['python']}",
        f"- Threads: OMP_NUM_THREADS={s['omp_threads']} per process, {s['jobs']} process(es) at once; "
        f"host {s['host']}",
        f"- Command: `{s.get('command', '?')}`",
        "",
        "## Per temperature",
        "",
        "| T (K) | seed | start | frames | E/atom mean (eV) | E/atom std (eV) | drift (eV/atom/ps) | "
        "F rms (eV/Å) | d_min (Å) | T_kin mean (K) | wall (s) | date (UTC) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in provs:
        lines.append(
            f"| {p['temperature_K']} | {p['seed']} | {p.get('start', 'random packing')} | {p['n_frames']} | {p['energy_per_atom_mean_eV']:.5f} | "
            f"{p['energy_per_atom_std_eV']:.5f} | {p['energy_drift_eV_per_atom_per_ps']:.5f} | "
            f"{p['force_rms_eV_per_angstrom']:.3f} | {p['min_distance_angstrom']:.3f} | "
            f"{p['kinetic_temperature_mean_K']:.0f} | {p['wall_time_s']:.0f} | {p['date_utc']} |")
    if provs:
        lines += ["", f"Total wall time (sum over temperatures): {sum(p['wall_time_s'] for p in provs):.0f} s."]
    start_json = out_dir / "start.Te.json"
    if start_json.exists():
        st = json.loads(start_json.read_text())
        lines += ["", "## Start configuration (`start.Te.json`)", "", f"Origin: {st['origin']}.",
                  f"{st.get('note', '')}".strip()]
    if start_json.exists():
        lines += ["", "Rerun the same temperatures from this start (no melt file needed): add "
                  "`--force --start-json data/example/start.Te.json` to the settings above."]
    lines += ["", "The energy drift is the slope of a straight-line fit of E/atom against time over",
              "the stored frames; for a thermostatted run in equilibrium it should be ~0 within noise.",
              "With 32 atoms, E/atom fluctuates by ~0.01-0.02 eV frame to frame and is correlated over",
              "~0.1-0.2 ps, so a mean over a short run carries an uncertainty of ~0.01 eV/atom; compare",
              "temperatures by the trend over the whole range, not neighbour by neighbour.", ""]
    tmp = _atomic(out_dir / "README.md")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, out_dir / "README.md")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "data" / "example"))
    ap.add_argument("--temperatures", default=",".join(map(str, DEFAULT_TEMPERATURES_K)),
                    help="comma-separated temperatures in K")
    ap.add_argument("--n-atoms", type=int, default=32)
    ap.add_argument("--density", type=float, default=5.7, help="g/cm³")
    ap.add_argument("--timestep-fs", type=float, default=2.5)
    ap.add_argument("--friction-per-fs", type=float, default=0.02)
    ap.add_argument("--equil-steps", type=int, default=200)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--seed", type=int, default=20260, help="base seed; each T uses seed + T")
    ap.add_argument("--method", default="GFN1-xTB")
    ap.add_argument("--electronic-temperature", type=float, default=300.0, help="K (tblite smearing)")
    ap.add_argument("--jobs", type=int, default=1, help="temperatures run at once (1 thread each)")
    ap.add_argument("--force", action="store_true", help="redo temperatures whose files exist")
    ap.add_argument("--start-history", default=None, metavar="PATH",
                    help="start every run from the last frame of this HISTORY file (a relaxed liquid, e.g. "
                         "from an earlier random-packing run of this script) instead of a random packing; "
                         "its positions and origin are saved as <out>/start.Te.json")
    ap.add_argument("--start-note", default="", help="how the --start-history file was made (for provenance)")
    ap.add_argument("--start-json", default=None, metavar="PATH",
                    help="start every run from a start.Te.json written by an earlier --start-history run")
    args = ap.parse_args(argv)

    from ase.data import atomic_masses

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    temperatures = [int(t.strip().rstrip("K")) for t in args.temperatures.split(",") if t.strip()]
    settings = {
        "method": args.method,
        "n_atoms": args.n_atoms,
        "density_g_cm3": args.density,
        "box_edge_angstrom": box_edge_angstrom(args.n_atoms, args.density, float(atomic_masses[TE_ATOMIC_NUMBER])),
        "min_start_distance_angstrom": 2.5,
        "timestep_fs": args.timestep_fs,
        "friction_per_fs": args.friction_per_fs,
        "equil_steps": args.equil_steps,
        "frames": args.frames,
        "stride": args.stride,
        "base_seed": args.seed,
        "electronic_temperature_k": args.electronic_temperature,
        "omp_threads": int(os.environ.get("OMP_NUM_THREADS", "1")),
        "jobs": args.jobs,
        "command": shlex.join(["python", "scripts/generate_te_example.py", *(argv if argv is not None else sys.argv[1:])]),
        "host": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "versions": {"ase": importlib.metadata.version("ase"),
                     "tblite": importlib.metadata.version("tblite"),
                     "numpy": np.__version__, "python": platform.python_version()},
    }
    todo = []
    for t in temperatures:
        names = file_names(out, t)
        if not args.force and names["history"].exists() and names["energy"].exists():
            print(f"Te {t} K: files exist, skipped (use --force to redo)", flush=True)
        else:
            todo.append(t)
    start = None
    if args.start_history:
        import hashlib

        src = Path(args.start_history)
        start = {"origin": f"last frame of {src.name} (sha256 {hashlib.sha256(src.read_bytes()).hexdigest()})",
                 "note": args.start_note,
                 "positions_angstrom": last_frame_positions(src).round(10).tolist()}
        tmp = _atomic(out / "start.Te.json")
        tmp.write_text(json.dumps(start, indent=1) + "\n")
        os.replace(tmp, out / "start.Te.json")
    elif args.start_json:
        start = json.loads(Path(args.start_json).read_text())
    if start is not None:
        d = min_image_distances(np.asarray(start["positions_angstrom"]), settings["box_edge_angstrom"])
        print(f"start configuration: {start['origin']}; minimum distance {d.min():.3f} Å", flush=True)

    t0 = time.perf_counter()
    failed = []
    if args.jobs <= 1:
        for t in todo:
            run_temperature(t, settings, str(out), start)
            write_readme(out, settings)
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_temperature, t, settings, str(out), start): t for t in todo}
            for fut in as_completed(futures):
                try:
                    fut.result()
                except Exception as exc:  # report and keep the other temperatures running
                    failed.append(futures[fut])
                    print(f"Te {futures[fut]} K failed: {exc!r}", flush=True)
                write_readme(out, settings)
    write_readme(out, settings)
    print(f"all done in {(time.perf_counter() - t0) / 60:.1f} min; failed: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
