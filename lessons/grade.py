"""Grade an assignment: run its tests against the refimpl copy beside this file, score per function.

Copied into every assignment folder by ``python -m lessons.assign``; run it from there:

    python grade.py            # or: python -m lessons.grade FOLDER (from the refimpl repository)

Each lesson's test module declares ``GRADED = {"module.function": ["test_name_prefix", ...]}``;
a function's score is the fraction of its tests that pass. Exit status 0 only if all pass.
Standalone on purpose: it needs Python, pytest and the folder, not the refimpl repository.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def graded_map(test_file: Path) -> dict:
    """The ``GRADED`` dict of a lesson's test module, read without importing it."""
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "GRADED" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError(f"{test_file} declares no GRADED mapping")


def run_tests(folder: Path) -> dict:
    """``{test name: passed?}`` from running ``folder/tests`` with ``folder`` first on the path."""
    report = Path(tempfile.mkdtemp()) / "report.xml"
    env = dict(os.environ, PYTHONPATH=str(folder) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("HYPOTHESIS_PROFILE", None)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "-o",
            "addopts=",
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    results = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        failed = any(child.tag in ("failure", "error") for child in case)
        skipped = any(child.tag == "skipped" for child in case)
        if not skipped:
            results[case.get("name")] = not failed
    return results


def score(folder) -> tuple[list, bool]:
    """Rows ``(function, passed, total)`` and whether everything passed."""
    folder = Path(folder).resolve()
    test_files = sorted((folder / "tests").glob("test_lesson_*.py"))
    if not test_files:
        raise FileNotFoundError(f"{folder}/tests holds no test_lesson_*.py")
    graded = graded_map(test_files[0])
    results = run_tests(folder)
    rows, everything = [], True
    for function, prefixes in graded.items():
        mine = [ok for name, ok in results.items() if any(name.startswith(p) for p in prefixes)]
        passed = sum(mine)
        rows.append((function, passed, len(mine)))
        everything &= len(mine) > 0 and passed == len(mine)
    return rows, everything


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parent
    rows, everything = score(folder)
    width = max(len(f) for f, _, _ in rows)
    print(f"{'function':{width}s}  passed  score")
    total_passed = total = 0
    for function, passed, count in rows:
        total_passed, total = total_passed + passed, total + count
        print(f"{function:{width}s}  {passed:2d}/{count:<2d}  {100 * passed / max(count, 1):5.0f}%")
    print(
        f"{'total':{width}s}  {total_passed:2d}/{total:<2d}  "
        f"{100 * total_passed / max(total, 1):5.0f}%"
    )
    return 0 if everything else 1


if __name__ == "__main__":
    sys.exit(main())
