/* Thread count and instruction-set choice shared by all C kernels. */
#include "fm_internal.h"

int fm_threads = 1;
int fm_use_avx2 = 0;

static int cpu_has_avx2_fma(void)
{
#if FM_MULTIVERSION
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
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
    fm_use_avx2 = cpu_has_avx2_fma();
}

int fm_set_num_threads(int n)
{
    fm_threads = n < 1 ? 1 : n;
    return fm_threads;
}

int fm_get_num_threads(void) { return fm_threads; }

int fm_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fm_simd_level(void) { return fm_use_avx2; }

int fm_set_simd_level(int level)
{
    fm_use_avx2 = level >= 1 && cpu_has_avx2_fma();
    return fm_use_avx2;
}

const char *fm_simd_name(void)
{
#if FM_MULTIVERSION
    return fm_use_avx2 ? "avx2+fma" : "sse2 (x86-64 baseline)";
#else
    return "generic (compiler default flags)";
#endif
}
