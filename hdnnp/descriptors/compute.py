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


def _on_gpu(device: str, plan) -> bool:
    """Whether the GPU kernels evaluate ``plan`` for ``device``: a resolved ``gpu`` and a plan they
    take (else a warning, once, and the CPU)."""
    from hdnnp.kernels import resolve_device

    if resolve_device(device) != "gpu":
        return False
    from hdnnp.kernels.gpu import supports

    why = supports(plan)
    if why:
        global _WARNED_CPU
        if not _WARNED_CPU:
            import warnings

            warnings.warn(f"these symmetry functions are computed on the CPU: {why}", stacklevel=3)
            _WARNED_CPU = True
    return not why


def _raw_entries(positions, cell, pbc, species, feature_set, columns, derivatives, device, virial=False,
                 deriv_scale=None, precision: str = "float64"):
    """Raw values (n_atoms, n_cols), per-pair derivatives ``(pair_i, pair_j, dvalues)`` (with
    ``derivatives``) and per-atom strain derivatives (with ``virial``), those two multiplied by
    ``deriv_scale`` per column if given: by the GPU kernels (:mod:`hdnnp.kernels.gpu`, in
    ``precision``), the compiled CPU path (:mod:`.fast`) or the NumPy reference."""
    species = np.asarray(species, np.int64)
    plan = _plan_of([(positions, cell, pbc, species)], feature_set, columns)
    derivatives = derivatives or virial
    if _on_gpu(device, plan):
        from hdnnp.kernels import gpu

        return gpu.raw_batch([(positions, cell, pbc, species)], plan, derivatives, virial, deriv_scale,
                             gpu.cuda_launcher(precision))[0]
    nl = neighbor_list(positions, cell, pbc, feature_set.cutoff)
    if fast.AVAILABLE:
        return fast.symmetry_functions(nl, species, plan, derivatives, virial, deriv_scale)
    values, dentry = symmetry_functions_numpy(nl, species, plan, derivatives)
    if deriv_scale is not None and dentry is not None:
        dentry = dentry * np.asarray(deriv_scale)[None, :, None]
    pairs = pair_derivatives(nl, dentry, len(values)) if derivatives else None
    w = entry_virials(nl, dentry, len(values)) if virial else None
    return values, pairs, w


def _plan_of(frames, feature_set, columns):
    """The plan of the requested columns, once the frames ((positions, cell, pbc, species) each)
    are checked: shapes that match, elements the feature set knows."""
    plan = ColumnPlan(feature_set, columns)
    for positions, _, _, species in frames:
        species = np.asarray(species, np.int64)
        positions = np.asarray(positions, float)
        if positions.ndim != 2 or positions.shape[1] != 3 or len(species) != len(positions):
            raise HdnnpError(f"positions {positions.shape} and species {species.shape} do not match")
        plan.species_index(species)  # unknown elements: a clear error
    return plan


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
    values, pairs, _ = _raw_entries(positions, cell, pbc, species, feature_set, columns, derivatives, device)
    return (values, *pairs) if derivatives else values


def compute_raw_batch(frames, feature_set, device: str = "cpu", precision: str = "float64") -> list:
    """:func:`compute_raw` (all candidates, values only) of every frame ((positions, cell, pbc,
    species) each); on a GPU in launches of many frames."""
    from hdnnp.kernels import resolve_device

    frames = [(np.asarray(p, float), c, b, np.asarray(z, np.int64)) for p, c, b, z in frames]
    if frames and resolve_device(device) == "gpu":
        plan = _plan_of(frames, feature_set, np.arange(feature_set.n_candidates))
        if _on_gpu(device, plan):
            from hdnnp.kernels import gpu

            return [r[0] for r in gpu.raw_batch(frames, plan, launcher=gpu.cuda_launcher(precision))]
    return [compute_raw(*f, feature_set, device="cpu") for f in frames]


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
    return compute_descriptors_batch([(positions, cell, pbc, species)], feature_set, derivatives, device, stress)[0]


def _groups(frames, feature_set, stress: bool):
    """Runs of consecutive frames that need the same columns: ``(k0, k1, present, columns,
    column_of)``, the frames' species checked."""
    k0, key = 0, None
    for k, (_, _, pbc, species) in enumerate(frames):
        cols = _columns(feature_set, np.asarray(species, np.int64), pbc, stress)
        if key is not None and (cols[0] != key[0] or not np.array_equal(cols[1], key[1])):
            yield (k0, k, *key)
            k0 = k
        key = cols
    if key is not None:
        yield (k0, len(frames), *key)


def compute_descriptors_batch(frames, feature_set, derivatives: bool = False, device: str = "cpu",
                              stress: bool = False, precision: str = "float64") -> list[dict]:
    """:func:`compute_descriptors` of every frame of ``frames`` ((positions, cell, pbc, species)
    each); on a GPU, frames that need the same columns go in launches of many frames."""
    from hdnnp.kernels import resolve_device

    derivatives = derivatives or stress
    gpu_asked = resolve_device(device) == "gpu"
    out = []
    for k0, k1, present, columns, column_of in _groups(frames, feature_set, stress):
        single = len(present) == 1  # the ranging's factor is applied inside the pass
        scale = feature_set.derivative_factor(present[0]) if single else None
        run = [(np.asarray(p, float), c, b, np.asarray(z, np.int64)) for p, c, b, z in frames[k0:k1]]
        plan = _plan_of(run, feature_set, columns) if gpu_asked else None
        if plan is not None and _on_gpu(device, plan):
            from hdnnp.kernels import gpu

            raw = gpu.raw_batch(run, plan, derivatives, stress, scale, gpu.cuda_launcher(precision))
        else:
            raw = [_raw_entries(*f, feature_set, columns, derivatives, "cpu", virial=stress, deriv_scale=scale)
                   for f in run]
        out += [_per_element(f[3], feature_set, present, column_of, single, *r, derivatives)
                for f, r in zip(run, raw)]
    return out


def _per_element(species, feature_set, present, column_of, single, values, pairs, virial, derivatives):
    """Raw values and derivatives of one frame as ``dict[Z, ElementDescriptors]``."""
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


def _to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


class _Weights:
    """``weights_of(a0, a1, values)`` of the adjoint passes for atoms a0..a1-1 of ``species``:
    scales the raw values, asks ``networks(Z, x, xp)`` for the atomic energies (n_members, n)
    and ∂E/∂G' (n_members, n, n_sel), and returns w = ∂E/∂G (n_members, a1 − a0, n_cols) in
    ``xp``; keeps the scaled descriptors (``scaled[Z]``, rows in atom order) and the atomic
    energies (``atomic``, (n_members, n_atoms)) on the host."""

    def __init__(self, feature_set, species, present, columns, column_of, networks, xp=np):
        self.fs, self.species, self.present, self.networks, self.xp = feature_set, species, present, networks, xp
        self.n_cols = len(columns)
        self.cols = {z: column_of[feature_set.selected[z]] for z in present}
        self.scaled = {z: np.empty((int(np.sum(species == z)), len(self.cols[z]))) for z in present}
        self.row_of = np.zeros(len(species), np.int64)  # atom -> its row among its element's
        for z in present:
            self.row_of[species == z] = np.arange(int(np.sum(species == z)))
        self.atomic = None

    def __call__(self, a0, a1, values):
        xp, fs = self.xp, self.fs
        chunk = self.species[a0:a1]
        weights = None
        for z in self.present:
            rows = np.nonzero(chunk == z)[0]
            if not len(rows):
                continue
            rx, cx = xp.asarray(rows), xp.asarray(self.cols[z])
            scaled = fs.scale(z, values[rx[:, None], cx[None, :]], xp)
            self.scaled[z][self.row_of[a0 + rows]] = _to_numpy(scaled)
            energy, grad = self.networks(z, scaled, xp)
            if weights is None:
                weights = xp.zeros((len(energy), a1 - a0, self.n_cols))
            if self.atomic is None:
                self.atomic = np.zeros((len(energy), len(self.species)))
            self.atomic[:, a0 + rows] = _to_numpy(energy)
            weights[:, rx[:, None], cx[None, :]] = grad * fs.derivative_factor(z, xp)[None, None, :]
        return weights

    def frame(self, a0, a1):
        """Descriptors (``dict[Z, ElementDescriptors]``, values only) and atomic energies of atoms a0..a1-1."""
        species = self.species[a0:a1]
        desc = {}
        for z in self.present:
            atoms = np.nonzero(species == z)[0]
            desc[z] = ElementDescriptors(atom_index=atoms, values=self.scaled[z][self.row_of[a0 + atoms]])
        atomic = self.atomic[:, a0:a1] if self.atomic is not None else np.zeros((1, a1 - a0))
        return desc, atomic


def adjoint_evaluation(positions, cell, pbc, species, feature_set, networks, stress: bool = False):
    """Descriptors, atomic energies, forces and strain derivatives of one configuration by the
    compiled adjoint pass (:func:`hdnnp.descriptors.fast.adjoint_pass`): ∂G/∂r is never formed.

    ``networks(Z, x, xp)`` maps the scaled descriptors x (n, n_sel) of element Z to the atomic
    energies (n_members, n) eV and their input gradients ∂E/∂G' (n_members, n, n_sel), arrays of
    the namespace ``xp``. Returns ``(descriptors, atomic (n_members, n_atoms), forces (n_members,
    n_atoms, 3), strain (n_members, 3, 3))``, or None where the compiled path is not available.
    """
    if not fast.AVAILABLE:
        return None
    present, columns, column_of = _columns(feature_set, np.asarray(species, np.int64), pbc, stress)
    species = np.asarray(species, np.int64)
    plan = _plan_of([(positions, cell, pbc, species)], feature_set, columns)
    nl = neighbor_list(positions, cell, pbc, feature_set.cutoff)
    weights = _Weights(feature_set, species, present, columns, column_of, networks)
    _, forces, strain = fast.adjoint_pass(nl, species, plan, weights)
    return (*weights.frame(0, len(species)), forces, strain)


def adjoint_evaluation_batch(frames, feature_set, networks, stress: bool = False, device: str = "cpu",
                             precision: str = "float64") -> list:
    """:func:`adjoint_evaluation` of every frame ((positions, cell, pbc, species) each). On a GPU
    (:func:`hdnnp.kernels.gpu.adjoint_batch`) frames that need the same columns go in launches
    of many frames, and the networks run on the device."""
    from hdnnp.kernels import resolve_device

    if resolve_device(device) != "gpu":
        return [adjoint_evaluation(*f, feature_set, networks, stress) for f in frames]
    out = []
    for k0, k1, present, columns, column_of in _groups(frames, feature_set, stress):
        run = [(np.asarray(p, float), c, b, np.asarray(z, np.int64)) for p, c, b, z in frames[k0:k1]]
        plan = _plan_of(run, feature_set, columns)
        if not _on_gpu(device, plan):
            out += [adjoint_evaluation(*f, feature_set, networks, stress) for f in run]
            continue
        from hdnnp.kernels import gpu

        launcher = gpu.cuda_launcher(precision)
        species = np.concatenate([f[3] for f in run])
        weights = _Weights(feature_set, species, present, columns, column_of, networks, launcher.xp)
        first = np.concatenate([[0], np.cumsum([len(f[3]) for f in run])])
        for k, (_, forces, strain) in enumerate(gpu.adjoint_batch(run, plan, weights, launcher)):
            out.append((*weights.frame(first[k], first[k + 1]), forces, strain))
    return out


def descriptors_of_atoms(atoms, feature_set, derivatives: bool = False, device: str = "cpu", raw: bool = False):
    """Descriptors of an ASE ``Atoms``: scaled per element (default) or ``raw`` candidate values."""
    args = (atoms.get_positions(), atoms.get_cell().array, atoms.get_pbc(), atoms.get_atomic_numbers(), feature_set)
    if raw:
        return compute_raw(*args, derivatives=derivatives, device=device)
    return compute_descriptors(*args, derivatives=derivatives, device=device)
