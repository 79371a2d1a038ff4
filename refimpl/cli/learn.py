"""``python -m refimpl synthesize`` and ``reconstruct``: the two learning runs.

``synthesize`` learns by maximum likelihood (Algorithm 1); ``reconstruct`` by one-step
contrastive divergence. Each command accepts only the presets of its method. The run folder
(:mod:`refimpl.run_folder`, :mod:`refimpl.learning.runs`) is locked while the command works
in it; SIGINT and SIGTERM stop the run with a checkpoint (exit status 130 and 143), and
``--resume`` continues it exactly.
"""

from __future__ import annotations

import argparse
import os
import sys

from refimpl.backend import ENV_BACKEND, available_backends, backend_name, get_namespace
from refimpl.cli.options import folder, non_negative_int, positive_int, run_to_end
from refimpl.conv import PADDING_MODES
from refimpl.data import TEXTURES, default_factor, load_image, resolve_image
from refimpl.learning import runs
from refimpl.learning.presets import PRESETS, preset_config, with_padding

# the texture preset's image spans 4 crops: 512 x 512 block-averaged by 2, crops of 64
LEARNING_SPAN = 4

SYNTHESIZE = (
    "synthesize",
    "texture",
    "learn a generative ConvNet from an image and synthesize new ones (Algorithm 1)",
    "Learn a generative ConvNet p(I) ~ exp(f(I; w)) N(I; 0, sigma^2) from the training "
    "image(s) by maximum likelihood with persistent Langevin chains (Algorithm 1, section 7), "
    "growing the layers one at a time (section 8), and synthesize new images. Default: the "
    "bundled brick texture with the CPU preset (about a minute on 2 cores). Writes a new run "
    "folder (runs/synthesize-PRESET, or -2, -3, ... if that one holds a run) with "
    "samples.npy, train.npy, samples.png, curves.png, config.json, summary.json and a "
    "checkpoint (every few iterations, and on Ctrl-C or SIGTERM; continue with --resume).",
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
# the options that apply only to some datasets, and the settings they set
DATASET_OPTIONS = {
    "image": ("texture", "texture-crops"),
    "factor": ("texture", "texture-crops"),
    "padding": ("texture", "texture-crops"),
    "digit": ("digits",),
}
# option -> config field, for the options a resumed run is checked against
SETTINGS = {
    "image": "image",
    "digit": "digit",
    "size": "size",
    "factor": "factor",
    "iterations": "iterations_per_layer",
    "seed": "seed",
    "backend": "backend",
}
WARN_SECONDS = 3600  # say how long a run will take on the CPU when it is longer than this


def add_parser(commands):
    for name, preset, help_text, description in (SYNTHESIZE, RECONSTRUCT):
        _add_learning(commands, name, preset, help_text, description)


def presets_of(command: str) -> list:
    """The presets whose method is the command's."""
    method = runs.METHODS[command]
    return sorted(k for k, v in PRESETS.items() if v["config"].get("method", "ml") == method)


def _add_learning(commands, name: str, default_preset: str, help_text: str, description: str):
    own = presets_of(name)
    p = commands.add_parser(
        name,
        help=help_text,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="presets:\n"
        + "\n".join(f"  {k:18s} {PRESETS[k]['description']}" for k in own)
        + "\n\nexit status: 0 done, 2 bad input or run folder, 3 learning diverged, "
        "130/143 stopped by SIGINT/SIGTERM (a checkpoint is saved; continue with --resume)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        metavar="NAME",
        help=f"settings to start from: {', '.join(own)} (default: {default_preset}; see below)",
    )
    p.add_argument(
        "--image",
        help=f"a bundled texture ({', '.join(TEXTURES)}) or an image file "
        "(texture presets; default: the preset's)",
    )
    p.add_argument("--digit", type=int, help="digit class 0-9 (the object presets)")
    p.add_argument("--size", type=positive_int, help="image side in pixels (default: the preset's)")
    p.add_argument(
        "--factor",
        type=positive_int,
        help="block-average the image by factor x factor before cropping (texture presets). "
        "Default: the preset's for a bundled texture; for an image file, the largest factor "
        "that keeps its shorter side at least four times --size (1 for a small image)",
    )
    p.add_argument(
        "--padding",
        choices=PADDING_MODES,
        help="how every layer pads its input (texture presets; default: the preset's, zeros): "
        "circular treats the image as one period of a periodic texture, so the samples have "
        "no border frame (README: Quality, measured, says what it costs)",
    )
    p.add_argument(
        "--iterations",
        type=positive_int,
        help="learning iterations per layer (T; default: the preset's). With --resume: "
        "continue to this many, where the run so far is also the start of such a run",
    )
    p.add_argument("--seed", type=non_negative_int, help="random seed, >= 0 (default: 0)")
    p.add_argument(
        "--out",
        type=folder,
        help=f"run folder, new or empty (default: runs/{name}-PRESET, or the first of "
        "-2, -3, ... that is free)",
    )
    p.add_argument("--backend", choices=available_backends(), help="array backend (default: numpy)")
    p.add_argument(
        "--resume", type=folder, metavar="DIR", help="continue the run in DIR from its checkpoint"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.set_defaults(run=run, command=name, default_preset=default_preset)


def _refuse_inapplicable(args, dataset: str):
    for option, datasets in DATASET_OPTIONS.items():
        if getattr(args, option) is not None and dataset not in datasets:
            fitting = sorted(k for k, v in PRESETS.items() if v["config"]["dataset"] in datasets)
            raise ValueError(
                f"--{option} does not apply to preset {args.preset!r}, which learns from "
                f"dataset {dataset!r}; it applies to the presets {', '.join(fitting)}"
            )


def config_from_args(args):
    """The :class:`LearningConfig` of a new run: the preset with the options applied."""
    runs.check_method(args.command, preset_config(args.preset), args.preset)
    dataset = PRESETS[args.preset]["config"]["dataset"]
    _refuse_inapplicable(args, dataset)
    overrides = dict(
        image=args.image,
        digit=args.digit,
        size=args.size,
        factor=args.factor,
        iterations_per_layer=args.iterations,
        seed=args.seed,
        backend=args.backend,
    )
    if args.padding is not None:
        overrides["spec"] = with_padding(PRESETS[args.preset]["config"]["spec"], args.padding)
    if args.factor is None and args.image is not None and args.image not in TEXTURES:
        size = args.size or PRESETS[args.preset]["config"]["size"]
        image = load_image(resolve_image(args.image))
        overrides["factor"] = default_factor(image.shape, size, span=LEARNING_SPAN)
    return preset_config(args.preset, **overrides)


def _warn_cpu_time(config, preset: str, channels: int):
    if backend_name(get_namespace(config.backend)) != "numpy":
        return
    seconds = runs.cpu_seconds(config, channels)
    if seconds > WARN_SECONDS:
        print(
            f"warning: preset {preset} is {runs.run_flops(config, channels) / 1e15:.2g} PFLOP "
            "of learning: "
            f"roughly {seconds / 3600:.0f} hours with NumPy on a 2-core CPU. It is sized for a "
            "GPU (--backend cupy); Ctrl-C stops it with a checkpoint and --resume continues it",
            file=sys.stderr,
            flush=True,
        )


def _recorded_backend(config) -> str:
    return config.backend or os.environ.get(ENV_BACKEND) or "numpy"


def check_resume_options(args, run):
    """Options given with ``--resume`` must agree with the run; ``--iterations`` may extend it."""
    if args.out is not None and os.path.realpath(args.out) != os.path.realpath(run.out):
        raise ValueError(f"--out does not apply with --resume: the run folder is {run.out}")
    recorded_preset = run.folder.record.get("preset")
    if args.preset is not None and args.preset != recorded_preset:
        raise ValueError(
            f"--preset {args.preset} conflicts with the run in {run.out} (preset "
            f"{recorded_preset}); a resumed run continues with the settings it started with"
        )
    config = run.config.to_dict()
    config["backend"] = _recorded_backend(run.config)
    for option, field in SETTINGS.items():
        given = getattr(args, option)
        if given is None or given == config[field] or option == "iterations":
            continue
        raise ValueError(
            f"--{option} {given} conflicts with the run in {run.out} ({field} = "
            f"{config[field]!r}); a resumed run continues with the settings it was started "
            "with: resume without it, or start a new run"
        )
    modes = {s.padding_mode for s in run.config.spec}
    if args.padding is not None and modes != {args.padding}:
        raise ValueError(
            f"--padding {args.padding} conflicts with the run in {run.out} (its layers pad "
            f"with {', '.join(sorted(modes))}); a resumed run continues with the settings it "
            "was started with: resume without it, or start a new run"
        )
    if args.iterations is not None:
        runs.extend(run, args.iterations)


def run(args) -> int:
    if args.resume:
        learning = runs.resume_run(args.resume, command=args.command)
        try:
            check_resume_options(args, learning)
        except BaseException:
            learning.close()
            raise
        config = learning.config
        print(
            f"resuming {learning.out} at iteration {learning.trainer.iteration}/"
            f"{config.total_iterations}"
        )
    else:
        args.preset = args.preset or args.default_preset
        config = config_from_args(args)
        get_namespace(config.backend)  # CuPy asked for but missing: say so before any work
        out = args.out or f"runs/{args.command}-{args.preset}"
        learning = runs.start_run(
            config, out, preset=args.preset, command=args.command, fresh_name=args.out is None
        )
        print(
            f"{args.command}: preset {args.preset}, {config.total_iterations} iterations, "
            f"images {tuple(learning.trainer.data.shape)}, run folder {learning.out}"
        )
        _warn_cpu_time(learning.config, args.preset, learning.trainer.data.shape[1])
    status, summary = run_to_end(learning, runs.execute, "learning", not args.no_progress)
    if status:
        return status
    print(
        f"done in {summary['seconds']:.0f} s of learning: final moment mismatch per layer "
        f"{[round(m, 3) for m in summary['final_mismatch']]}, reconstruction error "
        f"{summary['final_reconstruction_error']:.3f}"
    )
    print(
        f"wrote {learning.out}/samples.png, curves.png, samples.npy, train.npy, "
        "reconstructions.npy, summary.json, checkpoint.npz"
    )
    return 0
