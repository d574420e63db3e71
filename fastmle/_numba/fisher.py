"""Numba kernels of the "fisher" family: Fisher information from per-sample
scores, and the exact Fisher of the GLM families (matrix, diagonal, product
with a vector).

Mirrors fastmle/reference/fisher.py (the specification: layouts, parameter
order, the covariance M_i of each family) and csrc/fisher_kernels.h. The
matrix-sized sums are symmetric rank-k updates (syrk) that go to the BLAS
numpy uses (see blas.py and fastmle/_blas.py), or the kernels' own loops
without one; glm_fisher differs from C's in how it sums (see there). The public functions at
the bottom read the BLAS mode and call the compiled entry points; their
arguments are the reference's.
"""
import numpy as np
from numba import njit, prange

from . import blas as _cblas
from .glm import BINOMIAL, GAUSSIAN, MULTINOMIAL
from .special import _ENTRY, _ROW, _SUM, _sigs
from .vexp import vexp

SYRK_ROWS = 256  # rows of sqrt(w)-scaled scores per syrk call (as csrc/fisher.c)
FISHER_ROWS = 1024  # rows per block of the exact Fisher's syrks


# ---- symmetric rank-k update ----

@njit(inline="always", **_ROW)
def _syrk(A, alpha, beta, C, blas):
    """Upper triangle of C (P x P, rows possibly strided) <- beta C + alpha
    A^T A for A (k x P); beta == 0 overwrites C. Through the BLAS, or: row
    a of C gets alpha A[i, a] * A[i, a:] for each row i in order (any thread
    count gives the same sums)."""
    k, P = A.shape
    if k > 0 and blas != _cblas.NONE:
        _cblas.syrk(A, alpha, beta, C, blas)
        return
    for a in prange(P):
        row = C[a]
        for b in range(a, P):
            row[b] = 0 if beta == 0 else beta * row[b]
        for i in range(k):
            c = A.dtype.type(alpha * A[i, a])
            if c != 0:
                for b in range(a, P):
                    row[b] += c * A[i, b]


# ---- accumulation from per-sample scores ----

@njit(_sigs("void({T}[:, ::1], {T}[::1], float64, float64, {T}[:, ::1], int64)"), **_ENTRY)
def _fisher_accumulate(scores, sample_weight, alpha, beta, acc, blas):
    """Upper triangle of acc <- beta acc + alpha S^T diag(w) S: one syrk,
    or with weights one per SYRK_ROWS rows of sqrt(w_i) s_i."""
    n, P = scores.shape
    if sample_weight.shape[0] == 0 or n == 0:
        _syrk(scores, alpha, beta, acc, blas)
        return
    buf = np.empty((min(SYRK_ROWS, n), P), scores.dtype)
    for r0 in range(0, n, SYRK_ROWS):
        nb = min(SYRK_ROWS, n - r0)
        for i in range(nb):
            sw = scores.dtype.type(np.sqrt(np.float64(sample_weight[r0 + i])))
            for b in range(P):
                buf[i, b] = sw * scores[r0 + i, b]
        _syrk(buf[:nb], alpha, beta if r0 == 0 else 1.0, acc, blas)


@njit(_sigs("void({T}[:, ::1], {T}[::1], float64, float64, {T}[::1])"), fastmath=_SUM, **_ENTRY)
def fisher_accumulate_diag(scores, sample_weight, alpha, beta, acc):
    """acc[j] <- beta acc[j] + alpha sum_i w_i scores[i, j]^2, summed in
    float64 over 256-column blocks that the threads share."""
    n, P = scores.shape
    for blk in prange((P + 255) // 256):
        b0 = blk * 256
        nb = min(256, P - b0)
        t = np.zeros(nb)
        for i in range(n):
            wi = np.float64(sample_weight[i]) if sample_weight.shape[0] else 1.0
            for b in range(nb):
                s = np.float64(scores[i, b0 + b])
                t[b] += wi * (s * s)
        for b in range(nb):
            acc[b0 + b] = (0.0 if beta == 0 else beta * acc[b0 + b]) + alpha * t[b]


# ---- the exact Fisher of a GLM ----

@njit(**_ROW)
def _kept_outputs(K, family, ref):
    """(K', ref): outputs without the baseline class, and ref (-1: none)."""
    if family == MULTINOMIAL and 0 <= ref < K:
        return K - 1, ref
    return K, -1


@njit(**_ROW)
def _row_terms(X, i, params, family, ref, sample_weight, xt, eta, v):
    """xt = x_i followed by 1 when len(xt) > d (the intercept's regressor);
    v (K') = the probabilities of the kept classes (multinomial) or each
    output's variance (binomial p(1-p), gaussian 1, poisson mu); eta is
    scratch (K). Returns the sample weight."""
    d = X.shape[1]
    K = params.shape[0]
    for j in range(d):
        xt[j] = X[i, j]
    if xt.shape[0] > d:
        xt[d] = 1.0
    for k in range(K):
        s = 0.0
        for j in range(d):
            s += xt[j] * params[k, j]
        eta[k] = s + params[k, d]
    if family == MULTINOMIAL:
        mx = eta[0]
        for k in range(1, K):
            mx = max(mx, eta[k])
        total = 0.0
        for k in range(K):
            eta[k] = vexp(eta[k] - mx)
            total += eta[k]
        a = 0
        for k in range(K):
            if k != ref:
                v[a] = eta[k] / total
                a += 1
    else:
        for k in range(K):
            if family == BINOMIAL:
                t = np.exp(-abs(eta[k]))  # p (1 - p), no overflow
                v[k] = t / ((1.0 + t) * (1.0 + t))
            elif family == GAUSSIAN:
                v[k] = 1.0
            else:
                v[k] = np.exp(eta[k])
    return np.float64(sample_weight[i]) if sample_weight.shape[0] else 1.0


_FISHER_SIG = "void({T}[:, ::1], {T}[:, ::1], int64, {T}[::1], int64, int64, float64[:, ::1], int64)"


@njit(_sigs(_FISHER_SIG), fastmath=_SUM, **_ENTRY)
def _glm_fisher(X, params, family, sample_weight, fit_intercept, ref, out, blas):
    """Upper triangle of out = the exact Fisher, as BLAS syrks: per block of
    FISHER_ROWS rows, one syrk of sqrt(w_i v_ia) xt_i into diagonal block a
    for each output a, and for multinomial minus one syrk of S_i = sqrt(w_i)
    v_i kron xt_i into the whole matrix: the numpy formulation's sums, in
    blocks (memory O(rows x P)). The C backend sums the same terms with its
    own register-tiled loops over output pairs (half the multiply-adds);
    written in Numba, those loops ran 3-7x slower than C's (LLVM did not keep
    the 4 x 8 tile in vector registers), slower than this BLAS route. The
    blocks are built on this thread; the syrks run on the BLAS's threads
    (idle OpenMP and OpenBLAS threads spinning on each other's cores made
    a threaded build 4x slower: 1.7 s against 0.39 s)."""
    n, d = X.shape
    K = params.shape[0]
    D = d + (1 if fit_intercept else 0)
    Kp, ref = _kept_outputs(K, family, ref)
    P = Kp * D
    full = family == MULTINOMIAL  # the other families' M_i is diagonal
    R = FISHER_ROWS
    XT = np.empty((R, D))
    V = np.empty((R, Kp))
    U = np.empty((R, D))
    S = np.empty((R if full else 0, P))
    eta = np.empty(K)
    v = np.empty(Kp)
    for a in range(P):
        for b in range(a, P):
            out[a, b] = 0.0
    for r0 in range(0, n, R):
        nb = min(R, n - r0)
        for i in range(nb):
            wi = _row_terms(X, r0 + i, params, family, ref, sample_weight, XT[i], eta, v)
            for a in range(Kp):
                V[i, a] = wi * v[a]
            if full:
                sw = np.sqrt(wi)
                for a in range(Kp):
                    c = sw * v[a]
                    for j in range(D):
                        S[i, a * D + j] = c * XT[i, j]
        for a in range(Kp):
            for i in range(nb):
                c = np.sqrt(V[i, a])
                for j in range(D):
                    U[i, j] = c * XT[i, j]
            _syrk(U[:nb], 1.0, 1.0, out[a * D:(a + 1) * D, a * D:(a + 1) * D], blas)
        if full:
            _syrk(S[:nb], -1.0, 1.0, out, blas)


@njit(inline="always", **_ROW)
def _fisher_rows_sum(X, params, family, sample_weight, fit_intercept, ref, v, out):
    """out (K' x D) = F v (v given), or the diagonal of F (v empty), as sums
    over row chunks of fixed size merged in chunk order."""
    n, d = X.shape
    K = params.shape[0]
    D = d + (1 if fit_intercept else 0)
    Kp, ref = _kept_outputs(K, family, ref)
    product = v.shape[0] > 0
    step = max(256, (n + 63) // 64)  # depends on n only (csrc/fisher.c, fm_fisher_chunk)
    chunks = (n + step - 1) // step
    partial = np.zeros((chunks, Kp, D))
    for c in prange(chunks):
        xt = np.empty(D)
        eta = np.empty(K)
        p = np.empty(Kp)
        t = np.empty(Kp)
        acc = partial[c]
        for i in range(c * step, min((c + 1) * step, n)):
            wi = _row_terms(X, i, params, family, ref, sample_weight, xt, eta, p)
            if product:
                pu = 0.0
                for a in range(Kp):
                    s = 0.0
                    for j in range(D):
                        s += v[a, j] * xt[j]
                    t[a] = s
                    pu += p[a] * s
                for a in range(Kp):  # t = w M u
                    t[a] = wi * p[a] * (t[a] - pu if family == MULTINOMIAL else t[a])
                for a in range(Kp):
                    for j in range(D):
                        acc[a, j] += t[a] * xt[j]
            else:
                for a in range(Kp):  # the diagonal of w M
                    ta = wi * (p[a] - p[a] * p[a] if family == MULTINOMIAL else p[a])
                    for j in range(D):
                        acc[a, j] += ta * (xt[j] * xt[j])
    for a in range(Kp):
        for j in range(D):
            total = 0.0
            for c in range(chunks):  # chunk order: independent of the thread count
                total += partial[c, a, j]
            out[a, j] = total


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], int64, {T}[::1], int64, int64, float64[::1])"),
      fastmath=_SUM, **_ENTRY)
def glm_fisher_diag(X, params, family, sample_weight, fit_intercept, ref, out):
    """out (P) = the diagonal of the exact Fisher information."""
    _fisher_rows_sum(X, params, family, sample_weight, fit_intercept, ref, np.empty((0, 0)),
                     out.reshape((-1, X.shape[1] + (1 if fit_intercept else 0))))


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], int64, {T}[::1], int64, int64, float64[:, ::1], "
            "float64[:, ::1])"), fastmath=_SUM, **_ENTRY)
def glm_fisher_vp(X, params, family, sample_weight, fit_intercept, ref, v, out):
    """out (K', D) = F @ v, F never formed."""
    _fisher_rows_sum(X, params, family, sample_weight, fit_intercept, ref, v, out)


# ---- entry points with the reference's arguments ----

def fisher_accumulate(scores, sample_weight, alpha, beta, acc):
    """Upper triangle of acc <- beta acc + alpha S^T diag(w) S."""
    _fisher_accumulate(scores, sample_weight, alpha, beta, acc, _cblas.mode(*scores.shape))


def glm_fisher(X, params, family, sample_weight, fit_intercept, ref, out):
    """Upper triangle of out (P, P) = the exact Fisher information."""
    _glm_fisher(X, params, family, sample_weight, fit_intercept, ref, out,
                _cblas.mode(FISHER_ROWS, out.shape[0]))

