"""Arrays that are read-only, unaligned, byte-swapped or memory-mapped files
work for every public function on every backend and give the same result as
ordinary arrays (the validate layer copies what the kernels cannot take);
out= buffers of those kinds receive the same values."""
import numpy as np
import pytest

from public_calls import public_calls, values

BACKENDS = ["c", "numba", "numpy"]


def read_only(a, tmp_path):
    a = a.copy()
    a.setflags(write=False)
    return a


def unaligned(a, tmp_path):
    """A copy of a at an odd byte offset of a buffer (not aligned for its dtype)."""
    buffer = np.empty(a.nbytes + 1, np.uint8)
    out = buffer[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def byte_swapped(a, tmp_path):
    return a.astype(a.dtype.newbyteorder())


def memory_mapped(a, tmp_path, mode="r"):
    path = tmp_path / f"array{len(list(tmp_path.iterdir()))}.dat"
    m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    return np.memmap(path, dtype=a.dtype, mode=mode, shape=a.shape)


INPUTS = {"read-only": read_only, "unaligned": unaligned, "byte-swapped": byte_swapped,
          "memory-mapped": memory_mapped}
OUTPUTS = {"unaligned": unaligned, "byte-swapped": byte_swapped,
           "memory-mapped": lambda a, tmp_path: memory_mapped(a, tmp_path, mode="r+")}
CALLS = public_calls(np.float64, np.random.default_rng(0))


def calls_named(name):
    """The call in float32 and float64 (fresh arrays, so tests do not share buffers)."""
    return [next(c for c in public_calls(dtype, np.random.default_rng(0)) if c.name == name)
            for dtype in (np.float32, np.float64)]


def assert_same_values(got, want, exact, err):
    assert len(got) == len(want), err
    for g, w in zip(got, want):
        if exact:
            np.testing.assert_array_equal(g, w, err_msg=err)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-4, err_msg=err)


@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize("name", [c.name for c in CALLS])
def test_unusual_input_arrays_give_the_usual_result(name, kind, tmp_path):
    for call in calls_named(name):
        for backend in BACKENDS:
            want = [np.array(v) for v in values(call(backend))]  # copies: out= is reused below
            changed = {k: INPUTS[kind](call.kwargs[k], tmp_path) for k in call.inputs}
            got = values(call(backend, **changed))
            # scikit-learn's check_array turns byte-swapped float32 into float64:
            # the estimators then compute in double, close but not identical
            exact = not (name.startswith("MLE") and kind == "byte-swapped" and call.kwargs["X"].dtype == np.float32)
            assert_same_values(got, want, exact, f"{name} {backend} {call.kwargs[call.inputs[0]].dtype} {kind}")


@pytest.mark.parametrize("kind", list(OUTPUTS))
@pytest.mark.parametrize("name", [c.name for c in CALLS if c.outputs])
def test_unusual_out_buffers_receive_the_usual_result(name, kind, tmp_path):
    for call in calls_named(name):
        for backend in BACKENDS:
            want = [np.array(v) for v in values(call(backend))]
            buffers = {k: OUTPUTS[kind](call.kwargs[k], tmp_path) for k in call.outputs}
            got = values(call(backend, **buffers))
            assert_same_values(got, want, True, f"{name} {backend} {kind}")
            for k, buffer in buffers.items():  # the result is in the buffer itself
                assert any(np.array_equal(buffer, w) for w in want), f"{name} {backend} {kind}: {k} not written"
