"""Lesson 3 (backprop by hand): the reverse pass ``ConvNet._backprop``, Eqs. (7.2)-(7.4), (9.2).

Graded function and the tests that grade it (``GRADED``, read by grade.py). Every public
gradient (``grad_input``, ``grad_params``, ``score_and_grad_*``) goes through ``_backprop``;
the independent references are

* central finite differences of the score (``gradcheck``), with every probe checked to stay
  in the image's piece (no ReLU kink crossed), and for a smooth softplus net;
* the top-down deconvolution of Eq. (6.7) (``linear_piece``, lesson 2): section 9 says the
  reconstruction ``B`` *is* ``df/dI`` (Eq. (9.2));
* Eqs. (7.3)-(7.4) for the top layer written out as loops over positions;
* a one-layer network worked out by hand.
"""

import numpy as np
import pytest
from checks import EXACT, assert_close
from gradcheck import assert_gradient, coordinate_gradient, input_gradient
from hypothesis import assume, given, settings
from strategies import net_and_images, probes_in_piece, seeds, softplus_net

from refimpl import ConvLayer, ConvNet
from refimpl.convnet.pieces import same_pattern

GRADED = {"convnet.network.ConvNet._backprop": ["test_backprop"]}


def depends_on_image(net, I) -> bool:
    """True if every image's piece has a non-zero B (f not locally constant); no backprop used."""
    _, B = net.linear_piece(I)
    return bool(np.all(np.any(B.reshape(len(I), -1) != 0, axis=1)))


def one_layer_net():
    """Two 3x3 filters that cover a 3x3 image (one position each): the prototype model (5.1)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((2, 1, 3, 3))
    bias = np.array([0.3, -0.2])
    I = rng.standard_normal((4, 1, 3, 3))
    return ConvNet([ConvLayer(weight, bias)]), I


# --- by hand --------------------------------------------------------------------------------


def test_backprop_by_hand_one_layer():
    """One layer by hand: the gradients of f = sum_k relu(<I, w_k> + b_k).

    df/dI = sum_k delta_k w_k, dW_k = sum_m delta_mk I_m, db_k = sum_m delta_mk.
    """
    net, I = one_layer_net()
    w, b = net.layers[0].weight, net.layers[0].bias
    delta = (np.einsum("kchw,mchw->mk", w, I) + b) > 0  # (M, K)
    assert 0 < delta.mean() < 1, "the example needs units on and off"
    expected_input = np.einsum("mk,kchw->mchw", delta, w)
    expected_dw = np.einsum("mk,mchw->kchw", delta, I)
    assert_close(net.grad_input(I), expected_input, EXACT, "df/dI")
    ((dw, db),) = net.grad_params(I)
    assert_close(dw, expected_dw, EXACT, "df/dW")
    assert_close(db, delta.sum(axis=0), EXACT, "df/db")


def test_backprop_returns_what_is_asked():
    net, I = one_layer_net()
    fwd = net.forward(I)
    top = np.ones_like(fwd.outputs[-1])
    grad_I, grads = net._backprop(fwd, top, want_input=True, want_params=False)
    assert grad_I.shape == I.shape and grads is None
    grad_I, grads = net._backprop(fwd, top, want_input=False, want_params=True)
    assert grad_I is None and [(a.shape, b.shape) for a, b in grads] == [
        (l.weight.shape, l.bias.shape) for l in net.layers
    ]


# --- against finite differences ---------------------------------------------------------------


@settings(max_examples=40)
@given(net_and_images(max_batch=2, max_image=8))
def test_backprop_grad_input_matches_finite_differences(case):
    net, I = case
    assume(depends_on_image(net, I))
    analytic = net.grad_input(I)
    assert analytic.shape == I.shape
    for m in range(len(I)):
        fd = input_gradient(net.score, I[m])
        assume(probes_in_piece(net, I[m], fd.probes))
        assert_gradient(analytic[m], fd, what=f"df/dI, image {m}")


@settings(max_examples=15)
@given(net_and_images(max_batch=2, max_image=8), seeds)
def test_backprop_grad_params_match_finite_differences(case, seed):
    """Eq. (7.2), every layer: gradients of sum_m f(I_m) w.r.t. sampled weights and biases."""
    net, I = case
    assume(depends_on_image(net, I))
    grads = net.grad_params(I)
    assert [(dw.shape, db.shape) for dw, db in grads] == [
        (l.weight.shape, l.bias.shape) for l in net.layers
    ]
    base = net.activation_pattern(I)
    crossed = []
    objective = lambda: float(net.score(I).sum())
    on_probe = lambda: crossed.append(not same_pattern(net.activation_pattern(I), base))
    rng = np.random.default_rng(seed)
    for l, (layer, (dw, db)) in enumerate(zip(net.layers, grads), start=1):
        for array, analytic, name in ((layer.weight, dw, "W"), (layer.bias, db, "b")):
            coords = rng.choice(array.size, size=min(array.size, 10), replace=False)
            fd = coordinate_gradient(objective, array, coords, on_probe=on_probe)
            assume(not any(crossed))
            assert_gradient(analytic.reshape(-1)[coords], fd, what=f"df/d{name}, layer {l}")


@settings(max_examples=20)
@given(net_and_images(max_batch=1, max_image=8), seeds)
def test_backprop_with_any_top_gradient(case, seed):
    """``top_grad`` G is used as given: input gradient of <x^(L)(I), G> by finite differences."""
    net, I = case
    fwd = net.forward(I)
    G = np.random.default_rng(seed).standard_normal(fwd.outputs[-1].shape)
    grad_I, _ = net._backprop(fwd, G, want_input=True, want_params=False)
    objective = lambda batch: (net.forward(batch).outputs[-1] * G).sum(axis=(1, 2, 3))
    fd = input_gradient(objective, I[0])
    assume(probes_in_piece(net, I[0], fd.probes))
    assert_gradient(grad_I[0], fd, what="d<x^(L), G>/dI")


@settings(max_examples=20)
@given(net_and_images(max_batch=1, max_image=8))
def test_backprop_smooth_network_matches_finite_differences(case):
    """Section 9: with softplus h, backprop multiplies by h'(z), Eq. (9.1); no kinks to avoid."""
    net, I = case
    smooth = softplus_net(net)
    assert_gradient(
        smooth.grad_input(I)[0], input_gradient(smooth.score, I[0]), what="softplus df/dI"
    )


# --- against the top-down deconvolution and Eqs. (7.3)-(7.4) ------------------------------------


@settings(max_examples=40)
@given(net_and_images(max_image=12))
def test_backprop_equals_top_down_deconvolution(case):
    """Representation = back-propagation, Eq. (9.2): df/dI = B_{w, delta(I)} of Eq. (6.7)."""
    net, I = case
    _, B = net.linear_piece(I)
    assert_close(net.grad_input(I), B, EXACT, "df/dI vs B")
    f, grad = net.score_and_grad_input(I)
    assert_close(grad, B, EXACT, "score_and_grad_input")


@settings(max_examples=10)
@given(net_and_images(max_image=10))
def test_backprop_uses_the_networks_kernels(case):
    """With the lesson-1 loops as the network's kernels, the same gradients (to EXACT)."""
    net, I = case
    slow = ConvNet(net.layers, conv_impl="naive")
    assert_close(slow.grad_input(I), net.grad_input(I), EXACT, "df/dI naive vs fast")
    for (a, b), (c, d) in zip(slow.grad_params(I), net.grad_params(I)):
        assert_close(a, c, EXACT, "df/dW naive vs fast")
        assert_close(b, d, EXACT, "df/db naive vs fast")


@settings(max_examples=20)
@given(net_and_images(max_image=10))
def test_backprop_equals_soft_deconvolution(case):
    """Eq. (9.2) for softplus: the deconvolution weighted by delta = h'(z) is still df/dI."""
    net, I = case
    smooth = softplus_net(net)
    assert_close(smooth.grad_input(I), smooth.linear_piece(I)[1], EXACT, "softplus df/dI vs B")


def top_layer_gradient_by_loops(net, I):
    """Eqs. (7.3)-(7.4), top layer: sums over positions x of delta^(L)_{k,x} times the patch."""
    fwd = net.forward(I)
    layer = net.layers[-1]
    s, p, k = layer.stride, layer.pad, layer.kernel_size
    below = np.pad(fwd.inputs[-1], ((0, 0), (0, 0), (p, p), (p, p)))  # F^(L-1) * I, zero padded
    delta = (
        fwd.pre_activations[-1] > 0 if layer.relu else np.ones(fwd.pre_activations[-1].shape, bool)
    )
    dW, db = np.zeros(layer.weight.shape), np.zeros(layer.bias.shape)
    M, K, H, W = delta.shape
    for m in range(M):
        for kk in range(K):
            for i in range(H):
                for j in range(W):
                    if delta[m, kk, i, j]:
                        dW[kk] += below[m, :, s * i : s * i + k, s * j : s * j + k]
                        db[kk] += 1
    return dW, db


@settings(max_examples=30)
@given(net_and_images(max_image=10))
def test_backprop_top_layer_is_eq_7_3_and_7_4(case):
    net, I = case
    dW, db = net.grad_params(I)[-1]
    ref_dW, ref_db = top_layer_gradient_by_loops(net, I)
    assert_close(dW, ref_dW, EXACT, "df/dW^(L), Eq. (7.3)")
    assert_close(db, ref_db, EXACT, "df/db^(L), Eq. (7.4)")


# --- the references can fail (not graded) --------------------------------------------------------


def test_negative_control_finite_differences_catch_a_missing_mask():
    """A backprop that forgets the first layer's ReLU mask fails the finite-difference check."""
    net = ConvNet.random(1, [(3, 3, 1, 1), (2, 3, 2, 0)], seed=5)
    I = np.random.default_rng(6).standard_normal((1, 1, 7, 7))
    pattern = net.activation_pattern(I)
    assert 0 < pattern[0].mean() < 1
    ungated = [np.ones_like(pattern[0]), pattern[1]]
    _, wrong = net.piece_from_pattern(ungated, I.shape[1:])
    fd = input_gradient(net.score, I[0])
    assert probes_in_piece(net, I[0], fd.probes)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient(wrong[0], fd)


def test_negative_control_deconvolution_check_catches_ungated_backprop():
    """A top-down pass that ignores the activation variables is not df/dI."""
    net = ConvNet.random(1, [(3, 3, 1, 1), (2, 3, 2, 0)], seed=5)
    I = np.random.default_rng(6).standard_normal((1, 1, 7, 7))
    fwd = net.forward(I)
    ungated = np.ones_like(fwd.outputs[-1])
    for l in range(net.depth - 1, -1, -1):
        ungated = net.conv.adjoint(fwd.geometries[l], ungated, net.layers[l].weight)
    _, B = net.linear_piece(I)
    with pytest.raises(AssertionError, match="df/dI vs B"):
        assert_close(ungated, B, EXACT, "df/dI vs B")
