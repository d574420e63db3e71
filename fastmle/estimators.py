"""scikit-learn estimators over :func:`fastmle.sgd_fit` (``solver="sgd"``)
and :func:`fastmle.fit_mle` (``solver="fisher"``, the exact MLE by Fisher
scoring, with standard errors in ``bse_``): ``MLEClassifier`` (multinomial
or binomial likelihood) and ``MLERegressor`` (gaussian or poisson).
Importing this module imports scikit-learn, an optional dependency;
``fastmle.MLEClassifier`` loads it on first use.

They follow scikit-learn's conventions: the constructor only stores its
parameters, input is checked with scikit-learn's own validation, fitted
attributes end in an underscore, and they work with ``clone``,
``Pipeline`` and ``GridSearchCV``.
"""
import functools
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from dataclasses import dataclass, field
from typing import Any, List

from . import special
from .glm import glm_loss, glm_predict, label_indices
from .mle import (TOL, _Problem, check_cov_type_name, check_inference, check_fit_options, fisher_scoring,
                  parameter_names)
from .sgd import SGDResult, _class_weight_per_sample, checked_class_weight, sgd_fit

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # older: the estimator method
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

_DTYPES = (np.float64, np.float32)  # float32 stays float32
SOLVERS = ("sgd", "fisher")


@dataclass
class _FisherFit:
    """What solver="fisher" keeps: the fitted parameters in sgd_fit's
    layout (coef (n_features, K), intercept (K,)) and fit_mle's result."""
    coef: np.ndarray
    intercept: np.ndarray
    bse: np.ndarray  # of coef, same layout (0 for a reference class's fixed coefficients)
    intercept_bse: np.ndarray
    family: str
    n_epochs: int  # Fisher-scoring iterations
    converged: bool
    mle: Any = field(repr=False)
    n_steps: int = 0
    loss_history: List[float] = field(default_factory=list)


def _unchanged_if_it_raises(method):
    """fit and partial_fit: a call that raises (bad input, divergence, a
    warning made an error) leaves the estimator as it was, its last model
    whole, not new classes_ or n_features_in_ beside old coefficients."""
    @functools.wraps(method)
    def unchanged_if_it_raises(self, *args, **kwargs):
        saved = dict(self.__dict__)
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
    return unchanged_if_it_raises


def _validated_X(validate, X, y, **kwargs):
    """scikit-learn's validation of X (and y) with X copied at most once: an
    array already float32 or float64 keeps its memory order here (sgd_fit or
    fit_mle copies a Fortran-ordered or strided one into C order); anything
    else (a list, a DataFrame, another dtype) is converted straight into C
    order. Returns (X, y, copied): copied says whether the values of X were
    copied on the way to the kernels, by validation or by fastmle."""
    wanted = kwargs["dtype"] if isinstance(kwargs["dtype"], tuple) else (kwargs["dtype"],)
    keeps_order = hasattr(X, "nnz") or (isinstance(X, np.ndarray) and X.dtype in wanted)
    kwargs.update(accept_sparse="csr", order=None if keeps_order else "C")
    checked, y = validate(X, y, **kwargs)
    if isinstance(X, (list, tuple)) or len(set(getattr(X, "dtypes", ()))) > 1:  # a table of mixed dtypes
        copied = True
    elif hasattr(checked, "nnz"):  # CSR: the values' array (a CSR X's int64 indices become int32 in sgd_fit)
        values = getattr(X, "data", None) if hasattr(X, "nnz") else None  # none in a DOK matrix
        copied = not (isinstance(values, np.ndarray) and np.shares_memory(checked.data, values))
    else:  # an array, or an array-like whose values numpy views (a DataFrame of one dtype)
        copied = not np.shares_memory(checked, X if isinstance(X, np.ndarray) else np.asarray(X))
    if not hasattr(checked, "nnz"):  # the kernels' layout: what as_design_matrix copies
        copied = copied or not (checked.flags.c_contiguous and checked.dtype.isnative)
    return checked, y, copied


class _SGDMixin:
    """What the two estimators share: the sgd_fit options and the fit loop."""

    _families = ()

    def _sgd_options(self):
        return dict(batch_size=self.batch_size, max_epochs=self.max_epochs,
                    learning_rate=self.learning_rate, eta0=self.eta0, power_t=self.power_t,
                    momentum=self.momentum, nesterov=self.nesterov, alpha=self.alpha,
                    l1_ratio=self.l1_ratio, fit_intercept=self.fit_intercept, average=self.average,
                    tol=self.tol, n_iter_no_change=self.n_iter_no_change,
                    validation_fraction=self.validation_fraction, progress=self.progress,
                    callback=self.callback, backend=self.backend)

    def _check_family_solver(self):
        if self.family not in self._families:
            raise ValueError(f"{type(self).__name__} family must be one of {self._families}, "
                             f"got {self.family!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; available: {', '.join(map(repr, SOLVERS))}")
        if self.solver == "fisher" and self.l1_ratio:
            raise ValueError("solver='fisher' (Newton steps) needs a smooth objective: l1_ratio must be 0")
        check_cov_type_name(self.cov_type)  # (a known name, before what it needs)
        inference = {"cov_type": (self.cov_type, "nonrobust"), "scale": (self.scale, None),
                     "use_t": (self.use_t, False)}
        for name, (value, default) in inference.items():
            if self.solver != "fisher" and not (value is default or value == default):
                raise ValueError(f"{name}={value!r} chooses the inference of solver='fisher'; "
                                 f"solver={self.solver!r} computes none")

    def _check_groups(self, groups):
        """fit's groups: the cluster labels of cov_type='cluster' only."""
        if groups is not None and self.cov_type != "cluster":
            raise ValueError("groups (each sample's cluster label) is for cov_type='cluster', "
                             f"not cov_type={self.cov_type!r}")
        return groups

    def _check_weights(self, sample_weight, X):
        """sample_weight checked by scikit-learn (shape, finite, >= 0), in X's dtype."""
        if sample_weight is None:
            return None
        w = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        if not w.any():  # scikit-learn < 1.9 lets this through; the mean loss would be 0 / 0
            raise ValueError("sample_weight is zero for every sample: there is nothing to fit")
        return w

    def _warm_result(self, X, n_outputs, family):
        """The last fit (either solver's), if a fit can start from it (same
        features, outputs, dtype and family); None starts afresh, as a new
        problem needs."""
        previous = getattr(self, "_fit_result", None)
        if not isinstance(previous, (SGDResult, _FisherFit)) or previous.family != family:
            return None
        if previous.coef.shape != (X.shape[1], n_outputs) or previous.coef.dtype != X.dtype:
            return None
        return previous

    def _fit(self, X, y_encoded, sample_weight, previous, partial, copied, groups=None, **extra):
        # copied: whether validation copied X, or fastmle will (_validated_X)
        self.copied_X_ = copied
        if self.solver == "fisher":
            return self._fit_fisher(X, y_encoded, sample_weight, groups=groups, **extra)
        options = self._sgd_options()
        continuing = partial and isinstance(previous, SGDResult)
        if partial:  # one epoch; no stopping rule
            options.update(max_epochs=1, tol=None, validation_fraction=None, schedule_epochs=self.max_epochs)
        if continuing:  # partial_fit: the run and its schedule go on
            options.update(warm_start=previous)
        elif previous is not None:
            # a new run from the last coefficients: fit with warm_start, as
            # scikit-learn's SGD estimators' fit (the schedule starts afresh),
            # or partial_fit after a solver='fisher' fit; the intercepts too
            # if the last fit had them (else the intercept-only MLE)
            had_intercept = getattr(self, "_fitted_intercept", True)
            options.update(coef_init=previous.coef,
                           intercept_init=previous.intercept if self.fit_intercept and had_intercept else None)
        # check_input=False: scikit-learn's validation has scanned X for NaN /
        # inf (with the default eta0, the read of X that gives the step still
        # checks it, at no extra cost)
        result = sgd_fit(X, y_encoded, self._kernel_family(), sample_weight=sample_weight,
                         random_state=self._epoch_seed(previous), check_input=False, **extra, **options)
        self._fit_result = result
        self.copied_X_ = copied or result.copied_X  # sgd_fit's own copy (a CSR X's int64 indices too)
        self._fitted_intercept = self.fit_intercept
        # epochs of this call (the result counts those of the run it continues too)
        self.n_iter_ = result.n_epochs - (previous.n_epochs if continuing else 0)
        self.loss_curve_ = list(result.loss_history)
        self.t_ = result.n_steps
        if not partial and self.tol is not None and not result.converged and self.n_iter_ == self.max_epochs:
            warnings.warn(f"{type(self).__name__} did not converge in max_epochs={self.max_epochs} "
                          f"epochs (tol={self.tol}); increase max_epochs", ConvergenceWarning,
                          stacklevel=4)  # the caller of fit (_fit, fit, its wrapper)
        return result

    def _fit_fisher(self, X, y_encoded, sample_weight, class_weight=None, classes=None, groups=None):
        """The exact MLE (fit_mle), with the same objective as the SGD
        solver: (1 / n_samples) sum_i w_i loss_i + alpha / 2 |coef|^2, the
        weights multiplying each sample's loss (so fit_mle's alpha, on the
        summed loss, is alpha times the number of samples). Multinomial without a
        penalty fixes the first class's coefficients at 0 (the model is
        otherwise not identifiable; predictions are unchanged)."""
        if hasattr(X, "tocsr"):
            raise TypeError("solver='fisher' needs dense X; use solver='sgd' for sparse input")
        if y_encoded.ndim == 2 and y_encoded.shape[1] != 1:
            raise ValueError("solver='fisher' fits one output; y has several columns")
        y = y_encoded.reshape(len(y_encoded))
        family = self._kernel_family()
        if class_weight is not None:
            per_sample = _class_weight_per_sample(class_weight, y.astype(np.int64), y[:, None],
                                                  np.arange(int(y.max()) + 1), family)
            sample_weight = per_sample if sample_weight is None else per_sample * sample_weight
        multinomial = family == "multinomial"
        ref = 0 if multinomial and self.alpha == 0 else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            # fit_mle's steps, with the parameters named by the validated X's
            # feature_names_in_ (a DataFrame's columns), errors included
            alpha = self.alpha * len(y)
            check_fit_options(alpha, self.max_epochs, TOL)
            check_inference(self.cov_type, alpha, groups, family, self.scale, self.use_t)
            names = parameter_names(X, getattr(self, "feature_names_in_", None))
            # the labels themselves, so that errors name them ("class 'eel' has zero total weight")
            y_fit = self.classes_[y.astype(np.int64)] if multinomial else y
            ref_label = None if ref is None else self.classes_[ref]
            prob = _Problem(X, y_fit, family, self.fit_intercept, ref_label, alpha, sample_weight, self.backend,
                            groups=groups)
            prob.cov_type, prob.dispersion, prob.use_t = self.cov_type, self.scale, self.use_t
            self.copied_X_ = self.copied_X_ or prob.copied_X  # float64 for the inference
            res = fisher_scoring(prob, names(prob), self.max_epochs, TOL)
        for w in caught:
            # stacklevel 5: the caller of fit (_fit_fisher, _fit, fit, its wrapper)
            warnings.warn(str(w.message), ConvergenceWarning if not res.converged else w.category, stacklevel=5)
        if multinomial:  # name the outputs by the estimator's labels, not their indices
            res.classes = self.classes_
            res.output_names = [f"y={c}" for k, c in enumerate(self.classes_) if k != ref]
            res.reference_class = None if ref is None else self.classes_[ref]
        coef = res.coef.reshape(X.shape[1], -1)
        bse = (res.bse[:-1] if self.fit_intercept else res.bse).reshape(X.shape[1], -1)
        intercept = res.intercept
        intercept_bse = (np.atleast_1d(res.bse[-1]) if self.fit_intercept else np.zeros(len(intercept)))
        if ref is not None:  # the reference class: coefficients fixed at 0
            coef, bse = np.insert(coef, 0, 0.0, axis=1), np.insert(bse, 0, 0.0, axis=1)
            intercept, intercept_bse = np.insert(intercept, 0, 0.0), np.insert(intercept_bse, 0, 0.0)
        # loss_curve_ as the SGD solver reports it: (1 / n) sum w loss + penalty
        # (not -llf, which holds the likelihood's constants, over sum w)
        objective = (glm_loss(X, y, coef, family, intercept=intercept, sample_weight=sample_weight, reduction="sum",
                              backend=self.backend) / len(y) + 0.5 * self.alpha * float(np.sum(coef * coef)))
        # coef_ and intercept_ in X's precision, as the SGD solver's (fit_mle solves in float64)
        fit = _FisherFit(coef.astype(X.dtype), intercept.astype(X.dtype), bse, intercept_bse, family,
                         res.n_iter, res.converged, res,
                         loss_history=[float(objective)])
        self._fit_result = fit
        self._fitted_intercept = self.fit_intercept
        self.n_iter_ = res.n_iter
        self.loss_curve_ = list(fit.loss_history)
        self.t_ = 0
        return fit

    def _fisher_fit(self, what):
        check_is_fitted(self, "_fit_result")
        if not isinstance(self._fit_result, _FisherFit):
            raise AttributeError(f"{what} is computed by solver='fisher' (this fit used solver='sgd')")
        return self._fit_result

    @property
    def mle_result_(self):
        """fit_mle's MLEResult (summary(), conf_int(), pvalues, ...) of a
        solver='fisher' fit."""
        return self._fisher_fit("mle_result_").mle

    def _epoch_seed(self, previous):
        # a fixed random_state reproduces a fit; partial_fit / warm starts
        # continue with a new stream derived from it and the steps so far
        seed = self.random_state
        if isinstance(seed, np.random.RandomState):  # scikit-learn's convention: draw a seed from it
            seed = int(seed.randint(np.iinfo(np.int32).max))
        if previous is None or not isinstance(seed, (int, np.integer)):
            return seed  # None or a Generator: a new stream on every call anyway
        return np.random.SeedSequence([int(seed), previous.n_steps])


def _runs_sgd(estimator):
    """partial_fit exists unless solver='fisher' (scikit-learn's
    available_if: hasattr(estimator, "partial_fit") tells the truth)."""
    return estimator.solver != "fisher"


def _encode(y, classes, family):
    """Labels as indices into classes (unseen labels: a clear error); 0/1
    floats for binomial."""
    index = label_indices(y, classes, "classes_")
    return index if family == "multinomial" else index.astype(np.float64)


class MLEClassifier(_SGDMixin, ClassifierMixin, BaseEstimator):
    """Maximum-likelihood classifier: softmax regression (family
    "multinomial", the true multinomial likelihood, not one-vs-rest) or
    logistic regression ("binomial", two classes), fitted by compiled
    minibatch SGD (``solver="sgd"``, :func:`fastmle.sgd_fit`; see it for
    every parameter) or to the exact optimum by Fisher scoring
    (``solver="fisher"``, :func:`fastmle.fit_mle`: dense X, max_epochs
    bounds the iterations, l1_ratio must be 0; adds ``bse_``,
    ``intercept_bse_`` and ``mle_result_`` with the full inference, their
    covariance chosen by ``cov_type`` as in fit_mle: "nonrobust", "HC0",
    "HC1", "HC2", "HC3" (binomial), or "cluster" with ``fit(X, y,
    groups=labels)``; a robust type needs alpha=0; ``scale`` and
    ``use_t`` as in fit_mle).

    Attributes: classes_, coef_ (n_outputs, n_features: n_classes rows for
    multinomial, 1 for binomial, as scikit-learn's LogisticRegression),
    intercept_ (n_outputs,), n_features_in_, n_iter_ (epochs of the last
    fit or partial_fit call), loss_curve_ (its per-epoch losses), t_ (SGD
    steps since the last fit: fit restarts the count, partial_fit adds to
    it), copied_X_ (whether the last fit or partial_fit copied X: a
    C-contiguous float32 or float64 array, or a CSR matrix with int32
    indices, trains in place; a Fortran-ordered or strided array is copied
    once into C order, and a list, a DataFrame in Fortran order or another
    dtype is converted once, straight into C order). Without convergence in max_epochs, fit warns (ConvergenceWarning),
    as scikit-learn's iterative estimators do. With ``warm_start=True``,
    fit starts from the last fit's coefficients but runs its own schedule
    (as scikit-learn's SGD estimators do: refits along a path of alpha, or
    on new data, move as a fresh fit would), while partial_fit continues
    the schedule: after fit, from where fit left it (the adaptive step that
    fit's stopping rule lowered stays low, a finished cosine stays at 0;
    setting ``eta0`` starts the adaptive step again from it).

    >>> import numpy as np
    >>> from fastmle import MLEClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((600, 2))
    >>> y = np.where(X[:, 0] + X[:, 1] + 0.5 * rng.standard_normal(600) > 0, "yes", "no")
    >>> clf = MLEClassifier(random_state=0).fit(X, y)
    >>> clf.classes_, clf.score(X, y) > 0.85
    (array(['no', 'yes'], dtype='<U3'), True)
    >>> clf.predict_proba(X[:2]).round(2)
    array([[0.52, 0.48],
           [0.08, 0.92]])
    """

    _families = ("multinomial", "binomial")

    def __init__(self, family="multinomial", solver="sgd", *, batch_size=32, max_epochs=100,
                 learning_rate="adaptive", eta0=None, power_t=0.5, momentum=0.0, nesterov=False,
                 alpha=0.0, l1_ratio=0.0, fit_intercept=True, class_weight=None, average=False,
                 tol=1e-4, n_iter_no_change=5, validation_fraction=None, random_state=None,
                 warm_start=False, callback=None, progress=False, cov_type="nonrobust", scale=None, use_t=False,
                 backend=None):
        self.family = family
        self.solver = solver
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.momentum = momentum
        self.nesterov = nesterov
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.average = average
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.warm_start = warm_start
        self.callback = callback
        self.progress = progress
        self.cov_type = cov_type
        self.scale = scale
        self.use_t = use_t
        self.backend = backend

    def _kernel_family(self):
        return self.family

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self.solver == "sgd"  # CSR trains in the sparse SGD kernels
        # binomial is logistic regression: two classes only
        tags.classifier_tags.multi_class = self.family != "binomial"
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"binary_only": self.family == "binomial"}

    def _n_outputs(self, classes):
        return len(classes) if self.family == "multinomial" else 1

    def _class_weight_by_index(self):
        """class_weight with labels replaced by their index in classes_
        (its weights checked here, where an error can name the label)."""
        if not isinstance(self.class_weight, dict):
            return self.class_weight  # None, "balanced" or invalid (sgd_fit says so)
        known = set(self.classes_.tolist())
        unknown = [c for c in self.class_weight if c not in known]
        if unknown:
            raise ValueError(f"class_weight has labels [{', '.join(map(str, unknown))}] not among classes_ "
                             f"{self.classes_.tolist()}")
        return {int(np.searchsorted(self.classes_, c)): checked_class_weight(w, c)
                for c, w in self.class_weight.items()}

    @_unchanged_if_it_raises
    def fit(self, X, y, sample_weight=None, groups=None):
        """Fit on (X, y); with warm_start=True, start from the last fit's
        coefficients (when classes, features and dtype are the same; else
        from scratch), with a new schedule. groups: each sample's cluster
        label, for cov_type='cluster'."""
        self._check_family_solver()
        groups = self._check_groups(groups)
        X, y, copied = _validated_X(functools.partial(_validate_data, self), X, y, dtype=_DTYPES)
        check_classification_targets(y)
        classes = self._check_classes(np.unique(y))
        labels = _encode(y, classes, self.family)
        sample_weight = self._check_weights(sample_weight, X)
        previous = None
        if self.warm_start and hasattr(self, "classes_") and np.array_equal(classes, self.classes_):
            previous = self._warm_result(X, self._n_outputs(classes), self.family)
        self.classes_ = classes
        self._fit(X, labels, sample_weight, previous, False, copied, groups,
                  class_weight=self._class_weight_by_index(),
                  classes=np.arange(len(classes)) if self.family == "multinomial" else None)
        return self

    @available_if(_runs_sgd)
    @_unchanged_if_it_raises
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing the previous calls' schedule.
        ``classes`` (all labels) is required on the first call. X keeps the
        first call's precision (float32 or float64)."""
        self._check_family_solver()
        first = not hasattr(self, "_fit_result")
        dtype = _DTYPES if first else self._fit_result.coef.dtype
        X, y, copied = _validated_X(functools.partial(_validate_data, self), X, y, dtype=dtype, reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes (every label y can take) must be given on the first call "
                                 "to partial_fit")
            all_classes = self._check_classes(np.unique(classes), "classes")
        else:
            all_classes = self.classes_
            if classes is not None and not np.array_equal(np.unique(classes), all_classes):
                raise ValueError(f"classes {np.unique(classes).tolist()} differ from the first call's "
                                 f"{all_classes.tolist()}")
        if isinstance(self.class_weight, str):  # as scikit-learn's SGDClassifier: one batch is not the data
            raise ValueError("class_weight='balanced' needs all the data and cannot be used with "
                             "partial_fit; pass a dict (see sklearn.utils.compute_class_weight)")
        labels = _encode(y, all_classes, self.family)
        sample_weight = self._check_weights(sample_weight, X)
        self.classes_ = all_classes
        self._fit(X, labels, sample_weight, None if first else self._fit_result, True, copied,
                  class_weight=self._class_weight_by_index(),
                  classes=np.arange(len(all_classes)))  # binomial: a batch of one class is not an error
        return self

    def _check_classes(self, classes, name="y"):
        """classes: the distinct labels of y, or of partial_fit's classes."""
        n = len(classes)
        if n < 2:
            raise ValueError(f"{name} has only one class ({classes.tolist()[0]!r}); a classifier needs "
                             "at least 2")
        if self.family == "binomial" and n != 2:
            # the first sentence is the one scikit-learn's checks look for
            raise ValueError(f"Only binary classification is supported with family='binomial': "
                             f"{name} has {n} classes; use family='multinomial'")
        return classes

    @property
    def coef_(self):
        check_is_fitted(self, "_fit_result")
        return self._fit_result.coef.T

    @property
    def intercept_(self):
        check_is_fitted(self, "_fit_result")
        return self._fit_result.intercept

    @property
    def bse_(self):
        """Standard errors of coef_ (same shape) from solver='fisher' (0 for
        the reference class's fixed coefficients)."""
        return self._fisher_fit("bse_").bse.T

    @property
    def intercept_bse_(self):
        """Standard errors of intercept_ from solver='fisher'."""
        return self._fisher_fit("intercept_bse_").intercept_bse

    def decision_function(self, X):
        """The linear predictor ``X @ coef_.T + intercept_``: (n, n_classes)
        for three classes or more; for two, scikit-learn's binary convention:
        the (n,) log-odds of classes_[1] (for multinomial, the difference of
        the two classes' predictors)."""
        check_is_fitted(self, "_fit_result")
        X = _validate_data(self, X, dtype=_DTYPES, accept_sparse="csr", reset=False)  # any order: BLAS's product
        eta = X @ self._fit_result.coef.astype(X.dtype) + self._fit_result.intercept.astype(X.dtype)
        if eta.shape[1] == 2:
            return eta[:, 1] - eta[:, 0]
        return eta[:, 0] if self.family == "binomial" else eta

    def predict(self, X):
        scores = self.decision_function(X)
        index = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes_[index]

    def predict_proba(self, X):
        """(n, n_classes) class probabilities, columns in the order of classes_."""
        check_is_fitted(self, "_fit_result")
        X = _validate_data(self, X, dtype=_DTYPES, order="C", accept_sparse="csr", reset=False)
        mean = glm_predict(X, self._fit_result.coef, self.family, intercept=self._fit_result.intercept,
                           backend=self.backend)
        return np.hstack([1 - mean, mean]) if self.family == "binomial" else mean

    def predict_log_proba(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:  # log(1 - p), log(p) from the log-odds, stably
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        return special.log_softmax(scores, axis=1, backend=self.backend)


class MLERegressor(_SGDMixin, RegressorMixin, BaseEstimator):
    """Maximum-likelihood regressor: linear regression (family "gaussian",
    squared error) or Poisson regression ("poisson", log link), fitted by
    compiled minibatch SGD (``solver="sgd"``, :func:`fastmle.sgd_fit`; see
    it for every parameter; y may be 2-D for several outputs) or to the
    exact optimum by Fisher scoring (``solver="fisher"``,
    :func:`fastmle.fit_mle`: dense X, 1-D y; adds ``bse_``,
    ``intercept_bse_`` and ``mle_result_``, their covariance chosen by
    ``cov_type`` as in fit_mle: "nonrobust", "HC0" to "HC3", or "cluster"
    with ``fit(X, y, groups=labels)``; a robust type needs alpha=0;
    ``scale`` and ``use_t`` as in fit_mle).

    Attributes: coef_ ((n_features,) for 1-D y, (n_outputs, n_features)
    otherwise), intercept_ (a float, or (n_outputs,)), n_features_in_,
    n_iter_, loss_curve_, t_, copied_X_; warm_start and partial_fit as for
    MLEClassifier. ``score`` is R^2 for gaussian and the fraction of Poisson
    deviance explained (D^2) for poisson, as scikit-learn's LinearRegression
    and PoissonRegressor report (with several outputs, their mean).

    >>> import numpy as np
    >>> from fastmle import MLERegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 2))
    >>> y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1] + 1.0))
    >>> reg = MLERegressor("poisson", random_state=0).fit(X, y)
    >>> np.round(reg.coef_, 1), round(reg.intercept_, 1)
    (array([ 0.5, -0.3]), 1.0)
    """

    _families = ("gaussian", "poisson")

    def __init__(self, family="gaussian", solver="sgd", *, batch_size=32, max_epochs=100,
                 learning_rate="adaptive", eta0=None, power_t=0.5, momentum=0.0, nesterov=False,
                 alpha=0.0, l1_ratio=0.0, fit_intercept=True, average=False, tol=1e-4,
                 n_iter_no_change=5, validation_fraction=None, random_state=None, warm_start=False,
                 callback=None, progress=False, cov_type="nonrobust", scale=None, use_t=False,
                 backend=None):
        self.family = family
        self.solver = solver
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.momentum = momentum
        self.nesterov = nesterov
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.average = average
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.warm_start = warm_start
        self.callback = callback
        self.progress = progress
        self.cov_type = cov_type
        self.scale = scale
        self.use_t = use_t
        self.backend = backend

    def _kernel_family(self):
        return self.family

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self.solver == "sgd"  # CSR trains in the sparse SGD kernels
        tags.target_tags.multi_output = self.solver == "sgd"  # y may be (n, k)
        tags.target_tags.positive_only = self.family == "poisson"  # counts
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True, "requires_positive_y": self.family == "poisson"}

    def _check_y(self, y):
        if self.family == "poisson" and (y < 0).any():
            raise ValueError("poisson y must be counts >= 0; found a negative value")
        return y

    @_unchanged_if_it_raises
    def fit(self, X, y, sample_weight=None, groups=None):
        """Fit on (X, y); with warm_start=True, start from the last fit's
        coefficients (when features, outputs and dtype are the same; else
        from scratch), with a new schedule. groups: each sample's cluster
        label, for cov_type='cluster'."""
        self._check_family_solver()
        groups = self._check_groups(groups)
        X, y, copied = _validated_X(functools.partial(_validate_data, self), X, y, dtype=_DTYPES,
                                    multi_output=True, y_numeric=True)
        y = self._check_y(y)
        sample_weight = self._check_weights(sample_weight, X)
        same = getattr(self, "_y_ndim", None) == y.ndim
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        previous = self._warm_result(X, n_outputs, self.family) if self.warm_start and same else None
        self._y_ndim = y.ndim
        self._fit(X, y, sample_weight, previous, False, copied, groups)
        return self

    @available_if(_runs_sgd)
    @_unchanged_if_it_raises
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the previous calls' schedule.
        X keeps the first call's precision (float32 or float64)."""
        self._check_family_solver()
        first = not hasattr(self, "_fit_result")
        dtype = _DTYPES if first else self._fit_result.coef.dtype
        X, y, copied = _validated_X(functools.partial(_validate_data, self), X, y, dtype=dtype,
                                    multi_output=True, y_numeric=True, reset=first)
        y = self._check_y(y)
        if not first and (y.ndim, y.size // len(y)) != (self._y_ndim, self._fit_result.coef.shape[1]):
            fitted = "1-D y" if self._y_ndim == 1 else f"y with {self._fit_result.coef.shape[1]} columns"
            raise ValueError(f"y has shape {y.shape}, but the model was fitted on {fitted}")
        sample_weight = self._check_weights(sample_weight, X)
        self._fit(X, y, sample_weight, None if first else self._fit_result, True, copied)
        self._y_ndim = y.ndim
        return self

    @property
    def coef_(self):
        check_is_fitted(self, "_fit_result")
        coef = self._fit_result.coef
        return coef[:, 0] if self._y_ndim == 1 else coef.T

    @property
    def intercept_(self):
        check_is_fitted(self, "_fit_result")
        b = self._fit_result.intercept
        return float(b[0]) if self._y_ndim == 1 else b

    @property
    def bse_(self):
        """Standard errors of coef_ (same shape) from solver='fisher'."""
        bse = self._fisher_fit("bse_").bse
        return bse[:, 0] if self._y_ndim == 1 else bse.T

    @property
    def intercept_bse_(self):
        """The standard error of intercept_ (same shape) from solver='fisher'."""
        b = self._fisher_fit("intercept_bse_").intercept_bse
        return float(b[0]) if self._y_ndim == 1 else b

    def predict(self, X):
        check_is_fitted(self, "_fit_result")
        X = _validate_data(self, X, dtype=_DTYPES, order="C", accept_sparse="csr", reset=False)
        mean = glm_predict(X, self._fit_result.coef, self.family, intercept=self._fit_result.intercept,
                           backend=self.backend)
        return mean[:, 0] if self._y_ndim == 1 else mean

    def score(self, X, y, sample_weight=None):
        if self.family == "gaussian":
            return super().score(X, y, sample_weight=sample_weight)
        from sklearn.metrics import d2_tweedie_score

        # D^2 with the Poisson deviance; scikit-learn's takes one output, so
        # with several the mean of theirs (as r2_score's uniform average)
        y, mean = np.asarray(y), self.predict(X)
        y, mean = y.reshape(len(y), -1), mean.reshape(len(mean), -1)
        if y.shape != mean.shape:
            raise ValueError(f"y has {y.shape[1]} outputs but the model predicts {mean.shape[1]}")
        return float(np.mean([d2_tweedie_score(y[:, k], mean[:, k], sample_weight=sample_weight, power=1)
                              for k in range(y.shape[1])]))
