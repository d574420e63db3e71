"""Explicit SIMD registers for Numba kernels, as csrc's gcc vector extensions.

LLVM's loop vectorizer picks its own blocking: it keeps a matrix product's
sums in memory when they run across rows (the SGD batch's backward product)
and leaves scalar remainders. These intrinsics give Numba code a `Vector`
type, one LLVM vector the width of the target's registers (VECTOR_BYTES), so
that a kernel can hold a block of sums in registers and say which loads feed
which multiply-adds, line for line with csrc/glm_kernels.h. Values of the
type live in registers (they never reach Python); loads and stores are
unaligned and unchecked: callers keep the lanes inside the array.
"""
import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic, models, register_jitable, register_model


def _vector_bytes():
    """The register width of the CPU Numba compiles for (64 with AVX-512,
    else 32): csrc's FM_GLM_VB. Numba's cache is keyed by that CPU too."""
    features = config.CPU_FEATURES
    if features is None:
        features = llvm.get_host_cpu_features().flatten()
    return 64 if "+avx512f" in features else 32


VECTOR_BYTES = _vector_bytes()


class Vector(types.Type):
    """`lanes` elements of `dtype` in one register."""

    def __init__(self, dtype, lanes):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vector({dtype}, {lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


@register_jitable
def lanes(itemsize):
    """Elements of `itemsize` bytes per Vector (call from Python or Numba)."""
    return VECTOR_BYTES // itemsize


def _vector_of(dtype):
    return Vector(dtype, VECTOR_BYTES // (dtype.bitwidth // 8))


def _indices(values):
    """A constant vector of 32-bit integers (lane numbers, shuffle masks)."""
    return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), list(values))


def _splat(builder, value, n):
    """A vector of n lanes, each `value`."""
    undefined = ir.Constant(ir.VectorType(value.type, n), ir.Undefined)
    return builder.shuffle_vector(builder.insert_element(undefined, value, ir.IntType(32)(0)), undefined,
                                  _indices([0] * n))


def _from_lane(builder, vt, first):
    """The mask of lanes >= first (a run-time integer)."""
    first = builder.trunc(first, ir.IntType(32)) if first.type.width > 32 else first
    return builder.icmp_signed(">=", _indices(range(vt.lanes)), _splat(builder, first, vt.lanes))


def _contiguous_1d(a):
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"


def _address(context, builder, arrty, arr, i, vt):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [i]), context.get_value_type(vt).as_pointer())


@intrinsic
def vload(typingctx, a, i):
    """The Vector a[i : i + lanes] of a C-contiguous 1-D array."""
    if not _contiguous_1d(a):
        return None
    vt = _vector_of(a.dtype)

    def codegen(context, builder, sig, args):
        address = _address(context, builder, sig.args[0], args[0], args[1], vt)
        return builder.load(address, align=a.dtype.bitwidth // 8)
    return vt(a, i), codegen


@intrinsic
def vstore(typingctx, a, i, v):
    """a[i : i + lanes] = v."""
    if not _contiguous_1d(a) or not isinstance(v, Vector) or v.dtype != a.dtype:
        return None
    def codegen(context, builder, sig, args):
        address = _address(context, builder, sig.args[0], args[0], args[1], sig.args[2])
        builder.store(args[2], address, align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def vsplat(typingctx, s):
    """A Vector with every lane s."""
    vt = _vector_of(s)

    def codegen(context, builder, sig, args):
        return _splat(builder, args[0], vt.lanes)
    return vt(s), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c, fused, lane by lane."""
    def codegen(context, builder, sig, args):
        ty = context.get_value_type(sig.args[0])
        name = f"llvm.fma.v{sig.args[0].lanes}f{sig.args[0].dtype.bitwidth}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)
        return builder.call(fn, args)
    return a(a, b, c), codegen


def _lanewise(build, doc):
    """An intrinsic f(a, b) of two Vectors of one type: build(builder, a, b)."""
    @intrinsic
    def op(typingctx, a, b):
        if not (a == b and isinstance(a, Vector)):
            return None

        def codegen(context, builder, sig, args):
            return build(builder, *args)
        return a(a, b), codegen
    op.__doc__ = doc
    return op


vmul = _lanewise(lambda builder, a, b: builder.fmul(a, b),
                 "a * b, lane by lane, rounded (never fused into a later addition).")
vadd = _lanewise(lambda builder, a, b: builder.fadd(a, b), "a + b, lane by lane.")


@intrinsic
def vzero_below(typingctx, v, first):
    """v with its lanes below `first` set to zero (a tail vector ending at
    the row's end, whose first lanes an earlier vector already summed)."""
    def codegen(context, builder, sig, args):
        vt = sig.args[0]
        zero = ir.Constant(context.get_value_type(vt), None)
        return builder.select(_from_lane(builder, vt, args[1]), args[0], zero)
    return v(v, first), codegen


@intrinsic
def vmerge_from(typingctx, first, new, old):
    """Lanes >= first from new, the others from old."""
    def codegen(context, builder, sig, args):
        return builder.select(_from_lane(builder, sig.args[1], args[0]), args[1], args[2])
    return new(first, new, old), codegen


@intrinsic
def vsum(typingctx, v):
    """The sum of v's lanes, halves folded onto halves (lane i + half added
    to lane i): csrc's glm_hsum, the same tree for every dot product."""
    def codegen(context, builder, sig, args):
        vt = sig.args[0]
        v = args[0]
        half = vt.lanes // 2
        while half:
            upper = [i + half if i < half else i for i in range(vt.lanes)]
            v = builder.fadd(v, builder.shuffle_vector(v, v, _indices(upper)))
            half //= 2
        return builder.extract_element(v, ir.IntType(32)(0))
    return v.dtype(v), codegen


def _halve_segments(builder, x, y, lanes, size):
    """Lane i + size/2 added to lane i in each segment of `size` lanes of x
    (and of y, packed after x's): half-size segments in one vector."""
    def pick(offset):
        index = [seg * size + i + offset for seg in range(lanes // size) for i in range(size // 2)]
        if y is not None:
            index += [lanes + i for i in index]
        index += [0] * (lanes - len(index))
        return builder.shuffle_vector(x, x if y is None else y, _indices(index))
    return builder.fadd(pick(0), pick(size // 2))


@intrinsic
def vsum4(typingctx, a, b, c, d):
    """(vsum(a), vsum(b), vsum(c), vsum(d)) with the same additions, done on
    the four vectors' lanes together (csrc's fwd_block for four outputs)."""
    if not (a == b == c == d and isinstance(a, Vector)):
        return None

    def codegen(context, builder, sig, args):
        n = a.lanes
        u = _halve_segments(builder, args[0], args[1], n, n)   # segments of n / 2: a's, b's
        v = _halve_segments(builder, args[2], args[3], n, n)
        size = n // 2
        p = _halve_segments(builder, u, v, n, size) if size > 1 else None
        size //= 2
        while size > 1:   # four segments packed in the first lanes of p
            p = _halve_segments(builder, p, None, n, size)
            size //= 2
        if p is None:  # one lane per vector already (not reached with lanes >= 4)
            sums = [builder.extract_element(x, ir.IntType(32)(0)) for x in (u, v)]
        else:
            sums = [builder.extract_element(p, ir.IntType(32)(i)) for i in range(4)]
        return context.make_tuple(builder, sig.return_type, sums)
    return types.UniTuple(a.dtype, 4)(a, b, c, d), codegen
