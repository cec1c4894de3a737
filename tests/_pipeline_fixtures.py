"""Tiny DL_POLY trajectories for the whole-pipeline tests (``hdnnp run``, ``hdnnp study``).

Eight Te atoms on a jittered simple-cubic lattice (a = 3.3 Å, periodic 6.6 Å box), energies
and forces of a smooth Lennard-Jones potential (ASE), so the reference data are physically
consistent (F = -dE/dr) and a network can learn them. The jitter grows with sqrt(T), so
temperatures differ the way an MD run's would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hdnnp.frames import Frame
from hdnnp.io.dlpoly_write import write_energies, write_history

LATTICE_ANGSTROM = 3.3
N_SIDE = 2  # 2 x 2 x 2 = 8 atoms per box


def write_lj_trajectories(directory, temperatures, n_frames: int = 5, seed: int = 0,
                          system: str = "Te") -> Path:
    """Write ``HISTORY.<system>.<T>K`` and ``E.<system>.<T>K`` for each temperature (K)."""
    from ase import Atoms
    from ase.calculators.lj import LennardJones

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grid = np.arange(N_SIDE, dtype=float)
    lattice = np.array(np.meshgrid(grid, grid, grid, indexing="ij")).reshape(3, -1).T * LATTICE_ANGSTROM
    cell = np.eye(3) * LATTICE_ANGSTROM * N_SIDE
    for t in temperatures:
        frames = []
        for k in range(n_frames):
            positions = lattice + rng.normal(0.0, 0.06 * np.sqrt(t / 673.0), lattice.shape)
            atoms = Atoms(numbers=[52] * len(lattice), positions=positions, cell=cell, pbc=True)
            atoms.calc = LennardJones(sigma=2.9, epsilon=0.1, rc=6.0, smooth=True)
            frames.append(Frame(positions=atoms.get_positions(wrap=True),
                                species=atoms.numbers.astype(np.int32), cell=cell.copy(),
                                pbc=np.ones(3, bool), energy=float(atoms.get_potential_energy()),
                                forces=atoms.get_forces(), step=100 + 10 * k))
        write_history(directory / f"HISTORY.{system}.{t}K", frames)
        write_energies(directory / f"E.{system}.{t}K", frames)
    return directory
