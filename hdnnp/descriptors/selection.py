"""Choosing N symmetry functions out of the candidates (Imbalzano et al., J. Chem. Phys. 148, 241730 (2018)).

Steps, on training data of one central element (rows: atoms, columns: candidates):

1. drop candidates that are zero for every atom (no neighbour of that kind within Rc, or a
   Gaussian that vanishes);
2. drop candidates that are constant or nearly so over all atoms (includes 1.): a training
   range max − min below :data:`MIN_FEATURE_RANGE` (absolute) or below
   :data:`MIN_RELATIVE_RANGE` of max |G|. Every G2 and G4 term is a product of Gaussians,
   cutoff functions ≤ 1 and an angular factor ≤ 2, so one neighbour (or triplet) at the centre of
   a function's window moves it by O(1); a candidate that the training atoms move by less than
   10⁻³ of that probes a region no training atom reaches (on the bundled Te data: G4 with
   η = 1.79 Å⁻² spanning 10⁻²⁶ to 10⁻¹⁹, which CUR ranks high once each column is ranged to
   [−1, 1]). Ranged by that tiny range, the first atom to enter the region reads as an excess
   of 10⁸–10¹⁵, and MD with such a potential left its domain within a picosecond. Then drop
   duplicates — a candidate equal to an earlier one for every atom within a relative
   tolerance (with η = 0 every Rs gives the same G2 = Σ fc, so only the first is kept);
3. normalise each remaining candidate to [-1, 1] with its training range and centre it;
4. keep N by one of:

   * ``cur`` (default): greedy deterministic CUR column selection (Imbalzano 2018, §II.C):
     pick the column with the largest leverage score on the leading right singular vector of
     the residual matrix X, then orthogonalise every column against the picked one
     (X ← X − x_c x_cᵀ X / |x_c|²) and repeat. Done on the Gram matrix C = XᵀX
     (n_candidates²), so the cost does not grow with the number of atoms beyond forming C:
     the leverage vector is the leading eigenvector of C and the projection is
     C ← C − C[:, c] C[c, :] / C[c, c].
   * ``fps``: farthest-point sampling of the candidates as points in atom space
     (Imbalzano 2018, §II.B): start with the candidate of largest norm, then repeatedly add
     the one whose smallest distance to the chosen ones is largest;
     d²(a, b) = C_aa + C_bb − 2 C_ab.

The returned indices are in the order of selection (most informative first).
"""

from __future__ import annotations

import numpy as np

from hdnnp.errors import HdnnpError

#: Two candidates are duplicates when max_atoms |x_a − x_b| <= DUPLICATE_RTOL · max(|x_a|, |x_b|).
DUPLICATE_RTOL = 1e-10
#: Smallest training range max − min of a candidate that is kept (absolute; one neighbour or
#: triplet at the centre of a function's window contributes O(1), see the module docstring).
MIN_FEATURE_RANGE = 1e-3
#: Smallest training range of a candidate relative to its largest magnitude max |G|.
MIN_RELATIVE_RANGE = 1e-3


def informative_candidates(raw, value_min=None, value_max=None) -> np.ndarray:
    """Indices of candidates whose training range is not tiny (absolute: :data:`MIN_FEATURE_RANGE`,
    relative: :data:`MIN_RELATIVE_RANGE`; so no constant, all-zero or near-constant ones) and
    that are not a duplicate of an earlier one."""
    raw = np.asarray(raw, float)
    vmin = raw.min(axis=0) if value_min is None else np.asarray(value_min)
    vmax = raw.max(axis=0) if value_max is None else np.asarray(value_max)
    scale = np.maximum(np.abs(vmin), np.abs(vmax))
    spread = vmax - vmin
    varying = (spread >= MIN_FEATURE_RANGE) & (spread >= MIN_RELATIVE_RANGE * scale)
    kept: list[int] = []
    for c in np.nonzero(varying)[0]:
        col = raw[:, c]
        duplicate = False
        for k in kept:
            tol = DUPLICATE_RTOL * max(scale[c], scale[k])
            if abs(scale[c] - scale[k]) <= tol and np.max(np.abs(col - raw[:, k])) <= tol:
                duplicate = True
                break
        if not duplicate:
            kept.append(int(c))
    return np.array(kept, np.int64)


def normalised(raw, columns, value_min=None, value_max=None) -> np.ndarray:
    """Columns ranged to [-1, 1] by their (training) range and centred (mean 0)."""
    x = np.asarray(raw, float)[:, columns]
    lo = x.min(axis=0) if value_min is None else np.asarray(value_min)[columns]
    hi = x.max(axis=0) if value_max is None else np.asarray(value_max)[columns]
    x = 2.0 * (x - lo) / np.where(hi > lo, hi - lo, 1.0) - 1.0
    return x - x.mean(axis=0)


def cur_order(x, n: int) -> np.ndarray:
    """Greedy CUR: indices of ``n`` columns of ``x`` in order of selection (see module docstring).

    Once the residual is exhausted (the remaining columns are, to 1e-10 of the initial norm,
    linear combinations of the chosen ones) the rest are taken by decreasing residual norm.
    """
    gram = x.T @ x
    total = max(float(np.trace(gram)), 1e-300)
    chosen: list[int] = []
    vector = np.ones(gram.shape[0]) / np.sqrt(gram.shape[0])
    n = min(n, x.shape[1])
    while len(chosen) < n:
        diag = np.diag(gram).copy()
        diag[chosen] = -np.inf
        if np.max(diag) <= 1e-10 * total:
            rest = [int(c) for c in np.argsort(-diag, kind="stable") if c not in chosen]
            chosen += rest[:n - len(chosen)]
            break
        vector = _leading_eigenvector(gram, vector)
        score = vector ** 2
        score[chosen] = -1.0
        c = int(np.argmax(score))
        chosen.append(c)
        if gram[c, c] > 0:
            gram = gram - np.outer(gram[:, c], gram[c, :]) / gram[c, c]
    return np.array(chosen, np.int64)


def _leading_eigenvector(gram, start, tol: float = 1e-10, max_iter: int = 500):
    """Leading eigenvector of a symmetric positive semi-definite matrix by power iteration.

    Warm-started from the previous step's vector; falls back to a full ``eigh`` when the
    iteration does not converge (nearly degenerate leading eigenvalues). Power iteration
    avoids dozens of threaded LAPACK calls on tiny matrices.
    """
    v = start + 1e-3 * np.linspace(1.0, 2.0, len(start))  # never exactly orthogonal to the answer
    v /= np.linalg.norm(v)
    for _ in range(max_iter):
        w = gram @ v
        norm = np.linalg.norm(w)
        if norm == 0.0:
            return v
        w /= norm
        if np.linalg.norm(w - v) < tol:
            return w
        v = w
    return np.linalg.eigh(gram)[1][:, -1]


def fps_order(x, n: int) -> np.ndarray:
    """Farthest-point sampling of the columns of ``x`` (see module docstring)."""
    gram = x.T @ x
    diag = np.diag(gram)
    first = int(np.argmax(diag))
    chosen = [first]
    d2 = diag + diag[first] - 2.0 * gram[:, first]
    for _ in range(min(n, x.shape[1]) - 1):
        d2[chosen] = -1.0
        c = int(np.argmax(d2))
        chosen.append(c)
        d2 = np.minimum(d2, diag + diag[c] - 2.0 * gram[:, c])
    return np.array(chosen, np.int64)


def select_features(raw, n_features: int, method: str = "cur", value_min=None, value_max=None) -> np.ndarray:
    """Candidate indices to keep (at most ``n_features``), most informative first."""
    if n_features < 1:
        raise HdnnpError(f"--n-features must be at least 1, got {n_features}")
    useful = informative_candidates(raw, value_min, value_max)
    if len(useful) == 0:
        raise HdnnpError("every symmetry-function candidate is constant, or nearly so (training range "
                         f"below {MIN_FEATURE_RANGE:g}), on the training set (no neighbours within the cutoff?)")
    x = normalised(raw, useful, value_min, value_max)
    if method == "cur":
        order = cur_order(x, n_features)
    elif method == "fps":
        order = fps_order(x, n_features)
    else:
        raise HdnnpError(f"unknown selection method '{method}'")
    return useful[order]
