"""Mean-square displacement and the self-diffusion coefficient.

Unwrapping. MD trajectories may store wrapped positions (DL_POLY reference frames) or
unwrapped ones; both are unwrapped the same way, from consecutive frames t−1, t:

    n_t  = round(s_t − s_{t−1})         s = r · cell⁻¹ (fractional coordinates; periodic axes)
    Δr_t = r_t − r_{t−1} − n_t · cell_t  (Å),    r̃_t = r̃_{t−1} + Δr_t,  r̃_0 = r_0

i.e. the minimum image of the step in fractional coordinates, which works for triclinic
cells. It assumes that no atom moves by half a cell (along any lattice vector) between two
stored frames — keep the frame interval short (a 10 Å box and liquid Te at 1000 K allow
tens of ps; the stride of a stored trajectory is never near that). For a cell that changes
(NPT) the image shift uses the current cell, exact when the cell changes little per frame.

MSD over all time origins, averaged over atoms (Å²):

    MSD(m) = 1/(N_atoms (N − m)) Σ_i Σ_{t=0}^{N−m−1} |r̃_i(t + m) − r̃_i(t)|²

computed with FFTs (O(N log N) per atom): MSD(m) = S1(m) − 2 S2(m), S2 the autocorrelation
Σ_t x_t x_{t+m} / (N − m) and S1(m) = Σ_{t<N−m} (x_t² + x_{t+m}²) / (N − m) from prefix sums.

Diffusion coefficient (Einstein): MSD(t) = 6 D t + c for t in the diffusive regime. D is the
least-squares slope / 6 over the lag window [0.2, 0.8] × (trajectory length) by default:
below 20 % the ballistic and caging regime (the intercept c absorbs what is left of it),
above 80 % too few time origins remain. With too few lags in the window all lags ≥ 1 are
used. Units: Å² per time unit of the lag axis (Å²/ps with times in ps);
1 Å²/ps = 1e-4 cm²/s.

Memory: the unwrapped positions of every frame are held, n_frames × n_atoms × 3 float64
(256 atoms × 1e5 frames = 600 MB); analyse a stride of long runs. The FFTs run over blocks
of atoms so that their work arrays stay below ~64 MB.
"""

from __future__ import annotations

import numpy as np

from hdnnp.errors import HdnnpError

#: 1 Å²/ps in cm²/s: (1e-8 cm)² / 1e-12 s.
ANGSTROM2_PER_PS_IN_CM2_PER_S = 1e-4

DEFAULT_FIT_WINDOW = (0.2, 0.8)


def image_shift(previous, current, cell, pbc=True) -> np.ndarray:
    """n_t = round(s_t − s_{t−1}) (integers as float, (n_atoms, 3)); zero along non-periodic
    axes. ``previous`` and ``current`` are positions (Å), ``cell`` the current cell (rows)."""
    cell = np.asarray(cell, float)
    ds = np.linalg.solve(cell.T, (np.asarray(current, float) - np.asarray(previous, float)).T).T
    return np.where(np.broadcast_to(np.asarray(pbc, bool), (3,)), np.round(ds), 0.0)


class Unwrapper:
    """Streaming unwrapping: ``u = Unwrapper()``; ``u.add(positions, cell, pbc)`` returns the
    unwrapped positions (Å) of each successive frame (see the module docstring)."""

    def __init__(self):
        self._previous = None
        self._unwrapped = None

    def add(self, positions, cell, pbc=True) -> np.ndarray:
        positions = np.array(positions, float)
        if self._previous is None:
            self._unwrapped = positions.copy()
        else:
            if positions.shape != self._previous.shape:
                raise HdnnpError("MSD needs the same atoms in every frame")
            shift = image_shift(self._previous, positions, cell, pbc)
            step = positions - self._previous - shift @ np.asarray(cell, float)
            self._unwrapped = self._unwrapped + step
        self._previous = positions
        return self._unwrapped.copy()


def unwrap(positions, cells, pbc=True) -> np.ndarray:
    """Unwrapped positions (n_frames, n_atoms, 3) Å from wrapped ``positions`` of the same
    shape and ``cells`` (n_frames, 3, 3) or one (3, 3) cell."""
    positions = np.asarray(positions, float)
    cells = np.broadcast_to(np.asarray(cells, float), (len(positions), 3, 3))
    unwrapper = Unwrapper()
    return np.array([unwrapper.add(p, c, pbc) for p, c in zip(positions, cells)])


def _msd_per_atom(x) -> np.ndarray:
    """MSD(m) per atom (n_atoms, N) of x (N, n_atoms, 3), summed over x, y, z."""
    n = x.shape[0]
    x = x - x.mean(axis=0)  # MSD is shift-invariant; centring limits round-off
    sq = np.einsum("tad,tad->at", x, x)  # (n_atoms, N)
    prefix = np.concatenate([np.zeros((sq.shape[0], 1)), np.cumsum(sq, axis=1)], axis=1)
    m = np.arange(n)
    origins = (n - m).astype(float)
    s1 = (prefix[:, n - m] + prefix[:, n:n + 1] - prefix[:, m]) / origins
    spectrum = np.fft.rfft(x, n=2 * n, axis=0)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * n, axis=0)[:n]  # (N, n_atoms, 3)
    s2 = acf.sum(axis=2).T / origins
    return np.maximum(s1 - 2.0 * s2, 0.0)


def mean_square_displacement(unwrapped, groups=None, block_bytes: int = 64 << 20) -> dict:
    """MSD(m) (Å²) for lags m = 0 .. N−1 frames, over all time origins.

    ``unwrapped`` (N, n_atoms, 3) Å; ``groups`` optional dict label -> atom indices (e.g. per
    element). Returns ``{"all": (N,), label: (N,) ...}``, each the mean over its atoms.
    """
    x = np.asarray(unwrapped, float)
    if x.ndim != 3 or x.shape[2] != 3:
        raise HdnnpError("MSD needs positions of shape (n_frames, n_atoms, 3)")
    n, n_atoms = x.shape[:2]
    per_atom = np.empty((n_atoms, n))
    block = max(1, int(block_bytes // (2 * n * 3 * 16 * 2)))
    for a0 in range(0, n_atoms, block):
        per_atom[a0:a0 + block] = _msd_per_atom(x[:, a0:a0 + block])
    out = {"all": per_atom.mean(axis=0)}
    for label, index in (groups or {}).items():
        out[label] = per_atom[np.asarray(index)].mean(axis=0)
    return out


def diffusion_coefficient(lag_time, msd, window=DEFAULT_FIT_WINDOW) -> dict:
    """Fit MSD(t) = 6 D t + c over lags with window[0] <= t / t_max <= window[1].

    ``lag_time`` (N,) increasing from 0 (ps, or frames), ``msd`` (N,) Å². Returns ``D`` (Å² per
    unit of ``lag_time``), ``intercept`` (Å²), ``fit_start``, ``fit_end`` (lag-time units) and
    ``n_points``. With fewer than 2 lags in the window, all lags >= 1 are fitted; with fewer
    than 2 lags >= 1 (under 3 frames), D is NaN.
    """
    t, y = np.asarray(lag_time, float), np.asarray(msd, float)
    nan = {"D": float("nan"), "intercept": float("nan"), "fit_start": float("nan"),
           "fit_end": float("nan"), "n_points": 0}
    if len(t) < 3:
        return nan
    lo, hi = window
    mask = (t >= lo * t[-1]) & (t <= hi * t[-1]) & (t > 0)
    if mask.sum() < 2:
        mask = t > 0
    slope, intercept = np.polyfit(t[mask], y[mask], 1)
    return {"D": float(slope / 6.0), "intercept": float(intercept),
            "fit_start": float(t[mask][0]), "fit_end": float(t[mask][-1]),
            "n_points": int(mask.sum())}
