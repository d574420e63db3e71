"""fastmle.show_config(): what this installation can run, and how."""
import importlib.util
import platform
import sys

import numpy as np

from . import _dispatch


def installed(package):
    """Whether package can be imported, without importing it (a broken or
    blocked installation counts as absent)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def config():
    """The facts show_config prints, as a dict."""
    from . import _c

    try:
        default = _dispatch.get_backend()
    except ValueError as error:  # a bad FASTMLE_BACKEND: the report says so rather than failing
        default = f"none: {error}"
    info = {
        "fastmle": __import__("fastmle").__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "backends": _dispatch.available_backends(),
        "default backend": default,
        "threads": _dispatch.get_num_threads(),
    }
    if _c.lib is not None:
        info["c"] = (f"available; SIMD {_c.ffi.string(_c.lib.fm_simd_name()).decode()}; "
                     f"OpenMP {'on' if _c.lib.fm_openmp_enabled() else 'off'}")
    else:
        info["c"] = f"unavailable: {_c.unavailable_reason}"
    reason = _dispatch.unavailable_reason("numba")
    if reason is None:
        import numba

        layer = numba.config.THREADING_LAYER
        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            layer = f"not started yet (priority {', '.join(numba.config.THREADING_LAYER_PRIORITY)})"
        info["numba"] = f"{numba.__version__}; threading layer {layer}"
    else:
        info["numba"] = f"unavailable: {reason}"
    from . import _blas

    info["blas (fisher)"] = _blas.describe()
    return info


def show_config():
    """Print versions, available backends, SIMD level, threads, threading
    layer, and the BLAS the Fisher kernels call.

    >>> import fastmle
    >>> fastmle.show_config()  # doctest: +ELLIPSIS
             fastmle: ...
    """
    for key, value in config().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:>16}: {value}")
