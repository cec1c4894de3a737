"""Descriptors of one configuration: raw candidate values, selected and scaled features, derivatives.

Usable without the CLI::

    from hdnnp.descriptors import FeatureSet, compute_raw, compute_descriptors, descriptors_of_atoms
    fs = FeatureSet.default([52])                     # the seed's 84 candidates for Te
    raw = compute_raw(positions, cell, [True] * 3, species, fs)          # (n_atoms, 84)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdnnp.descriptors import fast
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
    (n_pairs, n_sel, 3) = ∂G'_i/∂r_j (Å⁻¹; all images of j summed, j = i included); with the
    stress: ``virial`` (n_el, n_sel, 3, 3) = ∂G'_i/∂ε (:func:`entry_virials`, scaled like G').
    """

    atom_index: np.ndarray
    values: np.ndarray
    pair_row: np.ndarray | None = None
    pair_atom: np.ndarray | None = None
    dvalues: np.ndarray | None = None
    virial: np.ndarray | None = None


_WARNED_CPU = False


def _raw_entries(positions, cell, pbc, species, feature_set, columns, derivatives, device, virial=False,
                 deriv_scale=None):
    """Neighbour list, column plan, raw values (n_atoms, n_cols), per-pair derivatives ``(pair_i, pair_j,
    dvalues)`` (with ``derivatives``) and per-atom strain derivatives (with ``virial``), those
    two multiplied by ``deriv_scale`` per column if given: by the GPU kernel, the compiled CPU
    path (:mod:`.fast`) or the NumPy reference."""
    species, nl, plan = _neighbours_and_plan(positions, cell, pbc, species, feature_set, columns)
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
    derivatives = derivatives or virial
    if not on_gpu and fast.AVAILABLE:
        values, pairs, w = fast.symmetry_functions(nl, species, plan, derivatives, virial, deriv_scale)
        return nl, plan, values, pairs, w
    if on_gpu:
        from hdnnp.kernels.symmetry_gpu import symmetry_functions_gpu

        values, dentry = symmetry_functions_gpu(nl, species, plan, derivatives)
    else:
        values, dentry = symmetry_functions_numpy(nl, species, plan, derivatives)
    if deriv_scale is not None and dentry is not None:
        dentry = dentry * np.asarray(deriv_scale)[None, :, None]
    pairs = pair_derivatives(nl, dentry, len(values)) if derivatives else None
    w = entry_virials(nl, dentry, len(values)) if virial else None
    return nl, plan, values, pairs, w


def _neighbours_and_plan(positions, cell, pbc, species, feature_set, columns):
    """Checked species, the neighbour list and the plan of the requested columns."""
    species = np.asarray(species, np.int64)
    positions = np.asarray(positions, float)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(species) != len(positions):
        raise HdnnpError(f"positions {positions.shape} and species {species.shape} do not match")
    nl = neighbor_list(positions, cell, pbc, feature_set.cutoff)
    plan = ColumnPlan(feature_set, columns)
    plan.species_index(species)  # unknown elements: a clear error
    return species, nl, plan


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
    _, _, values, pairs, _ = _raw_entries(positions, cell, pbc, species, feature_set, columns, derivatives, device)
    return (values, *pairs) if derivatives else values


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


def _columns(feature_set, species, pbc, stress):
    """Checks, the elements present and the candidate columns to compute: one element's in
    its selection order (so its descriptors need no reordering), else the sorted union; and
    ``column_of[candidate]``, the column of each computed candidate."""
    if not feature_set.is_fitted:
        raise HdnnpError("the feature set has no selection yet (fit it on training data first)")
    if stress and not np.all(np.broadcast_to(np.asarray(pbc, bool), (3,))):
        raise HdnnpError("the stress needs a cell periodic in all three directions")
    present = [z for z in feature_set.elements if np.any(species == z)]
    union = np.unique(np.concatenate([feature_set.selected[z] for z in present] or [np.zeros(0, np.int64)]))
    if len(union) and (union.min() < 0 or union.max() >= feature_set.n_candidates):
        raise HdnnpError(f"candidate index out of range 0..{feature_set.n_candidates - 1}")
    columns = feature_set.selected[present[0]] if len(present) == 1 else union
    column_of = np.zeros(feature_set.n_candidates, np.int64)
    column_of[columns] = np.arange(len(columns))
    return present, columns, column_of


def compute_descriptors(positions, cell, pbc, species, feature_set, derivatives: bool = False,
                        device: str = "cpu", stress: bool = False) -> dict[int, ElementDescriptors]:
    """Selected, scaled features per element (``dict[Z, ElementDescriptors]``) of one configuration.

    Only the candidates selected for some element are computed. Needs a fitted ``feature_set``.
    ``stress`` adds the per-atom strain derivatives ``virial`` (see :class:`ElementDescriptors`;
    needs a cell periodic in all three directions) and implies ``derivatives``.
    """
    derivatives = derivatives or stress
    species = np.asarray(species, np.int64)
    present, columns, column_of = _columns(feature_set, species, pbc, stress)
    single = len(present) == 1  # the ranging's factor is applied inside the pass
    scale = feature_set.derivative_factor(present[0]) if single else None
    _, _, values, pairs, virial = _raw_entries(positions, cell, pbc, species, feature_set, columns, derivatives,
                                               device, virial=stress, deriv_scale=scale)
    if derivatives:
        pair_i, pair_j, dvalues = pairs
    out = {}
    for z in present:
        atoms = np.nonzero(species == z)[0]
        cols = column_of[feature_set.selected[z]]
        desc = ElementDescriptors(atom_index=atoms, values=feature_set.scale(z, values[np.ix_(atoms, cols)]))
        if derivatives:
            row_of_atom = np.full(len(species), -1, np.int64)
            row_of_atom[atoms] = np.arange(len(atoms))
            if single:  # already scaled and in order: no copies
                desc.pair_row, desc.pair_atom, desc.dvalues, desc.virial = row_of_atom[pair_i], pair_j, dvalues, virial
            else:
                factor = feature_set.derivative_factor(z)
                mask = species[pair_i] == z
                desc.pair_row = row_of_atom[pair_i[mask]]
                desc.pair_atom = pair_j[mask]
                desc.dvalues = dvalues[mask][:, cols, :] * factor[None, :, None]
                if virial is not None:
                    desc.virial = virial[atoms][:, cols] * factor[None, :, None, None]
        out[z] = desc
    return out


def adjoint_evaluation(positions, cell, pbc, species, feature_set, networks, stress: bool = False):
    """Descriptors, atomic energies, forces and strain derivatives of one configuration by the
    compiled adjoint pass (:func:`hdnnp.descriptors.fast.adjoint_pass`): ∂G/∂r is never formed.

    ``networks(Z, x)`` maps the scaled descriptors x (n, n_sel) of element Z to the atomic
    energies (n_members, n) eV and their input gradients ∂E/∂G' (n_members, n, n_sel). Returns
    ``(descriptors, atomic (n_members, n_atoms), forces (n_members, n_atoms, 3), strain
    (n_members, 3, 3))``, or None where the compiled path is not available.
    """
    if not fast.AVAILABLE:
        return None
    present, columns, column_of = _columns(feature_set, np.asarray(species, np.int64), pbc, stress)
    species, nl, plan = _neighbours_and_plan(positions, cell, pbc, species, feature_set, columns)
    cols = {z: column_of[feature_set.selected[z]] for z in present}
    descriptors = {z: ElementDescriptors(atom_index=np.nonzero(species == z)[0],
                                         values=np.empty((int(np.sum(species == z)), len(cols[z]))))
                   for z in present}
    row_of = np.zeros(len(species), np.int64)  # atom -> its row among its element's
    for d in descriptors.values():
        row_of[d.atom_index] = np.arange(len(d.atom_index))
    atomic = []

    def weights_of(a0, a1, values):
        chunk = species[a0:a1]
        weights = None
        for z in present:
            rows = np.nonzero(chunk == z)[0]
            if not len(rows):
                continue
            scaled = feature_set.scale(z, values[np.ix_(rows, cols[z])])
            descriptors[z].values[row_of[a0 + rows]] = scaled
            energy, grad = networks(z, scaled)
            if weights is None:
                weights = np.zeros((len(energy), a1 - a0, len(columns)))
                if not atomic:
                    atomic.append(np.zeros((len(energy), len(species))))
            atomic[0][:, a0 + rows] = energy
            weights[:, rows[:, None], cols[z][None, :]] = grad * feature_set.derivative_factor(z)[None, None, :]
        return weights

    _, forces, strain = fast.adjoint_pass(nl, species, plan, weights_of)
    return descriptors, (atomic[0] if atomic else np.zeros((1, len(species)))), forces, strain


def descriptors_of_atoms(atoms, feature_set, derivatives: bool = False, device: str = "cpu", raw: bool = False):
    """Descriptors of an ASE ``Atoms``: scaled per element (default) or ``raw`` candidate values."""
    args = (atoms.get_positions(), atoms.get_cell().array, atoms.get_pbc(), atoms.get_atomic_numbers(), feature_set)
    if raw:
        return compute_raw(*args, derivatives=derivatives, device=device)
    return compute_descriptors(*args, derivatives=derivatives, device=device)
