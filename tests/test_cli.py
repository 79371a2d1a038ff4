"""The command line: help texts, the main jobs, and clear errors on bad input.

The learning commands' run folders under interruption and damage are tested in
``test_run_folder.py``; here: what a user types and what they get back.
"""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl.cli import build_parser, learn, main
from refimpl.learning import runs
from refimpl.run_folder import Interrupted

ROOT = Path(__file__).resolve().parent.parent


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
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["synthesize", "--resume", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "not a run folder (no config.json)" in capsys.readouterr().err
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
    assert "smaller than the first layer's 15x15 filters" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


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
    epilog = result.stdout.split("presets:")[1]
    for name in ("texture", "texture-paper", "object", "object-paper"):
        assert f"  {name} " in epilog
    assert "  reconstruct " not in epilog and "reconstruct-paper" not in epilog
    assert set(learn.presets_of("reconstruct")) == {"reconstruct", "reconstruct-paper"}


# --- a newcomer's first commands ----------------------------------------------------------------

TINY = ["--preset", "object", "--iterations", "1", "--size", "8", "--no-progress"]


def test_rerunning_the_main_command_gives_a_fresh_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["synthesize", *TINY]) == 0
    assert main(["synthesize", *TINY]) == 0
    out = capsys.readouterr().out
    assert "run folder runs/synthesize-object\n" in out
    assert "run folder runs/synthesize-object-2\n" in out
    assert (tmp_path / "runs" / "synthesize-object-2" / "summary.json").is_file()


def test_a_missing_image_is_reported_before_the_folder(tmp_path, monkeypatch, capsys):
    """The default folder holding a run must not hide a wrong --image."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "synthesize-texture").mkdir(parents=True)
    (tmp_path / "runs" / "synthesize-texture" / "config.json").write_text("{}")
    assert main(["synthesize", "--image", "nope.png", "--no-progress"]) == 2
    assert "image file not found: nope.png" in capsys.readouterr().err
    assert main(["synthesize", "--image", "bricks", "--no-progress"]) == 2
    assert "bundled textures: brick, grass, gravel" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, preset, right",
    [("reconstruct", "texture", "synthesize"), ("synthesize", "reconstruct", "reconstruct")],
)
def test_the_command_and_the_method_agree(command, preset, right, tmp_path, capsys):
    assert main([command, "--preset", preset, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"use `python -m refimpl {right}`" in err and not (tmp_path / "x").exists()
    default = build_parser().parse_args([command]).default_preset
    assert default in learn.presets_of(command) and preset not in learn.presets_of(command)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "object", "--image", "brick"], "--image does not apply to preset 'object'"),
        (["--digit", "3"], "--digit does not apply to preset 'texture'"),
        (["--preset", "object", "--factor", "2"], "--factor does not apply"),
        (["--preset", "object", "--padding", "circular"], "--padding does not apply"),
        (["--preset", "object", "--digit", "42"], "digit must be a digit class 0-9; got 42"),
        (["--preset", "object", "--size", "2"], "size 2 is smaller than the first layer's 3x3"),
        (["--size", "1"], "size 1 is smaller than the first layer's 7x7"),
        (["--preset", "object", "--size", "100000"], "at size 100000 needs at least"),
    ],
)
def test_options_that_cannot_apply_are_refused(args, message, tmp_path, capsys):
    assert main(["synthesize", *args, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_reconstruct_refuses_a_digit(tmp_path, capsys):
    assert main(["reconstruct", "--digit", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--digit does not apply to preset 'reconstruct'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", ""], "--out: must be a folder path; got an empty string"),
        (["--resume", " "], "--resume: must be a folder path; got an empty string"),
        (["--seed", "-1"], "--seed: must be a non-negative integer; got -1"),
        (["--size", "0"], "--size: must be a positive integer; got 0"),
    ],
)
def test_argument_values_are_checked(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_out_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["synthesize", *TINY, "--out", str(tmp_path / "file" / "run")]) == 2
    assert f"{tmp_path / 'file'} is a file" in capsys.readouterr().err


def test_a_constant_image_is_refused(tmp_path, capsys):
    import matplotlib.pyplot as plt

    plt.imsave(tmp_path / "grey.png", np.full((64, 64), 0.5), cmap="gray", vmin=0, vmax=1)
    assert (
        main(["synthesize", "--image", str(tmp_path / "grey.png"), "--out", str(tmp_path / "x")])
        == 2
    )
    assert "the training image is constant" in capsys.readouterr().err


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("cupy") is not None, reason="CuPy is installed"
)
def test_cupy_backend_without_cupy_is_one_line(tmp_path):
    result = run_cli("synthesize", "--backend", "cupy", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: backend 'cupy' was requested but CuPy is not installed")


def test_the_paper_presets_say_how_long_they_take_on_a_cpu(tmp_path, monkeypatch, capsys):
    def stop(run, **kwargs):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(runs, "execute", stop)
    out = str(tmp_path / "paper")
    assert main(["synthesize", "--preset", "texture-paper", "--out", out]) == 130
    err = capsys.readouterr().err
    assert re.search(r"warning: preset texture-paper is .* PFLOP .* roughly \d+ hours", err)
    assert "--backend cupy" in err
    assert main(["synthesize", "--size", "16", "--out", str(tmp_path / "cpu")]) == 130
    assert "warning" not in capsys.readouterr().err  # negative control: the CPU preset


# --- a user's own texture -------------------------------------------------------------------------


def user_image(path, side):
    import matplotlib.pyplot as plt

    plt.imsave(path, np.random.default_rng(0).uniform(size=(side, side)), cmap="gray")
    return str(path)


@pytest.mark.parametrize(
    "side, factor", [(64, 1), (100, 1), (128, 1), (256, 1), (512, 2), (600, 2), (1024, 4)]
)
def test_a_users_image_gets_a_factor_that_fits(side, factor, tmp_path):
    """The rule: the largest factor keeping the shorter side >= 4 x --size (64), at least 1
    (512 gives the texture preset's factor 2 for the bundled textures)."""
    image = user_image(tmp_path / "mine.png", side)
    args = build_parser().parse_args(["synthesize", "--image", image])
    args.preset = args.default_preset
    config = learn.config_from_args(args)
    assert config.factor == factor and config.size == 64
    data, _, raw = runs.prepare(config)
    assert raw.shape == (1, 1, 64, 64)


def test_a_users_image_with_an_explicit_factor(tmp_path, capsys):
    image = user_image(tmp_path / "mine.png", 64)
    assert (
        main(["synthesize", "--image", image, "--factor", "4", "--out", str(tmp_path / "x")]) == 2
    )
    err = capsys.readouterr().err
    assert "is 64x64, 16x16 after block-averaging by factor 4" in err
    assert "lower the factor (at most 1 fits) or the size" in err


def test_pieces_on_a_users_image(tmp_path, capsys):
    image = user_image(tmp_path / "mine.png", 64)
    assert main(["pieces", "--image", image, "--out", str(tmp_path / "p")]) == 0
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["factor"] == 1
    assert main(["pieces", "--image", image, "--factor", "8", "--out", str(tmp_path / "q")]) == 2
    assert "8x8 after block-averaging by factor 8" in capsys.readouterr().err


# --- options given with --resume ------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny object run (seed 1); the tests below only read it or finish it again."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["synthesize", *TINY, "--seed", "1", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "5"], "--seed 5 conflicts with the run in .* \\(seed = 1\\)"),
        (
            ["--preset", "texture"],
            "--preset texture conflicts with the run in .* \\(preset object\\)",
        ),
        (["--size", "16"], "--size 16 conflicts"),
        (["--digit", "4"], "--digit 4 conflicts"),
        (["--out", "elsewhere"], "--out does not apply with --resume"),
        (["--iterations", "2"], "cannot continue with 2 iterations per layer"),
    ],
)
def test_resume_refuses_conflicting_options(finished, args, message, capsys):
    assert main(["synthesize", "--resume", str(finished), *args, "--no-progress"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_resume_accepts_options_that_agree(finished):
    args = ["--seed", "1", "--preset", "object", "--size", "8", "--iterations", "1"]
    assert main(["synthesize", "--resume", str(finished), *args, "--no-progress"]) == 0


def test_circular_padding_is_recorded_and_kept_on_resume(tmp_path, capsys):
    """--padding circular reaches every layer of the recorded spec (and so the network a
    resumed run rebuilds); resuming with the other mode is refused."""
    out = tmp_path / "circ"
    base = ["synthesize", "--size", "16", "--no-progress"]
    assert main([*base, "--iterations", "1", "--padding", "circular", "--out", str(out)]) == 0
    spec = json.loads((out / "config.json").read_text())["config"]["spec"]
    assert [layer[5] for layer in spec] == ["circular"] * 3
    resume = ["synthesize", "--resume", str(out), "--no-progress"]
    assert main([*resume, "--padding", "zeros"]) == 2
    assert "--padding zeros conflicts with the run" in capsys.readouterr().err
    assert main([*resume, "--padding", "circular"]) == 0  # agrees: accepted


def test_resume_with_the_wrong_command(finished, capsys):
    assert main(["reconstruct", "--resume", str(finished), "--no-progress"]) == 2
    assert "holds a synthesize run; continue it with `python -m refimpl synthesize" in (
        capsys.readouterr().err
    )


def test_resume_extends_a_run_without_growing(tmp_path, capsys):
    out = tmp_path / "rec"
    base = ["reconstruct", "--size", "8", "--no-progress"]
    assert main([*base, "--iterations", "1", "--out", str(out)]) == 0
    assert main(["reconstruct", "--resume", str(out), "--iterations", "2", "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["iterations"] == 2


# --- packaging and docs ---------------------------------------------------------------------


def test_requirements_txt_is_the_core_and_test_dependencies():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    listed = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert sorted(listed) == sorted(wanted)
    assert project["scripts"]["refimpl"] == "refimpl.cli:main"
    assert "`refimpl synthesize`" in (ROOT / "README.md").read_text()
