"""Inputs at the edges of the kernels' index arithmetic and buffer sizes, and
arrays handed to user callbacks: each must either work as the ordinary case
does or raise a clear error, and never let a kernel touch memory outside the
arrays it was given.

The cases that once wrote past a C buffer run in a child interpreter, so a
crash fails the test instead of killing the test run."""
import textwrap

import numpy as np
import pytest

import fastmle
from child import run_python

COMPILED = ["c", "numba"]


def _in_child(code):
    return run_python("-c", textwrap.dedent(code)).stdout


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_sgd_batch_size_beyond_the_samples(backend, sparse):
    """A batch_size of any size (2**61 overflowed batch_size x outputs in the
    C kernels' buffer sizes: a buffer of a few bytes, written past its end,
    heap corruption and wrong coefficients) trains exactly as batch_size = n:
    one batch of every sample per epoch."""
    out = _in_child(f"""
        import numpy as np, scipy.sparse as sp, fastmle
        rng = np.random.default_rng(0)
        X = rng.standard_normal((100, 3))
        if {sparse}:
            X = sp.csr_matrix(X)
        y = (rng.random(100) > 0.5).astype(int)
        fits = [fastmle.sgd_fit(X, y, "binomial", batch_size=b, max_epochs=2, eta0=0.1, tol=None,
                                random_state=0, backend={backend!r})
                for b in (100, 2**61, 2**40, 101)]
        for fit in fits[1:]:
            np.testing.assert_array_equal(fit.coef, fits[0].coef)
            np.testing.assert_array_equal(fit.intercept, fits[0].intercept)
            assert fit.n_steps == fits[0].n_steps == 2
        print("same")
    """)
    assert "same" in out


@pytest.mark.parametrize("backend", COMPILED + ["numpy"])
@pytest.mark.parametrize("family,y_of", [("binomial", lambda X: (X[:, 0] > 0).astype(int)),
                                         ("gaussian", lambda X: X @ [1.0, -1.0, 0.5]),
                                         ("multinomial", lambda X: (X[:, 0] > 0).astype(int) + (X[:, 1] > 0))])
@pytest.mark.parametrize("average", [False, True])
def test_sgd_callback_gets_copies(backend, family, y_of, average):
    """info["coef"] and info["intercept"] are the epoch's coefficients as
    new arrays: for one output (binomial, gaussian, poisson) info["coef"] was
    a view of the live parameters, so a callback that kept it saw later
    epochs' values, and one that wrote into it changed the fit; the result's
    coefficients share no memory with the state warm starts continue from."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = y_of(X)
    kept, copied = [], []

    def callback(epoch, info):
        kept.append(info["coef"])
        copied.append(info["coef"].copy())
        info["coef"][...] = 1e6  # must not reach the fit
        info["intercept"][...] = 1e6

    fit = fastmle.sgd_fit(X, y, family, max_epochs=4, tol=None, random_state=0, average=average,
                          callback=callback, backend=backend)
    plain = fastmle.sgd_fit(X, y, family, max_epochs=4, tol=None, random_state=0, average=average,
                            backend=backend)
    np.testing.assert_array_equal(fit.coef, plain.coef)
    np.testing.assert_array_equal(fit.intercept, plain.intercept)
    assert not np.array_equal(copied[0], copied[-1])
    for state_array in (fit.state.params, fit.state.avg):
        assert not np.shares_memory(fit.coef, state_array)
        assert not np.shares_memory(fit.intercept, state_array)
        for coef in kept:
            assert not np.shares_memory(coef, state_array)


@pytest.mark.parametrize("backend", COMPILED + ["numpy"])
@pytest.mark.parametrize("family", ["multinomial", "binomial", "gaussian", "poisson"])
def test_glm_coef_without_outputs(backend, family):
    """coef with no columns is a ValueError: the C kernels read a row's first
    linear predictor (softmax's max), one element past an empty output."""
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="no outputs"):
        fastmle.glm_predict(X, np.ones((3, 0)), family, backend=backend)
    with pytest.raises(ValueError, match="no outputs"):
        fastmle.glm_loss(X, np.zeros(4, int), np.ones((3, 0)), family, backend=backend)


@pytest.mark.parametrize("backend", COMPILED + ["numpy"])
@pytest.mark.parametrize("shift", [1, -1])
def test_grad_out_overlapping_weights(backend, shift):
    """A grad_out that overlaps the weights (class weights of cross_entropy
    and nll_loss, weight and pos_weight of binary_cross_entropy_with_logits)
    gets the gradient the separate arrays give: the kernels read the weights
    while writing the gradient, so such a grad_out is written via a copy."""
    rng = np.random.default_rng(0)
    n, C = 16, 3
    logits, target = rng.standard_normal((n, C)), rng.integers(0, C, n)
    for fn in (fastmle.cross_entropy, fastmle.nll_loss):
        weight = np.array([1.0, 2.0, 3.0])
        expected = fn(logits, target, weight=weight, return_grad=True, backend="numpy")
        buf = np.zeros((n + 1) * C)
        w_at, g_at = (n * C, 0) if shift > 0 else (0, C)
        buf[w_at:w_at + C] = weight
        grad_out = buf[g_at:g_at + n * C].reshape(n, C)
        w_view = buf[w_at:w_at + C] if shift > 0 else buf[0:C]
        if shift < 0:  # the weights in the gradient's first row
            grad_out = buf[0:n * C].reshape(n, C)
        loss, grad = fn(logits, target, weight=w_view, return_grad=True, grad_out=grad_out, backend=backend)
        assert grad is grad_out
        np.testing.assert_allclose(loss, expected[0], rtol=1e-12)
        np.testing.assert_allclose(grad, expected[1], rtol=1e-12, atol=1e-15)
    x, t = rng.standard_normal(64), (rng.random(64) > 0.5).astype(float)
    for name in ("weight", "pos_weight"):
        w = rng.random(64) + 0.5
        expected = fastmle.binary_cross_entropy_with_logits(x, t, **{name: w}, return_grad=True, backend="numpy")
        buf = np.zeros(65)
        w_view, grad_out = (buf[:64], buf[1:]) if shift > 0 else (buf[1:], buf[:64])
        w_view[...] = w
        loss, grad = fastmle.binary_cross_entropy_with_logits(x, t, **{name: w_view}, return_grad=True,
                                                              grad_out=grad_out, backend=backend)
        assert grad is grad_out
        np.testing.assert_allclose(loss, expected[0], rtol=1e-12)
        np.testing.assert_allclose(grad, expected[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", COMPILED + ["numpy"])
@pytest.mark.parametrize("ignore_index", [2**63, -2**63 - 1, 10**30])
def test_ignore_index_beyond_int64(backend, ignore_index):
    """An ignore_index the kernels' int64 cannot hold is a ValueError naming
    it, from every function that takes one (it was an OverflowError from the
    C call's argument conversion, naming nothing)."""
    logits, target = np.zeros((3, 3)), np.array([0, 1, 2])
    calls = [lambda: fastmle.cross_entropy(logits, target, ignore_index=ignore_index, backend=backend),
             lambda: fastmle.nll_loss(logits, target, ignore_index=ignore_index, backend=backend),
             lambda: fastmle.perplexity_from_logits(logits, target, ignore_index=ignore_index, backend=backend),
             lambda: fastmle.linear_cross_entropy(np.ones((3, 2)), np.ones((3, 2)), target,
                                                  ignore_index=ignore_index, backend=backend)]
    for call in calls:
        with pytest.raises(ValueError, match="ignore_index"):
            call()


@pytest.mark.parametrize("shape", [(40, 2), (40, 1), (40, 0)])
def test_dask_sample_weight_must_be_1d(shape):
    """fastmle.dask's functions refuse sample weights of shape (n, k) before
    any chunk reaches a kernel: fit_mle handed each chunk's (rows, k) weights
    to the C kernels as flat values (and failed later in numpy), and (n, 0)
    weights were taken as no weights at all (loglik -0.0, a zero Fisher)."""
    da = pytest.importorskip("dask.array")
    import fastmle.dask as fd

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = X @ [1.0, 2.0, 3.0]
    Xd, w = da.from_array(X, chunks=(20, 3)), np.ones(shape)
    calls = [lambda: fd.fit_mle(Xd, y, "gaussian", sample_weight=w, backend="c"),
             lambda: fd.loglik(Xd, y, np.ones(3), "gaussian", intercept=0.0, sample_weight=w),
             lambda: fd.glm_fisher(Xd, np.ones(3), "gaussian", sample_weight=w),
             lambda: fd.sgd_fit(Xd, y, "gaussian", sample_weight=w, max_epochs=1)]
    for call in calls:
        with pytest.raises(ValueError, match="sample_weight must be 1-D"):
            call()
