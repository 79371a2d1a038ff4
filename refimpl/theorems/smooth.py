"""Section 9: a smooth non-linearity (softplus), Eqs. (9.1)-(9.2).

With ``h(r) = log(1 + e^r)`` the activation variables become ``delta = h'(z)`` (no longer
binary), the top-down pass with these delta still gives ``B = df/dI`` ("representation =
back-propagation"), and Proposition 2 still holds: GRADE modes satisfy ``I = sigma^2 df/dI``.
Theorem 1 does not: ``log p + |I - sigma^2 B|^2 / (2 sigma^2)`` now varies from image to
image, which is the negative control the paper itself predicts.
"""

from __future__ import annotations

import numpy as np

from refimpl.backend import to_backend, to_numpy
from refimpl.models.reference import squared_norm
from refimpl.theorems.result import CheckResult


def check_smooth_top_down_is_gradient(
    model, images, rng, h: float = 1e-5, name="section9-B-is-gradient"
) -> CheckResult:
    """(9.1)-(9.2): the top-down pass with ``delta = h'(z)`` equals ``df/dI``.

    Compared with backprop (exact) and with central differences of ``f`` along random unit
    directions ``v``: ``(f(I + h v) - f(I - h v)) / 2h = <B, v> + O(h^2)``.
    """
    net = model.scoring
    _, B = net.linear_piece(images)
    B = to_numpy(B)
    exact_gap = float(np.linalg.norm(B - to_numpy(net.grad_input(images))) / np.linalg.norm(B))
    v = rng.standard_normal(images.shape)
    v /= np.sqrt(squared_norm(v))[:, None, None, None]
    hv = to_backend(h * v, net.xp, images.dtype)
    numeric = (to_numpy(net.score(images + hv)) - to_numpy(net.score(images - hv))) / (2 * h)
    predicted = (B * v).reshape(len(images), -1).sum(1)
    fd_gap = float(np.max(np.abs(numeric - predicted)) / (np.max(np.abs(predicted)) + 1e-300))
    return CheckResult(
        name,
        "smooth h: top-down B with delta = h'(z) equals df/dI",
        "(9.1),(9.2)",
        max(exact_gap, fd_gap),
        1e-6,
        details=dict(vs_backprop=exact_gap, vs_finite_differences=fd_gap, step=h),
    )


def check_theorem1_fails_for_smooth_h(
    model, images, rng, move: float = 1e-3, name="section9-theorem1-fails"
) -> CheckResult:
    """Theorem 1's piece constant varies under softplus: a check that must fail.

    For each image ``I`` and a nearby ``J = I + move * sigma * v``, compare
    ``c(I) = log p(I) + |I - sigma^2 B(I)|^2 / (2 sigma^2)`` (up to log Z) with ``c(J)``. Under
    ReLU, ``J`` stays in ``I``'s piece (the move is tiny) and ``c`` is the same to rounding
    (~1e-16 relative); under softplus ``c`` varies to first order, ~1e-7 for this move, so
    the residual must exceed 1e-9.
    """
    v = rng.standard_normal(images.shape)
    v /= np.sqrt(squared_norm(v))[:, None, None, None]
    J = images + to_backend(move * model.sigma * v, model.xp, images.dtype)
    c_i, c_j = to_numpy(model.piece_log_constant(images)), to_numpy(model.piece_log_constant(J))
    f = np.abs(to_numpy(model.scoring.score(images))) + to_numpy(squared_norm(images)) / (
        2 * model.sigma**2
    )
    residual = float(np.max(np.abs(c_i - c_j) / (f + 1.0)))
    return CheckResult(
        name,
        "smooth h: Theorem 1's piecewise-Gaussian form is lost (must fail)",
        "section 9",
        residual,
        1e-9,
        must_exceed=True,
        details=dict(images=len(images), move=move),
    )
