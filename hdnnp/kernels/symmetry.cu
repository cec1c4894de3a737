// Behler symmetry functions G2 / G4 and their derivatives, double precision (SPEC §4).
//
// Same formulas and neighbour-list layout as the NumPy reference
// hdnnp/descriptors/symmetry_functions.py; compiled by cupy.RawModule in symmetry_gpu.py.
//
// Launch: grid = one block per central atom i; threads of the block stride over the
// neighbour entries j of i (entries start[i] .. start[i+1]-1); for G4 each thread loops over the
// entries k > j itself. Each output column is done in turn: per-thread partial sums are added
// by a shared-memory tree reduction (blockDim.x must be a power of two <= MAX_THREADS).
//
// Derivatives go to dentry[p, c, :] = dG_c(i) / d(position of the image in entry p); two
// threads can touch the same entry (as j of one triplet and k of another), hence atomicAdd.
//
//   fc(R) = 0.5 (cos(pi R / Rc) + 1),  fc'(R) = -(pi / 2Rc) sin(pi R / Rc)
//   G2 = sum_j exp(-eta (R_ij - Rs)^2) fc(R_ij)
//   G4 = 2^(1-zeta) sum_{j<k} (1 + lambda cos)^zeta exp(-eta (R_ij^2 + R_ik^2 + R_jk^2)) fc fc fc
//   dT/dr_j = a_j R_ij + Y R_ik,  dT/dr_k = Y R_ij + b_k R_ik   (see the NumPy docstring)

#define MAX_THREADS 256
#define PI 3.14159265358979323846

__device__ inline void cutoff_fn(double r, double rc, double* fc, double* dfc) {
    if (r <= rc) {
        double x = PI * r / rc;
        *fc = 0.5 * (cos(x) + 1.0);
        *dfc = -0.5 * PI / rc * sin(x);
    } else {
        *fc = 0.0;
        *dfc = 0.0;
    }
}

extern "C" __global__ void symmetry_functions(
    const int n_atoms, const long long* start, const double* vec, const double* dist,
    const int* nb_el, const int n_el, const int* pair_index,
    const int n_cols, const int* col_kind, const int* col_block, const double* col_eta,
    const double* col_rs, const double* col_zeta, const double* col_lambda,
    const double rc, const int with_derivatives, double* values, double* dentry)
{
    __shared__ double partial[MAX_THREADS];
    const int i = blockIdx.x;
    if (i >= n_atoms) return;
    const long long first = start[i], last = start[i + 1];
    const double rc2 = rc * rc;

    for (int c = 0; c < n_cols; ++c) {
        const int kind = col_kind[c], block = col_block[c];
        const double eta = col_eta[c], rs = col_rs[c], zeta = col_zeta[c], lam = col_lambda[c];
        const double norm = pow(2.0, 1.0 - zeta);
        double acc = 0.0;
        for (long long j = first + threadIdx.x; j < last; j += blockDim.x) {
            const double rij = dist[j];
            double fcij, dfcij;
            cutoff_fn(rij, rc, &fcij, &dfcij);
            if (kind == 2) {
                if (nb_el[j] != block) continue;
                const double d = rij - rs;
                const double gauss = exp(-eta * d * d);
                acc += gauss * fcij;
                if (with_derivatives) {
                    const double dg = gauss * (-2.0 * eta * d * fcij + dfcij) / rij;
                    for (int x = 0; x < 3; ++x)
                        atomicAdd(&dentry[(j * n_cols + c) * 3 + x], dg * vec[3 * j + x]);
                }
                continue;
            }
            for (long long k = j + 1; k < last; ++k) {
                if (pair_index[nb_el[j] * n_el + nb_el[k]] != block) continue;
                double rjk_v[3], r2jk = 0.0, dot = 0.0;
                for (int x = 0; x < 3; ++x) {
                    rjk_v[x] = vec[3 * k + x] - vec[3 * j + x];
                    r2jk += rjk_v[x] * rjk_v[x];
                    dot += vec[3 * j + x] * vec[3 * k + x];
                }
                if (r2jk > rc2) continue;
                const double rik = dist[k], rjk = sqrt(r2jk);
                double fcik, dfcik, fcjk, dfcjk;
                cutoff_fn(rik, rc, &fcik, &dfcik);
                cutoff_fn(rjk, rc, &fcjk, &dfcjk);
                const double cos_t = dot / (rij * rik);
                const double f = fcij * fcik * fcjk;
                const double base = 1.0 + lam * cos_t;
                const double ang = norm * pow(base, zeta);
                const double gauss = exp(-eta * (rij * rij + rik * rik + r2jk));
                acc += ang * gauss * f;
                if (with_derivatives) {
                    const double dang = norm * zeta * lam * pow(base, zeta - 1.0);
                    const double gij = dfcij * fcik * fcjk / rij;
                    const double gik = fcij * dfcik * fcjk / rik;
                    const double gjk = fcij * fcik * dfcjk / rjk;
                    const double a_j = ang * gauss * (-4.0 * eta * f + gij + gjk)
                                       - dang * gauss * f * cos_t / (rij * rij);
                    const double b_k = ang * gauss * (-4.0 * eta * f + gik + gjk)
                                       - dang * gauss * f * cos_t / (rik * rik);
                    const double y = dang * gauss * f / (rij * rik)
                                     - ang * gauss * (-2.0 * eta * f + gjk);
                    for (int x = 0; x < 3; ++x) {
                        atomicAdd(&dentry[(j * n_cols + c) * 3 + x], a_j * vec[3 * j + x] + y * vec[3 * k + x]);
                        atomicAdd(&dentry[(k * n_cols + c) * 3 + x], y * vec[3 * j + x] + b_k * vec[3 * k + x]);
                    }
                }
            }
        }
        // block reduction of the per-thread partial sums of column c
        partial[threadIdx.x] = acc;
        __syncthreads();
        for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
            if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
            __syncthreads();
        }
        if (threadIdx.x == 0) values[(long long)i * n_cols + c] = partial[0];
        __syncthreads();
    }
}
