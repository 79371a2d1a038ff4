"""Lesson 13 (generative classifiers): GMMC's centres, energies, losses; calibration; sampling.

Graded functions and the tests that grade them (``GRADED``, read by grade.py), in
``refimpl.classify.gmmc``, ``refimpl.classify.metrics`` and ``refimpl.classify.sampling``. The
independent references:

* geometry worked out by hand: the three centres of Algorithm 2 in the plane are the vertices
  of an equilateral triangle, ``S (1, 0)``, ``S (-1/2, +-sqrt(3)/2)``; every MMC configuration
  has ``|mu_y| = S`` and ``<mu_y, mu_y'> = -S^2 / (C - 1)``;
* plain Python loops with ``math`` for the energies, the losses and the calibration bins;
* central finite differences (``gradcheck``) for the loss gradients;
* predictors calibrated by construction (ECE exactly 0) and confidently wrong (ECE 1);
* Eq. (8) written out with the engine's backprop for one step of staged sampling.
"""

import math

import numpy as np
import pytest
from checks import EXACT, assert_close
from gradcheck import assert_gradient, coordinate_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import seeds

from refimpl.backend import make_rng
from refimpl.classify import gmmc, metrics
from refimpl.classify.sampling import staged_sampling

GRADED = {
    "classify.gmmc.mmc_centres": ["test_mmc_centres"],
    "classify.gmmc.energies": ["test_energies"],
    "classify.gmmc.discriminative_loss": ["test_discriminative_loss"],
    "classify.gmmc.generative_loss": ["test_generative_loss"],
    "classify.metrics.calibration_bins": ["test_calibration_bins"],
    "classify.metrics.expected_calibration_error": ["test_ece"],
    "classify.sampling.staged_sampling": ["test_staged_sampling"],
}


# --- Algorithm 2: the max-Mahalanobis centres ----------------------------------------------


def test_mmc_centres_by_hand_in_the_plane():
    """C = 3, d = 2: an equilateral triangle of radius S, first vertex on the first axis."""
    S = 2.5
    expected = S * np.array([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]])
    assert_close(gmmc.mmc_centres(3, 2, S), expected, EXACT, "triangle")
    assert_close(gmmc.mmc_centres(2, 1, 1.0), [[1.0], [-1.0]], EXACT, "two classes: +-S e_1")


@settings(max_examples=40)
@given(st.integers(2, 12), st.integers(0, 6), st.floats(0.1, 20.0))
def test_mmc_centres_norm_and_inner_products(C, extra, S):
    """``|mu_y| = S`` and ``<mu_y, mu_y'> = -S^2 / (C - 1)`` (the Max-Mahalanobis distribution)."""
    d = C - 1 + extra
    mu = gmmc.mmc_centres(C, d, S)
    assert mu.shape == (C, d) and mu.dtype == np.float64
    gram = mu @ mu.T
    expected = np.full((C, C), -(S**2) / (C - 1))
    np.fill_diagonal(expected, S**2)
    # rounding: each entry is built from O(C) products of numbers of size <= 1, times S^2
    assert np.abs(gram - expected).max() <= 1e-13 * C * S**2
    assert np.abs(mu.sum(axis=0)).max() <= 1e-13 * C * S  # a simplex centred at the origin
    assert np.all(np.triu(mu, k=1) == 0)  # Algorithm 2 fills mu_i's first i coordinates only


def test_negative_control_random_directions_fail_the_mmc_geometry():
    """Vectors of norm S in random directions pass the norm check, not the inner products."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((10, 12))
    v = 10 * v / np.linalg.norm(v, axis=1, keepdims=True)
    gram = v @ v.T
    assert np.allclose(np.diag(gram), 100)
    assert np.abs(gram[~np.eye(10, dtype=bool)] + 100 / 9).max() > 1


def test_argument_errors_of_mmc_centres():
    with pytest.raises(ValueError, match="dim must be an integer >= n_classes - 1 = 9"):
        gmmc.mmc_centres(10, 8)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        gmmc.mmc_centres(1, 4)
    with pytest.raises(ValueError, match="scale must be a positive"):
        gmmc.mmc_centres(3, 4, -1.0)


# --- the energy, Eq. (4) ----------------------------------------------------------------------


@given(seeds, st.sampled_from([0.3, 1.0, 2.0]))
def test_energies_equal_loops(seed, gamma):
    rng = np.random.default_rng(seed)
    phi, mu = rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    E = gmmc.energies(phi, mu, gamma)
    expected = [
        [sum((phi[m, k] - mu[y, k]) ** 2 for k in range(5)) / (2 * gamma**2) for y in range(3)]
        for m in range(4)
    ]
    assert_close(E, expected, EXACT, "E(x, y)")


def test_energies_keep_small_distances():
    """A feature 1e-9 from its centre of norm 10: E = 5e-19 d-ish, not the rounding of 100 - 100."""
    mu = gmmc.mmc_centres(10, 12, 10.0)
    phi = mu[3:4] + 1e-9
    E = gmmc.energies(phi, mu)
    assert E[0, 3] == pytest.approx(12 * 1e-18 / 2, rel=1e-6)
    expanded = (phi**2).sum() - 2 * phi @ mu[3] + (mu[3] ** 2).sum()  # negative control
    assert abs(expanded / 2 - E[0, 3]) > 1e-16


def test_argument_errors_of_energies():
    with pytest.raises(ValueError, match="centres must have shape"):
        gmmc.energies(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="gamma must be a positive"):
        gmmc.energies(np.zeros((2, 3)), np.zeros((4, 3)), gamma=0.0)


# --- the losses, Eqs. (5) and (7) ---------------------------------------------------------------


def _loops_mean_energy(phi, mu, labels):
    return sum(
        sum((phi[m, k] - mu[labels[m], k]) ** 2 for k in range(phi.shape[1])) / 2
        for m in range(len(labels))
    ) / len(labels)


def test_discriminative_loss_by_hand():
    """phi = (1, 1), (0, 0); mu = (1, 0), (0, -2); labels 0, 1: E = 1/2, 2: mean 5/4."""
    phi, mu = np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, -2.0]])
    loss, grad = gmmc.discriminative_loss(phi, mu, np.array([0, 1]))
    assert loss == pytest.approx(1.25, abs=1e-15)
    assert_close(grad, [[0.0, 0.5], [0.0, 1.0]], EXACT, "(phi - mu_y) / M")


@given(seeds)
def test_discriminative_loss_gradient_and_loops(seed):
    rng = np.random.default_rng(seed)
    phi, mu, labels = (
        rng.standard_normal((5, 4)),
        rng.standard_normal((3, 4)),
        rng.integers(0, 3, 5),
    )
    loss, grad = gmmc.discriminative_loss(phi, mu, labels)
    assert loss == pytest.approx(_loops_mean_energy(phi, mu, labels), rel=1e-13)
    fd = coordinate_gradient(
        lambda: gmmc.discriminative_loss(phi, mu, labels)[0], phi, np.arange(phi.size)
    )
    assert_gradient(grad.reshape(-1), fd)


def test_discriminative_loss_negative_control_gradient_without_mean():
    """Forgetting the 1/M of the batch mean is caught by the finite differences."""
    rng = np.random.default_rng(1)
    phi, mu, labels = (
        rng.standard_normal((4, 3)),
        rng.standard_normal((2, 3)),
        np.array([0, 1, 1, 0]),
    )
    fd = coordinate_gradient(
        lambda: gmmc.discriminative_loss(phi, mu, labels)[0], phi, np.arange(phi.size)
    )
    with pytest.raises(AssertionError, match="relative error"):
        assert_gradient((phi - mu[labels]).reshape(-1), fd)


@given(seeds, st.sampled_from([0.0, 0.5, 1.0]))
def test_generative_loss_value_and_gradients(seed, beta):
    """``mean E(data) - beta mean E(samples)``; both feature gradients by finite differences."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((3, 4))
    phi, y = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    phi_s, y_s = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    loss, g, g_s = gmmc.generative_loss(phi, y, phi_s, y_s, mu, beta)
    expected = _loops_mean_energy(phi, mu, y) - beta * _loops_mean_energy(phi_s, mu, y_s)
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)

    def value():
        return gmmc.generative_loss(phi, y, phi_s, y_s, mu, beta)[0]

    assert_gradient(g.reshape(-1), coordinate_gradient(value, phi, np.arange(phi.size)))
    fd_s = coordinate_gradient(value, phi_s, np.arange(phi_s.size))
    if beta == 0:
        assert np.all(g_s == 0) and np.abs(fd_s.gradient).max() < 1e-9
    else:
        assert_gradient(g_s.reshape(-1), fd_s)


def test_generative_loss_pushes_samples_up_negative_control():
    """Eq. (7) raises the samples' energy: descent moves phi' away from its centre (sign check)."""
    mu = np.array([[1.0, 0.0], [-1.0, 0.0]])
    phi, y = np.array([[0.0, 0.5]]), np.array([0])
    phi_s, y_s = np.array([[0.5, 0.5]]), np.array([0])
    _, _, g_s = gmmc.generative_loss(phi, y, phi_s, y_s, mu, 0.5)
    # descent step phi' - g_s moves away from mu_0 = (1, 0); with the sign flipped it would approach
    before = np.linalg.norm(phi_s - mu[0])
    assert np.linalg.norm(phi_s - 0.1 * g_s - mu[0]) > before
    assert np.linalg.norm(phi_s + 0.1 * g_s - mu[0]) < before


def test_argument_errors_of_generative_loss():
    mu = np.zeros((3, 2))
    with pytest.raises(ValueError, match="beta must be a non-negative"):
        gmmc.generative_loss(
            np.zeros((1, 2)), np.zeros(1, int), np.zeros((1, 2)), np.zeros(1, int), mu, -1
        )
    with pytest.raises(ValueError, match=r"sample_labels must lie in \[0, 3\)"):
        gmmc.generative_loss(
            np.zeros((1, 2)), np.zeros(1, int), np.zeros((1, 2)), np.array([3]), mu
        )


# --- calibration: bins and ECE, GMMC Eq. (12) -----------------------------------------------------


def _loops_bins(probs, labels, M):
    """Per bin ((m-1)/M, m/M]: count, mean correctness, mean confidence (0 when empty)."""
    count, acc, conf = [0] * M, [0.0] * M, [0.0] * M
    for p, y in zip(probs, labels, strict=True):
        c = max(p)
        m = next(i for i in range(M) if c <= (i + 1) / M)  # first bin whose upper edge is >= c
        count[m] += 1
        acc[m] += float(int(np.argmax(p)) == y)
        conf[m] += c
    return (
        count,
        [a / max(n, 1) for a, n in zip(acc, count, strict=True)],
        [c / max(n, 1) for c, n in zip(conf, count, strict=True)],
    )


@st.composite
def predictions(draw, max_n=40, max_classes=5):
    rng = np.random.default_rng(draw(seeds))
    n, C = draw(st.integers(1, max_n)), draw(st.integers(2, max_classes))
    logits = 3 * rng.standard_normal((n, C))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, rng.integers(0, C, n)


@given(predictions(), st.sampled_from([1, 2, 5, 20]))
def test_calibration_bins_equal_loops(case, M):
    probs, labels = case
    bins = metrics.calibration_bins(probs, labels, M)
    count, acc, conf = _loops_bins(probs, labels, M)
    assert bins["count"].tolist() == count
    assert_close(bins["accuracy"], acc, EXACT, "accuracy per bin")
    assert_close(bins["confidence"], conf, EXACT, "confidence per bin")
    assert_close(bins["edges"], np.arange(M + 1) / M, EXACT, "edges m / M")


def test_calibration_bins_edges_belong_below():
    """Bins (m-1)/M < c <= m/M: 0.5 is in (0.25, 0.5], 0.75 in (0.5, 0.75], 1.0 in the last."""
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.75, 0.25], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 0])  # predictions (argmax, first on ties): 0, 0, 0, 0
    bins = metrics.calibration_bins(probs, labels, 4)  # edges 0, .25, .5, .75, 1
    assert bins["count"].tolist() == [0, 1, 2, 1]
    assert_close(bins["accuracy"], [0, 1, 0.5, 1], EXACT, "accuracy")
    assert_close(bins["confidence"], [0, 0.5, 0.675, 1.0], EXACT, "confidence")


@given(predictions(), st.sampled_from([1, 3, 20]))
def test_ece_equals_loops(case, M):
    probs, labels = case
    count, acc, conf = _loops_bins(probs, labels, M)
    expected = sum(n / len(labels) * abs(a - c) for n, a, c in zip(count, acc, conf, strict=True))
    assert metrics.expected_calibration_error(probs, labels, M) == pytest.approx(
        expected, abs=1e-14
    )


def test_ece_is_zero_when_calibrated_by_construction():
    """In each confidence level a fraction of exactly that level is right: ECE = 0 for any M."""
    rows, labels = [], []
    for confidence, n, right in ((0.6, 5, 3), (0.75, 4, 3), (0.9, 10, 9), (1.0, 2, 2)):
        for i in range(n):
            rows.append([confidence, 1 - confidence])
            labels.append(0 if i < right else 1)
    probs, labels = np.array(rows), np.array(labels)
    for M in (1, 4, 20, 50):
        assert metrics.expected_calibration_error(probs, labels, M) == pytest.approx(0, abs=1e-15)


def test_ece_is_one_when_confidently_wrong_and_negative_control():
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert metrics.expected_calibration_error(probs, np.array([1, 2])) == pytest.approx(1.0)
    # negative control: an over-confident predictor is not calibrated: 3 of 4 right at 100%
    sure = np.tile([1.0, 0.0], (4, 1))
    assert metrics.expected_calibration_error(sure, np.array([0, 0, 0, 1])) == pytest.approx(0.25)


def test_ece_is_a_fraction_not_a_percentage():
    probs = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 8 + [1] * 2)  # 80% right at 90% confidence
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.1, abs=1e-15)


def test_argument_errors_of_ece():
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        metrics.expected_calibration_error(np.eye(2), np.array([0, 1]), 0)
    with pytest.raises(ValueError, match="labels must have shape"):
        metrics.expected_calibration_error(np.eye(2), np.array([0, 1, 1]))


# --- staged sampling, GMMC Eq. (8) -------------------------------------------------------------


def _tiny_gmmc(seed=0):
    from refimpl.classify.gmmc import GMMC

    model = GMMC.random(
        1, [(3, 3, 1, 1), (4, 3, 2, 1), (5, 3, 1, 0, False)], 3, seed=seed, scale=2.0
    )
    for layer in model.net.layers:
        layer.bias += 0.1
    return model


def _one_step_by_hand(model, x, z, alpha, box):
    """``clip(x - alpha (dphi/dx)^T (phi(x) - z))``, by the engine's backprop of the features."""
    fwd = model.net.forward(x)
    phi = fwd.outputs[-1].sum(axis=(2, 3))
    upstream = np.broadcast_to((phi - z)[:, :, None, None], fwd.outputs[-1].shape).copy()
    step = x - alpha * model.net.backward(fwd, upstream, want_params=False)[0]
    return step if box is None else np.clip(step, *box)


def test_staged_sampling_follows_eq_8():
    """Targets ``z = mu_y + gamma n`` once, then clipped descents on ``|phi(x) - z|^2 / 2``."""
    model = _tiny_gmmc()
    rng = np.random.default_rng(1)
    x0, labels = rng.uniform(-1, 1, (3, 1, 6, 6)), np.array([2, 0, 2])
    noise, gamma, alpha = rng.standard_normal((3, 5)), 0.3, 0.05
    z = model.centres[labels] + gamma * noise
    expected = x0
    for _ in range(3):
        expected = _one_step_by_hand(model, expected, z, alpha, (-1, 1))
    start = x0.copy()
    got = staged_sampling(model, x0, labels, 3, alpha, gamma, noise=noise)
    assert_close(got.samples, expected, EXACT, "three steps of Eq. (8)")
    assert got.steps == 3 and np.array_equal(x0, start)  # the start is not modified


def test_staged_sampling_descends_the_target_energy():
    """Small steps without clipping: ``|phi(x) - z|^2 / 2`` goes down step after step."""
    model = _tiny_gmmc(2)
    rng = np.random.default_rng(3)
    x0, labels, noise = (
        rng.uniform(-1, 1, (4, 1, 6, 6)),
        np.array([0, 1, 2, 0]),
        rng.standard_normal((4, 5)),
    )
    z = model.centres[labels] + 0.1 * noise
    trace = staged_sampling(
        model,
        x0,
        labels,
        20,
        0.01,
        0.1,
        noise=noise,
        box=None,
        record=lambda step, x: model.target_energy_and_grad(x, z)[0],
    ).trace
    energy = np.array(trace)
    assert energy.shape == (21, 4)
    assert np.all(np.diff(energy, axis=0) <= 1e-12 * energy[:-1])
    assert np.all(energy[-1] < energy[0])


def test_staged_sampling_targets_the_chains_own_class_and_stays_in_the_box():
    model = _tiny_gmmc(4)
    rng = np.random.default_rng(5)
    x0, noise = rng.uniform(-1, 1, (2, 1, 6, 6)), rng.standard_normal((2, 5))
    a = staged_sampling(model, x0, np.array([0, 1]), 5, 0.5, 0.2, noise=noise).samples
    b = staged_sampling(model, x0, np.array([1, 0]), 5, 0.5, 0.2, noise=noise).samples
    assert np.abs(a - b).max() > 1e-6  # negative control: the labels matter
    assert a.min() >= -1 and a.max() <= 1
    assert np.array_equal(
        staged_sampling(model, x0, np.array([0, 1]), 0, 0.5, 0.2, noise=noise).samples, x0
    )


def test_staged_sampling_draws_its_noise_from_the_generator():
    """The generator path is the noise-array path with the generator's standard normals."""
    model = _tiny_gmmc(6)
    x0, labels = np.random.default_rng(7).uniform(-1, 1, (2, 1, 6, 6)), np.array([2, 1])
    from_rng = staged_sampling(model, x0, labels, 2, 0.1, 0.3, rng=make_rng(8)).samples
    noise = make_rng(8).standard_normal((2, 5))
    assert_close(
        from_rng, staged_sampling(model, x0, labels, 2, 0.1, 0.3, noise=noise).samples, EXACT
    )
    with pytest.raises(ValueError, match="noise must have shape"):
        staged_sampling(model, x0, labels, 2, 0.1, 0.3, noise=np.zeros((2, 4)))
