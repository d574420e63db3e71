"""The bad-input matrix: every public function x each class of bad input
(tests/public_calls.py) x every backend x float32/float64 must raise a clear
TypeError or ValueError before any kernel runs (except the read-only scan
that is sgd_fit's check of X's values), leaving every array it was given
unchanged.

The matrix runs in a child interpreter, so a crash (a segfault in a kernel
fed garbage) fails these tests instead of killing the test run."""
import json
import os
import textwrap

import numpy as np
import pytest

import fastmle

from child import run_python
from public_calls import bad_inputs, public_calls

CASES = [(call.name, label) for call in public_calls(np.float64, np.random.default_rng(0))
         for label, _ in bad_inputs(call)]
RUNS_PER_CASE = 3 * 2  # backends x dtypes


@pytest.fixture(scope="module")
def outcomes():
    """{(function, case): [record per backend and dtype]} from one child run."""
    # and the child imports the fastmle under test (see tests/child.py)
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import fastmle
        assert fastmle.__file__ == {fastmle.__file__!r}, fastmle.__file__
        from public_calls import run_bad_inputs
        for record in run_bad_inputs():
            print(json.dumps(record), flush=True)
    """)
    proc = run_python("-c", code, check=False)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, (f"the bad-input matrix crashed the interpreter (exit {proc.returncode}) "
                                  f"after {records[-1:]}:\n{proc.stderr[-3000:]}")
    table = {}
    for r in records:
        table.setdefault((r["call"], r["case"]), []).append(r)
    return table


def test_the_matrix_covers_every_public_function():
    import fastmle
    import fastmle.dask

    covered = {name.split("(")[0].removeprefix("dask.") for name, _ in CASES}
    public = set(fastmle.__all__) - {"available_backends", "backend", "get_backend", "set_backend",
                                     "get_num_threads", "set_num_threads", "show_config", "__version__",
                                     "SGDResult", "SGDDivergedError", "MLEResult", "SingularFisherError",
                                     "PerfectSeparationError"}
    assert public <= covered, public - covered
    dask_covered = {name.removeprefix("dask.") for name, _ in CASES if name.startswith("dask.")}
    # fastmle.dask.score is loglik's gradient, the same code path
    assert set(fastmle.dask.__all__) - {"score", "FisherAccumulator"} <= dask_covered


@pytest.mark.parametrize("call", public_calls(np.float64, np.random.default_rng(0)), ids=lambda c: c.name)
def test_the_valid_call_each_case_changes_succeeds(call):
    # else every "bad" variant would fail for the wrong reason
    # (tests/test_unusual_memory.py runs them on every backend and dtype)
    call("numpy")


@pytest.mark.parametrize("function, case", CASES)
def test_bad_input_raises_a_clear_error_before_any_kernel(outcomes, function, case):
    runs = outcomes[(function, case)]
    assert len(runs) == RUNS_PER_CASE
    for r in runs:
        where = f"{function} [{case}] backend={r['backend']} {r['dtype']}"
        assert r["error"] is not None, f"{where}: accepted"
        assert r["clear"], f"{where}: {r['error']}: {r['message']} (expected a TypeError or ValueError)"
        assert r["message"] and "internal error" not in r["message"], f"{where}: {r['message']}"
        # scan_rows is sgd_fit's check of a dense X itself: it reads X and
        # writes two numbers to a buffer of its own, after every other check
        others = [k for k in r["kernels_ran"] if k != "scan_rows"]
        assert not others, f"{where}: kernels {r['kernels_ran']} ran before the error"
        if r["kernels_ran"]:
            assert "NaN or infinity" in r["message"], f"{where}: scan_rows ran before {r['message']}"
        assert not r["changed"], f"{where}: changed {r['changed']}"


def _review_cases():
    """Bad arguments a review found accepted, or refused with a message that
    named nothing (session 21): (call, exception, message)."""
    rng = np.random.default_rng(0)
    X, x = rng.standard_normal((20, 3)), np.zeros((2, 3))
    return [
        (lambda: fastmle.gaussian_nll(x, x, 1.0, eps="1e-6"), TypeError, "eps must be a number"),
        (lambda: fastmle.gaussian_nll(x, x, 1.0, eps=True), TypeError, "eps must be a number"),
        (lambda: fastmle.gaussian_nll(x, x, 1.0, eps=np.array([1.0, 2.0])), TypeError, "eps must be a number"),
        (lambda: fastmle.glm_fisher(X, ["a", "b", "c"], "binomial"), TypeError, "coef must hold real numbers"),
        (lambda: fastmle.glm_fisher(X, np.zeros(3), "binomial", intercept="a"), TypeError,
         "intercept must hold real numbers"),
        (lambda: fastmle.glm_fisher(X, np.array([1 + 5j, 0, 0]), "binomial"), TypeError,
         "coef must hold real numbers"),  # the imaginary part was dropped with a warning
        (lambda: fastmle.fisher_vector_product(X, np.array([1 + 5j, 0, 0]), "binomial", np.ones(3)), TypeError,
         "coef must hold real numbers"),
        (lambda: fastmle.glm_fisher(X, np.zeros((3, 2)), "multinomial", intercept=np.zeros(5), reference_class=0),
         ValueError, r"intercept must be a scalar or have shape \(2,\)"),
        (lambda: fastmle.logsumexp(np.ones(3), b="1"), TypeError, "b must be"),
        (lambda: fastmle.FisherAccumulator(2, dtype=np.float32).update(np.full((3, 2), 1e39)), ValueError,
         "beyond the range of float32"),
        (lambda: fastmle.FisherAccumulator(2).update([[1, 2], [3]]), ValueError, r"scores must be a 2-D array"),
        (lambda: fastmle.FisherAccumulator(10**12), ValueError, "n_params=1000000000000 needs"),
        (lambda: fastmle.entropy(np.array([0.5, 0.5]), base="2"), TypeError, "base must be a number"),
        (lambda: fastmle.cross_entropy(x, np.full((2, 3), 1 / 3), ignore_index=1), ValueError,
         "ignore_index=1 is not supported with class-probability targets"),  # it was silently not applied
        # session 22: numpy's "arg 0 ... arg 1"
        (lambda: fastmle.logsumexp(x, b=np.ones(2)), ValueError, r"a and b cannot be broadcast .* b \(2,\)"),
        (lambda: fastmle.kl_div(x, np.ones(2)), ValueError, r"p and q cannot be broadcast .* q \(2,\)"),
        # finite weights cast to float32 X's dtype: reported as "not finite" and "zero for every sample"
        (lambda: fastmle.sgd_fit(X.astype(np.float32), X[:, 0], "gaussian", sample_weight=np.full(20, 1e39)),
         ValueError, "sample_weight has values outside the range of float32"),
        (lambda: fastmle.sgd_fit(X.astype(np.float32), X[:, 0], "gaussian", sample_weight=np.full(20, 1e-50)),
         ValueError, "sample_weight has values outside the range of float32"),
    ]


@pytest.mark.parametrize("case", range(len(_review_cases())))
def test_bad_arguments_are_named(case):
    call, exception, message = _review_cases()[case]
    with pytest.raises(exception, match=message):
        call()
