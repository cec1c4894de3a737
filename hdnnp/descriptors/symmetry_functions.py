"""NumPy reference implementation of the Behler symmetry functions G2 and G4 (SPEC §4).

Cutoff function (Rc in Å; R² is compared with Rc² before any square root, in the neighbour list)::

    fc(R) = 0.5 (cos(π R / Rc) + 1)  for R <= Rc, else 0;   fc'(R) = −(π / 2Rc) sin(π R / Rc)

Radial (η in Å⁻², Rs in Å), one block per neighbour element::

    G2_i = Σ_{j≠i} exp(−η (R_ij − Rs)²) fc(R_ij)

Angular, one block per unordered neighbour-element pair, over unordered neighbour pairs::

    G4_i = 2^(1−ζ) Σ_{j≠i} Σ_{k>j, k≠i} (1 + λ cos θ_ijk)^ζ exp(−η (R_ij² + R_ik² + R_jk²))
           fc(R_ij) fc(R_ik) fc(R_jk),          cos θ_ijk = R_ij·R_ik / (R_ij R_ik)

All periodic images within Rc count (``j``, ``k`` run over neighbour-list entries).

The angular sum factorises: with A_a = 2^(1−ζ)(1 + λ cos θ)^ζ (one column per (ζ, λ)) and
B_e = exp(−η_e s) F (one per η; s = R_ij² + R_ik² + R_jk², F = fc_ij fc_ik fc_jk), the G4 block
of atom i is Σ_t A_a(t) B_e(t) over its triplets t: for every a one sparse (atoms × triplets)
matrix with entries A_a(t) times the dense (triplets × η) matrix B, evaluated for a whole box at
once, no Python loop over atoms.

Derivatives. For a triplet with R_ij = r_j − r_i, R_ik = r_k − r_i, writing a term
T = A(cos) E(s) F, the gradient with respect to the neighbour positions is::

    ∂T/∂r_j = a_j R_ij + Y R_ik,      ∂T/∂r_k = Y R_ij + b_k R_ik,      ∂T/∂r_i = −(∂T/∂r_j + ∂T/∂r_k)
    a_j = A E [−4η F + G_ij/R_ij + G_jk/R_jk] − A' E F cos θ / R_ij²
    b_k = A E [−4η F + G_ik/R_ik + G_jk/R_jk] − A' E F cos θ / R_ik²
    Y   = A' E F / (R_ij R_ik) − A E [−2η F + G_jk/R_jk]

with A' = dA/dcos θ = 2^(1−ζ) ζ λ (1 + λ cos θ)^(ζ−1), G_ij = fc'(R_ij) fc(R_ik) fc(R_jk) and so
on. The per-entry derivative ``D[p] = ∂G_i/∂(r of the image in entry p)`` is accumulated
per neighbour-list entry; ∂G_i/∂r_i follows from translation invariance (see
:func:`pair_derivatives`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hdnnp.errors import HdnnpError

#: Triplets evaluated at once (bounds the temporaries to a few tens of MB).
TRIPLET_BLOCK = 8192


def cutoff_function(r, cutoff: float):
    """fc(R) = 0.5 (cos(π R/Rc) + 1) for R <= Rc (else 0) and its derivative dfc/dR (Å⁻¹)."""
    r = np.asarray(r, float)
    x = np.pi / cutoff * r
    inside = r <= cutoff
    fc = np.where(inside, 0.5 * (np.cos(x) + 1.0), 0.0)
    dfc = np.where(inside, -0.5 * np.pi / cutoff * np.sin(x), 0.0)
    return fc, dfc


def segment_sum(weights, rows, n_rows: int, dense):
    """out[r] = Σ_{t: rows[t] = r} weights[t] · dense[t]  (sparse (n_rows × T) @ (T × K), in C)."""
    t = len(rows)
    matrix = sp.csc_matrix((weights, rows, np.arange(t + 1)), shape=(n_rows, t))
    return np.asarray(matrix @ dense)


def segment_outer_sum(weights, rows, n_rows: int, dense):
    """out[r, a, :] = Σ_{t: rows[t] = r} weights[t, a] · dense[t, :]   ((n_rows, n_a, K)).

    One sparse product: column t of the (n_rows·n_a × T) matrix holds weights[t, a] at row
    rows[t]·n_a + a (already in CSC order), so no sort and no Python loop over a.
    """
    t, n_a = weights.shape
    indices = (rows[:, None] * n_a + np.arange(n_a)).ravel()
    matrix = sp.csc_matrix((weights.ravel(), indices, np.arange(0, t * n_a + 1, n_a)), shape=(n_rows * n_a, t))
    return np.asarray(matrix @ dense).reshape(n_rows, n_a, dense.shape[1])


class ColumnPlan:
    """Requested candidate columns grouped into blocks that are computed together.

    ``g2_blocks``: list of (neighbour element index, output positions, eta, rs).
    ``g4_blocks``: list of (pair index, output positions, unique angular (zeta, lambda) pairs,
    unique etas, column -> angular index, column -> eta index).
    """

    def __init__(self, feature_set, columns):
        fs = feature_set
        self.elements = np.array(fs.elements)
        self.element_index = {z: e for e, z in enumerate(fs.elements)}
        self.cutoff = fs.cutoff
        self.columns = np.asarray(columns, np.int64)
        n_el = len(fs.elements)
        self.pair_index = np.full((n_el, n_el), -1, np.int64)
        pairs = [(a, b) for a in range(n_el) for b in range(a, n_el)]
        for p, (a, b) in enumerate(pairs):
            self.pair_index[a, b] = self.pair_index[b, a] = p
        self.g2_blocks, self.g4_blocks = [], []
        kind = fs.kind[self.columns]
        # flat per-column description (GPU kernel): block = neighbour element index (G2) or
        # neighbour-pair index (G4)
        self.col_kind = kind.astype(np.int32)
        self.col_eta, self.col_rs = fs.eta[self.columns], fs.rs[self.columns]
        self.col_zeta, self.col_lambda = fs.zeta[self.columns], fs.lambda_[self.columns]
        ia = np.array([self.element_index[int(z)] for z in fs.neighbor_a[self.columns]], np.int64)
        ib = np.array([self.element_index.get(int(z), 0) for z in fs.neighbor_b[self.columns]], np.int64)
        self.col_block = np.where(kind == 2, ia, self.pair_index[ia, ib]).astype(np.int32)
        for e, z in enumerate(fs.elements):
            pos = np.nonzero((kind == 2) & (fs.neighbor_a[self.columns] == z))[0]
            if len(pos):
                c = self.columns[pos]
                self.g2_blocks.append((e, pos, fs.eta[c], fs.rs[c]))
        for p, (a, b) in enumerate(pairs):
            za, zb = fs.elements[a], fs.elements[b]
            pos = np.nonzero((kind == 4) & (fs.neighbor_a[self.columns] == za)
                             & (fs.neighbor_b[self.columns] == zb))[0]
            if len(pos):
                c = self.columns[pos]
                angular, ang_of_col = np.unique(np.stack([fs.zeta[c], fs.lambda_[c]], 1), axis=0,
                                                return_inverse=True)
                etas, eta_of_col = np.unique(fs.eta[c], return_inverse=True)
                self.g4_blocks.append((p, pos, angular, etas, ang_of_col.ravel(), eta_of_col.ravel()))

    def species_index(self, species) -> np.ndarray:
        lookup = np.full(max(int(np.max(species, initial=0)), int(self.elements.max())) + 1, -1)
        lookup[self.elements] = np.arange(len(self.elements))
        idx = lookup[np.asarray(species, np.int64)]
        if np.any(idx < 0):
            missing = sorted(set(np.asarray(species)[idx < 0].tolist()))
            raise HdnnpError(f"atomic numbers {missing} are not in the feature set "
                             f"(elements {self.elements.tolist()})")
        return idx


def triplets(nl, a0: int, a1: int):
    """Unordered pairs of entries (p, q), p < q, of the same central atom, atoms a0..a1-1."""
    s, e = int(nl.start[a0]), int(nl.start[a1])
    entry = np.arange(s, e)
    n_after = np.repeat(nl.start[a0 + 1:a1 + 1], np.diff(nl.start[a0:a1 + 1])) - entry - 1
    first = np.repeat(entry, n_after)
    run_start = np.cumsum(n_after) - n_after
    second = first + 1 + np.arange(len(first)) - np.repeat(run_start, n_after)
    return first, second


def _atom_blocks(nl, limit: int):
    """Split atoms into consecutive ranges holding at most ~``limit`` triplets each."""
    counts = np.diff(nl.start)
    n_trip = counts * (counts - 1) // 2
    bounds, total, a0 = [], 0, 0
    for a, n in enumerate(n_trip):
        if total and total + n > limit:
            bounds.append((a0, a))
            a0, total = a, 0
        total += n
    bounds.append((a0, len(counts)))
    return bounds


def symmetry_functions_numpy(nl, species, plan: ColumnPlan, derivatives: bool = False):
    """Raw values (n_atoms, n_cols) and, if asked, per-entry derivatives D (n_entries, n_cols, 3).

    ``D[p, c] = ∂G_c(i[p]) / ∂r`` of the image listed in entry ``p`` (Å⁻¹ for G2/G4 values).
    """
    n_atoms = len(nl.start) - 1
    n_cols = len(plan.columns)
    values = np.zeros((n_atoms, n_cols))
    if len(nl) == 0 or n_cols == 0:
        return values, (np.zeros((len(nl), n_cols, 3)) if derivatives else None)
    dentry = np.zeros((len(nl), n_cols, 3)) if derivatives else None
    rc = plan.cutoff
    el = plan.species_index(species)
    el_j = el[nl.j]
    r = nl.distance
    fc, dfc = cutoff_function(r, rc)

    for e, pos, eta, rs in plan.g2_blocks:
        m = np.nonzero(el_j == e)[0]
        if not len(m):
            continue
        rows = slice(None) if len(m) == len(nl) else m
        cols = _as_index(pos)
        dr = r[rows, None] - rs[None, :]
        gauss = np.exp(-eta[None, :] * dr * dr)
        values[:, cols] += segment_sum(np.ones(len(m)), nl.i[rows], n_atoms, gauss * fc[rows, None])
        if derivatives:
            dg_dr = gauss * (-2.0 * eta[None, :] * dr * fc[rows, None] + dfc[rows, None])
            # ∂G2/∂r_p = (dG2/dR) R_p / R
            if isinstance(rows, slice):
                dentry[:, cols] += (dg_dr / r[:, None])[:, :, None] * nl.vector[:, None, :]
            else:
                dentry[m[:, None], pos[None, :]] += (dg_dr / r[m, None])[:, :, None] * nl.vector[m, None, :]

    if plan.g4_blocks:
        for a0, a1 in _atom_blocks(nl, TRIPLET_BLOCK):
            p, q = triplets(nl, a0, a1)
            if not len(p):
                continue
            r_jk_vec = nl.vector[q] - nl.vector[p]
            r2_jk = np.einsum("td,td->t", r_jk_vec, r_jk_vec)
            keep = r2_jk <= rc * rc
            p, q, r2_jk = p[keep], q[keep], r2_jk[keep]
            pair = plan.pair_index[el_j[p], el_j[q]] if len(plan.elements) > 1 else None
            for block in plan.g4_blocks:
                if pair is None:
                    bp, bq, br2 = p, q, r2_jk
                else:
                    sel = np.nonzero(pair == block[0])[0]
                    bp, bq, br2 = p[sel], q[sel], r2_jk[sel]
                _g4_block(nl, bp, bq, br2, fc, dfc, block, rc, values, dentry,
                          int(nl.start[a0]), int(nl.start[a1]))
    return values, dentry


def _as_index(pos):
    """A slice for a contiguous ascending index array (cheaper views and updates), else the array."""
    if len(pos) and np.all(np.diff(pos) == 1):
        return slice(int(pos[0]), int(pos[-1]) + 1)
    return pos


def _angular_terms(cos, zeta, lam):
    """A = 2^(1−ζ)(1 + λ cos)^ζ and A' = dA/dcos = 2^(1−ζ) ζ λ (1 + λ cos)^(ζ−1), (T, n_ang).

    Integer ζ (the usual case) by repeated squaring, which is much faster than a general power.
    """
    ang = np.empty((len(cos), len(zeta)))
    dang = np.empty((len(cos), len(zeta)))
    for a, (z, l) in enumerate(zip(zeta, lam)):
        base = 1.0 + l * cos
        n = int(z) - 1
        if z == int(z) and 0 <= n <= 64:
            power, factor = np.ones_like(base), base.copy()
            while n:
                if n & 1:
                    power *= factor
                n >>= 1
                if n:
                    factor *= factor
        else:
            power = base ** (z - 1.0)
        norm = 2.0 ** (1.0 - z)
        dang[:, a] = (norm * z * l) * power
        ang[:, a] = norm * power * base
    return ang, dang


def _g4_block(nl, p, q, r2_jk, fc, dfc, block, rc, values, dentry, e0, e1):
    """Add one G4 block of a set of triplets (entries p < q of the same atom, entries e0..e1-1)."""
    if not len(p):
        return
    _, pos, angular, etas, ang_of_col, eta_of_col = block
    n_atoms = values.shape[0]
    r_ij, r_ik = nl.distance[p], nl.distance[q]
    vec_ij, vec_ik = nl.vector[p], nl.vector[q]
    r_jk = np.sqrt(r2_jk)
    cos = np.einsum("td,td->t", vec_ij, vec_ik) / (r_ij * r_ik)
    fc_jk, dfc_jk = cutoff_function(r_jk, rc)
    fc_ij, fc_ik = fc[p], fc[q]
    f = fc_ij * fc_ik * fc_jk
    s = r_ij * r_ij + r_ik * r_ik + r2_jk
    ang, dang = _angular_terms(cos, angular[:, 0], angular[:, 1])
    gauss = np.exp(-etas[None, :] * s[:, None])  # (T, n_eta)
    rad = gauss * f[:, None]
    centre = nl.i[p]
    n_ang, n_eta = len(angular), len(etas)
    out = segment_outer_sum(ang, centre, n_atoms, rad)  # (n_atoms, n_ang, n_eta)
    values[:, pos] += out[:, ang_of_col, eta_of_col]
    if dentry is None:
        return

    t = len(p)
    g_ij = dfc[p] * fc_ik * fc_jk / r_ij
    g_ik = fc_ij * dfc[q] * fc_jk / r_ik
    g_jk = fc_ij * fc_ik * dfc_jk / r_jk
    eta_f = etas[None, :] * f[:, None]
    # rows 0..t-1: role j (entry p, other vector R_ik); rows t..2t-1: role k (entry q, other R_ij).
    # per eta: [coefficient of the entry's own vector | 3 components along the other vector]
    with_ang = np.empty((2 * t, n_eta, 4))
    with_dang = np.empty((2 * t, n_eta, 4))
    with_ang[:t, :, 0] = gauss * (-4.0 * eta_f + (g_ij + g_jk)[:, None])
    with_ang[t:, :, 0] = gauss * (-4.0 * eta_f + (g_ik + g_jk)[:, None])
    minus_y2 = gauss * (2.0 * eta_f - g_jk[:, None])
    with_ang[:t, :, 1:] = minus_y2[:, :, None] * vec_ik[:, None, :]
    with_ang[t:, :, 1:] = minus_y2[:, :, None] * vec_ij[:, None, :]
    ef_cos = rad * cos[:, None]
    with_dang[:t, :, 0] = ef_cos / -(r_ij * r_ij)[:, None]
    with_dang[t:, :, 0] = ef_cos / -(r_ik * r_ik)[:, None]
    y1 = rad / (r_ij * r_ik)[:, None]
    with_dang[:t, :, 1:] = y1[:, :, None] * vec_ik[:, None, :]
    with_dang[t:, :, 1:] = y1[:, :, None] * vec_ij[:, None, :]
    rows = np.concatenate([p, q, p, q]) - e0
    n_ent = e1 - e0
    acc = segment_outer_sum(np.concatenate([ang, ang, dang, dang]), rows, n_ent,
                            np.concatenate([with_ang.reshape(2 * t, n_eta * 4), with_dang.reshape(2 * t, n_eta * 4)]))
    acc = acc.reshape(n_ent, n_ang, n_eta, 4)[:, ang_of_col, eta_of_col, :]  # (n_ent, n_block_cols, 4)
    # D[p] += (coefficient of the own vector) R_p + (sum along the other neighbours' vectors)
    dentry[e0:e1, _as_index(pos)] += acc[:, :, :1] * nl.vector[e0:e1, None, :] + acc[:, :, 1:]


def pair_derivatives(nl, dentry, n_atoms: int):
    """Sum per-entry derivatives over images: ∂G_i/∂r_j for every atom pair, j = i included.

    Returns ``pair_i, pair_j`` (sorted by i, then j) and ``dvalues`` (n_pairs, n_cols, 3) with
    dvalues[p] = ∂G_{pair_i[p]}/∂r_{pair_j[p]}. By translation invariance
    ∂G_i/∂r_i = −Σ_entries D (all entries of i), to which the entries whose neighbour is an
    image of i itself add their own D.
    """
    n_cols = dentry.shape[1]
    keys_nb = nl.i * n_atoms + nl.j
    keys_self = np.arange(n_atoms, dtype=np.int64) * (n_atoms + 1)
    keys, inverse = np.unique(np.concatenate([keys_nb, keys_self]), return_inverse=True)
    inverse = inverse.ravel()
    n_ent = len(nl)
    to_nb, to_self = inverse[:n_ent], inverse[n_ent + nl.i]
    flat = dentry.reshape(n_ent, n_cols * 3)
    ones = np.ones(n_ent)
    dvalues = segment_sum(ones, to_nb, len(keys), flat) - segment_sum(ones, to_self, len(keys), flat)
    return keys // n_atoms, keys % n_atoms, dvalues.reshape(len(keys), n_cols, 3)
