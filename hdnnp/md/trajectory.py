"""md.h5: the trajectory of ``hdnnp md`` in the project's frame-set layout, written in chunks.

Layout (root attributes as every stage output, ``stage = "md"``; ``settings`` JSON of the run,
``status`` ``complete`` or ``stopped: <reason>``, ``model`` path and SHA-256)::

    trajectory/frames/atom_offset, energy (potential energy, eV), cell, pbc, temperature
                 (instantaneous, K), step, source       as every frame set (hdnnp/h5io.py)
    trajectory/frames/time              (n_frames,) ps
    trajectory/frames/stress            (n_frames, 3, 3) eV/Å³, ASE sign (positive = tensile)
    trajectory/frames/kinetic_energy    (n_frames,) eV
    trajectory/frames/conserved_energy  (n_frames,) eV: E_pot + E_kin (+ thermostat and
                                        barostat terms for Nosé–Hoover / MTK; NaN for Langevin)
    trajectory/atoms/positions, species, forces          Å, Z, eV/Å (positions unwrapped)
    trajectory/atoms/velocities         (n_atoms, 3) Å/ps
    trajectory/guards/extrapolation_count, extrapolation_max_excess, min_distance (Å),
                      force_spread (eV/Å; NaN without a committee)   one value per frame
    trajectory/sources                  ("hdnnp md",)

While running, frames go to ``<output>.partial`` in chunks (memory bounded whatever the
length), and after each chunk the integrator state goes atomically to
``<output>.checkpoint``; ``--resume`` truncates the partial file to the checkpoint's frame
count and continues. The partial file is renamed to the output name only when the run ends
(completed, or stopped by a guard), so nothing half-written ever carries the final name.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from hdnnp.errors import HdnnpError

#: Per-frame datasets under trajectory/frames beyond atom_offset: name -> trailing shape, dtype.
FRAME_COLUMNS = {
    "energy": ((), np.float64), "cell": ((3, 3), np.float64), "pbc": ((3,), bool),
    "temperature": ((), np.float64), "step": ((), np.int64), "source": ((), np.int32),
    "time": ((), np.float64), "stress": ((3, 3), np.float64), "kinetic_energy": ((), np.float64),
    "conserved_energy": ((), np.float64),
}
#: Per-atom datasets under trajectory/atoms.
ATOM_COLUMNS = {"positions": ((3,), np.float64), "species": ((), np.int32), "forces": ((3,), np.float64),
                "velocities": ((3,), np.float64)}
#: Per-frame guard datasets under trajectory/guards.
GUARD_COLUMNS = {"extrapolation_count": ((), np.int64), "extrapolation_max_excess": ((), np.float64),
                 "min_distance": ((), np.float64), "force_spread": ((), np.float64)}
GROUPS = (("frames", FRAME_COLUMNS), ("atoms", ATOM_COLUMNS), ("guards", GUARD_COLUMNS))


def partial_path(output) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".partial")


def checkpoint_path(output) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".checkpoint")


class TrajectoryWriter:
    """Buffer frames (dicts of the columns above) and append them to ``trajectory/`` in chunks."""

    def __init__(self, h5: h5py.File, chunk_frames: int = 64):
        self.h5 = h5
        self.chunk_frames = chunk_frames
        self.buffer: list[dict] = []
        g = h5.require_group("trajectory")
        if "frames" not in g:
            g.create_dataset("frames/atom_offset", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(1024,))
            for group, columns in GROUPS:
                for name, (tail, dtype) in columns.items():
                    chunk = 4096 if group == "atoms" else 256
                    g.create_dataset(f"{group}/{name}", shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                                     chunks=(chunk, *tail))
            g.create_dataset("sources", data=np.array(["hdnnp md"], dtype=h5py.string_dtype()))
        self.group = g

    @property
    def n_frames(self) -> int:
        return len(self.group["frames/atom_offset"]) - 1

    def truncate(self, n_frames: int) -> None:
        """Keep the first ``n_frames`` frames (resume from a checkpoint)."""
        if n_frames > self.n_frames:
            raise HdnnpError(f"{self.h5.filename}: holds {self.n_frames} frames, the checkpoint "
                             f"expects {n_frames}; the two do not belong together")
        offsets = self.group["frames/atom_offset"]
        n_atoms = int(offsets[n_frames])
        offsets.resize(n_frames + 1, axis=0)
        for group, columns in GROUPS:
            for name in columns:
                self.group[f"{group}/{name}"].resize(n_atoms if group == "atoms" else n_frames, axis=0)

    def append(self, frame: dict) -> None:
        self.buffer.append(frame)
        if len(self.buffer) >= self.chunk_frames:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        frames, self.buffer = self.buffer, []
        offsets = self.group["frames/atom_offset"]
        counts = np.array([len(f["species"]) for f in frames], np.int64)
        _extend(offsets, offsets[-1] + np.cumsum(counts))
        for group, columns in GROUPS:
            for name in columns:
                values = [np.asarray(f[name]) for f in frames]
                _extend(self.group[f"{group}/{name}"],
                        np.concatenate(values) if group == "atoms" else np.stack(values))
        self.h5.flush()


def _extend(ds, values) -> None:
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


def write_checkpoint(path, state: dict, n_frames: int) -> None:
    """Integrator state (arrays and scalars) and the number of frames written, atomically."""
    from hdnnp.h5io import atomic_output

    with atomic_output(path, overwrite=True) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["n_frames"] = n_frames
            for key, value in state.items():
                if isinstance(value, str):
                    h5.attrs[key] = value
                else:
                    h5.create_dataset(key, data=np.asarray(value))


def read_checkpoint(path) -> tuple[dict, int]:
    path = Path(path)
    if not path.is_file():
        raise HdnnpError(f"{path}: no checkpoint to resume from (run without --resume)")
    try:
        with h5py.File(path, "r") as h5:
            state = {key: h5[key][()] for key in h5}
            state.update({k: v for k, v in h5.attrs.items() if k != "n_frames"})
            return state, int(h5.attrs["n_frames"])
    except (OSError, KeyError) as exc:
        raise HdnnpError(f"{path}: unreadable checkpoint ({exc})") from None
