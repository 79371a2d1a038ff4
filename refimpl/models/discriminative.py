"""The discriminative ConvNet (2.3) and Dai, Lu & Wu's two batch log-likelihoods, on class scores.

Dai, Lu & Wu, "Generative modeling of convolutional neural networks" (ICLR 2015),
supplementary section A.

Everything here acts on a matrix of class scores ``S (M, C)``, ``S[m, c] = f_c(I_m; w)``
(Eq. (2.2); :meth:`refimpl.ConvNet.class_scores`, or one scoring function per class), and on
integer labels ``y (M,)``, ``0 <= y_m < C``. The model that produced the scores does not
matter; the chain rule to its parameters is ``dl/dw = sum_{m,c} (dl/dS[m,c]) df_c(I_m)/dw``.

* :func:`softmax_posterior`, Eq. (2.3): ``p(c | I) = exp(f_c + b_c) / sum_c' exp(f_c' + b_c')``.
* :func:`discriminative_log_likelihood`: ``l_D = sum_i log( exp S[i, y_i] / sum_c exp S[i, c] )``,
  the log of (2.3) at the labels; the normaliser sums over **classes**, the example fixed.
* :func:`generative_log_likelihood`: ``l_G = sum_i log( exp S[i, y_i] / sum_j exp S[j, y_i] )``,
  the batch version of ``log p_c(I) = f_c(I) - log Z_c`` (3.1) with ``Z_c`` estimated on the batch;
  the normaliser sums over **examples**, the class fixed.

Both are the log of a softmax, over axis 1 (classes) for ``l_D`` and over axis 0 (examples)
for ``l_G`` (:func:`log_softmax`), and so are their gradients with respect to the scores:

    dl_D / dS[m, c] = 1(y_m = c) - p(c | I_m)                          (rows sum to 0)
    dl_G / dS[m, c] = 1(y_m = c) - n_c exp S[m, c] / sum_j exp S[j, c]  (columns sum to 0)

with ``n_c`` the number of examples labelled ``c``. Consequences: ``l_D`` does not change when a
constant is added to a row (one example's scores), ``l_G`` does not change when a constant is
added to a column (one class's scores, e.g. its bias ``b_c``): the generative likelihood
leaves the biases to the normalisers ``Z_c``, which is Proposition 1 read backwards.

All functions are pure, accept NumPy or CuPy arrays, and are numerically stable (the largest
score is subtracted before exponentiating).
"""

from __future__ import annotations

from refimpl.backend import namespace_of
from refimpl.validation import check_array, check_float_array, shape_str

__all__ = [
    "check_labels",
    "check_scores",
    "discriminative_log_likelihood",
    "discriminative_score_gradient",
    "generative_log_likelihood",
    "generative_score_gradient",
    "log_softmax",
    "logsumexp",
    "one_hot",
    "softmax_posterior",
]


def check_scores(scores, name: str = "scores"):
    """Class scores must be a finite float array ``(M, C)``."""
    check_array(scores, name, 2, "(M, C)")


def check_labels(labels, n_examples: int, n_classes: int, name: str = "labels"):
    """Integer labels ``(n_examples,)`` in ``[0, n_classes)``, else an error naming ``name``."""
    kind = getattr(getattr(labels, "dtype", None), "kind", None)
    if kind not in ("i", "u"):
        raise TypeError(
            f"{name} must be an integer array ({n_examples},); got {type(labels).__name__}"
            + (f" of dtype {labels.dtype}" if hasattr(labels, "dtype") else "")
        )
    if tuple(labels.shape) != (n_examples,):
        raise ValueError(
            f"{name} must have shape ({n_examples},) (one per example); got "
            f"{shape_str(labels.shape)}"
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, {n_classes}) (one per class); got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )


def _check_labels(labels, scores):
    """``labels`` must be integers ``(M,)`` in ``[0, C)`` for scores ``(M, C)``."""
    check_labels(labels, scores.shape[0], scores.shape[1])


def one_hot(labels, n_classes: int, like):
    """``(M, C)`` indicator ``1(y_m = c)`` in the dtype and namespace of ``like``."""
    xp = namespace_of(like)
    onehot = xp.zeros((labels.shape[0], n_classes), dtype=like.dtype)
    onehot[xp.arange(labels.shape[0]), labels] = 1
    return onehot


def logsumexp(values, axis: int = 1):
    """``log sum exp`` along ``axis`` without overflow (the largest entry is factored out).

    ``(M, C) -> (M,)`` for ``axis=1``; the log-normaliser of :func:`log_softmax`.
    """
    xp = namespace_of(values)
    top = values.max(axis=axis, keepdims=True)
    return (top + xp.log(xp.exp(values - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def log_softmax(scores, axis: int = 1):
    """``log( exp S / sum exp S )`` along ``axis``, without overflow: ``(M, C) -> (M, C)``.

    ``axis=1`` normalises each row over the classes, the log of Eq. (2.3);
    ``axis=0`` normalises each column over the examples, the batch normaliser of ``l_G``.
    Stable: ``S - max`` is exponentiated, so scores of 1e3 or -1e3 are fine.
    """
    check_scores(scores)
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (over examples) or 1 (over classes); got {axis!r}")
    # BEGIN SOLUTION lesson 4
    xp = namespace_of(scores)
    shifted = scores - scores.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    # END SOLUTION


def softmax_posterior(scores, biases=None):
    """Discriminative ConvNet, Eq. (2.3): ``p(c | I_m) = exp(f_c + b_c) / sum_c' exp(f_c' + b_c')``.

    Args:
        scores: ``(M, C)`` class scores ``f_c(I_m)``, Eq. (2.2).
        biases: ``(C,)`` bias terms ``b_c``, or None for zeros.

    Returns:
        ``(M, C)`` posterior probabilities; each row sums to 1.
    """
    check_scores(scores)
    if biases is not None:
        check_float_array(biases, "biases")
        if tuple(biases.shape) != (scores.shape[1],):
            raise ValueError(
                f"biases must have shape ({scores.shape[1]},) to match scores "
                f"{shape_str(scores.shape)}; got {shape_str(biases.shape)}"
            )
    # BEGIN SOLUTION lesson 4
    xp = namespace_of(scores, biases)
    logits = scores if biases is None else scores + biases[None, :]
    return xp.exp(log_softmax(logits, axis=1))
    # END SOLUTION


def discriminative_log_likelihood(scores, labels) -> float:
    """``l_D = sum_i log( exp S[i, y_i] / sum_c exp S[i, c] )``: log of (2.3) at the labels.

    The discriminative batch log-likelihood of Dai, Lu & Wu.

    Args:
        scores: ``(M, C)``, ``S[i, c] = f_c(x_i)`` (biases included if any).
        labels: ``(M,)`` integers in ``[0, C)``.

    Returns:
        The sum over the batch, a float (``<= 0``).
    """
    check_scores(scores)
    _check_labels(labels, scores)
    # BEGIN SOLUTION lesson 4
    xp = namespace_of(scores)
    return float(log_softmax(scores, axis=1)[xp.arange(scores.shape[0]), labels].sum())
    # END SOLUTION


def generative_log_likelihood(scores, labels) -> float:
    """``l_G = sum_i log( exp S[i, y_i] / sum_j exp S[j, y_i] )``: the batch tilted likelihood.

    The generative batch log-likelihood of Dai, Lu & Wu: ``log p_c(x) = f_c(x) - log Z_c``
    (3.1) with ``Z_c`` replaced by the sum of ``exp f_c`` over the batch examples ``x_j`` (all
    of them, whatever their labels), the class ``y_i`` fixed.

    Args:
        scores: ``(M, C)``, ``S[j, c] = f_c(x_j)``.
        labels: ``(M,)`` integers in ``[0, C)``.

    Returns:
        The sum over the batch, a float (``<= 0``).
    """
    check_scores(scores)
    _check_labels(labels, scores)
    # BEGIN SOLUTION lesson 4
    xp = namespace_of(scores)
    return float(log_softmax(scores, axis=0)[xp.arange(scores.shape[0]), labels].sum())
    # END SOLUTION


def discriminative_score_gradient(scores, labels):
    """``dl_D / dS[m, c] = 1(y_m = c) - p(c | x_m)``: ``(M, C)``; each row sums to 0.

    The summation in ``l_D``'s normaliser runs over classes with the example fixed, so each
    example's gradient pushes its own class up and every class in proportion to (2.3) down.
    """
    check_scores(scores)
    _check_labels(labels, scores)
    # BEGIN SOLUTION lesson 4
    xp = namespace_of(scores)
    return one_hot(labels, scores.shape[1], scores) - xp.exp(log_softmax(scores, axis=1))
    # END SOLUTION


def generative_score_gradient(scores, labels):
    """``dl_G / dS[m, c] = 1(y_m = c) - n_c exp S[m, c] / sum_j exp S[j, c]``: ``(M, C)``.

    Each column sums to 0. ``n_c`` is the number of examples labelled ``c``: each of them
    contributes a normaliser over the batch for class ``c``, so ``f_c`` is pushed up at its own
    examples and down at every example in proportion to ``exp f_c``, regardless of the other
    classes.
    """
    check_scores(scores)
    _check_labels(labels, scores)
    # BEGIN SOLUTION lesson 4
    xp = namespace_of(scores)
    onehot = one_hot(labels, scores.shape[1], scores)
    counts = onehot.sum(axis=0, keepdims=True)  # n_c, (1, C)
    return onehot - counts * xp.exp(log_softmax(scores, axis=0))
    # END SOLUTION
