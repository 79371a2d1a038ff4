"""Assertion helpers shared by the tests; the error measures and tolerances are refimpl.numerics'.

Every check returns the measured residual and asserts it is below a tolerance, so the same
helper can be pointed at a deliberately broken implementation in a negative control.
"""

from __future__ import annotations

import numpy as np

from refimpl.numerics import (  # noqa: F401  (re-exported for the tests)
    EXACT,
    FINITE_DIFFERENCE,
    FLOAT32,
    inner_residual,
    piece_residual,
    relative_error,
)


def assert_close(actual, expected, rtol: float = EXACT, what: str = "values") -> float:
    """Assert ``relative_error(actual, expected) <= rtol``; return the error."""
    err = relative_error(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3e} exceeds {rtol:.0e}"
    return err


def assert_adjoint(forward, adjoint, x, y, rtol: float = EXACT) -> float:
    """Assert ``<forward(x), y> = <x, adjoint(y)>`` to ``rtol`` (scaled by the sums of |terms|)."""
    res = inner_residual(forward(x) * y, x * adjoint(y))
    assert res <= rtol, f"adjoint identity: residual {res:.3e} exceeds {rtol:.0e}"
    return res


def assert_piece_identity(f, alpha, B, I, rtol: float = EXACT) -> float:
    """Assert Eq. (6.8), ``f(I) = alpha + <I, B>``, for every image of the batch."""
    res = piece_residual(f, alpha, B, I)
    assert res <= rtol, f"f = alpha + <I, B>: residual {res:.3e} exceeds {rtol:.0e}"
    return res


# --- independent references written as loops ----------------------------------------------


def max_pool_loops(x, size: int, stride: int):
    """Max pooling as loops: ``(y, arg)``, window by window, ``numpy.argmax`` of the flattened
    window (the first maximum wins a tie); ``arg`` holds flat ``H * W`` indices of the winners."""
    n, c, h, w = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    y, arg = np.empty((n, c, ho, wo), dtype=x.dtype), np.empty((n, c, ho, wo), dtype=np.int64)
    for a, b, i, j in np.ndindex(n, c, ho, wo):
        window = x[a, b, i * stride : i * stride + size, j * stride : j * stride + size]
        k = int(np.argmax(window))
        y[a, b, i, j] = window.flat[k]
        arg[a, b, i, j] = (i * stride + k // size) * w + j * stride + k % size
    return y, arg


def max_pool_adjoint_loops(dy, arg, shape):
    """Arg-max retrieval as loops: each coefficient ``dy`` added at its winner in ``shape``."""
    out = np.zeros(shape)
    w = shape[3]
    for a, b, i, j in np.ndindex(*dy.shape):
        out[a, b, arg[a, b, i, j] // w, arg[a, b, i, j] % w] += dy[a, b, i, j]
    return out
