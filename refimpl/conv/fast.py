"""Fast convolution kernels: contiguous shifted slices and one matrix multiply per chunk.

Same contract as :mod:`refimpl.conv.naive` (same functions, same shapes, same results to
rounding error), organised so that almost all the work is a matrix multiply (GEMM).

**1. Flatten into stride phases.** Zero-pad the input and split it into its ``s*s`` stride
phases, each of size ``hq x wq = ceil(H_pad/s) x ceil(W_pad/s)``, flattened::

    X[n, c, a*s + b, u*wq + v] = x_pad[n, c, s*u + a, s*v + b]

Output position ``(i, j)`` is stored at ``q = i*wq + j`` (a "wide" row of ``wq`` entries,
the last ``wq - W_out`` of which are junk and dropped at the end). In this layout kernel
tap ``(dy, dx)`` reads phase ``(dy % s, dx % s)`` at ``q + (dy // s)*wq + dx // s``: every
tap of Eq. (2.1) is one *contiguous shifted slice*, whatever the stride.

**2. Gather and multiply.** Copy the slices of some taps into the rows of a matrix ``S``
(``K`` rows), and multiply by the matching weights: ``Y = W_plan @ S``.

**3. Shift and add.** The remaining taps are row offsets handled on the output side: block
``r`` of ``Y`` is added to the output shifted by ``r*wq``.

Which taps are gathered and which are shifted is the *plan* (:mod:`refimpl.conv.plan`:
``"im2col"`` gathers all ``k*k`` taps, ``"rows"`` one band of kernel rows; a cost model
picks one per layer shape). This module is the algorithm for any plan.

The adjoint and the weight gradient run the same plan backwards: spread the output
gradient into ``dY`` (the adjoint of the shift-add), multiply by ``W_plan^T`` or ``S^T``,
and scatter-add the gathered rows back (the adjoint of the gather: a loop of slice
additions, never an ``add.at`` scatter).
"""

from __future__ import annotations

from refimpl.backend import namespace_of
from refimpl.conv.geometry import ConvGeometry
from refimpl.conv.plan import Plan, batch_chunks, make_plan
from refimpl.threads import map_chunks

# --- layout changes --------------------------------------------------------------------


def _axis_phase(size: int, pad: int, stride: int, phase: int) -> tuple[slice, slice]:
    """Where phase ``phase`` of one padded axis meets the unpadded data.

    Padded index ``stride*u + phase`` holds data index ``stride*u + phase - pad``. Returns the
    data slice (``first::stride``) and the matching phase slice ``u0 : u0 + count``.
    """
    u0 = max(0, -(-(pad - phase) // stride))
    first = stride * u0 + phase - pad
    count = max(0, -(-(size - first) // stride))
    return slice(first, size, stride), slice(u0, u0 + count)


def _phase_parts(plan: Plan):
    """For each stride phase ``(a, b)``: its flat index and the data/phase slices it covers."""
    g, s = plan.geom, plan.geom.stride
    for a in range(s):
        rows, us = _axis_phase(g.height, g.pad, s, a)
        for b in range(s):
            cols, vs = _axis_phase(g.width, g.pad, s, b)
            yield a * s + b, (rows, cols), (us, vs)


def _to_phases(xp, x, plan: Plan):
    """``x (N, C, H, W)`` -> zero-padded, phase-split, flattened ``X (N, C, s*s, hq*wq)``."""
    g, s = plan.geom, plan.geom.stride
    flat_shape = (g.batch, g.in_channels, s * s, plan.hq * plan.wq)
    if s == 1 and g.pad == 0:  # already in the flat layout: no copy
        return xp.ascontiguousarray(x).reshape(flat_shape)
    phases = xp.zeros((g.batch, g.in_channels, s * s, plan.hq, plan.wq), dtype=x.dtype)
    for index, (rows, cols), (us, vs) in _phase_parts(plan):
        phases[:, :, index, us, vs] = x[:, :, rows, cols]
    return phases.reshape(flat_shape)


def _from_phases(xp, phases, plan: Plan):
    """Adjoint of :func:`_to_phases`: ``(N, C, s*s, hq*wq)`` -> ``(N, C, H, W)``; drops padding."""
    g, s = plan.geom, plan.geom.stride
    if s == 1 and g.pad == 0:
        return phases.reshape(g.input_shape)
    phases = phases.reshape(g.batch, g.in_channels, s * s, plan.hq, plan.wq)
    x = xp.empty(g.input_shape, dtype=phases.dtype)
    for index, (rows, cols), (us, vs) in _phase_parts(plan):
        x[:, :, rows, cols] = phases[:, :, index, us, vs]
    return x


def _from_wide(wide, plan: Plan):
    """Wide ``(N, O, H_out * wq)`` -> ``(N, O, H_out, W_out)`` view (junk columns dropped).

    A strided view, not a copy: copying a large fresh array costs as much as the gather
    (page faults), and the next layer's non-linearity makes a contiguous array anyway.
    """
    g = plan.geom
    return wide.reshape(g.batch, g.out_channels, g.out_height, plan.wq)[..., : g.out_width]


# --- the plan's weight matrix ----------------------------------------------------------


def _tap_index(xp, plan: Plan):
    rows = xp.asarray(plan.tap_dy)
    cols = xp.asarray([plan.tap_dx] * len(plan.tap_dy))
    return rows, cols


def plan_weight(xp, plan: Plan, weight):
    """``weight (O, C, k, k)`` -> ``W_plan (R*O, C*G)``: ``W_plan[(r,o),(c,g)] = w[o,c,dy,dx]``."""
    g = plan.geom
    k_rows = plan.kernel_rows
    if k_rows > g.kernel:  # "rows" with k not a multiple of s: pad the kernel with zero rows
        padded = xp.zeros((g.out_channels, g.in_channels, k_rows, g.kernel), dtype=weight.dtype)
        padded[:, :, : g.kernel] = weight
        weight = padded
    rows, cols = _tap_index(xp, plan)
    picked = weight[:, :, rows, cols]  # (O, C, R, G)
    return xp.ascontiguousarray(picked.transpose(2, 0, 1, 3)).reshape(
        len(plan.out_shifts) * g.out_channels, g.in_channels * len(plan.taps)
    )


def _weight_from_plan(xp, plan: Plan, w_plan):
    """Adjoint of :func:`plan_weight` (each tap appears once, so a plain assignment)."""
    g = plan.geom
    blocks = w_plan.reshape(len(plan.out_shifts), g.out_channels, g.in_channels, len(plan.taps))
    weight = xp.zeros((g.out_channels, g.in_channels, plan.kernel_rows, g.kernel), w_plan.dtype)
    rows, cols = _tap_index(xp, plan)
    weight[:, :, rows, cols] = blocks.transpose(1, 2, 0, 3)
    return xp.ascontiguousarray(weight[:, :, : g.kernel])


# --- gather / shift-add and their adjoints ---------------------------------------------


def _gather(phases, plan: Plan, out):
    """``S[n, (c, g), q] = X[n, c, phase_g, shift_g + q]`` for ``q < gather_length``."""
    n = phases.shape[0]
    length = plan.gather_length
    s = out[:n].reshape(n, plan.geom.in_channels, len(plan.taps), length)
    for g, (phase, shift) in enumerate(plan.taps):
        s[:, :, g] = phases[:, :, phase, shift : shift + length]
    return out[:n]


def _scatter_add(rows, plan: Plan, phases):
    """Adjoint of :func:`_gather`: ``X[n, c, phase_g, shift_g + q] += S[n, (c, g), q]``."""
    n = rows.shape[0]
    length = plan.gather_length
    r = rows.reshape(n, plan.geom.in_channels, len(plan.taps), length)
    for g, (phase, shift) in enumerate(plan.taps):
        phases[:, :, phase, shift : shift + length] += r[:, :, g]


def _shift_add(blocks, plan: Plan, out):
    """``out[n, o, q] = sum_r Y[n, (r, o), q + shift_r]`` for ``q < L``."""
    o, length = plan.geom.out_channels, plan.length
    for r, shift in enumerate(plan.out_shifts):
        block = blocks[:, r * o : (r + 1) * o, shift : shift + length]
        if r == 0:
            out[...] = block
        else:
            out += block


def _spread(grad, plan: Plan, out):
    """Adjoint of :func:`_shift_add`: ``dY[n, (r, o), shift_r + i*wq + j] = grad[n, o, i, j]``.

    ``grad`` is ``(n, O, H_out, W_out)``; ``out`` is a buffer of :func:`_spread_length`
    columns that is zero wherever nothing is written (the junk columns ``j >= W_out``).
    Those places are the same for every chunk, so a buffer zeroed once stays valid.
    Returns the ``gather_length`` columns the matrix multiplies use.
    """
    g = plan.geom
    n, o, span = grad.shape[0], g.out_channels, g.out_height * plan.wq
    for r, shift in enumerate(plan.out_shifts):
        block = out[:n, r * o : (r + 1) * o, shift : shift + span]
        block.reshape(n, o, g.out_height, plan.wq)[..., : g.out_width] = grad
    return out[:n, :, : plan.gather_length]


def _spread_length(plan: Plan) -> int:
    """Columns of the ``dY`` buffer: room for a full last row, so blocks reshape to a grid."""
    return plan.out_shifts[-1] + plan.geom.out_height * plan.wq


# --- the three kernels -----------------------------------------------------------------


def forward(geom: ConvGeometry, x, weight, bias=None, plan: str | None = None):
    """Cross-correlation, Eq. (2.1) before the non-linearity h (fast; equals ``naive.forward``).

    Shapes: x ``(N, C, H, W)``, weight ``(O, C, k, k)``, bias ``(O,)`` or None ->
    ``(N, O, H_out, W_out)``. ``plan`` forces ``"im2col"`` or ``"rows"`` (default: chosen).
    """
    xp = namespace_of(x, weight)
    p = make_plan(geom, plan)
    phases = _to_phases(xp, x, p)
    w_plan = plan_weight(xp, p, weight)
    wide = xp.empty((geom.batch, geom.out_channels, geom.out_height * p.wq), dtype=x.dtype)

    def chunk(n0: int, n1: int):
        s_buf = xp.empty((n1 - n0, w_plan.shape[1], p.gather_length), dtype=x.dtype)
        s = _gather(phases[n0:n1], p, s_buf)
        target = wide[n0:n1, :, : p.length]
        if len(p.out_shifts) == 1:  # nothing to shift: the GEMM writes the output directly
            xp.matmul(w_plan, s, out=target)
        else:
            _shift_add(xp.matmul(w_plan, s), p, target)

    map_chunks(chunk, batch_chunks(p, xp))
    y = _from_wide(wide, p)
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def adjoint(geom: ConvGeometry, y, weight, plan: str | None = None):
    """Transposed convolution, the adjoint of :func:`forward` in ``x`` (equals ``naive.adjoint``).

    Gradient of ``<forward(x), y>`` w.r.t. ``x``; the top-down deconvolution of Eq. (6.7).
    Shapes: y ``(N, O, H_out, W_out)``, weight ``(O, C, k, k)`` -> ``(N, C, H, W)``.
    """
    xp = namespace_of(y, weight)
    p = make_plan(geom, plan)
    w_plan_t = plan_weight(xp, p, weight).T
    phases = xp.zeros((geom.batch, geom.in_channels, geom.stride**2, p.hq * p.wq), y.dtype)

    def chunk(n0: int, n1: int):
        dy_buf = xp.zeros((n1 - n0, w_plan_t.shape[1], _spread_length(p)), dtype=y.dtype)
        dy = _spread(y[n0:n1], p, dy_buf)
        _scatter_add(xp.matmul(w_plan_t, dy), p, phases[n0:n1])

    map_chunks(chunk, batch_chunks(p, xp))
    return _from_phases(xp, phases, p)


def weight_grad(geom: ConvGeometry, x, y, plan: str | None = None):
    """Gradient of ``<forward(x; w), y>`` w.r.t. the filters (fast; equals ``naive.weight_grad``).

    ``w_grad[o, c, dy, dx] = sum_{n,i,j} y[n,o,i,j] x_pad[n, c, s i + dy, s j + dx]``, Eq. (7.3).
    Shapes: x ``(N, C, H, W)``, y ``(N, O, H_out, W_out)`` -> ``(O, C, k, k)``.
    """
    xp = namespace_of(x, y)
    p = make_plan(geom, plan)
    phases = _to_phases(xp, x, p)
    rows_m = len(p.out_shifts) * geom.out_channels
    cols_k = len(p.taps) * geom.in_channels

    def chunk(n0: int, n1: int):
        s = _gather(phases[n0:n1], p, xp.empty((n1 - n0, cols_k, p.gather_length), x.dtype))
        dy = _spread(y[n0:n1], p, xp.zeros((n1 - n0, rows_m, _spread_length(p)), x.dtype))
        return xp.matmul(dy, s.transpose(0, 2, 1)).sum(axis=0)

    partial = map_chunks(chunk, batch_chunks(p, xp))
    w_plan_grad = partial[0]
    for more in partial[1:]:  # in chunk order, whichever thread computed each
        w_plan_grad = w_plan_grad + more
    return _weight_from_plan(xp, p, w_plan_grad)


def bias_grad(y):
    """``b_grad[o] = sum_{n,i,j} y[n,o,i,j]`` (Eq. (7.4)); shapes ``(N, O, h, w)`` -> ``(O,)``."""
    return y.sum(axis=(0, 2, 3))
