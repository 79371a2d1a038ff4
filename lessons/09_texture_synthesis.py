# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 9. Texture synthesis: growing a generative ConvNet layer by layer
#
# Experiment 1 of the paper (section 8.1) learns the generative ConvNet
#
# $$p(\mathbf{I}; w) = \frac{1}{Z(w)} \exp\big[f(\mathbf{I}; w)\big]\, q(\mathbf{I}),
#   \qquad q = N(0, \sigma^2 \mathbf{1}),$$
#
# Eq. (3.4), from **a single texture image**, and then draws new images of the same texture
# from it. The scoring function $f(\mathbf{I}; w) = \sum_{k,x} [F^{(L)}_k * \mathbf{I}](x)$,
# Eq. (3.5), sums the top-layer responses over all positions $x$, so the model is
# *stationary*: it cares how often and how strongly each pattern occurs, not where. That is
# what lets one image act as many training examples.
#
# Learning is Algorithm 1 (lesson 8): $\tilde M$ persistent Langevin chains, Eq. (6.10),
# each advanced $L$ steps per iteration, then the ascent step
#
# $$w \leftarrow w + \eta\,\big(H^{\rm obs} - H^{\rm syn}\big), \qquad
#   H = \frac{1}{M}\sum_m \frac{\partial f(\mathbf{I}_m; w)}{\partial w},$$
#
# Eqs. (7.2)-(7.4). What is new in this lesson is how the network is built: the paper
# **grows the layers sequentially**. "Starting from the first layer, we sequentially add the
# layers one by one. Each time we learn the model and generate the synthesized images using
# Algorithm 1", refining the lower layers by back-propagation while the new one learns
# (section 8). Each *stage* runs $T$ learning iterations; at stage $s$ the network has
# layers $1..s$, and the synthesis chains carry over from one stage to the next.
#
# refimpl does this in `refimpl.learning.Trainer`: `step()` is one iteration of Algorithm
# 1, and after every `iterations_per_layer` iterations it calls `enter_stage`, which
# builds the next stage's network with `refimpl.learning.algorithm.grow` (your assignment).

# %%
import time

import numpy as np
from _lesson import pick, save

from refimpl import plotting
from refimpl.conv import conv2d_adjoint
from refimpl.learning import Trainer, runs
from refimpl.learning.presets import PRESETS, preset_config

# %% [markdown]
# ## The setting: a small version of the `texture` preset
#
# The paper learns 224 x 224 images with 100 15 x 15 filters at stride 3, then 64 5 x 5
# and 30 3 x 3 filters, $\tilde M = 16$ chains, $L = 10$, $T = 700$ per layer, $\sigma^2 = 1$,
# intensities in [0, 255] minus the mean (preset `texture-paper`, a GPU job). refimpl's CPU
# preset `texture` keeps the recipe and shrinks the sizes: a 64 x 64 crop of the bundled
# brick (block-averaged x2), layers of 32 7x7 stride 2 / 32 5x5 / 16 3x3 filters, all
# zero-padded, $T = 100$ per layer, float32: about 50 s on 2 cores.
#
# To run as a script in about a minute, this lesson shrinks it once more: a **40 x 40**
# centre crop, **6 chains** and **$T = 60$** per layer (same layers, same step size and
# learning rates). The samples are rougher than the preset's; for the real run use
#
#     python -m refimpl synthesize                     # the texture preset, ~50 s
#     python -m refimpl synthesize --image grass       # another bundled texture
#     python -m refimpl synthesize --preset texture-paper --backend cupy   # section 8's sizes

# %%
print("texture preset:", PRESETS["texture"]["description"])
T = pick(60, 6)
config = preset_config("texture", size=pick(40, 24), chains=pick(6, 2), iterations_per_layer=T)
data, mean, raw = runs.prepare(config)  # (1, 1, 40, 40): the crop minus its mean
print(
    f"this lesson: {raw.shape[-1]}x{raw.shape[-1]} crop, {config.chains} chains, L = {config.langevin_steps}, "
    f"T = {T} per layer, eps = {config.step_size}, sigma = {config.sigma}"
)
print("layers (out_channels, kernel, stride, pad, relu):", [tuple(s) for s in config.spec])
print("learning rates:", config.learning_rates(), " initial weight std:", config.init_std)

# %% [markdown]
# ## Growing: what `grow` builds
#
# A fresh `Trainer` is at stage 1: only the first layer of `spec`. Entering stage $s$
# (i) **keeps** the conv layers of stage $s-1$ as they are, trained weights included (the
# very same `ConvLayer` objects); (ii) **adds** the new layer(s), with weights drawn
# $N(0, \text{init\_std}^2)$ and zero bias from a generator seeded by (seed, layer, stage);
# (iii) resets the optimizer state of the new layers; (iv) checks that the image is large
# enough for the grown network, so that a bad architecture fails now, not mid-run.
# (Experiment 2's fully connected top filter, re-created at every stage, is lesson 10.)

# %%
trainer = Trainer(config, data)
print("stage", trainer.stage, "->", trainer.net.spec())
print("feature maps per layer:", trainer.net.feature_shapes(data.shape))

# %% [markdown]
# ## Why padding
#
# The paper does not pad. On a small image that matters: a pixel near the border lies in
# fewer filter windows than one in the middle, so fewer terms of $f$ involve it. On a
# piece, the Langevin chains hover around $\sigma^2 \mathbf{B}$, Theorem 1, and
# $\mathbf{B} = \partial f / \partial \mathbf{I}$ is a sum over the windows that contain the
# pixel: where there are few, $\mathbf{B}$ is small and the samples fade towards the
# reference's mean, 0 (mid-grey after adding the image mean back). The count of windows is
# the adjoint of filtering applied to ones (lesson 1): `conv2d_adjoint` of an all-ones
# output with an all-ones 7 x 7 kernel at stride 2.

# %%
size = raw.shape[-1]
coverage = {}
for pad in (0, 3):
    out = (size + 2 * pad - 7) // 2 + 1
    coverage[pad] = conv2d_adjoint(
        np.ones((1, 1, out, out)), np.ones((1, 1, 7, 7)), (size, size), stride=2, pad=pad
    )[0]
    c = coverage[pad][0]
    print(
        f"pad {pad}: a corner pixel lies in {c[0, 0]:.0f} layer-1 windows, an edge pixel in "
        f"{c[0, size // 2]:.0f}, a central one in {c[size // 2, size // 2]:.0f}"
    )
fig = plotting.image_grid(
    [coverage[0], coverage[3]],
    ["layer-1 windows per pixel, no padding", "layer-1 windows per pixel, pad 3"],
    columns=2,
    scale=3.2,
)
save(fig, __file__, "padding_coverage")

# %% [markdown]
# Without padding the corners are seen by one window and the outer three rows by a handful;
# padding evens this out (the deeper layers, padded too, spread it further). The README
# records the effect on samples: without padding the border pixels fade to grey.
#
# ## Stage 1: one layer
#
# We now run Algorithm 1. After $T$ iterations `step()` enters stage 2 by itself, so we stop
# exactly at the end of each stage and keep 4 of the chains as a snapshot.

# %%
start = time.perf_counter()
snapshots = []


def run_stage():
    stage = trainer.stage
    trainer.run(iterations=T)
    snapshots.append(np.clip(runs.to_raw(config, trainer.chains, mean), 0, 255)[:4])
    last = trainer.history["mismatch"][-1]
    print(
        f"stage {stage} done after {trainer.iteration} iterations ({time.perf_counter() - start:.0f} s); "
        f"moment mismatch per layer {np.round(last, 3)}; now at stage {trainer.stage}"
    )


run_stage()

# %% [markdown]
# ## Entering stage 2, and why a grown layer starts at the He scale
#
# `step()` has just called `enter_stage(2)`. Layer 1 is the trained one (its weights moved
# away from their 0.01 start); layer 2 is new:

# %%
for l, layer in enumerate(trainer.net.layers, start=1):
    fan_in = layer.in_channels * layer.kernel_size**2
    print(
        f"layer {l}: {layer}  weight std {layer.weight.std():.4f}  (He scale sqrt(2/fan_in) = "
        f"{np.sqrt(2 / fan_in):.4f})"
    )

# %% [markdown]
# Algorithm 1 starts at $w = 0$. With ReLU that cannot work: every response is
# $z = 0$, every unit sits on its kink with $\delta = 1(z > 0) = 0$, Eq. (6.4), so
# $f \equiv 0$ and every gradient (7.3)-(7.4) vanishes, for the new layer *and*, through
# back-propagation, for all layers below it. So learning starts from random weights. Their
# scale matters for a layer grown on top of trained ones: its input $F^{(l-1)} * \mathbf{I}$
# has the size of intensities in [0, 255] (responses in the tens or hundreds), and the
# He scale $\sqrt{2 / \text{fan\_in}}$ makes the new responses about as large as their input
# (the factor 2 compensates for the ReLU zeroing half of them). At the first layer's 0.01
# they are several times smaller, while the first updates are not: they are driven by the
# large input, so they are large *relative to the weights* and the random start is
# overwritten by the first, noisiest moment mismatches.
#
# We can watch this: continue the run three times from this moment, with the new layer
# drawn at the He scale, at 0.01, and at 0 (a checkpoint, `trainer.state()`, with a changed
# `init_std`, re-entering stage 2), and follow it for a few iterations.

# %%
arrays, meta = trainer.state()
demo_steps = pick(8, 2)
for std in ("he", 0.01, 0.0):
    trial_meta = dict(meta, config=dict(meta["config"], init_std=[0.01, std, std]))
    trial = Trainer.from_state(arrays, trial_meta, data)
    trial.enter_stage(2)  # re-create layer 2 with this init_std
    fwd = trial.net.forward(trial.data)
    x_rms, z_rms = (
        np.sqrt((fwd.inputs[1] ** 2).mean()),
        np.sqrt((fwd.pre_activations[1] ** 2).mean()),
    )
    w0 = trial.net.layers[1].weight.copy()
    moves = []
    for _ in range(demo_steps):
        record = trial.step()
        moves.append(
            np.linalg.norm(trial.net.layers[1].weight - w0) / max(np.linalg.norm(w0), 1e-300)
        )
    active = trial.net.activation_pattern(trial.data)[1].mean()
    print(
        f"init {std!s:4s}: input rms {x_rms:6.1f}, new responses rms {z_rms:6.1f}; weights moved "
        f"{moves[0]:.1%} after 1 step, {moves[-1]:.1%} after {demo_steps}; layer-2 units on: {active:.0%}; "
        f"mismatch {np.round(record['mismatch'], 3)}"
    )

# %% [markdown]
# At the He scale the new responses match their input and the first step changes the
# weights by about 1%: learning refines the random start. At 0.01 the responses are several
# times smaller and the first step alone changes the weights by ~10-20%; within a few steps
# the start is gone and nearly every unit is on (the layer is almost linear, its ReLU wasted).
# In the README's full-size runs the same oversized first updates switched units off for
# good. At 0 nothing learns at all: mismatch exactly 0 for *every* layer, $f = 0$. This is
# why the presets use `init_std = [0.01, "he", "he"]`.
#
# ## Stages 2 and 3
#
# Back to the real run: two more stages.

# %%
run_stage()
print("stage", trainer.stage, "->", trainer.net.spec())
run_stage()
print(
    f"trained {trainer.iteration} iterations in {time.perf_counter() - start:.0f} s; final network:"
)
print(trainer.net)

# %% [markdown]
# ## Samples after each stage
#
# The training image, then 4 of the chains at the end of each stage (intensities back in
# [0, 255]: the mean added back, then clipped).

# %%
images = [raw[0], None, None, None] + [s for snap in snapshots for s in snap]
titles = ["training image", "", "", ""] + [
    f"stage {st + 1} ({st + 1} layer{'s' * (st > 0)}), chain {i}"
    for st in range(len(snapshots))
    for i in range(4)
]
fig = plotting.image_grid(images, titles, columns=4, scale=2.4)
save(fig, __file__, "samples_per_stage")

# %% [markdown]
# One layer of 7 x 7 filters sees a few pixels of mortar at a time: its samples get the
# vertical joints and their spacing (the dominant, most frequent pattern) but not the
# bricks. Each grown layer sees a larger window: with three layers (receptive field
# 7 + 2·4 + 2·2 = 19 pixels) the short horizontal joints between the vertical ones begin to
# appear. With the full preset (larger crop, 16 chains, $T = 100$) they become regular
# courses of bricks.
#
# ## Learning curves
#
# `runs.curves_figure` draws what `Trainer.step` records: the moment mismatch
# $\|H^{\rm obs} - H^{\rm syn}\| / \|H^{\rm obs}\|$ per layer, Eqs. (7.3)-(7.4) (at the
# maximum-likelihood estimate it is zero: the samples fire each filter as often, and on the
# same average patches, as the data); the mean energies $U = -f + \|\mathbf{I}\|^2/(2\sigma^2)$
# of data and samples; and the reconstruction error $\|\mathbf{I} - \sigma^2 \mathbf{B}\| /
# \|\mathbf{I}\|$ of the training image (lesson 11). Dotted lines mark the stages.

# %%
fig = runs.curves_figure(trainer.history, plotting)
save(fig, __file__, "learning_curves")

# %% [markdown]
# A new curve begins at each stage: the new layer's mismatch starts high (its random filters
# see samples unlike the data) and falls, while the lower layers' mismatch jumps at the
# stage boundary, because the new layer changes $f$ and the chains must catch up, then
# falls again. The energies jump too: each new layer adds its own terms to $f$. With a few
# dozen iterations per stage, the mismatch is still noisy at the end; the chains are few
# and only $L = 10$ Langevin steps apart.
#
# ## Summary
#
# * Experiment 1 learns a stationary model, Eq. (3.5), from one texture image by
#   Algorithm 1, and samples it by Langevin dynamics, Eq. (6.10).
# * The layers are grown one at a time (section 8): each stage keeps the trained layers,
#   adds a new one on top, and learns all of them (the lower ones refined by backprop).
# * A grown layer starts at the He scale $\sqrt{2/\text{fan\_in}}$: its responses keep the
#   scale of their input, so the first updates refine it instead of overwriting it; at
#   $w = 0$, Algorithm 1's literal start, every ReLU sits on its kink and nothing learns.
# * Zero padding gives border pixels as many filter windows as central ones, so they do not
#   fade to grey in the samples. Those windows still see zeros beyond the border, so a
#   faint lower-contrast frame remains; circular padding (`padding_mode="circular"`, the
#   image as one period of a periodic texture) has no border at all.
# * This lesson's 40 x 40 run is a sketch; `python -m refimpl synthesize` runs the full CPU
#   preset, `--preset texture-paper` the paper's sizes.
#
# ## Exercises
#
# 1. Rerun with `image="grass"` or `"gravel"` in `preset_config`. Which textures does one
#    layer already capture?
# 2. Remove the padding (`spec=[(32, 7, 2, 0), (32, 5, 1, 0), (16, 3, 1, 0)]`) and compare
#    the border of the samples. Compute the full network's window counts per pixel (hint:
#    `trainer.net.grad_input` of a network with all-ones weights and linear layers).
# 3. Pad circularly: `spec=[(32, 7, 2, 3, "relu", "circular"), (32, 5, 1, 2, "relu",
#    "circular"), (16, 3, 1, 1, "relu", "circular")]`. Is the frame gone? Check that
#    `trainer.net.score` gives the same value (to rounding) for a sample and one rolled by 2
#    pixels (`np.roll(x, 2, axis=-1)`), and not by 1: why? The README's quality section
#    measures what circular padding costs on gravel.
# 4. Set `refine_lower=False` (only the newest layer learns; section 8 says both strategies
#    work). How do the mismatch curves of the lower layers change?
# 5. Why does the first layer not need the He scale? (Hint: what are its input and its
#    learning rate, and what happens at its first updates?)
# 6. **Assignment:** `python -m lessons.assign 9 --out assignment9`: write
#    `refimpl.learning.algorithm.grow` from its docstring and this lesson,
#    then run `python grade.py` in that folder.
