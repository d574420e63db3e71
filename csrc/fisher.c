/*
 * Family "fisher": Fisher information from per-sample scores and the exact
 * Fisher of the GLM families. The kernel bodies are in fisher_kernels.h; this
 * file instantiates them for float and double, for baseline x86-64 and for
 * AVX2+FMA (fm_instantiate.h), and exports the entry points declared in
 * fastmle.h. NULL stands for an optional array not given (sample weights).
 * Every entry point returns 0, or -1 when out of memory.
 */
/* family codes: the index in fastmle.reference.glm.FAMILIES */
#define FM_MULTINOMIAL 0
#define FM_BINOMIAL 1
#define FM_GAUSSIAN 2
#define FM_POISSON 3

/* Rows of sqrt(w)-scaled scores handed to the BLAS per syrk call. */
#define FM_SYRK_ROWS 256
/* Rows per block of the exact Fisher's syrks: the block's S is
 * FM_FISHER_ROWS x P doubles (2 MB for P = 1000). */
#define FM_FISHER_ROWS 256

#include <stdint.h>

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
int glm_fisher_##SUF(const T *X, int64_t n, int64_t d, const T *params, int64_t K, int family,   \
                     const T *sample_weight, int fit_intercept, int64_t ref, double *out)       \
{ return FM_PICK(glm_fisher_##SUF, X, n, d, params, K, family, sample_weight, fit_intercept,     \
                 ref, out); }                                                                   \
int glm_fisher_diag_##SUF(const T *X, int64_t n, int64_t d, const T *params, int64_t K,          \
                          int family, const T *sample_weight, int fit_intercept, int64_t ref,   \
                          double *out)                                                          \
{ return FM_PICK(glm_fisher_diag_##SUF, X, n, d, params, K, family, sample_weight,              \
                 fit_intercept, ref, out); }                                                    \
int glm_fisher_vp_##SUF(const T *X, int64_t n, int64_t d, const T *params, int64_t K,            \
                        int family, const T *sample_weight, int fit_intercept, int64_t ref,     \
                        const double *v, double *out)                                           \
{ return FM_PICK(glm_fisher_vp_##SUF, X, n, d, params, K, family, sample_weight, fit_intercept, \
                 ref, v, out); }

FM_FISHER_EXPORT(double, f64)
FM_FISHER_EXPORT(float, f32)
