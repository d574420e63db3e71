"""The BLAS numpy uses, for the compiled kernels' large matrix products.

FisherAccumulator's matrix-sized sums are symmetric rank-k updates
C += alpha A^T A (syrk: S^T diag(w) S), with thousands of multiply-adds per
element read (the exact Fisher of glm_fisher uses the kernels' own tiled
loops, which do half the multiply-adds of the syrk form). A register- and
cache-blocked BLAS runs those several times faster than plain loops, and numpy already carries one (the OpenBLAS in
numpy's wheels, or the system BLAS numpy was built against). This module
finds its CBLAS functions in the running process and hands their addresses
to both compiled backends: the C extension gets them through
``fm_set_blas``, the Numba kernels call them by a fixed symbol name
registered with llvmlite (so their on-disk cache stays valid across
processes).

Nothing here is needed to import fastmle: without a usable BLAS (none found,
or ``FASTMLE_NO_BLAS=1``), the kernels run their own loops, which compute the
same sums more slowly. ``fastmle.show_config()`` says which is in use. The
BLAS runs on its own threads: control them with threadpoolctl (or
OPENBLAS_NUM_THREADS), as for numpy itself.
"""
import contextlib
import ctypes
import functools
import os
import threading

import numpy as np

# (prefix, suffix, 64-bit integers) of CBLAS symbol names, most specific first:
# numpy's wheels (scipy-openblas64), other ILP64 builds, plain LP64 CBLAS
_NAMINGS = (("scipy_cblas_", "64_", True), ("cblas_", "64_", True), ("cblas_", "", False))
FUNCTIONS = ("dsyrk", "ssyrk")

_state = {"found": None, "reason": None, "enabled": not os.environ.get("FASTMLE_NO_BLAS")}


def _mapped_libraries():
    """Shared objects mapped into this process that may export CBLAS: the
    BLAS in numpy's wheel first, then any other whose name says BLAS."""
    import numpy.linalg  # noqa: F401  (numpy's BLAS is loaded with it)

    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and ".so" in fields[5] and fields[5].strip() not in paths:
                    paths.append(fields[5].strip())
    except OSError:  # no procfs: look beside numpy only
        pass
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    libs = os.path.join(numpy_dir, "numpy.libs")
    if os.path.isdir(libs):
        paths += [os.path.join(libs, f) for f in sorted(os.listdir(libs)) if "blas" in f.lower()]
    def blas_named(p):
        return any(k in os.path.basename(p).lower() for k in ("blas", "mkl"))
    numpy_own = [p for p in paths if p.startswith(os.path.join(numpy_dir, "numpy"))]
    ranked = ([p for p in numpy_own if blas_named(p)] + [p for p in paths if blas_named(p)]
              + numpy_own)  # last: numpy's modules, whose dependencies dlsym also searches
    return list(dict.fromkeys(ranked))


def _symbols(path):
    """{function: address}, int64 for the first naming the library exports
    completely, or None."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for prefix, suffix, int64 in _NAMINGS:
        try:
            found = {f: ctypes.cast(getattr(lib, prefix + f + suffix), ctypes.c_void_p).value
                     for f in FUNCTIONS}
        except AttributeError:
            continue
        return found, int64, prefix + "{}" + suffix
    return None


def find():
    """The BLAS found, as a dict (path, symbols naming, int64, addresses),
    or None with :func:`reason` saying why. Looked up once."""
    if _state["found"] is None and _state["reason"] is None:
        for path in _mapped_libraries():
            got = _symbols(path)
            if got is not None:
                addresses, int64, naming = got
                _state["found"] = {"path": path, "naming": naming, "int64": int64,
                                   "addresses": addresses}
                break
        else:
            _state["reason"] = "no CBLAS library with dsyrk and ssyrk found in this process"
    return _state["found"]


def reason():
    find()
    return _state["reason"]


def enabled():
    """Whether the kernels call the BLAS now (found, and not disabled)."""
    return _state["enabled"] and find() is not None


def set_enabled(flag):
    """Use the BLAS (True, when found) or the kernels' own loops (False), in
    both compiled backends: for tests and for measuring the difference."""
    _state["enabled"] = bool(flag)
    _register_c()


def describe():
    """One line for show_config()."""
    blas = find()
    if blas is None:
        return f"own loops ({reason()})"
    where = f"{os.path.basename(blas['path'])} ({blas['naming'].format('*')}, " \
            f"{'ILP64' if blas['int64'] else 'LP64'})"
    return where if _state["enabled"] else f"own loops (disabled; found {where})"


# OpenBLAS's thread-count functions, by the names its builds export
_THREAD_COUNT_NAMES = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                       ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                       ("openblas_get_num_threads", "openblas_set_num_threads"))
_one_thread = {"lock": threading.Lock(), "depth": 0, "previous": None}


@functools.lru_cache(maxsize=None)
def _thread_count_functions():
    """(get, set) of the found BLAS's thread count, or None (not OpenBLAS).
    Looked up once."""
    blas = find()
    if blas is None:
        return None
    try:
        lib = ctypes.CDLL(blas["path"])
    except OSError:
        return None
    for get_name, set_name in _THREAD_COUNT_NAMES:
        if hasattr(lib, get_name) and hasattr(lib, set_name):
            get, set_ = getattr(lib, get_name), getattr(lib, set_name)
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            return get, set_
    return None


@contextlib.contextmanager
def one_thread():
    """numpy's BLAS (OpenBLAS) on the calling thread only inside the block;
    its thread count is restored when the last such block ends. Between the
    compiled kernels' calls, small factorizations on several BLAS threads
    cost the kernels dearly: OpenBLAS's workers keep spinning after each
    call, on the cores the kernels' own threads need next (fit_mle on
    100,000 x 50, 5 classes: 668-864 ms against 346-355 with one BLAS
    thread). Other BLAS libraries are left as they are. Like threadpoolctl,
    this changes a process-wide setting: BLAS calls made meanwhile by other
    Python threads also run on one thread."""
    functions = _thread_count_functions()
    if functions is None:
        yield
        return
    get, set_ = functions
    state = _one_thread
    with state["lock"]:
        if state["depth"] == 0:
            state["previous"] = get()
            set_(1)
        state["depth"] += 1
    try:
        yield
    finally:
        with state["lock"]:
            state["depth"] -= 1
            if state["depth"] == 0:
                set_(state["previous"])


def _register_c():
    from . import _c

    if _c.lib is None:
        return
    blas = find() if _state["enabled"] else None
    if blas is None:
        _c.lib.fm_set_blas(_c.ffi.NULL, _c.ffi.NULL, 0)
    else:
        a = blas["addresses"]
        _c.lib.fm_set_blas(*[_c.ffi.cast("void *", a[f]) for f in FUNCTIONS], int(blas["int64"]))
