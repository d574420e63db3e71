/*
 * Body of the "special" family (log-sum-exp, softmax, log-softmax), included
 * by special.c once per (element type, instruction set).  Before including,
 * define:
 *   FM_T      element type (float or double)
 *   FM_SUF    f32 or f64
 *   FM_ISA    base or avx2 (suffix of the generated names)
 *   FM_EXPFN  fm_exp or fm_expf (see vexp.h)
 * exp is evaluated in the element type; every sum is accumulated in double,
 * vectorized within blocks of FM_BLOCK elements, and the block sums are
 * merged with Neumaier compensation.
 */
#define FN(name) FM_CAT3(name, FM_SUF, FM_ISA)
#define FM_BLOCK 256

#include "fm_common_kernels.h"   /* seg_max */

/* Sum of exp(x - shift) into s; if store is not NULL, exp(x - shift) is
 * also written there (softmax keeps it and rescales). With cnt != NULL, the
 * elements equal to shift are counted in *cnt and left out of s instead
 * (exp(0) = 1): logsumexp needs the remainder alone for its accurate
 * log1p(s / cnt) + log(cnt) form. */
static void FN(seg_sum_exp)(const FM_T *x, int64_t n, double shift, FM_T *store,
                            fm_ksum *s, double *cnt)
{
    const FM_T sh = (FM_T)shift;   /* exact: shift is an element or 0 */
    double count = 0;
    for (int64_t j0 = 0; j0 < n; j0 += FM_BLOCK) {
        int64_t j1 = j0 + FM_BLOCK < n ? j0 + FM_BLOCK : n;
        double bs = 0;
        FM_T bc = 0;   /* exact: a block has far fewer than 2^24 elements */
        if (cnt) {
            /* exponentials (max terms zeroed) to a block buffer in the element
             * type, then summed in double: keeps the exp loop at full width */
            FM_T buf[FM_BLOCK];
#pragma omp simd reduction(+ : bc)
            for (int64_t j = j0; j < j1; j++) {
                FM_T d = x[j] - sh;
                FM_T e = FM_EXPFN(d);
                buf[j - j0] = d == 0 ? (FM_T)0 : e;
                bc += d == 0 ? (FM_T)1 : (FM_T)0;
            }
#pragma omp simd reduction(+ : bs)
            for (int64_t k = 0; k < j1 - j0; k++)
                bs += (double)buf[k];
        } else if (store) {
#pragma omp simd reduction(+ : bs)
            for (int64_t j = j0; j < j1; j++) {
                FM_T e = FM_EXPFN(x[j] - sh);
                store[j] = e;
                bs += (double)e;
            }
        } else {
#pragma omp simd reduction(+ : bs)
            for (int64_t j = j0; j < j1; j++)
                bs += (double)FM_EXPFN(x[j] - sh);
        }
        fm_ksum_add(s, bs);
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
    for (int64_t j0 = 0; j0 < n; j0 += FM_BLOCK) {
        int64_t j1 = j0 + FM_BLOCK < n ? j0 + FM_BLOCK : n;
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

/* The last pass of softmax / log_softmax writes the output once; for large
 * outputs it uses non-temporal stores (FM_STREAM builds only), which skip
 * reading the destination lines into the cache first: that read is a third
 * of the memory traffic of a cached write pass. */
#if FM_STREAM
#define FM_STREAM_LOOP(j, n, dst, VEXPR, SEXPR)                          \
    for (; j < n && ((uintptr_t)(dst + j) % 32); j++)                    \
        dst[j] = SEXPR;                                                  \
    for (; j + FM_VLEN <= n; j += FM_VLEN)                               \
        FM_VSTREAM(dst + j, VEXPR);                                      \
    _mm_sfence();
#else
#define FM_STREAM_LOOP(j, n, dst, VEXPR, SEXPR)
#endif

/* dst = src * factor, in the element type (for float: one extra rounding of
 * the factor, 0.5 ulp, instead of two conversions per element). dst may be src. */
static void FN(seg_scale)(const FM_T *src, FM_T *dst, int64_t n, double factor, int stream)
{
    const FM_T f = (FM_T)factor;
    int64_t j = 0;
    if (stream) {
        FM_STREAM_LOOP(j, n, dst, FM_VMUL(FM_VLOADU(src + j), FM_VSET1(f)), src[j] * f)
    }
#pragma omp simd
    for (int64_t k = j; k < n; k++)
        dst[k] = src[k] * f;
}

/* out = (x - c1) - c2 in the element type; c1 is an element (or 0), so
 * x - c1 rounds exactly as the exponent argument did */
static void FN(seg_sub2)(const FM_T *x, int64_t n, double c1, double c2, FM_T *out, int stream)
{
    const FM_T a = (FM_T)c1, b = (FM_T)c2;
    int64_t j = 0;
    if (stream) {
        FM_STREAM_LOOP(j, n, out, FM_VSUB(FM_VSUB(FM_VLOADU(x + j), FM_VSET1(a)), FM_VSET1(b)),
                       (x[j] - a) - b)
    }
#pragma omp simd
    for (int64_t k = j; k < n; k++)
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

typedef struct { fm_ksum s; fm_ksum w; double cnt; int split; } FN(partial);

static void FN(chunk_sum_exp)(const FM_T *x, const FM_T *b, int64_t n, int64_t c, double shift,
                              FM_T *store, FN(partial) *p)
{
    FM_CHUNK_BOUNDS(c, n, j0, len)
    if (b)
        FN(seg_sum_exp_weighted)(x + j0, b + j0, len, shift, &p->s, &p->w);
    else
        FN(seg_sum_exp)(x + j0, len, shift, store ? store + j0 : NULL, &p->s, p->split ? &p->cnt : NULL);
}

/* Sum of exp over the row (see seg_sum_exp / seg_sum_exp_weighted). */
static void FN(row_sum_exp)(const FM_T *x, const FM_T *b, int64_t n, double shift, FM_T *store,
                            int parallel, fm_ksum *s, fm_ksum *w, double *cnt)
/* cnt != NULL asks for the split sum of seg_sum_exp */
{
    int64_t nc = (n + FM_ROW_CHUNK - 1) / FM_ROW_CHUNK;
    FN(partial) *part = NULL;
    if (parallel && nc > 1)
        part = (FN(partial) *)calloc((size_t)nc, sizeof *part);
    if (part) {
        for (int64_t c = 0; c < nc; c++)
            part[c].split = cnt != NULL;
        FM_FOR_EACH_CHUNK(nc, 1, FN(chunk_sum_exp)(x, b, n, c, shift, store, &part[c]))
    }
    /* merge in chunk order; without the array (short row, or no memory),
     * compute each chunk here, which gives the same bits */
    for (int64_t c = 0; c < nc; c++) {
        FN(partial) p = {{0, 0}, {0, 0}, 0, cnt != NULL};
        if (part)
            p = part[c];
        else
            FN(chunk_sum_exp)(x, b, n, c, shift, store, &p);
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
                      FN(seg_scale)(y + j0, y + j0, len, factor, 0))
}

static void FN(row_sub2)(const FM_T *x, int64_t n, double c1, double c2, FM_T *out, int parallel,
                         int stream)
{
    int64_t nc = (n + FM_ROW_CHUNK - 1) / FM_ROW_CHUNK;
    FM_FOR_EACH_CHUNK(nc, parallel, FM_CHUNK_BOUNDS(c, n, j0, len)
                      FN(seg_sub2)(x + j0, len, c1, c2, out + j0, stream))
}

/* ---- one row of each kernel ---- */

static void FN(logsumexp_row)(const FM_T *a, int64_t n, int parallel, FM_T *out)
{
    double m = FN(row_max)(a, NULL, n, parallel);
    fm_ksum s = {0, 0}, unused = {0, 0};
    double cnt = 0;
    FN(row_sum_exp)(a, NULL, n, m, NULL, parallel, &s, &unused, &cnt);
    /* accurate form (Blanchard, Higham & Higham 2021): the max terms are kept
     * out of the sum, so log1p sees the small remainder */
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
    FN(row_sum_exp)(a, b, n, m, NULL, parallel, &ks, &kw, NULL);
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

/* With a scratch row (short rows only), the exponentials are kept there and
 * the output is written once, streamed when `stream`; otherwise they are
 * stored in out and rescaled in place. Both give the same bits. */
static void FN(softmax_row)(const FM_T *x, int64_t n, int parallel, FM_T *out, FM_T *scratch,
                            int stream)
{
    double m = FN(row_max)(x, NULL, n, parallel);
    fm_ksum s = {0, 0}, unused = {0, 0};
    FN(row_sum_exp)(x, NULL, n, m, scratch ? scratch : out, parallel, &s, &unused, NULL);
    if (scratch)
        FN(seg_scale)(scratch, out, n, 1.0 / fm_ksum_value(&s), stream);
    else
        FN(row_scale)(out, n, 1.0 / fm_ksum_value(&s), parallel);
}

static void FN(log_softmax_row)(const FM_T *x, int64_t n, int parallel, FM_T *out, int stream)
{
    double m = FN(row_max)(x, NULL, n, parallel);
    if (!isfinite(m))   /* as scipy: a non-finite max is replaced by 0 */
        m = 0;
    fm_ksum s = {0, 0}, unused = {0, 0};
    FN(row_sum_exp)(x, NULL, n, m, NULL, parallel, &s, &unused, NULL);
    FN(row_sub2)(x, n, m, log(fm_ksum_value(&s)), out, parallel, stream);
}

/* ---- whole-array drivers: rows in parallel, or chunks of one long row ---- */

/* Short rows: one row per iteration, rows spread over the team. Long rows:
 * one row at a time, its chunks spread over the team. */
#define FM_FOR_EACH_ROW(rows, n, BODY)                                   \
    if ((n) <= FM_ROW_CHUNK) {                                           \
        const int parallel = 0;                                          \
        const int team = fm_team_size((rows) * (n));                     \
        _Pragma("omp parallel for schedule(static) num_threads(team)")   \
        for (int64_t i = 0; i < (rows); i++) { BODY; }                   \
    } else {                                                             \
        const int parallel = fm_threads > 1;                             \
        for (int64_t i = 0; i < (rows); i++) { BODY; }                   \
    }

static void FN(logsumexp)(const FM_T *a, int64_t rows, int64_t n, FM_T *out)
{
    FM_FOR_EACH_ROW(rows, n, FN(logsumexp_row)(a + i * n, n, parallel, out + i))
}

static void FN(logsumexp_weighted)(const FM_T *a, const FM_T *b, int64_t rows, int64_t n,
                                   int return_sign, FM_T *out, FM_T *sign)
{
    FM_FOR_EACH_ROW(rows, n, FN(logsumexp_weighted_row)(a + i * n, b + i * n, n, return_sign,
                                                        parallel, out + i, sign ? sign + i : NULL))
}

static int FN(stream_output)(int64_t rows, int64_t n)
{
    return FM_STREAM && (double)rows * (double)n * sizeof(FM_T) >= FM_STREAM_MIN_BYTES;
}

static void FN(softmax)(const FM_T *x, int64_t rows, int64_t n, FM_T *out)
{
    const int stream = FN(stream_output)(rows, n);
    if (n <= FM_ROW_CHUNK && stream) {
#pragma omp parallel num_threads(fm_team_size(rows * n))
        {
            FM_T *scratch = (FM_T *)malloc((size_t)n * sizeof(FM_T));  /* NULL: in place */
#pragma omp for schedule(static)
            for (int64_t i = 0; i < rows; i++)
                FN(softmax_row)(x + i * n, n, 0, out + i * n, scratch, stream);
            free(scratch);
        }
        return;
    }
    FM_FOR_EACH_ROW(rows, n, FN(softmax_row)(x + i * n, n, parallel, out + i * n, NULL, 0))
}

static void FN(log_softmax)(const FM_T *x, int64_t rows, int64_t n, FM_T *out)
{
    const int stream = FN(stream_output)(rows, n);
    FM_FOR_EACH_ROW(rows, n, FN(log_softmax_row)(x + i * n, n, parallel, out + i * n, stream))
}

#undef FN
#undef FM_BLOCK
#undef FM_FOR_EACH_ROW
#undef FM_FOR_EACH_CHUNK
#undef FM_CHUNK_BOUNDS
#undef FM_STREAM_LOOP
