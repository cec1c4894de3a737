"""Radial distribution functions g(r) of periodic frames, per element pair and in total.

Distances come from hdnnp's own neighbour list (:func:`hdnnp.neighbors.neighbor_list`), which
lists *every* periodic image within the cutoff, also images of the central atom itself. So
``r_max`` may exceed half the box: a 32-atom Te box is ~10.6 Å wide and the interesting range
is 6-8 Å. ASE's ``get_rdf`` and freud use the minimum-image convention and require
r_max < L/2 (ASE raises, freud silently misses pairs), which is why they are not used here.

Normalisation (ordered pairs, all images). In a frame of volume V (Å³) with N_a atoms of
element a, let h_ab(k) be the number of neighbour-list entries (i, image of j) with i of
element a, j of element b and r_k <= |r_ij| < r_k + Δr. Then

    g_ab(r_k) = V / (N_a N_b) · h_ab(k) / ΔV_k,     ΔV_k = 4π/3 (r_{k+1}³ − r_k³) ≈ 4π r² Δr

(the exact shell volume, so the first bins are not biased), averaged over frames. h_ab counts
ordered pairs: for a == b every pair i != j is counted twice (from i and from j), and an
image of i itself counts once for i; for a != b, h_ab = h_ba, so g_ab = g_ba. The total
g(r) is the same with N_a N_b -> N², all entries counted. With this choice the running
coordination number

    n_ab(r) = 4π ρ_b ∫_0^r g_ab(r') r'² dr',     ρ_b = N_b / V (Å⁻³)

is *exactly* the mean number of b neighbours (images included) within r of an a atom (the
cumulative sum of h_ab / N_a), e.g. 12 through the first shell of fcc. The price: for an
ideal gas, g_aa -> 1 − 1/N_a at distances shorter than the shortest lattice vector (an atom
is not its own neighbour there); the self images beyond it restore the mean density N_a / V.

Memory is bounded: :class:`RDFAccumulator` keeps only sums of n_pairs × bins arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError
from hdnnp.neighbors import neighbor_list

TOTAL = "total"


def pair_label(a: int, b: int) -> str:
    """``"Na-Cl"``: central element a, neighbour element b (atomic numbers)."""
    return f"{symbol(a)}-{symbol(b)}"


def shell_volumes(edges) -> np.ndarray:
    """ΔV_k = 4π/3 (r_{k+1}³ − r_k³) (Å³) of the bins with the given edges (Å)."""
    edges = np.asarray(edges, float)
    return 4.0 / 3.0 * np.pi * np.diff(edges ** 3)


def frame_volume(cell, pbc) -> float:
    """|det cell| (Å³) of a frame periodic in all three directions, else :class:`HdnnpError`."""
    if not np.all(np.asarray(pbc, bool)):
        raise HdnnpError("the RDF needs frames periodic in x, y and z (a volume); "
                         "this frame is not")
    volume = abs(float(np.linalg.det(np.asarray(cell, float))))
    if volume <= 0.0:
        raise HdnnpError("periodic frame with a zero-volume cell")
    return volume


@dataclass
class RDFResult:
    """g(r) curves on a common grid.

    ``r`` bin centres (Å), ``edges`` bin edges (Å); ``g[label]`` for ``"A-B"`` with
    Z_A <= Z_B and ``"total"``; ``coordination[label]`` the running coordination number n(r)
    at the *outer* edge of each bin (``"A-B"``: B neighbours around an A atom, both orders);
    ``density[symbol]`` the mean number density ρ (Å⁻³); ``n_frames``.
    """

    r: np.ndarray
    edges: np.ndarray
    g: dict = field(default_factory=dict)
    coordination: dict = field(default_factory=dict)
    density: dict = field(default_factory=dict)
    n_frames: int = 0


class RDFAccumulator:
    """Streaming g(r): ``acc = RDFAccumulator(r_max=8.0, bins=160)``, ``acc.add(frame)`` for
    each frame (anything with ``positions`` Å, ``species``, ``cell`` Å, ``pbc``), then
    ``acc.result()`` (:class:`RDFResult`). See the module docstring for the normalisation.
    Frames may differ in volume and composition: each pair is averaged over the frames that
    hold both of its elements.
    """

    def __init__(self, r_max: float = 8.0, bins: int = 160):
        if not r_max > 0.0:
            raise HdnnpError(f"r_max must be positive, got {r_max}")
        if int(bins) < 1:
            raise HdnnpError(f"bins must be at least 1, got {bins}")
        self.r_max = float(r_max)
        self.bins = int(bins)
        self.edges = np.linspace(0.0, self.r_max, self.bins + 1)
        self._shell = shell_volumes(self.edges)
        self._g_sum: dict = {}  # (a, b) or TOTAL -> sum over frames of g (bins,)
        self._count_sum: dict = {}  # (a, b) or TOTAL -> sum over frames of h / N_a (bins,)
        self._n: dict = {}  # same keys -> number of frames contributing
        self._rho_sum: dict = {}  # Z -> sum over frames of N_Z / V
        self.n_frames = 0

    def _accumulate(self, key, g, per_atom):
        if key not in self._g_sum:
            self._g_sum[key] = np.zeros(self.bins)
            self._count_sum[key] = np.zeros(self.bins)
            self._n[key] = 0
        self._g_sum[key] += g
        self._count_sum[key] += per_atom
        self._n[key] += 1

    def add(self, frame) -> None:
        """Add one frame's histogram (all images within ``r_max``)."""
        volume = frame_volume(frame.cell, frame.pbc)
        species = np.asarray(frame.species)
        elements, kinds = np.unique(species, return_inverse=True)
        n_el = len(elements)
        counts = np.bincount(kinds, minlength=n_el).astype(float)
        nl = neighbor_list(frame.positions, frame.cell, True, self.r_max)
        k = np.floor(nl.distance / self.r_max * self.bins).astype(np.int64)
        keep = k < self.bins  # r == r_max exactly falls outside [0, r_max)
        pair = kinds[nl.i[keep]] * n_el + kinds[nl.j[keep]]
        hist = np.bincount(pair * self.bins + k[keep], minlength=n_el * n_el * self.bins)
        hist = hist.reshape(n_el, n_el, self.bins).astype(float)
        for a in range(n_el):
            for b in range(n_el):
                g = volume / (counts[a] * counts[b]) * hist[a, b] / self._shell
                self._accumulate((int(elements[a]), int(elements[b])), g, hist[a, b] / counts[a])
        n = float(len(species))
        total = hist.sum(axis=(0, 1))
        self._accumulate(TOTAL, volume / (n * n) * total / self._shell, total / n)
        for z, c in zip(elements, counts):
            self._rho_sum[int(z)] = self._rho_sum.get(int(z), 0.0) + c / volume
        self.n_frames += 1

    def result(self) -> RDFResult:
        """Frame averages: g per unordered pair (and total), n(r) per ordered pair."""
        if self.n_frames == 0:
            raise HdnnpError("no frames added to the RDF")
        out = RDFResult(r=0.5 * (self.edges[1:] + self.edges[:-1]), edges=self.edges.copy(),
                        n_frames=self.n_frames)
        for key in sorted(k for k in self._g_sum if k != TOTAL) + [TOTAL]:
            label = TOTAL if key == TOTAL else pair_label(*key)
            if key == TOTAL or key[0] <= key[1]:
                out.g[label] = self._g_sum[key] / self._n[key]
            out.coordination[label] = np.cumsum(self._count_sum[key]) / self._n[key]
        out.density = {symbol(z): s / self.n_frames for z, s in sorted(self._rho_sum.items())}
        return out


def rdf(frames, r_max: float = 8.0, bins: int = 160) -> RDFResult:
    """g(r) averaged over an iterable of frames (convenience over :class:`RDFAccumulator`)."""
    acc = RDFAccumulator(r_max, bins)
    for frame in frames:
        acc.add(frame)
    return acc.result()


def first_peak(r, g, fraction: float = 0.5) -> tuple[float, float]:
    """Position (Å) and height of the first peak of g(r).

    The first peak is the highest bin of the first contiguous run of bins with g at least
    ``fraction`` of the global maximum (robust to noise wiggles on the peak's flanks and to
    noise at small r); position and height are refined by the parabola through that bin and
    its two neighbours. Returns ``(nan, nan)`` when g has no positive value.
    """
    r, g = np.asarray(r, float), np.asarray(g, float)
    if len(g) == 0 or not np.nanmax(g) > 0.0:
        return float("nan"), float("nan")
    above = g >= fraction * np.nanmax(g)
    start = int(np.argmax(above))
    stop = start + (int(np.argmin(above[start:])) if not above[start:].all() else len(g) - start)
    k = start + int(np.argmax(g[start:stop]))
    if k == 0 or k == len(g) - 1:
        return float(r[k]), float(g[k])
    y0, y1, y2 = g[k - 1], g[k], g[k + 1]
    curvature = y0 - 2.0 * y1 + y2
    if curvature >= 0.0:
        return float(r[k]), float(y1)
    shift = 0.5 * (y0 - y2) / curvature  # in bins, within [-0.5, 0.5] at a maximum
    dr = r[k + 1] - r[k]
    return float(r[k] + shift * dr), float(y1 - 0.25 * (y0 - y2) * shift)


def integrated_abs_difference(r, g1, g2) -> float:
    """∫ |g1(r) − g2(r)| dr (Å) over the common grid (bin centres ``r``, uniform bins)."""
    r, g1, g2 = np.asarray(r, float), np.asarray(g1, float), np.asarray(g2, float)
    if g1.shape != g2.shape or g1.shape != r.shape:
        raise HdnnpError("RDFs on different grids cannot be compared (same r_max and bins needed)")
    dr = r[1] - r[0] if len(r) > 1 else 2.0 * r[0]
    return float(np.sum(np.abs(g1 - g2)) * dr)
