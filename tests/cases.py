"""Edge-case arrays for the kernel tests, in the spirit of bottleneck's
generators: odd sizes around the SIMD width, a row longer than the chunk
size, many tiny rows, special values, and non-contiguous views."""
import contextlib
import itertools

import numpy as np

SHAPES = [(1,), (7,), (8,), (9,), (33,), (3, 5), (4, 1), (1, 65), (2, 3, 4), (70, 1000), (2, 40000)]


def special_rows(n, dtype):
    """Rows with inf, -inf, NaN, all -inf, huge and tiny values (length n >= 3)."""
    big = 80.0 if dtype == np.float32 else 700.0
    rows = [
        np.full(n, -np.inf),
        np.r_[np.inf, np.zeros(n - 1)],
        np.r_[np.nan, np.zeros(n - 1)],
        np.r_[-np.inf, np.linspace(-1, 1, n - 1)],
        np.r_[big, -big, np.linspace(-big, big, n - 2)],
        np.r_[np.inf, -np.inf, np.zeros(n - 2)],
        np.full(n, 3.0),
        np.r_[1e-30, np.full(n - 1, -1e4)],
    ]
    return np.array(rows, dtype=dtype)


def arrays(dtype, rng):
    """(label, array) pairs covering layouts and values for one dtype."""
    out = []
    for shape in SHAPES:
        out.append((f"normal{shape}", (rng.standard_normal(shape) * 5).astype(dtype)))
    out.append(("special", special_rows(11, dtype)))
    out.append(("special-long", special_rows(40000, dtype)))
    base = (rng.standard_normal((9, 14)) * 3).astype(dtype)
    out.append(("transposed", base.T))
    out.append(("strided", base[::2, ::3]))
    out.append(("fortran", np.asfortranarray(base)))
    out.append(("empty(0,5)", np.zeros((0, 5), dtype)))
    out.append(("empty(5,0)", np.zeros((5, 0), dtype)))
    return out


def axes_for(ndim):
    """Every single axis (both signs), None, and a tuple where it exists."""
    axes = [None] + list(range(ndim)) + [-1]
    if ndim >= 2:
        axes.append((0, ndim - 1))
    return axes


def assert_same(actual, desired, rtol, atol=0.0, err=""):
    """Equal NaN/inf pattern, finite values close; dtype must match."""
    actual = np.asarray(actual)
    desired = np.asarray(desired)
    assert actual.shape == desired.shape, f"{err}: shape {actual.shape} != {desired.shape}"
    assert actual.dtype == desired.dtype, f"{err}: dtype {actual.dtype} != {desired.dtype}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(desired), err_msg=err + " (NaN pattern)")
    inf = np.isinf(desired)
    np.testing.assert_array_equal(actual[inf], desired[inf], err_msg=err + " (inf)")
    fin = np.isfinite(desired)
    np.testing.assert_allclose(actual[fin], desired[fin], rtol=rtol, atol=atol, err_msg=err)


def option_grid(n_classes, rng, dtype):
    """(label, kwargs) over class weights, label smoothing and reductions."""
    weight = (rng.random(n_classes) + 0.1).astype(dtype)
    for w, eps, red in itertools.product([None, weight], [0.0, 0.15], ["mean", "sum", "none"]):
        yield f"w={w is not None} eps={eps} {red}", dict(weight=w, label_smoothing=eps, reduction=red)


def hard_targets(rows, n_classes, rng):
    t = rng.integers(0, n_classes, rows)
    t[::4] = -100  # some ignored rows
    return t


def c_simd_levels():
    """Every instruction-set clone of the C backend this CPU runs: 0 baseline
    x86-64, 1 AVX2+FMA, 2 AVX-512 (see csrc/runtime.c)."""
    from fastmle import _c
    old = _c.lib.fm_simd_level()
    best = _c.lib.fm_set_simd_level(99)  # clamped to the best supported
    _c.lib.fm_set_simd_level(old)
    return range(best + 1)


@contextlib.contextmanager
def c_simd_level(level):
    """Run the C kernels' clone of the given level inside the block."""
    from fastmle import _c
    old = _c.lib.fm_simd_level()
    assert _c.lib.fm_set_simd_level(level) == level
    try:
        yield
    finally:
        _c.lib.fm_set_simd_level(old)
