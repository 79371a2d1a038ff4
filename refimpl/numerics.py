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


# --- crosscheck: another implementation against the golden vectors -------------------------
#
# ``python -m refimpl crosscheck`` compares a user's array ``a`` with the golden ``b``
# elementwise: it passes when ``|a - b| <= atol + rtol |b|`` everywhere, with
# ``atol = rtol * scale`` and ``scale`` the magnitude of the terms that make up ``b`` (by
# default ``max |b|``; for a difference of larger terms, such as ``H_obs - H_syn``, the size of
# those terms), recorded per array in the manifest. The golden instances are small (at most 3
# layers, at most 36 products per output and layer, at most 8 Langevin steps) and drawn away
# from every discrete decision (next block), so the comparison only has to absorb rounding.

CROSSCHECK_FLOAT32 = 1e-4
"""``rtol`` for a float32 implementation against the float64 golden vectors.

A float32 implementation rounds its inputs (``u = 6.0e-8`` relative) and every operation.
One layer's output carries at most ``gamma_n = n u`` of its terms' absolute sum, ``n <= 36``
products (``2.2e-6``); three layers forward and three back, and up to 8 Langevin steps each
adding one such error (the Gaussian part of the update contracts, so they do not grow), give
a worst case of about ``2 * 3 * 8 * 2.2e-6 = 1e-4`` of the terms' size. Random signs make the
typical error ``sqrt(n)`` times smaller, which is what is seen: refimpl's own float32 run of
every case stays within ``CROSSCHECK_FLOAT32 / CROSSCHECK_HEADROOM`` (the golden writer
refuses an instance where it does not; measured: at most 1.1e-7), and the PyTorch and JAX
examples in float32 within 1.8e-7 and 1.6e-7. A real mistake
(the Langevin drift ``eps^2`` instead of ``eps^2 / 2``, a flipped kernel, a missing ReLU
mask) changes the results by 1e-2 or more."""

CROSSCHECK_FLOAT64 = 1e-10
"""``rtol`` for a float64 implementation against the float64 golden vectors.

The same analysis with ``u = 1.1e-16`` gives a worst case of ``2 * 3 * 8 * 36 * 1.1e-16 =
1.9e-13`` of the terms' size; scaling refimpl's measured float32 deviation (at most
``1e-5``, enforced) by ``2^-53 / 2^-24 = 1.9e-9`` gives ``2e-14``. ``1e-10`` leaves a factor of
500 or more for summation orders, FFT or Winograd convolutions and BLAS differences, and
is a hundred million times below the smallest mistake the kit looks for (measured: the
PyTorch and JAX examples in float64 are within 3.8e-16)."""

CROSSCHECK_HEADROOM = 10
"""The golden writer recomputes every case in float32 with refimpl itself and keeps an
instance only if that run is within ``CROSSCHECK_FLOAT32 / CROSSCHECK_HEADROOM`` and makes
every discrete decision the same (activation patterns, accept/reject, stopping steps): a
float32 implementation whose rounding is ten times worse than refimpl's still passes."""

KINK_MARGIN = 1e-4
"""Smallest ``|z| / max |z|`` (per layer) a golden instance allows for any pre-activation
``z`` it evaluates (data, chains at every recorded step). float32 rounding moves ``z`` by
``gamma_n = 36 u = 2.2e-6`` of its terms at worst per layer, so no correct float32
implementation can flip a ReLU ``1(z > 0)`` that refimpl's float64 run sets."""

DECISION_MARGIN = 1e-2
"""Smallest margin of a golden instance's other discrete decisions. MALA: ``|log U - log r|``
(``r`` the Hastings ratio, a difference of energies ``|I|^2 / (2 sigma^2) < 10^2`` that float32
gets right to ``10^2 * 6e-8 = 6e-6``). GRADE: the stopping test ``|u| <= tol (|I| + sigma)``
holds or fails alike with ``tol`` moved by 1%; near a mode ``u = (eps^2 / 2)(B - I / sigma^2)``
is a difference of nearly equal terms, off in float32 by about
``(eps^2 / (2 sigma^2)) u |I| = 0.63 * 6e-8 |I|``, i.e. ``4e-4`` of the threshold at
``tol = 1e-4``: 25 times below."""

CROSSCHECK_KS_ALPHA = 1e-3
"""Significance of the statistical sampler check: a sampler that draws from ``p`` exactly
fails it with probability ``1e-3`` (the KS critical value is the ``1 - 1e-3`` quantile of
the exact Kolmogorov distribution for ``n`` samples)."""
