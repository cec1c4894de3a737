"""In-memory frame containers shared by readers, stages and the Python API."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """One configuration (box). Units: Å, eV, eV/Å, K.

    ``cell`` rows are the lattice vectors a, b, c; ``pbc`` the periodic directions;
    ``energy`` the total potential energy of the box (NaN if unknown); ``forces`` None if unknown;
    ``stress`` (3, 3) eV/Å³ in ASE's convention (positive = tensile, P = −tr σ/3), None if unknown;
    ``group`` a label of the kind of structure (e.g. mlearn's Vacancy, AIMD-NVT, Surface), "" if none.
    """

    positions: np.ndarray  # (n, 3) Å
    species: np.ndarray  # (n,) atomic numbers
    cell: np.ndarray  # (3, 3) Å
    pbc: np.ndarray  # (3,) bool
    energy: float = float("nan")  # eV
    forces: np.ndarray | None = None  # (n, 3) eV/Å
    temperature: float = float("nan")  # K
    step: int = 0
    source: str = ""
    stress: np.ndarray | None = None  # (3, 3) eV/Å³, ASE's sign
    group: str = ""


@dataclass
class FrameChunk:
    """A contiguous block of frames in ragged layout (as stored in HDF5)."""

    atom_offset: np.ndarray  # (n_frames + 1,) offsets into the atom arrays, starting at 0
    energy: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    temperature: np.ndarray
    step: np.ndarray
    positions: np.ndarray
    species: np.ndarray
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None  # (n_frames, 3, 3) eV/Å³, NaN where unknown
    group: list | None = None  # (n_frames,) group label of every frame

    def __len__(self) -> int:
        return len(self.atom_offset) - 1

    def frame(self, f: int) -> Frame:
        a0, a1 = int(self.atom_offset[f]), int(self.atom_offset[f + 1])
        return Frame(
            positions=self.positions[a0:a1], species=self.species[a0:a1], cell=self.cell[f],
            pbc=self.pbc[f], energy=float(self.energy[f]),
            forces=None if self.forces is None else self.forces[a0:a1],
            temperature=float(self.temperature[f]), step=int(self.step[f]),
            stress=(None if self.stress is None or not np.isfinite(self.stress[f]).all() else self.stress[f]),
            group="" if self.group is None else self.group[f],
        )


def stresses_of(frames) -> np.ndarray:
    """The frames' stresses (n_frames, 3, 3) eV/Å³, NaN where a frame has none."""
    return np.array([np.full((3, 3), np.nan) if f.stress is None else f.stress for f in frames],
                    np.float64).reshape(-1, 3, 3)
