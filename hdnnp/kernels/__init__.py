"""GPU kernels and the choice of backend.

``symmetry.cu`` holds the CUDA kernels, ``gpu.py`` runs batches of frames through them with
CuPy, ``emulate.py`` runs the same source on the CPU (tests).

``resolve_device("auto" | "cpu" | "gpu")`` returns ``"cpu"`` or ``"gpu"``: ``auto`` picks the
GPU when CuPy imports and sees a CUDA device; ``gpu`` raises :class:`HdnnpError` when it does not.
``get_backend(device)`` returns the array namespace (``numpy`` or ``cupy``).
"""

from __future__ import annotations

import functools

import numpy as np

from hdnnp.errors import HdnnpError

DEVICES = ("auto", "cpu", "gpu")


@functools.lru_cache(maxsize=1)
def gpu_status() -> str:
    """Empty string when CuPy sees a CUDA device, else why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA installation
        return f"CuPy is not importable ({exc.__class__.__name__}: {exc}); install hdnnp[gpu]"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy sees no CUDA device ({exc})"
    return "" if n > 0 else "CuPy sees no CUDA device"


def gpu_available() -> bool:
    return gpu_status() == ""


def resolve_device(device: str) -> str:
    """``"cpu"`` or ``"gpu"`` for a requested device ``auto``/``cpu``/``gpu``."""
    if device not in DEVICES:
        raise HdnnpError(f"unknown device '{device}', choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        status = gpu_status()
        if status:
            raise HdnnpError(f"--device gpu asked for, but {status}")
        return "gpu"
    return "gpu" if gpu_available() else "cpu"


def get_backend(device: str):
    """Array namespace for a device: ``numpy`` or ``cupy``."""
    if resolve_device(device) == "gpu":
        import cupy

        return cupy
    return np
