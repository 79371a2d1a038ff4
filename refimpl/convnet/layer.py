"""One layer of the ConvNet: filters, bias, stride, padding and the non-linearity h, Eq. (2.1).

``[F_k^(l) * I](x) = h( sum_{i, y} w_{i,y}^(l,k) [F_i^(l-1) * I](x + y) + b_{l,k} )``

The non-linearity is ReLU ``h(r) = max(0, r)`` (the paper's choice, which makes the model
piecewise Gaussian, Theorem 1), the identity for a linear layer (experiment 2's top filter),
or softplus ``h(r) = log(1 + e^r)``, the smooth non-linearity of section 9 under which
Proposition 2 survives and Theorem 1 does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from refimpl.backend import namespace_of, to_backend
from refimpl.conv.geometry import (
    ConvGeometry,
    check_bias,
    check_kernel_fits,
    check_stride_pad,
    check_weight,
)
from refimpl.validation import check_finite, shape_str


@dataclass(frozen=True)
class Activation:
    """A non-linearity ``h`` with its derivative ``h'`` (the activation variables, Eq. (9.1))."""

    name: str
    h: Callable
    h_prime: Callable
    piecewise_linear: bool


def _relu(xp, z):
    return xp.maximum(z, 0)


def _relu_prime(xp, z):
    """``delta = 1(z > 0)``, Eq. (6.4): a boolean array."""
    return z > 0


def _identity(xp, z):
    return z


def _ones_like(xp, z):
    return xp.ones(z.shape, dtype=bool)


def _softplus(xp, z):
    """Softplus ``h(z) = log(1 + e^z)``, elementwise, without overflow for large ``z`` (section 9)."""
    # BEGIN SOLUTION lesson 12
    return xp.logaddexp(0, z)
    # END SOLUTION


def _sigmoid(xp, z):
    """``h'(z)`` of softplus: the logistic ``1 / (1 + e^-z)``, elementwise, without overflow (Eq. (9.1))."""
    # BEGIN SOLUTION lesson 12
    # exp(-log(1 + e^-z)) = 1 / (1 + e^-z): logaddexp cannot overflow, and unlike
    # (1 + tanh(z/2)) / 2 it keeps its relative accuracy for very negative z (e^-40, not 0)
    return xp.exp(-xp.logaddexp(0, -z))
    # END SOLUTION


ACTIVATIONS = {
    "relu": Activation("relu", _relu, _relu_prime, True),
    "linear": Activation("linear", _identity, _ones_like, True),
    "softplus": Activation("softplus", _softplus, _sigmoid, False),
}


class LayerSpec(NamedTuple):
    """Architecture of one layer, for :meth:`refimpl.ConvNet.random`.

    ``out_channels`` filters of size ``kernel_size x kernel_size``, sub-sampling ``stride``,
    zero padding ``pad``, and a ReLU unless ``relu=False`` (a linear layer).
    """

    out_channels: int
    kernel_size: int
    stride: int = 1
    pad: int = 0
    relu: bool = True

    @classmethod
    def coerce(cls, spec) -> LayerSpec:
        """Accept a LayerSpec, a tuple ``(out_channels, kernel_size[, stride[, pad[, relu]]])`` or a dict."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if isinstance(spec, (tuple, list)):
            return cls(*spec)
        raise TypeError(
            "each layer spec must be a LayerSpec, a tuple (out_channels, kernel_size[, stride"
            f"[, pad[, relu]]]) or a dict with those keys; got {spec!r}"
        )


class ConvLayer:
    """A convolutional layer ``x -> h(conv(x, weight) + bias)`` with its own stride and padding.

    Args:
        weight: ``(N_l, N_{l-1}, k, k)`` float array (NumPy or CuPy); its dtype and backend
            become the layer's.
        bias: ``(N_l,)`` float array of the same dtype.
        stride: sub-sampling step (>= 1).
        pad: zero padding on every side (>= 0).
        relu: ReLU if True, identity (a linear layer) if False.
        activation: name of the non-linearity (``"relu"``, ``"linear"`` or ``"softplus"``);
            overrides ``relu`` when given.

    The arrays are held, not copied: learning updates them in place.
    """

    def __init__(
        self,
        weight,
        bias,
        stride: int = 1,
        pad: int = 0,
        relu: bool = True,
        activation: str | None = None,
    ):
        check_weight(weight, "weight")
        check_bias(bias, weight.shape[0], weight.shape, "bias")
        if bias.dtype != weight.dtype:
            raise TypeError(f"bias dtype {bias.dtype} differs from weight dtype {weight.dtype}")
        namespace_of(weight, bias)  # raises on mixed backends
        check_finite(weight, "weight")
        check_finite(bias, "bias")
        self.stride, self.pad = check_stride_pad(stride, pad)
        name = activation if activation is not None else ("relu" if relu else "linear")
        if name not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}")
        self.activation = ACTIVATIONS[name]
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
        return ConvGeometry(n, c, h, w, self.out_channels, self.kernel_size, self.stride, self.pad)

    def spec(self) -> LayerSpec:
        """The architecture of this layer (without its parameters)."""
        return LayerSpec(
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.pad,
            self.activation.name != "linear",
        )

    def with_parameters(self, weight, bias) -> ConvLayer:
        """A layer with the same architecture and new parameters."""
        return ConvLayer(weight, bias, self.stride, self.pad, activation=self.activation.name)

    def to(self, backend=None, dtype=None) -> ConvLayer:
        """A copy on ``backend`` (name or namespace; default: the current one) and/or in ``dtype``."""
        backend = self.xp if backend is None else backend
        return self.with_parameters(
            to_backend(self.weight.copy(), backend, dtype),
            to_backend(self.bias.copy(), backend, dtype),
        )

    def __repr__(self) -> str:
        return (
            f"ConvLayer({self.out_channels}x{self.in_channels}x{self.kernel_size}x{self.kernel_size}, "
            f"stride={self.stride}, pad={self.pad}, activation={self.activation.name!r}, "
            f"dtype={self.dtype})"
        )
