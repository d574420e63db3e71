/*
 * Family "fisher": Fisher information from per-sample scores and the exact
 * Fisher of the GLM families. The kernel bodies are in fisher_kernels.h; this
 * file instantiates them for float and double, for baseline x86-64 and for
 * AVX2+FMA (fm_instantiate.h), and exports the entry points declared in
 * fastmle.h. NULL stands for an optional array not given (sample weights).
 * Every entry point returns 0, or -1 when out of memory.
 */
#include <stdint.h>
#include <string.h>

/* Four doubles as one vector value (GCC/clang vector extension): one AVX2
 * register in the AVX2 clones, two SSE2 registers in the baseline ones. */
typedef double fm_v4d __attribute__((vector_size(32)));

/* family codes: the index in fastmle.reference.glm.FAMILIES */
#define FM_MULTINOMIAL 0
#define FM_BINOMIAL 1
#define FM_GAUSSIAN 2
#define FM_POISSON 3

/* Rows of sqrt(w)-scaled scores handed to the BLAS per syrk call. */
#define FM_SYRK_ROWS 256
/* Rows per block of the exact Fisher: their xt and covariance terms (256 x
 * (features + pairs) doubles) stay in cache while the threads sum them. */
#define FM_FISHER_ROWS 256
/* Partial sums of the exact Fisher that row blocks are dealt to (at most;
 * and at most FM_FISHER_LANE_BUDGET doubles in all) */
#define FM_FISHER_LANES 4
#define FM_FISHER_LANE_BUDGET ((int64_t)1 << 25)
/* The exact Fisher's register tile: 4 x 8 doubles (eight AVX2 vectors). */
#define FM_TILE_J 4
#define FM_TILE_L 8

/* index of the pair (a, b), a <= b, in the row-major upper triangle of n x n */
static inline int64_t fm_tri(int64_t a, int64_t b, int64_t n) { return a * n - a * (a - 1) / 2 + (b - a); }

/* Rows per chunk of the diagonal and the Fisher-vector product: at most 64
 * chunks, at least 256 rows; depends on n only, so the chunks' partial sums,
 * merged in chunk order, do not depend on the thread count. */
static inline int64_t fm_fisher_chunk(int64_t n)
{
    const int64_t c = (n + 63) / 64;
    return c > 256 ? c : 256;
}

#define FM_BODY "fisher_kernels.h"
#include "fm_instantiate.h"

#define FM_FISHER_EXPORT(T, SUF)                                                                 \
int fisher_accumulate_##SUF(const T *scores, int64_t n, int64_t P, const T *sample_weight,       \
                            double alpha, double beta, T *acc)                                  \
{ return FM_PICK(fisher_accumulate_##SUF, scores, n, P, sample_weight, alpha, beta, acc); }     \
int fisher_accumulate_diag_##SUF(const T *scores, int64_t n, int64_t P, const T *sample_weight,  \
                                 double alpha, double beta, T *acc)                             \
{ FM_PICK(fisher_accumulate_diag_##SUF, scores, n, P, sample_weight, alpha, beta, acc);         \
  return 0; }                                                                                   \
int glm_fisher_##SUF(const T *X, int64_t n, int64_t d, const T *params, const T *offset,        \
                     int64_t K, int family, const T *sample_weight, int fit_intercept,          \
                     int64_t ref, double *out)                                                  \
{ return FM_PICK(glm_fisher_##SUF, X, n, d, params, offset, K, family, sample_weight,           \
                 fit_intercept, ref, out); }                                                    \
int glm_fisher_diag_##SUF(const T *X, int64_t n, int64_t d, const T *params, const T *offset,   \
                          int64_t K, int family, const T *sample_weight, int fit_intercept,     \
                          int64_t ref, double *out)                                             \
{ return FM_PICK(glm_fisher_diag_##SUF, X, n, d, params, offset, K, family, sample_weight,      \
                 fit_intercept, ref, out); }                                                    \
int glm_fisher_vp_##SUF(const T *X, int64_t n, int64_t d, const T *params, const T *offset,     \
                        int64_t K, int family, const T *sample_weight, int fit_intercept,       \
                        int64_t ref, const double *v, double *out)                              \
{ return FM_PICK(glm_fisher_vp_##SUF, X, n, d, params, offset, K, family, sample_weight,        \
                 fit_intercept, ref, v, out); }

FM_FISHER_EXPORT(double, f64)
FM_FISHER_EXPORT(float, f32)
