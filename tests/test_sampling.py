"""The samplers: step-size checks, Langevin (5.6)/(6.10), GRADE, fixed points, MALA.

Properties, each with a negative control:

* check_step_size refuses eps <= 0, NaN, inf and eps >= 2 sigma (valid eps pass);
* unadjusted Langevin on an exactly Gaussian target (the *linear* prototype) has the
  closed-form AR(1) moments; its O(eps^2) variance bias shows at a large step and fades at
  a small one; MALA has no bias;
* seeded chains are reproducible; I0 is never modified;
* GRADE converges to sigma^2 sum_k w_k on the Gaussian and to auto-encoding points
  I = sigma^2 B_{w,delta(I)} (Proposition 2) on a ReLU prototype;
* the fixed-point iteration never decreases log p and stops at auto-encoding points;
* MALA's acceptance is a rate, ~1 for a tiny step; MALA started from exact samples of a
  1-D ReLU prototype stays exactly distributed (KS test), ULA does not;
* divergence raises FloatingPointError naming the step size.

Monte Carlo checks use seeded generators (deterministic) and thresholds of 5 standard
errors, which a correct sampler passes with probability 1 - 6e-7 per statistic.
"""

import math

import numpy as np
import pytest
from checks import EXACT, assert_close, relative_error
from scipy import stats

from refimpl import ConvNet
from refimpl.backend import make_rng
from refimpl.exact import exact_distribution
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.sampling import (
    check_step_size,
    draw_langevin_noise,
    draw_mala_randomness,
    fixed_point,
    grade,
    grade_mode_residual,
    grade_stops,
    langevin,
    mala,
)
from refimpl.theorems import instances

N_SE = 5  # P(|N(0,1)| > 5) = 5.7e-7


# --- check_step_size --------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), float("inf"), float("-inf")])
def test_step_size_must_be_positive_and_finite(eps):
    with pytest.raises(ValueError, match="step_size must be a positive finite number"):
        check_step_size(eps, 1.0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("factor", [2.0, 2.5, 100.0])
def test_step_size_must_be_below_two_sigma(sigma, factor):
    with pytest.raises(ValueError, match=r"2 sigma .* diverges"):
        check_step_size(factor * sigma, sigma)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("factor", [1e-6, 0.1, 1.0, 1.999])
def test_valid_step_size_passes(sigma, factor):
    """The negative control of the refusals: eps in (0, 2 sigma) is returned as a float."""
    assert check_step_size(factor * sigma, sigma) == factor * sigma


@pytest.mark.parametrize("sampler", [langevin, mala])
def test_samplers_check_the_step_size(sampler):
    model = GenerativeModel(PrototypeModel(np.ones((1, 2)), np.zeros(1)), sigma=0.5)
    with pytest.raises(ValueError, match="2 sigma"):
        sampler(model, np.zeros((1, 2)), 1, 1.0, make_rng(0))
    with pytest.raises(ValueError, match="2 sigma"):
        grade(model, np.zeros((1, 2)), 1, 1.0)


# --- an exactly Gaussian target: the linear prototype -------------------------------------

SIGMA = 0.7
W_LIN = np.random.default_rng(10).standard_normal((2, 4))
LINEAR = GenerativeModel(PrototypeModel(W_LIN, np.array([0.3, -0.2]), activation="linear"), SIGMA)
# f(I) = sum_k <I, w_k> + b_k = <I, w> + const with w = sum_k w_k, so
# p ~ exp(<I, w>) N(0, sigma^2 I) = N(sigma^2 w, sigma^2 I)
TARGET_MEAN = SIGMA**2 * W_LIN.sum(0)
CHAINS = 20000


def ula_moments(eps, sigma, mean, steps, start=0.0):
    """Exact mean and per-coordinate variance of ULA on N(mean, sigma^2 I) after ``steps`` steps.

    I' = I + (eps^2/2)(w - I/sigma^2) + eps Z = a I + (1 - a) mean + eps Z with
    a = 1 - eps^2/(2 sigma^2): an AR(1) with stationary variance
    v = eps^2 / (1 - a^2) = sigma^2 / (1 - eps^2 / (4 sigma^2)).
    From a deterministic start: mean_t = mean + a^t (start - mean), var_t = v (1 - a^(2t)).
    """
    a = 1 - eps**2 / (2 * sigma**2)
    v = sigma**2 / (1 - eps**2 / (4 * sigma**2))
    return mean + a**steps * (start - mean), v * (1 - a ** (2 * steps))


def gaussian_z_scores(samples, mean, var):
    """z-scores of the per-coordinate sample means and of the pooled sample variance.

    Chains are independent, so the mean of coordinate d has standard error sqrt(var / M);
    the pooled variance (D (M - 1) degrees of freedom) has relative standard error
    sqrt(2 / (D (M - 1))) (chi-square, excellent normal approximation at this size).
    """
    M, D = samples.shape
    z_mean = (samples.mean(0) - mean) / math.sqrt(var / M)
    pooled = samples.var(0, ddof=1).mean()
    z_var = (pooled / var - 1) / math.sqrt(2 / (D * (M - 1)))
    return z_mean, z_var


def assert_gaussian_moments(samples, mean, var, what="moments"):
    z_mean, z_var = gaussian_z_scores(samples, mean, var)
    assert np.abs(z_mean).max() < N_SE, (
        f"{what}: mean off by {np.abs(z_mean).max():.1f} standard errors"
    )
    assert abs(z_var) < N_SE, f"{what}: variance off by {z_var:.1f} standard errors"


@pytest.mark.parametrize("eps_factor, steps", [(1.0, 60), (1.5, 40), (0.2, 150)])
def test_langevin_matches_the_exact_ar1_moments(eps_factor, steps):
    """ULA from I0 = 0 has the closed-form moments at every step (not only at stationarity)."""
    eps = eps_factor * SIGMA
    result = langevin(LINEAR, np.zeros((CHAINS, 4)), steps, eps, make_rng(1))
    mean, var = ula_moments(eps, SIGMA, TARGET_MEAN, steps)
    assert_gaussian_moments(result.samples, mean, var, f"ULA eps = {eps_factor} sigma")


def test_langevin_variance_bias_is_visible_at_large_step_and_fades_at_small_step():
    """ULA from exact draws of p drifts to the AR(1) law: visibly wrong at eps = sigma only."""
    rng = make_rng(2)
    start = TARGET_MEAN + SIGMA * rng.standard_normal((CHAINS, 4))  # exact draws from p
    # eps = sigma: variance sigma^2 / (1 - 1/4) (a^60 = 1e-18 of sigma^2 left), 33% too large,
    # 65 standard errors of the pooled variance (0.5%).
    big = langevin(LINEAR, start, 30, SIGMA, rng).samples
    assert_gaussian_moments(
        big, TARGET_MEAN, SIGMA**2 / 0.75, "ULA at eps = sigma vs its AR(1) law"
    )
    with pytest.raises(AssertionError, match="variance off"):  # the negative control
        assert_gaussian_moments(big, TARGET_MEAN, SIGMA**2, "ULA vs p")
    # eps = 0.1 sigma: the mean is a fixed point of the drift and the variance moves from
    # sigma^2 towards sigma^2 / (1 - 0.0025), at most 0.25% (half a standard error) off p.
    small = langevin(LINEAR, start, 300, 0.1 * SIGMA, rng).samples
    assert_gaussian_moments(small, TARGET_MEAN, SIGMA**2, "ULA at a small step vs p")


def test_mala_has_no_variance_bias():
    """MALA at eps = sigma: the moments of p itself, where ULA is 33% off (negative control)."""
    rng = make_rng(4)
    start = TARGET_MEAN + SIGMA * rng.standard_normal((CHAINS, 4))  # exact draws from p
    result = mala(LINEAR, start, 30, SIGMA, rng)
    # the chains really moved (else stationarity would be trivial)
    assert result.acceptance.mean() > 0.5
    assert np.mean(np.any(result.samples != start, axis=1)) > 0.99
    assert_gaussian_moments(result.samples, TARGET_MEAN, SIGMA**2, "MALA")
    ula = langevin(LINEAR, start, 30, SIGMA, make_rng(4)).samples
    with pytest.raises(AssertionError, match="variance off"):
        assert_gaussian_moments(ula, TARGET_MEAN, SIGMA**2, "ULA")


# --- reproducibility ----------------------------------------------------------------------


def relu_model(seed=0, dim=3, n_filters=4):
    return instances.prototype(np.random.default_rng(seed), dim, n_filters)


@pytest.mark.parametrize("sampler", [langevin, mala])
def test_seeded_chains_are_reproducible_and_leave_I0_alone(sampler):
    model = relu_model()
    I0 = np.random.default_rng(5).standard_normal((50, 3))
    saved = I0.copy()
    one = sampler(model, I0, 20, 0.5 * model.sigma, make_rng(11))
    two = sampler(model, I0, 20, 0.5 * model.sigma, make_rng(11))
    other = sampler(model, I0, 20, 0.5 * model.sigma, make_rng(12))
    assert np.array_equal(I0, saved), "the sampler modified I0"
    assert np.array_equal(one.samples, two.samples)
    if one.acceptance is not None:
        assert np.array_equal(one.acceptance, two.acceptance)
    assert not np.any(
        np.all(one.samples == other.samples, axis=1)
    )  # negative control: seeds matter
    assert one.samples.shape == I0.shape and one.steps == 20


def test_deterministic_samplers_leave_I0_alone():
    model = relu_model()
    I0 = np.random.default_rng(6).standard_normal((20, 3))
    saved = I0.copy()
    grade(model, I0, 50, model.sigma)
    fixed_point(model, I0)
    assert np.array_equal(I0, saved)


# --- GRADE ----------------------------------------------------------------------------------


def grade_steps_predicted(I0, eps, sigma, mean, tol):
    """Updates each chain makes before GRADE stops, on the Gaussian N(mean, sigma^2 I).

    There ``I_t = mean + a^t (I0 - mean)`` with ``a = 1 - eps^2 / (2 sigma^2)``, and the
    update from ``I_t`` is ``(1 - a)(mean - I_t)``; the chain stops at the first ``t`` where
    the sampler's own rule :func:`grade_stops` holds. Also returns the smallest relative
    distance of ``||update_t||`` from the rule's threshold over all steps, so a test can
    confirm that rounding (``I_t`` closed form vs iterated, ~1e-14 relative) cannot move a
    crossing.
    """
    a, steps, margin = 1 - eps**2 / (2 * sigma**2), [], np.inf
    for x in I0:
        t = 0
        while True:
            I = mean + a**t * (x - mean)
            size, threshold = (1 - a) * np.linalg.norm(I - mean), tol * (np.linalg.norm(I) + sigma)
            margin = min(margin, abs(size - threshold) / threshold)
            if grade_stops(size, np.linalg.norm(I), tol, sigma):
                break
            t += 1
        steps.append(t)
    return np.array(steps), margin


def assert_auto_encoding(model, I, rtol, what="I = sigma^2 B"):
    """Proposition 2: ``I = sigma^2 B_{w,delta(I)}`` for each chain, relative to ``|I| + sigma``."""
    gap = np.linalg.norm(I - model.piece_mean(I), axis=1) / (
        np.linalg.norm(I, axis=1) + model.sigma
    )
    assert gap.max() <= rtol, f"{what}: residual {gap.max():.3e} exceeds {rtol:.0e}"


def test_grade_converges_to_the_gaussian_mode():
    I0 = 3 * np.random.default_rng(7).standard_normal((40, 4))
    tol = 1e-12
    result = grade(LINEAR, I0, 500, SIGMA, tol=tol)
    assert result.converged.all()
    # At the stop I is within grade_mode_residual (2 sigma^2 tol / eps^2 = 2e-12 here, eps =
    # sigma) of the mode, relative to |I| + sigma; plus rounding (EXACT).
    bound = grade_mode_residual(SIGMA, SIGMA, tol) + EXACT
    gaps = np.linalg.norm(result.samples - TARGET_MEAN, axis=1)
    assert (gaps / (np.linalg.norm(result.samples, axis=1) + SIGMA)).max() <= bound
    # chain_steps: exactly the updates predicted by I_t = m + a^t (I0 - m) and the sampler's
    # rule, when no step lies within 1e-9 of the threshold (rounding is ~1e-14 relative)
    predicted, margin = grade_steps_predicted(I0, SIGMA, SIGMA, TARGET_MEAN, tol)
    assert margin > 1e-9, "a chain crosses the threshold within rounding; pick another I0"
    assert np.array_equal(result.chain_steps, predicted)
    assert result.steps == result.chain_steps.max() + 1
    # negative control: too few steps, nothing has converged and the mode is not reached
    early = grade(LINEAR, I0, 5, SIGMA, tol=tol)
    assert not early.converged.any() and (early.chain_steps == 5).all()
    assert min(relative_error(I, TARGET_MEAN) for I in early.samples) > 1e-3


def test_negative_control_a_wrong_stopping_rule_mispredicts_the_steps():
    """The rule the old test restated, tol (|I| + tol), stops later than the sampler's."""
    I0 = 3 * np.random.default_rng(7).standard_normal((40, 4))
    tol, a = 1e-12, 0.5
    result = grade(LINEAR, I0, 500, SIGMA, tol=tol)
    wrong = []
    for x in I0:
        t = 0
        while (1 - a) * np.linalg.norm(a**t * (x - TARGET_MEAN)) > tol * (
            np.linalg.norm(TARGET_MEAN + a**t * (x - TARGET_MEAN)) + tol
        ):
            t += 1
        wrong.append(t)
    assert not np.array_equal(result.chain_steps, np.array(wrong))


def test_grade_reaches_auto_encoding_points_of_a_relu_prototype():
    model = relu_model(seed=1, dim=3, n_filters=5)
    I0 = 2 * model.sigma * np.random.default_rng(8).standard_normal((200, 3))
    result = grade(model, I0, 3000, model.sigma, tol=1e-12)
    assert result.converged.all() and (result.chain_steps >= 1).all()
    assert (result.chain_steps <= result.steps).all()
    # at the stop ||I - sigma^2 B|| <= grade_mode_residual (|I| + sigma), plus rounding
    assert_auto_encoding(
        model, result.samples, grade_mode_residual(model.sigma, model.sigma, 1e-12) + EXACT
    )
    # restarting at a mode: no update, converged at once
    again = grade(model, result.samples, 10, model.sigma, tol=1e-12)
    assert again.converged.all() and (again.chain_steps == 0).all()
    assert np.array_equal(again.samples, result.samples)
    # the modes are few (Gaussian pieces whose mean lies inside them)
    assert len(np.unique(np.round(result.samples, 8), axis=0)) < 2**5


def test_negative_control_auto_encoding_check_fails_at_the_start_points():
    model = relu_model(seed=1, dim=3, n_filters=5)
    I0 = 2 * model.sigma * np.random.default_rng(8).standard_normal((200, 3))
    with pytest.raises(AssertionError, match="I = sigma"):
        assert_auto_encoding(model, I0, 1e-10)


# --- fixed-point iteration --------------------------------------------------------------------


def assert_non_decreasing(trace, what="log p"):
    """Each row of ``trace (steps, M)`` is >= the one before, up to rounding of log p.

    The rounding allowance is ``EXACT`` (1e-12) relative to ``|log p| + 1``.
    """
    trace = np.asarray(trace)
    drop = trace[:-1] - trace[1:]
    allowed = EXACT * (np.abs(trace[:-1]) + 1)
    worst = float((drop - allowed).max())
    assert worst <= 0, f"{what} decreased by {drop.max():.3e}"


def test_fixed_point_ascends_and_stops_at_auto_encoding_points():
    model = relu_model(seed=2, dim=3, n_filters=5)
    I0 = 2 * model.sigma * np.random.default_rng(9).standard_normal((500, 3))
    log_p = model.log_density_unnormalised
    result = fixed_point(model, I0, max_steps=100, record=lambda step, I: log_p(I))
    trace = [log_p(I0)] + result.trace
    assert len(result.trace) == result.steps
    assert_non_decreasing(trace)
    assert result.converged.all() and (result.chain_steps >= 1).all()
    assert result.chain_steps.max() == result.steps
    # a chain stops when the pattern repeats, so its point is sigma^2 B of its own piece
    assert_close(result.samples, model.piece_mean(result.samples), EXACT, "I = sigma^2 B")


def test_negative_control_monotonicity_check_catches_a_wrong_jump():
    """Jumping to -sigma^2 B instead of +sigma^2 B lowers log p for some chain."""
    model = relu_model(seed=2, dim=3, n_filters=5)
    I = 2 * model.sigma * np.random.default_rng(9).standard_normal((500, 3))
    trace = [model.log_density_unnormalised(I)]
    for _ in range(10):
        I = -model.piece_mean(I)
        trace.append(model.log_density_unnormalised(I))
    with pytest.raises(AssertionError, match="log p decreased"):
        assert_non_decreasing(trace)


# --- MALA -------------------------------------------------------------------------------------


def test_mala_acceptance_is_a_rate_that_falls_with_the_step():
    model = relu_model(seed=3, dim=5, n_filters=4)
    I0 = model.sigma * np.random.default_rng(10).standard_normal((2000, 5))
    rates = {}
    for factor in (0.01, 0.5, 1.9):
        result = mala(model, I0, 20, factor * model.sigma, make_rng(13))
        assert result.acceptance.shape == (2000,)
        assert ((result.acceptance >= 0) & (result.acceptance <= 1)).all()
        rates[factor] = result.acceptance.mean()
    # a tiny step: the Hastings ratio is 1 + O(eps^3), essentially every proposal is accepted
    assert rates[0.01] > 0.999
    assert rates[0.01] > rates[0.5] > rates[1.9]
    assert rates[1.9] < 0.9


@pytest.fixture(scope="module")
def one_d():
    """A 1-D ReLU prototype with four pieces of mass 0.10-0.54, and its exact distribution."""
    model = instances.prototype(np.random.default_rng(5), 1, 3)
    dist = exact_distribution(model)
    assert len(dist.probs) == 4 and dist.probs.min() > 0.05
    return model, dist


def test_mala_preserves_the_exact_distribution_and_ula_does_not(one_d):
    model, dist = one_d
    rng = make_rng(14)
    start = dist.sample(CHAINS, rng)
    eps = 1.5 * model.sigma  # ULA's Gaussian parts would have 2.3 times the variance
    moved = mala(model, start, 20, eps, rng)
    assert moved.acceptance.mean() > 0.2
    # p-value > 1e-4: a correct sampler fails with probability 1e-4 (and this run is seeded).
    assert stats.kstest(moved.samples[:, 0], dist.cdf).pvalue > 1e-4
    biased = langevin(model, start, 20, eps, make_rng(14)).samples
    assert stats.kstest(biased[:, 0], dist.cdf).pvalue < 1e-4  # negative control


# --- divergence ---------------------------------------------------------------------------------


def exploding(model, monkeypatch):
    """d log p / dI = inf everywhere, without the scoring function's input checks."""
    monkeypatch.setattr(model, "grad_log_density", lambda I: np.full_like(I, np.inf))
    return model


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_langevin_divergence_raises_floating_point_error(monkeypatch):
    model = exploding(relu_model(), monkeypatch)
    with pytest.raises(FloatingPointError, match=r"Langevin dynamics diverged.*step size 0\.3"):
        langevin(model, np.zeros((3, 3)), 5, 0.3, make_rng(0))
    with pytest.raises(FloatingPointError, match=r"GRADE dynamics diverged.*step size 0\.3"):
        grade(model, np.ones((3, 3)), 5, 0.3)


def overflowing_model():
    """A real model whose df/dI overflows: B = w_1 + w_2 = 2e308 = inf wherever both are on."""
    return GenerativeModel(PrototypeModel(np.array([[1e308], [1e308]]), np.zeros(2)), sigma=1.0)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_langevin_overflow_in_the_last_step_raises_floating_point_error():
    with pytest.raises(FloatingPointError, match="step size 1.9"):
        langevin(overflowing_model(), np.ones((2, 1)), 1, 1.9, make_rng(0))


def test_negative_control_no_divergence_no_error():
    result = langevin(relu_model(), np.zeros((3, 3)), 5, 1.9 * relu_model().sigma, make_rng(0))
    assert np.isfinite(result.samples).all()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("sampler", ["langevin", "grade"])
def test_divergence_before_the_last_step_raises_floating_point_error(sampler):
    """The chains are checked after every update, so an early overflow names the step size."""
    model, I0 = overflowing_model(), np.ones((2, 1))
    with pytest.raises(FloatingPointError, match="step size"):
        if sampler == "langevin":
            langevin(model, I0, 3, 1.9, make_rng(0))
        else:
            grade(model, I0, 3, 1.9)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_mala_rejects_non_finite_proposals():
    """A proposal that overflows has no density: MALA rejects it and the chain stays finite."""
    model, I0 = overflowing_model(), np.ones((2, 1))
    result = mala(model, I0, 3, 1.9, make_rng(0))
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
    positions = []
    result = mala(model, np.zeros((200, 1)), 40, 1.0, make_rng(3), record=lambda step, I: I.copy())
    positions = np.stack(result.trace)[:, :, 0]  # (steps + 1, chains)
    moved_late = (np.diff(positions[1:], axis=0) != 0).any(axis=0)  # a move after step 1
    assert np.isfinite(result.samples).all()
    assert moved_late.all(), f"{(~moved_late).sum()} of 200 chains froze"
    assert result.acceptance.min() > 0


def test_negative_control_blending_freezes_chains():
    """The blend the test guards against, on the same kind of rejection, produces NaN."""
    grad, grad_j, accept = (
        np.zeros((3, 1)),
        np.array([[np.inf], [1.0], [np.inf]]),
        np.array([0.0, 1.0, 0.0]),
    )
    mask = accept[:, None]
    with np.errstate(invalid="ignore"):
        blended = mask * grad_j + (1 - mask) * grad
    assert np.isnan(blended[[0, 2]]).all()


# --- injected randomness --------------------------------------------------------------------


def test_langevin_with_drawn_noise_equals_the_generator_run():
    """Same draws in, same chains out: exactly (the same operations in the same order)."""
    model, I0 = relu_model(), np.zeros((5, 3))
    by_rng = langevin(model, I0, 7, 0.4, make_rng(21)).samples
    noise = draw_langevin_noise(make_rng(21), 7, I0.shape)
    assert np.array_equal(langevin(model, I0, 7, 0.4, noise=noise).samples, by_rng)
    # negative control: other draws, other chains
    other = draw_langevin_noise(make_rng(22), 7, I0.shape)
    assert not np.array_equal(langevin(model, I0, 7, 0.4, noise=other).samples, by_rng)


@pytest.mark.parametrize("image_shaped", [False, True])
def test_mala_with_drawn_noise_and_uniforms_equals_the_generator_run(image_shaped):
    """Vectors (M, D) and image-shaped chains (M, C, H, W): one uniform per chain and step."""
    if image_shaped:
        net = ConvNet.random(2, [(3, 3, 1, 1), (2, 2)], seed=5)
        model, I0 = GenerativeModel(net, 0.8), np.zeros((5, 2, 4, 3))
    else:
        model, I0 = relu_model(), np.zeros((5, 3))
    by_rng = mala(model, I0, 7, 0.8, make_rng(23))
    noise, uniforms = draw_mala_randomness(make_rng(23), 7, I0.shape)
    given = mala(model, I0, 7, 0.8, noise=noise, uniforms=uniforms)
    assert np.array_equal(given.samples, by_rng.samples)
    assert np.array_equal(given.acceptance, by_rng.acceptance)
    # negative control: uniforms of another stream change the decisions
    _, other = draw_mala_randomness(make_rng(24), 7, I0.shape)
    changed = mala(model, I0, 7, 0.8, noise=noise, uniforms=other)
    assert not np.array_equal(changed.acceptance, by_rng.acceptance)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of rng"),
        (dict(rng=make_rng(0), noise=np.zeros((2, 1, 3))), "both"),
        (dict(noise=np.zeros((3, 1, 3))), r"noise must have shape \(2, 1, 3\)"),
        (dict(noise=np.full((2, 1, 3), np.nan)), "non-finite"),
    ],
)
def test_langevin_randomness_is_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        langevin(relu_model(), np.zeros((1, 3)), 2, 0.3, **kwargs)
