"""The numpy reference and every backend against torch.nn.functional, which
defines the semantics of the losses (skipped only when torch is not
installed; `make test` installs it)."""
import numpy as np
import pytest

import fastmle

from cases import assert_same, hard_targets, option_grid, special_rows

torch = pytest.importorskip("torch", reason="torch not installed: comparisons with torch skipped")
F = torch.nn.functional


def torch_grad(fn, *arrays):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4, 2), (5,)], ids=["2d", "4d", "unbatched"])
@pytest.mark.parametrize("soft", [False, True], ids=["class-index", "class-prob"])
def test_cross_entropy_matches_torch(dtype, rng, shape, soft, backend):
    x = rng.standard_normal(shape).astype(dtype)
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    if soft:
        target = rng.dirichlet(np.ones(n_classes), int(np.prod(shape)) // n_classes).astype(dtype)
        target = np.moveaxis(target.reshape((shape[0],) + shape[2:] + (n_classes,)), -1, 1) \
            if len(shape) > 1 else target.reshape(shape)
    else:
        target = rng.integers(0, n_classes, shape[:1] + shape[2:] if len(shape) > 1 else ())
        if target.ndim:
            target.reshape(-1)[::3] = -100
    for _, kw in option_grid(n_classes, rng, dtype):
        tkw = dict(kw, weight=None if kw["weight"] is None else torch.tensor(kw["weight"]))
        want, (want_grad,) = torch_grad(lambda t: F.cross_entropy(t, torch.tensor(target), **tkw), x)
        loss, grad = fastmle.cross_entropy(x, target, return_grad=True, backend=backend, **kw)
        rtol = 2e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(loss, want, rtol=rtol, atol=rtol, err_msg=str(kw))
        np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=rtol, err_msg=str(kw))


def test_nll_loss_matches_torch(dtype, rng, backend):
    lp = np.log(rng.dirichlet(np.ones(7), 9)).astype(dtype)
    y = hard_targets(9, 7, rng)
    for _, kw in option_grid(7, rng, dtype):
        if kw["label_smoothing"]:
            continue  # torch's nll_loss has no label smoothing
        kw = {k: v for k, v in kw.items() if k != "label_smoothing"}
        tkw = dict(kw, weight=None if kw["weight"] is None else torch.tensor(kw["weight"]))
        want, (want_grad,) = torch_grad(lambda t: F.nll_loss(t, torch.tensor(y), **tkw), lp)
        loss, grad = fastmle.nll_loss(lp, y, return_grad=True, backend=backend, **kw)
        np.testing.assert_allclose(loss, want, rtol=1e-6)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-7)


def test_special_values_propagate_as_in_torch(dtype, backend):
    x = special_rows(5, dtype)
    y = np.array([0, 1, 2, 0, 1, 2, 3, 4])
    want, (want_grad,) = torch_grad(lambda t: F.cross_entropy(t, torch.tensor(y), reduction="none"), x)
    loss, grad = fastmle.cross_entropy(x, y, reduction="none", return_grad=True, backend=backend)
    assert_same(loss, want, 1e-5, 1e-6, err="loss")
    assert_same(grad, want_grad, 1e-5, 1e-6, err="grad")


def test_bce_and_gaussian_match_torch(dtype, rng, backend):
    x = np.r_[rng.standard_normal(30) * 20, [0.0, 150.0, -150.0]].astype(dtype).reshape(3, 11)
    t = rng.random((3, 11)).astype(dtype)
    pw = (rng.random(11) * 3).astype(dtype)
    w = rng.random((3, 1)).astype(dtype)
    want, (want_grad,) = torch_grad(lambda a: F.binary_cross_entropy_with_logits(
        a, torch.tensor(t), weight=torch.tensor(w), pos_weight=torch.tensor(pw)), x)
    loss, grad = fastmle.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, return_grad=True,
                                                          backend=backend)
    np.testing.assert_allclose(loss, want, rtol=2e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-9)
    p, tg = rng.standard_normal((2, 4, 3)).astype(dtype)
    v = (rng.random((4, 1)) + 0.1).astype(dtype)
    for full in [False, True]:
        want, (gp, gv) = torch_grad(
            lambda a, b: F.gaussian_nll_loss(a, torch.tensor(tg), b, full=full), p, v)
        loss, grad_p, grad_v = fastmle.gaussian_nll(p, tg, v, full=full, return_grad=True, backend=backend)
        np.testing.assert_allclose(loss, want, rtol=2e-6)
        np.testing.assert_allclose(grad_p, gp, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(grad_v, gv, rtol=1e-5, atol=1e-8)
    want, (g,) = torch_grad(lambda a: F.mse_loss(a, torch.tensor(t)), x)
    loss, grad = fastmle.mse_loss(x, t, return_grad=True, backend=backend)
    np.testing.assert_allclose(loss, want, rtol=2e-6)
    np.testing.assert_allclose(grad, g, rtol=1e-5, atol=1e-9)


def test_linear_cross_entropy_matches_torch(rng):
    h = rng.standard_normal((20, 8))
    W = rng.standard_normal((30, 8))
    b = rng.standard_normal(30)
    y = hard_targets(20, 30, rng)
    th, tW, tb = (torch.tensor(a, requires_grad=True) for a in (h, W, b))
    loss = F.cross_entropy(th @ tW.T + tb, torch.tensor(y), label_smoothing=0.2)
    loss.backward()
    got = fastmle.linear_cross_entropy(h, W, y, b, label_smoothing=0.2, return_grad=True, chunk_size=6)
    np.testing.assert_allclose(got[0], loss.item(), rtol=1e-13)
    for g, t in zip(got[1:], (th, tW, tb)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=1e-15)
