"""``python -m fastmle bench``: every kernel x backend x dtype against numpy,
scipy, torch and scikit-learn, timed side by side in one run (median of
repeats).

Implementations are timed round-robin (see round_robin_times). By default
each gets 3 timed calls or, for slow ones, as many as fit in 0.2 s (at least
one), so the default run stays near a minute. Columns: median time per
call, the number of timed calls n, effective bandwidth (bytes read + written per
second), the ratio to the kernel's numpy baseline (for the row kernels
np.copyto of the input for kernels writing an array, np.sum for
reductions, with a row for the copy on as many threads as the kernels
use; np.copyto is not the memory's floor: a copy with streaming stores
took 34-56% of its time on our test machine, see bench/special_compute.py; for
linear_cross_entropy the naive numpy computation, for sgd_epoch one
full-batch forward and gradient pass with BLAS), the speed-up over scipy,
torch, scikit-learn and statsmodels, and for linear_cross_entropy the working memory of
one call (peak numpy allocations minus the returned arrays). Kernels with a
figure of merit (sgd_epoch: the test accuracy reached; fit_mle: the
maximized log-likelihood) report it below their
rows.
"""
import json
import time
import tracemalloc

import numpy as np

from . import _dispatch
from ._config import installed
from ._registry import KERNELS, available_peers, baseline, copy_on_threads

PEER_COLUMNS = ("scipy", "torch", "sklearn", "statsmodels")  # a speed-up column each


def wait_until_quiet(max_pause=0.4, step=0.005):
    """Sleep until no thread of this process burns CPU any more, for at most
    `max_pause` seconds. A runtime's worker threads keep spinning for a
    while after a call and take the cores from whatever runs next: OpenBLAS
    spins for 100-105 ms here (right after a numpy BLAS product, a 2-thread C
    SGD epoch took 137-149 ms against 56 ms after a 0.1 s pause; see
    bench/RESULTS.md), OpenMP runtimes for well under a millisecond. Waiting for the
    process's CPU time to stop growing pauses only as long as needed (the
    limit is above OpenBLAS's spin, which a limit of 0.1 s cut short).
    Quiet means two steps in a row: on a busy machine a spinning thread can
    lose its core for a step (the suite's test of this once saw three waits
    of 30-40 ms end early beside a thread spinning for 0.3 s).
    Returns the seconds waited."""
    waited, quiet_steps = 0.0, 0
    while waited < max_pause and quiet_steps < 2:
        cpu = time.process_time()
        time.sleep(step)
        waited += step
        quiet_steps = quiet_steps + 1 if time.process_time() - cpu < 0.2 * step else 0
    return waited


def round_robin_times(fns, repeat, budget=float("inf"), rewarm_below=0.1, rewarm_after=0.02):
    """{name: [seconds of each timed call]} for the callables in `fns`,
    timed round-robin: each round calls every implementation once, so a
    burst of load from elsewhere on a shared machine hits all of them alike,
    and each round starts one implementation later.

    One untimed warm-up call each first: compilation, imports, and the
    first touch of memory at a new size, which costs far more than the work
    (scipy's log_softmax of 32768 x 1000 float64: 1.75 s the first time,
    0.16 s after). Each implementation is then timed `repeat` times, or
    fewer once its timed calls add up to `budget` seconds (at least once).

    Each timed call is measured in the steady state of calls made back to
    back, as in a training loop: it follows wait_until_quiet, and since on a
    virtual machine the first milliseconds after idle cores run slowly
    (2-thread softmax of 32768 x 1000 float32: 12.2-16.5 ms right after a
    0.1 s sleep, 8.6-8.7 ms after 5 ms or none), an untimed call of the
    same implementation comes between a pause of `rewarm_after` seconds or
    more and the timed call, for calls shorter than `rewarm_below` seconds.
    Longer calls absorb the wake-up (a 137 ms Fisher accumulation took
    138.4 ms after a 0.1 s sleep), and calling them twice would double the
    run time."""
    last = {}  # seconds of each one's latest call
    for name, fn in fns.items():
        wait_until_quiet()
        t0 = time.perf_counter()
        fn()
        last[name] = time.perf_counter() - t0
    times = {name: [] for name in fns}

    def done(name):
        return len(times[name]) >= repeat or sum(times[name]) >= budget

    names = list(fns)
    r = 0
    while not all(map(done, names)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if done(name):
                continue
            if wait_until_quiet() >= rewarm_after and last[name] < rewarm_below:
                fns[name]()
            t0 = time.perf_counter()
            fns[name]()
            last[name] = time.perf_counter() - t0
            times[name].append(last[name])
        r += 1
    return times


def median_times(fns, repeat, **options):
    """{name: median seconds} of round_robin_times."""
    return {name: float(np.median(t)) for name, t in round_robin_times(fns, repeat, **options).items()}


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


class ImplementationError(Exception):
    """An implementation raised on the benchmark's inputs (a --shape too small
    for its problem: one class, separable data): run() reports it in the
    table, names the implementation and goes on."""

    def __init__(self, implementation, error):
        super().__init__(f"{implementation} failed: {type(error).__name__}: {error}")
        self.implementation = implementation


def _naming(implementation, fn):
    """fn, whose exceptions become an ImplementationError naming implementation."""
    def call(*args):
        try:
            return fn(*args)
        except Exception as exc:
            raise ImplementationError(implementation, exc) from exc
    return call


def report_quality(kernel, inputs):
    """Print the kernel's figure of merit (e.g. accuracy reached) per backend;
    returns {"fastmle.<backend>": {"measure", "value", "reference"}} for the
    JSON records."""
    out = {}
    for name in _dispatch.available_backends():
        try:
            what, value, reference = kernel.quality(inputs, name)
        except ModuleNotFoundError as exc:  # the reference's library (scikit-learn, statsmodels): optional
            package = {"sklearn": "scikit-learn"}.get(exc.name, exc.name)
            print(f"  {kernel.name}: figure of merit skipped: it needs {exc.name} (pip install {package})")
            return out
        except Exception as exc:
            raise ImplementationError(f"the figure of merit of fastmle.{name}", exc) from exc
        print(f"  {kernel.name} fastmle.{name}: {what}: {value:.4f} vs {reference:.4f} "
              f"(ratio {value / reference:.4f})")
        out[f"fastmle.{name}"] = {"measure": what, "value": float(value), "reference": float(reference)}
    return out


def implementations(kernel, inputs):
    """{row name: callable} for one kernel on `inputs`: its numpy baseline
    (and, for kernels measured against np.copyto, the copy done by as many
    threads as the kernels use), every
    available fastmle backend and every installed peer."""
    fns = {"numpy " + kernel.baseline: baseline(kernel, inputs)}
    threads = _dispatch.get_num_threads()
    if kernel.baseline == "copy" and threads > 1:
        fns[f"numpy copy {threads}thr"] = copy_on_threads(inputs, threads)
    for name in _dispatch.available_backends():
        fns["fastmle." + name] = lambda name=name: kernel.call(inputs, name)
    for name, peer in available_peers(kernel).items():
        fns[name] = lambda peer=peer: peer(inputs)
    return fns


def measure(kernel, shape, dtype, repeat, budget, rng):
    """({implementation: [seconds]}, {implementation: extra bytes or None},
    inputs) for one kernel, shape and dtype, timed by round_robin_times.
    Working
    memory (extra_allocation) is measured for kernels with track_memory, and
    only for numpy-based implementations (tracemalloc does not see torch's
    allocator)."""
    inputs = kernel.make_inputs(shape, dtype, rng)
    fns = {name: _naming(name, fn) for name, fn in implementations(kernel, inputs).items()}
    times = round_robin_times(fns, repeat, budget)
    extra = {name: (extra_allocation(fn) if kernel.track_memory and name.startswith(("numpy", "fastmle"))
                    else None) for name, fn in fns.items()}
    return times, extra, inputs


def parse_shape(text):
    """"32768x1000" -> (32768, 1000); ValueError unless sizes >= 1 joined by
    "x" (a size of 0 passed here, then failed inside a kernel's peer)."""
    parts = text.lower().split("x")
    if not all(part.strip().isdigit() and int(part) >= 1 for part in parts):
        raise ValueError(f"not a shape: {text!r}")
    return tuple(int(v) for v in parts)


def run(args):
    names = args.kernels or [k.name for k in KERNELS.values() if k.in_default_bench]
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        raise SystemExit(f"unknown kernel(s) {unknown}; known: {', '.join(KERNELS)}")
    shape_arg = parse_shape(args.shape) if isinstance(args.shape, str) else args.shape
    if shape_arg and not any(len(KERNELS[n].shapes[0]) == len(shape_arg) for n in names):
        raise SystemExit(f"--shape {'x'.join(map(str, shape_arg))} has {len(shape_arg)} dimensions, but "
                         f"none of the kernels {names} takes that many (their shapes: "
                         f"{', '.join(n + ' ' + 'x'.join(map(str, KERNELS[n].shapes[0])) for n in names)})")
    known_dtypes = sorted({d for k in KERNELS.values() for d in k.dtypes})
    if any(d not in known_dtypes for d in args.dtypes):
        raise SystemExit(f"unknown dtype(s) {[d for d in args.dtypes if d not in known_dtypes]}; "
                         f"known: {', '.join(known_dtypes)}")
    if not any(d in KERNELS[n].dtypes for n in names for d in args.dtypes):
        raise SystemExit(f"none of the kernels {names} runs in the dtypes {args.dtypes}; they take "
                         f"{sorted({d for n in names for d in KERNELS[n].dtypes})}")
    if args.threads:
        _dispatch.set_num_threads(args.threads)
    threads = _dispatch.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    if args.plot and not installed("matplotlib"):  # said before, not after, the timing
        print("--plot needs matplotlib (pip install matplotlib): no plot will be made")
        args.plot = None
    limit = f", at most {args.budget:g} s of timed calls each" if np.isfinite(args.budget) else ""
    print(f"fastmle bench: {threads} threads, median of {args.repeat}{limit} "
          f"(backends: {', '.join(_dispatch.available_backends())})")
    missing = sorted({p for n in names for p in KERNELS[n].peers} - {p for n in names
                                                                       for p in available_peers(KERNELS[n])})
    if missing:
        print(f"not installed, so not compared (their columns show -): {', '.join(missing)}")
    header = (f"{'kernel':<20} {'shape':<15} {'dtype':<8} {'implementation':<16} {'ms':>9} {'n':>2} "
              f"{'GB/s':>7} {'x baseline':>10} {'vs scipy':>9} {'vs torch':>9} {'extra MiB':>9} "
              f"{'vs sklearn':>10} {'vs statsm.':>10}")
    print(header)
    print("-" * len(header))
    records, failures = [], []
    for name in names:
        kernel = KERNELS[name]
        shape = kernel.shapes[0]
        if shape_arg and len(shape_arg) == len(shape):
            shape = shape_arg
        shape_text = "x".join(map(str, shape))
        for dtype in [d for d in args.dtypes if d in kernel.dtypes]:
            try:
                # inputs from seed 0 for each row, as asv and pytest-benchmark draw them (one generator
                # shared by the rows had given a row other data when another kernel ran before it)
                samples, extra, inputs = measure(kernel, shape, np.dtype(dtype), args.repeat, args.budget,
                                                 np.random.default_rng(0))
            except ImplementationError as exc:
                failures.append(f"{name} {shape_text} {dtype}: {exc}")
                print(f"{name:<20} {shape_text:<15} {dtype:<8} not measured: {exc}")
                continue
            times = {impl: float(np.median(t)) for impl, t in samples.items()}
            nbytes = kernel.bytes_moved(shape, dtype)
            roof = times["numpy " + kernel.baseline]
            for impl, t in times.items():
                rec = {"kernel": name, "dtype": dtype, "shape": list(shape), "threads": threads,
                       "implementation": impl, "seconds": t, "repeats": len(samples[impl]),
                       "GB/s": nbytes / t / 1e9, "x_baseline": t / roof,
                       **{f"speedup_vs_{peer}": times[peer] / t if peer in times else None
                          for peer in PEER_COLUMNS},
                       "extra_bytes": extra[impl]}
                records.append(rec)
                fmt = lambda v, scale=1: f"{v / scale:9.2f}" if v is not None else f"{'-':>9}"
                print(f"{name:<20} {shape_text:<15} {dtype:<8} {impl:<16} {t * 1e3:9.2f} "
                      f"{rec['repeats']:2d} {rec['GB/s']:7.1f} {rec['x_baseline']:10.2f} "
                      f"{fmt(rec['speedup_vs_scipy'])} {fmt(rec['speedup_vs_torch'])} "
                      f"{fmt(rec['extra_bytes'], 2**20)} {fmt(rec['speedup_vs_sklearn']):>10} "
                      f"{fmt(rec['speedup_vs_statsmodels']):>10}")
            if kernel.quality is not None and args.quality:
                try:
                    quality = report_quality(kernel, inputs)
                except ImplementationError as exc:
                    failures.append(f"{name} {shape_text} {dtype}: {exc}")
                    print(f"  {name}: {exc}")
                    continue
                for rec in records[-len(times):]:  # this kernel and dtype's rows
                    rec["quality"] = quality.get(rec["implementation"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot(records, args.plot)
    if failures:  # the exit status says the table is incomplete
        print(f"{len(failures)} not measured:\n  " + "\n  ".join(failures))
        return 1
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
