"""logsumexp / softmax / log_softmax: every backend against the numpy
reference, the reference against scipy, accuracy against long double, and
hypothesis properties."""
import contextlib
import os

import numpy as np
import pytest
import scipy.special
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import fastmle
from fastmle._registry import family

from cases import arrays, assert_same, axes_for, c_simd_level, c_simd_levels

FUNCS = [k.name for k in family("special")]  # softmax, log_softmax, logsumexp


def tol(dtype):
    # compiled kernels and the float32 numpy reference round differently
    return (3e-5, 3e-6) if dtype == np.float32 else (1e-12, 1e-13)


def call(name, x, axis, backend):
    return getattr(fastmle, name)(x, axis=axis, backend=backend)


def check_against_reference(name, x, axis, backend, label):
    """`backend`'s result equals the numpy reference's, within tol(x.dtype)
    (absolute part scaled by the largest finite |x|)."""
    want = call(name, x, axis, "numpy")
    got = call(name, x, axis, backend)
    rtol, atol = tol(x.dtype)
    atol = atol * max(1.0, float(np.nanmax(np.abs(x[np.isfinite(x)]), initial=0)))
    assert_same(got, want, rtol, atol, err=f"{name} {backend} {label} axis={axis}")


@pytest.mark.parametrize("name", FUNCS)
def test_backends_match_reference(name, backend, dtype, rng):
    for label, x in arrays(dtype, rng):
        for axis in axes_for(x.ndim):
            check_against_reference(name, x, axis, backend, label)


@pytest.mark.parametrize("name", FUNCS)
def test_reference_matches_scipy(name, dtype, rng):
    for label, x in arrays(dtype, rng):
        for axis in axes_for(x.ndim):
            try:
                want = getattr(scipy.special, name)(x, axis=axis)
            except (ValueError, IndexError):  # scipy rejects (or trips on) empty reductions
                continue
            got = call(name, x, axis, "numpy")
            assert_same(got, want, 1e-6 if dtype == np.float32 else 1e-14, 0,
                        err=f"{name} {label} axis={axis}")


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("x", [
    np.array(2.5), 3, [1, 2, 3], np.array([True, False]), np.arange(6).reshape(2, 3),
    np.array([1 + 2j, 3 - 1j]), np.array([1.0, 2.0], dtype=np.float16),
    np.array([1.0, 2.0, np.inf], dtype=np.longdouble),
], ids=lambda v: f"{np.asarray(v).dtype}{np.asarray(v).shape}")
def test_dtypes_and_0d_like_scipy(name, x, backend):
    try:
        want = getattr(scipy.special, name)(x)
    except TypeError:  # scipy cannot subtract bools; fastmle promotes them like logsumexp does
        want = getattr(scipy.special, name)(np.asarray(x, dtype=np.float64))
    got = getattr(fastmle, name)(x, backend=backend)
    assert type(got) is type(want)
    assert_same(got, want, 1e-3 if np.asarray(x).dtype == np.float16 else 1e-14, err=name)


def test_logsumexp_weights_and_sign(backend, dtype, rng):
    a = (rng.standard_normal((6, 50)) * 4).astype(dtype)
    a[0, 3] = np.inf
    a[1, :] = -np.inf
    a[2, 5] = np.nan
    b_full = rng.standard_normal((6, 50)).astype(dtype)
    b_full[0, 3] = 0  # zero weight hides an inf
    b_full[3, :] = 0  # all weights zero
    b_full[4, :2] = [1, -1]
    a[4, :2] = 7.0  # cancelling maximal terms
    for b in [b_full, np.abs(b_full), b_full[0], 2.0, np.array(-1.0, dtype=dtype)]:
        for axis in (None, 0, 1, -1):
            for return_sign in (False, True):
                want = scipy.special.logsumexp(a, axis=axis, b=b, return_sign=return_sign)
                got = fastmle.logsumexp(a, axis=axis, b=b, return_sign=return_sign, backend=backend)
                if return_sign:
                    assert_same(got[1], want[1], 0, err="sign")
                    got, want = got[0], want[0]
                rtol = 2e-5 if dtype == np.float32 else 1e-12
                assert_same(got, want, rtol, rtol, err=f"b={np.shape(b)} axis={axis} sign={return_sign}")


@pytest.mark.parametrize("row", [
    [0.0, -20.0],
    [-1e-3, -20.0],
    [0.0] + [-25.0] * 40001,   # a row split into chunks, the threads summing them
    [-30.0, 0.0, -30.0, -17.0],
])
def test_logsumexp_float32_of_one_dominant_element(backend, row):
    # float32 rows summed the max's exp(0) = 1 with another exponential in
    # float32, which dropped it: logsumexp([0, -20]) was 0 in C and Numba
    # (scipy, and the numpy reference, computing in float64: 2.06e-9)
    row = np.array(row, np.float32)
    got = fastmle.logsumexp(row, backend=backend)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, scipy.special.logsumexp(row.astype(np.float64)), rtol=4 * 2.0**-24)


def test_logsumexp_keepdims_and_promotion(backend):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for axis in (None, 1, (0, 2)):
        got = fastmle.logsumexp(a, axis=axis, keepdims=True, backend=backend)
        want = scipy.special.logsumexp(a, axis=axis, keepdims=True)
        assert_same(got, want, 1e-6)
    # promotion rules of scipy: int array weights upcast, Python scalars are weak
    assert fastmle.logsumexp(a, b=np.ones(4, dtype=np.int64), backend=backend).dtype == np.float64
    assert fastmle.logsumexp(a, b=2, backend=backend).dtype == np.float32
    assert fastmle.logsumexp(np.zeros((0, 3)), axis=1, return_sign=True, backend=backend)[1].shape == (0,)


@pytest.mark.parametrize("a_dtype, b_dtype", [
    (np.float32, np.bool_), (np.float32, np.int8), (np.float32, np.uint8), (np.float32, np.int16),
    (np.float16, np.bool_), (np.float16, np.int16), (np.int8, np.float32), (np.int64, np.float32),
    (np.float32, np.int64)])
def test_logsumexp_weights_promote_as_scipy(a_dtype, b_dtype, backend):
    """The result dtype comes from a's and b's own dtypes (a bool mask as
    weights keeps float32 input float32), as scipy's."""
    a = np.array([[1, 2, 3], [-1, 0, 4]], dtype=a_dtype)
    b = np.array([[1, 0, 1], [1, 1, 0]], dtype=b_dtype)
    for return_sign in (False, True):
        got = fastmle.logsumexp(a, axis=1, b=b, return_sign=return_sign, backend=backend)
        want = scipy.special.logsumexp(a, axis=1, b=b, return_sign=return_sign)
        for g, w in zip(*((got, want) if return_sign else ((got,), (want,)))):
            assert g.dtype == w.dtype, (g.dtype, w.dtype)
            assert_same(g, w, 1e-3 if w.dtype == np.float16 else 1e-6)


def test_object_arrays_as_scipy(backend):
    """scipy's softmax computes object arrays with their elements' methods
    (Decimal); its log_softmax and logsumexp raise TypeError for them."""
    from decimal import Decimal

    x = np.array([Decimal(1), Decimal(2), Decimal(3)], dtype=object)
    got = fastmle.softmax(x, backend=backend)
    assert got.dtype == object and list(got) == list(scipy.special.softmax(x))
    for name in ("log_softmax", "logsumexp"):
        with pytest.raises(TypeError):
            getattr(scipy.special, name)(x)
        with pytest.raises(TypeError):
            getattr(fastmle, name)(x, backend=backend)


@pytest.mark.parametrize("a, b", [
    ([np.inf, 1.0], [1 + 0j, 1 + 0j]), ([np.nan, 1.0], [1j, 1.0]), ([0.0, 1.0], [1j, -1j]),
    ([2.0, np.inf], [0j, 1 + 1j])])
def test_logsumexp_complex_sign_as_scipy(a, b, backend):
    """A non-finite complex sum has sign NaN + NaNj in scipy (x / |x|), not
    numpy's np.sign."""
    got = fastmle.logsumexp(np.array(a), b=np.array(b), return_sign=True, backend=backend)
    want = scipy.special.logsumexp(np.array(a), b=np.array(b), return_sign=True)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_out_argument(backend, dtype, rng):
    x = rng.standard_normal((40, 1000)).astype(dtype)
    for name in ("softmax", "log_softmax"):
        want = call(name, x, -1, "numpy")
        out = np.empty_like(x)
        assert getattr(fastmle, name)(x, axis=-1, out=out, backend=backend) is out
        assert_same(out, want, *tol(dtype))
        out_t = np.empty((1000, 40), dtype).T  # non-contiguous out
        getattr(fastmle, name)(x, axis=-1, out=out_t, backend=backend)
        assert_same(out_t, want, *tol(dtype))
        inplace = x.copy()
        getattr(fastmle, name)(inplace, axis=-1, out=inplace, backend=backend)
        assert_same(inplace, want, *tol(dtype))
        shifted = np.concatenate([x.ravel(), [0]]).astype(dtype)  # overlapping, offset by one
        getattr(fastmle, name)(shifted[:-1].reshape(x.shape), axis=-1, out=shifted[1:].reshape(x.shape),
                               backend=backend)
        assert_same(shifted[1:].reshape(x.shape), want, *tol(dtype))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_bad_input_raises_before_kernel(name, backend):
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="shape"):
        getattr(fastmle, name)(x, out=np.empty((4, 3)), backend=backend)
    with pytest.raises(TypeError, match="dtype"):
        getattr(fastmle, name)(x, out=np.empty((3, 4), np.float32), backend=backend)
    ro = np.empty((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        getattr(fastmle, name)(x, out=ro, backend=backend)
    with pytest.raises(TypeError):
        getattr(fastmle, name)(x, out=[[0.0] * 4] * 3, backend=backend)
    with pytest.raises(np.exceptions.AxisError):
        getattr(fastmle, name)(x, axis=2, backend=backend)
    with pytest.raises(TypeError, match="axis"):
        getattr(fastmle, name)(x, axis=1.5, backend=backend)
    with pytest.raises(TypeError, match="numeric"):
        getattr(fastmle, name)(np.array(["a", "b"]), backend=backend)


def test_logsumexp_bad_input(backend):
    with pytest.raises(ValueError):  # b not broadcastable
        fastmle.logsumexp(np.ones((3, 4)), b=np.ones(3), backend=backend)
    with pytest.raises(ValueError, match="repeated axis"):
        fastmle.logsumexp(np.ones(3), axis=(0, 0), backend=backend)


# ---- accuracy against long double ----

def _ld_softmax(x):
    xl = x.astype(np.longdouble)
    e = np.exp(xl - xl.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ld_logsumexp(x):
    xl = x.astype(np.longdouble)
    m = xl.max(axis=-1)
    return m + np.log(np.exp(xl - m[:, None]).sum(axis=-1))


@pytest.mark.parametrize("backend_name", ["c", "numba"])
def test_accuracy_float64(backend_name, rng):
    x = rng.standard_normal((64, 3000)) * 20
    eps = np.finfo(np.float64).eps
    sm = fastmle.softmax(x, axis=-1, backend=backend_name)
    ref = _ld_softmax(x)
    ok = ref > np.finfo(np.float64).tiny
    d = np.abs(x - x.max(axis=-1, keepdims=True))
    bound = 8 * eps + d * 2.0 ** -53  # documented: 8 ulp + rounding of x - max
    rel = np.abs((sm - ref) / ref).astype(float)
    assert (rel[ok] <= bound[ok]).all(), (rel[ok] / bound[ok]).max()
    lse = fastmle.logsumexp(x, axis=-1, backend=backend_name)
    scale = np.abs(x).max(axis=-1)
    assert (np.abs(lse - _ld_logsumexp(x)).astype(float) / scale).max() <= 8 * eps
    ls = fastmle.log_softmax(x, axis=-1, backend=backend_name)
    ref_ls = (x.astype(np.longdouble) - _ld_logsumexp(x)[:, None])
    assert (np.abs(ls - ref_ls).astype(float) / scale[:, None]).max() <= 8 * eps


@pytest.mark.parametrize("backend_name", ["c", "numba"])
def test_accuracy_float32(backend_name, rng):
    x = (rng.standard_normal((64, 3000)) * 10).astype(np.float32)
    eps = float(np.finfo(np.float32).eps)
    sm = fastmle.softmax(x, axis=-1, backend=backend_name)
    ref = _ld_softmax(x)
    ok = ref > np.finfo(np.float32).tiny
    d = np.abs(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    bound = 4 * eps + d * 2.0 ** -24  # documented: 4 ulp + rounding of x - max
    rel = (np.abs(sm.astype(np.longdouble) - ref) / ref).astype(float)
    assert (rel[ok] <= bound[ok]).all(), (rel[ok] / bound[ok]).max()
    # logsumexp: 4 ulp of the larger of max|x| and |result|; the rows of small
    # values (zeros, uniform in +-0.5) have results far larger than their max|x|
    small = np.vstack([np.zeros((2, 3000)), rng.uniform(-0.5, 0.5, (30, 3000))]).astype(np.float32)
    for data in (x, small):
        lse = fastmle.logsumexp(data, axis=-1, backend=backend_name)
        exact = _ld_logsumexp(data)
        err = np.abs(lse.astype(np.longdouble) - exact).astype(float)
        scale = np.maximum(np.abs(data).max(axis=-1), np.abs(exact).astype(float))
        assert (err <= 4 * eps * scale).all(), (err / scale).max() / eps


# ---- determinism across thread counts ----

@pytest.mark.parametrize("backend_name", ["c", "numba"])
@pytest.mark.parametrize("shape", [(300, 500), (2, 70000)])
def test_same_bits_for_any_thread_count(backend_name, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    results = []
    for n in (1, fastmle._dispatch.max_threads()):
        fastmle.set_num_threads(n)
        results.append([call(name, x, -1, backend_name) for name in FUNCS])
    fastmle.set_num_threads(fastmle._dispatch.max_threads())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---- hypothesis properties ----

def float_arrays(dtype):
    lim = 60.0 if dtype == np.float32 else 500.0
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40),
                      elements=st.floats(-lim, lim, width=32 if dtype == np.float32 else 64))


@pytest.mark.parametrize("backend_name", ["c", "numba"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_properties(backend_name, dt):
    @given(float_arrays(dt), st.floats(-20, 20))
    def check(x, shift):
        rtol = 1e-4 if dt == np.float32 else 1e-10
        sm = fastmle.softmax(x, axis=-1, backend=backend_name)
        np.testing.assert_allclose(sm.sum(axis=-1), 1.0, rtol=rtol)
        ls = fastmle.log_softmax(x, axis=-1, backend=backend_name)
        lse = fastmle.logsumexp(x, axis=-1, keepdims=True, backend=backend_name)
        scale = 1.0 + np.abs(x).max()
        np.testing.assert_allclose(ls, x - lse, atol=rtol * scale, rtol=0)
        xs = (x + dt(shift)).astype(dt)  # shift invariance (up to rounding of the shift)
        xs_ref = x.astype(np.float64) + float(dt(shift))
        np.testing.assert_allclose(fastmle.softmax(xs, axis=-1, backend=backend_name),
                                   scipy.special.softmax(xs_ref, axis=-1), rtol=0,
                                   atol=(1e-5 if dt == np.float32 else 1e-10))
        assert_same(fastmle.logsumexp(x, axis=-1, backend=backend_name),
                    fastmle.logsumexp(x, axis=-1, backend="numpy"), rtol, rtol * scale)
    check()


@pytest.mark.parametrize("level", [0, 1])
def test_c_lower_instruction_sets_match_reference(dtype, rng, level):
    """The clones below the one this CPU picks (0: baseline x86-64, picked
    on CPUs without AVX2+FMA; 1: AVX2+FMA, below AVX-512) are compiled
    separately: run them on the edge cases too."""
    from fastmle import _c
    if os.environ.get("FASTMLE_NO_C"):
        pytest.skip("FASTMLE_NO_C=1: C backend disabled on purpose")
    assert _c.lib is not None, _c.unavailable_reason
    if level >= _c.lib.fm_simd_level():
        pytest.skip(f"level {level} is this CPU's default (or above it): the rest of the suite runs it")
    with c_simd_level(level):
        assert _c.lib.fm_simd_level() == level
        for label, x in arrays(dtype, rng):
            for name in FUNCS:
                check_against_reference(name, x, -1, "c", f"isa-level-{level} " + label)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("n", [1000, 37])
def test_large_output_same_bits_as_pieces(name, n, backend, dtype, rng):
    """A large output (16 MiB or more: rows spread over the threads, the next
    row prefetched, and in C written with streaming stores) is bit-identical
    to computing the rows in small pieces, which C writes through the cache:
    into an out= that is not aligned, with rows of odd length, with
    non-finite rows, in place, and in every C instruction-set clone."""
    rows = (16 * 2**20) // (n * np.dtype(dtype).itemsize) + 3
    x = (rng.standard_normal((rows, n)) * 10).astype(dtype)
    x[5, 3], x[7, :], x[9, 2] = np.inf, -np.inf, np.nan
    f = getattr(fastmle, name)
    step = rows // 8 + 1  # pieces of about 2 MiB
    flat = np.empty(x.size + 1, dtype)
    out = flat[1:].reshape(x.shape)  # offset by one element
    for level in c_simd_levels() if backend == "c" else [None]:
        with c_simd_level(level) if level is not None else contextlib.nullcontext():
            pieces = np.concatenate([f(x[i:i + step], axis=-1, backend=backend) for i in range(0, rows, step)])
            out[:] = 0
            f(x, axis=-1, out=out, backend=backend)
            np.testing.assert_array_equal(out, pieces, err_msg=f"level {level}")
            in_place = x.copy()
            f(in_place, axis=-1, out=in_place, backend=backend)
            np.testing.assert_array_equal(in_place, pieces, err_msg=f"in place, level {level}")
    rtol, atol = tol(dtype)
    assert_same(out, call(name, x, -1, "numpy"), rtol, atol * 10, err=f"{name} {backend} large")


@pytest.mark.parametrize("n", [4, 40000], ids=["short", "long"])
def test_log_softmax_in_place_of_non_finite_rows(backend, dtype, n):
    # in place, the compiled kernels sum exponentials they do not store with
    # an exponential for arguments <= 0 only: rows whose max is +inf or NaN
    # (shifted by 0, as scipy does) must take the exact path instead
    x = np.zeros((4, n), dtype)
    x[0, 1], x[1, 2], x[2, :] = np.inf, np.nan, -np.inf
    x[3, :] = np.linspace(-1, 1, n)
    want = fastmle.log_softmax(x, axis=1, backend=backend)
    got = fastmle.log_softmax(x, axis=1, out=x, backend=backend)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[0, 1]) and np.all(got[0, [0, 2]] == -np.inf)
