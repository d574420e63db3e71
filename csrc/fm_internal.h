/*
 * Internal helpers shared by the C kernel files: thread count, the SIMD
 * dispatch switch, and the macros that stamp out one kernel body for each
 * element type and instruction set.
 */
#ifndef FASTMLE_INTERNAL_H
#define FASTMLE_INTERNAL_H
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
long syscall(long number, ...);   /* unistd.h declares it only beyond strict C11 */
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#include "fastmle.h"

/* Set by fm_set_num_threads(); read by every parallel region. */
extern int fm_threads;
/* Which clones run (chosen at load, see runtime.c): 0 baseline x86-64,
 * 1 AVX2+FMA, 2 AVX-512 (F, BW, DQ, VL). */
extern int fm_simd;
/* See fm_team_barrier. */
extern int fm_team_disband_sleeps;
extern int fm_team_disband_at;
/* The SGD epoch's trial of its team against one thread (see glm_kernels.h,
 * sgd_epoch): batches per timed window (0: no trial), and how much faster
 * (percent) one thread must have been for the rest of the epoch to run on
 * it alone. */
extern int fm_team_trial_batches;
extern int fm_team_trial_margin;
/* The last threaded SGD epoch's team size as OpenMP started it, and its
 * trial's outcome (FM_TRIAL_*), for tests (see fm_team_last). */
extern int fm_team_last_size;
extern int fm_team_last_trial;
#define FM_TRIAL_NONE 0      /* no trial: one thread, or a short epoch */
#define FM_TRIAL_TEAM 1      /* the team resumed after the trial */
#define FM_TRIAL_ALONE 2     /* thread 0 kept the rest of the epoch */
#define FM_TRIAL_STOPPED 3   /* the epoch stopped inside thread 0's window */
#define FM_TRIAL_DISBANDED 4 /* the team disbanded at the trial's end */

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

/* A barrier for the threads of one parallel region, as the Numba epoch's
 * (fastmle/_numba/team.py): the last thread to arrive resets the count and
 * opens the next generation; the others spin on the generation, pausing,
 * for FM_SPINS_BEFORE_SLEEP turns (a partner that is running arrives within
 * microseconds), then sleep on it (Linux futex; elsewhere they yield the
 * core at each turn): a partner that is not running needs the core.
 * libgomp's `omp barrier` took 240 ns per crossing of two threads here
 * against 80 for this one, and the 2-thread SGD epoch crosses 12,500.
 * Fewer spins before sleeping cost the free cores dearly (100: a 2-thread
 * epoch of 33 ms took 115-129).
 * A team whose threads keep sleeping has more threads than free cores
 * (another process takes them): its barriers then cost a time slice, not
 * nanoseconds (2-thread epoch 185-370 ms against 39 on one thread, with a
 * busy process on the other core). So once fm_team_disband_sleeps sleeps
 * have happened, and in at least one crossing in 16, the last thread to
 * arrive sets `disband`; the caller then finishes on one thread.
 * sync: zeroed at the start of the region. Each thread passes the number of
 * barriers it has crossed so far and gets the new number. */
#define FM_SPINS_BEFORE_SLEEP 1000
typedef struct {
    _Alignas(FM_CACHE_LINE) atomic_int count;
    _Alignas(FM_CACHE_LINE) atomic_int generation;   /* compared for equality only: may wrap */
    atomic_int sleepers;   /* threads asleep now */
    atomic_int slept;      /* sleeps so far */
    atomic_int disband;
    /* the SGD epoch's trial (see glm_kernels.h): whether thread 0 keeps
     * the rest of the epoch (set outside a barrier, so read only after the
     * next one, unlike disband) */
    atomic_int alone_for_good;
} fm_team_sync;

static inline void fm_team_sleep(atomic_int *word, int value)
{
#ifdef __linux__
    syscall(SYS_futex, (int *)word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    (void)word, (void)value;
    sched_yield();
#endif
}

static inline void fm_team_wake_all(atomic_int *word)
{
#ifdef __linux__
    syscall(SYS_futex, (int *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

static inline long long fm_team_barrier(fm_team_sync *sync, int team, long long crossed)
{
    const int generation = (int)(unsigned)crossed;
    if (atomic_fetch_add(&sync->count, 1) == team - 1) {
        const int slept = atomic_load(&sync->slept);
        if ((slept >= fm_team_disband_sleeps && (long long)slept * 16 >= crossed) ||
            crossed + 1 == fm_team_disband_at)   /* tests' fixed crossing */
            atomic_store(&sync->disband, 1);
        atomic_store(&sync->count, 0);
        atomic_fetch_add(&sync->generation, 1);
        if (atomic_load(&sync->sleepers))
            fm_team_wake_all(&sync->generation);
        return crossed + 1;
    }
    for (int spins = 0; atomic_load(&sync->generation) == generation; spins++) {
        if (spins < FM_SPINS_BEFORE_SLEEP) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        /* the last thread increments the generation before it reads the
         * sleepers: it sees this one, or the sleep finds the new generation
         * and returns at once */
        atomic_fetch_add(&sync->slept, 1);
        atomic_fetch_add(&sync->sleepers, 1);
        while (atomic_load(&sync->generation) == generation)
            fm_team_sleep(&sync->generation, generation);
        atomic_fetch_sub(&sync->sleepers, 1);
        break;
    }
    return crossed + 1;
}

/* A clock for timing intervals, in nanoseconds: Linux's monotonic clock
 * through the system call (-std=c11 hides clock_gettime; called a few times
 * per epoch), elsewhere C11's wall clock. */
static inline long long fm_now_ns(void)
{
    struct timespec now;
#ifdef __linux__
    syscall(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, &now);
#else
    timespec_get(&now, TIME_UTC);
#endif
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static inline int fm_team_size(int64_t work)
{
    return work >= FM_PARALLEL_MIN_ELEMENTS ? fm_threads : 1;
}

#endif
