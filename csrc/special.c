/*
 * Family "special": logsumexp, softmax, log_softmax.
 * The kernel bodies are in special_kernels.h; this file instantiates them for
 * float and double, for baseline x86-64, AVX2+FMA and AVX-512 (fm_instantiate.h),
 * and exports the entry points declared in fastmle.h, which pick the
 * instruction set.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>   /* streaming stores (special_kernels.h) */
#endif
#include <string.h>
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

/* The exponentials on their own, so tests can check them over the whole
 * range: fm_<NAME>(x, out, n) sets out[i] = EXPFN(x[i]), in the instruction
 * set picked at run time. */
#define FM_EXP_LOOP(EXPFN)                          \
    for (int64_t i = 0; i < n; i++)                 \
        out[i] = EXPFN(x[i]);
#if FM_MULTIVERSION
#define FM_EXP_SIMD_CLONES(NAME, T, EXPFN)                                                  \
    __attribute__((target("avx2,fma"))) static void NAME##_avx2(const T *x, T *out, int64_t n) \
    { FM_EXP_LOOP(EXPFN) }                                                                  \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,"                    \
                          "prefer-vector-width=512")))                                      \
    static void NAME##_avx512(const T *x, T *out, int64_t n) { FM_EXP_LOOP(EXPFN) }
#else
#define FM_EXP_SIMD_CLONES(NAME, T, EXPFN)
#endif
#define FM_EXP_EXPORT(NAME, T, EXPFN)                                          \
    FM_EXP_SIMD_CLONES(NAME, T, EXPFN)                                         \
    static void NAME##_base(const T *x, T *out, int64_t n) { FM_EXP_LOOP(EXPFN) } \
    void fm_##NAME(const T *x, T *out, int64_t n) { FM_PICK(NAME, x, out, n); }

FM_EXP_EXPORT(exp_f64, double, fm_exp)
FM_EXP_EXPORT(exp_f32, float, fm_expf)
FM_EXP_EXPORT(exp_normal_f64, double, fm_exp_normal)
FM_EXP_EXPORT(exp_normal_f32, float, fm_expf_normal)
FM_EXP_EXPORT(exp_nonpos_flush_f32, float, fm_expf_nonpos_flush)
FM_EXP_EXPORT(log_f64, double, fm_log)
