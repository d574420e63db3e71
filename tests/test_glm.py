"""GLM likelihood kernels and the SGD epoch: every backend against the numpy
reference (fastmle/reference/glm.py), the reference against independent
formulas (fastmle's own losses, scipy) and finite differences, and
hypothesis properties."""

import importlib
import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, strategies as st

import fastmle
from fastmle import _dispatch
from fastmle.glm import as_design_matrix, label_indices
from fastmle.reference import glm as ref
from fastmle.reference.glm import FAMILIES

from cases import assert_same, special_rows

# (n, d, K) around the blocking of the kernels: blocks of 2-4 rows and of
# 4, 2, 1 outputs, features around the SIMD width and the backward's blocks
# of columns (up to 64 float32 on AVX-512), several chunks
SHAPES = [(1, 1, 1), (2, 3, 2), (3, 4, 3), (5, 7, 4), (6, 8, 5), (9, 9, 9), (33, 17, 6),
          (700, 5, 3), (300, 33, 11), (13, 65, 7), (50, 100, 10)]


def tol(dtype):
    return (3e-5, 3e-5) if dtype == np.float32 else (1e-11, 1e-12)


def problem(family, n, d, K, dtype, rng, weighted=False, scale=1.0):
    """Kernel-layout inputs: X, labels, targets, sample_weight, params."""
    if family == "binomial":
        K = 1
    X = rng.standard_normal((n, d)).astype(dtype)
    params = (scale * rng.standard_normal((K, d + 1)) / np.sqrt(d)).astype(dtype)
    labels = np.empty(0, np.int64)
    targets = np.empty((0, K), dtype)
    if family == "multinomial":
        labels = rng.integers(0, K, n)
    elif family == "binomial":
        targets = rng.integers(0, 2, (n, 1)).astype(dtype)
    elif family == "gaussian":
        targets = rng.standard_normal((n, K)).astype(dtype)
    else:
        targets = rng.poisson(2.0, (n, K)).astype(dtype)
    w = (rng.random(n) + 0.5).astype(dtype) if weighted else np.empty(0, dtype)
    return X, labels, targets, w, params


def kernels(backend):
    return _dispatch.kernels(backend, "glm")


NO_OFFSET = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}  # the kernels' "no offset"


# ---------------------------------------------------------------- kernels vs reference


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("with_offset", [False, True], ids=["no_offset", "offset"])
def test_loss_grad_and_predict_match_reference(backend, dtype, rng, family, weighted, with_offset):
    rtol, atol = tol(dtype)
    code = FAMILIES.index(family)
    for n, d, K in SHAPES:
        X, labels, targets, w, params = problem(family, n, d, K, dtype, rng, weighted)
        offset = (rng.standard_normal(n) - 0.5).astype(dtype) if with_offset else NO_OFFSET[X.dtype]
        results = {}
        for name in ("numpy", backend):
            loss = np.zeros(1)
            grad = np.empty_like(params)
            kernels(name).glm_loss_grad(X, labels, targets, w, params, offset, code, loss, grad)
            mean = np.empty((n, params.shape[0]), dtype)
            kernels(name).glm_predict(X, params, offset, code, mean)
            results[name] = loss, grad, mean
        err = f"{backend} {family} {(n, d, K)}"
        (l0, g0, m0), (l1, g1, m1) = results["numpy"], results[backend]
        assert_same(l1, l0, rtol, atol * n, err=err + " loss")
        assert_same(g1, g0, rtol, atol * n, err=err + " grad")
        assert_same(m1, m0, rtol, atol, err=err + " predict")


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_and_gradient_free_calls(backend, dtype, rng, family):
    X, labels, targets, w, params = problem(family, 0, 4, 3, dtype, rng)
    code = FAMILIES.index(family)
    loss = np.full(1, np.nan)
    grad = np.full_like(params, np.nan)
    kernels(backend).glm_loss_grad(X, labels, targets, w, params, NO_OFFSET[X.dtype], code, loss, grad)
    assert loss[0] == 0 and (grad == 0).all()
    X, labels, targets, w, params = problem(family, 40, 4, 3, dtype, rng)
    loss = np.zeros(1)
    kernels(backend).glm_loss_grad(X, labels, targets, w, params, NO_OFFSET[X.dtype], code, loss,
                                   np.empty((0, params.shape[1]), dtype))
    want = np.zeros(1)
    ref.glm_loss_grad(X, labels, targets, w, params, NO_OFFSET[X.dtype], code, want, np.empty((0, 5), dtype))
    assert_same(loss, want, *tol(dtype))


@pytest.mark.parametrize("family", ["multinomial", "binomial"])
def test_extreme_linear_predictors_stay_finite(backend, dtype, family, rng):
    # |eta| in the hundreds: logsumexp and softplus must not overflow
    X, labels, targets, w, params = problem(family, 20, 3, 4, dtype, rng, scale=400.0)
    loss = np.zeros(1)
    grad = np.empty_like(params)
    code, none = FAMILIES.index(family), NO_OFFSET[X.dtype]
    kernels(backend).glm_loss_grad(X, labels, targets, w, params, none, code, loss, grad)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    want = np.zeros(1)
    ref.glm_loss_grad(X, labels, targets, w, params, none, code, want, np.empty_like(params))
    assert_same(loss, want, 1e-5 if dtype == np.float32 else 1e-12)


def test_overflowed_rows_give_the_reference_loss_and_gradient(backend, dtype):
    # exp(eta) overflows in one row: the full-batch loss and gradient are the
    # reference's (inf, and NaN where inf meets a zero feature), every row
    # counted, the same on every call (the kernels once stopped at that row
    # and summed the uninitialised gradients of the rows after it)
    n, d = 40, 3
    X = np.full((n, d), 0.5, dtype)
    X[10] = [200.0, 0.0, 1.0]
    targets = np.ones((n, 1), dtype)
    params = np.array([[4.0, 0.0, 0.0, 0.0]], dtype)  # eta = 800 in row 10: exp overflows in both dtypes
    code = FAMILIES.index("poisson")
    empty_w, labels = np.empty(0, dtype), np.empty(0, np.int64)
    want_loss, want_grad = np.zeros(1), np.empty_like(params)
    with np.errstate(invalid="ignore"):  # inf * 0 in the reference's product
        ref.glm_loss_grad(X, labels, targets, empty_w, params, NO_OFFSET[X.dtype], code, want_loss, want_grad)
    assert want_loss[0] == np.inf and np.isnan(want_grad).any()
    for _ in range(3):
        loss, grad = np.zeros(1), np.full_like(params, 7.0)
        with np.errstate(invalid="ignore"):  # the numpy backend is the reference
            kernels(backend).glm_loss_grad(X, labels, targets, empty_w, params, NO_OFFSET[X.dtype], code, loss, grad)
        np.testing.assert_array_equal(loss, want_loss)
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(want_grad))
        np.testing.assert_array_equal(np.isinf(grad), np.isinf(want_grad))
        finite = np.isfinite(want_grad)
        assert_same(grad[finite], want_grad[finite], *tol(dtype))


# ---------------------------------------------------------------- reference vs independent formulas


@pytest.mark.parametrize("family", FAMILIES)
def test_reference_loss_is_the_negative_log_likelihood(family, rng):
    X, labels, targets, w, params = problem(family, 50, 4, 3, np.float64, rng, weighted=True)
    eta = X @ params[:, :-1].T + params[:, -1]
    if family == "multinomial":
        per = fastmle.cross_entropy(eta, labels, reduction="none", backend="numpy")
    elif family == "binomial":
        per = -scipy.stats.bernoulli.logpmf(targets[:, 0], scipy.special.expit(eta[:, 0]))
    elif family == "gaussian":  # minus the constant log(2 pi) / 2 per output
        per = -(scipy.stats.norm.logpdf(targets, eta) + 0.5 * np.log(2 * np.pi)).sum(axis=1)
    else:  # plus the constant log(y!)
        per = -(scipy.stats.poisson.logpmf(targets, np.exp(eta)) + scipy.special.gammaln(targets + 1)).sum(axis=1)
    loss = np.zeros(1)
    ref.glm_loss_grad(X, labels, targets, w, params, NO_OFFSET[X.dtype], FAMILIES.index(family), loss, np.empty((0, 5)))
    np.testing.assert_allclose(loss[0], np.sum(w * per), rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_matches_finite_differences(family, rng):
    X, labels, targets, w, params = problem(family, 30, 3, 3, np.float64, rng, weighted=True)
    code = FAMILIES.index(family)

    def f(p):
        out = np.zeros(1)
        ref.glm_loss_grad(X, labels, targets, w, p, NO_OFFSET[X.dtype], code, out, np.empty((0, 4)))
        return out[0]
    grad = np.empty_like(params)
    ref.glm_loss_grad(X, labels, targets, w, params, NO_OFFSET[X.dtype], code, np.zeros(1), grad)
    h = 1e-6
    numeric = np.zeros_like(params)
    for idx in np.ndindex(params.shape):
        e = np.zeros_like(params)
        e[idx] = h
        numeric[idx] = (f(params + e) - f(params - e)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_public_glm_loss_and_predict(backend, dtype, rng):
    X = rng.standard_normal((40, 3)).astype(dtype)
    coef = rng.standard_normal((3, 4))
    b = rng.standard_normal(4)
    y = rng.integers(0, 4, 40)
    eta = X.astype(np.float64) @ coef + b
    loss, (dcoef, db) = fastmle.glm_loss(X, y, coef, "multinomial", intercept=b, return_grad=True, backend=backend)
    want, dz = fastmle.cross_entropy(eta, y, return_grad=True, backend="numpy")
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, want, rtol=rtol)
    np.testing.assert_allclose(dcoef, X.astype(np.float64).T @ dz, rtol=rtol * 10, atol=rtol)
    np.testing.assert_allclose(db, dz.sum(axis=0), rtol=rtol * 10, atol=rtol)
    assert dcoef.dtype == dtype
    p = fastmle.glm_predict(X, coef, "multinomial", intercept=b, backend=backend)
    np.testing.assert_allclose(p, scipy.special.softmax(eta, axis=1), rtol=rtol * 10)
    assert p.dtype == dtype


@pytest.mark.parametrize("family", ["binomial", "gaussian", "poisson"])
def test_public_glm_loss_and_predict_with_an_offset(backend, dtype, rng, family):
    # the offset is a known term of each linear predictor: the mean and the
    # negative log-likelihood of eta = X coef + b + offset, from scipy
    X = rng.standard_normal((40, 3)).astype(dtype)
    coef, b = 0.5 * rng.standard_normal(3), 0.2
    offset = rng.standard_normal(40).astype(dtype)
    eta = X.astype(np.float64) @ coef + b + offset
    if family == "binomial":
        y = rng.integers(0, 2, 40)
        mean, per = scipy.special.expit(eta), -scipy.stats.bernoulli.logpmf(y, scipy.special.expit(eta))
    elif family == "gaussian":
        y = rng.standard_normal(40)
        mean, per = eta, 0.5 * (y - eta) ** 2
    else:
        y = rng.poisson(2.0, 40)
        mean, per = np.exp(eta), np.exp(eta) - y * eta
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    got = fastmle.glm_predict(X, coef, family, intercept=b, offset=offset, backend=backend)
    np.testing.assert_allclose(got[:, 0], mean, rtol=rtol * 10)
    loss, (dcoef, db) = fastmle.glm_loss(X, y, coef, family, intercept=b, offset=offset, return_grad=True,
                                         backend=backend)
    np.testing.assert_allclose(loss, per.mean(), rtol=rtol * 10)
    g = (mean - y) / 40  # d loss / d eta of the mean loss
    np.testing.assert_allclose(dcoef[:, 0], X.astype(np.float64).T @ g, rtol=rtol * 100, atol=rtol)
    np.testing.assert_allclose(db, [g.sum()], rtol=rtol * 100, atol=rtol)
    # the same as a row-specific intercept, with no offset
    assert fastmle.glm_loss(X, y, coef, family, intercept=b + 1.0, backend=backend) == pytest.approx(
        fastmle.glm_loss(X, y, coef, family, intercept=b, offset=np.ones(40, dtype), backend=backend), rel=rtol)


@pytest.mark.parametrize("offset, error, match", [
    (np.zeros(39), ValueError, r"offset must have shape \(40,\), got \(39,\)"),
    (np.zeros((40, 1)), ValueError, r"offset must have shape \(40,\)"),
    (np.r_[np.zeros(39), np.inf], ValueError, "offset contains NaN or infinity"),
    (np.array(["a"] * 40), TypeError, "offset"),
])
def test_public_glm_offset_bad_input(rng, offset, error, match):
    X = rng.standard_normal((40, 3))
    y = rng.integers(0, 2, 40)
    for call in (lambda: fastmle.glm_predict(X, np.zeros(3), "binomial", offset=offset),
                 lambda: fastmle.glm_loss(X, y, np.zeros(3), "binomial", offset=offset)):
        with pytest.raises(error, match=match):
            call()
    with pytest.raises(ValueError, match="offset is not defined for the multinomial family"):
        fastmle.glm_predict(X, np.zeros((3, 2)), "multinomial", offset=np.zeros(40))
    with pytest.raises(ValueError, match="outside the range of float32"):
        fastmle.glm_predict(X.astype(np.float32), np.zeros(3), "binomial", offset=np.full(40, 1e300))


# ---------------------------------------------------------------- the SGD epoch kernel

EPOCH_OPTIONS = {  # name -> (l2, l1, momentum, nesterov, fit_intercept, averaging)
    "plain": (0.0, 0.0, 0.0, False, True, False),
    "no-intercept": (0.0, 0.0, 0.0, False, False, False),
    "l2": (0.05, 0.0, 0.0, False, True, False),
    "elastic-net": (0.02, 0.03, 0.0, False, True, False),
    "momentum": (0.0, 0.0, 0.9, False, True, False),
    "nesterov+l2": (0.01, 0.0, 0.8, True, True, False),
    "averaged": (0.0, 0.0, 0.0, False, True, True),
    "everything": (0.01, 0.01, 0.5, True, False, True),
}


def test_label_indices_of_classes_0_to_K_minus_1_take_the_short_path(rng, monkeypatch):
    # labels 0..K-1 are their own indices (no search); the answer is the
    # searched one's, for every integer dtype, and any label outside the
    # classes still raises naming it. Classes that only start at 0 and end
    # at K-1 (unsorted, repeated) are not 0..K-1: searched, they raise.
    for dtype in (np.int64, np.int32, np.uint8, np.int8):
        y = rng.integers(0, 5, 300).astype(dtype)
        classes = np.arange(5, dtype=dtype)
        with monkeypatch.context() as patch:
            patch.setattr(np, "searchsorted", None)   # the short path does not search
            got = label_indices(y, classes, "classes_")
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, np.searchsorted(classes, y))
        np.testing.assert_array_equal(label_indices(y, classes.astype(np.float64), "classes_"), y)
    for y, classes, label in [(np.array([0, 5, 1]), np.arange(5), 5), (np.array([0, -1]), np.arange(5), -1),
                              (np.array([2, 1]), np.array([0, 2, 3]), 1), (np.array([1]), np.array([0, 2, 1, 3]), 1),
                              (np.array([1]), np.array([0, 2, 2]), 1)]:
        with pytest.raises(ValueError, match=f"label {label} not among classes_"):
            label_indices(y, classes, "classes_")
    np.testing.assert_array_equal(label_indices(np.array([3, 0, 3]), np.array([0, 3, 9]), "c"), [1, 0, 1])
    assert label_indices(np.array([], np.int64), np.arange(3), "c").shape == (0,)


def run_epoch(backend, X, labels, targets, w, params, perm, lr, family, batch_size, option, step0=0):
    l2, l1, momentum, nesterov, fit_intercept, averaging = EPOCH_OPTIONS[option]
    p = params.copy()
    if not fit_intercept:
        p[:, -1] = 0
    v = np.zeros_like(p) if momentum else np.empty((0, p.shape[1]), p.dtype)
    a = np.zeros_like(p)
    loss = np.zeros(1)
    done = kernels(backend).sgd_epoch(X, labels, targets, w, perm, lr, FAMILIES.index(family),
                                      batch_size, l2, l1, momentum, nesterov, fit_intercept, p, v, a,
                                      3 if averaging else -1, step0, loss)
    return done, p, v, a, loss


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("option", list(EPOCH_OPTIONS))
def test_sgd_epoch_matches_reference(backend, dtype, rng, family, option):
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-10, 1e-12)
    for (n, d, K), batch_size, weighted in [((37, 5, 3), 8, False), ((64, 9, 5), 1, True),
                                            ((50, 4, 2), 64, True), ((101, 17, 4), 7, False)]:
        X, labels, targets, w, params = problem(family, n, d, K, dtype, rng, weighted)
        perm = rng.permutation(n)[: n - 3]  # a subset, as with a validation split
        n_batches = -(-perm.size // batch_size)
        lr = (0.002 if family == "poisson" else 0.05) / (1 + np.arange(n_batches) / 10)
        want = run_epoch("numpy", X, labels, targets, w, params, perm, lr, family, batch_size, option)
        got = run_epoch(backend, X, labels, targets, w, params, perm, lr, family, batch_size, option)
        err = f"{backend} {family} {option} {(n, d, K)} batch {batch_size}"
        assert got[0] == want[0] == n_batches, err
        for name, g, e in zip(("params", "velocity", "average", "loss"), got[1:], want[1:]):
            assert_same(g, e, rtol, atol, err=f"{err} {name}")
        if not EPOCH_OPTIONS[option][4]:
            assert (got[1][:, -1] == 0).all(), err + ": intercept moved without fit_intercept"


def test_sgd_epoch_stops_before_a_non_finite_step(backend, dtype, rng):
    X, labels, targets, w, params = problem("poisson", 200, 4, 1, dtype, rng)
    X *= 10
    perm = rng.permutation(200)
    lr = np.full(20, 5.0)  # far too large: exp(eta) overflows within a few steps
    done, p, v, a, loss = run_epoch(backend, X, labels, targets, w, params, perm, lr, "poisson", 10, "plain")
    assert 0 < done < 20
    assert np.isfinite(p).all() and np.isfinite(loss).all()
    ref_done, ref_p = run_epoch("numpy", X, labels, targets, w, params, perm, lr, "poisson", 10, "plain")[:2]
    assert done == ref_done


@given(n=st.integers(1, 40), d=st.integers(1, 12), K=st.integers(1, 6), batch_size=st.integers(1, 50),
       family=st.sampled_from(FAMILIES), option=st.sampled_from(list(EPOCH_OPTIONS)),
       seed=st.integers(0, 2**32 - 1))
def test_sgd_epoch_property_compiled_equals_reference(n, d, K, batch_size, family, option, seed):
    rng = np.random.default_rng(seed)
    X, labels, targets, w, params = problem(family, n, d, K, np.float64, rng, weighted=seed % 2 == 1)
    perm = rng.permutation(n)
    lr = np.full(-(-n // batch_size), 0.003 if family == "poisson" else 0.03)
    want = run_epoch("numpy", X, labels, targets, w, params, perm, lr, family, batch_size, option)
    for backend in ("c", "numba"):
        if backend not in fastmle.available_backends():
            continue
        got = run_epoch(backend, X, labels, targets, w, params, perm, lr, family, batch_size, option)
        assert got[0] == want[0]
        for g, e in zip(got[1:], want[1:]):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("family, K, option", [("multinomial", 8, "momentum"), ("multinomial", 11, "elastic-net"),
                                               ("multinomial", 10, "everything"), ("gaussian", 6, "plain"),
                                               ("poisson", 5, "nesterov+l2")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [64, 100])
def test_threaded_sgd_epoch_is_deterministic_and_matches_reference(rng, family, K, option, dtype, d):
    # d = 100: the products' last vector ends at d. 32 x 64 x K
    # multiply-adds per batch, at or above the epochs' threshold
    # (FM_GLM_PARALLEL_MIN_WORK): each thread owns a range of outputs, on
    # two threads 4 + 4 for K = 8, 5 + 6 for K = 11 (blocks of 4 and 1, of
    # 4 and 2), 5 + 5, 3 + 3, 2 + 3: the products' blocks of 4, 2 and 1
    # outputs start at every offset. The last batch has 27 rows. The
    # smaller problems above run on one thread.
    X, labels, targets, w, params = problem(family, 3003, d, K, dtype, rng, weighted=family != "multinomial",
                                            scale=0.1)
    perm = rng.permutation(3003)
    lr = np.full(94, 0.02)
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-9, 1e-11)
    want = run_epoch("numpy", X, labels, targets, w, params, perm, lr, family, 32, option)
    previous = fastmle.get_num_threads()
    try:
        for backend in fastmle.available_backends()[:-1]:  # the compiled ones
            results = []
            for threads in (1, fastmle._dispatch.max_threads()):
                fastmle.set_num_threads(threads)
                results.append(run_epoch(backend, X, labels, targets, w, params, perm, lr, family, 32, option))
            # a team that disbands at its first barrier: thread 0 goes on alone
            set_limit = (fastmle._c.lib.fm_set_team_disband_sleeps if backend == "c"
                         else fastmle._numba.team.set_team_disband_sleeps)
            limit = set_limit(0)
            try:
                results.append(run_epoch(backend, X, labels, targets, w, params, perm, lr, family, 32, option))
            finally:
                set_limit(limit)
            for other in results[1:]:
                assert results[0][0] == other[0] == want[0] == 94
                for a, b in zip(results[0][1:], other[1:]):
                    np.testing.assert_array_equal(a, b, err_msg=backend)
            for g, e in zip(results[1][1:], want[1:]):
                np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=backend)
    finally:
        fastmle.set_num_threads(previous)
    assert fastmle._dispatch.max_threads() > 1, "only one thread here: the threaded path was not run"


def last_team(backend):
    """(threads that ran, trial outcome) of the backend's last dense SGD
    epoch: 0 no trial, 1 the team resumed, 2 thread 0 kept on alone, 3 the
    epoch stopped inside the trial, 4 the team disbanded at its end."""
    if backend == "c":
        trial = fastmle._c.ffi.new("int *")
        return fastmle._c.lib.fm_team_last(trial), trial[0]
    return importlib.import_module("fastmle._numba.glm").last_team()


# The trial's cases (window of 3 batches): the margin one thread must win
# by, the barrier crossing at which the team is made to disband (0: none)
# and the outcome reported. Crossing 7 is batch 6's, where the trial would
# start; 8 the trial's end (the other threads waited through batches 6-8);
# 10 is batch 10's, after the team resumed at batch 9 (the report says the
# team resumed; the disband must keep the bits and not hang).
TRIAL_CASES = {"team resumes": (10**6, 0, 1), "thread 0 keeps on": (-100, 0, 2),
               "stopped in the trial": (10**6, 0, 3), "disbands at the trial's end": (10**6, 8, 4),
               "disbands as the trial starts": (10**6, 7, 0), "disbands after it": (10**6, 10, 1)}


@pytest.mark.parametrize("case", list(TRIAL_CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("K", [10, 8])
def test_team_trial_keeps_the_trajectory(rng, case, dtype, K):
    # The epoch's trial of its team against one thread (csrc sgd_epoch,
    # _numba glm._epoch_part), in windows of 3 batches: the team does
    # batches 3-5, thread 0 alone 6-8 while the others wait, then the team
    # resumes (a margin no time wins) or thread 0 keeps the rest (margin
    # -100%: any time wins). A row of huge values in batch 7 stops the
    # epoch there or in the next batch, inside the trial: the waiting
    # threads must be released. A team disbanded at a fixed barrier leaves
    # thread 0 alone. Every case gives one thread's bits. K = 8
    # and 10: 4 and 5 outputs per thread (with blocks of 4 outputs and a
    # second barrier per batch for the 2 of 10 left over, a waiting thread
    # once read the trial's start a batch early with K = 8).
    margin, disband_at, outcome = TRIAL_CASES[case]
    X, labels, targets, w, params = problem("multinomial", 3003, 100, K, dtype, rng, weighted=True, scale=0.1)
    perm = rng.permutation(3003)
    if case == "stopped in the trial":
        X[perm[7 * 32 + 5]] = np.finfo(dtype).max
    lr = np.full(94, 0.02)
    previous = fastmle.get_num_threads()
    for backend in fastmle.available_backends()[:-1]:  # the compiled ones
        team = fastmle._c.lib if backend == "c" else importlib.import_module("fastmle._numba.team")
        set_trial, set_disband_at = ((team.fm_set_team_trial, team.fm_set_team_disband_at) if backend == "c"
                                     else (team.set_team_trial, team.set_team_disband_at))
        window, crossing = set_trial(3, margin), set_disband_at(disband_at)
        # no disband by sleeps (a loaded host): only the chosen crossing's
        sleeps = team.fm_set_team_disband_sleeps(10**9) if backend == "c" else team.set_team_disband_sleeps(10**9)
        try:
            fastmle.set_num_threads(1)
            want = run_epoch(backend, X, labels, targets, w, params, perm, lr, "multinomial", 32, "everything")
            fastmle.set_num_threads(fastmle._dispatch.max_threads())
            got = run_epoch(backend, X, labels, targets, w, params, perm, lr, "multinomial", 32, "everything")
            report = last_team(backend)
        finally:
            set_trial(window, 10)
            set_disband_at(crossing)
            team.fm_set_team_disband_sleeps(sleeps) if backend == "c" else team.set_team_disband_sleeps(sleeps)
            fastmle.set_num_threads(previous)
        assert got[0] == want[0], backend
        assert 6 <= want[0] < 9 if case == "stopped in the trial" else want[0] == 94
        assert report == (2, outcome), (backend, report)   # the trial did run, or not
        for a, b in zip(want[1:], got[1:]):
            np.testing.assert_array_equal(a, b, err_msg=backend)
    assert fastmle._dispatch.max_threads() > 1, "only one thread here: the team was not run"


@pytest.mark.parametrize("K, option", [(10, "everything"), (5, "plain"), (11, "no-intercept")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threaded_sgd_epoch_with_few_features_and_rows_per_thread(rng, K, option, dtype):
    # Rows shorter than a vector (d = 7: the products' scalar paths) in
    # threads of 5 + 5, 2 + 3 and 5 + 6 outputs; batches of 256 rows keep
    # the work above the threaded threshold, and the last batch has 3
    # rows. The C epoch also runs on three threads (more than the cores:
    # only the result is checked).
    X, labels, targets, w, params = problem("multinomial", 3 * 256 + 3, 7, K, dtype, rng, scale=0.3)
    perm = rng.permutation(len(X))
    lr = np.full(4, 0.05)
    want = run_epoch("numpy", X, labels, targets, w, params, perm, lr, "multinomial", 256, option)
    previous = fastmle.get_num_threads()
    try:
        for backend in fastmle.available_backends()[:-1]:  # the compiled ones
            results = []
            counts = [1, fastmle._dispatch.max_threads()] + ([3] if backend == "c" else [])
            for threads in counts:
                fastmle.set_num_threads(threads if threads <= fastmle._dispatch.max_threads() else 1)
                if threads > fastmle._dispatch.max_threads():
                    fastmle._c.lib.fm_set_num_threads(threads)
                results.append(run_epoch(backend, X, labels, targets, w, params, perm, lr, "multinomial", 256,
                                         option))
            for other, threads in zip(results[1:], counts[1:]):
                assert other[0] == results[0][0] == want[0] == 4
                for a, b in zip(results[0][1:], other[1:]):
                    np.testing.assert_array_equal(a, b, err_msg=f"{backend} on {threads} threads")
            rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-9, 1e-11)
            for g, e in zip(results[0][1:], want[1:]):
                np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=backend)
    finally:
        fastmle.set_num_threads(previous)
    assert fastmle._dispatch.max_threads() > 1, "only one thread here: the threaded path was not run"


def test_numba_sgd_epoch_runs_alone_when_its_team_does_not_start(rng, monkeypatch):
    # The Numba epoch's threads meet at a barrier once per batch. A
    # threading layer that runs the team's iterations one after another
    # (here: a team of 2 asked for, one Numba thread to run it) must not
    # leave thread 0 waiting forever: it waits 20 ms for the other, then
    # runs every block alone, with the same result, and the next epochs
    # asking for that team run on one thread without waiting.
    pytest.importorskip("numba")
    from fastmle._numba import glm as numba_glm

    X, labels, targets, w, params = problem("multinomial", 3000, 64, 10, np.float64, rng, weighted=False,
                                            scale=0.1)
    perm = rng.permutation(3000)
    lr = np.full(94, 0.02)
    monkeypatch.setattr(numba_glm, "_FAILED_TEAMS", {})
    previous = fastmle.get_num_threads()
    try:
        fastmle.set_num_threads(1)
        want = run_epoch("numba", X, labels, targets, w, params, perm, lr, "multinomial", 32, "momentum")
        assert numba_glm._FAILED_TEAMS == {}
        monkeypatch.setattr(numba_glm, "get_num_threads", lambda: 2)
        got = [run_epoch("numba", X, labels, targets, w, params, perm, lr, "multinomial", 32, "momentum")]
        assert numba_glm._FAILED_TEAMS == {2: numba_glm._RETRY_AFTER}, "the team of 2 did not run alone"
        got.append(run_epoch("numba", X, labels, targets, w, params, perm, lr, "multinomial", 32, "momentum"))
        assert numba_glm._FAILED_TEAMS == {2: numba_glm._RETRY_AFTER - 1}  # one thread asked for
        monkeypatch.setattr(numba_glm, "_FAILED_TEAMS", {2: 1})  # the last epoch before a new try
        got.append(run_epoch("numba", X, labels, targets, w, params, perm, lr, "multinomial", 32, "momentum"))
        assert numba_glm._FAILED_TEAMS == {}
        got.append(run_epoch("numba", X, labels, targets, w, params, perm, lr, "multinomial", 32, "momentum"))
        assert numba_glm._FAILED_TEAMS == {2: numba_glm._RETRY_AFTER}  # tried again, alone again
    finally:
        fastmle.set_num_threads(previous)
    for result in got:
        assert result[0] == want[0] == 94
        for a, b in zip(result[1:], want[1:]):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- CSR kernels


def as_csr(X, rng):
    """X with about 60% zeros in CSR arrays (int32 indices, int64 indptr),
    with one empty row and one duplicated entry (split in two halves)."""
    X = X.copy()
    X[rng.random(X.shape) < 0.6] = 0
    X[0] = 0
    rows, cols = np.nonzero(X)
    data = X[rows, cols]
    if len(data):  # a duplicate entry: its halves add up to the value
        rows, cols = np.r_[rows, rows[-1]], np.r_[cols, cols[-1]]
        data = np.r_[data[:-1], data[-1] / 2, data[-1] / 2].astype(X.dtype)
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(X.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=indptr[1:])
    return X, (data[order], cols[order].astype(np.int32), indptr, X.shape[1])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("option", list(EPOCH_OPTIONS))
def test_csr_kernels_match_reference(backend, dtype, rng, family, option):
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-10, 1e-12)
    l2, l1, momentum, nesterov, fit_intercept, averaging = EPOCH_OPTIONS[option]
    code = FAMILIES.index(family)
    for (n, d, K), batch_size in [((37, 5, 3), 8), ((64, 40, 5), 1), ((300, 9, 2), 64)]:
        X, labels, targets, w, params = problem(family, n, d, K, dtype, rng, weighted=True)
        X, csr = as_csr(X, rng)
        if not fit_intercept:
            params[:, -1] = 0
        perm = rng.permutation(n)
        lr = np.full(-(-n // batch_size), 0.002 if family == "poisson" else 0.05)
        # the full-batch kernels with and without an offset
        offset = (0.3 * rng.standard_normal(n)).astype(dtype) if n != 64 else NO_OFFSET[np.dtype(dtype)]
        results = {}
        for name in ("numpy", backend):
            kern = kernels(name)
            p = params.copy()
            v = np.zeros_like(p) if momentum else np.empty((0, d + 1), dtype)
            a = np.zeros_like(p)
            loss = np.zeros(1)
            done = kern.sgd_epoch_csr(*csr, labels, targets, w, perm, lr, code, batch_size, l2, l1,
                                      momentum, nesterov, fit_intercept, p, v, a, 3 if averaging else -1,
                                      0, loss)
            full, grad = np.zeros(1), np.empty_like(p)
            kern.glm_loss_grad_csr(*csr, labels, targets, w, p, offset, code, full, grad)
            mean = np.empty((n, p.shape[0]), dtype)
            kern.glm_predict_csr(*csr, p, offset, code, mean)
            results[name] = (done, p, v, a, loss, full, grad, mean)
        err = f"{backend} {family} {option} {(n, d, K)}"
        for got, want in zip(results[backend], results["numpy"]):
            assert_same(np.asarray(got), np.asarray(want), rtol, atol * n, err=err)


# ---------------------------------------------------------------- scan_rows


def scan_cases(dtype, rng):
    """(label, X) for scan_rows: sizes around the vector widths and the
    chunks, the special rows of tests/cases, finite rows whose squares
    overflow next to non-finite ones, rows all NaN, subnormals, empty X."""
    info = np.finfo(dtype)
    yield "empty", np.zeros((0, 5), dtype)
    for n, d in [(1, 1), (3, 7), (9, 8), (17, 9), (5, 16), (5, 65), (70, 1000), (5000, 3)]:
        yield f"normal{(n, d)}", (5 * rng.standard_normal((n, d))).astype(dtype)
    yield "special", special_rows(11, dtype)
    yield "special-long", special_rows(3000, dtype)
    X = rng.standard_normal((300, 12)).astype(dtype)
    X[7] = info.max / 2   # finite, but the sum of squares overflows (float64)
    X[100, 3], X[250, 0], X[299, 11] = np.nan, -np.inf, np.inf
    yield "overflow and bad", X
    yield "all NaN", np.full((4, 3), np.nan, dtype)
    # large enough for C's threads and several of Numba's chunks of rows
    X = rng.standard_normal((6000, 40)).astype(dtype)
    X[rng.choice(6000, 60, replace=False), rng.integers(0, 40, 60)] = np.nan
    X[rng.choice(6000, 30, replace=False), 39] = -np.inf
    X[5999, 0] = np.inf
    X[rng.choice(6000, 5, replace=False)] = info.max / 4
    yield "large, bad rows scattered", X
    yield "subnormal", np.full((3, 33), info.smallest_subnormal, dtype)


def test_scan_rows_matches_reference(backend, dtype, rng):
    for label, X in scan_cases(dtype, rng):
        want, got = np.full(2, -1.0), np.full(2, -1.0)
        ref.scan_rows(X, want)
        kernels(backend).scan_rows(X, got)
        assert_same(got, want, 1e-13, err=f"{backend} {label}")
        finite_rows = np.isfinite(X).all(axis=1)   # the count, independently
        assert got[1] == np.count_nonzero(~finite_rows), label


@given(data=st.data())
def test_scan_rows_property(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    n, d = data.draw(st.integers(0, 24), label="n"), data.draw(st.integers(1, 24), label="d")
    bits = np.finfo(dtype).bits
    X = np.array(data.draw(st.lists(st.floats(width=bits), min_size=n * d, max_size=n * d)),
                 dtype).reshape(n, d)
    want = np.zeros(2)
    ref.scan_rows(X, want)
    for backend in ("c", "numba"):
        got = np.zeros(2)
        kernels(backend).scan_rows(X, got)
        assert_same(got, want, 1e-13, err=backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_design_matrix_finite_check_is_exact_when_the_sum_overflows(dtype):
    # check_finite first tests the sum of X: an overflowed sum of finite
    # values must not be taken for NaN or inf, and one bad element among
    # huge ones must still be found
    huge = np.full((64, 3), np.finfo(dtype).max / 2, dtype)
    huge[::2, 1] *= -1  # partial sums of both signs overflow: inf - inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning reaches the user
        out, _ = as_design_matrix(huge)
    assert np.array_equal(out, huge)
    for bad in (np.nan, np.inf, -np.inf):
        X = huge.copy()
        X[37, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            as_design_matrix(X)
