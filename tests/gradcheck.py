"""The gradient-check helper used by every test: central finite differences in float64.

``f`` is piecewise linear, so central differences with ``h = 1e-6`` are exact up to
rounding as long as no probe crosses a ReLU kink; :func:`input_gradient` returns its probes
so a test can confirm (and else reject the example) that they stay in the same piece.

Rounding sets a noise floor: each value ``f(x +- h e_p)`` carries an error of a few ulps
of the terms it sums, so each difference quotient is off by up to ``~ eps |f| / h``. The
check allows ``rtol`` relative error plus that floor (with a factor 64 for the summation of
many terms); without it a tiny gradient next to a large ``f`` would fail spuriously.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from checks import FINITE_DIFFERENCE, relative_error

from refimpl.numerics import FINITE_DIFFERENCE_STEP

STEP = FINITE_DIFFERENCE_STEP
ROUNDING_ULPS = 64


@dataclass
class FiniteDifference:
    """Central differences: the gradient estimate and its rounding noise floor per entry."""

    gradient: np.ndarray
    noise: float
    probes: np.ndarray | None = None


def _noise(values, h: float) -> float:
    return ROUNDING_ULPS * np.finfo(np.float64).eps * float(np.max(np.abs(values))) / h


def input_gradient(batched_fn, x, h: float = STEP) -> FiniteDifference:
    """Central-difference gradient of ``batched_fn`` at ``x`` in one batched call.

    Args:
        batched_fn: maps ``(B, *x.shape)`` to ``(B,)`` (e.g. ``net.score``).
        x: one point, e.g. an image ``(C, H, W)``.

    Returns:
        gradient shaped like ``x``; ``probes (2 D, *x.shape)`` are ``x + h e_p`` followed by
        ``x - h e_p`` for every coordinate ``p``.
    """
    d = x.size
    steps = h * np.eye(d, dtype=x.dtype).reshape((d,) + x.shape)
    probes = np.concatenate([x[None] + steps, x[None] - steps])
    values = batched_fn(probes)
    gradient = ((values[:d] - values[d:]) / (2 * h)).reshape(x.shape)
    return FiniteDifference(gradient, _noise(values, h), probes)


def coordinate_gradient(scalar_fn, x, coords, h: float = STEP, on_probe=None) -> FiniteDifference:
    """Central differences of ``scalar_fn()`` along flat coordinates ``coords`` of array ``x``.

    ``x`` is perturbed in place and restored, so ``scalar_fn`` may close over it (e.g. a
    network's weight array). ``on_probe()``, if given, is called at every perturbed point,
    e.g. to record whether the probe left the current piece.
    """
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so that it can be perturbed in place"
    out, seen = np.empty(len(coords)), []
    for i, p in enumerate(coords):
        saved = flat[p]
        values = []
        for step in (h, -h):
            flat[p] = saved + step
            values.append(scalar_fn())
            if on_probe is not None:
                on_probe()
        flat[p] = saved
        out[i] = (values[0] - values[1]) / (2 * h)
        seen.extend(values)
    return FiniteDifference(out, _noise(seen, h))


def assert_gradient(
    analytic, fd: FiniteDifference, rtol: float = FINITE_DIFFERENCE, what: str = "gradient"
) -> float:
    """Assert ``analytic`` matches the finite differences to ``rtol`` above the noise floor.

    Passes when ``||analytic - fd|| <= rtol * max(||analytic||, ||fd||) + noise * sqrt(n)``.
    Returns the relative error.
    """
    analytic = np.asarray(analytic, dtype=float)
    gap = float(np.linalg.norm(analytic - fd.gradient))
    scale = max(np.linalg.norm(analytic), np.linalg.norm(fd.gradient))
    allowed = rtol * scale + fd.noise * np.sqrt(analytic.size)
    err = relative_error(analytic, fd.gradient)
    assert gap <= allowed, (
        f"{what}: relative error {err:.3e} exceeds {rtol:.0e} "
        f"(gap {gap:.3e} > allowed {allowed:.3e}, noise floor {fd.noise:.1e} per entry)"
    )
    return err
