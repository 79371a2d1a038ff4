"""The prototype model, Eqs. (5.1)-(5.8): one layer of K filters that cover the whole image.

In vector form, with images ``I`` in ``R^D`` (rows of an ``(M, D)`` array), filters
``W (K, D)`` (row ``k`` is ``w_k``) and biases ``b (K,)``:

    f(I; w) = sum_k h(<I, w_k> + b_k)                         (5.1)
    delta_k(I; w) = 1(<I, w_k> + b_k > 0)                     (5.3)
    f = alpha + <I, B>, B = sum_k delta_k w_k, alpha = sum_k delta_k b_k   (5.4)-(5.5)

so ``p`` is ``N(sigma^2 B, sigma^2 I)`` on each of the (at most 2^K) pieces cut out by the K
hyperplanes. The maximum-likelihood gradient (5.8) matches ``delta_k`` frequencies and the
averages of the images on which ``delta_k`` is on.

It is the generative ConvNet with a single layer whose kernel covers the image
(:meth:`PrototypeModel.as_convnet`); ``tests/test_models.py`` shows the two agree.
"""

from __future__ import annotations

from refimpl.activations import get_activation
from refimpl.backend import get_namespace, host_rng, namespace_of, random_normal, to_backend
from refimpl.convnet import ConvLayer, ConvNet
from refimpl.validation import check_finite, check_float_array, check_ndim, shape_str


class PrototypeModel:
    """Scoring function ``f(I) = sum_k h(<I, w_k> + b_k)`` on vectors ``I (M, D)``, Eq. (5.1).

    Args:
        weight: ``(K, D)`` filters/basis functions ``w_k`` as rows.
        bias: ``(K,)``.
        activation: ``"relu"`` (the paper's), ``"linear"`` or ``"softplus"`` (section 9).
    """

    def __init__(self, weight, bias, activation: str = "relu"):
        check_float_array(weight, "weight")
        check_ndim(weight, 2, "weight", "(K, D)")
        check_float_array(bias, "bias")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(
                f"bias must have shape ({weight.shape[0]},) to match weight "
                f"{shape_str(weight.shape)}; got {shape_str(bias.shape)}"
            )
        check_finite(weight, "weight")
        check_finite(bias, "bias")
        self.activation = get_activation(activation)
        self.weight, self.bias = weight, bias.astype(weight.dtype)

    @classmethod
    def random(
        cls,
        n_filters: int,
        dim: int,
        seed=None,
        scale: float = 1.0,
        bias_std: float = 1.0,
        dtype=None,
        backend=None,
        activation: str = "relu",
    ) -> PrototypeModel:
        """K filters of dimension D with N(0, scale^2 / D) entries and N(0, bias_std^2) biases."""
        xp, rng = get_namespace(backend), host_rng(seed)
        weight = random_normal((n_filters, dim), scale / dim**0.5, rng, xp, dtype)
        bias = random_normal((n_filters,), bias_std, rng, xp, dtype)
        return cls(weight, bias, activation)

    @property
    def xp(self):
        return namespace_of(self.weight)

    @property
    def dtype(self):
        return self.weight.dtype

    @property
    def n_filters(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    @property
    def piecewise_linear(self) -> bool:
        return self.activation.piecewise_linear

    def prepare_images(self, I, name: str = "I"):
        """Check ``I (M, D)`` (float, finite, right D) and cast it to the model's dtype."""
        check_float_array(I, name)
        check_ndim(I, 2, name, "(M, D)")
        if I.shape[1] != self.dim:
            raise ValueError(
                f"{name} has dimension {I.shape[1]} (shape {shape_str(I.shape)}) but "
                f"the filters have {self.dim}"
            )
        check_finite(I, name)
        return I if I.dtype == self.dtype else I.astype(self.dtype)

    def responses(self, I):
        """Filter responses ``r_k = <I, w_k> + b_k``: ``(M, D)`` -> ``(M, K)``."""
        I = self.prepare_images(I)
        return I @ self.weight.T + self.bias

    def score(self, I):
        """``f(I) = sum_k h(r_k)``, Eq. (5.1): ``(M, D)`` -> ``(M,)``."""
        # BEGIN SOLUTION lesson 5
        return self.activation.h(self.xp, self.responses(I)).sum(axis=1)
        # END SOLUTION

    def activation_pattern(self, I):
        """``delta_k = h'(r_k)``, Eq. (5.3): ``(M, K)`` (bool for ReLU)."""
        # BEGIN SOLUTION lesson 5
        return self.activation.h_prime(self.xp, self.responses(I))
        # END SOLUTION

    def grad_input(self, I):
        """``df/dI = sum_k delta_k w_k = B``: ``(M, D)``."""
        return self.activation_pattern(I) @ self.weight

    def score_and_grad_input(self, I):
        """``(f(I) (M,), df/dI (M, D))``: the samplers' interface.

        The two are computed separately: the responses are cheap to recompute.
        """
        return self.score(I), self.grad_input(I)

    def piece_from_pattern(self, pattern):
        """``(alpha, B)`` of the pieces of patterns ``(M, K)``, Eq. (5.5).

        ``alpha = sum_k delta_k b_k`` and ``B = sum_k delta_k w_k``.
        """
        # BEGIN SOLUTION lesson 5
        gate = pattern.astype(self.dtype)
        return gate @ self.bias, gate @ self.weight
        # END SOLUTION

    def linear_piece(self, I):
        """``(alpha (M,), B (M, D))`` of each image's piece; ``f = alpha + <I, B>`` for ReLU."""
        return self.piece_from_pattern(self.activation_pattern(I))

    def grad_params(self, I):
        """Gradients of ``sum_m f(I_m)`` with respect to the parameters, cf. (5.8).

        ``(dW (K, D), db (K,)) = (delta^T I, sum_m delta)``.
        """
        # BEGIN SOLUTION lesson 5
        I = self.prepare_images(I)
        delta = self.activation.h_prime(self.xp, I @ self.weight.T + self.bias).astype(self.dtype)
        return delta.T @ I, delta.sum(axis=0)
        # END SOLUTION

    def with_parameters(self, weight, bias) -> PrototypeModel:
        return PrototypeModel(weight, bias, self.activation.name)

    def to(self, backend=None, dtype=None) -> PrototypeModel:
        """A copy on ``backend`` (name or namespace; default: the current) and/or in ``dtype``."""
        backend = self.xp if backend is None else backend
        return self.with_parameters(
            to_backend(self.weight.copy(), backend, dtype),
            to_backend(self.bias.copy(), backend, dtype),
        )

    def as_convnet(self, image_shape):
        """The same model as a one-layer :class:`~refimpl.ConvNet` on ``image_shape = (C, H, W)``.

        Its single kernel covers the whole image, so each filter has one position and
        ``ConvNet.score(I.reshape(M, C, H, W)) == PrototypeModel.score(I)``.
        """
        c, h, w = image_shape
        if c * h * w != self.dim or h != w:
            raise ValueError(
                f"image_shape {tuple(image_shape)} must be square with C*H*W = D = {self.dim}"
            )
        kernel = self.weight.reshape(self.n_filters, c, h, w)
        return ConvNet(
            [ConvLayer(kernel.copy(), self.bias.copy(), activation=self.activation.name)]
        )
