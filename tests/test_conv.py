"""Convolution kernels: naive == fast (both plans), the adjoint identity, gradients, PyTorch.

Each property has a negative control: the same check applied to a deliberately wrong
kernel must fail, which shows the check can fail.
"""

import numpy as np
import pytest
from checks import EXACT, FLOAT32, assert_adjoint, assert_close, relative_error
from gradcheck import assert_gradient, coordinate_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import conv_problems

from refimpl.conv import (
    conv2d,
    conv2d_adjoint,
    conv2d_bias_grad,
    conv2d_weight_grad,
    conv_geometry,
    conv_output_size,
    fast,
    naive,
)

PLANS = ("im2col", "rows")


def geometry(p):
    return conv_geometry(p.x.shape, p.weight.shape, p.stride, p.pad)


# --- naive == fast ----------------------------------------------------------------------


@given(conv_problems())
def test_fast_forward_equals_naive(p):
    g = geometry(p)
    expected = naive.forward(g, p.x, p.weight, p.bias)
    for plan in PLANS:
        assert_close(
            fast.forward(g, p.x, p.weight, p.bias, plan=plan), expected, EXACT, f"forward ({plan})"
        )


@given(conv_problems())
def test_fast_adjoint_equals_naive(p):
    g = geometry(p)
    expected = naive.adjoint(g, p.y, p.weight)
    for plan in PLANS:
        assert_close(
            fast.adjoint(g, p.y, p.weight, plan=plan), expected, EXACT, f"adjoint ({plan})"
        )


@given(conv_problems())
def test_fast_weight_grad_equals_naive(p):
    g = geometry(p)
    expected = naive.weight_grad(g, p.x, p.y)
    for plan in PLANS:
        assert_close(
            fast.weight_grad(g, p.x, p.y, plan=plan), expected, EXACT, f"weight grad ({plan})"
        )
    assert_close(fast.bias_grad(p.y), naive.bias_grad(p.y), EXACT, "bias grad")


def _true_convolution(g, x, weight, bias=None, plan=None):
    """A classic bug: convolution (flipped kernel) instead of Eq. (2.1)'s cross-correlation."""
    return fast.forward(g, x, weight[:, :, ::-1, ::-1], bias, plan=plan)


def test_negative_control_naive_equals_fast_catches_flipped_kernel():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3))
    g = conv_geometry(x.shape, w.shape, 2, 1)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(_true_convolution(g, x, w), naive.forward(g, x, w), EXACT, "forward")


# --- adjoint identity -------------------------------------------------------------------


@given(conv_problems(), st.sampled_from(["fast", "naive"]))
def test_adjoint_identity(p, impl):
    """<conv(x), y> = <x, conv^T(y)> to 1e-12 relative (rounding-scaled)."""
    size = p.x.shape[2:]
    assert_adjoint(
        lambda x: conv2d(x, p.weight, stride=p.stride, pad=p.pad, impl=impl),
        lambda y: conv2d_adjoint(y, p.weight, size, stride=p.stride, pad=p.pad, impl=impl),
        p.x,
        p.y,
    )


@given(conv_problems())
def test_weight_grad_is_adjoint_in_the_weights(p):
    """<conv(x; w), y> is linear in w with gradient conv2d_weight_grad(x, y): an exact identity."""
    k = p.weight.shape[2]
    assert_adjoint(
        lambda w: conv2d(p.x, w, stride=p.stride, pad=p.pad),
        lambda y: conv2d_weight_grad(p.x, y, k, stride=p.stride, pad=p.pad),
        p.weight,
        p.y,
    )


def _adjoint_ignoring_stride(y, weight, size, stride, pad):
    """A wrong adjoint: spreads every output back as if the stride were 1."""
    g = conv_geometry((y.shape[0], weight.shape[1]) + tuple(size), weight.shape, stride, pad)
    out = np.zeros((y.shape[0], weight.shape[1], size[0] + 2 * pad, size[1] + 2 * pad))
    k = weight.shape[2]
    for i in range(g.out_height):
        for j in range(g.out_width):
            out[:, :, i : i + k, j : j + k] += np.einsum("oc...,no->nc...", weight, y[:, :, i, j])
    return out[:, :, pad : pad + size[0], pad : pad + size[1]]


def test_negative_control_adjoint_identity_catches_wrong_adjoint():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 2, 9, 9)), rng.standard_normal((3, 2, 3, 3))
    y = rng.standard_normal((2, 3, 4, 4))
    with pytest.raises(AssertionError, match="adjoint identity"):
        assert_adjoint(
            lambda x: conv2d(x, w, stride=2),
            lambda y: _adjoint_ignoring_stride(y, w, (9, 9), 2, 0),
            x,
            y,
        )


# --- finite differences (the forward is affine, so they are exact to rounding) ------------


@settings(max_examples=10)
@given(conv_problems(max_image=8))
def test_gradients_match_finite_differences(p):
    objective = lambda: float((conv2d(p.x, p.weight, p.bias, p.stride, p.pad) * p.y).sum())
    k = p.weight.shape[2]
    rng = np.random.default_rng(0)
    for array, analytic in (
        (p.x, conv2d_adjoint(p.y, p.weight, p.x.shape[2:], p.stride, p.pad)),
        (p.weight, conv2d_weight_grad(p.x, p.y, k, p.stride, p.pad)),
        (p.bias, conv2d_bias_grad(p.y)),
    ):
        coords = rng.choice(array.size, size=min(array.size, 20), replace=False)
        assert_gradient(analytic.reshape(-1)[coords], coordinate_gradient(objective, array, coords))


# --- float32 ----------------------------------------------------------------------------


@given(conv_problems(dtype="float32"))
def test_float32_matches_float64(p):
    up = lambda a: a.astype(np.float64)
    y32 = conv2d(p.x, p.weight, p.bias, p.stride, p.pad)
    assert y32.dtype == np.float32
    y64 = conv2d(up(p.x), up(p.weight), up(p.bias), p.stride, p.pad)
    assert_close(y32, y64, FLOAT32, "float32 forward")
    a32 = conv2d_adjoint(p.y, p.weight, p.x.shape[2:], p.stride, p.pad)
    assert a32.dtype == np.float32
    assert_close(
        a32,
        conv2d_adjoint(up(p.y), up(p.weight), p.x.shape[2:], p.stride, p.pad),
        FLOAT32,
        "float32 adjoint",
    )


# --- an independent implementation: PyTorch (skipped when absent) ----------------------------


@given(conv_problems())
def test_matches_pytorch(p):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = torch.from_numpy
    ref = F.conv2d(t(p.x), t(p.weight), t(p.bias), stride=p.stride, padding=p.pad).numpy()
    assert_close(conv2d(p.x, p.weight, p.bias, p.stride, p.pad), ref, EXACT, "forward vs torch")
    ref_in = torch.nn.grad.conv2d_input(
        p.x.shape, t(p.weight), t(p.y), stride=p.stride, padding=p.pad
    ).numpy()
    assert_close(
        conv2d_adjoint(p.y, p.weight, p.x.shape[2:], p.stride, p.pad),
        ref_in,
        EXACT,
        "adjoint vs torch",
    )
    ref_w = torch.nn.grad.conv2d_weight(
        t(p.x), p.weight.shape, t(p.y), stride=p.stride, padding=p.pad
    ).numpy()
    assert_close(
        conv2d_weight_grad(p.x, p.y, p.weight.shape[2], p.stride, p.pad),
        ref_w,
        EXACT,
        "weight grad vs torch",
    )


# --- geometry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,k,s,p,expected",
    [(224, 15, 3, 0, 70), (70, 5, 1, 0, 66), (66, 3, 1, 0, 64), (5, 3, 2, 1, 3), (4, 7, 1, 1, 0)],
)
def test_output_size(size, k, s, p, expected):
    assert conv_output_size(size, k, s, p) == expected


def test_naive_forward_by_hand():
    """A 1-channel 3x3 image, 2x2 kernel, stride 1: the four outputs written out by hand."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # y[i, j] = 1 x[i,j] + 2 x[i,j+1] + 3 x[i+1,j] + 4 x[i+1,j+1]
    expected = np.array(
        [[[[0 + 2 + 9 + 16, 1 + 4 + 12 + 20], [3 + 8 + 18 + 28, 4 + 10 + 21 + 32]]]]
    )
    for impl in ("naive", "fast"):
        assert np.array_equal(conv2d(x, w, impl=impl), expected)
    assert relative_error(conv2d(x, w[:, :, ::-1, ::-1]), expected) > 0.1  # orientation matters
