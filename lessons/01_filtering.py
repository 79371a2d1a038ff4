# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 1. Filtering from scratch
#
# A ConvNet is built from one operation: **filtering** (also called convolution). Xie et al.,
# Eq. (2.1), defines a layer as
#
# $$[F_k^{(l)} * \mathbf{I}](x) = h\Big(\sum_{i=1}^{N_{l-1}} \sum_{y \in \mathcal{S}_l}
#     w^{(l,k)}_{i,y}\, [F_i^{(l-1)} * \mathbf{I}](x+y) + b_{l,k}\Big).$$
#
# Strip away the non-linearity $h$ and what is left is a *cross-correlation*: filter $k$ is
# a small 3-D array of weights $w^{(l,k)}$ that slides over the input, and at each position
# $x$ we take the dot product with the patch $x + \mathcal{S}_l$ beneath it. Two
# practical knobs are the **stride** $s$ (sub-sampling: only every $s$-th position is kept)
# and **zero padding** $p$ (the input is surrounded by $p$ rings of zeros, so that the
# filter can also sit at the border). The output of a $k \times k$ filter on an
# $H \times W$ input has
#
# $$H_{out} = \Big\lfloor \frac{H + 2p - k}{s} \Big\rfloor + 1$$
#
# rows. In this lesson we meet refimpl's two implementations: loops written to be read
# (`refimpl.conv.naive`, your assignment) and a fast version built around one matrix
# multiply (`refimpl.conv.fast`), and we check that they agree.

# %%
import time

import numpy as np
from _lesson import pick, save

from refimpl import plotting
from refimpl.conv import conv2d, conv2d_adjoint, conv_geometry, conv_output_size, fast, naive
from refimpl.data import load_texture

# %% [markdown]
# ## A filter by hand
#
# A 2 x 2 filter on a 3 x 3 image has a 2 x 2 output. Each output is the dot product of the
# filter with the patch whose top-left corner is that output's position: cross-correlation,
# so the filter is *not* flipped (a "true" convolution would flip it).

# %%
x = np.arange(9.0).reshape(1, 1, 3, 3)
w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
print("image:\n", x[0, 0])
print("filter:\n", w[0, 0])
print("output (cross-correlation):\n", conv2d(x, w, impl="naive")[0, 0])
print("y[0, 0] = 1*0 + 2*1 + 3*3 + 4*4 =", 1 * 0 + 2 * 1 + 3 * 3 + 4 * 4)

# %% [markdown]
# ## Stride and padding
#
# The output-size formula in action, for the paper's first layer (224 x 224 images, 15 x 15
# filters with sub-sampling 3) and for a padded layer that keeps the size:

# %%
for size, k, s, p in [(224, 15, 3, 0), (70, 5, 1, 0), (64, 7, 2, 3), (64, 5, 1, 2)]:
    print(
        f"H = {size:3d}, k = {k:2d}, stride {s}, pad {p}: H_out = {conv_output_size(size, k, s, p)}"
    )

# %% [markdown]
# ## Filters on a real image
#
# Derivative filters respond to edges; a Gabor-like filter to stripes of one orientation.
# We filter the bundled brick texture (block-averaged to 128 x 128) with four filters at
# stride 1 and padding 1, and once more at stride 2, which halves the output.

# %%
image = load_texture("brick", factor=4)[None]  # (1, 1, 128, 128) in [0, 255]
image = image - image.mean()
bank = (
    np.array(
        [
            [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],  # horizontal derivative (vertical edges)
            [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],  # vertical derivative (horizontal edges)
            [[0, 1, 0], [1, -4, 1], [0, 1, 0]],  # Laplacian (spots, lines)
            [[1, 1, 1], [1, 1, 1], [1, 1, 1]],  # box blur
        ],
        dtype=float,
    )[:, None]
    / 4.0
)
responses = conv2d(image, bank, stride=1, pad=1)
subsampled = conv2d(image, bank, stride=2, pad=1)
print("responses", responses.shape, "subsampled", subsampled.shape)
fig = plotting.image_grid(
    [image[0]] + [r[None] for r in responses[0]] + [subsampled[0, 0][None]],
    ["image", "d/dx", "d/dy", "Laplacian", "blur", "d/dx, stride 2"],
    columns=6,
    signed=True,
)
save(fig, __file__, "filter_responses")

# %% [markdown]
# ## Naive loops versus the fast version
#
# `refimpl.conv.naive.forward` is Eq. (2.1) transcribed: a loop over images, filters and
# output positions, each a sum over the patch. `refimpl.conv.fast.forward` gives the same
# numbers, but lays the padded input out so that every kernel tap is a contiguous slice
# and the whole sum becomes one matrix multiply. They agree to rounding error:

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 20, 20))
w = rng.standard_normal((4, 3, 5, 5))
b = rng.standard_normal(4)
g = conv_geometry(x.shape, w.shape, 2, 1)
slow, quick = naive.forward(g, x, w, b), fast.forward(g, x, w, b)
print("max |naive - fast| / max |fast| =", np.abs(slow - quick).max() / np.abs(quick).max())

# %% [markdown]
# How much faster? On a layer a little closer to the paper's sizes the loop version is
# hopeless, which is why it exists only to be read (and checked against):

# %%
x = rng.standard_normal((pick(4, 1), 16, pick(32, 16), pick(32, 16)))
w = rng.standard_normal((16, 16, 3, 3))
g = conv_geometry(x.shape, w.shape, 1, 1)
timings = {}
for name, kernel in (("naive", naive.forward), ("fast", fast.forward)):
    start = time.perf_counter()
    kernel(g, x, w)
    timings[name] = time.perf_counter() - start
    print(
        f"{name:5s}: {timings[name] * 1e3:8.1f} ms ({g.flops / timings[name] / 1e9:6.2f} GFLOP/s)"
    )
print(f"speed-up {timings['naive'] / timings['fast']:.0f}x")

# %% [markdown]
# ## The adjoint: filtering backwards
#
# Backprop (lesson 3) and the top-down pass of the generative ConvNet (lesson 2, Eq. (6.7))
# run a filter *backwards*: every output value is spread back over the patch it came from.
# That is the **adjoint** (transposed convolution) $A^\top$, defined by
# $\langle A x, y \rangle = \langle x, A^\top y \rangle$ for all $x$, $y$ — which we can
# check numerically:

# %%
x = rng.standard_normal((1, 3, 11, 11))
w = rng.standard_normal((4, 3, 3, 3))
y = rng.standard_normal(conv2d(x, w, stride=2, pad=1).shape)
lhs = float((conv2d(x, w, stride=2, pad=1) * y).sum())
rhs = float((x * conv2d_adjoint(y, w, (11, 11), stride=2, pad=1)).sum())
print(
    f"<A x, y> = {lhs:.12f}\n<x, A^T y> = {rhs:.12f}\nrelative gap {abs(lhs - rhs) / abs(lhs):.1e}"
)

# %% [markdown]
# ## Summary
#
# * Filtering, Eq. (2.1) without $h$, is a cross-correlation: slide, multiply, sum.
# * Stride sub-samples the output, padding lets filters reach the border;
#   $H_{out} = \lfloor (H + 2p - k)/s \rfloor + 1$.
# * refimpl keeps a readable loop version and a fast matrix-multiply version, and tests that
#   they agree to 1e-12.
# * The adjoint spreads outputs back over their patches; it is the gradient of filtering
#   with respect to its input, and it will be the top-down pass of lesson 2.
#
# ## Exercises
#
# 1. Work out by hand the output of the filter `[[0, 1], [1, 0]]` on the 3 x 3 image above,
#    then check it with `conv2d`. What changes if you use a true convolution (flip the filter)?
# 2. With stride 3 and no padding, which rows of a 224-row input does the paper's first layer
#    never look at? (Hint: $H_{out} = 70$.)
# 3. Show that the gradient of $\langle \mathrm{conv}(x, w), y\rangle$ with respect to $w$ is
#    `conv2d_weight_grad(x, y, k)`, and check it with finite differences.
# 4. **Assignment:** `python -m lessons.assign 1 --out assignment1` — write
#    `refimpl.conv.naive.forward`, `adjoint` and `weight_grad` from their docstrings, then run
#    `python grade.py` in that folder.
