"""The checkpoint of a learning run: what it holds, and the checks it must pass to be resumed.

A checkpoint is one ``.npz`` written atomically by :mod:`refimpl.run_folder` (arrays plus a
JSON ``meta`` entry, never a pickle). For a :class:`~refimpl.learning.Trainer` it holds:

* arrays: ``chains`` ``(M~, C, H, W)``; ``layer_{l}_W`` and ``layer_{l}_b`` for each layer of
  the network of the current growing stage; with Adam, ``adam_{l}_{W|b}_{m|v}`` for each
  layer that has taken a step; all in the run's dtype;
* meta: ``config`` (the :class:`LearningConfig`), ``iteration``, ``stage``, ``layers``,
  ``optimizer`` (``kind`` and each layer's Adam step count), ``history`` (one entry per
  iteration done), and ``seconds``, the learning time of all sessions so far.

It always holds the state of an iteration boundary: :func:`boundary_state` is taken
between steps (and :meth:`Trainer.step` commits an iteration only once it is computed), and
its history is a copy, so the next step cannot change it.

:func:`check_checkpoint` refuses a checkpoint whose content does not fit its own config
(a missing or extra key, a wrong type, dtype or shape, chains that disagree with the config,
an iteration past the end, a stage that does not belong to the iteration, non-finite
arrays), naming the file and the problem, before :func:`restore` builds a trainer from it.
"""

from __future__ import annotations

import math
from pathlib import Path

from refimpl.learning import optimizers
from refimpl.learning.config import LearningConfig
from refimpl.learning.trainer import HISTORY_KEYS, Trainer
from refimpl.run_folder import CorruptFile, check_arrays, read_checkpoint, write_checkpoint

META_KEYS = ("config", "iteration", "stage", "layers", "optimizer", "history", "seconds")


def save_checkpoint(path, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` and ``meta`` to ``path`` atomically."""
    return write_checkpoint(path, arrays, meta)


def load_checkpoint(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` from ``path``; :class:`~refimpl.run_folder.CorruptFile` if damaged."""
    return read_checkpoint(path)


def boundary_state(trainer: Trainer, seconds: float) -> tuple[dict, dict]:
    """``(arrays, meta)`` of ``trainer`` now, for a checkpoint; call it between steps.

    The arrays are the trainer's own (a step replaces them, never changes them in place);
    the history lists, which a step appends to, are copied.
    """
    arrays, meta = trainer.state()
    meta = dict(meta, history={k: list(v) for k, v in meta["history"].items()})
    meta["seconds"] = float(seconds)
    return arrays, meta


def _fail(path, problem: str):
    raise CorruptFile(path, problem)


def _integer(path, meta: dict, key: str, low: int, high: int) -> int:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"meta '{key}' must be an integer; got {value!r}")
    if not low <= value <= high:
        _fail(path, f"meta '{key}' is {value}, outside {low}..{high} for this run's config")
    return value


def fresh_trainer(config: LearningConfig, data, stage: int) -> Trainer:
    """A new trainer grown to ``stage``: the architecture a checkpoint at that stage must have."""
    trainer = Trainer(config, data)
    for s in range(2, stage + 1):
        trainer.enter_stage(s)
    return trainer


def expected_arrays(trainer: Trainer, optimizer_steps: dict) -> dict:
    """``name -> (shape, dtype)`` of a checkpoint of ``trainer`` (at its stage).

    ``optimizer_steps`` are the Adam layers of the checkpoint; their moment arrays are
    named by :func:`refimpl.learning.optimizers.state_arrays` and shaped like the layer.
    """
    arrays, _ = trainer.state()
    params = trainer.net.parameters()
    moments = {
        layer: optimizers.AdamMoments(1, W, W, b, b)
        for layer, (W, b) in enumerate(params)
        if layer in optimizer_steps
    }
    arrays.update(optimizers.state_arrays(moments))
    return {name: (tuple(a.shape), trainer.dtype) for name, a in arrays.items()}


def check_checkpoint(path, arrays: dict, meta: dict, data) -> LearningConfig:
    """Check that a checkpoint is a consistent state of its own config; returns that config.

    ``data`` are the run's training images (scaled and centred): the shapes of the chains
    and layers follow from them. Raises :class:`~refimpl.run_folder.CorruptFile` naming
    ``path`` and the first problem found.
    """
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        _fail(path, f"meta is missing {', '.join(missing)}")
    extra = sorted(set(meta) - set(META_KEYS))
    if extra:
        _fail(path, f"meta has unexpected entries {', '.join(extra)}")
    try:
        config = LearningConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        _fail(path, f"its config is invalid: {exc}")
    iteration = _integer(path, meta, "iteration", 0, config.total_iterations)
    stage = _integer(path, meta, "stage", 1, config.stages)
    if stage != config.stage_after(iteration):
        _fail(
            path,
            f"stage {stage} does not belong to iteration {iteration} "
            f"(a run with {config.iterations_per_layer} iterations per layer is then in stage "
            f"{config.stage_after(iteration)})",
        )
    seconds = meta["seconds"]
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
        _fail(path, f"meta 'seconds' must be a non-negative number; got {seconds!r}")
    trainer = fresh_trainer(config, data, stage)
    _integer(path, meta, "layers", trainer.net.depth, trainer.net.depth)
    optimizer = meta["optimizer"]
    if not isinstance(optimizer, dict) or set(optimizer) != {"kind", "steps"}:
        _fail(path, f"meta 'optimizer' must hold 'kind' and 'steps'; got {optimizer!r}")
    if optimizer["kind"] != config.optimizer:
        _fail(
            path, f"optimizer {optimizer['kind']!r} differs from the config's {config.optimizer!r}"
        )
    steps = optimizer["steps"]
    if not isinstance(steps, dict) or (config.optimizer == "sgd" and steps):
        _fail(path, f"optimizer steps {steps!r} do not fit optimizer {config.optimizer!r}")
    layers = {}
    for key, count in steps.items():
        if key not in {str(l) for l in range(trainer.net.depth)}:
            _fail(path, f"optimizer state for layer {key!r}, which the network does not have")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= iteration:
            _fail(path, f"optimizer step count {count!r} of layer {key} is not in 1..{iteration}")
        layers[int(key)] = count
    history = meta["history"]
    if not isinstance(history, dict) or set(history) != set(HISTORY_KEYS):
        _fail(path, f"meta 'history' must hold exactly {', '.join(HISTORY_KEYS)}")
    for key in HISTORY_KEYS:
        if not isinstance(history[key], list) or len(history[key]) != iteration:
            _fail(path, f"history '{key}' must list one entry per iteration ({iteration})")
    if history["iteration"] != list(range(1, iteration + 1)) or history["stage"] != [
        config.stage_after(t) for t in range(iteration)
    ]:
        _fail(path, "history's iteration and stage entries do not count the iterations done")
    check_arrays(path, arrays, expected_arrays(trainer, layers))
    return config


def restore(path, arrays: dict, meta: dict, data) -> Trainer:
    """A trainer continuing the checkpoint (checked by :func:`check_checkpoint` first).

    Continuing it reproduces the uninterrupted run bit for bit.
    """
    check_checkpoint(path, arrays, meta, data)
    return Trainer.from_state(arrays, meta, data)
