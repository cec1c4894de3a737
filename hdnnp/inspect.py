"""``hdnnp inspect FILE.h5``: a readable summary of any hdnnp intermediate.

Prints the root attributes (stage, command, created, version, inputs, elements), a summary of
every frame set found (a group with ``frames/atom_offset``: frames, atoms per element,
temperatures with frame counts, energy and energy-per-atom ranges, forces), then every group
and dataset with its shape and dtype. Generic, so it also describes later stages' files.
Reads per-atom data in chunks, so it works on files larger than memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from hdnnp.elements import symbol
from hdnnp.h5io import open_hdf5, read_strings

#: Atoms read per chunk when counting species.
_CHUNK_ATOMS = 1 << 20
#: At most this many datasets are listed in the tree.
_MAX_TREE_LINES = 200


def _attr_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=20, separator=", ")
    return str(value)


def frame_set_summary(group: h5py.Group) -> list[str]:
    """Lines describing one ragged frame set (see :mod:`hdnnp.h5io`)."""
    offsets = group["frames/atom_offset"][:]
    n_frames = len(offsets) - 1
    n_atoms = int(offsets[-1])
    lines = [f"  frames: {n_frames}, atoms: {n_atoms}"]
    if n_frames == 0:
        return lines
    natoms = np.diff(offsets)
    lines.append(f"  atoms per frame: {natoms.min()}" + (f"-{natoms.max()}" if natoms.max() != natoms.min() else ""))
    if "atoms/species" in group:
        species = group["atoms/species"]
        counts = np.zeros(0, np.int64)
        for start in range(0, species.shape[0], _CHUNK_ATOMS):
            c = np.bincount(species[start:start + _CHUNK_ATOMS])
            counts = np.pad(counts, (0, max(0, len(c) - len(counts))))
            counts[:len(c)] += c
        per_element = ", ".join(f"{symbol(z)} {int(n)}" for z, n in enumerate(counts) if n)
        lines.append(f"  atoms per element: {per_element}")
    if "frames/temperature" in group:
        temperature = group["frames/temperature"][:]
        known = temperature[~np.isnan(temperature)]
        values, counts = np.unique(known, return_counts=True)
        parts = [f"{t:g} K: {n}" for t, n in zip(values, counts)]
        if len(known) < n_frames:
            parts.append(f"unknown: {n_frames - len(known)}")
        lines.append(f"  temperatures (frames): {', '.join(parts)}")
    if "frames/energy" in group:
        energy = group["frames/energy"][:]
        finite = np.isfinite(energy)
        if finite.any():
            per_atom = energy[finite] / natoms[finite]
            lines.append(f"  energy: {energy[finite].min():.6f} .. {energy[finite].max():.6f} eV")
            lines.append(f"  energy per atom: {per_atom.min():.6f} .. {per_atom.max():.6f} eV/atom")
        if not finite.all():
            lines.append(f"  frames without energy: {int((~finite).sum())}")
    if "frames/step" in group:
        step = group["frames/step"]
        lines.append(f"  steps: {int(np.min(step[:]))} .. {int(np.max(step[:]))}")
    lines.append(f"  forces: {'yes' if 'atoms/forces' in group else 'no'}")
    if "sources" in group:
        sources = read_strings(group["sources"])
        lines.append(f"  sources: {', '.join(Path(s).name for s in sources)}")
    return lines


def inspect_file(path) -> str:
    """The summary of an hdnnp HDF5 file as text (raises :class:`HdnnpError` if unreadable)."""
    path = Path(path)
    h5 = open_hdf5(path)
    out = [f"{path}"]
    with h5:
        attrs = dict(h5.attrs)
        if "stage" not in attrs:
            out.append("  (no 'stage' attribute: not written by hdnnp)")
        for key in ("stage", "command", "created", "hdnnp_version", "schema_version"):
            if key in attrs:
                out.append(f"{key}: {_attr_text(attrs.pop(key))}")
        if "inputs" in attrs:
            try:
                inputs = json.loads(_attr_text(attrs.pop("inputs")))
                out.append(f"inputs: {len(inputs)} file(s)")
                out.extend(f"  {item['path']}  sha256 {item['sha256'][:12]}..." for item in inputs)
            except (ValueError, KeyError, TypeError):
                pass
        if "elements" in attrs:
            out.append("elements: " + ", ".join(symbol(z) for z in np.atleast_1d(attrs.pop("elements"))))
        for key, value in sorted(attrs.items()):
            out.append(f"{key}: {_attr_text(value)}")

        for name, obj in h5.items():
            if isinstance(obj, h5py.Group) and "frames/atom_offset" in obj:
                out.append(f"set '{name}':")
                out.extend(frame_set_summary(obj))

        out.append("contents:")
        listed = []

        def visit(name, obj):
            if len(listed) >= _MAX_TREE_LINES:
                return
            depth = name.count("/")
            if isinstance(obj, h5py.Dataset):
                listed.append(f"  {'  ' * depth}{name.rsplit('/', 1)[-1]}  {obj.shape} {obj.dtype}")
            else:
                listed.append(f"  {'  ' * depth}{name.rsplit('/', 1)[-1]}/")

        h5.visititems(visit)
        out.extend(listed)
        if len(listed) >= _MAX_TREE_LINES:
            out.append(f"  ... (first {_MAX_TREE_LINES} entries shown)")
    return "\n".join(out)
