"""Lesson 7 (auto-encoding modes, Eq. (5.7), Proposition 2, Eq. (6.11)): GRADE and the fixed point.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references:

* closed forms: on a Gaussian target (the linear prototype) GRADE is the geometric sequence
  ``I_t = m + a^t (I_0 - m)``, ``a = 1 - eps^2 / (2 sigma^2)``, and its stopping step follows
  from the sampler's stopping rule ``grade_stops`` (imported: the rule has one home, in
  refimpl.sampling, and the graded function is asked to use it);
* brute force: the modes of a ReLU prototype are the self-consistent piece means, found by
  enumerating all 2^K activation patterns (``delta(sigma^2 B_delta) = delta``);
* the fixed-point iteration written out in this file (``B = sum_k 1(r_k > 0) w_k`` by hand);
* refimpl's ConvNet top-down pass (``linear_piece``), for the auto-encoding of ConvNet modes.
"""

import itertools

import numpy as np
import pytest
from checks import EXACT, assert_close

from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.sampling import fixed_point, grade, grade_mode_residual, grade_stops
from refimpl.theorems import instances

GRADED = {
    "sampling.samplers.grade": ["test_grade"],
    "sampling.samplers.fixed_point": ["test_fixed_point"],
}

# A Gaussian target: p = N(m, sigma^2 I) with m = sigma^2 sum_k w_k (linear prototype).
G_SIGMA = 0.7
G_W = np.array([[0.4, -0.3, 1.0, 0.2], [0.6, 0.2, -0.5, 0.8]])
GAUSS = GenerativeModel(PrototypeModel(G_W, np.array([0.3, -0.2]), activation="linear"), G_SIGMA)
G_MEAN = G_SIGMA**2 * G_W.sum(0)
G_START = 3 * np.random.default_rng(0).standard_normal((30, 4))

# A ReLU prototype in D = 3 with K = 5 filters and sigma != 1.
SIGMA = 1.3
W = np.random.default_rng(7).standard_normal((5, 3)) * 1.2
b = np.random.default_rng(107).standard_normal(5) * 0.8 - 0.5  # five modes
RELU = GenerativeModel(PrototypeModel(W, b), SIGMA)


def piece_mean(I):
    """sigma^2 B_{w,delta(I)} with B = sum_k 1(<I, w_k> + b_k > 0) w_k, written out."""
    return SIGMA**2 * ((I @ W.T + b > 0).astype(float) @ W)


def log_p(I):
    """log p + log Z = f - |I|^2 / (2 sigma^2) + const, written out."""
    return np.maximum(I @ W.T + b, 0).sum(-1) - (I**2).sum(-1) / (2 * SIGMA**2)


def brute_force_modes():
    """All self-consistent piece means: delta(sigma^2 B_delta) = delta, over the 2^K patterns."""
    patterns = np.array(list(itertools.product([0.0, 1.0], repeat=len(W))))
    means = SIGMA**2 * patterns @ W
    keep = ((means @ W.T + b > 0) == (patterns > 0)).all(axis=1)
    return means[keep]


def reference_fixed_point(I, max_steps=100):
    """Jump to the piece mean until the pattern repeats; returns (point, jumps, stopped)."""
    for jumps in range(1, max_steps + 1):
        J = piece_mean(I)
        if np.array_equal(J @ W.T + b > 0, I @ W.T + b > 0):
            return J, jumps, True
        I = J
    return I, max_steps, False


def assert_auto_encoding(I, rtol, what="I = sigma^2 B"):
    """Proposition 2: ``I = sigma^2 B_{w,delta(I)}`` for each chain, relative to ``|I| + sigma``."""
    gap = np.linalg.norm(I - piece_mean(I), axis=1) / (np.linalg.norm(I, axis=1) + SIGMA)
    assert gap.max() <= rtol, f"{what}: residual {gap.max():.3e} exceeds {rtol:.0e}"


# --- grade -------------------------------------------------------------------------------------


def test_grade_follows_the_geometric_sequence_on_a_gaussian():
    """Each step is I <- I + (eps^2/2)(m - I)/sigma^2, i.e. I_t - m = a^t (I_0 - m).

    Exact arithmetic makes the two equal; 12 updates of a few roundings each stay far below
    EXACT (measured ~1e-15)."""
    eps = 0.6 * G_SIGMA
    a = 1 - eps**2 / (2 * G_SIGMA**2)
    never = 1e-300  # a tolerance no update falls below: every chain makes all 12 updates
    result = grade(GAUSS, G_START, 12, eps, tol=never, record=lambda step, I: I.copy())
    assert len(result.trace) == 13
    for t, I in enumerate(result.trace):
        assert_close(I, G_MEAN + a**t * (G_START - G_MEAN), EXACT, f"GRADE after {t} steps")
    assert not result.converged.any() and (result.chain_steps == 12).all()


def predicted_updates(I0, eps, tol, stops=grade_stops):
    """Updates each chain makes before GRADE stops it, on the Gaussian ``N(m, sigma^2 I)``.

    From the closed form ``I_t = m + a^t (I0 - m)`` the update at ``I_t`` is
    ``(1 - a)(m - I_t)``; the chain stops at the first ``t`` where the rule ``stops`` holds.
    Also returns whether every decision is robust: unchanged when ``|update_t|`` moves by
    1e-9 relative, far beyond the rounding that separates the closed form from the iterated
    chain (~1e-14 relative), so rounding cannot move a stop by a step.
    """
    a = 1 - eps**2 / (2 * G_SIGMA**2)
    out, robust = [], True
    for x in I0:
        t = 0
        while True:
            I = G_MEAN + a**t * (x - G_MEAN)
            size, norm = (1 - a) * np.linalg.norm(G_MEAN - I), np.linalg.norm(I)
            decisions = {bool(stops(size * f, norm, tol, G_SIGMA)) for f in (1 - 1e-9, 1 + 1e-9)}
            robust &= len(decisions) == 1
            if stops(size, norm, tol, G_SIGMA):
                break
            t += 1
        out.append(t)
    return np.array(out), robust


@pytest.mark.parametrize("tol", [1e-6, 1e-12])
def test_grade_stops_each_chain_by_the_rule(tol):
    """Exactly the predicted number of updates per chain, and at the stop the chain is within
    grade_mode_residual (2 sigma^2 tol / eps^2, Proposition 2) of the mode, plus rounding."""
    eps = G_SIGMA
    result = grade(GAUSS, G_START, 500, eps, tol=tol)
    predicted, robust = predicted_updates(G_START, eps, tol)
    assert robust, "a chain crosses the threshold within rounding; pick another start"
    assert result.converged.all()
    assert np.array_equal(result.chain_steps, predicted)
    assert result.steps == result.chain_steps.max() + 1  # the last iteration finds all stopped
    err = np.linalg.norm(result.samples - G_MEAN, axis=1) / (
        np.linalg.norm(result.samples, axis=1) + G_SIGMA
    )
    assert err.max() <= grade_mode_residual(eps, G_SIGMA, tol) + EXACT


def test_grade_stops_chains_one_by_one():
    """A chain that starts at the mode makes no update while the others still move."""
    start = np.vstack([G_MEAN, G_START[:3]])
    result = grade(GAUSS, start, 500, G_SIGMA, tol=1e-12)
    assert result.chain_steps[0] == 0 and np.array_equal(result.samples[0], G_MEAN)
    assert (result.chain_steps[1:] > 10).all() and result.converged.all()


def test_grade_too_few_steps_do_not_converge():
    result = grade(GAUSS, G_START, 5, G_SIGMA, tol=1e-12)
    assert not result.converged.any() and (result.chain_steps == 5).all()


def test_grade_reaches_the_brute_force_modes_of_a_relu_prototype():
    """Every endpoint is a self-consistent piece mean (Eq. (5.7)) and a local maximum of log p."""
    modes = brute_force_modes()
    assert len(modes) >= 2, "the test needs a model with several modes"
    starts = 2.5 * SIGMA * np.random.default_rng(3).standard_normal((300, 3))
    eps, tol = 0.8 * SIGMA, 1e-12
    result = grade(RELU, starts, 5000, eps, tol=tol)
    assert result.converged.all()
    end = result.samples
    # at the stop |I - sigma^2 B| <= grade_mode_residual (|I| + sigma), plus rounding; the
    # endpoint's piece is the mode's, so that is also its distance to the mode
    bound = grade_mode_residual(eps, SIGMA, tol) + EXACT
    assert_auto_encoding(end, bound)
    distance = np.sqrt(((end[:, None, :] - modes[None]) ** 2).sum(2)).min(axis=1)
    assert (distance <= bound * (np.linalg.norm(end, axis=1) + SIGMA)).all()
    # local maxima: a move of 1e-3 sigma lowers log p by |move|^2 / (2 sigma^2) >= 1.2e-8
    # for these moves, 1e6 times the rounding of log p (|log p| < 7: ~1e-14)
    moves = 1e-3 * SIGMA * np.random.default_rng(4).standard_normal((200, 3))
    rise = (log_p(end[:, None, :] + moves[None]) - log_p(end)[:, None]).max()
    assert rise < 0
    # and more than one basin is visited
    assert len(np.unique(np.round(end, 6), axis=0)) >= 2


def test_grade_leaves_the_start_alone_and_records():
    saved = G_START.copy()
    seen = []
    grade(
        GAUSS,
        G_START,
        7,
        G_SIGMA,
        tol=1e-300,  # no chain stops: every recorded step happens
        record=lambda step, I: seen.append(step),
        record_every=3,
    )
    assert np.array_equal(G_START, saved)
    assert seen == [0, 3, 6]


def test_grade_restarted_at_its_endpoints_does_not_move():
    starts = 2 * SIGMA * np.random.default_rng(5).standard_normal((50, 3))
    first = grade(RELU, starts, 5000, 0.8 * SIGMA, tol=1e-12)
    again = grade(RELU, first.samples, 10, 0.8 * SIGMA, tol=1e-12)
    assert again.converged.all() and (again.chain_steps == 0).all()
    assert np.array_equal(again.samples, first.samples)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_grade_divergence_raises_floating_point_error():
    """B = 2e308 overflows to inf where both units fire: a clear error naming the step size."""
    model = GenerativeModel(PrototypeModel(np.array([[1e308], [1e308]]), np.zeros(2)), sigma=1.0)
    with pytest.raises(FloatingPointError, match="step size"):
        grade(model, np.ones((2, 1)), 3, 1.9)


# --- fixed_point -------------------------------------------------------------------------------


def test_fixed_point_equals_the_reference_iteration():
    starts = 3 * SIGMA * np.random.default_rng(6).standard_normal((400, 3))
    result = fixed_point(RELU, starts)
    expected = [reference_fixed_point(x[None]) for x in starts]
    # the same jumps; sigma^2 B sums K = 5 filters in another order: rounding far below EXACT
    assert_close(result.samples, np.vstack([e[0] for e in expected]), EXACT, "end points")
    assert np.array_equal(result.chain_steps, [e[1] for e in expected])
    assert result.converged.all()
    assert max(e[1] for e in expected) >= 2, "the test needs chains that jump more than once"
    assert result.steps == max(e[1] for e in expected)


def test_fixed_point_ends_at_auto_encoding_brute_force_modes():
    starts = 3 * SIGMA * np.random.default_rng(7).standard_normal((400, 3))
    end = fixed_point(RELU, starts).samples
    # a stopped chain sits at sigma^2 B of its own piece: equal up to summation order (EXACT)
    assert_close(end, piece_mean(end), EXACT, "I = sigma^2 B")
    modes = brute_force_modes()
    distance = np.sqrt(((end[:, None, :] - modes[None]) ** 2).sum(2)).min(axis=1)
    assert distance.max() <= EXACT * (1 + np.abs(modes).max())


def assert_gain_at_least(gain, bound, log_p_before):
    """``gain >= bound`` up to the rounding of two log p values (EXACT relative to |log p| + 1)."""
    short = (bound - gain) - EXACT * (1 + np.abs(log_p_before))
    assert (short <= 0).all(), f"log p rose by less than the bound, short by {short.max():.3e}"


def test_fixed_point_never_lowers_log_p():
    """f convex: log p(sigma^2 B) - log p(I) >= |I - sigma^2 B|^2 / (2 sigma^2) at every jump."""
    starts = 3 * SIGMA * np.random.default_rng(8).standard_normal((400, 3))
    result = fixed_point(RELU, starts, record=lambda step, I: I.copy())
    points = [starts] + result.trace
    for before, after in zip(points[:-1], points[1:]):
        moved = np.any(before != after, axis=1)
        gain = log_p(after[moved]) - log_p(before[moved])
        bound = ((before[moved] - after[moved]) ** 2).sum(1) / (2 * SIGMA**2)
        assert_gain_at_least(gain, bound, log_p(before[moved]))


def test_fixed_point_respects_max_steps():
    starts = 3 * SIGMA * np.random.default_rng(9).standard_normal((400, 3))
    expected = [reference_fixed_point(x[None], max_steps=1) for x in starts]
    result = fixed_point(RELU, starts, max_steps=1)
    assert np.array_equal(result.converged, [e[2] for e in expected])
    assert 0 < result.converged.mean() < 1
    assert_close(result.samples, np.vstack([e[0] for e in expected]), EXACT, "after one jump")
    assert (result.chain_steps == 1).all()


def test_fixed_point_stopped_chains_stay_put():
    """Chains stop one by one: a chain already at a mode makes one jump (onto itself) and stops,
    and is not moved again while the others go on."""
    modes = brute_force_modes()
    starts = np.vstack([modes[:1], 3 * SIGMA * np.random.default_rng(10).standard_normal((100, 3))])
    result = fixed_point(RELU, starts)
    assert result.chain_steps[0] == 1 and result.steps >= 2
    assert_close(result.samples[0], modes[0], EXACT, "the mode")


def test_fixed_point_leaves_the_start_alone():
    starts = np.random.default_rng(11).standard_normal((20, 3))
    saved = starts.copy()
    fixed_point(RELU, starts)
    assert np.array_equal(starts, saved)


def test_fixed_point_on_a_convex_convnet_auto_encodes():
    """A multi-layer ConvNet with non-negative upper weights (convex f): the jumps stop at
    images with I = sigma^2 B_{w,delta(I)}, B by the ConvNet's own top-down pass."""
    model, shape = instances.image_convnet(np.random.default_rng(12), 1, 6, 2, convex=True)
    starts = 2 * model.sigma * np.random.default_rng(13).standard_normal((8,) + shape)
    result = fixed_point(model, starts, max_steps=200)
    assert result.converged.all()
    _, B = model.scoring.linear_piece(result.samples)
    assert_close(result.samples, model.sigma**2 * B, EXACT, "I = sigma^2 B")


# --- the checks can fail (not graded) ---------------------------------------------------------


def test_negative_control_a_wrong_stopping_rule_mispredicts_the_steps():
    """The rule an older test restated, ``|update| <= tol (|I| + tol)``, stops later: the
    exact comparison of the steps tells the two rules apart."""
    wrong = lambda size, norm, tol, sigma: size <= tol * (norm + tol)
    right, _ = predicted_updates(G_START, G_SIGMA, 1e-12)
    predicted, _ = predicted_updates(G_START, G_SIGMA, 1e-12, stops=wrong)
    assert not np.array_equal(right, predicted)


def test_negative_control_auto_encoding_check_fails_at_the_start_points():
    starts = 2.5 * SIGMA * np.random.default_rng(3).standard_normal((300, 3))
    with pytest.raises(AssertionError, match="I = sigma"):
        assert_auto_encoding(starts, 1e-3)  # residuals at random starts are O(1)


def test_negative_control_gain_check_catches_a_wrong_jump():
    """Jumping to -sigma^2 B instead of +sigma^2 B lowers log p for some chain."""
    before = 3 * SIGMA * np.random.default_rng(8).standard_normal((400, 3))
    after = -piece_mean(before)
    bound = ((before - after) ** 2).sum(1) / (2 * SIGMA**2)
    with pytest.raises(AssertionError, match="short by"):
        assert_gain_at_least(log_p(after) - log_p(before), bound, log_p(before))
