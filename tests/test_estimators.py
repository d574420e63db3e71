"""The scikit-learn estimators MLEClassifier / MLERegressor: scikit-learn's
own estimator checks, its tools (clone, Pipeline, GridSearchCV), the
classifier API's conventions, partial_fit and warm starts, precision,
agreement of the backends, accuracy next to scikit-learn's solvers, and a
clear error for every kind of bad input."""
import os
import warnings

import numpy as np
import pytest

# expected_failed_checks (below) came with scikit-learn 1.6
sklearn = pytest.importorskip("sklearn", minversion="1.6")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastmle  # noqa: E402
from fastmle.estimators import MLEClassifier, MLERegressor  # noqa: E402

# Short fits keep the tests fast; they need not converge, so the warning
# saying so is noise here (test_convergence_warning checks it is given).
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

BACKENDS = ["numba", "numpy"] if os.environ.get("FASTMLE_NO_C") else ["c", "numba", "numpy"]
FAST = dict(max_epochs=20, random_state=0)


def _all_backends_present():
    # comparing backends means nothing if one silently fell back to another
    missing = [b for b in BACKENDS if b not in fastmle.available_backends()]
    reasons = {b: fastmle._dispatch.unavailable_reason(b) for b in missing}
    assert not missing, f"backends unavailable: {reasons}"


# ---------------------------------------------------------------- data sets

def _multiclass(n=300, n_classes=3, seed=0):
    X, y = make_classification(n, 6, n_informative=4, n_redundant=0, n_classes=n_classes,
                               n_clusters_per_class=1, class_sep=1.0, random_state=seed)
    return StandardScaler().fit_transform(X), y


def _multinomial(n, n_features=5, n_classes=3, seed=0):
    """y drawn from a softmax regression model: the multinomial likelihood is
    the true one, and no class is separable."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    eta = X @ rng.standard_normal((n_features, n_classes))
    p = np.exp(eta - eta.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return X, np.argmax(p.cumsum(axis=1) > rng.random((n, 1)), axis=1)


def _regression(n=300, seed=0, outputs=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    coef = rng.standard_normal((5,) if outputs is None else (5, outputs))
    y = X @ coef + 1.5 + 0.5 * rng.standard_normal((n,) if outputs is None else (n, outputs))
    return X, y


def _counts(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = rng.poisson(np.exp(X @ np.array([0.4, -0.3, 0.2, 0.0]) + 0.8))
    return X, y


# ------------------------------------------------- scikit-learn's own checks

def _check_instances():
    for backend in BACKENDS:
        yield MLEClassifier(backend=backend, **FAST)
        yield MLEClassifier("binomial", backend=backend, **FAST)
        yield MLERegressor(backend=backend, **FAST)
        yield MLERegressor("poisson", backend=backend, **FAST)


def _expected_failed_checks(estimator):
    failing = {
        # SGD visits a sample of weight 2 once with a doubled gradient, not
        # twice with two steps, and stops after a finite number of noisy
        # steps: the fit is statistically, not numerically (rtol 1e-7),
        # equivalent to repeating samples. scikit-learn marks the same check
        # for its own SGDClassifier / SGDRegressor;
        # test_sample_weight_is_statistically_repetition checks the statistics.
        "check_sample_weight_equivalence_on_dense_data":
            "SGD: sample_weight is not numerically equivalent to repeating samples",
        "check_sample_weight_equivalence_on_sparse_data":
            "SGD: sample_weight is not numerically equivalent to repeating samples",
    }
    if getattr(estimator, "family", None) == "poisson":
        # this check fits make_regression's y, with negative values, without
        # applying the positive_only target tag that the other checks honour;
        # Poisson counts cannot be negative (test_regressor_multi_output covers
        # multi-output Poisson with counts)
        failing["check_regressor_multioutput"] = "the check gives Poisson a negative y"
    return failing


@parametrize_with_checks(list(_check_instances()), expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_read_only_input(backend):
    # read-only X, as joblib's memmaps for GridSearchCV(n_jobs>1) workers
    X, y = _multiclass(100)
    X.flags.writeable = False
    clf = MLEClassifier(backend=backend, **FAST).fit(X, y)
    assert clf.predict_proba(X).shape == (100, 3)


def test_lazy_import_from_package():
    assert fastmle.MLEClassifier is MLEClassifier and fastmle.MLERegressor is MLERegressor


# ------------------------------------- clone, parameters, Pipeline, search

def test_clone_get_set_params():
    clf = MLEClassifier("binomial", alpha=0.1, momentum=0.9, backend="numpy", random_state=3)
    params = clf.get_params()
    assert params["family"] == "binomial" and params["alpha"] == 0.1 and params["backend"] == "numpy"
    X, y = _multiclass(100, 2)
    clf.fit(X, y)
    copy = clone(clf)
    assert copy.get_params() == params
    assert not hasattr(copy, "classes_") and not hasattr(copy, "n_iter_")
    with pytest.raises(NotFittedError):
        copy.predict(X)
    assert copy.set_params(alpha=0.5, learning_rate="cosine") is copy
    assert copy.alpha == 0.5 and copy.learning_rate == "cosine" and clf.alpha == 0.1
    with pytest.raises(ValueError, match="Invalid parameter 'nonsense'"):
        copy.set_params(nonsense=1)
    # the constructor stores, it does not check: a bad value fails at fit
    bad = MLERegressor(family="binomial")
    assert bad.family == "binomial"


def test_pipeline_and_grid_search():
    X, y = _multiclass(240)
    X = X * 5 + 3  # scaling matters: the Pipeline's StandardScaler undoes it
    pipe = Pipeline([("scale", StandardScaler()), ("clf", MLEClassifier(**FAST))])
    grid = GridSearchCV(pipe, {"clf__family": ["multinomial"], "clf__alpha": [0.0, 10.0],
                               "clf__backend": ["c" if "c" in BACKENDS else "numba", "numpy"]}, cv=3)
    grid.fit(X, y)
    assert grid.best_params_["clf__alpha"] == 0.0  # a huge penalty costs accuracy
    assert grid.score(X, y) > 0.8
    assert grid.best_estimator_.named_steps["clf"].n_features_in_ == 6
    # regressor with its own score (R^2) in the search
    Xr, yr = _regression(150)
    reg = GridSearchCV(MLERegressor(**FAST), {"alpha": [0.0, 1e-2]}, cv=3).fit(Xr, yr)
    assert reg.best_score_ > 0.9


# ---------------------------------------------------- classifier conventions

@pytest.mark.parametrize("family, n_classes", [("multinomial", 3), ("multinomial", 2), ("binomial", 2)])
def test_probabilities_and_decision_function(family, n_classes, backend):
    X, y = _multiclass(150, n_classes)
    clf = MLEClassifier(family, backend=backend, **FAST).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (150, n_classes)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-10, atol=1e-15)
    assert_array_equal(clf.classes_[np.argmax(proba, axis=1)], clf.predict(X))

    scores = clf.decision_function(X)
    eta = X @ clf.coef_.T + clf.intercept_
    if n_classes == 2:
        # scikit-learn's binary convention: (n,), the log-odds of classes_[1]
        assert scores.shape == (150,)
        assert_allclose(scores, eta[:, 1] - eta[:, 0] if family == "multinomial" else eta[:, 0],
                        rtol=1e-10, atol=1e-12)
        assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores)), rtol=1e-10)
        assert_array_equal(clf.predict(X), clf.classes_[(scores > 0).astype(int)])
    else:
        assert scores.shape == (150, n_classes)
        assert_allclose(scores, eta, rtol=1e-10, atol=1e-12)
        assert_array_equal(clf.predict(X), clf.classes_[np.argmax(scores, axis=1)])
    n_outputs = n_classes if family == "multinomial" else 1
    assert clf.coef_.shape == (n_outputs, 6) and clf.intercept_.shape == (n_outputs,)
    assert clf.n_features_in_ == 6 and 1 <= clf.n_iter_ <= FAST["max_epochs"]


def test_string_labels():
    X, y = _multiclass(150, 3)
    names = np.array(["setosa", "versicolor", "virginica"])
    clf = MLEClassifier(**FAST).fit(X, names[y])
    assert_array_equal(clf.classes_, names)
    assert clf.predict(X).dtype == names.dtype
    # the same fit as with the integer labels: classes_ only renames
    ints = MLEClassifier(**FAST).fit(X, y)
    assert_array_equal(clf.predict(X), names[ints.predict(X)])
    assert_allclose(clf.predict_proba(X), ints.predict_proba(X))
    assert clf.score(X, names[y]) > 0.8


def test_binomial_string_labels_and_class_weight():
    X, y = _multiclass(200, 2)
    labels = np.array(["spam", "ham"])[y]  # classes_ sorted: ham, spam
    clf = MLEClassifier("binomial", **FAST).fit(X, labels)
    assert_array_equal(clf.classes_, ["ham", "spam"])
    # the log-odds and the one coefficient row are those of classes_[1]
    spam = (labels == "spam").astype(float)
    ref = MLEClassifier("binomial", **FAST).fit(X, spam)
    assert_allclose(clf.coef_, ref.coef_)
    assert_allclose(clf.predict_proba(X)[:, 1], ref.predict_proba(X)[:, 1])
    assert set(clf.predict(X)) == {"ham", "spam"}
    # class_weight by label: a heavier class is predicted more often
    heavy = MLEClassifier("binomial", class_weight={"spam": 20.0}, **FAST).fit(X, labels)
    assert (heavy.predict(X) == "spam").sum() > (clf.predict(X) == "spam").sum()
    with pytest.raises(ValueError, match="class_weight has labels.*eggs"):
        MLEClassifier("binomial", class_weight={"eggs": 2.0}, **FAST).fit(X, labels)


# ------------------------------------------------ partial_fit, warm start

def _mean_nll(clf, X, y):
    return log_loss(y, clf.predict_proba(X), labels=clf.classes_)


def test_partial_fit():
    X, y = _multiclass(300, 3)
    clf = MLEClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes .* must be given on the first call"):
        clf.partial_fit(X, y)
    assert not hasattr(clf, "classes_")  # a failed first call leaves it unfitted
    # the first batch need not show every class
    partial = MLEClassifier(random_state=0).partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2])
    assert_array_equal(partial.classes_, [0, 1, 2]) and partial.coef_.shape == (3, 6)
    assert partial.partial_fit(X, y).predict_proba(X).shape == (300, 3)
    clf.partial_fit(X[:100], y[:100], classes=np.array([2, 0, 1]))
    assert_array_equal(clf.classes_, [0, 1, 2]) and clf.n_iter_ == 1
    losses, steps = [_mean_nll(clf, X, y)], [clf.t_]
    for _ in range(5):
        clf.partial_fit(X, y)
        losses.append(_mean_nll(clf, X, y))
        steps.append(clf.t_)
    assert np.all(np.diff(steps) == 10)  # ceil(300 / 32) steps per call, counted on
    assert losses[-1] < losses[1] < losses[0]  # training continues
    assert clf.score(X, y) > 0.85

    with pytest.raises(ValueError, match="label 7 not among classes_"):
        clf.partial_fit(X[:3], np.array([0, 7, 1]))
    with pytest.raises(ValueError, match="differ from the first call"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="X has 5 features, but MLEClassifier is expecting 6"):
        clf.partial_fit(X[:, :5], y)
    with pytest.raises(ValueError, match="balanced.*partial_fit"):
        MLEClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_regressor():
    X, y = _regression(300)
    reg = MLERegressor(random_state=0)
    losses = []
    for _ in range(4):
        reg.partial_fit(X, y)
        losses.append(np.mean((reg.predict(X) - y) ** 2))
    assert losses[-1] < losses[0] and reg.n_iter_ == 1 and reg.coef_.shape == (5,)
    with pytest.raises(ValueError, match="fitted on 1-D y"):
        reg.partial_fit(X, np.c_[y, y])


def test_warm_start():
    X, y = _multiclass(300, 3)
    cold = MLEClassifier(max_epochs=3, tol=None, random_state=0).fit(X, y)
    warm = MLEClassifier(max_epochs=3, tol=None, random_state=0, warm_start=True).fit(X, y)
    assert_allclose(warm.coef_, cold.coef_)  # the first fit is the same
    warm.fit(X, y)
    assert warm.n_iter_ == 3 and warm.t_ == cold.t_  # per fit: the schedule starts afresh
    # the second fit starts where the first ended: below the cold start's loss
    assert warm.loss_curve_[0] < cold.loss_curve_[0]
    assert _mean_nll(warm, X, y) < _mean_nll(cold, X, y)
    # refitting without warm_start repeats the fit exactly
    again = cold.fit(X, y).coef_.copy()
    assert_array_equal(cold.fit(X, y).coef_, again)
    # a different problem (classes, features) starts afresh instead of failing
    warm.fit(X[:, :4], y)
    assert warm.coef_.shape == (3, 4) and warm.t_ == cold.t_
    warm.fit(X, np.minimum(y, 1))
    assert warm.coef_.shape == (2, 6)


@pytest.mark.parametrize("Estimator, family", [(MLEClassifier, "multinomial"), (MLERegressor, "gaussian")])
def test_warm_start_refits_new_data_and_options_as_a_fresh_fit(Estimator, family):
    # scikit-learn's warm_start: a refit starts from the last coefficients
    # but runs its own schedule, so a path of alpha or new targets end where
    # a cold fit would. Until session 15 the refit continued the finished
    # run: its step had decayed to its floor and its stopping rule compared
    # the new losses with the old best, so it returned the old coefficients
    # and called them converged.
    if family == "multinomial":
        X, y = _multinomial(600)
        y_new = (y + 1) % 3
    else:
        X, y = _regression(600)
        y_new = -y
    options = dict(random_state=0, max_epochs=300)
    warm = Estimator(family, warm_start=True, **options).fit(X, y)
    for changes, target in [(dict(alpha=0.5), y), (dict(alpha=0.0), y_new)]:
        warm.set_params(**changes).fit(X, target)
        cold = Estimator(family, **options, **changes).fit(X, target)
        assert_allclose(warm.coef_, cold.coef_, atol=0.05)
        assert_allclose(warm.intercept_, cold.intercept_, atol=0.05)
        assert warm.n_iter_ > warm.n_iter_no_change  # not stopped by the last fit's best loss


def test_warm_start_from_a_fit_without_intercept_or_by_fisher_scoring():
    X, y = _regression(600)
    cold = MLERegressor(random_state=0, max_epochs=3, tol=None).fit(X, y)
    # no intercept last time: the refit's intercept starts at the
    # intercept-only MLE (the mean of y), not at the old zero
    warm = MLERegressor(fit_intercept=False, warm_start=True, random_state=0, max_epochs=3, tol=None).fit(X, y)
    warm.set_params(fit_intercept=True).fit(X, y)
    assert warm.loss_curve_[0] < cold.loss_curve_[0]
    # from an exact fit: fit with warm_start and partial_fit both start there
    exact = MLERegressor(solver="fisher", warm_start=True).fit(X, y)
    coef = exact.coef_.copy()
    exact.set_params(solver="sgd", eta0=1e-12, max_epochs=2, tol=None).fit(X, y)
    assert_allclose(exact.coef_, coef, rtol=1e-9)
    again = MLERegressor(solver="fisher").fit(X, y).set_params(solver="sgd", eta0=1e-12).partial_fit(X, y)
    assert_allclose(again.coef_, coef, rtol=1e-9) and again.n_iter_ == 1


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_fisher_solver_penalizes_as_sgd_does(scale):
    # both solvers minimise (1 / n) sum_i w_i loss_i + alpha / 2 |coef|^2:
    # the closed-form weighted ridge (intercept unpenalized) for gaussian,
    # whatever the weights' scale (fisher once divided by their sum)
    X, y = _regression(500)
    w = scale * (np.arange(500) % 3 + 1.0)
    alpha = 0.5
    m = np.average(X, axis=0, weights=w)
    Xc, yc = X - m, y - np.average(y, weights=w)
    want = np.linalg.solve(Xc.T @ (w[:, None] * Xc) / 500 + alpha * np.eye(5), Xc.T @ (w * yc) / 500)
    exact = MLERegressor(solver="fisher", alpha=alpha).fit(X, y, sample_weight=w)
    assert_allclose(exact.coef_, want, rtol=1e-8)
    sgd = MLERegressor(alpha=alpha, learning_rate="constant", max_epochs=400, tol=None, eta0=0.001 / scale,
                       random_state=0).fit(X, y, sample_weight=w)
    assert_allclose(sgd.coef_, want, atol=0.02)


def test_fisher_solver_names_a_dataframes_columns():
    pd = pytest.importorskip("pandas")
    X, y = _regression(200)
    frame = pd.DataFrame(X, columns=list("abcde"))
    reg = MLERegressor(solver="fisher").fit(frame, y)
    assert reg.mle_result_.param_names == ["a", "b", "c", "d", "e", "intercept"]
    assert reg.mle_result_.param_names == fastmle.fit_mle(frame, y, "gaussian").param_names


def test_random_state_kinds():
    X, y = _multiclass(100, 3)
    for seed in (np.random.RandomState(0), np.random.default_rng(0), None):
        clf = MLEClassifier(max_epochs=3, random_state=seed).fit(X, y)
        clf.partial_fit(X, y)  # continued streams too
    a = MLEClassifier(max_epochs=3, random_state=np.random.RandomState(5)).fit(X, y)
    b = MLEClassifier(max_epochs=3, random_state=np.random.RandomState(5)).fit(X, y)
    assert_array_equal(a.coef_, b.coef_)


def test_convergence_warning():
    X, y = _multiclass(100, 3)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_epochs=2") as caught:
        MLEClassifier(max_epochs=2, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 iteration") as caught_fisher:
        MLEClassifier(solver="fisher", max_epochs=1).fit(X, y)
    assert caught[0].filename == caught_fisher[0].filename == __file__  # the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        MLEClassifier(max_epochs=2, tol=None, random_state=0).fit(X, y)  # no stopping rule asked for
        MLEClassifier(random_state=0, max_epochs=2).partial_fit(X, y, classes=[0, 1, 2])


# ------------------------------------------------------ precision, backends

def test_float32_trains_in_float32():
    X, y = _multiclass(150, 3)
    X32 = X.astype(np.float32)
    clf = MLEClassifier(**FAST).fit(X32, y)
    assert clf.coef_.dtype == np.float32 and clf.intercept_.dtype == np.float32
    assert clf.predict_proba(X32).dtype == np.float32 and clf.decision_function(X32).dtype == np.float32
    assert_allclose(clf.coef_, MLEClassifier(**FAST).fit(X, y).coef_, rtol=1e-3, atol=1e-4)
    # partial_fit keeps the first call's precision
    inc = MLEClassifier(random_state=0).partial_fit(X32, y, classes=[0, 1, 2]).partial_fit(X, y)
    assert inc.coef_.dtype == np.float32
    Xr, yr = _regression(150)
    reg = MLERegressor(**FAST).fit(Xr.astype(np.float32), yr)
    assert reg.coef_.dtype == np.float32 and reg.predict(Xr.astype(np.float32)).dtype == np.float32
    # other dtypes train in float64
    assert MLERegressor(**FAST).fit(np.round(Xr * 10).astype(np.int64), yr).coef_.dtype == np.float64
    # solver="fisher" solves in float64 and returns X's precision too (it had returned float64)
    fisher = MLEClassifier(solver="fisher").fit(X32, y)
    assert fisher.coef_.dtype == np.float32 and fisher.intercept_.dtype == np.float32
    assert MLERegressor(solver="fisher").fit(Xr.astype(np.float32), yr).coef_.dtype == np.float32


def _layouts():
    """X in the layouts a user may pass, and whether training must copy it."""
    from scipy import sparse

    X, _ = _multiclass(200)
    return {"C float64": (X, False), "C float32": (X.astype(np.float32), False),
            "Fortran float64": (np.asfortranarray(X), True), "strided rows": (np.repeat(X, 2, axis=0)[::2], True),
            "Fortran int64": (np.asfortranarray(np.round(X * 10).astype(np.int64)), True),
            "list": (X.tolist(), True), "CSR": (sparse.csr_matrix(X), False), "CSC": (sparse.csc_matrix(X), True)}


@pytest.mark.parametrize("Estimator,solver,layout", [
    (Estimator, solver, layout) for Estimator in (MLEClassifier, MLERegressor) for solver in ("sgd", "fisher")
    for layout in _layouts() if solver == "sgd" or layout not in ("CSR", "CSC")])  # fisher: dense X only
def test_copied_X_says_whether_X_was_copied(Estimator, solver, layout):
    X, copies = _layouts()[layout]
    copies = copies or (solver == "fisher" and layout == "C float32")  # the inference is in float64: one copy
    _, y = _multiclass(200)
    est = Estimator(solver=solver, **FAST).fit(X, y)
    assert est.copied_X_ is copies
    if solver == "sgd":  # partial_fit says so too
        assert Estimator(**FAST).partial_fit(X, y, **({"classes": [0, 1, 2]} if Estimator is MLEClassifier
                                                        else {})).copied_X_ is copies


@pytest.mark.parametrize("first,X_dtype,order", [(np.float64, np.float64, "F"), (np.float64, np.int64, "F"),
                                                 (np.float64, np.float64, "strided"),
                                                 (np.float64, np.float32, "F"), (np.float32, np.float64, "F")])
def test_fit_copies_X_at_most_once(first, X_dtype, order):
    # the peak of numpy's allocations while fitting: one copy of X in C
    # order, not a conversion that keeps Fortran order followed by sgd_fit's
    # copy (partial_fit into a float64 model once made two of a Fortran float32 X)
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 40))
    y = (X[:, 0] > 0).astype(int)
    clf = MLEClassifier(max_epochs=1, random_state=0).partial_fit(X.astype(first), y, classes=[0, 1])
    X_in = np.repeat(X, 2, axis=0)[::2] if order == "strided" else np.asfortranarray(X)
    X_in = X_in.astype(X_dtype, order="K", copy=False)
    size = X.size * np.dtype(first).itemsize  # of one copy in the model's precision
    tracemalloc.start()
    try:
        clf.partial_fit(X_in, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert clf.copied_X_ and size < peak < 1.5 * size


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["multinomial", "binomial", "gaussian", "poisson", "gaussian-2d"])
def test_backends_agree(case, dtype):
    # every backend walks the same SGD trajectory for the same random_state,
    # whatever the options (momentum, averaging, elastic net, weights)
    _all_backends_present()
    options = dict(max_epochs=15, random_state=7, momentum=0.5, average=True, alpha=1e-3, l1_ratio=0.3)
    family = case.split("-")[0]
    if family in ("multinomial", "binomial"):
        X, y = _multiclass(200, 3 if family == "multinomial" else 2)
        Estimator, predict = MLEClassifier, "predict_proba"
    else:
        X, y = _counts(200) if family == "poisson" else _regression(200, outputs=2 if "2d" in case else None)
        Estimator, predict = MLERegressor, "predict"
    X = X.astype(dtype)
    rtol, atol = (1e-8, 1e-10) if dtype == np.float64 else (1e-4, 1e-5)
    for sample_weight in (None, np.linspace(0.5, 2.0, len(y))):
        fits = {b: Estimator(family, backend=b, **options).fit(X, y, sample_weight=sample_weight)
                for b in BACKENDS}
        reference = fits["numpy"]  # the reference implementation
        for b in BACKENDS[:-1]:
            assert fits[b].coef_.dtype == dtype
            assert_allclose(fits[b].coef_, reference.coef_, rtol=rtol, atol=atol, err_msg=b)
            assert_allclose(fits[b].intercept_, reference.intercept_, rtol=rtol, atol=atol, err_msg=b)
            assert_allclose(getattr(fits[b], predict)(X), getattr(reference, predict)(X), rtol=rtol,
                            atol=atol, err_msg=b)
            assert fits[b].n_iter_ == reference.n_iter_ and fits[b].t_ == reference.t_


# --------------------------------------------- accuracy next to scikit-learn

def test_classifier_accuracy_near_logistic_regression():
    X, y = _multinomial(2000, n_features=8, n_classes=4)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0)
    ref = LogisticRegression(C=1e6, max_iter=2000).fit(X_train, y_train)
    clf = MLEClassifier(random_state=0).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.99 * ref.score(X_test, y_test)
    # the same likelihood, nearly maximized
    assert _mean_nll(clf, X_test, y_test) <= 1.02 * log_loss(y_test, ref.predict_proba(X_test))
    binomial = MLEClassifier("binomial", random_state=0).fit(X_train, y_train == 0)
    ref2 = LogisticRegression(C=1e6, max_iter=2000).fit(X_train, y_train == 0)
    assert binomial.score(X_test, y_test == 0) >= 0.99 * ref2.score(X_test, y_test == 0)


def test_regressor_near_linear_and_poisson_regression():
    X, y = _regression(600)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0)
    ref = LinearRegression().fit(X_train, y_train)
    reg = MLERegressor(random_state=0).fit(X_train, y_train)
    assert reg.score(X_test, y_test) >= ref.score(X_test, y_test) - 0.01  # R^2
    assert_allclose(reg.coef_, ref.coef_, atol=0.05)
    assert isinstance(reg.intercept_, float)

    X, y = _counts(1000)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0)
    ref = PoissonRegressor(alpha=0).fit(X_train, y_train)
    reg = MLERegressor("poisson", random_state=0).fit(X_train, y_train)
    assert reg.score(X_test, y_test) >= ref.score(X_test, y_test) - 0.01  # D^2 for both
    assert_allclose(reg.coef_, ref.coef_, atol=0.05)
    assert_allclose(reg.intercept_, ref.intercept_, atol=0.05)


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_regressor_multi_output(family):
    X, y = _counts(300) if family == "poisson" else _regression(300)
    Y = np.c_[y, 2 * y]
    reg = MLERegressor(family, random_state=0).fit(X, Y)
    assert reg.coef_.shape == (2, X.shape[1]) and reg.intercept_.shape == (2,)
    assert reg.predict(X).shape == (300, 2)
    single = MLERegressor(family, random_state=0).fit(X, y)
    assert_allclose(reg.coef_[0], single.coef_, atol=0.05)
    # a (n, 1) column is a one-output multi-output fit, as in LinearRegression
    column = MLERegressor(family, **FAST).fit(X, y[:, None])
    assert column.coef_.shape == (1, X.shape[1]) and column.predict(X).shape == (300, 1)
    # score: the mean of the outputs' R^2 (or Poisson D^2), as r2_score's
    # default; and so cross_val_score gets numbers, not NaN
    from sklearn.metrics import d2_tweedie_score, r2_score
    from sklearn.model_selection import cross_val_score
    one = r2_score if family == "gaussian" else lambda t, p: d2_tweedie_score(t, p, power=1)
    mean = reg.predict(X)
    assert reg.score(X, Y) == pytest.approx((one(Y[:, 0], mean[:, 0]) + one(Y[:, 1], mean[:, 1])) / 2, rel=1e-12)
    assert np.isfinite(cross_val_score(MLERegressor(family, **FAST), X, Y, cv=2, error_score="raise")).all()
    # a 1-D model scored on y as one column, as r2_score takes it
    assert single.score(X, y[:, None]) == pytest.approx(single.score(X, y), rel=1e-12)


@pytest.mark.parametrize("how", ["diverges", "more features", "warning as error", "partial_fit"])
@pytest.mark.parametrize("Estimator", [MLEClassifier, MLERegressor])
def test_a_fit_that_raises_leaves_the_last_model_whole(Estimator, how):
    # a new fit that diverges (or is refused, or whose warning is made an
    # error) must not leave the estimator half-updated: classes_ of the new
    # labels with the old coefficients, a 1-D model answering in 2-D, or
    # n_features_in_ of data it never fitted
    X, y = _regression(200)
    if Estimator is MLEClassifier:
        first_y, new_y = np.where(y > 0, "a", "b"), np.where(y > 0, "x", "y")
    else:
        first_y, new_y = y, np.c_[y, y]
    est = Estimator(**FAST).fit(X, first_y)
    before = est.predict(X[:5])
    if how == "warning as error":
        est.set_params(max_epochs=1)
    elif how != "partial_fit":
        est.set_params(eta0=1e6, learning_rate="constant")
    state = dict(est.__dict__)
    if how == "diverges":
        with pytest.raises(fastmle.SGDDivergedError):
            est.fit(X * 1e3, new_y)
    elif how == "more features":
        with pytest.raises(fastmle.SGDDivergedError):
            est.fit(np.c_[X, X] * 1e3, new_y)
    elif how == "warning as error":
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            with pytest.raises(ConvergenceWarning):
                est.fit(X, new_y)
    else:  # a partial_fit that diverges
        est.set_params(eta0=1e6, learning_rate="constant")
        state = dict(est.__dict__)
        with pytest.raises(fastmle.SGDDivergedError):
            est.partial_fit(X * 1e300, first_y)  # overflows (a finite blow-up is not judged here)
    assert est.__dict__.keys() == state.keys() and all(est.__dict__[k] is state[k] for k in state)
    assert_array_equal(est.predict(X[:5]), before)


def test_partial_fit_on_a_batch_of_weight_zero_changes_nothing():
    # a stream can bring a batch whose every label has class weight 0: as in
    # scikit-learn's SGDClassifier.partial_fit, it is taken, and moves nothing
    X, y = _regression(200)
    labels = np.array(["a", "b", "c"])[np.digitize(y, [-0.5, 0.5])]
    clf = MLEClassifier(class_weight={"a": 0.0}, random_state=0)
    clf.partial_fit(X[:100], labels[:100], classes=["a", "b", "c"])
    coef = clf.coef_.copy()
    only_a = labels == "a"
    clf.partial_fit(X[only_a], labels[only_a])
    assert_array_equal(clf.coef_, coef)
    with pytest.raises(ValueError, match="zero for every sample"):  # a whole fit on them is refused
        MLEClassifier(class_weight={"a": 0.0, "b": 0.0}).fit(X[labels != "c"], labels[labels != "c"])


def test_class_weight_errors_name_the_label():
    X, y = _regression(100)
    with pytest.raises(ValueError, match="got -1.0 for 'a'"):
        MLEClassifier(class_weight={"a": -1.0}).fit(X, np.where(y > 0, "a", "b"))


def test_sample_weight_is_statistically_repetition():
    # the statistical version of the expected-failure check above: integer
    # weights fit (nearly) the model of the repeated data
    X, y = _multinomial(300)
    w = np.random.default_rng(0).integers(0, 3, len(y))
    weighted = MLEClassifier(random_state=0).fit(X, y, sample_weight=w).predict_proba(X)
    repeated = MLEClassifier(random_state=0).fit(np.repeat(X, w, axis=0), np.repeat(y, w)).predict_proba(X)
    mle = LogisticRegression(C=1e6, max_iter=1000).fit(X, y, sample_weight=w).predict_proba(X)
    unweighted = LogisticRegression(C=1e6, max_iter=1000).fit(X, y).predict_proba(X)
    # SGD's noise (~0.05 here) is well below what the weights change (> 0.2)
    assert np.abs(mle - unweighted).max() > 0.2
    assert_allclose(weighted, mle, atol=0.1)
    assert_allclose(weighted, repeated, atol=0.1)


# ------------------------------------------------------------- bad input

def _never_trains(epoch, info):
    raise AssertionError("training started on bad input")


@pytest.mark.parametrize("make", [lambda: MLEClassifier(callback=_never_trains),
                                  lambda: MLERegressor(callback=_never_trains),
                                  lambda: MLERegressor("poisson", callback=_never_trains)],
                         ids=["classifier", "regressor", "poisson"])
def test_bad_input_common(make):
    X, y = _counts(40)
    for value, message in ((np.nan, "Input X contains NaN"), (np.inf, "Input X contains infinity")):
        Xbad = X.copy()
        Xbad[3, 1] = value
        with pytest.raises(ValueError, match=message):
            make().fit(Xbad, y)
    ybad = y.astype(float)
    ybad[5] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        make().fit(X, ybad)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make().fit(X, y[:-1])
    with pytest.raises(ValueError, match="sample_weight.shape == \\(39,\\), expected \\(40,\\)"):
        make().fit(X, y, sample_weight=np.ones(39))
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        make().fit(X, y, sample_weight=-np.ones(40))
    with pytest.raises(ValueError, match="weights? .*zero|zero .*weight"):
        make().fit(X, y, sample_weight=np.zeros(40))
    with pytest.raises(ValueError, match="family must be one of"):
        make().set_params(family="gamma").fit(X, y)
    with pytest.raises(ValueError, match="unknown solver 'lbfgs'"):
        make().set_params(solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="unknown learning_rate 'optimal'; expected one of constant"):
        make().set_params(learning_rate="optimal").fit(X, y)
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        make().set_params(backend="cuda").fit(X, y)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make().set_params(batch_size=0).fit(X, y)
    with pytest.raises(ValueError, match="Complex data not supported"):
        make().fit(X + 1j, y)
    fitted = make().set_params(callback=None, max_epochs=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 4 features"):
        fitted.predict(X[:, :3])
    Xbad = X.copy()
    Xbad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        fitted.predict(Xbad)


def test_bad_input_classifier():
    X, y = _multiclass(60, 3)
    with pytest.raises(ValueError, match="only one class \\(1.0\\); a classifier needs at least 2"):
        MLEClassifier(callback=_never_trains).fit(X, np.ones(60))
    with pytest.raises(ValueError, match="Only binary classification is supported.*y has 3 classes"):
        MLEClassifier("binomial", callback=_never_trains).fit(X, y)
    with pytest.raises(ValueError, match="Only binary classification .*classes has 3 classes"):
        MLEClassifier("binomial").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"classes has only one class \(0.0\)"):
        MLEClassifier().partial_fit(X, np.zeros(60), classes=[0.0])
    # a stream's batch may hold one class when classes declares both
    clf = MLEClassifier("binomial", max_epochs=3).partial_fit(X[:30], np.zeros(30), classes=[0, 1])
    after_zeros = clf.intercept_[0]
    assert after_zeros < 0 and clf.partial_fit(X[30:], np.ones(30)).intercept_[0] > after_zeros
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        MLEClassifier(callback=_never_trains).fit(X, X[:, 0])
    yinf = y.astype(float)
    yinf[0] = np.inf
    with pytest.raises(ValueError, match="Input y contains infinity"):
        MLEClassifier(callback=_never_trains).fit(X, yinf)
    clf = MLEClassifier(max_epochs=2).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="label 'a' not among classes_ \\[0, 1, 2\\]"):
        clf.partial_fit(X[:2], np.array(["a", "c"]))  # labels of another type entirely
    with pytest.raises(ValueError, match="label 5 not among classes_ \\[0, 1, 2\\]"):
        MLEClassifier(max_epochs=2).partial_fit(X, np.where(y == 2, 5, y), classes=[0, 1, 2])
    with pytest.raises(ValueError, match="class_weight must be 'balanced', a dict or None"):
        MLEClassifier(class_weight="heavy", callback=_never_trains).fit(X, y)


def test_bad_input_regressor():
    X, y = _counts(40)
    with pytest.raises(ValueError, match="poisson y must be counts >= 0; found a negative value"):
        MLERegressor("poisson", callback=_never_trains).fit(X, y - 3)
    with pytest.raises(ValueError, match="poisson y must be counts >= 0"):
        MLERegressor("poisson").partial_fit(X, -y)
    MLERegressor(max_epochs=2).fit(X, y - 3)  # gaussian y may be negative
    with pytest.raises(ValueError, match="could not convert|Unknown label type"):
        MLERegressor(callback=_never_trains).fit(X, np.array(["a"] * 40, dtype=object))
    yinf = y.astype(float)
    yinf[0] = -np.inf
    with pytest.raises(ValueError, match="Input y contains infinity"):
        MLERegressor(callback=_never_trains).fit(X, yinf)


def test_feature_names_from_dataframe():
    pd = pytest.importorskip("pandas")
    X, y = _multiclass(80, 3)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    clf = MLEClassifier(**FAST).fit(frame, y)
    assert list(clf.feature_names_in_) == list(frame.columns)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict(X)


def test_sparse_input_fits_like_dense(backend):
    from scipy import sparse

    X, y = _multiclass(300)
    X[np.abs(X) < 0.8] = 0  # about half the entries
    dense = MLEClassifier(backend=backend, **FAST).fit(X, y)
    csr = MLEClassifier(backend=backend, **FAST).fit(sparse.csr_matrix(X), y)
    np.testing.assert_allclose(csr.coef_, dense.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(csr.predict_proba(sparse.csr_matrix(X)), dense.predict_proba(X), rtol=1e-9)
    assert (csr.predict(sparse.csr_matrix(X)) == dense.predict(X)).all()


def test_fisher_solver_errors_name_a_dataframes_columns():
    # fit_mle(frame) named the columns; the estimator, which fits the
    # validated array, had named them x0, x1, ...
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    g = rng.integers(0, 3, 200)
    frame = pd.DataFrame({f"g_{k}": (g == k) * 1.0 for k in range(3)})  # the dummy trap, with the intercept
    with pytest.raises(fastmle.SingularFisherError, match="columns 'g_0', 'g_1', 'g_2', 'intercept' are collinear"):
        MLEClassifier(solver="fisher").fit(frame, rng.integers(0, 2, 200))
