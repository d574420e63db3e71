"""The Numba kernels written with explicit vectors (fastmle/_numba/simd.py:
the SGD products in glm.py, the exact Fisher's tiles in fisher.py) at the
other vector width. The rest of the suite compiles them for this CPU; on an
AVX-512 machine that is 64-byte vectors, so their 32-byte (AVX2) code, the
blocks and branches a CPU without AVX-512 runs, would go untested. Here a
subprocess compiles them for this CPU with AVX-512 switched off (its own
Numba cache) and reruns the tests that exercise them."""
import os
import subprocess
import sys

import pytest

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


def test_explicit_vector_kernels_at_32_bytes(tmp_path):
    features = _features_without_avx512()
    if features is None:
        pytest.skip("this CPU has no AVX-512: the suite already runs the 32-byte vectors")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=features,
               NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    # the setting took: simd.py sizes its vectors from the features Numba compiles for
    probe = "from fastmle._numba import simd; print(simd.VECTOR_BYTES)"
    width = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                           cwd=tmp_path)
    assert width.stdout.strip() == "32", width.stdout + width.stderr
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
                          *[os.path.join(HERE, t) for t in TESTS]],
                         env=env, capture_output=True, text=True, cwd=tmp_path)  # not the source tree:
    # `python -m` puts the working directory first on sys.path, and the
    # sources there lack the installed package's compiled C extension
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-2000:]
