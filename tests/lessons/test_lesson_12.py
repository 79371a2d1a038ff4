"""Lesson 12 (general non-linearity and max pooling, section 9, Eqs. (9.1)-(9.2)).

Graded functions and the tests that grade them (``GRADED``, read by grade.py):
refimpl.activations.softplus / sigmoid (the smooth non-linearity and its derivative,
the activation variables of Eq. (9.1)) and refimpl.conv.pool.max_pool2d /
max_pool2d_adjoint (max pooling and arg-max retrieval).

The independent references: values worked out by hand, the formulas written out with NumPy
in the test (``log1p(exp(z))``, ``1 / (1 + exp(-z))``, ``logaddexp``), max pooling and its
adjoint as explicit loops, refimpl's convolution (which shares no code with the graded
functions) to build networks by hand, and central finite differences (tests/gradcheck.py).
"""

import numpy as np
import pytest
from checks import (
    EXACT,
    FINITE_DIFFERENCE,
    assert_adjoint,
    assert_close,
    inner_residual,
    max_pool_adjoint_loops,
    max_pool_loops,
)
from gradcheck import assert_gradient, input_gradient
from hypothesis import given, settings
from strategies import networks, pool_problems

from refimpl import ConvLayer, ConvNet
from refimpl.activations import sigmoid, softplus
from refimpl.conv import conv2d, conv2d_adjoint, max_pool2d, max_pool2d_adjoint
from refimpl.models import GenerativeModel
from refimpl.theorems import smooth

GRADED = {
    "activations.softplus": ["test_softplus"],
    "activations.sigmoid": ["test_sigmoid"],
    "conv.pool.max_pool2d": ["test_pool_forward", "test_pool_network"],
    "conv.pool.max_pool2d_adjoint": ["test_pool_adjoint", "test_pool_network"],
}

EPS = np.finfo(np.float64).eps
LOG2 = np.log(2.0)
LOG3 = np.log(3.0)


def softplus_reference(z):
    """``max(z, 0) + log1p(exp(-|z|))``: log(1 + e^z) rearranged so that exp never overflows."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def moderate_arguments():
    """|z| <= 30 on a grid and at random, as a 4-D array (the shape of a batch of feature maps)."""
    rng = np.random.default_rng(12)
    z = np.concatenate(
        [np.linspace(-30, 30, 601), rng.uniform(-30, 30, 595), [0.0, -0.0, 1e-300, -1e-300]]
    )
    return z.reshape(2, 3, 20, 10)


LARGE = np.array([-1e300, -1e5, -1000.0, -745.0, -710.0, -40.0, 40.0, 710.0, 1000.0, 1e5, 1e300])


def softplus_convnet(net):
    """The same filters with softplus instead of ReLU (a linear top layer stays linear)."""
    return ConvNet(
        [
            ConvLayer(
                l.weight, l.bias, l.stride, l.pad, activation="softplus" if l.relu else "linear"
            )
            for l in net.layers
        ]
    )


# --- softplus -------------------------------------------------------------------------------


def test_softplus_by_hand():
    """log(1 + e^0) = log 2, log(1 + 3) = 2 log 2, log(1 + 1/3) = log 4 - log 3."""
    z = np.array([0.0, LOG3, -LOG3])
    assert_close(softplus(np, z), [LOG2, 2 * LOG2, 2 * LOG2 - LOG3], EXACT, "softplus")


def test_softplus_matches_log1p_exp():
    z = moderate_arguments()
    out = softplus(np, z)
    assert out.shape == z.shape
    written_out = np.log1p(np.exp(z))  # safe for |z| <= 30
    # both are accurate to a few ulps (1e-16) relative for |z| <= 30
    assert np.all(np.abs(out - written_out) <= EXACT * written_out), "softplus != log1p(exp(z))"


def test_softplus_large_arguments_without_overflow():
    """softplus(1000) = 1000, softplus(-1000) = 0 (e^-1000 underflows): no overflow, no NaN."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = softplus(np, LARGE)
    assert np.all(np.isfinite(out))
    assert softplus(np, np.array([1000.0]))[0] == 1000.0
    assert 0.0 <= softplus(np, np.array([-1000.0]))[0] < 1e-300  # e^-1000: 0 or subnormal
    assert np.all(  # a few ulps (u = 1.1e-16) relative; 1e-300 where both underflow to 0
        np.abs(out - softplus_reference(LARGE))
        <= 1e-15 * np.abs(softplus_reference(LARGE)) + 1e-300
    )
    positive = LARGE > 0  # log(1 + e^z) = z + log(1 + e^-z) = z to rounding once z >= 40
    assert np.all(np.abs(out[positive] - LARGE[positive]) <= 2 * EPS * LARGE[positive])


def test_softplus_identities():
    """softplus(z) - softplus(-z) = z and softplus(z) > max(z, 0), for every z."""
    z = np.concatenate([moderate_arguments().ravel(), LARGE[np.abs(LARGE) < 1e10]])
    plus, minus = softplus(np, z), softplus(np, -z)
    assert np.all(np.abs(plus - minus - z) <= 4 * EPS * np.maximum(np.abs(z), 1.0))
    assert np.all(plus >= np.maximum(z, 0.0))
    assert np.all(np.abs(plus - softplus_reference(z)) <= EXACT * softplus_reference(z) + 1e-300)


def test_softplus_keeps_shape_and_dtype():
    """float32 stays float32: a softplus ConvNet in float32 feeds its output to a float32 conv."""
    z = moderate_arguments().astype(np.float32)
    out = softplus(np, z)
    assert out.shape == z.shape and out.dtype == np.float32
    # float32 rounds each value to 6e-8 relative; 1e-6 allows 16 units of roundoff
    assert np.allclose(out, np.log1p(np.exp(z.astype(np.float64))), rtol=1e-6, atol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softplus_convnet_score(seed):
    """f(I) of a softplus ConvNet = the net written out: conv2d, then logaddexp(0, z), summed."""
    relu_net = ConvNet.random(
        2, [(3, 3, 2, 1), (4, 3, 1, 1), (2, 2, 1, 0)], seed=seed, bias_std=0.5
    )
    net = softplus_convnet(relu_net)
    I = np.random.default_rng(seed).standard_normal((3, 2, 9, 9))
    x = I
    for layer in net.layers:
        x = np.logaddexp(
            0.0, conv2d(x, layer.weight, layer.bias, stride=layer.stride, pad=layer.pad)
        )
    assert_close(net.score(I), x.sum(axis=(1, 2, 3)), EXACT, "softplus f")
    assert not np.allclose(net.score(I), relu_net.score(I))  # the activation was really swapped


def test_softplus_breaks_theorem1():
    """Section 9: under softplus f is curved, so Theorem 1's piece constant varies (the check
    must fail); under ReLU, with the same filters, it does not."""
    relu_net = ConvNet.random(1, [(4, 3, 2, 1), (3, 3, 1, 1)], seed=3, bias_std=0.3)
    images = np.random.default_rng(4).standard_normal((4, 1, 8, 8))
    soft = smooth.check_theorem1_fails_for_smooth_h(
        GenerativeModel(softplus_convnet(relu_net)), images, np.random.default_rng(5)
    )
    relu = smooth.check_theorem1_fails_for_smooth_h(
        GenerativeModel(relu_net), images, np.random.default_rng(5)
    )
    # measured 2.7e-6 (softplus) and 2.7e-16 (ReLU): the check's threshold, 1e-9, lies between
    assert soft.passed and soft.residual > 1e-7, soft.residual
    assert not relu.passed and relu.residual < EXACT, relu.residual


# --- sigmoid --------------------------------------------------------------------------------


def test_sigmoid_by_hand():
    """1 / (1 + e^0) = 1/2, 1 / (1 + 1/3) = 3/4, 1 / (1 + 3) = 1/4."""
    z = np.array([0.0, LOG3, -LOG3])
    assert sigmoid(np, np.array([0.0]))[0] == 0.5
    assert_close(sigmoid(np, z), [0.5, 0.75, 0.25], EXACT, "sigmoid")


def test_sigmoid_matches_logistic():
    """1 / (1 + e^-z) written out (safe for |z| <= 30), to a few ulps of 1: the values gate the
    top-down pass, so absolute accuracy is what matters (a tail value e^-30 ~ 1e-13 may lose its
    leading digits, as 0.5 (1 + tanh(z / 2)) does)."""
    z = moderate_arguments()
    out = sigmoid(np, z)
    assert out.shape == z.shape
    written_out = 1.0 / (1.0 + np.exp(-z))
    assert np.all(np.abs(out - written_out) <= EXACT * written_out + 4 * EPS), (
        "sigmoid != 1 / (1 + e^-z)"
    )
    assert np.all(np.abs(out + sigmoid(np, -z) - 1.0) <= 4 * EPS), "sigmoid(z) + sigmoid(-z) != 1"


def test_sigmoid_large_arguments_without_overflow():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = sigmoid(np, LARGE)
    assert np.all(np.isfinite(out))
    assert np.all((out >= 0) & (out <= 1))
    assert sigmoid(np, np.array([1000.0]))[0] == 1.0
    assert 0.0 <= sigmoid(np, np.array([-1000.0]))[0] < 1e-300  # e^-1000: 0 or subnormal
    assert np.all(np.abs(out - (LARGE > 0)) <= 4 * EPS)


def test_sigmoid_keeps_shape_and_dtype():
    z = moderate_arguments().astype(np.float32)
    out = sigmoid(np, z)
    assert out.shape == z.shape and out.dtype == np.float32
    # values in [0, 1], float32 spacing <= 6e-8 there: 1e-6 allows 16 units of roundoff
    assert np.allclose(out, 1.0 / (1.0 + np.exp(-z.astype(np.float64))), rtol=0, atol=1e-6)


def test_sigmoid_is_the_derivative_of_softplus():
    """Central differences of sum_i log(1 + e^{z_i}) (written with logaddexp) give sigmoid(z)."""
    z = np.linspace(-12, 12, 49)
    fd = input_gradient(lambda batch: np.logaddexp(0.0, batch).sum(axis=1), z)
    assert_gradient(sigmoid(np, z), fd, what="sigmoid = d softplus / dz")
    fd_refimpl = input_gradient(lambda batch: softplus(np, batch).sum(axis=1), z)
    assert_gradient(sigmoid(np, z), fd_refimpl, what="sigmoid = d softplus / dz")


@settings(max_examples=15)
@given(networks(max_image=7, max_depth=3))
def test_sigmoid_convnet_gradient(case):
    """Eq. (9.2) through backprop: grad_input of a softplus ConvNet = central differences of f.

    f is smooth, so the central-difference error is O(h^2) and no probe can cross a kink."""
    relu_net, arch = case
    net = softplus_convnet(relu_net)
    I = np.random.default_rng(int(arch.height * 31 + arch.width)).standard_normal(
        arch.image_shape(1)
    )
    fd = input_gradient(net.score, I[0])
    assert_gradient(net.grad_input(I)[0], fd, FINITE_DIFFERENCE, "df/dI")


def test_sigmoid_top_down_is_gradient():
    """The top-down pass Eq. (6.7) with delta = h'(z) (Eq. (9.1)) equals df/dI (Eq. (9.2))."""
    relu_net = ConvNet.random(1, [(4, 3, 2, 1), (5, 3, 1, 1), (3, 2, 1, 0)], seed=7, bias_std=0.3)
    net = softplus_convnet(relu_net)
    images = np.random.default_rng(8).standard_normal((3, 1, 10, 10))
    pattern = net.activation_pattern(images)
    assert all(d.dtype == np.float64 and np.all((d > 0) & (d < 1)) for d in pattern)  # not binary
    result = smooth.check_smooth_top_down_is_gradient(
        GenerativeModel(net), images, np.random.default_rng(9)
    )
    assert result.passed, result.details
    fd = input_gradient(net.score, images[0])
    assert_gradient(net.linear_piece(images[:1])[1][0], fd, FINITE_DIFFERENCE, "B")


# --- negative controls (ungraded) -------------------------------------------------------------


def test_negative_control_written_out_softplus_overflows():
    """The overflow test catches log(1 + e^z) as it reads."""
    with pytest.raises(FloatingPointError):
        with np.errstate(over="raise"):
            np.log1p(np.exp(LARGE))


def test_negative_control_gradient_check_sees_a_wrong_derivative():
    """The ReLU's derivative 1(z > 0) is not softplus's: the gradient check says so."""
    z = np.linspace(-12, 12, 49)
    fd = input_gradient(lambda batch: np.logaddexp(0.0, batch).sum(axis=1), z)
    with pytest.raises(AssertionError):
        assert_gradient((z > 0).astype(float), fd)


# --- max_pool2d ------------------------------------------------------------------------------


def select(v, arg):
    """P_a v: the entries of each plane v[n, c] at the flat indices arg[n, c] (linear in v)."""
    n, c = arg.shape[:2]
    return np.take_along_axis(v.reshape(n, c, -1), arg.reshape(n, c, -1), axis=2).reshape(arg.shape)


X = np.array(
    [[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 7.0, 1.0], [0.0, 2.0, 6.0, 6.0], [9.0, 1.0, 3.0, 6.0]]
)[None, None]


def test_pool_forward_by_hand():
    """2x2 windows: maxima 5, 7, 9, 6 at (0,1), (1,2), (3,0) and, for the tie 6 6 / 3 6, the
    first in row-major order, (2,2). 3x3 windows at stride 1: 7 at (1,2) wins three of four."""
    y, arg = max_pool2d(X, 2)
    assert np.array_equal(y[0, 0], [[5.0, 7.0], [9.0, 6.0]])
    assert np.array_equal(arg[0, 0], [[1, 6], [12, 10]]) and arg.dtype == np.int64
    y, arg = max_pool2d(X, 3, 1)
    assert np.array_equal(y[0, 0], [[7.0, 7.0], [9.0, 7.0]])
    assert np.array_equal(arg[0, 0], [[6, 6], [12, 6]])
    y, arg = max_pool2d(X[:, :, :3], 2, 1)  # a 3 x 4 input: 2 x 3 windows, W = 4 in the flat index
    assert np.array_equal(y[0, 0], [[5.0, 7.0, 7.0], [4.0, 7.0, 7.0]])
    assert np.array_equal(arg[0, 0], [[1, 6, 6], [5, 6, 6]])


@settings(max_examples=60)
@given(pool_problems())
def test_pool_forward_equals_loops(p):
    x, size, stride, _ = p
    y, arg = max_pool2d(x, size, stride)
    y_ref, arg_ref = max_pool_loops(x, size, stride)
    assert np.array_equal(y, y_ref)
    assert np.array_equal(arg, arg_ref)  # ties included
    assert np.array_equal(select(x, arg), y)  # the winners hold the maxima


def test_pool_forward_matches_pytorch():
    """An independent implementation, where installed (the test is skipped otherwise)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((2, 3, 11, 9))
    for size, stride in [(2, 2), (3, 2), (3, 1)]:
        y_t, i_t = torch.nn.functional.max_pool2d(
            torch.from_numpy(x), size, stride, return_indices=True
        )
        y, arg = max_pool2d(x, size, stride)
        assert np.array_equal(y, y_t.numpy()) and np.array_equal(arg, i_t.numpy())


def test_pool_forward_default_stride_and_dtype():
    x = np.random.default_rng(6).standard_normal((2, 3, 9, 7)).astype(np.float32)
    y, arg = max_pool2d(x, 3)  # stride defaults to the window size
    y_ref, arg_ref = max_pool_loops(x, 3, 3)
    assert y.shape == (2, 3, 3, 2) and y.dtype == np.float32
    assert np.array_equal(y, y_ref) and np.array_equal(arg, arg_ref)


# --- max_pool2d_adjoint ----------------------------------------------------------------------


def test_pool_adjoint_by_hand():
    """Each coefficient goes to its winner; a pixel that wins several windows collects their sum."""
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 0, 1], expected[0, 0, 1, 2], expected[0, 0, 3, 0], expected[0, 0, 2, 2] = (
        1,
        2,
        3,
        4,
    )
    assert np.array_equal(
        max_pool2d_adjoint(dy, np.array([[[[1, 6], [12, 10]]]]), (1, 1, 4, 4)), expected
    )
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 1, 2], expected[0, 0, 3, 0] = 1 + 2 + 4, 3  # 3x3 windows, stride 1: 7 won three
    assert np.array_equal(
        max_pool2d_adjoint(dy, np.array([[[[6, 6], [12, 6]]]]), (1, 1, 4, 4)), expected
    )


@settings(max_examples=60)
@given(pool_problems())
def test_pool_adjoint_equals_loops(p):
    """At the loops' own winners, and at arbitrary indices (collisions included)."""
    x, size, stride, dy = p
    _, arg = max_pool_loops(x, size, stride)
    assert_close(
        max_pool2d_adjoint(dy, arg, x.shape), max_pool_adjoint_loops(dy, arg, x.shape), EXACT
    )
    anywhere = np.random.default_rng(int(abs(dy).sum() * 1e6) % 2**32).integers(
        0, x.shape[2] * x.shape[3], dy.shape
    )
    assert_close(
        max_pool2d_adjoint(dy, anywhere, x.shape),
        max_pool_adjoint_loops(dy, anywhere, x.shape),
        EXACT,
    )


@settings(max_examples=60)
@given(pool_problems())
def test_pool_adjoint_identity_at_fixed_argmax(p):
    """<P_a x', y> = <x', P_a^T y> for the selection P_a of fixed winners and any x'."""
    x, size, stride, dy = p
    _, arg = max_pool_loops(x, size, stride)
    other = np.random.default_rng(0).standard_normal(x.shape)
    assert_adjoint(
        lambda v: select(v, arg), lambda d: max_pool2d_adjoint(d, arg, x.shape), other, dy
    )


def test_pool_adjoint_keeps_dtype():
    dy = np.ones((1, 2, 2, 2), dtype=np.float32)
    arg = np.zeros((1, 2, 2, 2), dtype=np.int64)
    out = max_pool2d_adjoint(dy, arg, (1, 2, 3, 3))
    assert out.dtype == np.float32 and out.shape == (1, 2, 3, 3)
    assert np.array_equal(out[0, :, 0, 0], [4.0, 4.0]) and out.sum() == 8.0


@settings(max_examples=20)
@given(pool_problems(max_image=7, ties=False))
def test_pool_adjoint_is_the_gradient(p):
    """Away from ties, d<max_pool2d(x), dy>/dx = arg-max retrieval of dy (section 9)."""
    x, size, stride, dy = p
    _, arg = max_pool2d(x, size, stride)

    def pooled_inner(batch):
        y = max_pool2d(batch.reshape((-1,) + x.shape[1:]), size, stride)[0]
        return (y.reshape((len(batch),) + dy.shape) * dy[None]).sum(axis=(1, 2, 3, 4))

    assert_gradient(max_pool2d_adjoint(dy, arg, x.shape), input_gradient(pooled_inner, x))


# --- a ReLU + max-pool network is piecewise linear ---------------------------------------------


def pool_network(seed):
    """conv (ReLU) -> 2x2 max pool -> conv (ReLU) -> sum: f, and the top-down (alpha, B)."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.standard_normal((3, 1, 3, 3)) / 3, 0.1 + 0.3 * rng.standard_normal(3)
    w2, b2 = rng.standard_normal((2, 3, 2, 2)) / 3, 0.1 + 0.3 * rng.standard_normal(2)

    def bottom_up(I):
        z1 = conv2d(I, w1, b1, pad=1)
        p, arg = max_pool2d(np.maximum(z1, 0.0), 2)
        z2 = conv2d(p, w2, b2)
        return np.maximum(z2, 0.0).sum(axis=(1, 2, 3)), (z1 > 0, arg, z2 > 0), z1.shape, p.shape

    def top_down(I):
        _, (d1, arg, d2), z1_shape, p_shape = bottom_up(I)
        g2 = d2.astype(float)  # B^(2) delta^(2), B^(2) = 1
        alpha = g2.sum(axis=(2, 3)) @ b2
        g1 = max_pool2d_adjoint(conv2d_adjoint(g2, w2, p_shape[2:]), arg, z1_shape) * d1
        alpha = alpha + g1.sum(axis=(2, 3)) @ b1
        return alpha, conv2d_adjoint(g1, w1, I.shape[2:], pad=1)

    return bottom_up, top_down


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pool_network_is_piecewise_linear(seed):
    """f = alpha + <I, B> (Eq. (6.8)) with arg-max retrieval in the top-down pass, B = df/dI
    (finite differences), and f exactly linear between two images with the same switches."""
    bottom_up, top_down = pool_network(seed)
    I = np.random.default_rng(100 + seed).standard_normal((2, 1, 8, 8))
    f, (d1, arg, d2), _, _ = bottom_up(I)
    alpha, B = top_down(I)
    assert_close(f, alpha + (I * B).sum(axis=(1, 2, 3)), EXACT, "f = alpha + <I, B>")
    fd = input_gradient(lambda batch: bottom_up(batch)[0], I[0])
    _, (p1, parg, p2), _, _ = bottom_up(
        fd.probes
    )  # every probe kept every switch: f is linear there
    assert all(
        np.array_equal(p, np.broadcast_to(k[:1], p.shape))
        for p, k in ((p1, d1), (parg, arg), (p2, d2))
    )
    assert_gradient(B[0], fd, FINITE_DIFFERENCE, "B")
    direction = np.random.default_rng(200 + seed).standard_normal(I[:1].shape)
    for t in (1e-3, 1e-4, 1e-5):
        J = I[:1] + t * direction
        _, (q1, qarg, q2), _, _ = bottom_up(J)
        if (
            np.array_equal(q1, d1[:1])
            and np.array_equal(qarg, arg[:1])
            and np.array_equal(q2, d2[:1])
        ):
            assert_close(bottom_up(J)[0], alpha[:1] + (J * B[:1]).sum(), EXACT, "f on the piece")
            break
    else:
        pytest.fail("no step kept the switches")


# --- negative controls (ungraded) -------------------------------------------------------------


def test_negative_control_adjoint_identity_catches_a_shifted_winner():
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6))
    dy = np.random.default_rng(2).standard_normal((1, 2, 3, 3))
    _, arg = max_pool_loops(x, 2, 2)
    wrong = max_pool_adjoint_loops(dy, (arg + 1) % 36, x.shape)  # each coefficient one pixel off
    # each coefficient meets an unrelated pixel: an O(1) residual, where the check allows EXACT
    assert inner_residual(select(x, arg) * dy, x * wrong) > 1e-3


def test_negative_control_gradient_check_sees_average_pooling():
    """Average pooling's adjoint (each coefficient spread over its window) is not max pooling's."""
    x = np.random.default_rng(3).standard_normal((1, 1, 4, 4))
    fd = input_gradient(
        lambda b: np.array([max_pool_loops(v[None], 2, 2)[0].sum() for v in b]), x[0]
    )
    with pytest.raises(AssertionError):
        assert_gradient(np.full((1, 4, 4), 0.25), fd)
    assert_gradient(
        max_pool_adjoint_loops(np.ones((1, 1, 2, 2)), max_pool_loops(x, 2, 2)[1], x.shape)[0], fd
    )
