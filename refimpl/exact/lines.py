"""Exact integrals of a piecewise-linear model along a line: kinks and truncated Gaussians.

For a piecewise-linear scoring function ``f`` and ``q = N(0, sigma^2 I)``, restrict the
unnormalised density ``exp(f(I)) q(I)`` to a line ``I = o + t d`` (``|d| = 1``). Between two
kinks (changes of the activation pattern) ``f(o + t d) = c0 + c1 t`` exactly (Xie et al.,
Eq. (6.8)), so

    exp(f) q  ~  exp(K - (t - mu)^2 / (2 sigma^2)),   mu = sigma^2 c1 - <o, d>,

a Gaussian in ``t`` truncated to the segment: its mass and mean are closed-form (normal
CDFs), with no discretisation error. Kinks are located by bisection on the activation
pattern, to 1e-13 of the line's length. Every piece is convex (see
:mod:`refimpl.convnet.pieces`), so it meets a line in one interval.

Host-only (SciPy), so this module imports NumPy; a :class:`LineModel`'s model lives on the
NumPy backend (:func:`refimpl.exact.distribution.exact_distribution` copies it there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from refimpl.convnet.pieces import as_pattern_list, pattern_keys

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_diff_ndtr(a, b):
    """``log(Phi(b) - Phi(a))`` for ``a <= b`` elementwise, stable in both tails."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    upper = a > 0  # then use Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    hi = np.where(upper, special.log_ndtr(-a), special.log_ndtr(b))
    lo = np.where(upper, special.log_ndtr(-b), special.log_ndtr(a))
    with np.errstate(divide="ignore"):
        return hi + np.log1p(-np.exp(lo - hi))


def log_phi(x):
    """``log phi(x)`` of the standard normal density (``-inf`` at +-inf)."""
    return -0.5 * np.square(x) - LOG_SQRT_2PI


@dataclass
class LineModel:
    """The model seen through flat points: ``(M, D)`` arrays in, patterns and pieces out."""

    model: object
    event_shape: tuple

    def images(self, points):
        return np.asarray(points, float).reshape((len(points),) + self.event_shape)

    def keys(self, points):
        """Activation patterns as ``(M, units)`` bool rows."""
        return pattern_keys(
            as_pattern_list(self.model.scoring.activation_pattern(self.images(points)))
        )

    def pieces(self, points):
        """``(alpha (M,), B (M, D))`` at flat points."""
        alpha, B = self.model.scoring.linear_piece(self.images(points))
        return np.asarray(alpha), np.asarray(B).reshape(len(points), -1)


@dataclass
class Segments:
    """Where the line ``o + t d`` crosses pieces.

    ``bounds (n+1,)`` (first and last are -inf, +inf), ``keys (n, units)``, and on segment
    ``j`` the truncated Gaussian ``t ~ N(mu_j, sigma^2)`` restricted to ``bounds[j:j+2]`` with
    log mass ``log_mass_j`` (the integral of ``exp(f - |I|^2 / (2 sigma^2))``, without q's
    constant).
    """

    bounds: np.ndarray
    keys: np.ndarray
    mu: np.ndarray
    log_mass: np.ndarray
    sigma: float

    @property
    def standardised(self):
        """Truncation limits ``(a, b)`` in units of sigma around ``mu``."""
        return (self.bounds[:-1] - self.mu) / self.sigma, (self.bounds[1:] - self.mu) / self.sigma

    def mean_t(self):
        """``E[t]`` on each segment: ``mu + sigma (phi(a) - phi(b)) / (Phi(b) - Phi(a))``.

        The ratio is computed in logs.
        """
        a, b = self.standardised
        log_z = log_diff_ndtr(a, b)
        with np.errstate(over="ignore", invalid="ignore"):
            ratio = np.exp(log_phi(a) - log_z) - np.exp(log_phi(b) - log_z)
        return self.mu + self.sigma * np.nan_to_num(ratio)


def line_segments(
    line: LineModel,
    origin,
    direction,
    radius: float,
    sigma: float,
    n_probe: int = 129,
    tol: float = 1e-13,
) -> Segments:
    """Kinks of ``f`` on ``origin + t direction``, ``|t| <= radius``, and the segments' Gaussians.

    Probes ``n_probe`` points, bisects (vectorised) every probe interval whose end patterns
    differ, and repeats on the part right of each kink found until the right end's pattern
    is reached (convexity: a line cannot leave a piece and come back).
    """
    ts = np.linspace(-radius, radius, n_probe)
    keys = line.keys(origin + ts[:, None] * direction)
    changed = np.nonzero((keys[1:] != keys[:-1]).any(axis=1))[0]
    lo, hi = ts[changed], ts[changed + 1]
    key_lo, end_key, end = keys[changed], keys[changed + 1], ts[changed + 1]
    kinks = []
    while len(lo):
        key_hi = end_key.copy()
        while np.max(hi - lo) > tol * radius:
            mid = 0.5 * (lo + hi)
            key_mid = line.keys(origin + mid[:, None] * direction)
            left = (key_mid == key_lo).all(axis=1)
            lo, hi = np.where(left, mid, lo), np.where(left, hi, mid)
            key_hi = np.where(left[:, None], key_hi, key_mid)
        kinks.append(0.5 * (lo + hi))
        more = ~(key_hi == end_key).all(axis=1)
        lo, hi, key_lo = hi[more], end[more], key_hi[more]
        end_key, end = end_key[more], end[more]
    kinks = np.sort(np.concatenate(kinks)) if kinks else np.zeros(0)
    inner = np.concatenate([[-radius], kinks, [radius]])
    mids = origin + (0.5 * (inner[:-1] + inner[1:]))[:, None] * direction
    alpha, B = line.pieces(mids)
    c0, c1 = alpha + B @ origin, B @ direction  # f = c0 + c1 t on each segment
    var = sigma * sigma
    mu = var * c1 - origin @ direction
    K = c0 - (origin @ origin) / (2 * var) + mu * mu / (2 * var)
    bounds = np.concatenate([[-np.inf], kinks, [np.inf]])
    a, b = (bounds[:-1] - mu) / sigma, (bounds[1:] - mu) / sigma
    log_mass = K + math.log(sigma) + LOG_SQRT_2PI + log_diff_ndtr(a, b)
    return Segments(bounds, line.keys(mids), mu, log_mass, sigma)
