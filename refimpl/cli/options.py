"""Argument types shared by the commands."""

from __future__ import annotations

import argparse


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
