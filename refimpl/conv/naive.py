"""Naive convolution kernels: explicit loops over every output position, written to be read.

Each function is the definition, transcribed. They are slow (a Python loop over
``N * O * H_out * W_out`` positions) and exist to be checked against: the fast kernels in
:mod:`refimpl.conv.fast` must agree with these to rounding error.

All functions take a validated :class:`~refimpl.conv.geometry.ConvGeometry` (build it with
the checked wrappers in :mod:`refimpl.conv`) and arrays of one backend and dtype.
"""

from __future__ import annotations

from refimpl.backend import namespace_of
from refimpl.conv.geometry import ConvGeometry


def _window(geom: ConvGeometry, i: int, j: int):
    """Row and column slices of the padded input seen by output position ``(i, j)``."""
    s, k = geom.stride, geom.kernel
    return slice(s * i, s * i + k), slice(s * j, s * j + k)


def _padded(xp, x, pad: int):
    return xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def forward(geom: ConvGeometry, x, weight, bias=None):
    """Cross-correlation, Eq. (2.1) before the non-linearity h.

    ``y[n,o,i,j] = sum_{c,dy,dx} weight[o,c,dy,dx] x_pad[n, c, s i + dy, s j + dx] + bias[o]``

    Shapes: x ``(N, C, H, W)``, weight ``(O, C, k, k)``, bias ``(O,)`` or None ->
    ``(N, O, H_out, W_out)``.
    """
    # BEGIN SOLUTION lesson 1
    xp = namespace_of(x, weight)
    x_pad = _padded(xp, x, geom.pad)
    y = xp.zeros(geom.output_shape, dtype=x.dtype)
    for n in range(geom.batch):
        for o in range(geom.out_channels):
            for i in range(geom.out_height):
                for j in range(geom.out_width):
                    rows, cols = _window(geom, i, j)
                    y[n, o, i, j] = xp.sum(weight[o] * x_pad[n, :, rows, cols])
    if bias is not None:
        y += bias[None, :, None, None]
    return y
    # END SOLUTION


def adjoint(geom: ConvGeometry, y, weight):
    """Transposed convolution: the adjoint of :func:`forward` (without bias) in ``x``.

    ``x_grad[n, c, s i + dy - p, s j + dx - p] += weight[o, c, dy, dx] y[n, o, i, j]``,
    i.e. every output value spreads back over the window it was computed from. It is the
    gradient of ``<forward(x), y>`` with respect to ``x``, and the top-down pass of Eq. (6.7).

    Shapes: y ``(N, O, H_out, W_out)``, weight ``(O, C, k, k)`` -> ``(N, C, H, W)``.
    """
    # BEGIN SOLUTION lesson 1
    xp = namespace_of(y, weight)
    p = geom.pad
    x_pad = xp.zeros(
        (geom.batch, geom.in_channels, geom.height + 2 * p, geom.width + 2 * p), dtype=y.dtype
    )
    for n in range(geom.batch):
        for o in range(geom.out_channels):
            for i in range(geom.out_height):
                for j in range(geom.out_width):
                    rows, cols = _window(geom, i, j)
                    x_pad[n, :, rows, cols] += weight[o] * y[n, o, i, j]
    return x_pad[:, :, p : p + geom.height, p : p + geom.width]
    # END SOLUTION


def weight_grad(geom: ConvGeometry, x, y):
    """Gradient of ``<forward(x; w), y>`` with respect to the filters ``w``.

    ``w_grad[o, c, dy, dx] = sum_{n, i, j} y[n, o, i, j] x_pad[n, c, s i + dy, s j + dx]``:
    each filter collects the input windows weighted by its output's coefficients (Eq. (7.3)).

    Shapes: x ``(N, C, H, W)``, y ``(N, O, H_out, W_out)`` -> ``(O, C, k, k)``.
    """
    # BEGIN SOLUTION lesson 1
    xp = namespace_of(x, y)
    x_pad = _padded(xp, x, geom.pad)
    w_grad = xp.zeros(geom.weight_shape, dtype=x.dtype)
    for n in range(geom.batch):
        for o in range(geom.out_channels):
            for i in range(geom.out_height):
                for j in range(geom.out_width):
                    rows, cols = _window(geom, i, j)
                    w_grad[o] += y[n, o, i, j] * x_pad[n, :, rows, cols]
    return w_grad
    # END SOLUTION


def bias_grad(y):
    """Gradient of ``<forward(x; w, b), y>`` w.r.t. ``b``: ``sum_{n,i,j} y[n,o,i,j]``, Eq. (7.4)."""
    xp = namespace_of(y)
    n_batch, out_channels, out_h, out_w = y.shape
    b_grad = xp.zeros((out_channels,), dtype=y.dtype)
    for n in range(n_batch):
        for o in range(out_channels):
            for i in range(out_h):
                for j in range(out_w):
                    b_grad[o] += y[n, o, i, j]
    return b_grad
