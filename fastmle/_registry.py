"""The one table of kernels that drives the tests, asv, pytest-benchmark and
``python -m fastmle bench``.

Each entry says how to make inputs, how to call the fastmle function with a
given backend, what numpy baseline it is measured against (for the row
kernels a plain numpy pass over the same memory), and how the peers (scipy, torch) compute the same thing.
Adding a kernel means adding one entry here.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ._config import installed

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
    dtypes: Tuple[str, ...] = ("float32", "float64")  # the dtypes it is benchmarked in
    # (inputs, backend) -> (what, fastmle's value, reference value): a figure
    # of merit beside the timing (e.g. the accuracy reached), or None
    quality: Optional[Callable] = None


def _logits(shape, dtype, rng):
    return {"x": rng.standard_normal(shape, dtype=dtype)}


def _logits_and_out(shape, dtype, rng):
    # fastmle writes into a preallocated out=, as np.copyto (the baseline)
    # does: a fresh 100 MB result costs its page faults on every call
    inp = _logits(shape, dtype, rng)
    inp["out"] = np.empty_like(inp["x"])
    return inp


def _elementwise_bytes(reads, writes):
    """bytes_moved of a kernel that reads `reads` and writes `writes` arrays of the input's size."""
    def nbytes(shape, dtype):
        return (reads + writes) * int(np.prod(shape)) * np.dtype(dtype).itemsize
    return nbytes


_rw = _elementwise_bytes(1, 1)  # read x, write an array of the same size


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


def _torch_loss(fname):
    """torch's forward + backward of torch.nn.functional.<fname>(x, target)
    (mean), as in training."""
    def peer(inp):
        import torch

        t = inp.setdefault("_torch", torch.from_numpy(inp["x"]).requires_grad_(True))
        target = inp.setdefault("_torch_target", torch.from_numpy(inp["target"]))
        t.grad = None
        getattr(torch.nn.functional, fname)(t, target).backward()
        return t.grad
    return peer


def _bernoulli(shape, dtype, rng):
    """Logits and 0/1 targets (elementwise: the shape's elements are independent)."""
    inp = _logits(shape, dtype, rng)
    inp["target"] = (rng.random(shape) < 0.5).astype(dtype)
    inp["grad"] = np.empty_like(inp["x"])
    return inp


def _gaussian(shape, dtype, rng):
    """Predictions, targets and one positive variance per element."""
    inp = _logits(shape, dtype, rng)
    inp["target"] = rng.standard_normal(shape, dtype=dtype)
    inp["var"] = rng.uniform(0.5, 2.0, shape).astype(dtype)
    inp["grad"] = np.empty_like(inp["x"])
    inp["grad_var"] = np.empty_like(inp["var"])
    return inp


def _torch_gaussian_nll(inp):
    """torch's forward + backward of F.gaussian_nll_loss (mean), gradients
    for the predictions and the variances, as fastmle's return_grad=True."""
    import torch

    x = inp.setdefault("_torch", torch.from_numpy(inp["x"]).requires_grad_(True))
    var = inp.setdefault("_torch_var", torch.from_numpy(inp["var"]).requires_grad_(True))
    target = inp.setdefault("_torch_target", torch.from_numpy(inp["target"]))
    x.grad = var.grad = None
    torch.nn.functional.gaussian_nll_loss(x, target, var).backward()
    return x.grad, var.grad


def _probabilities(shape, dtype, rng):
    """Rows of positive weights (normalized by the kernels, as scipy.stats.entropy)."""
    return {"x": rng.random(shape, dtype=dtype), "q": rng.random(shape, dtype=dtype)}


def _scipy_stats(with_q):
    def peer(inp):
        import scipy.stats

        return scipy.stats.entropy(inp["x"], inp["q"] if with_q else None, axis=-1)
    return peer


def _r2(shape, dtype):  # read two arrays, write one value per row
    return _r(shape, dtype) + int(np.prod(shape)) * np.dtype(dtype).itemsize


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


def _glm_problem(shape, dtype, rng):
    """A multinomial problem with a known generating model: train and test
    sets from softmax(X W) with Gumbel noise (the issue's benchmark: 200,000
    x 100, 10 classes)."""
    n, d, K = shape
    W = rng.standard_normal((d, K)) * (2.0 / np.sqrt(d))
    X = rng.standard_normal((n + max(n // 4, 1), d))  # a test set of at least one row
    y = np.argmax(X @ W + rng.gumbel(size=(len(X), K)), axis=1)
    X = X.astype(dtype)
    return {"X": X[:n], "y": y[:n], "X_test": X[n:], "y_test": y[n:], "batch_size": 32}


def _glm_bytes(shape, dtype):  # read X once
    n, d, K = shape
    return n * d * np.dtype(dtype).itemsize


def _sgd_one_epoch(inp, backend):
    return _fm().sgd_fit(inp["X"], inp["y"], "multinomial", batch_size=inp["batch_size"], max_epochs=1,
                         tol=None, random_state=0, backend=backend)


def _sklearn_sgd_epoch(inp):
    """scikit-learn's SGDClassifier(loss="log_loss"), one epoch (one-vs-rest,
    one sample per step: what it offers for this likelihood), fitting its
    binary problems on as many threads as fastmle's kernels use (n_jobs;
    its default, one, took 1.9x as long on two cores)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDClassifier(loss="log_loss", max_iter=1, tol=None, random_state=0,
                             n_jobs=_fm().get_num_threads()).fit(inp["X"], inp["y"])


def _sgd_accuracy(inp, backend):
    """Test accuracy after 5 epochs with default settings, and that of
    scikit-learn's LogisticRegression optimum (unpenalized) on the same data."""
    fit = _fm().sgd_fit(inp["X"], inp["y"], "multinomial", max_epochs=5, random_state=0, backend=backend)
    scores = inp["X_test"] @ fit.coef + fit.intercept
    accuracy = float(np.mean(fit.classes[np.argmax(scores, axis=1)] == inp["y_test"]))
    if "_lr_accuracy" not in inp:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=np.inf, max_iter=1000).fit(inp["X"], inp["y"])
        inp["_lr_accuracy"] = float(lr.score(inp["X_test"], inp["y_test"]))
    return "test accuracy after 5 epochs vs LogisticRegression", accuracy, inp["_lr_accuracy"]


def _fisher_problem(shape, dtype, rng):
    """Multinomial coefficients and data (the issue's benchmark: 20,000 x
    100, 10 classes, no intercept: P = 1000)."""
    n, d, K = shape
    return {"X": rng.standard_normal((n, d), dtype=dtype),
            "coef": rng.standard_normal((d, K)) * (1.0 / np.sqrt(d))}


def _fisher_bytes(shape, dtype):  # read X, write the P x P matrix
    n, d, K = shape
    return n * d * np.dtype(dtype).itemsize + (K * d) ** 2 * 8


def _scores(shape, dtype, rng):
    """Per-sample score vectors, accumulated in batches of 2000 (the issue's
    benchmark: 20,000 x 1000)."""
    return {"S": rng.standard_normal(shape, dtype=dtype), "batch": 2000}


def _accumulate(inp, backend):
    S, batch = inp["S"], inp["batch"]
    acc = _fm().FisherAccumulator(S.shape[1], dtype=S.dtype, backend=backend)
    for b in range(0, len(S), batch):
        acc.update(S[b:b + batch])
    return acc


def _scores_bytes(shape, dtype):  # read S, update the P x P matrix once per batch (a last short one too)
    n, P = shape
    return (n * P + -(-n // 2000) * P * P) * np.dtype(dtype).itemsize


def _mle_problem(shape, dtype, rng):
    """A multinomial problem drawn from its model, fitted with class 0 as the
    baseline. The issue's benchmark, 100,000 x 50 with 5 classes, is the
    second registered shape (`--kernels fit_mle --shape 100000x50x5`): its
    fits take seconds each, so the default bench uses 20,000 x 50."""
    n, d, K = shape
    X = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, K)) * (1.0 / np.sqrt(d))
    y = np.argmax(X @ W + rng.gumbel(size=(n, K)), axis=1)
    return {"X": X, "y": y}


def _kept_fit(inp, backend, family, **options):
    """fit_mle on the inputs, kept by backend: the bench's figure of merit
    reads it (no second fit)."""
    fit = _fm().fit_mle(inp["X"], inp["y"], family, backend=backend, **options)
    inp.setdefault("_fits", {})[backend] = fit
    return fit


def _fit_mle(inp, backend):
    return _kept_fit(inp, backend, "multinomial", reference_class=0)


def _with_constant(inp):
    """X with statsmodels' column of ones, built on the first call only (the
    warm-up: setdefault had copied X inside every timed call)."""
    if "_Xc" not in inp:
        import statsmodels.api as sm

        inp["_Xc"] = sm.add_constant(inp["X"], prepend=False)
    return inp["_Xc"]


def _statsmodels_mnlogit(inp):
    """statsmodels' MNLogit (Newton, its default), on the same data with a
    constant column: the same model and parameterization."""
    import statsmodels.api as sm

    Xc = _with_constant(inp)
    inp["_statsmodels"] = result = sm.MNLogit(inp["y"], Xc).fit(disp=0)  # (for the figure of merit)
    return result


def _rate_problem(shape, dtype, rng):
    """Counts over unequal exposures (1 to 100 units: time at risk,
    population), a Poisson rate model drawn from itself, fitted with
    exposure=."""
    n, d, _ = shape
    X = rng.standard_normal((n, d)).astype(dtype)
    exposure = rng.uniform(1.0, 100.0, n)
    y = rng.poisson(exposure * np.exp(X @ (rng.standard_normal(d) * (0.5 / np.sqrt(d))) - 3.0))
    return {"X": X, "y": y, "exposure": exposure}


def _fit_rate(inp, backend):
    return _kept_fit(inp, backend, "poisson", exposure=inp["exposure"])


def _statsmodels_poisson_rate(inp):
    """statsmodels' GLM (Poisson, IRLS, its default) with the same exposure
    and a constant column."""
    import statsmodels.api as sm

    Xc = _with_constant(inp)
    inp["_statsmodels"] = result = sm.GLM(inp["y"], Xc, family=sm.families.Poisson(),
                                          exposure=inp["exposure"]).fit()
    return result


def _heteroskedastic_problem(shape, dtype, rng):
    """Linear regression whose error variance grows with |x0|: the model's
    standard errors are wrong, HC3's are not."""
    n, d, _ = shape
    X = rng.standard_normal((n, d)).astype(dtype)
    y = X @ np.linspace(-1.0, 1.0, d) + rng.standard_normal(n) * (1.0 + np.abs(X[:, 0]))
    return {"X": X, "y": y}


def _fit_ols_hc3(inp, backend):
    return _kept_fit(inp, backend, "gaussian", cov_type="HC3")


def _statsmodels_ols_hc3(inp):
    import statsmodels.api as sm

    Xc = _with_constant(inp)
    inp["_statsmodels"] = result = sm.OLS(inp["y"], Xc).fit(cov_type="HC3")
    return result


def _against_statsmodels(fit, peer, what, statistic):
    """A figure of merit: statistic(result) of fastmle's fit against
    statsmodels' on the same data (reusing the fits the benchmark timed, if
    any)."""
    def quality(inp, backend):
        result = inp.get("_fits", {}).get(backend) or fit(inp, backend)
        if "_statsmodels" not in inp:
            peer(inp)
        return what, statistic(result), statistic(inp["_statsmodels"])
    return quality


def _llf(result):
    return float(result.llf)


def _first_bse(result):
    return float(np.ravel(result.bse)[0])


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
               "copy", _rw, {"torch": _torch_loss("cross_entropy")}),
        Kernel("bce_with_logits", "losses", _bernoulli,
               lambda inp, backend: _fm().binary_cross_entropy_with_logits(
                   inp["x"], inp["target"], return_grad=True, grad_out=inp["grad"], backend=backend),
               "copy", _elementwise_bytes(2, 1), {"torch": _torch_loss("binary_cross_entropy_with_logits")},
               shapes=ROW_SHAPES[:1]),
        Kernel("gaussian_nll", "losses", _gaussian,
               lambda inp, backend: _fm().gaussian_nll(inp["x"], inp["target"], inp["var"], return_grad=True,
                                                       grad_out=(inp["grad"], inp["grad_var"]), backend=backend),
               "copy", _elementwise_bytes(3, 2), {"torch": _torch_gaussian_nll}, shapes=ROW_SHAPES[:1]),
        Kernel("entropy", "losses", _probabilities,
               lambda inp, backend: _fm().entropy(inp["x"], axis=-1, backend=backend),
               "sum", _r, {"scipy": _scipy_stats(False)}),
        Kernel("kl_div", "losses", _probabilities,
               lambda inp, backend: _fm().kl_div(inp["x"], inp["q"], axis=-1, backend=backend),
               "sum", _r2, {"scipy": _scipy_stats(True)}),
        Kernel("linear_cross_entropy", "losses", _linear_inputs,
               lambda inp, backend: _fm().linear_cross_entropy(inp["h"], inp["W"], inp["target"],
                                                               return_grad=True, backend=backend),
               "naive", _linear_bytes, {"torch": _torch_linear_cross_entropy},
               shapes=((8192, 512, 32000),), smoke_shape=(50, 16, 300), in_default_bench=False,
               track_memory=True),
        Kernel("sgd_epoch", "glm", _glm_problem, _sgd_one_epoch, "fwd_grad", _glm_bytes,
               {"sklearn": _sklearn_sgd_epoch}, shapes=((200000, 100, 10),), smoke_shape=(300, 7, 3),
               dtypes=("float64",), quality=_sgd_accuracy),
        Kernel("glm_fisher", "fisher", _fisher_problem,
               lambda inp, backend: _fm().glm_fisher(inp["X"], inp["coef"], "multinomial", backend=backend),
               "fisher_blas", _fisher_bytes, shapes=((20000, 100, 10),), smoke_shape=(50, 4, 3),
               dtypes=("float64",)),
        Kernel("fisher_accumulate", "fisher", _scores, _accumulate, "syrk", _scores_bytes,
               shapes=((20000, 1000),), smoke_shape=(4100, 7)),
        Kernel("fit_mle", "fisher", _mle_problem, _fit_mle, "newton", _glm_bytes,
               {"statsmodels": _statsmodels_mnlogit}, shapes=((20000, 50, 5), (100000, 50, 5)),
               smoke_shape=(300, 3, 3),
               dtypes=("float64",), quality=_against_statsmodels(
                   _fit_mle, _statsmodels_mnlogit, "log-likelihood at the MLE vs statsmodels MNLogit", _llf)),
        Kernel("fit_mle_poisson_rate", "fisher", _rate_problem, _fit_rate, "poisson_newton", _glm_bytes,
               {"statsmodels": _statsmodels_poisson_rate}, shapes=((200000, 30, 1),), smoke_shape=(300, 3, 1),
               dtypes=("float64",), quality=_against_statsmodels(
                   _fit_rate, _statsmodels_poisson_rate, "log-likelihood at the MLE vs statsmodels GLM Poisson", _llf)),
        Kernel("fit_mle_ols_hc3", "fisher", _heteroskedastic_problem, _fit_ols_hc3, "ols_hc3", _glm_bytes,
               {"statsmodels": _statsmodels_ols_hc3}, shapes=((200000, 30, 1),), smoke_shape=(300, 3, 1),
               dtypes=("float64",), quality=_against_statsmodels(
                   _fit_ols_hc3, _statsmodels_ols_hc3, "HC3 standard error of x0 vs statsmodels OLS", _first_bse)),
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


def _full_batch_fwd_grad(inp):
    """One full-batch forward and gradient pass with numpy BLAS: X @ W, X.T @ G."""
    X = inp["X"]
    K = int(inp["y"].max()) + 1
    W = np.zeros((X.shape[1], K), X.dtype)
    G = np.ones((X.shape[0], K), X.dtype)
    return lambda: (X @ W, X.T @ G)


def _numpy_fisher(inp):
    """The exact multinomial Fisher in numpy with BLAS: the block-diagonal
    X^T (p_c X) terms minus S^T S with S_i = p_i kron x_i (a syrk)."""
    X, coef = inp["X"], inp["coef"]

    def run():
        eta = X @ coef
        p = np.exp(eta - eta.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        n, d = X.shape
        K = p.shape[1]
        S = (p[:, :, None] * X[:, None, :]).reshape(n, K * d)
        F = -(S.T @ S)
        for c in range(K):
            F[c * d:(c + 1) * d, c * d:(c + 1) * d] += X.T @ (p[:, c:c + 1] * X)
        return F
    return run


def _numpy_syrk(inp):
    """S^T S of each batch with numpy (BLAS syrk), summed."""
    S, batch = inp["S"], inp["batch"]

    def run():
        F = np.zeros((S.shape[1], S.shape[1]), S.dtype)
        for b in range(0, len(S), batch):
            F += S[b:b + batch].T @ S[b:b + batch]
        return F
    return run


def _numpy_newton(inp):
    """Newton's method for the multinomial MLE (class 0 the baseline) as a
    numpy user writes it, the way statsmodels computes its Hessian: one
    X^T (w X) product per pair of classes."""
    X, y = inp["X"], inp["y"]

    def run():
        n, d = X.shape
        Xc = np.hstack([X, np.ones((n, 1))])
        K = int(y.max()) + 1
        Y = np.eye(K)[y][:, 1:]
        theta = np.zeros((d + 1, K - 1))
        for _ in range(100):
            eta = np.hstack([np.zeros((n, 1)), Xc @ theta])
            p = np.exp(eta - eta.max(axis=1, keepdims=True))
            p = (p / p.sum(axis=1, keepdims=True))[:, 1:]
            g = Xc.T @ (Y - p)
            H = np.empty(((K - 1) * (d + 1),) * 2)
            for a in range(K - 1):
                for b in range(a, K - 1):
                    w = p[:, a] * ((a == b) - p[:, b])
                    block = Xc.T @ (w[:, None] * Xc)
                    H[a * (d + 1):(a + 1) * (d + 1), b * (d + 1):(b + 1) * (d + 1)] = block
                    H[b * (d + 1):(b + 1) * (d + 1), a * (d + 1):(a + 1) * (d + 1)] = block.T
            step = np.linalg.solve(H, g.T.ravel()).reshape(K - 1, d + 1).T
            theta += step
            if np.abs(step).max() < 1e-8:
                return theta
        return theta
    return run


def _numpy_poisson_newton(inp):
    """Newton's method (IRLS) for the Poisson rate model, log(exposure) as
    the offset, as a numpy user writes it."""
    X, y, exposure = inp["X"], inp["y"], inp["exposure"]

    def run():
        Xc = np.hstack([X, np.ones((len(X), 1))])
        offset = np.log(exposure)
        theta = np.zeros(Xc.shape[1])
        theta[-1] = np.log(y.sum() / exposure.sum())
        for _ in range(100):
            mu = np.exp(Xc @ theta + offset)
            step = np.linalg.solve(Xc.T @ (mu[:, None] * Xc), Xc.T @ (y - mu))
            theta += step
            if np.abs(step).max() < 1e-8:
                break
        return theta
    return run


def _numpy_ols_hc3(inp):
    """Least squares with HC3 standard errors as a numpy user writes them:
    the normal equations, the hat values from X (X^T X)^-1 row by row, and
    the sandwich with the residuals scaled by 1 / (1 - h)."""
    X, y = inp["X"], inp["y"]

    def run():
        Xc = np.hstack([X, np.ones((len(X), 1))])
        bread = np.linalg.inv(Xc.T @ Xc)
        beta = bread @ (Xc.T @ y)
        h = np.einsum("ij,ij->i", Xc @ bread, Xc)
        u = (y - Xc @ beta) / (1.0 - h)
        meat = Xc.T @ (u[:, None] ** 2 * Xc)
        return beta, np.sqrt(np.diag(bread @ meat @ bread))
    return run


def _copy(inp):
    x = inp["x"]
    dst = np.empty_like(x)
    return lambda: np.copyto(dst, x)


def copy_on_threads(inputs, threads):
    """np.copyto of the input split into `threads` blocks of rows copied at
    once by as many threads (numpy releases the GIL while copying): the
    baseline copy on as many cores as the kernels use. A callable with no
    arguments."""
    x = inputs["x"]
    dst = np.empty_like(x)
    bounds = np.linspace(0, x.shape[0], threads + 1).astype(int)
    blocks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    pool = _thread_pool(threads)
    return lambda: list(pool.map(lambda s: np.copyto(dst[s], x[s]), blocks))


@functools.lru_cache(maxsize=None)
def _thread_pool(threads):
    """One pool per thread count for the whole run (see copy_on_threads)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads)


# The numpy operation each kernel is measured against: for the row kernels,
# a plain numpy pass over the same memory (np.copyto for kernels that write
# an array of the input's size, np.sum for reductions; not the memory's
# floor, see bench/special_compute.py); for the
# SGD epoch, one full-batch forward and gradient pass with BLAS; for the
# Fisher kernels, the best numpy + BLAS formulation; for fit_mle, Newton's
# method written in numpy (for HC3, least squares and the hat values).
BASELINES = {
    "copy": _copy,
    "sum": lambda inp: (lambda: np.sum(inp["x"], axis=-1)),
    "naive": _naive_linear_cross_entropy,
    "fwd_grad": _full_batch_fwd_grad,
    "fisher_blas": _numpy_fisher,
    "syrk": _numpy_syrk,
    "newton": _numpy_newton,
    "poisson_newton": _numpy_poisson_newton,
    "ols_hc3": _numpy_ols_hc3,
}


def baseline(kernel, inputs):
    """The numpy baseline operation for a kernel: a callable with no arguments."""
    return BASELINES[kernel.baseline](inputs)


def family(name):
    """The registered kernels of one family, by name."""
    return [k for k in KERNELS.values() if k.family == name]


def available_peers(kernel):
    """The peers whose library is installed."""
    return {name: fn for name, fn in kernel.peers.items() if installed(name)}
