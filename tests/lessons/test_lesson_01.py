"""Lesson 1 (filtering from scratch): the naive convolution loops of refimpl.conv.naive.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The fast
kernels (refimpl.conv.fast) are the independent reference: they share no code with the naive
loops.
"""

import numpy as np
from checks import EXACT, assert_adjoint, assert_close
from hypothesis import given, settings
from strategies import conv_problems

from refimpl.conv import conv_geometry, fast, naive

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


@settings(max_examples=30)
@given(conv_problems(max_image=10))
def test_forward_equals_fast(p):
    g = geometry(p)
    assert_close(
        naive.forward(g, p.x, p.weight, p.bias), fast.forward(g, p.x, p.weight, p.bias), EXACT
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
    assert_close(naive.adjoint(g, p.y, p.weight), fast.adjoint(g, p.y, p.weight), EXACT)


@settings(max_examples=30)
@given(conv_problems(max_image=10))
def test_weight_grad_equals_fast(p):
    g = geometry(p)
    assert_close(naive.weight_grad(g, p.x, p.y), fast.weight_grad(g, p.x, p.y), EXACT)


def test_weight_grad_by_hand():
    """For y = all ones, dW[o, c, dy, dx] = sum of the input pixels each tap sees."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    g = conv_geometry(x.shape, (1, 1, 3, 3), 1, 0)
    expected = np.array(
        [[x[0, 0, dy : dy + 2, dx : dx + 2].sum() for dx in range(3)] for dy in range(3)]
    )
    assert np.array_equal(naive.weight_grad(g, x, np.ones((1, 1, 2, 2)))[0, 0], expected)
