"""Max pooling (section 9): loops == refimpl, the adjoint identity at fixed winners, finite
differences away from ties, PyTorch, errors.

Each property has a negative control: the same check applied to a deliberately wrong
pooling must fail, which shows the check can fail.
"""

import numpy as np
import pytest
from checks import (
    EXACT,
    assert_adjoint,
    assert_close,
    inner_residual,
    max_pool_adjoint_loops,
    max_pool_loops,
)
from gradcheck import assert_gradient, input_gradient
from hypothesis import given, settings
from strategies import pool_problems

from refimpl.conv import max_pool2d, max_pool2d_adjoint


@given(pool_problems())
def test_forward_equals_loops(p):
    x, size, stride, _ = p
    y, arg = max_pool2d(x, size, stride)
    y_ref, arg_ref = max_pool_loops(x, size, stride)
    assert np.array_equal(y, y_ref)
    assert np.array_equal(arg, arg_ref)  # ties included: first maximum in row-major order
    assert arg.dtype == np.int64


@given(pool_problems())
def test_adjoint_equals_loops(p):
    x, size, stride, dy = p
    _, arg = max_pool2d(x, size, stride)
    assert_close(
        max_pool2d_adjoint(dy, arg, x.shape), max_pool_adjoint_loops(dy, arg, x.shape), EXACT
    )


@given(pool_problems())
def test_adjoint_identity_at_fixed_winners(p):
    """<P x', dy> = <x', P^T dy> for the selection P of a fixed argmax and *any* x'."""
    x, size, stride, dy = p
    _, arg = max_pool2d(x, size, stride)
    other = np.random.default_rng(0).standard_normal(x.shape)
    select = lambda v: np.take_along_axis(
        v.reshape(*v.shape[:2], -1), arg.reshape(*arg.shape[:2], -1), axis=2
    ).reshape(arg.shape)
    assert_adjoint(select, lambda d: max_pool2d_adjoint(d, arg, x.shape), other, dy)


def test_negative_control_adjoint_identity_catches_a_shifted_winner():
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6))
    dy = np.random.default_rng(2).standard_normal((1, 2, 3, 3))
    y, arg = max_pool2d(x, 2)
    wrong = max_pool2d_adjoint(dy, (arg + 1) % 36, x.shape)  # each coefficient one pixel off
    assert inner_residual(y * dy, x * wrong) > 1e-3


@settings(max_examples=30)
@given(pool_problems(max_image=8, ties=False))
def test_adjoint_is_the_gradient_away_from_ties(p):
    """Continuous random x: no ties, and a 1e-6 probe does not change a winner (a gap that small
    between the two largest entries of a window would show up as a gradient error)."""
    x, size, stride, dy = p
    _, arg = max_pool2d(x, size, stride)

    def pooled_inner(batch):  # (B, N, C, H, W) -> (B,)
        y = max_pool2d(batch.reshape((-1,) + x.shape[1:]), size, stride)[0]
        return (y.reshape((len(batch),) + dy.shape) * dy[None]).sum(axis=(1, 2, 3, 4))

    fd = input_gradient(pooled_inner, x)
    assert_gradient(max_pool2d_adjoint(dy, arg, x.shape), fd)


def test_negative_control_gradient_check_sees_the_wrong_routing():
    """Spreading each coefficient evenly over its window (average-pool's adjoint) is not max's."""
    from gradcheck import FiniteDifference

    x = np.random.default_rng(3).standard_normal((1, 1, 4, 4))
    dy = np.ones((1, 1, 2, 2))
    fd = input_gradient(lambda b: max_pool2d(b, 2)[0].sum(axis=(1, 2, 3)), x[0])
    spread = np.full((1, 4, 4), 0.25)
    with pytest.raises(AssertionError):
        assert_gradient(spread, FiniteDifference(fd.gradient, fd.noise))
    assert_gradient(max_pool2d_adjoint(dy, max_pool2d(x, 2)[1], x.shape)[0], fd)


def test_overlapping_windows_accumulate():
    """Stride 1 windows of 2x2 on a single bright pixel: it wins all four windows around it."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    y, arg = max_pool2d(x, 2, 1)
    assert np.array_equal(y[0, 0], np.full((2, 2), 5.0)) and np.all(arg == 4)
    back = max_pool2d_adjoint(np.arange(1.0, 5.0).reshape(1, 1, 2, 2), arg, x.shape)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 10.0
    assert np.array_equal(back, expected)


def test_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((2, 3, 11, 9))
    for size, stride in [(2, 2), (3, 2), (3, 1)]:
        y_t, i_t = torch.nn.functional.max_pool2d(
            torch.from_numpy(x), size, stride, return_indices=True
        )
        y, arg = max_pool2d(x, size, stride)
        assert np.array_equal(y, y_t.numpy()) and np.array_equal(arg, i_t.numpy())


def test_stride_defaults_to_size_and_float32_is_kept():
    x = np.random.default_rng(6).standard_normal((1, 1, 6, 6)).astype(np.float32)
    y, arg = max_pool2d(x, 3)
    assert y.shape == (1, 1, 2, 2) and y.dtype == np.float32
    assert max_pool2d_adjoint(y, arg, x.shape).dtype == np.float32


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


def test_adjoint_errors():
    x = np.random.default_rng(7).standard_normal((1, 2, 4, 4))
    y, arg = max_pool2d(x, 2)
    with pytest.raises(TypeError, match="argmax must be an integer array"):
        max_pool2d_adjoint(y, arg.astype(float), x.shape)
    with pytest.raises(ValueError, match="argmax must have the shape of dy"):
        max_pool2d_adjoint(y, arg[:, :1], x.shape)
    with pytest.raises(ValueError, match="input_shape must be"):
        max_pool2d_adjoint(y, arg, (1, 3, 4, 4))
    with pytest.raises(ValueError, match="outside"):
        max_pool2d_adjoint(y, arg + 16, x.shape)
    with pytest.raises(ValueError, match="4-D"):
        max_pool2d_adjoint(y[0], arg[0], x.shape)
