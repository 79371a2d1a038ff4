"""What the commands share: argument types, and how a run that trains ends (its exit status)."""

from __future__ import annotations

import argparse
import sys

from refimpl.learning.trainer import DivergenceError
from refimpl.run_folder import Interrupted


def _integer(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text}")
    return value


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1, else a usage error naming the value."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0 (e.g. a seed), else a usage error naming the value."""
    return _integer(text, 0, "a non-negative integer")


def folder(text: str) -> str:
    """An ``argparse`` type: a folder path, not empty (an empty path would mean ``.``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a folder path; got an empty string")
    return text


def run_to_end(run, execute, what: str, progress: bool = True):
    """``execute(run, progress=progress)``, then ``run`` closed: ``(exit status, result)``.

    0 and the result when it finishes; 3 after ``error: WHAT diverged: ...`` when training
    diverges (:class:`~refimpl.learning.trainer.DivergenceError`; the last good checkpoint
    stays); 130 or 143 when SIGINT or SIGTERM stopped it (the run saved a checkpoint and said
    how to continue), with ``None`` for the result.
    """
    with run:
        try:
            return 0, execute(run, progress=progress)
        except DivergenceError as exc:
            print(f"error: {what} diverged: {exc}", file=sys.stderr)
            return 3, None
        except Interrupted as exc:
            return exc.exit_status, None
        except KeyboardInterrupt:
            return 130, None
