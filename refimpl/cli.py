"""Command line: ``python -m refimpl <command> [options]`` (also installed as ``refimpl``).

Commands:
    pieces    the piecewise-linear structure of a ConvNet on a bundled image (section 6)
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
    p.add_argument("--image", default="brick",
                   help=f"a bundled texture ({', '.join(TEXTURES)}) or a path to an image file "
                        "(default: brick)")
    p.add_argument("--size", type=_positive_int, default=32,
                   help="side of the centre crop, in pixels after downsampling (default: 32)")
    p.add_argument("--factor", type=_positive_int, default=8,
                   help="downsample by averaging factor x factor blocks first (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random network and line (default: 0)")
    p.add_argument("--out", default="runs/pieces", help="output folder (default: runs/pieces)")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $REFIMPL_BACKEND or numpy)")
    p.set_defaults(run=_run_pieces)


def _run_pieces(args) -> int:
    from refimpl import explore

    report = explore.run(image=args.image, size=args.size, factor=args.factor, seed=args.seed,
                         out=args.out, backend=args.backend)
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m refimpl",
        description="refimpl: a reference NumPy implementation of the generative ConvNet "
                    "(Xie, Lu, Zhu, Wu). Equation numbers refer to 'A Theory of Generative ConvNet'.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_pieces(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
