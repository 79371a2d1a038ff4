"""Learning runs on disk: data preparation, run folders, checkpoints, outputs, progress, resume.

A run folder holds:

* ``config.json``: the :class:`LearningConfig` (plus the preset name and refimpl's version);
* ``checkpoint.npz``: written atomically every ``checkpoint_every`` iterations, at the end,
  and on Ctrl-C; ``--resume FOLDER`` continues from it and reaches the same parameters as
  an uninterrupted run with the same seed;
* at the end: ``train.npy`` and ``samples.npy`` (``(M, C, H, W)``, in the training images'
  intensity scale), ``reconstructions.npy`` (``sigma^2 B_{w,delta(I_obs)}``, the auto-encoding
  of Proposition 2/3), ``samples.png`` (training images and samples), ``curves.png``
  (moment mismatch per layer, Eqs. (7.3)-(7.4); mean energies of data and samples;
  reconstruction error) and ``summary.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from refimpl import __version__
from refimpl.backend import to_numpy
from refimpl.learning.checkpoint import load_checkpoint, save_checkpoint
from refimpl.learning.config import LearningConfig
from refimpl.learning.trainer import DivergenceError, Trainer

CHECKPOINT = "checkpoint.npz"
CONFIG = "config.json"


# --- data ---------------------------------------------------------------------------------


def _resize(images, size: int):
    """Bilinear resize of ``(M, C, h, w)`` host images to ``size x size``."""
    from scipy.ndimage import zoom

    m, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    return zoom(images, (1, 1, size / h, size / w), order=1)


def load_training_images(config: LearningConfig):
    """Training images ``(M, C, H, W)`` on the host in ``[0, 255]``, as the config describes."""
    import numpy as np

    from refimpl.data import load_digits, load_image, resolve_image

    if config.dataset == "texture":
        from refimpl.data import load_texture

        image = load_texture(config.image, factor=config.factor)
        if min(image.shape[1:]) < config.size:
            raise ValueError(
                f"image {config.image!r} is {image.shape[1]}x{image.shape[2]} after "
                f"downsampling by {config.factor}, smaller than the requested size "
                f"{config.size}; lower --size or the factor"
            )
        from refimpl.data import centre_crop

        return centre_crop(image, config.size)[None]
    if config.dataset == "texture-crops":
        from refimpl.data import downsample

        image = load_image(resolve_image(config.image))
        if config.factor > 1:
            h, w = (np.array(image.shape[1:]) // config.factor) * config.factor
            image = downsample(image[:, :h, :w], config.factor)
        _, h, w = image.shape
        if min(h, w) < config.size:
            raise ValueError(
                f"image {config.image!r} ({h}x{w}) is smaller than the crop size {config.size}"
            )
        rng = np.random.default_rng(config.seed)
        tops = rng.integers(0, h - config.size + 1, config.images)
        lefts = rng.integers(0, w - config.size + 1, config.images)
        return np.stack(
            [image[:, t : t + config.size, l : l + config.size] for t, l in zip(tops, lefts)]
        )
    images, labels = load_digits()
    if config.dataset == "digits":
        chosen = images[labels == config.digit][: config.images]
    else:  # digit-classes: one of each class in turn
        chosen = np.stack(
            [
                images[labels == d][i // 10]
                for i, d in zip(range(config.images), [i % 10 for i in range(config.images)])
            ]
        )
    return np.clip(_resize(chosen * (255.0 / 16.0), config.size), 0.0, 255.0)


def prepare(config: LearningConfig):
    """``(centred data, mean, raw)``: the training images on the config's scale, mean removed.

    ``raw`` is in ``[0, 255]``; :func:`to_raw` maps model-scale images back to it.
    """
    from refimpl.data import centre

    raw = load_training_images(config)
    scaled = raw / 127.5 - 1.0 if config.scale == "unit" else raw
    data, mean = centre(scaled)
    return data, mean, raw


def to_raw(config: LearningConfig, images, mean):
    """Model-scale images (centred) back to the training images' ``[0, 255]`` intensities."""
    host = to_numpy(images) + mean
    return (host + 1.0) * 127.5 if config.scale == "unit" else host


# --- progress -----------------------------------------------------------------------------


def describe_learning(record: dict) -> str:
    """The progress text of one learning iteration: stage, mismatch per layer, energies."""
    return (
        f"stage {record['stage']}, mismatch {', '.join(f'{m:.3f}' for m in record['mismatch'])}, "
        f"energy data/samples {record['energy_data']:.3g}/{record['energy_samples']:.3g}"
    )


class Progress:
    """A tqdm bar with an ETA on a terminal; plain progress lines otherwise (logs, CI).

    ``describe(record) -> str`` turns an iteration's record (with an ``"iteration"`` entry)
    into the text shown beside the bar; the default is the learning runs'.
    """

    def __init__(
        self,
        total: int,
        start: int,
        label: str,
        stream=None,
        every: int | None = None,
        describe=describe_learning,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.done, self.label = total, start, label
        self.describe = describe
        self.every = every or max(1, total // 20)
        self.bar = None
        self.t0 = time.perf_counter()
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=label, file=self.stream, unit="it")

    def update(self, record: dict):
        self.done = record["iteration"]
        text = self.describe(record)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        elif self.done % self.every == 0 or self.done == self.total:
            elapsed = time.perf_counter() - self.t0
            print(
                f"{self.label}: iteration {self.done}/{self.total} ({elapsed:.0f} s): {text}",
                file=self.stream,
                flush=True,
            )

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --- outputs ------------------------------------------------------------------------------


def write_outputs(trainer: Trainer, out: Path, mean, raw, seconds: float, command: str) -> dict:
    """Samples, reconstructions, figures and summary of a finished (or stopped) run."""
    import numpy as np

    from refimpl import plotting

    config = trainer.config
    samples = to_raw(config, trainer.chains, mean)
    recon = to_raw(config, trainer.model().piece_mean(trainer.data), mean)
    np.save(out / "train.npy", raw)
    np.save(out / "samples.npy", samples)
    np.save(out / "reconstructions.npy", recon)
    clip = lambda a: np.clip(a, 0, 255)
    if command == "reconstruct":
        n = min(len(raw), 10)
        images = [clip(x) for x in raw[:n]] + [clip(x) for x in recon[:n]]
        titles = [f"train {i}" for i in range(n)] + [f"reconstruction {i}" for i in range(n)]
        columns = n
    else:
        shown_train = list(raw[: min(len(raw), 4)])
        images = [clip(x) for x in shown_train] + [
            clip(x) for x in samples[: max(4, 8 - len(shown_train))]
        ]
        titles = [f"train {i}" for i in range(len(shown_train))] + [
            f"sample {i}" for i in range(len(images) - len(shown_train))
        ]
        columns = 4
    plotting.save(plotting.image_grid(images, titles, columns=columns), out / "samples.png")
    plotting.save(curves_figure(trainer.history, plotting), out / "curves.png")
    history = trainer.history
    summary = dict(
        command=command,
        iterations=trainer.iteration,
        stages=trainer.stage,
        seconds=seconds,
        final_mismatch=history["mismatch"][-1] if history["mismatch"] else None,
        final_energy_data=history["energy_data"][-1] if history["energy_data"] else None,
        final_energy_samples=history["energy_samples"][-1] if history["energy_samples"] else None,
        final_reconstruction_error=history["reconstruction_error"][-1]
        if history["reconstruction_error"]
        else None,
        architecture=[list(s) for s in trainer.net.spec()],
        version=__version__,
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def curves_figure(history: dict, plotting):
    """Curves of moment mismatch per layer (7.3)-(7.4), mean energies and reconstruction error."""
    fig, axes = plotting.figure(1, 3, figsize=(15, 4))
    its = history["iteration"]
    depth = max((len(m) for m in history["mismatch"]), default=0)
    for l in range(depth):
        xs = [i for i, m in zip(its, history["mismatch"]) if len(m) > l]
        ys = [m[l] for m in history["mismatch"] if len(m) > l]
        axes[0].semilogy(xs, ys, lw=1, label=f"layer {l + 1}")
    axes[0].set(
        xlabel="iteration",
        ylabel="|H_obs - H_syn| / |H_obs|",
        title="moment mismatch per layer, Eqs. (7.3)-(7.4)",
    )
    axes[0].legend(fontsize=8)
    axes[1].plot(its, history["energy_data"], lw=1, label="data")
    axes[1].plot(its, history["energy_samples"], lw=1, label="samples")
    axes[1].set(xlabel="iteration", ylabel="mean energy -f + |I|^2/(2 sigma^2)", title="energy")
    axes[1].legend(fontsize=8)
    axes[2].plot(its, history["reconstruction_error"], lw=1)
    axes[2].set(
        xlabel="iteration", ylabel="|I - sigma^2 B| / |I|", title="reconstruction error of the data"
    )
    stages = [i for i, (a, b) in enumerate(zip(history["stage"], history["stage"][1:])) if a != b]
    for ax in axes:
        for s in stages:
            ax.axvline(its[s], color="gray", lw=0.5, ls=":")
    fig.tight_layout()
    return fig


# --- the run --------------------------------------------------------------------------------


def start_run(config: LearningConfig, out, preset: str | None = None, command: str = "synthesize"):
    """A fresh run folder: writes ``config.json``; returns ``(trainer, mean, raw, out)``."""
    out = Path(out)
    if (out / CHECKPOINT).exists():
        raise FileExistsError(
            f"{out} already holds a run; continue it with --resume {out} or choose another --out"
        )
    data, mean, raw = prepare(config)
    trainer = Trainer(config, data)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(config=config.to_dict(), preset=preset, command=command, version=__version__)
    (out / CONFIG).write_text(json.dumps(record, indent=2))
    return trainer, mean, raw, out


def resume_run(folder):
    """Continue the run in ``folder``: ``(trainer, mean, raw, out, command)``."""
    out = Path(folder)
    if not (out / CONFIG).is_file():
        raise FileNotFoundError(f"{out} is not a run folder (no {CONFIG})")
    record = json.loads((out / CONFIG).read_text())
    config = LearningConfig.from_dict(record["config"])
    arrays, meta = load_checkpoint(out / CHECKPOINT)
    data, mean, raw = prepare(config)
    return (
        Trainer.from_state(arrays, meta, data),
        mean,
        raw,
        out,
        record.get("command", "synthesize"),
    )


def checkpoint(trainer: Trainer, out: Path):
    arrays, meta = trainer.state()
    save_checkpoint(out / CHECKPOINT, arrays, meta)


def execute(
    trainer: Trainer,
    mean,
    raw,
    out: Path,
    command: str,
    progress: bool = True,
    stream=None,
    stop_after: int | None = None,
) -> dict:
    """Run to the end with checkpoints, progress and outputs; Ctrl-C saves and re-raises.

    ``stop_after`` stops early after that many more iterations (with a checkpoint), e.g. to
    test resuming. Raises :class:`DivergenceError` after writing nothing (the last good
    checkpoint stays on disk).
    """
    config = trainer.config
    bar = (
        Progress(config.total_iterations, trainer.iteration, command, stream) if progress else None
    )
    start = time.perf_counter()
    target = (
        config.total_iterations
        if stop_after is None
        else min(config.total_iterations, trainer.iteration + stop_after)
    )
    try:
        while trainer.iteration < target:
            record = trainer.step()
            if bar is not None:
                bar.update(record)
            if trainer.iteration % config.checkpoint_every == 0:
                checkpoint(trainer, out)
    except KeyboardInterrupt:
        checkpoint(trainer, out)
        if bar is not None:
            bar.close()
        print(
            f"\ninterrupted at iteration {trainer.iteration}; checkpoint saved. Continue with:\n"
            f"  python -m refimpl {command} --resume {out}",
            file=stream or sys.stderr,
        )
        raise
    except DivergenceError:
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.close()
    checkpoint(trainer, out)
    return write_outputs(trainer, out, mean, raw, time.perf_counter() - start, command)
