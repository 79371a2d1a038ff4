# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 6. Langevin dynamics: synthesis by reconstruction
#
# A model we can evaluate only up to its constant, $p(\mathbf{I}) \propto \exp(f(\mathbf{I}))\, q(\mathbf{I})$,
# can still be sampled: follow the gradient of $\log p$ and add noise. This is **Langevin
# dynamics**, Eq. (5.6) for the prototype model and Eq. (6.10) for the generative ConvNet:
#
# $$\mathbf{I}_{\tau+1} = \mathbf{I}_\tau - \frac{\epsilon^2}{2}\Big[\frac{\mathbf{I}_\tau}{\sigma^2} - \mathbf{B}_{w,\delta(\mathbf{I}_\tau; w)}\Big] + \epsilon\, Z_\tau,
#   \qquad Z_\tau \sim N(0, \mathbf{1}),$$
#
# written for general $\sigma$ (the paper's $\sigma = 1$ gives its form). The gradient of
# $\log p = f + \log q$ is $\mathbf{B}_{w,\delta(\mathbf{I})} - \mathbf{I} / \sigma^2$, because on
# the piece of $\mathbf{I}$, $f = \alpha + \langle \mathbf{I}, \mathbf{B}\rangle$ (lesson 5). The
# drift is therefore $-\frac{\epsilon^2}{2\sigma^2}(\mathbf{I} - \sigma^2 \mathbf{B})$: the chain is
# pulled towards $\sigma^2\mathbf{B}_{w,\delta(\mathbf{I})}$, the **reconstruction** of the
# current image by the filters that fire on it. "The dynamics is driven by the reconstruction
# error" (section 5): synthesis is repeated reconstruction, plus noise.
#
# The update is the Euler step, with time step $\epsilon^2$, of the Langevin diffusion
# $d\mathbf{I} = \frac12 \nabla \log p\, dt + dW_t$, whose stationary law is exactly $p$. The
# discrete chain is not exact: its stationary law differs from $p$ by $O(\epsilon^2)$. This
# lesson measures that bias against the exact densities of `refimpl.exact` and removes it
# with a Metropolis-Hastings correction (MALA).

# %%
import numpy as np
from _lesson import pick, save
from scipy import stats

from refimpl import plotting
from refimpl.backend import make_rng
from refimpl.exact import exact_distribution
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.sampling import langevin, mala
from refimpl.theorems import langevin as langevin_checks

# %% [markdown]
# ## Chains on the line
#
# The 1-D prototype model of lesson 5 (three filters, modes at $-1.5$, $0$ and $2.4$).
# `langevin(model, I0, n_steps, step_size, rng)` runs one chain per row of `I0`, all in
# parallel; `record(step, I)` is called along the way. We start 20 000 chains at
# $\mathbf{I}_0 = 0$, as Algorithm 1 does, and watch a few of them.

# %%
proto = PrototypeModel(np.array([[0.4], [-1.5], [2.0]]), np.array([-0.2, -1.5, -4.0]))
model = GenerativeModel(proto, sigma=1.0)
exact = exact_distribution(model)
n_chains = pick(20000, 5000)
eps, n_steps = 0.4, pick(200, 100)
snapshots = {}


def keep(step, I):
    if step in (5, 20):
        snapshots[step] = I[:, 0].copy()
    return I[:8, 0].copy()


run = langevin(model, np.zeros((n_chains, 1)), n_steps, eps, make_rng(0), record=keep)
paths = np.array(run.trace)  # (steps + 1, 8)
x = np.linspace(-5, 6, 551)
pdf = np.exp(exact.log_density(x[:, None]))
fig, axes = plotting.figure(1, 2, figsize=(11, 4))
axes[0].plot(paths, lw=0.8)
axes[0].set_xlabel("step $\\tau$")
axes[0].set_ylabel("$I_\\tau$")
axes[0].set_title(f"8 Langevin chains from $I_0 = 0$, $\\epsilon = {eps}$", fontsize=10)
for step, values in sorted(snapshots.items()):
    axes[1].hist(
        values, bins=80, range=(-5, 6), density=True, histtype="step", label=f"after {step} steps"
    )
axes[1].hist(
    run.samples[:, 0],
    bins=80,
    range=(-5, 6),
    density=True,
    alpha=0.5,
    label=f"after {n_steps} steps",
)
axes[1].plot(x, pdf, "k", lw=1.5, label="exact $p(I)$")
axes[1].legend(fontsize=8)
axes[1].set_title(f"{n_chains} chains: histograms and the exact density", fontsize=10)
fig.tight_layout()
save(fig, __file__, "chains")

# %% [markdown]
# After a few steps the chains still remember their start (the outlined histograms); by the
# last step the histogram sits on the exact density. A chain needs about $2\sigma^2/\epsilon^2$ steps to
# forget where it was (the contraction factor of one step on a Gaussian piece is
# $1 - \epsilon^2 / 2\sigma^2$), and it hops between modes only through the low-density
# valleys, which takes longer still.
#
# ## The step-size bias, exactly, on a Gaussian
#
# With a *linear* $h$ the model is a single Gaussian:
# $p \propto \exp(\langle \mathbf{I}, \mathbf{w}\rangle)\, q = N(\mu, \sigma^2)$ with $\mu = \sigma^2 \mathbf{w}$.
# The Langevin update is then the autoregression
#
# $$\mathbf{I}_{\tau+1} - \mu = a\,(\mathbf{I}_\tau - \mu) + \epsilon Z_\tau, \qquad a = 1 - \frac{\epsilon^2}{2\sigma^2},$$
#
# whose stationary variance solves $v = a^2 v + \epsilon^2$:
#
# $$v = \frac{\epsilon^2}{1 - a^2} = \frac{\sigma^2}{1 - \epsilon^2 / 4\sigma^2} = \sigma^2\Big(1 + \frac{\epsilon^2}{4\sigma^2} + O(\epsilon^4)\Big).$$
#
# The mean is right, the variance is too large by a relative $\epsilon^2 / 4\sigma^2$, and at
# $\epsilon = 2\sigma$ it is infinite ($|a| = 1$); refimpl's samplers refuse
# $\epsilon \ge 2\sigma$ for this reason. We start chains from exact draws of $p$, so that the
# only thing that can change their law is the step-size bias, and compare:

# %%
gauss = GenerativeModel(
    PrototypeModel(np.array([[1.0]]), np.array([0.0]), activation="linear"), sigma=1.0
)
mu, var = 1.0, 1.0  # N(sigma^2 w, sigma^2)
n_gauss = pick(100000, 20000)
# four relaxation times 2 sigma^2 / eps^2 (and at least 30 steps: at eps > sqrt(2) sigma the
# contraction factor a is negative and |a| is what counts)
steps_of = lambda e: max(int(np.ceil(8 / e**2)), 30)
eps_grid = np.array(pick([0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8], [0.4, 1.0, 1.6]))
rows = []
for e in eps_grid:
    start = mu + np.sqrt(var) * make_rng(1).standard_normal((n_gauss, 1))
    ula = langevin(gauss, start, steps_of(e), e, make_rng(2)).samples[:, 0]
    adjusted = mala(gauss, start, steps_of(e), e, make_rng(3))
    rows.append((ula.var(ddof=1), adjusted.samples[:, 0].var(ddof=1), adjusted.acceptance.mean()))
    print(
        f"eps = {e:.1f}: ULA variance {rows[-1][0]:.4f} (predicted {1 / (1 - e**2 / 4):.4f}), "
        f"MALA variance {rows[-1][1]:.4f}, MALA acceptance {rows[-1][2]:.3f}"
    )
rows = np.array(rows)
se = np.sqrt(2 / (n_gauss - 1))  # relative standard error of a Gaussian sample variance

fig, axes = plotting.figure(1, 2, figsize=(11, 4))
fine = np.linspace(0.05, 1.85, 200)
axes[0].plot(
    fine, 1 / (1 - fine**2 / 4), "k", lw=1, label="ULA, predicted $1/(1 - \\epsilon^2/4\\sigma^2)$"
)
axes[0].errorbar(
    eps_grid, rows[:, 0], yerr=5 * se * rows[:, 0], fmt="o", label="ULA, measured (5 SE)"
)
axes[0].errorbar(
    eps_grid, rows[:, 1], yerr=5 * se * rows[:, 1], fmt="s", label="MALA, measured (5 SE)"
)
axes[0].axhline(1, color="0.6", lw=0.8)
axes[0].set_xlabel("$\\epsilon / \\sigma$")
axes[0].set_ylabel("stationary variance / $\\sigma^2$")
axes[0].legend(fontsize=8)
axes[0].set_title("Gaussian target: the step-size bias", fontsize=10)
axes[1].plot(eps_grid, rows[:, 2], "s-", color="C1")
axes[1].set_ylim(0, 1.02)
axes[1].set_xlabel("$\\epsilon / \\sigma$")
axes[1].set_ylabel("MALA acceptance rate")
axes[1].set_title("the price of exactness: rejected proposals", fontsize=10)
fig.tight_layout()
save(fig, __file__, "gaussian_bias")

# %% [markdown]
# ## The Metropolis correction: MALA
#
# The Metropolis-adjusted Langevin algorithm treats the Langevin step as a *proposal*,
# $\mathbf{J} = \mathbf{I} + \frac{\epsilon^2}{2}\nabla\log p(\mathbf{I}) + \epsilon Z$, with density
# $k(\mathbf{J} \mid \mathbf{I}) = N(\mathbf{J};\, \mathbf{I} + \frac{\epsilon^2}{2}\nabla\log p(\mathbf{I}),\, \epsilon^2 \mathbf{1})$,
# and accepts it with probability
#
# $$\min\Big(1,\ \frac{p(\mathbf{J})\, k(\mathbf{I} \mid \mathbf{J})}{p(\mathbf{I})\, k(\mathbf{J} \mid \mathbf{I})}\Big),$$
#
# else stays at $\mathbf{I}$. The ratio makes the chain reversible with respect to $p$
# (detailed balance), so $p$ is *exactly* stationary whatever $\epsilon$; $Z(w)$ cancels in
# the ratio, so the unnormalised density suffices. In energy form, with
# $U = -f + \|\mathbf{I}\|^2 / 2\sigma^2$ and $\mathbf{g} = \nabla \log p$, the log ratio is
#
# $$U(\mathbf{I}) - U(\mathbf{J}) + \frac{\|\mathbf{J} - \mathbf{I} - \frac{\epsilon^2}{2}\mathbf{g}(\mathbf{I})\|^2 - \|\mathbf{I} - \mathbf{J} - \frac{\epsilon^2}{2}\mathbf{g}(\mathbf{J})\|^2}{2\epsilon^2}.$$
#
# In the figure above MALA's variance is $\sigma^2$ at every step size, and what it pays is
# the acceptance rate, which falls as $\epsilon$ grows.
#
# ## The bias on a piecewise Gaussian
#
# Back to the ReLU model, where no formula is at hand but `exact.cdf` gives the exact CDF. We
# start chains from exact samples (`exact.sample`), run each sampler for four relaxation
# times, and measure the Kolmogorov-Smirnov distance $\sup_x |\hat F(x) - F(x)|$ between the
# chains' empirical CDF and the exact one. For exact draws it is pure sampling noise, about
# $0.87 / \sqrt{n}$ on average.

# %%
n_relu = pick(100000, 20000)
eps_relu = np.array(pick([0.2, 0.28, 0.4, 0.57, 0.8, 1.13, 1.6], [0.4, 0.8, 1.6]))
ks = []
for e in eps_relu:
    start = exact.sample(n_relu, make_rng(4))
    ula = langevin(model, start, steps_of(e), e, make_rng(5)).samples[:, 0]
    adjusted = mala(model, start, steps_of(e), e, make_rng(6))
    ks.append(
        (
            stats.kstest(ula, exact.cdf).statistic,
            stats.kstest(adjusted.samples[:, 0], exact.cdf).statistic,
        )
    )
    if e == eps_relu.max():
        big_ula, big_mala = ula, adjusted.samples[:, 0]
    print(
        f"eps = {e:.2f}: KS(ULA) = {ks[-1][0]:.4f}, KS(MALA) = {ks[-1][1]:.4f}, "
        f"MALA acceptance {adjusted.acceptance.mean():.3f}"
    )
ks = np.array(ks)
critical = langevin_checks.ks_critical(n_relu)

fig, axes = plotting.figure(1, 2, figsize=(11, 4))
axes[0].hist(
    big_ula,
    bins=90,
    range=(-5, 6),
    density=True,
    histtype="step",
    lw=1.2,
    label=f"ULA, $\\epsilon = {eps_relu.max():.1f}$",
)
axes[0].hist(
    big_mala,
    bins=90,
    range=(-5, 6),
    density=True,
    histtype="step",
    lw=1.2,
    label=f"MALA, $\\epsilon = {eps_relu.max():.1f}$",
)
axes[0].plot(x, pdf, "k", lw=1, label="exact $p(I)$")
axes[0].legend(fontsize=8)
axes[0].set_title("a large step: ULA spreads out, MALA does not", fontsize=10)
axes[1].loglog(eps_relu, ks[:, 0], "o-", label="ULA")
axes[1].loglog(eps_relu, ks[:, 1], "s-", label="MALA")
axes[1].loglog(
    eps_relu,
    ks[-1, 0] * (eps_relu / eps_relu[-1]) ** 2,
    ":",
    color="0.5",
    label="slope 2 ($\\propto \\epsilon^2$)",
)
axes[1].axhline(
    0.87 / np.sqrt(n_relu), color="0.6", lw=0.8, label="sampling noise $0.87/\\sqrt{n}$"
)
axes[1].axhline(critical, color="r", lw=0.8, ls="--", label="KS critical value, level $10^{-6}$")
axes[1].minorticks_off()
axes[1].set_xticks(eps_relu, [f"{e:.2g}" for e in eps_relu])
axes[1].set_xlabel("$\\epsilon / \\sigma$")
axes[1].set_ylabel("KS distance to the exact CDF")
axes[1].legend(fontsize=8)
axes[1].set_title(f"{n_relu} chains from exact draws", fontsize=10)
fig.tight_layout()
save(fig, __file__, "relu_bias")

# %% [markdown]
# ULA's distance falls like $\epsilon^2$ until it reaches the sampling noise; MALA's stays
# at the noise level at every step size. The check in `refimpl.theorems.langevin` that
# `python -m refimpl verify` runs says the same in two numbers: MALA's KS distance is below
# the critical value (a correct sampler exceeds it with probability $10^{-6}$), and ULA's at
# $\epsilon = 0.375\sigma$ is less than half of that at $1.5\sigma$.

# %%
results = langevin_checks.check_langevin_1d(
    model, exact, np.random.default_rng(7), n=pick(20000, 5000)
)
for r in results:
    print(
        f"{r.claim}: residual {r.residual:.3g} (bound {r.bound}) {'PASS' if r.passed else 'FAIL'}"
    )

# %% [markdown]
# In practice (Algorithm 1, lesson 8 onwards) the generative ConvNet is learned with the
# unadjusted chain and a small, fixed number of steps; the bias and the incomplete mixing
# are part of what learning then corrects for. MALA is the tool for *checking* a model's
# samples, and for sampling when exactness matters more than speed.
#
# ## Summary
#
# * Langevin dynamics, Eqs. (5.6), (6.10): $\mathbf{I} \leftarrow \mathbf{I} + \frac{\epsilon^2}{2}(\mathbf{B}_{w,\delta(\mathbf{I})} - \mathbf{I}/\sigma^2) + \epsilon Z$,
#   a drift towards the reconstruction $\sigma^2\mathbf{B}$ plus noise.
# * The unadjusted chain is biased by $O(\epsilon^2)$: on a Gaussian its variance is
#   $\sigma^2 / (1 - \epsilon^2/4\sigma^2)$, and it diverges at $\epsilon \ge 2\sigma$.
# * MALA accepts each Langevin proposal with the Hastings ratio and samples $p$ exactly at
#   any step size, at the price of rejections.
# * Starting chains from exact samples separates the stationary bias from the time to mix.
#
# ## Exercises
#
# 1. Derive the mean and variance of the Gaussian ULA chain after $t$ steps from
#    $\mathbf{I}_0 = 0$, and check them with `langevin` (the variance is
#    $v\,(1 - a^{2t})$).
# 2. On the ReLU model, how many steps does a chain started at $I_0 = 5$ need before its
#    histogram matches the exact density? Compare with $2\sigma^2/\epsilon^2$.
# 3. Show that MALA's acceptance probability is $1 - O(\epsilon^3)$ on a smooth target, and
#    measure the acceptance rate against $\epsilon$ on a log-log plot.
# 4. Why does the Hastings ratio need $k(\mathbf{I}\mid\mathbf{J})$ at all? Run MALA with the
#    ratio $p(\mathbf{J})/p(\mathbf{I})$ only (plain Metropolis on a non-symmetric proposal) and
#    measure its bias.
# 5. **Assignment:** `python -m lessons.assign 6 --out assignment6` — write the loops of
#    `refimpl.sampling.samplers.langevin` and `mala` (each step: update every chain, call
#    `_record`; Langevin also checks the chains with `_check_finite_chains`, so that a
#    diverging chain raises `FloatingPointError`; MALA rejects proposals that are not finite),
#    then run `python grade.py` in that folder.
