"""Classifier heads on the ConvNet's top features, and the classifier objects built on them.

Every classifier here is a ConvNet ``I -> x^(L)`` (the engine, :class:`refimpl.ConvNet`)
followed by a head on its **top features**

    phi(I)_k = sum_x [F_k^(L) * I](x)          (M, d),  d = N_L

(the sum over positions of Eq. (3.5); with a 1 x 1 top map it is the map itself). A head
turns ``phi`` into class **logits** ``L (M, C)``, read three ways:

* ``p(y | I) = softmax_y L(I)``, the classifier (Xie et al., Eq. (2.3); Yang et al. (GMMC),
  Eq. (11));
* ``log p(I, y) = L_y(I) + log q(I) - log Z`` and ``log p(I) = logsumexp_y L_y(I) + log q(I)
  - log Z``, the generative reading, where ``q`` is the Gaussian reference of Xie et al.
  (Eq. (3.1), Proposition 1) when the model has one and 1 otherwise (JEM, GMMC);
* ``log p(I | y) = L_y(I) + log q(I) + const``, the class node that Dai, Lu & Wu (2015,
  supplementary section B) draw images from.

Two heads:

* :class:`SoftmaxClassifier`: ``L = phi W^T + b``, the class scores ``f_c`` of Eq. (2.2) plus
  the biases ``b_c`` of Eq. (2.3). With a reference ``q = N(0, sigma^2 I)`` it is Xie et al.'s
  discriminative ConvNet read generatively (Proposition 1(a): ``p(I | c) ~ exp(f_c(I)) q(I)``,
  ``b_c = log rho_c - log Z_c``); without one it is JEM's reading (Grathwohl et al.):
  ``p(I, y) ~ exp(f_y(I) + b_y)``.
* :class:`refimpl.classify.gmmc.GMMC`: ``L_y = -|phi - mu_y|^2 / (2 gamma^2)`` with the
  pre-designed max-Mahalanobis centres ``mu`` (Yang et al. (GMMC), Eqs. (4), (11)).

The gradients are hand-written: a head maps ``dl/dL`` to ``dl/dphi`` (and to its own
parameters), :func:`top_gradient` spreads ``dl/dphi`` over the top map's positions, and
:meth:`refimpl.ConvNet.backward` carries it down to the image and the filters.
"""

from __future__ import annotations

import math

from refimpl.backend import get_namespace, host_rng, namespace_of, random_normal, resolve_dtype
from refimpl.convnet import ConvNet
from refimpl.models.discriminative import (
    check_labels,
    log_softmax,
    logsumexp,
    one_hot,
)
from refimpl.models.reference import GaussianReference
from refimpl.validation import check_array, check_float_array, shape_str

__all__ = [
    "Classifier",
    "SoftmaxClassifier",
    "check_labels",
    "class_scores",
    "class_scores_backward",
    "features",
    "fit_biases",
    "logsumexp",
    "one_hot",
    "top_gradient",
]


# --- the top features and their gradient --------------------------------------------------


def features(fwd):
    """``phi_k = sum_x x^(L)_k(x)``: the top feature map summed over positions, ``(M, d)``."""
    return fwd.outputs[-1].sum(axis=(2, 3))


def top_gradient(fwd, feature_grad):
    """``dl/dx^(L)_k(x) = dl/dphi_k`` at every position ``x``: ``(M, d) -> (M, d, H_L, W_L)``."""
    top = fwd.outputs[-1]
    if tuple(feature_grad.shape) != tuple(top.shape[:2]):
        raise ValueError(
            f"feature_grad must have shape {shape_str(top.shape[:2])} (one entry per top "
            f"feature); got {shape_str(feature_grad.shape)}"
        )
    xp = namespace_of(top)
    return xp.broadcast_to(feature_grad[:, :, None, None], top.shape).astype(top.dtype)


# --- small shared pieces ------------------------------------------------------------------


def check_features(phi, name: str = "features"):
    """Top-layer features must be a finite float array ``(M, d)``."""
    check_array(phi, name, 2, "(M, d)")


# --- the softmax head, Xie et al. Eqs. (2.2)-(2.3) ----------------------------------------


def class_scores(features, weights, biases=None):
    """``S = phi W^T + b``: ``S[m, c] = f_c(I_m) + b_c`` (Xie et al., Eqs. (2.2)-(2.3)).

    Args:
        features: ``(M, d)`` top features ``phi``.
        weights: ``(C, d)``, row ``c`` is ``w_{c, .}`` of Eq. (2.2).
        biases: ``(C,)`` or None (zeros).

    Returns:
        ``(M, C)`` logits of the softmax (2.3).
    """
    check_features(features)
    check_float_array(weights, "weights")
    if weights.ndim != 2 or weights.shape[1] != features.shape[1]:
        raise ValueError(
            f"weights must have shape (n_classes, {features.shape[1]}) to match features "
            f"{shape_str(features.shape)}; got {shape_str(weights.shape)}"
        )
    scores = features @ weights.T
    if biases is not None:
        if tuple(biases.shape) != (weights.shape[0],):
            raise ValueError(
                f"biases must have shape ({weights.shape[0]},); got {shape_str(biases.shape)}"
            )
        scores = scores + biases[None, :]
    return scores


def class_scores_backward(features, weights, score_grad):
    """The chain rule through ``S = phi W^T + b``: ``(dl/dW (C, d), dl/db (C,), dl/dphi (M, d))``.

    ``dl/dW = G^T phi``, ``dl/db = sum_m G[m]``, ``dl/dphi = G W`` for ``G = dl/dS (M, C)``.
    """
    if tuple(score_grad.shape) != (features.shape[0], weights.shape[0]):
        raise ValueError(
            f"score_grad must have shape ({features.shape[0]}, {weights.shape[0]}); got "
            f"{shape_str(score_grad.shape)}"
        )
    return score_grad.T @ features, score_grad.sum(axis=0), score_grad @ weights


def fit_biases(scores, labels, max_iter: int = 100, tol: float = 1e-12):
    """The intercepts ``b (C,)`` that maximise ``l_D(S + b)`` with the scores ``S (M, C)`` fixed.

    Generative training (Dai, Lu & Wu, supplementary A; Xie et al., Eq. (3.1)) leaves the
    biases undetermined: ``l_G`` does not change when a constant is added to one class's
    scores. Proposition 1(a) says what they should be, ``b_c = log rho_c - log Z_c``, and the
    supplementary what to do: "continue to adjust them (probably the intercepts for different
    y) to satisfy the discriminative constraint". ``l_D`` is concave in ``b``; damped Newton
    steps (the Hessian ``-sum_m (diag p_m - p_m p_m^T)`` is singular along ``(1, ..., 1)``, so
    its pseudo-inverse) reach the maximum, where ``sum_m p(c | x_m) = n_c`` for every class.

    Returns:
        ``b (C,)`` with mean 0 (the direction ``l_D`` cannot see).
    """
    from refimpl.models.discriminative import discriminative_log_likelihood

    xp = namespace_of(scores)
    check_labels(labels, scores.shape[0], scores.shape[1])
    n, C = scores.shape
    target = one_hot(labels, C, scores).mean(axis=0)
    b = xp.zeros(C, dtype=scores.dtype)
    value = discriminative_log_likelihood(scores, labels)
    for _ in range(max_iter):
        p = xp.exp(log_softmax(scores + b[None, :], axis=1))
        g = target - p.mean(axis=0)
        if float(abs(g).max()) <= tol:
            break
        H = xp.diag(p.mean(axis=0)) - p.T @ p / n  # minus the Hessian of l_D / n
        step = xp.linalg.pinv(H) @ g
        # near the maximum l_D changes by ~|g|^2, below its own rounding (~eps |l_D|): a step
        # that does not lower it beyond that is taken, so Newton can reach tol
        slack = 8 * float(xp.finfo(scores.dtype).eps) * abs(value)
        for _ in range(50):  # halve until l_D does not decrease
            new = discriminative_log_likelihood(scores + (b + step)[None, :], labels)
            if new >= value - slack:
                break
            step = step / 2
        else:
            break  # no ascent left at this precision
        b, value = b + step, new
    return b - b.mean()


# --- the classifier objects ---------------------------------------------------------------


class Classifier:
    """What every classifier shares: a ConvNet, a head ``phi -> L``, an optional reference ``q``.

    Subclasses define ``_logits(phi) -> (M, C)``, ``_logits_backward(phi, dL) -> dphi`` and
    ``head_parameters()``. Images are ``(M, C_in, H, W)`` on the network's backend.
    """

    net: ConvNet
    reference: GaussianReference | None = None

    # --- description
    @property
    def xp(self):
        return self.net.xp

    @property
    def dtype(self):
        return self.net.dtype

    @property
    def n_classes(self) -> int:
        raise NotImplementedError

    def parameters(self) -> list:
        """``[(W_1, b_1), ..., (W_L, b_L)]`` of the network, then the head's trained pairs."""
        return self.net.parameters() + self.head_parameters()

    def head_parameters(self) -> list:
        return []

    # --- the logits and their readings
    def forward(self, I):
        """``(fwd, phi (M, d), L (M, C))`` from one forward pass."""
        fwd = self.net.forward(I)
        phi = features(fwd)
        return fwd, phi, self._logits(phi)

    def logits(self, I):
        """``L (M, C)``: ``log p(I, y) + log Z - log q(I)``; ``p(y | I) = softmax_y L``."""
        return self.forward(I)[2]

    def log_probs(self, I):
        """``log p(y | I)``, ``(M, C)``: the log-softmax of the logits (Eq. (2.3), GMMC (11))."""
        return log_softmax(self.logits(I), axis=1)

    def probs(self, I):
        """``p(y | I)``, ``(M, C)``; rows sum to 1."""
        return self.xp.exp(self.log_probs(I))

    def log_q(self, I):
        """``log q(I)`` per image (0 without a reference), ``(M,)``."""
        if self.reference is None:
            return self.xp.zeros(I.shape[0], dtype=self.dtype)
        return self.reference.log_density(I)

    def log_px(self, I):
        """``log p(I) + log Z = logsumexp_y L_y(I) + log q(I)``, ``(M,)``: the density up to Z."""
        return logsumexp(self.logits(I), axis=1) + self.log_q(I)

    def _input_gradient(self, fwd, phi, logit_grad):
        """``d/dI`` of ``sum_{m,c} G[m, c] L[m, c]`` for ``G = logit_grad (M, C)``."""
        dphi = self._logits_backward(phi, logit_grad)
        return self.net.backward(fwd, top_gradient(fwd, dphi), want_params=False)[0]

    def log_px_and_grad(self, I):
        """``(log p(I) + log Z (M,), d log p(I) / dI (M, C_in, H, W))``, one forward and backward.

        ``d logsumexp_y L_y / dphi = sum_y p(y | I) dL_y/dphi``, plus ``-I / sigma^2`` from ``q``.
        """
        I = self.net.prepare_images(I)
        fwd, phi, L = self.forward(I)
        grad = self._input_gradient(fwd, phi, self.xp.exp(log_softmax(L, axis=1)))
        value = logsumexp(L, axis=1) + self.log_q(I)
        if self.reference is not None:
            grad = grad + self.reference.grad_log_density(I)
        return value, grad

    def nll_and_grad(self, I, labels):
        """``(-log p(y_m | I_m) (M,), its gradient d/dI (M, C_in, H, W))``: the loss PGD ascends.

        ``d(-log softmax_y L)/dL = p(. | I) - 1(. = y)``.
        """
        I = self.net.prepare_images(I)
        check_labels(labels, I.shape[0], self.n_classes)
        fwd, phi, L = self.forward(I)
        logp = log_softmax(L, axis=1)
        rows = self.xp.arange(I.shape[0])
        onehot = one_hot(labels, self.n_classes, L)
        grad = self._input_gradient(fwd, phi, self.xp.exp(logp) - onehot)
        return -logp[rows, labels], grad

    def logits_and_grad(self, I, labels):
        """``(L_{y_m}(I_m) (M,), dL_{y_m}/dI_m (M, C_in, H, W))``: each image's own class node.

        The class nodes of Dai, Lu & Wu (2015, supplementary section B), without the reference:
        ``log p(I | y) = L_y(I) + log q(I) + const``.
        """
        I = self.net.prepare_images(I)
        check_labels(labels, I.shape[0], self.n_classes)
        fwd, phi, L = self.forward(I)
        onehot = one_hot(labels, self.n_classes, L)
        return L[self.xp.arange(I.shape[0]), labels], self._input_gradient(fwd, phi, onehot)

    # --- head interface
    def _logits(self, phi):
        raise NotImplementedError

    def _logits_backward(self, phi, logit_grad):
        raise NotImplementedError


class SoftmaxClassifier(Classifier):
    """The discriminative ConvNet ``p(c | I) = softmax_c(f_c(I) + b_c)``, Xie et al. (2.2)-(2.3).

    Args:
        net: the ConvNet; its top features ``phi (M, d)`` (ReLU, as in Eq. (2.2)).
        weights: ``(C, d)`` class weights ``w_{c,k}``; biases: ``(C,)`` ``b_c``.
        sigma: standard deviation of the reference ``q = N(0, sigma^2 I)`` when the classifier
            is read as a generative model (Xie et al., Eq. (3.1), Proposition 1;
            ``p(I | c) ~ exp(f_c(I)) q(I)``), or None for JEM's reading without a reference.

    The arrays are held, not copied: training updates them in place.
    """

    def __init__(self, net: ConvNet, weights, biases, sigma: float | None = None):
        if not isinstance(net, ConvNet):
            raise TypeError(f"net must be a ConvNet; got {type(net).__name__}")
        d = net.layers[-1].out_channels
        check_float_array(weights, "weights")
        if weights.ndim != 2 or weights.shape[1] != d:
            raise ValueError(
                f"weights must have shape (n_classes, {d}) (the network has {d} top features); "
                f"got {shape_str(weights.shape)}"
            )
        check_float_array(biases, "biases")
        if tuple(biases.shape) != (weights.shape[0],):
            raise ValueError(
                f"biases must have shape ({weights.shape[0]},); got {shape_str(biases.shape)}"
            )
        namespace_of(weights, biases, net.layers[0].weight)
        self.net = net
        self.weights = weights.astype(net.dtype, copy=False)
        self.biases = biases.astype(net.dtype, copy=False)
        self.reference = None if sigma is None else GaussianReference(sigma)

    @classmethod
    def random(
        cls,
        in_channels: int,
        spec,
        n_classes: int,
        seed=None,
        sigma: float | None = None,
        dtype=None,
        backend=None,
    ) -> SoftmaxClassifier:
        """He-initialised network (zero biases), class weights ``N(0, 1/d)``, ``b = 0``."""
        rng = host_rng(seed)
        net = ConvNet.random(in_channels, spec, seed=rng, dtype=dtype, backend=backend, bias_std=0)
        d = net.layers[-1].out_channels
        weights = random_normal((n_classes, d), 1 / math.sqrt(d), rng, net.xp, net.dtype)
        biases = get_namespace(backend).zeros(n_classes, dtype=resolve_dtype(dtype))
        return cls(net, weights, biases, sigma)

    @property
    def sigma(self) -> float | None:
        return None if self.reference is None else self.reference.sigma

    @property
    def n_classes(self) -> int:
        return self.weights.shape[0]

    def head_parameters(self) -> list:
        return [(self.weights, self.biases)]

    def with_parameters(self, params) -> SoftmaxClassifier:
        """The same architecture with ``[(W_1, b_1), ..., (W_L, b_L), (weights, biases)]``."""
        params = list(params)
        if len(params) != self.net.depth + 1:
            raise ValueError(
                f"expected {self.net.depth + 1} (weight, bias) pairs (the layers, then the "
                f"class weights and biases); got {len(params)}"
            )
        weights, biases = params[-1]
        return SoftmaxClassifier(self.net.with_parameters(params[:-1]), weights, biases, self.sigma)

    def copy(self) -> SoftmaxClassifier:
        return self.with_parameters([(W.copy(), b.copy()) for W, b in self.parameters()])

    def with_biases(self, biases) -> SoftmaxClassifier:
        """The same network and class weights with new biases ``b_c`` (arrays shared)."""
        return SoftmaxClassifier(self.net, self.weights, biases, self.sigma)

    def _logits(self, phi):
        return class_scores(phi, self.weights, self.biases)

    def _logits_backward(self, phi, logit_grad):
        return logit_grad @ self.weights
