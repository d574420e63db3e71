"""Exact maximum-likelihood fits of GLMs by Fisher scoring, with the
inference statisticians expect: standard errors, z statistics, p-values,
confidence intervals, log-likelihoods, AIC/BIC and a summary table.

Each iteration is one pass of the compiled likelihood-and-gradient kernel
and one of the exact-Fisher kernel (fastmle/fisher.py); Python solves the
small P x P system. For the canonical links used here the expected and the
observed information agree, so Fisher scoring is Newton's method and
converges quadratically near the optimum.
"""
import contextlib
import math
import statistics
import warnings
from typing import NamedTuple, Optional

import numpy as np

from . import _blas, _dispatch
from ._validate import check_bool, is_real_number, real_array
from .fisher import GLMModel, _symmetric, refuse_sparse
from .glm import (as_design_matrix, as_sample_weight, check_finite, encode_response, family_code, glm_predict,
                  total_offset)
from .reference.special import softmax_nd

_NORMAL = statistics.NormalDist()
# fit_mle reuses the information's factor after a step this small (relative),
# for as long as each step with the old factor shrinks by CHORD_CONTRACTION
REUSE_FISHER = 1e-2
CHORD_CONTRACTION = 0.25
# An unconverged fit with samples at probability 0 or 1 is separation when
# the information about a parameter fell below this share of its start's
# (well-posed fits cut short kept 0.07 or more, separated ones fell to 1e-5
# in 10 iterations)
VANISHED_INFORMATION = 1e-4
# A gaussian fit is exact when its residual sum of squares is at most this
# share of sum w y^2 (residuals within 1e-13 of y's size: rounding), and at
# most EXACT_SPREAD of sum w (y - mean)^2 (residuals within 1e-4 of y's
# spread) unless that spread is itself rounding
EXACT_GAUSSIAN = 1e-26
EXACT_SPREAD = 1e-8
# A fit cut short by a smaller max_iter that looks separated is run again to
# this many iterations before separation is reported (see _fisher_scoring)
CONFIRM_ITER = 100
# fit_mle's default tolerance (the estimators' solver="fisher" fits with it too)
TOL = 1e-8
# The Poisson deviance is summed row by row (a pass) when the sums' formula
# leaves it below this share of its terms' size (rounding's would show)
DEVIANCE_CANCELLATION = 1e-6
# wald_test: a direction of the restrictions whose correlation eigenvalue is
# below this share of the largest carries no degree of freedom (rounding)
SINGULAR_CORRELATION = 1e-10
# the column of ones is in X's span when least squares of it on X leaves
# less than this fraction of its sum of squares (rounding leaves eps times
# the correlation's condition number)
IMPLICIT_CONSTANT = 1e-9


class SingularFisherError(np.linalg.LinAlgError):
    """The Fisher information is singular: the parameters are not
    identifiable (collinear or constant columns, the symmetric softmax
    parameterization without a penalty). The message names the cause."""


class PerfectSeparationError(SingularFisherError):
    """The classes are (quasi-)perfectly separated by the features: some
    fitted probabilities reach 0 or 1 and the maximum-likelihood estimate
    does not exist (coefficients diverge); for Poisson, fitted means reach
    0 (where y is 0 for a range of the features). Use ``alpha > 0``."""


class MLEResult:
    """The outcome of :func:`fit_mle`.

    ``params`` has shape (n_terms, n_outputs) for multinomial, (n_terms,)
    otherwise: the coefficients of the features, then the intercept (when
    fitted) as the last row; ``param_names`` names the rows and
    ``output_names`` the columns (the classes other than the reference).
    ``bse``, ``zvalues`` (``tvalues``, statsmodels' name), ``pvalues``
    have params' shape; ``cov_params()`` is indexed by ``params`` flattened
    output by output (``params.ravel(order="F")``), the order of
    :func:`fastmle.glm_fisher`. p-values and intervals use the normal
    approximation of the MLE, or with ``use_t`` (fit_mle's) Student's t
    with ``df_resid_inference`` degrees of freedom, as statsmodels' OLS.
    ``k_constant`` is 1 with an intercept: fit_intercept, or with
    fit_intercept=False a column of X that is constant and nonzero over
    the samples of positive weight (statsmodels' ``add_constant``; its
    index in ``constant_columns``, which get_margeff leaves out) or a
    combination of columns that is constant (the column of ones in X's
    span, as with a full set of dummies: statsmodels' implicit constant),
    0 otherwise; ``df_model`` and ``llr_pvalue`` depend on it.
    ``nobs`` is the number of observations: the sum of the sample weights
    (frequency weights, as statsmodels' ``wnobs`` with ``freq_weights``),
    the number of rows without them; BIC's ``log(nobs)`` uses it.
    ``cov_type`` says which covariance the standard errors come from:
    "nonrobust" (the inverse information) or a sandwich, "HC0" / "HC1" /
    "HC2" / "HC3" / "cluster". Tests: ``llr`` and ``llr_pvalue`` (against
    the intercept-only model), ``lr_test(restricted)`` (a nested fit) and
    ``wald_test(terms or R)`` (linear restrictions, with the covariance in
    use), each a chi-square approximation (``wald_test`` an F test with
    ``use_t``). ``deviance`` is twice the
    log-likelihood's distance to the saturated model's (the residual sum
    of squares for gaussian); ``scale`` the dispersion the model-based
    covariance uses (1 for binomial, multinomial and poisson, sigma^2's MLE
    for gaussian, unless fit_mle's ``scale`` chose another; then
    ``scale_method`` says which, and ``pearson_chi2`` is Pearson's
    statistic with "X2").
    """

    def __init__(self, *, params, cov, llf, llnull, nobs, n_iter, converged, family, fit_intercept,
                 param_names, output_names, classes, reference_class, alpha, scale, cov_type="nonrobust",
                 deviance=math.nan, pearson_chi2=None, scale_method=None, use_t=False, n_clusters=None,
                 constant_columns=(), implicit_constant=False):
        self.params, self._cov, self.cov_type = params, cov, cov_type
        self.constant_columns = list(constant_columns)
        self.k_constant = int(fit_intercept or bool(self.constant_columns) or implicit_constant)
        self.use_t, self.n_clusters = use_t, n_clusters
        self.deviance, self.pearson_chi2, self.scale_method = deviance, pearson_chi2, scale_method
        self.llf, self.llnull, self.nobs = llf, llnull, nobs
        self.n_iter, self.converged = n_iter, converged
        self.family, self.fit_intercept, self.alpha, self.scale = family, fit_intercept, alpha, scale
        self.param_names, self.output_names = param_names, output_names
        self.classes, self.reference_class = classes, reference_class
        self.bse = np.sqrt(np.diag(cov)).reshape(params.shape, order="F")

    @property
    def coef(self):
        """The feature coefficients, (n_features, n_outputs) or (n_features,)."""
        return self.params[:-1] if self.fit_intercept else self.params

    @property
    def intercept(self):
        """The intercepts (n_outputs,) (zeros without fit_intercept)."""
        if self.fit_intercept:
            return np.atleast_1d(self.params[-1]).copy()
        return np.zeros(1 if self.params.ndim == 1 else self.params.shape[1])

    @property
    def k_params(self):
        """The number of estimated parameters, the count AIC and BIC charge
        (sigma^2 not counted, as statsmodels' OLS)."""
        return self.params.size

    @property
    def df_model(self):
        """The model's degrees of freedom as statsmodels reports them: the
        parameters beyond one intercept per output (the likelihood-ratio
        test's degrees of freedom against llnull, the intercept-only model).
        As statsmodels' discrete models, this subtracts the intercepts also
        from a fit without them; its OLS, and so gaussian here, only with
        k_constant (fit_intercept, or a constant in X, explicit or
        implicit)."""
        n_outputs = 1 if self.params.ndim == 1 else self.params.shape[1]
        with_intercepts = self.k_constant or self.family != "gaussian"
        return self.k_params - (n_outputs if with_intercepts else 0)

    @property
    def df_resid(self):
        """nobs - k_params, as statsmodels (nobs counts frequency weights)."""
        return self.nobs - self.k_params

    @property
    def df_resid_inference(self):
        """The degrees of freedom of the t and F distributions ``use_t``
        refers the statistics to: G - 1 with a cluster covariance (G
        clusters; statsmodels' ``df_resid_inference``), df_resid
        otherwise."""
        return self.n_clusters - 1 if self.cov_type == "cluster" else self.df_resid

    @property
    def zvalues(self):
        """params / bse: z statistics, or t statistics with use_t."""
        with np.errstate(divide="ignore", invalid="ignore"):  # an exact gaussian fit's 0 (it warned)
            return self.params / self.bse

    tvalues = zvalues  # statsmodels' name, whichever distribution

    @property
    def pvalues(self):
        """Two-sided p-values of the z statistics (normal), or with use_t of
        the t statistics (Student's t, df_resid_inference)."""
        if self.use_t:
            # (scipy's t and F of no degrees of freedom, df <= 0, are NaN)
            with np.errstate(invalid="ignore"):
                return 2.0 * _scipy_stats("use_t").t.sf(np.abs(self.zvalues), self.df_resid_inference)
        return _normal_pvalues(self.zvalues)

    def _quantile(self, alpha):
        """The two-sided 1 - alpha intervals' multiplier of the standard
        error: the normal's, or Student's t's with use_t; alpha checked."""
        if not self.use_t:
            return _normal_quantile(alpha)
        check_interval_level(alpha)
        return _scipy_stats("use_t").t.ppf(1.0 - alpha / 2.0, self.df_resid_inference)

    @property
    def aic(self):
        return -2.0 * self.llf + 2.0 * self.k_params

    @property
    def bic(self):
        return -2.0 * self.llf + math.log(self.nobs) * self.k_params

    @property
    def prsquared(self):
        """McFadden's pseudo R-squared, 1 - llf / llnull."""
        return 1.0 - self.llf / self.llnull if self.llnull != 0 else float("nan")

    @property
    def llr(self):
        """The likelihood-ratio statistic against the intercept-only model,
        2 (llf - llnull)."""
        return 2.0 * (self.llf - self.llnull)

    @property
    def llr_pvalue(self):
        """The likelihood-ratio test's p-value: llr against a chi-square with
        df_model degrees of freedom (as statsmodels' discrete models); NaN
        for a penalized fit (alpha > 0), whose llf is not the maximum, and
        for a fit with neither fit_intercept nor a constant in X (explicit
        or implicit: k_constant 0), which need not nest the intercept-only
        model (llr can then be negative)."""
        if self.alpha or not self.k_constant:
            return math.nan
        return chi2_sf(self.llr, self.df_model)

    def lr_test(self, restricted):
        """The likelihood-ratio test of ``restricted``, a fit of the same
        family to the same samples with fewer parameters (nested in this
        one: some of its terms left out), against this fit. Returns
        ``ChiSquareTest(statistic=2 (llf - restricted.llf), df, pvalue)``, the
        chi-square approximation with df the difference in parameters.

        >>> import numpy as np, fastmle
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((500, 2))
        >>> y = (X[:, 0] + rng.logistic(size=500) > 0).astype(int)
        >>> full = fastmle.fit_mle(X, y, "binomial")
        >>> test = full.lr_test(fastmle.fit_mle(X[:, :1], y, "binomial"))  # does x1 matter?
        >>> test.df, bool(test.pvalue > 0.05)
        (1, True)
        """
        if not isinstance(restricted, MLEResult):
            raise TypeError(f"restricted must be an MLEResult, got {type(restricted).__name__}")
        if restricted.family != self.family or restricted.nobs != self.nobs:
            raise ValueError(f"the restricted fit must be of the same family and samples: {restricted.family!r} "
                             f"with nobs {restricted.nobs} against {self.family!r} with nobs {self.nobs}")
        if self.alpha or restricted.alpha:
            raise ValueError("the likelihood-ratio test compares maximum-likelihood fits: alpha must be 0")
        df = self.k_params - restricted.k_params
        if df <= 0:
            raise ValueError(f"the restricted fit must have fewer parameters than this one: {restricted.k_params} "
                             f"against {self.k_params}")
        statistic = 2.0 * (self.llf - restricted.llf)
        return ChiSquareTest(statistic, df, chi2_sf(statistic, df))

    def wald_test(self, restriction, value=None, use_f=None):
        """The Wald test of linear restrictions ``R @ theta = value`` on
        ``theta = params.ravel(order="F")`` (cov_params()'s order), with the
        covariance in use, cov_params() (robust too; for gaussian with
        sigma^2's MLE unless fit_mle's ``scale="X2"`` chose OLS's).
        ``restriction`` is R, (r, k_params) or (k_params,) for one, or a
        list of term names (``param_names``), testing that their
        coefficients (every output's, for multinomial) are all 0.
        ``value`` defaults to 0. Returns
        ``ChiSquareTest(statistic, df, pvalue)``: the statistic (R theta -
        value)^T (R C R^T)^+ (R theta - value) (the Moore-Penrose inverse,
        as statsmodels' ``wald_test(use_f=False)``) referred to a
        chi-square with df the rank of R C R^T: r unless the covariance is
        singular along the restrictions (the symmetric softmax's estimate
        sums to zero over the classes, so a term's K coefficients carry K -
        1 degrees of freedom; a cluster covariance has rank at most G - 1).
        ``use_f`` (default: the fit's ``use_t``) returns instead
        ``FTest(statistic / df, df, df_resid_inference, pvalue)``, the F
        test of statsmodels' ``wald_test(use_f=True)`` and OLS's ``f_test``.

        >>> import numpy as np, fastmle
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((500, 3))
        >>> y = rng.poisson(np.exp(0.3 * X[:, 0]))
        >>> fit = fastmle.fit_mle(X, y, "poisson")
        >>> fit.wald_test(["x1", "x2"]).df     # both 0?
        2
        >>> bool(fit.wald_test(["x0"]).pvalue < 1e-6)
        True
        """
        if use_f is None:
            use_f = self.use_t
        check_bool("use_f", use_f)
        chi2 = self._chi2_wald_test(restriction, value)
        if not use_f:
            return chi2
        df_denom = self.df_resid_inference
        statistic = chi2.statistic / chi2.df
        with np.errstate(invalid="ignore"):
            pvalue = float(_scipy_stats("use_f").f.sf(statistic, chi2.df, df_denom))
        if math.isnan(chi2.pvalue):  # (an exact gaussian fit: no test, as the chi-square form says)
            pvalue = math.nan
        return FTest(statistic, chi2.df, df_denom, pvalue)

    def _chi2_wald_test(self, restriction, value):
        """wald_test's chi-square form."""
        R = self._restriction_matrix(restriction)
        q = np.zeros(len(R)) if value is None else np.asarray(value, np.float64)
        if q.shape not in ((), (len(R),)):
            raise ValueError(f"value must be a number or have shape ({len(R)},) (one per restriction), got {q.shape}")
        q = np.broadcast_to(q, (len(R),))
        if not (np.isfinite(R).all() and np.isfinite(q).all()):
            raise ValueError("the restriction and its value must be finite")
        if np.linalg.matrix_rank(R) < len(R):
            raise ValueError(f"the {len(R)} restrictions are linearly dependent: drop the redundant ones")
        diff = R @ self.params.ravel(order="F") - q
        cov = R @ self._cov @ R.T
        if not np.isfinite(cov).all():  # (NaN standard errors, which warned)
            return ChiSquareTest(math.nan, len(R), math.nan)
        # The rank in the correlation scale: the variances of coefficients on
        # scales 1e-3 and 1e3 differ by 1e12, but a direction the estimate
        # cannot move has a correlation eigenvalue of rounding's size
        sd = np.sqrt(np.diag(cov))
        if not (sd > 0).all():  # a restriction of zero variance (an exact gaussian fit)
            return ChiSquareTest(math.inf if np.any(diff[sd == 0] != 0) else math.nan, len(R), math.nan)
        eigenvalues = np.linalg.eigvalsh(cov / np.outer(sd, sd))
        df = int(np.sum(eigenvalues > SINGULAR_CORRELATION * eigenvalues.max()))
        if df == len(R):  # in the correlation scale, whatever the coefficients' scales
            z = diff / sd
            statistic = float(z @ np.linalg.solve(cov / np.outer(sd, sd), z))
        else:  # singular: the Moore-Penrose inverse of rank df, as statsmodels' pinv (which cuts by the
            # raw eigenvalues: coefficients on scales 1e-5 and 1e5 would lose a direction there)
            values, vectors = np.linalg.eigh(cov)
            top = np.argsort(values)[::-1][:df]
            z = vectors[:, top].T @ diff
            statistic = float(np.sum(z * z / values[top]))
        return ChiSquareTest(statistic, df, chi2_sf(statistic, df))

    def _restriction_matrix(self, restriction):
        """wald_test's R, (r, k_params), from a matrix or a list of term names."""
        k = self.k_params
        if isinstance(restriction, str):
            restriction = [restriction]
        if isinstance(restriction, (list, tuple)) and any(isinstance(t, str) for t in restriction):
            if not all(isinstance(t, str) for t in restriction):
                raise ValueError(f"the restriction must be term names or a matrix, got a mix: {restriction!r}")
            unknown = [t for t in restriction if t not in self.param_names]
            if unknown:
                raise ValueError(f"unknown terms {unknown}; the fit's are {self.param_names}")
            n_terms = len(self.param_names)
            rows = [k_out * n_terms + self.param_names.index(t) for t in restriction for k_out in
                    range(k // n_terms)]
            return np.eye(k)[sorted(set(rows))]
        R = np.atleast_2d(np.asarray(restriction, dtype=np.float64))
        if R.ndim != 2 or R.shape[1] != k or R.shape[0] == 0:
            raise ValueError(f"the restriction must be term names or a matrix with {k} columns (k_params), "
                             f"got shape {np.shape(restriction)}")
        return R

    def cov_params(self):
        """The asymptotic covariance of params.ravel(order="F"): the inverse
        Fisher information at the estimate times ``scale`` (sigma^2 for
        gaussian, 1 for the others unless fit_mle's ``scale`` chose
        another), or with ``cov_type`` "HC0" to "HC3" or "cluster" the
        sandwich (which needs no scale)."""
        return self._cov.copy()

    def conf_int(self, alpha=0.05):
        """(lower, upper) bounds of the 1 - alpha Wald intervals, each of
        params' shape, stacked on a new last axis (the normal's quantile, or
        Student's t's with use_t)."""
        q = self._quantile(alpha)
        return np.stack([self.params - q * self.bse, self.params + q * self.bse], axis=-1)

    def predict(self, X, *, offset=None, exposure=None, backend=None):
        """The fitted mean of the response at X (n, n_features), as
        statsmodels' ``results.predict(exog, offset=, exposure=)``: the
        probabilities of every class, (n, n_classes) in ``classes`` order
        (the reference class's included), for multinomial; the probability
        of y = 1, y's mean or the Poisson mean, (n,), for the others. X is
        fit_mle's X (no column of ones); ``offset`` and ``exposure`` are
        fit_mle's for these rows (a rate model's expected counts need the
        new rows' exposure).

        >>> import numpy as np, fastmle
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); t = np.array([1.0, 2.0, 4.0, 8.0])
        >>> res = fastmle.fit_mle(X, [1, 3, 9, 25], "poisson", exposure=t)
        >>> res.predict(np.array([[1.0]]), exposure=[10.0]).round(3)
        array([15.205])
        """
        X, total = self._new_rows(X, offset, exposure)
        return self._fitted_mean(X, total, backend)

    def _new_rows(self, X, offset, exposure):
        """(X, offset + log(exposure)) of rows to predict at, checked: X's
        columns are the fit's; a dense X in float64 (scipy.sparse as it
        is); the offset float64 (n,) or empty."""
        names = self.param_names[:self.coef.shape[0]]  # a DataFrame's columns, or x0, x1, ...
        columns = list(map(str, X.columns)) if hasattr(X, "columns") else names
        if columns != names and names != default_names(len(names)):
            raise ValueError(f"X's columns {columns} are not the fit's {names}")
        if not hasattr(X, "tocsr"):  # dense: in the fit's precision (scipy.sparse goes to glm_predict as it is)
            X = real_array(X, "X")
            X = X if X.dtype == np.float64 else X.astype(np.float64)
        if len(X.shape) != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        if X.shape[1] != self.coef.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features; the fit had {self.coef.shape[0]}")
        return X, total_offset(offset, exposure, X.shape[0], self.family)

    def _fitted_mean(self, X, total, backend):
        """predict's mean at checked rows (the backend's kernel)."""
        coef, intercept = self._every_output_params()
        mean = glm_predict(X, coef, self.family, intercept=intercept, offset=total if total.size else None,
                           backend=backend)
        return mean if self.family == "multinomial" else mean[:, 0]

    def _every_output_params(self):
        """(coef (n_features, K), intercept (K,)) of every output, the
        reference class's zeros included."""
        coef, intercept = self.coef.reshape(self.coef.shape[0], -1), self.intercept
        if self.reference_class is not None:
            ref = int(np.flatnonzero(np.asarray(self.classes) == self.reference_class)[0])
            coef, intercept = np.insert(coef, ref, 0.0, axis=1), np.insert(intercept, ref, 0.0)
        return coef, intercept

    def _kept_outputs(self):
        """The indices of the outputs with parameters: [0] for one output;
        multinomial, the classes' but the reference class's."""
        if self.family != "multinomial":
            return [0]
        return [k for k, c in enumerate(self.classes) if self.reference_class is None or c != self.reference_class]

    def get_prediction(self, X, alpha=0.05, *, offset=None, exposure=None, backend=None):
        """The fitted mean at X with its standard error and 1 - alpha
        confidence interval, as statsmodels' GLM ``get_prediction(exog,
        offset=, exposure=).summary_frame(alpha)``: the interval of the
        linear predictor eta, eta +- z se(eta) with se(eta)^2 = xt^T
        cov_params() xt (robust too), mapped through the inverse link (so
        it stays in the mean's range); ``mean_se`` by the delta method.
        With use_t, z is Student's t quantile with df_resid_inference
        degrees of freedom (statsmodels' GLM takes df_resid even for a
        cluster covariance, where its conf_int takes G - 1).
        (statsmodels' GLM estimates a gaussian sigma^2 as RSS / (nobs - k):
        fit_mle's ``scale="X2"``; its default is sigma^2's MLE.)
        Returns ``MeanPrediction(mean, mean_se, mean_ci_lower,
        mean_ci_upper)``, arrays (n,). Dense X.

        For multinomial, arrays (n, n_classes) in ``classes`` order: each
        class's probability, its standard error by the delta method
        through the softmax, and the interval of its log-odds (a binomial
        fit's interval when there are two classes), which statsmodels'
        MNLogit does not compute.

        >>> import numpy as np, fastmle
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); t = np.array([1.0, 2.0, 4.0, 8.0])
        >>> res = fastmle.fit_mle(X, [1, 3, 9, 25], "poisson", exposure=t)
        >>> pred = res.get_prediction(np.array([[1.0]]), exposure=[10.0])
        >>> pred.mean.round(3), pred.mean_ci_lower.round(2), pred.mean_ci_upper.round(2)
        (array([15.205]), array([7.45]), array([31.05]))
        """
        q = self._quantile(alpha)
        refuse_sparse(X, "X", "get_prediction takes")
        X, total = self._new_rows(X, offset, exposure)
        mean = self._fitted_mean(X, total, backend)
        if self.family == "multinomial":
            return self._multinomial_prediction(X, mean, q)
        eta = linear_predictors(X, *self._every_output_params(), total)[:, 0]
        with np.errstate(invalid="ignore"):  # (NaN covariance: NaN intervals)
            se_eta = np.sqrt(np.maximum(row_quadratic_forms(X, self._cov, self.fit_intercept), 0.0))
        with np.errstate(over="ignore"):
            lower, upper = _inverse_link(eta - q * se_eta, self.family), _inverse_link(eta + q * se_eta, self.family)
        # d mu / d eta of the canonical link, from eta (binomial's p (1 - p)
        # from the rounded p had been 0 at eta = 37, and 1e-6 off from 20)
        slope = _mean_derivatives(eta, self.family)[0]
        return MeanPrediction(mean, slope * se_eta, lower, upper)

    def _multinomial_prediction(self, X, p, q):
        """get_prediction for multinomial, through each class's log-odds
        l_k = eta_k - log sum_{j != k} exp(eta_j): d l_k / d eta_a = delta_ka
        - (1 - delta_ka) s_a, s the softmax of the other classes' eta, so
        var(l_k) = sum_ab v_a v_b xt^T C_ab xt over the outputs a, b with
        parameters (C_ab: cov_params()'s block; one quadratic form per
        pair). The interval is l_k +- z se(l_k) mapped back, and se(p_k) =
        p_k (1 - p_k) se(l_k), both formed from l_k, not from the rounded
        p_k (0 far out)."""
        K, D = p.shape[1], self.params.shape[0]
        kept = self._kept_outputs()
        eta = linear_predictors(X, *self._every_output_params(), np.empty(0))
        forms = {}
        for a in range(len(kept)):
            for b in range(a, len(kept)):
                block = self._cov[a * D:(a + 1) * D, b * D:(b + 1) * D]
                forms[a, b] = forms[b, a] = row_quadratic_forms(X, (block + block.T) / 2.0, self.fit_intercept)
        se_log_odds, log_odds = np.empty_like(p), np.empty_like(p)
        for k in range(K):
            others = np.delete(eta, k, axis=1)
            log_sum = np.logaddexp.reduce(others, axis=1)
            share = np.exp(eta - log_sum[:, None])  # s_a for a != k
            v = [np.ones(len(X)) if kept[a] == k else -share[:, kept[a]] for a in range(len(kept))]
            variance = sum(v[a] * v[b] * forms[a, b] for a in range(len(kept)) for b in range(len(kept)))
            with np.errstate(invalid="ignore"):  # (NaN covariance: NaN intervals)
                se_log_odds[:, k] = np.sqrt(np.maximum(variance, 0.0))
            log_odds[:, k] = eta[:, k] - log_sum
        return MeanPrediction(p, _logistic_slope(log_odds) * se_log_odds, _expit(log_odds - q * se_log_odds),
                              _expit(log_odds + q * se_log_odds))

    def get_margeff(self, X, at="overall", alpha=0.05, *, dummy=False, sample_weight=None, offset=None,
                    exposure=None):
        """Marginal effects d E[y] / d x_j of the features, with delta-method
        standard errors, as statsmodels' discrete models'
        ``get_margeff(at, method="dydx")`` (Logit, Poisson, MNLogit): at
        "overall", the average over the rows of X (the fit's X, or other
        rows; ``sample_weight`` weights the average, frequency weights as
        in the fit) of each row's effect; at "mean", the effect at the
        (weighted) mean row, the offset's mean included. For a GLM with
        canonical link the effect of x_j at a row is mu'(eta) beta_j
        (binomial p (1 - p), poisson mu, gaussian 1: beta itself); for
        multinomial, of class k, p_k (beta_kj - sum_l p_l beta_lj), for
        every class (the reference's included). The covariance is J C
        J^T, C = cov_params() (robust too) and J the effects' exact
        Jacobian in the parameters (statsmodels differentiates
        numerically). The offset and exposure enter eta (statsmodels'
        margins leave them out). p-values and intervals are normal, with
        use_t too (as statsmodels': the effects are nonlinear in the
        parameters, the delta method asymptotic). With ``dummy=True`` a
        column of X's rows that holds 0 and 1 only (both) gets the discrete
        change E[y | x_j = 1] - E[y | x_j = 0] instead of the derivative,
        each row's other values kept (at "mean": the mean row's), as
        statsmodels' ``dummy=True``; ``discrete`` names those columns. A
        constant column of X (``constant_columns``, a fit
        without fit_intercept) has no effect reported, as in statsmodels.

        Returns ``MarginalEffects(margeff, margeff_se, margeff_cov, pvalues,
        conf_int_lower, conf_int_upper, names, output_names, at, alpha,
        discrete)``:
        arrays (n_features,), or (n_features, n_classes) in ``classes``
        order for multinomial, less the rows of ``constant_columns`` (every
        constant column: several can only be fitted with alpha > 0, where
        statsmodels leaves out one); margeff_cov is indexed by
        margeff.ravel(order="F"); names the rows, output_names the classes
        (None for one output); ``summary()`` prints them.

        >>> import numpy as np, fastmle
        >>> rng = np.random.default_rng(0)
        >>> X = rng.standard_normal((1000, 2))
        >>> y = (X @ [1.0, -0.5] + rng.logistic(size=1000) > 0).astype(int)
        >>> me = fastmle.fit_mle(X, y, "binomial").get_margeff(X)
        >>> me.margeff.round(3), me.margeff_se.round(3)
        (array([ 0.21 , -0.121]), array([0.011, 0.013]))
        """
        if not (isinstance(at, str) and at in ("overall", "mean")):
            raise ValueError(f"at must be 'overall' (the average effect over X's rows) or 'mean' (the effect at "
                             f"the mean row), got {at!r}")
        q = _normal_quantile(alpha)
        refuse_sparse(X, "X", "get_margeff takes")
        X, total = self._new_rows(X, offset, exposure)
        check_finite(X)
        check_bool("dummy", dummy)
        if not X.shape[0]:
            raise ValueError("get_margeff needs at least one row of X")
        binary = []  # statsmodels' dummies: 0 and 1 only, both present, in the rows given (not a constant)
        if dummy:
            candidates = np.flatnonzero((X.min(axis=0) == 0) & (X.max(axis=0) == 1))
            candidates = candidates[((X[:, candidates] == 0) | (X[:, candidates] == 1)).all(axis=0)]
            binary = [j for j in candidates if j not in self.constant_columns]
        w = as_sample_weight(sample_weight, X.shape[0], np.float64)
        if w.size:  # normalized to sum 1, the largest first (a sum of weights of 1e308 overflows)
            w = w / w.max()
        w = w / w.sum() if w.size else np.full(X.shape[0], 1.0 / X.shape[0])
        if at == "mean":  # one row of weight 1
            X, total, w = (w @ X)[None, :], (np.atleast_1d(w @ total) if total.size else total), np.ones(1)
        effects, J = (self._multinomial_margeff if self.family == "multinomial" else self._margeff)(X, total, w)
        for j in binary:  # the discrete change replaces the derivative
            effects[j], rows = self._discrete_change(X, total, w, j)
            J[j::effects.shape[0]] = rows
        if self.constant_columns:  # no effect for a constant (statsmodels' effects_idx)
            d = effects.shape[0]
            varying = np.setdiff1d(np.arange(d), self.constant_columns)
            effects = effects[varying]
            J = J[(np.arange(J.shape[0] // d)[:, None] * d + varying).ravel()]
        # J C J^T with J's rows scaled to 1 first: a standard error of 1e-170
        # or 1e160 has a variance outside the float range (it had given 0 and inf)
        size = np.abs(J).max(axis=1)
        size[~(size > 0)] = 1.0
        scaled = J / size[:, None]
        cov = scaled @ self._cov @ scaled.T
        cov = (cov + cov.T) / 2.0
        with np.errstate(invalid="ignore"):  # (NaN covariance: NaN standard errors)
            se = (size * np.sqrt(np.maximum(np.diag(cov), 0.0))).reshape(effects.shape, order="F")
        with np.errstate(over="ignore", under="ignore"):
            cov = cov * np.outer(size, size)
        with np.errstate(divide="ignore", invalid="ignore"):
            pvalues = _normal_pvalues(effects / se)
        features = self.param_names[:self.coef.shape[0]]
        names = [name for j, name in enumerate(features) if j not in self.constant_columns]
        outputs = [f"y={c}" for c in self.classes] if self.family == "multinomial" else None
        return MarginalEffects(effects, se, cov, pvalues, effects - q * se, effects + q * se, names, outputs, at,
                               alpha, [features[j] for j in binary])

    def _discrete_change(self, X, total, w, j):
        """(sum_i w_i [mu(eta1_i) - mu(eta0_i)] per output, its Jacobian's
        rows (n_outputs, k_params)): eta1 and eta0 the linear predictors
        with x_j set to 1 and 0; d mu / d theta_at = mu'(eta) xt_t (one
        output), p_k (delta_ka - p_a) xt_t (multinomial), xt_j = 1 or 0.
        Over blocks of rows (the multinomial's weights are K K' per row)."""
        coef, intercept = self._every_output_params()  # (d, K), (K,)
        (d, K), D = coef.shape, self.params.shape[0]
        kept = self._kept_outputs()
        n_outputs = K if self.family == "multinomial" else 1
        change, J = np.zeros(n_outputs), np.zeros((n_outputs * (len(kept) if n_outputs > 1 else 1), D))
        rows = max(1, MARGEFF_BLOCK // max(K * K, d))
        for r0 in range(0, X.shape[0], rows):
            x, wb = X[r0:r0 + rows], w[r0:r0 + rows]
            eta = linear_predictors(x, coef, intercept, total[r0:r0 + rows])
            xj = x[:, j][:, None]
            for sign, value, e in ((1.0, 1.0, eta + (1.0 - xj) * coef[j]), (-1.0, 0.0, eta - xj * coef[j])):
                if self.family == "multinomial":
                    q = softmax_nd(e, (1,))
                    change += sign * (wb @ q)
                    # w p_k (delta_ka - p_a), (rows, K, K') flattened to (rows, K K')
                    c = wb[:, None, None] * q[:, :, None] * (np.eye(K)[:, kept] - q[:, None, kept])
                    c = c.reshape(len(x), -1)
                else:
                    with np.errstate(over="ignore"):
                        change += sign * (wb @ _inverse_link(e[:, 0], self.family))
                    c = (wb * _mean_derivatives(e[:, 0], self.family)[0])[:, None]
                grad = np.empty((c.shape[1], D))  # the sums of c xt over the rows, with xt_j = value
                grad[:, :d] = c.T @ x
                grad[:, j] = value * c.sum(axis=0)
                if self.fit_intercept:
                    grad[:, d] = c.sum(axis=0)
                J += sign * grad
        return (change if n_outputs > 1 else change[0]), J.reshape(n_outputs, -1)

    def _margeff(self, X, total, w):
        """One-output families: (the effects (d,), their Jacobian (d, D)):
        effect_j = sum_i w_i mu'(eta_i) beta_j, so d effect_j / d theta_t =
        sum_i w_i mu'(eta_i) [t = j] + beta_j sum_i w_i mu''(eta_i) xt_it."""
        beta = self.coef
        eta = linear_predictors(X, *self._every_output_params(), total)[:, 0]
        slope, curvature = _mean_derivatives(eta, self.family)
        mean_slope = float(w @ slope)
        effects = mean_slope * beta
        d = len(beta)
        J = np.zeros((d, self.params.shape[0]))
        J[:, :d] = np.eye(d) * mean_slope
        curved = w * curvature
        J[:, :d] += np.outer(beta, curved @ X)
        if self.fit_intercept:
            J[:, d] = beta * curved.sum()
        return effects, J

    def _multinomial_margeff(self, X, total, w):
        """Multinomial: (the effects (d, K), their Jacobian (d K, k_params)).
        With Delta_kl = beta_k - beta_l, effect_k = sum_i w_i p_ik sum_l p_il
        Delta_kl; with d p_ik / d theta_at = p_ik (delta_ka - p_ia) xt_it (a
        an output with parameters, t its term),

            d effect_kj / d theta_at = delta_ka sum_l S_klt Delta_klj
                - sum_l T_kalt (Delta_klj + Delta_alj)
                + [t = j] (delta_ka sum_{l != k} s_kl - (1 - delta_ka) s_ka)

        with the moments S_klt = sum_i w_i p_ik p_il xt_it and T_kalt = sum_i
        w_i p_ik p_ia p_il xt_it (s: S without xt), one pass over X's rows,
        products with X for the feature dimension. Written with the
        differences Delta, nothing cancels when one class's p is near 1
        (beta_kj - sum_l p_l beta_lj lost its digits there). T is symmetric
        in k, a, l: its distinct entries only are summed (a product per pair
        of classes over all rows had taken 2-4x the fit's time)."""
        coef, intercept = self._every_output_params()  # (d, K), (K,): the reference's zeros included
        d, K = coef.shape
        kept = self._kept_outputs()
        D = self.params.shape[0]
        # the triples k <= a <= l, T's distinct entries, and where each of the K^3 (k, a, l) finds its own
        k_, a_, l_ = np.array([(k, a, l) for k in range(K) for a in range(k, K) for l in range(a, K)]).T
        where = np.empty((K, K, K), dtype=np.int64)
        for n, (k, a, l) in enumerate(zip(k_, a_, l_)):
            for order in {(k, a, l), (k, l, a), (a, k, l), (a, l, k), (l, k, a), (l, a, k)}:
                where[order] = n
        s, S, T = np.zeros((K, K)), np.zeros((D, K, K)), np.zeros((D, len(k_)))
        rows = max(1, MARGEFF_BLOCK // max(len(k_), K * K, d))  # (triple, pair, x's transpose: each <= 4 MB)
        for r0 in range(0, X.shape[0], rows):
            x, wb = X[r0:r0 + rows], w[r0:r0 + rows]
            eta = linear_predictors(x, coef, intercept, np.empty(0))  # (multinomial takes no offset)
            p = softmax_nd(eta, (1,))
            single = wb[:, None] * p  # w p_k
            pair = single[:, :, None] * p[:, None, :]  # w p_k p_l
            triple = single[:, k_] * p[:, a_] * p[:, l_]  # w p_k p_a p_l, k <= a <= l
            s += pair.sum(axis=0)
            xT = np.ascontiguousarray(x.T)  # (x.T, a view, had made the products 3.5x slower)
            S[:d] += (xT @ pair.reshape(len(x), -1)).reshape(d, K, K)
            T[:d] += xT @ triple
            if self.fit_intercept:
                T[d] += triple.sum(axis=0)
        if self.fit_intercept:
            S[d] = s
        delta = coef[:, :, None] - coef[:, None, :]  # Delta_kl = beta_k - beta_l, (d, K, K)
        effects = np.einsum("kl,jkl->jk", s, delta)
        J = np.zeros((d * K, len(kept) * D))
        for k in range(K):
            for column, a in enumerate(kept):
                M = -T[:, where[k, a]] @ (delta[:, k, :] + delta[:, a, :]).T  # (D over t, d over j)
                if k == a:
                    M += S[:, k, :] @ delta[:, k, :].T
                block = M.T
                block[:, :d] += np.eye(d) * (np.delete(s[k], k).sum() if k == a else -s[k, a])
                J[k * d:(k + 1) * d, column * D:(column + 1) * D] = block
        return effects, J

    def summary(self, alpha=0.05):
        """A table of the fit: the model's statistics, then one row per
        parameter (coefficient, standard error, z or with use_t t, p-value,
        interval)."""
        lo_hi = self.conf_int(alpha)
        width = TABLE_WIDTH
        method = "penalized maximum likelihood" if self.alpha else "maximum likelihood"
        lines = ["=" * width, f"{'fastmle.fit_mle: ' + self.family + ' GLM (' + method + ')':^{width}}",
                 "=" * width]
        nobs = f"{self.nobs}" if isinstance(self.nobs, int) else f"{self.nobs:.8g}"  # a total weight
        stats = [("No. observations", nobs), ("Log-likelihood", f"{self.llf:.6g}"),
                 ("Parameters", f"{self.k_params}"), ("LL-null", f"{self.llnull:.6g}"),
                 ("Iterations", f"{self.n_iter}"), ("Pseudo R-squ.", f"{self.prsquared:.4f}"),
                 ("Converged", f"{self.converged}"), ("AIC", f"{self.aic:.6g}"),
                 ("L2 penalty", f"{self.alpha:g}"), ("BIC", f"{self.bic:.6g}")]
        stats.append(("Deviance", f"{self.deviance:.6g}"))
        if self.scale_method is not None or self.family == "gaussian":
            how = {None: "sigma^2, MLE", "X2": "Pearson", "dev": "deviance"}.get(self.scale_method, "fixed")
            stats.append((f"Scale ({how})", f"{self.scale:.6g}"))
        stats.append(("LLR p-value", f"{self.llr_pvalue:.4g}"))
        stats.append(("Covariance type", self.cov_type))
        if self.use_t:
            stats.append(("t degrees of freedom", f"{self.df_resid_inference:.8g}"))
        for i in range(0, len(stats), 2):
            row = "".join(f"{k + ':':<21}{v:>17}  " for k, v in stats[i:i + 2])
            lines.append(row.rstrip())
        lines += _estimate_table("coef", "t" if self.use_t else "z", alpha, self.param_names, self.output_names,
                                 self.params, self.bse, self.zvalues, self.pvalues, lo_hi[..., 0], lo_hi[..., 1])
        return "\n".join(lines)

    def __repr__(self):
        return (f"MLEResult(family={self.family!r}, nobs={self.nobs}, llf={self.llf:.6g}, "
                f"n_iter={self.n_iter}, converged={self.converged})")


def check_interval_level(alpha):
    """alpha of a 1 - alpha interval: a number in (0, 1)."""
    if not (is_real_number(alpha) and 0 < alpha < 1):
        raise ValueError(f"alpha (the intervals' level is 1 - alpha) must be a number in (0, 1), got {alpha!r}")


def _normal_quantile(alpha):
    """z of a two-sided 1 - alpha interval, alpha checked."""
    check_interval_level(alpha)
    return _NORMAL.inv_cdf(1.0 - alpha / 2.0)


def _normal_pvalues(z):
    """Two-sided p-values of z statistics (an array)."""
    return np.vectorize(lambda v: math.erfc(abs(v) / math.sqrt(2.0)), otypes=[float])(z)


def _expit(e):
    """1 / (1 + exp(-e)) without overflow."""
    return np.exp(-np.logaddexp(0.0, -e))


def _logistic_slope(e):
    """p (1 - p) at p = expit(e), from e (the rounded p loses it far out)."""
    t = np.exp(-np.abs(e))
    return t / ((1.0 + t) * (1.0 + t))


def linear_predictors(X, coef, intercept, total):
    """eta = X coef + intercept (+ the offset, when not empty), (n, K): every
    output's linear predictor at rows of X."""
    return X @ coef + intercept + (total[:, None] if total.size else 0.0)


def _inverse_link(eta, family):
    """The one-output families' mean from the linear predictor (canonical links)."""
    return {"gaussian": lambda e: e, "poisson": np.exp, "binomial": _expit}[family](eta)


def _mean_derivatives(eta, family):
    """(mu'(eta), mu''(eta)) of the canonical inverse link, from eta:
    binomial p (1 - p) (from eta: the rounded p gives 0 far out) and p (1 -
    p) (1 - 2 p), 1 - 2 p = -tanh(eta / 2); poisson mu twice; gaussian 1
    and 0."""
    if family == "binomial":
        slope = _logistic_slope(eta)
        return slope, -slope * np.tanh(0.5 * eta)
    if family == "poisson":
        mu = np.exp(eta)
        return mu, mu
    return np.ones_like(eta), np.zeros_like(eta)


class MarginalEffects(NamedTuple):
    """MLEResult.get_margeff's arrays, named as statsmodels' DiscreteMargins',
    the features' names (rows), the classes' (columns, multinomial), and
    how they were computed."""
    margeff: np.ndarray
    margeff_se: np.ndarray
    margeff_cov: np.ndarray
    pvalues: np.ndarray
    conf_int_lower: np.ndarray
    conf_int_upper: np.ndarray
    names: list
    output_names: Optional[list]
    at: str
    alpha: float
    discrete: list  # the columns given the discrete change 0 -> 1 (dummy=True)

    def summary(self):
        """A table of the effects, as statsmodels' DiscreteMargins.summary()."""
        width = TABLE_WIDTH
        title = f"fastmle marginal effects, dy/dx at {'the mean' if self.at == 'mean' else 'every row, averaged'}"
        with np.errstate(divide="ignore", invalid="ignore"):
            z = self.margeff / self.margeff_se
        discrete = [f"discrete change 0 -> 1 for {', '.join(self.discrete)}"] if self.discrete else []
        return "\n".join(["=" * width, f"{title:^{width}}"] + discrete + _estimate_table(
            "dy/dx", "z", self.alpha, self.names, self.output_names, self.margeff, self.margeff_se, z, self.pvalues,
            self.conf_int_lower, self.conf_int_upper))


TABLE_WIDTH = 78  # summary()'s characters per line


def _estimate_table(estimate, statistic, alpha, names, output_names, *columns):
    """summary()'s lines of estimates: one block per output (its name
    first, when there are several), one row per name with the columns
    (estimate, std err, statistic, p-value, lower, upper), each (rows,) or
    (rows, outputs)."""
    q = 100 * alpha / 2
    width = TABLE_WIDTH
    header = (f"{'':<16}{estimate:>11}{'std err':>11}{statistic:>9}{f'P>|{statistic}|':>8}"
              f"{f'[{q:.3g}%':>11}{f'{100 - q:.4g}%]':>11}")
    columns = [np.asarray(c).reshape(len(names), -1) for c in columns]
    lines = []
    for k in range(columns[0].shape[1]):
        lines.append("-" * width)
        if output_names is not None:
            lines.append(f"{output_names[k]}")
        lines.append(header)
        for j, name in enumerate(names):
            value, se, stat, p, lo, hi = (c[j, k] for c in columns)
            lines.append(f"{name[:15]:<16}{value:>11.4g}{se:>11.4g}{stat:>9.3f}{p:>8.3f}{lo:>11.4g}{hi:>11.4g}")
    lines.append("=" * width)
    return lines


class MeanPrediction(NamedTuple):
    """MLEResult.get_prediction's arrays, named as statsmodels' summary_frame's columns."""
    mean: np.ndarray
    mean_se: np.ndarray
    mean_ci_lower: np.ndarray
    mean_ci_upper: np.ndarray


class ChiSquareTest(NamedTuple):
    """A test's statistic, its chi-square's degrees of freedom and its p-value."""
    statistic: float
    df: int
    pvalue: float


class FTest(NamedTuple):
    """An F test: the statistic, the numerator's and the denominator's
    degrees of freedom, the p-value."""
    statistic: float
    df_num: int
    df_denom: float
    pvalue: float


def _scipy_stats(option):
    """scipy.stats, for Student's t and F (scipy is an optional dependency;
    fit_mle asks for it before fitting when use_t is set)."""
    try:
        import scipy.stats
    except ImportError as exc:
        raise ImportError(f"{option}=True needs scipy (Student's t and F distributions): pip install "
                          f"'fastmle[stats]' or scipy") from exc
    return scipy.stats


def chi2_sf(x, df):
    """P(chi-square with df degrees of freedom > x), df a positive integer:
    the regularized upper incomplete gamma Q(df / 2, x / 2) in closed form,
    a sum of positive terms (each from logarithms, so none overflows): for
    even df, exp(-x/2) sum_{j < df/2} (x/2)^j / j!; for odd df, erfc(sqrt(x
    / 2)) plus exp(-x/2) sum_{j = 1}^{(df-1)/2} (x/2)^(j - 1/2) / Gamma(j +
    1/2). (scipy.stats.chi2.sf, which the tests compare, is not a
    dependency.)"""
    if math.isnan(x) or df < 1:
        return math.nan
    half = 0.5 * x
    if half <= 0.0:  # (x <= 0, or so small that x / 2 underflows)
        return 1.0
    if math.isinf(x):
        return 0.0
    log_half = math.log(half)
    if df % 2 == 0:
        return math.fsum(math.exp(j * log_half - half - math.lgamma(j + 1)) for j in range(df // 2))
    return math.erfc(math.sqrt(half)) + math.fsum(
        math.exp((j - 0.5) * log_half - half - math.lgamma(j + 0.5)) for j in range(1, (df + 1) // 2))


def weighted_sum(w, x):
    """sum_i w_i x_i over the samples (w empty: all ones), off the BLAS:
    OpenBLAS runs a long dot product on its threads, which then spin for
    about 0.1 s and take a core from the kernels that follow (a
    200,000-sample ddot before the exact Fisher made it 1.6-2.2x slower on
    2 cores). The response's sums come before fitting's _blas.one_thread
    block, and run in dask's chunks."""
    return float(np.sum(w * x if w.size else x))


def response_stats(family, labels, targets, w, n_classes):
    """The weighted sums of the response that the null model, the starting
    point and the log-likelihood's constants need; they add up over chunks
    of samples (fastmle.dask sums them). W: total weight; counts: per class
    (multinomial); sy, syy: sums of w y and w y^2; m2: sum of w (y - mean)^2
    about the weighted mean (syy / W - mean^2 cancels: y = 1e8 + noise had
    lost every digit of the null model's variance); s1y: sum of w (1 - y),
    exactly 0 when every weighted binomial y is 1; slg: sum of w log(y!)
    (poisson); sylogy: sum of w y log y (poisson, for the deviance); rows:
    the number of samples of positive weight."""
    n = len(labels) if family == "multinomial" else len(targets)
    weights = w.astype(np.float64) if w.size else np.ones(n)
    stats = {"W": float(weights.sum()), "counts": np.zeros(n_classes), "sy": 0.0, "syy": 0.0, "m2": 0.0,
             "s1y": 0.0, "slg": 0.0, "sylogy": 0.0, "rows": int(np.count_nonzero(weights))}
    if family == "multinomial":
        stats["counts"] = np.bincount(labels, weights=weights, minlength=n_classes)
        return stats
    y = targets[:, 0].astype(np.float64)
    stats["sy"], stats["syy"], stats["s1y"] = weighted_sum(weights, y), weighted_sum(weights, y * y), weighted_sum(
        weights, 1 - y)
    if stats["W"] > 0:
        centred = y - stats["sy"] / stats["W"]
        stats["m2"] = weighted_sum(weights, centred * centred)
    if family == "poisson":
        stats["slg"], stats["sylogy"] = _weighted_count_sums(y, weights)
    return stats


def _weighted_count_sums(y, weights):
    """(sum w log(y!), sum w y log y) through y's distinct values: a
    bincount for whole counts up to 2^20 (1 ms for 200,000 samples;
    np.unique's sort took 16), else np.unique."""
    if y.size and y.max() <= 1 << 20 and np.array_equal(counts := y.astype(np.int64), y):
        weight_of = np.bincount(counts, weights=weights)
        values = np.flatnonzero(weight_of)
        weight_of = weight_of[values]
    else:
        values, inverse = np.unique(y, return_inverse=True)
        weight_of = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(values))
    values = values.astype(np.float64)
    log_factorials = np.array([math.lgamma(v + 1.0) for v in values])
    y_log_y = values * np.log(np.where(values > 0, values, 1.0))
    return float(weight_of @ log_factorials), float(weight_of @ y_log_y)


def add_stats(a, b):
    """The response_stats of two parts of the samples together."""
    merged = {k: a[k] + b[k] for k in a}
    if a["W"] > 0 and b["W"] > 0:  # each m2 is about its own part's mean (Chan et al.'s pairwise update)
        delta = b["sy"] / b["W"] - a["sy"] / a["W"]
        merged["m2"] += delta * delta * (a["W"] * b["W"] / merged["W"])
    return merged


def _null_loglik(family, stats):
    """The log-likelihood of the intercept-only model (closed forms), weighted."""
    W = stats["W"]
    if family == "multinomial":
        counts = stats["counts"]
        nz = counts[counts > 0]
        return float(np.sum(nz * np.log(nz / W)))
    mean = stats["sy"] / W
    if family == "binomial":
        return float(sum(c * math.log(c / W) for c in (stats["sy"], W - stats["sy"]) if c > 0))
    if family == "poisson":
        ylogmu = stats["sy"] * math.log(mean) if mean > 0 else 0.0
        return ylogmu - W * mean - stats["slg"]
    var = stats["m2"] / W
    return -0.5 * W * (math.log(2 * math.pi * var) + 1.0) if var > 0 else math.inf


class _Objective:
    """The fit's objective f(theta) = sum_i w_i nll_i + alpha / 2 |coef|^2
    (intercepts unpenalized), theta being (K', D), with its gradient and
    Fisher information, and what the inference needs. The data live in a
    subclass, which supplies the sums over samples: _loss_grad(params),
    _fisher(params), _gram() and _saturated(params), with params in the
    kernels' (K, d + 1) layout (this module's in-memory _Problem, and
    fastmle.dask's chunked one)."""

    def __init__(self, family, classes, reference_class, alpha, fit_intercept, n, d, stats, has_offset=False):
        self.ref = None
        self.has_offset, self._null = has_offset, None  # (an offset of binomial or poisson)
        self._gram_diag = self._gaussian_fisher = None
        self.cov_type = "nonrobust"  # fit_mle's cov_type (the standard errors' covariance)
        self.dispersion = None  # fit_mle's scale: None (the family's), "X2", "dev" or a number
        self.use_t = False  # fit_mle's use_t: Student's t and F for the tests and intervals
        self.constant_columns = []  # X's constant nonzero columns, without fit_intercept (the subclass looks)
        if family == "multinomial":
            K = len(classes)
            if K < 2:
                raise ValueError("multinomial y needs at least two classes")
            if reference_class is not None:
                found = np.flatnonzero(classes == reference_class) if np.ndim(reference_class) == 0 else []
                if len(found) != 1:
                    raise ValueError(f"reference_class {reference_class!r} is not one of the classes of y "
                                     f"{classes.tolist()}")
                self.ref = int(found[0])
            elif alpha == 0:
                raise ValueError("the symmetric softmax parameterization (one coefficient vector per class) is "
                                 "not identifiable: its Fisher information is singular. Pass reference_class "
                                 "(a class label whose coefficients are fixed at 0) or alpha > 0")
        elif reference_class is not None:
            raise ValueError(f"reference_class is for the multinomial family, not {family!r}")
        else:
            K = 1
        self.family, self.classes, self.K = family, classes, K
        check_bool("fit_intercept", fit_intercept)
        self.alpha, self.fit_intercept = float(alpha), bool(fit_intercept)
        self.n, self.d, self.stats, self.W = n, d, stats, stats["W"]
        if n == 0 or self.W == 0:
            raise ValueError("fit_mle needs at least one sample with positive weight")
        if self.fit_intercept or not alpha > 0:  # else the penalty keeps the estimate finite
            # an estimate at infinity, found before iterating towards it (the
            # reports had blamed separation or the conditioning, or returned
            # an intercept of -103 with standard errors of 1e21)
            if family == "multinomial" and not (stats["counts"] > 0).all():
                empty = np.asarray(classes)[int(np.argmin(stats["counts"] > 0))].tolist()
                raise ValueError(f"class {empty!r} has zero total weight: its fitted probability would be 0 "
                                 "(parameters at -inf, so the MLE does not exist); drop it or weigh its samples")
            if family == "binomial" and self.fit_intercept and (stats["sy"] == 0 or stats["s1y"] == 0):
                value = int(stats["sy"] > 0)
                raise ValueError(f"binomial y is {value} for every sample with weight: the fitted probability "
                                 f"would be {value} (the intercept at {'+' if value else '-'}inf, so the MLE does "
                                 f"not exist)")
            if family == "poisson" and stats["sy"] == 0:
                raise ValueError("poisson y is 0 for every sample with weight: the fitted mean would be 0 "
                                 "(the MLE does not exist)")
        self.D = d + self.fit_intercept
        self.Kp = K - (self.ref is not None)
        self.code = family_code(family)
        self.keep = [k for k in range(K) if k != self.ref]
        # a penalty on the sum of the intercepts, which the symmetric softmax
        # likelihood does not see: fixes that direction at sum zero
        self.center = family == "multinomial" and self.ref is None and self.fit_intercept

    def kernel_params(self, theta):
        params = np.zeros((self.K, self.d + 1))
        params[self.keep, :self.D] = theta
        return params

    def objective(self, theta):
        """(f, gradient (K', D)) at theta."""
        loss, grad = self._loss_grad(self.kernel_params(theta))
        g = grad[self.keep, :self.D].copy()
        g[:, :self.d] += self.alpha * theta[:, :self.d]
        if self.center:
            g[:, self.d] += self._center_weight() * theta[:, self.d].sum()
        return loss + self.penalty(theta), g

    def penalty(self, theta):
        """The objective's terms beyond the negative log-likelihood."""
        value = 0.5 * self.alpha * float(np.sum(theta[:, :self.d] ** 2))
        if self.center:
            value += 0.5 * self._center_weight() * float(theta[:, self.d].sum()) ** 2
        return value

    def _center_weight(self):
        return self.W / self.K

    def fisher(self, theta, likelihood_fisher=None):
        """The (P, P) information of the objective: exact Fisher + penalties
        (the Fisher part given, or computed at theta)."""
        F = self.fisher_of_likelihood(theta) if likelihood_fisher is None else likelihood_fisher.copy()
        P = self.Kp * self.D
        idx = np.arange(P).reshape(self.Kp, self.D)
        if self.alpha:
            F[idx[:, :self.d].ravel(), idx[:, :self.d].ravel()] += self.alpha
        if self.center:
            ints = idx[:, self.d]
            F[np.ix_(ints, ints)] += self._center_weight()
        return F

    def fisher_of_likelihood(self, theta):
        """The (P, P) exact Fisher of the likelihood alone at theta."""
        if self.family != "gaussian":
            return self._fisher(self.kernel_params(theta))
        # gaussian: X^T W X, the same at every theta: one pass for the fit
        # (it had been recomputed after the first step and at the estimate)
        if self._gaussian_fisher is None:
            self._gaussian_fisher = self._fisher(self.kernel_params(theta))
        return self._gaussian_fisher.copy()

    def start(self):
        """Coefficients 0, intercepts at the intercept-only model's MLE."""
        theta = np.zeros((self.Kp, self.D))
        if not self.fit_intercept:
            return theta
        if self.has_offset:
            intercept, b0 = self._null_fit()[1:]
            theta[0, self.d] = intercept or 0.0
            # A poisson intercept-only fit is set by the largest exp(offset): one
            # offset of 60 among zeros put every other mean near e^-60 (the
            # information's rank at 1 was reported as separation). Then the null
            # fit's own start, b0 = log(mean y) - mean offset, which keeps a
            # typical sample at y's mean (always taking it cost the rate
            # benchmark an iteration).
            if self.family == "poisson" and intercept is not None and self.saturated(theta):
                theta[0, self.d] = b0
            return theta
        if self.family == "multinomial":
            logf = np.log(np.maximum(self.stats["counts"] / self.W, 1e-12))
            base = logf[self.ref] if self.ref is not None else logf.mean()
            theta[:, self.d] = (logf - base)[self.keep]
        else:
            mean = self.stats["sy"] / self.W
            if self.family == "binomial":
                mean = min(max(mean, 1e-12), 1 - 1e-12)
                theta[0, self.d] = math.log(mean / (1 - mean))
            elif self.family == "poisson":
                theta[0, self.d] = math.log(max(mean, 1e-12))
            else:
                theta[0, self.d] = mean
        return theta

    def design_rank_problem(self, names, start_fisher=None):
        """None, or a sentence naming collinear / constant columns of the
        design (with the intercept's column of ones), found from the
        correlation-scaled Gram matrix G of the weighted design.

        start_fisher, the likelihood's Fisher at start() (coefficients 0),
        saves the pass over X that G costs when it settles the answer: its
        first output's block is sum_i w_i v_i xt_i xt_i^T, v_i the variance
        at the start, so m G <= block <= M G (m, M: the least and largest
        v_i) and the least eigenvalue of G's correlation is at least that of
        the block's times m / M. Without an offset every v_i is equal (the
        block is a multiple of G: the same correlation); a bound that does
        not clear the threshold twice over computes G."""
        threshold = 1e-10 * self.D
        if start_fisher is not None:
            spread = self.start_variance_spread()
            block = start_fisher[:self.D, :self.D]
            diag = np.diag(block).copy()
            if spread > 0 and (diag > 0).all() and _least_correlation_eigenvalue(block, diag) * spread > 2 * threshold:
                if spread == 1 and self.fit_intercept:  # block = v G, and G's intercept entry is W
                    self._gram_diag = diag / (diag[self.d] / self.W)
                return None
        gram = self._gram()
        diag = np.diag(gram).copy()
        self._gram_diag = diag  # kept for the separation check at the estimate
        zero = np.flatnonzero(diag <= 0)
        if zero.size:
            return f"column {names[zero[0]]!r} is zero for every sample with positive weight"
        least = _least_correlation_eigenvalue(gram, diag)
        if math.isnan(least):  # not a rank to name: the information cannot be formed
            huge = np.flatnonzero(~np.isfinite(diag))
            where = f"column {names[huge[0]]!r}" if huge.size else "a column"
            raise SingularFisherError(f"the Fisher information overflows double precision: the weighted sum of "
                                      f"squares of {where} is not finite. Rescale the features")
        if least > threshold:
            return None
        vals, vecs = np.linalg.eigh(_correlation(gram, diag))
        v = vecs[:, 0] / np.abs(vecs[:, 0]).max()
        involved = [names[j] for j in np.flatnonzero(np.abs(v) > 1e-3)]
        hint = ("; a column whose mean is large against its spread is nearly collinear with the intercept: centre "
                "it" if self.fit_intercept and len(involved) == 2 and names[self.d] in involved else "")
        return (f"columns {', '.join(map(repr, involved))} are collinear or nearly so (a linear combination of "
                f"them is zero or within rounding of it: smallest eigenvalue of their correlation {vals[0]:.2g}, "
                f"below {threshold:.1g}){hint}")

    def implicit_constant(self):
        """Without fit_intercept and a constant column: whether the column
        of ones lies in the span of X's columns (statsmodels' implicit
        constant, as a full set of dummies): the weighted least squares of
        1 on X, in the correlation scale, leaves a residual sum of squares
        W - v^T G^-1 v (v = X^T w, G = X^T W X) within IMPLICIT_CONSTANT of
        W. G costs a pass over X (no fit needs it otherwise), after
        ones_in_sample_span's sample has not ruled the constant out."""
        if self.fit_intercept or self.constant_columns or not self.ones_in_sample_span():
            return False
        gram = self._gram()
        scale = np.sqrt(np.diag(gram))
        if not (scale > 0).all():
            return False
        z = self.weighted_column_sums() / scale
        try:
            explained = float(z @ np.linalg.solve(gram / np.outer(scale, scale), z))
        except np.linalg.LinAlgError:
            return False
        return self.W - explained <= IMPLICIT_CONSTANT * self.W

    def ones_in_sample_span(self):
        """False when rows of X show that the column of ones is not in the
        span of X's columns (a necessary condition: what holds over all the
        rows holds over some); True when they cannot tell (fastmle.dask's
        chunks, whose G comes with their first pass anyway)."""
        return True

    def weighted_column_sums(self):
        """sum_i w_i x_i over the samples (d,), without fit_intercept."""
        raise NotImplementedError

    @property
    def gram_diag(self):
        """The diagonal of the weighted design's Gram matrix (the separation
        check's scale), from design_rank_problem or one pass over X."""
        if self._gram_diag is None:
            self._gram_diag = np.diag(self._gram()).copy()
        return self._gram_diag

    def start_variance_spread(self):
        """m / M, the least over the largest variance of a sample of positive
        weight at start() (its coefficients are 0), or 0 when not known: 1
        without an offset (every linear predictor is the intercept)."""
        return 0.0 if self.has_offset else 1.0

    def null_loglik(self):
        """The log-likelihood of the intercept-only model (with the offset,
        as statsmodels' llnull)."""
        return self._null_fit()[0] if self.has_offset else _null_loglik(self.family, self.stats)

    def _null_fit(self):
        """With an offset: (log-likelihood, intercept, its fit's start b0)
        of the intercept-only model, fitted once; the intercepts are None when
        its MLE does not exist (every binomial y equal, every poisson y 0),
        whose supremum, 0, the closed form gives."""
        if self._null is None:
            st = self.stats
            if st["sy"] == 0 or (self.family == "binomial" and st["s1y"] == 0):
                self._null = (_null_loglik(self.family, st), None, None)
            else:
                loglik, intercept, b0 = intercept_only_fit(self.family, st, self._intercept_only_sums)
                self._null = (loglik - st["slg"], intercept, b0)
        return self._null

    def saturated(self, theta):
        """How many samples have a fitted probability within 1e-8 of 0 or 1
        (for Poisson, a fitted mean within 1e-8 of 0)."""
        return self._saturated(self.kernel_params(theta))


def _correlation(gram, diag):
    """The correlation scaling of a symmetric matrix with positive diagonal
    diag, one factor 1 / sqrt(diag) at a time (outer(diag, diag) had
    underflowed for a column of scale 1e-90), or None when it is not finite
    (a diagonal that overflowed)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = 1.0 / np.sqrt(diag)
        corr = gram * s[:, None] * s[None, :]
    return corr if np.isfinite(corr).all() else None


def _least_correlation_eigenvalue(gram, diag):
    """The least eigenvalue of gram's correlation, NaN when that is not
    finite (eigenvalues only: the vectors name the columns of a singular
    design)."""
    corr = _correlation(gram, diag)
    return math.nan if corr is None else float(np.linalg.eigvalsh(corr)[0])


def saturated_count(mu, family):
    """Samples (rows of mu, (n, K)) with some fitted probability within 1e-8
    of 0 or 1, or for Poisson a fitted mean within 1e-8 of 0."""
    at_limit = mu < 1e-8 if family == "poisson" else (mu < 1e-8) | (mu > 1 - 1e-8)
    return int(np.sum(np.any(at_limit, axis=1)))


class _Problem(_Objective):
    """fit_mle's data in memory, in the kernels' layout."""

    def __init__(self, X, y, family, fit_intercept, reference_class, alpha, sample_weight, backend, offset=None,
                 exposure=None, groups=None):
        refuse_sparse(X, "X", "fit_mle takes")
        X = real_array(X, "X")
        converted = X.dtype.kind in "biuf" and X.dtype != np.float64
        if converted:
            X = X.astype(np.float64)  # inference needs double: one copy
        X, copied = as_design_matrix(X)
        self.copied_X = converted or copied
        self.backend = _dispatch.resolve(backend)
        # validate X and the weights once (GLMModel), then the response
        probe = GLMModel(X, np.zeros((X.shape[1], 1)), "gaussian", None, fit_intercept, sample_weight)
        self.X, self.w = probe.X, probe.sample_weight
        n = self.X.shape[0]
        self.labels, self.targets, classes = encode_response(y, family, n, np.float64)
        if family != "multinomial" and self.targets.shape[1] != 1:
            raise ValueError(f"fit_mle fits one response; y has shape {np.shape(y)}")
        self.targets, self.offset = offset_response(family, self.targets, total_offset(offset, exposure, n, family))
        codes = cluster_codes(groups, n)
        kept = positive_weight_rows(self.w, self.X, self.labels, self.targets, self.offset, codes)
        if kept[0] is not self.w:  # one copy of the rows that count
            self.w, self.X, self.labels, self.targets, self.offset, codes = kept
            self.copied_X, n = True, self.X.shape[0]
        if groups is not None:
            self.cluster, self.n_clusters = renumbered(codes)
            if self.n_clusters < 2:
                raise ValueError(f"cov_type='cluster' needs at least 2 clusters among the samples of positive "
                                 f"weight, got {self.n_clusters}")
        K = len(classes) if family == "multinomial" else 1
        super().__init__(family, classes, reference_class, alpha, fit_intercept, n, self.X.shape[1],
                         response_stats(family, self.labels, self.targets, self.w, K),
                         kernel_offset(family, offset, exposure))
        self.glm = _dispatch.kernels(self.backend, "glm")
        self.fisher_kernels = _dispatch.kernels(self.backend, "fisher")
        if not self.fit_intercept:  # (the rows of weight 0 were dropped above)
            self.constant_columns = ConstantColumns(self.X).indices()

    def ones_in_sample_span(self):
        # least squares of 1 on 2 d + 64 evenly spaced rows (of positive
        # weight: the others were dropped), each column scaled to at most 1
        # (a column of 1e14 had hidden the dummies from lstsq's cutoff); the
        # pass for G had cost 14 ms of a 53 ms fit (200,000 x 30) without an
        # intercept, whatever X held
        n, d = self.X.shape
        rows = self.X[::max(1, n // (2 * d + 64))]
        size = np.abs(rows).max(axis=0)
        rows = rows / np.where(size > 0, size, 1.0)
        b = np.linalg.lstsq(rows, np.ones(len(rows)), rcond=None)[0]
        residual = rows @ b - 1.0
        return float(residual @ residual) <= IMPLICIT_CONSTANT * len(rows)

    def weighted_column_sums(self):
        return column_sums(self.X, self.w)

    def _loss_grad(self, params):
        loss, grad = np.zeros(1), np.empty_like(params)
        self.glm.glm_loss_grad(self.X, self.labels, self.targets, self.w, params, self.offset, self.code, loss,
                               grad)
        return float(loss[0]), grad

    def _fisher(self, params):
        P = self.Kp * self.D
        F = np.zeros((P, P))
        self.fisher_kernels.glm_fisher(self.X, params, self.offset, self.code, self.w, int(self.fit_intercept),
                                       -1 if self.ref is None else self.ref, F)
        return _symmetric(F)

    def _gram(self):
        return weighted_gram(self.fisher_kernels, self.X, self.w, self.fit_intercept)

    def score_outer_sum(self, params, leverage=None):
        return score_outer_sum(self.glm, self.fisher_kernels, self.X, self.labels, self.targets, self.w, params,
                               self.offset, self.family, self.fit_intercept, self.keep, leverage)

    def fit_statistics(self, params):
        return fit_statistics(fitted_means(self.glm, self.X, params, self.offset, self.family), self.targets, self.w,
                              self.family)

    def cluster_score_sums(self, params):
        return cluster_score_sums(self.glm, self.X, self.labels, self.targets, self.w, params, self.offset,
                                  self.family, self.fit_intercept, self.keep, self.cluster, self.n_clusters)

    def _saturated(self, params):
        return saturated_count(fitted_means(self.glm, self.X, params, self.offset, self.family), self.family)

    def _intercept_only_sums(self, b):
        return intercept_only_sums(self.family, self.targets[:, 0], self.w, self.offset, b)

    def start_variance_spread(self):
        if not (self.has_offset and self.family == "poisson"):
            return super().start_variance_spread()
        # mu_i = exp(intercept + offset_i): m / M = exp(min offset - max offset), over the
        # samples of positive weight (the only ones __init__ keeps)
        return math.exp(float(self.offset.min()) - float(self.offset.max())) if self.offset.size else 0.0


class ConstantColumns:
    """Each column's value where it is constant and nonzero over some rows,
    NaN where it varies or is 0; ``+`` combines two parts of the rows
    (fastmle.dask's chunks).
    A constant nonzero column is an intercept in X (statsmodels'
    k_constant). Only the columns equal to the first row's nonzero value
    over the first PROBE rows are read further, block by block until none
    is left: a min and a max over every column had taken 13 ms of a 46 ms
    fit (200,000 x 30)."""

    PROBE, BLOCK = 64, 4096

    def __init__(self, X):
        self.empty = len(X) == 0  # (no rows: the sum's identity)
        self.values = np.full(X.shape[1], np.nan)
        if self.empty:
            return
        first = X[0]
        candidates = np.flatnonzero((X[:self.PROBE] == first).all(axis=0) & (first != 0))
        for start in range(self.PROBE, len(X), self.BLOCK):
            if not candidates.size:
                break
            candidates = candidates[(X[start:start + self.BLOCK, candidates] == first[candidates]).all(axis=0)]
        self.values[candidates] = first[candidates]

    def __add__(self, other):
        if self.empty or other.empty:
            return other if self.empty else self
        merged = ConstantColumns(self.values[None, :])  # one row: constant where self is
        merged.values[self.values != other.values] = np.nan  # (and NaN != NaN stays NaN)
        return merged

    def indices(self):
        """The columns constant and nonzero over the rows (a list)."""
        return np.flatnonzero(self.values == self.values).tolist()  # (not NaN: constant, nonzero by construction)


def column_sums(X, w):
    """sum_i w_i x_i (d,) (w empty: all ones)."""
    return w @ X if w.size else X.sum(axis=0)


def cluster_codes(groups, n):
    """Each sample's cluster label as a code 0, 1, ... (None: no groups),
    checked."""
    if groups is None:
        return None
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {labels.shape}")
    if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
        raise ValueError("groups contains NaN or infinity")
    if labels.dtype.kind == "O" and np.any(labels != labels):  # a NaN among objects: np.unique mis-sorts it
        raise ValueError("groups contains NaN")
    try:
        return renumbered(labels)[0]
    except TypeError as exc:  # e.g. None among strings
        raise ValueError(f"groups must be labels of one sortable type: {exc}") from exc


def renumbered(labels):
    """(codes 0 .. G - 1 in the labels' sorted order, G)."""
    values, codes = np.unique(labels, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), len(values)


def positive_weight_rows(w, *arrays):
    """(w, *arrays) without the samples of weight 0, or the same objects when
    every weight is positive (w empty: all ones; an empty array, or None,
    stays as it is).
    The kernels evaluate every row they are given, and a linear predictor
    that overflows on a row of weight 0 made its term 0 * inf = NaN."""
    if not w.size or w.all():
        return (w, *arrays)
    kept = np.flatnonzero(w)
    return (w[kept], *(a[kept] if a is not None and len(a) else a for a in arrays))


def intercept_only_sums(family, y, w, offset, b):
    """(log-likelihood without its constants, score, information, sum w
    offset) of the model eta_i = b + offset_i (poisson or binomial), summed
    with weights w (empty: all ones, the kernels' convention) over these
    samples (they add up over chunks). Samples of weight 0 are left out (an
    offset of 720 there had made 0 * inf = NaN)."""
    w, y, offset = positive_weight_rows(w, y, offset)
    eta = b + offset
    with np.errstate(over="ignore", invalid="ignore"):  # beyond the range: the caller's error
        if family == "poisson":
            mu = np.exp(eta)
            loglik, variance = weighted_sum(w, y * eta - mu), mu
        else:  # the sigmoid and p (1 - p) from eta: no overflow, no 1 - p rounded to 0
            mu, variance = _expit(eta), _logistic_slope(eta)
            loglik = weighted_sum(w, y * eta - np.logaddexp(0.0, eta))
        return loglik, weighted_sum(w, y - mu), weighted_sum(w, variance), weighted_sum(w, offset)


def intercept_only_fit(family, stats, sums):
    """(log-likelihood without its constants, intercept, b0) of the
    intercept-only model with an offset, from sums(b), intercept_only_sums over all
    the samples, and the response_stats (sy > 0). Both start from b0 =
    link(y's mean) - the offset's mean, exact for a constant offset (from b
    = 0, an offset of 30 took 74 passes over the data, halving its steps, and
    one of 40 gave p(1 - p) = 0 and a wrong null model). Poisson then has a
    closed form, b = b0 + log(sy / sum w exp(b0 + offset)), that sum taken
    near the data's scale (at b = 0 it had lost offsets near -745 to
    subnormals); binomial takes Newton steps on its one parameter (its
    log-likelihood is concave), a step that lowers it halved."""
    sy, W = stats["sy"], stats["W"]
    mean = sy / W
    b = b0 = (math.log(mean) if family == "poisson" else math.log(mean / (1.0 - mean))) - sums(0.0)[3] / W
    if family == "poisson":
        total = sums(b)[2]
        if not 0.0 < total < math.inf:
            raise ValueError(f"sum of w exp(intercept + offset) is {total:g} in double precision at the intercept "
                             f"{b:.6g}: the offset (or log exposure) spreads too widely for its exponential (more "
                             f"than about 700 from its weighted mean)")
        b += math.log(sy) - math.log(total)
        # a second pass, not f moved by the shift: f holds -total, which one
        # offset of 30 among zeros made large enough to round llnull away
        return sums(b)[0], b, b0
    f, g, h, _ = sums(b)
    for _ in range(CONFIRM_ITER):
        step = g / h if h > 0 else 0.0
        while step:
            f_new, g_new, h_new, _ = sums(b + step)
            if f_new >= f:
                break
            step *= 0.5
            if abs(step) < 1e-15 * max(1.0, abs(b)):
                step = 0.0
        if not step:
            break
        b, f, g, h = b + step, f_new, g_new, h_new
        if abs(step) <= TOL * max(1.0, abs(b)):
            break
    return f, b, b0


def kernel_offset(family, offset, exposure):
    """Whether the kernels see an offset (a gaussian one is taken off y)."""
    return family != "gaussian" and (offset is not None or exposure is not None)


def offset_response(family, targets, offset):
    """(targets, offset) as the kernels take them: a gaussian offset is taken
    off y, the same likelihood as that of y - offset without one (the null
    model, y's spread and the exact-fit check then need no special case)."""
    if family == "gaussian" and offset.size:
        return targets - offset[:, None], offset[:0]
    return targets, offset


def check_fit_options(alpha, max_iter, tol):
    if not (is_real_number(alpha) and np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (is_real_number(tol) and tol > 0):
        raise ValueError(f"tol must be a number > 0, got {tol!r}")


def fit_mle(X, y, family, *, fit_intercept=True, reference_class=None, alpha=0.0, sample_weight=None,
            offset=None, exposure=None, cov_type="nonrobust", groups=None, scale=None, use_t=False, max_iter=100,
            tol=TOL, backend=None):
    """Fit a GLM by maximum likelihood (Fisher scoring) and return its
    estimates with standard errors and the usual statistics.

    Parameters
    ----------
    X : array (n_samples, n_features)
        Dense; float32 is converted to float64 once (inference needs
        double precision). A pandas DataFrame's column names name the
        parameters.
    y : array (n_samples,)
        Class labels (multinomial), 0/1 (binomial), real (gaussian) or
        counts (poisson).
    family : {"multinomial", "binomial", "gaussian", "poisson"}
    fit_intercept : bool
    reference_class : label, optional
        Multinomial: the baseline category, a value of y, whose
        coefficients are fixed at 0 (identifiable; parameters shaped
        (n_terms, n_classes - 1)). Without it the symmetric softmax
        parameterization needs ``alpha > 0`` (and its intercepts are made
        to sum to zero, a direction the likelihood does not see; their
        covariance is that of the estimate under that constraint).
    alpha : float >= 0
        L2 penalty: maximizes ``llf - alpha / 2 * |coef|^2`` (the MAP
        estimate under a N(0, 1/alpha) prior; intercepts unpenalized).
        Standard errors then come from the penalized information. For
        gaussian the penalty is on the scale of the residual sum of
        squares, as scikit-learn's ``Ridge(alpha)``: it minimizes
        ``RSS / 2 + alpha / 2 * |coef|^2`` (the MAP under a N(0, sigma^2 /
        alpha) prior); its covariance is sigma^2 times the inverse of that
        objective's information.
    sample_weight : array (n_samples,), optional
        Frequency weights: sample i counts w_i times, in the log-likelihood
        and in ``nobs`` (their sum), hence BIC; integer weights give the fit
        of the rows repeated w_i times. Rows of weight 0 are left out (one
        copy of the others), whatever their values do to exp.
    offset : array (n_samples,), optional
        A known term of each sample's linear predictor, with coefficient
        fixed at 1 (statsmodels' offset); binomial, gaussian (y - offset
        is fitted) and poisson. The null model (``llnull``, hence
        ``prsquared``) is the intercept-only model with the offset: as
        statsmodels' GLM for binomial and poisson; for gaussian, the ML fit
        of y - offset on a constant (OLS's convention, as without an
        offset).
    exposure : array (n_samples,) > 0, optional
        Poisson only: counts observed over different exposures (time,
        population), modelled as rates: adds ``log(exposure)`` to the
        offset.
    cov_type : {"nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster"}
        The standard errors' covariance: the inverse Fisher information
        (default), or the heteroskedasticity-robust sandwich F^-1 B F^-1
        with B the sum of w_i s_i s_i^T over the samples' scores (White,
        Huber; valid when the variance function is wrong, e.g. overdispersed
        counts). "HC1" scales "HC0" by nobs / (nobs - k), as statsmodels'
        OLS (its GLM and discrete models report HC1 equal to HC0).
        "HC2" and "HC3" divide each term of B by (1 - h_i) and (1 - h_i)^2,
        h_i the sample's leverage (the hat matrix's diagonal at the
        estimate, R's ``hatvalues``), which corrects HC0's downward bias in
        small samples (HC3 approximates the jackknife); as statsmodels' OLS
        and R's ``sandwich::vcovHC`` for a GLM (statsmodels' GLM and
        discrete models accept them but return HC0). One-output families
        only; a leverage of 1 makes them NaN, with a warning. With weights,
        h_i is each copy's leverage (frequency weights: integer weights are
        the rows repeated), so a weight below 1 can push it to 1.
        "cluster" (with ``groups``) sums the scores within each cluster
        first (cluster-robust: samples of one cluster may be correlated)
        and scales by G / (G - 1) (nobs - 1) / (nobs - k), statsmodels'
        default. Needs ``alpha=0``; two more passes over X (the
        predictions, then the scores' sum; HC2 and HC3 a third, the
        leverages).
    groups : array (n_samples,), optional
        Each sample's cluster label, for ``cov_type="cluster"``.
    scale : None, "X2", "dev" or float > 0
        The dispersion the model-based covariance is multiplied by: None,
        the family's (1; gaussian: sigma^2's MLE, RSS / nobs); "X2",
        Pearson's chi-square over nobs - k (the quasi-likelihood
        covariance of overdispersed counts: statsmodels' GLM ``scale="X2"``,
        R's quasipoisson; for gaussian, RSS / (nobs - k), OLS's unbiased
        sigma^2; for binomial and poisson one more pass over X); "dev", the
        deviance over nobs - k;
        or a known dispersion. Not with a robust ``cov_type``. The
        log-likelihood is unchanged. With alpha > 0 the degrees of freedom
        are still nobs - k, not the penalized fit's effective number.
    use_t : bool
        Refer the coefficients' statistics to Student's t and the Wald
        tests to F, with ``df_resid`` (nobs - k) degrees of freedom, G - 1
        for a cluster covariance, as statsmodels does with ``use_t=True``
        (its OLS's default): the p-values, ``conf_int``, ``get_prediction``
        and ``wald_test`` (an ``FTest``). The default is the normal and
        chi-square approximations, statsmodels' GLM's default. A
        statsmodels OLS summary is ``fit_mle(X, y, "gaussian",
        scale="X2", use_t=True)``. Needs scipy.
    max_iter : int
        A fit stopped by it with samples at probability 0 or 1 and vanished
        information looks separated; below 100, it is run again to 100
        iterations to tell: if it converges, this fit is returned with a
        warning naming the iterations needed, else PerfectSeparationError.
    tol : float
        Converged when the last step changed no parameter by more than
        ``tol * max(1, max |params|)``.
    backend : str, optional

    Returns
    -------
    MLEResult

    Raises
    ------
    SingularFisherError
        Collinear or all-zero columns, naming them; an information that
        fails to factor (ill-conditioned).
    PerfectSeparationError
        Fitted probabilities at 0 or 1: the MLE does not exist. Never with
        ``alpha > 0``: the penalized estimate exists, and a failure is
        reported as ill-conditioning.

    The gaussian family estimates sigma^2 by maximum likelihood (RSS / n,
    weighted) and reports the log-likelihood at it, as statsmodels' OLS
    does; its model-based standard errors use that sigma^2, unless
    ``scale="X2"`` asks for statsmodels' OLS's RSS / (nobs - p); the
    sandwich of ``cov_type`` needs no sigma^2.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((500, 2))
    >>> y = (X @ [1.0, -2.0] + 0.5 + rng.logistic(size=500) > 0).astype(int)
    >>> res = fastmle.fit_mle(X, y, "binomial")
    >>> res.params.round(2), res.converged
    (array([ 0.93, -1.86,  0.48]), True)
    >>> res.bse.shape
    (3,)
    >>> hc3 = fastmle.fit_mle(X, y, "binomial", cov_type="HC3")   # robust to a wrong variance function
    >>> bool(np.all(hc3.bse > 0)), hc3.cov_type
    (True, 'HC3')

    Counts over unequal exposures, a rate model (y ~ Poisson(exposure *
    exp(0.5 x - 1))):

    >>> t = rng.uniform(1.0, 100.0, size=500)
    >>> counts = rng.poisson(t * np.exp(0.5 * X[:, 0] - 1.0))
    >>> fastmle.fit_mle(X[:, :1], counts, "poisson", exposure=t).params.round(2)
    array([ 0.5 , -1.01])
    """
    check_fit_options(alpha, max_iter, tol)
    columns = parameter_names(X)
    check_inference(cov_type, alpha, groups, family, scale, use_t)
    prob = _Problem(X, y, family, fit_intercept, reference_class, alpha, sample_weight, backend, offset, exposure,
                    groups)
    prob.cov_type, prob.dispersion, prob.use_t = cov_type, scale, use_t
    return fisher_scoring(prob, columns(prob), max_iter, tol)


def parameter_names(X, columns=None):
    """prob -> the parameters' names: columns if given (an estimator's
    feature_names_in_), else a DataFrame's columns (pandas, or dask's), else
    x0, x1, ...; then "intercept" if fitted. Read before X becomes an array."""
    if columns is None and hasattr(X, "columns"):
        columns = X.columns
    columns = list(map(str, columns)) if columns is not None else None
    return lambda prob: (columns or default_names(prob.d)) + (["intercept"] if prob.fit_intercept else [])


def default_names(d):
    """The features' names when X has no columns: x0, x1, ..."""
    return [f"x{j}" for j in range(d)]


def fisher_scoring(prob, names, max_iter, tol):
    """Fisher scoring (Newton) on an _Objective to the exact (penalized)
    MLE, then the MLEResult with the information at the estimate."""
    # the compiled kernels' threads need the cores between the small
    # factorizations (see _blas.one_thread)
    with _blas.one_thread() if getattr(prob, "backend", None) in ("c", "numba") else contextlib.nullcontext():
        return _fisher_scoring(prob, names, max_iter, tol)


def _iterations_to_converge(prob, names, tol):
    """How many iterations Fisher scoring takes to converge, or None when it
    does not within CONFIRM_ITER (or finds separation on the way)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = _fisher_scoring(prob, names, CONFIRM_ITER, tol, confirm=False)
        except SingularFisherError:  # separation (or singular information) found on the way
            return None
    return res.n_iter if res.converged else None


def _fisher_scoring(prob, names, max_iter, tol, confirm=True):
    family = prob.family
    theta = start = prob.start()
    f, g = prob.objective(theta)
    # the first step's information, the rank check's and the vanishing's
    # (after the objective: fastmle.dask's pass for it computes this too)
    start_fisher = prob.fisher_of_likelihood(start)
    if prob.alpha == 0:
        problem = prob.design_rank_problem(names, start_fisher)
        if problem:
            raise SingularFisherError(f"the Fisher information is singular: {problem}. Drop one of them "
                                      f"(or set alpha > 0)")
    shifts = _Shifts(prob)
    converged, L, it, last_step, chord_ok = False, None, 0, math.inf, False
    for it in range(1, max_iter + 1):
        # Near the optimum the information barely changes: once a step moved
        # no parameter by more than REUSE_FISHER (relative), the next steps
        # reuse its factor (chord steps: each one still shrinks the error by
        # that order) instead of recomputing the P x P information each time.
        # A chord step that did not shrink by CHORD_CONTRACTION (or needed
        # halving) shows the old factor is off: one point of high leverage
        # can dominate the first information, and its small steps had kept
        # reusing it for all 100 iterations, far from the MLE.
        if not chord_ok:
            try:
                L = np.linalg.cholesky(shifts.raise_(prob.fisher(theta, start_fisher if it == 1 else None)))
            except np.linalg.LinAlgError:
                _raise_singular(prob, theta, it)
            previous = math.inf
        else:
            previous = last_step
        delta = shifts.solve(L, g.ravel(), theta.ravel()).reshape(theta.shape)
        if not np.isfinite(delta).all():
            _raise_singular(prob, theta, it)
        step = 1.0
        while True:  # step halving: Fisher scoring far from the optimum can overshoot
            candidate = theta - step * delta
            f_new, g_new = prob.objective(candidate)
            if np.isfinite(f_new) and f_new <= f + 1e-12 * abs(f):
                break
            step *= 0.5
            if step < 1e-10:
                _raise_singular(prob, theta, it, stalled=True)
        theta, f, g = candidate, f_new, g_new
        last_step = float(np.max(np.abs(step * delta))) / max(1.0, float(np.max(np.abs(theta))))
        chord_ok = step == 1.0 and last_step <= REUSE_FISHER and last_step <= CHORD_CONTRACTION * previous
        if last_step <= tol:
            converged = True
            break
    # (with alpha > 0 the penalized estimate exists, however small the likelihood's part; an
    # offset that alone predicts y, its intercept-only fit nearly perfect, is not the features)
    near_perfect = f - prob.penalty(theta) <= 1e-9 * prob.W
    offset_predicts = prob.has_offset and -prob.null_loglik() <= 1e-9 * prob.W
    if family in ("binomial", "multinomial") and prob.alpha == 0 and near_perfect and not offset_predicts:
        raise PerfectSeparationError(
            f"perfect separation: the features predict every sample's class with probability 1 "
            f"(mean negative log-likelihood {f / prob.W:.2g}); the maximum-likelihood estimate does not "
            f"exist. Set alpha > 0 for a penalized estimate")
    F = prob.fisher(theta)  # the information at the estimate: its covariance, and the separation checks
    if not converged:
        saturated = prob.saturated(theta) if family != "gaussian" else 0
        iterations = f"{max_iter} iteration{'s' * (max_iter > 1)}"
        # Diverging coefficients push samples to probability 0 or 1 (Poisson:
        # mean 0) and the information about them vanishes exponentially. A
        # well-posed fit cut short by max_iter can also have samples there
        # (strong effects), and early on its information can fall as low
        # (1e-5 of the start's for a slope of 30 after 8 iterations, which
        # converges in 16). So a fit stopped before CONFIRM_ITER is run
        # again that far: if it converges, the MLE exists and this fit is
        # returned with the warning below.
        needed = None
        if saturated and prob.alpha == 0 and _information_vanished(F, prob.fisher(start, start_fisher)):
            rerun = confirm and max_iter < CONFIRM_ITER
            needed = _iterations_to_converge(prob, names, tol) if rerun else None
            if needed is None:
                iterations += f" (nor in {CONFIRM_ITER})" if rerun else ""
                raise PerfectSeparationError(
                    f"fit_mle did not converge in {iterations}, with {saturated} of {prob.n} samples fitted with "
                    f"{_at_limit(family)} and the information in some direction of the parameters below "
                    f"{VANISHED_INFORMATION:g} of its value at the start: quasi-complete separation (the MLE does "
                    f"not exist; the coefficients diverge). Set alpha > 0 for a penalized estimate")
        note = (f"; {saturated} of {prob.n} samples are fitted with {_at_limit(family)}: if the coefficients "
                f"keep growing with max_iter, the MLE may not exist" if saturated else "")
        if needed is not None:
            note = f"; it converges in {needed} iterations (max_iter={needed} or more)"
        # stacklevel 4: the caller of fit_mle (or of fastmle.dask.fit_mle)
        warnings.warn(f"fit_mle did not converge in {iterations} (last relative step {last_step:.3g}){note}",
                      RuntimeWarning, stacklevel=4)
    try:
        np.linalg.cholesky(F)
    except np.linalg.LinAlgError:
        _raise_singular(prob, theta, it)
    if family in ("binomial", "multinomial") and prob.alpha == 0 and not offset_predicts:
        # Quasi-complete separation can also end in a "converged" fit: the
        # coefficients ran off until every sample whose feature j is nonzero
        # sits at probability 0 or 1 in floating point, and the steps stop.
        # The information about coefficient j, sum w p (1 - p) x_j^2, has
        # then vanished against its largest possible value, sum w x_j^2 / 4.
        info = np.diag(F).reshape(prob.Kp, prob.D) / (np.asarray(prob.gram_diag) / 4.0)
        k, j = np.unravel_index(int(np.argmin(info)), info.shape)
        if info[k, j] < 1e-10:
            raise PerfectSeparationError(
                f"quasi-complete separation: the information about {names[j]!r} vanishes at the estimate "
                f"({prob.saturated(theta)} of {prob.n} samples fitted with probability within 1e-8 of 0 or "
                f"1, coefficients up to {float(np.max(np.abs(theta))):.3g}); the MLE does not exist. Set "
                f"alpha > 0 for a penalized estimate")
    return _result(prob, theta, F, f, it, converged, names)


def _information_vanished(F, F0):
    """Whether the Fisher information F (at the estimate) in some direction
    of the parameters fell below VANISHED_INFORMATION of its value at the
    start: the smallest eigenvalue of F relative to F(start) (F0 = L L',
    eigenvalues of L^-1 F L^-T). Directions, not single parameters:
    separated at x = 3, the information vanishes along a combination of
    slope and intercept, and the diagonal kept 1e-2."""
    try:
        L = np.linalg.cholesky(F0)
    except np.linalg.LinAlgError:  # the start's information is singular itself: compare the diagonals
        with np.errstate(divide="ignore", invalid="ignore"):
            return bool(np.nanmin(np.diag(F) / np.diag(F0), initial=np.inf) < VANISHED_INFORMATION)
    half = np.linalg.solve(L, F)
    relative = np.linalg.solve(L, half.T)
    return bool(np.linalg.eigvalsh((relative + relative.T) / 2)[0] < VANISHED_INFORMATION)


def _at_limit(family):
    """What saturated() counts, in words."""
    return "mean within 1e-8 of 0" if family == "poisson" else "probability within 1e-8 of 0 or 1"


def _raise_singular(prob, theta, it, stalled=False):
    what = "no step decreases the objective" if stalled else "the Fisher information is not positive definite"
    # binomial, multinomial: always separation here; Poisson when means
    # reach 0 (y = 0 where the linear predictor runs to -inf), which had
    # been blamed on the conditioning
    saturated = prob.saturated(theta) if prob.family != "gaussian" else 0
    # with alpha > 0 the penalized estimate exists: a failure is numerical
    if prob.alpha == 0 and (prob.family in ("binomial", "multinomial") or saturated):
        raise PerfectSeparationError(
            f"fit_mle stopped at iteration {it}: {what}, with {saturated} of {prob.n} samples "
            f"fitted with {_at_limit(prob.family)} (quasi-complete separation: the MLE does not "
            f"exist). Set alpha > 0 for a penalized estimate")
    remedy = "a larger alpha" if prob.alpha > 0 else "alpha > 0"
    raise SingularFisherError(f"fit_mle stopped at iteration {it}: {what} (ill-conditioned information; "
                              f"rescale the features or set {remedy})")


class _Shifts:
    """The directions the symmetric softmax likelihood (no reference class)
    does not see: a feature's coefficients (or the intercepts) moved
    together in every class. Along each such unit direction u, F u = lambda u
    with lambda the penalty's alone (alpha, or the centring weight times K
    for the intercepts), so F's condition number grows as 1 / alpha. The
    gradient along u is the penalty's, lambda u'theta, plus the likelihood's,
    0 but for rounding (sum_k (p_k - y_k) = 0), and the step divided that
    rounding by lambda: at alpha = 1e-8 the steps jittered along the u's
    (class sums of 1e-6) and Fisher scoring never met its tolerance. So the
    u part of each step is solved exactly, u'theta (to the penalized
    optimum's sum of zero), and F is factored with u's eigenvalue raised to
    F's mean diagonal (raise_) for the rest, solved in the complement of the
    u's (solve). Elsewhere (a reference class, other families) there are no
    such directions and both are F's own."""

    def __init__(self, prob):
        self.U = None
        if prob.family != "multinomial" or prob.ref is not None:
            return
        K, D = prob.Kp, prob.D
        shifted = range(D) if prob.center else range(prob.d)  # the intercepts' only with the centring penalty
        self.U = np.zeros((K * D, len(shifted)))
        for column, j in enumerate(shifted):
            self.U[np.arange(K) * D + j, column] = 1.0 / math.sqrt(K)

    def raise_(self, F):
        if self.U is None:
            return F
        return F + (np.trace(F) / len(F)) * (self.U @ self.U.T)

    def project(self, v):
        """v off the shift directions."""
        return v if self.U is None else v - self.U @ (self.U.T @ v)

    def solve(self, L, g, theta):
        """The Newton step F^-1 g at theta, with L the Cholesky factor of
        raise_(F)."""
        step = np.linalg.solve(L.T, np.linalg.solve(L, self.project(g)))
        if self.U is None:
            return step
        return self.project(step) + self.U @ (self.U.T @ theta)


def _covariance(prob, F):
    """inv(F), or in the symmetric softmax parameterization (no reference
    class) the covariance of the estimate constrained as the penalties
    constrain it: the estimate sums to zero over the classes whatever the
    data, along each direction u of _Shifts. So inv(F) = Z (Z'FZ)^-1 Z' +
    sum u u' / lambda, and only the first term, the constrained estimate's
    covariance, is kept: the second, the prior's variance 1 / (alpha K) in
    a direction the data never move, had given every coefficient the same
    standard error (5.77 at alpha = 0.01, K = 3). It is dropped without
    inverting lambda (tiny for a small alpha): the inverse of F with each
    u's eigenvalue raised, projected off the u's."""
    shifts = _Shifts(prob)
    cov = np.linalg.inv(shifts.raise_(F))
    if shifts.U is not None:
        cov = shifts.project(shifts.project(cov).T)
    return (cov + cov.T) / 2


def _result(prob, theta, F, f, it, converged, names):
    """MLEResult from the final parameters and the information at them."""
    try:
        cov = _covariance(prob, F)
    except np.linalg.LinAlgError:  # singular, though its Cholesky factor had a pivot of rounding's size
        _raise_singular(prob, theta, it)
    cov_type, n_clusters = prob.cov_type, None
    if cov_type != "nonrobust":  # the sandwich F^-1 B F^-1: scale-free, so not scaled below
        cov, n_clusters = _sandwich(prob, theta, cov, cov_type)
    # log-likelihood with every constant (statsmodels' convention)
    nll = f - prob.penalty(theta)
    scale, deviance = 1.0, 2.0 * nll  # (binomial with 0 / 1 y, multinomial, gaussian's RSS)
    if prob.family == "poisson":
        llf = -nll - prob.stats["slg"]
        deviance = 2.0 * (prob.stats["sylogy"] - prob.stats["sy"] + nll)  # 2 (saturated llf - llf)
    elif prob.family == "gaussian":
        scale = 2.0 * nll / prob.W  # nll = RSS / 2
        llf = -0.5 * prob.W * (math.log(2 * math.pi * scale) + 1.0) if scale > 0 else math.inf
        # An exact fit: sigma^2's estimate is 0 or rounding (residuals below
        # 1e-13 of y's root mean square), so standard errors of 0 or 1e-16
        # would claim infinite significance. Unless y varies about its mean
        # by 1e4 times more (or by rounding only): for y = 1e13 + noise of 1,
        # the residuals are 1e-13 of y and the fit far from exact. Rows of
        # positive weight count, not their total weight: frequency weights
        # scaled to sum 1 leave every fit's rows.
        saturated = prob.stats["rows"] <= theta.size
        rss, rounding = 2.0 * nll, EXACT_GAUSSIAN * prob.stats["syy"]
        exact = not rss > rounding and (not rss > EXACT_SPREAD * prob.stats["m2"] or not prob.stats["m2"] > rounding)
        estimated = prob.dispersion is None or isinstance(prob.dispersion, str)  # (a known sigma^2 is not)
        if prob.alpha == 0 and estimated and (saturated or exact):
            if saturated:  # as many parameters as samples: undefined, as statsmodels' OLS (inf)
                cov = np.full_like(cov, np.nan)
                why = f"as many parameters as samples ({prob.stats['rows']} samples, {theta.size} parameters)"
            else:
                why = "y a linear function of X"
            warnings.warn(f"the gaussian fit is exact: residual sum of squares {2.0 * nll:.3g} with {why}; the "
                          f"log-likelihood is {'meaningless' if scale > 0 else 'unbounded'} and the standard "
                          f"errors are {'undefined (NaN)' if saturated else '0'}", RuntimeWarning, stacklevel=5)
    else:
        llf = -nll
    # A pass for Pearson's statistic (gaussian's is the RSS, the deviance)
    # and the Poisson deviance row by row, when the scale needs them or when
    # the deviance from the sums (sum w y log y against the likelihood's sum
    # w y eta) cancels, as for counts of 1e8 fitted closely
    pearson = deviance if prob.family == "gaussian" else None
    magnitude = abs(prob.stats["sylogy"]) + abs(prob.stats["sy"]) + abs(nll)
    if (prob.dispersion == "X2" and pearson is None) or (prob.family == "poisson" and (
            prob.dispersion == "dev" or deviance <= DEVIANCE_CANCELLATION * magnitude)):
        pearson, rowwise = map(float, prob.fit_statistics(prob.kernel_params(theta)))
        deviance = rowwise if prob.family == "poisson" else deviance
    if prob.dispersion is not None:
        scale = _dispersion(prob, theta, deviance, pearson)
    pearson = pearson if prob.dispersion == "X2" else None
    if cov_type == "nonrobust":
        cov = cov * scale
    df_inference = n_clusters - 1 if cov_type == "cluster" else prob.W - theta.size
    if prob.use_t and not df_inference > 0:
        warnings.warn(f"use_t: no degrees of freedom are left for Student's t and F ({df_inference:.6g}: "
                      f"{'the clusters less 1' if cov_type == 'cluster' else 'nobs, the total weight, less k'}), "
                      f"so the p-values and intervals are NaN", RuntimeWarning, stacklevel=5)
    llnull = prob.null_loglik()
    multi = prob.family == "multinomial"
    params = theta.T.copy() if multi else theta[0].copy()
    output_names = [f"y={c}" for k, c in enumerate(prob.classes) if k != prob.ref] if multi else None
    # frequency weights: the fit is that of the rows repeated w_i times, whose
    # number of observations (BIC's log n) is the total weight, statsmodels'
    # wnobs with freq_weights (an int when whole, as a row count)
    nobs = int(prob.W) if float(prob.W).is_integer() else float(prob.W)
    return MLEResult(params=params, cov=cov, llf=float(llf), llnull=float(llnull), nobs=nobs, n_iter=it,
                     converged=converged, family=prob.family, fit_intercept=prob.fit_intercept,
                     param_names=names, output_names=output_names,
                     classes=prob.classes, reference_class=None if prob.ref is None else prob.classes[prob.ref],
                     alpha=prob.alpha, scale=scale, cov_type=cov_type, deviance=float(deviance),
                     pearson_chi2=pearson, scale_method=_scale_method(prob.dispersion), use_t=prob.use_t,
                     n_clusters=n_clusters, constant_columns=prob.constant_columns,
                     implicit_constant=prob.implicit_constant())


def _scale_method(scale):
    """MLEResult.scale_method of fit_mle's scale: None, "X2", "dev" or "fixed" (a number)."""
    return scale if scale is None or isinstance(scale, str) else "fixed"


SCALES = ("X2", "dev")


def check_scale(scale, cov_type, family):
    """fit_mle's scale: None, "X2", "dev" or a positive number; for the
    model-based covariance only."""
    if scale is None:
        return
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; available: None, 'X2', 'dev' or a positive number")
        if family == "multinomial":
            raise ValueError(f"scale={scale!r} estimates a one-output family's dispersion; for multinomial pass "
                             f"a number")
    elif not (is_real_number(scale) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be None, 'X2', 'dev' or a positive finite number, got {scale!r}")
    if cov_type != "nonrobust":
        raise ValueError(f"scale multiplies the model-based covariance; cov_type={cov_type!r} is a sandwich, "
                         f"which needs none")


def _dispersion(prob, theta, deviance, pearson):
    """The scale of fit_mle's scale: "X2" (Pearson's chi-square over nobs -
    k, as statsmodels' GLM and R's quasi-families), "dev" (the deviance
    over nobs - k) or the number."""
    method = prob.dispersion
    if not isinstance(method, str):
        return float(method)
    df_resid = prob.W - theta.size
    if not df_resid > 0:
        warnings.warn(f"scale={method!r}: the total weight {prob.W:.6g} is not above the number of parameters "
                      f"{theta.size}, so the dispersion, and the standard errors, are NaN", RuntimeWarning,
                      stacklevel=6)
        return math.nan
    return (pearson if method == "X2" else deviance) / df_resid


def fit_statistics(mu, targets, w, family):
    """[Pearson's statistic sum_i w_i (y_i - mu_i)^2 / V(mu_i), and for
    poisson the deviance summed row by row] of these samples (they add up
    over chunks; NaN for the other families' deviance). A Pearson term
    with y = mu is 0, also where V is 0. Each deviance term, 2 (y log(y /
    mu) - (y - mu)) = 2 mu ((1 + r) log1p(r) - r) with r = (y - mu) / mu, is
    formed without the cancellation of y log y against y log mu."""
    mu, y = mu[:, 0], targets[:, 0]
    residual = y - mu
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson = np.where(residual == 0, 0.0, residual * residual / variance_function(mu, family))
        deviance = math.nan
        if family == "poisson":
            r = residual / mu
            terms = np.where(y > 0, mu * ((1.0 + r) * np.log1p(r) - r), mu)
            deviance = 2.0 * weighted_sum(w, terms)
    return np.array([weighted_sum(w, pearson), deviance])


COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3", "cluster")
LEVERAGE_POWER = {"HC2": 1, "HC3": 2}  # each score divided by (1 - h_i) to the power / 2
# A leverage within its rounding error of 1 is 1 (its residual is then
# rounding too): x^T F^-1 x cancels, with an error up to about eps s^2, s =
# |x| @ sqrt(diag F^-1) (at most 0.94 eps s^2 over 200 designs with columns
# of mean 0 to 1e6: a column of mean 1e4 left 1 - h = 4.7e-10 for h = 1);
# 8 of them leave a margin over that worst case
LEVERAGE_ROUNDING = 8 * np.finfo(np.float64).eps
# Only a leverage within this of 1 can be 1 to rounding: an error of 1e-3
# needs (|x| @ sd)^2 of 5.6e11, far beyond the designs the rank check lets
# through (a one-sample dummy beside a column of mean 3e4 and spread 1 and
# the intercept has at most 5.3e7 over 40 draws; a mean of 1e5 is refused
# as collinear)
LEVERAGE_CANDIDATE = 1e-3
MARGEFF_BLOCK = 1 << 19  # elements of each of the marginal effects' temporaries per block of rows (4 MB)
SCORE_BLOCK = 1 << 21  # elements formed at a time (16 MB): the clusters' scores, the leverages' products


def check_cov_type_name(cov_type):
    """A cov_type fastmle knows (what it needs is check_cov_type's)."""
    if cov_type not in COV_TYPES:
        raise ValueError(f"unknown cov_type {cov_type!r}; available: {', '.join(map(repr, COV_TYPES))}")


def check_inference(cov_type, alpha, groups, family, scale, use_t):
    """fit_mle's options of the inference: cov_type (with groups), scale,
    use_t (scipy importable)."""
    check_cov_type(cov_type, alpha, groups, family)
    check_scale(scale, cov_type, family)
    check_bool("use_t", use_t)
    if use_t:
        _scipy_stats("use_t")


def check_cov_type(cov_type, alpha, groups, family):
    """fit_mle's cov_type with what it needs: groups for "cluster" only,
    alpha = 0 for a sandwich, one output for HC2 / HC3."""
    check_cov_type_name(cov_type)
    if cov_type in LEVERAGE_POWER and family == "multinomial":
        raise ValueError(f"cov_type={cov_type!r} needs each sample's leverage, a number for one-output families; "
                         f"for multinomial it is a block of the outputs (not implemented): use 'HC0' or 'HC1'")
    if (cov_type == "cluster") != (groups is not None):
        raise ValueError("cov_type='cluster' needs groups= (each sample's cluster label), and groups= is only "
                         "for it")
    if cov_type != "nonrobust" and alpha != 0:
        raise ValueError(f"cov_type={cov_type!r} is the sandwich of the maximum-likelihood estimate: "
                         f"it needs alpha=0 (a penalized estimate's is not implemented)")


def _sandwich(prob, theta, bread, cov_type):
    """The heteroskedasticity-robust (White / Huber) covariance F^-1 B F^-1
    with B = sum_i w_i s_i s_i^T, s_i sample i's score (frequency weights:
    w_i copies of the row); HC1 scales it by nobs / (nobs - k), as
    statsmodels' OLS does (its GLM and discrete models report HC1 equal to
    HC0: adjust_df=False). "cluster" takes B = sum_g S_g S_g^T over the
    clusters' score sums S_g, scaled by G / (G - 1) (nobs - 1) / (nobs - k),
    statsmodels' default for every model. Returns (covariance, the number
    of clusters G or None)."""
    k, W = theta.size, prob.W
    G = None
    if cov_type in ("HC1", "cluster") and not W > k:
        warnings.warn(f"cov_type={cov_type!r}: the total weight {W:.6g} is not above the number of parameters "
                      f"{k}, so its small-sample correction, and the standard errors, are NaN (the weights are "
                      f"frequency weights: nobs is their sum)", RuntimeWarning, stacklevel=6)
    if cov_type == "cluster":
        sums = prob.cluster_score_sums(prob.kernel_params(theta))
        meat = sums.T @ sums
        G = len(sums)  # statsmodels' default small-sample correction
        factor = G / (G - 1) * (W - 1) / (W - k) if W > k else math.nan
    elif cov_type in LEVERAGE_POWER:
        meat = prob.score_outer_sum(prob.kernel_params(theta), (bread, LEVERAGE_POWER[cov_type]))
        factor = 1.0
        if not np.isfinite(meat).all():  # a sample of leverage 1 (see leverages)
            warnings.warn(f"cov_type={cov_type!r}: a sample has leverage 1 (it alone determines a direction of "
                          f"the estimate, or its weight is below 1 and the weights are frequency weights), so "
                          f"the standard errors are NaN; use 'HC0' or 'HC1'", RuntimeWarning, stacklevel=6)
            meat = np.full_like(meat, np.nan)
    else:
        meat = prob.score_outer_sum(prob.kernel_params(theta))
        factor = 1.0 if cov_type == "HC0" else (W / (W - k) if W > k else math.nan)
    cov = bread @ meat @ bread
    return (cov + cov.T) / 2 * factor, G


def weighted_gram(fisher_kernels, X, w, fit_intercept):
    """xt^T diag(w) xt summed over the rows of X (D, D), xt a row with its 1
    for the intercept (w empty: all ones; negative weights allowed): the
    exact-Fisher kernel with every sample's variance 1, gaussian's, on the
    kernels' threads."""
    D = X.shape[1] + bool(fit_intercept)
    gram = np.zeros((D, D))
    if X.shape[0]:
        fisher_kernels.glm_fisher(X, np.zeros((1, X.shape[1] + 1)), np.empty(0, X.dtype), family_code("gaussian"), w,
                                  int(fit_intercept), -1, gram)
    return _symmetric(gram)


def fitted_means(glm_kernels, X, params, offset, family):
    """Each sample's fitted mean (n, K)."""
    mu = np.empty((X.shape[0], params.shape[0]))
    glm_kernels.glm_predict(X, params, offset, family_code(family), mu)
    return mu


def variance_function(mu, family):
    """V(mu) of a one-output family: 1, mu (1 - mu), mu."""
    return {"gaussian": np.ones_like(mu), "binomial": mu * (1.0 - mu), "poisson": mu}[family]


def row_quadratic_forms(X, B, fit_intercept):
    """xt_i^T B xt_i of each row, xt_i the row with its 1 for the intercept
    (B (D, D), the intercept last), a block of rows at a time (BLAS)."""
    d = X.shape[1]
    quad = np.empty(X.shape[0])
    rows = max(1, SCORE_BLOCK // max(d, 1))
    for r0 in range(0, X.shape[0], rows):
        x = X[r0:r0 + rows]
        q = np.einsum("ij,ij->i", x @ B[:d, :d], x)
        if fit_intercept:
            q += 2.0 * (x @ B[:d, d]) + B[d, d]
        quad[r0:r0 + rows] = q
    return quad


def leverages(X, mean, bread, family, fit_intercept):
    """(h, its rounding error's bound) of each sample: the leverage per unit
    of weight, h_i = V(mu_i) xt_i^T F^-1 xt_i (F^-1 the bread), the
    diagonal of the hat matrix of the weighted least squares at the
    estimate (R's hatvalues), divided by the row's frequency weight, so
    that a row of weight w has the leverage of each of its w copies (BLAS:
    fitting's one thread). The bound (LEVERAGE_ROUNDING) is formed for the
    rows within LEVERAGE_CANDIDATE of 1 only (0 for the others): over all
    rows it had cost a third of the leverages' time."""
    variance = variance_function(mean[:, 0], family)
    h = variance * row_quadratic_forms(X, bread, fit_intercept)
    bound = np.zeros_like(h)
    near = np.flatnonzero(1.0 - h <= LEVERAGE_CANDIDATE)
    if near.size:
        d, sd = X.shape[1], np.sqrt(np.maximum(np.diag(bread), 0.0))
        spread = np.abs(X[near]) @ sd[:d] + (sd[d] if fit_intercept else 0.0)
        bound[near] = LEVERAGE_ROUNDING * variance[near] * spread * spread
    return h, bound


def _residuals(mu, labels, targets, family, keep):
    """mu - y of each sample and kept output, (n, K'); mu is overwritten."""
    if family != "multinomial":
        return mu - targets
    mu[np.arange(mu.shape[0]), labels] -= 1.0
    return mu[:, keep]


def _scores(x, residual, fit_intercept):
    """The rows' scores residual kron xt, (rows, K' D), contiguous."""
    xt = np.hstack([x, np.ones((len(x), 1))]) if fit_intercept else x
    return np.ascontiguousarray((residual[:, :, None] * xt[:, None, :]).reshape(len(x), -1))


def score_outer_sum(glm_kernels, fisher_kernels, X, labels, targets, w, params, offset, family, fit_intercept,
                    keep, leverage=None):
    """sum_i w_i s_i s_i^T over these samples (they add up over chunks),
    s_i = (mu_i - y_i) kron xt_i the gradient of sample i's negative
    log-likelihood in the kept outputs' parameters (the information's
    layout). leverage = (bread, power), for HC2 (power 1) and HC3 (2):
    each term divided by (1 - h_i)^power, h_i the sample's leverage (a
    leverage of 1 makes the sum NaN or inf). Block (a, b) is the weighted
    Gram matrix of X with weights w r_a r_b (r = mu - y), once per pair a <=
    b of outputs, on the kernels' threads (a BLAS syrk of the explicit
    scores, inside fitting's one-thread block, had taken 1.6-2.2x the
    multinomial fit's time)."""
    D = X.shape[1] + bool(fit_intercept)
    mu = fitted_means(glm_kernels, X, params, offset, family)
    if leverage is not None:
        bread, power = leverage
        h, rounding = leverages(X, mu, bread, family, fit_intercept)
        with np.errstate(divide="ignore"):  # leverage 1: an infinite weight (the sum's NaN says so)
            w = (w if w.size else 1.0) / np.where(1.0 - h > rounding, 1.0 - h, 0.0) ** power
    residual = _residuals(mu, labels, targets, family, keep)
    Kp = residual.shape[1]
    meat = np.zeros((Kp * D, Kp * D))
    for a in range(Kp):
        for b in range(a, Kp):
            with np.errstate(invalid="ignore"):  # (a leverage of 1's 0 * inf)
                weights = residual[:, a] * residual[:, b] * (w if w.size else 1.0)  # (negative off the diagonal)
            meat[a * D:(a + 1) * D, b * D:(b + 1) * D] = weighted_gram(fisher_kernels, X, weights, fit_intercept)
    return _symmetric(meat)


def cluster_score_sums(glm_kernels, X, labels, targets, w, params, offset, family, fit_intercept, keep, codes,
                       n_groups):
    """(n_groups, K' D): each cluster's sum of w_i s_i, the scores formed
    a block of rows at a time in the order of their cluster codes (each
    block's runs of one code summed by reduceat)."""
    residual = _residuals(fitted_means(glm_kernels, X, params, offset, family), labels, targets, family, keep)
    P = residual.shape[1] * (X.shape[1] + bool(fit_intercept))
    order = np.argsort(codes, kind="stable")
    sums = np.zeros((n_groups, P))
    rows = max(1, SCORE_BLOCK // P)
    for r0 in range(0, len(order), rows):
        idx = order[r0:r0 + rows]
        scores = _scores(X[idx], residual[idx], fit_intercept)
        if w.size:
            scores *= w[idx, None]
        run_codes = codes[idx]
        starts = np.flatnonzero(np.r_[True, run_codes[1:] != run_codes[:-1]])
        sums[run_codes[starts]] += np.add.reduceat(scores, starts, axis=0)
    return sums
