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
int fm_simd_level(void);            /* 0 = baseline x86-64 / generic, 1 = AVX2+FMA */
int fm_set_simd_level(int level);   /* clamps to what the CPU supports; returns it */
const char *fm_simd_name(void);

/* ---- vectorized exponential (csrc/vexp.h), exposed for testing ---- */
void fm_exp_f64(const double *x, double *out, int64_t n);
void fm_exp_f32(const float *x, float *out, int64_t n);

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

/* FASTMLE_CDEF_END */

#endif
