"""Hyperparameters of a learning run (Algorithm 1, contrastive divergence, layer growing).

One dataclass holds everything a run depends on, so that ``config.json`` in a run folder
is enough to reproduce or resume it. Every field is checked when a config is made, from
Python or from a ``config.json``: a wrong type or an out-of-range value is a ``TypeError``
or ``ValueError`` naming the field, never a run that computes something else.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields

from refimpl.backend import available_backends
from refimpl.convnet.layer import LayerSpec
from refimpl.sampling import check_step_size

METHODS = ("ml", "cd")
OPTIMIZERS = ("sgd", "adam")
DATASETS = ("texture", "texture-crops", "digits", "digit-classes")
SCALES = ("0-255", "unit")
DTYPES = ("float64", "float32")
# fields by kind, for the type checks (JSON gives ints for whole floats; bools are not ints)
INTEGER_FIELDS = (
    "iterations_per_layer",
    "chains",
    "langevin_steps",
    "seed",
    "torus_steps",
    "size",
    "factor",
    "images",
    "checkpoint_every",
)
BOOLEAN_FIELDS = ("top_filter", "grow", "refine_lower", "normalise_by_area")
REAL_FIELDS = ("step_size", "sigma", "energy_limit")


@dataclass
class LearningConfig:
    """Everything a learning run depends on.

    Architecture:
        spec: the layers, bottom to top, as ``(out_channels, kernel, stride, pad[, activation[,
            padding_mode]])`` (:class:`~refimpl.convnet.LayerSpec`).
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
        clip: None, or a positive bound: scale each layer's gradient down to at most this
            norm (0 or a negative bound would stop or reverse learning, so they are refused).
        init_std: standard deviation of the initial weights (biases start at 0): a number,
            ``"he"`` (``sqrt(2 / fan_in)``, which keeps a new layer's responses on the scale of
            its input), or one entry per layer (entries past the last layer are not used).
            Algorithm 1 says ``w = 0``, but at ``w = 0`` every ReLU sits on its kink and all
            gradients vanish, so learning starts from random weights. A layer grown on top
            of trained ones needs the ``"he"`` scale: with tiny weights under large inputs,
            its first updates are huge relative to its weights and kill it (all its units
            off, gradients zero for good).
        seed: a non-negative integer (Langevin noise of iteration ``t`` is seeded by
            ``(seed, t)``, new layers by ``(seed, layer, stage)``); dtype: ``"float64"`` or
            ``"float32"``; backend: a registered backend (``"numpy"``, ``"cupy"``, see
            :func:`refimpl.backend.available_backends`) or None (``$REFIMPL_BACKEND``).

    Data (how the training images are prepared; see :mod:`refimpl.learning.runs`):
        dataset: ``"texture"`` (one image: ``image`` block-averaged by ``factor``, centre crop
            ``size``), ``"texture-crops"`` (``images`` crops of ``size`` from ``image``),
            ``"digits"`` (``images`` UCI digits of class ``digit``, 0-9, resized to ``size``)
            or ``"digit-classes"`` (one digit of each class, ``images`` of them).
            ``size`` must be at least the first layer's kernel size, so that a first-layer
            filter fits on the image somewhere without reading only zero padding.
        scale: ``"0-255"`` (the paper's intensities) or ``"unit"`` ([-1, 1]); images are
            centred (per-channel mean subtracted) either way, as in section 8.

    Run:
        torus_steps: the samples a run writes at its end are its chains continued for this
            many Langevin steps on the torus, by the learned network with circular padding
            on every layer (:func:`~refimpl.learning.algorithm.on_torus`: the stationary
            extension of the learned energy, with no border and so no border frame); 0
            writes the chains as they are. The chains that learning keeps are not changed.
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
    torus_steps: int = 0

    def __post_init__(self):
        for name in ("spec", "learning_rate", "init_std"):  # a tuple reads as the JSON list
            if isinstance(getattr(self, name), tuple) and not isinstance(
                getattr(self, name), LayerSpec
            ):
                setattr(self, name, list(getattr(self, name)))
        self.spec = [LayerSpec.coerce(s) for s in self._typed("spec", list)]
        if not self.spec:
            raise ValueError("spec must list at least one layer")
        for name in INTEGER_FIELDS:
            self._integer(name, minimum=0 if name in ("seed", "torus_steps") else 1)
        for name in BOOLEAN_FIELDS:
            self._typed(name, bool)
        for name in REAL_FIELDS:
            self._real(name)
        for name, choices in (
            ("method", METHODS),
            ("optimizer", OPTIMIZERS),
            ("dataset", DATASETS),
            ("scale", SCALES),
            ("dtype", DTYPES),
        ):
            value = self._typed(name, str)
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        if self.backend is not None and self._typed("backend", str) not in available_backends():
            raise ValueError(
                f"backend must be one of {', '.join(available_backends())} or None; "
                f"got {self.backend!r}"
            )
        self._typed("image", str)
        if not (self.sigma > 0 and 0 < self.sigma**2 < math.inf):
            raise ValueError(
                f"sigma must be positive with sigma^2 a finite, non-zero float; got {self.sigma!r}"
            )
        check_step_size(self.step_size, self.sigma)  # 0 < eps < 2 sigma, else Langevin diverges
        if not self.energy_limit > 0:
            raise ValueError(f"energy_limit must be positive; got {self.energy_limit!r}")
        if self.clip is not None and not (self._real("clip") > 0):
            raise ValueError(
                f"clip must be None or a positive gradient norm; got {self.clip!r} (0 would stop "
                "learning and a negative bound would reverse the gradient)"
            )
        if self.digit is not None:
            self._integer("digit", minimum=0)
            if self.digit > 9:
                raise ValueError(f"digit must be a digit class 0-9; got {self.digit}")
        if self.dataset == "digits" and self.digit is None:
            raise ValueError("dataset 'digits' needs a digit class 0-9 (digit is None)")
        kernel = self.spec[0].kernel_size
        if self.size < kernel:
            raise ValueError(
                f"size {self.size} is smaller than the first layer's {kernel}x{kernel} filters: "
                f"no filter would fit on the image; use size >= {kernel}"
            )
        self.learning_rates()  # type, count and sign of the rates
        if isinstance(self.init_std, list) and len(self.init_std) < self.n_layers:
            raise ValueError(
                f"init_std lists {len(self.init_std)} values for {self.n_layers} layers"
            )
        for layer in range(self.n_layers):
            std = self.init_std[layer] if isinstance(self.init_std, list) else self.init_std
            if std != "he" and not (_is_real(std) and std >= 0 and math.isfinite(std)):
                raise ValueError(
                    f"init_std must be 'he', a non-negative number, or one of those per layer; "
                    f"got {self.init_std!r}"
                )

    def _typed(self, name: str, kind):
        value = getattr(self, name)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(f"{name} must be a {kind.__name__}; got {value!r}")
        return value

    def _integer(self, name: str, minimum: int) -> int:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer; got {value!r}")
        value = int(value)  # a NumPy integer becomes a plain one (JSON can write it)
        setattr(self, name, value)
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}; got {value}")
        return value

    def _real(self, name: str) -> float:
        value = getattr(self, name)
        if not _is_real(value):
            raise TypeError(f"{name} must be a number; got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite; got {value!r}")
        value = float(value)
        setattr(self, name, value)
        return value

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

    def stage_after(self, iteration: int) -> int:
        """The growing stage after ``iteration`` iterations: 1 at the start, then one more
        after every ``iterations_per_layer``, and the last one at the end.

        :meth:`~refimpl.learning.Trainer.step` grows the network at exactly these points;
        ``tests/test_learning.py`` holds the two together.
        """
        if iteration >= self.total_iterations:
            return self.stages
        return min(self.stages, iteration // self.iterations_per_layer + 1)

    def learning_rates(self) -> list:
        """One learning rate per layer of the final network (the top filter last)."""
        rates = self.learning_rate
        listed = rates if isinstance(rates, list) else [rates] * self.n_layers
        if not all(_is_real(r) for r in listed):
            raise TypeError(f"learning_rate must be a number or a list of numbers; got {rates!r}")
        if len(listed) != self.n_layers:
            raise ValueError(f"learning_rate lists {len(listed)} rates for {self.n_layers} layers")
        if not all(0 <= r < math.inf for r in listed):
            raise ValueError(f"learning rates must be finite and >= 0; got {rates!r}")
        return [float(r) for r in listed]

    def init_std_of(self, layer: int, fan_in: int) -> float:
        """Initial weight standard deviation of layer ``layer`` (0-based) with ``fan_in`` inputs."""
        value = self.init_std[layer] if isinstance(self.init_std, list) else self.init_std
        if value == "he":
            return (2.0 / fan_in) ** 0.5
        return float(value)

    def to_dict(self) -> dict:
        out = asdict(self)
        # zero padding is left implicit, so that files written before padding modes existed
        # read back and compare equal
        out["spec"] = [list(s) if s.padding_mode != "zeros" else list(s)[:5] for s in self.spec]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LearningConfig:
        """The config of :meth:`to_dict`'s output; unknown keys are refused, not dropped."""
        if not isinstance(data, dict):
            raise TypeError(f"a learning config must be a JSON object; got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(map(repr, unknown))}")
        return cls(**data)

    def differences(self, other: LearningConfig) -> dict:
        """``{field: (mine, other's)}`` for every field where ``other`` differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
