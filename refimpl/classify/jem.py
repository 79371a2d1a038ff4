"""JEM (Grathwohl et al., "Your classifier is secretly an energy based model"), GMMC's baseline.

A softmax classifier with logits ``S_y(x) = f_y(x) + b_y`` (Xie et al., Eqs. (2.2)-(2.3)) read as
an energy-based model of the pair, with no reference distribution:

    p(x, y) = exp(S_y(x)) / Z,    p(x) = exp(logsumexp_y S_y(x)) / Z,    p(y | x) = softmax_y S(x).

JEM maximises ``log p(y | x) + log p(x)``, which is ``log p(x, y) = S_y(x) - log Z``. With the
energy ``E(x) = -logsumexp_y S_y(x)`` (the one whose explosion Yang et al. (GMMC) report in
appendix E, Table 10), the gradient of ``log p(x)`` is Eq. (2) of the GMMC paper,
``E_p(x')[dE(x')/d theta] - dE(x)/d theta``; the model expectation is estimated with samples
``x'`` from a replay buffer refined by SGLD on ``log p(x)``
(:func:`refimpl.classify.sampling.sgld`).
"""

from __future__ import annotations

from refimpl.backend import namespace_of
from refimpl.models.discriminative import (
    check_labels,
    check_scores,
    log_softmax,
    logsumexp,
    one_hot,
)

__all__ = ["energy", "joint_loss"]


def energy(scores):
    """``E(x) = -logsumexp_y S_y(x)``, ``(M, C) -> (M,)``: ``p(x) ~ exp(-E(x))``."""
    check_scores(scores, "scores")
    return -logsumexp(scores, axis=1)


def joint_loss(scores, labels, sample_scores):
    """JEM's loss ``-[log p(y | x) + log p(x)]`` on a batch, with ``log Z`` estimated by samples.

    ``loss = mean_m [-log p(y_m | x_m)] + mean_m E(x_m) - mean_k E(x'_k)``
    ``     = -mean_m S[m, y_m] + mean_k logsumexp_y S'[k, y]``

    (the two ``logsumexp`` of the data cancel: ``log p(y | x) + log p(x) = log p(x, y)``).

    Args:
        scores: ``(M, C)`` logits of the data; labels: ``(M,)``.
        sample_scores: ``(K, C)`` logits of the samples ``x' ~ p(x)``.

    Returns:
        ``(loss, dloss/dS (M, C), dloss/dS' (K, C))``: ``-1(y = .) / M`` and ``softmax(S') / K``.
    """
    check_scores(scores, "scores")
    check_scores(sample_scores, "sample_scores")
    check_labels(labels, scores.shape[0], scores.shape[1])
    if sample_scores.shape[1] != scores.shape[1]:
        raise ValueError(
            f"sample_scores must have {scores.shape[1]} class columns like scores; got "
            f"{sample_scores.shape[1]}"
        )
    xp = namespace_of(scores, sample_scores)
    M, K = scores.shape[0], sample_scores.shape[0]
    onehot = one_hot(labels, scores.shape[1], scores)
    loss = -float((onehot * scores).sum()) / M + float(logsumexp(sample_scores, axis=1).sum()) / K
    return loss, -onehot / M, xp.exp(log_softmax(sample_scores, axis=1)) / K
