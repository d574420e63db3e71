import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/cases.py

import numpy as np
import pytest
from hypothesis import settings

import fastmle

# A fixed example budget for CI; FASTMLE_HYPOTHESIS=long for a deeper run.
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile("long" if os.environ.get("FASTMLE_HYPOTHESIS") == "long" else "ci")

BACKENDS = ["c", "numba", "numpy"]
COMPILED = ["c", "numba"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every backend. A backend that is not available fails the test (it is
    not skipped) unless FASTMLE_NO_C=1 says the C one was left out on purpose."""
    name = request.param
    if name == "c" and os.environ.get("FASTMLE_NO_C"):
        pytest.skip("FASTMLE_NO_C=1: C backend disabled on purpose")
    assert name in fastmle.available_backends(), f"backend {name!r} unavailable"
    return name


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# ---- the 32-byte vector run (test_numba_vector_width.py) beside the suite ----

def _vector_width_module(session):
    for item in session.items:
        if item.name == "test_explicit_vector_kernels_at_32_bytes":
            return item.module
    return None


def pytest_collection_finish(session):
    module = _vector_width_module(session)
    if module is not None:
        module.start_in_background()


def pytest_sessionfinish(session):
    module = _vector_width_module(session)
    if module is not None:
        module.stop_background()
