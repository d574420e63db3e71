"""One valid call of every public function, for the reliability matrices.

``public_calls(dtype, rng)`` returns a list of ``Call``: the function, its
keyword arguments, which of them are floating-point input arrays (the
unusual-memory matrix turns those into read-only, unaligned, byte-swapped and
memory-mapped copies) and which are output buffers. ``BAD_INPUTS`` lists, per
function, each class of bad input as a change to the valid call and the
exception it must raise (tests/test_bad_inputs.py runs it in process and in a
child interpreter, so that a crash shows as a failure).

Kept free of pytest so the child interpreter can import it.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import numpy as np

import fastmle
import fastmle.dask


@dataclass
class Call:
    name: str
    fn: Callable  # fn(backend=..., **kwargs) -> result
    kwargs: Dict
    inputs: Tuple[str, ...] = ()  # float input arrays among kwargs
    outputs: Tuple[str, ...] = ()  # output buffers among kwargs
    takes_backend: bool = True
    options: Dict = field(default_factory=dict)  # fixed keyword arguments, never transformed
    # for the bad-input matrix:
    finite: Tuple[str, ...] = ()  # inputs where NaN is refused (elsewhere NaN propagates, as in torch)
    nonnegative: Tuple[str, ...] = ()  # inputs where a negative value is refused
    labels: Dict = field(default_factory=dict)  # label argument -> an out-of-range value
    bad_options: Dict = field(default_factory=dict)  # option -> an unknown value

    def __call__(self, backend, **changes):
        kwargs = {**self.options, **self.kwargs, **changes}
        if self.takes_backend:
            kwargs["backend"] = backend
            return self.fn(**kwargs)
        with fastmle.backend(backend):
            return self.fn(**kwargs)


def values(result):
    """The arrays in a result (tuples, dataclasses, fitted objects), flattened."""
    if isinstance(result, (tuple, list)):
        return [v for r in result for v in values(r)]
    if isinstance(result, fastmle.SGDResult):
        return [result.coef, result.intercept, np.asarray(result.loss_history)]
    if isinstance(result, fastmle.MLEResult):
        return [result.params, result.bse, np.asarray(result.llf)]
    if result is None:
        return []
    return [np.asarray(result)]


# ---- the functions that are not one plain call ----

def accumulate_fisher(scores, dtype, sample_weight=None, kind="dense", backend=None):
    acc = fastmle.FisherAccumulator(scores.shape[1], kind=kind, dtype=dtype, backend=backend)
    acc.update(scores, sample_weight)
    return acc.fisher()


def classifier_proba(X, y, solver="sgd", sample_weight=None, X_new=None, **params):
    model = fastmle.MLEClassifier(solver=solver, random_state=0, **params).fit(X, y, sample_weight=sample_weight)
    return model.predict_proba(X if X_new is None else X_new)


def regressor_predict(X, y, family="poisson", solver="sgd", X_new=None, **params):
    model = fastmle.MLERegressor(family=family, solver=solver, random_state=0, **params).fit(X, y)
    return model.predict(X if X_new is None else X_new)


def on_dask(function):
    """function called with X split into dask chunks of 15 rows, computed on
    dask's synchronous scheduler: one chunk at a time, so no task is still
    running when an error comes back."""
    def call(X, **kwargs):
        import dask
        import dask.array as da

        with dask.config.set(scheduler="synchronous"):
            return function(da.from_array(X, chunks=(15,) + X.shape[1:]), **kwargs)
    return call


def public_calls(dtype, rng):
    """A valid, small call of every public function in the given dtype."""
    dtype = np.dtype(dtype)
    x = (rng.standard_normal((6, 11)) * 3).astype(dtype)
    q = (rng.standard_normal((6, 11)) * 3).astype(dtype)
    t = rng.integers(0, 11, 6)
    p = fastmle.softmax(x, axis=1, backend="numpy")
    pred = rng.standard_normal(13).astype(dtype)
    target = rng.standard_normal(13).astype(dtype)
    bern = (rng.random(13) < 0.5).astype(dtype)
    h = rng.standard_normal((9, 5)).astype(dtype)
    W = rng.standard_normal((7, 5)).astype(dtype)
    X = rng.standard_normal((60, 4)).astype(dtype)
    classes = rng.integers(0, 3, 60)
    binary = (X[:, 0] + rng.standard_normal(60) > 0).astype(np.int64)
    counts = rng.poisson(np.exp(0.3 * X[:, 1])).astype(dtype)
    offset = np.linspace(-0.5, 0.5, 60).astype(dtype)
    coef3 = (rng.standard_normal((4, 3)) * 0.1).astype(dtype)
    coef1 = (rng.standard_normal((4, 1)) * 0.1).astype(dtype)
    w = (rng.random(60) + 0.5).astype(dtype)
    scores = rng.standard_normal((20, 5)).astype(dtype)
    sgd = dict(max_epochs=2, tol=None, random_state=0)
    return [
        Call("logsumexp", fastmle.logsumexp, dict(a=x, b=q), ("a", "b"), options=dict(axis=1),
             bad_options=dict(axis=2)),
        Call("softmax", fastmle.softmax, dict(x=x, out=np.empty_like(x)), ("x",), ("out",), options=dict(axis=1),
             bad_options=dict(axis=(0, 3))),
        Call("log_softmax", fastmle.log_softmax, dict(x=x, out=np.empty_like(x)), ("x",), ("out",),
             options=dict(axis=0), bad_options=dict(axis=-3)),
        Call("cross_entropy", fastmle.cross_entropy, dict(logits=x, target=t, weight=q[0],
                                                          grad_out=np.empty_like(x)),
             ("logits", "weight"), ("grad_out",), options=dict(return_grad=True, label_smoothing=0.1),
             labels=dict(target=11), bad_options=dict(reduction="avg", label_smoothing=1.5)),
        Call("cross_entropy(probs)", fastmle.cross_entropy, dict(logits=x, target=p), ("logits", "target"),
             options=dict(return_grad=True), bad_options=dict(reduction=None)),
        Call("nll_loss", fastmle.nll_loss, dict(log_probs=x, target=t), ("log_probs",),
             options=dict(return_grad=True, reduction="sum"), labels=dict(target=-3),
             bad_options=dict(reduction="total", ignore_index=1.5)),
        Call("binary_cross_entropy_with_logits", fastmle.binary_cross_entropy_with_logits,
             dict(logits=pred, target=bern, weight=np.abs(target), pos_weight=np.abs(pred),
                  grad_out=np.empty_like(pred)),
             ("logits", "target", "weight", "pos_weight"), ("grad_out",), options=dict(return_grad=True),
             bad_options=dict(reduction="avg")),
        Call("gaussian_nll", fastmle.gaussian_nll, dict(pred=pred, target=target, var=np.abs(target) + 0.1),
             ("pred", "target", "var"), options=dict(return_grad=True), bad_options=dict(reduction="avg", eps=-1.0)),
        Call("mse_loss", fastmle.mse_loss, dict(pred=pred, target=target, grad_out=np.empty_like(pred)),
             ("pred", "target"), ("grad_out",), options=dict(return_grad=True), bad_options=dict(reduction="max")),
        Call("entropy", fastmle.entropy, dict(p=p), ("p",), bad_options=dict(axis=2, base=-2.0)),
        Call("entropy_from_logits", fastmle.entropy_from_logits, dict(logits=x), ("logits",),
             bad_options=dict(axis=5, base=0.0)),
        Call("kl_div", fastmle.kl_div, dict(p=p, q=fastmle.softmax(q, axis=1, backend="numpy")), ("p", "q"),
             bad_options=dict(axis=-3, base="e")),
        Call("kl_div_from_logits", fastmle.kl_div_from_logits, dict(logits_p=x, logits_q=q),
             ("logits_p", "logits_q"), bad_options=dict(axis=2)),
        Call("perplexity", fastmle.perplexity, dict(nll=np.abs(pred), weights=np.abs(target)),
             ("nll", "weights"), takes_backend=False, nonnegative=("weights",)),
        Call("perplexity_from_logits", fastmle.perplexity_from_logits, dict(logits=x, target=t), ("logits",),
             labels=dict(target=12), bad_options=dict(ignore_index="none")),
        Call("linear_cross_entropy", fastmle.linear_cross_entropy, dict(h=h, W=W, target=t[:1].repeat(9) % 7,
                                                                        bias=W[:, 0]),
             ("h", "W", "bias"), options=dict(return_grad=True, chunk_size=3), labels=dict(target=7),
             bad_options=dict(chunk_size=0, reduction="avg", label_smoothing=-0.1)),
        Call("glm_predict", fastmle.glm_predict, dict(X=X, coef=coef3, intercept=coef3[0]), ("X", "coef", "intercept"),
             options=dict(family="multinomial"), finite=("X",), bad_options=dict(family="gamma")),
        Call("glm_loss", fastmle.glm_loss, dict(X=X, y=counts, coef=coef1, intercept=coef1[0], sample_weight=w,
                                                offset=offset),
             ("X", "coef", "intercept", "sample_weight", "offset"), options=dict(family="poisson", return_grad=True),
             finite=("X", "sample_weight", "y", "offset"), labels=dict(y=-1.0), bad_options=dict(family="Poisson")),
        Call("glm_loss(exposure)", fastmle.glm_loss, dict(X=X, y=counts, coef=coef1, exposure=np.abs(offset) + 0.5),
             ("X", "coef", "exposure"), options=dict(family="poisson"), finite=("X", "exposure"),
             nonnegative=("exposure",)),
        Call("sgd_fit", fastmle.sgd_fit, dict(X=X, y=classes, sample_weight=w), ("X", "sample_weight"),
             options=dict(family="multinomial", **sgd), finite=("X", "sample_weight"),
             bad_options=dict(family="softmax", learning_rate="fast", batch_size=0, momentum=1.5, eta0="0.1",
                              coef_init=np.zeros((3, 3)))),
        Call("glm_fisher", fastmle.glm_fisher, dict(X=X, coef=coef3, sample_weight=w), ("X", "coef", "sample_weight"),
             options=dict(family="multinomial"), finite=("X", "sample_weight"), bad_options=dict(kind="full-rank")),
        Call("fisher_vector_product", fastmle.fisher_vector_product,
             dict(X=X, coef=coef1, v=np.ones(4, dtype), offset=offset), ("X", "coef", "v", "offset"),
             options=dict(family="binomial"), finite=("X", "v", "offset"), bad_options=dict(family="logit")),
        Call("FisherAccumulator", accumulate_fisher, dict(scores=scores, sample_weight=w[:20]),
             ("scores", "sample_weight"), options=dict(dtype=dtype), finite=("scores", "sample_weight"),
             bad_options=dict(kind="sparse")),
        Call("fit_mle", fastmle.fit_mle, dict(X=X, y=binary, sample_weight=w, offset=offset),
             ("X", "sample_weight", "offset"), options=dict(family="binomial"),
             finite=("X", "sample_weight", "offset"), labels=dict(y=2),
             bad_options=dict(family="probit", max_iter=0, alpha=-1.0)),
        Call("fit_mle(exposure)", fastmle.fit_mle, dict(X=X, y=counts, exposure=np.abs(offset) + 0.5),
             ("X", "exposure"), options=dict(family="poisson"), finite=("X", "exposure"),
             nonnegative=("exposure",)),
        Call("MLEClassifier", classifier_proba, dict(X=X, y=classes, sample_weight=w), ("X", "sample_weight"),
             options=dict(max_epochs=2, tol=None), finite=("X", "sample_weight"),
             bad_options=dict(family="gaussian", solver="lbfgs")),
        Call("MLEClassifier(fisher)", classifier_proba, dict(X=X, y=binary), ("X",),
             options=dict(solver="fisher", family="binomial"), finite=("X",), labels=dict(y=2)),
        Call("MLERegressor", regressor_predict, dict(X=X, y=counts), ("X",), options=dict(max_epochs=2, tol=None),
             finite=("X", "y"), labels=dict(y=-2.0), bad_options=dict(family="multinomial", learning_rate="")),
        Call("dask.loglik", on_dask(fastmle.dask.loglik), dict(X=X, y=counts, coef=coef1, sample_weight=w,
                                                              offset=offset),
             ("X", "coef", "sample_weight", "offset"), options=dict(family="poisson"),
             finite=("X", "sample_weight", "y", "offset"),
             labels=dict(y=-1.0), bad_options=dict(family="gamma")),
        Call("dask.sgd_fit", on_dask(fastmle.dask.sgd_fit), dict(X=X, y=classes, sample_weight=w),
             ("X", "sample_weight"), options=dict(family="multinomial", max_epochs=2, random_state=0),
             finite=("X", "sample_weight"), bad_options=dict(family="softmax", batch_size=-1)),
        Call("dask.glm_fisher", on_dask(fastmle.dask.glm_fisher), dict(X=X, coef=coef1, sample_weight=w),
             ("X", "coef", "sample_weight"),
             options=dict(family="binomial"), finite=("X", "sample_weight"), bad_options=dict(family="")),
        Call("dask.fit_mle", on_dask(fastmle.dask.fit_mle), dict(X=X, y=counts, sample_weight=w, offset=offset),
             ("X", "sample_weight", "offset"), options=dict(family="poisson"),
             finite=("X", "sample_weight", "y", "offset"), labels=dict(y=-1.0),
             bad_options=dict(family="gamma", tol=-1.0)),
    ]


# ---- the bad-input matrix ----

PER_SAMPLE = {"y", "sample_weight", "target"}  # arrays that fix X's number of rows


def bad_inputs(call):
    """(label, changes to the valid call) for each class of bad input: an
    unknown keyword, arrays of the wrong dtype or shape, NaN or negative
    values where refused, labels out of range or of the wrong kind, bad out=
    buffers (wrong shape, wrong dtype, not an array, read-only) and unknown
    option values."""
    kw = call.kwargs
    arrays = list(call.inputs) + list(call.labels)
    cases = [("unknown keyword", {"frobnicate": 1})]
    for name in call.inputs:
        cases.append((f"{name} of strings", {name: np.full(kw[name].shape, "x")}))
    for name in arrays:
        a = kw[name]
        if name == "X":
            if "coef" in kw:
                cases.append(("X one feature short", {"X": a[:, :-1]}))
            if PER_SAMPLE & kw.keys():
                cases.append(("X one sample short", {"X": a[:-1]}))
            cases.append(("X 1-D", {"X": a.ravel()}))
        elif len(arrays) >= 2:
            cases.append((f"{name} one row short", {name: a[:-1]}))
    for name in call.finite:
        cases.append((f"NaN in {name}", {name: _with_value(kw[name], np.nan)}))
    for name in call.nonnegative:
        cases.append((f"negative {name}", {name: _with_value(kw[name], -1.0)}))
    for name, value in call.labels.items():
        cases.append((f"{name} out of range ({value})", {name: _with_value(kw[name], value)}))
        if name == "target":  # class indices, where floats are refused
            cases.append((f"{name} as floats", {name: kw[name].astype(float)}))
    for name in call.outputs:
        out = kw[name]
        readonly = out.copy()
        readonly.setflags(write=False)
        cases += [(f"{name} wrong shape", {name: out[:-1].copy()}),
                  (f"{name} wrong dtype", {name: np.zeros(out.shape, np.int64)}),
                  (f"{name} not an array", {name: out.tolist()}),
                  (f"{name} read-only", {name: readonly})]
    for option, value in call.bad_options.items():
        cases.append((f"{option}={value!r}", {option: value}))
    return cases


def _with_value(a, value):
    """A copy of a with value in the first entry of every 15th row: in every
    chunk of the dask calls, which check each chunk before its kernel runs."""
    a = a.copy()
    a.reshape(len(a), -1)[::15, 0] = value
    return a


def run_bad_inputs(backends=("c", "numba", "numpy"), dtypes=(np.float32, np.float64)):
    """Run every bad-input case and yield one record each: the exception
    raised, whether any kernel ran before it, and whether any array given to
    the call was changed. Kernel calls are observed at the one place every
    public function gets its kernels from, fastmle._dispatch.kernels."""
    ran = []
    real_kernels = fastmle._dispatch.kernels

    class Spy:  # a kernel module that records each call of its functions
        def __init__(self, module):
            self._module = module

        def __getattr__(self, name):
            attr = getattr(self._module, name)
            if not callable(attr):
                return attr

            def spy(*args, **kwargs):
                ran.append(name)
                return attr(*args, **kwargs)
            return spy

    fastmle._dispatch.kernels = lambda backend, family: Spy(real_kernels(backend, family))
    try:
        for dtype in dtypes:
            for call in public_calls(dtype, np.random.default_rng(0)):
                for label, changes in bad_inputs(call):
                    for backend in backends:
                        given = {k: v for k, v in {**call.kwargs, **changes}.items() if isinstance(v, np.ndarray)}
                        before = {k: v.copy() for k, v in given.items()}
                        ran.clear()
                        record = dict(call=call.name, case=label, backend=backend, dtype=np.dtype(dtype).name)
                        try:
                            call(backend, **changes)
                            record.update(error=None, message="")
                        except Exception as exc:  # recorded, judged by the test
                            record.update(error=type(exc).__name__, message=str(exc),
                                          clear=isinstance(exc, (TypeError, ValueError)))
                        record["kernels_ran"] = list(ran)
                        record["changed"] = [k for k, v in given.items()
                                             if not np.array_equal(v, before[k], equal_nan=v.dtype.kind in "fc")]
                        yield record
    finally:
        fastmle._dispatch.kernels = real_kernels
