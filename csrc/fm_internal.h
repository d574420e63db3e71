/*
 * Internal helpers shared by the C kernel files: thread count, the SIMD
 * dispatch switch, and the macros that stamp out one kernel body for each
 * element type and instruction set.
 */
#ifndef FASTMLE_INTERNAL_H
#define FASTMLE_INTERNAL_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fastmle.h"

/* Set by fm_set_num_threads(); read by every parallel region. */
extern int fm_threads;
/* Which clones run (chosen at load, see runtime.c): 0 baseline x86-64,
 * 1 AVX2+FMA, 2 AVX-512 (F, BW, DQ, VL). */
extern int fm_simd;

/* Work below this many elements runs on the calling thread only: starting a
 * team costs more than it saves. */
#define FM_PARALLEL_MIN_ELEMENTS 32768
/* Rows longer than this are split into chunks of this size that all threads
 * share. Chunk boundaries depend only on n, never on the thread count, and
 * partial results are merged in chunk order, so the answer does not depend on
 * the number of threads. */
#define FM_ROW_CHUNK 16384

/* x86-64 with gcc or clang on glibc: compile each kernel three times, for
 * baseline x86-64, with AVX2+FMA and with AVX-512, and pick at run time.
 * Elsewhere, one generic build. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(FASTMLE_NO_MULTIVERSION)
#define FM_MULTIVERSION 1
#else
#define FM_MULTIVERSION 0
#endif

#define FM_CAT3_(a, b, c) a##_##b##_##c
#define FM_CAT3(a, b, c) FM_CAT3_(a, b, c)
#define FM_CAT2_(a, b) a##_##b
#define FM_CAT2(a, b) FM_CAT2_(a, b)

/* Neumaier (improved Kahan) compensated sum, used to merge block and chunk
 * partial sums so that long rows keep double-precision accuracy. */
typedef struct { double sum, comp; } fm_ksum;

static inline void fm_ksum_add(fm_ksum *k, double v)
{
    double t = k->sum + v;
    if (!isfinite(t))   /* inf/NaN: no compensation, keep the raw sum */
        ;
    else if (fabs(k->sum) >= fabs(v))
        k->comp += (k->sum - t) + v;
    else
        k->comp += (v - t) + k->sum;
    k->sum = t;
}

static inline double fm_ksum_value(const fm_ksum *k)
{
    /* inf/NaN partials: the compensation is meaningless, keep the raw sum */
    return isfinite(k->sum) ? k->sum + k->comp : k->sum;
}

static inline double fm_sign(double v)
{
    return v > 0 ? 1.0 : (v < 0 ? -1.0 : (v == 0 ? 0.0 : v));
}

/* The BLAS registered by fm_set_blas (runtime.c). fm_blas_ok(dim): one is
 * registered and its integers hold dim. fm_blas_?syrk: the upper triangle of
 * the P x P matrix C (row stride ldc) <- alpha A^T A + beta C, A row-major
 * k x P (row stride lda); they assume fm_blas_ok for every dimension. */
int fm_blas_ok(int64_t dim);
void fm_blas_dsyrk(int64_t P, int64_t k, double alpha, const double *A, int64_t lda, double beta,
                   double *C, int64_t ldc);
void fm_blas_ssyrk(int64_t P, int64_t k, double alpha, const float *A, int64_t lda, double beta,
                   float *C, int64_t ldc);

/* Scratch that several threads write at once is cut into blocks at strides
 * of whole 64-byte cache lines from a line-aligned base (fm_alloc_lines):
 * two threads writing one line make it bounce between the cores (false
 * sharing), which cost the 2-thread SGD epoch more than a second thread
 * saved whenever the two vCPUs sat far apart. fm_line_stride(n, size): the
 * least number of elements of `size` bytes that is >= n and fills whole
 * lines. */
#define FM_CACHE_LINE 64

static inline int64_t fm_line_stride(int64_t n, size_t size)
{
    const int64_t per_line = FM_CACHE_LINE / (int64_t)size;
    return (n + per_line - 1) / per_line * per_line;
}

static inline void *fm_alloc_lines(size_t bytes)
{
    /* C11: the size must be a multiple of the alignment */
    return aligned_alloc(FM_CACHE_LINE, (bytes / FM_CACHE_LINE + 1) * FM_CACHE_LINE);
}

static inline int fm_team_size(int64_t work)
{
    return work >= FM_PARALLEL_MIN_ELEMENTS ? fm_threads : 1;
}

#endif
