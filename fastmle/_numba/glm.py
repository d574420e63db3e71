"""Numba kernels of the "glm" family: the likelihood families' loss, gradient
and prediction, and one minibatch SGD epoch as a single compiled call.

Mirrors fastmle/reference/glm.py (the specification: layout, formulas, the
order of the update steps) and csrc/glm_kernels.h. The linear predictor and
the batch gradient are accumulated in the element type, as BLAS does;
losses are float64. An SGD epoch's steps are sequential (each needs the
last): its threads share each step by outputs and meet at a barrier (team.py);
the full-batch kernels split the rows into chunks whose size depends only on
n, run the chunks in parallel and merge their partial sums in chunk order.
Either way the result does not depend on the thread count.
"""
import numpy as np
from numba import get_num_threads, njit, prange

from ..reference.glm import BINOMIAL, GAUSSIAN, MULTINOMIAL, POISSON  # codes of reference.glm.FAMILIES
from .simd import lanes, vfma, vload, vmerge_from, vsplat, vstore, vsum, vsum4, vzero_below
from .special import _ENTRY, _EXACT, _ROW, _SUM, _prefetch, _prefetch_l2, _same, _sigs
from .team import (_ALONE_FOR_GOOD, _DISBAND_LIMITS, _TEAM_TRIAL, ALONE, SYNC_SIZE, TOGETHER, TRIAL_ALONE,
                   TRIAL_DISBANDED, TRIAL_STOPPED, TRIAL_TEAM, _atomic_load, _compare_and_set, _monotonic_ns,
                   _team_barrier, _team_disbanded, _team_start)
from .vexp import vexp

# Rows per group in _dloss_multinomial (csrc: FM_GLM_LOSS_ROWS); its scratch
# t holds loss_scratch_size(K) float64: the group's terms, then its maxima.
LOSS_ROWS = 16


@njit(**_ROW)
def loss_scratch_size(K):
    return LOSS_ROWS * (K + 1)
_SEQ = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


# The batch's two products, eta = X_b W^T and grad = G^T X_b, are small
# matrix products (32 x 100 x 10 in the benchmark) repeated thousands of times
# per epoch. They are written with explicit vectors (simd.py), as csrc writes
# them with gcc's: LLVM's vectorizer kept the backward product's sums in
# memory and left scalar remainders (34% slower on its own). Each element's
# arithmetic is fixed by d alone, whichever block, row range or column range
# computes it, and is csrc's: a dot product is one vector sum per lane over
# the whole vectors, then a last vector ending at d whose lanes already
# summed are zeroed, then vsum's tree; a gradient element is one multiply-add
# per row, in row order.


@njit(inline="always", **_ROW)
def _vector_from(j, d, L):
    """Where the vector for a row's elements from j on starts (d >= L), and
    its first lane not summed before: a vector that would pass d ends at d
    instead, and its lanes below `first` were summed by the one before."""
    if j + L > d:
        return d - L, j + L - d
    return j, 0


@njit(**_ROW)
def _dot_4x4(x0, x1, x2, x3, w0, w1, w2, w3):
    """The 16 dot products of rows x0..x3 with w0..w3 (length d >= lanes),
    in the element type: each loaded vector feeds four multiply-adds."""
    L = lanes(x0.itemsize)
    d = x0.shape[0]
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = vsplat(x0.dtype.type(0))
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = a00
    j = 0
    while j < d:
        j, first = _vector_from(j, d, L)
        v0 = vzero_below(vload(w0, j), first)
        v1 = vzero_below(vload(w1, j), first)
        v2 = vzero_below(vload(w2, j), first)
        v3 = vzero_below(vload(w3, j), first)
        x = vzero_below(vload(x0, j), first)
        a00, a01, a02, a03 = vfma(x, v0, a00), vfma(x, v1, a01), vfma(x, v2, a02), vfma(x, v3, a03)
        x = vzero_below(vload(x1, j), first)
        a10, a11, a12, a13 = vfma(x, v0, a10), vfma(x, v1, a11), vfma(x, v2, a12), vfma(x, v3, a13)
        x = vzero_below(vload(x2, j), first)
        a20, a21, a22, a23 = vfma(x, v0, a20), vfma(x, v1, a21), vfma(x, v2, a22), vfma(x, v3, a23)
        x = vzero_below(vload(x3, j), first)
        a30, a31, a32, a33 = vfma(x, v0, a30), vfma(x, v1, a31), vfma(x, v2, a32), vfma(x, v3, a33)
        j += L
    return (vsum4(a00, a01, a02, a03) + vsum4(a10, a11, a12, a13) + vsum4(a20, a21, a22, a23) +
            vsum4(a30, a31, a32, a33))


@njit(**_ROW)
def _dot_4x1(x0, x1, x2, x3, w):
    """The 4 dot products of rows x0..x3 with w, as _dot_4x4."""
    L = lanes(x0.itemsize)
    d = x0.shape[0]
    a0 = a1 = a2 = a3 = vsplat(x0.dtype.type(0))
    j = 0
    while j < d:
        j, first = _vector_from(j, d, L)
        v = vzero_below(vload(w, j), first)
        a0 = vfma(vzero_below(vload(x0, j), first), v, a0)
        a1 = vfma(vzero_below(vload(x1, j), first), v, a1)
        a2 = vfma(vzero_below(vload(x2, j), first), v, a2)
        a3 = vfma(vzero_below(vload(x3, j), first), v, a3)
        j += L
    return vsum(a0), vsum(a1), vsum(a2), vsum(a3)


@njit(fastmath=_EXACT, **_ROW)
def _dot(x, w):
    """x . w as _dot_4x4 computes it; rows shorter than a vector: one
    multiply-add per element, in order."""
    L = lanes(x.itemsize)
    d = x.shape[0]
    if d < L:
        s = x.dtype.type(0)
        for j in range(d):
            s = x[j] * w[j] + s
        return s
    a = vsplat(x.dtype.type(0))
    j = 0
    while j < d:
        j, first = _vector_from(j, d, L)
        a = vfma(vzero_below(vload(x, j), first), vzero_below(vload(w, j), first), a)
        j += L
    return vsum(a)


@njit(**_ROW)
def _forward(X, rows, params, eta, fetch_rows):
    """eta[r, k] = X[rows[r]] . params[k, :d] + params[k, d]: blocks of four
    rows by four outputs, then by one output, then the last rows one at a
    time (rows shorter than a vector: _dot's sequential sums). With each
    block of rows, the cache lines of the same rows of fetch_rows (as long as
    rows) are requested: the SGD epoch passes the next batch's rows, the
    other callers rows itself."""
    d = X.shape[1]
    K = params.shape[0]
    nb = rows.shape[0]
    K4 = K - K % 4
    l2 = not _same(fetch_rows, rows)  # another batch's rows
    nb4 = nb - nb % 4 if d >= lanes(X.itemsize) else 0
    for r in range(0, nb4, 4):
        _prefetch_rows(X, fetch_rows[r:r + 4], l2)
        x0 = X[rows[r], :]
        x1 = X[rows[r + 1], :]
        x2 = X[rows[r + 2], :]
        x3 = X[rows[r + 3], :]
        for k in range(0, K4, 4):
            a = _dot_4x4(x0, x1, x2, x3, params[k, :d], params[k + 1, :d], params[k + 2, :d], params[k + 3, :d])
            for q in range(4):
                for c in range(4):
                    eta[r + q, k + c] = a[4 * q + c] + params[k + c, d]
        for k in range(K4, K):
            a = _dot_4x1(x0, x1, x2, x3, params[k, :d])
            for q in range(4):
                eta[r + q, k] = a[q] + params[k, d]
    for r in range(nb4, nb):
        _prefetch_rows(X, fetch_rows[r:r + 1], l2)
        x = X[rows[r], :]
        for k in range(K):
            eta[r, k] = _dot(x, params[k, :d]) + params[k, d]


@njit(**_ROW)
def _sigmoid(v):
    e = np.exp(-abs(v))
    return 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)


@njit(fastmath=_SUM, **_ROW)
def _softmax_terms(e, t):
    """t = exp(e - max e) in float64; returns (max e, sum t)."""
    m = np.float64(e[0])
    for k in range(1, e.shape[0]):
        m = max(m, np.float64(e[k]))
    for k in range(e.shape[0]):
        t[k] = vexp(np.float64(e[k]) - m)
    s = 0.0
    for k in range(e.shape[0]):
        s += t[k]
    return m, s


@njit(**_ROW)
def _all_finite(G):
    """Whether the stored loss gradients G (rows, K) are finite: an overflowed
    one stops the SGD epoch (the batch makes no update)."""
    for r in range(G.shape[0]):
        for k in range(G.shape[1]):
            if not np.isfinite(G[r, k]):
                return False
    return True


@njit(fastmath=_SUM, **_ROW)
def _exp_all(t):
    for i in range(t.shape[0]):
        t[i] = vexp(t[i])


@njit(**_ROW)
def _dloss_multinomial(eta, labels, sample_weight, G, t):
    """_dloss for the multinomial family, in groups of LOSS_ROWS rows: a
    group's exponentials exp(e - max e) run as one flat loop of rows x K
    terms, where one loop per row would leave a scalar remainder in every
    row. Unweighted, the group's log sum exp terms take one log of the
    product of its sums (each in [1, K]), where a log per row cost 8 ns."""
    K = eta.shape[1]
    total = 0.0
    m = t[LOSS_ROWS * K:]
    weighted = sample_weight.shape[0] > 0
    for r0 in range(0, eta.shape[0], LOSS_ROWS):
        rows = min(LOSS_ROWS, eta.shape[0] - r0)
        product = 1.0  # of the unweighted rows' sums
        for r in range(rows):  # NaN is skipped by the max, caught by the sum
            e = eta[r0 + r]
            m[r] = np.float64(e[0])
            for k in range(1, K):
                m[r] = max(m[r], np.float64(e[k]))
            for k in range(K):
                t[r * K + k] = np.float64(e[k]) - m[r]
        _exp_all(t[:rows * K])
        for r in range(rows):
            w = np.float64(sample_weight[r0 + r]) if weighted else 1.0
            e = eta[r0 + r]
            s = 0.0
            for k in range(K):
                s += t[r * K + k]
            y = labels[r0 + r]
            if weighted:
                total += w * (m[r] + np.log(s) - np.float64(e[y]))
            else:
                total += m[r] - np.float64(e[y])
                product *= s
            ws = w / s
            for k in range(K):
                G[r0 + r, k] = ws * t[r * K + k]
            G[r0 + r, y] -= w
        if not weighted:
            total += np.log(product)
    return total


@njit(**_ROW)
def _dloss(eta, labels, targets, sample_weight, family, G, t):
    """G[r] = w * d loss / d eta for the rows of eta, whose labels (or
    targets) and weights are the first rows of those arrays, every row
    written even where not finite (the full-batch gradient sums them all,
    as the reference does); returns sum w * loss. t: float64 scratch of
    loss_scratch_size(K)."""
    if family == MULTINOMIAL:
        return _dloss_multinomial(eta, labels, sample_weight, G, t)
    K = eta.shape[1]
    total = 0.0
    for r in range(eta.shape[0]):
        w = np.float64(sample_weight[r]) if sample_weight.shape[0] else 1.0
        e = eta[r]
        li = 0.0
        for k in range(K):
            v = np.float64(e[k])
            y = np.float64(targets[r, k])
            if family == BINOMIAL:
                li += max(v, 0.0) + np.log1p(np.exp(-abs(v))) - y * v
                g = _sigmoid(v) - y
            elif family == GAUSSIAN:
                g = v - y
                li += 0.5 * g * g
            else:
                mu = np.exp(v)
                li += mu - y * v
                g = mu - y
            G[r, k] = w * g
        total += w * li
    return total


@njit(**_ROW)
def _bwd_4x4(X, rows, G, grad, j):
    """grad[c, j:j + 4 lanes] += sum over the rows of G[r, c] X[rows[r], j:...]
    for the 4 outputs c of G and grad: 16 sums kept in registers across the
    rows, each loaded vector of x feeding four multiply-adds."""
    L = lanes(X.itemsize)
    g0, g1, g2, g3 = grad[0], grad[1], grad[2], grad[3]
    a00, a01, a02, a03 = vload(g0, j), vload(g0, j + L), vload(g0, j + 2 * L), vload(g0, j + 3 * L)
    a10, a11, a12, a13 = vload(g1, j), vload(g1, j + L), vload(g1, j + 2 * L), vload(g1, j + 3 * L)
    a20, a21, a22, a23 = vload(g2, j), vload(g2, j + L), vload(g2, j + 2 * L), vload(g2, j + 3 * L)
    a30, a31, a32, a33 = vload(g3, j), vload(g3, j + L), vload(g3, j + 2 * L), vload(g3, j + 3 * L)
    for r in range(rows.shape[0]):
        x = X[rows[r]]
        x0, x1, x2, x3 = vload(x, j), vload(x, j + L), vload(x, j + 2 * L), vload(x, j + 3 * L)
        a = vsplat(G[r, 0])
        a00, a01, a02, a03 = vfma(a, x0, a00), vfma(a, x1, a01), vfma(a, x2, a02), vfma(a, x3, a03)
        a = vsplat(G[r, 1])
        a10, a11, a12, a13 = vfma(a, x0, a10), vfma(a, x1, a11), vfma(a, x2, a12), vfma(a, x3, a13)
        a = vsplat(G[r, 2])
        a20, a21, a22, a23 = vfma(a, x0, a20), vfma(a, x1, a21), vfma(a, x2, a22), vfma(a, x3, a23)
        a = vsplat(G[r, 3])
        a30, a31, a32, a33 = vfma(a, x0, a30), vfma(a, x1, a31), vfma(a, x2, a32), vfma(a, x3, a33)
    vstore(g0, j, a00), vstore(g0, j + L, a01), vstore(g0, j + 2 * L, a02), vstore(g0, j + 3 * L, a03)
    vstore(g1, j, a10), vstore(g1, j + L, a11), vstore(g1, j + 2 * L, a12), vstore(g1, j + 3 * L, a13)
    vstore(g2, j, a20), vstore(g2, j + L, a21), vstore(g2, j + 2 * L, a22), vstore(g2, j + 3 * L, a23)
    vstore(g3, j, a30), vstore(g3, j + L, a31), vstore(g3, j + 2 * L, a32), vstore(g3, j + 3 * L, a33)


@njit(**_ROW)
def _bwd_1x4(X, rows, G, y, j):
    """y[j:j + 4 lanes] += sum over the rows of G[r] X[rows[r], j:...] (one
    output: G is its column)."""
    L = lanes(X.itemsize)
    a0, a1, a2, a3 = vload(y, j), vload(y, j + L), vload(y, j + 2 * L), vload(y, j + 3 * L)
    for r in range(rows.shape[0]):
        x = X[rows[r]]
        a = vsplat(G[r])
        a0, a1, a2, a3 = vfma(a, vload(x, j), a0), vfma(a, vload(x, j + L), a1), \
            vfma(a, vload(x, j + 2 * L), a2), vfma(a, vload(x, j + 3 * L), a3)
    vstore(y, j, a0), vstore(y, j + L, a1), vstore(y, j + 2 * L, a2), vstore(y, j + 3 * L, a3)


@njit(**_ROW)
def _bwd_1x1(X, rows, G, y, j, first):
    """y[j + first:j + lanes] += sum over the rows of G[r] X[rows[r], ...]: one
    vector whose lanes below `first` (columns outside the range) keep y's
    values."""
    old = vload(y, j)
    a = old
    for r in range(rows.shape[0]):
        a = vfma(vsplat(G[r]), vload(X[rows[r]], j), a)
    vstore(y, j, vmerge_from(first, a, old))


@njit(**_ROW)
def _bwd_4x1(X, rows, G, grad, j, first):
    """_bwd_1x1 for the 4 outputs of G and grad at once."""
    g0, g1, g2, g3 = grad[0], grad[1], grad[2], grad[3]
    o0, o1, o2, o3 = vload(g0, j), vload(g1, j), vload(g2, j), vload(g3, j)
    a0, a1, a2, a3 = o0, o1, o2, o3
    for r in range(rows.shape[0]):
        x = vload(X[rows[r]], j)
        a0, a1 = vfma(vsplat(G[r, 0]), x, a0), vfma(vsplat(G[r, 1]), x, a1)
        a2, a3 = vfma(vsplat(G[r, 2]), x, a2), vfma(vsplat(G[r, 3]), x, a3)
    vstore(g0, j, vmerge_from(first, a0, o0)), vstore(g1, j, vmerge_from(first, a1, o1))
    vstore(g2, j, vmerge_from(first, a2, o2)), vstore(g3, j, vmerge_from(first, a3, o3))


@njit(fastmath=_EXACT, **_ROW)
def _bwd_cols(X, rows, G, grad):
    """Columns [0, d) of grad += G.T @ X[rows]: blocks of four vectors
    (four outputs at a time, then one), single vectors, then a vector ending
    at d, or single columns where rows are shorter than a vector."""
    L = lanes(X.itemsize)
    K = grad.shape[0]
    K4 = K - K % 4
    jd = X.shape[1]
    j = 0
    while j + 4 * L <= jd:
        for k in range(0, K4, 4):
            _bwd_4x4(X, rows, G[:, k:k + 4], grad[k:k + 4], j)
        for k in range(K4, K):
            _bwd_1x4(X, rows, G[:, k], grad[k], j)
        j += 4 * L
    while j < jd and jd >= L:
        first = 0
        if j + L > jd:  # the last vector ends at jd
            first = j + L - jd
            j = jd - L
        for k in range(0, K4, 4):
            _bwd_4x1(X, rows, G[:, k:k + 4], grad[k:k + 4], j, first)
        for k in range(K4, K):
            _bwd_1x1(X, rows, G[:, k], grad[k], j, first)
        j += L
    for j in range(j, jd):  # rows shorter than a vector
        for k in range(K):
            s = grad[k, j]
            for r in range(rows.shape[0]):
                s = G[r, k] * X[rows[r], j] + s
            grad[k, j] = s


@njit(**_ROW)
def _backward(X, rows, G, grad):
    """grad += [G.T @ X[rows], the column sums of G] (column d, the
    intercept's, is the sums). Each element is one multiply-add per row, in
    row order, in a vector lane or a scalar alike: the same arithmetic in
    whichever block of outputs an element falls."""
    d = X.shape[1]
    _bwd_cols(X, rows, G, grad)
    for r in range(rows.shape[0]):
        for k in range(grad.shape[0]):
            grad[k, d] += G[r, k]


@njit(**_ROW)
def _prefetch_rows(X, rows, l2):
    """Ask for the cache lines of X[rows] (the next batch's rows: a random
    gather from memory would otherwise wait for each row in turn), into L2
    only when l2: see csrc's prefetch_rows for why the SGD epoch's next batch
    goes there."""
    for r in range(rows.shape[0]):
        x = X[rows[r]]
        for j in range(0, x.shape[0], 64 // x.itemsize):
            if l2:
                _prefetch_l2(x, j)
            else:
                _prefetch(x, j)


@njit(**_ROW)
def _gather_samples(perm, labels, targets, sample_weight):
    """The epoch's labels, targets and weights in the order of perm, gathered
    in one pass before the batches: read inside the batch loop, each would be
    a cache miss the loss waits for (measured: over half of the loss time).
    Empty arrays stay empty."""
    labels_p = labels[perm] if labels.shape[0] else labels
    targets_p = np.empty((perm.shape[0] if targets.shape[0] else 0, targets.shape[1]), targets.dtype)
    for r in range(targets_p.shape[0]):
        targets_p[r] = targets[perm[r]]
    weight_p = sample_weight[perm] if sample_weight.shape[0] else sample_weight
    return labels_p, targets_p, weight_p


@njit(**_ROW)
def _chunk_rows(n, P):
    """Rows per chunk of the full-batch kernels: depends on n and the number
    of parameters P only. At most 64 chunks, fewer when their partial
    gradients (chunks x P) would pass 4M elements."""
    max_chunks = min(64, max(1, (1 << 22) // max(P, 1)))
    return max(256, (n + max_chunks - 1) // max_chunks)


# ---- X in compressed sparse rows (data, int32 indices, int64 indptr) ----

@njit(**_ROW)
def _forward_csr(data, indices, indptr, rows, params, eta):
    """eta[r, k] = X[rows[r]] . params[k, :d] + params[k, d], X in CSR."""
    d = params.shape[1] - 1
    K = params.shape[0]
    for r in range(rows.shape[0]):
        i = rows[r]
        for k in range(K):
            eta[r, k] = params[k, d]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            j = indices[p]
            for k in range(K):
                eta[r, k] += v * params[k, j]


@njit(**_ROW)
def _backward_csr(data, indices, indptr, rows, G, grad):
    """grad[:, :d] += G.T @ X[rows] (present features only), grad[:, d] +=
    the column sums of G, X in CSR."""
    d = grad.shape[1] - 1
    K = grad.shape[0]
    for r in range(rows.shape[0]):
        i = rows[r]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            j = indices[p]
            for k in range(K):
                grad[k, j] += v * G[r, k]
        for k in range(K):
            grad[k, d] += G[r, k]


# ---- the full-batch kernels, for dense X or CSR (indptr not empty) ----

@njit(**_ROW)
def _forward_any(X, data, indices, indptr, rows, params, eta):
    if indptr.shape[0]:
        _forward_csr(data, indices, indptr, rows, params, eta)
    else:
        _forward(X, rows, params, eta, rows)


@njit(**_ROW)
def _add_offset(offset, r0, eta):
    """eta[r, k] += offset[r0 + r] (offset empty: none), in the element type."""
    if offset.shape[0]:
        for r in range(eta.shape[0]):
            for k in range(eta.shape[1]):
                eta[r, k] += offset[r0 + r]


@njit(**_ROW)
def _backward_any(X, data, indices, indptr, rows, G, grad):
    if indptr.shape[0]:
        _backward_csr(data, indices, indptr, rows, G, grad)
    else:
        _backward(X, rows, G, grad)


# inline="always": their prange loops must land in the parallel entry points

@njit(inline="always", **_ROW)
def _loss_grad_any(X, data, indices, indptr, n, labels, targets, sample_weight, params, offset,
                   family, loss, grad):
    K = params.shape[0]
    step = _chunk_rows(n, params.size)
    chunks = (n + step - 1) // step
    want_grad = grad.shape[0] > 0
    losses = np.zeros(chunks)
    partial = np.zeros((chunks if want_grad else 0, K, params.shape[1]), dtype=params.dtype)
    for c in prange(chunks):
        r0 = c * step
        r1 = min(r0 + step, n)
        rows = np.arange(r0, r1)
        eta = np.empty((r1 - r0, K), dtype=params.dtype)
        G = np.empty_like(eta)
        _forward_any(X, data, indices, indptr, rows, params, eta)
        _add_offset(offset, r0, eta)
        losses[c] = _dloss(eta, labels[r0:r1] if labels.shape[0] else labels,
                           targets[r0:r1] if targets.shape[0] else targets,
                           sample_weight[r0:r1] if sample_weight.shape[0] else sample_weight,
                           family, G, np.empty(loss_scratch_size(K)))
        if want_grad:
            _backward_any(X, data, indices, indptr, rows, G, partial[c])
    total = 0.0
    for c in range(chunks):  # chunk order: independent of the thread count
        total += losses[c]
    loss[0] = total
    if want_grad:
        grad[:] = 0
        for c in range(chunks):
            grad += partial[c]


@njit(inline="always", **_ROW)
def _predict_any(X, data, indices, indptr, n, params, offset, family, out):
    K = params.shape[0]
    step = _chunk_rows(n, params.size)
    for c in prange((n + step - 1) // step):
        r0 = c * step
        r1 = min(r0 + step, n)
        eta = out[r0:r1]
        _forward_any(X, data, indices, indptr, np.arange(r0, r1), params, eta)
        _add_offset(offset, r0, eta)
        t = np.empty(K)
        for r in range(r1 - r0):
            e = eta[r]
            if family == MULTINOMIAL:
                _, s = _softmax_terms(e, t)
                for k in range(K):
                    e[k] = t[k] / s
            else:
                for k in range(K):
                    v = np.float64(e[k])
                    if family == BINOMIAL:
                        e[k] = _sigmoid(v)
                    elif family == POISSON:
                        e[k] = np.exp(v)


@njit(_sigs("void({T}[:, ::1], int64[::1], {T}[:, ::1], {T}[::1], {T}[:, ::1], {T}[::1], int64, "
            "float64[::1], {T}[:, ::1])"), **_ENTRY)
def glm_loss_grad(X, labels, targets, sample_weight, params, offset, family, loss, grad):
    _loss_grad_any(X, np.empty(0, X.dtype), np.empty(0, np.int32), np.empty(0, np.int64), X.shape[0], labels,
                   targets, sample_weight, params, offset, family, loss, grad)


@njit(_sigs("void({T}[::1], int32[::1], int64[::1], int64, int64[::1], {T}[:, ::1], {T}[::1], "
            "{T}[:, ::1], {T}[::1], int64, float64[::1], {T}[:, ::1])"), **_ENTRY)
def glm_loss_grad_csr(data, indices, indptr, n_features, labels, targets, sample_weight, params,
                      offset, family, loss, grad):
    _loss_grad_any(np.empty((0, n_features), data.dtype), data, indices, indptr,
                   indptr.shape[0] - 1, labels, targets, sample_weight, params, offset, family, loss, grad)


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], {T}[::1], int64, {T}[:, ::1])"), **_ENTRY)
def glm_predict(X, params, offset, family, out):
    _predict_any(X, np.empty(0, X.dtype), np.empty(0, np.int32), np.empty(0, np.int64), X.shape[0],
                 params, offset, family, out)


@njit(_sigs("void({T}[::1], int32[::1], int64[::1], int64, {T}[:, ::1], {T}[::1], int64, {T}[:, ::1])"),
      **_ENTRY)
def glm_predict_csr(data, indices, indptr, n_features, params, offset, family, out):
    _predict_any(np.empty((0, n_features), data.dtype), data, indices, indptr, indptr.shape[0] - 1,
                 params, offset, family, out)


@njit(fastmath=_SUM, **_ROW)
def _squared_norm(x):
    """sum x[j]^2 in float64, in vector lanes (reassociated, as csrc's
    omp simd reduction)."""
    s = 0.0
    for j in range(x.shape[0]):
        v = np.float64(x[j])
        s += v * v
    return s


@njit(_sigs("void({T}[:, ::1], float64[::1])"), **_ENTRY)
def scan_rows(X, out):
    """See reference.glm.scan_rows. Chunks of rows in parallel, each with its
    largest norm and count; only a row whose sum is not finite is read again
    to tell NaN or infinity from overflowed squares."""
    n = X.shape[0]
    step = max(1024, (n + 63) // 64)
    chunks = (n + step - 1) // step
    largest = np.zeros(chunks)
    bad = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        for i in range(c * step, min(n, (c + 1) * step)):
            s = _squared_norm(X[i])
            if not np.isfinite(s) and not np.isfinite(X[i]).all():
                bad[c] += 1
            elif s > largest[c]:
                largest[c] = s
    out[0] = largest.max() if chunks else 0.0
    out[1] = bad.sum()


@njit(**_SEQ)
def _update(params, grad, cols, scale, lr, l2, l1, momentum, nesterov, velocity, avg, avg_weight):
    """One step on the parameters in columns [0, cols) (see
    reference.glm.sgd_epoch for the order); column d is the intercept's,
    moved when cols = d + 1 (cols = d holds it fixed)."""
    d = params.shape[1] - 1
    has_velocity = velocity.shape[0] > 0
    for k in range(params.shape[0]):
        if not has_velocity and not l1 > 0 and not avg_weight > 0:  # plain SGD: vectorized
            _plain_step(params[k, :d], grad[k, :d], scale, lr, l2)
            if cols > d:
                params[k, d] = params[k, d] - lr * (grad[k, d] * scale)
            continue
        for j in range(cols):
            decay = l2 if j < d else 0.0
            p = params[k, j]
            g = grad[k, j] * scale + decay * p
            if has_velocity:
                v = momentum * velocity[k, j] + g
                velocity[k, j] = v
                g = g + momentum * v if nesterov else v
            p = p - lr * g
            if l1 > 0 and j < d:
                p = np.sign(p) * max(abs(p) - lr * l1, 0.0)
            params[k, j] = p
            if avg_weight > 0:
                avg[k, j] += (p - avg[k, j]) * avg_weight


@njit(**_SEQ)
def _plain_step(p, g, scale, lr, l2):
    for j in range(p.shape[0]):
        p[j] = p[j] - lr * (g[j] * scale + l2 * p[j])


_EPOCH_SIG = ("int64({T}[:, ::1], int64[::1], {T}[:, ::1], {T}[::1], int64[::1], float64[::1], "
              "int64, int64, float64, float64, float64, boolean, boolean, {T}[:, ::1], {T}[:, ::1], "
              "{T}[:, ::1], int64, int64, float64[::1])")


# Threads share each batch by outputs, as in csrc's sgd_epoch (see
# csrc/glm_kernels.h for why and for the measurements): thread t of T owns a
# contiguous range of the K rows of params, K / T of them give or take one,
# and does their forward product, gradient and update, with one barrier per
# batch. Each element's arithmetic is the same whichever thread or range it
# falls in, so the trajectory is the same for any thread count.
OUTPUTS_PER_THREAD = 4  # a thread per this many outputs at most
# Threads only when a batch has this much multiply-add work: below it, the
# barrier per batch costs more than it saves.
PARALLEL_MIN_WORK = 16384


@njit(**_SEQ)
def _share(n, tid, threads):
    """Thread tid's range [lo, hi) of n items cut into `threads` ranges as
    even as can be."""
    return n * tid // threads, n * (tid + 1) // threads


@njit(**_SEQ)
def _epoch_part(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1, momentum,
                nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss, eta2, G, t,
                grad, fetch, tid, threads, sync, disband, trial, trial_margin, outcome):
    """The epoch's batches as thread tid of `threads` runs them: the forward
    product (requesting the next batch's rows), gradient and update of its
    range of outputs (see above). Every thread computes the
    whole batch's loss gradient G from the shared linear predictors eta2 (two
    batches' worth: one thread may start the next forward product while
    another still reads this one), with the same arithmetic, so all agree on
    stopping. Returns the batches done.

    The trial, as csrc's (a team may be slower than one thread when its
    cores exchange lines slowly): thread 0 times batches [T, 2T) done by the
    team (T = trial), then does batches [2T, 3T) alone while the others
    wait, and goes on alone if that was faster by trial_margin percent;
    it writes the trial's outcome (team.TRIAL_*) in outcome[1]."""
    m = perm.shape[0]
    n_batches = lr.shape[0]
    K, ld = params.shape
    cols = ld if fit_intercept else ld - 1  # the columns an update moves
    team = threads
    k0, k1 = _share(K, tid, threads)
    trying = threads > 1 and 0 < trial and 4 * trial <= n_batches
    trial_until = 0  # thread 0: the end of its batches alone
    trial_mark = team_ns = 0
    generation = 0
    b = 0
    while b < n_batches:
        i0 = b * batch_size
        i1 = min(i0 + batch_size, m)
        nb = i1 - i0
        rows = perm[i0:i1]
        eta = eta2[b % 2, :nb]
        next_nb = min(i1 + batch_size, m) - i1
        for r in range(nb):  # padded with this batch's rows where the next is shorter
            fetch[r] = perm[i1 + r] if r < next_nb else rows[r]
        _forward(X, rows, params[k0:k1], eta[:, k0:k1], fetch[:nb])
        if threads > 1:
            if tid == 0 and trying and (b == trial or b == 2 * trial):
                now = _monotonic_ns()
                if b == 2 * trial:
                    team_ns = now - trial_mark
                trial_mark = now
            generation = _team_barrier(sync, threads, generation, disband)
            # every thread reads the disband flag after the same crossing
            # (only barriers set it) and knows b and the trial's batches
            disbanded = _team_disbanded(sync)
            trial_alone = trying and b == 2 * trial and not disbanded
            if trial_alone and tid != 0:
                # the trial's batches alone: wait for thread 0, then go on
                # from batch 3T, unless it keeps them all
                generation = _team_barrier(sync, threads, generation, disband)
                if _atomic_load(sync, _ALONE_FOR_GOOD) or _team_disbanded(sync):
                    return b
                b = 3 * trial
                continue
            if disbanded or trial_alone:
                # this batch's linear predictors are all done: thread 0 goes
                # on alone from its gradient, with every output (the same
                # arithmetic, see above)
                if tid != 0:
                    return b
                if trial_alone:
                    trial_until = 3 * trial
                    trial_mark = _monotonic_ns()
                threads = 1
                k0, k1 = _share(K, tid, threads)
        batch_loss = _dloss(eta, labels_p[i0:i1] if labels_p.shape[0] else labels_p,
                            targets_p[i0:i1] if targets_p.shape[0] else targets_p,
                            weight_p[i0:i1] if weight_p.shape[0] else weight_p, family, G[:nb], t)
        if not np.isfinite(batch_loss) or not _all_finite(G[:nb]):
            break
        step = step0 + b
        avg_weight = 1.0 / (step - avg_start + 1) if 0 <= avg_start <= step else 0.0
        g = grad[:k1 - k0]
        g[:] = 0
        _backward(X, rows, G[:nb, k0:k1], g)
        _update(params[k0:k1], g, cols, 1.0 / nb, lr[b], l2, l1, momentum, nesterov,
                velocity[k0:k1], avg[k0:k1], avg_weight)
        if tid == 0:
            loss[0] += batch_loss
        b += 1
        if tid == 0 and trial_until == b:
            # the trial's end: alone for good if that was faster
            if (_monotonic_ns() - trial_mark) * (100 + trial_margin) < team_ns * 100:
                _compare_and_set(sync, _ALONE_FOR_GOOD, 0, 1)
            trial_until = 0
            generation = _team_barrier(sync, team, generation, disband)  # the others go on
            outcome[1] = (TRIAL_ALONE if _atomic_load(sync, _ALONE_FOR_GOOD)
                          else TRIAL_DISBANDED if _team_disbanded(sync) else TRIAL_TEAM)
            if not _atomic_load(sync, _ALONE_FOR_GOOD) and not _team_disbanded(sync):
                threads = team
                k0, k1 = _share(K, tid, threads)
    if trial_until:  # stopped during the trial: release the others
        outcome[1] = TRIAL_STOPPED
        _compare_and_set(sync, _ALONE_FOR_GOOD, 0, 1)
        _team_barrier(sync, team, generation, disband)
    return b


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _epoch_team(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1, momentum,
                nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss, team, disband,
                trial, trial_margin, outcome):
    """The epoch on `team` threads (see _epoch_part). If the threading layer
    does not run them at once (fewer threads granted, or one running the
    iterations in turn), thread 0 does all the outputs alone (see _team_start);
    outcome[0] says which: TOGETHER or ALONE; outcome[1] is the trial's
    outcome, outcome[2] the threads that ran."""
    K, ld = params.shape
    rows = min(batch_size, perm.shape[0])  # a batch's rows, at most
    eta2 = np.empty((2, rows, K), params.dtype)
    # per thread, each on its own cache lines: G, the loss scratch, its outputs' gradient, fetch
    pad = 64 // params.itemsize
    G = np.empty((team, rows * K + pad), params.dtype)
    t = np.empty((team, loss_scratch_size(K) + 8))
    grad = np.empty((team, K * ld + pad), params.dtype)
    fetch = np.empty((team, rows + 8), np.int64)
    sync = np.zeros(SYNC_SIZE, np.int64)
    done = np.zeros(team, np.int64)
    for i in prange(team):
        tid = np.int64(i)
        decision = _team_start(sync, team)
        if decision == TOGETHER or tid == 0:
            threads = team if decision == TOGETHER else np.int64(1)
            done[tid] = _epoch_part(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2,
                                    l1, momentum, nesterov, fit_intercept, params, velocity, avg,
                                    avg_start, step0, loss, eta2, G[tid, :rows * K].reshape((rows, K)),
                                    t[tid], grad[tid, :K * ld].reshape((K, ld)), fetch[tid],
                                    tid, threads, sync, disband, trial, trial_margin, outcome)
            if tid == 0:
                outcome[0] = decision
                outcome[2] = threads
    return done[0]


# Thread counts whose team did not start together (see _team_start): the
# next _RETRY_AFTER epochs asking for them run on one thread rather than
# wait each time (their threads are not free: one thread is the faster).
_FAILED_TEAMS = {}
_RETRY_AFTER = 100
_LAST_TEAM = {"size": 0, "trial": 0}


def last_team():
    """For tests: the last dense SGD epoch's (threads that ran, trial
    outcome team.TRIAL_*), as csrc's fm_team_last."""
    return _LAST_TEAM["size"], _LAST_TEAM["trial"]


def sgd_epoch(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1,
              momentum, nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss):
    """One epoch: for each batch, forward product, loss gradient, backward
    product, update; on up to numba.get_num_threads() threads sharing the
    outputs, as csrc's sgd_epoch. (Read here: compiled code that reads the
    thread count cannot be cached.)"""
    threads = get_num_threads()
    outcome = np.zeros(3, np.int64)
    wait = _FAILED_TEAMS.pop(threads, 0)
    if wait > 1:
        _FAILED_TEAMS[threads] = wait - 1
    disband = np.array([_DISBAND_LIMITS["sleeps"], _DISBAND_LIMITS["at"]], np.int64)
    done = _sgd_epoch(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1, momentum,
                      nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss,
                      1 if wait else threads, disband, _TEAM_TRIAL["batches"], _TEAM_TRIAL["margin"], outcome)
    if outcome[0] == ALONE:
        _FAILED_TEAMS[threads] = _RETRY_AFTER
    _LAST_TEAM.update(size=int(outcome[2]), trial=int(outcome[1]))
    return done


@njit(_sigs(_EPOCH_SIG[:-1] + ", int64, int64[::1], int64, int64, int64[::1])"), **_SEQ)
def _sgd_epoch(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1, momentum,
               nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss, max_threads,
               disband, trial, trial_margin, outcome):
    """sgd_epoch on up to max_threads threads (outcome: see _epoch_team;
    0, 0, 1 on one thread; disband: see team._team_barrier; trial,
    trial_margin: see _epoch_part)."""
    K = params.shape[0]
    max_team = (K + OUTPUTS_PER_THREAD - 1) // OUTPUTS_PER_THREAD
    team = 1
    if max_team > 1 and batch_size * X.shape[1] * K >= PARALLEL_MIN_WORK:
        team = min(max_threads, max_team)
    labels_p, targets_p, weight_p = _gather_samples(perm, labels, targets, sample_weight)
    if team > 1:
        return _epoch_team(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1,
                           momentum, nesterov, fit_intercept, params, velocity, avg, avg_start, step0,
                           loss, team, disband, trial, trial_margin, outcome)
    rows = min(batch_size, perm.shape[0])
    outcome[2] = 1
    return _epoch_part(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1,
                       momentum, nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss,
                       np.empty((2, rows, K), params.dtype), np.empty((rows, K), params.dtype),
                       np.empty(loss_scratch_size(K)), np.empty_like(params), np.empty(rows, np.int64),
                       np.int64(0), np.int64(1), np.zeros(0, np.int64), disband, trial, trial_margin,
                       outcome)


_EPOCH_CSR_SIG = ("int64({T}[::1], int32[::1], int64[::1], int64, int64[::1], {T}[:, ::1], {T}[::1], "
                  "int64[::1], float64[::1], int64, int64, float64, float64, float64, boolean, boolean, "
                  "{T}[:, ::1], {T}[:, ::1], {T}[:, ::1], int64, int64, float64[::1])")


@njit(_sigs(_EPOCH_CSR_SIG), **_SEQ)
def sgd_epoch_csr(data, indices, indptr, n_features, labels, targets, sample_weight, perm, lr,
                  family, batch_size, l2, l1, momentum, nesterov, fit_intercept, params, velocity,
                  avg, avg_start, step0, loss):
    """The epoch for X in compressed sparse rows, as csrc's sgd_epoch_csr:
    plain SGD (no L2, L1, momentum or averaging) updates, and
    re-zeroes, only the coefficients of the features present in the batch."""
    m = perm.shape[0]
    d = n_features
    K = params.shape[0]
    sparse_update = velocity.shape[0] == 0 and not l1 > 0 and not l2 > 0 and avg_start < 0
    eta = np.empty((batch_size, K), dtype=params.dtype)
    G = np.empty_like(eta)
    t = np.empty(loss_scratch_size(K))
    grad = np.zeros_like(params)
    seen = np.zeros(d, np.bool_)
    touched = np.empty(d, np.int32)
    labels_p, targets_p, weight_p = _gather_samples(perm, labels, targets, sample_weight)
    for b in range(lr.shape[0]):
        i0 = b * batch_size
        i1 = min(i0 + batch_size, m)
        nb = i1 - i0
        rows = perm[i0:i1]
        _forward_csr(data, indices, indptr, rows, params, eta[:nb])
        batch_loss = _dloss(eta[:nb], labels_p[i0:i1] if labels_p.shape[0] else labels_p,
                            targets_p[i0:i1] if targets_p.shape[0] else targets_p,
                            weight_p[i0:i1] if weight_p.shape[0] else weight_p, family, G[:nb], t)
        if not np.isfinite(batch_loss) or not _all_finite(G[:nb]):
            return b
        loss[0] += batch_loss
        _backward_csr(data, indices, indptr, rows, G[:nb], grad)
        scale = 1.0 / nb
        if sparse_update:
            nt = 0
            for r in range(nb):
                for p in range(indptr[rows[r]], indptr[rows[r] + 1]):
                    j = indices[p]
                    if not seen[j]:
                        seen[j] = True
                        touched[nt] = j
                        nt += 1
            for k in range(K):
                for q in range(nt):  # as _update's plain step, with l2 = 0
                    j = touched[q]
                    params[k, j] = params[k, j] - lr[b] * (grad[k, j] * scale)
                    grad[k, j] = 0
                if fit_intercept:
                    params[k, d] = params[k, d] - lr[b] * (grad[k, d] * scale)
                grad[k, d] = 0
            for q in range(nt):
                seen[touched[q]] = False
        else:
            step = step0 + b
            avg_weight = 1.0 / (step - avg_start + 1) if 0 <= avg_start <= step else 0.0
            _update(params, grad, d + 1 if fit_intercept else d, scale, lr[b], l2, l1, momentum,
                    nesterov, velocity, avg, avg_weight)
            grad[:] = 0
    return lr.shape[0]
