"""Lesson 4 (from discriminative to generative): the softmax (2.3) and the batch log-likelihoods.

Graded functions and the tests that grade them (``GRADED``, read by grade.py), all in
``refimpl.models.discriminative``. The independent references are SciPy's ``softmax`` /
``log_softmax``, plain Python sums with ``math.exp``/``math.log``, Bayes' rule for tilted
classes with exact normalisers (Proposition 1(a); ``refimpl.theorems.discriminative`` and
``refimpl.exact``), central finite differences (``gradcheck``), and values worked out by hand.
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

GRADED = {
    "models.discriminative.log_softmax": ["test_log_softmax"],
    "models.discriminative.softmax_posterior": ["test_softmax_posterior"],
    "models.discriminative.discriminative_log_likelihood": ["test_discriminative_log_likelihood"],
    "models.discriminative.generative_log_likelihood": ["test_generative_log_likelihood"],
    "models.discriminative.discriminative_score_gradient": ["test_discriminative_score_gradient"],
    "models.discriminative.generative_score_gradient": ["test_generative_score_gradient"],
}


@st.composite
def labelled_scores(draw, max_examples: int = 6, max_classes: int = 4, scale: float = 3.0):
    """``(scores (M, C), labels (M,))``: normal scores with standard deviation ``scale``."""
    rng = np.random.default_rng(draw(seeds))
    m, c = draw(st.integers(1, max_examples)), draw(st.integers(1, max_classes))
    return scale * rng.standard_normal((m, c)), rng.integers(0, c, size=m)


# Three examples, two classes: rows (1, 2), (3, 1), (1, 1) after exponentiating; labels 1, 0, 1.
S = np.array([[0.0, math.log(2.0)], [math.log(3.0), 0.0], [0.0, 0.0]])
Y = np.array([1, 0, 1])
BIG = np.array([[1000.0, 1000.0 + math.log(3.0)], [-1000.0, -1000.0 + math.log(3.0)]])


def brute_force(scores, labels):
    """``(l_D, l_G)`` in Python floats: normalisers over classes (row) and examples (column)."""
    l_d = sum(
        scores[i, y] - math.log(sum(math.exp(s) for s in scores[i])) for i, y in enumerate(labels)
    )
    l_g = sum(
        scores[i, y] - math.log(sum(math.exp(s) for s in scores[:, y]))
        for i, y in enumerate(labels)
    )
    return l_d, l_g


def finite_difference(loglik, scores, labels):
    return input_gradient(lambda batch: np.array([loglik(s, labels) for s in batch]), scores)


# --- log_softmax ------------------------------------------------------------------------------


def test_log_softmax_by_hand():
    assert_close(
        disc.log_softmax(S, axis=1), np.log([[1 / 3, 2 / 3], [3 / 4, 1 / 4], [1 / 2, 1 / 2]]), EXACT
    )
    assert_close(
        disc.log_softmax(S, axis=0), np.log([[1 / 5, 2 / 4], [3 / 5, 1 / 4], [1 / 5, 1 / 4]]), EXACT
    )


@given(labelled_scores())
def test_log_softmax_equals_scipy(problem):
    scores, _ = problem
    for axis in (0, 1):
        assert_close(
            disc.log_softmax(scores, axis=axis), scipy_log_softmax(scores, axis=axis), EXACT
        )


def test_log_softmax_is_stable():
    assert_close(disc.log_softmax(BIG, axis=1), np.log([[0.25, 0.75], [0.25, 0.75]]), EXACT)
    out = disc.log_softmax(BIG, axis=0)
    # -1000 - (1000 + log(1 + e^-2000)): a few roundings of numbers of size 1000
    assert np.isfinite(out).all() and out[1, 0] == pytest.approx(-2000.0, rel=EXACT)


# --- softmax_posterior, Eq. (2.3) ----------------------------------------------------------------


def test_softmax_posterior_by_hand():
    scores = np.array([[0.0, math.log(2.0), math.log(3.0)]])
    assert_close(disc.softmax_posterior(scores), [[1 / 6, 2 / 6, 3 / 6]], EXACT)
    assert_close(
        disc.softmax_posterior(scores, np.array([math.log(3.0), 0.0, 0.0])),
        [[3 / 8, 2 / 8, 3 / 8]],
        EXACT,
    )


@given(labelled_scores())
def test_softmax_posterior_equals_scipy(problem):
    scores, _ = problem
    biases = np.linspace(-2.0, 1.0, scores.shape[1])
    assert_close(disc.softmax_posterior(scores), scipy_softmax(scores, axis=1), EXACT)
    assert_close(
        disc.softmax_posterior(scores, biases), scipy_softmax(scores + biases, axis=1), EXACT
    )


def test_softmax_posterior_is_stable():
    assert_close(disc.softmax_posterior(BIG), [[0.25, 0.75], [0.25, 0.75]], EXACT)


@settings(max_examples=10)
@given(seeds)
def test_softmax_posterior_is_bayes_rule_for_tilted_classes(seed):
    """Proposition 1(a): Bayes' posterior of tilted classes is the softmax (2.3).

    With p_c = exp(f_c) q / Z_c, the biases of (2.3) are b_c = log rho_c - log Z_c.
    """
    from refimpl.theorems import discriminative as theorem
    from refimpl.theorems import instances

    rng = np.random.default_rng(seed)
    sigma = instances.sigma(rng)
    classes = [instances.prototype(rng, 1, 3, sig=sigma) for _ in range(3)]
    log_Z = theorem.class_log_normalisers(classes, (1,))  # exact, refimpl.exact
    log_rho = np.log(rng.dirichlet(np.ones(3)))
    x = 2 * sigma * rng.standard_normal((40, 1))
    scores = np.stack([c.scoring.score(x) for c in classes], axis=1)
    bayes = theorem.bayes_posterior(classes, log_Z, log_rho, x)
    assert_close(disc.softmax_posterior(scores, log_rho - log_Z), bayes, EXACT)


# --- the two batch log-likelihoods (Dai, Lu & Wu) -------------------------------------------------


def test_discriminative_log_likelihood_by_hand():
    expected = math.log(2 / 3) + math.log(3 / 4) + math.log(1 / 2)
    # three log-sum-exps of two O(1) terms: a few units of roundoff (1e-16) each
    assert disc.discriminative_log_likelihood(S, Y) == pytest.approx(expected, rel=EXACT)
    assert isinstance(disc.discriminative_log_likelihood(S, Y), float)


@settings(max_examples=50)
@given(labelled_scores())
def test_discriminative_log_likelihood_equals_brute_force(problem):
    scores, labels = problem
    expected, _ = brute_force(scores, labels)
    # the same sums in another order; the absolute floor covers a total near 0 (the terms,
    # scores of standard deviation 3, cancel): rounding is relative to the terms, not to l_D
    assert disc.discriminative_log_likelihood(scores, labels) == pytest.approx(
        expected, rel=EXACT, abs=EXACT
    )


@settings(max_examples=30)
@given(labelled_scores())
def test_discriminative_log_likelihood_ignores_a_shift_of_each_example(problem):
    scores, labels = problem
    shifted = scores + np.arange(len(scores), dtype=float)[:, None] * 7.0
    # the shifts (up to 35) make the terms ~40: rounding ~ a few ulps of 40 (7e-15) per
    # example, at most 6 examples; 1e-10 is the absolute sum of the terms times EXACT, rounded up
    assert disc.discriminative_log_likelihood(shifted, labels) == pytest.approx(
        disc.discriminative_log_likelihood(scores, labels), abs=1e-10
    )


def test_discriminative_log_likelihood_is_stable():
    # the scores (size 1000) cancel: a few ulps of 1000 (1.1e-13 each) remain
    assert disc.discriminative_log_likelihood(BIG, np.array([1, 0])) == pytest.approx(
        math.log(0.75) + math.log(0.25), abs=1e-10
    )


def test_generative_log_likelihood_by_hand():
    # column 1 = (log 2, 0, 0) sums to 4 over the examples; column 0 = (0, log 3, 0) to 5
    expected = math.log(2 / 4) + math.log(3 / 5) + math.log(1 / 4)
    assert disc.generative_log_likelihood(S, Y) == pytest.approx(expected, rel=EXACT)
    assert isinstance(disc.generative_log_likelihood(S, Y), float)


@settings(max_examples=50)
@given(labelled_scores())
def test_generative_log_likelihood_equals_brute_force(problem):
    scores, labels = problem
    _, expected = brute_force(scores, labels)
    assert disc.generative_log_likelihood(scores, labels) == pytest.approx(
        expected,
        rel=EXACT,
        abs=EXACT,  # as for l_D above
    )


@settings(max_examples=30)
@given(labelled_scores())
def test_generative_log_likelihood_ignores_the_class_biases(problem):
    """Adding b_c to class c's scores changes nothing: l_G leaves the biases to Z_c."""
    scores, labels = problem
    shifted = scores + np.arange(scores.shape[1], dtype=float)[None, :] * 7.0
    assert disc.generative_log_likelihood(shifted, labels) == pytest.approx(
        disc.generative_log_likelihood(scores, labels),
        abs=1e-10,  # as for l_D above
    )


def test_generative_log_likelihood_is_stable():
    # column 0 = (1000, -1000): example 0 takes all the mass; column 1 likewise
    assert disc.generative_log_likelihood(BIG, np.array([0, 1])) == pytest.approx(
        -2000.0,
        rel=EXACT,  # a few roundings of numbers of size 1000
    )


# --- gradients with respect to the scores ---------------------------------------------------------


def test_discriminative_score_gradient_by_hand():
    expected = np.array([[-1 / 3, 1 / 3], [1 / 4, -1 / 4], [-1 / 2, 1 / 2]])
    assert_close(disc.discriminative_score_gradient(S, Y), expected, EXACT)


@settings(max_examples=50)
@given(labelled_scores())
def test_discriminative_score_gradient_matches_finite_differences(problem):
    scores, labels = problem
    grad = disc.discriminative_score_gradient(scores, labels)
    assert grad.shape == scores.shape
    assert_gradient(
        grad, finite_difference(disc.discriminative_log_likelihood, scores, labels), what="dl_D/dS"
    )


@given(labelled_scores())
def test_discriminative_score_gradient_rows_sum_to_zero(problem):
    scores, labels = problem
    # 1(y = c) - p(c | x) over at most 4 classes: O(1) terms, rounding ~1e-16
    assert np.abs(disc.discriminative_score_gradient(scores, labels).sum(axis=1)).max() < EXACT


def test_generative_score_gradient_by_hand():
    # n_0 = 1, column 0 weights (1/5, 3/5, 1/5); n_1 = 2, column 1 weights (2/4, 1/4, 1/4)
    expected = np.array([[-1 / 5, 1 - 2 * 2 / 4], [1 - 3 / 5, -2 * 1 / 4], [-1 / 5, 1 - 2 * 1 / 4]])
    assert_close(disc.generative_score_gradient(S, Y), expected, EXACT)


@settings(max_examples=50)
@given(labelled_scores())
def test_generative_score_gradient_matches_finite_differences(problem):
    scores, labels = problem
    grad = disc.generative_score_gradient(scores, labels)
    assert grad.shape == scores.shape
    assert_gradient(
        grad, finite_difference(disc.generative_log_likelihood, scores, labels), what="dl_G/dS"
    )


@given(labelled_scores())
def test_generative_score_gradient_columns_sum_to_zero(problem):
    scores, labels = problem
    # 1(y = c) - n_c softmax over at most 6 examples: terms <= 6, rounding ~1e-15
    assert np.abs(disc.generative_score_gradient(scores, labels).sum(axis=0)).max() < EXACT


# --- the references can fail (not graded) ---------------------------------------------------------


# Each control runs a check on a wrong computation built from the references above (SciPy,
# the brute-force sums), so that it never calls the functions a student writes.


def test_negative_control_the_two_gradients_differ():
    """The discriminative gradient, 1(y = c) - softmax over classes (SciPy), fails the
    finite-difference check of l_G: the two summations really differ."""
    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal((5, 3)), np.array([0, 1, 2, 0, 1])
    d_grad = np.eye(3)[labels] - scipy_softmax(scores, axis=1)
    l_d = lambda s, y: brute_force(s, y)[0]
    l_g = lambda s, y: brute_force(s, y)[1]
    assert_gradient(d_grad, finite_difference(l_d, scores, labels))  # its own check passes
    with pytest.raises(AssertionError):
        assert_gradient(d_grad, finite_difference(l_g, scores, labels))
    assert abs(l_d(scores, labels) - l_g(scores, labels)) > 0.1  # O(1) apart, not rounding


def test_negative_control_invariances_are_specific():
    """A class bias does change l_D, and a per-example shift does change l_G (by O(1), where
    the invariance tests allow rounding only)."""
    l_d, l_g = brute_force(S, Y)
    assert abs(brute_force(S + np.array([[1.0, 0.0]]), Y)[0] - l_d) > 0.1
    assert abs(brute_force(S + np.array([[1.0], [0.0], [0.0]]), Y)[1] - l_g) > 0.1


def test_negative_control_unshifted_softmax_fails_the_stability_check():
    """exp of the raw scores overflows at 1000: the check of test_softmax_posterior_is_stable
    rejects a softmax written without the max shift."""
    with np.errstate(over="ignore", invalid="ignore"):
        raw = np.exp(BIG)
        unshifted = raw / raw.sum(axis=1, keepdims=True)
    with pytest.raises(AssertionError):
        assert_close(unshifted, [[0.25, 0.75], [0.25, 0.75]], EXACT)
