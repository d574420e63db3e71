"""Input checking and canonicalization: the only place user errors are raised.

Compiled kernels see one layout: C-contiguous float32/float64, 2-D (rows, n),
reduced over the last axis. ``to_rows`` produces it (moving the reduced axes
last and copying only when needed) or reports that the input belongs to the
reference path (complex, float16, longdouble, 0-d or empty arrays).
"""
import operator

import numpy as np

try:
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # numpy < 2
    from numpy.core.numeric import normalize_axis_tuple

KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, name="x"):
    """np.asarray plus scipy's promotion: bool/int -> float64, floats kept."""
    a = np.asarray(x)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    elif a.dtype.kind not in "fc":
        raise TypeError(f"{name} must be a real or complex numeric array, got dtype {a.dtype}")
    return a


def promote(a, b):
    """Common floating dtype of a and the weights b, as scipy's logsumexp:
    numpy's promotion (Python scalars are weak), then integers to float64."""
    dt = np.result_type(a, b)
    if dt.kind in "biu":
        dt = np.dtype(np.float64)
    elif dt.kind not in "fc":
        raise TypeError(f"b must be numeric, got dtype {dt}")
    return dt


def normalize_axes(axis, ndim):
    """axis (None, int or tuple of ints) -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        axes = axis
    else:
        try:
            axes = (operator.index(axis),)
        except TypeError:
            raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}") from None
    axes = normalize_axis_tuple(axes, ndim)  # AxisError (a ValueError) if out of range
    return tuple(sorted(axes))


def kernel_ready(a):
    """True when compiled kernels can take this array's dtype and size."""
    return a.dtype in KERNEL_DTYPES and a.ndim > 0 and a.size > 0


def to_rows(a, axes):
    """View or copy of a as C-contiguous (rows, n), the reduced axes last.

    Returns (rows2d, moved_shape), where moved_shape is a's shape with the
    reduced axes moved to the end (for undoing the move)."""
    kept = [i for i in range(a.ndim) if i not in axes]
    order = kept + list(axes)
    moved = a.transpose(order) if order != list(range(a.ndim)) else a
    n = 1
    for ax in axes:
        n *= a.shape[ax]
    rows2d = np.ascontiguousarray(moved).reshape(-1, n)
    return rows2d, moved.shape, order


def from_rows(rows2d, moved_shape, order):
    """Inverse of to_rows for an output with the input's shape (a view)."""
    inverse = np.argsort(order)
    return rows2d.reshape(moved_shape).transpose(inverse)


def check_out(out, shape, dtype, name="out"):
    """out= must be a writeable ndarray of exactly the result's shape and dtype."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype} (the result dtype)")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def writable_target(out, x):
    """out itself if a kernel may write straight into it (C-contiguous, and not
    overlapping x except as the very same buffer), else None."""
    if not out.flags.c_contiguous:
        return None
    if np.may_share_memory(out, x):
        same = (out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
                and out.strides == x.strides and x.flags.c_contiguous)
        if not same:
            return None
    return out
