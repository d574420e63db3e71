"""fastmle over dask arrays: the log-likelihood, its gradient, the Fisher
information, Fisher-scoring fits and streamed SGD, for data that outgrows
one machine's memory.

Every quantity a maximum-likelihood fit needs is a sum over samples. Here
X (and y, and the sample weights) are dask arrays chunked along the samples
only; each chunk goes through fastmle's compiled kernels on whichever
worker holds it, and the per-chunk results are added up the same binary
tree whatever the scheduler (dask's threaded or process schedulers, or a
``dask.distributed`` Client), in chunk order, so a result does not depend
on where or in which order the chunks ran. Only P x P matrices and vectors
travel; the small P x P solve of a Fisher-scoring step runs on the client.
Dask is the engine: nothing here schedules work itself.

Needs dask (``pip install 'fastmle[dask]'``); importing fastmle does not.

>>> import dask.array as da, numpy as np, fastmle.dask
>>> rng = np.random.default_rng(0)
>>> X = da.from_array(rng.standard_normal((1000, 2)), chunks=(300, 2))
>>> y = da.from_array((rng.random(1000) < 0.5).astype(int), chunks=300)
>>> fit = fastmle.dask.fit_mle(X, y, "binomial")
>>> fit.converged, fit.params.shape
(True, (3,))
"""
import dataclasses
import inspect
import math
import operator
import re
from typing import NamedTuple, Optional

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # an optional dependency
    raise ImportError(f"fastmle.dask needs dask (pip install 'fastmle[dask]'): {exc}") from exc

from . import _dispatch, _validate
from . import fisher as _fisher
from . import glm as _glm
from . import mle as _mle
from . import sgd as _sgd

__all__ = ["loglik", "score", "glm_fisher", "FisherAccumulator", "fit_mle", "sgd_fit"]


# ---- chunks ----

def _as_dask(a):
    """A dask array; an in-memory one becomes a single chunk."""
    return a if isinstance(a, da.Array) else da.from_array(np.asarray(a), chunks=-1)


def _refuse_sparse_chunks(X, what):
    """fit_mle and sgd_fit over dask read dense chunks: chunks of scipy.sparse
    matrices had failed deep inside ("setting an array element with a
    sequence", "sum() got an unexpected keyword argument")."""
    if hasattr(X, "_meta") and hasattr(X._meta, "tocsr"):
        raise TypeError(f"fastmle.dask.{what} needs dense (numpy) chunks; X's chunks are "
                        f"{type(X._meta).__name__}: use X.map_blocks(lambda b: b.toarray()) or, in memory, "
                        "fastmle.sgd_fit, which takes CSR")


def _check_chunks(X, **aligned):
    """X as a 2-D dask array chunked along samples only, and the arrays in
    `aligned` (y, sample_weight: None or array-like) with the same row chunks.
    Returns (X, {name: dask array or None})."""
    X = _as_dask(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
    if len(X.chunks[1]) != 1:
        raise ValueError(f"X is chunked across features ({len(X.chunks[1])} column chunks); fastmle.dask needs "
                         f"whole rows in each chunk: use X.rechunk({{1: -1}})")
    out = {}
    for name, a in aligned.items():
        if a is None:
            out[name] = None
            continue
        if not isinstance(a, da.Array):
            a = np.asarray(a)
        elif a.ndim and any(np.isnan(c) for c in a.chunks[0]):  # else "y has nan samples"
            raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
        if a.shape[:1] != X.shape[:1]:
            raise ValueError(f"{name} has {a.shape[0] if a.ndim else 0} samples but X has {X.shape[0]}")
        if name in ("sample_weight", "offset", "exposure", "groups") and a.ndim != 1:
            # a chunk's (rows, k) weights reached the kernels as rows x k
            # values, and (rows, 0) ones as no weights at all
            raise ValueError(f"{name} must be 1-D (n_samples,), got shape {a.shape}")
        if not isinstance(a, da.Array):  # an in-memory array: chunk it like X
            a = da.from_array(a, chunks=(X.chunks[0],) + a.shape[1:])
        if a.chunks[0] != X.chunks[0]:
            raise ValueError(f"{name}'s row chunks {a.chunks[0]} do not match X's {X.chunks[0]}: use "
                             f"{name}.rechunk({{0: X.chunks[0]}})")
        if a.ndim == 2 and len(a.chunks[1]) != 1:
            a = a.rechunk({1: -1})
        out[name] = a
    return X, out


def _blocks(a):
    """One delayed object per row chunk (None for a missing array)."""
    return list(a.to_delayed().ravel()) if a is not None else None


def _tree(parts, combine):
    """Delayed combination of `parts` in a fixed binary tree, chunk order kept."""
    parts = list(parts)
    add = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def _map_reduce(fn, combine, X, *others, args=()):
    """combine-tree of fn(X chunk, other chunks..., *args) over the row chunks, computed."""
    xs = _blocks(X)
    cols = [_blocks(o) if o is not None else [None] * len(xs) for o in others]
    call = dask.delayed(fn, pure=True)
    parts = [call(x, *[c[i] for c in cols], *args) for i, x in enumerate(xs)]
    return dask.compute(_tree(parts, combine))[0]


def _add(a, b):
    if a is None:  # a part the pass did not compute
        return None
    if isinstance(a, tuple):
        return tuple(_add(u, v) for u, v in zip(a, b))
    if isinstance(a, dict):
        return _mle.add_stats(a, b)
    return a + b


def _chunk_labels(yc):
    return np.unique(np.asarray(yc))


def _labels(y):
    """The distinct labels of a dask y, chunk by chunk. Every pass here goes
    through the chunks' delayed objects (_blocks): a dask.array expression
    (da.unique, .mean()) optimizes the same graph another way, and a
    dask.distributed scheduler then warned of keys whose task changed
    between calls ("can cause failures and deadlocks")."""
    return np.asarray(_map_reduce(_chunk_labels, np.union1d, y))


# ---- likelihood, gradient and Fisher information ----

def _chunk_loss(Xc, yc, wc, oc, ec, coef, intercept, family, backend):
    K = coef.reshape(Xc.shape[1], -1).shape[1]
    if Xc.shape[0] == 0 or (wc is not None and not np.any(wc)):  # nothing to add
        # but values checked as the in-memory call checks them, whatever the chunking
        _glm.check_finite(np.asarray(Xc))
        _glm.encode_response(yc, family, Xc.shape[0], np.float64, np.arange(K) if family == "multinomial" else None)
        _glm.linear_offset(oc, ec, Xc.shape[0], np.float64, family)
        return 0.0, (np.zeros((Xc.shape[1], K)), np.zeros(K))
    loss, (dcoef, dintercept) = _glm.glm_loss(Xc, yc, coef, family, intercept=intercept, sample_weight=wc,
                                              offset=oc, exposure=ec, reduction="sum", return_grad=True,
                                              backend=backend)
    return loss, (dcoef.astype(np.float64), dintercept.astype(np.float64))


def _loss_and_grad(X, y, coef, family, intercept, sample_weight, offset, exposure, backend):
    X, a = _check_chunks(X, y=y, sample_weight=sample_weight, offset=offset, exposure=exposure)
    if a["y"] is None:
        raise ValueError("y is required")
    _glm.family_code(family)
    _glm.check_offset_family(family, offset, exposure)
    _glm.pack_params(coef, intercept, X.shape[1], np.float64)  # coef's shape, checked here, not in a task
    backend = _dispatch.resolve(backend)
    return _map_reduce(_chunk_loss, _add, X, a["y"], a["sample_weight"], a["offset"], a["exposure"],
                       args=(np.asarray(coef), intercept, family, backend))


def loglik(X, y, coef, family, *, intercept=None, sample_weight=None, offset=None, exposure=None, backend=None):
    """The GLM's log-likelihood summed over the chunks of dask arrays X and y:
    ``-fastmle.glm_loss(X, y, ..., reduction="sum")`` of the in-memory data
    (without the terms that do not depend on the coefficients: log(y!) for
    poisson, the unit-variance normal's constant for gaussian). ``offset``
    and ``exposure`` are glm_loss's, chunked like X.

    >>> import dask.array as da, numpy as np, fastmle.dask
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.standard_normal((600, 2)), chunks=(200, 2))
    >>> y = da.from_array((rng.random(600) < 0.5).astype(float), chunks=200)
    >>> ll = fastmle.dask.loglik(X, y, np.zeros(2), "binomial")
    >>> bool(np.isclose(ll, 600 * np.log(0.5)))   # every probability 1/2
    True
    """
    loss, _ = _loss_and_grad(X, y, coef, family, intercept, sample_weight, offset, exposure, backend)
    return -float(loss)


def score(X, y, coef, family, *, intercept=None, sample_weight=None, offset=None, exposure=None, backend=None):
    """The gradient of :func:`loglik` (the score): ``(dcoef (n_features, K),
    dintercept (K,))``, summed over the chunks.

    >>> import dask.array as da, numpy as np, fastmle.dask
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.standard_normal((600, 2)), chunks=(200, 2))
    >>> y = da.from_array((rng.random(600) < 0.5).astype(float), chunks=200)
    >>> dcoef, dintercept = fastmle.dask.score(X, y, np.zeros(2), "binomial", intercept=0.0)
    >>> dcoef.shape, dintercept.shape
    ((2, 1), (1,))
    """
    _, (dcoef, dintercept) = _loss_and_grad(X, y, coef, family, intercept, sample_weight, offset, exposure,
                                            backend)
    return -dcoef, -dintercept


def _chunk_fisher(Xc, wc, oc, ec, coef, family, intercept, fit_intercept, kind, reference_class, backend, P):
    if Xc.shape[0] == 0 or (wc is not None and not np.any(wc)):
        _glm.check_finite(np.asarray(Xc))  # checked as in memory, whatever the chunking
        _glm.linear_offset(oc, ec, Xc.shape[0], np.float64, family)
        return np.zeros((P, P) if kind == "dense" else P)
    return _fisher.glm_fisher(Xc, coef, family, intercept=intercept, fit_intercept=fit_intercept, sample_weight=wc,
                              offset=oc, exposure=ec, kind=kind, reference_class=reference_class, backend=backend)


def glm_fisher(X, coef, family, *, intercept=None, fit_intercept=None, sample_weight=None, offset=None,
               exposure=None, kind="dense", reference_class=None, scale=1.0, backend=None):
    """:func:`fastmle.glm_fisher` summed over the row chunks of a dask array X
    (same arguments, same parameter order); a numpy (P, P) or (P,) array.

    >>> import dask.array as da, numpy as np, fastmle.dask
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.standard_normal((600, 2)), chunks=(200, 2))
    >>> y = da.from_array((rng.random(600) < 0.5).astype(float), chunks=200)
    >>> F = fastmle.dask.glm_fisher(X, np.zeros(2), "binomial", intercept=0.0)
    >>> F.shape, bool(np.allclose(F, F.T))
    ((3, 3), True)
    """
    X, a = _check_chunks(X, sample_weight=sample_weight, offset=offset, exposure=exposure)
    _glm.check_offset_family(family, offset, exposure)
    kind = _fisher.fisher_kind(kind)
    scale = _fisher._check_scale(scale)
    # validate the parameters once, on an empty chunk
    m = _fisher.GLMModel(np.zeros((0, X.shape[1])), coef, family, intercept, fit_intercept, None, reference_class)
    P = m.n_outputs * m.n_terms
    F = _map_reduce(_chunk_fisher, _add, X, a["sample_weight"], a["offset"], a["exposure"],
                    args=(np.asarray(coef), family, intercept, m.fit_intercept, kind, reference_class,
                          _dispatch.resolve(backend), P))
    return F / scale if scale != 1.0 else F


class FisherAccumulator(_fisher.FisherAccumulator):
    """:class:`fastmle.FisherAccumulator` whose ``update`` also takes dask
    arrays of per-sample scores (batch, n_params), chunked along the batch:
    each chunk is accumulated where it lives, and the chunks' accumulators
    are combined with ``merge`` up a fixed tree. With ``decay``, the whole
    dask array counts as one batch of the moving average.

    >>> import dask.array as da, numpy as np, fastmle.dask
    >>> S = np.random.default_rng(0).standard_normal((500, 3))
    >>> acc = fastmle.dask.FisherAccumulator(3)
    >>> acc.update(da.from_array(S, chunks=(128, 3)))
    >>> acc.n_samples, bool(np.allclose(acc.fisher(), S.T @ S / 500))
    (500, True)
    """

    def update(self, scores, sample_weight=None):
        if not isinstance(scores, da.Array):
            return super().update(scores, sample_weight)
        if scores.ndim != 2 or scores.shape[1] != self.n_params:
            raise ValueError(f"scores must have shape (batch, {self.n_params}), got {scores.shape}")
        S, a = _check_chunks(scores, sample_weight=sample_weight)
        total = _map_reduce(_chunk_accumulator, _merged, S, a["sample_weight"],
                            # resolved here: a worker thread knows nothing of this thread's backend() block
                            args=(self.n_params, self.kind, self.dtype, _dispatch.resolve(self.backend)))
        if total.sum_weights == 0:  # rows seen, nothing to add (as an in-memory batch)
            self.n_samples += S.shape[0]
            return
        # every row of the batch, as update counts an in-memory batch: a
        # chunk of zero weights had not counted its rows
        total.n_samples = S.shape[0]
        if self.decay is None:
            self.merge(total)
            return
        batch_mean = total._acc / total._acc.dtype.type(total.sum_weights)
        keep = self.decay if self.sum_weights else 0.0
        self._acc = (keep * self._acc + (1.0 - keep) * batch_mean).astype(self.dtype)
        self.n_samples += total.n_samples
        self.sum_weights += total.sum_weights


def _chunk_accumulator(Sc, wc, n_params, kind, dtype, backend):
    acc = _fisher.FisherAccumulator(n_params, kind=kind, dtype=dtype, backend=backend)
    acc.update(Sc, sample_weight=wc)
    return acc


def _merged(a, b):
    return a.merge(b)


# ---- Fisher-scoring fits ----

def _encode(yc, wc, family, classes, n):
    labels, targets, _ = _glm.encode_response(yc, family, n, np.float64, classes)
    w = np.empty(0) if wc is None else _glm.native_array(wc, np.float64)
    return labels, targets, w


def _encode_fit(yc, wc, oc, ec, family, classes, n):
    """A chunk's (labels, targets, weights, offset) as fit_mle's kernels take
    them: oc and ec are the chunk's offset and exposure (None: not given)."""
    labels, targets, w = _encode(yc, wc, family, classes, n)
    targets, offset = _mle.offset_response(family, targets, _glm.total_offset(oc, ec, n, family))
    return labels, targets, w, offset


def _chunk_setup(Xc, yc, wc, oc, ec, family, classes, fit_intercept, backend):
    """A chunk's response statistics, weighted Gram matrix (for the rank
    check) and, without fit_intercept, its constant columns over the rows
    of positive weight and its weighted column sums (for an intercept in
    X, explicit or implicit). This first pass is also where each chunk's
    values are checked, before a kernel sees the chunk."""
    Xc = _glm.native_array(Xc, np.float64)  # chunks unpickled on a worker may be unaligned
    _glm.check_finite(Xc)
    labels, targets, w, _ = _encode_fit(yc, wc, oc, ec, family, classes, Xc.shape[0])  # (the offset checked)
    _glm.check_weight_values(w)
    K = len(classes) if classes is not None else 1
    stats = _mle.response_stats(family, labels, targets, w, K)
    gram = _mle.weighted_gram(_dispatch.kernels(backend, "fisher"), Xc, w, fit_intercept)
    columns = sums = None
    if not fit_intercept:
        columns = _mle.ConstantColumns(_mle.positive_weight_rows(w, Xc)[1])
        sums = _mle.column_sums(Xc, w)
    return stats, gram, Xc.shape[0], columns, sums


class _ChunkTerms(NamedTuple):
    """What a pass sums over the chunks at the kernel params; None where
    the pass did not ask for it (the loss and gradient, zeros otherwise,
    come with the Fisher)."""
    loss: float
    grad: np.ndarray  # (K, d + 1)
    fisher: Optional[np.ndarray]  # (P, P)
    saturated: Optional[int]  # samples at probability 0 or 1 (mean 0)
    meat: Optional[np.ndarray]  # (P, P): sum of w s s^T
    clusters: Optional["_ClusterSums"]
    statistics: Optional[np.ndarray]  # mle.fit_statistics

    def __add__(self, other):  # the tree's merge, field by field
        return _ChunkTerms(*(None if u is None else u + v for u, v in zip(self, other)))


def _chunk_terms(Xc, yc, wc, oc, ec, gc, params, family, classes, fit_intercept, ref, backend, P, want,
                 leverage=None):
    """A chunk's _ChunkTerms of the kinds in `want` ("fisher", "saturated",
    "meat", "cluster", "statistics"). leverage: the meat's (bread, power)
    for HC2 / HC3."""
    Xc = _glm.native_array(Xc, np.float64)
    params = _glm.native_array(params, np.float64)  # unpickled on a worker: maybe unaligned
    labels, targets, w, offset = _encode_fit(yc, wc, oc, ec, family, classes, Xc.shape[0])
    groups = None if gc is None else np.asarray(gc)
    w, Xc, labels, targets, offset, groups = _mle.positive_weight_rows(w, Xc, labels, targets, offset, groups)
    n = Xc.shape[0]
    code = _glm.family_code(family)
    loss, grad = np.zeros(1), np.zeros_like(params)
    F = np.zeros((P, P)) if "fisher" in want else None
    saturated = 0 if "saturated" in want else None
    statistics = np.zeros(2) if "statistics" in want else None
    meat = np.zeros((P, P)) if "meat" in want else None
    clusters = _ClusterSums(np.empty(0, groups.dtype), np.zeros((0, P))) if "cluster" in want else None
    if n:
        glm, fisher = _dispatch.kernels(backend, "glm"), _dispatch.kernels(backend, "fisher")
        keep = [k for k in range(params.shape[0]) if k != ref]
        if F is not None:
            glm.glm_loss_grad(Xc, labels, targets, w, params, offset, code, loss, grad)
            fisher.glm_fisher(Xc, params, offset, code, w, int(fit_intercept), ref, F)
            F = _fisher._symmetric(F)
        if saturated is not None:
            saturated = _mle.saturated_count(_mle.fitted_means(glm, Xc, params, offset, family), family)
        if meat is not None:
            meat = _mle.score_outer_sum(glm, fisher, Xc, labels, targets, w, params, offset, family, fit_intercept,
                                        keep, leverage)
        if clusters is not None:
            names, codes = np.unique(groups, return_inverse=True)
            clusters = _ClusterSums(names, _mle.cluster_score_sums(
                glm, Xc, labels, targets, w, params, offset, family, fit_intercept, keep, codes.reshape(-1),
                len(names)))
        if statistics is not None:
            statistics = _mle.fit_statistics(_mle.fitted_means(glm, Xc, params, offset, family), targets, w, family)
    return _ChunkTerms(float(loss[0]), grad, F, saturated, meat, clusters, statistics)


class _ClusterSums:
    """Some chunks' score sums (G, P) by cluster label (sorted); + merges
    two by label, so that the chunks' tree adds them up."""

    def __init__(self, labels, sums):
        self.labels, self.sums = labels, sums

    def __add__(self, other):
        labels, codes = np.unique(np.concatenate([self.labels, other.labels]), return_inverse=True)
        sums = np.zeros((len(labels), self.sums.shape[1]))
        np.add.at(sums, codes.reshape(-1), np.vstack([self.sums, other.sums]))
        return _ClusterSums(labels, sums)


def _chunk_cluster_labels(gc, wc):
    """A chunk's cluster labels among its samples of positive weight, checked."""
    labels = np.asarray(gc)
    _mle.cluster_codes(labels, len(labels))  # (its shape and NaN checks)
    w = np.empty(0) if wc is None else _glm.native_array(wc, np.float64)
    return np.unique(labels[w > 0] if w.size else labels)


def _merge_labels(a, b):
    try:
        return np.unique(np.concatenate([a, b]))
    except TypeError as exc:  # each chunk's labels sorted, but not the two together (ints and strings)
        raise ValueError(f"groups must be labels of one sortable type: {exc}") from exc


def _chunk_intercept_only_sums(yc, wc, oc, ec, family, b):
    """A chunk's part of the intercept-only model's sums (with the offset)."""
    n = yc.shape[0]
    _, targets, w, offset = _encode_fit(yc, wc, oc, ec, family, None, n)
    return _mle.intercept_only_sums(family, targets[:, 0], w, offset, b)


class _DaskProblem(_mle._Objective):
    """fit_mle's objective over the row chunks of dask arrays: each
    evaluation is one pass computing the loss, gradient and Fisher
    information together (the information is kept for the step that needs
    it), reduced up a fixed tree."""

    def __init__(self, X, y, family, fit_intercept, reference_class, alpha, sample_weight, backend, offset=None,
                 exposure=None, groups=None):
        _refuse_sparse_chunks(X, "fit_mle")
        X, a = _check_chunks(X, y=y, sample_weight=sample_weight, offset=offset, exposure=exposure, groups=groups)
        if a["y"] is None:
            raise ValueError("y is required")
        _glm.family_code(family)
        _glm.check_offset_family(family, offset, exposure)  # (their values are checked chunk by chunk)
        _validate.real_array(np.empty(0, X.dtype), "X")  # the dtype, checked without computing X
        self.X, self.y, self.w = X, a["y"], a["sample_weight"]
        self.offset, self.exposure, self.groups = a["offset"], a["exposure"], a["groups"]
        self.backend = _dispatch.resolve(backend)
        # y's shapes as in memory: a column is one response, but not labels
        if family == "multinomial" and self.y.ndim != 1:
            raise ValueError(f"multinomial y must be 1-D class labels, got shape {self.y.shape}")
        if self.y.ndim == 2 and self.y.shape[1] == 1:
            self.y = self.y[:, 0]
        elif self.y.ndim != 1:
            raise ValueError(f"fit_mle fits one response; y has shape {self.y.shape}")
        classes = None
        if family == "multinomial":
            classes = _labels(self.y)
        setup = _map_reduce(_chunk_setup, _add, X, self.y, self.w, self.offset, self.exposure,
                            args=(family, classes, bool(fit_intercept), self.backend))
        stats, self._gram_matrix, n, columns, sums = setup
        super().__init__(family, classes, reference_class, alpha, fit_intercept, int(n), X.shape[1], stats,
                         _mle.kernel_offset(family, offset, exposure))
        self.constant_columns = [] if columns is None else columns.indices()
        self._column_sums = sums
        self._cache = (None, None)  # (params bytes, Fisher) of the last pass
        if self.groups is not None:  # a pass over the labels (and weights) only, before fitting
            n_clusters = len(_map_reduce(_chunk_cluster_labels, _merge_labels, self.groups, self.w))
            if n_clusters < 2:
                raise ValueError(f"cov_type='cluster' needs at least 2 clusters among the samples of positive "
                                 f"weight, got {n_clusters}")

    def _pass(self, params, want, leverage=None):
        P = self.Kp * self.D
        ref = -1 if self.ref is None else self.ref
        groups = self.groups if "cluster" in want else None  # (not loaded by the other passes)
        return _map_reduce(_chunk_terms, operator.add, self.X, self.y, self.w, self.offset, self.exposure, groups,
                           args=(params, self.family, self.classes, self.fit_intercept, ref, self.backend, P,
                                 want, leverage))

    def _loss_grad(self, params):
        terms = self._pass(params, ("fisher",))
        loss, grad, F = terms.loss, terms.grad, terms.fisher
        self._cache = (params.tobytes(), F)
        return loss, grad

    def _fisher(self, params):
        key, F = self._cache
        if key != params.tobytes():
            F = self._pass(params, ("fisher",)).fisher
            self._cache = (params.tobytes(), F)
        return F.copy()

    def _gram(self):
        return self._gram_matrix

    def weighted_column_sums(self):
        return self._column_sums

    def _saturated(self, params):
        return self._pass(params, ("saturated",)).saturated

    def score_outer_sum(self, params, leverage=None):
        return self._pass(params, ("meat",), leverage).meat

    def cluster_score_sums(self, params):
        return self._pass(params, ("cluster",)).clusters.sums

    def fit_statistics(self, params):
        return self._pass(params, ("statistics",)).statistics

    def _intercept_only_sums(self, b):  # a pass over y's chunks (and the offset's), not X's
        return _map_reduce(_chunk_intercept_only_sums, _add, self.y, self.w, self.offset, self.exposure,
                           args=(self.family, b))


def fit_mle(X, y, family, *, fit_intercept=True, reference_class=None, alpha=0.0, sample_weight=None,
            offset=None, exposure=None, cov_type="nonrobust", groups=None, scale=None, use_t=False, max_iter=100,
            tol=1e-8, backend=None):
    """:func:`fastmle.fit_mle` on dask arrays (same arguments, same result):
    Fisher scoring where each iteration is one pass over the chunks (each
    chunk's loss, gradient and exact Fisher from the compiled kernels,
    added up a fixed tree), the P x P solve on the client. Agrees with the
    in-memory fit on the same data to rounding (1e-10 relative, tested).

    X must be chunked along samples only; y (and sample_weight, offset,
    exposure, groups) must have X's row chunks. Runs on the scheduler dask is configured with (threads,
    processes, or a dask.distributed Client).

    >>> import dask.array as da, numpy as np, fastmle.dask
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.standard_normal((600, 2)), chunks=(200, 2))
    >>> y = da.from_array((rng.random(600) < 0.5).astype(float), chunks=200)
    >>> fit = fastmle.dask.fit_mle(X, y, "binomial")
    >>> fit.converged, fit.param_names
    (True, ['x0', 'x1', 'intercept'])
    """
    _mle.check_fit_options(alpha, max_iter, tol)
    _mle.check_inference(cov_type, alpha, groups, family, scale, use_t)
    columns = _mle.parameter_names(X)
    prob = _DaskProblem(X, y, family, fit_intercept, reference_class, alpha, sample_weight, backend, offset,
                        exposure, groups)
    prob.cov_type, prob.dispersion, prob.use_t = cov_type, scale, use_t
    return _mle.fisher_scoring(prob, columns(prob), max_iter, tol)


# ---- streamed minibatch SGD ----

def _chunk_weighted_loss(Xc, yc, wc, family, classes, class_weights, coef, intercept, backend):
    """A chunk's sum_i w_i loss_i, w including the class weights (per class,
    or None), at coef and intercept, or (coef None, Xc unread) at the
    intercepts without features, in closed form from y."""
    n = yc.shape[0]
    labels, targets, w = _encode(yc, wc, family, classes, n)
    if class_weights is not None:
        index = labels if family == "multinomial" else targets[:, 0].astype(np.int64)
        w = (w if w.size else np.ones(n)) * class_weights[index]
    if n == 0 or (w.size and not np.any(w)):  # nothing to add (and a skipped chunk's rows)
        return 0.0
    if coef is None:
        return _sgd._intercept_only_objective(family, len(intercept), labels, targets, w, intercept) * n
    return _glm.glm_loss(Xc, labels if family == "multinomial" else yc, coef, family, intercept=intercept,
                         sample_weight=w if w.size else None, reduction="sum", backend=backend)


def _chunk_class_stats(yc, wc, family, classes):
    """A chunk's samples, total weight and largest weight per class, (3, K)
    float64: the classes are sgd_fit's class_weight's (the labels for
    multinomial, 0 and 1 for binomial), one for the other families. This
    pass also checks the weights, before any chunk trains."""
    yc = np.asarray(yc)
    n = yc.shape[0]
    w = np.ones(n) if wc is None else np.asarray(wc, np.float64)
    _glm.check_weight_values(w)
    if family == "multinomial":
        labels, K = _glm.encode_response(yc, family, n, np.float64, classes)[0], len(classes)
    elif family == "binomial":
        labels, K = _glm.encode_response(yc, family, n, np.float64)[1][:, 0].astype(np.int64), 2
    else:
        labels, K = np.zeros(n, np.int64), 1
    out = np.zeros((3, K))
    out[0] = np.bincount(labels, minlength=K)
    out[1] = np.bincount(labels, weights=w, minlength=K)
    np.maximum.at(out[2], labels, w)
    return out


def _chunk_scan(Xc, yc, poisson, backend):
    """(X's largest squared row norm, sum y (poisson), rows) of one chunk:
    sgd_fit's compiled read of X (scan_rows), which also refuses NaN or
    infinity."""
    Xd, _ = _glm.as_design_matrix(Xc, check_values=False)
    norm2 = _sgd._scan_dense(_dispatch.kernels(backend, "glm"), Xd)
    sum_y = float(np.sum(yc, dtype=np.float64)) if poisson else 0.0
    return norm2, sum_y, Xd.shape[0]


def _scan_merge(a, b):
    return max(a[0], b[0]), a[1] + b[1], a[2] + b[2]


def _default_eta0(X, y, max_w, family, given):
    """sgd_fit's default step over the whole array: its largest squared row
    norm and mean response (poisson), from one pass over the chunks, and the
    largest sample weight (None: unweighted), fed to
    fastmle.sgd.default_eta0 with the options given (sgd_fit's defaults
    filled in)."""
    # X's values checked in the same pass (a NaN had been reported as an overflowing row norm)
    row_norm2, sum_y, n = _map_reduce(_chunk_scan, _scan_merge, X, y,
                                      args=(family == "poisson", _dispatch.resolve(given["backend"])))
    mean_y = sum_y / n if n else 0.0
    return _sgd.default_eta0(float(row_norm2), family, np.full((1, 1), float(mean_y)),
                             given["fit_intercept"], given["alpha"], given["l1_ratio"], given["momentum"],
                             np.array([max_w]) if max_w is not None else np.empty(0))


def _chunk_response_sums(yc, wc):
    """(sum w y per output, sum w) of one chunk (w = 1 without weights)."""
    y = np.asarray(yc, np.float64).reshape(len(yc), -1)
    if wc is None:
        return y.sum(axis=0), float(len(y))
    w = np.asarray(wc, np.float64)
    return (y * w[:, None]).sum(axis=0), float(w.sum())


def _intercept_start(y, w, family, stats, per_class):
    """sgd_fit's starting intercepts over the whole array: from the class
    totals of the chunks' statistics (times the class weights), or the
    weighted mean response, from one pass over the chunks."""
    if family in ("multinomial", "binomial"):
        totals = stats[:, 1].sum(axis=0) * per_class
        return _sgd.intercept_start(family, totals if family == "multinomial" else totals[1:] / totals.sum())
    sums, total = _map_reduce(_chunk_response_sums, _add, y, w)
    return _sgd.intercept_start(family, sums / total)


def sgd_fit(X, y, family, *, max_epochs=10, random_state=None, sample_weight=None, tol=1e-4, n_iter_no_change=5,
            **options):
    """Minibatch SGD over a dask array, streamed one chunk at a time through
    the compiled epoch kernel (:func:`fastmle.sgd_fit`).

    Each epoch visits the row chunks in an order drawn from a numpy
    Generator seeded by ``random_state``; each chunk is computed (only it is
    in memory) and runs one compiled epoch of minibatches, continuing the
    previous chunk's coefficients, momentum, averaging and schedule
    (``warm_start``). The schedule runs as in one in-memory fit of
    ``max_epochs`` epochs over all the array's minibatches: its clock counts
    the steps taken so far over every chunk, and an epoch is the sum over
    the chunks of ceil(chunk rows / batch_size) steps (invscaling's unit;
    cosine reaches 0 after ``schedule_epochs``, default max_epochs, of
    them). The other keyword arguments are sgd_fit's (batch_size,
    learning_rate, eta0, alpha, ...); ``eta0`` defaults to sgd_fit's
    data-derived step (1 / the largest per-sample curvature) computed over
    the whole array, not one chunk, as are the starting intercepts (the
    intercept-only MLE) and ``class_weight="balanced"``'s class counts; as
    there, a run with the default step that diverges starts again with
    half the step (``result.eta0`` is the step used), and a run from the
    default start whose objective ends far above the intercept-only
    model's raises SGDDivergedError. A chunk whose weights
    are all zero adds nothing and is skipped (it takes no steps); all of
    them zero is an error. A fixed seed reproduces the fit exactly.
    ``callback(epoch, info)`` and ``progress`` act once per epoch over the
    whole array, as sgd_fit's do: info's loss is the epoch's objective (below),
    its learning_rate, n_steps, coef and intercept those after the epoch's
    last chunk; a callback returning True stops training. ``tol`` and
    ``n_iter_no_change`` judge that objective after each epoch, as sgd_fit's
    stopping rule judges the training loss: the "adaptive" schedule divides
    its step by 5 there, and the fit converges as in memory.

    Returns the last chunk's SGDResult, with ``loss_history`` holding each
    epoch's objective as sgd_fit reports it: (1 / n) sum w loss over the
    chunks trained (n their rows: a chunk of zero weights is skipped as if
    its rows were absent, where sgd_fit in memory counts them in n) plus
    the penalty at the epoch's end,
    and ``n_epochs`` the epochs over the whole array.

    >>> import dask.array as da, numpy as np, fastmle.dask
    >>> rng = np.random.default_rng(0)
    >>> X = da.from_array(rng.standard_normal((600, 2)), chunks=(200, 2))
    >>> y = da.from_array((rng.random(600) < 0.5).astype(float), chunks=200)
    >>> fit = fastmle.dask.sgd_fit(X, y, "binomial", max_epochs=3, random_state=0)
    >>> fit.n_epochs, fit.coef.shape
    (3, (2, 1))
    """
    for name in ("validation_fraction", "warm_start"):
        if name in options:
            raise TypeError(f"fastmle.dask.sgd_fit streams chunks and has no {name!r}")
    # every option checked as sgd_fit checks it, before any pass over the data
    defaults = {name: p.default for name, p in inspect.signature(_sgd.sgd_fit).parameters.items()
                if p.kind == p.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"fastmle.dask.sgd_fit got unexpected keyword arguments {unknown}")
    given = {**defaults, **options, "family": family, "max_epochs": max_epochs, "tol": tol,
             "n_iter_no_change": n_iter_no_change}
    _sgd.check_options(*(given[name] for name in _sgd.OPTION_NAMES))
    batch_size = given["batch_size"]
    learning_rate = given["learning_rate"]
    # a new run's start goes to the first chunk trained only (the others continue it)
    start = {name: options.pop(name) for name in ("coef_init", "intercept_init") if options.get(name) is not None}
    schedule_epochs = options.pop("schedule_epochs", None)  # sgd_fit checks it
    # called (and the bar moved) once per epoch over the whole array, not per chunk
    callback, progress = options.pop("callback", None), options.pop("progress", False)  # checked above
    if schedule_epochs is None:
        schedule_epochs = max_epochs
    _refuse_sparse_chunks(X, "sgd_fit")
    X, a = _check_chunks(X, y=y, sample_weight=sample_weight)
    if a["y"] is None:
        raise ValueError("y is required")
    _glm.family_code(family)
    if X.shape[0] == 0:
        raise ValueError("X has no samples")
    xs, ys, ws = _blocks(X), _blocks(a["y"]), _blocks(a["sample_weight"])
    sizes = X.chunks[0]
    classes = None
    if family == "multinomial":
        if options.get("classes") is None:
            options["classes"] = _labels(a["y"])
        classes = np.unique(np.asarray(options["classes"]))

    # per chunk and class: samples, weight, largest weight; in one pass
    call = dask.delayed(_chunk_class_stats, pure=True)
    stats = np.array(dask.compute([call(ys[c], ws[c] if ws is not None else None, family, classes)
                                   for c in range(len(xs))])[0])  # (chunks, 3, K)
    if family == "binomial" and not stats[:, 0].sum(axis=0).all():
        raise ValueError("binomial y has only one class; it needs both 0 and 1")
    class_weight = given["class_weight"]
    per_class = np.ones(stats.shape[2])
    weighted = ws is not None
    if class_weight is not None and family in ("multinomial", "binomial"):
        weighted = True
        names = classes if family == "multinomial" else np.array([0, 1])
        per_class = _sgd.class_weight_table(class_weight, names, stats[:, 0].sum(axis=0))
        if isinstance(class_weight, str):  # "balanced" by the whole array's counts, not each chunk's
            options["class_weight"] = dict(zip(names.tolist(), per_class.tolist()))
    chunk_weight = stats[:, 1] @ per_class  # each chunk's weight with its class weights
    if not np.any(chunk_weight > 0):
        raise ValueError("sample_weight" + (" times class_weight" if class_weight is not None else "")
                         + " is zero for every sample, in every chunk")
    train = chunk_weight > 0  # zero-weight chunks add nothing: sgd_fit would refuse them
    epoch_steps = sum(-(-sizes[c] // batch_size) for c in np.flatnonzero(train))
    trained_rows = sum(sizes[c] for c in np.flatnonzero(train))  # a skipped chunk counts as absent
    default_step = given["eta0"] is None
    if default_step:
        max_w = float(np.max(stats[:, 2].max(axis=0) * per_class)) if weighted else None
        options["eta0"] = _default_eta0(X, a["y"], max_w, family, given)
    alpha, l1_ratio = given["alpha"], given["l1_ratio"]
    # the intercepts start at the whole array's intercept-only MLE, not the
    # first chunk's (sgd_fit's default start, from the data it sees)
    fit_intercept = given["fit_intercept"]
    user_intercepts = "intercept_init" in start
    null_intercepts = None  # the intercept-only MLE, where the fit starts by default
    if fit_intercept:
        null_intercepts = _intercept_start(a["y"], a["sample_weight"], family, stats, per_class)
        if not np.isfinite(null_intercepts).all():  # NaN or inf in y, seen first here (a chunk's fit says so)
            raise ValueError("y contains NaN or infinity")
        start.setdefault("intercept_init", null_intercepts)
    # class weights per class, as the chunks' sgd_fit calls apply them
    class_weights = per_class if class_weight is not None and family in ("multinomial", "binomial") else None
    rng = np.random.default_rng(random_state)

    def objective(coef, intercept):
        """(1 / trained rows) sum w loss over the array (class weights in);
        coef None: the intercept-only model's, from y alone."""
        call = dask.delayed(_chunk_weighted_loss, pure=True)
        parts = [call(None if coef is None else xs[c], ys[c], None if ws is None else ws[c], family, classes,
                      class_weights, coef, intercept, given["backend"]) for c in range(len(xs))]
        return float(dask.compute(_tree(parts, _add))[0]) / trained_rows

    def check_blow_up(result):
        """sgd_fit's check at the end of a run from the default start: a fit
        whose objective ends far above the intercept-only model's has
        diverged (y read once; X once more only when the last epoch's loss
        is above that level)."""
        last = result.loss_history[-1]
        if "coef_init" in start or user_intercepts or last <= 0.0:  # the level is never below 0
            return
        K = result.coef.shape[1]
        null = objective(None, null_intercepts if fit_intercept else np.zeros(K))
        level = _sgd.level_above(null)
        if last > level and objective(result.coef, result.intercept) + float(_sgd._penalty(
                _glm.pack_params(result.coef, result.intercept, X.shape[1], np.float64),
                alpha, l1_ratio)) > level:
            raise _sgd.SGDDivergedError(
                f"the loss grew to {last:.3g} in {result.n_epochs} epochs, far above the intercept-only model's "
                f"({null:.3g}), with eta0 {options['eta0']:.3g}: the step is too large for this data; use a "
                "smaller eta0 (or standardize X). error.result holds the fit.", result)

    chunk_options = {name: value for name, value in options.items() if name != "eta0"}

    def run_epochs(bar):
        result, history, converged = None, [], False
        record = math.inf, 0  # the stopping rule's best objective and epochs without improvement
        last_chunk = {}  # the info sgd_fit gives a callback after each chunk's epoch

        def note(epoch, info):
            last_chunk.update(info)

        for epoch in range(1, max_epochs + 1):
            total, penalty = 0.0, 0.0
            for c in rng.permutation(len(xs)):
                if not train[c]:
                    continue
                Xc, yc, wc = dask.compute(xs[c], ys[c], ws[c] if ws is not None else None)
                # one schedule over the whole run: its horizon and epoch in the
                # whole array's steps, its clock the steps taken so far
                # the first chunk starts the run (with its eta0); the others
                # continue it, the run's step included (an eta0 given to a
                # warm start would restart adaptive's step from it)
                first = {**start, "eta0": options["eta0"]} if result is None else {}
                try:
                    result = _sgd.sgd_fit(Xc, yc, family, max_epochs=1, tol=None, sample_weight=wc,
                                          warm_start=result, random_state=rng, schedule_epochs=schedule_epochs,
                                          callback=note, _epoch_steps=epoch_steps, **first, **chunk_options)
                except _sgd.SGDDivergedError as exc:  # told in the whole array's epochs, not chunk calls
                    raise _sgd.SGDDivergedError(
                        re.sub(r"in epoch \d+", f"in epoch {epoch}", str(exc), count=1),
                        dataclasses.replace(exc.result, n_epochs=epoch - 1, loss_history=list(history))) from None
                # the chunk's (1 / rows) sum w loss, without the penalty at its end
                penalty = float(_sgd._penalty(result.state.params, alpha, l1_ratio))
                total += (result.loss_history[-1] - penalty) * sizes[c]
            history.append(float(total / trained_rows + penalty))
            # sgd_fit's stopping rule (and adaptive's step, which the next
            # chunk's warm start continues) on the whole epoch's objective;
            # its record of the best epochs is the run's, not the chunk call's
            result.state.best, result.state.bad_epochs = record
            converged = _sgd._apply_stopping(result.state, learning_rate, history[-1], tol, n_iter_no_change,
                                             options["eta0"])
            record = result.state.best, result.state.bad_epochs
            if bar is not None:
                bar.set_postfix(loss=f"{history[-1]:.5g}", lr=f"{last_chunk['learning_rate']:.3g}")
                bar.update(1)
            # sgd_fit's callback, on the whole epoch: its objective, and the
            # last chunk's step, step count and (averaged) coefficients
            # last, also after the epoch the stopping rule ends on, as in memory
            stopped = callback is not None and _sgd.callback_stops(callback, epoch, {**last_chunk, "loss": history[-1]})
            if converged or stopped:
                break
        result.loss_history = history
        result.n_epochs = len(history)
        result.converged = converged
        result.learning_rate = _sgd.next_rate(result.state, learning_rate, options["eta0"], given["power_t"])
        return result

    # as sgd_fit does: with the default step, a diverging run starts again
    # (same chunk order and permutations) with half the step
    rng_start = rng.bit_generator.state
    with _sgd.progress_bar(max_epochs, progress) as bar:
        for attempt in range(_sgd.DEFAULT_STEP_RESTARTS + 1 if default_step else 1):
            try:
                result = run_epochs(bar)
                check_blow_up(result)
                return result
            except _sgd.SGDDivergedError:
                if not default_step or attempt == _sgd.DEFAULT_STEP_RESTARTS:
                    raise
            options["eta0"] /= 2.0
            rng.bit_generator.state = rng_start
            if bar is not None:
                bar.reset()
