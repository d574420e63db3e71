"""Every instruction-set clone of the C backend. The rest of the suite runs
the clone this CPU picks at load (the highest of baseline x86-64, AVX2+FMA,
AVX-512 it supports); here each lower one runs one valid call of every
public function (tests/public_calls.py) and must agree with it to rounding.
The exponentials themselves are checked at every level in test_vexp.py."""
import os

import numpy as np
import pytest

from fastmle import _c
from cases import c_simd_level
from public_calls import public_calls, values


def c_levels():
    """(the default level, the levels below it)"""
    if os.environ.get("FASTMLE_NO_C"):
        pytest.skip("FASTMLE_NO_C=1: C backend disabled on purpose")
    assert _c.lib is not None, _c.unavailable_reason
    best = _c.lib.fm_simd_level()
    return best, list(range(best))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_lower_simd_level_agrees_with_the_default(dtype):
    best, lower = c_levels()
    if not lower:
        pytest.skip("this CPU runs only the baseline x86-64 clones (or the build is not multi-versioned)")
    rtol, atol = (2e-4, 1e-5) if dtype == np.float32 else (1e-9, 1e-12)
    for call in public_calls(dtype, np.random.default_rng(7)):
        want = values(call("c"))
        for level in lower:
            with c_simd_level(level):
                got = values(call("c"))
            assert len(got) == len(want), call.name
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{call.name} at level {level}")
    assert _c.lib.fm_simd_level() == best
