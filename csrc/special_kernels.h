/*
 * Body of the "special" family (log-sum-exp, softmax, log-softmax), included
 * by special.c once per (element type, instruction set).  Before including,
 * define:
 *   FM_T      element type (float or double)
 *   FM_SUF    f32 or f64
 *   FM_ISA    base, avx2 or avx512 (suffix of the generated names)
 *   FM_EXPFN  fm_exp or fm_expf (see vexp.h)
 * exp is evaluated in the element type; every sum is accumulated in double,
 * vectorized within blocks of FM_EXP_BLOCK elements, and the block sums are
 * merged with Neumaier compensation.
 */
#define FN(name) FM_CAT3(name, FM_SUF, FM_ISA)

#include "fm_common_kernels.h"   /* seg_max, next_row, prefetch, FM_EXP_BLOCK, sum_pairs */

/* Sum of exp(x - shift) into s; if store is not NULL, exp(x - shift) is
 * also written there (softmax keeps it and rescales). With cnt != NULL, the
 * elements equal to shift are counted in *cnt and left out of s instead
 * (exp(0) = 1): logsumexp needs the remainder alone for its accurate
 * log1p(s / cnt) + log(cnt) form. next: see prefetch (NULL for none).
 * normal: every exp(x - shift) is normal (exp_normal_ok), so the
 * exponentials may come from the cheaper FM_EXPFN_NORMAL (the same bits as
 * FM_EXPFN, and as FM_EXPFN_SUM for normal results). */
static void FN(seg_sum_exp)(const FM_T *x, int64_t n, double shift, FM_T *store,
                            fm_ksum *s, double *cnt, const FM_T *next, int normal)
{
    const FM_T sh = (FM_T)shift;   /* exact: shift is an element or 0 */
    double count = 0;
    for (int64_t j0 = 0; j0 < n; j0 += FM_EXP_BLOCK) {
        int64_t j1 = j0 + FM_EXP_BLOCK < n ? j0 + FM_EXP_BLOCK : n;
        FM_T bc = 0;   /* exact: a block has far fewer than 2^24 elements */
        FN(prefetch)(next ? next + j0 : NULL, j1 - j0);
        /* exponentials to store or a block buffer in the element type, then
         * summed in double: a loop mixing float exponentials with double
         * sums would run at the double vector width */
        FM_T buf[FM_EXP_BLOCK];
        FM_T *e = store ? store + j0 : buf;
        if (cnt) {   /* max terms zeroed and counted */
#pragma omp simd reduction(+ : bc)
            for (int64_t j = j0; j < j1; j++) {
                FM_T d = x[j] - sh;
                FM_T v = FM_EXPFN_SUM(d);   /* only summed */
                e[j - j0] = d == 0 ? (FM_T)0 : v;
                bc += d == 0 ? (FM_T)1 : (FM_T)0;
            }
        } else if (normal) {   /* stored or only summed: same bits, cheaper */
#pragma omp simd
            for (int64_t j = j0; j < j1; j++)
                e[j - j0] = FM_EXPFN_NORMAL(x[j] - sh);
        } else if (store) {
#pragma omp simd
            for (int64_t j = j0; j < j1; j++)
                e[j - j0] = FM_EXPFN(x[j] - sh);
        } else {   /* only summed: see FM_EXPFN_SUM in fm_types.h */
#pragma omp simd
            for (int64_t j = j0; j < j1; j++)
                e[j - j0] = FM_EXPFN_SUM(x[j] - sh);
        }
        fm_ksum_add(s, FN(sum_pairs)(e, j1 - j0));
        count += bc;
    }
    if (cnt)
        *cnt += count;
}

/* Weighted form for logsumexp(a, b=b): elements with b == 0 are left out.
 * s sums b * exp(a - shift) where a != shift; bmax sums b where a == shift. */
static void FN(seg_sum_exp_weighted)(const FM_T *a, const FM_T *b, int64_t n, double shift,
                                     fm_ksum *s, fm_ksum *bmax)
{
    const FM_T sh = (FM_T)shift;
    for (int64_t j0 = 0; j0 < n; j0 += FM_EXP_BLOCK) {
        int64_t j1 = j0 + FM_EXP_BLOCK < n ? j0 + FM_EXP_BLOCK : n;
        double bs = 0, bm = 0;
#pragma omp simd reduction(+ : bs, bm)
        for (int64_t j = j0; j < j1; j++) {
            double w = (double)b[j];
            FM_T d = a[j] - sh;
            double e = w * (double)FM_EXPFN(d);
            bs += (w == 0.0 || d == 0) ? 0.0 : e;
            bm += (w != 0.0 && d == 0) ? w : 0.0;
        }
        fm_ksum_add(s, bs);
        fm_ksum_add(bmax, bm);
    }
}

/* Largest a over elements with b != 0, ignoring NaN. */
static double FN(seg_max_weighted)(const FM_T *a, const FM_T *b, int64_t n)
{
    FM_T m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; j++)
        m = (b[j] != 0 && a[j] > m) ? a[j] : m;
    return (double)m;
}

/* Unshifted sum of b * exp(a) over every element, in the input's precision
 * (so exp overflows where the input type's would). Only used for the rare
 * rows whose shifted result is not finite; it reproduces the special-value
 * answers of scipy.special.logsumexp. b == NULL means all ones. */
static double FN(seg_sum_exp_direct)(const FM_T *a, const FM_T *b, int64_t n)
{
    double s = 0;
    for (int64_t j = 0; j < n; j++) {
        FM_T e = FM_EXPFN(a[j]);
        s += b ? (double)(FM_T)(b[j] * e) : (double)e;
    }
    return (double)(FM_T)s;
}

/* y *= factor in the element type (for float: one extra rounding of the
 * factor, 0.5 ulp, instead of two conversions per element). */
static void FN(seg_scale)(FM_T *y, int64_t n, double factor)
{
    const FM_T f = (FM_T)factor;
#pragma omp simd
    for (int64_t k = 0; k < n; k++)
        y[k] = y[k] * f;
}

/* out = (x - c1) - c2 in the element type; c1 is an element (or 0), so
 * x - c1 rounds exactly as the exponent argument did */
static void FN(seg_sub2)(const FM_T *x, int64_t n, double c1, double c2, FM_T *out)
{
    const FM_T a = (FM_T)c1, b = (FM_T)c2;
#pragma omp simd
    for (int64_t k = 0; k < n; k++)
        out[k] = (x[k] - a) - b;
}

/* ---- per-row reductions over chunks -------------------------------------
 * A row is cut into FM_ROW_CHUNK pieces; short rows are one piece. For long
 * rows (rows_in_parallel == 0) the pieces are spread over the threads and
 * merged in order, so the result is the same for every thread count. */

/* Chunk c of a row of length n: its start and length. */
#define FM_CHUNK_BOUNDS(c, n, j0, len)                 \
    int64_t j0 = (c) * FM_ROW_CHUNK;                   \
    int64_t len = (n) - j0 < FM_ROW_CHUNK ? (n) - j0 : FM_ROW_CHUNK;

/* Run BODY for every chunk c of a row, across the team only for long rows.
 * (An OpenMP region with if(0) still costs a runtime call per row, so short
 * rows take the plain loop.) */
#define FM_FOR_EACH_CHUNK(nc, parallel, BODY)                                   \
    if (parallel) {                                                             \
        _Pragma("omp parallel for schedule(static) num_threads(fm_threads)")    \
        for (int64_t c = 0; c < (nc); c++) { BODY; }                            \
    } else {                                                                    \
        for (int64_t c = 0; c < (nc); c++) { BODY; }                            \
    }

static double FN(row_max)(const FM_T *x, const FM_T *b, int64_t n, int parallel)
{
    if (!parallel)
        return b ? FN(seg_max_weighted)(x, b, n) : FN(seg_max)(x, n);
    int64_t nc = (n + FM_ROW_CHUNK - 1) / FM_ROW_CHUNK;
    double m = -INFINITY;
#pragma omp parallel for schedule(static) reduction(max : m) num_threads(fm_threads)
    for (int64_t c = 0; c < nc; c++) {
        FM_CHUNK_BOUNDS(c, n, j0, len)
        double mc = b ? FN(seg_max_weighted)(x + j0, b + j0, len) : FN(seg_max)(x + j0, len);
        m = mc > m ? mc : m;
    }
    return m;
}

typedef struct { fm_ksum s; fm_ksum w; double cnt; int split, normal; } FN(partial);

static void FN(chunk_sum_exp)(const FM_T *x, const FM_T *b, int64_t n, int64_t c, double shift,
                              FM_T *store, FN(partial) *p, const FM_T *next)
{
    FM_CHUNK_BOUNDS(c, n, j0, len)
    if (b)
        FN(seg_sum_exp_weighted)(x + j0, b + j0, len, shift, &p->s, &p->w);
    else
        FN(seg_sum_exp)(x + j0, len, shift, store ? store + j0 : NULL, &p->s, p->split ? &p->cnt : NULL,
                        next ? next + j0 : NULL, p->normal);
}

/* Sum of exp over the row (see seg_sum_exp / seg_sum_exp_weighted).
 * cnt != NULL asks for the split sum of seg_sum_exp; next: see prefetch;
 * normal: see seg_sum_exp. */
static void FN(row_sum_exp)(const FM_T *x, const FM_T *b, int64_t n, double shift, FM_T *store,
                            int parallel, fm_ksum *s, fm_ksum *w, double *cnt, const FM_T *next,
                            int normal)
{
    int64_t nc = (n + FM_ROW_CHUNK - 1) / FM_ROW_CHUNK;
    FN(partial) *part = NULL;
    if (parallel && nc > 1)
        part = (FN(partial) *)calloc((size_t)nc, sizeof *part);
    if (part) {
        for (int64_t c = 0; c < nc; c++) {
            part[c].split = cnt != NULL;
            part[c].normal = normal;
        }
        FM_FOR_EACH_CHUNK(nc, 1, FN(chunk_sum_exp)(x, b, n, c, shift, store, &part[c], NULL))
    }
    /* merge in chunk order; without the array (short row, or no memory),
     * compute each chunk here, which gives the same bits */
    for (int64_t c = 0; c < nc; c++) {
        FN(partial) p = {{0, 0}, {0, 0}, 0, cnt != NULL, normal};
        if (part)
            p = part[c];
        else
            FN(chunk_sum_exp)(x, b, n, c, shift, store, &p, next);
        fm_ksum_add(s, p.s.sum);
        fm_ksum_add(s, p.s.comp);
        fm_ksum_add(w, p.w.sum);
        fm_ksum_add(w, p.w.comp);
        if (cnt)
            *cnt += p.cnt;
    }
    free(part);
}

static void FN(row_scale)(FM_T *y, int64_t n, double factor, int parallel)
{
    int64_t nc = (n + FM_ROW_CHUNK - 1) / FM_ROW_CHUNK;
    FM_FOR_EACH_CHUNK(nc, parallel, FM_CHUNK_BOUNDS(c, n, j0, len)
                      FN(seg_scale)(y + j0, len, factor))
}

static void FN(row_sub2)(const FM_T *x, int64_t n, double c1, double c2, FM_T *out, int parallel)
{
    int64_t nc = (n + FM_ROW_CHUNK - 1) / FM_ROW_CHUNK;
    FM_FOR_EACH_CHUNK(nc, parallel, FM_CHUNK_BOUNDS(c, n, j0, len)
                      FN(seg_sub2)(x + j0, len, c1, c2, out + j0))
}

/* ---- one row of each kernel (next: the row to prefetch, or NULL) ---- */

static void FN(logsumexp_row)(const FM_T *a, int64_t n, int parallel, FM_T *out, const FM_T *next)
{
    double m = FN(row_max)(a, NULL, n, parallel);
    fm_ksum s = {0, 0}, unused = {0, 0};
    double cnt = 0;
    FN(row_sum_exp)(a, NULL, n, m, NULL, parallel, &s, &unused, &cnt, next, 0);
    /* accurate form (Blanchard, Higham & Higham 2021): the max terms are kept
     * out of the sum, so log1p sees the small remainder. Float rows too:
     * sum_pairs adds pairs in float, where a max term's 1 absorbed the rest
     * (logsumexp([0, -20]) was 0, not 2.06e-9). */
    double r = (log1p(fm_ksum_value(&s) / cnt) + log(cnt)) + m;
    if (!isfinite(r))   /* inf or NaN present, or all -inf */
        r = log(FN(seg_sum_exp_direct)(a, NULL, n));
    *out = (FM_T)r;
}

static void FN(logsumexp_weighted_row)(const FM_T *a, const FM_T *b, int64_t n, int return_sign,
                                       int parallel, FM_T *out, FM_T *sign)
{
    double m = FN(row_max)(a, b, n, parallel);
    fm_ksum ks = {0, 0}, kw = {0, 0};
    FN(row_sum_exp)(a, b, n, m, NULL, parallel, &ks, &kw, NULL, NULL, 0);
    double s = fm_ksum_value(&ks), w = fm_ksum_value(&kw);
    /* sign and magnitude exactly as scipy.special.logsumexp separates them */
    if (s != 0)
        s = s / w;
    double sgn = fm_sign(s + 1) * fm_sign(w);
    if (s < -1)
        s = -s - 2;
    double r = (log1p(s) + log(fabs(w))) + m;
    if (!return_sign && sgn < 0)
        r = NAN;
    if (!isfinite(r)) {
        double direct = FN(seg_sum_exp_direct)(a, b, n);
        sgn = fm_sign(direct);
        r = log(return_sign ? fabs(direct) : direct);
    }
    *out = (FM_T)r;
    if (sign)
        *sign = (FM_T)sgn;
}

/* ---- streaming stores for outputs larger than the caches ----
 * The last pass of softmax and log_softmax can write out with non-temporal
 * stores, which skip reading out's lines into the cache before writing them
 * (a third of the memory traffic of a cached write pass). Used when the
 * output has at least FM_STREAM_MIN_BYTES (glibc's memcpy streams from a
 * similar size) and rows of at most FM_STREAM_ROW_MAX elements, whose
 * exponentials then go to a row buffer on the stack. Same bits as the cached
 * path (tested). Measured on 32768 x 1000 float32, 2 threads, Zen 4, in one
 * process alternating with the cached path (median of 40): softmax
 * 9.00-9.69 ms (middle of five runs 9.10) against 8.74-10.23 (9.45); a
 * separate streaming copy after the cached computation lost (9.55-9.64
 * against 9.17-9.18 ms), and while the kernels were slower to compute (0.50
 * ns per element) streaming gained nothing. */
#define FM_STREAM_MIN_BYTES (16.0 * 1024 * 1024)
#define FM_STREAM_ROW_MAX (16384 / (int64_t)sizeof(FM_T))   /* half of L1 */
#if defined(__AVX512F__)
#define FM_STREAM_VECTOR 64
#define FM_STREAM_ONE(dst, v) _mm512_stream_si512((void *)(dst), (__m512i)(v))
#elif defined(__AVX2__)
#define FM_STREAM_VECTOR 32
#define FM_STREAM_ONE(dst, v) _mm256_stream_si256((__m256i *)(dst), (__m256i)(v))
#elif defined(__SSE2__)
#define FM_STREAM_VECTOR 16
#define FM_STREAM_ONE(dst, v) _mm_stream_si128((__m128i *)(dst), (__m128i)(v))
#else
#define FM_STREAM_VECTOR 0   /* no streaming stores: the cached path only */
#endif

#if FM_STREAM_VECTOR
#define FM_STREAM_LANES (FM_STREAM_VECTOR / (int64_t)sizeof(FM_T))
typedef FM_T FN(stream_vec) __attribute__((vector_size(FM_STREAM_VECTOR)));
/* out[j] = EXPR(src[j]) for j < n, the aligned middle with streaming stores.
 * EXPR is written once for a scalar and a vector (gcc's vector extensions
 * apply + - * lane by lane, with the scalar's rounding). */
#define FM_STREAM_MAP(out, src, n, EXPR)                                         \
    do {                                                                         \
        int64_t j_ = 0;                                                          \
        for (; j_ < (n) && ((uintptr_t)((out) + j_) % FM_STREAM_VECTOR); j_++)   \
            (out)[j_] = EXPR((src)[j_]);                                         \
        for (; j_ + FM_STREAM_LANES <= (n); j_ += FM_STREAM_LANES) {             \
            FN(stream_vec) v_;                                                   \
            memcpy(&v_, (src) + j_, sizeof v_);                                  \
            FM_STREAM_ONE((out) + j_, EXPR(v_));                                 \
        }                                                                        \
        for (; j_ < (n); j_++)                                                   \
            (out)[j_] = EXPR((src)[j_]);                                         \
    } while (0)
#define FM_STREAM_FENCE() _mm_sfence()   /* before other threads read out */
#else
#define FM_STREAM_MAP(out, src, n, EXPR) ((void)0)   /* never called */
#define FM_STREAM_FENCE() ((void)0)
#endif

/* Whether a (rows, n) output is streamed (see above). */
static inline int FN(stream_output)(int64_t rows, int64_t n)
{
    return FM_STREAM_VECTOR && n <= FM_STREAM_ROW_MAX &&
           (double)rows * (double)n * sizeof(FM_T) >= FM_STREAM_MIN_BYTES;
}

/* The exponentials are stored in out and rescaled in place while the row is
 * still in the cache; when stream (only for short rows, not parallel), they
 * go to a row buffer and the scaled row is streamed to out. */
static void FN(softmax_row)(const FM_T *x, int64_t n, int parallel, FM_T *out, const FM_T *next,
                            int stream)
{
    double lo = 0;
    double m = parallel ? FN(row_max)(x, NULL, n, 1) : FN(seg_max_min)(x, n, &lo);
    fm_ksum s = {0, 0}, unused = {0, 0};
    FM_T row[stream ? FM_STREAM_ROW_MAX : 1];
    FN(row_sum_exp)(x, NULL, n, m, stream ? row : out, parallel, &s, &unused, NULL, next,
                    !parallel && FN(exp_normal_ok)(m, lo));
    const FM_T f = (FM_T)(1.0 / fm_ksum_value(&s));   /* as seg_scale */
    if (stream) {
#define FM_SCALED(v) ((v) * f)
        FM_STREAM_MAP(out, row, n, FM_SCALED);
#undef FM_SCALED
    } else {
        FN(row_scale)(out, n, 1.0 / fm_ksum_value(&s), parallel);
    }
}

static void FN(log_softmax_row)(const FM_T *x, int64_t n, int parallel, FM_T *out, const FM_T *next,
                                int stream)
{
    double lo = 0;
    double m = parallel ? FN(row_max)(x, NULL, n, 1) : FN(seg_max_min)(x, n, &lo);
    if (!isfinite(m)) {
        /* as scipy: a non-finite max is replaced by 0, and the sum taken by
         * the exact path (the exponential that is only summed, used when out
         * is x, takes arguments <= 0 only) */
        FN(row_sub2)(x, n, 0.0, log(FN(seg_sum_exp_direct)(x, NULL, n)), out, parallel);
        return;
    }
    fm_ksum s = {0, 0}, unused = {0, 0};
    /* the exponentials go to out (unless out is x, or out is streamed) only
     * to bring its lines into the cache while computing; the last pass then
     * writes to cache (1.3x instead of 1.4x np.copyto, 32768 x 1000 float32,
     * 2 threads) */
    FN(row_sum_exp)(x, NULL, n, m, x == out || stream ? NULL : out, parallel, &s, &unused, NULL,
                    next, !parallel && FN(exp_normal_ok)(m, lo));
    const double ls = log(fm_ksum_value(&s));
    if (stream) {
        const FM_T c1 = (FM_T)m, c2 = (FM_T)ls;   /* as seg_sub2 */
#define FM_SHIFTED(v) (((v) - c1) - c2)
        FM_STREAM_MAP(out, x, n, FM_SHIFTED);
#undef FM_SHIFTED
    } else {
        FN(row_sub2)(x, n, m, ls, out, parallel);
    }
}

/* ---- whole-array drivers: rows in parallel, or chunks of one long row ---- */

/* Short rows: one row per iteration, rows spread over the team, and `next`
 * the following row of x to prefetch; each thread fences its streaming
 * stores, if any, before the barrier that ends the region. Long rows: one
 * row at a time, its chunks spread over the team. */
#define FM_FOR_EACH_ROW(rows, n, x, BODY)                                \
    if ((n) <= FM_ROW_CHUNK) {                                           \
        const int parallel = 0;                                          \
        const int team = fm_team_size((rows) * (n));                     \
        _Pragma("omp parallel num_threads(team)")                        \
        {                                                                \
            _Pragma("omp for schedule(static) nowait")                   \
            for (int64_t i = 0; i < (rows); i++) {                       \
                const FM_T *next = FN(next_row)(x, i, rows, n);          \
                BODY;                                                    \
            }                                                            \
            FM_STREAM_FENCE();                                           \
        }                                                                \
    } else {                                                             \
        const int parallel = fm_threads > 1;                             \
        const FM_T *next = NULL;                                         \
        for (int64_t i = 0; i < (rows); i++) { BODY; }                   \
    }

static void FN(logsumexp)(const FM_T *a, int64_t rows, int64_t n, FM_T *out)
{
    FM_FOR_EACH_ROW(rows, n, a, FN(logsumexp_row)(a + i * n, n, parallel, out + i, next))
}

static void FN(logsumexp_weighted)(const FM_T *a, const FM_T *b, int64_t rows, int64_t n,
                                   int return_sign, FM_T *out, FM_T *sign)
{
    FM_FOR_EACH_ROW(rows, n, a, (void)next;
                    FN(logsumexp_weighted_row)(a + i * n, b + i * n, n, return_sign,
                                               parallel, out + i, sign ? sign + i : NULL))
}

static void FN(softmax)(const FM_T *x, int64_t rows, int64_t n, FM_T *out)
{
    const int stream = FN(stream_output)(rows, n);
    FM_FOR_EACH_ROW(rows, n, x, FN(softmax_row)(x + i * n, n, parallel, out + i * n, next, stream))
}

static void FN(log_softmax)(const FM_T *x, int64_t rows, int64_t n, FM_T *out)
{
    const int stream = FN(stream_output)(rows, n);
    FM_FOR_EACH_ROW(rows, n, x, FN(log_softmax_row)(x + i * n, n, parallel, out + i * n, next, stream))
}

#undef FN
#undef FM_EXP_BLOCK
#undef FM_STREAM_MIN_BYTES
#undef FM_STREAM_ROW_MAX
#undef FM_STREAM_VECTOR
#undef FM_STREAM_ONE
#undef FM_STREAM_FENCE
#undef FM_STREAM_LANES
#undef FM_STREAM_MAP
#undef FM_FOR_EACH_ROW
#undef FM_FOR_EACH_CHUNK
#undef FM_CHUNK_BOUNDS
