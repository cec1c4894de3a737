"""A stand-in for CuPy on a machine without a GPU: NumPy arrays, and ``RawModule`` kernels run by
:mod:`hdnnp.kernels.emulate` (the CUDA source compiled as C++, threads per block).

Only for dry runs of GPU code paths end to end (``tests/test_gpu_check_script.py`` runs
``scripts/gpu_check.py`` on it): put ``tests/fake_cupy`` first on PYTHONPATH. It proves the
Python around the kernels and the launch calls; it says nothing about CUDA itself.
"""

from numpy import *  # noqa: F401,F403
import numpy as _np

__version__ = "0.0-emulated"
ndarray = _np.ndarray


def asnumpy(a):
    return _np.asarray(a)


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def getDeviceProperties(index):
        return {"name": b"emulated (no GPU: kernels run on the CPU)"}


class _Device:
    def synchronize(self):
        pass


class cuda:  # noqa: N801 - the module's name in CuPy
    runtime = _Runtime
    Device = _Device


class RawModule:
    """Kernels of ``code`` (which must be hdnnp's symmetry.cu) by the emulator."""

    def __init__(self, code, options=()):
        from hdnnp.kernels import emulate
        from hdnnp.kernels.gpu import KERNEL_SOURCE, PRECISIONS

        if code != KERNEL_SOURCE.read_text():
            raise ValueError("the fake CuPy runs hdnnp's symmetry.cu only")
        ctype = next(o.split("=", 1)[1] for o in options if o.startswith("-DREAL="))
        precision = next(p for p, (c, _) in PRECISIONS.items() if c == ctype)
        self._launcher = emulate.EmulatedLauncher(precision)

    def get_function(self, name):
        def kernel(grid, block, args, shared_mem=0):
            self._launcher(name, grid[0], block[0], args, shared_mem)
        return kernel
