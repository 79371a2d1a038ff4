"""Hyperparameters of a learning run (Algorithm 1, contrastive divergence, layer growing).

One dataclass holds everything a run depends on, so that ``config.json`` in a run folder
is enough to reproduce or resume it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from refimpl.convnet.layer import LayerSpec


@dataclass
class LearningConfig:
    """Everything a learning run depends on.

    Architecture:
        spec: the layers, bottom to top, as ``(out_channels, kernel, stride, pad[, relu])``.
        top_filter: add a single linear filter covering the whole top feature map (experiment
            2's fully connected top, Eq. (4.2)); re-created whenever a layer is grown, since
            its input shape changes.
        grow: learn the layers one at a time (section 8): layer 1, then layers 1-2, ...
            ``False`` learns all layers from the start (experiment 3).
        refine_lower: while learning a new layer, keep updating the lower ones by backprop
            (the paper's choice); ``False`` freezes them.

    Learning (Algorithm 1):
        iterations_per_layer: ``T`` learning iterations per growing stage (all of them if
            ``grow`` is False).
        chains: ``M~``, the number of parallel synthesis chains (ignored by CD, which uses one
            chain per observed image).
        langevin_steps: ``L`` Langevin steps per iteration (CD: ``k``).
        step_size: Langevin ``eps``; sigma: the reference ``q = N(0, sigma^2 I)``.
        method: ``"ml"`` (persistent chains started at 0, Algorithm 1) or ``"cd"``
            (contrastive divergence: chains restart at the observed images each iteration).
        optimizer: ``"sgd"`` (the paper's ``w <- w + eta (H_obs - H_syn)``) or ``"adam"``.
        learning_rate: ``eta``, one number or one per layer (the top filter counts as a layer).
        normalise_by_area: divide each layer's gradient by its output feature-map area
            ``H_l x W_l`` (lab practice: makes one learning rate fit layers of any size).
        clip: if set, scale each layer's gradient down to at most this norm.
        init_std: standard deviation of the initial weights (biases start at 0): a number,
            ``"he"`` (``sqrt(2 / fan_in)``, which keeps a new layer's responses on the scale of
            its input), or one entry per layer. Algorithm 1 says ``w = 0``, but at ``w = 0``
            every ReLU sits on its kink and all gradients vanish, so learning starts from
            random weights. A layer grown on top of trained ones needs the ``"he"`` scale:
            with tiny weights under large inputs, its first updates are huge relative to its
            weights and kill it (all its units off, gradients zero for good).
        seed, dtype, backend: randomness, precision, array backend.

    Data (how the training images are prepared; see :mod:`refimpl.learning.runs`):
        dataset: ``"texture"`` (one image: ``image`` block-averaged by ``factor``, centre crop
            ``size``), ``"texture-crops"`` (``images`` crops of ``size`` from ``image``),
            ``"digits"`` (``images`` UCI digits of class ``digit``, resized to ``size``) or
            ``"digit-classes"`` (one digit of each class, ``images`` of them).
        scale: ``"0-255"`` (the paper's intensities) or ``"unit"`` ([-1, 1]); images are
            centred (per-channel mean subtracted) either way, as in section 8.

    Run:
        checkpoint_every: save a checkpoint every this many iterations (and at the end).
        energy_limit: stop with a divergence error if the mean energy of the synthesised
            images exceeds this many times the data's (plus 1e3 sigma^-2 per pixel).
    """

    spec: list = field(default_factory=list)
    top_filter: bool = False
    grow: bool = True
    refine_lower: bool = True
    iterations_per_layer: int = 100
    chains: int = 16
    langevin_steps: int = 10
    step_size: float = 0.3
    sigma: float = 1.0
    method: str = "ml"
    optimizer: str = "sgd"
    learning_rate: float | list = 1e-3
    normalise_by_area: bool = True
    clip: float | None = None
    init_std: float | str | list = 0.01
    seed: int = 0
    dtype: str = "float64"
    backend: str | None = None
    dataset: str = "texture"
    image: str = "brick"
    size: int = 64
    factor: int = 4
    scale: str = "0-255"
    digit: int | None = None
    images: int = 1
    checkpoint_every: int = 50
    energy_limit: float = 1e4

    def __post_init__(self):
        self.spec = [LayerSpec.coerce(s) for s in self.spec]
        if not self.spec:
            raise ValueError("spec must list at least one layer")
        if self.method not in ("ml", "cd"):
            raise ValueError(f"method must be 'ml' or 'cd'; got {self.method!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {self.optimizer!r}")
        if self.dataset not in ("texture", "texture-crops", "digits", "digit-classes"):
            raise ValueError(
                f"dataset must be texture, texture-crops, digits or digit-classes; "
                f"got {self.dataset!r}"
            )
        if self.scale not in ("0-255", "unit"):
            raise ValueError(f"scale must be '0-255' or 'unit'; got {self.scale!r}")
        for name in ("iterations_per_layer", "chains", "langevin_steps", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not (self.step_size > 0 and self.sigma > 0):
            raise ValueError(
                f"step_size and sigma must be positive; got {self.step_size}, {self.sigma}"
            )
        rates = self.learning_rates()
        if any(r < 0 for r in rates):
            raise ValueError(f"learning rates must be >= 0; got {rates}")

    @property
    def n_layers(self) -> int:
        """Layers of the final network, the top filter included."""
        return len(self.spec) + (1 if self.top_filter else 0)

    @property
    def stages(self) -> int:
        """Growing stages: one per layer of ``spec`` when growing, else one."""
        return len(self.spec) if self.grow else 1

    @property
    def total_iterations(self) -> int:
        return self.stages * self.iterations_per_layer

    def learning_rates(self) -> list:
        """One learning rate per layer of the final network (the top filter last)."""
        rates = self.learning_rate
        if isinstance(rates, (int, float)):
            return [float(rates)] * self.n_layers
        rates = [float(r) for r in rates]
        if len(rates) != self.n_layers:
            raise ValueError(f"learning_rate lists {len(rates)} rates for {self.n_layers} layers")
        return rates

    def init_std_of(self, layer: int, fan_in: int) -> float:
        """Initial weight standard deviation of layer ``layer`` (0-based) with ``fan_in`` inputs."""
        value = self.init_std[layer] if isinstance(self.init_std, list) else self.init_std
        if value == "he":
            return (2.0 / fan_in) ** 0.5
        return float(value)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spec"] = [list(s) for s in self.spec]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LearningConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
