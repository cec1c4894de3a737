"""HDF5 intermediates: the public contract shared by every stage (SPEC §7).

Every stage output carries root attributes ``hdnnp_version``, ``schema_version``, ``stage``,
``command`` (the command line), ``created`` (UTC, ISO 8601) and ``inputs`` (JSON list of
``{"path", "sha256"}``). Frame sets are ragged and live in a group per set (``train``,
``predict``)::

    <set>/frames/atom_offset   int64 (n_frames + 1)   atoms of frame f: [off[f], off[f+1])
    <set>/frames/energy        float64 (n_frames)     total potential energy, eV (NaN: unknown)
    <set>/frames/cell          float64 (n_frames,3,3) rows a, b, c, Å
    <set>/frames/pbc           bool (n_frames, 3)
    <set>/frames/temperature   float64 (n_frames)     K (NaN: unknown)
    <set>/frames/step          int64 (n_frames)       MD step (nstep) or frame index
    <set>/frames/source        int32 (n_frames)       index into <set>/sources
    <set>/sources              str (n_sources)        input file of each source index
    <set>/atoms/positions      float64 (n_atoms, 3)   Å
    <set>/atoms/species        int32 (n_atoms)        atomic numbers
    <set>/atoms/forces         float64 (n_atoms, 3)   eV/Å (present only when known)
    <set>/frames/stress        float64 (n_frames,3,3) eV/Å³, ASE's sign (positive = tensile); NaN:
                                                      unknown (absent in files before hdnnp 0.x)
    <set>/frames/group         int32 (n_frames)       index into <set>/groups (kind of structure,
                                                      e.g. Surface; "" when the input has none)
    <set>/groups               str (n_groups)

Writes are atomic: :func:`atomic_output` writes to a temporary file in the destination
directory and renames it into place only when the stage succeeded. Outputs are claimed for the
whole run (:func:`claim_output`, called by :func:`check_can_write` before any work): a second
hdnnp process that wants to write the same file is refused at once instead of silently
replacing the first one's result.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from hdnnp import __version__
from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError
from hdnnp.frames import stresses_of

#: Version of the HDF5 layout; bump on any incompatible change, readers check it.
SCHEMA_VERSION = 1

SET_NAMES = ("train", "predict")


def sha256_of(path, block_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_output(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any exception (including KeyboardInterrupt from Ctrl-C or SIGINT) the temporary file
    is removed and an existing ``path`` is left untouched. A SIGKILL can leave the hidden
    temporary file ``.<name>.tmp-<pid>`` behind, never a half-written file under ``path``.
    Refuses to replace an existing ``path`` unless ``overwrite`` is true.
    """
    path = Path(path)
    check_can_write(path, overwrite)
    # the temporary name stays within the 255 bytes a file name may have
    tmp = path.parent / f".{path.name[:200]}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        release_output(path)


@contextlib.contextmanager
def atomic_directory(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new temporary directory next to ``path``; on success it becomes ``path``.

    Like :func:`atomic_output` for a directory of files: on any exception the temporary
    directory is removed and an existing ``path`` is untouched; an existing ``path`` is refused
    unless ``overwrite``, and then replaced only after the new one is complete, by an atomic
    exchange of the two directories (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames,
    between which a SIGKILL would leave the old directory as ``.<name>.old-<pid>``).
    """
    import shutil

    path = Path(path)
    check_can_write(path, overwrite, directory=True)
    tmp = path.parent / f".{path.name[:200]}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name[:200]}.old-{os.getpid()}"
    try:
        tmp.mkdir()
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old directory
        else:
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    finally:
        release_output(path)


def check_free_space(path, need_bytes: float, what: str) -> None:
    """Fail before any work if the file system of ``path`` has less free space than an output
    of about ``need_bytes`` (plus 10 % and 64 MiB): HDF5 cannot fail cleanly on a full disk."""
    import shutil

    path = Path(path)
    directory = path.parent if path.parent.exists() else Path(".")
    free = shutil.disk_usage(directory).free
    need = 1.1 * float(need_bytes) + 64 * 2 ** 20
    if free < need:
        raise HdnnpError(f"{path}: {what} needs about {need / 2 ** 30:.2f} GiB, but only {free / 2 ** 30:.2f} GiB "
                         f"are free in {directory.resolve()}; free space or write elsewhere")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where
    the system or the file system cannot."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def save_or_rescue(save, path, what: str = "the result") -> None:
    """``save(path)``; if that fails with an OSError (disk full, directory gone or read-only at
    the end of a long run), ``save`` into a rescue file in the temporary directory (``$TMPDIR``)
    or the home directory and raise an :class:`HdnnpError` naming where ``what`` now is."""
    import tempfile

    path = Path(path)
    try:
        save(path)
        return
    except OSError as exc:
        first = exc
    tried = []
    for directory in (Path(tempfile.gettempdir()), Path.home()):
        rescue = directory / f"hdnnp-rescue-{os.getpid()}-{path.name[:100]}"
        try:
            save(rescue)
        except (OSError, HdnnpError) as exc:
            tried.append(f"{rescue}: {exc}")
            continue
        raise HdnnpError(f"{path}: could not be written ({first.strerror or first}); {what} was saved to {rescue} "
                         "instead: move it where you want it") from None
    raise HdnnpError(f"{path}: could not be written ({first.strerror or first}), nor a rescue copy "
                     f"({'; '.join(tried)}); {what} is lost") from None


# -- exclusive claims on outputs -----------------------------------------------------------------

try:
    import fcntl
except ImportError:  # not POSIX: no claims (the atomic rename still protects each file)
    fcntl = None

#: Outputs this process has claimed: resolved path -> (lock file descriptor, lock path).
_CLAIMS: dict = {}


def _lock_path(path: Path) -> Path:
    resolved = path.resolve()
    return resolved.parent / f".{resolved.name[:200]}.lock"


def claim_output(path) -> None:
    """Claim ``path`` for this process until :func:`release_output` (or exit).

    The claim is an exclusive ``flock`` on the hidden file ``.<name>.lock`` beside ``path``; the
    kernel drops it when the process ends however it ends, so a killed run never blocks the
    next one. A path another live process has claimed is an :class:`HdnnpError` naming that
    process; a directory where the lock cannot be created is one too (before any work).
    """
    path = Path(path)
    key = str(path.resolve())
    if fcntl is None or key in _CLAIMS:
        return
    lock = _lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HdnnpError(f"{path}: cannot write in {path.parent} ({exc.strerror}); choose a writable "
                             "output directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 500, 0).decode(errors="replace").strip()
            os.close(fd)
            raise HdnnpError(f"{path}: another hdnnp process is writing it now ({holder or 'unknown'}); wait for "
                             "it to finish, or choose another output name / --work-dir") from None
        try:  # the previous holder may have removed the lock file between our open and flock
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    import socket

    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:300]}".encode(), 0)
    _CLAIMS[key] = (fd, lock)


def release_output(path) -> None:
    """Give up this process's claim on ``path`` (no-op when it has none)."""
    entry = _CLAIMS.pop(str(Path(path).resolve()), None)
    if entry is not None:
        fd, lock = entry
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


@atexit.register
def release_all_claims() -> None:
    """Give up every claim of this process (the end of a command, or exit)."""
    for key in list(_CLAIMS):
        release_output(key)


def check_can_write(path, overwrite: bool = False, inputs=(), directory: bool = False) -> None:
    """Fail early (before any work) if ``path`` cannot be written as a stage output (a file, or
    with ``directory`` an output directory such as an export's), and claim it.

    ``inputs``: the files the command reads; an output that is one of them (the same file by
    any name) is refused even with ``overwrite``, since writing it would destroy the input.
    """
    path = Path(path)
    check_not_an_input(path, inputs)
    if not directory and path.is_dir():
        raise HdnnpError(f"{path}: is a directory, expected an output file name")
    if directory and path.exists() and not path.is_dir():
        raise HdnnpError(f"{path}: exists and is not a directory")
    if path.exists() and not overwrite:
        raise HdnnpError(f"{path}: exists already; pass --overwrite to replace it")
    if not path.parent.exists():
        raise HdnnpError(f"{path.parent}: output directory does not exist")
    claim_output(path)


def check_not_an_input(path, inputs) -> None:
    """Refuse an output ``path`` that is one of ``inputs`` (the same file by any name)."""
    for item in inputs:
        if item is not None and _same_file(Path(path), Path(item)):
            raise HdnnpError(f"{path}: is also an input of this command ({item}); writing it would "
                             "destroy that input, so choose another output name")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (resolved names, or the same inode if both exist)."""
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def write_root_attrs(h5: h5py.File, stage: str, inputs=(), **extra) -> None:
    """Write the root attributes every stage output carries (see module docstring)."""
    h5.attrs["hdnnp_version"] = __version__
    h5.attrs["schema_version"] = SCHEMA_VERSION
    h5.attrs["stage"] = stage
    h5.attrs["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    h5.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    h5.attrs["inputs"] = json.dumps(
        [{"path": str(Path(p).resolve()), "sha256": sha256_of(p)} for p in inputs]
    )
    for key, value in extra.items():
        h5.attrs[key] = value


def read_strings(dataset) -> list[str]:
    """A string dataset (``sources``, ``groups``, labels) as Python strings, whichever way h5py
    returns them (bytes or str)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()]]


def has_reference_stresses(group) -> bool:
    """Whether any frame of a frame-set group has a reference stress (``frames/stress`` finite)."""
    return "frames/stress" in group and bool(np.isfinite(group["frames/stress"][:]).any())


def _table_index(table: list, name: str) -> int:
    """Index of ``name`` in a string table being built (appended when new)."""
    if name not in table:
        table.append(name)
    return table.index(name)


def open_hdf5(path, expected: str = "an HDF5 file") -> h5py.File:
    """Open an HDF5 file for reading; a missing file, a directory or a non-HDF5 file is an
    :class:`HdnnpError` naming the path (``expected`` says what should have been there)."""
    path = Path(path)
    if not path.exists():
        raise HdnnpError(f"{path}: no such file")
    if path.is_dir():
        raise HdnnpError(f"{path}: is a directory, expected {expected}")
    if not path.is_file():
        raise HdnnpError(f"{path}: is not a regular file (a pipe, device or socket), expected {expected}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise HdnnpError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        check_self_contained(h5, path)
    except BaseException:
        h5.close()
        raise
    return h5


#: Bounds of the walk over an input file's objects (a crafted file may hard-link groups in cycles).
_MAX_OBJECTS, _MAX_DEPTH = 200_000, 32


def check_self_contained(h5: h5py.File, path) -> None:
    """Refuse HDF5 features that make a file read *other* files: external links, soft links,
    virtual datasets and datasets with external raw storage. hdnnp writes none of them; a
    crafted input using them could make a stage read any file the user can read and copy it
    into its outputs. Every object reachable from the root is checked (bounded walk)."""
    count = 0

    def refuse(name, what):
        raise HdnnpError(f"{path}: {name} is {what}; hdnnp reads only self-contained HDF5 files (plain groups "
                         "and datasets), so this file is refused")

    def walk(group, prefix, depth):
        nonlocal count
        if depth > _MAX_DEPTH:
            refuse(prefix, f"nested deeper than {_MAX_DEPTH} groups")
        for key in group:
            count += 1
            if count > _MAX_OBJECTS:
                refuse(prefix, f"one of more than {_MAX_OBJECTS} objects")
            name = f"{prefix}/{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                refuse(name, f"an external link to {link.filename}:{link.path}")
            if isinstance(link, h5py.SoftLink):
                refuse(name, f"a soft link to {link.path}")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                walk(obj, name, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                if plist.get_layout() == h5py.h5d.VIRTUAL:
                    refuse(name, "a virtual dataset (its data live in other files)")
                if plist.get_external_count() > 0:
                    refuse(name, "a dataset stored in external raw files")

    walk(h5, "", 0)


def open_stage_file(path, stages) -> h5py.File:
    """Open an hdnnp intermediate for reading, checking that it is one and of a usable kind.

    ``stages`` is a stage name or a tuple of accepted ones (e.g. ``("prepare", "symmetry")``).
    Raises :class:`HdnnpError` naming the file and what was expected.
    """
    if isinstance(stages, str):
        stages = (stages,)
    path = Path(path)
    if not path.exists():
        made_by = {"prepare": "hdnnp prepare", "symmetry": "hdnnp symmetry", "train": "hdnnp train",
                   "predict": "hdnnp predict", "md": "hdnnp md"}
        hint = " or ".join(dict.fromkeys(made_by[s] for s in stages if s in made_by))
        raise HdnnpError(f"{path}: no such file" + (f"; make it with {hint} (or hdnnp run)" if hint else ""))
    h5 = open_hdf5(path, f"an HDF5 file from hdnnp {'/'.join(stages)}")
    try:
        schema = h5.attrs.get("schema_version")
        stage = h5.attrs.get("stage")
        if schema is None or stage is None:
            raise HdnnpError(f"{path}: not an hdnnp file (no schema_version/stage attributes)")
        if int(schema) != SCHEMA_VERSION:
            raise HdnnpError(
                f"{path}: schema_version {int(schema)}, this hdnnp {__version__} reads "
                f"schema_version {SCHEMA_VERSION}; re-run the stage that made it"
            )
        stage = stage.decode() if isinstance(stage, bytes) else str(stage)
        if stage not in stages:
            raise HdnnpError(f"{path}: written by stage '{stage}', expected output of {' or '.join(repr(s) for s in stages)}")
        for name in h5:
            if isinstance(h5[name], h5py.Group) and "frames/atom_offset" in h5[name]:
                validate_frame_set(h5[name], path)
    except BaseException:
        h5.close()
        raise
    return h5


def _offsets_ok(offset: np.ndarray, total: int) -> bool:
    return (offset.ndim == 1 and len(offset) >= 1 and offset[0] == 0 and offset[-1] == total
            and bool(np.all(np.diff(offset) >= 0)))


def validate_frame_set(group: h5py.Group, path) -> None:
    """Check the structural invariants of a frame set (layout in the module docstring) and of
    the per-element feature blocks of symmetry.h5, naming the file and dataset that breaks one:
    offsets start at 0, never decrease and end at the length of what they index; every per-frame
    dataset has one row per frame and every per-atom dataset one row per atom, of the right
    shape; source indices point into ``sources``. Reads only offsets and shapes."""
    where = f"{path}: {group.name}"

    def bad(name, what):
        raise HdnnpError(f"{where}/{name}: {what} (a damaged or hand-edited file; make it again with the stage "
                         "that wrote it)")

    offset = group["frames/atom_offset"][:]
    if not np.issubdtype(offset.dtype, np.integer):
        bad("frames/atom_offset", f"expected integers, found {offset.dtype}")
    n_frames = len(offset) - 1
    if "atoms/positions" not in group or "atoms/species" not in group:
        bad("atoms", "positions or species missing")
    n_atoms = group["atoms/positions"].shape[0]
    if not _offsets_ok(offset, n_atoms):
        bad("frames/atom_offset", f"must start at 0, never decrease and end at the {n_atoms} atoms of "
                                  f"atoms/positions (found {offset[:1].tolist()} ... {offset[-1:].tolist()})")
    shapes = {"frames/energy": (n_frames,), "frames/cell": (n_frames, 3, 3), "frames/pbc": (n_frames, 3),
              "frames/temperature": (n_frames,), "frames/step": (n_frames,), "frames/source": (n_frames,),
              "atoms/positions": (n_atoms, 3), "atoms/species": (n_atoms,), "atoms/forces": (n_atoms, 3),
              "frames/stress": (n_frames, 3, 3), "frames/group": (n_frames,)}
    for name, shape in shapes.items():
        if name in group and group[name].shape != shape:
            bad(name, f"shape {group[name].shape}, expected {shape} ({n_frames} frames, {n_atoms} atoms)")
    if "frames/source" in group and "sources" in group and n_frames:
        src = group["frames/source"][:]
        if src.min() < 0 or src.max() >= len(group["sources"]):
            bad("frames/source", f"indices must lie in [0, {len(group['sources'])}) (the entries of sources)")
    if "frames/group" in group and n_frames:
        idx = group["frames/group"][:]
        if "groups" not in group or idx.min() < 0 or idx.max() >= len(group["groups"]):
            bad("frames/group", "indices must lie within the entries of groups")
    if "features" in group:
        for sym in group["features"]:
            g = group["features"][sym]
            if "frame_offset" not in g or "values" not in g:
                continue
            rows = g["frame_offset"][:]
            if len(rows) != n_frames + 1 or not _offsets_ok(rows, g["values"].shape[0]):
                bad(f"features/{sym}/frame_offset", f"expected {n_frames + 1} offsets from 0 to the "
                                                     f"{g['values'].shape[0]} rows of values")
            if "atom_index" in g and g["atom_index"].shape != (g["values"].shape[0],):
                bad(f"features/{sym}/atom_index", "expected one entry per row of values")
            if "dG" in g:
                pairs = g["dG/frame_offset"][:]
                n_pairs = g["dG/values"].shape[0]
                if len(pairs) != n_frames + 1 or not _offsets_ok(pairs, n_pairs):
                    bad(f"features/{sym}/dG/frame_offset", f"expected {n_frames + 1} offsets from 0 to the "
                                                           f"{n_pairs} derivative pairs")
                for name in ("center", "atom"):
                    if g[f"dG/{name}"].shape != (n_pairs,):
                        bad(f"features/{sym}/dG/{name}", "expected one entry per derivative pair")


class FrameSetWriter:
    """Append frames to ``<group>/frames`` and ``<group>/atoms`` in chunks (streaming).

    Datasets are chunked and resizable, so memory does not grow with the number of frames.
    """

    def __init__(self, group: h5py.Group, with_forces: bool, chunk_atoms: int = 65536):
        self.group = group
        self.with_forces = with_forces
        self.sources: list[str] = []
        frames = group.require_group("frames")
        atoms = group.require_group("atoms")
        cf = 4096

        def make(g, name, shape_tail, dtype, chunk):
            return g.create_dataset(name, shape=(0, *shape_tail), maxshape=(None, *shape_tail),
                                    dtype=dtype, chunks=(chunk, *shape_tail))

        self.atom_offset = frames.create_dataset("atom_offset", data=np.zeros(1, np.int64),
                                                 maxshape=(None,), chunks=(cf,))
        self.energy = make(frames, "energy", (), np.float64, cf)
        self.cell = make(frames, "cell", (3, 3), np.float64, cf)
        self.pbc = make(frames, "pbc", (3,), bool, cf)
        self.temperature = make(frames, "temperature", (), np.float64, cf)
        self.step = make(frames, "step", (), np.int64, cf)
        self.source = make(frames, "source", (), np.int32, cf)
        self.stress = make(frames, "stress", (3, 3), np.float64, cf)
        self.group_index = make(frames, "group", (), np.int32, cf)
        self.groups: list[str] = []
        self.positions = make(atoms, "positions", (3,), np.float64, chunk_atoms)
        self.species = make(atoms, "species", (), np.int32, chunk_atoms)
        self.forces = make(atoms, "forces", (3,), np.float64, chunk_atoms) if with_forces else None
        self.n_frames = 0
        self.n_atoms = 0

    def source_index(self, name: str) -> int:
        return _table_index(self.sources, name)

    @staticmethod
    def _append(ds, values):
        n = ds.shape[0]
        ds.resize(n + len(values), axis=0)
        ds[n:] = values

    def append(self, frames) -> None:
        """Append a list of :class:`hdnnp.frames.Frame`."""
        if not frames:
            return
        natoms = np.array([len(f.species) for f in frames], np.int64)
        self._append(self.atom_offset, self.n_atoms + np.cumsum(natoms))
        self._append(self.energy, np.array([f.energy for f in frames], np.float64))
        self._append(self.cell, np.array([f.cell for f in frames], np.float64).reshape(-1, 3, 3))
        self._append(self.pbc, np.array([f.pbc for f in frames], bool).reshape(-1, 3))
        self._append(self.temperature, np.array([f.temperature for f in frames], np.float64))
        self._append(self.step, np.array([f.step for f in frames], np.int64))
        self._append(self.source, np.array([self.source_index(f.source) for f in frames], np.int32))
        self._append(self.stress, stresses_of(frames))
        self._append(self.group_index, np.array([_table_index(self.groups, f.group) for f in frames], np.int32))
        self._append(self.positions, np.concatenate([f.positions for f in frames]))
        self._append(self.species, np.concatenate([f.species for f in frames]).astype(np.int32))
        if self.with_forces:
            if any(f.forces is None for f in frames):
                raise HdnnpError("cannot mix frames with and without forces in one set")
            self._append(self.forces, np.concatenate([f.forces for f in frames]))
        self.n_frames += len(frames)
        self.n_atoms += int(natoms.sum())

    def close(self) -> None:
        """Write the source table; call once after the last append."""
        self.group.create_dataset("sources", data=np.array(self.sources, dtype=h5py.string_dtype()))
        self.group.create_dataset("groups", data=np.array(self.groups, dtype=h5py.string_dtype()))


def read_frame_chunk(group: h5py.Group, start: int, stop: int, offsets=None, names=None):
    """Frames [start, stop) of a frame-set group as one :class:`hdnnp.frames.FrameChunk`
    (``offsets``: the group's whole ``frames/atom_offset`` when already read; ``names``: its
    group labels, to label the frames)."""
    from hdnnp.frames import FrameChunk

    off = (group["frames/atom_offset"][start:stop + 1] if offsets is None
           else offsets[start:stop + 1]).astype(np.int64)
    a0, a1 = int(off[0]), int(off[-1])
    return FrameChunk(
        atom_offset=off - a0,
        energy=group["frames/energy"][start:stop],
        cell=group["frames/cell"][start:stop],
        pbc=group["frames/pbc"][start:stop],
        temperature=group["frames/temperature"][start:stop],
        step=group["frames/step"][start:stop],
        positions=group["atoms/positions"][a0:a1],
        species=group["atoms/species"][a0:a1],
        forces=group["atoms/forces"][a0:a1] if "atoms/forces" in group else None,
        stress=group["frames/stress"][start:stop] if "frames/stress" in group else None,
        group=None if names is None else [names[i] for i in group["frames/group"][start:stop]],
    )


def read_frames(group: h5py.Group, start: int, stop: int) -> list:
    """Frames [start, stop) of a frame-set group as :class:`hdnnp.frames.Frame` objects."""
    chunk = read_frame_chunk(group, start, stop)
    return [chunk.frame(k) for k in range(len(chunk))]


def iter_frame_chunks(group: h5py.Group, chunk_frames: int = 256):
    """Yield ``(first_frame, FrameChunk)`` blocks of at most ``chunk_frames`` frames.

    Only one chunk is held in memory at a time.
    """
    offsets = group["frames/atom_offset"][:]
    n_frames = len(offsets) - 1
    names = read_strings(group["groups"]) if "frames/group" in group and "groups" in group else None
    for start in range(0, n_frames, chunk_frames):
        yield start, read_frame_chunk(group, start, min(start + chunk_frames, n_frames), offsets, names)


# --- checks at stage boundaries (shared by the stages that read another stage's output) -------

def require_members(h5: h5py.Group, names, what: str = "") -> None:
    """Fail with a clear message if ``h5`` lacks any of the groups/datasets ``names``.

    Catches a file of the right stage that is incomplete or was edited by another tool.
    """
    missing = [name for name in names if name not in h5]
    if missing:
        kind = f" as {what}" if what else ""
        raise HdnnpError(f"{h5.file.filename}: lacks {', '.join(missing)} under {h5.name}; "
                         f"not usable{kind} (incomplete file or written by another tool)")


def _element_names(elements) -> str:
    return ", ".join(symbol(z) for z in sorted(set(int(z) for z in elements))) or "none"


def check_elements_covered(data_elements, model_elements, data_label, model_label) -> None:
    """Fail if the data holds an element for which the model has no network (or features).

    ``data_elements``/``model_elements``: atomic numbers; the labels name the files in the
    message, e.g. ``check_elements_covered(species_in_set, feature_set.elements,
    "symmetry.h5 (predict set)", "model.h5")``.
    """
    missing = sorted(set(int(z) for z in data_elements) - set(int(z) for z in model_elements))
    if missing:
        raise HdnnpError(
            f"{data_label} contains {_element_names(missing)}, but {model_label} was trained "
            f"for {_element_names(model_elements)} only; a model cannot predict elements it "
            f"has no network for")


def check_feature_sets_match(expected, found, expected_label, found_label) -> None:
    """Fail unless two fitted feature sets (:class:`hdnnp.descriptors.FeatureSet`) are the same:
    elements, cutoff, candidate grid, selection and scaling ranges.

    Use where a stage combines features computed by one file's feature set with a model (or
    scaling) from another, e.g. predict reading scaled features from symmetry.h5 with
    a model.h5: a model for other features than the data is an error, not a silent mismatch.
    """
    def fail(what):
        raise HdnnpError(f"{found_label} was computed with other symmetry functions than "
                         f"{expected_label} ({what}); recompute the features with this model's "
                         f"feature set, or train a model on this data")

    if tuple(expected.elements) != tuple(found.elements):
        fail(f"elements {_element_names(found.elements)} vs {_element_names(expected.elements)}")
    if not np.isclose(float(expected.cutoff), float(found.cutoff), rtol=1e-12, atol=0.0):
        fail(f"cutoff {float(found.cutoff):g} Å vs {float(expected.cutoff):g} Å")
    if len(expected.kind) != len(found.kind):
        fail(f"{len(found.kind)} candidates vs {len(expected.kind)}")
    if (int(expected.cutoff_type), float(expected.cutoff_alpha)) != (int(found.cutoff_type), float(found.cutoff_alpha)):
        fail(f"cutoff type {found.cutoff_type} (alpha {found.cutoff_alpha:g}) vs {expected.cutoff_type} "
             f"(alpha {expected.cutoff_alpha:g})")
    for name in ("kind", "neighbor_a", "neighbor_b", "eta", "rs", "zeta", "lambda_", "rc"):
        a, b = np.asarray(getattr(expected, name)), np.asarray(getattr(found, name))
        if not np.allclose(a, b, rtol=1e-12, atol=0.0):
            fail(f"candidate grid differs in {name.rstrip('_')}")
    for z in expected.elements:
        for name in ("selected", "min", "max"):
            a = getattr(expected, name).get(z)
            b = getattr(found, name).get(z)
            if a is None or b is None:
                if a is not None or b is not None:
                    fail(f"{symbol(z)}: {name} present in only one of them")
                continue
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=0.0, equal_nan=True):
                fail(f"{symbol(z)}: {'selected features' if name == 'selected' else 'scaling ' + name} differ")
        a, b = expected.scaling.get(z), found.scaling.get(z)
        if (a is None) != (b is None) or (a is not None and not all(
                np.shape(x) == np.shape(y) and np.allclose(x, y, rtol=1e-12, atol=0.0) for x, y in zip(a, b))):
            fail(f"{symbol(z)}: scaling differs")
