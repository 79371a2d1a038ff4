"""The public convolution (conv2d and its gradients): the adjoint identities, finite
differences, float32, PyTorch, output sizes.

naive == fast (both plans) is graded in lesson 1 and lives in tests/lessons/test_lesson_01.py.
Each property here has a negative control: the same check applied to a deliberately wrong
kernel must fail, which shows the check can fail.
"""

import numpy as np
import pytest
from checks import EXACT, FLOAT32, assert_adjoint, assert_close
from gradcheck import assert_gradient, coordinate_gradient
from hypothesis import given, settings
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

# --- naive == fast ----------------------------------------------------------------------
# naive == fast for the forward pass, the adjoint and the weight gradient (both plans) are
# graded in lesson 1: tests/lessons/test_lesson_01.py, with their negative controls.


@given(conv_problems())
def test_fast_bias_grad_equals_naive(p):
    assert_close(fast.bias_grad(p.y), naive.bias_grad(p.y), EXACT, "bias grad")


def test_negative_control_bias_grad_check_sees_a_missing_batch_sum():
    y = np.random.default_rng(0).standard_normal((3, 2, 4, 4))
    with pytest.raises(AssertionError, match="bias grad"):
        assert_close(y[0].sum(axis=(1, 2)), naive.bias_grad(y), EXACT, "bias grad")


# --- adjoint identity -------------------------------------------------------------------


@given(conv_problems())
def test_adjoint_identity(p):
    """<conv(x), y> = <x, conv^T(y)> to EXACT, scaled by the terms (the naive kernels' is
    graded in lesson 1)."""
    size = p.x.shape[2:]
    assert_adjoint(
        lambda x: conv2d(x, p.weight, stride=p.stride, pad=p.pad),
        lambda y: conv2d_adjoint(y, p.weight, size, stride=p.stride, pad=p.pad),
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


# conv2d on a 3x3 image worked out by hand: tests/lessons/test_lesson_01.py::test_forward_by_hand
