"""Lesson 10 (aligned objects, experiment 2, Eq. (4.2)): ``algorithm.top_filter``.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references: the top map's size worked out by hand and with ``conv_output_size``
(the output-size formula), the response of Eq. (4.2) written out as one NumPy contraction
over the features of the layers below, and the exact bias gradient of a linear unit (every
image contributes 1, Eq. (7.4) with delta = 1). Nothing here is an output copied from
running the code.
"""

import numpy as np
import pytest
from checks import EXACT, assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import layer_stacks, tiny_learning_config

from refimpl import ConvLayer, ConvNet, LayerSpec
from refimpl.conv import conv_output_size
from refimpl.learning import LearningConfig, Trainer, algorithm

GRADED = {
    "learning.algorithm.top_filter": ["test_top_filter"],
}

# 3 images of 2 channels, 12 x 12; one layer of 4 5x5 filters, stride 2, pad 1:
# its map is (12 + 2 - 5) // 2 + 1 = 5, so the top filter is 1 x 4 x 5 x 5 with one position.
SPEC = [(4, 5, 2, 1)]
SIZE, MAP = 12, 5


def make_config(spec=SPEC, **overrides) -> LearningConfig:
    return tiny_learning_config(**{**dict(spec=spec, top_filter=True, seed=11), **overrides})


def make_images(height=SIZE, width=None, batch=3, channels=2, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 5.0 * rng.standard_normal((batch, channels, height, width or height))


def eq_4_2_response(conv_layers, top, images) -> np.ndarray:
    """``sum_{i,y} w_{i,y} [F_i * I](y) + b``, Eq. (4.2)'s exponent at the single position."""
    features = ConvNet(conv_layers).forward(images).outputs[-1]  # (M, N, H, W)
    return np.einsum("mihw,ihw->m", features, top.weight[0]) + top.bias[0]


def top_filter_problems(net, images) -> list:
    """What is wrong with ``net``'s top layer as experiment 2's top filter (empty: nothing)."""
    problems = []
    top, below = net.layers[-1], ConvNet(net.layers[:-1]).feature_shapes(images.shape)[-1]
    if top.weight.shape != (1,) + tuple(below):
        problems.append(f"weight {top.weight.shape}, want {(1,) + tuple(below)}")
    if net.feature_shapes(images.shape)[-1] != (1, 1, 1):
        problems.append(f"output {net.feature_shapes(images.shape)[-1]}, want (1, 1, 1)")
    if top.activation.name != "linear":
        problems.append(f"activation {top.activation.name}, want linear")
    # a linear unit: df/db = 1 for every image, whatever its response's sign
    if not np.array_equal(net.grad_params(images)[-1][1], [float(len(images))]):
        problems.append("bias gradient is not M")
    return problems


def test_hand_worked_map_agrees_with_the_formula():
    assert conv_output_size(SIZE, 5, 2, 1) == MAP


# --- shapes ---------------------------------------------------------------------------------


def top_filter(trainer, layers, channels, image_shape):
    """``algorithm.top_filter`` with the trainer's configuration, at stage 1, on the host."""
    return algorithm.top_filter(layers, channels, image_shape, trainer.config, 1, np, "float64")


def test_top_filter_shapes_by_hand():
    data = make_images()
    trainer = Trainer(make_config(), data)
    assert trainer.net.depth == 2
    top = trainer.net.layers[-1]
    assert top.weight.shape == (1, 4, MAP, MAP) and top.bias.shape == (1,)
    assert (top.stride, top.pad) == (1, 0)
    assert top.weight.dtype == np.float64
    assert np.array_equal(top.bias, [0.0])
    assert trainer.net.feature_shapes(data.shape) == [(4, MAP, MAP), (1, 1, 1)]
    assert trainer.net.forward(data).outputs[-1].shape == (3, 1, 1, 1)  # one number per image


def test_top_filter_called_directly_covers_the_given_layers():
    """``top_filter(layers, ...)`` sizes the filter for ``layers``, not for the trainer's net."""
    data = make_images()
    trainer = Trainer(make_config(top_filter=False), data)
    layers = list(trainer.net.layers)
    top = top_filter(trainer, layers, 4, data.shape)
    assert isinstance(top, ConvLayer) and top.weight.shape == (1, 4, MAP, MAP)
    assert ConvNet(layers + [top]).feature_shapes(data.shape)[-1] == (1, 1, 1)
    # one more layer by hand: 3 filters 3x3, no padding -> a (5 - 3) + 1 = 3 map
    extra = ConvLayer(np.full((3, 4, 3, 3), 0.1), np.zeros(3))
    top = top_filter(trainer, layers + [extra], 3, data.shape)
    assert top.weight.shape == (1, 3, 3, 3) and not top.relu
    assert ConvNet(layers + [extra, top]).feature_shapes(data.shape)[-1] == (1, 1, 1)


def test_top_filter_is_recreated_for_each_stage():
    spec = [(3, 3, 1, 1), (2, 3, 2, 0)]
    maps = [conv_output_size(10, 3, 1, 1), conv_output_size(conv_output_size(10, 3, 1, 1), 3, 2, 0)]
    assert maps == [10, 4]  # (10 + 2 - 3) + 1, then (10 - 3) // 2 + 1
    data = make_images(height=10, channels=1)
    trainer = Trainer(make_config(spec=spec), data)
    first = trainer.net.layers[-1]
    assert first.weight.shape == (1, 3, 10, 10)
    trainer.run(iterations=2)  # T = 2: now at stage 2
    second = trainer.net.layers[-1]
    assert trainer.stage == 2 and second is not first
    assert second.weight.shape == (1, 2, 4, 4) and not second.relu
    assert trainer.net.feature_shapes(data.shape)[-1] == (1, 1, 1)


# --- linear: Eq. (4.2) --------------------------------------------------------------------


def test_top_filter_is_linear():
    data = make_images()
    trainer = Trainer(make_config(), data)
    net, top = trainer.net, trainer.net.layers[-1]
    assert not top.relu and top.activation.name == "linear"
    responses = []
    for _ in range(2):  # w and -w: with b = 0 one of them gives negative responses
        r = eq_4_2_response(net.layers[:-1], top, data)
        assert_close(net.score(data), r, EXACT, "f = Eq. (4.2) exponent")
        # df/db = 1 per image for a linear unit; a ReLU would count only the positive ones
        assert np.array_equal(net.grad_params(data)[-1][1], [float(len(data))])
        responses.append(r)
        top.weight *= -1  # in place: the net holds the array
    assert min(r.min() for r in responses) < 0, "the check must meet negative responses"


def test_top_filter_passes_the_full_check():
    data = make_images()
    assert top_filter_problems(Trainer(make_config(), data).net, data) == []


def test_top_filter_draws_with_the_top_layers_init_std():
    """The top filter counts as the last layer: init_std's last entry (here 3), bias 0."""
    trainer = Trainer(make_config(init_std=[0.01, 3.0]), make_images())
    top = trainer.net.layers[-1]
    assert 2.0 < top.weight.std() < 4.0  # 100 draws of N(0, 3^2); the conv layer's 0.01 would fail
    assert np.array_equal(top.bias, [0.0])


# --- errors -------------------------------------------------------------------------------


def test_top_filter_needs_a_square_map():
    data = make_images(height=12, width=10)
    with pytest.raises(ValueError, match="square"):
        Trainer(make_config(spec=[(2, 3, 1, 0)]), data)
    trainer = Trainer(make_config(spec=[(2, 3, 1, 0)], top_filter=False), data)  # fine without it
    with pytest.raises(ValueError, match="square"):
        top_filter(trainer, trainer.net.layers, 2, data.shape)


# --- properties ---------------------------------------------------------------------------


@st.composite
def top_problems(draw):
    channels = draw(st.integers(1, 2))
    size = draw(st.integers(2, 12))
    specs = draw(layer_stacks(channels, size, size, min_depth=1, max_depth=3, allow_linear=True))
    return channels, size, list(specs), draw(st.integers(0, 100))


@settings(max_examples=25)
@given(top_problems())
def test_top_filter_covers_any_square_top_map(problem):
    channels, size, spec, seed = problem
    h = size
    for s in spec:
        h = conv_output_size(h, s.kernel_size, s.stride, s.pad)
    data = make_images(height=size, batch=2, channels=channels, seed=seed)
    trainer = Trainer(make_config(spec=spec, grow=False, seed=seed), data)
    top = trainer.net.layers[-1]
    assert top.weight.shape == (1, LayerSpec.coerce(spec[-1]).out_channels, h, h)
    assert trainer.net.feature_shapes(data.shape)[-1] == (1, 1, 1)
    assert top_filter_problems(trainer.net, data) == []


# --- negative controls (not graded) -------------------------------------------------------


def test_negative_control_the_check_sees_a_relu_top_and_a_small_kernel():
    data = make_images()
    trainer = Trainer(make_config(top_filter=False), data)
    conv = trainer.net.layers
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1, 4, MAP, MAP))
    relu_top = ConvLayer(w, np.zeros(1), activation="relu")
    r = eq_4_2_response(conv, relu_top, data)
    if r.min() >= 0:  # make some response negative, so the ReLU switches off
        relu_top = ConvLayer(-w, np.zeros(1), activation="relu")
    assert "bias gradient is not M" in top_filter_problems(ConvNet(conv + [relu_top]), data)
    small_top = ConvLayer(
        w[:, :, :-1, :-1].copy(), np.zeros(1), activation="linear"
    )  # kernel 4 on a 5x5 map
    assert any(
        "want (1, 1, 1)" in p for p in top_filter_problems(ConvNet(conv + [small_top]), data)
    )
