"""The 2-D toy of hybrid training: the true class densities, and the Gaussian model fitted to them.

**The truth** (:class:`ToyProblem`): ``K`` Gaussian classes ``N(mu_k, Sigma_k)`` with priors
``pi_k``. The default toy (:func:`default_toy`) has two classes that share one *elongated*
covariance whose long axis is oblique to the line joining the means. The Bayes rule is then
linear with normal ``Sigma^{-1} (mu_1 - mu_0)``, tilted away from ``mu_1 - mu_0``.

**The model** (the slides' ``p(x | y = k, w) = N(w_m^k, w_s^k)``): isotropic Gaussian
class-conditionals with a class prior,

    log p(x, y = k | w) = log pi_k - D log s_k - (D/2) log(2 pi) - |x - m_k|^2 / (2 s_k^2),

a *misspecified* family for the toy: it cannot represent the elongated covariance. Fitted by
maximum likelihood to labelled data it puts ``m_k`` at the class means and ``s_0 = s_1``, so
its boundary tends to the perpendicular bisector of the means, not the tilted Bayes
boundary: the generative end is **biased** however many points it sees
(:func:`linear_rule_error` gives its asymptotic error exactly). Its discriminative twin,
``p(y | x, w) = softmax_k log p(x, y = k | w)``, has log-odds

    log p(y=1|x) / p(y=0|x) = (1/(2 s_0^2) - 1/(2 s_1^2)) |x|^2 + (m_1/s_1^2 - m_0/s_0^2) . x + c,

a quadratic boundary that *contains* every linear one (``s_0 = s_1``), the Bayes rule
included: the conditional model is well specified, so the discriminative end is unbiased,
but with two labelled points per class it has a large **variance**. That is the trade the
hybrid objectives of :mod:`refimpl.hybrid.objectives` negotiate.

**Parameters** are one unconstrained vector ``w`` (so that any optimiser can be used):

    w = [m_1 (D), ..., m_K (D), log s_1, ..., log s_K, a_2, ..., a_K],   P = K D + 2 K - 1,

means in data units, log standard deviations, and log-odds ``a_k = log pi_k / pi_1`` of
classes ``2..K`` against the first (``pi = softmax([0, a])``; one logit per class would leave
a direction along which nothing changes). ``K`` is read off the length, ``K = (P + 1)/(D + 2)``.

The model's class scores ``S[m, k] = log p(x_m, y = k | w)`` (:func:`class_log_joint`) and
their vector-Jacobian product (:func:`class_log_joint_vjp`, the chain rule by hand) are the
two functions every likelihood of :mod:`refimpl.hybrid.objectives` is built from.

Host-only (NumPy): a small exact toy, evaluated thousands of times, where the GPU has
nothing to gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from refimpl.models.discriminative import check_labels
from refimpl.validation import check_finite, check_float_array, check_ndim, shape_str

__all__ = [
    "GaussianClasses",
    "SemiSupervised",
    "ToyProblem",
    "bayes_error",
    "bayes_rule",
    "class_log_joint",
    "class_log_joint_vjp",
    "default_toy",
    "elongated_toy",
    "draw_training_set",
    "error_rate",
    "isotropic_limit",
    "linear_rule",
    "linear_rule_error",
    "log_odds",
    "n_params",
    "predict",
]

LOG_2PI = math.log(2 * math.pi)


# --- the truth --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyProblem:
    """``K`` Gaussian classes ``N(means[k], covariances[k])`` with probabilities ``priors``.

    Shapes: ``means (K, D)``, ``covariances (K, D, D)`` (symmetric positive definite),
    ``priors (K,)`` (positive, summing to 1).
    """

    means: np.ndarray
    covariances: np.ndarray
    priors: np.ndarray

    def __post_init__(self):
        means = np.asarray(self.means, dtype=float)
        cov = np.asarray(self.covariances, dtype=float)
        priors = np.asarray(self.priors, dtype=float)
        check_ndim(means, 2, "means", "(K, D)")
        k, d = means.shape
        if k < 2:
            raise ValueError(
                f"means must hold at least 2 classes; got shape {shape_str(means.shape)}"
            )
        if cov.shape != (k, d, d):
            raise ValueError(
                f"covariances must have shape ({k}, {d}, {d}) to match means "
                f"{shape_str(means.shape)}; got {shape_str(cov.shape)}"
            )
        if not np.allclose(cov, cov.transpose(0, 2, 1)) or np.any(np.linalg.eigvalsh(cov) <= 0):
            raise ValueError("covariances must be symmetric positive definite")
        if priors.shape != (k,) or np.any(priors <= 0) or abs(priors.sum() - 1) > 1e-12:
            raise ValueError(
                f"priors must be {k} positive numbers summing to 1; got {priors.tolist()}"
            )
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covariances", cov)
        object.__setattr__(self, "priors", priors)

    @property
    def n_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, counts, rng=None, noise=None) -> tuple:
        """``counts[k]`` points of each class: ``(x (N, D), y (N,))``, sorted by class.

        ``x = mu_k + L_k z`` with ``L_k`` the Cholesky factor of ``Sigma_k`` and ``z`` standard
        normal: drawn from the generator ``rng``, or given as ``noise (N, D)`` (so that another
        implementation fed the same ``z`` gets the same points).
        """
        counts = [int(c) for c in counts]
        if len(counts) != self.n_classes or min(counts) < 0:
            raise ValueError(f"counts must be {self.n_classes} non-negative integers; got {counts}")
        total = sum(counts)
        if noise is None:
            if rng is None:
                raise ValueError("sample needs a random generator rng or the noise array")
            noise = rng.standard_normal((total, self.dim))
        noise = np.asarray(noise, dtype=float)
        if noise.shape != (total, self.dim):
            raise ValueError(
                f"noise must have shape ({total}, {self.dim}) for counts {counts}; "
                f"got {shape_str(noise.shape)}"
            )
        xs, ys, start = [], [], 0
        for k, c in enumerate(counts):
            chol = np.linalg.cholesky(self.covariances[k])
            xs.append(self.means[k] + noise[start : start + c] @ chol.T)
            ys.append(np.full(c, k, dtype=np.int64))
            start += c
        return np.concatenate(xs), np.concatenate(ys)


def default_toy() -> ToyProblem:
    """The lesson's toy: two classes, one shared covariance elongated at 45 degrees to the means.

    ``mu_0 = (-1, 0)``, ``mu_1 = (1, 0)``; ``Sigma`` has standard deviation 0.9 along
    ``(1, 1)/sqrt 2`` and 0.5 across it; equal priors. The Bayes rule (:func:`bayes_rule`)
    errs on 5.3% of points; the isotropic model's large-sample fit from labelled points
    (:func:`isotropic_limit`) has the vertical boundary ``x_1 = 0`` and errs on 8.5%. The
    elongation (0.9 against 0.5) makes the model wrong but not useless: rounder classes make
    it nearly right, longer ones make its fit to unlabelled points mislead
    (``lessons/14_hybrid_training.py`` sweeps it).
    """
    return elongated_toy(0.9, 0.5)


def elongated_toy(long_sd: float, short_sd: float, angle_deg: float = 45.0) -> ToyProblem:
    """Two equally likely classes at ``(-1, 0)`` and ``(1, 0)`` sharing a covariance with
    standard deviations ``long_sd`` along the direction at ``angle_deg`` degrees and
    ``short_sd`` across it. ``long_sd = short_sd`` is the isotropic case, where the model
    family holds the truth."""
    angle = math.radians(angle_deg)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    cov = rot @ np.diag([long_sd**2, short_sd**2]) @ rot.T
    return ToyProblem(np.array([[-1.0, 0.0], [1.0, 0.0]]), np.stack([cov, cov]), np.full(2, 0.5))


def linear_rule_error(problem: ToyProblem, normal, offset: float) -> float:
    """Exact error of "class 1 iff ``normal . x + offset > 0``" on a two-class ``problem``.

    ``normal . x`` is Gaussian in each class, so with ``z_k = (normal . mu_k + offset) /
    sqrt(normal^T Sigma_k normal)``: error ``= pi_0 Phi(z_0) + pi_1 Phi(-z_1)``.
    """
    if problem.n_classes != 2:
        raise ValueError(f"linear_rule_error needs 2 classes; the problem has {problem.n_classes}")
    normal = np.asarray(normal, dtype=float)
    if normal.shape != (problem.dim,) or not np.any(normal):
        raise ValueError(
            f"normal must be a non-zero vector of shape ({problem.dim},); got {normal.tolist()}"
        )
    z = [
        (normal @ problem.means[k] + offset) / math.sqrt(normal @ problem.covariances[k] @ normal)
        for k in (0, 1)
    ]
    return float(problem.priors[0] * ndtr(z[0]) + problem.priors[1] * ndtr(-z[1]))


def bayes_rule(problem: ToyProblem) -> tuple:
    """``(normal, offset)`` of the Bayes rule of a two-class problem with a shared covariance.

    ``log p(y=1|x)/p(y=0|x) = normal . x + offset`` with ``normal = Sigma^{-1}(mu_1 - mu_0)``,
    ``offset = -(mu_1 + mu_0) . normal / 2 + log(pi_1/pi_0)`` (linear discriminant analysis).
    """
    if problem.n_classes != 2 or not np.allclose(problem.covariances[0], problem.covariances[1]):
        raise ValueError("bayes_rule needs two classes with one shared covariance")
    mu0, mu1 = problem.means
    normal = np.linalg.solve(problem.covariances[0], mu1 - mu0)
    offset = -0.5 * (mu1 + mu0) @ normal + math.log(problem.priors[1] / problem.priors[0])
    return normal, float(offset)


def bayes_error(problem: ToyProblem) -> float:
    """The smallest error any classifier can reach on ``problem`` (shared covariance, 2 classes)."""
    return linear_rule_error(problem, *bayes_rule(problem))


def isotropic_limit(problem: ToyProblem) -> np.ndarray:
    """The model's maximum-likelihood fit to infinitely many labelled points, ``w (P,)``.

    The ML fit matches the moments it can: ``m_k = mu_k``, ``s_k^2 = trace(Sigma_k) / D``,
    ``pi_k`` = the true priors. Its error is the generative end's bias, which no amount of
    labelled data removes.
    """
    d = problem.dim
    log_std = 0.5 * np.log(np.trace(problem.covariances, axis1=1, axis2=2) / d)
    log_odds = np.log(problem.priors[1:] / problem.priors[0])
    return GaussianClasses(problem.means.copy(), log_std, log_odds).pack()


def linear_rule(w, dim: int = 2) -> tuple:
    """``(normal, offset)`` of a two-class model whose classes have equal widths, whose
    log-odds ``S[:, 1] - S[:, 0]`` is then linear: ``normal = (m_1 - m_0) / s^2``, ``offset =
    a - (|m_1|^2 - |m_0|^2) / (2 s^2)``."""
    theta = GaussianClasses.unpack(np.asarray(w, dtype=float), dim)
    if theta.n_classes != 2 or not np.isclose(
        theta.log_std[0], theta.log_std[1], atol=0, rtol=1e-12
    ):
        raise ValueError(
            "linear_rule needs two classes of equal width (else the rule is quadratic)"
        )
    m0, m1 = theta.means
    inv_var = math.exp(-2 * theta.log_std[0])
    return (m1 - m0) * inv_var, float(theta.log_odds[0] - 0.5 * (m1 @ m1 - m0 @ m0) * inv_var)


# --- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemiSupervised:
    """A training set: labelled points ``(x_labelled (L, D), y_labelled (L,))`` and unlabelled
    points ``x_unlabelled (U, D)`` (``U`` may be 0); labels are integers in ``[0, n_classes)``.
    """

    x_labelled: np.ndarray
    y_labelled: np.ndarray
    x_unlabelled: np.ndarray
    n_classes: int = 2

    def __post_init__(self):
        for name in ("x_labelled", "x_unlabelled"):
            x = getattr(self, name)
            check_float_array(x, name)
            check_ndim(x, 2, name, "(N, D)")
            check_finite(x, name)
        xl, xu, y = self.x_labelled, self.x_unlabelled, self.y_labelled
        if xu.shape[1] != xl.shape[1]:
            raise ValueError(
                f"x_unlabelled has {xu.shape[1]} coordinates per point (shape "
                f"{shape_str(xu.shape)}) but x_labelled has {xl.shape[1]} "
                f"(shape {shape_str(xl.shape)})"
            )
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int):
            raise TypeError(f"n_classes must be an integer; got {self.n_classes!r}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2; got {self.n_classes}")
        check_labels(y, xl.shape[0], self.n_classes, "y_labelled")

    @property
    def dim(self) -> int:
        return self.x_labelled.shape[1]

    @property
    def x_all(self) -> np.ndarray:
        """Every input, labelled first: ``(L + U, D)``."""
        return np.concatenate([self.x_labelled, self.x_unlabelled])

    def without_unlabelled(self) -> SemiSupervised:
        """The same labelled points and no unlabelled ones."""
        return SemiSupervised(
            self.x_labelled, self.y_labelled, self.x_unlabelled[:0], self.n_classes
        )


def draw_training_set(
    problem: ToyProblem, labelled_per_class: int, n_unlabelled: int, rng
) -> SemiSupervised:
    """``labelled_per_class`` labelled points of every class, and ``n_unlabelled`` points whose
    classes are drawn from the priors and then forgotten."""
    x_lab, y_lab = problem.sample([labelled_per_class] * problem.n_classes, rng)
    x_unl, _ = problem.sample(rng.multinomial(n_unlabelled, problem.priors), rng)
    return SemiSupervised(x_lab, y_lab, x_unl, problem.n_classes)


# --- the model --------------------------------------------------------------------------------


def n_params(n_classes: int, dim: int) -> int:
    """Length ``P = K D + 2 K - 1`` of the parameters of ``K`` isotropic classes in ``D``-D."""
    return n_classes * dim + 2 * n_classes - 1


@dataclass(frozen=True)
class GaussianClasses:
    """The parameter vector ``w`` unpacked: ``means (K, D)``, ``log_std (K,)``, ``log_odds
    (K - 1,)`` (classes 2..K against class 1)."""

    means: np.ndarray
    log_std: np.ndarray
    log_odds: np.ndarray

    @classmethod
    def unpack(cls, w, dim: int) -> GaussianClasses:
        """Split ``w (P,)``; the number of classes is ``(P + 1) / (D + 2)``."""
        if not (
            isinstance(w, np.ndarray)
            and w.dtype in (np.float64, np.float32)
            and w.ndim == 1
            and np.isfinite(w).all()
        ):
            check_float_array(w, "w")
            check_ndim(w, 1, "w", "(P,)")
            check_finite(w, "w")
        k, rem = divmod(w.size + 1, dim + 2)
        if rem or k < 2:
            raise ValueError(
                f"w must have K*{dim} + 2K - 1 entries for K >= 2 classes in {dim}-D "
                f"({', '.join(str(n_params(j, dim)) for j in (2, 3, 4))}, ...); got {w.size}"
            )
        return cls(w[: k * dim].reshape(k, dim), w[k * dim : k * dim + k], w[k * dim + k :])

    def pack(self) -> np.ndarray:
        return np.concatenate([self.means.ravel(), self.log_std, self.log_odds])

    @property
    def n_classes(self) -> int:
        return self.means.shape[0]

    @property
    def log_priors(self) -> np.ndarray:
        """``log pi = log softmax([0, a])``, ``(K,)``."""
        logits = np.concatenate([[0.0], self.log_odds])
        return logits - np.logaddexp.reduce(logits)


def _check_points(x, name: str = "x"):
    # the fast path is what thousands of fits take; the slow one words the error
    if not (
        isinstance(x, np.ndarray)
        and x.dtype in (np.float64, np.float32)
        and x.ndim == 2
        and np.isfinite(x).all()
    ):
        check_float_array(x, name)
        check_ndim(x, 2, name, "(M, D)")
        check_finite(x, name)


def class_log_joint(w, x):
    """The model's class scores ``S[m, k] = log p(x_m, y = k | w)``, ``(M, K)``.

    ``log pi_k - D log s_k - (D/2) log(2 pi) - |x_m - m_k|^2 / (2 s_k^2)`` for points
    ``x (M, D)`` and parameters ``w (P,)`` (module docstring). Every likelihood of the hybrid
    lesson is a function of these scores: joint ``S[m, y_m]``, marginal
    ``log sum_k exp S[m, k]``, conditional ``S[m, y_m] - log sum_k exp S[m, k]``.
    """
    _check_points(x)
    theta = GaussianClasses.unpack(w, x.shape[1])
    # BEGIN SOLUTION lesson 14
    d = x.shape[1]
    sq = ((x[:, None, :] - theta.means[None, :, :]) ** 2).sum(axis=2)  # (M, K)
    inv_var = np.exp(-2 * theta.log_std)
    return theta.log_priors - d * theta.log_std - 0.5 * d * LOG_2PI - 0.5 * sq * inv_var
    # END SOLUTION


def class_log_joint_vjp(w, x, dS):
    """The chain rule by hand: ``sum_{m,k} dS[m, k] dS[m, k]/dw``, shape ``(P,)``.

    For any scalar ``L(S)`` with ``dL/dS = dS (M, K)`` this is ``dL/dw``. With
    ``r_mk = x_m - m_k`` and ``pi = softmax([0, a])``:

        dS[m,k]/dm_k     = r_mk / s_k^2
        dS[m,k]/dlog s_k = -D + |r_mk|^2 / s_k^2
        dS[m,k]/da_j     = 1(k = j) - pi_j            (j = 2..K)

    and ``S[m, k]`` does not depend on the other classes' means and widths.
    """
    _check_points(x)
    theta = GaussianClasses.unpack(w, x.shape[1])
    dS = np.asarray(dS, dtype=float)
    if dS.shape != (x.shape[0], theta.n_classes):
        raise ValueError(
            f"dS must have shape (M, K) = ({x.shape[0]}, {theta.n_classes}) for x "
            f"{shape_str(x.shape)} and a {theta.n_classes}-class w; got {shape_str(dS.shape)}"
        )
    # BEGIN SOLUTION lesson 14
    d = x.shape[1]
    r = x[:, None, :] - theta.means[None, :, :]  # (M, K, D)
    inv_var = np.exp(-2 * theta.log_std)  # (K,)
    g_means = np.einsum("mk,mkd->kd", dS, r) * inv_var[:, None]
    g_log_std = (dS * (-d + (r**2).sum(axis=2) * inv_var)).sum(axis=0)
    priors = np.exp(theta.log_priors)
    g_log_odds = dS.sum(axis=0)[1:] - priors[1:] * dS.sum()
    return np.concatenate([g_means.ravel(), g_log_std, g_log_odds])
    # END SOLUTION


def log_odds(w, x):
    """``log p(y=1|x, w) / p(y=0|x, w) = S[:, 1] - S[:, 0]`` for a two-class model, ``(M,)``."""
    S = class_log_joint(w, x)
    if S.shape[1] != 2:
        raise ValueError(f"log_odds needs a two-class model; w has {S.shape[1]} classes")
    return S[:, 1] - S[:, 0]


def predict(w, x):
    """The model's decision, ``argmax_k p(y = k | x, w)`` (= argmax of the scores), ``(M,)``."""
    return np.argmax(class_log_joint(w, x), axis=1)


def error_rate(w, x, y) -> float:
    """Fraction of points ``x (M, D)`` whose label ``y (M,)`` differs from :func:`predict`."""
    return float(np.mean(predict(w, x) != y))
