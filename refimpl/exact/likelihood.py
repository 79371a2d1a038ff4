"""The exact log-likelihood and its gradient in one and two dimensions, Xie et al. Eqs. (7.1)-(7.2).

With the exact distribution of :mod:`refimpl.exact.distribution`, the mean log-likelihood of
data ``I_1..I_M`` and its gradient need no Monte Carlo:

    L(w) = (1/M) sum_m f(I_m; w) - log Z(w)                                 (7.1)
    dL/dw = (1/M) sum_m df(I_m; w)/dw - E_w[df/dw]                          (5.8), (7.2)

``E_w[df/dw] = sum_A P(A) df/dw(E[I | A])`` exactly, because ``df/dw`` is affine in ``I``
on each piece ``A``. Algorithm 1 replaces this expectation by Langevin samples; these
functions are what its estimate is checked against.

Parameters are handled as one flat float64 vector (:func:`flatten`,
:func:`with_flat_parameters`): for a ConvNet the layers in order, each weight then bias; for
the prototype model ``W`` then ``b``. Host-only, like the exact distribution: the flat
vectors are NumPy arrays whatever the model's backend.
"""

from __future__ import annotations

import numpy as np

from refimpl.backend import to_backend, to_numpy
from refimpl.exact.distribution import exact_distribution
from refimpl.models import GenerativeModel


def _pairs(params):
    """Prototype: one ``(W, b)`` tuple; ConvNet: a list of them. Always a list of pairs."""
    return params if isinstance(params, list) else [params]


def flatten(params) -> np.ndarray:
    """Concatenate ``[(W_1, b_1), ...]`` (or one ``(W, b)``) into one float64 host vector."""
    return np.concatenate(
        [to_numpy(a).astype(float).ravel() for pair in _pairs(params) for a in pair]
    )


def current_parameters(scoring):
    """The parameters of a ConvNet (``[(W, b), ...]``) or of a prototype model (``(W, b)``)."""
    if hasattr(scoring, "parameters"):
        return scoring.parameters()
    return (scoring.weight, scoring.bias)


def with_flat_parameters(scoring, vector):
    """A copy of ``scoring`` with the parameters in the flat ``vector`` (see :func:`flatten`).

    The new parameters are placed on ``scoring``'s backend, in its dtype.
    """
    pairs, out, i = _pairs(current_parameters(scoring)), [], 0
    for w, b in pairs:
        new = []
        for a in (w, b):
            values = np.asarray(vector[i : i + a.size], float).reshape(a.shape)
            new.append(to_backend(values, scoring.xp, a.dtype))
            i += a.size
        out.append(tuple(new))
    if hasattr(scoring, "parameters"):
        return scoring.with_parameters(out)
    return scoring.with_parameters(*out[0])


def log_likelihood(scoring, sigma, data, event_shape, rtol: float = 1e-12) -> float:
    """Exact ``L(w) = mean_m f(I_m; w) - log Z(w)``, Eq. (7.1), for D = 1 or 2.

    Args:
        scoring: a piecewise-linear scoring function (any backend; ``Z`` is computed on
            the host).
        sigma: the reference's standard deviation.
        data: ``(M, *event_shape)`` observed images.
        event_shape: one image's shape, of size 1 or 2.
        rtol: relative accuracy of the 2-D quadrature of ``Z``.
    """
    model = GenerativeModel(scoring, sigma)
    exact = exact_distribution(model, event_shape, rtol=rtol)
    return float(np.mean(to_numpy(scoring.score(data)))) - exact.log_Z


def ml_gradient(model, data, event_shape, rtol: float = 1e-12) -> np.ndarray:
    """``mean_m df(I_m)/dw - E_w[df/dw]`` as a flat vector (Eqs. (5.8), (7.2)).

    Args:
        model: a :class:`~refimpl.models.GenerativeModel` with a piecewise-linear scoring
            function, D = 1 or 2.
        data: ``(M, *event_shape)`` observed images.
        event_shape: one image's shape.

    Returns:
        ``(P,)``, ordered as :func:`flatten` orders the parameters.
    """
    # BEGIN SOLUTION lesson 8
    exact = exact_distribution(model, event_shape, rtol=rtol)
    data_term = flatten(model.scoring.grad_params(data)) / len(data)
    return data_term - flatten(exact.expected_param_grads())
    # END SOLUTION
