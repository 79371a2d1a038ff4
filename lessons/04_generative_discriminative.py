# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 4. From discriminative to generative
#
# The ConvNets of practice are *discriminative*: they score an image for each of $C$
# categories, Eq. (2.2), $f_c(\mathbf{I}; w) = \sum_k w_{c,k} [F^{(\mathcal{L})}_k * \mathbf{I}]$,
# and turn the scores into class probabilities with the softmax, Eq. (2.3):
#
# $$p(c \mid \mathbf{I}; w) = \frac{\exp[f_c(\mathbf{I}; w) + b_c]}{\sum_{c'=1}^{C} \exp[f_{c'}(\mathbf{I}; w) + b_{c'}]}.$$
#
# Xie et al.'s first move, section 3, is to read the same scores *generatively*: class $c$ is
# the reference distribution $q$ (Gaussian white noise) **exponentially tilted** by its score,
# Eq. (3.1),
#
# $$p_c(\mathbf{I}; w) = \frac{1}{Z_c(w)} \exp[f_c(\mathbf{I}; w)]\, q(\mathbf{I}), \qquad Z_c(w) = \mathrm{E}_q\{\exp[f_c(\mathbf{I}; w)]\}.$$
#
# Proposition 1 says the two readings are the same model seen from two sides: Bayes' rule
# turns the tilted classes into the softmax, and the softmax, with white noise as a base
# category, determines the tilted classes. This lesson checks both parts numerically on toy
# classes in one and two dimensions, where refimpl computes $Z_c$ exactly; finds a sign
# error in the printed part (b); and compares the generative and the discriminative batch
# log-likelihoods of Dai, Lu & Wu (ICLR 2015, supplementary).

# %%
import numpy as np
from _lesson import pick, save

from refimpl import ConvNet, plotting
from refimpl.data import load_digits
from refimpl.exact import exact_distribution
from refimpl.models import (
    GenerativeModel,
    PrototypeModel,
    discriminative_log_likelihood,
    discriminative_score_gradient,
    generative_log_likelihood,
    generative_score_gradient,
    softmax_posterior,
)
from refimpl.theorems import discriminative as proposition1

# %% [markdown]
# ## The softmax classifier
#
# A ConvNet whose top layer is 1 x 1 (here: two layers on 8 x 8 digits, the second filter
# covering the whole map) gives features $[F^{(\mathcal{L})}_k * \mathbf{I}]$;
# `class_scores` weighs them into $f_c$, Eq. (2.2), and `softmax_posterior` applies
# Eq. (2.3). Only *differences* of scores matter: adding the same constant to every $b_c$
# changes nothing, which is why Proposition 1 states the biases up to a constant.

# %%
digits, labels = load_digits()
images = digits[:4] / 16.0 - 0.5
net = ConvNet.random(1, [(6, 3, 1, 1), (5, 8, 1, 0)], seed=0)
class_weights = np.random.default_rng(1).standard_normal((3, 5))
scores = net.class_scores(images, class_weights)  # (4 images, 3 classes)
biases = np.array([0.5, -0.2, 0.0])
posterior = softmax_posterior(scores, biases)
print("p(c | I), one row per image:\n", posterior.round(4))
print(
    "rows sum to 1:",
    np.allclose(posterior.sum(axis=1), 1),
    "| biases + 7 give the same posterior:",
    np.allclose(softmax_posterior(scores, biases + 7), posterior),
)

# %% [markdown]
# ## Exponential tilting in one dimension
#
# To see the tilting we need $Z_c$, an integral over image space. In one or two dimensions
# `refimpl.exact.exact_distribution` computes it exactly: for a ReLU scoring function the
# tilted density is a truncated Gaussian on each piece (Theorem 1, lesson 5), and the pieces
# of a line or a plane can be listed. Our "images" are single numbers $x$, the reference is
# $q = \mathrm{N}(0, 1)$, and each class scores with a prototype model $f_c(x) = \sum_k
# \max(0, w_k x + b_k)$ (section 5; `PrototypeModel`):
#
# * class 1, the base category: $f_1 = 0$, so $p_1 = q$ and $Z_1 = 1$;
# * class 2: $f_2(x) = \max(0, 2x - 1)$: pushes mass to the right;
# * class 3: $f_3(x) = \max(0, -2.5x - 2) + \max(0, x + 0.5)$: two bumps.
#
# (In code the classes are numbered 0, 1, 2.)

# %%
sigma = 1.0
classes = [
    GenerativeModel(PrototypeModel(np.zeros((1, 1)), np.zeros(1)), sigma),  # f_1 = 0
    GenerativeModel(PrototypeModel(np.array([[2.0]]), np.array([-1.0])), sigma),
    GenerativeModel(PrototypeModel(np.array([[-2.5], [1.0]]), np.array([-2.0, 0.5])), sigma),
]
exact = [exact_distribution(model) for model in classes]
log_Z = np.array([e.log_Z for e in exact])
priors = np.array([0.5, 0.25, 0.25])  # rho_c
print("log Z_c =", log_Z.round(6), "  (the base category: exactly 0)")
x = np.linspace(-6, 6, pick(1201, 301))[:, None]
densities = np.stack([np.exp(e.log_density(x)) for e in exact], axis=1)  # p_c(x), (n, 3)
print("numerical integrals of p_c over [-6, 6]:", np.trapezoid(densities, x[:, 0], axis=0).round(6))

# %% [markdown]
# ## Proposition 1(a): Bayes' rule gives the softmax
#
# With class priors $\rho_c$, Bayes' rule and (3.1) give
#
# $$p(c \mid \mathbf{I}) = \frac{\rho_c\, p_c(\mathbf{I})}{\sum_{c'} \rho_{c'}\, p_{c'}(\mathbf{I})}
#   = \frac{\exp[f_c(\mathbf{I}) + \log\rho_c - \log Z_c]\, q(\mathbf{I})}{\sum_{c'} \exp[f_{c'}(\mathbf{I}) + \log\rho_{c'} - \log Z_{c'}]\, q(\mathbf{I})},$$
#
# and $q$ cancels: the softmax (2.3) with $b_c = \log\rho_c - \log Z_c(w)$ (+ a constant).
# We compare Bayes' rule with the normalised densities (`theorems.discriminative.bayes_posterior`)
# against `softmax_posterior` of the raw scores with these biases:

# %%
class_scores = np.stack([m.scoring.score(x) for m in classes], axis=1)  # f_c(x), (n, 3)
bayes = proposition1.bayes_posterior(classes, log_Z, np.log(priors), x)
softmax = softmax_posterior(class_scores, np.log(priors) - log_Z)
print(f"max |Bayes - softmax(f_c + log rho_c - log Z_c)| = {np.abs(bayes - softmax).max():.1e}")
forgot = softmax_posterior(class_scores, np.log(priors))
print(f"without the -log Z_c the posterior is wrong by up to {np.abs(bayes - forgot).max():.2f}")

# %%
colours = ["tab:gray", "tab:red", "tab:blue"]
names = ["class 1 = q (base)", "class 2", "class 3"]
fig, axes = plotting.figure(1, 2, figsize=(12, 4))
for c in range(3):
    axes[0].plot(x[:, 0], densities[:, c], color=colours[c], label=f"p_{c + 1}  ({names[c]})")
    axes[1].plot(x[:, 0], bayes[:, c], color=colours[c], lw=3, alpha=0.4)
    axes[1].plot(x[:, 0], softmax[:, c], "--", color=colours[c], label=f"p({c + 1} | x)")
    axes[1].plot(x[:, 0], forgot[:, c], ":", color=colours[c], lw=1)
axes[0].set(xlabel="x", ylabel="density", title="tilted classes p_c = exp(f_c) q / Z_c  (3.1)")
axes[0].legend(fontsize=8)
axes[1].set(
    xlabel="x",
    ylabel="posterior",
    title="Bayes (thick) = softmax with b_c = log rho_c - log Z_c (dashed)\n"
    "dotted: softmax without -log Z_c",
)
axes[1].legend(fontsize=8)
fig.tight_layout()
save(fig, __file__, "tilting_and_posterior_1d")

# %% [markdown]
# ## Proposition 1(b) and its sign
#
# Part (b) goes the other way. Let the base category $c = 1$ be generated by $q$ and fix
# $f_1 = 0$, $b_1 = 0$ (as logistic regression fixes its negative class). Then the softmax
# gives Eq. (3.2), and Bayes' rule Eq. (3.3):
#
# $$\frac{p(c \mid \mathbf{I})}{p(1 \mid \mathbf{I})} = \exp[f_c(\mathbf{I}) + b_c]
#   = \frac{\rho_c\, p_c(\mathbf{I})}{\rho_1\, q(\mathbf{I})}
#   \quad\Longrightarrow\quad p_c(\mathbf{I}) = \frac{\rho_1}{\rho_c} \exp[f_c(\mathbf{I}) + b_c]\, q(\mathbf{I}),$$
#
# which has the form (3.1). Integrating both sides, $1 = (\rho_1 / \rho_c)\, e^{b_c} Z_c$, so
#
# $$b_c = \log\rho_c - \log\rho_1 - \log Z_c(w).$$
#
# The paper prints $+\log Z_c(w)$ (long and ICML versions alike). With that sign the implied
# $p_c$ integrates to $Z_c^2$ instead of 1; part (a) and the derivation both give
# $-\log Z_c$. `refimpl.theorems.discriminative` checks the derived relation (normalisation,
# the density pointwise, and the posterior with $q$ as class 1) and measures how far the
# printed one is off:

# %%
derived = proposition1.check_proposition1b(classes[1:], log_Z[1:], np.log(priors), x)
printed = proposition1.check_proposition1b_printed_sign(log_Z[1:], np.log(priors))
print(
    f"b_c = log rho_c - log rho_1 - log Z_c (derived): largest gap {derived.residual:.1e} -> "
    f"{'holds' if derived.passed else 'FAILS'}"
)
print(
    f"b_c = log rho_c - log rho_1 + log Z_c (printed): implied masses "
    f"{np.round(printed.details['implied_masses'], 4).tolist()} = Z_c^2 "
    f"{np.round(printed.details['Z_squared'], 4).tolist()}, not 1"
)

# %% [markdown]
# ## Two dimensions
#
# The same in the plane, with two tilted classes whose prototype filters point in different
# directions, and the base category. Left: the class densities $p_c$ (contours) over the
# mixture $P(\mathbf{I}) = \sum_c \rho_c p_c$; right: the posterior $p(c \mid \mathbf{I})$ as a
# colour (red, blue, gray for classes 2, 3 and the base) — the softmax with the biases of
# part (a), checked against Bayes' rule.

# %%
classes_2d = [
    GenerativeModel(PrototypeModel(np.zeros((1, 2)), np.zeros(1)), sigma),
    GenerativeModel(PrototypeModel(np.array([[2.0, 1.0]]), np.array([-1.5])), sigma),
    GenerativeModel(
        PrototypeModel(np.array([[-1.5, 1.5], [0.0, -2.0]]), np.array([-1.0, -2.0])), sigma
    ),
]
log_Z_2d = proposition1.class_log_normalisers(classes_2d, (2,))
side = np.linspace(-5, 5, pick(201, 61))
grid = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)  # (n, 2): (x, y)
scores_2d = np.stack([m.scoring.score(grid) for m in classes_2d], axis=1)
post_2d = softmax_posterior(scores_2d, np.log(priors) - log_Z_2d)
gap = np.abs(
    post_2d - proposition1.bayes_posterior(classes_2d, log_Z_2d, np.log(priors), grid)
).max()
print("log Z_c =", log_Z_2d.round(6), f"| max |softmax - Bayes| on the grid = {gap:.1e}")

# %%
dens_2d = np.exp(
    np.stack([m.log_density_unnormalised(grid) for m in classes_2d], axis=1) - log_Z_2d
)
shape = (len(side), len(side))
extent = (side[0], side[-1], side[0], side[-1])
fig, axes = plotting.figure(1, 2, figsize=(11, 5))
axes[0].imshow((dens_2d @ priors).reshape(shape), origin="lower", extent=extent, cmap="Greys")
for c in range(3):
    axes[0].contour(
        side, side, dens_2d[:, c].reshape(shape), levels=4, colors=colours[c], linewidths=1
    )
axes[0].set(title="mixture P (gray) and class densities p_c (contours)", xlabel="I_1", ylabel="I_2")
rgb = np.ones(shape + (3,))
for c, colour in enumerate([(0.5, 0.5, 0.5), (0.84, 0.15, 0.16), (0.12, 0.47, 0.71)]):
    rgb -= post_2d[:, c].reshape(shape)[..., None] * (1 - np.array(colour))
axes[1].imshow(np.clip(rgb, 0, 1), origin="lower", extent=extent)
axes[1].set(title="posterior p(c | I), softmax (2.3) with b_c = log rho_c - log Z_c", xlabel="I_1")
fig.tight_layout()
save(fig, __file__, "posterior_2d")

# %% [markdown]
# ## Generative versus discriminative log-likelihood on a batch
#
# For a labelled batch $\{(x_i, y_i)\}_{i=1}^n$, Dai, Lu & Wu contrast two objectives. The
# **discriminative** log-likelihood is the log of (2.3) at the labels,
#
# $$l_D(w) = \sum_i \log \frac{\exp f_{y_i}(x_i)}{\sum_{y} \exp f_y(x_i)},$$
#
# and the **generative** one is $\log p_{y_i}(x_i) = f_{y_i}(x_i) - \log Z_{y_i}$ with the
# normaliser estimated on the batch, summing over the examples $x_j$ with the class fixed:
#
# $$l_G(w) = \sum_i \log \frac{\exp f_{y_i}(x_i)}{\sum_{j} \exp f_{y_i}(x_j)}.$$
#
# On the score matrix $S_{ic} = f_c(x_i)$ both are a log-softmax — $l_D$ along a row (over
# classes), $l_G$ along a column (over examples) — and so are their gradients:
#
# $$\frac{\partial l_D}{\partial S_{mc}} = 1(y_m = c) - p(c \mid x_m), \qquad
#   \frac{\partial l_G}{\partial S_{mc}} = 1(y_m = c) - n_c \frac{\exp S_{mc}}{\sum_j \exp S_{jc}},$$
#
# with $n_c$ the number of examples of class $c$; the chain rule then multiplies by
# $\partial f_c(x_m) / \partial w$ (lesson 3). "In $l'_D$ the summation is over category $y$
# while $x_i$ is fixed, whereas in $l'_G$ the summation is over example $x_j$ while $y_i$ is
# fixed." So a row of the discriminative gradient sums to zero — the classes compete for each
# example — and a column of the generative one sums to zero — each class's score is pushed up
# on its own examples and down on the whole batch, whatever the other classes do.

# %%
rng = np.random.default_rng(0)


def labelled_batch(counts):
    """counts[c] examples of each class c, each x drawn exactly from p_c; (x (n, 1), y (n,))."""
    xs = np.concatenate([exact[c].sample(k, rng) for c, k in enumerate(counts)])
    ys = np.repeat(np.arange(3), counts)
    return xs, ys


xs, ys = labelled_batch([2, 2, 2])
S = np.stack([m.scoring.score(xs) for m in classes], axis=1)
grad_D, grad_G = discriminative_score_gradient(S, ys), generative_score_gradient(S, ys)
print("labels:", ys.tolist())
print("dl_D/dS (rows sum to 0):\n", grad_D.round(3))
print("dl_G/dS (columns sum to 0):\n", grad_G.round(3))
print(
    f"l_D = {discriminative_log_likelihood(S, ys):.4f}, l_G = {generative_log_likelihood(S, ys):.4f}"
)
shift_classes = np.array([[0.0, 3.0, -2.0]])  # a bias per class
shift_examples = np.arange(6.0)[:, None]  # a constant per example
print(
    f"class biases added:     l_D -> {discriminative_log_likelihood(S + shift_classes, ys):.4f}, "
    f"l_G -> {generative_log_likelihood(S + shift_classes, ys):.4f} (unchanged)"
)
print(
    f"per-example shift added: l_D -> {discriminative_log_likelihood(S + shift_examples, ys):.4f} "
    f"(unchanged), l_G -> {generative_log_likelihood(S + shift_examples, ys):.4f}"
)

# %% [markdown]
# ## Who sets the biases?
#
# The last two lines hold in general: $l_G$ cannot see the class biases $b_c$ (its gradient
# with respect to $b_c$ is a column sum, zero) — in the generative model they are absorbed by
# $Z_c$. The discriminative likelihood *is* about the biases. Proposition 1(b) predicts what
# it should find: if the data come from the tilted classes and $f_1 = 0$, $b_1 = 0$ are fixed,
# maximising $l_D$ over $b_2, b_3$ with the true scores $f_c$ (a logistic regression with
# offsets) must recover $b_c = \log\rho_c - \log\rho_1 - \log Z_c$, up to sampling error. We
# draw a large batch exactly and climb $l_D / n$ by gradient ascent, the gradient with respect
# to $b_c$ being the column sum of $\partial l_D / \partial S$:

# %%
n = pick(20000, 4000)
xs, ys = labelled_batch(rng.multinomial(n, priors))  # class sizes drawn with the priors rho
S = np.stack([m.scoring.score(xs) for m in classes], axis=1)
b = np.zeros(3)
path = [b.copy()]
for _ in range(pick(100, 60)):
    grad_b = discriminative_score_gradient(S + b, ys).mean(axis=0)
    grad_b[0] = 0.0  # b_1 = 0 stays fixed: the base category
    b = b + 2.0 * grad_b
    path.append(b.copy())
path = np.array(path)
counts = np.bincount(ys, minlength=3) / n
target = np.log(priors) - np.log(priors[0]) - log_Z
target_sample = np.log(counts) - np.log(counts[0]) - log_Z  # with the batch's class frequencies
print("fitted b_c                          :", b.round(4))
print("log rho_c - log rho_1 - log Z_c      :", target.round(4), "(derived, population priors)")
print("  same with the batch's frequencies  :", target_sample.round(4))
print(
    "log rho_c - log rho_1 + log Z_c      :",
    (np.log(priors) - np.log(priors[0]) + log_Z).round(4),
    "(printed)",
)
print(
    f"gradient of l_G / n w.r.t. the biases (column sums): "
    f"{np.abs(generative_score_gradient(S, ys).sum(axis=0)).max() / n:.0e}, zero up to rounding"
)

# %%
fig, ax = plotting.figure(figsize=(8, 4.2))
printed_b = np.log(priors) - np.log(priors[0]) + log_Z
for c in (1, 2):
    ax.plot(path[:, c], color=colours[c], label=f"b_{c + 1} fitted by maximising l_D")
    ax.axhline(target[c], color=colours[c], ls="--", lw=1)
    ax.axhline(printed_b[c], color=colours[c], ls=":", lw=1)
ax.plot([], [], "k--", lw=1, label="log rho_c - log rho_1 - log Z_c (derived)")
ax.plot([], [], "k:", lw=1, label="log rho_c - log rho_1 + log Z_c (printed)")
ax.set(
    xlabel="gradient-ascent step",
    ylabel="bias b_c",
    title=f"discriminative learning of the biases ({n} exact samples, f_c fixed)",
)
ax.legend(fontsize=8)
fig.tight_layout()
save(fig, __file__, "bias_fit")

# %% [markdown]
# ## Summary
#
# * The discriminative ConvNet is the softmax (2.3) of class scores (2.2); the generative
#   ConvNet tilts white noise by each score, Eq. (3.1), normalised by $Z_c = \mathrm{E}_q[e^{f_c}]$.
# * Proposition 1(a): Bayes' rule on tilted classes is the softmax with
#   $b_c = \log\rho_c - \log Z_c$ — checked to ~1e-16 in one and two dimensions with exact $Z_c$.
# * Proposition 1(b): with white noise as base category ($f_1 = 0$, $b_1 = 0$), the softmax
#   determines the tilted classes, with $b_c = \log\rho_c - \log\rho_1 - \log Z_c$. The paper
#   prints $+\log Z_c$, which would make $\int p_c = Z_c^2$; discriminative fitting of the
#   biases lands on the derived value, not the printed one.
# * On a batch, $l_D$ and $l_G$ are log-softmaxes of the same score matrix along different
#   axes (classes vs examples); so are their gradients. $l_D$ is blind to per-example shifts,
#   $l_G$ to per-class biases, which in the generative model belong to $Z_c$.
#
# ## Exercises
#
# 1. Prove Proposition 1(a) in two lines, and show that the "constant" in it is arbitrary:
#    which quantity does it cancel from?
# 2. Fit the biases by maximising $l_D$ with the printed relation's values as the starting point.
#    Where do they go? Repeat with the class frequencies of a smaller batch and compare the
#    spread of the fitted biases with $1/\sqrt{n_c}$.
# 3. Show that $l_G$, as written, does not estimate $\log Z_{y_i}$ but the log of
#    $\sum_j \exp f_{y_i}(x_j)$ over the batch's mixture $P$. What would have to be in the batch
#    for it to estimate $n\, Z_{y_i}$? (Hint: the base category.)
# 4. Replace the prototype classes by `ConvNet.random` networks on 1 x 1 two-channel images
#    (event shape `(2, 1, 1)` in `exact_distribution`) and repeat the check of part (a).
# 5. **Assignment:** `python -m lessons.assign 4 --out assignment4` — write `log_softmax`,
#    `softmax_posterior`, the two log-likelihoods and their score gradients in
#    `refimpl.models.discriminative` from their docstrings, then run `python grade.py` in that folder.
