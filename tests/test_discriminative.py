"""The discriminative softmax (2.3) and Dai, Lu & Wu's batch log-likelihoods l_D, l_G.

Tests of refimpl.models.discriminative: hand computations, central finite differences (gradcheck),
the invariances that tell l_D and l_G apart, stability, argument checks, and a negative control for
each kind of check.
"""

import math

import numpy as np
import pytest
from checks import EXACT, assert_close
from gradcheck import assert_gradient, input_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import softmax as scipy_softmax
from strategies import seeds

from refimpl.models import discriminative as disc


@st.composite
def labelled_scores(draw, max_examples: int = 6, max_classes: int = 4, scale: float = 3.0):
    """``(scores (M, C), labels (M,))`` with normal scores of standard deviation ``scale``."""
    rng = np.random.default_rng(draw(seeds))
    m, c = draw(st.integers(1, max_examples)), draw(st.integers(1, max_classes))
    return scale * rng.standard_normal((m, c)), rng.integers(0, c, size=m)


S_HAND = np.array([[0.0, math.log(2.0)], [math.log(3.0), 0.0], [0.0, 0.0]])
Y_HAND = np.array([1, 0, 1])


# --- the softmax, Eq. (2.3) --------------------------------------------------------------


def test_softmax_posterior_by_hand():
    scores = np.array([[0.0, math.log(2.0), math.log(3.0)]])
    assert_close(disc.softmax_posterior(scores), [[1 / 6, 2 / 6, 3 / 6]], EXACT)
    # biases add to the scores: b = (log 3, 0, 0) makes the first class as likely as the third
    assert_close(
        disc.softmax_posterior(scores, np.array([math.log(3.0), 0.0, 0.0])),
        [[3 / 8, 2 / 8, 3 / 8]],
        EXACT,
    )


@given(labelled_scores())
def test_softmax_posterior_equals_scipy(problem):
    scores, _ = problem
    biases = np.linspace(-1, 1, scores.shape[1])
    assert_close(
        disc.softmax_posterior(scores, biases), scipy_softmax(scores + biases, axis=1), EXACT
    )
    assert_close(disc.log_softmax(scores, axis=0), scipy_log_softmax(scores, axis=0), EXACT)


def test_softmax_posterior_is_stable_for_large_scores():
    scores = np.array([[1000.0, 1000.0 + math.log(3.0)], [-1000.0, -1000.0]])
    assert_close(disc.softmax_posterior(scores), [[0.25, 0.75], [0.5, 0.5]], EXACT)
    assert np.isfinite(disc.log_softmax(np.array([[0.0, 2000.0]]))).all()


def test_negative_control_unshifted_softmax_overflows():
    """The stability test can fail: exponentiating the raw scores overflows at 1000."""
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(np.array([[1000.0, 1001.0]]))
        naive = naive / naive.sum(axis=1, keepdims=True)
    assert not np.isfinite(naive).all()


# --- the log-likelihoods ---------------------------------------------------------------------


def test_log_likelihoods_by_hand():
    # l_D: rows normalised over classes: log(2/3) + log(3/4) + log(1/2)
    assert disc.discriminative_log_likelihood(S_HAND, Y_HAND) == pytest.approx(
        math.log(2 / 3) + math.log(3 / 4) + math.log(1 / 2), abs=1e-14
    )
    # l_G: columns normalised over examples. Column 1 = (log 2, 0, 0): exp sum 4, examples 0 and 2
    # are labelled 1; column 0 = (0, log 3, 0): exp sum 5, example 1 is labelled 0.
    assert disc.generative_log_likelihood(S_HAND, Y_HAND) == pytest.approx(
        math.log(2 / 4) + math.log(3 / 5) + math.log(1 / 4), abs=1e-14
    )


@settings(max_examples=50)
@given(labelled_scores())
def test_log_likelihoods_equal_brute_force_sums(problem):
    scores, labels = problem
    l_d = sum(
        scores[i, y] - math.log(sum(math.exp(s) for s in scores[i])) for i, y in enumerate(labels)
    )
    l_g = sum(
        scores[i, y] - math.log(sum(math.exp(s) for s in scores[:, y]))
        for i, y in enumerate(labels)
    )
    assert disc.discriminative_log_likelihood(scores, labels) == pytest.approx(
        l_d, rel=1e-12, abs=1e-12
    )
    assert disc.generative_log_likelihood(scores, labels) == pytest.approx(
        l_g, rel=1e-12, abs=1e-12
    )


@settings(max_examples=50)
@given(labelled_scores(max_examples=5, max_classes=3))
def test_invariances_tell_the_two_apart(problem):
    """l_D ignores a constant added to a row (an example), l_G one added to a column (a class)."""
    scores, labels = problem
    rows = np.arange(1, len(scores) + 1, dtype=float)[:, None]
    columns = np.arange(1, scores.shape[1] + 1, dtype=float)[None, :]
    l_d, l_g = (
        disc.discriminative_log_likelihood(scores, labels),
        disc.generative_log_likelihood(scores, labels),
    )
    assert disc.discriminative_log_likelihood(scores + rows, labels) == pytest.approx(
        l_d, abs=1e-11
    )
    assert disc.generative_log_likelihood(scores + columns, labels) == pytest.approx(l_g, abs=1e-11)


def test_negative_control_invariances_are_specific():
    """A class bias does change l_D, and a per-example shift does change l_G."""
    l_d = disc.discriminative_log_likelihood(S_HAND, Y_HAND)
    l_g = disc.generative_log_likelihood(S_HAND, Y_HAND)
    assert (
        abs(disc.discriminative_log_likelihood(S_HAND + np.array([[1.0, 0.0]]), Y_HAND) - l_d) > 0.1
    )
    assert (
        abs(disc.generative_log_likelihood(S_HAND + np.array([[1.0], [0.0], [0.0]]), Y_HAND) - l_g)
        > 0.1
    )


# --- gradients with respect to the scores ----------------------------------------------------


def finite_difference(loglik, scores, labels):
    return input_gradient(lambda batch: np.array([loglik(s, labels) for s in batch]), scores)


@settings(max_examples=50)
@given(labelled_scores())
def test_score_gradients_match_finite_differences(problem):
    scores, labels = problem
    assert_gradient(
        disc.discriminative_score_gradient(scores, labels),
        finite_difference(disc.discriminative_log_likelihood, scores, labels),
        what="dl_D/dS",
    )
    assert_gradient(
        disc.generative_score_gradient(scores, labels),
        finite_difference(disc.generative_log_likelihood, scores, labels),
        what="dl_G/dS",
    )


def test_score_gradients_by_hand():
    # l_D: 1(y = c) - p(c | x): rows (1/3, 2/3), (3/4, 1/4), (1/2, 1/2)
    expected_d = np.array([[-1 / 3, 1 / 3], [1 / 4, -1 / 4], [-1 / 2, 1 / 2]])
    assert_close(disc.discriminative_score_gradient(S_HAND, Y_HAND), expected_d, EXACT)
    # l_G: 1(y = c) - n_c softmax over examples; n_0 = 1 (column 0 weights 1/5, 3/5, 1/5),
    # n_1 = 2 (column 1 weights 2/4, 1/4, 1/4)
    expected_g = np.array([[-1 / 5, 1 - 2 * 2 / 4], [1 - 3 / 5, -2 / 4], [-1 / 5, 1 - 2 / 4]])
    assert_close(disc.generative_score_gradient(S_HAND, Y_HAND), expected_g, EXACT)


@given(labelled_scores())
def test_score_gradients_sum_to_zero_over_the_normalised_axis(problem):
    scores, labels = problem
    assert np.abs(disc.discriminative_score_gradient(scores, labels).sum(axis=1)).max() < 1e-12
    assert np.abs(disc.generative_score_gradient(scores, labels).sum(axis=0)).max() < 1e-12


def test_negative_control_gradients_are_not_interchangeable():
    """Finite differences tell the two gradients apart: each fails the other's check."""
    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal((5, 3)), np.array([0, 1, 2, 0, 1])
    with pytest.raises(AssertionError):
        assert_gradient(
            disc.discriminative_score_gradient(scores, labels),
            finite_difference(disc.generative_log_likelihood, scores, labels),
        )
    with pytest.raises(AssertionError):
        assert_gradient(
            disc.generative_score_gradient(scores, labels),
            finite_difference(disc.discriminative_log_likelihood, scores, labels),
        )


# --- arguments and the one home of the softmax --------------------------------------------------


def test_argument_errors_are_clear():
    scores = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        disc.discriminative_log_likelihood(scores, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        disc.generative_log_likelihood(scores, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        disc.generative_score_gradient(scores, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"biases must have shape \(2,\)"):
        disc.softmax_posterior(scores, np.zeros(3))
    with pytest.raises(ValueError, match=r"\(M, C\)"):
        disc.softmax_posterior(np.zeros(3))
    with pytest.raises(ValueError, match="axis must be 0"):
        disc.log_softmax(scores, axis=2)


def test_theorems_use_the_models_softmax():
    """Proposition 1's checks compute (2.3) with this module's function, not their own."""
    from refimpl.theorems import discriminative as theorem

    assert theorem.softmax_posterior is disc.softmax_posterior
