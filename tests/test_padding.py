"""Circular padding (refimpl.conv.padding): the convolution of an image on a torus.

Checked against the definition written with modular indices (an independent route: no
padding, no kernels), by the adjoint identities, by translation equivariance on the torus,
and through a ConvNet; each with a negative control: zero padding must fail the checks
that only the torus passes.
"""

import numpy as np
import pytest
from checks import EXACT, assert_adjoint, assert_close, assert_piece_identity
from gradcheck import assert_gradient, coordinate_gradient
from hypothesis import assume, given
from strategies import conv_problems

from refimpl import ConvNet
from refimpl.conv import conv2d, conv2d_adjoint, conv2d_weight_grad
from refimpl.conv.padding import wrap_pad, wrap_pad_adjoint
from refimpl.convnet import LayerSpec
from refimpl.learning.config import LearningConfig


def circular_by_definition(x, weight, stride, pad):
    """The definition: ``y[n,o,i,j] = sum_{c,dy,dx} w[o,c,dy,dx] x[n, c, r, q]``,
    ``r = (s i + dy - p) mod H``, ``q = (s j + dx - p) mod W``."""
    _, _, h, w = x.shape
    k = weight.shape[2]
    out_h, out_w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    y = np.zeros((x.shape[0], weight.shape[0], out_h, out_w))
    for dy in range(k):
        rows = (stride * np.arange(out_h) + dy - pad) % h
        for dx in range(k):
            cols = (stride * np.arange(out_w) + dx - pad) % w
            y += np.einsum("oc,ncij->noij", weight[:, :, dy, dx], x[:, :, rows][:, :, :, cols])
    return y


def _fits(p):
    return p.pad <= min(p.x.shape[2:])


@given(conv_problems())
def test_circular_convolution_is_the_definition(p):
    """Both kernels, to EXACT: the same sums in another order."""
    assume(_fits(p))
    expected = circular_by_definition(p.x, p.weight, p.stride, p.pad)
    for impl in ("fast", "naive"):
        y = conv2d(p.x, p.weight, stride=p.stride, pad=p.pad, impl=impl, padding_mode="circular")
        assert_close(y, expected, EXACT, f"circular conv ({impl})")


def test_negative_control_zero_padding_is_not_the_definition():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 8, 8)), rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(AssertionError, match="circular conv"):
        zero_padded = conv2d(x, w, pad=1)
        assert_close(zero_padded, circular_by_definition(x, w, 1, 1), EXACT, "circular conv")


@given(conv_problems())
def test_circular_adjoint_identities(p):
    """<conv(x), y> = <x, conv^T(y)> and the same in the weights, on the torus."""
    assume(_fits(p))
    size, k = p.x.shape[2:], p.weight.shape[2]
    mode = dict(stride=p.stride, pad=p.pad, padding_mode="circular")
    assert_adjoint(
        lambda x: conv2d(x, p.weight, **mode),
        lambda y: conv2d_adjoint(y, p.weight, size, **mode),
        p.x,
        p.y,
    )
    assert_adjoint(
        lambda w: conv2d(p.x, w, **mode),
        lambda y: conv2d_weight_grad(p.x, y, k, **mode),
        p.weight,
        p.y,
    )


@pytest.mark.parametrize("pad", [0, 1, 3, 5])
def test_wrap_pad_adjoint(pad):
    rng = np.random.default_rng(pad)
    x = rng.standard_normal((2, 3, 5, 7))
    g = rng.standard_normal((2, 3, 5 + 2 * pad, 7 + 2 * pad))
    assert_adjoint(lambda a: wrap_pad(a, pad), lambda b: wrap_pad_adjoint(b, pad), x, g)


def test_negative_control_dropping_the_margins_is_no_adjoint():
    """Cropping the padded gradient (zero padding's adjoint) misses the wrapped copies."""
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((1, 1, 6, 6)), rng.standard_normal((1, 1, 10, 10))
    with pytest.raises(AssertionError, match="adjoint identity"):
        assert_adjoint(lambda a: wrap_pad(a, 2), lambda b: b[:, :, 2:8, 2:8], x, g)


@pytest.mark.parametrize("kernel, stride", [(3, 1), (5, 1), (7, 2), (5, 2)])
def test_translation_equivariance_on_the_torus(kernel, stride):
    """With 2p = k - 1 and s | H: shifting the image by s t shifts the output by t, exactly
    (the same products, summed in the same order)."""
    rng = np.random.default_rng(kernel)
    x, w = rng.standard_normal((2, 2, 12, 12)), rng.standard_normal((3, 2, kernel, kernel))
    pad, shift = (kernel - 1) // 2, (2, 3)
    conv = lambda a, mode: conv2d(a, w, stride=stride, pad=pad, padding_mode=mode)
    shifted = np.roll(x, (stride * shift[0], stride * shift[1]), axis=(2, 3))
    assert_close(conv(shifted, "circular"), np.roll(conv(x, "circular"), shift, axis=(2, 3)))
    with pytest.raises(AssertionError):  # negative control: zero padding has a border
        assert_close(conv(shifted, "zeros"), np.roll(conv(x, "zeros"), shift, axis=(2, 3)))


def _texture_net(mode):
    spec = [(4, 7, 2, 3, "relu", mode), (3, 5, 1, 2, "relu", mode), (2, 3, 1, 1, "relu", mode)]
    return ConvNet.random(1, spec, seed=3)


def test_a_circular_convnet_scores_every_cyclic_shift_alike():
    """f(I; w) sums the top layer over the torus, so a cyclic shift by the total stride (2)
    leaves it unchanged, and the gradient (the reconstruction B) shifts with the image."""
    I = np.random.default_rng(2).standard_normal((2, 1, 16, 16))
    shifted = np.roll(I, (4, 6), axis=(2, 3))
    net = _texture_net("circular")
    assert_close(net.score(shifted), net.score(I))
    assert_close(net.grad_input(shifted), np.roll(net.grad_input(I), (4, 6), axis=(2, 3)))
    zeros = _texture_net("zeros")  # negative control: the border breaks the invariance
    with pytest.raises(AssertionError):
        assert_close(zeros.score(shifted), zeros.score(I))


def test_circular_convnet_gradient_matches_finite_differences():
    net = _texture_net("circular")
    I = np.random.default_rng(4).standard_normal((1, 1, 8, 8))
    coords = np.arange(0, 64, 5)
    numeric = coordinate_gradient(lambda: float(net.score(I)[0]), I, coords)
    assert_gradient(net.grad_input(I).reshape(-1)[coords], numeric)


def test_bad_padding_modes_are_named():
    x, w = np.zeros((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    named = "padding_mode must be one of zeros, circular; got 'reflect'"
    with pytest.raises(ValueError, match=named):
        conv2d(x, w, pad=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="circular padding 5 is wider than the input 4x4"):
        conv2d(x, w, pad=5, padding_mode="circular")
    with pytest.raises(ValueError, match="padding_mode"):
        LayerSpec.coerce((4, 3, 1, 1, "relu", "mirror"))
    with pytest.raises(ValueError, match="wider than the input"):
        _texture_net("circular").score(np.zeros((1, 1, 2, 2)))


def test_the_spec_round_trips_and_zero_padding_stays_implicit():
    """A circular layer is written with its mode; a zero-padded one as before (5 entries), so
    configuration files written before padding modes existed compare equal."""
    spec = [(8, 7, 2, 3, "relu", "circular"), (4, 3, 1, 1)]
    config = LearningConfig(dataset="texture", spec=spec)
    written = config.to_dict()["spec"]
    assert written == [[8, 7, 2, 3, "relu", "circular"], [4, 3, 1, 1, "relu"]]
    assert [LayerSpec.coerce(s) for s in written] == config.spec


def test_a_circular_convnet_is_piecewise_linear():
    """Eq. (6.8), f(I) = alpha + <I, B>, holds on the torus too: wrapping is linear, and the
    top-down pass folds B back onto the pixels the wrapped windows read."""
    net = _texture_net("circular")
    I = np.random.default_rng(5).standard_normal((3, 1, 16, 16))
    alpha, B = net.linear_piece(I)
    assert_piece_identity(net.score(I), alpha, B, I)
    assert_close(B, net.grad_input(I))  # the deconvolution is the gradient, Eq. (9.2)
