"""Max pooling and its adjoint, section 9: "We can also incorporate max pooling in the
bottom-up computation, whose derivative is arg-max retrieval in the top-down reconstruction."

Max pooling keeps, in every ``size x size`` window (windows ``stride`` apart, no padding),
the largest value:

    y[n, c, i, j] = max_{0 <= dy, dx < size} x[n, c, s i + dy, s j + dx].

It is piecewise linear: once the winners (the arg-max of every window) are fixed, ``y`` is a
selection of entries of ``x``, a linear map. So a ConvNet with ReLU *and* max pooling is
still piecewise linear, ``f(I) = alpha + <I, B>`` (Eq. (6.8)) still holds on each piece, and
the top-down pass that computes ``B`` (Eq. (6.7), or Eq. (9.2): ``B = df/dI``) goes through a
pooling layer by *arg-max retrieval*: each pooled value's coefficient is handed back to the
input position that won its window, every other position gets 0.

==========================  =====================================  ================================
function                    computes                               shapes
==========================  =====================================  ================================
:func:`max_pool2d`          ``y`` and the winners ``argmax``       ``(N,C,H,W) -> 2 x (N,C,Ho,Wo)``
:func:`max_pool2d_adjoint`  ``x_grad`` of ``<max_pool2d(x), dy>``  ``(N,C,Ho,Wo) -> (N,C,H,W)``
==========================  =====================================  ================================

with ``Ho = (H - size) // stride + 1`` (and ``Wo`` alike). :func:`max_pool2d_adjoint_fast`
computes the same adjoint in fewer Python steps (sort and rank), for large images.
"""

from __future__ import annotations

from refimpl.backend import namespace_of
from refimpl.validation import (
    check_finite,
    check_float_array,
    check_ndim,
    check_positive_int,
    shape_str,
)

__all__ = ["max_pool2d", "max_pool2d_adjoint", "max_pool2d_adjoint_fast", "pool_output_size"]


def pool_output_size(size_in: int, size: int, stride: int) -> int:
    """Output length ``(size_in - size) // stride + 1`` of pooling one axis (no padding)."""
    return (int(size_in) - int(size)) // int(stride) + 1


def max_pool2d(x, size: int, stride: int | None = None):
    """Max pooling over ``size x size`` windows ``stride`` apart (no padding), section 9.

    ``y[n, c, i, j] = max_{dy, dx < size} x[n, c, stride i + dy, stride j + dx]``

    Args:
        x: ``(N, C, H, W)`` float array (NumPy or CuPy), finite.
        size: window side ``>= 1``, at most ``H`` and ``W``.
        stride: step between windows ``>= 1``; default ``size`` (non-overlapping windows).

    Returns:
        ``(y, argmax)``, both ``(N, C, H_out, W_out)`` with ``H_out = (H - size) // stride + 1``:
        ``y`` the window maxima (dtype of ``x``), ``argmax`` (int64) the flat index
        ``h * W + w`` of each window's winner within its own ``H x W`` plane ``x[n, c]``.
        Ties go to the first maximum in row-major order (the smallest flat index), as
        ``numpy.argmax`` on the flattened window would choose.
    """
    check_float_array(x, "x")
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_finite(x, "x")
    size = check_positive_int(size, "size")
    stride = size if stride is None else check_positive_int(stride, "stride")
    n, c, height, width = (int(s) for s in x.shape)
    if size > height or size > width:
        raise ValueError(
            f"the pooling window ({size}x{size}) is larger than the input x "
            f"{shape_str(x.shape)}; use size <= {min(height, width)}"
        )
    # BEGIN SOLUTION lesson 12
    xp = namespace_of(x)
    out_h, out_w = pool_output_size(height, size, stride), pool_output_size(width, size, stride)
    plane_index = xp.arange(height * width, dtype=xp.int64).reshape(height, width)
    best = argmax = None
    for dy in range(
        size
    ):  # every window offset, in row-major order: a strict ">" keeps the first maximum
        rows = slice(dy, dy + stride * (out_h - 1) + 1, stride)
        for dx in range(size):
            cols = slice(dx, dx + stride * (out_w - 1) + 1, stride)
            candidate, where = x[:, :, rows, cols], plane_index[rows, cols]
            if best is None:
                best = candidate.copy()
                argmax = xp.broadcast_to(where, candidate.shape).copy()
                continue
            wins = candidate > best
            best = xp.where(wins, candidate, best)
            argmax = xp.where(wins, where, argmax)
    return best, argmax
    # END SOLUTION


def _check_adjoint_arguments(dy, argmax, input_shape) -> tuple:
    """Validate the arguments of the pooling adjoints; return ``input_shape`` as ints."""
    check_float_array(dy, "dy")
    check_ndim(dy, 4, "dy", "(N, C, H_out, W_out)")
    check_finite(dy, "dy")
    if not hasattr(argmax, "dtype") or argmax.dtype.kind not in "iu":
        raise TypeError(
            f"argmax must be an integer array (as max_pool2d returns it); got "
            f"{getattr(argmax, 'dtype', type(argmax).__name__)}"
        )
    if tuple(argmax.shape) != tuple(dy.shape):
        raise ValueError(
            f"argmax must have the shape of dy {shape_str(dy.shape)}; got {shape_str(argmax.shape)}"
        )
    input_shape = tuple(int(s) for s in input_shape)
    if (
        len(input_shape) != 4
        or input_shape[:2] != tuple(int(s) for s in dy.shape[:2])
        or min(input_shape) < 1
    ):
        raise ValueError(
            f"input_shape must be (N, C, H, W) with N, C = {tuple(dy.shape[:2])} as in dy "
            f"{shape_str(dy.shape)}; got {input_shape}"
        )
    height, width = input_shape[2:]
    if argmax.size and (int(argmax.min()) < 0 or int(argmax.max()) >= height * width):
        raise ValueError(
            f"argmax holds indices outside [0, {height * width}) (the flat positions of a "
            f"{height}x{width} plane): min {int(argmax.min())}, max {int(argmax.max())}"
        )
    return input_shape


def max_pool2d_adjoint(dy, argmax, input_shape):
    """The adjoint of max pooling at fixed winners: arg-max retrieval, section 9.

    With the winners fixed, pooling is the linear map ``P: x -> x[winners]``; this is ``P^T``:
    each coefficient ``dy[n, c, i, j]`` is added at its window's winner ``argmax[n, c, i, j]``,

    ``x_grad[n, c, h, w] = sum of dy[n, c, i, j] over the windows (i, j) that ``(h, w)`` won``

    so ``<P x, dy> = <x, max_pool2d_adjoint(dy, argmax, x.shape)>`` for every ``x`` and ``dy``,
    and it is ``d<max_pool2d(x)[0], dy>/dx`` wherever no window has a tie. Positions that won
    no window get 0; with overlapping windows (``stride < size``) a position can win several
    windows and collects the sum of their ``dy``.

    One Python step per pooled position (``H_out W_out`` of them), written to be read;
    :func:`max_pool2d_adjoint_fast` computes the same in at most ``ceil(size / stride)^2``.

    Args:
        dy: ``(N, C, H_out, W_out)`` float array: a coefficient per pooled value.
        argmax: ``(N, C, H_out, W_out)`` integer array of flat in-plane indices ``h * W + w``
            in ``[0, H W)``, as returned by :func:`max_pool2d`.
        input_shape: ``(N, C, H, W)`` of the pooled input.

    Returns:
        ``(N, C, H, W)`` array of ``dy``'s dtype.
    """
    n, c, height, width = _check_adjoint_arguments(dy, argmax, input_shape)
    xp = namespace_of(dy, argmax)
    # BEGIN SOLUTION lesson 12
    out = xp.zeros((n * c, height * width), dtype=dy.dtype)  # one flat row per plane
    winners = argmax.reshape(n * c, -1)
    coefficients = dy.reshape(n * c, -1)
    planes = xp.arange(n * c)
    for k in range(winners.shape[1]):  # pooled position k of every plane at once
        # one winner per plane: no two of these additions land on the same entry
        out[planes, winners[:, k]] += coefficients[:, k]
    return out.reshape(n, c, height, width)
    # END SOLUTION


def max_pool2d_adjoint_fast(dy, argmax, input_shape):
    """:func:`max_pool2d_adjoint`, with a number of Python steps independent of the image size.

    Same arguments and result (the same additions in the same order for every entry, so the
    same numbers). A scatter-add without ``numpy.add.at`` (slow in NumPy, and absent in some
    array libraries): the flat targets are sorted, and an entry's rank among equal targets
    says in which round it is added; within a round the targets are distinct, so an indexed
    ``+=`` is exact. Rounds: the most windows one position wins, at most
    ``ceil(size / stride)^2``.
    """
    n, c, height, width = _check_adjoint_arguments(dy, argmax, input_shape)
    xp = namespace_of(dy, argmax)
    planes = n * c
    offsets = xp.arange(planes, dtype=xp.int64)[:, None] * (height * width)
    target = (argmax.reshape(planes, -1).astype(xp.int64) + offsets).reshape(-1)
    values = dy.reshape(-1)
    order = xp.argsort(target, kind="stable")  # stable: equal targets keep the order above
    target, values = target[order], values[order]
    rank = xp.arange(target.size) - xp.searchsorted(target, target, side="left")
    out = xp.zeros(planes * height * width, dtype=dy.dtype)
    for r in range(int(rank.max()) + 1 if rank.size else 0):
        chosen = rank == r
        out[target[chosen]] += values[chosen]
    return out.reshape(n, c, height, width)
