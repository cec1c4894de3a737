"""Stage 3, ``hdnnp symmetry``: prepared.h5 -> symmetry.h5 (layout in docs/DESIGN.md).

Two streaming passes over the frames, ``chunk_frames`` at a time, so memory does not grow with
the number of frames:

1. raw values of every candidate for every atom (``<set>/raw``); on the training set also the
   running min/max of each candidate and a bounded uniform sample of atoms (reservoir
   sampling, ``fit_atoms`` per element) on which the selection is fitted;
2. selected features scaled to [-1, 1] (``features/<Sym>/values``) and, where the set has
   forces (or ``derivatives="always"``), their derivatives ``features/<Sym>/dG``; values
   outside [-1, 1] on the prediction set are counted per frame (extrapolation).

Then the feature table, the fitted feature set and the descriptor check are written.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import h5py
import numpy as np

from hdnnp.descriptors import ElementDescriptors, FeatureSet, compute_raw
from hdnnp.descriptors.compute import compute_descriptors_batch, compute_raw_batch
from hdnnp.descriptors.check import descriptor_check
from hdnnp.descriptors.features import DEFAULT_CUTOFF_ANGSTROM, DEFAULT_N_FEATURES
from hdnnp.descriptors.grids import AUTO_PROBE_ANGSTROM, AUTO_RADIAL_POINTS, AUTO_ZETAS, auto_grid, grid_from_file
from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError
from hdnnp.h5io import (SET_NAMES, atomic_output, check_can_write, check_free_space, has_reference_stresses,
                        iter_frame_chunks, open_stage_file, write_root_attrs)
from hdnnp.kernels import resolve_device
from hdnnp.model import outside_training_range
from hdnnp.parallel import check_parallel_options, dask_client, ordered_map
from hdnnp.progress import Progress

DERIVATIVE_MODES = ("auto", "always", "never")
DERIVATIVE_PRECISIONS = ("float64", "float32")


class _Reservoir:
    """Uniform sample of at most ``size`` rows from a stream (Vitter's algorithm R, vectorised)."""

    def __init__(self, size: int, n_cols: int, rng):
        self.size, self.rng, self.seen = size, rng, 0
        self.values = np.zeros((size, n_cols))
        self.forces = np.full((size, 3), np.nan)

    def add(self, values, forces):
        m = len(values)
        index = self.seen + np.arange(m)
        slot = np.where(index < self.size, index, self.rng.integers(0, index + 1))
        take = slot < self.size
        self.values[slot[take]] = values[take]
        if forces is not None:
            self.forces[slot[take]] = forces[take]
        self.seen += m

    def rows(self):
        n = min(self.seen, self.size)
        return self.values[:n], self.forces[:n]


def _appendable(group, name, tail, dtype):
    return group.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                                chunks=(max(1, min(65536, 2 ** 20 // max(1, int(np.prod(tail)) * 8))), *tail))


def _append(ds, values):
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


def _raw_of(frame, fs, device, where: str):
    """Raw candidate values of one frame; a frame no neighbour list can handle is named."""
    try:
        return compute_raw(frame.positions, frame.cell, frame.pbc, frame.species, fs, device=device)
    except HdnnpError as exc:
        raise HdnnpError(f"{where}: {exc}") from None


def _raw_of_chunk(item, fs, device, where: str):
    """Pass 1 for one ``(first, FrameChunk)``: raw values of its frames, concatenated (the unit
    of work :func:`hdnnp.parallel.ordered_map` runs here or on a Dask worker); on a GPU in
    launches of many frames. An error is named with its frame (found by going frame by frame)."""
    first, chunk = item
    frames = [chunk.frame(k) for k in range(len(chunk))]
    try:
        return np.concatenate(compute_raw_batch([(f.positions, f.cell, f.pbc, f.species) for f in frames], fs,
                                                device=device))
    except HdnnpError:
        pass
    return np.concatenate([_raw_of(f, fs, device, f"{where}, frame {first + k})") for k, f in enumerate(frames)])


def _descriptors_of_chunk(item, fs, device, with_deriv: bool, with_virial: bool):
    """Pass 2 for one ``(first, FrameChunk, raw or None)``: per frame its descriptors
    (``dict[Z, ElementDescriptors]``) and whether it is periodic; without derivatives they are
    the selected, scaled columns of the stored raw values."""
    _, chunk, raw_chunk = item
    frames = [chunk.frame(k) for k in range(len(chunk))]
    periodic = [bool(np.all(f.pbc)) for f in frames]
    if with_deriv:  # runs of frames that need the same outputs, on a GPU in launches of many frames
        out, k0 = [], 0
        for k1 in range(1, len(frames) + 1):
            if k1 == len(frames) or periodic[k1] != periodic[k0]:
                run = [(f.positions, f.cell, f.pbc, f.species) for f in frames[k0:k1]]
                out += zip(compute_descriptors_batch(run, fs, derivatives=True, device=device,
                                                     stress=with_virial and periodic[k0]), periodic[k0:k1])
                k0 = k1
        return out
    out = []
    for k, frame in enumerate(frames):
        desc = {}
        a0 = int(chunk.atom_offset[k])
        for z in fs.elements:
            atoms = np.nonzero(frame.species == z)[0]
            if len(atoms):
                desc[z] = ElementDescriptors(atoms, fs.scale(z, raw_chunk[a0 + atoms][:, fs.selected[z]]))
        out.append((desc, periodic[k]))
    return out


def symmetry(prepared_path, output_path, n_features: int = DEFAULT_N_FEATURES, device: str = "auto",
             selection: str = "cur", features=None, cutoff: float = DEFAULT_CUTOFF_ANGSTROM,
             chunk_frames: int = 32, derivatives: str = "auto", fit_atoms: int = 20000,
             check_pairs: int = 20000, seed: int = 0, overwrite: bool = False, quiet: bool = False,
             grid: str = "seed", grid_points: int = AUTO_RADIAL_POINTS, grid_zetas=AUTO_ZETAS,
             derivative_precision: str = "float64", workers: int | None = None, scheduler: str | None = None) -> dict:
    """Compute, select and scale the symmetry functions of prepared.h5; write symmetry.h5.

    ``grid``: the candidates, ``seed``, ``auto`` (from the cutoff, the shortest distance of the
    training frames, ``grid_points`` and ``grid_zetas``) or a file of n2p2 symfunction lines
    (:mod:`hdnnp.descriptors.grids`).
    ``features``: candidate indices to keep instead of an automatic ``selection`` (cur|fps).
    ``workers``/``scheduler``: compute the chunks of frames on a local Dask cluster of that many
    processes or on the cluster at that address (:mod:`hdnnp.parallel`); the output is the
    serial one, bit for bit.
    ``derivatives``: auto (for sets with forces) | always | never. ``derivative_precision``:
    float64 or float32, the type in which the derivatives dG/dr and the strain derivatives are
    stored (and then held by training): float32 halves the largest datasets (relative rounding
    6e-8; measured without loss of accuracy, README "hdnnp train"). Returns a summary dict.
    """
    if derivatives not in DERIVATIVE_MODES:
        raise HdnnpError(f"--derivatives must be one of {', '.join(DERIVATIVE_MODES)}")
    if derivative_precision not in DERIVATIVE_PRECISIONS:
        raise HdnnpError(f"--derivative-precision must be one of {', '.join(DERIVATIVE_PRECISIONS)}")
    if fit_atoms < 1:
        raise HdnnpError(f"--fit-atoms: expected at least 1 atom per element, got {fit_atoms}")
    if chunk_frames < 1:
        raise HdnnpError("--chunk-frames must be at least 1")
    check_parallel_options(workers, scheduler)
    check_can_write(output_path, overwrite, inputs=[prepared_path])
    device = resolve_device(device)
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    with open_stage_file(prepared_path, "prepare") as src:
        sets = [s for s in SET_NAMES if s in src]
        if "train" not in sets:
            raise HdnnpError(f"{prepared_path}: has no training set ('train' group)")
        if len(src["train/frames/atom_offset"]) < 2:
            raise HdnnpError(f"{prepared_path}: has no training frames (a prediction-only file): the symmetry "
                             "functions are fitted on training data; predict it with hdnnp predict "
                             f"{prepared_path} --model model.h5")
        if "elements" in src.attrs:
            elements = [int(z) for z in src.attrs["elements"]]
        else:
            elements = sorted({int(z) for s in sets for z in np.unique(src[s]["atoms/species"][:])})
        if grid == "seed":
            fs = FeatureSet.default(elements, cutoff=cutoff)
        elif grid == "auto":
            from hdnnp.baseline import iter_frames, shortest_distances

            found = shortest_distances(iter_frames(src["train"]), elements, AUTO_PROBE_ANGSTROM)
            fs = auto_grid(elements, cutoff, min(found.values(), default=AUTO_PROBE_ANGSTROM), grid_points,
                           grid_zetas)
        else:
            fs = grid_from_file(grid, elements)
        if features is not None:
            features = [int(c) for c in features]
        n_frames = {s: len(src[s]["frames/atom_offset"]) - 1 for s in sets}
        summary = {"device": device, "n_candidates": fs.n_candidates, "sets": {}}
        check_free_space(output_path, _estimated_size(src, sets, fs, n_features, derivatives, prepared_path,
                                                      np.dtype(derivative_precision).itemsize), "the symmetry file")

        with atomic_output(output_path, overwrite) as tmp, h5py.File(tmp, "w") as out, \
                dask_client(workers, scheduler) as client:
            write_root_attrs(out, "symmetry", inputs=[prepared_path],
                             elements=np.array(fs.elements, np.int32),
                             options=json.dumps({"n_features": n_features, "selection": selection,
                                                 "features": features, "cutoff": cutoff,
                                                 "derivatives": derivatives, "device": device,
                                                 "fit_atoms": fit_atoms, "seed": seed, "grid": fs.grid,
                                                 "derivative_precision": derivative_precision}))
            for s in sets:
                out.copy(src[s], out, name=s)

            # -- pass 1: raw values of every candidate; statistics and sample on train ------
            progress = Progress(sum(n_frames.values()), "symmetry pass 1/2 (raw candidates)", quiet=quiet)
            vmin = {z: np.full(fs.n_candidates, np.inf) for z in fs.elements}
            vmax = {z: np.full(fs.n_candidates, -np.inf) for z in fs.elements}
            sample = {z: _Reservoir(fit_atoms, fs.n_candidates, rng) for z in fs.elements}
            for s in sets:
                n_atoms = int(src[s]["frames/atom_offset"][-1])
                raw_ds = out[s].create_dataset("raw", shape=(n_atoms, fs.n_candidates), dtype=np.float64,
                                               chunks=(min(n_atoms, 4096), fs.n_candidates) if n_atoms else None)
                work = functools.partial(_raw_of_chunk, fs=fs, device=device, where=f"{prepared_path} ({s} set")
                for (first, chunk), raw in ordered_map(work, iter_frame_chunks(src[s], chunk_frames), client):
                    a_base = int(src[s]["frames/atom_offset"][first])
                    raw_ds[a_base:a_base + len(raw)] = raw
                    if s == "train":
                        for z in fs.elements:
                            rows = chunk.species == z
                            if rows.any():
                                vmin[z] = np.minimum(vmin[z], raw[rows].min(axis=0))
                                vmax[z] = np.maximum(vmax[z], raw[rows].max(axis=0))
                                sample[z].add(raw[rows], None if chunk.forces is None else chunk.forces[rows])
                    progress.update(len(chunk))
            progress.close()

            # -- fit the selection and the ranging on the training sample -----------------------
            fs.fit({z: sample[z].rows()[0] for z in fs.elements}, n_features=n_features, method=selection,
                   keep=features, ranges={z: (vmin[z], vmax[z]) for z in fs.elements})

            # -- pass 2: selected, scaled features and their derivatives -----------------------
            progress = Progress(sum(n_frames.values()), "symmetry pass 2/2 (features)", quiet=quiet)
            for s in sets:
                has_forces = "atoms/forces" in src[s]
                with_deriv = derivatives == "always" or (derivatives == "auto" and has_forces)
                summary["sets"][s] = _features_of_set(src[s], out[s], fs, device, with_deriv, chunk_frames, progress,
                                                      np.dtype(derivative_precision), client)
            progress.close()

            table = out.create_group("features")
            for name, column in fs.table().items():
                table.create_dataset(name, data=column)
            fs.to_h5(out.create_group("feature_set"))
            check = descriptor_check(fs, {z: sample[z].rows() for z in fs.elements}, max_pairs=check_pairs, rng=rng)
            group = out.create_group("descriptor_check")
            for key, value in check.items():
                if isinstance(value, str):
                    group.attrs[key] = value
                else:
                    group.create_dataset(key, data=value)
            summary["descriptor_check"] = {int(n): float(c) for n, c in
                                           zip(check.get("n_features", []), check.get("correlation", []))}

    summary["selected"] = {symbol(z): [fs.describe(c) for c in fs.selected[z]] for z in fs.elements}
    summary["wall_time_s"] = time.perf_counter() - t_start
    return summary


def _estimated_size(src, sets, fs, n_features: int, derivatives: str, prepared_path, deriv_bytes: int = 8) -> float:
    """Bytes symmetry.h5 will take, about: the copied frames, ``raw`` (every candidate), the
    selected features and, with derivatives, one pair per neighbour-list entry of each atom
    (the mean over the first training frame) plus its own (two int64 indices and 3 values of
    ``deriv_bytes`` per feature); the strain derivatives with stresses."""
    from hdnnp.neighbors import neighbor_list

    frame = next(iter_frame_chunks(src["train"], 1))[1].frame(0)
    entries = len(neighbor_list(frame.positions, frame.cell, frame.pbc, fs.cutoff)) / max(len(frame.species), 1)
    total = float(Path(prepared_path).stat().st_size)
    for s in sets:
        n_atoms = int(src[s]["frames/atom_offset"][-1])
        total += n_atoms * (fs.n_candidates + n_features + 1) * 8
        if derivatives == "always" or (derivatives == "auto" and "atoms/forces" in src[s]):
            total += n_atoms * (entries + 1) * (3 * n_features * deriv_bytes + 16)
            if has_reference_stresses(src[s]):  # the strain derivatives (see _features_of_set)
                total += n_atoms * n_features * 9 * deriv_bytes
    return total


def _features_of_set(src, dst, fs, device, with_deriv, chunk_frames, progress, deriv_dtype=np.float64,
                     client=None) -> dict:
    """Pass 2 for one frame set: ``features/<Sym>/...`` and ``extrapolation``; with derivatives
    and reference stresses in the set also ``features/<Sym>/virial`` (n_rows, n_sel, 3, 3), the
    strain derivatives W of every atom's scaled features (zeros in frames not periodic in all
    three directions), for stress training."""
    with_virial = with_deriv and has_reference_stresses(src)
    groups = {}
    for z in fs.elements:
        g = dst.create_group(f"features/{symbol(z)}")
        n_sel = fs.n_features(z)
        g.attrs["atomic_number"] = z
        g.attrs["selected"] = fs.selected[z]
        groups[z] = {"values": _appendable(g, "values", (n_sel,), np.float64),
                     "atom_index": _appendable(g, "atom_index", (), np.int64),
                     "frame_offset": [0], "rows": 0}
        if with_deriv:
            groups[z].update(center=_appendable(g, "dG/center", (), np.int64),
                             atom=_appendable(g, "dG/atom", (), np.int64),
                             dvalues=_appendable(g, "dG/values", (n_sel, 3), deriv_dtype),
                             pair_offset=[0], pairs=0)
        if with_virial:
            groups[z]["virial"] = _appendable(g, "virial", (n_sel, 3, 3), deriv_dtype)
    raw_ds = dst["raw"]
    extrapolation = []
    atom_offset = src["frames/atom_offset"]
    items = ((first, chunk, None if with_deriv else raw_ds[int(atom_offset[first]):
                                                           int(atom_offset[first]) + len(chunk.species)])
             for first, chunk in iter_frame_chunks(src, chunk_frames))
    work = functools.partial(_descriptors_of_chunk, fs=fs, device=device, with_deriv=with_deriv,
                             with_virial=with_virial)
    for (first, chunk, _), computed in ordered_map(work, items, client):
        a_base = int(atom_offset[first])
        per_z = {z: {"values": [], "atom_index": [], "center": [], "atom": [], "dvalues": [], "virial": []}
                 for z in fs.elements}
        for k, (desc, periodic) in enumerate(computed):
            f_base = a_base + int(chunk.atom_offset[k])
            n_out = 0
            for z in fs.elements:
                acc, state = per_z[z], groups[z]
                d = desc.get(z)
                n_rows = 0 if d is None else len(d.atom_index)
                if d is not None:
                    acc["values"].append(d.values)
                    acc["atom_index"].append(f_base + d.atom_index)
                    n_out += int(outside_training_range(d.values).sum())
                state["rows"] += n_rows
                state["frame_offset"].append(state["rows"])
                if with_deriv:
                    if d is not None:
                        acc["center"].append(state["rows"] - n_rows + d.pair_row)
                        acc["atom"].append(f_base + d.pair_atom)
                        acc["dvalues"].append(d.dvalues)
                        state["pairs"] += len(d.pair_row)
                        if with_virial:
                            acc["virial"].append(d.virial if periodic else
                                                 np.zeros((n_rows, d.values.shape[1], 3, 3)))
                    state["pair_offset"].append(state["pairs"])
            extrapolation.append(n_out)
        for z in fs.elements:
            acc, state = per_z[z], groups[z]
            if acc["values"]:
                _append(state["values"], np.concatenate(acc["values"]))
                _append(state["atom_index"], np.concatenate(acc["atom_index"]))
                if with_deriv:
                    _append(state["center"], np.concatenate(acc["center"]))
                    _append(state["atom"], np.concatenate(acc["atom"]))
                    _append(state["dvalues"], np.concatenate(acc["dvalues"]))
                if with_virial:
                    _append(state["virial"], np.concatenate(acc["virial"]))
        progress.update(len(chunk))
    for z in fs.elements:
        g = dst[f"features/{symbol(z)}"]
        g.create_dataset("frame_offset", data=np.array(groups[z]["frame_offset"], np.int64))
        if with_deriv:
            g.create_dataset("dG/frame_offset", data=np.array(groups[z]["pair_offset"], np.int64))
    extrapolation = np.array(extrapolation, np.int64)
    dst.create_dataset("extrapolation", data=extrapolation)
    dst.attrs["derivatives"] = with_deriv
    dst.attrs["virial"] = with_virial
    return {"n_frames": len(extrapolation), "derivatives": with_deriv,
            "extrapolating_frames": int(np.count_nonzero(extrapolation)),
            "max_extrapolation": int(extrapolation.max(initial=0))}
