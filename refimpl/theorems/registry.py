"""Every check of ``python -m refimpl verify``, on fresh random instances drawn from one seed.

Each group draws its own instances (models with a random ``sigma`` in [0.5, 2]) and returns
its :class:`CheckResult` list; :func:`run_all` runs them all and times each group.
``quick=True`` uses smaller instances and skips the slowest (2-D ConvNet) references.

Every number is drawn on the host from the group's NumPy generator; the models and images
are then placed on ``backend`` (NumPy by default, or CuPy), so a seed gives the same
instances on every backend and the checks exercise the engine and samplers there, while
the exact references and statistics stay on the host.
"""

from __future__ import annotations

import time

import numpy as np

from refimpl import exact
from refimpl.backend import make_rng, to_backend
from refimpl.exact import exact_distribution
from refimpl.sampling import langevin
from refimpl.theorems import (
    discriminative,
    instances,
    learning,
    smooth,
    structure,
)
from refimpl.theorems import (
    langevin as langevin_checks,
)


def _on(model, a):
    """Host array ``a`` moved to ``model``'s backend, in its dtype."""
    return to_backend(a, model.xp, model.dtype)


def engine(rng, quick: bool, backend=None) -> list:
    cases = []
    for depth, channels, size in (
        [(2, 1, 8), (3, 2, 9)] if quick else [(2, 1, 8), (3, 2, 9), (4, 1, 10)]
    ):
        model, shape = instances.image_convnet(rng, channels, size, depth, backend=backend)
        images = model.sigma * rng.standard_normal((3,) + shape)
        cases.append((model.scoring, _on(model, images)))
    proto = instances.prototype(rng, 9, 5, backend=backend)
    images = _on(proto, proto.sigma * rng.standard_normal((6, 9)))
    return [
        structure.check_piece_identity(cases),
        structure.check_three_ways(cases),
        structure.check_prototype_is_convnet(proto, images, (1, 3, 3)),
    ]


def _visited(model, shape, rng, chains: int, steps: int = 30):
    """Images visited by a short Langevin run from 0 (typical states, typical pieces).

    On ``model``'s backend, with noise from a generator there.
    """
    start = model.xp.zeros((chains,) + tuple(shape), dtype=model.dtype)
    eps = 0.3 * model.sigma
    noise = make_rng(int(rng.integers(2**31)), model.xp)
    return langevin(model, start, steps, eps, noise).samples


def theorem1(rng, quick: bool, backend=None) -> list:
    net, shape = instances.image_convnet(rng, 1, 8, 3, backend=backend)
    proto = instances.prototype(rng, 5, 6, backend=backend)
    results = [
        structure.check_theorem1_piece_constant(
            net,
            _visited(net, shape, rng, 6 if quick else 12),
            rng,
            name="theorem1-piece-constant-convnet",
            claim="ConvNet: log p + |I - s^2 B|^2/2s^2 constant on each piece",
        ),
        structure.check_theorem1_piece_constant(
            proto,
            _visited(proto, (5,), rng, 6 if quick else 12),
            rng,
            name="theorem1-piece-constant-prototype",
            claim="prototype: log p + |I - s^2 B|^2/2s^2 constant on each piece",
        ),
    ]
    proto2 = instances.prototype(rng, 2, 4, backend=backend)
    results.append(
        structure.check_theorem1_truncated_gaussian(
            proto2, exact_distribution(proto2), grid_points=201 if quick else 401
        )
    )
    if not quick:
        net2, shape2 = instances.lowdim_convnet(rng, 2, backend=backend)
        dist = exact_distribution(net2, shape2, rtol=1e-8)
        r = structure.check_theorem1_truncated_gaussian(
            net2, dist, grid_points=301, name="theorem1-truncated-gaussian-2d-convnet"
        )
        r.claim = "2-D ConvNet: p on a piece = N(sigma^2 B, sigma^2 I) truncated"
        results.append(r)
    return results


def proposition2(rng, quick: bool, backend=None) -> list:
    chains = 6 if quick else 16
    convex, shape = instances.image_convnet(rng, 1, 6, 3, convex=True, backend=backend)
    starts = _on(convex, 2 * convex.sigma * rng.standard_normal((chains,) + shape))
    r_net = structure.check_proposition2_grade(
        convex, starts, 0.5 * convex.sigma, 20000, name="proposition2-grade-convex-convnet"
    )
    r_net.claim = "convex 3-layer ConvNet: GRADE modes auto-encode, I = sigma^2 B"
    proto = instances.prototype(rng, 4, 6, backend=backend)
    p_starts = _on(proto, 3 * proto.sigma * rng.standard_normal((chains * 4, 4)))
    r_proto = structure.check_proposition2_grade(
        proto, p_starts[:chains], 0.5 * proto.sigma, 20000, name="proposition2-grade-prototype"
    )
    r_proto.claim = "prototype: GRADE modes auto-encode, I = sigma^2 B_{w,delta(I)}"
    results = [r_net, r_proto, structure.check_fixed_point_prototype(proto, p_starts)]
    if not quick:
        general, shape = instances.image_convnet(rng, 1, 6, 2, backend=backend)
        starts = _on(general, 2 * general.sigma * rng.standard_normal((4,) + shape))
        results.append(structure.check_proposition2_kink_maxima(general, starts, rng))
    return results


def langevin_group(rng, quick: bool, backend=None) -> list:
    n = 20000
    proto1 = instances.prototype(rng, 1, 3, backend=backend)
    results = langevin_checks.check_langevin_1d(proto1, exact_distribution(proto1), rng, n=n)
    proto2 = instances.prototype(rng, 2, 4, backend=backend)
    results += langevin_checks.check_langevin_2d(proto2, exact_distribution(proto2), rng, n=n)
    if not quick:
        net2, shape2 = instances.lowdim_convnet(rng, 2, backend=backend)
        for r in langevin_checks.check_langevin_2d(
            net2, exact_distribution(net2, shape2, rtol=1e-8), rng, n=n, name="langevin-2d-convnet"
        ):
            r.claim = r.claim.replace("2-D:", "2-D ConvNet:")
            results.append(r)
    return results


def learning_group(rng, quick: bool, backend=None) -> list:
    proto1 = instances.prototype(rng, 1, 3, backend=backend)
    data1 = _on(proto1, 2 * proto1.sigma * rng.standard_normal((5, 1)))
    results = [
        learning.check_ml_gradient(
            proto1, data1, (1,), np.arange(6), name="ml-gradient-1d-prototype"
        )
    ]
    net1, shape1 = instances.lowdim_convnet(rng, 1, backend=backend)
    data = _on(net1, 2 * net1.sigma * rng.standard_normal((5,) + shape1))
    n_params = len(exact.flatten(net1.scoring.parameters()))
    r = learning.check_ml_gradient(
        net1, data, shape1, np.arange(n_params), name="ml-gradient-1d-convnet"
    )
    r.claim = "1-D ConvNet (3 layers): ML gradient = d/dw exact log-likelihood"
    results.append(r)
    if not quick:
        proto2 = instances.prototype(rng, 2, 3, backend=backend)
        data2 = _on(proto2, 2 * proto2.sigma * rng.standard_normal((5, 2)))
        results.append(
            learning.check_ml_gradient(
                proto2,
                data2,
                (2,),
                rng.choice(9, 3, replace=False),
                h=1e-4,
                rtol_quad=1e-11,
                tolerance=1e-5,
                name="ml-gradient-2d-prototype",
            )
        )
    net, shape = instances.image_convnet(rng, 1, 6, 2, backend=backend)
    I_obs = _on(net, net.sigma * rng.standard_normal((8,) + shape))
    n_params = len(exact.flatten(net.scoring.parameters()))
    results.append(
        learning.check_proposition3(
            net, I_obs, 0.1 * net.sigma, rng.choice(n_params, min(n_params, 40), replace=False)
        )
    )
    proto = instances.prototype(rng, 2, 3, backend=backend)
    eps = 0.1 * proto.sigma
    far = learning.far_from_kinks(
        proto.scoring, _on(proto, 3 * proto.sigma * rng.standard_normal((2000, 2))), 10 * eps
    )
    results.append(
        learning.check_proposition3_noisy(
            proto, far[:3], eps, rng, draws=50000 if quick else 200000
        )
    )
    return results


def proposition1(rng, quick: bool, backend=None) -> list:
    results = []
    for dim in (1,) if quick else (1, 2):
        sig = instances.sigma(rng)
        classes = [
            instances.prototype(rng, dim, 3, sig=sig, backend=backend)
            for _ in range(2 if quick else 3)
        ]
        log_Z = discriminative.class_log_normalisers(classes, (dim,))
        log_priors = np.log(rng.dirichlet(np.ones(len(classes) + 1)))
        points = _on(classes[0], 2 * sig * rng.standard_normal((100, dim)))
        results += [
            discriminative.check_proposition1a(
                classes, log_Z, log_priors[1:], points, name=f"proposition1a-{dim}d"
            ),
            discriminative.check_proposition1b(
                classes, log_Z, log_priors, points, name=f"proposition1b-{dim}d"
            ),
        ]
        if dim == 1:
            results.append(discriminative.check_proposition1b_printed_sign(log_Z, log_priors))
    return results


def section9(rng, quick: bool, backend=None) -> list:
    net, shape = instances.image_convnet(rng, 1, 6, 3, activation="softplus", backend=backend)
    images = _on(net, net.sigma * rng.standard_normal((4,) + shape))
    grade = structure.check_proposition2_grade(
        net, 2 * images, 0.5 * net.sigma, 20000, name="section9-proposition2"
    )
    grade.claim = "smooth h: GRADE modes still auto-encode, I = sigma^2 df/dI"
    grade.equation = "(6.11),(9.2)"
    return [
        smooth.check_smooth_top_down_is_gradient(net, images, rng),
        grade,
        smooth.check_theorem1_fails_for_smooth_h(net, images, rng),
    ]


GROUPS = [
    ("engine identities", engine),
    ("Theorem 1", theorem1),
    ("Proposition 2", proposition2),
    ("Langevin", langevin_group),
    ("learning", learning_group),
    ("Proposition 1", proposition1),
    ("section 9", section9),
]


def run_all(
    seed: int = 0, quick: bool = False, groups=None, progress=None, backend=None
) -> tuple[list, dict]:
    """Run every group (or those named in ``groups``); returns ``(results, seconds per group)``.

    Each group gets its own generator derived from ``seed``, so groups are independent and
    a subset reproduces the same instances as a full run. ``backend`` (a name, default
    NumPy) is where the models live and the engine and samplers run.
    """
    results, timings = [], {}
    seeds = np.random.SeedSequence(seed).spawn(len(GROUPS))
    for (title, fn), child in zip(GROUPS, seeds):
        if groups is not None and title not in groups:
            continue
        if progress is not None:
            progress(title)
        start = time.perf_counter()
        results += fn(np.random.default_rng(child), quick, backend)
        timings[title] = time.perf_counter() - start
    return results, timings
