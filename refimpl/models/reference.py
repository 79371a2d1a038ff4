"""The reference distribution q(I) = N(0, sigma^2 I), Eq. (5.2): Gaussian white noise.

It is the base category of Proposition 1 and the distribution the generative ConvNet
tilts (Eq. (3.4)); with ReLU it makes the model piecewise Gaussian (Theorem 1). The paper
fixes sigma^2 = 1 on images in [0, 255] minus the mean; here sigma is a parameter.
"""

from __future__ import annotations

import math

from refimpl.backend import standard_normal


def flat(I):
    """``(M, ...)`` -> ``(M, D)``: every image as one vector."""
    return I.reshape(I.shape[0], -1)


def squared_norm(I):
    """``||I_m||^2`` per image: ``(M, ...)`` -> ``(M,)``."""
    v = flat(I)
    return (v * v).sum(axis=1)


def check_sigma(sigma) -> float:
    """``sigma`` as a positive finite float, else ``ValueError``."""
    value = float(sigma)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"sigma must be a positive finite number; got {sigma!r}")
    return value


class GaussianReference:
    """``q(I) = (2 pi sigma^2)^(-D/2) exp(-||I||^2 / (2 sigma^2))``, Eq. (5.2)."""

    def __init__(self, sigma: float = 1.0):
        self.sigma = check_sigma(sigma)

    @property
    def variance(self) -> float:
        return self.sigma**2

    def log_density(self, I):
        """``log q(I_m)`` per image, ``(M, ...)`` -> ``(M,)``."""
        dim = flat(I).shape[1]
        return -squared_norm(I) / (2 * self.variance) - 0.5 * dim * math.log(
            2 * math.pi * self.variance
        )

    def grad_log_density(self, I):
        """``d log q / dI = -I / sigma^2``, shaped like ``I``."""
        return -I / self.variance

    def sample(self, shape, rng, dtype=None):
        """Draws of shape ``shape`` from q, using generator ``rng``.

        See :func:`refimpl.backend.make_rng`.
        """
        return self.sigma * standard_normal(rng, shape, dtype)
