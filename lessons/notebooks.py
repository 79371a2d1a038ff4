"""Convert the lessons to Jupyter notebooks: ``python -m lessons.notebooks --out DIR``.

The lessons are jupytext "percent" scripts; this writes ``DIR/NN_topic.ipynb`` for each (no
outputs; run them in Jupyter). Needs the optional dependency jupytext:
``pip install -e ".[notebooks]"``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LESSONS = Path(__file__).resolve().parent


def convert(out) -> list:
    """Write one ``.ipynb`` per lesson into ``out``; returns the paths."""
    try:
        import jupytext
    except ImportError as exc:
        raise RuntimeError("jupytext is not installed: pip install -e '.[notebooks]'") from exc
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lesson in sorted(LESSONS.glob("[0-9][0-9]_*.py")):
        notebook = jupytext.read(lesson, fmt="py:percent")
        notebook.cells.insert(0, _name_cell(lesson.name))
        path = out / f"{lesson.stem}.ipynb"
        jupytext.write(notebook, path)
        paths.append(path)
    # the notebooks import the lessons' helper, so it travels with them
    (out / "_lesson.py").write_text((LESSONS / "_lesson.py").read_text())
    return paths


def _name_cell(filename: str):
    """A first code cell that defines ``__file__``, which a kernel lacks.

    The lessons pass ``__file__`` to ``save`` (it names their figure folder).
    """
    from nbformat.v4 import new_code_cell

    return new_code_cell(
        f'__file__ = "{filename}"  # the lesson\'s name: its figures go to runs/lessons/<name>/'
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lessons.notebooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", default="notebooks", help="folder for the .ipynb files (default: notebooks)"
    )
    args = parser.parse_args(argv)
    try:
        paths = convert(args.out)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
