"""The ConvNet: a stack of :class:`ConvLayer`, its scoring function, backprop, and linear pieces.

Notation (Xie et al., sections 2, 3, 6): layer ``l`` maps ``x^(l-1)`` (``x^(0) = I``) to

    z^(l) = conv(x^(l-1), w^(l)) + b^(l)                 (pre-activation, Eq. (6.2))
    x^(l) = h(z^(l)) = delta^(l) * z^(l)                 (Eq. (6.5) for ReLU)
    delta^(l) = h'(z^(l)) = 1(z^(l) > 0)                 (activation pattern, Eq. (6.4))

and the scoring function of the generative ConvNet is ``f(I; w) = sum_{k,x} x^(L)_k(x)``,
Eq. (3.5). For ReLU (and linear) layers ``f`` is piecewise linear in ``I``:

    f(I; w) = alpha_{w,delta} + <I, B_{w,delta}>            (Eq. (6.8))

with ``B`` given by the top-down deconvolution ``B^(l-1) = conv^T(B^(l) * delta^(l))``,
``B^(L) = 1`` (Eq. (6.7)), and ``alpha`` by the matching recursion
``alpha_{l-1} = alpha_l + sum_{k,x} B^(l)_k(x) delta^(l)_{k,x} b_{l,k}``, ``alpha_L = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

from refimpl import conv as conv_module
from refimpl.backend import (
    get_namespace,
    host_rng,
    namespace_of,
    random_normal,
    resolve_dtype,
)
from refimpl.convnet.layer import ConvLayer, LayerSpec
from refimpl.validation import (
    check_finite,
    check_float_array,
    check_images,
    check_positive_int,
    shape_str,
)


@dataclass
class Forward:
    """Everything the bottom-up pass computes, per layer ``l = 1..L`` (lists of length L).

    ``inputs[l-1]`` is ``x^(l-1)`` (``inputs[0]`` is the image batch ``I``),
    ``pre_activations[l-1]`` is ``z^(l)`` and ``outputs[l-1]`` is ``x^(l) = h(z^(l))``,
    each ``(M, N_l, H_l, W_l)``.
    """

    inputs: list
    pre_activations: list
    outputs: list
    geometries: list


class ConvNet:
    """A ConvNet ``I -> x^(L)``: conv layers, each followed by its non-linearity, Eq. (2.1).

    Args:
        layers: a non-empty sequence of :class:`ConvLayer` whose channel counts chain,
            all of one dtype and one backend.
        conv_impl: ``"fast"`` (default) or ``"naive"``: which convolution kernels to use.

    All image arguments are batches ``I`` of shape ``(M, C, H, W)`` in a float dtype; they
    are cast to the network's dtype. Integer or bool images are refused (TypeError).
    """

    def __init__(self, layers, conv_impl: str = "fast"):
        layers = list(layers)
        if not layers:
            raise ValueError("a ConvNet needs at least one layer; got an empty list")
        for l, layer in enumerate(layers, start=1):
            if not isinstance(layer, ConvLayer):
                raise TypeError(f"layer {l} must be a ConvLayer; got {type(layer).__name__}")
        for l in range(1, len(layers)):
            below, above = layers[l - 1], layers[l]
            if above.in_channels != below.out_channels:
                raise ValueError(
                    f"layer {l + 1} expects {above.in_channels} input channel(s) (weight "
                    f"{shape_str(above.weight.shape)}) but layer {l} produces "
                    f"{below.out_channels} (weight {shape_str(below.weight.shape)})"
                )
        dtypes = {str(layer.dtype) for layer in layers}
        if len(dtypes) > 1:
            raise TypeError(f"all layers must share one dtype; got {sorted(dtypes)}")
        namespace_of(*[layer.weight for layer in layers])  # one backend
        self.layers = layers
        self.conv = conv_module.implementation(conv_impl)
        self.conv_impl = conv_impl
        self._geometry_cache: dict = {}

    # --- construction ------------------------------------------------------------------

    @classmethod
    def random(
        cls,
        in_channels: int,
        spec,
        seed=None,
        dtype=None,
        backend=None,
        weight_std: float | None = None,
        bias_std: float = 0.1,
        conv_impl: str = "fast",
    ) -> ConvNet:
        """A ConvNet with random parameters.

        Args:
            in_channels: channels of the input images (1 gray, 3 colour).
            spec: one entry per layer, each a :class:`LayerSpec`, a tuple
                ``(out_channels, kernel_size[, stride[, pad[, relu]]])`` or a dict.
            seed: int, None or a NumPy ``Generator``; the same seed gives the same network
                on every backend (parameters are drawn on the host).
            dtype: ``"float64"`` (default) or ``"float32"``.
            backend: ``"numpy"`` (default), ``"cupy"``, or None for ``$REFIMPL_BACKEND``.
            weight_std: standard deviation of the weights; default ``sqrt(2 / fan_in)``
                (He initialisation, which keeps activations O(1) through ReLU layers).
            bias_std: standard deviation of the biases (mean 0).
        """
        in_channels = check_positive_int(in_channels, "in_channels")
        specs = [LayerSpec.coerce(s) for s in spec]
        if not specs:
            raise ValueError("spec must list at least one layer")
        xp = get_namespace(backend)
        dtype = resolve_dtype(dtype)
        rng = host_rng(seed)
        layers, channels = [], in_channels
        for s in specs:
            fan_in = channels * s.kernel_size**2
            std = weight_std if weight_std is not None else (2.0 / fan_in) ** 0.5
            weight = random_normal(
                (s.out_channels, channels, s.kernel_size, s.kernel_size), std, rng, xp, dtype
            )
            bias = random_normal((s.out_channels,), bias_std, rng, xp, dtype)
            layers.append(ConvLayer(weight, bias, s.stride, s.pad, s.activation, s.padding_mode))
            channels = s.out_channels
        return cls(layers, conv_impl=conv_impl)

    def with_parameters(self, params) -> ConvNet:
        """A network of the same architecture with parameters ``[(W_1, b_1), ...]``."""
        params = list(params)
        if len(params) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} (weight, bias) pairs; got {len(params)}")
        for l, ((w, _), layer) in enumerate(zip(params, self.layers), start=1):
            if tuple(w.shape) != tuple(layer.weight.shape):
                raise ValueError(
                    f"layer {l}: weight must have shape {shape_str(layer.weight.shape)}; "
                    f"got {shape_str(w.shape)}"
                )
        layers = [layer.with_parameters(w, b) for layer, (w, b) in zip(self.layers, params)]
        return ConvNet(layers, conv_impl=self.conv_impl)

    def copy(self) -> ConvNet:
        """A deep copy (parameters copied)."""
        return self.with_parameters([(l.weight.copy(), l.bias.copy()) for l in self.layers])

    def to(self, backend=None, dtype=None) -> ConvNet:
        """A copy on ``backend`` and/or in ``dtype``."""
        return ConvNet([layer.to(backend, dtype) for layer in self.layers], self.conv_impl)

    def parameters(self) -> list:
        """``[(W_1, b_1), ..., (W_L, b_L)]``: the arrays themselves (update them in place)."""
        return [(layer.weight, layer.bias) for layer in self.layers]

    # --- description -------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def in_channels(self) -> int:
        return self.layers[0].in_channels

    @property
    def dtype(self):
        return self.layers[0].dtype

    @property
    def xp(self):
        return self.layers[0].xp

    @property
    def piecewise_linear(self) -> bool:
        """True when every non-linearity is ReLU or linear, so Eq. (6.8) holds exactly."""
        return all(layer.activation.piecewise_linear for layer in self.layers)

    def spec(self) -> list:
        """The architecture as a list of :class:`LayerSpec`."""
        return [layer.spec() for layer in self.layers]

    def geometries(self, image_shape) -> list:
        """The :class:`~refimpl.conv.ConvGeometry` of every layer for images ``(M, C, H, W)``.

        Raises ``ValueError`` naming the layer whose kernel is larger than its padded input.
        """
        key = tuple(int(s) for s in image_shape)
        if key not in self._geometry_cache:
            geoms, shape = [], key
            for l, layer in enumerate(self.layers, start=1):
                where = f"layer {l} (input {shape_str(shape)})"
                geom = layer.geometry(shape, where)
                geoms.append(geom)
                shape = geom.output_shape
            self._geometry_cache[key] = geoms
        return self._geometry_cache[key]

    def feature_shapes(self, image_shape) -> list:
        """``[(N_l, H_l, W_l), ...]``: the feature-map shape of each layer for one image."""
        return [g.output_shape[1:] for g in self.geometries(image_shape)]

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"ConvNet([\n  {inner}\n], conv_impl={self.conv_impl!r})"

    # --- bottom-up ---------------------------------------------------------------------

    def prepare_images(self, I, name: str = "I"):
        """Check an image batch ``(M, C, H, W)`` and cast it to the network's dtype.

        The batch must be float and finite, have the right channels and live on this backend.
        """
        check_images(I, name, channels=self.in_channels)
        namespace_of(I, self.layers[0].weight)
        return I if I.dtype == self.dtype else I.astype(self.dtype)

    def forward(self, I) -> Forward:
        """Bottom-up pass, Eqs. (2.1), (6.4)-(6.5): all inputs, pre-activations and outputs.

        Shapes: I ``(M, C, H, W)``; each list entry ``(M, N_l, H_l, W_l)``.
        """
        I = self.prepare_images(I)
        geoms = self.geometries(I.shape)
        # BEGIN SOLUTION lesson 2
        inputs, pre, outs = [], [], []
        x = I
        for layer, geom in zip(self.layers, geoms):
            z = self.conv.forward(geom, x, layer.weight, layer.bias)
            inputs.append(x)
            pre.append(z)
            x = layer.activation.h(self.xp, z)
            outs.append(x)
        return Forward(inputs, pre, outs, geoms)
        # END SOLUTION

    def score(self, I):
        """Scoring function ``f(I; w) = sum_{k, x} [F_k^(L) * I](x)``, Eq. (3.5).

        Shapes: ``(M, C, H, W) -> (M,)``.
        """
        return self.forward(I).outputs[-1].sum(axis=(1, 2, 3))

    def class_scores(self, I, class_weights):
        """Class scores ``f_c(I; w) = sum_k w_{c,k} [F_k^(L) * I]``, Eq. (2.2).

        ``class_weights`` is ``(n_classes, N_L)``; the result is ``(M, n_classes)``. When the
        top feature maps are larger than 1x1 each feature is summed over positions first, as
        in Eq. (3.5), so ``class_scores(I, ones((1, N_L)))[:, 0] == score(I)``.
        """
        check_float_array(class_weights, "class_weights")
        n_top = self.layers[-1].out_channels
        if class_weights.ndim != 2 or class_weights.shape[1] != n_top:
            raise ValueError(
                f"class_weights must have shape (n_classes, {n_top}); got "
                f"{shape_str(class_weights.shape)}"
            )
        features = self.forward(I).outputs[-1].sum(axis=(2, 3))  # (M, N_L)
        return features @ class_weights.astype(self.dtype).T

    def activation_pattern(self, I) -> list:
        """Activation variables ``delta^(l) = h'(z^(l))`` per layer: Eq. (6.4), (9.1) for smooth h.

        Returns ``[(M, N_l, H_l, W_l), ...]``: boolean for ReLU (``z > 0``) and linear
        layers (all True), float for softplus.
        """
        # BEGIN SOLUTION lesson 2
        fwd = self.forward(I)
        return [
            layer.activation.h_prime(self.xp, z)
            for layer, z in zip(self.layers, fwd.pre_activations)
        ]
        # END SOLUTION

    # --- top-down: backprop ------------------------------------------------------------

    def _backprop(self, fwd: Forward, top_grad, want_input: bool, want_params: bool):
        """Reverse-mode chain rule through the cached forward pass, Eqs. (7.2)-(7.4).

        ``top_grad`` is ``d(objective)/dx^(L)``. Returns
        ``(d/dI or None, [(dW, db), ...] or None)``.
        """
        # BEGIN SOLUTION lesson 3
        grad_x = top_grad
        param_grads = []
        for l in range(self.depth - 1, -1, -1):
            layer, geom = self.layers[l], fwd.geometries[l]
            grad_z = grad_x * layer.activation.h_prime(self.xp, fwd.pre_activations[l])
            if want_params:
                param_grads.append(
                    (
                        self.conv.weight_grad(geom, fwd.inputs[l], grad_z),
                        self.conv.bias_grad(grad_z),
                    )
                )
            if l > 0 or want_input:
                grad_x = self.conv.adjoint(geom, grad_z, layer.weight)
        return (grad_x if want_input else None), (param_grads[::-1] if want_params else None)
        # END SOLUTION

    def backward(self, fwd: Forward, top_grad, want_input: bool = True, want_params: bool = True):
        """Backprop any upstream gradient ``top_grad = d(objective)/dx^(L)``, Eqs. (7.2)-(7.4).

        The chain rule through the cached forward pass ``fwd`` (from :meth:`forward` on this
        network): a classifier head on the top features hands down ``d(loss)/dx^(L)`` and gets
        the gradients with respect to the images and to every layer's parameters. With
        ``top_grad = 1`` this is :meth:`grad_input` / :meth:`grad_params` of ``f`` (Eq. (3.5)).

        Args:
            fwd: the :class:`Forward` of a batch ``I (M, C, H, W)``.
            top_grad: ``(M, N_L, H_L, W_L)``, shaped like ``fwd.outputs[-1]``; float, finite,
                on this network's backend (cast to its dtype).
            want_input, want_params: which gradients to compute (at least one).

        Returns:
            ``(d/dI (M, C, H, W) or None, [(dW_1, db_1), ..., (dW_L, db_L)] or None)``; the
            parameter gradients are summed over the batch.
        """
        if not isinstance(fwd, Forward):
            raise TypeError(f"fwd must be the Forward of this network; got {type(fwd).__name__}")
        if len(fwd.pre_activations) != self.depth:
            raise ValueError(
                f"fwd holds {len(fwd.pre_activations)} layer(s) but this network has {self.depth}"
            )
        check_float_array(top_grad, "top_grad")
        top = fwd.outputs[-1]
        if tuple(top_grad.shape) != tuple(top.shape):
            raise ValueError(
                f"top_grad must have the shape of the top feature map {shape_str(top.shape)}; "
                f"got {shape_str(top_grad.shape)}"
            )
        namespace_of(top_grad, self.layers[0].weight)
        check_finite(top_grad, "top_grad")
        if not (want_input or want_params):
            raise ValueError("backward: ask for want_input, want_params or both")
        top_grad = top_grad if top_grad.dtype == self.dtype else top_grad.astype(self.dtype)
        return self._backprop(fwd, top_grad, want_input, want_params)

    def _ones_top(self, fwd: Forward):
        top = fwd.outputs[-1]
        return self.xp.ones(top.shape, dtype=top.dtype)

    def grad_input(self, I):
        """``df/dI`` by hand-written backprop, Eq. (9.2); ``(M, C, H, W) -> (M, C, H, W)``.

        Row ``m`` is the gradient of ``f(I_m)``: the reconstruction ``B_{w,delta(I_m)}``.
        """
        fwd = self.forward(I)
        return self._backprop(fwd, self._ones_top(fwd), want_input=True, want_params=False)[0]

    def score_and_grad_input(self, I):
        """``(f(I) (M,), df/dI (M, C, H, W))`` from one forward and one backward pass."""
        fwd = self.forward(I)
        grad = self._backprop(fwd, self._ones_top(fwd), want_input=True, want_params=False)[0]
        return fwd.outputs[-1].sum(axis=(1, 2, 3)), grad

    def grad_params(self, I) -> list:
        """Gradients of ``sum_m f(I_m; w)`` w.r.t. every layer's parameters, Eqs. (7.2)-(7.4).

        Returns ``[(dW_1, db_1), ..., (dW_L, db_L)]`` shaped like the parameters.
        """
        fwd = self.forward(I)
        return self._backprop(fwd, self._ones_top(fwd), want_input=False, want_params=True)[1]

    def score_and_grad_params(self, I):
        """``(f(I) (M,), [(dW, db), ...])`` from one forward and one backward pass.

        The gradients are of ``sum_m f(I_m)``, as :meth:`grad_params` returns them.
        """
        fwd = self.forward(I)
        grads = self._backprop(fwd, self._ones_top(fwd), want_input=False, want_params=True)[1]
        return fwd.outputs[-1].sum(axis=(1, 2, 3)), grads

    # --- top-down: the linear piece ----------------------------------------------------

    def piece_from_pattern(self, pattern, image_shape):
        """``(alpha_{w,delta}, B_{w,delta})`` of the piece with activation pattern ``delta``.

        Top-down deconvolution, Eq. (6.7): ``B^(L) = 1``,
        ``B^(l-1) = conv^T(B^(l) * delta^(l), w^(l))``; and the matching recursion
        ``alpha_{l-1} = alpha_l + sum_{k,x} B^(l)_k(x) delta^(l)_{k,x} b_{l,k}``, ``alpha_L = 0``.
        Only ``delta`` and ``w`` enter, no image: every image of the piece shares them.

        Args:
            pattern: ``[(M, N_l, H_l, W_l), ...]`` as returned by :meth:`activation_pattern`:
                binary (bool, or 0/1 numbers) for ReLU and linear layers, ``h'(z)`` in
                ``[0, 1]`` for softplus; anything else is refused (``ValueError``), since
                it is no activation pattern and its "piece" would be meaningless.
            image_shape: ``(C, H, W)`` of the images (the first layer's adjoint needs it).

        Returns:
            ``alpha (M,)`` and ``B (M, C, H, W)``, with ``f(I) = alpha + <I, B>`` (Eq. (6.8))
            for every ``I`` of the piece when the network is piecewise linear.
        """
        pattern = list(pattern)
        if len(pattern) != self.depth:
            raise ValueError(
                f"pattern must have one array per layer ({self.depth}); got {len(pattern)}"
            )
        batch = pattern[0].shape[0]
        geoms = self.geometries((batch,) + tuple(int(s) for s in image_shape))
        for l, (delta, geom) in enumerate(zip(pattern, geoms), start=1):
            if tuple(delta.shape) != geom.output_shape:
                raise ValueError(
                    f"pattern[{l - 1}] must have shape {shape_str(geom.output_shape)} (layer {l}); "
                    f"got {shape_str(delta.shape)}"
                )
            self._check_pattern_values(delta, l)
        # BEGIN SOLUTION lesson 2
        xp = self.xp
        coeff = xp.ones(geoms[-1].output_shape, dtype=self.dtype)  # B^(L)
        alpha = xp.zeros((batch,), dtype=self.dtype)
        for l in range(self.depth - 1, -1, -1):
            layer = self.layers[l]
            gated = coeff * pattern[l]  # B^(l)_k(x) delta^(l)_{k,x}
            alpha = alpha + gated.sum(axis=(2, 3)) @ layer.bias
            coeff = self.conv.adjoint(geoms[l], gated, layer.weight)  # B^(l-1), Eq. (6.7)
        return alpha, coeff
        # END SOLUTION

    def _check_pattern_values(self, delta, l: int):
        """Layer ``l``'s pattern must be one its activation can produce (see piece_from_pattern)."""
        if delta.dtype == bool:
            return
        kind = self.layers[l - 1].activation
        if delta.dtype.kind not in "uif":
            raise TypeError(
                f"pattern[{l - 1}] must be boolean or real; got dtype {delta.dtype} (layer {l})"
            )
        xp = self.xp
        if kind.piecewise_linear:
            bad = ~((delta == 0) | (delta == 1))
            allowed = "0 or 1 (a ReLU or linear unit is off or on)"
        else:
            bad = ~((delta >= 0) & (delta <= 1))  # also catches NaN
            allowed = f"in [0, 1] (h' of {kind.name})"
        if bool(xp.any(bad)):
            raise ValueError(
                f"pattern[{l - 1}] (layer {l}, {kind.name}) must hold values {allowed}; "
                f"{int(bad.sum())} of its values are not"
            )

    def linear_piece(self, I):
        """``(alpha (M,), B (M, C, H, W))`` of the piece containing each image, Eq. (6.8).

        ``f(I_m) = alpha_m + <I_m, B_m>``; ``B`` is computed by the top-down deconvolution of
        Eq. (6.7) from the activation pattern (see :meth:`piece_from_pattern`).
        """
        I = self.prepare_images(I)
        return self.piece_from_pattern(self.activation_pattern(I), I.shape[1:])
