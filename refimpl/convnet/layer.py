"""One layer of the ConvNet: filters, bias, stride, padding and the non-linearity h, Eq. (2.1).

``[F_k^(l) * I](x) = h( sum_{i, y} w_{i,y}^(l,k) [F_i^(l-1) * I](x + y) + b_{l,k} )``

The non-linearity is ReLU ``h(r) = max(0, r)`` (the paper's choice, which makes the model
piecewise Gaussian, Theorem 1), the identity for a linear layer (experiment 2's top filter),
or softplus ``h(r) = log(1 + e^r)``, the smooth non-linearity of section 9 under which
Proposition 2 survives and Theorem 1 does not.
"""

from __future__ import annotations

from typing import NamedTuple

from refimpl.activations import ACTIVATIONS, get_activation
from refimpl.backend import namespace_of, to_backend
from refimpl.conv.geometry import (
    ConvGeometry,
    check_bias,
    check_kernel_fits,
    check_stride_pad,
    check_weight,
    check_wrap_fits,
)
from refimpl.conv.padding import check_padding_mode
from refimpl.validation import check_finite, shape_str


class LayerSpec(NamedTuple):
    """Architecture of one layer, for :meth:`refimpl.ConvNet.random`.

    ``out_channels`` filters of size ``kernel_size x kernel_size``, sub-sampling ``stride``,
    padding ``pad``, the non-linearity ``activation`` (``"relu"``, ``"linear"`` or
    ``"softplus"``; see :mod:`refimpl.activations`), and ``padding_mode``: ``"zeros"`` or
    ``"circular"`` (the image as one period of a periodic texture, :mod:`refimpl.conv.padding`).
    """

    out_channels: int
    kernel_size: int
    stride: int = 1
    pad: int = 0
    activation: str = "relu"
    padding_mode: str = "zeros"

    @property
    def relu(self) -> bool:
        return self.activation == "relu"

    @classmethod
    def coerce(cls, spec) -> LayerSpec:
        """A LayerSpec from a LayerSpec, a tuple or a dict.

        The tuple is ``(out_channels, kernel_size[, stride[, pad[, activation[,
        padding_mode]]]])``; the dict has those keys.

        A boolean in the activation's place (or a dict key ``relu``) is read as older
        configuration files wrote it: True is ``"relu"``, False is ``"linear"``.
        """
        if isinstance(spec, cls):
            pass
        elif isinstance(spec, dict):
            values = dict(spec)
            if "relu" in values:
                if "activation" in values:
                    raise ValueError(f"layer spec gives both 'relu' and 'activation': {spec!r}")
                values["activation"] = values.pop("relu")
            spec = cls(**values)
        elif isinstance(spec, (tuple, list)):
            spec = cls(*spec)
        else:
            raise TypeError(
                "each layer spec must be a LayerSpec, a tuple (out_channels, kernel_size[, stride"
                f"[, pad[, activation[, padding_mode]]]]) or a dict with those keys; got {spec!r}"
            )
        if isinstance(spec.activation, bool):  # older files: relu True/False
            spec = spec._replace(activation="relu" if spec.activation else "linear")
        get_activation(spec.activation)  # a clear error for an unknown name
        check_padding_mode(spec.padding_mode)
        return spec


class ConvLayer:
    """A convolutional layer ``x -> h(conv(x, weight) + bias)`` with its own stride and padding.

    Args:
        weight: ``(N_l, N_{l-1}, k, k)`` float array (NumPy or CuPy); its dtype and backend
            become the layer's.
        bias: ``(N_l,)`` float array of the same dtype.
        stride: sub-sampling step (>= 1).
        pad: padding on every side (>= 0).
        activation: name of the non-linearity, ``"relu"`` (default), ``"linear"`` or
            ``"softplus"`` (:mod:`refimpl.activations`).
        padding_mode: ``"zeros"`` (default) or ``"circular"`` (:mod:`refimpl.conv.padding`).

    The arrays are held, not copied: learning updates them in place.
    """

    def __init__(
        self,
        weight,
        bias,
        stride: int = 1,
        pad: int = 0,
        activation: str = "relu",
        padding_mode: str = "zeros",
    ):
        check_weight(weight, "weight")
        check_bias(bias, weight.shape[0], weight.shape, "bias")
        if bias.dtype != weight.dtype:
            raise TypeError(f"bias dtype {bias.dtype} differs from weight dtype {weight.dtype}")
        namespace_of(weight, bias)  # raises on mixed backends
        check_finite(weight, "weight")
        check_finite(bias, "bias")
        self.stride, self.pad = check_stride_pad(stride, pad)
        if not isinstance(activation, str):
            raise TypeError(
                f"activation must be a name ({', '.join(sorted(ACTIVATIONS))}); got {activation!r}"
            )
        self.activation = get_activation(activation)
        self.padding_mode = check_padding_mode(padding_mode)
        self.weight = weight
        self.bias = bias

    @property
    def relu(self) -> bool:
        return self.activation.name == "relu"

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[2]

    @property
    def dtype(self):
        return self.weight.dtype

    @property
    def xp(self):
        return namespace_of(self.weight)

    def geometry(self, input_shape, where: str) -> ConvGeometry:
        """The :class:`ConvGeometry` of this layer on ``input_shape (N, C, H, W)``.

        Raises ``ValueError`` (naming ``where``, e.g. "layer 2") if the kernel does not fit.
        """
        n, c, h, w = input_shape
        if c != self.in_channels:
            raise ValueError(
                f"{where} expects {self.in_channels} input channel(s) (weight "
                f"{shape_str(self.weight.shape)}) but receives {c}"
            )
        check_kernel_fits(h, w, self.kernel_size, self.pad, where=where)
        if self.padding_mode == "circular":
            check_wrap_fits(h, w, self.pad, where=where)
        return ConvGeometry(
            n,
            c,
            h,
            w,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.pad,
            self.padding_mode,
        )

    def spec(self) -> LayerSpec:
        """The architecture of this layer (without its parameters)."""
        return LayerSpec(
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.pad,
            self.activation.name,
            self.padding_mode,
        )

    def with_parameters(self, weight, bias) -> ConvLayer:
        """A layer with the same architecture and new parameters."""
        return ConvLayer(
            weight, bias, self.stride, self.pad, self.activation.name, self.padding_mode
        )

    def to(self, backend=None, dtype=None) -> ConvLayer:
        """A copy on ``backend`` (name or namespace; default: the current) and/or in ``dtype``."""
        backend = self.xp if backend is None else backend
        return self.with_parameters(
            to_backend(self.weight.copy(), backend, dtype),
            to_backend(self.bias.copy(), backend, dtype),
        )

    def __repr__(self) -> str:
        mode = f"padding_mode={self.padding_mode!r}, " if self.padding_mode != "zeros" else ""
        return (
            f"ConvLayer({self.out_channels}x{self.in_channels}x"
            f"{self.kernel_size}x{self.kernel_size}, "
            f"stride={self.stride}, pad={self.pad}, activation={self.activation.name!r}, "
            f"{mode}dtype={self.dtype})"
        )
