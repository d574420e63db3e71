"""Backend selection, thread settings, configuration report and CLI."""
import json
import os
import sys
import threading
import time

import numpy as np
import pytest

import fastmle
from child import run_python
from fastmle._registry import KERNELS
from fastmle import _dispatch


def test_compiled_backends_present():
    # CI builds the C extension; a silently missing backend must fail here
    expected = ["numba", "numpy"] if os.environ.get("FASTMLE_NO_C") else ["c", "numba", "numpy"]
    assert fastmle.available_backends() == expected


def test_selection_order():
    x = np.ones(4)
    assert fastmle.get_backend() == fastmle.available_backends()[0]
    fastmle.set_backend("numpy")
    try:
        assert fastmle.get_backend() == "numpy"
        with fastmle.backend("numba"):
            assert fastmle.get_backend() == "numba"
            with fastmle.backend("numpy"):
                assert fastmle.get_backend() == "numpy"
            assert fastmle.get_backend() == "numba"
            fastmle.softmax(x)
    finally:
        fastmle.set_backend("auto")
    assert fastmle.get_backend() == fastmle.available_backends()[0]


def test_unknown_backend_names_the_available_ones():
    with pytest.raises(ValueError, match="available: c, numba, numpy|available: numba, numpy"):
        fastmle.softmax(np.ones(3), backend="cuda")
    with pytest.raises(ValueError):
        fastmle.set_backend("fortran")
    with pytest.raises(ValueError):
        with fastmle.backend("nope"):
            pass


def _run(code, **env):
    return run_python("-c", code, env=env, check=False)


def test_env_variable_and_no_c():
    r = _run("import fastmle; print(fastmle.get_backend())", FASTMLE_BACKEND="numba")
    assert r.stdout.strip() == "numba", r.stderr
    r = _run("import fastmle; fastmle.show_config(); print(fastmle.available_backends())", FASTMLE_NO_C="1")
    assert "unavailable: disabled by FASTMLE_NO_C" in r.stdout and "['numba', 'numpy']" in r.stdout, r.stderr
    assert "UserWarning" not in r.stderr, r.stderr  # left out on purpose: no warning
    # an extension that failed to build (pip shows that only with -v) is
    # said at import, once
    r = _run("import sys; sys.modules['fastmle._cext'] = None; import fastmle, fastmle._c; "
             "print(fastmle.available_backends())")
    assert "['numba', 'numpy']" in r.stdout, r.stderr
    assert r.stderr.count("UserWarning: fastmle's C backend is unavailable: C extension not built") == 1, r.stderr
    r = _run("import fastmle; fastmle.softmax([1.0])", FASTMLE_BACKEND="bogus")
    assert "FASTMLE_BACKEND: unknown backend 'bogus'" in r.stderr
    # the diagnostic report still runs, and says what is wrong
    r = run_python("-m", "fastmle", "info", env={"FASTMLE_BACKEND": "bogus"}, check=False)
    assert r.returncode == 0 and "none: FASTMLE_BACKEND: unknown backend 'bogus'" in r.stdout, r.stderr
    # set_backend("auto") overrides it (the fastest available)
    r = _run("import fastmle; fastmle.set_backend('auto'); print(fastmle.get_backend())", FASTMLE_BACKEND="numpy")
    assert r.stdout.strip() == fastmle.available_backends()[0], r.stderr


def test_omp_num_threads_is_not_read():
    # dask.distributed's LocalCluster sets it to 1 in the process that
    # starts it: read, it would put the client's own kernels on one thread
    r = _run("import fastmle; print(fastmle.get_num_threads())", OMP_NUM_THREADS="1")
    assert r.stdout.strip() == str(_dispatch.max_threads()), r.stderr


def test_threads():
    n = _dispatch.max_threads()
    fastmle.set_num_threads(1)
    assert fastmle.get_num_threads() == 1
    from fastmle import _c
    if _c.lib is not None:
        assert _c.lib.fm_get_num_threads() == 1
    fastmle.set_num_threads(np.int64(n))  # numpy integers too
    assert fastmle.get_num_threads() == n and type(fastmle.get_num_threads()) is int
    for bad in (0, n + 1, 1.5, True, np.bool_(True), "2", np.float64(1)):
        with pytest.raises(ValueError, match="threads"):
            fastmle.set_num_threads(bad)


def test_numba_kernels_release_the_gil():
    from fastmle._numba import special
    for name in ("softmax", "log_softmax", "logsumexp", "logsumexp_weighted"):
        assert getattr(special, name).targetoptions.get("nogil") is True


def test_compile_workers_import_this_fastmle(tmp_path, monkeypatch):
    """compile_kernels' worker interpreters compile the fastmle the caller
    imported, not one in the working folder (as CI tests an installed copy
    from inside its clone, whose sources have no compiled extension)."""
    from fastmle import _dispatch

    marker = tmp_path / "imported"
    (tmp_path / "fastmle").mkdir()
    (tmp_path / "fastmle" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    assert _dispatch._compile_in_subprocesses([("special",)]) == [0]  # loads the cache the suite has filled
    assert not marker.exists()


def test_compile_covers_every_kernel_family():
    """compile_kernels (``python -m fastmle compile``) loads the Numba module
    of every family: FAMILIES must name exactly the reference modules."""
    import pkgutil

    import fastmle.reference
    from fastmle import _dispatch

    modules = {m.name for m in pkgutil.iter_modules(fastmle.reference.__path__)}
    assert set(_dispatch.FAMILIES) == modules
    assert {k.family for k in KERNELS.values()} <= modules
    r = run_python("-m", "fastmle", "compile", check=False)
    assert r.returncode == 0, r.stderr
    assert "special, losses, glm, fisher" in r.stdout, r.stdout
    assert _dispatch.compile_kernels() == _dispatch.FAMILIES
    assert all(f"fastmle._numba.{f}" in sys.modules for f in _dispatch.FAMILIES)


def test_cli_info_and_bench(tmp_path):
    r = run_python("-m", "fastmle", "info", check=False)
    assert r.returncode == 0 and "backends" in r.stdout and "threading layer" in r.stdout, r.stderr
    path = tmp_path / "b.json"
    r = run_python("-m", "fastmle", "bench", "--shape", "64x100", "--repeat", "1",
                   "--json", str(path), "--plot", str(tmp_path / "b.png"), check=False)
    assert r.returncode == 0, r.stderr
    records = json.loads(path.read_text())
    impls = {rec["implementation"] for rec in records}
    assert {"fastmle.numba", "fastmle.numpy", "scipy"} <= impls
    assert {rec["kernel"] for rec in records} == {k.name for k in KERNELS.values() if k.in_default_bench}
    # the slow kernel runs when named, on its own (N x H x V) shape, with its working memory
    r = run_python("-m", "fastmle", "bench", "--kernels", "linear_cross_entropy",
                   "--shape", "64x8x300", "--repeat", "1", "--dtypes", "float32", "--json", str(path), check=False)
    assert r.returncode == 0, r.stderr
    records = json.loads(path.read_text())
    assert {rec["shape"][2] for rec in records} == {300}
    assert all(rec["extra_bytes"] > 0 for rec in records if rec["implementation"].startswith("fastmle"))


def test_bench_json_holds_the_figures_of_merit(tmp_path):
    # the accuracy (or log-likelihood) a kernel reaches was printed only
    path = tmp_path / "q.json"
    r = run_python("-m", "fastmle", "bench", "--kernels", "sgd_epoch", "--shape", "600x10x3", "--repeat", "1",
                   "--json", str(path), check=False)
    assert r.returncode == 0, r.stderr
    records = {rec["implementation"]: rec for rec in json.loads(path.read_text())}
    for name in fastmle.available_backends():
        quality = records[f"fastmle.{name}"]["quality"]
        assert quality["measure"].startswith("test accuracy") and 0 < quality["value"] <= 1
        assert f"fastmle.{name}: {quality['measure']}: {quality['value']:.4f}" in r.stdout
    assert records["sklearn"].get("quality") is None


def test_read_only_inputs_work_on_every_backend(backend, tmp_path):
    # a memory-mapped file opened read-only, as joblib hands to workers
    rng = np.random.default_rng(0)
    path = tmp_path / "x.npy"
    np.save(path, rng.standard_normal((20, 5)))
    x = np.load(path, mmap_mode="r")
    assert not x.flags.writeable
    np.testing.assert_allclose(fastmle.softmax(x, axis=1, backend=backend),
                               fastmle.softmax(np.array(x), axis=1, backend="numpy"), rtol=1e-12)
    target = np.arange(20) % 5
    target.flags.writeable = False
    np.testing.assert_allclose(fastmle.cross_entropy(x, target, backend=backend),
                               fastmle.cross_entropy(np.array(x), target, backend="numpy"), rtol=1e-12)
    fit = fastmle.sgd_fit(x, target, "multinomial", max_epochs=2, random_state=0, backend=backend)
    assert np.isfinite(fit.coef).all()


def test_round_robin_times_respects_repeat_and_budget():
    from fastmle.bench import round_robin_times

    calls = {"fast": 0, "slow": 0}

    def work(name, seconds):
        def fn():
            calls[name] += 1
            time.sleep(seconds)
        return fn

    fns = {"fast": work("fast", 0.001), "slow": work("slow", 0.03)}
    times = round_robin_times(fns, 4, budget=0.05, rewarm_after=float("inf"))
    assert len(times["fast"]) == 4  # the budget never binds: all repeats
    assert len(times["slow"]) == 2  # stops once its timed calls add up to 0.05 s
    assert min(times["slow"]) >= 0.03
    assert calls == {"fast": 5, "slow": 3}  # plus one untimed warm-up each
    # re-warmed before every timed call after a pause (always, with rewarm_after=0),
    # but only calls shorter than rewarm_below
    calls.update(fast=0, slow=0)
    round_robin_times(fns, 4, budget=0.05, rewarm_after=0, rewarm_below=0.01)
    assert calls == {"fast": 9, "slow": 3}
    calls.update(slow=0)
    times = round_robin_times({"slow": work("slow", 0.03)}, 3, budget=0.001)
    assert len(times["slow"]) == 1 and calls["slow"] >= 2  # one timed call at least, never the warm-up


def test_wait_until_quiet_waits_for_spinning_threads():
    from fastmle.bench import wait_until_quiet

    assert wait_until_quiet(max_pause=1.0) < 0.5  # nothing spins: returns after a step or two

    def wait_beside_a_spinning_thread(seconds):
        stop = time.perf_counter() + seconds

        def spin():  # as a BLAS runtime's worker thread does after a call
            while time.perf_counter() < stop:
                pass

        spinner = threading.Thread(target=spin)
        spinner.start()
        waited = wait_until_quiet(max_pause=1.0)
        spinner.join()
        return waited

    # On a shared virtual machine the spinning thread can lose its core for
    # a 5 ms step (CI once saw 95 ms of a 200 ms spin), which ends the wait
    # early; one of three tries must keep waiting while the thread burns CPU.
    waits = [wait_beside_a_spinning_thread(0.3) for _ in range(3)]
    assert max(waits) >= 0.1, waits


def test_star_import_without_scikit_learn():
    # __all__ named the estimators, which need scikit-learn: `from fastmle
    # import *` raised ImportError where it is not installed
    code = """if True:
        import sys
        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "sklearn":
                    raise ModuleNotFoundError("No module named 'sklearn'")
        sys.meta_path.insert(0, Blocked())
        from fastmle import *
        import fastmle
        assert "MLEClassifier" not in fastmle.__all__ and "MLEClassifier" not in dir(fastmle)
        assert softmax is fastmle.softmax
        import pydoc
        pydoc.render_doc(fastmle)  # help(fastmle) had raised the estimators' ImportError
        try:
            fastmle.MLEClassifier
        except ImportError as exc:
            print("needs scikit-learn" in str(exc))
    """
    assert run_python("-c", code).stdout.strip() == "True"
