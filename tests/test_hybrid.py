"""Hybrid training on the 2-D toy: the truth, the fits and their exact anchors, the experiment.

The objectives and their gradients are graded in ``tests/lessons/test_lesson_14.py`` (the one
copy of those properties). Here:

* the toy's exact numbers (Bayes error, error of a linear rule) against Monte Carlo;
* the optimiser against ``scipy.optimize.minimize`` from the same start, and the exact anchors:
  ``alpha = 0`` is the generative maximum-likelihood fit (closed form without unlabelled
  points, EM with them), ``alpha = 1`` the discriminative fit, and the hybrid approaches them
  at the rates derived in ``refimpl.hybrid.objectives`` (``O(sigma^2)``, ``O(1/sigma^2)``);
* the sweep and figures of ``run_toy``, and clear errors for bad input.

**Tolerance for two maximisers.** Near a strict maximum ``w*`` with Hessian ``-H`` (``H``
positive definite, smallest eigenvalue ``lam``), a point with gradient ``g`` lies within
``|g| / lam`` of ``w*`` to first order. Two fits that stopped with gradients ``g_a`` and
``g_b`` agree to ``(|g_a| + |g_b|) / lam``; we allow 4 times that (second-order terms) plus
``1e-12``. ``lam`` comes from central differences of the analytic gradient. The gradients are
those of the objective at the returned points, whatever each optimiser reports.
"""

import json
import math

import numpy as np
import pytest
from checks import assert_close
from scipy import optimize

from refimpl.hybrid import experiment, fit, toy
from refimpl.hybrid import objectives as obj
from refimpl.hybrid.toy import GaussianClasses, SemiSupervised

N_SE = 5  # statistical checks: a correct implementation fails one with probability < 1e-6
TAU = 3.0  # the experiment's prior scale


def data_set(seed: int = 0, n_unlabelled: int = 200) -> SemiSupervised:
    return toy.draw_training_set(toy.default_toy(), 2, n_unlabelled, np.random.default_rng(seed))


def hessian(fun, w, h: float = 1e-5) -> np.ndarray:
    """Central differences of the analytic gradient ``fun(w)[1]``, symmetrised."""
    cols = [(fun(w + h * e)[1] - fun(w - h * e)[1]) / (2 * h) for e in np.eye(len(w))]
    H = np.array(cols)
    return 0.5 * (H + H.T)


def agreement_bound(fun, w_a, w_b) -> float:
    """The module docstring's bound on |w_a - w_b| for two points near one maximum of fun."""
    lam = float(np.linalg.eigvalsh(-hessian(fun, w_a))[0])
    assert lam > 0, f"not a strict maximum: smallest curvature {lam:.3e}"
    g = np.linalg.norm(fun(w_a)[1]) + np.linalg.norm(fun(w_b)[1])
    return 4 * g / lam + 1e-12


def scipy_maximum(fun, w0) -> np.ndarray:
    """``scipy.optimize.minimize`` (BFGS) on ``-fun`` from ``w0``, to its own tightest tolerance."""
    result = optimize.minimize(
        lambda w: -fun(w)[0], w0, jac=lambda w: -fun(w)[1], method="BFGS", options={"gtol": 1e-11}
    )
    assert np.abs(fun(result.x)[1]).max() < 1e-6, result.message
    return result.x


# --- the truth -----------------------------------------------------------------------------------


def test_linear_rule_error_and_bayes_error_match_monte_carlo():
    problem = toy.default_toy()
    x, y = problem.sample([200000, 200000], np.random.default_rng(0))
    normal, offset = toy.bayes_rule(problem)
    for n, b in ((normal, offset), (np.array([1.0, 0.0]), 0.0), (np.array([1.0, 2.0]), 0.5)):
        exact = toy.linear_rule_error(problem, n, b)
        measured = np.mean((x @ n + b > 0) != (y == 1))
        se = math.sqrt(exact * (1 - exact) / len(y))
        assert abs(measured - exact) < N_SE * se, (n, b, measured, exact)
    assert toy.bayes_error(problem) == toy.linear_rule_error(problem, normal, offset)


def test_bayes_rule_beats_every_other_rule():
    """Negative control for the formula: turning or shifting the Bayes rule raises its error."""
    problem = toy.default_toy()
    normal, offset = toy.bayes_rule(problem)
    best = toy.bayes_error(problem)
    c, s = math.cos(0.2), math.sin(0.2)
    for n, b in ((np.array([[c, -s], [s, c]]) @ normal, offset), (normal, offset + 0.5)):
        assert toy.linear_rule_error(problem, n, b) > best + 1e-3


def test_isotropic_limit_is_where_labelled_fits_go():
    """The ML fit to 2 x 100000 labelled points is within 5 standard errors of the limit
    (standard errors of a mean, sd/sqrt(n); of a log width, about 1/sqrt(2 n D))."""
    problem = toy.default_toy()
    x, y = problem.sample([100000, 100000], np.random.default_rng(1))
    w = fit.closed_form_generative(SemiSupervised(x, y, np.zeros((0, 2))))
    limit = GaussianClasses.unpack(toy.isotropic_limit(problem), 2)
    got = GaussianClasses.unpack(w, 2)
    assert np.abs(got.means - limit.means).max() < N_SE * 0.9 / math.sqrt(1e5)
    assert np.abs(got.log_std - limit.log_std).max() < N_SE / math.sqrt(4e5)
    assert abs(got.log_odds[0]) < 1e-12  # equal counts
    # and its error, from the linear rule of equal widths, is the generative end's bias
    assert toy.linear_rule_error(problem, *toy.linear_rule(toy.isotropic_limit(problem))) > (
        toy.bayes_error(problem) + 0.02
    )


def test_sample_from_given_noise():
    problem = toy.default_toy()
    z = np.random.default_rng(12).standard_normal((5, 2))
    x, y = problem.sample([2, 3], noise=z)
    chol = np.linalg.cholesky(problem.covariances[0])
    assert_close(x, problem.means[[0, 0, 1, 1, 1]] + z @ chol.T, 1e-15)
    assert y.tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match=r"noise must have shape \(5, 2\)"):
        problem.sample([2, 3], noise=z[:4])


def test_sample_moments():
    problem = toy.elongated_toy(1.5, 0.3, 30.0)
    x, y = problem.sample([50000, 50000], np.random.default_rng(2))
    for k in (0, 1):
        xk = x[y == k]
        se = np.sqrt(np.diag(problem.covariances[k]) / len(xk))
        assert np.all(np.abs(xk.mean(axis=0) - problem.means[k]) < N_SE * se)
        # sample covariance: entries have standard error <= sqrt(2/n) * max variance
        bound = N_SE * math.sqrt(2 / len(xk)) * np.diag(problem.covariances[k]).max()
        assert np.abs(np.cov(xk.T) - problem.covariances[k]).max() < bound


# --- the optimiser -------------------------------------------------------------------------------


def test_maximize_finds_a_known_maximum():
    """A concave quadratic with condition number 1e4 and a large constant: the maximiser must
    get |grad| to 1e-10 where the value no longer resolves the progress (|f| = 1e6)."""
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = q @ np.diag(np.logspace(0, 4, 6)) @ q.T
    b = rng.standard_normal(6)
    best = np.linalg.solve(A, b)

    def fun(w):
        return 1e6 - 0.5 * w @ A @ w + b @ w, b - A @ w

    m = fit.maximize(fun, np.zeros(6), gtol=1e-10)
    assert m.converged and m.grad_norm <= 1e-10
    assert np.linalg.norm(m.w - best) <= np.linalg.norm(fun(m.w)[1]) / 1.0 + 1e-14  # lam = 1
    short = fit.maximize(fun, np.zeros(6), gtol=1e-10, max_iter=3)  # negative control
    assert not short.converged and np.linalg.norm(short.w - best) > 1e-6


def test_maximize_halves_a_step_that_raises():
    """A trial point where the objective raises (as the objectives do on non-finite scores)
    is a failed trial, not a crash."""
    calls = []

    def fun(w):
        calls.append(1)
        if len(calls) == 2:  # the first trial
            raise ValueError("scores contain non-finite values")
        return -float((w - 1.2) @ (w - 1.2)), -2 * (w - 1.2)

    m = fit.maximize(fun, np.zeros(3))
    assert m.converged and np.abs(m.w - 1.2).max() < 1e-9 and len(calls) > 2


def test_maximize_reaches_scipys_maximum_of_the_hybrid():
    """From the same start, our L-BFGS and SciPy's BFGS land on the same maximum of H."""
    data = data_set(1)
    sigma, p = obj.sigma_of_alpha(0.6), 7

    def fun(v):
        value, g_G, g_D = obj.hybrid_objective(v[:p], v[p:], data, sigma, TAU)
        return value, np.concatenate([g_G, g_D])

    w = fit.default_start(data)
    start = np.concatenate([w, w])
    ours = fit.maximize(fun, start).w
    theirs = scipy_maximum(fun, start)
    bound = agreement_bound(fun, ours, theirs)
    assert np.linalg.norm(ours - theirs) <= bound
    early = fit.maximize(fun, start, max_iter=5).w  # negative control: stopped early
    assert np.linalg.norm(early - theirs) > 100 * bound


def test_maximize_rejects_bad_arguments():
    fun = lambda w: (-(w @ w), -2 * w)  # noqa: E731
    with pytest.raises(ValueError, match="gtol must be a positive number"):
        fit.maximize(fun, np.zeros(2), gtol=0)
    with pytest.raises(ValueError, match="w0 must be a finite 1-D array"):
        fit.maximize(fun, np.array([np.nan, 0.0]))
    with pytest.raises(FloatingPointError, match="not finite at the start"):
        fit.maximize(lambda w: (np.inf, w), np.zeros(2))


# --- the generative anchors ----------------------------------------------------------------------


def test_closed_form_is_the_labelled_maximum():
    """Without unlabelled points the ML fit is the closed form; our optimiser finds it from
    the default start, to the agreement bound."""
    data = data_set(2).without_unlabelled()

    def fun(w):
        return obj.generative_objective(w, data)

    closed = fit.closed_form_generative(data)
    ours = fit.fit_generative(data)
    assert ours.converged
    assert np.linalg.norm(ours.w - closed) <= agreement_bound(fun, closed, ours.w)
    assert np.abs(fun(closed)[1]).max() < 1e-11  # stationary to rounding


def test_em_and_both_optimisers_agree_on_the_semi_supervised_fit():
    """With 200 unlabelled points: EM (closed-form M-steps, no gradient), our L-BFGS and
    SciPy's BFGS on L_G, all from the default start, reach one maximum."""
    data = data_set(3)

    def fun(w):
        return obj.generative_objective(w, data)

    em = fit.em_generative(data)
    ours = fit.fit_generative(data)
    theirs = scipy_maximum(fun, fit.default_start(data))
    assert em.converged and ours.converged
    assert np.linalg.norm(em.w - ours.w) <= agreement_bound(fun, ours.w, em.w)
    assert np.linalg.norm(theirs - ours.w) <= agreement_bound(fun, ours.w, theirs)
    # negative control: the labelled-only fit is a different point, far outside the bound
    closed = fit.closed_form_generative(data)
    assert np.linalg.norm(closed - ours.w) > 1e4 * agreement_bound(fun, ours.w, em.w)


def test_each_em_step_increases_the_likelihood():
    data = data_set(4)
    values, w = [], fit.default_start(data)
    for _ in range(15):
        w = fit.em_generative(data, w0=w, max_iter=1).w
        values.append(obj.generative_objective(w, data)[0])
    assert np.all(np.diff(values) >= -1e-9 * abs(values[0]))


def test_default_start_avoids_the_collapsed_maximum():
    """Why the default start is not the labelled-only fit: from there (widths from 2 points)
    EM can stop at a lower maximum (2 of the toy's first 60 draws; this is one)."""
    data = data_set(31)
    from_default = fit.em_generative(data)
    from_labelled = fit.em_generative(data, w0=fit.closed_form_generative(data))
    gap = from_default.value - from_labelled.value
    assert gap > 1.0, gap


# --- the hybrid's ends and limits ----------------------------------------------------------------


def test_alpha_zero_is_the_generative_ml_fit():
    """Flat priors: alpha = 0 gives w_G = w_D = the EM fit; alpha = 0.5 is elsewhere."""
    data = data_set(6)
    em = fit.em_generative(data)

    def fun(w):
        return obj.generative_objective(w, data)

    h = fit.fit_hybrid(data, 0.0)
    assert h.converged and np.array_equal(h.w_G, h.w_D)
    bound = agreement_bound(fun, em.w, h.w_D)
    assert np.linalg.norm(h.w_D - em.w) <= bound
    middle = fit.fit_hybrid(data, 0.5, TAU)
    assert np.linalg.norm(middle.w_D - em.w) > 1e3 * bound  # negative control


def test_alpha_one_is_the_discriminative_fit():
    """alpha = 1: w_D is the maximum of L_D (with the prior), as SciPy finds it from the same
    start; the generative fit is far from it."""
    data = data_set(7)

    def fun(w):
        return obj.discriminative_objective(w, data, TAU)

    gen = fit.fit_generative(data, TAU).w
    h = fit.fit_hybrid(data, 1.0, TAU, start=(gen, gen))
    theirs = scipy_maximum(fun, gen)
    bound = agreement_bound(fun, theirs, h.w_D)
    assert h.converged and np.linalg.norm(h.w_D - theirs) <= bound
    assert np.linalg.norm(gen - theirs) > 1e3 * bound  # negative control


def _distance_rate(data, alphas, target, wrong=False):
    """Log-log slopes of |w_D(alpha) - target| against sigma(alpha)."""
    gen = fit.fit_generative(data, TAU, gtol=1e-11).w
    dist, sig = [], []
    for a in alphas:
        h = fit.fit_hybrid(data, a, TAU, start=(gen, gen), gtol=1e-11)
        dist.append(np.linalg.norm(h.w_D - target))
        sig.append(h.sigma)
    return np.diff(np.log(dist)) / np.diff(np.log(sig)), dist


def test_hybrid_tends_to_the_generative_fit_like_sigma_squared():
    """|w_D - w_gen| = O(sigma^2) as alpha -> 0: slopes 2 on a log-log plot (+-0.1: the next
    term is O(sigma^4), relative size sigma^2 <= 1e-4 here)."""
    data = data_set(8)
    gen = fit.fit_generative(data, TAU, gtol=1e-12).w
    slopes, dist = _distance_rate(data, [1e-2, 3e-3, 1e-3], gen)
    assert np.all(np.abs(slopes - 2) < 0.1), slopes
    assert dist[-1] < 1e-4


def test_hybrid_tends_to_the_discriminative_fit_like_one_over_sigma_squared():
    data = data_set(9)
    gen = fit.fit_generative(data, TAU).w
    disc = fit.fit_discriminative(data, TAU, w0=gen, gtol=1e-12).w
    slopes, dist = _distance_rate(data, [1 - 1e-2, 1 - 3e-3, 1 - 1e-3], disc)
    assert np.all(np.abs(slopes + 2) < 0.1), slopes
    assert dist[-1] < 1e-3


def test_negative_control_a_hybrid_without_the_labelled_inputs_misses_the_generative_limit():
    """If p(x | w_G) ran over the unlabelled points only, the sigma -> 0 limit would maximise
    log p + sum log p(y|x) + sum_unlabelled log p(x), which is not L_G: the distance to the
    generative fit stops shrinking like sigma^2."""
    data = data_set(8)
    gen = fit.fit_generative(data, TAU, gtol=1e-12).w
    dist = []
    for a in (1e-2, 1e-3):
        sigma = obj.sigma_of_alpha(a)

        def wrong(v, sigma=sigma):
            prior, g_prior = obj.gaussian_log_prior(v[7:], TAU)
            c, c_G, c_D = obj.coupling_log_prior(v[:7], v[7:], sigma)
            cond, g_cond = obj.conditional_log_likelihood(v[7:], data.x_labelled, data.y_labelled)
            marg, g_marg = obj.marginal_log_likelihood(v[:7], data.x_unlabelled)
            return prior + c + cond + marg, np.concatenate([c_G + g_marg, g_prior + c_D + g_cond])

        dist.append(np.linalg.norm(fit.maximize(wrong, np.r_[gen, gen], gtol=1e-11).w[7:] - gen))
    assert dist[1] > 0.5 * dist[0] and dist[1] > 1e-3, dist


# --- sweeps and the experiment -------------------------------------------------------------------


def test_summaries():
    rng = np.random.default_rng(10)
    errors = rng.uniform(size=(7, 4))
    s = experiment.summarize(errors)
    assert_close(s["mean"], errors.mean(axis=0))
    assert_close(s["se"], errors.std(axis=0, ddof=1) / math.sqrt(7))
    assert_close(s["median"], np.sort(errors, axis=0)[3])  # 7 draws: the 4th smallest
    d = experiment.paired_difference(errors, errors[:, 2])
    assert d["mean"][2] == 0 and d["se"][2] == 0
    assert_close(d["mean"], errors.mean(axis=0) - errors[:, 2].mean(), 1e-14)


def test_sweep_stacks_draws():
    out = experiment.sweep(lambda i: {"a": [i, 2 * i], "b": [1.0]}, 3, progress=False)
    assert np.array_equal(out["a"], [[0, 0], [1, 2], [2, 4]]) and out["b"].shape == (3, 1)


def test_run_toy_writes_figures_and_metrics(tmp_path, capsys):
    settings = experiment.ToySettings(
        test_per_class=2000, alphas=(0.0, 0.5, 1.0), lambdas=(1.0, 0.05, 0.0)
    )
    metrics = experiment.run_toy(tmp_path, seed=3, draws=4, progress=True, settings=settings)
    assert (tmp_path / "boundaries.png").stat().st_size > 10000
    assert (tmp_path / "error_vs_alpha.png").stat().st_size > 10000
    json.dumps(metrics)  # JSON-ready
    assert "hybrid toy: draw 4/4" in capsys.readouterr().err
    hybrid, blend = metrics["hybrid"], metrics["blend"]
    # both families start at L_G's fit and end at L_D's, fitted from the same start
    assert hybrid["error_mean"][0] == blend["error_mean"][0]
    assert hybrid["error_mean"][-1] == blend["error_mean"][-1]
    assert metrics["nonconverged_fits"] == 0 and metrics["fits"] == 4 * 7
    assert metrics["problem"]["bayes_error"] == pytest.approx(0.0529, abs=1e-4)
    assert hybrid["sigma"] == [0.0, 1.0, "inf"]
    again = experiment.run_toy(tmp_path / "b", seed=3, draws=4, progress=False, settings=settings)
    assert again["hybrid"]["error_mean"] == hybrid["error_mean"]  # same seed, same numbers


# --- clear errors --------------------------------------------------------------------------------


def test_errors_name_the_argument():
    data = data_set(11, 10)
    w = fit.default_start(data)
    with pytest.raises(ValueError, match=r"w must have K\*2 \+ 2K - 1 entries.*got 6"):
        toy.class_log_joint(w[:6], data.x_labelled)
    with pytest.raises(ValueError, match=r"x must be a 2-D array \(M, D\)"):
        toy.class_log_joint(w, data.x_labelled[0])
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        toy.class_log_joint(w, data.x_labelled.astype(int))
    with pytest.raises(ValueError, match=r"dS must have shape \(M, K\) = \(4, 2\)"):
        toy.class_log_joint_vjp(w, data.x_labelled, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="y must be an integer array"):
        obj.joint_log_likelihood(w, data.x_labelled, data.y_labelled.astype(float))
    # -1 would index the last class silently: a label outside [0, K) is refused, not wrapped
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\)"):
        obj.joint_log_likelihood(w, data.x_labelled, np.array([0, 1, -1, 0]))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        obj.conditional_log_likelihood(w, data.x_labelled, data.y_labelled[:3])
    with pytest.raises(
        ValueError, match="w has 11 entries, a 3-class model in 2-D, but data has 2"
    ):
        obj.generative_objective(np.zeros(11), data)
    with pytest.raises(ValueError, match="lam must lie in"):
        obj.blend_objective(w, data, 1.5)
    with pytest.raises(ValueError, match="sigma must be positive and finite"):
        obj.coupling_log_prior(w, w, 0.0)
    with pytest.raises(ValueError, match="prior_scale must be positive"):
        obj.discriminative_objective(w, data, -1.0)
    with pytest.raises(ValueError, match="alpha must lie in"):
        obj.sigma_of_alpha(-0.1)
    with pytest.raises(ValueError, match="w_G and w_D must have the same shape"):
        obj.coupling_log_prior(w, w[:5], 1.0)
    with pytest.raises(TypeError, match="data must be a SemiSupervised"):
        obj.generative_objective(w, (data.x_labelled, data.y_labelled))


def test_data_and_problem_errors():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"y_labelled must have shape \(4,\)"):
        SemiSupervised(x, np.zeros(3, dtype=int), np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"y_labelled must lie in \[0, 2\)"):
        SemiSupervised(x, np.array([0, 1, 2, 0]), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="x_unlabelled has 3 coordinates per point"):
        SemiSupervised(x, np.array([0, 1, 1, 0]), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="x_labelled contains 1 non-finite"):
        SemiSupervised(np.array([[np.nan, 0.0]]), np.array([0]), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="covariances must be symmetric positive definite"):
        toy.ToyProblem(np.zeros((2, 2)), np.zeros((2, 2, 2)), np.full(2, 0.5))
    with pytest.raises(ValueError, match="priors must be 2 positive numbers summing to 1"):
        toy.ToyProblem(np.zeros((2, 2)), np.stack([np.eye(2)] * 2), np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="at least 2 labelled points per class"):
        fit.closed_form_generative(SemiSupervised(x, np.array([0, 1, 1, 1]), np.zeros((0, 2))))
    with pytest.raises(ValueError, match="every class needs a labelled point"):
        fit.default_start(SemiSupervised(x, np.array([1, 1, 1, 1]), np.zeros((0, 2))))
    with pytest.raises(ValueError, match="draws must be >= 1"):
        experiment.run_toy("unused", draws=0)
    with pytest.raises(ValueError, match="needs two classes of equal width"):
        toy.linear_rule(GaussianClasses(np.zeros((2, 2)), np.array([0.0, 1.0]), np.zeros(1)).pack())
