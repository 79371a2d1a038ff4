"""Fitting the hybrid toy: an L-BFGS maximiser, the closed-form and EM generative fits, and the
fits of every objective of :mod:`refimpl.hybrid.objectives`.

* :func:`maximize`: limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*,
  Algorithm 7.4, two-loop recursion) with a backtracking line search. Near a maximum the
  objective stops changing in its last digits before the gradient is small, so a step is
  also accepted when the value is unchanged to rounding and the slope along the step has
  shrunk (Hager & Zhang's "approximate Wolfe" condition); this is what lets it drive the
  gradient to 1e-9 and below, which the exact anchors need.
* :func:`closed_form_generative`: the maximum-likelihood fit from labelled points alone
  (class frequencies, class means, pooled squared distances).
* :func:`em_generative`: the maximum-likelihood fit with unlabelled points too, by EM
  (Dempster, Laird & Rubin 1977): labelled points keep their class, unlabelled ones are
  shared by their responsibilities ``p(k | x, w)``, and the M-step is the closed form above
  with those weights.
* :func:`fit_generative`, :func:`fit_discriminative`, :func:`fit_blend`,
  :func:`fit_hybrid`: :func:`maximize` on each objective, from the generative fit unless a
  start is given. The mixture likelihood has local maxima (and is unbounded when a
  component shrinks onto one point), so like EM these return the maximum reached from the
  start; the generative fit is a deterministic start from which every ``alpha`` and
  ``lambda`` is fitted, so that a sweep compares fits of one branch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from refimpl.hybrid import objectives as obj
from refimpl.hybrid.toy import GaussianClasses, SemiSupervised, class_log_joint, n_params
from refimpl.validation import check_positive_int

__all__ = [
    "HybridFit",
    "Maximum",
    "closed_form_generative",
    "default_start",
    "em_generative",
    "fit_blend",
    "fit_discriminative",
    "fit_generative",
    "fit_hybrid",
    "maximize",
]

GTOL = 1e-9  # default: |grad|_inf at which a fit stops (see maximize)


@dataclass
class Maximum:
    """Where a maximiser stopped: ``w``, ``value``, ``grad`` there, the number of iterations
    and function evaluations, whether ``|grad|_inf <= gtol`` was reached, and why it stopped."""

    w: np.ndarray
    value: float
    grad: np.ndarray
    iterations: int
    evaluations: int
    converged: bool
    message: str

    @property
    def grad_norm(self) -> float:
        return float(np.max(np.abs(self.grad))) if self.grad.size else 0.0


def maximize(
    fun, w0, gtol: float = GTOL, max_iter: int = 5000, memory: int = 30, max_step: float = 5.0
) -> Maximum:
    """Maximise ``fun(w) -> (value, grad)`` from ``w0 (P,)`` by L-BFGS, to ``|grad|_inf <= gtol``.

    Minimises ``phi = -value``. Search direction ``d = -H grad phi`` with ``H`` the L-BFGS
    inverse-Hessian estimate from the last ``memory`` pairs ``(s, y)`` (pairs with
    ``s . y <= 0`` are skipped, so ``H`` stays positive definite; the toy has at most 14
    parameters, so the default memory keeps every pair that matters). ``d`` is shortened to
    move no coordinate by more than ``max_step`` (a log width by ``e^5``, a mean by 5 data
    units), so that a poor early direction cannot overflow the Gaussians. Step ``t`` halves
    from 1 (from ``1 / |grad|`` on the first iteration) until either
    ``phi(w + t d) <= phi(w) + 1e-4 t phi'(0)`` (Armijo), or ``phi(w + t d) <= phi(w) +
    1e-12 (1 + |phi(w)|)`` and ``0.9 phi'(0) <= phi'(t) <= -0.8 phi'(0)`` (approximate Wolfe,
    for when ``phi`` no longer resolves the decrease). A trial whose value is not finite, or
    whose evaluation raises ``ValueError`` or ``FloatingPointError`` (the objectives' checks of
    non-finite scores), counts as a failed trial: the step is halved. Returns a
    :class:`Maximum`; ``converged`` is False after ``max_iter`` iterations or a failed line
    search.
    """
    for name, value in (("gtol", gtol), ("max_step", max_step)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number; got {value!r}")
    check_positive_int(max_iter, "max_iter")
    check_positive_int(memory, "memory")
    w = np.array(w0, dtype=float)
    if w.ndim != 1 or not np.all(np.isfinite(w)):
        raise ValueError(f"w0 must be a finite 1-D array; got shape {w.shape}")
    value, grad = fun(w)
    if not (math.isfinite(value) and np.all(np.isfinite(grad))):
        raise FloatingPointError(f"the objective is not finite at the start (value {value})")
    phi, g = -value, -grad
    pairs = deque(maxlen=memory)
    evaluations, message = 1, f"reached max_iter = {max_iter}"
    for iteration in range(max_iter):
        if np.max(np.abs(g)) <= gtol:
            return Maximum(w, -phi, -g, iteration, evaluations, True, "converged")
        d = -_two_loop(g, pairs)
        if float(g @ d) >= 0:  # rounding made H useless: restart from steepest descent
            pairs.clear()
            d = -g
        d *= min(1.0, max_step / float(np.max(np.abs(d))))
        slope = float(g @ d)
        t = 1.0 if pairs else min(1.0, 1.0 / float(np.linalg.norm(g)))
        for _ in range(60):
            trial = w + t * d
            evaluations += 1
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    v_t, grad_t = fun(trial)
            except (ValueError, FloatingPointError):  # the trial overflowed a check: too far
                v_t, grad_t = math.nan, g * math.nan
            phi_t, g_t = -v_t, -grad_t
            if math.isfinite(phi_t) and np.all(np.isfinite(g_t)):
                armijo = phi_t <= phi + 1e-4 * t * slope
                slope_t = float(g_t @ d)
                approx_wolfe = (
                    phi_t <= phi + 1e-12 * (1 + abs(phi)) and 0.9 * slope <= slope_t <= -0.8 * slope
                )
                if armijo or approx_wolfe:
                    break
            t *= 0.5
        else:
            message = "line search failed (no acceptable step)"
            break
        s, y = trial - w, g_t - g
        if float(s @ y) > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
            pairs.append((s, y, 1.0 / float(s @ y)))
        w, phi, g = trial, phi_t, g_t
    converged = bool(np.max(np.abs(g)) <= gtol)
    return Maximum(w, -phi, -g, iteration + 1, evaluations, converged, message)


def _two_loop(g, pairs):
    """``H g`` for the L-BFGS inverse Hessian of the stored pairs (Nocedal & Wright, Alg. 7.4)."""
    q = g.copy()
    coeffs = []
    for s, y, rho in reversed(pairs):
        a = rho * float(s @ q)
        q -= a * y
        coeffs.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y, rho), a in zip(pairs, reversed(coeffs), strict=True):
        q += s * (a - rho * float(y @ q))
    return q


# --- generative fits in closed form ------------------------------------------------------------


def _weighted_ml(x, weights) -> np.ndarray:
    """The M-step: ML parameters of isotropic classes for points ``x (N, D)`` with class weights
    ``weights (N, K)`` (rows sum to 1): ``pi_k = N_k / N``, ``m_k = sum_n r_nk x_n / N_k``,
    ``s_k^2 = sum_n r_nk |x_n - m_k|^2 / (D N_k)``."""
    counts = weights.sum(axis=0)
    means = weights.T @ x / counts[:, None]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(axis=2)
    var = (weights * sq).sum(axis=0) / (x.shape[1] * counts)
    log_odds = np.log(counts[1:] / counts[0])
    return GaussianClasses(means, 0.5 * np.log(var), log_odds).pack()


def closed_form_generative(data: SemiSupervised) -> np.ndarray:
    """Maximum-likelihood parameters ``w (P,)`` from the labelled points alone (flat prior).

    ``pi_k = n_k / n``, ``m_k`` = mean of class ``k``, ``s_k^2 = sum |x - m_k|^2 / (D n_k)``.
    Needs two distinct labelled points in every class (else ``s_k = 0``).
    """
    if not isinstance(data, SemiSupervised):
        raise TypeError(f"data must be a SemiSupervised training set; got {type(data).__name__}")
    y, k = data.y_labelled, data.n_classes
    counts = np.bincount(y, minlength=k)
    if counts.min() < 2:
        raise ValueError(
            f"the closed-form fit needs at least 2 labelled points per class; got counts "
            f"{counts.tolist()}"
        )
    w = _weighted_ml(data.x_labelled, np.eye(k)[y])
    if not np.all(np.isfinite(w)):
        raise ValueError("a class's labelled points coincide: its variance would be 0")
    return w


def default_start(data: SemiSupervised) -> np.ndarray:
    """Where the generative fits start: ``m_k`` = mean of the labelled points of class ``k``,
    every ``s_k`` = the spread of *all* inputs (``s^2`` = their variance averaged over the
    ``D`` coordinates), equal class probabilities.

    Not the labelled-only maximum (:func:`closed_form_generative`): two points per class
    give widths that are often far too small, and EM from there can stop on a lower maximum,
    with a component shrunk onto a few points or the classes swapped (errors near 50% or
    90%): in 2 of the default toy's first 60 training sets, and in 7 of 40 with round
    classes (``elongated_toy(0.7, 0.7)``).
    """
    if not isinstance(data, SemiSupervised):
        raise TypeError(f"data must be a SemiSupervised training set; got {type(data).__name__}")
    counts = np.bincount(data.y_labelled, minlength=data.n_classes)
    if counts.min() < 1:
        raise ValueError(
            f"every class needs a labelled point to start from; got counts {counts.tolist()}"
        )
    onehot = np.eye(data.n_classes)[data.y_labelled]
    means = onehot.T @ data.x_labelled / counts[:, None]
    spread = 0.5 * math.log(float(data.x_all.var(axis=0).mean()))
    return GaussianClasses(
        means, np.full(data.n_classes, spread), np.zeros(data.n_classes - 1)
    ).pack()


def em_generative(
    data: SemiSupervised, w0=None, tol: float = 1e-13, max_iter: int = 100000
) -> Maximum:
    """Maximum-likelihood fit of ``L_G`` (flat prior) with unlabelled points, by EM.

    E-step: responsibilities ``r_mk = p(k | x_m, w)`` of the unlabelled points (labelled
    points keep ``r = 1(k = y)``); M-step: :func:`closed_form_generative`'s formulas with
    these weights. Each step increases ``L_G``. Starts from ``w0`` (default:
    :func:`default_start`) and stops when no parameter moves by more than ``tol``. Returns a
    :class:`Maximum` whose ``grad`` is ``L_G``'s gradient at the end (for checking).
    """
    w = default_start(data) if w0 is None else np.array(w0, dtype=float)
    fixed = np.eye(data.n_classes)[data.y_labelled]
    x = data.x_all
    message, converged = f"reached max_iter = {max_iter}", False
    iteration = 0
    while iteration < max_iter:
        iteration += 1
        S = class_log_joint(w, data.x_unlabelled)
        resp = np.exp(S - S.max(axis=1, keepdims=True))
        resp /= resp.sum(axis=1, keepdims=True)
        new = _weighted_ml(x, np.concatenate([fixed, resp]))
        step = float(np.max(np.abs(new - w)))
        w = new
        if step <= tol:
            message, converged = "converged", True
            break
    value, grad = obj.generative_objective(w, data)
    return Maximum(w, value, grad, iteration, iteration, converged, message)


# --- fits of the objectives ----------------------------------------------------------------------


def _start(data: SemiSupervised, w0, prior_scale) -> np.ndarray:
    if w0 is not None:
        return np.array(w0, dtype=float)
    return fit_generative(data, prior_scale).w


def fit_generative(data: SemiSupervised, prior_scale=None, w0=None, gtol: float = GTOL) -> Maximum:
    """Maximise ``L_G`` by :func:`maximize`, from ``w0`` or :func:`default_start`."""
    w0 = default_start(data) if w0 is None else w0
    return maximize(lambda w: obj.generative_objective(w, data, prior_scale), w0, gtol)


def fit_discriminative(
    data: SemiSupervised, prior_scale=None, w0=None, gtol: float = GTOL
) -> Maximum:
    """Maximise ``L_D`` by :func:`maximize`, from ``w0`` or the generative fit. Needs a prior
    (``prior_scale``) for a unique maximum (see ``objectives.discriminative_objective``)."""
    return maximize(
        lambda w: obj.discriminative_objective(w, data, prior_scale),
        _start(data, w0, prior_scale),
        gtol,
    )


def fit_blend(
    data: SemiSupervised, lam: float, prior_scale=None, w0=None, gtol: float = GTOL
) -> Maximum:
    """Maximise ``lambda L_G + (1 - lambda) L_D`` from ``w0`` or the generative fit."""
    return maximize(
        lambda w: obj.blend_objective(w, data, lam, prior_scale),
        _start(data, w0, prior_scale),
        gtol,
    )


@dataclass
class HybridFit:
    """A fit of Bishop & Lasserre's hybrid: ``w_D`` (predicts), ``w_G`` (models the inputs),
    ``sigma``, and the :class:`Maximum` of the optimisation(s) behind it."""

    w_G: np.ndarray
    w_D: np.ndarray
    sigma: float
    maxima: tuple

    @property
    def converged(self) -> bool:
        return all(m.converged for m in self.maxima)

    @property
    def iterations(self) -> int:
        return sum(m.iterations for m in self.maxima)


def fit_hybrid(
    data: SemiSupervised, alpha: float, prior_scale=None, start=None, gtol: float = GTOL
) -> HybridFit:
    """Maximise ``H(w_G, w_D)`` at ``sigma = sigma_of_alpha(alpha)``.

    ``start = (w_G, w_D)``, default both at the generative fit. The ends are the limits
    derived in :mod:`refimpl.hybrid.objectives`, solved as such:

    * ``alpha = 0`` (``sigma = 0``, ``w_G = w_D``): ``w_G = w_D`` = the maximum of ``L_G``;
    * ``alpha = 1`` (``sigma = infinity``): ``w_D`` = the maximum of ``L_D``, and ``w_G`` the
      maximum of ``sum_all log p(x | w_G)`` alone (labels ignored).
    """
    sigma = obj.sigma_of_alpha(alpha)
    if start is None:
        w = fit_generative(data, prior_scale).w
        start = (w, w)
    w_G0, w_D0 = (np.array(s, dtype=float) for s in start)
    if sigma == 0:
        m = maximize(lambda w: obj.generative_objective(w, data, prior_scale), w_D0, gtol)
        return HybridFit(m.w, m.w, sigma, (m,))
    if math.isinf(sigma):
        m_D = maximize(lambda w: obj.discriminative_objective(w, data, prior_scale), w_D0, gtol)
        m_G = maximize(lambda w: obj.marginal_log_likelihood(w, data.x_all), w_G0, gtol)
        return HybridFit(m_G.w, m_D.w, sigma, (m_G, m_D))
    p = n_params(data.n_classes, data.dim)

    def joint(v):
        value, g_G, g_D = obj.hybrid_objective(v[:p], v[p:], data, sigma, prior_scale)
        return value, np.concatenate([g_G, g_D])

    m = maximize(joint, np.concatenate([w_G0, w_D0]), gtol)
    return HybridFit(m.w[:p], m.w[p:], sigma, (m,))
