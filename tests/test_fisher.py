"""The public Fisher-information API: FisherAccumulator against numpy,
glm_fisher / fisher_vector_product (layout, reference class, scale), fit_mle
against statsmodels for every family, the coverage of its confidence
intervals by simulation, the singular cases, and solver="fisher" in the
estimators. (The kernels themselves: test_fisher_kernels.py.)"""
import math
import sys
import threading
import warnings

import numpy as np
import pytest

import fastmle

sm = pytest.importorskip("statsmodels.api", reason="statsmodels is a test-time option (the test extra)")


# ---------------------------------------------------------------- FisherAccumulator


@pytest.mark.parametrize("kind", ["dense", "diag"])
def test_accumulator_matches_numpy(backend, dtype, rng, kind):
    P = 37
    S = rng.standard_normal((530, P)).astype(dtype)
    w = rng.random(530) + 0.1
    acc = fastmle.FisherAccumulator(P, kind=kind, dtype=dtype, backend=backend)
    for lo, hi in [(0, 100), (100, 101), (101, 101), (101, 530)]:  # odd batches, an empty one
        acc.update(S[lo:hi], sample_weight=w[lo:hi])
    S64 = S.astype(np.float64)
    total = (S64 * w[:, None]).T @ S64
    expected = total if kind == "dense" else np.diag(total)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(acc.fisher(normalize=False), expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    np.testing.assert_allclose(acc.fisher(), expected / w.sum(), rtol=rtol, atol=rtol * np.abs(expected).max())
    assert acc.n_samples == 530 and acc.sum_weights == pytest.approx(w.sum())
    assert acc.fisher().dtype == dtype
    if kind == "dense":
        F = acc.fisher()
        np.testing.assert_array_equal(F, F.T)  # mirrored from one triangle


def test_accumulator_squares_scores_not_the_mean_gradient(backend):
    """The EWC bug: the outer product of the batch-mean gradient is ~0 here
    (scores cancel), the Fisher is not."""
    S = np.array([[1.0, 2.0], [-1.0, -2.0]])
    acc = fastmle.FisherAccumulator(2, backend=backend)
    acc.update(S)
    np.testing.assert_allclose(acc.fisher(), [[1.0, 2.0], [2.0, 4.0]])
    diag = fastmle.FisherAccumulator(2, kind="diag", backend=backend)
    diag.update(S)
    np.testing.assert_allclose(diag.fisher(), [1.0, 4.0])


def test_accumulator_merge_equals_one_pass(backend, rng):
    S = rng.standard_normal((300, 9))
    one = fastmle.FisherAccumulator(9, backend=backend)
    one.update(S)
    a, b = fastmle.FisherAccumulator(9, backend=backend), fastmle.FisherAccumulator(9, backend=backend)
    a.update(S[:120])
    b.update(S[120:])
    assert a.merge(b) is a
    np.testing.assert_allclose(a.fisher(), one.fisher(), rtol=1e-13)
    assert a.n_samples == 300
    a.reset()
    assert a.n_samples == 0 and not a.fisher(normalize=False).any()
    # rows seen: a batch of zero weights counts its rows, as one of some zero
    # weights does (it had counted none of them)
    a.update(S[:3], sample_weight=np.zeros(3))
    a.update(S[:3], sample_weight=np.array([1.0, 0.0, 0.0]))
    assert a.n_samples == 6 and a.sum_weights == 1.0


def test_accumulator_decay_is_an_exponential_moving_average(backend, rng):
    batches = [rng.standard_normal((50, 4)) for _ in range(4)]
    acc = fastmle.FisherAccumulator(4, decay=0.9, backend=backend)
    expected = None
    for S in batches:
        acc.update(S)
        batch_mean = S.T @ S / len(S)
        expected = batch_mean if expected is None else 0.9 * expected + 0.1 * batch_mean
    np.testing.assert_allclose(acc.fisher(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="moving average"):
        acc.fisher(normalize=False)
    with pytest.raises(ValueError, match="cannot be merged"):
        acc.merge(fastmle.FisherAccumulator(4, decay=0.9))


@pytest.mark.parametrize("make, error, match", [
    (lambda: fastmle.FisherAccumulator(0), ValueError, "positive integer"),
    (lambda: fastmle.FisherAccumulator(3, kind="upper"), ValueError, "'dense' or 'diag'"),
    (lambda: fastmle.FisherAccumulator(3, dtype=np.int64), TypeError, "float32 or float64"),
    (lambda: fastmle.FisherAccumulator(3, decay=1.0), ValueError, "decay"),
    (lambda: fastmle.FisherAccumulator(3, backend="gpu"), ValueError, "unknown backend"),
    (lambda: fastmle.FisherAccumulator(3).update(np.ones((2, 4))), ValueError, r"shape \(batch, 3\)"),
    (lambda: fastmle.FisherAccumulator(3).update(np.ones(3)), ValueError, "shape"),
    (lambda: fastmle.FisherAccumulator(3).update(np.array([[1, 2, np.nan]])), ValueError, "NaN"),
    (lambda: fastmle.FisherAccumulator(3).update(np.ones((2, 3)), sample_weight=[1, -1]), ValueError, ">= 0"),
    (lambda: fastmle.FisherAccumulator(3).update(np.ones((2, 3)), sample_weight=[1]), ValueError, "shape"),
    (lambda: fastmle.FisherAccumulator(3).update(np.array([["a"] * 3])), TypeError, "real numbers"),
    (lambda: fastmle.FisherAccumulator(3).fisher(), ValueError, "no samples"),
    (lambda: fastmle.FisherAccumulator(3).merge(fastmle.FisherAccumulator(4)), ValueError, "cannot merge"),
    (lambda: fastmle.FisherAccumulator(3).merge(np.eye(3)), TypeError, "FisherAccumulator"),
])
def test_accumulator_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ---------------------------------------------------------------- glm_fisher


def _explicit_fisher(X, coef, intercept, family, w=None, offset=None):
    """sum_i w_i M_i kron xt_i xt_i^T, one sample at a time (output-major,
    intercept last): the definition, independent of the kernels."""
    n, d = X.shape
    Xt = np.hstack([X, np.ones((n, 1))]) if intercept is not None else X
    eta = X @ coef + (intercept if intercept is not None else 0)
    eta = eta if offset is None else eta + offset[:, None]
    w = np.ones(n) if w is None else w
    F = 0
    for i in range(n):
        if family == "multinomial":
            p = np.exp(eta[i] - eta[i].max())
            p /= p.sum()
            M = np.diag(p) - np.outer(p, p)
        elif family == "binomial":
            p = 1 / (1 + np.exp(-eta[i]))
            M = np.diag(p * (1 - p))
        elif family == "poisson":
            M = np.diag(np.exp(eta[i]))
        else:
            M = np.eye(len(eta[i]))
        F = F + w[i] * np.kron(M, np.outer(Xt[i], Xt[i]))
    return F


@pytest.mark.parametrize("family, K", [("multinomial", 3), ("binomial", 1), ("gaussian", 2), ("poisson", 2)])
@pytest.mark.parametrize("with_intercept", [True, False])
def test_glm_fisher_is_the_explicit_sum(backend, rng, family, K, with_intercept):
    X = rng.standard_normal((40, 3))
    coef = rng.standard_normal((3, K)) * 0.5
    intercept = rng.standard_normal(K) * 0.3 if with_intercept else None
    w = rng.random(40) + 0.2
    expected = _explicit_fisher(X, coef, intercept, family, w)
    F = fastmle.glm_fisher(X, coef, family, intercept=intercept, sample_weight=w, backend=backend)
    np.testing.assert_allclose(F, expected, rtol=1e-11, atol=1e-12)
    diag = fastmle.glm_fisher(X, coef, family, intercept=intercept, sample_weight=w, kind="diag", backend=backend)
    np.testing.assert_allclose(diag, np.diag(expected), rtol=1e-11)
    for kind in ("dense", "full"):  # FisherAccumulator's name, and glm_fisher's first
        np.testing.assert_array_equal(fastmle.glm_fisher(X, coef, family, intercept=intercept, sample_weight=w,
                                                         kind=kind, backend=backend), F)
    v = rng.standard_normal(len(expected))
    Fv = fastmle.fisher_vector_product(X, coef, family, v, intercept=intercept, sample_weight=w, backend=backend)
    np.testing.assert_allclose(Fv, expected @ v, rtol=1e-10, atol=1e-12)
    Fv2 = fastmle.fisher_vector_product(X, coef, family, v.reshape(-1, 3 + with_intercept),
                                        intercept=intercept, sample_weight=w, backend=backend)
    assert Fv2.shape == (len(v) // (3 + with_intercept), 3 + with_intercept)
    np.testing.assert_allclose(Fv2.ravel(), Fv, rtol=1e-14)


@pytest.mark.parametrize("family, K", [("binomial", 1), ("gaussian", 2), ("poisson", 2)])
def test_glm_fisher_with_an_offset_is_the_explicit_sum(backend, rng, family, K):
    X = rng.standard_normal((40, 3))
    coef = rng.standard_normal((3, K)) * 0.5
    intercept = rng.standard_normal(K) * 0.3
    offset = rng.standard_normal(40)
    expected = _explicit_fisher(X, coef, intercept, family, offset=offset)
    F = fastmle.glm_fisher(X, coef, family, intercept=intercept, offset=offset, backend=backend)
    np.testing.assert_allclose(F, expected, rtol=1e-11, atol=1e-12)
    diag = fastmle.glm_fisher(X, coef, family, intercept=intercept, offset=offset, kind="diag", backend=backend)
    np.testing.assert_allclose(diag, np.diag(expected), rtol=1e-11)
    v = rng.standard_normal(len(expected))
    Fv = fastmle.fisher_vector_product(X, coef, family, v, intercept=intercept, offset=offset, backend=backend)
    np.testing.assert_allclose(Fv, expected @ v, rtol=1e-10, atol=1e-12)
    if family != "gaussian":  # its information does not depend on eta
        assert not np.allclose(F, _explicit_fisher(X, coef, intercept, family))
    with pytest.raises(ValueError, match="offset is not defined for the multinomial family"):
        fastmle.glm_fisher(X, coef, "multinomial", offset=offset)


def test_glm_fisher_reference_class_and_scale(backend, rng):
    X = rng.standard_normal((60, 2))
    coef = rng.standard_normal((2, 3))
    coef[:, 1] = 0  # class 1 is the baseline
    full = fastmle.glm_fisher(X, coef, "multinomial", intercept=np.zeros(3), backend=backend)
    keep = np.r_[0:3, 6:9]  # classes 0 and 2, three terms each
    reduced = fastmle.glm_fisher(X, coef[:, [0, 2]], "multinomial", intercept=np.zeros(2), reference_class=1,
                                 backend=backend)
    np.testing.assert_allclose(reduced, full[np.ix_(keep, keep)], rtol=1e-12)
    assert np.linalg.matrix_rank(reduced) == 6  # identifiable; the symmetric one is not
    assert np.linalg.matrix_rank(full) == 6
    g = fastmle.glm_fisher(X, [1.0, 2.0], "gaussian", fit_intercept=False, scale=4.0, backend=backend)
    np.testing.assert_allclose(g, X.T @ X / 4.0, rtol=1e-12)


@pytest.mark.parametrize("call, error, match", [
    (lambda X: fastmle.glm_fisher(X, np.zeros((3, 2)), "logit"), ValueError, "unknown family"),
    (lambda X: fastmle.glm_fisher(X, np.zeros((4, 2)), "multinomial"), ValueError, "coef must have shape"),
    (lambda X: fastmle.glm_fisher(X, np.zeros((3, 2)), "multinomial", kind="upper"), ValueError, "kind"),
    (lambda X: fastmle.glm_fisher(X, np.zeros((3, 2)), "binomial"), ValueError, "one column"),
    (lambda X: fastmle.glm_fisher(X, np.zeros(3), "poisson", reference_class=0), ValueError, "multinomial"),
    (lambda X: fastmle.glm_fisher(X, np.zeros((3, 2)), "multinomial", reference_class=3), ValueError,
     r"\[0, 3\)"),
    (lambda X: fastmle.glm_fisher(X, np.zeros(3), "gaussian", scale=0.0), ValueError, "scale"),
    (lambda X: fastmle.glm_fisher(X, np.zeros(3), "gaussian", intercept=1.0, fit_intercept=False), ValueError,
     "intercept given"),
    (lambda X: fastmle.glm_fisher(X, np.zeros(3), "gaussian", sample_weight=-np.ones(10)), ValueError, ">= 0"),
    (lambda X: fastmle.glm_fisher(np.where(X > 1, np.nan, X), np.zeros(3), "gaussian"), ValueError, "NaN"),
    (lambda X: fastmle.glm_fisher(X[:, :, None], np.zeros(3), "gaussian"), ValueError, "2-D"),
    (lambda X: fastmle.fisher_vector_product(X, np.zeros(3), "gaussian", np.ones(4)), ValueError,
     r"v must have shape \(3,\)"),
    (lambda X: fastmle.fisher_vector_product(X, np.zeros(3), "gaussian", [1, np.inf, 0]), ValueError, "NaN"),
])
def test_glm_fisher_bad_input(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(rng.standard_normal((10, 3)))


def _unaligned(a):
    """A copy of a whose data start one byte past an aligned address (as
    buffers unpickled by dask.distributed can)."""
    raw = np.zeros(a.nbytes + 1, np.uint8)[1:]
    out = raw.view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def test_unaligned_inputs_are_realigned(backend, rng):
    """Unaligned X, weights and scores give the aligned answer (no undefined
    behaviour in C, which UBSan reports; a signature mismatch in Numba)."""
    X = rng.standard_normal((50, 3))
    w = rng.random(50) + 0.1
    y = (X[:, 0] + rng.logistic(size=50) > 0).astype(float)
    coef = rng.standard_normal(3) * 0.3
    F = fastmle.glm_fisher(_unaligned(X), coef, "binomial", intercept=0.1, sample_weight=_unaligned(w),
                           backend=backend)
    np.testing.assert_allclose(F, fastmle.glm_fisher(X, coef, "binomial", intercept=0.1, sample_weight=w,
                                                     backend=backend), rtol=1e-14)
    loss = fastmle.glm_loss(_unaligned(X), _unaligned(y), coef, "binomial", intercept=0.1,
                            sample_weight=_unaligned(w), backend=backend)
    assert loss == pytest.approx(fastmle.glm_loss(X, y, coef, "binomial", intercept=0.1, sample_weight=w,
                                                  backend=backend))
    res = fastmle.fit_mle(_unaligned(X), y, "binomial", sample_weight=_unaligned(w), backend=backend)
    np.testing.assert_allclose(res.params, fastmle.fit_mle(X, y, "binomial", sample_weight=w,
                                                           backend=backend).params, rtol=1e-12)
    acc = fastmle.FisherAccumulator(3, backend=backend)
    acc.update(_unaligned(X), sample_weight=_unaligned(w))
    np.testing.assert_allclose(acc.fisher(normalize=False), (X * w[:, None]).T @ X, rtol=1e-12)


def test_glm_fisher_sparse_input_is_refused_clearly():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="dense X"):
        fastmle.glm_fisher(scipy_sparse.eye(4, format="csr"), np.zeros(4), "gaussian")


@pytest.mark.parametrize("fmt", ["csr", "coo", "csr_array"])
def test_fit_mle_and_the_accumulator_refuse_sparse_input_clearly(rng, fmt):
    # np.asarray makes a sparse matrix a 0-d object array: the error must
    # name sparse input, not the dtype object
    scipy_sparse = pytest.importorskip("scipy.sparse")
    S = scipy_sparse.random(50, 3, density=0.5, format="coo", random_state=0)
    S = scipy_sparse.csr_array(S) if fmt == "csr_array" else S.asformat(fmt)
    with pytest.raises(TypeError, match=r"fit_mle takes a dense X; convert sparse X with \.toarray\(\)"):
        fastmle.fit_mle(S, rng.standard_normal(50), "gaussian", backend="c")
    with pytest.raises(TypeError, match=r"dense scores; convert sparse scores with \.toarray\(\)"):
        fastmle.FisherAccumulator(3).update(S)
    with pytest.raises(TypeError, match="dense X"):
        fastmle.fisher_vector_product(S, np.zeros(3), "gaussian", np.ones(3))


# ---------------------------------------------------------------- fit_mle against statsmodels


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _check_against(res, sm_params, sm_bse, sm_llf, sm_llnull=None, tol=1e-6):
    assert res.converged
    assert _rel(res.params, sm_params) < tol
    assert _rel(res.bse, sm_bse) < tol
    assert _rel(res.llf, sm_llf) < tol
    if sm_llnull is not None:
        assert _rel(res.llnull, sm_llnull) < tol


def _const_last(X):
    return sm.add_constant(X, prepend=False, has_constant="add")


def test_fit_mle_runs_the_blas_on_one_thread_and_restores_it(monkeypatch, rng):
    # fit_mle's factorizations run on one BLAS thread with the compiled
    # backends (OpenBLAS's spinning workers took the cores from the
    # kernels: see _blas.one_thread), on the BLAS's own threads with the
    # numpy reference, whose products are the BLAS; the count comes back,
    # also when blocks nest or overlap in two Python threads, and on error
    from fastmle import _blas
    functions = _blas._thread_count_functions()
    if functions is None:
        pytest.skip(f"numpy's BLAS is not an OpenBLAS here ({_blas.describe()})")
    get, set_ = functions
    before = get()
    set_(2)
    try:
        seen = []
        real = np.linalg.cholesky
        monkeypatch.setattr(np.linalg, "cholesky", lambda a: (seen.append(get()), real(a))[1])
        X = rng.standard_normal((300, 3))
        y = (X @ [1.0, -1.0, 0.5] + rng.logistic(size=300) > 0).astype(int)
        for backend, want in (("c", 1), ("numba", 1), ("numpy", 2)):
            seen.clear()
            fastmle.fit_mle(X, y, "binomial", backend=backend)
            assert seen and set(seen) == {want}, (backend, seen)
            assert get() == 2
        with _blas.one_thread():
            with _blas.one_thread():
                assert get() == 1
            assert get() == 1
        assert get() == 2
        inside, counts = threading.Barrier(2), []

        def hold():
            with _blas.one_thread():
                inside.wait(timeout=30)   # both blocks open
                counts.append(get())
                inside.wait(timeout=30)
        workers = [threading.Thread(target=hold) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert counts == [1, 1] and get() == 2
        with pytest.raises(ZeroDivisionError):
            with _blas.one_thread():
                1 / 0
        assert get() == 2
    finally:
        set_(before)


@pytest.mark.parametrize("backend_name", ["c", "numba", "numpy"])
def test_fit_mle_logit_matches_statsmodels(backend_name, rng):
    X = rng.standard_normal((800, 3))
    y = (X @ [1.0, -1.0, 0.5] + 0.3 + rng.logistic(size=800) > 0).astype(int)
    res = fastmle.fit_mle(X, y, "binomial", backend=backend_name)
    ref = sm.Logit(y, _const_last(X)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    _check_against(res, ref.params, ref.bse, ref.llf, ref.llnull)
    assert _rel(res.pvalues, ref.pvalues) < 1e-6
    assert _rel(res.conf_int(), ref.conf_int()) < 1e-6
    assert res.aic == pytest.approx(ref.aic, rel=1e-9) and res.bic == pytest.approx(ref.bic, rel=1e-9)
    assert res.prsquared == pytest.approx(ref.prsquared, rel=1e-6)


def test_fit_mle_mnlogit_matches_statsmodels(backend, rng):
    X = rng.standard_normal((900, 3))
    y = np.argmax(X @ rng.standard_normal((3, 4)) + rng.gumbel(size=(900, 4)), axis=1)
    res = fastmle.fit_mle(X, y, "multinomial", reference_class=0, backend=backend)
    ref = sm.MNLogit(y, _const_last(X)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    assert res.params.shape == (4, 3)  # (terms, classes other than the reference)
    _check_against(res, ref.params, ref.bse, ref.llf, ref.llnull)
    # cov_params is indexed by params.ravel(order="F"), statsmodels' order too
    assert _rel(res.cov_params(), ref.cov_params()) < 1e-6
    assert res.output_names == ["y=1", "y=2", "y=3"]


def test_fit_mle_poisson_matches_statsmodels(backend, rng):
    X = rng.standard_normal((700, 3))
    y = rng.poisson(np.exp(X @ [0.3, -0.2, 0.1] + 0.5))
    w = rng.integers(1, 4, 700).astype(float)
    res = fastmle.fit_mle(X, y, "poisson", backend=backend)
    ref = sm.Poisson(y, _const_last(X)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    _check_against(res, ref.params, ref.bse, ref.llf, ref.llnull)
    # frequency weights = repeated rows
    weighted = fastmle.fit_mle(X, y, "poisson", sample_weight=w, backend=backend)
    rows = np.repeat(np.arange(700), w.astype(int))
    repeated = sm.Poisson(y[rows], _const_last(X)[rows]).fit(disp=0, method="newton", tol=1e-12)
    assert _rel(weighted.params, repeated.params) < 1e-6 and _rel(weighted.bse, repeated.bse) < 1e-6
    assert _rel(weighted.llf, repeated.llf) < 1e-6


def test_fit_mle_poisson_exposure_and_offset_match_statsmodels(backend, rng):
    # counts over unequal exposures: statsmodels' GLM with exposure= and
    # offset=, whose null model is the intercept-only fit with both
    X = rng.standard_normal((800, 3))
    t = rng.uniform(0.5, 200.0, 800)
    offset = 0.5 * rng.standard_normal(800)
    y = rng.poisson(t * np.exp(X @ [0.3, -0.2, 0.1] + offset - 2.0))
    res = fastmle.fit_mle(X, y, "poisson", exposure=t, offset=offset, backend=backend)
    ref = sm.GLM(y, _const_last(X), family=sm.families.Poisson(), exposure=t, offset=offset).fit(tol=1e-13)
    _check_against(res, ref.params, ref.bse, ref.llf, ref.llnull)
    assert _rel(res.prsquared, 1 - ref.llf / ref.llnull) < 1e-6
    # exposure is offset = log(exposure)
    same = fastmle.fit_mle(X, y, "poisson", offset=np.log(t) + offset, backend=backend)
    np.testing.assert_allclose(same.params, res.params, rtol=1e-12)
    assert same.llnull == pytest.approx(res.llnull, rel=1e-12)
    # without the exposure the model is another one: the rates are not the counts
    assert _rel(fastmle.fit_mle(X, y, "poisson", backend=backend).params, res.params) > 0.1


def test_glm_functions_take_exposure(backend, rng):
    # glm_predict, glm_loss, glm_fisher and fisher_vector_product take
    # fit_mle's exposure: offset log(exposure), the rate model's terms
    X = rng.standard_normal((300, 2))
    t = rng.uniform(1.0, 50.0, 300)
    y = rng.poisson(t * np.exp(X @ [0.3, -0.2] - 1.0))
    fit = fastmle.fit_mle(X, y, "poisson", exposure=t, backend=backend)
    common = dict(intercept=fit.intercept, backend=backend)
    mean = fastmle.glm_predict(X, fit.coef, "poisson", exposure=t, **common)
    np.testing.assert_array_equal(mean, fastmle.glm_predict(X, fit.coef, "poisson", offset=np.log(t), **common))
    np.testing.assert_allclose(mean[:, 0], fit.predict(X, exposure=t), rtol=1e-12)
    # at the MLE the gradient of the rate model's loss vanishes (not so without the exposure)
    loss, (dcoef, dintercept) = fastmle.glm_loss(X, y, fit.coef, "poisson", exposure=t, return_grad=True, **common)
    assert np.abs(np.r_[dcoef.ravel(), dintercept]).max() < 1e-6
    _, (dcoef, _) = fastmle.glm_loss(X, y, fit.coef, "poisson", return_grad=True, **common)
    assert np.abs(dcoef).max() > 0.1
    # the exact Fisher at the MLE: its inverse is the fit's covariance
    F = fastmle.glm_fisher(X, fit.coef, "poisson", exposure=t, **common)
    np.testing.assert_allclose(np.linalg.inv(F), fit.cov_params(), rtol=1e-8)
    v = rng.standard_normal(3)
    np.testing.assert_allclose(fastmle.fisher_vector_product(X, fit.coef, "poisson", v, exposure=t, **common),
                               F @ v, rtol=1e-10)
    for family, exposure, message in (("binomial", t, "exposure is for the poisson family"),
                                      ("poisson", np.r_[0.0, t[1:]], "exposure must be finite and > 0"),
                                      ("poisson", t[:10], r"exposure must have shape \(300,\)")):
        with pytest.raises(ValueError, match=message):
            fastmle.glm_predict(X, fit.coef, family, exposure=exposure, backend=backend)
        with pytest.raises(ValueError, match=message):
            fastmle.glm_fisher(X, fit.coef, family, exposure=exposure, backend=backend)


def test_mle_result_predict_is_statsmodels_predict(backend, rng):
    X = rng.standard_normal((400, 2))
    new = rng.standard_normal((7, 2))
    t, t_new = rng.uniform(1.0, 20.0, 400), rng.uniform(1.0, 20.0, 7)
    y = rng.poisson(t * np.exp(X @ [0.4, -0.3] - 1.0))
    res = fastmle.fit_mle(X, y, "poisson", exposure=t, backend=backend)
    ref = sm.GLM(y, _const_last(X), family=sm.families.Poisson(), exposure=t).fit(tol=1e-13)
    np.testing.assert_allclose(res.predict(new, exposure=t_new, backend=backend),
                               ref.predict(_const_last(new), exposure=t_new), rtol=1e-8)
    assert res.predict(new).shape == (7,)
    # multinomial with a reference class: every class's probability, in classes order
    labels = np.array(["b", "a", "c"])[np.argmax(X @ rng.standard_normal((2, 3)) + rng.gumbel(size=(400, 3)), 1)]
    res = fastmle.fit_mle(X, labels, "multinomial", reference_class="b", backend=backend)
    probs = res.predict(new, backend=backend)
    codes = np.searchsorted(["a", "b", "c"], labels)
    ref = sm.MNLogit(np.where(codes == 1, 0, np.where(codes == 0, 1, 2)), _const_last(X)).fit(disp=0, tol=1e-12)
    np.testing.assert_allclose(probs[:, [1, 0, 2]], ref.predict(_const_last(new)), rtol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-14)
    # gaussian with an offset: X coef + intercept + offset
    yg = X @ [1.0, 2.0] + 3.0 + rng.standard_normal(400)
    res = fastmle.fit_mle(X, yg, "gaussian", offset=np.ones(400), backend=backend)
    np.testing.assert_allclose(res.predict(new, offset=np.full(7, 2.0)), new @ res.coef + res.intercept + 2.0,
                               rtol=1e-14)
    with pytest.raises(ValueError, match="X has 3 features; the fit had 2"):
        res.predict(np.ones((2, 3)))
    with pytest.raises(ValueError, match="exposure is for the poisson family"):
        res.predict(new, exposure=np.ones(7))


def test_mle_result_predict_takes_what_glm_predict_takes(rng):
    sparse = pytest.importorskip("scipy.sparse")
    pd = pytest.importorskip("pandas")
    X = rng.standard_normal((200, 2))
    y = rng.poisson(2.0, 200)
    res = fastmle.fit_mle(X, y, "poisson", exposure=np.full(200, 3.0))
    t = np.array([3.0, 1.0])
    np.testing.assert_allclose(res.predict(sparse.csr_matrix(X[:2]), exposure=t), res.predict(X[:2], exposure=t),
                               rtol=1e-15)  # it had failed on CSRMatrix.astype
    np.testing.assert_allclose(res.predict(X[:2].astype(np.float32), exposure=t), res.predict(X[:2], exposure=t),
                               rtol=1e-6)
    frame = pd.DataFrame(X, columns=["a", "b"])
    named = fastmle.fit_mle(frame, y, "poisson")
    np.testing.assert_array_equal(named.predict(frame.iloc[:3]), named.predict(X[:3]))
    with pytest.raises(ValueError, match=r"X's columns \['b', 'a'\] are not the fit's \['a', 'b'\]"):
        named.predict(frame.iloc[:3, ::-1])


def test_fit_mle_poisson_offset_far_above_the_others(rng):
    # one offset far above the rest: the start keeps a typical sample at y's
    # mean (the null fit's intercept had put every other mean near e^-60,
    # reported as separation); at 20, statsmodels' fit
    X = rng.standard_normal((200, 2))
    y = rng.poisson(2.0, 200)
    offset = np.zeros(200)
    offset[0] = 20.0
    res = fastmle.fit_mle(X, y, "poisson", offset=offset)
    ref = sm.GLM(y, _const_last(X), family=sm.families.Poisson(), offset=offset).fit(tol=1e-13)
    assert _rel(res.params, ref.params) < 1e-6
    offset[0] = 60.0  # statsmodels fails (NaN weights); the information at the start is 1e26 apart
    with pytest.raises(fastmle.SingularFisherError) as info:
        fastmle.fit_mle(X, y, "poisson", offset=offset)
    assert type(info.value) is fastmle.SingularFisherError and "ill-conditioned" in str(info.value)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fit_mle_logit_with_an_offset_matches_statsmodels(backend, rng, fit_intercept):
    X = rng.standard_normal((600, 2))
    offset = rng.standard_normal(600)
    y = (rng.random(600) < 1 / (1 + np.exp(-(X @ [1.0, -0.5] + 0.3 + offset)))).astype(int)
    res = fastmle.fit_mle(X, y, "binomial", offset=offset, fit_intercept=fit_intercept, backend=backend)
    design = _const_last(X) if fit_intercept else X
    ref = sm.GLM(y, design, family=sm.families.Binomial(), offset=offset).fit(tol=1e-13)
    _check_against(res, ref.params, ref.bse, ref.llf, ref.llnull)


def test_fit_mle_gaussian_with_an_offset_fits_y_minus_the_offset(rng):
    X = rng.standard_normal((300, 2))
    offset = 1e6 + 10 * rng.standard_normal(300)  # large: the null model's spread is y - offset's
    y = X @ [2.0, -1.0] + 0.5 + offset + rng.standard_normal(300)
    res = fastmle.fit_mle(X, y, "gaussian", offset=offset)
    plain = fastmle.fit_mle(X, y - offset, "gaussian")
    np.testing.assert_allclose(res.params, plain.params, rtol=1e-9)
    np.testing.assert_allclose(res.bse, plain.bse, rtol=1e-9)
    assert res.llf == pytest.approx(plain.llf, rel=1e-12) and res.llnull == pytest.approx(plain.llnull, rel=1e-12)
    z = y - offset  # the null model: the mean of y - offset, and its spread (not y's)
    assert res.llnull == pytest.approx(-150 * (np.log(2 * np.pi * z.var()) + 1), rel=1e-9)


@pytest.mark.parametrize("y", [np.array([0.0, 1, 1, 3, 7, 7, 7, 120]), np.array([0.5, 1, 2.25, 3]),
                               np.array([0.0, 2.0 ** 21, 5, 2.0 ** 21]), np.array([]), np.array([1e19, 3.0])])
def test_poisson_log_factorial_constant(rng, y):
    # whole counts (a bincount), real y and counts past 2^20 (np.unique;
    # 1e19 had warned of an invalid int64 cast)
    from scipy.special import gammaln

    from fastmle import mle

    w = rng.random(len(y)) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = mle.response_stats("poisson", np.empty(0, np.int64), y[:, None], w, 1)["slg"]
    assert got == pytest.approx(float(w @ gammaln(y + 1)), rel=1e-14, abs=0)


@pytest.mark.parametrize("level", [30.0, 40.0])
def test_fit_mle_null_model_with_a_large_offset(rng, monkeypatch, level):
    # offsets near 30: the intercept-only model's log-likelihood against a
    # bounded 1-D maximization (statsmodels' GLM gets -11375 here: its null
    # fit overflows), reached in a few passes over the data (from b = 0 it
    # had taken 74 passes, halving its steps: a dask graph each; near 40, p(1 -
    # p) was 0 there and the fit was refused as separated)
    from scipy.optimize import minimize_scalar
    from fastmle import mle

    X = rng.standard_normal((500, 2))
    offset = level + rng.standard_normal(500)
    y = (rng.random(500) < 1 / (1 + np.exp(-(X @ [1.0, -1.0] - level + offset)))).astype(int)
    passes = []
    sums = mle.intercept_only_sums
    monkeypatch.setattr(mle, "intercept_only_sums", lambda *a: (passes.append(1), sums(*a))[1])
    res = fastmle.fit_mle(X, y, "binomial", offset=offset)
    best = minimize_scalar(lambda b: -np.sum(y * (b + offset) - np.logaddexp(0, b + offset)), bounds=(-100, 100),
                           method="bounded", options=dict(xatol=1e-12))
    assert res.llnull == pytest.approx(-best.fun, rel=1e-12)
    assert len(passes) <= 6


def test_fit_mle_offset_that_predicts_y_is_not_separation(rng):
    # the offset, not X, nearly determines y: the MLE exists (flat: standard
    # errors of 1e4) and is statsmodels' to within 1e-3 of them; it had been
    # refused as "the features predict every sample's class"
    X = rng.standard_normal((200, 2))
    y = (rng.random(200) < 0.5).astype(float)
    offset = np.where(y == 1, 25.0, -25.0) + rng.standard_normal(200)
    res = fastmle.fit_mle(X, y, "binomial", offset=offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' PerfectSeparationWarning
        ref = sm.GLM(y, _const_last(X), family=sm.families.Binomial(), offset=offset).fit(tol=1e-12)
    assert res.converged and (np.abs(res.params - ref.params) < 1e-3 * res.bse).all()
    # separation by X is still reported with an offset beside it
    with pytest.raises(fastmle.PerfectSeparationError):
        fastmle.fit_mle(X, (X[:, 0] > 0).astype(float), "binomial", offset=rng.standard_normal(200))


def test_fit_mle_poisson_null_model_of_offsets_far_from_zero(rng):
    # sum w exp(offset) near -745 had been subnormal (llnull 12.5 off); it
    # is taken at the intercept that brings exp(b + offset) to y's scale
    from scipy.special import gammaln, logsumexp

    X = rng.standard_normal((300, 2))
    offset = -745.0 + rng.uniform(-1, 1, 300)
    y = rng.poisson(np.exp(X @ [0.3, -0.2] + 1.0 + (offset + 745.0))).astype(float)
    b = np.log(y.sum()) - logsumexp(offset)
    exact = np.sum(y * (b + offset) - np.exp(b + offset) - gammaln(y + 1))
    res = fastmle.fit_mle(X, y, "poisson", offset=offset)
    assert res.llnull == pytest.approx(exact, rel=1e-12)
    shifted = fastmle.fit_mle(X, y, "poisson", offset=offset + 745.0)
    np.testing.assert_allclose(res.params[:2], shifted.params[:2], rtol=1e-5)  # tol is relative to |b| = 746
    assert res.llnull == pytest.approx(shifted.llnull, rel=1e-12)


def test_fit_mle_offset_null_model_when_its_mle_does_not_exist(rng):
    # every binomial y 1 without an intercept: the null model's supremum, 0
    X = rng.standard_normal((40, 1))
    y = np.ones(40, int)
    y[0] = 0
    X[0] = -5.0
    res = fastmle.fit_mle(X[1:], y[1:], "binomial", offset=np.zeros(39), fit_intercept=False, alpha=1.0)
    assert res.llnull == 0.0


@pytest.mark.parametrize("family", ["binomial", "poisson", "gaussian", "multinomial"])
def test_fit_mle_frequency_weights_count_as_repeated_rows(rng, family):
    """sample_weight are frequency weights: nobs is their sum, so BIC (log
    nobs) and all the rest equal the fit of the rows repeated w_i times and
    statsmodels' GLM with freq_weights (whose model.wnobs and df_resid count them)."""
    n = 400
    X = rng.standard_normal((n, 2))
    w = rng.integers(1, 4, n)
    eta = X @ [0.8, -0.5] + 0.2
    y = {"binomial": (eta + rng.logistic(size=n) > 0).astype(int),
         "poisson": rng.poisson(np.exp(eta)),
         "gaussian": eta + rng.standard_normal(n),
         "multinomial": np.argmax(np.c_[eta, -eta, 0 * eta] + rng.gumbel(size=(n, 3)), axis=1)}[family]
    ref = 0 if family == "multinomial" else None
    res = fastmle.fit_mle(X, y, family, sample_weight=w, reference_class=ref, backend="c")
    rows = np.repeat(np.arange(n), w)
    repeated = fastmle.fit_mle(X[rows], y[rows], family, reference_class=ref, backend="c")
    assert res.nobs == repeated.nobs == w.sum() and isinstance(res.nobs, int)
    for name in ("params", "bse", "llf", "llnull", "aic", "bic"):
        assert _rel(getattr(res, name), getattr(repeated, name)) < 1e-8, name
    if family == "multinomial":
        return  # statsmodels' GLM has no multinomial family
    sm_family = {"binomial": sm.families.Binomial(), "poisson": sm.families.Poisson(),
                 "gaussian": sm.families.Gaussian()}[family]
    ref_fit = sm.GLM(y, _const_last(X), family=sm_family, freq_weights=w).fit(tol=1e-12)
    assert res.nobs == ref_fit.model.wnobs and res.df_resid == ref_fit.df_resid
    assert _rel(res.params, ref_fit.params) < 1e-6 and _rel(res.llf, ref_fit.llf) < 1e-9
    assert res.aic == pytest.approx(ref_fit.aic, rel=1e-9)
    assert res.bic == pytest.approx(ref_fit.bic_llf, rel=1e-9)
    if family == "gaussian":
        # the GLM's scale is RSS / df_resid: fit_mle's docstring conversion, n = nobs
        assert _rel(res.bse * math.sqrt(res.nobs / res.df_resid), ref_fit.bse) < 1e-6
    else:
        assert _rel(res.bse, ref_fit.bse) < 1e-6 and _rel(res.llnull, ref_fit.llnull) < 1e-9


def test_fit_mle_gaussian_is_ols_by_maximum_likelihood(backend, rng):
    n = 600
    X = rng.standard_normal((n, 3))
    y = X @ [1.0, 2.0, 3.0] + 1.0 + rng.standard_normal(n)
    res = fastmle.fit_mle(X, y, "gaussian", backend=backend)
    ref = sm.OLS(y, _const_last(X)).fit()
    rss = float(ref.ssr)
    assert res.scale == pytest.approx(rss / n, rel=1e-9)
    # the MLE's covariance uses sigma^2 = RSS / n (OLS reports RSS / (n - p))
    _check_against(res, ref.params, np.sqrt(np.diag(ref.cov_params(scale=rss / n))), ref.llf,
                   sm.OLS(y, np.ones(n)).fit().llf)
    assert res.aic == pytest.approx(ref.aic, rel=1e-9)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("family", ["binomial", "poisson", "gaussian", "multinomial"])
def test_fit_mle_degrees_of_freedom_are_statsmodels(rng, family, fit_intercept):
    # df_model had counted the intercepts ("as statsmodels", 4 against
    # Logit's 3); AIC and BIC charge every parameter (k_params)
    n = 300
    X = rng.standard_normal((n, 3))
    eta = X @ [0.8, -0.5, 0.3] + 0.2
    y = {"binomial": (eta + rng.logistic(size=n) > 0).astype(int), "poisson": rng.poisson(np.exp(eta)),
         "gaussian": eta + rng.standard_normal(n),
         "multinomial": np.argmax(np.c_[eta, -eta, 0 * eta] + rng.gumbel(size=(n, 3)), axis=1)}[family]
    exog = _const_last(X) if fit_intercept else X
    model = {"binomial": sm.Logit, "poisson": sm.Poisson, "gaussian": sm.OLS, "multinomial": sm.MNLogit}[family]
    ref = model(y, exog).fit(**({} if family == "gaussian" else {"disp": 0}))
    res = fastmle.fit_mle(X, y, family, fit_intercept=fit_intercept,
                          reference_class=0 if family == "multinomial" else None)
    assert res.df_model == ref.df_model and res.df_resid == ref.df_resid
    assert res.k_params == np.size(ref.params)
    assert res.aic == pytest.approx(ref.aic, rel=1e-9) and res.bic == pytest.approx(ref.bic, rel=1e-9)


def test_fit_mle_float32_and_dataframe_names(rng):
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(rng.standard_normal((300, 2)).astype(np.float32), columns=["age", "dose"])
    y = (X["age"] - X["dose"] + rng.logistic(size=300) > 0).astype(int)
    res = fastmle.fit_mle(X, y, "binomial")
    ref = fastmle.fit_mle(X.to_numpy(np.float64), y, "binomial")
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-12)
    assert res.param_names == ["age", "dose", "intercept"]
    text = res.summary()
    assert "age" in text and "intercept" in text and "Log-likelihood" in text and "P>|z|" in text


def test_fit_mle_confidence_intervals_cover_at_the_nominal_rate():
    """Coverage by simulation: 95% Wald intervals of a logistic regression
    contain the true coefficients in 95% of 400 replications, within the
    binomial sampling error (3 standard errors: 0.95 +- 0.033)."""
    rng = np.random.default_rng(7)
    beta = np.array([0.8, -0.5, 0.3])  # the last one is the intercept
    hits, reps = 0, 400
    for _ in range(reps):
        X = rng.standard_normal((300, 2))
        y = (X @ beta[:2] + beta[2] + rng.logistic(size=300) > 0).astype(int)
        lo, hi = fastmle.fit_mle(X, y, "binomial").conf_int(0.05).T
        hits += np.sum((lo <= beta) & (beta <= hi))
    coverage = hits / (3 * reps)
    assert abs(coverage - 0.95) < 3 * math.sqrt(0.95 * 0.05 / (3 * reps))


def test_fit_mle_symmetric_multinomial_needs_a_penalty(rng):
    X = rng.standard_normal((200, 2))
    y = rng.integers(0, 3, 200)
    with pytest.raises(ValueError, match="not identifiable.*reference_class.*alpha > 0"):
        fastmle.fit_mle(X, y, "multinomial")
    res = fastmle.fit_mle(X, y, "multinomial", alpha=1.0)
    assert res.params.shape == (3, 3) and res.converged
    assert abs(res.intercept.sum()) < 1e-8  # the direction the likelihood does not see
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(X, y)  # penalty |w|^2 / (2C)
    np.testing.assert_allclose(res.coef.T, lr.coef_, atol=1e-6)


def test_fit_mle_collinear_columns_are_named(rng):
    X = rng.standard_normal((100, 3))
    X = np.hstack([X, X[:, [0]] - 2 * X[:, [2]]])
    y = (X[:, 0] + rng.logistic(size=100) > 0).astype(int)
    with pytest.raises(fastmle.SingularFisherError, match="'x0', 'x2', 'x3' are collinear"):
        fastmle.fit_mle(X, y, "binomial")
    with pytest.raises(fastmle.SingularFisherError, match="'x1' is zero"):
        fastmle.fit_mle(np.hstack([X[:, :1], np.zeros((100, 1))]), y, "binomial")
    with pytest.raises(fastmle.SingularFisherError, match="'x0', 'intercept' are collinear"):
        fastmle.fit_mle(np.full((100, 1), 3.0), y, "binomial")
    # a column far from 0 against its spread is not exactly collinear with
    # the intercept, and the message had said "constant zero"; it says what to do
    with pytest.raises(fastmle.SingularFisherError, match="collinear or nearly so .* with the intercept: centre it"):
        fastmle.fit_mle(1e5 + X[:, :1], y, "binomial")


def _watch_gram(monkeypatch):
    """Record the in-memory fit's passes for the design's Gram matrix and
    its problem object, which fit_mle does not return."""
    from fastmle import mle

    seen = {"gram": 0}
    gram, result = mle._Problem._gram, mle._result

    def counted_gram(self):
        seen["gram"] += 1
        return gram(self)

    def kept_result(prob, *args):
        seen["prob"] = prob
        return result(prob, *args)

    monkeypatch.setattr(mle._Problem, "_gram", counted_gram)
    monkeypatch.setattr(mle, "_result", kept_result)
    return seen


@pytest.mark.parametrize("family", ["binomial", "multinomial", "poisson", "gaussian"])
def test_fit_mle_rank_check_reads_the_first_steps_information(rng, monkeypatch, family):
    # Without an offset every sample has the same variance at the start, so
    # the first step's Fisher is a multiple of the design's Gram matrix: the
    # rank check and the separation check's scale take it from there, with
    # no pass over X of their own
    X = rng.standard_normal((400, 3)) * [1.0, 3.0, 0.2] + [0.0, 1.0, -2.0]
    w = rng.uniform(0.5, 2.0, 400)
    eta = X @ [0.5, -0.2, 0.3]
    y = {"binomial": (eta + rng.logistic(size=400) > 0).astype(int), "multinomial": rng.integers(0, 3, 400),
         "poisson": rng.poisson(np.exp(eta - 1)), "gaussian": eta + rng.standard_normal(400)}[family]
    seen = _watch_gram(monkeypatch)
    ref = {"reference_class": 0} if family == "multinomial" else {}
    res = fastmle.fit_mle(X, y, family, sample_weight=w, **ref)
    assert res.converged and seen["gram"] == 0
    np.testing.assert_allclose(seen["prob"].gram_diag, np.append(w @ X ** 2, w.sum()), rtol=1e-12)
    with pytest.raises(fastmle.SingularFisherError, match="'x0', 'x2', 'x3' are collinear"):
        fastmle.fit_mle(np.hstack([X, X[:, [0]] - 2 * X[:, [2]]]), y, family, sample_weight=w, **ref)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_fit_mle_gaussian_computes_its_information_once(rng, monkeypatch, backend):
    # X^T W X does not depend on the parameters: one pass of the exact-Fisher
    # kernel per gaussian fit (it had run three: at the start, after the
    # first step, at the estimate), and the same fit as before, which
    # statsmodels' WLS checks to 1e-10
    from fastmle import mle

    sm = pytest.importorskip("statsmodels.api")
    calls = []
    fisher = mle._Problem._fisher
    monkeypatch.setattr(mle._Problem, "_fisher", lambda self, params: (calls.append(1), fisher(self, params))[1])
    X = rng.standard_normal((300, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_normal(300)
    w = rng.uniform(0.5, 2.0, 300)
    fit = fastmle.fit_mle(X, y, "gaussian", sample_weight=w, backend=backend)
    assert len(calls) == 1 and fit.converged
    wls = sm.WLS(y, sm.add_constant(X, prepend=False), weights=w).fit()
    np.testing.assert_allclose(fit.params, wls.params, rtol=1e-10)
    # (sigma^2 by maximum likelihood: sum w r^2 over the total weight; WLS's over n - p)
    np.testing.assert_allclose(fit.bse * np.sqrt(w.sum() / (300 - 4)), wls.bse, rtol=1e-10)
    calls.clear()
    ridge = fastmle.fit_mle(X, y, "gaussian", alpha=2.0, backend=backend)
    assert len(calls) == 1
    # the penalty is added to a copy (added twice, the covariance would be smaller)
    Xt = np.c_[X, np.ones(300)]
    cov = ridge.scale * np.linalg.inv(Xt.T @ Xt + np.diag([2.0, 2.0, 2.0, 0.0]))
    np.testing.assert_allclose(ridge.bse, np.sqrt(np.diag(cov)), rtol=1e-10)


def test_fit_mle_rank_check_of_extreme_column_scales(rng):
    # the correlation scaling divides by sqrt(diag) once per side: outer(diag,
    # diag) had underflowed for a column of scale 1e-90 (an eigenvalue of NaN,
    # then LinAlgError), though that column is only a change of units
    X = rng.standard_normal((1000, 4))
    y = X @ [1.0, 0.5, -0.5, 0.2] + rng.standard_normal(1000)
    small = X * [1.0, 1.0, 1e-90, 1.0]
    tiny = fastmle.fit_mle(small, y, "gaussian")
    plain = fastmle.fit_mle(X, y, "gaussian")
    np.testing.assert_allclose(tiny.params * [1.0, 1.0, 1e-90, 1.0, 1.0], plain.params, rtol=1e-9)
    with pytest.raises(fastmle.SingularFisherError, match="column 'x1' is not finite. Rescale the features"):
        fastmle.fit_mle(X * [1.0, 1e160, 1.0, 1.0], y, "gaussian")


def test_fit_mle_rank_check_with_an_offset_bounds_the_gram_matrix(rng, monkeypatch):
    # With a poisson offset the start's variances exp(b + offset_i) differ
    # by at most exp(offset's range): the first step's information then
    # bounds the Gram matrix's correlation, and decides when the bound
    # clears the threshold; otherwise (and for binomial, whose separation
    # check needs G's diagonal) G is computed
    X = rng.standard_normal((500, 3))
    exposure = rng.uniform(1.0, 100.0, 500)
    y = rng.poisson(exposure * np.exp(X @ [0.3, -0.2, 0.1] - 3))
    seen = _watch_gram(monkeypatch)
    fit = fastmle.fit_mle(X, y, "poisson", exposure=exposure)
    assert fit.converged and seen["gram"] == 0
    collinear = np.hstack([X, X[:, [0]] + X[:, [1]]])
    with pytest.raises(fastmle.SingularFisherError, match="'x0', 'x1', 'x3' are collinear"):
        fastmle.fit_mle(collinear, y, "poisson", exposure=exposure)
    assert seen["gram"] == 1
    wide = np.zeros(500)
    wide[0] = 30.0  # a spread of e^30: the bound says nothing, G decides
    y_wide = rng.poisson(np.exp(X @ [0.3, -0.2, 0.1] + wide))
    fitted = fastmle.fit_mle(X, y_wide, "poisson", offset=wide)
    assert fitted.converged and seen["gram"] == 2
    # the null model of rare counts with one offset of 30 (and 40), in
    # closed form: a one-pass shortcut had lost it to the rounding of sum
    # exp(b0 + offset), which holds e^30 (-774.6982421875 for
    # -774.6982737203331; -1054.0 at 40)
    y_rare = (rng.random(2000) < 0.01).astype(float)
    for top in (30.0, 40.0):
        skewed = np.zeros(2000)
        skewed[0] = top
        eta = math.log(y_rare.sum() / np.exp(skewed).sum()) + skewed
        llnull = math.fsum(y_rare * eta - np.exp(eta))  # log(y!) = 0 for y in {0, 1}
        got = fastmle.fit_mle(rng.standard_normal((2000, 1)), y_rare, "poisson", offset=skewed).llnull
        assert got == pytest.approx(llnull, rel=1e-13)
    # columns that differ only by 1.5e-4 noise on the 20 rows of offset 8:
    # the block weighs those rows e^8 more and looks full rank (least
    # correlation eigenvalue 1.2e-8), G does not (1.1e-10); the bound, times
    # e^-8, says nothing, and G refuses (ignoring the spread had fitted +-32)
    n = 2000
    x0 = rng.standard_normal(n)
    x1 = x0.copy()
    x1[:20] += 1.5e-4 * rng.standard_normal(20)
    near = np.zeros(n)
    near[:20] = 8.0
    y_near = rng.poisson(np.exp(0.3 * x0 + near - 1.0))
    with pytest.raises(fastmle.SingularFisherError, match="'x0', 'x1' are collinear or nearly so"):
        fastmle.fit_mle(np.c_[x0, x1], y_near, "poisson", offset=near)
    assert seen["gram"] == 5  # (the rare counts' two fits: a spread of e^30 and e^40)
    yb = (X[:, 0] + rng.logistic(size=500) > 0).astype(int)
    fastmle.fit_mle(X, yb, "binomial", offset=0.1 * X[:, 1])
    assert seen["gram"] == 6
    np.testing.assert_allclose(seen["prob"].gram_diag, np.append(np.sum(X ** 2, axis=0), 500.0), rtol=1e-12)


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_leaves_rows_of_weight_zero_out(rng, backend):
    # a weight of 0 takes a sample out of the likelihood, but the kernels
    # had still evaluated it: an offset of 720 there, or a feature of 1e4
    # times the coefficient, overflowed exp to inf and its term to
    # 0 * inf = NaN, reported as ill-conditioning. The fit now equals the
    # fit of the other rows
    X = rng.standard_normal((300, 2))
    offset = np.log(rng.uniform(1.0, 5.0, 300))
    y = rng.poisson(np.exp(X @ [0.4, -0.3] - 0.5 + offset))
    w = rng.uniform(0.5, 2.0, 300)
    w[:20] = 0.0
    offset[:10] = 720.0
    X[10:20, 0] = 1e4
    fit = fastmle.fit_mle(X, y, "poisson", sample_weight=w, offset=offset, backend=backend)
    rest = fastmle.fit_mle(X[20:], y[20:], "poisson", sample_weight=w[20:], offset=offset[20:], backend=backend)
    assert fit.converged and fit.nobs == rest.nobs
    for name in ("params", "bse", "llf", "llnull", "aic", "bic", "df_resid"):
        np.testing.assert_allclose(getattr(fit, name), getattr(rest, name), rtol=1e-12, err_msg=name)


def _robust_data(rng, n=3000):
    X = rng.standard_normal((n, 3))
    return X, {"binomial": (X @ [0.5, -0.3, 0.2] + rng.logistic(size=n) > 0).astype(int),
               "poisson": rng.negative_binomial(2, 1 / (1 + np.exp(X @ [0.3, -0.2, 0.1]) / 2)),  # overdispersed
               "gaussian": X @ [1.0, 2.0, 3.0] + rng.standard_normal(n) * (1 + np.abs(X[:, 0])),
               "multinomial": np.argmax(X @ rng.standard_normal((3, 3)) + rng.gumbel(size=(n, 3)), axis=1)}


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_robust_covariance_matches_statsmodels(rng, backend):
    # (multinomial's off-diagonal blocks pass the exact-Fisher kernels negative weights)
    sm = pytest.importorskip("statsmodels.api")
    X, ys = _robust_data(rng)
    Xc = sm.add_constant(X, prepend=False)
    peers = {"binomial": lambda y, ct: sm.Logit(y, Xc).fit(cov_type=ct, disp=0),
             "poisson": lambda y, ct: sm.Poisson(y, Xc).fit(cov_type=ct, disp=0),
             "gaussian": lambda y, ct: sm.OLS(y, Xc).fit(cov_type=ct),
             "multinomial": lambda y, ct: sm.MNLogit(y, Xc).fit(cov_type=ct, disp=0)}
    for family, y in ys.items():
        ref = {"reference_class": 0} if family == "multinomial" else {}
        plain = fastmle.fit_mle(X, y, family, backend=backend, **ref)
        hc0 = fastmle.fit_mle(X, y, family, cov_type="HC0", backend=backend, **ref)
        hc1 = fastmle.fit_mle(X, y, family, cov_type="HC1", backend=backend, **ref)
        assert (plain.cov_type, hc0.cov_type) == ("nonrobust", "HC0") and "Covariance type" in hc0.summary()
        np.testing.assert_array_equal(hc0.params, plain.params)
        np.testing.assert_allclose(hc0.bse, np.asarray(peers[family](y, "HC0").bse), rtol=1e-9, err_msg=family)
        np.testing.assert_allclose(hc1.cov_params(), hc0.cov_params() * 3000 / (3000 - plain.k_params), rtol=1e-12)
        # the sandwich differs from the model's covariance where the model is wrong
        assert np.max(np.abs(hc0.bse / plain.bse - 1)) > 0.02 or family in ("binomial", "multinomial")
    np.testing.assert_allclose(fastmle.fit_mle(X, ys["gaussian"], "gaussian", cov_type="HC1", backend=backend).bse,
                               sm.OLS(ys["gaussian"], Xc).fit(cov_type="HC1").bse, rtol=1e-9)
    # a poisson rate model's, against statsmodels' GLM with exposure
    exposure = rng.uniform(1.0, 10.0, 3000)
    counts = rng.negative_binomial(2, 1 / (1 + exposure * np.exp(X @ [0.3, -0.2, 0.1] - 1) / 2))
    glm = sm.GLM(counts, Xc, family=sm.families.Poisson(), exposure=exposure).fit(cov_type="HC0")
    np.testing.assert_allclose(fastmle.fit_mle(X, counts, "poisson", exposure=exposure, cov_type="HC0",
                                               backend=backend).bse, glm.bse, rtol=1e-8)


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_robust_covariance_counts_frequency_weights(rng, backend):
    # integer weights are rows repeated (HC1's nobs is their total), and
    # rows of weight 0 are left out
    X, ys = _robust_data(rng, n=400)
    w = rng.integers(0, 4, 400)
    repeated = np.repeat(np.arange(400), w)
    for family, y in ys.items():
        ref = {"reference_class": 1} if family == "multinomial" else {}
        for cov_type in ("HC0", "HC1") + (() if family == "multinomial" else ("HC2", "HC3")):
            got = fastmle.fit_mle(X, y, family, sample_weight=w, cov_type=cov_type, backend=backend, **ref)
            rows = fastmle.fit_mle(X[repeated], y[repeated], family, cov_type=cov_type, backend=backend, **ref)
            np.testing.assert_allclose(got.cov_params(), rows.cov_params(), rtol=1e-9, err_msg=family)


def _hat_value_sandwich(X, y, family, params, power, offset=0.0):
    """HC2 (power 1) / HC3 (2) written out: leverages from a QR of the
    working-weighted design (R's hatvalues), scores divided by (1 - h)^(power / 2)."""
    Xt = np.c_[X, np.ones(len(X))]
    eta = Xt @ params + offset
    mu = {"gaussian": eta, "binomial": 1 / (1 + np.exp(-eta)), "poisson": np.exp(eta)}[family]
    v = {"gaussian": np.ones_like(mu), "binomial": mu * (1 - mu), "poisson": mu}[family]
    Q = np.linalg.qr(np.sqrt(v)[:, None] * Xt)[0]
    h = np.sum(Q * Q, axis=1)
    bread = np.linalg.inv(Xt.T @ (v[:, None] * Xt))
    scores = (mu - y)[:, None] * Xt / (1 - h)[:, None] ** (power / 2)
    return bread @ scores.T @ scores @ bread


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_leverage_adjusted_covariance(rng, backend):
    # HC2 / HC3: OLS against statsmodels; binomial and poisson (statsmodels'
    # GLM and discrete models accept HC2 / HC3 but return HC0) against the
    # hat values written out, as R's sandwich::vcovHC computes them
    sm = pytest.importorskip("statsmodels.api")
    X, ys = _robust_data(rng, n=200)
    X[:, 2] = rng.exponential(size=200)  # a skewed column: leverages far from k / n
    exposure = rng.uniform(1.0, 10.0, 200)
    for cov_type, power in (("HC2", 1), ("HC3", 2)):
        ols = sm.OLS(ys["gaussian"], sm.add_constant(X, prepend=False)).fit(cov_type=cov_type)
        fit = fastmle.fit_mle(X, ys["gaussian"], "gaussian", cov_type=cov_type, backend=backend)
        np.testing.assert_allclose(fit.bse, ols.bse, rtol=1e-10)
        assert fit.cov_type == cov_type
        for family, extra in (("binomial", {}), ("poisson", {}), ("poisson", {"exposure": exposure})):
            y = ys[family]
            fit = fastmle.fit_mle(X, y, family, cov_type=cov_type, backend=backend, **extra)
            expected = _hat_value_sandwich(X, y, family, fit.params, power, np.log(extra.get("exposure", 1.0)))
            np.testing.assert_allclose(fit.cov_params(), expected, rtol=1e-10, err_msg=family)
            hc0 = fastmle.fit_mle(X, y, family, cov_type="HC0", backend=backend, **extra)
            assert np.all(fit.bse > hc0.bse)  # each score scaled up by 1 / (1 - h) > 1


@pytest.mark.parametrize("backend", ["c", "numba"])
def test_fit_mle_leverage_one_gives_nan_with_a_warning(rng, backend):
    # a dummy column set on one sample only: that sample's leverage is 1 and
    # its residual rounding, whose ratio statsmodels' OLS reports as a
    # standard error; here NaN, with a warning. So do weights far below 1
    # (frequency weights: each copy's leverage above 1)
    X, ys = _robust_data(rng, n=100)
    dummy = np.c_[X, np.eye(100)[:, 0]]
    with pytest.warns(RuntimeWarning, match="cov_type='HC3': a sample has leverage 1"):
        fit = fastmle.fit_mle(dummy, ys["gaussian"], "gaussian", cov_type="HC3", backend=backend)
    assert np.isnan(fit.bse).all() and np.isfinite(fit.params).all()
    # a column of mean 1e4 or 3e4: x^T F^-1 x cancels, and this sample's 1 - h had come out 4.7e-10 (mean
    # 1e4) or more, a finite standard error and no warning
    for mean in (1e4, 3e4):  # (a mean of 1e5: collinear with the intercept, refused)
        rng4 = np.random.default_rng(4)
        x = mean + rng4.standard_normal(100)
        shifted = np.c_[x, rng4.standard_normal(100), np.eye(100)[:, 0]]
        with pytest.warns(RuntimeWarning, match="cov_type='HC3': a sample has leverage 1"):
            fit = fastmle.fit_mle(shifted, 0.5 * x + rng4.standard_normal(100), "gaussian", cov_type="HC3",
                                  backend=backend)
        assert np.isnan(fit.bse).all()
    with pytest.warns(RuntimeWarning, match="cov_type='HC2': a sample has leverage 1"):
        fit = fastmle.fit_mle(X, ys["poisson"], "poisson", cov_type="HC2", sample_weight=np.full(100, 0.01),
                              backend=backend)
    assert np.isnan(fit.bse).all()


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_deviance_and_estimated_dispersion_match_statsmodels(rng, backend):
    # scale="X2" (Pearson) and "dev" as statsmodels' GLM fit(scale=...), the
    # deviance of every fit as its GLM's; gaussian "X2" is OLS's sigma^2
    sm = pytest.importorskip("statsmodels.api")
    X, ys = _robust_data(rng, n=800)
    Xc = sm.add_constant(X, prepend=False)
    exposure = rng.uniform(1.0, 10.0, 800)
    families = {"binomial": sm.families.Binomial(), "poisson": sm.families.Poisson(),
                "gaussian": sm.families.Gaussian()}
    for family, extra in (("binomial", {}), ("poisson", {}), ("poisson", {"exposure": exposure}), ("gaussian", {})):
        y = ys[family]
        plain = fastmle.fit_mle(X, y, family, backend=backend, **extra)
        glm = sm.GLM(y, Xc, family=families[family], **extra)
        assert plain.deviance == pytest.approx(glm.fit().deviance, rel=1e-10)
        assert plain.pearson_chi2 is None and plain.scale_method is None
        for scale in ("X2", "dev"):
            fit = fastmle.fit_mle(X, y, family, scale=scale, backend=backend, **extra)
            theirs = glm.fit(scale=scale)
            assert (fit.scale, fit.scale_method) == (pytest.approx(theirs.scale, rel=1e-10), scale)
            np.testing.assert_allclose(fit.bse, theirs.bse, rtol=1e-10, err_msg=f"{family} {scale}")
            assert fit.llf == plain.llf and f"Scale ({'Pearson' if scale == 'X2' else 'deviance'})" in fit.summary()
        assert fit.pearson_chi2 is None
        assert fastmle.fit_mle(X, y, family, scale="X2", backend=backend, **extra).pearson_chi2 == pytest.approx(
            glm.fit().pearson_chi2, rel=1e-10)
    np.testing.assert_allclose(fastmle.fit_mle(X, ys["gaussian"], "gaussian", scale="X2", backend=backend).bse,
                               sm.OLS(ys["gaussian"], Xc).fit().bse, rtol=1e-10)
    # a known dispersion multiplies the covariance; integer weights are rows repeated
    fixed = fastmle.fit_mle(X, ys["poisson"], "poisson", scale=2.5, backend=backend)
    np.testing.assert_allclose(fixed.bse, np.sqrt(2.5) * fastmle.fit_mle(X, ys["poisson"], "poisson",
                                                                         backend=backend).bse, rtol=1e-12)
    assert fixed.scale_method == "fixed"
    w = rng.integers(0, 4, 800)
    rows = np.repeat(np.arange(800), w)
    for scale in ("X2", "dev"):
        got = fastmle.fit_mle(X, ys["poisson"], "poisson", sample_weight=w, scale=scale, backend=backend)
        want = fastmle.fit_mle(X[rows], ys["poisson"][rows], "poisson", scale=scale, backend=backend)
        assert got.scale == pytest.approx(want.scale, rel=1e-10) and got.deviance == pytest.approx(want.deviance)


def test_fit_mle_gaussian_pearson_statistic_is_its_rss(rng, monkeypatch):
    # scale="X2" for gaussian: Pearson's statistic is the residual sum of squares the fit already has, so no
    # pass over X for it (in dask a pass over every chunk)
    from fastmle import mle

    calls = []
    statistics = mle._Problem.fit_statistics
    monkeypatch.setattr(mle._Problem, "fit_statistics", lambda self, p: (calls.append(1), statistics(self, p))[1])
    X = rng.standard_normal((300, 2))
    y = X @ [1.0, -1.0] + rng.standard_normal(300)
    fit = fastmle.fit_mle(X, y, "gaussian", scale="X2")
    assert not calls and fit.pearson_chi2 == fit.deviance and fit.scale == pytest.approx(fit.deviance / (300 - 3))
    fastmle.fit_mle(X, rng.poisson(np.exp(0.3 * X[:, 0])), "poisson", scale="X2")
    assert len(calls) == 1


def test_fit_mle_poisson_deviance_of_large_counts(rng):
    # sum w y log y against the likelihood's sum w y eta cancels for counts
    # of 1e6 fitted closely (6% off; at 1e8, -0.00098 and NaN standard
    # errors with scale="dev"): such a deviance is summed row by row
    X = rng.standard_normal((1000, 2))
    for size in (1e6, 1e8):
        y = np.round(size * np.exp(0.3 * X[:, 0] - 0.2 * X[:, 1]))
        fit = fastmle.fit_mle(X, y, "poisson", scale="dev")
        mu = fit.predict(X).astype(np.longdouble)
        yl = y.astype(np.longdouble)
        want = float(2 * np.sum(yl * np.log(yl / mu) - (yl - mu)))  # 64-bit mantissa: no cancellation left
        assert fit.deviance == pytest.approx(want, rel=1e-4 if size == 1e6 else 0.05)
        assert fastmle.fit_mle(X, y, "poisson").deviance == fit.deviance and np.isfinite(fit.bse).all()


def test_fit_mle_known_gaussian_scale_is_not_an_exact_fit():
    # a known sigma^2 defines the standard errors of a saturated fit (they had been NaN, with a warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fastmle.fit_mle([[0.0], [1.0]], [1.0, 2.0], "gaussian", scale=2.0)
    np.testing.assert_allclose(fit.bse, [2.0, np.sqrt(2.0)], rtol=1e-12)  # statsmodels' GLM(scale=2.0)


def test_fit_mle_scale_refusals(rng):
    X, ys = _robust_data(rng, n=100)
    y = ys["poisson"]
    for scale, extra, message in (("pearson", {}, "unknown scale 'pearson'"), (-1.0, {}, "positive finite number"),
                                  (math.nan, {}, "positive finite number"), (True, {}, "positive finite number"),
                                  ("X2", {"cov_type": "HC0"}, "cov_type='HC0' is a sandwich")):
        with pytest.raises(ValueError, match=message):
            fastmle.fit_mle(X, y, "poisson", scale=scale, **extra)
    with pytest.raises(ValueError, match="for multinomial pass a number"):
        fastmle.fit_mle(X, ys["multinomial"], "multinomial", reference_class=0, scale="X2")
    with pytest.warns(RuntimeWarning, match="total weight 1 is not above the number of parameters 4"):
        tiny = fastmle.fit_mle(X, y, "poisson", sample_weight=np.full(100, 0.01), scale="dev")
    assert np.isnan(tiny.bse).all() and math.isnan(tiny.scale)


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_get_prediction_matches_statsmodels(rng, backend):
    # the mean's standard error (delta method) and interval (the linear
    # predictor's, through the inverse link) at new rows, as statsmodels'
    # GLM get_prediction(...).summary_frame(alpha), robust covariances too
    sm = pytest.importorskip("statsmodels.api")
    X, ys = _robust_data(rng, n=400)
    Xc = sm.add_constant(X, prepend=False)
    new = rng.standard_normal((50, 3)) * 2.0
    exposure, new_exposure = rng.uniform(1.0, 10.0, 400), rng.uniform(1.0, 10.0, 50)
    cases = (("poisson", sm.families.Poisson(), {"exposure": exposure}, {"exposure": new_exposure}, {}),
             ("binomial", sm.families.Binomial(), {}, {}, {}),
             ("binomial", sm.families.Binomial(), {}, {}, {"cov_type": "HC0"}),
             ("gaussian", sm.families.Gaussian(), {}, {}, {"scale": "X2"}))  # statsmodels' GLM: Pearson's sigma^2
    for family, sm_family, fit_kw, new_kw, options in cases:
        y = ys[family]
        fit = fastmle.fit_mle(X, y, family, backend=backend, **fit_kw, **options)
        glm = sm.GLM(y, Xc, family=sm_family, **fit_kw).fit(cov_type=options.get("cov_type", "nonrobust"))
        want = glm.get_prediction(sm.add_constant(new, prepend=False), **new_kw).summary_frame(0.1)
        got = fit.get_prediction(new, 0.1, **new_kw, backend=backend)
        for column in want.columns[:4]:
            np.testing.assert_allclose(getattr(got, column), want[column].to_numpy(), rtol=1e-6,
                                       err_msg=f"{family} {options} {column}")
        assert ((got.mean_ci_lower < got.mean) & (got.mean < got.mean_ci_upper)).all()
    # no intercept; an offset for gaussian (the interval moves with it)
    fit = fastmle.fit_mle(X, ys["gaussian"], "gaussian", fit_intercept=False, scale="X2", backend=backend)
    ols = sm.OLS(ys["gaussian"], X).fit()
    want = ols.get_prediction(new).summary_frame(0.05)
    got = fit.get_prediction(new, backend=backend)
    np.testing.assert_allclose(got.mean_se, want["mean_se"], rtol=1e-9)  # (OLS's interval uses t, this z)
    np.testing.assert_allclose(got.mean_ci_upper, got.mean + 1.959963984540054 * got.mean_se, rtol=1e-12)
    shifted = fit.get_prediction(new, offset=np.full(50, 3.0), backend=backend)
    np.testing.assert_allclose(shifted.mean_ci_lower, got.mean_ci_lower + 3.0, rtol=1e-12)
    np.testing.assert_allclose(shifted.mean_se, got.mean_se, rtol=1e-12)
    # far out, where p (1 - p) from the rounded p had given a standard error of 0 (eta = 37) or 1e-6 off (20)
    y = ys["binomial"]
    fit = fastmle.fit_mle(X, y, "binomial", backend=backend)
    glm = sm.GLM(y, Xc, family=sm.families.Binomial()).fit()
    far = np.outer([20.0, 40.0, 80.0], np.sign(fit.coef))  # eta far above 20
    want = glm.get_prediction(sm.add_constant(far, prepend=False, has_constant="add")).summary_frame()
    np.testing.assert_allclose(fit.get_prediction(far, backend=backend).mean_se, want["mean_se"], rtol=1e-6)
    with pytest.raises(ValueError, match=r"alpha \(the intervals. level is 1 - alpha\) must be a number in \(0, 1\)"):
        fastmle.fit_mle(X, ys["multinomial"], "multinomial", reference_class=0).get_prediction(new, alpha=0.0)
    with pytest.raises(ValueError, match=r"alpha \(the intervals. level is 1 - alpha\) must be a number in \(0, 1\)"):
        fit.get_prediction(new, alpha=1.5)
    with pytest.raises(ValueError, match="X has 2 features"):
        fit.get_prediction(new[:, :2])


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_fit_mle_multinomial_get_prediction(rng, backend):
    # each class's probability with its delta-method standard error and the
    # interval of its log-odds: two classes give the binomial fit's, and
    # three classes the delta method through a finite-difference Jacobian
    X = rng.standard_normal((500, 2))
    new = rng.standard_normal((6, 2)) * 3.0
    y = (X[:, 0] + rng.logistic(size=500) > 0).astype(int)
    two = fastmle.fit_mle(X, y, "multinomial", reference_class=0, backend=backend).get_prediction(new, 0.1)
    binomial = fastmle.fit_mle(X, y, "binomial", backend=backend).get_prediction(new, 0.1)
    pairs = ((two.mean[:, 1], binomial.mean), (two.mean_se[:, 1], binomial.mean_se),
             (two.mean_ci_lower[:, 1], binomial.mean_ci_lower), (two.mean_ci_upper[:, 1], binomial.mean_ci_upper),
             (two.mean_se[:, 0], binomial.mean_se), (two.mean_ci_upper[:, 0], 1.0 - binomial.mean_ci_lower))
    for got, want in pairs:
        np.testing.assert_allclose(got, want, rtol=1e-8)
    # far out, from the log-odds (p_k (1 - p_k) of the rounded p_k is 0 there)
    fit2 = fastmle.fit_mle(X, y, "multinomial", reference_class=0, backend=backend)
    far = np.array([[40.0, 0.0], [-40.0, 0.0]]) * np.sign(fit2.coef[0, 0])
    np.testing.assert_allclose(fit2.get_prediction(far).mean_se[:, 1],
                               fastmle.fit_mle(X, y, "binomial", backend=backend).get_prediction(far).mean_se,
                               rtol=1e-8)
    y3 = np.argmax(X @ rng.standard_normal((2, 3)) + rng.gumbel(size=(500, 3)), axis=1)
    for options, kept in (({"reference_class": 0}, [1, 2]), ({"alpha": 1.0}, [0, 1, 2])):
        fit = fastmle.fit_mle(X, y3, "multinomial", backend=backend, **options)
        got = fit.get_prediction(new)

        def probabilities(theta):  # theta in cov_params()'s order: output-major, (x0, x1, intercept)
            eta = np.zeros((len(new), 3))
            eta[:, kept] = (new @ theta.reshape(len(kept), 3)[:, :2].T + theta.reshape(len(kept), 3)[:, 2])
            e = np.exp(eta - eta.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        theta = fit.params.ravel(order="F")
        steps = np.eye(theta.size) * 1e-6
        J = np.stack([(probabilities(theta + h) - probabilities(theta - h)) / 2e-6 for h in steps], axis=-1)
        want = np.sqrt(np.einsum("nkp,pq,nkq->nk", J, fit.cov_params(), J))
        np.testing.assert_allclose(got.mean, probabilities(theta), rtol=1e-12)
        np.testing.assert_allclose(got.mean_se, want, rtol=1e-6, err_msg=str(options))
        assert got.mean.shape == (6, 3) and ((got.mean_ci_lower < got.mean) & (got.mean < got.mean_ci_upper)).all()


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_marginal_effects_match_statsmodels(rng, backend):
    # average marginal effects and those at the mean, with their delta-method
    # standard errors, as statsmodels' get_margeff(at, method="dydx")
    sm = pytest.importorskip("statsmodels.api")
    X, ys = _robust_data(rng, n=500)
    Xc = sm.add_constant(X, prepend=False)
    peers = {"binomial": sm.Logit, "poisson": sm.Poisson, "multinomial": sm.MNLogit}
    groups = rng.integers(0, 25, 500)
    for family, peer in peers.items():
        ref = {"reference_class": 0} if family == "multinomial" else {}
        for cov_type in ("nonrobust", "HC0", "cluster"):
            clustered = {"groups": groups} if cov_type == "cluster" else {}
            fit = fastmle.fit_mle(X, ys[family], family, cov_type=cov_type, backend=backend, **ref, **clustered)
            theirs = peer(ys[family], Xc).fit(disp=0, cov_type=cov_type,
                                              **({"cov_kwds": clustered} if clustered else {}))
            for at in ("overall", "mean"):
                got, want = fit.get_margeff(X, at, 0.1), theirs.get_margeff(at=at)
                assert got.margeff.shape == want.margeff.shape == ((3, 3) if family == "multinomial" else (3,))
                assert got.output_names == (["y=0", "y=1", "y=2"] if family == "multinomial" else None)
                table = got.summary()
                assert f"{got.margeff.flat[-1]:.4g}" in table and (at == "mean") == ("at the mean" in table)
                np.testing.assert_allclose(got.margeff, want.margeff, rtol=1e-8, err_msg=f"{family} {at}")
                np.testing.assert_allclose(got.margeff_se, want.margeff_se, rtol=1e-8, err_msg=f"{family} {at}")
                np.testing.assert_allclose(got.margeff_cov, want.margeff_cov, rtol=1e-7, atol=1e-14)
                np.testing.assert_allclose(got.pvalues, want.pvalues, rtol=1e-6, atol=1e-14)
                lo_hi = want.conf_int(0.1)
                np.testing.assert_allclose(np.stack([got.conf_int_lower, got.conf_int_upper], -1).reshape(-1, 2),
                                           lo_hi.reshape(-1, 2) if family != "multinomial" else
                                           np.stack([lo_hi[:, 0].reshape(3, 3, order="F"),
                                                     lo_hi[:, 1].reshape(3, 3, order="F")], -1).reshape(-1, 2),
                                           rtol=1e-8)
    # X with statsmodels' constant and no fitted intercept: no effect for the constant, as statsmodels
    front = sm.add_constant(X)
    for family, peer in peers.items():
        ref = {"reference_class": 0} if family == "multinomial" else {}
        fit = fastmle.fit_mle(front, ys[family], family, fit_intercept=False, backend=backend, **ref)
        got, want = fit.get_margeff(front), peer(ys[family], front).fit(disp=0).get_margeff()
        assert fit.constant_columns == [0] and got.margeff.shape == want.margeff.shape
        assert got.names == ["x1", "x2", "x3"] and all(name in got.summary() for name in got.names)
        np.testing.assert_allclose(got.margeff_se, want.margeff_se, rtol=1e-8, err_msg=family)
    # gaussian: the coefficients themselves
    fit = fastmle.fit_mle(X, ys["gaussian"], "gaussian", backend=backend)
    me = fit.get_margeff(X)
    np.testing.assert_allclose(me.margeff, fit.coef, rtol=1e-14)
    np.testing.assert_allclose(me.margeff_se, fit.bse[:-1], rtol=1e-12)


def _perturbed_margeff(fit, X, at, h=1e-6, **kwargs):
    """The marginal effects' Jacobian in fit.params.ravel(order="F") by central differences."""
    import copy

    theta = fit.params.ravel(order="F")
    columns = []
    for k in range(theta.size):
        moved = []
        for sign in (1.0, -1.0):
            other = copy.copy(fit)
            step = theta.copy()
            step[k] += sign * h
            other.params = step.reshape(fit.params.shape, order="F")
            moved.append(other.get_margeff(X, at, **kwargs).margeff.ravel(order="F"))
        columns.append((moved[0] - moved[1]) / (2 * h))
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_fit_mle_marginal_effects_exact_jacobian(rng, backend):
    # where statsmodels has no counterpart: the symmetric softmax, no
    # intercept, an exposure, weights, linear predictors far out; the
    # covariance J C J^T with J by central differences, the effects by
    # differences of predict in x
    X, ys = _robust_data(rng, n=300)
    w = rng.integers(0, 3, 300) * 1.0
    t = rng.uniform(0.5, 5.0, 300)
    cases = (("multinomial", {"alpha": 1.0}, {}), ("multinomial", {"reference_class": 2, "fit_intercept": False}, {}),
             ("poisson", {"exposure": t}, {"exposure": t}), ("binomial", {"sample_weight": w}, {"sample_weight": w}))
    for family, fit_kw, me_kw in cases:
        fit = fastmle.fit_mle(X, ys[family], family, backend=backend, **fit_kw)
        for at in ("overall", "mean"):
            got = fit.get_margeff(X, at, **me_kw)
            J = _perturbed_margeff(fit, X, at, **me_kw)
            np.testing.assert_allclose(got.margeff_cov, J @ fit.cov_params() @ J.T, rtol=1e-6, atol=1e-12,
                                       err_msg=f"{family} {fit_kw} {at}")
        # the average effect is the weighted mean of d predict / d x_j
        weights = me_kw.get("sample_weight", np.ones(300))
        h = 1e-6
        for j in range(3):
            up, down = X.copy(), X.copy()
            up[:, j] += h
            down[:, j] -= h
            slope = (fit.predict(up, exposure=me_kw.get("exposure")) -
                     fit.predict(down, exposure=me_kw.get("exposure"))) / (2 * h)
            want = weights @ slope / weights.sum()
            np.testing.assert_allclose(fit.get_margeff(X, **me_kw).margeff[j], want, rtol=1e-6, atol=1e-10)
    # integer weights are repeated rows
    fit = fastmle.fit_mle(X, ys["binomial"], "binomial", backend=backend)
    repeated = np.repeat(X, w.astype(int), axis=0)
    for at in ("overall", "mean"):
        np.testing.assert_allclose(fit.get_margeff(X, at, sample_weight=w).margeff_se,
                                   fit.get_margeff(repeated, at).margeff_se, rtol=1e-12)
    # weights of 1e308 (their sum overflows) are weights
    huge = fit.get_margeff(X, sample_weight=np.full(300, 1e308))
    np.testing.assert_allclose(huge.margeff, fit.get_margeff(X).margeff, rtol=1e-13)
    # standard errors of 1e-174 and 1e157, whose variances are outside the float range (they had been 0 and
    # inf): the effect's slope times the standard error of the same row's scale-free Jacobian
    for family, eta, sign in (("binomial", 400.0, -1.0), ("poisson", 360.0, 1.0)):
        extreme = fastmle.fit_mle(X, ys[family], family, backend=backend)
        row = X[:1] * (eta - extreme.intercept[0]) / (X[0] @ extreme.coef)
        J0 = np.c_[np.eye(3), np.zeros(3)] + sign * np.outer(extreme.coef, np.r_[row[0], 1.0])
        slope = math.exp(-eta) if family == "binomial" else math.exp(eta)
        want = slope * np.sqrt(np.diag(J0 @ extreme.cov_params() @ J0.T))
        np.testing.assert_allclose(extreme.get_margeff(row).margeff_se, want, rtol=1e-9, err_msg=family)
    # multinomial far out (a gap of 50 or 200 between the linear predictors): the effects to their last
    # digits against 50-digit arithmetic (from beta_k - beta_l; beta_k - sum_l p_l beta_l had lost 2e-6 at
    # 200), symmetric softmax
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    soft = fastmle.fit_mle(X, ys["multinomial"], "multinomial", alpha=1.0, backend=backend)
    coef, b = soft.coef, soft.intercept
    for gap in (50.0, 200.0):
        row = X[:1] * gap / np.abs(X[:1] @ coef + b).max()
        beta = [[mpmath.mpf(float(v)) for v in column] for column in coef.T]  # per class
        eta = [mpmath.fsum(mpmath.mpf(float(x)) * c for x, c in zip(row[0], beta[k])) + mpmath.mpf(float(b[k]))
               for k in range(3)]
        p = [mpmath.exp(e) / mpmath.fsum(mpmath.exp(v) for v in eta) for e in eta]
        exact = [[float(p[k] * mpmath.fsum(p[m] * (beta[k][j] - beta[m][j]) for m in range(3))) for k in range(3)]
                 for j in range(3)]
        np.testing.assert_allclose(soft.get_margeff(row).margeff, exact, rtol=1e-12, err_msg=f"gap {gap}")
    # far out (eta near 40): p (1 - p) and its derivative from eta, not from the rounded p
    far = X * 40.0 / np.abs(X @ fit.coef + fit.intercept[0])[:, None]
    got = fit.get_margeff(far[:5])
    J = _perturbed_margeff(fit, far[:5], "overall", h=1e-5)
    np.testing.assert_allclose(got.margeff_cov, J @ fit.cov_params() @ J.T, rtol=1e-5)
    assert (got.margeff_se > 0).all()


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_fit_mle_marginal_effects_of_dummies(rng, backend, monkeypatch):
    # dummy=True: the 0 -> 1 change of columns holding 0 and 1 only, as statsmodels' Logit and Poisson
    # get_margeff(dummy=True); multinomial (statsmodels' MNLogit raises there) against predict's
    # differences and central differences of the effects in the parameters
    sm = pytest.importorskip("statsmodels.api")
    n = 400
    X = np.c_[rng.standard_normal(n), rng.integers(0, 2, n), rng.standard_normal(n), rng.integers(0, 2, n)] * 1.0
    Xc = sm.add_constant(X, prepend=False)
    ys = {"binomial": (X @ [0.8, 1.0, -0.5, -0.7] + rng.logistic(size=n) > 0).astype(int),
          "poisson": rng.poisson(np.exp(X @ [0.3, 0.5, -0.2, 0.2])),
          "multinomial": np.argmax(X @ rng.standard_normal((4, 3)) + rng.gumbel(size=(n, 3)), axis=1)}
    for family, peer in (("binomial", sm.Logit), ("poisson", sm.Poisson)):
        fit, theirs = fastmle.fit_mle(X, ys[family], family, backend=backend), peer(ys[family], Xc).fit(disp=0)
        for at in ("overall", "mean"):
            got, want = fit.get_margeff(X, at, dummy=True), theirs.get_margeff(at=at, dummy=True)
            assert got.discrete == ["x1", "x3"] and "discrete change 0 -> 1 for x1, x3" in got.summary()
            np.testing.assert_allclose(got.margeff, want.margeff, rtol=1e-9, err_msg=f"{family} {at}")
            np.testing.assert_allclose(got.margeff_se, want.margeff_se, rtol=1e-8, err_msg=f"{family} {at}")
    w = rng.integers(0, 3, n) * 1.0
    for options in ({"reference_class": 1}, {"alpha": 1.0}):
        fit = fastmle.fit_mle(X, ys["multinomial"], "multinomial", backend=backend, **options)
        got = fit.get_margeff(X, dummy=True, sample_weight=w)
        for j in (1, 3):
            one, zero = X.copy(), X.copy()
            one[:, j], zero[:, j] = 1.0, 0.0
            np.testing.assert_allclose(got.margeff[j], w @ (fit.predict(one) - fit.predict(zero)) / w.sum(),
                                       rtol=1e-12)
        for at in ("overall", "mean"):
            got = fit.get_margeff(X, at, dummy=True, sample_weight=w)
            J = _perturbed_margeff(fit, X, at, dummy=True, sample_weight=w)
            np.testing.assert_allclose(got.margeff_cov, J @ fit.cov_params() @ J.T, rtol=1e-6, atol=1e-11,
                                       err_msg=f"{options} {at}")  # (elements of 1e-7 beside 1e-3: 1e-13 off)
    # blocks of rows: the same sums (64 elements per temporary: blocks of 6 or 7 rows here)
    whole = fit.get_margeff(X, dummy=True, sample_weight=w)
    monkeypatch.setattr(fastmle.mle, "MARGEFF_BLOCK", 64)
    blocked = fit.get_margeff(X, dummy=True, sample_weight=w)
    np.testing.assert_allclose(blocked.margeff, whole.margeff, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(blocked.margeff_cov, whole.margeff_cov, rtol=1e-10, atol=1e-16)
    monkeypatch.undo()
    gaussian = fastmle.fit_mle(X, X @ [1.0, 2.0, 3.0, 4.0] + rng.standard_normal(n), "gaussian", backend=backend)
    np.testing.assert_allclose(gaussian.get_margeff(X, dummy=True).margeff, gaussian.coef, rtol=1e-12)
    assert fit.get_margeff(X).discrete == []
    # X's constant column (fit_intercept=False) is no dummy, even where the rows given hold 0 in it
    ones = np.c_[np.ones(n), X]
    constant = fastmle.fit_mle(ones, ys["binomial"], "binomial", fit_intercept=False, backend=backend)
    ones[:5, 0] = 0.0
    got = constant.get_margeff(ones, dummy=True)
    assert got.names == ["x1", "x2", "x3", "x4"] and got.discrete == ["x2", "x4"]
    with pytest.raises(TypeError, match="dummy must be True or False"):
        fit.get_margeff(X, dummy="yes")


def test_fit_mle_marginal_effects_refusals(rng):
    X, ys = _robust_data(rng, n=100)
    fit = fastmle.fit_mle(X, ys["binomial"], "binomial")
    for call, error, message in (
            (lambda: fit.get_margeff(X, "median"), ValueError, "at must be 'overall'"),
            (lambda: fit.get_margeff(X, np.array(["mean"])), ValueError, "at must be 'overall'"),
            (lambda: fit.get_margeff(X[:, :2]), ValueError, "X has 2 features"),
            (lambda: fit.get_margeff(X[:, 0]), ValueError, "X must be 2-D"),
            (lambda: fit.get_margeff(X[:0]), ValueError, "at least one row"),
            (lambda: fit.get_margeff(X, sample_weight=-np.ones(100)), ValueError, "sample_weight"),
            (lambda: fit.get_margeff(X, sample_weight=np.ones(99)), ValueError, r"shape \(100,\)"),
            (lambda: fit.get_margeff(X, alpha=2.0), ValueError, "must be a number in"),
            (lambda: fit.get_margeff(X, offset=np.ones(3)), ValueError, "offset"),
            (lambda: fit.get_margeff(X, exposure=np.ones(100)), ValueError, "exposure"),
            (lambda: fit.get_margeff(np.where(X > 2, np.nan, X)), ValueError, "X contains NaN or infinity"),
            (lambda: fit.get_margeff(np.where(X > 2, np.inf, X)), ValueError, "X contains NaN or infinity")):
        with pytest.raises(error, match=message):
            call()
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="get_margeff takes"):
        fit.get_margeff(sparse.csr_matrix(X))
    # use_t: still the normal's p-values and intervals, as statsmodels' margins
    t_fit = fastmle.fit_mle(X, ys["binomial"], "binomial", use_t=True)
    me, normal = t_fit.get_margeff(X), fit.get_margeff(X)
    assert (me.pvalues == normal.pvalues).all() and (me.conf_int_upper == normal.conf_int_upper).all()


def test_chi2_sf_matches_scipy():
    # the closed form of Q(df / 2, x / 2) behind llr_pvalue, lr_test and wald_test
    from fastmle.mle import chi2_sf

    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 7, 10, 11, 50, 51, 200, 1001):
        for x in (1e-300, 1e-8, 0.01, 0.5, 1.0, 2.5, 10.0, 37.3, 100.0, 700.0, 1500.0, 5000.0):
            want = stats.chi2.sf(x, df)
            assert chi2_sf(x, df) == pytest.approx(want, rel=1e-11, abs=1e-300), (df, x)
        assert (chi2_sf(0.0, df), chi2_sf(-1.0, df), chi2_sf(math.inf, df)) == (1.0, 1.0, 0.0)
        assert math.isnan(chi2_sf(math.nan, df))
        assert chi2_sf(5e-324, df) == 1.0  # (x / 2 underflows: log(0) had raised)
    assert math.isnan(chi2_sf(1.0, 0))


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_likelihood_ratio_and_wald_tests_match_statsmodels(rng, backend):
    sm = pytest.importorskip("statsmodels.api")
    stats = pytest.importorskip("scipy.stats")
    X, ys = _robust_data(rng, n=600)
    Xc = sm.add_constant(X, prepend=False)
    peers = {"binomial": lambda y, exog=Xc, **kw: sm.Logit(y, exog).fit(disp=0, **kw),
             "poisson": lambda y, exog=Xc, **kw: sm.Poisson(y, exog).fit(disp=0, **kw),
             "multinomial": lambda y, exog=Xc, **kw: sm.MNLogit(y, exog).fit(disp=0, **kw)}
    for family, peer in peers.items():
        y = ys[family]
        ref = {"reference_class": 0} if family == "multinomial" else {}
        for cov_type in ("nonrobust", "HC0"):
            fit = fastmle.fit_mle(X, y, family, cov_type=cov_type, backend=backend, **ref)
            theirs = peer(y, cov_type=cov_type)
            assert fit.llr == pytest.approx(theirs.llr, rel=1e-8)
            assert fit.llr_pvalue == pytest.approx(theirs.llr_pvalue, rel=1e-6)
            # terms x1 and x2 (every class's, for multinomial); then one contrast, with a value
            P = fit.k_params
            rows = [k * 4 + j for k in range(P // 4) for j in (1, 2)]
            for restriction, value, R in ((["x1", "x2"], None, np.eye(P)[rows]),
                                          (np.eye(P)[0] - np.eye(P)[1], 0.5, np.eye(P)[[0]] - np.eye(P)[[1]])):
                got = fit.wald_test(restriction, value)
                want = theirs.wald_test((R, np.full(len(R), value or 0.0)), scalar=True, use_f=False)
                assert got.df == len(R)
                assert got.statistic == pytest.approx(want.statistic, rel=1e-7), (family, cov_type)
                assert got.pvalue == pytest.approx(want.pvalue, rel=1e-6)
        # nested fits: the likelihood-ratio test of dropping x2
        full = fastmle.fit_mle(X, y, family, backend=backend, **ref)
        test = full.lr_test(fastmle.fit_mle(X[:, :2], y, family, backend=backend, **ref))
        statistic = 2 * (peer(y).llf - peer(y, Xc[:, [0, 1, 3]]).llf)
        assert test.df == P // 4 and test.statistic == pytest.approx(statistic, rel=1e-7)
        assert test.pvalue == pytest.approx(stats.chi2.sf(statistic, P // 4), rel=1e-6)
    y = ys["gaussian"]
    full, small = fastmle.fit_mle(X, y, "gaussian"), fastmle.fit_mle(X[:, :1], y, "gaussian")
    ols, ols_small = sm.OLS(y, Xc).fit(), sm.OLS(y, Xc[:, [0, 3]]).fit()
    statistic, pvalue, df = ols.compare_lr_test(ols_small)
    assert full.lr_test(small) == pytest.approx((statistic, df, pvalue), rel=1e-8)
    assert "LLR p-value" in full.summary()
    # OLS's Wald test with OLS's sigma^2 (scale="X2"; the default is sigma^2's MLE)
    want = ols.wald_test(np.eye(4)[[1, 2]], scalar=True, use_f=False)
    got = fastmle.fit_mle(X, y, "gaussian", scale="X2", backend=backend).wald_test(["x1", "x2"])
    assert (got.statistic, got.pvalue) == (pytest.approx(want.statistic, rel=1e-9), pytest.approx(want.pvalue))
    # the symmetric softmax (alpha > 0, no reference class): a term's 3 coefficients sum to zero over the
    # classes, 2 degrees of freedom, the test of the same term with a reference class (it had been NaN or df 3)
    for seed in range(4):
        Xs = np.random.default_rng(seed).standard_normal((300, 3))
        ym = np.random.default_rng(seed + 10).integers(0, 3, 300)
        symmetric = fastmle.fit_mle(Xs, ym, "multinomial", alpha=1e-3, backend=backend).wald_test(["x0"])
        baseline = fastmle.fit_mle(Xs, ym, "multinomial", alpha=1e-3, reference_class=0,
                                   backend=backend).wald_test(["x0"])
        assert symmetric.df == baseline.df == 2
        assert symmetric.statistic == pytest.approx(baseline.statistic, rel=1e-3)
    # three clusters: a covariance of rank 2, the Moore-Penrose inverse as statsmodels' (80.5 had come
    # from another generalized inverse)
    yc, groups = ys["poisson"], rng.integers(0, 3, 600)
    cluster = fastmle.fit_mle(X, yc, "poisson", cov_type="cluster", groups=groups, backend=backend)
    theirs = sm.GLM(yc, Xc, family=sm.families.Poisson()).fit(cov_type="cluster", cov_kwds={"groups": groups})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (statsmodels says the rank is 2)
        want = theirs.wald_test(np.eye(4)[:3], scalar=True, use_f=False)
    got = cluster.wald_test(["x0", "x1", "x2"])
    assert got.df == 2 and got.statistic == pytest.approx(want.statistic, rel=1e-6)
    # columns on scales 1e-5 and 1e5: still rank 2, the inverse over its two largest directions (pinv's own
    # cutoff, by the raw eigenvalues, had kept one: 11.63 against 18.57)
    scaled = X * [1e-5, 1.0, 1e5]
    fit = fastmle.fit_mle(scaled, yc, "poisson", cov_type="cluster", groups=groups, backend=backend)
    got = fit.wald_test(["x0", "x1", "x2"])
    values, vectors = np.linalg.eigh(fit.cov_params()[:3, :3])
    z = vectors[:, 1:].T @ fit.params[:3]
    assert got.df == 2 and got.statistic == pytest.approx(np.sum(z * z / values[1:]), rel=1e-6)


def test_fit_mle_hypothesis_test_refusals(rng):
    X, ys = _robust_data(rng, n=200)
    fit = fastmle.fit_mle(X, ys["binomial"], "binomial")
    for restriction, message in ((["x9"], r"unknown terms \['x9'\]"), (np.ones(3), "matrix with 4 columns"),
                                 (np.ones((0, 4)), "matrix with 4 columns"),
                                 (np.array([[1.0, 0, 0, 0], [2.0, 0, 0, 0]]), "linearly dependent"),
                                 (np.array([np.nan, 0, 0, 0]), "must be finite")):
        with pytest.raises(ValueError, match=message):
            fit.wald_test(restriction)
    assert fit.wald_test("x0") == fit.wald_test(["x0"]) == fit.wald_test(np.eye(4)[0])
    with pytest.raises(ValueError, match=r"value must be a number or have shape \(2,\)"):
        fit.wald_test(["x0", "x1"], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="term names or a matrix, got a mix"):
        fit.wald_test(["x0", 1])
    with pytest.raises(ValueError, match="must be a number in"):
        fit.conf_int("0.1")
    others = ((fastmle.fit_mle(X, ys["poisson"], "poisson"), "same family and samples"),
              (fastmle.fit_mle(X[:100], ys["binomial"][:100], "binomial"), "same family and samples"),
              (fit, "fewer parameters"),
              (fastmle.fit_mle(X[:, :1], ys["binomial"], "binomial", alpha=1.0), "alpha must be 0"))
    for other, message in others:
        with pytest.raises(ValueError, match=message):
            fit.lr_test(other)
    with pytest.raises(TypeError, match="must be an MLEResult"):
        fit.lr_test(fit.llf)
    assert math.isnan(fastmle.fit_mle(X, ys["binomial"], "binomial", alpha=1.0).llr_pvalue)
    # without an intercept the intercept-only model is not nested: no test (llr was -261, p-value 1)
    y_shifted = X @ [1.0, 0.0, 0.1] + rng.standard_normal(200) + 2.0
    no_intercept = fastmle.fit_mle(X, y_shifted, "gaussian", fit_intercept=False)
    assert no_intercept.llr < 0 and math.isnan(no_intercept.llr_pvalue) and no_intercept.k_constant == 0


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_constant_column_is_an_intercept(rng, backend):
    # statsmodels' habit, X with add_constant and no fitted intercept: the
    # likelihood-ratio test and df_model as with the intercept (llr_pvalue
    # had been NaN), as statsmodels' k_constant
    sm = pytest.importorskip("statsmodels.api")
    X, ys = _robust_data(rng, n=300)
    Xc = sm.add_constant(X, prepend=False)
    for family, peer in (("binomial", sm.Logit), ("poisson", sm.Poisson), ("gaussian", sm.OLS)):
        y = ys[family]
        fit = fastmle.fit_mle(Xc, y, family, fit_intercept=False, backend=backend)
        theirs = peer(y, Xc).fit(**({} if family == "gaussian" else {"disp": 0}))
        assert fit.k_constant == 1 and fit.df_model == theirs.df_model == 3
        assert fit.llr == pytest.approx(fastmle.fit_mle(X, y, family, backend=backend).llr, rel=1e-9)
        if family != "gaussian":
            assert fit.llr_pvalue == pytest.approx(theirs.llr_pvalue, rel=1e-6)
    ym = ys["multinomial"]
    fit = fastmle.fit_mle(Xc * 2.0, ym, "multinomial", fit_intercept=False, reference_class=0, backend=backend)
    assert fit.llr_pvalue == pytest.approx(sm.MNLogit(ym, Xc).fit(disp=0).llr_pvalue, rel=1e-6)
    # constant over the rows of positive weight only; a column of zeros is none
    w = np.ones(300)
    w[0] = 0.0
    Xw = Xc.copy()
    Xw[0, 3] = 5.0
    y = ys["binomial"]
    assert fastmle.fit_mle(Xw, y, "binomial", fit_intercept=False, sample_weight=w, backend=backend).k_constant == 1
    assert fastmle.fit_mle(Xw, y, "binomial", fit_intercept=False, backend=backend).k_constant == 0
    zero = np.c_[X, np.zeros(300)]
    with pytest.raises(fastmle.SingularFisherError):  # (all-zero: no information)
        fastmle.fit_mle(zero, y, "binomial", fit_intercept=False, backend=backend)
    assert fastmle.fit_mle(X, y, "binomial", fit_intercept=False, backend=backend).k_constant == 0
    # an implicit constant: a full set of dummies (rows sorted by category, one category of 5 rows that the
    # sample of rows may miss), as statsmodels' k_constant; a row of zeros of weight 0 does not count
    category = np.sort(np.r_[rng.integers(0, 3, 295), np.full(5, 3)])
    dummies = np.c_[X[:, :2], np.eye(4)[category]]
    for family, peer in (("gaussian", sm.OLS), ("poisson", sm.Poisson)):
        y = ys[family]
        fit = fastmle.fit_mle(dummies, y, family, fit_intercept=False, backend=backend)
        theirs = peer(y, dummies).fit(**({} if family == "gaussian" else {"disp": 0}))
        assert fit.k_constant == 1 and fit.constant_columns == [] and fit.df_model == theirs.df_model == 5
        if family == "poisson":
            assert fit.llr_pvalue == pytest.approx(theirs.llr_pvalue, rel=1e-6)
        assert fastmle.fit_mle(dummies[:, :5], y, family, fit_intercept=False, backend=backend).k_constant == 0
    # beside a column of 1e14 (lstsq's cutoff on the raw sample had hidden the dummies)
    huge = np.c_[dummies[:, 2:], 1e14 * X[:, 0]]
    assert fastmle.fit_mle(huge, ys["poisson"], "poisson", fit_intercept=False, backend=backend).k_constant == 1
    w = np.ones(300)
    w[10] = 0.0
    holed = dummies.copy()
    holed[10, 2:] = 0.0
    assert fastmle.fit_mle(holed, ys["poisson"], "poisson", fit_intercept=False, sample_weight=w,
                           backend=backend).k_constant == 1
    assert fastmle.fit_mle(holed, ys["poisson"], "poisson", fit_intercept=False, backend=backend).k_constant == 0


def test_constant_columns_reads_every_row_of_a_candidate():
    # a column equal to its first value over the probe rows is read to the last row, block by block
    from fastmle.mle import ConstantColumns

    X = np.c_[np.arange(10000.0), np.full(10000, 2.0), np.zeros(10000), np.full(10000, -1.0)]
    assert ConstantColumns(X).values[1] == 2.0 and ConstantColumns(X).indices() == [1, 3]
    for row in (1, 63, 64, 4159, 4160, 9999):  # the probe's last row, each block's first and last
        varied = X.copy()
        varied[row, [1, 3]] = 2.5
        assert not ConstantColumns(varied).indices(), row
    assert not ConstantColumns(X[:, [0, 2]]).indices()  # zeros are no intercept
    parts = ConstantColumns(X[:5000]) + ConstantColumns(X[:0]) + ConstantColumns(X[5000:])
    np.testing.assert_array_equal(parts.values, [np.nan, 2.0, np.nan, -1.0])
    other = X[5000:].copy()
    other[:, 1] = 3.0
    assert np.isnan((ConstantColumns(X[:5000]) + ConstantColumns(other)).values[1])
    assert not ConstantColumns(X[:0]).indices()


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_use_t_matches_statsmodels(rng, backend):
    # Student's t for the coefficients and intervals, F for the Wald tests,
    # df_resid degrees of freedom (G - 1 with clusters), as statsmodels'
    # use_t=True: OLS (its default), robust too, and a quasi-Poisson GLM
    sm = pytest.importorskip("statsmodels.api")
    stats = pytest.importorskip("scipy.stats")
    X, ys = _robust_data(rng, n=40)  # few samples: t and the normal differ by 2-10%
    Xc = sm.add_constant(X, prepend=False)
    y, groups = ys["gaussian"], rng.integers(0, 6, 40)
    R = np.eye(4)[[1, 2]]
    for cov_type, options in (("nonrobust", {"scale": "X2"}), ("HC3", {}), ("cluster", {"groups": groups})):
        fit = fastmle.fit_mle(X, y, "gaussian", cov_type=cov_type, use_t=True, backend=backend, **options)
        cov_kwds = {"cov_kwds": {"groups": groups}} if cov_type == "cluster" else {}
        ols = sm.OLS(y, Xc).fit(cov_type=cov_type, use_t=True, **cov_kwds)
        np.testing.assert_allclose(fit.tvalues, ols.tvalues, rtol=1e-9)
        np.testing.assert_allclose(fit.pvalues, ols.pvalues, rtol=1e-9, err_msg=cov_type)
        np.testing.assert_allclose(fit.conf_int(0.1), ols.conf_int(0.1), rtol=1e-9, err_msg=cov_type)
        assert fit.df_resid_inference == (5 if cov_type == "cluster" else 36)
        got, want = fit.wald_test(["x1", "x2"]), ols.f_test(R)
        assert (got.df_num, got.df_denom) == (want.df_num, want.df_denom)
        assert got.statistic == pytest.approx(float(want.fvalue), rel=1e-9)
        assert got.pvalue == pytest.approx(float(want.pvalue), rel=1e-9)
        assert fit.wald_test(["x1", "x2"], use_f=False) == fastmle.fit_mle(
            X, y, "gaussian", cov_type=cov_type, backend=backend, **options).wald_test(["x1", "x2"])
        pred = fit.get_prediction(X[:5], 0.1)
        if cov_type != "cluster":
            want = ols.get_prediction(Xc[:5]).summary_frame(0.1)
            np.testing.assert_allclose(pred.mean_ci_lower, want["mean_ci_lower"], rtol=1e-9)
        else:  # G - 1, as conf_int (statsmodels' get_prediction takes df_resid, 36, there)
            q = stats.t.ppf(0.95, 5)
            np.testing.assert_allclose(pred.mean_ci_upper, pred.mean + q * pred.mean_se, rtol=1e-12)
        assert "P>|t|" in fit.summary() and "t degrees of freedom" in fit.summary()
    # quasi-Poisson with frequency weights: df_resid is their sum minus k
    counts, w = ys["poisson"], rng.integers(1, 4, 40) * 1.0
    fit = fastmle.fit_mle(X, counts, "poisson", sample_weight=w, scale="X2", use_t=True, backend=backend)
    glm = sm.GLM(counts, Xc, family=sm.families.Poisson(), freq_weights=w).fit(scale="X2", use_t=True)
    np.testing.assert_allclose(fit.pvalues, glm.pvalues, rtol=1e-9)
    np.testing.assert_allclose(fit.conf_int(), glm.conf_int(), rtol=1e-9)
    want = glm.wald_test(R, scalar=True, use_f=True)
    assert fit.wald_test(["x1", "x2"]).pvalue == pytest.approx(float(want.pvalue), rel=1e-9)
    want = glm.get_prediction(Xc[:5]).summary_frame(0.05)
    np.testing.assert_allclose(fit.get_prediction(X[:5]).mean_ci_upper, want["mean_ci_upper"], rtol=1e-9)
    # the chi-square form on request, and F from a fit without use_t
    normal = fastmle.fit_mle(X, counts, "poisson", sample_weight=w, scale="X2", backend=backend)
    assert fit.wald_test(["x1", "x2"], use_f=False) == normal.wald_test(["x1", "x2"])
    assert normal.wald_test(["x1", "x2"], use_f=True) == fit.wald_test(["x1", "x2"])
    assert "P>|z|" in normal.summary() and "t degrees" not in normal.summary()


def test_fit_mle_use_t_refusals_and_without_scipy(rng, monkeypatch):
    X, ys = _robust_data(rng, n=60)
    for value in (1, "yes", None):
        with pytest.raises(TypeError, match="use_t must be True or False"):
            fastmle.fit_mle(X, ys["poisson"], "poisson", use_t=value)
    fit = fastmle.fit_mle(X, ys["poisson"], "poisson", use_t=True)
    with pytest.raises(TypeError, match="use_f must be True or False"):
        fit.wald_test(["x0"], use_f="no")
    # a total weight of k: no degrees of freedom, NaN p-values and intervals, finite standard errors
    with pytest.warns(RuntimeWarning, match=r"use_t: no degrees of freedom are left .*\(0: nobs, the total weight"):
        tiny = fastmle.fit_mle(X[:5], ys["gaussian"][:5], "gaussian", use_t=True, sample_weight=[1, 1, 1, 0.5, 0.5])
    assert tiny.df_resid_inference == 0 and np.isfinite(tiny.bse).all()
    assert np.isnan(tiny.pvalues).all() and np.isnan(tiny.conf_int()).all()
    assert math.isnan(tiny.wald_test(["x0"]).pvalue)
    # an exact fit: no test, F as chi-square (F had said p = 0)
    with pytest.warns(RuntimeWarning, match="the gaussian fit is exact"):
        exact = fastmle.fit_mle(X[:, :1], 2 * X[:, 0] + 1, "gaussian", use_t=True)
    assert math.isnan(exact.wald_test(["x0"]).pvalue) and math.isnan(exact.wald_test(["x0"], use_f=False).pvalue)
    # scipy is optional: use_t says it needs it, before fitting
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    calls = []
    monkeypatch.setattr(fastmle.mle._Problem, "_loss_grad", lambda *a: calls.append(a))
    with pytest.raises(ImportError, match=r"use_t=True needs scipy .*fastmle\[stats\]"):
        fastmle.fit_mle(X, ys["poisson"], "poisson", use_t=True)
    with pytest.raises(ImportError, match=r"use_t=True needs scipy"):
        fit.pvalues
    assert calls == []


def _clustered_data(rng, n=600, G=30):
    groups = rng.integers(0, G, n)
    X = rng.standard_normal((n, 2))
    shared = rng.standard_normal(G)[groups]  # a cluster effect: samples of one cluster are correlated
    return X, groups, {
        "binomial": (X[:, 0] + shared + rng.logistic(size=n) > 0).astype(int),
        "poisson": rng.poisson(np.exp(0.3 * X[:, 0] + 0.5 * shared)),
        "gaussian": X @ [1.0, 2.0] + shared + rng.standard_normal(n),
        "multinomial": np.argmax(X @ rng.standard_normal((2, 3)) + shared[:, None] * [1.0, 0.0, -1.0]
                                 + rng.gumbel(size=(n, 3)), axis=1)}


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_cluster_robust_covariance_matches_statsmodels(rng, backend):
    sm = pytest.importorskip("statsmodels.api")
    X, groups, ys = _clustered_data(rng)
    Xc = sm.add_constant(X, prepend=False)
    kw = dict(cov_type="cluster", cov_kwds={"groups": groups})
    peers = {"binomial": lambda y: sm.Logit(y, Xc).fit(disp=0, **kw),
             "poisson": lambda y: sm.Poisson(y, Xc).fit(disp=0, **kw),
             "gaussian": lambda y: sm.OLS(y, Xc).fit(**kw),
             "multinomial": lambda y: sm.MNLogit(y, Xc).fit(disp=0, **kw)}
    names = np.array([f"school {g}" for g in range(30)])[groups]  # any sortable labels
    for family, y in ys.items():
        ref = {"reference_class": 0} if family == "multinomial" else {}
        fit = fastmle.fit_mle(X, y, family, cov_type="cluster", groups=names, backend=backend, **ref)
        np.testing.assert_allclose(fit.bse, np.asarray(peers[family](y).bse), rtol=1e-9, err_msg=family)
        assert fit.cov_type == "cluster"
        # the clusters matter here: wider than HC0's
        assert np.max(fit.bse / fastmle.fit_mle(X, y, family, cov_type="HC0", backend=backend, **ref).bse) > 1.2


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_cluster_robust_covariance_weights_and_blocks(rng, backend, monkeypatch):
    # integer weights are rows repeated (in their clusters), a cluster whose
    # rows all weigh 0 is not counted in G, and the scores' blocks (7 rows
    # here) cut through clusters
    from fastmle import mle

    X, groups, ys = _clustered_data(rng, n=300)
    w = rng.integers(0, 4, 300)
    w[groups == 3] = 0
    repeated = np.repeat(np.arange(300), w)
    monkeypatch.setattr(mle, "SCORE_BLOCK", 7 * 6)
    for family, y in ys.items():
        ref = {"reference_class": 2} if family == "multinomial" else {}
        got = fastmle.fit_mle(X, y, family, sample_weight=w, cov_type="cluster", groups=groups, backend=backend,
                              **ref)
        rows = fastmle.fit_mle(X[repeated], y[repeated], family, cov_type="cluster", groups=groups[repeated],
                               backend=backend, **ref)
        np.testing.assert_allclose(got.cov_params(), rows.cov_params(), rtol=1e-9, err_msg=family)


def test_fit_mle_cluster_robust_covariance_refusals(rng):
    X, groups, ys = _clustered_data(rng, n=100)
    y = ys["binomial"]
    for bad, message in ((dict(cov_type="cluster"), "cov_type='cluster' needs groups="),
                         (dict(groups=groups), "groups= is only for it"),
                         (dict(cov_type="cluster", groups=groups[:99]), r"groups must have shape \(100,\)"),
                         (dict(cov_type="cluster", groups=np.r_[groups[:99], np.nan]), "groups contains NaN"),
                         # among objects np.unique mis-sorts a NaN, and had split clusters silently
                         (dict(cov_type="cluster", groups=np.r_[groups[:99], np.nan].astype(object)),
                          "groups contains NaN"),
                         (dict(cov_type="cluster", groups=np.ones(100)), "at least 2 clusters .* got 1"),
                         (dict(cov_type="cluster", groups=groups, alpha=0.5), "needs alpha=0")):
        with pytest.raises(ValueError, match=message):
            fastmle.fit_mle(X, y, "binomial", **bad)
    # frequency weights summing to 1: no small-sample correction exists, and it says so
    with pytest.warns(RuntimeWarning, match="total weight 1 is not above the number of parameters 3"):
        tiny = fastmle.fit_mle(X, y, "binomial", sample_weight=np.full(100, 0.01), cov_type="cluster", groups=groups)
    assert np.isnan(tiny.bse).all()


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_poisson_group_of_zero_counts_is_separation_not_a_bare_linalg_error(backend):
    # a group whose counts are all 0: its mean runs to 0 and the information
    # about the group's contrast with it vanishes. For some draws the steps
    # stopped with F = [[32, 32], [32, 32]] (a Cholesky pivot of rounding's
    # size passed), and inv raised numpy's bare "Singular matrix"
    x = np.r_[np.zeros(10), np.ones(10)][:, None]
    for seed in (0, 2, 4):
        y = np.r_[np.zeros(10), np.random.default_rng(seed).poisson(3, 10)].astype(float)
        with pytest.raises(fastmle.PerfectSeparationError, match="10 of 20 samples fitted with mean within 1e-8"):
            fastmle.fit_mle(x, y, "poisson", backend=backend)


def test_fit_mle_robust_covariance_refusals(rng):
    X, ys = _robust_data(rng, n=100)
    with pytest.raises(ValueError, match="unknown cov_type 'HC4'; available: 'nonrobust', 'HC0', 'HC1', 'HC2'"):
        fastmle.fit_mle(X, ys["binomial"], "binomial", cov_type="HC4")
    with pytest.raises(ValueError, match="cov_type='HC0' .* needs alpha=0"):
        fastmle.fit_mle(X, ys["binomial"], "binomial", cov_type="HC0", alpha=1.0)
    with pytest.raises(ValueError, match="cov_type='HC3' needs each sample's leverage.* use 'HC0' or 'HC1'"):
        fastmle.fit_mle(X, ys["multinomial"], "multinomial", reference_class=0, cov_type="HC3")


def test_fit_mle_quasi_complete_separation_is_reported(rng):
    # six samples at x = 0 of both classes, the rest separated by the sign
    # of x: the coefficient runs off; once a report with converged=False
    # and standard errors of 1e21, now the documented error
    x = rng.standard_normal(200)
    x[:6] = 0
    y = (x > 0).astype(int)
    y[:6] = [0, 1, 0, 1, 0, 1]
    with pytest.raises(fastmle.PerfectSeparationError, match="quasi-complete separation"):
        fastmle.fit_mle(x[:, None], y, "binomial", backend="c")
    assert fastmle.fit_mle(x[:, None], y, "binomial", alpha=1.0).converged  # the penalized estimate exists


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
def test_fit_mle_poisson_zero_counts_on_a_range_of_a_feature_is_reported(rng, backend):
    # y = 0 wherever the binary feature x0 is 1: the MLE of x0's coefficient
    # is -inf. It had ended unconverged at -70 with a warning, or blamed
    # the conditioning; now the error says why, and alpha > 0 fits
    n = 300
    x0 = (rng.random(n) < 0.3) * 1.0
    x1 = rng.standard_normal(n)
    X = np.c_[x0, x1]
    y = rng.poisson(np.exp(0.5 + 0.3 * x1)) * (1 - x0)
    with pytest.raises(fastmle.PerfectSeparationError, match=r"\d+ of 300 samples fitted with mean within 1e-8 of 0"):
        fastmle.fit_mle(X, y, "poisson", backend=backend)
    assert fastmle.fit_mle(X, y, "poisson", alpha=1.0, backend=backend).converged


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
@pytest.mark.parametrize("family, leverage", [("binomial", 1e5), ("binomial", 1e3), ("poisson", -1e4)])
def test_fit_mle_converges_with_one_point_of_high_leverage(backend, family, leverage):
    # one sample far out dominates the first information matrix: its steps
    # were small, so the chord steps kept reusing that factor for 100
    # iterations and ended far from the MLE (llf -691.6 against -601.8),
    # or in a false PerfectSeparationError; the factor is now recomputed
    # when a chord step does not shrink
    rng = np.random.default_rng(16)
    x = rng.standard_normal(1000)
    if family == "binomial":
        y = (x + rng.logistic(size=1000) > 0).astype(int)
        y[0] = 1
    else:
        y = rng.poisson(np.exp(0.5 * x))
        y[0] = 0
    x[0] = leverage
    X = x[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fastmle.fit_mle(X, y, family, backend=backend)
    model = sm.Logit if family == "binomial" else sm.Poisson
    ref = model(y, _const_last(X)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    assert res.converged and res.n_iter < 30
    _check_against(res, ref.params, ref.bse, ref.llf, ref.llnull)


def test_fit_mle_cut_short_is_not_called_separation(rng):
    # strong effects put samples at probability 1e-8 of 0 or 1 within a few
    # iterations; a fit stopped there by max_iter had been reported as
    # quasi-complete separation, although the MLE exists
    X = rng.standard_normal((2000, 2))
    y = (X @ [8.0, -8.0] + rng.logistic(size=2000) > 0).astype(int)
    with pytest.warns(RuntimeWarning, match=r"did not converge in 5 iterations .* samples are fitted with probability"):
        res = fastmle.fit_mle(X, y, "binomial", max_iter=5)
    assert not res.converged
    assert fastmle.fit_mle(X, y, "binomial").converged
    # stronger still, 8 iterations left the information about the slope at
    # 1e-5 of the start's, which had been taken for separation; it converges in 16
    x = rng.standard_normal(5000)[:, None] * 3
    y = (30 * x[:, 0] + rng.logistic(size=5000) > 0).astype(int)
    for fit in (lambda: fastmle.fit_mle(x, y, "binomial", max_iter=8),
                lambda: fastmle.MLEClassifier("binomial", solver="fisher", max_epochs=8).fit(x, y)):
        with pytest.warns(Warning, match=r"did not converge in 8 iterations .*it converges in \d+ iterations"):
            fit()
    # separated data stopped as early still raise once the information has gone
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(fastmle.PerfectSeparationError, match=r"did not converge in 12 iterations \(nor in 100\).*"
                                                             "information in some direction of the parameters below"):
        fastmle.fit_mle(X, y, "binomial", max_iter=12)
    # separated away from x = 0, the information vanishes along a combination
    # of slope and intercept, which the diagonal did not show (a result with
    # standard errors of 6e6 came back)
    x = np.array([1.0, 2.0, 3.0, 3.0, 4.0, 5.0])[:, None]
    y = np.array([0, 0, 0, 1, 1, 1])
    for shift in (0.0, 3.0):
        with pytest.raises(fastmle.PerfectSeparationError, match="quasi-complete separation"):
            fastmle.fit_mle(x - shift, y, "binomial", max_iter=15)


@pytest.mark.parametrize("family", ["binomial", "multinomial"])
def test_fit_mle_penalized_fit_of_separated_data(rng, family):
    # with alpha > 0 the penalized estimate exists however separated the
    # data: a tiny alpha (1e-12) had raised PerfectSeparationError ("Set
    # alpha > 0"), its likelihood part being below the perfect-fit threshold
    X = rng.standard_normal((200, 2)) * 3
    y = (X[:, 0] > 0).astype(int) if family == "binomial" else np.digitize(X[:, 0], [-1.0, 1.0])
    for alpha in (1e-12, 1e-6):
        res = fastmle.fit_mle(X, y, family, alpha=alpha)
        assert res.converged and np.isfinite(res.params).all()
        # the gradient of the penalized objective vanishes at the estimate
        coef = res.params[:2].reshape(2, -1)
        probs = fastmle.glm_predict(X, coef, family, intercept=res.params[2])
        onehot = y[:, None] if family == "binomial" else (y[:, None] == np.arange(3))
        residual = probs.reshape(len(y), -1) - onehot
        assert np.abs(X.T @ residual + alpha * coef).max() < 1e-6 * len(y)


@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_fit_mle_a_failed_factorization_with_alpha_is_not_called_separation(rng, alpha):
    # the penalized estimate exists whatever the data: when the information
    # fails to factor with alpha > 0, the report is ill-conditioning
    from fastmle import mle

    X = rng.standard_normal((100, 2))
    y = (X[:, 0] > 0).astype(int)  # separated
    prob = mle._Problem(X, y, "binomial", True, None, alpha, None, "numpy")
    theta = np.array([[1e3, 0.0, 0.0]])
    error = mle.PerfectSeparationError if alpha == 0 else mle.SingularFisherError
    with pytest.raises(error) as info:
        mle._raise_singular(prob, theta, 7)
    assert ("separation" in str(info.value)) == (alpha == 0)
    if alpha:
        assert type(info.value) is mle.SingularFisherError and "set a larger alpha" in str(info.value)


def test_fit_mle_gaussian_with_as_many_parameters_as_observations(rng):
    # the residuals are rounding, sigma^2's estimate 1e-32: standard errors
    # of 1e-16 and p-values of 0 had claimed every coefficient infinitely
    # significant; statsmodels' OLS gives inf (RSS / 0 residual df)
    X, y = rng.standard_normal((4, 3)), rng.standard_normal(4)
    with pytest.warns(RuntimeWarning, match=r"gaussian fit is exact.*4 samples, 4 parameters.*undefined") as caught:
        res = fastmle.fit_mle(X, y, "gaussian")
    assert caught[0].filename == __file__
    assert np.isnan(res.bse).all() and np.isnan(res.pvalues).all() and res.df_resid == 0
    # 3 rows of positive weight for 3 parameters are as exact (zero-weight
    # rows had counted); so is a fit whose residuals are rounding
    w = np.r_[np.ones(3), np.zeros(7)]
    with pytest.warns(RuntimeWarning, match=r"3 samples, 3 parameters"):
        res = fastmle.fit_mle(rng.standard_normal((10, 2)), rng.standard_normal(10), "gaussian", sample_weight=w)
    assert np.isnan(res.bse).all()
    Xe = rng.standard_normal((10, 3))
    with pytest.warns(RuntimeWarning, match=r"gaussian fit is exact.*y a linear function of X"):
        fastmle.fit_mle(Xe, Xe @ [1.0, 2.0, 3.0] + 0.5, "gaussian")
    # frequency weights summing to 1 are no exact fit (the total weight had
    # been compared with the parameters' number)
    X, y = rng.standard_normal((50, 3)), rng.standard_normal(50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fastmle.fit_mle(X, y, "gaussian", sample_weight=np.full(50, 1 / 50))
    assert np.isfinite(res.bse).all()


def test_fit_mle_gaussian_of_a_large_mean(backend, rng):
    # the null model's variance was syy / W - mean^2, which cancels: for y
    # = 1e8 + noise its log-likelihood was off by 8 (and inf at 1e13); and
    # the exact-fit warning compared the residuals with y's size only, so y
    # = 1e13 + noise of 1 was called "exact" (the residuals are 1e-13 of y)
    X = rng.standard_normal((200, 2))
    noise = rng.standard_normal(200)
    w = rng.random(200) + 0.5
    for shift in (1e8, 1e13):
        y = shift + X @ [1.0, 2.0] + noise
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = fastmle.fit_mle(X, y, "gaussian", sample_weight=w, backend=backend)
        centred = y - np.average(y, weights=w)
        var = np.average(centred * centred, weights=w)  # the weighted null model's ML variance, two-pass
        assert res.llnull == pytest.approx(-0.5 * w.sum() * (np.log(2 * np.pi * var) + 1.0), rel=1e-9)
        assert _rel(res.params[:2], [1.0, 2.0]) < 0.1 and np.all(res.bse > 0.01)
    # an exact fit of a large mean is still one
    with pytest.warns(RuntimeWarning, match=r"gaussian fit is exact.*y a linear function of X"):
        fastmle.fit_mle(X, 1e8 + X @ [1.0, 2.0], "gaussian", backend=backend)


def test_fit_mle_warns_at_the_callers_line_when_not_converged(rng):
    X = rng.standard_normal((300, 2))
    y = rng.poisson(np.exp(X @ [0.5, -0.5]))
    with pytest.warns(RuntimeWarning, match=r"did not converge in 1 iteration \(") as caught:
        fastmle.fit_mle(X, y, "poisson", max_iter=1)
    assert caught[0].filename == __file__


def test_fit_mle_symmetric_softmax_covariance_is_the_constrained_one(rng):
    # alpha > 0 without a reference class: the likelihood does not see each
    # feature's coefficients, nor the intercepts, moved together in every
    # class; the penalties fix those sums at zero. The covariance is that
    # of the constrained estimate, Z (Z' H Z)^-1 Z', with no share of the
    # penalty (each sum has variance 0; the coefficients' had the prior's
    # 1 / (alpha K), every standard error alike)
    n, d, K = 600, 3, 3
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ rng.standard_normal((d, K)) + rng.gumbel(size=(n, K)), axis=1)
    res = fastmle.fit_mle(X, y, "multinomial", alpha=1.0, backend="c")
    H = fastmle.glm_fisher(X, res.coef, "multinomial", intercept=res.intercept)
    P = K * (d + 1)
    coefs = np.arange(P) % (d + 1) < d
    H[coefs, coefs] += 1.0  # the penalty's information
    sums = np.stack([(np.arange(P) % (d + 1) == j).astype(float) for j in range(d + 1)], axis=1)
    Z = np.linalg.svd(np.eye(P) - sums @ sums.T / K)[0][:, :P - d - 1]  # a basis of the sum-zero subspace
    want = Z @ np.linalg.inv(Z.T @ H @ Z) @ Z.T
    np.testing.assert_allclose(res.cov_params(), want, rtol=1e-8, atol=1e-12)
    assert np.abs(sums.T @ res.cov_params() @ sums).max() < 1e-12


def test_fit_mle_symmetric_softmax_standard_errors_are_the_reference_class_fits(rng):
    # with a vanishing penalty the symmetric estimate is the reference-class
    # MLE centred over the classes: its covariance is that linear map of the
    # reference fit's, for any small alpha (not the prior's 1 / sqrt(alpha K))
    n, d, K = 1000, 2, 3
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ rng.standard_normal((d, K)) + rng.gumbel(size=(n, K)), axis=1)
    ref = fastmle.fit_mle(X, y, "multinomial", reference_class=0)
    D = d + 1

    def centred(p):  # (D, K - 1) reference-class parameters -> (D, K) symmetric ones
        full = np.c_[np.zeros(D), p.reshape(K - 1, D).T]
        return full - full.mean(axis=1, keepdims=True)
    J = np.stack([centred(e).ravel() for e in np.eye(D * (K - 1))], axis=1)
    want = J @ np.asarray(ref.cov_params()) @ J.T
    for alpha in (1e-4, 1e-6, 1e-8, 1e-10):
        # converged as fast as the reference-class fit: the steps had
        # jittered along the sums over classes, which the likelihood does
        # not see, and at alpha = 1e-8 never met the tolerance in 100
        # iterations
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = fastmle.fit_mle(X, y, "multinomial", alpha=alpha)
        assert res.converged and res.n_iter <= ref.n_iter + 2
        assert np.abs(np.asarray(res.params).sum(axis=1)).max() < 1e-12  # the penalized optimum's sums
        np.testing.assert_allclose(res.params, centred(ref.params.T.ravel()), atol=max(1e4 * alpha, 1e-9))
        np.testing.assert_allclose(res.bse, np.sqrt(np.diag(want)).reshape(D, K), rtol=1e-3)


def test_small_consistencies(rng):
    # the regressor's standard errors take coef_'s and intercept_'s shapes
    # for a 2-D y too; a numpy decay is a decay; a penalized fit says so
    X = rng.standard_normal((200, 3))
    y = X @ [1.0, -1.0, 0.5] + rng.standard_normal(200)
    reg = fastmle.MLERegressor(solver="fisher").fit(X, y[:, None])
    assert reg.bse_.shape == reg.coef_.shape == (1, 3) and reg.intercept_bse_.shape == reg.intercept_.shape == (1,)
    S = rng.standard_normal((50, 4))
    a, b = fastmle.FisherAccumulator(4, decay=np.float32(0.5)), fastmle.FisherAccumulator(4, decay=0.5)
    a.update(S), b.update(S), a.update(S[:10]), b.update(S[:10])
    np.testing.assert_array_equal(a.fisher(), b.fisher())
    assert "(penalized maximum likelihood)" in fastmle.fit_mle(X, y, "gaussian", alpha=1.0).summary()
    assert "(maximum likelihood)" in fastmle.fit_mle(X, y, "gaussian").summary()
    with pytest.raises(ValueError, match="no samples seen yet"):  # a moving average of nothing, as a mean
        fastmle.FisherAccumulator(4, decay=0.9).fisher()
    pd = pytest.importorskip("pandas")  # a DataFrame of float and bool columns (object as an array)
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1] > 0})
    res = fastmle.fit_mle(frame, y, "gaussian")
    np.testing.assert_allclose(res.params, fastmle.fit_mle(frame.to_numpy(float), y, "gaussian").params)
    assert res.param_names == ["a", "b", "intercept"]


def test_fit_mle_reference_class_not_among_the_labels():
    X = np.random.default_rng(0).standard_normal((30, 2))
    y = np.arange(30) % 3
    for bad in (5, "1", [0]):
        with pytest.raises(ValueError, match=r"reference_class .* is not one of the classes of y \[0, 1, 2\]"):
            fastmle.fit_mle(X, y, "multinomial", reference_class=bad)


def test_fit_mle_perfect_separation_is_reported(rng):
    X = rng.standard_normal((100, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(fastmle.PerfectSeparationError, match="separation"):
        fastmle.fit_mle(X, y, "binomial")
    res = fastmle.fit_mle(X, y, "binomial", alpha=1.0)  # the penalized estimate exists
    assert res.converged and np.isfinite(res.bse).all()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(family="logit"), ValueError, "unknown family"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(tol=0), ValueError, "tol"),
    (dict(family="multinomial", reference_class=7), ValueError, "reference_class 7 is not one of the classes"),
    (dict(family="poisson", reference_class=0), ValueError, "multinomial"),
    (dict(sample_weight=np.zeros(50)), ValueError, "zero for every sample"),
    (dict(fit_intercept=1.0), TypeError, "fit_intercept must be True or False, got float 1.0"),
    # estimates at infinity, refused before iterating towards them
    (dict(family="poisson", y=np.zeros(50)), ValueError, "poisson y is 0 for every sample with weight"),
    # had been reported as "the features predict every sample's class"
    (dict(y=np.ones(50, int)), ValueError, r"binomial y is 1 for every sample with weight.*intercept at \+inf"),
    (dict(y=np.r_[np.zeros(49, int), 1], sample_weight=np.r_[np.ones(49), 0.0], alpha=1.0), ValueError,
     "binomial y is 0 for every sample with weight"),
    (dict(family="multinomial", y=np.arange(50) % 3, reference_class=0, sample_weight=(np.arange(50) % 3 < 2) * 1.0),
     ValueError, "class 2 has zero total weight"),
    # missing labels had reached np.unique's sort: a bare "'<' not supported"
    (dict(family="multinomial", y=np.array(["a", None, "b"] * 16 + ["a", "b"], dtype=object)), ValueError,
     r"y contains a missing label \(None at position 1\)"),
    (dict(family="multinomial", y=np.array(["a", "b", np.nan] * 16 + ["a", "b"], dtype=object)), ValueError,
     r"y contains a missing label \(nan at position 2\)"),
    (dict(family="multinomial", y=np.array(["a", "b", 3] * 16 + ["a", "b"], dtype=object)), TypeError,
     "the class labels cannot be sorted"),
    (dict(family="multinomial", y=np.arange(50) % 3, offset=np.zeros(50)), ValueError,
     "offset is not defined for the multinomial family"),
    (dict(offset=np.zeros(49)), ValueError, r"offset must have shape \(50,\), got \(49,\)"),
    (dict(offset=np.r_[np.zeros(49), np.nan]), ValueError, "offset contains NaN or infinity"),
    (dict(offset=np.zeros(50, complex)), TypeError, "offset"),
    (dict(exposure=np.ones(50)), ValueError, "exposure is for the poisson family"),
    (dict(family="poisson", y=np.arange(50) % 4, offset=np.r_[np.full(25, -800.0), np.full(25, 800.0)]), ValueError,
     r"the offset \(or log exposure\) spreads too widely"),
    (dict(family="poisson", y=np.arange(50) % 4, exposure=np.r_[np.ones(49), 0.0]), ValueError,
     r"exposure must be finite and > 0"),
    (dict(family="poisson", y=np.arange(50) % 4, exposure=np.ones((50, 1))), ValueError,
     r"exposure must have shape \(50,\)"),
])
def test_fit_mle_bad_input(rng, kwargs, error, match):
    X = rng.standard_normal((50, 2))
    kwargs = {"family": "binomial", "y": rng.integers(0, 2, 50), **kwargs}
    with pytest.raises(error, match=match):
        fastmle.fit_mle(X, **kwargs)


# ---------------------------------------------------------------- estimators with solver="fisher"


def test_classifier_fisher_solver_is_the_exact_optimum(rng):
    from sklearn.linear_model import LogisticRegression

    X = rng.standard_normal((500, 3))
    y = np.array(["a", "b", "c"])[np.argmax(X @ rng.standard_normal((3, 3)) + rng.gumbel(size=(500, 3)), 1)]
    clf = fastmle.MLEClassifier(solver="fisher").fit(X, y)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(X), atol=1e-6)
    assert clf.bse_.shape == clf.coef_.shape == (3, 3)
    assert not clf.bse_[0].any() and (clf.bse_[1:] > 0).all()  # class "a" is the baseline
    res = fastmle.fit_mle(X, y, "multinomial", reference_class="a")
    np.testing.assert_allclose(clf.bse_[1:], res.bse[:-1].T, rtol=1e-12)
    np.testing.assert_allclose(clf.intercept_bse_[1:], res.bse[-1], rtol=1e-12)
    assert "y=b" in clf.mle_result_.summary()


def test_classifier_fisher_solver_errors_name_the_labels(rng):
    # the estimator fitted the labels' indices: "class 2 has zero total weight"
    X = rng.standard_normal((200, 2))
    labels = rng.choice(["cat", "dog", "eel"], 200)
    with pytest.raises(ValueError, match="class 'eel' has zero total weight"):
        fastmle.MLEClassifier(solver="fisher").fit(X, labels, sample_weight=(labels != "eel") * 1.0)


def test_regressor_fisher_solver(rng):
    X = rng.standard_normal((400, 2))
    y = rng.poisson(np.exp(X @ [0.4, -0.2] + 0.3))
    reg = fastmle.MLERegressor("poisson", solver="fisher").fit(X, y)
    res = fastmle.fit_mle(X, y, "poisson")
    np.testing.assert_allclose(reg.coef_, res.coef, rtol=1e-12)
    np.testing.assert_allclose(reg.bse_, res.bse[:-1], rtol=1e-12)
    assert reg.intercept_bse_ == pytest.approx(res.bse[-1])
    with pytest.raises(AttributeError, match="solver='fisher'"):
        fastmle.MLERegressor("poisson").fit(X, y).bse_
    # partial_fit runs SGD epochs: absent with solver='fisher' (scikit-learn's available_if)
    assert hasattr(fastmle.MLERegressor("poisson"), "partial_fit")
    assert not hasattr(fastmle.MLERegressor("poisson", solver="fisher"), "partial_fit")
    assert not hasattr(fastmle.MLEClassifier(solver="fisher"), "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit"):
        fastmle.MLERegressor("poisson", solver="fisher").partial_fit(X, y)
    with pytest.raises(ValueError, match="l1_ratio"):
        fastmle.MLERegressor(solver="fisher", l1_ratio=0.5).fit(X, y)
    with pytest.raises(ValueError, match="unknown solver"):
        fastmle.MLERegressor(solver="lbfgs").fit(X, y)


def test_estimators_fisher_solver_take_cov_type_and_groups(rng):
    # the estimators' bse_ and mle_result_ from fit_mle's robust covariances,
    # cluster labels given to fit, as scikit-learn passes sample_weight
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, groups, ys = _clustered_data(rng, n=300)
    w = rng.integers(1, 3, 300) * 1.0
    for Est, family in ((fastmle.MLEClassifier, "binomial"), (fastmle.MLEClassifier, "multinomial"),
                        (fastmle.MLERegressor, "gaussian"), (fastmle.MLERegressor, "poisson")):
        y = ys[family]
        ref = {"reference_class": 0} if family == "multinomial" else {}
        for cov_type in ("HC0", "HC3", "cluster"):
            if cov_type == "HC3" and family == "multinomial":
                continue
            clustered = {"groups": groups} if cov_type == "cluster" else {}
            est = clone(Est(family, solver="fisher", cov_type=cov_type)).fit(X, y, sample_weight=w, **clustered)
            res = fastmle.fit_mle(X, y, family, sample_weight=w, cov_type=cov_type, **clustered, **ref)
            assert est.mle_result_.cov_type == cov_type
            np.testing.assert_allclose(est.mle_result_.bse, res.bse, rtol=1e-10, err_msg=f"{family} {cov_type}")
            expected = res.bse[:-1].T
            if family == "multinomial":  # the baseline class's fixed coefficients: 0
                expected = np.vstack([np.zeros(expected.shape[1]), expected])
            np.testing.assert_allclose(est.bse_, expected.reshape(est.bse_.shape), rtol=1e-10)
    # in a Pipeline, groups reach the estimator as any fit parameter does
    pipe = make_pipeline(StandardScaler(), fastmle.MLERegressor("poisson", solver="fisher", cov_type="cluster"))
    pipe.fit(X, ys["poisson"], mleregressor__groups=groups)
    scaled = StandardScaler().fit_transform(X)
    np.testing.assert_allclose(pipe[-1].bse_, fastmle.fit_mle(scaled, ys["poisson"], "poisson", cov_type="cluster",
                                                              groups=groups).bse[:-1], rtol=1e-10)
    # scale and use_t as fit_mle's
    for Est, family in ((fastmle.MLERegressor, "gaussian"), (fastmle.MLEClassifier, "binomial")):
        est = Est(family, solver="fisher", scale="X2", use_t=True, cov_type="nonrobust").fit(X, ys[family])
        res = fastmle.fit_mle(X, ys[family], family, scale="X2", use_t=True)
        assert est.mle_result_.use_t and est.mle_result_.scale_method == "X2"
        np.testing.assert_allclose(est.mle_result_.pvalues, res.pvalues, rtol=1e-10)
        np.testing.assert_allclose(est.bse_.ravel(), res.bse[:-1], rtol=1e-10)
    y = ys["binomial"]
    for est, fit_kw, message in (
            (fastmle.MLEClassifier("binomial", cov_type="HC0"), {}, "cov_type='HC0' chooses the inference "
                                                                    "of solver='fisher'; solver='sgd' computes none"),
            (fastmle.MLEClassifier("binomial", scale="X2"), {}, "scale='X2' chooses the inference"),
            (fastmle.MLEClassifier("binomial", use_t=True), {}, "use_t=True chooses the inference"),
            (fastmle.MLEClassifier("binomial", solver="fisher", scale="X2", cov_type="HC0"), {}, "is a sandwich"),
            (fastmle.MLEClassifier("binomial", cov_type="HC4"), {}, "unknown cov_type 'HC4'"),
            (fastmle.MLEClassifier("binomial", solver="fisher"), {"groups": groups}, "groups .* is for cov_type="),
            (fastmle.MLEClassifier("binomial", solver="fisher", cov_type="cluster"), {}, "needs groups="),
            (fastmle.MLEClassifier("binomial", solver="fisher", cov_type="HC1", alpha=0.1), {}, "needs alpha=0"),
            (fastmle.MLEClassifier(solver="fisher", cov_type="HC2"), {}, "needs each sample's leverage"),
            (fastmle.MLEClassifier("binomial", solver="fisher", cov_type="sandwich"), {}, "unknown cov_type")):
        with pytest.raises(ValueError, match=message):
            est.fit(X, y, **fit_kw)
        assert not hasattr(est, "coef_")  # nothing half-fitted


@pytest.mark.parametrize("family", ["binomial", "multinomial", "gaussian", "poisson"])
def test_fisher_solver_loss_curve_is_the_sgd_objective(rng, family):
    """loss_curve_ means the same in both solvers: (1 / n) sum w loss +
    alpha/2 |coef|^2, as sgd_fit's loss_history at the same coefficients."""
    n = 500
    X = rng.standard_normal((n, 3))
    eta = X @ [0.8, -0.5, 0.3]
    y = {"binomial": (eta + rng.logistic(size=n) > 0).astype(int),
         "multinomial": np.argmax(np.c_[eta, -eta, 0 * eta] + rng.gumbel(size=(n, 3)), axis=1),
         "gaussian": eta + rng.standard_normal(n), "poisson": rng.poisson(np.exp(0.5 * eta))}[family]
    w = rng.random(n) * 3.0  # weights averaging 1.5: not a mean
    Est = fastmle.MLEClassifier if family in ("binomial", "multinomial") else fastmle.MLERegressor
    for alpha in (0.0, 0.05):
        est = Est(family=family, solver="fisher", alpha=alpha).fit(X, y, sample_weight=w)
        at = fastmle.sgd_fit(X, y, family, sample_weight=w, alpha=alpha, coef_init=est.coef_.T,
                             intercept_init=est.intercept_, eta0=1e-300, max_epochs=1, tol=None)
        assert est.loss_curve_[-1] == pytest.approx(at.loss_history[0], rel=1e-9)


def test_fisher_solver_penalty_matches_the_sgd_objective(rng):
    """alpha means the same in both solvers: mean loss + alpha/2 |coef|^2."""
    from sklearn.linear_model import LogisticRegression

    X = rng.standard_normal((400, 2))
    y = (X @ [1.0, -1.0] + rng.logistic(size=400) > 0).astype(int)
    clf = fastmle.MLEClassifier("binomial", solver="fisher", alpha=0.05).fit(X, y)
    lr = LogisticRegression(C=1 / (0.05 * 400), tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(clf.coef_, lr.coef_, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sgd = fastmle.MLEClassifier("binomial", alpha=0.05, max_epochs=300, tol=1e-7, random_state=0).fit(X, y)
    np.testing.assert_allclose(sgd.coef_, clf.coef_, atol=2e-2)
