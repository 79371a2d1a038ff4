"""The samplers' shared machinery: step-size checks and injected randomness.

The samplers themselves are graded, and their properties live in the lesson tests, which
this suite runs too: ``langevin`` and ``mala`` (scripted noise, the AR(1) moments and the
O(eps^2) bias on a Gaussian, the exact 1-D law, divergence, non-finite proposals) in
tests/lessons/test_lesson_06.py; ``grade`` and ``fixed_point`` (the geometric sequence, the
stopping rule ``grade_stops``, brute-force modes, auto-encoding, monotone log p) in
tests/lessons/test_lesson_07.py.

Here, each with a negative control: check_step_size refuses eps <= 0, NaN, inf and
eps >= 2 sigma (valid eps pass) and every sampler applies it; noise drawn by
draw_langevin_noise / draw_mala_randomness reproduces the generator's run; bad noise
arguments are refused.
"""

import numpy as np
import pytest

from refimpl import ConvNet
from refimpl.backend import make_rng
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.sampling import (
    check_step_size,
    draw_langevin_noise,
    draw_mala_randomness,
    grade,
    langevin,
    mala,
)
from refimpl.theorems import instances

# --- check_step_size --------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), float("inf"), float("-inf")])
def test_step_size_must_be_positive_and_finite(eps):
    with pytest.raises(ValueError, match="step_size must be a positive finite number"):
        check_step_size(eps, 1.0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("factor", [2.0, 2.5, 100.0])
def test_step_size_must_be_below_two_sigma(sigma, factor):
    with pytest.raises(ValueError, match=r"2 sigma .* diverges"):
        check_step_size(factor * sigma, sigma)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("factor", [1e-6, 0.1, 1.0, 1.999])
def test_valid_step_size_passes(sigma, factor):
    """The negative control of the refusals: eps in (0, 2 sigma) is returned as a float."""
    assert check_step_size(factor * sigma, sigma) == factor * sigma


@pytest.mark.parametrize("sampler", [langevin, mala])
def test_samplers_check_the_step_size(sampler):
    model = GenerativeModel(PrototypeModel(np.ones((1, 2)), np.zeros(1)), sigma=0.5)
    with pytest.raises(ValueError, match="2 sigma"):
        sampler(model, np.zeros((1, 2)), 1, 1.0, make_rng(0))
    with pytest.raises(ValueError, match="2 sigma"):
        grade(model, np.zeros((1, 2)), 1, 1.0)


def relu_model(seed=0, dim=3, n_filters=4):
    return instances.prototype(np.random.default_rng(seed), dim, n_filters)


# --- injected randomness --------------------------------------------------------------------


def test_langevin_with_drawn_noise_equals_the_generator_run():
    """Same draws in, same chains out: exactly (the same operations in the same order)."""
    model, I0 = relu_model(), np.zeros((5, 3))
    by_rng = langevin(model, I0, 7, 0.4, make_rng(21)).samples
    noise = draw_langevin_noise(make_rng(21), 7, I0.shape)
    assert np.array_equal(langevin(model, I0, 7, 0.4, noise=noise).samples, by_rng)
    # negative control: other draws, other chains
    other = draw_langevin_noise(make_rng(22), 7, I0.shape)
    assert not np.array_equal(langevin(model, I0, 7, 0.4, noise=other).samples, by_rng)


@pytest.mark.parametrize("image_shaped", [False, True])
def test_mala_with_drawn_noise_and_uniforms_equals_the_generator_run(image_shaped):
    """Vectors (M, D) and image-shaped chains (M, C, H, W): one uniform per chain and step."""
    if image_shaped:
        net = ConvNet.random(2, [(3, 3, 1, 1), (2, 2)], seed=5)
        model, I0 = GenerativeModel(net, 0.8), np.zeros((5, 2, 4, 3))
    else:
        model, I0 = relu_model(), np.zeros((5, 3))
    by_rng = mala(model, I0, 7, 0.8, make_rng(23))
    noise, uniforms = draw_mala_randomness(make_rng(23), 7, I0.shape)
    given = mala(model, I0, 7, 0.8, noise=noise, uniforms=uniforms)
    assert np.array_equal(given.samples, by_rng.samples)
    assert np.array_equal(given.acceptance, by_rng.acceptance)
    # negative control: uniforms of another stream change the decisions
    _, other = draw_mala_randomness(make_rng(24), 7, I0.shape)
    changed = mala(model, I0, 7, 0.8, noise=noise, uniforms=other)
    assert not np.array_equal(changed.acceptance, by_rng.acceptance)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of rng"),
        (dict(rng=make_rng(0), noise=np.zeros((2, 1, 3))), "both"),
        (dict(noise=np.zeros((3, 1, 3))), r"noise must have shape \(2, 1, 3\)"),
        (dict(noise=np.full((2, 1, 3), np.nan)), "non-finite"),
    ],
)
def test_langevin_randomness_is_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        langevin(relu_model(), np.zeros((1, 3)), 2, 0.3, **kwargs)
