"""Reference likelihood kernels in plain numpy: the oracle for the compiled
backends and the fallback for inputs they do not take.

Every function here has the signature of the compiled kernels in
fastmle/_numba/losses.py and csrc/losses_kernels.h (same names, same
argument order), so tests and benchmarks can swap backends freely. They see
the canonical layout the validate layer produces:

- ``logits``, ``probs``, ``target`` probabilities: C-contiguous (rows, n)
  float32 or float64; class ``target``: int64 (rows,), already range-checked
  (entries are in [0, n) or equal to ``ignore_index``);
- ``weight`` and other optional arrays: an empty array means "not given";
- ``grad`` with zero rows means "no gradient wanted"; it may be the logits
  array itself (the kernels read a row before writing it);
- per-row losses are written to float64 arrays, reduced by the caller; the
  elementwise losses (Bernoulli, Gaussian) write one float64 sum per chunk
  of elements, and each element's loss only when asked.

Arithmetic is float64 throughout (float32 inputs are converted), so the
compiled float32 kernels, which store in float32 and accumulate in float64,
are compared against a more accurate answer.
"""
import numpy as np


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _log_softmax(z):
    """Row-wise log-softmax in float64; NaN/inf behave as torch's."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(z, axis=1, keepdims=True) if z.shape[1] else np.zeros((z.shape[0], 1))
        shifted = z - m
        return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def _class_weights(weight, n):
    return _f64(weight) if weight.size else np.ones(n)


# ---- categorical likelihood: class-index targets ----

def nll_rows(log_probs, target, weight, ignore_index, smoothing, grad_scale, loss, grad):
    """Negative log-likelihood of each row's target class, torch's nll_loss
    with optional label smoothing (as torch's cross_entropy defines it):

        loss_i = (1 - eps) * w[y_i] * (-lp[i, y_i]) + eps / n * sum_c w[c] * (-lp[i, c])

    and 0 for rows whose target is ignore_index. grad = grad_scale * d loss_i
    / d lp: -(1 - eps) * w[y_i] at y_i, minus eps / n * w[c] everywhere.
    """
    lp = _f64(log_probs)
    rows, n = lp.shape
    w = _class_weights(weight, n)
    keep = target != ignore_index
    y = np.where(keep, target, 0)
    idx = np.arange(rows)
    with np.errstate(invalid="ignore"):
        row = (1.0 - smoothing) * w[y] * -lp[idx, y]
        if smoothing:  # torch skips this term (and its 0 * inf) without smoothing
            row = row + smoothing / n * -(lp * w).sum(axis=1)
    loss[:] = np.where(keep, row, 0.0)
    if grad.shape[0]:
        g = np.broadcast_to(-grad_scale * smoothing / n * w, (rows, n)).copy()
        g[idx, y] -= grad_scale * (1.0 - smoothing) * w[y]
        g[~keep] = 0.0
        grad[:] = g


def cross_entropy_rows(logits, target, weight, ignore_index, smoothing, grad_scale, loss, grad):
    """Cross-entropy of softmax(logits) against class indices: nll_rows on
    log_softmax(logits). The gradient with respect to the logits is

        grad_scale * (softmax_i * A_i - eps / n * w)   minus grad_scale * (1 - eps) * w[y_i] at y_i,

    with A_i = (1 - eps) * w[y_i] + eps / n * sum(w); zero for ignored rows.
    """
    rows, n = logits.shape
    lp = _log_softmax(_f64(logits))
    nll_rows(lp, target, weight, ignore_index, smoothing, grad_scale, loss, grad[:0])
    if grad.shape[0]:
        w = _class_weights(weight, n)
        keep = target != ignore_index
        y = np.where(keep, target, 0)
        a = (1.0 - smoothing) * w[y] + smoothing / n * w.sum()
        with np.errstate(invalid="ignore"):
            g = grad_scale * (np.exp(lp) * a[:, None] - smoothing / n * w)
            g[np.arange(rows), y] -= grad_scale * (1.0 - smoothing) * w[y]
        g[~keep] = 0.0
        grad[:] = g


# ---- categorical likelihood: probability targets ----

def cross_entropy_soft_rows(logits, target, weight, smoothing, grad_scale, loss, grad):
    """Cross-entropy against class probabilities, as torch: with
    t' = (1 - eps) * t + eps / n,

        loss_i = -sum_c w[c] * t'[i, c] * log_softmax(logits)[i, c]
        grad   = grad_scale * (softmax_i * sum_c w[c] t'[i, c] - w * t'[i])
    """
    rows, n = logits.shape
    lp = _log_softmax(_f64(logits))
    w = _class_weights(weight, n)
    t = (1.0 - smoothing) * _f64(target) + smoothing / n
    wt = w * t
    with np.errstate(invalid="ignore"):
        loss[:] = -(wt * lp).sum(axis=1)
        if grad.shape[0]:
            grad[:] = grad_scale * (np.exp(lp) * wt.sum(axis=1, keepdims=True) - wt)


# ---- Bernoulli likelihood ----

def _chunk_sums(loss_elements, chunk, partial, loss):
    """The outputs of an elementwise kernel from its float64 losses:
    partial[c] = the sum of chunk c (elements [c chunk, (c + 1) chunk)),
    and the losses themselves in `loss` when it is not empty."""
    padded = np.zeros(partial.shape[0] * chunk)
    padded[:loss_elements.size] = loss_elements
    partial[:] = padded.reshape(-1, chunk).sum(axis=1)  # numpy's pairwise sums
    if loss.shape[0]:
        loss[:] = loss_elements


def bce_with_logits(logits, target, weight, pos_weight, grad_scale, chunk, partial, loss, grad):
    """Elementwise binary cross-entropy on logits x, torch's loss

        loss = w * ((1 - t) * x + lw * softplus(-x)),  lw = 1 + (pw - 1) * t,
        softplus(v) = log1p(exp(-|v|)) + max(v, 0)

    computed for finite x and t in [0, 1] as w * ((1 - t) * softplus(x) +
    pw * t * softplus(-x)), the same function with no cancellation for hard
    targets (t = 0, x = -40: x + softplus(-x) was 0, the loss is 4.2e-18);
    elsewhere (infinite x, targets that are no probabilities) torch's form
    and special values. The gradient there

        grad = grad_scale * w * ((1 - t) * sigmoid(x) - pw * t * sigmoid(-x))

    (elsewhere torch's ((pw * t + 1) - t) * sigmoid(x) - pw * t, without
    pos_weight sigmoid(x) - t, with their special values, e.g. NaN for t =
    inf with pos_weight).
    All arrays 1-D of one length (broadcasting already done); weight and
    pos_weight may be empty (all ones). The losses are summed per chunk of
    `chunk` elements into partial (see _chunk_sums); `loss` (empty: not
    wanted) receives each element's.
    """
    x, t = _f64(logits), _f64(target)
    w = _f64(weight) if weight.size else 1.0
    pw = _f64(pos_weight) if pos_weight.size else 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        l1pe = np.log1p(np.exp(-np.abs(x)))
        stable = (1.0 - t) * (np.maximum(x, 0.0) + l1pe) + pw * t * (np.maximum(-x, 0.0) + l1pe)
        lw = 1.0 + (pw - 1.0) * t if pos_weight.size else 1.0
        torch_form = (1.0 - t) * x + lw * (l1pe + np.maximum(-x, 0.0))
        use_stable = np.isfinite(x) & (t >= 0.0) & (t <= 1.0)
        _chunk_sums(w * np.where(use_stable, stable, torch_form), chunk, partial, loss)
        if grad.shape[0]:
            e = np.exp(-np.abs(x))
            big, small = 1.0 / (1.0 + e), e / (1.0 + e)
            sig, sig_neg = np.where(x >= 0, big, small), np.where(x >= 0, small, big)
            torch_grad = ((pw * t + 1.0) - t) * sig - pw * t if pos_weight.size else sig - t
            grad[:] = grad_scale * w * np.where(use_stable, (1.0 - t) * sig - pw * t * sig_neg, torch_grad)


# ---- Gaussian likelihood ----

HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)


def gaussian_nll(pred, target, var, eps, full, loss_scale, grad_scale, chunk, partial, loss, grad_pred, grad_var):
    """Elementwise Gaussian negative log-likelihood, torch's gaussian_nll_loss:
    with v = max(var, eps) (the clamp passes the gradient through, as torch's
    no-grad clamp does),

        loss      = 0.5 * (log(v) + (pred - target)**2 / v)  [+ 0.5 * log(2 pi) if full]
        grad_pred = grad_scale * (pred - target) / v
        grad_var  = grad_scale * 0.5 * (1 / v - (pred - target)**2 / v**2)

    pred and target are 1-D of one length; var has that length or length 1.
    Each loss is multiplied by loss_scale (mse_loss: 2) before it goes to
    partial and loss as in bce_with_logits; grad_pred / grad_var with no
    elements are not computed.
    """
    p, t = _f64(pred), _f64(target)
    v = np.maximum(_f64(var), eps)  # np.maximum keeps NaN, as torch's clamp
    d = p - t
    with np.errstate(invalid="ignore", divide="ignore"):
        losses = loss_scale * (0.5 * (np.log(v) + d * d / v) + (HALF_LOG_2PI if full else 0.0))
        _chunk_sums(losses, chunk, partial, loss)
        if grad_pred.shape[0]:
            grad_pred[:] = grad_scale * d / v
        if grad_var.shape[0]:
            grad_var[:] = grad_scale * 0.5 * (1.0 / v - d * d / (v * v))


# ---- information measures (rows of probabilities or logits) ----

def _divided_by_max(p, rows):
    """p with the given rows (a boolean mask) divided by their largest
    element, where that is finite and positive (a row holding inf or NaN, or
    only zeros, is left as it is)."""
    with np.errstate(invalid="ignore"):
        m = np.max(np.where(np.isnan(p), 0.0, p), axis=1)
    rows = rows & (m > 0) & np.isfinite(m)
    with np.errstate(under="ignore"):
        return np.where(rows[:, None], p / np.where(rows, m, 1.0)[:, None], p)


def entropy_rows(probs, out):
    """Shannon entropy (nats) of each row normalized to sum 1, as
    scipy.stats.entropy, in a form with no cancellation. With M the row's
    largest element, u = p / M (so u <= 1 and one u is exactly 1) and R the
    sum of the other u (every element but one occurrence of M),

        H = log1p(R) - sum_{u != 0} u log u / (1 + R),

    a sum of two terms >= 0. The textbook log S - sum p log p / S subtracts
    two numbers near log S: for [6, 1e-10, 2e-10, 3e-10] it lost 1.2e-7 of
    H's relative precision, and 3.3e-4 for [1000, 1e-12]. Dividing by M
    also keeps p log p from overflowing (p near 1e306) and a row of
    subnormal numbers from losing their precision (an element whose ratio
    to M is subnormal keeps only that ratio's absolute precision, 2^-1074,
    as in scipy). A row holding NaN or inf, or only zeros, gives NaN, as in
    scipy.stats.entropy."""
    p = _f64(probs)
    with np.errstate(invalid="ignore", divide="ignore", under="ignore"):
        m = p.max(axis=1, keepdims=True)
        u = p / m
        others = p != m
        rest = np.where(others, u, 0.0).sum(axis=1) + (np.sum(~others, axis=1) - 1)
        ulogu = np.where(others & (u != 0), u * np.log(np.where(u != 0, u, 1.0)), 0.0).sum(axis=1)
        h = np.log1p(rest) - ulogu / (1.0 + rest)
    m = m[:, 0]
    out[:] = np.where((m > 0) & (m < np.inf), h, np.nan)  # NaN for a NaN max too


def entropy_from_logits_rows(logits, out):
    """Entropy of softmax(logits): H = L - sum_c softmax_c * z_c, L = logsumexp
    (terms with probability 0 contribute 0, even where z_c = -inf)."""
    z = _f64(logits)
    lp = _log_softmax(z)
    with np.errstate(invalid="ignore"):
        p = np.exp(lp)
        out[:] = -np.where(p != 0, p * lp, 0.0).sum(axis=1)


def kl_div_rows(p, q, out):
    """KL(p || q) of rows normalized to sum 1, as scipy.stats.entropy(p, q):
    sum over p != 0 of p log(p / q); +inf where p > 0 and q = 0. A row whose
    sum overflows is first divided by its largest element (scipy.stats.entropy
    gets 0 or inf there). A row of p or q holding NaN or inf gives NaN, as
    in scipy.stats.entropy, even where the NaN of q / sum q meets p = 0."""
    pp, qq = _f64(p), _f64(q)
    with np.errstate(over="ignore"):
        pp = _divided_by_max(pp, np.isinf(pp.sum(axis=1)))
        qq = _divided_by_max(qq, np.isinf(qq.sum(axis=1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        sp, sq = pp.sum(axis=1, keepdims=True), qq.sum(axis=1, keepdims=True)
        pn, qn = pp / sp, qq / sq
        terms = np.where(pn != 0, pn * (np.log(np.where(pn != 0, pn, 1.0)) - np.log(qn)), 0.0)
        out[:] = np.where((np.isfinite(sp) & np.isfinite(sq))[:, 0], terms.sum(axis=1), np.nan)


def kl_div_from_logits_rows(logits_p, logits_q, out):
    """KL(softmax(logits_p) || softmax(logits_q)) per row."""
    lp = _log_softmax(_f64(logits_p))
    lq = _log_softmax(_f64(logits_q))
    with np.errstate(invalid="ignore"):
        p = np.exp(lp)
        out[:] = np.where(p != 0, p * (lp - lq), 0.0).sum(axis=1)
