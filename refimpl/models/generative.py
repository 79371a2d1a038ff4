"""The generative model ``p(I; w) = exp(f(I; w)) q(I) / Z(w)``, Eq. (3.4) (and (3.1), (5.1)).

Exponential tilting of the Gaussian white noise ``q = N(0, sigma^2 I)`` by a scoring
function ``f``: the ConvNet's (Eq. (3.5)), the prototype model's (Eq. (5.1)), or any object
with the same methods. ``Z(w) = E_q[exp f(I; w)]`` is not computed here (see
:mod:`refimpl.exact` for exact values in one and two dimensions).

For a piecewise-linear ``f`` (ReLU), on the piece of ``I`` (Theorem 1, Eq. (6.9)):

    log p(I) = const_delta - ||I - sigma^2 B_{w,delta}||^2 / (2 sigma^2),

i.e. ``N(sigma^2 B, sigma^2 I)`` truncated to the piece; with the paper's sigma = 1 the mean
is ``B`` itself. The gradient ``d log p / dI = B - I / sigma^2`` drives Langevin (6.10).

A scoring function provides ``score(I) -> (M,)``, ``grad_input(I)``,
``score_and_grad_input(I)``, and when piecewise linear ``activation_pattern(I)`` and
``linear_piece(I)``; images are ``(M, ...)`` in whatever shape it takes.
"""

from __future__ import annotations

from refimpl.models.reference import GaussianReference, squared_norm


class GenerativeModel:
    """``p(I; w) ~ exp(f(I; w)) q(I)`` with ``q = N(0, sigma^2 I)``, Eq. (3.4).

    Args:
        scoring: the scoring function ``f`` (e.g. a :class:`~refimpl.ConvNet` or a
            :class:`~refimpl.models.PrototypeModel`).
        sigma: standard deviation of the reference distribution (the paper: 1).
    """

    def __init__(self, scoring, sigma: float = 1.0):
        self.scoring = scoring
        self.reference = GaussianReference(sigma)

    @property
    def sigma(self) -> float:
        return self.reference.sigma

    @property
    def xp(self):
        return self.scoring.xp

    def to(self, backend=None, dtype=None) -> GenerativeModel:
        """The same model with its scoring function copied to ``backend`` and/or ``dtype``."""
        return GenerativeModel(self.scoring.to(backend, dtype), self.sigma)

    @property
    def dtype(self):
        return self.scoring.dtype

    def log_density_unnormalised(self, I):
        """``f(I) + log q(I) = log p(I) + log Z``, per image: ``(M, ...)`` -> ``(M,)``."""
        return self.scoring.score(I) + self.reference.log_density(I)

    def energy(self, I):
        """``U(I) = -f(I) + ||I||^2 / (2 sigma^2)``, ``(M,)``: ``p ~ exp(-U)``.

        Constants are dropped.
        """
        return -self.scoring.score(I) + squared_norm(I) / (2 * self.reference.variance)

    def grad_log_density(self, I):
        """``d log p / dI = df/dI - I / sigma^2 = B - I / sigma^2``, Eqs. (6.10), (9.2).

        Shaped like ``I``.
        """
        return self.scoring.grad_input(I) - I / self.reference.variance

    def energy_and_grad(self, I):
        """``(U(I) (M,), d log p / dI)`` from one forward and one backward pass."""
        f, grad_f = self.scoring.score_and_grad_input(I)
        energy = -f + squared_norm(I) / (2 * self.reference.variance)
        return energy, grad_f - I / self.reference.variance

    def piece_mean(self, I):
        """``sigma^2 B_{w,delta(I)}``: the mean of the Gaussian on ``I``'s piece (Theorem 1)."""
        _, B = self.scoring.linear_piece(I)
        return self.reference.variance * B

    def piece_log_constant(self, I):
        """``log p(I) + log Z + ||I - sigma^2 B||^2 / (2 sigma^2)`` per image, Eq. (6.9).

        Theorem 1 says this depends on ``I`` only through its piece: it equals
        ``alpha + sigma^2 ||B||^2 / 2 - (D/2) log(2 pi sigma^2)`` for every image of the piece.
        """
        residual = I - self.piece_mean(I)
        return self.log_density_unnormalised(I) + squared_norm(residual) / (
            2 * self.reference.variance
        )
