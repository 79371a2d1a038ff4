"""Generative, discriminative, blended and coupled (Bishop & Lasserre) objectives, with gradients.

Every objective is a log-probability to be **maximised**, over the parameter vector ``w (P,)``
of :mod:`refimpl.hybrid.toy` (isotropic Gaussian classes; means, log standard deviations,
log-odds), and every function returns its value together with its gradient, written by hand
through the chain rule of :func:`~refimpl.hybrid.toy.class_log_joint_vjp`. A training set
(:class:`~refimpl.hybrid.toy.SemiSupervised`) has labelled pairs ``(x_n, y_n)`` and
unlabelled points ``x_m``. ``p(w)`` is an optional Gaussian prior ``N(0, tau^2 I)`` on the
unconstrained parameters (``prior_scale = tau``; None = flat).

The three likelihoods (sums over points; ``p(x | w) = sum_k p(x, k | w)``):

    joint        sum_n log p(x_n, y_n | w)
    marginal     sum_m log p(x_m | w)
    conditional  sum_n log p(y_n | x_n, w),   and   joint = conditional + marginal

The objectives of the lecture slides on hybrid models:

    L_G(w) = log p(w) + sum_labelled log p(x_n, y_n | w) + sum_unlabelled log p(x_m | w)
    L_D(w) = log p(w) + sum_labelled log p(y_n | x_n, w)
    blend  = lambda L_G(w) + (1 - lambda) L_D(w),        lambda in [0, 1]

The slides write ``L_G = p(w) prod p(x, y | w)`` and ``L_D = p(w) prod p(y | x, w)`` as
*products* and blend those; we blend their logarithms, as the heuristic is used in practice
(a blend of products is dominated by whichever is larger). Unlabelled points enter ``L_G``
through ``p(x | w)`` (the slides' ``L_G`` has labelled pairs only). The prior appears once at
every ``lambda``, since ``lambda log p + (1 - lambda) log p = log p``. The slides' verdict
stands: the blend is neither a likelihood nor a posterior of any model.

**Bishop & Lasserre's hybrid** (Bishop & Lasserre 2007, "Generative or discriminative? Getting
the best of both worlds"): two parameter vectors, ``w_D`` for the conditional ``p(y | x, w_D)``
and ``w_G`` for the marginal ``p(x | w_G)``, one model

    p(x, y, w_G, w_D) = p(y | x, w_D) p(x | w_G) p(w_G, w_D),

whose MAP estimate maximises (:func:`hybrid_objective`)

    H(w_G, w_D) = log p(w_G, w_D) + sum_labelled log p(y_n | x_n, w_D) + sum_all log p(x | w_G),

the last sum over labelled *and* unlabelled inputs. The coupling prior is
(:func:`coupling_log_prior`)

    p(w_G, w_D) = p(w_D) N(w_G | w_D, sigma^2 I) ∝ p(w_D) exp(-|w_G - w_D|^2 / (2 sigma^2)).

The slides list the choices: ``p(w_G) p(w_D)`` gives ``L_D``, ``p(w_G) delta(w_G - w_D)`` gives
``L_G``, and the trade-off ``∝ p(w_G) p(w_D) exp(-|w_G - w_D|^2 / (2 sigma^2))``. Ours is that
trade-off with a flat ``p(w_G)``: with a proper ``p(w_G)`` as well, the delta limit would
carry the prior twice, ``p(w)^2``, instead of once as in the slides' own delta line. The
slides' product runs over labelled pairs only; Bishop & Lasserre's (and ours) also has
``p(x_m | w_G)`` for every unlabelled point, which is how the hybrid learns from them.

**The limits** (why ``sigma`` interpolates). Write ``A(w) = log p(w) + sum_labelled
log p(y | x, w)`` (that is ``L_D``) and ``C(w) = sum_all log p(x | w)``, so that ``H = A(w_D)
+ C(w_G) + log N(w_G | w_D, sigma^2 I)``. At a maximum,

    grad A(w_D) = -(w_G - w_D) / sigma^2,      grad C(w_G) = (w_G - w_D) / sigma^2,

and adding the two, ``grad A(w_D) + grad C(w_G) = 0`` at every ``sigma``.

* ``sigma -> 0``: ``w_G - w_D = sigma^2 grad C(w_G) = O(sigma^2)``, so both tend to one ``w*``
  with ``grad (A + C)(w*) = 0``. Since ``log p(y | x) + log p(x) = log p(x, y)`` on the labelled
  points, ``A + C = L_G``: **w_D tends to the generative fit**, at distance ``O(sigma^2)``.
* ``sigma -> infinity``: ``grad A(w_D) = O(1 / sigma^2) -> 0``: **w_D tends to the
  discriminative fit** (the maximum of ``L_D``), at distance ``O(1/sigma^2)``, while ``w_G``
  tends to the maximum of ``C`` alone, a mixture fitted to the inputs with the labels ignored.

**alpha.** The slides (after Bishop & Lasserre) index the hybrids by ``alpha in [0, 1]``, with
``alpha = 0`` the generative and ``alpha = 1`` the discriminative case; they give only these
ends. Any increasing map with ``sigma(0) = 0`` and ``sigma(1) = infinity`` meets them; we use
the simplest (:func:`sigma_of_alpha`),

    sigma = alpha / (1 - alpha),        alpha = sigma / (1 + sigma),

so the distances above are ``O(alpha^2)`` near 0 and ``O((1 - alpha)^2)`` near 1. Another
map would relabel the axis, not change the family of fits.

Host-only (NumPy/SciPy), like the rest of :mod:`refimpl.hybrid`.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.hybrid.toy import SemiSupervised, class_log_joint, class_log_joint_vjp
from refimpl.models.discriminative import (
    check_labels,
    discriminative_log_likelihood,
    discriminative_score_gradient,
)
from refimpl.validation import check_array, shape_str

__all__ = [
    "alpha_of_sigma",
    "blend_objective",
    "conditional_log_likelihood",
    "coupling_log_prior",
    "discriminative_objective",
    "gaussian_log_prior",
    "generative_objective",
    "hybrid_objective",
    "joint_log_likelihood",
    "marginal_log_likelihood",
    "sigma_of_alpha",
]


# --- argument checks -------------------------------------------------------------------------


def _check_positive(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive number{' or None' if allow_none else ''}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite; got {value}")
    return float(value)


def _check_unit(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1]; got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1]; got {value}")
    return float(value)


def _check_data(w, data):
    if not isinstance(data, SemiSupervised):
        raise TypeError(f"data must be a SemiSupervised training set; got {type(data).__name__}")
    check_array(w, "w", 1, "(P,)")
    k = (w.size + 1) // (data.dim + 2)
    if k != data.n_classes:
        raise ValueError(
            f"w has {w.size} entries, a {k}-class model in {data.dim}-D, but data has "
            f"{data.n_classes} classes"
        )


# --- the prior and the three likelihoods --------------------------------------------------------


def gaussian_log_prior(w, scale):
    """``log N(w | 0, scale^2 I)`` and its gradient ``-w / scale^2``; zeros if ``scale`` is None.

    ``w (P,)``; returns ``(value, grad (P,))``. ``value = -|w|^2 / (2 scale^2) - (P/2) log(2 pi
    scale^2)``: a proper density, so that values can be compared across scales.
    """
    check_array(w, "w", 1, "(P,)")
    scale = _check_positive(scale, "prior_scale", allow_none=True)
    # BEGIN SOLUTION lesson 14
    if scale is None:
        return 0.0, np.zeros_like(w)
    value = -0.5 * float(w @ w) / scale**2 - 0.5 * w.size * math.log(2 * math.pi * scale**2)
    return value, -w / scale**2
    # END SOLUTION


def joint_log_likelihood(w, x, y):
    """``sum_m log p(x_m, y_m | w)`` and its gradient: ``(value, grad (P,))``.

    ``x (M, D)``, integer labels ``y (M,)``. With the class scores ``S`` of
    :func:`~refimpl.hybrid.toy.class_log_joint` this is ``sum_m S[m, y_m]``, whose derivative
    with respect to ``S`` is the one-hot matrix ``1(k = y_m)``.
    """
    S = class_log_joint(w, x)
    check_labels(y, x.shape[0], S.shape[1], "y")
    # BEGIN SOLUTION lesson 14
    m = np.arange(x.shape[0])
    dS = np.zeros_like(S)
    dS[m, y] = 1.0
    return float(S[m, y].sum()), class_log_joint_vjp(w, x, dS)
    # END SOLUTION


def marginal_log_likelihood(w, x):
    """``sum_m log p(x_m | w)``, ``p(x | w) = sum_k p(x, k | w)``, and its gradient.

    ``x (M, D)``; returns ``(value, grad (P,))``. ``d/dS[m, k] log sum_j exp S[m, j] =
    p(k | x_m, w)``: each point pulls on every class in proportion to its responsibility
    (what EM's E-step computes).
    """
    S = class_log_joint(w, x)
    # BEGIN SOLUTION lesson 14
    log_px = np.logaddexp.reduce(S, axis=1)
    return float(log_px.sum()), class_log_joint_vjp(w, x, np.exp(S - log_px[:, None]))
    # END SOLUTION


def conditional_log_likelihood(w, x, y):
    """``sum_m log p(y_m | x_m, w)`` (Bayes' rule on the model) and its gradient.

    ``x (M, D)``, integer labels ``y (M,)``; returns ``(value, grad (P,))``. ``p(y | x, w)`` is
    the softmax of the class scores, so this is
    :func:`~refimpl.models.discriminative.discriminative_log_likelihood` of ``S``, with
    ``dS = 1(k = y_m) - p(k | x_m, w)`` (``discriminative_score_gradient``), both of lesson 4.
    """
    S = class_log_joint(w, x)
    check_labels(y, x.shape[0], S.shape[1], "y")
    # BEGIN SOLUTION lesson 14
    value = discriminative_log_likelihood(S, y)
    return float(value), class_log_joint_vjp(w, x, discriminative_score_gradient(S, y))
    # END SOLUTION


# --- the objectives ----------------------------------------------------------------------------


def generative_objective(w, data: SemiSupervised, prior_scale=None):
    """``L_G(w) = log p(w) + sum_labelled log p(x, y | w) + sum_unlabelled log p(x | w)``.

    Returns ``(value, grad (P,))``. With a flat prior its maximum is the maximum-likelihood
    fit: in closed form from labelled points alone, by EM with unlabelled ones
    (:mod:`refimpl.hybrid.fit`).
    """
    _check_data(w, data)
    # BEGIN SOLUTION lesson 14
    prior, g_prior = gaussian_log_prior(w, prior_scale)
    joint, g_joint = joint_log_likelihood(w, data.x_labelled, data.y_labelled)
    marginal, g_marginal = marginal_log_likelihood(w, data.x_unlabelled)
    return prior + joint + marginal, g_prior + g_joint + g_marginal
    # END SOLUTION


def discriminative_objective(w, data: SemiSupervised, prior_scale=None):
    """``L_D(w) = log p(w) + sum_labelled log p(y | x, w)``; unlabelled points play no part.

    Returns ``(value, grad (P,))``. ``L_D`` depends on ``w`` only through the log-odds
    functions ``S[:, k] - S[:, 0]``, so it is flat along the directions of ``w`` that leave
    them unchanged; with two classes in 2-D that is 3 of the 7 (module docstring of
    :mod:`refimpl.hybrid.toy`). With a flat prior the maximum is a ridge, or at infinity when
    the labelled points can be separated: the prior is what makes the fit unique.
    """
    _check_data(w, data)
    # BEGIN SOLUTION lesson 14
    prior, g_prior = gaussian_log_prior(w, prior_scale)
    cond, g_cond = conditional_log_likelihood(w, data.x_labelled, data.y_labelled)
    return prior + cond, g_prior + g_cond
    # END SOLUTION


def blend_objective(w, data: SemiSupervised, lam: float, prior_scale=None):
    """The slides' heuristic ``lambda L_G(w) + (1 - lambda) L_D(w)``, ``lambda in [0, 1]``.

    Returns ``(value, grad (P,))``; ``lambda = 1`` is :func:`generative_objective`,
    ``lambda = 0`` :func:`discriminative_objective`.
    """
    lam = _check_unit(lam, "lam")
    # BEGIN SOLUTION lesson 14
    gen, g_gen = generative_objective(w, data, prior_scale)
    disc, g_disc = discriminative_objective(w, data, prior_scale)
    return lam * gen + (1 - lam) * disc, lam * g_gen + (1 - lam) * g_disc
    # END SOLUTION


def coupling_log_prior(w_G, w_D, sigma: float):
    """``log N(w_G | w_D, sigma^2 I)``, the coupling in Bishop & Lasserre's prior, and gradients.

    ``w_G, w_D (P,)``; returns ``(value, grad_G, grad_D)`` with
    ``value = -|w_G - w_D|^2 / (2 sigma^2) - (P/2) log(2 pi sigma^2)``,
    ``grad_G = -(w_G - w_D) / sigma^2 = -grad_D``.
    """
    check_array(w_G, "w_G", 1, "(P,)")
    check_array(w_D, "w_D", 1, "(P,)")
    if w_G.shape != w_D.shape:
        raise ValueError(
            f"w_G and w_D must have the same shape; got {shape_str(w_G.shape)} and "
            f"{shape_str(w_D.shape)}"
        )
    sigma = _check_positive(sigma, "sigma")
    # BEGIN SOLUTION lesson 14
    diff = w_G - w_D
    value = -0.5 * float(diff @ diff) / sigma**2 - 0.5 * diff.size * math.log(
        2 * math.pi * sigma**2
    )
    return value, -diff / sigma**2, diff / sigma**2
    # END SOLUTION


def hybrid_objective(w_G, w_D, data: SemiSupervised, sigma: float, prior_scale=None):
    """Bishop & Lasserre's ``H(w_G, w_D)`` for coupling width ``sigma`` (module docstring).

    ``log p(w_D) + log N(w_G | w_D, sigma^2 I) + sum_labelled log p(y | x, w_D)
    + sum_{labelled and unlabelled} log p(x | w_G)``.

    Returns ``(value, grad_G (P,), grad_D (P,))``. Predictions use ``w_D``.
    """
    _check_data(w_G, data)
    _check_data(w_D, data)
    # BEGIN SOLUTION lesson 14
    prior, g_prior = gaussian_log_prior(w_D, prior_scale)
    coupling, gc_G, gc_D = coupling_log_prior(w_G, w_D, sigma)
    cond, g_cond = conditional_log_likelihood(w_D, data.x_labelled, data.y_labelled)
    marginal, g_marginal = marginal_log_likelihood(w_G, data.x_all)
    return prior + coupling + cond + marginal, gc_G + g_marginal, g_prior + gc_D + g_cond
    # END SOLUTION


def sigma_of_alpha(alpha: float) -> float:
    """Coupling width ``sigma = alpha / (1 - alpha)``: 0 at ``alpha = 0`` (generative), infinite
    at ``alpha = 1`` (discriminative); see the module docstring for the choice."""
    alpha = _check_unit(alpha, "alpha")
    return math.inf if alpha == 1 else alpha / (1 - alpha)


def alpha_of_sigma(sigma: float) -> float:
    """The inverse of :func:`sigma_of_alpha`: ``alpha = sigma / (1 + sigma)`` (1 for infinity)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating, np.integer)):
        raise TypeError(f"sigma must be a number >= 0; got {sigma!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    return 1.0 if math.isinf(sigma) else sigma / (1 + sigma)
