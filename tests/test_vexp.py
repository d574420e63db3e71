"""The vectorized exponentials of both compiled backends against numpy, over
the whole float range, special values and subnormal results."""
import os

import numpy as np
import pytest
from numba import njit

from fastmle import _c
from fastmle._numba import vexp as numba_vexp

from cases import c_simd_level, c_simd_levels


def grid(dtype):
    fi = np.finfo(dtype)
    lo, hi = (-110.0, 95.0) if dtype == np.float32 else (-750.0, 715.0)
    x = np.concatenate([
        np.linspace(lo, hi, 1_000_003),
        np.random.default_rng(0).uniform(-5, 5, 100_000),
        [np.inf, -np.inf, np.nan, 0.0, -0.0, fi.max, -fi.max, fi.tiny, -fi.tiny, fi.smallest_subnormal],
        np.log(np.array([fi.max, fi.tiny, fi.smallest_subnormal], dtype=np.float64)),
    ])
    return x.astype(dtype)


def ulps(actual, desired, dtype):
    """Error in units of the spacing at the true value (subnormals: absolute)."""
    tiny = np.finfo(dtype).tiny
    spacing = np.spacing(np.maximum(np.abs(desired), tiny).astype(dtype)).astype(np.float64)
    return np.abs(actual.astype(np.float64) - desired) / spacing


def every_build(numba_fn, c_fn):
    """(name, fn(x, out)): Numba's function, then C's at each instruction set."""
    yield "numba", numba_fn
    if _c.lib is not None:
        for level in c_simd_levels():
            def at_level(x, out, level=level):
                with c_simd_level(level):
                    c_fn(x, out)
            yield f"c-simd{level}", at_level


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_within_1_5_ulp(dtype):
    x = grid(dtype)
    with np.errstate(over="ignore", under="ignore"):
        desired = np.exp(x.astype(np.longdouble)).astype(np.float64)  # true value, rounded once
        desired_t = np.exp(x.astype(np.longdouble)).astype(dtype)
    tested = []
    for name, exp in every_build(numba_vexp.exp, _c.exp):
        out = np.empty_like(x)
        exp(x, out)
        special = ~np.isfinite(desired_t) | (desired_t == 0)
        np.testing.assert_array_equal(out[special], desired_t[special], err_msg=name)
        err = ulps(out[~special], desired[~special], dtype)
        assert err.max() <= 1.5, (name, float(err.max()), x[~special][err.argmax()])
        tested.append(name)
    assert "numba" in tested and (_c.lib is None or f"c-simd{_c.lib.fm_simd_level()}" in tested)


def c_required():
    """Whether the C backend must be tested (it may only be missing when
    FASTMLE_NO_C=1 says it was left out on purpose)."""
    if _c.lib is None:
        assert os.environ.get("FASTMLE_NO_C"), _c.unavailable_reason
        return False
    return True


def numba_map(vexp_fn):
    """out[:] = vexp_fn(x) compiled with Numba (vexp_fn: a function of vexp.py)."""
    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = vexp_fn(x[i])
    return apply


def flush_exps():
    yield "numba", numba_map(numba_vexp.vexpf_nonpos_flush)
    if c_required():
        yield "c", _c.exp_nonpos_flush


def test_flushing_exp_for_sums():
    """The float32 exponential of logsumexp's sums (arguments x - max <= 0):
    bit-identical to the full one wherever the result is at least FLT_MIN,
    0 or the full result below, NaN for NaN."""
    x = np.concatenate([np.linspace(-110.0, 0.0, 1_000_003), [-np.inf, np.nan, -0.0, -87.3365479, -87.33654]])
    x = x.astype(np.float32)
    full = np.empty_like(x)
    numba_vexp.exp(x, full)
    normal = full >= np.finfo(np.float32).tiny
    for name, exp in flush_exps():
        out = np.full_like(x, 7.0)
        exp(x, out)
        np.testing.assert_array_equal(out[normal], full[normal], err_msg=name)
        tiny = ~normal & ~np.isnan(x)
        assert np.all((out[tiny] == 0) | (out[tiny] == full[tiny])), name
        assert np.all(out[x < -87.34] == 0), name
        assert np.isnan(out[np.isnan(x)]).all(), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_range_exp_same_bits(dtype):
    """The kernels' exponential for rows of small range (max - min within the
    normal range): the same bits as the full one on [lowest, 0], per backend
    and instruction set."""
    lowest = -87.3365 if dtype == np.float32 else -708.39
    x = np.concatenate([np.linspace(lowest, 0.0, 1_000_003), [lowest, -0.0, np.nan]]).astype(dtype)
    full, out = np.empty_like(x), np.empty_like(x)
    numba_vexp.exp(x, full)
    numba_map(numba_vexp.vexp_normal_same)(x, out)
    np.testing.assert_array_equal(out, full, err_msg="numba")
    if not c_required():
        return
    for level in c_simd_levels():  # against the full exponential of the same instruction set
        with c_simd_level(level):
            _c.exp(x, full)
            _c.exp_normal(x, out)
        np.testing.assert_array_equal(out, full, err_msg=f"c simd{level}")


def test_log_within_1_5_ulp():
    """The kernels' vectorized logarithm (entropy, kl_div), Numba and every C
    instruction set: within 1.5 ulp of the exact value over the whole
    float64 range, subnormals, the neighbourhood of 1 and the mantissa's
    sqrt(2) split; special values as numpy's."""
    rng = np.random.default_rng(0)
    fi = np.finfo(np.float64)
    x = np.concatenate([
        rng.uniform(0, 1, 500_000), np.exp(rng.uniform(-745, 709.7, 500_000)),
        1 + rng.uniform(-1e-6, 1e-6, 100_000), fi.tiny * rng.uniform(0, 1, 100_000),
        np.sqrt(2) * (1 + np.arange(-1000, 1000) * fi.eps), np.sqrt(0.5) * (1 + np.arange(-1000, 1000) * fi.eps),
        [0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -fi.tiny, fi.max, fi.tiny, fi.smallest_subnormal, 1.0, 2.0, 0.5],
    ])
    with np.errstate(divide="ignore", invalid="ignore"):
        desired = np.log(x.astype(np.longdouble))
        desired_t = desired.astype(np.float64)
    special = ~np.isfinite(desired_t)
    tested = []
    for name, log in every_build(numba_vexp.log, _c.log):
        out = np.empty_like(x)
        log(x, out)
        np.testing.assert_array_equal(out[special], desired_t[special], err_msg=name)
        spacing = np.spacing(np.maximum(np.abs(desired_t[~special]), fi.tiny))
        err = np.abs((out[~special] - desired[~special]).astype(np.float64)) / spacing
        assert err.max() <= 1.5, (name, float(err.max()), x[~special][err.argmax()])
        tested.append(name)
    assert "numba" in tested and (not c_required() or f"c-simd{_c.lib.fm_simd_level()}" in tested)


def test_the_test_hooks_refuse_a_short_out():
    # they loop over x: an out shorter than x was written past its end
    x = np.full(1000, 2.0)
    for name, fn in [*every_build(numba_vexp.exp, _c.exp), *every_build(numba_vexp.log, _c.log)]:
        with pytest.raises(ValueError, match="length"):
            fn(x, np.empty(1))
