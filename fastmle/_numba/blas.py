"""CBLAS calls from Numba kernels, through the BLAS numpy uses (fastmle/_blas.py).

The kernels call fixed symbol names (``fastmle_dsyrk64`` ...), which this
module registers with llvmlite before any kernel is compiled or loaded from
Numba's cache: the cached machine code refers to the names, not to this
process's addresses, so the cache stays valid from one process to the next.
There are two sets of names, for BLAS built with 64-bit integers (ILP64, as
in numpy's wheels) and with 32-bit ones (LP64); the set not in use points to
a function that is never called, so that every kernel links. A kernel takes
``blas``, the :func:`mode` its caller read: 0 (own loops), ILP64 or LP64.
"""
import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _blas

NONE, ILP64, LP64 = 0, 1, 2
ROW_MAJOR, TRANS, UPPER = 101, 112, 121

_never_called = ctypes.CFUNCTYPE(None)(lambda: None)  # kept alive: its address is registered


def _register():
    found = _blas.find()
    dummy = ctypes.cast(_never_called, ctypes.c_void_p).value
    for int64, suffix in ((True, "64"), (False, "32")):
        for f in _blas.FUNCTIONS:
            use = found is not None and found["int64"] == int64
            llvm.add_symbol(f"fastmle_{f}{suffix}", found["addresses"][f] if use else dummy)


_register()


def mode(*dims):
    """NONE, ILP64 or LP64: how a kernel with these dimensions calls the BLAS
    now (NONE when disabled, not found, or a dimension passes 2**31 - 1 in an
    LP64 BLAS)."""
    if not _blas.enabled():
        return NONE
    if _blas.find()["int64"]:
        return ILP64
    return LP64 if max(dims, default=0) <= 2**31 - 1 else NONE


_v, _i32, _i64, _f32, _f64, _p = (types.void, types.int32, types.int64, types.float32, types.float64,
                                  types.voidptr)


def _syrk_type(I, F):  # noqa: E741  (I: integer type, F: alpha/beta type)
    return _v(_i32, _i32, _i32, I, I, F, _p, I, F, _p, I)


_dsyrk64 = types.ExternalFunction("fastmle_dsyrk64", _syrk_type(_i64, _f64))
_dsyrk32 = types.ExternalFunction("fastmle_dsyrk32", _syrk_type(_i32, _f64))
_ssyrk64 = types.ExternalFunction("fastmle_ssyrk64", _syrk_type(_i64, _f32))
_ssyrk32 = types.ExternalFunction("fastmle_ssyrk32", _syrk_type(_i32, _f32))


@intrinsic
def _data(typingctx, arr):
    """The address of an array's first element, as void * (for the BLAS)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, cgutils.voidptr_t)
    return types.voidptr(arr), codegen


@njit(cache=True, nogil=True)
def syrk(A, alpha, beta, C, blas):
    """Upper triangle of C (P x P; rows may be strided, e.g. a diagonal block
    of a larger matrix) <- alpha A^T A + beta C, for C-contiguous A (k x P)
    of C's float type, through the BLAS (blas: ILP64 or LP64)."""
    k, P = A.shape
    ldc = C.strides[0] // C.itemsize
    if A.itemsize == 8:
        if blas == ILP64:
            _dsyrk64(ROW_MAJOR, UPPER, TRANS, P, k, alpha, _data(A), P, beta, _data(C), ldc)
        else:
            _dsyrk32(ROW_MAJOR, UPPER, TRANS, np.int32(P), np.int32(k), alpha, _data(A), np.int32(P),
                     beta, _data(C), np.int32(ldc))
    elif blas == ILP64:
        _ssyrk64(ROW_MAJOR, UPPER, TRANS, P, k, np.float32(alpha), _data(A), P, np.float32(beta),
                 _data(C), ldc)
    else:
        _ssyrk32(ROW_MAJOR, UPPER, TRANS, np.int32(P), np.int32(k), np.float32(alpha), _data(A),
                 np.int32(P), np.float32(beta), _data(C), np.int32(ldc))
