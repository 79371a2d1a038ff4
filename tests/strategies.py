"""Hypothesis strategies shared by every test: architectures, networks, images, conv problems.

Ranges: depth 1-4, channels 1-5, kernels 1-7, strides 1-3, padding 0-3, 1-3 image
channels, images up to 20 x 20. Arrays are drawn from a seeded NumPy generator (the seed
is what Hypothesis draws and shrinks), which keeps examples fast and reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from refimpl import ConvNet, LayerSpec
from refimpl.conv import conv_output_size

MAX_IMAGE = 20
MAX_KERNEL = 7
MAX_STRIDE = 3
MAX_PAD = 3
MAX_CHANNELS = 5
MAX_DEPTH = 4

seeds = st.integers(min_value=0, max_value=2**32 - 1)


@dataclass(frozen=True)
class Architecture:
    """Image shape plus layer specs, guaranteed valid (every layer output is non-empty)."""

    in_channels: int
    height: int
    width: int
    specs: tuple

    def image_shape(self, batch: int) -> tuple:
        return (batch, self.in_channels, self.height, self.width)


@st.composite
def layer_stacks(
    draw,
    in_channels: int,
    height: int,
    width: int,
    min_depth: int = 1,
    max_depth: int = MAX_DEPTH,
    allow_linear: bool = True,
):
    """Layer specs that fit an input of ``height x width``; the top layer may be linear."""
    depth = draw(st.integers(min_depth, max_depth))
    specs, h, w = [], height, width
    for l in range(depth):
        pad = draw(st.integers(0, MAX_PAD))
        kernel = draw(st.integers(1, min(MAX_KERNEL, h + 2 * pad, w + 2 * pad)))
        stride = draw(st.integers(1, MAX_STRIDE))
        out = draw(st.integers(1, MAX_CHANNELS))
        top = l == depth - 1
        relu = not (top and allow_linear and draw(st.booleans()))
        specs.append(LayerSpec(out, kernel, stride, pad, "relu" if relu else "linear"))
        h, w = conv_output_size(h, kernel, stride, pad), conv_output_size(w, kernel, stride, pad)
    return tuple(specs)


@st.composite
def architectures(
    draw,
    max_image: int = MAX_IMAGE,
    max_depth: int = MAX_DEPTH,
    min_depth: int = 1,
    allow_linear: bool = True,
):
    in_channels = draw(st.integers(1, 3))
    height = draw(st.integers(1, max_image))
    width = draw(st.integers(1, max_image))
    specs = draw(layer_stacks(in_channels, height, width, min_depth, max_depth, allow_linear))
    return Architecture(in_channels, height, width, specs)


# A small positive bias mean keeps deep random nets alive: with mean 0 about a quarter of
# drawn networks have every top unit off (f constant, gradients zero), where gradient and
# piece checks would pass vacuously. Tests still reject such examples with `alive`.
BIAS_MEAN = 0.1


@st.composite
def networks(draw, arch=None, dtype="float64", conv_impl="fast", bias_std=0.3, **arch_kwargs):
    """``(net, arch)``: a random ConvNet of architecture ``arch`` (drawn unless given).

    He weights, N(0.1, bias_std^2) biases.
    """
    arch = arch if arch is not None else draw(architectures(**arch_kwargs))
    net = ConvNet.random(
        arch.in_channels,
        arch.specs,
        seed=draw(seeds),
        dtype=dtype,
        bias_std=bias_std,
        conv_impl=conv_impl,
    )
    for layer in net.layers:
        layer.bias += BIAS_MEAN
    return net, arch


def alive(net, I) -> bool:
    """True if f depends on the image for every image of the batch (df/dI not all zero)."""
    grad = net.grad_input(I).reshape(len(I), -1)
    return bool(np.all(np.any(grad != 0, axis=1)))


@st.composite
def images(draw, shape, dtype="float64", scale: float = 1.0):
    """Standard normal images of ``shape`` (times ``scale``)."""
    rng = np.random.default_rng(draw(seeds))
    return (scale * rng.standard_normal(shape)).astype(dtype)


@st.composite
def net_and_images(draw, max_batch: int = 3, dtype="float64", **kwargs):
    """``(net, I)`` with ``I`` of shape ``(M, C, H, W)`` matching the net."""
    net, arch = draw(networks(dtype=dtype, **kwargs))
    batch = draw(st.integers(1, max_batch))
    return net, draw(images(arch.image_shape(batch), dtype=dtype))


@dataclass(frozen=True)
class ConvProblem:
    """One convolution: input, filters, bias, output-shaped probe ``y``, stride and padding."""

    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    y: np.ndarray
    stride: int
    pad: int


@st.composite
def conv_problems(draw, dtype="float64", max_image: int = MAX_IMAGE, max_batch: int = 2):
    """A random valid convolution problem within the ranges above."""
    batch = draw(st.integers(1, max_batch))
    c_in = draw(st.integers(1, MAX_CHANNELS))
    c_out = draw(st.integers(1, MAX_CHANNELS))
    pad = draw(st.integers(0, MAX_PAD))
    kernel = draw(st.integers(1, MAX_KERNEL))
    stride = draw(st.integers(1, MAX_STRIDE))
    low = max(1, kernel - 2 * pad)
    height = draw(st.integers(low, max(low, max_image)))
    width = draw(st.integers(low, max(low, max_image)))
    rng = np.random.default_rng(draw(seeds))
    x = rng.standard_normal((batch, c_in, height, width)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in, kernel, kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    out_h = conv_output_size(height, kernel, stride, pad)
    out_w = conv_output_size(width, kernel, stride, pad)
    y = rng.standard_normal((batch, c_out, out_h, out_w)).astype(dtype)
    return ConvProblem(x, weight, bias, y, stride, pad)


# --- prototype models (Eq. (5.1)) and reference standard deviations --------------------

# sigma of q = N(0, sigma^2 I): the paper's sigma = 1 and values a factor 4 either side, so
# that a missing or doubled power of sigma shows.
sigmas = st.floats(min_value=0.25, max_value=4.0, allow_nan=False, allow_infinity=False)

MAX_FILTERS = 5
MAX_DIM = 8


@st.composite
def prototypes(
    draw,
    max_filters: int = MAX_FILTERS,
    max_dim: int = MAX_DIM,
    dim=None,
    activation: str = "relu",
    bias_std: float = 1.0,
):
    """A random :class:`~refimpl.models.PrototypeModel`: K filters in R^D, N(0, 4 / D) weights.

    Weights of norm ~2 and N(0, bias_std^2) biases put the hyperplanes <I, w_k> + b_k = 0
    within a few units of the origin, so standard normal images see mixed patterns.
    """
    from refimpl.models import PrototypeModel

    n_filters = draw(st.integers(1, max_filters))
    dim = dim if dim is not None else draw(st.integers(1, max_dim))
    return PrototypeModel.random(
        n_filters, dim, seed=draw(seeds), scale=2.0, bias_std=bias_std, activation=activation
    )


@st.composite
def prototype_and_images(draw, max_batch: int = 4, scale: float = 1.0, **kwargs):
    """``(model, I)`` with ``I`` of shape ``(M, D)``, standard normal times ``scale``."""
    model = draw(prototypes(**kwargs))
    batch = draw(st.integers(1, max_batch))
    return model, draw(images((batch, model.dim), scale=scale))


def probes_in_piece(scoring, x, probes) -> bool:
    """True if every probe has the activation pattern of the single image ``x`` (no kink crossed).

    Works for any scoring function with ``activation_pattern`` (a ConvNet's list of layers
    or a prototype model's single array).
    """
    from refimpl.convnet.pieces import as_pattern_list, pattern_keys

    base = pattern_keys(as_pattern_list(scoring.activation_pattern(x[None])))
    keys = pattern_keys(as_pattern_list(scoring.activation_pattern(probes)))
    return bool((keys == base).all())


# --- fixed instances for negative controls -------------------------------------------------


def small_mixed_net():
    """A fixed 2-layer net, images whose patterns mix on and off units (for negative controls)."""
    from refimpl import ConvNet

    net = ConvNet.random(2, [(4, 3, 1, 1), (3, 3, 2, 0)], seed=3, bias_std=0.3)
    I = np.random.default_rng(4).standard_normal((2, 2, 9, 9))
    for delta in net.activation_pattern(I):
        assert 0 < delta.mean() < 1, "the negative controls need a mixed activation pattern"
    return net, I


def softplus_net(net):
    """The same network with softplus instead of ReLU (section 9's smooth h)."""
    from refimpl import ConvLayer, ConvNet

    return ConvNet(
        [ConvLayer(l.weight, l.bias, l.stride, l.pad, activation="softplus") for l in net.layers]
    )


@st.composite
def pool_problems(draw, max_image: int = 12, ties: bool = True):
    """``(x (N, C, H, W), size, stride, dy (N, C, Ho, Wo))`` for max pooling (section 9).

    With ``ties`` half the examples are rounded to a few distinct values, so windows with
    several maxima are common. ``Ho = (H - size) // stride + 1``, written out here rather than
    taken from refimpl.
    """
    size, stride = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(size, max_image)), draw(st.integers(size, max_image))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(seeds))
    x = rng.standard_normal((n, c, h, w))
    if ties and draw(st.booleans()):
        x = np.round(x)  # a few distinct values: many ties
    dy = rng.standard_normal((n, c, (h - size) // stride + 1, (w - size) // stride + 1))
    return x, size, stride, dy


def tiny_learning_config(**values):
    """A ``LearningConfig`` for the smallest runs that still go through Algorithm 1 (2
    iterations per layer, 2 chains, one Langevin step); ``values`` set or override fields."""
    from refimpl.learning import LearningConfig

    defaults = dict(
        iterations_per_layer=2,
        chains=2,
        langevin_steps=1,
        step_size=0.3,
        sigma=1.0,
        learning_rate=1e-3,
        init_std=0.1,
    )
    return LearningConfig(**{**defaults, **values})
