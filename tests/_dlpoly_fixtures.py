"""Tiny trajectories for the reader / prepare tests (written with hdnnp.io.dlpoly_write)."""

from __future__ import annotations

import numpy as np

from hdnnp.frames import Frame
from hdnnp.io.dlpoly_write import write_energies, write_history

ORTHO = np.diag([10.0, 11.0, 12.0])
CUBIC = np.diag([9.0, 9.0, 9.0])
TRICLINIC = np.array([[10.0, 0.0, 0.0], [1.5, 11.0, 0.0], [0.7, -0.4, 12.0]])


def make_frames(n_frames, species=(52, 52, 52, 52), cell=ORTHO, step0=0, step_every=10, seed=0,
                forces=True):
    """Random frames; steps ``step0, step0 + step_every, ...``; energies ~ -3.2 eV/atom."""
    rng = np.random.default_rng(seed)
    species = np.asarray(species, np.int32)
    out = []
    for k in range(n_frames):
        out.append(Frame(
            positions=rng.uniform(0.0, 9.0, (len(species), 3)).round(6),
            species=species, cell=np.array(cell, float), pbc=np.full(3, bool(np.any(cell))),
            energy=round(-3.2 * len(species) + rng.normal(0.0, 0.1), 8),
            forces=rng.normal(0.0, 1.0, (len(species), 3)).round(6) if forces else None,
            step=step0 + step_every * k))
    return out


def write_pair(directory, system, temperature, frames, gz=False, energy_frames=None, **kw):
    """Write ``HISTORY.<system>.<T>K[.gz]`` and ``E.<system>.<T>K``; return their paths."""
    suffix = ".gz" if gz else ""
    hist = directory / f"HISTORY.{system}.{temperature}K{suffix}"
    energy = directory / f"E.{system}.{temperature}K"
    write_history(hist, frames, **kw)
    write_energies(energy, frames if energy_frames is None else energy_frames)
    return hist, energy
