"""What a classifier is measured by: accuracy, calibration (ECE), out-of-distribution detection
(AUROC of three scores) and robustness (L-infinity PGD), following Yang et al. (GMMC), section 4.

All functions take arrays of one backend (NumPy or CuPy) and return Python floats or arrays of
that backend. Shapes: ``probs (N, C)`` class probabilities ``p(y | x)`` (rows sum to 1),
``labels (N,)`` integers in ``[0, C)``, ``scores (N,)`` real numbers, larger = "more
in-distribution".

* :func:`accuracy`: the fraction of ``argmax_y p(y | x_i) = y_i``.
* :func:`calibration_bins` and :func:`expected_calibration_error`, GMMC Eq. (12) (Guo et al.):
  the confidence ``max_y p(y | x)`` in ``M`` equal-width bins ``((m - 1)/M, m/M]``,
  ``ECE = sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|``, a fraction in ``[0, 1]`` (the paper prints
  it in percent); ``M = 20`` as in the paper.
* :func:`auroc`: the area under the ROC curve of a score separating in- from out-of-
  distribution examples, ``P(s_in > s_out) + P(s_in = s_out) / 2`` (the Mann-Whitney
  statistic ``U / (n_in n_out)``), counted over all pairs.
* :func:`ood_scores`: GMMC section 4.3's three score functions, ``log p(x)`` up to ``log Z``,
  ``max_y p(y | x)``, and ``-|d log p(x) / dx|`` (Grathwohl et al.'s approximate mass).
* :func:`pgd_attack` and :func:`pgd_accuracy`: Madry et al.'s L-infinity projected gradient
  ascent on the cross-entropy, 40 steps, as in GMMC Table 5.
"""

from __future__ import annotations

import math

from refimpl.backend import namespace_of
from refimpl.models.discriminative import check_labels
from refimpl.validation import check_finite, check_float_array, check_ndim, shape_str

__all__ = [
    "PGD_EPSILONS",
    "accuracy",
    "auroc",
    "calibration_bins",
    "expected_calibration_error",
    "ood_scores",
    "pgd_accuracy",
    "pgd_attack",
]

# GMMC Table 5 (after JEM): 4, 8, 16 and 32 / 255 of the [0, 1] intensity range. As fractions
# of the range they carry over to any scale: on images in [-1, 1] multiply by 2.
PGD_EPSILONS = (4 / 255, 8 / 255, 16 / 255, 32 / 255)


def _check_probs(probs, labels=None):
    check_float_array(probs, "probs")
    check_ndim(probs, 2, "probs", "(N, C)")
    check_finite(probs, "probs")
    if labels is not None:
        check_labels(labels, probs.shape[0], probs.shape[1])


def accuracy(probs, labels) -> float:
    """``(1/N) sum_i 1(argmax_y p(y | x_i) = y_i)`` for ``probs (N, C)`` and ``labels (N,)``."""
    _check_probs(probs, labels)
    return float((probs.argmax(axis=1) == labels).mean())


def calibration_bins(probs, labels, n_bins: int = 20) -> dict:
    """The reliability diagram's numbers: per confidence bin ``((m-1)/M, m/M]``, m = 1..M.

    Returns a dict of arrays (the backend of ``probs``): ``edges (M + 1,)`` = ``m / M``;
    ``count (M,)`` examples per bin; ``accuracy (M,)`` and ``confidence (M,)``, the bin's mean
    correctness and mean ``max_y p(y | x)`` (0 for an empty bin). A confidence of exactly 0
    joins the first bin.
    """
    _check_probs(probs, labels)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    xp = namespace_of(probs)
    # BEGIN SOLUTION lesson 13
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(probs.dtype)
    edges = xp.arange(n_bins + 1, dtype=probs.dtype) / n_bins  # m / M, correctly rounded
    # bin m (0-based) holds edges[m] < c <= edges[m + 1]: searchsorted's "left" side
    which = xp.clip(xp.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = xp.bincount(which, minlength=n_bins)
    safe = xp.maximum(count, 1)
    acc = xp.bincount(which, weights=correct, minlength=n_bins) / safe
    conf = xp.bincount(which, weights=confidence, minlength=n_bins) / safe
    return dict(edges=edges, count=count, accuracy=acc, confidence=conf)
    # END SOLUTION


def expected_calibration_error(probs, labels, n_bins: int = 20) -> float:
    """ECE, GMMC Eq. (12): ``sum_m (|B_m| / n) |acc(B_m) - conf(B_m)|``, a fraction in ``[0, 1]``.

    ``M = n_bins`` equal-width confidence bins (the paper: 20); see :func:`calibration_bins`.
    """
    bins = calibration_bins(probs, labels, n_bins)
    # BEGIN SOLUTION lesson 13
    weight = bins["count"] / probs.shape[0]
    return float((weight * abs(bins["accuracy"] - bins["confidence"])).sum())
    # END SOLUTION


def auroc(scores_in, scores_out) -> float:
    """The area under the ROC curve of a score, in- vs out-of-distribution: ``(n_in,), (n_out,)``.

    ``AUROC = (1 / (n_in n_out)) sum_{i, j} [1(s_in_i > s_out_j) + 1(s_in_i = s_out_j) / 2]``,
    the probability that a random in-distribution example scores higher than a random
    out-of-distribution one (ties count half): 1 separates perfectly, 0.5 is chance, below
    0.5 the score ranks the wrong way. Counted over all pairs in blocks of in-distribution
    rows, exact (no threshold grid).
    """
    for name, s in (("scores_in", scores_in), ("scores_out", scores_out)):
        check_float_array(s, name)
        check_ndim(s, 1, name, "(n,)")
        check_finite(s, name)
        if s.shape[0] == 0:
            raise ValueError(f"{name} is empty")
    namespace_of(scores_in, scores_out)  # one backend
    total, block = 0.0, max(1, 2**22 // scores_out.shape[0])
    for start in range(0, scores_in.shape[0], block):
        rows = scores_in[start : start + block, None]
        total += float((rows > scores_out[None, :]).sum()) + 0.5 * float(
            (rows == scores_out[None, :]).sum()
        )
    return total / (scores_in.shape[0] * scores_out.shape[0])


def ood_scores(model, images, batch: int = 500) -> dict:
    """GMMC section 4.3's three OOD scores of every image, larger = more in-distribution.

    Args:
        model: a classifier (:class:`~refimpl.classify.heads.Classifier`).
        images: ``(N, C, H, W)``.

    Returns:
        ``{"log_px": log p(x) + log Z, "max_prob": max_y p(y | x),
        "neg_grad_norm": -|d log p(x) / dx|}``, each ``(N,)``.
    """
    xp = model.xp
    out = {"log_px": [], "max_prob": [], "neg_grad_norm": []}
    for start in range(0, images.shape[0], batch):
        x = images[start : start + batch]
        value, grad = model.log_px_and_grad(x)
        out["log_px"].append(value)
        out["max_prob"].append(model.probs(x).max(axis=1))
        out["neg_grad_norm"].append(-xp.sqrt((grad.reshape(grad.shape[0], -1) ** 2).sum(axis=1)))
    return {k: xp.concatenate(v) for k, v in out.items()}


def pgd_attack(
    loss_and_grad,
    images,
    labels,
    epsilon: float,
    n_steps: int = 40,
    step_size: float | None = None,
    box=(-1.0, 1.0),
):
    """L-infinity PGD (Madry et al.): ``x_{k+1} = P(x_k + a sign(d loss / dx))``, kept at its worst.

    ``P`` projects onto ``{|x - x_0|_inf <= epsilon}`` and the image box; the attack starts at
    the clean image (no random start, so it is deterministic) and returns, per example, the
    iterate with the largest loss among ``x_0, ..., x_n`` (so the loss never goes down).

    Args:
        loss_and_grad: ``(x, labels) -> (loss (N,), d loss / dx)``, e.g. ``model.nll_and_grad``.
        images: ``(N, C, H, W)``; labels ``(N,)``.
        epsilon: the radius, in the images' units.
        n_steps: 40 in GMMC Table 5; step_size: ``a``, default ``2.5 epsilon / n_steps`` (Madry).
        box: the valid intensity range (None: no clipping).

    Returns:
        ``(x_adv (N, C, H, W), loss at x_adv (N,))``.
    """
    epsilon = float(epsilon)
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a non-negative finite number; got {epsilon!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer; got {n_steps!r}")
    a = 2.5 * epsilon / max(n_steps, 1) if step_size is None else float(step_size)
    xp = namespace_of(images)
    low, high = images - epsilon, images + epsilon
    if box is not None:
        low, high = xp.maximum(low, box[0]), xp.minimum(high, box[1])
    x = images.copy()
    loss, grad = loss_and_grad(x, labels)
    best, best_loss = x.copy(), loss.copy()
    for _ in range(n_steps):
        x = xp.minimum(xp.maximum(x + a * xp.sign(grad), low), high)
        loss, grad = loss_and_grad(x, labels)
        better = loss > best_loss
        best = xp.where(better.reshape((-1,) + (1,) * (x.ndim - 1)), x, best)
        best_loss = xp.where(better, loss, best_loss)
    return best, best_loss


def pgd_accuracy(
    model, images, labels, epsilons, n_steps: int = 40, box=(-1.0, 1.0), batch: int = 500
) -> list:
    """Accuracy under :func:`pgd_attack` on ``-log p(y | x)`` for each radius (images' units)."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images {shape_str(images.shape)} and labels {shape_str(labels.shape)} disagree"
        )
    out = []
    for eps in epsilons:
        correct = 0
        for start in range(0, images.shape[0], batch):
            x, y = images[start : start + batch], labels[start : start + batch]
            adv, _ = pgd_attack(model.nll_and_grad, x, y, eps, n_steps, box=box)
            correct += int((model.logits(adv).argmax(axis=1) == y).sum())
        out.append(correct / images.shape[0])
    return out
