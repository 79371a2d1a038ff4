"""Samplers without shared noise: Kolmogorov-Smirnov distance to the exact law.

An implementation whose random numbers cannot be injected cannot match the golden chains
array for array; it can still be checked against the truth. The ``sampler_1d`` and
``sampler_2d`` cases hold a low-dimensional generative ConvNet whose law ``p`` is exact: in
1-D by :func:`refimpl.exact.exact_distribution`, in 2-D the product of two such 1-D laws
along orthonormal directions ``d_j`` (the model is built so that ``f(I) = g_1(<d_1, I>) +
g_2(<d_2, I>)``). They also hold the step size and start points drawn exactly from ``p``.

A sampler that leaves ``p`` invariant (MALA, or an exact sampler) keeps the chains
distributed as ``p`` and independent of each other, whatever its step size, so its final
samples are an i.i.d. sample of ``p``. The projection ``<d_j, I>`` of each then has the
exact CDF ``F_j`` tabulated in the golden file, and the Kolmogorov-Smirnov distance
``D_j = sup_t |F_n(t) - F_j(t)|`` has a known law: it exceeds the ``1 - alpha / P`` quantile
of the exact one-sample law (``scipy.stats.kstwo``) with probability ``alpha / P``. Under
``p`` the projections are independent, so all ``P`` pass together with probability
``(1 - alpha / P)^P >= 1 - alpha``.

The CDF is tabulated at 8001 points from where it is ``1e-12`` to where it is
``1 - 1e-12``; between them it is interpolated linearly, off by at most ``h^2 / 8 * max |p'|``
(``h`` the grid step, about ``1e-3``): below ``1e-6`` (tested), far below critical values of
``0.02``.

A sampler with a bias (unadjusted Langevin at the case's step ``1.5 sigma``, or a drift of
``eps^2`` instead of ``eps^2 / 2``) moves the chains away from ``p`` in ``n_steps`` steps,
and the distance grows far beyond the critical value (numbers in ``docs/crosscheck.md``).

Host-only (SciPy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class KSResult:
    """The largest of the per-direction KS distances, its critical value, the sample size."""

    distance: float
    critical: float
    n: int
    detail: str

    @property
    def passed(self) -> bool:
        return self.distance <= self.critical


def ks_critical(n: int, alpha: float, directions: int = 1) -> float:
    """The ``1 - alpha / directions`` quantile of the exact one-sample KS law for ``n`` samples."""
    return float(stats.kstwo.isf(alpha / directions, n))


def as_points(samples, dim: int):
    """``samples`` as ``(n, dim)`` points; any shape whose first axis counts the samples."""
    array = np.asarray(samples, dtype=np.float64)
    if array.ndim == 0 or array.size != array.shape[0] * dim:
        raise ValueError(
            f"samples must hold n points of dimension {dim} (e.g. shape (n, {dim}, 1, 1)); "
            f"got shape {array.shape}"
        )
    return array.reshape(array.shape[0], dim)


def ks_distance(values, cdf_x, cdf) -> float:
    """``sup_t |F_n(t) - F(t)|`` of 1-D ``values`` against the tabulated CDF ``(cdf_x, cdf)``."""
    return float(stats.kstest(values, lambda t: np.interp(t, cdf_x, cdf)).statistic)


def ks_check(samples, references: dict, alpha: float) -> KSResult:
    """KS distances of the projections of ``samples`` onto each direction, against the exact CDFs.

    Args:
        samples: ``n`` points of dimension ``D`` (e.g. ``(n, D, 1, 1)``).
        references: the case's ``projections (P, D)``, ``cdf_x (X,)`` and ``cdf (P, X)``.
        alpha: the probability that an exact sample fails.
    """
    directions = np.asarray(references["projections"], dtype=np.float64)
    points = as_points(samples, directions.shape[1])
    n = len(points)
    distances = [
        ks_distance(points @ d, references["cdf_x"], F)
        for d, F in zip(directions, references["cdf"])
    ]
    worst = int(np.argmax(distances))
    listed = ", ".join(f"{x:.4f}" for x in distances)
    detail = (
        f"KS distance of <d, I> to its exact CDF, largest for d = "
        f"{np.round(directions[worst], 3).tolist()} (all: {listed})"
    )
    return KSResult(distances[worst], ks_critical(n, alpha, len(directions)), n, detail)
