"""Algorithm 1 (maximum likelihood with persistent Langevin chains), contrastive divergence,
and layer growing (section 8).

One iteration (Algorithm 1, Eqs. (7.2)-(7.4)):

1. run ``L`` Langevin steps (6.10) on each synthesis chain ``I~_m`` (ML: the chains persist and
   start at 0; CD: they restart at the observed images every iteration);
2. ``H_obs = (1/M) sum_m df(I_m)/dw`` and ``H_syn = (1/M~) sum_m df(I~_m)/dw`` by backprop;
3. ``w <- w + eta (H_obs - H_syn)`` (or Adam along ``H_obs - H_syn``), per layer, optionally
   after dividing layer ``l``'s gradient by its output area ``H_l x W_l`` and clipping.

``H_obs - H_syn`` is the moment mismatch of Eqs. (7.3)-(7.4): at the maximum-likelihood
estimate the model reproduces, per filter, how often it fires and the average patch it fires
on. Each iteration records it per layer (relative to ``|H_obs|``), the mean energies
``U = -f + |I|^2 / (2 sigma^2)`` of data and samples, and the reconstruction error
``|I_obs - sigma^2 B_{w,delta(I_obs)}| / |I_obs|`` (the auto-encoder of Proposition 3).
"""

from __future__ import annotations

import math

from refimpl.backend import (
    derived_seed,
    get_namespace,
    host_rng,
    make_rng,
    random_normal,
    to_backend,
)
from refimpl.convnet import ConvLayer, ConvNet
from refimpl.learning.config import LearningConfig
from refimpl.learning.optimizers import Ascent
from refimpl.models import GenerativeModel
from refimpl.models.reference import squared_norm
from refimpl.sampling import langevin


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
        self.optimizer = Ascent(config.optimizer)
        self.iteration = 0
        self.stage = 0
        self.net: ConvNet | None = None
        n_chains = len(self.data) if config.method == "cd" else config.chains
        self.chains = self.xp.zeros((n_chains,) + tuple(self.data.shape[1:]), dtype=self.dtype)
        self.history = {k: [] for k in HISTORY_KEYS}
        self._enter_stage(1)

    # --- architecture and growing ----------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.iteration >= self.config.total_iterations

    def conv_layers_at(self, stage: int) -> int:
        """How many layers of ``spec`` are active at growing stage ``stage``."""
        return stage if self.config.grow else len(self.config.spec)

    def _new_layer(
        self,
        index: int,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        pad: int = 0,
        relu: bool = True,
    ) -> ConvLayer:
        """A fresh layer, weights N(0, init_std^2) drawn from a generator seeded by (seed, layer, stage)."""
        rng = host_rng([self.config.seed, index, self.stage])
        std = self.config.init_std_of(index, in_channels * kernel * kernel)
        weight = random_normal(
            (out_channels, in_channels, kernel, kernel), std, rng, self.xp, self.dtype
        )
        bias = self.xp.zeros((out_channels,), dtype=self.dtype)
        return ConvLayer(weight, bias, stride, pad, relu)

    def _enter_stage(self, stage: int):
        """Build the stage's network: keep the existing conv layers, add the new ones, re-create the top."""
        # BEGIN SOLUTION lesson 9
        self.stage = stage
        spec = self.config.spec
        keep = [] if self.net is None else self.net.layers[: self.conv_layers_at(stage - 1)]
        layers, channels = list(keep), self.data.shape[1] if not keep else keep[-1].out_channels
        for index in range(len(keep), self.conv_layers_at(stage)):
            s = spec[index]
            layers.append(
                self._new_layer(
                    index, channels, s.out_channels, s.kernel_size, s.stride, s.pad, s.relu
                )
            )
            channels = s.out_channels
        if self.config.top_filter:
            layers.append(self._top_filter(layers, channels))
        for index in range(len(keep), len(layers)):  # new layers start with fresh optimizer state
            self.optimizer.reset_layer(index)
        self.net = ConvNet(layers)
        self.net.geometries(self.data.shape)  # a clear error now if the image is too small
        # END SOLUTION

    def _top_filter(self, layers, channels: int) -> ConvLayer:
        """Experiment 2's single fully connected linear filter over the top feature map, Eq. (4.2).

        Its kernel covers the whole ``H x W`` map below it (one output position), it has no
        ReLU, and it is new at every stage because the map below changes as layers are grown.
        """
        # BEGIN SOLUTION lesson 10
        _, height, width = ConvNet(layers).feature_shapes(self.data.shape)[-1]
        if height != width:
            raise ValueError(f"the top filter needs a square feature map; got {height}x{width}")
        return self._new_layer(len(self.config.spec), channels, 1, height, relu=False)
        # END SOLUTION

    def layer_rates(self) -> list:
        """Learning rate of each layer of the current network (0 for frozen lower layers)."""
        rates = self.config.learning_rates()
        n_conv = self.conv_layers_at(self.stage)
        conv = rates[:n_conv]
        if self.config.grow and not self.config.refine_lower:  # only the newest layer learns
            conv = [0.0] * (n_conv - 1) + conv[-1:]
        return conv + ([rates[-1]] if self.config.top_filter else [])

    # --- one iteration -------------------------------------------------------------------

    def noise(self):
        """The Langevin noise generator of the current iteration, seeded by ``(seed, iteration)``.

        A fresh generator per iteration needs no state in the checkpoint (CuPy's generators
        cannot export theirs), and a resumed run draws exactly the noise it would have drawn.
        """
        return make_rng(derived_seed(self.config.seed, self.iteration), self.xp)

    def model(self) -> GenerativeModel:
        return GenerativeModel(self.net, self.config.sigma)

    def _synthesize(self):
        # BEGIN SOLUTION lesson 11
        cfg = self.config
        start = self.data if cfg.method == "cd" else self.chains
        try:
            return langevin(
                self.model(), start, cfg.langevin_steps, cfg.step_size, self.noise()
            ).samples
        except FloatingPointError as exc:
            raise DivergenceError(self._divergence_hint(f"Langevin chains blew up: {exc}")) from exc
        # END SOLUTION

    def _divergence_hint(self, what: str) -> str:
        cfg = self.config
        return (
            f"{what} (iteration {self.iteration + 1}, stage {self.stage}). Likely causes: the "
            f"Langevin step size {cfg.step_size:g} is too large for sigma {cfg.sigma:g} (keep it "
            f"well below 2 sigma), or the learning rate {cfg.learning_rates()} is too large for "
            f"this image scale ({cfg.scale}); lower one of them. The last good checkpoint is kept."
        )

    def _scaled_gradient(self, g_obs, g_syn):
        """``H_obs - H_syn`` per layer, area-normalised and clipped as configured."""
        # BEGIN SOLUTION lesson 8
        cfg, xp = self.config, self.xp
        m_obs, m_syn = len(self.data), len(self.chains)
        out = []
        for geom, (w_o, b_o), (w_s, b_s) in zip(self.net.geometries(self.data.shape), g_obs, g_syn):
            gW, gb = w_o / m_obs - w_s / m_syn, b_o / m_obs - b_s / m_syn
            if cfg.normalise_by_area:
                area = geom.out_height * geom.out_width
                gW, gb = gW / area, gb / area
            if cfg.clip is not None:
                norm = float(xp.sqrt((gW * gW).sum() + (gb * gb).sum()))
                if norm > cfg.clip:
                    gW, gb = gW * (cfg.clip / norm), gb * (cfg.clip / norm)
            out.append((gW, gb))
        return out
        # END SOLUTION

    def _mismatch(self, g_obs, g_syn) -> list:
        """Per layer: ``|H_obs - H_syn| / |H_obs|`` (the relative moment mismatch, Eqs. (7.3)-(7.4))."""
        xp = self.xp
        m_obs, m_syn = len(self.data), len(self.chains)
        out = []
        for (w_o, b_o), (w_s, b_s) in zip(g_obs, g_syn):
            diff = float(
                xp.sqrt(
                    ((w_o / m_obs - w_s / m_syn) ** 2).sum()
                    + ((b_o / m_obs - b_s / m_syn) ** 2).sum()
                )
            )
            ref = float(xp.sqrt(((w_o / m_obs) ** 2).sum() + ((b_o / m_obs) ** 2).sum()))
            out.append(diff / ref if ref > 0 else (0.0 if diff == 0 else math.inf))
        return out

    def reconstruction_error(self) -> float:
        """Mean over the observed images of ``|I - sigma^2 B_{w,delta(I)}| / |I|``."""
        recon = self.model().piece_mean(self.data)
        err = self.xp.sqrt(squared_norm(self.data - recon) / squared_norm(self.data))
        return float(err.mean())

    def step(self) -> dict:
        """One learning iteration; returns the record appended to the history."""
        cfg, xp = self.config, self.xp
        self.chains = self._synthesize()
        f_obs, g_obs = self.net.score_and_grad_params(self.data)
        f_syn, g_syn = self.net.score_and_grad_params(self.chains)
        var = cfg.sigma**2
        energy_data = float((-f_obs + squared_norm(self.data) / (2 * var)).mean())
        energy_samples = float((-f_syn + squared_norm(self.chains) / (2 * var)).mean())
        record = dict(
            iteration=self.iteration + 1,
            stage=self.stage,
            mismatch=self._mismatch(g_obs, g_syn),
            energy_data=energy_data,
            energy_samples=energy_samples,
            reconstruction_error=self.reconstruction_error(),
        )
        grads = self._scaled_gradient(g_obs, g_syn)
        self._check_divergence(record, grads)
        self.optimizer.step(self.net.parameters(), grads, self.layer_rates())
        if not all(
            bool(xp.isfinite(W).all() and xp.isfinite(b).all()) for W, b in self.net.parameters()
        ):
            raise DivergenceError(self._divergence_hint("the parameters became NaN or inf"))
        self.iteration += 1
        for key in HISTORY_KEYS:
            self.history[key].append(record[key])
        if (
            self.iteration % cfg.iterations_per_layer == 0
            and self.stage < cfg.stages
            and not self.finished
        ):
            self._enter_stage(self.stage + 1)
        return record

    def _check_divergence(self, record, grads):
        xp, cfg = self.xp, self.config
        numbers = [record["energy_data"], record["energy_samples"]]
        if (
            not all(math.isfinite(x) for x in numbers)
            or not bool(xp.isfinite(self.chains).all())
            or not all(bool(xp.isfinite(gW).all() and xp.isfinite(gb).all()) for gW, gb in grads)
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
        """Run until ``iterations`` more are done (default: to the end); ``callback(trainer, record)``."""
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
        arrays.update(self.optimizer.state_arrays())
        meta = dict(
            config=self.config.to_dict(),
            iteration=self.iteration,
            stage=self.stage,
            layers=self.net.depth,
            optimizer=self.optimizer.state_meta(),
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
        if int(meta["stage"]) > 1:
            for stage in range(2, int(meta["stage"]) + 1):
                trainer._enter_stage(stage)
        to_device = lambda a: to_backend(a, trainer.xp, trainer.dtype)
        params = [
            (to_device(arrays[f"layer_{l}_W"]), to_device(arrays[f"layer_{l}_b"]))
            for l in range(int(meta["layers"]))
        ]
        trainer.net = trainer.net.with_parameters(params)
        trainer.chains = to_device(arrays["chains"])
        trainer.iteration = int(meta["iteration"])
        trainer.history = {k: list(meta["history"].get(k, [])) for k in HISTORY_KEYS}
        trainer.optimizer.load(meta["optimizer"], arrays, to_device)
        return trainer
