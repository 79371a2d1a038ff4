"""2-D convolution (cross-correlation, Eq. (2.1)) with stride and zero or circular padding, NCHW.

Public, checked entry points; each validates its arguments (shapes, dtypes, finite values)
and dispatches to one of two implementations with identical results:

* ``impl="fast"`` (default): :mod:`refimpl.conv.fast`, shifted slices + matrix multiply;
* ``impl="naive"``: :mod:`refimpl.conv.naive`, explicit loops, written to be read.

=============================  ===================================  ===========================
function                        computes                             shapes
=============================  ===================================  ===========================
:func:`conv2d`                  ``y = w * x + b``                    ``(N,C,H,W) -> (N,O,Ho,Wo)``
:func:`conv2d_adjoint`          ``x_grad`` of ``<conv2d(x), y>``     ``(N,O,Ho,Wo) -> (N,C,H,W)``
:func:`conv2d_weight_grad`      ``w_grad`` of ``<conv2d(x), y>``     ``-> (O, C, k, k)``
:func:`conv2d_bias_grad`        ``b_grad`` of ``<conv2d(x), y>``     ``-> (O,)``
:func:`max_pool2d`              window maxima and their arg-max      ``(N,C,H,W) -> (N,C,Ho,Wo)``
:func:`max_pool2d_adjoint`      arg-max retrieval (section 9)        ``(N,C,Ho,Wo) -> (N,C,H,W)``
=============================  ===================================  ===========================

:func:`max_pool2d_adjoint_fast` is arg-max retrieval in fewer Python steps, for large images.

Padding is zeros by default; ``padding_mode="circular"`` treats the image as one period of a
periodic image (:mod:`refimpl.conv.padding`). The kernels know only zero padding: a
:class:`Kernels` runs a circular convolution as the unpadded convolution of the wrapped input.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.backend import namespace_of
from refimpl.conv import fast, naive
from refimpl.conv.geometry import (
    ConvGeometry,
    check_bias,
    check_stride_pad,
    check_weight,
    conv_geometry,
    conv_output_size,
)
from refimpl.conv.padding import PADDING_MODES, wrap_pad, wrap_pad_adjoint
from refimpl.conv.pool import (
    max_pool2d,
    max_pool2d_adjoint,
    max_pool2d_adjoint_fast,
    pool_output_size,
)
from refimpl.validation import (
    check_array,
    check_finite,
    check_positive_int,
    shape_str,
)


@dataclass(frozen=True)
class Kernels:
    """The four kernels of one implementation, for a geometry of either padding mode.

    ``module`` (:mod:`~refimpl.conv.fast` or :mod:`~refimpl.conv.naive`) handles zero
    padding; a circular geometry runs there as ``pad = 0`` on :func:`wrap_pad`'s output, and
    its adjoint folds the padded gradient back with :func:`wrap_pad_adjoint`. Unchecked, like
    the modules: the public functions below validate first.
    """

    module: object

    def forward(self, geom: ConvGeometry, x, weight, bias=None):
        if geom.padding_mode == "circular":
            return self.module.forward(geom.on_padded_input(), wrap_pad(x, geom.pad), weight, bias)
        return self.module.forward(geom, x, weight, bias)

    def adjoint(self, geom: ConvGeometry, y, weight):
        if geom.padding_mode == "circular":
            padded = self.module.adjoint(geom.on_padded_input(), y, weight)
            return wrap_pad_adjoint(padded, geom.pad)
        return self.module.adjoint(geom, y, weight)

    def weight_grad(self, geom: ConvGeometry, x, y):
        if geom.padding_mode == "circular":
            return self.module.weight_grad(geom.on_padded_input(), wrap_pad(x, geom.pad), y)
        return self.module.weight_grad(geom, x, y)

    def bias_grad(self, y):
        return self.module.bias_grad(y)


IMPLEMENTATIONS = {"fast": Kernels(fast), "naive": Kernels(naive)}

__all__ = [
    "ConvGeometry",
    "Kernels",
    "PADDING_MODES",
    "conv2d",
    "conv2d_adjoint",
    "conv2d_weight_grad",
    "conv2d_bias_grad",
    "conv_geometry",
    "conv_output_size",
    "fast",
    "max_pool2d",
    "max_pool2d_adjoint",
    "max_pool2d_adjoint_fast",
    "naive",
    "pool_output_size",
]


def implementation(impl: str) -> Kernels:
    """The :class:`Kernels` of ``impl``: ``"fast"`` (:mod:`~refimpl.conv.fast`) or ``"naive"``."""
    try:
        return IMPLEMENTATIONS[impl]
    except KeyError:
        raise ValueError(f"impl must be one of {sorted(IMPLEMENTATIONS)}; got {impl!r}") from None


def _check_same_dtype(**arrays):
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"arrays must share one dtype; got {listed}")
    namespace_of(*arrays.values())  # raises on mixed NumPy/CuPy


def _check_output_grad(y, geom: ConvGeometry, y_name: str):
    expected = geom.output_shape
    if tuple(y.shape) != expected:
        raise ValueError(
            f"{y_name} must have shape {shape_str(expected)} (the convolution's output for "
            f"input {shape_str(geom.input_shape)} and weight {shape_str(geom.weight_shape)}, "
            f"stride {geom.stride}, pad {geom.pad}); got {shape_str(y.shape)}"
        )


def conv2d(
    x,
    weight,
    bias=None,
    stride: int = 1,
    pad: int = 0,
    impl: str = "fast",
    padding_mode: str = "zeros",
):
    """Filter ``x`` with ``weight``, Eq. (2.1) before the non-linearity.

    ``y[n,o,i,j] = sum_{c,dy,dx} weight[o,c,dy,dx] x_pad[n, c, s i + dy, s j + dx] + bias[o]``

    Args:
        x: ``(N, C, H, W)`` float array.
        weight: ``(O, C, k, k)`` filters, same dtype.
        bias: ``(O,)`` or None.
        stride: sub-sampling step ``s >= 1``.
        pad: padding ``p >= 0`` on every side.
        impl: ``"fast"`` or ``"naive"``.
        padding_mode: ``"zeros"`` (default) or ``"circular"`` (wrap around; ``p <= H, W``).

    Returns:
        ``(N, O, H_out, W_out)`` with ``H_out = (H + 2p - k) // s + 1``.
    """
    stride, pad = check_stride_pad(stride, pad)
    check_array(x, "x", 4, "(N, C, H, W)")
    check_weight(weight)
    check_finite(weight, "weight")
    if bias is not None:
        check_bias(bias, weight.shape[0], weight.shape)
        check_finite(bias, "bias")
    _check_same_dtype(x=x, weight=weight, bias=bias)
    geom = conv_geometry(x.shape, weight.shape, stride, pad, padding_mode=padding_mode)
    return implementation(impl).forward(geom, x, weight, bias)


def conv2d_adjoint(
    y,
    weight,
    input_size,
    stride: int = 1,
    pad: int = 0,
    impl: str = "fast",
    padding_mode: str = "zeros",
):
    """Transposed convolution: the adjoint of :func:`conv2d` (without bias) in ``x``.

    Satisfies ``<conv2d(x, w), y> = <x, conv2d_adjoint(y, w, x.shape[2:])>`` for all ``x, y``;
    it is ``d<conv2d(x), y>/dx`` and the top-down deconvolution of Eq. (6.7).

    Args:
        y: ``(N, O, H_out, W_out)``.
        weight: ``(O, C, k, k)``.
        input_size: ``(H, W)`` of the input; needed because with stride > 1 several input
            sizes give the same output size.

    Returns:
        ``(N, C, H, W)``.
    """
    stride, pad = check_stride_pad(stride, pad)
    check_array(y, "y", 4, "(N, O, H_out, W_out)")
    check_weight(weight)
    check_finite(weight, "weight")
    _check_same_dtype(y=y, weight=weight)
    height, width = (int(v) for v in input_size)
    x_shape = (y.shape[0], weight.shape[1], height, width)
    geom = conv_geometry(
        x_shape, weight.shape, stride, pad, x_name="input_size", padding_mode=padding_mode
    )
    _check_output_grad(y, geom, "y")
    return implementation(impl).adjoint(geom, y, weight)


def conv2d_weight_grad(
    x,
    y,
    kernel_size: int,
    stride: int = 1,
    pad: int = 0,
    impl: str = "fast",
    padding_mode: str = "zeros",
):
    """Gradient of ``<conv2d(x, w), y>`` with respect to ``w``, Eq. (7.3).

    ``w_grad[o, c, dy, dx] = sum_{n, i, j} y[n, o, i, j] x_pad[n, c, s i + dy, s j + dx]``.

    Args:
        x: ``(N, C, H, W)`` input.
        y: ``(N, O, H_out, W_out)`` output gradient.
        kernel_size: ``k``.

    Returns:
        ``(O, C, k, k)``.
    """
    stride, pad = check_stride_pad(stride, pad)
    check_array(x, "x", 4, "(N, C, H, W)")
    check_array(y, "y", 4, "(N, O, H_out, W_out)")
    _check_same_dtype(x=x, y=y)
    k = check_positive_int(kernel_size, "kernel_size")
    w_shape = (y.shape[1], x.shape[1], k, k)
    geom = conv_geometry(x.shape, w_shape, stride, pad, padding_mode=padding_mode)
    _check_output_grad(y, geom, "y")
    return implementation(impl).weight_grad(geom, x, y)


def conv2d_bias_grad(y, impl: str = "fast"):
    """Gradient of ``<conv2d(x, w, b), y>`` w.r.t. ``b``: ``sum_{n,i,j} y[n,o,i,j]``, Eq. (7.4)."""
    check_array(y, "y", 4, "(N, O, H_out, W_out)")
    return implementation(impl).bias_grad(y)
