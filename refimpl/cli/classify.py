"""``python -m refimpl classify``: train a generative classifier on the digits and measure it.

Trains one model (the softmax ConvNet, GMMC or JEM) in one training mode on the fixed split
of the bundled digits, then measures accuracy, calibration (ECE), out-of-distribution
detection (AUROC) and robustness (PGD), and draws images from the class nodes
(:mod:`refimpl.classify.experiment`). The run folder (:mod:`refimpl.classify.runs`) is locked
while the command works in it; SIGINT and SIGTERM stop the run with a checkpoint (exit status
130 and 143), and ``--resume`` continues it exactly.
"""

from __future__ import annotations

import argparse
import os

from refimpl.classify import runs
from refimpl.classify.training import (
    DEFAULT_TRAINING,
    MODES,
    check_mode,
    default_config,
)
from refimpl.cli.options import folder, non_negative_int, positive_int, run_to_end

TRAININGS = ("discriminative", "generative", "joint")  # the blend is `hybrid --digits`'s
DESCRIPTION = (
    "Train a classifier that is also a generative model on the bundled UCI digits (a fixed "
    "split: 1346 training, 451 test images, 8 x 8) and measure it: test accuracy and "
    "expected calibration error (ECE, 20 bins, a fraction), AUROC of out-of-distribution "
    "detection against four sets (noise, texture, interpolations, inverted digits) with three "
    "scores, accuracy under L-infinity PGD-40, and images drawn from the class nodes. Models: "
    "the softmax ConvNet of Xie et al. Eqs. (2.2)-(2.3) (discriminative, or generative by "
    "Dai, Lu & Wu's batch gradient), GMMC (Yang et al.; discriminative Eq. (5), generative "
    "Eq. (7), joint) and JEM (generative, joint). Every default run takes 1000 Adam updates "
    "and finishes within 3 minutes on 2 cores. Writes a new run folder (runs/classify-MODEL-"
    "TRAINING, or -2, -3, ... if that one holds a run) with metrics.json (accuracy and ece "
    "first), predictions.npz (the test set's probs and labels, every OOD score: every number "
    "can be recomputed), reliability.png, samples.png, ood.png, config.json and a checkpoint "
    "(every 50 updates, at the end, and on Ctrl-C or SIGTERM; continue with --resume)."
)
# option -> config field, for the options a resumed run is checked against
SETTINGS = {"model": "model", "training": "training", "seed": "seed", "iterations": "iterations"}


def add_parser(commands):
    modes = "\n".join(
        f"  {model:8s} {', '.join(m for m in MODES[model] if m in TRAININGS)}"
        f" (default {DEFAULT_TRAINING[model]})"
        for model in MODES
    )
    p = commands.add_parser(
        "classify",
        help="train a generative classifier (softmax ConvNet, GMMC, JEM) on the digits and "
        "measure accuracy, calibration, OOD detection, robustness",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"models and their training modes:\n{modes}\n\nexit status: 0 done, 2 bad "
        "input or run folder, 3 training diverged (the last good checkpoint is kept), 130/143 "
        "stopped by SIGINT/SIGTERM (a checkpoint is saved; continue with --resume)",
    )
    p.add_argument("--model", choices=sorted(MODES), help="the classifier (default: gmmc)")
    p.add_argument(
        "--training",
        choices=TRAININGS,
        help="how to train it; which modes apply depends on the model (see below; default: "
        "the model's)",
    )
    p.add_argument("--seed", type=non_negative_int, help="random seed, >= 0 (default: 0)")
    p.add_argument(
        "--iterations",
        type=positive_int,
        help="Adam updates (default: 1000; joint: the first half discriminative)",
    )
    p.add_argument(
        "--out",
        type=folder,
        help="run folder, new or empty (default: runs/classify-MODEL-TRAINING, or the first "
        "of -2, -3, ... that is free)",
    )
    p.add_argument(
        "--resume", type=folder, metavar="DIR", help="continue the run in DIR from its checkpoint"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.set_defaults(run=run)


def config_from_args(args):
    """The :class:`~refimpl.classify.training.ClassifierConfig` of a new run."""
    model = args.model or "gmmc"
    training = check_mode(model, args.training, TRAININGS)
    overrides = {}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
        if training == "joint":  # the defaults' proportion: half discriminative
            overrides["pretrain_iterations"] = max(1, args.iterations // 2)
    return default_config(model, training, args.seed or 0, **overrides)


def check_resume_options(args, run):
    """Options given with ``--resume`` must agree with the run in the folder."""
    if args.out is not None and os.path.realpath(args.out) != os.path.realpath(run.out):
        raise ValueError(f"--out does not apply with --resume: the run folder is {run.out}")
    config = run.config.to_dict()
    for option, field in SETTINGS.items():
        given = getattr(args, option)
        if given is not None and given != config[field]:
            raise ValueError(
                f"--{option} {given} conflicts with the run in {run.out} ({field} = "
                f"{config[field]!r}); a resumed run continues with the settings it was started "
                "with: resume without it, or start a new run"
            )


def run(args) -> int:
    if args.resume:
        classifier = runs.resume_run(args.resume)
        try:
            check_resume_options(args, classifier)
        except BaseException:
            classifier.close()
            raise
        cfg = classifier.config
        print(
            f"resuming {classifier.out} at iteration {classifier.trainer.iteration}/"
            f"{cfg.iterations}"
        )
    else:
        cfg = config_from_args(args)
        out = args.out or f"runs/classify-{cfg.model}-{cfg.training}"
        classifier = runs.start_run(cfg, out, fresh_name=args.out is None)
        print(
            f"classify: {cfg.model}/{cfg.training}, seed {cfg.seed}, {cfg.iterations} updates, "
            f"run folder {classifier.out}"
        )
    status, result = run_to_end(classifier, runs.execute, "training", not args.no_progress)
    if status:
        return status
    print(
        f"done: accuracy {result['accuracy']:.4f}, ECE {result['ece']:.4f} (fractions); "
        f"{result['train_seconds']:.0f} s of training, {result['eval_seconds']:.0f} s of "
        "evaluation"
    )
    print(
        f"wrote {classifier.out}/metrics.json, predictions.npz, reliability.png, samples.png, "
        "ood.png, checkpoint.npz"
    )
    return 0
