"""What every lesson shares: quick mode, the folder its figures go to, saving a figure.

Lessons run as plain scripts (``python lessons/05_prototype.py``); this file sits beside them,
so ``from _lesson import ...`` works there. Quick mode (``REFIMPL_LESSON_QUICK=1`` or
``--quick``) shrinks every experiment so that the test suite can run all the lessons.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

QUICK = os.environ.get("REFIMPL_LESSON_QUICK") == "1" or "--quick" in sys.argv


def pick(full, quick):
    """``full`` normally, ``quick`` in quick mode (sizes, iteration counts)."""
    return quick if QUICK else full


def figure_folder(lesson_file: str) -> Path:
    """``<project>/runs/lessons/<lesson name>/`` (created), or under ``$REFIMPL_LESSON_OUT``.

    Anchored at the project root, not the working directory, so that ``python
    lessons/05_prototype.py`` and ``cd lessons && python 05_prototype.py`` agree. The
    project root is the folder above this file's, or this file's own where ``refimpl/`` sits
    beside it (an assignment folder, which carries its chapter at the top).
    """
    here = Path(__file__).resolve().parent
    root = here if (here / "refimpl").is_dir() else here.parent
    default = root / "runs" / "lessons"
    folder = Path(os.environ.get("REFIMPL_LESSON_OUT", default)) / Path(lesson_file).stem
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save(fig, lesson_file: str, name: str) -> Path:
    """Save ``fig`` as ``<figure folder>/<name>.png`` and say where."""
    from refimpl import plotting

    path = plotting.save(fig, figure_folder(lesson_file) / f"{name}.png")
    print(f"figure: {path}")
    return path
