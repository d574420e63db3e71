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
 * The accumulator's S^T diag(w) S is a symmetric rank-k update (syrk) with
 * thousands of multiply-adds per element read: it goes to the BLAS numpy
 * uses (registered by fastmle/_blas.py, see runtime.c), whose register- and
 * cache-blocked kernels run it several times faster than plain loops;
 * without a registered BLAS, the loops in syrk() compute the same sums. The
 * exact Fisher of a GLM is summed by this file's own register-tiled loops
 * (glm_fisher), which do half the multiply-adds of the syrk formulation
 * that fastmle/_numba/fisher.py hands to the BLAS.
 */
#define FN(name) FM_CAT3(name, FM_SUF, FM_ISA)
#if FM_DOUBLE
#define FM_BLAS_SYRK fm_blas_dsyrk
#else
#define FM_BLAS_SYRK fm_blas_ssyrk
#endif

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
    const FM_T *X, *params, *offset, *w;   /* offset, w: NULL when not given */
    int64_t n, d, K;   /* samples, features, outputs (params is K x (d + 1)) */
    int family;
    int64_t ref;       /* multinomial class left out (baseline category), or -1 */
    int64_t D, Kp;     /* features + intercept, outputs without ref */
} FN(fisher_model);

static FN(fisher_model) FN(fisher_model_of)(const FM_T *X, int64_t n, int64_t d,
                                            const FM_T *params, const FM_T *offset, int64_t K,
                                            int family, const FM_T *w, int fit_intercept,
                                            int64_t ref)
{
    FN(fisher_model) m = {X, params, offset, w, n, d, K, family, -1, d + (fit_intercept != 0), K};
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
        if (m->offset)
            eta[k] += (double)m->offset[i];
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

/* G (Dp x Dp, one output pair's block) += sum_r w[r] A[r] B[r]^T for the
 * 4 x 8 tile at (j0, l0), from packed panels of the rows' xt: A (nb x 4:
 * xt_r[j0:j0+4]) and B (nb x 8: xt_r[l0:l0+8]), both contiguous, and the
 * pair's covariance terms w (nb). The tile's 32 sums stay in eight
 * 4-double vector registers while the rows stream by from L1; each row
 * costs 32 multiply-adds, two multiplies (w B), two vector loads and four
 * broadcasts. The sums run over the rows in order. */
static void FN(fisher_tile)(const double *A, const double *B, const double *w, int64_t nb,
                            int64_t Dp, int64_t j0, int64_t l0, double *G)
{
    fm_v4d c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
    for (int64_t r = 0; r < nb; r++) {
        fm_v4d b0, b1;
        memcpy(&b0, B + 8 * r, sizeof b0);
        memcpy(&b1, B + 8 * r + 4, sizeof b1);
        b0 *= w[r];
        b1 *= w[r];
        const double *a = A + 4 * r;
        c00 += a[0] * b0; c01 += a[0] * b1;
        c10 += a[1] * b0; c11 += a[1] * b1;
        c20 += a[2] * b0; c21 += a[2] * b1;
        c30 += a[3] * b0; c31 += a[3] * b1;
    }
    const fm_v4d tile[FM_TILE_J][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
    for (int jj = 0; jj < FM_TILE_J; jj++)
        for (int ll = 0; ll < FM_TILE_L; ll++)
            G[(j0 + jj) * Dp + l0 + ll] += tile[jj][ll / 4][ll % 4];
}

/* Upper triangle of out (P x P, P = Kp * D) = the exact Fisher information
 * sum_i w_i M_i kron xt_i xt_i^T. Block (a, b) is X~^T diag(w M[:, a, b]) X~,
 * symmetric, so only the pairs a <= b of outputs (npairs; the diagonal ones
 * when M_i is diagonal) are summed, each over its upper triangle: about
 * half the multiply-adds of the dense S^T S with S_i = p_i kron x_i (the
 * numpy formulation), and no per-sample product is formed. Per block of
 * FM_FISHER_ROWS rows the threads compute the rows' xt (zero-padded to Dp,
 * a multiple of the tile width) and covariance terms, pack them into the
 * panels fisher_tile streams (as a BLAS packs its operands) and run every
 * (pair, tile); row blocks are shared by the threads through fixed lanes
 * (below). (A BLAS
 * syrk per pair is slower here: its blocks are too thin, 51 columns in the
 * fit_mle benchmark, and OpenBLAS's threads spent 40% of the time
 * synchronizing.) Returns 0, or -1 when out of memory. */
static int FN(glm_fisher)(const FM_T *X, int64_t n, int64_t d, const FM_T *params,
                          const FM_T *offset, int64_t K, int family, const FM_T *sample_weight,
                          int fit_intercept, int64_t ref, double *out)
{
    const FN(fisher_model) m = FN(fisher_model_of)(X, n, d, params, offset, K, family, sample_weight,
                                                   fit_intercept, ref);
    const int64_t D = m.D, Kp = m.Kp, P = Kp * D, R = FM_FISHER_ROWS;
    const int64_t Dp = (D + FM_TILE_L - 1) / FM_TILE_L * FM_TILE_L;
    const int full = family == FM_MULTINOMIAL;   /* the others' M_i is diagonal */
    const int64_t npairs = full ? Kp * (Kp + 1) / 2 : Kp;
    /* the tiles on or above the diagonal: (j0, l0) with l0 + FM_TILE_L > j0 */
    int64_t ntiles = 0;
    for (int64_t j0 = 0; j0 < Dp; j0 += FM_TILE_J)
        ntiles += (Dp - j0 / FM_TILE_L * FM_TILE_L) / FM_TILE_L;
    int64_t *tiles = malloc(sizeof(int64_t) * 2 * (ntiles > 0 ? ntiles : 1));
    /* Row blocks go round-robin to FM_FISHER_LANES partial sums (fewer for
     * few blocks or a large G); each lane is summed by one thread, block
     * after block, with no barrier until the end, and the lanes are merged
     * in order: the result does not depend on the thread count, and a
     * thread descheduled by other load on the machine delays only its own
     * lanes (a barrier per block made two threads 30x slower than one when
     * another process held a core). */
    const int64_t blocks = (n + R - 1) / R, gsize = npairs * Dp * Dp;
    int64_t lanes = blocks < FM_FISHER_LANES ? blocks : FM_FISHER_LANES;
    while (lanes > 1 && lanes * gsize > FM_FISHER_LANE_BUDGET)
        lanes--;
    lanes = lanes > 0 ? lanes : 1;
    const int64_t njb = Dp / FM_TILE_J, nlb = Dp / FM_TILE_L;
    double *G = calloc(lanes * gsize > 0 ? lanes * gsize : 1, sizeof(double));
    int failed = !tiles || !G;
    if (!failed) {
        int64_t t = 0;
        for (int64_t j0 = 0; j0 < Dp; j0 += FM_TILE_J)
            for (int64_t l0 = j0 / FM_TILE_L * FM_TILE_L; l0 < Dp; l0 += FM_TILE_L) {
                tiles[2 * t] = j0;
                tiles[2 * t + 1] = l0;
                t++;
            }
    }
#pragma omp parallel num_threads(lanes > 1 ? fm_team_size(n * npairs * Dp * Dp / 2) : 1) \
    reduction(| : failed) if (!failed)
    {
        /* this thread's packed panels of one row block: A[jb][r] =
         * xt_r[4 jb : 4 jb + 4], B[lb][r] = xt_r[8 lb : 8 lb + 8], and the
         * covariance terms Wt[q][r] of each pair q; then xt (zero-padded to
         * Dp), eta and v */
        double *Ap = malloc(sizeof(double) * R * Dp);
        double *Bp = malloc(sizeof(double) * R * Dp);
        double *Wt = malloc(sizeof(double) * R * (npairs > 0 ? npairs : 1));
        double *scratch = calloc(Dp + K + Kp, sizeof(double));
        failed |= !Ap || !Bp || !Wt || !scratch;
#pragma omp for schedule(static, 1)
        for (int64_t lane = 0; lane < lanes; lane++) {
            for (int64_t blk = lane; blk < blocks && Ap && Bp && Wt && scratch; blk += lanes) {
                const int64_t r0 = blk * R, nb = r0 + R < n ? R : n - r0;
                double *xt = scratch, *v = scratch + Dp + K;
                for (int64_t i = 0; i < nb; i++) {
                    const double wi = FN(row_terms)(&m, r0 + i, xt, scratch + Dp, v);
                    if (full) {
                        for (int64_t a = 0, q = 0; a < Kp; a++)
                            for (int64_t b = a; b < Kp; b++)
                                Wt[q++ * R + i] = wi * ((a == b ? v[a] : 0.0) - v[a] * v[b]);
                    } else {
                        for (int64_t a = 0; a < Kp; a++)
                            Wt[a * R + i] = wi * v[a];
                    }
                    for (int64_t jb = 0; jb < njb; jb++)
                        memcpy(Ap + (jb * R + i) * FM_TILE_J, xt + jb * FM_TILE_J,
                               sizeof(double) * FM_TILE_J);
                    for (int64_t lb = 0; lb < nlb; lb++)
                        memcpy(Bp + (lb * R + i) * FM_TILE_L, xt + lb * FM_TILE_L,
                               sizeof(double) * FM_TILE_L);
                }
                for (int64_t q = 0; q < npairs; q++)
                    for (int64_t t = 0; t < ntiles; t++) {
                        const int64_t j0 = tiles[2 * t], l0 = tiles[2 * t + 1];
                        FN(fisher_tile)(Ap + j0 / FM_TILE_J * R * FM_TILE_J,
                                        Bp + l0 / FM_TILE_L * R * FM_TILE_L, Wt + q * R, nb, Dp,
                                        j0, l0, G + lane * gsize + q * Dp * Dp);
                    }
            }
        }
        free(Ap);
        free(Bp);
        free(Wt);
        free(scratch);
    }
    for (int64_t lane = 1; lane < lanes && !failed; lane++)   /* lane order */
        for (int64_t e = 0; e < gsize; e++)
            G[e] += G[lane * gsize + e];
    if (!failed) {
        for (int64_t a = 0; a < Kp; a++)
            for (int64_t b = a; b < Kp; b++) {
                const int zero = !full && a != b;
                const double *g = G + (full ? fm_tri(a, b, Kp) : a) * Dp * Dp;
                for (int64_t j = 0; j < D; j++) {
                    double *o = out + (a * D + j) * P + b * D;
                    for (int64_t l = a == b ? j : 0; l < D; l++)
                        o[l] = zero ? 0.0 : g[j <= l ? j * Dp + l : l * Dp + j];
                }
            }
    }
    free(tiles);
    free(G);
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

static int FN(glm_fisher_diag)(const FM_T *X, int64_t n, int64_t d, const FM_T *params,
                               const FM_T *offset, int64_t K, int family, const FM_T *sample_weight,
                               int fit_intercept, int64_t ref, double *out)
{
    const FN(fisher_model) m = FN(fisher_model_of)(X, n, d, params, offset, K, family, sample_weight,
                                                   fit_intercept, ref);
    return FN(fisher_rows_sum)(&m, NULL, out);
}

static int FN(glm_fisher_vp)(const FM_T *X, int64_t n, int64_t d, const FM_T *params,
                             const FM_T *offset, int64_t K, int family, const FM_T *sample_weight,
                             int fit_intercept, int64_t ref, const double *v, double *out)
{
    const FN(fisher_model) m = FN(fisher_model_of)(X, n, d, params, offset, K, family, sample_weight,
                                                   fit_intercept, ref);
    return FN(fisher_rows_sum)(&m, v, out);
}

#undef FN
#undef FM_BLAS_SYRK
