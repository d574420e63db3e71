/* Thread count and instruction-set choice shared by all C kernels. */
#include "fm_internal.h"

int fm_threads = 1;
int fm_simd = 0;
int fm_team_disband_sleeps = 64;
int fm_team_disband_at = 0;
int fm_team_trial_batches = 256;
int fm_team_trial_margin = 10;
int fm_team_last_size = 0;
int fm_team_last_trial = 0;

/* The best clone this CPU (and OS: gcc's checks include the saved vector
 * state) runs: 2 AVX-512 F/BW/DQ/VL, 1 AVX2+FMA, 0 baseline. */
static int cpu_simd_level(void)
{
#if FM_MULTIVERSION
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return 0;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
               ? 2 : 1;
#else
    return 0;
#endif
}

/* Runs when the shared library is loaded. */
__attribute__((constructor)) static void fm_runtime_init(void)
{
#ifdef _OPENMP
    fm_threads = omp_get_num_procs();
#endif
    fm_simd = cpu_simd_level();
}

int fm_set_num_threads(int n)
{
#ifdef _OPENMP
    fm_threads = n < 1 ? 1 : n;
#else
    (void)n;  /* built without OpenMP: every kernel runs on the calling thread */
#endif
    return fm_threads;
}

int fm_get_num_threads(void) { return fm_threads; }

int fm_set_team_disband_sleeps(int sleeps)
{
    const int before = fm_team_disband_sleeps;
    fm_team_disband_sleeps = sleeps < 0 ? 0 : sleeps;
    return before;
}

int fm_set_team_disband_at(int crossing)
{
    const int before = fm_team_disband_at;
    fm_team_disband_at = crossing < 0 ? 0 : crossing;
    return before;
}

int fm_set_team_trial(int batches, int margin_percent)
{
    const int before = fm_team_trial_batches;
    fm_team_trial_batches = batches < 0 ? 0 : batches;
    /* below -100 every time wins, as at -100; the bound keeps the
     * trial's products of nanoseconds and percent within long long */
    fm_team_trial_margin = margin_percent < -100 ? -100 : margin_percent > 1000000 ? 1000000 : margin_percent;
    return before;
}

int fm_team_last(int *trial)
{
    *trial = __atomic_load_n(&fm_team_last_trial, __ATOMIC_RELAXED);
    return __atomic_load_n(&fm_team_last_size, __ATOMIC_RELAXED);
}

int fm_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fm_simd_level(void) { return fm_simd; }

int fm_set_simd_level(int level)
{
    const int best = cpu_simd_level();
    fm_simd = level < 0 ? 0 : (level > best ? best : level);
    return fm_simd;
}

const char *fm_simd_name(void)
{
#if FM_MULTIVERSION
    static const char *names[] = {"sse2 (x86-64 baseline)", "avx2+fma", "avx512 (f, bw, dq, vl)"};
    return names[fm_simd];
#else
    return "generic (compiler default flags)";
#endif
}

/* ---- BLAS: the CBLAS of the library numpy uses (fastmle/_blas.py) ---- */

enum { FM_ROW_MAJOR = 101, FM_TRANS = 112, FM_UPPER = 121 };

/* CBLAS syrk prototypes, for 64-bit (ILP64) and 32-bit (LP64) integers */
typedef void (*fm_dsyrk64)(int, int, int, int64_t, int64_t, double, const double *, int64_t,
                           double, double *, int64_t);
typedef void (*fm_dsyrk32)(int, int, int, int32_t, int32_t, double, const double *, int32_t,
                           double, double *, int32_t);
typedef void (*fm_ssyrk64)(int, int, int, int64_t, int64_t, float, const float *, int64_t,
                           float, float *, int64_t);
typedef void (*fm_ssyrk32)(int, int, int, int32_t, int32_t, float, const float *, int32_t,
                           float, float *, int32_t);

static struct { void *dsyrk, *ssyrk; int int64; } fm_blas;

int fm_set_blas(void *dsyrk, void *ssyrk, int int64)
{
    const int both = dsyrk && ssyrk;
    fm_blas.dsyrk = both ? dsyrk : NULL;
    fm_blas.ssyrk = both ? ssyrk : NULL;
    fm_blas.int64 = int64;
    return both;
}

int fm_blas_ok(int64_t dim)
{
    return fm_blas.dsyrk != NULL && (fm_blas.int64 || dim <= INT32_MAX);
}

void fm_blas_dsyrk(int64_t P, int64_t k, double alpha, const double *A, int64_t lda, double beta,
                   double *C, int64_t ldc)
{
    if (fm_blas.int64)
        ((fm_dsyrk64)fm_blas.dsyrk)(FM_ROW_MAJOR, FM_UPPER, FM_TRANS, P, k, alpha, A, lda, beta, C,
                                    ldc);
    else
        ((fm_dsyrk32)fm_blas.dsyrk)(FM_ROW_MAJOR, FM_UPPER, FM_TRANS, (int32_t)P, (int32_t)k, alpha,
                                    A, (int32_t)lda, beta, C, (int32_t)ldc);
}

void fm_blas_ssyrk(int64_t P, int64_t k, double alpha, const float *A, int64_t lda, double beta,
                   float *C, int64_t ldc)
{
    if (fm_blas.int64)
        ((fm_ssyrk64)fm_blas.ssyrk)(FM_ROW_MAJOR, FM_UPPER, FM_TRANS, P, k, (float)alpha, A, lda,
                                    (float)beta, C, ldc);
    else
        ((fm_ssyrk32)fm_blas.ssyrk)(FM_ROW_MAJOR, FM_UPPER, FM_TRANS, (int32_t)P, (int32_t)k,
                                    (float)alpha, A, (int32_t)lda, (float)beta, C, (int32_t)ldc);
}
