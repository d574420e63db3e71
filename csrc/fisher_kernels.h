/*
 * Body of the "fisher" family (Fisher information: accumulation from
 * per-sample scores, and the exact Fisher of the GLM families with its
 * diagonal and its product with a vector), instantiated by fisher.c through
 * fm_instantiate.h once per (element type, instruction set).
 *
 * Mirrors fastmle/_numba/fisher.py function by function; the specification
 * (layouts, parameter order, the per-family covariance M_i) is
 * fastmle/reference/fisher.py. Symmetric results are written as their upper
 * triangle.
 *
 * Every matrix-sized sum here is a symmetric rank-k update C += alpha A^T A
 * (syrk), with thousands of multiply-adds per element read: it goes to the
 * BLAS numpy uses (registered by fastmle/_blas.py, see runtime.c), whose
 * register- and cache-blocked kernels run it several times faster than
 * plain loops; without a registered BLAS, the loops in syrk() compute the
 * same sums.
 */
#define FN(name) FM_CAT3(name, FM_SUF, FM_ISA)
#if FM_DOUBLE
#define FM_BLAS_SYRK fm_blas_dsyrk
#else
#define FM_BLAS_SYRK fm_blas_ssyrk
#endif
/* the double syrk of this instruction set (the double body comes first) */
#define FM_SYRK_F64 FM_CAT3(syrk, f64, FM_ISA)

/* ---- symmetric rank-k update ---- */

/* Upper triangle of the P x P matrix C (row stride ldc) <- beta C + alpha
 * A^T A, A row-major k x P; beta == 0 overwrites C. Without the BLAS: row a
 * of C gets alpha A[i, a] * A[i, a:] for each row i in order, so every
 * element is summed in row order (any thread count). */
static void FN(syrk)(const FM_T *A, int64_t k, int64_t P, double alpha, double beta, FM_T *C,
                     int64_t ldc)
{
    const int64_t largest = k > ldc ? k : ldc;
    if (k > 0 && fm_blas_ok(largest)) {
        FM_BLAS_SYRK(P, k, alpha, A, P, beta, C, ldc);
        return;
    }
#pragma omp parallel for schedule(dynamic, 4) num_threads(fm_team_size(k * P * P / 2))
    for (int64_t a = 0; a < P; a++) {
        FM_T *row = C + a * ldc;
        for (int64_t b = a; b < P; b++)
            row[b] = beta == 0 ? 0 : (FM_T)(beta * row[b]);
        for (int64_t i = 0; i < k; i++) {
            const FM_T *s = A + i * P;
            const FM_T c = (FM_T)(alpha * s[a]);
            if (c == 0)
                continue;
#pragma omp simd
            for (int64_t b = a; b < P; b++)
                row[b] += c * s[b];
        }
    }
}

/* ---- accumulation from per-sample scores ---- */

/* Upper triangle of acc (P x P) <- beta * acc + alpha * S^T diag(w) S: one
 * syrk, or with weights one per FM_SYRK_ROWS rows of sqrt(w_i) s_i.
 * Returns 0, or -1 when out of memory. */
static int FN(fisher_accumulate)(const FM_T *S, int64_t n, int64_t P, const FM_T *w,
                                 double alpha, double beta, FM_T *acc)
{
    if (!w || n == 0) {
        FN(syrk)(S, n, P, alpha, beta, acc, P);
        return 0;
    }
    FM_T *buf = malloc(sizeof(FM_T) * FM_SYRK_ROWS * P);
    if (!buf)
        return -1;
    for (int64_t r0 = 0; r0 < n; r0 += FM_SYRK_ROWS) {
        const int64_t nb = r0 + FM_SYRK_ROWS < n ? FM_SYRK_ROWS : n - r0;
        for (int64_t i = 0; i < nb; i++) {
            const FM_T sw = (FM_T)sqrt((double)w[r0 + i]);
#pragma omp simd
            for (int64_t b = 0; b < P; b++)
                buf[i * P + b] = sw * S[(r0 + i) * P + b];
        }
        FN(syrk)(buf, nb, P, alpha, r0 == 0 ? beta : 1.0, acc, P);
    }
    free(buf);
    return 0;
}

/* acc[j] <- beta * acc[j] + alpha * sum_i w_i S[i, j]^2, summed in double
 * over 256-column blocks that the threads share. */
static void FN(fisher_accumulate_diag)(const FM_T *S, int64_t n, int64_t P, const FM_T *w,
                                       double alpha, double beta, FM_T *acc)
{
    const int64_t blocks = (P + 255) / 256;
#pragma omp parallel for schedule(static) num_threads(fm_team_size(n * P))
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t b0 = blk * 256, nb = b0 + 256 < P ? 256 : P - b0;
        double t[256] = {0};
        for (int64_t i = 0; i < n; i++) {
            const FM_T *s = S + i * P + b0;
            const double wi = w ? (double)w[i] : 1.0;
#pragma omp simd
            for (int64_t b = 0; b < nb; b++)
                t[b] += wi * ((double)s[b] * (double)s[b]);
        }
        for (int64_t b = 0; b < nb; b++)
            acc[b0 + b] = (FM_T)((beta == 0 ? 0 : beta * acc[b0 + b]) + alpha * t[b]);
    }
}

/* ---- the exact Fisher of a GLM ---- */

/* The GLM's shape as the exact-Fisher kernels see it. */
typedef struct {
    const FM_T *X, *params, *w;
    int64_t n, d, K;   /* samples, features, outputs (params is K x (d + 1)) */
    int family;
    int64_t ref;       /* multinomial class left out (baseline category), or -1 */
    int64_t D, Kp;     /* features + intercept, outputs without ref */
} FN(fisher_model);

static FN(fisher_model) FN(fisher_model_of)(const FM_T *X, int64_t n, int64_t d,
                                            const FM_T *params, int64_t K, int family,
                                            const FM_T *w, int fit_intercept, int64_t ref)
{
    FN(fisher_model) m = {X, params, w, n, d, K, family, -1, d + (fit_intercept != 0), K};
    if (family == FM_MULTINOMIAL && ref >= 0 && ref < K) {
        m.ref = ref;
        m.Kp = K - 1;
    }
    return m;
}

/* For sample i: xt = x_i followed by 1 (the intercept's regressor, when D >
 * d), and v (Kp) = the probabilities of the kept classes (multinomial) or
 * the variance of each output (binomial p(1-p), gaussian 1, poisson mu).
 * eta is scratch of K doubles. Returns the sample weight. */
static double FN(row_terms)(const FN(fisher_model) *m, int64_t i, double *xt, double *eta,
                            double *v)
{
    const FM_T *x = m->X + i * m->d;
    for (int64_t j = 0; j < m->d; j++)
        xt[j] = (double)x[j];
    if (m->D > m->d)
        xt[m->d] = 1.0;
    for (int64_t k = 0; k < m->K; k++) {
        const FM_T *p = m->params + k * (m->d + 1);
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < m->d; j++)
            s += xt[j] * (double)p[j];
        eta[k] = s + (double)p[m->d];
    }
    if (m->family == FM_MULTINOMIAL) {
        double mx = eta[0], total = 0;
        for (int64_t k = 1; k < m->K; k++)
            mx = eta[k] > mx ? eta[k] : mx;
        for (int64_t k = 0; k < m->K; k++)
            total += (eta[k] = fm_exp(eta[k] - mx));
        for (int64_t k = 0, a = 0; k < m->K; k++)
            if (k != m->ref)
                v[a++] = eta[k] / total;
    } else {
        for (int64_t k = 0; k < m->K; k++) {
            const double e = eta[k];
            if (m->family == FM_BINOMIAL) {
                const double t = exp(-fabs(e));   /* p (1 - p), no overflow */
                v[k] = t / ((1.0 + t) * (1.0 + t));
            } else {
                v[k] = m->family == FM_GAUSSIAN ? 1.0 : exp(e);
            }
        }
    }
    return m->w ? (double)m->w[i] : 1.0;
}

/* Upper triangle of out (P x P, P = Kp * D) = the exact Fisher information
 * sum_i w_i M_i kron xt_i xt_i^T, as syrks over blocks of FM_FISHER_ROWS
 * rows: M_i = diag(v_i) (- v_i v_i^T for multinomial), so the Fisher is
 * the block-diagonal sum_i w_i v_ia xt_i xt_i^T (one syrk of the rows
 * sqrt(w_i v_ia) xt_i per output a, into diagonal block a) minus, for
 * multinomial, S^T S with S_i = sqrt(w_i) v_i kron xt_i (one syrk into the
 * whole matrix). Memory: the block's S (rows x P) and xt; no per-sample
 * Kronecker product is formed. The blocks are built on this thread (a few
 * per cent of the work): the syrks run on the BLAS's threads, and idle
 * OpenMP and OpenBLAS threads spinning on each other's cores cost more
 * than the build (1.7 s against 0.39 s measured). Returns 0, or -1 when out
 * of memory. */
static int FN(glm_fisher)(const FM_T *X, int64_t n, int64_t d, const FM_T *params, int64_t K,
                          int family, const FM_T *sample_weight, int fit_intercept, int64_t ref,
                          double *out)
{
    const FN(fisher_model) m = FN(fisher_model_of)(X, n, d, params, K, family, sample_weight,
                                                   fit_intercept, ref);
    const int64_t D = m.D, Kp = m.Kp, P = Kp * D, R = FM_FISHER_ROWS;
    const int full = family == FM_MULTINOMIAL;   /* the others' M_i is diagonal */
    double *XT = malloc(sizeof(double) * R * (D > 0 ? D : 1));
    double *V = malloc(sizeof(double) * R * (Kp > 0 ? Kp : 1));
    double *U = malloc(sizeof(double) * R * (D > 0 ? D : 1));
    double *S = full ? malloc(sizeof(double) * R * (P > 0 ? P : 1)) : NULL;
    double *scratch = malloc(sizeof(double) * (K + Kp));
    const int failed = !XT || !V || !U || (full && !S) || !scratch;
    if (!failed) {
        for (int64_t a = 0; a < P; a++)
            for (int64_t b = a; b < P; b++)
                out[a * P + b] = 0;
    }
    for (int64_t r0 = 0; r0 < n && !failed; r0 += R) {
        const int64_t nb = r0 + R < n ? R : n - r0;
        for (int64_t i = 0; i < nb; i++) {
            const double *xt = XT + i * D, *v = scratch + K;
            const double wi = FN(row_terms)(&m, r0 + i, XT + i * D, scratch, scratch + K);
            for (int64_t a = 0; a < Kp; a++)
                V[i * Kp + a] = wi * v[a];
            if (full) {
                const double sw = sqrt(wi);
                for (int64_t a = 0; a < Kp; a++) {
                    const double c = sw * v[a];
                    double *s = S + i * P + a * D;
#pragma omp simd
                    for (int64_t j = 0; j < D; j++)
                        s[j] = c * xt[j];
                }
            }
        }
        for (int64_t a = 0; a < Kp; a++) {
            for (int64_t i = 0; i < nb; i++) {
                const double c = sqrt(V[i * Kp + a]);
#pragma omp simd
                for (int64_t j = 0; j < D; j++)
                    U[i * D + j] = c * XT[i * D + j];
            }
            FM_SYRK_F64(U, nb, D, 1.0, 1.0, out + a * D * P + a * D, P);
        }
        if (full)
            FM_SYRK_F64(S, nb, P, -1.0, 1.0, out, P);
    }
    free(XT);
    free(V);
    free(U);
    free(S);
    free(scratch);
    return failed ? -1 : 0;
}

/* out (P) = the diagonal of the exact Fisher, or with v (Kp x D) given,
 * out (Kp x D) = F v (the Fisher-vector product, F never formed:
 * sum_i w_i (M_i u_i) kron xt_i with u_i = v xt_i). Returns 0, or -1 when
 * out of memory. */
static int FN(fisher_rows_sum)(const FN(fisher_model) *m, const double *v, double *out)
{
    const int64_t D = m->D, Kp = m->Kp, P = Kp * D, n = m->n;
    const int64_t step = fm_fisher_chunk(n), chunks = (n + step - 1) / step;
    double *partial = calloc(chunks * P > 0 ? chunks * P : 1, sizeof(double));
    int failed = !partial;
    if (!failed) {
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed) \
    num_threads(fm_team_size(n * D * m->K))
        for (int64_t c = 0; c < chunks; c++) {
            double *scratch = malloc(sizeof(double) * (D + m->K + 3 * Kp));
            if (!scratch) {
                failed = 1;
                continue;
            }
            double *xt = scratch, *eta = xt + D, *p = eta + m->K, *u = p + Kp, *t = u + Kp;
            double *acc = partial + c * P;
            const int64_t r1 = (c + 1) * step < n ? (c + 1) * step : n;
            for (int64_t i = c * step; i < r1; i++) {
                const double wi = FN(row_terms)(m, i, xt, eta, p);
                if (v) {
                    double pu = 0;
                    for (int64_t a = 0; a < Kp; a++) {
                        double s = 0;
#pragma omp simd reduction(+ : s)
                        for (int64_t j = 0; j < D; j++)
                            s += v[a * D + j] * xt[j];
                        u[a] = s;
                        pu += p[a] * s;
                    }
                    for (int64_t a = 0; a < Kp; a++)   /* t = w M u */
                        t[a] = wi * p[a] * (m->family == FM_MULTINOMIAL ? u[a] - pu : u[a]);
                } else {
                    for (int64_t a = 0; a < Kp; a++)   /* the diagonal of w M */
                        t[a] = wi * (m->family == FM_MULTINOMIAL ? p[a] - p[a] * p[a] : p[a]);
                }
                for (int64_t a = 0; a < Kp; a++) {
                    double *o = acc + a * D;
                    const double ta = t[a];
#pragma omp simd
                    for (int64_t j = 0; j < D; j++)
                        o[j] += ta * (v ? xt[j] : xt[j] * xt[j]);
                }
            }
            free(scratch);
        }
    }
    if (!failed) {
        for (int64_t q = 0; q < P; q++)
            out[q] = 0;
        for (int64_t c = 0; c < chunks; c++)   /* chunk order */
            for (int64_t q = 0; q < P; q++)
                out[q] += partial[c * P + q];
    }
    free(partial);
    return failed ? -1 : 0;
}

static int FN(glm_fisher_diag)(const FM_T *X, int64_t n, int64_t d, const FM_T *params, int64_t K,
                               int family, const FM_T *sample_weight, int fit_intercept,
                               int64_t ref, double *out)
{
    const FN(fisher_model) m = FN(fisher_model_of)(X, n, d, params, K, family, sample_weight,
                                                   fit_intercept, ref);
    return FN(fisher_rows_sum)(&m, NULL, out);
}

static int FN(glm_fisher_vp)(const FM_T *X, int64_t n, int64_t d, const FM_T *params, int64_t K,
                             int family, const FM_T *sample_weight, int fit_intercept, int64_t ref,
                             const double *v, double *out)
{
    const FN(fisher_model) m = FN(fisher_model_of)(X, n, d, params, K, family, sample_weight,
                                                   fit_intercept, ref);
    return FN(fisher_rows_sum)(&m, v, out);
}

#undef FN
#undef FM_BLAS_SYRK
#undef FM_SYRK_F64
