"""Samplers of the classifiers read as generative models: GMMC's staged and noise-injected
sampling, SGLD as JEM runs it, and Langevin on a class node.

* :func:`staged_sampling`, Yang et al. (GMMC) Eq. (8) and Algorithm 1 lines 4-7: draw a target
  ``z = mu_y + gamma n`` once per chain (``n ~ N(0, I)``), then descend the regression energy
  ``|phi(x) - z|^2 / 2``: ``x <- x - alpha (dphi/dx)^T (phi(x) - z)``. No noise in ``x``: the
  randomness is all in ``z``, a draw of ``p(phi | y) = N(mu_y, gamma^2 I)``.
* :func:`noise_injected_sampling`, Eqs. (9)-(10): the same step with a fresh ``z_t`` at every
  step. Since
  ``|phi - mu - gamma n|^2 / 2 = |phi - mu|^2 / 2 + gamma^2 |n|^2 / 2 - gamma <phi - mu, n>``,
  this is descent on ``E(x, y)`` plus the gradient-modulated noise ``alpha gamma (dphi/dx)^T n``.
* :func:`sgld`, GMMC Eq. (3), with JEM's decoupling of the two terms:
  ``x <- x + alpha d log p(x)/dx + s n``. Langevin proper has ``s = sqrt(2 alpha)``; JEM uses
  ``alpha = 1, s = 0.01`` (a short-run, nearly deterministic ascent), which is what is
  reproduced when asked.
* :func:`class_node_langevin`, Dai, Lu & Wu (2015, supplementary section B) with Xie et al.'s
  Langevin (6.10) on ``log p(I | c) = f_c(I) + log q(I) + const`` (Eq. (3.1)), through
  :func:`refimpl.sampling.langevin`.

GMMC and JEM define ``p(x)`` on image space without a reference distribution; their chains
start in the data box ``U(-1, 1)`` and (as in the GMMC authors' code) are clipped back into it
after every step, which makes the density proper on the box. Every sampler takes its noise as
an array or draws it from an explicit generator, and raises ``FloatingPointError`` naming the
step size when a chain stops being finite.
"""

from __future__ import annotations

import math

from refimpl.backend import namespace_of, standard_normal
from refimpl.models.discriminative import check_labels
from refimpl.models.generative import GenerativeModel
from refimpl.sampling import SamplerResult, langevin
from refimpl.validation import shape_str

__all__ = [
    "ClassNodes",
    "class_node_langevin",
    "noise_injected_sampling",
    "sgld",
    "staged_sampling",
]


def _check_step(value, name: str) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return value


def _check_n_steps(n_steps) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer; got {n_steps!r}")
    return n_steps


def _noise(noise, rng, shape, dtype, name: str):
    """``noise`` if given (checked against ``shape``), else standard normal draws from ``rng``."""
    if noise is None:
        if rng is None:
            raise ValueError(f"give either {name} (an array of shape {shape_str(shape)}) or rng")
        return standard_normal(rng, shape, dtype)
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_str(shape)}; got {shape_str(noise.shape)}")
    return noise.astype(dtype, copy=False)


def _clip(xp, x, box):
    return x if box is None else xp.clip(x, box[0], box[1])


def _check_finite(xp, x, step: int, what: str, hint: str):
    if not bool(xp.isfinite(x).all()):
        raise FloatingPointError(f"{what} diverged: non-finite images after {step} steps ({hint})")


def _targets(model, labels, gamma, noise):
    """``z = mu_y + gamma n``: ``(K,)`` labels and ``(K, d)`` noise -> ``(K, d)`` targets."""
    return model.centres[labels] + gamma * noise


def staged_sampling(
    model,
    x0,
    labels,
    n_steps: int,
    step_size: float,
    gamma: float,
    noise=None,
    rng=None,
    box=(-1.0, 1.0),
    record=None,
):
    """Staged sampling, GMMC Eq. (8): ``z = mu_y + gamma n`` once, then descend ``|phi - z|^2 / 2``.

    Args:
        model: a :class:`~refimpl.classify.gmmc.GMMC`.
        x0: start images ``(K, C, H, W)`` (not modified); labels: ``(K,)`` the classes ``y'``.
        n_steps: ``tau``; step_size: ``alpha``; gamma: the spread of the targets around ``mu_y``.
        noise: ``(K, d)`` standard normal ``n``, or None to draw it from ``rng``.
        box: clip the images to ``[low, high]`` after every step (None: no clipping).
        record: optional ``record(step, x)`` called at step 0 and after every step.

    Returns:
        :class:`~refimpl.sampling.SamplerResult` (``trace`` holds what ``record`` returned).
    """
    n_steps, alpha = _check_n_steps(n_steps), _check_step(step_size, "step_size")
    x = model.net.prepare_images(x0).copy()
    xp = model.xp
    d = model.centres.shape[1]
    noise = _noise(noise, rng, (x.shape[0], d), x.dtype, "noise")
    trace = [] if record is None else [record(0, x)]
    # BEGIN SOLUTION lesson 13
    z = _targets(model, labels, gamma, noise)
    for step in range(1, n_steps + 1):
        _, grad = model.target_energy_and_grad(x, z)
        x = _clip(xp, x - alpha * grad, box)
        _check_finite(xp, x, step, "staged sampling", f"step size {alpha:g}; lower it")
        if record is not None:
            trace.append(record(step, x))
    return SamplerResult(x, n_steps, trace=trace)
    # END SOLUTION


def noise_injected_sampling(
    model,
    x0,
    labels,
    n_steps: int,
    step_size: float,
    gamma: float,
    noise=None,
    rng=None,
    box=(-1.0, 1.0),
    record=None,
):
    """Noise-injected sampling, GMMC Eqs. (9)-(10): a new target ``mu_y + gamma n_t`` every step.

    ``x <- x - alpha (dphi/dx)^T (phi(x) - mu_y) + alpha gamma (dphi/dx)^T n_t``: descent on
    ``E(x, y)`` (with ``gamma = 1``) plus gradient-modulated noise, an analogue of SGLD.

    Args:
        noise: ``(n_steps, K, d)`` standard normal ``n_t``, or None to draw it from ``rng``;
        the rest as :func:`staged_sampling`.
    """
    n_steps, alpha = _check_n_steps(n_steps), _check_step(step_size, "step_size")
    x = model.net.prepare_images(x0).copy()
    xp = model.xp
    d = model.centres.shape[1]
    noise = _noise(noise, rng, (n_steps, x.shape[0], d), x.dtype, "noise")
    trace = [] if record is None else [record(0, x)]
    for step in range(1, n_steps + 1):
        _, grad = model.target_energy_and_grad(x, _targets(model, labels, gamma, noise[step - 1]))
        x = _clip(xp, x - alpha * grad, box)
        _check_finite(xp, x, step, "noise-injected sampling", f"step size {alpha:g}; lower it")
        if record is not None:
            trace.append(record(step, x))
    return SamplerResult(x, n_steps, trace=trace)


def sgld(
    grad_log_density,
    x0,
    n_steps: int,
    step_size: float,
    noise_std: float,
    noise=None,
    rng=None,
    box=(-1.0, 1.0),
    record=None,
):
    """SGLD as JEM runs it (GMMC Eq. (3)): ``x <- x + alpha d log p(x)/dx + s n``, ``n ~ N(0, I)``.

    Args:
        grad_log_density: ``x (K, ...) -> d log p(x) / dx`` (e.g. the gradient part of
            ``Classifier.log_px_and_grad``).
        x0: start ``(K, ...)``; n_steps; step_size: ``alpha``; noise_std: ``s`` (``sqrt(2 alpha)``
            for Langevin dynamics proper, 0.01 in JEM).
        noise: ``(n_steps, K, ...)`` standard normal, or None to draw it from ``rng``.
        box: clip to ``[low, high]`` after every step (None: no clipping).
    """
    n_steps, alpha = _check_n_steps(n_steps), _check_step(step_size, "step_size")
    s = float(noise_std)
    if not (s >= 0 and math.isfinite(s)):
        raise ValueError(f"noise_std must be a non-negative finite number; got {noise_std!r}")
    xp = namespace_of(x0)
    x = x0.copy()
    noise = _noise(noise, rng, (n_steps,) + tuple(x.shape), x.dtype, "noise") if s > 0 else None
    trace = [] if record is None else [record(0, x)]
    for step in range(1, n_steps + 1):
        x = x + alpha * grad_log_density(x)
        if s > 0:
            x = x + s * noise[step - 1]
        x = _clip(xp, x, box)
        _check_finite(xp, x, step, "SGLD", f"step size {alpha:g}, noise {s:g}; lower the step size")
        if record is not None:
            trace.append(record(step, x))
    return SamplerResult(x, n_steps, trace=trace)


class ClassNodes:
    """The class nodes ``f_{y_k}`` of a classifier, one per chain, as :mod:`refimpl.sampling` takes.

    Chain ``k`` of a batch follows class ``labels[k]``: ``score(I)[k] = L_{y_k}(I_k)`` (for the
    softmax head ``f_{y_k}(I_k) + b_{y_k}``, Eqs. (2.2)-(2.3)) with its input gradient;
    :class:`~refimpl.models.GenerativeModel` adds the reference ``q``.
    """

    def __init__(self, model, labels):
        check_labels(labels, len(labels), model.n_classes)
        self.model, self.labels = model, labels

    @property
    def xp(self):
        return self.model.xp

    @property
    def dtype(self):
        return self.model.dtype

    def prepare_images(self, I, name: str = "I"):
        I = self.model.net.prepare_images(I, name)
        if I.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"{name} holds {I.shape[0]} chains but {self.labels.shape[0]} labels were given"
            )
        return I

    def score_and_grad_input(self, I):
        return self.model.logits_and_grad(self.prepare_images(I), self.labels)

    def score(self, I):
        return self.score_and_grad_input(I)[0]

    def grad_input(self, I):
        return self.score_and_grad_input(I)[1]


def class_node_langevin(model, labels, I0, n_steps: int, step_size: float, rng, sigma=None):
    """Langevin (Xie et al. (6.10)) on ``log p(I | y_k) = f_{y_k}(I) + log q(I) + const``, (3.1).

    Chain ``k`` samples class ``labels[k]``:
    ``I <- I + (eps^2 / 2) (df_{y_k}/dI - I / sigma^2) + eps Z``. Dai, Lu & Wu (2015,
    supplementary section B) draw images from the class nodes of a trained classifier this
    way, and the same chains give the model expectations of their generative gradient.
    ``q = N(0, sigma^2 I)`` is the model's reference (or ``sigma`` if given).

    Args:
        model: a classifier; labels: ``(K,)``; I0: ``(K, C, H, W)`` starts; n_steps; step_size
            ``eps`` in ``(0, 2 sigma)``; rng: the noise generator.

    Returns:
        :class:`~refimpl.sampling.SamplerResult`.
    """
    sigma = sigma if sigma is not None else getattr(model, "sigma", None)
    if sigma is None:
        raise ValueError(
            "class-node Langevin needs a reference q = N(0, sigma^2 I): the model has none; "
            "pass sigma"
        )
    return langevin(GenerativeModel(ClassNodes(model, labels), sigma), I0, n_steps, step_size, rng)
