"""The command line: help texts, the `pieces` main job, and clear errors on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from refimpl.cli import main


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "refimpl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_help_answers():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "pieces" in result.stdout and "generative ConvNet" in result.stdout


def test_pieces_help_describes_the_checks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pieces", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--image" in text and "--seed" in text and "(6.7)" in text


def test_pieces_runs_and_every_check_passes(tmp_path, capsys):
    assert main(["pieces", "--size", "16", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] and len(summary["checks"]) >= 6
    assert summary["facts"]["pieces_crossed_on_line"] > 1
    assert summary["facts"]["line_points_in_segments_of_3_or_more"] > 0
    for name in ("pieces.png", "basis.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "PASS" in capsys.readouterr().out


def test_pieces_on_another_texture_and_user_file(tmp_path):
    from refimpl.data import texture_path

    assert main(["pieces", "--image", "gravel", "--size", "16", "--out", str(tmp_path / "a")]) == 0
    assert (
        main(
            [
                "pieces",
                "--image",
                str(texture_path("grass")),
                "--size",
                "16",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )


def test_missing_image_is_a_clear_error(tmp_path, capsys):
    assert main(["pieces", "--image", str(tmp_path / "nope.png"), "--out", str(tmp_path)]) == 2
    assert "image file not found" in capsys.readouterr().err


def test_unreadable_image_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    assert main(["pieces", "--image", str(bad), "--out", str(tmp_path)]) == 2
    assert "could not read" in capsys.readouterr().err


def test_image_too_small_for_the_network(tmp_path, capsys):
    assert main(["pieces", "--size", "2", "--out", str(tmp_path)]) == 2
    assert "kernel" in capsys.readouterr().err


def test_bad_argument_is_rejected():
    result = run_cli("pieces", "--size", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr


def test_verify_quick_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "verify.json"
    assert main(["verify", "--quick", "--seed", "5", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL " not in out and "checks passed" in out
    payload = json.loads(path.read_text())
    assert payload["passed"] and payload["seed"] == 5 and payload["quick"]
    assert all(
        {"claim", "equation", "residual", "tolerance", "passed"} <= set(r)
        for r in payload["results"]
    )


def test_verify_exits_non_zero_on_a_failure(monkeypatch, capsys):
    from refimpl.theorems import CheckResult

    failing = [CheckResult("x", "a claim that fails", "(0.0)", 1.0, 1e-10)]
    monkeypatch.setattr(
        "refimpl.cli.verify.run_all",
        lambda seed, quick, progress=None, backend=None: (failing, {"g": 0.0}),
    )
    assert main(["verify", "--quick"]) == 1
    assert "FAILED: x" in capsys.readouterr().out


def test_verify_help():
    result = run_cli("verify", "--help")
    assert result.returncode == 0 and "--seed" in result.stdout and "--quick" in result.stdout


def test_synthesize_and_resume_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "synthesize",
        "--preset",
        "object",
        "--iterations",
        "2",
        "--size",
        "8",
        "--seed",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 6 and summary["stages"] == 3
    assert np.load(out / "samples.npy").shape == (16, 1, 8, 8)
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "object" and config["config"]["iterations_per_layer"] == 2
    assert main(args) == 2  # the folder holds a run: refuse, point to --resume
    assert "--resume" in capsys.readouterr().err
    assert (
        main(["synthesize", "--resume", str(out), "--no-progress"]) == 0
    )  # finished: just rewrites outputs


def test_reconstruct_through_the_cli(tmp_path):
    out = tmp_path / "rec"
    assert (
        main(
            ["reconstruct", "--iterations", "3", "--size", "8", "--out", str(out), "--no-progress"]
        )
        == 0
    )
    assert (
        np.load(out / "reconstructions.npy").shape
        == np.load(out / "train.npy").shape
        == (10, 1, 8, 8)
    )
    assert json.loads((out / "config.json").read_text())["command"] == "reconstruct"


def test_synthesize_errors_are_clear(tmp_path, capsys):
    assert (
        main(
            [
                "synthesize",
                "--image",
                str(tmp_path / "none.png"),
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "image file not found" in capsys.readouterr().err
    assert main(["synthesize", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    # the unpadded paper-scale network cannot see an 8x8 image: refused before any work
    assert (
        main(
            [
                "synthesize",
                "--preset",
                "texture-paper",
                "--size",
                "8",
                "--out",
                str(tmp_path / "b"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "kernel" in capsys.readouterr().err


def test_synthesize_divergence_exits_3(tmp_path, monkeypatch, capsys):
    from refimpl.learning import presets

    monkeypatch.setitem(presets.PRESETS["object"]["config"], "learning_rate", [1e4] * 4)
    assert (
        main(
            [
                "synthesize",
                "--preset",
                "object",
                "--iterations",
                "2",
                "--size",
                "8",
                "--out",
                str(tmp_path / "d"),
                "--no-progress",
            ]
        )
        == 3
    )
    assert "diverged" in capsys.readouterr().err


def test_synthesize_help_lists_the_presets():
    result = run_cli("synthesize", "--help")
    assert result.returncode == 0
    for name in (
        "texture",
        "texture-paper",
        "object",
        "object-paper",
        "reconstruct",
        "reconstruct-paper",
    ):
        assert name in result.stdout
