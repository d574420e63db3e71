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

from .special import _ENTRY, _ROW, _SUM, _prefetch, _prefetch_l2, _same, _sigs
from .team import _DISBAND_SLEEPS, ALONE, SYNC_SIZE, TOGETHER, _team_barrier, _team_disbanded, _team_start
from .vexp import vexp

MULTINOMIAL, BINOMIAL, GAUSSIAN, POISSON = range(4)  # reference.glm.FAMILIES
# Rows per group in _dloss_multinomial (csrc: FM_GLM_LOSS_ROWS); its scratch
# t holds loss_scratch_size(K) float64: the group's terms, then its maxima.
LOSS_ROWS = 16


@njit(**_ROW)
def loss_scratch_size(K):
    return LOSS_ROWS * (K + 1)
_SEQ = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


# The batch's two products, eta = X_b W^T and grad = G^T X_b, are small
# matrix products (32 x 100 x 10 in the benchmark) repeated thousands of times
# per epoch: they are blocked so that each load of x or w feeds several
# multiply-adds (four rows by up to four outputs), with the inner loop over
# the contiguous feature axis. A dot product's rounding depends on the loop
# that computes it (LLVM picks each loop's vector width and unrolling), so
# rows are blocked by fours counted from the batch's start, in every thread
# (the epoch shares rows between threads in multiples of 4).

@njit(fastmath=_SUM, **_ROW)
def _dot_4x4(x0, x1, x2, x3, w0, w1, w2, w3):
    """The 16 dot products of rows x0..x3 with w0..w3, in the element type:
    each loaded vector feeds four multiply-adds."""
    z = x0.dtype.type(0)
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = z
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = z
    for j in range(x0.shape[0]):
        a00 += x0[j] * w0[j]
        a01 += x0[j] * w1[j]
        a02 += x0[j] * w2[j]
        a03 += x0[j] * w3[j]
        a10 += x1[j] * w0[j]
        a11 += x1[j] * w1[j]
        a12 += x1[j] * w2[j]
        a13 += x1[j] * w3[j]
        a20 += x2[j] * w0[j]
        a21 += x2[j] * w1[j]
        a22 += x2[j] * w2[j]
        a23 += x2[j] * w3[j]
        a30 += x3[j] * w0[j]
        a31 += x3[j] * w1[j]
        a32 += x3[j] * w2[j]
        a33 += x3[j] * w3[j]
    return (a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33)


@njit(fastmath=_SUM, **_ROW)
def _dot_4x1(x0, x1, x2, x3, w):
    """The 4 dot products of rows x0..x3 with w."""
    a0 = a1 = a2 = a3 = x0.dtype.type(0)
    for j in range(x0.shape[0]):
        a0 += x0[j] * w[j]
        a1 += x1[j] * w[j]
        a2 += x2[j] * w[j]
        a3 += x3[j] * w[j]
    return a0, a1, a2, a3


@njit(fastmath=_SUM, **_ROW)
def _dot(x, w):
    """x . w as two half sums (two dependency chains, not one)."""
    h = x.shape[0] // 2
    a = b = x.dtype.type(0)
    for j in range(h):
        a += x[j] * w[j]
        b += x[h + j] * w[h + j]
    if x.shape[0] % 2:
        return a + b + x[-1] * w[-1]
    return a + b


@njit(**_ROW)
def _forward(X, rows, params, eta, fetch_rows):
    """eta[r, k] = X[rows[r]] . params[k, :d] + params[k, d]: blocks of four
    rows by four outputs, then by one output, then the last rows one at a
    time. With each block of rows, the cache lines of the same rows of
    fetch_rows (as long as rows) are requested: the SGD epoch passes the next
    batch's rows, the other callers rows itself."""
    d = X.shape[1]
    K = params.shape[0]
    nb = rows.shape[0]
    K4 = K - K % 4
    l2 = not _same(fetch_rows, rows)  # another batch's rows
    for r in range(0, nb - nb % 4, 4):
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
    for r in range(nb - nb % 4, nb):
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
    row."""
    K = eta.shape[1]
    total = 0.0
    m = t[LOSS_ROWS * K:]
    for r0 in range(0, eta.shape[0], LOSS_ROWS):
        rows = min(LOSS_ROWS, eta.shape[0] - r0)
        for r in range(rows):  # NaN is skipped by the max, caught by the sum
            e = eta[r0 + r]
            m[r] = np.float64(e[0])
            for k in range(1, K):
                m[r] = max(m[r], np.float64(e[k]))
            for k in range(K):
                t[r * K + k] = np.float64(e[k]) - m[r]
        _exp_all(t[:rows * K])
        for r in range(rows):
            w = np.float64(sample_weight[r0 + r]) if sample_weight.shape[0] else 1.0
            e = eta[r0 + r]
            s = 0.0
            for k in range(K):
                s += t[r * K + k]
            y = labels[r0 + r]
            total += w * (m[r] + np.log(s) - np.float64(e[y]))
            ws = w / s
            for k in range(K):
                G[r0 + r, k] = ws * t[r * K + k]
            G[r0 + r, y] -= w
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


@njit(fastmath=_SUM, **_ROW)
def _axpy_4x4(g, x0, x1, x2, x3, y0, y1, y2, y3):
    """yc += sum_q g[q, c] xq for c, q = 0..3: each loaded x feeds four
    outputs. The factors are read into scalars first: read from an array
    inside the loop, they would be reloaded on every iteration (the array
    might alias the y)."""
    a0, a1, a2, a3 = g[0, 0], g[1, 0], g[2, 0], g[3, 0]
    b0, b1, b2, b3 = g[0, 1], g[1, 1], g[2, 1], g[3, 1]
    c0, c1, c2, c3 = g[0, 2], g[1, 2], g[2, 2], g[3, 2]
    e0, e1, e2, e3 = g[0, 3], g[1, 3], g[2, 3], g[3, 3]
    for j in range(x0.shape[0]):
        y0[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j]
        y1[j] += b0 * x0[j] + b1 * x1[j] + b2 * x2[j] + b3 * x3[j]
        y2[j] += c0 * x0[j] + c1 * x1[j] + c2 * x2[j] + c3 * x3[j]
        y3[j] += e0 * x0[j] + e1 * x1[j] + e2 * x2[j] + e3 * x3[j]


@njit(fastmath=_SUM, **_ROW)
def _axpy_4x1(a0, a1, a2, a3, x0, x1, x2, x3, y):
    """y += sum_q aq xq (q = 0..3)."""
    for j in range(x0.shape[0]):
        y[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j]


@njit(fastmath=_SUM, **_ROW)
def _axpy(a, x, y):
    for j in range(x.shape[0]):
        y[j] += a * x[j]


@njit(**_ROW)
def _backward(X, j0, j1, rows, G, grad):
    """Columns [j0, j1) of grad += [G.T @ X[rows], the column sums of G]
    (column d, the intercept's, is the sums: j1 = d + 1 includes it), in
    blocks of four rows by four outputs. Each element's arithmetic is the
    same for any column range."""
    d = X.shape[1]
    jd = min(j1, d)
    K = grad.shape[0]
    nb = rows.shape[0]
    nb4 = nb - nb % 4
    K4 = K - K % 4
    for r in range(0, nb4, 4):
        x0 = X[rows[r], j0:jd]
        x1 = X[rows[r + 1], j0:jd]
        x2 = X[rows[r + 2], j0:jd]
        x3 = X[rows[r + 3], j0:jd]
        for k in range(0, K4, 4):
            _axpy_4x4(G[r:r + 4, k:k + 4], x0, x1, x2, x3,
                      grad[k, j0:jd], grad[k + 1, j0:jd], grad[k + 2, j0:jd], grad[k + 3, j0:jd])
        for k in range(K4, K):
            _axpy_4x1(G[r, k], G[r + 1, k], G[r + 2, k], G[r + 3, k], x0, x1, x2, x3, grad[k, j0:jd])
    for r in range(nb4, nb):
        for k in range(K):
            _axpy(G[r, k], X[rows[r], j0:jd], grad[k, j0:jd])
    if j1 > d:
        for r in range(nb):
            for k in range(K):
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
def _backward_any(X, data, indices, indptr, rows, G, grad):
    if indptr.shape[0]:
        _backward_csr(data, indices, indptr, rows, G, grad)
    else:
        _backward(X, np.int64(0), X.shape[1] + 1, rows, G, grad)


# inline="always": their prange loops must land in the parallel entry points

@njit(inline="always", **_ROW)
def _loss_grad_any(X, data, indices, indptr, n, labels, targets, sample_weight, params, family,
                   loss, grad):
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
def _predict_any(X, data, indices, indptr, n, params, family, out):
    K = params.shape[0]
    step = _chunk_rows(n, params.size)
    for c in prange((n + step - 1) // step):
        r0 = c * step
        r1 = min(r0 + step, n)
        eta = out[r0:r1]
        _forward_any(X, data, indices, indptr, np.arange(r0, r1), params, eta)
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


@njit(_sigs("void({T}[:, ::1], int64[::1], {T}[:, ::1], {T}[::1], {T}[:, ::1], int64, "
            "float64[::1], {T}[:, ::1])"), **_ENTRY)
def glm_loss_grad(X, labels, targets, sample_weight, params, family, loss, grad):
    _loss_grad_any(X, np.empty(0, X.dtype), np.empty(0, np.int32), np.empty(0, np.int64), X.shape[0], labels, targets, sample_weight, params, family,
                   loss, grad)


@njit(_sigs("void({T}[::1], int32[::1], int64[::1], int64, int64[::1], {T}[:, ::1], {T}[::1], "
            "{T}[:, ::1], int64, float64[::1], {T}[:, ::1])"), **_ENTRY)
def glm_loss_grad_csr(data, indices, indptr, n_features, labels, targets, sample_weight, params,
                      family, loss, grad):
    _loss_grad_any(np.empty((0, n_features), data.dtype), data, indices, indptr,
                   indptr.shape[0] - 1, labels, targets, sample_weight, params, family, loss, grad)


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], int64, {T}[:, ::1])"), **_ENTRY)
def glm_predict(X, params, family, out):
    _predict_any(X, np.empty(0, X.dtype), np.empty(0, np.int32), np.empty(0, np.int64), X.shape[0],
                 params, family, out)


@njit(_sigs("void({T}[::1], int32[::1], int64[::1], int64, {T}[:, ::1], int64, {T}[:, ::1])"),
      **_ENTRY)
def glm_predict_csr(data, indices, indptr, n_features, params, family, out):
    _predict_any(np.empty((0, n_features), data.dtype), data, indices, indptr, indptr.shape[0] - 1,
                 params, family, out)


@njit(**_SEQ)
def _update(params, grad, j0, j1, scale, lr, l2, l1, momentum, nesterov, velocity, avg, avg_weight):
    """One step on the parameters in columns [j0, j1) (see
    reference.glm.sgd_epoch for the order); column d is the intercept's, in
    the range when j1 = d + 1 (pass j1 = d to hold it fixed)."""
    d = params.shape[1] - 1
    jd = min(j1, d)
    has_velocity = velocity.shape[0] > 0
    for k in range(params.shape[0]):
        if not has_velocity and not l1 > 0 and not avg_weight > 0:  # plain SGD: vectorized
            _plain_step(params[k, j0:jd], grad[k, j0:jd], scale, lr, l2)
            if j1 > d:
                params[k, d] = params[k, d] - lr * (grad[k, d] * scale)
            continue
        for j in range(j0, j1):
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
# csrc/glm_kernels.h for why): the K rows of params are cut into blocks of
# K_BLOCK outputs; a block's forward product, gradient and update are done by
# one thread. Blocks that do not divide evenly among the threads are shared:
# each thread does the forward product of a range of the batch's rows and the
# gradient and update of a range of the features, with a second barrier per
# batch. Each element's arithmetic is the same whichever thread or range it
# falls in, so the trajectory is the same for any thread count.
K_BLOCK = 4
# Threads only when a batch has this much multiply-add work: below it, the
# barrier per batch costs more than it saves.
PARALLEL_MIN_WORK = 16384


@njit(**_SEQ)
def _share(n, unit, tid, threads):
    """Thread tid's range [lo, hi) of n items cut into `threads` ranges whose
    bounds are multiples of `unit` (the last range takes the remainder)."""
    units = n // unit
    lo = units * tid // threads * unit
    hi = n if tid + 1 == threads else units * (tid + 1) // threads * unit
    return lo, hi


@njit(**_SEQ)
def _epoch_part(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1, momentum,
                nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss, eta2, G, t,
                grad, fetch, KB, tid, threads, sync, disband_sleeps):
    """The epoch's batches as thread tid of `threads` runs them: the forward
    product (requesting the next batch's rows), gradient and update of the
    output blocks q = tid, tid + threads, ... of KB outputs each, and its
    share of the outputs left over (see above). Every thread computes the
    whole batch's loss gradient G from the shared linear predictors eta2 (two
    batches' worth: one thread may start the next forward product while
    another still reads this one), with the same arithmetic, so all agree on
    stopping. Returns the batches done."""
    m = perm.shape[0]
    K, ld = params.shape
    cols = ld if fit_intercept else ld - 1  # the columns an update moves
    full = K // KB
    k_own = (full - full % threads) * KB
    c0, c1 = _share(cols, 8, tid, threads)  # this thread's columns of the shared outputs
    generation = 0
    for b in range(lr.shape[0]):
        i0 = b * batch_size
        i1 = min(i0 + batch_size, m)
        nb = i1 - i0
        rows = perm[i0:i1]
        eta = eta2[b % 2, :nb]
        next_nb = min(i1 + batch_size, m) - i1
        for r in range(nb):  # padded with this batch's rows where the next is shorter
            fetch[r] = perm[i1 + r] if r < next_nb else rows[r]
        for k0 in range(tid * KB, k_own, threads * KB):  # the first block requests the next rows
            _forward(X, rows, params[k0:k0 + KB], eta[:, k0:k0 + KB], fetch[:nb] if k0 == tid * KB else rows)
        if k_own < K:  # a range of rows, in fours as one thread blocks them (see _forward)
            r0, r1 = _share(nb, 4, tid, threads)
            if b > 0 and threads > 1:  # the previous batch's updates of the shared outputs are done
                generation = _team_barrier(sync, threads, generation, disband_sleeps)
            _forward(X, rows[r0:r1], params[k_own:], eta[r0:r1, k_own:],
                     rows[r0:r1] if k_own > 0 else fetch[r0:r1])  # fetch: no own block did
        if threads > 1:
            generation = _team_barrier(sync, threads, generation, disband_sleeps)
            if _team_disbanded(sync):
                # this batch's linear predictors are all done: thread 0 goes
                # on alone from its gradient, with every output (the same
                # arithmetic, see above)
                if tid != 0:
                    return b
                threads = 1
                k_own = full * KB
                c0, c1 = _share(cols, 8, 0, 1)
        batch_loss = _dloss(eta, labels_p[i0:i1] if labels_p.shape[0] else labels_p,
                            targets_p[i0:i1] if targets_p.shape[0] else targets_p,
                            weight_p[i0:i1] if weight_p.shape[0] else weight_p, family, G[:nb], t)
        if not np.isfinite(batch_loss) or not _all_finite(G[:nb]):
            return b
        step = step0 + b
        avg_weight = 1.0 / (step - avg_start + 1) if 0 <= avg_start <= step else 0.0
        for k0 in range(tid * KB, k_own, threads * KB):
            k1 = k0 + KB
            g = grad[:KB]
            g[:] = 0
            _backward(X, np.int64(0), ld, rows, G[:nb, k0:k1], g)
            _update(params[k0:k1], g, np.int64(0), cols, 1.0 / nb, lr[b], l2, l1, momentum, nesterov,
                    velocity[k0:k1], avg[k0:k1], avg_weight)
        if k_own < K and c1 > c0:
            g = grad[:K - k_own]
            g[:, c0:c1] = 0
            _backward(X, c0, c1, rows, G[:nb, k_own:], g)
            _update(params[k_own:], g, c0, c1, 1.0 / nb, lr[b], l2, l1, momentum, nesterov,
                    velocity[k_own:], avg[k_own:], avg_weight)
        if tid == 0:
            loss[0] += batch_loss
    return lr.shape[0]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _epoch_team(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1, momentum,
                nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss, team, disband_sleeps,
                outcome):
    """The epoch on `team` threads (see _epoch_part). If the threading layer
    does not run them at once (fewer threads granted, or one running the
    iterations in turn), thread 0 does all blocks alone (see _team_start);
    outcome[0] says which: TOGETHER or ALONE."""
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
                                    np.int64(K_BLOCK), tid, threads, sync, disband_sleeps)
            if tid == 0:
                outcome[0] = decision
    return done[0]


# Thread counts whose team did not start together (see _team_start): the
# next _RETRY_AFTER epochs asking for them run on one thread rather than
# wait each time (their threads are not free: one thread is the faster).
_FAILED_TEAMS = {}
_RETRY_AFTER = 100


def sgd_epoch(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1,
              momentum, nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss):
    """One epoch: for each batch, forward product, loss gradient, backward
    product, update; on up to numba.get_num_threads() threads sharing the
    outputs, as csrc's sgd_epoch. (Read here: compiled code that reads the
    thread count cannot be cached.)"""
    threads = get_num_threads()
    outcome = np.zeros(1, np.int64)
    wait = _FAILED_TEAMS.pop(threads, 0)
    if wait > 1:
        _FAILED_TEAMS[threads] = wait - 1
    done = _sgd_epoch(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1, momentum,
                      nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss,
                      1 if wait else threads, _DISBAND_SLEEPS["n"], outcome)
    if outcome[0] == ALONE:
        _FAILED_TEAMS[threads] = _RETRY_AFTER
    return done


@njit(_sigs(_EPOCH_SIG[:-1] + ", int64, int64, int64[::1])"), **_SEQ)
def _sgd_epoch(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1, momentum,
               nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss, max_threads,
               disband_sleeps, outcome):
    """sgd_epoch on up to max_threads threads (outcome[0]: see _epoch_team;
    0 on one thread; disband_sleeps: see team._team_barrier). One thread takes all K outputs in one block, so that
    each row is read once per product: the blocking of the products starts
    at multiples of 4 either way, so the arithmetic is the same."""
    K = params.shape[0]
    max_blocks = (K + K_BLOCK - 1) // K_BLOCK
    team = 1
    if max_blocks > 1 and batch_size * X.shape[1] * K >= PARALLEL_MIN_WORK:
        team = min(max_threads, max_blocks)
    labels_p, targets_p, weight_p = _gather_samples(perm, labels, targets, sample_weight)
    if team > 1:
        return _epoch_team(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1,
                           momentum, nesterov, fit_intercept, params, velocity, avg, avg_start, step0,
                           loss, team, disband_sleeps, outcome)
    rows = min(batch_size, perm.shape[0])
    return _epoch_part(X, labels_p, targets_p, weight_p, perm, lr, family, batch_size, l2, l1,
                       momentum, nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss,
                       np.empty((2, rows, K), params.dtype), np.empty((rows, K), params.dtype),
                       np.empty(loss_scratch_size(K)), np.empty_like(params), np.empty(rows, np.int64),
                       np.int64(K), np.int64(0), np.int64(1), np.zeros(0, np.int64), disband_sleeps)


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
            _update(params, grad, np.int64(0), d + 1 if fit_intercept else d, scale, lr[b], l2, l1, momentum,
                    nesterov, velocity, avg, avg_weight)
            grad[:] = 0
    return lr.shape[0]
