"""Symmetry-function candidates, their selection and their ranging: :class:`FeatureSet`.

Candidates (SPEC §4) are the same list for every central element. Their order is fixed and
documented here because column ``c`` of ``raw`` in symmetry.h5 is candidate ``c``:

1. G2 blocks, one per neighbour element ``b`` (in ``elements`` order); inside a block
   η is the outer loop and Rs the inner one (6 × 6 = 36 candidates with the default grid).
2. G4 blocks, one per unordered neighbour pair ``(a, b)`` with ``a <= b`` in ``elements``
   order, lexicographic ((Te, Te); for Ge, Te: (Ge, Ge), (Ge, Te), (Te, Te)); inside a block
   η outer, then ζ, then λ inner (6 × 4 × 2 = 48 candidates).

Fitting (training set only, scikit-learn style ``fit`` then ``scale``) keeps, per central
element, ``n_features`` candidates after dropping the degenerate ones (see
:mod:`hdnnp.descriptors.selection`), and stores the training minimum and maximum of each
selected candidate for the ranging to [-1, 1]::

    x' = 2 (x - min) / (max - min) - 1          (x' = 0 for a feature constant in training)

Imported potentials (:mod:`hdnnp.interop.n2p2`) may carry what hdnnp's own grids never use: a
cutoff radius per candidate (``rc``), n2p2's other cutoff types (``cutoff_type``,
``cutoff_alpha``), shifted angular functions (``rs`` of a G4/G5), the wide angular G5 (kind 5)
and another affine scaling per selected feature, ``scaling[Z] = (center, factor, offset)``::

    x' = (x − center) · factor + offset

(hdnnp's ranging is center = min, factor = 2/(max − min), offset = −1.) Extrapolation is
always judged on the training range [min, max] (:meth:`FeatureSet.unit_scaled`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError

#: The seed's candidate grid (SPEC §4).
DEFAULT_CUTOFF_ANGSTROM = 6.0
DEFAULT_ETAS = (0.0, 0.04, 0.14, 0.32, 0.71, 1.79)  # Å⁻²
DEFAULT_RSS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)  # Å
DEFAULT_ZETAS = (1.0, 2.0, 4.0, 16.0)
DEFAULT_LAMBDAS = (-1.0, 1.0)
#: The seed's number of network inputs.
DEFAULT_N_FEATURES = 30

SELECTION_METHODS = ("cur", "fps")


def element_pairs(elements) -> list[tuple[int, int]]:
    """Unordered neighbour-element pairs ``(a, b)``, ``a <= b``, in the documented G4 block order."""
    elements = list(elements)
    return [(a, b) for ia, a in enumerate(elements) for b in elements[ia:]]


@dataclass
class FeatureSet:
    """Candidate symmetry functions of a system, the selection and the ranging fitted on training data.

    Candidate arrays (all of length ``n_candidates``): ``kind`` (2, 4 or 5: G2, narrow G4, wide
    G5), ``neighbor_a``, ``neighbor_b`` (atomic numbers; 0 for G2's second), ``eta`` (Å⁻²),
    ``rs`` (Å; 0 for hdnnp's G4), ``zeta`` and ``lambda_`` (0 for G2), ``rc`` (Å; default
    ``cutoff`` for all; ``cutoff`` is the largest, the neighbour-list radius). After :meth:`fit`: ``selected[Z]`` (candidate indices
    in order of selection, most informative first for CUR/FPS), ``min[Z]``/``max[Z]`` (training
    range of the selected features), ``candidate_min[Z]``/``candidate_max[Z]`` (of all candidates).
    """

    elements: tuple[int, ...]
    cutoff: float
    kind: np.ndarray
    neighbor_a: np.ndarray
    neighbor_b: np.ndarray
    eta: np.ndarray
    rs: np.ndarray
    zeta: np.ndarray
    lambda_: np.ndarray
    selected: dict[int, np.ndarray] = field(default_factory=dict)
    min: dict[int, np.ndarray] = field(default_factory=dict)
    max: dict[int, np.ndarray] = field(default_factory=dict)
    candidate_min: dict[int, np.ndarray] = field(default_factory=dict)
    candidate_max: dict[int, np.ndarray] = field(default_factory=dict)
    candidate_mean: dict[int, np.ndarray] = field(default_factory=dict)
    candidate_sigma: dict[int, np.ndarray] = field(default_factory=dict)
    selection_method: str = ""
    rc: np.ndarray | None = None
    cutoff_type: int = 1
    cutoff_alpha: float = 0.0
    scaling: dict[int, tuple] = field(default_factory=dict)
    grid: str = "seed"  # how the candidates were made (hdnnp.descriptors.grids)
    #: an imported potential's n2p2 scaling keywords (input.nn lines), written back by export
    scaling_keywords: str = ""

    def __post_init__(self):
        self.rc = (np.full(len(self.kind), float(self.cutoff)) if self.rc is None
                   else np.asarray(self.rc, float))
        if len(self.rc) and not np.isclose(self.rc.max(), self.cutoff, rtol=1e-15, atol=0.0):
            raise HdnnpError(f"the cutoff {self.cutoff} Å is not the largest cutoff radius {self.rc.max()} Å")

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def default(cls, elements, cutoff: float = DEFAULT_CUTOFF_ANGSTROM, etas=DEFAULT_ETAS,
                rss=DEFAULT_RSS, zetas=DEFAULT_ZETAS, lambdas=DEFAULT_LAMBDAS) -> "FeatureSet":
        """The candidate grid (default: the seed's) for the given elements (atomic numbers)."""
        elements = tuple(sorted({int(z) for z in elements}))
        if not elements:
            raise HdnnpError("no elements given for the symmetry functions")
        if not cutoff > 0:
            raise HdnnpError(f"cutoff radius must be positive, got {cutoff}")
        if any(z < 1 for z in zetas):
            raise HdnnpError("zeta must be >= 1 (the angular term (1 + lambda cos)^zeta)")
        if any(abs(lam) != 1 for lam in lambdas):
            raise HdnnpError("lambda must be -1 or +1")
        rows = []
        for b in elements:
            rows += [(2, b, 0, eta, rs, 0.0, 0.0) for eta in etas for rs in rss]
        for a, b in element_pairs(elements):
            rows += [(4, a, b, eta, 0.0, zeta, lam) for eta in etas for zeta in zetas for lam in lambdas]
        cols = list(zip(*rows))
        return cls(elements=elements, cutoff=float(cutoff),
                   kind=np.array(cols[0], np.int32), neighbor_a=np.array(cols[1], np.int32),
                   neighbor_b=np.array(cols[2], np.int32), eta=np.array(cols[3], float),
                   rs=np.array(cols[4], float), zeta=np.array(cols[5], float),
                   lambda_=np.array(cols[6], float))

    @property
    def n_candidates(self) -> int:
        return len(self.kind)

    @property
    def is_fitted(self) -> bool:
        return bool(self.selected)

    def n_features(self, z: int) -> int:
        """Number of selected features (network inputs) of central element ``z``."""
        return len(self._selected(z))

    def describe(self, c: int) -> str:
        """Human-readable name of candidate ``c``, e.g. ``G2[Te] eta=0.04 Rs=2``."""
        rc = f" Rc={self.rc[c]:g}" if self.rc[c] != self.cutoff else ""
        if self.kind[c] == 2:
            return f"G2[{symbol(self.neighbor_a[c])}] eta={self.eta[c]:g} Rs={self.rs[c]:g}{rc}"
        rs = f" Rs={self.rs[c]:g}" if self.rs[c] else ""
        return (f"G{self.kind[c]}[{symbol(self.neighbor_a[c])},{symbol(self.neighbor_b[c])}] eta={self.eta[c]:g} "
                f"zeta={self.zeta[c]:g} lambda={self.lambda_[c]:+g}{rs}{rc}")

    def _selected(self, z: int) -> np.ndarray:
        if z not in self.selected:
            raise HdnnpError(f"no features selected for element {symbol(z)} (Z={z}); "
                             f"the feature set covers {', '.join(symbol(e) for e in self.elements)}")
        return self.selected[z]

    # -- fit / transform ---------------------------------------------------------------------

    def fit(self, raw_by_element: dict, n_features: int = DEFAULT_N_FEATURES, method: str = "cur",
            keep=None, ranges: dict | None = None) -> "FeatureSet":
        """Select features and fit the ranging on training data (see :mod:`.selection`).

        ``raw_by_element[Z]``: (n_atoms_Z, n_candidates) raw candidate values of training atoms
        of element Z (all of them, or a representative sample). ``keep``: candidate indices to
        use instead of an automatic selection (a sequence for every element or a dict per Z).
        ``ranges[Z] = (min, max)`` over all candidates overrides the min/max taken from
        ``raw_by_element`` (the symmetry stage passes the range of the full training set when
        it fits the selection on a sample). Returns self.
        """
        from hdnnp.descriptors.selection import select_features

        if method not in SELECTION_METHODS:
            raise HdnnpError(f"unknown selection method '{method}', choose one of {', '.join(SELECTION_METHODS)}")
        self.selected, self.min, self.max = {}, {}, {}
        self.candidate_min, self.candidate_max, self.candidate_mean, self.candidate_sigma = {}, {}, {}, {}
        for z in self.elements:
            raw = raw_by_element.get(z)
            if raw is None or len(raw) == 0:
                raise HdnnpError(f"no training atoms of element {symbol(z)} to fit the features on")
            raw = np.asarray(raw, float)
            if raw.ndim != 2 or raw.shape[1] != self.n_candidates:
                raise HdnnpError(f"raw values of {symbol(z)} have shape {raw.shape}, expected (n, {self.n_candidates})")
            if ranges is not None and z in ranges:
                cmin, cmax = (np.asarray(v, float) for v in ranges[z])
            else:
                cmin, cmax = raw.min(axis=0), raw.max(axis=0)
            if keep is not None:
                chosen = np.asarray(keep[z] if isinstance(keep, dict) else keep, np.int64)
                bad = chosen[(chosen < 0) | (chosen >= self.n_candidates)]
                if len(bad):
                    raise HdnnpError(f"feature indices {bad.tolist()} out of range 0..{self.n_candidates - 1}")
                if len(np.unique(chosen)) != len(chosen):
                    raise HdnnpError("feature list contains an index twice")
            else:
                chosen = select_features(raw, n_features, method=method, value_min=cmin, value_max=cmax)
            self.selected[z] = chosen
            self.candidate_min[z], self.candidate_max[z] = cmin, cmax
            # mean and standard deviation over the atoms given (n2p2's scaling.data carries them)
            self.candidate_mean[z], self.candidate_sigma[z] = raw.mean(axis=0), raw.std(axis=0)
            self.min[z], self.max[z] = cmin[chosen].copy(), cmax[chosen].copy()
        self.selection_method = "list" if keep is not None else method
        self.scaling = {}
        return self

    def scale(self, z: int, raw_selected, xp=np):
        """Scale the selected raw values of element ``z`` for the network.

        hdnnp's ranging to [-1, 1]: x' = 2 (x − min)/(max − min) − 1 (training range); a feature
        that was constant in training (max = min) maps to 0. An imported potential's own
        scaling: x' = (x − center) · factor + offset.
        """
        if z in self.scaling:
            center, factor, offset = self.scaling[z]
            return (raw_selected - xp.asarray(center)) * xp.asarray(factor) + xp.asarray(offset)
        factor = self.derivative_factor(z, xp)
        shift = xp.where(factor > 0, 1.0, 0.0)
        return (raw_selected - xp.asarray(self.min[z])) * factor - shift

    def derivative_factor(self, z: int, xp=np):
        """d x'/d x per selected feature: 2 / (max − min) (0 for a feature constant in training),
        or the imported scaling's factor."""
        self._selected(z)
        if z in self.scaling:
            return xp.asarray(self.scaling[z][1])
        width = np.asarray(self.max[z] - self.min[z], float)
        factor = np.where(width > 0, 2.0 / np.where(width > 0, width, 1.0), 0.0)
        return xp.asarray(factor)

    def unit_scaled(self, z: int, scaled):
        """Scaled values (as :meth:`scale` returns them) on hdnnp's training-range scale
        2 (x − min)/(max − min) − 1, where |·| > 1 means extrapolation (0 for constant features)."""
        if z not in self.scaling:
            return scaled
        center, factor, offset = self.scaling[z]
        width = np.asarray(self.max[z] - self.min[z], float)
        ok = (width > 0) & (np.asarray(factor) != 0)
        raw = (np.asarray(scaled) - offset) / np.where(ok, factor, 1.0) + center
        return np.where(ok, 2.0 * (raw - self.min[z]) / np.where(ok, width, 1.0) - 1.0, 0.0)

    # -- tables and storage ------------------------------------------------------------------

    def table(self) -> dict[str, np.ndarray]:
        """Flat table, one row per (central element, candidate), as ``/features`` in symmetry.h5.

        Columns: ``type`` (2/4), ``central``, ``neighbor_a``, ``neighbor_b`` (0 for G2),
        ``eta`` (Å⁻²), ``rs`` (Å), ``zeta``, ``lambda``, ``cutoff`` (Å), ``selected`` (bool),
        ``selection_rank`` (position in the selection, -1 if not selected), ``min``, ``max``
        (training range of the raw value; NaN before fitting), ``index`` (candidate index).
        """
        n, ne = self.n_candidates, len(self.elements)
        out = {
            "central": np.repeat(np.array(self.elements, np.int32), n),
            "index": np.tile(np.arange(n, dtype=np.int32), ne),
            "type": np.tile(self.kind, ne), "neighbor_a": np.tile(self.neighbor_a, ne),
            "neighbor_b": np.tile(self.neighbor_b, ne), "eta": np.tile(self.eta, ne),
            "rs": np.tile(self.rs, ne), "zeta": np.tile(self.zeta, ne),
            "lambda": np.tile(self.lambda_, ne), "cutoff": np.tile(self.rc, ne),
        }
        selected = np.zeros(n * ne, bool)
        rank = np.full(n * ne, -1, np.int32)
        vmin = np.full(n * ne, np.nan)
        vmax = np.full(n * ne, np.nan)
        for e, z in enumerate(self.elements):
            if z in self.selected:
                selected[e * n + self.selected[z]] = True
                rank[e * n + self.selected[z]] = np.arange(len(self.selected[z]))
            if z in self.candidate_min:
                vmin[e * n:(e + 1) * n] = self.candidate_min[z]
                vmax[e * n:(e + 1) * n] = self.candidate_max[z]
        out.update(selected=selected, selection_rank=rank, min=vmin, max=vmax)
        return out

    def to_h5(self, group: h5py.Group) -> None:
        """Write the feature set (candidates, selection, scaling) into an HDF5 group."""
        group.attrs["elements"] = np.array(self.elements, np.int32)
        group.attrs["cutoff"] = self.cutoff
        group.attrs["selection_method"] = self.selection_method
        group.attrs["grid"] = self.grid
        group.attrs["scaling_keywords"] = self.scaling_keywords
        group.attrs["cutoff_type"] = int(self.cutoff_type)
        group.attrs["cutoff_alpha"] = float(self.cutoff_alpha)
        group.attrs["candidate_order"] = (
            "G2 blocks per neighbour element (eta outer, Rs inner), then G4 blocks per unordered "
            "neighbour pair a<=b (eta outer, zeta, lambda inner)")
        cand = group.create_group("candidates")
        for name, arr in (("type", self.kind), ("neighbor_a", self.neighbor_a),
                          ("neighbor_b", self.neighbor_b), ("eta", self.eta), ("rs", self.rs),
                          ("zeta", self.zeta), ("lambda", self.lambda_), ("rc", self.rc)):
            cand.create_dataset(name, data=arr)
        for z in self.selected:
            g = group.create_group(symbol(z))
            g.attrs["atomic_number"] = z
            g.create_dataset("selected", data=np.asarray(self.selected[z], np.int64))
            g.create_dataset("min", data=self.min[z])
            g.create_dataset("max", data=self.max[z])
            if z in self.candidate_min:
                g.create_dataset("candidate_min", data=self.candidate_min[z])
                g.create_dataset("candidate_max", data=self.candidate_max[z])
            if z in self.candidate_mean:
                g.create_dataset("candidate_mean", data=self.candidate_mean[z])
                g.create_dataset("candidate_sigma", data=self.candidate_sigma[z])
            if z in self.scaling:
                for name, arr in zip(("center", "factor", "offset"), self.scaling[z]):
                    g.create_dataset(f"scaling_{name}", data=np.asarray(arr, float))

    @classmethod
    def from_h5(cls, group: h5py.Group) -> "FeatureSet":
        """Read a feature set written by :meth:`to_h5`."""
        try:
            cand = group["candidates"]
            fs = cls(elements=tuple(int(z) for z in group.attrs["elements"]),
                     cutoff=float(group.attrs["cutoff"]),
                     kind=cand["type"][:], neighbor_a=cand["neighbor_a"][:],
                     neighbor_b=cand["neighbor_b"][:], eta=cand["eta"][:], rs=cand["rs"][:],
                     zeta=cand["zeta"][:], lambda_=cand["lambda"][:],
                     rc=cand["rc"][:] if "rc" in cand else None,
                     cutoff_type=int(group.attrs.get("cutoff_type", 1)),
                     grid=str(group.attrs.get("grid", "seed")),
                     scaling_keywords=str(group.attrs.get("scaling_keywords", "")),
                     cutoff_alpha=float(group.attrs.get("cutoff_alpha", 0.0)))
            method = group.attrs.get("selection_method", "")
            fs.selection_method = method.decode() if isinstance(method, bytes) else str(method)
            for z in fs.elements:
                if symbol(z) in group:
                    g = group[symbol(z)]
                    fs.selected[z] = g["selected"][:]
                    fs.min[z], fs.max[z] = g["min"][:], g["max"][:]
                    if "candidate_min" in g:
                        fs.candidate_min[z], fs.candidate_max[z] = g["candidate_min"][:], g["candidate_max"][:]
                    if "candidate_mean" in g:
                        fs.candidate_mean[z], fs.candidate_sigma[z] = g["candidate_mean"][:], g["candidate_sigma"][:]
                    if "scaling_factor" in g:
                        fs.scaling[z] = tuple(g[f"scaling_{n}"][:] for n in ("center", "factor", "offset"))
        except KeyError as exc:
            raise HdnnpError(f"{group.file.filename}:{group.name}: not a feature set ({exc})") from None
        return fs
