"""Numba kernels of the "special" family: logsumexp, softmax, log_softmax.

Mirrors csrc/special_kernels.h (read them side by side). Inputs are
C-contiguous 2-D (rows, n) float32/float64 arrays reduced over the last axis;
the validate layer has checked everything else.

exp is evaluated in the element type (vexp_same); every sum is accumulated in
float64, vectorized within blocks (exp_block: BLOCK or BLOCK_F32 elements),
and block sums are merged with Neumaier compensation. Rows longer than
ROW_CHUNK are split into fixed chunks shared by the threads and merged in
chunk order, so results do not depend on the thread count. Only the entry
points are parallel (Numba parallel functions called from a parallel region
are slow to launch); short rows go through one inlined driver (_drive),
shared with losses.py.
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .vexp import vexp_normal_same, vexp_same, vexp_sum

BLOCK = 256
# float32 exponential sums use longer blocks (csrc/special_kernels.h FM_BLOCK:
# each block ends with a horizontal sum of the lanes, and float's sums in
# float64 stay far more accurate than its results); buffers hold either.
BLOCK_F32 = 1024
ROW_CHUNK = 16384
PARALLEL_MIN_ELEMENTS = 32768
CACHE_LINE = 64  # bytes, for the prefetch stride

# reassoc lets LLVM vectorize the block sums; the exponential and the
# compensated merge are separate functions compiled without it, and LLVM's
# inlining keeps each instruction's own flags.
_SUM = {"reassoc", "contract"}
_EXACT = {"contract"}
_ENTRY = dict(parallel=True, cache=True, nogil=True, error_model="numpy")
_ROW = dict(cache=True, error_model="numpy")


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


# ---- drivers: rows in at most TASKS tasks ----

# Numba hands a prange's iterations to the threads in equal contiguous parts
# (its default static schedule, as C's schedule(static)), so more tasks do
# not balance the load, they only add each task's call and scratch. With
# tasks of about 16384 elements (until session 10: 2048 tasks for 32768 x
# 1000), log_softmax of that float32 array on 2 threads took 8.53-9.61 ms
# against 8.28-8.78 ms with 64 tasks (four alternating runs). 64, not one
# per thread: cached compiled code cannot read the thread count, and 64
# keeps the parts even for up to 16 threads.
TASKS = 64


@njit(**_ROW)
def _spans(rows, n):
    """(rows per task, tasks); one task means: run serially."""
    if rows * n < PARALLEL_MIN_ELEMENTS:
        return rows, 1
    per = (rows + TASKS - 1) // TASKS
    return per, (rows + per - 1) // per


@njit(inline="always", **_ROW)
def _drive(span, args, rows, n):
    """span(args, r0, r1) over rows [0, rows) of n elements: serially for small
    inputs, else in tasks shared by the threads. Inlined (at Numba level) into
    each entry point, so that the entry's parallel=True turns prange parallel.
    A task allocates its scratch once, not once per row."""
    per, tasks = _spans(rows, n)
    if tasks == 1:
        span(args, 0, rows)
    else:
        for k in prange(tasks):
            span(args, k * per, min(rows, (k + 1) * per))


@njit(**_ROW)
def _next_row(x, i):
    """Row i + 1 of x, what the thread on row i most likely reads next (for
    prefetch); empty after the last row."""
    return x[i + 1] if i + 1 < x.shape[0] else x[i, :0]


# ---- LLVM intrinsics ----

def _min_max_intrinsic(name):
    """llvm.maxnum / llvm.minnum: the larger / smaller of a and b, ignoring a
    NaN operand (as the select `v if v > m else m`, which LLVM does not
    vectorize; these it does)."""
    @intrinsic
    def minmax(typingctx, a, b):
        if a != b or a not in (types.float32, types.float64):
            return None

        def codegen(context, builder, signature, args):
            lt = args[0].type
            fn = builder.module.declare_intrinsic(name, [lt], ir.FunctionType(lt, [lt, lt]))
            return builder.call(fn, args)

        return a(a, b), codegen
    return minmax


_maxnum = _min_max_intrinsic("llvm.maxnum")
_minnum = _min_max_intrinsic("llvm.minnum")


def _prefetch_intrinsic(locality):
    """llvm.prefetch of the cache line holding x[k] for reading, like C's
    __builtin_prefetch(p, 0, locality): 3 keeps it in every level, 2 brings
    it to L2 only (x86 prefetcht1). A hint: k is not checked and never
    faults."""
    @intrinsic
    def prefetch(typingctx, x, k):
        if not isinstance(x, types.Array) or not isinstance(k, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p],
                                                  ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
            address = builder.bitcast(builder.gep(data, [args[1]]), i8p)
            builder.call(fn, [address, i32(0), i32(locality), i32(1)])
            return context.get_dummy_value()

        return types.none(x, k), codegen
    return prefetch


_prefetch = _prefetch_intrinsic(3)
_prefetch_l2 = _prefetch_intrinsic(2)


# ---- segments (a whole short row, or one chunk of a long row) ----

# Helpers take slices and loop from 0: with range(j0, j1) Numba cannot rule
# out negative indices, and its wraparound selects turn vector loads into
# element-by-element inserts.

@njit(**_ROW)
def _same(a, b):
    """a is b's memory (a non-empty): an in-place call."""
    return a.shape[0] > 0 and a.ctypes.data == b.ctypes.data


# The max and min passes are compiled without NaN semantics (fastmath
# "nnan"): llvm.maxnum / minnum then take one vmaxps / vminps per vector
# instead of three (max and compare for NaN and blend), which took the
# max-min pass from 0.150 to 0.061 ns per float32 element in cache (Zen 4)
# and was most of Numba's gap to C. For a segment without NaN the result is
# exact. With NaN it may be NaN or the max of some of the elements: every
# caller then gets NaN anyway, as NaN also reaches the segment's sum of
# exponentials (tests: special values in every kernel).

@njit(fastmath={"nnan"}, **_ROW)
def seg_max(x):
    """Largest element (-inf if x is empty; see above for NaN)."""
    m = x.dtype.type(-np.inf)
    for j in range(x.shape[0]):
        m = _maxnum(m, x[j])
    return np.float64(m)


@njit(fastmath={"nnan"}, **_ROW)
def seg_max_min(x):
    """(largest, smallest) element (see above for NaN)."""
    m = x.dtype.type(-np.inf)
    lo = x.dtype.type(np.inf)
    for j in range(x.shape[0]):
        m = _maxnum(m, x[j])
        lo = _minnum(lo, x[j])
    return np.float64(m), np.float64(lo)


@njit(**_ROW)
def exp_normal_ok(x, m, lo):
    """Whether every exp(x - m) of a row with max m and min lo is a normal
    number, so vexp_normal_same gives the same bits as vexp_same (rows with
    inf or only -inf fail: max - min is inf or NaN). As C's exp_normal_ok."""
    return m - lo <= (87.3365 if x.itemsize == 4 else 708.39)


@njit(**_ROW)
def seg_max_weighted(a, b):
    """Largest a over the elements with b != 0, ignoring NaN."""
    m = a.dtype.type(-np.inf)
    for j in range(a.shape[0]):
        m = _maxnum(m, a[j] if b[j] != 0 else a.dtype.type(-np.inf))
    return np.float64(m)


# LLVM picks one vector width per loop: a float64 accumulator in the float32
# exponential's loop would halve its width. So each block first writes its
# exponentials (float32 lanes), then a second short loop sums them in float64.

@njit(fastmath=_EXACT, **_ROW)
def _block_exp_to(x, sh, buf):
    for k in range(x.shape[0]):
        buf[k] = vexp_same(x[k] - sh)


@njit(fastmath=_EXACT, **_ROW)
def _block_exp_to_normal(x, sh, buf):
    """_block_exp_to for rows where exp_normal_ok (same bits, cheaper)."""
    for k in range(x.shape[0]):
        buf[k] = vexp_normal_same(x[k] - sh)


@njit(fastmath=_EXACT, **_ROW)
def _block_exp_self_normal(buf, sh):
    """_block_exp_self for rows where exp_normal_ok."""
    for k in range(buf.shape[0]):
        buf[k] = vexp_normal_same(buf[k] - sh)


@njit(fastmath=_EXACT, **_ROW)
def _block_exp_self(buf, sh):
    """buf = exp(buf - sh): one array, so LLVM vectorizes it without the
    overlap check that sends an in-place two-array loop to its scalar path."""
    for k in range(buf.shape[0]):
        buf[k] = vexp_same(buf[k] - sh)


@njit(fastmath=_SUM, **_ROW)
def _block_exp_split(x, sh, buf):
    """buf = exp(x - sh) with the elements equal to sh zeroed; their count."""
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    bc = zero  # exact: a block has far fewer than 2**24 elements
    for k in range(x.shape[0]):
        d = x[k] - sh
        e = vexp_sum(d)  # only summed
        buf[k] = e if d != 0 else zero
        bc += one if d == 0 else zero
    return bc


@njit(fastmath=_EXACT, **_ROW)
def _block_exp_for_sum(x, sh, buf):
    """buf = exp(x - sh) where the exponentials are only summed (see vexp_sum)."""
    for k in range(x.shape[0]):
        buf[k] = vexp_sum(x[k] - sh)


@njit(inline="always", **_ROW)
def exp_block(x):
    """Block length of the exponential sums for x's element type."""
    return BLOCK_F32 if x.itemsize == 4 else BLOCK


@njit(inline="always", **_ROW)
def exp_buffer(x):
    """Scratch for one block of x's exponentials (seg_sum_exp's buf)."""
    return np.empty(exp_block(x), x.dtype)


@njit(fastmath=_SUM, **_ROW)
def _block_sum(buf):
    """Pairs added in the element type first (one rounding, at most 2**-24
    relative for float32): half the conversions to float64, which bound this
    loop's speed (as csrc/special_kernels.h)."""
    half = buf.shape[0] // 2
    bs = 0.0
    for k in range(half):
        bs += np.float64(buf[k] + buf[k + half])
    if buf.shape[0] & 1:
        bs += np.float64(buf[buf.shape[0] - 1])
    return bs


@njit(**_ROW)
def seg_sum_exp(x, shift, store, buf, split, nxt, normal):
    """(sum, compensation, count) of exp(x - shift) in float64. The
    exponentials (element type) are written to store when it has elements
    (store may be x itself), else to the scratch buf (exp_buffer). With split,
    elements equal to shift are left out of the sum and counted instead:
    exp(0) = 1, and logsumexp's accurate log1p(s / cnt) + log(cnt) form needs
    the remainder alone. nxt (the next row, or empty) is prefetched block by
    block, so its memory traffic overlaps this row's arithmetic, for float64
    only (as the C kernels, csrc/fm_common_kernels.h's prefetch). normal: the
    row passes exp_normal_ok, so the exponentials use the cheaper
    vexp_normal_same (same bits)."""
    sh = x.dtype.type(shift)  # exact: shift is an element or 0
    n = x.shape[0]
    inplace = _same(store, x)
    line = CACHE_LINE // x.itemsize
    block = exp_block(x)
    s = c = count = 0.0
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        if nxt.shape[0] and x.itemsize == 8:
            for k in range(j0, j1, line):
                _prefetch(nxt, k)
        dst = store[j0:j1] if store.shape[0] else buf[:j1 - j0]
        if split:
            count += np.float64(_block_exp_split(x[j0:j1], sh, dst))
        elif inplace and normal:
            _block_exp_self_normal(dst, sh)
        elif inplace:
            _block_exp_self(dst, sh)
        elif normal:  # stored or only summed: same bits as vexp_same / vexp_sum
            _block_exp_to_normal(x[j0:j1], sh, dst)
        elif store.shape[0]:
            _block_exp_to(x[j0:j1], sh, dst)
        else:  # only summed
            _block_exp_for_sum(x[j0:j1], sh, dst)
        s, c = ksum_add(s, c, _block_sum(dst))
    return s, c, count


@njit(fastmath=_SUM, **_ROW)
def _block_sum_exp_weighted(a, b, sh):
    bs = 0.0
    bm = 0.0
    for j in range(a.shape[0]):
        w = np.float64(b[j])
        d = a[j] - sh
        e = w * np.float64(vexp_same(d))
        bs += 0.0 if (w == 0.0 or d == 0) else e
        bm += w if (w != 0.0 and d == 0) else 0.0
    return bs, bm


@njit(**_ROW)
def seg_sum_exp_weighted(a, b, shift):
    """(s, s_comp, w, w_comp): s sums b*exp(a - shift) where a != shift, w sums
    b where a == shift; elements with b == 0 are left out."""
    sh = a.dtype.type(shift)
    n = a.shape[0]
    block = exp_block(a)
    s = c = w = cw = 0.0
    for j0 in range(0, n, block):
        j1 = min(j0 + block, n)
        bs, bm = _block_sum_exp_weighted(a[j0:j1], b[j0:j1], sh)
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


@njit(**_ROW)
def seg_sub2(x, c1, c2, out):
    """out = (x - c1) - c2 in the element type; c1 is an element (or 0).
    out may be x (then a one-array loop, see _block_exp_self)."""
    a = x.dtype.type(c1)
    b = x.dtype.type(c2)
    if _same(out, x):
        for j in range(out.shape[0]):
            out[j] = (out[j] - a) - b
    else:
        for j in range(x.shape[0]):
            out[j] = (x[j] - a) - b


# ---- finishing a row from its sums (shared by short and long rows) ----

@njit(cache=True, error_model="numpy")
def logsumexp_finish(a, m, s, cnt):
    # accurate form (Blanchard, Higham & Higham 2021): max terms kept apart,
    # float32 rows too (their pairs are added in float32 first, where a max
    # term's 1 absorbed the rest: logsumexp([0, -20]) was 0, not 2.06e-9)
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


# ---- one short row of each kernel (buf: exp_buffer scratch, nxt: see seg_sum_exp) ----

@njit(**_ROW)
def logsumexp_row(a, buf, nxt):
    m = seg_max(a)
    s, c, cnt = seg_sum_exp(a, m, a[:0], buf, True, nxt, False)
    return logsumexp_finish(a, m, ksum_value(s, c), cnt)


@njit(**_ROW)
def logsumexp_weighted_row(a, b, return_sign):
    m = seg_max_weighted(a, b)
    s, c, w, cw = seg_sum_exp_weighted(a, b, m)
    return logsumexp_weighted_finish(a, b, return_sign, m, ksum_value(s, c), ksum_value(w, cw))


@njit(**_ROW)
def softmax_row(x, out, buf, nxt):
    # the exponentials are stored in out and rescaled while still in cache
    m, lo = seg_max_min(x)
    s, c, _ = seg_sum_exp(x, m, out, buf, False, nxt, exp_normal_ok(x, m, lo))
    seg_scale(out, 1.0 / ksum_value(s, c))


@njit(**_ROW)
def log_softmax_row(x, out, buf, nxt):
    m, lo = seg_max_min(x)
    if not np.isfinite(m):
        # as scipy: a non-finite max is replaced by 0, and the sum taken by
        # the exact path (the exponential that is only summed, used when
        # out is x, takes arguments <= 0 only)
        seg_sub2(x, 0.0, np.log(seg_sum_exp_direct(x, x[:0])), out)
        return
    # the exponentials go to out (unless out is x) only to bring its lines
    # into the cache; the last pass then writes to cache
    s, c, _ = seg_sum_exp(x, m, x[:0] if _same(out, x) else out, buf, False, nxt, exp_normal_ok(x, m, lo))
    seg_sub2(x, m, np.log(ksum_value(s, c)), out)


# ---- short rows: spans of rows (see _drive) ----

@njit(**_ROW)
def _logsumexp_span(args, r0, r1):
    a, out = args
    buf = exp_buffer(a)
    for i in range(r0, r1):
        out[i] = logsumexp_row(a[i], buf, _next_row(a, i))


@njit(**_ROW)
def _logsumexp_weighted_span(args, r0, r1):
    a, b, return_sign, out, sign = args
    for i in range(r0, r1):
        out[i], sign[i] = logsumexp_weighted_row(a[i], b[i], return_sign)


@njit(**_ROW)
def _softmax_span(args, r0, r1):
    x, out = args
    for i in range(r0, r1):
        softmax_row(x[i], out[i], x[i, :0], _next_row(x, i))


@njit(**_ROW)
def _log_softmax_span(args, r0, r1):
    x, out = args
    buf = exp_buffer(x)
    for i in range(r0, r1):
        log_softmax_row(x[i], out[i], buf, _next_row(x, i))


# ---- long rows: chunk partials computed in parallel, merged in order ----

@njit(**_ROW)
def _merge(part, col):
    s = c = 0.0
    for k in range(part.shape[0]):
        s, c = ksum_add(s, c, part[k, col])
        s, c = ksum_add(s, c, part[k, col + 1])
    return ksum_value(s, c)


@njit(**_ROW)
def _max_of(part):
    return seg_max(part[:, 0].copy())


@njit(**_ROW)
def _chunk(row, k):
    return row[k * ROW_CHUNK:(k + 1) * ROW_CHUNK]


@njit(_sigs("void({T}[:, ::1], {T}[::1])"), **_ENTRY)
def logsumexp(a, out):
    rows, n = a.shape
    if n <= ROW_CHUNK:
        _drive(_logsumexp_span, (a, out), rows, n)
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 3))
    for i in range(rows):
        row = a[i]
        for k in prange(nc):
            part[k, 0] = seg_max(_chunk(row, k))
        m = _max_of(part)
        for k in prange(nc):
            part[k, 0], part[k, 1], part[k, 2] = seg_sum_exp(
                _chunk(row, k), m, row[:0], exp_buffer(a), True, row[:0], False)
        out[i] = logsumexp_finish(row, m, _merge(part, 0), part[:, 2].sum())


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1], boolean, {T}[::1], {T}[::1])"), **_ENTRY)
def logsumexp_weighted(a, b, return_sign, out, sign):
    rows, n = a.shape
    if n <= ROW_CHUNK:
        _drive(_logsumexp_weighted_span, (a, b, return_sign, out, sign), rows, n)
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 4))
    for i in range(rows):
        ra = a[i]
        rb = b[i]
        for k in prange(nc):
            part[k, 0] = seg_max_weighted(_chunk(ra, k), _chunk(rb, k))
        m = _max_of(part)
        for k in prange(nc):
            part[k, 0], part[k, 1], part[k, 2], part[k, 3] = seg_sum_exp_weighted(
                _chunk(ra, k), _chunk(rb, k), m)
        out[i], sign[i] = logsumexp_weighted_finish(ra, rb, return_sign, m,
                                                    _merge(part, 0), _merge(part, 2))


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1])"), **_ENTRY)
def softmax(x, out):
    rows, n = x.shape
    if n <= ROW_CHUNK:
        _drive(_softmax_span, (x, out), rows, n)
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 3))
    for i in range(rows):
        row = x[i]
        orow = out[i]
        for k in prange(nc):
            part[k, 0] = seg_max(_chunk(row, k))
        m = _max_of(part)
        for k in prange(nc):
            part[k, 0], part[k, 1], part[k, 2] = seg_sum_exp(
                _chunk(row, k), m, _chunk(orow, k), row[:0], False, row[:0], False)
        inv = 1.0 / _merge(part, 0)
        for k in prange(nc):
            seg_scale(_chunk(orow, k), inv)


@njit(_sigs("void({T}[:, ::1], {T}[:, ::1])"), **_ENTRY)
def log_softmax(x, out):
    rows, n = x.shape
    if n <= ROW_CHUNK:
        _drive(_log_softmax_span, (x, out), rows, n)
        return
    nc = (n + ROW_CHUNK - 1) // ROW_CHUNK
    part = np.zeros((nc, 3))
    for i in range(rows):
        row = x[i]
        orow = out[i]
        store = row[:0] if _same(orow, row) else orow  # see log_softmax_row
        for k in prange(nc):
            part[k, 0] = seg_max(_chunk(row, k))
        m = _max_of(part)
        if np.isfinite(m):
            for k in prange(nc):
                part[k, 0], part[k, 1], part[k, 2] = seg_sum_exp(
                    _chunk(row, k), m, _chunk(store, k), exp_buffer(x), False, row[:0], False)
            logs = np.log(_merge(part, 0))
        else:  # see log_softmax_row
            m = 0.0
            logs = np.log(seg_sum_exp_direct(row, row[:0]))
        for k in prange(nc):
            seg_sub2(_chunk(row, k), m, logs, _chunk(orow, k))
