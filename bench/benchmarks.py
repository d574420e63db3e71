"""asv benchmarks, generated from fastmle._registry: one class per kernel,
parametrized by backend, dtype and the kernel's shapes; time per call (lower
is better).

    asv machine --yes && asv run --python=same --quick
"""
import numpy as np

import fastmle
from fastmle._registry import KERNELS


def _make_suite(kernel):
    class Suite:
        params = (fastmle.available_backends(), list(kernel.dtypes),
                  ["x".join(map(str, s)) for s in kernel.shapes])
        param_names = ["backend", "dtype", "shape"]
        timeout = 600

        def setup(self, backend, dtype, shape):
            shape = tuple(int(v) for v in shape.split("x"))
            self.inputs = kernel.make_inputs(shape, np.dtype(dtype), np.random.default_rng(0))
            kernel.call(self.inputs, backend)  # compile / warm up outside the timing

        def time_call(self, backend, dtype, shape):
            kernel.call(self.inputs, backend)

    if kernel.quality is not None:
        def track_quality_ratio(self, backend, dtype, shape):
            """The kernel's figure of merit relative to its reference (higher is better)."""
            _, value, reference = kernel.quality(self.inputs, backend)
            return value / reference

        Suite.track_quality_ratio = track_quality_ratio

    Suite.__name__ = f"Time_{kernel.name}"
    return Suite


for _name, _kernel in KERNELS.items():
    globals()[f"Time_{_name}"] = _make_suite(_kernel)
