"""``python -m refimpl hybrid``: hybrid generative-discriminative training, on a toy or digits.

``--toy``: the exact 2-D toy of the lecture slides (:func:`refimpl.hybrid.experiment.run_toy`):
Bishop & Lasserre's hybrid over ``alpha`` and the blend over ``lambda``, on ``--draws``
training sets of 2 labelled points per class; under a minute. ``--digits``: the same
question for the ConvNet on the bundled digits with 5 labels per class
(:mod:`refimpl.hybrid.digits`): the generative ConvNet, the discriminative one and their
blend, over ``--seeds`` seeds; about 6 minutes on 2 cores.

Both write a run folder (:mod:`refimpl.run_folder`: locked while the command works in it,
every file atomic) with ``config.json``, the figures and ``metrics.json``. The digits sweep
keeps a checkpoint (SIGINT and SIGTERM stop it with one, exit status 130 and 143, and
``--resume`` continues it exactly); the toy has none: stopped, it is run again from the
start by ``--resume``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from refimpl import __version__
from refimpl.cli.options import folder, non_negative_int, positive_int, run_to_end
from refimpl.hybrid import digits
from refimpl.hybrid.experiment import run_toy
from refimpl.run_folder import (
    RECORD,
    CorruptFile,
    Interrupted,
    RunFolder,
    read_json,
    signals_raise,
)

TOY = "hybrid --toy"
DESCRIPTION = (
    "Hybrid generative-discriminative training (the lecture slides on hybrid models; Bishop & "
    "Lasserre 2007). --toy: the exact 2-D toy, two Gaussian classes and a misspecified "
    "isotropic model, 2 labelled and 200 unlabelled points per training set: Bishop & "
    "Lasserre's hybrid over alpha (0 generative, 1 discriminative) and the blend "
    "lambda L_G + (1 - lambda) L_D, test error over --draws training sets (default 100, "
    "about 30 s); writes boundaries.png (the slides' figure), error_vs_alpha.png and "
    "metrics.json. --digits: the softmax ConvNet on the bundled digits with 5 labels per "
    "class, trained by lambda l_G + (1 - lambda) l_D on shared parameters (1: Dai, Lu & Wu's "
    "generative gradient with Langevin chains; 0: cross-entropy) for lambda = 1, 0.5, 0.1, "
    "0.03, 0.01, 0.003, 0.001, 0 and --seeds seeds (default 3: 351 s measured on 2 cores); "
    "writes "
    "error_vs_lambda.png (test error and ECE), samples_lambda_1.png, _0.5.png, _0.png "
    "(class-node samples), metrics.json and a checkpoint (continue with --resume)."
)


def add_parser(commands):
    p = commands.add_parser(
        "hybrid",
        help="hybrid generative-discriminative training: the 2-D toy (--toy) or the ConvNet "
        "on digits with few labels (--digits)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 done, 2 bad input or run folder, 3 training diverged (--digits; "
        "the last good checkpoint is kept), 130/143 stopped by SIGINT/SIGTERM",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--toy", action="store_true", help="the exact 2-D toy (under a minute)")
    which.add_argument(
        "--digits", action="store_true", help="the ConvNet on digits, few labels (~6 minutes)"
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        help="--toy: the seed of the test set and every training set; --digits: the first "
        "seed (default: 0)",
    )
    p.add_argument(
        "--draws", type=positive_int, help="--toy: training sets averaged (default: 100)"
    )
    p.add_argument(
        "--seeds",
        type=positive_int,
        help="--digits: seeds (labelled sets and initial weights) averaged (default: 3)",
    )
    p.add_argument(
        "--iterations",
        type=positive_int,
        help=f"--digits: Adam updates per run (default: {digits.DigitsSettings.iterations})",
    )
    p.add_argument(
        "--out",
        type=folder,
        help="run folder, new or empty (default: runs/hybrid-toy or runs/hybrid-digits, or the "
        "first of -2, -3, ... that is free)",
    )
    p.add_argument(
        "--resume",
        type=folder,
        metavar="DIR",
        help="continue the run in DIR (a toy run is run again from the start)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.set_defaults(run=run)


def _refuse(args, names, kind: str):
    for name in names:
        if getattr(args, name) is not None:
            raise ValueError(f"--{name} does not apply to {kind}")


def digits_settings(args) -> digits.DigitsSettings:
    seed, n = args.seed or 0, args.seeds or len(digits.DigitsSettings.seeds)
    overrides = dict(seeds=tuple(range(seed, seed + n)))
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    return digits.DigitsSettings(**overrides)


def _check_resume(args, recorded: dict, given: dict):
    """Options given with ``--resume`` must agree with what the run recorded."""
    if args.out is not None and os.path.realpath(args.out) != os.path.realpath(args.resume):
        raise ValueError(f"--out does not apply with --resume: the run folder is {args.resume}")
    for option, value in given.items():
        if value is not None and value != recorded.get(option):
            raise ValueError(
                f"--{option} {value} conflicts with the run in {args.resume} ({option} = "
                f"{recorded.get(option)!r}); a resumed run continues with the settings it was "
                "started with: resume without it, or start a new run"
            )


def _toy(args, folder: RunFolder) -> int:
    seed, draws = folder.record.get("seed"), folder.record.get("draws")
    try:
        with signals_raise():
            metrics = run_toy(folder.path, seed=seed, draws=draws, progress=not args.no_progress)
            folder.write_json("metrics.json", metrics)
    except KeyboardInterrupt as exc:
        name = exc.signal_name if isinstance(exc, Interrupted) else "interrupted"
        print(
            f"\n{name}: stopped; the toy sweep keeps no checkpoint (it takes under a minute). "
            f"Run it again with:\n  python -m refimpl hybrid --resume {folder.path}",
            file=sys.stderr,
            flush=True,
        )
        return exc.exit_status if isinstance(exc, Interrupted) else 130
    hybrid = metrics["hybrid"]
    best = hybrid["best_inner"]
    print(
        f"done in {metrics['seconds']:.0f} s: hybrid test error {hybrid['error_mean'][0]:.4f} "
        f"(alpha = 0, generative) -> {best['error']:.4f} (alpha = {best['alpha']:g}) -> "
        f"{hybrid['error_mean'][-1]:.4f} (alpha = 1, discriminative); Bayes error "
        f"{metrics['problem']['bayes_error']:.4f}"
    )
    print(f"wrote {folder.path}/boundaries.png, error_vs_alpha.png, metrics.json")
    return 0


def _digits(args, run: digits.SweepRun) -> int:
    status, metrics = run_to_end(run, digits.execute, "training", not args.no_progress)
    if status:
        return status
    error = metrics["error"]
    pairs = ", ".join(
        f"{lam:g}: {e:.3f}" for lam, e in zip(error["lambda"], error["error_mean"], strict=True)
    )
    print(f"done in {metrics['seconds']:.0f} s: mean test error by lambda {pairs}")
    names = ", ".join(f"samples_lambda_{lam:g}.png" for lam in run.sweep.settings.sample_lambdas)
    print(f"wrote {run.out}/error_vs_lambda.png, {names}, metrics.json")
    return 0


def _resume_toy(args) -> int:
    if args.digits:
        raise ValueError(f"--digits conflicts with the run in {args.resume}, a toy run")
    _refuse(args, ("seeds", "iterations"), "--toy")
    with RunFolder.open(args.resume) as run_folder:
        _check_resume(args, run_folder.record, dict(seed=args.seed, draws=args.draws))
        print(f"running the toy again in {run_folder.path}")
        return _toy(args, run_folder)


def _resume_digits(args) -> int:
    if args.toy:
        raise ValueError(f"--toy conflicts with the run in {args.resume}, which is no toy run")
    _refuse(args, ("draws",), "--digits")
    sweep_run = digits.resume_sweep(args.resume)
    sweep = sweep_run.sweep
    try:
        s = sweep.settings
        recorded = dict(seed=s.seeds[0], seeds=len(s.seeds), iterations=s.iterations)
        given = dict(seed=args.seed, seeds=args.seeds, iterations=args.iterations)
        _check_resume(args, recorded, given)
    except BaseException:
        sweep_run.close()
        raise
    print(
        f"resuming {sweep_run.out}: {len(sweep.results)} of {len(sweep.jobs)} runs done, "
        f"{sweep.updates}/{sweep.total_updates} updates"
    )
    return _digits(args, sweep_run)


def _recorded_command(path):
    """The command ``config.json`` in ``path`` names, or None (the folder's checks come later)."""
    try:
        return read_json(Path(path) / RECORD).get("command")
    except CorruptFile:
        return None


def run(args) -> int:
    if args.resume:
        if _recorded_command(args.resume) == TOY:
            return _resume_toy(args)
        return _resume_digits(args)
    if not (args.toy or args.digits):
        raise ValueError("choose --toy or --digits (or --resume DIR)")
    if args.toy:
        _refuse(args, ("seeds", "iterations"), "--toy")
        record = dict(command=TOY, seed=args.seed or 0, draws=args.draws or 100)
        record["version"] = __version__
        out = args.out or "runs/hybrid-toy"
        with RunFolder.create(out, record, fresh_name=args.out is None) as run_folder:
            print(
                f"hybrid --toy: seed {record['seed']}, {record['draws']} draws, run folder "
                f"{run_folder.path}"
            )
            return _toy(args, run_folder)
    _refuse(args, ("draws",), "--digits")
    settings = digits_settings(args)
    out = args.out or "runs/hybrid-digits"
    sweep_run = digits.start_sweep(settings, out, fresh_name=args.out is None)
    print(
        f"hybrid --digits: {settings.labelled_per_class} labels per class, seeds "
        f"{list(settings.seeds)}, lambda {list(settings.lambdas)}, {settings.iterations} updates "
        f"per run, run folder {sweep_run.out}"
    )
    return _digits(args, sweep_run)
