"""fastmle.dask: every quantity over chunked dask arrays equals the in-memory
computation on the same data (1e-10 relative), on the threaded and process
schedulers and on a dask.distributed LocalCluster of two worker processes;
ragged chunks, weights, the chunking errors, the streamed SGD epoch (its
schedule, class and sample weights over the whole array), and that
importing fastmle does not import dask."""

import logging
import re

import numpy as np
import pytest

import fastmle
from child import run_python
from fastmle.sgd import _step_sizes

dask = pytest.importorskip("dask", reason="dask is optional (fastmle[dask]); the test extra installs it")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
fd = pytest.importorskip("fastmle.dask")

CHUNKS = (700, 700, 1, 1500, 699, 404)  # ragged, a one-row chunk, 4003 rows in all


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def data(family, rng, d=4, K=3, n=sum(CHUNKS)):
    X = rng.standard_normal((n, d))
    if family == "multinomial":
        y = np.argmax(X @ rng.standard_normal((d, K)) + rng.gumbel(size=(n, K)), axis=1)
    elif family == "binomial":
        y = (X @ rng.standard_normal(d) * 0.7 + rng.logistic(size=n) > 0).astype(int)
    elif family == "poisson":
        y = rng.poisson(np.exp(X @ rng.standard_normal(d) * 0.2 + 0.3))
    else:
        y = X @ rng.standard_normal(d) + 0.5 + rng.standard_normal(n)
    w = rng.random(n) + 0.25
    return X, y, w


def chunked(*arrays):
    return [da.from_array(a, chunks=(CHUNKS,) + a.shape[1:]) for a in arrays]


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes on loopback, stopped afterwards."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("family", ["multinomial", "binomial", "poisson", "gaussian"])
def test_fit_mle_on_a_cluster_equals_in_memory(client, rng, family):
    X, y, w = data(family, rng)
    ref = 0 if family == "multinomial" else None
    expected = fastmle.fit_mle(X, y, family, reference_class=ref, sample_weight=w)
    Xd, yd, wd = chunked(X, y, w)
    got = fd.fit_mle(Xd, yd, family, reference_class=ref, sample_weight=wd)
    assert got.converged and got.n_iter == expected.n_iter
    assert rel(got.params, expected.params) < 1e-10
    assert rel(got.bse, expected.bse) < 1e-10
    assert rel(got.cov_params(), expected.cov_params()) < 1e-10
    assert got.llf == pytest.approx(expected.llf, rel=1e-10)
    assert got.llnull == pytest.approx(expected.llnull, rel=1e-10)
    # nobs is the total weight, summed chunk by chunk here: equal up to rounding
    assert got.nobs == pytest.approx(expected.nobs, rel=1e-12) and got.param_names == expected.param_names
    if family == "gaussian":  # the chunks' spreads about their own means merge into the null model's
        shifted = fd.fit_mle(Xd, yd + 1e8, family, sample_weight=wd)
        assert shifted.llnull == pytest.approx(expected.llnull, rel=1e-9)


@pytest.mark.parametrize("family", ["binomial", "poisson", "gaussian"])
def test_fit_mle_with_an_offset_equals_in_memory(rng, family):
    # the offset (and for poisson the exposure) chunk by chunk; the null
    # model with the offset from passes over y's chunks
    X, y, w = data(family, rng)
    offset = 0.3 * rng.standard_normal(len(y))
    extra = dict(exposure=rng.uniform(0.5, 5.0, len(y))) if family == "poisson" else {}
    expected = fastmle.fit_mle(X, y, family, sample_weight=w, offset=offset, **extra)
    Xd, yd, wd, od = chunked(X, y, w, offset)
    got = fd.fit_mle(Xd, yd, family, sample_weight=wd, offset=od, **{k: chunked(v)[0] for k, v in extra.items()})
    assert got.converged and got.n_iter == expected.n_iter
    assert rel(got.params, expected.params) < 1e-10 and rel(got.bse, expected.bse) < 1e-10
    assert got.llf == pytest.approx(expected.llf, rel=1e-10)
    assert got.llnull == pytest.approx(expected.llnull, rel=1e-10)
    assert rel(expected.params, fastmle.fit_mle(X, y, family, sample_weight=w).params) > 1e-3  # it mattered


@pytest.mark.parametrize("family", ["multinomial", "binomial", "poisson", "gaussian"])
def test_fit_mle_robust_covariance_equals_in_memory(rng, family):
    # the sandwich's meat, sum w s s^T, chunk by chunk (the one-row chunk too)
    X, y, w = data(family, rng)
    ref = 0 if family == "multinomial" else None
    Xd, yd, wd = chunked(X, y, w)
    for cov_type in ("HC0", "HC1") + (() if family == "multinomial" else ("HC2", "HC3")):
        expected = fastmle.fit_mle(X, y, family, reference_class=ref, sample_weight=w, cov_type=cov_type)
        got = fd.fit_mle(Xd, yd, family, reference_class=ref, sample_weight=wd, cov_type=cov_type)
        assert got.cov_type == cov_type and rel(got.cov_params(), expected.cov_params()) < 1e-10
    with pytest.raises(ValueError, match="unknown cov_type"):
        fd.fit_mle(Xd, yd, family, reference_class=ref, cov_type="robust")
    if family != "multinomial":  # Pearson's statistic, chunk by chunk
        expected = fastmle.fit_mle(X, y, family, sample_weight=w, scale="X2")
        got = fd.fit_mle(Xd, yd, family, sample_weight=wd, scale="X2")
        assert rel(got.pearson_chi2, expected.pearson_chi2) < 1e-10 and rel(got.bse, expected.bse) < 1e-10
        assert rel(got.deviance, expected.deviance) < 1e-10


@pytest.mark.parametrize("family", ["multinomial", "binomial", "poisson", "gaussian"])
def test_fit_mle_cluster_robust_covariance_equals_in_memory(rng, family):
    # each chunk's score sums by cluster label, merged by label up the tree:
    # clusters spread over chunks (and the one-row chunk), string labels, a
    # cluster of weight 0 only
    X, y, w = data(family, rng)
    groups = np.array([f"g{k}" for k in range(40)])[rng.integers(0, 40, len(y))]
    w[groups == "g7"] = 0.0
    ref = 0 if family == "multinomial" else None
    expected = fastmle.fit_mle(X, y, family, reference_class=ref, sample_weight=w, cov_type="cluster", groups=groups)
    Xd, yd, wd, gd = chunked(X, y, w, groups)
    with dask.config.set(scheduler="threads"):
        got = fd.fit_mle(Xd, yd, family, reference_class=ref, sample_weight=wd, cov_type="cluster", groups=gd)
    assert got.cov_type == "cluster" and rel(got.cov_params(), expected.cov_params()) < 1e-10
    if family == "binomial":  # a constant column over the chunks' rows of positive weight: an intercept
        Xk = np.c_[X, np.where(w > 0, 3.0, -1.0)]
        in_memory = fastmle.fit_mle(Xk, y, family, fit_intercept=False, sample_weight=w)
        chunks = fd.fit_mle(chunked(Xk, y, w)[0], yd, family, fit_intercept=False, sample_weight=wd)
        assert chunks.k_constant == in_memory.k_constant == 1 and rel(chunks.llr_pvalue, in_memory.llr_pvalue) < 1e-8
        Xk[np.argmax(w > 0), -1] = 2.0
        assert fd.fit_mle(chunked(Xk, y, w)[0], yd, family, fit_intercept=False, sample_weight=wd).k_constant == 0
        # an implicit one: dummies of every category, from the chunks' Gram matrices and column sums
        dummies = np.c_[X, np.eye(3)[np.arange(len(y)) % 3]]
        got = fd.fit_mle(chunked(dummies, y, w)[0], yd, family, fit_intercept=False, sample_weight=wd)
        assert got.k_constant == 1 and rel(got.llr_pvalue, fastmle.fit_mle(
            dummies, y, family, fit_intercept=False, sample_weight=w).llr_pvalue) < 1e-8
    if family == "gaussian":  # Student's t with G - 1 degrees of freedom, the clusters counted over the chunks
        with dask.config.set(scheduler="threads"):
            t_fit = fd.fit_mle(Xd, yd, family, sample_weight=wd, cov_type="cluster", groups=gd, use_t=True)
        assert t_fit.df_resid_inference == 38  # (cluster g7 has weight 0)
        assert rel(t_fit.pvalues, fastmle.fit_mle(X, y, family, sample_weight=w, cov_type="cluster", groups=groups,
                                                use_t=True).pvalues) < 1e-10
    if family == "binomial":  # on worker processes too (the sums pickled between them)
        client = pytest.importorskip("distributed").Client(processes=True, n_workers=2, threads_per_worker=1,
                                                             dashboard_address=":0")
        try:
            remote = fd.fit_mle(Xd, yd, family, sample_weight=wd, cov_type="cluster", groups=gd)
        finally:
            client.close()
        assert rel(remote.cov_params(), expected.cov_params()) < 1e-10
    with pytest.raises(ValueError, match="at least 2 clusters .* got 1"):
        fd.fit_mle(Xd, yd, family, reference_class=ref, cov_type="cluster", groups=np.zeros(len(y)))
    with pytest.raises(ValueError, match="groups contains NaN"):
        fd.fit_mle(Xd, yd, family, reference_class=ref, cov_type="cluster", groups=np.r_[np.nan, np.ones(len(y) - 1)])
    mixed = np.r_[np.zeros(CHUNKS[0], int), np.ones(len(y) - CHUNKS[0], int)].astype(object)
    mixed[CHUNKS[0]:] = "b"  # ints in one chunk, strings in the others: sortable alone, not together
    with pytest.raises(ValueError, match="groups must be labels of one sortable type"):
        fd.fit_mle(Xd, yd, family, reference_class=ref, cov_type="cluster", groups=mixed)
    with pytest.raises(ValueError, match="groups must be 1-D"):
        fd.fit_mle(Xd, yd, family, reference_class=ref, cov_type="cluster", groups=np.zeros((len(y), 1)))


def test_fit_mle_leaves_rows_of_weight_zero_out_chunk_by_chunk(rng):
    # as in memory: rows of weight 0 whose exp overflows (an offset of 720,
    # a feature of 1e4) do not make the sums NaN, in a chunk of them alone
    # (the one-row chunk) or among others
    X, y, w = data("poisson", rng)
    offset = 0.3 * rng.standard_normal(len(y))
    zero = np.r_[0:5, CHUNKS[0] + CHUNKS[1], 2000:2010]  # the one-row chunk is row 1400
    w[zero], offset[zero[:8]], X[zero[8:], 0] = 0.0, 720.0, 1e4
    Xd, yd, wd, od = chunked(X, y, w, offset)
    got = fd.fit_mle(Xd, yd, "poisson", sample_weight=wd, offset=od)
    kept = w > 0
    expected = fastmle.fit_mle(X[kept], y[kept], "poisson", sample_weight=w[kept], offset=offset[kept])
    assert got.converged and got.n_iter == expected.n_iter
    assert rel(got.params, expected.params) < 1e-10 and rel(got.bse, expected.bse) < 1e-10
    assert got.llf == pytest.approx(expected.llf, rel=1e-10)
    assert got.llnull == pytest.approx(expected.llnull, rel=1e-10)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_likelihood_score_and_fisher_with_an_offset(rng, family):
    X, y, w = data(family, rng)
    offset = 0.3 * rng.standard_normal(len(y))
    coef, b = rng.standard_normal(4) * 0.3, 0.1
    Xd, yd, wd, od = chunked(X, y, w, offset)
    ll = fd.loglik(Xd, yd, coef, family, intercept=b, sample_weight=wd, offset=od)
    dcoef, dint = fd.score(Xd, yd, coef, family, intercept=b, sample_weight=wd, offset=od)
    F = fd.glm_fisher(Xd, coef, family, intercept=b, sample_weight=wd, offset=od)
    loss, (gcoef, gint) = fastmle.glm_loss(X, y, coef, family, intercept=b, sample_weight=w, offset=offset,
                                           reduction="sum", return_grad=True)
    assert ll == pytest.approx(-loss, rel=1e-10)
    assert rel(dcoef, -gcoef) < 1e-10 and rel(dint, -gint) < 1e-10
    assert rel(F, fastmle.glm_fisher(X, coef, family, intercept=b, sample_weight=w, offset=offset)) < 1e-10
    assert ll != pytest.approx(fd.loglik(Xd, yd, coef, family, intercept=b, sample_weight=wd), rel=1e-3)
    with pytest.raises(ValueError, match="offset is not defined for the multinomial family"):
        fd.glm_fisher(Xd, np.zeros((4, 3)), "multinomial", offset=od)
    if family == "poisson":  # exposure= too: log(exposure) added to the offset, chunk by chunk
        t = rng.uniform(1.0, 20.0, len(y))
        td = chunked(X, y, w, t)[3]
        kw = dict(intercept=b, sample_weight=wd, offset=od, exposure=td)
        kw_memory = dict(intercept=b, sample_weight=w, offset=offset, exposure=t)
        loss, (gcoef, _) = fastmle.glm_loss(X, y, coef, family, reduction="sum", return_grad=True, **kw_memory)
        assert fd.loglik(Xd, yd, coef, family, **kw) == pytest.approx(-loss, rel=1e-10)
        assert rel(fd.score(Xd, yd, coef, family, **kw)[0], -gcoef) < 1e-10
        assert rel(fd.glm_fisher(Xd, coef, family, **kw), fastmle.glm_fisher(X, coef, family, **kw_memory)) < 1e-10
        with pytest.raises(ValueError, match="exposure is for the poisson family"):
            fd.glm_fisher(Xd, coef, "binomial", exposure=td)


def test_fit_mle_offset_errors(rng):
    X, y, _ = data("poisson", rng, n=100)
    Xd = da.from_array(X, chunks=(50, 4))
    with pytest.raises(ValueError, match="offset is not defined for the multinomial family"):
        fd.fit_mle(Xd, y % 3, "multinomial", reference_class=0, offset=np.zeros(100))
    with pytest.raises(ValueError, match="exposure is for the poisson family"):
        fd.fit_mle(Xd, y > 1, "binomial", exposure=np.ones(100))
    with pytest.raises(ValueError, match=r"offset must be 1-D \(n_samples,\), got shape \(100, 1\)"):
        fd.fit_mle(Xd, y, "poisson", offset=np.zeros((100, 1)))  # (the chunks' own check named their length)
    with pytest.raises(ValueError, match="offset has 99 samples but X has 100"):
        fd.fit_mle(Xd, y, "poisson", offset=np.zeros(99))
    with pytest.raises(ValueError, match="offset contains NaN or infinity"):
        fd.fit_mle(Xd, y, "poisson", offset=np.r_[np.zeros(99), np.nan])
    with pytest.raises(ValueError, match=r"exposure must be finite and > 0"):
        fd.fit_mle(Xd, y, "poisson", exposure=np.r_[np.ones(99), -1.0])


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("family", ["multinomial", "poisson"])
def test_every_pass_over_the_chunks_builds_the_same_tasks(client, rng, family):
    # arrays built as the README builds them (a delayed loader per file,
    # concatenated): sgd_fit's default step, labels and intercepts were
    # dask.array expressions, optimized apart from the chunks' delayed
    # objects, and the scheduler warned "Detected different run_spec ...
    # This can cause failures and deadlocks"
    X, y, _ = data(family, rng)
    load = dask.delayed(lambda a: a)
    Xd = da.concatenate([da.from_delayed(load(X[i:i + 100]), (100, X.shape[1]), float) for i in (0, 100, 200)])
    yd = da.concatenate([da.from_delayed(load(y[i:i + 100]), (100,), y.dtype) for i in (0, 100, 200)])
    records = _Records()
    logger = logging.getLogger("distributed.scheduler")
    logger.addHandler(records)
    try:
        fd.sgd_fit(Xd, yd, family, max_epochs=2, random_state=0)
        fd.fit_mle(Xd, yd, family, reference_class=0 if family == "multinomial" else None)
    finally:
        logger.removeHandler(records)
    assert not [m for m in records.messages if "run_spec" in m], records.messages


@pytest.mark.parametrize("scheduler", ["threads", "processes", "synchronous"])
def test_likelihood_score_and_fisher_on_each_scheduler(rng, scheduler):
    X, y, w = data("multinomial", rng)
    coef, b = rng.standard_normal((4, 3)) * 0.3, rng.standard_normal(3) * 0.1
    Xd, yd, wd = chunked(X, y, w)
    with dask.config.set(scheduler=scheduler):
        ll = fd.loglik(Xd, yd, coef, "multinomial", intercept=b, sample_weight=wd)
        dcoef, dint = fd.score(Xd, yd, coef, "multinomial", intercept=b, sample_weight=wd)
        F = fd.glm_fisher(Xd, coef, "multinomial", intercept=b, sample_weight=wd)
        diag = fd.glm_fisher(Xd, coef, "multinomial", intercept=b, sample_weight=wd, kind="diag")
    loss, (gcoef, gint) = fastmle.glm_loss(X, y, coef, "multinomial", intercept=b, sample_weight=w, reduction="sum",
                                           return_grad=True)
    assert ll == pytest.approx(-loss, rel=1e-10)
    assert rel(dcoef, -gcoef) < 1e-10 and rel(dint, -gint) < 1e-10
    expected = fastmle.glm_fisher(X, coef, "multinomial", intercept=b, sample_weight=w)
    assert rel(F, expected) < 1e-10
    assert rel(diag, np.diag(expected)) < 1e-10


def test_fit_mle_with_the_numba_backend_and_no_weights(rng):
    X, y, _ = data("binomial", rng)
    Xd, yd = chunked(X, y)
    with dask.config.set(scheduler="threads"):
        got = fd.fit_mle(Xd, yd, "binomial", backend="numba")
    expected = fastmle.fit_mle(X, y, "binomial", backend="numba")
    assert rel(got.params, expected.params) < 1e-10 and rel(got.bse, expected.bse) < 1e-10
    # a column y is one response, as in memory; labels must stay 1-D
    (column,) = chunked(y[:, None])
    with dask.config.set(scheduler="threads"):
        got = fd.fit_mle(Xd, column, "binomial", backend="numba")
        with pytest.raises(ValueError, match=r"1-D class labels, got shape \(\d+, 1\)"):
            fd.fit_mle(Xd, column, "multinomial")
    assert rel(got.params, expected.params) < 1e-10


def test_accumulator_uses_the_calling_threads_backend(rng, monkeypatch):
    # chunks run on worker threads, which know nothing of the caller's
    # fastmle.backend() block: the backend is resolved before they start
    seen = []
    kernels = fastmle._dispatch.kernels
    monkeypatch.setattr(fastmle._dispatch, "kernels", lambda name, family: seen.append(name) or kernels(name, family))
    S = da.from_array(rng.standard_normal((300, 4)), chunks=(100, 4))
    with dask.config.set(scheduler="threads"), fastmle.backend("numpy"):
        fd.FisherAccumulator(4).update(S)
    assert seen and set(seen) == {"numpy"}


def test_accumulator_over_a_dask_array(client, rng):
    S = rng.standard_normal((sum(CHUNKS), 6))
    w = rng.random(len(S))
    Sd, wd = chunked(S, w)
    acc = fd.FisherAccumulator(6)
    acc.update(Sd, sample_weight=wd)
    one = fastmle.FisherAccumulator(6)
    one.update(S, sample_weight=w)
    assert rel(acc.fisher(), one.fisher()) < 1e-12 and acc.n_samples == len(S)
    diag = fd.FisherAccumulator(6, kind="diag")
    diag.update(Sd)
    assert rel(diag.fisher(), np.mean(S * S, axis=0)) < 1e-12
    ema = fd.FisherAccumulator(6, decay=0.5)
    ema.update(Sd)
    ema.update(Sd[:1000])
    expected = 0.5 * (S.T @ S / len(S)) + 0.5 * (S[:1000].T @ S[:1000] / 1000)
    assert rel(ema.fisher(), expected) < 1e-12
    acc.update(S[:10])  # numpy batches still work
    assert acc.n_samples == len(S) + 10
    # rows of zero weight count as in memory, whatever the chunking (a
    # chunk of zero weights had not counted its rows)
    w[:CHUNKS[0] + 3] = 0
    for chunks in ((CHUNKS[0], len(S) - CHUNKS[0]), (7, len(S) - 7)):
        split = fd.FisherAccumulator(6)
        split.update(da.from_array(S, chunks=(chunks, 6)), sample_weight=da.from_array(w, chunks=(chunks,)))
        whole = fastmle.FisherAccumulator(6)
        whole.update(S, sample_weight=w)
        assert split.n_samples == whole.n_samples == len(S) and rel(split.fisher(), whole.fisher()) < 1e-12
    # and a batch of zero total weight (it had counted none)
    for acc in (fd.FisherAccumulator(6), fastmle.FisherAccumulator(6)):
        acc.update(Sd, sample_weight=da.zeros(len(S), chunks=Sd.chunks[0]) if isinstance(acc, fd.FisherAccumulator)
                   else np.zeros(len(S)))
        assert acc.n_samples == len(S) and acc.sum_weights == 0


def test_streamed_sgd_is_seeded_and_fits(rng):
    X, y, _ = data("multinomial", rng, n=sum(CHUNKS))
    Xd, yd = chunked(X, y)
    with dask.config.set(scheduler="threads"):
        a = fd.sgd_fit(Xd, yd, "multinomial", max_epochs=4, random_state=3, batch_size=16)
        b = fd.sgd_fit(Xd, yd, "multinomial", max_epochs=4, random_state=3, batch_size=16)
        c = fd.sgd_fit(Xd, yd, "multinomial", max_epochs=4, random_state=4, batch_size=16)
    np.testing.assert_array_equal(a.coef, b.coef)  # a fixed seed reproduces the fit
    assert not np.array_equal(a.coef, c.coef)  # the seed drives the chunk order and the batches
    assert len(a.loss_history) == 4 and a.n_epochs == 4
    assert a.loss_history[-1] < a.loss_history[0]
    # the default step comes from the whole array, as in memory
    in_memory = fastmle.sgd_fit(X, y, "multinomial", max_epochs=4, random_state=3, batch_size=16, tol=None)
    assert a.eta0 == pytest.approx(in_memory.eta0, rel=1e-12)
    optimum = -fastmle.fit_mle(X, y, "multinomial", reference_class=0).llf / len(y)
    streamed = fastmle.glm_loss(X, y, a.coef, "multinomial", intercept=a.intercept)
    whole = fastmle.glm_loss(X, y, in_memory.coef, "multinomial", intercept=in_memory.intercept)
    assert streamed < optimum * 1.005  # within 0.5% of the exact optimum's mean loss after 4 epochs
    assert streamed < whole * 1.005  # and as good as 4 in-memory epochs


def _schedule(learning_rate, eta0, epochs, steps_per_epoch):
    """Every step's learning rate in one in-memory run of `epochs` epochs."""
    T = epochs * steps_per_epoch
    return np.concatenate([_step_sizes(learning_rate, eta0, eta0, 0.5, e * steps_per_epoch, steps_per_epoch, T)
                           for e in range(epochs)])


@pytest.mark.parametrize("learning_rate", ["cosine", "invscaling"])
@pytest.mark.parametrize("chunks", [(580, 20), (200, 0, 300, 100), (300, 300)])
def test_streamed_schedule_runs_over_the_whole_array(rng, learning_rate, chunks):
    # unequal chunks once took the schedule's length and epoch from the first chunk trained
    X, y, _ = data("binomial", rng, n=sum(chunks))
    Xd, yd = da.from_array(X, chunks=(chunks, 4)), da.from_array(y, chunks=(chunks,))
    seen = []  # (steps taken, the last step's rate) after each epoch
    with dask.config.set(scheduler="threads"):
        fit = fd.sgd_fit(Xd, yd, "binomial", learning_rate=learning_rate, eta0=0.1, max_epochs=3, batch_size=16,
                         random_state=0, callback=lambda epoch, info: seen.append((info["n_steps"],
                                                                                   info["learning_rate"])))
    B = sum(-(-c // 16) for c in chunks)  # the array's minibatches per epoch
    expected = _schedule(learning_rate, 0.1, 3, B)
    assert fit.n_steps == 3 * B and seen[-1][0] == 3 * B
    steps, rates = np.array(seen).T
    np.testing.assert_allclose(rates, expected[steps.astype(int) - 1], rtol=1e-12)
    if learning_rate == "cosine":
        assert rates[-1] < 1e-4  # down to 0 at the run's end, as in memory


def test_streamed_callback_and_progress_act_once_per_epoch(rng, capsys):
    # as in memory: the callback sees epochs 1, 2, 3 of the whole array
    # (not one call per chunk), with the epoch's objective, and stops the run
    X, y, _ = data("binomial", rng)
    Xd, yd = chunked(X, y)
    seen = []

    def callback(epoch, info):
        seen.append((epoch, info["loss"], info["coef"].shape, info["n_steps"]))
        return epoch == 3

    with dask.config.set(scheduler="synchronous"):
        fit = fd.sgd_fit(Xd, yd, "binomial", max_epochs=10, random_state=0, callback=callback)
    assert fit.n_epochs == 3 and [s[0] for s in seen] == [1, 2, 3]
    assert [s[1] for s in seen] == fit.loss_history and seen[0][2] == (X.shape[1], 1)
    assert seen[-1][3] == fit.n_steps == 3 * sum(-(-c // 32) for c in CHUNKS)
    pytest.importorskip("tqdm")
    with dask.config.set(scheduler="synchronous"):
        fd.sgd_fit(Xd, yd, "binomial", max_epochs=3, random_state=0, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "1/1" not in err  # one bar over the run's epochs, none per chunk


def test_streamed_sgd_skips_chunks_of_zero_weight(rng):
    # fit_mle skips them; sgd_fit once refused the whole fit on one of them
    X, y, w = data("binomial", rng, n=900)
    w[300:600] = 0.0
    Xd, yd, wd = (da.from_array(a, chunks=((300, 300, 300),) + a.shape[1:]) for a in (X, y, w))
    keep = np.r_[0:300, 600:900]  # the same fit without those rows: an empty chunk in their place
    Xk, yk, wk = (da.from_array(a[keep], chunks=((300, 0, 300),) + a.shape[1:]) for a in (X, y, w))
    options = dict(learning_rate="cosine", eta0=0.05, max_epochs=3, random_state=1)
    with dask.config.set(scheduler="threads"):
        got = fd.sgd_fit(Xd, yd, "binomial", sample_weight=wd, **options)
        expected = fd.sgd_fit(Xk, yk, "binomial", sample_weight=wk, **options)
        np.testing.assert_array_equal(got.coef, expected.coef)
        assert got.loss_history == expected.loss_history and got.n_steps == expected.n_steps == 3 * 20
        calls = []
        with pytest.raises(ValueError, match="zero for every sample"):  # every chunk's: before training
            fd.sgd_fit(Xd, yd, "binomial", sample_weight=np.zeros(900), callback=lambda *a: calls.append(a))
        assert calls == []


@pytest.mark.parametrize("family", ["binomial", "multinomial"])
def test_streamed_balanced_class_weight_counts_the_whole_array(rng, family):
    # the classes' counts over the whole array, not over each chunk
    class_weight = pytest.importorskip("sklearn.utils.class_weight")
    X, y, _ = data(family, rng, n=1200)
    y = y[np.argsort(y, kind="stable")]  # chunks of very different class mixes
    cw = class_weight.compute_class_weight("balanced", classes=np.unique(y), y=y)
    Xd, yd = da.from_array(X, chunks=(400, 4)), da.from_array(y, chunks=400)
    options = dict(max_epochs=2, batch_size=16, random_state=2)
    with dask.config.set(scheduler="threads"):
        got = fd.sgd_fit(Xd, yd, family, class_weight="balanced", **options)
        expected = fd.sgd_fit(Xd, yd, family, sample_weight=cw[y], **options)
    # equal to rounding: the starting intercepts sum the weights in another order
    np.testing.assert_allclose(got.coef, expected.coef, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got.loss_history, expected.loss_history, rtol=1e-12)
    # the default step counts the class weights, as in memory
    in_memory = fastmle.sgd_fit(X, y, family, class_weight="balanced", max_epochs=1, tol=None)
    assert got.eta0 == pytest.approx(in_memory.eta0, rel=1e-12)


@pytest.mark.parametrize("family", ["multinomial", "binomial", "gaussian", "poisson"])
def test_streamed_sgd_starts_from_the_whole_arrays_intercepts(rng, family):
    # the intercept-only MLE of the whole array (weighted, class weights
    # included), not of the first chunk trained, as the in-memory fit starts
    X, y, w = data(family, rng, n=1200)
    order = np.argsort(y, kind="stable")  # chunks of very different responses
    X, y, w = X[order], y[order], w[order]
    Xd, yd, wd = (da.from_array(a, chunks=(400,) + a.shape[1:]) for a in (X, y, w))
    options = dict(eta0=1e-300, max_epochs=1, random_state=3)  # the parameters stay at the start
    if family == "binomial":
        options["class_weight"] = {0: 2.0, 1: 0.5}
    with dask.config.set(scheduler="threads"):
        got = fd.sgd_fit(Xd, yd, family, sample_weight=wd, **options)
    expected = fastmle.sgd_fit(X, y, family, sample_weight=w, tol=None, **options)
    np.testing.assert_allclose(got.intercept, expected.intercept, rtol=1e-12, atol=1e-15)
    assert np.abs(expected.intercept).max() > 0.05  # not a start of zeros


def test_streamed_sgd_starts_from_coef_init(rng):
    # a new run's start reaches the first chunk trained only (the others continue it)
    X, y, _ = data("gaussian", rng, n=900)
    Xd, yd = da.from_array(X, chunks=(300, 4)), da.from_array(y, chunks=300)
    coef, intercept = np.arange(4.0)[:, None], np.array([0.5])
    with dask.config.set(scheduler="threads"):
        got = fd.sgd_fit(Xd, yd, "gaussian", eta0=1e-300, max_epochs=2, coef_init=coef, intercept_init=intercept)
        default = fd.sgd_fit(Xd, yd, "gaussian", eta0=1e-300, max_epochs=2, coef_init=coef)
    np.testing.assert_allclose(got.coef, coef, rtol=1e-12, atol=1e-200)  # steps of 1e-300
    np.testing.assert_allclose(got.intercept, intercept, rtol=1e-12)
    np.testing.assert_allclose(default.intercept, y.mean(), rtol=1e-12)  # the whole array's start


def test_streamed_default_step_restarts_a_diverging_run():
    # sgd_fit's rule: Poisson's default step (from the mean count) diverges
    # here; the run starts again with half the step, and equals a run given it
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 2))
    y = rng.poisson(np.exp(3.0 * X[:, 0] - 1.0))
    Xd, yd = (da.from_array(a, chunks=(500,) + a.shape[1:]) for a in (X, y))
    with dask.config.set(scheduler="synchronous"):
        fit = fd.sgd_fit(Xd, yd, "poisson", max_epochs=5, random_state=0)
        first = fd._default_eta0(Xd, yd, None, "poisson",
                                 dict(fit_intercept=True, alpha=0.0, l1_ratio=0.0, momentum=0.0, backend=None))
        assert fit.eta0 < first and np.log2(first / fit.eta0) == pytest.approx(round(np.log2(first / fit.eta0)))
        again = fd.sgd_fit(Xd, yd, "poisson", max_epochs=5, random_state=0, eta0=fit.eta0)
        np.testing.assert_array_equal(again.coef, fit.coef)
        with pytest.raises(fastmle.SGDDivergedError):
            fd.sgd_fit(Xd, yd, "poisson", max_epochs=5, random_state=0, eta0=first)


def test_streamed_finite_blowup_is_divergence():
    # a constant, far too large step: the loss grows past 1e20 without
    # overflowing; sgd_fit in memory raises at the end of such a run, and so
    # does the streamed fit (with the fit in error.result)
    X = np.random.default_rng(0).standard_normal((200, 3))
    y = 1e3 * X[:, 0]
    Xd, yd = (da.from_array(a, chunks=(50,) + a.shape[1:]) for a in (X, y))
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(fastmle.SGDDivergedError, match="far above the intercept-only") as info:
            fd.sgd_fit(Xd, yd, "gaussian", eta0=10.0, learning_rate="constant", max_epochs=3, random_state=0)
    assert info.value.result.n_epochs == 3 and info.value.result.loss_history[-1] > 1e20


def test_streamed_blowup_without_intercept_is_judged_on_the_whole_run():
    # without an intercept the chunks' sgd_fit calls start from zeros, as a
    # fresh in-memory fit does; they must still leave the judging to the
    # streamed check (the whole array, after max_epochs), not raise from
    # inside the first chunk with that chunk's one-epoch result
    X = np.random.default_rng(0).standard_normal((200, 3))
    y = 1e3 * X[:, 0]
    Xd, yd = (da.from_array(a, chunks=(50,) + a.shape[1:]) for a in (X, y))
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(fastmle.SGDDivergedError, match=r"in 3 epochs, far above") as info:
            fd.sgd_fit(Xd, yd, "gaussian", eta0=10.0, learning_rate="constant", max_epochs=3, random_state=0,
                       fit_intercept=False)
    result = info.value.result
    assert result.n_epochs == 3 and len(result.loss_history) == 3 and result.loss_history[-1] > 1e20


@pytest.mark.parametrize("family", ["multinomial", "binomial", "gaussian", "poisson"])
def test_streamed_divergence_level_is_the_in_memory_one(rng, family):
    # the intercept-only model's objective gathered over the chunks, with
    # sample weights and (for the classifiers) balanced class weights, is the
    # one sgd_fit computes in memory
    from fastmle.glm import encode_response
    from fastmle.sgd import _class_weight_per_sample, _intercept_only_objective
    X, y, w = data(family, rng)
    labels, targets, classes = encode_response(y, family, len(y), np.float64)
    K = len(classes) if family == "multinomial" else 1
    b = rng.standard_normal(K)
    class_weight = "balanced" if family in ("multinomial", "binomial") else None
    weights = w.copy()
    table = None
    if class_weight:
        per_sample = _class_weight_per_sample(class_weight, labels, targets, classes, family)
        weights *= per_sample
        index = labels if family == "multinomial" else targets[:, 0].astype(int)
        table = np.zeros(int(index.max()) + 1)
        table[index] = per_sample
    expected = _intercept_only_objective(family, K, labels, targets, weights, b) * len(y)
    Xd, yd, wd = chunked(X, y, w)
    parts = [fd._chunk_weighted_loss(None, yc, wc, family, classes if family == "multinomial" else None, table,
                                     None, b, None)
             for yc, wc in zip(np.split(y, np.cumsum(CHUNKS)[:-1]), np.split(w, np.cumsum(CHUNKS)[:-1]))]
    assert sum(parts) == pytest.approx(expected, rel=1e-10)


def test_streamed_loss_history_is_the_whole_arrays_objective(rng):
    # (1 / n) sum w loss over every chunk, as sgd_fit reports it in memory
    X, y, w = data("gaussian", rng)
    y[:2000] += 5.0
    w[:2000] *= 10.0
    Xd, yd, wd = chunked(X, y, w)
    options = dict(fit_intercept=False, eta0=1e-12, max_epochs=1)  # the coefficients stay at 0
    with dask.config.set(scheduler="threads"):
        got = fd.sgd_fit(Xd, yd, "gaussian", sample_weight=wd, **options)
    expected = fastmle.sgd_fit(X, y, "gaussian", sample_weight=w, tol=None, **options)
    assert got.loss_history[0] == pytest.approx(expected.loss_history[0], rel=1e-9)


def test_sgd_fit_adaptive_schedule_and_stopping_rule_as_in_memory(rng):
    # tol and n_iter_no_change judge each epoch's objective over the whole
    # array: with one chunk the run is the in-memory one, epoch for epoch
    # (each chunk call once restarted the rule, so "adaptive" never cut its
    # step and ran as "constant" for every epoch)
    X, y, _ = data("binomial", rng, n=3000)
    Xd, yd = da.from_array(X, chunks=(3000, 4)), da.from_array(y, chunks=3000)
    seen = {"dask": [], "memory": []}
    with dask.config.set(scheduler="synchronous"):
        got = fd.sgd_fit(Xd, yd, "binomial", max_epochs=80, random_state=0,
                         callback=lambda epoch, info: seen["dask"].append(epoch))
        want = fastmle.sgd_fit(X, y, "binomial", max_epochs=80, random_state=0,
                               callback=lambda epoch, info: seen["memory"].append(epoch))
        assert want.converged and want.n_epochs < 80  # the rule fired in memory
        # the callback sees every epoch, the one the rule ends on too
        assert seen["dask"] == seen["memory"] == list(range(1, want.n_epochs + 1))
        assert (got.converged, got.n_epochs, got.learning_rate) == (want.converged, want.n_epochs, want.learning_rate)
        np.testing.assert_allclose(got.coef, want.coef, rtol=1e-12, atol=1e-14)
        # in uneven chunks the step is cut too, and the run converges
        Xd, yd = da.from_array(X, chunks=(700, 4)), da.from_array(y, chunks=700)
        uneven = fd.sgd_fit(Xd, yd, "binomial", max_epochs=80, random_state=0)
        assert uneven.converged and uneven.learning_rate < uneven.eta0 * 1e-3
        np.testing.assert_allclose(uneven.coef, want.coef, atol=0.05)


def test_sgd_fit_options_are_checked_before_any_chunk_is_read(rng):
    X, y, _ = data("binomial", rng, n=100)

    def unreadable(block):
        raise AssertionError("a chunk was read")
    Xd = da.from_array(X, chunks=(50, 4)).map_blocks(unreadable, dtype=X.dtype)
    for options, error, match in [(dict(momentum=2.0), ValueError, r"momentum must be in \[0, 1\)"),
                                  (dict(foo=1), TypeError, r"unexpected keyword arguments \['foo'\]"),
                                  (dict(learning_rate="fast"), ValueError, "unknown learning_rate 'fast'"),
                                  (dict(tol=-1.0), ValueError, "tol must be >= 0"),
                                  (dict(n_iter_no_change=0), ValueError, "n_iter_no_change")]:
        with pytest.raises(error, match=match):
            fd.sgd_fit(Xd, y, "binomial", **options)
    X[5, 1] = np.nan  # with the default step's pass over X: named as sgd_fit names it
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        fd.sgd_fit(da.from_array(X, chunks=(30, 4)), y, "binomial")


def test_bad_values_are_refused_whatever_the_chunking(rng):
    # a NaN in a chunk whose weights are all zero: that chunk adds nothing,
    # and was skipped unchecked (loglik returned a number where the
    # in-memory call refuses X)
    X, y, _ = data("binomial", rng, n=60)
    X[3, 0] = np.nan
    w = np.ones(60)
    w[:20] = 0
    Xd, yd, wd = da.from_array(X, chunks=(20, 4)), da.from_array(y, chunks=20), da.from_array(w, chunks=20)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        fastmle.glm_loss(X, y, np.zeros(4), "binomial", sample_weight=w)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        fd.loglik(Xd, yd, np.zeros(4), "binomial", sample_weight=wd)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        fd.glm_fisher(Xd, np.zeros(4), "binomial", sample_weight=wd)


def test_fit_mle_names_a_dataframes_columns(rng):
    pd = pytest.importorskip("pandas")
    X, y, _ = data("binomial", rng, n=200)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    assert fd.fit_mle(frame, y, "binomial").param_names == fastmle.fit_mle(frame, y, "binomial").param_names == \
        ["a", "b", "c", "d", "intercept"]


def test_chunking_errors(rng):
    X, y, w = data("binomial", rng, n=100)
    Xd = da.from_array(X, chunks=(50, 2))
    with pytest.raises(ValueError, match="chunked across features"):
        fd.fit_mle(Xd, y, "binomial")
    Xd = da.from_array(X, chunks=(50, 4))
    with pytest.raises(ValueError, match="row chunks .* do not match"):
        fd.fit_mle(Xd, da.from_array(y, chunks=30), "binomial")
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fd.loglik(Xd[Xd[:, 0] > 0], y[:10], np.zeros(4), "binomial")
    yd = da.from_array(y, chunks=50)
    with pytest.raises(ValueError, match=r"y has unknown chunk sizes; call y.compute_chunk_sizes\(\) first"):
        fd.loglik(Xd, yd[yd >= 0], np.zeros(4), "binomial")
    with pytest.raises(ValueError, match=r"coef must have shape \(n_features=4, n_outputs\), got \(5, 1\)"):
        fd.loglik(Xd, y, np.zeros(5), "binomial")  # on the client, not from inside a task
    sparse = pytest.importorskip("scipy.sparse")
    Xs = Xd.map_blocks(sparse.csr_matrix)
    for fit in (fd.fit_mle, fd.sgd_fit):
        with pytest.raises(TypeError, match="needs dense \\(numpy\\) chunks; X's chunks are csr_matrix"):
            fit(Xs, y, "binomial")
    with pytest.raises(ValueError, match="has 99 samples but X has 100"):
        fd.glm_fisher(Xd, np.zeros(4), "binomial", sample_weight=w[:99])
    with pytest.raises(ValueError, match="unknown family"):
        fd.fit_mle(Xd, y, "logit")
    with pytest.raises(TypeError, match="has no 'validation_fraction'"):
        fd.sgd_fit(Xd, y, "binomial", validation_fraction=0.1)
    with pytest.raises(ValueError, match="binomial y has only one class"):  # over the chunks, not per chunk
        fd.sgd_fit(Xd, np.ones(100), "binomial")
    with pytest.raises(TypeError, match="callback must be a function"):
        fd.sgd_fit(Xd, y, "binomial", callback="print")
    # one chunk of a single class is fine: each chunk's sgd_fit trains a batch of the stream
    one_class_chunks = np.r_[np.zeros(50), np.ones(50)]
    fit = fd.sgd_fit(Xd, one_class_chunks, "binomial", max_epochs=2)
    assert np.isfinite(fit.coef).all()


def test_in_memory_arguments_are_chunked_like_x(rng):
    X, y, w = data("poisson", rng, n=300)
    Xd = da.from_array(X, chunks=(128, 4))
    got = fd.fit_mle(Xd, y, "poisson", sample_weight=w)  # numpy y and weights
    expected = fastmle.fit_mle(X, y, "poisson", sample_weight=w)
    assert rel(got.params, expected.params) < 1e-10


def test_importing_fastmle_does_not_import_dask():
    code = "import sys, fastmle; fastmle.show_config(); sys.exit('dask' in sys.modules)"
    run_python("-c", code)


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_sgd_fit_names_nan_in_y(rng, family):
    # the whole array's starting intercept came out NaN and was refused as
    # "coef_init and intercept_init must be finite", which nobody had given
    X, y, _ = data(family, rng, n=sum(CHUNKS))
    y = y.astype(float)
    y[-5] = np.nan
    Xd, yd = chunked(X, y)
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        fd.sgd_fit(Xd, yd, family, max_epochs=2, random_state=0)


def test_sgd_fit_divergence_counts_epochs_not_chunk_calls(rng):
    # the error came from a chunk's own fit and counted its calls: "in epoch
    # 10" for the first epoch over 20 chunks
    X = rng.standard_normal((2000, 3)) * 3
    y = X @ [1.0, 2.0, 3.0] + rng.standard_normal(2000)
    opts = dict(eta0=5.0, learning_rate="constant", random_state=0, max_epochs=3)
    with pytest.raises(fastmle.SGDDivergedError) as in_memory:
        fastmle.sgd_fit(X, y, "gaussian", **opts)
    with pytest.raises(fastmle.SGDDivergedError, match=r"in epoch \d+ \(step") as streamed:
        fd.sgd_fit(da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=100), "gaussian", **opts)
    epoch = int(re.search(r"in epoch (\d+)", str(streamed.value)).group(1))
    assert epoch == int(re.search(r"in epoch (\d+)", str(in_memory.value)).group(1))
    assert streamed.value.result.n_epochs == epoch - 1 == len(streamed.value.result.loss_history)
