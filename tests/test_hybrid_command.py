"""``python -m refimpl hybrid``: the digits sweep (blend, resume, outputs) and the run folders.

* The blend's ends are the pure trainings: ``lambda = 1`` follows Dai, Lu & Wu's generative
  training and ``lambda = 0`` cross-entropy, bit for bit; ``lambda = 0.5`` is neither (the
  negative control). (The blend's gradient is checked by finite differences with every other
  training mode in ``test_classify.py``.)
* The labelled sets are stratified, fixed by the seed, and drawn from the training split.
* The sweep stopped anywhere (inside an update, at an evaluation, by a signal) resumes to the
  uninterrupted sweep's results bit for bit; its metrics are the runs' numbers summarised.
* Bad input exits 2 with one line naming the problem; a diverging sweep exits 3 and keeps
  its last good checkpoint; the toy writes its figures and ``metrics.json`` and, stopped, is
  run again by ``--resume``.

Everything runs tiny (a small network, 3 updates a run, a small test of the sampler), so that
each test takes a few seconds.
"""

from __future__ import annotations

import json
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from faults import fail_on_call, signal_on_call

from refimpl.classify import training as training_module
from refimpl.classify.data import digits_split
from refimpl.classify.training import ClassifierConfig, ClassifierTrainer
from refimpl.cli import hybrid as hybrid_cli
from refimpl.cli import main
from refimpl.hybrid import digits, experiment
from refimpl.hybrid.digits import DigitsSettings, DigitsSweep, labelled_set
from refimpl.run_folder import read_checkpoint, write_checkpoint

SMALL = dict(
    labelled_per_class=2,
    lambdas=(1.0, 0.5, 0.0),
    sample_lambdas=(1.0, 0.0),
    iterations=3,
    spec=((4, 3, 1, 1), (8, 3, 2, 1), (10, 4, 1, 0)),
    langevin_steps=2,
    buffer_size=200,
    samples_per_class=1,
    sample_steps=2,
    checkpoint_every=2,
)


COMMAND_SETTINGS = hybrid_cli.digits_settings


def small_settings(args):
    """What the command makes of its options, shrunk: the seeds and updates are kept."""
    full = COMMAND_SETTINGS(args)
    return DigitsSettings(**dict(SMALL, seeds=full.seeds, iterations=full.iterations))


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setattr(hybrid_cli, "digits_settings", small_settings)
    toy = experiment.ToySettings(
        test_per_class=500, alphas=(0.0, 0.5, 1.0), lambdas=(1.0, 0.05, 0.0)
    )
    monkeypatch.setattr(hybrid_cli, "run_toy", partial(experiment.run_toy, settings=toy))


def run_cli(*args) -> int:
    return main(["hybrid", *args, "--no-progress"])


DIGITS = ["--digits", "--seeds", "2", "--iterations", "3", "--seed", "4"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted tiny sweep (2 seeds x 3 lambdas); only read."""
    out = tmp_path_factory.mktemp("hybrid") / "reference"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hybrid_cli, "digits_settings", small_settings)
        assert run_cli(*DIGITS, "--out", str(out)) == 0
    return out


def timeless(value):
    """``value`` without its timings (which differ between runs)."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def same_sweep(a: Path, b: Path):
    metrics = [json.loads((p / "metrics.json").read_text()) for p in (a, b)]
    assert timeless(metrics[0]) == timeless(metrics[1])
    (arrays_a, _), (arrays_b, _) = (read_checkpoint(p / "checkpoint.npz") for p in (a, b))
    assert sorted(arrays_a) == sorted(arrays_b)
    assert all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)


# --- the blend and the labelled sets -------------------------------------------------------------


def blend_trainer(training, **over):
    images, labels = labelled_set(1, 2)
    config = ClassifierConfig(
        model="softmax",
        training=training,
        seed=1,
        spec=[list(s) for s in SMALL["spec"]],
        iterations=4,
        batch_size=20,
        langevin_steps=2,
        buffer_size=200,
        **over,
    )
    trainer = ClassifierTrainer(config, images, labels)
    for _ in range(4):
        trainer.step()
    return trainer


def parameters(trainer):
    return [a for pair in trainer.final_model().parameters() for a in pair]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(parameters(a), parameters(b), strict=True))


def test_the_blends_ends_are_the_pure_trainings():
    generative = blend_trainer("generative")
    discriminative = blend_trainer("discriminative")
    assert same(blend_trainer("blend", blend_lambda=1.0), generative)
    assert same(blend_trainer("blend", blend_lambda=0.0), discriminative)
    middle = blend_trainer("blend", blend_lambda=0.5)  # negative control: neither end
    assert not same(middle, generative) and not same(middle, discriminative)
    assert middle.history["phase"] == ["blend"] * 4


def test_labelled_sets_are_stratified_fixed_and_from_the_training_split():
    split = digits_split()
    train_rows = {(x.tobytes(), int(y)) for x, y in zip(split.train_images, split.train_labels)}
    images, labels = labelled_set(3, 5)
    assert np.array_equal(np.bincount(labels, minlength=10), [5] * 10)
    assert all((x.tobytes(), int(y)) in train_rows for x, y in zip(images, labels))
    again, _ = labelled_set(3, 5)
    other, _ = labelled_set(4, 5)
    assert np.array_equal(images, again) and not np.array_equal(images, other)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="sample_lambdas \\[0.3\\] are not among the lambdas"):
        DigitsSettings(sample_lambdas=(0.3,))
    with pytest.raises(ValueError, match="lambdas must be at least two numbers in \\[0, 1\\]"):
        DigitsSettings(lambdas=(1.5, 0.0), sample_lambdas=())
    with pytest.raises(ValueError, match="labelled_per_class 500 is more than the"):
        DigitsSettings(labelled_per_class=500)
    with pytest.raises(ValueError, match="seeds must be distinct non-negative integers"):
        DigitsSettings(seeds=(1, 1))
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
        DigitsSettings(learning_rate=-1.0)


# --- the sweep: exact resume, and what it writes --------------------------------------------------


def test_a_sweep_resumed_from_any_boundary_equals_the_uninterrupted_one(tmp_path):
    settings = DigitsSettings(**dict(SMALL, seeds=(0,), lambdas=(1.0, 0.0), sample_lambdas=(1.0,)))
    straight = DigitsSweep(settings)
    steps = 0
    while not straight.finished:
        straight.step()
        steps += 1
    assert steps == 2 * (3 + 1)  # per run: 3 updates and an evaluation
    for stop in (1, 3, 4, 5):  # mid-run, before an evaluation, after one, in the next run
        sweep = DigitsSweep(settings)
        for _ in range(stop):
            sweep.step()
        path = tmp_path / f"c{stop}.npz"
        write_checkpoint(path, *sweep.state())
        resumed = DigitsSweep.from_state(path, *read_checkpoint(path), settings)
        while not resumed.finished:
            resumed.step()
        assert timeless(resumed.results) == timeless(straight.results), stop
        assert np.array_equal(resumed.samples[0], straight.samples[0])


def test_the_sweep_writes_its_figures_and_summarised_metrics(reference):
    names = {p.name for p in reference.iterdir()}
    assert {"config.json", "checkpoint.npz", "metrics.json", "error_vs_lambda.png"} <= names
    assert {"samples_lambda_1.png", "samples_lambda_0.png"} <= names
    assert "samples_lambda_0.5.png" not in names  # not a sampled lambda here
    metrics = json.loads((reference / "metrics.json").read_text())
    runs = metrics["runs"]
    assert [(r["seed"], r["lam"]) for r in runs] == [
        (s, lam) for s in (4, 5) for lam in (1.0, 0.5, 0.0)
    ]
    accuracy = np.array([r["accuracy"] for r in runs]).reshape(2, 3)
    ece = np.array([r["ece"] for r in runs]).reshape(2, 3)
    assert metrics["error"]["lambda"] == [1.0, 0.5, 0.0]
    np.testing.assert_allclose(metrics["error"]["error_mean"], 1 - accuracy.mean(0), rtol=1e-15)
    np.testing.assert_allclose(metrics["ece"]["error_mean"], ece.mean(0), rtol=1e-15)
    difference = (1 - accuracy[:, 1]) - (1 - accuracy[:, 0])  # paired, against lambda = 1
    np.testing.assert_allclose(
        metrics["error"]["minus_generative_mean"][1], difference.mean(), rtol=1e-12, atol=1e-15
    )
    assert all(0 <= r["ece"] <= 1 and 0 <= r["accuracy"] <= 1 for r in runs)


@pytest.mark.parametrize(
    "owner, name, call",
    [
        (ClassifierTrainer, "step", 5),  # in the second run
        (digits, "evaluate", 2),  # at the second run's evaluation
        (training_module, "class_node_langevin", 4),  # inside a Langevin update
    ],
)
def test_a_stopped_sweep_resumes_to_the_uninterrupted_one(
    owner, name, call, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_on_call(patch, owner, name, call)
        assert run_cli(*DIGITS, "--out", str(out)) == 130
    assert f"python -m refimpl hybrid --resume {out}" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()
    assert run_cli("--resume", str(out)) == 0
    same_sweep(out, reference)


def test_negative_control_another_first_seed_is_another_sweep(reference, tmp_path):
    out = tmp_path / "other"
    assert run_cli(*DIGITS[:-1], "5", "--out", str(out)) == 0
    with pytest.raises(AssertionError):
        same_sweep(out, reference)


def test_a_signal_stops_the_sweep_after_the_step_in_progress(reference, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        signal_on_call(patch, ClassifierTrainer, "step", 2, signal.SIGINT)
        assert run_cli(*DIGITS, "--out", str(out)) == 130
    meta = read_checkpoint(out / "checkpoint.npz")[1]
    assert meta["results"] == [] and meta["current"]["iteration"] == 2
    assert run_cli("--resume", str(out)) == 0
    same_sweep(out, reference)


def test_a_diverging_sweep_exits_3_and_keeps_its_last_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(
        hybrid_cli,
        "digits_settings",
        lambda args: DigitsSettings(**dict(SMALL, learning_rate=1e4)),
    )
    out = tmp_path / "run"
    assert run_cli("--digits", "--out", str(out)) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: training diverged: ") and "learning rate 10000" in err
    meta = read_checkpoint(out / "checkpoint.npz")[1]
    assert meta["results"] == [] and not (out / "metrics.json").exists()


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "error: choose --toy or --digits (or --resume DIR)"),
        (["--digits", "--draws", "5"], "error: --draws does not apply to --digits"),
        (["--toy", "--seeds", "2"], "error: --seeds does not apply to --toy"),
        (["--toy", "--iterations", "2"], "error: --iterations does not apply to --toy"),
    ],
)
def test_options_that_do_not_apply(args, message, tmp_path, capsys):
    assert run_cli(*args, "--out", str(tmp_path / "x")) == 2
    assert capsys.readouterr().err == message + "\n"
    assert not (tmp_path / "x").exists()


def test_toy_and_digits_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["hybrid", "--toy", "--digits"])
    assert exit_info.value.code == 2
    assert "argument --digits: not allowed with argument --toy" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "0"], "--seed 0 conflicts with the run in .* \\(seed = 4\\)"),
        (["--iterations", "5"], "--iterations 5 conflicts"),
        (["--toy"], "--toy conflicts with the run in .*, which is no toy run"),
        (["--draws", "3"], "--draws does not apply to --digits"),
    ],
)
def test_resume_refuses_what_conflicts(args, message, reference, capsys):
    import re

    assert run_cli("--resume", str(reference), *args) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_damaged_sweep_checkpoint_is_refused(reference, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    arrays, meta = read_checkpoint(out / "checkpoint.npz")
    write_checkpoint(out / "checkpoint.npz", arrays, dict(meta, results=meta["results"][::-1]))
    assert run_cli("--resume", str(out)) == 2
    assert "result 0 is not that of seed 4, lambda 1" in capsys.readouterr().err
    arrays.pop("samples_0")
    write_checkpoint(out / "checkpoint.npz", arrays, meta)
    assert run_cli("--resume", str(out)) == 2
    assert "arrays missing: samples_0" in capsys.readouterr().err


def test_resume_of_another_commands_folder(tmp_path, capsys):
    from refimpl.run_folder import RunFolder

    out = tmp_path / "classify"
    RunFolder.create(out, dict(command="classify")).close()
    assert run_cli("--resume", str(out)) == 2
    assert "holds a 'classify' run, not a digits sweep" in capsys.readouterr().err


# --- the toy --------------------------------------------------------------------------------------


def test_the_toy_writes_its_folder_and_is_run_again_on_resume(tmp_path, capsys):
    out = tmp_path / "toy"
    assert run_cli("--toy", "--draws", "2", "--seed", "3", "--out", str(out)) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "boundaries.png", "error_vs_alpha.png", "metrics.json"} <= names
    record = json.loads((out / "config.json").read_text())
    assert (record["command"], record["seed"], record["draws"]) == ("hybrid --toy", 3, 2)
    first = json.loads((out / "metrics.json").read_text())
    assert first["draws"] == 2 and first["seed"] == 3
    assert "Bayes error 0.0529" in capsys.readouterr().out
    assert run_cli("--resume", str(out)) == 0  # run again: the same numbers
    assert timeless(json.loads((out / "metrics.json").read_text())) == timeless(first)
    assert run_cli("--resume", str(out), "--draws", "3") == 2
    assert "--draws 3 conflicts with the run" in capsys.readouterr().err
    assert run_cli("--resume", str(out), "--digits") == 2
    assert "--digits conflicts with the run in" in capsys.readouterr().err


def test_a_stopped_toy_says_it_keeps_no_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "toy"
    with monkeypatch.context() as patch:
        signal_on_call(patch, experiment, "toy_draw", 1, signal.SIGTERM)
        assert run_cli("--toy", "--draws", "2", "--out", str(out)) == 143
    err = capsys.readouterr().err
    assert "SIGTERM: stopped; the toy sweep keeps no checkpoint" in err
    assert not (out / "metrics.json").exists()
    assert run_cli("--resume", str(out)) == 0 and (out / "metrics.json").is_file()
