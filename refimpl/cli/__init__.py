"""Command line: ``python -m refimpl <command> [options]``, also installed as ``refimpl``.

``pip install -e .`` installs a console script ``refimpl`` that is the same program:
``refimpl synthesize`` = ``python -m refimpl synthesize``. One thin module per command, each
with ``add_parser(commands)`` and the function it runs:

    synthesize   learn a generative ConvNet from an image and synthesize new ones (Algorithm 1)
    reconstruct  learn by one-step contrastive divergence and reconstruct the images (exp. 3)
    verify       every theorem and proposition of the paper, checked numerically
    pieces       the piecewise-linear structure of a ConvNet on a bundled image (section 6)
    classify     train a generative classifier on the digits; accuracy, ECE, OOD, PGD, samples
    hybrid       hybrid generative-discriminative training: the 2-D toy, or the digits sweep
    golden       golden test vectors (npz + manifest.json) for checking another implementation
    crosscheck   compare another implementation's results with the golden vectors

Errors a user can fix (a wrong path, a bad option value, a folder in use, a damaged run
folder, CuPy asked for but missing) are printed as one line ``error: ...`` with exit status
2; a command that finds a failing check exits 1; a run whose training diverges exits 3;
Ctrl-C exits 130 (a run with checkpoints first saves one; SIGTERM exits 143 the same way).
"""

from __future__ import annotations

import argparse
import sys

from refimpl.backend import BackendError
from refimpl.cli import classify, crosscheck, golden, hybrid, learn, pieces, verify
from refimpl.run_folder import RunFolderError
from refimpl.threads import keep_freed_memory

COMMANDS = (learn, verify, pieces, classify, hybrid, golden, crosscheck)

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
    """Run a command; ``argv`` None means this process is the program (``python -m refimpl``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    if argv is None:  # the process is ours: let it keep freed memory (2x faster learning)
        keep_freed_memory()
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
