// Neighbour lists, symmetry functions and forces by contraction on a CUDA GPU (SPEC §4, §9).
//
// The same functions and the same one-walk design as the compiled CPU path
// (hdnnp/descriptors/fast.py, whose docstring has the formulas and the table layout): every
// column of an atom comes from one walk over its neighbour entries and entry pairs (triplets);
// per triplet the angular terms of each (zeta, lambda) and the Gaussians of each (eta, Rs) are
// computed once and shared by the block's columns. Many frames go in one launch: entries and
// atoms of a batch are concatenated, one CUDA block per central atom.
//
// Kernels (launched by hdnnp/kernels/gpu.py; run on the CPU by hdnnp/kernels/emulate.py):
//   nl_build    neighbour list of periodic frames: block = atom i, threads = candidate atoms j,
//               from a cell list (the 27 bins around i) or, in boxes too small for one, every
//               atom with every lattice shift that can bring it within Rc (two launches: count,
//               then fill in a fixed order, so the list does not depend on timing)
//   sf_entries  per entry: fc and dfc for every cutoff radius, exp(-eta (R - Rs)^2) per radial pair
//   sf_walk     values; with derivatives also dG_ic/dR_p per entry p (thread p owns its rows)
//   sf_virial   W_i[c, a, b] = sum_p R_p,a dG_ic/dR_p,b (block = atom, threads = columns)
//   sf_contract dE/dR_p = sum_c w_ic dG_ic/dR_p for w = dE/dG: forces without forming dG/dr
//   segment_sum sums over segments of items in a given order (forces, pair derivatives, strain)
//
// Determinism: no floating-point atomics; every sum runs in a fixed order (per-thread partial
// sums in shared memory, added in thread order; segment sums in item order), so a launch gives
// the same bits every time.
//
// REAL is double (default) or float (the float32 mode: compiled with -DREAL=float); the
// neighbour list is always built in double. Literal constants are cast with R() so that float
// arithmetic stays in float.

#ifndef REAL
#define REAL double
#endif
typedef REAL real;
#define R(x) ((real)(x))

#ifndef HDNNP_DYNAMIC_SHARED
#define HDNNP_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#define MAX_ANG 16         // (zeta, lambda) pairs of one angular block (checked by the host)
#define MAX_RAD 16         // (eta, Rs) pairs of one angular block (checked by the host)
#define NL_MAX_THREADS 128 // threads per block of nl_build at most
#define PI_D 3.14159265358979323846
#define E_D 2.71828182845904523536

// ---------------------------------------------------------------------------------------------
// neighbour list

// Lattice shifts s with |(df + s) . cell| possibly <= Rc along direction k: s in
// [ceil(-reach - df), floor(reach - df)], reach = Rc / plane spacing; none but 0 when reach < 0
// (a non-periodic direction).
__device__ inline void shift_range(double df, double reach, int* lo, int* hi) {
    if (reach < 0.0) { *lo = 0; *hi = 0; return; }
    *lo = (int)ceil(-reach - df);
    *hi = (int)floor(reach - df);
}

// The image of j shifted by s (fractional, in cells) as an entry of i if 0 < R <= Rc; written to
// slot o when `write`. Returns 1 if it is an entry.
__device__ inline int visit_image(long long i, long long j, double s0, double s1, double s2,
                                  const double* frac, const double* cell, double cut2, int write,
                                  long long o, long long* nb_j, double* vec, double* dist) {
    const double f0 = frac[3 * j] - frac[3 * i] + s0, f1 = frac[3 * j + 1] - frac[3 * i + 1] + s1,
                 f2 = frac[3 * j + 2] - frac[3 * i + 2] + s2;
    double v[3], r2 = 0.0;
    for (int x = 0; x < 3; ++x) {
        v[x] = f0 * cell[x] + f1 * cell[3 + x] + f2 * cell[6 + x];
        r2 += v[x] * v[x];
    }
    if (r2 > cut2 || r2 <= 0.0) return 0;
    if (write) {
        nb_j[o] = j;
        for (int x = 0; x < 3; ++x) vec[3 * o + x] = v[x];
        dist[o] = sqrt(r2);
    }
    return 1;
}

// The entries of atom i among the candidates that thread tid of nt takes (every nt-th, in a fixed
// order), written from slot o on when `write`; returns how many. A frame with bins (n0, n1, n2)
// != 0 (periodic, every direction >= 3 bins of width >= Rc): the atoms of the 27 bins around i's
// bin, each bin once (so each image once). Otherwise every atom of the frame with every lattice
// shift within reach.
__device__ long long visit_candidates(
    long long i, int tid, int nt, long long a0, long long a1, const double* frac, const double* cell,
    const double* reach, const int* nbin, long long bin0, const int* atom_bin, const long long* cell_start,
    const long long* cell_atoms, double cut2, int write, long long o, long long* nb_j, double* vec, double* dist)
{
    long long n = 0;
    if (nbin[0] == 0) {
        for (long long j = a0 + tid; j < a1; j += nt) {
            int lo[3], hi[3];
            for (int k = 0; k < 3; ++k) shift_range(frac[3 * j + k] - frac[3 * i + k], reach[k], &lo[k], &hi[k]);
            for (int s0 = lo[0]; s0 <= hi[0]; ++s0)
                for (int s1 = lo[1]; s1 <= hi[1]; ++s1)
                    for (int s2 = lo[2]; s2 <= hi[2]; ++s2)
                        n += visit_image(i, j, s0, s1, s2, frac, cell, cut2, write, o + n, nb_j, vec, dist);
        }
        return n;
    }
    for (int b = 0; b < 27; ++b) {
        const int d[3] = {b / 9 - 1, (b / 3) % 3 - 1, b % 3 - 1};
        int c[3];
        double s[3];
        for (int k = 0; k < 3; ++k) {
            c[k] = atom_bin[3 * i + k] + d[k];
            s[k] = 0.0;
            if (c[k] < 0) { c[k] += nbin[k]; s[k] = -1.0; }
            else if (c[k] >= nbin[k]) { c[k] -= nbin[k]; s[k] = 1.0; }
        }
        const long long g = bin0 + ((long long)c[0] * nbin[1] + c[1]) * nbin[2] + c[2];
        for (long long m = cell_start[g] + tid; m < cell_start[g + 1]; m += nt)
            n += visit_image(i, cell_atoms[m], s[0], s[1], s[2], frac, cell, cut2, write, o + n, nb_j, vec, dist);
    }
    return n;
}

// fill = 0: count[i] = number of entries of atom i. fill = 1: write them from start[i] on.
// frac: wrapped fractional coordinates (n_atoms, 3); cells (n_frames, 3, 3) rows a, b, c;
// reach (n_frames, 3): Rc / plane spacing, -1 along non-periodic directions; atom_first
// (n_frames + 1): atoms of frame f are atom_first[f] .. atom_first[f + 1] - 1. Cell lists:
// bins (n_frames, 3) bins per direction (0: none, try every pair), bin_first (n_frames) the
// frame's first bin, atom_bin (n_atoms, 3) each atom's bin, the atoms of bin g are
// cell_atoms[cell_start[g] .. cell_start[g + 1] - 1].
extern "C" __global__ void nl_build(
    const int fill, const long long n_atoms, const int* frame_of, const long long* atom_first,
    const double* frac, const double* cells, const double* reach, const int* bins, const long long* bin_first,
    const int* atom_bin, const long long* cell_start, const long long* cell_atoms, const double cutoff,
    long long* count, const long long* start, long long* nb_j, double* vec, double* dist)
{
    __shared__ long long offset[NL_MAX_THREADS];
    const long long i = blockIdx.x;
    if (i >= n_atoms) return;
    const int f = frame_of[i];
    const long long a0 = atom_first[f], a1 = atom_first[f + 1];
    const double cut2 = cutoff * cutoff;
    const int tid = threadIdx.x, nt = blockDim.x;
    offset[tid] = visit_candidates(i, tid, nt, a0, a1, frac, cells + 9 * f, reach + 3 * f, bins + 3 * f,
                                   bin_first[f], atom_bin, cell_start, cell_atoms, cut2, 0, 0, nb_j, vec, dist);
    __syncthreads();
    if (tid == 0) {  // exclusive scan of the per-thread counts, in thread order
        long long run = fill ? start[i] : 0;
        for (int k = 0; k < nt; ++k) {
            const long long c = offset[k];
            offset[k] = run;
            run += c;
        }
        if (!fill) count[i] = run;
    }
    __syncthreads();
    if (fill)
        visit_candidates(i, tid, nt, a0, a1, frac, cells + 9 * f, reach + 3 * f, bins + 3 * f, bin_first[f],
                         atom_bin, cell_start, cell_atoms, cut2, 1, offset[tid], nb_j, vec, dist);
}

// ---------------------------------------------------------------------------------------------
// symmetry functions

// The flat tables of hdnnp.descriptors.fast.FlatPlan, as the kernels receive them.
struct Tables {
    const real* rcs; int n_rc; int ctype; real calpha; real cpre;
    int n_g2; const int* g2_i; const real* g2_f;           // (n_g2, 2): element, radius | eta, Rs
    const int* blk; const int* pair_blocks;                 // (n_blk, 8): kind, radius, a0, a1, r0, r1, c0, c1
    const int* pair_index; int n_el;
    const real* ang_f; const int* ang_int;                  // (n_ang, 3): lambda, 2^(1-zeta), zeta
    int n_rad; const real* rad_f;                           // (n_rad, 2): eta, Rs
    int n_cols; const int* col_i;                           // (n_cols, 3): angular, radial, caller's column
    real jk_limit;
};

#define TABLE_ARGS                                                                                   \
    const real* rcs, const int n_rc, const int ctype, const real calpha, const real cpre,            \
    const int n_g2, const int* g2_i, const real* g2_f, const int* blk, const int* pair_blocks,       \
    const int* pair_index, const int n_el, const real* ang_f, const int* ang_int, const int n_rad,   \
    const real* rad_f, const int n_cols, const int* col_i, const real jk_limit
#define TABLES {rcs, n_rc, ctype, calpha, cpre, n_g2, g2_i, g2_f, blk, pair_blocks, pair_index, n_el, \
                ang_f, ang_int, n_rad, rad_f, n_cols, col_i, jk_limit}

// fc(R), dfc/dR (hdnnp.descriptors.symmetry_functions.cutoff_function; n2p2's numbering)
__device__ inline void cutoff_fn(real r, real rc, int kind, real alpha, real pre, real* fc, real* dfc) {
    *fc = R(0.0);
    *dfc = R(0.0);
    if (r > rc) return;
    if (kind == 1 && alpha == R(0.0)) {
        const real x = R(PI_D) / rc * r;
        *fc = R(0.5) * (cos(x) + R(1.0));
        *dfc = R(-0.5) * R(PI_D) / rc * sin(x);
        return;
    }
    if (kind == 2 || kind == 3) {
        const real t = tanh(R(1.0) - r / rc);
        const real p = kind == 3 ? pre : R(1.0);
        *fc = p * t * t * t;
        *dfc = R(3.0) * p * t * t * (t * t - R(1.0)) / rc;
        return;
    }
    const real inner = alpha * rc;
    if (r < inner) { *fc = R(1.0); return; }
    const real iw = R(1.0) / (rc - inner);
    real x = (r - inner) * iw;
    x = x < R(0.0) ? R(0.0) : (x > R(1.0) ? R(1.0) : x);
    if (kind == 1) {
        *fc = R(0.5) * (cos(R(PI_D) * x) + R(1.0));
        *dfc = R(-0.5) * R(PI_D) * iw * sin(R(PI_D) * x);
        return;
    }
    const real x2 = x * x;
    if (kind == 4) {
        if (x >= R(1.0)) return;
        const real inv = R(1.0) / (x2 - R(1.0));
        const real e = exp(inv);
        *fc = R(E_D) * e;
        *dfc = iw * (R(-2.0) * R(E_D) * x * inv * inv * e);
    } else if (kind == 5) {
        *fc = (R(2.0) * x - R(3.0)) * x2 + R(1.0);
        *dfc = iw * x * (R(6.0) * x - R(6.0));
    } else if (kind == 6) {
        *fc = ((R(15.0) - R(6.0) * x) * x - R(10.0)) * x * x2 + R(1.0);
        *dfc = iw * x2 * ((R(60.0) - R(30.0) * x) * x - R(30.0));
    } else if (kind == 7) {
        *fc = (x * (x * (R(20.0) * x - R(70.0)) + R(84.0)) - R(35.0)) * x2 * x2 + R(1.0);
        *dfc = iw * x2 * x * (x * (x * (R(140.0) * x - R(420.0)) + R(420.0)) - R(140.0));
    } else {
        *fc = (x * (x * ((R(315.0) - R(70.0) * x) * x - R(540.0)) + R(420.0)) - R(126.0)) * x2 * x2 * x + R(1.0);
        *dfc = iw * x2 * x2 * (x * (x * ((R(2520.0) - R(630.0) * x) * x - R(3780.0)) + R(2520.0)) - R(630.0));
    }
}

// base^(zeta - 1): repeated squaring for integer zeta (n = zeta - 1 >= 0), else pow
__device__ inline real power_m1(real base, int n, real zeta) {
    if (n < 0) return pow(base, zeta - R(1.0));
    real result = R(1.0), factor = base;
    while (n) {
        if (n & 1) result *= factor;
        n >>= 1;
        if (n) factor *= factor;
    }
    return result;
}

// Row width of the per-entry table: fc and dfc per radius, then exp(-eta (R - Rs)^2) per radial pair.
__device__ inline int etab_width(const Tables& t) { return 2 * t.n_rc + t.n_rad; }

extern "C" __global__ void sf_entries(const long long n_ent, const real* dist, TABLE_ARGS, real* etab) {
    const Tables t = TABLES;
    const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_ent) return;
    const int w = etab_width(t);
    const real r = dist[p];
    for (int k = 0; k < t.n_rc; ++k)
        cutoff_fn(r, t.rcs[k], t.ctype, t.calpha, t.cpre, &etab[p * w + k], &etab[p * w + t.n_rc + k]);
    for (int e = 0; e < t.n_rad; ++e) {
        const real d = r - t.rad_f[2 * e + 1];
        etab[p * w + 2 * t.n_rc + e] = exp(-t.rad_f[2 * e] * d * d);
    }
}

// Radial (G2) functions of entry p: values into acc[c] (if acc), dG/dR_p into dp[c_out * 3 + x]
// times scale[c] (if dp), and w . dG/dR_p into g[x] (if w).
__device__ void radial_entry(const Tables& t, long long p, int el, const real* vec, const real* dist,
                             const real* etab, real* acc, real* dp, const real* scale, const real* w, real* g) {
    const int wd = etab_width(t);
    const real r = dist[p];
    real sum_w = R(0.0);
    for (int c = 0; c < t.n_g2; ++c) {
        if (t.g2_i[2 * c] != el) continue;
        const int k = t.g2_i[2 * c + 1];
        const real fc = etab[p * wd + k], dfc = etab[p * wd + t.n_rc + k];
        if (fc == R(0.0) && dfc == R(0.0)) continue;
        const real eta = t.g2_f[2 * c], d = r - t.g2_f[2 * c + 1];
        const real gs = exp(-eta * d * d);
        if (acc) acc[c] += gs * fc;
        const real coef = gs * (R(-2.0) * eta * d * fc + dfc) / r;
        if (dp) {
            const int o = t.col_i[3 * c + 2];
            for (int x = 0; x < 3; ++x) dp[3 * o + x] += scale[c] * coef * vec[3 * p + x];
        }
        if (w) sum_w += w[t.col_i[3 * c + 2]] * coef;
    }
    if (w)
        for (int x = 0; x < 3; ++x) g[x] += sum_w * vec[3 * p + x];
}

// Angular functions of the triplet (i; entries p, q) with p in the role of j. Adds the values
// to acc[c] (if acc), dT/dR_p into dp[c_out * 3 + x] times scale[c] (if dp) and
// sum_c w_c dT_c/dR_p into g[x] (if w). dT/dR_p = coef_j R_p + cross R_q with
//   coef_j = A P_j - A' E F cos/R_ij^2,  cross = A Y + A' E F / (R_ij R_ik)
// (the terms of fast._walk: P_j, Y per radial pair, A, A' per angular pair).
__device__ void triplet(const Tables& t, long long p, long long q, const int* el_j, const real* vec,
                        const real* dist, const real* etab, real* acc, real* dp, const real* scale,
                        const real* w, real* g) {
    const int pair = t.pair_index[el_j[p] * t.n_el + el_j[q]];
    const int b0 = t.pair_blocks[pair], b1 = t.pair_blocks[pair + 1];
    if (b0 == b1) return;
    const real vp[3] = {vec[3 * p], vec[3 * p + 1], vec[3 * p + 2]};
    const real vq[3] = {vec[3 * q], vec[3 * q + 1], vec[3 * q + 2]};
    const real r2_jk = (vq[0] - vp[0]) * (vq[0] - vp[0]) + (vq[1] - vp[1]) * (vq[1] - vp[1])
                       + (vq[2] - vp[2]) * (vq[2] - vp[2]);
    if (t.jk_limit >= R(0.0) && r2_jk > t.jk_limit * t.jk_limit) return;
    const int wd = etab_width(t);
    const real r_ij = dist[p], r_ik = dist[q], r_jk = sqrt(r2_jk);
    const real cos_t = (vp[0] * vq[0] + vp[1] * vq[1] + vp[2] * vq[2]) / (r_ij * r_ik);
    const real inv_ij = R(1.0) / r_ij, inv_ik = R(1.0) / r_ik;
    const bool side = dp || w;
    real A[MAX_ANG], dA[MAX_ANG], E[MAX_RAD], Pj[MAX_RAD], Y[MAX_RAD];
    for (int b = b0; b < b1; ++b) {
        const int* bl = t.blk + 8 * b;
        const int k = bl[1], a0 = bl[2], a1 = bl[3], r0 = bl[4], r1 = bl[5], c0 = bl[6], c1 = bl[7];
        const bool narrow = bl[0] == 4;
        const real rc = t.rcs[k];
        const real fc_ij = etab[p * wd + k], fc_ik = etab[q * wd + k];
        if (fc_ij == R(0.0) || fc_ik == R(0.0)) continue;
        real fc_jk = R(1.0), dfc_jk = R(0.0);
        if (narrow) {
            if (r_jk > rc) continue;
            cutoff_fn(r_jk, rc, t.ctype, t.calpha, t.cpre, &fc_jk, &dfc_jk);
        }
        const real f = fc_ij * fc_ik * fc_jk;
        for (int a = a0; a < a1; ++a) {
            const real lam = t.ang_f[3 * a], norm = t.ang_f[3 * a + 1], zeta = t.ang_f[3 * a + 2];
            const real base = R(1.0) + lam * cos_t;
            const real pw = power_m1(base, t.ang_int[a], zeta);
            A[a - a0] = norm * pw * base;
            dA[a - a0] = norm * zeta * lam * pw;
        }
        for (int rr = r0; rr < r1; ++rr) {
            real e = etab[p * wd + 2 * t.n_rc + rr] * etab[q * wd + 2 * t.n_rc + rr];
            const real eta = t.rad_f[2 * rr];
            if (narrow && eta != R(0.0)) {
                const real d = r_jk - t.rad_f[2 * rr + 1];
                e *= exp(-eta * d * d);
            }
            E[rr - r0] = e;
        }
        if (acc)
            for (int c = c0; c < c1; ++c) acc[c] += A[t.col_i[3 * c]] * E[t.col_i[3 * c + 1]] * f;
        if (!side) continue;
        const real inv_jk = narrow ? R(1.0) / r_jk : R(0.0);
        const real g_ij = etab[p * wd + t.n_rc + k] * fc_ik * fc_jk * inv_ij;
        const real g_jk = fc_ij * fc_ik * dfc_jk * inv_jk;
        const real w_jk = narrow ? R(1.0) : R(0.0);
        for (int rr = 0; rr < r1 - r0; ++rr) {
            const real eta_f = R(-2.0) * t.rad_f[2 * (r0 + rr)] * f, rs = t.rad_f[2 * (r0 + rr) + 1];
            const real u_jk = w_jk - rs * inv_jk;  // u = 1 - Rs/R per distance (0 for the wide G5)
            Pj[rr] = E[rr] * (eta_f * (R(1.0) - rs * inv_ij + u_jk) + g_ij + g_jk);
            Y[rr] = -E[rr] * (eta_f * u_jk + g_jk);
        }
        const real cos_jj = cos_t * inv_ij * inv_ij, inv_jk_ang = inv_ij * inv_ik;
        if (dp) {
            for (int c = c0; c < c1; ++c) {
                const int a = t.col_i[3 * c], rr = t.col_i[3 * c + 1], o = t.col_i[3 * c + 2];
                const real ef = E[rr] * f;
                const real coef = scale[c] * (A[a] * Pj[rr] - dA[a] * ef * cos_jj);
                const real cross = scale[c] * (A[a] * Y[rr] + dA[a] * ef * inv_jk_ang);
                for (int x = 0; x < 3; ++x) dp[3 * o + x] += coef * vp[x] + cross * vq[x];
            }
        }
        if (w) {  // columns contracted first: sum_c w_c A_a(c) X_r(c) = sum_r X_r Q_r
            real s_a = R(0.0), s_j = R(0.0), s_y = R(0.0);
            for (int c = c0; c < c1; ++c) {
                const int a = t.col_i[3 * c], rr = t.col_i[3 * c + 1];
                const real wc = w[t.col_i[3 * c + 2]];
                s_j += wc * A[a] * Pj[rr];
                s_y += wc * A[a] * Y[rr];
                s_a += wc * dA[a] * E[rr] * f;
            }
            const real coef = s_j - s_a * cos_jj, cross = s_y + s_a * inv_jk_ang;
            for (int x = 0; x < 3; ++x) g[x] += coef * vp[x] + cross * vq[x];
        }
    }
}

// Values (n_atoms, n_cols) in the caller's column order; with `deriv`, also dentry
// (n_ent, n_cols, 3) = dG_ic/dR_p times scale[c] (zeroed by the caller). Block = atom i.
// Dynamic shared memory: blockDim.x * (n_cols | 1) reals, each thread's partial sums (an odd row
// length, so that the threads' rows fall on different banks).
// Values only: threads stride over the ordered entry pairs (p, q), q > p. With derivatives a
// thread owns entries p and walks every q != p (each triplet is visited from both sides, the
// value added once), so no two threads write the same derivative.
extern "C" __global__ void sf_walk(
    const long long n_atoms, const long long* start, const int* el_j, const real* vec, const real* dist,
    const real* etab, TABLE_ARGS, const real* scale, const int deriv, real* values, real* dentry)
{
    HDNNP_DYNAMIC_SHARED(real, partial);
    const Tables t = TABLES;
    const long long i = blockIdx.x;
    if (i >= n_atoms) return;
    const long long s = start[i], n = start[i + 1] - s;
    const int tid = threadIdx.x, nt = blockDim.x;
    const int row = t.n_cols | 1;
    real* acc = partial + (long long)tid * row;
    for (int c = 0; c < t.n_cols; ++c) acc[c] = R(0.0);
    for (long long p = s + tid; p < s + n; p += nt)
        radial_entry(t, p, el_j[p], vec, dist, etab, acc, deriv ? dentry + p * t.n_cols * 3 : 0, scale, 0, 0);
    if (!deriv) {
        for (long long u = tid; u < n * n; u += nt) {
            const long long p = s + u / n, q = s + u % n;
            if (q > p) triplet(t, p, q, el_j, vec, dist, etab, acc, 0, scale, 0, 0);
        }
    } else {
        for (long long p = s + tid; p < s + n; p += nt) {
            real* dp = dentry + p * t.n_cols * 3;
            for (long long q = s; q < p; ++q) triplet(t, p, q, el_j, vec, dist, etab, 0, dp, scale, 0, 0);
            for (long long q = p + 1; q < s + n; ++q) triplet(t, p, q, el_j, vec, dist, etab, acc, dp, scale, 0, 0);
        }
    }
    __syncthreads();
    for (int c = tid; c < t.n_cols; c += nt) {
        real sum = R(0.0);
        for (int k = 0; k < nt; ++k) sum += partial[(long long)k * row + c];
        values[i * t.n_cols + t.col_i[3 * c + 2]] = sum;
    }
}

// W (n_atoms, n_cols, 3, 3): W_i[c, a, b] = sum_p R_p,a dentry[p, c, b]. Block = atom i, threads
// stride over the columns; the entries are summed in order.
extern "C" __global__ void sf_virial(const long long n_atoms, const long long* start, const real* vec,
                                     const int n_cols, const real* dentry, real* virial) {
    const long long i = blockIdx.x;
    if (i >= n_atoms) return;
    for (int c = threadIdx.x; c < n_cols; c += blockDim.x) {
        real wv[9] = {R(0.0), R(0.0), R(0.0), R(0.0), R(0.0), R(0.0), R(0.0), R(0.0), R(0.0)};
        for (long long p = start[i]; p < start[i + 1]; ++p)
            for (int a = 0; a < 3; ++a)
                for (int b = 0; b < 3; ++b) wv[3 * a + b] += vec[3 * p + a] * dentry[(p * n_cols + c) * 3 + b];
        for (int k = 0; k < 9; ++k) virial[(i * n_cols + c) * 9 + k] = wv[k];
    }
}

// out[s, c] = sum of values[k, c] over the items k of segment s, in order: k = order[m] (or m
// without an order) for m in seg_start[s] .. seg_start[s + 1] - 1. Block = segment, threads
// stride over the columns. The deterministic replacement of a scatter-add (forces from
// dE/dR_p, derivatives of atom pairs from those of entries, strain derivatives of frames).
extern "C" __global__ void segment_sum(const long long n_seg, const long long* seg_start, const long long* order,
                                       const int use_order, const long long width, const double* values,
                                       double* out) {
    const long long s = blockIdx.x;
    if (s >= n_seg) return;
    for (long long c = threadIdx.x; c < width; c += blockDim.x) {
        double sum = 0.0;
        for (long long m = seg_start[s]; m < seg_start[s + 1]; ++m)
            sum += values[(use_order ? order[m] : m) * width + c];
        out[s * width + c] = sum;
    }
}

// dedr (n_ent, 3) = sum_c w[i, c] dG_ic/dR_p for every entry p of every atom i, with w = dE/dG
// (n_atoms, n_cols, the caller's column order). Block = atom i; a thread owns entries p.
extern "C" __global__ void sf_contract(
    const long long n_atoms, const long long* start, const int* el_j, const real* vec, const real* dist,
    const real* etab, TABLE_ARGS, const real* weights, real* dedr)
{
    const Tables t = TABLES;
    const long long i = blockIdx.x;
    if (i >= n_atoms) return;
    const long long s = start[i], e = start[i + 1];
    const real* w = weights + i * t.n_cols;
    for (long long p = s + threadIdx.x; p < e; p += blockDim.x) {
        real g[3] = {R(0.0), R(0.0), R(0.0)};
        radial_entry(t, p, el_j[p], vec, dist, etab, 0, 0, 0, w, g);
        for (long long q = s; q < e; ++q)
            if (q != p) triplet(t, p, q, el_j, vec, dist, etab, 0, 0, 0, w, g);
        for (int x = 0; x < 3; ++x) dedr[3 * p + x] = g[x];
    }
}
