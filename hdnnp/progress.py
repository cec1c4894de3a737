"""Progress lines for long runs: count, rate and ETA, printed to stderr at most every few seconds."""

from __future__ import annotations

import sys
import time


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:d}:{s % 60:02d}"


class Progress:
    """``Progress(total, "symmetry", unit="frames")``; call ``update(n)``; ``close()`` at the end.

    Prints ``symmetry: 120/800 frames (15%) 42.1 frames/s, ETA 0:16`` at most every
    ``interval`` seconds (a line each, so batch logs stay readable), and a final summary line.
    ``quiet=True`` prints nothing.
    """

    def __init__(self, total: int | None, label: str, unit: str = "frames", interval: float = 2.0,
                 quiet: bool = False, stream=None):
        self.total, self.label, self.unit, self.interval = total, label, unit, interval
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.count = 0
        self.start = self._last = time.perf_counter()

    def update(self, n: int = 1, extra: str = "") -> None:
        self.count += n
        now = time.perf_counter()
        if not self.quiet and now - self._last >= self.interval:
            self._last = now
            self._print(now, extra)

    def _print(self, now: float, extra: str = "", final: bool = False) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        if self.total:
            pct = 100.0 * self.count / self.total
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            tail = f"in {_fmt_seconds(elapsed)}" if final else f"ETA {_fmt_seconds(eta)}"
            msg = f"{self.label}: {self.count}/{self.total} {self.unit} ({pct:.0f}%) {rate:.1f} {self.unit}/s, {tail}"
        else:
            msg = f"{self.label}: {self.count} {self.unit}, {rate:.1f} {self.unit}/s, {_fmt_seconds(elapsed)} elapsed"
        if extra:
            msg += f"  {extra}"
        print(msg, file=self.stream, flush=True)

    def close(self, extra: str = "") -> None:
        if not self.quiet:
            self._print(time.perf_counter(), extra, final=True)
