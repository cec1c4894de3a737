"""Candidate grids of symmetry functions (``hdnnp symmetry --grid seed|auto|FILE``).

``seed``: the seed's grid (:meth:`FeatureSet.default`: 6 η × 6 Rs radial, 6 η × 4 ζ × 2 λ narrow
angular, one cutoff).

``auto`` (:func:`auto_grid`): generated from a few numbers in the manner of n2p2's parameter
generator (its ``sfparamgen``, after Gastegger et al., J. Chem. Phys. 148, 241709 (2018) and
Imbalzano et al., J. Chem. Phys. 148, 241730 (2018)): the cutoff Rc, the shortest interatomic
distance of the training data r_min and the number of radial points n, with
r_k = r_min + k (Rc − r_min)/(n − 1), k = 0 .. n − 1 and Δ = (Rc − r_min)/(n − 1):

- radial, centred: Rs = 0, η_k = 1/(2 r_k²) (Gaussians of width r_k around the atom);
- radial, shifted: Rs = r_k, η = 1/(2 Δ²) (a Gaussian of width Δ on every grid point);
- angular, narrow (G4) and wide (G5): the centred η_k, Rs = 0, every ζ of the list, λ = ±1;

for every neighbour element (radial) and unordered neighbour-element pair (angular), so
2n per element and 4·n·len(ζ) per pair. CUR or FPS selection then picks the network inputs.

``FILE``: n2p2 ``symfunction_short`` lines (types 2, 3, 9; lengths in Å), e.g. a potential's
input.nn: their union over central elements becomes the candidate list.
"""

from __future__ import annotations

import numpy as np

from hdnnp.descriptors.features import DEFAULT_ZETAS, FeatureSet, element_pairs
from hdnnp.errors import HdnnpError

#: Defaults of ``--grid auto``.
AUTO_RADIAL_POINTS = 8
AUTO_ZETAS = DEFAULT_ZETAS  # 1, 2, 4, 16
#: r_min is searched up to this distance (Å); training data with no closer pair use it.
AUTO_PROBE_ANGSTROM = 4.0
GRIDS = ("seed", "auto")


def auto_grid(elements, cutoff: float, r_min: float, n_radial: int = AUTO_RADIAL_POINTS,
              zetas=AUTO_ZETAS) -> FeatureSet:
    """The ``auto`` candidate grid (module docstring) as an unfitted :class:`FeatureSet`."""
    elements = tuple(sorted({int(z) for z in elements}))
    if not 0 < r_min < cutoff:
        raise HdnnpError(f"--grid auto: the shortest distance {r_min:.3g} Å must lie between 0 and the cutoff "
                         f"{cutoff:g} Å")
    if n_radial < 2:
        raise HdnnpError(f"--grid-points: expected at least 2 radial points, got {n_radial}")
    if not zetas or any(z < 1 for z in zetas):
        raise HdnnpError("--grid-zetas: expected values >= 1, e.g. 1,2,4,16")
    r = np.linspace(r_min, cutoff, n_radial)
    delta = r[1] - r[0]
    centred = 1.0 / (2.0 * r * r)
    rows = []
    for b in elements:
        rows += [(2, b, 0, eta, 0.0, 0.0, 0.0) for eta in centred]
        rows += [(2, b, 0, 1.0 / (2.0 * delta * delta), rs, 0.0, 0.0) for rs in r]
    for kind in (4, 5):
        for a, b in element_pairs(elements):
            rows += [(kind, a, b, eta, 0.0, float(zeta), lam) for eta in centred for zeta in zetas
                     for lam in (-1.0, 1.0)]
    return _feature_set(elements, cutoff, rows, np.full(len(rows), float(cutoff)),
                        f"auto: Rc {cutoff:g} Å, r_min {r_min:.4g} Å, {n_radial} radial points, "
                        f"zeta {','.join(f'{z:g}' for z in zetas)}")


def grid_from_file(path, elements) -> FeatureSet:
    """Candidates from the ``symfunction_short`` lines of an n2p2-style file (lengths in Å)."""
    from pathlib import Path

    from hdnnp.interop.n2p2 import TYPES, _symmetry_function, input_lines

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise HdnnpError(f"{path}: cannot be read ({exc.strerror}); --grid takes seed, auto or a file of n2p2 "
                         "symfunction_short lines") from None
    elements = tuple(sorted({int(z) for z in elements}))
    seen, rows, rcs = set(), [], []
    for number, key, args in input_lines(text):
        if key != "symfunction_short":
            continue
        f = _symmetry_function(path, number, args, elements)
        key = (TYPES[f.type], f.neighbors[0], f.neighbors[1] if len(f.neighbors) > 1 else 0,
               f.eta, f.rs, f.zeta, f.lam, f.rc)
        if key not in seen:  # the same function for several central elements: one candidate
            seen.add(key)
            rows.append(key[:7])
            rcs.append(f.rc)
    if not rows:
        raise HdnnpError(f"{path}: no symfunction_short lines (expected n2p2's '<element> 2 <neighbour> <eta> "
                         "<rshift> <rcutoff>' and '<element> 3|9 <n1> <n2> <eta> <lambda> <zeta> <rcutoff>')")
    rcs = np.array(rcs)
    return _feature_set(elements, float(rcs.max()), rows, rcs, f"file {path.name}: {len(rows)} functions")


def _feature_set(elements, cutoff, rows, rc, description) -> FeatureSet:
    c = list(zip(*rows))
    fs = FeatureSet(elements=tuple(elements), cutoff=float(cutoff), kind=np.array(c[0], np.int32),
                    neighbor_a=np.array(c[1], np.int32), neighbor_b=np.array(c[2], np.int32),
                    eta=np.array(c[3], float), rs=np.array(c[4], float), zeta=np.array(c[5], float),
                    lambda_=np.array(c[6], float), rc=np.asarray(rc, float))
    fs.grid = description
    return fs

