"""Periodic neighbour lists: every image of every atom within the cutoff radius.

Works for orthorhombic and triclinic cells, for cells smaller than 2·Rc (several images of the
same atom, and images of the central atom itself, are all listed) and for non-periodic
directions (no images along them). Linear in the number of atoms: atoms are wrapped into the
cell, only the images within Rc of the cell (a skin of fractional width Rc/d_k, d_k the
distance between lattice planes k) are generated, and a k-d tree (``scipy.spatial.cKDTree``)
finds the candidate pairs. Pairs are kept when R² <= Rc² (squared distances compared first, the
square root is taken only for kept pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hdnnp.errors import HdnnpError


#: Bound on periodic images x atoms generated for one frame (~1 GB of temporaries); beyond it
#: the cell is absurdly small for the cutoff.
MAX_IMAGE_ATOMS = 20_000_000
#: Fractional coordinates beyond this many cells from the cell: wrapping them would lose the
#: precision that neighbour distances need (1e4 cells of 10 Å keep ~1e-11 Å).
MAX_CELLS_AWAY = 1.0e4


@dataclass
class NeighborList:
    """Full (both directions) list of neighbour entries, sorted by central atom ``i``.

    Entry ``p``: central atom ``i[p]``, neighbour atom ``j[p]`` in the image translated by
    ``shift[p] @ cell`` (integer lattice vector), ``vector[p] = r_j + shift·cell − r_i`` (Å)
    and ``distance[p] = |vector[p]|`` (Å), ``0 < distance <= cutoff``. Entries of atom i are
    ``start[i]:start[i+1]``.
    """

    i: np.ndarray  # (n_entries,) int64
    j: np.ndarray  # (n_entries,) int64
    shift: np.ndarray  # (n_entries, 3) int64
    vector: np.ndarray  # (n_entries, 3) Å
    distance: np.ndarray  # (n_entries,) Å
    start: np.ndarray  # (n_atoms + 1,) int64
    cutoff: float

    def __len__(self) -> int:
        return len(self.i)


def plane_spacings(cell) -> np.ndarray:
    """Distances d_k (Å) between neighbouring lattice planes spanned by the other two vectors:
    (3,) for a cell (3, 3), (F, 3) for cells (F, 3, 3)."""
    cell = np.asarray(cell, float)
    volume = np.abs(np.linalg.det(cell))
    a, b, c = cell[..., 0, :], cell[..., 1, :], cell[..., 2, :]
    cross = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=-2)
    return np.asarray(volume)[..., None] / np.linalg.norm(cross, axis=-1)


def periodic_geometry(positions, cell, pbc, cutoff: float):
    """Checked geometry of a frame periodic in some direction (:func:`periodic_geometry_batch`
    of one frame): fractional coordinates (n, 3), wrapping offsets (n, 3) and the reach (3,);
    None for a frame without atoms."""
    if len(positions) == 0:
        return None
    frac, offset, reach = periodic_geometry_batch(np.asarray(positions, float), [0, len(positions)],
                                                  np.asarray(cell, float).reshape(1, 3, 3),
                                                  np.broadcast_to(np.asarray(pbc, bool), (1, 3)), cutoff)
    return frac, offset, reach[0]


def periodic_geometry_batch(positions, atom_first, cells, pbc, cutoff: float):
    """Checked geometry of frames periodic in some direction, all at once.

    ``positions`` (N, 3) Å of the frames' atoms, frame f's being ``atom_first[f]`` ..
    ``atom_first[f + 1]`` − 1; ``cells`` (F, 3, 3); ``pbc`` (F, 3). Returns the fractional
    coordinates (N, 3), the integer offsets (N, 3) that wrap them into [0, 1) along the periodic
    directions (0 along the others, where atoms are neither wrapped nor imaged: the lattice
    vector there only needs to be non-degenerate), and the reach Rc / d_k (F, 3) per direction
    (0 where not periodic), d_k the lattice plane spacings. A singular cell, a cell far too small
    for the cutoff, or atoms absurdly far outside the cell raise :class:`HdnnpError`.
    """
    cells = np.asarray(cells, float).reshape(-1, 3, 3)
    pbc = np.asarray(pbc, bool).reshape(-1, 3)
    n_per = np.diff(np.asarray(atom_first, np.int64))
    if np.any(np.abs(np.linalg.det(cells)) < 1e-12):
        raise HdnnpError("periodic frame with a singular (zero-volume) cell")
    spacing = plane_spacings(cells)
    reach = np.where(pbc, cutoff / spacing, 0.0)  # fractional skin width per direction
    n_cells = np.prod(2 * np.ceil(reach) + 1, axis=1).astype(np.int64)
    bad = np.flatnonzero(n_cells * n_per > MAX_IMAGE_ATOMS)
    if len(bad):
        k = bad[0]
        raise HdnnpError(f"the cell (plane spacings {', '.join(f'{d:.3g}' for d in spacing[k])} Å) is far too "
                         f"small for the cutoff {cutoff:g} Å: {n_cells[k]} periodic images of {n_per[k]} atoms; "
                         "are the lengths in the wrong unit?")
    positions = np.asarray(positions, float)
    if len(cells) == 1:
        frac = np.linalg.solve(cells[0].T, positions.T).T
    else:
        frame_of = np.repeat(np.arange(len(cells)), n_per)
        frac = np.einsum("na,nab->nb", positions, np.linalg.inv(cells)[frame_of])
    periodic = np.repeat(pbc, n_per, axis=0)
    away = np.abs(np.where(periodic, frac, 0.0)).max(initial=0.0)
    if away > MAX_CELLS_AWAY:
        raise HdnnpError(f"an atom lies {away:.3g} cell lengths outside the cell: broken coordinates")
    return frac, np.where(periodic, -np.floor(frac), 0.0).astype(np.int64), reach


def neighbor_list(positions, cell, pbc, cutoff: float) -> NeighborList:
    """All pairs (i, image of j) with 0 < |r_j + n·cell − r_i| <= ``cutoff``.

    ``positions`` (n, 3) Å; ``cell`` (3, 3) rows a, b, c in Å (ignored along non-periodic
    directions, may be zero when no direction is periodic); ``pbc`` (3,) bool or a single bool.
    """
    positions = np.ascontiguousarray(positions, dtype=float)
    n_atoms = len(positions)
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,)).copy()
    cell = np.asarray(cell, float).reshape(3, 3)
    cutoff = float(cutoff)
    empty = NeighborList(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64),
                         np.zeros((0, 3)), np.zeros(0), np.zeros(n_atoms + 1, np.int64), cutoff)
    if n_atoms == 0:
        return empty

    if pbc.any():
        frac, offset, reach = periodic_geometry(positions, cell, pbc, cutoff)
        frac_wrapped = frac + offset
        n_images = np.ceil(reach).astype(np.int64)
        ranges = [np.arange(-n, n + 1) for n in n_images]
        shifts = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
        # images of every atom whose fractional coordinates lie within the skin of the cell
        img_frac = frac_wrapped[None, :, :] + shifts[:, None, :]
        lo, hi = -reach - 1e-9, 1.0 + reach + 1e-9
        inside = np.all(~pbc | ((img_frac >= lo) & (img_frac <= hi)), axis=2)
        s_idx, j_idx = np.nonzero(inside)
        wrapped = positions + offset @ cell
        img_pos = wrapped[j_idx] + shifts[s_idx] @ cell
        img_shift = shifts[s_idx] + offset[j_idx]  # lattice shift relative to the input positions
    else:
        offset = np.zeros((n_atoms, 3), np.int64)
        wrapped = positions
        j_idx = np.arange(n_atoms)
        img_pos = positions
        img_shift = np.zeros((n_atoms, 3), np.int64)

    # a hair over Rc so that no pair at R <= Rc is lost to rounding; the exact test is R² <= Rc²
    found = cKDTree(wrapped).sparse_distance_matrix(cKDTree(img_pos), cutoff * (1.0 + 1e-12),
                                                    output_type="ndarray")
    if len(found) == 0:
        return empty
    order = np.argsort(found["i"] * len(img_pos) + found["j"], kind="stable")
    i = found["i"][order].astype(np.int64)
    k = found["j"][order].astype(np.int64)
    vector = img_pos[k] - wrapped[i]
    r2 = np.einsum("pd,pd->p", vector, vector)
    keep = (r2 <= cutoff * cutoff) & (r2 > 0.0)
    i, k, vector, r2 = i[keep], k[keep], vector[keep], r2[keep]
    j = j_idx[k]
    shift = img_shift[k] - offset[i]
    start = np.zeros(n_atoms + 1, np.int64)
    np.cumsum(np.bincount(i, minlength=n_atoms), out=start[1:])
    return NeighborList(i=i, j=j, shift=shift, vector=vector, distance=np.sqrt(r2), start=start,
                        cutoff=cutoff)
