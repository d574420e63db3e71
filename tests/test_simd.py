"""The explicit vectors of the Numba kernels (fastmle/_numba/simd.py): each
operation against numpy, and vsum's addition tree (csrc's glm_hsum)."""
import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from fastmle._numba.simd import (lanes, vadd, vfma, vload, vmerge_from, vmul, vsplat, vstore, vsum, vsum4,
                                 vzero_below)

DTYPES = [np.float64, np.float32]


def tree_sum(v):
    """glm_hsum: lane i + half added to lane i, halves folded until one."""
    t = v.copy()
    half = len(t) // 2
    while half:
        t[:half] = t[:half] + t[half:2 * half]
        half //= 2
    return t[0]


@njit
def _sums(a):
    v0, v1, v2, v3 = vload(a[0], 0), vload(a[1], 0), vload(a[2], 0), vload(a[3], 0)
    return (vsum(v0), vsum(v1), vsum(v2), vsum(v3)), vsum4(v0, v1, v2, v3)


@njit
def _fma_store(x, y, z, s, out, first, zero_from):
    f = vfma(vload(x, 0), vload(y, 0), vload(z, 0))
    vstore(out[0], 0, f)
    vstore(out[1], 0, vzero_below(f, zero_from))
    vstore(out[2], 0, vmerge_from(first, f, vsplat(s)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sums_follow_the_halving_tree(dtype):
    rng = np.random.default_rng(0)
    L = lanes(np.dtype(dtype).itemsize)
    for scale in (1.0, 1e8):  # magnitudes that make the order of additions show
        a = (rng.standard_normal((4, L)) * scale ** rng.uniform(0, 1, (4, L))).astype(dtype)
        each, together = _sums(a)
        want = [tree_sum(row) for row in a]
        assert [x.tobytes() for x in np.array(each, dtype)] == [x.tobytes() for x in np.array(want, dtype)]
        np.testing.assert_array_equal(np.array(together, dtype), np.array(want, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("first", [0, 1, 3, "last"])
def test_fma_masks_and_stores(dtype, first):
    rng = np.random.default_rng(1)
    L = lanes(np.dtype(dtype).itemsize)
    first = L - 1 if first == "last" else first
    x, y, z = rng.standard_normal((3, L)).astype(dtype)
    out = np.full((3, L + 1), 7, dtype)   # the lane after the vector stays untouched
    _fma_store(x, y, z, dtype(-2), out, first, first)
    fused = (x.astype(np.float64) * y + z).astype(dtype) if dtype == np.float32 else None
    if fused is not None:
        np.testing.assert_array_equal(out[0, :L], fused)
    else:
        np.testing.assert_allclose(out[0, :L], x * y + z, rtol=1e-15)
    np.testing.assert_array_equal(out[1, :L], np.where(np.arange(L) >= first, out[0, :L], 0))
    np.testing.assert_array_equal(out[2, :L], np.where(np.arange(L) >= first, out[0, :L], -2))
    assert (out[:, L] == 7).all()


@njit
def _mul_then_add(x, y, z, out):
    vstore(out, 0, vadd(vmul(vload(x, 0), vload(y, 0)), vload(z, 0)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiply_then_add_rounds_twice(dtype):
    # vmul's product is rounded before vadd adds it (csrc's fisher_tile
    # scales B's row by w first): (1 + eps)(1 - eps) = 1 - eps^2 rounds to
    # 1, so adding -1 gives 0, where a fused multiply-add gives -eps^2
    L = lanes(np.dtype(dtype).itemsize)
    eps = np.finfo(dtype).eps
    x = np.full(L, 1 + eps, dtype)
    y = np.full(L, 1 - eps, dtype)
    z = np.full(L, -1, dtype)
    out = np.empty(L, dtype)
    _mul_then_add(x, y, z, out)
    np.testing.assert_array_equal(out, (x * y) + z)   # numpy rounds the product first
    assert (out == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_loads_and_stores_at_an_offset(dtype):
    @njit
    def copy_at(a, out, i):
        vstore(out, i, vload(a, i))

    L = lanes(np.dtype(dtype).itemsize)
    a = np.arange(3 * L, dtype=dtype)
    out = np.zeros_like(a)
    copy_at(a, out, 3)
    np.testing.assert_array_equal(out, np.where((np.arange(3 * L) >= 3) & (np.arange(3 * L) < 3 + L), a, 0))


def test_loads_refuse_strided_arrays():
    @njit
    def load_sum(a):
        return vsum(vload(a, 0))

    a = np.arange(64.0)
    assert load_sum(a[:8]) == 28.0 or lanes(8) != 8
    with pytest.raises(TypingError):
        load_sum(a[::2])
