"""The Numba kernels written with explicit vectors (fastmle/_numba/simd.py:
the SGD products in glm.py, the exact Fisher's tiles in fisher.py) at the
other vector width. The rest of the suite compiles them for this CPU; on an
AVX-512 machine that is 64-byte vectors, so their 32-byte (AVX2) code, the
blocks and branches a CPU without AVX-512 runs, would go untested. Here a
subprocess compiles them for this CPU with AVX-512 switched off (its own
Numba cache) and reruns the tests that exercise them; conftest.py starts it
when this test is collected, so that it runs beside the rest of the suite."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from child import run_python

HERE = os.path.dirname(os.path.abspath(__file__))

# the tests that reach every explicit-vector kernel: the vector operations,
# the threaded and one-thread SGD epoch against the reference (d = 64 and
# 100: whole vectors and a tail), the two compiled trajectories, and the
# exact Fisher of every family against the reference
TESTS = ["test_simd.py",
         "test_glm.py::test_threaded_sgd_epoch_is_deterministic_and_matches_reference",
         "test_sgd.py::test_compiled_backends_walk_the_same_trajectory",
         "test_fisher_kernels.py::test_glm_fisher_matches_reference"]


def _features_without_avx512():
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten().split(",")
    if "+avx512f" not in features:
        return None
    return ",".join(f.replace("+avx512", "-avx512").replace("+evex512", "-evex512") for f in features)


def _env(features, folder):
    return dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=features,
                NUMBA_CACHE_DIR=os.path.join(folder, "numba-cache"))


# The 32-byte run compiles its kernels from scratch (about 3 minutes on one
# core), so conftest starts it as soon as this test is collected and the
# rest of the suite runs beside it on the other core; the test then waits
# for its verdict.
_background = {}  # "proc": the run's Popen, "folder": its working folder and output


def start_in_background():
    """Start the 32-byte run now (nothing on a CPU without AVX-512)."""
    features = _features_without_avx512()
    if features is None or _background:
        return
    folder = tempfile.mkdtemp(prefix="fastmle-32-byte-")
    output = open(os.path.join(folder, "output.txt"), "w")
    # at the lowest priority, so that it takes only the core the suite
    # leaves idle (at the same priority the suite's spinning thread pools
    # and the compiler slowed each other: 9 min for the suite, not 6.5)
    lowest_priority = ["nice", "-n", "19"] if shutil.which("nice") else []
    command = [*lowest_priority, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--import-mode=importlib", *[os.path.join(HERE, t) for t in TESTS]]
    # the working folder is not the source tree: `python -m` puts it first on
    # sys.path, and the sources there lack the installed package's C extension
    _background.update(folder=folder, proc=subprocess.Popen(command, env=_env(features, folder), cwd=folder,
                                                            stdout=output, stderr=subprocess.STDOUT))
    output.close()  # the child holds its own copy


def stop_background():
    """End a run the session did not wait for (a failure under -x, an
    interrupt) and remove its folder."""
    if not _background:
        return
    proc = _background.pop("proc")
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(_background.pop("folder"), ignore_errors=True)


def test_explicit_vector_kernels_at_32_bytes(tmp_path):
    features = _features_without_avx512()
    if features is None:
        pytest.skip("this CPU has no AVX-512: the suite already runs the 32-byte vectors")
    # the setting took: simd.py sizes its vectors from the features Numba compiles for
    probe = "from fastmle._numba import simd; print(simd.VECTOR_BYTES)"
    width = run_python("-c", probe, env=_env(features, str(tmp_path)), cwd=tmp_path)
    assert width.stdout.strip() == "32", width.stdout + width.stderr
    start_in_background()  # already running when conftest started it
    try:
        returncode = _background["proc"].wait()
        with open(os.path.join(_background["folder"], "output.txt")) as f:
            stdout = f.read()
    finally:
        stop_background()
    assert returncode == 0, stdout[-6000:]
    assert " passed" in stdout and "skipped" not in stdout.splitlines()[-1], stdout[-2000:]
