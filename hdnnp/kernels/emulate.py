"""Run the CUDA source ``symmetry.cu`` on the CPU: how its logic is tested without a GPU.

The source is compiled as C++20 with a small shim (:data:`SHIM`) that maps the CUDA keywords:
a launch runs the grid's blocks one after another, and each block's threads as real threads
(``std::thread``) that meet at ``__syncthreads()`` (a ``std::barrier``); ``__shared__``
variables are shared by the threads of the block, and the dynamic shared memory is filled with
NaN before every block, so a sum that forgets to clear it shows. :class:`EmulatedLauncher`
has the interface of :class:`hdnnp.kernels.gpu.CudaLauncher` with NumPy arrays in place of
CuPy's, so :mod:`hdnnp.kernels.gpu` runs unchanged on it, glue included.

What this checks: the arithmetic, the indexing, the launch geometry, the per-thread ownership
and the block-level synchronisation. What it cannot: CUDA's compiler and math library, memory
limits and the timing of a real device (``scripts/gpu_check.sh`` does that on a GPU).
Needs a C++20 compiler with ``<barrier>`` (``g++`` ≥ 11 or ``clang++`` ≥ 15).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.kernels.gpu import KERNEL_NAMES, KERNEL_SOURCE, PRECISIONS

SHIM = r"""
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <atomic>
#include <barrier>
#include <thread>
#include <utility>
#include <vector>
#include <type_traits>
struct Dim3 { unsigned x, y, z; };
static thread_local Dim3 threadIdx, blockIdx;
static Dim3 blockDim, gridDim;
static std::barrier<>* shim_barrier = nullptr;
alignas(16) static unsigned char shim_smem[1 << 20];
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads() shim_barrier->arrive_and_wait()
#define HDNNP_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(shim_smem)
#include "KERNEL"

template <typename... A, size_t... I>
static void call_packed(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <typename... A>
static void launch(void (*k)(A...), unsigned grid, unsigned block, size_t shared, void** args) {
    std::barrier<> bar(block);
    shim_barrier = &bar;
    blockDim = {block, 1, 1};
    gridDim = {grid, 1, 1};
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; ++t)
        threads.emplace_back([=, &bar] {
            threadIdx = {t, 0, 0};
            for (unsigned b = 0; b < grid; ++b) {
                if (t == 0) memset(shim_smem, 0xff, shared);  // NaN: uninitialised shared memory shows
                bar.arrive_and_wait();
                blockIdx = {b, 0, 0};
                call_packed(k, args, std::index_sequence_for<A...>{});
                bar.arrive_and_wait();
            }
        });
    for (auto& th : threads) th.join();
    shim_barrier = nullptr;
}
#define EXPORT(name) extern "C" void launch_##name(unsigned g, unsigned b, size_t s, void** a) { launch(name, g, b, s, a); }
EXPORTS
"""


@functools.lru_cache(maxsize=1)
def compiler() -> str | None:
    """A C++ compiler on PATH that has C++20's ``<barrier>`` (g++ >= 11, clang++ >= 15), or None."""
    for name in ("g++", "clang++", "c++"):
        cxx = shutil.which(name)
        if cxx is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.cpp"
            probe.write_text("#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n")
            done = subprocess.run([cxx, "-std=c++20", "-pthread", str(probe), "-o", str(Path(tmp) / "probe")],
                                  capture_output=True)
        if done.returncode == 0:
            return cxx
    return None


@functools.lru_cache(maxsize=None)
def _library(precision: str, sanitize: str = "") -> ctypes.CDLL:
    cxx = compiler()
    if cxx is None:
        raise HdnnpError("emulating the CUDA kernels needs a C++20 compiler (g++ >= 11 or clang++ >= 15)")
    code = SHIM.replace("KERNEL", str(KERNEL_SOURCE)).replace(
        "EXPORTS", "\n".join(f"EXPORT({name})" for name in KERNEL_NAMES))
    flags = ["-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", f"-DREAL={PRECISIONS[precision][0]}"]
    if sanitize:
        flags.append(f"-fsanitize={sanitize}")
    key = hashlib.sha256((code + KERNEL_SOURCE.read_text() + " ".join(flags)).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"hdnnp-emulate-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    lib = folder / f"kernels-{key}.so"
    if not lib.exists():
        src = folder / f"kernels-{key}.cpp"
        src.write_text(code)
        tmp = folder / f"kernels-{key}.{os.getpid()}.so"
        result = subprocess.run([cxx, *flags, str(src), "-o", str(tmp)], capture_output=True, text=True)
        if result.returncode:
            raise HdnnpError(f"compiling {KERNEL_SOURCE} as C++ failed:\n{result.stderr[-4000:]}")
        os.replace(tmp, lib)
    return ctypes.CDLL(str(lib))


_SCALARS = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
            np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


class EmulatedLauncher:
    """:class:`~hdnnp.kernels.gpu.CudaLauncher` on the CPU: NumPy arrays, kernels from the shim."""

    xp = np

    def __init__(self, precision: str = "float64", sanitize: str = ""):
        self.precision = precision
        self.dtype = np.dtype(PRECISIONS[precision][1])
        self._lib = _library(precision, sanitize)

    def __call__(self, name: str, grid: int, block: int, args, shared_mem: int = 0):
        if shared_mem > (1 << 20):
            raise HdnnpError(f"{name}: {shared_mem} bytes of shared memory asked for; the shim has 1 MiB")
        if grid == 0:
            return
        held, pointers = [], []
        for a in args:
            if isinstance(a, np.ndarray):
                if not a.flags.c_contiguous:
                    raise HdnnpError(f"{name}: a non-contiguous array argument")
                c = ctypes.c_void_p(a.ctypes.data)
            else:
                c = _SCALARS[np.asarray(a).dtype](a.item() if hasattr(a, "item") else a)
            held.append(c)
            pointers.append(ctypes.cast(ctypes.pointer(c), ctypes.c_void_p))
        packed = (ctypes.c_void_p * len(pointers))(*pointers)
        getattr(self._lib, f"launch_{name}")(ctypes.c_uint(grid), ctypes.c_uint(block), ctypes.c_size_t(shared_mem),
                                             packed)

    @staticmethod
    def to_host(a):
        return np.asarray(a)
