"""Where an SGD epoch's time goes, side by side in one run (median of
--repeat, round-robin): the epoch kernels alone (C and Numba, each on 1 and
on all threads), scikit-learn's epoch (default n_jobs, one core, and on all
cores), a C epoch right after a numpy BLAS product against one after a
pause (OpenBLAS's spinning threads), and numpy's random row gather against
a copy.

    cd /tmp && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python <repo>/bench/sgd_threads.py
"""
import argparse
import time
import warnings

import numpy as np

import fastmle
from fastmle import _dispatch
from fastmle.bench import median_times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="200000x100x10")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    n, d, K = (int(v) for v in args.shape.split("x"))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    labels = rng.integers(0, K, n)
    perm = rng.permutation(n)
    lr = np.full(-(-n // 32), 1e-3)
    params = np.zeros((K, d + 1))
    none = np.empty((0, d + 1))
    epoch_args = (X, labels, np.empty((0, K)), np.empty(0), perm, lr, 0, 32, 0.0, 0.0, 0.0, False, True,
                  params, none, none, -1, 0, np.zeros(1))
    c = _dispatch.kernels("c", "glm")
    threads = _dispatch.max_threads()

    def epoch(backend, t):
        def run():
            fastmle.set_num_threads(t)
            _dispatch.kernels(backend, "glm").sgd_epoch(*epoch_args)  # which hands Numba the thread count
        return run
    W, G = np.zeros((d, K)), np.ones((n, K))

    def after_blas():
        fastmle.set_num_threads(threads)
        X @ W, X.T @ G
        t0 = time.perf_counter()
        c.sgd_epoch(*epoch_args)
        return time.perf_counter() - t0

    def after_pause():
        fastmle.set_num_threads(threads)
        time.sleep(0.3)
        t0 = time.perf_counter()
        c.sgd_epoch(*epoch_args)
        return time.perf_counter() - t0
    out = np.empty_like(X)
    fns = {"C epoch, 1 thread": epoch("c", 1), f"C epoch, {threads} threads": epoch("c", threads),
           "Numba epoch, 1 thread": epoch("numba", 1), f"Numba epoch, {threads} threads": epoch("numba", threads),
           "np.take(X, perm, axis=0)": lambda: np.take(X, perm, axis=0, out=out),
           "np.copyto(out, X)": lambda: np.copyto(out, X)}
    try:  # scikit-learn's epoch with its default n_jobs (one core) and on every core
        from sklearn.linear_model import SGDClassifier

        def sklearn_epoch(jobs):
            fit = SGDClassifier(loss="log_loss", max_iter=1, tol=None, random_state=0, n_jobs=jobs).fit
            return lambda: fit(X, labels)
        for jobs in sorted({1, threads}):
            fns[f"sklearn epoch, n_jobs={jobs}"] = sklearn_epoch(jobs)
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning after one epoch
        times = median_times(fns, args.repeat)
    for name, t in times.items():
        print(f"{name:<28} {t * 1e3:8.1f} ms")
    contention = {"pause": [], "blas": []}
    for _ in range(args.repeat):
        contention["pause"].append(after_pause())
        contention["blas"].append(after_blas())
    print(f"C epoch after a 0.3 s pause   {np.median(contention['pause']) * 1e3:8.1f} ms")
    print(f"C epoch right after X @ W, X.T @ G {np.median(contention['blas']) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
