"""A whole classifier run on the digits: train, evaluate everything, write the files and figures.

:func:`run_experiment` is what ``python -m refimpl classify`` runs: it trains one model in one
training mode on the fixed split (:mod:`refimpl.classify.data`), then measures it the way
Yang et al. (GMMC) section 4 does, and writes into ``out``:

* ``metrics.json``: ``accuracy`` and ``ece`` (fractions, ECE with 20 bins, GMMC Eq. (12)) at the
  top, then AUROC per OOD set and score function (section 4.3), PGD accuracy per epsilon
  (Table 5), the reliability bins, training time, ``gamma`` (GMMC), the configuration;
* ``predictions.npz``: ``probs (N, 10)`` and ``labels (N,)`` of the test set, and
  ``score_<set>_<score> (n,)`` for the test set and every OOD set, so that every number in
  ``metrics.json`` can be recomputed;
* ``reliability.png``: the reliability diagram (accuracy and confidence per bin);
* ``samples.png``: images drawn from every class node, a row per class beside the class mean
  of the training digits (Dai, Lu & Wu, supplementary section B);
* ``ood.png``: histograms of the three scores, test digits against each OOD set.

Host-only (files, figures): it imports NumPy and matplotlib.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from refimpl import __version__
from refimpl.backend import derived_seed, make_rng, to_backend, to_numpy, uniform
from refimpl.classify import metrics
from refimpl.classify.data import N_CLASSES, OOD_NAMES, digits_split, ood_sets, to_counts
from refimpl.classify.sampling import class_node_langevin, sgld, staged_sampling
from refimpl.classify.training import ClassifierConfig, ClassifierTrainer, default_config

SCORES = ("log_px", "max_prob", "neg_grad_norm")
SCORE_LABELS = {
    "log_px": "log p(x) + log Z",
    "max_prob": "log-odds of max_y p(y | x)",
    "neg_grad_norm": "-|d log p(x) / dx|",
}
SAMPLE_STREAM = 2**31 - 4


@dataclass(frozen=True)
class Evaluation:
    """How a trained classifier is measured.

    ``n_bins``: ECE bins (GMMC: 20); ``pgd_steps`` (GMMC Table 5: 40) and ``epsilons`` as
    fractions of the intensity range (Table 5's 4, 8, 16, 32 / 255; on the digits' [-1, 1]
    scale the radius is twice that); ``samples_per_class`` chains of ``sample_steps`` steps
    per class node, started from ``U(-1, 1)``, of which ``samples_shown`` are drawn beside
    their mean.
    """

    n_bins: int = 20
    pgd_steps: int = 40
    epsilons: tuple = metrics.PGD_EPSILONS
    samples_per_class: int = 32
    sample_steps: int = 300
    samples_shown: int = 8


# --- training -----------------------------------------------------------------------------


def describe(record: dict) -> str:
    """The progress text of one training iteration."""
    text = f"{record['phase'][:4]}, loss {record['loss']:.3g}, batch acc {record['accuracy']:.2f}"
    if record["energy_samples"] is not None:
        text += f", energy data/samples {record['energy_data']:.3g}/{record['energy_samples']:.3g}"
    return text


def train(trainer: ClassifierTrainer, progress: bool = True, stream=None, on_step=None):
    """Run ``trainer`` to its last iteration; ``on_step(trainer, record)`` after every step.

    A :class:`~refimpl.classify.training.DivergenceError` propagates unchanged (the trainer's
    state is that of the last good iteration).
    """
    from refimpl.learning.runs import Progress

    cfg = trainer.config
    label = f"{cfg.model}/{cfg.training}"
    bar = (
        Progress(cfg.iterations, trainer.iteration, label, stream, describe=describe)
        if progress
        else None
    )
    try:
        while not trainer.finished:
            record = trainer.step()
            if bar is not None:
                bar.update(record)
            if on_step is not None:
                on_step(trainer, record)
    finally:
        if bar is not None:
            bar.close()
    return trainer


# --- evaluation ---------------------------------------------------------------------------


def class_node_samples(model, config: ClassifierConfig, per_class: int, steps: int, seed: int):
    """``(images (10 per_class, 1, 8, 8), labels)`` drawn from every class node from ``U(-1, 1)``.

    Each model with its own sampler: the softmax by Langevin on ``f_c(I) + log q(I)``
    (Xie et al., Eq. (6.10); Dai, Lu & Wu, supplementary B); GMMC by staged sampling with
    targets from its own ``p(phi | y) = N(mu_y, gamma^2 I)`` (Eq. (8)); JEM by SGLD on
    ``f_y(x)`` (its ``p(x | y) ~ exp(f_y(x))``).
    """
    xp = model.xp
    rng = make_rng(derived_seed(seed, SAMPLE_STREAM), xp)
    labels = xp.repeat(xp.arange(model.n_classes), per_class)
    x0 = -1.0 + 2.0 * uniform(rng, (labels.shape[0], 1, 8, 8), model.dtype)
    if config.model == "gmmc":
        run = staged_sampling(
            model, x0, labels, steps, config.sampler_step_size, model.gamma, rng=rng
        )
    elif config.model == "jem":
        run = sgld(
            lambda x: model.logits_and_grad(x, labels)[1],
            x0,
            steps,
            config.sampler_step_size,
            config.sgld_noise,
            rng=rng,
        )
    else:
        run = class_node_langevin(model, labels, x0, steps, config.langevin_step_size, rng)
    return run.samples, labels


def evaluate(model, config: ClassifierConfig, settings: Evaluation, seed: int):
    """``(metrics, predictions (host arrays), samples, sample labels)`` of a trained model."""
    split, ood = digits_split(), ood_sets()
    xp = model.xp

    def dev(a):
        return to_backend(a, xp, model.dtype)

    test_x, test_y = dev(split.test_images), to_backend(split.test_labels, xp)
    probs = model.probs(test_x)
    bins = metrics.calibration_bins(probs, test_y, settings.n_bins)
    scores = {"test": metrics.ood_scores(model, test_x)}
    for name in OOD_NAMES:
        scores[name] = metrics.ood_scores(model, dev(ood[name]))
    auroc = {
        name: {s: metrics.auroc(scores["test"][s], scores[name][s]) for s in SCORES}
        for name in OOD_NAMES
    }
    radii = [2.0 * e for e in settings.epsilons]  # fractions of the range -> units of [-1, 1]
    pgd = metrics.pgd_accuracy(model, test_x, test_y, radii, settings.pgd_steps)
    samples, sample_labels = class_node_samples(
        model, config, settings.samples_per_class, settings.sample_steps, seed
    )
    result = dict(
        accuracy=metrics.accuracy(probs, test_y),
        ece=metrics.expected_calibration_error(probs, test_y, settings.n_bins),
        ece_bins=settings.n_bins,
        auroc=auroc,
        pgd=dict(
            steps=settings.pgd_steps,
            epsilon_fraction_of_range=list(settings.epsilons),
            epsilon=radii,
            accuracy=pgd,
        ),
        reliability={k: to_numpy(v).tolist() for k, v in bins.items()},
    )
    if hasattr(model, "gamma"):
        result["gamma"] = model.gamma
    predictions = dict(probs=to_numpy(probs), labels=np.asarray(split.test_labels))
    for name, values in scores.items():
        for s, v in values.items():
            predictions[f"score_{name}_{s}"] = to_numpy(v)
    return result, predictions, to_numpy(samples), to_numpy(sample_labels)


# --- figures ------------------------------------------------------------------------------


def reliability_figure(bins: dict, ece: float, accuracy: float, title: str):
    """Accuracy per confidence bin (bars) against the bins' mean confidence (red) and the
    diagonal, with the number of test images per bin below (GMMC Fig. 4)."""
    from refimpl import plotting

    edges = np.asarray(bins["edges"])
    count = np.asarray(bins["count"])
    acc, conf = np.asarray(bins["accuracy"]), np.asarray(bins["confidence"])
    width = edges[1] - edges[0]
    fig, (top, bottom) = plotting.figure(
        2, 1, figsize=(5, 5.5), gridspec_kw=dict(height_ratios=[3, 1]), sharex=True
    )
    filled = count > 0
    top.bar(
        edges[:-1][filled],
        acc[filled],
        width=width,
        align="edge",
        color="C0",
        edgecolor="k",
        lw=0.5,
        label="accuracy of the bin",
    )
    centres = edges[:-1][filled] + width / 2
    top.plot(
        centres, conf[filled], "_", color="C3", ms=12, mew=2, label="mean confidence of the bin"
    )
    top.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    top.set(
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"{title}\naccuracy {accuracy:.3f}, ECE {ece:.4f} (fraction, {len(count)} bins)",
    )
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(edges[:-1], count, width=width, align="edge", color="0.6", edgecolor="k", lw=0.5)
    bottom.set(xlabel="confidence max_y p(y | x)", ylabel="test images", yscale="log")
    fig.tight_layout()
    return fig


def samples_figure(samples, sample_labels, title: str, shown: int = 8):
    """A row per class: the training digits' class mean, the samples' mean, ``shown`` samples.

    Images are drawn on the digits' scale (ink = dark, clipped to [-1, 1]); the samples' mean
    is stretched to its own range, so that a faint template under noise shows.
    """
    from refimpl import plotting

    split = digits_split()
    per_class = int((sample_labels == 0).sum())
    shown = min(shown, per_class)
    fig, axes = plotting.figure(
        N_CLASSES, shown + 2, figsize=(1.0 * (shown + 2), 1.05 * N_CLASSES), squeeze=False
    )
    for c in range(N_CLASSES):
        mine = samples[sample_labels == c]
        row = [split.train_images[split.train_labels == c].mean(axis=0), mine.mean(axis=0)]
        for j, image in enumerate(row + list(mine[:shown])):
            image = image[0]
            if j == 1:  # stretch the samples' mean to [-1, 1]
                lo, hi = image.min(), image.max()
                image = 2 * (image - lo) / (hi - lo) - 1 if hi > lo else 0 * image
            ax = axes[c, j]
            ax.imshow(
                to_counts(np.clip(image, -1, 1)),
                cmap="gray_r",
                vmin=0,
                vmax=16,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                names = ["data mean", f"mean of {per_class}\n(stretched)"]
                ax.set_title(names[j] if j < 2 else f"sample {j - 1}", fontsize=7)
        axes[c, 0].set_ylabel(str(c), rotation=0, labelpad=10)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _shown(score: str, values):
    """What the histogram shows: ``max p`` as its log-odds ``log(p / (1 - p))``, which spreads
    the confidences piled up near 1 (a monotone map: the AUROC is the same)."""
    if score != "max_prob":
        return values
    p = np.clip(values, 1e-300, 1 - 1e-16)
    return np.log(p) - np.log1p(-p)


def ood_figure(predictions: dict, auroc: dict, title: str):
    """Histograms of each score (rows) for the test digits and each OOD set (columns)."""
    from refimpl import plotting

    fig, axes = plotting.figure(
        len(SCORES),
        len(OOD_NAMES),
        figsize=(3.2 * len(OOD_NAMES), 2.5 * len(SCORES)),
        squeeze=False,
    )
    for i, s in enumerate(SCORES):
        inside = _shown(s, predictions[f"score_test_{s}"])
        for j, name in enumerate(OOD_NAMES):
            outside = _shown(s, predictions[f"score_{name}_{s}"])
            both = np.concatenate([inside, outside])
            lo, hi = np.percentile(both, [0.5, 99.5])
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            ax = axes[i, j]
            kw = dict(bins=40, range=(lo, hi), density=True, alpha=0.55)
            ax.hist(inside, color="C2", label="test digits", **kw)
            ax.hist(outside, color="C3", label=name, **kw)
            ax.set_title(f"{name}: AUROC {auroc[name][s]:.3f}", fontsize=9)
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(SCORE_LABELS[s], fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_outputs(
    out, result: dict, predictions: dict, samples, sample_labels, shown: int = 8
) -> Path:
    """``metrics.json``, ``predictions.npz`` and the three figures in ``out``."""
    from refimpl import plotting

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    np.savez(out / "predictions.npz", **predictions)
    name = f"{result['model']}/{result['training']}, seed {result['seed']}"
    plotting.save(
        reliability_figure(result["reliability"], result["ece"], result["accuracy"], name),
        out / "reliability.png",
    )
    plotting.save(
        samples_figure(samples, sample_labels, f"class-node samples: {name}"), out / "samples.png"
    )
    plotting.save(ood_figure(predictions, result["auroc"], f"OOD scores: {name}"), out / "ood.png")
    return out


# --- the run ------------------------------------------------------------------------------


def make_trainer(model: str, training: str | None = None, seed: int = 0, config=None):
    """A fresh trainer on the fixed split: ``config`` a :class:`ClassifierConfig` or overrides."""
    if not isinstance(config, ClassifierConfig):
        config = default_config(model, training, seed, **(config or {}))
    split = digits_split()
    return ClassifierTrainer(config, split.train_images, split.train_labels, N_CLASSES)


def run_experiment(
    model: str,
    training: str | None = None,
    seed: int = 0,
    out=None,
    progress: bool = True,
    config=None,
    trainer: ClassifierTrainer | None = None,
    on_step=None,
    evaluation: Evaluation | None = None,
    stream=None,
) -> dict:
    """Train ``model`` in mode ``training`` on the fixed digits split, evaluate, write ``out``.

    Args:
        model: ``"softmax"``, ``"gmmc"`` or ``"jem"``; training: a mode of
            :data:`~refimpl.classify.training.MODES` (None: the model's default).
        seed: the run's seed (initial weights, mini-batches, buffer, sampler noise).
        out: the folder for the files listed in the module docstring (None: write nothing).
        progress: show a progress bar (a terminal) or progress lines (otherwise).
        config: a :class:`ClassifierConfig`, or a dict of overrides of the default one.
        trainer: continue this trainer (e.g. one rebuilt from a checkpoint) instead.
        on_step: ``on_step(trainer, record)`` after every iteration (checkpointing).
        evaluation: the :class:`Evaluation` settings.

    Returns:
        The metrics (what ``metrics.json`` holds). Raises
        :class:`~refimpl.classify.training.DivergenceError` if training diverges.
    """
    evaluation = evaluation or Evaluation()
    if trainer is None:
        trainer = make_trainer(model, training, seed, config)
    cfg = trainer.config
    start = time.perf_counter()
    train(trainer, progress, stream or sys.stderr, on_step)
    eval_start = time.perf_counter()
    final = trainer.final_model()
    result, predictions, samples, sample_labels = evaluate(final, cfg, evaluation, cfg.seed)
    head = dict(accuracy=result.pop("accuracy"), ece=result.pop("ece"))
    result = dict(
        head,
        model=cfg.model,
        training=cfg.training,
        seed=cfg.seed,
        **result,
        iterations=trainer.iteration,
        train_seconds=trainer.seconds,
        eval_seconds=time.perf_counter() - eval_start,
        wall_seconds=time.perf_counter() - start,
        evaluation=asdict(evaluation),
        config=cfg.to_dict(),
        version=__version__,
    )
    if out is not None:
        write_outputs(out, result, predictions, samples, sample_labels, evaluation.samples_shown)
    return result
