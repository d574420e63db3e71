"""Maximum-likelihood fits of GLMs by minibatch stochastic gradient descent,
where each epoch (every minibatch: gather, forward, loss, gradient, update)
is one call into compiled code.

Python does only per-epoch work here: it draws the epoch's permutation from a
numpy Generator, computes the epoch's learning rate for every step, calls the
backend's ``sgd_epoch`` kernel (fastmle/_numba/glm.py, csrc/glm_kernels.h,
fastmle/reference/glm.py), and applies the stopping rules. Every backend
walks the same trajectory for the same seed.
"""
import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np

from . import _dispatch
from ._validate import check_bool, is_real_number, real_array
from .glm import (CSRMatrix, as_design_matrix, as_sample_weight, check_finite, encode_response,
                  family_code, pack_params, run_kernel, total_weight, unpack_params)

SCHEDULES = ("constant", "invscaling", "cosine", "adaptive")
BATCH_SIZE = 32  # the default minibatch (sgd_fit, fastmle.dask.sgd_fit)
# Curvature bound of each family's per-sample loss in eta (the largest
# eigenvalue of d2 loss / d eta2): 1/2 for softmax, 1/4 for the logistic,
# 1 for squared error. Poisson's is the mean exp(eta), unbounded: the default
# step uses the mean response (at least 1), the curvature at the MLE of the intercept.
_CURVATURE = {"multinomial": 0.5, "binomial": 0.25, "gaussian": 1.0, "poisson": None}


# With the default step, how many times a diverging run starts again with half
# the step (down to 1/1024 of it) before SGDDivergedError.
DEFAULT_STEP_RESTARTS = 10


class SGDDivergedError(FloatingPointError):
    """The fit diverged: the loss of a minibatch became NaN or infinite
    (``result`` holds the fit as it was before that minibatch's update or,
    where an update overflowed the coefficients, the whole run's state as at
    the start of that epoch), or the loss grew, finite, far above the
    intercept-only model's and stopped there (``result`` holds that fit)."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result

    def __reduce__(self):  # pickled with its result: a worker's error reaches the parent whole
        return type(self), (str(self), self.result)


@dataclass
class SGDResult:
    """The outcome of :func:`sgd_fit`.

    coef (n_features, n_outputs) and intercept (n_outputs,) are the fitted
    parameters (the Polyak-Ruppert average when ``average`` was set);
    loss_history holds each epoch's objective, the function the steps
    descend: (1 / n) sum_i w_i loss_i, the weighted negative
    log-likelihood over the epoch's minibatches (each evaluated before its
    update, as scikit-learn reports it) divided by the number of training
    samples, plus the penalty at the epoch's end (with weights averaging 1,
    as "balanced" class weights do, the weighted mean loss);
    validation_history the mean loss on the held-out fraction after each
    epoch (empty without validation_fraction). learning_rate is the step the
    next epoch would start with (the schedule's value at step n_steps).
    classes are the multinomial labels.
    """
    coef: np.ndarray
    intercept: np.ndarray
    loss_history: List[float]
    n_epochs: int
    converged: bool
    n_steps: int
    learning_rate: float
    eta0: float
    family: str
    classes: Optional[np.ndarray] = None
    validation_history: List[float] = field(default_factory=list)
    copied_X: bool = False
    state: Any = field(default=None, repr=False)  # what warm_start continues from

    def __repr__(self):
        # a summary, as MLEResult's: the dataclass's printed every coefficient
        # and epoch loss (10 KB for a 50 x 10 model)
        last = f"{self.loss_history[-1]:.6g}" if self.loss_history else None
        return (f"SGDResult(family={self.family!r}, coef shape {self.coef.shape}, n_epochs={self.n_epochs}, "
                f"converged={self.converged}, last loss={last}, eta0={self.eta0:.3g})")


@dataclass
class _State:
    params: np.ndarray  # (K, d + 1), the kernels' layout
    velocity: np.ndarray
    avg: np.ndarray
    step: int  # steps taken so far (the schedules' clock)
    epochs: int
    eta: float  # adaptive: the current step
    horizon: int = 0  # cosine: the run's length in steps
    epoch_steps: int = 0  # invscaling: the run's epoch in steps (its first call's)
    avg_start: int = -1  # the step averaging started from (-1: none)
    best: float = math.inf
    bad_epochs: int = 0


def default_eta0(row_norm2, family, targets, fit_intercept, alpha, l1_ratio, momentum, sample_weight):
    """The default step: 1 / L with L the largest per-sample curvature of the
    loss in the parameters, as SAG-type solvers take it: the family's bound on
    d2 loss / d eta2 (1/2 multinomial, 1/4 binomial, 1 gaussian, the mean
    response for poisson, at least 1) times row_norm2, the largest squared row norm of X
    (plus 1 for the intercept; times the largest sample weight), plus the L2
    penalty; times (1 - momentum), since momentum multiplies the effective
    step by 1 / (1 - momentum)."""
    row_norm2 += 1.0 if fit_intercept else 0.0
    curvature = _CURVATURE[family]
    if curvature is None:
        curvature = max(1.0, float(np.mean(targets, dtype=np.float64)))
    if sample_weight.size:
        curvature *= max(float(np.max(sample_weight)), 1e-12)
    lipschitz = curvature * row_norm2 + alpha * (1.0 - l1_ratio)
    if not np.isfinite(lipschitz):  # the step would be 0: nothing would move
        raise ValueError(f"the default eta0 is 1 / {lipschitz}: X's largest squared row norm ({row_norm2:.3g}) or "
                         "the sample weights overflow double precision; scale X (or give eta0)")
    if not lipschitz > 0.0:  # X all zeros, no intercept, no penalty: a flat loss, any step will do
        lipschitz = 1.0
    return (1.0 - momentum) / lipschitz


def _scan_dense(kern, X):
    """The largest squared row norm of a dense X, after checking that X holds
    no NaN or infinity: one compiled read of X (the kernels' scan_rows)."""
    out = np.zeros(2)
    run_kernel(kern, "scan_rows", X, out)
    if out[1]:
        raise ValueError("X contains NaN or infinity")
    return float(out[0])


def _step_sizes(schedule, eta0, eta, power_t, step, n_batches, total_steps, epoch_steps=None):
    """Learning rate of each step of the next epoch (float64, (n_batches,));
    invscaling's epoch is epoch_steps steps (default n_batches)."""
    t = np.arange(step, step + n_batches, dtype=np.float64)
    if schedule == "constant":
        return np.full(n_batches, eta0)
    if schedule == "adaptive":
        return np.full(n_batches, eta)
    if schedule == "invscaling":  # time measured in epochs
        return eta0 / (1.0 + t / (epoch_steps or n_batches)) ** power_t
    # cosine: from eta0 down to 0 over the run of max_epochs epochs
    return eta0 * 0.5 * (1.0 + np.cos(np.pi * np.minimum(t, total_steps) / total_steps))


def next_rate(state, schedule, eta0, power_t):
    """The schedule's step at state.step: the next epoch's first (a run's
    state always knows its epoch's length)."""
    return float(_step_sizes(schedule, eta0, state.eta, power_t, state.step, 1, state.horizon,
                             state.epoch_steps)[0])


def _class_weight_per_sample(class_weight, labels, targets, classes, family):
    if class_weight is None:
        return None
    if family not in ("multinomial", "binomial"):
        raise ValueError(f"class_weight applies to multinomial and binomial families, not {family}")
    if family == "binomial":  # classes 0 and 1
        labels, classes = targets[:, 0].astype(np.int64), np.array([0, 1])
    return class_weight_table(class_weight, classes, np.bincount(labels, minlength=len(classes)))[labels]


def class_weight_table(class_weight, classes, counts):
    """Each class's weight, in the order of classes, for class_weight
    "balanced" (n_samples / (n_classes * count), scikit-learn's
    compute_class_weight; a class never seen counts once) or a dict
    {label: weight} (1 for labels it leaves out), from the classes'
    sample counts (fastmle.dask passes the whole array's)."""
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got {class_weight!r}")
        counts = np.asarray(counts, np.float64)
        return counts.sum() / (len(counts) * np.maximum(counts, 1))
    if isinstance(class_weight, dict):
        unknown = [c for c in class_weight if c not in set(classes.tolist())]
        if unknown:
            raise ValueError(f"class_weight has labels [{', '.join(map(str, unknown))}] not among the "
                             f"classes {classes.tolist()}")
        return np.array([checked_class_weight(class_weight.get(c, 1.0), c) for c in classes.tolist()])
    raise TypeError(f"class_weight must be 'balanced', a dict or None, got {type(class_weight).__name__}")


def checked_class_weight(weight, label):
    """class_weight's weight of label, as a float; ValueError unless finite and >= 0."""
    if not is_real_number(weight) or not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"class_weight must map labels to finite weights >= 0, got {weight!r} for {label!r}")
    return float(weight)


def check_positive_int(name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _penalty(params, alpha, l1_ratio):
    if alpha == 0.0:  # none, even where huge coefficients' squares overflow (0 * inf would be NaN)
        return 0.0
    coef = params[:, :-1].astype(np.float64)
    with np.errstate(over="ignore"):  # an infinite objective is reported as a divergence
        return alpha * ((1 - l1_ratio) * 0.5 * np.sum(coef * coef) + l1_ratio * np.sum(np.abs(coef)))


def centre_classes(params, l1, l2):
    """For the multinomial family with an L1 penalty: each feature's
    coefficients shifted by the same amount in every class, in place, to
    the shift that minimizes the penalty (l1 |w - c| + l2 / 2 (w - c)^2
    summed over the classes: the median for pure L1, between median and
    mean for elastic net). The softmax likelihood does not see such a
    shift, so this exact step along it never raises the objective. SGD moves
    there only through the proximal L1 steps, lr x l1 at a time, and its
    stopping rule fired first: on 1000 x 5 with 3 classes, alpha 0.01, the
    fits ended 1.3e-3 (l1_ratio 1) and 1.6e-3 (0.5) above the optimum,
    without its exact zeros. (An L2 penalty alone keeps the class sums at
    zero from the start.)"""
    W = params[:, :-1].astype(np.float64)  # (K, d)
    K = W.shape[0]
    ordered = np.sort(W, axis=0)
    candidates = [np.zeros((1, W.shape[1])), ordered]  # no shift; the kinks
    if l2 > 0:  # the stationary point with m of the K values below c, kept inside that interval
        below = np.vstack([np.full((1, W.shape[1]), -np.inf), ordered])
        above = np.vstack([ordered, np.full((1, W.shape[1]), np.inf)])
        m = np.arange(K + 1)[:, None]
        stationary = (W.sum(axis=0) + (l1 / l2) * (K - 2 * m)) / K
        candidates.append(np.clip(stationary, below, above))
    c = np.vstack(candidates)  # (candidates, d)
    cost = l1 * np.abs(W[None] - c[:, None]).sum(axis=1) + 0.5 * l2 * ((W[None] - c[:, None]) ** 2).sum(axis=1)
    # no shift where it is already optimal (ties within rounding keep the coefficients as they are)
    best = np.where(cost[0] <= cost.min(axis=0) * (1 + 1e-12), 0, np.argmin(cost, axis=0))
    shift = c[best, np.arange(W.shape[1])]
    params[:, :-1] = (W - shift).astype(params.dtype)


def callback_stops(callback, epoch, info):
    """Whether callback(epoch, info) asks to stop: it returns True (or a
    nonzero int), else False or None; anything else is a TypeError, not
    numpy's "truth value of an array is ambiguous"."""
    stop = callback(epoch, info)
    if not isinstance(stop, (type(None), bool, int, np.bool_, np.integer)):
        raise TypeError(f"callback must return True to stop training, or False or None; "
                        f"got {type(stop).__name__}")
    return bool(stop)


OPTION_NAMES = ("family", "batch_size", "max_epochs", "learning_rate", "eta0", "power_t", "momentum", "nesterov",
                "alpha", "l1_ratio", "fit_intercept", "average", "tol", "n_iter_no_change", "validation_fraction",
                "callback", "progress", "schedule_epochs")


def check_options(family, batch_size, max_epochs, learning_rate, eta0, power_t, momentum,
                  nesterov, alpha, l1_ratio, fit_intercept, average, tol, n_iter_no_change, validation_fraction,
                  callback, progress, schedule_epochs):
    """sgd_fit's options (OPTION_NAMES, in this order), before anything else;
    fastmle.dask's sgd_fit checks its own with it."""
    family_code(family)
    check_bool("nesterov", nesterov)
    check_bool("fit_intercept", fit_intercept)
    check_bool("progress", progress)
    if callback is not None and not callable(callback):  # else it failed only after an epoch
        raise TypeError(f"callback must be a function callback(epoch, info) or None, got {callback!r}")
    for name, value, optional in (("eta0", eta0, True), ("power_t", power_t, False),
                                  ("momentum", momentum, False), ("alpha", alpha, False),
                                  ("l1_ratio", l1_ratio, False), ("tol", tol, True),
                                  ("validation_fraction", validation_fraction, True)):
        # a string or an array would fail below with numpy's own message
        if not (value is None and optional) and not is_real_number(value):
            raise TypeError(f"{name} must be a real number{' or None' if optional else ''}, "
                            f"got {type(value).__name__} {value!r}")
    if learning_rate not in SCHEDULES:
        raise ValueError(f"unknown learning_rate {learning_rate!r}; expected one of {', '.join(SCHEDULES)}")
    for name, value in (("batch_size", batch_size), ("max_epochs", max_epochs),
                        ("n_iter_no_change", n_iter_no_change),
                        ("schedule_epochs", 1 if schedule_epochs is None else schedule_epochs)):
        check_positive_int(name, value)
    if eta0 is not None and not (np.isfinite(eta0) and eta0 > 0):
        raise ValueError(f"eta0 must be a positive number or None, got {eta0!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    if not 0 <= l1_ratio <= 1:
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio!r}")
    if not np.isfinite(power_t) or power_t < 0:
        raise ValueError(f"power_t must be >= 0, got {power_t!r}")
    if not isinstance(average, (bool, np.bool_)) and (not isinstance(average, (int, np.integer)) or average < 0):
        raise ValueError(f"average must be a bool or a number of samples >= 0, got {average!r}")
    if tol is not None and not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be >= 0 or None, got {tol!r}")
    if validation_fraction is not None and not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1) or None, got {validation_fraction!r}")


def sgd_fit(X, y, family, *, batch_size=BATCH_SIZE, max_epochs=100, learning_rate="adaptive", eta0=None,
            power_t=0.5, momentum=0.0, nesterov=False, alpha=0.0, l1_ratio=0.0, fit_intercept=True,
            sample_weight=None, class_weight=None, average=False, tol=1e-4, n_iter_no_change=5,
            validation_fraction=None, random_state=None, callback=None, progress=False,
            warm_start=None, coef_init=None, intercept_init=None, classes=None, schedule_epochs=None,
            check_input=True, backend=None, _epoch_steps=None):
    """Fit a GLM by minibatch SGD on its negative log-likelihood.

    Parameters
    ----------
    X : (n_samples, n_features) array or scipy.sparse matrix. float32 trains
        in float32 and float64 in float64, without copying a C-contiguous X;
        a Fortran-ordered X is copied once into C order (``result.copied_X``
        says so); other dtypes are converted to float64. Sparse X is taken
        as CSR (int32 column indices; its index arrays are copied, nnz x 4 +
        n_samples x 8 bytes, so that a change to them during the fit cannot
        reach the kernels; its values are not) and trained in the _csr kernels: a step
        of plain SGD then costs O(nonzeros in the batch x outputs); with L2,
        L1, momentum or averaging every coefficient moves at every step, so
        a step costs O(n_features x outputs).
    y : the response: class labels (multinomial), 0/1 (binomial), values
        (gaussian, (n,) or (n, k)), counts (poisson).
    family : "multinomial", "binomial", "gaussian" or "poisson".
    batch_size : samples per minibatch; the last batch of an epoch may be
        smaller. The gradient is the batch's mean (weighted) loss gradient.
    max_epochs : passes over the data.
    learning_rate : the schedule of the step, with t the number of steps
        taken and B the steps per epoch (of the run's first call: a warm
        start on more or fewer samples keeps B, and T):
        "constant" eta0; "invscaling" eta0 / (1 + t / B) ** power_t;
        "cosine" eta0 (1 + cos(pi t / T)) / 2 over the run's T = max_epochs B
        steps; "adaptive" (default) eta0 while the monitored loss improves,
        divided by 5 after n_iter_no_change epochs without an improvement of
        tol (counted, after a reduction, from the loss where it was made),
        the fit ending (converged) once it falls below eta0 * 1e-4.
    eta0 : the initial step. Default: from the data, see
        :func:`default_eta0` (1 / the largest per-sample curvature, as SAG
        takes it), which converges on standardized data without tuning.
        That bound is exact for every family but Poisson (whose curvature
        exp(eta) has none, and the default takes the mean count's): with
        the default, a run that diverges starts again from its beginning,
        with the same permutations, with half the step, up to 10 times;
        ``result.eta0`` is the step the fit used, and
        ``sgd_fit(..., eta0=result.eta0)`` gives the same fit (the
        callback and progress bar see the restarted run's epochs again; a
        callback that keeps state across epochs should expect it).
    momentum, nesterov : heavy-ball momentum in torch's convention
        (v = momentum v + g; step along v, or g + momentum v for Nesterov).
    alpha, l1_ratio : elastic-net penalty alpha ((1 - l1_ratio) |w|^2 / 2 +
        l1_ratio |w|_1) on the coefficients, not the intercept: the MAP
        estimate under a Gaussian (l1_ratio=0) or Laplace prior. The L1 part
        is applied as a proximal (soft-threshold) step, so the last
        iterate's coefficients that the exact solution zeroes sit at or
        within the last steps' noise of zero (not always exactly at it:
        threshold them for feature selection). For "multinomial", each
        epoch also ends by shifting each feature's coefficients in every
        class together to the penalty's minimum along that shift (which the
        softmax likelihood does not see): the median with l1_ratio=1.
    fit_intercept : fit an unpenalized intercept.
    sample_weight : per-sample weights, multiplying each sample's loss.
    class_weight : None, "balanced" (n_samples / (n_classes * count)) or
        {label: weight}, multiplied into the sample weights. "balanced"
        counts samples, not their weights, as scikit-learn's SGDClassifier
        (its LogisticRegression counts sample_weight into the classes'
        totals: pass that table as a dict for its fit).
    average : Polyak-Ruppert averaging: True averages the iterates from the
        first step, an integer n from the step after n samples were seen;
        the result's coefficients are then the average.
    tol, n_iter_no_change : stop (converged) when the monitored loss has not
        improved by tol for n_iter_no_change consecutive epochs (for
        "adaptive": reduce the step instead). tol=None: run all epochs.
        tol is absolute, on the mean loss, as scikit-learn's: where the
        loss itself is small (rare events: 5 positives in 20,000 samples
        give a mean loss near 2e-3) lower it, or use :func:`fit_mle`.
    validation_fraction : monitor the mean loss on this fraction of the
        samples, held out from training, instead of the training loss. The
        held-out responses take no part in the fit: the default eta0, the
        starting intercepts and the divergence check use the training rows'
        (class_weight="balanced" counts the classes of all rows, as
        scikit-learn's SGDClassifier does). For "multinomial" and
        "binomial" the split is stratified, as scikit-learn's: each class
        held out in proportion to its count.
    random_state : seed (or numpy Generator) of the epochs' permutations
        and of the validation split; a fixed seed reproduces a fit exactly.
    callback : ``callback(epoch, info)`` after each epoch, with info a dict
        (loss, validation_loss, learning_rate: the epoch's last step,
        n_steps, coef, intercept); returning True stops training.
    progress : show a tqdm progress bar (epoch, loss, learning rate).
    warm_start : an SGDResult to continue from: its coefficients, momentum,
        average, step count and schedule carry over (as partial_fit does),
        its eta0 too unless eta0 is given (a given eta0 also sets the
        adaptive schedule's step, which a converged run has lowered to
        1e-4 eta0 or less, back to eta0); the stopping rule starts afresh,
        so ``converged`` is about this call's epochs.
    coef_init, intercept_init : start a new run (schedule, momentum and
        average afresh) from these coefficients, in SGDResult.coef's layout
        (n_features, n_outputs), and intercepts (n_outputs,), e.g. along a
        path of penalties: the role of scikit-learn's
        ``SGDClassifier.fit(coef_init=...)``, whose coefficients (like the
        estimators' ``coef_``) are the transpose, (n_outputs, n_features).
        Defaults: zeros, and the training rows' intercept-only MLE. Not
        together with warm_start.
    classes : multinomial labels, when y may not show them all (sorted, and
        duplicates dropped, as ``result.classes``); for binomial, [0, 1]
        declares both classes, so that a y of one class (a stream's batch)
        is not refused.
    schedule_epochs : the run's length in epochs for the cosine schedule
        (default max_epochs); warm starts continue the first fit's cosine.
    check_input : scan a dense X for NaN and infinity before training (the
        default), in the read of X that also gives the default eta0's row
        norms. False skips that read when eta0 is given (4.6 ms of a 40 ms
        epoch on 200,000 x 100), for callers that have scanned X already, as
        the estimators do after scikit-learn's validation; scikit-learn's
        own estimators have the same switch. A non-finite X is then found
        only when training stops on it, and reported as a ValueError about
        X. With the default eta0, X is read and checked anyway. Every other
        check still runs.
    backend : "c", "numba", "numpy" or None (see fastmle.set_backend).

    Returns
    -------
    SGDResult

    Raises
    ------
    SGDDivergedError
        when a minibatch's loss becomes NaN or infinite (the step is too
        large; ``error.result`` keeps the last finite coefficients), or when
        the fit's objective ends far above the intercept-only model's (by
        more than its magnitude, at least 1): a finite blow-up, not a fit.
        That is checked when the stopping rule fires and, for a run from
        the default start (no warm_start, coef_init or intercept_init),
        however it ends (out of epochs, stopped by the callback); from a
        start of the caller's, the objective must also have grown as far
        above that start's own (a run left where a bad start put it has
        not diverged). It reads y once, and X once or twice more only when
        the last epoch's loss is above the level. With the default eta0
        only after 10 restarts with smaller steps (see eta0).

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5]) + 3.0 + 0.1 * rng.standard_normal(2000)
    >>> fit = fastmle.sgd_fit(X, y, "gaussian", random_state=0)
    >>> np.round(fit.coef.ravel(), 1), np.round(fit.intercept, 1)
    (array([ 1. , -2. ,  0.5]), array([3.]))
    """
    check_options(family, batch_size, max_epochs, learning_rate, eta0, power_t, momentum,
                  nesterov, alpha, l1_ratio, fit_intercept, average, tol, n_iter_no_change, validation_fraction,
                  callback, progress, schedule_epochs)
    # numpy scalars (float32 ones too) as Python floats: the schedule's steps are float64
    eta0, power_t, momentum, alpha, l1_ratio = (None if v is None else float(v)
                                                for v in (eta0, power_t, momentum, alpha, l1_ratio))
    tol = None if tol is None else float(tol)
    average = bool(average) if isinstance(average, np.bool_) else average  # tested with `is True` below
    default_step = eta0 is None
    if default_step and warm_start is not None:
        eta0 = warm_start.eta0  # the run's step goes on, as restarts may have halved it
    code = family_code(family)
    X, copied = as_design_matrix(X, check_values=False)  # a sparse X's values are checked here
    dense = not isinstance(X, CSRMatrix)
    # a dense X's values are checked after everything else, in the one read
    # of X that also gives the default step's row norms
    scan_now = dense and (check_input or eta0 is None)
    scan_later = dense and not scan_now  # check_input=False: X never scanned up front
    n, d = X.shape
    classes_given = classes is not None
    if family == "binomial" and classes_given and not np.array_equal(np.unique(np.asarray(classes)), [0, 1]):
        raise ValueError(f"binomial classes must be [0, 1], got {np.asarray(classes).tolist()}")
    if warm_start is not None and classes is None:
        classes = warm_start.classes
    labels, targets, classes = encode_response(y, family, n, X.dtype, classes)
    if family == "multinomial" and len(classes) < 2:
        raise ValueError(f"multinomial y needs at least 2 classes, got {len(classes)}")
    if (family == "binomial" and not classes_given and warm_start is None and _epoch_steps is None
            and n and (targets == targets[0, 0]).all()):
        raise ValueError(f"binomial y has only one class ({targets[0, 0]:g}); it needs both 0 and 1 "
                         "(pass classes=[0, 1] to train on one batch of a stream)")
    weights = as_sample_weight(sample_weight, n, X.dtype)
    per_class = _class_weight_per_sample(class_weight, labels, targets, classes, family)
    if per_class is not None:
        weights = (weights if weights.size else np.ones(n, X.dtype)) * per_class.astype(X.dtype)
        # a new run with nothing to fit is refused; a warm start's batch
        # (partial_fit's, from a stream) may weigh nothing, and changes nothing
        if n and warm_start is None and not weights.any():
            raise ValueError("sample_weight times class_weight is zero for every sample: there is nothing to fit")
    K = len(classes) if family == "multinomial" else targets.shape[1]
    _check_warm_start(warm_start, family, K, d, X.dtype)
    init = _initial_params(coef_init, intercept_init, warm_start, K, d, X.dtype, fit_intercept)
    rng = np.random.default_rng(random_state)
    kern = _dispatch.kernels(_dispatch.resolve(backend), "glm")

    # validation split: held-out rows never enter an epoch's permutation
    train = np.arange(n)
    val = None
    if validation_fraction is not None:
        strata = {"multinomial": labels, "binomial": targets[:, 0].astype(np.int64)}.get(family)
        val, train = _validation_split(rng, validation_fraction, n, strata)
        X_val = _design_rows(X, val)
        val_data = (X_val, *_sample_rows(val, labels, targets, weights))
    if len(train) == 0:
        raise ValueError("X has no samples")
    # the training rows' labels, targets and weights: the default step (but
    # for X's row norms, all rows'), the start's intercepts and the divergence
    # level come from them alone, so that no held-out response leaks into the
    # fit (an outlier among the validation rows had put the start above the
    # training rows' level: a false divergence)
    train_rows = (labels, targets, weights) if val is None else _sample_rows(train, labels, targets, weights)
    if val is not None and weights.size:  # the split can leave either side without weight
        for part, part_weights in (("training", train_rows[2]), ("validation", val_data[3])):
            if not part_weights.any():
                raise ValueError(f"the sample weights are zero for every {part} sample of the validation_fraction="
                                 f"{validation_fraction} split; give another random_state or validation_fraction")

    row_norm2 = _scan_dense(kern, X) if scan_now else None
    if scan_later and val is not None:  # held-out rows: no epoch will stop on them
        check_finite(X_val, "X")
    if eta0 is None:
        if row_norm2 is None:  # sparse X
            row_norm2 = float(X.row_norms2().max(initial=0.0))
        _, train_targets, train_weights = train_rows
        eta0 = default_eta0(row_norm2, family, train_targets, fit_intercept, alpha, l1_ratio, momentum, train_weights)
    n_batches = -(-len(train) // batch_size)
    # the kernels' batch: a batch_size beyond the samples makes the same single
    # batch, and the kernels size their buffers by it (batch_size x outputs:
    # a huge one overflowed that product in C, and a too-small buffer was
    # written past its end)
    kernel_batch = min(batch_size, len(train))
    # the schedules' epoch in steps: a new run's first call's, which warm
    # starts keep (partial_fit's batches vary in size); fastmle.dask passes
    # the whole array's, each call training one chunk (private: not API)
    epoch_steps = _epoch_steps or n_batches
    l2, l1 = alpha * (1.0 - l1_ratio), alpha * l1_ratio

    start_params = []  # the parameters the run starts from

    def start():  # the run's state at its first step, and the step averaging starts after
        state = _start_state(warm_start, None if init is None else (init[0].copy(), init[1]), family, K, d,
                             X.dtype, fit_intercept, momentum, eta0, *train_rows)
        start_params[:] = [state.params.copy()]
        if warm_start is None or _epoch_steps:
            state.epoch_steps = epoch_steps
        if warm_start is None:
            state.horizon = (schedule_epochs or max_epochs) * epoch_steps
        elif not default_step:  # an eta0 given to a warm start: adaptive's step starts again from it
            state.eta = eta0
        if average is not False and state.avg_start < 0:
            # a fresh average starts from the current parameters, never an old one
            # capped: a start no run reaches (2**80 had overflowed the kernels' int64 argument)
            state.avg_start = state.step + (0 if average is True else min(-(-int(average) // batch_size), 2**62))
            state.avg = state.params.copy()
        return state, state.avg_start if average is not False else -1

    def diverged(lr, done, what, epoch, step):
        return SGDDivergedError(
            f"the loss {what} in epoch {epoch} (step {step}) with learning rate "
            f"{lr[min(done, n_batches - 1)]:.3g}: the step is too large for this data; use a smaller eta0 "
            "(or standardize X). error.result holds the last finite coefficients.",
            _result(state, next_rate(state, learning_rate, eta0, power_t), history, val_history, False, eta0,
                    family, classes, copied, avg_start))

    def run_epochs():
        """Train up to max_epochs epochs from state; True when converged."""
        converged = False
        for epoch in range(max_epochs):
            perm = rng.permutation(train)
            lr = _step_sizes(learning_rate, eta0, state.eta, power_t, state.step, n_batches,
                             state.horizon, state.epoch_steps)
            loss = np.zeros(1)
            epoch_start = state.params.copy(), state.avg.copy(), state.velocity.copy(), state.step
            done = run_kernel(kern, "sgd_epoch", X, labels, targets, weights, perm, lr, code, kernel_batch,
                              l2, l1, momentum, nesterov, fit_intercept, state.params, state.velocity,
                              state.avg, avg_start, state.step, loss)
            state.step += done
            finite = np.isfinite(state.params).all()
            if done < n_batches or not finite:
                if scan_later:  # was it X?
                    check_finite(X)
                failed_at = state.step
                if not finite:  # an update overflowed: the whole state as at the epoch's start
                    state.params, state.avg, state.velocity, state.step = epoch_start
                raise diverged(lr, done, "became NaN or infinite", state.epochs + 1, failed_at)
            state.epochs += 1
            if family == "multinomial" and l1 > 0:
                for p in (state.params, state.avg) if avg_start >= 0 else (state.params,):
                    centre_classes(p, l1, l2)
            # the objective the steps descend: (1 / n) sum w loss + penalty
            objective = float(loss[0]) / len(train) + float(_penalty(state.params, alpha, l1_ratio))
            if not math.isfinite(objective):  # finite coefficients whose penalty overflows
                raise diverged(lr, done, "became NaN or infinite", state.epochs, state.step)
            history.append(objective)
            monitored = objective
            if val is not None:
                vl = np.zeros(1)
                grad = np.empty((0, d + 1), X.dtype)
                params = _current(state, avg_start)
                X_val, labels_val, targets_val, weights_val = val_data
                run_kernel(kern, "glm_loss_grad", X_val, labels_val, targets_val, weights_val, params,
                           np.empty(0, X.dtype), code, vl, grad)  # (sgd_fit takes no offset)
                monitored = float(vl[0]) / total_weight(weights_val, len(val))
                val_history.append(monitored)
            converged = _apply_stopping(state, learning_rate, monitored, tol, n_iter_no_change, eta0)
            last_epoch = converged or epoch == max_epochs - 1
            if bar is not None:
                bar.set_postfix(loss=f"{objective:.5g}", lr=f"{lr[-1]:.3g}")
                bar.update(1)
            if callback is not None:
                coef, intercept = unpack_params(_current(state, avg_start))
                info = {"loss": objective, "validation_loss": val_history[-1] if val_history else None,
                        "learning_rate": float(lr[-1]), "n_steps": state.step, "coef": coef,
                        "intercept": intercept}
                if callback_stops(callback, state.epochs, info):
                    last_epoch = True
            if last_epoch:
                # a finite blow-up is not a fit to return: judged when the
                # stopping rule fires, and at any end of a run from the
                # default start (the intercept-only model, below the level);
                # a warm start (partial_fit's next batch, fastmle.dask's next
                # chunk) or coef_init may start above this data's level
                if (converged or fresh_start) and blown_up(objective):
                    raise diverged(lr, done, f"grew to {objective:.3g}, far above the intercept-only model's,",
                                   state.epochs, state.step)
                break
        return converged

    # fastmle.dask's chunk calls (_epoch_steps given) are never judged here:
    # one chunk's loss says nothing of the whole run, which dask judges itself
    fresh_start = warm_start is None and init is None and _epoch_steps is None
    divergence_level = []  # computed once, when a run first ends on a loss that may be above it

    def blown_up(objective):
        """Whether the fit returned has an objective above the divergence
        level (see _divergence_level) and, from a start of the caller's
        (warm_start, coef_init), as far above that start's own: a run that
        stays where such a start put it, above the level, has not grown."""
        if objective <= 0.0:  # the level is never below 0
            return False
        if train_rows[2].size and not train_rows[2].any():  # a warm start's batch of weight 0: no loss at all
            return False
        if not divergence_level:
            divergence_level.append(_divergence_level(family, K, *train_rows, fit_intercept))
        level = divergence_level[0]
        # the epoch's loss is that of the iterates along the way; the fit
        # returned (with average, the average) can be far better: judge it by
        # its own objective, one more pass over X, taken only when the
        # epoch's loss is above the level
        if objective <= level:
            return False

        def objective_of(params):
            return _train_objective(kern, X, train, labels, targets, weights, code, params, alpha, l1_ratio)

        fit = objective_of(_current(state, avg_start))
        return fit > level and (fresh_start or fit > level_above(objective_of(start_params[0])))

    # With the default step, a run that diverges starts again from its
    # beginning (same permutations) with half the step: the step bound is
    # exact for every family but Poisson, whose curvature exp(eta) has none.
    restarts = DEFAULT_STEP_RESTARTS if default_step and warm_start is None else 0
    rng_start = rng.bit_generator.state
    with progress_bar(max_epochs, progress) as bar:
        for attempt in range(restarts + 1):
            state, avg_start = start()
            history, val_history = [], []
            try:
                converged = run_epochs()
                break
            except SGDDivergedError:
                if attempt == restarts:
                    raise
            eta0 /= 2.0
            rng.bit_generator.state = rng_start
            if bar is not None:
                bar.reset()
    return _result(state, next_rate(state, learning_rate, eta0, power_t), history, val_history, converged, eta0,
                   family, classes, copied,
                   avg_start)


def _validation_split(rng, validation_fraction, n, strata=None):
    """(held-out rows, training rows), each sorted: ceil(validation_fraction
    x n) rows drawn with rng or, given strata (each sample's class, for the
    classifier families), as scikit-learn's SGDClassifier holds out rows:
    each class in proportion to its count (largest remainders), never a
    class's last training row."""
    n_val = int(math.ceil(validation_fraction * n))
    split = rng.permutation(n)
    if strata is None:
        held = np.arange(n) < n_val
    else:
        classes = strata[split]  # in the permutation's order
        counts = np.bincount(classes)
        quota = validation_fraction * counts
        cap = np.maximum(counts - 1, 0)
        take = np.minimum(np.floor(quota).astype(np.int64), cap)
        for c in np.argsort(np.floor(quota) - quota, kind="stable"):  # largest remainder first
            if take.sum() >= n_val:
                break
            take[c] += take[c] < cap[c]
        # each row's rank among its class's rows, in the permutation's order
        by_class = np.argsort(classes, kind="stable")
        rank = np.empty(n, np.int64)
        rank[by_class] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        held = rank < take[classes]
    if not 0 < held.sum() < n:
        raise ValueError(f"validation_fraction={validation_fraction} leaves no training or validation samples "
                         f"(n_samples = {n})")
    return np.sort(split[held]), np.sort(split[~held])


def _check_warm_start(warm_start, family, K, d, dtype):
    if warm_start is None:
        return
    st = warm_start.state
    if st is None or st.params.shape != (K, d + 1) or st.params.dtype != dtype or warm_start.family != family:
        raise ValueError("warm_start does not match this problem (family, outputs, features or dtype)")


def _initial_params(coef_init, intercept_init, warm_start, K, d, dtype, fit_intercept):
    """(params (K, d + 1), whether intercept_init was given) for a new run
    from coef_init / intercept_init; None for the default start."""
    if coef_init is None and intercept_init is None:
        return None
    if warm_start is not None:
        raise ValueError("coef_init / intercept_init start a new run and warm_start continues one: "
                         "give one or the other")
    if intercept_init is not None and not fit_intercept:
        raise ValueError("intercept_init is given but fit_intercept=False")
    coef = np.zeros((d, K)) if coef_init is None else real_array(coef_init, "coef_init")
    if coef.ndim == 1 and K == 1:
        coef = coef[:, None]
    if coef.shape != (d, K):
        raise ValueError(f"coef_init must have shape (n_features, n_outputs) = {(d, K)}, got {coef.shape}")
    intercept = None if intercept_init is None else real_array(intercept_init, "intercept_init")
    if intercept is not None and intercept.shape not in ((), (K,)):
        raise ValueError(f"intercept_init must be a scalar or have shape ({K},), got {intercept.shape}")
    params = pack_params(coef, intercept, d, dtype)
    if not np.isfinite(params).all():
        raise ValueError("coef_init and intercept_init must be finite")
    return params, intercept is not None


def _start_state(warm_start, init, family, K, d, dtype, fit_intercept, momentum, eta0, labels, targets,
                 weights):
    if warm_start is not None:
        st = warm_start.state
        # the schedule goes on; the stopping rule judges this call's epochs
        st = _State(st.params.copy(), st.velocity.copy(), st.avg.copy(), st.step, st.epochs, st.eta,
                    st.horizon, st.epoch_steps, st.avg_start)
        if momentum > 0 and st.velocity.shape[0] == 0:
            st.velocity = np.zeros_like(st.params)
        return st
    params, intercept_given = init if init is not None else (np.zeros((K, d + 1), dtype), False)
    if fit_intercept and not intercept_given:  # start the intercept at its MLE without features
        params[:, -1] = _intercept_start(family, K, labels, targets, weights)
    velocity = np.zeros_like(params) if momentum > 0 else np.empty((0, d + 1), dtype)
    return _State(params, velocity, params.copy(), 0, 0, eta0)


def _intercept_start(family, K, labels, targets, weights):
    w = weights.astype(np.float64) if weights.size else None
    if family == "multinomial":
        return intercept_start(family, np.bincount(labels, weights=w, minlength=K))
    mean = np.average(targets.astype(np.float64), axis=0, weights=w) if targets.shape[0] else np.zeros(K)
    return intercept_start(family, mean)


def intercept_start(family, statistic):
    """The intercepts a fit starts from: the MLE without features, from the
    weighted class totals (multinomial) or the weighted mean response (the
    other families, one per output), as fastmle.dask gathers them too."""
    if family == "multinomial":
        # log class frequencies (+1: no log(0)), centred: softmax ignores a
        # common shift, and SGD keeps the sum of the intercepts (the loss
        # gradients of a sample's outputs sum to zero), so the fit's
        # intercepts sum to zero, as scikit-learn's LogisticRegression's do
        log_freq = np.log(np.asarray(statistic, np.float64) + 1.0)
        return log_freq - log_freq.mean()
    if family == "binomial":
        p = np.clip(statistic, 1e-3, 1 - 1e-3)
        return np.log(p / (1 - p))
    if family == "poisson":
        return np.log(np.maximum(statistic, 1e-3))
    return np.asarray(statistic, np.float64)


def _apply_stopping(state, schedule, monitored, tol, n_iter_no_change, eta0):
    """Update the no-improvement count; True when the fit has converged."""
    if tol is None:
        return False
    if monitored > state.best - tol:
        state.bad_epochs += 1
    else:
        state.bad_epochs = 0
    state.best = min(state.best, monitored)
    if state.bad_epochs < n_iter_no_change:
        return False
    if schedule != "adaptive":
        return True
    state.bad_epochs = 0
    state.eta /= 5.0
    # the smaller step is judged from the loss where it starts: against a
    # best epoch a jumpy run reached by chance, its slower descent counted
    # as no improvement, each reduction leading to the next until a false
    # "converged" (1.7 above the MLE's objective: test_sgd.py's Poisson case)
    if np.isfinite(monitored):  # an inf best would never see another epoch as no improvement
        state.best = monitored
    return state.eta < eta0 * 1e-4


def _design_rows(X, index):
    """The rows index of a dense or CSR X, in the kernels' layout."""
    return X.take_rows(index) if isinstance(X, CSRMatrix) else np.ascontiguousarray(X[index])


def _sample_rows(index, *arrays):
    """The rows index of per-sample arrays; an empty one (no labels, no
    targets, no weights) stays empty."""
    return tuple(a[index] if a.size else a for a in arrays)


def _divergence_level(family, K, labels, targets, weights, fit_intercept):
    """The objective above which a fit has diverged rather than converged:
    that of the model without features (coefficients 0, the start's
    intercepts), which the optimum cannot exceed, plus its magnitude (at
    least 1). Arrays are the training rows'."""
    intercepts = np.zeros(K)
    if fit_intercept:
        intercepts = _intercept_start(family, K, labels, targets, weights)
    return level_above(_intercept_only_objective(family, K, labels, targets, weights, intercepts))


def level_above(null):
    """The divergence level for the intercept-only model's objective null
    (fastmle.dask gathers null over its chunks)."""
    return null + max(abs(null), 1.0)


def _intercept_only_objective(family, K, labels, targets, weights, b):
    """(1 / n) sum_i w_i loss_i of the model with intercepts b and no
    features, in closed form from y's weighted statistics: one numpy pass
    over y, where the kernels' loss would cost a pass of exponentials over
    n x K (13 ms on the benchmark's 200,000 x 10)."""
    n = len(labels) if family == "multinomial" else targets.shape[0]
    w = weights.astype(np.float64) if weights.size else None
    if family == "multinomial":  # sum_k W_k (logsumexp(b) - b_k)
        totals = np.bincount(labels, weights=w, minlength=K)
        top = b.max()
        return float(totals.sum() * (top + np.log(np.exp(b - top).sum())) - totals @ b) / n
    y = targets.astype(np.float64)
    total = float(n) if w is None else float(w.sum())
    # per output; (w y).sum, not w @ y: OpenBLAS's threads spin after a long
    # product and slow the epochs that follow (fastmle.mle.weighted_sum)
    wy = y.sum(axis=0) if w is None else (w[:, None] * y).sum(axis=0)
    if family == "binomial":  # W softplus(b) - b sum w y
        per_output = total * np.logaddexp(0.0, b) - b * wy
    elif family == "gaussian":  # sum w (y - b)^2 / 2
        squares = (y - b) ** 2
        per_output = 0.5 * (squares.sum(axis=0) if w is None else (w[:, None] * squares).sum(axis=0))
    else:  # poisson: W exp(b) - b sum w y
        per_output = total * np.exp(b) - b * wy
    return float(per_output.sum()) / n


def _train_objective(kern, X, train, labels, targets, weights, code, params, alpha, l1_ratio):
    """(1 / n) sum w loss + penalty of params over the training rows."""
    if len(train) < X.shape[0]:  # a validation split: the training rows only
        X = _design_rows(X, train)
        labels, targets, weights = _sample_rows(train, labels, targets, weights)
    loss = np.zeros(1)
    run_kernel(kern, "glm_loss_grad", X, labels, targets, weights, params, np.empty(0, params.dtype), code, loss,
               np.empty((0, params.shape[1]), params.dtype))
    return float(loss[0]) / len(train) + float(_penalty(params, alpha, l1_ratio))


def _current(state, avg_start):
    return state.avg if avg_start >= 0 and state.step > avg_start else state.params


def _result(state, rate, history, val_history, converged, eta0, family, classes, copied, avg_start):
    coef, intercept = unpack_params(_current(state, avg_start))
    return SGDResult(coef=coef, intercept=intercept, loss_history=history, n_epochs=state.epochs,
                     converged=converged, n_steps=state.step, learning_rate=rate, eta0=eta0,
                     family=family, classes=classes, validation_history=val_history,
                     copied_X=copied, state=state)


@contextlib.contextmanager
def progress_bar(total, show):
    """A tqdm bar over `total` epochs if show (else None), closed on leaving."""
    bar = _progress_bar(total) if show else None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install tqdm (or fastmle[progress])") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.auto's notebook hint
        return tqdm(total=total, desc="sgd", unit="epoch")
