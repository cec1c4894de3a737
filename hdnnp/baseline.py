"""A short-range repulsive baseline: screened nuclear repulsion (ZBL), switched off smoothly.

The networks of an HDNNP know nothing about distances shorter than the shortest one in their
training data; in MD they may put a spurious basin there and let atoms fall into each other. The
baseline adds, for every pair of atoms closer than ``r_outer`` of their element pair, the
universal screened Coulomb repulsion of Ziegler, Biersack and Littmark (*The Stopping and Range
of Ions in Solids*, 1985), switched off between ``r_inner`` and ``r_outer``:

    E_base = ½ Σ_i Σ_p φ_ab(r_p),   φ_ab(r) = (Z_a Z_b e² / 4πε₀ r) Σ_k c_k exp(−d_k r / a) · S(r)

    a = 0.46850 Å / (Z_a^0.23 + Z_b^0.23),  c = (0.18175, 0.50986, 0.28022, 0.02817),
    d = (3.19980, 0.94229, 0.40290, 0.20162),  e²/4πε₀ = 14.399645 eV·Å,

    S(r) = 1 for r <= r_inner, 0 for r >= r_outer, and 1 − 10x³ + 15x⁴ − 6x⁵ in between,
    x = (r − r_inner)/(r_outer − r_inner) (value, slope and curvature continuous).

The sum runs over the entries p of a full neighbour list of atom i (every periodic image), so
each pair counts once. By default ``r_outer`` is the shortest distance of the element pair in
the training data and ``r_inner = 0.8 r_outer``: the baseline is then exactly zero on every
training frame, the networks learn the whole reference energy, and the repulsion acts only
where there was no data. A pair never closer than the descriptor cutoff in the data takes the
shortest distance of any pair. Forces and stress (eV/Å, eV/Å³) follow analytically:

    F_i = Σ_{p of i} φ'(r_p) R_p / r_p,   ∂E/∂ε_ab = ½ Σ_i Σ_p φ'(r_p) R_p,a R_p,b / r_p

with R_p = r_j + n·cell − r_i. The parameters live in model.h5 under ``/baseline``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError
from hdnnp.neighbors import neighbor_list

#: e²/(4πε₀) in eV·Å (CODATA 2018).
COULOMB_EV_ANGSTROM = 14.399645
ZBL_C = np.array([0.18175, 0.50986, 0.28022, 0.02817])
ZBL_D = np.array([3.19980, 0.94229, 0.40290, 0.20162])
#: ZBL screening length constant (Å): a = 0.46850 / (Z_a^0.23 + Z_b^0.23).
ZBL_A0 = 0.46850
#: Default r_inner / r_outer.
INNER_FRACTION = 0.8
KINDS = ("zbl", "none")


def zbl(r, za: int, zb: int):
    """Unswitched ZBL pair energy φ(r) (eV) and its derivative dφ/dr (eV/Å) at distances ``r`` (Å)."""
    r = np.asarray(r, float)
    a = ZBL_A0 / (za ** 0.23 + zb ** 0.23)
    q = COULOMB_EV_ANGSTROM * za * zb
    ex = ZBL_C * np.exp(-np.multiply.outer(r, ZBL_D) / a)  # (..., 4)
    screen = ex.sum(axis=-1)
    dscreen = -(ex * ZBL_D).sum(axis=-1) / a
    return q * screen / r, q * (dscreen / r - screen / r ** 2)


def switch(r, r_inner: float, r_outer: float):
    """S(r) and dS/dr of the quintic switch from 1 (r <= r_inner) to 0 (r >= r_outer)."""
    x = np.clip((np.asarray(r, float) - r_inner) / (r_outer - r_inner), 0.0, 1.0)
    s = 1.0 - x ** 3 * (10.0 - 15.0 * x + 6.0 * x * x)
    ds = -30.0 * x * x * (1.0 - x) ** 2 / (r_outer - r_inner)
    return s, ds


@dataclass
class ZBLBaseline:
    """The baseline of a model: per unordered element pair (a <= b) its switching radii (Å)."""

    pairs: np.ndarray  # (n_pairs, 2) atomic numbers, a <= b
    r_inner: np.ndarray  # (n_pairs,) Å
    r_outer: np.ndarray  # (n_pairs,) Å

    def __post_init__(self):
        self.pairs = np.asarray(self.pairs, np.int64).reshape(-1, 2)
        self.r_inner = np.asarray(self.r_inner, float).reshape(-1)
        self.r_outer = np.asarray(self.r_outer, float).reshape(-1)
        if np.any(self.r_inner <= 0) or np.any(self.r_outer <= self.r_inner):
            raise HdnnpError("baseline: need 0 < r_inner < r_outer for every element pair")

    @property
    def cutoff(self) -> float:
        return float(self.r_outer.max()) if len(self.r_outer) else 0.0

    def _index(self) -> dict:
        return {(int(a), int(b)): k for k, (a, b) in enumerate(self.pairs)}

    def describe(self) -> str:
        return ", ".join(f"{symbol(a)}-{symbol(b)} {ri:.2f}-{ro:.2f} Å"
                         for (a, b), ri, ro in zip(self.pairs, self.r_inner, self.r_outer))

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self, positions, cell, pbc, species, forces: bool = True, stress: bool = False):
        """(energy eV, forces (n, 3) eV/Å or None, atomic energies (n,) eV, ∂E/∂ε (3, 3) eV or
        None) of one box; units and geometry as :meth:`hdnnp.model.Potential.evaluate`."""
        species = np.asarray(species, np.int64)
        n = len(species)
        atomic = np.zeros(n)
        f_out = np.zeros((n, 3)) if forces else None
        strain = np.zeros((3, 3)) if stress else None
        if n == 0 or self.cutoff == 0.0:
            return 0.0, f_out, atomic, strain
        nl = neighbor_list(positions, cell, pbc, self.cutoff)
        if len(nl) == 0:
            return 0.0, f_out, atomic, strain
        za, zb = species[nl.i], species[nl.j]
        lo, hi = np.minimum(za, zb), np.maximum(za, zb)
        index = self._index()
        missing = {(int(a), int(b)) for a, b in zip(lo, hi)} - set(index)
        if missing:
            raise HdnnpError("baseline: no radii for element pair(s) "
                             + ", ".join(f"{symbol(a)}-{symbol(b)}" for a, b in sorted(missing)))
        kind = np.array([index[(int(a), int(b))] for a, b in zip(lo, hi)]) if len(index) > 1 else np.zeros(len(lo), int)
        phi = np.zeros(len(nl))
        dphi = np.zeros(len(nl))
        for k, (a, b) in enumerate(self.pairs):
            sel = np.flatnonzero((kind == k) & (nl.distance < self.r_outer[k]))
            if len(sel) == 0:
                continue
            r = nl.distance[sel]
            e, de = zbl(r, int(a), int(b))
            s, ds = switch(r, self.r_inner[k], self.r_outer[k])
            phi[sel] = e * s
            dphi[sel] = de * s + e * ds
        atomic = 0.5 * np.bincount(nl.i, weights=phi, minlength=n)
        g = (dphi / nl.distance)[:, None] * nl.vector  # φ'(r) R / r per entry
        if forces:
            f_out = np.stack([np.bincount(nl.i, weights=g[:, c], minlength=n) for c in range(3)], axis=1)
        if stress:
            strain = 0.5 * nl.vector.T @ g
        return float(atomic.sum()), f_out, atomic, strain

    # -- storage ----------------------------------------------------------------------------

    def to_h5(self, group) -> None:
        group.attrs["kind"] = "zbl"
        group.attrs["formula"] = ("ZBL universal screening (Ziegler, Biersack, Littmark 1985) times a quintic "
                                  "switch 1 -> 0 between r_inner and r_outer; see hdnnp/baseline.py")
        group.create_dataset("pairs", data=self.pairs)
        group.create_dataset("r_inner", data=self.r_inner)
        group.create_dataset("r_outer", data=self.r_outer)

    @classmethod
    def from_h5(cls, group) -> "ZBLBaseline":
        kind = group.attrs.get("kind", "")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind != "zbl":
            raise HdnnpError(f"{group.file.filename}: baseline kind '{kind}' is not supported (only zbl)")
        return cls(group["pairs"][:], group["r_inner"][:], group["r_outer"][:])


def parse_radii(text: str) -> tuple | None:
    """``--baseline-radii R_INNER:R_OUTER`` (Å) as a pair of floats; None for an empty text."""
    if not text:
        return None
    try:
        radii = tuple(float(x) for x in text.split(":"))
    except ValueError:
        radii = ()
    if len(radii) != 2:
        raise HdnnpError(f"--baseline-radii: expected R_INNER:R_OUTER in Å, got '{text}'")
    _check_radii(*radii)
    return radii


def _check_radii(r_in: float, r_out: float) -> None:
    if not 0 < r_in < r_out:
        raise HdnnpError(f"--baseline-radii: expected 0 < R_INNER < R_OUTER (Å), got {r_in}:{r_out}")


def shortest_distances(frames, elements, cutoff: float) -> dict:
    """{(a, b): shortest distance (Å)} over ``frames`` (objects with positions, cell, pbc,
    species) for every unordered element pair found closer than ``cutoff``."""
    best: dict = {}
    for f in frames:
        nl = neighbor_list(f.positions, f.cell, f.pbc, cutoff)
        if len(nl) == 0:
            continue
        species = np.asarray(f.species, np.int64)
        lo = np.minimum(species[nl.i], species[nl.j])
        hi = np.maximum(species[nl.i], species[nl.j])
        key = lo * 1000 + hi
        for code in np.unique(key):
            d = float(nl.distance[key == code].min())
            pair = (int(code // 1000), int(code % 1000))
            best[pair] = min(best.get(pair, np.inf), d)
    return best


def fit_baseline(frames, elements, cutoff: float, radii: tuple | None = None) -> ZBLBaseline:
    """The default baseline of a training set: per element pair r_outer = the shortest distance
    found in ``frames`` (pairs never closer than ``cutoff``: the shortest of any pair), r_inner =
    0.8 r_outer; or the same (r_inner, r_outer) for every pair when ``radii`` is given."""
    elements = sorted(int(z) for z in elements)
    pairs = [(a, b) for k, a in enumerate(elements) for b in elements[k:]]
    if radii is not None:
        r_in, r_out = float(radii[0]), float(radii[1])
        _check_radii(r_in, r_out)
        return ZBLBaseline(pairs, [r_in] * len(pairs), [r_out] * len(pairs))
    found = shortest_distances(frames, elements, cutoff)
    if not found:
        raise HdnnpError(f"baseline: no two atoms of the training data are closer than the cutoff {cutoff} Å; "
                         "give the radii with --baseline-radii R_INNER:R_OUTER")
    overall = min(found.values())
    r_out = np.array([found.get(p, overall) for p in pairs])
    return ZBLBaseline(pairs, INNER_FRACTION * r_out, r_out)


def baseline_of_set(baseline: ZBLBaseline, group, forces: bool = True, chunk_frames: int = 256,
                    strain: bool = False):
    """Baseline energy per frame (eV) and forces per atom (eV/Å, or None) of a frame-set group;
    with ``strain`` a third item, its strain derivative ∂E/∂ε per frame (n_frames, 3, 3) eV
    (NaN for frames not periodic in all three directions)."""
    energies, force_parts, strains = [], [], []
    for f in iter_frames(group, chunk_frames):
        periodic = bool(np.all(f.pbc))
        e, fo, _, s = baseline.evaluate(f.positions, f.cell, f.pbc, f.species, forces=forces,
                                        stress=strain and periodic)
        energies.append(e)
        if forces:
            force_parts.append(fo)
        if strain:
            strains.append(s if periodic else np.full((3, 3), np.nan))
    energy = np.array(energies)
    out = (energy, (np.concatenate(force_parts) if force_parts else np.zeros((0, 3))) if forces else None)
    return out + (np.array(strains).reshape(-1, 3, 3),) if strain else out


def iter_frames(group, chunk_frames: int = 256):
    """Every frame of a frame-set group, one :class:`hdnnp.frames.Frame` at a time."""
    from hdnnp.h5io import iter_frame_chunks

    for _, chunk in iter_frame_chunks(group, chunk_frames):
        for k in range(len(chunk)):
            yield chunk.frame(k)
