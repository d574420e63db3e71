"""Bad `python -m fastmle bench` options: a usage error naming the option,
before any timing (no traceback, no silent fallback to the default sizes),
and numpy integer scalars where the API takes a number."""
import re

import numpy as np
import pytest

import fastmle
from child import run_python

SMALL = ["--kernels", "logsumexp", "--repeat", "1", "--dtypes", "float32"]


@pytest.mark.parametrize("options, message", [
    (["--shape", "abc"] + SMALL, "--shape must be sizes >= 1 joined by 'x'"),
    (["--shape", "64x"] + SMALL, "--shape must be sizes >= 1 joined by 'x'"),
    (["--shape", "64x0"] + SMALL, "--shape must be sizes >= 1 joined by 'x'"),
    (["--threads", "0", "--shape", "8x8"] + SMALL, "--threads must be in [1, "),
    (["--threads", "-1", "--shape", "8x8"] + SMALL, "--threads must be in [1, "),
    (["--threads", "100000", "--shape", "8x8"] + SMALL, "--threads must be in [1, "),
    (["--shape", "8x8x8"] + SMALL, "has 3 dimensions, but none of the kernels"),
    (["--kernels", "logsumexp", "--shape", "8x8", "--repeat", "1", "--dtypes", "float16"], "unknown dtype(s)"),
    (["--kernels", "sgd_epoch", "--repeat", "1", "--dtypes", "float32"], "runs in the dtypes"),
    (["--budget", "0"] + SMALL, "--budget must be a positive number"),
    (["--repeat", "0", "--kernels", "logsumexp"], "--repeat must be at least 1"),
    (["--json", "/no/such/folder/x.json"] + SMALL, "is not a folder this process can write to"),
    (["--plot", "/no/such/folder/x.png"] + SMALL, "is not a folder this process can write to"),
    (["--kernels"], "expected at least one argument"),
    (["--kernels", "logsumexp", "--dtypes"], "argument --dtypes: expected at least one argument"),
])
def test_bad_bench_options_are_usage_errors(options, message):
    r = run_python("-m", "fastmle", "bench", *options, check=False)
    assert r.returncode != 0, r.stdout
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "ms" not in r.stdout  # nothing was timed


def test_numpy_integer_scalars_are_numbers():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0.5, 1.0, 2.5, 2.9])
    np.testing.assert_array_equal(fastmle.glm_fisher(X, [0.2], "gaussian", scale=np.int64(2)),
                                  fastmle.glm_fisher(X, [0.2], "gaussian", scale=2))
    np.testing.assert_array_equal(fastmle.fit_mle(X, y, "gaussian", alpha=np.int64(1)).params,
                                  fastmle.fit_mle(X, y, "gaussian", alpha=1).params)
    with pytest.raises(ValueError, match="alpha"):
        fastmle.fit_mle(X, y, "gaussian", alpha=True)
    with pytest.raises(ValueError, match="scale"):
        fastmle.glm_fisher(X, [0.2], "gaussian", scale=True)


@pytest.mark.parametrize("kernel, shape, failing", [
    ("fit_mle", "300x3x1", "numpy newton failed: ValueError"),  # one class
    ("fit_mle", "3x1x3", "fastmle.c failed: ValueError: reference_class 0 is not one of the classes"),
    ("sgd_epoch", "300x3x1", "fastmle.c failed: ValueError: multinomial y needs at least 2 classes"),
])
def test_a_shape_an_implementation_cannot_take_is_reported_not_a_traceback(kernel, shape, failing):
    # the other kernels' rows are still measured, and the exit status says
    # that the table is incomplete
    r = run_python("-m", "fastmle", "bench", "--kernels", kernel, "logsumexp", "--shape", shape, "--repeat", "1",
                   "--dtypes", "float64", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert re.search(r"^logsumexp +\S+ +float64 +fastmle\.c +\d", r.stdout, re.M), r.stdout
    assert f"{kernel:<20} {shape:<15} float64  not measured: {failing}" in r.stdout, r.stdout
    assert f"1 not measured:\n  {kernel} {shape} float64: {failing}" in r.stdout, r.stdout


def test_bench_without_the_optional_peers():
    # a runtime-only install (no scikit-learn, statsmodels, scipy, torch):
    # the figures of merit had been "not measured" failures, exit status 1
    code = """if True:
        import runpy, sys
        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("sklearn", "statsmodels", "scipy", "torch"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Blocked())
        sys.argv = ["fastmle", "bench", "--kernels", "sgd_epoch", "fit_mle", "logsumexp", "--shape", "400x3x3",
                    "--repeat", "1", "--dtypes", "float64"]
        runpy.run_module("fastmle", run_name="__main__")
    """
    r = run_python("-c", code, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not installed, so not compared (their columns show -): scipy, sklearn, statsmodels, torch" in r.stdout
    assert "sgd_epoch: figure of merit skipped: it needs sklearn (pip install scikit-learn)" in r.stdout
    assert "fit_mle: figure of merit skipped: it needs statsmodels (pip install statsmodels)" in r.stdout
    assert re.search(r"^sgd_epoch +400x3x3 +float64 +fastmle\.c +\d", r.stdout, re.M), r.stdout
