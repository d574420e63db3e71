"""fastmle: fast, exact numerical kernels for maximum-likelihood training on the CPU.

Every kernel exists as C (cffi) and Numba code behind one dispatch API, and is
checked against a plain-numpy reference.

>>> import numpy as np, fastmle
>>> fastmle.softmax(np.array([0.0, 0.0]))
array([0.5, 0.5])
"""
from ._dispatch import (available_backends, backend, get_backend, get_num_threads,
                        set_backend, set_num_threads)
from ._config import installed as _installed, show_config
from .losses import (binary_cross_entropy_with_logits, cross_entropy, entropy, entropy_from_logits,
                     gaussian_nll, kl_div, kl_div_from_logits, linear_cross_entropy, mse_loss,
                     nll_loss, perplexity, perplexity_from_logits)
from .special import log_softmax, logsumexp, softmax
from .glm import glm_loss, glm_predict
from .sgd import SGDDivergedError, SGDResult, sgd_fit
from .fisher import FisherAccumulator, fisher_vector_product, glm_fisher
from .mle import MLEResult, PerfectSeparationError, SingularFisherError, fit_mle

__version__ = "0.1.0"

__all__ = [
    "logsumexp", "softmax", "log_softmax",
    "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "gaussian_nll", "mse_loss",
    "entropy", "entropy_from_logits", "kl_div", "kl_div_from_logits", "perplexity",
    "perplexity_from_logits", "linear_cross_entropy",
    "glm_predict", "glm_loss", "sgd_fit", "SGDResult", "SGDDivergedError",
    "FisherAccumulator", "glm_fisher", "fisher_vector_product",
    "fit_mle", "MLEResult", "SingularFisherError", "PerfectSeparationError",
    "available_backends", "backend", "get_backend", "set_backend",
    "get_num_threads", "set_num_threads", "show_config", "__version__",
]
_ESTIMATORS = ("MLEClassifier", "MLERegressor")
# `from fastmle import *`, dir() and so help() take the estimators only where
# scikit-learn is installed (the star import had raised ImportError without it)
_SKLEARN = _installed("sklearn")
if _SKLEARN:
    __all__ += _ESTIMATORS


def __getattr__(name):
    # the scikit-learn estimators import scikit-learn, an optional dependency:
    # load them on first use only
    if name in _ESTIMATORS:
        try:
            from . import estimators
        except ImportError as exc:
            raise ImportError(f"fastmle.{name} needs scikit-learn (pip install scikit-learn): {exc}") from exc
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastmle' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ESTIMATORS if _SKLEARN else ()))
