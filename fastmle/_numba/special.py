"""Numba kernels of the "special" family: logsumexp, softmax, log_softmax.

Mirrors csrc/special_kernels.h (read them side by side). Inputs are
C-contiguous 2-D (rows, n) float32/float64 arrays reduced over the last axis;
the validate layer has checked everything else.

exp is evaluated in the element type (vexp_same); every sum is accumulated in
float64, vectorized within blocks of BLOCK elements, and block sums are merged
with Neumaier compensation. Rows longer than ROW_CHUNK are split into fixed
chunks shared by the threads and merged in chunk order, so results do not
depend on the thread count. Only the four entry points are parallel: Numba
parallel functions called from a parallel region are slow to launch.
"""
import numpy as np
from numba import njit, prange

from .vexp import vexp_same

BLOCK = 256
ROW_CHUNK = 16384
PARALLEL_MIN_ELEMENTS = 32768

# reassoc lets LLVM vectorize the block sums; the exponential and the
# compensated merge are separate functions compiled without it, and LLVM's
# inlining keeps each instruction's own flags.
_SUM = {"reassoc", "contract"}
_EXACT = {"contract"}


def _sigs(template):
    return [template.format(T=t) for t in ("float32", "float64")]


# ---- compensated (Neumaier) accumulation on (sum, compensation) pairs ----

@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def ksum_add(s, c, v):
    t = s + v
    if not np.isfinite(t):  # inf/NaN: no compensation, keep the raw sum
        pass
    elif abs(s) >= abs(v):
        c += (s - t) + v
    else:
        c += (v - t) + s
    return t, c


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def ksum_value(s, c):
    return s + c if np.isfinite(s) else s


@njit(cache=True, error_model="numpy")
def sign(v):
    if v > 0:
        return 1.0
    if v < 0:
        return -1.0
    return v  # 0.0 or NaN


# ---- segments (a whole short row, or one chunk of a long row) ----

@njit(cache=True, error_model="numpy")
def seg_max(x):
    """Largest element, ignoring NaN (-inf if none)."""
    m = x.dtype.type(-np.inf)
    for j in range(x.shape[0]):
        v = x[j]
        m = v if v > m else m
    return np.float64(m)


@njit(cache=True, error_model="numpy")
def seg_max_weighted(a, b):
    """Largest a over the elements with b != 0, ignoring NaN."""
    m = a.dtype.type(-np.inf)
    for j in range(a.shape[0]):
        v = a[j]
        m = v if (b[j] != 0 and v > m) else m
    return np.float64(m)


# LLVM picks one vector width per loop: a float64 accumulator in the float32
# exponential's loop would halve its width. So each block first writes its
# exponentials (float32 lanes), then a second short loop sums them in float64.

@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def _block_exp(x, sh, buf, j0, j1):
    for j in range(j0, j1):
        buf[j - j0] = vexp_same(x[j] - sh)


@njit(fastmath=_SUM, cache=True, error_model="numpy")
def _block_exp_split(x, sh, buf, j0, j1):
    """buf = exp(x - sh) with the elements equal to sh zeroed; their count."""
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    bc = zero  # exact: a block has far fewer than 2**24 elements
    for j in range(j0, j1):
        d = x[j] - sh
        e = vexp_same(d)
        buf[j - j0] = e if d != 0 else zero
        bc += one if d == 0 else zero
    return bc


@njit(fastmath=_SUM, cache=True, error_model="numpy")
def _block_sum(buf, length):
    bs = 0.0
    for k in range(length):
        bs += np.float64(buf[k])
    return bs


@njit(cache=True, error_model="numpy")
def seg_sum_exp(x, shift, store, split):
    """(sum, compensation, count) of exp(x - shift); the exponentials are
    written to store when it has elements. With split, elements equal to shift
    are left out of the sum and counted instead: exp(0) = 1, and logsumexp's
    accurate log1p(s / cnt) + log(cnt) form needs the remainder alone."""
    sh = x.dtype.type(shift)  # exact: shift is an element or 0
    n = x.shape[0]
    scratch = np.empty(min(BLOCK, n), x.dtype)
    s = 0.0
    c = 0.0
    count = 0.0
    for j0 in range(0, n, BLOCK):
        j1 = min(j0 + BLOCK, n)
        if split:
            count += np.float64(_block_exp_split(x, sh, scratch, j0, j1))
            bs = _block_sum(scratch, j1 - j0)
        elif store.shape[0]:
            _block_exp(x, sh, store[j0:j1], j0, j1)
            bs = _block_sum(store[j0:j1], j1 - j0)
        else:
            _block_exp(x, sh, scratch, j0, j1)
            bs = _block_sum(scratch, j1 - j0)
        s, c = ksum_add(s, c, bs)
    return s, c, count


@njit(fastmath=_SUM, cache=True, error_model="numpy")
def _block_sum_exp_weighted(a, b, sh, j0, j1):
    bs = 0.0
    bm = 0.0
    for j in range(j0, j1):
        w = np.float64(b[j])
        d = a[j] - sh
        e = w * np.float64(vexp_same(d))
        bs += 0.0 if (w == 0.0 or d == 0) else e
        bm += w if (w != 0.0 and d == 0) else 0.0
    return bs, bm


@njit(cache=True, error_model="numpy")
def seg_sum_exp_weighted(a, b, shift):
    """(s, s_comp, w, w_comp): s sums b*exp(a - shift) where a != shift, w sums
    b where a == shift; elements with b == 0 are left out."""
    sh = a.dtype.type(shift)
    n = a.shape[0]
    s = c = w = cw = 0.0
    for j0 in range(0, n, BLOCK):
        j1 = min(j0 + BLOCK, n)
        bs, bm = _block_sum_exp_weighted(a, b, sh, j0, j1)
        s, c = ksum_add(s, c, bs)
        w, cw = ksum_add(w, cw, bm)
    return s, c, w, cw


@njit(cache=True, error_model="numpy")
def seg_sum_exp_direct(a, b):
    """Unshifted sum of b*exp(a) in the input's precision, for the rare rows
    whose shifted result is not finite (reproduces scipy's special values).
    b empty means all ones."""
    s = 0.0
    for j in range(a.shape[0]):
        e = vexp_same(a[j])
        s += np.float64(b[j] * e) if b.shape[0] else np.float64(e)
    return np.float64(a.dtype.type(s))


@njit(cache=True, error_model="numpy")
def seg_scale(y, factor):
    """y *= factor in the element type (float32: one rounding of the factor)."""
    f = y.dtype.type(factor)
    for j in range(y.shape[0]):
        y[j] = y[j] * f


@njit(cache=True, error_model="numpy")
def seg_sub2(x, c1, c2, out):
    """out = (x - c1) - c2 in the element type; c1 is an element (or 0)."""
    a = x.dtype.type(c1)
    b = x.dtype.type(c2)
    for j in range(x.shape[0]):
        out[j] = (x[j] - a) - b


# ---- finishing a row from its sums (shared by short and long rows) ----

@njit(cache=True, error_model="numpy")
def logsumexp_finish(a, m, s, cnt):
    # accurate form (Blanchard, Higham & Higham 2021): max terms kept apart
    r = (np.log1p(s / cnt) + np.log(cnt)) + m
    if not np.isfinite(r):  # inf or NaN present, or all -inf
        r = np.log(seg_sum_exp_direct(a, a[:0]))
    return r


@njit(cache=True, error_model="numpy")
def logsumexp_weighted_finish(a, b, return_sign, m, s, w):
    # sign and magnitude exactly as scipy.special.logsumexp separates them
    if s != 0:
        s = s / w
    sgn = sign(s + 1) * sign(w)
    if s < -1:
        s = -s - 2
    r = (np.log1p(s) + np.log(abs(w))) + m
    if not return_sign and sgn < 0:
        r = np.nan
    if not np.isfinite(r):
        direct = seg_sum_exp_direct(a, b)
        sgn = sign(direct)
        r = np.log(abs(direct) if return_sign else direct)
    return r, sgn


@njit(cache=True, error_model="numpy")
def log_softmax_shift(m):
    return m if np.isfinite(m) else 0.0  # as scipy: non-finite max -> 0


# ---- one short row of each kernel ----

@njit(cache=True, error_model="numpy")
def logsumexp_row(a):
    m = seg_max(a)
    s, c, cnt = seg_sum_exp(a, m, a[:0], True)
    return logsumexp_finish(a, m, ksum_value(s, c), cnt)


@njit(cache=True, error_model="numpy")
def logsumexp_weighted_row(a, b, return_sign):
    m = seg_max_weighted(a, b)
    s, c, w, cw = seg_sum_exp_weighted(a, b, m)
    return logsumexp_weighted_finish(a, b, return_sign, m, ksum_value(s, c), ksum_value(w, cw))


@njit(cache=True, error_model="numpy")
def softmax_row(x, out):
    m = seg_max(x)
    s, c, _ = seg_sum_exp(x, m, out, False)
    seg_scale(out, 1.0 / ksum_value(s, c))


@njit(cache=True, error_model="numpy")
def log_softmax_row(x, out):
    m = log_softmax_shift(seg_max(x))
    s, c, _ = seg_sum_exp(x, m, x[:0], False)
    seg_sub2(x, m, np.log(ksum_value(s, c)), out)


# ---- long rows: chunk partials computed in parallel, merged in order ----

@njit(cache=True, error_model="numpy")
def _merge(part, col):
    s = c = 0.0
    for k in range(part.shape[0]):
        s, c = ksum_add(s, c, part[k, col])
        s, c = ksum_add(s, c, part[k, col + 1])
    return ksum_value(s, c)


@njit(cache=True, error_model="numpy")
def _max_of(part):
    return seg_max(part[:, 0].copy())


@njit(_sigs("void({T}[:, ::1], {T}[::1])"), parallel=True, cache=True, nogil=True, error_model="numpy")
def logsumexp(a, out):
    rows, n = a.shape
    if n <= ROW_CHUNK:
        if rows * n < PARALLEL_MIN_ELEMENTS:
            for i in range(rows):
                out[i] = logsumexp_row(a[i])
        else:
            for i in prange(rows):
                out[i] = logsumexp_row(a[i])
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 3))
    for i in range(rows):
        row = a[i]
        for k in prange(nc):
            part[k, 0] = seg_max(row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK])
        m = _max_of(part)
        for k in prange(nc):
            part[k, 0], part[k, 1], part[k, 2] = seg_sum_exp(
                row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], m, row[:0], True)
        out[i] = logsumexp_finish(row, m, _merge(part, 0), part[:, 2].sum())


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], boolean, {T}[::1], {T}[::1])"),
      parallel=True, cache=True, nogil=True, error_model="numpy")
def logsumexp_weighted(a, b, return_sign, out, sign):
    rows, n = a.shape
    if n <= ROW_CHUNK:
        if rows * n < PARALLEL_MIN_ELEMENTS:
            for i in range(rows):
                out[i], sign[i] = logsumexp_weighted_row(a[i], b[i], return_sign)
        else:
            for i in prange(rows):
                out[i], sign[i] = logsumexp_weighted_row(a[i], b[i], return_sign)
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 4))
    for i in range(rows):
        ra = a[i]
        rb = b[i]
        for k in prange(nc):
            part[k, 0] = seg_max_weighted(ra[k * ROW_CHUNK:(k + 1) * ROW_CHUNK],
                                          rb[k * ROW_CHUNK:(k + 1) * ROW_CHUNK])
        m = _max_of(part)
        for k in prange(nc):
            part[k, 0], part[k, 1], part[k, 2], part[k, 3] = seg_sum_exp_weighted(
                ra[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], rb[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], m)
        out[i], sign[i] = logsumexp_weighted_finish(ra, rb, return_sign, m,
                                                    _merge(part, 0), _merge(part, 2))


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1])"), parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax(x, out):
    rows, n = x.shape
    if n <= ROW_CHUNK:
        if rows * n < PARALLEL_MIN_ELEMENTS:
            for i in range(rows):
                softmax_row(x[i], out[i])
        else:
            for i in prange(rows):
                softmax_row(x[i], out[i])
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 3))
    for i in range(rows):
        row = x[i]
        orow = out[i]
        for k in prange(nc):
            part[k, 0] = seg_max(row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK])
        m = _max_of(part)
        for k in prange(nc):
            part[k, 0], part[k, 1], part[k, 2] = seg_sum_exp(
                row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], m,
                orow[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], False)
        inv = 1.0 / _merge(part, 0)
        for k in prange(nc):
            seg_scale(orow[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], inv)


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1])"), parallel=True, cache=True, nogil=True, error_model="numpy")
def log_softmax(x, out):
    rows, n = x.shape
    if n <= ROW_CHUNK:
        if rows * n < PARALLEL_MIN_ELEMENTS:
            for i in range(rows):
                log_softmax_row(x[i], out[i])
        else:
            for i in prange(rows):
                log_softmax_row(x[i], out[i])
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 3))
    for i in range(rows):
        row = x[i]
        orow = out[i]
        for k in prange(nc):
            part[k, 0] = seg_max(row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK])
        m = log_softmax_shift(_max_of(part))
        for k in prange(nc):
            part[k, 0], part[k, 1], part[k, 2] = seg_sum_exp(
                row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], m, row[:0], False)
        logs = np.log(_merge(part, 0))
        for k in prange(nc):
            seg_sub2(row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK], m, logs,
                     orow[k * ROW_CHUNK:(k + 1) * ROW_CHUNK])
