/*
 * Family "special": logsumexp, softmax, log_softmax.
 * The kernel bodies are in special_kernels.h; this file instantiates them for
 * float and double, for baseline x86-64 and for AVX2+FMA (fm_instantiate.h),
 * and exports the entry points declared in fastmle.h, which pick the
 * instruction set.
 */
#define FM_BODY "special_kernels.h"
#include "fm_instantiate.h"

void logsumexp_f64(const double *a, int64_t rows, int64_t n, double *out)
{ FM_PICK(logsumexp_f64, a, rows, n, out); }
void logsumexp_f32(const float *a, int64_t rows, int64_t n, float *out)
{ FM_PICK(logsumexp_f32, a, rows, n, out); }

void logsumexp_weighted_f64(const double *a, const double *b, int64_t rows, int64_t n,
                            int return_sign, double *out, double *sign)
{ FM_PICK(logsumexp_weighted_f64, a, b, rows, n, return_sign, out, sign); }
void logsumexp_weighted_f32(const float *a, const float *b, int64_t rows, int64_t n,
                            int return_sign, float *out, float *sign)
{ FM_PICK(logsumexp_weighted_f32, a, b, rows, n, return_sign, out, sign); }

void softmax_f64(const double *x, int64_t rows, int64_t n, double *out)
{ FM_PICK(softmax_f64, x, rows, n, out); }
void softmax_f32(const float *x, int64_t rows, int64_t n, float *out)
{ FM_PICK(softmax_f32, x, rows, n, out); }

void log_softmax_f64(const double *x, int64_t rows, int64_t n, double *out)
{ FM_PICK(log_softmax_f64, x, rows, n, out); }
void log_softmax_f32(const float *x, int64_t rows, int64_t n, float *out)
{ FM_PICK(log_softmax_f32, x, rows, n, out); }

/* The exponential on its own, so tests can check it over the whole range. */
#define FM_EXP_LOOP(T, EXPFN)                       \
    for (int64_t i = 0; i < n; i++)                 \
        out[i] = EXPFN(x[i]);

#if FM_MULTIVERSION
__attribute__((target("avx2,fma"))) static void exp_f64_avx2(const double *x, double *out, int64_t n)
{ FM_EXP_LOOP(double, fm_exp) }
__attribute__((target("avx2,fma"))) static void exp_f32_avx2(const float *x, float *out, int64_t n)
{ FM_EXP_LOOP(float, fm_expf) }
__attribute__((target("avx2,fma"))) static void exp_nonpos_flush_f32_avx2(const float *x, float *out,
                                                                         int64_t n)
{ FM_EXP_LOOP(float, fm_expf_nonpos_flush) }
#endif
static void exp_f64_base(const double *x, double *out, int64_t n) { FM_EXP_LOOP(double, fm_exp) }
static void exp_f32_base(const float *x, float *out, int64_t n) { FM_EXP_LOOP(float, fm_expf) }
static void exp_nonpos_flush_f32_base(const float *x, float *out, int64_t n)
{ FM_EXP_LOOP(float, fm_expf_nonpos_flush) }

void fm_exp_f64(const double *x, double *out, int64_t n) { FM_PICK(exp_f64, x, out, n); }
void fm_exp_f32(const float *x, float *out, int64_t n) { FM_PICK(exp_f32, x, out, n); }
void fm_exp_nonpos_flush_f32(const float *x, float *out, int64_t n)
{ FM_PICK(exp_nonpos_flush_f32, x, out, n); }
