"""Out-of-core Fisher scoring: time per iteration of fastmle.dask.fit_mle on
a dask array built from .npy files on disk, against the in-memory fit_mle
on the same data and against dask-ml's LogisticRegression (when installed),
side by side in one run (median of --repeat runs each).

    python bench/dask_fit.py [--n 400000] [--d 50] [--chunks 8] [--repeat 3] [--cluster]

Each fit is timed whole; "per iteration" divides by its Fisher-scoring
iterations (dask-ml reports none, so only its total is comparable). With
--cluster the dask fits run on a LocalCluster of two worker processes (one
thread each), otherwise on dask's threaded scheduler.
"""
import argparse
import os
import tempfile
import time

import numpy as np


def write_chunks(folder, X, y, n_files):
    """X and y split by rows into .npy files, as a user's data set on disk."""
    paths = []
    for i, rows in enumerate(np.array_split(np.arange(len(X)), n_files)):
        px, py = os.path.join(folder, f"X_{i:03d}.npy"), os.path.join(folder, f"y_{i:03d}.npy")
        np.save(px, X[rows])
        np.save(py, y[rows])
        paths.append((px, py, len(rows)))
    return paths


def load_dask(paths, d):
    """The dask arrays of the files: each chunk is read (memory-mapped) by the
    worker that needs it."""
    import dask
    import dask.array as da

    load = dask.delayed(lambda path: np.load(path, mmap_mode="r"), pure=True)
    X = da.concatenate([da.from_delayed(load(px), shape=(n, d), dtype=np.float64) for px, _, n in paths])
    y = da.concatenate([da.from_delayed(load(py), shape=(n,), dtype=np.int64) for _, py, n in paths])
    return X, y


def median_time(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--chunks", type=int, default=8, help="files = row chunks")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cluster", action="store_true", help="a LocalCluster of 2 worker processes")
    args = parser.parse_args()

    import dask

    import fastmle
    import fastmle.dask as fd

    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.d))
    beta = rng.standard_normal(args.d) / np.sqrt(args.d)
    y = (X @ beta + 0.3 + rng.logistic(size=args.n) > 0).astype(np.int64)
    client = None
    if args.cluster:
        import distributed

        client = distributed.Client(distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                                             host="127.0.0.1", dashboard_address=None))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        Xd, yd = load_dask(write_chunks(folder, X, y, args.chunks), args.d)
        scheduler = {} if client else {"scheduler": "threads"}
        with dask.config.set(**scheduler):
            fd.fit_mle(Xd[:1000], yd[:1000], "binomial")  # workers import fastmle, warm up
            t, fit = median_time(lambda: fd.fit_mle(Xd, yd, "binomial"), args.repeat)
            rows.append(("fastmle.dask.fit_mle (files)", t, fit.n_iter))
            t_mem, mem = median_time(lambda: fastmle.fit_mle(X, y, "binomial"), args.repeat)
            rows.append(("fastmle.fit_mle (in memory)", t_mem, mem.n_iter))
            assert np.allclose(fit.params, mem.params, rtol=1e-10, atol=0)
            try:
                from dask_ml.linear_model import LogisticRegression
            except ImportError:
                print("dask-ml not installed: pip install dask-ml to compare with it")
            else:
                # its Newton solver, unpenalized in effect (C huge), to the same tolerance
                model = LogisticRegression(C=1e12, solver="newton", max_iter=100, tol=1e-8)
                t_ml, _ = median_time(lambda: model.fit(Xd, yd), args.repeat)
                rows.append(("dask_ml LogisticRegression", t_ml, None))
    if client is not None:
        client.close()
    where = "LocalCluster, 2 processes" if args.cluster else "threaded scheduler"
    print(f"binomial MLE, {args.n} x {args.d} float64 in {args.chunks} .npy files; {where}; "
          f"median of {args.repeat}")
    print(f"{'implementation':<32} {'total s':>9} {'iterations':>10} {'s / iteration':>13} {'x fastmle.dask':>14}")
    for name, t, iters in rows:
        per = f"{t / iters:13.3f}" if iters else f"{'-':>13}"
        print(f"{name:<32} {t:9.3f} {iters if iters else '-':>10} {per} {t / rows[0][1]:14.2f}")


if __name__ == "__main__":
    main()
