"""Stage 5, ``hdnnp predict``: model.h5 + symmetry.h5 (or prepared.h5, or a structure file) ->
predictions.h5.

- symmetry.h5 whose fitted feature set equals the model's: the stored scaled descriptors (and
  ``dG`` for forces) are read in blocks of frames;
- otherwise (prepared.h5, a symmetry.h5 made for another model, or any file ASE reads) the
  descriptors are computed per frame from the model's own definitions, selection and scaling
  (:func:`hdnnp.descriptors.compute_descriptors`).

Every set is streamed in blocks of ``chunk_frames`` frames; only the per-frame results (and
per-atom forces / atomic energies when asked for) are collected for the output. Frames whose
descriptors leave the training range [-1, 1] are counted (``extrapolation``) and warned about.
predictions.h5 layout: docs/DESIGN.md.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import h5py
import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.frames import stresses_of
from hdnnp.h5io import (atomic_output, check_can_write, check_elements_covered, check_feature_sets_match,
                        has_reference_stresses, open_stage_file, read_frames, read_strings, write_root_attrs)
from hdnnp.model import Potential, extrapolation_message, outside_training_range
from hdnnp.parallel import check_parallel_options, dask_client, ordered_map
from hdnnp.progress import Progress
from hdnnp.training.loss import _np, data_from_descriptors, evaluate, frame_ranges



def same_feature_set(a, b) -> bool:
    """True when two fitted feature sets select and scale the same features identically."""
    try:
        check_feature_sets_match(a, b, "", "")
    except HdnnpError:
        return False
    return True


class _SetResult:
    def __init__(self):
        self.parts = {k: [] for k in ("energy_reference", "energy_predicted", "n_atoms", "temperature", "step",
                                      "extrapolation", "forces_reference", "forces_predicted",
                                      "atomic_energies", "stress_predicted", "stress_reference",
                                      "energy_spread", "forces_spread", "group")}

    def add(self, **kw):
        for k, v in kw.items():
            if v is not None:
                self.parts[k].append(np.asarray(v))

    def extend(self, parts: dict):
        for k, v in parts.items():
            self.parts[k] += v

    def arrays(self):
        return {k: np.concatenate(v) for k, v in self.parts.items() if v}


def _extrapolation_per_frame(data, feature_set) -> np.ndarray:
    out = np.zeros(data.n_frames, np.int64)
    for z, blk in data.blocks.items():
        v = feature_set.unit_scaled(z, _np(blk.values))
        per_row = outside_training_range(v)
        out += np.bincount(_np(blk.row_frame), weights=per_row, minlength=data.n_frames).astype(np.int64)
    return out


def _predict_block(potential, data, result: _SetResult, forces: bool, atomic: bool, xp, temperature, step,
                   where: str = "", first_frame: int = 0, frames=None):
    """Predictions of a block of frames from their descriptors (``data``), the networks in ``xp``."""
    if xp is not np:
        data = data.to(xp)
    evs = [evaluate(potential.architecture, xp.asarray(theta), data, 0.0, gradient=False, forces=forces)
           for theta in potential.members]
    members = {"energy_pred": [_np(ev.energy_pred) for ev in evs]}
    if forces:
        members["forces_pred"] = [_np(ev.forces_pred) for ev in evs]
    if atomic:
        members["atomic_energy"] = [_np(ev.atomic_energy) for ev in evs]
    _record(potential, members, result, forces, atomic, temperature, step, where, first_frame, frames,
            energy=_np(data.energy), n_atoms=_np(data.n_atoms), atom_offset=_np(data.atom_offset),
            extrapolation=_extrapolation_per_frame(data, potential.feature_set),
            forces_reference=_np(data.forces) if forces and data.forces is not None else None)


def _predict_frames_adjoint(potential, frames, result: _SetResult, atomic: bool, stress: bool, device: str,
                            precision: str, temperature, step, where: str, first_frame: int):
    """Energies and forces of a block of frames by the GPU's adjoint pass
    (:func:`hdnnp.descriptors.compute.adjoint_evaluation_batch`): descriptors, networks and the
    force contraction on the device, many frames per launch; ∂G/∂r is never formed or copied.
    False (nothing added) where the adjoint pass is not available for these functions."""
    from hdnnp.descriptors.compute import adjoint_evaluation_batch
    from hdnnp.model import extrapolation_of

    out = adjoint_evaluation_batch([(f.positions, f.cell, f.pbc, f.species) for f in frames], potential.feature_set,
                                   potential._member_networks, False, device, precision)
    if any(o is None for o in out):  # functions the kernels do not take, and no compiled CPU path
        return False
    n_atoms = np.array([len(f.species) for f in frames])
    members = {"energy_pred": [np.array([o[1][m].sum() for o in out]) for m in range(potential.n_members)],
               "forces_pred": [np.concatenate([o[2][m] for o in out]) for m in range(potential.n_members)]}
    if atomic:
        members["atomic_energy"] = [np.concatenate([o[1][m] for o in out]) for m in range(potential.n_members)]
    ref = [f.forces for f in frames]
    _record(potential, members, result, True, atomic, temperature, step, where, first_frame, frames,
            energy=np.array([f.energy for f in frames]), n_atoms=n_atoms,
            atom_offset=np.concatenate([[0], np.cumsum(n_atoms)]),
            extrapolation=np.array([extrapolation_of(o[0], potential.feature_set)[0] for o in out], np.int64),
            forces_reference=np.concatenate(ref) if all(r is not None for r in ref) else None)
    if stress:
        volume = np.array([abs(np.linalg.det(f.cell)) for f in frames])
        strain = np.mean([np.stack([o[3][m] for o in out]) for m in range(potential.n_members)], axis=0)
        if potential.baseline is not None:
            strain = strain + np.stack([potential.baseline.evaluate(f.positions, f.cell, f.pbc, f.species, False, True)[3]
                                        if np.all(f.pbc) else np.zeros((3, 3)) for f in frames])
        periodic = np.array([bool(np.all(f.pbc)) for f in frames])
        result.add(stress_predicted=np.where(periodic[:, None, None], strain / volume[:, None, None], np.nan),
                   stress_reference=stresses_of(frames))
    return True


def _record(potential, members: dict, result: _SetResult, forces: bool, atomic: bool, temperature, step,
            where: str, first_frame: int, frames, energy, n_atoms, atom_offset, extrapolation, forces_reference):
    """Adds a block's predictions: the committee's mean (a single potential is a committee of
    one) and, for a committee, the population standard deviations over its members.
    ``members``: per quantity (energy_pred, forces_pred, atomic_energy) a list over members.
    With a repulsive baseline its energies and forces (of ``frames``) are added to the means."""
    mean = {name: np.mean(values, axis=0) for name, values in members.items()}
    if potential.baseline is not None:
        base = [potential.baseline.evaluate(f.positions, f.cell, f.pbc, f.species, forces=forces) for f in frames]
        mean["energy_pred"] = mean["energy_pred"] + np.array([b[0] for b in base])
        if forces:
            mean["forces_pred"] = mean["forces_pred"] + np.concatenate([b[1] for b in base])
        if atomic:
            mean["atomic_energy"] = mean["atomic_energy"] + np.concatenate([b[2] for b in base])
    committee = potential.n_members > 1
    for name in ("energy_pred",) + (("forces_pred",) if forces else ()):
        values = mean[name]
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))[0]
            frame = bad if name == "energy_pred" else int(np.searchsorted(atom_offset, bad, side="right")) - 1
            raise HdnnpError(f"{where}: the model predicts a non-finite "
                             f"{'energy' if name == 'energy_pred' else 'force'} for frame {first_frame + frame} "
                             "(an overflowing network or an absurd structure); nothing was written")
    result.add(energy_reference=energy, energy_predicted=mean["energy_pred"], n_atoms=n_atoms,
               temperature=temperature, step=step, extrapolation=extrapolation,
               forces_predicted=mean["forces_pred"] if forces else None,
               forces_reference=(forces_reference if forces_reference is not None
                                 else np.full((int(atom_offset[-1]), 3), np.nan)) if forces else None,
               atomic_energies=mean["atomic_energy"] if atomic else None,
               energy_spread=np.std(members["energy_pred"], axis=0) / n_atoms if committee else None,
               forces_spread=np.std(members["forces_pred"], axis=0) if committee and forces else None)


def _stresses(potential, frames, device: str) -> np.ndarray:
    """Predicted stress (n_frames, 3, 3) eV/Å³ (ASE sign) of periodic frames; NaN where a frame is
    not periodic in all three directions."""
    out = np.full((len(frames), 3, 3), np.nan)
    for k, f in enumerate(frames):
        if np.all(f.pbc):
            out[k] = potential.evaluate(f.positions, f.cell, f.pbc, f.species, forces=False, stress=True,
                                        device=device).stress
    return out


def _predict_chunk(item, potential, forces: bool, atomic: bool, stress: bool, device: str, where: str) -> dict:
    """The predictions of one block of frames, as lists of arrays per output (the unit of work
    :func:`hdnnp.parallel.ordered_map` runs here or on a Dask worker). ``item``: (first frame,
    frames or None, stored descriptors or None, temperatures, steps, group indices)."""
    from hdnnp.kernels import get_backend, resolve_device

    f0, frames, data, temperature, step, group = item
    res = _SetResult()
    if (data is None and forces and resolve_device(device) == "gpu"
            and _predict_frames_adjoint(potential, frames, res, atomic, stress, device, "float64", temperature,
                                        step, where, f0)):
        res.add(group=group)
        return res.parts
    if data is None:
        data = _frames_to_data(potential, frames, forces, device)
    _predict_block(potential, data, res, forces, atomic, get_backend(device), temperature, step, where, f0, frames)
    if stress:
        res.add(stress_predicted=_stresses(potential, frames, device), stress_reference=stresses_of(frames))
    res.add(group=group)
    return res.parts


def _set_items(group, potential, chunk_frames: int, forces: bool, frames: bool, stored: bool):
    """The blocks of a frame set as :func:`_predict_chunk` takes them: with the frames (when the
    descriptors are computed, or the stress or a baseline needs positions) and the stored
    descriptors (when symmetry.h5 has the model's)."""
    from hdnnp.stages.train import read_block

    n_frames = len(group["frames/atom_offset"]) - 1
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(f0 + chunk_frames, n_frames)
        yield (f0, read_frames(group, f0, f1) if frames else None,
               read_block(group, potential.elements, f0, f1, derivatives=forces) if stored else None,
               group["frames/temperature"][f0:f1], group["frames/step"][f0:f1],
               group["frames/group"][f0:f1] if "frames/group" in group else np.zeros(f1 - f0, np.int32))


def _frames_to_data(potential, frames, forces: bool, device: str):
    from hdnnp.descriptors.compute import compute_descriptors_batch

    desc = compute_descriptors_batch([(f.positions, f.cell, f.pbc, f.species) for f in frames],
                                     potential.feature_set, derivatives=forces, device=device)
    desc = [{z: _to_numpy_desc(d) for z, d in ds.items()} for ds in desc]
    ref_forces = None
    if forces and all(f.forces is not None for f in frames):
        ref_forces = [f.forces for f in frames]
    data = data_from_descriptors(desc, [len(f.species) for f in frames], [f.energy for f in frames], ref_forces,
                                 elements=potential.elements)
    if forces and ref_forces is None:
        data.forces = None
    return data


def _to_numpy_desc(d):
    for name in ("atom_index", "values", "pair_row", "pair_atom", "dvalues"):
        v = getattr(d, name)
        if v is not None and hasattr(v, "get"):
            setattr(d, name, v.get())
    return d


def _read_structure_frames(path, file_format=None):
    """Frames of a structure file, read by the readers of ``hdnnp prepare`` (n2p2 ``input.data``
    by hdnnp's own reader in Å and eV; extxyz and the other formats through ASE)."""
    from hdnnp.inputs import structure_file
    from hdnnp.stages.prepare import ReadOptions, SourceStats, iter_source

    entry = structure_file(path, file_format)
    return list(iter_source(entry, ReadOptions(), SourceStats(str(path), entry.temperature)))


def predict(model_path, input_path="symmetry.h5", output_path="predictions.h5", forces: bool | None = None,
            atomic_energies: bool = False, sets=None, overwrite: bool = False, device: str = "cpu",
            chunk_frames: int = 64, quiet: bool = False, file_format: str | None = None,
            stress: bool | None = None, workers: int | None = None, scheduler: str | None = None) -> dict:
    """Predict energies (and forces, atomic energies, stresses) for every set of ``input_path``.

    ``forces``: predict forces; None (the default): for every set whose frames have reference
    forces, so that the force error can be reported (as ``hdnnp run`` does).

    ``stress``: ``<set>/stress_predicted`` (n_frames, 3, 3) eV/Å³, ASE's sign (positive =
    tensile), computed from the positions (:meth:`hdnnp.model.Potential.evaluate`); NaN for
    frames that are not periodic in all three directions. None (the default): for every set
    whose frames have reference stresses (stored as ``stress_reference``, NaN where unknown).

    Every set also gets ``group`` (index per frame into ``groups``, the kinds of structure of
    the input, e.g. mlearn's Surface or AIMD-NVT).

    ``workers``/``scheduler``: blocks of ``chunk_frames`` frames computed on a local Dask
    cluster or the cluster at that address (:mod:`hdnnp.parallel`); the output is the serial one.

    Returns a summary per set: frames, energy RMSE (meV/atom), force RMSE (meV/Å) and stress
    RMSE (GPa) against the stored references where known, extrapolating frames, and the same
    errors per group when the input has more than one group.
    """
    from hdnnp.kernels import resolve_device

    check_parallel_options(workers, scheduler)
    input_path = Path(input_path)
    if not input_path.exists():
        raise HdnnpError(f"{input_path}: no such file (the input to predict)")
    if not h5py.is_hdf5(input_path):  # a structure file: its name and format are checked first
        from hdnnp.inputs import structure_file

        structure_file(input_path, file_format)
    check_can_write(output_path, overwrite, inputs=[model_path, input_path])
    potential = Potential.load(model_path)
    device = resolve_device(device)
    results, is_validation, groups = {}, {}, {}
    with dask_client(workers, scheduler) as client:  # None: serial, in this process
        validation_frames = np.asarray(potential.training.get("validation_frames", []), np.int64)
        stage = None
        try:
            with h5py.File(input_path, "r") as probe:
                stage = probe.attrs.get("stage")
                stage = stage.decode() if isinstance(stage, bytes) else stage
        except OSError:
            stage = None
        if stage is not None:  # an hdnnp file: it must be one predict can read (not a model, say)
            with open_stage_file(input_path, ("symmetry", "prepare")) as h5:
                available = [s for s in ("train", "predict") if s in h5 and "frames" in h5[s]]
                wanted = available if not sets else list(sets)
                for s in wanted:
                    if s not in available:
                        raise HdnnpError(f"{input_path}: no set '{s}' (sets: {', '.join(available)})")
                    check_elements_covered(np.unique(h5[s]["atoms/species"][:]), potential.elements,
                                           f"{input_path} ({s} set)", str(model_path))
                use_stored = False
                if stage == "symmetry":
                    from hdnnp.descriptors import FeatureSet

                    use_stored = same_feature_set(FeatureSet.from_h5(h5["feature_set"]), potential.feature_set)
                for s in wanted:
                    group = h5[s]
                    n_frames = len(group["frames/atom_offset"]) - 1
                    set_forces = forces if forces is not None else "atoms/forces" in group
                    set_stress = stress if stress is not None else has_reference_stresses(group)
                    groups[s] = read_strings(group["groups"]) if "groups" in group and "frames/group" in group else [""]
                    stored = use_stored and "features" in group and (
                        not set_forces or all("dG" in group["features"][k] for k in group["features"]))
                    res = _SetResult()
                    progress = Progress(n_frames, f"predict {s}", quiet=quiet)
                    items = _set_items(group, potential, chunk_frames, set_forces,
                                       frames=set_stress or not stored or potential.baseline is not None, stored=stored)
                    work = functools.partial(_predict_chunk, potential=potential, forces=set_forces,
                                             atomic=atomic_energies, stress=set_stress, device=device,
                                             where=f"{input_path} ({s} set)")
                    for item, parts in ordered_map(work, items, client):
                        res.extend(parts)
                        progress.update(len(item[3]))
                    progress.close()
                    results[s] = res.arrays()
                    if s == "train":
                        flag = np.zeros(n_frames, bool)
                        flag[validation_frames[validation_frames < n_frames]] = True
                        is_validation[s] = flag
        else:
            frames = _read_structure_frames(input_path, file_format)
            if forces is None:
                forces = bool(frames) and all(f.forces is not None for f in frames)
            if stress is None:
                stress = any(f.stress is not None for f in frames)
            groups["predict"] = list(dict.fromkeys(f.group for f in frames)) or [""]
            check_elements_covered(np.unique(np.concatenate([f.species for f in frames] or [[]])).astype(int),
                                   potential.elements, str(input_path), str(model_path))
            res = _SetResult()
            progress = Progress(len(frames), "predict", quiet=quiet)
            items = ((f0, block, None, [f.temperature for f in block], [f.step for f in block],
                      np.array([groups["predict"].index(f.group) for f in block], np.int32))
                     for f0 in range(0, len(frames), chunk_frames) for block in [frames[f0:f0 + chunk_frames]])
            work = functools.partial(_predict_chunk, potential=potential, forces=forces, atomic=atomic_energies,
                                     stress=stress, device=device, where=str(input_path))
            for item, parts in ordered_map(work, items, client):
                res.extend(parts)
                progress.update(len(item[1]))
            progress.close()
            results["predict"] = res.arrays()
    summary = {}
    with atomic_output(output_path, overwrite) as tmp:
        with h5py.File(tmp, "w") as out:
            write_root_attrs(out, "predict", inputs=[model_path, input_path], device=device)
            for s, arr in results.items():
                g = out.create_group(s)
                n_atoms = arr.get("n_atoms", np.zeros(0, np.int64))
                g.create_dataset("atom_offset", data=np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64))
                for k, v in arr.items():
                    g.create_dataset(k, data=v)
                if s in is_validation:
                    g.create_dataset("is_validation", data=is_validation[s])
                g.create_dataset("groups", data=np.array(groups[s], dtype=h5py.string_dtype()))
                summary[s] = _set_summary(arr)
                if len(groups[s]) > 1:
                    summary[s]["groups"] = _group_summaries(arr, groups[s])
                if summary[s]["extrapolating_frames"]:
                    warnings.warn(extrapolation_message(s, summary[s]["extrapolating_frames"], summary[s]["n_frames"]),
                                  stacklevel=2)
    return summary


def _set_summary(arr) -> dict:
    n_atoms = arr.get("n_atoms", np.zeros(0))
    out = dict(n_frames=int(len(n_atoms)), extrapolating_frames=int(np.count_nonzero(arr.get("extrapolation", []))))
    if len(n_atoms):
        err = (arr["energy_predicted"] - arr["energy_reference"]) / n_atoms
        ok = np.isfinite(err)
        out["energy_rmse_mev_per_atom"] = float(1e3 * np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else float("nan")
        out["energy_bias_mev_per_atom"] = float(1e3 * np.mean(err[ok])) if ok.any() else float("nan")
    if "forces_predicted" in arr:
        d = arr["forces_predicted"] - arr["forces_reference"]
        ok = np.isfinite(d)
        out["force_rmse_mev_per_angstrom"] = float(1e3 * np.sqrt(np.mean(d[ok] ** 2))) if ok.any() else float("nan")
    if "stress_reference" in arr:
        from hdnnp.units import EV_PER_ANGSTROM3_IN_GPA

        d = arr["stress_predicted"] - arr["stress_reference"]
        ok = np.isfinite(d)
        if ok.any():
            out["stress_rmse_gpa"] = float(EV_PER_ANGSTROM3_IN_GPA * np.sqrt(np.mean(d[ok] ** 2)))
    return out


def _group_summaries(arr, names) -> dict:
    """:func:`_set_summary` of the frames of each group."""
    out = {}
    offsets = np.concatenate([[0], np.cumsum(arr["n_atoms"])])
    for k, name in enumerate(names):
        frames = np.flatnonzero(arr["group"] == k)
        if not len(frames):
            continue
        atoms = frame_ranges(offsets, frames)
        part = {key: (v[atoms] if key in ("forces_predicted", "forces_reference", "atomic_energies", "forces_spread")
                      else v[frames]) for key, v in arr.items()}
        out[name or "(none)"] = _set_summary(part)
    return out

