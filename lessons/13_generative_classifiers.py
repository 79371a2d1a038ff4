# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 13. Generative classifiers: class nodes, GMMC and JEM
#
# A classifier answers "which digit is this?". A *generative* classifier can also answer
# "what does a 3 look like?", "is this a digit at all?" and "how sure should I be?". This
# lesson builds three of them on the engine of lessons 1-12, trains them on real digits, and
# measures the claims that Yang et al. make for their Generative Max-Mahalanobis Classifier
# (GMMC): better calibration, better out-of-distribution (OOD) detection, more robustness.
#
# We start from lesson 4: the softmax classifier, Xie et al. Eq. (2.3),
#
# $$p(c \mid \mathbf{I}) = \frac{\exp[f_c(\mathbf{I}) + b_c]}{\sum_{c'} \exp[f_{c'}(\mathbf{I}) + b_{c'}]},$$
#
# is, by Proposition 1, the Bayes posterior of the tilted classes of Eq. (3.1),
# $p(\mathbf{I} \mid c) \propto \exp[f_c(\mathbf{I})]\, q(\mathbf{I})$. So every trained
# classifier *is* a generative model of $p(\mathbf{I}, c)$ — whether it is a good one depends
# on how it was trained. Three readings of the same logits $L_c(\mathbf{I})$ recur below:
#
# | | softmax (Xie et al.) | JEM | GMMC |
# |---|---|---|---|
# | $L_c(\mathbf{I})$ | $f_c + b_c$ | $f_c + b_c$ | $-\lVert\phi(\mathbf{I}) - \mu_c\rVert^2 / 2\gamma^2$ |
# | $\log p(\mathbf{I}, c) + \log Z$ | $L_c + \log q(\mathbf{I})$ | $L_c$ | $L_c$ |
# | $p(c \mid \mathbf{I})$ | softmax of $L$ | softmax of $L$ | softmax of $L$ (GMMC Eq. (11)) |
#
# and $\log p(\mathbf{I}) = \log\sum_c \exp L_c(\mathbf{I}) + \log q(\mathbf{I}) - \log Z$.

# %%
import time

import numpy as np
from _lesson import pick, save

from refimpl import plotting
from refimpl.classify import gmmc, metrics
from refimpl.classify.data import OOD_NAMES, digits_split, ood_sets
from refimpl.classify.experiment import (
    class_node_samples,
    make_trainer,
    ood_figure,
    reliability_figure,
    samples_figure,
    train,
)

split, ood = digits_split(), ood_sets()
test_x, test_y = split.test_images, split.test_labels
ITERATIONS = pick(250, 20)  # the command's defaults use 1000; a lesson has 90 seconds

# %% [markdown]
# ## The data: digits, and images that are not digits
#
# The 1797 UCI digits are 8 x 8 counts in $[0, 16]$, mapped to $[-1, 1]$. A fixed stratified
# split (`digits_split`, the same in every run and test) holds out a quarter of each class:
# 1346 training and 451 test images. For OOD detection, four sets of 451 images that are
# *not* digits (`ood_sets`): Gaussian noise with the digits' per-pixel mean and spread;
# crops of the bundled brick, grass and gravel textures averaged down to 8 x 8 like the
# digits were; midpoints of two test digits of different classes (GMMC's "CIFAR10 Interp");
# and inverted digits.

# %%
rows = [test_x[:6]] + [ood[name][:6] for name in OOD_NAMES]
names = ["test digits"] + list(OOD_NAMES)
fig, axes = plotting.figure(len(rows), 6, figsize=(6, 1.1 * len(rows)), squeeze=False)
for i, (row, name) in enumerate(zip(rows, names, strict=True)):
    for j, image in enumerate(row):
        axes[i, j].imshow(-image[0], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
    axes[i, 0].set_ylabel(name, rotation=0, ha="right", fontsize=8)
fig.tight_layout()
save(fig, __file__, "data")

# %% [markdown]
# ## One network, trained two ways (Dai, Lu & Wu)
#
# The softmax ConvNet has a small engine network (three conv layers, 64 top features) and
# the class weights of Eq. (2.2). Lesson 4 wrote the two batch log-likelihoods of Dai, Lu &
# Wu's supplementary: the discriminative $l_D = \sum_i \log p(y_i \mid \mathbf{x}_i)$ normalises
# over **classes** with the example fixed; the generative
# $l_G = \sum_i \log[\exp f_{y_i}(\mathbf{x}_i) / \sum_j \exp f_{y_i}(\mathbf{x}_j)]$ over
# **examples** with the class fixed, the batch standing in for the samples of
# $p_{y_i}$ that $\log Z_{y_i}$ needs. Both are trained here with Adam for the same number of
# steps. $l_G$ cannot see the biases $b_c$ (adding a constant to one class's scores is
# absorbed by its $Z_c$), so after generative training they are fitted to $l_D$ with the
# network fixed ("adjust the intercepts", as the supplementary suggests;
# `refimpl.classify.heads.fit_biases`).


# %%
def fit(model, training=None, **overrides):
    """Train with the default configuration shortened to ITERATIONS; return (trainer, model)."""
    overrides.setdefault("iterations", ITERATIONS)
    if training == "joint":
        overrides.setdefault("pretrain_iterations", overrides["iterations"] // 2)
    trainer = make_trainer(model, training, seed=0, config=overrides)
    start = time.perf_counter()
    train(trainer, progress=False)
    final = trainer.final_model()
    probs = final.probs(test_x)
    print(
        f"{model:8s} {trainer.config.training:15s} accuracy {metrics.accuracy(probs, test_y):.3f}"
        f"  ECE {metrics.expected_calibration_error(probs, test_y):.4f}"
        f"  ({time.perf_counter() - start:.1f} s)"
    )
    return trainer, final


softmax_d = fit("softmax", "discriminative")
softmax_g = fit("softmax", "generative")
print("biases fitted after generative training:", softmax_g[1].biases.round(2))

# %% [markdown]
# The generative gradient trains a classifier about as good as the discriminative one: the
# supplementary's point that the generative constraint ("$f_{y_i}$ high on the examples of
# $y_i$, low on the others, whatever the other $f_y$ do") is the stronger one, and the
# discriminative one needs only the intercepts on top.
#
# ## Drawing images from a class node
#
# Dai, Lu & Wu (supplementary section B) draw images from the class nodes of a trained
# classifier by Langevin dynamics on $\log p(\mathbf{I} \mid c) = f_c(\mathbf{I}) + \log q(\mathbf{I}) + \text{const}$,
# Eq. (6.10) of lesson 6 with $f = f_c$. We start 16 chains per class from noise.

# %%
model = softmax_d[1]
samples, sample_labels = class_node_samples(
    model, softmax_d[0].config, per_class=pick(16, 2), steps=pick(300, 5), seed=0
)
save(
    samples_figure(samples, sample_labels, "class nodes of the discriminative softmax", 6),
    __file__,
    "class_nodes_softmax",
)
print("per-pixel spread of the samples:", samples.std().round(2), "(sigma =", model.sigma, ")")

# %% [markdown]
# Noise, with a faint template that shows only in the mean of the chains. Theorem 1 says
# why: on each piece the model is $N(\sigma^2 \mathbf{B}, \sigma^2 \mathbf{1})$, so a sample is
# the piece mean $\sigma^2\mathbf{B}$ (the template) plus white noise of standard deviation
# $\sigma$ per pixel. With $\sigma = 1$ on images in $[-1, 1]$ the noise wins; a discriminative
# network has no reason to make $\mathbf{B} = \partial f_c / \partial \mathbf{I}$ as large as the
# images. Xie et al. work at the opposite end: intensities in $[0, 255]$ with $\sigma = 1$, so
# the noise is one grey level and $\mathbf{B}$ must be of the size of the image — which only
# generative training makes it.
#
# ## GMMC: a mixture of Gaussians in feature space
#
# GMMC models the top features $\phi(\mathbf{I}) \in \mathbb{R}^d$ as
# $p(\phi \mid y) = N(\mu_y, \gamma^2 \mathbf{1})$ with $p(y) = 1/C$, so that
# $p(\mathbf{I}, y) = \exp(-E(\mathbf{I}, y)) / Z$ with energy
# $E(\mathbf{I}, y) = \lVert \phi(\mathbf{I}) - \mu_y\rVert^2 / 2\gamma^2$ (GMMC Eqs. (4), (6)).
# The centres are not learned: Algorithm 2 puts them on a regular simplex, as far apart as
# $C$ points of norm $S$ can be, $\langle\mu_y, \mu_{y'}\rangle = -S^2/(C-1)$.

# %%
mu = gmmc.mmc_centres(10, 64, scale=10.0)
gram = mu @ mu.T
print(
    "|mu_y|^2:",
    np.unique(np.diag(gram).round(10)),
    " <mu_y, mu_y'>:",
    np.unique(gram[~np.eye(10, dtype=bool)].round(10)),
)
print("sum of the centres (a simplex around 0):", np.abs(mu.sum(axis=0)).max())

# %% [markdown]
# GMMC is trained three ways (section 3):
#
# 1. **discriminatively**, Eq. (5): with $Z$ taken as constant, maximising $\log p(\mathbf{x}, y)$
#    is minimising $E(\mathbf{x}, y)$, pulling each example's features to its centre (the
#    centre-regression loss of MMC); $\gamma$ is a constant absorbed in the learning rate;
# 2. **generatively**, Eq. (7): $\partial \log p / \partial\theta = \beta\, E_p[\partial E(\mathbf{x}', y')/\partial\theta] - \partial E(\mathbf{x}, y)/\partial\theta$,
#    pushing the energy of the data down and that of the model's samples up, with
#    $\beta = 0.5$. The samples come from Algorithm 1: draw $(\mathbf{x}'_0, y')$ from a replay
#    buffer (or restart from $U(-1, 1)$ with probability $\rho$), draw a target
#    $\mathbf{z} \sim N(\mu_{y'}, \gamma^2\mathbf{1})$, then descend
#    $\lVert\phi(\mathbf{x}') - \mathbf{z}\rVert^2/2$ for $\tau = 20$ steps (**staged sampling**, Eq. (8));
# 3. **jointly**: discriminatively first, then $\beta$ raised to its value.
#
# After training $\gamma^2 = \frac{1}{d}\,\mathrm{mean}_i \lVert\phi(\mathbf{x}_i) - \mu_{y_i}\rVert^2$
# on the training set (section 3.4) turns the energies into probabilities, Eq. (11).

# %%
gmmc_d = fit("gmmc", "discriminative")
gmmc_g = fit("gmmc", "generative")
gmmc_j = fit("gmmc", "joint")
print("estimated gamma (generative):", round(gmmc_g[1].gamma, 3))
samples, sample_labels = class_node_samples(
    gmmc_g[1], gmmc_g[0].config, per_class=pick(16, 2), steps=pick(300, 5), seed=0
)
save(
    samples_figure(samples, sample_labels, "GMMC (Gen): staged sampling from each class", 6),
    __file__,
    "class_nodes_gmmc",
)

# %% [markdown]
# The staged sampler starts from uniform noise and pulls the features onto a draw of each
# class's Gaussian; the images it finds are digits. Its randomness is all in the target
# $\mathbf{z}$: there is no noise in image space, unlike Langevin dynamics.
#
# ## JEM: the softmax classifier as an energy-based model
#
# JEM (Grathwohl et al.), the baseline GMMC is compared with, reads the softmax logits as
# $p(\mathbf{x}, y) \propto \exp(f_y(\mathbf{x}) + b_y)$ without a reference and maximises
# $\log p(y \mid \mathbf{x}) + \log p(\mathbf{x}) = \log p(\mathbf{x}, y)$, with samples of
# $p(\mathbf{x})$ from a replay buffer refined by SGLD, GMMC Eq. (3), as JEM runs it: step 1
# on $\nabla \log p$, noise 0.01 — a nearly deterministic ascent.

# %%
jem_g = fit("jem", "generative")
samples, sample_labels = class_node_samples(
    jem_g[1], jem_g[0].config, per_class=pick(16, 2), steps=pick(300, 5), seed=0
)
save(
    samples_figure(samples, sample_labels, "JEM: SGLD on each class node", 6),
    __file__,
    "class_nodes_jem",
)

# %% [markdown]
# ## Calibration
#
# A classifier is calibrated when, among the images it labels with confidence
# $\max_y p(y \mid \mathbf{x}) \approx 0.8$, about 80% are right. The expected calibration
# error, GMMC Eq. (12), bins the confidences into $M = 20$ equal-width bins $B_m$ and
# averages the gaps, $\mathrm{ECE} = \sum_m \frac{|B_m|}{n}\lvert\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\rvert$,
# a fraction (the paper prints it in percent). The reliability diagram shows the bins.

# %%
models = {
    "softmax": softmax_d[1],
    "GMMC (Gen)": gmmc_g[1],
    "JEM": jem_g[1],
}
for name, m in models.items():
    probs = m.probs(test_x)
    bins = metrics.calibration_bins(probs, test_y, 20)
    fig = reliability_figure(
        bins,
        metrics.expected_calibration_error(probs, test_y),
        metrics.accuracy(probs, test_y),
        name,
    )
    save(fig, __file__, "reliability_" + name.split()[0].lower())

# %% [markdown]
# Most test digits sit in the last bin, confidence above 0.95; the ECE is decided by the few
# below it. Read the three diagrams side by side: an over-confident model has its bars under
# the diagonal, an under-confident one above. On these digits, with these short runs, JEM is
# the under-confident one (its ECE is several times the others'); the benchmark
# (`benchmarks/classifiers.py`, three seeds and 1000 updates each) says how the softmax and
# GMMC compare.
#
# ## Out-of-distribution detection
#
# An OOD detector scores every image, higher = "more like the training data", and is judged
# by the AUROC: the probability that a random test digit outscores a random OOD image (ties
# count half; 0.5 is chance, 1 perfect). GMMC section 4.3 uses three scores: the input
# density $\log p(\mathbf{x})$ (up to $\log Z$), the confidence $\max_y p(y \mid \mathbf{x})$, and
# the "approximate mass" $-\lVert\partial \log p(\mathbf{x}) / \partial\mathbf{x}\rVert$.

# %%
for name, m in models.items():
    scores = {"test": metrics.ood_scores(m, test_x)}
    for set_name in OOD_NAMES:
        scores[set_name] = metrics.ood_scores(m, ood[set_name])
    predictions = {f"score_{k}_{s}": v for k, d in scores.items() for s, v in d.items()}
    auroc = {
        n: {s: metrics.auroc(scores["test"][s], scores[n][s]) for s in scores["test"]}
        for n in OOD_NAMES
    }
    print(name, {n: {s: round(v, 3) for s, v in a.items()} for n, a in auroc.items()})
    save(
        ood_figure(predictions, auroc, f"OOD scores: {name}"),
        __file__,
        "ood_" + name.split()[0].lower(),
    )

# %% [markdown]
# The density of the softmax read through Xie et al.'s white-noise reference ranks the
# *wrong* way on textures: $\log q(\mathbf{I}) = -\lVert\mathbf{I}\rVert^2/2\sigma^2$ is largest
# for grey images near 0, and a discriminatively trained $f$ does not outweigh it. GMMC's
# density, which has no such term and whose energy grows with the distance of the features
# from every centre, ranks all four sets well, and so does JEM's, learned from its
# $p(\mathbf{x})$ term; the midpoints of two digits ("interp") are the hardest for both. The
# confidence $\max_y p(y \mid \mathbf{x})$ is the softmax's best score and GMMC's worst: GMMC is
# sure about almost everything, digit or not (the paper's CelebA column shows the same).
#
# ## Robustness
#
# PGD (Madry et al.) moves each test image by at most $\epsilon$ per pixel, 40 steps of size
# $2.5\epsilon/40$ along the sign of the loss gradient, to make the model wrong. GMMC
# Table 5 uses $\epsilon$ = 4, 8, 16, 32 / 255 of the intensity range; here 16/255 of the
# range $[-1, 1]$.

# %%
eps = 2 * 16 / 255
n_attack = pick(200, 20)
for name, m in models.items():
    robust = metrics.pgd_accuracy(m, test_x[:n_attack], test_y[:n_attack], [eps], pick(40, 3))[0]
    print(f"{name:11s} accuracy under PGD-40 at eps = 16/255 of the range: {robust:.3f}")

# %% [markdown]
# ## Summary
#
# * A softmax classifier is a generative model, Proposition 1:
#   $p(\mathbf{I} \mid c) \propto \exp[f_c(\mathbf{I})]\,q(\mathbf{I})$, Eq. (3.1). Dai, Lu & Wu's
#   generative gradient normalises over examples where the discriminative one normalises over
#   classes; both train a good classifier, the generative one up to its intercepts.
# * Drawing from a class node by Langevin, Eq. (6.10), gives the piece mean $\sigma^2\mathbf{B}$
#   plus noise of size $\sigma$ (Theorem 1): a discriminative $f$ tilts white noise only
#   faintly.
# * GMMC puts a Gaussian per class on the features around fixed, maximally separated
#   centres (Algorithm 2), and is trained by Eq. (5), Eq. (7) with staged sampling
#   (Algorithm 1, Eq. (8)), or both in turn; $\gamma$ is estimated afterwards, Eq. (11).
# * ECE (Eq. (12)), AUROC of $\log p(\mathbf{x})$, $\max_y p(y\mid\mathbf{x})$ and
#   $-\lVert\nabla\log p(\mathbf{x})\rVert$, and PGD accuracy are what GMMC's claims are about;
#   `benchmarks/classifiers.py` measures them over seeds, and `docs/classify.md` says which
#   claims hold on the digits.
#
# ## Exercises
#
# 1. Train GMMC generatively with `sampler="noise"` (noise-injected sampling, Eq. (10)) and
#    `sampler_gamma` 0.001 (the authors' code) and 0.5. Why are the first run's samples the
#    same as the staged sampler's to three digits?
# 2. The softmax's $\log p(\mathbf{x})$ includes $\log q$. Drop it (`sigma=None`, JEM's
#    reading) and recompute the AUROC on the textures. Which term did the damage?
# 3. Set `expectation="langevin"` for the generative softmax: the model expectations of
#    Eq. (3.1) by persistent Langevin chains instead of the batch. Watch the energies of data
#    and chains (`trainer.history`) and explain why short chains at $\sigma = 1$ never reach
#    the data.
# 4. Make GMMC's joint switch abrupt and JEM's too (`pretrain_iterations`), and plot the
#    energies of data and samples around the switch (GMMC appendix E, Table 10).
# 5. **Assignment:** `python -m lessons.assign 13 --out lesson13` — write
#    `refimpl.classify.gmmc.mmc_centres` (Algorithm 2), `energies`, `discriminative_loss`
#    (Eq. (5)) and `generative_loss` (Eq. (7)), `refimpl.classify.metrics.calibration_bins`
#    and `expected_calibration_error` (Eq. (12)), and `refimpl.classify.sampling.staged_sampling`
#    (Eq. (8)), then run `python grade.py` in that folder.
