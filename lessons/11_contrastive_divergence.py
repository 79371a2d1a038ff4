# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 11. Contrastive divergence learns to reconstruct
#
# Maximum likelihood needs the model's expectation in the gradient, Eq. (7.2):
#
# $$\frac{\partial L(w)}{\partial w} = \frac{1}{M}\sum_{m=1}^M \frac{\partial}{\partial w} f(\mathbf{I}_m; w)
#   - \mathrm{E}_w\Big[\frac{\partial}{\partial w} f(\mathbf{I}; w)\Big].$$
#
# Algorithm 1 (lessons 8-10) estimates the expectation with persistent Langevin chains that
# start at 0 and must travel all the way to the model's typical images. **Contrastive
# divergence** (CD, Hinton's method, section 7) takes a shortcut: start the chains *at the
# observed images* and run only one or a few Langevin steps, Eq. (6.10). With one step
# (CD-1), each observed image $\mathbf{I}^{obs}$ gives one synthesised image
#
# $$\mathbf{I}^{syn} = \mathbf{I}^{obs} + \frac{\epsilon^2}{2}\Big[\mathbf{B}_{w,\delta} - \frac{\mathbf{I}^{obs}}{\sigma^2}\Big] + \epsilon Z,
#   \qquad Z \sim N(0, \mathbf{1}),$$
#
# which is Eq. (7.8) written for general $\sigma$ (the paper has $\sigma = 1$), with
# $\delta = \delta(\mathbf{I}^{obs}; w)$. The learning gradient becomes
# $\frac{\partial}{\partial w} f(\mathbf{I}^{obs}; w) - \frac{\partial}{\partial w} f(\mathbf{I}^{syn}; w)$.
#
# Why should this learn anything? Because of the piecewise-linear structure (lesson 5). If
# the step does not change the activation pattern, $\delta(\mathbf{I}^{syn}) = \delta(\mathbf{I}^{obs}) = \delta$,
# then $f = a_{w,\delta} + \langle \mathbf{I}, \mathbf{B}_{w,\delta}\rangle$ on both images and
# the intercepts cancel, Eq. (7.5):
#
# $$\frac{\partial f(\mathbf{I}^{obs})}{\partial w} - \frac{\partial f(\mathbf{I}^{syn})}{\partial w}
#   = \Big\langle \mathbf{I}^{obs} - \mathbf{I}^{syn}, \frac{\partial \mathbf{B}_{w,\delta}}{\partial w}\Big\rangle.$$
#
# Replace the noise by its mean, $Z \to 0$: then
# $\mathbf{I}^{obs} - \mathbf{I}^{syn} = \frac{\epsilon^2}{2\sigma^2}(\mathbf{I}^{obs} - \sigma^2\mathbf{B}_{w,\delta})$,
# Eq. (7.9), and with the **reconstruction error** at the fixed pattern,
#
# $$R(w) = \frac12 \big\|\mathbf{I}^{obs} - \sigma^2 \mathbf{B}_{w,\delta}\big\|^2, \qquad
#   \frac{\partial R}{\partial w} = -\sigma^2\Big\langle \mathbf{I}^{obs} - \sigma^2\mathbf{B}_{w,\delta}, \frac{\partial \mathbf{B}_{w,\delta}}{\partial w}\Big\rangle,$$
#
# (Eq. (7.6)) we get **Proposition 3**, Eq. (7.7), with its constant:
#
# $$\mathrm{E}_Z\Big[\frac{\partial f(\mathbf{I}^{obs})}{\partial w} - \frac{\partial f(\mathbf{I}^{syn})}{\partial w}\Big]
#   = -\frac{\epsilon^2}{2\sigma^4}\,\frac{\partial R}{\partial w}.$$
#
# For the paper's $\sigma = 1$: the CD-1 gradient is exactly $\epsilon^2/2$ times minus the
# reconstruction gradient. Ascending it *descends* the reconstruction error: CD trains the
# network as an auto-encoder, bottom-up encoding $\delta(\mathbf{I}^{obs})$, top-down
# decoding $\sigma^2\mathbf{B}_{w,\delta}$ (Proposition 2, lesson 7). No second derivatives
# appear, unlike in general score matching: the ReLU makes $f$ linear on each piece.
#
# The expectation over $Z$ is needed only because the noise enters linearly: with the
# pattern fixed, the CD gradient is linear in $Z$, so averaging it is the same as setting
# $Z = 0$. That is what `refimpl.learning.algorithm.mean_langevin_step` does (your assignment).

# %%
import numpy as np
from _lesson import pick, save

from refimpl import exact, plotting
from refimpl.convnet.pieces import as_pattern_list, pattern_keys
from refimpl.learning import Trainer, algorithm, runs
from refimpl.learning.presets import PRESETS, preset_config
from refimpl.sampling import langevin
from refimpl.theorems import instances, learning

# %% [markdown]
# ## One CD step with the noise replaced by its mean
#
# A small random ConvNet of the kind `python -m refimpl verify` uses (three layers with
# strides, on 8 x 8 images, $\sigma \ne 1$ so that a forgotten $\sigma$ would show), and 16
# observed images. `mean_langevin_step` moves each image a fraction $\epsilon^2 / 2\sigma^2$
# of the way to its reconstruction $\sigma^2\mathbf{B}_{w,\delta(\mathbf{I})}$: we compare with
# the reconstruction computed along another path, the top-down pass `model.piece_mean`
# (lesson 5), while `mean_langevin_step` uses $\nabla \log p$ by backprop.

# %%
rng = np.random.default_rng(0)
model, shape = instances.image_convnet(rng, 1, 8, 3)
net, sigma = model.scoring, model.sigma
print(net)
print(f"sigma = {sigma:.4f}")
I_obs = sigma * rng.standard_normal((16,) + shape)
eps = 0.1 * sigma
I_syn = algorithm.mean_langevin_step(model, I_obs, eps)
recon = model.piece_mean(I_obs)  # sigma^2 B_{w, delta(I_obs)}
expected = I_obs + eps**2 / (2 * sigma**2) * (recon - I_obs)
print(
    f"|I_syn - [I_obs + eps^2/(2 sigma^2) (sigma^2 B - I_obs)]| / |I_syn| = "
    f"{np.linalg.norm(I_syn - expected) / np.linalg.norm(I_syn):.1e}"
)


def keys(images):
    """Each image's full activation pattern (all layers) as one row."""
    return pattern_keys(as_pattern_list(net.activation_pattern(images)))


print(
    f"images whose pattern the step keeps: {(keys(I_obs) == keys(I_syn)).all(axis=1).sum()} of {len(I_obs)}"
)

# %% [markdown]
# ## Proposition 3, numerically
#
# `check_proposition3(model, I_obs, eps, coords)` takes one mean-noise step, keeps the
# images whose pattern did not change (the proposition's condition; if fewer than two do, it
# halves $\epsilon$ until they do), and compares the CD gradient by backprop at the two
# images with $-\frac{\epsilon^2}{2\sigma^4}\,\partial R / \partial w$, where
# $\partial R/\partial w$ is a central difference of `reconstruction_loss` (your assignment)
# at the *fixed* pattern $\delta(\mathbf{I}^{obs})$. $R$ is a polynomial in $w$ there, so the
# difference quotient is exact up to $O(h^2)$ and rounding. We sweep $\epsilon$ over two
# orders of magnitude and check 60 random parameter coordinates.

# %%
n_params = len(exact.flatten(net.parameters()))
coords = rng.choice(n_params, min(60, n_params), replace=False)
eps_grid = sigma * np.array(pick([1.6, 0.8, 0.4, 0.2, 0.1, 0.05, 0.025], [0.8, 0.2, 0.05]))
rows = []
print(
    f"{'eps/sigma':>9s} {'kept':>5s} {'units flipped':>13s} {'eps used':>9s} {'images used':>11s} "
    f"{'|CD|/eps^2':>10s} {'residual':>9s}"
)
for e in eps_grid:
    syn = algorithm.mean_langevin_step(model, I_obs, e)
    kept = (keys(I_obs) == keys(syn)).all(axis=1).mean()
    flipped = (keys(I_obs) != keys(syn)).mean()
    r = learning.check_proposition3(model, I_obs, e, coords)
    d = r.details
    rows.append((e, kept, flipped, d["step_size"], r.residual, d["cd_norm"] / d["step_size"] ** 2))
    print(
        f"{e / sigma:9.3f} {kept:5.2f} {flipped:13.2%} {d['step_size'] / sigma:9.3f} "
        f"{d['images_kept']:5d} of {d['images']:2d} {rows[-1][5]:10.4f} {r.residual:9.1e} "
        f"{'PASS' if r.passed else 'FAIL'}"
    )
rows = np.array(rows)

# %% [markdown]
# Read the table from the bottom up. For small steps every image keeps its pattern and the
# CD gradient equals $-\frac{\epsilon^2}{2\sigma^4}\partial R/\partial w$ to about $10^{-8}$
# relative, which is the finite differences' own error: the identity is exact. Its size
# scales as $\epsilon^2$ (the column $|CD|/\epsilon^2$ is constant while the same images are
# used). As $\epsilon$ grows, more and more units flip (a unit whose response is within about
# $\epsilon^2$ of zero crosses it), first a few images and then all of them leave their
# piece; Proposition 3 no longer applies to them, and the check falls back to a smaller
# $\epsilon$ ("eps used"). Learning uses $\epsilon = 0.3\sigma$ on images whose intensities
# are in the hundreds, where the step is tiny relative to the image (see below).

# %%
fig, axes = plotting.figure(1, 2, figsize=(11, 4))
axes[0].semilogx(rows[:, 0] / sigma, rows[:, 1], "o-", label="images that keep their whole pattern")
axes[0].semilogx(rows[:, 0] / sigma, rows[:, 2], "s-", label="fraction of units flipped")
axes[0].set_xlabel("$\\epsilon / \\sigma$")
axes[0].set_ylim(-0.03, 1.03)
axes[0].legend(fontsize=8)
axes[0].set_title("Proposition 3's condition: the mean-noise step keeps $\\delta$", fontsize=10)
axes[1].loglog(
    rows[:, 3] / sigma, rows[:, 4], "o", label="relative residual (images that keep $\\delta$)"
)
axes[1].axhline(
    r.tolerance, color="r", ls="--", lw=0.8, label=f"the check's tolerance {r.tolerance:.0e}"
)
axes[1].set_ylim(1e-12, 1)
axes[1].set_xlabel("$\\epsilon / \\sigma$ used")
axes[1].legend(fontsize=8)
axes[1].set_title(
    "CD gradient vs $-(\\epsilon^2/2\\sigma^4)\\,\\partial R/\\partial w$", fontsize=10
)
fig.tight_layout()
save(fig, __file__, "proposition3")

# %% [markdown]
# ## With the noise kept: a Monte Carlo average
#
# Proposition 3 is about the *expected* CD gradient. With the noise kept, each draw of $Z$
# gives a different $\mathbf{I}^{syn}$ and a different gradient; their average converges to
# the noise-free value at the rate $1/\sqrt{n}$. `check_proposition3_noisy` measures this on
# the 2-D prototype model (lesson 5), where millions of draws are cheap: it reports the largest
# $|z| = |\text{mean} - \text{target}| / \text{SE}$ over the gradient's coordinates. For a
# correct identity $|z|$ stays of order 1 at any number of draws (the bound is 5), while the
# target itself is resolved by more and more standard errors. The observations are chosen
# at least $1\sigma$ from every hyperplane `far_from_kinks`, so that small steps do not
# change their pattern.

# %%
proto = instances.prototype(np.random.default_rng(1), 2, 3)
far = learning.far_from_kinks(
    proto.scoring,
    2 * proto.sigma * np.random.default_rng(2).standard_normal((2000, 2)),
    1.0 * proto.sigma,
)[:3]
draw_grid = np.array(pick([1000, 10000, 100000, 1000000], [1000, 10000, 100000]))
mc = []
for n in draw_grid:
    r = learning.check_proposition3_noisy(
        proto, far, 0.1 * proto.sigma, np.random.default_rng(3), draws=int(n)
    )
    mc.append((r.residual, r.details["standard_error_max"], r.details["target_in_standard_errors"]))
    print(
        f"{n:8d} draws: max |z| = {r.residual:4.2f}, largest standard error {mc[-1][1]:.1e}, "
        f"target = {mc[-1][2]:6.1f} standard errors, {'PASS' if r.passed else 'FAIL'}"
    )
mc = np.array(mc)

# %% [markdown]
# The same check is also a sharp test of the *condition*. We now grow the step at a fixed
# number of draws. The same random numbers are used at every $\epsilon$: while no draw changes
# a pattern the gradient is linear in $\epsilon Z$, so $z$ does not change with $\epsilon$ at
# all. Once some draws cross a hyperplane (for $\epsilon$ of about a third of the distance to
# it), the average is biased and $|z|$ grows far past 5: without the condition there is no
# Proposition 3.

# %%
eps_noisy = proto.sigma * np.array(pick([0.05, 0.1, 0.2, 0.3, 0.4, 0.6], [0.1, 0.6]))
noisy = []
for e in eps_noisy:
    r = learning.check_proposition3_noisy(
        proto, far, e, np.random.default_rng(4), draws=pick(100000, 20000)
    )
    noisy.append((r.residual, 1 - r.details["pattern_kept_fraction"]))
    print(
        f"eps = {e / proto.sigma:.2f} sigma: draws that flip a pattern {noisy[-1][1]:.4%}, "
        f"max |z| = {r.residual:6.2f}, {'PASS' if r.passed else 'FAIL'}"
    )
noisy = np.array(noisy)

fig, axes = plotting.figure(1, 2, figsize=(11, 4))
axes[0].loglog(draw_grid, mc[:, 1], "o-", label="largest standard error")
axes[0].loglog(
    draw_grid,
    mc[0, 1] * np.sqrt(draw_grid[0] / draw_grid),
    ":",
    color="0.5",
    label="$\\propto 1/\\sqrt{n}$",
)
axes[0].set_xlabel("draws $n$")
axes[0].legend(fontsize=8)
ax2 = axes[0].twinx()
ax2.semilogx(draw_grid, mc[:, 0], "s--", color="C1", label="max $|z|$")
ax2.set_ylim(0, 6)
ax2.set_ylabel("max $|z|$ (bound 5)")
axes[0].set_title("CD with noise: the average converges to the noise-free value", fontsize=10)
axes[1].semilogy(eps_noisy / proto.sigma, noisy[:, 0], "o-", label="max $|z|$")
axes[1].axhline(5, color="r", ls="--", lw=0.8, label="bound 5")
axes[1].set_xlabel("$\\epsilon / \\sigma$ (observations $\\geq 1\\sigma$ from every hyperplane)")
axes[1].legend(fontsize=8)
axes[1].set_title("larger steps change patterns: the average misses", fontsize=10)
fig.tight_layout()
save(fig, __file__, "monte_carlo")

# %% [markdown]
# ## Experiment 3: contrastive divergence on digits
#
# Section 8.3 learns by CD-1 from 10 images, all layers together (no growing), $T = 1200$
# iterations, and shows the observed images over their **reconstructions**
# $\sigma^2\mathbf{B}_{w,\delta(\mathbf{I}^{obs})}$. refimpl's CPU preset `reconstruct` does this
# on 10 UCI digits, one of each class, at 16 x 16 in [0, 255] minus the mean, with three
# padded layers and $T = 300$; `python -m refimpl reconstruct` runs it with checkpoints and
# writes the figures. Here we drive the same machinery from Python, as the command line does
# (`runs.prepare`, `Trainer`): with `method = "cd"` the trainer keeps one chain per observed
# image, and `algorithm.synthesize` (your assignment) restarts them at the data every
# iteration and runs $L = 1$ Langevin step.

# %%
print("reconstruct preset:", PRESETS["reconstruct"]["description"])
T = pick(300, 30)
config = preset_config("reconstruct", iterations_per_layer=T)
data, mean, raw = runs.prepare(config)
print(
    f"data {data.shape}, method {config.method!r}, L = {config.langevin_steps}, eps = {config.step_size}, "
    f"sigma = {config.sigma}, T = {config.total_iterations}"
)
print("layers (out_channels, kernel, stride, pad, relu):", [tuple(s) for s in config.spec])
trainer = Trainer(config, data)
print("chains:", trainer.chains.shape, "(one per observed image)")


def reconstructions(t):
    """sigma^2 B_{w, delta(I_obs)} in [0, 255], as runs.write_outputs makes them."""
    return runs.to_raw(t.config, t.model().piece_mean(t.data), mean)


def R_total(t):
    """The reconstruction error R summed over the images, each at its own pattern."""
    return algorithm.reconstruction_loss(
        t.net, t.net.activation_pattern(t.data), t.data, t.config.sigma
    )


shown_at = sorted({0, pick(10, 3), pick(50, 10), T})
snapshots, errors = {}, {}


def snapshot(t, record=None):
    if t.iteration in shown_at:
        snapshots[t.iteration] = reconstructions(t)
        errors[t.iteration] = (R_total(t), t.relative_reconstruction_error())


snapshot(trainer)
trainer.run(callback=snapshot)
for it in shown_at:
    print(
        f"after {it:3d} iterations: R = sum_m |I_m - sigma^2 B_m|^2 / 2 = {errors[it][0]:.4g}, "
        f"mean |I - sigma^2 B| / |I| = {errors[it][1]:.3f}"
    )

# %% [markdown]
# ## Observed images and their reconstructions
#
# Top row: the 10 training digits. Below them, the reconstruction of each by the filters
# that fire on it, at four moments of training, all on the same grey scale [0, 255]. At the
# start the first layer's weights are tiny, $\mathbf{B}$ is almost 0 and every reconstruction
# is the mean intensity, uniform grey (relative error 1). After ten iterations the network
# rebuilds blobs of the right shape, after fifty the strokes, and by the end the details (the
# loops of the 8 and the 9). The paper's Fig. 8 shows the same on natural images.

# %%
n = len(raw)
fig, axes = plotting.figure(
    1 + len(shown_at), n, figsize=(1.3 * n, 1.45 * (1 + len(shown_at))), squeeze=False
)
rows_shown = [("observed", raw)] + [(f"iteration {it}", snapshots[it]) for it in shown_at]
for r, (label, images) in enumerate(rows_shown):
    for m in range(n):
        ax = axes[r, m]
        ax.imshow(
            np.clip(images[m, 0], 0, 255), cmap="gray", vmin=0, vmax=255, interpolation="nearest"
        )
        ax.set_xticks([])
        ax.set_yticks([])
    axes[r, 0].set_ylabel(label, fontsize=8)
fig.suptitle(
    "observed digits (top) and their reconstructions $\\sigma^2 B_{w,\\delta(I)}$ during CD-1 learning",
    fontsize=10,
)
fig.tight_layout()
save(fig, __file__, "reconstructions")

fig = runs.curves_figure(trainer.history, plotting)
save(fig, __file__, "learning_curves")

# %% [markdown]
# The curves are those `python -m refimpl reconstruct` writes: the moment mismatch per layer
# (Eqs. (7.3)-(7.4), here between data and their one-step perturbations), the mean energies
# of data and synthesised images (almost the same: $\mathbf{I}^{syn}$ is one small step from
# $\mathbf{I}^{obs}$), and the relative reconstruction error, which falls steadily, as
# Proposition 3 predicts.
#
# ## Does Proposition 3 apply to the trained network?
#
# It does when the one-step Langevin move keeps the patterns. With intensities in the
# hundreds, a step of $\epsilon = 0.3$ (noise included) is small, so we count the units one
# real CD step flips (noise and all, `refimpl.sampling.langevin` from the data, the trainer's
# own noise), and run `check_proposition3` on the trained network at the training
# digits themselves.

# %%
trained = trainer.model()
step = langevin(trained, trainer.data, 1, config.step_size, noise=trainer.noise()).samples
before = pattern_keys(as_pattern_list(trainer.net.activation_pattern(trainer.data)))
after = pattern_keys(as_pattern_list(trainer.net.activation_pattern(step)))
print(
    f"one CD step (noise included) flips {(before != after).mean():.3%} of the "
    f"{before.shape[1]} units per image; {(before == after).all(axis=1).sum()} of {len(before)} images keep "
    "their whole pattern"
)
n_trained = len(exact.flatten(trainer.net.parameters()))
coords = np.random.default_rng(5).choice(n_trained, 30, replace=False)
r = learning.check_proposition3(trained, trainer.data, config.step_size, coords, h=1e-4)
print(
    f"trained network, training digits: relative residual {r.residual:.1e} (bound {r.tolerance:.0e}), "
    f"{r.details['images_kept']} images at eps = {r.details['step_size']:.3g}: {'PASS' if r.passed else 'FAIL'}"
)

# %% [markdown]
# Strictly, no image keeps *all* of its 20 480 activations under a real, noisy step, but only
# about one unit in a thousand flips, and on the images where the mean-noise step keeps the
# pattern the identity holds to rounding. So learning by CD-1 on these digits is, up to the
# few units that flip, gradient descent on the reconstruction error with step
# $\eta\,\epsilon^2/2$: the auto-encoder of Proposition 3. (The checks use a larger finite-difference step $h$ here, because $R$ is of
# order $10^6$ at intensities in [0, 255]; $R$ is quadratic in each weight, so central
# differences are exact whatever $h$.)
#
# Two remarks from section 7. First, CD says little about the biases: Eq. (7.4) is the
# difference of how often each unit fires at $\mathbf{I}^{obs}$ and at $\mathbf{I}^{syn}$, and
# one small step changes almost no unit; the paper suggests setting them by a sparsity
# constraint instead. Second, a model trained this way reconstructs its data well, but
# that does not make its Langevin samples look like the data: CD never lets the chains
# wander, so the model may put mass far from the data without being corrected (exercise 3).
#
# ## Summary
#
# * Contrastive divergence starts the Langevin chains at the observed images and takes one
#   (or a few) steps, Eq. (7.8), instead of running persistent chains to equilibrium.
# * If the step keeps the activation pattern, $f$ is linear on both images and the CD
#   gradient is $\langle \mathbf{I}^{obs} - \mathbf{I}^{syn}, \partial\mathbf{B}_{w,\delta}/\partial w\rangle$,
#   Eq. (7.5).
# * Proposition 3, Eqs. (7.7)-(7.9): in expectation over the noise, the CD-1 gradient is
#   exactly $-\frac{\epsilon^2}{2\sigma^4}\partial R/\partial w$, with
#   $R = \frac12\|\mathbf{I}^{obs} - \sigma^2\mathbf{B}_{w,\delta}\|^2$: CD learns an auto-encoder.
#   Numerically the identity holds to the finite differences' accuracy, the Monte Carlo mean
#   with the noise converges to it at $1/\sqrt{n}$, and it fails once steps flip patterns.
# * Experiment 3 (`python -m refimpl reconstruct`): CD-1 on 10 digits drives the relative
#   reconstruction error from 1 to about 0.2 in 300 iterations.
#
# ## Exercises
#
# 1. Show that without the ReLU's piecewise linearity (softplus, section 9) the CD gradient
#    picks up a second-derivative term, and that the exact proportionality is lost.
# 2. Run experiment 3 with $L = 5$ Langevin steps (`preset_config("reconstruct", langevin_steps=5)`).
#    How many more units flip per iteration, and how does the reconstruction curve change?
# 3. After the run above, start 10 persistent Langevin chains at 0 with the trained model
#    (`langevin(trainer.model(), ...)`, a few hundred steps). Do the samples look like digits?
#    Compare with the maximum-likelihood learning of lessons 8-10.
# 4. Proposition 3 suggests learning the weights by minimising $R$ directly. Write the
#    gradient of `reconstruction_loss` at fixed patterns with the help of Eq. (7.5), and
#    compare one such descent step with one CD step on the same weights.
# 5. **Assignment:** `python -m lessons.assign 11 --out assignment11`: write
#    `refimpl.learning.algorithm.mean_langevin_step`, `reconstruction_loss` and
#    `synthesize` (CD from the data, persistent chains otherwise), then run
#    `python grade.py` in that folder.
