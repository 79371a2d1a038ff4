"""Checks of the representational structure: engine identities (6.8), Theorem 1, Proposition 2.

Each ``check_*`` takes its inputs (a model, images, ...) explicitly and returns a
:class:`CheckResult`, so a test can hand it a deliberately broken model and watch it fail.
Models and images may live on any backend (the images on the model's); the statistics are
computed on the host from explicit copies (:func:`~refimpl.backend.to_numpy`).
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.backend import to_backend, to_numpy
from refimpl.convnet import basis_functions, piece_from_basis
from refimpl.convnet.pieces import as_pattern_list, image_in_same_piece, pattern_keys
from refimpl.models.reference import squared_norm
from refimpl.numerics import EXACT, relative_error
from refimpl.sampling import fixed_point, grade, grade_mode_residual
from refimpl.theorems.result import CheckResult

GRADE_TOL = 1e-12  # GRADE's stopping tolerance in these checks (its default)


def _rel(a, b) -> float:
    return relative_error(np.asarray(to_numpy(a), float), np.asarray(to_numpy(b), float))


# --- engine identities ------------------------------------------------------------------


def check_piece_identity(nets_and_images, name="engine-piece-identity") -> CheckResult:
    """``f(I) = alpha + <I, B>`` (Eq. (6.8)) on several ConvNets.

    The residual is relative to the size of the terms.
    """
    worst = 0.0
    for net, I in nets_and_images:
        f = to_numpy(net.score(I))
        alpha, B = (to_numpy(a) for a in net.linear_piece(I))
        terms = (to_numpy(I) * B).reshape(len(I), -1)
        gap = np.abs(f - alpha - terms.sum(1)) / (
            np.abs(f) + np.abs(alpha) + np.abs(terms).sum(1) + 1e-300
        )
        worst = max(worst, float(gap.max()))
    return CheckResult(
        name,
        "f = alpha + <I, B> on ConvNets of several layers",
        "(6.8)",
        worst,
        EXACT,
        details=dict(networks=len(nets_and_images)),
    )


def check_three_ways(nets_and_images, name="engine-B-three-ways") -> CheckResult:
    """``B``: backprop == top-down deconvolution (6.7) == sum of basis functions (6.13)-(6.14)."""
    worst = 0.0
    for net, I in nets_and_images:
        B_backprop = net.grad_input(I)
        alpha, B_deconv = net.linear_piece(I)
        alpha_basis, B_basis = piece_from_basis(
            basis_functions(net, I)[-1], net.activation_pattern(I)[-1]
        )
        worst = max(
            worst, _rel(B_deconv, B_backprop), _rel(B_basis, B_backprop), _rel(alpha_basis, alpha)
        )
    return CheckResult(
        name,
        "B by backprop = deconvolution = sum of basis functions",
        "(6.7),(6.13)",
        worst,
        EXACT,
        details=dict(networks=len(nets_and_images)),
    )


def check_prototype_is_convnet(
    model, images, image_shape, name="prototype-is-convnet"
) -> CheckResult:
    """The prototype model (5.1) is the engine's one-layer ConvNet whose kernel covers the image."""
    proto = model.scoring
    net = proto.as_convnet(image_shape)
    as_images = images.reshape((len(images),) + tuple(image_shape))
    alpha_p, B_p = proto.linear_piece(images)
    alpha_c, B_c = net.linear_piece(as_images)
    residual = max(
        _rel(net.score(as_images), proto.score(images)),
        _rel(to_numpy(B_c).reshape(len(images), -1), B_p),
        _rel(alpha_c, alpha_p),
        _rel(
            to_numpy(net.activation_pattern(as_images)[0]).reshape(len(images), -1),
            proto.activation_pattern(images),
        ),
    )
    return CheckResult(
        name,
        "prototype model = one-layer ConvNet covering the image",
        "(5.1)-(5.5)",
        residual,
        EXACT,
        details=dict(filters=proto.n_filters, dim=proto.dim),
    )


# --- Theorem 1 --------------------------------------------------------------------------


def check_theorem1_piece_constant(
    model,
    images,
    rng,
    name="theorem1-piece-constant",
    claim="log p + |I - sigma^2 B|^2/(2 sigma^2) is constant on a piece",
) -> CheckResult:
    """Theorem 1, Eqs. (5.5), (6.9): ``log p(I) + |I - s^2 B|^2 / (2 s^2)`` is constant on a piece.

    On the piece of each image it is the same for a second image of the piece and equals
    ``alpha + s^2 |B|^2 / 2 - (D/2) log(2 pi s^2)``.

    ``images`` are the visited images (e.g. Langevin states); for each, a second image of
    its piece is constructed (a random move, halved until the pattern is kept).
    """
    var = model.sigma**2
    worst, pairs = 0.0, 0
    for m in range(len(images)):
        I = images[m : m + 1]
        direction = rng.standard_normal(I.shape)  # drawn on the host: the same on every backend
        direction *= 0.2 * (np.linalg.norm(to_numpy(I)) + model.sigma) / np.linalg.norm(direction)
        J, _ = image_in_same_piece(model.scoring, I, to_backend(direction, model.xp, I.dtype))
        if J is None:
            continue
        pairs += 1
        alpha, B = model.scoring.linear_piece(I)
        dim = I[0].size
        predicted = (
            float(alpha[0])
            + 0.5 * var * float(squared_norm(B)[0])
            - 0.5 * dim * math.log(2 * math.pi * var)
        )
        c_i, c_j = float(model.piece_log_constant(I)[0]), float(model.piece_log_constant(J)[0])
        scale = (
            abs(float(model.scoring.score(I)[0]))
            + float(squared_norm(I)[0]) / (2 * var)
            + abs(predicted)
            + 1.0
        )
        worst = max(worst, abs(c_i - c_j) / scale, abs(c_i - predicted) / scale)
    if pairs == 0:
        worst = math.inf
    return CheckResult(
        name,
        claim,
        "(5.5),(6.9)",
        worst,
        EXACT,
        details=dict(images=len(images), pieces_checked=pairs, sigma=model.sigma),
    )


def check_theorem1_truncated_gaussian(
    model, exact, grid_points: int = 301, name="theorem1-truncated-gaussian-2d"
) -> CheckResult:
    """Theorem 1 in 2-D: ``p(I | A) = N(s^2 B_A, s^2 I)`` truncated to ``A``, for each piece ``A``.

    Both densities are evaluated on a quadrature grid over the plane; on each piece's grid
    points each is normalised, and their total-variation distance is the residual (the
    largest over pieces of mass >= 1e-4). The piece masses by exact line integrals
    (:mod:`refimpl.exact`) are compared with the grid's in ``details``.
    """
    var = model.sigma**2
    axis = np.linspace(-exact.radius, exact.radius, grid_points)
    cell = (axis[1] - axis[0]) ** 2
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_p = exact.log_density(grid)
    which = exact.piece_of(grid)
    worst, mass_gap, checked = 0.0, 0.0, 0
    for a, prob in enumerate(exact.probs):
        inside = which == a
        if prob < 1e-4 or inside.sum() < 10:
            continue
        checked += 1
        pts = grid[inside]
        _, B = exact.line.pieces(pts[:1])
        log_phi = -((pts - var * B[0]) ** 2).sum(1) / (2 * var)
        p = np.exp(log_p[inside] - log_p[inside].max())
        phi = np.exp(log_phi - log_phi.max())
        worst = max(worst, 0.5 * float(np.abs(p / p.sum() - phi / phi.sum()).sum()))
        mass_gap = max(mass_gap, abs(float(np.exp(log_p[inside]).sum() * cell) - prob) / prob)
    if checked == 0:
        worst = math.inf
    return CheckResult(
        name,
        "2-D: p restricted to a piece = N(sigma^2 B, sigma^2 I) truncated",
        "Theorem 1",
        worst,
        EXACT,
        details=dict(
            pieces_checked=checked,
            pieces=len(exact.probs),
            grid=f"{grid_points}x{grid_points}",
            piece_mass_grid_vs_exact=mass_gap,
            log_Z=exact.log_Z,
        ),
    )


# --- Proposition 2 ----------------------------------------------------------------------


def check_proposition2_grade(
    model, starts, step_size: float, n_steps: int, name="proposition2-grade-modes-autoencode"
) -> CheckResult:
    """Proposition 2, Eqs. (5.7), (6.11): GRADE modes satisfy ``I = sigma^2 df/dI(I)``.

    For ReLU ``df/dI(I) = B_{w,delta(I)}``, so the mode is auto-encoding: encode ``delta(I)``
    bottom-up, decode ``sigma^2 B_{w,delta}`` top-down, get ``I`` back. Residual: the largest
    ``|I - sigma^2 df/dI(I)| / (|I| + sigma)`` over the chains that converged; the bound is
    what GRADE's stopping rule guarantees (:func:`~refimpl.sampling.grade_mode_residual`,
    ``2 sigma^2 tol / eps^2``) plus float64 rounding (``EXACT``).
    """
    result = grade(model, starts, n_steps, step_size, tol=GRADE_TOL)
    bound = grade_mode_residual(step_size, model.sigma, GRADE_TOL) + EXACT
    done = np.asarray(to_numpy(result.converged))
    if not done.any():
        return CheckResult(
            name,
            "GRADE attractor modes are auto-encoding: I = sigma^2 B",
            "(5.7),(6.11)",
            math.inf,
            bound,
            details=dict(converged=0, chains=len(done)),
        )
    I = result.samples[done]
    decoded = model.reference.variance * model.scoring.grad_input(I)
    gap = np.sqrt(to_numpy(squared_norm(I - decoded)))
    scale = np.sqrt(to_numpy(squared_norm(I))) + model.sigma
    return CheckResult(
        name,
        "GRADE attractor modes are auto-encoding: I = sigma^2 B",
        "(5.7),(6.11)",
        float((gap / scale).max()),
        bound,
        details=dict(
            converged=int(done.sum()),
            chains=len(done),
            steps_max=int(np.max(to_numpy(result.chain_steps))),
            step_size=step_size,
        ),
    )


def check_fixed_point_prototype(
    model, starts, max_steps: int = 200, name="proposition2-fixed-point-prototype"
) -> CheckResult:
    """Prototype model: ``I <- sigma^2 B_{w,delta(I)}`` raises ``log p`` at every jump and stops,
    after finitely many jumps, at an auto-encoding mode.

    Why: ``f`` is convex, so ``f(J) >= f(I) + <B, J - I>``; with ``J = sigma^2 B`` this gives
    ``log p(J) - log p(I) >= |I - sigma^2 B|^2 / (2 sigma^2) >= 0``. There are finitely many
    patterns and ``log p`` rises strictly until the pattern repeats, so it stops.
    Residual: the largest drop of ``log p`` (relative), or the auto-encoding gap at the end.
    """
    values = [to_numpy(model.log_density_unnormalised(starts))]
    result = fixed_point(
        model,
        starts,
        max_steps,
        record=lambda step, I: to_numpy(model.log_density_unnormalised(I)),
    )
    values += result.trace
    trace = np.stack(values)  # (jumps + 1, chains)
    drops = np.maximum(trace[:-1] - trace[1:], 0.0) / (np.abs(trace[:-1]) + 1.0)
    I = result.samples
    gap = np.sqrt(to_numpy(squared_norm(I - model.piece_mean(I))))
    scale = np.maximum(np.sqrt(to_numpy(squared_norm(I))), model.sigma)
    done = to_numpy(result.converged)
    residual = max(float(drops.max()), float((gap / scale).max())) if done.all() else math.inf
    jumps = to_numpy(result.chain_steps)
    return CheckResult(
        name,
        "prototype: fixed-point iteration raises log p, stops at a mode",
        "(5.7)",
        residual,
        EXACT,
        details=dict(
            chains=len(jumps),
            all_stopped=bool(done.all()),
            jumps_max=int(jumps.max()),
            jumps_mean=float(jumps.mean()),
            largest_gain=float((trace[1:] - trace[:-1]).max()),
        ),
    )


ANNEALING = ((0.5, 3000), (0.1, 3000), (0.02, 3000), (0.004, 10000))


def check_proposition2_kink_maxima(
    model, starts, rng, schedule=ANNEALING, name="proposition2-kink-maxima"
) -> CheckResult:
    """Where Proposition 2 needs care: modes on concave kinks of a multi-layer ReLU ConvNet.

    Proposition 2 assumes ``p`` is differentiable at the mode. A ReLU network with negative
    weights above the first layer has *concave* kinks, and where two adjacent pieces each
    have their Gaussian mean ``sigma^2 B`` across the shared boundary, ``p`` peaks on the
    boundary itself: a local maximum with ``I != sigma^2 B_{w,delta}`` for either side (at such
    a point ``I = sigma^2 sum_i lambda_i B_i``, a convex combination over the adjacent pieces:
    the Clarke-subgradient form of the proposition).

    GRADE is run, then annealed onto the kink (``schedule``: (step / sigma, steps) stages).
    Endpoints where ``sigma^2 B`` is not within 1e-8 of ``I`` are kink points; for each, ``log p``
    is probed in 400 random directions at radii 1e-3 and 1e-2 sigma. Residual: the largest rise of
    ``log p`` over the median absolute change (scale-free: about 1 at an ordinary point, where half
    the directions go up; << 1 at a local maximum, up to the annealing's resolution; bound 0.05).
    ``details`` give the counts, the smallest gap ``|I - sigma^2 B| / |I|`` on kinks, and how many
    distinct pieces meet within 1e-3 sigma of the endpoints: for random ReLU nets these maxima are
    corners where hundreds of pieces meet (many units exactly at their kink).
    """
    sigma = model.sigma
    I = starts
    for step, steps in schedule:
        I = grade(model, I, steps, step * sigma).samples
    gaps = np.sqrt(to_numpy(squared_norm(I - model.piece_mean(I)))) / np.sqrt(
        to_numpy(squared_norm(I))
    )
    kinks = np.nonzero(gaps > 1e-8)[0]
    rise, meeting = 0.0, []
    for m in kinks:
        base = float(model.log_density_unnormalised(I[m : m + 1])[0])
        v = rng.standard_normal((400,) + I.shape[1:])
        v /= np.sqrt(squared_norm(v)).reshape((-1,) + (1,) * (I.ndim - 1))
        v = to_backend(v, model.xp, I.dtype)
        for radius in (1e-3 * sigma, 1e-2 * sigma):
            probes = I[m : m + 1] + radius * v
            change = to_numpy(model.log_density_unnormalised(probes)) - base
            rise = max(rise, float(change.max()) / float(np.median(np.abs(change))))
        keys = pattern_keys(
            as_pattern_list(model.scoring.activation_pattern(I[m : m + 1] + 1e-3 * sigma * v))
        )
        meeting.append(len(np.unique(to_numpy(keys), axis=0)))
    return CheckResult(
        name,
        "ConvNet: GRADE endpoints off I = sigma^2 B are local maxima on kinks",
        "(6.11), finding",
        rise,
        0.05,
        details=dict(
            endpoints=len(I),
            interior_autoencoding=int(len(I) - len(kinks)),
            on_kinks=int(len(kinks)),
            smallest_gap_on_kinks=float(gaps[kinks].min()) if len(kinks) else None,
            pieces_meeting_at_endpoints=meeting,
        ),
    )
