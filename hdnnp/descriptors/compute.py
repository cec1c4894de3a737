"""Descriptors of one configuration: raw candidate values, selected and scaled features, derivatives.

Usable without the CLI::

    from hdnnp.descriptors import FeatureSet, compute_raw, compute_descriptors, descriptors_of_atoms
    fs = FeatureSet.default([52])                     # the seed's 84 candidates for Te
    raw = compute_raw(positions, cell, [True] * 3, species, fs)          # (n_atoms, 84)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdnnp.descriptors.symmetry_functions import (ColumnPlan, pair_derivatives, segment_sum,
                                                   symmetry_functions_numpy)
from hdnnp.errors import HdnnpError
from hdnnp.neighbors import neighbor_list


@dataclass
class ElementDescriptors:
    """Scaled features of the atoms of one element in one configuration.

    ``atom_index`` (n_el,) atoms of this element in the frame; ``values`` (n_el, n_sel) scaled
    to [-1, 1] by the training range; with derivatives: ``pair_row`` (n_pairs,) row into
    ``values`` (central atom i), ``pair_atom`` (n_pairs,) atom j in the frame, ``dvalues``
    (n_pairs, n_sel, 3) = ∂G'_i/∂r_j (Å⁻¹; all images of j summed, j = i included).
    """

    atom_index: np.ndarray
    values: np.ndarray
    pair_row: np.ndarray | None = None
    pair_atom: np.ndarray | None = None
    dvalues: np.ndarray | None = None


_WARNED_CPU = False


def _raw_entries(positions, cell, pbc, species, feature_set, columns, derivatives, device):
    species = np.asarray(species, np.int64)
    positions = np.asarray(positions, float)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(species) != len(positions):
        raise HdnnpError(f"positions {positions.shape} and species {species.shape} do not match")
    nl = neighbor_list(positions, cell, pbc, feature_set.cutoff)
    plan = ColumnPlan(feature_set, columns)
    plan.species_index(species)  # unknown elements: a clear error
    from hdnnp.kernels import resolve_device

    on_gpu = resolve_device(device) == "gpu"
    if on_gpu and not plan.standard:  # the kernel evaluates hdnnp's own functions only
        global _WARNED_CPU
        if not _WARNED_CPU:
            import warnings

            warnings.warn("the GPU kernel evaluates hdnnp's own symmetry functions only (G2 and G4 with one "
                          "cosine cutoff); these (wide or shifted angular terms, several cutoff radii or another "
                          "cutoff type) are computed on the CPU", stacklevel=3)
            _WARNED_CPU = True
        on_gpu = False
    if on_gpu:
        from hdnnp.kernels.symmetry_gpu import symmetry_functions_gpu

        values, dentry = symmetry_functions_gpu(nl, species, plan, derivatives)
    else:
        values, dentry = symmetry_functions_numpy(nl, species, plan, derivatives)
    return nl, values, dentry


def compute_raw(positions, cell, pbc, species, feature_set, derivatives: bool = False,
                device: str = "cpu", candidates=None):
    """Raw (unselected, unscaled) candidate values of one configuration.

    Returns ``values`` (n_atoms, n_cols) with columns = ``candidates`` (default: all); with
    ``derivatives``: ``(values, pair_i, pair_j, dvalues)``, dvalues (n_pairs, n_cols, 3) =
    ∂G_{pair_i}/∂r_{pair_j} in Å⁻¹, all periodic images of j summed, j = i included.
    """
    columns = np.arange(feature_set.n_candidates) if candidates is None else np.asarray(candidates, np.int64)
    if len(columns) and (columns.min() < 0 or columns.max() >= feature_set.n_candidates):
        raise HdnnpError(f"candidate index out of range 0..{feature_set.n_candidates - 1}")
    nl, values, dentry = _raw_entries(positions, cell, pbc, species, feature_set, columns, derivatives, device)
    if not derivatives:
        return values
    pair_i, pair_j, dvalues = pair_derivatives(nl, dentry, len(values))
    return values, pair_i, pair_j, dvalues


def entry_virials(nl, dentry, n_atoms: int) -> np.ndarray:
    """W_i[c, a, b] = Σ_{p: i(p) = i} R_p,a D[p, c, b] over the neighbour-list entries p (every
    periodic image separately), shape (n_atoms, n_cols, 3, 3).

    ``D[p] = ∂G_i/∂R_p`` are the per-entry derivatives of :func:`symmetry_functions_numpy`
    (R_p = r_j + T_p − r_i). Under a homogeneous strain every R_p becomes (1 + ε) R_p (row
    vectors: R' = R (1 + ε)), so ∂G_ic/∂ε_ab = W_i[c, a, b] (SPEC §9). Per-atom pair
    derivatives cannot give this in cells smaller than 2·Rc, where one atom pair has several
    images with different R_p.
    """
    n_ent, n_cols = dentry.shape[:2]
    outer = nl.vector[:, None, :, None] * dentry[:, :, None, :]  # (n_ent, n_cols, 3, 3)
    return segment_sum(np.ones(n_ent), nl.i, n_atoms, outer.reshape(n_ent, n_cols * 9)).reshape(
        n_atoms, n_cols, 3, 3)


def compute_descriptors(positions, cell, pbc, species, feature_set, derivatives: bool = False,
                        device: str = "cpu", stress: bool = False) -> dict[int, ElementDescriptors]:
    """Selected, scaled features per element (``dict[Z, ElementDescriptors]``) of one configuration.

    Only the candidates selected for some element are computed. Needs a fitted ``feature_set``.
    ``stress`` adds the per-atom strain derivatives ``virial`` (see :class:`ElementDescriptors`;
    needs a cell periodic in all three directions) and implies ``derivatives``.
    """
    if not feature_set.is_fitted:
        raise HdnnpError("the feature set has no selection yet (fit it on training data first)")
    if stress and not np.all(np.broadcast_to(np.asarray(pbc, bool), (3,))):
        raise HdnnpError("the stress needs a cell periodic in all three directions")
    derivatives = derivatives or stress
    species = np.asarray(species, np.int64)
    present = [z for z in feature_set.elements if np.any(species == z)]
    union = np.unique(np.concatenate([feature_set.selected[z] for z in present] or [np.zeros(0, np.int64)]))
    if len(union) and (union.min() < 0 or union.max() >= feature_set.n_candidates):
        raise HdnnpError(f"candidate index out of range 0..{feature_set.n_candidates - 1}")
    nl, values, dentry = _raw_entries(positions, cell, pbc, species, feature_set, union, derivatives, device)
    if derivatives:
        pair_i, pair_j, dvalues = pair_derivatives(nl, dentry, len(values))
    virial = entry_virials(nl, dentry, len(values)) if stress else None
    out = {}
    for z in present:
        atoms = np.nonzero(species == z)[0]
        cols = np.searchsorted(union, feature_set.selected[z])
        desc = ElementDescriptors(atom_index=atoms, values=feature_set.scale(z, values[np.ix_(atoms, cols)]))
        if derivatives:
            row_of_atom = np.full(len(species), -1, np.int64)
            row_of_atom[atoms] = np.arange(len(atoms))
            mask = species[pair_i] == z
            desc.pair_row = row_of_atom[pair_i[mask]]
            desc.pair_atom = pair_j[mask]
            factor = feature_set.derivative_factor(z)
            desc.dvalues = dvalues[mask][:, cols, :] * factor[None, :, None]
            if virial is not None:
                desc.virial = virial[atoms][:, cols] * factor[None, :, None, None]
        out[z] = desc
    return out


def descriptors_of_atoms(atoms, feature_set, derivatives: bool = False, device: str = "cpu", raw: bool = False):
    """Descriptors of an ASE ``Atoms``: scaled per element (default) or ``raw`` candidate values."""
    args = (atoms.get_positions(), atoms.get_cell().array, atoms.get_pbc(), atoms.get_atomic_numbers(), feature_set)
    if raw:
        return compute_raw(*args, derivatives=derivatives, device=device)
    return compute_descriptors(*args, derivatives=derivatives, device=device)
