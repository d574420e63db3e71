"""Likelihood losses with their gradients, and information measures.

Minimizing cross-entropy is maximizing the categorical log-likelihood; the
Bernoulli and Gaussian losses are the negative log-likelihoods of logistic and
linear regression. These functions have torch.nn.functional's semantics
(reductions, class weights, ignore_index, label smoothing) and return numpy
arrays. With ``return_grad=True`` the gradient of the reduced loss comes from
the same pass over the data as the loss (for reduction="none", the gradient
of the sum of the per-element losses).

Precision: float32 inputs give float32 results; the compiled kernels store
in float32 but accumulate every sum (row sums of exponentials, per-row losses,
the reduction) in float64, so the float32 loss is within a few ulp of the
exactly rounded one, plus up to 2**-24 per row (absolute): a row's
exponentials are added in float32 pairs first, and a pair holding the max's
exp(0) = 1 drops what lies below 2**-24 of it (a confident row's loss of
3.0e-8 can come out 1.5e-8; torch's float32 cross_entropy gives 0 there; the
numpy reference, in float64, 3.0e-8). The gradient elements are float32 products of a float32
exponential and a float64 scale, within a few ulp + |x - max| * 2**-24.
The elementwise losses (Bernoulli, Gaussian) compute each element in
float64, whatever the input's float type, and add them up in float64 per
chunk of LOSS_CHUNK elements, then over the chunks: the reduced loss does
not depend on the thread count, and no per-element loss array is made
unless reduction="none" asks for it.

The information measures (entropy, kl_div and their logits forms) follow
scipy.stats.entropy: rows are normalized to sum 1, 0 * log 0 = 0, natural log
unless ``base`` is given. Unlike scipy, which returns NaN or inf for them, a
base that is not a positive number other than 1 is a ValueError.
"""
import numpy as np

from . import _dispatch, _validate

# ---- categorical likelihood ----


def _class_layout(a):
    """(N, C, d1, ...) or (C,) -> C-contiguous (rows, C), classes last."""
    if a.ndim == 1:
        return _validate.native_array(a).reshape(1, -1)
    moved = np.moveaxis(a, 1, -1) if a.ndim > 2 else a
    return _validate.native_array(moved).reshape(-1, a.shape[1])


def _undo_class_layout(rows, shape):
    """Inverse of _class_layout for an array of the input's shape."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    moved = shape[:1] + shape[2:] + shape[1:2]
    return np.moveaxis(rows.reshape(moved), -1, 1)


def _reduce(loss_rows, reduction, denominator, dtype, none_shape):
    if reduction == "none":
        return loss_rows.astype(dtype, copy=False).reshape(none_shape)  # the caller's own array
    total = np.sum(loss_rows)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            total = total / denominator  # 0 / 0 = NaN when nothing counts, as torch
    return dtype.type(total)


def _mean_over_zero_weight(kind, t, ignore_index, dtype, grad):
    """A mean over counted targets whose class weights are all 0 is 0 / 0:
    torch's loss is NaN (the label-smoothing term alone over 0 had given
    inf) and its gradient NaN in each counted row for cross_entropy, at each
    counted row's target entry for nll_loss (whose other entries do not
    depend on the weights: 0), and 0 in ignored rows. The kernels' gradient
    is 1/0 times each entry's terms (inf x 0 = NaN elsewhere too); this sets
    torch's pattern for every backend."""
    if grad.size:
        counted = np.flatnonzero(t != ignore_index)
        grad[counted] = np.nan if kind == "logits" else 0.0
        grad[counted, t[counted]] = np.nan
    return dtype.type(np.nan), grad


def _categorical(kind, x, target, weight, ignore_index, reduction, label_smoothing, return_grad,
                 grad_out, backend, x_name):
    """Shared driver of cross_entropy (kind "logits") and nll_loss (kind "log_probs")."""
    _validate.check_bool("return_grad", return_grad)
    name = _dispatch.resolve(backend)
    x = _validate.float_array(x, x_name)
    if x.ndim == 0:
        raise ValueError(f"{x_name} must have at least one dimension (classes), got a 0-d array")
    n_classes = x.shape[1] if x.ndim >= 2 else x.shape[0]
    if n_classes == 0:
        raise ValueError(f"{x_name} has no classes (shape {x.shape})")
    reduction = _validate.reduction(reduction)
    eps = _validate.label_smoothing(label_smoothing)
    dtype = x.dtype
    work = _validate.work_dtype(dtype)
    if work != dtype or x.size == 0:
        name = "numpy"
    none_shape = x.shape[:1] + x.shape[2:] if x.ndim >= 2 else ()
    w = _validate.class_weight(weight, n_classes, work)
    target_arr = np.asarray(target)
    soft = target_arr.dtype.kind == "f" and target_arr.shape == x.shape
    if soft and kind != "logits":
        raise TypeError("nll_loss takes class-index targets; for class probabilities use cross_entropy")
    if soft:
        if ignore_index != -100:  # as torch: no class index to ignore in probabilities
            raise ValueError(f"ignore_index={ignore_index!r} is not supported with class-probability targets "
                             "(target of the logits' shape); zero a sample's weight instead")
        t = _class_layout(target_arr.astype(work, copy=False))
    else:
        t, ignore_index = _validate.class_targets(target_arr, n_classes, ignore_index, none_shape, x_name)
    grad_target = None
    if grad_out is not None:
        if not return_grad:
            raise ValueError("grad_out is only used with return_grad=True")
        # the kernel reads the class weights while it writes the gradient: a
        # grad_out overlapping them is written to a copy
        grad_target = _validate.check_grad_out(grad_out, x.shape, dtype, x, target_arr, w)
        if x.ndim > 2 or work != dtype:
            grad_target = None  # the kernel's layout differs from grad_out's

    rows = _class_layout(x.astype(work, copy=False))
    if soft:
        denominator = rows.shape[0]
    else:
        kept = t[t != ignore_index]
        denominator = np.sum(w[kept], dtype=np.float64) if w.size else kept.size
    with np.errstate(divide="ignore", over="ignore"):  # 1 / 0 or 1 / a subnormal weight: inf
        grad_scale = float(np.float64(1.0) / denominator) if reduction == "mean" else 1.0

    if not return_grad:
        grad = np.empty((0, n_classes), work)
    elif grad_target is not None:
        grad = grad_target.reshape(rows.shape)
    else:
        grad = np.empty(rows.shape, work)
    kern = _dispatch.kernels(name, "losses")
    loss_rows = np.empty(rows.shape[0], np.float64)
    if soft:
        kern.cross_entropy_soft_rows(rows, t, w, eps, grad_scale, loss_rows, grad)
    else:
        fn = kern.cross_entropy_rows if kind == "logits" else kern.nll_rows
        fn(rows, t, w, ignore_index, eps, grad_scale, loss_rows, grad)
    loss = _reduce(loss_rows, reduction, denominator, dtype, none_shape)
    if reduction == "mean" and not soft and kept.size and denominator == 0:
        loss, grad = _mean_over_zero_weight(kind, t, ignore_index, loss.dtype, grad)
    if not return_grad:
        return loss
    if grad_target is not None:
        return loss, grad_out
    grad = _undo_class_layout(grad, x.shape)
    if grad_out is None:
        return loss, np.ascontiguousarray(grad, dtype=dtype)
    np.copyto(grad_out, grad, casting="unsafe")
    return loss, grad_out


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, return_grad=False, grad_out=None, backend=None):
    """Cross-entropy between softmax(logits) and the targets, with torch's semantics.

    The negative categorical log-likelihood: the same as
    ``torch.nn.functional.cross_entropy`` for every option below.

    Parameters
    ----------
    logits : array_like, shape (N, C), (N, C, d1, ...) or (C,)
        Unnormalized scores; the class axis is axis 1 (axis 0 for 1-D input).
    target : array_like
        Class indices (integers, shape (N,), (N, d1, ...) or ()), or class
        probabilities (floating, the shape of `logits`).
    weight : array_like of shape (C,), optional
        Per-class weights. With class indices and reduction="mean" the loss is
        divided by the sum of the weights of the counted targets, as torch does.
    ignore_index : int
        Class-index targets equal to this contribute no loss and no gradient.
        With class-probability targets only the default -100 is accepted, as
        in torch.
    reduction : {"mean", "sum", "none"}
    label_smoothing : float in [0, 1]
        Mixes the target with the uniform distribution, as torch defines it.
    return_grad : bool
        Also return the gradient with respect to `logits`, computed in the same
        pass (for "none": the gradient of the sum of the per-sample losses).
    grad_out : ndarray, optional
        Where to write the gradient (shape and dtype of `logits`); it may be
        `logits` itself, to compute in place.
    backend : {"auto", "c", "numba", "numpy"}, optional

    Returns
    -------
    loss : scalar of logits' dtype, or array of shape (N, d1, ...) for "none"
    grad : ndarray, only with ``return_grad=True``

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    >>> fastmle.cross_entropy(logits, np.array([0, 2]))  # doctest: +ELLIPSIS
    np.float32(0.66996...)
    >>> loss, grad = fastmle.cross_entropy(logits, np.array([0, 2]), return_grad=True)
    >>> grad.round(3)
    array([[-0.107,  0.088,  0.02 ],
           [ 0.167,  0.167, -0.333]], dtype=float32)
    >>> fastmle.cross_entropy(logits, np.array([0, -100]), reduction="none")  # doctest: +ELLIPSIS
    array([0.24131..., 0.        ], dtype=float32)
    """
    return _categorical("logits", logits, target, weight, ignore_index, reduction, label_smoothing,
                        return_grad, grad_out, backend, "logits")


def nll_loss(log_probs, target, weight=None, ignore_index=-100, reduction="mean",
             label_smoothing=0.0, *, return_grad=False, grad_out=None, backend=None):
    """Negative log-likelihood of class indices given log-probabilities.

    torch.nn.functional.nll_loss semantics (weights, ignore_index,
    reductions). `label_smoothing` is an extension torch's nll_loss lacks: it
    applies cross_entropy's definition, so ``nll_loss(log_softmax(z), y,
    label_smoothing=e) == cross_entropy(z, y, label_smoothing=e)``. The
    gradient is with respect to `log_probs`. See :func:`cross_entropy`.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> lp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    >>> round(float(fastmle.nll_loss(lp, np.array([0, 2]))), 6)
    0.289909
    """
    return _categorical("log_probs", log_probs, target, weight, ignore_index, reduction,
                        label_smoothing, return_grad, grad_out, backend, "log_probs")


# ---- Bernoulli and Gaussian likelihoods (elementwise) ----


def _flat(a, dtype):
    """a as a contiguous 1-D array of dtype (the elementwise kernels' layout)."""
    return _validate.native_array(a, dtype).reshape(-1)


# Elements per partial loss sum of the elementwise kernels: each chunk's sum
# comes back in float64 and is added here, so the result does not depend on
# the thread count, and no per-element loss array is made unless
# reduction="none" asks for one.
LOSS_CHUNK = 4096


def _elementwise_loss_buffers(n, reduction, work):
    """(partial, loss) for an elementwise kernel: one float64 sum per chunk of
    LOSS_CHUNK elements, and the per-element losses for reduction="none" only."""
    return np.empty(-(-n // LOSS_CHUNK), np.float64), np.empty(n if reduction == "none" else 0, work)


def _elementwise_result(partial, loss, reduction, denominator, dtype, shape):
    """The reduced loss from an elementwise kernel's outputs: the per-element
    losses for reduction="none", else the chunk sums, reduced."""
    return _reduce(loss if reduction == "none" else partial, reduction, denominator, dtype, shape)


def _elementwise_grad_buffer(return_grad, grad_out, x, dtype, work, *others, name="grad_out"):
    """Flat gradient buffer for an elementwise kernel, and whether it is
    grad_out itself (else the caller copies into grad_out, if given). x is
    the input whose buffer grad_out may be (in place); grad_out overlapping
    any of the others is written through a copy."""
    _validate.check_bool("return_grad", return_grad)
    if not return_grad:
        if grad_out is not None:
            raise ValueError(f"{name} is only used with return_grad=True")
        return np.empty(0, work), False
    if grad_out is not None:
        direct = _validate.check_grad_out(grad_out, x.shape, dtype, x, *others, name=name)
        if direct is not None and work == dtype:
            return direct.reshape(-1), True
    return np.empty(x.size, work), False


def binary_cross_entropy_with_logits(logits, target, weight=None, pos_weight=None, reduction="mean",
                                     *, return_grad=False, grad_out=None, backend=None):
    """Binary cross-entropy on logits (the Bernoulli negative log-likelihood).

    torch.nn.functional.binary_cross_entropy_with_logits semantics: the loss
    ``(1 - t) x + lw softplus(-x)`` with ``lw = 1 + (pos_weight - 1) t``,
    computed for finite x and t in [0, 1] as ``(1 - t) softplus(x) +
    pos_weight t softplus(-x)`` (gradient ``(1 - t) sigmoid(x) - pos_weight
    t sigmoid(-x)``), which keeps every bit for confident predictions of
    hard targets (x = -40, t = 0: 4.2e-18, where torch's form gives 0);
    elsewhere in torch's forms (its gradient ``((pos_weight t + 1) - t)
    sigmoid(x) - pos_weight t``), with their special values. (With an
    infinite pos_weight and t in (0, 1], the gradient is -inf where torch's
    is NaN.)

    Parameters
    ----------
    logits, target : array_like of one shape (target may hold soft labels)
    weight : array_like, optional
        Broadcast to the logits' shape; multiplies each element's loss.
    pos_weight : array_like, optional
        Weight of positive examples, broadcast to the logits' shape (usually
        one per class, along the last axis).
    reduction : {"mean", "sum", "none"}
    return_grad, grad_out, backend : as in :func:`cross_entropy`

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> x = np.array([1000.0, -1000.0, 0.0])
    >>> fastmle.binary_cross_entropy_with_logits(x, np.array([1.0, 0.0, 1.0]), reduction="none")
    array([0.        , 0.        , 0.69314718])
    """
    name = _dispatch.resolve(backend)
    x = _validate.float_array(logits, "logits")
    reduction = _validate.reduction(reduction)
    dtype = x.dtype
    work = _validate.work_dtype(dtype)
    name = name if work == dtype and x.size else "numpy"
    t = np.asarray(target)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"target must be numeric, got dtype {t.dtype}")
    _validate.same_shape(x, t, "logits", "target")
    w = _validate.broadcast_flat(weight, x.shape, work, "weight")
    pw = _validate.broadcast_flat(pos_weight, x.shape, work, "pos_weight")
    grad, direct = _elementwise_grad_buffer(return_grad, grad_out, x, dtype, work, t, w, pw)
    partial, loss = _elementwise_loss_buffers(x.size, reduction, work)
    scale = 1.0 / x.size if reduction == "mean" and x.size else 1.0
    _dispatch.kernels(name, "losses").bce_with_logits(_flat(x, work), _flat(t, work), w, pw, scale,
                                                      LOSS_CHUNK, partial, loss, grad)
    result = _elementwise_result(partial, loss, reduction, x.size, dtype, x.shape)
    return _with_grad(result, return_grad, grad, direct, grad_out, x.shape, dtype)


def _with_grad(result, return_grad, grad, direct, grad_out, shape, dtype):
    if not return_grad:
        return result
    return result, _grad_result(grad, direct, grad_out, shape, dtype)


def _grad_result(grad, direct, grad_out, shape, dtype):
    """The gradient to return from a flat kernel buffer: grad_out itself
    (written by the kernel, or now copied into), else grad in dtype."""
    if direct:
        return grad_out
    grad = grad.reshape(shape)
    if grad_out is None:
        return grad.astype(dtype, copy=False)
    np.copyto(grad_out, grad, casting="unsafe")
    return grad_out


def _gaussian_var(var, shape, dtype):
    """torch's shapes for var: the input's, the input's with a last axis of 1
    or without the last axis (one variance per sample), or a scalar. Returns
    the variances as a flat array (length 1 for a scalar) and how to sum the
    elementwise var gradient (an array of the input's shape) to var's shape,
    or None when var has the input's shape."""
    v = np.asarray(var)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"var must be a real numeric array, got dtype {v.dtype}")
    if np.any(v < 0):
        raise ValueError("var has negative entries (variances must be >= 0)")
    if v.ndim == 0:
        return np.full(1, v, dtype), lambda g: g.sum(dtype=np.float64)
    if v.shape == shape:
        return _validate.native_array(v, dtype).reshape(-1), None
    if len(shape) >= 1 and v.shape in (shape[:-1] + (1,), shape[:-1]):
        full = np.broadcast_to(v.reshape(shape[:-1] + (1,)), shape)
        return (_validate.native_array(full, dtype).reshape(-1),
                lambda g: g.sum(axis=-1, dtype=np.float64).reshape(v.shape))
    raise ValueError(f"var has shape {v.shape}; expected the input's shape {shape}, "
                     f"{shape[:-1] + (1,)}, {shape[:-1]} or a scalar")


def _gaussian_grad_out(grad_out, return_grad, var_grad):
    """(grad_pred buffer, grad_var buffer), each may be None: gaussian_nll's
    grad_out is that pair, mse_loss's the first alone."""
    if not var_grad or grad_out is None:
        return grad_out, None
    if not (isinstance(grad_out, (tuple, list)) and len(grad_out) == 2):
        raise TypeError("grad_out must be a pair (grad_pred, grad_var) of arrays or None, "
                        f"got {type(grad_out).__name__}")
    if not return_grad:
        raise ValueError("grad_out is only used with return_grad=True")
    return tuple(grad_out)


def _gaussian(pred, target, var, full, eps, reduction, return_grad, grad_out, backend, scale_by, var_grad):
    """gaussian_nll, or mse_loss (scale_by 2, var 1, var_grad False: the var
    gradient is neither computed nor stored)."""
    _validate.check_bool("return_grad", return_grad)
    grad_pred_out, grad_var_out = _gaussian_grad_out(grad_out, return_grad, var_grad)
    _validate.check_bool("full", full)
    name = _dispatch.resolve(backend)
    p = _validate.float_array(pred, "pred")
    t = np.asarray(target)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"target must be numeric, got dtype {t.dtype}")
    _validate.same_shape(p, t, "pred", "target")
    reduction = _validate.reduction(reduction)
    if not _validate.is_real_number(eps):  # True is not 1.0, nor "1e-6" a number
        raise TypeError(f"eps must be a number, got {eps!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    dtype = p.dtype
    work = _validate.work_dtype(dtype)
    name = name if work == dtype and p.size else "numpy"
    var_in = np.asarray(var)
    v, sum_to_var = _gaussian_var(var_in, p.shape, work)
    if grad_var_out is not None:
        _validate.check_out(grad_var_out, var_in.shape, dtype, "grad_out[1]")
        if grad_pred_out is not None and np.may_share_memory(grad_pred_out, grad_var_out):
            raise ValueError("grad_out's two arrays overlap: grad_pred and grad_var need their own memory")
    grad_names = ("grad_out[0]", "grad_out[1]") if var_grad else ("grad_out", None)
    gp, gp_direct = _elementwise_grad_buffer(return_grad, grad_pred_out, p, dtype, work, t, var_in, grad_var_out,
                                             name=grad_names[0])
    if var_grad and sum_to_var is None:  # var has pred's shape: grad_out[1] may be written in place
        gv, gv_direct = _elementwise_grad_buffer(return_grad, grad_var_out, var_in, dtype, work, p, t,
                                                 grad_pred_out, name=grad_names[1])
    else:
        gv, gv_direct = np.empty(p.size if return_grad and var_grad else 0, work), False
    partial, loss = _elementwise_loss_buffers(p.size, reduction, work)
    scale = (1.0 / p.size if reduction == "mean" and p.size else 1.0) * scale_by
    _dispatch.kernels(name, "losses").gaussian_nll(_flat(p, work), _flat(t, work), v, float(eps), bool(full),
                                                   float(scale_by), scale, LOSS_CHUNK, partial, loss, gp, gv)
    result = _elementwise_result(partial, loss, reduction, p.size, dtype, p.shape)
    if not return_grad:
        return result
    grad_pred = _grad_result(gp, gp_direct, grad_pred_out, p.shape, dtype)
    if not var_grad:
        return result, grad_pred
    if sum_to_var is not None:
        gv, gv_direct = sum_to_var(gv.reshape(p.shape)), False
    return result, grad_pred, _grad_result(gv, gv_direct, grad_var_out, var_in.shape, dtype)


def gaussian_nll(pred, target, var, *, full=False, eps=1e-6, reduction="mean", return_grad=False, grad_out=None,
                 backend=None):
    """Gaussian negative log-likelihood, torch's ``gaussian_nll_loss``.

    ``0.5 * (log(max(var, eps)) + (pred - target)**2 / max(var, eps))``, plus
    ``0.5 * log(2 pi)`` with ``full=True``. As in torch, the clamp at `eps`
    does not stop the gradient with respect to var.

    Parameters
    ----------
    pred, target : array_like of one shape
    var : array_like or float
        Variances: the shape of `pred`, that shape with the last axis 1 or
        removed (one variance per sample), or a scalar. Must be >= 0.
    full, eps, reduction : as in torch
    return_grad : bool
        Also return the gradients with respect to `pred` and `var` (var's
        shape); the gradient with respect to target is ``-grad_pred``.
    grad_out : pair of ndarray or None, optional
        Buffers ``(grad_pred, grad_var)`` that receive the gradients (with
        ``return_grad=True``), as cross_entropy's grad_out: grad_pred of
        pred's shape and dtype, grad_var of var's shape (a 0-d array for a
        scalar var) and pred's dtype; either may be None (a new array).
        Buffers may be `pred` and `var` themselves (overwritten in place);
        the two must not overlap each other.

    Returns
    -------
    loss, or (loss, grad_pred, grad_var) with ``return_grad=True``

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> round(float(fastmle.gaussian_nll(np.array([1.0, 2.0]), np.array([1.5, 2.0]), 1.0)), 6)
    0.0625

    Reusing gradient buffers across training steps:

    >>> pred, target, var = np.array([1.0, 2.0]), np.array([1.5, 2.0]), np.array([1.0, 4.0])
    >>> g_pred, g_var = np.empty(2), np.empty(2)
    >>> loss, gp, gv = fastmle.gaussian_nll(pred, target, var, return_grad=True, grad_out=(g_pred, g_var))
    >>> gp is g_pred, g_pred
    (True, array([-0.25,  0.  ]))
    """
    return _gaussian(pred, target, var, full, eps, reduction, return_grad, grad_out, backend, 1.0, True)


def mse_loss(pred, target, reduction="mean", *, return_grad=False, grad_out=None, backend=None):
    """Mean squared error, torch's ``mse_loss``: twice the unit-variance
    Gaussian negative log-likelihood without its constant. target must have
    pred's shape (torch broadcasts it, with a warning; here it is an error).
    grad_out (with ``return_grad=True``) receives the gradient, as in
    :func:`cross_entropy`.

    Returns loss, or (loss, grad_pred) with ``return_grad=True``.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> fastmle.mse_loss(np.array([1.0, 2.0]), np.array([0.0, 0.0]), return_grad=True)
    (np.float64(2.5), array([1., 2.]))
    """
    return _gaussian(pred, target, 1.0, False, 1e-6, reduction, return_grad, grad_out, backend, 2.0, False)


# ---- information measures ----


def _log_base(base):
    """log(base) for a logarithm base given as a positive number other than 1
    (scipy would return NaN or inf for the others; an error says why)."""
    if base is None:
        return None
    if not _validate.is_real_number(base):  # "2" is not a number, nor True 1
        raise TypeError(f"base must be a number, got {base!r}")
    b = float(base)
    if not (0.0 < b < np.inf and b != 1.0):
        raise ValueError(f"base must be a positive number other than 1, got {base!r}")
    return float(np.log(b))


def _rows_measure(kernel_name, arrays, axis, base, backend, check_nonnegative):
    """Shared driver: broadcast the arrays, move `axis` last, one value per
    row; axis=None flattens them first, as scipy.stats.entropy does."""
    name = _dispatch.resolve(backend)
    log_base = _log_base(base)
    arrs = [_validate.as_float_array(a, "input") for a in arrays]
    if any(a.dtype.kind == "c" for a in arrs):
        raise TypeError("complex input is not supported")
    dtype = np.result_type(*arrs)
    names = ("logits_p", "logits_q") if "logits" in kernel_name else ("p", "q")
    arrs = _validate.broadcast(*[a.astype(dtype, copy=False) for a in arrs], names=names[:len(arrs)])
    if arrs[0].ndim == 0:
        raise ValueError("input must have at least one dimension")
    if check_nonnegative and any(np.any(a < 0) for a in arrs):
        raise ValueError("probabilities must be non-negative")
    if axis is None:  # one distribution of every element
        arrs, axis = [a.reshape(-1) for a in arrs], 0
    axes = _validate.normalize_axes(axis, arrs[0].ndim)
    if len(axes) != 1:
        raise ValueError(f"axis must be a single axis, got {axis!r}")
    work = _validate.work_dtype(dtype)
    name = name if work == dtype and arrs[0].size else "numpy"
    layouts = [_validate.to_rows(a.astype(work, copy=False), axes) for a in arrs]
    rows = [layout[0] for layout in layouts]
    moved_shape = layouts[0][1]
    out = np.zeros(rows[0].shape[0], np.float64)
    if rows[0].shape[1]:  # else empty distributions: 0, an empty sum, as scipy gives
        getattr(_dispatch.kernels(name, "losses"), kernel_name)(*rows, out)
    if log_base is not None:
        out /= log_base
    out = out.astype(dtype).reshape(moved_shape[:-1])
    return out[()] if out.ndim == 0 else out


def entropy(p, axis=-1, *, base=None, backend=None):
    """Shannon entropy of the distributions along `axis`, as scipy.stats.entropy(p)
    (``axis=None``: of all elements as one distribution). The default axis is
    the last, one distribution per row as torch and the losses here take
    them; scipy.stats.entropy's is 0 (pass ``axis=0`` for its answer on a
    2-D array).

    Each slice is normalized to sum 1; zero probabilities contribute 0. The
    sum is taken in a form with no cancellation, relative to the largest
    element: unnormalized slices of low entropy keep full precision (for
    [6, 1e-10, 2e-10, 3e-10] scipy's answer is 3.3e-9 off in relative
    terms), and so do slices whose sum is subnormal or overflows, where
    scipy loses precision or returns 0. A slice holding NaN or inf, or only
    zeros, gives NaN, as scipy. Negative probabilities, 0-d input and
    ``base=1`` are errors (scipy returns -inf, 0 and inf).

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> round(float(fastmle.entropy(np.array([0.5, 0.5, 0.0]), base=2)), 12)
    1.0
    """
    return _rows_measure("entropy_rows", (p,), axis, base, backend, True)


def entropy_from_logits(logits, axis=-1, *, base=None, backend=None):
    """Entropy of softmax(logits) along `axis`, without forming the probabilities.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> bool(np.isclose(fastmle.entropy_from_logits(np.zeros(4)), np.log(4)))
    True
    """
    return _rows_measure("entropy_from_logits_rows", (logits,), axis, base, backend, False)


def kl_div(p, q, axis=-1, *, base=None, backend=None):
    """Kullback-Leibler divergence KL(p || q) along `axis`, as scipy.stats.entropy(p, q)
    (``axis=None``: of all elements as one distribution). The default axis is
    the last (scipy.stats.entropy's is 0), as for :func:`entropy`.

    Both are normalized to sum 1; +inf where p > 0 and q = 0. (Note the
    argument order differs from torch's ``kl_div(input=log q, target=p)``.)
    A slice whose sum overflows is scaled first (scipy's answer is 0 when
    p's sum overflows, inf when q's does); a slice holding NaN or inf gives
    NaN, as scipy; negative values are errors (scipy returns inf or NaN).

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> round(float(fastmle.kl_div(np.array([0.5, 0.5]), np.array([0.9, 0.1]))), 6)
    0.510826
    """
    return _rows_measure("kl_div_rows", (p, q), axis, base, backend, True)


def kl_div_from_logits(logits_p, logits_q, axis=-1, *, base=None, backend=None):
    """KL(softmax(logits_p) || softmax(logits_q)) along `axis`.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> float(fastmle.kl_div_from_logits(np.array([1.0, 2.0]), np.array([11.0, 12.0])))
    0.0
    """
    return _rows_measure("kl_div_from_logits_rows", (logits_p, logits_q), axis, base, backend, False)


def perplexity(nll, weights=None):
    """exp of the (weighted) mean negative log-likelihood per token.

    Parameters
    ----------
    nll : array_like
        Per-token negative log-likelihoods (natural log).
    weights : array_like of nll's shape, optional
        Finite, non-negative token weights (counts, or a 0/1 mask); a
        negative, NaN or infinite one is a ValueError. When every weight is zero no token counts and the
        result is NaN (0 / 0), as cross_entropy gives (torch's convention)
        when every target's weight is zero.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> round(float(fastmle.perplexity(np.full(10, np.log(50.0)))), 9)
    50.0
    """
    a = _validate.as_float_array(nll, "nll")
    if a.dtype.kind == "c":
        raise TypeError(f"nll must be real, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError("perplexity of no tokens is undefined")
    if weights is not None:
        weights = _validate.real_array(weights, "weights")
        if weights.shape != a.shape:
            raise ValueError(f"weights shape {weights.shape} does not match nll shape {a.shape}")
        if not np.isfinite(weights).all():
            raise ValueError("weights contains NaN or infinity")
        # weights count tokens (a weighted mean): a negative count means nothing
        negative = weights < 0
        if negative.any():
            pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(negative)), weights.shape))
            raise ValueError(f"weights must be >= 0, got {weights[pos]} at position {pos}")
        if not weights.any():
            return a.dtype.type(np.nan)  # no token counts: 0 / 0, as cross_entropy (np.average raises)
        # scaled by the largest: the mean is the same, and weights near 1e308 had overflowed its sums (NaN)
        weights = weights / np.max(weights)
    return a.dtype.type(np.exp(np.average(a, weights=weights)))


def perplexity_from_logits(logits, target, ignore_index=-100, *, backend=None):
    """Perplexity of class-index targets under softmax(logits):
    ``exp(cross_entropy(logits, target, ignore_index=ignore_index))``.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> round(float(fastmle.perplexity_from_logits(np.zeros((3, 7)), np.array([0, 1, 2]))), 12)
    7.0
    """
    loss = cross_entropy(logits, target, ignore_index=ignore_index, backend=backend)
    return loss.dtype.type(np.exp(loss))


# ---- linear layer + cross-entropy, chunked over rows ----

CHUNK_BYTES = 32 * 2**20  # logits held at a time by linear_cross_entropy
DW_BLOCK_BYTES = 8 * 2**20  # temporary of one weight-gradient update


def linear_cross_entropy(h, W, target, bias=None, *, reduction="mean", ignore_index=-100,
                         label_smoothing=0.0, return_grad=False, chunk_size=None, backend=None):
    """Cross-entropy of the logits ``h @ W.T + bias`` without ever holding them all.

    For large vocabularies the (N, V) logits dominate memory. Rows are taken
    `chunk_size` at a time: the chunk's logits are computed (numpy matmul,
    i.e. BLAS), turned into loss and gradient in place by the fused
    cross-entropy kernel of the chosen backend, multiplied back into the
    gradients of h, W and bias, and dropped. Extra memory is one chunk of
    logits plus an 8 MiB block for the W-gradient update, whatever N and V,
    with the C and Numba backends (the numpy reference's kernel makes
    float64 temporaries of each chunk: about 6 chunks more).
    The products are numpy's BLAS, so results repeat bit for bit only as far
    as it does: OpenBLAS's float32 GEMM rounds differently on 1 and 2
    threads, and calls made from several threads at once may get fewer.
    grad_W is summed over the row chunks in the input's precision: in
    float32 many small chunks add their rounding (65,536 x 8 x 20, largest
    error over largest entry: 3.1e-5 with chunk_size=1, 1.7e-6 with 16,
    2.5e-7 with the default). Small chunks are also slow with the compiled
    backends on more than one thread, as numpy's BLAS threads and the
    kernel's take the cores in turn (N = 1024, H = 64, V = 4000 float32,
    with gradients, C: chunk_size=64 124 ms on 2 threads against 14 ms
    after ``set_num_threads(1)``; the default chunk 12-14 ms against 9).

    Parameters
    ----------
    h : array_like, shape (N, H)
        Hidden states (inputs of the output layer).
    W : array_like, shape (V, H)
        Output-layer weights, one row per class (torch's Linear layout).
    target : array_like of int, shape (N,)
    bias : array_like, shape (V,), optional
    reduction, ignore_index, label_smoothing : as in :func:`cross_entropy`
    return_grad : bool
        Also return the gradients with respect to h, W and bias.
    chunk_size : int, optional
        Rows per chunk; default: as many as keep a chunk of logits near 32 MiB.

    Returns
    -------
    loss, or (loss, grad_h, grad_W, grad_bias) with ``return_grad=True``
    (grad_bias is None without a bias).

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> rng = np.random.default_rng(0)
    >>> h, W = rng.standard_normal((6, 4)), rng.standard_normal((10, 4))
    >>> y = np.array([1, 2, 3, 4, 5, 6])
    >>> loss = fastmle.linear_cross_entropy(h, W, y, chunk_size=4)
    >>> bool(np.isclose(loss, fastmle.cross_entropy(h @ W.T, y)))
    True
    """
    _validate.check_bool("return_grad", return_grad)
    name = _dispatch.resolve(backend)
    h = _validate.float_array(h, "h")
    W = _validate.float_array(W, "W")
    if h.ndim != 2 or W.ndim != 2 or h.shape[1] != W.shape[1]:
        raise ValueError(f"h must be (N, H) and W (V, H) with the same H; got {h.shape} and {W.shape}")
    n, vocab = h.shape[0], W.shape[0]
    if vocab == 0:
        raise ValueError("W has no rows (classes)")
    dtype = np.result_type(h, W)
    work = _validate.work_dtype(dtype)
    name = name if work == dtype else "numpy"
    reduction = _validate.reduction(reduction)
    eps = _validate.label_smoothing(label_smoothing)
    t, ignore_index = _validate.class_targets(target, vocab, ignore_index, (n,), "h @ W.T")
    b = None
    if bias is not None:
        b = _validate.float_array(bias, "bias")
        if b.shape != (vocab,):
            raise ValueError(f"bias must have shape ({vocab},), got {b.shape}")
        b = b.astype(work, copy=False)
    if chunk_size is None:
        chunk_size = max(1, CHUNK_BYTES // (vocab * work.itemsize))
    elif _validate.integer(chunk_size, "chunk_size") < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk_size = min(int(chunk_size), max(n, 1))
    h = h.astype(work, copy=False)
    W = W.astype(work, copy=False)

    denominator = int(np.count_nonzero(t != ignore_index))
    with np.errstate(divide="ignore", over="ignore"):  # 1 / 0 or 1 / a subnormal weight: inf
        grad_scale = float(np.float64(1.0) / denominator) if reduction == "mean" else 1.0
    kern = _dispatch.kernels(name, "losses")
    no_weight = np.empty(0, work)
    loss_rows = np.empty(n, np.float64)
    if return_grad:
        grad_h = np.empty_like(h, dtype=work)
        grad_W = np.zeros_like(W, dtype=work)
        grad_b = np.zeros(vocab, np.float64)
        w_block = max(1, DW_BLOCK_BYTES // (max(1, W.shape[1]) * work.itemsize))
        w_tmp = np.empty((min(w_block, vocab), W.shape[1]), work)
    logits = np.empty((chunk_size, vocab), work)
    for r0 in range(0, n, chunk_size):
        r1 = min(r0 + chunk_size, n)
        z = logits[: r1 - r0]
        np.matmul(h[r0:r1], W.T, out=z)
        if b is not None:
            z += b
        grad = z if return_grad else z[:0]
        kern.cross_entropy_rows(z, t[r0:r1], no_weight, ignore_index, eps, grad_scale,
                                loss_rows[r0:r1], grad)
        if return_grad:  # z now holds d loss / d logits for these rows
            np.matmul(z, W, out=grad_h[r0:r1])
            for v0 in range(0, vocab, w_block):
                v1 = min(v0 + w_block, vocab)
                tmp = w_tmp[: v1 - v0]
                np.matmul(z[:, v0:v1].T, h[r0:r1], out=tmp)
                grad_W[v0:v1] += tmp
            if b is not None:
                grad_b += z.sum(axis=0, dtype=np.float64)
    loss = _reduce(loss_rows, reduction, denominator, dtype, (n,))
    if not return_grad:
        return loss
    return (loss, grad_h.astype(dtype, copy=False), grad_W.astype(dtype, copy=False),
            grad_b.astype(dtype) if b is not None else None)
