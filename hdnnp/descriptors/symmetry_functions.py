"""NumPy reference implementation of the Behler symmetry functions G2, G4 and G5 (SPEC §4).

Cutoff function (Rc in Å; R² is compared with Rc² before any square root, in the neighbour list)::

    fc(R) = 0.5 (cos(π R / Rc) + 1)  for R <= Rc, else 0;   fc'(R) = −(π / 2Rc) sin(π R / Rc)

(hdnnp's own; the other types n2p2 offers, for imported potentials: :func:`cutoff_function`.)
Every candidate carries its own Rc (``FeatureSet.rc``; hdnnp's grids use one for all).

Radial (η in Å⁻², Rs in Å), one block per neighbour element::

    G2_i = Σ_{j≠i} exp(−η (R_ij − Rs)²) fc(R_ij)

Angular, one block per unordered neighbour-element pair, over unordered neighbour pairs::

    G4_i = 2^(1−ζ) Σ_{j≠i} Σ_{k>j, k≠i} (1 + λ cos θ_ijk)^ζ exp(−η (R_ij² + R_ik² + R_jk²))
           fc(R_ij) fc(R_ik) fc(R_jk),          cos θ_ijk = R_ij·R_ik / (R_ij R_ik)

All periodic images within Rc count (``j``, ``k`` run over neighbour-list entries).

Imported n2p2 potentials add a shift Rs to the angular Gaussians, exp(−η Σ (R − Rs)²) over the
same distances, and the wide variant G5 (n2p2's type 9; Behler's G5)::

    G5_i = 2^(1−ζ) Σ_{j≠i} Σ_{k>j, k≠i} (1 + λ cos θ_ijk)^ζ exp(−η ((R_ij − Rs)² + (R_ik − Rs)²))
           fc(R_ij) fc(R_ik)                      (no R_jk term, no fc(R_jk))

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
on. With a shift Rs, every "η" above is weighted by u = 1 − Rs/R of its distance: the own
coefficient's −4ηF becomes −2ηF (u_ij + u_jk) and Y's −2ηF becomes −2ηF u_jk; for G5 u_jk = 0
and G_jk = 0 (fc(R_jk) ≡ 1). The per-entry derivative ``D[p] = ∂G_i/∂(r of the image in entry p)`` is accumulated
per neighbour-list entry; ∂G_i/∂r_i follows from translation invariance (see
:func:`pair_derivatives`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hdnnp.errors import HdnnpError

#: Triplets evaluated at once (bounds the temporaries to a few tens of MB).
TRIPLET_BLOCK = 8192


#: Cutoff-function types in n2p2's numbering (``cutoff_type`` of input.nn) that hdnnp evaluates.
#: With x = (R − αRc)/(Rc − αRc) (α = ``cutoff_alpha``; fc = 1 for R < αRc) and t = tanh(1 − R/Rc):
#: 1 cos 0.5 (cos πx + 1); 2 tanhu t³; 3 tanh t³ ((e + 1/e)/(e − 1/e))³ (fc(0) = 1; 2 and 3 ignore
#: α); 4 exp e·exp(1/(x² − 1)); 5 poly1 (2x − 3)x² + 1; 6 poly2 ((15 − 6x)x − 10)x³ + 1;
#: 7 poly3 (x(x(20x − 70) + 84) − 35)x⁴ + 1; 8 poly4 (x(x((315 − 70x)x − 540) + 420) − 126)x⁵ + 1.
CUTOFF_TYPES = {1: "cos", 2: "tanhu", 3: "tanh", 4: "exp", 5: "poly1", 6: "poly2", 7: "poly3", 8: "poly4"}
_TANH_PRE = ((np.e + 1.0 / np.e) / (np.e - 1.0 / np.e)) ** 3


def _core(kind: int, x):
    """f(x) and df/dx of the cutoff cores on [0, 1) (types 4-8)."""
    if kind == 4:
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            inv = 1.0 / (x * x - 1.0)
            e = np.where(x < 1.0, np.exp(inv), 0.0)
            return np.e * e, np.where(x < 1.0, -2.0 * np.e * x * inv * inv * e, 0.0)
    if kind == 5:
        return (2.0 * x - 3.0) * x * x + 1.0, x * (6.0 * x - 6.0)
    x2 = x * x
    if kind == 6:
        return ((15.0 - 6.0 * x) * x - 10.0) * x * x2 + 1.0, x2 * ((60.0 - 30.0 * x) * x - 30.0)
    if kind == 7:
        return ((x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x2 * x2 + 1.0,
                x2 * x * (x * (x * (140.0 * x - 420.0) + 420.0) - 140.0))
    return ((x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x2 * x2 * x + 1.0,
            x2 * x2 * (x * (x * ((2520.0 - 630.0 * x) * x - 3780.0) + 2520.0) - 630.0))


def cutoff_function(r, cutoff: float, kind: int = 1, alpha: float = 0.0):
    """fc(R) and its derivative dfc/dR (Å⁻¹) for R <= Rc (both 0 beyond), of cutoff ``kind``
    (:data:`CUTOFF_TYPES`; default 1, the cosine) with inner fraction ``alpha``."""
    r = np.asarray(r, float)
    inside = r <= cutoff
    if kind == 1 and alpha == 0.0:  # hdnnp's own cutoff
        x = np.pi / cutoff * r
        fc = np.where(inside, 0.5 * (np.cos(x) + 1.0), 0.0)
        dfc = np.where(inside, -0.5 * np.pi / cutoff * np.sin(x), 0.0)
        return fc, dfc
    if kind not in CUTOFF_TYPES:
        raise HdnnpError(f"cutoff type {kind} is not supported (supported: "
                         f"{', '.join(f'{k} {v}' for k, v in CUTOFF_TYPES.items())})")
    if kind in (2, 3):
        t = np.tanh(1.0 - r / cutoff)
        pre = _TANH_PRE if kind == 3 else 1.0
        fc, dfc = pre * t ** 3, 3.0 * pre * t * t * (t * t - 1.0) / cutoff
    else:
        inner = alpha * cutoff
        iw = 1.0 / (cutoff - inner)
        x = np.clip((r - inner) * iw, 0.0, 1.0)
        if kind == 1:
            fc, dfc = 0.5 * (np.cos(np.pi * x) + 1.0), -0.5 * np.pi * iw * np.sin(np.pi * x)
        else:
            fc, dfc = _core(kind, x)
            dfc = iw * dfc
        fc, dfc = np.where(r < inner, 1.0, fc), np.where(r < inner, 0.0, dfc)
    return np.where(inside, fc, 0.0), np.where(inside, dfc, 0.0)


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

    ``g2_blocks``: list of (neighbour element index, output positions, eta, rs, Rc).
    ``g4_blocks``: list of (pair index, output positions, unique angular (zeta, lambda) pairs,
    unique radial (eta, rs) pairs, column -> angular index, column -> radial index, kind (4
    narrow, 5 wide), Rc): one block per neighbour pair, kind and cutoff radius.
    """

    def __init__(self, feature_set, columns):
        fs = feature_set
        self.elements = np.array(fs.elements)
        self.element_index = {z: e for e, z in enumerate(fs.elements)}
        self.cutoff = fs.cutoff
        self.cutoff_type, self.cutoff_alpha = int(fs.cutoff_type), float(fs.cutoff_alpha)
        self.columns = np.asarray(columns, np.int64)
        n_el = len(fs.elements)
        self.pair_index = np.full((n_el, n_el), -1, np.int64)
        pairs = [(a, b) for a in range(n_el) for b in range(a, n_el)]
        for p, (a, b) in enumerate(pairs):
            self.pair_index[a, b] = self.pair_index[b, a] = p
        self.g2_blocks, self.g4_blocks = [], []
        kind = fs.kind[self.columns]
        col_rc = fs.rc[self.columns]
        for rc in np.unique(col_rc):
            for e, z in enumerate(fs.elements):
                pos = np.nonzero((kind == 2) & (fs.neighbor_a[self.columns] == z) & (col_rc == rc))[0]
                if len(pos):
                    c = self.columns[pos]
                    self.g2_blocks.append((e, pos, fs.eta[c], fs.rs[c], float(rc)))
            for p, (a, b) in enumerate(pairs):
                za, zb = fs.elements[a], fs.elements[b]
                for k in (4, 5):
                    pos = np.nonzero((kind == k) & (fs.neighbor_a[self.columns] == za)
                                     & (fs.neighbor_b[self.columns] == zb) & (col_rc == rc))[0]
                    if len(pos):
                        c = self.columns[pos]
                        angular, ang_of_col = np.unique(np.stack([fs.zeta[c], fs.lambda_[c]], 1), axis=0,
                                                        return_inverse=True)
                        radial, rad_of_col = np.unique(np.stack([fs.eta[c], fs.rs[c]], 1), axis=0,
                                                       return_inverse=True)
                        self.g4_blocks.append((p, pos, angular, radial, ang_of_col.ravel(), rad_of_col.ravel(),
                                               k, float(rc)))
        #: triplets with R_jk beyond this cannot contribute (no limit when wide G5 blocks exist)
        narrow = [b[7] for b in self.g4_blocks if b[6] == 4]
        self.jk_limit = np.inf if any(b[6] == 5 for b in self.g4_blocks) else max(narrow, default=0.0)

    def cutoff_of(self, r, rc: float):
        """fc and dfc/dR of distances ``r`` with cutoff radius ``rc`` (the feature set's type)."""
        return cutoff_function(r, rc, self.cutoff_type, self.cutoff_alpha)

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
    el = plan.species_index(species)
    el_j = el[nl.j]
    r = nl.distance
    cutoffs = {}  # Rc -> (fc, dfc) of every entry

    def cut(rc):
        if rc not in cutoffs:
            cutoffs[rc] = plan.cutoff_of(r, rc)
        return cutoffs[rc]

    for e, pos, eta, rs, rc in plan.g2_blocks:
        m = np.nonzero(el_j == e)[0]
        if not len(m):
            continue
        fc, dfc = cut(rc)
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
            if np.isfinite(plan.jk_limit):
                keep = r2_jk <= plan.jk_limit * plan.jk_limit
                p, q, r2_jk = p[keep], q[keep], r2_jk[keep]
            pair = plan.pair_index[el_j[p], el_j[q]] if len(plan.elements) > 1 else None
            for block in plan.g4_blocks:
                if pair is None:
                    bp, bq, br2 = p, q, r2_jk
                else:
                    sel = np.nonzero(pair == block[0])[0]
                    bp, bq, br2 = p[sel], q[sel], r2_jk[sel]
                rc = block[7]
                if rc < plan.jk_limit and block[6] == 4 and len(br2):  # a smaller narrow block
                    sel = np.nonzero(br2 <= rc * rc)[0]
                    bp, bq, br2 = bp[sel], bq[sel], br2[sel]
                _g4_block(nl, bp, bq, br2, *cut(rc), block, plan, values, dentry,
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


def _g4_block(nl, p, q, r2_jk, fc, dfc, block, plan, values, dentry, e0, e1):
    """Add one G4 (narrow) or G5 (wide) block of a set of triplets (entries p < q of the same
    atom, entries e0..e1-1); ``fc``, ``dfc`` per entry for the block's Rc."""
    if not len(p):
        return
    _, pos, angular, radial, ang_of_col, rad_of_col, kind, rc = block
    narrow = kind == 4
    n_atoms = values.shape[0]
    r_ij, r_ik = nl.distance[p], nl.distance[q]
    vec_ij, vec_ik = nl.vector[p], nl.vector[q]
    r_jk = np.sqrt(r2_jk)
    cos = np.einsum("td,td->t", vec_ij, vec_ik) / (r_ij * r_ik)
    fc_ij, fc_ik = fc[p], fc[q]
    if narrow:
        fc_jk, dfc_jk = plan.cutoff_of(r_jk, rc)
    else:
        fc_jk, dfc_jk = np.ones(len(p)), np.zeros(len(p))
    f = fc_ij * fc_ik * fc_jk
    etas, shifts = radial[:, 0], radial[:, 1]
    shifted = bool(np.any(shifts != 0.0))
    if shifted:
        s = ((r_ij[:, None] - shifts) ** 2 + (r_ik[:, None] - shifts) ** 2
             + ((r_jk[:, None] - shifts) ** 2 if narrow else 0.0))
        gauss = np.exp(-etas[None, :] * s)  # (T, n_rad)
    else:
        s = r_ij * r_ij + r_ik * r_ik + (r2_jk if narrow else 0.0)
        gauss = np.exp(-etas[None, :] * s[:, None])  # (T, n_rad)
    rad = gauss * f[:, None]
    centre = nl.i[p]
    n_ang, n_rad = len(angular), len(radial)
    ang, dang = _angular_terms(cos, angular[:, 0], angular[:, 1])
    out = segment_outer_sum(ang, centre, n_atoms, rad)  # (n_atoms, n_ang, n_rad)
    values[:, pos] += out[:, ang_of_col, rad_of_col]
    if dentry is None:
        return

    t = len(p)
    g_ij = dfc[p] * fc_ik * fc_jk / r_ij
    g_ik = fc_ij * dfc[q] * fc_jk / r_ik
    g_jk = fc_ij * fc_ik * dfc_jk / r_jk if narrow else np.zeros(t)
    eta_f = etas[None, :] * f[:, None]
    # u = 1 − Rs/R per distance and radial column (1 without shifts; u_jk = 0 for wide G5)
    if shifted:
        u_ij, u_ik = 1.0 - shifts / r_ij[:, None], 1.0 - shifts / r_ik[:, None]
        u_jk = 1.0 - shifts / r_jk[:, None] if narrow else 0.0
    else:
        u_ij = u_ik = 1.0
        u_jk = 1.0 if narrow else 0.0
    # rows 0..t-1: role j (entry p, other vector R_ik); rows t..2t-1: role k (entry q, other R_ij).
    # per radial column: [coefficient of the entry's own vector | 3 components along the other vector]
    with_ang = np.empty((2 * t, n_rad, 4))
    with_dang = np.empty((2 * t, n_rad, 4))
    with_ang[:t, :, 0] = gauss * (-2.0 * eta_f * (u_ij + u_jk) + (g_ij + g_jk)[:, None])
    with_ang[t:, :, 0] = gauss * (-2.0 * eta_f * (u_ik + u_jk) + (g_ik + g_jk)[:, None])
    minus_y2 = gauss * (2.0 * eta_f * u_jk - g_jk[:, None])
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
                            np.concatenate([with_ang.reshape(2 * t, n_rad * 4), with_dang.reshape(2 * t, n_rad * 4)]))
    acc = acc.reshape(n_ent, n_ang, n_rad, 4)[:, ang_of_col, rad_of_col, :]  # (n_ent, n_block_cols, 4)
    # D[p] += (coefficient of the own vector) R_p + (sum along the other neighbours' vectors)
    dentry[e0:e1, _as_index(pos)] += acc[:, :, :1] * nl.vector[e0:e1, None, :] + acc[:, :, 1:]


def atom_pairs(i, j, n_atoms: int):
    """Atom pairs of neighbour-list entries (central atom ``i``, neighbour ``j``), j = i included:
    ``pair_i, pair_j`` sorted by i then j (every pair once, however many images it has), the
    pair of every entry (n_entries,) and the self pair (i, i) of every atom (n_atoms,)."""
    i = np.asarray(i, np.int64)
    keys_nb = i * n_atoms + np.asarray(j, np.int64)
    keys_self = np.arange(n_atoms, dtype=np.int64) * (n_atoms + 1)
    keys, inverse = np.unique(np.concatenate([keys_nb, keys_self]), return_inverse=True)
    inverse = inverse.ravel()
    width = max(n_atoms, 1)
    return keys // width, keys % width, inverse[:len(i)], inverse[len(i):]


def pair_derivatives(nl, dentry, n_atoms: int):
    """Sum per-entry derivatives over images: ∂G_i/∂r_j for every atom pair, j = i included.

    Returns ``pair_i, pair_j`` (sorted by i, then j) and ``dvalues`` (n_pairs, n_cols, 3) with
    dvalues[p] = ∂G_{pair_i[p]}/∂r_{pair_j[p]}. By translation invariance
    ∂G_i/∂r_i = −Σ_entries D (all entries of i), to which the entries whose neighbour is an
    image of i itself add their own D.
    """
    n_cols = dentry.shape[1]
    pair_i, pair_j, to_nb, self_pair = atom_pairs(nl.i, nl.j, n_atoms)
    n_ent = len(nl)
    flat = dentry.reshape(n_ent, n_cols * 3)
    ones = np.ones(n_ent)
    dvalues = (segment_sum(ones, to_nb, len(pair_i), flat)
               - segment_sum(ones, self_pair[nl.i], len(pair_i), flat))
    return pair_i, pair_j, dvalues.reshape(len(pair_i), n_cols, 3)
