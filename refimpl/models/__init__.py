"""Probability models built on a scoring function.

q, the generative model (3.4), the prototype (5.1), and the discriminative softmax (2.3) with
the generative/discriminative batch log-likelihoods.
"""

from refimpl.models.discriminative import (
    discriminative_log_likelihood,
    discriminative_score_gradient,
    generative_log_likelihood,
    generative_score_gradient,
    log_softmax,
    softmax_posterior,
)
from refimpl.models.generative import GenerativeModel
from refimpl.models.prototype import PrototypeModel
from refimpl.models.reference import GaussianReference

__all__ = [
    "GaussianReference",
    "GenerativeModel",
    "PrototypeModel",
    "discriminative_log_likelihood",
    "discriminative_score_gradient",
    "generative_log_likelihood",
    "generative_score_gradient",
    "log_softmax",
    "softmax_posterior",
]
