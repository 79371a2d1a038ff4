"""The Generative Max-Mahalanobis Classifier (GMMC) of Yang et al., on the ConvNet's top features.

An LDA model of the top features ``phi(x) (d,)`` with ``C`` pre-designed centres ``mu_y`` and
one shared isotropic covariance (Yang et al. (GMMC), section 3):

    p(phi(x) | y) = N(mu_y, gamma^2 I),   p(y) = 1 / C,
    E(x, y) = |phi(x) - mu_y|^2 / (2 gamma^2),   p(x, y) = exp(-E(x, y)) / Z       (Eqs. (4), (6))
    p(y | x) = exp(-E(x, y)) / sum_y' exp(-E(x, y'))                              (Eq. (11))

The centres are not learned: Algorithm 2 (Pang et al.'s max-Mahalanobis distribution) puts
them on a regular simplex, ``|mu_y| = S`` and ``<mu_y, mu_y'> = -S^2 / (C - 1)``, as far apart
as ``C`` points of norm ``S`` can be. Only the ConvNet ``phi`` is trained, three ways:

* discriminatively, Eq. (5): minimise ``E(x, y)`` on the data with ``Z`` taken as constant
  (the "self-normalised" approximation); ``gamma`` is then a constant absorbed in the
  learning rate, so training uses ``gamma = 1``;
* generatively, Eq. (7):
  ``d log p(x, y) / d theta = beta E_p[dE(x', y')/d theta] - dE(x, y)/d theta``, the model
  expectation estimated with samples ``(x', y')`` from a replay buffer refined by staged or
  noise-injected sampling (Algorithm 1, Eqs. (8)-(10); :mod:`refimpl.classify.sampling`);
* jointly: discriminative pre-training, then ``beta`` raised to its value (section 3.3).

After training, ``gamma^2 = (1/d) mean_i |phi(x_i) - mu_{y_i}|^2`` over the training set
(section 3.4) turns the energies into calibrated probabilities, Eq. (11).

The feature map must be able to reach every centre, and the centres have negative
coordinates (they sum to 0), so the network's top layer is linear (no ReLU).
"""

from __future__ import annotations

import math

from refimpl.backend import get_namespace, host_rng, namespace_of, resolve_dtype
from refimpl.classify.heads import Classifier, check_features, top_gradient
from refimpl.convnet import ConvNet
from refimpl.models.discriminative import check_labels, logsumexp
from refimpl.validation import check_float_array, shape_str

__all__ = [
    "GMMC",
    "discriminative_loss",
    "energies",
    "estimate_gamma",
    "generative_loss",
    "log_px",
    "mmc_centres",
    "target_energy",
]


def _check_centres(centres, d: int):
    check_float_array(centres, "centres")
    if centres.ndim != 2 or centres.shape[1] != d:
        raise ValueError(
            f"centres must have shape (n_classes, {d}) to match {d}-dimensional features; got "
            f"{shape_str(centres.shape)}"
        )


def _check_gamma(gamma) -> float:
    value = float(gamma)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"gamma must be a positive finite number; got {gamma!r}")
    return value


# --- Algorithm 2: the pre-designed centres ------------------------------------------------


def mmc_centres(n_classes: int, dim: int, scale: float = 10.0, dtype=None, backend=None):
    """The max-Mahalanobis centres ``mu (C, d)``, Yang et al. (GMMC) Algorithm 2 (appendix C).

    Start from ``mu_1 = e_1`` and ``mu_i = 0``; for ``i = 2..C`` fill coordinates ``j < i`` so that
    ``<mu_i, mu_j> = -1 / (C - 1)``:

        mu_i(j) = -[1 + <mu_i, mu_j> (C - 1)] / [mu_j(j) (C - 1)],   j = 1..i-1

    (``<mu_i, mu_j>`` uses the coordinates of ``mu_i`` filled so far), then
    ``mu_i(i) = sqrt(1 - |mu_i|^2)`` gives it norm 1; finally every centre is scaled by ``S``.
    For the last centre ``1 - |mu_C|^2`` is 0, and its square root would turn the rounding error
    of ``|mu_C|^2`` (1e-16) into a coordinate of 1e-8 (3e-4 in float32); it is set to 0.

    Args:
        n_classes: ``C >= 2``.
        dim: feature dimension ``d >= C - 1`` (the simplex needs ``C - 1`` dimensions).
        scale: ``S`` (the paper: 10), the norm of every centre.

    Returns:
        ``(C, d)``: ``|mu_y| = S``, ``<mu_y, mu_y'> = -S^2 / (C - 1)`` for ``y != y'``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2; got {n_classes!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < n_classes - 1:
        raise ValueError(
            f"dim must be an integer >= n_classes - 1 = {n_classes - 1} (the centres span a "
            f"{n_classes - 1}-dimensional simplex); got {dim!r}"
        )
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number; got {scale!r}")
    xp, dtype = get_namespace(backend), resolve_dtype(dtype)
    # BEGIN SOLUTION lesson 13
    C = n_classes
    mu = xp.zeros((C, dim), dtype=dtype)
    mu[0, 0] = 1.0
    for i in range(1, C):
        for j in range(i):
            mu[i, j] = -(1.0 + float(mu[i] @ mu[j]) * (C - 1)) / (float(mu[j, j]) * (C - 1))
        # the last centre is complete after its first C - 1 coordinates (|mu|^2 = 1 exactly);
        # Algorithm 2 read literally takes sqrt(1 - |mu|^2) = sqrt(rounding) ~ 1e-8 there
        if i < C - 1:
            mu[i, i] = math.sqrt(1.0 - float(mu[i] @ mu[i]))
    return scale * mu
    # END SOLUTION


# --- the energy and what is read off it ---------------------------------------------------


def energies(features, centres, gamma: float = 1.0):
    """``E(x_m, y) = |phi(x_m) - mu_y|^2 / (2 gamma^2)``, ``(M, d), (C, d) -> (M, C)``, Eq. (4).

    Computed as the squared norm of the difference, not ``|phi|^2 - 2 <phi, mu> + |mu|^2``,
    which loses every digit of a small distance to cancellation.
    """
    check_features(features)
    _check_centres(centres, features.shape[1])
    gamma = _check_gamma(gamma)
    # BEGIN SOLUTION lesson 13
    diff = features[:, None, :] - centres[None, :, :]
    return (diff * diff).sum(axis=2) / (2 * gamma**2)
    # END SOLUTION


def log_px(features, centres, gamma: float = 1.0):
    """``log p(x) + const = logsumexp_y(-E(x, y))``, ``(M,)``: GMMC's input density up to Z.

    ``p(x) = sum_y p(x, y) = sum_y exp(-E(x, y)) / Z`` (Eq. (6)); the first OOD score of
    section 4.3. The uniform prior's ``log C`` is part of the constant.
    """
    return logsumexp(-energies(features, centres, gamma), axis=1)


def estimate_gamma(features, centres, labels) -> float:
    """``gamma = sqrt((1/d) (1/N) sum_i |phi(x_i) - mu_{y_i}|^2)``, GMMC section 3.4.

    The maximum-likelihood variance of ``N(mu_y, gamma^2 I)`` given the features of the
    (training) examples and their labels.
    """
    check_features(features)
    _check_centres(centres, features.shape[1])
    check_labels(labels, features.shape[0], centres.shape[0])
    diff = features - centres[labels]
    return math.sqrt(float((diff * diff).sum()) / (features.shape[0] * features.shape[1]))


def target_energy(features, targets):
    """``(|phi - z|^2 / 2 (M,), its gradient phi - z (M, d))``: Eq. (8)'s energy for targets ``z``.

    GMMC's samplers pull ``phi(x')`` towards a target ``z_{x'}`` drawn from ``N(mu_y', gamma^2 I)``;
    the ``1 / gamma^2`` of Eq. (8) is absorbed in the step size.
    """
    check_features(features)
    if tuple(targets.shape) != tuple(features.shape):
        raise ValueError(
            f"targets must have the shape of the features {shape_str(features.shape)}; got "
            f"{shape_str(targets.shape)}"
        )
    diff = features - targets
    return 0.5 * (diff * diff).sum(axis=1), diff


# --- the training objectives, Eqs. (5) and (7) --------------------------------------------


def discriminative_loss(features, centres, labels):
    """Eq. (5) as a loss: ``(mean_m E(x_m, y_m), dloss/dphi (M, d))`` with ``gamma = 1``.

    ``-log p(x, y) = E(x, y) + log Z`` with ``Z`` held constant ("self-normalised"), averaged
    over the batch: ``|phi - mu_y|^2 / 2``, the centre regression loss of MMC. Its gradient
    is ``(phi_m - mu_{y_m}) / M``.
    """
    check_features(features)
    _check_centres(centres, features.shape[1])
    check_labels(labels, features.shape[0], centres.shape[0])
    # BEGIN SOLUTION lesson 13
    M = features.shape[0]
    diff = features - centres[labels]
    return float(0.5 * (diff * diff).sum()) / M, diff / M
    # END SOLUTION


def generative_loss(features, labels, sample_features, sample_labels, centres, beta: float = 0.5):
    """Eq. (7) as a loss, ``mean_m E(x_m, y_m) - beta mean_k E(x'_k, y'_k)``, and its gradients.

    Gradient descent on it is ascent along Eq. (7),
    ``beta E_p[dE(x', y')/d theta] - dE(x, y)/d theta``: push the energy of the data down and
    that of the model's samples ``(x', y')`` up (``gamma = 1`` as in Eq. (5)).

    Args:
        features: ``(M, d)`` of the data, labels ``(M,)``;
        sample_features: ``(K, d)`` of the samples, sample_labels ``(K,)``;
        centres: ``(C, d)``; beta: the balance factor (the paper: 0.5).

    Returns:
        ``(loss, dloss/dphi (M, d), dloss/dphi' (K, d))``.
    """
    check_features(features)
    check_features(sample_features, "sample_features")
    _check_centres(centres, features.shape[1])
    check_labels(labels, features.shape[0], centres.shape[0])
    check_labels(sample_labels, sample_features.shape[0], centres.shape[0], "sample_labels")
    beta = float(beta)
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a non-negative finite number; got {beta!r}")
    # BEGIN SOLUTION lesson 13
    M, K = features.shape[0], sample_features.shape[0]
    diff = features - centres[labels]
    diff_s = sample_features - centres[sample_labels]
    loss = float(0.5 * (diff * diff).sum()) / M - beta * float(0.5 * (diff_s * diff_s).sum()) / K
    return loss, diff / M, -beta * diff_s / K
    # END SOLUTION


# --- the classifier object ----------------------------------------------------------------


class GMMC(Classifier):
    """GMMC on a ConvNet: ``L_y(x) = -|phi(x) - mu_y|^2 / (2 gamma^2)``, Yang et al. Eqs. (4), (11).

    Args:
        net: the feature map ``phi`` (top layer linear, so that features reach every centre).
        centres: ``(C, d)`` pre-designed centres (:func:`mmc_centres`); fixed.
        gamma: the feature standard deviation; 1 while training, then :func:`estimate_gamma`.
    """

    def __init__(self, net: ConvNet, centres, gamma: float = 1.0):
        if not isinstance(net, ConvNet):
            raise TypeError(f"net must be a ConvNet; got {type(net).__name__}")
        _check_centres(centres, net.layers[-1].out_channels)
        namespace_of(centres, net.layers[0].weight)
        self.net = net
        self.centres = centres.astype(net.dtype, copy=False)
        self.gamma = _check_gamma(gamma)
        self.reference = None

    @classmethod
    def random(
        cls,
        in_channels: int,
        spec,
        n_classes: int,
        seed=None,
        scale: float = 10.0,
        dtype=None,
        backend=None,
    ) -> GMMC:
        """A He-initialised network (zero biases) and Algorithm 2's centres of norm ``scale``."""
        net = ConvNet.random(
            in_channels, spec, seed=host_rng(seed), dtype=dtype, backend=backend, bias_std=0
        )
        d = net.layers[-1].out_channels
        return cls(net, mmc_centres(n_classes, d, scale, dtype=dtype, backend=backend))

    @property
    def n_classes(self) -> int:
        return self.centres.shape[0]

    def with_parameters(self, params) -> GMMC:
        """The same architecture and centres with network parameters ``[(W_1, b_1), ...]``."""
        return GMMC(self.net.with_parameters(params), self.centres, self.gamma)

    def copy(self) -> GMMC:
        return self.with_parameters([(W.copy(), b.copy()) for W, b in self.net.parameters()])

    def with_gamma(self, gamma: float) -> GMMC:
        """The same network and centres with ``gamma`` (arrays shared)."""
        return GMMC(self.net, self.centres, gamma)

    def features(self, I):
        """``phi(I) (M, d)``."""
        return self.forward(I)[1]

    def energies(self, I):
        """``E(I, y) (M, C)`` with this model's ``gamma``."""
        return energies(self.features(I), self.centres, self.gamma)

    def _logits(self, phi):
        return -energies(phi, self.centres, self.gamma)

    def _logits_backward(self, phi, logit_grad):
        # d(-|phi - mu_y|^2 / 2 gamma^2)/dphi = -(phi - mu_y) / gamma^2, weighted by G[:, y]
        weight = logit_grad.sum(axis=1, keepdims=True)
        return -(weight * phi - logit_grad @ self.centres) / self.gamma**2

    def target_energy_and_grad(self, I, targets):
        """``(|phi(I) - z|^2 / 2 (M,), its gradient d/dI)``: what GMMC's samplers descend (8)."""
        I = self.net.prepare_images(I)
        fwd, phi, _ = self.forward(I)
        value, dphi = target_energy(phi, targets)
        grad = self.net.backward(fwd, top_gradient(fwd, dphi), want_params=False)[0]
        return value, grad
