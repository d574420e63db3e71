"""Numba kernels of the "fisher" family: Fisher information from per-sample
scores, and the exact Fisher of the GLM families (matrix, diagonal, product
with a vector).

Mirrors fastmle/reference/fisher.py (the specification: layouts, parameter
order, the covariance M_i of each family) and csrc/fisher_kernels.h. The
accumulator's sums are symmetric rank-k updates (syrk) that go to the BLAS
numpy uses (see blas.py and fastmle/_blas.py), or the kernels' own loops
without one; the exact Fisher (glm_fisher) is summed in register tiles as C
sums it. The entry points take the reference's arguments (fisher_accumulate,
at the bottom, first reads the BLAS mode).
"""
import numpy as np
from numba import njit, prange

from ..reference.glm import BINOMIAL, GAUSSIAN, MULTINOMIAL  # not .glm: importing it compiles glm
from . import blas as _cblas
from .simd import lanes, vadd, vfma, vload, vmul, vsplat, vstore
from .special import _ENTRY, _ROW, _SUM, _sigs
from .vexp import vexp

SYRK_ROWS = 256  # rows of sqrt(w)-scaled scores per syrk call (as csrc/fisher.c)
# The exact Fisher's blocking (csrc/fisher.c): rows per block, partial sums
# (at most, and at most FISHER_LANE_BUDGET doubles in all), register tile.
FISHER_ROWS = 256
FISHER_LANES = 4
FISHER_LANE_BUDGET = 1 << 25
TILE_J, TILE_L = 4, 8


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
def _row_terms(X, i, params, offset, family, ref, sample_weight, xt, eta, v):
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
        if offset.shape[0]:
            eta[k] += offset[i]
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


@njit(inline="always", **_ROW)
def _tri(a, b, n):
    """Index of the pair (a, b), a <= b, in the row-major upper triangle of n x n."""
    return a * n - a * (a - 1) // 2 + (b - a)


@njit(inline="always", **_ROW)
def _fisher_tile(A, B, w, nb, Dp, j0, l0, G):
    """G (Dp x Dp, flat; one output pair's block) += sum_r w[r] A[r] B[r]^T
    for the 4 x 8 tile at (j0, l0), from packed panels of the rows' xt: A
    (flat nb x 4: xt_r[j0:j0+4]) and B (flat nb x 8: xt_r[l0:l0+8]), and the
    pair's covariance terms w (nb). The 32 sums stay in vector registers
    (four of 8 doubles with AVX-512, eight of 4 with AVX2) while the rows
    stream by; each element is csrc's fisher_tile arithmetic: B's row times
    w[r] rounded, then one fused multiply-add per row, in row order."""
    if lanes(8) == 8:
        c0 = c1 = c2 = c3 = vsplat(0.0)
        for r in range(nb):
            b = vmul(vload(B, 8 * r), vsplat(w[r]))
            c0 = vfma(vsplat(A[4 * r]), b, c0)
            c1 = vfma(vsplat(A[4 * r + 1]), b, c1)
            c2 = vfma(vsplat(A[4 * r + 2]), b, c2)
            c3 = vfma(vsplat(A[4 * r + 3]), b, c3)
        for jj, c in enumerate((c0, c1, c2, c3)):
            at = (j0 + jj) * Dp + l0
            vstore(G, at, vadd(vload(G, at), c))
    else:
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = vsplat(0.0)
        for r in range(nb):
            s = vsplat(w[r])
            b0 = vmul(vload(B, 8 * r), s)
            b1 = vmul(vload(B, 8 * r + 4), s)
            a = vsplat(A[4 * r])
            c00, c01 = vfma(a, b0, c00), vfma(a, b1, c01)
            a = vsplat(A[4 * r + 1])
            c10, c11 = vfma(a, b0, c10), vfma(a, b1, c11)
            a = vsplat(A[4 * r + 2])
            c20, c21 = vfma(a, b0, c20), vfma(a, b1, c21)
            a = vsplat(A[4 * r + 3])
            c30, c31 = vfma(a, b0, c30), vfma(a, b1, c31)
        for jj, (c, e) in enumerate(((c00, c01), (c10, c11), (c20, c21), (c30, c31))):
            at = (j0 + jj) * Dp + l0
            vstore(G, at, vadd(vload(G, at), c))
            vstore(G, at + 4, vadd(vload(G, at + 4), e))


_FISHER_SIG = "void({T}[:, ::1], {T}[:, ::1], {T}[::1], int64, {T}[::1], int64, int64, float64[:, ::1])"


@njit(_sigs(_FISHER_SIG), fastmath=_SUM, **_ENTRY)
def glm_fisher(X, params, offset, family, sample_weight, fit_intercept, ref, out):
    """Upper triangle of out (P x P, P = K' D) = the exact Fisher information
    sum_i w_i M_i kron xt_i xt_i^T, as csrc's glm_fisher sums it: block (a,
    b) is X~^T diag(w M[:, a, b]) X~, so only the pairs a <= b of outputs
    (the diagonal ones when M_i is diagonal) are summed, each over its upper
    triangle, in 4 x 8 register tiles (_fisher_tile) from panels packed per
    block of FISHER_ROWS rows: half the multiply-adds of S^T S with S_i = p_i
    kron x_i (the numpy formulation, which this backend handed to the BLAS
    until the explicit vectors of simd.py let Numba keep a tile in
    registers). Row blocks go round-robin to FISHER_LANES partial sums, each
    summed by one thread and merged in lane order: the result does not depend
    on the thread count."""
    n, d = X.shape
    K = params.shape[0]
    D = d + (1 if fit_intercept else 0)
    Kp, ref = _kept_outputs(K, family, ref)
    R = FISHER_ROWS
    Dp = (D + TILE_L - 1) // TILE_L * TILE_L
    full = family == MULTINOMIAL  # the other families' M_i is diagonal
    npairs = Kp * (Kp + 1) // 2 if full else Kp
    ntiles = 0  # the tiles on or above the diagonal: (j0, l0) with l0 + TILE_L > j0
    for j0 in range(0, Dp, TILE_J):
        ntiles += (Dp - j0 // TILE_L * TILE_L) // TILE_L
    tiles = np.empty((ntiles, 2), np.int64)
    t = 0
    for j0 in range(0, Dp, TILE_J):
        for l0 in range(j0 // TILE_L * TILE_L, Dp, TILE_L):
            tiles[t, 0], tiles[t, 1] = j0, l0
            t += 1
    blocks = (n + R - 1) // R
    gsize = npairs * Dp * Dp
    lanes_ = min(blocks, FISHER_LANES)
    while lanes_ > 1 and lanes_ * gsize > FISHER_LANE_BUDGET:
        lanes_ -= 1
    lanes_ = max(lanes_, 1)
    njb, nlb = Dp // TILE_J, Dp // TILE_L
    G = np.zeros((lanes_, npairs, Dp * Dp))
    for lane in prange(lanes_):
        # this lane's packed panels of one row block: A[jb][r] = xt_r[4 jb :
        # 4 jb + 4], B[lb][r] = xt_r[8 lb : 8 lb + 8], and the covariance
        # terms Wt[q][r] of each pair q; xt is zero-padded to Dp
        Ap = np.empty(njb * R * TILE_J)
        Bp = np.empty(nlb * R * TILE_L)
        Wt = np.empty((max(npairs, 1), R))
        xt = np.zeros(Dp)
        eta = np.empty(K)
        v = np.empty(Kp)
        for blk in range(lane, blocks, lanes_):
            r0 = blk * R
            nb = min(R, n - r0)
            for i in range(nb):
                wi = _row_terms(X, r0 + i, params, offset, family, ref, sample_weight, xt[:D], eta, v)
                if full:
                    q = 0
                    for a in range(Kp):
                        for b in range(a, Kp):
                            Wt[q, i] = wi * ((v[a] if a == b else 0.0) - v[a] * v[b])
                            q += 1
                else:
                    for a in range(Kp):
                        Wt[a, i] = wi * v[a]
                for jb in range(njb):
                    for jj in range(TILE_J):
                        Ap[(jb * R + i) * TILE_J + jj] = xt[jb * TILE_J + jj]
                for lb in range(nlb):
                    for ll in range(TILE_L):
                        Bp[(lb * R + i) * TILE_L + ll] = xt[lb * TILE_L + ll]
            for q in range(npairs):
                for t in range(ntiles):
                    j0, l0 = tiles[t, 0], tiles[t, 1]
                    a0 = j0 // TILE_J * R * TILE_J
                    b0 = l0 // TILE_L * R * TILE_L
                    _fisher_tile(Ap[a0:a0 + nb * TILE_J], Bp[b0:b0 + nb * TILE_L], Wt[q], nb, Dp, j0, l0,
                                 G[lane, q])
    for lane in range(1, lanes_):  # lane order
        G[0] += G[lane]
    for a in range(Kp):
        for b in range(a, Kp):
            zero = not full and a != b
            g = G[0, _tri(a, b, Kp) if full else a]
            for j in range(D):
                for l in range(j if a == b else 0, D):
                    out[a * D + j, b * D + l] = 0.0 if zero else g[j * Dp + l if j <= l else l * Dp + j]


@njit(inline="always", **_ROW)
def _fisher_rows_sum(X, params, offset, family, sample_weight, fit_intercept, ref, v, out):
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
            wi = _row_terms(X, i, params, offset, family, ref, sample_weight, xt, eta, p)
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


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], {T}[::1], int64, {T}[::1], int64, int64, float64[::1])"),
      fastmath=_SUM, **_ENTRY)
def glm_fisher_diag(X, params, offset, family, sample_weight, fit_intercept, ref, out):
    """out (P) = the diagonal of the exact Fisher information."""
    _fisher_rows_sum(X, params, offset, family, sample_weight, fit_intercept, ref, np.empty((0, 0)),
                     out.reshape((-1, X.shape[1] + (1 if fit_intercept else 0))))


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], {T}[::1], int64, {T}[::1], int64, int64, float64[:, ::1], "
            "float64[:, ::1])"), fastmath=_SUM, **_ENTRY)
def glm_fisher_vp(X, params, offset, family, sample_weight, fit_intercept, ref, v, out):
    """out (K', D) = F @ v, F never formed."""
    _fisher_rows_sum(X, params, offset, family, sample_weight, fit_intercept, ref, v, out)


# ---- entry points with the reference's arguments ----

def fisher_accumulate(scores, sample_weight, alpha, beta, acc):
    """Upper triangle of acc <- beta acc + alpha S^T diag(w) S."""
    _fisher_accumulate(scores, sample_weight, alpha, beta, acc, _cblas.mode(*scores.shape))
