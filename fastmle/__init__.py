"""fastmle: fast, exact numerical kernels for maximum-likelihood training on the CPU.

Every kernel exists as C (cffi) and Numba code behind one dispatch API, and is
checked against a plain-numpy reference.

>>> import numpy as np, fastmle
>>> fastmle.softmax(np.array([0.0, 0.0]))
array([0.5, 0.5])
"""
from ._dispatch import (available_backends, backend, get_backend, get_num_threads,
                        set_backend, set_num_threads)
from ._config import show_config
from .special import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

__all__ = [
    "logsumexp", "softmax", "log_softmax",
    "available_backends", "backend", "get_backend", "set_backend",
    "get_num_threads", "set_num_threads", "show_config", "__version__",
]
