"""Command line: ``python -m refimpl <command> [options]``, also installed as ``refimpl``.

``pip install -e .`` installs a console script ``refimpl`` that is the same program:
``refimpl synthesize`` = ``python -m refimpl synthesize``. One thin module per command, each
with ``add_parser(commands)`` and the function it runs:

    synthesize   learn a generative ConvNet from an image and synthesize new ones (Algorithm 1)
    reconstruct  learn by one-step contrastive divergence and reconstruct the images (exp. 3)
    verify       every theorem and proposition of the paper, checked numerically
    pieces       the piecewise-linear structure of a ConvNet on a bundled image (section 6)
    golden       golden test vectors (npz + manifest.json) for checking another implementation
    crosscheck   compare another implementation's results with the golden vectors

Errors a user can fix (a wrong path, a bad option value, a folder in use, a damaged run
folder, CuPy asked for but missing) are printed as one line ``error: ...`` with exit status
2; a command that finds a failing check exits 1; Ctrl-C exits 130 (a learning run first
saves a checkpoint; SIGTERM exits 143 the same way).
"""

from __future__ import annotations

import argparse
import sys

from refimpl.backend import BackendError
from refimpl.cli import crosscheck, golden, learn, pieces, verify
from refimpl.run_folder import RunFolderError

COMMANDS = (learn, verify, pieces, golden, crosscheck)

# Exceptions that mean "the user asked for something that cannot be done"; anything else is
# a bug and keeps its traceback.
USER_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    ValueError,
    TypeError,
    RunFolderError,
    BackendError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m refimpl",
        description="refimpl: a reference NumPy implementation of the generative ConvNet "
        "(Xie, Lu, Zhu, Wu). Equation numbers refer to 'A Theory of Generative ConvNet'. "
        "Installed, the same program is also the command `refimpl`.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    # errors of commands with user_errors=False are bugs: show the traceback; a missing
    # backend (CuPy or the GPU) never is
    caught = USER_ERRORS if getattr(args, "user_errors", True) else (BackendError,)
    try:
        try:
            return args.run(args)
        except caught as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
