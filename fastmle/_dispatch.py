"""Backend registry and selection, and the one thread-count setting.

Backends: "c" (cffi extension), "numba", "numpy" (the reference). "auto"
takes the first available of c, numba, numpy. The choice comes from, in
order: the call's ``backend=`` argument, the innermost ``with
fastmle.backend(...)`` block (per thread), ``fastmle.set_backend(...)``,
and the FASTMLE_BACKEND environment variable.

Both compiled backends run on the same GNU OpenMP runtime when Numba's "omp"
threading layer is available (it is selected here unless the user chose a
layer): C's OpenMP regions and Numba's parallel loops then share one pool of
threads instead of oversubscribing the cores.
"""
import contextlib
import importlib
import operator
import os
import threading

import numpy as np

BACKENDS = ("c", "numba", "numpy")
_state = threading.local()
_global = {"backend": None}  # set_backend(); None means FASTMLE_BACKEND or "auto"
_reasons = {}  # backend -> why it is unavailable


def _numba_available():
    if "numba" in _reasons:
        return _reasons["numba"] is None
    try:
        import numba

        if "NUMBA_THREADING_LAYER" not in os.environ:
            numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
        _reasons["numba"] = None
    except Exception as exc:  # numba missing or broken for this numpy
        _reasons["numba"] = f"cannot import numba ({exc})"
    return _reasons["numba"] is None


def available_backends():
    """Names of the backends that can run here, fastest first.

    >>> import fastmle
    >>> fastmle.available_backends()[-1]   # the numpy reference is always there
    'numpy'
    """
    from . import _c

    found = []
    if _c.lib is not None:
        found.append("c")
    else:
        _reasons["c"] = _c.unavailable_reason
    if _numba_available():
        found.append("numba")
    found.append("numpy")
    return found


def unavailable_reason(name):
    available_backends()
    return _reasons.get(name)


def _check(name):
    if name == "auto":
        return name
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(available_backends())} (or 'auto')")
    if name not in available_backends():
        raise ValueError(f"backend {name!r} is unavailable ({_reasons.get(name)}); "
                         f"available: {', '.join(available_backends())}")
    return name


def set_backend(name):
    """Choose the backend for every later call, over FASTMLE_BACKEND
    (``"auto"``: the fastest available, whatever FASTMLE_BACKEND says).

    >>> import fastmle
    >>> before = fastmle.get_backend()
    >>> fastmle.set_backend("numpy"); fastmle.get_backend()
    'numpy'
    >>> fastmle.set_backend(before)
    """
    _global["backend"] = _check(name)


def get_backend():
    """The backend a call without ``backend=`` would use now (resolved, never "auto").

    >>> import fastmle
    >>> fastmle.get_backend() in fastmle.available_backends()
    True
    """
    return resolve(None)


@contextlib.contextmanager
def backend(name):
    """``with fastmle.backend("numba"): ...`` uses that backend in the block (this thread).

    >>> import numpy as np, fastmle
    >>> with fastmle.backend("numpy"):
    ...     fastmle.get_backend(), float(fastmle.logsumexp(np.zeros(4)))
    ('numpy', 1.3862943611198906)
    """
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    stack.append(_check(name))
    try:
        yield
    finally:
        stack.pop()


def resolve(name):
    """Turn a per-call ``backend=`` value into a concrete available backend."""
    if name is None:
        stack = getattr(_state, "stack", None)
        if stack:
            name = stack[-1]
        elif _global["backend"] is not None:
            name = _global["backend"]
        else:
            name = os.environ.get("FASTMLE_BACKEND", "auto")
            try:
                name = _check(name)
            except ValueError as error:
                raise ValueError(f"FASTMLE_BACKEND: {error}") from None
    name = _check(name)
    if name == "auto":
        return available_backends()[0]
    return name


_modules = {}


_numba_guard = {}


def _numba_call_lock():
    """None when Numba's threading layer is thread-safe (omp, tbb); else a
    lock that makes Python threads take turns in the Numba kernels. Numba's
    "workqueue" layer (its fallback when neither OpenMP nor TBB loads, or
    chosen with NUMBA_THREADING_LAYER) aborts the whole process when two
    threads enter parallel code at once."""
    if "lock" not in _numba_guard:
        try:
            from numba.np.ufunc import parallel

            parallel._launch_threads()  # what the first parallel call would do: picks the layer
            layer = parallel.threading_layer()
        except Exception:  # numba internals moved: assume the worst
            layer = None
        _numba_guard["lock"] = None if layer in ("omp", "tbb") else threading.Lock()
    return _numba_guard["lock"]


class _WriteableInputs:
    """A Numba kernel module whose functions copy read-only array arguments
    first. The kernels are compiled eagerly for writeable arrays only (a
    read-only signature for each would double the compile time), so a
    read-only input (a memory-mapped file opened "r", np.broadcast_to, a
    frozen array, the memmaps joblib hands to GridSearchCV's workers) is
    copied once per call instead of failing to match a signature."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if not callable(fn):
            return fn
        lock = _numba_call_lock()

        def call(*args):
            args = [np.array(a) if isinstance(a, np.ndarray) and not a.flags.writeable else a for a in args]
            if lock is None:
                return fn(*args)
            with lock:
                return fn(*args)
        call.__name__ = name
        call.__doc__ = fn.__doc__
        setattr(self, name, call)  # looked up once
        return call


def kernels(backend_name, family):
    """The module holding `family`'s kernels for a concrete backend.

    Numba families are imported (and so compiled or loaded from cache) on
    first use only."""
    key = (backend_name, family)
    mod = _modules.get(key)
    if mod is None:
        if backend_name == "c":
            from . import _c as mod  # one module for every family
        elif backend_name == "numba":
            mod = _WriteableInputs(importlib.import_module(f"fastmle._numba.{family}"))
        else:
            mod = importlib.import_module(f"fastmle.reference.{family}")
        _modules[key] = mod
    if backend_name == "numba":
        _sync_numba_threads()
    return mod


# the kernel families: a module of that name in reference/, _numba/ and csrc/
FAMILIES = ("special", "losses", "glm", "fisher")


# How compile_kernels shares the families among worker processes, balanced
# by their compile times on this project's 2-core machines (special 43 s,
# losses 40, glm 121, fisher 47): every family imports special, so each
# worker compiles it too; 2 workers took 180 s where one process took 252.
_COMPILE_GROUPS = (("glm",), ("losses", "fisher"))


def compile_kernels(processes=None):
    """Compile every Numba kernel now (or load it from Numba's cache).

    The Numba kernels have eager signatures and are compiled when their
    family is first used; the first time after installing, that takes
    minutes (about 3 on two cores), and later runs load the cache in under
    a second. Call this once after installing (``python -m fastmle
    compile`` does) to pay that time up front, as ``make install`` does.
    Unless this process has loaded a family already, or `processes`
    (default: the usable cores) is 1, two fresh interpreters compile the
    families into Numba's cache side by side first, and this process then
    loads them. Returns the families compiled; without Numba, none.

    >>> import fastmle._dispatch as d
    >>> d.compile_kernels() if "numba" in d.available_backends() else d.FAMILIES
    ('special', 'losses', 'glm', 'fisher')
    """
    if "numba" not in available_backends():
        return ()
    if (processes or _default_threads()) > 1 and not any(("numba", family) in _modules for family in FAMILIES):
        _compile_in_subprocesses(_COMPILE_GROUPS)
    for family in FAMILIES:
        kernels("numba", family)  # loads what the workers cached (compiles what they could not)
    return FAMILIES


def _compile_in_subprocesses(groups):
    """Import each group's Numba modules in its own fresh interpreter, all
    at once, to fill Numba's cache. Fresh interpreters, not multiprocessing:
    they do not re-run the caller's main script. Returns their exit codes;
    compile_kernels ignores them: after a failed worker it compiles (and
    reports the error) itself."""
    import site
    import subprocess
    import sys

    # The workers must import this fastmle: an installed one they find as
    # the caller did; one elsewhere (a source tree) through PYTHONPATH, which
    # is not given site-packages, whose packages would then come before the
    # standard library's. `-c` puts the working folder first on sys.path,
    # and a source tree there (as in CI, testing an installed copy from its
    # clone) would be compiled instead: the workers drop that entry ('').
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    if package_root not in [*site.getsitepackages(), site.getusersitepackages()]:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    procs = [subprocess.Popen([sys.executable, "-c", "import sys; sys.path[:] = filter(None, sys.path); "
                               + "".join(f"import fastmle._numba.{f}; " for f in group)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for group in groups]
    return [proc.wait() for proc in procs]


# ---- threads ----

def _default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_threads = {"n": None}


def set_num_threads(n):
    """Threads used by both compiled backends (1 <= n <= available cores).

    >>> import fastmle
    >>> before = fastmle.get_num_threads()
    >>> fastmle.set_num_threads(1); fastmle.get_num_threads()
    1
    >>> fastmle.set_num_threads(before)
    """
    limit = max_threads()
    try:  # any integer, numpy's too, but not a bool
        count = None if isinstance(n, (bool, np.bool_)) else operator.index(n)
    except TypeError:
        count = None
    if count is None or not 1 <= count <= limit:
        raise ValueError(f"number of threads must be an integer in [1, {limit}], got {n!r}")
    if count > 1 and _threads.get("forked"):  # else the next C parallel region hangs
        raise ValueError(f"set_num_threads({count}) in a forked process: the compiled kernels run on one "
                         "thread there (GNU OpenMP cannot start threads in a child forked after they started "
                         "in the parent); use multiprocessing's 'spawn' or 'forkserver' start method for "
                         "threads in workers")
    n = int(count)
    _threads["n"] = n
    from . import _c

    if _c.lib is not None:
        _c.lib.fm_set_num_threads(n)


def get_num_threads():
    """Threads of both compiled backends: set_num_threads's count, else
    max_threads(). OMP_NUM_THREADS is not read: dask.distributed sets it
    to 1 in the process that starts a LocalCluster, which would leave the
    client's own kernels on one thread.

    >>> import fastmle
    >>> 1 <= fastmle.get_num_threads()
    True
    """
    return _threads["n"] or max_threads()


def max_threads():
    if _numba_available():
        import numba

        return numba.config.NUMBA_NUM_THREADS
    return _default_threads()


def _after_fork_in_child():
    """In a process forked (e.g. by multiprocessing's default "fork" start
    method) from one that imported fastmle: GNU OpenMP cannot start
    threads in a child forked after its threads started (its C parallel
    regions would hang), and whether they had is not tracked, so the C
    kernels run on one thread in every forked child; and Numba's OpenMP layer aborts
    the child outright, so the "numba" backend becomes unavailable with the
    reason, a clear ValueError instead of a dead worker."""
    _threads["n"] = 1
    _threads["forked"] = True  # set_num_threads refuses more
    from . import _c

    if _c.lib is not None:
        _c.lib.fm_set_num_threads(1)
    numba_layer = None
    try:
        from numba.np.ufunc import parallel

        if parallel._is_initialized:
            import numba

            numba_layer = numba.threading_layer()
    except Exception:  # numba missing, or internals moved: nothing started here
        pass
    if numba_layer == "omp":
        _reasons["numba"] = ("Numba's OpenMP threading layer cannot run in a process forked after it "
                             "started; use multiprocessing's 'spawn' or 'forkserver' start method, or "
                             "NUMBA_THREADING_LAYER=tbb")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _sync_numba_threads():
    # numba.set_num_threads is thread-local: apply ours in the calling thread
    import numba

    n = get_num_threads()
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
