"""The C backend: loads the cffi extension and wraps numpy arrays as pointers.

The extension is optional: if it was not built (no compiler, or
FASTMLE_NO_C=1 at install time) or FASTMLE_NO_C=1 is set now, ``lib`` is None
and ``unavailable_reason`` says why. Wrappers keep the reference/Numba
argument order; cffi releases the GIL during each call.
"""
import os

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

_CTYPE = {np.dtype(np.float32): "float *", np.dtype(np.float64): "double *"}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _ptr(a):
    return ffi.cast(_CTYPE[a.dtype], ffi.from_buffer(a, require_writable=False))


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


def exp(x, out):
    """out[:] = exp(x) with the kernels' vectorized exponential (for tests)."""
    getattr(lib, f"fm_exp_{_SUFFIX[x.dtype]}")(_ptr(x), _ptr(out), x.shape[0])
