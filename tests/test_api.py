"""The public API documented in the README: construction, specs, copies, parameter access.

Where a check compares two things, a negative control shows it can tell different things
apart (a different spec, the mean instead of the sum, other images, a wrong shape); checks
of names, shapes and the repr have no meaningful wrong variant to run.
"""

import numpy as np
import pytest
from checks import EXACT, assert_close

import refimpl
from refimpl import ConvLayer, ConvNet, LayerSpec


def test_public_names():
    for name in (
        "ConvLayer",
        "ConvNet",
        "LayerSpec",
        "basis_functions",
        "piece_from_basis",
        "conv",
        "backend",
    ):
        assert hasattr(refimpl, name)


def test_spec_formats_are_equivalent():
    specs = [
        [LayerSpec(4, 3, 2, 1), LayerSpec(2, 3, activation="linear")],
        [(4, 3, 2, 1), (2, 3, 1, 0, False)],
        [
            dict(out_channels=4, kernel_size=3, stride=2, pad=1),
            dict(out_channels=2, kernel_size=3, relu=False),
        ],
    ]
    nets = [ConvNet.random(1, s, seed=0) for s in specs]
    assert all(n.spec() == nets[0].spec() for n in nets)
    assert not nets[0].layers[1].relu and nets[0].layers[0].relu
    # negative control: another stride is another spec
    assert ConvNet.random(1, [(4, 3, 1, 1), (2, 3, 1, 0, False)], seed=0).spec() != nets[0].spec()


def test_spec_round_trip_keeps_every_activation():
    """``ConvNet.random(C, net.spec())`` rebuilds the architecture, softplus included (a spec
    that recorded only relu True/False rebuilt a softplus net as ReLU)."""
    for activation in ("relu", "linear", "softplus"):
        net = ConvNet.random(1, [(3, 3, 1, 1, activation), (2, 3)], seed=1)
        rebuilt = ConvNet.random(1, net.spec(), seed=2)
        assert [l.activation.name for l in rebuilt.layers] == [activation, "relu"]
        assert rebuilt.spec() == net.spec()


def test_negative_control_an_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        LayerSpec.coerce((3, 3, 1, 1, "tanh"))
    with pytest.raises(TypeError, match="activation must be a name"):
        ConvLayer(np.ones((1, 1, 1, 1)), np.zeros(1), activation=True)


def test_constructor_api_matches_readme():
    rng = np.random.default_rng(0)
    layer1 = ConvLayer(rng.standard_normal((4, 3, 5, 5)), rng.standard_normal(4), stride=2, pad=2)
    layer2 = ConvLayer(
        rng.standard_normal((1, 4, 8, 8)), rng.standard_normal(1), activation="linear"
    )
    net = ConvNet([layer1, layer2])
    I = rng.standard_normal((5, 3, 16, 16))
    assert net.feature_shapes(I.shape) == [(4, 8, 8), (1, 1, 1)]
    assert net.score(I).shape == (5,)
    assert net.grad_input(I).shape == I.shape
    assert [g.shape for pair in net.grad_params(I) for g in pair] == [
        (4, 3, 5, 5),
        (4,),
        (1, 4, 8, 8),
        (1,),
    ]
    assert [d.shape for d in net.activation_pattern(I)] == [(5, 4, 8, 8), (5, 1, 1, 1)]
    alpha, B = net.linear_piece(I)
    assert alpha.shape == (5,) and B.shape == I.shape


def test_grad_params_is_gradient_of_the_sum_over_images():
    net = ConvNet.random(1, [(3, 3), (2, 3)], seed=1)
    I = np.random.default_rng(2).standard_normal((4, 1, 8, 8))
    total = net.grad_params(I)
    parts = [net.grad_params(I[m : m + 1]) for m in range(4)]
    for l, (dw, db) in enumerate(total):
        assert_close(dw, sum(p[l][0] for p in parts), EXACT, "sum of per-image dW")
        assert_close(db, sum(p[l][1] for p in parts), EXACT, "sum of per-image db")
    # negative control: the mean over the images (a factor 4) is not what grad_params returns
    with pytest.raises(AssertionError, match="sum of per-image dW"):
        assert_close(total[0][0], sum(p[0][0] for p in parts) / 4, EXACT, "sum of per-image dW")


def test_parameters_are_live_and_copy_is_deep():
    net = ConvNet.random(1, [(2, 3)], seed=0)
    clone = net.copy()
    I = np.ones((1, 1, 5, 5))
    before = net.score(I).copy()
    w, b = net.parameters()[0]
    b += 10.0  # in-place update, as learning does
    assert np.all(net.score(I) > before)
    assert_close(clone.score(I), before, EXACT, "copy unaffected")


def test_with_parameters_checks_shapes():
    net = ConvNet.random(1, [(2, 3)], seed=0)
    with pytest.raises(ValueError, match=r"layer 1: weight must have shape \(2, 1, 3, 3\)"):
        net.with_parameters([(np.zeros((2, 1, 5, 5)), np.zeros(2))])
    # negative control: the right shapes are taken, and the copy holds them
    other = net.with_parameters([(np.zeros((2, 1, 3, 3)), np.ones(2))])
    assert np.array_equal(other.layers[0].bias, np.ones(2))


def test_repr_names_the_architecture():
    text = repr(ConvNet.random(3, [(100, 15, 3)], seed=0))
    assert "ConvLayer(100x3x15x15, stride=3, pad=0, activation='relu'" in text


def test_score_and_grad_params_equal_the_separate_calls():
    net = ConvNet.random(2, [(3, 3, 1, 1), (2, 3, 2)], seed=4)
    I = np.random.default_rng(5).standard_normal((3, 2, 9, 9))
    f, grads = net.score_and_grad_params(I)
    assert_close(f, net.score(I), EXACT, "score")
    for (a, b), (c, d) in zip(grads, net.grad_params(I)):
        assert_close(a, c, EXACT, "dW")
        assert_close(b, d, EXACT, "db")
    # negative control: the gradients of other images differ
    with pytest.raises(AssertionError, match="dW"):
        assert_close(grads[0][0], net.grad_params(I[::-1] * 2)[0][0], EXACT, "dW")
