# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 8. Maximum likelihood: data statistics minus model statistics
#
# Lessons 5-7 took the parameters $w$ as given. Now we learn them. Given training images
# $\{\mathbf{I}_m, m = 1, \dots, M\}$, Xie et al. (section 7) maximise the mean
# log-likelihood, Eq. (7.1),
#
# $$L(w) = \frac{1}{M}\sum_{m=1}^{M} \log p(\mathbf{I}_m; w)
#        = \frac{1}{M}\sum_{m=1}^{M} f(\mathbf{I}_m; w) - \log Z(w) + \text{const},$$
#
# where $p(\mathbf{I}; w) = \exp(f(\mathbf{I}; w))\, q(\mathbf{I}) / Z(w)$ and the constant
# collects the $\log q(\mathbf{I}_m)$, which do not depend on $w$. The normaliser
# $Z(w) = \int \exp(f(\mathbf{I}; w))\, q(\mathbf{I})\, d\mathbf{I}$ is intractable in general,
# but its gradient is not: differentiating under the integral,
#
# $$\frac{\partial \log Z(w)}{\partial w} = \frac{1}{Z(w)} \int \frac{\partial f(\mathbf{I}; w)}{\partial w}\, e^{f(\mathbf{I}; w)} q(\mathbf{I})\, d\mathbf{I}
#   = \mathbf{E}_w\Big[\frac{\partial f(\mathbf{I}; w)}{\partial w}\Big],$$
#
# so the gradient of the log-likelihood is Eq. (7.2):
#
# $$\frac{\partial L(w)}{\partial w} = \underbrace{\frac{1}{M}\sum_{m=1}^{M} \frac{\partial f(\mathbf{I}_m; w)}{\partial w}}_{\text{data statistics}}
#   - \underbrace{\mathbf{E}_w\Big[\frac{\partial f(\mathbf{I}; w)}{\partial w}\Big]}_{\text{model statistics}}.$$
#
# For the prototype model, $\partial f / \partial \mathbf{w}_k = \delta_k(\mathbf{I}; w)\, \mathbf{I}$ and
# $\partial f / \partial b_k = \delta_k(\mathbf{I}; w)$ (lesson 5), which gives Eq. (5.8):
#
# $$\frac{\partial L}{\partial \mathbf{w}_k} = \frac{1}{M}\sum_m \delta_k(\mathbf{I}_m; w)\, \mathbf{I}_m - \mathbf{E}_w[\delta_k(\mathbf{I}; w)\, \mathbf{I}], \qquad
#   \frac{\partial L}{\partial b_k} = \frac{1}{M}\sum_m \delta_k(\mathbf{I}_m; w) - \mathbf{E}_w[\delta_k(\mathbf{I}; w)].$$
#
# At a maximum both differences vanish: the model fires each filter **as often** as the data
# do, and its **average image where filter $k$ fires** equals the data's. Eqs. (7.3)-(7.4) say
# the same for the generative ConvNet, pooled over positions $x$.
#
# The plan: in one dimension, where `refimpl.exact` computes $\mathbf{E}_w$ exactly, we draw
# data from a model whose parameters we know, climb $L$ by gradient ascent and watch the
# truth come back. Then we replace the exact expectation by Langevin samples, which is
# Algorithm 1, the method that works for real images.

# %%
import time

import numpy as np
from _lesson import pick, save
from scipy import optimize

from refimpl import exact, plotting
from refimpl.backend import make_rng
from refimpl.exact import exact_distribution
from refimpl.learning import LearningConfig, Trainer, algorithm, runs
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.numerics import EXACT
from refimpl.theorems import learning

# %% [markdown]
# ## Synthetic data from a known model
#
# The 1-D prototype model of lessons 5 and 6: three filters (scalars $w_k$) with biases $b_k$,
# $\sigma = 1$. Its kinks $-b_k / w_k$ sit at $0.5$, $-1$ and $2$, and its density has modes
# near $-1.5$, $0$ and $2.4$. `exact_distribution(model).sample(n, rng)` draws exact samples
# (pick a piece by its mass, then its truncated Gaussian), so the only error left in
# what we learn is the finiteness of the data.
#
# All parameters travel as one flat vector $(w_1, w_2, w_3, b_1, b_2, b_3)$:
# `exact.flatten` builds it and `exact.with_flat_parameters` turns one back into a model.

# %%
SIGMA = 1.0
truth_model = PrototypeModel(np.array([[0.4], [-1.5], [2.0]]), np.array([-0.2, -1.5, -4.0]))
truth = exact.flatten((truth_model.weight, truth_model.bias))
NAMES = ["$w_1$", "$w_2$", "$w_3$", "$b_1$", "$b_2$", "$b_3$"]
n_data = pick(20000, 5000)
data = exact_distribution(GenerativeModel(truth_model, SIGMA)).sample(n_data, make_rng(0))  # (n, 1)


def proto(flat):
    """The prototype model with flat parameters ``flat``."""
    return exact.with_flat_parameters(truth_model, flat)


def log_lik(flat, images=data):
    """Exact mean log-likelihood L(w), Eq. (7.1) (up to the constant mean log q(I_m))."""
    return exact.log_likelihood(proto(flat), SIGMA, images, (1,))


def grad(flat, images=data):
    """Exact ML gradient, Eqs. (5.8), (7.2): data statistics minus model statistics."""
    return exact.ml_gradient(GenerativeModel(proto(flat), SIGMA), images, (1,))


print(f"{n_data} exact samples; true parameters {truth}")
print(
    f"L(truth) = {log_lik(truth):.5f}, |dL/dw| at the truth = {np.linalg.norm(grad(truth)):.4f} "
    f"(not 0: the data are a finite sample)"
)

# %% [markdown]
# ## The exact gradient
#
# `exact.ml_gradient(model, data, event_shape)` computes Eq. (7.2) with no Monte Carlo
# error. The data term is `scoring.grad_params(data)` divided by $M$. The model term uses
# the piecewise structure: on a piece $A$ the activation pattern is fixed, so
# $\partial f / \partial w$ is *affine* in $\mathbf{I}$ and
#
# $$\mathbf{E}_w\Big[\frac{\partial f}{\partial w}\Big] = \sum_A P(A)\, \frac{\partial f}{\partial w}\Big(\mathbf{E}_w[\mathbf{I} \mid A]\Big),$$
#
# with the exact piece masses $P(A)$ and means of lesson 5 (`ExactDistribution.expected_param_grads`).
# Before trusting it we compare it with central finite differences of the exact $L(w)$ at a
# perturbed starting point (`learning.check_ml_gradient`, Richardson-extrapolated), and check
# that the comparison can fail: a "gradient" that forgets the model term is caught.

# %%
start = np.array([0.8, -1.0, 1.5, 0.3, -0.8, -3.0])
start_model = GenerativeModel(proto(start), SIGMA)
check = learning.check_ml_gradient(start_model, data, (1,), np.arange(6))
print(
    f"{check.claim}: relative residual {check.residual:.1e} (bound {check.tolerance:.0e}) "
    f"{'PASS' if check.passed else 'FAIL'}"
)
data_term_only = lambda model, images, shape: (
    exact.flatten(model.scoring.grad_params(images)) / len(images)
)
wrong = learning.check_ml_gradient(
    start_model, data, (1,), np.arange(6), gradient_fn=data_term_only, name="negative control"
)
print(
    f"negative control (data term only): relative residual {wrong.residual:.2f} "
    f"{'PASS' if wrong.passed else 'FAIL, as it should'}"
)

# %% [markdown]
# ## Gradient ascent recovers the truth
#
# Starting from the perturbed parameters, we climb: $w \leftarrow w + \eta\, \partial L / \partial w$.
# The step size must stay below $2 / \lambda_{\max}$, with $\lambda_{\max}$ the largest
# curvature of $-L$ (measured below, at the maximum, from finite differences of the exact
# gradient); the smallest curvature then sets how slowly the last digits arrive. For
# reference we also find the maximum itself to full accuracy by handing the same $L$ and
# gradient to a quasi-Newton optimiser (SciPy's BFGS): that is the maximum-likelihood
# estimate $\hat w$ of *these* data, which differs from the truth by sampling error.

# %%
mle_fit = optimize.minimize(
    lambda w: (-log_lik(w), -grad(w)), start, jac=True, method="BFGS", options=dict(gtol=1e-10)
)
mle = mle_fit.x
h = 1e-5  # the Hessian of -L at the maximum, by central differences of the exact gradient
hessian = np.array([(grad(mle + h * e) - grad(mle - h * e)) / (2 * h) for e in np.eye(len(mle))])
curvatures = np.linalg.eigvalsh(-(hessian + hessian.T) / 2)
print(
    f"curvatures of -L at the maximum: largest {curvatures.max():.2f} (eta = 0.5 < 2 / {curvatures.max():.2f} "
    f"= {2 / curvatures.max():.2f}: stable), smallest {curvatures.min():.4f}"
)
eta, n_iter = 0.5, pick(2000, 400)
w = start.copy()
path, curve = [w.copy()], []
t0 = time.perf_counter()
for t in range(n_iter):
    if t % 10 == 0:
        curve.append((t, log_lik(w)))
    w = w + eta * grad(w)
    path.append(w.copy())
curve.append((n_iter, log_lik(w)))
path, curve = np.array(path), np.array(curve)
print(
    f"{n_iter} ascent steps in {time.perf_counter() - t0:.1f} s; L rose monotonically: "
    # (up to rounding: L is a sum of O(1) terms, evaluated to ~1e-15; EXACT allows 1e-12)
    f"{bool(np.all(np.diff(curve[:, 1]) >= -EXACT))}"
)
print(
    f"L(start) = {curve[0, 1]:.5f}, L(after ascent) = {curve[-1, 1]:.5f}, L(MLE) = {-mle_fit.fun:.5f}, "
    f"L(truth) = {log_lik(truth):.5f}"
)
print("parameter   start   ascent     MLE   truth")
for name, s, a, m, tr in zip(["w1", "w2", "w3", "b1", "b2", "b3"], start, w, mle, truth):
    print(f"{name:>9s} {s:7.3f}  {a:7.3f} {m:7.3f} {tr:7.3f}")
print(
    f"|ascent - MLE| = {np.linalg.norm(w - mle):.1e},  |MLE - truth| = {np.linalg.norm(mle - truth):.3f}"
)

# %% [markdown]
# $L(\hat w) > L(\text{truth})$: on a finite sample the truth is not the most likely
# explanation, a slightly different model is, and that is what maximum likelihood returns.
#
# One caveat: $L$ is not concave in $w$ (the statistics $\delta_k \mathbf{I}$ themselves
# depend on the filters), and it has symmetries. Permuting the filters gives the same model,
# so there are $K! = 6$ equivalent maxima; and in 1-D a ReLU ramp $\max(wI + b, 0)$ equals
# the linear function $wI + b$ plus the opposite ramp $\max(-wI - b, 0)$, so some sign
# changes are equivalent to shifting the others. For this model the slopes are fixed by
# the kinks and the far-left slope $-1.5$, and a start near the truth climbs to the
# matching maximum. "Recovering the parameters" always means: up to such symmetries.
#
# ## The moments match at the maximum
#
# At $\hat w$ the gradient vanishes, so by Eq. (5.8) the data and the model agree on how
# often each filter fires and on the average image where it fires
# (`ExactDistribution.unit_moments` gives $\mathbf{E}_w[\delta_k]$ and $\mathbf{E}_w[\delta_k I]$):

# %%
fitted = exact_distribution(GenerativeModel(proto(mle), SIGMA))
on_model, on_image_model = fitted.unit_moments()
dW, db = proto(mle).grad_params(data)
print("filter   data: freq  mean(delta I)   model: E[delta]  E[delta I]")
for k in range(3):
    print(
        f"{k + 1:6d}  {db[k] / n_data:12.6f}  {dW[k, 0] / n_data:13.6f}   {on_model[k]:14.6f}  {on_image_model[k, 0]:10.6f}"
    )
print(f"largest gap {np.abs(grad(mle)).max():.1e}")

# %%
x = np.linspace(-5, 6, 551)[:, None]
densities = {
    name: np.exp(exact_distribution(GenerativeModel(proto(p), SIGMA)).log_density(x))
    for name, p in (("start", start), ("MLE", mle), ("truth", truth))
}
fig, axes = plotting.figure(1, 3, figsize=(15, 4))
gap = -mle_fit.fun - curve[:, 1]
axes[0].semilogy(curve[:, 0], np.maximum(gap, 1e-16))
axes[0].set_xlabel("iteration $t$")
axes[0].set_ylabel("$L(\\hat w) - L(w_t)$")
axes[0].set_title(f"exact gradient ascent, $\\eta = {eta}$", fontsize=10)
for i in range(6):
    (line,) = axes[1].plot(path[:, i], lw=1.2, label=NAMES[i])
    axes[1].axhline(truth[i], color=line.get_color(), ls="--", lw=0.8)
axes[1].set_xlabel("iteration $t$")
axes[1].set_title("parameters (dashed: the truth)", fontsize=10)
axes[1].legend(fontsize=8, ncol=2)
axes[2].hist(data[:, 0], bins=100, range=(-5, 6), density=True, color="0.8", label=f"{n_data} data")
for (name, pdf), style in zip(densities.items(), (":", "-", "--")):
    axes[2].plot(x[:, 0], pdf, style, lw=1.5, label=f"$p(I; w)$ at the {name}")
axes[2].legend(fontsize=8)
axes[2].set_title("data and model densities", fontsize=10)
fig.tight_layout()
save(fig, __file__, "exact_ascent")

# %% [markdown]
# ## More data, closer to the truth
#
# Maximum likelihood is *consistent*: as $M$ grows, $\hat w$ converges to the truth, with
# an error that shrinks like $1 / \sqrt{M}$ (the asymptotic covariance is the inverse
# Fisher information over $M$). We refit on fresh data sets of growing size, starting BFGS
# at the truth so that it lands on the matching maximum.

# %%
sizes = np.array(pick([300, 1000, 3000, 10000, 30000, 100000], [300, 3000, 30000]))
repeats = pick(8, 2)
errors = np.zeros((len(sizes), repeats))
beats_truth = 0
for i, n in enumerate(sizes):
    for r in range(repeats):
        sample = exact_distribution(GenerativeModel(truth_model, SIGMA)).sample(
            int(n), make_rng(100 + r + 10 * i)
        )
        fit = optimize.minimize(
            lambda v, sample: (-log_lik(v, sample), -grad(v, sample)),
            truth,
            args=(sample,),
            jac=True,
            method="BFGS",
            options=dict(gtol=1e-9),
        )
        errors[i, r] = np.linalg.norm(fit.x - truth)
        beats_truth += -fit.fun >= log_lik(truth, sample)
    print(
        f"M = {n:6d}: |w_hat - truth| = {np.round(errors[i], 3)}  (x sqrt(M): {np.sqrt(n) * errors[i].mean():.1f})"
    )
print(f"L(w_hat) >= L(truth) in {beats_truth} of {errors.size} fits")

# %% [markdown]
# The error times $\sqrt{M}$ stays roughly constant (up to the scatter of a few fits:
# at small $M$ a fit now and then lands far off, where the data say little), and the fitted $\hat w$ always beats
# the truth on its own data.
#
# ## Algorithm 1: the expectation by Langevin sampling
#
# In more than two dimensions $\mathbf{E}_w[\partial f / \partial w]$ cannot be computed. Algorithm 1
# estimates it from $\tilde M$ synthesised images $\tilde{\mathbf{I}}_m$ drawn by Langevin dynamics
# (lesson 6):
#
# $$H^{\rm obs} = \frac{1}{M}\sum_{m=1}^{M} \frac{\partial f(\mathbf{I}_m; w)}{\partial w}, \qquad
#   H^{\rm syn} = \frac{1}{\tilde M}\sum_{m=1}^{\tilde M} \frac{\partial f(\tilde{\mathbf{I}}_m; w)}{\partial w}, \qquad
#   w \leftarrow w + \eta\,(H^{\rm obs} - H^{\rm syn}).$$
#
# (Algorithm 1 also starts at $w = 0$; with ReLU that is a dead end, since every unit sits
# on its kink and every gradient vanishes, so learning starts from non-zero weights, here
# our perturbed start.) The chains start at $\tilde{\mathbf{I}}_m = 0$ and **persist**: each iteration runs only $L$
# Langevin steps from where the chains were, since $w$ changed only a little. refimpl's
# `Trainer` runs this for ConvNets, composing the pure functions of
# `refimpl.learning.algorithm`: `moment_mismatch(g_obs, g_syn, M, M~)` turns the summed
# gradients `net.grad_params(images)` of the two sets into $H^{\rm obs} - H^{\rm syn}$ per
# layer, and `scaled_gradient` scales it (below). A prototype model *is* a one-layer ConvNet whose kernel covers the image
# (lesson 5), so our 1-D problem is a `Trainer` on $1 \times 1$ images with one channel and
# one layer of three $1 \times 1$ filters.
#
# First, how good is the Monte Carlo estimate itself? With chains drawn *exactly* from
# $p(\mathbf{I}; w)$ at the start point, $H^{\rm obs} - H^{\rm syn}$ is unbiased and its error
# falls like $1 / \sqrt{\tilde M}$:

# %%
images = data.reshape(-1, 1, 1, 1)
exact_at_start = exact_distribution(start_model)
probe = Trainer(LearningConfig(spec=[(3, 1, 1, 0)], grow=False, chains=1, sigma=SIGMA), images)
probe.net = exact.with_flat_parameters(probe.net, start)  # same ordering: W (3,1,1,1), then b
g_obs = probe.net.grad_params(images)
exact_grad = grad(start)
mc_sizes = np.array(pick([100, 1000, 10000, 100000], [100, 1000, 10000]))
mc_errors = []
for n in mc_sizes:
    probe.chains = exact_at_start.sample(int(n), make_rng(int(n))).reshape(-1, 1, 1, 1)
    g_syn = probe.net.grad_params(probe.chains)
    estimate = exact.flatten(algorithm.moment_mismatch(g_obs, g_syn, len(images), int(n)))
    mc_errors.append(np.linalg.norm(estimate - exact_grad) / np.linalg.norm(exact_grad))
    print(f"M~ = {n:6d} exact samples: |H_obs - H_syn - dL/dw| / |dL/dw| = {mc_errors[-1]:.4f}")

# %% [markdown]
# Now the real thing: the same data, the same start and the same $\eta$, with
# $\tilde M$ = 1000 persistent chains, $L = 10$ Langevin steps of size $\epsilon = 0.2$ per
# iteration, and plain gradient ascent (`optimizer="sgd"`). The estimate is noisy, so the
# parameters end up fluctuating around the maximum rather than sitting on it; averaging the
# last third of the iterates (Polyak averaging) removes most of the fluctuation. Langevin's
# step-size bias (lesson 6, a relative $\epsilon^2/4 = 1\%$ in variance) and the chains'
# lag behind $w$ leave a small systematic error on top.

# %%
config = LearningConfig(
    spec=[(3, 1, 1, 0)],
    grow=False,
    iterations_per_layer=n_iter,
    chains=pick(1000, 300),
    langevin_steps=10,
    step_size=0.2,
    sigma=SIGMA,
    learning_rate=eta,
    optimizer="sgd",
    seed=1,
)
trainer = Trainer(config, images)
trainer.net = exact.with_flat_parameters(trainer.net, start)
mc_path = [start.copy()]
t0 = time.perf_counter()
trainer.run(callback=lambda tr, record: mc_path.append(exact.flatten(tr.net.parameters())))
mc_path = np.array(mc_path)
averaged = mc_path[-(n_iter // 3) :].mean(axis=0)
print(f"Algorithm 1: {n_iter} iterations in {time.perf_counter() - t0:.1f} s")
print(
    f"|last iterate - MLE| = {np.linalg.norm(mc_path[-1] - mle):.3f}, "
    f"|average of the last third - MLE| = {np.linalg.norm(averaged - mle):.3f}, "
    f"|MLE - truth| = {np.linalg.norm(mle - truth):.3f}"
)
print(
    f"L: last iterate {log_lik(mc_path[-1]):.5f}, averaged {log_lik(averaged):.5f}, MLE {-mle_fit.fun:.5f}, "
    f"start {log_lik(start):.5f}"
)

# %%
fig, axes = plotting.figure(1, 3, figsize=(15, 4))
for r in range(repeats):
    axes[0].loglog(sizes, errors[:, r], ".", color="C0", alpha=0.5)
axes[0].loglog(
    sizes, errors.mean(axis=1), "o-", color="C0", label="$|\\hat w - w_{true}|$: fits (dots), mean"
)
axes[0].loglog(
    sizes,
    errors.mean(axis=1)[0] * np.sqrt(sizes[0] / sizes),
    ":",
    color="0.5",
    label="slope $-1/2$",
)
axes[0].set_xlabel("number of training images $M$")
axes[0].legend(fontsize=8)
axes[0].set_title("consistency of maximum likelihood", fontsize=10)
axes[1].loglog(mc_sizes, mc_errors, "s-", label="$H^{obs} - H^{syn}$, exact samples")
axes[1].loglog(
    mc_sizes, mc_errors[0] * np.sqrt(mc_sizes[0] / mc_sizes), ":", color="0.5", label="slope $-1/2$"
)
axes[1].set_xlabel("synthesised images $\\tilde M$")
axes[1].set_ylabel("relative error of the gradient")
axes[1].legend(fontsize=8)
axes[1].set_title("Monte Carlo estimate of Eq. (7.2)", fontsize=10)
for i in range(6):
    (line,) = axes[2].plot(mc_path[:, i], lw=0.6, alpha=0.8)
    axes[2].plot(path[:, i], color=line.get_color(), lw=1.5, label=NAMES[i])
    axes[2].axhline(truth[i], color=line.get_color(), ls="--", lw=0.8)
axes[2].set_xlabel("iteration $t$")
axes[2].legend(fontsize=8, ncol=2)
axes[2].set_title("Algorithm 1 (thin) vs exact ascent (thick); dashed: truth", fontsize=10)
fig.tight_layout()
save(fig, __file__, "algorithm1")

# %% [markdown]
# Algorithm 1 follows the exact ascent closely, with Monte Carlo jitter on top.
#
# ## From points to images: what `scaled_gradient` does
#
# For a convolutional layer the gradient (7.3)-(7.4) is a *sum over positions* $x$ of the
# feature map, so its size grows with the map's area $H_l \times W_l$: one learning rate
# cannot fit a 30 x 30 first layer and a 3 x 3 top layer alike. With
# `normalise_by_area=True` (refimpl's default, lab practice rather than the paper's)
# `scaled_gradient` divides each layer's $H^{\rm obs} - H^{\rm syn}$ by its output area,
# turning sums over $x$ into averages; with `clip` set it then scales any layer's gradient
# whose norm exceeds `clip` down to that norm (a guard against a wild first step). On the
# $1 \times 1$ "images" above the area was 1. On a small texture it is not:

# %%
tiny = LearningConfig(
    dataset="texture",
    image="brick",
    size=16,
    factor=16,
    spec=[(4, 3, 1, 0), (4, 3, 2, 1)],
    grow=False,
    chains=4,
    langevin_steps=5,
    step_size=0.3,
    init_std=[0.01, "he"],
    seed=3,
)
tex, _, _ = runs.prepare(tiny)
tex_trainer = Trainer(tiny, tex)
tex_trainer.step()  # one iteration of Algorithm 1: the chains now hold synthesised images
g_o, g_s = (
    tex_trainer.net.grad_params(tex_trainer.data),
    tex_trainer.net.grad_params(tex_trainer.chains),
)
mismatch = algorithm.moment_mismatch(g_o, g_s, len(tex), len(tex_trainer.chains))
variants = {  # (normalise_by_area, clip)
    "sums (no normalisation)": (False, None),
    "divided by area": (True, None),
    "divided by area, clip 1.0": (True, 1.0),
}
areas = algorithm.output_areas(tex_trainer.net, tex.shape)
print("output areas per layer:", areas)
for label, (by_area, clip) in variants.items():
    scaled = algorithm.scaled_gradient(mismatch, areas, by_area, clip)
    norms = [np.sqrt((gW**2).sum() + (gb**2).sum()) for gW, gb in scaled]
    print(f"{label:28s}: |H_obs - H_syn| per layer = {np.round(norms, 4)}")

# %% [markdown]
# ## Summary
#
# * The log-likelihood gradient, Eq. (7.2), is data statistics minus model statistics,
#   because $\partial \log Z / \partial w = \mathbf{E}_w[\partial f / \partial w]$. For the
#   prototype model, Eq. (5.8): filter frequencies $\delta_k$ and filter-weighted images
#   $\delta_k \mathbf{I}$; for the ConvNet, Eqs. (7.3)-(7.4), the same pooled over positions.
# * At the maximum the moments match. $L$ is not concave and has permutation symmetries,
#   so gradient ascent finds *a* maximum; from a reasonable start, it is the truth's.
# * In 1-D the expectation is exact (piece masses and means), the gradient agrees with
#   finite differences of the exact $L$, and ascent recovers known parameters up to
#   sampling error, which shrinks like $1/\sqrt{M}$.
# * Algorithm 1 replaces $\mathbf{E}_w$ by an average over persistent Langevin chains; the
#   noisy ascent tracks the exact one. `algorithm.moment_mismatch` computes
#   $H^{\rm obs} - H^{\rm syn}$ per layer and `algorithm.scaled_gradient` scales it per unit
#   of output area and clips it.
#
# ## Exercises
#
# 1. With `activation="linear"`, $f = \langle \mathbf{I}, \sum_k \mathbf{w}_k\rangle + \sum_k b_k$.
#    Show that $p = N(\sigma^2 \sum_k \mathbf{w}_k, \sigma^2 \mathbf{1})$, that Eq. (7.2)
#    gives $\partial L / \partial \mathbf{w}_k = \bar{\mathbf{I}} - \sigma^2 \sum_j \mathbf{w}_j$ and
#    $\partial L / \partial b_k = 0$, and that $L$ is concave. Which parameters can the data
#    identify? Check the formula with `exact.ml_gradient`.
# 2. Start the exact ascent from the filters of the truth in a different order. Where does
#    it end? Find a start from which it reaches a maximum that is *not* a permutation of the
#    truth, and compare the two values of $L$.
# 3. Replace the persistent chains by contrastive divergence (`method="cd"`, one Langevin
#    step from the data each iteration). Does the fit still approach the MLE? (Lesson 11
#    explains what CD learns instead.)
# 4. Repeat the recovery in 2-D with a three-filter prototype (`event_shape=(2,)`); each
#    exact gradient now costs about a second, so use BFGS rather than plain ascent.
# 5. **Assignment:** `python -m lessons.assign 8 --out assignment8` — write
#    `refimpl.exact.ml_gradient` (Eq. (7.2) by exact quadrature),
#    `refimpl.learning.algorithm.moment_mismatch` ($H^{\rm obs} - H^{\rm syn}$ per layer) and
#    `refimpl.learning.algorithm.scaled_gradient` (area normalisation and clipping), then run
#    `python grade.py` in that folder.
