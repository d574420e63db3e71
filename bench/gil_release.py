"""Do the compiled kernels release the GIL? Two Python threads calling
softmax on their own 4000 x 1000 float32 arrays (fastmle on one thread each)
against the same calls made one after the other; median of 5.

    cd /tmp && python <repo>/bench/gil_release.py
"""
import concurrent.futures

import numpy as np

import fastmle
from fastmle.bench import median_times


def main():
    fastmle.set_num_threads(1)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4000, 1000)).astype(np.float32) for _ in range(2)]
    outs = [np.empty_like(x) for x in xs]
    for backend in ("c", "numba"):
        def calls(i):
            for _ in range(40):
                fastmle.softmax(xs[i], axis=1, out=outs[i], backend=backend)

        def concurrent_calls():
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                list(pool.map(calls, [0, 1]))
        t = median_times({"serial": lambda: (calls(0), calls(1)), "threads": concurrent_calls}, 5)
        print(f"{backend}: serial {t['serial'] * 1e3:.0f} ms, 2 Python threads {t['threads'] * 1e3:.0f} ms, "
              f"speed-up {t['serial'] / t['threads']:.2f}")


if __name__ == "__main__":
    main()
