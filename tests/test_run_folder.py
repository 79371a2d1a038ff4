"""Fault injection: run folders under interruptions, damage, edits and concurrent writers.

Each test asserts the exact behaviour (refimpl/run_folder.py states the guarantees):

* a run stopped anywhere (an exception at a controlled point of a step, in its commit, in a
  checkpoint write; SIGINT, SIGTERM, a second signal, a signal during the emergency save;
  SIGKILL of a real process) leaves a checkpoint of an iteration boundary, and resuming it
  gives the uninterrupted run bit for bit;
* a damaged or inconsistent checkpoint, ``config.json`` or ``train.npy`` is refused with
  :class:`CorruptFile` (or a named disagreement), never a raw ``KeyError`` or
  ``BadZipFile``, and never by unpickling;
* one writer per folder, and a killed writer leaves no stale lock;
* every file has the same umask permissions; JSON files hold only finite numbers.

The reference is ``test_learning.uninterrupted(**SMALL)``: the tiny texture run (2 stages of
6 iterations, 4 chains, checkpoints every 2) learned without stopping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_learning import same_run, tiny_texture, uninterrupted

from refimpl.cli import main
from refimpl.convnet import ConvNet
from refimpl.learning import algorithm, optimizers, runs
from refimpl.learning.checkpoint import boundary_state, check_checkpoint
from refimpl.learning.trainer import Trainer
from refimpl.run_folder import (
    CorruptFile,
    FolderHoldsRun,
    FolderInUse,
    Interrupted,
    NonFiniteValue,
    NotARunFolder,
    RunFolder,
    RunFolderError,
    read_checkpoint,
    signals_deferred,
    write_checkpoint,
    write_json,
)

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(iterations_per_layer=6, checkpoint_every=2)
ADAM = dict(SMALL, optimizer="adam", learning_rate=[1e-3, 1e-3])


@pytest.fixture(scope="module")
def reference():
    return uninterrupted(**SMALL)


@pytest.fixture(scope="module")
def reference_adam():
    return uninterrupted(**ADAM)


def start(path, **overrides) -> runs.LearningRun:
    return runs.start_run(tiny_texture(**dict(SMALL, **overrides)), path)


def finish(path) -> Trainer:
    """Resume the folder and learn to the end (without writing outputs); the trainer."""
    with runs.resume_run(path) as run:
        return run.trainer.run()


def saved_iteration(path) -> int:
    return read_checkpoint(Path(path) / "checkpoint.npz")[1]["iteration"]


# --- interruptions at controlled points, in-process -----------------------------------------------


def fail_on_call(monkeypatch, owner, name: str, call: int, exception=KeyboardInterrupt):
    """Make ``owner.name`` raise ``exception`` on its ``call``-th call (1-based)."""
    real = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise exception()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


# (owner, attribute, failing call, last boundary): Langevin and the ascent step are computed
# before anything of the run changes; ConvNet.with_parameters opens the commit; growing the
# network (Trainer.enter_stage, at iteration 6) closes it, after the iteration count and the
# history were updated.
POINTS = {
    "langevin": (algorithm, "synthesize", 4, 3),
    "ascent step": (optimizers, "ascent_step", 4, 3),
    "commit starts": (ConvNet, "with_parameters", 4, 3),
    "commit grows the network": (Trainer, "enter_stage", 1, 5),
}


@pytest.mark.parametrize("point", POINTS)
def test_interruption_inside_a_step_saves_the_last_boundary(
    point, tmp_path, monkeypatch, reference
):
    owner, name, call, boundary = POINTS[point]
    with start(tmp_path / "run") as run:
        fail_on_call(monkeypatch, owner, name, call)
        with pytest.raises(KeyboardInterrupt):
            runs.execute(run, progress=False)
    monkeypatch.undo()
    assert saved_iteration(run.out) == boundary
    assert same_run(finish(run.out), reference)


def test_negative_control_a_half_committed_state_is_not_a_checkpoint(tmp_path, monkeypatch):
    """What the old save path wrote: the trainer as it was when growing failed."""
    config = tiny_texture(**SMALL)
    trainer = Trainer(config, runs.prepare(config)[0])
    fail_on_call(monkeypatch, Trainer, "enter_stage", 1)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    arrays, meta = boundary_state(trainer, 0.0)
    assert meta["iteration"] == 6 and meta["stage"] == 1  # counted, but not grown
    with pytest.raises(CorruptFile, match="stage 1 does not belong to iteration 6"):
        check_checkpoint(tmp_path / "half.npz", arrays, meta, trainer.data)


def signal_on_call(monkeypatch, call: int, *signums):
    """Send ``signums`` to this process during the ``call``-th Langevin synthesis."""
    real = algorithm.synthesize
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(algorithm, "synthesize", wrapper)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_iteration_then_saves(signum, status, tmp_path, monkeypatch, capsys):
    with start(tmp_path / "run") as run:
        signal_on_call(monkeypatch, 3, signum)
        with pytest.raises(Interrupted) as stopped:
            runs.execute(run, progress=False)
    assert stopped.value.exit_status == status and run.trainer.iteration == 3
    assert saved_iteration(run.out) == 3
    err = capsys.readouterr().err
    assert "stopping after the current iteration" in err
    assert f"--resume {run.out}" in err
    # the handlers are the previous ones again
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_abandons_the_iteration(tmp_path, monkeypatch, reference):
    with start(tmp_path / "run") as run:
        signal_on_call(monkeypatch, 3, signal.SIGTERM, signal.SIGINT)
        with pytest.raises(Interrupted) as stopped:
            runs.execute(run, progress=False)
    monkeypatch.undo()
    assert stopped.value.exit_status == 143  # the first signal decides
    assert saved_iteration(run.out) == 2
    assert same_run(finish(run.out), reference)


def test_signals_during_the_emergency_save_do_not_cut_it(tmp_path, monkeypatch, reference):
    """Ctrl-C, Ctrl-C, and a third while the checkpoint is being written."""
    real_savez = np.savez
    state = {}

    def savez_interrupted(stream, **payload):
        if state.get("armed"):
            os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        return real_savez(stream, **payload)

    monkeypatch.setattr(np, "savez", savez_interrupted)
    real = algorithm.synthesize

    def synthesize(*args, **kwargs):
        state["calls"] = state.get("calls", 0) + 1
        if state["calls"] == 4:
            state["armed"] = True
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(algorithm, "synthesize", synthesize)
    with start(tmp_path / "run") as run:
        with pytest.raises(Interrupted) as stopped:
            runs.execute(run, progress=False)
    monkeypatch.undo()
    assert stopped.value.exit_status == 130
    assert saved_iteration(run.out) == 3
    assert sorted(p.name for p in run.out.iterdir() if p.suffix == ".tmp") == []
    assert same_run(finish(run.out), reference)


def test_interruption_inside_a_checkpoint_write(tmp_path, monkeypatch, reference):
    """A KeyboardInterrupt while checkpoint 4 is half written: the previous one (2) stays
    until the emergency save writes 4 whole; no temporary file is left."""
    real_savez = np.savez
    calls = []

    def savez(stream, **payload):
        calls.append(1)
        if len(calls) == 2:  # the checkpoints of iterations 2, then 4 (its first write)
            stream.write(b"partial")
            assert saved_iteration(tmp_path / "run") == 2
            raise KeyboardInterrupt
        return real_savez(stream, **payload)

    with start(tmp_path / "run") as run:
        monkeypatch.setattr(np, "savez", savez)
        with pytest.raises(KeyboardInterrupt):
            runs.execute(run, progress=False)
    monkeypatch.undo()
    assert saved_iteration(run.out) == 4
    assert not [p for p in run.out.iterdir() if p.name.endswith(".tmp")]
    assert same_run(finish(run.out), reference)


def test_signals_are_held_during_a_write():
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done = True  # reached: the signal waited for the block to end
    assert done
    # negative control: without the deferral the signal interrupts at once
    reached = False
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        reached = True
    assert not reached


def test_stale_temporaries_are_removed_on_open(tmp_path):
    with start(tmp_path / "run") as run:
        pass
    stale = [run.out / "checkpoint.npz.a1b2c3d4.tmp", run.out / "checkpoint.npz.x_9kq2zz.tmp"]
    for path in stale:
        path.write_bytes(b"killed mid-write")
    keep = run.out / "notes.tmp"  # not a name atomic_write makes: not ours to delete
    keep.write_text("mine")
    with runs.resume_run(run.out):
        assert not any(p.exists() for p in stale) and keep.exists()


def test_a_run_killed_in_its_first_seconds_resumes(tmp_path, reference):
    """start_run writes the checkpoint of iteration 0 before any learning."""
    with start(tmp_path / "run") as run:
        assert saved_iteration(run.out) == 0
    assert same_run(finish(run.out), reference)
    # killed even earlier: config.json written, nothing else; the run starts at 0 again
    with start(tmp_path / "early") as run:
        pass
    (run.out / "checkpoint.npz").unlink()
    (run.out / "train.npy").unlink()
    assert same_run(finish(run.out), reference)


def test_summary_counts_the_learning_time_of_every_session(tmp_path, monkeypatch):
    clock = {"offset": 0.0}
    real = time.perf_counter
    monkeypatch.setattr(runs.time, "perf_counter", lambda: real() + clock["offset"])
    real_step = Trainer.step

    def slow_step(self, noise=None):  # the first session "takes" 100 s per iteration
        clock["offset"] += 100.0
        return real_step(self, noise)

    with start(tmp_path / "run") as run:
        monkeypatch.setattr(Trainer, "step", slow_step)
        runs.execute(run, progress=False, stop_after=3)
    monkeypatch.setattr(Trainer, "step", real_step)
    first = read_checkpoint(run.out / "checkpoint.npz")[1]["seconds"]
    assert 300 <= first < 360
    with runs.resume_run(run.out) as resumed:
        assert resumed.seconds == first
        summary = runs.execute(resumed, progress=False)
    assert first < summary["seconds"] < first + 60  # the second session is seconds long
    assert json.loads((run.out / "summary.json").read_text())["seconds"] == summary["seconds"]


# --- real signals to real processes ---------------------------------------------------------------

# the command line, with every learning step slowed down so that a signal lands mid-run
SLOW_CLI = """
import sys, time
from refimpl.learning import trainer
real = trainer.Trainer.step
def slow(self, noise=None):
    record = real(self, noise)
    time.sleep(float(sys.argv[1]))
    return record
trainer.Trainer.step = slow
from refimpl.cli import main
sys.exit(main(sys.argv[2:]))
"""
CLI_RUN = ["synthesize", "--preset", "object", "--size", "8", "--iterations", "4", "--seed", "1"]


def spawn(out, delay=0.25, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    args = [sys.executable, "-c", SLOW_CLI, str(delay), *CLI_RUN, "--out", str(out)]
    return subprocess.Popen(
        args + ["--no-progress", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_for(path: Path, process, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory):
    """The uninterrupted command-line run: its checkpoint's arrays and meta."""
    out = tmp_path_factory.mktemp("cli") / "reference"
    assert main([*CLI_RUN, "--out", str(out), "--no-progress"]) == 0
    return read_checkpoint(out / "checkpoint.npz")


def assert_same_checkpoint(path, reference):
    arrays, meta = read_checkpoint(path)
    ref_arrays, ref_meta = reference
    assert arrays.keys() == ref_arrays.keys()
    assert all(np.array_equal(arrays[k], ref_arrays[k]) for k in arrays)
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}
    assert drop(meta) == drop(ref_meta)


@pytest.mark.parametrize(
    "signum, status",
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
)
def test_a_real_signal_stops_a_real_run_resumably(signum, status, tmp_path, cli_reference):
    out = tmp_path / "run"
    process = spawn(out)
    wait_for(out / "checkpoint.npz", process)
    time.sleep(0.6)  # a few iterations in
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    text = err.decode()
    assert f"{signal.Signals(signum).name}: stopped; checkpoint of iteration" in text
    assert "Traceback" not in text
    assert 0 < saved_iteration(out) < 12
    assert main(["synthesize", "--resume", str(out), "--no-progress"]) == 0
    assert_same_checkpoint(out / "checkpoint.npz", cli_reference)


def test_sigkill_one_writer_and_no_stale_lock(tmp_path, cli_reference, capsys):
    """While a run works in a folder, nobody else may write it; SIGKILL frees the folder."""
    out = tmp_path / "run"
    process = spawn(out, 0.3)
    wait_for(out / "checkpoint.npz", process)
    assert main([*CLI_RUN, "--out", str(out), "--no-progress"]) == 2
    assert main(["synthesize", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count(f"{out} is in use by another process (pid {process.pid}") == 2
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    lost = 12 - saved_iteration(out)
    assert lost <= 12  # at most the iterations since the last checkpoint (checkpoint_every 50)
    assert main(["synthesize", "--resume", str(out), "--no-progress"]) == 0
    assert_same_checkpoint(out / "checkpoint.npz", cli_reference)


@pytest.mark.slow
def test_two_runs_started_into_one_folder(tmp_path):
    """Started together: one runs, the other is refused; the folder holds one run's files."""
    out = tmp_path / "run"
    first = spawn(out, 0.2, "--seed", "1")
    second = spawn(out, 0.2, "--seed", "2")
    results = [(p.wait(timeout=120), p.communicate()[1].decode()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another process" in refused or "already holds a run" in refused
    seed = json.loads((out / "config.json").read_text())["config"]["seed"]
    assert read_checkpoint(out / "checkpoint.npz")[1]["config"]["seed"] == seed
    assert json.loads((out / "summary.json").read_text())["iterations"] == 12


# --- damaged checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A run folder stopped at iteration 3 (Adam, so optimizer arrays are in the checkpoint)."""
    out = tmp_path_factory.mktemp("pristine") / "run"
    with runs.start_run(tiny_texture(**ADAM), out) as run:
        runs.execute(run, progress=False, stop_after=3)
    return out


@pytest.fixture
def folder(pristine, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def rewrite(folder, change):
    """Load the checkpoint, let ``change(arrays, meta)`` edit it, write it back (validly)."""
    path = folder / "checkpoint.npz"
    arrays, meta = read_checkpoint(path)
    change(arrays, meta)
    write_checkpoint(path, arrays, meta)


def refused(folder, message: str):
    with pytest.raises(
        CorruptFile, match=re.escape(str(folder / "checkpoint.npz")) + ".*" + message
    ):
        runs.resume_run(folder)


def test_pristine_folder_resumes_to_the_reference(folder, reference_adam):
    assert same_run(finish(folder), reference_adam)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "truncated or damaged"),
        (lambda b: b[:100], "truncated or damaged"),
        (lambda b: b"", "does not start like a zip archive"),
        (lambda b: np.random.default_rng(0).bytes(len(b)), "does not start like a zip archive"),
        (lambda b: b"PK\x03\x04" + b"\0" * 64, "truncated or damaged"),
    ],
    ids=["half", "100 bytes", "empty", "random bytes", "zip magic then zeros"],
)
def test_truncated_or_garbled_checkpoint(folder, damage, message):
    path = folder / "checkpoint.npz"
    path.write_bytes(damage(path.read_bytes()))
    refused(folder, message)


def test_flipped_bytes_are_refused_or_harmless(folder, reference_adam):
    """A flipped byte in the arrays or their headers fails the zip's CRC; one in the zip's
    bookkeeping that nothing reads (e.g. a timestamp) changes nothing. Never a wrong run."""
    path = folder / "checkpoint.npz"
    good = path.read_bytes()
    original = read_checkpoint(path)
    positions = np.random.default_rng(1).choice(len(good), 60, replace=False)
    outcomes = {"refused": 0, "harmless": 0}
    for position in sorted(positions) + [len(good) - 30, 40]:
        flipped = bytearray(good)
        flipped[position] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            with runs.resume_run(folder) as run:
                arrays, meta = read_checkpoint(path)
        except CorruptFile as exc:
            assert str(path) in str(exc)
            outcomes["refused"] += 1
            continue
        assert meta == original[1] and all(
            np.array_equal(arrays[k], original[0][k]) for k in arrays
        )
        assert run.trainer.iteration == 3
        outcomes["harmless"] += 1
    assert outcomes["refused"] > 40  # most bytes are data under a CRC


def test_pickled_objects_are_not_loaded(folder):
    path = folder / "checkpoint.npz"
    arrays, meta = read_checkpoint(path)
    arrays["chains"] = np.array([{"evil": 1}], dtype=object)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(CorruptFile, match="holds Python objects") as exc:
        runs.resume_run(folder)
    assert "allow_pickle" not in str(exc.value)


def test_a_zip_that_is_not_a_checkpoint(folder):
    with zipfile.ZipFile(folder / "checkpoint.npz", "w") as archive:
        archive.writestr("meta.npy", "not an array")
        archive.writestr("notes.txt", "hello")
    refused(folder, "truncated or damaged|is not an array")


def dtype_change(name, dtype):
    return lambda arrays, meta: arrays.update({name: arrays[name].astype(dtype)})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, m: a.pop("layer_0_W"), "arrays missing: layer_0_W"),
        (lambda a, m: a.pop("adam_0_W_v"), "arrays missing: adam_0_W_v"),
        (lambda a, m: a.update(extra=np.zeros(2)), "unexpected arrays: extra"),
        (lambda a, m: a.update(chains=a["chains"][:3]), r"'chains' has shape \(3, 1, 16, 16\); "),
        (lambda a, m: a.update(layer_0_W=a["layer_0_W"][:, :, :2]), "'layer_0_W' has shape"),
        (dtype_change("layer_0_W", np.int64), "'layer_0_W' has dtype int64; expected float64"),
        (dtype_change("layer_0_b", np.complex128), "dtype complex128; expected float64"),
        (dtype_change("chains", np.float32), "'chains' has dtype float32; expected float64"),
        (lambda a, m: a["chains"].__setitem__((0, 0, 0, 0), np.nan), "'chains' holds NaN"),
        (lambda a, m: m.pop("config"), "meta is missing config"),
        (lambda a, m: m.pop("seconds"), "meta is missing seconds"),
        (lambda a, m: m.update(extra=1), "unexpected entries extra"),
        (lambda a, m: m.update(iteration=13), "'iteration' is 13, outside 0..12"),
        (lambda a, m: m.update(iteration=3.0), "'iteration' must be an integer"),
        (lambda a, m: m.update(stage=3), "'stage' is 3, outside 1..2"),
        (lambda a, m: m.update(stage=0), "'stage' is 0, outside 1..2"),
        (lambda a, m: m.update(iteration=8), "stage 1 does not belong to iteration 8"),
        (lambda a, m: m.update(layers=2), "'layers' is 2, outside 1..1"),
        (lambda a, m: m.update(seconds=-1), "'seconds' must be a non-negative number"),
        (lambda a, m: m["optimizer"].update(kind="sgd"), "optimizer 'sgd' differs"),
        (lambda a, m: m["optimizer"]["steps"].update({"4": 3}), "layer '4', which the network"),
        (lambda a, m: m["optimizer"]["steps"].update({"0": 99}), "step count 99 of layer 0"),
        (lambda a, m: m["history"]["mismatch"].pop(), "history 'mismatch' must list one entry"),
        (lambda a, m: m["history"].pop("stage"), "history' must hold exactly"),
        (lambda a, m: m["config"].update(chains=3), "disagree"),
    ],
)
def test_inconsistent_checkpoint_content(folder, change, message):
    rewrite(folder, change)
    if message == "disagree":  # the checkpoint's config against config.json
        with pytest.raises(
            RunFolderError, match=r"config.json and checkpoint.npz disagree \(chains"
        ):
            runs.resume_run(folder)
        return
    refused(folder, message)


@pytest.mark.parametrize(
    "meta_entry, message",
    [
        (np.array("{not json"), "'meta' entry is not valid JSON"),
        (np.array("[1, 2]"), "'meta' entry must be a JSON object"),
        (np.arange(3.0), "'meta' entry is not a JSON text"),
    ],
)
def test_meta_entry_damaged(folder, meta_entry, message):
    path = folder / "checkpoint.npz"
    arrays, _ = read_checkpoint(path)
    np.savez(path, meta=meta_entry, **arrays)
    refused(folder, message)


def test_damaged_checkpoint_through_the_cli(folder, capsys):
    path = folder / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:-200])
    assert main(["synthesize", "--resume", str(folder), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1 and "Traceback" not in err


# --- edited config.json, foreign checkpoints, replaced images -------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("image", "grass"), ("seed", 4), ("iterations_per_layer", 20), ("learning_rate", [1, 1])],
)
def test_edited_config_json_is_refused_naming_the_field(folder, field, value):
    record = json.loads((folder / "config.json").read_text())
    before = record["config"][field]
    record["config"][field] = value
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(RunFolderError, match="disagree") as exc:
        runs.resume_run(folder)
    assert f"{field}: config.json {value!r}, checkpoint.npz {before!r}" in str(exc.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"config.json: is not valid JSON \(line 1, column 2"),
        ("[1]", "config.json: must hold a JSON object; it holds a list"),
        ('{"command": "synthesize", "train": ""}', "config.json: its config is invalid"),
    ],
)
def test_config_json_unreadable(folder, text, message):
    (folder / "config.json").write_text(text)
    with pytest.raises(CorruptFile, match=message):
        runs.resume_run(folder)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("seed", "3", "seed must be an integer; got '3'"),
        ("digit", 42, "digit must be a digit class 0-9"),
        ("clip", -1.0, "clip must be None or a positive"),
        ("sgima", 1.0, "unknown setting"),
    ],
)
def test_config_json_wrong_type_or_value(folder, field, value, message):
    record = json.loads((folder / "config.json").read_text())
    record["config"][field] = value
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(CorruptFile, match="config.json: its config is invalid: " + message):
        runs.resume_run(folder)


def test_checkpoint_of_another_preset_is_refused(folder, tmp_path):
    """A digits run's checkpoint copied over the texture run's."""
    other = runs.start_run(
        tiny_texture(dataset="digit-classes", images=4, size=8, spec=[(4, 3), (4, 3)]),
        tmp_path / "digits",
    )
    other.close()
    shutil.copy(other.out / "checkpoint.npz", folder / "checkpoint.npz")
    with pytest.raises(
        RunFolderError, match="disagree .*dataset: config.json 'texture', checkpoint"
    ):
        runs.resume_run(folder)


def test_replaced_training_images_are_refused(folder):
    train = np.load(folder / "train.npy")
    np.save(folder / "train.npy", train[..., ::-1].copy())  # same shape, other images
    with pytest.raises(CorruptFile, match="train.npy: the training images differ"):
        runs.resume_run(folder)
    np.save(folder / "train.npy", train[:, :, :8])
    with pytest.raises(CorruptFile, match=r"train.npy: array 'train' has shape \(1, 1, 8, 16\)"):
        runs.resume_run(folder)
    (folder / "train.npy").unlink()
    with pytest.raises(CorruptFile, match="train.npy: is missing"):
        runs.resume_run(folder)


def test_changed_image_file_before_the_first_checkpoint_is_refused(tmp_path):
    import matplotlib.pyplot as plt

    image = tmp_path / "mine.png"
    plt.imsave(image, np.random.default_rng(0).uniform(size=(32, 32)), cmap="gray")
    with start(tmp_path / "run", image=str(image), factor=1) as run:
        pass
    (run.out / "checkpoint.npz").unlink()
    (run.out / "train.npy").unlink()
    plt.imsave(image, np.random.default_rng(1).uniform(size=(32, 32)), cmap="gray")
    with pytest.raises(CorruptFile, match="training images differ .*'.*mine.png' changed since"):
        runs.resume_run(run.out)


def test_a_run_is_resumed_by_its_own_command(folder):
    with pytest.raises(RunFolderError, match="holds a synthesize run; continue it with"):
        runs.resume_run(folder, command="reconstruct")


# --- extending a run ------------------------------------------------------------------------------


def test_extending_a_run_that_does_not_grow_is_exact(tmp_path):
    """A finished 5-iteration run continued to 10 equals a 10-iteration run."""
    short = dict(grow=False, spec=[(4, 3, 1, 0)], learning_rate=1e-3, init_std=0.01)
    with start(tmp_path / "run", iterations_per_layer=5, **short) as run:
        run.save(boundary_state(run.trainer.run(), 0.0))  # finished (outputs are not needed)
    with runs.resume_run(run.out) as resumed:
        runs.extend(resumed, 10)
        resumed.trainer.run()
    assert json.loads((run.out / "config.json").read_text())["config"]["iterations_per_layer"] == 10
    assert same_run(resumed.trainer, uninterrupted(**dict(SMALL, iterations_per_layer=10, **short)))
    assert not same_run(
        resumed.trainer, uninterrupted(**dict(SMALL, iterations_per_layer=5, **short))
    )


def test_extending_is_refused_where_the_layers_grew_elsewhere(folder, tmp_path):
    with runs.resume_run(folder) as run:  # iteration 3 of 6 per layer: still in stage 1
        runs.extend(run, 4)  # stage 1 until 4: the same run so far
        with pytest.raises(ValueError, match="has done 3 iterations, more than the 2 of 1"):
            runs.extend(run, 1)
    with start(tmp_path / "grown") as run:
        runs.execute(run, progress=False, stop_after=7)  # in stage 2 since iteration 6
        with pytest.raises(ValueError, match="after 6 iterations it was in stage 2, where a run"):
            runs.extend(run, 8)


# --- the folder: lock, paths, permissions, JSON ---------------------------------------------------


def test_one_writer_per_folder_in_process(tmp_path):
    record = {"command": "x"}
    with RunFolder.create(tmp_path / "a", record):
        with pytest.raises(FolderInUse, match=f"in use by another process \\(pid {os.getpid()}"):
            RunFolder.open(tmp_path / "a")
    with RunFolder.open(tmp_path / "a") as folder:  # released by close
        assert folder.record == record


def test_a_folder_holding_a_run_or_other_files(tmp_path):
    with RunFolder.create(tmp_path / "a", {}):
        pass
    with pytest.raises(FolderHoldsRun, match="already holds a run; continue it with --resume"):
        RunFolder.create(tmp_path / "a", {})
    with RunFolder.create(tmp_path / "a", {}, fresh_name=True) as fresh:
        assert fresh.path == tmp_path / "a-2"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "holiday.jpg").write_bytes(b"")
    with pytest.raises(FolderHoldsRun, match=r"already holds other files \(holiday.jpg\)"):
        RunFolder.create(tmp_path / "b", {})
    (tmp_path / "c").mkdir()
    RunFolder.create(tmp_path / "c", {}).close()  # an empty folder is fine


def test_bad_folder_paths(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match="file is a file"):
        RunFolder.create(tmp_path / "file" / "run", {})
    with pytest.raises(RunFolderError, match="it is a file, not a folder"):
        RunFolder.create(tmp_path / "file", {})
    for empty in ("", "  "):
        with pytest.raises(RunFolderError, match="path is empty"):
            RunFolder.create(empty, {})
        with pytest.raises(RunFolderError, match="path is empty"):
            RunFolder.open(empty)
    with pytest.raises(NotARunFolder, match="does not exist"):
        RunFolder.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotARunFolder, match=r"is not a run folder \(no config.json\)"):
        RunFolder.open(tmp_path / "empty")

    def no_permission(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", no_permission)
    with pytest.raises(RunFolderError, match="no permission to write in"):
        RunFolder.create(tmp_path / "new", {})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_folder(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(RunFolderError, match="no permission to write in"):
            RunFolder.create(parent / "run", {})
    finally:
        parent.chmod(0o755)


@pytest.mark.parametrize(
    "umask, mode", [(0o022, 0o644), pytest.param(0o027, 0o640, marks=pytest.mark.slow)]
)
def test_every_file_has_the_same_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with start(tmp_path / "run", iterations_per_layer=2) as run:
            runs.execute(run, progress=False)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.out.iterdir()}
    assert "checkpoint.npz" in modes and len(modes) == 9
    assert set(modes.values()) == {mode}, modes


def test_json_files_hold_only_finite_numbers(tmp_path):
    with pytest.raises(NonFiniteValue, match=r"non-finite number nan at a.b\[1\]"):
        write_json(tmp_path / "x.json", {"a": {"b": [1.0, float("nan")]}})
    assert not (tmp_path / "x.json").exists()
    write_json(tmp_path / "x.json", {"a": {"b": [1.0, 2.0]}})  # negative control
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": {"b": [1.0, 2.0]}}


def test_a_run_without_a_finite_summary_fails_with_a_message(tmp_path):
    with start(tmp_path / "run") as run:
        run.trainer.step()
        run.trainer.history["mismatch"][-1] = [float("inf")]  # as if H_obs had vanished
        with pytest.raises(
            NonFiniteValue, match=r"summary.json would hold .* inf at final_mismatch\[0\]"
        ):
            runs.write_outputs(run)
    written = {p.name for p in run.out.iterdir()}
    assert written == {".lock", "config.json", "train.npy", "checkpoint.npz"}  # no outputs


def test_writes_outside_the_main_thread_still_work(tmp_path):
    """Signals cannot be held there (Python runs handlers in the main thread): no deferral."""
    import threading

    errors = []
    thread = threading.Thread(
        target=lambda: errors.append(write_json(tmp_path / "t.json", {"a": 1}) and None)
    )
    thread.start()
    thread.join()
    assert errors == [None] and json.loads((tmp_path / "t.json").read_text()) == {"a": 1}
