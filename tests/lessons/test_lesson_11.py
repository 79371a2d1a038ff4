"""Lesson 11 (contrastive divergence, Eqs. (7.5)-(7.9), Proposition 3): the mean-noise CD step,
the reconstruction loss at a fixed pattern, and the synthesis chains of an iteration.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references:

* formulas written out here in NumPy: the prototype-as-ConvNet's drift
  ``B - I / sigma^2`` with ``B = sum_k 1(r_k > 0) w_k``, and ``R = sum_m |I_m - sigma^2 B_m|^2 / 2``
  with ``B_m = sum_k delta_mk w_k`` for a pattern chosen by the test (not the images' own);
* other refimpl code paths: central differences of the forward pass ``net.score`` (no
  backprop), the top-down pass ``piece_from_pattern``/``linear_piece`` (no backprop), the
  backprop ``grad_input`` (not the top-down pass);
* Proposition 3 itself: the noise-free CD gradient by backprop against central differences
  (tests/gradcheck.py) of ``reconstruction_loss`` at the fixed pattern, exact because ``R``
  is a polynomial in the weights there;
* the samplers of lesson 6 (``refimpl.sampling.langevin``, not graded here) with the trainer's
  own noise, and the one Langevin step written out with those draws.
"""

import numpy as np
import pytest
from checks import EXACT, assert_close, relative_error
from gradcheck import FiniteDifference, assert_gradient, coordinate_gradient, input_gradient
from hypothesis import given, settings
from strategies import seeds

from refimpl import ConvLayer, ConvNet
from refimpl.convnet.pieces import as_pattern_list, pattern_keys
from refimpl.learning import DivergenceError, LearningConfig, Trainer, algorithm, runs
from refimpl.models import GenerativeModel
from refimpl.sampling import langevin
from refimpl.theorems import instances

GRADED = {
    "learning.algorithm.mean_langevin_step": [
        "test_mean_langevin_step",
        "test_proposition3_cd_gradient_is_the_reconstruction_gradient",
    ],
    "learning.algorithm.reconstruction_loss": [
        "test_reconstruction_loss",
        "test_proposition3_cd_gradient_is_the_reconstruction_gradient",
    ],
    "learning.algorithm.synthesize": ["test_synthesize"],
}

# --- a hand-worked instance: the prototype model as a one-layer ConvNet -------------------------
# K = 3 filters on 2-channel 1 x 1 images (a 1 x 1 kernel covers the image), sigma = 0.5, so that
# sigma^2 = 1/4 and eps^2 / 2 = 1/8 at eps = 1/2: every product below is exact in binary.
W = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -1.0]])
b = np.array([0.5, -1.0, 0.25])
SIGMA = 0.5
I = np.array([[1.0, 1.0], [2.0, -1.0], [-2.0, 0.0], [0.0, 3.0]])
# r = I W^T + b:  (3.5, -1.5, -0.75), (0.5, -3.5, 1.25), (-1.5, 1.0, 0.25), (6.5, 0.5, -2.75)
DELTA = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=bool)


def hand_net():
    return ConvNet([ConvLayer(W.reshape(3, 2, 1, 1).copy(), b.copy())])


def as_images(x):
    return x.reshape(len(x), 2, 1, 1)


def hand_drift(x):
    """d log p / dI = sum_k 1(<I, w_k> + b_k > 0) w_k - I / sigma^2, written out."""
    return (x @ W.T + b > 0).astype(float) @ W - x / SIGMA**2


def keys(net, images):
    return pattern_keys(as_pattern_list(net.activation_pattern(images)))


# --- mean_langevin_step, Eq. (7.8) with Z -> 0 ----------------------------------------------------


def test_mean_langevin_step_by_hand():
    """I_syn = I + (eps^2/2)(B - I/sigma^2), by hand.

    E.g. image 1: (1, 1) + 1/8 ((1, 2) - (4, 4)) = (5/8, 3/4).
    """
    model = GenerativeModel(hand_net(), SIGMA)
    start = as_images(I)
    out = algorithm.mean_langevin_step(model, start, 0.5)
    assert out.shape == start.shape
    assert np.array_equal(start, as_images(I)), "I_obs must not be modified"
    assert_close(out[0].ravel(), [0.625, 0.75], EXACT, "image 1")
    assert_close(out.reshape(len(I), 2), I + 0.125 * hand_drift(I), EXACT, "I_syn")


@settings(max_examples=10)
@given(seeds)
def test_mean_langevin_step_moves_towards_the_reconstruction(seed):
    """I_syn - I = eps^2/(2 sigma^2) (sigma^2 B - I), with B by the top-down pass (Eq. (7.9))."""
    rng = np.random.default_rng(seed)
    model, shape = instances.image_convnet(rng, 1, 6, 2)
    sigma = model.sigma
    images = sigma * rng.standard_normal((5,) + shape)
    eps = float(rng.uniform(0.05, 1.5)) * sigma
    _, B = model.scoring.linear_piece(images)  # top-down deconvolution, no backprop
    expected = images + eps**2 / (2 * sigma**2) * (sigma**2 * np.asarray(B) - images)
    assert_close(algorithm.mean_langevin_step(model, images, eps), expected, EXACT, "I_syn")


def test_mean_langevin_step_equals_finite_differences_of_log_p():
    """grad log p by central differences of the forward pass f(I) - |I|^2 / (2 sigma^2)."""
    rng = np.random.default_rng(3)
    model, shape = instances.image_convnet(rng, 1, 6, 2)
    sigma = model.sigma
    log_p = lambda x: (
        np.asarray(model.scoring.score(x)) - (x**2).reshape(len(x), -1).sum(1) / (2 * sigma**2)
    )
    eps = 0.3 * sigma
    checked = 0
    for image in sigma * rng.standard_normal((6,) + shape):
        fd = input_gradient(log_p, image)
        if not (keys(model.scoring, fd.probes) == keys(model.scoring, image[None])).all():
            continue  # a probe crossed a kink: finite differences do not see one piece
        step = algorithm.mean_langevin_step(model, image[None], eps)[0] - image
        assert_gradient(
            (2 / eps**2) * step.ravel(),
            FiniteDifference(fd.gradient.ravel(), fd.noise),
            what="(2/eps^2)(I_syn - I) vs grad log p",
        )
        checked += 1
    assert checked >= 3


def test_negative_control_a_full_step_is_not_the_mean_langevin_step():
    """eps^2 instead of eps^2/2 (a common slip) is caught by the hand formula."""
    wrong = as_images(I) + 0.25 * as_images(hand_drift(I))
    # the step is doubled: O(1) relative to the step, 1e9 times the check's EXACT
    assert relative_error(wrong.reshape(len(I), 2), I + 0.125 * hand_drift(I)) > 1e-3


# --- reconstruction_loss at a fixed pattern ----------------------------------------------------


def test_reconstruction_loss_by_hand():
    """At the images' own patterns: B = delta W, e.g. image 1: B = (1, 2), sigma^2 B = (1/4, 1/2),
    residual (3/4, 1/2), |.|^2 = 13/16; image 2: delta = (1, 0, 1), B = (1, 1), residual
    (7/4, -5/4), |.|^2 = 37/8; images 3 and 4: 197/64 and 361/64 -> R = 906/128 = 453/64."""
    net = hand_net()
    pattern = net.activation_pattern(as_images(I))
    assert np.array_equal(pattern[0].reshape(len(I), 3), DELTA)
    R = algorithm.reconstruction_loss(net, pattern, as_images(I), SIGMA)
    assert isinstance(R, float)
    assert_close(R, 453 / 64, EXACT, "R")
    assert_close(R, 0.5 * ((I - SIGMA**2 * (DELTA @ W)) ** 2).sum(), EXACT, "R")


@settings(max_examples=10)
@given(seeds)
def test_reconstruction_loss_at_a_pattern_that_is_not_the_images(seed):
    """The pattern is held fixed: any pattern, not the images' own, decodes to B = conv^T-chain."""
    rng = np.random.default_rng(seed)
    model, shape = instances.image_convnet(rng, 1, 6, 3)
    net, sigma = model.scoring, model.sigma
    images = sigma * rng.standard_normal((4,) + shape)
    other = [rng.random(p.shape) < 0.5 for p in net.activation_pattern(images)]
    _, B = net.piece_from_pattern(other, shape)
    expected = 0.5 * ((images - sigma**2 * np.asarray(B)) ** 2).sum()
    assert_close(algorithm.reconstruction_loss(net, other, images, sigma), expected, EXACT, "R")
    # one-layer hand net, random pattern: B = delta W written out
    delta = rng.random((len(I), 3)) < 0.5
    R = algorithm.reconstruction_loss(
        hand_net(), [delta.reshape(len(I), 3, 1, 1)], as_images(I), SIGMA
    )
    assert_close(R, 0.5 * ((I - SIGMA**2 * (delta @ W)) ** 2).sum(), EXACT, "R (hand net)")


def test_reconstruction_loss_at_the_images_own_pattern_uses_backprop_b():
    """At delta = delta(I), B = df/dI (Eq. (6.8)): R = sum |I - sigma^2 grad_input(I)|^2 / 2."""
    rng = np.random.default_rng(5)
    model, shape = instances.image_convnet(rng, 1, 8, 3)
    net, sigma = model.scoring, model.sigma
    images = sigma * rng.standard_normal((6,) + shape)
    expected = 0.5 * ((images - sigma**2 * np.asarray(net.grad_input(images))) ** 2).sum()
    R = algorithm.reconstruction_loss(net, net.activation_pattern(images), images, sigma)
    assert_close(R, expected, EXACT, "R")


# --- Proposition 3: the noise-free CD gradient is -(eps^2 / 2 sigma^4) dR/dw ----------------------


def written_out_reconstruction_loss(net, pattern, images, sigma):
    """R = sum_m |I_m - sigma^2 B_m|^2 / 2 with B from the top-down pass (lesson 2): the
    negative controls use it so that they never call the functions a student writes."""
    _, B = net.piece_from_pattern(pattern, images.shape[1:])
    return 0.5 * float(((images - sigma**2 * np.asarray(B)) ** 2).sum())


def cd_and_reconstruction_gradient(
    model,
    images,
    eps,
    layer,
    coords,
    step=algorithm.mean_langevin_step,
    loss=algorithm.reconstruction_loss,
):
    """(CD gradient of layer ``layer``'s weights by backprop, its dR/dw by central differences)."""
    net, sigma = model.scoring, model.sigma
    synthesised = step(model, images, eps)
    assert (keys(net, images) == keys(net, synthesised)).all(), "the step must keep the patterns"
    cd = np.asarray(
        net.grad_params(images)[layer][0] - net.grad_params(synthesised)[layer][0]
    ).ravel()
    pattern = net.activation_pattern(images)  # fixed while the weights move
    weight = net.layers[layer].weight
    fd = coordinate_gradient(lambda: loss(net, pattern, images, sigma), weight, coords)
    return cd[coords], fd


@settings(max_examples=8)
@given(seeds)
def test_proposition3_cd_gradient_is_the_reconstruction_gradient(seed):
    rng = np.random.default_rng(seed)
    model, shape = instances.image_convnet(rng, 1, 6, 2)
    sigma = model.sigma
    images = sigma * rng.standard_normal((6,) + shape)
    eps = 0.1 * sigma
    for _ in range(12):  # Proposition 3's condition: use the images whose pattern the step keeps
        stepped = algorithm.mean_langevin_step(model, images, eps)
        keep = (keys(model.scoring, images) == keys(model.scoring, stepped)).all(axis=1)
        if keep.sum() >= 2:
            break
        eps /= 2
    images = images[keep]
    for layer in range(model.scoring.depth):
        size = model.scoring.layers[layer].weight.size
        coords = rng.choice(size, min(size, 12), replace=False)
        cd, fd = cd_and_reconstruction_gradient(model, images, eps, layer, coords)
        assert_gradient(
            -(2 * sigma**4 / eps**2) * cd,
            fd,
            what=f"layer {layer + 1}: -(2 sigma^4/eps^2) CD vs dR/dw",
        )


def test_negative_control_proposition3_with_a_full_step():
    """A step of eps^2 instead of eps^2/2 doubles the CD gradient: the identity is off by 2."""
    rng = np.random.default_rng(7)
    model, shape = instances.image_convnet(rng, 1, 6, 2)
    sigma = model.sigma
    images = sigma * rng.standard_normal((6,) + shape)
    eps = 0.01 * sigma
    full_step = lambda m, x, e: x + e**2 * np.asarray(m.grad_log_density(x))
    images = images[
        (keys(model.scoring, images) == keys(model.scoring, full_step(model, images, eps))).all(1)
    ]
    assert len(images) >= 2
    coords = np.arange(min(12, model.scoring.layers[0].weight.size))
    cd, fd = cd_and_reconstruction_gradient(
        model, images, eps, 0, coords, step=full_step, loss=written_out_reconstruction_loss
    )
    # a factor 2 is a relative error of 1 (0.3 allows O(eps^2) drift), far above FINITE_DIFFERENCE
    assert relative_error(-(2 * sigma**4 / eps**2) * cd, fd.gradient) > 0.3


def test_negative_control_reconstruction_without_sigma_squared():
    """Eq. (7.6) taken literally (|I - B|^2, sigma != 1) is not proportional to the CD gradient."""
    rng = np.random.default_rng(8)
    model, shape = instances.image_convnet(rng, 1, 6, 2, sig=0.6)
    net, sigma = model.scoring, model.sigma
    images = sigma * rng.standard_normal((6,) + shape)
    eps = 0.01 * sigma
    synthesised = images + 0.5 * eps**2 * np.asarray(model.grad_log_density(images))
    assert (keys(net, images) == keys(net, synthesised)).all()
    cd = np.asarray(net.grad_params(images)[0][0] - net.grad_params(synthesised)[0][0]).ravel()
    pattern = net.activation_pattern(images)
    wrong_R = lambda: (
        0.5 * float(((images - np.asarray(net.piece_from_pattern(pattern, shape)[1])) ** 2).sum())
    )
    fd = coordinate_gradient(wrong_R, net.layers[0].weight, np.arange(net.layers[0].weight.size))
    cos = abs(cd @ fd.gradient) / (np.linalg.norm(cd) * np.linalg.norm(fd.gradient))
    assert cos < 1 - 1e-3  # not even parallel: beyond any rounding (1e-3 is 1e9 EXACT)


# --- algorithm.synthesize -------------------------------------------------------------------------


def tiny_trainer(method, **overrides):
    values = dict(
        dataset="digit-classes",
        images=4,
        size=8,
        method=method,
        grow=False,
        spec=[(4, 3, 1, 1), (4, 3, 1, 1)],
        iterations_per_layer=5,
        chains=3,
        langevin_steps=2,
        step_size=0.3,
        learning_rate=1e-2,
        init_std=[0.05, "he"],
        seed=2,
    )
    values.update(overrides)
    config = LearningConfig(**values)
    data, _, _ = runs.prepare(config)
    return Trainer(config, data)


def synth(trainer):
    """``algorithm.synthesize`` for the trainer's next iteration (its noise, chains and data)."""
    c = trainer.config
    return algorithm.synthesize(
        trainer.net, c.sigma, trainer.data, trainer.chains, c.method, c.step_size, trainer.noise()
    )


def test_synthesize_cd_starts_at_the_data():
    trainer = tiny_trainer("cd")
    trainer.run(iterations=2)  # not at iteration 0: the noise depends on the iteration
    trainer.chains = trainer.chains + 1e3  # CD must ignore the previous chains
    expected = langevin(trainer.model(), trainer.data, 2, 0.3, noise=trainer.noise()).samples
    out = synth(trainer)
    assert out.shape == trainer.data.shape
    assert np.array_equal(out, expected)
    assert np.array_equal(synth(trainer), out), "same iteration, same noise"


def test_synthesize_cd_one_step_written_out():
    """L = 1: I_syn = I + (eps^2/2)(B - I/sigma^2) + eps Z, B by the top-down pass."""
    trainer = tiny_trainer("cd", langevin_steps=1, sigma=1.5, step_size=0.4)
    trainer.run(iterations=1)
    I_obs = trainer.data
    _, B = trainer.net.linear_piece(I_obs)
    Z = trainer.noise()[0]  # the iteration's draws, (L = 1, M, C, H, W)
    expected = I_obs + 0.5 * 0.4**2 * (np.asarray(B) - I_obs / 1.5**2) + 0.4 * Z
    assert_close(synth(trainer), expected, EXACT, "one CD step")


def test_synthesize_persistent_chains_continue():
    trainer = tiny_trainer("ml")
    trainer.run(iterations=1)
    assert trainer.chains.shape[0] == 3  # config.chains, not one per image
    trainer.chains = 20 * np.random.default_rng(0).standard_normal(trainer.chains.shape)
    expected = langevin(trainer.model(), trainer.chains, 2, 0.3, noise=trainer.noise()).samples
    out = synth(trainer)
    assert np.array_equal(out, expected)
    # the chains, not the data, are the start: a fresh start would land elsewhere
    assert (
        relative_error(
            out,
            langevin(
                trainer.model(), np.zeros_like(trainer.chains), 2, 0.3, noise=trainer.noise()
            ).samples,
        )
        > 0.5  # two steps from other starts end O(1) apart
    )


def test_synthesize_lets_a_diverging_chain_raise_and_the_run_names_it():
    """Weights so large that B overflows: the sampler's FloatingPointError reaches the caller,
    and a learning run turns it into a DivergenceError naming the step size."""
    for method in ("cd", "ml"):
        trainer = tiny_trainer(method)
        for layer in trainer.net.layers:
            layer.weight *= 1e200
        with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="step size"):
            synth(trainer)
        with np.errstate(all="ignore"), pytest.raises(DivergenceError, match="step size") as info:
            trainer.step()
        assert isinstance(info.value.__cause__, FloatingPointError)


def test_negative_control_stable_chains_do_not_diverge():
    """Without the blown-up weights the same chains stay finite (the sampler itself, not the
    graded synthesize)."""
    for method in ("cd", "ml"):
        trainer = tiny_trainer(method)
        start = trainer.data if method == "cd" else trainer.chains
        samples = langevin(trainer.model(), start, 2, 0.3, noise=trainer.noise()).samples
        assert np.isfinite(samples).all()
