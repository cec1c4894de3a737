"""The CUDA kernel against the NumPy reference.

* On a GPU (CuPy importable and a device present): ``device="gpu"`` must agree with the CPU
  path to 1e-10 relative in float64, values and derivatives. Skipped cleanly otherwise.
* Everywhere a C++ compiler exists: the same ``symmetry.cu`` source, compiled as plain C++
  with one thread per block (CUDA keywords mapped by a tiny shim), is run on the CPU. This
  checks the kernel's arithmetic and indexing, not its parallel reduction or atomics.
"""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from hdnnp.descriptors import FeatureSet, compute_raw
from hdnnp.descriptors.symmetry_functions import ColumnPlan, symmetry_functions_numpy
from hdnnp.errors import HdnnpError
from hdnnp.kernels import gpu_available, resolve_device
from hdnnp.kernels.symmetry_gpu import KERNEL_SOURCE
from hdnnp.neighbors import neighbor_list

O, TE = 8, 52
CELL = np.array([[6.5, 0.0, 0.0], [1.0, 7.0, 0.0], [0.5, -1.0, 7.2]])


def frame(seed=0, n=10):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 3)) @ CELL, np.array([(O, TE)[k % 2] for k in range(n)])


def relative_error(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.gpu
def test_gpu_agrees_with_cpu():
    pytest.importorskip("cupy")
    if not gpu_available():
        pytest.skip("CuPy sees no CUDA device")
    fs = FeatureSet.default([O, TE])
    pos, z = frame()
    cpu = compute_raw(pos, CELL, True, z, fs, derivatives=True, device="cpu")
    gpu = compute_raw(pos, CELL, True, z, fs, derivatives=True, device="gpu")
    assert relative_error(gpu[0], cpu[0]) < 1e-10
    np.testing.assert_array_equal(gpu[1], cpu[1])
    np.testing.assert_array_equal(gpu[2], cpu[2])
    assert relative_error(gpu[3], cpu[3]) < 1e-10


def test_gpu_request_without_gpu_is_a_clear_error():
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(HdnnpError, match="--device gpu"):
        resolve_device("gpu")
    assert resolve_device("auto") == "cpu"
    fs = FeatureSet.default([TE])
    with pytest.raises(HdnnpError):
        compute_raw(np.zeros((1, 3)), np.eye(3) * 5, True, [TE], fs, device="gpu")


SHIM = r"""
#include <math.h>
struct Dim3 { unsigned x; };
static Dim3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads()
static inline double atomicAdd(double* p, double v) { double old = *p; *p += v; return old; }
#include "KERNEL"
extern "C" void run_on_cpu(int n_atoms, const long long* start, const double* vec, const double* dist,
    const int* nb_el, int n_el, const int* pair_index, int n_cols, const int* col_kind,
    const int* col_block, const double* col_eta, const double* col_rs, const double* col_zeta,
    const double* col_lambda, double rc, int with_derivatives, double* values, double* dentry) {
    blockDim.x = 1; threadIdx.x = 0;
    for (int b = 0; b < n_atoms; ++b) {
        blockIdx.x = b;
        symmetry_functions(n_atoms, start, vec, dist, nb_el, n_el, pair_index, n_cols, col_kind,
            col_block, col_eta, col_rs, col_zeta, col_lambda, rc, with_derivatives, values, dentry);
    }
}
"""


def test_kernel_source_emulated_on_cpu(tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    src = tmp_path / "emulate.cpp"
    src.write_text(SHIM.replace("KERNEL", str(KERNEL_SOURCE)))
    lib = tmp_path / "emulate.so"
    subprocess.run([compiler, "-O1", "-shared", "-fPIC", "-x", "c++", str(src), "-o", str(lib)], check=True)
    run = ctypes.CDLL(str(lib)).run_on_cpu

    fs = FeatureSet.default([O, TE])
    pos, z = frame(seed=3)
    nl = neighbor_list(pos, CELL, True, fs.cutoff)
    plan = ColumnPlan(fs, np.arange(fs.n_candidates))
    ref_values, ref_dentry = symmetry_functions_numpy(nl, z, plan, derivatives=True)

    def ptr(a):
        return a.ctypes.data_as(ctypes.c_void_p)

    arrays = [np.ascontiguousarray(a) for a in (
        nl.start.astype(np.int64), nl.vector, nl.distance, plan.species_index(z)[nl.j].astype(np.int32),
        plan.pair_index.astype(np.int32), plan.col_kind, plan.col_block, plan.col_eta, plan.col_rs,
        plan.col_zeta, plan.col_lambda)]
    values = np.zeros((len(pos), fs.n_candidates))
    dentry = np.zeros((len(nl), fs.n_candidates, 3))
    (start, vec, dist, nb_el, pair_index, kind, block, eta, rs, zeta, lam) = arrays
    run(ctypes.c_int(len(pos)), ptr(start), ptr(vec), ptr(dist), ptr(nb_el), ctypes.c_int(len(fs.elements)),
        ptr(pair_index), ctypes.c_int(fs.n_candidates), ptr(kind), ptr(block), ptr(eta), ptr(rs), ptr(zeta),
        ptr(lam), ctypes.c_double(fs.cutoff), ctypes.c_int(1), ptr(values), ptr(dentry))
    assert relative_error(values, ref_values) < 1e-10
    assert relative_error(dentry, ref_dentry) < 1e-10
