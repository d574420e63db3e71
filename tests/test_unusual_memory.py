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


# ------------------------------------------------ inputs changed during a call
# The kernels index with class labels and CSR column indices after the
# checks, with the GIL released; the caller's arrays may change meanwhile
# (another thread, or sgd_fit's callback between epochs). What the kernels
# index with is a checked private copy.

def test_the_kernels_index_with_private_copies():
    import scipy.sparse

    from fastmle._validate import class_targets
    from fastmle.glm import as_design_matrix, encode_response

    t = np.arange(6, dtype=np.int64) % 3
    assert not np.shares_memory(class_targets(t, 3, -100, (6,))[0], t)
    y = np.arange(6, dtype=np.int64) % 3
    assert not np.shares_memory(encode_response(y, "multinomial", 6, np.float64)[0], y)
    A = scipy.sparse.random(6, 4, density=0.5, format="csr", random_state=0)
    M, copied = as_design_matrix(A)
    assert not np.shares_memory(M.indices, A.indices) and not np.shares_memory(M.indptr, A.indptr)
    assert np.shares_memory(M.data, A.data) and not copied  # the values are not copied


@pytest.mark.parametrize("backend", BACKENDS)
def test_sgd_fit_callback_changing_a_sparse_X_structure(backend):
    # the callback set X.indices out of range after the first epoch's check:
    # SIGSEGV (C, Numba) or a heap corruption abort (C, indices -1) before
    from child import run_python
    code = f"""if True:
        import numpy as np, scipy.sparse, fastmle
        X = scipy.sparse.random(2000, 50, density=0.1, format="csr", random_state=0)
        y = np.random.default_rng(0).integers(0, 3, 2000)
        opts = dict(max_epochs=3, tol=None, random_state=0, backend="{backend}")
        want = fastmle.sgd_fit(X.copy(), y, "multinomial", **opts).coef
        for bad in (2**30, -1):
            Xc = X.copy()
            def spoil(epoch, info):
                Xc.indices[:] = bad
            got = fastmle.sgd_fit(Xc, y, "multinomial", callback=spoil, **opts).coef
            assert np.array_equal(got, want), bad  # the fit read its own copy of the structure
        print("ok")
    """
    assert run_python("-c", code).stdout.strip() == "ok"
