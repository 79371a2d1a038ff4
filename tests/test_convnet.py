"""The ConvNet engine: scores, backprop, activation patterns, linear pieces, basis functions.

Properties (seed 003, sections 2, 3, 6, 9), each on Hypothesis-drawn architectures and each
with a negative control below it:

* df/dI, df/dW, df/db match central finite differences (rel. error < 1e-6) away from kinks;
* f = alpha + <I, B> (Eq. (6.8)) to 1e-12;
* an image constructed in the same piece has the same alpha and B;
* B from backprop == top-down deconvolution (6.7) == sum of basis functions (6.14);
* the pre-activations are a + <I, b> with the basis of Eq. (6.12)-(6.13).
"""

import numpy as np
import pytest
from checks import EXACT, FLOAT32, assert_close, assert_piece_identity
from gradcheck import assert_gradient, coordinate_gradient, input_gradient
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import (
    alive,
    images,
    net_and_images,
    networks,
    probes_in_piece,
    seeds,
    small_mixed_net,
    softplus_net,
)

from refimpl import ConvNet, basis_functions, piece_from_basis
from refimpl.convnet.pieces import image_in_same_piece, line_through_pieces, same_pattern

# --- the scoring function ---------------------------------------------------------------


@given(net_and_images())
def test_score_is_sum_of_top_layer(case):
    """Eq. (3.5): f(I) = sum_{k,x} [F^(L)_k * I](x); class scores with all-ones weights equal it."""
    net, I = case
    top = net.forward(I).outputs[-1]
    assert net.score(I).shape == (len(I),)
    assert_close(net.score(I), top.sum(axis=(1, 2, 3)), EXACT, "score")
    ones = np.ones((1, net.layers[-1].out_channels))
    assert_close(net.class_scores(I, ones)[:, 0], net.score(I), EXACT, "class score with w_c = 1")


def test_class_scores_eq_2_2():
    """Eq. (2.2) with a 1x1 top layer: f_c = sum_k w_{c,k} [F_k^(L) * I]."""
    net = ConvNet.random(1, [(4, 3), (5, 6, 1, 0)], seed=0)  # 8x8 -> 6x6 -> 1x1
    I = np.random.default_rng(1).standard_normal((3, 1, 8, 8))
    w_c = np.random.default_rng(2).standard_normal((2, 5))
    features = net.forward(I).outputs[-1][:, :, 0, 0]
    expected = np.array(
        [[sum(w_c[c, k] * features[m, k] for k in range(5)) for c in range(2)] for m in range(3)]
    )
    assert_close(net.class_scores(I, w_c), expected, EXACT, "class scores")


# --- backprop vs finite differences -----------------------------------------------------


@given(net_and_images(max_batch=2))
def test_grad_input_matches_finite_differences(case):
    net, I = case
    assume(alive(net, I))
    analytic = net.grad_input(I)
    assert analytic.shape == I.shape
    for m in range(len(I)):
        fd = input_gradient(net.score, I[m])
        assume(probes_in_piece(net, I[m], fd.probes))
        assert_gradient(analytic[m], fd, what="df/dI")


@settings(max_examples=15)
@given(net_and_images(max_batch=2), seeds)
def test_grad_params_match_finite_differences(case, seed):
    net, I = case
    assume(alive(net, I))
    grads = net.grad_params(I)
    assert [(dw.shape, db.shape) for dw, db in grads] == [
        (l.weight.shape, l.bias.shape) for l in net.layers
    ]
    base = net.activation_pattern(I)
    crossed = []
    objective = lambda: float(net.score(I).sum())
    on_probe = lambda: crossed.append(not same_pattern(net.activation_pattern(I), base))
    rng = np.random.default_rng(seed)
    for layer, (dw, db) in zip(net.layers, grads):
        for array, analytic in ((layer.weight, dw), (layer.bias, db)):
            coords = rng.choice(array.size, size=min(array.size, 12), replace=False)
            fd = coordinate_gradient(objective, array, coords, on_probe=on_probe)
            assume(not any(crossed))
            assert_gradient(analytic.reshape(-1)[coords], fd, what="df/dw")


def _grad_input_ignoring_top_mask(net, I):
    """A wrong backprop: forgets the ReLU derivative of the top layer."""
    fwd = net.forward(I)
    grad = np.ones_like(fwd.outputs[-1])
    for l in range(net.depth - 1, -1, -1):
        layer, geom = net.layers[l], fwd.geometries[l]
        if l < net.depth - 1:
            grad = grad * (fwd.pre_activations[l] > 0)
        grad = net.conv.adjoint(geom, grad, layer.weight)
    return grad


def test_negative_control_gradient_check_catches_missing_relu_mask():
    net, I = small_mixed_net()
    fd = input_gradient(net.score, I[0])
    assert probes_in_piece(net, I[0], fd.probes)
    assert_gradient(net.grad_input(I)[0], fd)  # the real one passes...
    with pytest.raises(AssertionError, match="relative error"):  # ...the broken one fails
        assert_gradient(_grad_input_ignoring_top_mask(net, I)[0], fd)


# --- backward from any upstream gradient ------------------------------------------------


@given(net_and_images())
def test_backward_with_unit_top_gradient_is_grad_input_and_grad_params(case):
    """``backward(fwd, 1)`` is the backprop of f itself: the same arrays as grad_input / grad_params."""
    net, I = case
    fwd = net.forward(I)
    grad_I, grads = net.backward(fwd, np.ones_like(fwd.outputs[-1]))
    assert_close(grad_I, net.grad_input(I), EXACT, "d/dI")
    for (dW, db), (eW, eb) in zip(grads, net.grad_params(I)):
        assert_close(dW, eW, EXACT, "dW")
        assert_close(db, eb, EXACT, "db")


@settings(max_examples=25)
@given(net_and_images(max_batch=2), seeds)
def test_backward_matches_finite_differences_of_a_weighted_top_map(case, seed):
    """For ``J = sum G * x^(L)`` with a random ``G``: ``backward(fwd, G)`` gives dJ/dI and dJ/dw."""
    net, I = case
    assume(alive(net, I))
    rng = np.random.default_rng(seed)
    G = rng.standard_normal(net.forward(I).outputs[-1].shape)
    grad_I, grads = net.backward(net.forward(I), G)
    for m in range(len(I)):
        Gm = G[m : m + 1]
        fd = input_gradient(
            lambda batch, Gm=Gm: (Gm * net.forward(batch).outputs[-1]).sum(axis=(1, 2, 3)), I[m]
        )
        assume(probes_in_piece(net, I[m], fd.probes))
        assert_gradient(grad_I[m], fd, what="dJ/dI")
    base = net.activation_pattern(I)
    crossed = []
    objective = lambda: float((G * net.forward(I).outputs[-1]).sum())
    on_probe = lambda: crossed.append(not same_pattern(net.activation_pattern(I), base))
    for layer, (dW, db) in zip(net.layers, grads):
        for array, analytic in ((layer.weight, dW), (layer.bias, db)):
            coords = rng.choice(array.size, size=min(array.size, 8), replace=False)
            fd = coordinate_gradient(objective, array, coords, on_probe=on_probe)
            assume(not any(crossed))
            assert_gradient(analytic.reshape(-1)[coords], fd, what="dJ/dw")


def test_negative_control_backward_check_sees_the_wrong_top_gradient():
    """Backprop of ones where G was meant: the finite differences of sum G x^(L) reject it."""
    net, I = small_mixed_net()
    fwd = net.forward(I)
    G = np.random.default_rng(5).standard_normal(fwd.outputs[-1].shape)
    fd = input_gradient(lambda b: (G[:1] * net.forward(b).outputs[-1]).sum(axis=(1, 2, 3)), I[0])
    assert probes_in_piece(net, I[0], fd.probes)
    assert_gradient(net.backward(fwd, G)[0][0], fd)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient(net.backward(fwd, np.ones_like(G))[0][0], fd)


def test_backward_argument_errors():
    net, I = small_mixed_net()
    fwd = net.forward(I)
    top = fwd.outputs[-1]
    with pytest.raises(ValueError, match="shape of the top feature map"):
        net.backward(fwd, np.ones(top.shape[:-1]))
    with pytest.raises(TypeError, match="floating dtype"):
        net.backward(fwd, np.ones(top.shape, dtype=int))
    with pytest.raises(ValueError, match="non-finite"):
        net.backward(fwd, np.full(top.shape, np.nan))
    with pytest.raises(TypeError, match="Forward"):
        net.backward(top, np.ones(top.shape))
    with pytest.raises(ValueError, match="want_input, want_params or both"):
        net.backward(fwd, np.ones(top.shape), want_input=False, want_params=False)
    grad_I, grads = net.backward(fwd, np.ones(top.shape), want_params=False)
    assert grads is None and grad_I.shape == I.shape


# --- the linear piece, Eq. (6.8) --------------------------------------------------------


@given(net_and_images())
def test_f_equals_alpha_plus_inner_product(case):
    net, I = case
    assume(alive(net, I))
    alpha, B = net.linear_piece(I)
    assert alpha.shape == (len(I),) and B.shape == I.shape
    assert_piece_identity(net.score(I), alpha, B, I)


def _piece_without_bias(net, I):
    """A wrong alpha recursion: drops the bias terms (B is still right)."""
    pattern = net.activation_pattern(I)
    _, B = net.piece_from_pattern(pattern, I.shape[1:])
    return np.zeros(len(I)), B


def test_negative_control_piece_identity_catches_wrong_alpha():
    net, I = small_mixed_net()
    alpha, B = _piece_without_bias(net, I)
    with pytest.raises(AssertionError, match="alpha"):
        assert_piece_identity(net.score(I), alpha, B, I)


@given(net_and_images(max_batch=1), seeds)
def test_same_piece_same_alpha_and_B(case, seed):
    """An image J built in I's piece has I's (alpha, B), and f(J) = alpha_I + <J, B_I>."""
    net, I = case
    assume(alive(net, I))
    direction = np.random.default_rng(seed).standard_normal(I.shape)
    J, step = image_in_same_piece(net, I, direction / np.linalg.norm(direction))
    assume(J is not None)
    alpha_i, B_i = net.linear_piece(I)
    alpha_j, B_j = net.linear_piece(J)
    assert_close(B_j, B_i, EXACT, "B of the second image")
    assert_close(alpha_j, alpha_i, EXACT, "alpha of the second image")
    assert_piece_identity(net.score(J), alpha_i, B_i, J)


def test_negative_control_same_piece_check_sees_a_different_piece():
    """Far from I (another piece) B differs, so the same-piece comparison is not vacuous."""
    net, I = small_mixed_net()
    far = I[:1] + 3.0 * np.random.default_rng(5).standard_normal(I[:1].shape)
    assert not same_pattern(net.activation_pattern(far), net.activation_pattern(I[:1]))
    with pytest.raises(AssertionError, match="B of the second image"):
        assert_close(
            net.linear_piece(far)[1], net.linear_piece(I[:1])[1], EXACT, "B of the second image"
        )


# --- B three ways -----------------------------------------------------------------------


@given(net_and_images(max_image=10))
def test_B_backprop_equals_deconvolution_equals_basis(case):
    net, I = case
    assume(alive(net, I))
    B_backprop = net.grad_input(I)
    alpha_deconv, B_deconv = net.linear_piece(I)
    basis = basis_functions(net, I)
    alpha_basis, B_basis = piece_from_basis(basis[-1], net.activation_pattern(I)[-1])
    assert_close(B_deconv, B_backprop, EXACT, "B: deconvolution (6.7) vs backprop")
    assert_close(B_basis, B_backprop, EXACT, "B: basis functions (6.14) vs backprop")
    assert_close(alpha_basis, alpha_deconv, EXACT, "alpha: basis (6.14) vs recursion")


@given(net_and_images(max_image=10))
def test_pre_activations_are_affine_in_the_basis(case):
    """Eq. (6.12): z^(l)_{k,x} = a^(l)_{k,x} + <I, b^(l)_{k,x}> at every layer."""
    net, I = case
    assume(alive(net, I))
    fwd = net.forward(I)
    for l, ((a, b), z) in enumerate(zip(basis_functions(net, I), fwd.pre_activations), start=1):
        assert a.shape == z.shape and b.shape == z.shape + I.shape[1:]
        inner = np.einsum("mkijchw,mchw->mkij", b, I)
        assert_close(a + inner, z, EXACT, f"layer {l}: z = a + <I, b>")


def _deconvolution_without_gating(net, I):
    """A wrong top-down pass: B^(l-1) = conv^T(B^(l)), ignoring the activation variables."""
    fwd = net.forward(I)
    coeff = np.ones_like(fwd.outputs[-1])
    for l in range(net.depth - 1, -1, -1):
        coeff = net.conv.adjoint(fwd.geometries[l], coeff, net.layers[l].weight)
    return coeff


def test_negative_control_three_ways_check_catches_ungated_deconvolution():
    net, I = small_mixed_net()
    with pytest.raises(AssertionError, match="deconvolution"):
        assert_close(
            _deconvolution_without_gating(net, I),
            net.grad_input(I),
            EXACT,
            "B: deconvolution (6.7) vs backprop",
        )


def test_negative_control_basis_check_catches_ungated_basis():
    """Dropping the delta gates of Eq. (6.13) breaks z = a + <I, b> at layer 2."""
    net, I = small_mixed_net()
    fwd = net.forward(I)
    pixels = I[0].size
    eye = np.eye(pixels).reshape((pixels,) + I.shape[1:])
    ungated = eye
    for layer, geom_layer in zip(net.layers, net.layers):
        ungated = net.conv.forward(layer.geometry(ungated.shape, "x"), ungated, layer.weight)
    a_right, _ = basis_functions(net, I[:1])[-1]
    b_wrong = ungated.reshape(pixels, -1).T.reshape(a_right.shape + I.shape[1:])
    inner = np.einsum("mkijchw,mchw->mkij", b_wrong, I[:1])
    with pytest.raises(AssertionError, match="z = a"):
        assert_close(a_right + inner, fwd.pre_activations[-1][:1], EXACT, "layer 2: z = a + <I, b>")


# --- activation patterns ----------------------------------------------------------------


@given(net_and_images())
def test_activation_pattern_is_relu_indicator(case):
    """Eq. (6.4): delta = 1(z > 0) (bool); a linear layer's delta is all ones; shapes per layer."""
    net, I = case
    pattern = net.activation_pattern(I)
    fwd = net.forward(I)
    assert len(pattern) == net.depth
    for layer, delta, z, shape in zip(
        net.layers, pattern, fwd.pre_activations, net.feature_shapes(I.shape)
    ):
        assert delta.dtype == bool and delta.shape == (len(I),) + tuple(shape)
        expected = z > 0 if layer.relu else np.ones_like(z, dtype=bool)
        assert np.array_equal(delta, expected)
    # x^(l) = delta^(l) * z^(l), Eq. (6.5)
    for delta, z, x in zip(pattern, fwd.pre_activations, fwd.outputs):
        assert np.array_equal(delta * z, x)


# --- implementations and dtypes agree ---------------------------------------------------


@settings(max_examples=10)
@given(st.data())
def test_naive_and_fast_networks_agree(data):
    net, arch = data.draw(networks(max_image=10))
    I = data.draw(images(arch.image_shape(2)))
    slow = net.copy()
    slow = ConvNet(slow.layers, conv_impl="naive")
    assert_close(slow.score(I), net.score(I), EXACT, "score naive vs fast")
    assert_close(slow.grad_input(I), net.grad_input(I), EXACT, "df/dI naive vs fast")
    for (a, b), (c, d) in zip(slow.grad_params(I), net.grad_params(I)):
        assert_close(a, c, EXACT, "df/dW naive vs fast")
        assert_close(b, d, EXACT, "df/db naive vs fast")


@given(net_and_images())
def test_float32_network_close_to_float64(case):
    net, I = case
    net32 = net.to(dtype="float32")
    assert net32.dtype == np.float32 and net32.score(I).dtype == np.float32
    f64, f32 = net.score(I), net32.score(I.astype(np.float32))
    assume(np.abs(f64).max() > 1e-3)
    assume(
        all(
            np.array_equal(a, b)
            for a, b in zip(
                net.activation_pattern(I), net32.activation_pattern(I.astype(np.float32))
            )
        )
    )
    assert_close(f32, f64, FLOAT32, "float32 score")
    assert_close(
        net32.grad_input(I.astype(np.float32)), net.grad_input(I), FLOAT32, "float32 df/dI"
    )


# --- section 9: a smooth non-linearity ----------------------------------------------------


@given(net_and_images(max_batch=1))
def test_softplus_backprop_matches_finite_differences_and_deconvolution(case):
    """Eqs. (9.1)-(9.2): with delta = h'(z), the top-down B is df/dI for a smooth h too."""
    net, I = case
    smooth = softplus_net(net)
    # softplus is smooth: central differences add an O(h^2 f''') ~ 1e-13 truncation error
    assert_gradient(smooth.grad_input(I)[0], input_gradient(smooth.score, I[0]))
    assert_close(smooth.linear_piece(I)[1], smooth.grad_input(I), EXACT, "B (9.2) vs backprop")


def test_softplus_breaks_piecewise_linearity():
    """The negative control the paper predicts (section 9): f != alpha + <I, B> for softplus."""
    net, I = small_mixed_net()
    smooth = softplus_net(net)
    assert not smooth.piecewise_linear and net.piecewise_linear
    alpha, B = smooth.linear_piece(I)
    with pytest.raises(AssertionError, match="alpha"):
        assert_piece_identity(smooth.score(I), alpha, B, I)


# --- along a line: f is exactly linear between kinks --------------------------------------


@settings(max_examples=30)
@given(net_and_images(max_batch=1, max_image=10), seeds)
def test_f_is_linear_between_kinks_along_a_line(case, seed):
    net, I = case
    direction = np.random.default_rng(seed).standard_normal(I.shape)
    line = line_through_pieces(net, I, direction, np.linspace(-2, 2, 201))
    assume(line.points_tested > 0)
    assert line.max_residual < EXACT
    assert line.pieces_crossed == int(line.kinks.sum()) + 1


def test_negative_control_line_check_sees_a_smooth_network():
    """With softplus f is curved between sample points, so the linearity residual is large."""
    net, I = small_mixed_net()
    smooth = softplus_net(net)
    direction = np.random.default_rng(0).standard_normal(I[:1].shape)
    assert (
        line_through_pieces(smooth, I[:1], direction, np.linspace(-2, 2, 201)).max_residual > 1e-4
    )
