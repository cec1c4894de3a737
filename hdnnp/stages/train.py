"""Stage 4, ``hdnnp train``: symmetry.h5 -> model.h5.

Reads the training set's scaled descriptors (and their derivatives when forces are trained)
from symmetry.h5 in blocks of frames, keeping in memory only what the loss needs: the rows of
every frame and the derivative pairs of the atoms whose forces are trained
(``--force-fraction`` picks a random subset of atoms per box, so it also bounds memory). The
training set is held in memory when its estimate fits ``--max-memory``; beyond it (or with
``--stream always``) the descriptors stay in symmetry.h5 and every optimiser reads the frames
it needs per step (:mod:`hdnnp.training.streamed`), with the same results; ``--stream never``
stops before loading instead and says what to change. A validation split (``--val-fraction``,
``--val-split``, ``--seed``) is taken from the training temperatures: random frames by default (as
n2p2), or ``blocked``, one contiguous run of frames per source trajectory. MD frames a few steps apart
are near-copies, so the blocked split gives the more honest validation error; early stopping on it
can stop sooner (see the README).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
from threadpoolctl import threadpool_limits

from hdnnp import nn
from hdnnp.baseline import baseline_of_set
from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError
from hdnnp.h5io import (atomic_output, check_can_write, check_feature_sets_match, open_stage_file, save_or_rescue,
                        write_root_attrs)
from hdnnp.model import Potential, model_path_for_checkpoint
from hdnnp.training.loop import initial_parameters, train_networks
from hdnnp.training.loss import ElementBlock, TrainingData, frame_ranges
from hdnnp.training.presets import TrainOptions, check_val_split, resolve_stress_weight
from hdnnp.training.streamed import STREAM_BLOCK_FRAMES, StreamedData, block_frames, draw_force_mask

BYTES_PER_MB = 1024.0 ** 2
CHUNK_FRAMES = 32  # frames per read of the descriptor derivatives


def estimate_memory_mb(group: h5py.Group, with_forces: bool, force_fraction: float, with_stress: bool = False) -> float:
    """Bytes (in MiB) of descriptor rows and, with forces, derivative pairs to be held.

    The training and validation frames are read separately (``load_training_data(frames=...)``),
    so the set is held once; the full ``values`` array is read once more while selecting rows.
    """
    total = 0.0
    feats = group["features"]
    for sym in feats:
        total += feats[sym]["values"].size * 8 * 2
        if with_forces and "dG" in feats[sym]:
            d = feats[sym]["dG/values"]
            total += d.size * d.dtype.itemsize * force_fraction
        if with_stress and "virial" in feats[sym]:
            total += feats[sym]["virial"].size * feats[sym]["virial"].dtype.itemsize * 2
    return total / BYTES_PER_MB


def load_training_data(group: h5py.Group, elements, with_forces: bool, force_fraction: float = 1.0,
                       rng: np.random.Generator | None = None, chunk_frames: int = CHUNK_FRAMES,
                       frames=None, with_stress: bool = False) -> TrainingData:
    """Frames of a set of symmetry.h5 as :class:`TrainingData` (all, or the sorted ``frames``).

    ``with_stress``: also the strain derivatives (``features/<Sym>/virial``) and the reference
    virial per atom σ V / N (NaN for frames without a reference stress or not periodic in all
    three directions), for stress training.

    With forces, only the derivative pairs of the atoms in the force mask are kept; the mask
    holds ceil(force_fraction * N_b) random atoms of every box b. The mask is drawn for all
    frames of the set (from ``rng``) before the selection, so loading the training and the
    validation frames separately with the same seed gives exactly ``load(all).subset(frames)``
    without holding the whole set and its copies at once.
    """
    atom_offset, frames, energy, forces, mask, virial_ref, temperature = _frame_targets(
        group, elements, frames, with_forces, force_fraction, rng, with_stress)
    n_frames = len(atom_offset) - 1
    n_atoms = np.diff(atom_offset)
    has_forces = forces is not None
    selected = np.zeros(n_frames, bool)
    selected[frames] = True
    atom_sel = frame_ranges(atom_offset, frames)
    atom_map = np.full(atom_offset[-1], -1, np.int64)
    atom_map[atom_sel] = np.arange(len(atom_sel))
    blocks = {}
    for z in elements:
        sym = symbol(z)
        if f"features/{sym}" not in group:
            continue
        g = group[f"features/{sym}"]
        row_offset = g["frame_offset"][:].astype(np.int64)
        rows = frame_ranges(row_offset, frames)
        row_map = np.full(row_offset[-1], -1, np.int64)
        row_map[rows] = np.arange(len(rows))
        n_rows_f = np.diff(row_offset)[frames]
        values = g["values"][:][rows]
        kw = dict(values=values, row_frame=np.repeat(np.arange(len(frames)), n_rows_f),
                  atom_index=atom_map[g["atom_index"][:].astype(np.int64)[rows]],
                  row_offset=np.concatenate([[0], np.cumsum(n_rows_f)]).astype(np.int64))
        if has_forces:
            pair_offset = g["dG/frame_offset"][:].astype(np.int64)
            pair_frame = np.repeat(np.arange(n_frames), np.diff(pair_offset))
            atom = g["dG/atom"][:].astype(np.int64)
            keep = mask[atom] & selected[pair_frame]
            # the derivatives (the bulk of the data) go straight into one preallocated array,
            # ``chunk_frames`` frames per read, so loading never holds them twice
            n_feat = values.shape[1]
            dvalues = np.empty((int(keep.sum()), n_feat, 3), g["dG/values"].dtype)  # as stored (float64/32)
            pos = 0
            for f0 in range(0, n_frames, chunk_frames):
                f1 = min(f0 + chunk_frames, n_frames)
                p0, p1 = int(pair_offset[f0]), int(pair_offset[f1])
                k = keep[p0:p1]
                n = int(k.sum())
                if n == len(k) and n:
                    g["dG/values"].read_direct(dvalues, np.s_[p0:p1], np.s_[pos:pos + n])
                elif n:
                    dvalues[pos:pos + n] = g["dG/values"][p0:p1][k].reshape(n, n_feat, 3)
                pos += n
            counts = np.bincount(pair_frame[keep], minlength=n_frames)[frames]
            kw.update(pair_row=row_map[g["dG/center"][:].astype(np.int64)[keep]], pair_atom=atom_map[atom[keep]],
                      dvalues=dvalues, pair_offset=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        if with_stress:
            kw["virial"] = g["virial"][:][rows]
        blocks[z] = ElementBlock(**kw)
    return TrainingData(elements=tuple(sorted(blocks)), energy=energy, n_atoms=n_atoms[frames],
                        atom_offset=np.concatenate([[0], np.cumsum(n_atoms[frames])]).astype(np.int64),
                        blocks=blocks, forces=forces, force_mask=None if mask is None else mask[atom_sel],
                        frame_index=frames, temperature=temperature, virial_ref=virial_ref)


def _frame_targets(group, elements, frames, with_forces: bool, force_fraction: float, rng, with_stress: bool):
    """What training holds per frame and per atom of the ``frames`` of a set (all if None):
    (stored atom offsets, frames, energy, forces of the frames' atoms or None, the force mask
    over all stored atoms (:func:`draw_force_mask`) or None, virial per atom σ V / N (NaN where
    unknown or not periodic) or None, temperature or None). First checks that the set stores
    what forces and stress training need, for the elements' features."""
    has_forces = with_forces and "atoms/forces" in group
    for z in elements:
        sym = symbol(z)
        g = group.get(f"features/{sym}")
        if g is None:
            continue
        if has_forces and "dG" not in g:
            raise HdnnpError(f"{group.file.filename}: forces are trained but features/{sym}/dG is missing; "
                             "re-run hdnnp symmetry with derivatives")
        if with_stress and "virial" not in g:
            raise HdnnpError(f"{group.file.filename}: --stress-weight needs the strain derivatives "
                             f"features/{sym}/virial, which hdnnp symmetry writes (with derivatives) for sets "
                             "with reference stresses; re-run hdnnp prepare and symmetry on data with stresses")
    rng = rng or np.random.default_rng(0)
    atom_offset = group["frames/atom_offset"][:].astype(np.int64)
    n_frames = len(atom_offset) - 1
    n_atoms = np.diff(atom_offset)
    energy = group["frames/energy"][:]
    if not np.all(np.isfinite(energy)):
        raise HdnnpError(f"{np.count_nonzero(~np.isfinite(energy))} training frames have no reference energy")
    frames = np.arange(n_frames) if frames is None else np.asarray(frames, np.int64)
    if np.any(np.diff(frames) <= 0):
        raise ValueError("frames must be sorted and unique")
    forces = mask = None
    if has_forces:
        forces = group["atoms/forces"][:][frame_ranges(atom_offset, frames)]
        mask = draw_force_mask(atom_offset, force_fraction, rng)
    temperature = group["frames/temperature"][:][frames] if "frames/temperature" in group else None
    virial_ref = None
    if with_stress:
        cell = group["frames/cell"][:][frames]
        periodic = group["frames/pbc"][:][frames].all(axis=1)
        volume = np.abs(np.linalg.det(cell))
        virial_ref = group["frames/stress"][:][frames] * (volume / n_atoms[frames])[:, None, None]
        virial_ref[~periodic] = np.nan
    return atom_offset, frames, energy[frames], forces, mask, virial_ref, temperature


def stream_training_data(group, elements, with_forces: bool, force_fraction: float = 1.0,
                         rng: np.random.Generator | None = None, frames=None, with_stress: bool = False,
                         stream_block: int = STREAM_BLOCK_FRAMES) -> StreamedData:
    """The same frames as :func:`load_training_data`, their descriptors left in the file
    (:class:`~hdnnp.training.streamed.StreamedData`; ``group`` must stay open while it is used)."""
    _, frames, energy, forces, mask, virial_ref, temperature = _frame_targets(
        group, elements, frames, with_forces, force_fraction, rng, with_stress)
    return StreamedData(group, elements, frames, forces is not None, mask, with_stress, energy, forces, virial_ref,
                        temperature, stream_block)


def read_block(group: h5py.Group, elements, f0: int, f1: int, derivatives: bool,
               with_reference_forces: bool = True) -> TrainingData:
    """Frames [f0, f1) of a set of symmetry.h5 as :class:`TrainingData`, indices local to the block
    (atoms, rows and pairs start at 0). Used by prediction to stream a set in blocks."""
    atom_offset = group["frames/atom_offset"][f0:f1 + 1].astype(np.int64)
    a0 = int(atom_offset[0])
    n_atoms = np.diff(atom_offset)
    blocks = {}
    for z in elements:
        sym = symbol(z)
        if f"features/{sym}" not in group:
            continue
        g = group[f"features/{sym}"]
        ro = g["frame_offset"][f0:f1 + 1].astype(np.int64)
        r0, r1 = int(ro[0]), int(ro[-1])
        kw = dict(values=g["values"][r0:r1], row_frame=np.repeat(np.arange(f1 - f0), np.diff(ro)),
                  atom_index=g["atom_index"][r0:r1].astype(np.int64) - a0, row_offset=ro - r0)
        if derivatives:
            po = g["dG/frame_offset"][f0:f1 + 1].astype(np.int64)
            p0, p1 = int(po[0]), int(po[-1])
            kw.update(pair_row=g["dG/center"][p0:p1].astype(np.int64) - r0,
                      pair_atom=g["dG/atom"][p0:p1].astype(np.int64) - a0,
                      dvalues=g["dG/values"][p0:p1], pair_offset=po - p0)
        blocks[z] = ElementBlock(**kw)
    has_f = with_reference_forces and "atoms/forces" in group
    return TrainingData(elements=tuple(sorted(blocks)), energy=group["frames/energy"][f0:f1], n_atoms=n_atoms,
                        atom_offset=atom_offset - a0, blocks=blocks,
                        forces=group["atoms/forces"][a0:int(atom_offset[-1])] if has_f else None,
                        frame_index=np.arange(f0, f1))


def split_validation(n_frames: int, val_fraction: float, seed: int, mode: str = "random",
                     source=None, step=None) -> tuple:
    """(train frames, validation frames), both sorted index arrays into the ``n_frames`` frames.

    ``random``: ``round(val_fraction * n_frames)`` frames drawn at random (``seed``).
    ``blocked``: for each source trajectory (``source``: one integer per frame; frames ordered by
    ``step`` within it), one contiguous run of ``round(val_fraction * n_source)`` frames at a random
    (``seed``) start; without ``source`` all frames form one trajectory in their stored order.
    At least one frame is kept for validation and one for training when ``val_fraction > 0``.
    """
    check_val_split(mode)
    rng = np.random.default_rng(seed)
    if val_fraction <= 0 or n_frames < 2:
        return np.arange(n_frames), np.zeros(0, np.int64)
    if mode == "random":
        n_val = min(max(int(round(val_fraction * n_frames)), 1), n_frames - 1)
        val = np.sort(rng.choice(n_frames, size=n_val, replace=False))
    else:
        source = np.zeros(n_frames, np.int64) if source is None else np.asarray(source)
        step = np.arange(n_frames) if step is None else np.asarray(step)
        picked = []
        for s in np.unique(source):
            members = np.flatnonzero(source == s)
            members = members[np.argsort(step[members], kind="stable")]
            n_val = min(int(round(val_fraction * len(members))), len(members))
            if n_val == 0:
                continue
            start = int(rng.integers(0, len(members) - n_val + 1))
            picked.append(members[start:start + n_val])
        val = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
        if len(val) == 0:  # every source too short for one frame: take one frame anyway
            val = np.array([int(rng.integers(n_frames))])
        if len(val) == n_frames:  # keep one training frame
            val = val[1:]
    train = np.setdiff1d(np.arange(n_frames), val)
    return train, val


def _write_checkpoint(path: Path, potential: Potential, state: dict, options: TrainOptions) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        with h5py.File(tmp, "w") as h5:
            write_root_attrs(h5, "train-checkpoint")
            potential.write_h5(h5)
            ck = h5.create_group("checkpoint")
            ck.attrs["options"] = json.dumps(options.as_attrs())
            for key, value in state.items():
                if key == "log":
                    lg = ck.create_group("log")
                    for k, v in value.items():
                        lg.create_dataset(k, data=np.asarray(v, float))
                elif isinstance(value, str):
                    ck.attrs[key] = value
                else:
                    ck.create_dataset(key, data=np.asarray(value))


#: Options a resumed training may change (how long and how it stops or saves); any other
#: difference would continue one run under another's settings.
RESUME_MAY_CHANGE = ("epochs", "patience", "time_limit", "checkpoint_every", "max_memory_mb", "stream")


def _check_resume_options(path: Path, options: TrainOptions) -> None:
    with open_stage_file(path, "train-checkpoint") as h5:
        stored = json.loads(h5["checkpoint"].attrs.get("options", "{}"))
    now = json.loads(json.dumps(options.as_attrs()))
    changed = sorted(k for k in stored if k not in RESUME_MAY_CHANGE and k in now and stored[k] != now[k])
    if changed:
        listed = ", ".join(f"{k} {stored[k]!r} (now {now[k]!r})" for k in changed)
        raise HdnnpError(f"{path}: this checkpoint was written with other options: {listed}; resume with the "
                         "options it was started with (only " + ", ".join(RESUME_MAY_CHANGE) + " may change), "
                         "or pass --overwrite to start again")


def _read_checkpoint(path: Path) -> dict:
    with open_stage_file(path, "train-checkpoint") as h5:
        ck = h5["checkpoint"]
        state = {k: (ck[k][()]) for k in ck if k != "log"}
        state.update({k: v for k, v in ck.attrs.items() if k != "options"})
        state["log"] = {k: list(ck["log"][k][:]) for k in ck["log"]} if "log" in ck else {}
    return state


def train(symmetry_path, output_path, options: TrainOptions, overwrite: bool = False, resume: bool = False,
          device: str = "cpu", quiet: bool = False) -> dict:
    """Train the element networks on the ``train`` set of ``symmetry_path``; write ``output_path``.

    Returns a summary: best epoch, validation/training RMSE (meV/atom, meV/Å), wall time.
    """
    from hdnnp.descriptors import FeatureSet

    check_can_write(output_path, overwrite, inputs=[symmetry_path])
    checkpoint_path = model_path_for_checkpoint(output_path)
    if checkpoint_path.exists() and not resume and not overwrite:
        # never delete (at the end) a checkpoint this run did not make or continue
        raise HdnnpError(f"{checkpoint_path}: a checkpoint of an interrupted run is there; continue it with "
                         "--resume, or pass --overwrite to start again (the checkpoint is then replaced)")
    # the file stays open until training ends: a streamed set reads its descriptors from it
    with open_stage_file(symmetry_path, "symmetry") as h5:
        if "train" not in h5 or "features" not in h5["train"]:
            raise HdnnpError(f"{symmetry_path}: no training set with features")
        feature_set = FeatureSet.from_h5(h5["feature_set"])
        group = h5["train"]
        with_forces = options.use_forces and "atoms/forces" in group
        if with_forces:
            _check_reference_forces(group, symmetry_path)
        options = replace(options, stress_weight=resolve_stress_weight(
            options, bool(group.attrs.get("virial", False))))
        need = estimate_memory_mb(group, with_forces, options.force_fraction, options.stress_weight > 0)
        stream = options.stream == "always" or (options.stream == "auto" and need > options.max_memory_mb)
        if need > options.max_memory_mb and options.stream == "never":
            raise HdnnpError(
                f"training data need about {need:.0f} MiB in memory, more than --max-memory "
                f"{options.max_memory_mb:.0f}; stream them (--stream auto), lower --force-fraction, train on "
                "energies only (--no-forces) or raise --max-memory")
        if stream and not quiet:
            print(f"train: streaming the descriptors from {symmetry_path} (about {need:.0f} MiB, budget "
                  f"{options.max_memory_mb:.0f} MiB)", file=sys.stderr)
        n_frames = len(group["frames/atom_offset"]) - 1
        if n_frames == 0:
            raise HdnnpError(f"{symmetry_path}: the training set is empty")
        source = group["frames/source"][:] if "frames/source" in group else None
        step = group["frames/step"][:] if "frames/step" in group else None
        train_idx, val_idx = split_validation(n_frames, options.val_fraction, options.seed,
                                              options.val_split, source, step)
        # read separately (the same force mask: same seed), so the set is held only once
        with_stress = options.stress_weight > 0
        if with_stress and not group.attrs.get("virial", False):
            raise HdnnpError(f"{symmetry_path}: --stress-weight needs reference stresses and their strain "
                             "derivatives; this training set has none (prepare data with stresses, e.g. extxyz "
                             "with stress=, then hdnnp symmetry)")
        load = load_training_data
        if stream:
            load = functools.partial(stream_training_data, stream_block=block_frames(need / n_frames))
        train_data, val_data = (
            load(group, feature_set.elements, with_forces, options.force_fraction,
                 np.random.default_rng(options.seed), frames=idx, with_stress=with_stress)
            if len(idx) else None
            for idx in (train_idx, val_idx))
        baseline = make_baseline(options, group, feature_set)
        # the networks learn the remainder E_ref − E_base, F_ref − F_base (, v_ref − v_base)
        if baseline is not None:
            base_energy, base_forces, *base_strain = baseline_of_set(baseline, group, forces=with_forces,
                                                                     strain=with_stress)
            offset = group["frames/atom_offset"][:].astype(np.int64)
            for data, idx in ((train_data, train_idx), (val_data, val_idx)):
                if data is not None:
                    data.energy = data.energy - base_energy[idx]
                    if with_forces:
                        data.forces = data.forces - base_forces[frame_ranges(offset, idx)]
                    if with_stress:  # virial per atom: ∂E/∂ε / N
                        data.virial_ref = data.virial_ref - base_strain[0][idx] / data.n_atoms[:, None, None]
        for data in (train_data, val_data):
            _check_finite_data(data, symmetry_path)
        if device != "cpu":
            from hdnnp.kernels import get_backend

            xp = get_backend(device)
            train_data = train_data.to(xp)
            val_data = val_data.to(xp) if val_data is not None else None
        arch = nn.Architecture(elements=tuple(feature_set.elements),
                               n_inputs={z: feature_set.n_features(z) for z in feature_set.elements},
                               hidden=tuple(options.hidden), activation=options.activation)
        theta0, reference = initial_parameters(arch, train_data, options.seed)
        # elements of the feature set without training atoms keep a zero reference
        reference = {z: reference.get(z, 0.0) for z in arch.elements}
        resume_state = None
        if resume:
            if not checkpoint_path.exists():
                raise HdnnpError(f"--resume: no checkpoint {checkpoint_path}")
            resume_state = _read_checkpoint(checkpoint_path)
            _check_resume_options(checkpoint_path, options)
            with open_stage_file(checkpoint_path, "train-checkpoint") as h5:
                check_feature_sets_match(feature_set, FeatureSet.from_h5(h5["feature_set"]),
                                         str(symmetry_path), f"the checkpoint {checkpoint_path}")
            if len(resume_state["theta"]) != arch.n_parameters:
                raise HdnnpError(f"{checkpoint_path}: checkpoint has {len(resume_state['theta'])} weights, "
                                 f"the architecture {arch.n_parameters}")

        def training_record(log, attrs_extra):
            return dict(log=log, validation_frames=val_idx,
                        attrs={**options.as_attrs(), **attrs_extra})

        def checkpoint(state):
            pot = Potential(feature_set, arch, state["best_theta"], reference,
                            training_record(state["log"], {"checkpoint_epoch": state["epoch"]}), baseline=baseline)
            _write_checkpoint(checkpoint_path, pot, state, options)

        # One BLAS thread: the matrices here are small (EKF: P is n_weights², 721² for 30-15-15-1), so
        # threads gain nothing, and the weights then do not depend on the machine's core count (the
        # EKF's sequential updates amplify the rounding differences of multi-threaded BLAS).
        with threadpool_limits(limits=1, user_api="blas"):
            result = train_networks(arch, train_data, val_data, options, theta0, reference,
                                    checkpoint=checkpoint if options.checkpoint_every else None,
                                    resume=resume_state, quiet=quiet)
        attrs = dict(force_weight=result.force_weight, loss_scale=result.loss_scale,
                     best_epoch=result.best_epoch, stop_reason=result.stop_reason,
                     n_train_frames=len(train_idx), n_validation_frames=len(val_idx), device=device)
        potential = Potential(feature_set, arch, result.theta, reference, training_record(result.log, attrs),
                              baseline=baseline)
        save_or_rescue(lambda path: potential.save(path, overwrite=overwrite, inputs=[symmetry_path]), output_path,
                       "the trained model")
        if checkpoint_path.exists():
            checkpoint_path.unlink()
        log = result.log
        best = int(np.flatnonzero(log["epoch"] == result.best_epoch)[0]) if result.best_epoch >= 0 else -1
        pick = (lambda k: float(log[k][best]) if best >= 0 else float("nan"))
        return dict(output=str(output_path), n_parameters=arch.n_parameters, best_epoch=result.best_epoch,
                    epochs=int(log["epoch"][-1]) if len(log["epoch"]) else 0, stop_reason=result.stop_reason,
                    train_energy_rmse=pick("train_energy_rmse"), val_energy_rmse=pick("val_energy_rmse"),
                    train_force_rmse=pick("train_force_rmse"), val_force_rmse=pick("val_force_rmse"),
                    wall_time=float(log["wall_time"][-1]) if len(log["wall_time"]) else 0.0)


def make_baseline(options: TrainOptions, group, feature_set):
    """The repulsive baseline of ``--baseline`` for the frames of ``group`` (None for ``none``):
    radii from ``--baseline-radii`` or from the shortest distances in the frames."""
    from hdnnp.baseline import fit_baseline, iter_frames, parse_radii

    if options.baseline == "none":
        return None
    return fit_baseline(iter_frames(group), feature_set.elements, feature_set.cutoff,
                        parse_radii(options.baseline_radii))


def _check_finite_data(data, symmetry_path, most: int = 5) -> None:
    """Refuse non-finite descriptors, derivatives or targets, naming the frames (indices of the
    training set of symmetry.h5) responsible."""
    if data is None:
        return
    if getattr(data, "streamed", False):  # block by block: never the whole set at once
        for f0 in range(0, data.n_frames, data.stream_block):
            _check_finite_data(data.frame_range(f0, min(f0 + data.stream_block, data.n_frames)), symmetry_path, most)
        return
    bad = np.zeros(data.n_frames, bool)
    bad |= ~np.isfinite(data.energy)
    for blk in data.blocks.values():
        rows = ~np.isfinite(blk.values).all(axis=1)
        bad[blk.row_frame[rows]] = True
        if blk.dvalues is not None and len(blk.dvalues):
            pairs = ~np.isfinite(blk.dvalues).reshape(len(blk.dvalues), -1).all(axis=1)
            if pairs.any():
                bad[blk.row_frame[blk.pair_row[pairs]]] = True
    if data.forces is not None:
        atoms = ~np.isfinite(data.forces).all(axis=1)
        if atoms.any():
            bad[np.searchsorted(data.atom_offset, np.flatnonzero(atoms), side="right") - 1] = True
    if bad.any():
        frames = data.frame_index[np.flatnonzero(bad)] if data.frame_index is not None else np.flatnonzero(bad)
        listed = ", ".join(map(str, frames[:most])) + (f" and {len(frames) - most} more" if len(frames) > most else "")
        raise HdnnpError(f"{symmetry_path}: non-finite descriptors, derivatives or reference values in training "
                         f"frame(s) {listed} (coincident atoms or absurd coordinates?); remove them and run "
                         "hdnnp symmetry again")


def _check_reference_forces(group, symmetry_path, chunk_atoms: int = 1 << 20) -> None:
    """Refuse reference forces that are all exactly zero (a converter that dropped them: the
    automatic force weight var(E/N)/<F²> would be enormous) or not finite, naming the file."""
    forces = group["atoms/forces"]
    nonzero = False
    for a0 in range(0, forces.shape[0], chunk_atoms):
        block = forces[a0:a0 + chunk_atoms]
        bad = ~np.isfinite(block)
        if bad.any():
            atom = a0 + int(np.flatnonzero(bad.any(axis=1))[0])
            frame = int(np.searchsorted(group["frames/atom_offset"][:], atom, side="right")) - 1
            raise HdnnpError(f"{symmetry_path}: train/atoms/forces has a non-finite value (atom {atom}, frame "
                             f"{frame}); fix the input or train on energies only (--no-forces)")
        nonzero = nonzero or bool(np.any(block != 0.0))
    if forces.shape[0] and not nonzero:
        raise HdnnpError(f"{symmetry_path}: every reference force of the training set is exactly zero, which "
                         "no MD frame has (were the forces lost in a conversion?); fix the input, or train on "
                         "energies only with --no-forces")


def member_path(output_path, k: int) -> Path:
    """Where committee member ``k`` is trained: ``model.h5`` -> ``model.h5.member<k>``."""
    output_path = Path(output_path)
    return output_path.with_name(f"{output_path.name}.member{k}")


def train_committee(symmetry_path, output_path, options: TrainOptions, n_members: int, overwrite: bool = False,
                    resume: bool = False, device: str = "cpu", quiet: bool = False, log=None) -> dict:
    """``hdnnp train --committee N``: N members on the same features, member k with seed
    ``options.seed + k`` (its own initial weights, validation split and force mask), trained one
    after the other by :func:`train` into ``model.h5.member<k>`` and then joined into one
    model.h5 (``/networks`` = member 0, ``/committee/theta`` = every member; SPEC §10).

    A killed committee resumes (``resume``): finished members are kept, an interrupted one
    continues from its checkpoint. Returns the summary of :func:`train` for the committee's
    first member plus ``members`` (one summary each).
    """
    if n_members < 1:
        raise HdnnpError(f"--committee: expected at least one member, got {n_members}")
    if n_members == 1:
        return train(symmetry_path, output_path, options, overwrite=overwrite, resume=resume, device=device,
                     quiet=quiet)
    check_can_write(output_path, overwrite, inputs=[symmetry_path])
    paths = [member_path(output_path, k) for k in range(n_members)]
    if not resume and not overwrite:
        stale = [str(p) for p in paths if p.exists() or model_path_for_checkpoint(p).exists()]
        if stale:
            raise HdnnpError(f"{', '.join(stale)}: an unfinished committee is there; continue it with --resume, "
                             "or pass --overwrite to start again")
    summaries = []
    for k, path in enumerate(paths):
        member_options = replace(options, seed=options.seed + k)
        if resume and path.exists():
            summaries.append({"output": str(path), "reused": True})
            continue
        if log:
            log(f"committee member {k + 1}/{n_members} (seed {member_options.seed}) -> {path}")
        summaries.append(train(symmetry_path, path, member_options, overwrite=True,
                               resume=resume and model_path_for_checkpoint(path).exists(), device=device,
                               quiet=quiet))
    members = [Potential.load(p) for p in paths]
    first = members[0]
    for k, m in enumerate(members[1:], 1):
        if m.architecture.n_parameters != first.architecture.n_parameters:
            raise HdnnpError(f"{paths[k]}: another architecture than {paths[0]}; train the committee again "
                             "with --overwrite")
    training = dict(first.training)
    training["committee"] = dict(seeds=np.array([options.seed + k for k in range(n_members)], np.int64),
                                 best_epochs=np.array([m.training.get("attrs", {}).get("best_epoch", -1)
                                                       for m in members], np.int64))
    committee = Potential(first.feature_set, first.architecture, first.theta, first.reference_energies, training,
                          members=np.stack([m.theta for m in members]), baseline=first.baseline)
    save_or_rescue(lambda path: committee.save(path, overwrite=overwrite, inputs=[symmetry_path]), output_path,
                   "the trained committee")
    for path in paths:
        path.unlink()
    summary = dict(summaries[0]) if not summaries[0].get("reused") else {}
    summary.update(output=str(output_path), n_members=n_members, members=summaries,
                   n_parameters=first.architecture.n_parameters * n_members)
    return summary
