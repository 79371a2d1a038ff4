"""The samplers; see :mod:`refimpl.sampling` for the equations."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from refimpl.backend import namespace_of, resolve_dtype, standard_normal, uniform
from refimpl.convnet.pieces import as_pattern_list, pattern_keys
from refimpl.models.reference import squared_norm
from refimpl.validation import check_finite, check_float_array, shape_str


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


def _rows(mask, I):
    """A per-chain ``(M,)`` boolean mask shaped to broadcast against ``I (M, ...)``."""
    return mask.reshape((-1,) + (1,) * (I.ndim - 1))


def _select(mask, new, old):
    """Per chain, ``new`` where ``mask`` holds, else ``old``.

    A selection, not the blend ``mask * new + (1 - mask) * old``: the blend turns an infinite
    or NaN entry of the side not taken into NaN (``0 * inf``), which would freeze a chain.
    """
    xp = namespace_of(new, old)
    return xp.where(_rows(mask, new), new, old)


def _check_noise(noise, n_steps: int, I, name: str = "noise"):
    """Pre-drawn standard normal noise must be ``(n_steps, *I.shape)``, float, finite."""
    check_float_array(noise, name)
    expected = (n_steps,) + tuple(I.shape)
    if tuple(noise.shape) != expected:
        raise ValueError(
            f"{name} must have shape {shape_str(expected)} (n_steps, then the chains' shape); "
            f"got {shape_str(noise.shape)}"
        )
    check_finite(noise, name)
    return noise.astype(I.dtype, copy=False)


def _randomness(rng, noise, name: str = "noise"):
    """Exactly one source of randomness: a generator ``rng`` or pre-drawn ``noise``."""
    if (rng is None) == (noise is None):
        raise ValueError(
            f"pass exactly one of rng (a generator, e.g. refimpl.backend.make_rng(seed)) and "
            f"{name} (pre-drawn standard normal draws); got "
            + ("neither" if rng is None else "both")
        )


def draw_langevin_noise(rng, n_steps: int, shape, dtype=None):
    """The standard normal draws ``Z_t`` that :func:`langevin` takes from ``rng``.

    Returns ``(n_steps, *shape)``.

    ``langevin(model, I0, n, eps, rng)`` draws ``Z_1, ..., Z_n`` one step at a time in this
    order, so ``langevin(model, I0, n, eps, noise=draw_langevin_noise(rng, n, I0.shape))``
    gives the same chains from a generator in the same state.
    """
    return standard_normal(rng, (int(n_steps),) + tuple(shape), dtype)


def draw_mala_randomness(rng, n_steps: int, shape, dtype=None):
    """``(noise (n_steps, *shape), uniforms (n_steps, M))`` as :func:`mala` draws them from ``rng``.

    MALA draws, at each step, the proposal noise ``Z_t`` and then one uniform per chain for
    the accept/reject decision, so the two streams interleave step by step.
    """
    dtype = resolve_dtype(dtype)
    noise, uniforms = [], []
    for _ in range(int(n_steps)):
        noise.append(standard_normal(rng, tuple(shape), dtype))
        uniforms.append(uniform(rng, (int(shape[0]),), dtype))
    xp = namespace_of(*noise, *uniforms)
    if not noise:
        return xp.zeros((0,) + tuple(shape), dtype=dtype), xp.zeros((0, int(shape[0])), dtype)
    return xp.stack(noise), xp.stack(uniforms)


def langevin(
    model,
    I0,
    n_steps: int,
    step_size: float,
    rng=None,
    record=None,
    record_every: int = 1,
    noise=None,
):
    """Unadjusted Langevin dynamics, Eqs. (5.6), (6.10), on every chain of ``I0``.

    ``I_{t+1} = I_t + (eps^2 / 2) (B_{w,delta(I_t)} - I_t / sigma^2) + eps Z_t``, ``Z_t ~ N(0, 1)``.

    Args:
        model: a :class:`~refimpl.models.GenerativeModel`.
        I0: start, ``(M, ...)`` (M parallel chains); not modified.
        n_steps: number of updates.
        step_size: ``eps`` in ``(0, 2 sigma)``.
        rng: random generator (:func:`refimpl.backend.make_rng`) for the draws ``Z_t``; or
        noise: the draws themselves, ``(n_steps, *I0.shape)`` standard normals (exactly one
            of ``rng`` and ``noise``). :func:`draw_langevin_noise` draws them as ``rng`` would.
        record: optional ``record(step, I)`` called at step 0 and every ``record_every`` steps.

    Returns:
        :class:`SamplerResult` with the final chains.

    Raises:
        FloatingPointError: naming the step size, once a chain holds NaN or inf; checked
            after every update (``_check_finite_chains``), the last one included.
    """
    eps = check_step_size(step_size, model.sigma)
    n_steps = _check_steps(n_steps)
    _randomness(rng, noise)
    xp = model.xp
    I = model.scoring.prepare_images(I0).copy()
    if noise is not None:
        noise = _check_noise(noise, n_steps, I)
    trace: list = []
    _record(record, record_every, 0, I, trace)
    # BEGIN SOLUTION lesson 6
    for step in range(1, n_steps + 1):
        Z = standard_normal(rng, I.shape, I.dtype) if noise is None else noise[step - 1]
        I = I + (0.5 * eps**2) * model.grad_log_density(I) + eps * Z
        _check_finite_chains(xp, I, step, eps, model.sigma, "Langevin dynamics")
        _record(record, record_every, step, I, trace)
    return SamplerResult(I, n_steps, trace=trace)
    # END SOLUTION


def grade_stops(update_norm, image_norm, tol: float, sigma: float):
    """GRADE's stopping rule, per chain: ``||update|| <= tol (||I|| + sigma)``.

    Relative to the image, with ``sigma`` as the scale of a mode at 0. At the stop, with
    ``update = (eps^2 / (2 sigma^2)) (sigma^2 B - I)``, the chain is within
    :func:`grade_mode_residual` of auto-encoding.
    """
    return update_norm <= tol * (image_norm + sigma)


def grade_mode_residual(step_size: float, sigma: float, tol: float) -> float:
    """Bound on ``||I - sigma^2 B_{w,delta(I)}|| / (||I|| + sigma)`` where GRADE stops.

    The update is ``(eps^2 / (2 sigma^2)) (sigma^2 B - I)``, and :func:`grade_stops` allows
    ``||update|| <= tol (||I|| + sigma)``, so ``||I - sigma^2 B|| <= (2 sigma^2 / eps^2) tol
    (||I|| + sigma)``. (Rounding adds ~1e-15; see :mod:`refimpl.numerics`.)
    """
    return 2 * sigma**2 * tol / step_size**2


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
    update is small by :func:`grade_stops` (``||update|| <= tol (||I|| + sigma)``), and then
    stays put. ``tol`` must be finite and >= 0 (0: stop only on an exact fixed point).

    Returns:
        :class:`SamplerResult`; ``converged (M,)`` bool, ``chain_steps (M,)`` the updates each
        chain made, ``steps`` the iterations run (the last one finds every chain stopped).

    Raises:
        FloatingPointError: naming the step size, once a chain holds NaN or inf; checked
            after every update (``_check_finite_chains``).
    """
    eps = check_step_size(step_size, model.sigma)
    n_steps = _check_steps(n_steps)
    if isinstance(tol, bool) or not (isinstance(tol, numbers.Real) and 0 <= tol < math.inf):
        raise ValueError(
            f"tol must be a finite number >= 0; got {tol!r} (NaN would never stop a chain, "
            "inf would stop every chain at once)"
        )
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
        moving = moving & ~grade_stops(size, xp.sqrt(squared_norm(I)), tol, model.sigma)
        I = _select(moving, I + update, I)
        updates = updates + moving
        _check_finite_chains(xp, I, step, eps, model.sigma, "GRADE dynamics")
        _record(record, record_every, step, I, trace)
        if not bool(moving.any()):
            break
    return SamplerResult(I, step, converged=~moving, chain_steps=updates, trace=trace)
    # END SOLUTION


def fixed_point(model, I0, max_steps: int = 100, record=None):
    """Fixed-point iteration ``I <- sigma^2 B_{w,delta(I)}``: jump to the mean of the current piece.

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
        I = _select(done, I, model.piece_mean(I))
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


def mala(
    model,
    I0,
    n_steps: int,
    step_size: float,
    rng=None,
    record=None,
    record_every: int = 1,
    noise=None,
    uniforms=None,
):
    """Metropolis-adjusted Langevin: Langevin proposals accepted with the Hastings ratio.

    Proposal ``J = I + (eps^2 / 2) g(I) + eps Z``; accept with probability
    ``min(1, p(J) k(I | J) / (p(I) k(J | I)))`` where
    ``k(J | I) = N(J; I + (eps^2/2) g(I), eps^2)``, i.e. accept when
    ``log U < log p(J) - log p(I) + log k(I | J) - log k(J | I)``. The chain then has ``p``
    exactly as its stationary law, whatever ``eps``. A proposal with NaN or inf entries (an
    overflowing gradient) has no density and is rejected.

    Args:
        rng: random generator for ``Z_t`` and ``U_t``; or
        noise, uniforms: the draws themselves: ``noise (n_steps, *I0.shape)`` standard
            normals and ``uniforms (n_steps, M)`` in ``[0, 1)`` (both, and no ``rng``).
            :func:`draw_mala_randomness` draws them as ``rng`` would.

    Returns:
        :class:`SamplerResult`; ``acceptance (M,)`` is each chain's acceptance rate.
    """
    eps = check_step_size(step_size, model.sigma)
    n_steps = _check_steps(n_steps)
    if (noise is None) != (uniforms is None):
        raise ValueError("pass noise and uniforms together (or neither, with rng)")
    _randomness(rng, noise, "noise and uniforms")
    xp = model.xp
    I = model.scoring.prepare_images(I0).copy()
    if noise is not None:
        noise = _check_noise(noise, n_steps, I)
        uniforms = _check_noise(uniforms, n_steps, I.reshape(len(I), -1)[:, 0], "uniforms")
    energy, grad = model.energy_and_grad(I)
    accepted = xp.zeros(I.shape[0], dtype=I.dtype)
    half = 0.5 * eps**2
    trace: list = []
    _record(record, record_every, 0, I, trace)
    # BEGIN SOLUTION lesson 6
    for step in range(1, n_steps + 1):
        Z = standard_normal(rng, I.shape, I.dtype) if noise is None else noise[step - 1]
        J = I + half * grad + eps * Z
        finite = xp.isfinite(J.reshape(J.shape[0], -1)).all(axis=1)
        J = _select(finite, J, I)  # evaluate the model on finite images only
        energy_j, grad_j = model.energy_and_grad(J)
        forward = squared_norm(J - I - half * grad)  # -log k(J | I) * 2 eps^2
        backward = squared_norm(I - J - half * grad_j)
        log_ratio = (energy - energy_j) + (forward - backward) / (2 * eps**2)
        finite = (
            finite & xp.isfinite(energy_j) & xp.isfinite(grad_j.reshape(J.shape[0], -1)).all(axis=1)
        )
        U = uniform(rng, (I.shape[0],), I.dtype) if uniforms is None else uniforms[step - 1]
        accept = (xp.log(U) < log_ratio) & finite
        I = _select(accept, J, I)
        energy = xp.where(accept, energy_j, energy)
        grad = _select(accept, grad_j, grad)
        accepted = accepted + accept
        _record(record, record_every, step, I, trace)
    rate = accepted / max(n_steps, 1)
    # END SOLUTION
    return SamplerResult(I, n_steps, acceptance=rate, trace=trace)
