"""Lesson 2 (the ReLU ConvNet): the bottom-up pass, the activation pattern and the top-down piece.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references never call the graded methods:

* the bottom-up pass, Eqs. (2.1), (6.4)-(6.5), is recomputed layer by layer with
  ``refimpl.conv.conv2d`` (lesson 1) and NumPy's ``maximum`` / ``logaddexp``;
* the piece ``(alpha, B)`` of a pattern, Eqs. (6.7)-(6.8), is recomputed in *forward* mode:
  with the pattern held fixed the network ``x^(l) = delta^(l) * z^(l)`` is affine in ``I``,
  so ``alpha`` is its value at ``I = 0`` and ``B`` its (bias-free) response to each unit image
  ``e_p`` (the basis-function view of Eq. (6.13)), while ``piece_from_pattern`` runs the
  top-down deconvolution with the adjoint;
* small examples worked out by hand.
"""

import numpy as np
import pytest
from checks import EXACT, assert_close, assert_piece_identity
from hypothesis import given, settings
from scipy.special import expit
from strategies import net_and_images, seeds, softplus_net

from refimpl import ConvLayer, ConvNet
from refimpl.conv import conv2d

GRADED = {
    "convnet.network.ConvNet.forward": ["test_forward"],
    "convnet.network.ConvNet.activation_pattern": ["test_activation_pattern"],
    "convnet.network.ConvNet.piece_from_pattern": ["test_piece_from_pattern"],
}

H = {
    "relu": lambda z: np.maximum(z, 0.0),
    "linear": lambda z: z,
    "softplus": lambda z: np.logaddexp(0.0, z),
}
H_PRIME = {
    "relu": lambda z: z > 0,
    "linear": lambda z: np.ones(z.shape, dtype=bool),
    "softplus": expit,
}


def reference_forward(net, I):
    """``(inputs, pre-activations, outputs)`` of Eq. (2.1), one layer at a time, with conv2d."""
    x, inputs, pre, outs = I, [], [], []
    for layer in net.layers:
        z = conv2d(x, layer.weight, layer.bias, layer.stride, layer.pad, impl=net.conv_impl)
        inputs.append(x)
        pre.append(z)
        x = H[layer.activation.name](z)
        outs.append(x)
    return inputs, pre, outs


def reference_pattern(net, I):
    """``delta^(l) = h'(z^(l))``, Eq. (6.4) (Eq. (9.1) for softplus), from the reference pass."""
    _, pre, _ = reference_forward(net, I)
    return [H_PRIME[layer.activation.name](z) for layer, z in zip(net.layers, pre)]


def reference_piece(net, pattern, image_shape):
    """``(alpha (M,), B (M, C, H, W))`` of the gated network with the pattern held fixed.

    ``g(I) = sum_{k,x} delta^(L) z^(L)`` with ``x^(l) = delta^(l) z^(l)`` is affine in ``I``;
    ``alpha = g(0)`` and ``B_p = g(e_p) - g(0)``, the latter computed without biases so that
    it is exactly linear (no cancellation).
    """
    image_shape = tuple(image_shape)
    pixels = int(np.prod(image_shape))

    def gated(x, with_bias, m):  # g of image m's pattern, on a batch x
        for layer, delta in zip(net.layers, pattern):
            z = conv2d(
                x,
                layer.weight,
                layer.bias if with_bias else None,
                layer.stride,
                layer.pad,
                impl=net.conv_impl,
            )
            x = delta[m : m + 1] * z
        return x.sum(axis=(1, 2, 3))

    alphas, Bs = [], []
    for m in range(pattern[0].shape[0]):
        alphas.append(gated(np.zeros((1,) + image_shape), True, m)[0])
        Bs.append(
            gated(np.eye(pixels).reshape((pixels,) + image_shape), False, m).reshape(image_shape)
        )
    return np.array(alphas), np.stack(Bs)


def hand_net():
    """1 filter [[1, 2], [3, 4]] with bias -40, then a linear 1x1 layer with weight 2 and bias 1."""
    first = ConvLayer(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), np.array([-40.0]))
    top = ConvLayer(np.array([[[[2.0]]]]), np.array([1.0]), activation="linear")
    return ConvNet([first, top]), np.arange(9.0).reshape(1, 1, 3, 3)


# --- forward: the bottom-up pass, Eqs. (2.1), (6.5) ------------------------------------------


def test_forward_by_hand():
    net, I = hand_net()
    fwd = net.forward(I)
    # layer 1: the lesson-1 cross-correlation (27, 37; 57, 67) minus 40, then ReLU
    z1 = np.array([[[[-13.0, -3.0], [17.0, 27.0]]]])
    x1 = np.array([[[[0.0, 0.0], [17.0, 27.0]]]])
    assert len(fwd.inputs) == len(fwd.pre_activations) == len(fwd.outputs) == 2
    assert np.array_equal(fwd.inputs[0], I) and np.array_equal(fwd.pre_activations[0], z1)
    assert np.array_equal(fwd.outputs[0], x1) and np.array_equal(fwd.inputs[1], x1)
    # layer 2: linear, 2 x + 1 (no ReLU: the negative values would stay, there are none)
    assert np.array_equal(fwd.pre_activations[1], 2 * x1 + 1)
    assert np.array_equal(fwd.outputs[1], 2 * x1 + 1)
    assert float(net.score(I)[0]) == 4 * 1.0 + 2 * (17.0 + 27.0)


@settings(max_examples=40)
@given(net_and_images(max_image=12))
def test_forward_matches_layer_by_layer_reference(case):
    net, I = case
    fwd = net.forward(I)
    inputs, pre, outs = reference_forward(net, I)
    assert len(fwd.inputs) == len(fwd.pre_activations) == len(fwd.outputs) == net.depth
    for l in range(net.depth):
        assert fwd.pre_activations[l].shape == pre[l].shape, f"layer {l + 1}"
        assert_close(fwd.inputs[l], inputs[l], EXACT, f"inputs[{l}]")
        assert_close(fwd.pre_activations[l], pre[l], EXACT, f"pre_activations[{l}]")
        assert_close(fwd.outputs[l], outs[l], EXACT, f"outputs[{l}]")
    assert [g.output_shape for g in fwd.geometries] == [z.shape for z in pre]


@settings(max_examples=30)
@given(net_and_images(max_image=12))
def test_forward_score_is_sum_of_top_layer(case):
    """Eq. (3.5): the score is the sum of the top feature maps."""
    net, I = case
    _, _, outs = reference_forward(net, I)
    assert_close(net.score(I), outs[-1].sum(axis=(1, 2, 3)), EXACT, "score")


@settings(max_examples=20)
@given(net_and_images(max_image=10))
def test_forward_uses_each_layers_nonlinearity(case):
    """Section 9's softplus h: the pass must apply the layer's own h, not a hard-coded ReLU."""
    net, I = case
    smooth = softplus_net(net)
    _, pre, outs = reference_forward(smooth, I)
    fwd = smooth.forward(I)
    for l in range(net.depth):
        assert_close(fwd.pre_activations[l], pre[l], EXACT, f"pre_activations[{l}]")
        assert_close(fwd.outputs[l], outs[l], EXACT, f"outputs[{l}]")


@settings(max_examples=20)
@given(net_and_images(max_image=8))
def test_forward_with_naive_kernels(case):
    """The pass must use the network's kernels (here the lesson-1 loops); same numbers."""
    net, I = case
    naive = ConvNet(net.layers, conv_impl="naive")
    _, _, outs = reference_forward(net, I)
    assert_close(naive.forward(I).outputs[-1], outs[-1], EXACT, "top layer, naive kernels")


# --- activation_pattern: Eq. (6.4) -----------------------------------------------------------


def test_activation_pattern_by_hand():
    net, I = hand_net()
    pattern = net.activation_pattern(I)
    assert len(pattern) == 2
    assert pattern[0].dtype == bool
    assert np.array_equal(pattern[0], [[[[False, False], [True, True]]]])
    assert np.array_equal(
        pattern[1], np.ones((1, 1, 2, 2), dtype=bool)
    )  # a linear layer is always on


@settings(max_examples=40)
@given(net_and_images(max_image=12))
def test_activation_pattern_matches_reference(case):
    net, I = case
    pattern = net.activation_pattern(I)
    expected = reference_pattern(net, I)
    assert len(pattern) == net.depth
    for l, (delta, ref) in enumerate(zip(pattern, expected)):
        assert delta.dtype == bool, f"layer {l + 1}: ReLU/linear patterns are boolean"
        assert np.array_equal(delta, ref), f"layer {l + 1}: pattern differs from 1(z > 0)"


@settings(max_examples=30)
@given(net_and_images(max_image=12))
def test_activation_pattern_switches_the_units_eq_6_5(case):
    """Eq. (6.5): [F^(l) * I](x) = delta^(l) (<w, F^(l-1) * I> + b), for every layer."""
    net, I = case
    _, pre, outs = reference_forward(net, I)
    for delta, z, x in zip(net.activation_pattern(I), pre, outs):
        assert np.array_equal(delta * z, x)


@settings(max_examples=20)
@given(net_and_images(max_image=10))
def test_activation_pattern_for_softplus_is_the_derivative(case):
    """Eq. (9.1): for smooth h the activation variables are h'(z), the logistic function."""
    net, I = case
    smooth = softplus_net(net)
    for delta, ref in zip(smooth.activation_pattern(I), reference_pattern(smooth, I)):
        assert_close(delta, ref, EXACT, "h'(z)")


# --- piece_from_pattern: the top-down deconvolution, Eqs. (6.7)-(6.8) --------------------------


def test_piece_from_pattern_by_hand():
    """One 2x2 filter on a 3x3 image: B = sum of the filter copies w_{x} at the active positions."""
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    net = ConvNet([ConvLayer(w, np.array([0.5]))])
    pattern = [np.array([[[[True, False], [False, True]]]])]
    alpha, B = net.piece_from_pattern(pattern, (1, 3, 3))
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 0:2, 0:2] += w[0, 0]  # the copy at x = (0, 0)
    expected[0, 0, 1:3, 1:3] += w[0, 0]  # the copy at x = (1, 1)
    assert np.array_equal(B, expected)
    assert np.array_equal(alpha, [2 * 0.5])  # alpha = sum of delta b


def test_piece_from_pattern_two_layers_by_hand():
    """hand_net: B^(2) = 1; B^(1) = 2 delta^(2) = 2 (linear top); B = conv^T(2 delta^(1))."""
    net, I = hand_net()
    pattern = [np.array([[[[False, False], [True, True]]]]), np.ones((1, 1, 2, 2), dtype=bool)]
    alpha, B = net.piece_from_pattern(pattern, (1, 3, 3))
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    expected = np.zeros((3, 3))
    expected[1:3, 0:2] += 2 * w
    expected[1:3, 1:3] += 2 * w
    assert np.array_equal(B[0, 0], expected)
    # alpha_1 = 4 top biases of 1; alpha_0 = alpha_1 + sum B^(1) delta^(1) b_1 = 4 + 2 * 2 * (-40)
    assert np.array_equal(alpha, [4.0 - 160.0])
    assert alpha[0] + float((B * I).sum()) == 4 * 1.0 + 2 * (
        17.0 + 27.0
    )  # f(I) of test_forward_by_hand


@settings(max_examples=30)
@given(net_and_images(max_image=10))
def test_piece_from_pattern_matches_forward_mode_reference(case):
    net, I = case
    pattern = reference_pattern(net, I)
    alpha, B = net.piece_from_pattern(pattern, I.shape[1:])
    ref_alpha, ref_B = reference_piece(net, pattern, I.shape[1:])
    assert alpha.shape == (len(I),) and B.shape == I.shape
    assert_close(B, ref_B, EXACT, "B")
    assert_close(alpha, ref_alpha, EXACT, "alpha")


@settings(max_examples=40)
@given(net_and_images(max_image=12))
def test_piece_from_pattern_gives_the_score_eq_6_8(case):
    """Eq. (6.8): with the image's own pattern, f(I) = alpha + <I, B>."""
    net, I = case
    _, _, outs = reference_forward(net, I)
    alpha, B = net.piece_from_pattern(reference_pattern(net, I), I.shape[1:])
    assert_piece_identity(outs[-1].sum(axis=(1, 2, 3)), alpha, B, I, EXACT)


@settings(max_examples=30)
@given(net_and_images(max_image=10, max_batch=2), seeds)
def test_piece_from_pattern_for_any_pattern(case, seed):
    """Only delta and w enter: a pattern no image produced still defines an affine function."""
    net, I = case
    rng = np.random.default_rng(seed)
    pattern = [rng.random(d.shape) < 0.6 for d in reference_pattern(net, I)]
    alpha, B = net.piece_from_pattern(pattern, I.shape[1:])
    ref_alpha, ref_B = reference_piece(net, pattern, I.shape[1:])
    assert_close(B, ref_B, EXACT, "B")
    assert_close(alpha, ref_alpha, EXACT, "alpha")


@settings(max_examples=20)
@given(net_and_images(max_image=8, max_batch=2))
def test_piece_from_pattern_with_soft_activation_variables(case):
    """Eq. (9.1): the real-valued delta = h'(z) of softplus nets weight the deconvolution alike."""
    net, I = case
    smooth = softplus_net(net)
    pattern = reference_pattern(smooth, I)
    alpha, B = smooth.piece_from_pattern(pattern, I.shape[1:])
    ref_alpha, ref_B = reference_piece(smooth, pattern, I.shape[1:])
    assert_close(B, ref_B, EXACT, "B")
    assert_close(alpha, ref_alpha, EXACT, "alpha")


# --- the references themselves can fail (not graded) ------------------------------------------


def test_negative_control_reference_piece_sees_one_flipped_unit():
    """Switching one first-layer unit off changes the reference B: the comparison has teeth."""
    net = ConvNet.random(1, [(3, 3, 1, 1), (2, 3, 2, 0)], seed=5)
    I = np.random.default_rng(6).standard_normal((1, 1, 7, 7))
    pattern = reference_pattern(net, I)
    _, B = reference_piece(net, pattern, I.shape[1:])
    on = np.argwhere(pattern[0][0])
    flipped = [d.copy() for d in pattern]
    # B's entries are sums of products of O(1) weights: a unit that matters changes some
    # entry by O(1), and 1e-3 is 1e9 times EXACT, so the B comparisons would reject it
    for unit in on:  # switch off a unit that matters
        flipped[0][(0,) + tuple(unit)] = False
        _, B_flipped = reference_piece(net, flipped, I.shape[1:])
        if np.abs(B_flipped - B).max() > 1e-3:
            break
        flipped[0][(0,) + tuple(unit)] = True
    else:
        raise AssertionError("no first-layer unit changes B")
    assert np.abs(B_flipped - B).max() > 1e-3


def test_negative_control_piece_identity_catches_a_missing_bias():
    """alpha without the bias terms (B still right) fails f = alpha + <I, B>."""
    net = ConvNet.random(1, [(3, 3, 1, 1), (2, 3, 2, 0)], seed=5)
    I = np.random.default_rng(6).standard_normal((2, 1, 7, 7))
    _, pre, outs = reference_forward(net, I)
    _, B = reference_piece(net, reference_pattern(net, I), I.shape[1:])
    with pytest.raises(AssertionError, match="alpha"):
        assert_piece_identity(outs[-1].sum(axis=(1, 2, 3)), np.zeros(len(I)), B, I)
