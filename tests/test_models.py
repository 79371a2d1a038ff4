"""The probability models: q = N(0, sigma^2 I), the generative model (3.4), the prototype (5.1).

Properties, each with a negative control (the same check on a deliberately wrong
computation fails, shown with ``pytest.raises(AssertionError)``):

* GaussianReference: log q equals SciPy's multivariate normal log-density; d log q / dI
  matches central differences; invalid sigma is refused;
* GenerativeModel: log p + log Z = f + log q; U = -f + |I|^2 / (2 sigma^2); d log p / dI
  matches central differences away from kinks (ConvNet and prototype); energy_and_grad is
  energy and grad_log_density; the piece mean is sigma^2 B; the piece constant of Theorem 1
  (Eq. (6.9)) is alpha + sigma^2 |B|^2 / 2 - (D/2) log(2 pi sigma^2), the same for every
  image of a piece (and not for softplus, section 9);
* PrototypeModel (its graded methods are tested in tests/lessons/test_lesson_05.py): the
  piece of an image and df/dI = B; df/dI matches central differences; bad arguments raise
  the right exception, naming the argument.
"""

import math

import numpy as np
import pytest
from checks import EXACT, assert_close
from gradcheck import assert_gradient, input_gradient
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats
from strategies import (
    alive,
    net_and_images,
    probes_in_piece,
    prototype_and_images,
    seeds,
    sigmas,
    small_mixed_net,
    softplus_net,
)

from refimpl.convnet.pieces import image_in_same_piece
from refimpl.models import GaussianReference, GenerativeModel, PrototypeModel

# --- q = N(0, sigma^2 I), Eq. (5.2) -------------------------------------------------------

image_shapes = st.sampled_from([(3, 1), (2, 5), (1, 1, 2, 2), (2, 3, 4, 4)])


@given(sigmas, image_shapes, seeds)
def test_reference_log_density_equals_scipy(sigma, shape, seed):
    I = sigma * np.random.default_rng(seed).standard_normal(shape)
    flat = I.reshape(len(I), -1)
    expected = stats.multivariate_normal(np.zeros(flat.shape[1]), sigma**2 * np.eye(flat.shape[1]))
    # Both sides sum D squares and a log: rounding ~1e-15 relative; 1e-12 is EXACT.
    assert_close(
        GaussianReference(sigma).log_density(I), expected.logpdf(flat).reshape(-1), EXACT, "log q"
    )


def test_negative_control_reference_check_catches_wrong_normaliser():
    """log q with log(2 pi sigma) in place of log(2 pi sigma^2) is caught."""
    sigma, I = 2.0, np.random.default_rng(0).standard_normal((4, 3))
    wrong = -(I**2).sum(1) / (2 * sigma**2) - 1.5 * math.log(2 * math.pi * sigma)
    expected = stats.multivariate_normal(np.zeros(3), sigma**2 * np.eye(3)).logpdf(I)
    assert_close(GaussianReference(sigma).log_density(I), expected, EXACT, "log q")
    with pytest.raises(AssertionError, match="log q"):
        assert_close(wrong, expected, EXACT, "log q")


@given(sigmas, image_shapes, seeds)
def test_reference_gradient_matches_finite_differences(sigma, shape, seed):
    I = sigma * np.random.default_rng(seed).standard_normal(shape)
    ref = GaussianReference(sigma)
    grad = ref.grad_log_density(I)
    assert grad.shape == I.shape
    for m in range(len(I)):
        # log q is quadratic: central differences are exact up to rounding (gradcheck's floor).
        assert_gradient(grad[m], input_gradient(ref.log_density, I[m]), what="d log q / dI")


def test_negative_control_reference_gradient_check_catches_wrong_power_of_sigma():
    sigma, I = 2.0, np.random.default_rng(1).standard_normal((1, 5))
    ref = GaussianReference(sigma)
    fd = input_gradient(ref.log_density, I[0])
    assert_gradient(ref.grad_log_density(I)[0], fd)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient(-I[0] / sigma, fd)  # -I / sigma instead of -I / sigma^2


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), float("inf"), float("-inf")])
def test_reference_refuses_invalid_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        GaussianReference(sigma)
    with pytest.raises(ValueError, match="sigma"):
        GenerativeModel(PrototypeModel(np.ones((1, 2)), np.zeros(1)), sigma=sigma)


@pytest.mark.parametrize("sigma", [1e-3, 1.0, 7.5])
def test_reference_accepts_valid_sigma(sigma):
    """The negative control of the refusal: positive finite sigmas are kept as given."""
    assert GaussianReference(sigma).sigma == sigma
    assert GaussianReference(sigma).variance == sigma**2


# --- the generative model, Eq. (3.4) ------------------------------------------------------


def log_q_by_hand(I, sigma):
    flat = I.reshape(len(I), -1)
    return -(flat**2).sum(1) / (2 * sigma**2) - 0.5 * flat.shape[1] * math.log(
        2 * math.pi * sigma**2
    )


def relative_residual(lhs, rhs, terms):
    """Largest ``|lhs - rhs|`` relative to the sum of the ``|terms|`` (their rounding scale)."""
    scale = sum(np.abs(t) for t in terms)
    return float(np.max(np.abs(lhs - rhs) / scale))


@given(net_and_images(max_image=8), sigmas)
def test_log_density_and_energy_of_convnet_model(case, sigma):
    net, I = case
    model = GenerativeModel(net, sigma)
    f, log_q = net.score(I), log_q_by_hand(I, sigma)
    sq = (I.reshape(len(I), -1) ** 2).sum(1)
    # Sums of a few terms each rounded to ~1e-16 of its size: EXACT relative to those sizes.
    assert relative_residual(model.log_density_unnormalised(I), f + log_q, [f, log_q]) < EXACT
    assert relative_residual(model.energy(I), -f + sq / (2 * sigma**2), [f, sq / sigma**2]) < EXACT


def test_negative_control_energy_check_catches_dropped_sign():
    net, I = small_mixed_net()
    model = GenerativeModel(net, 1.5)
    f, sq = net.score(I), (I.reshape(len(I), -1) ** 2).sum(1)
    assert relative_residual(model.energy(I), -f + sq / 4.5, [f, sq]) < EXACT
    # U = +f + ... is wrong by 2 |f|, an O(1) share of the terms: far above EXACT
    assert relative_residual(model.energy(I), f + sq / 4.5, [f, sq]) > 1e-3


@given(net_and_images(max_batch=2, max_image=8), sigmas)
def test_grad_log_density_of_convnet_model_matches_finite_differences(case, sigma):
    net, I = case
    model = GenerativeModel(net, sigma)
    grad = model.grad_log_density(I)
    assert grad.shape == I.shape
    for m in range(len(I)):
        fd = input_gradient(model.log_density_unnormalised, I[m])
        assume(probes_in_piece(net, I[m], fd.probes))  # away from kinks
        assert_gradient(grad[m], fd, what="d log p / dI")


@given(prototype_and_images(max_batch=3), sigmas)
def test_grad_log_density_of_prototype_model_matches_finite_differences(case, sigma):
    proto, I = case
    model = GenerativeModel(proto, sigma)
    grad = model.grad_log_density(I)
    for m in range(len(I)):
        fd = input_gradient(model.log_density_unnormalised, I[m])
        assume(probes_in_piece(proto, I[m], fd.probes))
        assert_gradient(grad[m], fd, what="d log p / dI")


def test_negative_control_grad_log_density_check_catches_missing_reference_term():
    """d log p / dI = B alone (forgetting -I / sigma^2) is caught."""
    net, I = small_mixed_net()
    model = GenerativeModel(net, 0.8)
    fd = input_gradient(model.log_density_unnormalised, I[0])
    assert probes_in_piece(net, I[0], fd.probes)
    assert_gradient(model.grad_log_density(I)[0], fd)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient(net.grad_input(I)[0], fd)


@given(st.one_of(net_and_images(max_image=8), prototype_and_images()), sigmas)
def test_energy_and_grad_agree_with_separate_calls(case, sigma):
    scoring, I = case
    model = GenerativeModel(scoring, sigma)
    energy, grad = model.energy_and_grad(I)
    # One forward pass vs two: the same arithmetic, so equal to rounding.
    assert_close(energy, model.energy(I), EXACT, "energy")
    assert_close(grad, model.grad_log_density(I), EXACT, "d log p / dI")


def test_negative_control_energy_and_grad_check_sees_log_density():
    """-U differs from log p + log Z by the constant of q: the comparison is not vacuous."""
    net, I = small_mixed_net()
    model = GenerativeModel(net, 1.0)
    with pytest.raises(AssertionError, match="energy"):
        assert_close(
            model.energy_and_grad(I)[0], -model.log_density_unnormalised(I), EXACT, "energy"
        )


@given(st.one_of(net_and_images(max_image=8), prototype_and_images()), sigmas)
def test_piece_mean_is_sigma_squared_B(case, sigma):
    scoring, I = case
    model = GenerativeModel(scoring, sigma)
    # B = df/dI on the piece (backprop, an independent code path from linear_piece's deconvolution)
    assert_close(model.piece_mean(I), sigma**2 * scoring.grad_input(I), EXACT, "piece mean")


def test_negative_control_piece_mean_check_catches_sigma_instead_of_sigma_squared():
    net, I = small_mixed_net()
    model = GenerativeModel(net, 2.0)
    with pytest.raises(AssertionError, match="piece mean"):
        assert_close(model.piece_mean(I), 2.0 * net.grad_input(I), EXACT, "piece mean")


def piece_constant_by_hand(model, I):
    """alpha + sigma^2 |B|^2 / 2 - (D/2) log(2 pi sigma^2) (Theorem 1) and the size of its terms."""
    alpha, B = model.scoring.linear_piece(I)
    var, D = model.sigma**2, I[0].size
    half_B2 = var * (B.reshape(len(I), -1) ** 2).sum(1) / 2
    const = 0.5 * D * math.log(2 * math.pi * var)
    return alpha + half_B2 - const, np.abs(alpha) + half_B2 + abs(
        const
    )  # const < 0 when 2 pi sigma^2 < 1


def rounding_scale(model, I):
    """``(M,)`` sum of the magnitudes of the terms that the piece constant cancels.

    The identity cancels f, <I, B> and |I|^2 / (2 sigma^2) against alpha, sigma^2 |B|^2 / 2 and
    the Gaussian normaliser: rounding is ~1e-16 of the largest of them, so residuals are
    measured relative to their sum.
    """
    _, size = piece_constant_by_hand(model, I)
    f, sq = model.scoring.score(I), (I.reshape(len(I), -1) ** 2).sum(1) / (2 * model.sigma**2)
    return size + np.abs(f) + sq


def assert_piece_constant(model, I, what="piece constant"):
    """Eq. (6.9): log p + log Z + |I - sigma^2 B|^2 / (2 sigma^2) = the piece's constant."""
    expected, _ = piece_constant_by_hand(model, I)
    res = float(np.max(np.abs(model.piece_log_constant(I) - expected) / rounding_scale(model, I)))
    assert res < EXACT, f"{what}: residual {res:.3e} exceeds {EXACT:.0e}"
    return res


@given(net_and_images(max_batch=1, max_image=8), sigmas, seeds)
def test_piece_log_constant_of_convnet_model(case, sigma, seed):
    net, I = case
    assume(alive(net, I))
    model = GenerativeModel(net, sigma)
    assert_piece_constant(model, I)
    direction = np.random.default_rng(seed).standard_normal(I.shape)
    J, _ = image_in_same_piece(net, I, direction / np.linalg.norm(direction))
    assume(J is not None)
    assert_piece_constant(model, J)
    c_i, c_j = model.piece_log_constant(I), model.piece_log_constant(J)
    # Two images of one piece: equal up to the rounding of each (EXACT relative to the terms).
    scale = max(float(rounding_scale(model, I)[0]), float(rounding_scale(model, J)[0]))
    assert float(abs(c_i - c_j)[0]) / scale < EXACT


@given(prototype_and_images(max_batch=3), sigmas)
def test_piece_log_constant_of_prototype_model(case, sigma):
    proto, I = case
    assert_piece_constant(GenerativeModel(proto, sigma), I)


def test_negative_control_softplus_piece_constant_depends_on_the_image():
    """Section 9: with softplus there are no Gaussian pieces, so the 'constant' moves with I."""
    net, I = small_mixed_net()
    smooth = GenerativeModel(softplus_net(net), 1.0)
    relu = GenerativeModel(net, 1.0)
    direction = np.random.default_rng(7).standard_normal(I[:1].shape)
    direction /= np.linalg.norm(direction)
    J, step = image_in_same_piece(net, I[:1], direction)  # same ReLU piece, step ~0.1-1
    assert J is not None
    relu_gap = abs(relu.piece_log_constant(J) - relu.piece_log_constant(I[:1]))[0]
    smooth_gap = abs(smooth.piece_log_constant(J) - smooth.piece_log_constant(I[:1]))[0]
    # ReLU: the same constant (about -118) up to rounding, measured 2.8e-14, and 1e-10 is
    # EXACT times the terms' size (~100); softplus: it moves with the image, measured 0.022
    assert relu_gap < 1e-10 < 1e-3 < smooth_gap
    with pytest.raises(AssertionError, match="piece constant"):
        assert_piece_constant(smooth, I)


# --- the prototype model, Eqs. (5.1)-(5.5) ------------------------------------------------
# score, activation_pattern, piece_from_pattern and grad_params are graded in lesson 5: their
# properties (hand values, f = alpha + <I, B>, finite differences, equality with the one-layer
# ConvNet of as_convnet) live in tests/lessons/test_lesson_05.py. Here: the methods built on
# them.


@given(prototype_and_images(scale=2.0))
def test_prototype_linear_piece_and_grad_input_are_the_pieces_B(case):
    """linear_piece is the piece of the image's own pattern; df/dI is its B (Eq. (5.4))."""
    proto, I = case
    alpha, B = proto.linear_piece(I)
    ref_alpha, ref_B = proto.piece_from_pattern(proto.activation_pattern(I))
    assert alpha.shape == (len(I),) and B.shape == I.shape
    assert_close(alpha, ref_alpha, EXACT, "alpha")
    assert_close(B, ref_B, EXACT, "B")
    assert_close(proto.grad_input(I), B, EXACT, "df/dI vs B")
    f, grad = proto.score_and_grad_input(I)
    assert_close(f, proto.score(I), EXACT, "score_and_grad_input: f")
    assert_close(grad, B, EXACT, "score_and_grad_input: df/dI")


def test_negative_control_grad_input_check_sees_another_piece():
    """The B of a different pattern (all units on) is not df/dI where some are off."""
    proto = PrototypeModel.random(3, 4, seed=2, scale=2.0)
    I = np.random.default_rng(3).standard_normal((4, 4))
    assert 0 < proto.activation_pattern(I).mean() < 1
    _, all_on = proto.piece_from_pattern(np.ones((4, 3), dtype=bool))
    with pytest.raises(AssertionError, match="df/dI vs B"):
        assert_close(proto.grad_input(I), all_on, EXACT, "df/dI vs B")


@given(prototype_and_images())
def test_prototype_grad_input_matches_finite_differences(case):
    proto, I = case
    for m in range(len(I)):
        fd = input_gradient(proto.score, I[m])
        assume(probes_in_piece(proto, I[m], fd.probes))
        assert_gradient(proto.grad_input(I)[m], fd, what="df/dI")


@pytest.mark.parametrize("shape", [(1, 2, 4), (2, 1, 2), (1, 3, 3)])
def test_as_convnet_refuses_wrong_shapes(shape):
    proto = PrototypeModel.random(2, 8, seed=0)
    with pytest.raises(ValueError, match="image_shape"):
        proto.as_convnet(shape)
    proto.as_convnet((2, 2, 2))  # negative control: a shape of 8 pixels is accepted


# --- errors -----------------------------------------------------------------------------


def _proto(**overrides):
    args = dict(weight=np.ones((2, 3)), bias=np.zeros(2))
    args.update(overrides)
    return PrototypeModel(**args)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(weight=np.ones(3)), ValueError, "weight must be a 2-D"),
        (dict(weight=np.ones((2, 3, 1))), ValueError, "weight must be a 2-D"),
        (dict(weight=np.ones((2, 3), dtype=int)), TypeError, "weight must have a floating dtype"),
        (dict(weight=np.ones((2, 3), dtype=bool)), TypeError, "weight must have a floating dtype"),
        (
            dict(weight=np.array([[1.0, np.nan, 0], [0, 0, 1]])),
            ValueError,
            "weight contains 1 non-finite",
        ),
        (dict(bias=np.zeros(3)), ValueError, r"bias must have shape \(2,\)"),
        (dict(bias=np.zeros((2, 1))), ValueError, r"bias must have shape \(2,\)"),
        (dict(bias=np.zeros(2, dtype=np.int64)), TypeError, "bias must have a floating dtype"),
        (dict(bias=np.array([np.inf, 0.0])), ValueError, "bias contains 1 non-finite"),
        (dict(activation="tanh"), ValueError, "activation must be one of"),
    ],
)
def test_prototype_constructor_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        _proto(**kwargs)


IMAGE_ERRORS = [
    (np.ones(3), ValueError, "I must be a 2-D array"),
    (np.ones((1, 1, 3)), ValueError, "I must be a 2-D array"),
    (np.ones((2, 4)), ValueError, "I has dimension 4"),
    (np.ones((2, 3), dtype=np.int32), TypeError, "I must have a floating dtype"),
    (np.array([[0.0, np.nan, 1.0]]), ValueError, "I contains 1 non-finite"),
    ([[0.0, 1.0, 2.0]], TypeError, "I must be a NumPy or CuPy array"),
]


@pytest.mark.parametrize(
    "method",
    [
        "score",
        "grad_input",
        "activation_pattern",
        "linear_piece",
        "grad_params",
        "score_and_grad_input",
    ],
)
@pytest.mark.parametrize("I, error, pattern", IMAGE_ERRORS)
def test_prototype_image_errors(method, I, error, pattern):
    with pytest.raises(error, match=pattern):
        getattr(_proto(), method)(I)


@pytest.mark.parametrize("I, error, pattern", IMAGE_ERRORS)
def test_generative_model_passes_image_errors_on(I, error, pattern):
    model = GenerativeModel(_proto(), 1.0)
    for method in (model.log_density_unnormalised, model.grad_log_density, model.energy_and_grad):
        with pytest.raises(error, match=pattern):
            method(I)


def test_negative_control_valid_arguments_are_accepted():
    """The counterpart of the error checks: valid inputs (float32 included) raise nothing."""
    proto = _proto(weight=np.ones((2, 3), dtype=np.float32), bias=np.zeros(2, dtype=np.float32))
    assert proto.dtype == np.float32 and proto.bias.dtype == np.float32
    out = proto.score(np.ones((4, 3)))  # float64 images are cast to the model's dtype
    assert out.dtype == np.float32 and out.shape == (4,)
    assert proto.prepare_images(np.zeros((1, 3)), "J").shape == (1, 3)
    with pytest.raises(
        ValueError, match="J has dimension 2"
    ):  # the message names the argument given
        proto.prepare_images(np.zeros((1, 2)), "J")
