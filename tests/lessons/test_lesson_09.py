"""Lesson 9 (growing the generative ConvNet layer by layer, section 8): ``algorithm.grow``.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references: the layer shapes and feature-map sizes worked out from the spec
(by hand and with ``conv_output_size``, the output-size formula), object identity and exact
equality for the kept layers, ``algorithm.new_layer`` (not graded) for the drawn ones, and
the optimizer's per-layer state. Nothing here is an output copied from running the code.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import layer_stacks, tiny_learning_config

from refimpl import ConvNet, LayerSpec
from refimpl.conv import conv_output_size
from refimpl.learning import LearningConfig, Trainer, algorithm

GRADED = {
    "learning.algorithm.grow": ["test_grow"],
}

SPEC = [(3, 3, 1, 0), (4, 3, 2, 1), (2, 2, 1, 1)]
SIZE = 11
# Feature maps by hand, (H + 2 pad - k) // stride + 1:
#   layer 1: (11 + 0 - 3) // 1 + 1 = 9;  layer 2: (9 + 2 - 3) // 2 + 1 = 5;
#   layer 3: (5 + 2 - 2) // 1 + 1 = 6
MAPS = [(3, 9, 9), (4, 5, 5), (2, 6, 6)]


def make_config(spec=SPEC, **overrides) -> LearningConfig:
    return tiny_learning_config(**{**dict(spec=spec, seed=7), **overrides})


def make_images(size=SIZE, batch=2, channels=2, width=None, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 5.0 * rng.standard_normal((batch, channels, size, width or size))


def expected_maps(channels_size, spec) -> list:
    """``[(N_l, H_l, W_l)]`` from the spec alone, with the output-size formula."""
    h, w = channels_size
    out = []
    for s in map(LayerSpec.coerce, spec):
        h, w = (
            conv_output_size(h, s.kernel_size, s.stride, s.pad),
            conv_output_size(w, s.kernel_size, s.stride, s.pad),
        )
        out.append((s.out_channels, h, w))
    return out


def layers_kept(old_layers, net) -> bool:
    """The first layers of ``net`` are the very objects ``old_layers`` with unchanged values."""
    if len(net.layers) < len(old_layers):
        return False
    return all(
        new is old[0] and np.array_equal(new.weight, old[1]) and np.array_equal(new.bias, old[2])
        for new, old in zip(net.layers, old_layers)
    )


def snapshot(layers) -> list:
    return [(layer, layer.weight.copy(), layer.bias.copy()) for layer in layers]


def assert_layer_matches_spec(layer, spec, in_channels):
    s = LayerSpec.coerce(spec)
    assert layer.weight.shape == (s.out_channels, in_channels, s.kernel_size, s.kernel_size)
    assert layer.bias.shape == (s.out_channels,)
    assert (layer.stride, layer.pad, layer.relu) == (s.stride, s.pad, s.relu)
    assert layer.weight.dtype == np.float64 and layer.bias.dtype == np.float64


def drawn(trainer, index, in_channels, spec, stage=1):
    """What ``new_layer`` draws for layer ``index`` at ``stage``: the reference for fresh layers."""
    s = LayerSpec.coerce(spec)
    std = trainer.config.init_std_of(index, in_channels * s.kernel_size**2)
    seed = trainer.config.seed
    return algorithm.new_layer(s, in_channels, std, seed, index, stage, np, "float64")


def test_hand_worked_maps_agree_with_the_formula():
    """The reference itself: the hand-worked sizes above equal conv_output_size's."""
    assert expected_maps((SIZE, SIZE), SPEC) == MAPS


# --- stage 1 ------------------------------------------------------------------------------


def test_grow_one_builds_the_first_layer_of_the_spec():
    data = make_images()
    trainer = Trainer(make_config(), data)
    assert trainer.stage == 1 and trainer.net.depth == 1
    layer = trainer.net.layers[0]
    assert_layer_matches_spec(layer, SPEC[0], in_channels=2)
    assert np.array_equal(layer.bias, np.zeros(3))  # biases start at 0
    assert trainer.net.feature_shapes(data.shape) == MAPS[:1]
    # drawn by new_layer, seeded by (seed, layer 0, stage 1)
    assert np.array_equal(layer.weight, drawn(trainer, 0, 2, SPEC[0]).weight)


def test_grow_one_draws_with_the_layers_init_std():
    trainer = Trainer(make_config(init_std=[2.0, 0.01, 0.01]), make_images(size=16, channels=3))
    w = trainer.net.layers[0].weight
    assert w.shape == (3, 3, 3, 3)
    assert 1.4 < w.std() < 2.6  # 81 draws of N(0, 2^2)


# --- growing ------------------------------------------------------------------------------


def test_grow_two_keeps_the_trained_layer_and_adds_the_next():
    data = make_images()
    trainer = Trainer(make_config(), data)
    initial = trainer.net.layers[0].weight.copy()
    trainer.run(iterations=1)  # train layer 1 a little (still stage 1: T = 2)
    assert trainer.stage == 1 and not np.array_equal(trainer.net.layers[0].weight, initial)
    before = snapshot(trainer.net.layers)
    trainer.enter_stage(2)
    assert trainer.stage == 2 and trainer.net.depth == 2
    assert layers_kept(before, trainer.net), (
        "layer 1 must be kept as it is (same object, same values)"
    )
    new = trainer.net.layers[1]
    assert_layer_matches_spec(new, SPEC[1], in_channels=3)
    assert np.array_equal(new.bias, np.zeros(4))
    assert np.array_equal(new.weight, drawn(trainer, 1, 3, SPEC[1], stage=2).weight)
    assert trainer.net.feature_shapes(data.shape) == MAPS[:2]


def test_grow_three_builds_the_whole_spec():
    data = make_images()
    trainer = Trainer(make_config(), data)
    trainer.run(iterations=2)  # step() enters stage 2 after T = 2 iterations
    assert trainer.stage == 2
    trainer.run(iterations=1)
    before = snapshot(trainer.net.layers)
    trainer.enter_stage(3)
    assert trainer.stage == 3 and trainer.net.depth == 3
    assert layers_kept(before, trainer.net)
    assert trainer.net.spec() == [LayerSpec.coerce(s) for s in SPEC]
    assert_layer_matches_spec(trainer.net.layers[2], SPEC[2], in_channels=4)
    assert trainer.net.feature_shapes(data.shape) == MAPS


def test_grow_is_driven_by_step_after_each_T_iterations():
    trainer = Trainer(make_config(), make_images())
    depths = []
    trainer.run(callback=lambda t, record: depths.append((record["stage"], t.net.depth)))
    # (stage the step ran at, depth after it): the T-th step of a stage enters the next one
    assert depths == [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 3)]
    assert trainer.stage == 3 and trainer.net.spec() == [LayerSpec.coerce(s) for s in SPEC]


def test_grow_without_growing_builds_every_layer_at_once():
    data = make_images()
    trainer = Trainer(make_config(grow=False), data)
    assert trainer.stage == 1 and trainer.net.spec() == [LayerSpec.coerce(s) for s in SPEC]
    assert trainer.net.feature_shapes(data.shape) == MAPS
    for index, (layer, spec, channels) in enumerate(zip(trainer.net.layers, SPEC, (2, 3, 4))):
        assert_layer_matches_spec(layer, spec, channels)
        assert np.array_equal(layer.weight, drawn(trainer, index, channels, spec).weight)


def test_grow_recreates_the_top_filter():
    """With ``top_filter`` the top is a new linear 1-output filter over the new top map."""
    data = make_images()
    trainer = Trainer(make_config(top_filter=True), data)
    assert trainer.net.depth == 2
    top1 = trainer.net.layers[-1]
    assert top1.weight.shape == (1,) + MAPS[0] and not top1.relu
    trainer.run(iterations=1)
    before = snapshot(trainer.net.layers[:1])
    trainer.enter_stage(2)
    assert trainer.net.depth == 3 and layers_kept(before, trainer.net)
    assert_layer_matches_spec(trainer.net.layers[1], SPEC[1], in_channels=3)
    top2 = trainer.net.layers[-1]
    assert top2 is not top1 and top2.weight.shape == (1,) + MAPS[1] and not top2.relu
    assert trainer.net.feature_shapes(data.shape) == MAPS[:2] + [(1, 1, 1)]


def test_grow_resets_the_optimizer_state_of_new_layers():
    """Adam state: kept for the kept layer; none for the new conv layer and the new top filter."""
    trainer = Trainer(make_config(top_filter=True, optimizer="adam"), make_images())
    trainer.run(iterations=2)  # two Adam steps at stage 1 (layer 0 and top = index 1), then stage 2
    assert trainer.stage == 2 and trainer.net.depth == 3
    steps = lambda: {k: v.steps for k, v in trainer.optimizer_state.items()}
    assert steps() == {0: 2}, "index 1 is now a new conv layer: its old state must go"
    trainer.step()
    assert steps() == {0: 3, 1: 1, 2: 1}  # new layers start Adam from t = 1


# --- errors -------------------------------------------------------------------------------


def test_grow_refuses_an_image_smaller_than_the_first_kernel():
    assert conv_output_size(4, 5) < 1
    with pytest.raises(ValueError, match=r"layer 1 .*kernel 5x5 is larger"):
        Trainer(make_config(spec=[(2, 5, 1, 0)], learning_rate=1e-3), make_images(size=4))


def test_grow_refuses_a_grown_layer_that_does_not_fit_when_it_is_grown():
    spec = [(2, 3, 1, 0), (2, 3, 1, 0), (2, 3, 1, 0)]
    assert [m[1] for m in expected_maps((5, 5), spec[:2])] == [
        3,
        1,
    ]  # stage 3's 3x3 kernel meets a 1x1 map
    trainer = Trainer(make_config(spec=spec), make_images(size=5))
    trainer.enter_stage(2)
    with pytest.raises(
        ValueError, match=r"layer 3 .*kernel 3x3 is larger than the padded input 1x1"
    ):
        trainer.enter_stage(3)  # at once, not at the next step


# --- properties ---------------------------------------------------------------------------


@st.composite
def growing_problems(draw):
    channels = draw(st.integers(1, 2))
    size = draw(st.integers(3, 10))
    specs = draw(layer_stacks(channels, size, size, min_depth=1, max_depth=3, allow_linear=True))
    return channels, size, list(specs), draw(st.booleans()), draw(st.integers(0, 100))


@settings(max_examples=25)
@given(growing_problems())
def test_grow_grows_any_valid_spec(problem):
    channels, size, spec, top_filter, seed = problem
    data = make_images(size=size, batch=1, channels=channels, seed=seed)
    maps = expected_maps((size, size), spec)
    trainer = Trainer(make_config(spec=spec, top_filter=top_filter, seed=seed), data)
    for stage in range(1, len(spec) + 1):
        if stage > 1:
            before = snapshot(trainer.net.layers[: stage - 1])
            trainer.enter_stage(stage)
            assert layers_kept(before, trainer.net)
        assert trainer.stage == stage
        assert trainer.net.depth == stage + int(top_filter)
        assert trainer.net.spec()[:stage] == [LayerSpec.coerce(s) for s in spec[:stage]]
        shapes = trainer.net.feature_shapes(data.shape)
        assert shapes[:stage] == maps[:stage]
        if top_filter:
            assert (
                shapes[-1] == (1, 1, 1) and trainer.net.layers[-1].kernel_size == maps[stage - 1][1]
            )


# --- negative controls (not graded) -------------------------------------------------------


def test_negative_control_the_kept_layer_check_sees_copies_and_redraws():
    """A wrong grow that copies or re-draws layer 1 fails the check used above (built without
    the Trainer, which calls the graded grow)."""
    net = ConvNet.random(2, SPEC[:1], seed=3)
    redrawn = ConvNet.random(2, SPEC[:1], seed=3)  # the start values again
    net.layers[0].weight += 0.01  # as one learning step would
    before = snapshot(net.layers)
    copied = net.copy()  # same values, new objects
    assert layers_kept(before, net)
    assert not layers_kept(before, copied)
    assert not layers_kept(before, redrawn)


def test_negative_control_the_shape_check_sees_a_wrong_layer():
    data = make_images()
    wrong = ConvNet.random(2, [(3, 3, 2, 0)])  # stride 2 instead of 1
    assert wrong.feature_shapes(data.shape) != MAPS[:1]
    with pytest.raises(AssertionError):
        assert_layer_matches_spec(wrong.layers[0], SPEC[0], in_channels=2)
