"""Shapes of a strided, zero-padded 2-D convolution, and the checks that make them valid.

Convention (Xie et al., Eq. (2.1)): filtering is cross-correlation,

    y[n, o, i, j] = sum_{c, dy, dx} w[o, c, dy, dx] * x_pad[n, c, s*i + dy, s*j + dx] + b[o],

with ``x_pad`` the input padded by ``pad`` on every side (with zeros, or by wrapping around
for ``padding_mode="circular"``, :mod:`refimpl.conv.padding`) and ``s`` the stride
(sub-sampling). Arrays are NCHW, filters ``(O, C, k, k)``. The output size along an axis is

    out = floor((size + 2*pad - k) / s) + 1,

and it is at least 1 exactly when the kernel fits in the padded input.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl.conv.padding import check_padding_mode
from refimpl.validation import check_float_array, check_ndim, check_positive_int, shape_str


def conv_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """Output length of a convolution along one axis: ``(size + 2 pad - kernel) // stride + 1``.

    Returns 0 or less when the kernel does not fit in the padded input.
    """
    return (size + 2 * pad - kernel) // stride + 1


@dataclass(frozen=True)
class ConvGeometry:
    """All sizes of one convolution of ``x (N, C, H, W)`` with ``w (O, C, k, k)``."""

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: int
    stride: int
    pad: int
    padding_mode: str = "zeros"

    def on_padded_input(self) -> ConvGeometry:
        """The same convolution as an unpadded one (``pad = 0``) of the padded input.

        ``(N, C, H + 2p, W + 2p)`` in, the same output shape: how a circular convolution runs
        on the zero-padding kernels, after :func:`~refimpl.conv.padding.wrap_pad`.
        """
        p = self.pad
        return ConvGeometry(
            self.batch,
            self.in_channels,
            self.height + 2 * p,
            self.width + 2 * p,
            self.out_channels,
            self.kernel,
            self.stride,
            0,
        )

    @property
    def out_height(self) -> int:
        return conv_output_size(self.height, self.kernel, self.stride, self.pad)

    @property
    def out_width(self) -> int:
        return conv_output_size(self.width, self.kernel, self.stride, self.pad)

    @property
    def input_shape(self) -> tuple:
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def output_shape(self) -> tuple:
        return (self.batch, self.out_channels, self.out_height, self.out_width)

    @property
    def weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)

    @property
    def flops(self) -> int:
        """Flops, 2 per multiply-add: ``2 N O C k^2 H_out W_out`` (the same for all three ops)."""
        return (
            2
            * self.batch
            * self.out_channels
            * self.in_channels
            * self.kernel**2
            * self.out_height
            * self.out_width
        )


def check_stride_pad(stride, pad) -> tuple[int, int]:
    """Validate and return ``(stride, pad)`` as ints: stride >= 1, pad >= 0."""
    return check_positive_int(stride, "stride", 1), check_positive_int(pad, "pad", 0)


def check_weight(weight, name: str = "weight"):
    """A filter bank must be float, 4-D ``(O, C, k, k)`` with a square, non-empty kernel."""
    check_float_array(weight, name)
    check_ndim(weight, 4, name, "(out_channels, in_channels, k, k)")
    out_c, in_c, kh, kw = weight.shape
    if kh != kw:
        raise ValueError(f"{name} must have a square kernel; got shape {shape_str(weight.shape)}")
    if min(out_c, in_c, kh) == 0:
        raise ValueError(f"{name} is empty: shape {shape_str(weight.shape)}")


def check_bias(bias, out_channels: int, weight_shape, name: str = "bias"):
    """Bias must be a float vector ``(O,)`` matching the filter bank ``weight (O, C, k, k)``."""
    check_float_array(bias, name)
    if tuple(bias.shape) != (out_channels,):
        raise ValueError(
            f"{name} must have shape ({out_channels},) to match weight "
            f"{shape_str(weight_shape)}; got {shape_str(bias.shape)}"
        )


def check_kernel_fits(height: int, width: int, kernel: int, pad: int, where: str):
    """Raise ``ValueError`` if the kernel is larger than the padded input (empty output)."""
    if height + 2 * pad < kernel or width + 2 * pad < kernel:
        raise ValueError(
            f"{where}: kernel {kernel}x{kernel} is larger than the padded input "
            f"{height + 2 * pad}x{width + 2 * pad} (input {height}x{width}, pad {pad}), "
            "so the output would be empty (size 0)"
        )


def check_wrap_fits(height: int, width: int, pad: int, where: str):
    """Circular padding copies each margin from the opposite side: it needs ``pad <= H, W``."""
    if pad > height or pad > width:
        raise ValueError(
            f"{where}: circular padding {pad} is wider than the input {height}x{width}; a "
            "margin can wrap around at most once"
        )


def conv_geometry(
    x_shape, weight_shape, stride: int, pad: int, x_name: str = "x", padding_mode: str = "zeros"
) -> ConvGeometry:
    """Build the :class:`ConvGeometry` of ``x_shape`` filtered by ``weight_shape``, checking it.

    Raises ``ValueError`` on a channel mismatch, a kernel larger than the padded input, or a
    circular padding wider than the input.
    """
    n, c, h, w = x_shape
    out_c, in_c, k, _ = weight_shape
    if c != in_c:
        raise ValueError(
            f"{x_name} has {c} channel(s) (shape {shape_str(x_shape)}) but weight expects "
            f"{in_c} (shape {shape_str(weight_shape)})"
        )
    where = f"{x_name} of shape {shape_str(x_shape)}"
    check_kernel_fits(h, w, k, pad, where=where)
    if check_padding_mode(padding_mode) == "circular":
        check_wrap_fits(h, w, pad, where=where)
    return ConvGeometry(n, c, h, w, out_c, k, stride, pad, padding_mode)
