"""Random instances for the checks: small models that are alive (f not constant) and varied.

Everything is drawn from one NumPy ``Generator``, so ``verify --seed N`` is reproducible
and every seed gives fresh instances. The models are placed on ``backend`` (default NumPy):
the same seed gives the same parameters on every backend.
"""

from __future__ import annotations

import numpy as np

from refimpl.backend import to_backend, to_numpy
from refimpl.convnet import ConvNet
from refimpl.models import GenerativeModel, PrototypeModel


def _seed(rng) -> int:
    return int(rng.integers(2**31))


def _alive(scoring, probes, min_fraction: float = 0.5) -> bool:
    """True if ``df/dI`` is non-zero on at least ``min_fraction`` of the host probe images."""
    grad = to_numpy(scoring.grad_input(to_backend(probes, scoring.xp, scoring.dtype)))
    grad = grad.reshape(len(probes), -1)
    return float(np.mean(np.any(grad != 0, axis=1))) >= min_fraction


def sigma(rng) -> float:
    """A reference standard deviation in [0.5, 2]: the checks hold for every sigma, not just 1."""
    return float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))


def prototype(
    rng, dim: int, n_filters: int, scale: float = 2.0, sig: float | None = None, backend=None
):
    """A generative prototype model (5.1) with ``n_filters`` filters in ``R^dim``."""
    sig = sigma(rng) if sig is None else sig
    while True:
        proto = PrototypeModel.random(
            n_filters, dim, seed=_seed(rng), scale=scale / sig, bias_std=1.0 / sig, backend=backend
        )
        if _alive(proto, sig * rng.standard_normal((64, dim))):
            return GenerativeModel(proto, sigma=sig)


def lowdim_convnet(
    rng, dim: int, widths=(4, 3), linear_top: bool = True, sig: float | None = None, backend=None
):
    """Multi-layer ConvNet on ``dim``-channel 1x1 images, an MLP in R^dim: ``(model, event_shape)``.

    The top layer is one unit, linear by default (as experiment 2's top filter), so ``f`` is
    a non-trivial piecewise-linear function of the ``dim`` pixel values.
    """
    sig = sigma(rng) if sig is None else sig
    spec = [(w, 1) for w in widths] + [(1, 1, 1, 0, not linear_top)]
    shape = (dim, 1, 1)
    while True:
        net = ConvNet.random(dim, spec, seed=_seed(rng), bias_std=0.5 / sig, backend=backend)
        for layer in net.layers[:-1]:
            layer.bias += 0.3 / sig
        if _alive(net, sig * rng.standard_normal((64,) + shape)):
            return GenerativeModel(net, sigma=sig), shape


def image_convnet(
    rng,
    channels: int = 1,
    size: int = 8,
    depth: int = 3,
    activation: str = "relu",
    sig: float | None = None,
    convex: bool = False,
    backend=None,
):
    """A small image ConvNet with strides and padding, for the image-space checks.

    ``convex=True`` makes every weight above the first layer non-negative: a ReLU of a
    non-negative combination of convex functions is convex, so ``f`` is convex in ``I``
    (like the prototype model's) and ``log p`` has no concave kinks.
    """
    from refimpl.convnet import ConvLayer

    sig = sigma(rng) if sig is None else sig
    choices = [(4, 3, 1, 1), (4, 3, 2, 0), (3, 2, 1, 0), (5, 3, 1, 1), (3, 3, 2, 1)]
    shape = (channels, size, size)
    while True:
        spec = [choices[int(i)] for i in rng.integers(len(choices), size=depth)]
        try:
            net = ConvNet.random(
                channels, spec, seed=_seed(rng), bias_std=0.3 / sig, backend=backend
            )
            net.geometries((1,) + shape)
        except ValueError:  # the spec does not fit the image; draw again
            continue
        for layer in net.layers:
            layer.bias += 0.1 / sig
        if convex:
            for layer in net.layers[1:]:
                layer.weight[...] = abs(layer.weight)
        if activation != "relu":
            net = ConvNet(
                [
                    ConvLayer(l.weight, l.bias, l.stride, l.pad, activation, l.padding_mode)
                    for l in net.layers
                ]
            )
        if _alive(net, sig * rng.standard_normal((16,) + shape)):
            return GenerativeModel(net, sigma=sig), shape
