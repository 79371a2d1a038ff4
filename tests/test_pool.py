"""Max pooling (section 9): the fast adjoint and the argument checks.

The properties of ``max_pool2d`` and ``max_pool2d_adjoint`` (loops, the adjoint identity at
fixed winners, finite differences away from ties, hand-worked examples, dtypes, PyTorch) are
graded in lesson 12 and live in tests/lessons/test_lesson_12.py, which this suite runs too.
Here: the non-graded fast path equals the graded one, and bad arguments are refused.
"""

import numpy as np
import pytest
from hypothesis import given
from strategies import pool_problems

from refimpl.conv import max_pool2d, max_pool2d_adjoint, max_pool2d_adjoint_fast

# --- the fast adjoint ------------------------------------------------------------------------


@given(pool_problems())
def test_fast_adjoint_equals_the_readable_one(p):
    """The same additions in the same order (sorting is stable): equal to the last bit, at the
    winners of ``max_pool2d`` and at arbitrary indices, where many targets collide."""
    x, size, stride, dy = p
    _, arg = max_pool2d(x, size, stride)
    assert np.array_equal(
        max_pool2d_adjoint_fast(dy, arg, x.shape), max_pool2d_adjoint(dy, arg, x.shape)
    )
    anywhere = np.random.default_rng(x.size).integers(0, x.shape[2] * x.shape[3], dy.shape)
    assert np.array_equal(
        max_pool2d_adjoint_fast(dy, anywhere, x.shape), max_pool2d_adjoint(dy, anywhere, x.shape)
    )
    out32 = max_pool2d_adjoint_fast(dy.astype(np.float32), anywhere, x.shape)
    assert out32.dtype == np.float32


def test_negative_control_a_scatter_without_rounds_loses_collisions():
    """``out[target] += values`` keeps one of several values added at one target: the equality
    above sees it (3x3 windows at stride 1 share their winners)."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    _, arg = max_pool2d(x, 2, 1)  # the centre wins all four windows
    dy = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    lossy = np.zeros(9)
    lossy[arg.reshape(-1)] += dy.reshape(-1)
    assert lossy[4] == 4.0 and max_pool2d_adjoint_fast(dy, arg, x.shape)[0, 0, 1, 1] == 10.0
    assert not np.array_equal(lossy.reshape(x.shape), max_pool2d_adjoint(dy, arg, x.shape))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, size, stride, error, match",
    [
        (np.ones((1, 1, 4, 4), dtype=int), 2, 2, TypeError, "floating dtype"),
        (np.ones((4, 4)), 2, 2, ValueError, "4-D"),
        (np.full((1, 1, 4, 4), np.nan), 2, 2, ValueError, "non-finite"),
        (np.ones((1, 1, 4, 4)), 5, 1, ValueError, r"pooling window \(5x5\) is larger"),
        (np.ones((1, 1, 4, 4)), 0, 1, ValueError, "size must be >= 1"),
        (np.ones((1, 1, 4, 4)), 2, 0, ValueError, "stride must be >= 1"),
        (np.ones((1, 1, 4, 4)), 1.5, 1, TypeError, "size must be an integer"),
    ],
)
def test_forward_errors(x, size, stride, error, match):
    with pytest.raises(error, match=match):
        max_pool2d(x, size, stride)


@pytest.mark.parametrize("adjoint", [max_pool2d_adjoint, max_pool2d_adjoint_fast])
def test_adjoint_errors(adjoint):
    x = np.random.default_rng(7).standard_normal((1, 2, 4, 4))
    y, arg = max_pool2d(x, 2)
    adjoint(y, arg, x.shape)  # the negative control: valid arguments pass
    with pytest.raises(TypeError, match="argmax must be an integer array"):
        adjoint(y, arg.astype(float), x.shape)
    with pytest.raises(ValueError, match="argmax must have the shape of dy"):
        adjoint(y, arg[:, :1], x.shape)
    with pytest.raises(ValueError, match="input_shape must be"):
        adjoint(y, arg, (1, 3, 4, 4))
    with pytest.raises(ValueError, match="outside"):
        adjoint(y, arg + 16, x.shape)
    with pytest.raises(ValueError, match="4-D"):
        adjoint(y[0], arg[0], x.shape)
