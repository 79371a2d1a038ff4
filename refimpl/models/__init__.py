"""Probability models built on a scoring function: q, the generative model (3.4), the prototype (5.1)."""

from refimpl.models.generative import GenerativeModel
from refimpl.models.prototype import PrototypeModel
from refimpl.models.reference import GaussianReference

__all__ = ["GaussianReference", "GenerativeModel", "PrototypeModel"]
