"""What "equal" means in refimpl: the error measures and the tolerances, with their reasons.

One home for the numbers every check uses: the test suite, the graded lesson tests, the
theorem checks of ``python -m refimpl verify`` and the ``pieces`` command import them from
here, so "exact" means the same thing everywhere.

Error measures (all scale-free, so one tolerance fits images in [0, 255] and in [-1, 1]):

* :func:`relative_error`: ``||a - b|| / max(||a||, ||b||)`` for two computations of one array;
* :func:`inner_residual`: ``|sum(lhs) - sum(rhs)| / (sum|lhs| + sum|rhs|)`` for two sums of
  terms (adjoint tests, Eq. (6.8)), which is scaled by the terms so cancellation cannot
  inflate it;
* :func:`piece_residual`: Eq. (6.8), ``f(I) = alpha + <I, B>``, per image, scaled by its terms.

Tolerances, from rounding analysis. With unit roundoff ``u`` (``2^-53 = 1.1e-16`` in float64,
``2^-24 = 6.0e-8`` in float32), a sum of ``n`` products computed in any order has an error
of at most ``gamma_n = n u / (1 - n u)`` times the sum of the terms' absolute values (Higham,
*Accuracy and Stability of Numerical Algorithms*, Eq. (3.5)); :func:`sum_rounding_bound`
gives it. Two computations of one quantity in different orders (naive loops vs GEMM, backprop
vs deconvolution vs basis functions) differ by at most twice that, per layer they traverse.
"""

from __future__ import annotations

from refimpl.backend import namespace_of

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}

# The largest instances the identities are checked on: the property tests' ConvNets (depth
# <= 4, <= 5 channels, 7 x 7 kernels: <= 245 products per output and layer), the `verify`
# instances and the `pieces` command's 3-layer net on a 32 x 32 crop (<= 72 products per
# output and layer). Worst case over 4 layers and two computations:
# 2 * 4 * gamma_245 = 2 * 4 * 245 * 1.1e-16 = 2.2e-13 of the terms' absolute sum. Random
# signs make the typical error sqrt(n) times smaller (measured: 1e-16 to 1e-14).
EXACT = 1e-12
"""float64 identities (adjoint, Eq. (6.8), naive == fast, three ways to B): 4.5x above the
worst-case rounding bound of the instances checked (2.2e-13, see above); any real bug shows
at 1e-3 or more."""

FLOAT32 = 1e-4
"""float32 against float64 on the same instances: the same worst-case count in float32 is
2 * 4 * 245 * 6.0e-8 = 1.2e-4 of the absolute sum; relative errors of whole arrays are
sqrt(n)-typical, measured 1e-7 to 1e-5."""

FINITE_DIFFERENCE_STEP = 1e-6
"""Central-difference step ``h``: on a piece ``f`` is linear, so central differences have no
truncation error at all, and only rounding is left (next)."""

FINITE_DIFFERENCE = 1e-6
"""Central differences vs an analytic gradient. Each difference quotient carries a rounding
error of about ``u |f| / h = 1.1e-16 |f| / 1e-6 = 1.1e-10 |f|``, relative to the gradient
``|f| / |grad f|`` times that: below 1e-6 for ``|f| / |grad f| < 1e4``, which holds on the
instances checked. Gradient checks also add an absolute floor for that rounding (see
``tests/gradcheck.py``), so a tiny gradient beside a large ``f`` does not fail spuriously."""


def sum_rounding_bound(n_terms: int, dtype: str = "float64") -> float:
    """``gamma_n = n u / (1 - n u)``: the worst relative rounding error of a sum of ``n`` products,
    relative to the sum of their absolute values (Higham, Eq. (3.5))."""
    u = UNIT_ROUNDOFF[str(dtype)]
    nu = int(n_terms) * u
    if nu >= 1:
        raise ValueError(f"n_terms = {n_terms} is too many for {dtype}: n u = {nu:.2g} >= 1")
    return nu / (1 - nu)


def _norm(xp, a) -> float:
    return float(xp.sqrt((a * a).sum()))


def relative_error(actual, expected) -> float:
    """``||actual - expected|| / max(||actual||, ||expected||)`` (0 when both are 0).

    Arrays of any shape (the same for both), NumPy or CuPy; computed in float64.
    """
    xp = namespace_of(actual, expected)
    actual = xp.asarray(actual, dtype="float64")
    expected = xp.asarray(expected, dtype="float64")
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {tuple(actual.shape)} vs {tuple(expected.shape)}")
    scale = max(_norm(xp, actual), _norm(xp, expected))
    return 0.0 if scale == 0 else _norm(xp, actual - expected) / scale


def inner_residual(lhs_terms, rhs_terms) -> float:
    """``|sum(lhs) - sum(rhs)| / (sum|lhs| + sum|rhs|)``: rounding-scaled gap of two sums of terms.

    For an adjoint test ``<A x, y> = <x, A^T y>`` pass ``(A x) * y`` and ``x * (A^T y)``.
    """
    xp = namespace_of(lhs_terms, rhs_terms)
    lhs, rhs = xp.asarray(lhs_terms, dtype="float64"), xp.asarray(rhs_terms, dtype="float64")
    scale = float(xp.abs(lhs).sum()) + float(xp.abs(rhs).sum())
    gap = abs(float(lhs.sum()) - float(rhs.sum()))
    return 0.0 if scale == 0 else gap / scale


def piece_residual(f, alpha, B, I) -> float:
    """Largest ``|f - alpha - <I, B>|`` over the batch, relative to ``|f| + |alpha| + sum|I B|``.

    Eq. (6.8). Shapes: ``f (M,)``, ``alpha (M,)``, ``B`` and ``I`` ``(M, ...)``.
    """
    xp = namespace_of(f, alpha, B, I)
    terms = (xp.asarray(I, dtype="float64") * xp.asarray(B, dtype="float64")).reshape(len(I), -1)
    f, alpha = xp.asarray(f, dtype="float64"), xp.asarray(alpha, dtype="float64")
    gap = xp.abs(f - alpha - terms.sum(axis=1))
    scale = xp.abs(f) + xp.abs(alpha) + xp.abs(terms).sum(axis=1)
    ratio = xp.where(scale > 0, gap / xp.where(scale > 0, scale, 1), 0.0)
    return float(ratio.max())
