"""fastmle.sgd_fit: the backends walk the same trajectory, fits converge to
the exact MLE where it is known (closed form, scipy.optimize), the options
do what they say, fits are reproducible, and bad input is refused before
training (NaN or inf in a dense X, on the compiled backends: by the first
epoch, with no result)."""
import copy
import re
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse

import fastmle
from fastmle.reference.glm import FAMILIES
from fastmle.sgd import _State, _apply_stopping, _step_sizes, _validation_split, default_eta0


def data(family, n=800, d=4, K=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((d, K)) * 0.7
    eta = X @ W + 0.3
    if family == "multinomial":
        y = np.argmax(eta + rng.gumbel(size=eta.shape), axis=1)
    elif family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta[:, 0]))).astype(int)
    elif family == "gaussian":
        y = eta[:, 0] + 0.5 * rng.standard_normal(n)
    else:
        y = rng.poisson(np.exp(0.5 * eta[:, 0]))
    return X, y


def exact_mle(X, y, family, alpha=0.0):
    """The penalized MLE by scipy's L-BFGS on an independent numpy loss."""
    n, d = X.shape
    K = int(y.max()) + 1 if family == "multinomial" else 1
    Y = np.eye(K)[y] if family == "multinomial" else y.reshape(n, 1).astype(float)

    def objective(theta):
        W, b = theta[:d * K].reshape(d, K), theta[d * K:]
        eta = X @ W + b
        if family == "multinomial":
            m = eta.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(eta - m).sum(axis=1))
            loss = np.mean(lse - (Y * eta).sum(axis=1))
            G = np.exp(eta - lse[:, None]) - Y
        elif family == "binomial":
            loss = np.mean(np.logaddexp(0, eta) - Y * eta)
            G = 1 / (1 + np.exp(-eta)) - Y
        elif family == "gaussian":
            loss = np.mean(0.5 * (eta - Y) ** 2)
            G = eta - Y
        else:
            loss = np.mean(np.exp(eta) - Y * eta)
            G = np.exp(eta) - Y
        loss += 0.5 * alpha * np.sum(W * W)
        grad = np.r_[(X.T @ G / n + alpha * W).ravel(), G.mean(axis=0)]
        return loss, grad
    res = scipy.optimize.minimize(objective, np.zeros(d * K + K), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000})
    return res.x[:d * K].reshape(d, K), res.x[d * K:]


# ---------------------------------------------------------------- same trajectory, reproducible


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_backends_walk_the_same_trajectory(family):
    X, y = data(family, n=3000, d=20, K=5)
    fits = {b: fastmle.sgd_fit(X, y, family, max_epochs=5, tol=None, momentum=0.5, alpha=1e-3,
                               random_state=7, backend=b) for b in ("c", "numba", "numpy")}
    for b in ("numba", "numpy"):
        np.testing.assert_allclose(fits[b].coef, fits["c"].coef, rtol=0, atol=1e-8, err_msg=b)
        np.testing.assert_allclose(fits[b].intercept, fits["c"].intercept, rtol=0, atol=1e-8, err_msg=b)
        np.testing.assert_allclose(fits[b].loss_history, fits["c"].loss_history, rtol=1e-10)
    assert fits["c"].n_epochs == 5 and fits["c"].n_steps == 5 * -(-3000 // 32)


def test_a_fixed_seed_reproduces_a_fit_exactly(backend):
    X, y = data("multinomial")
    a = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, random_state=3, backend=backend)
    b = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, random_state=3, backend=backend)
    c = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, random_state=4, backend=backend)
    np.testing.assert_array_equal(a.coef, b.coef)
    assert a.loss_history == b.loss_history
    assert not np.array_equal(a.coef, c.coef)


# ---------------------------------------------------------------- convergence to the exact MLE


@pytest.mark.parametrize("family", FAMILIES)
def test_full_batch_descent_reaches_the_exact_mle(family, backend):
    # batch_size = n makes SGD plain gradient descent: it converges to the
    # (here L2-penalized, so unique) optimum itself, to scipy's precision
    X, y = data(family, n=400, d=3, K=3)
    alpha = 0.05
    W, b = exact_mle(X, y, family, alpha)
    fit = fastmle.sgd_fit(X, y, family, batch_size=len(X), max_epochs=4000, learning_rate="constant",
                          alpha=alpha, tol=None, random_state=0, backend=backend)
    np.testing.assert_allclose(fit.coef, W, atol=2e-6)
    if family == "multinomial":  # the unpenalized intercepts are unique up to a common shift
        b, fit.intercept = b - b.mean(), fit.intercept - fit.intercept.mean()
    np.testing.assert_allclose(fit.intercept, b, atol=2e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_default_minibatch_fit_is_close_to_the_mle(family):
    X, y = data(family, n=4000, d=4, K=3)
    W, b = exact_mle(X, y, family)
    if family == "multinomial":  # identifiable up to a shift per feature: compare centered
        W, b = W - W.mean(axis=1, keepdims=True), b - b.mean()
    fit = fastmle.sgd_fit(X, y, family, random_state=0)
    coef, intercept = fit.coef, fit.intercept
    if family == "multinomial":
        coef, intercept = coef - coef.mean(axis=1, keepdims=True), intercept - intercept.mean()
    assert fit.converged
    np.testing.assert_allclose(coef, W, atol=0.02)
    np.testing.assert_allclose(intercept, b, atol=0.02)


def test_gaussian_closed_forms(backend):
    # least squares, and the mean / variance MLE of a sample (no features:
    # one zero column): intercept = mean, 2 * loss = the MLE variance
    X, y = data("gaussian", n=1000)
    lstsq = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]
    fit = fastmle.sgd_fit(X, y, "gaussian", batch_size=len(X), max_epochs=3000, learning_rate="constant",
                          tol=None, backend=backend)
    np.testing.assert_allclose(np.r_[fit.coef[:, 0], fit.intercept], lstsq, atol=1e-9)
    rng = np.random.default_rng(1)
    sample = rng.normal(3.0, 2.0, 500)
    fit = fastmle.sgd_fit(np.zeros((500, 1)), sample, "gaussian", batch_size=500, max_epochs=50,
                          learning_rate="constant", tol=None, backend=backend)
    assert fit.intercept[0] == pytest.approx(sample.mean(), abs=1e-12)
    assert 2 * fit.loss_history[-1] == pytest.approx(sample.var(), rel=1e-9)


def test_loss_history_is_the_objective_the_steps_descend(backend):
    # (1 / n) sum w loss + penalty: the gradient steps take the batch's sum
    # of w grad over its rows, so weights averaging 1.5 are not a mean
    X, y = data("binomial", n=300)
    w = np.random.default_rng(4).random(300) * 3.0
    coef = np.linspace(-0.5, 0.5, X.shape[1])[:, None]
    fit = fastmle.sgd_fit(X, y, "binomial", sample_weight=w, alpha=0.1, coef_init=coef, intercept_init=[0.2],
                          eta0=1e-300, max_epochs=1, tol=None, backend=backend)  # steps too small to move
    loss = fastmle.glm_loss(X, y, coef, "binomial", intercept=[0.2], sample_weight=w, reduction="sum", backend="numpy")
    assert fit.loss_history[0] == pytest.approx(loss / 300 + 0.1 * 0.5 * np.sum(coef ** 2), rel=1e-12)


def test_multioutput_gaussian_and_poisson():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2000, 3))
    W = rng.standard_normal((3, 2)) * 0.3
    fit = fastmle.sgd_fit(X, X @ W + 1, "gaussian", random_state=0)
    np.testing.assert_allclose(fit.coef, W, atol=1e-3)
    counts = rng.poisson(np.exp(X @ W))
    fit = fastmle.sgd_fit(X, counts, "poisson", random_state=0)
    assert fit.coef.shape == (3, 2)
    np.testing.assert_allclose(fit.coef, W, atol=0.1)


# ---------------------------------------------------------------- options


def test_schedules():
    eta0, B = 0.1, 10
    np.testing.assert_allclose(_step_sizes("constant", eta0, 0.5, 0.5, 30, B, 100), 0.1)
    np.testing.assert_allclose(_step_sizes("adaptive", eta0, 0.02, 0.5, 30, B, 100), 0.02)
    t = np.arange(30, 40)
    np.testing.assert_allclose(_step_sizes("invscaling", eta0, 0, 0.5, 30, B, 100), eta0 / np.sqrt(1 + t / B))
    cos = _step_sizes("cosine", eta0, 0, 0.5, 0, 100, 100)
    assert cos[0] == eta0 and cos[-1] < 1e-4 and np.all(np.diff(cos) < 0)
    assert _step_sizes("cosine", eta0, 0, 0.5, 120, B, 100).max() == 0  # after the run


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "cosine", "adaptive"])
def test_every_schedule_fits(schedule):
    X, y = data("binomial", n=2000)
    fit = fastmle.sgd_fit(X, y, "binomial", learning_rate=schedule, max_epochs=20, random_state=0)
    W, b = exact_mle(X, y, "binomial")
    np.testing.assert_allclose(fit.coef, W, atol=0.1)


def test_adaptive_reduces_the_step_and_converges():
    X, y = data("gaussian", n=1000)
    fit = fastmle.sgd_fit(X, y, "gaussian", random_state=0, max_epochs=500)
    assert fit.converged and fit.n_epochs < 500
    assert fit.learning_rate < fit.eta0 * 1e-4


def test_early_stopping_and_tol_none():
    X, y = data("multinomial")
    fit = fastmle.sgd_fit(X, y, "multinomial", learning_rate="constant", tol=1e-2, n_iter_no_change=2,
                          random_state=0)
    assert fit.converged and fit.n_epochs < 100
    fit = fastmle.sgd_fit(X, y, "multinomial", max_epochs=7, tol=None, random_state=0)
    assert not fit.converged and fit.n_epochs == len(fit.loss_history) == 7


def test_validation_fraction_monitors_held_out_loss():
    X, y = data("multinomial", n=1000)
    fit = fastmle.sgd_fit(X, y, "multinomial", validation_fraction=0.2, max_epochs=6, tol=None,
                          random_state=0)
    assert len(fit.validation_history) == 6
    assert fit.n_steps == 6 * -(-800 // 32)  # only the training 80% is stepped over
    assert fit.validation_history[-1] < fit.validation_history[0] + 1e-3


@pytest.mark.parametrize("family", ["multinomial", "binomial"])
def test_classifiers_hold_out_each_class_in_proportion(family):
    # as scikit-learn's SGDClassifier: a random split of 95 / 3 / 2 percent
    # classes left the rare ones out of the held-out rows for some seeds
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 3))
    y = rng.choice(3, 500, p=[0.95, 0.03, 0.02]) if family == "multinomial" else (rng.random(500) < 0.04) * 1
    counts = np.bincount(y)
    for seed in range(6):
        fit = fastmle.sgd_fit(X, y, family, validation_fraction=0.1, max_epochs=1, tol=None, random_state=seed)
        assert fit.n_steps == -(-450 // 32)  # ceil(0.1 x 500) rows held out
        # the split replayed from the same seed is the fit's: its held-out
        # loss is the one the fit monitored
        val, train = _validation_split(np.random.default_rng(seed), 0.1, 500, y)
        assert fit.validation_history[0] == pytest.approx(
            fastmle.glm_loss(X[val], y[val], fit.coef, family, intercept=fit.intercept), rel=1e-12)
        assert len(val) == 50 and np.array_equal(np.union1d(val, train), np.arange(500))
        held = np.bincount(y[val], minlength=len(counts))
        assert np.all(np.abs(held - 0.1 * counts) < 1) and held.min() >= 1, (held, counts)
    # a class of one sample stays in training
    val, train = _validation_split(np.random.default_rng(0), 0.5, 5, np.array([0, 0, 0, 1, 2]))
    assert set(train) >= {3, 4} and len(val) == 2


def test_a_binomial_batch_of_one_class_trains_when_both_are_declared():
    X, y = data("binomial", n=100)
    fit = fastmle.sgd_fit(X, np.zeros(100), "binomial", classes=[0, 1], max_epochs=2, tol=None, random_state=0)
    assert fit.intercept[0] < 0


def test_warm_start_continues_the_same_run():
    # a warm start with the same Generator continues the permutation stream
    X, y = data("multinomial")
    opts = dict(learning_rate="invscaling", tol=None, momentum=0.3)
    whole = fastmle.sgd_fit(X, y, "multinomial", max_epochs=5, random_state=np.random.default_rng(9), **opts)
    rng = np.random.default_rng(9)
    first = fastmle.sgd_fit(X, y, "multinomial", max_epochs=2, random_state=rng, **opts)
    rest = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, random_state=rng, warm_start=first,
                           eta0=first.eta0, **opts)
    np.testing.assert_array_equal(rest.coef, whole.coef)
    assert rest.n_epochs == 5 and first.loss_history + rest.loss_history == whole.loss_history


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "cosine", "adaptive"])
def test_result_learning_rate_is_the_next_step(schedule):
    # the step the next epoch (a warm start) would take first: for cosine 0
    # at the run's end, for invscaling eta0 / (1 + epochs) ** power_t
    X, y = data("binomial")
    fit = fastmle.sgd_fit(X, y, "binomial", learning_rate=schedule, max_epochs=9, tol=None, eta0=0.1,
                          random_state=0)
    want = {"constant": 0.1, "invscaling": 0.1 / 10 ** 0.5, "cosine": 0.0, "adaptive": 0.1}[schedule]
    assert fit.learning_rate == pytest.approx(want, abs=1e-15)
    more = fastmle.sgd_fit(X, y, "binomial", learning_rate=schedule, max_epochs=1, tol=None, eta0=0.1,
                           random_state=1, warm_start=fit)
    first = fastmle.sgd_fit(X, y, "binomial", learning_rate=schedule, max_epochs=1, tol=None, eta0=0.1,
                            random_state=1, coef_init=fit.coef, intercept_init=fit.intercept)
    assert first.learning_rate == pytest.approx({"constant": 0.1, "invscaling": 0.1 / 2 ** 0.5,
                                                  "cosine": 0.0, "adaptive": 0.1}[schedule])
    assert more.n_steps == fit.n_steps + first.n_steps and first.n_steps == fit.n_steps // 9  # a new clock


@pytest.mark.parametrize("backend", fastmle.available_backends())
def test_multinomial_intercepts_sum_to_zero(backend):
    # softmax ignores a common shift of the intercepts; SGD keeps their sum,
    # and the intercept-only start is centred: the fit's intercepts sum to
    # 0, as scikit-learn's LogisticRegression's do
    X, y = data("multinomial", K=4)
    for options in (dict(), dict(alpha=0.01, momentum=0.5), dict(average=True)):
        fit = fastmle.sgd_fit(X, y, "multinomial", max_epochs=5, tol=None, random_state=0, backend=backend,
                              **options)
        assert abs(fit.intercept.sum()) < 1e-12 and abs(fit.intercept).max() > 0.1, options
        assert np.abs(fit.coef.sum(axis=1)).max() < 1e-12, options


def test_coef_init_starts_a_new_run():
    X, y = data("multinomial")
    opts = dict(max_epochs=3, tol=None, random_state=0)
    default = fastmle.sgd_fit(X, y, "multinomial", **opts)
    # zeros and the default intercept are the default start
    np.testing.assert_array_equal(fastmle.sgd_fit(X, y, "multinomial", coef_init=np.zeros((4, 3)), **opts).coef,
                                  default.coef)
    # from a fit's coefficients: that fit's loss, not the cold start's
    again = fastmle.sgd_fit(X, y, "multinomial", coef_init=default.coef, intercept_init=default.intercept,
                            **opts)
    assert again.n_steps == default.n_steps and again.loss_history[0] < default.loss_history[0] - 0.05
    binary = fastmle.sgd_fit(X, y == 0, "binomial", coef_init=np.ones(4), intercept_init=0.5, max_epochs=1,
                             eta0=1e-12, tol=None)
    np.testing.assert_allclose(binary.coef.ravel(), 1.0)
    np.testing.assert_allclose(binary.intercept, 0.5)
    for bad, message in [(dict(warm_start=default, coef_init=default.coef), "give one or the other"),
                         (dict(coef_init=np.zeros((3, 3))), r"coef_init must have shape .* \(4, 3\)"),
                         (dict(coef_init=np.full((4, 3), np.nan)), "must be finite"),
                         (dict(intercept_init=np.zeros(2)), "intercept_init must be a scalar or have shape"),
                         (dict(intercept_init=np.zeros(3), fit_intercept=False), "fit_intercept=False")]:
        with pytest.raises(ValueError, match=message):
            fastmle.sgd_fit(X, y, "multinomial", **opts, **bad)
    with pytest.raises(TypeError, match="coef_init must hold real numbers"):
        fastmle.sgd_fit(X, y, "multinomial", coef_init=[["a"] * 3] * 4, **opts)


@pytest.mark.parametrize("backend", fastmle.available_backends())
def test_numpy_scalar_options_train_as_python_floats(backend):
    # float32 option values (a float32 grid, say) once made the steps float32: the kernels refused them
    X, y = data("multinomial")
    values = dict(eta0=np.float32(0.05), alpha=np.float32(1e-3), momentum=np.float32(0.5), tol=np.float32(1e-4),
                  power_t=np.float16(0.5), l1_ratio=np.float64(0.25))
    got = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, random_state=0, backend=backend, **values)
    want = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, random_state=0, backend=backend,
                           **{k: float(v) for k, v in values.items()})
    np.testing.assert_array_equal(got.coef, want.coef)


def test_a_warm_start_given_eta0_restarts_the_adaptive_step():
    # a converged adaptive run has lowered its step below 1e-4 eta0; a warm
    # start goes on from there, unless it is given an eta0 (which once only
    # moved the stopping threshold: the step stayed at 1e-4 eta0)
    X, y = data("gaussian")
    first = fastmle.sgd_fit(X, y, "gaussian", random_state=0)
    assert first.converged and first.learning_rate < 1e-4 * first.eta0
    going_on = fastmle.sgd_fit(X, y + 5.0, "gaussian", warm_start=first, max_epochs=1, tol=None)
    assert going_on.learning_rate == first.learning_rate
    restarted = fastmle.sgd_fit(X, y + 5.0, "gaussian", warm_start=first, eta0=first.eta0, random_state=0)
    cold = fastmle.sgd_fit(X, y + 5.0, "gaussian", random_state=0)
    assert restarted.converged
    np.testing.assert_allclose(restarted.intercept, cold.intercept, atol=0.02)


def test_invscaling_keeps_the_runs_epoch_over_warm_starts_of_any_size():
    # partial_fit's batches vary in size; the schedule's clock must not:
    # invscaling's epoch is the first call's B steps, so the step only falls
    # (it once took each call's own B: 1000, 10, 1000 rows gave steps of
    # 0.0071, 0.0017, 0.0057)
    X, y = data("gaussian", n=1000)
    fit = None
    rates = []
    for rows in (1000, 10, 1000, 10, 500):
        fit = fastmle.sgd_fit(X[:rows], y[:rows], "gaussian", learning_rate="invscaling", eta0=0.05,
                              max_epochs=1, tol=None, warm_start=fit, random_state=0)
        rates.append(fit.learning_rate)
    assert all(a > b for a, b in zip(rates, rates[1:])), rates
    B = -(-1000 // 32)
    assert rates[-1] == pytest.approx(0.05 / (1 + fit.n_steps / B) ** 0.5, rel=1e-12)


def test_warm_start_judges_its_own_epochs():
    # the stopping rule starts afresh on a warm start: continued on new
    # targets, the fit trains until their loss stops improving, where the
    # first fit's best loss (lower than any on the new targets) used to
    # stop it after n_iter_no_change epochs
    X, y = data("gaussian")
    opts = dict(learning_rate="constant", eta0=0.01, tol=1e-4, n_iter_no_change=3, random_state=0)
    first = fastmle.sgd_fit(X, y, "gaussian", **opts)
    assert first.converged
    moved = fastmle.sgd_fit(X, y + 5.0, "gaussian", warm_start=first, **opts)
    cold = fastmle.sgd_fit(X, y + 5.0, "gaussian", **opts)
    assert moved.converged and moved.n_epochs - first.n_epochs > 2 * opts["n_iter_no_change"]
    np.testing.assert_allclose(moved.intercept, cold.intercept, atol=0.02)


def test_callback_sees_each_epoch_and_can_stop():
    X, y = data("binomial")
    seen = []

    def callback(epoch, info):
        seen.append((epoch, info["loss"], info["coef"].shape))
        return epoch == 3
    fit = fastmle.sgd_fit(X, y, "binomial", callback=callback, tol=None, random_state=0)
    assert fit.n_epochs == 3 and [s[0] for s in seen] == [1, 2, 3] and seen[0][2] == (4, 1)
    with pytest.raises(TypeError, match="callback must return True to stop training, or False or None; "
                                        "got ndarray"):
        fastmle.sgd_fit(X, y, "binomial", callback=lambda epoch, info: info["coef"], random_state=0)


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    X, y = data("gaussian", n=200)
    fastmle.sgd_fit(X, y, "gaussian", max_epochs=3, tol=None, progress=True, random_state=0)
    assert "3/3" in capsys.readouterr().err


def test_l2_shrinks_and_l1_zeroes_coefficients():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 6))
    y = X[:, 0] * 2 + 0.1 * rng.standard_normal(2000)  # only feature 0 matters
    plain = fastmle.sgd_fit(X, y, "gaussian", random_state=0)
    ridge = fastmle.sgd_fit(X, y, "gaussian", alpha=1.0, random_state=0)
    lasso = fastmle.sgd_fit(X, y, "gaussian", alpha=0.1, l1_ratio=1.0, random_state=0)
    assert abs(ridge.coef[0, 0]) < abs(plain.coef[0, 0]) - 0.5  # ridge optimum: 2 / (1 + 1) = 1
    assert ridge.coef[0, 0] == pytest.approx(1.0, abs=0.05)
    assert np.count_nonzero(lasso.coef[1:]) == 0 and lasso.coef[0, 0] == pytest.approx(1.9, abs=0.05)
    assert ridge.intercept[0] == pytest.approx(0.0, abs=0.05)  # intercept not penalized (mean y ~ 0)


@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
def test_multinomial_l1_reaches_the_penalized_optimum(backend, l1_ratio):
    # the softmax likelihood does not see a feature's coefficients shifted
    # together in every class, so SGD moved along that shift only through
    # its L1 steps: default fits ended 1.6e-3 (l1_ratio 0.5) and 1.3e-3 (1.0)
    # above the optimum, converged, without its zeros. Each epoch now ends
    # with the exact penalty-minimizing shift (sgd.centre_classes).
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 5))
    X = (X - X.mean(0)) / X.std(0)
    y = np.argmax(X @ (rng.standard_normal((5, 3)) * 0.6) + 0.3 + rng.gumbel(size=(1000, 3)), axis=1)
    alpha = 0.01

    def objective(W, b):
        return fastmle.glm_loss(X, y, W, "multinomial", intercept=b) + alpha * (
            (1 - l1_ratio) / 2 * np.sum(W ** 2) + l1_ratio * np.sum(np.abs(W)))
    best = LogisticRegression(C=1 / (alpha * len(y)), l1_ratio=l1_ratio, solver="saga", tol=1e-10,
                              max_iter=20000).fit(X, y)
    fit = fastmle.sgd_fit(X, y, "multinomial", alpha=alpha, l1_ratio=l1_ratio, random_state=0, backend=backend)
    assert fit.converged
    optimum = objective(best.coef_.T, best.intercept_)
    assert objective(fit.coef, fit.intercept) < optimum * (1 + 3e-4)
    zero = best.coef_.T == 0
    assert zero.any() and np.abs(fit.coef[zero]).max() < 2e-3  # the optimum's zeros, within the steps' noise
    assert np.count_nonzero(fit.coef[zero] == 0) >= zero.sum() - 1


def test_averaging_smooths_the_iterates():
    X, y = data("binomial", n=3000)
    W, b = exact_mle(X, y, "binomial")
    plain = fastmle.sgd_fit(X, y, "binomial", learning_rate="constant", eta0=0.5, max_epochs=10,
                            tol=None, random_state=0)
    averaged = fastmle.sgd_fit(X, y, "binomial", learning_rate="constant", eta0=0.5, max_epochs=10,
                               tol=None, average=True, random_state=0)
    assert np.abs(averaged.coef - W).max() < np.abs(plain.coef - W).max()
    late = fastmle.sgd_fit(X, y, "binomial", learning_rate="constant", eta0=0.5, max_epochs=10,
                           tol=None, average=3000 * 9, random_state=0)  # the last epoch only
    assert not np.array_equal(late.coef, averaged.coef)
    # numpy's bools count as bools (np.True_ is not True)
    numpy_true = fastmle.sgd_fit(X, y, "binomial", learning_rate="constant", eta0=0.5, max_epochs=10,
                                 tol=None, average=np.True_, random_state=0)
    np.testing.assert_array_equal(numpy_true.coef, averaged.coef)


def test_class_weight_is_a_sample_weight():
    X, y = data("multinomial", n=600)
    counts = np.bincount(y)
    balanced = (len(y) / (3 * counts))[y]
    a = fastmle.sgd_fit(X, y, "multinomial", class_weight="balanced", max_epochs=3, random_state=0)
    b = fastmle.sgd_fit(X, y, "multinomial", sample_weight=balanced, max_epochs=3, random_state=0)
    np.testing.assert_allclose(a.coef, b.coef, rtol=1e-12)
    c = fastmle.sgd_fit(X, y, "multinomial", class_weight={0: 2.0}, max_epochs=3, random_state=0)
    d = fastmle.sgd_fit(X, y, "multinomial", sample_weight=np.where(y == 0, 2.0, 1.0), max_epochs=3,
                        random_state=0)
    np.testing.assert_allclose(c.coef, d.coef, rtol=1e-12)


def test_multinomial_labels_can_be_any_values():
    X, y = data("multinomial")
    names = np.array(["cat", "dog", "eel"])[y]
    a = fastmle.sgd_fit(X, names, "multinomial", max_epochs=2, random_state=0)
    b = fastmle.sgd_fit(X, y, "multinomial", max_epochs=2, random_state=0)
    assert list(a.classes) == ["cat", "dog", "eel"]
    np.testing.assert_array_equal(a.coef, b.coef)


def test_float32_trains_in_float32_without_copying_X(backend):
    X, y = data("multinomial", dtype=np.float32)
    fit = fastmle.sgd_fit(X, y, "multinomial", max_epochs=3, random_state=0, backend=backend)
    assert fit.coef.dtype == np.float32 and not fit.copied_X
    f64 = fastmle.sgd_fit(X.astype(np.float64), y, "multinomial", max_epochs=3, random_state=0, backend=backend)
    np.testing.assert_allclose(fit.coef, f64.coef, atol=1e-4)
    fortran = fastmle.sgd_fit(np.asfortranarray(X), y, "multinomial", max_epochs=3, random_state=0,
                              backend=backend)
    assert fortran.copied_X
    np.testing.assert_array_equal(fortran.coef, fit.coef)


def test_divergence_raises_and_keeps_the_last_finite_coefficients(backend):
    X, y = data("poisson", n=500)
    with pytest.raises(fastmle.SGDDivergedError, match="smaller eta0") as info:
        fastmle.sgd_fit(10 * X, y, "poisson", eta0=10.0, random_state=0, backend=backend)
    result = info.value.result
    assert np.isfinite(result.coef).all() and np.isfinite(result.intercept).all()


def test_a_penalty_or_loss_that_overflows_is_a_divergence_at_every_epoch_count(backend):
    # coefficients near 1e154 whose squares overflow: the objective was
    # 0 * inf = NaN without a penalty, which no comparison catches, and the
    # fit came back as if trained (numpy's overflow warnings leaking out)
    X = np.random.default_rng(0).standard_normal((200, 3)) * 10
    y = X @ [1.0, 2.0, 3.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for max_epochs in range(4, 9):
            with pytest.raises(fastmle.SGDDivergedError, match="smaller eta0"):
                fastmle.sgd_fit(X, y, "gaussian", eta0=50.0, max_epochs=max_epochs, random_state=0,
                                backend=backend)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_an_overflowed_update_returns_the_whole_state_at_the_epochs_start(backend, momentum):
    # float32 overflows within an epoch: error.result is the run as it
    # stood when that epoch began (coefficients, steps, momentum), the same
    # as a fit stopped there; the message names the step that failed
    X = (np.random.default_rng(0).standard_normal((200, 3)) * 10).astype(np.float32)
    y = X @ np.array([1.0, 2.0, 3.0], np.float32)
    opts = dict(eta0=50.0, momentum=momentum, tol=None, random_state=0, backend=backend)
    with pytest.raises(fastmle.SGDDivergedError, match="NaN or infinite") as info:
        fastmle.sgd_fit(X, y, "gaussian", **opts)
    result = info.value.result
    assert result.n_epochs >= 1 and result.n_steps == result.n_epochs * 7  # 7 batches of 32 per epoch
    failed_step = int(re.search(r"\(step (\d+)\)", str(info.value)).group(1))
    assert result.n_steps <= failed_step < result.n_steps + 7
    try:
        stopped = fastmle.sgd_fit(X, y, "gaussian", max_epochs=result.n_epochs, **opts)
    except fastmle.SGDDivergedError as error:  # it ends far above the intercept-only model, as it is
        stopped = error.result
    np.testing.assert_array_equal(result.coef, stopped.coef)
    np.testing.assert_array_equal(result.state.velocity, stopped.state.velocity)
    assert result.loss_history == stopped.loss_history


def test_a_poisson_rate_is_fitted_as_a_weighted_rate(backend):
    # sgd_fit takes no exposure; the README's substitute: y / exposure
    # with the exposure as the weight is the same likelihood up to a
    # constant, and ends near fit_mle's exact rate model
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 3))
    exposure = rng.uniform(1.0, 10.0, 5000)
    y = rng.poisson(exposure * np.exp(X @ [0.3, -0.2, 0.1] - 1.0))
    fit = fastmle.sgd_fit(X, y / exposure, "poisson", sample_weight=exposure, tol=1e-7, random_state=0,
                          backend=backend)
    exact = fastmle.fit_mle(X, y, "poisson", exposure=exposure)
    assert fit.converged
    # 5.7e-4; weights sqrt(exposure) ended 1.6e-3 away, none 5.6e-3
    np.testing.assert_allclose(np.r_[fit.coef.ravel(), fit.intercept], exact.params, atol=1e-3)


def test_default_step_restarts_a_diverging_run_with_half_the_step(backend):
    # Poisson's curvature exp(eta) has no bound: on standardized X with a
    # strong effect the default step (from the mean count) can diverge; the
    # run then starts again with half the step, and equals a fit given it
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 2))
    y = rng.poisson(np.exp(3.0 * X[:, 0] - 1.0))
    opts = dict(max_epochs=5, random_state=0, backend=backend)
    fit = fastmle.sgd_fit(X, y, "poisson", **opts)
    first = default_eta0(float(np.max(np.sum(X * X, axis=1))), "poisson", y[:, None].astype(float), True,
                         0.0, 0.0, 0.0, np.empty(0))
    halvings = np.log2(first / fit.eta0)
    assert 1 <= round(halvings) <= 10 and halvings == pytest.approx(round(halvings), abs=1e-9)
    again = fastmle.sgd_fit(X, y, "poisson", eta0=fit.eta0, **opts)
    np.testing.assert_array_equal(again.coef, fit.coef)
    assert again.loss_history == fit.loss_history
    with pytest.raises(fastmle.SGDDivergedError):  # a given step is never changed
        fastmle.sgd_fit(X, y, "poisson", eta0=2 * fit.eta0, **opts)
    # a warm start goes on with the run's step (the fresh default diverged)
    more = fastmle.sgd_fit(X, y, "poisson", warm_start=fit, max_epochs=3, learning_rate="constant",
                           random_state=1, backend=backend)
    assert more.eta0 == fit.eta0 and more.n_epochs == fit.n_epochs + 3
    # a Generator as random_state ends where the successful run leaves it
    gen, fresh = np.random.default_rng(7), np.random.default_rng(7)
    fastmle.sgd_fit(X, y, "poisson", max_epochs=5, random_state=gen, backend=backend)
    fastmle.sgd_fit(X, y, "poisson", max_epochs=5, eta0=fit.eta0, random_state=fresh, backend=backend)
    assert gen.random() == fresh.random()


def test_a_smaller_step_is_judged_from_where_it_was_taken():
    # the adaptive schedule's no-improvement count, after a reduction,
    # starts from the loss at the reduction: a best epoch the larger step
    # reached by chance (1.0, then 3.0 for five epochs) does not make
    # the smaller step's descent (3.0 to 2.0) count as no improvement,
    # one reduction leading to the next until "converged"
    state = _State(np.zeros((1, 2)), np.zeros((0, 2)), np.zeros((1, 2)), 0, 0, 1.0)
    assert not _apply_stopping(state, "adaptive", 1.0, 1e-4, 5, 1.0)
    for _ in range(5):
        assert not _apply_stopping(state, "adaptive", 3.0, 1e-4, 5, 1.0)
    assert state.eta == 0.2 and state.best == 3.0
    for loss in np.linspace(2.9, 2.0, 10):
        assert not _apply_stopping(state, "adaptive", loss, 1e-4, 5, 1.0)
        assert state.bad_epochs == 0
    assert state.eta == 0.2 and state.best == 2.0
    # an infinite (validation) loss at a reduction is not taken as the best:
    # inf > inf - tol is False, and the schedule would never reduce again
    state = _State(np.zeros((1, 2)), np.zeros((0, 2)), np.zeros((1, 2)), 0, 0, 1.0)
    _apply_stopping(state, "adaptive", 1.0, 1e-4, 5, 1.0)
    stops = [_apply_stopping(state, "adaptive", np.inf, 1e-4, 5, 1.0) for _ in range(30)]
    assert state.best == 1.0 and stops[-1] and not any(stops[:-1])


def test_a_poisson_fit_whose_loss_jumped_about_is_not_converged_far_from_the_mle(backend):
    # strong effect (max eta near 10): the default step, halved twice,
    # still jumps about for 20 epochs, and a lucky epoch set the best loss;
    # the reductions that followed each led to the next, and the fit
    # "converged" 1.7 above the MLE's objective (coefficient 2.82 for 3.0,
    # intercept -0.70 for -1.0)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 2))
    y = rng.poisson(np.exp(3.0 * X[:, 0] - 1.0))
    fit = fastmle.sgd_fit(X, y, "poisson", random_state=3, backend=backend)
    W, b = exact_mle(X, y, "poisson")
    gap = (fastmle.glm_loss(X, y, fit.coef, "poisson", intercept=fit.intercept)
           - fastmle.glm_loss(X, y, W, "poisson", intercept=b))
    assert 0 <= gap < 0.1 and not fit.converged  # 0.04 above, still descending after 100 epochs


def test_a_finite_blowup_is_divergence_not_convergence(backend):
    # the loss grows to 1e296 without overflowing; with a tol no epoch
    # improves by, the adaptive schedule then shrinks the step every
    # n_iter_no_change epochs until the stopping rule fires, the loss still
    # far up: that must not read as converged
    X = np.random.default_rng(0).standard_normal((200, 3))
    with pytest.raises(fastmle.SGDDivergedError, match="far above the intercept-only") as info:
        fastmle.sgd_fit(X, 1e3 * X[:, 0], "gaussian", eta0=100.0, tol=1e300, random_state=0, backend=backend)
    assert max(info.value.result.loss_history) > 1e200 and not info.value.result.converged


def test_the_adaptive_schedule_brings_a_blowup_back_down(backend):
    # the same run with the default tol: each smaller step is judged from
    # the loss where it was taken, not against the first epoch's, so the
    # schedule's 0.8 brings the loss back down from 1e296 to the exact fit
    # (the smaller steps' descent had counted as no improvement, and the run
    # stopped 1e256 up, as SGDDivergedError)
    X = np.random.default_rng(0).standard_normal((200, 3))
    fit = fastmle.sgd_fit(X, 1e3 * X[:, 0], "gaussian", eta0=100.0, random_state=0, backend=backend)
    assert max(fit.loss_history) > 1e200 and fit.converged and fit.loss_history[-1] < 1e-20
    np.testing.assert_allclose(fit.coef.ravel(), [1e3, 0.0, 0.0], atol=1e-9)


@pytest.mark.parametrize("how", ["max_epochs", "tol=None", "callback"])
def test_a_finite_blowup_is_divergence_however_the_run_ends(how, backend):
    # three epochs of a constant, far too large step: the loss grows past
    # 1e20 without overflowing, and the run ends without the stopping rule
    X = np.random.default_rng(0).standard_normal((200, 3))
    options = {"max_epochs": 3, "tol": 1e-4}
    if how == "tol=None":
        options = {"max_epochs": 3, "tol": None}
    elif how == "callback":
        options = {"max_epochs": 50, "callback": lambda epoch, info: epoch == 3}
    with pytest.raises(fastmle.SGDDivergedError, match="far above the intercept-only") as info:
        fastmle.sgd_fit(X, 1e3 * X[:, 0], "gaussian", eta0=10.0, learning_rate="constant", random_state=0,
                        backend=backend, **options)
    result = info.value.result
    assert result.n_epochs == 3 and result.loss_history[-1] > 1e20 and not result.converged


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_divergence_restarts_are_quiet(dtype, backend):
    # overflowing steps are the kernels' to report (as batches not done),
    # not numpy's: no RuntimeWarning from the reference either
    X = np.random.default_rng(0).standard_normal((200, 3)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(fastmle.SGDDivergedError):
            fastmle.sgd_fit(X, 1e3 * X[:, 0], "gaussian", eta0=100.0, tol=1e300, random_state=0, backend=backend)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_divergence_level_objective_is_the_intercept_only_models_loss(family, weighted):
    # the closed form from y's statistics against the kernels' weighted loss
    # of a model whose only nonzero parameters are the intercepts
    from fastmle.glm import encode_response
    from fastmle.sgd import _intercept_only_objective
    X, y = data(family, n=300)
    rng = np.random.default_rng(1)
    w = rng.uniform(0.0, 3.0, len(y)) if weighted else None
    labels, targets, classes = encode_response(y, family, len(y), np.float64)
    K = len(classes) if family == "multinomial" else 1
    b = rng.standard_normal(K)
    expected = fastmle.glm_loss(np.zeros((len(y), 1)), labels if family == "multinomial" else y,
                                np.zeros((1, K)), family, intercept=b, sample_weight=w, reduction="sum") / len(y)
    weights = np.empty(0) if w is None else w
    assert _intercept_only_objective(family, K, labels, targets, weights, b) == pytest.approx(expected, rel=1e-12)


def test_a_warm_start_on_a_few_samples_is_not_judged_by_their_null_model(backend):
    # partial_fit's next batch: two samples, whose own intercept-only model
    # fits them almost exactly; the model trained elsewhere is far above
    # that level on them, and has not diverged
    X, y = data("gaussian", n=400)
    fit = fastmle.sgd_fit(X, y, "gaussian", random_state=0, backend=backend)
    X2, y2 = X[:2], y[:2] + np.array([5.0, 5.2])
    more = fastmle.sgd_fit(X2, y2, "gaussian", max_epochs=1, tol=None, warm_start=fit, backend=backend)
    assert more.loss_history[0] > 5.0


def test_a_short_run_that_improves_on_the_null_model_is_not_divergence(backend):
    # one epoch of the default step, far from converged: no false alarm
    X, y = data("multinomial", n=400, d=5)
    fit = fastmle.sgd_fit(X, y, "multinomial", max_epochs=1, tol=None, random_state=0, backend=backend)
    assert fit.n_epochs == 1 and not fit.converged


def test_a_flat_run_from_a_start_above_the_level_is_not_divergence(backend):
    # coef_init far from the optimum and a step too small to move: the loss
    # stays above the intercept-only model's without growing, the stopping
    # rule fires, and that is no blow-up (it once raised "grew to ...; use a
    # smaller eta0"); from the same start, a step far too large still is
    X, y = data("gaussian", n=200)
    far = np.full(X.shape[1], 5.0)
    options = dict(coef_init=far, learning_rate="constant", random_state=0, backend=backend)
    flat = fastmle.sgd_fit(X, y, "gaussian", eta0=1e-9, **options)
    assert flat.converged and flat.loss_history[-1] == pytest.approx(flat.loss_history[0], rel=1e-6)
    # (as test_a_finite_blowup_is_divergence_not_convergence, from coef_init)
    X = np.random.default_rng(0).standard_normal((200, 3))
    with pytest.raises(fastmle.SGDDivergedError, match="far above the intercept-only") as info:
        fastmle.sgd_fit(X, 1e3 * X[:, 0], "gaussian", eta0=100.0, coef_init=np.array([1e3, 0.0, 0.0]),
                        tol=1e300, random_state=0, backend=backend)
    assert info.value.result.converged is False and max(info.value.result.loss_history) > 1e200


def test_a_finite_blowup_names_the_epoch_it_stopped_in():
    X = np.random.default_rng(0).standard_normal((200, 3))
    with pytest.raises(fastmle.SGDDivergedError) as info:
        fastmle.sgd_fit(X, 1e3 * X[:, 0], "gaussian", eta0=100.0, tol=1e300, random_state=0)
    assert f"in epoch {info.value.result.n_epochs} " in str(info.value)



@pytest.mark.parametrize("how", ["max_epochs", "callback"])
@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_an_outlier_held_out_for_validation_is_not_divergence(family, how, backend):
    # The default step, the start's intercepts and the divergence level come
    # from the training rows alone. The start's intercepts once came from all
    # rows: an outlier among the validation rows put the start far above
    # the training rows' level, and a run ended by max_epochs or a callback
    # raised SGDDivergedError.
    rng = np.random.default_rng(0)
    n = 1000
    X = rng.standard_normal((n, 8))
    eta = 0.1 * (X @ rng.standard_normal(8))
    if family == "gaussian":
        y, outlier = eta + 0.1 * rng.standard_normal(n), 1e4
    else:
        y, outlier = rng.poisson(np.exp(eta)).astype(float), 1e5
    val, _ = first_epoch_rows(n, 2, 0.1)
    with_outlier = y.copy()
    with_outlier[val[0]] = outlier
    options = {"max_epochs": 20} if how == "max_epochs" else {"max_epochs": 50, "callback": lambda e, info: e == 2}
    fit = fastmle.sgd_fit(X, with_outlier, family, validation_fraction=0.1, random_state=2, tol=None,
                          backend=backend, **options)
    # the held-out response changes nothing of the training: the same fit as without the outlier
    clean = fastmle.sgd_fit(X, y, family, validation_fraction=0.1, random_state=2, tol=None, backend=backend,
                            **options)
    assert fit.validation_history != clean.validation_history  # (the outlier was held out)
    np.testing.assert_array_equal(fit.coef, clean.coef)
    np.testing.assert_array_equal(fit.intercept, clean.intercept)
    assert fit.eta0 == clean.eta0 and fit.loss_history == clean.loss_history
    # near the training rows' intercept (0, or log 1), not pulled towards
    # the outlier's share of all rows (10, or log 101 = 4.6)
    assert abs(fit.intercept[0]) < 0.5
    without = fastmle.sgd_fit(np.delete(X, val, axis=0), np.delete(y, val), family, max_epochs=1, tol=None,
                              random_state=0, backend=backend)
    assert fit.eta0 == pytest.approx(without.eta0, rel=0.2)  # X's row norms are all rows', y's the training rows'


@pytest.mark.parametrize("part", ["training", "validation"])
def test_a_validation_split_without_weight_on_one_side_is_refused(part):
    X, y = data("gaussian", n=50)
    val, _ = first_epoch_rows(50, 0, 0.2)
    weight = np.zeros(50)
    if part == "training":
        weight[val] = 1.0
    else:
        weight[np.setdiff1d(np.arange(50), val)] = 1.0
    with pytest.raises(ValueError, match=f"zero for every {part} sample of the validation_fraction=0.2 split"):
        fastmle.sgd_fit(X, y, "gaussian", sample_weight=weight, validation_fraction=0.2, random_state=0)

def test_a_stable_noisy_fit_whose_average_is_good_is_not_divergence():
    # y far from 0 without an intercept: with a constant step of 1 / L and
    # one-sample batches the iterates bounce around the optimum, their
    # losses (the epoch's) at twice the zero model's: no blow-up, and the
    # Polyak-Ruppert average returned is at the optimum
    rng = np.random.default_rng(0)
    n, d = 4000, 20
    X = rng.standard_normal((n, d))
    X *= np.sqrt(d) / np.linalg.norm(X, axis=1, keepdims=True)
    y = 100.0 + rng.standard_normal(n)
    fit = fastmle.sgd_fit(X, y, "gaussian", fit_intercept=False, batch_size=1, eta0=1.0 / d,
                          learning_rate="constant", average=True, random_state=0, max_epochs=50)
    assert fit.converged and fit.loss_history[-1] > np.mean(y * y)  # the epoch's loss, above the level
    optimum = np.linalg.lstsq(X, y, rcond=None)[0]
    assert np.mean((y - X @ fit.coef[:, 0]) ** 2) == pytest.approx(np.mean((y - X @ optimum) ** 2), rel=1e-2)


def test_default_step_of_an_overflowing_X_is_an_error():
    X = np.random.default_rng(0).standard_normal((50, 3)) * 1e200  # finite, squared norms overflow
    with pytest.raises(ValueError, match="overflow"):
        fastmle.sgd_fit(X, X[:, 0], "gaussian")


# ---------------------------------------------------------------- sparse X


def sparse_data(family, dtype=np.float64, seed=0):
    X, y = data(family, n=600, d=12, dtype=dtype, seed=seed)
    X[np.abs(X) < 1.0] = 0  # about two thirds of the entries
    X[5] = 0  # an empty row
    return X, y


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("options", [{}, {"alpha": 0.01, "l1_ratio": 0.5, "momentum": 0.5, "average": True}],
                         ids=["plain", "penalized-momentum-averaged"])
def test_sparse_fit_equals_dense_fit(backend, dtype, family, options):
    X, y = sparse_data(family, dtype)
    opts = dict(max_epochs=3, tol=None, random_state=0, backend=backend, validation_fraction=0.1, **options)
    dense = fastmle.sgd_fit(X, y, family, **opts)
    sparse = fastmle.sgd_fit(scipy.sparse.csr_matrix(X), y, family, **opts)
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(sparse.coef, dense.coef, rtol=rtol, atol=atol)
    np.testing.assert_allclose(sparse.loss_history, dense.loss_history, rtol=rtol)
    np.testing.assert_allclose(sparse.validation_history, dense.validation_history, rtol=rtol)
    assert sparse.coef.dtype == dtype
    A = scipy.sparse.csr_matrix(X)
    np.testing.assert_allclose(fastmle.glm_predict(A, sparse.coef, family, intercept=sparse.intercept, backend=backend),
                               fastmle.glm_predict(X, sparse.coef, family, intercept=sparse.intercept, backend=backend),
                               rtol=rtol, atol=atol)


def test_sparse_formats_and_duplicates():
    X, y = sparse_data("multinomial")
    want = fastmle.sgd_fit(X, y, "multinomial", max_epochs=2, random_state=0)
    coo = scipy.sparse.coo_matrix(X)
    # split every entry into two halves: duplicates add up, as in scipy
    dup = scipy.sparse.coo_matrix((np.r_[coo.data / 2, coo.data / 2], (np.r_[coo.row, coo.row],
                                   np.r_[coo.col, coo.col])), shape=X.shape)
    for A in (coo, scipy.sparse.csc_matrix(X), dup.tocsr(), scipy.sparse.csr_array(X)):
        got = fastmle.sgd_fit(A, y, "multinomial", max_epochs=2, random_state=0)
        np.testing.assert_allclose(got.coef, want.coef, rtol=1e-9, atol=1e-12)
        assert got.copied_X == (A.format != "csr")  # COO and CSC became a new CSR matrix
    A = scipy.sparse.csr_matrix(X)
    A.indices = A.indices.astype(np.int64)
    A.indptr = A.indptr.astype(np.int64)
    np.testing.assert_allclose(fastmle.sgd_fit(A, y, "multinomial", max_epochs=2, random_state=0).coef,
                               want.coef, rtol=1e-9, atol=1e-12)
    # a CSR matrix built with duplicates in its rows (tocsr() of the COO
    # above sums them; this one keeps them): its row norms, which give the
    # default step, are those of the summed cells
    csr = scipy.sparse.csr_matrix(X)
    rows = [slice(csr.indptr[i], csr.indptr[i + 1]) for i in range(X.shape[0])]
    raw = scipy.sparse.csr_matrix((np.concatenate([np.r_[csr.data[r], csr.data[r]] / 2 for r in rows]),
                                   np.concatenate([np.r_[csr.indices[r], csr.indices[r]] for r in rows]),
                                   2 * csr.indptr), shape=X.shape)
    assert not raw.has_canonical_format
    got = fastmle.sgd_fit(raw, y, "multinomial", max_epochs=2, random_state=0)
    assert got.eta0 == pytest.approx(want.eta0, rel=1e-12) and not got.copied_X  # no copy kept
    np.testing.assert_allclose(got.coef, want.coef, rtol=1e-9, atol=1e-12)
    # indices unsorted within rows (as scipy's products leave them), no duplicates: read as given, no copy
    unsorted = scipy.sparse.csr_matrix((np.concatenate([csr.data[r][::-1] for r in rows]),
                                        np.concatenate([csr.indices[r][::-1] for r in rows]), csr.indptr),
                                       shape=X.shape)
    assert not unsorted.has_sorted_indices
    got = fastmle.sgd_fit(unsorted, y, "multinomial", max_epochs=2, random_state=0)
    assert got.eta0 == pytest.approx(want.eta0, rel=1e-12) and not got.copied_X
    np.testing.assert_allclose(got.coef, want.coef, rtol=1e-9, atol=1e-12)


def test_bad_sparse_structure_is_refused():
    X, y = sparse_data("gaussian")
    A = scipy.sparse.csr_matrix(X)
    bad = A.copy()
    bad.indices[3] = 99  # a column past n_features: must never reach the kernels
    with pytest.raises(ValueError, match="column index outside"):
        fastmle.sgd_fit(bad, y, "gaussian")
    bad = A.copy()
    bad.indices = bad.indices.astype(np.int64)
    bad.indices[3] = 2**32 + 1  # an int32 cast would wrap it to the valid column 1
    with pytest.raises(ValueError, match="column index outside"):
        fastmle.sgd_fit(bad, y, "gaussian")
    bad = A.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastmle.sgd_fit(bad, y, "gaussian")
    bad = A.copy()
    bad.indptr[2] = bad.indptr[3] + 1  # not monotone
    with pytest.raises(ValueError, match="not a valid CSR"):
        fastmle.sgd_fit(bad, y, "gaussian")


# ---------------------------------------------------------------- bad input


def bad_calls():
    X, y = data("multinomial", n=50)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    yf = y.astype(float)
    yf[2] = np.inf
    return [
        ("NaN in X", (Xn, y, "multinomial"), {}, ValueError, "NaN or infinity"),
        ("inf in y", (X, yf, "gaussian"), {}, ValueError, "NaN or infinity"),
        ("one class", (X, np.zeros(50), "multinomial"), {}, ValueError, "at least 2 classes"),
        ("binomial classes", (X, np.ones(50), "binomial"), {"classes": [1, 2]}, ValueError,
         r"binomial classes must be \[0, 1\], got \[1, 2\]"),
        ("binomial one class", (X, np.ones(50), "binomial"), {}, ValueError,
         r"binomial y has only one class \(1\); it needs both 0 and 1"),
        ("y beyond float32", (X.astype(np.float32), np.full(50, 1e39), "gaussian"), {}, ValueError,
         "y has values beyond the range of float32"),
        ("validation of one sample", (X[:1], yf[:1] * 0, "gaussian"), {"validation_fraction": 0.5}, ValueError,
         r"leaves no training or validation samples \(n_samples = 1\)"),
        ("fit_intercept 0.5", (X, y, "gaussian"), {"fit_intercept": 0.5}, TypeError,
         "fit_intercept must be True or False, got float 0.5"),
        ("fit_intercept None", (X, y, "multinomial"), {"fit_intercept": None}, TypeError, "fit_intercept"),
        ("callback not callable", (X, y, "gaussian"), {"callback": 3}, TypeError,
         r"callback must be a function callback\(epoch, info\) or None, got 3"),
        ("progress a string", (X, y, "gaussian"), {"progress": "no"}, TypeError, "progress must be True or False"),
        ("negative count", (X, -y, "poisson"), {}, ValueError, "counts >= 0"),
        ("non-binary binomial", (X, y, "binomial"), {}, ValueError, "0 or 1"),
        ("mismatched lengths", (X, y[:-1], "gaussian"), {}, ValueError, "49 samples but X has 50"),
        ("unknown family", (X, y, "gamma"), {}, ValueError, "unknown family"),
        ("unknown schedule", (X, y, "gaussian"), {"learning_rate": "optimal"}, ValueError, "learning_rate"),
        ("batch size 0", (X, y, "gaussian"), {"batch_size": 0}, ValueError, "batch_size"),
        ("momentum 1", (X, y, "gaussian"), {"momentum": 1.0}, ValueError, "momentum"),
        ("schedule_epochs 0", (X, y, "gaussian"), {"learning_rate": "cosine", "schedule_epochs": 0},
         ValueError, "schedule_epochs"),
        ("nesterov alone", (X, y, "gaussian"), {"nesterov": True}, ValueError, "nesterov"),
        ("negative alpha", (X, y, "gaussian"), {"alpha": -1.0}, ValueError, "alpha"),
        ("l1_ratio 2", (X, y, "gaussian"), {"l1_ratio": 2.0}, ValueError, "l1_ratio"),
        ("validation 1", (X, y, "gaussian"), {"validation_fraction": 1.0}, ValueError, "validation_fraction"),
        ("class_weight gaussian", (X, y, "gaussian"), {"class_weight": "balanced"}, ValueError, "class_weight"),
        ("class_weight unknown label", (X, y, "multinomial"), {"class_weight": {np.int64(7): 1.0}}, ValueError,
         r"labels \[7\] not among the classes \[0, 1, 2\]"),
        ("y without outputs", (X, np.zeros((50, 0)), "gaussian"), {}, ValueError, "no outputs"),
        ("y 3-D", (X, np.zeros((50, 2, 3)), "gaussian"), {}, ValueError, r"1-D or 2-D \(n_samples, n_outputs\)"),
        ("class_weight negative", (X, y, "multinomial"), {"class_weight": {0: -1.0}}, ValueError,
         "class_weight must map labels to finite weights >= 0, got -1.0 for 0"),
        ("class_weight NaN", (X, y, "multinomial"), {"class_weight": {2: np.nan}},
         ValueError, "finite weights >= 0, got nan for 2"),
        ("class_weight a string", (X, y, "multinomial"), {"class_weight": {1: "2"}}, ValueError,
         "finite weights >= 0"),
        ("class_weight all zero", (X, y, "multinomial"), {"class_weight": {0: 0, 1: 0.0, 2: 0}}, ValueError,
         "sample_weight times class_weight is zero for every sample"),
        ("binomial class_weight all zero", (X, (y == 1).astype(float), "binomial"),
         {"class_weight": {0: 0.0, 1: 0.0}}, ValueError, "zero for every sample"),
        ("eta0 a string", (X, y, "gaussian"), {"eta0": "0.1"}, TypeError, "eta0 must be a real number"),
        ("momentum a list", (X, y, "gaussian"), {"momentum": [0.5]}, TypeError, "momentum must be a real number"),
        ("tol a string", (X, y, "gaussian"), {"tol": "1e-4"}, TypeError, "tol must be a real number"),
        ("alpha None", (X, y, "gaussian"), {"alpha": None}, TypeError, "alpha must be a real number, got"),
        ("nesterov a string", (X, y, "gaussian"), {"momentum": 0.5, "nesterov": "yes"}, TypeError, "nesterov"),
        ("negative weight", (X, y, "gaussian"), {"sample_weight": -np.ones(50)}, ValueError, "sample_weight"),
        ("weights wrong length", (X, y, "gaussian"), {"sample_weight": np.ones(3)}, ValueError, "sample_weight"),
        ("1-D X", (X[:, 0], y, "gaussian"), {}, ValueError, "2-D"),
        ("complex X", (X.astype(complex), y, "gaussian"), {}, TypeError, "real numbers"),
        ("bad backend", (X, y, "gaussian"), {"backend": "cuda"}, ValueError, "unknown backend"),
    ]


@pytest.mark.parametrize("case", bad_calls(), ids=lambda c: c[0])
def test_bad_input_is_refused_before_training(case):
    _, args, kwargs, exc, match = case
    with pytest.raises(exc, match=match):
        fastmle.sgd_fit(*args, **kwargs)


# NaN or inf in a dense X: a ValueError before any kernel runs, no result,
# and a warm start left as it was, wherever the value sits and whatever the
# options (the rows include the held-out ones and the first epoch's first and
# last: they would catch a check left to the epochs themselves).

BAD_VALUES = [np.nan, np.inf, -np.inf]
BAD_X_OPTIONS = {
    "plain": {},
    "zero weight": {},  # sample_weight 0 on the bad row (set in the test)
    "l1": {"alpha": 0.1, "l1_ratio": 1.0},
    "l2 average": {"alpha": 0.1, "average": True},
    "cosine one epoch": {"learning_rate": "cosine", "max_epochs": 1},
    "momentum": {"momentum": 0.9},
    "nesterov l1": {"momentum": 0.5, "nesterov": True, "alpha": 0.01, "l1_ratio": 0.5},
    "default eta0": {"eta0": None},
    "full batch": {"batch_size": 50},
    "validation, bad row held out": {"validation_fraction": 0.3},
    "validation, bad row trained on": {"validation_fraction": 0.3},
    "validation default eta0": {"validation_fraction": 0.3, "eta0": None},
}


def first_epoch_rows(n, seed, validation_fraction):
    """(validation rows, the first epoch's order of the training rows) as
    sgd_fit draws them from random_state=seed. Only to aim the bad value at
    the held-out rows and at the epoch's first and last batch: should
    sgd_fit draw differently, the tests still hold, with other rows."""
    rng = np.random.default_rng(seed)
    train, val = np.arange(n), np.empty(0, np.int64)
    if validation_fraction is not None:
        split = rng.permutation(n)
        n_val = int(np.ceil(validation_fraction * n))
        val, train = np.sort(split[:n_val]), np.sort(split[n_val:])
    return val, rng.permutation(train)


@pytest.mark.parametrize("case", list(BAD_X_OPTIONS))
@pytest.mark.parametrize("family", FAMILIES)
def test_nan_or_inf_anywhere_in_X_raises(backend, dtype, family, case):
    X, y = data(family, n=50, d=4, dtype=dtype, seed=1)
    options = dict(eta0=0.05, max_epochs=2, tol=None, batch_size=7, random_state=0)
    options.update(BAD_X_OPTIONS[case])
    val, order = first_epoch_rows(50, 0, options.get("validation_fraction"))
    if case == "validation, bad row held out":
        rows = [val[0], val[len(val) // 2], val[-1]]
    else:  # X's first, middle and last row, and the epoch's first and last (a batch of one) row
        rows = [0, 25, 49, order[0], order[-1]]
    for row in rows:
        for value in BAD_VALUES:
            bad = X.copy()
            bad[row, row % 4] = value
            weight = None
            if case == "zero weight":
                weight = np.ones(50)
                weight[row] = 0.0
            with pytest.raises(ValueError, match="X contains NaN or infinity"):
                fastmle.sgd_fit(bad, y, family, sample_weight=weight, backend=backend, **options)
    # the same options on finite X fit (else the errors above could be another failure)
    fastmle.sgd_fit(X, y, family, backend=backend, **options)


def test_nan_in_X_with_max_epochs_0_is_refused(backend):
    X, y = data("multinomial", n=50)
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match="max_epochs"):  # refused before X is looked at
        fastmle.sgd_fit(X, y, "multinomial", max_epochs=0, eta0=0.05, backend=backend)


@pytest.mark.parametrize("value", BAD_VALUES)
def test_nan_or_inf_in_X_leaves_a_warm_start_unchanged(backend, dtype, value):
    X, y = data("multinomial", n=50, dtype=dtype)
    opts = dict(eta0=0.05, momentum=0.5, average=True, tol=None, random_state=0, backend=backend)
    previous = fastmle.sgd_fit(X, y, "multinomial", max_epochs=2, **opts)
    before = copy.deepcopy(previous)
    for row in (0, 31, 49):
        bad = X.copy()
        bad[row, 1] = value
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            fastmle.sgd_fit(bad, y, "multinomial", max_epochs=3, warm_start=previous, **opts)
    for name in ("coef", "intercept"):
        np.testing.assert_array_equal(getattr(previous, name), getattr(before, name))
    for name in ("params", "velocity", "avg"):
        np.testing.assert_array_equal(getattr(previous.state, name), getattr(before.state, name))
    for name in ("step", "epochs", "eta", "horizon", "avg_start", "best", "bad_epochs"):
        assert getattr(previous.state, name) == getattr(before.state, name), name
    assert (previous.n_epochs, previous.n_steps, previous.loss_history) == \
        (before.n_epochs, before.n_steps, before.loss_history)
    # and it still continues as it would have
    again = fastmle.sgd_fit(X, y, "multinomial", max_epochs=1, warm_start=previous, **opts)
    want = fastmle.sgd_fit(X, y, "multinomial", max_epochs=1, warm_start=before, **opts)
    np.testing.assert_array_equal(again.coef, want.coef)


def test_classes_given_in_any_order_are_sorted(backend):
    # classes=: the labels y may not show; given unsorted or repeated, they
    # are sorted and made distinct (result.classes), and each label keeps
    # its own coefficients (a shortcut once mistook [0, 2, 1, 3] for 0..3)
    X, y = data("multinomial", n=300, K=3)
    y = np.where(y == 2, 3, y)   # labels 0, 1, 3; class 2 never seen
    options = dict(eta0=0.05, max_epochs=2, tol=None, random_state=0, backend=backend)
    want = fastmle.sgd_fit(X, y, "multinomial", classes=np.array([0, 1, 2, 3]), **options)
    for classes in ([0, 2, 1, 3], [3, 2, 1, 0, 2]):
        got = fastmle.sgd_fit(X, y, "multinomial", classes=np.array(classes), **options)
        np.testing.assert_array_equal(got.classes, [0, 1, 2, 3])
        np.testing.assert_array_equal(got.coef, want.coef)


@pytest.fixture
def kernel_calls(monkeypatch):
    """The names of the kernels sgd_fit runs, in order, as the test goes."""
    ran = []
    real = fastmle.sgd.run_kernel

    def spy(kern, name, *args):
        ran.append(name)
        return real(kern, name, *args)
    monkeypatch.setattr(fastmle.sgd, "run_kernel", spy)
    return ran


@pytest.mark.parametrize("eta0, check_input", [(0.05, True), (None, True), (None, False)])
def test_nan_or_inf_in_X_is_refused_before_any_kernel_runs(backend, eta0, check_input, kernel_calls):
    # only scan_rows, which reads X and writes two numbers, may run first
    # (check_input=False with a given eta0 skips it: the test below)
    X, y = data("gaussian", n=50)
    for value in BAD_VALUES:
        bad = X.copy()
        bad[20, 3] = value
        kernel_calls.clear()
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            fastmle.sgd_fit(bad, y, "gaussian", eta0=eta0, check_input=check_input, backend=backend)
        assert kernel_calls == ["scan_rows"]


@pytest.mark.parametrize("family", FAMILIES)
def test_default_eta0_from_the_scan_of_X(backend, dtype, family):
    # the default step comes from scan_rows' largest squared row norm: the
    # same as from numpy's, for every backend, with and without check_input
    X, y = data(family, n=300, d=7, dtype=dtype)
    X[17] *= 3.0  # one row well above the others
    norm2 = float(np.einsum("ij,ij->i", X, X, dtype=np.float64).max())
    targets = np.asarray(y, np.float64).reshape(len(y), -1)
    want = default_eta0(norm2, family, targets, True, 0.01, 0.5, 0.0, np.empty(0))
    for check_input in (True, False):
        fit = fastmle.sgd_fit(X, y, family, alpha=0.01, l1_ratio=0.5, max_epochs=1, tol=None,
                              check_input=check_input, random_state=0, backend=backend)
        assert fit.eta0 == pytest.approx(want, rel=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's, on NaN X
@pytest.mark.parametrize("family", FAMILIES)
def test_check_input_false_skips_the_scan_of_X_but_still_names_it(backend, family, kernel_calls):
    # check_input=False (the estimators, after scikit-learn's validation):
    # the same fit on finite X; on X with NaN or inf the kernel runs (no
    # scan first) and the fit still ends with the ValueError about X,
    # whichever row holds it (the first or last of the epoch, a middle one)
    X, y = data(family, n=50)
    options = dict(eta0=0.05, max_epochs=2, tol=None, batch_size=7, random_state=0, backend=backend)
    want = fastmle.sgd_fit(X, y, family, **options)
    got = fastmle.sgd_fit(X, y, family, check_input=False, **options)
    np.testing.assert_array_equal(got.coef, want.coef)
    np.testing.assert_array_equal(got.intercept, want.intercept)
    val, order = first_epoch_rows(50, 0, 0.2)
    for value in BAD_VALUES:  # a held-out row: no epoch stops on it
        bad = X.copy()
        bad[val[0], 1] = value
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            fastmle.sgd_fit(bad, y, family, check_input=False, validation_fraction=0.2, **options)
    _, order = first_epoch_rows(50, 0, None)
    for row in (order[0], 25, order[-1]):
        for value in BAD_VALUES:
            bad = X.copy()
            bad[row, 1] = value
            kernel_calls.clear()
            with pytest.raises(ValueError, match="X contains NaN or infinity"):
                fastmle.sgd_fit(bad, y, family, check_input=False, **options)
            assert kernel_calls == ["sgd_epoch"], kernel_calls   # not scanned first: found by the epoch


def test_bad_glm_loss_and_predict_input():
    X, y = data("multinomial", n=20)
    with pytest.raises(ValueError, match="coef must have shape"):
        fastmle.glm_predict(X, np.zeros((3, 2)), "multinomial")
    with pytest.raises(ValueError, match="not among the classes"):
        fastmle.glm_loss(X, y + 5, np.zeros((4, 3)), "multinomial")
    with pytest.raises(ValueError, match="reduction"):
        fastmle.glm_loss(X, y, np.zeros((4, 3)), "multinomial", reduction="none")
    with pytest.raises(ValueError, match="outputs"):
        fastmle.glm_loss(X, np.zeros((20, 2)), np.zeros((4, 3)), "gaussian")


def test_averaging_from_more_samples_than_any_run_sees(backend):
    # average=2**80 never starts averaging; it had overflowed the compiled
    # kernels' int64 argument (an OverflowError naming nothing) while the
    # numpy reference ran
    X, y = data("multinomial")
    opts = dict(max_epochs=2, tol=None, random_state=0, backend=backend)
    got = fastmle.sgd_fit(X, y, "multinomial", average=2**80, **opts)
    np.testing.assert_array_equal(got.coef, fastmle.sgd_fit(X, y, "multinomial", **opts).coef)


def test_result_repr_is_a_summary():
    # the dataclass repr printed every coefficient and epoch loss
    X, y = data("multinomial", d=50, K=10)
    fit = fastmle.sgd_fit(X, y, "multinomial", max_epochs=30, tol=None, random_state=0)
    assert repr(fit).startswith("SGDResult(family='multinomial', coef shape (50, 10), n_epochs=30,")
    assert len(repr(fit)) < 200
