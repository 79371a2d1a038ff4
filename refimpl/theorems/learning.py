"""Learning: the maximum-likelihood gradient (5.8)/(7.2) and Proposition 3 (7.5)-(7.9).

* **ML gradient.** ``dL/dw = mean_m df(I_m)/dw - E_w[df/dw]`` (data term minus model
  expectation) is compared with central finite differences of the *exact* mean
  log-likelihood ``L(w) = mean_m f(I_m; w) - log Z(w)``, both computed by the exact
  low-dimensional references of :mod:`refimpl.exact`.

* **Proposition 3.** One Langevin step from ``I_obs`` with the noise replaced by its mean,
  ``I_syn = I_obs + (eps^2/2)(B - I_obs/sigma^2)``. If the pattern is unchanged,
  ``f = alpha + <I, B>`` on both images, so (Eqs. (7.5), (7.8)-(7.9))

      df/dw(I_obs) - df/dw(I_syn) = <I_obs - I_syn, dB/dw> = -(eps^2 / (2 sigma^4)) dR/dw,

  with ``R(w) = |I_obs - sigma^2 B_{w,delta}|^2 / 2`` at the *fixed* pattern ``delta``: the
  one-step contrastive divergence gradient is a multiple of the reconstruction gradient
  (for the paper's sigma = 1: ``-(eps^2/2) dR/dw``, exactly, not just proportionally).
  With the noise kept, its Monte Carlo average converges to the same value.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.backend import to_backend, to_numpy
from refimpl.convnet.pieces import as_pattern_list, pattern_keys
from refimpl.exact import (
    current_parameters,
    flatten,
    log_likelihood,
    ml_gradient,
    with_flat_parameters,
)
from refimpl.learning.algorithm import mean_langevin_step, reconstruction_loss
from refimpl.theorems.result import CheckResult

Z_CRITICAL = 5.0


def check_ml_gradient(
    model,
    data,
    event_shape,
    coords,
    h: float = 1e-5,
    rtol_quad: float = 1e-12,
    tolerance: float = 1e-7,
    name="ml-gradient",
    gradient_fn=ml_gradient,
) -> CheckResult:
    """The ML gradient equals finite differences of the exact mean log-likelihood.

    Central differences at steps ``h`` and ``h/2`` combined by Richardson extrapolation
    (error ``O(h^4)``), so the residual measures the gradient, not the difference scheme.

    Args:
        coords: indices into the flat parameter vector to check (all, or a subset in 2-D).
        gradient_fn: the gradient under test (a negative control passes a wrong one).
    """
    full = gradient_fn(model, data, event_shape)
    analytic = full[coords]
    base = flatten(current_parameters(model.scoring))

    def central(c, step):
        values = []
        for sign in (1, -1):
            w = base.copy()
            w[c] += sign * step
            values.append(
                log_likelihood(
                    with_flat_parameters(model.scoring, w),
                    model.sigma,
                    data,
                    event_shape,
                    rtol_quad,
                )
            )
        return (values[0] - values[1]) / (2 * step)

    # Richardson extrapolation cancels the O(h^2) truncation error of central differences
    numeric = np.array([(4 * central(c, h / 2) - central(c, h)) / 3 for c in coords])
    # relative to the whole gradient, so that a subset of nearly dead coordinates measures the
    # gradient's error rather than the finite differences' noise
    scale = max(np.linalg.norm(full), np.linalg.norm(numeric))
    residual = float(np.linalg.norm(analytic - numeric) / scale) if scale > 0 else 0.0
    dim = int(np.prod(event_shape))
    return CheckResult(
        name,
        f"{dim}-D: ML gradient = d/dw of the exact log-likelihood",
        "(5.8),(7.2)",
        residual,
        tolerance,
        details=dict(
            parameters_checked=len(coords),
            parameters=len(base),
            data=len(data),
            gradient_norm=float(np.linalg.norm(full)),
            step=h,
            sigma=model.sigma,
        ),
    )


# --- Proposition 3 ------------------------------------------------------------------------------


def _same_pattern_rows(scoring, a, b) -> np.ndarray:
    """Host bool ``(M,)``: rows of ``a`` and ``b`` (on ``scoring``'s backend) with one pattern."""
    ka = pattern_keys(as_pattern_list(scoring.activation_pattern(a)))
    kb = pattern_keys(as_pattern_list(scoring.activation_pattern(b)))
    return to_numpy((ka == kb).all(axis=1))


def check_proposition3(
    model, I_obs, step_size: float, coords, h: float = 1e-6, name="proposition3-cd-reconstruction"
) -> CheckResult:
    """ConvNet: noise-free one-step CD gradient = ``-(eps^2 / (2 sigma^4)) dR/dw`` at fixed pattern.

    ``dR/dw`` by central differences of :func:`reconstruction_error` (a polynomial in w,
    so they are exact to ~h^2); the CD side by backprop at the two images. Only images whose
    pattern the step keeps are used (Proposition 3's condition); if fewer than two do, eps
    is halved (up to 8 times) and the value used is reported.
    """
    net, sigma = model.scoring, model.sigma
    for _ in range(8):  # Proposition 3 needs steps that keep the pattern: halve eps until some do
        I_syn = mean_langevin_step(model, I_obs, step_size)
        keep = _same_pattern_rows(net, I_obs, I_syn)
        if keep.sum() >= min(2, len(keep)):
            break
        step_size /= 2
    I_obs, I_syn = I_obs[keep], I_syn[keep]
    if len(I_obs) == 0:
        return CheckResult(
            name,
            "CD gradient = -(eps^2/2 sigma^4) d(reconstruction error)/dw",
            "(7.5)-(7.9)",
            math.inf,
            1e-6,
            details=dict(images_kept=0),
        )
    cd = flatten(net.grad_params(I_obs)) - flatten(net.grad_params(I_syn))
    pattern = net.activation_pattern(I_obs)
    base = flatten(net.parameters())
    grad_R = np.empty(len(coords))
    for i, c in enumerate(coords):
        values = []
        for step in (h, -h):
            w = base.copy()
            w[c] += step
            values.append(reconstruction_loss(with_flat_parameters(net, w), pattern, I_obs, sigma))
        grad_R[i] = (values[0] - values[1]) / (2 * h)
    predicted = -(step_size**2 / (2 * sigma**4)) * grad_R
    actual = cd[coords]
    scale = max(np.linalg.norm(actual), np.linalg.norm(predicted))
    residual = float(np.linalg.norm(actual - predicted) / scale) if scale > 0 else math.inf
    return CheckResult(
        name,
        "CD gradient = -(eps^2/2 sigma^4) d(reconstruction error)/dw",
        "(7.5)-(7.9)",
        residual,
        1e-6,
        details=dict(
            images_kept=int(keep.sum()),
            images=len(keep),
            parameters_checked=len(coords),
            step_size=step_size,
            sigma=sigma,
            cd_norm=float(np.linalg.norm(actual)),
        ),
    )


def check_proposition3_noisy(
    model, I_obs, step_size: float, rng, draws: int = 200000, name="proposition3-cd-monte-carlo"
) -> CheckResult:
    """With the Langevin noise kept, the Monte Carlo mean of the CD gradient converges to it.

    Prototype model: ``df/dw_k = delta_k I``, ``df/db_k = delta_k``. ``I_obs`` should lie far
    from the hyperplanes (see :func:`far_from_kinks`) so no draw changes the pattern.
    Residual: the largest |z| of (Monte Carlo mean - noise-free value) over the gradient's
    coordinates; ``details`` gives the standard errors and how far the target is resolved.
    """
    proto, sigma = model.scoring, model.sigma

    def device(a):
        return to_backend(a, proto.xp, proto.dtype)

    target = flatten(proto.grad_params(I_obs)) - flatten(
        proto.grad_params(mean_langevin_step(model, I_obs, step_size))
    )
    drift = to_numpy(mean_langevin_step(model, I_obs, step_size))
    observed = to_numpy(I_obs)
    total = np.zeros_like(target)
    total_sq = np.zeros_like(target)
    kept, batches = 0, max(1, draws // 20000)
    for _ in range(batches):
        n = draws // batches
        noise = rng.standard_normal((n,) + I_obs.shape)  # on the host: the same on every backend
        I_syn = drift[None] + step_size * noise  # (n, M, D)
        flat_syn = device(I_syn.reshape(-1, I_obs.shape[1]))
        keep = _same_pattern_rows(
            proto, device(np.repeat(observed[None], n, 0).reshape(-1, I_obs.shape[1])), flat_syn
        )
        kept += int(keep.sum())
        # df/dw summed over the M observed images, per draw
        delta = (
            to_numpy(proto.activation_pattern(flat_syn)).astype(float).reshape(n, len(I_obs), -1)
        )
        dW = np.einsum("nmk,nmd->nkd", delta, I_syn).reshape(n, -1)
        grads = np.concatenate([dW, delta.sum(1)], axis=1)
        sample = flatten(proto.grad_params(I_obs))[None] - grads
        total += sample.sum(0)
        total_sq += (sample**2).sum(0)
    n_total = batches * (draws // batches)
    mean = total / n_total
    se = np.sqrt(np.maximum(total_sq / n_total - mean**2, 0) / (n_total - 1))
    varies = se > 0
    z = np.abs(mean - target)[varies] / se[varies]
    resolved = np.abs(target)[varies] / se[varies]
    if not varies.any():  # every unit off at every observation: nothing to average
        z = resolved = np.array([math.inf])
    return CheckResult(
        name,
        "CD with noise: Monte Carlo mean -> reconstruction gradient (max |z|)",
        "(7.7),(7.9)",
        float(z.max()),
        Z_CRITICAL,
        details=dict(
            draws=n_total,
            pattern_kept_fraction=kept / (n_total * len(I_obs)),
            standard_error_max=float(se.max()),
            target_in_standard_errors=float(resolved.max()),
            step_size=step_size,
            sigma=sigma,
        ),
    )


def far_from_kinks(proto, candidates, margin: float):
    """Rows of ``candidates (n, D)`` farther than ``margin`` from every hyperplane and with
    at least one unit on (else the CD gradient is identically zero).

    ``candidates`` live on ``proto``'s backend, and so do the rows returned."""
    r = to_numpy(proto.responses(candidates))
    norms = np.linalg.norm(to_numpy(proto.weight), axis=1)
    keep = ((np.abs(r) / norms).min(axis=1) > margin) & (r > 0).any(axis=1)
    return candidates[keep]
