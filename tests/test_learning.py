"""Learning (Algorithm 1, CD, growing, checkpoints) on tiny problems, seconds each.

Covers: learning lowers the moment mismatch; CD lowers the reconstruction error; a resumed run
equals the uninterrupted one bit for bit; divergence is caught and keeps the last good
checkpoint; Ctrl-C checkpoints; growing and freezing; the optimizers; atomic checkpoints;
and the errors a user meets (wrong path, unreadable image, image too small, colour/gray
mismatch on resume).
"""

import json

import numpy as np
import pytest

from refimpl.learning import (
    DivergenceError,
    LearningConfig,
    Trainer,
    load_checkpoint,
    optimizers,
    runs,
    save_checkpoint,
)
from refimpl.learning.presets import PRESETS, preset_config


def tiny_texture(**overrides):
    values = dict(
        dataset="texture",
        image="brick",
        size=16,
        factor=16,
        spec=[(4, 3, 1, 0), (4, 3, 1, 0)],
        iterations_per_layer=15,
        chains=4,
        langevin_steps=5,
        step_size=0.3,
        sigma=1.0,
        learning_rate=[1e-3, 1e-4],
        init_std=[0.01, "he"],
        checkpoint_every=5,
        seed=3,
    )
    values.update(overrides)
    return LearningConfig(**values)


def tiny_trainer(**overrides):
    config = tiny_texture(**overrides)
    data, _, _ = runs.prepare(config)
    return Trainer(config, data)


def parameters_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y)
        for pa, pb in zip(a.net.parameters(), b.net.parameters())
        for x, y in zip(pa, pb)
    )


# --- learning does what it should ----------------------------------------------------------


def test_learning_lowers_the_moment_mismatch():
    trainer = tiny_trainer(
        spec=[(6, 3, 1, 0)], grow=False, iterations_per_layer=40, learning_rate=1e-2
    )
    trainer.run()
    mismatch = [m[0] for m in trainer.history["mismatch"]]
    # the mismatch starts near 1 (samples unlike data) and must fall clearly
    assert np.mean(mismatch[-5:]) < 0.5 * np.mean(mismatch[:5])


def test_negative_control_no_learning_no_lower_mismatch():
    trainer = tiny_trainer(
        spec=[(6, 3, 1, 0)], grow=False, iterations_per_layer=40, learning_rate=0.0
    )
    trainer.run()
    mismatch = [m[0] for m in trainer.history["mismatch"]]
    assert not np.mean(mismatch[-5:]) < 0.5 * np.mean(mismatch[:5])


def cd_trainer(rate):
    config = LearningConfig(
        dataset="digit-classes",
        images=6,
        size=8,
        method="cd",
        grow=False,
        spec=[(8, 3, 1, 1), (8, 3, 1, 1)],
        iterations_per_layer=60,
        langevin_steps=1,
        step_size=0.3,
        learning_rate=rate,
        init_std=[0.01, "he"],
        seed=1,
    )
    data, _, _ = runs.prepare(config)
    return Trainer(config, data)


def test_contrastive_divergence_lowers_the_reconstruction_error():
    trainer = cd_trainer(1e-2)
    before = trainer.relative_reconstruction_error()
    trainer.run()
    assert len(trainer.chains) == 6  # CD: one chain per observed image
    assert trainer.relative_reconstruction_error() < 0.7 * before


def test_negative_control_cd_without_learning_does_not_reconstruct():
    trainer = cd_trainer(0.0)
    before = trainer.relative_reconstruction_error()
    trainer.run()
    assert not trainer.relative_reconstruction_error() < 0.7 * before


# --- resume -------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_equals_uninterrupted(optimizer, tmp_path):
    """Stop mid-run (across a growing stage), rebuild from the checkpoint, finish: same bits."""
    straight = tiny_trainer(optimizer=optimizer)
    straight.run()
    first = tiny_trainer(optimizer=optimizer)
    first.run(iterations=11)  # stage 1 ends at 15
    arrays, meta = first.state()
    save_checkpoint(tmp_path / "ck.npz", arrays, meta)
    arrays, meta = load_checkpoint(tmp_path / "ck.npz")
    data, _, _ = runs.prepare(first.config)
    resumed = Trainer.from_state(arrays, meta, data)
    resumed.run()
    assert resumed.iteration == straight.iteration == 30
    assert parameters_equal(resumed, straight)
    assert np.array_equal(resumed.chains, straight.chains)
    assert resumed.history == json.loads(json.dumps(straight.history))


def test_negative_control_resume_check_sees_a_different_seed():
    a, b = tiny_trainer(), tiny_trainer(seed=4)
    a.run(), b.run()
    assert not parameters_equal(a, b)


def test_resume_through_the_run_folder(tmp_path):
    """The CLI path: start, stop after some iterations, resume the folder, finish."""
    config = tiny_texture()
    trainer, mean, raw, out = runs.start_run(config, tmp_path / "run")
    runs.execute(trainer, mean, raw, out, "synthesize", progress=False, stop_after=7)
    resumed, mean, raw, out, command = runs.resume_run(tmp_path / "run")
    assert resumed.iteration == 7
    runs.execute(resumed, mean, raw, out, command, progress=False)
    straight = tiny_trainer()
    straight.run()
    assert parameters_equal(resumed, straight)
    for name in (
        "samples.npy",
        "train.npy",
        "reconstructions.npy",
        "samples.png",
        "curves.png",
        "summary.json",
        "checkpoint.npz",
        "config.json",
    ):
        assert (out / name).is_file(), name
    samples = np.load(out / "samples.npy")
    assert samples.shape == (config.chains, 1, 16, 16)
    assert np.load(out / "train.npy").shape == (1, 1, 16, 16)


def test_a_run_folder_is_not_overwritten(tmp_path):
    config = tiny_texture()
    trainer, mean, raw, out = runs.start_run(config, tmp_path / "run")
    runs.execute(trainer, mean, raw, out, "synthesize", progress=False, stop_after=2)
    with pytest.raises(FileExistsError, match="--resume"):
        runs.start_run(config, tmp_path / "run")


# --- Ctrl-C and divergence ---------------------------------------------------------------------


def test_ctrl_c_saves_a_checkpoint(tmp_path, monkeypatch, capsys):
    config = tiny_texture()
    trainer, mean, raw, out = runs.start_run(config, tmp_path / "run")
    real_step = trainer.step

    def step_then_interrupt():
        record = real_step()
        if trainer.iteration == 3:
            raise KeyboardInterrupt
        return record

    monkeypatch.setattr(trainer, "step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        runs.execute(trainer, mean, raw, out, "synthesize", progress=False)
    _, meta = load_checkpoint(out / "checkpoint.npz")
    assert meta["iteration"] == 3
    assert "--resume" in capsys.readouterr().err


def test_divergence_is_caught_and_the_last_good_checkpoint_kept(tmp_path):
    config = tiny_texture(learning_rate=[1e3, 1e3], checkpoint_every=1)
    trainer, mean, raw, out = runs.start_run(config, tmp_path / "run")
    with pytest.raises(DivergenceError, match="learning rate"):
        runs.execute(trainer, mean, raw, out, "synthesize", progress=False)
    arrays, meta = load_checkpoint(out / "checkpoint.npz")
    assert meta["iteration"] < trainer.iteration + 1
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_step_size_near_two_sigma_is_refused_or_caught():
    with pytest.raises((ValueError, DivergenceError), match="step"):
        tiny_trainer(step_size=2.5).run()


def test_negative_control_stable_settings_do_not_diverge():
    tiny_trainer().run()


# --- growing and freezing -------------------------------------------------------------------------


def test_growing_adds_layers_at_each_stage():
    trainer = tiny_trainer(
        spec=[(4, 3, 1, 0), (4, 3, 1, 0), (2, 3, 1, 0)],
        iterations_per_layer=3,
        learning_rate=[1e-3, 1e-4, 1e-4],
        init_std=[0.01, "he", "he"],
    )
    depths = []
    trainer.run(callback=lambda t, r: depths.append(t.net.depth))
    assert depths == [1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert trainer.stage == 3


def test_top_filter_is_recreated_and_linear():
    trainer = tiny_trainer(
        top_filter=True,
        iterations_per_layer=2,
        learning_rate=[1e-3, 1e-4, 1e-4],
        init_std=[0.01, "he", 0.01],
    )
    top_before = trainer.net.layers[-1]
    assert trainer.net.depth == 2 and not top_before.relu and top_before.out_channels == 1
    trainer.run()
    top_after = trainer.net.layers[-1]
    assert (
        trainer.net.depth == 3
        and top_after.kernel_size == trainer.net.feature_shapes(trainer.data.shape)[-2][1]
    )


def test_frozen_lower_layers_do_not_move():
    trainer = tiny_trainer(refine_lower=False, iterations_per_layer=3)
    trainer.run(iterations=3)
    assert trainer.stage == 2
    W1 = trainer.net.layers[0].weight.copy()
    trainer.run()
    assert np.array_equal(trainer.net.layers[0].weight, W1)
    refined = tiny_trainer(iterations_per_layer=3)
    refined.run(iterations=3)
    W1 = refined.net.layers[0].weight.copy()
    refined.run()
    assert not np.array_equal(refined.net.layers[0].weight, W1)  # negative control


# --- optimizers and checkpoints ------------------------------------------------------------------


def test_sgd_and_adam_steps_by_hand():
    W, b = np.array([[1.0, 2.0]]), np.array([0.5])
    g = (np.array([[0.2, -0.4]]), np.array([1.0]))
    [(W1, b1)], state = optimizers.ascent_step("sgd", [(W, b)], [g], [0.1], {})
    assert np.allclose(W1, [[1.02, 1.96]]) and np.allclose(b1, [0.6]) and state == {}
    [(W2, b2)], state = optimizers.ascent_step("adam", [(W, b)], [g], [0.1], {})
    # first Adam step: m_hat = g, v_hat = g^2, so each weight moves by rate * sign(g)
    assert np.allclose(W2, [[1.1, 1.9]], atol=1e-6) and np.allclose(b2, [0.6], atol=1e-6)
    assert state[0].steps == 1
    # pure: the inputs are untouched, and a frozen layer (rate 0) is passed through
    assert np.array_equal(W, [[1.0, 2.0]]) and np.array_equal(b, [0.5])
    [(W3, b3)], _ = optimizers.ascent_step("adam", [(W, b)], [g], [0.0], {})
    assert W3 is W and b3 is b


def test_checkpoint_round_trip_and_atomicity(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, {"a": np.arange(3.0)}, {"x": 1})
    arrays, meta = load_checkpoint(path)
    assert np.array_equal(arrays["a"], np.arange(3.0)) and meta == {"x": 1}

    def failing_savez(stream, **payload):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"a": np.zeros(3)}, {"x": 2})
    arrays, meta = load_checkpoint(path)  # the previous checkpoint is intact
    assert meta == {"x": 1} and np.array_equal(arrays["a"], np.arange(3.0))
    assert list(tmp_path.iterdir()) == [path]  # and no temp file is left behind


def test_unreadable_checkpoint(tmp_path):
    bad = tmp_path / "ck.npz"
    bad.write_text("nope")
    with pytest.raises(ValueError, match="not a readable refimpl checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.npz")


# --- presets and user errors ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_valid_networks(name):
    config = preset_config(name)
    size = config.size
    from refimpl.convnet import ConvNet

    # the final architecture fits the preset's images (checked without running it)
    net = ConvNet.random(1, config.spec, seed=0)
    net.geometries((1, 1, size, size))
    assert config.total_iterations >= config.iterations_per_layer


def test_cpu_presets_prepare_their_data():
    for name in ("texture", "object", "reconstruct"):
        data, mean, raw = runs.prepare(preset_config(name))
        assert data.ndim == 4 and np.allclose(data.mean(axis=(0, 2, 3)), 0, atol=1e-9)
        assert raw.min() >= 0 and raw.max() <= 255


def test_wrong_path_and_unreadable_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found"):
        runs.prepare(tiny_texture(image=str(tmp_path / "nope.png")))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="could not read"):
        runs.prepare(tiny_texture(image=str(bad)))


def test_image_smaller_than_the_receptive_field():
    config = tiny_texture(size=4, spec=[(4, 7, 1, 0)], learning_rate=1e-3, init_std=0.01)
    data, _, _ = runs.prepare(config)
    with pytest.raises(
        ValueError, match=r"layer 1 .*kernel 7x7 is larger than the padded input 4x4"
    ):
        Trainer(config, data)


def test_requested_size_larger_than_the_image():
    with pytest.raises(ValueError, match="smaller than the requested size"):
        runs.prepare(tiny_texture(size=64, factor=16))


def test_colour_gray_mismatch_on_resume(tmp_path):
    import matplotlib.pyplot as plt

    colour = tmp_path / "colour.png"
    plt.imsave(colour, np.random.default_rng(0).uniform(0, 1, (32, 32, 3)))
    config = tiny_texture()
    trainer, mean, raw, out = runs.start_run(config, tmp_path / "run")
    runs.execute(trainer, mean, raw, out, "synthesize", progress=False, stop_after=2)
    record = json.loads((out / "config.json").read_text())
    record["config"]["image"], record["config"]["factor"] = str(colour), 1
    (out / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="colour/gray or size mismatch"):
        runs.resume_run(out)


def test_config_validation():
    with pytest.raises(ValueError, match="method must be"):
        tiny_texture(method="pcd")
    with pytest.raises(ValueError, match="learning_rate lists 3 rates for 2 layers"):
        tiny_texture(learning_rate=[1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="iterations_per_layer must be >= 1"):
        tiny_texture(iterations_per_layer=0)
