/*
 * Kernel pieces shared by several families' bodies, instantiated with them
 * (FN, FM_T as in the including body file).
 */

/* Largest element, ignoring NaN (-inf if there is none). A row with NaN,
 * +inf or only -inf then gives NaN through exp(x - max), as scipy and torch. */
static double FN(seg_max)(const FM_T *x, int64_t n)
{
    FM_T m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return (double)m;
}

/* Largest element (returned) and smallest (*lo), both ignoring NaN. */
static double FN(seg_max_min)(const FM_T *x, int64_t n, double *lo)
{
    FM_T m = -INFINITY, l = INFINITY;
#pragma omp simd reduction(max : m) reduction(min : l)
    for (int64_t j = 0; j < n; j++) {
        m = x[j] > m ? x[j] : m;
        l = x[j] < l ? x[j] : l;
    }
    *lo = (double)l;
    return (double)m;
}

/* Whether every exp(x - max) of a row with this max and min is a normal
 * number, so FM_EXPFN_NORMAL gives the same bits as FM_EXPFN. (Not for rows
 * with inf or only -inf: max - min is then inf or NaN.) */
static inline int FN(exp_normal_ok)(double max, double min)
{
    return max - min <= FM_EXP_NORMAL_RANGE;
}

/* Row i + 1 of the (rows, n) array x, what the thread working on row i most
 * likely reads next, or NULL after the last row. */
static const FM_T *FN(next_row)(const FM_T *x, int64_t i, int64_t rows, int64_t n)
{
    return i + 1 < rows ? x + (i + 1) * n : NULL;
}

/* Pull len elements at p (if p is not NULL) towards the cache, for double
 * rows only. Called once per block of a row's exponential loop with the same
 * block of the next row, so the memory traffic of the next row overlaps this
 * row's arithmetic. Measured on 32768 x 1000, 2 threads, Zen 4 (session 9,
 * `python -m fastmle bench`, two alternating runs each): float64 softmax
 * and log_softmax took 18.3-18.7 ms with it against 20.1-23.2 without; but
 * for float32, whose block is a whole 1000-element row, so 63 prefetches
 * at once, the hardware prefetcher alone did better: softmax 7.8-7.9 ms
 * against 8.8-8.9, logsumexp 6.8-6.9 against 7.9-8.1, cross_entropy
 * 8.3-8.7 against 10.2-10.3; on other float32 shapes (262144 x 100,
 * 4096 x 8000) within a few percent either way. (An earlier, slower
 * exponential gained 10-20% from it in float32 too.) */
static inline void FN(prefetch)(const FM_T *p, int64_t len)
{
    if (p && sizeof(FM_T) == 8)
        for (int64_t k = 0; k < len; k += 64 / (int64_t)sizeof(FM_T))
            __builtin_prefetch(p + k);
}

/* Block length of the sums of exponentials (special and losses families).
 * Longer for float: each block ends with a horizontal sum of the vector
 * lanes that gcc does one lane at a time (16 dependent additions for
 * float), and float's sums in double stay far more accurate than its
 * results; 1024-element blocks took float32 softmax in cache from 0.50 to
 * 0.42 ns per element (1 thread, Zen 4). A multiple of 256. */
#define FM_EXP_BLOCK (sizeof(FM_T) == 4 ? 1024 : 256)

/* Sum of e[0:len] in double, pairs e[k] + e[k + len/2] added in the element
 * type first (one rounding, at most 2^-24 relative for float): half the
 * conversions to double, which bound this loop's speed. */
static inline double FN(sum_pairs)(const FM_T *e, int64_t len)
{
    const int64_t half = len / 2;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < half; k++)
        s += (double)(e[k] + e[k + half]);
    if (len & 1)
        s += (double)e[len - 1];
    return s;
}
