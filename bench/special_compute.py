"""The arithmetic cost of the softmax family, apart from memory: nanoseconds
per element of the C kernels on one thread, on rows that stay in the cache
(128 x 1000, called back to back), for every instruction-set clone this CPU
runs, next to the same kernels on a 32768 x 1000 array on all threads.

The memory's own floor is printed last: the large array read and written
back with non-temporal stores (what a streaming softmax moves, with no
arithmetic) and read alone (what logsumexp moves), on all threads, by a
small C function compiled here with cffi for this CPU (x86-64 only). If the in-cache
cost times the elements per thread exceeds that time, a kernel is
compute-bound and streaming stores cannot help it (see
csrc/special_kernels.h). np.copyto, the benchmark's baseline, is no such
floor: it writes through the cache (each output line is read first), 1.8-2.9x
the streaming copy's time here.

    cd /tmp && python <repo>/bench/special_compute.py [--repeat 15]
"""
import argparse
import functools
import tempfile
import time

import numpy as np

import fastmle
from fastmle import _c, _dispatch

KERNELS = ("softmax", "log_softmax", "logsumexp")


def kernel_call(name, x, out, calls):
    """`calls` back-to-back calls of the C kernel `name` on x (rows, n)."""
    suffix = "f32" if x.dtype == np.float32 else "f64"
    ctype = "float *" if x.dtype == np.float32 else "double *"
    fn = getattr(_c.lib, f"{name}_{suffix}")
    px = _c.ffi.cast(ctype, _c.ffi.from_buffer(x))
    po = _c.ffi.cast(ctype, _c.ffi.from_buffer(out))
    rows, n = x.shape

    def run():
        for _ in range(calls):
            fn(px, rows, n, po)
    return run


_ROOFLINE_C = r"""
#include <immintrin.h>
#include <stdint.h>
/* out = x, nbytes each (a multiple of 64, both 64-byte aligned): loads,
 * then non-temporal stores (no read of the output lines), at the widest
 * vector this CPU has */
void stream_copy(const char *x, char *out, int64_t nbytes, int threads)
{
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < nbytes; i += 64) {
#if defined(__AVX512F__)
            _mm512_stream_si512((void *)(out + i), _mm512_load_si512((const void *)(x + i)));
#elif defined(__AVX2__)
            for (int k = 0; k < 64; k += 32)
                _mm256_stream_si256((__m256i *)(out + i + k), _mm256_load_si256((const __m256i *)(x + i + k)));
#else
            for (int k = 0; k < 64; k += 16)
                _mm_stream_si128((__m128i *)(out + i + k), _mm_load_si128((const __m128i *)(x + i + k)));
#endif
        }
        _mm_sfence();
    }
}
/* every byte of x read once (an xor of its 8-byte words, vectorized) */
int64_t read_all(const int64_t *x, int64_t nwords, int threads)
{
    int64_t acc = 0;
#pragma omp parallel for simd num_threads(threads) schedule(static) reduction(^ : acc)
    for (int64_t i = 0; i < nwords; i++)
        acc ^= x[i];
    return acc;
}
"""


def _aligned_copy(a):
    """a copy of a (whose size is a multiple of 64 bytes) starting on a 64-byte boundary."""
    assert a.nbytes % 64 == 0
    raw = np.empty(a.nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@functools.lru_cache(maxsize=None)
def _roofline():
    """(ffi, lib) of _ROOFLINE_C, compiled once per run."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("void stream_copy(const char *, char *, int64_t, int);"
             "int64_t read_all(const int64_t *, int64_t, int);")
    # -march=native: a measuring tool built and run on this machine only
    ffi.set_source("_roofline", _ROOFLINE_C, extra_compile_args=["-O2", "-march=native", "-fopenmp"],
                   extra_link_args=["-fopenmp"])
    with tempfile.TemporaryDirectory() as tmp:
        import importlib.util

        path = ffi.compile(tmpdir=tmp, verbose=False)
        spec = importlib.util.spec_from_file_location("_roofline", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return ffi, module.lib


def memory_floor(x, threads, repeat):
    """(seconds to stream-copy x, seconds to read x) on `threads` threads."""
    ffi, lib = _roofline()
    x, out = _aligned_copy(x), _aligned_copy(np.zeros_like(x))
    px, po = ffi.from_buffer(x), ffi.from_buffer(out)
    words = ffi.cast("const int64_t *", px)
    copy = fastest(lambda: lib.stream_copy(px, po, x.nbytes, threads), repeat)
    read = fastest(lambda: lib.read_all(words, x.nbytes // 8, threads), repeat)
    assert np.array_equal(out, x)
    return copy, read


def fastest(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if _c.lib is None:
        raise SystemExit(f"the C backend is not available: {_c.unavailable_reason}")
    rng = np.random.default_rng(0)
    default = _c.lib.fm_simd_level()
    levels = range(_c.lib.fm_set_simd_level(99) + 1)
    _c.lib.fm_set_simd_level(default)
    threads = _dispatch.max_threads()
    print(f"ns per element; in cache: 1 thread, 128 x 1000 x 256 calls; large: 32768 x 1000 "
          f"on {threads} threads (ms in brackets)")
    for dtype in (np.float32, np.float64):
        small = rng.standard_normal((128, 1000)).astype(dtype)
        large = rng.standard_normal((32768, 1000)).astype(dtype)
        for name in KERNELS:
            cells = []
            for level in levels:
                _c.lib.fm_set_simd_level(level)
                fastmle.set_num_threads(1)
                out = np.empty(128 if name == "logsumexp" else small.shape, dtype)
                t = fastest(kernel_call(name, small, out, 256), args.repeat)
                cells.append(f"level {level}: {t * 1e9 / (256 * small.size):.3f}")
            _c.lib.fm_set_simd_level(default)
            fastmle.set_num_threads(threads)
            out = np.empty(large.shape[0] if name == "logsumexp" else large.shape, dtype)
            t = fastest(kernel_call(name, large, out, 1), args.repeat)
            print(f"{np.dtype(dtype).name:<8} {name:<12} in cache {', '.join(cells)} | "
                  f"large {t * 1e9 / large.size:.3f} ({t * 1e3:.2f} ms)")
        copy, read = memory_floor(large, threads, args.repeat)
        print(f"{np.dtype(dtype).name:<8} memory floor of the large array on {threads} threads: "
              f"read + streamed write {copy * 1e3:.2f} ms, read {read * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
