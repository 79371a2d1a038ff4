"""Every lesson's assignment: the stubbed copy fails its tests, the complete copy passes them;
and the grader, run as a student runs it, says why tests fail and what went wrong.

``lessons.assign`` writes a standalone folder (refimpl with the lesson's solution regions
stubbed, or complete with ``--solution``, plus the lesson's tests, its chapter and grade.py);
grading runs the tests there with that copy first on the path.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lessons import assign
from lessons.grade import grade, score

LESSONS = assign.lessons_with_regions()


def test_every_planned_lesson_has_an_assignment():
    assert LESSONS == list(range(1, 15)), f"lessons with solution regions: {LESSONS}"


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
    """Stubs score 0 on every function, the complete copy 100%; and the tests that grade
    nothing (reference checks, negative controls) pass on the stubs too, since they never call
    a student's function: a student sees failures only where there is work to do."""
    stub = assign.make_assignment(lesson, tmp_path / "stub")
    rows, everything, run, graded = grade(stub)
    assert not everything
    assert all(passed == 0 and total > 0 for _, passed, total in rows), rows  # every function fails
    prefixes = tuple(p for names in graded.values() for p in names)
    ungraded = {name: o for name, o in run.outcomes.items() if not name.startswith(prefixes)}
    assert all(o.passed for o in ungraded.values()), {
        name: o.message for name, o in ungraded.items() if not o.passed
    }
    text = "".join(p.read_text() for p in (stub / "refimpl").rglob("*.py"))
    assert f"lesson {lesson}: " in text and f"BEGIN SOLUTION lesson {lesson}\n" not in text
    complete = assign.make_assignment(lesson, tmp_path / "complete", solution=True)
    rows, everything = score(complete)
    assert everything, rows


def grade_script(folder, *args, python=(sys.executable,), env=None):
    """Run ``grade.py`` in ``folder`` as a student would; the completed process."""
    return subprocess.run(
        [*python, "grade.py", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def lesson1(tmp_path_factory):
    """Lesson 1's stubbed and complete copies, shared by the grader tests (not modified)."""
    root = tmp_path_factory.mktemp("lesson1")
    return assign.make_assignment(1, root / "stub"), assign.make_assignment(
        1, root / "complete", solution=True
    )


@pytest.fixture(scope="module")
def stub_graded(lesson1):
    """``grade.py`` run once on lesson 1's stubbed copy (several tests read its output)."""
    return grade_script(lesson1[0])


def test_grade_script_runs_standalone(lesson1, tmp_path):
    """The complete copy scores 100% and shows no failure; the grader's temporary folder is
    removed (its TMPDIR is empty afterwards)."""
    _, complete = lesson1
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = grade_script(complete, env=dict(os.environ, TMPDIR=str(scratch)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "total" in result.stdout and "100%" in result.stdout
    assert "FAILED" not in result.stdout  # the negative control of the failure report below
    assert list(scratch.iterdir()) == []


def test_grade_script_says_why_tests_fail(stub_graded):
    """A stub: every failing test is named with NotImplementedError and the function."""
    result = stub_graded
    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert "NotImplementedError: lesson 1: conv.naive.forward is yours to write" in result.stdout
    assert "(in refimpl/conv/naive.py, line " in result.stdout  # where, in the student's file
    assert "test_forward_by_hand" in result.stdout
    assert result.stdout.rstrip().endswith("0%")  # the score table comes last


def test_grade_script_shows_the_assertion_of_a_wrong_solution(lesson1, tmp_path):
    """A solution with the kernel flipped (convolution, not Eq. (2.1)): the message says by how
    much which comparison failed."""
    folder = tmp_path / "wrong"
    shutil.copytree(lesson1[1], folder)
    naive = folder / "refimpl" / "conv" / "naive.py"
    text = naive.read_text()
    right = "xp.sum(weight[o] * x_pad[n, :, rows, cols])"
    assert right in text
    naive.write_text(
        text.replace(right, "xp.sum(weight[o, :, ::-1, ::-1] * x_pad[n, :, rows, cols])")
    )
    result = grade_script(folder)
    assert result.returncode == 1
    assert "conv.naive.forward:" in result.stdout and "FAILED" in result.stdout
    assert "relative error" in result.stdout and "forward vs fast" in result.stdout
    # what the failing hand-worked test checks: the first sentence of its docstring
    assert "checks: 3x3 image, 2x2 kernel" in result.stdout
    assert "conv.naive.adjoint     " in result.stdout  # its row in the table


def test_grade_script_reports_a_syntax_error_with_file_and_line(lesson1, stub_graded, tmp_path):
    folder = tmp_path / "syntax"
    shutil.copytree(lesson1[0], folder)
    naive = folder / "refimpl" / "conv" / "naive.py"
    lines = naive.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("def forward(")) + 1
    lines[number - 1] = lines[number - 1].replace("def forward(", "def forward(:")
    naive.write_text("\n".join(lines) + "\n")
    result = grade_script(folder)
    assert result.returncode == 2
    assert f"syntax error in refimpl/conv/naive.py, line {number}" in result.stderr
    assert "0/0" not in result.stdout + result.stderr
    # negative control: the intact stub has no syntax error to report
    assert "syntax error" not in stub_graded.stderr


def test_grade_script_reports_an_import_error_with_file_and_line(lesson1, tmp_path):
    folder = tmp_path / "imports"
    shutil.copytree(lesson1[0], folder)
    naive = folder / "refimpl" / "conv" / "naive.py"
    text = naive.read_text()
    naive.write_text(text + "import not_a_module_anywhere\n")
    result = grade_script(folder)
    assert result.returncode == 2
    line = len(text.splitlines()) + 1
    assert f"could not import the code (refimpl/conv/naive.py, line {line})" in result.stderr
    assert "No module named 'not_a_module_anywhere'" in result.stderr


def test_grade_script_without_the_test_tools_says_what_to_install(lesson1, stub_graded):
    """``python -S`` hides site-packages (pytest, hypothesis): one line, no traceback."""
    stub, _ = lesson1
    result = grade_script(stub, python=(sys.executable, "-S"))
    assert result.returncode == 2
    assert "pip install pytest hypothesis" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # negative control: with site-packages the tests run and no install is asked for
    assert "pip install" not in stub_graded.stderr


def test_grade_script_help_and_verbose(lesson1, stub_graded):
    stub, _ = lesson1
    helped = grade_script(stub, "--help")
    assert helped.returncode == 0 and "usage: grade.py" in helped.stdout
    assert "-v, --verbose" in helped.stdout
    verbose = grade_script(stub, "-v")
    assert verbose.returncode == 1
    assert "test_forward_by_hand FAILED" in verbose.stdout  # pytest's own per-test lines
    assert verbose.stdout.rstrip().endswith("0%")
    # negative control: without -v pytest's per-test lines are not shown
    assert "test_forward_by_hand FAILED" not in stub_graded.stdout


def test_grade_script_outside_an_assignment_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(Path(assign.__file__).with_name("grade.py")), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "holds no test_lesson_*.py" in result.stderr


def test_readmes_tell_students_what_to_do_and_instructors_what_they_have(lesson1):
    """The student README names the functions, the chapter and the grader, and does not send
    students to the repository that holds the solutions; the instructor copy says it is
    complete and not that its functions raise."""
    stub, complete = lesson1
    words = lambda path: " ".join(path.read_text().split())  # line breaks do not matter
    student = words(stub / "README.md")
    assert "`refimpl/conv/naive.py`: `adjoint`, `forward`, `weight_grad`" in student
    assert "python grade.py" in student and "01_filtering.py" in student
    assert (stub / "01_filtering.py").is_file() and (stub / "_lesson.py").is_file()
    assert "repository" not in student and "lessons/0" not in student
    assert "python -m lessons" not in student
    instructor = words(complete / "README.md")
    assert "complete copy" in instructor and "scores 100%" in instructor
    assert "each raises `NotImplementedError`" not in instructor
    assert "each raises `NotImplementedError`" in student  # the negative control


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
