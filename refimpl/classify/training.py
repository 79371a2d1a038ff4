"""Training the classifiers: one class for every model and training mode, resumable bit for bit.

Models and the training modes that apply (:data:`MODES`):

* ``softmax``: Xie et al.'s discriminative ConvNet, Eqs. (2.2)-(2.3), read generatively
  through the reference ``q = N(0, sigma^2 I)`` (Eq. (3.1), Proposition 1).
  ``discriminative``: maximise ``l_D = sum_i log p(y_i | x_i)`` (cross-entropy).
  ``generative``: Dai, Lu & Wu's generative log-likelihood ``l_G = sum_i log p(x_i | y_i)`` of the
  same class scores, ``dl_G/dw = sum_i [df_{y_i}(x_i)/dw - E_{p_{y_i}}[df_{y_i}/dw]]``: the model
  expectation of class ``c`` either by Langevin chains of ``p_c(I) ~ exp(f_c(I)) q(I)`` (one per
  example, from a class-conditional replay buffer; ``expectation="langevin"``) or by the
  batch itself (the supplementary's ``sum_j`` over examples with the class fixed,
  ``expectation="batch"``). The biases, which ``l_G`` cannot see, are fitted afterwards
  (:func:`~refimpl.classify.heads.fit_biases`).
* ``gmmc``: Yang et al.'s GMMC; ``discriminative`` (Eq. (5)), ``generative`` (Eq. (7),
  Algorithm 1), ``joint`` (Eq. (5) for ``pretrain_iterations``, then Eq. (7)).
* ``jem``: the softmax classifier as JEM's ``p(x, y) ~ exp(f_y(x) + b_y)``; ``generative``
  (JEM's objective ``log p(y | x) + log p(x)`` from the start) or ``joint`` (cross-entropy for
  ``pretrain_iterations``, then JEM: the switch GMMC's appendix E reports as unstable).

Determinism and resume: mini-batches come from a permutation of the training set per epoch,
seeded by ``(seed, epoch)``; all other randomness of iteration ``t`` (replay-buffer draws,
sampler noise) from a generator seeded by ``derived_seed(seed, t)`` (as
:meth:`refimpl.learning.trainer.Trainer.noise`). The state (parameters, Adam moments, the
buffer's images, the iteration and the history) changes only at the end of :meth:`step`, after
everything has been computed and checked, so :meth:`state` at any iteration boundary and
:meth:`from_state` continue exactly as the uninterrupted run would.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from refimpl.backend import derived_seed, get_namespace, host_rng, make_rng, to_backend
from refimpl.classify import gmmc as gmmc_math
from refimpl.classify import jem as jem_math
from refimpl.classify.buffer import ReplayBuffer
from refimpl.classify.gmmc import GMMC
from refimpl.classify.heads import (
    SoftmaxClassifier,
    class_scores_backward,
    features,
    fit_biases,
    top_gradient,
)
from refimpl.classify.sampling import (
    class_node_langevin,
    noise_injected_sampling,
    sgld,
    staged_sampling,
)
from refimpl.convnet.layer import LayerSpec
from refimpl.learning import optimizers
from refimpl.learning.trainer import DivergenceError
from refimpl.models.discriminative import (
    discriminative_log_likelihood,
    discriminative_score_gradient,
    generative_log_likelihood,
    generative_score_gradient,
    one_hot,
)

__all__ = [
    "DEFAULT_TRAINING",
    "MODES",
    "ClassifierConfig",
    "ClassifierTrainer",
    "DivergenceError",
    "default_config",
]

MODES = {
    "softmax": ("discriminative", "generative"),
    "gmmc": ("discriminative", "generative", "joint"),
    "jem": ("generative", "joint"),
}
DEFAULT_TRAINING = {"softmax": "discriminative", "gmmc": "generative", "jem": "generative"}

# Separate random streams: the network's initial weights and the buffer's initial images are
# drawn once from (seed, stream); mini-batch permutations from (seed, epoch, EPOCH_STREAM).
INIT_STREAM = 2**31 - 1
BUFFER_STREAM = 2**31 - 2
EPOCH_STREAM = 2**31 - 3

HISTORY_KEYS = ("iteration", "phase", "loss", "accuracy", "energy_data", "energy_samples")


def check_mode(model: str, training: str | None) -> str:
    """The training mode (default for ``None``), or a ``ValueError`` naming what applies."""
    if model not in MODES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODES)}")
    if training is None:
        return DEFAULT_TRAINING[model]
    if training not in MODES[model]:
        hint = " (JEM's discriminative part alone is --model softmax)" if model == "jem" else ""
        raise ValueError(
            f"training {training!r} does not apply to model {model!r}; it takes "
            f"{', '.join(MODES[model])}{hint}"
        )
    return training


@dataclass
class ClassifierConfig:
    """Everything a classifier's training run depends on (``to_dict`` is enough to rebuild it).

    Network: ``spec``, the ConvNet's layers ``(out_channels, kernel, stride, pad)``; the top
    layer gets a ReLU for the softmax and JEM heads (Eq. (2.2)'s ``F^(L)``) and none for GMMC
    (its features must reach centres with negative coordinates).

    Optimisation: ``iterations`` of Adam (``learning_rate``) on mini-batches of ``batch_size``;
    for ``joint`` the first ``pretrain_iterations`` are discriminative.

    Softmax: ``sigma`` of the reference ``q`` (generative reading, Eq. (3.1));
    ``expectation`` (``"langevin"`` or ``"batch"``) for Dai, Lu & Wu's generative gradient;
    ``langevin_steps`` and ``langevin_step_size`` of its chains (Eq. (6.10)).

    GMMC: ``mmc_scale`` (``S`` of Algorithm 2, the paper's 10), ``beta`` (Eq. (7), 0.5),
    ``sampler`` (``"staged"``, Eq. (8), or ``"noise"``, Eq. (10)), ``sampler_gamma`` (the
    spread of the targets ``z ~ N(mu_y, gamma^2 I)``), ``sampler_steps`` (``tau``) and
    ``sampler_step_size`` (``alpha``).

    JEM: SGLD with ``sampler_steps``, ``sampler_step_size`` and ``sgld_noise``.

    Replay buffer (GMMC, JEM, softmax with Langevin): ``buffer_size``, ``reinit_rate``
    (``rho``), ``chains`` per iteration (GMMC, JEM; the softmax uses one per example).

    ``energy_limit``: stop with :class:`DivergenceError` when a mean energy exceeds it.
    """

    model: str = "gmmc"
    training: str = "generative"
    seed: int = 0
    spec: list = field(default_factory=lambda: [(16, 3, 1, 1), (32, 3, 2, 1), (64, 4, 1, 0)])
    iterations: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    pretrain_iterations: int = 0
    sigma: float = 1.0
    expectation: str = "langevin"
    langevin_steps: int = 20
    langevin_step_size: float = 0.1
    mmc_scale: float = 10.0
    beta: float = 0.5
    sampler: str = "staged"
    sampler_gamma: float = 0.001
    sampler_steps: int = 20
    sampler_step_size: float = 1 / 64
    sgld_noise: float = 0.01
    buffer_size: int = 1000
    reinit_rate: float = 0.025
    chains: int = 64
    energy_limit: float = 1e6
    dtype: str = "float64"
    backend: str | None = None

    def __post_init__(self):
        self.training = check_mode(self.model, self.training)
        self.spec = [tuple(LayerSpec.coerce(s))[:4] for s in self.spec]
        if not self.spec:
            raise ValueError("spec must list at least one layer")
        for name in ("iterations", "batch_size", "langevin_steps", "sampler_steps", "chains"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not (0 <= self.pretrain_iterations <= self.iterations):
            raise ValueError(
                f"pretrain_iterations must lie in [0, iterations = {self.iterations}]; got "
                f"{self.pretrain_iterations}"
            )
        if self.training == "joint" and self.pretrain_iterations == 0:
            raise ValueError(
                "joint training needs pretrain_iterations > 0 (the discriminative part)"
            )
        for name in (
            "learning_rate",
            "sigma",
            "langevin_step_size",
            "mmc_scale",
            "sampler_step_size",
            "energy_limit",
        ):
            value = float(getattr(self, name))
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite number; got {value!r}")
        for name in ("beta", "sampler_gamma", "sgld_noise"):
            value = float(getattr(self, name))
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative finite number; got {value!r}")
        if self.expectation not in ("langevin", "batch"):
            raise ValueError(f"expectation must be 'langevin' or 'batch'; got {self.expectation!r}")
        if self.sampler not in ("staged", "noise"):
            raise ValueError(f"sampler must be 'staged' or 'noise'; got {self.sampler!r}")
        if not (0.0 <= self.reinit_rate <= 1.0):
            raise ValueError(f"reinit_rate must lie in [0, 1]; got {self.reinit_rate!r}")

    @property
    def layer_specs(self) -> list:
        """The network's :class:`LayerSpec` list: ReLU everywhere except GMMC's linear top."""
        specs = [LayerSpec.coerce(s) for s in self.spec]
        if self.model == "gmmc":
            specs[-1] = specs[-1]._replace(activation="linear")
        return specs

    @property
    def uses_buffer(self) -> bool:
        if self.model == "softmax":
            return self.training == "generative" and self.expectation == "langevin"
        return self.training != "discriminative"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spec"] = [list(s) for s in self.spec]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ClassifierConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown classifier configuration keys: {', '.join(unknown)}")
        return cls(**data)


# Defaults measured on the digits (docs/classify.md records what was tried): every mode gets the
# same 1000 updates of Adam on batches of 64 (about 48 epochs; joint: 500 + 500), which keeps
# the slowest default run near 70 s of training on 2 cores. The paper's values where it gives
# them: beta 0.5, tau 20, rho 2.5% (GMMC Table 8), S = 10; the GMMC authors' sampler settings
# (step 1 on the batch-mean energy of 64 chains, i.e. 1/64 per chain; target spread 0.001); JEM's
# SGLD (step 1, noise 0.01, rho 5%). Dai, Lu & Wu's generative gradient uses the batch estimate
# of the supplementary by default (Langevin expectations: see docs/classify.md).
GMMC_SAMPLER = dict(sampler_step_size=1 / 64, sampler_gamma=0.001, reinit_rate=0.025)
JEM_SAMPLER = dict(sampler_step_size=1.0, sgld_noise=0.01, reinit_rate=0.05)
DEFAULTS = {
    ("softmax", "discriminative"): dict(iterations=1000),
    ("softmax", "generative"): dict(iterations=1000, expectation="batch"),
    ("gmmc", "discriminative"): dict(iterations=1000),
    ("gmmc", "generative"): dict(iterations=1000, **GMMC_SAMPLER),
    ("gmmc", "joint"): dict(iterations=1000, pretrain_iterations=500, **GMMC_SAMPLER),
    ("jem", "generative"): dict(iterations=1000, **JEM_SAMPLER),
    ("jem", "joint"): dict(iterations=1000, pretrain_iterations=500, **JEM_SAMPLER),
}


def default_config(model: str, training: str | None = None, seed: int = 0, **overrides):
    """The measured default :class:`ClassifierConfig` of a model and training mode, overridden."""
    training = check_mode(model, training)
    values = dict(DEFAULTS[(model, training)], model=model, training=training, seed=seed)
    values.update(overrides)
    return ClassifierConfig(**values)


class ClassifierTrainer:
    """A training run: the classifier, Adam's state, the replay buffer, the history.

    Args:
        config: a :class:`ClassifierConfig`.
        images: training images ``(N, C, H, W)`` in ``[-1, 1]`` (host or device).
        labels: ``(N,)`` integers in ``[0, 10)``.
    """

    def __init__(self, config: ClassifierConfig, images, labels, n_classes: int = 10):
        self.config = config
        self.xp = get_namespace(config.backend)
        self.dtype = config.dtype
        self.images = to_backend(images, self.xp, self.dtype)
        self.labels = to_backend(labels, self.xp).astype(int)
        if self.images.ndim != 4 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"images must be (N, C, H, W) and labels (N,); got {tuple(self.images.shape)} "
                f"and {tuple(self.labels.shape)}"
            )
        if config.batch_size > self.images.shape[0]:
            raise ValueError(
                f"batch_size {config.batch_size} exceeds the {self.images.shape[0]} training images"
            )
        self.n_classes = n_classes
        self.model = self._build_model()
        self.model.net.geometries((1,) + tuple(self.images.shape[1:]))  # a clear error now
        self.optimizer_state: dict = {}  # Adam moments per parameter pair
        self.buffer = self._build_buffer() if config.uses_buffer else None
        if self.buffer is not None:
            # Dai, Lu & Wu's chains follow the batch's labels: a batch of one class needs
            # batch_size slots of that class; GMMC and JEM draw `chains` slots of any class
            need, have = (
                (config.batch_size, self.buffer.per_class)
                if config.model == "softmax"
                else (config.chains, self.buffer.size)
            )
            if have < need:
                raise ValueError(
                    f"buffer_size {config.buffer_size} is too small: {need} chains must be "
                    f"drawable at once and the buffer offers {have}"
                )
        self.iteration = 0
        self.history = {k: [] for k in HISTORY_KEYS}
        self.seconds = 0.0

    # --- construction ------------------------------------------------------------------

    def _build_model(self):
        cfg = self.config
        rng = host_rng([cfg.seed, INIT_STREAM])
        channels = self.images.shape[1]
        common = dict(seed=rng, dtype=cfg.dtype, backend=cfg.backend)
        if cfg.model == "gmmc":
            return GMMC.random(
                channels, cfg.layer_specs, self.n_classes, scale=cfg.mmc_scale, **common
            )
        sigma = cfg.sigma if cfg.model == "softmax" else None
        return SoftmaxClassifier.random(
            channels, cfg.layer_specs, self.n_classes, sigma=sigma, **common
        )

    def _build_buffer(self) -> ReplayBuffer:
        cfg = self.config
        classes = 1 if cfg.model == "jem" else self.n_classes  # JEM samples p(x), no labels
        size = (cfg.buffer_size // classes) * classes
        rng = make_rng(derived_seed(cfg.seed, BUFFER_STREAM), self.xp)
        return ReplayBuffer.uniform(
            size, self.images.shape[1:], classes, cfg.reinit_rate, rng, dtype=self.dtype
        )

    # --- schedule and randomness ---------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.iteration >= self.config.iterations

    @property
    def batches_per_epoch(self) -> int:
        return self.images.shape[0] // self.config.batch_size

    def batch_indices(self, t: int):
        """Rows of mini-batch ``t``: block ``t mod B`` of the permutation of epoch ``t // B``."""
        epoch, k = divmod(t, self.batches_per_epoch)
        perm = host_rng([self.config.seed, epoch, EPOCH_STREAM]).permutation(self.images.shape[0])
        size = self.config.batch_size
        return to_backend(perm[k * size : (k + 1) * size], self.xp)

    def noise(self, t: int):
        """The generator of iteration ``t``'s buffer draws and sampler noise: seed ``(seed, t)``."""
        return make_rng(derived_seed(self.config.seed, t), self.xp)

    def phase(self, t: int) -> str:
        """``"discriminative"`` or ``"generative"``: which objective iteration ``t`` follows."""
        cfg = self.config
        if cfg.training == "discriminative":
            return "discriminative"
        if cfg.training == "joint" and t < cfg.pretrain_iterations:
            return "discriminative"
        return "generative"

    # --- one iteration -------------------------------------------------------------------

    def step(self) -> dict:
        """One iteration: compute the gradient (and the buffer's new chains), check, then commit."""
        t0 = time.perf_counter()
        t = self.iteration
        rows = self.batch_indices(t)
        x, y = self.images[rows], self.labels[rows]
        phase = self.phase(t)
        try:
            result = self._gradient(x, y, phase, self.noise(t))
        except FloatingPointError as exc:
            raise DivergenceError(self._hint(f"the sampler blew up: {exc}")) from exc
        grads, record, write = result
        self._check(record, grads)
        params, optimizer_state = optimizers.adam_step(  # ascent along minus the loss gradient
            self.model.parameters(),
            [(-gW, -gb) for gW, gb in grads],
            [self.config.learning_rate] * len(grads),
            self.optimizer_state,
        )
        # commit: everything below changes the state, nothing above did
        if write is not None:
            self.buffer.write(*write)
        self.model = self.model.with_parameters(params)
        self.optimizer_state = optimizer_state
        self.iteration += 1
        record = dict(record, iteration=self.iteration, phase=phase)
        for key in HISTORY_KEYS:
            self.history[key].append(record[key])
        self.seconds += time.perf_counter() - t0
        return record

    def _gradient(self, x, y, phase: str, rng):
        """``(loss gradients [(dW, db), ...] of the parameters, record, buffer write or None)``."""
        model, cfg = self.config.model, self.config
        if model == "gmmc":
            return self._gmmc(x, y, phase, rng)
        if model == "jem" and phase == "generative":
            return self._jem(x, y, rng)
        if model == "softmax" and cfg.training == "generative":
            return self._dai_lu_wu(x, y, rng)
        return self._cross_entropy(x, y)

    def _net_grads(self, fwd, dphi):
        return self.model.net.backward(fwd, top_gradient(fwd, dphi), want_input=False)[1]

    @staticmethod
    def _add(a, b):
        return [(wa + wb, ba + bb) for (wa, ba), (wb, bb) in zip(a, b, strict=True)]

    def _softmax_grads(self, fwd, phi, dS):
        """Gradients of the network and of ``(weights, biases)`` for ``dS = dloss/dS (M, C)``."""
        dW, db, dphi = class_scores_backward(phi, self.model.weights, dS)
        return self._net_grads(fwd, dphi) + [(dW, db)]

    def _cross_entropy(self, x, y):
        """``-l_D / M``: the discriminative ConvNet's cross-entropy (Eq. (2.3))."""
        fwd, phi, S = self.model.forward(x)
        M = x.shape[0]
        grads = self._softmax_grads(fwd, phi, -discriminative_score_gradient(S, y) / M)
        loss = -discriminative_log_likelihood(S, y) / M
        record = dict(
            loss=loss,
            accuracy=self._accuracy(S, y),
            energy_data=float(jem_math.energy(S).mean()),  # JEM's E(x) = -logsumexp_y S_y(x)
            energy_samples=None,
        )
        return grads, record, None

    def _dai_lu_wu(self, x, y, rng):
        """Dai, Lu & Wu's generative gradient of ``sum_i log p(x_i | y_i)`` (Xie et al. (3.1))."""
        cfg, xp = self.config, self.xp
        fwd, phi, S = self.model.forward(x)
        M = x.shape[0]
        rows = xp.arange(M)
        energy_data = -float(S[rows, y].mean())
        if cfg.expectation == "batch":  # Z_c estimated on the batch: the sum over examples
            grads = self._softmax_grads(fwd, phi, -generative_score_gradient(S, y) / M)
            record = dict(
                loss=-generative_log_likelihood(S, y) / M,
                accuracy=self._accuracy(S, y),
                energy_data=energy_data,
                energy_samples=None,
            )
            return grads, record, None
        draw = self.buffer.draw(rng, labels=y)  # one chain of p_{y_i} per example
        chains = class_node_langevin(
            self.model, draw.labels, draw.images, cfg.langevin_steps, cfg.langevin_step_size, rng
        ).samples
        fwd_s, phi_s, S_s = self.model.forward(chains)
        onehot = self._one_hot(y, S)
        # d/dw of -(1/M) sum_i [f_{y_i}(x_i) - f_{y_i}(x'_i)]: chain i has the class of example i
        grads = self._add(
            self._softmax_grads(fwd, phi, -onehot / M),
            self._softmax_grads(fwd_s, phi_s, onehot / M),
        )
        energy_samples = -float(S_s[rows, draw.labels].mean())
        record = dict(
            loss=energy_data - energy_samples,
            accuracy=self._accuracy(S, y),
            energy_data=energy_data,
            energy_samples=energy_samples,
        )
        return grads, record, (draw.indices, chains)

    def _gmmc(self, x, y, phase: str, rng):
        """GMMC Eq. (5) (discriminative phase) or Eq. (7) with Algorithm 1's samples."""
        cfg = self.config
        fwd, phi, L = self.model.forward(x)
        centres = self.model.centres
        energy_data = float(gmmc_math.energies(phi, centres)[self.xp.arange(x.shape[0]), y].mean())
        if phase == "discriminative":
            loss, dphi = gmmc_math.discriminative_loss(phi, centres, y)
            record = dict(
                loss=loss,
                accuracy=self._accuracy(L, y),
                energy_data=energy_data,
                energy_samples=None,
            )
            return self._net_grads(fwd, dphi), record, None
        draw = self.buffer.draw(rng, batch=cfg.chains)
        sampler = staged_sampling if cfg.sampler == "staged" else noise_injected_sampling
        samples = sampler(
            self.model,
            draw.images,
            draw.labels,
            cfg.sampler_steps,
            cfg.sampler_step_size,
            cfg.sampler_gamma,
            rng=rng,
        ).samples
        fwd_s, phi_s, _ = self.model.forward(samples)
        loss, dphi, dphi_s = gmmc_math.generative_loss(
            phi, y, phi_s, draw.labels, centres, cfg.beta
        )
        energy_samples = float(
            gmmc_math.energies(phi_s, centres)[self.xp.arange(samples.shape[0]), draw.labels].mean()
        )
        grads = self._add(self._net_grads(fwd, dphi), self._net_grads(fwd_s, dphi_s))
        record = dict(
            loss=loss,
            accuracy=self._accuracy(L, y),
            energy_data=energy_data,
            energy_samples=energy_samples,
        )
        return grads, record, (draw.indices, samples)

    def _jem(self, x, y, rng):
        """JEM: ``-[log p(y | x) + log p(x)]`` with SGLD samples of ``p(x)`` from the buffer."""
        cfg = self.config
        draw = self.buffer.draw(rng, batch=cfg.chains)

        def grad_log_px(z):
            return self.model.log_px_and_grad(z)[1]

        samples = sgld(
            grad_log_px,
            draw.images,
            cfg.sampler_steps,
            cfg.sampler_step_size,
            cfg.sgld_noise,
            rng=rng,
        ).samples
        fwd, phi, S = self.model.forward(x)
        fwd_s, phi_s, S_s = self.model.forward(samples)
        loss, dS, dS_s = jem_math.joint_loss(S, y, S_s)
        grads = self._add(
            self._softmax_grads(fwd, phi, dS), self._softmax_grads(fwd_s, phi_s, dS_s)
        )
        record = dict(
            loss=loss,
            accuracy=self._accuracy(S, y),
            energy_data=float(jem_math.energy(S).mean()),
            energy_samples=float(jem_math.energy(S_s).mean()),
        )
        return grads, record, (draw.indices, samples)

    def _one_hot(self, y, like):
        return one_hot(y, self.n_classes, like)

    @staticmethod
    def _accuracy(logits, y) -> float:
        return float((logits.argmax(axis=1) == y).mean())

    # --- divergence ----------------------------------------------------------------------

    def _hint(self, what: str) -> str:
        cfg = self.config
        if cfg.model == "softmax":
            sampler = f"Langevin step size {cfg.langevin_step_size:g} (sigma {cfg.sigma:g})"
        else:
            sampler = f"sampler step size {cfg.sampler_step_size:g}"
        return (
            f"{what} (iteration {self.iteration + 1}, {cfg.model}/{cfg.training}, phase "
            f"{self.phase(self.iteration)}). Likely causes: the learning rate "
            f"{cfg.learning_rate:g} is too large, or the {sampler} is; for JEM the energy of the "
            "samples running away from the data's is the instability GMMC's appendix E reports. "
            "The last good checkpoint is kept."
        )

    def _check(self, record: dict, grads):
        xp, cfg = self.xp, self.config
        numbers = [record["loss"], record["energy_data"]]
        if record["energy_samples"] is not None:
            numbers.append(record["energy_samples"])
        if not all(math.isfinite(v) for v in numbers) or not all(
            bool(xp.isfinite(gW).all() and xp.isfinite(gb).all()) for gW, gb in grads
        ):
            raise DivergenceError(self._hint("the loss, an energy or a gradient became NaN or inf"))
        worst = max(abs(v) for v in numbers)
        if worst > cfg.energy_limit:
            raise DivergenceError(
                self._hint(
                    f"the energies exploded (data {record['energy_data']:.3g}, samples "
                    f"{record['energy_samples']:.3g}; limit {cfg.energy_limit:g})"
                )
            )

    # --- after training ------------------------------------------------------------------

    def final_model(self):
        """The classifier to evaluate, with what training leaves to be estimated afterwards.

        GMMC: ``gamma`` from the training set (section 3.4). Softmax trained generatively: the
        biases fitted to ``l_D`` (Dai, Lu & Wu, supplementary A). Otherwise the model itself.
        The trainer's state is not changed.
        """
        cfg = self.config
        if cfg.model == "gmmc":
            phi = self.train_features()
            return self.model.with_gamma(
                gmmc_math.estimate_gamma(phi, self.model.centres, self.labels)
            )
        if cfg.model == "softmax" and cfg.training == "generative":
            phi = self.train_features()
            scores = phi @ self.model.weights.T
            return self.model.with_biases(fit_biases(scores, self.labels))
        return self.model

    def train_features(self, batch: int = 500):
        """``phi`` of every training image, ``(N, d)``."""
        xp = self.xp
        return xp.concatenate(
            [
                features(self.model.net.forward(self.images[i : i + batch]))
                for i in range(0, self.images.shape[0], batch)
            ]
        )

    # --- state for checkpoints -----------------------------------------------------------

    def state(self) -> tuple[dict, dict]:
        """``(arrays, meta)`` describing the run exactly (no generator state is needed)."""
        arrays = {}
        for l, (W, b) in enumerate(self.model.parameters()):
            arrays[f"param_{l}_W"], arrays[f"param_{l}_b"] = W, b
        arrays.update(optimizers.state_arrays(self.optimizer_state))
        if self.buffer is not None:
            arrays["buffer"] = self.buffer.images
        meta = dict(
            kind="classifier",
            config=self.config.to_dict(),
            iteration=self.iteration,
            n_classes=self.n_classes,
            image_shape=list(self.images.shape[1:]),
            n_train=int(self.images.shape[0]),
            optimizer=optimizers.state_meta("adam", self.optimizer_state),
            history=self.history,
            seconds=self.seconds,
        )
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict, meta: dict, images, labels) -> ClassifierTrainer:
        """Rebuild a trainer from :meth:`state`; continuing it reproduces the uninterrupted run.

        Raises ``ValueError`` naming the mismatch when the checkpoint is not a classifier's or
        does not fit the data or its own configuration.
        """
        if meta.get("kind") != "classifier":
            raise ValueError("the checkpoint is not a classifier training run's")
        config = ClassifierConfig.from_dict(meta["config"])
        saved = tuple(meta["image_shape"])
        if saved != tuple(images.shape[1:]) or int(meta["n_train"]) != images.shape[0]:
            raise ValueError(
                f"the checkpoint was made on {meta['n_train']} images of shape {saved}; the data "
                f"now has {images.shape[0]} of shape {tuple(images.shape[1:])}"
            )
        trainer = cls(config, images, labels, int(meta["n_classes"]))

        def to_device(a):
            return to_backend(a, trainer.xp, trainer.dtype)

        params = []
        for l, (W, b) in enumerate(trainer.model.parameters()):
            try:
                new_W, new_b = arrays[f"param_{l}_W"], arrays[f"param_{l}_b"]
            except KeyError as exc:
                raise ValueError(f"the checkpoint lacks the parameters of layer {l}") from exc
            if tuple(new_W.shape) != tuple(W.shape) or tuple(new_b.shape) != tuple(b.shape):
                raise ValueError(
                    f"the checkpoint's parameters {l} have shapes {tuple(new_W.shape)}, "
                    f"{tuple(new_b.shape)}; the configuration builds {tuple(W.shape)}, "
                    f"{tuple(b.shape)}"
                )
            params.append((to_device(new_W), to_device(new_b)))
        trainer.model = trainer.model.with_parameters(params)
        if trainer.buffer is not None:
            if "buffer" not in arrays or tuple(arrays["buffer"].shape) != tuple(
                trainer.buffer.images.shape
            ):
                raise ValueError("the checkpoint's replay buffer is missing or has the wrong shape")
            trainer.buffer.images = to_device(arrays["buffer"])
        trainer.optimizer_state = optimizers.load_state(meta["optimizer"], arrays, to_device)
        trainer.iteration = int(meta["iteration"])
        trainer.history = {k: list(meta["history"][k]) for k in HISTORY_KEYS}
        trainer.seconds = float(meta.get("seconds", 0.0))
        return trainer
