"""The one table of kernels that drives the tests, asv, pytest-benchmark and
``python -m fastmle bench``.

Each entry says how to make inputs, how to call the fastmle function with a
given backend, what the numpy "roofline" baseline is (the cheapest pass over
the same memory), and how the peers (scipy, torch) compute the same thing.
Adding a kernel means adding one entry here.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import numpy as np

ROW_SHAPES = ((32768, 1000), (256, 100000))  # (rows, n), reduced over n


@dataclass(frozen=True)
class Kernel:
    name: str
    family: str
    make_inputs: Callable  # (shape, dtype, rng) -> dict of keyword arguments
    call: Callable  # (inputs, backend) -> result
    baseline: str  # key of BASELINES: the numpy operation the kernel is measured against
    bytes_moved: Callable  # (shape, dtype) -> bytes read + written by one call
    peers: Dict[str, Callable] = field(default_factory=dict)  # name -> (inputs) -> result
    shapes: Tuple[tuple, ...] = ROW_SHAPES  # benchmarked shapes; the first is the default
    smoke_shape: tuple = (64, 100)  # small shape for running the benchmarks as tests
    in_default_bench: bool = True  # False: `python -m fastmle bench` runs it only when named
    track_memory: bool = False  # bench also reports the working memory (numpy allocations)


def _logits(shape, dtype, rng):
    return {"x": rng.standard_normal(shape).astype(dtype)}


def _logits_and_out(shape, dtype, rng):
    # fastmle writes into a preallocated out=, as np.copyto (the roofline)
    # does: a fresh 100 MB result costs its page faults on every call
    inp = _logits(shape, dtype, rng)
    inp["out"] = np.empty_like(inp["x"])
    return inp


def _rw(shape, dtype):  # read x, write an array of the same size
    return 2 * int(np.prod(shape)) * np.dtype(dtype).itemsize


def _r(shape, dtype):  # read x, write one value per row
    return int(np.prod(shape)) * np.dtype(dtype).itemsize + shape[0] * np.dtype(dtype).itemsize


def _scipy(fname):
    def peer(inp):
        import scipy.special

        return getattr(scipy.special, fname)(inp["x"], axis=-1)
    return peer


def _torch(op):
    def peer(inp):
        import torch

        t = inp.setdefault("_torch", torch.from_numpy(inp["x"]))
        return op(torch, t)
    return peer


def _class_targets(shape, dtype, rng):
    inp = _logits(shape, dtype, rng)
    inp["target"] = rng.integers(0, shape[-1], shape[0])
    inp["grad"] = np.empty_like(inp["x"])
    return inp


def _torch_cross_entropy(inp):
    """torch's forward + backward of F.cross_entropy (mean), as in training."""
    import torch

    t = inp.setdefault("_torch", torch.from_numpy(inp["x"]).requires_grad_(True))
    target = inp.setdefault("_torch_target", torch.from_numpy(inp["target"]))
    t.grad = None
    torch.nn.functional.cross_entropy(t, target).backward()
    return t.grad


def _linear_inputs(shape, dtype, rng):
    n, hidden, vocab = shape
    return {"h": rng.standard_normal((n, hidden)).astype(dtype),
            "W": (rng.standard_normal((vocab, hidden)) / np.sqrt(hidden)).astype(dtype),
            "target": rng.integers(0, vocab, n)}


def _linear_bytes(shape, dtype):  # read h and W, write their gradients
    n, hidden, vocab = shape
    return 2 * (n + vocab) * hidden * np.dtype(dtype).itemsize


def _torch_linear_cross_entropy(inp):
    import torch

    h = inp.setdefault("_torch_h", torch.from_numpy(inp["h"]).requires_grad_(True))
    W = inp.setdefault("_torch_W", torch.from_numpy(inp["W"]).requires_grad_(True))
    target = inp.setdefault("_torch_target", torch.from_numpy(inp["target"]))
    h.grad = W.grad = None
    torch.nn.functional.cross_entropy(h @ W.T, target).backward()
    return h.grad, W.grad


KERNELS = {
    k.name: k
    for k in [
        Kernel("softmax", "special", _logits_and_out,
               lambda inp, backend: _fm().softmax(inp["x"], axis=-1, out=inp["out"], backend=backend),
               "copy", _rw,
               {"scipy": _scipy("softmax"), "torch": _torch(lambda torch, t: torch.softmax(t, dim=-1))}),
        Kernel("log_softmax", "special", _logits_and_out,
               lambda inp, backend: _fm().log_softmax(inp["x"], axis=-1, out=inp["out"], backend=backend),
               "copy", _rw,
               {"scipy": _scipy("log_softmax"),
                "torch": _torch(lambda torch, t: torch.log_softmax(t, dim=-1))}),
        Kernel("logsumexp", "special", _logits,
               lambda inp, backend: _fm().logsumexp(inp["x"], axis=-1, backend=backend),
               "sum", _r,
               {"scipy": _scipy("logsumexp"), "torch": _torch(lambda torch, t: torch.logsumexp(t, dim=-1))}),
        Kernel("cross_entropy", "losses", _class_targets,
               lambda inp, backend: _fm().cross_entropy(inp["x"], inp["target"], return_grad=True,
                                                        grad_out=inp["grad"], backend=backend),
               "copy", _rw, {"torch": _torch_cross_entropy}),
        Kernel("linear_cross_entropy", "losses", _linear_inputs,
               lambda inp, backend: _fm().linear_cross_entropy(inp["h"], inp["W"], inp["target"],
                                                               return_grad=True, backend=backend),
               "naive", _linear_bytes, {"torch": _torch_linear_cross_entropy},
               shapes=((8192, 512, 32000),), smoke_shape=(50, 16, 300), in_default_bench=False,
               track_memory=True),
    ]
}


def _fm():
    import fastmle

    return fastmle


def _naive_linear_cross_entropy(inp):
    """What a numpy user writes: logits, softmax, loss, then two matmuls."""
    h, W, target = inp["h"], inp["W"], inp["target"]

    def run():
        z = h @ W.T
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        s = z.sum(axis=1, keepdims=True)
        rows = np.arange(len(target))
        loss = np.mean(np.log(s[:, 0]) - np.log(z[rows, target]))
        z /= s
        z[rows, target] -= 1
        z /= len(target)
        return loss, z @ W, z.T @ h
    return run


def _copy(inp):
    x = inp["x"]
    dst = np.empty_like(x)
    return lambda: np.copyto(dst, x)


# The numpy operation each kernel is measured against: for the row kernels,
# the cheapest pass over the same memory (np.copyto for kernels that write an
# array of the input's size, np.sum for reductions): their roofline.
BASELINES = {
    "copy": _copy,
    "sum": lambda inp: (lambda: np.sum(inp["x"], axis=-1)),
    "naive": _naive_linear_cross_entropy,
}


def baseline(kernel, inputs):
    """The numpy baseline operation for a kernel: a callable with no arguments."""
    return BASELINES[kernel.baseline](inputs)


def family(name):
    """The registered kernels of one family, by name."""
    return [k for k in KERNELS.values() if k.family == name]


def available_peers(kernel):
    """The peers whose library is installed."""
    import importlib.util

    return {name: fn for name, fn in kernel.peers.items() if importlib.util.find_spec(name) is not None}
