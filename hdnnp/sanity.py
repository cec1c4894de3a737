"""Physical sanity checks on frames: close contacts, energy jumps, force/energy consistency.

These checks only *warn*: data from other programs is often right in ways a heuristic cannot
know. Each check is a library function returning structured findings; :class:`FrameChecker`
runs them in a stream (one frame at a time, memory independent of the number of atoms seen)
and :func:`check_frames` / :func:`check_frame_set` turn the findings into warning lines.

Units: Å, eV, eV/Å throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy.spatial import cKDTree

#: Default distance below which two atoms are reported as a close contact (Å). The shortest
#: bond in nature (H2) is 0.74 Å; anything closer is a broken frame or wrong units/cell.
DEFAULT_CLOSE_CONTACT_ANGSTROM = 0.6

#: Default factor for energy jumps: a jump is reported when it exceeds this many times the
#: median absolute consecutive difference (see :func:`energy_jumps`).
DEFAULT_ENERGY_JUMP_FACTOR = 20.0

#: Energy differences (eV per box) below this are too small to give a sign to in
#: :func:`force_energy_consistency`.
DEFAULT_ENERGY_SIGN_TOLERANCE_EV = 1e-6


# --- geometry that no physical frame has (errors, not warnings) -------------------------------

#: Number density (atoms/Å³) beyond which a frame is refused: diamond has 0.18, the densest
#: elements about 0.2; 1.0 means lengths in the wrong unit or a broken cell.
MAX_NUMBER_DENSITY = 1.0
#: Atoms closer than this (Å) are coincident: a broken frame (the H2 bond is 0.74 Å).
COINCIDENT_ANGSTROM = 0.1


def geometry_error(positions, cell, pbc) -> str | None:
    """Why a frame cannot be physical (absurd density, coordinates far outside the periodic
    cell, coincident atoms), or None. The density is checked first, so the pair search that
    follows is bounded."""
    positions = np.asarray(positions, float)
    cell = np.asarray(cell, float).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    n = len(positions)
    if n == 0:
        return None
    if not np.all(np.isfinite(positions)) or not np.all(np.isfinite(cell)):
        return "non-finite coordinates or cell"
    if pbc.any():
        volume = abs(np.linalg.det(cell))
        if volume < 1e-12:
            return "a periodic cell of zero volume"
        if pbc.all() and n / volume > MAX_NUMBER_DENSITY:
            return (f"{n / volume:.3g} atoms/Å³ ({n} atoms in {volume:.3g} Å³), more than {MAX_NUMBER_DENSITY:g}; "
                    "are the lengths in the wrong unit or the cell broken?")
        frac = np.linalg.solve(cell.T, positions.T).T
        from hdnnp.neighbors import MAX_CELLS_AWAY

        away = np.abs(np.where(pbc, frac, 0.0)).max()
        if away > MAX_CELLS_AWAY:
            k = int(np.argmax(np.abs(np.where(pbc, frac, 0.0)).max(axis=1)))
            return f"atom {k} lies {away:.3g} cell lengths outside the cell"
    contacts = close_contacts(positions, cell, pbc, COINCIDENT_ANGSTROM)
    if contacts:
        c = contacts[0]
        return (f"atoms {c.i} and {c.j} are {c.distance_angstrom:.3g} Å apart (coincident; "
                f"{len(contacts)} such pairs)")
    return None


# --- close contacts --------------------------------------------------------------------------

@dataclass(frozen=True)
class CloseContact:
    """Atoms ``i`` and ``j`` (``j`` shifted by ``shift`` cell vectors) closer than the threshold.

    ``i == j`` with a non-zero shift means an atom is close to its own periodic image
    (a cell narrower than the threshold).
    """

    i: int
    j: int
    distance_angstrom: float
    shift: tuple[int, int, int]


def _cell_widths(cell: np.ndarray) -> np.ndarray:
    """Perpendicular widths of the cell, d_k = V / |a_l x a_m| (Å), for (k, l, m) cyclic."""
    volume = abs(np.linalg.det(cell))
    cross = np.array([np.cross(cell[1], cell[2]), np.cross(cell[2], cell[0]),
                      np.cross(cell[0], cell[1])])
    return volume / np.linalg.norm(cross, axis=1)


def close_contacts(positions, cell, pbc, threshold_angstrom: float = DEFAULT_CLOSE_CONTACT_ANGSTROM
                   ) -> list[CloseContact]:
    """All atom pairs (every periodic image counted) closer than ``threshold_angstrom``.

    For periodic directions, positions are wrapped into the cell (fractional s in [0, 1)), so
    the fractional difference of two atoms lies in (-1, 1) and every image closer than t is
    among the shifts |n_k| <= ceil(t / d_k), with d_k the perpendicular width of the cell
    along k. Each unordered pair (i, j, image) is reported once, sorted by distance. Works for
    triclinic cells and cells narrower than the threshold (self-images are then reported).
    Coincident atoms (distance 0, e.g. a duplicated atom) are reported too, which is why this
    does not use :func:`hdnnp.neighbors.neighbor_list` (it skips R = 0 by design).
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    n = len(positions)
    if n == 0:
        return []
    t = float(threshold_angstrom)
    shifts = np.zeros((1, 3), int)
    if pbc.any():
        if abs(np.linalg.det(cell)) < 1e-12:
            raise ValueError("periodic boundary conditions need a cell with non-zero volume")
        margin = t / _cell_widths(cell)
        frac = np.linalg.solve(cell.T, positions.T).T
        frac[:, pbc] -= np.floor(frac[:, pbc])
        positions = frac @ cell
        n_images = np.where(pbc, np.ceil(margin).astype(int), 0)
        ranges = [np.arange(-k, k + 1) for k in n_images]
        shifts = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1).T
        # Keep one of each pair of opposite shifts: the zero shift, and shifts whose first
        # non-zero component is positive (pair (i, j, +n) is pair (j, i, -n)).
        first_nonzero = np.array([s[np.flatnonzero(s)[0]] if s.any() else 0 for s in shifts])
        shifts = shifts[first_nonzero >= 0]
    # Image j + n can only be within t of an atom in the cell if its fractional coordinates
    # lie within t / d_k of [0, 1) along every periodic direction k.
    image_shift, image_atom = [], []
    for s_index, shift in enumerate(shifts):
        if shift.any():
            shifted = frac[:, pbc] + shift[pbc]
            near = np.all((shifted > -margin[pbc]) & (shifted < 1.0 + margin[pbc]), axis=1)
            atoms = np.flatnonzero(near)
        else:
            atoms = np.arange(n)
        image_shift.append(np.full(len(atoms), s_index))
        image_atom.append(atoms)
    image_shift = np.concatenate(image_shift)
    image_atom = np.concatenate(image_atom)
    images = positions[image_atom] + shifts[image_shift] @ cell
    pairs = cKDTree(positions).sparse_distance_matrix(cKDTree(images), t, output_type="ndarray")
    i = pairs["i"].astype(int)
    s_index = image_shift[pairs["j"]]
    j = image_atom[pairs["j"]]
    zero = ~shifts[s_index].any(axis=1)
    keep = ~zero | (i < j)
    contacts = [CloseContact(int(a), int(b), float(d), tuple(int(x) for x in shifts[s]))
                for a, b, d, s in zip(i[keep], j[keep], pairs["v"][keep], s_index[keep])]
    return sorted(contacts, key=lambda c: (c.distance_angstrom, c.i, c.j))


# --- energy jumps ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EnergyJump:
    """Between positions ``index - 1`` and ``index`` of the sequence the energy per atom
    changed by ``jump_ev_per_atom``, ``ratio`` times the typical change."""

    index: int
    jump_ev_per_atom: float
    ratio: float


def energy_jumps(energy_per_atom, factor: float = DEFAULT_ENERGY_JUMP_FACTOR) -> list[EnergyJump]:
    """Consecutive changes of the energy per atom far larger than the typical change.

    With d_k = e_k - e_(k-1) (eV/atom) and the robust scale
    s = median_k |d_k| (the median absolute consecutive difference), a jump is reported where
    |d_k| > factor * s. The median is insensitive to the jumps themselves (up to half of the
    differences may be outliers). For Gaussian fluctuations |d| / s exceeds 6.7 about once in
    20 000 frames, so the default factor 20 flags only breaks: a frame from another system,
    a wrong energy unit for part of a file, a restart from a different state. A single bad frame
    gives two jumps (into and out of it). NaN energies are skipped (their neighbours are
    compared directly); fewer than 3 finite values give no findings. If s = 0 (energies
    constant except for jumps), any non-zero change is a jump (ratio = inf).
    """
    e = np.asarray(energy_per_atom, dtype=float).ravel()
    index = np.flatnonzero(np.isfinite(e))
    if len(index) < 3:
        return []
    d = np.diff(e[index])
    scale = float(np.median(np.abs(d)))
    if scale > 0:
        ratio = np.abs(d) / scale
    else:
        ratio = np.where(d != 0, np.inf, 0.0)
    flagged = np.flatnonzero(ratio > factor)
    return [EnergyJump(int(index[k + 1]), float(d[k]), float(ratio[k])) for k in flagged]


# --- forces against finite differences of energies -------------------------------------------

@dataclass(frozen=True)
class ForceEnergyPair:
    """One pair of consecutive frames: the energy change and the change the forces predict.

    ``agree`` is None when either change is below the tolerance (no sign to compare).
    """

    delta_energy_ev: float
    predicted_delta_energy_ev: float
    agree: bool | None


def minimum_image_displacement(positions_a, positions_b, cell, pbc) -> np.ndarray:
    """r_b - r_a per atom, with each periodic component of the fractional displacement
    wrapped to [-1/2, 1/2) (undoes wrapping of atoms that crossed the cell boundary;
    assumes no atom moved more than half a cell)."""
    delta = np.asarray(positions_b, float) - np.asarray(positions_a, float)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not pbc.any():
        return delta
    cell = np.asarray(cell, float).reshape(3, 3)
    frac = np.linalg.solve(cell.T, delta.T).T
    frac[:, pbc] -= np.round(frac[:, pbc])
    return frac @ cell


def force_energy_consistency(positions_a, positions_b, forces_a, forces_b, energy_a_ev: float,
                             energy_b_ev: float, cell=None, pbc=(False, False, False),
                             tolerance_ev: float = DEFAULT_ENERGY_SIGN_TOLERANCE_EV
                             ) -> ForceEnergyPair:
    """Compare E_b - E_a with the work of the forces along the straight path a -> b.

    Since F = -dE/dr, to second order in the displacement (trapezoid rule)::

        E_b - E_a ≈ -1/2 * sum_i (F_a,i + F_b,i) . (r_b,i - r_a,i)

    (eV, with F in eV/Å and r in Å; displacements by minimum image when periodic). The two
    must have the same sign when the frames are close (consecutive MD steps); forces with the
    wrong sign convention (gradients instead of forces) disagree nearly always, and a wrong
    force unit shows as a ratio far from 1. Optional check: meaningless for frames far apart.
    """
    delta_r = minimum_image_displacement(positions_a, positions_b, cell if cell is not None
                                         else np.eye(3), pbc)
    mean_force = 0.5 * (np.asarray(forces_a, float) + np.asarray(forces_b, float))
    predicted = -float(np.sum(mean_force * delta_r))
    delta_e = float(energy_b_ev) - float(energy_a_ev)
    if abs(delta_e) < tolerance_ev or abs(predicted) < tolerance_ev:
        agree = None
    else:
        agree = bool(np.sign(delta_e) == np.sign(predicted))
    return ForceEnergyPair(delta_e, predicted, agree)


# --- streaming checker -----------------------------------------------------------------------

@dataclass
class _Sequence:
    """Per-source state: energies per atom in order, and the previous frame for ΔE checks."""

    energy_per_atom: list = field(default_factory=list)
    frame_index: list = field(default_factory=list)
    step: list = field(default_factory=list)
    previous: object = None


class FrameChecker:
    """Run the sanity checks on frames one at a time; ``warnings()`` at the end.

    ``add(frame, index)`` takes a :class:`hdnnp.frames.Frame`. Close contacts are checked per
    frame; energy jumps per source (file) in the order frames were added, so that interleaved
    temperatures are not compared with each other; the force/energy sign check (optional,
    ``check_force_signs``) on consecutive frames of one source with the same species; it warns
    when more than ``sign_disagreement_fraction`` of the pairs with a definite sign disagree
    (noise and frames far apart give about half; a sign error nearly all).
    Memory: a few numbers per frame (energies), the previous frame per source.
    """

    def __init__(self, close_contact_angstrom: float | None = DEFAULT_CLOSE_CONTACT_ANGSTROM,
                 energy_jump_factor: float | None = DEFAULT_ENERGY_JUMP_FACTOR,
                 check_force_signs: bool = False, max_listed: int = 5,
                 sign_disagreement_fraction: float = 0.75):
        self.close_contact_angstrom = close_contact_angstrom
        self.energy_jump_factor = energy_jump_factor
        self.check_force_signs = check_force_signs
        self.max_listed = max_listed
        self.sign_disagreement_fraction = sign_disagreement_fraction
        self.n_frames = 0
        self.contact_frames: list[tuple[int, str, int, CloseContact, int]] = []
        self.n_contact_frames = 0
        self.sequences: dict[str, _Sequence] = {}
        self.sign_pairs = 0
        self.n_sign_disagree = 0
        self.first_sign_disagree: tuple[str, int, int, ForceEnergyPair] | None = None

    def add(self, frame, index: int | None = None) -> None:
        index = self.n_frames if index is None else index
        self.n_frames += 1
        source = frame.source or f"T={frame.temperature:g} K"
        if self.close_contact_angstrom:
            contacts = close_contacts(frame.positions, frame.cell, frame.pbc,
                                      self.close_contact_angstrom)
            if contacts:
                self.n_contact_frames += 1
                if len(self.contact_frames) < self.max_listed:
                    self.contact_frames.append((index, source, frame.step, contacts[0], len(contacts)))
        seq = self.sequences.setdefault(source, _Sequence())
        n_atoms = len(frame.species)
        if n_atoms and math.isfinite(frame.energy):
            seq.energy_per_atom.append(frame.energy / n_atoms)
            seq.frame_index.append(index)
            seq.step.append(frame.step)
        if self.check_force_signs:
            prev = seq.previous
            if (prev is not None and prev.forces is not None and frame.forces is not None
                    and math.isfinite(prev.energy) and math.isfinite(frame.energy)
                    and np.array_equal(prev.species, frame.species)):
                pair = force_energy_consistency(prev.positions, frame.positions, prev.forces,
                                                frame.forces, prev.energy, frame.energy,
                                                frame.cell, frame.pbc)
                if pair.agree is not None:
                    self.sign_pairs += 1
                    if not pair.agree:
                        self.n_sign_disagree += 1
                        if self.first_sign_disagree is None:
                            self.first_sign_disagree = (source, prev.step, frame.step, pair)
            seq.previous = frame

    def add_chunk(self, chunk, first_frame: int = 0, source_names=None) -> None:
        """Add every frame of a :class:`hdnnp.frames.FrameChunk`; ``source_names``: one name per
        frame of the chunk (optional)."""
        for f in range(len(chunk)):
            frame = chunk.frame(f)
            if source_names is not None:
                frame.source = str(source_names[f])
            self.add(frame, first_frame + f)

    def warnings(self) -> list[str]:
        """One line per finding kind, listing the first few instances."""
        out = []
        if self.n_contact_frames:
            listed = "; ".join(
                f"frame {idx} ({src}, step {step}): atoms {c.i}-{c.j} at {c.distance_angstrom:.3f} Å"
                + (f" (image {c.shift})" if any(c.shift) else "")
                + (f", {n - 1} more pairs" if n > 1 else "")
                for idx, src, step, c, n in self.contact_frames)
            out.append(f"{self.n_contact_frames} of {self.n_frames} frames have atoms closer than "
                       f"{self.close_contact_angstrom} Å: {listed}")
        if self.energy_jump_factor:
            for source, seq in self.sequences.items():
                jumps = energy_jumps(seq.energy_per_atom, self.energy_jump_factor)
                if jumps:
                    listed = "; ".join(
                        f"frame {seq.frame_index[j.index]} (step {seq.step[j.index]}): "
                        f"{j.jump_ev_per_atom * 1e3:+.3g} meV/atom ({j.ratio:.0f}x typical)"
                        for j in jumps[: self.max_listed])
                    out.append(f"{source}: {len(jumps)} jumps of the energy per atom between "
                               f"consecutive frames larger than {self.energy_jump_factor:g}x the "
                               f"median change: {listed}")
        if self.check_force_signs and self.sign_pairs:
            n_bad = self.n_sign_disagree
            if n_bad > self.sign_disagreement_fraction * self.sign_pairs:
                src, s0, s1, p = self.first_sign_disagree
                out.append(
                    f"forces disagree in sign with energy differences for {n_bad} of "
                    f"{self.sign_pairs} consecutive frame pairs (e.g. {src} steps {s0}->{s1}: "
                    f"dE = {p.delta_energy_ev:.4g} eV, -<F>.dr = {p.predicted_delta_energy_ev:.4g} eV);"
                    f" check the sign and unit of the forces, or whether frames are too far apart")
        return out


def check_frames(frames: Iterable, **options) -> list[str]:
    """Warnings for an iterable of :class:`hdnnp.frames.Frame` (options of :class:`FrameChecker`)."""
    checker = FrameChecker(**options)
    for index, frame in enumerate(frames):
        checker.add(frame, index)
    return checker.warnings()


def check_frame_set(group, chunk_frames: int = 256, **options) -> list[str]:
    """Warnings for a frame set stored in HDF5 (``<set>`` group of prepared/symmetry.h5),
    read in chunks of ``chunk_frames`` frames."""
    from hdnnp.h5io import iter_frame_chunks, read_strings

    checker = FrameChecker(**options)
    sources = read_strings(group["sources"]) if "sources" in group else None
    source_ds = group["frames/source"] if "frames/source" in group else None
    for first, chunk in iter_frame_chunks(group, chunk_frames):
        names = None
        if sources is not None and source_ds is not None:
            names = [sources[int(k)] for k in source_ds[first:first + len(chunk)]]
        checker.add_chunk(chunk, first, names)
    return checker.warnings()
