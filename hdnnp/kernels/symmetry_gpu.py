"""CuPy wrapper of ``symmetry.cu``: G2/G4 values and per-entry derivatives on a CUDA GPU.

Same inputs and outputs as :func:`hdnnp.descriptors.symmetry_functions.symmetry_functions_numpy`
(the reference; ``tests/test_symmetry_gpu.py`` binds the two to 1e-10 relative in float64).
The neighbour list is built on the CPU; the per-image derivatives are summed into atom pairs
on the CPU as well (:func:`~hdnnp.descriptors.symmetry_functions.pair_derivatives`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.kernels import gpu_status

#: Threads per block (power of two, at most MAX_THREADS in symmetry.cu); ~ 1-2 x neighbours.
THREADS_PER_BLOCK = 64
KERNEL_SOURCE = Path(__file__).with_name("symmetry.cu")


@functools.lru_cache(maxsize=1)
def _kernel():
    status = gpu_status()
    if status:
        raise HdnnpError(f"GPU symmetry functions unavailable: {status}")
    import cupy

    module = cupy.RawModule(code=KERNEL_SOURCE.read_text(), options=("--std=c++11",))
    return module.get_function("symmetry_functions")


def symmetry_functions_gpu(nl, species, plan, derivatives: bool = False):
    """Raw values (n_atoms, n_cols) and per-entry derivatives (n_entries, n_cols, 3) or None, as NumPy."""
    if not plan.standard:
        raise HdnnpError("the GPU kernel evaluates hdnnp's own symmetry functions only (G2 and G4 with one "
                         "cosine cutoff); this feature set (an imported potential: shifted or wide angular "
                         "functions, several cutoff radii or another cutoff type) needs --device cpu")
    kernel = _kernel()
    import cupy as cp

    n_atoms = len(nl.start) - 1
    n_cols = len(plan.columns)
    n_entries = len(nl)
    values = cp.zeros((n_atoms, n_cols), cp.float64)
    dentry = cp.zeros((max(n_entries, 1), n_cols, 3) if derivatives else (1,), cp.float64)
    if n_atoms and n_cols and n_entries:
        el = plan.species_index(species)
        nb_el = el[nl.j].astype(np.int32)
        args = (
            np.int32(n_atoms), cp.asarray(nl.start, cp.int64), cp.asarray(nl.vector, cp.float64),
            cp.asarray(nl.distance, cp.float64), cp.asarray(nb_el), np.int32(len(plan.elements)),
            cp.asarray(plan.pair_index, cp.int32), np.int32(n_cols),
            cp.asarray(plan.col_kind, cp.int32), cp.asarray(plan.col_block, cp.int32),
            cp.asarray(plan.col_eta, cp.float64), cp.asarray(plan.col_rs, cp.float64),
            cp.asarray(plan.col_zeta, cp.float64), cp.asarray(plan.col_lambda, cp.float64),
            np.float64(plan.cutoff), np.int32(bool(derivatives)), values, dentry,
        )
        kernel((n_atoms,), (THREADS_PER_BLOCK,), args)
    values = cp.asnumpy(values)
    if not derivatives:
        return values, None
    return values, cp.asnumpy(dentry)[:n_entries]
