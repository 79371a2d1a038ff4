"""The non-linearities ``h`` of Xie et al., Eq. (2.1), with their derivatives ``h'``.

Every unit of the ConvNet and of the prototype model computes ``h(r)`` of a filter response
``r``; its derivative ``h'(r)`` is the activation variable of Eq. (6.4) (ReLU) and Eq. (9.1)
(a general ``h``), which gates the top-down pass.

==========  ===========================  ===============================  ================
name        ``h(r)``                     ``h'(r)``                         piecewise linear
==========  ===========================  ===============================  ================
relu        ``max(0, r)``                ``1(r > 0)`` (bool), Eq. (6.4)    yes: Theorem 1
linear      ``r``                        ``1`` (bool)                      yes
softplus    ``log(1 + e^r)``, section 9  ``1 / (1 + e^-r)``, Eq. (9.1)     no
==========  ===========================  ===============================  ================

ReLU is the paper's choice: it makes ``f`` piecewise linear and the model piecewise
Gaussian (Theorem 1). The linear unit is the fully connected top filter of experiment 2.
Softplus is the smooth non-linearity of section 9, under which Proposition 2 survives and
Theorem 1 does not.

All functions take the array namespace ``xp`` first, so they run on NumPy and CuPy alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Activation:
    """A non-linearity ``h`` with its derivative ``h'`` (the activation variables, Eq. (9.1))."""

    name: str
    h: Callable
    h_prime: Callable
    piecewise_linear: bool


def relu(xp, z):
    """``h(z) = max(0, z)``, elementwise."""
    return xp.maximum(z, 0)


def relu_prime(xp, z):
    """``delta = 1(z > 0)``, Eq. (6.4): a boolean array shaped like ``z``."""
    return z > 0


def identity(xp, z):
    """``h(z) = z``: a linear unit."""
    return z


def ones(xp, z):
    """``h'(z) = 1`` of a linear unit: an all-True boolean array shaped like ``z``."""
    return xp.ones(z.shape, dtype=bool)


def softplus(xp, z):
    """Softplus ``h(z) = log(1 + e^z)``, elementwise; no overflow for large ``z`` (section 9)."""
    # BEGIN SOLUTION lesson 12
    return xp.logaddexp(0, z)
    # END SOLUTION


def sigmoid(xp, z):
    """``h'(z)`` of softplus, Eq. (9.1): the logistic ``1 / (1 + e^-z)``, elementwise.

    Computed without overflow for any ``z``.
    """
    # BEGIN SOLUTION lesson 12
    # exp(-log(1 + e^-z)) = 1 / (1 + e^-z): logaddexp cannot overflow, and unlike
    # (1 + tanh(z/2)) / 2 it keeps its relative accuracy for very negative z (e^-40, not 0)
    return xp.exp(-xp.logaddexp(0, -z))
    # END SOLUTION


ACTIVATIONS = {
    "relu": Activation("relu", relu, relu_prime, True),
    "linear": Activation("linear", identity, ones, True),
    "softplus": Activation("softplus", softplus, sigmoid, False),
}


def get_activation(name: str) -> Activation:
    """The :class:`Activation` called ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]
