/*
 * Family "losses": likelihood losses with their gradients and information
 * measures (cross-entropy, NLL, BCE, Gaussian NLL, entropy, KL).
 * The kernel bodies are in losses_kernels.h; this file instantiates them for
 * float and double, for baseline x86-64 and for AVX2+FMA (fm_instantiate.h),
 * and exports the entry points declared in fastmle.h, which pick the
 * instruction set. NULL stands for an optional array that was not given.
 */
#include <string.h>
#define FM_BODY "losses_kernels.h"
#include "fm_instantiate.h"

/* The entry points for element type T (suffix SUF). */
#define FM_LOSSES_EXPORT(T, SUF)                                                                 \
void nll_rows_##SUF(const T *log_probs, const int64_t *target, const T *weight, int64_t rows,    \
                    int64_t n, int64_t ignore_index, double smoothing, double grad_scale,       \
                    double *loss, T *grad)                                                      \
{ FM_PICK(nll_rows_##SUF, log_probs, target, weight, rows, n, ignore_index, smoothing,          \
          grad_scale, loss, grad); }                                                            \
void cross_entropy_rows_##SUF(const T *logits, const int64_t *target, const T *weight,         \
                              int64_t rows, int64_t n, int64_t ignore_index, double smoothing,  \
                              double grad_scale, double *loss, T *grad)                         \
{ FM_PICK(cross_entropy_rows_##SUF, logits, target, weight, rows, n, ignore_index, smoothing,   \
          grad_scale, loss, grad); }                                                            \
void cross_entropy_soft_rows_##SUF(const T *logits, const T *target, const T *weight,          \
                                   int64_t rows, int64_t n, double smoothing, double grad_scale,\
                                   double *loss, T *grad)                                       \
{ FM_PICK(cross_entropy_soft_rows_##SUF, logits, target, weight, rows, n, smoothing,           \
          grad_scale, loss, grad); }                                                            \
void bce_with_logits_##SUF(const T *logits, const T *target, const T *weight,                  \
                           const T *pos_weight, int64_t n, double grad_scale, int64_t chunk,   \
                           double *partial, T *loss, T *grad)                                   \
{ FM_PICK(bce_with_logits_##SUF, logits, target, weight, pos_weight, n, grad_scale, chunk,     \
          partial, loss, grad); }                                                               \
void gaussian_nll_##SUF(const T *pred, const T *target, const T *var, int64_t n, int64_t var_n,\
                        double eps, int full, double loss_scale, double grad_scale,             \
                        int64_t chunk, double *partial, T *loss, T *grad_pred, T *grad_var)     \
{ FM_PICK(gaussian_nll_##SUF, pred, target, var, n, var_n, eps, full, loss_scale, grad_scale,  \
          chunk, partial, loss, grad_pred, grad_var); }                                         \
void entropy_rows_##SUF(const T *probs, int64_t rows, int64_t n, double *out)                  \
{ FM_PICK(entropy_rows_##SUF, probs, rows, n, out); }                                           \
void entropy_from_logits_rows_##SUF(const T *logits, int64_t rows, int64_t n, double *out)     \
{ FM_PICK(entropy_from_logits_rows_##SUF, logits, rows, n, out); }                              \
void kl_div_rows_##SUF(const T *p, const T *q, int64_t rows, int64_t n, double *out)           \
{ FM_PICK(kl_div_rows_##SUF, p, q, rows, n, out); }                                             \
void kl_div_from_logits_rows_##SUF(const T *logits_p, const T *logits_q, int64_t rows,         \
                                   int64_t n, double *out)                                      \
{ FM_PICK(kl_div_from_logits_rows_##SUF, logits_p, logits_q, rows, n, out); }

FM_LOSSES_EXPORT(double, f64)
FM_LOSSES_EXPORT(float, f32)
