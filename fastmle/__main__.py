"""Command line: ``python -m fastmle info``, ``python -m fastmle compile`` and ``python -m fastmle bench``."""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastmle", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions, backends, SIMD level and threads")
    sub.add_parser("compile", help="compile every Numba kernel into Numba's cache now (once after "
                                   "installing: minutes; later runs load it in under a second)")
    bench = sub.add_parser("bench", help="time every kernel x backend x dtype against numpy, scipy, "
                                         "torch and scikit-learn")
    bench.add_argument("--kernels", nargs="+",
                       help="kernel names (default: all but the slow linear_cross_entropy)")
    bench.add_argument("--shape", default=None,
                       help="e.g. 32768x1000 (rows x classes), 8192x512x32000 (N x H x V for "
                            "linear_cross_entropy) or 200000x100x10 (samples x features x classes for "
                            "sgd_epoch); applies to every selected kernel whose shapes have that many "
                            "dimensions (default: each kernel's first registered shape)")
    bench.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    bench.add_argument("--repeat", type=int, default=None,
                       help="timed calls per implementation; the median is reported (default 3)")
    bench.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                       help="stop timing an implementation once its timed calls add up to this, "
                            "after at least one (default: 0.2 s with the default --repeat, no limit "
                            "when --repeat is given)")
    bench.add_argument("--threads", type=int, default=None, help="threads for fastmle and torch")
    bench.add_argument("--no-quality", dest="quality", action="store_false",
                       help="skip the figures of merit (sgd_epoch's accuracy after 5 epochs against "
                            "scikit-learn's LogisticRegression, fit_mle's log-likelihood against "
                            "statsmodels'; skipped anyway where those are not installed)")
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bench.add_argument("--plot", metavar="PATH.png", help="also draw them (needs matplotlib)")
    args = parser.parse_args(argv)

    if args.command == "info":
        from . import show_config

        show_config()
        return 0
    if args.command == "compile":
        import time

        from ._dispatch import compile_kernels, unavailable_reason

        t0 = time.perf_counter()
        families = compile_kernels()
        if not families:
            print(f"numba backend unavailable ({unavailable_reason('numba')}): nothing to compile")
        else:
            print(f"compiled or loaded the Numba kernels of {', '.join(families)} "
                  f"in {time.perf_counter() - t0:.1f} s")
        return 0
    from .bench import run

    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.budget is not None and not args.budget > 0:
        parser.error(f"--budget must be a positive number of seconds, got {args.budget:g}")
    if args.shape is not None:
        from .bench import parse_shape

        try:
            args.shape = parse_shape(args.shape)
        except ValueError:
            parser.error(f"--shape must be sizes >= 1 joined by 'x', e.g. 32768x1000 or 200000x100x10; "
                         f"got {args.shape!r}")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        # found now, not after minutes of timing
        folder = os.path.dirname(os.path.abspath(path)) if path else None
        if folder and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
            parser.error(f"{option} {path}: {folder} is not a folder this process can write to")
    if args.threads is not None:
        from ._dispatch import max_threads

        if not 1 <= args.threads <= max_threads():
            parser.error(f"--threads must be in [1, {max_threads()}], got {args.threads}")
    if args.budget is None:
        args.budget = 0.2 if args.repeat is None else float("inf")
    if args.repeat is None:
        args.repeat = 3
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
