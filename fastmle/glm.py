"""Generalized linear models: the four likelihood families, their prediction
and their log-likelihood with its gradient, on whole data sets.

The families and their canonical links (see fastmle/reference/glm.py for
the per-sample formulas):

=========== ======================== ================= =====================
family      response y               mean of y         outputs K
=========== ======================== ================= =====================
multinomial class labels             softmax(eta)      number of classes
binomial    0 / 1                    sigmoid(eta)      1
gaussian    real (n,) or (n, k)      eta               1 or k
poisson     counts >= 0 (n,) or (n,k) exp(eta)         1 or k
=========== ======================== ================= =====================

with the linear predictor eta = X @ coef + intercept, coef of shape
(n_features, K). The losses are negative log-likelihoods per sample; the
gaussian one is (eta - y)^2 / 2 (unit variance) and the poisson one omits
log(y!), terms that do not depend on the coefficients.
"""
import numpy as np

from . import _dispatch
from ._validate import check_bool, native_array, real_array
from .reference.glm import FAMILIES


def family_code(family):
    """The kernels' index of a family name; ValueError for an unknown one."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES.index(family)


class CSRMatrix:
    """X as compressed sparse rows, as the _csr kernels take it: data (float32
    or float64), int32 column indices, int64 row pointers. Built from a
    scipy.sparse matrix by :func:`as_design_matrix`."""

    def __init__(self, data, indices, indptr, shape):
        self.data, self.indices, self.indptr, self.shape = data, indices, indptr, shape
        self.dtype = data.dtype

    def take_rows(self, rows):
        """The matrix of the given rows, in that order."""
        lengths = np.diff(self.indptr)[rows]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        entries = np.repeat(self.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return CSRMatrix(self.data[entries], self.indices[entries], indptr, (len(rows), self.shape[1]))

    def row_norms2(self):
        """The squared norm of each row (float64). Duplicate entries of a
        cell add up (as in scipy, and in the kernels' products), so the norm
        is that of their sums: taken from a summed copy when the matrix has
        any (the kernels keep reading the matrix as given)."""
        import scipy.sparse  # a CSRMatrix comes from a scipy.sparse X

        A = scipy.sparse.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)
        if not A.has_canonical_format:  # unsorted, or duplicates
            A = A.copy()
            A.sum_duplicates()
        rows = np.repeat(np.arange(self.shape[0]), np.diff(A.indptr))
        return np.bincount(rows, weights=A.data.astype(np.float64) ** 2, minlength=self.shape[0])


def _as_csr(X, name):
    A = X.tocsr()
    if A.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {A.shape})")
    real_array(A.data, name)
    if A.shape[1] > np.iinfo(np.int32).max:
        raise ValueError(f"{name} has {A.shape[1]} features; the sparse kernels take at most 2**31 - 1")
    dtype = A.dtype if A.dtype in (np.float32, np.float64) else np.float64
    # never trust a CSR structure's invariants: a bad index would reach C.
    # The structure is copied, then checked: the caller's arrays may change
    # after the check (an sgd_fit callback between epochs had set indices
    # out of range, and the kernels wrote outside their buffers). Indices are
    # checked before the int32 cast, which would wrap huge ones.
    indices = np.array(A.indices, copy=True)
    if len(indices) and (indices.min() < 0 or indices.max() >= A.shape[1]):
        raise ValueError(f"{name} has a column index outside [0, {A.shape[1]})")
    data = native_array(A.data, dtype)
    indices = native_array(indices, np.int32)
    indptr = np.array(A.indptr, dtype=np.int64, copy=True)
    if (len(indptr) != A.shape[0] + 1 or indptr[0] != 0 or indptr[-1] != len(data)
            or len(indices) != len(data) or (np.diff(indptr) < 0).any()):
        raise ValueError(f"{name} is not a valid CSR matrix (its indptr does not match its data)")
    if not np.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or infinity")
    # a CSC or COO X became a new CSR matrix: copied whatever CSR's arrays share
    copied = A is not X or not np.shares_memory(data, A.data)
    return CSRMatrix(data, indices, indptr, A.shape), copied


def as_design_matrix(X, name="X", check_values=True):
    """X as the kernels take it: a C-contiguous 2-D float32/float64 array,
    or a :class:`CSRMatrix` for scipy.sparse input.

    float32 and float64 keep their precision; anything else (ints, bools) is
    converted to float64. A Fortran-ordered or strided X is copied once into
    C order; sparse X is converted to CSR (int64 column indices to int32),
    its index arrays always copied (they are checked once and must not
    change under the kernels; copied reports the values only).
    NaN or infinity is a ValueError, unless check_values is False (the
    caller checks a dense X's values itself, as sgd_fit does with
    scan_rows; sparse X's values are always checked here). Returns
    (X, copied)."""
    if hasattr(X, "tocsr") and hasattr(X, "nnz"):
        return _as_csr(X, name)
    arr = real_array(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    # float32 and float64 in either byte order keep their precision
    dtype = arr.dtype.newbyteorder("=") if arr.dtype.newbyteorder("=") in (np.float32, np.float64) else np.float64
    out = native_array(arr, dtype)
    if check_values:
        check_finite(out, name)
    return out, not np.shares_memory(out, arr)


def check_finite(X, name="X"):
    # NaN and inf propagate into the sum, so a finite sum proves every
    # element finite, without the n x d temporary of isfinite(X).all()
    # (5.5 against 8.1 ms on 200000 x 100 float64); a sum that overflowed
    # gets the exact test.
    with np.errstate(over="ignore", invalid="ignore"):
        total = X.sum()
    if not np.isfinite(total) and not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity")


def check_weight_values(w):
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")


def run_kernel(kern, name, X, *args):
    """kern.<name>(X, *args) for dense X, kern.<name>_csr(data, indices,
    indptr, n_features, *args) for a CSRMatrix."""
    if isinstance(X, CSRMatrix):
        return getattr(kern, name + "_csr")(X.data, X.indices, X.indptr, X.shape[1], *args)
    return getattr(kern, name)(X, *args)


def encode_response(y, family, n_samples, dtype, classes=None):
    """(labels, targets, classes) in the kernels' layout for y.

    multinomial: labels = indices into `classes` (int64), targets empty;
    `classes` (sorted and made distinct here) defaults to the sorted distinct
    values of y. binomial: y must be
    0/1 (or bool); targets (n, 1). gaussian / poisson: targets (n, K)."""
    y = np.asarray(y)
    if y.shape[:1] != (n_samples,):
        raise ValueError(f"y has {y.shape[0] if y.ndim else 0} samples but X has {n_samples}")
    empty_labels = np.empty(0, np.int64)
    if family == "multinomial":
        if y.ndim != 1:
            raise ValueError(f"multinomial y must be 1-D class labels, got shape {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity")
        if y.dtype.kind == "O":  # (np.unique's sort would fail on None or NaN with a bare TypeError)
            missing = np.flatnonzero([v is None or (isinstance(v, float) and v != v) for v in y])
            if missing.size:
                raise ValueError(f"y contains a missing label ({y[missing[0]]!r} at position {missing[0]})")
        y = y.copy()  # checked, then the kernels' indices: the caller's y may change meanwhile
        if classes is None and y.dtype.kind in "iu" and y.size and 0 <= y.min() and y.max() < 4 * y.size:
            # integer labels 0..K-1, the common case: a count instead of a sort
            present = np.flatnonzero(np.bincount(y))
            if len(present) == present[-1] + 1:
                return y.astype(np.int64, copy=False), np.empty((0, len(present)), dtype), present
            classes = present
        try:
            classes = np.unique(y if classes is None else np.asarray(classes))
        except TypeError as e:
            raise TypeError(f"the class labels cannot be sorted (labels of mixed types, such as str and int?): "
                            f"{e}") from None
        return label_indices(y, classes, "the classes"), np.empty((0, len(classes)), dtype), classes
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{family} y must be numeric, got dtype {y.dtype}")
    if y.ndim > 2:
        raise ValueError(f"{family} y must be 1-D or 2-D (n_samples, n_outputs), got shape {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinity")
    with np.errstate(over="ignore"):  # reported below
        t = y.astype(dtype).reshape(n_samples, -1 if n_samples else int(np.prod(y.shape[1:])))
    if t.shape[1] == 0:
        raise ValueError(f"{family} y has no outputs (shape {y.shape})")
    if not np.isfinite(t).all():
        raise ValueError(f"y has values beyond the range of {np.dtype(dtype).name}, X's dtype, which the fit "
                         "computes in; give X as float64 or scale y")
    if family == "binomial":
        if t.shape[1] != 1:
            raise ValueError(f"binomial y must be 1-D, got shape {y.shape}")
        if not np.isin(t, (0, 1)).all():
            raise ValueError("binomial y must be 0 or 1 (use MLEClassifier for other labels)")
    elif family == "poisson" and (t < 0).any():
        raise ValueError("poisson y must be counts >= 0; found a negative value")
    return empty_labels, np.ascontiguousarray(t), None


def label_indices(y, classes, name):
    """int64 indices of the labels y in the sorted array classes; a label
    not among them (or not comparable with them, str against int) is a
    ValueError naming it and `name` (what the classes are called)."""
    K = len(classes)
    if (y.dtype.kind in "iu" and classes.dtype.kind in "iu" and y.size and np.array_equal(classes, np.arange(K))
            and 0 <= y.min() and y.max() < K):
        return y.astype(np.int64)   # classes exactly 0..K-1: the labels are the indices
    try:
        index = np.searchsorted(classes, y)
        bad = (index >= K) | (classes[np.minimum(index, K - 1)] != y)
    except TypeError:  # labels that do not even compare with classes
        index, bad = None, np.ones(len(y), bool)
    if bad.any():
        label = y[np.argmax(bad):][:1].tolist()[0]  # a Python scalar: 7, not np.int64(7)
        raise ValueError(f"y contains label {label!r} not among {name} {classes.tolist()}")
    return index.astype(np.int64)


def as_sample_weight(sample_weight, n_samples, dtype):
    """Sample weights as the kernels take them (empty: all ones)."""
    if sample_weight is None:
        return np.empty(0, dtype)
    given = real_array(sample_weight, "sample_weight")
    if given.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {given.shape}")
    check_weight_values(given)  # in its own precision: a cast to float32 may overflow or underflow
    if n_samples and not given.any():
        raise ValueError("sample_weight is zero for every sample")
    with np.errstate(over="ignore", under="ignore"):
        w = given.astype(dtype, copy=False)
    if w is not given and (not np.isfinite(w).all() or (n_samples and not w.any())):  # not in X's dtype
        raise ValueError(f"sample_weight has values outside the range of {np.dtype(dtype).name}, X's dtype "
                         f"(largest {float(given.max()):.3g}); give X as float64 or scale the weights")
    return native_array(w, dtype)


MULTINOMIAL_OFFSET = ("offset is not defined for the multinomial family: a term added to every class's linear "
                      "predictor cancels in the softmax")


def as_offset(offset, n_samples, dtype, family):
    """The offset as the kernels take it: (n_samples,) of X's dtype, empty
    when not given. Multinomial is refused: a term added to every class's
    linear predictor cancels in the softmax."""
    if offset is None:
        return np.empty(0, dtype)
    if family == "multinomial":
        raise ValueError(MULTINOMIAL_OFFSET)
    given = real_array(offset, "offset")
    if given.shape != (n_samples,):
        raise ValueError(f"offset must have shape ({n_samples},), got {given.shape}")
    if not np.isfinite(given).all():
        raise ValueError("offset contains NaN or infinity")
    with np.errstate(over="ignore"):
        cast = given.astype(dtype, copy=False)
    if not np.isfinite(cast).all():
        raise ValueError(f"offset has values outside the range of {np.dtype(dtype).name}, X's dtype (largest "
                         f"{float(np.abs(given).max()):.3g}); give X as float64")
    return native_array(cast, dtype)


def check_offset_family(family, offset, exposure):
    """The families an offset and an exposure are for (before reading them)."""
    if offset is not None and family == "multinomial":
        raise ValueError(MULTINOMIAL_OFFSET)
    if exposure is not None and family != "poisson":
        raise ValueError(f"exposure is for the poisson family (log link), not {family!r}; pass offset")


def total_offset(offset, exposure, n_samples, family):
    """offset + log(exposure) (float64 (n_samples,), empty for neither),
    checked; the arguments in linear_offset's order."""
    check_offset_family(family, offset, exposure)
    total = as_offset(offset, n_samples, np.float64, family)
    if exposure is None:
        return total
    exposure = real_array(exposure, "exposure")
    if exposure.shape != (n_samples,):
        raise ValueError(f"exposure must have shape ({n_samples},), got {exposure.shape}")
    if not (np.isfinite(exposure).all() and (exposure > 0).all()):
        raise ValueError("exposure must be finite and > 0 (it enters as log(exposure))")
    log_exposure = np.log(exposure.astype(np.float64))
    return log_exposure + total if total.size else log_exposure


def linear_offset(offset, exposure, n_samples, dtype, family):
    """offset + log(exposure) as the kernels take it: (n_samples,) of X's
    dtype (empty for neither), checked."""
    if exposure is None:
        return as_offset(offset, n_samples, dtype, family)
    return as_offset(total_offset(offset, exposure, n_samples, family), n_samples, dtype, family)


def total_weight(sample_weight, n_samples):
    """The sum of the kernels' sample weights (empty: all ones), in float64."""
    return float(sample_weight.sum(dtype=np.float64)) if sample_weight.size else float(n_samples)


def pack_params(coef, intercept, n_features, dtype):
    """(K, d + 1) kernel parameters from coef (d, K) or (d,) and intercept."""
    coef = real_array(coef, "coef")
    if coef.ndim == 1:
        coef = coef[:, None]
    if coef.ndim != 2 or coef.shape[0] != n_features:
        raise ValueError(f"coef must have shape (n_features={n_features}, n_outputs), got {coef.shape}")
    n_outputs = coef.shape[1]
    if n_outputs == 0:  # the kernels read a row's first output (softmax's max)
        raise ValueError(f"coef has no outputs (shape {coef.shape}); it needs at least one column")
    params = np.zeros((n_outputs, n_features + 1), dtype)
    params[:, :-1] = coef.T
    if intercept is not None:
        intercept = real_array(intercept, "intercept")
        if intercept.size not in (1, n_outputs) or intercept.ndim > 1:
            raise ValueError(f"intercept must be a scalar or have shape ({n_outputs},) (one per output), "
                             f"got {intercept.shape}")
        params[:, -1] = intercept
    return params


def unpack_params(params):
    """(coef (d, K), intercept (K,)) from (K, d + 1) kernel parameters: new
    arrays, never views of params (for K = 1, params[:, :-1].T is already
    C-contiguous and np.ascontiguousarray would return a view of the live
    parameters that the next SGD epoch overwrites)."""
    return np.array(params[:, :-1].T, order="C"), params[:, -1].copy()


def glm_predict(X, coef, family, *, intercept=None, offset=None, exposure=None, backend=None):
    """The mean of the response under a fitted GLM: softmax (multinomial),
    sigmoid (binomial), identity (gaussian) or exp (poisson) of
    ``X @ coef + intercept + offset``. Returns (n_samples, K) in X's float
    dtype. ``offset`` (n_samples,), optional, is a known term of each
    sample's linear predictor (statsmodels' offset: for Poisson rates,
    ``np.log(exposure)``), added in X's dtype (float32 X rounds it); not
    for multinomial. ``exposure`` (n_samples,) > 0, poisson only: adds
    ``log(exposure)`` to it (fit_mle's exposure).
    family comes third, as in sgd_fit, fit_mle and glm_fisher (it had a
    default, "gaussian", which gave a binomial fit's X @ coef silently).

    >>> import numpy as np, fastmle
    >>> fastmle.glm_predict(np.array([[0.0], [1.0]]), [[2.0]], "poisson", intercept=[0.0])
    array([[1.       ],
           [7.3890561]])

    Counts over exposures of 10 and 2 units (a rate model):

    >>> fastmle.glm_predict(np.array([[0.0], [1.0]]), [[2.0]], "poisson", exposure=[10.0, 2.0])
    array([[10.       ],
           [14.7781122]])
    """
    code = family_code(family)
    X, _ = as_design_matrix(X)
    params = pack_params(coef, intercept, X.shape[1], X.dtype)
    offset = linear_offset(offset, exposure, X.shape[0], X.dtype, family)
    out = np.empty((X.shape[0], params.shape[0]), X.dtype)
    run_kernel(_dispatch.kernels(_dispatch.resolve(backend), "glm"), "glm_predict", X, params, offset, code, out)
    return out


def glm_loss(X, y, coef, family, *, intercept=None, sample_weight=None, offset=None, exposure=None,
             reduction="mean", return_grad=False, backend=None):
    """The GLM's negative log-likelihood (weighted), and with return_grad its
    gradient ``(dcoef (n_features, K), dintercept (K,))``, in one pass.
    ``offset`` and ``exposure`` are glm_predict's: a known term of the
    linear predictor.
    family comes fourth, after y as in sgd_fit and fit_mle (it had a
    default, "gaussian": a binomial fit's loss came out a squared error).

    reduction "mean" divides by the sum of the sample weights (the number of
    samples without weights), "sum" does not. For multinomial, y holds class
    indices 0..K-1 (K = coef.shape[1]).

    >>> import numpy as np, fastmle
    >>> X = np.array([[1.0], [2.0]]); y = np.array([0, 1])
    >>> loss, (dcoef, dintercept) = fastmle.glm_loss(X, y, [[0.0, 0.0]], "multinomial", return_grad=True)
    >>> round(loss, 6), dcoef.ravel()
    (0.693147, array([ 0.25, -0.25]))
    """
    code = family_code(family)
    check_bool("return_grad", return_grad)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum' for glm_loss, got {reduction!r}")
    X, _ = as_design_matrix(X)
    params = pack_params(coef, intercept, X.shape[1], X.dtype)
    K = params.shape[0]
    classes = np.arange(K) if family == "multinomial" else None
    labels, targets, _ = encode_response(y, family, X.shape[0], X.dtype, classes)
    if family != "multinomial" and targets.shape[1] != K:
        raise ValueError(f"y has {targets.shape[1]} outputs but coef has {K}")
    w = as_sample_weight(sample_weight, X.shape[0], X.dtype)
    offset = linear_offset(offset, exposure, X.shape[0], X.dtype, family)
    loss = np.zeros(1)
    grad = np.empty_like(params) if return_grad else np.empty((0, params.shape[1]), X.dtype)
    run_kernel(_dispatch.kernels(_dispatch.resolve(backend), "glm"), "glm_loss_grad", X, labels, targets, w,
               params, offset, code, loss, grad)
    scale = 1.0
    if reduction == "mean":
        total = total_weight(w, X.shape[0])
        scale = 1.0 / total if total > 0 else np.nan
    value = float(loss[0]) * scale
    if not return_grad:
        return value
    return value, unpack_params(grad * grad.dtype.type(scale))
