"""Lesson 6 (Langevin dynamics, Eqs. (5.6), (6.10), and MALA): refimpl.sampling.samplers.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references:

* scripted noise: a stand-in random generator hands out noise chosen by the test, so one
  update can be compared exactly with the formula written out here (the drift
  ``B - I / sigma^2`` with ``B = sum_k 1(r_k > 0) w_k`` computed by hand, the Hastings ratio
  computed by hand, a reference MALA loop written in this file);
* closed forms: on a Gaussian target (the linear prototype) unadjusted Langevin is an AR(1)
  process with known mean and variance at every step;
* the exact 1-D distribution of a ReLU prototype (refimpl.exact: exact samples and CDF).

Statistical tests are seeded (so deterministic) and use 5 standard errors, or a KS p-value
of 1e-6: a correct sampler fails one with probability below 1e-6.
"""

import math

import numpy as np
import pytest
from checks import EXACT, assert_close
from scipy import stats

from refimpl.backend import make_rng
from refimpl.exact import exact_distribution
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.sampling import langevin, mala

GRADED = {
    "sampling.samplers.langevin": ["test_langevin"],
    "sampling.samplers.mala": ["test_mala"],
}

N_SE = 5  # P(|N(0, 1)| > 5) = 5.7e-7 per statistic; D + 1 = 4 of them per moment check
KS_LEVEL = 1e-6  # a correct sampler's KS p-value falls below it with probability 1e-6


class ScriptedRng:
    """A stand-in for a NumPy Generator that returns the test's own "random" numbers.

    ``normals`` are handed out one array per call of ``standard_normal``/``normal`` (each must
    have the requested shape), ``uniforms`` one array per call of ``random``/``uniform``.
    """

    def __init__(self, normals=(), uniforms=()):
        self.normals, self.uniforms = list(normals), list(uniforms)

    @staticmethod
    def _next(queue, size, what):
        assert queue, f"the sampler asked for more {what} draws than the test scripted"
        value = np.asarray(queue.pop(0), dtype=float)
        assert size is None or tuple(np.atleast_1d(size)) == value.shape, (
            f"{what} draw of shape {size} requested, scripted {value.shape}"
        )
        return value.copy()

    def standard_normal(self, size=None, dtype=None, out=None):
        return self._next(self.normals, size, "normal")

    def normal(self, loc=0.0, scale=1.0, size=None):
        return loc + scale * self._next(self.normals, size, "normal")

    def random(self, size=None, dtype=None, out=None):
        return self._next(self.uniforms, size, "uniform")

    def uniform(self, low=0.0, high=1.0, size=None):
        return low + (high - low) * self._next(self.uniforms, size, "uniform")


# A ReLU prototype in D = 2 with K = 3 filters, and sigma != 1 so that a missing sigma shows.
W = np.array([[1.0, 0.5], [-0.5, 1.5], [0.25, -1.0]])
b = np.array([0.2, -0.3, 0.1])
SIGMA = 0.8
MODEL = GenerativeModel(PrototypeModel(W, b), SIGMA)


def drift(I):
    """d log p / dI = B_{w,delta(I)} - I / sigma^2, written out (Eqs. (5.6), (6.10))."""
    delta = (I @ W.T + b > 0).astype(float)
    return delta @ W - I / SIGMA**2


def energy(I):
    """U(I) = -f(I) + |I|^2 / (2 sigma^2), written out."""
    return -np.maximum(I @ W.T + b, 0).sum(1) + (I**2).sum(1) / (2 * SIGMA**2)


def reference_mala(I, normals, uniforms, eps):
    """MALA written out: proposal, Hastings ratio in logs, accept if log u < log ratio."""
    I, accepted, half = I.copy(), np.zeros(len(I)), 0.5 * eps**2
    for Z, u in zip(normals, uniforms):
        J = I + half * drift(I) + eps * Z
        forward = ((J - I - half * drift(I)) ** 2).sum(1)
        backward = ((I - J - half * drift(J)) ** 2).sum(1)
        log_ratio = energy(I) - energy(J) + (forward - backward) / (2 * eps**2)
        accept = np.log(u) < log_ratio
        I = np.where(accept[:, None], J, I)
        accepted += accept
    return I, accepted / len(normals)


START = np.array([[0.5, -1.0], [2.0, 1.0], [-1.5, 0.5], [0.0, 0.0], [3.0, -2.0]])

# Scripted noise makes the sampler and the formula above compute the same numbers up to the
# order of a few additions and products per step (the drift sums K = 3 filters in D = 2):
# a few units of roundoff per step, ~1e-15 after a step and ~1e-14 after several, far below
# EXACT, while a wrong drift, step or acceptance is off by O(eps^2) = 1e-2 or more.


# --- langevin --------------------------------------------------------------------------------


def test_langevin_one_step_by_hand():
    """I_1 = I_0 + (eps^2 / 2) (B - I_0 / sigma^2) + eps Z with the test's own Z."""
    eps = 0.3
    Z = np.random.default_rng(0).standard_normal(START.shape)
    result = langevin(MODEL, START, 1, eps, ScriptedRng([Z]))
    assert_close(result.samples, START + 0.5 * eps**2 * drift(START) + eps * Z, EXACT, "one step")
    assert result.steps == 1


def test_langevin_several_steps_by_hand():
    eps, steps = 0.7, 6
    normals = list(np.random.default_rng(1).standard_normal((steps,) + START.shape))
    expected = START.copy()
    for Z in normals:
        expected = expected + 0.5 * eps**2 * drift(expected) + eps * Z
    result = langevin(MODEL, START, steps, eps, ScriptedRng(normals))
    assert_close(result.samples, expected, EXACT, "six steps")
    assert result.steps == steps


def test_langevin_without_noise_is_gradient_ascent():
    """Z = 0: the deterministic part of (6.10), the GRADE step, exactly."""
    eps = 0.5
    result = langevin(MODEL, START, 1, eps, ScriptedRng([np.zeros(START.shape)]))
    assert_close(result.samples, START + 0.5 * eps**2 * drift(START), EXACT, "drift")


def test_langevin_leaves_the_start_alone_and_records():
    saved = START.copy()
    seen = []
    result = langevin(
        MODEL,
        START,
        6,
        0.3,
        make_rng(2),
        record=lambda step, I: seen.append(step) or I.copy(),
        record_every=2,
    )
    assert np.array_equal(START, saved), "the start I0 was modified"
    assert seen == [0, 2, 4, 6] and len(result.trace) == 4
    assert np.array_equal(result.trace[-1], result.samples)
    assert result.samples.shape == START.shape and result.acceptance is None


def test_langevin_seeded_runs_repeat():
    one = langevin(MODEL, START, 10, 0.3, make_rng(3)).samples
    two = langevin(MODEL, START, 10, 0.3, make_rng(3)).samples
    assert np.array_equal(one, two)
    other = langevin(MODEL, START, 10, 0.3, make_rng(4)).samples
    assert not np.any(np.all(one == other, axis=1))  # negative control: the seed matters


def overflowing_model():
    """A real model whose df/dI overflows: B = w_1 + w_2 = 2e308 = inf where both units fire."""
    return GenerativeModel(PrototypeModel(np.array([[1e308], [1e308]]), np.zeros(2)), sigma=1.0)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("n_steps", [1, 3])
def test_langevin_divergence_raises_floating_point_error(n_steps):
    """The chain must stop with a clear error naming the step size, whether the overflow comes
    in the last update (n_steps = 1) or before it: every update is checked."""
    with pytest.raises(FloatingPointError, match="step size"):
        langevin(overflowing_model(), np.ones((2, 1)), n_steps, 1.9, make_rng(0))


# A Gaussian target: the linear prototype, p = N(sigma^2 sum_k w_k, sigma^2 I).
G_SIGMA = 0.7
G_W = np.array([[0.4, -0.3, 1.0], [0.6, 0.2, -0.5]])
GAUSS = GenerativeModel(PrototypeModel(G_W, np.array([0.3, -0.2]), activation="linear"), G_SIGMA)
G_MEAN = G_SIGMA**2 * G_W.sum(0)
CHAINS = 20000


def assert_moments(samples, mean, var, what):
    """Per-coordinate means within 5 SE (sqrt(var / M)); pooled variance within 5 SE
    (relative SE sqrt(2 / (D (M - 1))) for Gaussian samples)."""
    M, D = samples.shape
    z_mean = (samples.mean(0) - mean) / np.sqrt(var / M)
    z_var = (samples.var(0, ddof=1).mean() / var - 1) / math.sqrt(2 / (D * (M - 1)))
    assert np.abs(z_mean).max() < N_SE, f"{what}: mean off by {np.abs(z_mean).max():.1f} SE"
    assert abs(z_var) < N_SE, f"{what}: variance off by {z_var:.1f} SE"


@pytest.mark.parametrize("eps_factor, steps", [(0.5, 40), (1.0, 25), (1.6, 30)])
def test_langevin_matches_the_ar1_moments(eps_factor, steps):
    """From I0 = 0: I_t - m = a (I_{t-1} - m) + eps Z, a = 1 - eps^2 / (2 sigma^2), so
    mean_t = m (1 - a^t), var_t = v (1 - a^(2t)), v = sigma^2 / (1 - eps^2 / (4 sigma^2))."""
    eps = eps_factor * G_SIGMA
    a = 1 - eps**2 / (2 * G_SIGMA**2)
    v = G_SIGMA**2 / (1 - eps**2 / (4 * G_SIGMA**2))
    samples = langevin(GAUSS, np.zeros((CHAINS, 3)), steps, eps, make_rng(4)).samples
    assert_moments(
        samples,
        G_MEAN * (1 - a**steps),
        v * (1 - a ** (2 * steps)),
        f"ULA eps = {eps_factor} sigma",
    )


def test_langevin_stationary_variance_is_biased_by_eps_squared():
    """Started from exact draws of p at eps = sigma, the variance moves to sigma^2 / (1 - 1/4):
    33% too large, about 65 standard errors; the assertion that it equals sigma^2 must fail.
    At eps = 0.1 sigma the bias, sigma^2 / (1 - 0.0025), is half a standard error: invisible."""
    start = G_MEAN + G_SIGMA * np.random.default_rng(5).standard_normal((CHAINS, 3))
    samples = langevin(GAUSS, start, 40, G_SIGMA, make_rng(6)).samples
    assert_moments(samples, G_MEAN, G_SIGMA**2 / 0.75, "ULA at its AR(1) law")
    with pytest.raises(AssertionError, match="variance off"):
        assert_moments(samples, G_MEAN, G_SIGMA**2, "ULA vs p")
    small = langevin(GAUSS, start, 300, 0.1 * G_SIGMA, make_rng(7)).samples
    assert_moments(small, G_MEAN, G_SIGMA**2, "ULA at a small step vs p")


@pytest.fixture(scope="module")
def one_d():
    """A 1-D ReLU prototype (three filters, four pieces) and its exact distribution."""
    model = GenerativeModel(
        PrototypeModel(np.array([[0.4], [-1.5], [2.0]]), np.array([-0.2, -1.5, -4.0])), 1.0
    )
    return model, exact_distribution(model)


def test_langevin_is_biased_on_the_exact_1d_distribution(one_d):
    """The same start and step as MALA's test below: unadjusted chains leave p (KS p-value
    < 1e-6; the bias is about 6 times the critical distance, see lesson 6)."""
    model, dist = one_d
    start = dist.sample(CHAINS, np.random.default_rng(14))
    samples = langevin(model, start, 30, 1.5, make_rng(15)).samples
    assert stats.kstest(samples[:, 0], dist.cdf).pvalue < KS_LEVEL


# --- mala ---------------------------------------------------------------------------------------


def test_mala_one_step_accepts_and_rejects_by_the_hastings_ratio():
    """With the test's noise, every chain's log ratio is known; u just below the ratio accepts,
    just above rejects (1e-6 relative margins: the log ratio is computed to ~1e-15, and
    u = 1 - 1e-12 stands in for "just above" a ratio of 1, which always accepts)."""
    eps = 1.2
    Z = np.random.default_rng(8).standard_normal(START.shape) * 1.5
    J = START + 0.5 * eps**2 * drift(START) + eps * Z
    forward = ((J - START - 0.5 * eps**2 * drift(START)) ** 2).sum(1)
    backward = ((START - J - 0.5 * eps**2 * drift(J)) ** 2).sum(1)
    log_ratio = energy(START) - energy(J) + (forward - backward) / (2 * eps**2)
    ratio = np.exp(np.minimum(log_ratio, 0))
    assert (log_ratio < -0.01).sum() >= 2, "the test needs proposals that can be rejected"
    accept = np.arange(len(START)) % 2 == 0
    u = np.where(accept, ratio * (1 - 1e-6), np.minimum(ratio * (1 + 1e-6), 1 - 1e-12))
    accept |= log_ratio >= 0  # a proposal uphill in the ratio is always accepted
    result = mala(MODEL, START, 1, eps, ScriptedRng([Z], [u]))
    assert_close(result.samples, np.where(accept[:, None], J, START), EXACT, "MALA step")
    assert np.array_equal(result.acceptance, accept.astype(float))


def test_mala_several_steps_equal_the_reference_loop():
    eps, steps = 0.9, 8
    rng = np.random.default_rng(8)
    normals = list(rng.standard_normal((steps,) + START.shape))
    uniforms = list(rng.random((steps, len(START))))
    expected, rate = reference_mala(START, normals, uniforms, eps)
    result = mala(MODEL, START, steps, eps, ScriptedRng(normals, uniforms))
    assert_close(result.samples, expected, EXACT, "MALA chains")
    assert np.array_equal(result.acceptance, rate), "acceptance"  # counts of 0/1 decisions
    assert 0 < rate.mean() < 1, "the test needs both accepted and rejected proposals"


def test_mala_leaves_the_start_alone_and_records():
    saved = START.copy()
    seen = []
    result = mala(
        MODEL,
        START,
        6,
        0.3,
        make_rng(9),
        record=lambda step, I: seen.append(step) or I.copy(),
        record_every=3,
    )
    assert np.array_equal(START, saved), "the start I0 was modified"
    assert seen == [0, 3, 6] and len(result.trace) == 3
    assert np.array_equal(result.trace[-1], result.samples)
    assert result.acceptance.shape == (len(START),) and result.steps == 6


def test_mala_seeded_runs_repeat():
    one = mala(MODEL, START, 10, 0.9, make_rng(3))
    two = mala(MODEL, START, 10, 0.9, make_rng(3))
    assert np.array_equal(one.samples, two.samples)
    assert np.array_equal(one.acceptance, two.acceptance)
    other = mala(MODEL, START, 10, 0.9, make_rng(4))
    assert not np.array_equal(one.samples, other.samples)  # negative control: the seed matters


def test_mala_acceptance_is_a_rate_near_one_for_tiny_steps():
    """The Hastings ratio is 1 + O(eps^3): at eps = 0.01 sigma essentially every proposal passes."""
    I0 = SIGMA * np.random.default_rng(10).standard_normal((2000, 2))
    tiny = mala(MODEL, I0, 20, 0.01 * SIGMA, make_rng(11)).acceptance
    large = mala(MODEL, I0, 20, 1.9 * SIGMA, make_rng(11)).acceptance
    assert ((large >= 0) & (large <= 1)).all()
    # measured 0.99995 and 0.48: a rejection rate of 1e-3 at the tiny step would be 20 times the
    # one seen; at 1.9 sigma a rate of 0.9 would mean the ratio hardly matters
    assert tiny.mean() > 0.999 and large.mean() < 0.9


def test_mala_has_no_variance_bias_on_a_gaussian():
    """At eps = sigma, where ULA is 33% too wide (test above), MALA has the moments of p."""
    start = G_MEAN + G_SIGMA * np.random.default_rng(12).standard_normal((CHAINS, 3))
    result = mala(GAUSS, start, 40, G_SIGMA, make_rng(13))
    assert result.acceptance.mean() > 0.5  # measured 0.84: the chains mix, the test has power
    assert np.mean(np.any(result.samples != start, axis=1)) > 0.99  # the chains moved
    assert_moments(result.samples, G_MEAN, G_SIGMA**2, "MALA")


def test_mala_preserves_the_exact_1d_distribution(one_d):
    """Chains started from exact draws stay exact at a large step (KS p-value > 1e-6; seeded,
    and a correct sampler falls below it with probability 1e-6)."""
    model, dist = one_d
    start = dist.sample(CHAINS, np.random.default_rng(14))
    result = mala(model, start, 30, 1.5, make_rng(15))
    assert result.acceptance.mean() > 0.5  # most proposals taken: the chains mix
    assert np.mean(result.samples != start) > 0.99  # the chains moved
    assert stats.kstest(result.samples[:, 0], dist.cdf).pvalue > KS_LEVEL


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_mala_rejects_proposals_that_are_not_finite():
    """df/dI overflows to inf where both units fire: such a proposal has no density; the chain
    must stay where it is (finite), with acceptance 0."""
    result = mala(overflowing_model(), np.ones((2, 1)), 3, 1.9, make_rng(0))
    assert np.isfinite(result.samples).all()
    assert np.all(result.acceptance == 0)


class ThresholdScore:
    """f = 0 with df/dI = 0 inside |I_i| <= 1.5 and +inf beyond: p is N(0, 1) truncated there,
    and a proposal beyond the threshold has a non-finite gradient (an overflowing model)."""

    xp, dtype, threshold = np, np.dtype("float64"), 1.5

    def prepare_images(self, I):
        return I

    def score(self, I):
        return np.zeros(len(I))

    def grad_input(self, I):
        return np.where(np.abs(I) > self.threshold, np.inf, 0.0)

    def score_and_grad_input(self, I):
        return self.score(I), self.grad_input(I)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_mala_chains_keep_moving_after_a_rejected_overflowing_proposal():
    """A rejected proposal with an infinite gradient must not poison the kept gradient.

    Blending ``mask * grad_J + (1 - mask) * grad`` gives 0 * inf = NaN for every rejected
    chain, whose later proposals are then all NaN and rejected: the chain never moves again
    (159 of 200 froze). Selecting keeps grad finite. Every chain starts at 0 (finite
    gradient); with eps = 1 a proposal lands beyond 1.5 with probability 0.13, so nearly every
    chain has such a rejection, and a healthy chain still accepts about 0.87 of its
    proposals: P(no move in 39 steps) = 0.13^39, negligible.
    """
    model = GenerativeModel(ThresholdScore(), sigma=1.0)
    result = mala(model, np.zeros((200, 1)), 40, 1.0, make_rng(3), record=lambda step, I: I.copy())
    positions = np.stack(result.trace)[:, :, 0]  # (steps + 1, chains)
    moved_late = (np.diff(positions[1:], axis=0) != 0).any(axis=0)  # a move after step 1
    assert np.isfinite(result.samples).all()
    assert moved_late.all(), f"{(~moved_late).sum()} of 200 chains froze"
    assert result.acceptance.min() > 0


# --- the checks can fail (not graded) ---------------------------------------------------------


def test_negative_control_blending_makes_nan_of_a_rejected_infinite_gradient():
    """The blend the test above guards against, on such a rejection, produces NaN."""
    grad, grad_j = np.zeros((3, 1)), np.array([[np.inf], [1.0], [np.inf]])
    mask = np.array([0.0, 1.0, 0.0])[:, None]  # chains 0 and 2 reject their proposal
    with np.errstate(invalid="ignore"):
        blended = mask * grad_j + (1 - mask) * grad
    assert np.isnan(blended[[0, 2]]).all()


def test_negative_control_a_wrong_drift_fails_the_one_step_check():
    """A drift without the reference term (B instead of B - I / sigma^2) is off by O(eps^2)."""
    eps = 0.3
    Z = np.random.default_rng(0).standard_normal(START.shape)
    right = START + 0.5 * eps**2 * drift(START) + eps * Z
    wrong = START + 0.5 * eps**2 * (drift(START) + START / SIGMA**2) + eps * Z
    with pytest.raises(AssertionError, match="one step"):
        assert_close(wrong, right, EXACT, "one step")
