"""Fisher information: accumulated from per-sample scores, or exact for the
GLM families (and its product with a vector), in both compiled backends.

The Fisher information is the covariance of the score. At the maximum-
likelihood estimate its inverse is the asymptotic covariance of the estimate
(see :func:`fastmle.fit_mle` for standard errors); it is also the
preconditioner of Fisher scoring and natural-gradient steps, and its
diagonal is the importance weight of elastic weight consolidation (EWC).

Parameter order of the GLM Fisher matrices (and of ``fit_mle``'s ``params``
flattened by output): output-major, the features of each output followed by
its intercept. For K' outputs and d features with an intercept, index
``k * (d + 1) + j`` is output k's coefficient of feature j, and
``k * (d + 1) + d`` its intercept (without an intercept: ``k * d + j``).
With ``reference_class``, the outputs are the classes other than it, in
order.
"""
import numpy as np

from . import _dispatch
from ._validate import check_bool, is_real_number, real_array
from .glm import (as_design_matrix, as_sample_weight, check_weight_values, family_code, linear_offset, native_array,
                  pack_params)


def refuse_sparse(a, name, who_takes):
    """A TypeError naming scipy.sparse input, which the Fisher code (dense
    kernels only) cannot take: checked first, as np.asarray would make it a
    0-d object array and the error a misleading one about its dtype."""
    if hasattr(a, "tocsr"):
        raise TypeError(f"{who_takes} a dense {name}; convert sparse {name} with .toarray()")


def _symmetric(upper):
    """The symmetric matrix whose upper triangle the kernels wrote."""
    return np.triu(upper) + np.triu(upper, 1).T


class FisherAccumulator:
    """Running Fisher information from batches of per-sample score vectors.

    Parameters
    ----------
    n_params : int
        Length P of each score vector (the gradient of one sample's
        log-likelihood with respect to the parameters).
    kind : {"dense", "diag"}
        ("full" is taken as "dense", as :func:`glm_fisher` once named it)
        "dense" keeps the P x P matrix ``sum_i w_i s_i s_i^T`` (one triangle,
        mirrored when read); "diag" only its diagonal ``sum_i w_i s_i**2``
        (EWC's importance weights), O(P) memory.
    dtype : float32 or float64
        The accumulator's element type; scores are converted to it.
    decay : float in (0, 1), optional
        Keep an exponential moving average instead of a sum: each update
        sets ``F <- decay * F + (1 - decay) * F_batch`` with ``F_batch`` the
        batch's weighted mean of ``s_i s_i^T`` (the first update sets ``F =
        F_batch``). For online EWC and K-FAC-style running estimates.
    backend : str, optional
        "c", "numba", "numpy" or None (the current default).

    Each update squares the per-sample scores, never the batch's mean
    gradient (whose outer product underestimates the Fisher by a factor of
    the batch size and is a common EWC bug). The dense update is one
    symmetric rank-k product (BLAS syrk, see fastmle/_blas.py). Not
    thread-safe: use one accumulator per thread and :meth:`merge` them.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> acc = fastmle.FisherAccumulator(2)
    >>> acc.update(np.array([[1.0, 0.0], [0.0, 2.0]]))
    >>> acc.fisher()
    array([[0.5, 0. ],
           [0. , 2. ]])
    >>> acc.n_samples
    2
    """

    def __init__(self, n_params, kind="dense", dtype=np.float64, decay=None, backend=None):
        if not isinstance(n_params, (int, np.integer)) or isinstance(n_params, bool) or n_params < 1:
            raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
        kind = fisher_kind(kind)
        dtype = np.dtype(dtype).newbyteorder("=")
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if decay is not None and not (is_real_number(decay) and 0 < decay < 1):
            raise ValueError(f"decay must be a number in (0, 1) or None, got {decay!r}")
        _dispatch.resolve(backend)  # an unknown backend fails here, not at the first update
        self.n_params, self.kind, self.dtype = int(n_params), kind, dtype
        self.decay = None if decay is None else float(decay)  # a numpy scalar as a Python float
        self.backend = backend
        self.reset()

    def reset(self):
        """Forget every sample seen."""
        shape = (self.n_params, self.n_params) if self.kind == "dense" else (self.n_params,)
        try:
            self._acc = np.zeros(shape, self.dtype)
        except (ValueError, MemoryError) as exc:  # numpy's "array is too big", or out of memory
            raise type(exc)(f"a {self.kind} Fisher information of n_params={self.n_params} needs "
                              f"{np.prod(shape, dtype=float) * self.dtype.itemsize:.3g} bytes: {exc}") from None
        self.n_samples = 0  # rows seen
        self.sum_weights = 0.0  # their total weight (= n_samples without weights)

    def update(self, scores, sample_weight=None):
        """Add a batch of per-sample scores, shape (batch, n_params), with
        optional non-negative sample weights (batch,)."""
        refuse_sparse(scores, "scores", "FisherAccumulator.update takes")
        try:
            S = real_array(scores, "scores")
        except ValueError as exc:  # a ragged list of lists
            raise ValueError(f"scores must be a 2-D array (batch, {self.n_params}): {exc}") from None
        if S.ndim != 2 or S.shape[1] != self.n_params:
            raise ValueError(f"scores must have shape (batch, {self.n_params}), got {S.shape}")
        if not np.isfinite(S).all():
            raise ValueError("scores contain NaN or infinity")
        with np.errstate(over="ignore"):
            cast = native_array(S, self.dtype)
        if cast.dtype.itemsize < S.dtype.itemsize and not np.isfinite(cast).all():  # finite, but not in float32
            raise ValueError(f"scores have values beyond the range of {self.dtype} (the accumulator's dtype); "
                             "use dtype=np.float64")
        S = cast
        n = S.shape[0]
        w = np.empty(0, self.dtype)
        batch_weight = float(n)
        if sample_weight is not None:
            w = real_array(sample_weight, "sample_weight").astype(np.float64)
            if w.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
            check_weight_values(w)
            batch_weight = float(w.sum())
            w = w.astype(self.dtype)
        if n == 0 or batch_weight == 0:
            self.n_samples += n  # rows seen, as a batch of some zero weights counts them all
            return
        if self.decay is None:
            alpha, beta = 1.0, 1.0
        elif self.sum_weights == 0:
            alpha, beta = 1.0 / batch_weight, 0.0
        else:
            alpha, beta = (1.0 - self.decay) / batch_weight, float(self.decay)
        kern = _dispatch.kernels(_dispatch.resolve(self.backend), "fisher")
        name = "fisher_accumulate" if self.kind == "dense" else "fisher_accumulate_diag"
        getattr(kern, name)(S, w, alpha, beta, self._own_matrix())
        self.n_samples += n
        self.sum_weights += batch_weight

    def fisher(self, normalize=True):
        """The Fisher information: the weighted mean of s s^T over the samples
        seen (``normalize=False``: the sum); with ``decay``, the moving
        average. (P, P) for "dense", (P,) for "diag"; a new array."""
        acc = _symmetric(self._acc) if self.kind == "dense" else self._acc.copy()
        if self.decay is not None and not normalize:
            raise ValueError("an accumulator with decay keeps a moving average, not a sum")
        if normalize and self.sum_weights == 0:  # a mean, or a moving average, of nothing
            raise ValueError("no samples seen yet: the mean Fisher information is undefined")
        if self.decay is not None:
            return acc
        if normalize:
            acc /= acc.dtype.type(self.sum_weights)
        return acc

    def merge(self, other):
        """Add the samples another accumulator has seen (same n_params, kind
        and dtype, no decay): the result equals one accumulator fed both
        streams, up to rounding. For combining per-thread or per-worker
        accumulators. Returns self."""
        if not isinstance(other, FisherAccumulator):
            raise TypeError(f"can only merge a FisherAccumulator, got {type(other).__name__}")
        if (other.n_params, other.kind, other.dtype) != (self.n_params, self.kind, self.dtype):
            raise ValueError(f"cannot merge a ({other.n_params}, {other.kind!r}, {other.dtype}) accumulator "
                             f"into a ({self.n_params}, {self.kind!r}, {self.dtype}) one")
        if self.decay is not None or other.decay is not None:
            raise ValueError("accumulators with decay (moving averages) cannot be merged")
        self._own_matrix()[...] += other._acc
        self.n_samples += other.n_samples
        self.sum_weights += other.sum_weights
        return self

    def _own_matrix(self):
        """The running sums, as an array this accumulator may write: a
        read-only one (joblib.load(..., mmap_mode="r"), or joblib handing a
        worker a memory-mapped copy) is copied first. The C kernel had
        written into the read-only map (a segfault), and Numba into a copy
        it then dropped (the update lost, the counts raised)."""
        if not (type(self._acc) is np.ndarray and self._acc.flags.writeable and self._acc.flags.c_contiguous):
            self._acc = np.array(self._acc, dtype=self.dtype, order="C")
        return self._acc

    def __copy__(self):
        """A copy with its own running sums (a shallow copy had shared them
        with the original, whose counts then no longer matched them)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._acc = np.array(self._acc, dtype=self.dtype, order="C")
        return twin

    def __repr__(self):
        decay = f", decay={self.decay}" if self.decay is not None else ""
        return (f"FisherAccumulator(n_params={self.n_params}, kind={self.kind!r}, dtype={self.dtype.name}"
                f"{decay}; n_samples={self.n_samples})")


class GLMModel:
    """A GLM's data and parameters in the kernels' layout, validated once:
    X (dense, C-contiguous float32/float64), the (K, d + 1) kernel params
    (a zero row for the reference class, a zero intercept column without an
    intercept), the offset, the sample weights and the family code. ``n_outputs`` is
    K', the outputs whose parameters are free; ``n_terms`` is d + 1 or d."""

    def __init__(self, X, coef, family, intercept=None, fit_intercept=None, sample_weight=None,
                 reference_class=None, offset=None, exposure=None):
        self.family = family
        self.code = family_code(family)
        refuse_sparse(X, "X", "the Fisher information kernels take")
        X, _ = as_design_matrix(X)
        self.X = X
        if fit_intercept is not None:
            check_bool("fit_intercept", fit_intercept)
        self.fit_intercept = intercept is not None if fit_intercept is None else bool(fit_intercept)
        if intercept is not None and not self.fit_intercept:
            raise ValueError("intercept given with fit_intercept=False")
        coef = real_array(coef, "coef").astype(np.float64)
        if coef.ndim == 1:
            coef = coef[:, None]
        if coef.ndim != 2 or coef.shape[0] != X.shape[1]:
            raise ValueError(f"coef must have shape ({X.shape[1]}, n_outputs), got {coef.shape}")
        self.ref = -1
        if reference_class is not None:
            if family != "multinomial":
                raise ValueError(f"reference_class is for the multinomial family, not {family!r}")
            K = coef.shape[1] + 1
            if (not isinstance(reference_class, (int, np.integer)) or isinstance(reference_class, bool)
                    or not 0 <= reference_class < K):
                raise ValueError(f"reference_class must be a class index in [0, {K}) "
                                 f"(coef has {K - 1} columns: the other classes), got {reference_class!r}")
            self.ref = int(reference_class)
            coef = np.insert(coef, self.ref, 0.0, axis=1)
        if intercept is not None:
            intercept = real_array(intercept, "intercept").astype(np.float64)
            if self.ref >= 0:
                K = coef.shape[1] - 1  # the classes other than the reference
                if intercept.ndim > 1 or intercept.size not in (1, K):
                    raise ValueError(f"intercept must be a scalar or have shape ({K},) (one per class other "
                                     f"than the reference), got {intercept.shape}")
                intercept = np.insert(np.broadcast_to(intercept.reshape(-1), (K,)), self.ref, 0.0)
        if family == "binomial" and coef.shape[1] != 1:
            raise ValueError(f"binomial coef must have one column, got {coef.shape[1]}")
        self.params = pack_params(coef, intercept, X.shape[1], X.dtype)
        self.sample_weight = as_sample_weight(sample_weight, X.shape[0], X.dtype)
        self.offset = linear_offset(offset, exposure, X.shape[0], X.dtype, family)
        self.n_outputs = coef.shape[1] - (self.ref >= 0)
        self.n_terms = X.shape[1] + self.fit_intercept

    def kernels(self, backend):
        return _dispatch.kernels(_dispatch.resolve(backend), "fisher")

    def kernel_args(self):
        return (self.X, self.params, self.offset, self.code, self.sample_weight, int(self.fit_intercept), self.ref)


def fisher_kind(kind):
    """"dense" or "diag" ("full", glm_fisher's first name, is "dense")."""
    if kind not in ("dense", "full", "diag"):
        raise ValueError(f"kind must be 'dense' or 'diag', got {kind!r}")
    return "dense" if kind == "full" else kind


def _check_scale(scale):
    if not (is_real_number(scale) and np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def glm_fisher(X, coef, family, *, intercept=None, fit_intercept=None, sample_weight=None, offset=None,
               exposure=None, kind="dense", reference_class=None, scale=1.0, backend=None):
    """The exact (expected) Fisher information of a GLM at ``coef``.

    ``sum_i w_i M_i kron xt_i xt_i^T / scale`` with xt_i the row followed by
    1 for the intercept and M_i the covariance of the response given the
    linear predictor: ``diag(p_i) - p_i p_i^T`` (multinomial), ``p_i (1 -
    p_i)`` (binomial), 1 (gaussian; pass ``scale=sigma**2``), ``mu_i``
    (poisson). Computed block by block from X and the probabilities, never
    forming per-sample Kronecker products: memory O(P^2 + rows x
    features). For these canonical links it is also the observed
    information (the Hessian of the negative log-likelihood).

    Parameters
    ----------
    X : array (n_samples, n_features), dense
    coef : array (n_features, K) or (n_features,)
        For multinomial with ``reference_class=k``: (n_features, K - 1), the
        coefficients of the classes other than k (whose are fixed at 0).
    family : {"multinomial", "binomial", "gaussian", "poisson"}
    intercept : array (K,) or scalar, optional
    fit_intercept : bool, optional
        Whether the intercepts are parameters (rows/columns of the result);
        default: whether ``intercept`` was given.
    sample_weight : array (n_samples,), optional
    offset : array (n_samples,), optional
        A known term of each sample's linear predictor (for Poisson rates,
        the log of the exposure), as in glm_predict; not for multinomial.
    exposure : array (n_samples,) > 0, optional
        Poisson only: adds ``log(exposure)`` to the offset (fit_mle's).
    kind : {"dense", "diag"}
        The (P, P) matrix, or its diagonal (P,); "full" is taken as "dense"
        (its name before FisherAccumulator's was adopted).
    reference_class : int, optional
        Multinomial only: the baseline category (see coef).
    scale : float
        Dispersion the result is divided by (sigma^2 for gaussian).

    Returns
    -------
    float64 array (P, P) or (P,), P = K' x (n_features + fit_intercept), in
    the parameter order of the module docstring: output-major, features then
    intercept.

    Examples
    --------
    >>> import numpy as np, fastmle
    >>> X = np.array([[0.0], [1.0], [2.0]])
    >>> fastmle.glm_fisher(X, [0.0], "binomial", intercept=0.0)
    array([[1.25, 0.75],
           [0.75, 0.75]])
    """
    kind = fisher_kind(kind)
    scale = _check_scale(scale)
    m = GLMModel(X, coef, family, intercept, fit_intercept, sample_weight, reference_class, offset, exposure)
    P = m.n_outputs * m.n_terms
    kern = m.kernels(backend)
    if kind == "diag":
        out = np.empty(P)
        kern.glm_fisher_diag(*m.kernel_args(), out)
    else:
        out = np.zeros((P, P))
        kern.glm_fisher(*m.kernel_args(), out)
        out = _symmetric(out)
    if scale != 1.0:
        out /= scale
    return out


def fisher_vector_product(X, coef, family, v, *, intercept=None, fit_intercept=None, sample_weight=None,
                          offset=None, exposure=None, reference_class=None, scale=1.0, backend=None):
    """``glm_fisher(...) @ v`` without forming the matrix: one pass over X,
    O(n K' d) work and O(K' d) memory (for conjugate-gradient and natural-
    gradient steps on models too large for the P x P matrix).

    ``v`` has P elements (shape (P,), or (K', n_terms)); the result has v's
    shape, float64. The other arguments are :func:`glm_fisher`'s.

    >>> import numpy as np, fastmle
    >>> X = np.array([[0.0], [1.0], [2.0]])
    >>> fastmle.fisher_vector_product(X, [0.0], "binomial", [1.0, 0.0], intercept=0.0)
    array([1.25, 0.75])
    """
    scale = _check_scale(scale)
    m = GLMModel(X, coef, family, intercept, fit_intercept, sample_weight, reference_class, offset, exposure)
    v = real_array(v, "v")
    P = m.n_outputs * m.n_terms
    if v.size != P or v.ndim not in (1, 2) or (v.ndim == 2 and v.shape != (m.n_outputs, m.n_terms)):
        raise ValueError(f"v must have shape ({P},) or ({m.n_outputs}, {m.n_terms}), got {v.shape}")
    vv = native_array(v, np.float64).reshape(m.n_outputs, m.n_terms)
    if not np.isfinite(vv).all():
        raise ValueError("v contains NaN or infinity")
    out = np.empty((m.n_outputs, m.n_terms))
    m.kernels(backend).glm_fisher_vp(*m.kernel_args(), vv, out)
    if scale != 1.0:
        out /= scale
    return out.reshape(v.shape)
