"""Algorithm 1 and contrastive divergence as pure functions: one learning iteration, piece by piece.

Xie et al., section 7. One iteration of Algorithm 1 (Eqs. (7.2)-(7.4)):

1. :func:`synthesize`: ``L`` Langevin steps (6.10) from the current chains ``I~`` (maximum
   likelihood: persistent chains, started at 0; contrastive divergence: restarted at the
   observed images every iteration), with given noise;
2. :func:`moment_mismatch`: ``H_obs - H_syn``, the data's average ``df/dw`` minus the
   synthesised images' (the Monte Carlo estimate of the log-likelihood gradient (7.2));
3. :func:`scaled_gradient`: per layer, divided by its output area and clipped as configured;
4. an ascent step ``w <- w + eta (H_obs - H_syn)`` (:mod:`refimpl.learning.optimizers`).

:func:`learning_iteration` composes 1-3 and reports the statistics of the iteration; it does
not change its arguments. :func:`grow` builds the network of a growing stage (section 8),
:func:`top_filter` experiment 2's fully connected top. The run-level parts (the optimizer's
state, checkpoints, divergence, history) are :class:`~refimpl.learning.trainer.Trainer`'s.

Gradients are lists ``[(dW_1, db_1), ..., (dW_L, db_L)]`` shaped like the parameters;
"sums" are over a batch, as :meth:`refimpl.ConvNet.grad_params` returns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from refimpl.backend import host_rng, namespace_of, random_normal
from refimpl.convnet import ConvLayer, ConvNet, LayerSpec
from refimpl.models import GenerativeModel
from refimpl.models.reference import squared_norm
from refimpl.sampling import langevin

# --- the gradient: moment mismatch, Eqs. (7.2)-(7.4) ----------------------------------------


def moment_mismatch(sums_obs, sums_syn, n_obs: int, n_syn: int) -> list:
    """``H_obs - H_syn`` per layer, Eqs. (7.2)-(7.4).

    ``H_obs = (1/M) sum_m df(I_m)/dw`` and ``H_syn = (1/M~) sum_m df(I~_m)/dw``: at the
    maximum-likelihood estimate the model reproduces, per filter, how often it fires and the
    average patch it fires on.

    Args:
        sums_obs: ``[(dW, db), ...]``, ``sum_m df(I_m)/dw`` over the ``n_obs`` observed images.
        sums_syn: the same over the ``n_syn`` synthesised images.

    Returns:
        ``[(W_obs / n_obs - W_syn / n_syn, b_obs / n_obs - b_syn / n_syn), ...]``.
    """
    # BEGIN SOLUTION lesson 8
    return [
        (w_o / n_obs - w_s / n_syn, b_o / n_obs - b_s / n_syn)
        for (w_o, b_o), (w_s, b_s) in zip(sums_obs, sums_syn)
    ]
    # END SOLUTION


def _pair_norm(pair) -> float:
    W, b = pair
    xp = namespace_of(W, b)
    return float(xp.sqrt((W * W).sum() + (b * b).sum()))


def relative_mismatch(mismatch, sums_obs, n_obs: int) -> list:
    """``|H_obs - H_syn| / |H_obs|`` per layer (0 when both vanish, inf when only ``H_obs`` does).

    Args:
        mismatch: :func:`moment_mismatch`'s output.
        sums_obs: ``[(dW, db), ...]`` summed over the ``n_obs`` observed images.
    """
    out = []
    for diff, (w_o, b_o) in zip(mismatch, sums_obs):
        gap, ref = _pair_norm(diff), _pair_norm((w_o / n_obs, b_o / n_obs))
        out.append(gap / ref if ref > 0 else (0.0 if gap == 0 else math.inf))
    return out


def scaled_gradient(mismatch, areas, normalise_by_area: bool = True, clip=None) -> list:
    """The ascent direction per layer: ``H_obs - H_syn``, divided by the layer's area, clipped.

    Args:
        mismatch: ``[(dW, db), ...]`` from :func:`moment_mismatch`.
        areas: ``[H_l * W_l, ...]``, each layer's output feature-map area.
        normalise_by_area: divide layer ``l`` by ``H_l W_l`` (the sum over positions in
            (7.3)-(7.4) grows with the area; dividing lets one learning rate fit every layer).
        clip: None, or a positive bound: a layer whose ``sqrt(|dW|^2 + |db|^2)`` exceeds it
            is scaled down to norm ``clip``.

    Returns:
        ``[(gW, gb), ...]`` shaped like the parameters.
    """
    # BEGIN SOLUTION lesson 8
    out = []
    for (gW, gb), area in zip(mismatch, areas):
        if normalise_by_area:
            gW, gb = gW / area, gb / area
        if clip is not None:
            norm = _pair_norm((gW, gb))
            if norm > clip:
                gW, gb = gW * (clip / norm), gb * (clip / norm)
        out.append((gW, gb))
    return out
    # END SOLUTION


def output_areas(net: ConvNet, image_shape) -> list:
    """``[H_l * W_l, ...]``: each layer's output area for images ``(M, C, H, W)``."""
    return [g.out_height * g.out_width for g in net.geometries(image_shape)]


# --- synthesis and the quantities a run reports -------------------------------------------


def synthesize(net: ConvNet, sigma: float, data, chains, method: str, step_size: float, noise):
    """Step 1 of an iteration: ``L`` Langevin steps (6.10) with the given noise.

    ``I <- I + (eps^2 / 2)(B_{w,delta(I)} - I / sigma^2) + eps Z_t`` for the draws
    ``noise (L, M~, C, H, W)``, started at the persistent ``chains (M~, C, H, W)`` for
    maximum likelihood (``method="ml"``, Algorithm 1), or at the observed ``data`` for
    contrastive divergence (``"cd"``: the chains restart at the data every iteration).

    Raises:
        FloatingPointError: a chain became NaN or inf (the message names the step size).
    """
    # BEGIN SOLUTION lesson 11
    start = data if method == "cd" else chains
    model = GenerativeModel(net, sigma)
    return langevin(model, start, len(noise), step_size, noise=noise).samples
    # END SOLUTION


def on_torus(net: ConvNet) -> ConvNet:
    """The same network, sharing its parameter arrays, with circular padding on every layer.

    The stationary extension of a learned energy: every term of ``f`` (Eq. (3.5)) whose
    window lies inside the image is unchanged, and the terms at the border see the image
    wrapped around instead of zeros, so its samples have no border (and tile).
    """
    layers = [
        ConvLayer(l.weight, l.bias, l.stride, l.pad, l.activation.name, "circular")
        for l in net.layers
    ]
    return ConvNet(layers, conv_impl=net.conv_impl)


def torus_samples(net: ConvNet, sigma: float, chains, n_steps: int, step_size: float, rng):
    """``chains (M~, C, H, W)`` continued for ``n_steps`` Langevin steps (6.10) on the torus.

    The model is :func:`on_torus` of ``net`` with the reference ``q = N(0, sigma^2 I)``;
    ``rng`` draws the noise. What a run writes as its samples when ``torus_steps > 0``.
    """
    model = GenerativeModel(on_torus(net), sigma)
    return langevin(model, chains, n_steps, step_size, rng=rng).samples


def mean_langevin_step(model, I, step_size: float):
    """``I + (eps^2 / 2)(B - I / sigma^2)``: one Langevin step (7.8) with the noise at its mean 0.

    The noise-free step of contrastive divergence in Proposition 3; ``(M, ...)`` in and out.
    """
    # BEGIN SOLUTION lesson 11
    return I + 0.5 * step_size**2 * model.grad_log_density(I)
    # END SOLUTION


def reconstruction_loss(scoring, pattern, I_obs, sigma: float) -> float:
    """``R(w) = sum_m |I_m - sigma^2 B_{w,delta_m}|^2 / 2`` at fixed patterns ``delta_m``.

    Proposition 3, Eqs. (7.5)-(7.9): one-step contrastive divergence follows
    ``-(eps^2 / (2 sigma^4)) dR/dw``; at a fixed pattern ``R`` is a polynomial in ``w``.

    Args:
        scoring: a piecewise-linear scoring function (ConvNet or prototype model).
        pattern: the activation patterns, as ``scoring.activation_pattern`` returns them.
        I_obs: ``(M, ...)`` the observed images.
    """
    # BEGIN SOLUTION lesson 11
    xp = namespace_of(I_obs)
    _, B = scoring.piece_from_pattern(pattern, I_obs.shape[1:])
    return 0.5 * float(squared_norm(I_obs - sigma**2 * xp.asarray(B)).sum())
    # END SOLUTION


def relative_reconstruction_error(model, images) -> float:
    """Mean over ``images (M, ...)`` of ``|I - sigma^2 B_{w,delta(I)}| / |I|``.

    How far each image is from auto-encoding itself (Propositions 2-3): 0 at a mode of ``p``.
    """
    xp = namespace_of(images)
    recon = model.piece_mean(images)
    return float(xp.sqrt(squared_norm(images - recon) / squared_norm(images)).mean())


def mean_energy(net: ConvNet, sigma: float, images, scores=None) -> float:
    """Mean of ``U(I) = -f(I) + |I|^2 / (2 sigma^2)`` over ``images`` (``p ~ exp(-U)``)."""
    f = net.score(images) if scores is None else scores
    return float((-f + squared_norm(images) / (2 * sigma**2)).mean())


# --- one iteration ---------------------------------------------------------------------------


@dataclass
class Iteration:
    """What one learning iteration computed (nothing in it is applied yet).

    ``chains``: the synthesised images ``(M~, C, H, W)``; ``mismatch``: ``H_obs - H_syn`` per
    layer; ``gradient``: the scaled ascent direction per layer; ``relative_mismatch``,
    ``energy_data``, ``energy_samples``, ``reconstruction_error``: the statistics a run
    records (before the update).
    """

    chains: object
    mismatch: list
    gradient: list
    relative_mismatch: list
    energy_data: float
    energy_samples: float
    reconstruction_error: float


def learning_iteration(
    net: ConvNet,
    data,
    chains,
    noise,
    sigma: float,
    step_size: float,
    method: str = "ml",
    normalise_by_area: bool = True,
    clip=None,
) -> Iteration:
    """One iteration of Algorithm 1 (``method="ml"``) or of contrastive divergence (``"cd"``).

    Steps 1-3 of the module docstring: synthesise from ``chains`` (ML) or from ``data``
    (CD) with the given ``noise (L, M~, C, H, W)``, then ``H_obs - H_syn`` by backprop, then
    the scaled ascent direction. Pure: the caller applies the step (e.g.
    :func:`refimpl.learning.optimizers.sgd_step`) and keeps the new chains.

    Args:
        net: the current network.
        data: ``(M, C, H, W)`` observed images (scaled and centred).
        chains: ``(M~, C, H, W)`` the persistent chains (ignored by CD, whose chains are the data).
        noise: ``(L, M~, C, H, W)`` standard normal draws for the ``L`` Langevin steps.
    """
    if method not in ("ml", "cd"):
        raise ValueError(f"method must be 'ml' or 'cd'; got {method!r}")
    samples = synthesize(net, sigma, data, chains, method, step_size, noise)
    f_obs, sums_obs = net.score_and_grad_params(data)
    f_syn, sums_syn = net.score_and_grad_params(samples)
    mismatch = moment_mismatch(sums_obs, sums_syn, len(data), len(samples))
    return Iteration(
        chains=samples,
        mismatch=mismatch,
        gradient=scaled_gradient(mismatch, output_areas(net, data.shape), normalise_by_area, clip),
        relative_mismatch=relative_mismatch(mismatch, sums_obs, len(data)),
        energy_data=mean_energy(net, sigma, data, f_obs),
        energy_samples=mean_energy(net, sigma, samples, f_syn),
        reconstruction_error=relative_reconstruction_error(GenerativeModel(net, sigma), data),
    )


# --- growing the network, section 8 ---------------------------------------------------------


def new_layer(
    spec: LayerSpec, in_channels: int, std: float, seed: int, index: int, stage: int, xp, dtype
) -> ConvLayer:
    """A fresh layer for ``spec``: weights ``N(0, std^2)``, biases 0.

    The weights come from a generator seeded by ``(seed, index, stage)``, so a layer drawn
    at a given stage is the same in every run and on every backend (drawn on the host).
    """
    spec = LayerSpec.coerce(spec)
    rng = host_rng([int(seed), int(index), int(stage)])
    shape = (spec.out_channels, in_channels, spec.kernel_size, spec.kernel_size)
    weight = random_normal(shape, std, rng, xp, dtype)
    bias = xp.zeros((spec.out_channels,), dtype=weight.dtype)
    return ConvLayer(weight, bias, spec.stride, spec.pad, spec.activation, spec.padding_mode)


def active_conv_layers(config, stage: int) -> int:
    """How many layers of ``config.spec`` are learned at growing stage ``stage`` (1-based)."""
    return stage if config.grow else len(config.spec)


def top_filter(layers, channels: int, image_shape, config, stage: int, xp, dtype) -> ConvLayer:
    """Experiment 2's single fully connected linear filter over the top feature map, Eq. (4.2).

    Its kernel covers the whole ``H x W`` map that ``layers`` produce on images
    ``image_shape (M, C, H, W)`` (one output position), it has no ReLU, and it is new at every
    growing stage, because the map below changes as layers are grown. It is layer
    ``len(config.spec)`` for the initial scale and the seed.
    """
    # BEGIN SOLUTION lesson 10
    _, height, width = ConvNet(layers).feature_shapes(image_shape)[-1]
    if height != width:
        raise ValueError(f"the top filter needs a square feature map; got {height}x{width}")
    index = len(config.spec)
    std = config.init_std_of(index, channels * height * width)
    spec = LayerSpec(1, height, 1, 0, "linear")
    return new_layer(spec, channels, std, config.seed, index, stage, xp, dtype)
    # END SOLUTION


def grow(net, config, stage: int, image_shape, xp, dtype) -> ConvNet:
    """The network of growing stage ``stage``: keep the learned conv layers, add the new ones.

    Section 8: layer 1 is learned first, then layers 1-2, and so on (all of them at once when
    ``config.grow`` is False). The layers of ``net`` (the previous stage's network, or None
    at stage 1) are kept as they are (the very objects); the next layers of ``config.spec``
    are drawn by :func:`new_layer` with ``config``'s initial scale; with ``config.top_filter``
    a new :func:`top_filter` goes on top.

    Args:
        image_shape: ``(M, C, H, W)`` of the training images; a layer that does not fit
            raises ``ValueError`` now, naming the layer.
    """
    # BEGIN SOLUTION lesson 9
    n_keep = 0 if net is None else active_conv_layers(config, stage - 1)
    layers = [] if net is None else list(net.layers[:n_keep])
    channels = image_shape[1] if not layers else layers[-1].out_channels
    for index in range(n_keep, active_conv_layers(config, stage)):
        spec = config.spec[index]
        fan_in = channels * spec.kernel_size**2
        std = config.init_std_of(index, fan_in)
        layers.append(new_layer(spec, channels, std, config.seed, index, stage, xp, dtype))
        channels = spec.out_channels
    if config.top_filter:
        layers.append(top_filter(layers, channels, image_shape, config, stage, xp, dtype))
    grown = ConvNet(layers)
    grown.geometries(image_shape)  # a clear error now if the image is too small
    return grown
    # END SOLUTION
