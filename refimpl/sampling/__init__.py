"""Sampling from ``p(I; w) ~ exp(f(I; w)) q(I)``: Langevin, GRADE attractor, fixed points, MALA.

All samplers run many chains in parallel (the batch axis of ``I``) and take a general
``sigma`` (from the model). The stochastic ones take their randomness explicitly: a random
generator (:func:`refimpl.backend.make_rng`), or the draws themselves as arrays
(``noise``, and for MALA ``uniforms``), so that another implementation fed the same draws
must land on the same chains. With
``g(I) = d log p / dI = B_{w,delta(I)} - I / sigma^2`` (Eqs. (6.10), (9.2)):

* :func:`langevin`, Eqs. (5.6), (6.10): ``I <- I + (eps^2 / 2) g(I) + eps Z``; for sigma = 1
  this is ``I <- I - (eps^2 / 2) (I - B) + eps Z``: driven by the reconstruction error.
* :func:`grade`: the deterministic part, ``I <- I + (eps^2 / 2) g(I)``; gradient ascent on
  log p, which converges to a local mode (Proposition 2).
* :func:`fixed_point`: ``I <- sigma^2 B_{w,delta(I)}``, jump to the mean of the current
  Gaussian piece; stops when the pattern no longer changes, i.e. at an auto-encoding mode.
* :func:`mala`: Langevin proposals with a Metropolis-Hastings correction, which removes the
  O(eps^2) bias of the unadjusted chain; reports the acceptance rate.
"""

from refimpl.sampling.samplers import (
    SamplerResult,
    check_step_size,
    draw_langevin_noise,
    draw_mala_randomness,
    fixed_point,
    grade,
    grade_mode_residual,
    grade_stops,
    langevin,
    mala,
)

__all__ = [
    "SamplerResult",
    "check_step_size",
    "draw_langevin_noise",
    "draw_mala_randomness",
    "fixed_point",
    "grade",
    "grade_mode_residual",
    "grade_stops",
    "langevin",
    "mala",
]
