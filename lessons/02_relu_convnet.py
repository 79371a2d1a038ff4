# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 2. The ReLU ConvNet and its activation variables
#
# Lesson 1 built one filter. A ConvNet stacks them, each followed by the rectifier
# $h(r) = \max(0, r)$. Xie et al. write layer $l$ in vector notation, Eq. (6.1):
#
# $$[F_k^{(l)} * \mathbf{I}](x) = h\big(\langle \mathbf{w}^{(l)}_{k,x},\, \mathbf{F}^{(l-1)} * \mathbf{I}\rangle + b_{l,k}\big),$$
#
# where $\mathbf{F}^{(l-1)} * \mathbf{I}$ is the 3-D stack of all feature maps of the layer
# below and $\mathbf{w}^{(l)}_{k,x}$ is filter $k$ *placed at position $x$*: a copy of the
# same small array of weights, translated, Eqs. (6.2)-(6.3). The inner product is exactly the
# lesson-1 cross-correlation.
#
# The rectifier either passes its input or blocks it. Xie et al. name that choice the
# **binary activation variable**, Eq. (6.4),
#
# $$\delta^{(l)}_{k,x}(\mathbf{I}; w) = 1\big(\langle \mathbf{w}^{(l)}_{k,x}, \mathbf{F}^{(l-1)} * \mathbf{I}\rangle + b_{l,k} > 0\big),$$
#
# so that the bottom-up pass becomes a product, Eq. (6.5):
#
# $$[F_k^{(l)} * \mathbf{I}](x) = \delta^{(l)}_{k,x}(\mathbf{I}; w)\,\big(\langle \mathbf{w}^{(l)}_{k,x}, \mathbf{F}^{(l-1)} * \mathbf{I}\rangle + b_{l,k}\big).$$
#
# The generative ConvNet scores an image by summing the top layer, Eq. (3.5):
# $f(\mathbf{I}; w) = \sum_{k}\sum_{x} [F^{(L)}_k * \mathbf{I}](x)$. This lesson shows that
# once the activation pattern $\delta = (\delta^{(l)}_{k,x}, \forall k, x, l)$ is fixed,
# everything is linear: $f$ is **piecewise linear** in the image, Eq. (6.8), and the linear
# function of each piece is found by running the network *backwards*.

# %%
import numpy as np
from _lesson import pick, save

from refimpl import ConvNet, basis_functions, piece_from_basis, plotting
from refimpl.convnet.pieces import image_in_same_piece, line_through_pieces
from refimpl.data import centre, load_texture

# %% [markdown]
# ## The bottom-up pass
#
# A random three-layer network, the `python -m refimpl pieces` architecture: 8 filters of
# 5 x 5 with stride 2 and padding 2, then 8 of 3 x 3, then 4 of 3 x 3. The input is a
# 32 x 32 crop of the brick texture (block-averaged by 8), intensities in [0, 255] minus the
# mean, as in section 8. `ConvNet.forward` returns, per layer, the input
# $\mathbf{F}^{(l-1)} * \mathbf{I}$, the pre-activation
# $z^{(l)} = \langle \mathbf{w}^{(l)}_{k,x}, \mathbf{F}^{(l-1)} * \mathbf{I}\rangle + b_{l,k}$
# and the output $\mathbf{F}^{(l)} * \mathbf{I}$; `activation_pattern` returns the
# $\delta^{(l)}$.

# %%
image, _ = centre(load_texture("brick", size=32, factor=8)[None])  # (1, 1, 32, 32)
net = ConvNet.random(1, [(8, 5, 2, 2), (8, 3, 1, 1), (4, 3, 1, 0)], seed=0)
fwd = net.forward(image)
pattern = net.activation_pattern(image)
for l, (z, x, delta) in enumerate(zip(fwd.pre_activations, fwd.outputs, pattern), start=1):
    print(
        f"layer {l}: feature maps {z.shape[1:]}, {delta.mean():5.1%} of the units on, "
        f"x = delta * z exactly (6.5): {np.array_equal(x, delta * z)}"
    )
print(f"f(I) = sum of the top layer (3.5) = {float(net.score(image)[0]):.4f}")

# %% [markdown]
# The activation variables are maps, one per filter and layer. The top row shows the image
# and four of the first-layer filters (random, so no structure yet). Each further row shows,
# for one layer, the pre-activation of filter 0 (red positive, blue negative) and the on/off
# maps $\delta^{(l)}_k$ of four filters (white = on). Even random filters respond to the
# bricks: vertical streaks along the mortar joints show in several maps.

# %%
fig, axes = plotting.figure(4, 5, figsize=(11, 9))
plotting.show_image(axes[0, 0], image[0], "image I")
for k in range(4):
    plotting.show_image(
        axes[0, k + 1], net.layers[0].weight[k], f"filter w^(1)_{k} (5x5)", signed=True
    )
for l, (z, delta) in enumerate(zip(fwd.pre_activations, pattern), start=1):
    plotting.show_image(axes[l, 0], z[0, :1], f"z^({l})_0 ({z.shape[2]}x{z.shape[3]})", signed=True)
    for k in range(4):
        axes[l, k + 1].imshow(delta[0, k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[l, k + 1].set_title(f"delta^({l})_{k}: {delta[0, k].mean():.0%} on", fontsize=9)
        axes[l, k + 1].set_xticks([])
        axes[l, k + 1].set_yticks([])
fig.tight_layout()
save(fig, __file__, "activation_maps")

# %% [markdown]
# ## Top-down: the piece's linear function
#
# Fix the pattern $\delta$. Write the score in terms of any layer,
# $f = \alpha_l + \langle \mathbf{B}^{(l)}, \mathbf{F}^{(l)} * \mathbf{I}\rangle$, Eq. (6.6),
# with $\mathbf{B}^{(L)} = 1$ and $\alpha_L = 0$. Substituting Eq. (6.5) for the layer
# gives the same form one layer down, with the **top-down deconvolution**, Eq. (6.7),
#
# $$\mathbf{B}^{(l-1)} = \sum_{k=1}^{N_l} \sum_{x \in \mathcal{D}_l} \mathbf{B}_k^{(l)}(x)\, \delta^{(l)}_{k,x}\, \mathbf{w}^{(l)}_{k,x},
# \qquad \alpha_{l-1} = \alpha_l + \sum_{k,x} \mathbf{B}_k^{(l)}(x)\, \delta^{(l)}_{k,x}\, b_{l,k}.$$
#
# In words: gate the coefficient map by the activation variables, then spread every
# coefficient back over its filter copy — the adjoint convolution of lesson 1. The filters
# that were *detectors* bottom-up are *basis functions* top-down. At the bottom,
# $\mathbf{B} = \mathbf{B}^{(0)}$ and $\alpha = \alpha_0$ give Eq. (6.8):
#
# $$f(\mathbf{I}; w) = \alpha_{w,\delta} + \langle \mathbf{I}, \mathbf{B}_{w,\delta}\rangle.$$
#
# `ConvNet.piece_from_pattern(pattern, image_shape)` runs this recursion. It takes the
# pattern only, no image: every image with that pattern shares $\alpha$ and $\mathbf{B}$.

# %%
alpha, B = net.piece_from_pattern(pattern, image.shape[1:])
f = float(net.score(image)[0])
print(f"f(I)             = {f:.10f}")
print(
    f"alpha + <I, B>   = {float(alpha[0]) + float((image * B).sum()):.10f}"
    f"   (alpha = {float(alpha[0]):.4f}, <I, B> = {float((image * B).sum()):.4f})"
)

# %% [markdown]
# **The pattern selects the piece.** Move the image a little (keeping its pattern — halving
# the step until it does, `image_in_same_piece`) and $\alpha$, $\mathbf{B}$ do not change.
# Flip the first-layer units of one corner instead and `piece_from_pattern` returns the linear function of
# a *different* piece: a perfectly good affine function, but not $f$ near this image.

# %%
rng = np.random.default_rng(1)
direction = rng.standard_normal(image.shape) * np.linalg.norm(image) / np.sqrt(image.size)
moved, step = image_in_same_piece(net, image, 0.01 * direction)
alpha_m, B_m = net.piece_from_pattern(net.activation_pattern(moved), image.shape[1:])
print(
    f"moved by {step * 0.01 * np.linalg.norm(direction):.2f} (|I| = {np.linalg.norm(image):.0f}): "
    f"same alpha {np.array_equal(alpha_m, alpha)}, same B {np.array_equal(B_m, B)}"
)
flipped = [d.copy() for d in pattern]
flipped[0][0, :, :4, :4] = ~flipped[0][0, :, :4, :4]  # a corner of layer 1, every filter
alpha_f, B_f = net.piece_from_pattern(flipped, image.shape[1:])
print(
    f"flipped {int((flipped[0] != pattern[0]).sum())} units: alpha + <I, B> = "
    f"{float(alpha_f[0]) + float((image * B_f).sum()):.4f} vs f(I) = {f:.4f}"
)

# %% [markdown]
# What does $\mathbf{B}$ look like? It is an image: the gradient of $f$ (lesson 3), and by
# Theorem 1 the mean of the Gaussian that the generative model is on this piece (lesson 5).
# For a random network it is a patchwork of filter copies, gated by the pattern:

# %%
fig, axes = plotting.figure(1, 3, figsize=(10, 3.6))
plotting.show_image(axes[0], image[0], "image I")
plotting.show_image(axes[1], B[0], "B = B^(0) of I's piece (6.7)", signed=True)
plotting.show_image(axes[2], B_f[0] - B[0], "B(flipped pattern) - B", signed=True)
fig.tight_layout()
save(fig, __file__, "reconstruction")

# %% [markdown]
# ## Basis functions: the same piece, bottom-up
#
# Xie et al. offer a second view, Eqs. (6.12)-(6.14). On a piece every pre-activation is an
# affine function of the image,
# $z^{(l)}_{k,x} = a^{(l)}_{k,x} + \langle \mathbf{I}, \mathbf{b}^{(l)}_{k,x}\rangle$, with basis
# images composed bottom-up from those of the layer below, Eq. (6.13):
#
# $$\mathbf{b}^{(l)}_{k,x} = \sum_{i=1}^{N_{l-1}} \sum_{y \in \mathcal{S}_l} w^{(l,k)}_{i,y}\, \delta^{(l-1)}_{i,x+y}\, \mathbf{b}^{(l-1)}_{i,x+y},$$
#
# starting from delta functions (one per pixel). Then $\mathbf{B}$ is the sum of the active
# top-layer basis images, Eq. (6.14). `refimpl.basis_functions` computes them all
# (image-sized each, so for small images only); it shares no code with the top-down pass.

# %%
basis = basis_functions(net, image)
alpha_b, B_b = piece_from_basis(basis[-1], pattern[-1])
worst = max(
    float(np.abs(a + np.einsum("mkijchw,mchw->mkij", b, image) - z).max() / np.abs(z).max())
    for (a, b), z in zip(basis, fwd.pre_activations)
)
print(f"z = a + <I, b> at every layer (6.12): largest relative gap {worst:.1e}")
print(
    f"B from basis images (6.14) vs top-down (6.7): {np.abs(B_b - B).max() / np.abs(B).max():.1e}"
)
print(
    f"alpha from basis offsets vs recursion: {abs(float(alpha_b[0] - alpha[0])) / abs(float(alpha[0])):.1e}"
)

# %% [markdown]
# The basis images of one unit at the centre of each layer. A layer-1 basis image is the
# filter itself (5 x 5); a layer-2 one composes the layer-1 filters the unit sees, switched on
# or off by $\delta^{(1)}$ ("reconfigurable", an And-Or composition); layer 3 again, over a
# larger support.

# %%
tiles, titles = [], []
for l, (_, b) in enumerate(basis, start=1):
    n_l, h_l, w_l = b.shape[1:4]
    for k in range(4):
        tiles.append(b[0, k, h_l // 2, w_l // 2])
        titles.append(f"b^({l})_{k}, x = centre")
fig = plotting.image_grid(tiles, titles, columns=4, signed=True)
save(fig, __file__, "basis_images")

# %% [markdown]
# ## Walking through pieces
#
# The pieces $A(\delta; w) = \{\mathbf{I} : \delta(\mathbf{I}; w) = \delta\}$ are convex
# polyhedra: given the patterns below, each unit's on/off condition is a half-space. A
# straight line $\mathbf{I} + t\mathbf{d}$ therefore crosses each piece in one interval, and
# $f$ along it is a broken line: exactly linear, slope $\langle \mathbf{d}, \mathbf{B}\rangle$,
# between kinks where some unit switches. `line_through_pieces` samples the line, finds the
# pattern changes and checks the linearity segment by segment. We walk the same line with
# the full network and with its first one and two layers (each a ReLU ConvNet in its own
# right, scored by summing its top layer): more layers, more units, more kinks.

# %%
points = pick(2001, 401)
ts = np.linspace(-0.05, 0.05, points)
d = direction * np.linalg.norm(image) / np.linalg.norm(direction)  # |d| = |I|
walks = {}
for depth in (1, 2, 3):
    sub = ConvNet(net.layers[:depth])
    walks[depth] = line_through_pieces(sub, image, d, ts)
    w = walks[depth]
    print(
        f"{depth} layer(s): {w.pieces_crossed:4d} pieces crossed, "
        f"{w.points_tested} of {points} points in segments of 3+ points, "
        f"largest deviation from linearity {w.max_residual:.1e}"
    )

# %%
fig, axes = plotting.figure(1, 2, figsize=(12, 4), gridspec_kw=dict(width_ratios=[3, 1]))
line = walks[3]
axes[0].plot(line.ts, line.scores, color="black", lw=1)
for t in line.ts[line.kinks]:
    axes[0].axvline(t, color="tab:red", lw=0.3, alpha=0.5)
axes[0].set(
    xlabel="t",
    ylabel="f(I + t d)",
    title=f"3 layers: {line.pieces_crossed} linear pieces (kinks in red)",
)
inset = axes[0].inset_axes([0.05, 0.47, 0.4, 0.42])
window = slice(points // 2, points // 2 + points // 20)  # a short stretch of the line
ts_w, f_w = line.ts[window], line.scores[window]
chord = f_w[0] + (f_w[-1] - f_w[0]) * (ts_w - ts_w[0]) / (ts_w[-1] - ts_w[0])
inset.plot(ts_w, f_w - chord, ".-", color="black", lw=0.8, ms=2)
for t in ts_w[line.kinks[window]]:
    inset.axvline(t, color="tab:red", lw=0.6)
inset.set_xticks([])
inset.set_yticks([])
inset.set_title("zoom, chord subtracted: straight between kinks", fontsize=8)
axes[1].bar([1, 2, 3], [walks[k].pieces_crossed for k in (1, 2, 3)], color="tab:blue")
axes[1].set(xlabel="layers", ylabel="pieces crossed", title="same line, deeper nets")
axes[1].set_xticks([1, 2, 3])
fig.tight_layout()
save(fig, __file__, "line_through_pieces")

# %% [markdown]
# ## Summary
#
# * A ReLU ConvNet's units are switched on or off by the binary activation variables
#   $\delta^{(l)}_{k,x}$, Eq. (6.4); the bottom-up pass is $x^{(l)} = \delta^{(l)} z^{(l)}$, Eq. (6.5).
# * With the pattern fixed, the score is affine: $f = \alpha_{w,\delta} + \langle \mathbf{I},
#   \mathbf{B}_{w,\delta}\rangle$, Eq. (6.8). $\mathbf{B}$ comes from the top-down
#   deconvolution $\mathbf{B}^{(l-1)} = \mathrm{conv}^\top(\mathbf{B}^{(l)} \delta^{(l)})$,
#   Eq. (6.7), $\alpha$ from the matching bias recursion.
# * The same piece seen bottom-up: pre-activations are affine with basis images composed
#   layer by layer, Eqs. (6.12)-(6.13), and $\mathbf{B}$ is the sum of the active top ones, Eq. (6.14).
# * The pieces are convex; along a line $f$ is a broken line with finitely many kinks, more of
#   them the more units the network has.
#
# ## Exercises
#
# 1. For a one-layer network whose kernel covers the whole image (the prototype model of
#    section 5), write $\mathbf{B}_{w,\delta}$ and $\alpha_{w,\delta}$ by hand and check them
#    against `piece_from_pattern`.
# 2. Show that the pieces are convex: if $\mathbf{I}$ and $\mathbf{J}$ have the same pattern,
#    so has every point of the segment between them. (Hint: induction over the layers.)
# 3. The paper's network has no padding. Remove the padding of the first layer here: which
#    image pixels does the top-down $\mathbf{B}$ now never touch, and why?
# 4. Flip a single *top-layer* unit of the pattern: how does $\mathbf{B}$ change? Compare with
#    flipping a first-layer unit.
# 5. **Assignment:** `python -m lessons.assign 2 --out assignment2` — write `ConvNet.forward`,
#    `ConvNet.activation_pattern` and `ConvNet.piece_from_pattern` from their docstrings, then
#    run `python grade.py` in that folder.
