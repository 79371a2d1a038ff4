"""Command line: ``python -m refimpl <command> [options]`` (also installed as ``refimpl``).

Commands:
    synthesize   learn a generative ConvNet from an image and synthesize new ones (Algorithm 1)
    reconstruct  learn by one-step contrastive divergence and reconstruct the images (exp. 3)
    verify       every theorem and proposition of the paper, checked numerically
    pieces       the piecewise-linear structure of a ConvNet on a bundled image (section 6)
"""

from __future__ import annotations

import argparse
import sys

from refimpl.data import TEXTURES


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def _add_pieces(commands):
    p = commands.add_parser(
        "pieces",
        help="show and check the piecewise-linear structure of a ConvNet on an image",
        description=(
            "Apply a random 3-layer ReLU ConvNet to an image (intensities in [0,255] minus the "
            "mean) and check Eqs. (6.7)-(6.14) on it: f = alpha + <I, B>, B by deconvolution = "
            "df/dI by backprop = sum of basis functions, z = a + <I, b> per layer, and that f is "
            "exactly linear between the kinks of a line through image space. Writes pieces.png, "
            "basis.png and summary.json; exits 1 if any check fails."
        ),
    )
    p.add_argument(
        "--image",
        default="brick",
        help=f"a bundled texture ({', '.join(TEXTURES)}) or a path to an image file "
        "(default: brick)",
    )
    p.add_argument(
        "--size",
        type=_positive_int,
        default=32,
        help="side of the centre crop, in pixels after downsampling (default: 32)",
    )
    p.add_argument(
        "--factor",
        type=_positive_int,
        default=8,
        help="downsample by averaging factor x factor blocks first (default: 8)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random network and line (default: 0)"
    )
    p.add_argument("--out", default="runs/pieces", help="output folder (default: runs/pieces)")
    p.add_argument(
        "--backend",
        choices=["numpy", "cupy"],
        default=None,
        help="array backend (default: $REFIMPL_BACKEND or numpy)",
    )
    p.set_defaults(run=_run_pieces)


def _run_pieces(args) -> int:
    from refimpl import explore

    report = explore.run(
        image=args.image,
        size=args.size,
        factor=args.factor,
        seed=args.seed,
        out=args.out,
        backend=args.backend,
    )
    return 0 if report.passed else 1


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
    p.add_argument(
        "--size", type=_positive_int, help="image side in pixels (default: the preset's)"
    )
    p.add_argument(
        "--iterations",
        type=_positive_int,
        help="learning iterations per layer (T; default: the preset's)",
    )
    p.add_argument("--seed", type=int, help="random seed (default: 0)")
    p.add_argument("--out", help=f"run folder (default: runs/{name}-PRESET)")
    p.add_argument("--backend", choices=["numpy", "cupy"], help="array backend (default: numpy)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.set_defaults(run=_run_learning, command=name)


def _run_learning(args) -> int:
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


def _add_verify(commands):
    p = commands.add_parser(
        "verify",
        help="check every theorem and proposition of the paper on fresh random instances",
        description=(
            "Run every numerical check of refimpl.theorems on random instances drawn from --seed: "
            "the engine identities (6.7)-(6.14), Theorem 1, Propositions 1-3, Langevin and MALA "
            "against exact 1-D/2-D densities, the maximum-likelihood gradient (5.8)/(7.2), and "
            "section 9. Prints claim, equation, residual, bound and PASS/FAIL; exits 1 if any "
            "check fails. About 1-2 minutes on 2 cores; --quick about 15 s."
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random instances (default: 0)")
    p.add_argument(
        "--quick", action="store_true", help="smaller instances, skip the slowest references"
    )
    p.add_argument("--json", metavar="PATH", help="also write the results (with details) as JSON")
    p.add_argument(
        "--details", action="store_true", help="print each check's details under the table"
    )
    p.set_defaults(run=_run_verify, user_errors=False)


def _run_verify(args) -> int:
    import json
    import time

    from refimpl.theorems import format_table, run_all

    start = time.perf_counter()
    results, timings = run_all(
        args.seed, args.quick, progress=lambda title: print(f"  checking {title} ...", flush=True)
    )
    elapsed = time.perf_counter() - start
    print()
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    print(
        f"\n{len(results) - len(failed)}/{len(results)} checks passed in {elapsed:.1f} s "
        f"(seed {args.seed}{', quick' if args.quick else ''})"
    )
    if args.details:
        for r in results:
            print(f"\n{r.name}: {json.dumps(r.details, default=float)}")
    if args.json:
        payload = dict(
            seed=args.seed,
            quick=args.quick,
            seconds=elapsed,
            timings=timings,
            passed=not failed,
            results=[r.as_dict() for r in results],
        )
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=2, default=float)
        print(f"wrote {args.json}")
    for r in failed:
        print(f"FAILED: {r.name}: residual {r.residual:.3e}, bound {r.bound}; details {r.details}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m refimpl",
        description="refimpl: a reference NumPy implementation of the generative ConvNet "
        "(Xie, Lu, Zhu, Wu). Equation numbers refer to 'A Theory of Generative ConvNet'.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_learning(
        commands,
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
    _add_learning(
        commands,
        "reconstruct",
        "reconstruct",
        "learn by one-step contrastive divergence and reconstruct the training images",
        "Learn by contrastive divergence (Langevin chains restarted at the observed images, one "
        "step each; section 7 and experiment 3) and reconstruct each training image by its "
        "auto-encoding sigma^2 B_{w,delta(I)} (Propositions 2-3). Same outputs as synthesize, "
        "plus reconstructions.npy; samples.png shows training images over reconstructions.",
    )
    _add_verify(commands)
    _add_pieces(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    if not getattr(args, "user_errors", True):  # errors there are bugs: show the traceback
        return args.run(args)
    try:
        return args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
