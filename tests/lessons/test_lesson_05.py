"""Lesson 5 (the prototype model, Eqs. (5.1)-(5.5), (5.8)): refimpl.models.prototype.PrototypeModel.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references: values worked out by hand, the same formulas written out with NumPy
in the test (``relu(I W^T + b)``), the one-layer ConvNet that covers the image
(``PrototypeModel.as_convnet``: refimpl's convolution, top-down pass and backprop share no
code with the prototype model), and central finite differences (tests/gradcheck.py).
"""

import itertools

import numpy as np
import pytest
from checks import EXACT, FLOAT32, assert_close, assert_piece_identity
from gradcheck import assert_gradient, coordinate_gradient
from hypothesis import assume, given, settings
from strategies import prototype_and_images

from refimpl import ConvLayer, ConvNet
from refimpl.models import PrototypeModel

GRADED = {
    "models.prototype.PrototypeModel.score": ["test_score"],
    "models.prototype.PrototypeModel.activation_pattern": ["test_activation_pattern"],
    "models.prototype.PrototypeModel.piece_from_pattern": ["test_piece_from_pattern"],
    "models.prototype.PrototypeModel.grad_params": ["test_grad_params"],
}

# K = 3 filters in D = 2; every product below is exact in binary floating point.
W = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -1.0]])
b = np.array([0.5, -1.0, 0.25])
I = np.array([[1.0, 1.0], [2.0, -1.0], [-2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
# Responses r = I W^T + b, row by row:
#   (1, 1):  ( 3.5, -1.5, -0.75) -> delta (1, 0, 0)
#   (2, -1): ( 0.5, -3.5,  1.25) -> delta (1, 0, 1)
#   (-2, 0): (-1.5,  1.0,  0.25) -> delta (0, 1, 1)
#   (0, 3):  ( 6.5,  0.5, -2.75) -> delta (1, 1, 0)
#   (-1, 0): (-0.5,  0.0,  0.25) -> delta (0, 0, 1): r_2 = 0 exactly, and 1(0 > 0) = 0
DELTA = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=bool)
F = np.array([3.5, 0.5 + 1.25, 1.0 + 0.25, 6.5 + 0.5, 0.25])


def hand_f(weight, bias, images):
    """Eq. (5.1)'s exponent written out: sum_k max(<I, w_k> + b_k, 0)."""
    return np.maximum(images @ weight.T + bias, 0.0).sum(axis=1)


# An image shape (C, H, W) for each dimension D the strategy draws: the one-layer ConvNet's
# kernel covers it, so the net has one position per filter (PrototypeModel.as_convnet).
SHAPES = {
    1: (1, 1, 1),
    2: (2, 1, 1),
    3: (3, 1, 1),
    4: (1, 2, 2),
    5: (5, 1, 1),
    6: (6, 1, 1),
    7: (7, 1, 1),
    8: (2, 2, 2),
}


# --- score, Eq. (5.1) ----------------------------------------------------------------------


def test_score_by_hand():
    f = PrototypeModel(W, b).score(I)
    assert f.shape == (len(I),)
    assert_close(f, F, EXACT, "f")


@given(prototype_and_images(scale=2.0))
def test_score_equals_the_one_layer_convnet(case):
    proto, images = case
    net = proto.as_convnet(SHAPES[proto.dim])
    assert_close(
        proto.score(images),
        net.score(images.reshape((len(images),) + SHAPES[proto.dim])),
        EXACT,
        "f",
    )
    assert_close(proto.score(images), hand_f(proto.weight, proto.bias, images), EXACT, "f")


def test_score_uses_the_models_activation():
    """h is the model's non-linearity: linear gives sum_k r_k, softplus sum_k log(1 + e^r_k)."""
    r = I @ W.T + b
    assert_close(PrototypeModel(W, b, activation="linear").score(I), r.sum(1), EXACT, "linear f")
    assert_close(
        PrototypeModel(W, b, activation="softplus").score(I),
        np.logaddexp(0, r).sum(1),
        EXACT,
        "softplus f",
    )


def test_score_casts_images_to_the_models_dtype():
    f = PrototypeModel(W.astype(np.float32), b.astype(np.float32)).score(I)
    assert f.dtype == np.float32
    assert_close(f, F, FLOAT32, "f in float32")


# --- activation pattern, Eq. (5.3) ---------------------------------------------------------


def test_activation_pattern_by_hand():
    delta = PrototypeModel(W, b).activation_pattern(I)
    assert delta.shape == DELTA.shape and delta.dtype == bool
    assert np.array_equal(delta, DELTA)  # includes r = 0 -> off


@given(prototype_and_images(scale=2.0))
def test_activation_pattern_equals_the_one_layer_convnet(case):
    proto, images = case
    shape = SHAPES[proto.dim]
    (delta,) = proto.as_convnet(shape).activation_pattern(images.reshape((len(images),) + shape))
    assert np.array_equal(proto.activation_pattern(images), delta.reshape(len(images), -1))
    assert np.array_equal(
        proto.activation_pattern(images), images @ proto.weight.T + proto.bias > 0
    )


def test_activation_pattern_is_h_prime_for_softplus():
    """Section 9: delta = h'(r), for softplus the logistic function (a float, not a switch)."""
    r = I @ W.T + b
    assert_close(
        PrototypeModel(W, b, activation="softplus").activation_pattern(I),
        1 / (1 + np.exp(-r)),
        EXACT,
        "sigmoid",
    )


# --- piece from the pattern, Eqs. (5.4)-(5.5) ----------------------------------------------


def test_piece_from_pattern_by_hand():
    """All 2^K patterns, whether or not they have a piece: alpha = delta b, B = delta W."""
    patterns = np.array(list(itertools.product([False, True], repeat=3)))
    alpha, B = PrototypeModel(W, b).piece_from_pattern(patterns)
    assert alpha.shape == (8,) and B.shape == (8, 2)
    for delta, a, Bd in zip(patterns, alpha, B):
        assert a == sum(b[k] for k in range(3) if delta[k])
        assert np.array_equal(Bd, sum((W[k] for k in range(3) if delta[k]), np.zeros(2)))


def test_piece_from_pattern_by_hand_at_the_images():
    alpha, B = PrototypeModel(W, b).piece_from_pattern(DELTA)
    assert_close(alpha, DELTA @ b, EXACT, "alpha")
    assert_close(B, DELTA @ W, EXACT, "B")
    assert_piece_identity(F, alpha, B, I)  # f = alpha + <I, B>, Eq. (5.4)


@given(prototype_and_images(scale=2.0))
def test_piece_from_pattern_equals_the_convnet_top_down_pass(case):
    """Random patterns (not only those of images) against the ConvNet's deconvolution (6.7)."""
    proto, images = case
    shape = SHAPES[proto.dim]
    pattern = np.random.default_rng(len(images)).random((len(images), proto.n_filters)) < 0.5
    alpha, B = proto.piece_from_pattern(pattern)
    alpha_net, B_net = proto.as_convnet(shape).piece_from_pattern(
        [pattern.reshape(len(images), proto.n_filters, 1, 1)], shape
    )
    assert_close(alpha, alpha_net, EXACT, "alpha")
    assert_close(B, np.asarray(B_net).reshape(len(images), -1), EXACT, "B")


@given(prototype_and_images(scale=2.0))
def test_piece_from_pattern_gives_f_equals_alpha_plus_inner_product(case):
    proto, images = case
    pattern = images @ proto.weight.T + proto.bias > 0
    alpha, B = proto.piece_from_pattern(pattern)
    assert_piece_identity(hand_f(proto.weight, proto.bias, images), alpha, B, images)


# --- gradients with respect to the parameters, cf. Eq. (5.8) ---------------------------------


def test_grad_params_by_hand():
    """d/dw_k sum_m f(I_m) = sum_m delta_k(I_m) I_m, d/db_k = sum_m delta_k(I_m)."""
    dW, db = PrototypeModel(W, b).grad_params(I)
    expected_dW = np.array(
        [
            [1 + 2 + 0, 1 - 1 + 3],  # filter 1 fires on images 1, 2, 4
            [-2 + 0, 0 + 3],  # filter 2 on images 3, 4
            [2 - 2 - 1, -1 + 0 + 0],  # filter 3 on images 2, 3, 5
        ]
    )
    assert dW.shape == W.shape and db.shape == b.shape
    assert_close(dW, expected_dW, EXACT, "df/dW")
    assert_close(db, [3.0, 2.0, 3.0], EXACT, "df/db")


@given(prototype_and_images())
def test_grad_params_match_finite_differences(case):
    """Hand-written central differences of sum_m f(I_m), rejected if a probe crosses a kink."""
    proto, images = case
    W0, b0 = np.array(proto.weight), np.array(proto.bias)
    dW, db = proto.grad_params(images)
    base = images @ W0.T + b0 > 0
    crossed = []
    objective = lambda: float(hand_f(W0, b0, images).sum())
    on_probe = lambda: crossed.append(not np.array_equal(images @ W0.T + b0 > 0, base))
    fd_W = coordinate_gradient(objective, W0, np.arange(W0.size), on_probe=on_probe)
    fd_b = coordinate_gradient(objective, b0, np.arange(b0.size), on_probe=on_probe)
    assume(not any(crossed))
    assert_gradient(np.asarray(dW).ravel(), fd_W, what="df/dW")
    assert_gradient(np.asarray(db), fd_b, what="df/db")


@settings(max_examples=50)
@given(prototype_and_images(scale=2.0))
def test_grad_params_equal_convnet_backprop(case):
    proto, images = case
    shape = SHAPES[proto.dim]
    ((dW_net, db_net),) = proto.as_convnet(shape).grad_params(
        images.reshape((len(images),) + shape)
    )
    dW, db = proto.grad_params(images)
    assert_close(dW, dW_net.reshape(proto.n_filters, -1), EXACT, "df/dW")
    assert_close(db, db_net, EXACT, "df/db")


# --- the checks can fail (not graded) ---------------------------------------------------------
# Each control runs a check on a wrong computation written out here, so that it never calls
# the functions a student writes.


def test_negative_control_hand_check_catches_transposed_filters():
    """Filters taken as the columns of W (W^T applied) give other scores: the hand values see it."""
    with pytest.raises(AssertionError, match="f"):
        assert_close(hand_f(W[:2].T, b[:2], I), hand_f(W[:2], b[:2], I), EXACT, "f")


def test_negative_control_convnet_comparison_catches_a_wrong_kernel_layout():
    """Laying a filter out as (C, W, H) instead of (C, H, W) changes the scores."""
    proto = PrototypeModel.random(3, 8, seed=5, scale=2.0)
    images = np.random.default_rng(6).standard_normal((4, 8))
    kernel = proto.weight.reshape(3, 2, 2, 2).transpose(0, 1, 3, 2).copy()
    wrong = ConvNet([ConvLayer(kernel, proto.bias.copy())])
    right = hand_f(proto.weight, proto.bias, images)
    with pytest.raises(AssertionError, match="f"):
        assert_close(wrong.score(images.reshape(4, 2, 2, 2)), right, EXACT, "f")


def test_negative_control_piece_identity_fails_for_softplus():
    """Under softplus f is curved: alpha + <I, B> of the soft pattern is not f (section 9)."""
    images = np.random.default_rng(1).standard_normal((5, 2))
    r = images @ W.T + b
    delta = 1 / (1 + np.exp(-r))  # h'(r), Eq. (9.1)
    with pytest.raises(AssertionError, match="alpha"):
        assert_piece_identity(np.logaddexp(0, r).sum(1), delta @ b, delta @ W, images)


def test_negative_control_gradient_check_catches_an_ungated_gradient():
    """df/dW = sum_m I_m (delta ignored: every unit counted) fails the finite differences."""
    W0, b0 = 2.0 * np.random.default_rng(2).standard_normal((3, 4)), np.zeros(3)
    images = np.random.default_rng(3).standard_normal((4, 4))
    delta = images @ W0.T + b0 > 0
    assert 0 < delta.mean() < 1
    fd = coordinate_gradient(lambda: float(hand_f(W0, b0, images).sum()), W0, np.arange(W0.size))
    assert_gradient((delta.T @ images).ravel(), fd)  # the gated one passes
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient(np.tile(images.sum(0), (3, 1)).ravel(), fd)
