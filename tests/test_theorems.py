"""Every check of refimpl.theorems on Hypothesis-drawn instances, each with a negative control.

The check functions are the ones ``python -m refimpl verify`` runs. Here they run on
instances drawn from Hypothesis seeds (so many more instances than one verify run sees),
and each is also handed a deliberately broken ingredient and must then fail: a check that
cannot fail is no check.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import seeds

from refimpl import exact
from refimpl.convnet import ConvLayer, ConvNet
from refimpl.exact import exact_distribution
from refimpl.models import GenerativeModel
from refimpl.theorems import discriminative, instances, learning, smooth, structure
from refimpl.theorems import langevin as langevin_checks
from refimpl.theorems.registry import GROUPS, run_all
from refimpl.theorems.result import CheckResult, format_table


def rng_of(seed):
    return np.random.default_rng(seed)


class Broken:
    """Delegates to ``inner`` except for the methods given as keyword arguments."""

    def __init__(self, inner, **methods):
        self._inner = inner
        self.__dict__.update(methods)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def image_cases(rng, n=2):
    cases = []
    for depth in range(2, 2 + n):
        model, shape = instances.image_convnet(rng, 1, 8, depth)
        cases.append((model.scoring, model.sigma * rng.standard_normal((3,) + shape)))
    return cases


# --- engine identities ----------------------------------------------------------------------


@settings(max_examples=15)
@given(seeds)
def test_engine_identities(seed):
    cases = image_cases(rng_of(seed))
    assert structure.check_piece_identity(cases).passed
    assert structure.check_three_ways(cases).passed


def test_negative_control_engine_identities():
    cases = image_cases(rng_of(0))
    no_bias = [
        (Broken(net, linear_piece=lambda I, net=net: (0 * net.score(I), net.linear_piece(I)[1])), I)
        for net, I in cases
    ]
    assert not structure.check_piece_identity(no_bias).passed
    doubled = [
        (Broken(net, grad_input=lambda I, net=net: 2 * net.grad_input(I)), I) for net, I in cases
    ]
    assert not structure.check_three_ways(doubled).passed


@settings(max_examples=15)
@given(seeds)
def test_prototype_is_convnet(seed):
    rng = rng_of(seed)
    proto = instances.prototype(rng, 9, 4)
    assert structure.check_prototype_is_convnet(
        proto, rng.standard_normal((5, 9)), (1, 3, 3)
    ).passed


def test_negative_control_prototype_is_convnet():
    """Reshaping the filters in the wrong order (transposed kernels) is caught."""
    rng = rng_of(1)
    proto = instances.prototype(rng, 9, 4)
    inner = proto.scoring

    def transposed(shape):
        net = inner.as_convnet(shape)
        layer = net.layers[0]
        return ConvNet([ConvLayer(layer.weight.transpose(0, 1, 3, 2).copy(), layer.bias)])

    broken = GenerativeModel(Broken(inner, as_convnet=transposed), proto.sigma)
    assert not structure.check_prototype_is_convnet(
        broken, rng.standard_normal((5, 9)), (1, 3, 3)
    ).passed


# --- Theorem 1 ------------------------------------------------------------------------------


@settings(max_examples=10)
@given(seeds)
def test_theorem1_piece_constant(seed):
    rng = rng_of(seed)
    net, shape = instances.image_convnet(rng, 1, 8, 3)
    images = net.sigma * rng.standard_normal((4,) + shape)
    assert structure.check_theorem1_piece_constant(net, images, rng).passed
    proto = instances.prototype(rng, 5, 6)
    assert structure.check_theorem1_piece_constant(
        proto, proto.sigma * rng.standard_normal((4, 5)), rng
    ).passed


def test_negative_control_theorem1_piece_constant():
    """A curved term in f (not piecewise linear) makes the 'constant' vary within a piece."""
    rng = rng_of(2)
    net, shape = instances.image_convnet(rng, 1, 8, 3)
    curved = Broken(
        net.scoring, score=lambda I: net.scoring.score(I) + 0.1 * (I**2).sum(axis=(1, 2, 3))
    )
    model = GenerativeModel(curved, net.sigma)
    result = structure.check_theorem1_piece_constant(
        model, net.sigma * rng.standard_normal((4,) + shape), rng
    )
    assert not result.passed and result.details["pieces_checked"] > 0


@pytest.fixture(scope="module")
def prototype_2d():
    model = instances.prototype(rng_of(3), 2, 4)
    return model, exact_distribution(model)


def test_theorem1_truncated_gaussian(prototype_2d):
    model, exact = prototype_2d
    result = structure.check_theorem1_truncated_gaussian(model, exact, grid_points=201)
    assert result.passed and result.details["pieces_checked"] >= 2


def test_negative_control_theorem1_truncated_gaussian(prototype_2d):
    """Same pieces and B, but f gets a quadratic term: p on a piece is no longer N(s^2 B, s^2)."""
    model, exact = prototype_2d
    proto = model.scoring
    curved = GenerativeModel(
        Broken(proto, score=lambda I: proto.score(I) + 0.05 * (I**2).sum(1)), model.sigma
    )
    exact.line.model = curved  # the grid densities now come from the curved model
    try:
        assert not structure.check_theorem1_truncated_gaussian(
            curved, exact, grid_points=201
        ).passed
    finally:
        exact.line.model = model


# --- Proposition 2 --------------------------------------------------------------------------


@settings(max_examples=8)
@given(seeds)
def test_proposition2_grade_on_convex_nets_and_prototypes(seed):
    rng = rng_of(seed)
    net, shape = instances.image_convnet(rng, 1, 6, 3, convex=True)
    assert structure.check_proposition2_grade(
        net, 2 * net.sigma * rng.standard_normal((4,) + shape), 0.5 * net.sigma, 20000
    ).passed
    proto = instances.prototype(rng, 4, 6)
    starts = 3 * proto.sigma * rng.standard_normal((16, 4))
    assert structure.check_proposition2_grade(proto, starts[:4], 0.5 * proto.sigma, 20000).passed
    result = structure.check_fixed_point_prototype(proto, starts)
    assert result.passed and result.details["jumps_max"] >= 1


def test_negative_control_proposition2_grade():
    """Decoding with B instead of sigma^2 B (wrong when sigma != 1) is caught."""
    rng = rng_of(4)
    proto = instances.prototype(rng, 4, 6, sig=1.7)
    starts = 3 * proto.sigma * rng.standard_normal((4, 4))
    wrong = Broken(proto, reference=Broken(proto.reference, variance=1.0))
    assert not structure.check_proposition2_grade(wrong, starts, 0.5 * proto.sigma, 20000).passed


def test_negative_control_fixed_point_needs_convexity():
    """A general (non-convex) ConvNet: the jumps stall or cycle, so the prototype's check fails."""
    rng = rng_of(5)
    net, shape = instances.image_convnet(rng, 1, 6, 2)
    assert not structure.check_fixed_point_prototype(
        net, 3 * net.sigma * rng.standard_normal((20,) + shape)
    ).passed


@pytest.mark.slow
def test_kink_maxima_of_a_general_convnet():
    rng = rng_of(6)
    net, shape = instances.image_convnet(rng, 1, 6, 2)
    result = structure.check_proposition2_kink_maxima(
        net, 2 * net.sigma * rng.standard_normal((3,) + shape), rng
    )
    assert result.passed


def test_negative_control_kink_maxima():
    """Without annealing the GRADE endpoints chatter around the kink: not maxima to the probes."""
    rng = rng_of(6)
    net, shape = instances.image_convnet(rng, 1, 6, 2)
    result = structure.check_proposition2_kink_maxima(
        net, 2 * net.sigma * rng.standard_normal((3,) + shape), rng, schedule=((0.5, 300),)
    )
    assert not result.passed


# --- Langevin -------------------------------------------------------------------------------


@settings(max_examples=5)
@given(seeds)
def test_langevin_1d(seed):
    rng = rng_of(seed)
    model = instances.prototype(rng, 1, 3)
    results = langevin_checks.check_langevin_1d(model, exact_distribution(model), rng)
    assert all(r.passed for r in results), format_table(results)


def test_langevin_2d(prototype_2d):
    model, exact = prototype_2d
    results = langevin_checks.check_langevin_2d(model, exact, rng_of(7))
    assert all(r.passed for r in results), format_table(results)


def test_negative_control_langevin_against_the_wrong_density():
    """Chains of one model judged against another model's exact CDF: MALA's KS check fails."""
    rng = rng_of(8)
    model = instances.prototype(rng, 1, 3, sig=1.0)
    other = GenerativeModel(model.scoring, sigma=1.3)
    results = langevin_checks.check_langevin_1d(model, exact_distribution(other), rng, n=10000)
    assert not results[0].passed


def test_negative_control_langevin_bias_ratio_needs_shrinking_steps():
    rng = rng_of(9)
    model = instances.prototype(rng, 1, 3)
    results = langevin_checks.check_langevin_1d(
        model, exact_distribution(model), rng, n=10000, step_sizes=(1.5, 1.5)
    )
    assert not results[1].passed


# --- learning -------------------------------------------------------------------------------


@settings(max_examples=8)
@given(seeds)
def test_ml_gradient_1d(seed):
    rng = rng_of(seed)
    proto = instances.prototype(rng, 1, 3)
    data = 2 * proto.sigma * rng.standard_normal((5, 1))
    assert learning.check_ml_gradient(proto, data, (1,), np.arange(6)).passed
    net, shape = instances.lowdim_convnet(rng, 1)
    data = 2 * net.sigma * rng.standard_normal((4,) + shape)
    coords = rng.choice(len(exact.flatten(net.scoring.parameters())), 8, replace=False)
    assert learning.check_ml_gradient(net, data, shape, coords).passed


def test_negative_control_ml_gradient_without_the_model_term():
    rng = rng_of(10)
    proto = instances.prototype(rng, 1, 3)
    data = 2 * proto.sigma * rng.standard_normal((5, 1))
    data_term_only = lambda model, d, shape: exact.flatten(model.scoring.grad_params(d)) / len(d)
    assert not learning.check_ml_gradient(
        proto, data, (1,), np.arange(6), gradient_fn=data_term_only
    ).passed


@settings(max_examples=10)
@given(seeds)
def test_proposition3(seed):
    rng = rng_of(seed)
    net, shape = instances.image_convnet(rng, 1, 6, 2)
    n_params = len(exact.flatten(net.scoring.parameters()))
    result = learning.check_proposition3(
        net,
        net.sigma * rng.standard_normal((8,) + shape),
        0.1 * net.sigma,
        rng.choice(n_params, 20, replace=False),
    )
    assert result.passed, result.details


def test_negative_control_proposition3_wrong_step(monkeypatch):
    """A synthesis step twice too long (eps^2 instead of eps^2/2) breaks the exact relation."""
    rng = rng_of(11)
    net, shape = instances.image_convnet(rng, 1, 6, 2)
    original = learning.mean_langevin_step
    monkeypatch.setattr(
        learning, "mean_langevin_step", lambda model, I, eps: original(model, I, eps * np.sqrt(2))
    )
    n_params = len(exact.flatten(net.scoring.parameters()))
    assert not learning.check_proposition3(
        net,
        net.sigma * rng.standard_normal((8,) + shape),
        0.05 * net.sigma,
        rng.choice(n_params, 20, replace=False),
    ).passed


def test_proposition3_monte_carlo():
    rng = rng_of(12)
    proto = instances.prototype(rng, 2, 3)
    eps = 0.1 * proto.sigma
    far = learning.far_from_kinks(
        proto.scoring, 2 * proto.sigma * rng.standard_normal((400, 2)), 10 * eps
    )
    result = learning.check_proposition3_noisy(proto, far[:3], eps, rng, draws=50000)
    assert result.passed and result.details["target_in_standard_errors"] > 5


def test_negative_control_proposition3_monte_carlo_near_kinks():
    """Observations on the hyperplanes with a big step: patterns flip, the average misses."""
    rng = rng_of(13)
    proto = instances.prototype(rng, 2, 3)
    w, b = np.asarray(proto.scoring.weight), np.asarray(proto.scoring.bias)
    on_planes = np.stack([-b[k] * w[k] / (w[k] @ w[k]) for k in range(3)])  # r_k = 0
    result = learning.check_proposition3_noisy(
        proto, on_planes, 0.5 * proto.sigma, rng, draws=50000
    )
    assert not result.passed


# --- Proposition 1 --------------------------------------------------------------------------


def classes_1d(rng, n=3):
    sig = instances.sigma(rng)
    models = [instances.prototype(rng, 1, 3, sig=sig) for _ in range(n)]
    return (
        models,
        discriminative.class_log_normalisers(models, (1,)),
        np.log(rng.dirichlet(np.ones(n + 1))),
    )


@settings(max_examples=15)
@given(seeds)
def test_proposition1(seed):
    rng = rng_of(seed)
    models, log_Z, log_priors = classes_1d(rng)
    points = 2 * models[0].sigma * rng.standard_normal((50, 1))
    assert discriminative.check_proposition1a(models, log_Z, log_priors[1:], points).passed
    assert discriminative.check_proposition1b(models, log_Z, log_priors, points).passed
    assert discriminative.check_proposition1b_printed_sign(log_Z, log_priors).passed


def test_negative_control_proposition1():
    rng = rng_of(14)
    models, log_Z, log_priors = classes_1d(rng)
    points = 2 * models[0].sigma * rng.standard_normal((50, 1))
    # biases that forget the normalisers Z_c
    assert not discriminative.check_proposition1a(
        models, log_Z, log_priors[1:], points, biases=log_priors[1:]
    ).passed
    assert not discriminative.check_proposition1b(
        models, log_Z, log_priors, points, biases=log_priors[1:] - log_priors[0]
    ).passed
    # the typo check itself can fail: if every Z_c were 1 the printed sign would be right
    assert not discriminative.check_proposition1b_printed_sign(
        np.zeros_like(log_Z), log_priors
    ).passed


# --- section 9 ------------------------------------------------------------------------------


def softplus_case(seed):
    rng = rng_of(seed)
    net, shape = instances.image_convnet(rng, 1, 6, 3, activation="softplus")
    return net, net.sigma * rng.standard_normal((4,) + shape), rng


@settings(max_examples=10)
@given(seeds)
def test_section9(seed):
    net, images, rng = softplus_case(seed)
    assert smooth.check_smooth_top_down_is_gradient(net, images, rng).passed
    assert smooth.check_theorem1_fails_for_smooth_h(net, images, rng).passed
    assert structure.check_proposition2_grade(net, 2 * images, 0.5 * net.sigma, 20000).passed


def test_negative_control_section9():
    net, images, rng = softplus_case(15)
    # top-down pass with binary delta = 1(z > 0) instead of h'(z): not the gradient any more
    scoring = net.scoring
    binary = Broken(
        scoring,
        activation_pattern=lambda I: [
            np.asarray(z) > 0 for z in scoring.forward(I).pre_activations
        ],
    )
    binary.linear_piece = lambda I: ConvNet.piece_from_pattern(
        scoring, binary.activation_pattern(I), I.shape[1:]
    )
    assert not smooth.check_smooth_top_down_is_gradient(
        GenerativeModel(binary, net.sigma), images, rng
    ).passed
    # under ReLU the 'Theorem 1 must fail' check does not fail: the constant is constant
    relu_net, shape = instances.image_convnet(rng_of(15), 1, 6, 3)
    relu_images = relu_net.sigma * rng.standard_normal((4,) + shape)
    assert not smooth.check_theorem1_fails_for_smooth_h(relu_net, relu_images, rng).passed


# --- the registry and the report ------------------------------------------------------------


def test_quick_verify_run_passes_and_covers_every_group():
    results, timings = run_all(seed=123, quick=True)
    assert set(timings) == {title for title, _ in GROUPS}
    assert all(r.passed for r in results), format_table([r for r in results if not r.passed])
    assert len(results) >= 20


def test_check_result_semantics():
    assert CheckResult("a", "c", "e", 1e-12, 1e-10).passed
    assert not CheckResult("a", "c", "e", float("nan"), 1e-10).passed
    assert not CheckResult("a", "c", "e", float("inf"), 1e-10).passed
    assert CheckResult("a", "c", "e", 1.0, 1e-3, must_exceed=True).passed
    assert not CheckResult("a", "c", "e", 1e-6, 1e-3, must_exceed=True).passed
