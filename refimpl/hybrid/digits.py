"""The hybrid question on real digits: the generative ConvNet, the discriminative one, their blend.

With few labels (``labelled_per_class`` training digits of each class, 5 by default), the
same softmax ConvNet (Xie et al., Eqs. (2.2)-(2.3); :class:`~refimpl.classify.heads.
SoftmaxClassifier`) is trained on one objective of the lecture slides' family

    lambda l_G + (1 - lambda) l_D,   l_G = sum_n log p(x_n | y_n),   l_D = sum_n log p(y_n | x_n),

on one set of parameters: ``lambda = 1`` is the class-conditional generative ConvNet
``p(I | c) ~ exp(f_c(I)) q(I)`` (Eq. (3.1)) trained by Dai, Lu & Wu's generative gradient
with the model expectations of each class by Langevin chains (Eq. (6.10)) from a replay
buffer; ``lambda = 0`` the discriminative ConvNet (cross-entropy); in between the blend
(:meth:`refimpl.classify.training.ClassifierTrainer._blend`). The biases, which ``l_G`` cannot
see, are fitted to ``l_D`` after training for every ``lambda > 0``
(:func:`~refimpl.classify.heads.fit_biases`). Both sums run over the labelled pairs: the
ConvNet has no ``log p(x)`` for unlabelled digits without the normalisers ``Z_c``, so unlike
the toy's (:mod:`refimpl.hybrid.experiment`) the generative end here is the labelled-only
one, and the question is Ng & Jordan's as much as Bishop & Lasserre's.

For each seed: a labelled set drawn from the fixed split's training digits
(:func:`labelled_set`), the same initial weights for every ``lambda`` (paired: the luck of
the labelled set cancels in the differences), and for each ``lambda`` a run of
``iterations`` full-batch Adam updates; then the test split's accuracy and ECE
(:mod:`refimpl.classify.metrics`), and at ``sample_lambdas`` images drawn from the class
nodes (:func:`refimpl.classify.experiment.class_node_samples`).

The sweep is one resumable run (:class:`DigitsSweep`: ``step()``, ``state()``,
``from_state()``), kept in a run folder by :func:`start_sweep` / :func:`resume_sweep` /
:func:`execute` the way every command keeps its runs (:mod:`refimpl.run_folder`):
``config.json``; ``checkpoint.npz`` (the finished runs' results and samples and the current
run's trainer) every ``checkpoint_every`` updates, after every finished run, and on SIGINT or
SIGTERM; at the end ``metrics.json``, ``error_vs_lambda.png`` (test error and ECE against
``lambda``, drawn by :func:`refimpl.hybrid.experiment.plot_sweep`) and one
``samples_lambda_<lambda>.png`` per sampled ``lambda``.

Host-only (NumPy for the results, matplotlib for the figures), like the rest of
:mod:`refimpl.hybrid`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from refimpl import __version__, plotting
from refimpl.backend import host_rng, to_backend, to_numpy
from refimpl.classify import metrics
from refimpl.classify.data import N_CLASSES, digits_split
from refimpl.classify.experiment import class_node_samples, samples_figure
from refimpl.classify.runs import check_checkpoint, split_fingerprint
from refimpl.classify.training import ClassifierConfig, ClassifierTrainer, DivergenceError
from refimpl.hybrid.experiment import Curve, jsonable, plot_sweep, summarize_family
from refimpl.learning.runs import Progress
from refimpl.run_folder import (
    CHECKPOINT,
    RECORD,
    CorruptFile,
    FolderRun,
    Interrupted,
    RunFolder,
    RunFolderError,
    check_arrays,
    check_meta_keys,
    check_seconds,
    run_loop,
)

__all__ = [
    "DigitsSettings",
    "DigitsSweep",
    "execute",
    "labelled_set",
    "resume_sweep",
    "start_sweep",
    "summary",
]

COMMAND = "hybrid --digits"
LABEL_STREAM = 2**31 - 5  # the labelled set's draw, apart from the trainer's streams
RUN_PREFIX = "run_"  # the current run's arrays in the sweep's checkpoint


@dataclass(frozen=True)
class DigitsSettings:
    """What the digits sweep runs (``asdict`` is what ``config.json`` records).

    Labels and schedule: ``labelled_per_class`` digits of each class per seed, ``seeds``,
    ``lambdas`` (the weight of ``l_G``, from the generative end 1 to the discriminative 0),
    ``iterations`` full-batch Adam updates of ``learning_rate`` per run (3e-4: at 1e-3 the
    energies climb past 100). The network (``spec``) and the sampler (``sigma`` of ``q``,
    ``langevin_steps`` of ``langevin_step_size`` per update) are the classify defaults'; the
    replay buffer holds ``buffer_size`` chains (50 a class, enough for a batch) and
    reinitialises them at rate ``reinit_rate`` (5%, the setting with which Langevin
    expectations did best on the full training set). Evaluation: ECE with ``n_bins`` bins; at
    ``sample_lambdas``, ``samples_per_class`` class-node chains of ``sample_steps`` Langevin
    steps from ``U(-1, 1)``, for the first seed.
    """

    labelled_per_class: int = 5
    seeds: tuple = (0, 1, 2)
    lambdas: tuple = (1.0, 0.5, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0)
    sample_lambdas: tuple = (1.0, 0.5, 0.0)
    iterations: int = 300
    learning_rate: float = 3e-4
    spec: tuple = ((16, 3, 1, 1), (32, 3, 2, 1), (64, 4, 1, 0))
    sigma: float = 1.0
    langevin_steps: int = 20
    langevin_step_size: float = 0.1
    buffer_size: int = 500
    reinit_rate: float = 0.05
    n_bins: int = 20
    samples_per_class: int = 16
    sample_steps: int = 300
    checkpoint_every: int = 50

    def __post_init__(self):
        for name in (
            "labelled_per_class",
            "iterations",
            "n_bins",
            "samples_per_class",
            "sample_steps",
            "checkpoint_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        seeds = tuple(self.seeds)
        if (
            not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)
            or len(set(seeds)) != len(seeds)
        ):
            raise ValueError(f"seeds must be distinct non-negative integers; got {self.seeds!r}")
        lambdas = tuple(float(v) for v in self.lambdas)
        if len(lambdas) < 2 or any(not 0.0 <= v <= 1.0 for v in lambdas):
            raise ValueError(
                f"lambdas must be at least two numbers in [0, 1]; got {self.lambdas!r}"
            )
        if len(set(lambdas)) != len(lambdas):
            raise ValueError(f"lambdas must be distinct; got {self.lambdas!r}")
        missing = [v for v in self.sample_lambdas if float(v) not in lambdas]
        if missing:
            raise ValueError(f"sample_lambdas {missing} are not among the lambdas {lambdas}")
        fewest = int(np.bincount(digits_split().train_labels).min())
        if self.labelled_per_class > fewest:
            raise ValueError(
                f"labelled_per_class {self.labelled_per_class} is more than the {fewest} "
                "training digits of the rarest class"
            )
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "lambdas", lambdas)
        object.__setattr__(self, "sample_lambdas", tuple(float(v) for v in self.sample_lambdas))
        object.__setattr__(self, "spec", tuple(tuple(s) for s in self.spec))
        self.config(seeds[0], lambdas[0])  # every other setting, checked by the trainer's config

    @classmethod
    def from_dict(cls, data: dict) -> DigitsSettings:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown digits sweep settings: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spec"] = [list(s) for s in self.spec]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @property
    def batch_size(self) -> int:
        return N_CLASSES * self.labelled_per_class

    @property
    def jobs(self) -> list:
        """``[(seed, lambda), ...]`` in the order they run."""
        return [(seed, lam) for seed in self.seeds for lam in self.lambdas]

    def samples_wanted(self, seed: int, lam: float) -> bool:
        return seed == self.seeds[0] and lam in self.sample_lambdas

    def config(self, seed: int, lam: float) -> ClassifierConfig:
        """The classifier configuration of one run: the blend at ``lam`` on the full batch."""
        return ClassifierConfig(
            model="softmax",
            training="blend",
            blend_lambda=float(lam),
            seed=int(seed),
            spec=[list(s) for s in self.spec],
            iterations=self.iterations,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            sigma=self.sigma,
            expectation="langevin",
            langevin_steps=self.langevin_steps,
            langevin_step_size=self.langevin_step_size,
            buffer_size=self.buffer_size,
            reinit_rate=self.reinit_rate,
        )


def labelled_set(seed: int, per_class: int):
    """``(images (10 per_class, 1, 8, 8), labels)``: ``per_class`` training digits of each class.

    Drawn without replacement from the fixed split's training set by a generator seeded by
    ``(seed, LABEL_STREAM)``, class by class; never a test digit.
    """
    split = digits_split()
    rng = host_rng([int(seed), LABEL_STREAM])
    rows = np.concatenate(
        [
            rng.choice(np.flatnonzero(split.train_labels == c), per_class, replace=False)
            for c in range(N_CLASSES)
        ]
    )
    return split.train_images[rows], split.train_labels[rows]


def evaluate(trainer: ClassifierTrainer, settings: DigitsSettings, want_samples: bool):
    """``(result, samples or None)`` of a finished run: test accuracy and ECE, the training set's
    accuracy, and class-node samples ``(10 samples_per_class, 1, 8, 8)`` if asked."""
    cfg = trainer.config
    split = digits_split()
    model = trainer.final_model()
    xp = model.xp
    test_x = to_backend(split.test_images, xp, model.dtype)
    test_y = to_backend(split.test_labels, xp)
    probs = model.probs(test_x)
    train_probs = model.probs(trainer.images)
    history = trainer.history
    result = dict(
        seed=cfg.seed,
        lam=cfg.blend_lambda,
        accuracy=metrics.accuracy(probs, test_y),
        ece=metrics.expected_calibration_error(probs, test_y, settings.n_bins),
        train_accuracy=metrics.accuracy(train_probs, trainer.labels),
        final_loss=history["loss"][-1],
        final_energy_data=history["energy_data"][-1],
        final_energy_samples=history["energy_samples"][-1],
        train_seconds=trainer.seconds,
    )
    samples = None
    if want_samples:
        images, _ = class_node_samples(
            model, cfg, settings.samples_per_class, settings.sample_steps, cfg.seed
        )
        samples = to_numpy(images)
    return result, samples


class DigitsSweep:
    """The sweep's state: the finished runs' results and samples, and the run in progress.

    :meth:`step` does one thing and commits it at the end: an Adam update of the current run
    (starting the next run first if none is in progress), or, when the run has done its
    updates, its evaluation. So a :meth:`state` taken between steps is a boundary that
    :meth:`from_state` continues exactly.
    """

    def __init__(self, settings: DigitsSettings):
        self.settings = settings
        self.results: list = []
        self.samples: dict = {}  # job index -> (10 per_class, 1, 8, 8)
        self.trainer: ClassifierTrainer | None = None
        self.seconds = 0.0

    @property
    def jobs(self) -> list:
        return self.settings.jobs

    @property
    def finished(self) -> bool:
        return len(self.results) == len(self.jobs)

    @property
    def updates(self) -> int:
        """Adam updates done, over every run."""
        current = self.trainer.iteration if self.trainer is not None else 0
        return len(self.results) * self.settings.iterations + current

    @property
    def total_updates(self) -> int:
        return len(self.jobs) * self.settings.iterations

    def _new_trainer(self, job: int) -> ClassifierTrainer:
        seed, lam = self.jobs[job]
        images, labels = labelled_set(seed, self.settings.labelled_per_class)
        return ClassifierTrainer(self.settings.config(seed, lam), images, labels, N_CLASSES)

    def step(self) -> dict | None:
        """One update (the training record, with the sweep's ``iteration``) or one evaluation
        (None)."""
        t0 = time.perf_counter()
        job = len(self.results)
        trainer = self.trainer if self.trainer is not None else self._new_trainer(job)
        if not trainer.finished:
            record = trainer.step()
            self.trainer = trainer
            self.seconds += time.perf_counter() - t0
            seed, lam = self.jobs[job]
            return dict(record, iteration=self.updates, seed=seed, lam=lam)
        result, samples = evaluate(
            trainer, self.settings, self.settings.samples_wanted(*self.jobs[job])
        )
        # commit
        if samples is not None:
            self.samples = {**self.samples, job: samples}
        self.results = self.results + [result]
        self.trainer = None
        self.seconds += time.perf_counter() - t0
        return None

    def state(self) -> tuple[dict, dict]:
        """``(arrays, meta)``: the finished runs (results, samples) and the current trainer."""
        arrays = {f"samples_{job}": images for job, images in self.samples.items()}
        current = None
        if self.trainer is not None:
            run_arrays, current = self.trainer.state()
            arrays.update({RUN_PREFIX + k: v for k, v in run_arrays.items()})
        meta = dict(
            kind="hybrid-digits",
            settings=self.settings.to_dict(),
            results=[dict(r) for r in self.results],
            current=current,
            seconds=self.seconds,
        )
        return arrays, meta

    @classmethod
    def from_state(cls, path, arrays: dict, meta: dict, settings: DigitsSettings) -> DigitsSweep:
        """The sweep of a checkpoint, checked (:class:`~refimpl.run_folder.CorruptFile` naming
        ``path`` and the problem, or a named disagreement with ``settings``)."""
        check_meta_keys(path, meta, ("kind", "settings", "results", "current", "seconds"))
        if meta["kind"] != "hybrid-digits":
            raise CorruptFile(path, f"is not a digits sweep's checkpoint (kind {meta['kind']!r})")
        if meta["settings"] != settings.to_dict():
            ours, theirs = settings.to_dict(), meta["settings"]
            theirs = theirs if isinstance(theirs, dict) else {}
            keys = [k for k in ours if theirs.get(k) != ours[k]] or ["settings"]
            listed = "; ".join(
                f"{k}: {RECORD} {ours.get(k)!r}, {CHECKPOINT} {theirs.get(k)!r}" for k in keys
            )
            raise RunFolderError(
                f"{Path(path).parent}: {RECORD} and {CHECKPOINT} disagree ({listed}). A run "
                f"continues only with the settings it was started with: undo the change to "
                f"{RECORD}, or start a new run"
            )
        sweep = cls(settings)
        results = meta["results"]
        if not isinstance(results, list) or len(results) > len(sweep.jobs):
            raise CorruptFile(path, f"meta 'results' must list at most {len(sweep.jobs)} runs")
        for job, result in enumerate(results):
            seed, lam = sweep.jobs[job]
            if not isinstance(result, dict) or (result.get("seed"), result.get("lam")) != (
                seed,
                lam,
            ):
                raise CorruptFile(path, f"result {job} is not that of seed {seed}, lambda {lam:g}")
        seconds = check_seconds(path, meta["seconds"])
        shape = (N_CLASSES * settings.samples_per_class, 1, 8, 8)
        wanted = {
            f"samples_{job}": (shape, "float64")
            for job in range(len(results))
            if settings.samples_wanted(*sweep.jobs[job])
        }
        samples = {k: v for k, v in arrays.items() if not k.startswith(RUN_PREFIX)}
        check_arrays(path, samples, wanted)
        run_arrays = {
            k[len(RUN_PREFIX) :]: v for k, v in arrays.items() if k.startswith(RUN_PREFIX)
        }
        trainer = None
        if meta["current"] is not None:
            if len(results) == len(sweep.jobs):
                raise CorruptFile(path, "holds a run in progress after the last run")
            seed, lam = sweep.jobs[len(results)]
            images, labels = labelled_set(seed, settings.labelled_per_class)
            check_checkpoint(
                path, run_arrays, meta["current"], settings.config(seed, lam), images, labels
            )
            trainer = ClassifierTrainer.from_state(run_arrays, meta["current"], images, labels)
        elif run_arrays:
            raise CorruptFile(path, "holds the arrays of a run but no run in progress")
        sweep.results = [dict(r) for r in results]
        sweep.samples = {int(k.split("_")[1]): v for k, v in samples.items()}
        sweep.trainer = trainer
        sweep.seconds = float(seconds)
        return sweep


# --- the summary and the figures -----------------------------------------------------------------


def _table(sweep: DigitsSweep, key: str) -> np.ndarray:
    """``(seeds, lambdas)`` of one result entry."""
    s = sweep.settings
    values = np.array([r[key] for r in sweep.results], dtype=float)
    return values.reshape(len(s.seeds), len(s.lambdas))


def summary(sweep: DigitsSweep) -> dict:
    """The metrics of a finished sweep (what ``metrics.json`` holds): test error and ECE
    against lambda, summarised over the seeds by :func:`refimpl.hybrid.experiment.
    summarize_family` (means, standard errors, paired differences from both ends, the best
    lambda in between), every run's result, the settings."""
    s = sweep.settings
    errors, ece = 1.0 - _table(sweep, "accuracy"), _table(sweep, "ece")
    return jsonable(
        dict(
            labelled_per_class=s.labelled_per_class,
            seeds=list(s.seeds),
            test_images=len(digits_split().test_labels),
            error=summarize_family("test error", "lambda", list(s.lambdas), errors),
            ece=summarize_family("ECE", "lambda", list(s.lambdas), ece),
            runs=sweep.results,
            seconds=sweep.seconds,
            settings=s.to_dict(),
            version=__version__,
        )
    )


def write_figures(out: Path, sweep: DigitsSweep) -> list:
    """``error_vs_lambda.png`` and ``samples_lambda_<lambda>.png``; returns their paths."""
    s = sweep.settings
    x = np.array(s.lambdas)
    # the blend moves only for small lambda (README): a log axis down to the smallest
    # positive lambda, linear from there to 0
    smallest = min((v for v in s.lambdas if v > 0), default=1.0)
    axis = f"$\\lambda$ (1 generative $l_G$, 0 discriminative $l_D$; log above {smallest:g})"
    scale = dict(xscale="symlog", linthresh=smallest, reverse=True, draws="seeds")
    curves = [
        Curve(x, 1.0 - _table(sweep, "accuracy"), "test error", axis, **scale),
        Curve(x, _table(sweep, "ece"), "ECE", axis, ylabel="ECE (fraction)", **scale),
    ]
    title = (
        f"digits, {s.labelled_per_class} labels per class, {len(s.seeds)} seeds "
        f"({len(digits_split().test_labels)} test digits)"
    )
    paths = [plot_sweep(out / "error_vs_lambda.png", curves, title=title)]
    labels = np.repeat(np.arange(N_CLASSES), s.samples_per_class)
    for job, images in sorted(sweep.samples.items()):
        seed, lam = sweep.jobs[job]
        name = f"samples_lambda_{lam:g}.png"
        fig = samples_figure(images, labels, f"class-node samples, lambda = {lam:g} (seed {seed})")
        paths.append(plotting.save(fig, out / name))
    return paths


# --- the run folder ------------------------------------------------------------------------------


class SweepRun(FolderRun):
    """A digits sweep in its run folder, locked by this process until :meth:`close`."""

    def __init__(self, sweep: DigitsSweep, folder: RunFolder):
        super().__init__(folder)
        self.sweep = sweep


def start_sweep(settings: DigitsSettings, out, fresh_name: bool = False) -> SweepRun:
    """A new sweep in a new run folder (``config.json`` and the checkpoint of its start);
    ``fresh_name``: if ``out`` holds a run, use ``out-2``, ``out-3``, ..."""
    sweep = DigitsSweep(settings)
    record = dict(
        command=COMMAND,
        settings=settings.to_dict(),
        train=split_fingerprint(),
        version=__version__,
    )
    folder = RunFolder.start(out, record, sweep.state(), fresh_name=fresh_name)
    return SweepRun(sweep, folder)


def resume_sweep(path) -> SweepRun:
    """Continue the digits sweep in ``path`` from its checkpoint, checked."""
    folder = RunFolder.open(path)
    try:
        record = folder.record
        if record.get("command") != COMMAND:
            raise RunFolderError(
                f"{folder.path} holds a {record.get('command')!r} run, not a digits sweep "
                "(`hybrid --digits`)"
            )
        try:
            settings = DigitsSettings.from_dict(record.get("settings"))
        except (TypeError, ValueError) as exc:
            raise CorruptFile(folder.file(RECORD), f"its settings are invalid: {exc}") from None
        if record.get("train") != split_fingerprint():
            raise CorruptFile(
                folder.file(RECORD),
                "the bundled digits differ from those the sweep was started with; start a new run",
            )
        if folder.has(CHECKPOINT):
            arrays, meta = folder.read_checkpoint()
            sweep = DigitsSweep.from_state(folder.file(CHECKPOINT), arrays, meta, settings)
        else:
            sweep = DigitsSweep(settings)
        return SweepRun(sweep, folder)
    except BaseException:
        folder.close()
        raise


def describe(record: dict) -> str:
    text = f"seed {record['seed']}, lambda {record['lam']:g}, loss {record['loss']:.3g}"
    if record["energy_samples"] is not None:
        text += f", energy data/samples {record['energy_data']:.3g}/{record['energy_samples']:.3g}"
    return text


def execute(run: SweepRun, progress: bool = True, stream=None) -> dict:
    """Run the sweep to the end with checkpoints, progress and clean stops; write the outputs.

    Stops as :func:`refimpl.run_folder.run_loop` does (SIGINT and SIGTERM: the step in
    progress is finished and saved, exit status 130 and 143). A run that diverges
    (:class:`~refimpl.classify.training.DivergenceError`) stops the sweep and writes nothing:
    the last good checkpoint stays. Returns the metrics (:func:`summary`).
    """
    sweep = run.sweep
    stream = stream if stream is not None else sys.stderr
    every = sweep.settings.checkpoint_every
    bar = (
        Progress(sweep.total_updates, sweep.updates, "hybrid digits", stream, describe=describe)
        if progress
        else None
    )
    due = {"now": False}

    def step():
        record = sweep.step()
        # a checkpoint after every evaluation (a finished run) and every `every` updates
        due["now"] = record is None or sweep.updates % every == 0
        if bar is not None and record is not None:
            bar.update(record)

    def stopped(exc, meta):
        if bar is not None:
            bar.close()
        name = exc.signal_name if isinstance(exc, Interrupted) else "interrupted"
        print(
            f"\n{name}: stopped; checkpoint of {len(meta['results'])} finished runs and the "
            f"one in progress saved in {run.out}. Continue with:\n"
            f"  python -m refimpl hybrid --resume {run.out}",
            file=stream,
            flush=True,
        )

    try:
        run_loop(
            run.folder.save_checkpoint,
            step,
            sweep.state,
            done=lambda: sweep.finished,
            due=lambda: due["now"],
            stream=stream,
            on_stop=stopped,
            unsaved=(DivergenceError,),
        )
    finally:
        if bar is not None:
            bar.close()
    result = summary(sweep)
    write_figures(run.out, sweep)
    run.folder.write_json("metrics.json", result)
    return result
