"""Symmetry functions, derivatives and forces on a CUDA GPU, many frames per launch.

The kernels are in ``symmetry.cu`` (its header has the launch geometry); this module builds
the batch and calls them through a *launcher*: :class:`CudaLauncher` (CuPy on a GPU) or
:class:`hdnnp.kernels.emulate.EmulatedLauncher` (the same source compiled as C++ and run on
the CPU, NumPy arrays), so everything here is tested without a GPU.

One batch (:class:`DeviceFrames`): the frames' atoms and neighbour entries concatenated, the
neighbour list built on the device (:func:`device_frames`; periodic frames) or by
:func:`hdnnp.neighbors.neighbor_list` on the CPU and copied (clusters). Then

* :func:`raw_batch` — raw values, per-pair derivatives and strain derivatives per frame (the
  training data: ``hdnnp symmetry``);
* :func:`adjoint_batch` — values, then ∂E/∂G from the networks *on the device*, then forces and
  the strain derivative by contraction (``sf_contract``): ∂G/∂r is never formed (prediction,
  MD).

``precision="float32"`` evaluates the symmetry functions in single precision (the neighbour
list, the network and the force sums stay in double); ``scripts/gpu_check.py`` measures its
error against float64. No floating-point atomics anywhere: every sum has a fixed order, so a
batch gives the same bits every time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdnnp.errors import HdnnpError

KERNEL_SOURCE = Path(__file__).with_name("symmetry.cu")
KERNEL_NAMES = ("nl_build", "sf_entries", "sf_walk", "sf_virial", "sf_contract", "segment_sum")
#: precision name -> (C type of ``real`` in symmetry.cu, NumPy type)
PRECISIONS = {"float64": ("double", np.float64), "float32": ("float", np.float32)}
#: Bounds of one angular block in symmetry.cu (MAX_ANG, MAX_RAD).
MAX_ANG = MAX_RAD = 16
NL_THREADS = 64  # threads per block of nl_build (<= NL_MAX_THREADS); fixes the entry order
#: Frames too small for a cell list (fewer than 3 bins of width Rc along some direction) are
#: listed by nl_build trying every atom pair (O(N²)) up to this many atoms; beyond, by the CPU.
NL_DEVICE_MAX_ATOMS = 4096
WALK_THREADS = 64  # threads per block of sf_walk at most (fewer when the partial sums need it)
CONTRACT_THREADS = 64
ENTRY_THREADS = 256
SHARED_BYTES = 48 * 1024  # dynamic shared memory available without opting in
#: Atoms per launch: prediction (values and contraction), and with derivatives (the per-entry
#: derivatives take n_entries x n_cols x 3 reals, ~80 kB per atom with the seed's columns).
BATCH_ATOMS = 1 << 16
BATCH_ATOMS_DERIVATIVES = 1 << 13


class CudaLauncher:
    """Compiles ``symmetry.cu`` with CuPy (NVRTC) for one precision and launches its kernels."""

    def __init__(self, precision: str = "float64"):
        from hdnnp.kernels import gpu_status

        status = gpu_status()
        if status:
            raise HdnnpError(f"GPU symmetry functions unavailable: {status}")
        import cupy

        self.xp = cupy
        self.precision = precision
        self.dtype = np.dtype(PRECISIONS[precision][1])
        self._module = cupy.RawModule(code=KERNEL_SOURCE.read_text(),
                                      options=("--std=c++14", f"-DREAL={PRECISIONS[precision][0]}"))

    def __call__(self, name: str, grid: int, block: int, args, shared_mem: int = 0):
        if grid == 0:
            return
        self._module.get_function(name)((int(grid),), (int(block),), tuple(args), shared_mem=int(shared_mem))

    def to_host(self, a):
        return self.xp.asnumpy(a)


@functools.lru_cache(maxsize=None)
def cuda_launcher(precision: str = "float64") -> CudaLauncher:
    if precision not in PRECISIONS:
        raise HdnnpError(f"unknown GPU precision '{precision}', choose one of {', '.join(PRECISIONS)}")
    return CudaLauncher(precision)


def supports(plan) -> str:
    """Empty string when the kernels can evaluate ``plan``, else why not."""
    from hdnnp.descriptors.fast import _flat

    flat = _flat(plan)
    if flat.max_ang > MAX_ANG or flat.max_rad > MAX_RAD:
        return (f"an angular block with {flat.max_ang} (zeta, lambda) and {flat.max_rad} (eta, Rs) pairs; "
                f"the GPU kernel takes at most {MAX_ANG} and {MAX_RAD}")
    return ""


class DeviceTables:
    """A plan's :class:`~hdnnp.descriptors.fast.FlatPlan` on the device, in ``TABLE_ARGS`` order."""

    def __init__(self, plan, launcher):
        from hdnnp.descriptors.fast import _flat
        from hdnnp.descriptors.symmetry_functions import _TANH_PRE

        f = _flat(plan)
        xp, real = launcher.xp, launcher.dtype.type

        def ints(*cols):
            return xp.asarray(np.ascontiguousarray(np.column_stack(cols) if len(cols) > 1 else cols[0], np.int32))

        def reals(*cols):
            return xp.asarray(np.ascontiguousarray(np.column_stack(cols) if len(cols) > 1 else cols[0],
                                                   launcher.dtype))

        self.n_cols = f.n_cols
        self.out_pos = f.out_pos
        self.args = (
            reals(f.rcs), np.int32(len(f.rcs)), np.int32(f.cutoff_type), real(f.cutoff_alpha), real(_TANH_PRE),
            np.int32(len(f.g2_el)), ints(f.g2_el, f.g2_rck), reals(f.g2_eta, f.g2_rs),
            ints(f.blk_kind, f.blk_rck, f.blk_ranges), ints(f.pair_blocks), ints(f.pair_index),
            np.int32(f.pair_index.shape[0]), reals(f.ang_lambda, f.ang_norm, f.ang_zeta), ints(f.ang_int),
            np.int32(len(f.rad_eta)), reals(f.rad_eta, f.rad_rs), np.int32(f.n_cols),
            ints(f.col_ang, f.col_rad, f.out_pos), real(f.jk_limit))
        self.width = 2 * len(f.rcs) + len(f.rad_eta)  # row of the per-entry table (sf_entries)


_TABLES: dict = {}  # (launcher id, digest of the flat tables) -> (launcher, DeviceTables); 16 at most


def _tables(plan, launcher) -> DeviceTables:
    """The plan's device tables, uploaded once per launcher and table content (an MD step makes a
    new plan object every call; its tables are found here, not uploaded again)."""
    import hashlib

    from hdnnp.descriptors.fast import _flat

    digest = hashlib.sha1()
    for a in _flat(plan).arrays():
        a = np.asarray(a)
        digest.update(f"{a.dtype}{a.shape}".encode() + a.tobytes())
    key = (id(launcher), digest.hexdigest())
    if key not in _TABLES:
        if len(_TABLES) >= 16:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = (launcher, DeviceTables(plan, launcher))  # the launcher held: its id stays its own
    return _TABLES[key][1]


@dataclass
class DeviceFrames:
    """A batch of frames on the device: atoms and neighbour entries concatenated.

    Host: ``atom_first`` (n_frames + 1) first atom of each frame, ``entry_first`` (n_frames + 1)
    first entry, ``start`` (n_atoms + 1) first entry of each atom (global), ``j_host`` neighbour
    atom of each entry (global). Device: ``start_d``, ``i``, ``j`` (int64), ``vec`` (n_ent, 3) Å
    and ``dist`` (n_ent,) Å in the launcher's precision, ``el_j`` (int32) element index of j.
    """

    atom_first: np.ndarray
    entry_first: np.ndarray
    start: np.ndarray
    j_host: np.ndarray
    start_d: object
    i: object
    j: object
    vec: object
    dist: object
    el_j: object
    by_j: tuple | None = None  # entries grouped by neighbour atom (made when forces need it)

    @property
    def n_atoms(self) -> int:
        return int(self.atom_first[-1])

    @property
    def n_entries(self) -> int:
        return int(self.entry_first[-1])


def _bins(reach, n_atoms):
    """Bins per direction of the cell lists of frames periodic in all directions (reach (F, 3),
    atoms (F,)): as many as fit with a width >= Rc (plane spacing / Rc, floored), fewer where
    that would give more than two bins per atom; a row of 0 where some direction holds fewer
    than 3 (the 27 bins around an atom would not be distinct)."""
    reach = np.asarray(reach, float).reshape(-1, 3)
    n = np.floor((1.0 - 1e-9) / np.maximum(reach, 1e-300))
    excess = np.prod(np.minimum(n, 1e6), axis=1) / np.maximum(2 * np.asarray(n_atoms, float), 27.0)
    n = np.where((excess > 1)[:, None], np.maximum(3, np.floor(n / np.maximum(excess, 1.0)[:, None] ** (1 / 3))), n)
    return np.where(np.all(n >= 3, axis=1)[:, None], n, 0).astype(np.int64)


def device_frames(launcher, frames, cutoff: float, element_index) -> DeviceFrames:
    """The neighbour lists of ``frames`` ((positions, cell, pbc, species) each) on the device.

    ``nl_build`` lists frames periodic in all directions whose every direction holds 3 bins of
    width >= Rc from a cell list (O(N)), and other periodic frames of at most
    :data:`NL_DEVICE_MAX_ATOMS` atoms by trying every atom pair and lattice shift in reach; the
    cells are checked as :func:`hdnnp.neighbors.neighbor_list` checks them, all frames at once.
    Clusters, and the rest, get the CPU's list, copied. ``element_index(species)`` maps atomic
    numbers to the plan's element indices.
    """
    from hdnnp.neighbors import neighbor_list, periodic_geometry_batch

    xp = launcher.xp
    n_frames = len(frames)
    n_per = np.array([len(f[0]) for f in frames], np.int64)
    atom_first = np.concatenate([[0], np.cumsum(n_per)]).astype(np.int64)
    n_atoms = int(atom_first[-1])
    el = element_index(np.concatenate([np.asarray(f[3], np.int64) for f in frames] or [np.zeros(0, np.int64)]))
    pbc = np.array([np.broadcast_to(np.asarray(f[2], bool), (3,)) for f in frames]).reshape(-1, 3)
    frac = np.zeros((n_atoms, 3))
    cells = np.zeros((n_frames, 9))
    reach = np.full((n_frames, 3), -1.0)
    bins = np.zeros((n_frames, 3), np.int64)
    periodic = np.flatnonzero(pbc.any(axis=1) & (n_per > 0))
    if len(periodic):  # geometry of all periodic frames at once
        rows = np.repeat(np.isin(np.arange(n_frames), periodic), n_per)
        sub_cells = np.array([np.asarray(frames[k][1], float).reshape(3, 3) for k in periodic])
        f_k, o_k, reach_k = periodic_geometry_batch(np.concatenate([np.asarray(frames[k][0], float) for k in periodic]),
                                                    np.concatenate([[0], np.cumsum(n_per[periodic])]), sub_cells,
                                                    pbc[periodic], cutoff)
        frac[rows] = f_k + o_k
        cells[periodic] = sub_cells.reshape(-1, 9)
        reach[periodic] = np.where(pbc[periodic], reach_k, -1.0)
        full = pbc[periodic].all(axis=1)
        bins[periodic[full]] = _bins(reach_k[full], n_per[periodic[full]])
    binned = bins[:, 0] > 0
    on_device = np.zeros(n_frames, bool)
    on_device[periodic] = binned[periodic] | (n_per[periodic] <= NL_DEVICE_MAX_ATOMS)
    cells[~on_device], reach[~on_device] = 0.0, -1.0  # nl_build finds nothing for these atoms
    counts = np.zeros(n_atoms, np.int64)
    cpu_parts = {}
    for k in np.flatnonzero(~on_device):
        positions, cell, frame_pbc, _ = frames[k]
        cpu_parts[k] = neighbor_list(positions, cell, frame_pbc, cutoff)
        counts[atom_first[k]:atom_first[k + 1]] = np.diff(cpu_parts[k].start)
    # cell lists: bin of every atom of a binned frame, atoms sorted by (frame, bin)
    frame_of_atom = np.repeat(np.arange(n_frames), n_per)
    in_bins = binned[frame_of_atom]
    nb = bins[frame_of_atom[in_bins]]
    atom_bin = np.zeros((n_atoms, 3), np.int64)
    atom_bin[in_bins] = np.minimum((frac[in_bins] * nb).astype(np.int64), nb - 1)
    bin_first = np.concatenate([[0], np.cumsum(np.prod(bins, axis=1))]).astype(np.int64)
    c = atom_bin[in_bins]
    global_bin = bin_first[frame_of_atom[in_bins]] + (c[:, 0] * nb[:, 1] + c[:, 1]) * nb[:, 2] + c[:, 2]
    cell_atoms = np.flatnonzero(in_bins)[np.argsort(global_bin, kind="stable")]
    cell_start = np.concatenate([[0], np.cumsum(np.bincount(global_bin, minlength=int(bin_first[-1])))])
    atom_bin, bins, bin_first = atom_bin.astype(np.int32), bins.astype(np.int32), bin_first[:-1]
    cell_atoms = cell_atoms.astype(np.int64) if len(cell_atoms) else np.zeros(1, np.int64)
    cell_start = cell_start.astype(np.int64)
    frame_of = np.repeat(np.arange(n_frames, dtype=np.int32), n_per)
    args = (xp.asarray(frame_of), xp.asarray(atom_first), xp.asarray(frac), xp.asarray(cells), xp.asarray(reach),
            xp.asarray(bins), xp.asarray(bin_first), xp.asarray(atom_bin), xp.asarray(cell_start),
            xp.asarray(cell_atoms), np.float64(cutoff))
    count_d = xp.zeros(n_atoms, np.int64)
    dummy_i, dummy_f = xp.zeros(1, np.int64), xp.zeros(1, np.float64)
    if on_device.any():
        launcher("nl_build", n_atoms, NL_THREADS,
                 (np.int32(0), np.int64(n_atoms), *args, count_d, dummy_i, dummy_i, dummy_f, dummy_f))
        counts = np.where(np.repeat(on_device, n_per), launcher.to_host(count_d), counts)
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n_ent = int(start[-1])
    start_d = xp.asarray(start)
    j = xp.zeros(max(n_ent, 1), np.int64)
    vec = xp.zeros((max(n_ent, 1), 3))
    dist = xp.ones(max(n_ent, 1))
    if on_device.any():  # rows of frames listed on the CPU find nothing here (no cell, no reach)
        launcher("nl_build", n_atoms, NL_THREADS,
                 (np.int32(1), np.int64(n_atoms), *args, count_d, start_d, j, vec, dist))
    for k, nl in cpu_parts.items():
        e0, e1 = start[atom_first[k]], start[atom_first[k + 1]]
        j[e0:e1] = xp.asarray(nl.j + atom_first[k])
        vec[e0:e1] = xp.asarray(nl.vector)
        dist[e0:e1] = xp.asarray(nl.distance)
    j, vec, dist = j[:n_ent], vec[:n_ent], dist[:n_ent]
    i = xp.searchsorted(start_d[1:], xp.arange(n_ent), side="right")
    el_d = xp.asarray(el.astype(np.int32))
    return DeviceFrames(atom_first=atom_first, entry_first=start[atom_first], start=start,
                        j_host=launcher.to_host(j), start_d=start_d, i=i, j=j,
                        vec=xp.ascontiguousarray(vec.astype(launcher.dtype)),
                        dist=xp.ascontiguousarray(dist.astype(launcher.dtype)), el_j=el_d[j] if n_ent else el_d[:0])


def _entry_table(launcher, fd: DeviceFrames, tables: DeviceTables):
    etab = launcher.xp.zeros((max(fd.n_entries, 1), tables.width), launcher.dtype)
    launcher("sf_entries", -(-fd.n_entries // ENTRY_THREADS), ENTRY_THREADS,
             (np.int64(fd.n_entries), fd.dist, *tables.args, etab))
    return etab


def walk_threads(n_cols: int, itemsize: int) -> int:
    """Threads per block of sf_walk: a power of two <= WALK_THREADS whose partial sums
    (threads x (n_cols | 1) reals: an odd row length spreads the rows over the banks) fit in
    SHARED_BYTES."""
    threads = WALK_THREADS
    while threads > 1 and threads * (n_cols | 1) * itemsize > SHARED_BYTES:
        threads //= 2
    return threads


def walk(launcher, fd: DeviceFrames, tables: DeviceTables, derivatives: bool = False, scale=None, etab=None):
    """Raw values (n_atoms, n_cols) and, with ``derivatives``, the per-entry derivatives
    (n_ent, n_cols, 3) = ∂G_ic/∂R_p times ``scale`` (caller's column order), on the device.
    ``etab``: the per-entry table if already made (``sf_entries``)."""
    xp, dtype = launcher.xp, launcher.dtype
    n_cols = tables.n_cols
    if n_cols * fd.n_atoms == 0:
        return xp.zeros((fd.n_atoms, n_cols), dtype), (xp.zeros((fd.n_entries, n_cols, 3), dtype)
                                                       if derivatives else None)
    etab = _entry_table(launcher, fd, tables) if etab is None else etab
    scale = np.ones(n_cols) if scale is None else np.asarray(scale, float)
    scale_d = xp.asarray(np.ascontiguousarray(scale[tables.out_pos], dtype))
    values = xp.zeros((fd.n_atoms, n_cols), dtype)
    dentry = xp.zeros((max(fd.n_entries, 1) if derivatives else 1, n_cols, 3), dtype)
    threads = walk_threads(n_cols, dtype.itemsize)
    launcher("sf_walk", fd.n_atoms, threads,
             (np.int64(fd.n_atoms), fd.start_d, fd.el_j, fd.vec, fd.dist, etab, *tables.args, scale_d,
              np.int32(bool(derivatives)), values, dentry), shared_mem=threads * (n_cols | 1) * dtype.itemsize)
    return values, (dentry[:fd.n_entries] if derivatives else None)


def entry_virials(launcher, fd: DeviceFrames, dentry):
    """W (n_atoms, n_cols, 3, 3) = Σ_p R_p ⊗ dentry[p] per atom (``sf_virial``)."""
    n_cols = dentry.shape[1]
    virial = launcher.xp.zeros((fd.n_atoms, n_cols, 3, 3), launcher.dtype)
    launcher("sf_virial", fd.n_atoms if n_cols else 0, min(64, max(n_cols, 1)),
             (np.int64(fd.n_atoms), fd.start_d, fd.vec, np.int32(n_cols), launcher.xp.ascontiguousarray(dentry),
              virial))
    return virial


def contract(launcher, fd: DeviceFrames, tables: DeviceTables, weights, etab=None):
    """dE/dR_p (n_ent, 3), float64, for w = ∂E/∂G (n_atoms, n_cols, caller's order)."""
    xp = launcher.xp
    dedr = xp.zeros((max(fd.n_entries, 1), 3), launcher.dtype)
    if tables.n_cols and fd.n_entries:
        etab = _entry_table(launcher, fd, tables) if etab is None else etab
        launcher("sf_contract", fd.n_atoms, CONTRACT_THREADS,
                 (np.int64(fd.n_atoms), fd.start_d, fd.el_j, fd.vec, fd.dist, etab, *tables.args,
                  xp.ascontiguousarray(weights.astype(launcher.dtype)), dedr))
    return dedr[:fd.n_entries].astype(np.float64)


def segment_sum(launcher, seg_start, values, order=None):
    """out[s] = Σ values[k] over the items k of segment s (``seg_start`` (n_seg + 1,), host),
    k = order[m] (or m) for m in seg_start[s]..seg_start[s+1]−1, summed in that order on the
    device (``segment_sum``): a scatter-add without atomics. ``values`` (n, ...) float64."""
    xp = launcher.xp
    n_seg = len(seg_start) - 1
    width = int(np.prod(values.shape[1:]))
    out = xp.zeros((n_seg, *values.shape[1:]))
    if n_seg and width and len(values):
        launcher("segment_sum", n_seg, min(128, -(-width // 32) * 32),
                 (np.int64(n_seg), xp.asarray(np.asarray(seg_start, np.int64)),
                  xp.asarray(np.zeros(1, np.int64) if order is None else np.asarray(order, np.int64)),
                  np.int32(order is not None), np.int64(width), xp.ascontiguousarray(values, np.float64), out))
    return out


def _by_neighbour(fd: DeviceFrames):
    """The entries grouped by their neighbour atom j: (segment starts (n_atoms + 1), order), host."""
    if fd.by_j is None:
        order = np.argsort(fd.j_host, kind="stable")
        fd.by_j = (np.searchsorted(fd.j_host[order], np.arange(fd.n_atoms + 1)), order)
    return fd.by_j


def forces_and_strain(launcher, fd: DeviceFrames, dedr):
    """Forces (n_atoms, 3) eV/Å and strain derivatives ∂E/∂ε (n_frames, 3, 3) eV from dE/dR_p.

    R_p = r_j − r_i + T_p, so F_k = −∂E/∂r_k = Σ_{p: i_p = k} dE/dR_p − Σ_{p: j_p = k} dE/dR_p, and
    ∂E/∂ε_ab = Σ_p R_p,a dE/dR_p,b over the frame's entries (as :func:`~hdnnp.descriptors.fast.adjoint_pass`).
    """
    by_j, order = _by_neighbour(fd)
    forces = segment_sum(launcher, fd.start, dedr) - segment_sum(launcher, by_j, dedr, order)
    outer = (fd.vec.astype(np.float64)[:, :, None] * dedr[:, None, :]).reshape(-1, 9)
    strain = segment_sum(launcher, fd.entry_first, outer)
    return forces, strain.reshape(-1, 3, 3)


def _batches(frames, limit: int):
    """Consecutive ranges of ``frames`` with at most ``limit`` atoms each (at least one frame)."""
    k0, atoms = 0, 0
    for k, f in enumerate(frames):
        n = len(f[0])
        if k > k0 and atoms + n > limit:
            yield k0, k
            k0, atoms = k, 0
        atoms += n
    if k0 < len(frames):
        yield k0, len(frames)


def raw_batch(frames, plan, derivatives: bool = False, virial: bool = False, deriv_scale=None, launcher=None):
    """Per frame ``(values, (pair_i, pair_j, dvalues) or None, W or None)`` as NumPy (float64),
    the same as :func:`hdnnp.descriptors.fast.symmetry_functions` gives one frame, computed on
    the device for all ``frames`` in launches of at most :data:`BATCH_ATOMS` atoms
    (:data:`BATCH_ATOMS_DERIVATIVES` with derivatives)."""
    from hdnnp.descriptors.symmetry_functions import atom_pairs

    launcher = launcher or cuda_launcher()
    tables = _tables(plan, launcher)
    derivatives = derivatives or virial
    out = []
    for k0, k1 in _batches(frames, BATCH_ATOMS_DERIVATIVES if derivatives else BATCH_ATOMS):
        fd = device_frames(launcher, frames[k0:k1], plan.cutoff, plan.species_index)
        values, dentry = walk(launcher, fd, tables, derivatives, deriv_scale)
        values = launcher.to_host(values).astype(np.float64)
        if derivatives:
            xp = launcher.xp
            pair_i, pair_j, entry_pair, self_pair = atom_pairs(np.repeat(np.arange(fd.n_atoms), np.diff(fd.start)),
                                                               fd.j_host, fd.n_atoms)
            d64 = dentry.astype(np.float64, copy=False)
            order = np.argsort(entry_pair, kind="stable")
            dpair = segment_sum(launcher, np.searchsorted(entry_pair[order], np.arange(len(pair_i) + 1)), d64, order)
            dpair[xp.asarray(self_pair)] -= segment_sum(launcher, fd.start, d64)  # every atom's self pair
            dpair = launcher.to_host(dpair)
            w = launcher.to_host(entry_virials(launcher, fd, dentry)).astype(np.float64) if virial else None
            pair_first = np.searchsorted(pair_i, fd.atom_first)
        for f in range(k1 - k0):
            a0, a1 = fd.atom_first[f], fd.atom_first[f + 1]
            pairs = wf = None
            if derivatives:
                p0, p1 = pair_first[f], pair_first[f + 1]
                pairs = (pair_i[p0:p1] - a0, pair_j[p0:p1] - a0, dpair[p0:p1])
                wf = w[a0:a1] if virial else None
            out.append((values[a0:a1], pairs, wf))
    return out


def adjoint_batch(frames, plan, weights_of, launcher=None):
    """Values, then forces and strain derivatives by contraction, for all ``frames``.

    ``weights_of(a0, a1, values)`` receives the raw values (a1 − a0, n_cols) of atoms a0..a1-1
    (counted over all ``frames``) *on the device* and returns w = ∂E/∂G (n_members, a1 − a0,
    n_cols) on the device, eV per unit of G (as for the CPU pass). Returns per frame ``(values, forces (n_members, n, 3), strain
    (n_members, 3, 3))`` as NumPy float64 — the same as :func:`hdnnp.descriptors.fast.adjoint_pass`.
    """
    launcher = launcher or cuda_launcher()
    tables = _tables(plan, launcher)
    out = []
    first = np.concatenate([[0], np.cumsum([len(f[0]) for f in frames])])
    for k0, k1 in _batches(frames, BATCH_ATOMS):
        fd = device_frames(launcher, frames[k0:k1], plan.cutoff, plan.species_index)
        etab = _entry_table(launcher, fd, tables) if fd.n_entries else None
        values, _ = walk(launcher, fd, tables, etab=etab)
        weights = weights_of(first[k0], first[k1], values)
        if weights is None:  # no atoms: one member's worth of zero forces
            weights = launcher.xp.zeros((1, fd.n_atoms, tables.n_cols))
        members = [forces_and_strain(launcher, fd, contract(launcher, fd, tables, w, etab)) for w in weights]
        forces = np.stack([launcher.to_host(f) for f, _ in members])
        strain = np.stack([launcher.to_host(s) for _, s in members])
        values = launcher.to_host(values).astype(np.float64)
        for f in range(k1 - k0):
            a0, a1 = fd.atom_first[f], fd.atom_first[f + 1]
            out.append((values[a0:a1], forces[:, a0:a1], strain[:, f]))
    return out
