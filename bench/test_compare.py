"""pytest-benchmark comparisons: every backend against the numpy baseline,
scipy and torch (when installed), per kernel, dtype and shape, all driven by
fastmle._registry.

    pytest bench/test_compare.py --benchmark-enable --benchmark-group-by=group

The test suite runs this file with benchmarking disabled: each case once, on
the kernel's small smoke shape, so the comparisons cannot rot.
"""
import numpy as np
import pytest

from fastmle import available_backends
from fastmle._registry import KERNELS, available_peers, baseline

def _implementations(kernel):
    impls = [f"fastmle.{b}" for b in available_backends()] + ["numpy-" + kernel.baseline]
    return impls + list(available_peers(kernel))


CASES = [(k, impl, i, dtype) for k in KERNELS for impl in _implementations(KERNELS[k])
         for i in range(len(KERNELS[k].shapes)) for dtype in KERNELS[k].dtypes]


@pytest.mark.parametrize("name,impl,shape_index,dtype", CASES)
def test_compare(benchmark, name, impl, shape_index, dtype):
    kernel = KERNELS[name]
    shape = kernel.shapes[shape_index] if benchmark.enabled else kernel.smoke_shape
    inputs = kernel.make_inputs(shape, np.dtype(dtype), np.random.default_rng(0))
    if impl.startswith("fastmle."):
        fn = lambda: kernel.call(inputs, impl.split(".")[1])
    elif impl.startswith("numpy-"):
        fn = baseline(kernel, inputs)
    else:
        peer = kernel.peers[impl]
        fn = lambda: peer(inputs)
    benchmark.group = f"{name}-{dtype}-{'x'.join(map(str, shape))}"
    benchmark.extra_info["bytes"] = kernel.bytes_moved(shape, dtype)
    benchmark(fn)
    if benchmark.stats is not None:  # benchmarking enabled
        benchmark.extra_info["GB/s"] = kernel.bytes_moved(shape, dtype) / benchmark.stats.stats.median / 1e9
