"""Langevin correctness against the exact density in 1-D and 2-D, Eqs. (5.6), (6.10).

Design: start ``n`` independent chains from *exact* draws of ``p`` (:mod:`refimpl.exact`)
and run each sampler for ``T`` steps. MALA leaves ``p`` exactly invariant, so its final
states are exact draws whatever the step size. Unadjusted Langevin (ULA) drifts towards its
own stationary law, which is ``p`` only as ``eps -> 0`` (bias ``O(eps^2)``), so the
discrepancy after ``T ~ 4 sigma^2 / eps^2`` steps measures the step-size bias, free of any
question of mixing time. Final states of independent chains are independent, so the
classical tests apply exactly:

* 1-D: Kolmogorov-Smirnov distance to the exact CDF, with its critical value at level
  ``ALPHA`` (``sqrt(-log(ALPHA/2)/2)/sqrt(n)``);
* 2-D: two-sample KS distances between the chains' final states and as many independent
  exact draws, along four projections (x, y, x + y, x - y), with the two-sample critical
  value at level ``ALPHA / 4``; the z-scores of the means of ``I`` and of every activation
  variable ``delta_u`` against their exact values (the moments maximum likelihood matches,
  Eq. (5.8)) are reported too.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from refimpl.backend import make_rng, to_backend, to_numpy
from refimpl.convnet.pieces import as_pattern_list, pattern_keys
from refimpl.sampling import langevin, mala
from refimpl.theorems.result import CheckResult

# Significance level of the statistical checks: a correct sampler fails with probability
# ~1e-6 per check, so "verify passes on any seed" in practice.
ALPHA = 1e-6
Z_CRITICAL = 5.0  # two-sided normal tail ~ 6e-7, Bonferroni-corrected below


def ks_critical(n: int, alpha: float = ALPHA) -> float:
    """Asymptotic critical value of the one-sample KS distance at level ``alpha``."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) / math.sqrt(n)


def _ks_distance(samples, cdf) -> float:
    x = np.sort(np.asarray(samples).ravel())
    n = len(x)
    F = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - F), np.max(F - np.arange(n) / n)))


def _steps_for(step_size: float, sigma: float, relaxations: float = 4.0) -> int:
    """Steps for ULA to relax to its stationary law: ``relaxations * 2 sigma^2 / eps^2``."""
    return int(math.ceil(relaxations * 2 * sigma**2 / step_size**2))


def run_chains(model, exact, n: int, step_size: float, rng, sampler: str):
    """Final states ``(n, D)`` of ``n`` chains started at exact draws, after the relaxation time.

    The chains run on ``model``'s backend (their noise from a generator there); the exact
    draws and the final states are host arrays.
    """
    starts = exact.sample(n, rng)
    images = to_backend(exact.line.images(starts), model.xp, model.dtype)
    run = mala if sampler == "mala" else langevin
    steps = _steps_for(step_size, model.sigma)
    result = run(model, images, steps, step_size, make_rng(int(rng.integers(2**31)), model.xp))
    finals = to_numpy(result.samples).reshape(n, -1)
    rate = None if result.acceptance is None else float(result.acceptance.mean())
    return finals, steps, rate


def check_langevin_1d(
    model, exact, rng, n: int = 20000, step_sizes=(1.5, 0.75, 0.375), name="langevin-1d"
) -> list:
    """1-D: ULA's KS distance to the exact CDF shrinks with ``eps``; MALA's is within chance.

    Returns two results: the MALA check (KS distance <= critical value) and the ULA bias
    check (residual ``KS(eps_min) / KS(eps_max)``, which must be < 0.5 while
    ``KS(eps_max)`` itself exceeds the critical value, i.e. the bias is real and shrinks).
    """
    sigma = model.sigma
    eps = [s * sigma for s in step_sizes]
    critical = ks_critical(n)
    ula = []
    for e in eps:
        finals, steps, _ = run_chains(model, exact, n, e, rng, "ula")
        ula.append(_ks_distance(finals, exact.cdf))
    finals, steps, rate = run_chains(model, exact, n, eps[0], rng, "mala")
    ks_mala = _ks_distance(finals, exact.cdf)
    largest, smallest = ula[0], ula[-1]
    ratio = smallest / largest if largest > critical else math.inf
    slope = (
        math.log(largest / max(smallest, 1e-300)) / math.log(eps[0] / eps[-1])
        if eps[0] != eps[-1]
        else float("nan")
    )
    details = dict(
        chains=n,
        ks_critical=critical,
        sigma=sigma,
        ula_ks=[dict(step=e / sigma, ks=v) for e, v in zip(eps, ula)],
        ula_ks_vs_eps_exponent=slope,
        mala_step=eps[0] / sigma,
        mala_acceptance=rate,
    )
    return [
        CheckResult(
            f"{name}-mala",
            "1-D: MALA samples match the exact density (KS)",
            "(6.10)+MH",
            ks_mala,
            critical,
            details=details,
        ),
        CheckResult(
            f"{name}-ula-bias",
            "1-D: unadjusted Langevin bias shrinks with eps (KS ratio)",
            "(5.6),(6.10)",
            ratio,
            0.5,
            details=details,
        ),
    ]


def _moment_z(finals, exact, line) -> float:
    """Largest |z| of the sample means of ``I`` and of each ``delta_u`` vs their exact values."""
    n = len(finals)
    pattern = pattern_keys(
        as_pattern_list(line.model.scoring.activation_pattern(line.images(finals)))
    )
    stats = np.concatenate([finals, pattern.astype(float)], axis=1)
    on, _ = exact.unit_moments()
    truth = np.concatenate([exact.mean(), on])
    se = stats.std(axis=0, ddof=1) / math.sqrt(n)
    varies = se > 0
    z = np.abs(stats.mean(axis=0) - truth)[varies] / se[varies]
    return float(z.max()) if z.size else 0.0


def ks_two_sample_critical(n: int, m: int, alpha: float = ALPHA) -> float:
    """Asymptotic critical value of the two-sample KS distance at level ``alpha``."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


PROJECTIONS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])


def projected_ks(finals, reference) -> float:
    """Largest two-sample KS distance over the projections (x, y, x + y, x - y)."""
    return max(float(stats.ks_2samp(finals @ u, reference @ u).statistic) for u in PROJECTIONS)


def check_langevin_2d(
    model, exact, rng, n: int = 20000, step_sizes=(1.5, 0.375), name="langevin-2d"
) -> list:
    """2-D: two-sample KS along four projections against independent exact draws.

    MALA: the largest distance stays under the critical value (level ALPHA, Bonferroni over
    the projections). ULA: at the large step the bias must show (distance above critical)
    and shrink at the small step (residual: small-step / large-step distance, < 0.5).
    """
    sigma = model.sigma
    eps = [s * sigma for s in step_sizes]
    reference = exact.sample(n, rng)
    critical = ks_two_sample_critical(n, n, ALPHA / len(PROJECTIONS))
    ks, z = [], []
    for e in eps:
        finals, _, _ = run_chains(model, exact, n, e, rng, "ula")
        ks.append(projected_ks(finals, reference))
        z.append(_moment_z(finals, exact, exact.line))
    finals, _, rate = run_chains(model, exact, n, eps[0], rng, "mala")
    ks_mala = projected_ks(finals, reference)
    ratio = ks[-1] / ks[0] if ks[0] > critical else math.inf
    details = dict(
        chains=n,
        sigma=sigma,
        ks_critical=critical,
        ula=[dict(step=e / sigma, ks=k, max_abs_z=zz) for e, k, zz in zip(eps, ks, z)],
        mala_max_abs_z=_moment_z(finals, exact, exact.line),
        mala_acceptance=rate,
        moments=2 + exact.keys.shape[1],
    )
    return [
        CheckResult(
            f"{name}-mala",
            "2-D: MALA samples match exact draws (KS on projections)",
            "(6.10)+MH",
            ks_mala,
            critical,
            details=details,
        ),
        CheckResult(
            f"{name}-ula-bias",
            "2-D: unadjusted Langevin bias shrinks with eps (KS ratio)",
            "(5.6),(6.10)",
            ratio,
            0.5,
            details=details,
        ),
    ]
