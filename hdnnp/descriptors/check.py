"""The seed's descriptor check: do atoms with similar descriptors feel similar forces?

For sampled pairs of atoms (a, b) of the same element::

    d_ab = ‖G'_a − G'_b‖   (scaled features, the first n selected ones)
    F_ab = ‖F_a − F_b‖     (eV/Å)

As n grows, d → 0 must imply F → 0; a descriptor set with too few features has pairs with
d ≈ 0 but large F. The Pearson correlation of d and F is stored for n = 1, 15, 30 (those not
above the number selected), all selected, and all informative candidates (each ranged to
[-1, 1] with its training range), so the report can plot F against d.
"""

from __future__ import annotations

import numpy as np

from hdnnp.descriptors.selection import informative_candidates

#: Feature counts of the seed's check (plus "all selected" and "all candidates").
CHECK_FEATURE_COUNTS = (1, 15, 30)


def _pearson(x, y) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def descriptor_check(feature_set, samples: dict, max_pairs: int = 20000, rng=None) -> dict:
    """Distances and force differences for up to ``max_pairs`` random same-element atom pairs.

    ``samples[Z] = (raw (n, n_candidates), forces (n, 3))`` of training atoms (forces NaN if
    unknown). Returns datasets for ``/descriptor_check``: ``n_features`` (feature counts; the
    last entry is the number of informative candidates), ``labels``, ``correlation``,
    ``distance_<label>`` per count, ``force_difference``, ``element`` per pair; or an
    ``unavailable`` reason when the training set has no forces.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    fs = feature_set
    usable = {z: s for z, s in samples.items() if len(s[0]) >= 2 and np.all(np.isfinite(s[1]))}
    if not usable:
        return {"unavailable": "no training forces (or fewer than two atoms per element)"}
    n_sel_min = min(fs.n_features(z) for z in usable)
    counts = sorted({n for n in CHECK_FEATURE_COUNTS if n < n_sel_min} | {n_sel_min})
    labels = [str(n) for n in counts] + ["all"]
    total = sum(len(s[0]) for s in usable.values())
    dist = {label: [] for label in labels}
    force_diff, element, n_candidates = [], [], []
    for z, (raw, forces) in usable.items():
        n_pairs = max(1, int(round(max_pairs * len(raw) / total)))
        a = rng.integers(0, len(raw), n_pairs)
        b = rng.integers(0, len(raw) - 1, n_pairs)
        b = b + (b >= a)  # b != a
        scaled = fs.scale(z, raw[:, fs.selected[z]])
        for n, label in zip(counts, labels):
            dist[label].append(np.linalg.norm(scaled[a, :n] - scaled[b, :n], axis=1))
        useful = informative_candidates(raw, fs.candidate_min.get(z), fs.candidate_max.get(z))
        lo, hi = fs.candidate_min[z][useful], fs.candidate_max[z][useful]
        ranged = 2.0 * (raw[:, useful] - lo) / np.where(hi > lo, hi - lo, 1.0) - 1.0
        dist["all"].append(np.linalg.norm(ranged[a] - ranged[b], axis=1))
        n_candidates.append(len(useful))
        force_diff.append(np.linalg.norm(forces[a] - forces[b], axis=1))
        element.append(np.full(n_pairs, z, np.int32))
    force_diff = np.concatenate(force_diff)
    out = {"n_features": np.array(counts + [min(n_candidates)], np.int64),
           "labels": np.array(labels, dtype=object).astype("S"),
           "force_difference": force_diff, "element": np.concatenate(element)}
    correlation = []
    for label in labels:
        d = np.concatenate(dist[label])
        out[f"distance_{label}"] = d
        correlation.append(_pearson(d, force_diff))
    out["correlation"] = np.array(correlation)
    return out
