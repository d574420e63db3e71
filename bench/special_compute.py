"""The arithmetic cost of the softmax family, apart from memory: nanoseconds
per element of the C kernels on one thread, on rows that stay in the cache
(128 x 1000, called back to back), for every instruction-set clone this CPU
runs, next to the same kernels on a 32768 x 1000 array on all threads.

If the in-cache cost times the elements per thread exceeds the time of a
two-thread copy, a kernel is compute-bound and streaming stores cannot help
it (see csrc/special_kernels.h).

    cd /tmp && python <repo>/bench/special_compute.py [--repeat 15]
"""
import argparse
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


if __name__ == "__main__":
    main()
