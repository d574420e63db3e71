/*
 * Family "glm": the likelihood families of generalized linear models (loss,
 * gradient, prediction) and the minibatch SGD epoch. The kernel bodies are in
 * glm_kernels.h; this file instantiates them for float and double, for
 * baseline x86-64 and for AVX2+FMA (fm_instantiate.h), and exports the entry
 * points declared in fastmle.h. NULL stands for an optional array not given.
 */
#include <string.h>
/* family codes: the index in fastmle.reference.glm.FAMILIES */
#define FM_MULTINOMIAL 0
#define FM_BINOMIAL 1
#define FM_GAUSSIAN 2
#define FM_POISSON 3
#define FM_BODY "glm_kernels.h"
#include "fm_instantiate.h"

#define FM_GLM_EXPORT(T, SUF)                                                                    \
int glm_predict_##SUF(const T *X, int64_t n, int64_t d, const T *params, const T *offset,        \
                      int64_t K, int family, T *out)                                            \
{ return FM_PICK(glm_predict_##SUF, X, n, d, params, offset, K, family, out); }                 \
int glm_predict_csr_##SUF(const T *data, const int32_t *indices, const int64_t *indptr,         \
                          int64_t n, int64_t d, const T *params, const T *offset, int64_t K,    \
                          int family, T *out)                                                   \
{ return FM_PICK(glm_predict_csr_##SUF, data, indices, indptr, n, d, params, offset, K, family, \
                 out); }                                                                        \
int glm_loss_grad_##SUF(const T *X, int64_t n, int64_t d, const int64_t *labels,                \
                        const T *targets, const T *sample_weight, const T *params,              \
                        const T *offset, int64_t K, int family, double *loss, T *grad)          \
{ return FM_PICK(glm_loss_grad_##SUF, X, n, d, labels, targets, sample_weight, params, offset,  \
                 K, family, loss, grad); }                                                      \
int glm_loss_grad_csr_##SUF(const T *data, const int32_t *indices, const int64_t *indptr,       \
                            int64_t n, int64_t d, const int64_t *labels, const T *targets,      \
                            const T *sample_weight, const T *params, const T *offset,           \
                            int64_t K, int family, double *loss, T *grad)                       \
{ return FM_PICK(glm_loss_grad_csr_##SUF, data, indices, indptr, n, d, labels, targets,         \
                 sample_weight, params, offset, K, family, loss, grad); }                       \
void scan_rows_##SUF(const T *X, int64_t n, int64_t d, double *out)                            \
{ FM_PICK(scan_rows_##SUF, X, n, d, out); }                                                     \
int64_t sgd_epoch_csr_##SUF(const T *data, const int32_t *indices, const int64_t *indptr,       \
                            int64_t n, int64_t d, const int64_t *labels, const T *targets,      \
                            const T *sample_weight, const int64_t *perm, int64_t m,             \
                            const double *lr, int64_t n_batches, int family,                    \
                            int64_t batch_size, double l2, double l1, double momentum,          \
                            int nesterov, int fit_intercept, T *params, int64_t K, T *velocity, \
                            T *avg, int64_t avg_start, int64_t step0, double *loss)             \
{ return FM_PICK(sgd_epoch_csr_##SUF, data, indices, indptr, n, d, labels, targets,             \
                 sample_weight, perm, m, lr, n_batches, family, batch_size, l2, l1, momentum,   \
                 nesterov, fit_intercept, params, K, velocity, avg, avg_start, step0, loss); }  \
int64_t sgd_epoch_##SUF(const T *X, int64_t n, int64_t d, const int64_t *labels,                \
                        const T *targets, const T *sample_weight, const int64_t *perm,          \
                        int64_t m, const double *lr, int64_t n_batches, int family,             \
                        int64_t batch_size, double l2, double l1, double momentum,              \
                        int nesterov, int fit_intercept, T *params, int64_t K, T *velocity,     \
                        T *avg, int64_t avg_start, int64_t step0, double *loss)                 \
{ return FM_PICK(sgd_epoch_##SUF, X, n, d, labels, targets, sample_weight, perm, m, lr,         \
                 n_batches, family, batch_size, l2, l1, momentum, nesterov, fit_intercept,      \
                 params, K, velocity, avg, avg_start, step0, loss); }

FM_GLM_EXPORT(double, f64)
FM_GLM_EXPORT(float, f32)
