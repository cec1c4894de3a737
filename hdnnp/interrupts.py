"""Ctrl-C and SIGTERM: one exception each, and a way to hold them while compiled code runs.

``hdnnp`` (the command) raises :class:`KeyboardInterrupt` on SIGINT and :class:`Terminated` on
SIGTERM (what SLURM sends at the time limit) from its signal handler (:func:`install`), and the
stages clean up as they unwind. A Python exception raised inside a callback from native code is
lost ("Exception ignored"): Numba's first call of a kernel compiles it, and LLVM calls back into
Python while doing so. :func:`deferred` marks such regions: a signal that arrives inside one is
raised when it ends, at a point where the exception can unwind normally.
"""

from __future__ import annotations

import contextlib
import signal

_depth = 0
_pending: list[BaseException] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM sends at the time limit), handled exactly like Ctrl-C."""


def _on_signal(signum, frame):
    exc = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    if _depth:
        _pending.append(exc)
        return
    raise exc


def install() -> None:
    """Route SIGINT and SIGTERM through :func:`_on_signal` (call from the main thread)."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


@contextlib.contextmanager
def deferred():
    """Hold Ctrl-C / SIGTERM (as routed by :func:`install`) until the block ends, then raise."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            exc = _pending[0]
            _pending.clear()
            raise exc
