"""The GPU kernels (hdnnp/kernels/symmetry.cu through hdnnp/kernels/gpu.py) against the CPU path.

Every test runs twice: on the CUDA source compiled as C++ and run on the CPU with real threads
per block (``emulated``: :mod:`hdnnp.kernels.emulate`; needs a C++20 compiler), and on a GPU
through CuPy (``cuda``; skipped without one). Both go through the public API with
``device="gpu"``, glue included, and must equal the compiled CPU path to 1e-10 relative in
float64: values, per-pair derivatives, strain derivatives, forces, stress, committee spread;
every function kind and cutoff type, two elements, triclinic cells below 2·Rc, clusters,
mixed periodicity, frames of different sizes in one launch, launches split by a small bound.
"""

import numpy as np
import pytest

from hdnnp.descriptors import FeatureSet, compute_raw
from hdnnp.descriptors.compute import _raw_entries, adjoint_evaluation_batch, compute_descriptors_batch
from hdnnp.descriptors.symmetry_functions import CUTOFF_TYPES, ColumnPlan
from hdnnp.errors import HdnnpError
from hdnnp.kernels import emulate, gpu, gpu_available, resolve_device
from hdnnp.model import extrapolation_of
from hdnnp.neighbors import neighbor_list, periodic_geometry
from test_fast_path import close, random_model, same_prediction, same_raw
from test_imported_features import CELL, CU, S, custom_set, frame


@pytest.fixture(params=["emulated", pytest.param("cuda", marks=pytest.mark.gpu)])
def launcher(request, monkeypatch):
    """The launcher that ``device="gpu"`` uses in the test: the emulated kernels, or CuPy's."""
    if request.param == "cuda":
        pytest.importorskip("cupy")
        if not gpu_available():
            pytest.skip("CuPy sees no CUDA device")
        return gpu.cuda_launcher
    if emulate.compiler() is None:
        pytest.skip("no C++ compiler to emulate the kernels")
    monkeypatch.setattr("hdnnp.kernels.gpu_status", lambda: "")
    monkeypatch.setattr(gpu, "cuda_launcher", lambda precision="float64": emulate.EmulatedLauncher(precision))
    return gpu.cuda_launcher


def frames_of(seeds, pbc=True, cell=CELL, sizes=None):
    out = []
    for k, s in enumerate(seeds):
        pos, z = frame(s, n=9 if sizes is None else sizes[k])
        out.append((pos, cell, np.broadcast_to(np.asarray(pbc, bool), (3,)), z))
    return out


def raw_on(device, frames, fs, derivatives=True):
    return [compute_raw(p, c, b, z, fs, derivatives, device=device) for p, c, b, z in frames]


@pytest.mark.parametrize("cutoff_type,alpha", [(k, 0.0) for k in CUTOFF_TYPES] + [(1, 0.3), (6, 0.5), (4, 0.2)])
def test_values_derivatives_and_strain_equal_the_cpu(launcher, cutoff_type, alpha):
    """Imported-style sets: G2 with two radii, shifted and unshifted narrow and wide angular
    functions, two elements; several frames of different sizes in one launch."""
    fs = custom_set(cutoff_type, alpha)
    frames = frames_of([cutoff_type, 7, 8], sizes=[9, 6, 11])
    cols = np.arange(fs.n_candidates)
    gpu_out = gpu.raw_batch(frames, ColumnPlan(fs, cols), derivatives=True, virial=True, launcher=launcher())
    for f, got in zip(frames, gpu_out):
        same_raw(got, _raw_entries(*f, fs, cols, True, "cpu", virial=True))


@pytest.mark.parametrize("pbc", [True, False, [True, False, True]])
def test_seed_grid_clusters_and_mixed_periodicity(launcher, pbc):
    """hdnnp's own grid and a scattered subset; clusters take the CPU neighbour list, a lone
    atom has no entries."""
    fs = FeatureSet.default([CU, S], cutoff=5.0)
    frames = frames_of([3, 4], pbc=pbc, sizes=[11, 7])
    if pbc is False:
        pos, cell, b, z = frames[0]
        frames[0] = (np.vstack([pos, [40.0, 40.0, 40.0]]), cell, b, np.append(z, CU))
    cols = np.random.default_rng(1).choice(fs.n_candidates, 37, replace=False)
    for dev, ref in zip(raw_on("gpu", frames, fs), raw_on("cpu", frames, fs)):
        for a, b in zip(dev, ref):
            close(a, b)
    dev = [compute_raw(p, c, b, z, fs, candidates=cols, device="gpu") for p, c, b, z in frames]
    for d, f in zip(dev, frames):
        close(d, compute_raw(*f, fs, candidates=cols))


SMALL_CELL = np.array([[3.1, 0.0, 0.0], [1.4, 2.9, 0.0], [-0.8, 0.6, 3.3]])
LARGE_CELL = np.array([[15.6, 0.0, 0.0], [4.5, 15.3, 0.0], [-3.3, 2.4, 16.6]])


@pytest.mark.parametrize("cell,n,pbc,binned", [
    (SMALL_CELL, 5, [True] * 3, False), (SMALL_CELL, 5, [True, True, False], False),
    (LARGE_CELL, 120, [True] * 3, True), (LARGE_CELL, 150, [True, False, True], False)])
def test_neighbour_list_equals_the_cpu_list(launcher, cell, n, pbc, binned):
    """nl_build finds the same entries (i, j, R_p) as the k-d tree list: a cell with every
    plane spacing below 2·Rc (several images of one neighbour and of the atom itself), atoms
    far outside the cell, a slab periodic in two directions (every pair and shift), and a
    triclinic box of three bins of width Rc per direction (the cell list, bins wrapped)."""
    pos = np.random.default_rng(2).uniform(-2, 3, (n, 3)) @ cell
    geometry = periodic_geometry(pos, cell, pbc, 4.5)
    assert (all(pbc) and gpu._bins(geometry[2], n)[0, 0] > 0) == binned
    for frames in ([(pos, cell, pbc, np.full(n, CU))], [(pos[:3], cell, pbc, np.full(3, CU))] * 2
                   + [(pos, cell, pbc, np.full(n, CU))]):
        fd = gpu.device_frames(launcher(), frames, 4.5, lambda z: np.zeros(len(z), int))
        nl = neighbor_list(pos, cell, pbc, 4.5)
        fd = _last_frame(fd)
        assert fd.n_entries == len(nl) > n
        np.testing.assert_array_equal(fd.start, nl.start)

        def rows(i, j, v):
            key = np.column_stack([i, j, np.round(v, 9)])
            return key[np.lexsort(key.T[::-1])]

        close(rows(fd.i, fd.j_host, fd.vec), rows(nl.i, nl.j, nl.vector), rtol=1e-12)


def _last_frame(fd):
    """The last frame of a batch's list, on the host, indices from its first atom."""
    from types import SimpleNamespace

    host = SimpleNamespace(**{k: np.asarray(getattr(v, "get", lambda: v)()) for k, v in vars(fd).items()})
    a0, e0 = host.atom_first[-2], host.entry_first[-2]
    return SimpleNamespace(n_entries=len(host.j_host) - e0, start=host.start[a0:] - e0, i=host.i[e0:] - a0,
                           j_host=host.j_host[e0:] - a0, vec=host.vec[e0:])


def test_descriptors_stress_and_two_elements_in_batches(launcher, monkeypatch):
    """compute_descriptors_batch: scaled descriptors with derivatives and strain derivatives,
    two elements (columns reordered per element), a launch bound that splits the batch, and a
    frame above the device neighbour list's size bound among the others."""
    pot = random_model(np.random.default_rng(3))
    frames = frames_of([1, 2, 5, 6], sizes=[9, 8, 9, 10])
    monkeypatch.setattr(gpu, "BATCH_ATOMS_DERIVATIVES", 20)
    monkeypatch.setattr(gpu, "NL_DEVICE_MAX_ATOMS", 9)  # the 10-atom frame's list comes from the CPU
    got = compute_descriptors_batch(frames, pot.feature_set, derivatives=True, device="gpu", stress=True)
    want = compute_descriptors_batch(frames, pot.feature_set, derivatives=True, device="cpu", stress=True)
    for g, w in zip(got, want):
        assert sorted(g) == sorted(w) == [S, CU]
        for z in w:
            for name in ("atom_index", "pair_row", "pair_atom"):
                np.testing.assert_array_equal(getattr(g[z], name), getattr(w[z], name))
            for name in ("values", "dvalues", "virial"):
                close(getattr(g[z], name), getattr(w[z], name))


@pytest.mark.parametrize("n_members", [1, 2])
def test_forces_and_stress_by_contraction(launcher, monkeypatch, n_members):
    """Potential.evaluate(device="gpu"): values, networks on the device, sf_contract, forces and
    stress; a committee's spread; a box without atoms; the batch split over launches, one box
    large enough for the device's cell list."""
    pot = random_model(np.random.default_rng(5), n_members)
    pos, z = frame(11, n=9)
    p1 = pot.evaluate(pos, CELL, True, z, forces=True, stress=True, device="gpu")
    p0 = pot.evaluate(pos, CELL, True, z, forces=True, stress=True, device="cpu")
    same_prediction(p1, p0, excess_rtol=1e-12)
    assert p0.extrapolation_count > 0 and (p0.forces_spread is not None) == (n_members > 1)
    empty = pot.evaluate(np.zeros((0, 3)), CELL, True, np.zeros(0, int), stress=True, device="gpu")
    assert empty.energy == 0.0 and empty.forces.shape == (0, 3) and not empty.stress.any()

    frames = frames_of([1, 2, 3], sizes=[9, 12, 7])
    big, zb = frame(4, n=150)
    frames.append((3.0 * big, 3.0 * CELL, np.ones(3, bool), zb))  # 3 bins of width >= Rc: a cell list
    monkeypatch.setattr(gpu, "BATCH_ATOMS", 15)  # four launches
    got = adjoint_evaluation_batch(frames, pot.feature_set, pot._member_networks, True, "gpu")
    for (desc, atomic, forces, strain), (pos, cell, pbc, z) in zip(got, frames):
        want = pot.evaluate(pos, cell, pbc, z, stress=True, device="cpu")  # compiled or NumPy path
        close(atomic.mean(axis=0), want.atomic_energies)
        close(forces.mean(axis=0), want.forces)
        close(strain.mean(axis=0) / abs(np.linalg.det(cell)), want.stress)
        assert extrapolation_of(desc, pot.feature_set)[0] == want.extrapolation_count


def test_a_launch_gives_the_same_bits_every_time(launcher):
    """No floating-point atomics in the kernels: repeated launches are bitwise equal."""
    fs = FeatureSet.default([CU, S], cutoff=5.0)
    frames = frames_of([9, 10], sizes=[10, 10])
    plan = ColumnPlan(fs, np.arange(fs.n_candidates))
    runs = [gpu.raw_batch(frames, plan, derivatives=True, virial=True, launcher=launcher()) for _ in range(2)]
    for (v1, p1, w1), (v0, p0, w0) in zip(*runs):
        np.testing.assert_array_equal(v1, v0)
        np.testing.assert_array_equal(p1[2], p0[2])
        np.testing.assert_array_equal(w1, w0)


def test_float32_mode_is_single_precision_and_close(launcher):
    """precision="float32": the symmetry functions in single precision. Its error against
    float64 is of the size float32 rounding gives (measured in scripts/bench_gpu.py), not 0."""
    pot = random_model(np.random.default_rng(7))
    frames = frames_of([4, 5], sizes=[9, 9])
    single = adjoint_evaluation_batch(frames, pot.feature_set, pot._member_networks, True, "gpu", "float32")
    double = adjoint_evaluation_batch(frames, pot.feature_set, pot._member_networks, True, "gpu", "float64")
    for (_, a1, f1, s1), (_, a0, f0, s0) in zip(single, double):
        err = np.abs(f1 - f0).max() / np.abs(f0).max()
        assert 1e-10 < err < 1e-4, err
        assert 1e-12 < np.abs(a1 - a0).max() / np.abs(a0).max() < 1e-5
        close(s1, s0, rtol=1e-4)


def test_gpu_request_without_gpu_is_a_clear_error():
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(HdnnpError, match="--device gpu"):
        resolve_device("gpu")
    assert resolve_device("auto") == "cpu"
    fs = FeatureSet.default([CU])
    with pytest.raises(HdnnpError):
        compute_raw(np.zeros((1, 3)), np.eye(3) * 5, True, [CU], fs, device="gpu")


TSAN_SCRIPT = """
import numpy as np
from hdnnp.kernels import emulate, gpu
from hdnnp.descriptors.symmetry_functions import ColumnPlan
from test_imported_features import CELL, custom_set, frame
launcher = emulate.EmulatedLauncher("float64", sanitize="thread")
fs = custom_set(1, 0.0)
frames = []
for seed in range(2):
    pos, z = frame(seed, n=9)
    frames.append((pos, CELL, np.ones(3, bool), z))
pos, z = frame(2, n=60)
frames.append((3.0 * pos, 3.0 * CELL, np.ones(3, bool), z))  # listed from bins
plan = ColumnPlan(fs, np.arange(fs.n_candidates))
gpu.raw_batch(frames, plan, True, True, launcher=launcher)
rng = np.random.default_rng(0)
gpu.adjoint_batch(frames, plan, lambda a0, a1, v: rng.normal(size=(1, a1 - a0, fs.n_candidates)), launcher=launcher)
print("done")
"""


def test_no_data_races_under_thread_sanitizer(tmp_path):
    """The emulated kernels under ThreadSanitizer: no two threads of a block touch the same
    memory without a barrier between them (removing the __syncthreads() before sf_walk's
    reduction is reported)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    cxx = emulate.compiler()
    if cxx is None or "g++" not in Path(cxx).name:
        pytest.skip("needs g++ with ThreadSanitizer")
    lib = subprocess.run([cxx, "-print-file-name=libtsan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(lib) or not os.path.exists(lib) or shutil.which("bash") is None:
        pytest.skip("ThreadSanitizer's runtime is not installed")
    (tmp_path / "race.py").write_text(TSAN_SCRIPT)
    tests = Path(__file__).parent
    env = dict(os.environ, LD_PRELOAD=lib, PYTHONPATH=f"{tests}{os.pathsep}{tests.parent}")
    run = subprocess.run([sys.executable, str(tmp_path / "race.py")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert "done" in run.stdout, run.stderr[-3000:]
    assert "ThreadSanitizer" not in run.stderr, run.stderr[-3000:]


@pytest.mark.filterwarnings("ignore:.*extrapolate")
def test_predict_stage_on_the_gpu_equals_the_cpu(launcher, tmp_path, monkeypatch):
    """``hdnnp predict --device gpu`` from structures (the adjoint path, several frames per
    launch): energies, forces, atomic energies, stresses, the committee's spreads and the
    extrapolation counts of the CPU run."""
    pytest.importorskip("ase")  # the structure file (a GPU machine may lack it)
    import h5py
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from hdnnp.stages.predict import predict

    pot = random_model(np.random.default_rng(9), n_members=2)
    pot.save(tmp_path / "model.h5")
    images = []
    for pos, cell, pbc, z in frames_of([1, 2, 3, 4], sizes=[9, 10, 9, 8]):
        a = Atoms(numbers=z, positions=pos, cell=cell, pbc=pbc)
        a.calc = SinglePointCalculator(a, energy=-20.0, forces=np.zeros((len(z), 3)), stress=np.zeros(6))
        images.append(a)
    write(tmp_path / "frames.xyz", images)
    monkeypatch.setattr(gpu, "BATCH_ATOMS", 20)
    for device in ("gpu", "cpu"):
        predict(tmp_path / "model.h5", tmp_path / "frames.xyz", tmp_path / f"{device}.h5", forces=True,
                atomic_energies=True, stress=True, device=device, chunk_frames=3, quiet=True)
    with h5py.File(tmp_path / "gpu.h5") as g, h5py.File(tmp_path / "cpu.h5") as c:
        names = []
        c.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert {"predict/forces_spread", "predict/stress_predicted", "predict/atomic_energies"} <= set(names)
        for name in names:
            if c[name].dtype.kind == "f":
                a, b = g[name][:], c[name][:]
                np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
                close(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-10)
            else:
                np.testing.assert_array_equal(g[name][:], c[name][:])


@pytest.mark.parametrize("real", ["double", "float"])
def test_the_cuda_source_compiles_for_a_gpu(tmp_path, real):
    """Where CUDA's compiler is installed: symmetry.cu compiles for sm_90 (H100/H200) in both
    precisions with the options CuPy is given, every kernel present, no register spills."""
    import shutil
    import subprocess

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    run = subprocess.run([nvcc, "-arch=sm_90", "-cubin", "-std=c++14", f"-DREAL={real}", "-Xptxas", "-v",
                          "-o", str(tmp_path / "k.cubin"), str(gpu.KERNEL_SOURCE)], capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    for name in gpu.KERNEL_NAMES:
        assert f"Compiling entry function '{name}'" in log, name
    assert "bytes spill stores" in log and all(" 0 bytes spill stores" in line for line in log.splitlines()
                                                if "spill stores" in line), log
