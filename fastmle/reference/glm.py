"""Reference GLM kernels in plain numpy: the likelihood families, their
loss, gradient and prediction, and one minibatch SGD epoch. The oracle for
fastmle/_numba/glm.py and csrc/glm_kernels.h (same names, same argument
order, same algorithm step by step).

Canonical layout (the validate layer in fastmle/sgd.py produces it):

- ``X``: C-contiguous (n, d) float32 or float64;
- ``params``: (K, d + 1) of X's dtype, one row per output: columns 0..d-1
  are the coefficients, column d the intercept (kept at 0 when the model has
  none, so the linear predictor is always ``X @ params[:, :d].T + params[:,
  d]``). Rows of coefficients make each linear predictor a contiguous dot
  product, the compiled kernels' fastest loop for any K;
- ``labels``: int64 (n,) class indices in [0, K) for "multinomial", empty
  otherwise; ``targets``: (n, K) of X's dtype for the other families (0/1
  for "binomial", counts for "poisson"), empty for "multinomial";
- ``sample_weight``: (n,) of X's dtype, empty meaning all ones;
- ``offset``: (n,) of X's dtype, empty meaning none: a known term added to
  every output's linear predictor, ``X @ params[:, :d].T + params[:, d] +
  offset[:, None]`` (statsmodels' offset; log exposure for Poisson rates),
  in the element type;
- ``family``: an index into FAMILIES.

Per-sample negative log-likelihoods, in the natural parameter eta:

========== ================================== =====================
family     loss(eta, y)                       d loss / d eta
========== ================================== =====================
multinomial logsumexp(eta) - eta[y]           softmax(eta) - onehot(y)
binomial   log(1 + exp(eta)) - y eta          sigmoid(eta) - y
gaussian   (eta - y)^2 / 2                    eta - y
poisson    exp(eta) - y eta                   exp(eta) - y
========== ================================== =====================

(gaussian and poisson drop the terms that do not depend on eta:
log(2 pi) / 2 and log(y!)). Weighted by the sample weight.
"""
import numpy as np

FAMILIES = ("multinomial", "binomial", "gaussian", "poisson")
MULTINOMIAL, BINOMIAL, GAUSSIAN, POISSON = range(4)


def _loss_and_dloss(eta, labels, targets, family):
    """Per-sample losses (float64, (n,)) and d loss / d eta ((n, K), float64)."""
    eta = eta.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if family == MULTINOMIAL:
            m = eta.max(axis=1, keepdims=True)
            e = np.exp(eta - m)
            s = e.sum(axis=1, keepdims=True)
            rows = np.arange(eta.shape[0])
            loss = (m[:, 0] + np.log(s[:, 0])) - eta[rows, labels]
            g = e / s
            g[rows, labels] -= 1.0
            return loss, g
        y = targets.astype(np.float64)
        if family == BINOMIAL:
            loss = np.maximum(eta, 0) + np.log1p(np.exp(-np.abs(eta))) - y * eta
            g = _sigmoid(eta) - y
        elif family == GAUSSIAN:
            g = eta - y
            loss = 0.5 * g * g
        else:
            mu = np.exp(eta)
            loss = mu - y * eta
            g = mu - y
        return loss.sum(axis=1), g


def _sigmoid(eta):
    # exp of a non-positive argument only: no overflow
    e = np.exp(-np.abs(eta))
    return np.where(eta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _linear_predictor(X, params, offset):
    eta = X @ params[:, :-1].T + params[:, -1]
    return eta + offset[:, None] if offset.size else eta


def glm_predict(X, params, offset, family, out):
    """out = the mean of the response: softmax, sigmoid, identity or exp of
    the linear predictor."""
    eta = _linear_predictor(X, params, offset).astype(np.float64)
    if family == MULTINOMIAL:
        e = np.exp(eta - eta.max(axis=1, keepdims=True))
        out[...] = e / e.sum(axis=1, keepdims=True)
    elif family == BINOMIAL:
        out[...] = _sigmoid(eta)
    elif family == GAUSSIAN:
        out[...] = eta
    else:
        with np.errstate(over="ignore"):
            out[...] = np.exp(eta)


def glm_loss_grad(X, labels, targets, sample_weight, params, offset, family, loss, grad):
    """loss[0] = sum_i w_i loss_i; grad (zero rows: not wanted) = its
    gradient with respect to params (the intercept column included)."""
    li, g = _loss_and_dloss(_linear_predictor(X, params, offset), labels, targets, family)
    if sample_weight.size:
        w = sample_weight.astype(np.float64)
        li = li * w
        g = g * w[:, None]
    loss[0] = li.sum()
    if grad.shape[0]:
        grad[:, :-1] = g.T @ X.astype(np.float64)
        grad[:, -1] = g.sum(axis=0)


# a diverging step overflows quietly, as in the compiled kernels: the count of
# batches returned reports it
@np.errstate(over="ignore", invalid="ignore")
def sgd_epoch(X, labels, targets, sample_weight, perm, lr, family, batch_size, l2, l1,
              momentum, nesterov, fit_intercept, params, velocity, avg, avg_start, step0, loss):
    """One epoch of minibatch SGD, in place on params (and velocity, avg).

    Batch b takes the samples perm[b * batch_size : (b + 1) * batch_size]
    and steps with learning rate lr[b] along the gradient of the batch's mean
    weighted loss (divided by the number of samples in the batch) plus the
    penalty l2 * p (not on the intercept column). With momentum (torch's
    convention): v = momentum * v + g, and the step direction is v, or
    g + momentum * v with nesterov. Then l1 > 0 soft-thresholds the
    coefficients by lr[b] * l1 (the proximal step of the elastic-net L1
    term). Without fit_intercept the intercept column stays 0. The step's
    global index is t = step0 + b; when avg_start >= 0 and t >= avg_start,
    avg becomes the running mean of params over steps avg_start..t
    (Polyak-Ruppert). loss[0] accumulates sum_i w_i loss_i over the epoch,
    each batch evaluated before its update.

    Returns the number of batches done: fewer than len(lr) when a batch's
    loss or loss gradient (stored in the element type) was not finite, in
    which case that batch made no update.
    """
    d = X.shape[1]
    m = perm.shape[0]
    for b in range(lr.shape[0]):
        rows = perm[b * batch_size:min((b + 1) * batch_size, m)]
        nb = rows.shape[0]
        eta = _linear_predictor(X[rows], params, np.empty(0, X.dtype))  # SGD takes no offset
        li, g = _loss_and_dloss(eta, labels[rows] if labels.size else labels,
                                targets[rows] if targets.size else targets, family)
        if sample_weight.size:
            w = sample_weight[rows].astype(np.float64)
            li = li * w
            g = g * w[:, None]
        batch_loss = li.sum()
        g = g.astype(params.dtype)  # stored in the element type, as the kernels do
        if not (np.isfinite(batch_loss) and np.isfinite(g).all()):
            return b
        loss[0] += batch_loss
        grad = np.empty(params.shape, dtype=params.dtype)
        grad[:, :d] = g.T @ X[rows].astype(np.float64) / nb
        grad[:, d] = g.sum(axis=0) / nb if fit_intercept else 0
        grad[:, :d] += l2 * params[:, :d]
        if velocity.shape[0]:
            velocity *= momentum
            velocity += grad
            grad = grad + momentum * velocity if nesterov else velocity.copy()
        params -= lr[b] * grad
        if l1 > 0:
            coef = params[:, :d]
            coef[...] = np.sign(coef) * np.maximum(np.abs(coef) - lr[b] * l1, 0)
        t = step0 + b
        if 0 <= avg_start <= t:
            avg += (params - avg) / (t - avg_start + 1)
    return lr.shape[0]


def scan_rows(X, out):
    """One read of a dense X before training: sgd_fit's check for NaN and
    infinity and its default step's largest squared row norm together.

    out (float64, (2,)): out[0] = the largest sum_j X[i, j]^2, in float64,
    over the rows whose elements are all finite (0 when there are none;
    inf when a row of finite values overflows it); out[1] = the number of
    rows holding NaN or infinity."""
    norms = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    # NaN or inf in a row makes its sum NaN or inf; only those rows are
    # looked at element by element (no n x d temporary)
    suspect = np.flatnonzero(~np.isfinite(norms))
    bad = suspect[~np.isfinite(X[suspect]).all(axis=1)]
    norms[bad] = 0.0
    out[0] = norms.max(initial=0.0)
    out[1] = len(bad)


# ---- X in compressed sparse rows (data, indices, indptr, n_features) ----
# The same kernels on the dense matrix: the compiled CSR kernels must agree.

def _dense(data, indices, indptr, n_features):
    X = np.zeros((indptr.shape[0] - 1, n_features), data.dtype)
    rows = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
    np.add.at(X, (rows, indices), data)  # duplicate entries add up, as in scipy
    return X


def glm_predict_csr(data, indices, indptr, n_features, params, offset, family, out):
    glm_predict(_dense(data, indices, indptr, n_features), params, offset, family, out)


def glm_loss_grad_csr(data, indices, indptr, n_features, labels, targets, sample_weight, params,
                      offset, family, loss, grad):
    glm_loss_grad(_dense(data, indices, indptr, n_features), labels, targets, sample_weight, params,
                  offset, family, loss, grad)


def sgd_epoch_csr(data, indices, indptr, n_features, *args):
    return sgd_epoch(_dense(data, indices, indptr, n_features), *args)
