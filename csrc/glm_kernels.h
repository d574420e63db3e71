/*
 * Body of the "glm" family (likelihood families' loss, gradient and
 * prediction; one minibatch SGD epoch), instantiated by glm.c through
 * fm_instantiate.h once per (element type, instruction set).
 *
 * Mirrors fastmle/_numba/glm.py function by function, and the specification
 * fastmle/reference/glm.py (layout: params is (K, d + 1), one row per output,
 * the intercept in column d). The linear predictor and the batch gradient are
 * accumulated in the element type, as BLAS does; losses in double. An SGD
 * epoch is sequential; the full-batch kernels cut the rows into chunks whose
 * size depends only on n and merge the chunks' partial sums in chunk order,
 * so results do not depend on the thread count.
 */
#define FN(name) FM_CAT3(name, FM_SUF, FM_ISA)

/* The batch's two products, eta = X_b W^T and grad = G^T X_b, are small
 * matrix products (32 x 100 x 10 in the benchmark) repeated thousands of
 * times per epoch. They are written with gcc's vector extensions, one
 * vector the width of the instruction set's registers (FM_GLM_VB bytes), and
 * blocked so that each vector loaded feeds several multiply-adds: #pragma omp
 * simd left gcc reloading x or w from memory for every multiply-add.
 * Each element's arithmetic is fixed by d alone, whichever block, row range
 * or column range computes it: threads that split the batch by rows or
 * columns get the bits of one thread doing all. */
#if defined(__AVX512F__)
#define FM_GLM_VB 64
#define FM_GLM_FR 4     /* rows per forward block: 16 sums in registers */
#define FM_GLM_BJ 4     /* vectors per backward block: 16 sums */
#elif defined(__AVX2__)
#define FM_GLM_VB 32
#define FM_GLM_FR 3     /* 12 sums + 4 w + x: 16 registers (4 rows would spill) */
#define FM_GLM_BJ 3     /* 12 sums + 3 x + G */
#else
#define FM_GLM_VB 16
#define FM_GLM_FR 2
#define FM_GLM_BJ 2
#endif
#define FM_GLM_L (FM_GLM_VB / (int64_t)sizeof(FM_T))
/* glm_v: a register of elements; glm_vu: the same type for loads and stores
 * through element pointers (unaligned, may alias them); glm_m: the lane mask
 * of a glm_v; glm_h, glm_hu: half vectors, for a half-vector column tail. */
typedef FM_T FN(glm_v) __attribute__((vector_size(FM_GLM_VB)));
typedef FM_T FN(glm_vu) __attribute__((vector_size(FM_GLM_VB), aligned(sizeof(FM_T)), may_alias));
#if FM_DOUBLE
typedef int64_t FN(glm_m) __attribute__((vector_size(FM_GLM_VB)));
#else
typedef int32_t FN(glm_m) __attribute__((vector_size(FM_GLM_VB)));
#endif
#define FM_GLM_LOAD(p) (*(const FN(glm_vu) *)(p))
/* half vectors of more than one element (FM_DOUBLE ? 8 : 4 is sizeof(FM_T), for #if) */
#define FM_GLM_HALF (FM_GLM_VB / 2 > (FM_DOUBLE ? 8 : 4))
#if FM_GLM_HALF
typedef FM_T FN(glm_h) __attribute__((vector_size(FM_GLM_VB / 2)));
typedef FM_T FN(glm_hu) __attribute__((vector_size(FM_GLM_VB / 2), aligned(sizeof(FM_T)), may_alias));
#endif
/* a * b + c rounded as the vector loops' contracted a * b + c: fused where
 * the instruction set has FMA */
#if defined(__FMA__) && FM_DOUBLE
#define FM_GLM_FMA(a, b, c) __builtin_fma(a, b, c)
#elif defined(__FMA__)
#define FM_GLM_FMA(a, b, c) __builtin_fmaf(a, b, c)
#else
#define FM_GLM_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* The sum of a vector's lanes, halves folded onto halves: the same tree for
 * every dot product. */
static inline FM_T FN(glm_hsum)(FN(glm_v) a)
{
    FM_T t[FM_GLM_L];
    memcpy(t, &a, sizeof a);
    for (int64_t half = FM_GLM_L / 2; half > 0; half /= 2)
        for (int64_t i = 0; i < half; i++)
            t[i] += t[i + half];
    return t[0];
}

/* Ask for the cache lines of X[rows] (the next batch's rows: a random gather
 * from memory would otherwise wait for each row in turn), into L2 only when
 * l2 (locality 2: prefetcht1). The SGD epoch's next batch goes to L2: into L1
 * (prefetcht0) its 26 KB of rows cost more than they saved, likely competing
 * with the batch's own rows for L1 (Zen 4, 200000 x 100 float64, 10 classes,
 * batch 32, one thread: 53 ms an epoch against 42 in random order, 51 against
 * 32, as fast as X in cache, in sequential order). Rows about to be read go
 * to L1 (the full-batch loss and gradient took 20% longer from L2).
 * Not inlined: a test of l2 in forward's loop could let gcc split it. */
static __attribute__((noinline)) void FN(prefetch_rows)(const FM_T *X, int64_t d, const int64_t *rows,
                                                        int64_t nb, int l2)
{
    for (int64_t r = 0; r < nb; r++)
        for (int64_t j = 0; j < d; j += 64 / (int64_t)sizeof(FM_T)) {
            if (l2)
                __builtin_prefetch(X + rows[r] * d + j, 0, 2);
            else
                __builtin_prefetch(X + rows[r] * d + j);
        }
}

/* e[r * ldk + c] = x[r] . w[c] + w[c][d] for R rows and C outputs (d >= L):
 * R x C vector sums over the whole vectors of the rows, then one vector
 * ending at d whose lanes already summed are masked to zero (mask), so that
 * no dot product has a scalar tail. */
static inline __attribute__((always_inline)) void FN(fwd_block)(const FM_T *const *x, const FM_T *const *w,
                                                                 int R, int C, int64_t d, FN(glm_m) mask,
                                                                 FM_T *e, int64_t ldk)
{
    FN(glm_v) acc[FM_GLM_FR][4], wv[4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = (FN(glm_v)){0};
    int64_t j = 0;
    for (; j + FM_GLM_L <= d; j += FM_GLM_L) {
        for (int c = 0; c < C; c++)
            wv[c] = FM_GLM_LOAD(w[c] + j);
        for (int r = 0; r < R; r++) {
            const FN(glm_v) xv = FM_GLM_LOAD(x[r] + j);
            for (int c = 0; c < C; c++)
                acc[r][c] += xv * wv[c];
        }
    }
    if (j < d) {
        j = d - FM_GLM_L;
        for (int c = 0; c < C; c++)
            wv[c] = (FN(glm_v))((FN(glm_m))FM_GLM_LOAD(w[c] + j) & mask);
        for (int r = 0; r < R; r++) {
            const FN(glm_v) xv = (FN(glm_v))((FN(glm_m))FM_GLM_LOAD(x[r] + j) & mask);
            for (int c = 0; c < C; c++)
                acc[r][c] += xv * wv[c];
        }
    }
#if FM_DOUBLE && (FM_GLM_VB == 64 || FM_GLM_VB == 32)
    if (C == 4) {   /* the four sums of a row together: glm_hsum's tree, lane-parallel */
        typedef int64_t FN(glm_i) __attribute__((vector_size(FM_GLM_VB)));
        for (int r = 0; r < R; r++) {
            FN(glm_v) *a = acc[r];
#if FM_GLM_VB == 64
            const FN(glm_v) u = __builtin_shuffle(a[0], a[1], (FN(glm_i)){0, 1, 2, 3, 8, 9, 10, 11}) +
                                __builtin_shuffle(a[0], a[1], (FN(glm_i)){4, 5, 6, 7, 12, 13, 14, 15});
            const FN(glm_v) v = __builtin_shuffle(a[2], a[3], (FN(glm_i)){0, 1, 2, 3, 8, 9, 10, 11}) +
                                __builtin_shuffle(a[2], a[3], (FN(glm_i)){4, 5, 6, 7, 12, 13, 14, 15});
            const FN(glm_v) p = __builtin_shuffle(u, v, (FN(glm_i)){0, 1, 4, 5, 8, 9, 12, 13}) +
                                __builtin_shuffle(u, v, (FN(glm_i)){2, 3, 6, 7, 10, 11, 14, 15});
            const FN(glm_v) t = __builtin_shuffle(p, (FN(glm_i)){0, 2, 4, 6, 0, 2, 4, 6}) +
                                __builtin_shuffle(p, (FN(glm_i)){1, 3, 5, 7, 1, 3, 5, 7});
#else
            const FN(glm_v) u = __builtin_shuffle(a[0], a[1], (FN(glm_i)){0, 1, 4, 5}) +
                                __builtin_shuffle(a[0], a[1], (FN(glm_i)){2, 3, 6, 7});
            const FN(glm_v) v = __builtin_shuffle(a[2], a[3], (FN(glm_i)){0, 1, 4, 5}) +
                                __builtin_shuffle(a[2], a[3], (FN(glm_i)){2, 3, 6, 7});
            const FN(glm_v) t = __builtin_shuffle(u, v, (FN(glm_i)){0, 2, 4, 6}) +
                                __builtin_shuffle(u, v, (FN(glm_i)){1, 3, 5, 7});
#endif
            for (int c = 0; c < 4; c++)
                e[r * ldk + c] = t[c] + w[c][d];
        }
        return;
    }
#endif
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            e[r * ldk + c] = FN(glm_hsum)(acc[r][c]) + w[c][d];
}

/* The outputs of R rows, in blocks of 4, 2, 1 outputs. */
static inline __attribute__((always_inline)) void FN(fwd_rows)(const FM_T *const *x, int R, int64_t d,
                                                                const FM_T *params, int64_t K,
                                                                FN(glm_m) mask, FM_T *e, int64_t ldk)
{
    const int64_t ld = d + 1;
    int64_t k = 0;
    for (; k + 3 < K; k += 4) {
        const FM_T *w[4] = {params + k * ld, params + (k + 1) * ld, params + (k + 2) * ld, params + (k + 3) * ld};
        FN(fwd_block)(x, w, R, 4, d, mask, e + k, ldk);
    }
    if (k + 1 < K) {
        const FM_T *w[2] = {params + k * ld, params + (k + 1) * ld};
        FN(fwd_block)(x, w, R, 2, d, mask, e + k, ldk);
        k += 2;
    }
    if (k < K) {
        const FM_T *w[1] = {params + k * ld};
        FN(fwd_block)(x, w, R, 1, d, mask, e + k, ldk);
    }
}

/* eta[r * ldk + k] = X[rows[r]] . params[k, :d] + params[k, d] for the K
 * outputs of params (ldk >= K: eta may be a column block of a wider array),
 * in blocks of FM_GLM_FR rows, then row by row. With each block of rows, the
 * cache lines of the same rows of fetch_rows[:nb] are requested (see
 * prefetch_rows): the SGD epoch passes the next batch's rows, the other
 * callers rows itself. Unconditionally: a test of r inside the loop let gcc
 * split it into two loops, compiled with different rounding. Rows shorter
 * than a vector take a sequential scalar sum. */
static void FN(forward)(const FM_T *X, int64_t d, const int64_t *rows, int64_t nb,
                        const FM_T *params, int64_t K, FM_T *eta, int64_t ldk,
                        const int64_t *fetch_rows)
{
    const int64_t ld = d + 1;
    const int l2 = fetch_rows != rows;   /* another batch's rows */
    if (d < FM_GLM_L) {
        FN(prefetch_rows)(X, d, fetch_rows, nb, l2);   /* rows under a cache line: few requests */
        for (int64_t r = 0; r < nb; r++)
            for (int64_t k = 0; k < K; k++) {
                const FM_T *x = X + rows[r] * d, *w = params + k * ld;
                FM_T s = 0;
                for (int64_t j = 0; j < d; j++)
                    s = FM_GLM_FMA(x[j], w[j], s);
                eta[r * ldk + k] = s + w[d];
            }
        return;
    }
    FN(glm_m) mask;   /* the lanes of the last vector, ending at d, not yet summed */
    for (int64_t i = 0; i < FM_GLM_L; i++)
        mask[i] = i >= FM_GLM_L - d % FM_GLM_L ? -1 : 0;
    int64_t r = 0;
    for (; r + FM_GLM_FR <= nb; r += FM_GLM_FR) {
        FN(prefetch_rows)(X, d, fetch_rows + r, FM_GLM_FR, l2);
        const FM_T *x[FM_GLM_FR];
        for (int q = 0; q < FM_GLM_FR; q++)
            x[q] = X + rows[r + q] * d;
        FN(fwd_rows)(x, FM_GLM_FR, d, params, K, mask, eta + r * ldk, ldk);
    }
    for (; r < nb; r++) {
        FN(prefetch_rows)(X, d, fetch_rows + r, 1, l2);
        const FM_T *x[1] = {X + rows[r] * d};
        FN(fwd_rows)(x, 1, d, params, K, mask, eta + r * ldk, ldk);
    }
}

static inline double FN(sigmoid)(double v)
{
    double e = exp(-fabs(v));
    return v >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* t = exp(e - max e) for one row of K linear predictors, in double with
 * the kernels' exponential; returns sum t and sets *max. NaN is skipped by
 * the max and caught by the sum. */
static inline double FN(softmax_terms)(const FM_T *e, int64_t K, double *t, double *max)
{
    double m = e[0], s = 0;
    for (int64_t k = 1; k < K; k++)
        m = e[k] > m ? e[k] : m;
#pragma omp simd
    for (int64_t k = 0; k < K; k++)
        t[k] = fm_exp((double)e[k] - m);
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < K; k++)
        s += t[k];
    *max = m;
    return s;
}

/* Rows per group in dloss_multinomial, and the size of its scratch t in
 * units of K doubles. */
#define FM_GLM_LOSS_ROWS 16

/* Whether the n stored values g are finite: an overflowed loss gradient
 * stops the SGD epoch (the batch makes no update). */
static inline int FN(all_finite)(const FM_T *g, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(g[i]))
            return 0;
    return 1;
}

/* dloss for the multinomial family, in groups of FM_GLM_LOSS_ROWS rows: a
 * group's exponentials exp(e - max e) run as one flat loop of rows x K
 * terms, where one loop per row would leave a scalar remainder in every row
 * (two terms of ten, computed one at a time). Unweighted, the group's log
 * sum exp terms take one log of the product of its sums (each in [1, K]:
 * no overflow below K = 2^64), where a log per row cost 8 ns (perf). */
static double FN(dloss_multinomial)(const FM_T *eta, int64_t nb, int64_t K, const int64_t *labels,
                                    const FM_T *sample_weight, FM_T *G, double *t)
{
    double total = 0, max[FM_GLM_LOSS_ROWS];
    for (int64_t r0 = 0; r0 < nb; r0 += FM_GLM_LOSS_ROWS) {
        double product = 1;   /* of the unweighted rows' sums */
        const int64_t rows = r0 + FM_GLM_LOSS_ROWS < nb ? FM_GLM_LOSS_ROWS : nb - r0;
        for (int64_t r = 0; r < rows; r++) {  /* NaN is skipped by the max, caught by the sum */
            const FM_T *e = eta + (r0 + r) * K;
            double m = e[0];
            for (int64_t k = 1; k < K; k++)
                m = e[k] > m ? e[k] : m;
            max[r] = m;
            for (int64_t k = 0; k < K; k++)
                t[r * K + k] = (double)e[k] - m;
        }
#pragma omp simd
        for (int64_t i = 0; i < rows * K; i++)
            t[i] = fm_exp(t[i]);
        for (int64_t r = 0; r < rows; r++) {
            const double w = sample_weight ? (double)sample_weight[r0 + r] : 1.0;
            const double *tr = t + r * K;
            const FM_T *e = eta + (r0 + r) * K;
            FM_T *g = G + (r0 + r) * K;
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += tr[k];
            const int64_t y = labels[r0 + r];
            if (sample_weight)
                total += w * (max[r] + log(s) - (double)e[y]);
            else {
                total += max[r] - (double)e[y];
                product *= s;
            }
            const double ws = w / s;
            for (int64_t k = 0; k < K; k++)
                g[k] = (FM_T)(ws * tr[k]);
            g[y] = (FM_T)((double)g[y] - w);
        }
        if (!sample_weight)
            total += log(product);
    }
    return total;
}

/* G[r] = w * d loss / d eta for nb samples whose labels (or targets) and
 * weights are the first nb of those arrays, every row written even where
 * not finite (the full-batch gradient sums them all, as the reference
 * does); returns sum w * loss. t: scratch of FM_GLM_LOSS_ROWS * K. */
static double FN(dloss)(const FM_T *eta, int64_t nb, int64_t K, const int64_t *labels,
                        const FM_T *targets, const FM_T *sample_weight, int family, FM_T *G,
                        double *t)
{
    if (family == FM_MULTINOMIAL)
        return FN(dloss_multinomial)(eta, nb, K, labels, sample_weight, G, t);
    double total = 0;
    for (int64_t r = 0; r < nb; r++) {
        const double w = sample_weight ? (double)sample_weight[r] : 1.0;
        const FM_T *e = eta + r * K;
        FM_T *g = G + r * K;
        double li = 0;
        for (int64_t k = 0; k < K; k++) {
            const double v = e[k], y = targets[r * K + k];
            double gk;
            if (family == FM_BINOMIAL) {
                li += fmax(v, 0.0) + log1p(exp(-fabs(v))) - y * v;
                gk = FN(sigmoid)(v) - y;
            } else if (family == FM_GAUSSIAN) {
                gk = v - y;
                li += 0.5 * gk * gk;
            } else {
                const double mu = exp(v);
                li += mu - y * v;
                gk = mu - y;
            }
            g[k] = (FM_T)(w * gk);
        }
        total += w * li;
    }
    return total;
}

/* grad[c * ld + j + v * LANES] (JV vectors of type VT from column j, C
 * outputs) += the sum over the nb rows of g[r * ldk + c] * x_r, the sums
 * kept in registers across the rows. Only for bwd_cols: it reads that
 * function's X, d, rows, nb, g, ldk, ld, j and grad. */
#define FM_GLM_BWD_BLOCK(VT, VTU, LANES, C, JV)                                 \
    do {                                                                        \
        VT acc_[4][FM_GLM_BJ];                                                  \
        for (int c_ = 0; c_ < (C); c_++)                                        \
            for (int v_ = 0; v_ < (JV); v_++)                                   \
                acc_[c_][v_] = *(const VTU *)(grad + c_ * ld + j + v_ * (LANES)); \
        for (int64_t r_ = 0; r_ < nb; r_++) {                                   \
            const FM_T *x_ = X + rows[r_] * d + j;                              \
            VT xv_[FM_GLM_BJ];                                                  \
            for (int v_ = 0; v_ < (JV); v_++)                                   \
                xv_[v_] = *(const VTU *)(x_ + v_ * (LANES));                    \
            for (int c_ = 0; c_ < (C); c_++) {                                  \
                const FM_T a_ = g[r_ * ldk + c_];                               \
                for (int v_ = 0; v_ < (JV); v_++)                               \
                    acc_[c_][v_] += a_ * xv_[v_];                               \
            }                                                                   \
        }                                                                       \
        for (int c_ = 0; c_ < (C); c_++)                                        \
            for (int v_ = 0; v_ < (JV); v_++)                                   \
                *(VTU *)(grad + c_ * ld + j + v_ * (LANES)) = acc_[c_][v_];    \
    } while (0)

/* Columns [0, d) of C outputs: blocks of FM_GLM_BJ vectors, single
 * vectors, a half vector, then single columns, each element one
 * multiply-add per row, fused as gcc fuses the vectors' (a scalar loop
 * left to gcc was vectorized over the rows, unfused). */
static inline __attribute__((always_inline)) void FN(bwd_cols)(const FM_T *X, int64_t d,
                                                                const int64_t *rows, int64_t nb,
                                                                const FM_T *g, int64_t ldk, int C,
                                                                int64_t ld, FM_T *grad)
{
    int64_t j = 0;
    for (; j + FM_GLM_BJ * FM_GLM_L <= d; j += FM_GLM_BJ * FM_GLM_L)
        FM_GLM_BWD_BLOCK(FN(glm_v), FN(glm_vu), FM_GLM_L, C, FM_GLM_BJ);
    for (; j + FM_GLM_L <= d; j += FM_GLM_L)
        FM_GLM_BWD_BLOCK(FN(glm_v), FN(glm_vu), FM_GLM_L, C, 1);
#if FM_GLM_HALF
    if (j + FM_GLM_L / 2 <= d) {
        FM_GLM_BWD_BLOCK(FN(glm_h), FN(glm_hu), FM_GLM_L / 2, C, 1);
        j += FM_GLM_L / 2;
    }
#endif
    for (; j < d; j++)
        for (int c = 0; c < C; c++) {
            FM_T s = grad[c * ld + j];
            for (int64_t r = 0; r < nb; r++)
                s = FM_GLM_FMA(g[r * ldk + c], X[rows[r] * d + j], s);
            grad[c * ld + j] = s;
        }
}

/* grad += [G^T X[rows], the column sums of G] (column d, the intercept's,
 * is the sums), for the K columns of G (row stride ldk >= K) and the K rows
 * of grad (row stride d + 1). Each element is one multiply-add per row, in
 * row order, in a vector lane or a scalar alike: the same arithmetic in
 * whichever block of outputs an element falls. Outputs in blocks of 4, 2, 1. */
static void FN(backward)(const FM_T *X, int64_t d, const int64_t *rows, int64_t nb, const FM_T *G,
                         int64_t K, int64_t ldk, FM_T *grad)
{
    const int64_t ld = d + 1;
    int64_t k = 0;
    for (; k + 3 < K; k += 4)
        FN(bwd_cols)(X, d, rows, nb, G + k, ldk, 4, ld, grad + k * ld);
    if (k + 1 < K) {
        FN(bwd_cols)(X, d, rows, nb, G + k, ldk, 2, ld, grad + k * ld);
        k += 2;
    }
    if (k < K)
        FN(bwd_cols)(X, d, rows, nb, G + k, ldk, 1, ld, grad + k * ld);
    for (int64_t r = 0; r < nb; r++)
        for (k = 0; k < K; k++)
            grad[k * ld + d] += G[r * ldk + k];
}

/* The same two products for X in compressed sparse rows (data, indices,
 * indptr): eta[r * K + k] = X[rows[r]] . params[k, :d] + params[k, d], and
 * grad += G^T X[rows] (intercept column: the sums of G), touching only the
 * features present in the rows. */
static void FN(forward_csr)(const FM_T *data, const int32_t *indices, const int64_t *indptr,
                            int64_t d, const int64_t *rows, int64_t nb, const FM_T *params,
                            int64_t K, FM_T *eta)
{
    const int64_t ld = d + 1;
    for (int64_t r = 0; r < nb; r++) {
        const int64_t i = rows[r];
        FM_T *e = eta + r * K;
        for (int64_t k = 0; k < K; k++)
            e[k] = params[k * ld + d];
        for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) {
            const FM_T v = data[p];
            const FM_T *w = params + indices[p];
            for (int64_t k = 0; k < K; k++)
                e[k] += v * w[k * ld];
        }
    }
}

static void FN(backward_csr)(const FM_T *data, const int32_t *indices, const int64_t *indptr,
                             int64_t d, const int64_t *rows, int64_t nb, const FM_T *G, int64_t K,
                             FM_T *grad)
{
    const int64_t ld = d + 1;
    for (int64_t r = 0; r < nb; r++) {
        const int64_t i = rows[r];
        const FM_T *g = G + r * K;
        for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) {
            const FM_T v = data[p];
            FM_T *y = grad + indices[p];
            for (int64_t k = 0; k < K; k++)
                y[k * ld] += v * g[k];
        }
        for (int64_t k = 0; k < K; k++)
            grad[k * ld + d] += g[k];
    }
}

/* The design matrix of the full-batch kernels: dense rows X (n, d), or CSR
 * when data is not NULL. */
typedef struct {
    const FM_T *X, *data;
    const int32_t *indices;
    const int64_t *indptr;
    int64_t d;
} FN(design);

static void FN(forward_any)(const FN(design) *M, const int64_t *rows, int64_t nb,
                            const FM_T *params, int64_t K, FM_T *eta)
{
    if (M->data)
        FN(forward_csr)(M->data, M->indices, M->indptr, M->d, rows, nb, params, K, eta);
    else
        FN(forward)(M->X, M->d, rows, nb, params, K, eta, K, rows);
}

static void FN(backward_any)(const FN(design) *M, const int64_t *rows, int64_t nb,
                             const FM_T *G, int64_t K, FM_T *grad)
{
    if (M->data)
        FN(backward_csr)(M->data, M->indices, M->indptr, M->d, rows, nb, G, K, grad);
    else
        FN(backward)(M->X, M->d, rows, nb, G, K, K, grad);
}

/* The epoch's labels, targets and weights in the order of perm, gathered in
 * one pass before the batches: read inside the batch loop, each would be a
 * cache miss the loss waits for (measured: over half of the loss time). The
 * gathered copies go to bufs (NULL where the array is NULL). */
static void FN(gather_samples)(const int64_t *perm, int64_t m, int64_t K, const int64_t *labels,
                               const FM_T *targets, const FM_T *sample_weight,
                               int64_t *labels_p, FM_T *targets_p, FM_T *weight_p)
{
    for (int64_t r = 0; r < m; r++) {
        const int64_t i = perm[r];
        if (labels)
            labels_p[r] = labels[i];
        else
            memcpy(targets_p + r * K, targets + i * K, sizeof(FM_T) * K);
        if (sample_weight)
            weight_p[r] = sample_weight[i];
    }
}

/* eta[r * K + k] += offset[r0 + r] for the nb rows from r0 (offset NULL:
 * none), in the element type: the linear predictor X b + b0 + offset. */
static inline void FN(add_offset)(const FM_T *offset, int64_t r0, int64_t nb, int64_t K, FM_T *eta)
{
    if (!offset)
        return;
    for (int64_t r = 0; r < nb; r++)
        for (int64_t k = 0; k < K; k++)
            eta[r * K + k] += offset[r0 + r];
}

/* Rows per chunk of the full-batch kernels: depends on n and the number of
 * parameters P only (never on the thread count). At most 64 chunks, fewer
 * when their partial gradients (chunks x P) would pass 4M elements. */
static inline int64_t FN(chunk_rows)(int64_t n, int64_t P)
{
    int64_t max_chunks = ((int64_t)1 << 22) / (P > 0 ? P : 1);
    max_chunks = max_chunks < 1 ? 1 : (max_chunks > 64 ? 64 : max_chunks);
    const int64_t c = (n + max_chunks - 1) / max_chunks;
    return c > 256 ? c : 256;
}

/* Returns 0, or -1 when out of memory. */
static int FN(loss_grad_any)(const FN(design) *M, int64_t n, const int64_t *labels,
                             const FM_T *targets, const FM_T *sample_weight, const FM_T *params,
                             const FM_T *offset, int64_t K, int family, double *loss, FM_T *grad)
{
    const int64_t P = K * (M->d + 1), step = FN(chunk_rows)(n, P), chunks = (n + step - 1) / step;
    double *losses = calloc(chunks > 0 ? chunks : 1, sizeof(double));
    FM_T *partial = grad ? calloc(chunks * P > 0 ? chunks * P : 1, sizeof(FM_T)) : NULL;
    int failed = !losses || (grad && !partial);
    if (!failed) {
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed) \
    num_threads(fm_team_size(n * (M->data ? M->indptr[n] / (n > 0 ? n : 1) + 1 : M->d) * K))
        for (int64_t c = 0; c < chunks; c++) {
            const int64_t r0 = c * step, nb = (r0 + step < n ? r0 + step : n) - r0;
            int64_t *rows = malloc(sizeof(int64_t) * nb);
            FM_T *eta = malloc(sizeof(FM_T) * 2 * nb * K);
            double *t = malloc(sizeof(double) * FM_GLM_LOSS_ROWS * K);
            if (!rows || !eta || !t) {
                failed = 1;
            } else {
                for (int64_t r = 0; r < nb; r++)
                    rows[r] = r0 + r;
                FN(forward_any)(M, rows, nb, params, K, eta);
                FN(add_offset)(offset, r0, nb, K, eta);
                losses[c] = FN(dloss)(eta, nb, K, labels ? labels + r0 : NULL,
                                      targets ? targets + r0 * K : NULL,
                                      sample_weight ? sample_weight + r0 : NULL, family,
                                      eta + nb * K, t);
                if (grad)
                    FN(backward_any)(M, rows, nb, eta + nb * K, K, partial + c * P);
            }
            free(rows);
            free(eta);
            free(t);
        }
    }
    if (!failed) {
        double total = 0;
        for (int64_t c = 0; c < chunks; c++)  /* chunk order */
            total += losses[c];
        loss[0] = total;
        if (grad) {
            for (int64_t p = 0; p < P; p++)
                grad[p] = 0;
            for (int64_t c = 0; c < chunks; c++)
                for (int64_t p = 0; p < P; p++)
                    grad[p] += partial[c * P + p];
        }
    }
    free(losses);
    free(partial);
    return failed ? -1 : 0;
}

/* Returns 0, or -1 when out of memory. */
static int FN(predict_any)(const FN(design) *M, int64_t n, const FM_T *params,
                           const FM_T *offset, int64_t K, int family, FM_T *out)
{
    const int64_t step = FN(chunk_rows)(n, K * (M->d + 1)), chunks = (n + step - 1) / step;
    int failed = 0;
#pragma omp parallel for schedule(static) reduction(| : failed) \
    num_threads(fm_team_size(n * (M->data ? M->indptr[n] / (n > 0 ? n : 1) + 1 : M->d) * K))
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t r0 = c * step, nb = (r0 + step < n ? r0 + step : n) - r0;
        int64_t *rows = malloc(sizeof(int64_t) * (nb > 0 ? nb : 1));
        double *t = malloc(sizeof(double) * K);
        if (!rows || !t) {
            free(rows);
            free(t);
            failed = 1;
            continue;
        }
        for (int64_t r = 0; r < nb; r++)
            rows[r] = r0 + r;
        FM_T *eta = out + r0 * K;
        FN(forward_any)(M, rows, nb, params, K, eta);
        FN(add_offset)(offset, r0, nb, K, eta);
        for (int64_t r = 0; r < nb; r++) {
            FM_T *e = eta + r * K;
            if (family == FM_MULTINOMIAL) {
                double m;
                const double s = FN(softmax_terms)(e, K, t, &m);
                for (int64_t k = 0; k < K; k++)
                    e[k] = (FM_T)(t[k] / s);
            } else if (family == FM_BINOMIAL) {
                for (int64_t k = 0; k < K; k++)
                    e[k] = (FM_T)FN(sigmoid)(e[k]);
            } else if (family == FM_POISSON) {
                for (int64_t k = 0; k < K; k++)
                    e[k] = (FM_T)exp((double)e[k]);
            }
        }
        free(rows);
        free(t);
    }
    return failed ? -1 : 0;
}

static int FN(glm_loss_grad)(const FM_T *X, int64_t n, int64_t d, const int64_t *labels,
                             const FM_T *targets, const FM_T *sample_weight, const FM_T *params,
                             const FM_T *offset, int64_t K, int family, double *loss, FM_T *grad)
{
    const FN(design) M = {X, NULL, NULL, NULL, d};
    return FN(loss_grad_any)(&M, n, labels, targets, sample_weight, params, offset, K, family, loss,
                             grad);
}

static int FN(glm_loss_grad_csr)(const FM_T *data, const int32_t *indices, const int64_t *indptr,
                                 int64_t n, int64_t d, const int64_t *labels, const FM_T *targets,
                                 const FM_T *sample_weight, const FM_T *params, const FM_T *offset,
                                 int64_t K, int family, double *loss, FM_T *grad)
{
    const FN(design) M = {NULL, data, indices, indptr, d};
    return FN(loss_grad_any)(&M, n, labels, targets, sample_weight, params, offset, K, family, loss,
                             grad);
}

static int FN(glm_predict)(const FM_T *X, int64_t n, int64_t d, const FM_T *params,
                           const FM_T *offset, int64_t K, int family, FM_T *out)
{
    const FN(design) M = {X, NULL, NULL, NULL, d};
    return FN(predict_any)(&M, n, params, offset, K, family, out);
}

static int FN(glm_predict_csr)(const FM_T *data, const int32_t *indices, const int64_t *indptr,
                               int64_t n, int64_t d, const FM_T *params, const FM_T *offset,
                               int64_t K, int family, FM_T *out)
{
    const FN(design) M = {NULL, data, indices, indptr, d};
    return FN(predict_any)(&M, n, params, offset, K, family, out);
}

/* One read of a dense X before training (see reference.glm.scan_rows):
 * out[0] = the largest squared row norm over the rows of finite elements,
 * out[1] = the number of rows holding NaN or infinity. A row's sum is
 * vector lanes of double, one thread's; only a row whose sum is not finite
 * is read again, element by element, to tell NaN or infinity from squares
 * of finite values that overflowed. The largest sum and the count do not
 * depend on the thread count. */
static void FN(scan_rows)(const FM_T *X, int64_t n, int64_t d, double *out)
{
    double largest = 0.0;
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(max : largest) reduction(+ : bad) \
    num_threads(fm_team_size(n * d))
    for (int64_t i = 0; i < n; i++) {
        const FM_T *x = X + i * d;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < d; j++)
            s += (double)x[j] * (double)x[j];
        if (!isfinite(s)) {
            int64_t j = 0;
            while (j < d && isfinite(x[j]))
                j++;
            if (j < d) {
                bad++;
                continue;
            }
        }
        largest = s > largest ? s : largest;
    }
    out[0] = largest;
    out[1] = (double)bad;
}

/* One step on the parameters in columns [0, cols) of the K rows (see
 * reference.glm.sgd_epoch for the order); column d is the intercept's,
 * moved when cols = d + 1 (cols = d holds it fixed). The arithmetic is in
 * double, each result rounded once when stored, and no multiply-add is
 * fused: gcc vectorizes the loop, peels iterations for alignment (so which
 * elements take the scalar code depends on where the row starts) and fused
 * them differently in the two, which once made threads that split the
 * columns disagree in the last bit. */
__attribute__((optimize("fp-contract=off")))
static void FN(update)(FM_T *params, const FM_T *grad, int64_t K, int64_t d, int64_t cols,
                       double scale, double lr, double l2, double l1, double momentum, int nesterov,
                       FM_T *velocity, FM_T *avg, double avg_weight)
{
    const int64_t ld = d + 1;
    for (int64_t k = 0; k < K; k++) {
        FM_T *pk = params + k * ld;
        const FM_T *gk = grad + k * ld;
        if (!velocity && !(l1 > 0) && !(avg_weight > 0)) {  /* plain SGD: vectorized */
#pragma omp simd
            for (int64_t j = 0; j < d; j++)
                pk[j] = (FM_T)(pk[j] - lr * (gk[j] * scale + l2 * pk[j]));
            if (cols > d)
                pk[d] = (FM_T)(pk[d] - lr * (gk[d] * scale));
            continue;
        }
        for (int64_t j = 0; j < cols; j++) {
            const int64_t q = k * ld + j;
            double p = params[q];
            double g = grad[q] * scale + (j < d ? l2 : 0.0) * p;
            if (velocity) {
                const double v = momentum * velocity[q] + g;
                velocity[q] = (FM_T)v;
                g = nesterov ? g + momentum * v : v;
            }
            p = p - lr * g;
            if (l1 > 0 && j < d) {
                const double mag = fmax(fabs(p) - lr * l1, 0.0);
                p = p > 0 ? mag : (p < 0 ? -mag : p);
            }
            params[q] = (FM_T)p;
            if (avg_weight > 0)
                avg[q] = (FM_T)(avg[q] + (p - avg[q]) * avg_weight);
        }
    }
}

/* Threads share each batch by outputs: thread t of T owns a contiguous
 * range of the K rows of params (K / T of them, give or take one) and does
 * their forward product, gradient and update. A thread reads and writes only
 * its own rows of params, and the threads exchange only the batch's linear
 * predictors: one barrier per batch.
 * Cutting the batch by rows instead made threads swap partial gradients and
 * new parameters, two P-sized transfers between cores per batch: on
 * 200000 x 100 float64, 10 classes, batch 32, that 2-thread epoch took
 * 120-125 ms against 90 ms on one thread, when the two vCPUs sat far apart.
 * Until session 14 the outputs went in blocks of 4, and the 2 of 10 classes
 * left over were shared by rows and features at the cost of a second
 * barrier per batch; 5 outputs per thread (4 x 4 and 4 x 1 blocks of the
 * products) with one barrier took the 2-thread epoch from 32.7 to 31.5 ms
 * in random order, from 24.7 to 22 with X in cache, 47-54 to 45-48 with
 * the host in its slow state (alternating builds, same bits).
 * Every product and update does each element's arithmetic the same way
 * whichever thread or range it falls in, so the trajectory is the same for
 * any thread count. */
/* A thread per this many outputs at most (4: a team for 5 classes or more) */
#define FM_GLM_OUTPUTS_PER_THREAD 4
/* Threads only when a batch has this much multiply-add work: below it, the
 * barrier per batch costs more than it saves. */
#define FM_GLM_PARALLEL_MIN_WORK 16384

/* Thread tid's share [*lo, *hi) of n items cut into `threads` ranges as even
 * as can be. */
static inline void FN(share)(int64_t n, int tid, int threads, int64_t *lo, int64_t *hi)
{
    *lo = n * tid / threads;
    *hi = n * (tid + 1) / threads;
}

static int64_t FN(sgd_epoch)(const FM_T *X, int64_t n, int64_t d, const int64_t *labels,
                             const FM_T *targets, const FM_T *sample_weight, const int64_t *perm,
                             int64_t m, const double *lr, int64_t n_batches, int family,
                             int64_t batch_size, double l2, double l1, double momentum,
                             int nesterov, int fit_intercept, FM_T *params, int64_t K,
                             FM_T *velocity, FM_T *avg, int64_t avg_start, int64_t step0,
                             double *loss)
{
    (void)n;
    const int64_t ld = d + 1, max_team = (K + FM_GLM_OUTPUTS_PER_THREAD - 1) / FM_GLM_OUTPUTS_PER_THREAD;
    const int64_t cols = d + (fit_intercept != 0);   /* the columns an update moves */
    const int team = max_team > 1 && batch_size * d * K >= FM_GLM_PARALLEL_MIN_WORK
                         ? (int)(fm_threads < max_team ? fm_threads : max_team) : 1;
    /* Shared: the linear predictors of two batches (a thread may start the
     * next batch's forward product while another still reads this one's).
     * Per thread, each on its own cache lines: the loss gradient G of the
     * batch, the softmax terms, and its outputs' gradient. */
    const int64_t eta_size = fm_line_stride(batch_size * K, sizeof(FM_T));
    const int64_t private_size = eta_size + fm_line_stride(K * ld, sizeof(FM_T));
    const int64_t t_size = fm_line_stride(FM_GLM_LOSS_ROWS * K, sizeof(double));
    FM_T *work = fm_alloc_lines(sizeof(FM_T) * (2 * eta_size + team * private_size));
    double *t_all = fm_alloc_lines(sizeof(double) * team * t_size);
    const int64_t fetch_size = fm_line_stride(batch_size, sizeof(int64_t));
    int64_t *fetch_all = fm_alloc_lines(sizeof(int64_t) * team * fetch_size);
    int64_t *labels_p = labels ? malloc(sizeof(int64_t) * (m > 0 ? m : 1)) : NULL;
    FM_T *targets_p = labels ? NULL : malloc(sizeof(FM_T) * (m * K > 0 ? m * K : 1));
    FM_T *weight_p = sample_weight ? malloc(sizeof(FM_T) * (m > 0 ? m : 1)) : NULL;
    if (!work || !t_all || !fetch_all || !(labels_p || targets_p) || (sample_weight && !weight_p)) {
        free(work);
        free(t_all);
        free(fetch_all);
        free(labels_p);
        free(targets_p);
        free(weight_p);
        return -1;  /* out of memory */
    }
    FN(gather_samples)(perm, m, K, labels, targets, sample_weight, labels_p, targets_p, weight_p);
    int64_t done = 0;
    int started = 1, trial_outcome = FM_TRIAL_NONE;   /* thread 0's report (fm_team_last) */
    fm_team_sync sync = {0, 0, 0, 0, 0, 0};
    const int64_t trial = fm_team_trial_batches;   /* read once: the same for every thread */
#pragma omp parallel num_threads(team)
    {
        /* the team OpenMP actually started, which may be smaller than asked
         * for (OMP_THREAD_LIMIT, OMP_DYNAMIC, a caller's parallel region):
         * its threads must share all the outputs between them */
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
        int threads = omp_get_num_threads();   /* 1 once the team disbands */
#else
        const int tid = 0;
        int threads = 1;
#endif
        const int team_size = threads;
        if (tid == 0)
            started = team_size;
        int64_t k0, k1;   /* this thread's outputs */
        FN(share)(K, tid, threads, &k0, &k1);
        /* The trial (thread 0's): a team may be slower than one thread when
         * the cores exchange lines slowly (2-thread epoch 56 ms against 39
         * on one thread, when the host placed the two vCPUs far apart). So
         * thread 0 times batches [T, 2T) done by the team, then does batches
         * [2T, 3T) alone while the others wait; if that was faster by the
         * margin, it goes on alone, else the team resumes. */
        const int trying = threads > 1 && trial > 0 && n_batches >= 4 * trial;
        int64_t trial_until = 0;   /* thread 0: the end of its batches alone */
        long long trial_mark = 0, team_ns = 0;
        FM_T *G = work + 2 * eta_size + tid * private_size, *grad = G + eta_size;
        double *t = t_all + tid * t_size;
        int64_t *fetch = fetch_all + tid * fetch_size;
        long long crossed = 0;   /* barriers this thread has crossed */
        for (int64_t b = 0; b < n_batches; b++) {
            const int64_t i0 = b * batch_size, nb = (i0 + batch_size < m ? i0 + batch_size : m) - i0;
            const int64_t next = i0 + nb, next_nb = (next + batch_size < m ? next + batch_size : m) - next;
            const int64_t *rows = perm + i0;
            FM_T *eta = work + (b % 2) * eta_size;
            /* Each thread's forward product requests the next batch's
             * rows, with each block of rows (asked for all at once, they
             * fill the core's miss buffers and stall it); the list is padded
             * with this batch's rows where the next batch is shorter. */
            for (int64_t r = 0; r < nb; r++)
                fetch[r] = r < next_nb ? perm[next + r] : rows[r];
            FN(forward)(X, d, rows, nb, params + k0 * ld, k1 - k0, eta + k0, K, fetch);
            if (threads > 1) {
                if (tid == 0 && trying && (b == trial || b == 2 * trial)) {
                    const long long now = fm_now_ns();
                    if (b == 2 * trial)
                        team_ns = now - trial_mark;
                    trial_mark = now;
                }
                crossed = fm_team_barrier(&sync, threads, crossed);
                /* every thread reads disband after the same crossing (only
                 * barriers set it) and knows b and the trial's batches */
                const int disbanded = atomic_load(&sync.disband);
                const int trial_alone = trying && b == 2 * trial && !disbanded;
                if (trial_alone && tid != 0) {
                    /* the trial's batches alone: wait for thread 0, then go
                     * on from batch 3T, unless it keeps them all */
                    crossed = fm_team_barrier(&sync, threads, crossed);
                    if (atomic_load(&sync.alone_for_good) || atomic_load(&sync.disband))
                        break;
                    b = 3 * trial - 1;
                    continue;
                }
                if (disbanded || trial_alone) {
                    /* this batch's linear predictors are all done: thread 0
                     * goes on alone from its gradient, with every output
                     * (the same arithmetic, see above) */
                    if (tid != 0)
                        break;
                    if (trial_alone) {
                        trial_until = 3 * trial;
                        trial_mark = fm_now_ns();
                    }
                    threads = 1;
                    FN(share)(K, 0, 1, &k0, &k1);
                }
            }
            /* Every thread computes the whole batch's loss and G, with the
             * same arithmetic, so all agree on whether to stop. */
            const double batch_loss = FN(dloss)(eta, nb, K, labels_p ? labels_p + i0 : NULL,
                                                targets_p ? targets_p + i0 * K : NULL,
                                                weight_p ? weight_p + i0 : NULL, family, G, t);
            if (!isfinite(batch_loss) || !FN(all_finite)(G, nb * K))
                break;
            const int64_t step = step0 + b;
            const double avg_weight =
                avg_start >= 0 && step >= avg_start ? 1.0 / (double)(step - avg_start + 1) : 0.0;
            const double scale = 1.0 / (double)nb;
            memset(grad, 0, sizeof(FM_T) * (k1 - k0) * ld);
            FN(backward)(X, d, rows, nb, G + k0, k1 - k0, K, grad);
            FN(update)(params + k0 * ld, grad, k1 - k0, d, cols, scale, lr[b], l2, l1, momentum,
                       nesterov, velocity ? velocity + k0 * ld : NULL, avg ? avg + k0 * ld : NULL,
                       avg_weight);
            if (tid == 0) {
                loss[0] += batch_loss;
                done = b + 1;
            }
            if (tid == 0 && trial_until == b + 1) {
                /* the trial's end: alone for good if that was faster */
                if ((fm_now_ns() - trial_mark) * (100 + fm_team_trial_margin) < team_ns * 100)
                    atomic_store(&sync.alone_for_good, 1);
                trial_until = 0;
                crossed = fm_team_barrier(&sync, team_size, crossed);   /* the others go on */
                trial_outcome = atomic_load(&sync.alone_for_good) ? FM_TRIAL_ALONE
                                : atomic_load(&sync.disband)      ? FM_TRIAL_DISBANDED : FM_TRIAL_TEAM;
                if (!atomic_load(&sync.alone_for_good) && !atomic_load(&sync.disband)) {
                    threads = team_size;
                    FN(share)(K, 0, threads, &k0, &k1);
                }
            }
        }
        if (trial_until) {   /* stopped during the trial: release the others */
            trial_outcome = FM_TRIAL_STOPPED;
            atomic_store(&sync.alone_for_good, 1);
            fm_team_barrier(&sync, team_size, crossed);
        }
    }
    /* atomic: epochs on two Python threads may end together */
    __atomic_store_n(&fm_team_last_size, started, __ATOMIC_RELAXED);
    __atomic_store_n(&fm_team_last_trial, trial_outcome, __ATOMIC_RELAXED);
    free(work);
    free(t_all);
    free(fetch_all);
    free(labels_p);
    free(targets_p);
    free(weight_p);
    return done;
}

/* The epoch for X in compressed sparse rows, on one thread: the batch
 * gradient accumulates row by row into a zeroed buffer. Plain SGD (no L2, L1, momentum or averaging) then updates,
 * and re-zeroes, only the coefficients of the features present in the batch
 * (all others have a zero gradient and would not move), so a step costs
 * O(nonzeros x K), not O(n_features x K); with any of those options every
 * coefficient moves at every step and the update is dense. */
static int64_t FN(sgd_epoch_csr)(const FM_T *data, const int32_t *indices, const int64_t *indptr,
                                 int64_t n, int64_t d, const int64_t *labels, const FM_T *targets,
                                 const FM_T *sample_weight, const int64_t *perm, int64_t m,
                                 const double *lr, int64_t n_batches, int family,
                                 int64_t batch_size, double l2, double l1, double momentum,
                                 int nesterov, int fit_intercept, FM_T *params, int64_t K,
                                 FM_T *velocity, FM_T *avg, int64_t avg_start, int64_t step0,
                                 double *loss)
{
    (void)n;
    const int64_t ld = d + 1, P = K * ld;
    const int sparse_update = !velocity && !(l1 > 0) && !(l2 > 0) && avg_start < 0;
    FM_T *eta = malloc(sizeof(FM_T) * 2 * batch_size * K);
    FM_T *grad = calloc(P, sizeof(FM_T));
    double *t = malloc(sizeof(double) * FM_GLM_LOSS_ROWS * K);
    unsigned char *seen = calloc(d > 0 ? d : 1, 1);
    int32_t *touched = malloc(sizeof(int32_t) * (d > 0 ? d : 1));
    int64_t *labels_p = labels ? malloc(sizeof(int64_t) * (m > 0 ? m : 1)) : NULL;
    FM_T *targets_p = labels ? NULL : malloc(sizeof(FM_T) * (m * K > 0 ? m * K : 1));
    FM_T *weight_p = sample_weight ? malloc(sizeof(FM_T) * (m > 0 ? m : 1)) : NULL;
    int64_t done = -1;  /* out of memory */
    if (eta && grad && t && seen && touched && (labels_p || targets_p) && (!sample_weight || weight_p)) {
        FN(gather_samples)(perm, m, K, labels, targets, sample_weight, labels_p, targets_p, weight_p);
        FM_T *G = eta + batch_size * K;
        for (done = 0; done < n_batches; done++) {
            const int64_t b = done, i0 = b * batch_size;
            const int64_t nb = (i0 + batch_size < m ? i0 + batch_size : m) - i0;
            const int64_t *rows = perm + i0;
            FN(forward_csr)(data, indices, indptr, d, rows, nb, params, K, eta);
            const double batch_loss = FN(dloss)(eta, nb, K, labels_p ? labels_p + i0 : NULL,
                                                targets_p ? targets_p + i0 * K : NULL,
                                                weight_p ? weight_p + i0 : NULL, family, G, t);
            if (!isfinite(batch_loss) || !FN(all_finite)(G, nb * K))
                break;
            loss[0] += batch_loss;
            FN(backward_csr)(data, indices, indptr, d, rows, nb, G, K, grad);
            const double scale = 1.0 / (double)nb;
            if (sparse_update) {
                int64_t nt = 0;
                for (int64_t r = 0; r < nb; r++)
                    for (int64_t p = indptr[rows[r]]; p < indptr[rows[r] + 1]; p++)
                        if (!seen[indices[p]]) {
                            seen[indices[p]] = 1;
                            touched[nt++] = indices[p];
                        }
                for (int64_t k = 0; k < K; k++) {
                    FM_T *pk = params + k * ld, *gk = grad + k * ld;
                    for (int64_t q = 0; q < nt; q++) {  /* update()'s plain step, l2 = 0 */
                        pk[touched[q]] = (FM_T)(pk[touched[q]] - lr[b] * (gk[touched[q]] * scale));
                        gk[touched[q]] = 0;
                    }
                    if (fit_intercept)
                        pk[d] = (FM_T)(pk[d] - lr[b] * (gk[d] * scale));
                    gk[d] = 0;
                }
                for (int64_t q = 0; q < nt; q++)
                    seen[touched[q]] = 0;
            } else {
                const int64_t step = step0 + b;
                const double avg_weight =
                    avg_start >= 0 && step >= avg_start ? 1.0 / (double)(step - avg_start + 1) : 0.0;
                FN(update)(params, grad, K, d, d + (fit_intercept != 0), scale, lr[b], l2, l1,
                           momentum, nesterov, velocity, avg, avg_weight);
                memset(grad, 0, sizeof(FM_T) * P);
            }
        }
    }
    free(eta);
    free(grad);
    free(t);
    free(seen);
    free(touched);
    free(labels_p);
    free(targets_p);
    free(weight_p);
    return done;
}

#undef FM_GLM_VB
#undef FM_GLM_FR
#undef FM_GLM_BJ
#undef FM_GLM_L
#undef FM_GLM_LOAD
#undef FM_GLM_HALF
#undef FM_GLM_FMA
#undef FM_GLM_BWD_BLOCK
#undef FN
