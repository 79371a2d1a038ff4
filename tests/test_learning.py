"""Learning (Algorithm 1, CD, growing, checkpoints) on tiny problems, seconds each.

Covers: learning lowers the moment mismatch; CD lowers the reconstruction error; a resumed run
equals the uninterrupted one bit for bit; divergence is caught and keeps the last good
checkpoint; growing and freezing, and the config's account of it; the optimizers; the
config's checks; resources (memory, time) estimated before a run; and the errors a user
meets (wrong path, unreadable image, image too small, constant image, tiny sigma).
Interruptions, damaged checkpoints and run folders are in ``test_run_folder.py``.
"""

import json

import numpy as np
import pytest
from checks import assert_close

from refimpl.learning import (
    DivergenceError,
    LearningConfig,
    Trainer,
    algorithm,
    load_checkpoint,
    optimizers,
    runs,
    save_checkpoint,
)
from refimpl.learning.presets import PRESETS, preset_config
from refimpl.numerics import relative_error


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


def same_run(a, b) -> bool:
    """Two trainers hold the same run, bit for bit: parameters, chains, optimizer, history."""
    (arrays_a, meta_a), (arrays_b, meta_b) = a.state(), b.state()
    return (
        a.iteration == b.iteration
        and a.stage == b.stage
        and arrays_a.keys() == arrays_b.keys()
        and all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)
        and json.loads(json.dumps(meta_a)) == json.loads(json.dumps(meta_b))
    )


def uninterrupted(**overrides):
    """The tiny texture run, learned to the end without stopping (the reference)."""
    trainer = tiny_trainer(**overrides)
    trainer.run()
    return trainer


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
    with runs.start_run(config, tmp_path / "run") as run:
        runs.execute(run, progress=False, stop_after=7)
    with runs.resume_run(tmp_path / "run") as resumed:
        assert resumed.trainer.iteration == 7 and resumed.command == "synthesize"
        runs.execute(resumed, progress=False)
    assert same_run(resumed.trainer, uninterrupted())
    out = resumed.out
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


def test_on_torus_shares_the_parameters_and_has_no_border():
    """on_torus: the very parameter arrays, circular padding everywhere, so f is unchanged by
    a cyclic shift of the image by the total stride; the zero-padded net is not."""
    net = tiny_trainer(spec=[(4, 3, 2, 1), (4, 3, 1, 1)], init_std=["he", "he"]).net
    torus = algorithm.on_torus(net)
    assert all(t.weight is l.weight and t.bias is l.bias for t, l in zip(torus.layers, net.layers))
    assert all(layer.padding_mode == "circular" for layer in torus.layers)
    I = np.random.default_rng(0).standard_normal((3, 1, 16, 16)) * 50
    shifted = np.roll(I, (2, 4), axis=(2, 3))
    assert_close(torus.score(shifted), torus.score(I))
    assert relative_error(net.score(shifted), net.score(I)) > 1e-6  # negative control


def test_the_written_samples_are_the_chains_continued_on_the_torus(tmp_path):
    """torus_steps = 0 writes the chains; torus_steps = 6 writes them after 6 Langevin steps
    of the torus model: other samples from the same learning (the chains it keeps agree)."""
    chains, written = {}, {}
    for steps in (0, 6):
        config = tiny_texture(iterations_per_layer=3, torus_steps=steps)
        with runs.start_run(config, tmp_path / f"run{steps}") as run:
            runs.execute(run, progress=False)
            chains[steps] = runs.to_raw(config, run.trainer.chains, run.mean)
        written[steps] = np.load(tmp_path / f"run{steps}" / "samples.npy")
    assert np.array_equal(chains[0], chains[6])
    assert np.array_equal(written[0], chains[0])
    assert relative_error(written[6], chains[6]) > 1e-3


def test_negative_control_same_run_sees_one_more_iteration():
    a, b = tiny_trainer(), tiny_trainer()
    a.run(iterations=3), b.run(iterations=4)
    assert same_run(a, a) and not same_run(a, b)


# --- divergence ---------------------------------------------------------------------------------


def test_divergence_is_caught_and_the_last_good_checkpoint_kept(tmp_path):
    config = tiny_texture(learning_rate=[1e3, 1e3], checkpoint_every=1)
    with runs.start_run(config, tmp_path / "run") as run:
        with pytest.raises(DivergenceError, match="learning rate"):
            runs.execute(run, progress=False)
    arrays, meta = load_checkpoint(run.out / "checkpoint.npz")
    assert meta["iteration"] == run.trainer.iteration  # the last boundary before the blow-up
    assert all(np.isfinite(a).all() for a in arrays.values())
    assert not (run.out / "summary.json").exists()


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


@pytest.mark.parametrize("grow", [True, False])
def test_stage_after_is_where_the_trainer_grows(grow):
    """LearningConfig.stage_after (used to check checkpoints and extensions) follows Trainer."""
    trainer = tiny_trainer(iterations_per_layer=3, grow=grow)
    stages = [trainer.stage]
    trainer.run(callback=lambda t, r: stages.append(t.stage))
    assert stages == [trainer.config.stage_after(t) for t in range(len(stages))]
    assert len(stages) == trainer.config.total_iterations + 1
    if grow:  # negative control: an off-by-one schedule is told apart
        assert stages != [trainer.config.stage_after(t + 1) for t in range(len(stages))]


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
    # the first layer: refused by the config (size below its kernel)
    with pytest.raises(ValueError, match=r"size 4 is smaller than the first layer's 7x7 filters"):
        tiny_texture(size=4, spec=[(4, 7, 1, 0)], learning_rate=1e-3, init_std=0.01)
    # a deeper layer, built only at stage 2: refused before learning starts, naming the layer
    config = tiny_texture(size=4, spec=[(4, 3, 1, 0), (4, 3, 1, 0)])
    with pytest.raises(
        ValueError, match=r"layer 2 .*kernel 3x3 is larger than the padded input 2x2"
    ):
        runs.prepare(config)


def test_requested_size_larger_than_the_image():
    with pytest.raises(ValueError, match="32x32 after block-averaging by factor 16: smaller than"):
        runs.prepare(tiny_texture(size=64, factor=16))


def constant_png(path, value=0.5, shape=(40, 40)):
    import matplotlib.pyplot as plt

    plt.imsave(path, np.full(shape, value), cmap="gray", vmin=0, vmax=1)
    return path


def test_constant_image_is_refused(tmp_path):
    """A constant image is 0 after centring: mismatch inf and reconstruction error 0/0 before."""
    flat = constant_png(tmp_path / "flat.png")
    with pytest.raises(ValueError, match=r"the training image is constant \(every pixel 12"):
        runs.prepare(tiny_texture(image=str(flat), factor=1, size=16))
    # negative control: one bright pixel is enough texture
    import matplotlib.pyplot as plt

    pixels = np.full((40, 40), 0.5)
    pixels[20, 20] = 1.0
    plt.imsave(tmp_path / "dot.png", pixels, cmap="gray", vmin=0, vmax=1)
    runs.prepare(tiny_texture(image=str(tmp_path / "dot.png"), factor=1, size=16))


@pytest.mark.parametrize("dtype, sigma", [("float64", 1e-153), ("float32", 3e-18)])
def test_sigma_so_small_that_energies_overflow(dtype, sigma):
    # |I|^2 of the centred 16x16 crop is 3.7e4; / (2 sigma^2) passes the dtype's largest number
    config = tiny_texture(sigma=sigma, step_size=sigma, dtype=dtype)
    with pytest.raises(ValueError, match=f"sigma {sigma:g} is too small .* overflows {dtype}"):
        runs.prepare(config)
    runs.prepare(tiny_texture(sigma=1e-140, step_size=1e-140))  # negative control: it fits


def test_memory_is_estimated_before_allocating():
    """--size 100000 on digits: 16 chains of 10^10 pixels; refused from sizes alone, at once."""
    config = preset_config("object", size=100000)
    assert runs.memory_estimate(config, 1) > 16 * 100000**2 * 8  # at least the chains
    with pytest.raises(ValueError, match=r"at size 100000 needs at least .* GB of memory"):
        runs.prepare(config)
    # the estimate is a lower bound of what a real run holds: data, chains, noise and maps
    small = preset_config("object")
    assert runs.memory_estimate(small, 1) < 100e6 < runs.available_memory()


def test_cpu_time_estimate_flags_the_paper_presets():
    """The paper presets are hours on the CPU; the CPU presets minutes (README: 50 s, 23 s)."""
    assert runs.cpu_seconds(preset_config("texture-paper")) > 5 * 3600  # 930 TFLOP
    assert 60 < runs.cpu_seconds(preset_config("texture")) < 600
    assert runs.cpu_seconds(preset_config("object")) < 120
    # by hand: one stage-1 iteration of the texture preset, layer 1 = 32 7x7 filters, stride 2,
    # pad 3 on 64x64 -> 32x32.
    # stage 1, one layer: F = 2 * 32 * 49 * 32^2 per image; 10 Langevin steps of forward and
    # adjoint for 16 chains (320 F), forward and weight gradient (no adjoint below layer 1)
    # for 1 image and 16 chains (34 F), the image's reconstruction (2 F): 356 F
    shape = (1, 1, 64, 64)
    assert runs.iteration_flops(preset_config("texture"), 1, shape, 1) == 2 * 32 * 49 * 32**2 * 356


def test_digits_not_available_in_that_number():
    # the UCI set has 183 threes and 174 zeros (its rarest class); before, [:500] gave 183
    with pytest.raises(ValueError, match=r"more UCI digits of class 3 than there are \(183\)"):
        runs.prepare(preset_config("object", images=500))
    with pytest.raises(ValueError, match="more than the 1740 UCI digits .* rarest class has 174"):
        runs.prepare(preset_config("reconstruct", images=1741))
    assert runs.prepare(preset_config("object", images=183, size=8))[0].shape == (183, 1, 8, 8)


def test_config_validation():
    with pytest.raises(ValueError, match="method must be"):
        tiny_texture(method="pcd")
    with pytest.raises(ValueError, match="learning_rate lists 3 rates for 2 layers"):
        tiny_texture(learning_rate=[1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="iterations_per_layer must be >= 1"):
        tiny_texture(iterations_per_layer=0)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(clip=0), ValueError, "clip must be None or a positive gradient norm"),
        (dict(clip=-1.0), ValueError, "a negative bound would reverse the gradient"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(torus_steps=-1), ValueError, "torus_steps must be >= 0"),
        (dict(dataset="digits", digit=42), ValueError, "digit must be a digit class 0-9"),
        (dict(dataset="digits"), ValueError, "needs a digit class"),
        (dict(size=2), ValueError, "size 2 is smaller than the first layer's 3x3"),
        (dict(sigma=1e-200, step_size=1e-201), ValueError, "sigma must be positive with sigma"),
        (dict(step_size=2.5), ValueError, "step_size 2.5 >= 2 sigma"),
        (dict(iterations_per_layer="15"), TypeError, "iterations_per_layer must be an integer"),
        (dict(grow="yes"), TypeError, "grow must be a bool"),
        (dict(sigma="1"), TypeError, "sigma must be a number"),
        (dict(learning_rate=float("nan")), ValueError, "finite"),
        (dict(init_std=[0.01]), ValueError, "init_std lists 1 values for 2 layers"),
        (dict(backend="gpu"), ValueError, "backend must be one of numpy, cupy"),
        (dict(dtype="float16"), ValueError, "dtype must be one of float64, float32"),
    ],
)
def test_config_refuses_bad_values(overrides, error, message):
    with pytest.raises(error, match=message):
        tiny_texture(**overrides)


def test_config_round_trip_and_unknown_keys():
    config = tiny_texture(clip=2.0, seed=7)
    assert LearningConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown setting"):
        LearningConfig.from_dict(dict(config.to_dict(), digt=3))
    with pytest.raises(TypeError, match="must be a JSON object"):
        LearningConfig.from_dict([1, 2])
    assert config.differences(tiny_texture(clip=2.0, seed=8)) == {"seed": (7, 8)}
