"""Assignments that grade themselves: ``python -m lessons.assign N --out DIR``.

Solution regions in refimpl's source are marked::

    def forward(geom, x, weight, bias=None):
        \"\"\"...the docstring stays...\"\"\"
        # BEGIN SOLUTION lesson 1
        ...the body...
        # END SOLUTION

``assign N`` writes a standalone student copy: ``DIR/refimpl`` is refimpl with the regions of
lesson ``N`` replaced by ``raise NotImplementedError`` (everything else complete),
``DIR/tests`` holds lesson ``N``'s tests and the shared test helpers, ``DIR/data`` the
bundled data, and ``DIR/grade.py`` runs the tests and prints a score per function.
``--solution`` writes the complete copy instead (what an instructor checks the tests with).

Usage (instructor):  python -m lessons.assign 3 --out assignment3
          (student):  cd assignment3 && python grade.py
          (list):     python -m lessons.assign --list
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "refimpl"
LESSON_TESTS = ROOT / "tests" / "lessons"
SHARED_TESTS = ("checks.py", "gradcheck.py", "strategies.py", "conftest.py")

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION lesson (\d+)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")


@dataclass(frozen=True)
class Region:
    """One solution region: file, 1-based first and last line (the markers), lesson, function."""

    path: Path
    start: int
    end: int
    lesson: int
    function: str

    @property
    def key(self) -> str:
        """``module.function`` as graded, e.g. ``conv.naive.forward``."""
        module = self.path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        return f"{module}.{self.function}"


def _enclosing_function(tree: ast.AST, line: int) -> str:
    """Qualified name (``Class.method`` or ``function``) of the innermost def holding ``line``."""
    best, best_span = None, None

    def visit(node, prefix):
        nonlocal best, best_span
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if isinstance(child, ast.ClassDef):
                    visit(child, name + ".")
                    continue
                if child.lineno <= line <= child.end_lineno:
                    span = child.end_lineno - child.lineno
                    if best_span is None or span < best_span:
                        best, best_span = name, span
                visit(child, name + ".")

    visit(tree, "")
    if best is None:
        raise ValueError(f"solution marker at line {line} is not inside a function")
    return best


def regions(package: Path = PACKAGE) -> list:
    """Every solution region in ``package``, checked: balanced markers inside functions."""
    found = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = None
        open_at = None
        for number, text in enumerate(lines, start=1):
            begin, end = BEGIN.match(text), END.match(text)
            if begin:
                if open_at is not None:
                    raise ValueError(
                        f"{path}:{number}: nested solution region (opened at {open_at[0]})"
                    )
                open_at = (number, int(begin.group(2)))
            elif end:
                if open_at is None:
                    raise ValueError(f"{path}:{number}: END SOLUTION without BEGIN")
                tree = tree or ast.parse("\n".join(lines))
                found.append(
                    Region(
                        path, open_at[0], number, open_at[1], _enclosing_function(tree, open_at[0])
                    )
                )
                open_at = None
        if open_at is not None:
            raise ValueError(f"{path}:{open_at[0]}: BEGIN SOLUTION without END")
    return found


def lessons_with_regions(package: Path = PACKAGE) -> list:
    return sorted({r.lesson for r in regions(package)})


def stub(text: str, lesson: int, keys: dict) -> str:
    """``text`` with every region of ``lesson`` replaced by ``raise NotImplementedError``.

    ``keys`` maps a region's first line (1-based) to its graded name, used in the message.
    """
    out, skipping = [], False
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        begin = BEGIN.match(line.rstrip("\n"))
        if begin and int(begin.group(2)) == lesson:
            indent = begin.group(1)
            out.append(
                f"{indent}# TODO (lesson {lesson}): write this part; "
                "the docstring above says what it computes.\n"
            )
            out.append(
                f'{indent}raise NotImplementedError("lesson {lesson}: '
                f'{keys[number]} is yours to write")\n'
            )
            skipping = True
            continue
        if skipping:
            if END.match(line.rstrip("\n")):
                skipping = False
            continue
        out.append(line)
    return "".join(out)


def make_assignment(lesson: int, out, solution: bool = False) -> Path:
    """Write the standalone copy for ``lesson`` to ``out`` (stubbed unless ``solution``)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    lesson_regions = [r for r in regions() if r.lesson == lesson]
    if not lesson_regions:
        raise ValueError(
            f"lesson {lesson} has no solution regions; lessons with assignments: "
            f"{lessons_with_regions()}"
        )
    test_file = LESSON_TESTS / f"test_lesson_{lesson:02d}.py"
    if not test_file.is_file():
        raise FileNotFoundError(f"lesson {lesson} has no tests at {test_file}")
    shutil.copytree(PACKAGE, out / "refimpl", ignore=shutil.ignore_patterns("__pycache__"))
    if not solution:
        for path in {r.path for r in lesson_regions}:
            keys = {r.start: r.key for r in lesson_regions if r.path == path}
            (out / "refimpl" / path.relative_to(PACKAGE)).write_text(
                stub(path.read_text(), lesson, keys)
            )
    shutil.copytree(ROOT / "data", out / "data")
    (out / "tests").mkdir()
    for name in SHARED_TESTS:
        shutil.copy(ROOT / "tests" / name, out / "tests" / name)
    shutil.copy(test_file, out / "tests" / test_file.name)
    shutil.copy(Path(__file__).with_name("grade.py"), out / "grade.py")
    chapter = chapter_of(lesson)
    shutil.copy(chapter, out / chapter.name)
    shutil.copy(Path(__file__).with_name("_lesson.py"), out / "_lesson.py")
    functions = sorted({r.key for r in lesson_regions})
    (out / "README.md").write_text(_readme(lesson, chapter.name, functions, solution))
    return out


def chapter_of(lesson: int) -> Path:
    """The lesson's chapter, ``lessons/NN_topic.py``: it travels with the assignment."""
    (chapter,) = sorted(Path(__file__).resolve().parent.glob(f"{lesson:02d}_*.py"))
    return chapter


def _readme(lesson: int, chapter: str, functions, solution: bool) -> str:
    by_file = {}
    for key in functions:
        module, _, name = key.rpartition(".")
        if module.split(".")[-1][:1].isupper():  # a method: Class.method
            module, _, owner = module.rpartition(".")
            name = f"{owner}.{name}"
        by_file.setdefault(f"refimpl/{module.replace('.', '/')}.py", []).append(f"`{name}`")
    listed = "\n".join(f"   * `{path}`: {', '.join(names)}" for path, names in by_file.items())
    common = f"""
## Grading

You need Python with NumPy, SciPy, Matplotlib and tqdm (what refimpl runs on), and the test
tools: `pip install numpy scipy matplotlib tqdm pytest hypothesis`. From this folder:

    python grade.py       # why each failing test fails, then a score per function
    python grade.py -v    # the same after pytest's full output

The tests are `tests/test_lesson_{lesson:02d}.py`; each says what it checks and against which
independent reference. "Exact" identities are checked to the float64 tolerances of
`refimpl/numerics.py`, which also gives the rounding argument behind each.
"""
    if solution:
        return f"""# Lesson {lesson}: the complete copy (for instructors)

Every function is implemented here, including the ones students write:

{listed}

`python grade.py` scores 100% on this copy; the student copy (written without `--solution`)
raises `NotImplementedError` in the marked part of each of these functions.
{common}"""
    return f"""# Lesson {lesson}: your assignment

1. Read the chapter, `{chapter}` (a Python script in jupytext "percent" format: prose in
   comments, code in `# %%` cells).
2. Write the marked part of each of these functions; until you do, each raises
   `NotImplementedError`. Its docstring says what it computes, with shapes and the equation
   of Xie et al. (*A Theory of Generative ConvNet*) it implements:

{listed}

   Everything else in `refimpl/` is complete: call it as you like.
3. Grade your work (below) until every function scores 100%.
4. Then run the chapter on your own code: `python {chapter} --quick` (figures go to
   `runs/lessons/`).
{common}"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lessons.assign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("lesson", type=int, nargs="?", help="lesson number")
    parser.add_argument("--out", help="folder to write (must not exist or be empty)")
    parser.add_argument(
        "--solution", action="store_true", help="write the complete copy (no stubs)"
    )
    parser.add_argument("--list", action="store_true", help="list the lessons and their functions")
    args = parser.parse_args(argv)
    if args.list or args.lesson is None:
        by_lesson = {}
        for r in regions():
            by_lesson.setdefault(r.lesson, set()).add(r.key)
        for lesson in sorted(by_lesson):
            print(f"lesson {lesson:2d}: {', '.join(sorted(by_lesson[lesson]))}")
        return 0
    if not args.out:
        parser.error("--out DIR is required")
    try:
        out = make_assignment(args.lesson, args.out, args.solution)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: cd {out} && python grade.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
