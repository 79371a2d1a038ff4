"""Grade an assignment: run its tests on the refimpl copy beside this file, score each function.

Copied into every assignment folder by ``python -m lessons.assign``; run it there:

    python grade.py           # why each failing test failed, then a score per function
    python grade.py -v        # the same after pytest's full output
    python -m lessons.grade FOLDER    # an instructor, from the refimpl repository

Each lesson's test module declares ``GRADED = {"module.function": ["test_name_prefix", ...]}``;
a function's score is the fraction of its tests that pass. Exit status: 0 when every graded
test passes, 1 when some fail, 2 when nothing could be graded (pytest missing, a syntax or
import error in the code, no tests). Standalone on purpose: it needs Python, pytest and
hypothesis (``pip install pytest hypothesis``) and the folder, not the refimpl repository.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

TEST_TOOLS = ("pytest", "hypothesis")
MESSAGE_LINES = 6  # of an assertion message shown per failing test; -v shows everything
LINE_WIDTH = 160


class CannotGrade(Exception):
    """Nothing could be graded; the message says why and what to do."""


@dataclass
class Outcome:
    """One test's result: passed, the failure message and pytest's traceback (empty when it
    passed)."""

    passed: bool
    message: str = ""
    traceback: str = ""


@dataclass
class Run:
    """What one pytest run reported: ``{test name: Outcome}`` and the pytest output."""

    outcomes: dict = field(default_factory=dict)
    output: str = ""
    purposes: dict = field(default_factory=dict)


def graded_map(test_file: Path) -> dict:
    """The ``GRADED`` dict of a lesson's test module, read without importing it."""
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "GRADED" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise CannotGrade(f"{test_file} declares no GRADED mapping")


def test_purposes(test_file: Path) -> dict:
    """``{test function: the first sentence of its docstring}``: what each test checks."""
    purposes = {}
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            doc = " ".join((ast.get_docstring(node) or "").split())
            if doc:
                first = doc.split(". ")[0].rstrip(".")
                purposes[node.name] = first if len(first) <= LINE_WIDTH else first[:157] + "..."
    return purposes


def check_test_tools() -> None:
    """Raise :class:`CannotGrade` naming the missing test tools, if any."""
    missing = [name for name in TEST_TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        raise CannotGrade(
            f"grading needs {' and '.join(missing)}, which this Python ({sys.executable}) "
            f"does not have: pip install {' '.join(TEST_TOOLS)}"
        )


def check_syntax(folder: Path) -> None:
    """Compile every Python file of the copy: a syntax error is reported with file and line."""
    files = sorted(folder.glob("*.py")) + sorted(folder.glob("refimpl/**/*.py"))
    for path in files + sorted(folder.glob("tests/**/*.py")):
        try:
            compile(path.read_bytes(), str(path), "exec")
        except SyntaxError as exc:
            where = Path(exc.filename or path).resolve().relative_to(folder)
            text = (exc.text or "").rstrip("\n")
            caret = ""
            if text and exc.offset:
                stripped = text.lstrip()
                caret = "\n    " + " " * (exc.offset - 1 - (len(text) - len(stripped))) + "^"
                text = stripped
            shown = f"\n    {text}{caret}" if text else ""
            raise CannotGrade(
                f"syntax error in {where}, line {exc.lineno}: {exc.msg}{shown}\n"
                "Nothing was graded: fix it and run grade.py again."
            ) from None


def _trim(text: str, lines: int = MESSAGE_LINES) -> str:
    kept = [line if len(line) <= LINE_WIDTH else line[: LINE_WIDTH - 3] + "..." for line in text]
    if len(kept) > lines:
        kept = kept[:lines] + [f"... ({len(kept) - lines} more lines: python grade.py -v)"]
    return "\n".join(kept)


def failure_message(element) -> str:
    """The assertion message of a junit ``<failure>``/``<error>``, from pytest's ``E`` lines."""
    text = element.text or ""
    e_lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    # pytest's "+  where ..." lines spell out every sub-expression: noise next to the message
    e_lines = [line for line in e_lines if not line.startswith("+")]
    if e_lines:
        return _trim(e_lines)
    return _trim((element.get("message") or "failed").splitlines())


def location(traceback: str, module_file: str) -> str:
    """``"refimpl/x/y.py, line N"``: the last traceback entry in ``module_file``, or ``""``."""
    found = re.findall(rf"^{re.escape(module_file)}:(\d+): ", traceback, flags=re.MULTILINE)
    return f"{module_file}, line {found[-1]}" if found else ""


def import_error(text: str) -> str:
    """A collection error: the deepest frame inside the copy (file, line) and the message."""
    frames = [
        line.split(": in ")[0]
        for line in text.splitlines()
        if ": in " in line and ".py:" in line and not line.startswith(("/", "<"))
    ]
    e_lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    place = ""
    if frames:
        path, _, line = frames[-1].rpartition(":")
        place = f" ({path}, line {line})"
    message = _trim(e_lines) if e_lines else "(no message; python grade.py -v shows pytest's)"
    return f"the tests could not import the code{place}:\n    " + message.replace("\n", "\n    ")


def run_tests(folder: Path, verbose: bool = False) -> Run:
    """Run ``folder/tests`` with ``folder`` first on the path; outcomes from pytest's junit XML."""
    env = dict(os.environ, PYTHONPATH=str(folder) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("HYPOTHESIS_PROFILE", None)
    with tempfile.TemporaryDirectory(prefix="grade-") as scratch:
        report = Path(scratch) / "report.xml"
        command = [sys.executable, "-m", "pytest", "tests", "-p", "no:cacheprovider"]
        command += ["-v" if verbose else "-q", f"--junitxml={report}", "-o", "addopts="]
        completed = subprocess.run(
            command,
            cwd=folder,
            env=env,
            stdout=None if verbose else subprocess.PIPE,
            stderr=None if verbose else subprocess.STDOUT,
            text=True,
        )
        output = completed.stdout or ""
        if not report.is_file():
            raise CannotGrade(
                f"pytest stopped before writing its report (exit status {completed.returncode}):"
                f"\n{output[-3000:]}"
            )
        root = ElementTree.parse(report).getroot()
    run = Run(output=output)
    for case in root.iter("testcase"):
        children = {child.tag: child for child in case}
        if "skipped" in children:
            continue
        bad = children.get("failure", children.get("error"))
        if bad is not None and not case.get("classname"):  # a module that failed to import
            raise CannotGrade(import_error(bad.text or ""))
        run.outcomes[case.get("name")] = Outcome(
            bad is None,
            "" if bad is None else failure_message(bad),
            "" if bad is None else (bad.text or ""),
        )
    return run


def _rows(graded: dict, outcomes: dict) -> tuple[list, bool]:
    rows, everything = [], True
    for function, prefixes in graded.items():
        mine = [o.passed for name, o in outcomes.items() if name.startswith(tuple(prefixes))]
        rows.append((function, sum(mine), len(mine)))
        everything &= len(mine) > 0 and all(mine)
    return rows, everything


def grade(folder, verbose: bool = False) -> tuple[list, bool, Run, dict]:
    """``(rows, everything, run, graded)``: rows ``(function, passed, total)``."""
    folder = Path(folder).resolve()
    test_files = sorted((folder / "tests").glob("test_lesson_*.py"))
    if not test_files:
        raise CannotGrade(
            f"{folder / 'tests'} holds no test_lesson_*.py: run grade.py in an assignment "
            "folder (written by python -m lessons.assign), or name one: python grade.py FOLDER"
        )
    graded = graded_map(test_files[0])
    check_test_tools()
    check_syntax(folder)
    run = run_tests(folder, verbose)
    run.purposes = test_purposes(test_files[0])
    rows, everything = _rows(graded, run.outcomes)
    return rows, everything, run, graded


def score(folder) -> tuple[list, bool]:
    """Rows ``(function, passed, total)`` and whether everything passed."""
    rows, everything, _, _ = grade(folder)
    return rows, everything


def failures_text(graded: dict, outcomes: dict, purposes=None) -> str:
    """Failing tests per graded function (tests with the same message listed together); a
    test failing on its own is shown with what it checks (its docstring's first sentence)."""
    purposes = purposes or {}
    blocks = []
    owners = [(function, tuple(prefixes)) for function, prefixes in graded.items()]
    groups = {}
    for name, outcome in outcomes.items():
        if outcome.passed:
            continue
        function = next((f for f, p in owners if name.startswith(p)), "not graded (checks)")
        message = outcome.message
        where = location(outcome.traceback, module_file(function))
        if where:  # the error passed through the student's function: say where
            message += f"\n(in {where})"
        groups.setdefault(function, {}).setdefault(message, []).append(name)
    for function in [f for f, _ in owners] + ["not graded (checks)"]:
        if function not in groups:
            continue
        lines = [f"{function}:"]
        for message, names in groups[function].items():
            if len(names) == 1:
                lines.append(f"  FAILED {names[0]}")
                test = names[0].split("[")[0]
                purpose = purposes.get(test, test[len("test_") :].replace("_", " "))
                lines.append(f"    checks: {purpose}")
            else:  # one message for many tests (a stub, a shared mistake): say it once
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if names[3:] else "")
                lines.append(f"  FAILED {len(names)} tests ({shown})")
            lines.append("    error:  " + message.replace("\n", "\n            "))
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def module_file(function: str) -> str:
    """``refimpl/a/b.py`` of a graded ``a.b.function`` or ``a.b.Class.method``."""
    parts = function.split(".")[:-1]
    if parts and parts[-1][:1].isupper():
        parts = parts[:-1]
    return "refimpl/" + "/".join(parts) + ".py"


def table(rows) -> str:
    """The score table: one row per function, then the total."""
    total = ("total", sum(r[1] for r in rows), sum(r[2] for r in rows))
    width = max(len(f) for f, _, _ in [("function", 0, 0), *rows])
    lines = [f"{'function':{width}s}  passed  score"]
    for function, passed, count in [*rows, total]:
        percent = 100 * passed / max(count, 1)
        lines.append(f"{function:{width}s}  {passed:2d}/{count:<2d}  {percent:5.0f}%")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="grade.py",
        description="Run this assignment's tests and print, for each function to write, why "
        "its failing tests failed and its score.",
        epilog="Exit status: 0 all graded tests pass, 1 some fail, 2 nothing could be graded.",
    )
    parser.add_argument(
        "folder",
        nargs="?",
        default=str(Path(__file__).resolve().parent),
        help="the assignment folder (default: the folder of grade.py)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show pytest's full output first"
    )
    args = parser.parse_args(argv)
    try:
        rows, everything, run, graded = grade(args.folder, args.verbose)
    except CannotGrade as exc:
        print(f"grade.py: {exc}", file=sys.stderr)
        return 2
    failed = failures_text(graded, run.outcomes, run.purposes)
    if failed:
        print("Failing tests and why (the test files are in tests/):\n" + failed + "\n")
    print(table(rows))
    return 0 if everything else 1


if __name__ == "__main__":
    sys.exit(main())
