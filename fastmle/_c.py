"""The C backend: loads the cffi extension and wraps numpy arrays as pointers.

The extension is optional: if it was not built (no compiler, or
FASTMLE_NO_C=1 at install time) or FASTMLE_NO_C=1 is set now, ``lib`` is None
and ``unavailable_reason`` says why. Wrappers keep the reference/Numba
argument order; cffi releases the GIL during each call.
"""
import os
import warnings

import numpy as np

lib = ffi = None
unavailable_reason = None

if os.environ.get("FASTMLE_NO_C"):
    unavailable_reason = "disabled by FASTMLE_NO_C"
else:
    try:
        from ._cext import ffi, lib
    except ImportError as exc:  # not built at install time
        unavailable_reason = f"C extension not built ({exc})"
        # pip shows setup.py's build failure only with -v: say it here, once
        warnings.warn(f"fastmle's C backend is unavailable: {unavailable_reason}. fastmle runs on Numba, "
                      "whose first call of each kernel family compiles for tens of seconds (`python -m fastmle "
                      "compile` does them all once). Reinstall where a C compiler (gcc) is available for the C "
                      "backend, or set FASTMLE_NO_C=1 to leave it out on purpose.", UserWarning, stacklevel=2)

_CTYPE = {np.dtype(np.float32): "float *", np.dtype(np.float64): "double *"}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _check_layout(a):
    # the validate layer copies every array into this layout (glm.native_array);
    # anything else reaching C would be undefined behaviour: fail loudly instead
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise ValueError("internal error: a non-contiguous or unaligned array reached the C kernels")
    return a


def _ptr(a):
    return ffi.cast(_CTYPE[a.dtype], ffi.from_buffer(_check_layout(a), require_writable=False))


def _out(a):
    """Pointer to an array a kernel writes (cffi refuses a read-only one
    with a BufferError; the public functions hand over only writable ones)."""
    return ffi.cast(_CTYPE[a.dtype], ffi.from_buffer(_check_layout(a), require_writable=True))


def _ptr_or_null(a):
    """Pointer to an optional array; an empty array means "not given" (NULL)."""
    return _ptr(a) if a.size else ffi.NULL


def _i64(a):
    return ffi.cast("int64_t *", ffi.from_buffer(_check_layout(a), require_writable=False))


def _i64_or_null(a):
    return _i64(a) if a.size else ffi.NULL


def _fn(name, a):
    return getattr(lib, f"{name}_{_SUFFIX[a.dtype]}")


# ---- family "special" (csrc/special.c) ----

def logsumexp(a, out):
    _fn("logsumexp", a)(_ptr(a), a.shape[0], a.shape[1], _ptr(out))


def logsumexp_weighted(a, b, return_sign, out, sign):
    _fn("logsumexp_weighted", a)(_ptr(a), _ptr(b), a.shape[0], a.shape[1], int(return_sign),
                                 _ptr(out), _ptr(sign))


def softmax(x, out):
    _fn("softmax", x)(_ptr(x), x.shape[0], x.shape[1], _ptr(out))


def log_softmax(x, out):
    _fn("log_softmax", x)(_ptr(x), x.shape[0], x.shape[1], _ptr(out))


def _map_args(x, out):
    """(x, out, n) for the elementwise test hooks below: out written, of x's
    dtype and length (else a write past its end)."""
    if out.dtype != x.dtype or out.shape[0] != x.shape[0]:
        raise ValueError(f"out must be {x.dtype} of length {x.shape[0]}, got {out.dtype} of {out.shape[0]}")
    return _ptr(x), _out(out), x.shape[0]


def exp(x, out):
    """out[:] = exp(x) with the kernels' vectorized exponential (for tests)."""
    getattr(lib, f"fm_exp_{_SUFFIX[x.dtype]}")(*_map_args(x, out))


def exp_normal(x, out):
    """out[:] = exp(x) for x whose exp is normal and <= 1, as the kernels use
    it for rows of small range (for tests)."""
    getattr(lib, f"fm_exp_normal_{_SUFFIX[x.dtype]}")(*_map_args(x, out))


def exp_nonpos_flush(x, out):
    """out[:] = exp(x) for float32 x <= 0 as logsumexp's sums use it (for tests)."""
    lib.fm_exp_nonpos_flush_f32(*_map_args(x, out))


def log(x, out):
    """out[:] = log(x) for float64 x with the kernels' vectorized logarithm (for tests)."""
    lib.fm_log_f64(*_map_args(x, out))


# ---- family "losses" (csrc/losses.c) ----

def nll_rows(log_probs, target, weight, ignore_index, smoothing, grad_scale, loss, grad):
    _fn("nll_rows", log_probs)(_ptr(log_probs), _i64(target), _ptr_or_null(weight),
                               log_probs.shape[0], log_probs.shape[1], int(ignore_index),
                               float(smoothing), float(grad_scale), _ptr(loss), _ptr_or_null(grad))


def cross_entropy_rows(logits, target, weight, ignore_index, smoothing, grad_scale, loss, grad):
    _fn("cross_entropy_rows", logits)(_ptr(logits), _i64(target), _ptr_or_null(weight),
                                      logits.shape[0], logits.shape[1], int(ignore_index),
                                      float(smoothing), float(grad_scale), _ptr(loss),
                                      _ptr_or_null(grad))


def cross_entropy_soft_rows(logits, target, weight, smoothing, grad_scale, loss, grad):
    _fn("cross_entropy_soft_rows", logits)(_ptr(logits), _ptr(target), _ptr_or_null(weight),
                                           logits.shape[0], logits.shape[1], float(smoothing),
                                           float(grad_scale), _ptr(loss), _ptr_or_null(grad))


def bce_with_logits(logits, target, weight, pos_weight, grad_scale, chunk, partial, loss, grad):
    _fn("bce_with_logits", logits)(_ptr(logits), _ptr(target), _ptr_or_null(weight),
                                   _ptr_or_null(pos_weight), logits.shape[0], float(grad_scale),
                                   int(chunk), _ptr(partial), _ptr_or_null(loss), _ptr_or_null(grad))


def gaussian_nll(pred, target, var, eps, full, loss_scale, grad_scale, chunk, partial, loss, grad_pred, grad_var):
    _fn("gaussian_nll", pred)(_ptr(pred), _ptr(target), _ptr(var), pred.shape[0], var.shape[0],
                              float(eps), int(full), float(loss_scale), float(grad_scale), int(chunk), _ptr(partial),
                              _ptr_or_null(loss), _ptr_or_null(grad_pred), _ptr_or_null(grad_var))


def entropy_rows(probs, out):
    _fn("entropy_rows", probs)(_ptr(probs), probs.shape[0], probs.shape[1], _ptr(out))


def entropy_from_logits_rows(logits, out):
    _fn("entropy_from_logits_rows", logits)(_ptr(logits), logits.shape[0], logits.shape[1],
                                            _ptr(out))


def kl_div_rows(p, q, out):
    _fn("kl_div_rows", p)(_ptr(p), _ptr(q), p.shape[0], p.shape[1], _ptr(out))


def kl_div_from_logits_rows(logits_p, logits_q, out):
    _fn("kl_div_from_logits_rows", logits_p)(_ptr(logits_p), _ptr(logits_q), logits_p.shape[0],
                                             logits_p.shape[1], _ptr(out))


# ---- family "glm" (csrc/glm.c) ----
# X is dense (n, d) or, in the _csr kernels, compressed sparse rows: data,
# int32 indices, int64 indptr and the number of features.

def _i32(a):
    return ffi.cast("int32_t *", ffi.from_buffer(_check_layout(a), require_writable=False))


def _check_memory(status, name):
    if status < 0:
        raise MemoryError(f"{name}: the C kernel could not allocate its buffers")
    return status


def glm_predict(X, params, offset, family, out):
    _check_memory(_fn("glm_predict", X)(_ptr(X), X.shape[0], X.shape[1], _ptr(params),
                                        _ptr_or_null(offset), params.shape[0], int(family), _ptr(out)),
                  "glm_predict")


def glm_predict_csr(data, indices, indptr, n_features, params, offset, family, out):
    _check_memory(_fn("glm_predict_csr", data)(_ptr(data), _i32(indices), _i64(indptr),
                                               indptr.shape[0] - 1, int(n_features), _ptr(params),
                                               _ptr_or_null(offset), params.shape[0], int(family),
                                               _ptr(out)), "glm_predict")


def glm_loss_grad(X, labels, targets, sample_weight, params, offset, family, loss, grad):
    _check_memory(_fn("glm_loss_grad", X)(_ptr(X), X.shape[0], X.shape[1], _i64_or_null(labels),
                                          _ptr_or_null(targets), _ptr_or_null(sample_weight),
                                          _ptr(params), _ptr_or_null(offset), params.shape[0],
                                          int(family), _ptr(loss), _ptr_or_null(grad)), "glm_loss_grad")


def glm_loss_grad_csr(data, indices, indptr, n_features, labels, targets, sample_weight, params,
                      offset, family, loss, grad):
    _check_memory(_fn("glm_loss_grad_csr", data)(
        _ptr(data), _i32(indices), _i64(indptr), indptr.shape[0] - 1, int(n_features),
        _i64_or_null(labels), _ptr_or_null(targets), _ptr_or_null(sample_weight), _ptr(params),
        _ptr_or_null(offset), params.shape[0], int(family), _ptr(loss), _ptr_or_null(grad)),
        "glm_loss_grad")


def scan_rows(X, out):
    _fn("scan_rows", X)(_ptr(X), X.shape[0], X.shape[1], _ptr(out))


def _epoch_args(labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1, momentum,
                nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss):
    """The C arguments after the design matrix, shared by both epochs."""
    return (_i64_or_null(labels), _ptr_or_null(targets), _ptr_or_null(sample_weight), _i64(perm),
            perm.shape[0], _ptr(lr), lr.shape[0], int(family), int(batch_size), float(l2),
            float(l1), float(momentum), int(nesterov), int(fit_intercept), _ptr(params),
            params.shape[0], _ptr_or_null(velocity), _ptr_or_null(avg), int(avg_start), int(step0),
            _ptr(loss))


def sgd_epoch(X, *args):
    """(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2,
    l1, momentum, nesterov, fit_intercept, params, velocity, avg, avg_start,
    step0, loss) as in fastmle/reference/glm.py."""
    return _check_memory(_fn("sgd_epoch", X)(_ptr(X), X.shape[0], X.shape[1], *_epoch_args(*args)),
                         "sgd_epoch")


def sgd_epoch_csr(data, indices, indptr, n_features, *args):
    """sgd_epoch with X as compressed sparse rows."""
    return _check_memory(_fn("sgd_epoch_csr", data)(_ptr(data), _i32(indices), _i64(indptr),
                                                    indptr.shape[0] - 1, int(n_features),
                                                    *_epoch_args(*args)), "sgd_epoch")


# ---- family "fisher" (csrc/fisher.c) ----
# The large products call the BLAS numpy uses, registered on first use.

_blas_registered = []


def _register_blas():
    if not _blas_registered:
        from . import _blas

        _blas._register_c()
        _blas_registered.append(True)


def fisher_accumulate(scores, sample_weight, alpha, beta, acc):
    _register_blas()
    _check_memory(_fn("fisher_accumulate", scores)(_ptr(scores), scores.shape[0], scores.shape[1],
                                                   _ptr_or_null(sample_weight), float(alpha),
                                                   float(beta), _out(acc)), "fisher_accumulate")


def fisher_accumulate_diag(scores, sample_weight, alpha, beta, acc):
    _fn("fisher_accumulate_diag", scores)(_ptr(scores), scores.shape[0], scores.shape[1],
                                          _ptr_or_null(sample_weight), float(alpha), float(beta),
                                          _out(acc))


def _model_args(X, params, offset, family, sample_weight, fit_intercept, ref):
    return (_ptr(X), X.shape[0], X.shape[1], _ptr(params), _ptr_or_null(offset), params.shape[0],
            int(family), _ptr_or_null(sample_weight), int(fit_intercept), int(ref))


def glm_fisher(X, params, offset, family, sample_weight, fit_intercept, ref, out):
    _register_blas()
    _check_memory(_fn("glm_fisher", X)(*_model_args(X, params, offset, family, sample_weight,
                                                    fit_intercept, ref), _ptr(out)), "glm_fisher")


def glm_fisher_diag(X, params, offset, family, sample_weight, fit_intercept, ref, out):
    _check_memory(_fn("glm_fisher_diag", X)(*_model_args(X, params, offset, family, sample_weight,
                                                         fit_intercept, ref), _ptr(out)),
                  "glm_fisher")


def glm_fisher_vp(X, params, offset, family, sample_weight, fit_intercept, ref, v, out):
    _check_memory(_fn("glm_fisher_vp", X)(*_model_args(X, params, offset, family, sample_weight,
                                                       fit_intercept, ref), _ptr(v), _ptr(out)),
                  "fisher_vector_product")
