"""The samplers; see :mod:`refimpl.sampling` for the equations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from refimpl.backend import standard_normal, uniform
from refimpl.convnet.pieces import as_pattern_list, pattern_keys
from refimpl.models.reference import squared_norm


@dataclass
class SamplerResult:
    """Final chains and what happened on the way.

    ``samples`` has the shape of the start ``I0``; ``steps`` counts the updates done;
    ``acceptance`` is MALA's acceptance rate per chain ``(M,)`` (None otherwise);
    ``converged`` (GRADE, fixed point) says per chain whether the stopping rule was met and
    ``chain_steps (M,)`` after how many updates; ``trace`` holds whatever ``record``
    returned at each recorded step.
    """

    samples: object
    steps: int
    acceptance: object = None
    converged: object = None
    chain_steps: object = None
    trace: list = field(default_factory=list)


def check_step_size(step_size, sigma: float) -> float:
    """``step_size`` as a float in ``(0, 2 sigma)``, else ``ValueError``.

    The Gaussian part of every update is ``I <- (1 - eps^2 / (2 sigma^2)) I``, which blows
    up when ``|1 - eps^2 / (2 sigma^2)| >= 1``, i.e. ``eps >= 2 sigma``.
    """
    eps = float(step_size)
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"step_size must be a positive finite number; got {step_size!r}")
    if eps >= 2 * sigma:
        raise ValueError(
            f"step_size {eps:g} >= 2 sigma = {2 * sigma:g}: the update multiplies I by "
            f"1 - eps^2/(2 sigma^2) = {1 - eps**2 / (2 * sigma**2):g} each step and diverges; "
            "use a step size well below 2 sigma (e.g. 0.1 sigma)"
        )
    return eps


def _check_finite_chains(xp, I, step: int, eps: float, sigma: float, sampler: str):
    """Raise ``FloatingPointError`` (naming the step size) once a chain holds NaN or inf.

    Checked after every update: one cheap pass, and without it the next update would hand
    the non-finite chain to the model, whose input check reports it without the likely cause.
    """
    if not bool(xp.isfinite(I).all()):
        raise FloatingPointError(
            f"{sampler} diverged: non-finite values after {step} steps (step size {eps:g}, "
            f"sigma {sigma:g}). The scoring function may grow too fast for this step size; "
            "lower the step size or check the weights."
        )


def _check_steps(n_steps) -> int:
    n = int(n_steps)
    if n != n_steps or n < 0:
        raise ValueError(f"n_steps must be a non-negative integer; got {n_steps!r}")
    return n


def _record(record, every, step, I, trace):
    if record is not None and (step % every == 0):
        trace.append(record(step, I))


def langevin(model, I0, n_steps: int, step_size: float, rng, record=None, record_every: int = 1):
    """Unadjusted Langevin dynamics, Eqs. (5.6), (6.10), on every chain of ``I0``.

    ``I_{t+1} = I_t + (eps^2 / 2) (B_{w,delta(I_t)} - I_t / sigma^2) + eps Z_t``, ``Z_t ~ N(0, 1)``.

    Args:
        model: a :class:`~refimpl.models.GenerativeModel`.
        I0: start, ``(M, ...)`` (M parallel chains); not modified.
        n_steps: number of updates.
        step_size: ``eps`` in ``(0, 2 sigma)``.
        rng: random generator (:func:`refimpl.backend.make_rng`).
        record: optional ``record(step, I)`` called at step 0 and every ``record_every`` steps.

    Returns:
        :class:`SamplerResult` with the final chains.
    """
    eps = check_step_size(step_size, model.sigma)
    n_steps = _check_steps(n_steps)
    xp = model.xp
    I = model.scoring.prepare_images(I0).copy()
    trace: list = []
    _record(record, record_every, 0, I, trace)
    # BEGIN SOLUTION lesson 6
    for step in range(1, n_steps + 1):
        drift = model.grad_log_density(I)
        I = I + (0.5 * eps**2) * drift + eps * standard_normal(rng, I.shape, I.dtype)
        _check_finite_chains(xp, I, step, eps, model.sigma, "Langevin dynamics")
        _record(record, record_every, step, I, trace)
    return SamplerResult(I, n_steps, trace=trace)
    # END SOLUTION


def grade(
    model,
    I0,
    n_steps: int,
    step_size: float,
    tol: float = 1e-12,
    record=None,
    record_every: int = 1,
):
    """GRADE attractor dynamics: ``I <- I + (eps^2 / 2) (B_{w,delta(I)} - I / sigma^2)``, no noise.

    Gradient ascent on ``log p`` from every chain of ``I0``; a chain has converged when its
    update is smaller than ``tol * (|I| + sigma)`` (relative, with sigma as the scale of a
    mode at 0), and then stays put.

    Returns:
        :class:`SamplerResult`; ``converged (M,)`` bool.
    """
    eps = check_step_size(step_size, model.sigma)
    n_steps = _check_steps(n_steps)
    xp = model.xp
    I = model.scoring.prepare_images(I0).copy()
    moving = xp.ones(I.shape[0], dtype=bool)
    updates = xp.zeros(I.shape[0], dtype=int)
    trace: list = []
    _record(record, record_every, 0, I, trace)
    step = 0
    # BEGIN SOLUTION lesson 7
    for step in range(1, n_steps + 1):
        update = (0.5 * eps**2) * model.grad_log_density(I)
        size = xp.sqrt(squared_norm(update))
        moving = moving & (size > tol * (xp.sqrt(squared_norm(I)) + model.sigma))
        I = I + update * _per_chain(moving, I)
        updates = updates + moving
        _check_finite_chains(xp, I, step, eps, model.sigma, "GRADE dynamics")
        _record(record, record_every, step, I, trace)
        if not bool(moving.any()):
            break
    return SamplerResult(I, step, converged=~moving, chain_steps=updates, trace=trace)
    # END SOLUTION


def _per_chain(mask, I):
    """Broadcast a per-chain ``(M,)`` mask against ``I (M, ...)`` as I's dtype."""
    return mask.reshape((-1,) + (1,) * (I.ndim - 1)).astype(I.dtype)


def fixed_point(model, I0, max_steps: int = 100, record=None):
    """Fixed-point iteration ``I <- sigma^2 B_{w,delta(I)}`` (jump to the mean of the current piece).

    A chain stops when its activation pattern repeats: then ``I = sigma^2 B_{w,delta(I)}``,
    an auto-encoding point (Proposition 2, Eq. (6.11)). For the prototype model ``f`` is
    convex and every jump increases ``log p`` (see :mod:`refimpl.theorems`).

    Returns:
        :class:`SamplerResult`; ``converged (M,)`` bool; ``chain_steps (M,)`` the jumps each
        chain made (the last one lands in the piece it jumped from); ``steps`` the most.
    """
    max_steps = _check_steps(max_steps)
    xp = model.xp
    I = model.scoring.prepare_images(I0).copy()
    keys = pattern_keys(as_pattern_list(model.scoring.activation_pattern(I)))
    done = xp.zeros(I.shape[0], dtype=bool)
    jumps = xp.zeros(I.shape[0], dtype=int)
    trace: list = []
    step = 0
    # BEGIN SOLUTION lesson 7
    for step in range(1, max_steps + 1):
        target = model.piece_mean(I)
        keep = _per_chain(done, I)
        I = keep * I + (1 - keep) * target
        jumps = jumps + (~done)
        new_keys = pattern_keys(as_pattern_list(model.scoring.activation_pattern(I)))
        done = done | (new_keys == keys).all(axis=1)
        keys = new_keys
        if record is not None:
            trace.append(record(step, I))
        if bool(done.all()):
            break
    return SamplerResult(I, step, converged=done, chain_steps=jumps, trace=trace)
    # END SOLUTION


def mala(model, I0, n_steps: int, step_size: float, rng, record=None, record_every: int = 1):
    """Metropolis-adjusted Langevin: Langevin proposals accepted with the Hastings ratio.

    Proposal ``J = I + (eps^2 / 2) g(I) + eps Z``; accept with probability
    ``min(1, p(J) k(I | J) / (p(I) k(J | I)))`` where ``k(J | I) = N(J; I + (eps^2/2) g(I), eps^2)``.
    The chain then has ``p`` exactly as its stationary law, whatever ``eps``. A proposal
    with NaN or inf entries (an overflowing gradient) has no density and is rejected.

    Returns:
        :class:`SamplerResult`; ``acceptance (M,)`` is each chain's acceptance rate.
    """
    eps = check_step_size(step_size, model.sigma)
    n_steps = _check_steps(n_steps)
    xp = model.xp
    I = model.scoring.prepare_images(I0).copy()
    energy, grad = model.energy_and_grad(I)
    accepted = xp.zeros(I.shape[0], dtype=I.dtype)
    half = 0.5 * eps**2
    trace: list = []
    _record(record, record_every, 0, I, trace)
    # BEGIN SOLUTION lesson 6
    for step in range(1, n_steps + 1):
        J = I + half * grad + eps * standard_normal(rng, I.shape, I.dtype)
        finite = xp.isfinite(J.reshape(J.shape[0], -1)).all(axis=1)
        J = xp.where(_per_chain(finite, J) > 0, J, I)  # evaluate the model on finite images only
        energy_j, grad_j = model.energy_and_grad(J)
        forward = squared_norm(J - I - half * grad)  # -log k(J | I) * 2 eps^2
        backward = squared_norm(I - J - half * grad_j)
        log_ratio = (energy - energy_j) + (forward - backward) / (2 * eps**2)
        finite = (
            finite & xp.isfinite(energy_j) & xp.isfinite(grad_j.reshape(J.shape[0], -1)).all(axis=1)
        )
        accept = (xp.log(uniform(rng, (I.shape[0],), I.dtype)) < log_ratio) & finite
        mask = _per_chain(accept, I)
        I = mask * J + (1 - mask) * I
        energy = xp.where(accept, energy_j, energy)
        grad = mask * grad_j + (1 - mask) * grad
        accepted = accepted + accept
        _record(record, record_every, step, I, trace)
    rate = accepted / max(n_steps, 1)
    # END SOLUTION
    return SamplerResult(I, n_steps, acceptance=rate, trace=trace)
