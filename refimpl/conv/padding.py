"""Circular (periodic) padding and its adjoint: the convolution of an image on a torus.

With zero padding, a pixel within ``pad`` of the border is seen by fewer filter windows
than an inner one, so in a learned texture model it gets a weaker pull from ``f`` and the
Gaussian reference ``q`` pulls it towards grey: the samples get a faint, lower-contrast
frame. A stationary texture has no border. With ``padding_mode="circular"`` the image is
treated as one period of a periodic image (a torus): it is padded by wrapping around,

    x_pad[n, c, i, j] = x[n, c, (i - p) mod H, (j - p) mod W],    0 <= i < H + 2p,

and every pixel is seen by the same filter windows as every other. With ``2 p = k - 1`` and
a stride ``s`` that divides ``H`` and ``W`` the convolution is then translation-equivariant
on the torus: shifting the image by ``s t`` pixels (cyclically) shifts the output by ``t``.

The convolution kernels (:mod:`refimpl.conv.naive`, :mod:`refimpl.conv.fast`) know only zero
padding: a circular convolution is the zero-pad-free (``pad = 0``) convolution of
:func:`wrap_pad`'s output, and its adjoint folds the margins of the padded gradient back onto
the sides they were copied from (:func:`wrap_pad_adjoint`):

    g[n, c, (i - p) mod H, (j - p) mod W] += g_pad[n, c, i, j].
"""

from __future__ import annotations

from refimpl.backend import namespace_of

PADDING_MODES = ("zeros", "circular")


def check_padding_mode(mode) -> str:
    """``mode`` if it is one of :data:`PADDING_MODES`; otherwise a ValueError naming them."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}; got {mode!r}")
    return mode


def wrap_pad(x, pad: int):
    """Pad ``x (N, C, H, W)`` by wrapping around: ``-> (N, C, H + 2 pad, W + 2 pad)``.

    ``x_pad[n, c, i, j] = x[n, c, (i - pad) mod H, (j - pad) mod W]``; needs ``pad <= H, W``
    (a margin wider than the image would copy pixels more than once).
    """
    xp = namespace_of(x)
    if pad == 0:
        return x
    return xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="wrap")


def _fold_axis(g, pad: int, axis: int):
    """Fold one axis of size ``n + 2 pad`` back to ``n``: the adjoint of wrapping it."""
    n = g.shape[axis] - 2 * pad

    def part(start, stop):
        index = [slice(None)] * g.ndim
        index[axis] = slice(start, stop)
        return tuple(index)

    core = g[part(pad, pad + n)].copy()
    core[part(n - pad, n)] += g[part(0, pad)]  # the leading margin copied the last rows
    core[part(0, pad)] += g[part(pad + n, n + 2 * pad)]  # the trailing margin the first
    return core


def wrap_pad_adjoint(g, pad: int):
    """Adjoint of :func:`wrap_pad`: ``(N, C, H + 2 pad, W + 2 pad) -> (N, C, H, W)``.

    ``<wrap_pad(x), g> = <x, wrap_pad_adjoint(g)>`` for all ``x, g``: every padded entry
    is added back to the pixel it was copied from.
    """
    if pad == 0:
        return g
    return _fold_axis(_fold_axis(g, pad, 2), pad, 3)
