"""Lesson 1 (filtering from scratch): the naive convolution loops of refimpl.conv.naive.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The fast
kernels (refimpl.conv.fast) are the independent reference: they share no code with the naive
loops, and each comparison is made with both of their plans (``refimpl.conv.plan``).
"""

import numpy as np
import pytest
from checks import EXACT, assert_adjoint, assert_close
from hypothesis import given, settings
from strategies import conv_problems

from refimpl.conv import conv_geometry, fast, naive
from refimpl.conv.plan import PLANS

GRADED = {
    "conv.naive.forward": ["test_forward"],
    "conv.naive.adjoint": ["test_adjoint"],
    "conv.naive.weight_grad": ["test_weight_grad"],
}


def geometry(p):
    return conv_geometry(p.x.shape, p.weight.shape, p.stride, p.pad)


def test_forward_by_hand():
    """3x3 image, 2x2 kernel: y[i,j] = x[i,j] + 2 x[i,j+1] + 3 x[i+1,j] + 4 x[i+1,j+1] + bias."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    g = conv_geometry(x.shape, w.shape, 1, 0)
    expected = np.array([[[[27.0, 37.0], [57.0, 67.0]]]]) + 0.5
    assert np.array_equal(naive.forward(g, x, w, np.array([0.5])), expected)


def test_forward_stride_and_padding_by_hand():
    """Stride 2, pad 1 on a 3x3 image of ones, a 3x3 kernel of ones: counts of in-image pixels."""
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3))
    g = conv_geometry(x.shape, w.shape, 2, 1)
    assert np.array_equal(naive.forward(g, x, w)[0, 0], [[4.0, 4.0], [4.0, 4.0]])


def assert_equals_fast(result, fast_with_plan, what):
    """``result`` equals the fast kernel's under every plan: the same sums in another order."""
    for plan in PLANS:
        assert_close(result, fast_with_plan(plan), EXACT, f"{what} vs fast ({plan})")


@settings(max_examples=30)
@given(conv_problems(max_image=10))
def test_forward_equals_fast(p):
    g = geometry(p)
    assert_equals_fast(
        naive.forward(g, p.x, p.weight, p.bias),
        lambda plan: fast.forward(g, p.x, p.weight, p.bias, plan=plan),
        "forward",
    )


@settings(max_examples=30)
@given(conv_problems(max_image=10))
def test_adjoint_identity(p):
    g = geometry(p)
    assert_adjoint(
        lambda x: fast.forward(g, x, p.weight), lambda y: naive.adjoint(g, y, p.weight), p.x, p.y
    )


@settings(max_examples=30)
@given(conv_problems(max_image=10))
def test_adjoint_equals_fast(p):
    g = geometry(p)
    assert_equals_fast(
        naive.adjoint(g, p.y, p.weight),
        lambda plan: fast.adjoint(g, p.y, p.weight, plan=plan),
        "adjoint",
    )


@settings(max_examples=30)
@given(conv_problems(max_image=10))
def test_weight_grad_equals_fast(p):
    g = geometry(p)
    assert_equals_fast(
        naive.weight_grad(g, p.x, p.y),
        lambda plan: fast.weight_grad(g, p.x, p.y, plan=plan),
        "weight grad",
    )


def test_weight_grad_by_hand():
    """For y = all ones, dW[o, c, dy, dx] = sum of the input pixels each tap sees."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    g = conv_geometry(x.shape, (1, 1, 3, 3), 1, 0)
    expected = np.array(
        [[x[0, 0, dy : dy + 2, dx : dx + 2].sum() for dx in range(3)] for dy in range(3)]
    )
    assert np.array_equal(naive.weight_grad(g, x, np.ones((1, 1, 2, 2)))[0, 0], expected)


# --- the checks can fail (not graded) ---------------------------------------------------------
# Each control runs a check on a deliberately wrong computation built from the fast kernels
# only, so that it never calls the functions a student writes.


def test_negative_control_hand_check_sees_the_kernel_orientation():
    """Convolution proper (the kernel flipped) is not Eq. (2.1)'s cross-correlation."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    g = conv_geometry(x.shape, w.shape, 1, 0)
    flipped = fast.forward(g, x, w[:, :, ::-1, ::-1], np.array([0.5]))
    assert not np.array_equal(flipped, np.array([[[[27.0, 37.0], [57.0, 67.0]]]]) + 0.5)


def wrong_kernels():
    """A stride-2, padded problem, and a kernel flipped as convolution proper would use it."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((3, 2, 3, 3))
    g = conv_geometry(x.shape, w.shape, 2, 1)
    y = rng.standard_normal(g.output_shape)
    return g, x, w, y, w[:, :, ::-1, ::-1].copy()


def test_negative_control_equality_with_fast_catches_a_flipped_kernel():
    g, x, w, y, flipped = wrong_kernels()
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(fast.forward(g, x, flipped), fast.forward(g, x, w), EXACT, "forward")
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(fast.adjoint(g, y, flipped), fast.adjoint(g, y, w), EXACT, "adjoint")


def test_negative_control_weight_grad_check_catches_swapped_taps():
    """dW[o, c, dx, dy] in place of dW[o, c, dy, dx]: the equality with fast fails."""
    g, x, _, y, _ = wrong_kernels()
    right = fast.weight_grad(g, x, y)
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(right.transpose(0, 1, 3, 2), right, EXACT, "weight grad")


def test_negative_control_adjoint_identity_catches_a_flipped_adjoint():
    g, x, w, y, flipped = wrong_kernels()
    with pytest.raises(AssertionError, match="adjoint identity"):
        assert_adjoint(lambda v: fast.forward(g, v, w), lambda d: fast.adjoint(g, d, flipped), x, y)
