"""Numba kernels of the "losses" family: categorical, Bernoulli and Gaussian
likelihoods with their gradients, entropy and KL divergence.

Mirrors fastmle/reference/losses.py (the specification: same names, same
argument order). Inputs are C-contiguous; rows are reduced over the last axis;
an empty optional array means "not given" (all ones for weights, no gradient
for a gradient with zero rows). ``grad`` may be the logits array itself: a row
is read before it is overwritten.

Float32 inputs stay float32 where they are stored (exponentials written to the
gradient, gradients); every sum is accumulated in float64 and merged with
Neumaier compensation, and per-row losses and per-chunk loss sums are
float64. Rows (chunks) are independent and each is processed sequentially in
a fixed order, so the result does not depend on the thread count. The hot
path (cross-entropy) uses special.py's segment kernels (max, and exponentials
of a block (exp_block) written in the element type, then summed in float64,
with the next row prefetched); entropy, kl_div and the elementwise losses
compute in float64 with vexp.py's vectorizing exp and log (the logits forms
of the information measures with np.exp / np.log). Only the entry points are
parallel; they share special.py's inlined driver (_drive).
"""
import numpy as np
from numba import njit

from .special import (_ENTRY, _EXACT, _ROW, _SUM, BLOCK, _drive, _next_row, _sigs, ksum_add,
                      exp_normal_ok, exp_buffer, ksum_value, seg_max, seg_max_min, seg_sum_exp)
from .vexp import vexp, vlog


# ---- float64 sums over a row, in blocks of BLOCK merged with compensation ----

# Block helpers take slices and loop from 0 (see special.py).

@njit(fastmath=_SUM, **_ROW)
def _block_wdiff(z, w, m):
    """sum_c w_c * (m - z_c) in float64 over one block (w empty: ones)."""
    bs = 0.0
    if w.shape[0]:
        for j in range(z.shape[0]):
            bs += np.float64(w[j]) * (m - np.float64(z[j]))
    else:
        for j in range(z.shape[0]):
            bs += m - np.float64(z[j])
    return bs


@njit(**_ROW)
def seg_wdiff(z, w, m):
    """sum_c w_c * (m - z_c) in float64 (w empty: ones)."""
    s = c = 0.0
    for j0 in range(0, z.shape[0], BLOCK):
        j1 = min(j0 + BLOCK, z.shape[0])
        s, c = ksum_add(s, c, _block_wdiff(z[j0:j1], w[j0:j1] if w.shape[0] else w, m))
    return ksum_value(s, c)


@njit(**_ROW)
def seg_exp_sum(x, shift, store, buf, nxt, normal):
    """sum of exp(x - shift) in float64 (see special.seg_sum_exp; store may
    be x itself)."""
    s, c, _ = seg_sum_exp(x, shift, store, buf, False, nxt, normal)
    return ksum_value(s, c)


@njit(**_ROW)
def _weight(w, c):
    return np.float64(w[c]) if w.shape[0] else 1.0


@njit(**_ROW)
def total_weight(w, n):
    return float(n) if w.shape[0] == 0 else -seg_wdiff(w, w[:0], 0.0)  # -sum(0 - w_c)


# ---- categorical likelihood: class-index targets ----

@njit(**_ROW)
def _nll_row(lp, y, w, eps, gs, g, gw):
    """Loss of one row of log-probabilities; with g its gradient (gw: the
    gradient's value away from y)."""
    n = lp.shape[0]
    wy = _weight(w, y)
    r = (1.0 - eps) * wy * -np.float64(lp[y])
    if eps:  # torch skips this term (and its 0 * inf) without smoothing
        r = r + eps / n * seg_wdiff(lp, w, 0.0)  # -sum_c w_c lp_c
    if g.shape[0]:  # after lp (which g may be) was read
        g[:] = gw
        g[y] = -gs * eps / n * wy - gs * (1.0 - eps) * wy
    return r


@njit(fastmath=_EXACT, **_ROW)
def seg_affine(g, a, b, w):
    """g = g * a - b * w (w empty: ones), as C's row_grad: in the element
    type when b is 0, else in float64 rounded once to it. In float32, a and
    b alone may pass float32's range (1 / a subnormal total weight) while
    every result is finite or one infinity: a and b rounded to float32 first
    had given inf x 0 = NaN."""
    if b == 0:
        fa = g.dtype.type(a)
        for j in range(g.shape[0]):
            g[j] = g[j] * fa
    elif w.shape[0]:
        for j in range(g.shape[0]):
            g[j] = np.float64(g[j]) * a - b * np.float64(w[j])
    else:
        for j in range(g.shape[0]):
            g[j] = np.float64(g[j]) * a - b


@njit(**_ROW)
def _ce_row(z, y, w, eps, gs, g, total, buf, nxt):
    """Loss of one row of logits; with g (which may be z) its gradient."""
    n = z.shape[0]
    m, lo = seg_max_min(z)
    wy = _weight(w, y)
    zy = np.float64(z[y])
    smooth = seg_wdiff(z, w, m) if eps else 0.0  # before g overwrites z
    s = seg_exp_sum(z, m, g, buf, nxt, exp_normal_ok(z, m, lo))
    ls = np.log(s)
    r = (1.0 - eps) * wy * ((m - zy) + ls)
    if eps:
        r = r + eps / n * (total * ls + smooth)
    if g.shape[0]:
        a = (1.0 - eps) * wy + eps / n * total
        ey = np.float64(g[y])
        seg_affine(g, gs * (a / s), gs * eps / n, w)
        g[y] = gs * (ey * (a / s) - eps / n * wy) - gs * (1.0 - eps) * wy
    return r


@njit(inline="always", **_ROW)
def _class_span(args, r0, r1, logits):
    """Rows r0..r1 of nll_rows (gw has n elements or no gradient is wanted)
    or of cross_entropy_rows (gw empty); logits is a compile-time constant."""
    x, target, w, ignore_index, eps, gs, loss, grad, total, gw = args
    buf = exp_buffer(x) if logits else np.empty(0, x.dtype)
    for i in range(r0, r1):
        y = target[i]
        g = grad[i] if grad.shape[0] else x[i, :0]
        if y == ignore_index:
            loss[i] = 0.0
            g[:] = 0
        elif logits:
            loss[i] = _ce_row(x[i], y, w, eps, gs, g, total, buf, _next_row(x, i))
        else:
            loss[i] = _nll_row(x[i], y, w, eps, gs, g, gw)


@njit(**_ROW)
def _nll_span(args, r0, r1):
    _class_span(args, r0, r1, False)


@njit(**_ROW)
def _ce_span(args, r0, r1):
    _class_span(args, r0, r1, True)


_CLASS_SIG = "void({T}[:, ::1], int64[::1], {T}[::1], int64, float64, float64, float64[::1], {T}[:, ::1])"


@njit(_sigs(_CLASS_SIG), **_ENTRY)
def nll_rows(log_probs, target, weight, ignore_index, smoothing, grad_scale, loss, grad):
    rows, n = log_probs.shape
    gw = np.empty(n if grad.shape[0] else 0, log_probs.dtype)
    for c in range(gw.shape[0]):
        gw[c] = -grad_scale * smoothing / n * _weight(weight, c)
    _drive(_nll_span, (log_probs, target, weight, ignore_index, smoothing, grad_scale, loss, grad,
                       0.0, gw), rows, n)


@njit(_sigs(_CLASS_SIG), **_ENTRY)
def cross_entropy_rows(logits, target, weight, ignore_index, smoothing, grad_scale, loss, grad):
    rows, n = logits.shape
    _drive(_ce_span, (logits, target, weight, ignore_index, smoothing, grad_scale, loss, grad,
                      total_weight(weight, n), weight[:0]), rows, n)


# ---- categorical likelihood: probability targets ----

@njit(fastmath=_SUM, **_ROW)
def _block_soft(z, t, w, m, a, b):
    """Block sums of wt_c * (m - z_c) and wt_c, wt_c = w_c * (a * t_c + b)."""
    bs = bw = 0.0
    for j in range(z.shape[0]):
        wt = _weight(w, j) * (a * np.float64(t[j]) + b)
        bs += wt * (m - np.float64(z[j]))
        bw += wt
    return bs, bw


@njit(**_ROW)
def _soft_row(z, t, w, eps, gs, g, buf, nxt):
    """Loss of one row against target probabilities t; with g (which may be
    z) its gradient. wt_c = w_c * ((1 - eps) * t_c + eps / n)."""
    n = z.shape[0]
    a = 1.0 - eps
    b = eps / n
    m = seg_max(z)
    s1 = c1 = s2 = c2 = 0.0
    for j0 in range(0, n, BLOCK):  # before g overwrites z
        j1 = min(j0 + BLOCK, n)
        bs, bw = _block_soft(z[j0:j1], t[j0:j1], w[j0:j1] if w.shape[0] else w, m, a, b)
        s1, c1 = ksum_add(s1, c1, bs)
        s2, c2 = ksum_add(s2, c2, bw)
    wsum = ksum_value(s2, c2)
    s = seg_exp_sum(z, m, g, buf, nxt, False)
    if g.shape[0]:
        f = wsum / s
        for j in range(n):
            g[j] = gs * (np.float64(g[j]) * f - _weight(w, j) * (a * np.float64(t[j]) + b))
    return ksum_value(s1, c1) + wsum * np.log(s)  # -sum_c wt_c log_softmax_c


@njit(**_ROW)
def _soft_span(args, r0, r1):
    x, t, w, eps, gs, loss, grad = args
    buf = exp_buffer(x)
    for i in range(r0, r1):
        g = grad[i] if grad.shape[0] else x[i, :0]
        loss[i] = _soft_row(x[i], t[i], w, eps, gs, g, buf, _next_row(x, i))


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], {T}[::1], float64, float64, float64[::1], {T}[:, ::1])"),
      **_ENTRY)
def cross_entropy_soft_rows(logits, target, weight, smoothing, grad_scale, loss, grad):
    rows, n = logits.shape
    _drive(_soft_span, (logits, target, weight, smoothing, grad_scale, loss, grad), rows, n)


# ---- Bernoulli and Gaussian likelihoods (elementwise) ----

@njit(fastmath=_SUM, **_ROW)
def _block_sum_f64(x):
    """sum of one block, each element in float64 (special._block_sum adds
    element-type pairs first, for exponentials that are only summed)."""
    bs = 0.0
    for j in range(x.shape[0]):
        bs += np.float64(x[j])
    return bs


# n elements in chunks of `chunk`: partial[c] is the sum of chunk c's losses
# (blocks of BLOCK merged with compensation), added up by the caller, so the
# total does not depend on the thread count; `loss` (empty: not wanted)
# receives each element's. Each element is computed in float64 with vexp /
# vlog, which vectorize (np.exp / np.log1p calls kept the loops scalar).
# A block's losses go to a scratch array, summed by _block_sum_f64:
# reassociation (_SUM) is allowed in that sum only, the element arithmetic
# is _EXACT.

# inline="always": LLVM did not inline it (too large), and the call kept the
# block loop scalar; the caller's flags are _EXACT too
@njit(inline="always", fastmath=_EXACT, **_ROW)
def _bce_term(x, t, pw, has_pw):
    """(loss, gradient) of one element before its weight, as C's bce_term:
    (1 - t) softplus(x) + pw t softplus(-x) and (1 - t) sigmoid(x) - pw t
    sigmoid(-x) for finite x and t in [0, 1], else torch's forms (loss
    (1 - t) x + lw softplus(-x), lw = 1 + (pw - 1) t; gradient ((pw t + 1) -
    t) sigmoid(x) - pw t, without pos_weight sigmoid(x) - t); both computed,
    one selected (a select between two computed values keeps the loop
    branch-free)."""
    e = vexp(-abs(x))
    u = 1.0 + e
    inv_u = 1.0 / u  # one division for log1p(e) and both sigmoids
    l1pe = vlog(u) - ((u - 1.0) - e) * inv_u  # log1p(e): log(u) corrected by u's rounding error
    big = inv_u
    small = e * inv_u
    sig = big if x >= 0 else small
    sig_neg = small if x >= 0 else big
    pwt = pw * t
    lw = 1.0 + (pw - 1.0) * t if has_pw else 1.0
    stable = (abs(x) < np.inf) & (t >= 0.0) & (t <= 1.0)
    relu = x if x > 0.0 else 0.0
    relu_neg = -x if (-x > 0.0) | (x != x) else 0.0  # max(-x, 0), NaN kept
    relu_neg_finite = -x if x < 0.0 else 0.0
    stable_loss = (1.0 - t) * (relu + l1pe) + pwt * (relu_neg_finite + l1pe)
    torch_loss = (1.0 - t) * x + lw * (l1pe + relu_neg)
    stable_grad = (1.0 - t) * sig - pwt * sig_neg
    torch_grad = ((pwt + 1.0) - t) * sig - pwt if has_pw else sig - t
    return (stable_loss if stable else torch_loss), (stable_grad if stable else torch_grad)


@njit(inline="always", fastmath=_EXACT, **_ROW)
def _bce_loop(x, t, w, pw, gs, losses, grad, weighted, has_pw):
    """_block_bce's loop, for constant flags weighted and has_pw (w, pw
    read only when set)."""
    for j in range(x.shape[0]):
        wj = np.float64(w[j]) if weighted else 1.0
        pwj = np.float64(pw[j]) if has_pw else 1.0
        l, g = _bce_term(np.float64(x[j]), np.float64(t[j]), pwj, has_pw)
        losses[j] = wj * l
        grad[j] = gs * wj * g


@njit(fastmath=_EXACT, **_ROW)
def _block_bce(x, t, w, pw, gs, losses, grad):
    """One block's weighted losses into `losses` and gradients into grad
    (w, pw empty: ones). Both are always written (the caller passes scratch
    for what it does not keep): with a conditional store LLVM vectorized
    only one version of the loop. One loop per combination of the optional
    weights, as C's bce_with_logits (no test of the weights per element):
    the flags are constants once _bce_loop is inlined."""
    if w.shape[0] and pw.shape[0]:
        _bce_loop(x, t, w, pw, gs, losses, grad, True, True)
    elif w.shape[0]:
        _bce_loop(x, t, w, pw, gs, losses, grad, True, False)
    elif pw.shape[0]:
        _bce_loop(x, t, w, pw, gs, losses, grad, False, True)
    else:
        _bce_loop(x, t, w, pw, gs, losses, grad, False, False)


@njit(**_ROW)
def _part(a, j0, j1):
    """a[j0:j1], or a itself when empty (an optional array not given)."""
    return a[j0:j1] if a.shape[0] else a


@njit(**_ROW)
def _bce_span(args, c0, c1):
    x, t, w, pw, gs, chunk, partial, loss, grad = args
    n = x.shape[0]
    loss_scratch = np.empty(BLOCK, np.float64)  # a block's losses, summed, then copied to loss if wanted
    grad_scratch = np.empty(BLOCK, x.dtype)  # the gradients when none are wanted
    for c in range(c0, c1):
        s = comp = 0.0
        for j0 in range(c * chunk, min((c + 1) * chunk, n), BLOCK):
            j1 = min(j0 + BLOCK, (c + 1) * chunk, n)
            losses = loss_scratch[:j1 - j0]
            g = grad[j0:j1] if grad.shape[0] else grad_scratch[:j1 - j0]
            _block_bce(x[j0:j1], t[j0:j1], _part(w, j0, j1), _part(pw, j0, j1), gs, losses, g)
            s, comp = ksum_add(s, comp, _block_sum_f64(losses))
            if loss.shape[0]:
                loss[j0:j1] = losses
        partial[c] = ksum_value(s, comp)


@njit(_sigs("void({T}[::1], {T}[::1], {T}[::1], {T}[::1], float64, int64, float64[::1], {T}[::1], {T}[::1])"),
      **_ENTRY)
def bce_with_logits(logits, target, weight, pos_weight, grad_scale, chunk, partial, loss, grad):
    _drive(_bce_span, (logits, target, weight, pos_weight, grad_scale, chunk, partial, loss, grad),
           partial.shape[0], chunk)


HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


@njit(inline="always", fastmath=_EXACT, **_ROW)
def _gaussian_term(d, vi, eps, s):
    """(loss without the constant, s d / v, s 0.5 (1 / v - d^2 / v^2)), v = max(var, eps), NaN kept."""
    v = vi if (vi != vi or vi > eps) else eps
    return 0.5 * (vlog(v) + d * d / v), s * d / v, s * 0.5 * (1.0 / v - d * d / (v * v))


@njit(fastmath=_EXACT, **_ROW)
def _block_gaussian(p, t, var, eps, const, loss_scale, gs, losses, gp, gv):
    """One block's losses (times loss_scale) into `losses`, gradients into gp
    and gv (always written, as in _block_bce); var of length 1: one variance."""
    for j in range(p.shape[0]):
        vi = np.float64(var[j] if var.shape[0] > 1 else var[0])
        l, gp[j], gv[j] = _gaussian_term(np.float64(p[j]) - np.float64(t[j]), vi, eps, gs)
        losses[j] = loss_scale * (l + const)


@njit(**_ROW)
def _gaussian_span(args, c0, c1):
    p, t, var, eps, full, loss_scale, gs, chunk, partial, loss, gp, gv = args
    const = HALF_LOG_2PI if full else 0.0
    n = p.shape[0]
    loss_scratch = np.empty(BLOCK, np.float64)
    grad_scratch = np.empty((2, BLOCK), p.dtype)  # the gradients when none are wanted
    for c in range(c0, c1):
        s = comp = 0.0
        for j0 in range(c * chunk, min((c + 1) * chunk, n), BLOCK):
            j1 = min(j0 + BLOCK, (c + 1) * chunk, n)
            losses = loss_scratch[:j1 - j0]
            v = var[j0:j1] if var.shape[0] > 1 else var
            g0 = gp[j0:j1] if gp.shape[0] else grad_scratch[0, :j1 - j0]
            g1 = gv[j0:j1] if gv.shape[0] else grad_scratch[1, :j1 - j0]
            _block_gaussian(p[j0:j1], t[j0:j1], v, eps, const, loss_scale, gs, losses, g0, g1)
            s, comp = ksum_add(s, comp, _block_sum_f64(losses))
            if loss.shape[0]:
                loss[j0:j1] = losses
        partial[c] = ksum_value(s, comp)


@njit(_sigs("void({T}[::1], {T}[::1], {T}[::1], float64, boolean, float64, float64, int64, float64[::1], {T}[::1], "
            "{T}[::1], {T}[::1])"), **_ENTRY)
def gaussian_nll(pred, target, var, eps, full, loss_scale, grad_scale, chunk, partial, loss, grad_pred, grad_var):
    _drive(_gaussian_span, (pred, target, var, eps, full, loss_scale, grad_scale, chunk, partial, loss, grad_pred,
                            grad_var), partial.shape[0], chunk)


# ---- information measures (float64 sums in blocks of BLOCK, merged with compensation) ----

@njit(**_ROW)
def _sum(x):
    """sum of a row in float64, blocks merged with compensation (C's row_sum)."""
    s = c = 0.0
    for j0 in range(0, x.shape[0], BLOCK):
        s, c = ksum_add(s, c, _block_sum_f64(x[j0:j0 + BLOCK]))
    return ksum_value(s, c)


@njit(**_ROW)
def _log_norm(z):
    """(max, log sum exp(z - max)) in float64: log_softmax = (z - max) - second."""
    m = seg_max(z)
    s = c = 0.0
    for j in range(z.shape[0]):
        s, c = ksum_add(s, c, np.exp(np.float64(z[j]) - m))
    return m, np.log(ksum_value(s, c))


@njit(**_ROW)
def _row_scale(x):
    """The largest of a row of finite values >= 0, by which the row is
    divided before its sum is used (see _kl_span), or 1 when that cannot
    help: an infinite or NaN element, or a row of zeros."""
    m = seg_max(x)
    return m if m > 0 and not np.isinf(m) else 1.0


@njit(**_ROW)
def _scaled_sum(x, scale):
    s = c = 0.0
    for j in range(x.shape[0]):
        s, c = ksum_add(s, c, np.float64(x[j]) / scale)
    return ksum_value(s, c)


@njit(fastmath=_EXACT, **_ROW)
def _scaled(v, f, inv):
    """(v f) inv, not v (f inv): f inv is 1 / M, which overflows for a
    subnormal M (its own function, so the caller's reassoc cannot regroup it)."""
    return (v * f) * inv


@njit(fastmath=_SUM, **_ROW)
def _block_entropy_terms(p, m, f, inv):
    """(sum u, sum u log u, elements equal to m) over one block, u = p f inv,
    the elements equal to m left out of both sums (NaN kept in)."""
    br = bu = ties = 0.0
    for j in range(p.shape[0]):
        v = np.float64(p[j])
        u = _scaled(v, f, inv)
        other = v != m
        br += u if other else 0.0
        bu += u * vlog(u) if (other and u != 0) else 0.0
        ties += 0.0 if other else 1.0
    return br, bu, ties


@njit(**_ROW)
def _entropy_span(args, r0, r1):
    """H = log1p(R) - sum u log u / (1 + R): u = p / M with M the largest
    element, R the sum of u over every element but one occurrence of M. Both
    terms are >= 0, where log S - sum p log p / S cancels for rows of low
    entropy (see reference.losses.entropy_rows). u is p f (1 / (M f)): f is
    a power of two (exact) that puts M f where 1 / (M f) is a normal number.
    A row holding NaN or inf, or only zeros, gives NaN."""
    probs, out = args
    n = probs.shape[1]
    for i in range(r0, r1):
        p = probs[i]
        m = seg_max(p)  # with a NaN in the row: NaN or a partial max; either way NaN results
        if not (m > 0) or np.isinf(m):
            out[i] = np.nan
            continue
        f = 2.0 ** 600 if m < 2.0 ** -1000 else (2.0 ** -600 if m > 2.0 ** 1000 else 1.0)
        inv = 1.0 / (m * f)
        sr = cr = su = cu = ties = 0.0
        for j0 in range(0, n, BLOCK):
            br, bu, bt = _block_entropy_terms(p[j0:min(j0 + BLOCK, n)], m, f, inv)
            sr, cr = ksum_add(sr, cr, br)
            su, cu = ksum_add(su, cu, bu)
            ties += bt
        r = ksum_value(sr, cr) + (ties - 1)
        out[i] = np.log1p(r) - ksum_value(su, cu) / (1.0 + r)


@njit(fastmath=_EXACT, **_ROW)
def _normalized(v, m, s):
    """(v / m) / s: an element of a row divided by its scale and its sum
    (its own function, so the caller's reassoc cannot make it v / (m s))."""
    return (v / m) / s


@njit(fastmath=_SUM, **_ROW)
def _block_kl_terms(p, q, mp, sp, mq, sq):
    """sum over pn != 0 of pn (log pn - log qn) over one block, pn = p / mp / sp
    and qn = q / mq / sq."""
    bs = 0.0
    for j in range(p.shape[0]):
        pn = _normalized(np.float64(p[j]), mp, sp)
        qn = _normalized(np.float64(q[j]), mq, sq)
        bs += pn * (vlog(pn) - vlog(qn)) if pn != 0 else 0.0
    return bs


@njit(**_ROW)
def _kl_span(args, r0, r1):
    """sum over pn != 0 of pn (log pn - log qn), rows normalized to sum 1; a
    sum that overflows is taken of the row divided by its largest element
    (_row_scale). NaN where a row holds NaN or inf, as scipy."""
    p, q, out = args
    n = p.shape[1]
    for i in range(r0, r1):
        sp = _sum(p[i])
        sq = _sum(q[i])
        mp = mq = 1.0
        if np.isinf(sp):
            mp = _row_scale(p[i])
            sp = _scaled_sum(p[i], mp)
        if np.isinf(sq):
            mq = _row_scale(q[i])
            sq = _scaled_sum(q[i], mq)
        if not (np.isfinite(sp) and np.isfinite(sq)):  # NaN or inf in a row; else q's NaN could meet p = 0
            out[i] = np.nan
            continue
        s = c = 0.0
        for j0 in range(0, n, BLOCK):
            j1 = min(j0 + BLOCK, n)
            s, c = ksum_add(s, c, _block_kl_terms(p[i, j0:j1], q[i, j0:j1], mp, sp, mq, sq))
        out[i] = ksum_value(s, c)


@njit(**_ROW)
def _kl_logits_row(zp, zq):
    """KL(softmax(zp) || softmax(zq)); zq empty: minus the entropy of softmax(zp)."""
    mp, lsp = _log_norm(zp)
    mq, lsq = _log_norm(zq) if zq.shape[0] else (0.0, 0.0)
    s = c = 0.0
    for j in range(zp.shape[0]):
        lp = (np.float64(zp[j]) - mp) - lsp
        pj = np.exp(lp)
        if pj != 0:
            lq = (np.float64(zq[j]) - mq) - lsq if zq.shape[0] else 0.0
            s, c = ksum_add(s, c, pj * (lp - lq))
    return ksum_value(s, c)


@njit(**_ROW)
def _kl_logits_span(args, r0, r1):
    """KL of softmaxes per row; with q empty, the entropy of softmax(p)."""
    zp, zq, out = args
    for i in range(r0, r1):
        if zq.shape[0]:
            out[i] = _kl_logits_row(zp[i], zq[i])
        else:
            out[i] = -_kl_logits_row(zp[i], zp[i, :0])


@njit(_sigs("void({T}[:, ::1], float64[::1])"), **_ENTRY)
def entropy_rows(probs, out):
    _drive(_entropy_span, (probs, out), probs.shape[0], probs.shape[1])


@njit(_sigs("void({T}[:, ::1], float64[::1])"), **_ENTRY)
def entropy_from_logits_rows(logits, out):
    _drive(_kl_logits_span, (logits, logits[:0], out), logits.shape[0], logits.shape[1])


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], float64[::1])"), **_ENTRY)
def kl_div_rows(p, q, out):
    _drive(_kl_span, (p, q, out), p.shape[0], p.shape[1])


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], float64[::1])"), **_ENTRY)
def kl_div_from_logits_rows(logits_p, logits_q, out):
    _drive(_kl_logits_span, (logits_p, logits_q, out), logits_p.shape[0], logits_p.shape[1])
