"""Reliability under concurrent use: many threads calling the compiled
kernels at once, thread pools and forked worker processes on each threading
layer, results independent of the thread count and bit-for-bit the same run
to run, and no memory growth over repeated calls."""
import concurrent.futures
import copy
import importlib
import os
import textwrap
import threading
import time

import numpy as np
import pytest

import fastmle
from child import run_python

COMPILED = ["c", "numba"]


def workloads(rng):
    """(name, fn(backend) -> tuple of arrays) over the kernel families."""
    x = rng.standard_normal((300, 257)).astype(np.float32)
    t = rng.integers(0, 257, 300)
    X = rng.standard_normal((500, 20))
    y = rng.integers(0, 4, 500)
    coef = rng.standard_normal((20, 4)) * 0.1
    h = rng.standard_normal((300, 64)).astype(np.float32)
    W = rng.standard_normal((257, 64)).astype(np.float32)
    scores = rng.standard_normal((2000, 30))
    long_row = rng.standard_normal((1, 300_000)).astype(np.float32)  # one row split across threads
    elements = rng.standard_normal((3, 200_000)).astype(np.float32)  # elementwise losses: chunks across threads
    return [
        ("logsumexp(long row)", lambda b: (fastmle.logsumexp(long_row, axis=1, backend=b),)),
        ("cross_entropy(long row)", lambda b: fastmle.cross_entropy(long_row, t[:1], return_grad=True,
                                                                     label_smoothing=0.1, backend=b)),
        ("bce_with_logits", lambda b: fastmle.binary_cross_entropy_with_logits(
            elements[0], elements[1] > 0, pos_weight=np.abs(elements[2]), return_grad=True, backend=b)),
        ("gaussian_nll", lambda b: fastmle.gaussian_nll(*elements[:2], np.abs(elements[2]), return_grad=True,
                                                        backend=b)),
        ("softmax", lambda b: (fastmle.softmax(x, axis=1, backend=b),)),
        ("logsumexp", lambda b: (fastmle.logsumexp(x, axis=1, backend=b),)),
        ("cross_entropy", lambda b: fastmle.cross_entropy(x, t, return_grad=True, backend=b)),
        ("entropy_from_logits", lambda b: (fastmle.entropy_from_logits(x, backend=b),)),
        ("linear_cross_entropy", lambda b: fastmle.linear_cross_entropy(h, W, t, return_grad=True, chunk_size=64,
                                                                        backend=b)),
        ("sgd_fit", lambda b: (fastmle.sgd_fit(X, y, "multinomial", max_epochs=2, tol=None, momentum=0.5,
                                               random_state=1, backend=b).coef,)),
        ("glm_loss", lambda b: (fastmle.glm_loss(X, y, coef, "multinomial",
                                                 return_grad=True, backend=b)[1][0],)),
        ("glm_fisher", lambda b: (fastmle.glm_fisher(X, coef, "multinomial", backend=b),)),
        ("FisherAccumulator", lambda b: (fisher_of_scores(scores, b),)),
        ("fit_mle", lambda b: (fastmle.fit_mle(X, y, "multinomial", reference_class=0, backend=b).params,)),
    ]


def fisher_of_scores(scores, backend):
    acc = fastmle.FisherAccumulator(scores.shape[1], backend=backend)
    acc.update(scores)
    return acc.fisher()


def as_arrays(result):
    return [np.asarray(r) for r in result]


# Workloads whose products are numpy's BLAS (the logits of
# linear_cross_entropy): OpenBLAS runs a call on fewer threads while other
# threads' calls hold its pool, and its float32 GEMM rounds differently on 1
# and 2 threads (OpenBLAS 0.3.31 of numpy 2.4), so concurrent calls equal
# serial ones to rounding only; every kernel of fastmle's own, bit for bit.
NUMPY_BLAS = {"linear_cross_entropy"}


@pytest.mark.parametrize("backend", COMPILED)
def test_concurrent_calls_equal_serial_calls(backend):
    rng = np.random.default_rng(0)
    jobs = workloads(rng) * 4
    serial = [as_arrays(fn(backend)) for _, fn in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda job: as_arrays(job[1](backend)), jobs))
    for (name, _), want, got in zip(jobs, serial, parallel):
        for w, g in zip(want, got):
            if name in NUMPY_BLAS and w.dtype.kind == "f":  # (its bias gradient is None)
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.max(np.abs(w)),
                                           err_msg=f"{backend} {name}")
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{backend} {name}")


@pytest.mark.parametrize("backend", COMPILED)
def test_results_do_not_depend_on_the_thread_count(backend):
    rng = np.random.default_rng(1)
    jobs = workloads(rng)
    previous = fastmle.get_num_threads()
    try:
        fastmle.set_num_threads(1)
        one = [as_arrays(fn(backend)) for _, fn in jobs]
        fastmle.set_num_threads(fastmle._dispatch.max_threads())
        many = [as_arrays(fn(backend)) for _, fn in jobs]
    finally:
        fastmle.set_num_threads(previous)
    for (name, _), a, b in zip(jobs, one, many):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v, err_msg=f"{backend} {name}")


@pytest.mark.parametrize("backend", COMPILED)
def test_compiled_calls_release_the_gil(backend):
    # a Python thread keeps running while the main thread is inside one long
    # compiled call; with the GIL held it could not run at all until the end
    x = np.random.default_rng(0).standard_normal((6000, 4000))
    t = np.zeros(6000, np.int64)
    ticks, stop = [], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
    previous = fastmle.get_num_threads()
    fastmle.set_num_threads(1)  # leave the other core to the ticker
    fastmle.cross_entropy(x[:10], t[:10], backend=backend)  # compile / load first
    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        fastmle.cross_entropy(x, t, return_grad=True, backend=backend)
        end = time.perf_counter()
    finally:
        stop.set()
        thread.join()
        fastmle.set_num_threads(previous)
    inside = [tick for tick in ticks if start < tick < end]
    longest_gap = np.diff([start] + inside + [end]).max()
    assert longest_gap < 0.5 * (end - start), (longest_gap, end - start, len(inside))


def run_script(code, tmp_path, timeout=300, **env):
    """Run code as a script in a fresh interpreter (a file, so that "spawn"
    workers can import its functions); a crash or a hang fails the test."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return run_python(str(script), cwd=tmp_path, timeout=timeout, env=env).stdout


def tbb_loads():
    try:
        importlib.import_module("numba.np.ufunc.tbbpool")  # loads libtbb
    except ImportError:
        return False
    return True


# The layers Numba may run on: fastmle asks for "omp" first (shared with the
# C kernels' OpenMP), then "tbb" (only if the user installed it), then
# "workqueue", Numba's fallback, which is not thread-safe (fastmle makes
# Python threads take turns in the Numba kernels there).
LAYERS = ["omp", "workqueue", pytest.param("tbb", marks=pytest.mark.skipif(
    not tbb_loads(), reason="TBB is not installed: not a layer fastmle can pick here"))]


@pytest.mark.parametrize("layer", LAYERS)
def test_thread_pools_and_forked_workers_on_each_threading_layer(layer, tmp_path):
    # many Python threads at once; then the parent (whose OpenMP and Numba
    # thread pools have started) forks. GNU OpenMP cannot start threads in
    # the child: the C kernels run there on one thread (same results), and
    # on the "omp" layer the numba backend, which would abort the child,
    # refuses with a clear error. "spawn" workers have every backend.
    out = run_script("""
        import concurrent.futures, multiprocessing as mp, os, numba, numpy as np, fastmle
        x = np.random.default_rng(0).standard_normal((4000, 300))
        y = np.random.default_rng(1).integers(0, 3, 4000)
        want = {b: fastmle.softmax(x, axis=1, backend=b) for b in ("c", "numba")}
        fit = fastmle.sgd_fit(x[:, :5], y, "multinomial", max_epochs=1, random_state=0, backend="c").coef
        layer = numba.threading_layer()
        assert layer == os.environ["NUMBA_THREADING_LAYER"], layer

        def work(b):
            try:
                return (fastmle.softmax(x, axis=1, backend=b),
                        fastmle.sgd_fit(x[:, :5], y, "multinomial", max_epochs=1, random_state=0,
                                        backend=b).coef, fastmle.get_num_threads())
            except ValueError as exc:
                return str(exc)

        if __name__ == "__main__":
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                for b in ("c", "numba"):
                    for r in pool.map(work, [b] * 16):
                        assert np.array_equal(r[0], want[b]) and (b == "numba" or np.array_equal(r[1], fit)), b
            with mp.get_context("fork").Pool(2) as pool:
                c, numba_result = pool.map(work, ["c", "numba"])
            assert np.array_equal(c[0], want["c"]) and np.array_equal(c[1], fit) and c[2] == 1, c
            if layer == "omp":
                assert "forked" in numba_result and "spawn" in numba_result, numba_result
            else:
                assert np.array_equal(numba_result[0], want["numba"]), numba_result
            with mp.get_context("spawn").Pool(2) as pool:
                for b, r in zip(["c", "numba"], pool.map(work, ["c", "numba"])):
                    assert np.array_equal(r[0], want[b]), b
            print("ok", layer)
    """, tmp_path, timeout=180, NUMBA_THREADING_LAYER=layer)
    assert out.strip().endswith(f"ok {layer}")


def test_a_seeded_fit_is_bit_for_bit_the_same_in_fresh_processes(tmp_path):
    # run to run, in new interpreters, on one thread and on two: the same bytes
    outputs = set()
    for threads in (1, 2):
        outputs.add(run_script(f"""
            import hashlib, numpy as np, fastmle
            fastmle.set_num_threads({threads})
            rng = np.random.default_rng(0)
            X = rng.standard_normal((3000, 12))
            y = rng.integers(0, 5, 3000)
            for b in ("c", "numba"):
                fit = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, tol=None, momentum=0.9, average=True,
                                      random_state=7, backend=b)
                print(b, hashlib.sha256(fit.coef.tobytes() + fit.intercept.tobytes()).hexdigest())
        """, tmp_path, timeout=120))
    assert len(outputs) == 1, outputs


def test_a_smaller_openmp_team_than_asked_for_gives_the_same_results(tmp_path):
    # OpenMP may start fewer threads than a region asks for (OMP_THREAD_LIMIT,
    # OMP_DYNAMIC, a caller's own parallel region): the threaded SGD epoch
    # once left the missing thread's output blocks uncomputed
    out = run_script("""
        import numpy as np, fastmle
        fastmle.set_num_threads(2)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((3000, 64))  # 32 x 64 x 8 per batch: a threaded epoch
        y = rng.integers(0, 8, 3000)
        fits = [fastmle.sgd_fit(X, y, "multinomial", max_epochs=2, tol=None, random_state=3, backend=b)
                for b in ("c", "numpy")]
        np.testing.assert_allclose(fits[0].coef, fits[1].coef, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(fits[0].loss_history, fits[1].loss_history, rtol=1e-9)
        print("ok")
    """, tmp_path, OMP_THREAD_LIMIT="1")
    assert out.strip() == "ok"


def test_team_trial_with_a_smaller_openmp_team_than_asked_for(tmp_path):
    # The C epoch's trial of its team against one thread (see
    # test_glm.test_team_trial_keeps_the_trajectory) when OpenMP starts 2 of
    # the 3 threads asked for (10 classes allow a team of 3): the trial, the
    # waiting and the verdict must count the team that started. Each
    # outcome (the team resumes, thread 0 keeps on, the epoch stops inside
    # the trial) gives one thread's bits, and the epoch reports it ran on 2
    # threads with that outcome; a hang fails run_script.
    out = run_script(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import numpy as np
        from fastmle._c import lib
        from test_glm import last_team, problem, run_epoch
        rng = np.random.default_rng(5)
        X, labels, targets, w, params = problem("multinomial", 3003, 100, 10, np.float64, rng,
                                                weighted=True, scale=0.1)
        perm = rng.permutation(3003)
        lr = np.full(94, 0.02)
        for margin, stop, outcome in ((10**6, False, 1), (-100, False, 2), (10**6, True, 3)):
            Xc = X.copy()
            if stop:  # a row of infinities in batch 7, inside the trial
                Xc[perm[7 * 32 + 5]] = np.inf
            lib.fm_set_num_threads(1)
            want = run_epoch("c", Xc, labels, targets, w, params, perm, lr, "multinomial", 32, "everything")
            lib.fm_set_num_threads(3)
            lib.fm_set_team_trial(3, margin)
            got = run_epoch("c", Xc, labels, targets, w, params, perm, lr, "multinomial", 32, "everything")
            assert got[0] == want[0] == (7 if stop else 94), (got[0], want[0])
            assert last_team("c") == (2, outcome), last_team("c")
            for a, b in zip(want[1:], got[1:]):
                np.testing.assert_array_equal(a, b)
        print("ok")
    """, tmp_path, timeout=120, OMP_THREAD_LIMIT="2")
    assert out.strip() == "ok"


def test_repeated_calls_do_not_grow_memory(tmp_path):
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("under AddressSanitizer (make sanitize) resident memory holds its quarantine of freed "
                    "blocks (300 MiB here), not leaks; the normal suite measures growth")
    # many small calls and a few large ones of each kernel family (special,
    # losses, glm, fisher) on both compiled backends; resident memory
    # measured after a warm-up, so allocator caches are already full
    out = run_script("""
        import resource, numpy as np, fastmle

        def rss_mib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize() / 2**20

        rng = np.random.default_rng(0)
        small = rng.standard_normal((4, 9)).astype(np.float32)
        st = rng.integers(0, 9, 4)
        big = rng.standard_normal((2000, 1000)).astype(np.float32)
        bt = rng.integers(0, 1000, 2000)
        X = rng.standard_normal((200, 5)); y = rng.integers(0, 3, 200)

        def fisher_of(S, backend):
            acc = fastmle.FisherAccumulator(S.shape[1], backend=backend)
            acc.update(S)
            return acc.fisher()
        calls = [
            (100_000, lambda: fastmle.softmax(small, axis=1, backend="c")),
            (100_000, lambda: fastmle.cross_entropy(small, st, return_grad=True, backend="numba")),
            (100, lambda: fastmle.cross_entropy(big, bt, return_grad=True, backend="c")),
            (100, lambda: fastmle.log_softmax(big, axis=1, backend="numba")),
            (2_000, lambda: fastmle.sgd_fit(X, y, "multinomial", max_epochs=1, random_state=0, backend="c")),
            (2_000, lambda: fastmle.sgd_fit(X, y, "multinomial", max_epochs=1, random_state=0,
                                            backend="numba")),
            (2_000, lambda: fastmle.glm_fisher(X, np.zeros((5, 3)), "multinomial", backend="c")),
            (2_000, lambda: fastmle.glm_fisher(X, np.zeros((5, 3)), "multinomial", backend="numba")),
            (2_000, lambda: fisher_of(X, "c")),
            (2_000, lambda: fisher_of(X, "numba")),
        ]
        for n, fn in calls:
            for _ in range(min(n, 200)):
                fn()
            before = rss_mib()
            for _ in range(n):
                fn()
            grew = rss_mib() - before
            assert grew < 8, (n, grew)
        print("ok")
    """, tmp_path, timeout=600)
    assert out.strip().endswith("ok")


def test_a_forked_child_refuses_threads_it_cannot_start(tmp_path):
    # the parent's OpenMP threads had started; set_num_threads(2) in the
    # child was accepted and the next C parallel region hung for good
    out = run_script("""
        import os, numpy as np, fastmle
        x = np.random.default_rng(0).standard_normal((20000, 100))
        want = fastmle.softmax(x, axis=1, backend="c")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fastmle.set_num_threads(2)
            except ValueError as exc:
                code = 0 if "forked" in str(exc) and "spawn" in str(exc) else 2
            fastmle.set_num_threads(1)  # what the child runs on
            code = code or 3 * (not np.array_equal(fastmle.softmax(x, axis=1, backend="c"), want))
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
    """, tmp_path, timeout=120)
    assert out.strip() == "child exit 0", out


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_an_accumulator_loaded_read_only_keeps_updating(tmp_path, backend):
    # joblib.load(mmap_mode="r"), or joblib memory-mapping an accumulator it
    # sends to a worker: C wrote into the read-only map (a segfault), Numba
    # into a copy it dropped (the update lost, the counts raised); in a
    # child interpreter, so that a crash fails only this test
    out = run_script(f"""
        import copy, joblib, numpy as np, fastmle
        S = np.random.default_rng(0).standard_normal((50, 4))
        a = fastmle.FisherAccumulator(4, backend={backend!r})
        a.update(S[:20])
        joblib.dump(a, "acc.joblib")
        b = joblib.load("acc.joblib", mmap_mode="r")
        b.update(S[20:])
        c = fastmle.FisherAccumulator(4, backend={backend!r}).merge(joblib.load("acc.joblib", mmap_mode="r"))
        full = fastmle.FisherAccumulator(4, backend={backend!r})
        full.update(S[:20]); full.update(S[20:])
        assert b.n_samples == 50 and np.allclose(b.fisher(), full.fisher(), rtol=1e-12), b.fisher()
        m = joblib.load("acc.joblib", mmap_mode="r")
        m.merge(c)  # a read-only accumulator merged into
        assert m.n_samples == 40 and np.allclose(m.fisher(normalize=False), 2 * c.fisher(normalize=False))
        # a shallow copy has its own sums (it had shared them with the original)
        twin = copy.copy(full)
        twin.update(S)
        assert full.n_samples == 50 and np.allclose(full.fisher(), S.T @ S / 50, rtol=1e-12)
        print("ok")
    """, tmp_path, timeout=120)
    assert out.strip() == "ok", out


def test_sgd_diverged_error_survives_pickling():
    # with its result: a worker's divergence reached a process pool as an
    # unpicklable exception (BrokenProcessPool; multiprocessing.Pool hung)
    import pickle

    X = np.random.default_rng(0).standard_normal((300, 4)) * 1e3
    with pytest.raises(fastmle.SGDDivergedError) as info:
        fastmle.sgd_fit(X, X[:, 0] * 1e3, "gaussian", eta0=10.0, learning_rate="constant", max_epochs=3,
                        random_state=0)
    for twin in (pickle.loads(pickle.dumps(info.value)), copy.deepcopy(info.value), copy.copy(info.value)):
        assert type(twin) is fastmle.SGDDivergedError and str(twin) == str(info.value)
        np.testing.assert_array_equal(twin.result.coef, info.value.result.coef)
