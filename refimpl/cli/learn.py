"""``python -m refimpl synthesize`` and ``reconstruct``: the two learning runs.

``synthesize`` learns by maximum likelihood (Algorithm 1); ``reconstruct`` by one-step
contrastive divergence.
"""

from __future__ import annotations

import argparse
import sys

from refimpl.backend import available_backends
from refimpl.cli.options import positive_int

SYNTHESIZE = (
    "synthesize",
    "texture",
    "learn a generative ConvNet from an image and synthesize new ones (Algorithm 1)",
    "Learn a generative ConvNet p(I) ~ exp(f(I; w)) N(I; 0, sigma^2) from the training "
    "image(s) by maximum likelihood with persistent Langevin chains (Algorithm 1, section 7), "
    "growing the layers one at a time (section 8), and synthesize new images. Default: the "
    "bundled brick texture with the CPU preset (a few minutes on 2 cores). Writes a run "
    "folder with samples.npy, train.npy, samples.png, curves.png, config.json, summary.json "
    "and an atomic checkpoint (every few iterations and on Ctrl-C; continue with --resume).",
)
RECONSTRUCT = (
    "reconstruct",
    "reconstruct",
    "learn by one-step contrastive divergence and reconstruct the training images",
    "Learn by contrastive divergence (Langevin chains restarted at the observed images, one "
    "step each; section 7 and experiment 3) and reconstruct each training image by its "
    "auto-encoding sigma^2 B_{w,delta(I)} (Propositions 2-3). Same outputs as synthesize, "
    "plus reconstructions.npy; samples.png shows training images over reconstructions.",
)


def add_parser(commands):
    for name, preset, help_text, description in (SYNTHESIZE, RECONSTRUCT):
        _add_learning(commands, name, preset, help_text, description)


def _add_learning(commands, name: str, default_preset: str, help_text: str, description: str):
    from refimpl.learning.presets import PRESETS

    p = commands.add_parser(
        name,
        help=help_text,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n"
        + "\n".join(f"  {k:18s} {v['description']}" for k, v in PRESETS.items()),
    )
    p.add_argument(
        "--preset",
        default=default_preset,
        choices=sorted(PRESETS),
        help=f"settings to start from (default: {default_preset}; see below)",
    )
    p.add_argument(
        "--image",
        help="a bundled texture (brick, grass, gravel) or an image file "
        "(texture presets; default: the preset's)",
    )
    p.add_argument("--digit", type=int, help="digit class 0-9 (object presets)")
    p.add_argument("--size", type=positive_int, help="image side in pixels (default: the preset's)")
    p.add_argument(
        "--iterations",
        type=positive_int,
        help="learning iterations per layer (T; default: the preset's)",
    )
    p.add_argument("--seed", type=int, help="random seed (default: 0)")
    p.add_argument("--out", help=f"run folder (default: runs/{name}-PRESET)")
    p.add_argument("--backend", choices=available_backends(), help="array backend (default: numpy)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.set_defaults(run=run, command=name)


def run(args) -> int:
    from refimpl.learning import runs
    from refimpl.learning.presets import preset_config
    from refimpl.learning.trainer import DivergenceError

    if args.resume:
        trainer, mean, raw, out, command = runs.resume_run(args.resume)
        print(f"resuming {out} at iteration {trainer.iteration}/{trainer.config.total_iterations}")
    else:
        overrides = dict(
            image=args.image,
            digit=args.digit,
            size=args.size,
            iterations_per_layer=args.iterations,
            seed=args.seed,
            backend=args.backend,
        )
        config = preset_config(args.preset, **overrides)
        out = args.out or f"runs/{args.command}-{args.preset}"
        trainer, mean, raw, out = runs.start_run(
            config, out, preset=args.preset, command=args.command
        )
        command = args.command
        print(
            f"{command}: preset {args.preset}, {trainer.config.total_iterations} iterations, "
            f"images {tuple(trainer.data.shape)}, run folder {out}"
        )
    try:
        summary = runs.execute(trainer, mean, raw, out, command, progress=not args.no_progress)
    except DivergenceError as exc:
        print(f"error: learning diverged: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    print(
        f"done in {summary['seconds']:.0f} s: final moment mismatch per layer "
        f"{[round(m, 3) for m in summary['final_mismatch']]}, reconstruction error "
        f"{summary['final_reconstruction_error']:.3f}"
    )
    print(
        f"wrote {out}/samples.png, curves.png, samples.npy, train.npy, reconstructions.npy, "
        "summary.json, checkpoint.npz"
    )
    return 0
