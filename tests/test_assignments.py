"""Every lesson's assignment: the stubbed copy fails its tests, the complete copy passes them.

``lessons.assign`` writes a standalone folder (refimpl with the lesson's solution regions
stubbed, or complete with ``--solution``, plus the lesson's tests and grade.py); grading runs
the tests there with that copy first on the path.
"""

import subprocess
import sys

import pytest

from lessons import assign
from lessons.grade import score

LESSONS = assign.lessons_with_regions()


def test_every_planned_lesson_has_an_assignment():
    # lesson 13 (generative classifiers) is written separately and joins when it lands
    assert set(range(1, 13)) | {14} <= set(LESSONS) <= set(range(1, 15)), (
        f"lessons with solution regions: {LESSONS}"
    )


def test_regions_are_well_formed_and_named():
    """Every region sits in a function that exists under its graded name."""
    import importlib

    regions = assign.regions()
    assert regions and all(r.start < r.end for r in regions)
    for r in regions:
        module = r.path.relative_to(assign.PACKAGE).with_suffix("").as_posix().replace("/", ".")
        obj = importlib.import_module(f"refimpl.{module}")
        for part in r.function.split("."):
            obj = getattr(obj, part)
        assert callable(obj), r.key


@pytest.mark.parametrize("lesson", LESSONS)
def test_stubbed_copy_fails_and_complete_copy_passes(lesson, tmp_path):
    stub = assign.make_assignment(lesson, tmp_path / "stub")
    rows, everything = score(stub)
    assert not everything
    assert all(passed == 0 and total > 0 for _, passed, total in rows), rows  # every function fails
    text = "".join(p.read_text() for p in (stub / "refimpl").rglob("*.py"))
    assert f"lesson {lesson}: " in text and f"BEGIN SOLUTION lesson {lesson}\n" not in text
    complete = assign.make_assignment(lesson, tmp_path / "complete", solution=True)
    rows, everything = score(complete)
    assert everything, rows


def test_grade_script_runs_standalone(tmp_path):
    folder = assign.make_assignment(1, tmp_path / "a1", solution=True)
    result = subprocess.run(
        [sys.executable, "grade.py"], cwd=folder, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "total" in result.stdout and "100%" in result.stdout


def test_stub_replaces_only_the_lesson_regions():
    text = (
        "def f(x):\n"
        '    """doc"""\n'
        "    # BEGIN SOLUTION lesson 2\n"
        "    return x + 1\n"
        "    # END SOLUTION\n"
        "\n"
        "def g(x):\n"
        "    # BEGIN SOLUTION lesson 3\n"
        "    return x\n"
        "    # END SOLUTION\n"
    )
    out = assign.stub(text, 2, {3: "m.f"})
    assert 'raise NotImplementedError("lesson 2: m.f is yours to write")' in out
    assert "return x + 1" not in out and "return x\n" in out and '"""doc"""' in out


def test_cli_errors(tmp_path, capsys):
    assert assign.main(["99", "--out", str(tmp_path / "x")]) == 2
    assert "no solution regions" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    assert assign.main(["1", "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
