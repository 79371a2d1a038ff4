"""The discriminative softmax (2.3) and Dai, Lu & Wu's batch log-likelihoods l_D, l_G: arguments.

Every function of refimpl.models.discriminative is graded in lesson 4; their properties (hand
computations, SciPy, brute-force sums, the invariances that tell l_D and l_G apart, stability,
finite differences, with negative controls) live in tests/lessons/test_lesson_04.py, which
this suite runs too. Here: argument checks, and that the theorems use this softmax.
"""

import numpy as np
import pytest

from refimpl.models import discriminative as disc

# --- arguments and the one home of the softmax --------------------------------------------------


def test_argument_errors_are_clear():
    scores = np.zeros((3, 2))
    disc.discriminative_log_likelihood(scores, np.array([0, 1, 1]))  # valid: no error
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
