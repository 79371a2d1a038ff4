"""The common mistakes the comparison recognises, each as a deliberately wrong variant of refimpl.

Public implementations of the generative ConvNet disagree on a handful of conventions. When
a user's array fails, the comparison recomputes the case with each mistake that applies to
it and reports the ones whose result the user's array matches (to the same tolerance). The
variants are built from refimpl's own functions with one thing changed, so each mistake is
exactly one change:

* ``flip``: true convolution instead of the cross-correlation of Xie et al., Eq. (2.1)
  (every filter flipped in both spatial axes; weight-shaped results flipped back);
* ``relu-mask``: backprop that forgets the ReLU mask ``delta = 1(z > 0)`` (Eq. (6.4)) on the
  way down, i.e. the gradient of the network with every ReLU replaced by the identity below
  the forward values (:class:`UnmaskedBackprop`);
* ``drift-eps2``, ``drift-eps``, ``drift-one``: the Langevin drift ``c * d log p / dI`` with
  ``c = eps^2``, ``eps`` or ``1`` instead of ``eps^2 / 2`` (Eq. (6.10));
* ``sigma-one``: the reference term ``-I / sigma^2`` taken with ``sigma = 1``;
* ``noise-unscaled``: the noise added as ``Z`` instead of ``eps Z``;
* ``no-metropolis``: MALA without its accept/reject step (every proposal accepted);
* ``descent``: the update ``w - eta (H_obs - H_syn)`` instead of the ascent of Eq. (7.2);
* ``area``: each layer's ``H_obs - H_syn`` divided by its output area (a lab convention);
* ``batch-mean``: a batch mean where the case asks for the sum over the batch;
* ``softmax-axis``: the batch log-likelihoods of Dai, Lu & Wu with their normalisers swapped
  (classes for the generative one, examples for the discriminative one);
* ``no-bias``: the softmax (2.3) without its biases ``b_c``.

Layout mistakes (NHWC for NCHW, HWIO for OIHW, height and width swapped) need no
recomputation: :mod:`refimpl.crosscheck.compare` tries the axis permutations directly.
"""

from __future__ import annotations

from refimpl.models import GenerativeModel

HINTS = {
    "flip": (
        "matches with every filter flipped in both spatial axes: your filtering is a true "
        "convolution, but Xie et al., Eq. (2.1) is cross-correlation, "
        "[F * I](x) = sum_y w(y) I(x + y) (torch.nn.functional.conv2d and "
        "jax.lax.conv_general_dilated already compute it: do not flip the kernel)"
    ),
    "relu-mask": (
        "matches when backprop omits the ReLU mask: multiply the gradient arriving at every "
        "ReLU layer by delta = 1(z > 0), Eq. (6.4), before passing it down"
    ),
    "drift-eps2": (
        "matches with the Langevin drift eps^2 * d log p / dI: Eq. (6.10) has "
        "(eps^2 / 2) * (df/dI - I / sigma^2)"
    ),
    "drift-eps": (
        "matches with the Langevin drift eps * d log p / dI: Eq. (6.10) has "
        "(eps^2 / 2) * (df/dI - I / sigma^2)"
    ),
    "drift-one": (
        "matches with the Langevin drift d log p / dI without a step-size factor: Eq. (6.10) "
        "has (eps^2 / 2) * (df/dI - I / sigma^2)"
    ),
    "sigma-one": (
        "matches with sigma = 1 in the reference term -I / sigma^2: use the case's sigma "
        "(settings.sigma in the manifest)"
    ),
    "noise-unscaled": "matches with the noise added as Z instead of eps * Z, Eq. (6.10)",
    "no-metropolis": (
        "matches unadjusted Langevin (every proposal accepted): MALA must accept the proposal "
        "J only when log U < log p(J) - log p(I) + log k(I | J) - log k(J | I)"
    ),
    "descent": (
        "matches the update w - eta (H_obs - H_syn): learning ascends the log-likelihood, "
        "w + eta (H_obs - H_syn), Eq. (7.2) and Algorithm 1"
    ),
    "area": (
        "matches with each layer's H_obs - H_syn divided by its output area H_l * W_l: this "
        "case uses Algorithm 1's update w + eta (H_obs - H_syn) without that normalisation"
    ),
    "batch-mean": (
        "matches the mean over the batch: this quantity is the sum over the batch, sum_m df(I_m)/dw"
    ),
    "softmax-axis": (
        "matches with the two log-likelihoods of Dai, Lu & Wu swapped: the discriminative one "
        "normalises over classes with the example fixed, the generative one over the batch's "
        "examples with the class fixed"
    ),
    "no-bias": "matches the softmax without its biases b_c, Eq. (2.3)",
}

# The drift coefficient of each drift mistake, as a function of the step size eps.
DRIFT_COEFFICIENT = {
    "drift-eps2": lambda eps: eps**2,
    "drift-eps": lambda eps: eps,
    "drift-one": lambda eps: 1.0,
}


class ScaledDrift(GenerativeModel):
    """A generative model whose ``d log p / dI`` is multiplied by ``factor`` (a wrong drift).

    Langevin, MALA and GRADE take their drift as ``(eps^2 / 2) * grad_log_density``, so
    ``factor = c / (eps^2 / 2)`` makes the drift ``c * d log p / dI``; the energy is unchanged.
    """

    def __init__(self, model: GenerativeModel, factor: float):
        super().__init__(model.scoring, model.sigma)
        self.factor = float(factor)

    def grad_log_density(self, I):
        return self.factor * super().grad_log_density(I)

    def energy_and_grad(self, I):
        energy, grad = super().energy_and_grad(I)
        return energy, self.factor * grad


class UnmaskedBackprop:
    """A ConvNet whose backprop forgets the activation mask ``h'(z)`` (a deliberate mistake).

    The forward pass is the network's; on the way down the gradient is passed through every
    layer's adjoint convolution without the factor ``delta = h'(z)``. Every other attribute
    is the wrapped network's, so it stands in for a :class:`~refimpl.ConvNet` wherever the
    samplers and :func:`~refimpl.learning.learning_iteration` take one.
    """

    def __init__(self, net):
        self.net = net

    def __getattr__(self, name):
        return getattr(self.net, name)

    def _scores_and_grads(self, I):
        net = self.net
        fwd = net.forward(I)
        top = fwd.outputs[-1]
        grad = net.xp.ones(top.shape, dtype=top.dtype)
        param_grads = []
        for layer, geom, x in zip(net.layers[::-1], fwd.geometries[::-1], fwd.inputs[::-1]):
            param_grads.append((net.conv.weight_grad(geom, x, grad), net.conv.bias_grad(grad)))
            grad = net.conv.adjoint(geom, grad, layer.weight)  # the mask h'(z) is missing
        return top.sum(axis=(1, 2, 3)), grad, param_grads[::-1]

    def grad_input(self, I):
        return self._scores_and_grads(I)[1]

    def score_and_grad_input(self, I):
        f, grad, _ = self._scores_and_grads(I)
        return f, grad

    def grad_params(self, I):
        return self._scores_and_grads(I)[2]

    def score_and_grad_params(self, I):
        f, _, grads = self._scores_and_grads(I)
        return f, grads


def scoring_for(net, mistake: str | None):
    """The scoring function a mistaken implementation computes: the net, or its unmasked twin."""
    return UnmaskedBackprop(net) if mistake == "relu-mask" else net


def sampler_model(net, sigma: float, step_size: float, mistake: str | None) -> GenerativeModel:
    """``p ~ exp(f) q`` as a sampler with ``mistake`` sees it (drift, sigma, backprop)."""
    model = GenerativeModel(scoring_for(net, mistake), 1.0 if mistake == "sigma-one" else sigma)
    if mistake in DRIFT_COEFFICIENT:
        coefficient = DRIFT_COEFFICIENT[mistake](step_size)
        model = ScaledDrift(model, coefficient / (0.5 * step_size**2))
    return model
