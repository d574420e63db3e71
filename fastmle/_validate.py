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


def native_array(a, dtype=None):
    """a as the kernels take arrays: C-contiguous, aligned, native byte order,
    of dtype (default: a's own); copied only when needed. An unaligned
    buffer (a view at an odd offset, or one unpickled by dask.distributed)
    would be undefined behaviour in C and match no Numba signature."""
    a = np.asarray(a)
    dtype = np.dtype(a.dtype if dtype is None else dtype).newbyteorder("=")
    out = np.ascontiguousarray(a, dtype=dtype)
    return out if out.flags.aligned else out.copy()


def check_bool(name, value):
    """A switch must be True or False (numpy's bools too): 0.5, "no" or None
    would mean something different in each backend, or nothing at all."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def integer(value, name):
    """value as a Python int: any integer type (numpy's too), never a bool
    or a float (True is not index 1, 2.7 not 2)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def is_real_number(value):
    """Whether value is one real number: a Python or numpy int or float,
    never a bool (True is not an option's value of 1)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def real_array(a, name):
    """np.asarray(a), refused with a TypeError unless it holds real numbers
    (bool, int or float): strings, objects and complex numbers are errors."""
    arr = np.asarray(a)
    if arr.dtype == object and hasattr(a, "to_numpy"):  # a DataFrame of bool and float columns, say
        try:
            arr = a.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):  # strings: the error below
            pass
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def broadcast(*arrays, names=None):
    """The arrays broadcast to their common shape: those of that shape as
    they are, the others as read-only np.broadcast_to views (np.broadcast_arrays'
    views warn when their writeable flag is read, as the kernels' callers do).
    names: the arrays' argument names, for the error (numpy's says "arg 1")."""
    try:
        shape = np.broadcast_shapes(*[a.shape for a in arrays])
    except ValueError:
        if names is None:
            raise
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays))
        raise ValueError(f"{' and '.join(names)} cannot be broadcast to one shape: {shapes}") from None
    return [a if a.shape == shape else np.broadcast_to(a, shape) for a in arrays]


def native_aligned(a):
    """a itself, or a copy in native byte order and aligned (any layout kept):
    a byte-swapped or unaligned input then computes exactly as a normal one,
    and results come out in native byte order, as numpy's ufuncs give them."""
    if a.dtype.isnative and a.flags.aligned:
        return a
    return a.astype(a.dtype.newbyteorder("="))


def as_numeric_array(x, name="x", objects_ok=False):
    """np.asarray, refusing anything but bool, integer, float and complex
    arrays (and object arrays with objects_ok: the reference path computes
    with their elements' own methods, as scipy does)."""
    a = np.asarray(x)
    if a.dtype.kind not in "biufc" and not (objects_ok and a.dtype.kind == "O"):
        raise TypeError(f"{name} must be a real or complex numeric array, got dtype {a.dtype}")
    return a


def as_float_array(x, name="x", objects_ok=False):
    """np.asarray plus scipy's promotion: bool/int -> float64, floats kept."""
    a = as_numeric_array(x, name, objects_ok)
    if a.dtype.kind in "biu":
        a = a.astype(np.float64)
    return native_aligned(a)


def promote(a, b):
    """Common floating dtype of a and the weights b, as scipy's logsumexp:
    numpy's promotion of their own dtypes (Python scalars are weak), then
    integers to float64 (float32 with bool or int8 weights stays float32)."""
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
    rows = 1
    for ax in kept:
        rows *= a.shape[ax]
    rows2d = native_array(moved).reshape(rows, n)  # explicit: reshape(-1, 0) cannot infer rows
    return rows2d, moved.shape, order


def from_rows(rows2d, moved_shape, order):
    """Inverse of to_rows for an output with the input's shape (a view)."""
    inverse = np.argsort(order)
    return rows2d.reshape(moved_shape).transpose(inverse)


def check_out(out, shape, dtype, name="out"):
    """out= must be a writeable ndarray of exactly the result's shape and dtype
    (in either byte order: a byte-swapped out receives a copy)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype.newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype} (the result dtype)")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def writable_target(out, x):
    """out itself if a kernel may write straight into it (C-contiguous, and not
    overlapping x except as the very same buffer), else None."""
    if not (out.flags.c_contiguous and out.flags.aligned and out.dtype.isnative):
        return None
    if np.may_share_memory(out, x):
        same = (out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
                and out.strides == x.strides and x.flags.c_contiguous)
        if not same:
            return None
    return out


# ---- losses: targets, weights and options (fastmle/losses.py) ----

REDUCTIONS = ("mean", "sum", "none")


def float_array(x, name):
    """A real floating-point array (losses take logits, never integers)."""
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a real floating-point array, got dtype {a.dtype}")
    return native_aligned(a)


def work_dtype(dtype):
    """The dtype kernels compute in: float32/float64 as given, other floats
    (float16, longdouble) in float64 through the reference."""
    return dtype if dtype in KERNEL_DTYPES else np.dtype(np.float64)


def reduction(value):
    if value not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {value!r}")
    return value


def label_smoothing(value):
    if not is_real_number(value):  # True is not 1.0, nor "0.1" a number
        raise TypeError(f"label_smoothing must be a number, got {value!r}")
    eps = float(value)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {value!r}")
    return eps


def same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_b} shape {b.shape} does not match {name_a} shape {a.shape}")


def class_weight(weight, n_classes, dtype):
    """weight=None -> empty array (the kernels' "all ones"); else 1-D of length n_classes."""
    if weight is None:
        return np.empty(0, dtype)
    w = np.asarray(weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"weight must be a real numeric array, got dtype {w.dtype}")
    if w.shape != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},) (one per class), got {w.shape}")
    return native_array(w, dtype)


def class_targets(target, n_classes, ignore_index, expected_shape, logits_name="logits"):
    """Class-index targets as a flat int64 array with every entry in
    [0, n_classes) or equal to ignore_index; the error names the first bad
    value and its position."""
    t = np.asarray(target)
    if t.dtype.kind == "f":
        raise TypeError(
            f"target has floating dtype {t.dtype} and shape {t.shape}: class-index targets must be "
            f"integers (use target.astype(np.int64)); class-probability targets must have the "
            f"{logits_name}' shape")
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must be an integer array of class indices, got dtype {t.dtype}")
    if t.shape != tuple(expected_shape):
        raise ValueError(f"target shape {t.shape} does not match {logits_name}: expected "
                         f"{tuple(expected_shape)} (class indices)")
    ignore_index = integer(ignore_index, "ignore_index")
    if not np.iinfo(np.int64).min <= ignore_index <= np.iinfo(np.int64).max:
        # the kernels take it as int64 (cffi raised an OverflowError naming nothing)
        raise ValueError(f"ignore_index must fit in a 64-bit signed integer, got {ignore_index}")
    # checked, then indexed by the kernels (GIL released): a copy, which
    # another thread writing to the caller's array cannot change in between
    # (such writes had crashed both compiled backends)
    t = t.copy()
    bad = ((t < 0) | (t >= n_classes)) & (t != ignore_index)
    if bad.any():
        pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), t.shape))
        raise ValueError(f"target has class index {t[pos]} at position {pos}, outside "
                         f"[0, {n_classes}) and not ignore_index ({ignore_index})")
    return native_array(t, np.int64).reshape(-1), ignore_index


def broadcast_flat(value, shape, dtype, name):
    """value broadcast to shape, as a contiguous 1-D array (empty for None)."""
    if value is None:
        return np.empty(0, dtype)
    v = np.asarray(value)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {v.dtype}")
    try:
        v = np.broadcast_to(v, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {v.shape} cannot be broadcast to {shape}") from None
    return native_array(v, dtype).reshape(-1)


def check_grad_out(grad_out, shape, dtype, *inputs, name="grad_out"):
    """grad_out checked like out=; returns it when the kernel may write into it
    directly (C-contiguous and not overlapping the inputs other than being
    the first input itself), else None (the caller copies). Inputs that are
    None (optional arrays not given) are skipped."""
    check_out(grad_out, shape, dtype, name)
    direct = writable_target(grad_out, inputs[0])
    if direct is not None and any(a is not None and np.may_share_memory(grad_out, a) for a in inputs[1:]):
        return None
    return direct
