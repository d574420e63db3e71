"""Reference log-sum-exp, softmax and log-softmax in plain numpy.

These follow scipy.special's algorithms step for step (so that special values,
dtypes and signs agree with scipy for every input), but take the reduced axes
as a tuple and never raise on empty input. The kernel-layout entry points at
the bottom (logsumexp(a, out), ...) have the signatures of the compiled
kernels, so the three backends are interchangeable in tests and benchmarks.
"""
import numpy as np


def logsumexp_nd(a, axis, b=None, keepdims=False, return_sign=False):
    """scipy.special.logsumexp for an array a (ndim >= 1), axis a tuple."""
    if a.size == 0:
        shape = list(a.shape)
        for ax in axis:
            shape[ax] = 1
        out = np.full(shape, -np.inf, dtype=a.dtype)
        sgn = _sign(out)
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # direct computation, used where the shifted one is not finite
            b_exp_a = np.exp(a) if b is None else b * np.exp(a)
            total = np.sum(b_exp_a, axis=axis, keepdims=True)
            sgn_direct = _sign(total) if return_sign else None
            out_direct = np.log(np.abs(total) if return_sign else total)
            out, sgn = _logsumexp_shifted(a, b, axis, return_sign)
        finite = np.isfinite(out)
        out = np.where(finite, out, out_direct)
        if return_sign:
            sgn = np.where(finite, sgn, sgn_direct)
    if np.iscomplexobj(out):
        if return_sign:
            sgn = sgn.real + _wrap_radians(sgn.imag) * 1j
        else:
            out = out.real + _wrap_radians(out.imag) * 1j
    if not keepdims:
        out = np.squeeze(out, axis=axis)
        sgn = np.squeeze(sgn, axis=axis) if sgn is not None else None
    out = out[()] if out.ndim == 0 else out
    if return_sign:
        sgn = sgn[()] if sgn.ndim == 0 else sgn
        return out, sgn
    return out


def _sign(x):
    """The sign as scipy takes it (the array API's): x / |x| for complex x,
    so that a non-finite complex value has sign NaN + NaNj (numpy's np.sign
    gives inf + NaNj the sign 1)."""
    if not np.iscomplexobj(x):
        return np.sign(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x == 0, 0, x / np.abs(x)).astype(x.dtype)


def _wrap_radians(x):
    wrapped = -((-x + np.pi) % (2 * np.pi) - np.pi)
    return np.where(np.abs(x) < np.pi, x, wrapped)


def _logsumexp_shifted(a, b, axis, return_sign):
    """Blanchard-Higham-Higham form: the maximal terms are kept out of the sum
    so that log1p sees the small remainder."""
    if b is not None:
        a = np.where(b == 0, -np.inf, a)  # zero weight: ignored even if inf/NaN
    if np.iscomplexobj(a):
        real = a.real
        rmax = np.max(real, axis=axis, keepdims=True)
        mask = real == rmax
        # one element with the maximal real part per reduction
        idx = np.reshape(np.arange(a.size), a.shape)
        idx = np.where(mask, idx, -1)
        mask = idx == np.max(idx, axis=axis, keepdims=True)
        a_max = np.sum(np.where(mask, a, 0), axis=axis, keepdims=True, dtype=a.dtype)
    else:
        a_max = np.max(a, axis=axis, keepdims=True)
        mask = a == a_max
    a = np.where(mask, -np.inf, a)
    mask_f = mask.astype(a.dtype)
    m = np.sum(mask_f if b is None else b * mask_f, axis=axis, keepdims=True, dtype=a.dtype)
    e = np.exp(a - a_max) if b is None else b * np.exp(a - a_max)
    s = np.sum(e, axis=axis, keepdims=True, dtype=e.dtype)
    s = np.where(s == 0, s, s / m)
    sgn = _sign(s + 1) * _sign(m)
    if np.iscomplexobj(s):
        sgn = sgn * np.exp(a_max.imag * 1j)
    else:
        s = np.where(s < -1, -s - 2, s)
        m = np.abs(m)
    out = np.log1p(s) + np.log(m) + a_max
    if return_sign:
        out = out.real
    elif not np.iscomplexobj(out):
        out = np.where(sgn < 0, np.nan, out)
    return out, sgn


def softmax_nd(x, axis):
    """scipy.special.softmax; axis a tuple. Empty input gives empty output."""
    if x.size == 0:
        return np.empty_like(x)
    with np.errstate(invalid="ignore", over="ignore"):
        x_max = np.max(x, axis=axis, keepdims=True)
        e = np.exp(x - x_max)
        return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax_nd(x, axis):
    """scipy.special.log_softmax; axis a tuple. Empty input gives empty output."""
    if x.size == 0:
        return np.empty_like(x)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        x_max = np.max(x, axis=axis, keepdims=True)
        x_max = np.where(np.isfinite(x_max), x_max, 0)
        tmp = x - x_max
        return tmp - np.log(np.sum(np.exp(tmp), axis=axis, keepdims=True))


# ---- kernel layout: 2-D (rows, n), reduce over the last axis ----

def logsumexp(a, out):
    out[...] = logsumexp_nd(a, (1,))


def logsumexp_weighted(a, b, return_sign, out, sign):
    out[...], sign[...] = logsumexp_nd(a, (1,), b=b, return_sign=True)
    if not return_sign:
        out[...] = logsumexp_nd(a, (1,), b=b)


def softmax(x, out):
    out[...] = softmax_nd(x, (1,))


def log_softmax(x, out):
    out[...] = log_softmax_nd(x, (1,))
