"""Reference Fisher-information kernels in plain numpy: the oracle for
fastmle/_numba/fisher.py and csrc/fisher_kernels.h (same names, same
argument order).

Two kinds of kernels:

- accumulation from per-sample score vectors ``scores`` (n, P):
  ``acc <- beta * acc + alpha * sum_i w_i s_i s_i^T`` (or its diagonal),
  with weights w_i >= 0 (the compiled kernels scale rows by sqrt(w_i));
  beta == 0 overwrites acc;
- the exact (expected) Fisher information of a GLM family (see
  fastmle/reference/glm.py for the layout of ``X`` and ``params``), without
  per-sample scores: ``sum_i w_i M_i kron xt_i xt_i^T``, where ``xt_i`` is
  the row x_i followed by a 1 when the model has an intercept, and ``M_i``
  is the covariance of the response given eta_i (the Fisher information of
  the natural parameter; eta_i includes the offset, when given):

  =========== ===============================
  family      M_i
  =========== ===============================
  multinomial diag(p_i) - p_i p_i^T
  binomial    p_i (1 - p_i)
  gaussian    1 (the caller divides by sigma^2)
  poisson     mu_i = exp(eta_i)
  =========== ===============================

  For the single-output families with several outputs (multi-output
  gaussian / poisson), M_i is diagonal. ``ref >= 0`` (multinomial only)
  drops class ``ref``: the baseline-category parameterization, whose
  parameters for that class are fixed at 0.

Parameter order of the flattened Fisher matrix (P = K' * D, D = d + 1 with
an intercept, d without; K' the outputs without ``ref``): index ``k * D + j``
is output k's (in order, skipping ref) coefficient of feature j, and
``j = d`` its intercept. Symmetric matrices are written as their upper
triangle (j >= i): the lower triangle of ``acc`` / ``out`` is left as it
was, and the caller mirrors it on read.

Everything here is accumulated in float64; ``glm_fisher*`` write float64
whatever X's dtype, the accumulators keep the accumulator's dtype.
"""
import numpy as np

from .glm import BINOMIAL, GAUSSIAN, MULTINOMIAL, _linear_predictor, _sigmoid


def _weighted(scores, sample_weight):
    s = scores.astype(np.float64)
    w = sample_weight.astype(np.float64) if sample_weight.size else np.ones(s.shape[0])
    return s, w


def _scaled(acc, beta):
    """beta * acc in float64; beta == 0 overwrites (as BLAS: NaN in acc is dropped)."""
    return np.zeros(acc.shape) if beta == 0 else beta * acc.astype(np.float64)


def fisher_accumulate(scores, sample_weight, alpha, beta, acc):
    """Upper triangle of acc <- beta * acc + alpha * S^T diag(w) S."""
    s, w = _weighted(scores, sample_weight)
    upper = np.triu(np.ones(acc.shape, bool))
    update = _scaled(acc, beta) + alpha * (s.T @ (w[:, None] * s))
    acc[upper] = update[upper]


def fisher_accumulate_diag(scores, sample_weight, alpha, beta, acc):
    """acc <- beta * acc + alpha * sum_i w_i s_i**2 (elementwise)."""
    s, w = _weighted(scores, sample_weight)
    acc[...] = _scaled(acc, beta) + alpha * (w @ (s * s))


def _design(X, fit_intercept):
    Xt = X.astype(np.float64)
    return np.hstack([Xt, np.ones((Xt.shape[0], 1))]) if fit_intercept else Xt


def response_covariance(X, params, offset, family, ref):
    """M (n, K', K') of the module docstring, float64."""
    eta = _linear_predictor(X, params, offset).astype(np.float64)
    K = eta.shape[1]
    with np.errstate(over="ignore"):
        if family == MULTINOMIAL:
            e = np.exp(eta - eta.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            keep = [k for k in range(K) if k != ref]
            p = p[:, keep]
            return np.einsum("nk,kl->nkl", p, np.eye(len(keep))) - p[:, :, None] * p[:, None, :]
        if family == BINOMIAL:
            v = _sigmoid(eta) * _sigmoid(-eta)
        elif family == GAUSSIAN:
            v = np.ones_like(eta)
        else:
            v = np.exp(eta)
    return np.einsum("nk,kl->nkl", v, np.eye(K))


def _exact_fisher(X, params, offset, family, sample_weight, fit_intercept, ref):
    """The full symmetric (P, P) exact Fisher, block by block."""
    M = response_covariance(X, params, offset, family, ref)
    if sample_weight.size:
        M = M * sample_weight.astype(np.float64)[:, None, None]
    Xt = _design(X, fit_intercept)
    Kp, D = M.shape[1], Xt.shape[1]
    F = np.empty((Kp * D, Kp * D))
    for a in range(Kp):
        for b in range(Kp):
            F[a * D:(a + 1) * D, b * D:(b + 1) * D] = Xt.T @ (M[:, a, b][:, None] * Xt)
    return F


def glm_fisher(X, params, offset, family, sample_weight, fit_intercept, ref, out):
    """Upper triangle of out (P, P) = the exact Fisher information."""
    F = _exact_fisher(X, params, offset, family, sample_weight, fit_intercept, ref)
    upper = np.triu(np.ones(out.shape, bool))
    out[upper] = F[upper]


def glm_fisher_diag(X, params, offset, family, sample_weight, fit_intercept, ref, out):
    """out (P,) = the diagonal of the exact Fisher information."""
    M = response_covariance(X, params, offset, family, ref)
    if sample_weight.size:
        M = M * sample_weight.astype(np.float64)[:, None, None]
    Xt = _design(X, fit_intercept)
    diag = np.einsum("nkk->nk", M)  # (n, K')
    out[...] = (diag.T @ (Xt * Xt)).ravel()


def glm_fisher_vp(X, params, offset, family, sample_weight, fit_intercept, ref, v, out):
    """out (K', D) = F @ v for v (K', D) (both float64, the flattened order),
    without forming F: sum_i w_i (M_i u_i) kron xt_i with u_i = v @ xt_i."""
    M = response_covariance(X, params, offset, family, ref)
    if sample_weight.size:
        M = M * sample_weight.astype(np.float64)[:, None, None]
    Xt = _design(X, fit_intercept)
    u = Xt @ v.T  # (n, K')
    t = np.einsum("nkl,nl->nk", M, u)
    out[...] = t.T @ Xt
