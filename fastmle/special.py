"""Numerically stable log-sum-exp, softmax and log-softmax.

Drop-in replacements for scipy.special.logsumexp / softmax / log_softmax (same
arguments, results, dtypes and special values), running on fastmle's compiled
kernels. Each takes a keyword-only ``backend=`` ("c", "numba", "numpy" or
"auto"); softmax and log_softmax also take ``out=``.

Accuracy (tested in tests/test_special.py against a long-double reference):
float64 softmax elements are within 8 ulp (relative) of the exact value plus
the rounding of the shifted input x - max(x), which scipy and torch incur too
(relative error up to |x - max| * 2**-53, visible only in tiny outputs);
log_softmax and logsumexp are within 8 ulp of max|x| (absolute). float32 data
is stored and exponentiated in float32, the exponentials are added in pairs in
float32 (one rounding, at most 2**-24 relative) and the pair sums accumulated
in float64: softmax within 4 ulp + |x - max| * 2**-24 (relative), logsumexp
within 4 ulp of the larger of max|x| and |result| (absolute). logsumexp keeps
the maximum's exp(0) = 1 out of those pairs in both precisions (log1p of the
rest), so a dominant element's small result keeps its bits too:
logsumexp([0, -20]) is 2.06e-9 in float32, as scipy's (a pair 1 + 2e-9 had
made it 0). Unweighted float32 logsumexp flushes exponentials below the
smallest normal float (2**-126 of the maximum's) to 0, so a result below
about 1e-35 comes out 0 (logsumexp([0] + [-88] * 1000) in float32: 0, where
scipy gives 6.05e-36); with weights ``b`` no term is flushed.
"""
import numpy as np

from . import _dispatch, _validate


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, backend=None):
    """Compute ``log(sum(b * exp(a)))`` over `axis`, without overflow.

    Same signature and results as :func:`scipy.special.logsumexp`.

    Parameters
    ----------
    a : array_like
        Input. Integers and bools are promoted to float64; float32 stays float32.
    axis : None, int or tuple of ints
        Axes to reduce; None (default) reduces over all axes.
    b : array_like, optional
        Weights broadcastable against `a`; may be zero or negative.
    keepdims : bool
        Keep the reduced axes as size-1 dimensions.
    return_sign : bool
        Also return the sign of the sum; without it a negative sum gives NaN.
    backend : {"auto", "c", "numba", "numpy"}, optional
        Kernel implementation (default: the current fastmle backend).

    Returns
    -------
    res : ndarray or scalar
    sgn : ndarray or scalar, only with ``return_sign=True``

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> float(fastmle.logsumexp(np.array([1000.0, 1000.0])))
    1000.6931471805599
    >>> fastmle.logsumexp(np.array([[0.0, 0.0], [1.0, 2.0]]), axis=1)
    array([0.69314718, 2.31326169])
    >>> fastmle.logsumexp([1.0, 2.0], b=[1, -1], return_sign=True)
    (np.float64(1.5413248546129181), np.float64(-1.0))
    """
    name = _dispatch.resolve(backend)
    if b is None:
        a = _validate.as_float_array(a, "a")
    else:  # promoted from their own dtypes, as scipy, before ints become float64
        a = _validate.as_numeric_array(a, "a")
        # a Python or numpy number as is (a str is a scalar too, but no number)
        b_arr = b if np.isscalar(b) and not isinstance(b, (str, bytes)) else _validate.as_numeric_array(b, "b")
        dtype = _validate.promote(a, b_arr)
        a, b = _validate.broadcast(_validate.native_aligned(a.astype(dtype, copy=False)),
                                   np.asarray(b_arr, dtype=dtype), names=("a", "b"))
    if a.ndim == 0:  # scipy treats 0-d input as 1-d
        a = a.reshape(1)
        b = b.reshape(1) if b is not None else None
    axes = _validate.normalize_axes(axis, a.ndim)
    if name == "numpy" or not _validate.kernel_ready(a):
        from .reference import special as ref

        return ref.logsumexp_nd(a, axes, b=b, keepdims=keepdims, return_sign=return_sign)

    kern = _dispatch.kernels(name, "special")
    rows, moved_shape, _ = _validate.to_rows(a, axes)
    out = np.empty(rows.shape[0], dtype=a.dtype)
    if b is None:
        kern.logsumexp(rows, out)
        # sign of a sum of exponentials: 1, 0 for an all -inf row, NaN for NaN
        sign = np.where(out == -np.inf, 0.0, 1.0).astype(a.dtype) if return_sign else None
        if return_sign:
            sign[np.isnan(out)] = np.nan
    else:
        b_rows, _, _ = _validate.to_rows(b, axes)
        sign = np.empty_like(out)
        kern.logsumexp_weighted(rows, b_rows, bool(return_sign), out, sign)
    kept_shape = moved_shape[: a.ndim - len(axes)]
    if keepdims:
        kept_shape = tuple(1 if i in axes else s for i, s in enumerate(a.shape))
    out = out.reshape(kept_shape)
    out = out[()] if out.ndim == 0 else out
    if return_sign:
        sign = sign.reshape(kept_shape)
        return out, (sign[()] if sign.ndim == 0 else sign)
    return out


def _rowwise(kernel_name, x, axis, out, backend):
    """Shared driver of softmax and log_softmax (same shapes, same layout)."""
    name = _dispatch.resolve(backend)
    x = _validate.as_float_array(x, objects_ok=True)  # scipy's softmax takes Decimal arrays
    if out is not None:
        _validate.check_out(out, x.shape, x.dtype)
    if x.ndim == 0 or name == "numpy" or not _validate.kernel_ready(x):
        from .reference import special as ref

        if x.ndim == 0 and axis not in (None, 0, -1, ()):
            _validate.normalize_axes(axis, 0)  # raises scipy's AxisError
        axes = _validate.normalize_axes(axis, x.ndim) if x.ndim else None
        result = getattr(ref, kernel_name + "_nd")(x, axes)
        if out is None:
            return result
        np.copyto(out, result)
        return out

    axes = _validate.normalize_axes(axis, x.ndim)
    rows, moved_shape, order = _validate.to_rows(x, axes)
    kern = getattr(_dispatch.kernels(name, "special"), kernel_name)
    direct = _validate.writable_target(out, x) if out is not None else None
    if direct is not None and axes == tuple(range(x.ndim - len(axes), x.ndim)):
        # reduced axes already last: out has the kernel's layout
        kern(rows, direct.reshape(rows.shape))
        return out
    result = np.empty_like(rows)
    kern(rows, result)
    result = _validate.from_rows(result, moved_shape, order)
    if out is None:
        return np.ascontiguousarray(result)
    np.copyto(out, result)
    return out


def softmax(x, axis=None, *, out=None, backend=None):
    """Softmax ``exp(x) / sum(exp(x))`` over `axis`, shifted by the max for stability.

    Same signature and results as :func:`scipy.special.softmax`, plus ``out=``
    (an array of x's shape and result dtype; may be x itself) and ``backend=``.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> fastmle.softmax(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]), axis=1).round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    >>> x = np.array([1000.0, 1000.0], dtype=np.float32)
    >>> fastmle.softmax(x, out=x)   # in place
    array([0.5, 0.5], dtype=float32)
    """
    return _rowwise("softmax", x, axis, out, backend)


def log_softmax(x, axis=None, *, out=None, backend=None):
    """``log(softmax(x))`` over `axis`, computed as ``x - max - log(sum(exp(x - max)))``.

    Same signature and results as :func:`scipy.special.log_softmax`, plus
    ``out=`` and ``backend=``.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> fastmle.log_softmax(np.array([1000.0, 1.0]))
    array([   0., -999.])
    """
    return _rowwise("log_softmax", x, axis, out, backend)
