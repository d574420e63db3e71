"""Fisher-information kernels (family "fisher"): every backend against the
numpy reference (fastmle/reference/fisher.py) on odd sizes around the
kernels' row blocks, with the compiled kernels' large products both through
numpy's BLAS and through their own loops; the exact Fisher against an
independent construction (a sum of Kronecker products) and against the
expectation of the empirical Fisher of responses sampled from the model
(Monte Carlo); hypothesis properties; and thread-count independence.

Tolerances are error bounds, not guesses: a result is compared elementwise
against ``rtol * bound``, where ``bound`` sums the absolute values of the
terms that make up each element (so cancellation cannot make it too tight)
and ``rtol`` is a multiple of the unit roundoff for the number of roundings
involved."""
import contextlib
import functools
import itertools
import os

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, strategies as st

import fastmle
from fastmle import _blas, _dispatch
from fastmle.reference import fisher as ref
from fastmle.reference.glm import BINOMIAL, FAMILIES, GAUSSIAN, MULTINOMIAL, POISSON

SENTINEL = -777.25  # exactly representable in float32: the lower triangle must keep it
EPS64 = np.finfo(np.float64).eps

# rows: 256-row blocks of the exact Fisher and of the weighted syrk
NS = (0, 1, 2, 3, 17, 128, 129, 256, 257, 300)
PS = (1, 2, 3, 7, 16, 17, 33, 40)
DIAG_PS = (1, 2, 17, 255, 256, 257, 513)  # 256-column blocks of the diagonal
COEFS = ((1.0, 0.0), (0.5, 1.0), (2.0, -0.5), (-1.5, 0.25))  # (alpha, beta)
# (n, d, K) for the exact-Fisher kernels; d = 0 is the intercept-only model
GLM_SHAPES = [(0, 3, 2), (1, 1, 1), (2, 3, 3), (3, 4, 2), (17, 5, 4), (128, 2, 3), (129, 6, 3),
              (257, 0, 2), (300, 9, 5), (300, 19, 2), (1025, 4, 3)]  # blocks of 256 rows, 4 lanes


def kernels(name):
    # looked up per use: for Numba this also applies the thread count
    return _dispatch.kernels(name, "fisher")


@contextlib.contextmanager
def blas_mode(flag):
    """The compiled kernels' big products through the BLAS (True) or their own loops."""
    previous = _blas.enabled()
    _blas.set_enabled(flag)
    try:
        assert _blas.enabled() == flag
        yield
    finally:
        _blas.set_enabled(previous)


# every backend once, the compiled ones with their big products both through
# the BLAS and through their own loops
BACKEND_MODES = [("c", True), ("c", False), ("numba", True), ("numba", False), ("numpy", None)]


def pytest_generate_tests(metafunc):
    if "blas" in metafunc.fixturenames:
        metafunc.parametrize(("backend", "blas_flag"), BACKEND_MODES,
                             ids=["c-blas", "c-loops", "numba-blas", "numba-loops", "numpy"])


@pytest.fixture
def blas(backend, blas_flag):
    if backend == "c" and os.environ.get("FASTMLE_NO_C"):
        pytest.skip("FASTMLE_NO_C=1: C backend disabled on purpose")
    assert backend in fastmle.available_backends(), f"backend {backend!r} unavailable"
    if blas_flag is None:  # the reference has no BLAS switch
        yield None
        return
    assert _blas.find() is not None, f"numpy's BLAS was not found: {_blas.reason()}"
    with blas_mode(blas_flag):
        yield blas_flag


def compiled_backends():
    return [b for b in ("c", "numba") if b in fastmle.available_backends()]


# ---------------------------------------------------------------- helpers


def upper(P):
    return np.triu_indices(P)


def lower(P):
    return np.tril_indices(P, -1)


def mirror(a):
    """The symmetric matrix whose upper triangle (incl. diagonal) is a's."""
    a = np.asarray(a, np.float64)
    return np.triu(a) + np.triu(a, 1).T


def assert_within(got, want, bound, rtol, err=""):
    """|got - want| <= rtol * bound elementwise; NaN anywhere fails."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{err}: shape {got.shape} != {want.shape}"
    assert np.isfinite(want).all(), f"{err}: non-finite expected value"
    ok = np.abs(got - want) <= rtol * np.asarray(bound, np.float64)
    if not ok.all():
        i = np.argwhere(~ok)[0]
        i = tuple(i) if got.ndim else ()
        raise AssertionError(f"{err}: {int((~ok).sum())} of {ok.size} elements off, first at {i}: "
                             f"got {got[i]!r}, want {want[i]!r}, allowed {rtol * np.asarray(bound)[i]!r}")


def sample_weights(n, dtype, rng):
    """Positive weights with some zeros (the public API allows w >= 0)."""
    w = rng.random(n) + 0.5
    w[::7] = 0.0
    return w.astype(dtype)


def as_weights(w, n):
    return w.astype(np.float64) if w.size else np.ones(n)


def acc_rtol(dtype, n):
    """Rounding bound of a length-n sum of products (plus scaling by alpha,
    beta and the final rounding to dtype), times 2."""
    return (n + 4) * np.finfo(dtype).eps


def acc_bound(S, w, alpha, beta, acc0):
    """Sum of the absolute values of the terms of beta acc + alpha S^T W S."""
    s = np.abs(S.astype(np.float64))
    return abs(alpha) * s.T @ (as_weights(w, s.shape[0])[:, None] * s) + abs(beta) * np.abs(
        acc0.astype(np.float64))


def kept(family, K, ref_class):
    return K - 1 if family == MULTINOMIAL and 0 <= ref_class < K else K


def glm_problem(family, n, d, K, dtype, rng, fit_intercept=True, ref_class=-1, weighted=False,
                scale=1.0):
    """X (n, d), params (K, d + 1) with the callers' invariants (no intercept:
    last column 0; multinomial ref: that class's row 0), sample weights."""
    if family == BINOMIAL:
        K = 1
    X = rng.standard_normal((n, d)).astype(dtype)
    params = (scale * rng.standard_normal((K, d + 1)) / np.sqrt(d + 1)).astype(dtype)
    if not fit_intercept:
        params[:, d] = 0
    if family == MULTINOMIAL and 0 <= ref_class < K:
        params[ref_class] = 0
    w = sample_weights(n, dtype, rng) if weighted else np.empty(0, dtype)
    return X, params, w


def design(X, fit_intercept):
    X = X.astype(np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


def eta64(X, params, offset=None):
    p = params.astype(np.float64)
    eta = X.astype(np.float64) @ p[:, :-1].T + p[:, -1]
    return eta if offset is None or not offset.size else eta + offset.astype(np.float64)[:, None]


def fisher_bound(X, params, family, w, fit_intercept, ref_class, offset=None):
    """(P, P): sum_i w_i s_ia s_ib |xt_ij xt_il| >= sum_i |w_i M_i[a, b] xt_ij xt_il|,
    with s_a^2 = p_a for the multinomial (|p_a [a = b] - p_a p_b| <= sqrt(p_a p_b))
    and the variance M_i[a, a] for the diagonal families."""
    eta = eta64(X, params, offset)
    if family == MULTINOMIAL:
        s2 = scipy.special.softmax(eta, axis=1) if eta.size else eta
        s2 = np.delete(s2, ref_class, axis=1) if 0 <= ref_class < eta.shape[1] else s2
    elif family == BINOMIAL:
        s2 = scipy.special.expit(eta) * scipy.special.expit(-eta)
    elif family == GAUSSIAN:
        s2 = np.ones_like(eta)
    else:
        s2 = np.exp(eta)
    Xt = np.abs(design(X, fit_intercept))
    U = (np.sqrt(s2)[:, :, None] * Xt[:, None, :]).reshape(X.shape[0], s2.shape[1] * Xt.shape[1])
    return U.T @ (as_weights(w, X.shape[0])[:, None] * U)


def glm_rtol(X, params, fit_intercept, dtype, offset=None):
    """The reference forms eta in the input dtype, the kernels in float64:
    eta's rounding (relative error of M up to 4 |d eta| for the multinomial)
    in the input dtype, plus float64 sums of n terms, exp and the max shift."""
    n, d = X.shape
    a = np.abs(X.astype(np.float64)) @ np.abs(params[:, :d].astype(np.float64)).T
    a = a + np.abs(params[:, d].astype(np.float64)) if fit_intercept else a
    if offset is not None and offset.size:
        a = a + np.abs(offset.astype(np.float64))[:, None]
    abs_eta = float(a.max(initial=0.0))
    u = np.finfo(dtype).eps / 2
    return 8 * (d + 2) * u * abs_eta + (n + 2 * d + 32) * EPS64 + 4 * EPS64 * abs_eta


def run_glm(name, X, params, family, w, fit_intercept, ref_class, offset=None):
    """(full, diag, vp, v) from one backend; the full matrix's lower triangle
    is checked untouched here and diag/vp are prefilled with NaN. offset None:
    the kernels' empty array."""
    mod = kernels(name)
    offset = np.empty(0, X.dtype) if offset is None else offset
    D = X.shape[1] + int(fit_intercept)
    Kp = kept(family, params.shape[0], ref_class)
    P = Kp * D
    full = np.full((P, P), SENTINEL)
    mod.glm_fisher(X, params, offset, family, w, int(fit_intercept), ref_class, full)
    np.testing.assert_array_equal(full[lower(P)], SENTINEL, err_msg=f"{name}: lower triangle written")
    diag = np.full(P, np.nan)
    mod.glm_fisher_diag(X, params, offset, family, w, int(fit_intercept), ref_class, diag)
    v = np.random.default_rng(P).standard_normal((Kp, D))
    vp = np.full((Kp, D), np.nan)
    mod.glm_fisher_vp(X, params, offset, family, w, int(fit_intercept), ref_class, v, vp)
    return full, diag, vp, v


# ---------------------------------------------------------------- accumulation vs reference


def test_accumulate_matches_reference(backend, blas, dtype, rng):
    mod = kernels(backend)
    for n, P, weighted, (alpha, beta) in itertools.product(NS, PS, (False, True), COEFS):
        err = f"{backend} blas={blas} n={n} P={P} weighted={weighted} alpha={alpha} beta={beta}"
        S = rng.standard_normal((n, P)).astype(dtype)
        w = sample_weights(n, dtype, rng) if weighted else np.empty(0, dtype)
        acc0 = rng.standard_normal((P, P)).astype(dtype)
        acc0[lower(P)] = SENTINEL
        want = acc0.copy()
        ref.fisher_accumulate(S, w, alpha, beta, want)
        got = acc0.copy()
        mod.fisher_accumulate(S, w, alpha, beta, got)
        assert got.dtype == dtype, err
        np.testing.assert_array_equal(got[lower(P)], SENTINEL, err_msg=err + " (lower triangle)")
        bound = acc_bound(S, w, alpha, beta, acc0)
        u = upper(P)
        assert_within(got[u], want[u], bound[u], acc_rtol(dtype, n), err)


def test_accumulate_diag_matches_reference(backend, dtype, rng):
    # no BLAS in the diagonal kernels: one path each
    mod = kernels(backend)
    for n, P, weighted, (alpha, beta) in itertools.product(NS, DIAG_PS, (False, True), COEFS):
        err = f"{backend} n={n} P={P} weighted={weighted} alpha={alpha} beta={beta}"
        S = rng.standard_normal((n, P)).astype(dtype)
        w = sample_weights(n, dtype, rng) if weighted else np.empty(0, dtype)
        acc0 = rng.standard_normal(P).astype(dtype)
        want = acc0.copy()
        ref.fisher_accumulate_diag(S, w, alpha, beta, want)
        got = acc0.copy()
        mod.fisher_accumulate_diag(S, w, alpha, beta, got)
        assert got.dtype == dtype, err
        s2 = S.astype(np.float64) ** 2
        bound = abs(alpha) * (as_weights(w, n) @ s2) + abs(beta) * np.abs(acc0.astype(np.float64))
        assert_within(got, want, bound, acc_rtol(dtype, n), err)


def test_accumulate_beta_zero_overwrites_nan(backend, blas, dtype, rng):
    # beta == 0 means "overwrite": NaN or garbage in the accumulator must not
    # leak (0 * NaN is NaN), for the BLAS syrk as for the loops
    mod = kernels(backend)
    for n, P, weighted in itertools.product((0, 3, 129, 300), (1, 5, 40, 257), (False, True)):
        err = f"{backend} blas={blas} n={n} P={P} weighted={weighted}"
        S = rng.standard_normal((n, P)).astype(dtype)
        w = sample_weights(n, dtype, rng) if weighted else np.empty(0, dtype)
        S64 = S.astype(np.float64)
        want = 0.75 * S64.T @ (as_weights(w, n)[:, None] * S64)  # independent of the reference
        bound = 0.75 * np.abs(S64).T @ (as_weights(w, n)[:, None] * np.abs(S64))
        acc = np.full((P, P), np.nan, dtype)
        acc[lower(P)] = SENTINEL
        mod.fisher_accumulate(S, w, 0.75, 0.0, acc)
        np.testing.assert_array_equal(acc[lower(P)], SENTINEL, err_msg=err + " (lower triangle)")
        u = upper(P)
        assert_within(acc[u], want[u], bound[u], acc_rtol(dtype, n), err + " (matrix)")
        diag = np.full(P, np.nan, dtype)
        mod.fisher_accumulate_diag(S, w, 0.75, 0.0, diag)
        assert_within(diag, np.diag(want), np.diag(bound), acc_rtol(dtype, n), err + " (diag)")


def test_accumulate_empty_only_scales(backend, blas, dtype, rng):
    mod = kernels(backend)
    for P, (alpha, beta) in itertools.product((1, 4, 33, 257), COEFS):
        S = np.zeros((0, P), dtype)
        w = np.empty(0, dtype)
        acc0 = rng.standard_normal((P, P)).astype(dtype)
        acc0[lower(P)] = SENTINEL
        acc = acc0.copy()
        mod.fisher_accumulate(S, w, alpha, beta, acc)
        want = (beta * acc0.astype(np.float64)).astype(dtype)
        u = upper(P)
        np.testing.assert_allclose(acc[u], want[u], rtol=np.finfo(dtype).eps, atol=0)
        np.testing.assert_array_equal(acc[lower(P)], SENTINEL)
        d0 = rng.standard_normal(P).astype(dtype)
        d = d0.copy()
        mod.fisher_accumulate_diag(S, w, alpha, beta, d)
        np.testing.assert_allclose(d, (beta * d0.astype(np.float64)).astype(dtype),
                                   rtol=np.finfo(dtype).eps, atol=0)


# ---------------------------------------------------------------- exact Fisher vs reference


@pytest.mark.parametrize("family", range(4), ids=FAMILIES)
def test_glm_fisher_matches_reference(backend, blas, dtype, rng, family):
    for (n, d, K), fit_intercept, weighted in itertools.product(GLM_SHAPES, (True, False),
                                                               (False, True)):
        if d == 0 and not fit_intercept:
            continue  # no parameters
        # ref: multinomial drops a class; the other families ignore it
        refs = sorted({-1, 0, K - 1}) if family == MULTINOMIAL and K > 1 else [-1, 0]
        for ref_class in refs:
            err = (f"{backend} blas={blas} {FAMILIES[family]} (n, d, K)={(n, d, K)} "
                   f"intercept={fit_intercept} weighted={weighted} ref={ref_class}")
            X, params, w = glm_problem(family, n, d, K, dtype, rng, fit_intercept, ref_class, weighted)
            full, diag, vp, v = run_glm(backend, X, params, family, w, fit_intercept, ref_class)
            want = run_glm("numpy", X, params, family, w, fit_intercept, ref_class)
            bound = fisher_bound(X, params, family, w, fit_intercept, ref_class)
            rtol = glm_rtol(X, params, fit_intercept, dtype)
            P = full.shape[0]
            u = upper(P)
            assert_within(full[u], want[0][u], bound[u], rtol, err + " glm_fisher")
            assert_within(diag, want[1], np.diag(bound), rtol, err + " glm_fisher_diag")
            vbound = (bound @ np.abs(v).ravel()).reshape(v.shape)
            assert_within(vp, want[2], vbound, rtol, err + " glm_fisher_vp")


@pytest.mark.parametrize("family", range(4), ids=FAMILIES)
def test_glm_fisher_with_an_offset_matches_reference(backend, dtype, rng, family):
    # the offset enters each sample's linear predictor (the kernels add it in
    # float64, the reference in the input dtype); multinomial's kernels take
    # one too (its public API refuses it: it cancels in the softmax)
    for (n, d, K), fit_intercept in itertools.product(GLM_SHAPES, (True, False)):
        if d == 0 and not fit_intercept:
            continue
        X, params, w = glm_problem(family, n, d, K, dtype, rng, fit_intercept, weighted=True)
        offset = (rng.standard_normal(n) - 1.0).astype(dtype)
        err = f"{backend} {FAMILIES[family]} (n, d, K)={(n, d, K)} intercept={fit_intercept} offset"
        full, diag, vp, v = run_glm(backend, X, params, family, w, fit_intercept, -1, offset)
        want = run_glm("numpy", X, params, family, w, fit_intercept, -1, offset)
        bound = fisher_bound(X, params, family, w, fit_intercept, -1, offset)
        rtol = glm_rtol(X, params, fit_intercept, dtype, offset)
        u = upper(full.shape[0])
        assert_within(full[u], want[0][u], bound[u], rtol, err + " glm_fisher")
        assert_within(diag, want[1], np.diag(bound), rtol, err + " glm_fisher_diag")
        assert_within(vp, want[2], (bound @ np.abs(v).ravel()).reshape(v.shape), rtol, err + " glm_fisher_vp")
        if family in (BINOMIAL, POISSON) and full[u].any():  # the variance depends on eta: the offset changed it
            plain = run_glm(backend, X, params, family, w, fit_intercept, -1)[0]
            assert not np.array_equal(plain[u], full[u]), err


@pytest.mark.parametrize("family", [MULTINOMIAL, BINOMIAL], ids=["multinomial", "binomial"])
def test_saturated_probabilities_stay_finite(backend, blas, dtype, rng, family):
    # |eta| in the hundreds: probabilities of exactly 0 and 1
    for fit_intercept, ref_class in [(True, -1), (True, 1), (False, 0)]:
        X, params, w = glm_problem(family, 150, 3, 4, dtype, rng, fit_intercept, ref_class,
                                   weighted=True, scale=400.0)
        ref_class = ref_class if family == MULTINOMIAL else -1
        err = f"{backend} blas={blas} {FAMILIES[family]} intercept={fit_intercept} ref={ref_class}"
        full, diag, vp, v = run_glm(backend, X, params, family, w, fit_intercept, ref_class)
        P = full.shape[0]
        u = upper(P)
        assert np.isfinite(full[u]).all() and np.isfinite(diag).all() and np.isfinite(vp).all(), err
        want = run_glm("numpy", X, params, family, w, fit_intercept, ref_class)
        bound = fisher_bound(X, params, family, w, fit_intercept, ref_class)
        rtol = glm_rtol(X, params, fit_intercept, dtype)
        assert_within(full[u], want[0][u], bound[u], rtol, err)
        assert_within(diag, want[1], np.diag(bound), rtol, err)


# ---------------------------------------------------------------- exact Fisher vs independent constructions


def kronecker_fisher(X, params, family, w, fit_intercept, ref_class):
    """sum_i w_i kron(M_i, xt_i xt_i^T), M_i from scipy, sample by sample."""
    eta = eta64(X, params)
    Xt = design(X, fit_intercept)
    K = params.shape[0]
    Kp = kept(family, K, ref_class)
    w = as_weights(w, X.shape[0])
    F = np.zeros((Kp * Xt.shape[1],) * 2)
    for i in range(X.shape[0]):
        if family == MULTINOMIAL:
            p = scipy.special.softmax(eta[i])
            M = np.diag(p) - np.outer(p, p)
            if 0 <= ref_class < K:
                M = np.delete(np.delete(M, ref_class, axis=0), ref_class, axis=1)
        elif family == BINOMIAL:
            M = np.diag(scipy.special.expit(eta[i]) * scipy.special.expit(-eta[i]))
        elif family == GAUSSIAN:
            M = np.eye(K)
        else:
            M = np.diag(np.exp(eta[i]))
        F += w[i] * np.kron(M, np.outer(Xt[i], Xt[i]))
    return F


@pytest.mark.parametrize("family", range(4), ids=FAMILIES)
def test_exact_fisher_is_a_sum_of_kronecker_products(backend, dtype, rng, family):
    for (n, d, K), fit_intercept, weighted in itertools.product([(1, 1, 1), (7, 2, 3), (23, 3, 4)],
                                                               (True, False), (False, True)):
        refs = sorted({-1, 0, K - 1}) if family == MULTINOMIAL and K > 1 else [-1]
        for ref_class in refs:
            err = (f"{backend} {FAMILIES[family]} (n, d, K)={(n, d, K)} intercept={fit_intercept} "
                   f"weighted={weighted} ref={ref_class}")
            X, params, w = glm_problem(family, n, d, K, dtype, rng, fit_intercept, ref_class, weighted)
            F = kronecker_fisher(X, params, family, w, fit_intercept, ref_class)
            full, diag, vp, v = run_glm(backend, X, params, family, w, fit_intercept, ref_class)
            bound = fisher_bound(X, params, family, w, fit_intercept, ref_class)
            vbound = (bound @ np.abs(v).ravel()).reshape(v.shape)
            rtol = glm_rtol(X, params, fit_intercept, dtype)
            G = mirror(full)
            assert_within(G, F, bound, rtol, err + " glm_fisher")
            assert_within(diag, np.diag(F), np.diag(bound), rtol, err + " glm_fisher_diag")
            assert_within(vp, (F @ v.ravel()).reshape(v.shape), vbound, rtol, err + " glm_fisher_vp")
            # the kernels agree with each other: diag is F's diagonal, vp is F v
            assert_within(diag, np.diag(G), np.diag(bound), 2 * rtol, err + " diag vs matrix")
            assert_within(vp, (G @ v.ravel()).reshape(v.shape), vbound, 2 * rtol, err + " vp vs matrix")


def test_reference_class_drop_deletes_its_rows_and_columns(backend, dtype, rng):
    # baseline-category parameterization: with params[ref] = 0, the Fisher
    # with ref is the ref=-1 Fisher without class ref's rows and columns
    for (n, d, K), fit_intercept, weighted in itertools.product([(40, 2, 2), (130, 3, 3), (60, 4, 5)],
                                                               (True, False), (False, True)):
        for ref_class in range(K):
            err = f"{backend} (n, d, K)={(n, d, K)} intercept={fit_intercept} ref={ref_class}"
            X, params, w = glm_problem(MULTINOMIAL, n, d, K, dtype, rng, fit_intercept, ref_class,
                                       weighted)
            D = d + int(fit_intercept)
            keep = np.array([k * D + j for k in range(K) if k != ref_class for j in range(D)])
            all_full, all_diag, _, _ = run_glm(backend, X, params, MULTINOMIAL, w, fit_intercept, -1)
            full, diag, vp, v = run_glm(backend, X, params, MULTINOMIAL, w, fit_intercept, ref_class)
            bound = fisher_bound(X, params, MULTINOMIAL, w, fit_intercept, -1)[np.ix_(keep, keep)]
            rtol = 2 * glm_rtol(X, params, fit_intercept, dtype)
            F = mirror(all_full)[np.ix_(keep, keep)]
            assert_within(mirror(full), F, bound, rtol, err + " glm_fisher")
            assert_within(diag, all_diag[keep], np.diag(bound), rtol, err + " glm_fisher_diag")
            vbound = (bound @ np.abs(v).ravel()).reshape(v.shape)
            assert_within(vp, (F @ v.ravel()).reshape(v.shape), vbound, rtol, err + " glm_fisher_vp")


# ---------------------------------------------------------------- Monte Carlo: E[empirical Fisher] = Fisher

MC_DRAWS = 4000
MC_CASES = {  # name -> (family, K, ref)
    "multinomial": (MULTINOMIAL, 3, -1),
    "multinomial-ref1": (MULTINOMIAL, 3, 1),
    "binomial": (BINOMIAL, 1, -1),
    "poisson": (POISSON, 2, -1),
    "gaussian": (GAUSSIAN, 2, -1),
}


@functools.lru_cache(maxsize=None)
def monte_carlo(case):
    """The problem (n=50, d=2, intercept, weighted), the per-sample scores of
    MC_DRAWS responses drawn from the model (draws x n x P), and the mean and
    standard error over draws of the empirical Fisher sum_i w_i s_i s_i^T."""
    family, K, ref_class = MC_CASES[case]
    rng = np.random.default_rng(2024)
    X, params, w = glm_problem(family, 50, 2, K, np.float64, rng, True, ref_class, weighted=True)
    n, R = X.shape[0], MC_DRAWS
    eta = eta64(X, params)
    if family == MULTINOMIAL:
        p = scipy.special.softmax(eta, axis=1)
        y = (rng.random((R, n, 1)) > np.cumsum(p, axis=1)).sum(axis=2).clip(max=K - 1)
        resid = np.eye(K)[y] - p
        if ref_class >= 0:
            resid = np.delete(resid, ref_class, axis=2)
    elif family == BINOMIAL:
        p = scipy.special.expit(eta)
        resid = (rng.random((R, n, K)) < p).astype(np.float64) - p
    elif family == POISSON:
        mu = np.exp(eta)
        resid = rng.poisson(mu, (R, n, K)) - mu
    else:
        resid = rng.standard_normal((R, n, K))  # y - eta, unit variance
    Xt = design(X, True)
    scores = (resid[:, :, :, None] * Xt[None, :, None, :]).reshape(R, n, -1)  # (y - mu) kron xt
    per_draw = np.einsum("rna,rnb->rab", scores * w[None, :, None], scores)
    mean = per_draw.mean(axis=0)
    se = per_draw.std(axis=0, ddof=1) / np.sqrt(R)
    return X, params, w, scores.reshape(R * n, -1), mean, se


@pytest.mark.parametrize("case", list(MC_CASES))
def test_exact_fisher_is_the_expected_empirical_fisher(backend, blas, case):
    family, K, ref_class = MC_CASES[case]
    X, params, w, scores, mean, se = monte_carlo(case)
    P = mean.shape[0]
    u = upper(P)
    # the backend's accumulator averages the draws' outer products
    acc = np.zeros((P, P))
    acc[lower(P)] = SENTINEL
    kernels(backend).fisher_accumulate(scores, np.tile(w, MC_DRAWS), 1.0 / MC_DRAWS, 0.0, acc)
    bound = acc_bound(scores, np.tile(w, MC_DRAWS), 1.0 / MC_DRAWS, 0.0, np.zeros((P, P)))
    assert_within(acc[u], mean[u], bound[u], acc_rtol(np.float64, scores.shape[0]), "accumulate")
    np.testing.assert_array_equal(acc[lower(P)], SENTINEL)
    full, diag, vp, v = run_glm(backend, X, params, family, w, True, ref_class)
    F = mirror(full)
    # each entry of the mean is within z standard errors of its expectation,
    # z Bonferroni-corrected over the P(P+1)/2 entries for a 1e-6 overall
    # false-alarm rate (two-sided)
    z = scipy.stats.norm.isf(0.5e-6 / len(u[0]))
    zscore = np.abs(F - mean)[u] / se[u]
    assert zscore.max() <= z, f"{case}: max |exact - mean| = {zscore.max():.2f} standard errors > {z:.2f}"
    assert_within(diag, np.diag(mean), z * np.diag(se), 1.0, case + " diag")
    # ... and the test has the power to see a Fisher 5% off
    assert (np.abs(1.05 * F - mean)[u] / se[u]).max() > z, f"{case}: the Monte Carlo is too coarse"


# ---------------------------------------------------------------- hypothesis properties


def assert_psd_ish(F, err, slack=0.0):
    eig = np.linalg.eigvalsh(F)
    scale = np.abs(eig).max(initial=0.0)
    assert eig.min(initial=0.0) >= -max(1e-8 * scale, slack), f"{err}: eigenvalues {eig}"


@given(n=st.integers(0, 40), d=st.integers(0, 5), K=st.integers(1, 5),
       family=st.sampled_from(range(4)), fit_intercept=st.booleans(), ref_class=st.integers(-1, 4),
       eta_max=st.floats(0.0, 30.0), weighted=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_glm_fisher_property(n, d, K, family, fit_intercept, ref_class, eta_max, weighted, dtype,
                             seed):
    rng = np.random.default_rng(seed)
    fit_intercept = fit_intercept or d == 0
    K = 1 if family == BINOMIAL else K
    ref_class = ref_class if family == MULTINOMIAL and K > 1 and ref_class < K else -1
    X, params, w = glm_problem(family, n, d, K, np.float64, rng, fit_intercept, ref_class, weighted)
    if n:  # scale so that max |eta| = eta_max: saturating probabilities, large poisson means
        eta = np.abs(eta64(X, params)).max()
        params = params * (eta_max / eta if eta > 0 else 0.0)
    X, params, w = X.astype(dtype), params.astype(dtype), w.astype(dtype)
    want = run_glm("numpy", X, params, family, w, fit_intercept, ref_class)
    bound = fisher_bound(X, params, family, w, fit_intercept, ref_class)
    rtol = glm_rtol(X, params, fit_intercept, dtype)
    P = want[0].shape[0]
    u = upper(P)
    assert_psd_ish(mirror(want[0]), "reference")
    for backend, flag in itertools.product(compiled_backends(), (True, False)):
        err = f"{backend} blas={flag}"
        with blas_mode(flag):
            full, diag, vp, v = run_glm(backend, X, params, family, w, fit_intercept, ref_class)
        assert np.isfinite(full[u]).all() and np.isfinite(diag).all() and np.isfinite(vp).all(), err
        assert_within(full[u], want[0][u], bound[u], rtol, err + " glm_fisher")
        assert_within(diag, want[1], np.diag(bound), rtol, err + " glm_fisher_diag")
        assert_within(vp, want[2], (bound @ np.abs(v).ravel()).reshape(v.shape), rtol, err + " vp")
        assert_within(diag, np.diag(full), np.diag(bound), 2 * rtol, err + " diag vs matrix")
        assert_psd_ish(mirror(full), err)


@given(n=st.integers(0, 60), P=st.integers(1, 12), weighted=st.booleans(),
       alpha=st.floats(0.01, 10.0), beta=st.sampled_from([0.0, 0.5, 1.0]),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**32 - 1))
def test_accumulate_property(n, P, weighted, alpha, beta, scale, dtype, seed):
    # starting from a PSD accumulator, alpha, beta >= 0 keep it PSD
    rng = np.random.default_rng(seed)
    S = (scale * rng.standard_normal((n, P))).astype(dtype)
    w = sample_weights(n, dtype, rng) if weighted else np.empty(0, dtype)
    Q = (scale * rng.standard_normal((P, 3))).astype(np.float64)
    acc0 = (Q @ Q.T).astype(dtype)
    acc0[lower(P)] = SENTINEL
    want = acc0.copy()
    ref.fisher_accumulate(S, w, alpha, beta, want)
    bound = acc_bound(S, w, alpha, beta, acc0)
    rtol = acc_rtol(dtype, n)
    u = upper(P)
    # rounding moves the eigenvalues by at most the error's Frobenius norm
    slack = 2 * rtol * np.linalg.norm(mirror(np.where(np.triu(np.ones((P, P), bool)), bound, 0)))
    for backend, flag in itertools.product(compiled_backends(), (True, False)):
        err = f"{backend} blas={flag}"
        got = acc0.copy()
        with blas_mode(flag):
            kernels(backend).fisher_accumulate(S, w, alpha, beta, got)
        np.testing.assert_array_equal(got[lower(P)], SENTINEL, err_msg=err)
        assert_within(got[u], want[u], bound[u], rtol, err)
        assert_psd_ish(mirror(got), err, slack)


# ---------------------------------------------------------------- threads


@pytest.mark.parametrize("name", ["c", "numba"])
def test_diag_and_vp_do_not_depend_on_the_thread_count(name, dtype, rng):
    if name == "c" and "c" not in fastmle.available_backends():
        pytest.skip("C backend unavailable")
    if _dispatch.max_threads() < 2:
        pytest.skip("one thread only here")
    previous = fastmle.get_num_threads()
    try:
        for family in range(4):
            # n * D * K >= 32768 for every family: the C kernels' threads engage
            ref_class = 1 if family == MULTINOMIAL else -1
            X, params, w = glm_problem(family, 5000, 7, 4, dtype, rng, True, ref_class, weighted=True)
            Kp, D = kept(family, params.shape[0], ref_class), 8
            v = rng.standard_normal((Kp, D))
            results = []
            for threads in (1, 2, 1, 2):
                fastmle.set_num_threads(threads)
                mod = kernels(name)
                diag = np.full(Kp * D, np.nan)
                vp = np.full((Kp, D), np.nan)
                mod.glm_fisher_diag(X, params, np.empty(0, X.dtype), family, w, 1, ref_class, diag)
                mod.glm_fisher_vp(X, params, np.empty(0, X.dtype), family, w, 1, ref_class, v, vp)
                results.append((diag, vp))
            for diag, vp in results[1:]:
                np.testing.assert_array_equal(diag, results[0][0], err_msg=f"{name} {FAMILIES[family]} diag")
                np.testing.assert_array_equal(vp, results[0][1], err_msg=f"{name} {FAMILIES[family]} vp")
            want = run_glm("numpy", X, params, family, w, True, ref_class)
            bound = fisher_bound(X, params, family, w, True, ref_class)
            rtol = glm_rtol(X, params, True, dtype)
            assert_within(results[0][0], want[1], np.diag(bound), rtol, name + " diag")
    finally:
        fastmle.set_num_threads(previous)
