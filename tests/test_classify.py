"""Generative classifiers on the engine: heads, samplers, buffer, metrics, trainer, data, runs.

Properties (Xie et al. (2.2)-(2.3), (3.1); Dai, Lu & Wu supplementary A-B; Yang et al. (GMMC)
section 3, Algorithm 1, Eqs. (3)-(11); JEM), each with a negative control:

* every input gradient a classifier hands out (``log p(x)``, ``-log p(y | x)``, a class node)
  and every parameter gradient the trainer follows matches central finite differences;
* Dai, Lu & Wu's generative and discriminative batch gradients differ exactly as their text says;
* fitted biases satisfy the maximum-likelihood moment condition of ``l_D``;
* the replay buffer reinitialises at rate ``rho`` (within 3 standard errors);
* SGLD and noise-injected sampling are the updates of GMMC Eqs. (3) and (10);
* AUROC equals SciPy's Mann-Whitney statistic; PGD stays in its ball and never lowers the loss;
* a run resumed from a checkpoint equals the uninterrupted run, bit for bit, for every mode.

The graded functions of lesson 13 (centres, energies, GMMC losses, calibration, staged
sampling) are tested in ``tests/lessons/test_lesson_13.py`` only.
"""

import io
import json
import math

import numpy as np
import pytest
from checks import EXACT, assert_close
from gradcheck import assert_gradient, coordinate_gradient, input_gradient
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from strategies import BIAS_MEAN, probes_in_piece, seeds

from refimpl.backend import make_rng
from refimpl.classify import jem, metrics
from refimpl.classify import training as training_module
from refimpl.classify.buffer import ReplayBuffer
from refimpl.classify.gmmc import GMMC
from refimpl.classify.heads import (
    SoftmaxClassifier,
    class_scores,
    class_scores_backward,
    fit_biases,
    top_gradient,
)
from refimpl.classify.sampling import (
    class_node_langevin,
    noise_injected_sampling,
    sgld,
)
from refimpl.classify.training import (
    MODES,
    ClassifierConfig,
    ClassifierTrainer,
    DivergenceError,
    default_config,
)
from refimpl.convnet.pieces import same_pattern
from refimpl.learning.checkpoint import load_checkpoint, save_checkpoint
from refimpl.sampling import SamplerResult

# 6 x 6 images -> 6 x 6 x 3 -> 3 x 3 x 4 -> 1 x 1 x 5: five top features
SPEC = [(3, 3, 1, 1), (4, 3, 2, 1), (5, 3, 1, 0)]
N_CLASSES = 3


def _alive(net):
    for layer in net.layers:
        layer.bias += BIAS_MEAN  # keep the small ReLU nets off their dead corner (strategies.py)
    return net


def tiny_softmax(seed, sigma=None):
    model = SoftmaxClassifier.random(1, SPEC, N_CLASSES, seed=seed, sigma=sigma)
    _alive(model.net)
    model.biases[:] = np.random.default_rng(seed).standard_normal(N_CLASSES)
    return model


def tiny_gmmc(seed, gamma=0.7):
    specs = [*SPEC[:-1], (*SPEC[-1], False)]
    model = GMMC.random(1, specs, N_CLASSES, seed=seed, scale=2.0).with_gamma(gamma)
    _alive(model.net)
    return model


MODELS = {
    "softmax": lambda seed: tiny_softmax(seed),
    "softmax+q": lambda seed: tiny_softmax(seed, sigma=0.8),
    "gmmc": lambda seed: tiny_gmmc(seed),
}


def images(seed, n=2, side=6):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, side, side))


# --- the softmax head, Eqs. (2.2)-(2.3) ----------------------------------------------------


@given(seeds)
def test_class_scores_backward_matches_finite_differences(seed):
    """``S = phi W^T + b``: dl/dW, dl/db, dl/dphi for ``l = sum G * S`` against differences."""
    rng = np.random.default_rng(seed)
    phi, W, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    G = rng.standard_normal((4, 3))
    dW, db, dphi = class_scores_backward(phi, W, G)

    def objective():
        return float((G * class_scores(phi, W, b)).sum())

    for array, analytic in ((W, dW), (b, db), (phi, dphi)):
        fd = coordinate_gradient(objective, array, np.arange(array.size))
        assert_gradient(analytic.reshape(-1), fd)
    # negative control: dl/dW from one example only (the sum over the batch forgotten)
    fd = coordinate_gradient(objective, W, np.arange(W.size))
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient((G[:1].T @ phi[:1]).reshape(-1), fd)


# --- input gradients of the classifiers ------------------------------------------------------


def _check_input_gradient(model, value_fn, analytic, I):
    for m in range(len(I)):
        fd = input_gradient(value_fn(m), I[m])
        assume(probes_in_piece(model.net, I[m], fd.probes))
        assert_gradient(analytic[m], fd)


@settings(max_examples=30)
@given(st.sampled_from(sorted(MODELS)), seeds)
def test_log_px_gradient_matches_finite_differences(kind, seed):
    """``d/dI [logsumexp_y L_y(I) + log q(I)]``: the input-density score of GMMC section 4.3."""
    model, I = MODELS[kind](seed), images(seed + 1)
    value, grad = model.log_px_and_grad(I)
    assert_close(value, model.log_px(I), EXACT, "log p(x) two ways")
    _check_input_gradient(model, lambda m: model.log_px, grad, I)


@settings(max_examples=30)
@given(st.sampled_from(sorted(MODELS)), seeds)
def test_nll_gradient_matches_finite_differences(kind, seed):
    """``d/dI [-log p(y | I)]``: what PGD ascends.

    ``y`` is the least likely class: the loss is then of the size of the logits it is computed
    from, which is the size the finite differences' rounding floor is estimated from (a loss
    of 1e-9 next to logits of 30 would carry rounding far above its own size).
    """
    model, I = MODELS[kind](seed), images(seed + 1)
    y = model.logits(I).argmin(axis=1)
    value, grad = model.nll_and_grad(I, y)
    assert_close(value, -model.log_probs(I)[np.arange(2), y], EXACT, "nll")

    def fn(m):
        return lambda b: model.nll_and_grad(b, np.full(len(b), y[m]))[0]

    _check_input_gradient(model, fn, grad, I)


@settings(max_examples=30)
@given(st.sampled_from(sorted(MODELS)), seeds)
def test_class_node_gradient_matches_finite_differences(kind, seed):
    """``d/dI [L_y(I) + log q(I)]``: the class node of Dai, Lu & Wu that samples are drawn from."""
    model, I = MODELS[kind](seed), images(seed + 1)
    y = np.array([1, 0])
    value, grad = model.logits_and_grad(I, y)
    assert_close(value, model.logits(I)[np.arange(2), y], EXACT, "logit")

    def fn(m):
        return lambda b: model.logits_and_grad(b, np.full(len(b), y[m]))[0]

    _check_input_gradient(model, fn, grad, I)


def test_negative_control_gmmc_gradient_without_gamma_is_caught():
    """GMMC's logits carry ``1 / gamma^2``; a backward pass that forgets it fails the check."""
    model, I = tiny_gmmc(3, gamma=0.5), images(4, n=1)
    _, grad = model.log_px_and_grad(I)
    fd = input_gradient(model.log_px, I[0])
    assert probes_in_piece(model.net, I[0], fd.probes)
    assert_gradient(grad[0], fd)
    wrong = model.with_gamma(1.0)
    wrong._logits = model._logits  # forward with gamma = 0.5, backward with gamma = 1
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient(wrong.log_px_and_grad(I)[1][0], fd)


# --- Dai, Lu & Wu, supplementary A: the two batch gradients -----------------------------------


def test_generative_and_discriminative_batch_gradients_differ_as_the_text_says():
    """Scalar features ``x = (1, 2)``, labels ``(0, 1)``, ``f_c(x) = w_c x``, ``w = (0, log 2)``.

    ``l'_D`` normalises over classes with the example fixed, ``l'_G`` over examples with the
    class fixed (supplementary A). By hand, with ``p(c | x_i) ~ exp(w_c x_i)``:
    ``p(. | 1) = (1/3, 2/3)``, ``p(. | 2) = (1/5, 4/5)``; class 1's batch weights over the
    examples ``exp(w_1 x_j) / sum`` are ``(2/6, 4/6)``, class 0's ``(1/2, 1/2)``.

    ``dl_D/dw_0 = (1 - 1/3) 1 + (0 - 1/5) 2 = 4/15``, ``dl_D/dw_1 = -4/15`` (rows sum to 0);
    ``dl_G/dw_0 = 1 - (1/2 * 1 + 1/2 * 2) = -1/2``, ``dl_G/dw_1 = 2 - (2/6 * 1 + 4/6 * 2) = 1/3``.
    """
    from refimpl.models.discriminative import (
        discriminative_score_gradient,
        generative_score_gradient,
    )

    phi, W, y = np.array([[1.0], [2.0]]), np.array([[0.0], [math.log(2.0)]]), np.array([0, 1])
    S = class_scores(phi, W)
    dW_D = class_scores_backward(phi, W, discriminative_score_gradient(S, y))[0]
    dW_G = class_scores_backward(phi, W, generative_score_gradient(S, y))[0]
    assert_close(dW_D[:, 0], [4 / 15, -4 / 15], EXACT, "l'_D")
    assert_close(dW_G[:, 0], [-1 / 2, 1 / 3], EXACT, "l'_G")
    # negative control: the generative gradient is not the discriminative one with the axes swapped
    assert abs(dW_G[0, 0] - dW_D[0, 0]) > 0.5


# --- the biases after generative training ------------------------------------------------------


@settings(max_examples=30)
@given(seeds)
def test_fitted_biases_satisfy_the_moment_condition(seed):
    """At the maximum of ``l_D`` in ``b``: ``sum_m p(c | x_m) = n_c`` for every class."""
    rng = np.random.default_rng(seed)
    n, C = 40, 4
    labels = rng.integers(0, C, n)
    labels[:C] = np.arange(C)  # every class present
    scores = 2 * rng.standard_normal((n, C)) + 3 * rng.standard_normal(C)
    b = fit_biases(scores, labels)
    p = np.exp(scores + b - (scores + b).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    # fit_biases stops at max |n_c / n - mean_m p(c | x_m)| <= tol = 1e-12: each sum is within
    # n tol = 4e-11 of n_c (rounding of p adds ~n eps); 1e-9 relative leaves a margin of 10+
    assert_close(p.sum(0), np.bincount(labels, minlength=C), 1e-9, "sum_m p(c | x_m) = n_c")
    assert abs(b.mean()) < 1e-12
    from refimpl.models.discriminative import discriminative_log_likelihood as l_D

    assert l_D(scores + b, labels) >= l_D(scores, labels) - 1e-9


def test_negative_control_zero_biases_miss_the_moment_condition():
    """Scores offset by (3, 0): without fitted biases class 0 takes far more than its share."""
    scores = np.array([[3.0, 0.0], [3.0, 1.0], [3.0, 2.0], [3.0, 4.0]])
    labels = np.array([0, 1, 1, 1])
    p0 = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    assert abs(p0[:, 0].sum() - 1) > 1
    b = fit_biases(scores, labels)
    p = np.exp(scores + b) / np.exp(scores + b).sum(1, keepdims=True)
    assert abs(p[:, 0].sum() - 1) < 1e-9


# --- JEM ---------------------------------------------------------------------------------------


@given(seeds)
def test_jem_loss_gradient_and_identity(seed):
    """``log p(y|x) + log p(x) = S_y - log Z`` (the data's logsumexp cancels); the gradients."""
    rng = np.random.default_rng(seed)
    S, S_s = rng.standard_normal((5, 3)) * 3, rng.standard_normal((4, 3)) * 3
    y = rng.integers(0, 3, 5)
    loss, dS, dS_s = jem.joint_loss(S, y, S_s)
    from scipy.special import logsumexp

    log_py = S[np.arange(5), y] - logsumexp(S, axis=1)
    expected = -(log_py + logsumexp(S, axis=1)).mean() + logsumexp(S_s, axis=1).mean()
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)
    for array, analytic in ((S, dS), (S_s, dS_s)):
        fd = coordinate_gradient(lambda: jem.joint_loss(S, y, S_s)[0], array, np.arange(array.size))
        assert_gradient(analytic.reshape(-1), fd)
    assert_close(jem.energy(S), -logsumexp(S, axis=1), EXACT, "E(x) = -logsumexp")


def test_negative_control_jem_gradient_with_the_data_logsumexp_is_caught():
    """Keeping the data's logsumexp term in the gradient (it cancels in log p(x, y)) is wrong."""
    rng = np.random.default_rng(0)
    S, S_s, y = rng.standard_normal((5, 3)) * 3, rng.standard_normal((4, 3)), rng.integers(0, 3, 5)
    _, dS, _ = jem.joint_loss(S, y, S_s)
    fd = coordinate_gradient(lambda: jem.joint_loss(S, y, S_s)[0], S, np.arange(S.size))
    assert_gradient(dS.reshape(-1), fd)
    p = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient((dS - p / 5).reshape(-1), fd)


# --- samplers ---------------------------------------------------------------------------------


def test_sgld_on_a_gaussian_is_the_linear_recursion():
    """``log p = -|x - a|^2 / 2``: SGLD is ``x <- a + (1 - alpha)(x - a) + s n``, exactly."""
    rng = np.random.default_rng(0)
    a, x0 = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    noise = rng.standard_normal((4, 3, 2))
    alpha, s = 0.3, 0.05
    run = sgld(lambda x: a - x, x0, 4, alpha, s, noise=noise, box=None)
    expected = x0.copy()
    for t in range(4):
        expected = a + (1 - alpha) * (expected - a) + s * noise[t]
    assert_close(run.samples, expected, EXACT, "SGLD")
    deterministic = sgld(lambda x: a - x, x0, 4, alpha, 0.0, box=None).samples
    assert_close(deterministic, a + (1 - alpha) ** 4 * (x0 - a), EXACT, "no noise")
    clipped = sgld(lambda x: a - x, 3 * x0, 4, alpha, s, noise=noise, box=(-0.5, 0.5)).samples
    assert clipped.min() >= -0.5 and clipped.max() <= 0.5


def test_noise_injected_step_is_eq_10():
    """One step: ``x - alpha J^T (phi - mu_y) + alpha gamma J^T n``, J = dphi/dx (GMMC Eq. (10))."""
    model, x0 = tiny_gmmc(1), images(2, n=3)
    labels, gamma, alpha = np.array([0, 2, 1]), 0.4, 0.01
    n = np.random.default_rng(3).standard_normal((1, 3, 5))
    got = noise_injected_sampling(model, x0, labels, 1, alpha, gamma, noise=n, box=None).samples
    fwd = model.net.forward(x0)
    phi = fwd.outputs[-1].sum(axis=(2, 3))

    def jt(v):  # J^T v by backprop of the top features
        return model.net.backward(fwd, top_gradient(fwd, v), want_params=False)[0]

    expected = x0 - alpha * jt(phi - model.centres[labels]) + alpha * gamma * jt(n[0])
    assert_close(got, expected, EXACT, "Eq. (10)")
    # negative control: without the gradient-modulated noise the step is plain descent on E
    assert np.abs(got - (x0 - alpha * jt(phi - model.centres[labels]))).max() > 1e-6


def test_class_node_langevin_is_eq_6_10_on_each_chains_class():
    """``I + (eps^2/2)(dL_{y_k}/dI - I/sigma^2) + eps Z``: every chain follows its own class."""
    model, I0 = tiny_softmax(2, sigma=0.8), images(5, n=3)
    labels, eps = np.array([2, 0, 1]), 0.1
    got = class_node_langevin(model, labels, I0, 1, eps, make_rng(7)).samples
    Z = make_rng(7).standard_normal(I0.shape)
    drift = model.logits_and_grad(I0, labels)[1] - I0 / 0.8**2
    assert_close(got, I0 + 0.5 * eps**2 * drift + eps * Z, EXACT, "Eq. (6.10)")
    other = class_node_langevin(model, labels[::-1].copy(), I0, 1, eps, make_rng(7)).samples
    assert np.abs(other - got).max() > 1e-8  # negative control: the labels matter


# --- the replay buffer --------------------------------------------------------------------------


def _reinit_rate(rho, draws=60, batch=100, seed=0):
    buffer = ReplayBuffer(np.zeros((1000, 1, 2, 2)), 10, rho)
    rng = make_rng(seed)
    return np.mean(
        [buffer.draw(rng, batch=batch).reinit.mean() for _ in range(draws)]
    ), draws * batch


def test_buffer_reinitialisation_rate_is_rho():
    """The fraction of restarted chains is within 3 standard errors of rho (Algorithm 1, line 3)."""
    rho = 0.1
    rate, n = _reinit_rate(rho)
    se = math.sqrt(rho * (1 - rho) / n)  # binomial standard error of a rate from n draws
    assert abs(rate - rho) < 3 * se, (rate, rho, se)
    wrong, _ = _reinit_rate(0.15)  # negative control: a buffer reinitialising at 15%
    assert abs(wrong - rho) > 3 * se


def test_buffer_draws():
    rng = make_rng(0)
    stored = np.random.default_rng(1).uniform(-1, 1, (12, 1, 2, 2))
    buffer = ReplayBuffer(stored.copy(), 3, 0.5, low=-0.5, high=0.5)
    draw = buffer.draw(rng, batch=12)
    assert sorted(draw.indices.tolist()) == list(range(12))  # distinct slots
    assert np.array_equal(draw.labels, draw.indices // 4)
    kept, fresh = ~draw.reinit, draw.reinit
    assert kept.any() and fresh.any()
    assert np.array_equal(draw.images[kept], stored[draw.indices[kept]])
    assert np.all(np.abs(draw.images[fresh]) <= 0.5)
    wanted = np.array([2, 2, 0, 1, 2])
    cond = buffer.draw(rng, labels=wanted)
    assert np.array_equal(cond.labels, wanted) and len(set(cond.indices.tolist())) == 5
    buffer.write(cond.indices, np.ones((5, 1, 2, 2)))
    assert np.all(buffer.images[cond.indices] == 1)
    with pytest.raises(ValueError, match="holds 4 slots"):
        buffer.draw(rng, labels=np.full(5, 1))
    with pytest.raises(ValueError, match="multiple of n_classes"):
        ReplayBuffer(np.zeros((10, 1, 2, 2)), 3, 0.1)
    with pytest.raises(ValueError, match="distinct"):
        buffer.take(np.array([1, 1]), np.zeros(2, bool), np.zeros((2, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        buffer.draw(rng, labels=np.array([0, 3]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        buffer.draw(rng, labels=np.array([0.0, 1.0]))


# --- metrics -------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(seeds, st.integers(1, 30), st.integers(1, 30), st.booleans())
def test_auroc_is_the_mann_whitney_statistic(seed, n_in, n_out, ties):
    """AUROC = U / (n_in n_out), U from SciPy's Mann-Whitney test (ties count half)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n_in) + 0.5, rng.standard_normal(n_out)
    if ties:
        a, b = np.round(a), np.round(b)
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic
    assert metrics.auroc(a, b) == pytest.approx(u / (n_in * n_out), abs=1e-12)


def test_negative_control_auroc_without_half_ties_differs():
    """Pairs (in, out): 2 wins and 3 ties of 6; counting only wins gives 2/6, not 3.5/6."""
    a, b = np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0])
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic / 6
    strict = float((a[:, None] > b[None, :]).mean())
    assert metrics.auroc(a, b) == pytest.approx(3.5 / 6) == pytest.approx(u)
    assert strict != pytest.approx(u)


@settings(max_examples=15)
@given(st.sampled_from(["softmax", "gmmc"]), seeds, st.sampled_from([0.02, 0.1, 0.3]))
def test_pgd_stays_in_the_ball_and_does_not_lower_the_loss(kind, seed, eps):
    model, I = MODELS[kind](seed), images(seed + 1, n=4)
    y = np.array([0, 1, 2, 0])
    adv, loss = metrics.pgd_attack(model.nll_and_grad, I, y, eps, n_steps=10)
    assert np.abs(adv - I).max() <= eps * (1 + 1e-12)
    assert adv.min() >= -1 and adv.max() <= 1
    clean = model.nll_and_grad(I, y)[0]
    assert np.all(loss >= clean)
    assert_close(loss, model.nll_and_grad(adv, y)[0], EXACT, "reported loss")


def test_negative_control_pgd_ball_check_sees_an_unprojected_step():
    model, I = tiny_softmax(0), images(1, n=2)
    y = np.array([0, 1])
    _, grad = model.nll_and_grad(I, y)
    unprojected = I + 3 * 0.05 * np.sign(grad)  # three steps of 0.05 without projection, eps 0.1
    assert np.abs(unprojected - I).max() > 0.1


# --- the trainer: gradients, resume, errors ------------------------------------------------------


def tiny_config(model, training, **over):
    values = dict(
        model=model,
        training=training,
        seed=3,
        spec=SPEC,
        iterations=4,
        batch_size=6,
        pretrain_iterations=2 if training == "joint" else 0,
        langevin_steps=2,
        sampler_steps=2,
        chains=6,
        buffer_size=18,
        reinit_rate=0.3,
        mmc_scale=2.0,
        sigma=0.8,
    )
    values.update(over)
    return ClassifierConfig(**values)


def tiny_data(seed=0, n=12):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 1, 6, 6)), np.arange(n) % N_CLASSES


ALL_MODES = [(m, t, {}) for m, ts in MODES.items() for t in ts] + [
    ("softmax", "generative", {"expectation": "batch"}),
    ("gmmc", "generative", {"sampler": "noise"}),
]


def _freeze_sampler(monkeypatch, samples):
    """Make the trainer's sampler return fixed images, so the loss is a function of w alone."""

    def fixed(*args, **kwargs):
        return SamplerResult(samples.copy(), 0)

    for name in ("class_node_langevin", "staged_sampling", "noise_injected_sampling", "sgld"):
        monkeypatch.setattr(training_module, name, fixed)


@pytest.mark.parametrize("model,training,over", ALL_MODES, ids=lambda v: str(v))
def test_trainer_gradient_matches_finite_differences(model, training, over, monkeypatch):
    """The parameter gradient of every mode is the gradient of the loss it records."""
    images_, labels = tiny_data()
    trainer = ClassifierTrainer(tiny_config(model, training, **over), images_, labels, N_CLASSES)
    _alive(trainer.model.net)
    samples = np.random.default_rng(9).uniform(-1, 1, (6, 1, 6, 6))
    _freeze_sampler(monkeypatch, samples)
    x, y = trainer.images[:6], trainer.labels[:6]
    phase = "generative" if training != "discriminative" else "discriminative"

    def run():
        return trainer._gradient(x, y, phase, make_rng(1))

    grads, record, _ = run()
    patterns = [trainer.model.net.activation_pattern(a) for a in (x, samples)]
    crossed = []

    def on_probe():
        now = [trainer.model.net.activation_pattern(a) for a in (x, samples)]
        crossed.append(not all(same_pattern(p, q) for p, q in zip(now, patterns, strict=True)))

    rng = np.random.default_rng(2)
    for (W, b), (dW, db) in zip(trainer.model.parameters(), grads, strict=True):
        for array, analytic in ((W, dW), (b, db)):
            coords = rng.choice(array.size, size=min(array.size, 6), replace=False)
            fd = coordinate_gradient(lambda: run()[1]["loss"], array, coords, on_probe=on_probe)
            if any(crossed):
                pytest.skip("a probe crossed a ReLU kink")
            assert_gradient(analytic.reshape(-1)[coords], fd, what=f"{model}/{training}")


def test_negative_control_gmmc_gradient_without_the_sample_term_is_caught(monkeypatch):
    images_, labels = tiny_data()
    config = tiny_config("gmmc", "generative")
    trainer = ClassifierTrainer(config, images_, labels, N_CLASSES)
    _freeze_sampler(monkeypatch, np.random.default_rng(9).uniform(-1, 1, (6, 1, 6, 6)))
    x, y = trainer.images[:6], trainer.labels[:6]

    def full():
        return trainer._gradient(x, y, "generative", make_rng(1))

    data_only = trainer._gradient(x, y, "discriminative", make_rng(1))[0]  # Eq. (5) alone
    W = trainer.model.parameters()[0][0]
    coords = np.arange(W.size)
    fd = coordinate_gradient(lambda: full()[1]["loss"], W, coords)
    assert_gradient(full()[0][0][0].reshape(-1), fd)
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient(data_only[0][0].reshape(-1), fd)


def _run(trainer, steps):
    for _ in range(steps):
        trainer.step()
    return trainer


def _same_state(a, b):
    (arrays_a, meta_a), (arrays_b, meta_b) = a.state(), b.state()
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    meta_a.pop("seconds"), meta_b.pop("seconds")
    assert json.dumps(meta_a, sort_keys=True) == json.dumps(meta_b, sort_keys=True)


@pytest.mark.parametrize("model,training,over", ALL_MODES, ids=lambda v: str(v))
def test_resume_equals_uninterrupted(model, training, over, tmp_path):
    """2 steps, a checkpoint on disk, 2 more steps == 4 steps, every array bit for bit."""
    images_, labels = tiny_data()
    config = tiny_config(model, training, **over)
    straight = _run(ClassifierTrainer(config, images_, labels, N_CLASSES), 4)
    first = _run(ClassifierTrainer(config, images_, labels, N_CLASSES), 2)
    save_checkpoint(tmp_path / "c.npz", *first.state())
    resumed = ClassifierTrainer.from_state(*load_checkpoint(tmp_path / "c.npz"), images_, labels)
    _same_state(_run(resumed, 2), straight)


def test_negative_control_resume_without_the_buffer_differs(tmp_path):
    images_, labels = tiny_data()
    config = tiny_config("gmmc", "generative", reinit_rate=0.0)
    straight = _run(ClassifierTrainer(config, images_, labels, N_CLASSES), 4)
    first = _run(ClassifierTrainer(config, images_, labels, N_CLASSES), 2)
    arrays, meta = first.state()
    arrays = dict(
        arrays, buffer=ClassifierTrainer(config, images_, labels, N_CLASSES).buffer.images
    )
    resumed = _run(ClassifierTrainer.from_state(arrays, meta, images_, labels), 2)
    with pytest.raises(AssertionError):
        _same_state(resumed, straight)


def test_state_changes_only_when_a_step_succeeds():
    """A diverging step raises DivergenceError naming the causes and leaves the state alone."""
    images_, labels = tiny_data()
    trainer = ClassifierTrainer(
        tiny_config("jem", "generative", energy_limit=1e-9), images_, labels, N_CLASSES
    )
    before = [a.copy() for pair in trainer.model.parameters() for a in pair]
    buffer = trainer.buffer.images.copy()
    with pytest.raises(DivergenceError, match="learning rate .* sampler step size"):
        trainer.step()
    after = [a for pair in trainer.model.parameters() for a in pair]
    assert trainer.iteration == 0 and trainer.history["iteration"] == []
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert np.array_equal(buffer, trainer.buffer.images)


def test_configuration_errors():
    with pytest.raises(ValueError, match="does not apply to model 'jem'.*--model softmax"):
        default_config("jem", "discriminative")
    with pytest.raises(ValueError, match="does not apply to model 'softmax'"):
        default_config("softmax", "joint")
    with pytest.raises(ValueError, match="unknown model 'lda'"):
        default_config("lda")
    with pytest.raises(ValueError, match="pretrain_iterations > 0"):
        tiny_config("gmmc", "joint", pretrain_iterations=0)
    with pytest.raises(ValueError, match="unknown classifier configuration keys: colour"):
        ClassifierConfig.from_dict(dict(tiny_config("gmmc", "joint").to_dict(), colour=1))
    assert default_config("gmmc").training == "generative"
    with pytest.raises(ValueError, match="buffer_size 12 is too small: 6 chains"):
        config = tiny_config("softmax", "generative", buffer_size=12)
        ClassifierTrainer(config, *tiny_data(), N_CLASSES)


def test_from_state_refuses_mismatches():
    images_, labels = tiny_data()
    arrays, meta = ClassifierTrainer(
        tiny_config("gmmc", "generative"), images_, labels, N_CLASSES
    ).state()
    with pytest.raises(ValueError, match="made on 12 images"):
        ClassifierTrainer.from_state(arrays, meta, images_[:6], labels[:6])
    with pytest.raises(ValueError, match="not a classifier"):
        ClassifierTrainer.from_state(arrays, dict(meta, kind="learning"), images_, labels)
    changed = dict(meta, config=dict(meta["config"], spec=[[3, 3, 1, 1], [4, 3, 2, 1], [7, 3]]))
    with pytest.raises(ValueError, match="parameters 2 have shapes"):
        ClassifierTrainer.from_state(arrays, changed, images_, labels)
    no_buffer = {k: v for k, v in arrays.items() if k != "buffer"}
    with pytest.raises(ValueError, match="replay buffer"):
        ClassifierTrainer.from_state(no_buffer, meta, images_, labels)


# --- the data --------------------------------------------------------------------------------


def test_split_is_fixed_stratified_and_disjoint():
    from refimpl.classify.data import TEST_FRACTION, digits_split, to_model_scale
    from refimpl.data import load_digits

    split = digits_split()
    counts, labels = load_digits()
    assert digits_split() is split  # one split for every caller
    assert len(split.train_labels) == 1346 and len(split.test_labels) == 451
    assert np.intersect1d(split.train_index, split.test_index).size == 0
    assert np.array_equal(np.union1d(split.train_index, split.test_index), np.arange(len(labels)))
    for c in range(10):
        n_c = int((labels == c).sum())
        # the documented fraction of every class, rounded to nearest
        assert int((split.test_labels == c).sum()) == int(np.floor(TEST_FRACTION * n_c + 0.5))
    assert TEST_FRACTION == 0.25
    assert np.array_equal(split.test_images, to_model_scale(counts[split.test_index]))
    assert np.array_equal(to_model_scale(np.array([0.0, 8.0, 16.0])), [-1.0, 0.0, 1.0])
    assert split.train_images.min() == -1 and split.train_images.max() == 1
    with pytest.raises(ValueError, match="read-only"):
        split.train_images[0, 0, 0, 0] = 0


def test_ood_sets_are_what_they_say():
    from refimpl.classify.data import OOD_NAMES, digits_split, ood_sets

    split, sets = digits_split(), ood_sets()
    assert tuple(sets) == OOD_NAMES
    for name, images_ in sets.items():
        assert images_.shape == split.test_images.shape, name
        assert images_.min() >= -1 and images_.max() <= 1, name
    assert np.array_equal(sets["inverted"], -split.test_images)
    # every interpolation is the midpoint of two test digits of different classes (exactly:
    # intensities are multiples of 1/8, so 2 * midpoint - one end is the other end to the bit)
    X, y = split.test_images.reshape(len(split.test_labels), -1), split.test_labels
    classes_of = {}
    for row, label in zip(X, y, strict=True):
        classes_of.setdefault(row.tobytes(), set()).add(int(label))
    for image in sets["interp"].reshape(len(y), -1):
        pairs = [
            (int(y[a]), classes_of.get((2 * image - X[a]).tobytes(), set())) for a in range(len(y))
        ]
        assert any(others - {first} for first, others in pairs)
    # the noise matches the digits' per-pixel mean before clipping (to a few standard errors)
    mean, std = split.train_images.mean(0), split.train_images.std(0)
    inside = (mean > -0.5) & (mean < 0.5) & (std < 0.3)
    got = sets["noise"].mean(0)[inside]
    assert np.all(np.abs(got - mean[inside]) < 5 * std[inside] / math.sqrt(451) + 0.05)


# --- a whole run --------------------------------------------------------------------------------


def test_run_experiment_writes_recomputable_outputs(tmp_path):
    from refimpl.classify.data import OOD_NAMES
    from refimpl.classify.experiment import SCORES, Evaluation, run_experiment

    config = dict(
        spec=[(4, 3, 1, 1), (8, 3, 2, 1), (10, 4, 1, 0)],
        iterations=3,
        pretrain_iterations=1,
        sampler_steps=2,
        chains=8,
        buffer_size=20,
    )
    evaluation = Evaluation(pgd_steps=2, epsilons=(8 / 255,), samples_per_class=1, sample_steps=2)
    stream = io.StringIO()
    result = run_experiment(
        "gmmc", "joint", 1, tmp_path, config=config, evaluation=evaluation, stream=stream
    )
    assert "gmmc/joint: iteration 3/3" in stream.getvalue()  # progress lines off a terminal
    for name in ("metrics.json", "predictions.npz", "reliability.png", "samples.png", "ood.png"):
        assert (tmp_path / name).is_file(), name
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert list(stored)[:2] == ["accuracy", "ece"]
    assert stored["model"] == "gmmc" and stored["training"] == "joint" and stored["iterations"] == 3
    assert stored["gamma"] > 0 and stored["pgd"]["epsilon"] == [2 * 8 / 255]
    with np.load(tmp_path / "predictions.npz") as p:
        probs, labels = p["probs"], p["labels"]
        assert probs.shape == (451, 10) and labels.shape == (451,)
        assert stored["accuracy"] == metrics.accuracy(probs, labels) == result["accuracy"]
        assert stored["ece"] == metrics.expected_calibration_error(probs, labels, 20)
        for name in OOD_NAMES:
            for s in SCORES:
                assert stored["auroc"][name][s] == metrics.auroc(
                    p[f"score_test_{s}"], p[f"score_{name}_{s}"]
                )
