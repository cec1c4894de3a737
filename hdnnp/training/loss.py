"""Training data in memory and the loss function with its analytic gradient.

Loss (SPEC §5), for the boxes b of a batch, atoms j and components c of trained forces::

    L = mean_b ((E_b_pred - E_b_ref) / N_b)²  +  w_F * mean_{j,c} (F_jc_pred - F_jc_ref)²
        + w_S * mean_{b,a,c} (v_b,ac_pred - v_b,ac_ref)²

with the virial per atom v_b = σ_b V_b / N_b (eV/atom; σ the stress, ASE's sign, V the volume)
over the boxes with a reference stress, so ``w_S`` (``--stress-weight``) is dimensionless: an
error of 1 meV/atom in v weighs as much as 1/sqrt(w_S) meV/atom of energy. The predicted
strain derivative D_b = ∂E_b/∂ε = Σ_i Σ_c (∂E_i/∂G'_ic) W_ic (W from
:func:`hdnnp.descriptors.compute.entry_virials`, scaled like G') gives v_pred = D_b / N_b.

units: eV²/atom² for the energy term, (eV/Å)² for the force term, so ``w_F`` is in Å²/atom²
(an energy error of 1 meV/atom weighs as much as a force error of 1/sqrt(w_F) meV/Å).
Gradients: dL/dE_i = 2 (E_b - E_ref)/N_b² / n_boxes for each atom i of box b, and, through
phi_j = dL/dF_j = 2 w_F (F_j - F_ref_j) / n_components and psi_b = dL/dD_b = 2 w_S (v_b_pred -
v_b_ref) / N_b / n_stress_components (input adjoint u_i = Σ_ac psi_b,ac W_i[:, a, c]), the mixed
derivative of :func:`hdnnp.nn.backward`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hdnnp import nn


def frame_ranges(offset: np.ndarray, frames) -> np.ndarray:
    """Concatenated index ranges ``offset[f]:offset[f + 1]`` of the given frames, in their order
    (the atoms, rows or pairs of those frames in a ragged, frame-ordered array)."""
    if len(frames) == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(offset[f], offset[f + 1]) for f in frames])


@dataclass
class ElementBlock:
    """Descriptor rows of one element in a set of frames (ragged, as in symmetry.h5).

    ``values`` (n_rows, n_features) scaled descriptors; ``row_frame`` (n_rows,) local frame index;
    ``atom_index`` (n_rows,) local atom index; ``row_offset`` (n_frames + 1). Derivative pairs
    (only those whose atom's force is trained): ``pair_row`` (into values), ``pair_atom`` (local
    atom index), ``dvalues`` (n_pairs, n_features, 3) Å⁻¹, ``pair_offset`` (n_frames + 1).
    ``virial`` (n_rows, n_features, 3, 3): the strain derivatives W of each row's features
    (stress training; zeros for rows of frames without a reference stress), or None.
    """

    values: object
    row_frame: object
    atom_index: object
    row_offset: np.ndarray
    pair_row: object = None
    pair_atom: object = None
    dvalues: object = None
    pair_offset: np.ndarray | None = None
    virial: object = None

    @property
    def has_pairs(self) -> bool:
        return self.pair_row is not None


@dataclass
class TrainingData:
    """Frames with reference energies (eV), forces (eV/Å) and descriptors, held in memory.

    ``force_mask`` (n_atoms,) marks atoms whose forces enter the loss (``--force-fraction``);
    ``frame_index`` maps local frames back to indices in the stored set; ``virial_ref``
    (n_frames, 3, 3) the reference virial per atom σ V / N (eV/atom), NaN where unknown (with
    the blocks' ``virial``: stress training).
    """

    elements: tuple
    energy: object  # (n_frames,) eV
    n_atoms: np.ndarray  # (n_frames,)
    atom_offset: np.ndarray  # (n_frames + 1,)
    blocks: dict  # Z -> ElementBlock
    forces: object = None  # (n_atoms_total, 3) eV/Å
    force_mask: object = None  # (n_atoms_total,) bool
    frame_index: np.ndarray | None = None
    temperature: np.ndarray | None = None
    xp: object = np
    virial_ref: object = None  # (n_frames, 3, 3) eV/atom, NaN where unknown

    @property
    def has_stress(self) -> bool:
        return self.virial_ref is not None and all(b.virial is not None for b in self.blocks.values())
    @property
    def n_frames(self) -> int:
        return len(self.atom_offset) - 1

    @property
    def n_atoms_total(self) -> int:
        return int(self.atom_offset[-1])

    @property
    def has_forces(self) -> bool:
        return self.forces is not None and any(b.has_pairs for b in self.blocks.values())

    def subset(self, frames) -> "TrainingData":
        """A new contiguous TrainingData with the given (local) frames, re-indexed."""
        frames = np.asarray(frames, dtype=np.int64)
        xp = self.xp
        n_at = self.n_atoms[frames]
        new_off = np.concatenate([[0], np.cumsum(n_at)])
        atom_sel = frame_ranges(self.atom_offset, frames)
        atom_map = np.full(self.n_atoms_total, -1, np.int64)
        atom_map[atom_sel] = np.arange(len(atom_sel))
        blocks = {}
        for z, blk in self.blocks.items():
            rows = frame_ranges(blk.row_offset, frames)
            n_rows_f = blk.row_offset[frames + 1] - blk.row_offset[frames]
            row_map = np.full(int(blk.row_offset[-1]), -1, np.int64)
            row_map[rows] = np.arange(len(rows))
            rows_x = xp.asarray(rows)
            kw = dict(
                values=blk.values[rows_x],
                row_frame=xp.asarray(np.repeat(np.arange(len(frames)), n_rows_f)),
                atom_index=xp.asarray(atom_map[_np(blk.atom_index)[rows]]),
                row_offset=np.concatenate([[0], np.cumsum(n_rows_f)]),
                virial=None if blk.virial is None else blk.virial[rows_x],
            )
            if blk.has_pairs:
                pairs = frame_ranges(blk.pair_offset, frames)
                n_p = blk.pair_offset[frames + 1] - blk.pair_offset[frames]
                pairs_x = xp.asarray(pairs)
                kw.update(
                    pair_row=xp.asarray(row_map[_np(blk.pair_row)[pairs]]),
                    pair_atom=xp.asarray(atom_map[_np(blk.pair_atom)[pairs]]),
                    dvalues=blk.dvalues[pairs_x],
                    pair_offset=np.concatenate([[0], np.cumsum(n_p)]),
                )
            blocks[z] = ElementBlock(**kw)
        atom_sel_x = xp.asarray(atom_sel)
        return replace(
            self, energy=self.energy[xp.asarray(frames)], n_atoms=n_at, atom_offset=new_off,
            blocks=blocks,
            forces=None if self.forces is None else self.forces[atom_sel_x],
            force_mask=None if self.force_mask is None else self.force_mask[atom_sel_x],
            frame_index=None if self.frame_index is None else self.frame_index[frames],
            temperature=None if self.temperature is None else self.temperature[frames],
            virial_ref=None if self.virial_ref is None else self.virial_ref[xp.asarray(frames)],
        )

    def frame_range(self, start: int, stop: int) -> "TrainingData":
        """Frames [start, stop) as views of this data's descriptor arrays (no copy), re-indexed.

        Rows and derivative pairs are stored frame by frame, so the frames of a range are
        contiguous slices; only the index arrays are shifted (new, small integer arrays).
        """
        a0, a1 = int(self.atom_offset[start]), int(self.atom_offset[stop])
        blocks = {}
        for z, blk in self.blocks.items():
            r0, r1 = int(blk.row_offset[start]), int(blk.row_offset[stop])
            kw = dict(values=blk.values[r0:r1], row_frame=blk.row_frame[r0:r1] - start,
                      atom_index=blk.atom_index[r0:r1] - a0,
                      row_offset=blk.row_offset[start:stop + 1] - r0,
                      virial=None if blk.virial is None else blk.virial[r0:r1])
            if blk.has_pairs:
                p0, p1 = int(blk.pair_offset[start]), int(blk.pair_offset[stop])
                kw.update(pair_row=blk.pair_row[p0:p1] - r0, pair_atom=blk.pair_atom[p0:p1] - a0,
                          dvalues=blk.dvalues[p0:p1], pair_offset=blk.pair_offset[start:stop + 1] - p0)
            blocks[z] = ElementBlock(**kw)
        return replace(
            self, energy=self.energy[start:stop], n_atoms=self.n_atoms[start:stop],
            atom_offset=self.atom_offset[start:stop + 1] - a0, blocks=blocks,
            forces=None if self.forces is None else self.forces[a0:a1],
            force_mask=None if self.force_mask is None else self.force_mask[a0:a1],
            frame_index=None if self.frame_index is None else self.frame_index[start:stop],
            temperature=None if self.temperature is None else self.temperature[start:stop],
            virial_ref=None if self.virial_ref is None else self.virial_ref[start:stop],
        )

    def to(self, xp) -> "TrainingData":
        """Copy of the arrays on another backend (numpy or cupy)."""
        conv = xp.asarray if xp is not np else _np
        blocks = {}
        for z, blk in self.blocks.items():
            blocks[z] = ElementBlock(
                values=conv(blk.values), row_frame=conv(blk.row_frame), atom_index=conv(blk.atom_index),
                row_offset=blk.row_offset,
                pair_row=None if blk.pair_row is None else conv(blk.pair_row),
                pair_atom=None if blk.pair_atom is None else conv(blk.pair_atom),
                dvalues=None if blk.dvalues is None else conv(blk.dvalues),
                pair_offset=blk.pair_offset,
                virial=None if blk.virial is None else conv(blk.virial),
            )
        return replace(self, energy=conv(self.energy), blocks=blocks,
                       forces=None if self.forces is None else conv(self.forces),
                       force_mask=None if self.force_mask is None else conv(self.force_mask), xp=xp,
                       virial_ref=None if self.virial_ref is None else conv(self.virial_ref))

    def nbytes(self) -> int:
        total = 0
        for blk in self.blocks.values():
            for a in (blk.values, blk.row_frame, blk.atom_index, blk.pair_row, blk.pair_atom, blk.dvalues,
                      blk.virial):
                total += 0 if a is None else a.nbytes
        return total


def _np(a):
    """NumPy copy of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


@dataclass
class Evaluation:
    """Result of :func:`evaluate`: loss, gradient and the predictions behind them."""

    loss: float
    gradient: object  # flat, same backend as theta; None if not asked
    energy_pred: object  # (n_frames,) eV
    forces_pred: object  # (n_atoms, 3) eV/Å or None
    energy_mse_per_atom: float  # eV²/atom²
    force_mse: float  # (eV/Å)², over trained components; nan without forces
    atomic_energy: object = None  # (n_atoms,) eV, energy of every atom
    virial_pred: object = None  # (n_frames, 3, 3) eV/atom, predicted σ V / N (with stress_weight > 0)
    virial_mse: float = float("nan")  # (eV/atom)², over the components of frames with a reference


def evaluate(arch: nn.Architecture, theta, data: TrainingData, force_weight: float = 0.0,
             gradient: bool = True, forces: bool | None = None, block_boxes: int = 0,
             stress_weight: float = 0.0) -> Evaluation:
    """Loss L (see module docstring), its gradient dL/dtheta and the predictions.

    ``forces``: compute predicted forces (default: when the data has them and ``force_weight``
    > 0, or when a gradient is not needed and the data has pairs). The force term enters the
    loss only when ``force_weight`` > 0 and reference forces exist. The stress (virial) term
    enters when ``stress_weight`` > 0 and the data has strain derivatives and reference stresses.

    ``block_boxes`` > 0 (``--batch-boxes``, NUMBER_OF_BOXES_TO_OPT): when forces are computed,
    evaluate the frames in consecutive blocks of that many boxes and sum the blocks'
    contributions, each normalised by the counts of the whole set. Loss, gradient and
    predictions are those of one pass (to rounding), while the temporaries (per-pair products of
    descriptor derivatives) scale with the block, not with the set. Energies alone are always
    evaluated in one pass: their temporaries are small, and blocks would only add overhead.
    """
    xp = data.xp
    n_frames = data.n_frames
    use_force_loss = force_weight > 0 and data.has_forces
    if forces is None:
        forces = use_force_loss or (not gradient and data.has_forces)
    use_stress = stress_weight > 0 and data.has_stress
    n_stress = int(np.isfinite(_np(data.virial_ref)).sum()) if use_stress else 0
    n_comp = 0
    if forces and data.forces is not None:
        n_comp = 3 * (int(data.force_mask.sum()) if data.force_mask is not None else data.n_atoms_total)
    # blocks only with forces: the per-pair temporaries are what grows; energies alone are cheap
    # and a one-pass evaluation of them avoids the per-block overhead
    step = int(block_boxes) if forces and block_boxes and 0 < int(block_boxes) < n_frames else max(n_frames, 1)
    streamed = getattr(data, "streamed", False)  # descriptors on disk: always in blocks
    if streamed:
        step = max(1, int(block_boxes) if block_boxes and int(block_boxes) > 0 else data.stream_block)
    views = nn.unflatten(arch, theta)
    parts = [_evaluate_part(arch, views, data.frame_range(a, min(a + step, n_frames))
                            if step < n_frames or streamed else data,
                            force_weight if use_force_loss else 0.0, gradient, forces, n_frames, n_comp,
                            stress_weight if n_stress else 0.0, n_stress)
             for a in range(0, max(n_frames, 1), step)]
    energy_mse = sum(p["energy_sse"] for p in parts) / n_frames if n_frames else float("nan")
    force_mse = sum(p["force_sse"] for p in parts) / n_comp if n_comp else float("nan")
    virial_mse = sum(p["virial_sse"] for p in parts) / n_stress if n_stress else float("nan")
    loss = (energy_mse + (force_weight * force_mse if use_force_loss and n_comp else 0.0)
            + (stress_weight * virial_mse if n_stress else 0.0))
    grad = None
    if gradient:
        grad = parts[0]["gradient"]
        for p in parts[1:]:
            grad = grad + p["gradient"]
    cat = (lambda key: parts[0][key] if len(parts) == 1 else xp.concatenate([p[key] for p in parts]))
    return Evaluation(float(loss), grad, cat("energy_pred"), cat("forces_pred") if forces else None,
                      energy_mse, force_mse, cat("atomic_energy"), cat("virial_pred") if n_stress else None,
                      virial_mse)


def _evaluate_part(arch, views, data: TrainingData, force_weight: float, gradient: bool, forces: bool,
                   n_frames_total: int, n_comp_total: int, stress_weight: float = 0.0,
                   n_stress_total: int = 0) -> dict:
    """One block of :func:`evaluate`: predictions, sums of squared errors, and the gradient of
    sum_b ((E_b - E_ref)/N_b)² / n_frames_total + w_F sum_jc (F - F_ref)² / n_comp_total
    + w_S sum_b,ac (v_b - v_ref)² / n_stress_total over the block's frames (so that the blocks'
    gradients add up to dL/dtheta)."""
    xp = data.xp
    n_frames = data.n_frames
    n_atoms = xp.asarray(data.n_atoms.astype(np.float64))
    caches = {}
    energy_pred = xp.zeros(n_frames)
    atomic_energy = xp.zeros(data.n_atoms_total)
    for z, blk in data.blocks.items():
        w, b = views[z]
        e_i, cache = nn.forward(w, b, blk.values, xp, arch.activation)
        caches[z] = cache
        atomic_energy[blk.atom_index] = e_i
        energy_pred = energy_pred + nn.scatter_add_rows(xp, blk.row_frame, e_i, n_frames)
    err_e = (energy_pred - data.energy) / n_atoms
    out = dict(energy_pred=energy_pred, atomic_energy=atomic_energy, forces_pred=None,
               energy_sse=float(xp.sum(err_e ** 2)), force_sse=0.0, gradient=None, virial_sse=0.0)
    phi = psi = None
    g_in = {}
    if stress_weight > 0:
        # v_b = D_b / N_b, D_b = Σ_rows g_i · W_i (the strain derivative of the box's energy)
        strain = xp.zeros((n_frames, 3, 3))
        for z, blk in data.blocks.items():
            g_in[z] = nn.input_gradient(views[z][0], caches[z], xp)
            per_row = xp.einsum("rc,rcab->rab", g_in[z], blk.virial)
            strain = strain + nn.scatter_add_rows(xp, blk.row_frame, per_row, n_frames)
        virial_pred = strain / n_atoms[:, None, None]
        diff = virial_pred - data.virial_ref
        known = xp.isfinite(diff)
        diff = xp.where(known, diff, 0.0)
        out.update(virial_pred=virial_pred, virial_sse=float((diff ** 2).sum()))
        psi = 2.0 * stress_weight * diff / n_atoms[:, None, None] / max(n_stress_total, 1)
    if forces:
        forces_pred = xp.zeros((data.n_atoms_total, 3))
        for z, blk in data.blocks.items():
            if not blk.has_pairs:
                continue
            g = g_in[z] if z in g_in else nn.input_gradient(views[z][0], caches[z], xp)
            forces_pred = forces_pred + nn.forces_from_input_gradient(
                g, blk.pair_row, blk.pair_atom, blk.dvalues, data.n_atoms_total, xp)
        out["forces_pred"] = forces_pred
        if data.forces is not None and n_comp_total:
            mask = data.force_mask if data.force_mask is not None else xp.ones(data.n_atoms_total, bool)
            diff = (forces_pred - data.forces) * mask[:, None]
            out["force_sse"] = float((diff ** 2).sum())
            if force_weight > 0:
                phi = 2.0 * force_weight * diff / n_comp_total
    if gradient:
        c_frame = 2.0 * err_e / n_atoms / max(n_frames_total, 1)
        grads = {}
        for z, blk in data.blocks.items():
            u = None
            if phi is not None and blk.has_pairs:
                u = nn.input_adjoint_from_force_adjoint(phi, blk.pair_row, blk.pair_atom, blk.dvalues,
                                                        blk.values.shape[0], xp)
            if psi is not None:
                u_s = xp.einsum("rab,rcab->rc", psi[blk.row_frame], blk.virial)
                u = u_s if u is None else u + u_s
            grads[z] = nn.backward(views[z][0], caches[z], c_frame[blk.row_frame], u, xp)
        out["gradient"] = nn.flatten_gradients(arch, grads, xp)
    return out


def element_reference_energies(data: TrainingData) -> dict:
    """Per-element reference energies (eV/atom): least squares of E_box on element counts.

    E_b ≈ sum_Z n_bZ e_Z; with one element e = mean(E_b / N_b). Rank-deficient count matrices
    (e.g. fixed composition) get the minimum-norm solution, which still reproduces the mean.
    """
    energy = _np(data.energy)
    counts = np.zeros((data.n_frames, len(data.elements)))
    for k, z in enumerate(data.elements):
        blk = data.blocks[z]
        counts[:, k] = np.diff(blk.row_offset)
    ok = np.isfinite(energy)
    if not ok.any():
        return {z: 0.0 for z in data.elements}
    sol, *_ = np.linalg.lstsq(counts[ok], energy[ok], rcond=None)
    return {z: float(e) for z, e in zip(data.elements, sol)}


def data_from_descriptors(descriptors: list, n_atoms, energy, forces=None, elements=None) -> TrainingData:
    """TrainingData from per-frame ``compute_descriptors`` results (dicts Z -> ElementDescriptors).

    ``energy`` (n_frames,) eV; ``forces`` list of (n_atoms_f, 3) eV/Å or None. Derivative pairs
    are used when every frame carries them.
    """
    n_atoms = np.asarray(n_atoms, np.int64)
    atom_offset = np.concatenate([[0], np.cumsum(n_atoms)])
    elements = tuple(sorted(elements or {z for d in descriptors for z in d}))
    with_pairs = all(d[z].pair_row is not None for d in descriptors for z in d)
    blocks = {}
    for z in elements:
        vals, rf, ai, ro, pr, pa, dv, po = [], [], [], [0], [], [], [], [0]
        n_feat = None
        for f, d in enumerate(descriptors):
            if z not in d:
                ro.append(ro[-1])
                po.append(po[-1])
                continue
            e = d[z]
            n_feat = e.values.shape[1]
            vals.append(e.values)
            rf.append(np.full(len(e.atom_index), f))
            ai.append(e.atom_index + atom_offset[f])
            if with_pairs:
                pr.append(e.pair_row + ro[-1])
                pa.append(e.pair_atom + atom_offset[f])
                dv.append(e.dvalues)
                po.append(po[-1] + len(e.pair_row))
            ro.append(ro[-1] + len(e.atom_index))
        if n_feat is None:
            continue
        cat = (lambda parts, dtype=None: np.concatenate(parts).astype(dtype) if dtype else np.concatenate(parts))
        blk = ElementBlock(values=cat(vals), row_frame=cat(rf, np.int64), atom_index=cat(ai, np.int64),
                           row_offset=np.array(ro, np.int64))
        if with_pairs:
            blk.pair_row, blk.pair_atom = cat(pr, np.int64), cat(pa, np.int64)
            blk.dvalues = cat(dv).reshape(-1, n_feat, 3)
            blk.pair_offset = np.array(po, np.int64)
        blocks[z] = blk
    forces_arr = None if forces is None else np.concatenate([np.asarray(f, float) for f in forces])
    return TrainingData(elements=tuple(sorted(blocks)), energy=np.asarray(energy, float), n_atoms=n_atoms,
                        atom_offset=atom_offset, blocks=blocks, forces=forces_arr,
                        force_mask=None if forces_arr is None else np.ones(len(forces_arr), bool),
                        frame_index=np.arange(len(n_atoms)))
