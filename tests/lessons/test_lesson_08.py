"""Lesson 8 (maximum likelihood, Eqs. (5.8), (7.1)-(7.4), Algorithm 1): the ML gradient.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references:

* ``ml_gradient``: closed forms (one ReLU filter on the line, where ``E_w[delta]`` and
  ``E_w[delta I]`` are integrals of ``exp(f) q`` computed here by ``scipy.integrate.quad``;
  the linear prototype, where ``p = N(sigma^2 sum_k w_k, sigma^2 I)``; parallel filters in the
  plane, where ``p`` factorises into a 1-D model along the filters times a Gaussian across
  them), and central finite differences (tests/gradcheck.py) of the exact mean
  log-likelihood ``refimpl.exact.log_likelihood``, which uses ``log Z`` only;
* ``moment_mismatch`` and ``scaled_gradient`` (refimpl.learning.algorithm): ``H_obs - H_syn``
  per layer written out with NumPy from ``net.grad_params`` of the observed and synthesised
  images, the output areas from the output-size formula by hand, the clipping rule by hand;
  the SGD step of ``Trainer.step`` (Algorithm 1, step 5); and, statistically, the exact
  expectation of ``refimpl.exact``.
"""

import math

import numpy as np
import pytest
from checks import EXACT, assert_close
from gradcheck import ROUNDING_ULPS, STEP, assert_gradient, coordinate_gradient
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate
from strategies import prototypes, tiny_learning_config

from refimpl import exact
from refimpl.exact import exact_distribution
from refimpl.learning import LearningConfig, Trainer, algorithm
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.theorems import instances

GRADED = {
    "exact.likelihood.ml_gradient": ["test_ml_gradient"],
    "learning.algorithm.moment_mismatch": ["test_moment_mismatch", "test_algorithm1"],
    "learning.algorithm.scaled_gradient": ["test_scaled_gradient", "test_algorithm1"],
}

# quadrature (scipy.integrate.quad, asked for epsrel 1e-13 on each smooth piece) against
# refimpl.exact's piece masses: measured errors up to 1.3e-13; 1e-10 leaves a factor 1000
QUAD = 1e-10


# --- the ML gradient, Eqs. (5.8), (7.2) --------------------------------------------------------


def quad_moments(w, b, sigma):
    """``E[delta]`` and ``E[delta I]`` for ``f(I) = max(w I + b, 0)`` on the line, by quadrature.

    The unnormalised density is ``exp(f(I)) q(I)`` with ``q = N(0, sigma^2)``; it is split at
    the kink ``-b / w`` so that ``quad`` integrates two smooth functions.
    """
    kink = -b / w
    norm = math.sqrt(2 * math.pi * sigma**2)
    q = lambda t: math.exp(-t * t / (2 * sigma**2)) / norm
    on = lambda t: math.exp(w * t + b - t * t / (2 * sigma**2)) / norm  # exp(f) q where w t + b > 0
    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=200)
    left, right = (-np.inf, kink), (kink, np.inf)
    on_side, off_side = (right, left) if w > 0 else (left, right)
    mass_on = integrate.quad(on, *on_side, **opts)[0]
    mass_off = integrate.quad(q, *off_side, **opts)[0]
    first_on = integrate.quad(lambda t: t * on(t), *on_side, **opts)[0]
    Z = mass_on + mass_off
    return mass_on / Z, first_on / Z


@pytest.mark.parametrize("w, b, sigma", [(1.3, -0.4, 1.0), (-0.8, 0.9, 0.7), (2.5, 1.5, 1.6)])
def test_ml_gradient_one_filter_by_quadrature(w, b, sigma):
    """Eq. (5.8) with K = 1, D = 1: data averages minus the quadrature expectations."""
    rng = np.random.default_rng(0)
    data = 1.5 * sigma * rng.standard_normal((7, 1))
    model = GenerativeModel(PrototypeModel(np.array([[w]]), np.array([b])), sigma)
    E_delta, E_delta_I = quad_moments(w, b, sigma)
    delta = (w * data[:, 0] + b > 0).astype(float)
    expected = np.array([np.mean(delta * data[:, 0]) - E_delta_I, np.mean(delta) - E_delta])
    got = exact.ml_gradient(model, data, (1,))
    assert got.shape == (2,)  # (dL/dw, dL/db): weights first, then biases
    assert_close(got, expected, QUAD, "dL/dw")


@pytest.mark.parametrize("dim", [1, 2])
def test_ml_gradient_linear_prototype_closed_form(dim):
    """Linear h: p = N(m, sigma^2 I), m = sigma^2 sum_k w_k; dL/dw_k = mean(I) - m, dL/db_k = 0."""
    sigma = 0.8
    rng = np.random.default_rng(dim)
    W, b = rng.standard_normal((3, dim)), rng.standard_normal(3)
    data = rng.standard_normal((9, dim)) + 0.5
    model = GenerativeModel(PrototypeModel(W, b, activation="linear"), sigma)
    m = sigma**2 * W.sum(axis=0)
    expected = np.concatenate([np.tile(data.mean(axis=0) - m, 3), np.zeros(3)])
    got = exact.ml_gradient(model, data, (dim,))
    assert got.shape == (3 * dim + 3,)
    assert_close(got, expected, QUAD, "dL/dw, closed form")  # measured 2e-16


def test_ml_gradient_parallel_filters_in_the_plane():
    """Filters w_k = c_k u: p factorises into a 1-D ReLU model for t = <I, u> and N(0, sigma^2)
    across u, so E[delta_k I] = E[delta_k t] u and E[delta_k] come from 1-D quadrature."""
    sigma = 0.9
    u = np.array([0.6, 0.8])
    c, b = np.array([1.4, -0.9]), np.array([-0.3, 0.5])
    model = GenerativeModel(PrototypeModel(c[:, None] * u[None], b), sigma)
    rng = np.random.default_rng(5)
    data = rng.standard_normal((6, 2))
    # the 1-D density of t: exp(sum_k max(c_k t + b_k, 0)) N(0, sigma^2), split at both kinks
    kinks = sorted(-b / c)
    f1 = lambda t: np.maximum(c * t + b, 0).sum()
    dens = lambda t: math.exp(f1(t) - t * t / (2 * sigma**2))
    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=200)
    edges = [-np.inf] + kinks + [np.inf]
    integral = lambda g: sum(
        integrate.quad(g, lo, hi, **opts)[0] for lo, hi in zip(edges[:-1], edges[1:])
    )
    Z = integral(dens)
    E_delta = np.array(
        [integral(lambda t, k=k: float(c[k] * t + b[k] > 0) * dens(t)) / Z for k in range(2)]
    )
    E_delta_t = np.array(
        [integral(lambda t, k=k: float(c[k] * t + b[k] > 0) * t * dens(t)) / Z for k in range(2)]
    )
    delta = (data @ model.scoring.weight.T + b > 0).astype(float)  # (M, K)
    grad_W = delta.T @ data / len(data) - E_delta_t[:, None] * u[None]
    grad_b = delta.mean(axis=0) - E_delta
    got = exact.ml_gradient(model, data, (2,))
    assert_close(got, np.concatenate([grad_W.ravel(), grad_b]), QUAD, "dL/dw in 2-D")


def fd_log_likelihood(model, data, event_shape, coords):
    """Central differences of the exact L(w) along flat coordinates; None if a probe moves a
    data point to another piece (then L is not differentiable there along that coordinate)."""
    flat = exact.flatten(exact.current_parameters(model.scoring))
    keys = lambda s: np.concatenate(
        [np.asarray(d).reshape(len(data), -1) for d in _patterns(s, data, event_shape)], axis=1
    )
    base = keys(model.scoring)
    crossed = []

    def objective():
        scoring = exact.with_flat_parameters(model.scoring, flat)
        crossed.append(not np.array_equal(keys(scoring), base))
        return exact.log_likelihood(scoring, model.sigma, data, event_shape)

    fd = coordinate_gradient(objective, flat, coords)
    # log Z is the log of a sum of piece masses of order Z, so it is rounded to ~eps absolutely
    # even when L itself is ~0 (units almost never on: Z = 1 + 1e-23 rounds to 1): the
    # floor is at least that of a value of size 1, else a 1e-23 gradient "fails" against 0
    fd.noise = max(fd.noise, ROUNDING_ULPS * np.finfo(np.float64).eps / STEP)
    return None if any(crossed) else fd


def _patterns(scoring, data, event_shape):
    pattern = scoring.activation_pattern(
        np.asarray(data).reshape((len(data),) + tuple(event_shape))
    )
    return pattern if isinstance(pattern, list) else [pattern]


@settings(max_examples=15)
@given(prototypes(max_filters=4, dim=1), st.floats(0.5, 2.0), st.integers(0, 2**31 - 1))
def test_ml_gradient_matches_finite_differences_1d(proto, sigma, seed):
    model = GenerativeModel(proto, sigma)
    data = 2 * sigma * np.random.default_rng(seed).standard_normal((6, 1))
    n = len(exact.flatten((proto.weight, proto.bias)))
    fd = fd_log_likelihood(model, data, (1,), np.arange(n))
    assume(fd is not None)
    assert_gradient(exact.ml_gradient(model, data, (1,)), fd, what="dL/dw (1-D prototype)")


@pytest.mark.parametrize("seed", [0, 1])
def test_ml_gradient_matches_finite_differences_1d_convnet(seed):
    """A 3-layer ConvNet on 1-pixel images: f piecewise linear in I, Eq. (7.2) for every layer."""
    model, shape = instances.lowdim_convnet(np.random.default_rng(seed), 1)
    data = 2 * model.sigma * np.random.default_rng(100 + seed).standard_normal((5,) + shape)
    n = len(exact.flatten(model.scoring.parameters()))
    fd = fd_log_likelihood(model, data, shape, np.arange(n))
    assert fd is not None
    assert_gradient(exact.ml_gradient(model, data, shape), fd, what="dL/dw (1-D ConvNet)")


def test_negative_control_finite_differences_catch_a_missing_model_term():
    """The reference is sharp: the data term alone (no E_w) fails the finite-difference check."""
    proto = PrototypeModel(np.array([[0.9], [-1.2]]), np.array([0.2, -0.5]))
    model = GenerativeModel(proto, 1.0)
    data = 1.5 * np.random.default_rng(3).standard_normal((8, 1))
    fd = fd_log_likelihood(model, data, (1,), np.arange(4))
    data_term = exact.flatten(proto.grad_params(data)) / len(data)
    with pytest.raises(AssertionError):
        assert_gradient(data_term, fd)


# --- H_obs - H_syn per layer (Algorithm 1, step 5) ----------------------------------------------

SPEC = [(3, 3, 1, 0), (2, 3, 2, 1)]  # 9x9 images -> 7x7 -> 4x4
AREAS = [((9 - 3) // 1 + 1) ** 2, ((7 + 2 - 3) // 2 + 1) ** 2]  # (H + 2p - k) // s + 1, by hand


def make_trainer(**overrides):
    values = dict(spec=SPEC, grow=False, chains=5, langevin_steps=3, init_std=0.5, seed=4)
    values.update(normalise_by_area=False, clip=None)
    values.update(overrides)
    rng = np.random.default_rng(11)
    data = rng.standard_normal((3, 1, 9, 9))
    trainer = Trainer(tiny_learning_config(**values), data)
    for layer in trainer.net.layers:  # non-zero biases, so that both ReLU states occur
        layer.bias[...] = rng.uniform(-0.3, 0.3, layer.bias.shape)
    trainer.chains = 1.3 * rng.standard_normal((5, 1, 9, 9))
    return trainer


def by_hand(trainer, area: bool, clip=None):
    """Per layer: sum_m df(I_m)/dw / M - sum_m df(I~_m)/dw / M~, / area, then clipped."""
    g_obs, g_syn = trainer.net.grad_params(trainer.data), trainer.net.grad_params(trainer.chains)
    M, M_syn = len(trainer.data), len(trainer.chains)
    out = []
    for l, ((Wo, bo), (Ws, bs)) in enumerate(zip(g_obs, g_syn)):
        gW, gb = (
            np.asarray(Wo) / M - np.asarray(Ws) / M_syn,
            np.asarray(bo) / M - np.asarray(bs) / M_syn,
        )
        if area:
            gW, gb = gW / AREAS[l], gb / AREAS[l]
        norm = np.sqrt((gW**2).sum() + (gb**2).sum())
        if clip is not None and norm > clip:
            gW, gb = gW * clip / norm, gb * clip / norm
        out.append((gW, gb))
    return g_obs, g_syn, out


def assert_layers_close(got, expected, rtol=EXACT):
    assert len(got) == len(expected)
    for l, ((gW, gb), (eW, eb)) in enumerate(zip(got, expected)):
        assert np.shape(gW) == eW.shape and np.shape(gb) == eb.shape
        assert_close(
            np.concatenate([np.ravel(gW), np.ravel(gb)]),
            np.concatenate([eW.ravel(), eb.ravel()]),
            rtol,
            f"layer {l + 1}",
        )


def mismatch_of(trainer):
    g_obs, g_syn = trainer.net.grad_params(trainer.data), trainer.net.grad_params(trainer.chains)
    return algorithm.moment_mismatch(g_obs, g_syn, len(trainer.data), len(trainer.chains))


def test_hand_worked_areas_are_the_layers_output_areas():
    """The reference itself (not graded): the areas by hand equal the network's geometry."""
    trainer = make_trainer()
    assert algorithm.output_areas(trainer.net, trainer.data.shape) == AREAS


def test_moment_mismatch_is_h_obs_minus_h_syn():
    trainer = make_trainer()
    assert len(trainer.data) != len(trainer.chains)  # M != M~: the two averages differ
    _, _, expected = by_hand(trainer, area=False)
    assert_layers_close(mismatch_of(trainer), expected)


def test_moment_mismatch_vanishes_when_the_chains_repeat_the_data():
    """H_syn over each observed image taken twice is H_obs: per-image averages, not sums."""
    trainer = make_trainer()
    trainer.chains = np.concatenate([trainer.data, trainer.data])
    g_obs = trainer.net.grad_params(trainer.data)
    for (gW, gb), (Wo, bo) in zip(mismatch_of(trainer), g_obs):
        # the same terms summed in two groupings: rounding ~ M u of their absolute sum
        scale = np.abs(Wo).sum() + np.abs(bo).sum()
        assert np.abs(gW).max() <= EXACT * scale and np.abs(gb).max() <= EXACT * scale


def test_scaled_gradient_without_area_or_clip_is_the_mismatch():
    trainer = make_trainer()
    mismatch = mismatch_of(trainer)
    assert_layers_close(algorithm.scaled_gradient(mismatch, AREAS, False, None), mismatch)


def test_scaled_gradient_divides_each_layer_by_its_output_area():
    trainer = make_trainer()
    _, _, expected = by_hand(trainer, area=True)
    got = algorithm.scaled_gradient(mismatch_of(trainer), AREAS, True, None)
    assert_layers_close(got, expected)
    unnormalised = algorithm.scaled_gradient(mismatch_of(trainer), AREAS, False, None)
    for (gW, _), (uW, _), area in zip(got, unnormalised, AREAS):
        assert_close(np.asarray(gW) * area, uW, EXACT, "area factor")


def test_scaled_gradient_clips_each_layer_to_the_given_norm():
    """A clip between the two layers' norms shortens one layer to exactly ``clip`` and keeps
    its direction; the other layer is untouched. Clipping acts on the area-normalised step."""
    trainer = make_trainer()
    _, _, plain = by_hand(trainer, area=True)
    norms = [np.sqrt((gW**2).sum() + (gb**2).sum()) for gW, gb in plain]
    assert not np.isclose(norms[0], norms[1])
    clip = float(np.sqrt(norms[0] * norms[1]))  # between the two
    got = algorithm.scaled_gradient(mismatch_of(trainer), AREAS, True, clip)
    _, _, expected = by_hand(trainer, area=True, clip=clip)
    assert_layers_close(got, expected)
    got_norms = [
        np.sqrt((np.asarray(gW) ** 2).sum() + (np.asarray(gb) ** 2).sum()) for gW, gb in got
    ]
    # a rescaling and a norm: a few roundings each
    assert abs(max(got_norms) - clip) <= EXACT * clip  # the longer layer now has norm clip
    assert abs(min(got_norms) - min(norms)) <= EXACT * min(norms)  # the shorter one is unchanged
    # a clip above both norms changes nothing
    far = algorithm.scaled_gradient(mismatch_of(trainer), AREAS, True, 2 * max(norms))
    assert_layers_close(far, plain)


def test_algorithm1_sgd_step_is_eta_times_the_scaled_mismatch():
    """One ``Trainer.step`` with SGD: w_new - w_old = eta (H_obs - H_syn) / area, evaluated at the
    old parameters on the data and on the chains the step synthesised."""
    eta = 1e-3
    trainer = make_trainer(normalise_by_area=True, learning_rate=eta)
    old = trainer.net.copy()
    trainer.step()
    g_obs, g_syn = old.grad_params(trainer.data), old.grad_params(trainer.chains)
    M, M_syn = len(trainer.data), len(trainer.chains)
    for l, ((Wn, bn), (Wo, bo), (go_W, go_b), (gs_W, gs_b)) in enumerate(
        zip(trainer.net.parameters(), old.parameters(), g_obs, g_syn)
    ):
        expected_W = eta * (go_W / M - gs_W / M_syn) / AREAS[l]
        expected_b = eta * (go_b / M - gs_b / M_syn) / AREAS[l]
        # w_new - w_old cancels the leading digits of w: rounding of |w| / |eta g| ~ 1e3 ulps
        # (measured 3.5e-13), so EXACT is too tight and 1e-10 leaves a factor 300
        assert_close(
            np.concatenate([(Wn - Wo).ravel(), bn - bo]),
            np.concatenate([expected_W.ravel(), expected_b]),
            1e-10,
            f"layer {l + 1} step",
        )


def test_algorithm1_mismatch_with_exact_samples_estimates_the_ml_gradient():
    """On 1-pixel images a one-layer net of 1x1 filters is a 1-D prototype; with chains drawn
    exactly from p, H_obs - H_syn is within 5 standard errors of the exact Eq. (7.2)
    (E_w[df/dw] from the exact piece masses and means of refimpl.exact)."""
    config = LearningConfig(
        spec=[(3, 1, 1, 0)], grow=False, chains=1, sigma=1.0, normalise_by_area=True
    )
    data = np.random.default_rng(2).standard_normal((40, 1, 1, 1)) + 0.5
    trainer = Trainer(config, data)
    # filters pointing both ways, kinks at -0.25, -0.5 and 1.6: every unit is on and off often
    trainer.net = exact.with_flat_parameters(
        trainer.net, np.array([0.8, -1.2, 0.5, 0.2, -0.6, -0.8])
    )
    dist = exact_distribution(GenerativeModel(trainer.net, 1.0), (1, 1, 1))
    target = exact.flatten(trainer.net.grad_params(data)) / len(data) - exact.flatten(
        dist.expected_param_grads()
    )
    n = 200000
    trainer.chains = dist.sample(n, np.random.default_rng(9)).reshape(n, 1, 1, 1)
    areas = algorithm.output_areas(trainer.net, data.shape)  # 1x1 maps: area 1
    estimate = exact.flatten(algorithm.scaled_gradient(mismatch_of(trainer), areas, True, None))
    # per-sample df/dw of the chains, for the standard error: delta_k I and delta_k
    I = trainer.chains.reshape(n)
    W = trainer.net.layers[0].weight.reshape(3)
    delta = (np.outer(I, W) + trainer.net.layers[0].bias > 0).astype(float)
    per_sample = np.concatenate([delta * I[:, None], delta], axis=1)
    se = per_sample.std(axis=0, ddof=1) / np.sqrt(n)
    # 5 standard errors per component: P = 5.7e-7 each, 3.4e-6 for the 6 (seeded run); EXACT
    # absolute for rounding where a component's per-sample values are constant (se = 0)
    assert np.all(np.abs(estimate - target) <= 5 * se + EXACT)


def test_negative_control_a_mismatch_of_sums_is_caught():
    """Forgetting the averages (sums instead of means, with M != M~) fails the hand check."""
    trainer = make_trainer()
    g_obs, g_syn = trainer.net.grad_params(trainer.data), trainer.net.grad_params(trainer.chains)
    sums = [(Wo - Ws, bo - bs) for (Wo, bo), (Ws, bs) in zip(g_obs, g_syn)]
    _, _, expected = by_hand(trainer, area=False)
    with pytest.raises(AssertionError, match="relative error"):
        assert_layers_close(sums, expected)
