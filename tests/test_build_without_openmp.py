"""The C extension built without OpenMP (setup.py falls back to that when the
compiler lacks it) is a supported configuration: every kernel then runs on
the calling thread, whatever set_num_threads says. Built here from csrc/
into a copy of the package, and run in a fresh interpreter against the
reference."""
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

import fastmle
from child import run_python

CSRC = Path(__file__).resolve().parents[1] / "csrc"


def test_c_backend_built_without_openmp_matches_the_reference(tmp_path):
    if os.environ.get("FASTMLE_NO_C"):
        pytest.skip("FASTMLE_NO_C=1: C backend disabled on purpose")
    if not (CSRC / "build_ffi.py").exists():
        pytest.skip(f"no C sources at {CSRC} (tests run outside a source checkout)")
    package = tmp_path / "fastmle"
    shutil.copytree(Path(fastmle.__file__).parent, package,
                    ignore=shutil.ignore_patterns("_cext*", "__pycache__"))
    sys.path.insert(0, str(CSRC))
    try:
        import build_ffi
        builder = build_ffi.make_ffibuilder(openmp=False, root=str(CSRC.parent))
        so = builder.compile(tmpdir=str(tmp_path / "build"))
    finally:
        sys.path.remove(str(CSRC))
    shutil.copy(so, package)
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import fastmle
        from fastmle import _c
        assert fastmle.__file__.startswith(%r), fastmle.__file__
        assert _c.lib.fm_openmp_enabled() == 0
        fastmle.set_num_threads(2)
        assert _c.lib.fm_get_num_threads() == 1  # no threads to give it
        rng = np.random.default_rng(0)
        x = rng.standard_normal((300, 1000)).astype(np.float32)
        t = rng.integers(0, 1000, 300)
        for f in (fastmle.softmax, fastmle.log_softmax, fastmle.logsumexp):
            np.testing.assert_allclose(f(x, axis=1, backend="c"), f(x, axis=1, backend="numpy"), rtol=1e-5, atol=1e-6)
        for a, b in zip(fastmle.cross_entropy(x, t, return_grad=True, backend="c"),
                        fastmle.cross_entropy(x, t, return_grad=True, backend="numpy")):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
        # an SGD fit big enough that the OpenMP build would share its batches
        # between threads (32 x 64 x 8 multiply-adds per batch)
        X = rng.standard_normal((3000, 64))
        y = rng.integers(0, 8, 3000)
        fits = [fastmle.sgd_fit(X, y, "multinomial", max_epochs=2, tol=None, momentum=0.5, random_state=1,
                                backend=b) for b in ("c", "numpy")]
        np.testing.assert_allclose(fits[0].coef, fits[1].coef, rtol=1e-9, atol=1e-11)
        print("ok")
    """ % str(tmp_path)))
    proc = run_python(str(script), cwd=tmp_path, timeout=300, env={"PYTHONPATH": str(tmp_path)})
    assert proc.stdout.strip() == "ok", proc.stdout + proc.stderr
