"""The hybrid experiment on the 2-D toy: boundaries for the slides' alphas, and the error sweep.

:func:`run_toy` is what ``python -m refimpl hybrid --toy`` runs. For each of ``draws`` random
training sets (2 labelled points per class and 200 unlabelled points of the default toy) it
fits Bishop & Lasserre's hybrid at every ``alpha`` and the lambda blend at every ``lambda``,
all from the generative fit, and measures each classifier's error on one large test set. It
writes two figures and returns the metrics:

* ``boundaries.png``: the first training set, the Bayes boundary, and the fitted boundaries
  of the hybrid at the slides' ``alpha = 0, 0.4, 0.6, 0.7, 0.8, 1`` (top) and of the blend at
  six ``lambda`` (bottom);
* ``error_vs_alpha.png``: test error against ``alpha`` and against ``lambda`` (mean over the
  draws, error bars one standard error), and each setting's paired difference from the
  better end (error bars two standard errors: below zero means better than both ends).

The sweep machinery (:func:`sweep`, :func:`summarize`, :func:`paired_difference`,
:func:`plot_sweep`) knows nothing about the toy: a caller hands it a function that trains and
tests the classifiers of one draw, which is how the same curves are drawn for other models.

Host-only (NumPy, matplotlib).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from refimpl.hybrid import fit, toy
from refimpl.hybrid.objectives import sigma_of_alpha
from refimpl.learning.runs import Progress
from refimpl.validation import check_positive_int

__all__ = [
    "Curve",
    "ToySettings",
    "paired_difference",
    "plot_boundaries",
    "plot_sweep",
    "run_toy",
    "summarize",
    "sweep",
    "toy_draw",
]

SLIDE_ALPHAS = (0.0, 0.4, 0.6, 0.7, 0.8, 1.0)  # the six panels of the slides' figure


# --- the sweep, for any model ------------------------------------------------------------------


class _SweepProgress(Progress):
    """The learning runs' progress display (a bar on a terminal, lines in a log), per draw."""

    def step(self, done: int, text: str = ""):
        self.done = done
        if self.bar is not None:
            self.bar.update(1)
            if text:
                self.bar.set_postfix_str(text, refresh=False)
        elif done % self.every == 0 or done == self.total:
            elapsed = time.perf_counter() - self.t0
            print(
                f"{self.label}: draw {done}/{self.total} ({elapsed:.0f} s) {text}",
                file=self.stream,
                flush=True,
            )


def sweep(run_draw, draws: int, progress: bool = True, label: str = "sweep") -> dict:
    """Call ``run_draw(i)`` for ``i = 0 .. draws-1`` and stack what it returns.

    ``run_draw(i)`` returns a dict of 1-D arrays (e.g. ``{"hybrid": errors over alpha,
    "blend": errors over lambda}``), the same keys and lengths every time; the result maps
    each key to a ``(draws, n)`` array. ``progress`` shows a bar on a terminal and a line
    every 5% otherwise.
    """
    draws = check_positive_int(draws, "draws")
    bar = _SweepProgress(draws, 0, label, every=max(1, draws // 20)) if progress else None
    rows = []
    try:
        for i in range(draws):
            rows.append({k: np.asarray(v, dtype=float) for k, v in run_draw(i).items()})
            if bar is not None:
                bar.step(i + 1)
    finally:
        if bar is not None:
            bar.close()
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def summarize(errors) -> dict:
    """Mean, standard error, median and 90th percentile over draws (axis 0) of ``errors (draws,
    n)``. The standard error is ``std / sqrt(draws)`` with the ``draws - 1`` denominator. The
    quantiles are there because errors over training sets are heavy-tailed: a few draws
    with two badly placed labels dominate a mean."""
    errors = np.asarray(errors, dtype=float)
    se = errors.std(axis=0, ddof=1) / math.sqrt(len(errors)) if len(errors) > 1 else 0 * errors[0]
    return {
        "mean": errors.mean(axis=0),
        "se": se,
        "median": np.median(errors, axis=0),
        "q90": np.quantile(errors, 0.9, axis=0),
    }


def paired_difference(errors, reference) -> dict:
    """``errors[:, j] - reference`` per draw, summarised (mean, se): ``reference (draws,)``.

    Paired over draws: the training set's luck, shared by every setting, cancels, so the
    standard errors are much smaller than those of the errors themselves.
    """
    errors = np.asarray(errors, dtype=float)
    return summarize(errors - np.asarray(reference, dtype=float)[:, None])


@dataclass
class Curve:
    """One swept family: settings ``x (n,)``, errors ``(draws, n)``, a label, an x-axis label
    and scale (``"linear"`` or ``"symlog"`` for a weight that spans decades down to 0)."""

    x: np.ndarray
    errors: np.ndarray
    label: str
    xlabel: str
    xscale: str = "linear"
    linthresh: float = 1e-3
    reverse: bool = False  # draw the axis right to left (to put the generative end on the left)


def _set_scale(ax, curve: Curve):
    if curve.xscale == "symlog":
        ax.set_xscale("symlog", linthresh=curve.linthresh)
        span = float(np.max(curve.x) - np.min(curve.x))
        ax.set_xlim(np.min(curve.x) - 0.2 * curve.linthresh, np.max(curve.x) + 0.3 * span)
    else:
        ax.set_xscale(curve.xscale)
    if curve.reverse:
        ax.invert_xaxis()


def _best_end(errors) -> np.ndarray:
    """Per draw, the error of whichever end (first or last setting) is better on average."""
    means = errors.mean(axis=0)
    return errors[:, 0] if means[0] <= means[-1] else errors[:, -1]


def plot_sweep(path, curves, references=None, title: str = ""):
    """Save the sweep figure: for each curve, its errors (mean +- 1 SE, and the median), and
    below, every setting's paired difference from the better end (mean +- 2 SE; below 0 =
    better than both ends). ``references`` maps a label to a horizontal line (e.g. the Bayes
    error)."""
    from refimpl import plotting

    fig, axes = plotting.figure(2, len(curves), figsize=(5.5 * len(curves), 7), squeeze=False)
    for col, curve in enumerate(curves):
        s = summarize(curve.errors)
        ax = axes[0, col]
        ax.errorbar(
            curve.x,
            s["mean"],
            yerr=s["se"],
            fmt="o-",
            ms=4,
            capsize=2,
            label=f"{curve.label}, mean",
        )
        ax.plot(curve.x, s["median"], "^:", ms=4, color="C0", alpha=0.7, label="median")
        for i, (name, value) in enumerate((references or {}).items()):
            ax.axhline(value, color=f"C{i + 2}", ls="--", lw=1, label=name)
        _set_scale(ax, curve)
        ax.set_xlabel(curve.xlabel)
        ax.set_ylabel("test error")
        ax.legend(fontsize=8)
        ax.set_title(f"{curve.label}: {len(curve.errors)} draws, bars 1 SE", fontsize=10)
        d = paired_difference(curve.errors, _best_end(curve.errors))
        ax = axes[1, col]
        ax.errorbar(curve.x, d["mean"], yerr=2 * d["se"], fmt="s-", ms=4, capsize=2, color="C1")
        ax.axhline(0, color="k", lw=0.8)
        _set_scale(ax, curve)
        ax.set_xlabel(curve.xlabel)
        ax.set_ylabel("error - error of the better end")
        ax.set_title("paired difference from the better end, bars 2 SE", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return plotting.save(fig, path)


# --- the toy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToySettings:
    """What :func:`run_toy` sweeps. ``prior_scale`` is ``tau`` of the Gaussian prior on
    ``w_D`` (and on ``w`` in ``L_G``, ``L_D`` and the blend). The ``lambda`` grid is dense
    near 0 because the blend weighs a sum over every input (``L_G``) against one over the
    labelled points (``L_D``): it only turns discriminative when ``lambda`` falls below
    about ``labelled / all``, here ``4 / 204``."""

    labelled_per_class: int = 2
    n_unlabelled: int = 200
    test_per_class: int = 10000
    prior_scale: float = 3.0
    alphas: tuple = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
    lambdas: tuple = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0)
    figure_lambdas: tuple = (1.0, 0.1, 0.05, 0.02, 0.005, 0.0)
    gtol: float = 1e-6  # |grad|_inf; moves a boundary by far less than a test point's spacing
    problem: toy.ToyProblem = field(default_factory=toy.default_toy)


def toy_draw(settings: ToySettings, data: toy.SemiSupervised, x_test, y_test) -> dict:
    """Fit and test every classifier of one training set ``data``.

    Returns ``{"hybrid": errors over settings.alphas, "blend": errors over settings.lambdas,
    "nonconverged": [count]}``; every fit starts from the generative fit, so ``alpha = 0``
    and ``lambda = 1`` (both ``L_G``), and ``alpha = 1`` and ``lambda = 0`` (both ``L_D``),
    are the same fits.
    """
    tau, gtol = settings.prior_scale, settings.gtol
    gen = fit.fit_generative(data, tau, gtol=gtol)
    failed = int(not gen.converged)
    hybrid, blend = [], []
    for alpha in settings.alphas:
        h = fit.fit_hybrid(data, alpha, tau, start=(gen.w, gen.w), gtol=gtol)
        failed += not h.converged
        hybrid.append(toy.error_rate(h.w_D, x_test, y_test))
    for lam in settings.lambdas:
        m = fit.fit_blend(data, lam, tau, w0=gen.w, gtol=gtol)
        failed += not m.converged
        blend.append(toy.error_rate(m.w, x_test, y_test))
    return {"hybrid": hybrid, "blend": blend, "nonconverged": [failed]}


def plot_boundaries(path, problem: toy.ToyProblem, data: toy.SemiSupervised, rows, extent=None):
    """Panels of fitted boundaries on one training set: ``rows`` is a list of lists of
    ``(title, w)``; each panel shows the unlabelled points (grey), the labelled ones (large,
    coloured by class), the Bayes boundary (dashed) and the model's ``p(y|x, w) = 1/2`` line,
    on ``[-extent, extent]^2`` (default: at least 3, and every labelled point)."""
    from refimpl import plotting

    if extent is None:
        extent = max(3.0, 1.1 * float(np.abs(data.x_labelled).max()))

    grid = np.linspace(-extent, extent, 241)
    gx, gy = np.meshgrid(grid, grid)
    points = np.column_stack([gx.ravel(), gy.ravel()])
    try:
        normal, offset = toy.bayes_rule(problem)
    except ValueError:  # no linear Bayes rule (covariances differ): draw none
        normal = None
    ncol = max(len(r) for r in rows)
    fig, axes = plotting.figure(
        len(rows), ncol, figsize=(2.6 * ncol, 2.9 * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c >= len(row):
                ax.axis("off")
                continue
            title, w = row[c]
            ax.scatter(*data.x_unlabelled.T, s=3, color="0.6", lw=0)
            for k, colour in ((0, "C0"), (1, "C3")):
                pts = data.x_labelled[data.y_labelled == k]
                ax.scatter(*pts.T, s=60, color=colour, edgecolor="k", zorder=3)
            if normal is not None:
                bayes = (points @ normal + offset).reshape(gx.shape)
                ax.contour(gx, gy, bayes, [0], colors="k", linestyles="--", linewidths=1)
            ax.contour(
                gx, gy, toy.log_odds(w, points).reshape(gx.shape), [0], colors="C2", linewidths=1.8
            )
            ax.set_xlim(-extent, extent)
            ax.set_ylim(-extent, extent)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return plotting.save(fig, path)


def _limit_error(problem: toy.ToyProblem, x_test, y_test) -> float:
    """Error of the isotropic model fitted to infinitely many labelled points: exact when its
    rule is linear (equal widths), else measured on the test set."""
    w = toy.isotropic_limit(problem)
    try:
        return toy.linear_rule_error(problem, *toy.linear_rule(w, problem.dim))
    except ValueError:
        return toy.error_rate(w, x_test, y_test)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, np.integer)):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf" or "nan": strict JSON has no infinities
    return value


def _family(name: str, key: str, values, errors) -> dict:
    """Means, standard errors, the paired differences from both ends, and the best setting."""
    s = summarize(errors)
    vs_first, vs_last = (paired_difference(errors, errors[:, i]) for i in (0, -1))
    best = None
    if len(values) > 2:
        inner = 1 + int(np.argmin(s["mean"][1:-1]))  # best setting strictly between the ends
        best = _best_inner(key, values, inner, s, vs_first, vs_last)
    return {
        key: list(values),
        "error_mean": s["mean"],
        "error_se": s["se"],
        "error_median": s["median"],
        "error_q90": s["q90"],
        "minus_generative_mean": vs_first["mean"],
        "minus_generative_se": vs_first["se"],
        "minus_discriminative_mean": vs_last["mean"],
        "minus_discriminative_se": vs_last["se"],
        "best_inner": best,
        "label": name,
    }


def _best_inner(key, values, inner, s, vs_first, vs_last) -> dict:
    """The best setting between the ends, its paired differences from both, and whether it is
    better than both by more than two standard errors."""
    best = {
        key: values[inner],
        "error": s["mean"][inner],
        "se": s["se"][inner],
        "minus_generative": vs_first["mean"][inner],
        "minus_generative_se": vs_first["se"][inner],
        "minus_discriminative": vs_last["mean"][inner],
        "minus_discriminative_se": vs_last["se"][inner],
    }
    best["beats_both_ends"] = bool(
        best["minus_generative"] < -2 * best["minus_generative_se"]
        and best["minus_discriminative"] < -2 * best["minus_discriminative_se"]
    )
    return best


def run_toy(
    out: Path, seed: int = 0, draws: int = 100, progress=True, settings: ToySettings | None = None
) -> dict:
    """The toy experiment: figures ``boundaries.png`` and ``error_vs_alpha.png`` in ``out``,
    and the metrics (a JSON-ready dict; the caller writes ``metrics.json``).

    ``seed`` fixes the test set and every training set (``numpy.random.SeedSequence(seed)``
    spawns one stream for the test set and one per draw); ``draws`` training sets are
    averaged; ``progress`` shows progress. About 30 s for 100 draws on one core.
    """
    settings = settings or ToySettings()
    draws = check_positive_int(draws, "draws")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    problem = settings.problem
    streams = np.random.SeedSequence(int(seed)).spawn(draws + 1)
    x_test, y_test = problem.sample(
        [settings.test_per_class] * problem.n_classes, np.random.default_rng(streams[0])
    )

    def training_set(i):
        return toy.draw_training_set(
            problem,
            settings.labelled_per_class,
            settings.n_unlabelled,
            np.random.default_rng(streams[1 + i]),
        )

    results = sweep(
        lambda i: toy_draw(settings, training_set(i), x_test, y_test),
        draws,
        progress,
        "hybrid toy",
    )

    # the slides' figure, on the first training set
    data = training_set(0)
    tau, gtol = settings.prior_scale, settings.gtol
    gen = fit.fit_generative(data, tau, gtol=gtol).w
    hybrid_row = [
        (
            f"hybrid, $\\alpha = {a:g}$" + (" (gen.)" if a == 0 else " (disc.)" if a == 1 else ""),
            fit.fit_hybrid(data, a, tau, start=(gen, gen), gtol=gtol).w_D,
        )
        for a in SLIDE_ALPHAS
    ]
    blend_row = [
        (f"blend, $\\lambda = {lam:g}$", fit.fit_blend(data, lam, tau, w0=gen, gtol=gtol).w)
        for lam in settings.figure_lambdas
    ]
    plot_boundaries(out / "boundaries.png", problem, data, [hybrid_row, blend_row])

    bayes = toy.bayes_error(problem)
    gen_limit = _limit_error(problem, x_test, y_test)
    curves = [
        Curve(
            np.array(settings.alphas),
            results["hybrid"],
            "Bishop & Lasserre hybrid",
            "$\\alpha$ (0 generative, 1 discriminative)",
        ),
        Curve(
            np.array(settings.lambdas),
            results["blend"],
            "$\\lambda$ blend",
            "$\\lambda$ (1 generative, 0 discriminative; log axis below 0.001 linear)",
            "symlog",
            reverse=True,
        ),
    ]
    plot_sweep(
        out / "error_vs_alpha.png",
        curves,
        {"Bayes error": bayes, "isotropic fit, infinite labelled data": gen_limit},
        f"{draws} training sets of {settings.labelled_per_class} labelled points per class "
        f"and {settings.n_unlabelled} unlabelled; test set of "
        f"{settings.test_per_class * problem.n_classes}",
    )

    settings_dict = {k: v for k, v in asdict(settings).items() if k != "problem"}
    metrics = {
        "seed": int(seed),
        "draws": draws,
        "settings": settings_dict,
        "problem": {
            "means": problem.means,
            "covariances": problem.covariances,
            "priors": problem.priors,
            "bayes_error": bayes,
            "isotropic_fit_infinite_labelled_error": gen_limit,
        },
        "test_error_monte_carlo_se": math.sqrt(
            0.25 / (settings.test_per_class * problem.n_classes)
        ),
        "hybrid": {
            **_family("Bishop & Lasserre hybrid", "alpha", settings.alphas, results["hybrid"]),
            "sigma": [sigma_of_alpha(a) for a in settings.alphas],
        },
        "blend": _family("lambda blend", "lambda", settings.lambdas, results["blend"]),
        "nonconverged_fits": int(results["nonconverged"].sum()),
        "fits": draws * (1 + len(settings.alphas) + len(settings.lambdas)),
        "seconds": time.perf_counter() - t0,
    }
    return _jsonable(metrics)
