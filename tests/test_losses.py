"""Likelihood losses and information measures: every backend against the
numpy reference, the reference against torch, scipy and finite differences,
hypothesis properties, and the bad-input errors."""
import itertools
import math
import warnings

import mpmath
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import fastmle
from fastmle.losses import LOSS_CHUNK

from cases import assert_same, hard_targets, option_grid, special_rows

ROW_SHAPES = [(1, 1), (3, 1), (5, 7), (4, 8), (9, 9), (6, 33), (70, 1000), (2, 40000)]


def tol(dtype):
    # float32 kernels store exponentials in float32; the reference is float64
    return (2e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)


def logit_cases(dtype, rng):
    for shape in ROW_SHAPES:
        yield f"normal{shape}", (rng.standard_normal(shape) * 4).astype(dtype)
    yield "special", special_rows(11, dtype)
    yield "special-long", special_rows(3000, dtype)


def check_close(got, want, dtype, err, scale=1.0):
    rtol, atol = tol(dtype)
    assert_same(np.asarray(got), np.asarray(want), rtol, atol * scale, err=err)


def finite_scale(x):
    return max(1.0, float(np.max(np.abs(x[np.isfinite(x)]), initial=0)))


# ---------------------------------------------------------------- backends vs reference


@pytest.mark.parametrize("soft", [False, True], ids=["class-index", "class-prob"])
def test_cross_entropy_backends_match_reference(backend, dtype, rng, soft):
    for label, x in logit_cases(dtype, rng):
        rows, n = x.shape
        target = (rng.dirichlet(np.ones(n), rows).astype(dtype) if soft
                  else hard_targets(rows, n, rng))
        for opt_label, kw in option_grid(n, rng, dtype):
            want = fastmle.cross_entropy(x, target, return_grad=True, backend="numpy", **kw)
            got = fastmle.cross_entropy(x, target, return_grad=True, backend=backend, **kw)
            err = f"{backend} {label} {opt_label}"
            check_close(got[0], want[0], dtype, err + " loss", finite_scale(x))
            check_close(got[1], want[1], dtype, err + " grad")


def test_nll_loss_backends_match_reference(backend, dtype, rng):
    for label, x in logit_cases(dtype, rng):
        lp = fastmle.log_softmax(x, axis=1, backend="numpy")
        target = hard_targets(*x.shape, rng)
        for opt_label, kw in option_grid(x.shape[1], rng, dtype):
            want = fastmle.nll_loss(lp, target, return_grad=True, backend="numpy", **kw)
            got = fastmle.nll_loss(lp, target, return_grad=True, backend=backend, **kw)
            check_close(got[0], want[0], dtype, f"{backend} {label} {opt_label}", finite_scale(lp))
            check_close(got[1], want[1], dtype, f"{backend} {label} {opt_label} grad")


def test_cross_entropy_layouts(backend, dtype, rng):
    """(N, C, d1, d2), unbatched (C,), strided views, and empty batches."""
    x4 = rng.standard_normal((3, 5, 4, 2)).astype(dtype)
    y4 = rng.integers(0, 5, (3, 4, 2))
    base = rng.standard_normal((12, 20)).astype(dtype)
    cases = [
        ("4d", x4, y4),
        ("4d-soft", x4, rng.dirichlet(np.ones(5), (3, 4, 2)).transpose(0, 3, 1, 2).astype(dtype)),
        ("unbatched", x4[0, :, 0, 0].copy(), np.int64(3)),
        ("strided", base[::2, ::3], rng.integers(0, 7, 6)),
        ("fortran", np.asfortranarray(base), rng.integers(0, 20, 12)),
        ("empty", np.zeros((0, 4), dtype), np.zeros(0, np.int64)),
    ]
    for label, x, y in cases:
        for red in ["mean", "sum", "none"]:
            want = fastmle.cross_entropy(x, y, reduction=red, return_grad=True, backend="numpy")
            got = fastmle.cross_entropy(x, y, reduction=red, return_grad=True, backend=backend)
            check_close(got[0], want[0], dtype, f"{backend} {label} {red}")
            check_close(got[1], want[1], dtype, f"{backend} {label} {red} grad")
            assert got[1].shape == x.shape


def test_grad_out_in_place(backend, dtype, rng):
    """grad_out=logits overwrites the logits with the gradient; other
    grad_out buffers (also non-contiguous or N-d) receive it."""
    x = rng.standard_normal((33, 17)).astype(dtype)
    y = hard_targets(33, 17, rng)
    want_loss, want_grad = fastmle.cross_entropy(x, y, label_smoothing=0.1, return_grad=True, backend="numpy")
    inplace = x.copy()
    loss, grad = fastmle.cross_entropy(inplace, y, label_smoothing=0.1, return_grad=True,
                                       grad_out=inplace, backend=backend)
    assert grad is inplace
    check_close(loss, want_loss, dtype, "in-place loss")
    check_close(inplace, want_grad, dtype, "in-place grad")
    strided = np.zeros((33, 34), dtype)[:, ::2]
    loss, grad = fastmle.cross_entropy(x, y, label_smoothing=0.1, return_grad=True, grad_out=strided,
                                       backend=backend)
    assert grad is strided
    check_close(strided, want_grad, dtype, "strided grad_out")
    x4 = rng.standard_normal((2, 5, 3)).astype(dtype)
    y4 = rng.integers(0, 5, (2, 3))
    want = fastmle.cross_entropy(x4, y4, return_grad=True, backend="numpy")[1]
    x4_in = x4.copy()
    fastmle.cross_entropy(x4_in, y4, return_grad=True, grad_out=x4_in, backend=backend)
    check_close(x4_in, want, dtype, "N-d in place")


def test_bce_backends_match_reference(backend, dtype, rng):
    x = np.r_[rng.standard_normal(200) * 30, [np.inf, -np.inf, np.nan, 0.0, 1e-30, 200, -200]]
    x = x.astype(dtype).reshape(3, -1)
    t = rng.random(x.shape).astype(dtype)
    t[0, :5] = [0, 1, 0, 1, 0.5]
    weight = rng.random(x.shape[1]).astype(dtype)
    pos_weight = (rng.random(x.shape[1]) * 3).astype(dtype)
    for kw in [{}, {"weight": weight}, {"pos_weight": pos_weight}, {"weight": weight, "pos_weight": pos_weight}]:
        for red in ["mean", "sum", "none"]:
            want = fastmle.binary_cross_entropy_with_logits(x, t, reduction=red, return_grad=True,
                                                            backend="numpy", **kw)
            got = fastmle.binary_cross_entropy_with_logits(x, t, reduction=red, return_grad=True,
                                                           backend=backend, **kw)
            err = f"bce {backend} {sorted(kw)} {red}"
            check_close(got[0], want[0], dtype, err, 200)
            check_close(got[1], want[1], dtype, err + " grad")


def test_bce_of_confident_hard_targets_is_exact(backend, dtype):
    # torch's (1 - t) x + lw softplus(-x) and its gradient (1 - t) - lw
    # sigmoid(-x) cancel for hard targets: x = -40, t = 0 gave a loss of 0
    # (exact 4.2e-18) and x = -30 a gradient 1e-3 off; the rearranged forms
    # (1 - t) softplus(x) + pw t softplus(-x) and (1 - t) sigmoid(x) - pw t
    # sigmoid(-x) are exact to rounding, in every backend
    x = np.array([-30.0, -40.0, -80.0, 30.0, 40.0, 80.0, -5.0], dtype)
    t = np.array([0, 0, 0, 1, 1, 1, 0], dtype)
    pw = np.full(7, 2.5, dtype)
    for kw, scale in (({}, 1.0), ({"pos_weight": pw}, np.where(t == 1, 2.5, 1.0))):
        loss, grad = fastmle.binary_cross_entropy_with_logits(x, t, reduction="none", return_grad=True,
                                                              backend=backend, **kw)
        tail = np.array([math.exp(-abs(float(v))) for v in x.astype(np.float64)])
        exact_loss = scale * np.log1p(tail)
        exact_grad = scale * np.where(t == 1, -1.0, 1.0) * tail / (1.0 + tail)
        rtol = 4 * np.finfo(dtype).eps
        np.testing.assert_allclose(loss, exact_loss, rtol=rtol, atol=0, err_msg=str(kw))
        np.testing.assert_allclose(grad, exact_grad, rtol=rtol, atol=0, err_msg=str(kw))


def test_bce_of_targets_outside_0_1_keeps_torchs_form(backend):
    # the rearranged form cancels for targets that are no probabilities
    # (t = 1e12, x = 0 gave 0.69309; t = inf NaN): those take torch's
    torch = pytest.importorskip("torch")
    x = np.array([0.0, 0.0, -1.0, 2.0, 1.0])
    t = np.array([1e12, 1e16, np.inf, -3.0, -np.inf])
    loss, grad = fastmle.binary_cross_entropy_with_logits(x, t, reduction="none", return_grad=True,
                                                          backend=backend)
    xt = torch.tensor(x, requires_grad=True)
    want = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(t), reduction="none")
    want.sum().backward()
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("pos_weight", [None, 0.0, 0.5, 2.0])
def test_bce_outside_the_stable_form_has_torchs_special_values(backend, pos_weight):
    # infinite logits and targets that are no probabilities take torch's
    # forms, gradient included: ((pw t + 1) - t) sigmoid(x) - pw t is NaN
    # for t = inf with pos_weight (the gradient (1 - t) - lw sigmoid(-x),
    # the same function, gave -inf), and with pw = 0, t = -3, x = -40 it is
    # 4 sigmoid(-40), not 0
    torch = pytest.importorskip("torch")
    xs = [-np.inf, -800.0, -40.0, -3.0, 0.0, 2.0, 40.0, np.inf, np.nan]
    ts = [-np.inf, -3.0, 2.0, 1e16, np.inf, np.nan]
    x, t = (np.array(v) for v in zip(*itertools.product(xs, ts)))
    pw = None if pos_weight is None else np.full(x.shape, pos_weight)
    loss, grad = fastmle.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none", return_grad=True,
                                                          backend=backend)
    xt = torch.tensor(x, requires_grad=True)
    kw = {} if pw is None else {"pos_weight": torch.tensor(pw)}
    want = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(t), reduction="none", **kw)
    want.sum().backward()
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-300)


VAR_SHAPES = {"elementwise": (6, 5), "per-sample (N,1)": (6, 1), "per-sample (N,)": (6,), "scalar": ()}


@pytest.mark.parametrize("var_kind", list(VAR_SHAPES))
def test_gaussian_backends_match_reference(backend, dtype, rng, var_kind):
    p = rng.standard_normal((6, 5)).astype(dtype)
    t = rng.standard_normal((6, 5)).astype(dtype)
    var = (rng.random(VAR_SHAPES[var_kind]) + 0.05).astype(dtype)
    if var.ndim == 2 and var.shape[1] > 1:
        var[0, 0] = 0.0  # clamped to eps
    for full, red in itertools.product([False, True], ["mean", "sum", "none"]):
        want = fastmle.gaussian_nll(p, t, var, full=full, reduction=red, return_grad=True, backend="numpy")
        got = fastmle.gaussian_nll(p, t, var, full=full, reduction=red, return_grad=True, backend=backend)
        for g, w, what in zip(got, want, ["loss", "grad_pred", "grad_var"]):
            check_close(g, w, dtype, f"gaussian {backend} {var_kind} full={full} {red} {what}", 1e6)
            assert np.shape(g) == np.shape(w)
    want = fastmle.mse_loss(p, t, return_grad=True, backend="numpy")
    got = fastmle.mse_loss(p, t, return_grad=True, backend=backend)
    check_close(got[0], want[0], dtype, "mse")
    check_close(got[1], want[1], dtype, "mse grad")


# The elementwise kernels sum their losses per chunk of LOSS_CHUNK elements,
# in blocks of 256: sizes on each side of both boundaries.
ELEMENTWISE_SIZES = [1, 255, 257, LOSS_CHUNK - 1, LOSS_CHUNK, LOSS_CHUNK + 1, 3 * LOSS_CHUNK + 300]


@pytest.mark.parametrize("n", ELEMENTWISE_SIZES)
def test_elementwise_losses_across_block_and_chunk_boundaries(backend, dtype, rng, n):
    x = (rng.standard_normal(n) * 10).astype(dtype)
    t = rng.random(n).astype(dtype)
    specials = [np.inf, -np.inf, 50.0, -50.0, 0.0]
    for k, i in enumerate(sorted({0, n // 2, n - 1, min(LOSS_CHUNK, n - 1), min(256, n - 1)})):
        x[i] = specials[k % len(specials)]
    w = rng.random(n).astype(dtype)
    pw = (rng.random(n) * 3).astype(dtype)
    var = (rng.random(n) + 0.1).astype(dtype)
    calls = {
        "bce": lambda b, red: fastmle.binary_cross_entropy_with_logits(x, t, reduction=red, return_grad=True,
                                                                       backend=b),
        "bce weighted": lambda b, red: fastmle.binary_cross_entropy_with_logits(
            x, t, w, pw, reduction=red, return_grad=True, backend=b),
        "bce weight only": lambda b, red: fastmle.binary_cross_entropy_with_logits(
            x, t, w, reduction=red, return_grad=True, backend=b),
        "bce pos_weight only": lambda b, red: fastmle.binary_cross_entropy_with_logits(
            x, t, pos_weight=pw, reduction=red, return_grad=True, backend=b),
        "gaussian": lambda b, red: fastmle.gaussian_nll(np.nan_to_num(x), t, var, reduction=red, return_grad=True,
                                                        backend=b),
        "gaussian scalar var": lambda b, red: fastmle.gaussian_nll(np.nan_to_num(x), t, 0.7, full=True,
                                                                   reduction=red, return_grad=True, backend=b),
    }
    for (what, call), red in itertools.product(calls.items(), ["mean", "sum", "none"]):
        want, got = call("numpy", red), call(backend, red)
        for g, wnt in zip(got, want):
            assert g.dtype == dtype and g.shape == wnt.shape, (what, red)
            check_close(g, wnt, dtype, f"{what} {backend} n={n} {red}", 200 * finite_scale(x))


def test_mse_of_tiny_float32_differences_is_rounded_once(backend):
    # mse_loss is twice the unit-variance Gaussian loss: the doubling was
    # applied to the float32 per-element losses, so a subnormal 0.5 d^2
    # was rounded twice (d = 3e-23: 0 instead of d^2 = 1e-45, as torch)
    p = np.array([3e-23, np.sqrt(3 * 2.0 ** -149), 1e-20, 1.0], np.float32)
    t = np.zeros(4, np.float32)
    want = (p.astype(np.float64) ** 2).astype(np.float32)
    np.testing.assert_array_equal(fastmle.mse_loss(p, t, reduction="none", backend=backend), want)


@pytest.mark.parametrize("chunk", [300, 1024])
def test_elementwise_kernels_sum_each_chunk(backend, dtype, rng, chunk):
    # the kernels' contract: partial[c] is the sum of the losses of elements
    # [c chunk, (c + 1) chunk), for any chunk (not only the blocks' multiples)
    from fastmle import _dispatch

    n = 5 * chunk + 7
    x, t, var = rng.standard_normal((3, n)).astype(dtype)
    var = np.abs(var) + 0.1
    none = np.empty(0, dtype)
    for name, args in [("bce_with_logits", (x, t, none, none, 1.0)),
                       ("gaussian_nll", (x, t, var, 1e-6, False, 1.0, 1.0))]:
        loss_elements = np.empty(n, np.float64)
        want = np.empty(6)
        grads = (none,) if name == "bce_with_logits" else (none, none)
        getattr(_dispatch.kernels("numpy", "losses"), name)(*args, n, np.empty(1), loss_elements, *grads)
        for c in range(6):
            want[c] = loss_elements[c * chunk:(c + 1) * chunk].sum()
        got = np.full(6, np.nan)
        getattr(_dispatch.kernels(backend, "losses"), name)(*args, chunk, got, none, *grads)
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=name)


def test_elementwise_means_make_no_per_element_loss_array(backend, dtype, rng):
    # the mean of n elements allocated n float64 losses before it was summed
    import tracemalloc

    n = 1_000_000
    x, t, var = rng.standard_normal((3, n)).astype(dtype)
    var = np.abs(var) + 0.1
    for call in (lambda: fastmle.binary_cross_entropy_with_logits(x, t, backend=backend),
                 lambda: fastmle.gaussian_nll(x, t, var, backend=backend)):
        call()  # compile first
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        if backend != "numpy":  # (the reference's float64 temporaries take more)
            assert peak < 2 * n, peak  # bytes: gaussian_nll's check of var >= 0 takes one per element


def _elementwise_grad_calls(dtype, rng, shape=(37, 11)):
    """name -> (call(grad_out=..., **kw), its arrays by name, grad_out's
    shape(s)): every loss whose grad_out= takes one or two gradients."""
    x, t, var = rng.standard_normal((3,) + shape).astype(dtype)
    var = np.abs(var) + 0.1
    row_var = var[:, :1].copy()
    w, pw = np.abs(rng.standard_normal((2,) + shape)).astype(dtype)
    bern = rng.random(shape).astype(dtype)
    return {
        "bce": (lambda a, **kw: fastmle.binary_cross_entropy_with_logits(a["x"], a["t"], weight=a["w"],
                                                                         pos_weight=a["pw"], **kw),
                dict(x=x, t=bern, w=w, pw=pw), x.shape),
        "mse": (lambda a, **kw: fastmle.mse_loss(a["x"], a["t"], **kw), dict(x=x, t=t), x.shape),
        "gaussian": (lambda a, **kw: fastmle.gaussian_nll(a["x"], a["t"], a["var"], **kw),
                     dict(x=x, t=t, var=var), (x.shape, var.shape)),
        "gaussian row var": (lambda a, **kw: fastmle.gaussian_nll(a["x"], a["t"], a["var"], full=True, **kw),
                             dict(x=x, t=t, var=row_var), (x.shape, row_var.shape)),
        "gaussian scalar var": (lambda a, **kw: fastmle.gaussian_nll(a["x"], a["t"], 0.7, **kw),
                                dict(x=x, t=t), (x.shape, ())),
    }


@pytest.mark.parametrize("name", ["bce", "mse", "gaussian", "gaussian row var", "gaussian scalar var"])
def test_elementwise_grad_out(backend, dtype, rng, name):
    """grad_out receives exactly the gradients returned without it, and is
    what is returned: new buffers, strided ones, the inputs themselves (in
    place) and buffers overlapping another input (written through a copy)."""
    call, arrays, shapes = _elementwise_grad_calls(dtype, rng)[name]
    pair = name.startswith("gaussian")

    def run(buffers, arrays=arrays, reduction="mean"):
        grad_out = tuple(buffers) if pair else buffers[0]
        result = call(arrays, reduction=reduction, return_grad=True, grad_out=grad_out, backend=backend)
        for got, buffer in zip(result[1:], buffers):
            if buffer is not None:
                assert got is buffer, "grad_out is returned"
        return result

    for reduction in ("mean", "none"):
        want = call(arrays, reduction=reduction, return_grad=True, backend=backend)
        all_shapes = shapes if pair else (shapes,)
        fresh = [np.full(s, np.nan, dtype) for s in all_shapes]
        strided = [np.full(s + (2,), np.nan, dtype)[..., 0] for s in all_shapes]
        for label, buffers in [("fresh", fresh), ("strided", strided), ("first only", fresh[:1] + [None] * pair),
                               ("second only", [None, fresh[-1]] if pair else fresh)]:
            got = run(buffers, reduction=reduction)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w, err_msg=f"{name} {backend} {reduction} {label}")
    # in place: the gradient overwrites x (and var when it has x's shape)
    want = call(arrays, return_grad=True, backend=backend)
    inplace = {k: v.copy() for k, v in arrays.items()}
    buffers = [inplace["x"]] + ([inplace["var"] if name == "gaussian" else None] if pair else [])
    got = run(buffers, arrays=inplace)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w, err_msg=f"{name} {backend} in place")
    # a buffer that is another input (the target) is written after the kernel has read it
    overlapping = {k: v.copy() for k, v in arrays.items()}
    got = run([overlapping["t"]] + [None] * pair, arrays=overlapping)
    np.testing.assert_array_equal(got[1], want[1], err_msg=f"{name} {backend} grad_out=target")


def test_mse_loss_computes_no_variance_gradient(backend, dtype, rng):
    # mse_loss is gaussian_nll with unit variance: it used to allocate, fill
    # and drop the gradient with respect to that variance (a second array of
    # pred's size)
    import tracemalloc

    n = 1_000_000
    x, t = rng.standard_normal((2, n)).astype(dtype)
    grad = np.empty(n, dtype)
    for grad_out in (None, grad):
        fastmle.mse_loss(x, t, return_grad=True, grad_out=grad_out, backend=backend)  # compile first
        tracemalloc.start()
        try:
            result = fastmle.mse_loss(x, t, return_grad=True, grad_out=grad_out, backend=backend)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        returned = 0 if grad_out is not None else result[1].nbytes
        if backend != "numpy":  # (the reference's float64 temporaries take more)
            assert peak - returned < 2 * n, (grad_out is None, peak, returned)


BAD_GRAD_OUT = [
    ("mse", dict(grad_out=np.empty((3, 4))), ValueError, r"grad_out has shape \(3, 4\), expected \(3, 5\)"),
    ("mse", dict(grad_out=np.empty((3, 5), np.float32)), TypeError, "grad_out has dtype float32"),
    ("mse", dict(grad_out=np.broadcast_to(np.empty(5), (3, 5))), ValueError, "grad_out is read-only"),
    ("mse", dict(return_grad=False, grad_out=np.empty((3, 5))), ValueError, "only used with return_grad"),
    ("bce", dict(grad_out=np.empty((5, 3))), ValueError, "grad_out has shape"),
    ("bce", dict(return_grad=False, grad_out=np.empty((3, 5))), ValueError, "only used with return_grad"),
    ("gaussian", dict(grad_out=np.empty((3, 5))), TypeError, r"grad_out must be a pair \(grad_pred, grad_var\)"),
    ("gaussian", dict(grad_out=(np.empty((3, 5)),)), TypeError, "grad_out must be a pair"),
    ("gaussian", dict(grad_out=(None, np.empty((3, 5)))), ValueError,
     r"grad_out\[1\] has shape \(3, 5\), expected \(3, 1\)"),
    ("gaussian", dict(grad_out=(np.empty((3, 1)), None)), ValueError, r"grad_out\[0\] has shape"),
    ("gaussian", dict(grad_out=(None, np.empty((3, 1), np.float32))), TypeError, r"grad_out\[1\] has dtype"),
    ("gaussian", dict(grad_out=(np.empty(15)[:15].reshape(3, 5), np.empty(15)[:3].reshape(3, 1))), None, None),
    ("gaussian", dict(return_grad=False, grad_out=(None, None)), ValueError, "only used with return_grad"),
]


@pytest.mark.parametrize("name,kw,exc,match", BAD_GRAD_OUT, ids=[f"{n}-{m}" for n, _, _, m in BAD_GRAD_OUT])
def test_elementwise_grad_out_bad_input(name, kw, exc, match):
    x, t, var = np.zeros((3, 5)), np.ones((3, 5)), np.ones((3, 1))
    kw = dict(kw)
    kw.setdefault("return_grad", True)
    if exc is None:  # two views of one buffer: overlapping
        base = np.zeros(20)
        kw["grad_out"] = (base[:15].reshape(3, 5), base[12:15].reshape(3, 1))
        exc, match = ValueError, "grad_out's two arrays overlap"
    before = [a.copy() for a in (x, t, var)]
    call = {"mse": lambda: fastmle.mse_loss(x, t, **kw),
            "bce": lambda: fastmle.binary_cross_entropy_with_logits(x, t / 2, **kw),
            "gaussian": lambda: fastmle.gaussian_nll(x, t, var, **kw)}[name]
    buffers = kw["grad_out"] if isinstance(kw["grad_out"], tuple) else (kw["grad_out"],)
    buffers_before = [np.array(b, copy=True) if isinstance(b, np.ndarray) else None for b in buffers]
    with pytest.raises(exc, match=match):
        call()
    for a, b in zip((x, t, var), before):
        np.testing.assert_array_equal(a, b)  # nothing written
    for b, b0 in zip(buffers, buffers_before):
        if b0 is not None:
            np.testing.assert_array_equal(b, b0)


def prob_cases(dtype, rng):
    p = rng.random((7, 9)).astype(dtype)
    p[0, :3] = 0
    p[1] = 0
    p[1, 4] = 2.0  # one-hot after normalization
    q = rng.random((7, 9)).astype(dtype)
    q[2, 5] = 0  # p > 0, q = 0: inf
    q[3, :] = 0
    q[3, 1] = 1
    p[3, 1:] = 0
    yield "rows", p, q
    yield "long", rng.random((2, 20000)).astype(dtype), rng.random((2, 20000)).astype(dtype)
    yield "3d", rng.random((3, 4, 5)).astype(dtype), rng.random((3, 4, 5)).astype(dtype)


def test_information_measures_match_reference_and_scipy(backend, dtype, rng):
    for label, p, q in prob_cases(dtype, rng):
        for axis in range(-p.ndim, p.ndim):
            err = f"{backend} {label} axis={axis}"
            for base in [None, 2]:
                want = scipy.stats.entropy(p, base=base, axis=axis)
                check_close(fastmle.entropy(p, axis=axis, base=base, backend=backend),
                            want.astype(dtype), dtype, "entropy " + err)
            want = scipy.stats.entropy(p, q, axis=axis)
            check_close(fastmle.kl_div(p, q, axis=axis, backend=backend), want.astype(dtype), dtype,
                        "kl " + err)
            with np.errstate(divide="ignore"):
                zp, zq = np.log(p), np.log(q)  # logits whose softmax is p, q
            want = scipy.stats.entropy(p, axis=axis)
            check_close(fastmle.entropy_from_logits(zp, axis=axis, backend=backend), want.astype(dtype),
                        dtype, "entropy_from_logits " + err, 10)
            want = scipy.stats.entropy(p, q, axis=axis)
            check_close(fastmle.kl_div_from_logits(zp, zq, axis=axis, backend=backend), want.astype(dtype),
                        dtype, "kl_from_logits " + err, 10)


def test_information_measures_of_all_elements_with_axis_none(backend, dtype, rng):
    # scipy.stats.entropy(p, axis=None): one distribution of every element
    p = rng.random((3, 4)).astype(dtype)
    q = rng.random((3, 4)).astype(dtype)
    check_close(fastmle.entropy(p, axis=None, backend=backend),
                np.asarray(scipy.stats.entropy(p, axis=None)).astype(dtype), dtype, "entropy")
    check_close(fastmle.kl_div(p, q, axis=None, backend=backend),
                np.asarray(scipy.stats.entropy(p, q, axis=None)).astype(dtype), dtype, "kl")
    check_close(fastmle.entropy_from_logits(np.log(p), axis=None, backend=backend),
                np.asarray(scipy.stats.entropy(p, axis=None)).astype(dtype), dtype, "entropy_from_logits", 10)


def test_information_measures_special_values(backend, dtype):
    x = np.array([[np.nan, 1, 1], [np.inf, 1, 1], [-np.inf, -np.inf, -np.inf], [1e30, 0, 0]], dtype)
    for fn in ["entropy_from_logits"]:
        want = getattr(fastmle, fn)(x, backend="numpy")
        check_close(getattr(fastmle, fn)(x, backend=backend), want, dtype, fn)
    p = np.array([[np.nan, 1, 1], [0, 0, 0], [1, 0, 0]], dtype)
    check_close(fastmle.entropy(p, backend=backend), fastmle.entropy(p, backend="numpy"), dtype, "entropy")
    check_close(fastmle.kl_div(p, p[::-1], backend=backend), fastmle.kl_div(p, p[::-1], backend="numpy"),
                dtype, "kl")
    # fixed: an inf in q made q / sum q NaN where p = 0, a term the sum
    # skips, so KL came out inf; scipy gives NaN, as for any NaN or inf
    p = np.array([[1, 0], [0, 1], [1, 1], [1, 1]], dtype)
    q = np.array([[1, np.inf], [np.inf, 1], [np.inf, np.inf], [np.nan, 1]], dtype)
    with np.errstate(invalid="ignore"):
        want = scipy.stats.entropy(p, q, axis=1)
    assert np.isnan(want).all()
    assert np.isnan(fastmle.kl_div(p, q, backend=backend)).all()
    # but two finite sums whose total overflows are no reason for NaN
    p = np.array([1e308, 5e307])
    np.testing.assert_allclose(fastmle.kl_div(p, p[::-1], backend=backend), scipy.stats.entropy(p, p[::-1]),
                               rtol=1e-12)
    assert fastmle.kl_div(np.array([1e308]), np.array([1e308]), backend=backend) == 0.0


def _entropy_exact(row):
    """Entropy of a row of float64 values, normalized, in 60 digits."""
    mpmath.mp.dps = 60
    p = [mpmath.mpf(float(v)) for v in row]
    s = mpmath.fsum(p)
    return float(-mpmath.fsum(v / s * mpmath.log(v / s) for v in p if v))


# fixed: log S - sum p log p / S cancelled for unnormalized rows of low
# entropy: [6, 1e-10, 2e-10, 3e-10] was 1.2e-7 off (scipy.stats.entropy
# 3.3e-9), [1000, 1e-12] 3.3e-4 off (scipy 2.2e-5)
def test_entropy_of_low_entropy_rows_to_the_last_bits(backend, dtype, rng):
    rows = [[6, 1e-10, 2e-10, 3e-10], [1000, 1e-12], [3, 3, 1e-9], [0.5, 0.25, 0.25], [1, 0, 1e-30]]
    for scale, ratio in itertools.product([1e-30, 1.0, 1e30], [1e-3, 1e-8, 1e-14]):
        rows.append(scale * np.concatenate([[1.0], ratio * rng.random(9)]))  # one dominant element
    for row in rows:
        p = np.asarray(row, np.float64).astype(dtype)
        want = _entropy_exact(p.astype(np.float64))
        got = float(fastmle.entropy(p, backend=backend))
        # float64: a few roundings; float32: the result's own rounding
        tol = 1e-14 if dtype == np.float64 else 1.2e-7
        assert abs(got - want) <= tol * want, f"{backend} {p}: {got} against {want}"


def test_perplexity(backend):
    z = np.random.default_rng(3).standard_normal((50, 11))
    y = np.arange(50) % 11
    nll = fastmle.cross_entropy(z, y, reduction="none", backend=backend)
    np.testing.assert_allclose(fastmle.perplexity_from_logits(z, y, backend=backend),
                               np.exp(nll.mean()), rtol=1e-12)
    np.testing.assert_allclose(fastmle.perplexity(nll), np.exp(nll.mean()), rtol=1e-12)
    w = np.linspace(0, 1, 50)
    np.testing.assert_allclose(fastmle.perplexity(nll, weights=w), np.exp(np.average(nll, weights=w)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_perplexity_of_zero_total_weight_is_nan_as_cross_entropy(dtype):
    # no token counts: 0 / 0, cross_entropy's (and torch's) value when every
    # target's weight is zero; np.average would raise ZeroDivisionError
    z = np.random.default_rng(4).standard_normal((6, 5)).astype(dtype)
    y = np.arange(6) % 5
    nll = fastmle.cross_entropy(z, y, reduction="none", backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fastmle.perplexity(nll, weights=np.zeros(6))
        want = np.exp(fastmle.cross_entropy(z, y, weight=np.zeros(5), backend="numpy"))
    assert isinstance(got, dtype) and np.isnan(got) and np.isnan(want)
    assert np.isnan(fastmle.perplexity(nll.reshape(2, 3), weights=np.zeros((2, 3), bool)))


def test_perplexity_of_huge_weights_and_complex_nll():
    # weights near the float64 maximum overflowed np.average's sums (NaN);
    # a complex nll returned a complex perplexity
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fastmle.perplexity(np.array([1.0, 2.0]), np.array([1e308, 1e308]))
    assert got == pytest.approx(math.exp(1.5), rel=1e-15)
    with pytest.raises(TypeError, match="nll must be real"):
        fastmle.perplexity(np.array([1 + 1j]))


# ---------------------------------------------------------------- linear cross-entropy


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_linear_cross_entropy_matches_naive(backend, dtype, rng, chunk_size):
    n, hidden, vocab = 40, 16, 300
    h = rng.standard_normal((n, hidden)).astype(dtype)
    W = (rng.standard_normal((vocab, hidden)) / 4).astype(dtype)
    b = rng.standard_normal(vocab).astype(dtype)
    y = hard_targets(n, vocab, rng)
    for bias, eps, red in itertools.product([None, b], [0.0, 0.1], ["mean", "sum", "none"]):
        logits = (h.astype(np.float64) @ W.T.astype(np.float64)) + (0 if bias is None else bias)
        want_loss, dz = fastmle.cross_entropy(logits, y, label_smoothing=eps, reduction=red,
                                              return_grad=True, backend="numpy")
        got = fastmle.linear_cross_entropy(h, W, y, bias, label_smoothing=eps, reduction=red,
                                           return_grad=True, chunk_size=chunk_size, backend=backend)
        err = f"{backend} bias={bias is not None} eps={eps} {red}"
        rtol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got[0], want_loss, rtol=rtol, atol=rtol, err_msg=err)
        for g, w, what in [(got[1], dz @ W, "h"), (got[2], dz.T @ h, "W"),
                           (got[3], None if bias is None else dz.sum(0), "bias")]:
            if w is None:
                assert g is None
                continue
            assert g.dtype == dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max(), err_msg=err + what)
    assert fastmle.linear_cross_entropy(h, W, y, backend=backend).dtype == dtype


def test_linear_cross_entropy_memory_is_bounded_by_the_chunk(backend):
    """Peak numpy allocation (tracemalloc) stays at the outputs + one chunk
    of logits + the 8 MiB W-gradient block, far below the N x V logits. (The
    numpy reference backend works on float64 copies of each chunk: a few
    chunks' worth, still bounded by the chunk.)"""
    import tracemalloc

    rng = np.random.default_rng(0)
    n, hidden, vocab = 4096, 16, 8192  # N x V float32 logits: 128 MiB
    h = rng.standard_normal((n, hidden)).astype(np.float32)
    W = rng.standard_normal((vocab, hidden)).astype(np.float32)
    y = rng.integers(0, vocab, n)
    chunk = 64
    fastmle.linear_cross_entropy(h[:8], W, y[:8], return_grad=True, backend=backend)  # imports, compiles
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fastmle.linear_cross_entropy(h, W, y, return_grad=True, chunk_size=chunk, backend=backend)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    extra = peak - sum(a.nbytes for a in out[1:3])
    compiled = backend != "numpy"
    assert extra <= chunk * vocab * 4 * (1 if compiled else 10) + 8 * 2**20 + 2**20, extra
    if compiled:
        assert extra < 0.1 * n * vocab * 4, extra


# ---------------------------------------------------------------- reference vs finite differences


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_soft", "nll_loss", "bce", "gaussian"])
def test_reference_gradients_match_finite_differences(name, rng):
    x = rng.standard_normal((5, 4))
    w = rng.random(4) + 0.2
    y = np.array([0, 3, -100, 1, 2])
    soft = rng.dirichlet(np.ones(4), 5)
    var = rng.random((5, 1)) + 0.5
    t = rng.random((5, 4))
    f = {
        "cross_entropy": lambda a, **kw: fastmle.cross_entropy(a, y, weight=w, label_smoothing=0.2,
                                                               backend="numpy", **kw),
        "cross_entropy_soft": lambda a, **kw: fastmle.cross_entropy(a, soft, weight=w, label_smoothing=0.1,
                                                                    backend="numpy", **kw),
        "nll_loss": lambda a, **kw: fastmle.nll_loss(a, y, weight=w, label_smoothing=0.3, reduction="sum",
                                                     backend="numpy", **kw),
        "bce": lambda a, **kw: fastmle.binary_cross_entropy_with_logits(
            a * 5, t, weight=w, pos_weight=w * 2, backend="numpy", **kw),
        "gaussian": lambda a, **kw: fastmle.gaussian_nll(a, t, var, backend="numpy", **kw),
    }[name]
    grad = f(x, return_grad=True)[1]
    if name == "bce":
        grad = grad * 5  # chain rule for the a * 5 above
    np.testing.assert_allclose(grad, numeric_grad(lambda a: float(f(a)), x), rtol=1e-6, atol=1e-9)
    if name == "gaussian":
        gv = fastmle.gaussian_nll(x, t, var, return_grad=True, backend="numpy")[2]
        num = numeric_grad(lambda v: float(fastmle.gaussian_nll(x, t, v, backend="numpy")), var)
        np.testing.assert_allclose(gv, num, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- properties

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def logits_and_targets(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rows = draw(st.integers(1, 12))
    n = draw(st.sampled_from([1, 2, 7, 8, 9, 16, 31, 33, 64, 300]))
    x = draw(hnp.arrays(dtype, (rows, n), elements=st.floats(-50, 50, width=32, **finite)))
    y = draw(hnp.arrays(np.int64, rows, elements=st.integers(0, n - 1)))
    return x, y


@given(data=logits_and_targets(), backend=st.sampled_from(["c", "numba", "numpy"]),
       eps=st.sampled_from([0.0, 0.1, 1.0]), shift=st.floats(-30, 30, **finite))
def test_cross_entropy_properties(data, backend, eps, shift):
    x, y = data
    loss, grad = fastmle.cross_entropy(x, y, label_smoothing=eps, reduction="none", return_grad=True,
                                       backend=backend)
    rtol, atol = tol(x.dtype)
    assert np.all(loss >= -atol * 100), "loss >= 0 for hard targets"
    # each gradient row sums to 0 (softmax sums to 1, the target mass is 1)
    np.testing.assert_allclose(grad.sum(axis=1, dtype=np.float64), 0, atol=atol * 100 * x.shape[1])
    # invariant to adding a constant to a row
    shifted = (x.astype(np.float64) + shift).astype(x.dtype)
    loss2, grad2 = fastmle.cross_entropy(shifted, y, label_smoothing=eps, reduction="none",
                                         return_grad=True, backend=backend)
    scale = 1e-4 if x.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(loss2, loss, atol=scale * (1 + np.abs(x).max() + abs(shift)))
    np.testing.assert_allclose(grad2, grad, atol=scale * (1 + np.abs(x).max() + abs(shift)))
    # cross_entropy(z) == nll_loss(log_softmax(z))
    lp = fastmle.log_softmax(x, axis=1)
    np.testing.assert_allclose(fastmle.nll_loss(lp, y, label_smoothing=eps, reduction="none", backend=backend),
                               loss, rtol=rtol * 10, atol=scale)


@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 40)),
                    elements=st.floats(-30, 30, **finite)),
       backend=st.sampled_from(["c", "numba", "numpy"]))
def test_information_properties(x, backend):
    h = fastmle.entropy_from_logits(x, backend=backend)
    assert np.all(h >= -1e-12) and np.all(h <= np.log(x.shape[1]) + 1e-12)
    np.testing.assert_allclose(fastmle.kl_div_from_logits(x, x, backend=backend), 0, atol=1e-12)
    assert np.all(fastmle.kl_div_from_logits(x, x[::-1], backend=backend) >= -1e-12)
    p = fastmle.softmax(x, axis=1)
    np.testing.assert_allclose(fastmle.entropy(p, backend=backend), h, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- bad input


BAD_CROSS_ENTROPY = [
    (dict(target=np.array([0, 5, 1])), ValueError, r"class index 5 at position \(1,\)"),
    (dict(target=np.array([0, -3, 1])), ValueError, r"class index -3 at position \(1,\).*ignore_index \(-100\)"),
    (dict(target=np.array([0.0, 1.0, 1.0])), TypeError, "class-index targets must be integers"),
    (dict(target=np.array([0, 1])), ValueError, r"target shape \(2,\)"),
    (dict(target=np.array(["a", "b", "c"])), TypeError, "integer array of class indices"),
    (dict(weight=np.ones(4)), ValueError, r"weight must have shape \(5,\)"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]"),
    (dict(label_smoothing=-0.1), ValueError, r"label_smoothing must be in \[0, 1\]"),
    (dict(x=np.ones((3, 5), np.int64)), TypeError, "floating-point"),
    (dict(x=np.ones((3, 0))), ValueError, "no classes"),
    (dict(x=np.float64(1.0), target=np.int64(0)), ValueError, "at least one dimension"),
    (dict(grad_out=np.empty((3, 4))), ValueError, "grad_out has shape"),
    (dict(grad_out=np.empty((3, 5), np.float32)), TypeError, "grad_out has dtype"),
    (dict(grad_out=np.broadcast_to(np.empty(5), (3, 5))), ValueError, "read-only"),
    (dict(grad_out=[[0.0] * 5] * 3), TypeError, "numpy.ndarray"),
    (dict(return_grad=False, grad_out=np.empty((3, 5))), ValueError, "only used with return_grad"),
    (dict(ignore_index=1.5), TypeError, "ignore_index must be an integer"),
    # switches and numbers are what they say: True is not 1, "0.1" not 0.1
    (dict(ignore_index=True), TypeError, "ignore_index must be an integer, got True"),
    (dict(label_smoothing=True), TypeError, "label_smoothing must be a number, got True"),
    (dict(label_smoothing="0.1"), TypeError, "label_smoothing must be a number, got '0.1'"),
    (dict(return_grad="no"), TypeError, "return_grad must be True or False, got str 'no'"),
    (dict(backend="cuda"), ValueError, "available"),
]


@pytest.mark.parametrize("kw,exc,match", BAD_CROSS_ENTROPY, ids=[m for _, _, m in BAD_CROSS_ENTROPY])
def test_cross_entropy_bad_input(kw, exc, match):
    kw = dict(kw)
    x = kw.pop("x", np.zeros((3, 5)))
    target = kw.pop("target", np.array([0, 1, 2]))
    kw.setdefault("return_grad", "grad_out" in kw)
    before = x.copy()
    with pytest.raises(exc, match=match):
        fastmle.cross_entropy(x, target, **kw)
    np.testing.assert_array_equal(x, before)  # nothing written


def test_label_errors_name_the_position_in_nd_targets():
    x = np.zeros((2, 3, 4, 5))
    y = np.zeros((2, 4, 5), np.int64)
    y[1, 2, 3] = 7
    with pytest.raises(ValueError, match=r"class index 7 at position \(1, 2, 3\)"):
        fastmle.cross_entropy(x, y)
    with pytest.raises(TypeError, match="class probabilities use cross_entropy"):
        fastmle.nll_loss(np.zeros((2, 3)), np.full((2, 3), 1 / 3))


BAD_OTHERS = [
    (lambda: fastmle.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(4)), ValueError, "does not match"),
    (lambda: fastmle.binary_cross_entropy_with_logits(np.zeros((2, 3)), np.zeros((2, 3)), pos_weight=np.ones(2)),
     ValueError, "cannot be broadcast"),
    (lambda: fastmle.binary_cross_entropy_with_logits(np.zeros(3, int), np.zeros(3)), TypeError, "floating"),
    (lambda: fastmle.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(3), reduction="max"), ValueError,
     "reduction"),
    (lambda: fastmle.gaussian_nll(np.zeros((2, 3)), np.zeros((2, 3)), -np.ones((2, 3))), ValueError, "negative"),
    (lambda: fastmle.gaussian_nll(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(3)), ValueError, "var has shape"),
    (lambda: fastmle.gaussian_nll(np.zeros((2, 3)), np.zeros((2, 3)), 1.0, eps=0), ValueError, "eps"),
    (lambda: fastmle.mse_loss(np.zeros(3), np.zeros(2)), ValueError, "does not match"),
    (lambda: fastmle.entropy(np.array([0.5, -0.5, 1.0])), ValueError, "non-negative"),
    (lambda: fastmle.kl_div(np.ones((2, 3)), np.ones((3, 3))), ValueError, "broadcast"),
    (lambda: fastmle.entropy(np.ones((2, 3)), axis=(0, 1)), ValueError, "single axis"),
    (lambda: fastmle.entropy(np.ones((2, 3)), axis=2), ValueError, "axis"),
    (lambda: fastmle.perplexity(np.array([])), ValueError, "no tokens"),
    (lambda: fastmle.perplexity(np.ones(3), weights=[1.0, -0.5, 1.0]), ValueError,
     r"weights must be >= 0, got -0.5 at position \(1,\)"),
    (lambda: fastmle.linear_cross_entropy(np.zeros((4, 3)), np.zeros((5, 2)), np.zeros(4, int)), ValueError,
     "same H"),
    (lambda: fastmle.linear_cross_entropy(np.zeros((4, 3)), np.zeros((5, 3)), np.array([0, 1, 2, 9])),
     ValueError, r"class index 9 at position \(3,\)"),
    (lambda: fastmle.linear_cross_entropy(np.zeros((4, 3)), np.zeros((5, 3)), np.zeros(4, int), np.zeros(4)),
     ValueError, r"bias must have shape \(5,\)"),
    (lambda: fastmle.linear_cross_entropy(np.zeros((4, 3)), np.zeros((5, 3)), np.zeros(4, int), chunk_size=0),
     ValueError, "chunk_size"),
    (lambda: fastmle.linear_cross_entropy(np.zeros((4, 3)), np.zeros((5, 3)), np.zeros(4, int), chunk_size=2.7),
     TypeError, "chunk_size must be an integer, got 2.7"),
    (lambda: fastmle.linear_cross_entropy(np.zeros((4, 3)), np.zeros((5, 3)), np.zeros(4, int), return_grad=1),
     TypeError, "return_grad must be True or False, got int 1"),
    (lambda: fastmle.gaussian_nll(np.zeros(3), np.zeros(3), 1.0, full="no"), TypeError,
     "full must be True or False, got str 'no'"),
    (lambda: fastmle.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(3), return_grad="yes"), TypeError,
     "return_grad must be True or False"),
    (lambda: fastmle.mse_loss(np.zeros(3), np.zeros(3), return_grad=None), TypeError,
     "return_grad must be True or False"),
    (lambda: fastmle.glm_loss(np.zeros((3, 2)), np.zeros(3), np.zeros(2), "gaussian", return_grad="no"), TypeError,
     "return_grad must be True or False"),
    (lambda: fastmle.glm_fisher(np.zeros((3, 2)), np.zeros((2, 2)), "multinomial", reference_class=True),
     ValueError, "reference_class must be a class index"),
    (lambda: fastmle.perplexity(np.ones(3), weights=[1.0, np.nan, 1.0]), ValueError,
     "weights contains NaN or infinity"),
    (lambda: fastmle.perplexity(np.ones(3), weights=[1.0, np.inf, 1.0]), ValueError,
     "weights contains NaN or infinity"),
]


@pytest.mark.parametrize("call,exc,match", BAD_OTHERS, ids=[m for _, _, m in BAD_OTHERS])
def test_other_losses_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
