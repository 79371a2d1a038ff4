"""A learning run: Algorithm 1 or contrastive divergence, growing layers (Xie et al., sections 7-8).

:class:`Trainer` holds what changes during a run (the network, the chains, the optimizer's
state, the iteration, the history) and composes the pure functions of
:mod:`refimpl.learning.algorithm` and :mod:`refimpl.learning.optimizers`. Each
:meth:`Trainer.step` first computes everything of the iteration (the Langevin chains with
the noise of that iteration, ``H_obs - H_syn``, the new parameters, the new optimizer state)
and only then commits it all in one place, so that an interruption at any moment leaves
the state of an iteration boundary, and a checkpoint never holds a half-done iteration.

The Langevin noise of iteration ``t`` is drawn from a generator seeded by ``(seed, t)``
(:meth:`Trainer.noise`): no generator state is kept, and a resumed run draws exactly the
noise it would have drawn.
"""

from __future__ import annotations

import math

from refimpl.backend import derived_seed, get_namespace, make_rng, to_backend
from refimpl.learning import algorithm, optimizers
from refimpl.learning.config import LearningConfig
from refimpl.models import GenerativeModel
from refimpl.sampling import draw_langevin_noise
from refimpl.threads import parallel


class DivergenceError(RuntimeError):
    """Learning blew up (NaN/inf, or energies exploding); the message names the likely cause."""


HISTORY_KEYS = (
    "iteration",
    "stage",
    "mismatch",
    "energy_data",
    "energy_samples",
    "reconstruction_error",
)


class Trainer:
    """A learning run: the network (grown stage by stage), the chains, the optimizer, the history.

    Args:
        config: a :class:`LearningConfig`.
        data: training images ``(M, C, H, W)``, already scaled and centred (host or device).
    """

    def __init__(self, config: LearningConfig, data):
        self.config = config
        self.xp = get_namespace(config.backend)
        self.dtype = config.dtype
        self.data = to_backend(data, self.xp, self.dtype)
        if self.data.ndim != 4:
            raise ValueError(f"data must be (M, C, H, W); got shape {tuple(self.data.shape)}")
        self.optimizer_state: dict = {}
        self.iteration = 0
        self.stage = 0
        self.net = None
        n_chains = len(self.data) if config.method == "cd" else config.chains
        shape = (n_chains,) + tuple(self.data.shape[1:])
        self.chains = self.xp.zeros(shape, dtype=self.dtype)
        self.history = {k: [] for k in HISTORY_KEYS}
        self.enter_stage(1)

    # --- architecture and growing ----------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.iteration >= self.config.total_iterations

    def enter_stage(self, stage: int):
        """Grow the network to ``stage`` (:func:`~refimpl.learning.algorithm.grow`); new layers
        start with fresh optimizer state."""
        net = algorithm.grow(self.net, self.config, stage, self.data.shape, self.xp, self.dtype)
        kept = 0 if self.net is None else algorithm.active_conv_layers(self.config, stage - 1)
        self.optimizer_state = optimizers.forget_layers(
            self.optimizer_state, range(kept, net.depth)
        )
        self.net, self.stage = net, stage

    def layer_rates(self) -> list:
        """Learning rate of each layer of the current network (0 for frozen lower layers)."""
        rates = self.config.learning_rates()
        n_conv = algorithm.active_conv_layers(self.config, self.stage)
        conv = rates[:n_conv]
        if self.config.grow and not self.config.refine_lower:  # only the newest layer learns
            conv = [0.0] * (n_conv - 1) + conv[-1:]
        return conv + ([rates[-1]] if self.config.top_filter else [])

    # --- one iteration -------------------------------------------------------------------

    def noise_generator(self, iteration: int | None = None):
        """Generator of iteration ``iteration`` (default: next), seeded by ``(seed, iteration)``.

        A fresh generator per iteration needs no state in the checkpoint (CuPy's generators
        cannot export theirs), and a resumed run draws exactly the noise it would have drawn.
        """
        t = self.iteration if iteration is None else int(iteration)
        return make_rng(derived_seed(self.config.seed, t), self.xp)

    def noise(self, iteration: int | None = None):
        """Langevin draws ``(L, M~, C, H, W)`` of iteration ``iteration`` (default: the next)."""
        return draw_langevin_noise(
            self.noise_generator(iteration),
            self.config.langevin_steps,
            self.chains.shape,
            self.dtype,
        )

    def model(self) -> GenerativeModel:
        return GenerativeModel(self.net, self.config.sigma)

    def relative_reconstruction_error(self) -> float:
        """Mean over the observed images of ``|I - sigma^2 B_{w,delta(I)}| / |I|``."""
        return algorithm.relative_reconstruction_error(self.model(), self.data)

    def _divergence_hint(self, what: str) -> str:
        cfg = self.config
        return (
            f"{what} (iteration {self.iteration + 1}, stage {self.stage}). Likely causes: the "
            f"Langevin step size {cfg.step_size:g} is too large for sigma {cfg.sigma:g} (keep it "
            f"well below 2 sigma), or the learning rate {cfg.learning_rates()} is too large for "
            f"this image scale ({cfg.scale}); lower one of them. The last good checkpoint is kept."
        )

    def compute_step(self, noise=None):
        """Everything of the next iteration, not applied: ``(iteration, record, params, state)``.

        ``noise`` defaults to :meth:`noise`. Raises :class:`DivergenceError` if the chains,
        energies, gradients or new parameters are not finite, or the energies explode.
        """
        cfg = self.config
        noise = self.noise() if noise is None else noise
        try:
            with parallel():  # worker threads over batch chunks, one BLAS thread
                it = algorithm.learning_iteration(
                    self.net,
                    self.data,
                    self.chains,
                    noise,
                    cfg.sigma,
                    cfg.step_size,
                    cfg.method,
                    cfg.normalise_by_area,
                    cfg.clip,
                )
        except FloatingPointError as exc:
            raise DivergenceError(self._divergence_hint(f"Langevin chains blew up: {exc}")) from exc
        record = dict(
            iteration=self.iteration + 1,
            stage=self.stage,
            mismatch=it.relative_mismatch,
            energy_data=it.energy_data,
            energy_samples=it.energy_samples,
            reconstruction_error=it.reconstruction_error,
        )
        self._check_divergence(record, it)
        params, state = optimizers.ascent_step(
            cfg.optimizer,
            self.net.parameters(),
            it.gradient,
            self.layer_rates(),
            self.optimizer_state,
        )
        if not all(self._finite(W) and self._finite(b) for W, b in params):
            raise DivergenceError(self._divergence_hint("the parameters became NaN or inf"))
        return it, record, params, state

    def step(self, noise=None) -> dict:
        """One learning iteration; returns the record appended to the history.

        Computes the iteration (:meth:`compute_step`), then commits it: new chains, new
        parameters, optimizer state, iteration count, history, and the next growing stage
        when one ends.
        """
        it, record, params, state = self.compute_step(noise)
        # commit: nothing above changed the run; everything below is plain assignment
        self.net = self.net.with_parameters(params)
        self.chains = it.chains
        self.optimizer_state = state
        self.iteration += 1
        for key in HISTORY_KEYS:
            self.history[key].append(record[key])
        while self.stage < self.config.stage_after(self.iteration):  # the growing schedule
            self.enter_stage(self.stage + 1)
        return record

    def _finite(self, a) -> bool:
        return bool(self.xp.isfinite(a).all())

    def _check_divergence(self, record, it):
        cfg = self.config
        numbers = [record["energy_data"], record["energy_samples"]]
        if (
            not all(math.isfinite(x) for x in numbers)
            or not self._finite(it.chains)
            or not all(self._finite(gW) and self._finite(gb) for gW, gb in it.gradient)
        ):
            raise DivergenceError(self._divergence_hint("energies or gradients became NaN or inf"))
        pixels = self.data[0].size
        limit = cfg.energy_limit * (abs(record["energy_data"]) + 1e3 * pixels / cfg.sigma**2)
        if abs(record["energy_samples"]) > limit:
            raise DivergenceError(
                self._divergence_hint(
                    f"the synthesised images' energy {record['energy_samples']:.3g} exploded "
                    f"(data: {record['energy_data']:.3g})"
                )
            )

    def run(self, iterations: int | None = None, callback=None):
        """Run until ``iterations`` more are done (default: to the end).

        ``callback(trainer, record)``, if given, is called after each iteration.
        """
        target = (
            self.config.total_iterations
            if iterations is None
            else min(self.config.total_iterations, self.iteration + iterations)
        )
        while self.iteration < target:
            record = self.step()
            if callback is not None:
                callback(self, record)
        return self

    # --- state for checkpoints -----------------------------------------------------------

    def state(self) -> tuple[dict, dict]:
        """``(arrays, meta)`` describing the run exactly, for :func:`save_checkpoint`."""
        arrays = {"chains": self.chains}
        for l, (W, b) in enumerate(self.net.parameters()):
            arrays[f"layer_{l}_W"], arrays[f"layer_{l}_b"] = W, b
        arrays.update(optimizers.state_arrays(self.optimizer_state))
        meta = dict(
            config=self.config.to_dict(),
            iteration=self.iteration,
            stage=self.stage,
            layers=self.net.depth,
            optimizer=optimizers.state_meta(self.config.optimizer, self.optimizer_state),
            history=self.history,
        )
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict, meta: dict, data) -> Trainer:
        """Rebuild a trainer from a checkpoint; continuing it reproduces the uninterrupted run."""
        config = LearningConfig.from_dict(meta["config"])
        saved, now = tuple(arrays["chains"].shape[1:]), tuple(data.shape[1:])
        if saved != now:
            raise ValueError(
                f"the checkpoint was made with images of shape {saved} but the data now has shape "
                f"{now} (colour/gray or size mismatch with the resumed run)"
            )
        trainer = cls(config, data)
        for stage in range(2, int(meta["stage"]) + 1):
            trainer.enter_stage(stage)

        def to_device(a):
            return to_backend(a, trainer.xp, trainer.dtype)

        params = [
            (to_device(arrays[f"layer_{l}_W"]), to_device(arrays[f"layer_{l}_b"]))
            for l in range(int(meta["layers"]))
        ]
        trainer.net = trainer.net.with_parameters(params)
        trainer.chains = to_device(arrays["chains"])
        trainer.iteration = int(meta["iteration"])
        trainer.history = {k: list(meta["history"].get(k, [])) for k in HISTORY_KEYS}
        trainer.optimizer_state = optimizers.load_state(meta["optimizer"], arrays, to_device)
        return trainer
