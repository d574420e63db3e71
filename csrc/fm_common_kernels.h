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
