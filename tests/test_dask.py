"""fastmle.dask: every quantity over chunked dask arrays equals the in-memory
computation on the same data (1e-10 relative), on the threaded and process
schedulers and on a dask.distributed LocalCluster of two worker processes;
ragged chunks, weights, the chunking errors, the streamed SGD epoch, and
that importing fastmle does not import dask."""
import subprocess
import sys

import numpy as np
import pytest

import fastmle

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
    assert got.nobs == expected.nobs and got.param_names == expected.param_names


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
    loss, (gcoef, gint) = fastmle.glm_loss(X, y, coef, b, "multinomial", sample_weight=w, reduction="sum",
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
    streamed = fastmle.glm_loss(X, y, a.coef, a.intercept, "multinomial")
    whole = fastmle.glm_loss(X, y, in_memory.coef, in_memory.intercept, "multinomial")
    assert streamed < optimum * 1.005  # within 0.5% of the exact optimum's mean loss after 4 epochs
    assert streamed < whole * 1.005  # and as good as 4 in-memory epochs


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
    with pytest.raises(ValueError, match="has 99 samples but X has 100"):
        fd.glm_fisher(Xd, np.zeros(4), "binomial", sample_weight=w[:99])
    with pytest.raises(ValueError, match="unknown family"):
        fd.fit_mle(Xd, y, "logit")
    with pytest.raises(TypeError, match="has no 'tol'"):
        fd.sgd_fit(Xd, y, "binomial", tol=1e-3)


def test_in_memory_arguments_are_chunked_like_x(rng):
    X, y, w = data("poisson", rng, n=300)
    Xd = da.from_array(X, chunks=(128, 4))
    got = fd.fit_mle(Xd, y, "poisson", sample_weight=w)  # numpy y and weights
    expected = fastmle.fit_mle(X, y, "poisson", sample_weight=w)
    assert rel(got.params, expected.params) < 1e-10


def test_importing_fastmle_does_not_import_dask():
    code = "import sys, fastmle; fastmle.show_config(); sys.exit('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
