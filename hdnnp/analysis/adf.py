"""Bond-angle distribution P(θ) of triplets j–i–k.

For every atom i and every unordered pair of its neighbour-list entries (images of j and k,
both with 0 < |R| <= ``bond_cutoff``, Å), the angle

    θ_jik = arccos( R_ij · R_ik / (|R_ij| |R_ik|) )       (degrees, 0..180)

is histogrammed and normalised to a probability density in degrees⁻¹ (∫ P(θ) dθ = 1 over
0..180°). Neighbours come from :func:`hdnnp.neighbors.neighbor_list`, so all periodic images
count (j and k may be two images of one atom in a small cell). Non-periodic directions are
allowed (no images along them). The histogram is not divided by sin θ: P(θ) is the
distribution of angles as found, a random (uncorrelated) pair of bonds gives P ∝ sin θ.
The default bond cutoff 3.2 Å suits Te (first RDF minimum of the liquid ~3.2-3.4 Å).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.neighbors import neighbor_list

DEFAULT_BOND_CUTOFF = 3.2  # Å, Te


@dataclass
class ADFResult:
    """``theta`` bin centres (degrees), ``edges`` (degrees), ``density`` P(θ) (degree⁻¹; zeros
    when no triplet was found), ``n_triplets`` counted, ``mean_bonds`` mean neighbours per atom
    within the bond cutoff, ``n_frames``, ``bond_cutoff`` (Å)."""

    theta: np.ndarray
    edges: np.ndarray
    density: np.ndarray
    n_triplets: int
    mean_bonds: float
    n_frames: int
    bond_cutoff: float


def bond_angles(nl) -> np.ndarray:
    """All angles θ_jik (degrees) of a :class:`hdnnp.neighbors.NeighborList`, one per
    unordered pair of entries of the same central atom."""
    n_bonds = np.diff(nl.start)
    out = []
    for c in np.unique(n_bonds[n_bonds >= 2]):
        centres = np.nonzero(n_bonds == c)[0]
        entries = nl.start[centres][:, None] + np.arange(c)[None, :]  # (n_centres, c)
        unit = nl.vector[entries] / nl.distance[entries][..., None]
        p, q = np.triu_indices(c, k=1)
        cos = np.einsum("npd,npd->np", unit[:, p], unit[:, q])
        out.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).ravel())
    return np.concatenate(out) if out else np.zeros(0)


class ADFAccumulator:
    """Streaming P(θ): ``acc = ADFAccumulator(bond_cutoff=3.2, bins=90)`` (2° bins),
    ``acc.add(frame)`` (``positions`` Å, ``cell`` Å, ``pbc``), ``acc.result()``
    (:class:`ADFResult`)."""

    def __init__(self, bond_cutoff: float = DEFAULT_BOND_CUTOFF, bins: int = 90):
        if not bond_cutoff > 0.0:
            raise HdnnpError(f"bond cutoff must be positive, got {bond_cutoff}")
        if int(bins) < 1:
            raise HdnnpError(f"bins must be at least 1, got {bins}")
        self.bond_cutoff = float(bond_cutoff)
        self.edges = np.linspace(0.0, 180.0, int(bins) + 1)
        self.counts = np.zeros(int(bins))
        self.n_bonds = 0
        self.n_atoms = 0
        self.n_frames = 0

    def add(self, frame) -> None:
        nl = neighbor_list(frame.positions, frame.cell, frame.pbc, self.bond_cutoff)
        self.counts += np.histogram(bond_angles(nl), bins=self.edges)[0]
        self.n_bonds += len(nl)
        self.n_atoms += len(frame.positions)
        self.n_frames += 1

    def result(self) -> ADFResult:
        if self.n_frames == 0:
            raise HdnnpError("no frames added to the bond-angle distribution")
        total = self.counts.sum()
        width = np.diff(self.edges)
        density = self.counts / (total * width) if total > 0 else np.zeros_like(self.counts)
        return ADFResult(theta=0.5 * (self.edges[1:] + self.edges[:-1]), edges=self.edges.copy(),
                         density=density, n_triplets=int(total),
                         mean_bonds=self.n_bonds / max(self.n_atoms, 1), n_frames=self.n_frames,
                         bond_cutoff=self.bond_cutoff)
