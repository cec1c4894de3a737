"""Molecular dynamics with an hdnnp potential, on ASE's integrators.

Ensembles and integrators (all from ``ase.md``; we write none of our own):

| ensemble | integrator | time constants |
|---|---|---|
| ``nve`` | ``VelocityVerlet`` | — |
| ``nvt`` (``--thermostat langevin``, default) | ``Langevin`` (BAOAB-like splitting of ASE; friction γ = 1/τ_T) | τ_T |
| ``nvt`` (``--thermostat nose-hoover``) | ``NoseHooverChainNVT`` (chain of 3; Martyna, Klein, Tuckerman 1992) | τ_T |
| ``npt`` | ``IsotropicMTKNPT`` (Martyna–Tobias–Klein 1994: isotropic cell, Nosé–Hoover chains on particles and barostat) | τ_T, τ_P |

Langevin is the default thermostat because it is ergodic and stable for a first potential
whose forces may be rough; Nosé–Hoover chains leave the dynamics deterministic (transport
coefficients, conserved quantity for drift checks). The MTK barostat samples the isothermal–
isobaric ensemble correctly, unlike Berendsen-type rescaling; it needs the stress, which the
calculator then computes with the forces at each step.

Velocities start from a Maxwell–Boltzmann distribution at the set temperature (seeded), with
the centre-of-mass motion removed. Units at the interface: fs, ps, K, GPa, eV, Å.
"""

from __future__ import annotations

import collections
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hdnnp.analysis.observables import pressure_gpa
from hdnnp.errors import HdnnpError
from hdnnp.frames import Frame
from hdnnp.md.guards import GuardLimits, read_guards
from hdnnp.md.trajectory import (TrajectoryWriter, checkpoint_path, partial_path, read_checkpoint,
                                 write_checkpoint)
from hdnnp.progress import Progress
from hdnnp.units import EV_PER_ANGSTROM3_IN_GPA

ENSEMBLES = ("nve", "nvt", "npt")
THERMOSTATS = ("langevin", "nose-hoover")
#: Exit status of ``hdnnp md`` when a guard stopped the run (user errors exit 2).
EXIT_GUARD_STOP = 3
#: Frames kept in memory for the guard file (the last stored frames before a stop).
GUARD_HISTORY_FRAMES = 10


@dataclass
class MDSettings:
    """Everything that defines a run (stored in md.h5 and checked on ``--resume``)."""

    ensemble: str = "nvt"
    temperature_K: float = 300.0
    pressure_GPa: float = 0.0
    timestep_fs: float = 2.0
    n_steps: int = 1000
    thermostat: str = "langevin"
    tdamp_fs: float = 100.0
    pdamp_fs: float = 1000.0
    seed: int = 0
    write_every: int = 10
    guard_every: int = 10
    chunk_frames: int = 64
    limits: GuardLimits = field(default_factory=GuardLimits)

    def check(self) -> None:
        """A clear :class:`HdnnpError` naming the option for any impossible setting."""
        def bad(option, what):
            raise HdnnpError(f"{option}: {what}")

        if self.ensemble not in ENSEMBLES:
            bad("--ensemble", f"expected one of {', '.join(ENSEMBLES)}, got '{self.ensemble}'")
        if self.thermostat not in THERMOSTATS:
            bad("--thermostat", f"expected one of {', '.join(THERMOSTATS)}, got '{self.thermostat}'")
        if not (math.isfinite(self.temperature_K) and self.temperature_K > 0):
            bad("--temperature", f"expected a temperature > 0 K, got {self.temperature_K}")
        if not (math.isfinite(self.timestep_fs) and self.timestep_fs > 0):
            bad("--timestep", f"expected a time step > 0 fs, got {self.timestep_fs}")
        if self.n_steps < 1:
            bad("--steps/--time", f"expected at least one step, got {self.n_steps}")
        for option, value in (("--tdamp", self.tdamp_fs), ("--pdamp", self.pdamp_fs)):
            if not (math.isfinite(value) and value > 0):
                bad(option, f"expected a time constant > 0 fs, got {value}")
        if not math.isfinite(self.pressure_GPa):
            bad("--pressure", f"expected a finite pressure in GPa, got {self.pressure_GPa}")
        for option, value in (("--write-every", self.write_every), ("--guard-every", self.guard_every)):
            if value < 1:
                bad(option, f"expected a number of steps >= 1, got {value}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2 ** 32):
            bad("--seed", f"expected an integer in [0, 2³²), got {self.seed}")
        limits = self.limits
        for option, value, lowest in (("--max-extrapolation", limits.max_extrapolation_excess, 0.0),
                                      ("--min-distance", limits.min_distance_angstrom, 0.0)):
            if not value >= lowest:  # NaN fails this too; inf = no limit
                bad(option, f"expected a limit >= {lowest:g}, got {value}")
        for option, value in (("--max-temperature", limits.max_temperature_K),
                              ("--max-force-spread", limits.max_force_spread)):
            if not value > 0:  # NaN fails this too; inf = no limit
                bad(option, f"expected a limit > 0 (or inf: none), got {value}")
        if self.limits.on_extrapolation not in ("stop", "warn"):
            bad("--on-extrapolation", f"expected stop or warn, got '{self.limits.on_extrapolation}'")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "MDSettings":
        d = json.loads(text)
        d["limits"] = GuardLimits(**d["limits"])
        return cls(**d)


def ase_units():
    import ase.units

    return ase.units


def start_atoms(frame: Frame, supercell=(1, 1, 1), density: float | None = None):
    """ASE Atoms of a frame, repeated ``supercell`` times; with ``density`` (g/cm³) the cell and
    the positions are scaled isotropically, r -> s r with s = (ρ_start / ρ)^(1/3), to that mass
    density (the scaled-volume starts of NVT isotherms and of ``hdnnp learn``)."""
    from ase import Atoms

    atoms = Atoms(numbers=frame.species, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    if tuple(supercell) != (1, 1, 1):
        if not np.all(atoms.pbc[np.array(supercell) > 1]):
            raise HdnnpError(f"--supercell {'x'.join(map(str, supercell))}: the start structure is not "
                             "periodic along a repeated direction")
        atoms = atoms.repeat(supercell)
    if density is not None:
        from hdnnp.analysis.observables import mass_density

        if not (np.isfinite(density) and density > 0):
            raise HdnnpError(f"--density: expected a mass density > 0 g/cm³, got {density}")
        if not np.all(atoms.pbc):
            raise HdnnpError("--density: the start structure must be periodic in all three directions")
        scale = (mass_density(atoms.numbers, atoms.cell.array) / density) ** (1.0 / 3.0)
        atoms.set_cell(atoms.cell.array * scale, scale_atoms=True)
    return atoms


def initial_velocities(atoms, temperature_K: float, seed: int) -> None:
    """Maxwell–Boltzmann velocities at ``temperature_K`` (seeded), zero total momentum."""
    from ase.md import velocitydistribution as vd

    thermalize = getattr(vd, "thermalize_momenta", None)  # ASE >= 3.29; same distribution
    if thermalize is None:
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    else:
        thermalize(atoms, temperature_K, rng=np.random.default_rng(seed))
    vd.Stationary(atoms)


def make_dynamics(atoms, settings: MDSettings):
    """The ASE integrator of ``settings`` for ``atoms`` (see the module docstring)."""
    units = ase_units()
    dt = settings.timestep_fs * units.fs
    if settings.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if settings.ensemble == "nvt" and settings.thermostat == "langevin":
        from ase.md.langevin import Langevin

        from ase.constraints import FixCom

        # the centre of mass stays put through a constraint (ASE >= 3.28 deprecates fixcm=True,
        # which samples a slightly wrong distribution in small boxes)
        if not any(isinstance(c, FixCom) for c in atoms.constraints):
            atoms.set_constraint(list(atoms.constraints) + [FixCom()])
        return Langevin(atoms, timestep=dt, temperature_K=settings.temperature_K,
                        friction=1.0 / (settings.tdamp_fs * units.fs), fixcm=False,
                        rng=np.random.default_rng(settings.seed + 1))
    if settings.ensemble == "nvt":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=settings.temperature_K,
                                  tdamp=settings.tdamp_fs * units.fs)
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    if not np.all(atoms.pbc):
        raise HdnnpError("--ensemble npt: needs a cell periodic in all three directions")
    return IsotropicMTKNPT(atoms, timestep=dt, temperature_K=settings.temperature_K,
                           pressure_au=settings.pressure_GPa / EV_PER_ANGSTROM3_IN_GPA,
                           tdamp=settings.tdamp_fs * units.fs, pdamp=settings.pdamp_fs * units.fs)


#: Internal state of ASE's integrators beyond positions, momenta and cell: (owner, attribute);
#: owner "" is the integrator itself. Read and restored where present (ASE >= 3.25 layout).
_DYNAMICS_STATE = (("_thermostat", "_eta"), ("_thermostat", "_p_eta"), ("_barostat", "_xi"),
                   ("_barostat", "_p_xi"), ("", "_eps"), ("", "_p_eps"), ("", "_volume0"), ("", "_cell0"))


def dynamics_state(dyn) -> dict:
    """Positions, momenta, cell, step and the integrator's own state (thermostat chains, barostat,
    the Langevin random generator) as arrays and strings for a checkpoint."""
    atoms = dyn.atoms
    state = {"positions": atoms.get_positions(), "momenta": atoms.get_momenta(),
             "cell": atoms.cell.array.copy(), "nsteps": dyn.nsteps}
    for owner, name in _DYNAMICS_STATE:
        obj = getattr(dyn, owner, None) if owner else dyn
        if obj is not None and hasattr(obj, name):
            state[f"{owner}.{name}"] = np.asarray(getattr(obj, name))
    rng = getattr(dyn, "rng", None)
    if isinstance(rng, np.random.Generator):
        state["rng"] = json.dumps(rng.bit_generator.state)
    return state


def restore_dynamics(atoms, settings: MDSettings, state: dict):
    """An integrator continuing exactly from a :func:`dynamics_state`."""
    atoms.set_cell(state["cell"], scale_atoms=False)
    atoms.set_positions(state["positions"])
    atoms.set_momenta(state["momenta"])
    dyn = make_dynamics(atoms, settings)
    dyn.nsteps = int(state["nsteps"])
    for owner, name in _DYNAMICS_STATE:
        key = f"{owner}.{name}"
        if key in state:
            obj = getattr(dyn, owner) if owner else dyn
            value = np.asarray(state[key])
            setattr(obj, name, float(value) if value.ndim == 0 else value.copy())
    if "rng" in state:
        dyn.rng.bit_generator.state = json.loads(state["rng"])
    return dyn


def _conserved_energy(dyn, atoms) -> float:
    """The integrator's conserved quantity (eV), NaN where the calculator cannot give what it needs
    (the MTK and Nosé–Hoover integrators ask for the free energy)."""
    from ase.calculators.calculator import PropertyNotImplementedError

    if hasattr(dyn, "get_conserved_energy"):
        try:
            return float(dyn.get_conserved_energy())
        except PropertyNotImplementedError:
            return float("nan")
    if dyn.__class__.__name__ == "VelocityVerlet":
        return float(atoms.get_potential_energy() + atoms.get_kinetic_energy())
    return float("nan")


def _frame_record(atoms, dyn, settings: MDSettings, reading, with_stress: bool) -> dict:
    units = ase_units()
    stress = (atoms.get_stress(voigt=False) if with_stress else np.full((3, 3), np.nan))
    return dict(
        energy=atoms.get_potential_energy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(),
        temperature=reading.temperature_K, step=dyn.nsteps, source=0,
        time=dyn.nsteps * settings.timestep_fs * 1e-3, stress=stress,
        kinetic_energy=atoms.get_kinetic_energy(), conserved_energy=_conserved_energy(dyn, atoms),
        positions=atoms.get_positions(), species=atoms.numbers.astype(np.int32),
        forces=atoms.get_forces(), velocities=atoms.get_velocities() * (1000.0 * units.fs),
        extrapolation_count=reading.extrapolation_count,
        extrapolation_max_excess=reading.extrapolation_max_excess,
        min_distance=reading.min_distance_angstrom, force_spread=reading.force_spread)


def run_md(atoms, settings: MDSettings, output, *, resume: bool = False, overwrite: bool = False,
           quiet: bool = False, log=print, root_attrs: dict | None = None) -> dict:
    """Run MD from ``atoms`` (with an hdnnp calculator, or any ASE calculator such as the
    reference method's, attached) and write ``output`` (md.h5).

    Returns a summary: ``status`` (``complete`` or ``stopped``), ``reason``, ``n_frames``,
    ``steps``, ``time_ps``, ``wall_s``, ``ns_per_day``, ``atom_steps_per_s``, ``guard_file``
    (the saved offending frames, or None), ``last_guard`` (the last guard reading).
    """
    from hdnnp.h5io import check_can_write, write_root_attrs

    settings.check()
    output = Path(output)
    part, ckpt = partial_path(output), checkpoint_path(output)
    check_can_write(output, overwrite)
    with_stress = bool(np.all(atoms.pbc))
    if hasattr(atoms.calc, "stress_with_forces"):  # hdnnp's calculator: the stored frames' stress comes free
        atoms.calc.stress_with_forces = with_stress
    if resume:
        state, n_frames = read_checkpoint(ckpt)
        stored = MDSettings.from_json(state.pop("settings"))
        stored.n_steps = settings.n_steps  # the one setting a resumed run may change
        if stored != settings:
            raise HdnnpError(f"{ckpt}: the run was started with other settings ({stored.to_json()}); "
                             "resume it with the same options (only --steps/--time may change)")
        if not part.is_file():
            raise HdnnpError(f"{part}: the partial trajectory of the checkpoint is missing")
        if len(state["positions"]) != len(atoms):
            raise HdnnpError(f"{ckpt}: {len(state['positions'])} atoms, the start structure has {len(atoms)}")
        dyn = restore_dynamics(atoms, settings, state)
        h5 = h5py.File(part, "a")
        writer = TrajectoryWriter(h5, settings.chunk_frames)
        writer.truncate(n_frames)
        log(f"md: resuming at step {dyn.nsteps} ({writer.n_frames} frames kept) from {ckpt}")
    else:
        if ckpt.exists() and not overwrite:
            raise HdnnpError(f"{ckpt}: an unfinished run is there; continue it with --resume, "
                             f"or pass --overwrite to start again")
        if part.exists() and not ckpt.exists():  # killed or failed before its first checkpoint:
            log(f"md: replacing {part}, an unfinished run with no checkpoint (nothing to resume)")
        if not atoms.get_momenta().any():
            initial_velocities(atoms, settings.temperature_K, settings.seed)
        dyn = make_dynamics(atoms, settings)
        h5 = h5py.File(part, "w")
        write_root_attrs(h5, "md")
        for key, value in (root_attrs or {}).items():
            h5.attrs[key] = value
        h5.attrs["settings"] = settings.to_json()
        writer = TrajectoryWriter(h5, settings.chunk_frames)

    limits = settings.limits
    recent = collections.deque(maxlen=GUARD_HISTORY_FRAMES)
    warned = False
    reason, reading = None, None
    start_step = dyn.nsteps
    t0 = time.perf_counter()
    progress = Progress(max(settings.n_steps - start_step, 0), "md", unit="steps", quiet=quiet, interval=5.0)
    block = math.gcd(settings.write_every, settings.guard_every)
    n_atoms = len(atoms)

    def save_state():
        writer.flush()
        write_checkpoint(ckpt, {**dynamics_state(dyn), "settings": settings.to_json()}, writer.n_frames)

    try:
        while True:
            step = dyn.nsteps
            store = step % settings.write_every == 0 and (step > start_step or writer.n_frames == 0)
            if step % settings.guard_every == 0 or store:
                atoms.get_forces()
                reading = read_guards(atoms, step, step * settings.timestep_fs * 1e-3)
                if store:
                    writer.append(_frame_record(atoms, dyn, settings, reading, with_stress))
                    recent.append(_snapshot(atoms, step))
                    if not writer.buffer:  # a chunk went to disk: checkpoint
                        save_state()
                stops = reading.stopping(limits)
                if stops:
                    reason = f"step {step} ({reading.time_ps:.3f} ps): " + "; ".join(stops)
                    if not store:
                        recent.append(_snapshot(atoms, step))
                    break
                if not warned and reading.violations(limits):
                    warned = True
                    log(f"md: warning at step {step} ({reading.time_ps:.3f} ps): "
                        + "; ".join(m for _, m in reading.violations(limits)) + " (--on-extrapolation warn)")
            if step >= settings.n_steps:
                break
            n = min(block - step % block, settings.n_steps - step)
            dyn.run(n)
            progress.update(n, extra=_progress_extra(atoms, dyn, settings, t0, start_step, n_atoms, with_stress))
        writer.flush()
    except BaseException:  # Ctrl-C, a failing calculator: the last checkpoint stays valid
        h5.close()
        raise
    wall = time.perf_counter() - t0
    steps_done = dyn.nsteps - start_step
    h5.attrs["status"] = "complete" if reason is None else f"stopped: {reason}"
    n_frames = writer.n_frames
    drift = conserved_energy_drift(h5["trajectory/frames/time"][:], h5["trajectory/frames/conserved_energy"][:],
                                   n_atoms)
    h5.attrs["conserved_energy_drift_meV_per_atom_ps"] = drift
    h5.close()
    progress.close()
    guard_file = None
    if reason is not None:
        guard_file = write_guard_frames(output, recent, reason)
    Path(part).replace(output)
    ckpt.unlink(missing_ok=True)
    simulated_ps = steps_done * settings.timestep_fs * 1e-3
    return dict(status="complete" if reason is None else "stopped", reason=reason, n_frames=n_frames,
                steps=dyn.nsteps, time_ps=dyn.nsteps * settings.timestep_fs * 1e-3, wall_s=wall,
                ns_per_day=simulated_ps * 1e-3 / wall * 86400 if wall > 0 else float("nan"),
                atom_steps_per_s=steps_done * n_atoms / wall if wall > 0 else float("nan"),
                guard_file=guard_file, last_guard=reading, output=str(output), drift_meV_per_atom_ps=drift)


def conserved_energy_drift(time_ps, conserved_energy_ev, n_atoms: int) -> float:
    """Drift of the integrator's conserved quantity (meV/atom/ps): the slope of a least-squares
    line through the stored frames' conserved energy per atom against time. NVE: E_pot + E_kin;
    Nosé–Hoover and MTK: that plus the thermostat and barostat terms; NaN for Langevin (nothing is
    conserved) or fewer than two frames."""
    t, e = np.asarray(time_ps, float), np.asarray(conserved_energy_ev, float)
    ok = np.isfinite(e)
    if ok.sum() < 2 or np.ptp(t[ok]) <= 0:
        return float("nan")
    return float(np.polyfit(t[ok], e[ok] / n_atoms, 1)[0] * 1000.0)


def _snapshot(atoms, step: int):
    copy = atoms.copy()  # no calculator: positions, cell, species, momenta
    copy.info = {"step": step}
    return copy


def _progress_extra(atoms, dyn, settings, t0, start_step, n_atoms, with_stress) -> str:
    wall = max(time.perf_counter() - t0, 1e-9)
    done_ps = (dyn.nsteps - start_step) * settings.timestep_fs * 1e-3
    text = (f"t {dyn.nsteps * settings.timestep_fs * 1e-3:.3f}/{settings.n_steps * settings.timestep_fs * 1e-3:.3f} ps, "
            f"{done_ps * 1e-3 / wall * 86400:.3g} ns/day, {(dyn.nsteps - start_step) * n_atoms / wall:.0f} atom-steps/s, "
            f"T {atoms.get_temperature():.0f} K, E {atoms.get_potential_energy() / n_atoms:.4f} eV/atom")
    if with_stress and "stress" in atoms.calc.results:
        text += f", P {pressure_gpa(atoms.get_stress(voigt=False)):.2f} GPa"
    return text


def write_guard_frames(output, frames, reason: str) -> str:
    """The last stored frames and the offending one as extxyz (positions, cell, species; no
    energies or forces, so they cannot be mistaken for labels), ready for the reference method:
    ``<output stem>.guard.xyz``."""
    import ase.io

    path = Path(output).with_suffix(".guard.xyz")
    images = []
    for a in frames:
        a = a.copy()
        a.info["hdnnp_md_guard"] = reason
        images.append(a)
    ase.io.write(str(path), images, format="extxyz")
    return str(path)
