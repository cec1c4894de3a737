"""Training frames whose descriptors stay on disk: memory independent of the data size.

:class:`StreamedData` stands in for :class:`~hdnnp.training.loss.TrainingData` when the training
set of symmetry.h5 does not fit the memory budget (``hdnnp train --stream``). It holds in memory
only what grows with the number of frames or atoms by a few numbers each — energies, atom and
row offsets, reference forces and the force mask (4 numbers per atom, against 3 × n_features per
derivative pair on disk) — and reads the descriptors, their derivatives and strain derivatives of
the frames a step needs when the optimiser asks for them:

* ``frame_range(a, b)`` (EKF: one frame at a time; the loss in blocks of frames) and
  ``subset(frames)`` (Adam's mini-batches) return ordinary in-memory ``TrainingData``;
* :func:`hdnnp.training.loss.evaluate` walks a streamed set in blocks of
  ``stream_block`` frames (full-batch L-BFGS and the per-epoch errors), never all at once.

The batches are the very arrays the in-memory path would hold (same rows and pairs in the same
order, the same force mask drawn by :func:`draw_force_mask`), so a streamed run follows the
in-memory one: the EKF and Adam bit for bit, L-BFGS to the rounding of a blocked sum
(``tests/test_streamed_training.py``). The file must stay open (and unchanged) while training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hdnnp.elements import symbol
from hdnnp.training.loss import ElementBlock, TrainingData, _np, frame_ranges

#: Frames per block when a streamed set is evaluated as a whole (without --batch-boxes) or
#: checked: the default, and the memory that :func:`block_frames` aims a block at.
STREAM_BLOCK_FRAMES = 64
STREAM_BLOCK_MIB = 64.0


def block_frames(mib_per_frame: float) -> int:
    """Frames per block so that a block's descriptors take about :data:`STREAM_BLOCK_MIB`."""
    return max(1, min(STREAM_BLOCK_FRAMES, int(STREAM_BLOCK_MIB / max(mib_per_frame, 1e-9))))


def draw_force_mask(atom_offset: np.ndarray, force_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The atoms whose forces enter the loss: ceil(``force_fraction`` · N_b) random atoms of
    every box b, drawn frame by frame from ``rng`` (bool over all atoms of the set)."""
    n_atoms = np.diff(atom_offset)
    mask = np.zeros(int(atom_offset[-1]), bool)
    for f in range(len(n_atoms)):
        k = max(1, math.ceil(force_fraction * n_atoms[f]))
        mask[atom_offset[f] + rng.choice(n_atoms[f], size=k, replace=False)] = True
    return mask


@dataclass
class _Offsets:
    """Per-element offsets of the stored set (all frames): rows and derivative pairs per frame."""

    rows: np.ndarray  # (n_stored + 1,)
    pairs: np.ndarray | None  # (n_stored + 1,) or None without derivatives
    virial: bool


class StreamedData(TrainingData):
    """A :class:`TrainingData` whose element blocks are read from symmetry.h5 on demand.

    ``group``: the open ``train`` group; ``frames``: the stored frames it covers (sorted);
    ``forces``/``force_mask`` of those frames' atoms and ``energy``, ``virial_ref`` per frame are
    held (and may be adjusted, e.g. by a baseline, before training). ``blocks`` hold only the
    row offsets (for the element counts); the descriptor arrays are None.
    """

    streamed = True

    def __init__(self, group, elements, frames, with_forces: bool, mask_stored, with_stress: bool,
                 energy, forces, virial_ref, temperature, stream_block: int = STREAM_BLOCK_FRAMES):
        self._group = group
        self._stored_atom_offset = group["frames/atom_offset"][:].astype(np.int64)
        self._stored_frames = np.asarray(frames, np.int64)
        n_atoms = np.diff(self._stored_atom_offset)[self._stored_frames]
        atom_offset = np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64)
        self._offsets = {}
        blocks = {}
        for z in elements:
            if f"features/{symbol(z)}" not in group:
                continue
            g = group[f"features/{symbol(z)}"]
            rows = g["frame_offset"][:].astype(np.int64)
            pairs = g["dG/frame_offset"][:].astype(np.int64) if with_forces else None
            self._offsets[z] = _Offsets(rows, pairs, with_stress)
            n_rows_f = np.diff(rows)[self._stored_frames]
            # light blocks: counts for the statistics, flags for has_forces / has_stress
            blocks[z] = ElementBlock(values=None, row_frame=None, atom_index=None,
                                     row_offset=np.concatenate([[0], np.cumsum(n_rows_f)]).astype(np.int64),
                                     pair_row=np.zeros(0, np.int64) if with_forces else None,
                                     virial=np.zeros((0,)) if with_stress else None)
        atoms = frame_ranges(self._stored_atom_offset, self._stored_frames)
        super().__init__(elements=tuple(sorted(blocks)), energy=energy, n_atoms=n_atoms, atom_offset=atom_offset,
                         blocks=blocks, forces=forces,
                         force_mask=None if mask_stored is None else mask_stored[atoms],
                         frame_index=self._stored_frames, temperature=temperature, virial_ref=virial_ref)
        self.stream_block = int(stream_block)

    # -- what the optimisers ask for ---------------------------------------------------------

    def frame_range(self, start: int, stop: int) -> TrainingData:
        return self._read(np.arange(start, stop))

    def subset(self, frames) -> TrainingData:
        frames = np.asarray(frames, np.int64)
        order = np.argsort(frames, kind="stable")
        data = self._read(frames[order])
        return data if np.all(order == np.arange(len(order))) else data.subset(np.argsort(order))

    def to(self, xp) -> "StreamedData":
        """Batches are moved to ``xp`` as they are read; the held arrays move now."""
        out = self.__class__.__new__(self.__class__)
        out.__dict__.update(self.__dict__)
        conv = xp.asarray
        out.xp = xp
        out.energy = conv(self.energy)
        out.forces = None if self.forces is None else conv(self.forces)
        out.force_mask = None if self.force_mask is None else conv(self.force_mask)
        out.virial_ref = None if self.virial_ref is None else conv(self.virial_ref)
        return out

    def nbytes(self) -> int:
        return 0  # nothing of the descriptors is held

    # -- reading -------------------------------------------------------------------------------

    def _read(self, local) -> TrainingData:
        """Frames ``local`` (sorted indices into this set) as in-memory TrainingData."""
        local = np.asarray(local, np.int64)
        stored = self._stored_frames[local]
        n_at = self.n_atoms[local]
        new_atom = np.concatenate([[0], np.cumsum(n_at)]).astype(np.int64)
        # contiguous runs of stored frames: one read each
        breaks = np.flatnonzero(np.diff(stored) != 1) + 1
        runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(stored, breaks)] if len(stored) else []
        atom_local = frame_ranges(self.atom_offset, local)
        mask = None if self.force_mask is None else _np(self.force_mask)[atom_local]
        blocks = {}
        for z, off in self._offsets.items():
            g = self._group[f"features/{symbol(z)}"]
            n_rows_f = off.rows[stored + 1] - off.rows[stored]
            new_row = np.concatenate([[0], np.cumsum(n_rows_f)]).astype(np.int64)
            row_frame = np.repeat(np.arange(len(local)), n_rows_f)
            read = (lambda name, o: np.concatenate([g[name][o[a]:o[b]] for a, b in runs]) if runs
                    else g[name][0:0])
            values = read("values", off.rows)
            shift_atom = self._stored_atom_offset[stored] - new_atom[:-1]  # per batch frame
            kw = dict(values=values, row_frame=row_frame,
                      atom_index=read("atom_index", off.rows).astype(np.int64) - shift_atom[row_frame],
                      row_offset=new_row)
            if off.pairs is not None:
                n_pairs_f = off.pairs[stored + 1] - off.pairs[stored]
                pair_frame = np.repeat(np.arange(len(local)), n_pairs_f)
                atom = read("dG/atom", off.pairs).astype(np.int64) - shift_atom[pair_frame]
                row = (read("dG/center", off.pairs).astype(np.int64)
                       - (off.rows[stored] - new_row[:-1])[pair_frame])
                keep = mask[atom] if mask is not None else np.ones(len(atom), bool)
                counts = np.bincount(pair_frame[keep], minlength=len(local))
                dvalues = read("dG/values", off.pairs)
                kw.update(pair_row=row[keep], pair_atom=atom[keep],
                          dvalues=dvalues if keep.all() else dvalues[keep],
                          pair_offset=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
            if off.virial:
                kw["virial"] = read("virial", off.rows)
            blocks[z] = ElementBlock(**kw)
        xp = self.xp
        data = TrainingData(
            elements=self.elements, energy=self.energy[xp.asarray(local)], n_atoms=n_at, atom_offset=new_atom,
            blocks=blocks, forces=None if self.forces is None else self.forces[xp.asarray(atom_local)],
            force_mask=None if self.force_mask is None else self.force_mask[xp.asarray(atom_local)],
            frame_index=stored, temperature=None if self.temperature is None else self.temperature[local],
            virial_ref=None if self.virial_ref is None else self.virial_ref[xp.asarray(local)])
        if xp is not np:
            data = data.to(xp)
        return data
