"""Assertion helpers shared by the tests: scale-aware relative errors and identity residuals.

Every check returns the measured residual and asserts it is below a tolerance, so the same
helper can be pointed at a deliberately broken implementation in a negative control.
"""

from __future__ import annotations

import numpy as np

# float64 identities hold to rounding: residuals of ~1e-15 relative are typical, 1e-12
# leaves three orders of margin yet catches any real bug (those give O(1e-3) or more).
EXACT = 1e-12
# Central differences with h = 1e-6 on a piecewise-linear function are exact up to
# rounding, eps |f| / h ~ 1e-10 relative; 1e-6 is the bound.
FINITE_DIFFERENCE = 1e-6
# float32 paths: eps = 1.2e-7 times sqrt(terms summed) ~ 1e-5.
FLOAT32 = 1e-4


def relative_error(actual, expected) -> float:
    """``||actual - expected|| / max(||actual||, ||expected||)`` (0 when both are 0)."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    scale = max(np.linalg.norm(actual), np.linalg.norm(expected))
    return 0.0 if scale == 0 else float(np.linalg.norm(actual - expected) / scale)


def assert_close(actual, expected, rtol: float = EXACT, what: str = "values") -> float:
    """Assert ``relative_error(actual, expected) <= rtol``; return the error."""
    err = relative_error(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3e} exceeds {rtol:.0e}"
    return err


def inner_residual(lhs_terms, rhs_terms) -> float:
    """``|sum(lhs) - sum(rhs)| / (sum|lhs| + sum|rhs|)``: rounding-scaled gap of two inner products."""
    lhs_terms, rhs_terms = np.asarray(lhs_terms), np.asarray(rhs_terms)
    scale = np.abs(lhs_terms).sum() + np.abs(rhs_terms).sum()
    gap = abs(lhs_terms.sum() - rhs_terms.sum())
    return 0.0 if scale == 0 else float(gap / scale)


def assert_adjoint(forward, adjoint, x, y, rtol: float = EXACT) -> float:
    """Assert ``<forward(x), y> = <x, adjoint(y)>`` to ``rtol`` (scaled by the sums of |terms|)."""
    res = inner_residual(forward(x) * y, x * adjoint(y))
    assert res <= rtol, f"adjoint identity: residual {res:.3e} exceeds {rtol:.0e}"
    return res


def piece_residual(f, alpha, B, I) -> float:
    """Largest ``|f - alpha - <I, B>|`` over the batch, relative to ``|f| + |alpha| + sum|I B|``."""
    f, alpha, B, I = (np.asarray(a) for a in (f, alpha, B, I))
    terms = (I * B).reshape(len(I), -1)
    gap = np.abs(f - alpha - terms.sum(axis=1))
    scale = np.abs(f) + np.abs(alpha) + np.abs(terms).sum(axis=1)
    return float(np.max(np.where(scale > 0, gap / np.where(scale > 0, scale, 1), 0.0)))


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
