"""Compiled (Numba) symmetry functions: values, derivatives, and forces by an adjoint pass.

The same functions as the NumPy reference :mod:`hdnnp.descriptors.symmetry_functions` (its
docstring has the formulas; SPEC §4), evaluated in one walk over each atom's neighbour entries
and entry pairs (triplets) instead of array operations over all of them, so nothing of size
(triplets × columns) is built. One walk (:func:`_walk`) serves two uses:

* :func:`symmetry_functions` — values and, if asked, the derivatives summed per atom pair
  (``pair_i, pair_j, dvalues``, as :func:`~hdnnp.descriptors.symmetry_functions.pair_derivatives`
  returns them) and the per-atom strain derivatives W_i[c, a, b] = Σ_p R_p,a D[p, c, b]
  (as :func:`~hdnnp.descriptors.compute.entry_virials`). The per-entry derivatives D[p] of one
  central atom live only in a small scratch array while that atom is walked. Training needs these.
* :func:`adjoint_pass` — prediction and MD: the walk stores, per (triplet, block), the few
  per-(ζ, λ) and per-(η, Rs) derivative terms; the networks then give w[i, c] = ∂E/∂G_ic and
  :func:`_contract` forms F_k = −Σ_i Σ_c w_ic ∂G_ic/∂r_k and ∂E/∂ε_ab = Σ_p R_p,a ∂E/∂R_p,b
  by contracting the columns first (a vector–Jacobian product): ∂G/∂r is never formed, and the
  memory is bounded by walking the atoms in chunks (:data:`MAX_ITEMS`).

Per triplet the angular terms A_a, A'_a (one per (ζ, λ) of a block) and the Gaussians
E_e = exp(−η_e Σ (R − Rs_e)²) (one per (η, Rs)) are computed once and shared by the block's
columns; E factorises into per-entry exp(−η (R_ij − Rs)²) (computed once per entry) times the
R_jk factor, so a narrow G4 costs one exponential per triplet and radial pair (none for η = 0),
a wide G5 none. For a triplet T = A(cos θ) E F with the coefficients a_j, b_k, Y of the
reference's docstring, ∂T/∂r_j = a_j R_ij + Y R_ik and ∂T/∂r_k = Y R_ij + b_k R_ik.

Which is used: the compiled path whenever Numba can be imported and ``HDNNP_NUMBA`` is not
``0`` (:data:`AVAILABLE`); otherwise the NumPy reference (and on a GPU, the CUDA kernel). The
two CPU paths are bound by ``tests/test_fast_path.py`` (1e-10 relative; two elements, triclinic
cells smaller than 2·Rc, clusters, every function kind and cutoff type). Compiled code is
cached next to this file (Numba's ``cache=True``): the first call after installing compiles
for about 10 s, later processes load it. Fast-math is restricted to :data:`FASTMATH`; the
agreement with the reference stays at 1e-15 relative in the tests.
"""

from __future__ import annotations

import os

import numpy as np

from hdnnp.descriptors.symmetry_functions import _TANH_PRE, atom_pairs
from hdnnp.interrupts import deferred

try:  # pragma: no cover - exercised by the CI environment, where numba is installed
    if os.environ.get("HDNNP_NUMBA", "1") == "0":
        raise ImportError("disabled by HDNNP_NUMBA=0")
    import numba as nb

    AVAILABLE = True
except ImportError:  # pragma: no cover
    nb = None
    AVAILABLE = False


#: LLVM fast-math flags: reassociation and contraction (vectorised reductions, FMA), but no
#: assumption that values are finite, so a NaN from broken input still reaches the checks.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def _njit(func):
    """Compiled with Numba, cached on disk where a cache directory is writable (next to this file,
    else the user's cache or NUMBA_CACHE_DIR), compiled anew in each process where none is."""
    if not AVAILABLE:
        return func
    options = dict(nogil=True, fastmath=FASTMATH, error_model="numpy")
    try:
        return nb.njit(cache=True, **options)(func)
    except RuntimeError:  # "no locator available": nowhere to write the cache
        return nb.njit(**options)(func)


class FlatPlan:
    """A :class:`~hdnnp.descriptors.symmetry_functions.ColumnPlan` as flat arrays for the kernels.

    Cutoff radii ``rcs`` (unique), G2 columns (``g2_*``: neighbour element, η, Rs, radius
    index), angular blocks sorted by neighbour pair (``blk_*``: pair, kind 4/5, radius index,
    ranges into the angular, radial and column tables; ``pair_blocks[p]:pair_blocks[p+1]`` are
    the blocks of pair p), angular table (ζ, λ, 2^(1−ζ), integer ζ − 1 or −1), radial table
    (η, Rs), block columns (angular and radial index within their block).

    The kernels work in an internal column order, G2 columns first, then each block's columns
    together (so the per-column loops run over contiguous memory); ``out_pos[c]`` is the
    caller's column of internal column c.
    """

    def __init__(self, plan):
        rcs = sorted({b[4] for b in plan.g2_blocks} | {b[7] for b in plan.g4_blocks})
        self.rcs = np.array(rcs or [plan.cutoff], float)
        rc_index = {rc: k for k, rc in enumerate(rcs)}
        g2 = [(pos, e, eta, rs, rc_index[rc]) for e, positions, etas, rss, rc in plan.g2_blocks
              for pos, eta, rs in zip(positions, etas, rss)]
        g2_pos = [g[0] for g in g2]
        self.g2_el = np.array([g[1] for g in g2], np.int64)
        self.g2_eta = np.array([g[2] for g in g2], float)
        self.g2_rs = np.array([g[3] for g in g2], float)
        self.g2_rck = np.array([g[4] for g in g2], np.int64)
        n_pairs = int(plan.pair_index.max()) + 1
        blocks = sorted(plan.g4_blocks, key=lambda b: b[0])
        blk, ang, rad, col, col_pos = [], [], [], [], []
        for p, pos, angular, radial, ang_of_col, rad_of_col, kind, rc in blocks:
            c0 = len(g2) + len(col)
            blk.append((p, kind, rc_index[rc], len(ang), len(ang) + len(angular), len(rad),
                        len(rad) + len(radial), c0, c0 + len(pos)))
            for zeta, lam in angular:
                n = int(zeta) - 1
                ang.append((zeta, lam, 2.0 ** (1.0 - zeta), n if zeta == int(zeta) and 0 <= n <= 64 else -1))
            rad += [(eta, rs) for eta, rs in radial]
            col += [(a, r) for a, r in zip(ang_of_col, rad_of_col)]
            col_pos += list(pos)
        blk = np.array(blk, np.int64).reshape(-1, 9)
        self.blk_pair, self.blk_kind, self.blk_rck = blk[:, 0].copy(), blk[:, 1].copy(), blk[:, 2].copy()
        self.blk_ranges = blk[:, 3:].copy()
        self.pair_blocks = np.searchsorted(self.blk_pair, np.arange(n_pairs + 1)).astype(np.int64)
        ang = np.array(ang, float).reshape(-1, 4)
        self.ang_zeta, self.ang_lambda, self.ang_norm = ang[:, 0].copy(), ang[:, 1].copy(), ang[:, 2].copy()
        self.ang_int = ang[:, 3].astype(np.int64)
        rad = np.array(rad, float).reshape(-1, 2)
        self.rad_eta, self.rad_rs = rad[:, 0].copy(), rad[:, 1].copy()
        col = np.array(col, np.int64).reshape(-1, 2)
        # block columns are indexed internally from len(g2) on
        self.col_ang = np.concatenate([np.zeros(len(g2), np.int64), col[:, 0]])
        self.col_rad = np.concatenate([np.zeros(len(g2), np.int64), col[:, 1]])
        self.out_pos = np.array(g2_pos + col_pos, np.int64)
        self.pair_index = np.ascontiguousarray(plan.pair_index, np.int64)
        self.jk_limit = float(plan.jk_limit) if np.isfinite(plan.jk_limit) else -1.0
        self.cutoff_type, self.cutoff_alpha = int(plan.cutoff_type), float(plan.cutoff_alpha)
        self.n_cols = len(plan.columns)
        self.max_ang = int(np.max(np.diff(blk[:, 3:5], axis=1), initial=1))
        self.max_rad = int(np.max(np.diff(blk[:, 5:7], axis=1), initial=1))

    def arrays(self):
        """The tables in the kernels' argument order."""
        return (self.rcs, self.cutoff_type, self.cutoff_alpha,
                self.g2_el, self.g2_eta, self.g2_rs, self.g2_rck,
                self.blk_kind, self.blk_rck, self.blk_ranges, self.pair_blocks, self.pair_index,
                self.ang_lambda, self.ang_norm, self.ang_zeta, self.ang_int, self.rad_eta, self.rad_rs,
                self.col_ang, self.col_rad, self.out_pos, self.jk_limit, self.max_ang, self.max_rad)


# -- scalar helpers -------------------------------------------------------------------------


@_njit
def _cutoff(r, rc, kind, alpha):
    """fc(R), dfc/dR of one distance (see ``symmetry_functions.cutoff_function``)."""
    if r > rc:
        return 0.0, 0.0
    if kind == 1 and alpha == 0.0:
        x = np.pi / rc * r
        return 0.5 * (np.cos(x) + 1.0), -0.5 * np.pi / rc * np.sin(x)
    if kind == 2 or kind == 3:
        t = np.tanh(1.0 - r / rc)
        pre = _TANH_PRE if kind == 3 else 1.0
        return pre * t * t * t, 3.0 * pre * t * t * (t * t - 1.0) / rc
    inner = alpha * rc
    if r < inner:
        return 1.0, 0.0
    iw = 1.0 / (rc - inner)
    x = min(max((r - inner) * iw, 0.0), 1.0)
    if kind == 1:
        return 0.5 * (np.cos(np.pi * x) + 1.0), -0.5 * np.pi * iw * np.sin(np.pi * x)
    x2 = x * x
    if kind == 4:
        if x >= 1.0:
            return 0.0, 0.0
        inv = 1.0 / (x2 - 1.0)
        e = np.exp(inv)
        return np.e * e, iw * (-2.0 * np.e * x * inv * inv * e)
    if kind == 5:
        return (2.0 * x - 3.0) * x2 + 1.0, iw * x * (6.0 * x - 6.0)
    if kind == 6:
        return ((15.0 - 6.0 * x) * x - 10.0) * x * x2 + 1.0, iw * x2 * ((60.0 - 30.0 * x) * x - 30.0)
    if kind == 7:
        return ((x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x2 * x2 + 1.0,
                iw * x2 * x * (x * (x * (140.0 * x - 420.0) + 420.0) - 140.0))
    return ((x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x2 * x2 * x + 1.0,
            iw * x2 * x2 * (x * (x * ((2520.0 - 630.0 * x) * x - 3780.0) + 2520.0) - 630.0))


@_njit
def _power(base, n, zeta):
    """base^(ζ − 1): by repeated squaring for integer ζ (n = ζ − 1 >= 0), else a general power."""
    if n < 0:
        return base ** (zeta - 1.0)
    result = 1.0
    factor = base
    while n:
        if n & 1:
            result *= factor
        n >>= 1
        if n:
            factor *= factor
    return result


@_njit
def _entry_tables(e_begin, e_end, dist, rcs, ctype, calpha, rad_eta, rad_rs):
    """Per entry e_begin..e_end-1: fc and dfc for every radius, exp(−η (R − Rs)²) for every
    radial pair."""
    n_ent = e_end - e_begin
    fcs = np.empty((n_ent, len(rcs)))
    dfcs = np.empty((n_ent, len(rcs)))
    expo = np.empty((n_ent, len(rad_eta)))
    for p in range(n_ent):
        r = dist[e_begin + p]
        for k in range(len(rcs)):
            fcs[p, k], dfcs[p, k] = _cutoff(r, rcs[k], ctype, calpha)
        for e in range(len(rad_eta)):
            d = r - rad_rs[e]
            expo[p, e] = np.exp(-rad_eta[e] * d * d)
    return fcs, dfcs, expo


# -- the walk -------------------------------------------------------------------------------

@_njit
def _walk(start, el_j, vec, dist, a_begin, a_end, do_deriv, do_cache, do_virial,
          rcs, ctype, calpha, g2_el, g2_eta, g2_rs, g2_rck,
          blk_kind, blk_rck, blk_ranges, pair_blocks, pair_index,
          ang_lambda, ang_norm, ang_zeta, ang_int, rad_eta, rad_rs,
          col_ang, col_rad, out_pos, jk_limit, max_ang, max_rad,
          entry_pair, self_pair, n_pairs, deriv_scale, max_items):
    """One pass over the entries and triplets of atoms a_begin..a_end-1.

    Returns raw values (n_chunk, n_cols) in the caller's column order; with ``do_deriv`` the
    per-pair derivatives (n_pairs, n_cols, 3) and with ``do_virial`` the strain derivatives
    (n_chunk, n_cols, 3, 3), both times ``deriv_scale`` (per internal column); with
    ``do_cache`` what :func:`_contract` needs: per (triplet, block) item a row of derivative
    terms — A_a and A'_a (``max_ang`` each), then per radial pair the coefficients of a_j, b_k
    and Y and E·F (``max_rad`` each), then cos θ/R_ij², cos θ/R_ik² and 1/(R_ij R_ik) — and
    (p, q, block), and per entry the G2 coefficients.
    """
    n_cols = len(out_pos)
    n_g2 = len(g2_el)
    e_begin, e_end = start[a_begin], start[a_end]
    fcs, dfcs, expo = _entry_tables(e_begin, e_end, dist, rcs, ctype, calpha, rad_eta, rad_rs)
    values = np.zeros((a_end - a_begin, n_cols))
    dvalues = np.zeros((n_pairs if do_deriv else 0, n_cols, 3))
    virial = np.zeros((a_end - a_begin if do_virial else 0, n_cols, 3, 3))
    row_len = 2 * max_ang + 4 * max_rad + 3
    item_f = np.empty((max_items if do_cache else 0, row_len))
    item_i = np.empty((max_items if do_cache else 0, 3), np.int64)
    g2_coef = np.zeros((e_end - e_begin if do_cache else 0, n_g2))
    n_items = 0
    max_nb = 0
    for i in range(a_begin, a_end):
        max_nb = max(max_nb, start[i + 1] - start[i])
    scratch = np.zeros((max_nb if do_deriv else 0, 3, n_cols))  # D[p] of the current atom (internal order)
    vloc = np.zeros(n_cols)
    tmp = np.empty(row_len)
    expo_t = np.empty(max_rad)
    limit2 = jk_limit * jk_limit
    o_dang, o_pj = max_ang, 2 * max_ang
    o_pk, o_ty, o_ef, o_cos = o_pj + max_rad, o_pj + 2 * max_rad, o_pj + 3 * max_rad, o_pj + 4 * max_rad
    for i in range(a_begin, a_end):
        s, e = start[i], start[i + 1]
        if do_deriv:
            scratch[: e - s] = 0.0
        vloc[:] = 0.0
        # radial functions
        for p in range(s, e):
            r = dist[p]
            for c in range(n_g2):
                if g2_el[c] != el_j[p]:
                    continue
                k = g2_rck[c]
                fc, dfc = fcs[p - e_begin, k], dfcs[p - e_begin, k]
                if fc == 0.0 and dfc == 0.0:
                    continue
                d = r - g2_rs[c]
                g = np.exp(-g2_eta[c] * d * d)
                vloc[c] += g * fc
                coef = g * (-2.0 * g2_eta[c] * d * fc + dfc) / r
                if do_deriv:
                    for x in range(3):
                        scratch[p - s, x, c] += coef * vec[p, x]
                if do_cache:
                    g2_coef[p - e_begin, c] = coef
        # angular functions over unordered entry pairs (p, q), p < q
        for p in range(s, e):
            r_ij = dist[p]
            vp0, vp1, vp2 = vec[p, 0], vec[p, 1], vec[p, 2]
            for q in range(p + 1, e):
                pair = pair_index[el_j[p], el_j[q]]
                b0, b1 = pair_blocks[pair], pair_blocks[pair + 1]
                if b0 == b1:
                    continue
                vq0, vq1, vq2 = vec[q, 0], vec[q, 1], vec[q, 2]
                r2_jk = (vq0 - vp0) ** 2 + (vq1 - vp1) ** 2 + (vq2 - vp2) ** 2
                if jk_limit >= 0.0 and r2_jk > limit2:
                    continue
                r_ik = dist[q]
                r_jk = np.sqrt(r2_jk)
                cos = (vp0 * vq0 + vp1 * vq1 + vp2 * vq2) / (r_ij * r_ik)
                for b in range(b0, b1):
                    k = blk_rck[b]
                    rc = rcs[k]
                    narrow = blk_kind[b] == 4
                    fc_ij, fc_ik = fcs[p - e_begin, k], fcs[q - e_begin, k]
                    if fc_ij == 0.0 or fc_ik == 0.0:
                        continue
                    if narrow:
                        if r_jk > rc:
                            continue
                        fc_jk, dfc_jk = _cutoff(r_jk, rc, ctype, calpha)
                    else:
                        fc_jk, dfc_jk = 1.0, 0.0
                    f = fc_ij * fc_ik * fc_jk
                    a0, a1, r0, r1, c0, c1 = (blk_ranges[b, 0], blk_ranges[b, 1], blk_ranges[b, 2],
                                              blk_ranges[b, 3], blk_ranges[b, 4], blk_ranges[b, 5])
                    row = item_f[n_items] if do_cache else tmp
                    for a in range(a0, a1):
                        base = 1.0 + ang_lambda[a] * cos
                        pw = _power(base, ang_int[a], ang_zeta[a])
                        row[a - a0] = ang_norm[a] * pw * base
                        row[o_dang + a - a0] = ang_norm[a] * ang_zeta[a] * ang_lambda[a] * pw
                    for rr in range(r0, r1):
                        g = expo[p - e_begin, rr] * expo[q - e_begin, rr]
                        if narrow and rad_eta[rr] != 0.0:
                            d = r_jk - rad_rs[rr]
                            g *= np.exp(-rad_eta[rr] * d * d)
                        expo_t[rr - r0] = g
                    for c in range(c0, c1):
                        vloc[c] += row[col_ang[c]] * expo_t[col_rad[c]] * f
                    if not (do_deriv or do_cache):
                        continue
                    inv_ij, inv_ik = 1.0 / r_ij, 1.0 / r_ik
                    inv_r_jk = 1.0 / r_jk if narrow else 0.0
                    g_ij = dfcs[p - e_begin, k] * fc_ik * fc_jk * inv_ij
                    g_ik = fc_ij * dfcs[q - e_begin, k] * fc_jk * inv_ik
                    g_jk = fc_ij * fc_ik * dfc_jk * inv_r_jk
                    w_jk = 1.0 if narrow else 0.0
                    for rr in range(r1 - r0):
                        g = expo_t[rr]
                        eta_f = -2.0 * rad_eta[r0 + rr] * f
                        rs = rad_rs[r0 + rr]
                        # u = 1 − Rs/R per distance (u_jk = 0 for the wide G5)
                        u_jk = w_jk - rs * inv_r_jk
                        row[o_pj + rr] = g * (eta_f * (1.0 - rs * inv_ij + u_jk) + g_ij + g_jk)
                        row[o_pk + rr] = g * (eta_f * (1.0 - rs * inv_ik + u_jk) + g_ik + g_jk)
                        row[o_ty + rr] = -g * (eta_f * u_jk + g_jk)
                        row[o_ef + rr] = g * f
                    row[o_cos] = cos * inv_ij * inv_ij
                    row[o_cos + 1] = cos * inv_ik * inv_ik
                    row[o_cos + 2] = inv_ij * inv_ik
                    if do_cache:
                        item_i[n_items, 0] = p
                        item_i[n_items, 1] = q
                        item_i[n_items, 2] = b
                        n_items += 1
                    if do_deriv:
                        sp = scratch[p - s]
                        sq = scratch[q - s]
                        cos_jj, cos_kk, inv_jk = row[o_cos], row[o_cos + 1], row[o_cos + 2]
                        for c in range(c0, c1):
                            aa, da = row[col_ang[c]], row[o_dang + col_ang[c]]
                            rr = col_rad[c]
                            ef = row[o_ef + rr]
                            coef_j = aa * row[o_pj + rr] - da * ef * cos_jj
                            coef_k = aa * row[o_pk + rr] - da * ef * cos_kk
                            cross = aa * row[o_ty + rr] + da * ef * inv_jk
                            sp[0, c] += coef_j * vp0 + cross * vq0
                            sp[1, c] += coef_j * vp1 + cross * vq1
                            sp[2, c] += coef_j * vp2 + cross * vq2
                            sq[0, c] += cross * vp0 + coef_k * vq0
                            sq[1, c] += cross * vp1 + coef_k * vq1
                            sq[2, c] += cross * vp2 + coef_k * vq2
        for c in range(n_cols):
            values[i - a_begin, out_pos[c]] = vloc[c]
        if do_deriv:  # the atom's per-entry derivatives into its atom pairs and strain derivatives
            ps = self_pair[i]
            for p in range(s, e):
                pe = entry_pair[p]
                for c in range(n_cols):
                    o = out_pos[c]
                    for x in range(3):
                        d = scratch[p - s, x, c] * deriv_scale[c]
                        dvalues[pe, o, x] += d
                        dvalues[ps, o, x] -= d
                        if do_virial:
                            for a in range(3):
                                virial[i - a_begin, o, a, x] += vec[p, a] * d
    return values, dvalues, virial, item_f[:n_items], item_i[:n_items], g2_coef


@_njit
def _contract(start, vec, a_begin, a_end, weights, item_f, item_i, g2_coef, blk_ranges, col_ang, col_rad,
              max_ang, max_rad):
    """dE/dR_p (n_chunk_entries, 3) of every entry of atoms a_begin..a_end-1 from the cached
    terms of :func:`_walk` and w = ∂E/∂G (n_chunk, n_cols, internal order): per item the
    columns are contracted first (Σ_c w_c A_c P_c ...), then two vectors are added."""
    e_begin = start[a_begin]
    dedr = np.zeros((start[a_end] - e_begin, 3))
    n_g2 = g2_coef.shape[1]
    for i in range(a_begin, a_end):
        for p in range(start[i], start[i + 1]):
            acc = 0.0
            for c in range(n_g2):
                acc += weights[i - a_begin, c] * g2_coef[p - e_begin, c]
            for x in range(3):
                dedr[p - e_begin, x] += acc * vec[p, x]
    o_dang, o_pj = max_ang, 2 * max_ang
    o_pk, o_ty, o_ef, o_cos = o_pj + max_rad, o_pj + 2 * max_rad, o_pj + 3 * max_rad, o_pj + 4 * max_rad
    q_a = np.empty(max_rad)
    q_d = np.empty(max_rad)
    atom = a_begin
    for t in range(len(item_i)):
        p, q, b = item_i[t, 0], item_i[t, 1], item_i[t, 2]
        while start[atom + 1] <= p:  # items are in the order of their central atoms
            atom += 1
        row = item_f[t]
        # Σ_c w_c A_a(c) X_r(c) = Σ_r X_r Q_r with Q_r = Σ_{c: r(c) = r} w_c A_a(c) (and Q' with A')
        n_rad = blk_ranges[b, 3] - blk_ranges[b, 2]
        q_a[:n_rad] = 0.0
        q_d[:n_rad] = 0.0
        for c in range(blk_ranges[b, 4], blk_ranges[b, 5]):
            w = weights[atom - a_begin, c]
            q_a[col_rad[c]] += w * row[col_ang[c]]
            q_d[col_rad[c]] += w * row[o_dang + col_ang[c]]
        s_a = 0.0
        s_j = 0.0
        s_k = 0.0
        s_y = 0.0
        for rr in range(n_rad):
            s_a += q_d[rr] * row[o_ef + rr]
            s_j += q_a[rr] * row[o_pj + rr]
            s_k += q_a[rr] * row[o_pk + rr]
            s_y += q_a[rr] * row[o_ty + rr]
        coef_j = s_j - s_a * row[o_cos]
        coef_k = s_k - s_a * row[o_cos + 1]
        cross = s_y + s_a * row[o_cos + 2]
        for x in range(3):
            dedr[p - e_begin, x] += coef_j * vec[p, x] + cross * vec[q, x]
            dedr[q - e_begin, x] += cross * vec[p, x] + coef_k * vec[q, x]
    return dedr


def _flat(plan) -> FlatPlan:
    """The plan's flat tables, made once per plan."""
    if getattr(plan, "_flat", None) is None:
        plan._flat = FlatPlan(plan)
    return plan._flat


def _el_j(nl, species, plan):
    return plan.species_index(species)[nl.j].astype(np.int64)


def symmetry_functions(nl, species, plan, derivatives: bool = False, virial: bool = False, deriv_scale=None):
    """Raw values (n_atoms, n_cols) and, with ``derivatives``, ``(pair_i, pair_j, dvalues)`` and,
    with ``virial``, W (n_atoms, n_cols, 3, 3); None where not asked. Same values as the NumPy
    reference followed by ``pair_derivatives`` and ``entry_virials``; the derivatives are
    multiplied by ``deriv_scale`` (n_cols,) if given (the ranging's dG'/dG, at no extra cost)."""
    flat = _flat(plan)
    n_atoms = len(nl.start) - 1
    derivatives = derivatives or virial
    if derivatives:
        pair_i, pair_j, entry_pair, self_pair = atom_pairs(nl.i, nl.j, n_atoms)
    else:
        pair_i = pair_j = np.zeros(0, np.int64)
        entry_pair, self_pair = np.zeros(len(nl), np.int64), np.zeros(n_atoms, np.int64)
    scale = np.ones(flat.n_cols) if deriv_scale is None else np.asarray(deriv_scale, float)[flat.out_pos]
    with deferred():  # a first call compiles: Ctrl-C / SIGTERM take effect after it
        values, dvalues, w, *_ = _walk(nl.start, _el_j(nl, species, plan), nl.vector, nl.distance, 0, n_atoms,
                                       derivatives, False, virial, *flat.arrays(), entry_pair, self_pair,
                                       len(pair_i), scale, 0)
    return values, ((pair_i, pair_j, dvalues) if derivatives else None), (w if virial else None)


#: Bound on the (triplet, block) items cached at once by :func:`adjoint_pass` (rows of
#: 2·n_ang + 4·n_rad + 3 doubles: at most ~40 MB with the seed grid, of which only the rows used
#: are touched); atoms are walked in chunks below it.
MAX_ITEMS = 1 << 17


def adjoint_pass(nl, species, plan, weights_of):
    """Values, then forces by contraction, without forming ∂G/∂r.

    Atoms are walked in chunks (at most :data:`MAX_ITEMS` triplet items cached). For each chunk
    [a0, a1) ``weights_of(a0, a1, values)`` receives the raw values (a1 − a0, n_cols) and returns
    w = ∂E/∂G (n_members, a1 − a0, n_cols), eV per unit of G, one row per committee member; the
    cached derivative terms are then contracted with w. Returns the raw values (n_atoms, n_cols),
    the forces (n_members, n_atoms, 3) eV/Å, F_k = −Σ_i Σ_c w_ic ∂G_ic/∂r_k, and the strain
    derivatives (n_members, 3, 3) eV, ∂E/∂ε_ab = Σ_p R_p,a ∂E/∂R_p,b.
    """
    flat = _flat(plan)
    n_atoms = len(nl.start) - 1
    el_j = _el_j(nl, species, plan)
    counts = np.diff(nl.start)
    per_pair = int(np.max(np.diff(flat.pair_blocks), initial=0))
    bound = counts * (counts - 1) // 2 * per_pair  # items an atom can cache
    values = np.zeros((n_atoms, flat.n_cols))
    dedr, a0 = None, 0
    dummy = np.zeros(0, np.int64)
    while a0 < n_atoms:
        a1 = a0 + 1 + int(np.searchsorted(np.cumsum(bound[a0 + 1:]), MAX_ITEMS - bound[a0], side="right"))
        a1 = min(a1, n_atoms)
        with deferred():  # a first call compiles: Ctrl-C / SIGTERM take effect after it
            vals, _, _, item_f, item_i, g2_coef = _walk(
                nl.start, el_j, nl.vector, nl.distance, a0, a1, False, True, False, *flat.arrays(), dummy, dummy, 0,
                np.ones(flat.n_cols), int(bound[a0:a1].sum()))
        values[a0:a1] = vals
        w = np.asarray(weights_of(a0, a1, vals), float)
        if dedr is None:
            dedr = np.zeros((len(w), len(nl), 3))
        e0, e1 = nl.start[a0], nl.start[a1]
        for m in range(len(w)):
            w_internal = np.ascontiguousarray(w[m][:, flat.out_pos])
            with deferred():
                dedr[m, e0:e1] = _contract(nl.start, nl.vector, a0, a1, w_internal, item_f, item_i, g2_coef,
                                           flat.blk_ranges, flat.col_ang, flat.col_rad, flat.max_ang, flat.max_rad)
        a0 = a1
    if dedr is None:  # no atoms: nothing to weigh (one member's worth of empty forces)
        dedr = np.zeros((1, 0, 3))
    forces = np.stack([np.stack([np.bincount(nl.i, d[:, x], n_atoms) - np.bincount(nl.j, d[:, x], n_atoms)
                                 for x in range(3)], axis=1) for d in dedr])
    strain = np.einsum("pa,mpb->mab", nl.vector, dedr)
    return values, forces, strain
