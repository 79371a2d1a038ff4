"""Every lesson runs as a plain script (quick mode) and writes its figures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS = sorted(Path(__file__).resolve().parent.parent.glob("lessons/[0-9][0-9]_*.py"))


def test_fourteen_lessons():
    assert [p.name[:2] for p in LESSONS] == [f"{n:02d}" for n in range(1, 15)]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_in_quick_mode(lesson, tmp_path):
    env = dict(
        os.environ, REFIMPL_LESSON_QUICK="1", REFIMPL_LESSON_OUT=str(tmp_path), MPLBACKEND="Agg"
    )
    result = subprocess.run(
        [sys.executable, lesson.name],
        cwd=lesson.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    figures = list((tmp_path / lesson.stem).glob("*.png"))
    assert figures, "a lesson saves at least one figure"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_reads_like_a_chapter(lesson):
    """Percent-format cells, equations with the paper's numbers, a summary and exercises."""
    text = lesson.read_text()
    assert "# %% [markdown]" in text and "\n# %%\n" in text
    assert "Eq. (" in text
    assert "## Summary" in text and "## Exercises" in text
    assert f"python -m lessons.assign {int(lesson.name[:2])}" in text
    assert "import numpy" not in text or "from refimpl" in text  # lessons call refimpl


def test_notebooks(tmp_path):
    pytest.importorskip("jupytext")
    import json

    from lessons.notebooks import convert

    paths = convert(tmp_path)
    assert len(paths) == len(LESSONS)
    notebook = json.loads(paths[0].read_text())
    kinds = {cell["cell_type"] for cell in notebook["cells"]}
    assert kinds == {"markdown", "code"}
    assert (tmp_path / "_lesson.py").is_file()


def test_notebook_code_runs_without_a_script_file(tmp_path):
    """A kernel has no ``__file__``; the exported notebook's code must run all the same."""
    pytest.importorskip("jupytext")
    import json

    from lessons.notebooks import convert

    paths = convert(tmp_path / "nb")
    cells = json.loads(paths[0].read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    env = dict(
        os.environ,
        REFIMPL_LESSON_QUICK="1",
        REFIMPL_LESSON_OUT=str(tmp_path / "out"),
        MPLBACKEND="Agg",
    )

    def run(source):
        return subprocess.run(
            [sys.executable, "-c", source],
            cwd=tmp_path / "nb",
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = run(code)  # python -c: no __file__, as in a kernel
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "out" / paths[0].stem).glob("*.png"))
    without_name_cell = "\n".join(
        "".join(c["source"]) for c in cells[1:] if c["cell_type"] == "code"
    )
    assert (
        "__file__" in run(without_name_cell).stderr
    )  # negative control: the first cell is what makes it work


def test_notebooks_without_jupytext_is_a_clear_error(monkeypatch, capsys):
    import builtins

    from lessons import notebooks

    real_import = builtins.__import__

    def no_jupytext(name, *args, **kwargs):
        if name == "jupytext":
            raise ImportError("no jupytext")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jupytext)
    assert notebooks.main(["--out", "unused"]) == 2
    assert "jupytext is not installed" in capsys.readouterr().err
