# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 10. Aligned objects: a fully connected top filter
#
# The texture model of lesson 9 scores an image by summing the top-layer responses over
# **all positions**, $f(\mathbf{I}; w) = \sum_{k,x} [F^{(L)}_k * \mathbf{I}](x)$, Eq. (3.5).
# Section 4 reads this as a Markov random field,
#
# $$p(\mathbf{I}) = \frac{1}{Z} \exp\Big[\sum_{\mathcal{C}} \lambda_{\mathcal{C}}(\mathbf{I}(\mathcal{C}))\Big],$$
#
# Eq. (4.1), whose clique potentials are the filter responses
# $\lambda_{\mathcal{C}} = [F^{(L)}_k * \mathbf{I}](x)$: **the same function at every
# position**. Such a model is stationary. It knows which patterns occur and how often, not
# where, which is exactly right for a texture and exactly wrong for an object: the top bar of
# a "3" belongs at the top and its lower bowl at the bottom.
#
# Section 4 also gives the other reading. A single filter $F^{(l)}_k$ *at one fixed position*
# $x$ is a **non-stationary FRAME model** of the patch under it,
#
# $$p_k^{(l)}(\mathbf{I}; w, x) = \frac{1}{Z_k^{(l)}(w, x)} \exp\Big[\sum_{i=1}^{N_{l-1}}
#   \sum_{y \in \mathcal{S}_l} w_{i,y}^{(l,k)}\, [F_i^{(l-1)} * \mathbf{I}](x+y)\Big]\, q(\mathbf{I}),$$
#
# Eq. (4.2). Its weights $w_{i,y}$ depend on the offset $y$: a different weight for every
# feature at every place, i.e. a **template**. Experiment 2 (section 8.2) uses this for
# aligned objects: on top of the conv layers sits "a single top-layer filter that covers the
# whole image". Its kernel is as large as the feature map below it, so it has exactly one
# position, and
#
# $$f(\mathbf{I}; w) = \sum_{i=1}^{N_{L-1}} \sum_{y} w^{\rm top}_{i,y}\,
#   [F^{(L-1)}_i * \mathbf{I}](y) + b^{\rm top}$$
#
# is the exponent of Eq. (4.2) with $\mathcal{S}$ = the whole map. The template is not over
# pixels but over the (non-linear) features of the layers below, which are still shared
# convolutional filters and still learned by Algorithm 1.
#
# refimpl builds this filter in `refimpl.learning.algorithm.top_filter` (your assignment): one output channel,
# a kernel equal to the top feature map, no ReLU, re-created each time a layer is grown
# (the map below it changes).

# %%
import time

import numpy as np
from _lesson import pick, save

from refimpl import plotting
from refimpl.convnet import ConvNet
from refimpl.learning import Trainer, runs
from refimpl.learning.presets import PRESETS, preset_config

# %% [markdown]
# ## The data: aligned digits
#
# The paper learns from about 10 aligned photographs per category at 224 x 224 (preset
# `object-paper`, a GPU job). refimpl's CPU preset `object` uses the bundled UCI handwritten
# digits: 10 images of the digit 3, resized from 8 x 8 to 16 x 16, intensities in [0, 255]
# minus their mean (section 8's preparation), and three padded 3 x 3 layers under the top
# filter. Everything else is section 8's recipe: $\tilde M = 16$ chains, $L = 10$ Langevin
# steps, $T = 100$ iterations per layer (the paper: 700), $\sigma^2 = 1$. In full mode this
# lesson runs the preset unchanged (about 25 s on one core); the same run from the command
# line is
#
#     python -m refimpl synthesize --preset object              # add --digit 5 for another class

# %%
print("object preset:", PRESETS["object"]["description"])
T = pick(100, 8)
config = preset_config("object", iterations_per_layer=T)
data, mean, raw = runs.prepare(config)
print(
    f"training images {data.shape}, raw intensities in [{raw.min():.0f}, {raw.max():.0f}], "
    f"mean subtracted {float(mean.ravel()[0]):.1f}"
)
print("conv layers (out_channels, kernel, stride, pad, relu):", [tuple(s) for s in config.spec])
print(
    f"top filter: {config.top_filter}; chains {config.chains}, L = {config.langevin_steps}, T = {T} per layer, "
    f"eps = {config.step_size}, sigma = {config.sigma}; learning rates {config.learning_rates()}"
)

# %% [markdown]
# ## The network at stage 1
#
# A new `Trainer` is at stage 1: the first conv layer of `spec` and, because `top_filter` is
# set, the top filter over its 16 x 16 map. The top layer's kernel is the whole map, so its
# output is a single number per image (feature shape `(1, 1, 1)`), and its activation is
# linear:

# %%
trainer = Trainer(config, data)
print(trainer.net)
print("feature maps per layer:", trainer.net.feature_shapes(data.shape))
top = trainer.net.layers[-1]
print(
    f"top filter: {top.weight.size} weights (one per feature and position), relu = {top.relu}; "
    f"a 3x3 conv filter on the same input has {top.in_channels * 9}"
)

# %% [markdown]
# **Why no ReLU at the top.** A ReLU unit with one position is one switch for the whole image:
# wherever its response $r$ is negative, $f = 0$, $\mathbf{B} = \partial f / \partial
# \mathbf{I} = 0$ and the model is the white noise $q$ there, with no gradient for any layer
# (the kink problem of lesson 9, now for the entire network). Section 4 justifies the ReLU
# and bias of a filter as a mixture of *presence and absence* of the pattern; for aligned
# objects it is always present, so refimpl's top filter keeps only the linear exponent of
# Eq. (4.2). (Section 8.2 calls it "a convolutional filter at a fixed position before ReLU
# non-linearity" and says no more; a linear top is refimpl's reading, recorded in
# `LearningConfig.top_filter`.) Its bias is then a constant in $f$, absorbed by $Z(w)$: its gradient
# $H^{\rm obs} - H^{\rm syn}$, Eq. (7.4), is $1 - 1 = 0$ exactly (every image, observed or
# synthesised, contributes $\delta = 1$), so it never moves. We check this after learning.
#
# ## Learning: three stages
#
# Algorithm 1 with the layers grown one at a time (lesson 9): at each stage `enter_stage`
# keeps the trained conv layers, adds the next one, and calls `top_filter` for a **new** top
# filter over the new top map, as section 8.2 says: "when growing the layers, we always keep
# the top-layer single filter, and train it together with the existing layers". We stop at
# the end of each stage and keep 4 chains as a snapshot.

# %%
start = time.perf_counter()
snapshots, tops = [], []
for stage in (1, 2, 3):
    top_before = trainer.net.layers[-1]
    trainer.run(iterations=T)
    snapshots.append(np.clip(runs.to_raw(config, trainer.chains, mean), 0, 255)[:4])
    tops.append(top_before)
    print(
        f"stage {stage}: {time.perf_counter() - start:5.1f} s, top filter {top_before.in_channels}x"
        f"{top_before.kernel_size}x{top_before.kernel_size}, mismatch per layer "
        f"{np.round(trainer.history['mismatch'][-1], 3)}, reconstruction error "
        f"{trainer.history['reconstruction_error'][-1]:.3f}"
    )
print("final network:", [tuple(s) for s in trainer.net.spec()])
print("the stage-1 top filter was replaced:", tops[0] is not tops[1] and tops[1] is not tops[2])
print(
    "top filter bias after",
    trainer.iteration,
    "iterations:",
    trainer.net.layers[-1].bias,
    "(it started at 0: its gradient is exactly 1 - 1 = 0)",
)

# %% [markdown]
# ## Training images and samples
#
# The first row: 4 of the 10 training images. Then 4 of the 16 chains at the end of each
# stage (mean added back, clipped to [0, 255]).

# %%
images = list(raw[:4]) + [s for snap in snapshots for s in snap]
titles = [f"train {i}" for i in range(4)] + [
    f"stage {st + 1}, chain {i}" for st in range(3) for i in range(4)
]
fig = plotting.image_grid(images, titles, columns=4, scale=2.2)
save(fig, __file__, "samples_per_stage")

# %% [markdown]
# Already after stage 1 (one layer of 3 x 3 filters under the template) the chains show a
# 3; stages 2 and 3 sharpen it. The chains are 3s in the training images' place and style. They are also much alike: with $\sigma = 1$ on intensities of about 100, each
# piece's Gaussian, Theorem 1, is very narrow around its mean $\sigma^2\mathbf{B}$, and an
# aligned template has few pieces that fit the data. The paper's samples (Fig. 7) share this
# look of a sharpened average.
#
# ## The top filter as a template
#
# Two views of what the top filter learned. Its **weights** are one 16 x 16 map per feature
# channel of layer 3 ($w^{\rm top}_{i,\cdot}$ of Eq. (4.2)): where the feature $i$ should fire
# (red) or not (blue). In **image space** the template is $\mathbf{B}_{w,\delta(\mathbf{I})} =
# \partial f / \partial \mathbf{I}$, the top filter back-projected through the layers below
# with the image's activation pattern, Eq. (6.7): $f = \alpha + \langle \mathbf{I},
# \mathbf{B}\rangle$ on the piece of $\mathbf{I}$ (lesson 5), and $\sigma^2 \mathbf{B}$ is the
# image's reconstruction (Proposition 2).

# %%
top = trainer.net.layers[-1]
weights = [top.weight[0, i][None] for i in range(top.in_channels)]
fig = plotting.image_grid(
    weights,
    [f"top weights, channel {i}" for i in range(top.in_channels)],
    columns=4,
    signed=True,
    scale=2.2,
)
save(fig, __file__, "top_filter_weights")

recon = trainer.model().piece_mean(data[:2])  # sigma^2 B_{w, delta(I)}
B_syn = trainer.net.grad_input(trainer.chains[:2])
recon_raw = runs.to_raw(config, recon, mean)
shown = [raw[0], recon_raw[0], raw[1], recon_raw[1], B_syn[0], B_syn[1]]
fig = plotting.image_grid(
    shown,
    [
        "train 0",
        "sigma^2 B (train 0) + mean",
        "train 1",
        "sigma^2 B (train 1) + mean",
        "B at sample 0",
        "B at sample 1",
    ],
    columns=6,
    scale=2.2,
)
save(fig, __file__, "template_in_image_space")
err = np.linalg.norm((data[:2] - recon).reshape(2, -1), axis=1) / np.linalg.norm(
    data[:2].reshape(2, -1), axis=1
)
print("reconstruction error |I - sigma^2 B| / |I| of train 0, 1:", np.round(err, 3))

# %% [markdown]
# Is the top layer really the exponent of Eq. (4.2)? Take the features
# $F^{(3)} * \mathbf{I}$ from the conv layers alone and form
# $\sum_{i,y} w^{\rm top}_{i,y} [F^{(3)}_i * \mathbf{I}](y) + b^{\rm top}$ with one NumPy
# contraction; it must equal the network's $f$:

# %%
features = ConvNet(trainer.net.layers[:-1]).forward(data).outputs[-1]  # (M, 8, 16, 16)
exponent = np.tensordot(features, top.weight[0], axes=([1, 2, 3], [0, 1, 2])) + top.bias[0]
f = trainer.net.score(data)
print("f of the training images:", np.round(f[:4]))
print(
    f"max |f - Eq. (4.2) exponent| / max |f| = {np.abs(f - exponent).max() / np.abs(f).max():.1e}"
)

# %% [markdown]
# ## Template versus texture
#
# What does the top filter buy? Learn the **same** conv layers on the same 10 images with
# the same budget, but without the top filter: the stationary score (3.5), as for a texture.

# %%
start = time.perf_counter()
stationary_config = preset_config(
    "object",
    iterations_per_layer=pick(100, 5),
    top_filter=False,
    learning_rate=config.learning_rates()[:3],
    init_std=config.init_std[:3],
)
stationary = Trainer(stationary_config, data).run()
print(
    f"stationary model: {stationary.iteration} iterations in {time.perf_counter() - start:.1f} s, final "
    f"mismatch {np.round(stationary.history['mismatch'][-1], 3)}"
)
texture_like = np.clip(runs.to_raw(stationary_config, stationary.chains, mean), 0, 255)
images = list(raw[:4]) + list(snapshots[-1]) + list(texture_like[:4])
titles = (
    [f"train {i}" for i in range(4)]
    + [f"top filter, sample {i}" for i in range(4)]
    + [f"stationary (3.5), sample {i}" for i in range(4)]
)
fig = plotting.image_grid(images, titles, columns=4, scale=2.2)
save(fig, __file__, "template_versus_stationary")

# %% [markdown]
# The stationary model learns strokes: its samples are pieces of the 3's curves and bars in
# arbitrary arrangements (some a 3 by chance, some a column, a frame or a blank).
#
# **What each model matches.** At the maximum-likelihood estimate, Eq. (7.3) says the samples
# match the data in the averages $\sum_{x} \delta_{k,x} [F^{(L-1)}_i * \mathbf{I}](x+y)$,
# "where the average is pooled over $x$" (section 7). For the top filter there is one
# position and $\delta = 1$ (linear), so the sum over $x$ disappears: the condition becomes
#
# $$\frac{1}{M}\sum_{m} [F^{(L-1)}_i * \mathbf{I}_m](y) = \mathrm{E}_w\big[[F^{(L-1)}_i * \mathbf{I}](y)\big]
#   \quad \text{for every feature } i \text{ and every position } y:$$
#
# the average feature map, **position by position**. The stationary model only matches the
# position-pooled averages. We measure both on each model's own top features, and on the
# average image itself:


# %%
def feature_averages(conv_net, images):
    maps = conv_net.forward(images).outputs[-1].mean(axis=0)  # (N, H, W): average map
    return maps, maps.sum(axis=(1, 2))  # per position, pooled over x


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


mean_images = [raw.mean(axis=0)]
for name, model_trainer, features in (
    ("top filter", trainer, ConvNet(trainer.net.layers[:-1])),
    ("stationary", stationary, stationary.net),
):
    (data_maps, data_pooled), (syn_maps, syn_pooled) = (
        feature_averages(features, x) for x in (data, model_trainer.chains)
    )
    mean_images.append(
        np.clip(runs.to_raw(config, model_trainer.chains, mean), 0, 255).mean(axis=0)
    )
    print(
        f"{name:10s}: samples vs data, relative difference of the top features' averages: "
        f"pooled over x {rel(data_pooled, syn_pooled):.3f}, per position {rel(data_maps, syn_maps):.3f}; "
        f"of the average image {rel(data.mean(axis=0), model_trainer.chains.mean(axis=0)):.3f}"
    )
fig = plotting.image_grid(
    mean_images,
    ["average training image", "average sample, top filter", "average sample, stationary"],
    columns=3,
    scale=2.6,
)
save(fig, __file__, "average_images")

# %% [markdown]
# Both models match what Eq. (7.3) asks of them, pooled over positions, to a percent or two.
# Only the top filter also matches the averages per position, and with them the average
# image; the stationary model's samples put the ink elsewhere.
#
# The stationary score cannot do better because it cannot tell where: moving the content
# does not change Eq. (3.5). Away from borders this is exact. Place the digits on a larger
# 32 x 32 background and shift them by one pixel: $f$ does not change at all. (On the
# 16 x 16 frame itself the zero padding meets the background, which gives the stationary
# model a little position information near the frame's edge.)

# %%
background = float(-mean.ravel()[0])  # raw intensity 0, centred
canvas = np.full((2, len(data), 1, 32, 32), background)
canvas[0, :, :, 8:24, 8:24] = data
canvas[1, :, :, 8:24, 9:25] = data  # one pixel to the right
f_here, f_there = stationary.net.score(canvas[0]), stationary.net.score(canvas[1])
print(
    f"stationary model on a 32x32 canvas: max |f(I) - f(shifted I)| / max |f| = "
    f"{np.abs(f_here - f_there).max() / np.abs(f_here).max():.1e}"
)

# %% [markdown]
# ## Learning curves
#
# What `Trainer.step` recorded (lesson 9): the moment mismatch per layer, Eqs. (7.3)-(7.4) (the
# top filter is the last layer of each stage), mean energies of data and samples, and the
# reconstruction error $\|\mathbf{I} - \sigma^2\mathbf{B}\| / \|\mathbf{I}\|$; dotted lines
# mark the stages.

# %%
fig = runs.curves_figure(trainer.history, plotting)
save(fig, __file__, "learning_curves")
h = trainer.history
for stage in (1, 2, 3):
    at = [i for i, s in enumerate(h["stage"]) if s == stage]
    print(
        f"stage {stage}: mismatch {np.round(h['mismatch'][at[0]], 3)} -> {np.round(h['mismatch'][at[-1]], 3)}; "
        f"energy data/samples {h['energy_data'][at[-1]]:.3g} / {h['energy_samples'][at[-1]]:.3g}"
    )

# %% [markdown]
# In stage 1, $f = \langle w^{\rm top}, h(w^{(1)} * \mathbf{I})\rangle$ is a product of the
# first layer's weights (started at 0.01) and the top filter's, so each factor's gradient is
# scaled by the other, small one: learning starts near a saddle. The preset therefore gives
# the top filter the first layer's learning rate, $10^{-3}$; with the $10^{-4}$ of the middle
# layers, stage 1 stalls (relative mismatch 0.97 after 100 iterations instead of 0.03,
# measured; exercise 5 lets you see it). Stages 2 and 3 add layers at the He scale and
# refine. As with textures, the mismatch stays noisy: 16 chains, 10
# Langevin steps apart.
#
# ## Summary
#
# * A texture model sums each filter over all positions, Eq. (3.5): a Markov random field
#   whose clique potentials are the same everywhere, Eq. (4.1). It learns *what*, not *where*.
# * A filter at a fixed position is a non-stationary FRAME model, Eq. (4.2): position-dependent
#   weights, a template. Experiment 2 puts one such filter on top, covering the whole feature
#   map (one output position), linear, re-created each time a layer is grown.
# * Its bias cancels in $p$ (gradient exactly 0); its weights, back-projected through the
#   layers below, are an image-space template $\mathbf{B}$ whose $\sigma^2\mathbf{B}$
#   reconstructs the training images.
# * At the maximum-likelihood estimate, Eq. (7.3) for the top filter matches the average
#   feature maps position by position; the stationary model matches them only pooled over
#   positions, and its $f$ is exactly shift-invariant away from the borders.
# * Learned on 10 aligned 3s, the template model samples 3s whose average is the training
#   images' average; the same layers without it sample strokes in arbitrary places.
# * Full scale: `python -m refimpl synthesize --preset object-paper --backend cupy`.
#
# ## Exercises
#
# 1. Learn another class (`digit=5` in `preset_config`) or all ten digits at once
#    (`dataset="digit-classes"`). What do the samples of the mixed set look like, and why?
# 2. Give the top filter a ReLU: replace `trainer.net.layers[-1]` by a `ConvLayer` with the
#    same weights and a bias of $-(r + 1)$, where $r$ is its response to a training image.
#    What are $f$, $\mathbf{B}$ and the parameter gradients at that image?
# 3. Compute $f(\mathbf{I}) - f(\text{shifted } \mathbf{I})$ (`np.roll` by one pixel, which
#    keeps $\|\mathbf{I}\|$, so this is the log-likelihood ratio) for both models on the
#    16 x 16 frame. Why does the stationary model notice the shift here, but not on the
#    32 x 32 canvas? Try it with the texture preset's layers without padding.
# 4. Count parameters: how many weights does the top filter of the paper's network
#    (`object-paper`: 224 x 224 images, layers 7x7 stride 2 / 5x5 / 3x3, no padding) have?
#    (Use `ConvNet.feature_shapes`.)
# 5. Run the preset with the top filter at the middle layers' rate,
#    `preset_config("object", learning_rate=[1e-3, 1e-4, 1e-4, 1e-4])`, and plot stage 1's
#    mismatch. Why does the product $\langle w^{\rm top}, h(w^{(1)} * \mathbf{I})\rangle$ start
#    so slowly from small weights, and why does a larger rate for either factor cure it?
# 6. **Assignment:** `python -m lessons.assign 10 --out assignment10`: write
#    `refimpl.learning.algorithm.top_filter` from its docstring and this lesson, then
#    run `python grade.py` in that folder.
