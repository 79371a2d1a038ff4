"""Classifier runs on disk: the ``classify`` command's run folder, checkpoints and exact resume.

A run lives in a folder managed by :mod:`refimpl.run_folder` (locked while a process works in
it, every file written atomically), the same way as the learning runs
(:mod:`refimpl.learning.runs`). The folder holds:

* ``config.json``: the command, the :class:`~refimpl.classify.training.ClassifierConfig`, the
  :class:`~refimpl.classify.experiment.Evaluation` settings, how often a checkpoint is
  written, the SHA-256 of the training split (images and labels) and refimpl's version;
* ``checkpoint.npz``: the trainer's state at an iteration boundary
  (:meth:`ClassifierTrainer.state`: parameters, Adam moments, the replay buffer, the
  iteration, the history, the training time), written at iteration 0, every
  ``checkpoint_every`` updates, at the end, and when SIGINT or SIGTERM stops the run;
* at the end (:func:`refimpl.classify.experiment.write_outputs`): ``metrics.json``,
  ``predictions.npz``, ``reliability.png``, ``samples.png``, ``ood.png``.

``--resume FOLDER`` continues from the checkpoint and reaches the same parameters, bit for
bit, as the uninterrupted run (no generator state is needed: every draw of iteration ``t``
is seeded by ``(seed, t)``). The checkpoint is checked against ``config.json`` and against
what its configuration builds (:func:`check_checkpoint`) before anything is restored; a
finished run that is resumed is evaluated again and its outputs rewritten.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict
from pathlib import Path

from refimpl import __version__
from refimpl.backend import to_numpy
from refimpl.classify import experiment
from refimpl.classify.data import N_CLASSES, digits_split
from refimpl.classify.training import (
    HISTORY_KEYS,
    ClassifierConfig,
    ClassifierTrainer,
    DivergenceError,
)
from refimpl.learning import optimizers
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
    check_history,
    check_meta_keys,
    check_seconds,
    run_loop,
    signals_raise,
)

COMMAND = "classify"
CHECKPOINT_EVERY = 50  # updates; a checkpoint is ~1.5 MB and takes milliseconds
DEFAULT_EVALUATION = experiment.Evaluation()
META_KEYS = (
    "kind",
    "config",
    "iteration",
    "n_classes",
    "image_shape",
    "n_train",
    "optimizer",
    "history",
    "seconds",
)


def split_fingerprint() -> str:
    """SHA-256 of the training split's images and labels (``config.json`` keeps it)."""
    split = digits_split()
    digest = hashlib.sha256(split.train_images.tobytes())
    digest.update(split.train_labels.astype("int64").tobytes())
    return digest.hexdigest()


class ClassifierRun(FolderRun):
    """A classifier run in its run folder, which this process holds locked until :meth:`close`.

    Attributes: trainer (:class:`ClassifierTrainer`), folder
    (:class:`~refimpl.run_folder.RunFolder`), evaluation
    (:class:`~refimpl.classify.experiment.Evaluation`), checkpoint_every.
    """

    def __init__(self, trainer, folder: RunFolder, evaluation, checkpoint_every: int):
        super().__init__(folder)
        self.trainer = trainer
        self.evaluation, self.checkpoint_every = evaluation, checkpoint_every

    @property
    def config(self) -> ClassifierConfig:
        return self.trainer.config


def start_run(
    config: ClassifierConfig,
    out,
    evaluation: experiment.Evaluation | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    fresh_name: bool = False,
) -> ClassifierRun:
    """A new run: the trainer built (every setting checked), then the folder created and locked.

    Writes ``config.json`` and the checkpoint of iteration 0. ``fresh_name``: if ``out`` holds
    a run, use ``out-2``, ``out-3``, ... (:meth:`RunFolder.create`).
    """
    evaluation = evaluation or DEFAULT_EVALUATION
    trainer = experiment.make_trainer(config.model, config=config)
    record = dict(
        command=COMMAND,
        config=config.to_dict(),
        evaluation=asdict(evaluation),
        checkpoint_every=checkpoint_every,
        train=split_fingerprint(),
        version=__version__,
    )
    folder = RunFolder.start(out, record, trainer.state(), fresh_name=fresh_name)
    return ClassifierRun(trainer, folder, evaluation, checkpoint_every)


def _recorded(folder: RunFolder):
    """``(config, evaluation, checkpoint_every)`` from ``config.json``, checked."""
    path, record = folder.file(RECORD), folder.record
    if record.get("command") != COMMAND:
        command = record.get("command")
        hint = (
            f"; continue it with `python -m refimpl {command} --resume {folder.path}`"
            if isinstance(command, str)
            else ""
        )
        raise RunFolderError(f"{folder.path} holds a {command!r} run, not a classify run{hint}")
    try:
        config = ClassifierConfig.from_dict(record.get("config"))
        evaluation = experiment.Evaluation(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in record["evaluation"].items()}
        )
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CorruptFile(path, f"its configuration is invalid: {exc}") from None
    every = record.get("checkpoint_every")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise CorruptFile(path, f"'checkpoint_every' must be a positive integer; got {every!r}")
    if record.get("train") != split_fingerprint():
        raise CorruptFile(
            path,
            "the bundled digits differ from those the run was started with (their SHA-256 is "
            f"in {RECORD}); a run continues only on its own data: start a new run",
        )
    return config, evaluation, every


def _fail(path, problem: str):
    raise CorruptFile(path, problem)


def check_checkpoint(path, arrays: dict, meta: dict, config: ClassifierConfig, images, labels):
    """Check that a checkpoint is a state of the run ``config`` describes on ``images, labels``.

    Raises :class:`~refimpl.run_folder.RunFolderError` if it was made with other settings than
    ``config.json``'s, and :class:`~refimpl.run_folder.CorruptFile` (naming the file and the
    problem) for a missing or extra entry, an iteration out of range, an optimizer or history
    that does not count the iterations done, or arrays of the wrong names, shapes or dtypes,
    or not finite.
    """
    check_meta_keys(path, meta, META_KEYS)
    if meta["kind"] != "classifier":
        _fail(path, f"is not a classifier run's checkpoint (kind {meta['kind']!r})")
    saved = meta["config"]
    if saved != config.to_dict():
        theirs = saved if isinstance(saved, dict) else {}
        ours = config.to_dict()
        keys = [k for k in ours if theirs.get(k) != ours[k]] or ["config"]
        listed = "; ".join(
            f"{k}: {RECORD} {ours.get(k)!r}, {CHECKPOINT} {theirs.get(k)!r}" for k in keys
        )
        raise RunFolderError(
            f"{Path(path).parent}: {RECORD} and {CHECKPOINT} disagree ({listed}). A run "
            f"continues only with the settings it was started with: undo the change to "
            f"{RECORD}, or start a new run"
        )
    iteration = meta["iteration"]
    if isinstance(iteration, bool) or not isinstance(iteration, int):
        _fail(path, f"meta 'iteration' must be an integer; got {iteration!r}")
    if not 0 <= iteration <= config.iterations:
        _fail(path, f"meta 'iteration' is {iteration}, outside 0..{config.iterations}")
    shape, n_train = list(images.shape[1:]), len(labels)
    if meta["n_classes"] != N_CLASSES or meta["image_shape"] != shape or meta["n_train"] != n_train:
        _fail(
            path,
            f"was made on {meta['n_train']!r} images of shape {meta['image_shape']!r} in "
            f"{meta['n_classes']!r} classes; the run has {n_train} of shape {shape} in "
            f"{N_CLASSES}",
        )
    check_seconds(path, meta["seconds"])
    fresh = ClassifierTrainer(config, images, labels, N_CLASSES)
    layers = len(fresh.model.parameters())
    # every update is one Adam step of every parameter pair
    steps = {str(l): iteration for l in range(layers)} if iteration else {}
    if meta["optimizer"] != optimizers.state_meta("adam", {}) | {"steps": steps}:
        _fail(
            path,
            f"meta 'optimizer' is {meta['optimizer']!r}; after {iteration} updates it must be "
            f"Adam with {iteration} steps of each of the {layers} parameter pairs",
        )
    check_history(path, meta["history"], HISTORY_KEYS, iteration)
    expected_arrays, _ = fresh.state()
    params = fresh.model.parameters()
    moments = {l: optimizers.AdamMoments(1, W, W, b, b) for l, (W, b) in enumerate(params)}
    if iteration:
        expected_arrays.update(optimizers.state_arrays(moments))
    expected = {k: (tuple(a.shape), config.dtype) for k, a in expected_arrays.items()}
    check_arrays(path, {k: to_numpy(a) for k, a in arrays.items()}, expected)


def resume_run(path) -> ClassifierRun:
    """Continue the classify run in ``path``: locked, checked, from its last checkpoint.

    A folder whose creation was stopped before its first checkpoint restarts at iteration 0,
    which is exactly where it was.
    """
    folder = RunFolder.open(path)
    try:
        config, evaluation, every = _recorded(folder)
        if folder.has(CHECKPOINT):
            arrays, meta = folder.read_checkpoint()
            split = digits_split()
            check_checkpoint(
                folder.file(CHECKPOINT),
                arrays,
                meta,
                config,
                split.train_images,
                split.train_labels,
            )
            trainer = ClassifierTrainer.from_state(
                arrays, meta, split.train_images, split.train_labels
            )
        else:
            trainer = experiment.make_trainer(config.model, config=config)
        return ClassifierRun(trainer, folder, evaluation, every)
    except BaseException:
        folder.close()
        raise


def _say_stopped(run: ClassifierRun, exc: KeyboardInterrupt, what: str, stream):
    """``SIGNAL: stopped WHAT saved in FOLDER``, and the command that continues."""
    name = exc.signal_name if isinstance(exc, Interrupted) else "interrupted"
    print(
        f"\n{name}: stopped{what} saved in {run.out}. Continue with:\n"
        f"  python -m refimpl {COMMAND} --resume {run.out}",
        file=stream,
        flush=True,
    )


def execute(run: ClassifierRun, progress: bool = True, stream=None) -> dict:
    """Train to the end with checkpoints, progress and clean stops; then evaluate and write.

    Stops as :func:`refimpl.run_folder.run_loop` does (SIGINT and SIGTERM: exit status 130 and
    143 with the last iteration boundary saved). :class:`DivergenceError` writes nothing: the
    last good checkpoint stays. A signal during the evaluation stops it at once; the trained
    classifier is already saved, and ``--resume`` evaluates it.

    Returns the metrics (what ``metrics.json`` holds).
    """
    trainer, cfg = run.trainer, run.config
    stream = stream if stream is not None else sys.stderr
    bar = (
        Progress(
            cfg.iterations,
            trainer.iteration,
            f"{cfg.model}/{cfg.training}",
            stream,
            describe=experiment.describe,
        )
        if progress
        else None
    )

    def step():
        record = trainer.step()
        if bar is not None:
            bar.update(record)

    def stopped(exc, meta):
        if bar is not None:
            bar.close()
        _say_stopped(run, exc, f"; checkpoint of iteration {meta['iteration']}", stream)

    try:
        run_loop(
            run.folder.save_checkpoint,
            step,
            trainer.state,
            done=lambda: trainer.finished,
            due=lambda: trainer.iteration % run.checkpoint_every == 0,
            stream=stream,
            on_stop=stopped,
            unsaved=(DivergenceError,),
        )
    finally:
        if bar is not None:
            bar.close()
    try:
        with signals_raise():
            if progress:
                print(
                    "evaluating (accuracy, ECE, OOD scores, PGD, class-node samples)", file=stream
                )
            result, predictions, samples, labels = experiment.finish(trainer, run.evaluation)
            experiment.write_outputs(
                run.out, result, predictions, samples, labels, run.evaluation.samples_shown
            )
    except KeyboardInterrupt as exc:
        _say_stopped(run, exc, " while evaluating; the trained classifier is", stream)
        raise
    return result
