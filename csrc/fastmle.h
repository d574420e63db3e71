/*
 * fastmle C kernels: the one place their declarations live.
 *
 * csrc/build_ffi.py feeds this header to cffi's cdef (everything between the
 * FASTMLE_CDEF markers), so the Python wrappers in fastmle/_c.py and the C
 * sources can never disagree about a signature.
 *
 * Conventions (see DESIGN.md): every kernel sees C-contiguous data, reduces
 * over the last axis of a (rows, n) array, and trusts its inputs; the Python
 * validate layer has already checked shapes, dtypes and label ranges.
 * Function names and argument order match fastmle/reference/<family>.py and
 * fastmle/_numba/<family>.py.
 */
#ifndef FASTMLE_H
#define FASTMLE_H
#include <stdint.h>

/* FASTMLE_CDEF_BEGIN */

/* ---- runtime: threads and SIMD level (csrc/runtime.c) ---- */
int fm_set_num_threads(int n);      /* returns the value now in force */
int fm_get_num_threads(void);
int fm_openmp_enabled(void);        /* 1 if built with OpenMP */
int fm_simd_level(void);            /* 0 = baseline x86-64 / generic, 1 = AVX2+FMA, 2 = AVX-512 */
int fm_set_simd_level(int level);   /* clamps to what the CPU supports; returns it */
/* Sleeps at barriers after which an SGD epoch's team gives way to its
 * first thread alone (see fm_team_barrier); returns the previous value. */
int fm_set_team_disband_sleeps(int sleeps);
/* For tests: a team disbands at this barrier crossing (1: its first) as
 * well, whatever its sleeps; 0 (the default) or less: never. Returns the
 * previous value. */
int fm_set_team_disband_at(int crossing);
/* The SGD epoch's trial of its team against its first thread alone:
 * batches per timed window (default 256, 0: none) and the margin (percent,
 * default 10, kept in [-100, 1000000]) by which one thread must win;
 * returns the previous batches. */
int fm_set_team_trial(int batches, int margin_percent);
/* For tests: the last SGD epoch's team size as OpenMP started it (1: one
 * thread), and in *trial its trial's outcome: 0 none, 1 the team resumed,
 * 2 thread 0 kept on alone, 3 the epoch stopped inside the trial, 4 the
 * team disbanded at its end. The last epoch on any thread. */
int fm_team_last(int *trial);
const char *fm_simd_name(void);
/* cblas_dsyrk and cblas_ssyrk of the BLAS numpy uses, found by
 * fastmle/_blas.py (NULL: none; the kernels then use their own loops).
 * int64: 1 for an ILP64 build (64-bit dimensions), 0 for LP64. Returns 1
 * when registered. */
int fm_set_blas(void *dsyrk, void *ssyrk, int int64);

/* ---- vectorized exponential (csrc/vexp.h), exposed for testing ---- */
void fm_exp_f64(const double *x, double *out, int64_t n);
void fm_exp_f32(const float *x, float *out, int64_t n);
void fm_exp_normal_f64(const double *x, double *out, int64_t n);   /* x in [-708.39, 0] */
void fm_exp_normal_f32(const float *x, float *out, int64_t n);     /* x in [-87.3365, 0] */
void fm_exp_nonpos_flush_f32(const float *x, float *out, int64_t n);   /* x <= 0, FLT_MIN flush */
void fm_log_f64(const double *x, double *out, int64_t n);   /* csrc/vexp.h fm_log */

/* ---- family "special": log-sum-exp, softmax, log-softmax (csrc/special.c) ---- */
void logsumexp_f64(const double *a, int64_t rows, int64_t n, double *out);
void logsumexp_f32(const float *a, int64_t rows, int64_t n, float *out);
void logsumexp_weighted_f64(const double *a, const double *b, int64_t rows, int64_t n,
                            int return_sign, double *out, double *sign);
void logsumexp_weighted_f32(const float *a, const float *b, int64_t rows, int64_t n,
                            int return_sign, float *out, float *sign);
void softmax_f64(const double *x, int64_t rows, int64_t n, double *out);
void softmax_f32(const float *x, int64_t rows, int64_t n, float *out);
void log_softmax_f64(const double *x, int64_t rows, int64_t n, double *out);
void log_softmax_f32(const float *x, int64_t rows, int64_t n, float *out);

/* ---- family "losses": likelihood losses and information measures (csrc/losses.c) ----
 * NULL = optional array not given. grad may be NULL (no gradient) or the
 * logits array itself (in-place gradient). loss/out: double, one per row
 * (row kernels) or per element (bce, gaussian). grad_var has n elements. */
void nll_rows_f64(const double *log_probs, const int64_t *target, const double *weight,
                  int64_t rows, int64_t n, int64_t ignore_index, double smoothing,
                  double grad_scale, double *loss, double *grad);
void nll_rows_f32(const float *log_probs, const int64_t *target, const float *weight,
                  int64_t rows, int64_t n, int64_t ignore_index, double smoothing,
                  double grad_scale, double *loss, float *grad);
void cross_entropy_rows_f64(const double *logits, const int64_t *target, const double *weight,
                            int64_t rows, int64_t n, int64_t ignore_index, double smoothing,
                            double grad_scale, double *loss, double *grad);
void cross_entropy_rows_f32(const float *logits, const int64_t *target, const float *weight,
                            int64_t rows, int64_t n, int64_t ignore_index, double smoothing,
                            double grad_scale, double *loss, float *grad);
void cross_entropy_soft_rows_f64(const double *logits, const double *target, const double *weight,
                                 int64_t rows, int64_t n, double smoothing, double grad_scale,
                                 double *loss, double *grad);
void cross_entropy_soft_rows_f32(const float *logits, const float *target, const float *weight,
                                 int64_t rows, int64_t n, double smoothing, double grad_scale,
                                 double *loss, float *grad);
void bce_with_logits_f64(const double *logits, const double *target, const double *weight,
                         const double *pos_weight, int64_t n, double grad_scale, int64_t chunk,
                         double *partial, double *loss, double *grad);
void bce_with_logits_f32(const float *logits, const float *target, const float *weight,
                         const float *pos_weight, int64_t n, double grad_scale, int64_t chunk,
                         double *partial, float *loss, float *grad);
void gaussian_nll_f64(const double *pred, const double *target, const double *var, int64_t n,
                      int64_t var_n, double eps, int full, double loss_scale, double grad_scale,
                      int64_t chunk, double *partial, double *loss, double *grad_pred, double *grad_var);
void gaussian_nll_f32(const float *pred, const float *target, const float *var, int64_t n,
                      int64_t var_n, double eps, int full, double loss_scale, double grad_scale,
                      int64_t chunk, double *partial, float *loss, float *grad_pred, float *grad_var);
void entropy_rows_f64(const double *probs, int64_t rows, int64_t n, double *out);
void entropy_rows_f32(const float *probs, int64_t rows, int64_t n, double *out);
void entropy_from_logits_rows_f64(const double *logits, int64_t rows, int64_t n, double *out);
void entropy_from_logits_rows_f32(const float *logits, int64_t rows, int64_t n, double *out);
void kl_div_rows_f64(const double *p, const double *q, int64_t rows, int64_t n, double *out);
void kl_div_rows_f32(const float *p, const float *q, int64_t rows, int64_t n, double *out);
void kl_div_from_logits_rows_f64(const double *logits_p, const double *logits_q, int64_t rows,
                                 int64_t n, double *out);
void kl_div_from_logits_rows_f32(const float *logits_p, const float *logits_q, int64_t rows,
                                 int64_t n, double *out);

/* ---- family "glm": GLM likelihoods and the minibatch SGD epoch (csrc/glm.c) ----
 * params is (K, d + 1): one row per output, the intercept in column d.
 * family: 0 multinomial, 1 binomial, 2 gaussian, 3 poisson. labels (int64,
 * multinomial) or targets ((n, K), the others) is NULL; so are an absent
 * sample_weight, grad, velocity (no momentum) and avg (no averaging).
 * X is dense (n, d) or, in the _csr kernels, compressed sparse rows (data,
 * int32 indices, int64 indptr). offset (n,), NULL when not given, is added
 * to every output's linear predictor (X params[:, :d]^T + params[:, d]).
 * glm_predict / glm_loss_grad return 0, or -1 when out of memory; scan_rows
 * writes out[0], out[1] (see fastmle/reference/glm.py); sgd_epoch returns
 * the number of batches done (fewer when a batch's loss was not finite), or
 * -1 when out of memory. */
int glm_predict_f64(const double *X, int64_t n, int64_t d, const double *params,
                    const double *offset, int64_t K, int family, double *out);
int glm_predict_csr_f64(const double *data, const int32_t *indices, const int64_t *indptr, int64_t n,
                        int64_t d, const double *params, const double *offset, int64_t K, int family,
                        double *out);
int glm_loss_grad_f64(const double *X, int64_t n, int64_t d, const int64_t *labels,
                      const double *targets, const double *sample_weight, const double *params,
                      const double *offset, int64_t K, int family, double *loss, double *grad);
int glm_loss_grad_csr_f64(const double *data, const int32_t *indices, const int64_t *indptr,
                          int64_t n, int64_t d, const int64_t *labels, const double *targets,
                          const double *sample_weight, const double *params, const double *offset,
                          int64_t K, int family, double *loss, double *grad);
void scan_rows_f64(const double *X, int64_t n, int64_t d, double *out);
int64_t sgd_epoch_f64(const double *X, int64_t n, int64_t d, const int64_t *labels,
                      const double *targets, const double *sample_weight, const int64_t *perm,
                      int64_t m, const double *lr, int64_t n_batches, int family,
                      int64_t batch_size, double l2, double l1, double momentum, int nesterov,
                      int fit_intercept, double *params, int64_t K, double *velocity, double *avg,
                      int64_t avg_start, int64_t step0, double *loss);
int64_t sgd_epoch_csr_f64(const double *data, const int32_t *indices, const int64_t *indptr,
                          int64_t n, int64_t d, const int64_t *labels, const double *targets,
                          const double *sample_weight, const int64_t *perm, int64_t m,
                          const double *lr, int64_t n_batches, int family, int64_t batch_size,
                          double l2, double l1, double momentum, int nesterov, int fit_intercept,
                          double *params, int64_t K, double *velocity, double *avg, int64_t avg_start,
                          int64_t step0, double *loss);
int glm_predict_f32(const float *X, int64_t n, int64_t d, const float *params,
                    const float *offset, int64_t K, int family, float *out);
int glm_predict_csr_f32(const float *data, const int32_t *indices, const int64_t *indptr, int64_t n,
                        int64_t d, const float *params, const float *offset, int64_t K, int family,
                        float *out);
int glm_loss_grad_f32(const float *X, int64_t n, int64_t d, const int64_t *labels,
                      const float *targets, const float *sample_weight, const float *params,
                      const float *offset, int64_t K, int family, double *loss, float *grad);
int glm_loss_grad_csr_f32(const float *data, const int32_t *indices, const int64_t *indptr,
                          int64_t n, int64_t d, const int64_t *labels, const float *targets,
                          const float *sample_weight, const float *params, const float *offset,
                          int64_t K, int family, double *loss, float *grad);
void scan_rows_f32(const float *X, int64_t n, int64_t d, double *out);
int64_t sgd_epoch_f32(const float *X, int64_t n, int64_t d, const int64_t *labels,
                      const float *targets, const float *sample_weight, const int64_t *perm,
                      int64_t m, const double *lr, int64_t n_batches, int family,
                      int64_t batch_size, double l2, double l1, double momentum, int nesterov,
                      int fit_intercept, float *params, int64_t K, float *velocity, float *avg,
                      int64_t avg_start, int64_t step0, double *loss);
int64_t sgd_epoch_csr_f32(const float *data, const int32_t *indices, const int64_t *indptr,
                          int64_t n, int64_t d, const int64_t *labels, const float *targets,
                          const float *sample_weight, const int64_t *perm, int64_t m,
                          const double *lr, int64_t n_batches, int family, int64_t batch_size,
                          double l2, double l1, double momentum, int nesterov, int fit_intercept,
                          float *params, int64_t K, float *velocity, float *avg, int64_t avg_start,
                          int64_t step0, double *loss);

/* ---- family "fisher": Fisher information (csrc/fisher.c) ----
 * Layouts as in fastmle/reference/fisher.py: symmetric results are written
 * as their upper triangle; the exact-Fisher kernels write double. Return 0,
 * or -1 when out of memory. */
int fisher_accumulate_f64(const double *scores, int64_t n, int64_t P, const double *sample_weight,
                          double alpha, double beta, double *acc);
int fisher_accumulate_diag_f64(const double *scores, int64_t n, int64_t P,
                               const double *sample_weight, double alpha, double beta,
                               double *acc);
int glm_fisher_f64(const double *X, int64_t n, int64_t d, const double *params,
                   const double *offset, int64_t K, int family, const double *sample_weight,
                   int fit_intercept, int64_t ref, double *out);
int glm_fisher_diag_f64(const double *X, int64_t n, int64_t d, const double *params,
                        const double *offset, int64_t K, int family, const double *sample_weight,
                        int fit_intercept, int64_t ref, double *out);
int glm_fisher_vp_f64(const double *X, int64_t n, int64_t d, const double *params,
                      const double *offset, int64_t K, int family, const double *sample_weight,
                      int fit_intercept, int64_t ref, const double *v, double *out);
int fisher_accumulate_f32(const float *scores, int64_t n, int64_t P, const float *sample_weight,
                          double alpha, double beta, float *acc);
int fisher_accumulate_diag_f32(const float *scores, int64_t n, int64_t P,
                               const float *sample_weight, double alpha, double beta, float *acc);
int glm_fisher_f32(const float *X, int64_t n, int64_t d, const float *params,
                   const float *offset, int64_t K, int family, const float *sample_weight,
                   int fit_intercept, int64_t ref, double *out);
int glm_fisher_diag_f32(const float *X, int64_t n, int64_t d, const float *params,
                        const float *offset, int64_t K, int family, const float *sample_weight,
                        int fit_intercept, int64_t ref, double *out);
int glm_fisher_vp_f32(const float *X, int64_t n, int64_t d, const float *params,
                      const float *offset, int64_t K, int family, const float *sample_weight,
                      int fit_intercept, int64_t ref, const double *v, double *out);

/* FASTMLE_CDEF_END */

#endif
