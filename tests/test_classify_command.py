"""``python -m refimpl classify``: run folder, exact resume, clean stops, clear errors, divergence.

Each test runs the real command (in-process through ``refimpl.cli.main``, or as a process where
a real signal is the point) on a tiny network and a tiny evaluation, so that it takes seconds:

* a run stopped at a controlled point (inside an update, by a signal) saves the boundary
  before it, exits 130/143, and ``--resume`` reaches the uninterrupted run's checkpoint,
  metrics and predictions bit for bit; a negative control shows the comparison sees a
  different run;
* bad input (a model or mode that does not exist or apply, a corrupt or mismatched
  checkpoint, an edited ``config.json``, a folder in use, conflicting options) exits 2 with
  one line naming the problem;
* a diverging run (a huge learning rate) exits 3 naming the likely cause, keeps its last good
  checkpoint and writes no metrics; the relative divergence check stops a run whose sampler
  runs away, and lets a healthy run finish (the negative control).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from faults import fail_on_call, signal_on_call

from refimpl.classify import runs as classify_runs
from refimpl.classify import training as training_module
from refimpl.classify.experiment import Evaluation
from refimpl.classify.training import (
    EXCURSION_LIMIT,
    REFERENCE_ITERATIONS,
    ClassifierConfig,
    ClassifierTrainer,
    DivergenceError,
    energy_band,
    excursion,
    excursion_start,
)
from refimpl.cli import main
from refimpl.run_folder import RunFolder, read_checkpoint, write_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# a small engine network and sampler: every mode trains in milliseconds per update
TINY = dict(
    spec=[[4, 3, 1, 1], [8, 3, 2, 1], [10, 4, 1, 0]],
    chains=8,
    buffer_size=40,
    sampler_steps=2,
    langevin_steps=2,
)
TINY_EVALUATION = Evaluation(
    pgd_steps=2, epsilons=(8 / 255,), samples_per_class=1, sample_steps=2, samples_shown=1
)
RUN = ["classify", "--model", "gmmc", "--training", "joint", "--iterations", "8", "--seed", "2"]


def tiny_defaults(monkeypatch):
    """The command's defaults made tiny (the network, the sampler, the evaluation)."""
    small = {k: dict(v, **TINY) for k, v in training_module.DEFAULTS.items()}
    monkeypatch.setattr(training_module, "DEFAULTS", small)
    monkeypatch.setattr(classify_runs, "DEFAULT_EVALUATION", TINY_EVALUATION)
    monkeypatch.setattr(classify_runs, "CHECKPOINT_EVERY", 3)


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    tiny_defaults(monkeypatch)


def run_cli(*args) -> int:
    return main([*args, "--no-progress"])


def same_outcome(a: Path, b: Path):
    """The two run folders hold the same run: checkpoint, metrics and predictions bit for bit
    (times excepted)."""
    (arrays_a, meta_a), (arrays_b, meta_b) = (read_checkpoint(p / "checkpoint.npz") for p in (a, b))
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    assert {k: v for k, v in meta_a.items() if k != "seconds"} == {
        k: v for k, v in meta_b.items() if k != "seconds"
    }
    timeless = lambda m: {k: v for k, v in m.items() if not k.endswith("seconds")}
    metrics = [json.loads((p / "metrics.json").read_text()) for p in (a, b)]
    assert timeless(metrics[0]) == timeless(metrics[1])
    with np.load(a / "predictions.npz") as pa, np.load(b / "predictions.npz") as pb:
        assert sorted(pa.files) == sorted(pb.files)
        assert all(np.array_equal(pa[k], pb[k]) for k in pa.files)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (gmmc joint: both phases, the buffer, Adam); only read."""
    out = tmp_path_factory.mktemp("classify") / "reference"
    with pytest.MonkeyPatch.context() as patch:
        tiny_defaults(patch)
        assert run_cli(*RUN, "--out", str(out)) == 0
    return out


# --- the run folder, and what a finished run holds ---------------------------------------------


def test_a_run_writes_every_output_and_recomputable_metrics(reference):
    from refimpl.classify import metrics

    names = {p.name for p in reference.iterdir()}
    assert names >= {"config.json", "checkpoint.npz", "metrics.json", "predictions.npz"}
    assert names >= {"reliability.png", "samples.png", "ood.png"}
    stored = json.loads((reference / "metrics.json").read_text())
    assert list(stored)[:2] == ["accuracy", "ece"]  # fractions, first
    with np.load(reference / "predictions.npz") as p:
        assert p["probs"].shape == (451, 10) and p["labels"].shape == (451,)
        assert stored["accuracy"] == metrics.accuracy(p["probs"], p["labels"])
        assert stored["ece"] == metrics.expected_calibration_error(p["probs"], p["labels"], 20)
    record = json.loads((reference / "config.json").read_text())
    assert record["command"] == "classify" and record["config"]["iterations"] == 8
    assert record["config"]["pretrain_iterations"] == 4  # joint: the first half discriminative
    assert read_checkpoint(reference / "checkpoint.npz")[1]["iteration"] == 8


def test_rerunning_gives_a_fresh_folder_and_a_held_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["classify", "--model", "softmax", "--iterations", "2"]
    assert run_cli(*args) == 0 and run_cli(*args) == 0
    out = capsys.readouterr().out
    assert "run folder runs/classify-softmax-discriminative\n" in out
    assert "run folder runs/classify-softmax-discriminative-2\n" in out
    assert run_cli(*args, "--out", "runs/classify-softmax-discriminative") == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err


# --- stops and exact resume ---------------------------------------------------------------------


def saved_iteration(out: Path) -> int:
    return read_checkpoint(out / "checkpoint.npz")[1]["iteration"]


# (owner, attribute, failing call, boundary saved): the sampler runs before the commit of
# update 6 (the generative phase starts at 5); the buffer write opens that commit.
POINTS = {
    "sampler": (training_module, "staged_sampling", 2, 5),
    "commit": (training_module.ReplayBuffer, "write", 2, 5),
    "adam step": (training_module.optimizers, "adam_step", 3, 2),
}


@pytest.mark.parametrize("point", POINTS)
def test_interrupted_inside_an_update_resumes_to_the_uninterrupted_run(
    point, reference, tmp_path, monkeypatch, capsys
):
    owner, name, call, boundary = POINTS[point]
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_on_call(patch, owner, name, call)
        assert run_cli(*RUN, "--out", str(out)) == 130
    assert saved_iteration(out) == boundary
    assert not (out / "metrics.json").exists()
    assert f"--resume {out}" in capsys.readouterr().err
    assert run_cli("classify", "--resume", str(out)) == 0
    same_outcome(out, reference)


def test_negative_control_another_seed_is_another_run(reference, tmp_path):
    out = tmp_path / "other"
    assert run_cli(*RUN[:-2], "--seed", "3", "--out", str(out)) == 0
    with pytest.raises(AssertionError):
        same_outcome(out, reference)


def test_a_signal_finishes_the_update_then_saves(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        signal_on_call(patch, ClassifierTrainer, "step", 4, signal.SIGTERM)  # in update 4
        assert run_cli(*RUN, "--out", str(out)) == 143
    assert saved_iteration(out) == 4  # the update in progress was finished, then saved
    assert "SIGTERM: stopping after the current iteration" in capsys.readouterr().err
    assert run_cli("classify", "--resume", str(out)) == 0
    same_outcome(out, reference)


def test_a_signal_while_evaluating_keeps_the_trained_model(reference, tmp_path, monkeypatch):
    from refimpl.classify import experiment

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        signal_on_call(patch, experiment, "evaluate", 1, signal.SIGINT)
        assert run_cli(*RUN, "--out", str(out)) == 130
    assert saved_iteration(out) == 8 and not (out / "metrics.json").exists()
    assert run_cli("classify", "--resume", str(out)) == 0  # evaluates the saved model
    same_outcome(out, reference)


# the command as a process, every update slowed down so that a real signal lands mid-run
SLOW_CLI = """
import sys, time
sys.path.insert(0, sys.argv[1])
from test_classify_command import tiny_defaults
from refimpl.classify.training import ClassifierTrainer
class Patch:
    def setattr(self, owner, name, value):
        setattr(owner, name, value)
tiny_defaults(Patch())
real = ClassifierTrainer.step
def slow(self):
    record = real(self)
    time.sleep(0.2)
    return record
ClassifierTrainer.step = slow
from refimpl.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_real_sigterm_stops_a_real_run_resumably(reference, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    tests = str(Path(__file__).resolve().parent)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, tests, *RUN, "--out", str(out), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.npz").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # a few updates in
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err.decode()
    assert "SIGTERM: stopped; checkpoint of iteration" in err.decode()
    assert "Traceback" not in err.decode()
    assert 0 < saved_iteration(out) < 8
    assert run_cli("classify", "--resume", str(out)) == 0
    same_outcome(out, reference)


# --- bad input: exit status 2 and one line naming the problem --------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "lda"], "argument --model: invalid choice: 'lda'"),
        (["--training", "blend"], "argument --training: invalid choice: 'blend'"),
        (["--seed", "-1"], "--seed: must be a non-negative integer; got -1"),
        (["--iterations", "0"], "--iterations: must be a positive integer; got 0"),
    ],
)
def test_options_that_do_not_exist_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model", "jem", "--training", "discriminative"],
            "training 'discriminative' does "
            "not apply to model 'jem'; it takes generative, joint (JEM's discriminative part "
            "alone is --model softmax)",
        ),
        (
            ["--model", "softmax", "--training", "joint"],
            "training 'joint' does not apply to model 'softmax'; it takes discriminative, "
            "generative",
        ),
    ],
)
def test_a_training_mode_that_does_not_apply(args, message, tmp_path, capsys):
    assert run_cli("classify", *args, "--out", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"
    assert not (tmp_path / "x").exists()  # refused before the folder is made


def test_a_folder_in_use_is_refused(reference, capsys):
    with RunFolder.open(reference):  # another writer holds it
        assert run_cli("classify", "--resume", str(reference)) == 2
    assert f"{reference} is in use by another process (pid {os.getpid()}" in (
        capsys.readouterr().err
    )


@pytest.fixture
def stopped(tmp_path, monkeypatch):
    """A run stopped after 5 updates (a checkpoint with a buffer and Adam moments)."""
    out = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        fail_on_call(patch, ClassifierTrainer, "step", 6)
        assert run_cli(*RUN, "--out", str(out)) == 130
    assert saved_iteration(out) == 5
    return out


def refused(out: Path, message: str, capsys):
    assert run_cli("classify", "--resume", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err


def rewrite(out: Path, change):
    arrays, meta = read_checkpoint(out / "checkpoint.npz")
    change(arrays, meta)
    write_checkpoint(out / "checkpoint.npz", arrays, meta)


def test_the_stopped_fixture_resumes(stopped, reference):
    """The pristine copy resumes: what the damage tests below break is all that is wrong."""
    assert run_cli("classify", "--resume", str(stopped)) == 0
    same_outcome(stopped, reference)


def test_a_corrupt_checkpoint(stopped, capsys):
    path = stopped / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(stopped, "checkpoint.npz: is not a readable refimpl checkpoint", capsys)
    path.write_bytes(b"not a checkpoint at all")
    refused(stopped, "does not start like a zip archive", capsys)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, m: a.pop("buffer"), "arrays missing: buffer"),
        (lambda a, m: a.update(param_0_W=a["param_0_W"][:2]), "array 'param_0_W' has shape"),
        (lambda a, m: a.update(buffer=a["buffer"].astype(np.float32)), "has dtype float32"),
        (lambda a, m: a["param_1_b"].__setitem__(0, np.nan), "holds NaN or infinite values"),
        (lambda a, m: m.update(iteration=9), "meta 'iteration' is 9, outside 0..8"),
        (lambda a, m: m.update(iteration=4), "optimizer"),
        (lambda a, m: m["history"]["loss"].pop(), "history 'loss' must list one entry per"),
        (lambda a, m: m.pop("history"), "meta is missing history"),
        (lambda a, m: m.update(kind="learning"), "is not a classifier run's checkpoint"),
        (lambda a, m: m.update(n_train=10), "was made on 10 images"),
    ],
)
def test_an_inconsistent_checkpoint(stopped, change, message, capsys):
    rewrite(stopped, change)
    refused(stopped, message, capsys)


def test_a_checkpoint_of_another_run(stopped, tmp_path, capsys):
    other = tmp_path / "other"
    assert run_cli(*RUN[:-2], "--seed", "3", "--out", str(other)) == 0
    (stopped / "checkpoint.npz").write_bytes((other / "checkpoint.npz").read_bytes())
    refused(
        stopped,
        "config.json and checkpoint.npz disagree (seed: config.json 2, checkpoint.npz 3)",
        capsys,
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "command",
            "synthesize",
            "holds a 'synthesize' run, not a classify run; continue it "
            "with `python -m refimpl synthesize --resume",
        ),
        ("train", "0" * 64, "the bundled digits differ from those the run was started with"),
        ("checkpoint_every", 0, "'checkpoint_every' must be a positive integer"),
        ("config", {"model": "gmmc", "colour": 1}, "unknown classifier configuration keys"),
    ],
)
def test_an_edited_config_json(stopped, field, value, message, capsys):
    path = stopped / "config.json"
    record = json.loads(path.read_text())
    record[field] = value
    path.write_text(json.dumps(record))
    refused(stopped, message, capsys)


def test_an_edited_setting_disagrees_with_the_checkpoint(stopped, capsys):
    path = stopped / "config.json"
    record = json.loads(path.read_text())
    record["config"]["learning_rate"] = 0.1
    path.write_text(json.dumps(record))
    refused(
        stopped, "config.json and checkpoint.npz disagree (learning_rate: config.json 0.1", capsys
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "5"], "--seed 5 conflicts with the run in .* \\(seed = 2\\)"),
        (["--model", "jem"], "--model jem conflicts"),
        (["--iterations", "9"], "--iterations 9 conflicts"),
        (["--out", "elsewhere"], "--out does not apply with --resume"),
    ],
)
def test_resume_refuses_conflicting_options(stopped, args, message, capsys):
    import re

    assert run_cli("classify", "--resume", str(stopped), *args) == 2
    assert re.search(message, capsys.readouterr().err)


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    refused(tmp_path / "nothing", "does not exist", capsys)
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "is not a run folder (no config.json)", capsys)


# --- divergence ---------------------------------------------------------------------------------


def test_a_huge_learning_rate_exits_3_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    defaults = training_module.DEFAULTS
    key = ("jem", "generative")
    monkeypatch.setitem(defaults, key, dict(defaults[key], learning_rate=1e4))
    out = tmp_path / "run"
    assert run_cli("classify", "--model", "jem", "--iterations", "8", "--out", str(out)) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: training diverged: ") and "learning rate 10000" in err
    assert "The last good checkpoint is kept" in err
    arrays, meta = read_checkpoint(out / "checkpoint.npz")
    assert meta["iteration"] < 8 and all(np.isfinite(a).all() for a in arrays.values())
    assert not (out / "metrics.json").exists()


def test_the_default_learning_rate_does_not_diverge(tmp_path):
    """Negative control of the test above: the same run with the default rate finishes."""
    out = tmp_path / "run"
    assert run_cli("classify", "--model", "jem", "--iterations", "8", "--out", str(out)) == 0


# --- the relative divergence check ------------------------------------------------------------


def history(data, samples):
    return {"energy_data": list(data), "energy_samples": list(samples)}


def test_energy_band_is_the_quartiles_of_the_energies_with_samples():
    rng = np.random.default_rng(0)
    data, samples = rng.normal(-4, 0.3, 50), rng.normal(-4.2, 0.3, 50)
    h = history(list(data) + [99.0], list(samples) + [None])  # no samples: not in the band
    band = energy_band(h, start=10)
    assert band == pytest.approx(tuple(np.percentile(np.r_[data[10:], samples[10:]], [25, 75])))
    assert energy_band(history(data[:19], samples[:19])) is None  # too few to trust
    assert REFERENCE_ITERATIONS == 20
    assert excursion([-4.0], band) == 0.0
    width = band[1] - band[0]
    assert excursion([band[1] + 3 * width, -4.0], band) == pytest.approx(3.0)
    assert excursion([band[0] - 0.5 * width], band) == pytest.approx(0.5)


def tiny_trainer(**over):
    """JEM on 64 digits with the default network and a short sampler: 60 updates in a second."""
    from refimpl.classify.data import digits_split

    split = digits_split()
    config = ClassifierConfig(
        model="jem",
        training="generative",
        iterations=60,
        batch_size=16,
        chains=16,
        sampler_steps=5,
        buffer_size=160,
        sampler_step_size=1.0,
        sgld_noise=0.01,
        **over,
    )
    return ClassifierTrainer(config, split.train_images[:64], split.train_labels[:64])


def run_away_after(monkeypatch, update: int):
    """From ``update`` on, JEM's sampler drifts: each update its samples move further off the
    data (a sampler that went wrong mid-run, as JEM's did on the digits)."""
    real = training_module.sgld
    calls = []

    def drifting(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        drift = max(0, len(calls) - update) * 0.5
        return dataclasses.replace(result, samples=result.samples + drift)

    monkeypatch.setattr(training_module, "sgld", drifting)


def test_a_sampler_that_runs_away_is_stopped_by_the_relative_check(monkeypatch):
    trainer = tiny_trainer()
    run_away_after(monkeypatch, 40)
    with pytest.raises(DivergenceError, match=r"energies ran away .* widths outside the band"):
        while not trainer.finished:
            trainer.step()
    assert 40 <= trainer.iteration < 60  # stopped after the drift began, before the end
    energies = [abs(e) for e in trainer.history["energy_samples"]]
    assert max(energies) < training_module.ClassifierConfig.energy_limit  # absolute: blind


def test_negative_control_a_healthy_run_is_not_stopped():
    trainer = tiny_trainer()
    while not trainer.finished:
        trainer.step()
    band = energy_band(trainer.history, excursion_start(trainer.config))
    assert band is not None  # the check was armed for most of the run
    assert trainer.iteration == 60


def test_the_relative_check_can_be_turned_off(monkeypatch):
    trainer = tiny_trainer(excursion_limit=None)
    run_away_after(monkeypatch, 40)
    while not trainer.finished:
        trainer.step()
    assert EXCURSION_LIMIT == 10.0
