"""Do the compiled kernels release the GIL? Two Python threads, each calling
a kernel family on its own arrays (fastmle on one thread each), against the
same calls made one after the other; median of 5. A speed-up near 2 on two
cores means the calls really ran in parallel.

    cd /tmp && python <repo>/bench/gil_release.py

glm_fisher uses the kernels' own loops in both backends (until session 13
the Numba one called numpy's OpenBLAS, which serializes concurrent callers
on its own thread pool); FisherAccumulator's dense update still calls the
BLAS's syrk (fastmle/_blas.py), so run with OPENBLAS_NUM_THREADS=1 to see
such calls in parallel.
"""
import concurrent.futures

import numpy as np

import fastmle
from fastmle.bench import median_times


def workloads(rng):
    """name -> (make the arrays of one thread, call on them, calls per thread)."""
    def logits():
        x = rng.standard_normal((4000, 1000)).astype(np.float32)
        return x, rng.integers(0, 1000, 4000), np.empty_like(x)

    def glm():
        X = rng.standard_normal((100000, 50))
        return X, rng.integers(0, 4, 100000), rng.standard_normal((50, 4)) * 0.1

    return {
        "softmax": (logits, lambda a, b: fastmle.softmax(a[0], axis=1, out=a[2], backend=b), 40),
        "cross_entropy+grad": (logits, lambda a, b: fastmle.cross_entropy(a[0], a[1], return_grad=True,
                                                                          grad_out=a[2], backend=b), 40),
        "sgd_fit (1 epoch)": (glm, lambda a, b: fastmle.sgd_fit(a[0], a[1], "multinomial", max_epochs=1,
                                                                  tol=None, random_state=0, backend=b), 2),
        "glm_fisher": (glm, lambda a, b: fastmle.glm_fisher(a[0], a[2], "multinomial", backend=b), 3),
    }


def main():
    fastmle.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"{'kernel':20s} {'backend':7s} {'serial':>9s} {'2 threads':>10s} {'speed-up':>9s}")
    for name, (make, call, repeat) in workloads(rng).items():
        arrays = [make(), make()]
        for backend in ("c", "numba"):
            def calls(i):
                for _ in range(repeat):
                    call(arrays[i], backend)

            def concurrent_calls():
                with concurrent.futures.ThreadPoolExecutor(2) as pool:
                    list(pool.map(calls, [0, 1]))
            calls(0)  # warm up (Numba loads its cache)
            t = median_times({"serial": lambda: (calls(0), calls(1)), "threads": concurrent_calls}, 5)
            print(f"{name:20s} {backend:7s} {t['serial'] * 1e3:7.0f} ms {t['threads'] * 1e3:7.0f} ms "
                  f"{t['serial'] / t['threads']:8.2f}x")


if __name__ == "__main__":
    main()
