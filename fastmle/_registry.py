"""The one table of kernels that drives the tests, asv, pytest-benchmark and
``python -m fastmle bench``.

Each entry says how to make inputs, how to call the fastmle function with a
given backend, what the numpy "roofline" baseline is (the cheapest pass over
the same memory), and how the peers (scipy, torch) compute the same thing.
Adding a kernel means adding one entry here.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict

import numpy as np


@dataclass(frozen=True)
class Kernel:
    name: str
    family: str
    make_inputs: Callable  # (shape, dtype, rng) -> dict of keyword arguments
    call: Callable  # (inputs, backend) -> result
    baseline: str  # "copy" (np.copyto of the input) or "sum" (np.sum over rows)
    bytes_moved: Callable  # (shape, dtype) -> bytes read + written by one call
    peers: Dict[str, Callable] = field(default_factory=dict)  # name -> (inputs) -> result


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
    ]
}


def _fm():
    import fastmle

    return fastmle


def baseline(kernel, inputs):
    """The numpy roofline operation for a kernel: a callable with no arguments."""
    x = inputs["x"]
    if kernel.baseline == "copy":
        dst = np.empty_like(x)
        return lambda: np.copyto(dst, x)
    return lambda: np.sum(x, axis=-1)


def available_peers(kernel):
    """The peers whose library is installed."""
    import importlib.util

    return {name: fn for name, fn in kernel.peers.items() if importlib.util.find_spec(name) is not None}
