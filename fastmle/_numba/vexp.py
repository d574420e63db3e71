"""Vectorizable exponentials for the Numba kernels, ``vexp`` and ``vexpf``,
and a logarithm, ``vlog``.

Numba >= 0.62 no longer routes ``np.exp`` in a loop through SVML, so a plain
``np.exp`` runs one element at a time. These are the same branch-free
algorithm as csrc/vexp.h (read that file for the derivation): Cody-Waite
range reduction, a polynomial, and 2^n assembled from exponent bits, which
LLVM vectorizes inside the kernels' loops.

Only ``contract`` is allowed as a fast-math flag here: reassociation would
fold the ``(x + SHIFTER) - SHIFTER`` rounding trick away. For the same reason
these are ordinary (not Numba-inlined) functions: LLVM inlines them into the
kernels' loops and keeps each instruction's own flags, whereas Numba-level
inlining would re-lower them with the caller's ``reassoc``.

Numba's cache keys a kernel on its own file only: the kernels that inline
these keep the old code after an edit here until their files change or
fastmle/_numba/__pycache__ is cleared.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_EXACT = {"contract"}


def _bitcast(from_type, to_type, llvm_to):
    """An intrinsic reinterpreting the bits of from_type as to_type.

    Integer arguments of any width are accepted and truncated to the width of
    to_type (Numba widens uint32 arithmetic to 64 bits)."""
    width = llvm_to.width if isinstance(llvm_to, ir.IntType) else (64 if llvm_to == ir.DoubleType() else 32)

    @intrinsic
    def cast(typingctx, value):
        if isinstance(from_type, types.Integer):
            if not isinstance(value, types.Integer):
                return None
        elif value != from_type:
            return None

        def codegen(context, builder, signature, args):
            v = args[0]
            if isinstance(v.type, ir.IntType) and v.type.width != width:
                v = builder.trunc(v, ir.IntType(width))
            return builder.bitcast(v, llvm_to)

        return to_type(value), codegen

    return cast


f64_as_u64 = _bitcast(types.float64, types.uint64, ir.IntType(64))
u64_as_f64 = _bitcast(types.uint64, types.float64, ir.DoubleType())
f32_as_u32 = _bitcast(types.float32, types.uint32, ir.IntType(32))
u32_as_f32 = _bitcast(types.uint32, types.float32, ir.FloatType())

_SHIFT64 = 6755399441055744.0  # 1.5 * 2^52
_SHIFT32 = np.float32(12582912.0)  # 1.5 * 2^23


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def _vexp_reduced(x):
    """(n, p): n = round(x / ln2) as a float, p = exp(x - n ln2); the core
    shared by the float64 exponentials."""
    kd = (x * 1.4426950408889634074 + _SHIFT64) - _SHIFT64
    r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return kd, p * r + 1.0


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def _pow2_shifted(k_shifted):
    """2^k from k + _SHIFT64 (k integral in [-1022, 1023] in the low bits)."""
    return u64_as_f64((f64_as_u64(k_shifted) + np.uint64(1023)) << np.uint64(52))


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def vexp(x):
    """exp(x) for float64 within 1.5 ulp of exact; inf, -inf, NaN and subnormals as numpy."""
    kd, p = _vexp_reduced(x)
    kh = kd * 0.5 + _SHIFT64
    kl = (kd - (kh - _SHIFT64)) + _SHIFT64
    y = (p * _pow2_shifted(kh)) * _pow2_shifted(kl)
    y = np.inf if x > 709.782712893383973096 else y  # ln(DBL_MAX)
    y = 0.0 if x < -745.1332191019412076235 else y  # rounds to 0 below
    return x if x != x else y


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def vexp_normal(x):
    """exp(x) for x in [-708.39, 0] (normal results) or NaN: one factor, no
    selects; the same bits as vexp there (csrc/vexp.h's fm_exp_normal)."""
    kd, p = _vexp_reduced(x)
    return p * _pow2_shifted(kd + _SHIFT64)


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def _vexpf_reduced(x):
    """(n, p): n = round(x / ln2) as a float, p = exp(x - n ln2); the core
    shared by the float32 exponentials."""
    kd = (x * np.float32(1.44269504088896341) + _SHIFT32) - _SHIFT32
    r = (x - kd * np.float32(0.693359375)) - kd * np.float32(-2.12194440e-4)
    p = np.float32(1.3814599e-3)
    p = p * r + np.float32(8.3687169e-3)
    p = p * r + np.float32(4.1668388e-2)
    p = p * r + np.float32(1.6666521e-1)
    p = p * r + np.float32(4.9999994e-1)
    p = p * r + np.float32(1.0)
    return kd, p * r + np.float32(1.0)


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def _pow2f_shifted(k_shifted):
    """2^k from k + _SHIFT32 (k integral in [-126, 127] in the low bits)."""
    return u32_as_f32((f32_as_u32(k_shifted) + np.uint32(127)) << np.uint32(23))


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def vexpf(x):
    """exp(x) for float32 within 1.5 ulp of exact; inf, -inf, NaN and subnormals as numpy."""
    kd, p = _vexpf_reduced(x)
    kh = kd * np.float32(0.5) + _SHIFT32
    kl = (kd - (kh - _SHIFT32)) + _SHIFT32
    y = (p * _pow2f_shifted(kh)) * _pow2f_shifted(kl)
    y = np.float32(np.inf) if x > np.float32(88.7228394) else y  # ln(FLT_MAX)
    y = np.float32(0.0) if x < np.float32(-103.972084) else y
    return x if x != x else y


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def vexpf_normal(x):
    """As vexp_normal, for float32 x in [-87.3365, 0]."""
    kd, p = _vexpf_reduced(x)
    return p * _pow2f_shifted(kd + _SHIFT32)


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def vexpf_nonpos_flush(x):
    """exp(x) for float32 x <= 0 (or NaN) whose result is only summed in
    float64 next to a term equal to 1 (logsumexp): results below FLT_MIN are
    flushed to 0, as csrc/vexp.h's fm_expf_nonpos_flush; normal results are
    bit-identical to vexpf's."""
    y = vexpf_normal(x)
    y = np.float32(0.0) if x < np.float32(-87.3365479) else y  # ln(FLT_MIN)
    return x if x != x else y


@njit(fastmath=_EXACT, cache=True, error_model="numpy")
def vlog(x):
    """log(x) for float64 within 1.5 ulp of exact (max seen 0.86); 0, inf,
    negatives and NaN as numpy. csrc/vexp.h's fm_log (fdlibm's algorithm,
    branch-free)."""
    sub = x < 2.2250738585072014e-308
    u = f64_as_u64(x * 18014398509481984.0 if sub else x)  # 2^54
    hi = (u >> np.uint64(32)) & np.uint64(0x000FFFFF)
    up = (hi + np.uint64(0x95F64)) & np.uint64(0x100000)  # 1 + f would be >= sqrt(2)
    k_biased = (((u >> np.uint64(52)) & np.uint64(0x7FF)) + np.uint64(1100 - 1023) + (up >> np.uint64(20))
                - (np.uint64(54) if sub else np.uint64(0)))
    dk = u64_as_f64(np.uint64(0x4330000000000000) + k_biased) - (4503599627370496.0 + 1100.0)
    f = u64_as_f64(((hi | (up ^ np.uint64(0x3FF00000))) << np.uint64(32)) | (u & np.uint64(0xFFFFFFFF))) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01))
    t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                                              + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)))
    hfsq = 0.5 * f * f
    y = dk * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + (t1 + t2)) + dk * 1.90821492927058770002e-10)) - f)
    y = -np.inf if x == 0 else y
    y = x if x == np.inf else y
    return np.nan if (x < 0 or x != x) else y


def _by_precision(name, doc, for_float32, for_float64):
    """A function callable from Numba code that runs for_float32 or
    for_float64 according to its argument's type (inlined, no run-time test)."""
    def stub(x):
        raise NotImplementedError("only callable from Numba-compiled code")
    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc

    @overload(stub, inline="always", fastmath=_EXACT)
    def _pick(x):
        if x == types.float32:
            return lambda x: for_float32(x)
        return lambda x: for_float64(x)
    return stub


vexp_same = _by_precision("vexp_same", "exp(x) in x's own precision: vexpf or vexp.", vexpf, vexp)
vexp_normal_same = _by_precision("vexp_normal_same", "vexpf_normal / vexp_normal in x's own precision.",
                                 vexpf_normal, vexp_normal)
vexp_sum = _by_precision("vexp_sum", "exp(x - max) whose result is only summed: vexpf_nonpos_flush for "
                         "float32, vexp for float64 (csrc/fm_types.h's FM_EXPFN_SUM).",
                         vexpf_nonpos_flush, vexp)


@njit(["void(float64[::1], float64[::1])", "void(float32[::1], float32[::1])"],
      fastmath=_EXACT, cache=True, nogil=True, error_model="numpy")
def exp(x, out):
    """out[:] = exp(x) with the kernels' exponential (exposed for tests)."""
    if out.shape[0] != x.shape[0]:  # else a write past out's end
        raise ValueError("out must have x's length")
    for i in range(x.shape[0]):
        out[i] = vexp_same(x[i])


@njit(["void(float64[::1], float64[::1])"], fastmath=_EXACT, cache=True, nogil=True, error_model="numpy")
def log(x, out):
    """out[:] = log(x) with the kernels' logarithm (exposed for tests)."""
    if out.shape[0] != x.shape[0]:  # else a write past out's end
        raise ValueError("out must have x's length")
    for i in range(x.shape[0]):
        out[i] = vlog(x[i])
