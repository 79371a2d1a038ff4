"""Lesson 14 (hybrid generative-discriminative training): refimpl.hybrid.toy and .objectives.

Graded functions and the tests that grade them (``GRADED``, read by grade.py). The
independent references:

* SciPy's densities (``scipy.stats.multivariate_normal``, ``norm``) for every value: the
  class-conditional Gaussians, the prior, the coupling ``N(w_G | w_D, sigma^2 I)``; Bayes'
  rule and the mixture density written here from those densities;
* a 2-D quadrature: the model's joint density integrates to 1 over ``x`` and ``y``;
* central finite differences (``gradcheck``) for every gradient, in float64: the objectives
  are smooth, so the differences are exact up to ``h^2 ~ 1e-12`` relative plus rounding,
  which ``assert_gradient`` allows for;
* the closed-form maximum-likelihood fit (class means and mean squared distances, computed
  here), at which the generative gradient must vanish.

Random problems: ``K = 2..3`` classes in ``D = 1..3`` dimensions, parameters with means of
size ~1, widths ``e^{+-0.5}``, log-odds ~0.5, from a seed Hypothesis draws.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
from checks import EXACT, assert_close
from gradcheck import ROUNDING_ULPS, STEP, assert_gradient, input_gradient
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats
from strategies import seeds

from refimpl.hybrid import objectives as obj
from refimpl.hybrid import toy
from refimpl.hybrid.toy import GaussianClasses, SemiSupervised

GRADED = {
    "hybrid.toy.class_log_joint": ["test_scores"],
    "hybrid.toy.class_log_joint_vjp": ["test_chain_rule"],
    "hybrid.objectives.gaussian_log_prior": ["test_prior"],
    "hybrid.objectives.joint_log_likelihood": ["test_joint"],
    "hybrid.objectives.marginal_log_likelihood": ["test_marginal"],
    "hybrid.objectives.conditional_log_likelihood": ["test_conditional"],
    "hybrid.objectives.generative_objective": ["test_generative"],
    "hybrid.objectives.discriminative_objective": ["test_discriminative"],
    "hybrid.objectives.blend_objective": ["test_blend"],
    "hybrid.objectives.coupling_log_prior": ["test_coupling"],
    "hybrid.objectives.hybrid_objective": ["test_hybrid"],
}


@st.composite
def problems(draw, max_points: int = 6):
    """``(w (P,), x (M, D), y (M,), data)``: a random model and a small training set."""
    rng = np.random.default_rng(draw(seeds))
    k, d = draw(st.integers(2, 3)), draw(st.integers(1, 3))
    theta = GaussianClasses(
        rng.standard_normal((k, d)), 0.5 * rng.uniform(-1, 1, k), 0.5 * rng.standard_normal(k - 1)
    )
    m = draw(st.integers(1, max_points))
    x = 1.5 * rng.standard_normal((m, d))
    y = rng.integers(0, k, m)
    data = SemiSupervised(x, y, 1.5 * rng.standard_normal((draw(st.integers(0, 5)), d)), k)
    return theta.pack(), x, y, data


def log_joint_scipy(w, x):
    """``log pi_k + log N(x; m_k, s_k^2 I)`` from SciPy, ``(M, K)``."""
    theta = GaussianClasses.unpack(w, x.shape[1])
    priors = np.exp(np.r_[0.0, theta.log_odds])
    priors /= priors.sum()
    return np.stack(
        [
            math.log(priors[k])
            + stats.multivariate_normal.logpdf(
                x, theta.means[k], math.exp(2 * theta.log_std[k]) * np.eye(x.shape[1])
            ).reshape(len(x))
            for k in range(theta.n_classes)
        ],
        axis=1,
    )


def marginal_scipy(w, x):
    """``sum_m log sum_k p(x_m, k)`` with plain exponentials (the test points keep them finite)."""
    return float(np.log(np.exp(log_joint_scipy(w, x)).sum(axis=1)).sum())


def gradient_by_differences(value_fn, w, *points):
    """Central differences of a scalar function of ``w (P,)``.

    ``points`` are the inputs whose class scores the function adds and subtracts: a
    conditional log-likelihood near 0 is ``S[y] - log sum exp S`` with ``|S| ~ 10``, so its
    rounding, ``~ eps sum |S|``, not ``eps |value|``, sets the noise floor of a difference
    quotient (gradcheck's ``ROUNDING_ULPS`` times that, over ``h``).
    """
    fd = input_gradient(lambda batch: np.array([value_fn(v) for v in batch]), w)
    terms = sum(float(np.abs(log_joint_scipy(w, x)).sum()) for x in points if len(x))
    floor = ROUNDING_ULPS * np.finfo(float).eps * terms / STEP
    return replace(fd, noise=max(fd.noise, floor))


# --- the class scores and their chain rule -------------------------------------------------------


@given(problems())
def test_scores_equal_scipy_densities(problem):
    w, x, _, _ = problem
    S = toy.class_log_joint(w, x)
    assert S.shape == (len(x), (len(w) + 1) // (x.shape[1] + 2))
    assert_close(S, log_joint_scipy(w, x), 1e-12, "log p(x, y = k | w)")


def test_scores_integrate_to_one():
    """sum_k int p(x, k | w) dx = 1 in 2-D, by quadrature (error estimate < 1e-8)."""
    w = GaussianClasses(
        np.array([[-1.0, 0.5], [1.0, -0.2]]), np.array([-0.3, 0.2]), np.array([0.4])
    )
    w = w.pack()

    def density(b, a):
        return float(np.exp(toy.class_log_joint(w, np.array([[a, b]]))).sum())

    total, err = integrate.dblquad(density, -12, 12, -12, 12, epsabs=1e-11, epsrel=1e-11)
    assert err < 1e-8 and abs(total - 1) < 1e-8, (total, err)


def test_scores_by_hand():
    """One class at the origin with s = 1 and pi = 1/2 (log-odds 0), x = (1, 0)."""
    w = GaussianClasses(np.zeros((2, 2)), np.zeros(2), np.zeros(1)).pack()
    S = toy.class_log_joint(w, np.array([[1.0, 0.0]]))
    expected = math.log(0.5) - math.log(2 * math.pi) - 0.5
    assert_close(S, [[expected, expected]], EXACT, "scores")


@given(problems(), seeds)
def test_chain_rule_matches_finite_differences(problem, seed):
    """The vector-Jacobian product of any dS is the gradient of sum(dS * S)."""
    w, x, _, _ = problem
    dS = np.random.default_rng(seed).standard_normal((len(x), (len(w) + 1) // (x.shape[1] + 2)))
    analytic = toy.class_log_joint_vjp(w, x, dS)
    assert analytic.shape == w.shape
    fd = gradient_by_differences(lambda v: float((dS * toy.class_log_joint(v, x)).sum()), w, x)
    assert_gradient(analytic, fd, what="sum dS dS/dw")


def test_chain_rule_is_linear_in_dS():
    rng = np.random.default_rng(3)
    w, x = (
        GaussianClasses(
            rng.standard_normal((3, 2)), rng.standard_normal(3), rng.standard_normal(2)
        ).pack(),
        rng.standard_normal((5, 2)),
    )
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert_close(
        toy.class_log_joint_vjp(w, x, 2 * a - b),
        2 * toy.class_log_joint_vjp(w, x, a) - toy.class_log_joint_vjp(w, x, b),
        1e-13,
        "linearity",
    )


# --- the prior -----------------------------------------------------------------------------------


@given(seeds, st.floats(0.3, 5.0))
def test_prior_equals_scipy_and_its_gradient(seed, scale):
    w = np.random.default_rng(seed).standard_normal(7)
    value, grad = obj.gaussian_log_prior(w, scale)
    assert value == pytest.approx(stats.norm.logpdf(w, 0, scale).sum(), rel=1e-13, abs=1e-13)
    assert_gradient(grad, gradient_by_differences(lambda v: obj.gaussian_log_prior(v, scale)[0], w))


def test_prior_flat_is_zero():
    value, grad = obj.gaussian_log_prior(np.ones(7), None)
    assert value == 0.0 and np.array_equal(grad, np.zeros(7))


# --- the three likelihoods -----------------------------------------------------------------------


@given(problems())
def test_joint_equals_scipy_and_gradient(problem):
    w, x, y, _ = problem
    value, grad = obj.joint_log_likelihood(w, x, y)
    expected = log_joint_scipy(w, x)[np.arange(len(y)), y].sum()
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)
    fd = gradient_by_differences(lambda v: obj.joint_log_likelihood(v, x, y)[0], w, x)
    assert_gradient(grad, fd, what="d joint / dw")


def test_joint_of_no_points_is_zero():
    w = GaussianClasses(np.zeros((2, 2)), np.zeros(2), np.zeros(1)).pack()
    value, grad = obj.joint_log_likelihood(w, np.zeros((0, 2)), np.zeros(0, dtype=int))
    assert value == 0.0 and np.array_equal(grad, np.zeros_like(w))


@given(problems())
def test_marginal_equals_mixture_density_and_gradient(problem):
    w, x, _, _ = problem
    value, grad = obj.marginal_log_likelihood(w, x)
    assert value == pytest.approx(marginal_scipy(w, x), rel=1e-12, abs=1e-12)
    fd = gradient_by_differences(lambda v: obj.marginal_log_likelihood(v, x)[0], w, x)
    assert_gradient(grad, fd, what="d marginal / dw")


def test_marginal_is_stable_far_from_every_class():
    """At x = 60, exp(S) underflows to 0, yet log p(x) is finite and exact."""
    w = GaussianClasses(np.array([[0.0], [1.0]]), np.zeros(2), np.zeros(1)).pack()
    value, grad = obj.marginal_log_likelihood(w, np.array([[60.0]]))
    expected = np.logaddexp(*log_joint_scipy(w, np.array([[60.0]]))[0])
    assert value == pytest.approx(expected, rel=1e-14) and np.all(np.isfinite(grad))


@given(problems())
def test_conditional_is_bayes_rule_and_gradient(problem):
    w, x, y, _ = problem
    value, grad = obj.conditional_log_likelihood(w, x, y)
    joint = np.exp(log_joint_scipy(w, x))
    expected = np.log(joint[np.arange(len(y)), y] / joint.sum(axis=1)).sum()
    assert value == pytest.approx(expected, rel=1e-10, abs=1e-10)
    fd = gradient_by_differences(lambda v: obj.conditional_log_likelihood(v, x, y)[0], w, x)
    assert_gradient(grad, fd, what="d conditional / dw")


@given(problems())
def test_conditional_plus_marginal_is_joint(problem):
    """log p(y | x) + log p(x) = log p(x, y), values and gradients."""
    w, x, y, _ = problem
    cond, g_cond = obj.conditional_log_likelihood(w, x, y)
    marg, g_marg = obj.marginal_log_likelihood(w, x)
    joint, g_joint = obj.joint_log_likelihood(w, x, y)
    assert cond + marg == pytest.approx(joint, rel=1e-12, abs=1e-11)
    assert_close(g_cond + g_marg, g_joint, 1e-11, "gradients")


# --- L_G, L_D and the blend ----------------------------------------------------------------------


@given(problems(), st.one_of(st.none(), st.floats(0.5, 4.0)))
def test_generative_objective_value_and_gradient(problem, scale):
    w, _, _, data = problem
    value, grad = obj.generative_objective(w, data, scale)
    prior = 0.0 if scale is None else stats.norm.logpdf(w, 0, scale).sum()
    labelled = log_joint_scipy(w, data.x_labelled)[np.arange(len(data.y_labelled)), data.y_labelled]
    expected = prior + labelled.sum() + marginal_scipy(w, data.x_unlabelled)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-11)
    fd = gradient_by_differences(
        lambda v: obj.generative_objective(v, data, scale)[0], w, data.x_all
    )
    assert_gradient(grad, fd, what="dL_G/dw")


@given(seeds)
def test_generative_gradient_vanishes_at_the_closed_form_fit(seed):
    """Labelled points only: the ML fit is class frequencies, class means, mean squared distances
    over D; there grad L_G = 0 up to rounding (|terms| ~ 10, eps ~ 2e-16: 1e-10 is generous)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], [3, 4, 5])
    x = rng.standard_normal((12, 2)) + 2 * y[:, None]
    means = np.stack([x[y == k].mean(axis=0) for k in range(3)])
    var = np.array([((x[y == k] - means[k]) ** 2).sum() / (2 * (y == k).sum()) for k in range(3)])
    w = GaussianClasses(means, 0.5 * np.log(var), np.log([4 / 3, 5 / 3])).pack()
    _, grad = obj.generative_objective(w, SemiSupervised(x, y, np.zeros((0, 2)), 3))
    assert np.abs(grad).max() < 1e-10
    _, moved = obj.generative_objective(w + 1e-3, SemiSupervised(x, y, np.zeros((0, 2)), 3))
    assert np.abs(moved).max() > 1e-3  # negative control: a nearby point is not stationary


@given(problems(), st.one_of(st.none(), st.floats(0.5, 4.0)))
def test_discriminative_objective_value_and_gradient(problem, scale):
    w, _, _, data = problem
    value, grad = obj.discriminative_objective(w, data, scale)
    prior = 0.0 if scale is None else stats.norm.logpdf(w, 0, scale).sum()
    joint = np.exp(log_joint_scipy(w, data.x_labelled))
    n = np.arange(len(data.y_labelled))
    expected = prior + np.log(joint[n, data.y_labelled] / joint.sum(axis=1)).sum()
    assert value == pytest.approx(expected, rel=1e-10, abs=1e-10)
    fd = gradient_by_differences(
        lambda v: obj.discriminative_objective(v, data, scale)[0], w, data.x_all
    )
    assert_gradient(grad, fd, what="dL_D/dw")


def test_discriminative_objective_ignores_unlabelled_points():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 2)), np.array([0, 1, 0, 1])
    w = rng.standard_normal(7)
    a = obj.discriminative_objective(w, SemiSupervised(x, y, rng.standard_normal((9, 2))), 2.0)
    b = obj.discriminative_objective(w, SemiSupervised(x, y, np.zeros((0, 2))), 2.0)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_discriminative_objective_is_flat_where_the_log_odds_do_not_change():
    """Two classes of equal width s: the log-odds are (m_1 - m_0) . x / s^2 + const. Moving both
    means by the same vector v and the log-odds by (|m_1 + v|^2 - |m_1|^2 - |m_0 + v|^2 +
    |m_0|^2) / (2 s^2) leaves p(y | x) unchanged, so L_D (flat prior) does not move."""
    rng = np.random.default_rng(2)
    data = SemiSupervised(
        rng.standard_normal((6, 2)), np.array([0, 1, 0, 1, 1, 0]), np.zeros((0, 2))
    )
    m, v, s2 = rng.standard_normal((2, 2)), rng.standard_normal(2), 1.7
    a = 0.3
    shift = ((m[1] + v) @ (m[1] + v) - m[1] @ m[1] - (m[0] + v) @ (m[0] + v) + m[0] @ m[0]) / (
        2 * s2
    )
    before = GaussianClasses(m, np.full(2, 0.5 * math.log(s2)), np.array([a])).pack()
    after = GaussianClasses(m + v, np.full(2, 0.5 * math.log(s2)), np.array([a + shift])).pack()
    assert obj.discriminative_objective(after, data)[0] == pytest.approx(
        obj.discriminative_objective(before, data)[0], rel=1e-12
    )
    # negative control: L_G sees the move
    assert (
        abs(obj.generative_objective(after, data)[0] - obj.generative_objective(before, data)[0])
        > 0.1
    )


@given(problems(), st.floats(0.0, 1.0), st.one_of(st.none(), st.floats(0.5, 4.0)))
def test_blend_is_the_weighted_sum_and_its_gradient(problem, lam, scale):
    w, _, _, data = problem
    value, grad = obj.blend_objective(w, data, lam, scale)
    gen, g_gen = obj.generative_objective(w, data, scale)
    disc, g_disc = obj.discriminative_objective(w, data, scale)
    assert value == pytest.approx(lam * gen + (1 - lam) * disc, rel=1e-12, abs=1e-12)
    fd = gradient_by_differences(
        lambda v: obj.blend_objective(v, data, lam, scale)[0], w, data.x_all
    )
    assert_gradient(grad, fd, what="d blend/dw")


@given(problems())
def test_blend_ends_are_the_pure_objectives(problem):
    w, _, _, data = problem
    for lam, pure in ((1.0, obj.generative_objective), (0.0, obj.discriminative_objective)):
        value, grad = obj.blend_objective(w, data, lam, 2.0)
        expected, g_expected = pure(w, data, 2.0)
        assert value == expected and np.array_equal(grad, g_expected)


# --- the coupling prior and the hybrid -----------------------------------------------------------


@given(seeds, st.floats(0.05, 20.0))
def test_coupling_equals_scipy_and_gradients(seed, sigma):
    rng = np.random.default_rng(seed)
    w_G, w_D = rng.standard_normal(7), rng.standard_normal(7)
    value, g_G, g_D = obj.coupling_log_prior(w_G, w_D, sigma)
    expected = stats.multivariate_normal.logpdf(w_G, w_D, sigma**2 * np.eye(7))
    assert value == pytest.approx(expected, rel=1e-12)
    assert_gradient(
        g_G, gradient_by_differences(lambda v: obj.coupling_log_prior(v, w_D, sigma)[0], w_G)
    )
    assert_gradient(
        g_D, gradient_by_differences(lambda v: obj.coupling_log_prior(w_G, v, sigma)[0], w_D)
    )


def test_coupling_is_symmetric_and_peaks_at_equality():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(7), rng.standard_normal(7)
    assert obj.coupling_log_prior(a, b, 0.7)[0] == obj.coupling_log_prior(b, a, 0.7)[0]
    assert obj.coupling_log_prior(a, a, 0.7)[0] > obj.coupling_log_prior(a, b, 0.7)[0]
    value, g_G, g_D = obj.coupling_log_prior(a, a, 0.7)
    assert value == pytest.approx(-3.5 * math.log(2 * math.pi * 0.49), rel=1e-14)
    assert not g_G.any() and not g_D.any()


@given(problems(), st.floats(0.1, 10.0), st.one_of(st.none(), st.floats(0.5, 4.0)), seeds)
def test_hybrid_value_and_gradients(problem, sigma, scale, seed):
    w_D, _, _, data = problem
    w_G = w_D + 0.3 * np.random.default_rng(seed).standard_normal(w_D.shape)
    value, g_G, g_D = obj.hybrid_objective(w_G, w_D, data, sigma, scale)
    prior = 0.0 if scale is None else stats.norm.logpdf(w_D, 0, scale).sum()
    coupling = stats.multivariate_normal.logpdf(w_G, w_D, sigma**2 * np.eye(len(w_D)))
    joint = np.exp(log_joint_scipy(w_D, data.x_labelled))
    n = np.arange(len(data.y_labelled))
    conditional = np.log(joint[n, data.y_labelled] / joint.sum(axis=1)).sum()
    marginal = marginal_scipy(w_G, data.x_labelled) + marginal_scipy(w_G, data.x_unlabelled)
    assert value == pytest.approx(prior + coupling + conditional + marginal, rel=1e-10, abs=1e-10)
    fd_G = gradient_by_differences(
        lambda v: obj.hybrid_objective(v, w_D, data, sigma, scale)[0], w_G, data.x_all
    )
    fd_D = gradient_by_differences(
        lambda v: obj.hybrid_objective(w_G, v, data, sigma, scale)[0], w_D, data.x_all
    )
    assert_gradient(g_G, fd_G, what="dH/dw_G")
    assert_gradient(g_D, fd_D, what="dH/dw_D")


@given(problems())
def test_hybrid_at_equal_parameters_is_generative_plus_prior_and_coupling(problem):
    """At w_G = w_D = w: H = L_G(w) + log N(0 | 0, sigma^2 I), since p(y|x) p(x) = p(x, y)."""
    w, _, _, data = problem
    value, _, _ = obj.hybrid_objective(w, w, data, 0.5, 2.0)
    gen, _ = obj.generative_objective(w, data, 2.0)
    assert value == pytest.approx(
        gen - 0.5 * len(w) * math.log(2 * math.pi * 0.25), rel=1e-12, abs=1e-11
    )


# --- the references can fail (not graded) --------------------------------------------------------


def test_negative_control_a_wrong_gradient_is_caught():
    """Dropping the -D term of dS/dlog s (a typical slip) fails the finite-difference check."""
    rng = np.random.default_rng(5)
    w, x = (
        GaussianClasses(
            rng.standard_normal((2, 2)), rng.standard_normal(2), rng.standard_normal(1)
        ).pack(),
        rng.standard_normal((4, 2)),
    )
    dS = rng.standard_normal((4, 2))
    # the SciPy reference's gradient (by differences), then the slip applied to it: no graded
    # function is called, so the control also holds on a student's stubbed copy
    fd = gradient_by_differences(lambda v: float((dS * log_joint_scipy(v, x)).sum()), w, x)
    wrong = fd.gradient.copy()
    wrong[4:6] += 2 * dS.sum(axis=0)  # undo the -D of d S / d log s_k
    assert_gradient(fd.gradient, fd)  # the unchanged gradient passes
    with pytest.raises(AssertionError):
        assert_gradient(wrong, fd)


def test_negative_control_the_references_see_a_swapped_class():
    """The SciPy reference is sensitive to the parameter layout: swapping the classes' widths
    changes the scores by far more than the tolerance."""
    w = GaussianClasses(
        np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([-0.5, 0.5]), np.array([0.0])
    ).pack()
    swapped = w.copy()
    swapped[4:6] = swapped[[5, 4]]
    x = np.array([[0.2, -0.1], [0.9, 1.3]])
    with pytest.raises(AssertionError):
        assert_close(log_joint_scipy(swapped, x), log_joint_scipy(w, x), 1e-6)
