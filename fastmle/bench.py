"""``python -m fastmle bench``: every kernel x backend x dtype against numpy,
scipy, torch and scikit-learn, timed side by side in one run (median of
repeats).

Implementations are timed round-robin (see median_times). Columns: median
time per call, effective bandwidth (bytes read + written per
second), the ratio to the kernel's numpy baseline (for the row kernels the
roofline: np.copyto of the input for kernels writing an array, np.sum for
reductions, so 1.0 means as fast as just moving the memory, with a row
for the copy on as many threads as the kernels use; for
linear_cross_entropy the naive numpy computation, for sgd_epoch one
full-batch forward and gradient pass with BLAS), the speed-up over scipy,
torch and scikit-learn, and for linear_cross_entropy the working memory of
one call (peak numpy allocations minus the returned arrays). Kernels with a
figure of merit (sgd_epoch: the test accuracy reached) report it below their
rows.
"""
import json
import time
import tracemalloc

import numpy as np

from . import _dispatch
from ._registry import KERNELS, available_peers, baseline, copy_on_threads


def median_times(fns, repeat, pause=0.1, rewarm_below=0.25):
    """{name: median seconds} for the callables in `fns`, timed round-robin:
    each round calls every implementation once, so a burst of load from
    elsewhere on a shared machine hits all of them alike, and each round
    starts one implementation later.

    Each timed call is measured in the steady state of calls made back to
    back, as in a training loop:
    - it follows a pause of `pause` seconds: a runtime's worker threads keep
      spinning for a while after a call and take the cores from whatever runs
      next (right after a numpy BLAS product, a 2-thread C SGD epoch took
      137-149 ms against 56 ms after a 0.1 s pause; see the README);
    - the pause leaves the cores idle, and on a virtual machine the first
      milliseconds after that run slowly (2-thread softmax of 32768 x 1000
      float32: 15.1-16.5 ms right after a 0.1 s sleep, 9.1-9.4 ms back to
      back), so an untimed call of the same implementation comes between the
      pause and the timed call, for calls shorter than `rewarm_below` seconds
      (longer ones absorb the wake-up, and would double the run time).
    One warm-up call each first (compilation, page faults)."""
    last = {}  # seconds of each one's latest call
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        last[name] = time.perf_counter() - t0
    names = list(fns)
    times = {name: [] for name in fns}
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(pause)
            if last[name] < rewarm_below:
                fns[name]()
            t0 = time.perf_counter()
            fns[name]()
            last[name] = time.perf_counter() - t0
            times[name].append(last[name])
    return {name: float(np.median(t)) for name, t in times.items()}


def extra_allocation(fn):
    """Peak bytes of numpy (and Python) allocations during one call of fn,
    beyond what was allocated before it and beyond the arrays it returns:
    the working memory the call needed (tracemalloc sees numpy's buffers)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    returned = result if isinstance(result, (tuple, list)) else (result,)
    return peak - before - sum(a.nbytes for a in returned if isinstance(a, np.ndarray))


def report_quality(kernel, inputs):
    """Print the kernel's figure of merit (e.g. accuracy reached) per backend."""
    for name in _dispatch.available_backends():
        what, value, reference = kernel.quality(inputs, name)
        print(f"  {kernel.name} fastmle.{name}: {what}: {value:.4f} vs {reference:.4f} "
              f"(ratio {value / reference:.4f})")


def measure(kernel, shape, dtype, repeat, rng):
    """({implementation: seconds}, {implementation: extra bytes or None}) for
    one kernel, shape and dtype. Working memory (extra_allocation) is measured
    for kernels with track_memory, and only for numpy-based implementations
    (tracemalloc does not see torch's allocator). Kernels measured against
    np.copyto also get a row for the copy done by as many threads as the
    kernels use: the roofline on those cores."""
    inputs = kernel.make_inputs(shape, dtype, rng)
    fns = {"numpy " + kernel.baseline: baseline(kernel, inputs)}
    threads = _dispatch.get_num_threads()
    if kernel.baseline == "copy" and threads > 1:
        fns[f"numpy copy {threads}thr"] = copy_on_threads(inputs, threads)
    for name in _dispatch.available_backends():
        fns["fastmle." + name] = lambda name=name: kernel.call(inputs, name)
    for name, peer in available_peers(kernel).items():
        fns[name] = lambda peer=peer: peer(inputs)
    times = median_times(fns, repeat)
    extra = {name: (extra_allocation(fn) if kernel.track_memory and name.startswith(("numpy", "fastmle"))
                    else None) for name, fn in fns.items()}
    return times, extra, inputs


def _parse_shape(text):
    return tuple(int(v) for v in text.lower().split("x"))


def run(args):
    names = args.kernels or [k.name for k in KERNELS.values() if k.in_default_bench]
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise SystemExit(f"unknown kernel(s) {unknown}; known: {', '.join(KERNELS)}")
    if args.threads:
        _dispatch.set_num_threads(args.threads)
    threads = _dispatch.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    print(f"fastmle bench: {threads} threads, median of {args.repeat} "
          f"(backends: {', '.join(_dispatch.available_backends())})")
    header = (f"{'kernel':<20} {'shape':<15} {'dtype':<8} {'implementation':<16} {'ms':>9} {'GB/s':>7} "
              f"{'x baseline':>10} {'vs scipy':>9} {'vs torch':>9} {'extra MiB':>9} {'vs sklearn':>10} "
              f"{'vs statsm.':>10}")
    print(header)
    print("-" * len(header))
    records = []
    for name in names:
        kernel = KERNELS[name]
        shape = kernel.shapes[0]
        if args.shape and len(_parse_shape(args.shape)) == len(shape):
            shape = _parse_shape(args.shape)
        shape_text = "x".join(map(str, shape))
        for dtype in [d for d in args.dtypes if d in kernel.dtypes]:
            times, extra, inputs = measure(kernel, shape, np.dtype(dtype), args.repeat, rng)
            nbytes = kernel.bytes_moved(shape, dtype)
            roof = times["numpy " + kernel.baseline]
            for impl, t in times.items():
                rec = {"kernel": name, "dtype": dtype, "shape": list(shape), "threads": threads,
                       "implementation": impl, "seconds": t, "GB/s": nbytes / t / 1e9,
                       "x_baseline": t / roof,
                       "speedup_vs_scipy": times["scipy"] / t if "scipy" in times else None,
                       "speedup_vs_torch": times["torch"] / t if "torch" in times else None,
                       "speedup_vs_sklearn": times["sklearn"] / t if "sklearn" in times else None,
                       "speedup_vs_statsmodels": (times["statsmodels"] / t if "statsmodels" in times
                                                  else None),
                       "extra_bytes": extra[impl]}
                records.append(rec)
                fmt = lambda v, scale=1: f"{v / scale:9.2f}" if v is not None else f"{'-':>9}"
                print(f"{name:<20} {shape_text:<15} {dtype:<8} {impl:<16} {t * 1e3:9.2f} {rec['GB/s']:7.1f} "
                      f"{rec['x_baseline']:10.2f} {fmt(rec['speedup_vs_scipy'])} "
                      f"{fmt(rec['speedup_vs_torch'])} {fmt(rec['extra_bytes'], 2**20)} "
                      f"{fmt(rec['speedup_vs_sklearn']):>10} {fmt(rec['speedup_vs_statsmodels']):>10}")
            if kernel.quality is not None and args.quality:
                report_quality(kernel, inputs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot(records, args.plot)
    return 0


def plot(records, path):
    """Bar chart of time / numpy baseline per kernel/dtype/implementation (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib (pip install matplotlib); skipped")
        return
    groups = sorted({(r["kernel"], r["dtype"]) for r in records})
    impls = list(dict.fromkeys(r["implementation"] for r in records))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        vals = [next((r["x_baseline"] for r in records if (r["kernel"], r["dtype"]) == g
                      and r["implementation"] == impl), np.nan) for g in groups]
        ax.bar(np.arange(len(groups)) + k * width, vals, width, label=impl)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{k}\n{d}" for k, d in groups])
    ax.set_yscale("log")
    ax.set_ylabel("time / numpy baseline (lower is better)")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
