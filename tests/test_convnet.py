"""The ConvNet engine beyond the graded methods: class scores, pieces, basis functions, float32.

The graded methods have their properties in the lesson tests, which this suite runs too:
``forward``, ``activation_pattern`` and ``piece_from_pattern`` (the score is the sum of the top
layer, delta = 1(z > 0), f = alpha + <I, B> of Eq. (6.8)) in tests/lessons/test_lesson_02.py;
``_backprop`` (df/dI, df/dW, df/db against finite differences, backprop == the top-down
deconvolution (6.7), softplus) in tests/lessons/test_lesson_03.py.

Here (Xie et al., sections 2, 6, 9), on Hypothesis-drawn architectures, each with a negative
control below it:

* class scores, Eq. (2.2);
* an image constructed in the same piece has the same alpha and B;
* the third way to B: the sum of basis functions (6.14) equals backprop and deconvolution;
  the pre-activations are a + <I, b> with the basis of Eq. (6.12)-(6.13);
* float32 networks agree with float64 to FLOAT32;
* softplus breaks piecewise linearity; f is exactly linear between kinks along a line.
"""

import numpy as np
import pytest
from checks import EXACT, FLOAT32, assert_close, assert_piece_identity
from gradcheck import assert_gradient, coordinate_gradient, input_gradient
from hypothesis import assume, given, settings
from strategies import (
    alive,
    net_and_images,
    probes_in_piece,
    seeds,
    small_mixed_net,
    softplus_net,
)

from refimpl import ConvNet, basis_functions, piece_from_basis
from refimpl.convnet.pieces import image_in_same_piece, line_through_pieces, same_pattern

# --- the scoring function ---------------------------------------------------------------


@given(net_and_images())
def test_class_score_with_unit_weights_is_the_score(case):
    """Eq. (2.2) with w_c = 1 sums the top features: the score of Eq. (3.5) (itself graded in
    lesson 2)."""
    net, I = case
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
    # negative control: the classes' weights swapped give other scores
    with pytest.raises(AssertionError, match="class scores"):
        assert_close(net.class_scores(I, w_c[::-1]), expected, EXACT, "class scores")


# --- backward from any upstream gradient ------------------------------------------------


@given(net_and_images())
def test_backward_with_unit_top_gradient_is_grad_input_and_grad_params(case):
    """``backward(fwd, 1)`` is the backprop of f itself: the arrays of grad_input / grad_params."""
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
def test_B_basis_functions_equal_backprop_and_deconvolution(case):
    """The third way to B (forward mode, Eqs. (6.13)-(6.14)) against the other two; backprop
    == deconvolution (6.7) is graded in lesson 3 (test_backprop_equals_top_down_deconvolution)."""
    net, I = case
    assume(alive(net, I))
    B_backprop = net.grad_input(I)
    alpha_deconv, B_deconv = net.linear_piece(I)
    basis = basis_functions(net, I)
    alpha_basis, B_basis = piece_from_basis(basis[-1], net.activation_pattern(I)[-1])
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


def test_negative_control_basis_check_catches_ungated_basis():
    """Dropping the delta gates of Eq. (6.13) breaks z = a + <I, b> at layer 2."""
    net, I = small_mixed_net()
    fwd = net.forward(I)
    pixels = I[0].size
    eye = np.eye(pixels).reshape((pixels,) + I.shape[1:])
    ungated = eye
    for layer in net.layers:
        ungated = net.conv.forward(layer.geometry(ungated.shape, "x"), ungated, layer.weight)
    a_right, _ = basis_functions(net, I[:1])[-1]
    b_wrong = ungated.reshape(pixels, -1).T.reshape(a_right.shape + I.shape[1:])
    inner = np.einsum("mkijchw,mchw->mkij", b_wrong, I[:1])
    with pytest.raises(AssertionError, match="z = a"):
        assert_close(a_right + inner, fwd.pre_activations[-1][:1], EXACT, "layer 2: z = a + <I, b>")


# --- implementations and dtypes agree ---------------------------------------------------


@given(net_and_images())
def test_float32_network_close_to_float64(case):
    net, I = case
    net32 = net.to(dtype="float32")
    assert net32.dtype == np.float32 and net32.score(I).dtype == np.float32
    f64, f32 = net.score(I), net32.score(I.astype(np.float32))
    assume(np.abs(f64).max() > 1e-3)  # a relative error of an f that is ~0 would be all rounding
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


def test_negative_control_float32_check_rejects_half_precision():
    """An error of float16's unit roundoff (2^-11 = 4.9e-4, above FLOAT32) is rejected."""
    net, I = small_mixed_net()
    half = net.score(I) * (1 + 2.0**-11)
    with pytest.raises(AssertionError, match="float32 score"):
        assert_close(half, net.score(I), FLOAT32, "float32 score")


# --- section 9: a smooth non-linearity ----------------------------------------------------


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
    """With softplus f is curved between sample points, so the linearity residual is large
    (measured 0.69; the ReLU net's is 1.8e-16): far above EXACT, so the check rejects it."""
    net, I = small_mixed_net()
    smooth = softplus_net(net)
    direction = np.random.default_rng(0).standard_normal(I[:1].shape)
    residual = line_through_pieces(smooth, I[:1], direction, np.linspace(-2, 2, 201)).max_residual
    assert residual > 1e6 * EXACT
