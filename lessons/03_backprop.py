# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 3. Backprop by hand
#
# Two derivatives of the score $f(\mathbf{I}; w)$ drive everything that follows. Learning,
# section 7, climbs the log-likelihood with gradient, Eq. (7.2),
#
# $$\frac{\partial L(w)}{\partial w} = \frac{1}{M}\sum_{m=1}^{M} \frac{\partial}{\partial w} f(\mathbf{I}_m; w)
#     - \mathrm{E}_w\Big[\frac{\partial}{\partial w} f(\mathbf{I}; w)\Big],$$
#
# and sampling by Langevin dynamics, Eq. (6.10), moves images along
# $\partial f / \partial \mathbf{I}$. Both come from the chain rule run backwards through the
# network: **back-propagation**. Write a layer as $z^{(l)} = \mathrm{conv}(x^{(l-1)}, w^{(l)}) + b^{(l)}$,
# $x^{(l)} = h(z^{(l)})$, and let $g^{(l)} = \partial f / \partial x^{(l)}$. Since $f$ sums the
# top layer, Eq. (3.5), $g^{(L)} = 1$, and for $l = L, \dots, 1$:
#
# $$\frac{\partial f}{\partial z^{(l)}} = g^{(l)} \odot h'(z^{(l)}) = g^{(l)} \odot \delta^{(l)}, \qquad
#   g^{(l-1)} = \mathrm{conv}^\top\Big(\frac{\partial f}{\partial z^{(l)}}, w^{(l)}\Big),$$
#
# $$\frac{\partial f}{\partial w^{(l,k)}_{i,y}} = \sum_{x} \frac{\partial f}{\partial z^{(l)}_{k,x}}\, x^{(l-1)}_i(x + y), \qquad
#   \frac{\partial f}{\partial b_{l,k}} = \sum_{x} \frac{\partial f}{\partial z^{(l)}_{k,x}}.$$
#
# The derivative of the ReLU is the activation variable $\delta^{(l)}$ of Eq. (6.4) (for a
# smooth $h$ it is $h'(z)$, Eq. (9.1)); $\mathrm{conv}^\top$ is the adjoint of lesson 1. At the
# top layer $\partial f / \partial z^{(L)} = \delta^{(L)}$, and the last two formulas become
# Eqs. (7.3)-(7.4): the weight gradient sums the patches of the layer below on which a unit
# is on, the bias gradient counts the units that are on. In refimpl all of this is one
# method, `ConvNet._backprop`, behind `grad_input`, `grad_params` and their `score_and_` forms.

# %%
import time

import numpy as np
from _lesson import pick, save

from refimpl import ConvLayer, ConvNet, plotting
from refimpl.conv import conv2d_bias_grad, conv2d_weight_grad
from refimpl.data import centre, load_texture
from refimpl.numerics import (
    FINITE_DIFFERENCE,
    FINITE_DIFFERENCE_STEP,
    UNIT_ROUNDOFF,
    relative_error,
)

# %% [markdown]
# ## Gradients of a small network
#
# The lesson-2 network on the 32 x 32 brick crop: `grad_input` is $\partial f / \partial \mathbf{I}$,
# an image; `grad_params` is a list of $(\partial f / \partial W_l, \partial f / \partial b_l)$
# shaped like the parameters (for a batch, the gradient of $\sum_m f(\mathbf{I}_m)$).

# %%
image, _ = centre(load_texture("brick", size=32, factor=8)[None])  # (1, 1, 32, 32)
net = ConvNet.random(1, [(8, 5, 2, 2), (8, 3, 1, 1), (4, 3, 1, 0)], seed=0)
f, grad_I = net.score_and_grad_input(image)
grads = net.grad_params(image)
print(f"f(I) = {float(f[0]):.4f}, df/dI {grad_I.shape}")
for l, (dW, db) in enumerate(grads, start=1):
    print(f"layer {l}: df/dW {dW.shape} (|dW| = {np.linalg.norm(dW):9.2f}), df/db {db.shape}")

# %% [markdown]
# ## Checking a gradient: central finite differences
#
# The standard check of any hand-written gradient perturbs one coordinate at a time,
#
# $$\frac{\partial f}{\partial \mathbf{I}_p} \approx \frac{f(\mathbf{I} + h\, e_p) - f(\mathbf{I} - h\, e_p)}{2h},$$
#
# which costs two evaluations of $f$ per coordinate (backprop costs about one). For a smooth
# $f$ the error has two parts: truncation, $O(h^2)$, and rounding, about
# $\epsilon_{\rm mach} |f| / h$. For our ReLU network $f$ is piecewise linear, Eq. (6.8), so
# there is *no* truncation error at all — until $h$ is large enough for the probes to cross
# a kink into another piece. We compare both kinds of network on a 16 x 16 crop (256
# coordinates, one batched call per $h$).


# %%
def central_differences(score, I, h):
    """df/dI of one image I (1, C, H, W) by central differences: one batched call of score."""
    D = I[0].size
    steps = h * np.eye(D).reshape((D,) + I.shape[1:])
    values = score(np.concatenate([I + steps, I - steps]))
    return ((values[:D] - values[D:]) / (2 * h)).reshape(I.shape)


small = image[:, :, 8:24, 8:24]
smooth = ConvNet(
    [ConvLayer(l.weight, l.bias, l.stride, l.pad, activation="softplus") for l in net.layers]
)
hs = 10.0 ** np.linspace(-8, 2, pick(21, 6))
errors = {
    name: [relative_error(central_differences(n.score, small, h), n.grad_input(small)) for h in hs]
    for name, n in (("ReLU", net), ("softplus", smooth))
}
for h, e_relu, e_soft in zip(hs, errors["ReLU"], errors["softplus"]):
    print(f"h = {h:7.0e}: relative error ReLU {e_relu:8.1e}, softplus {e_soft:8.1e}")
# the project's gradient-check tolerance and step (refimpl.numerics says why these values)
jump = next(
    (
        i
        for i, e in enumerate(errors["ReLU"])
        if e > FINITE_DIFFERENCE and hs[i] > FINITE_DIFFERENCE_STEP
    ),
    None,
)
if jump:
    print(
        f"ReLU: the probes first leave the piece between h = {hs[jump - 1]:.0e} and {hs[jump]:.0e}"
    )

# %%
fig, ax = plotting.figure(figsize=(7, 4.2))
ax.loglog(hs, errors["ReLU"], "o-", label="ReLU: f piecewise linear (6.8)")
ax.loglog(hs, errors["softplus"], "s-", label="softplus: f smooth (section 9)")
ax.loglog(
    hs,
    UNIT_ROUNDOFF["float64"]
    * abs(float(net.score(small)[0]))
    / hs
    / np.abs(net.grad_input(small)).mean(),
    ":",
    color="gray",
    label="rounding ~ eps |f| / (h |df/dI|)",
)
ax.set(
    xlabel="step h (image intensities are ~100)",
    ylabel="relative error of central differences",
    title="gradient check: backprop vs finite differences",
)
ax.legend(fontsize=8)
fig.tight_layout()
save(fig, __file__, "finite_difference_error")

# %% [markdown]
# The ReLU curve falls with $h$ like the rounding line — there is nothing else — until the
# probes start crossing kinks (printed above: with intensities of ~100, a change of a tenth
# of an intensity level switches some unit), and then jumps: a finite difference across a
# kink mixes the slopes of two pieces. The softplus curve turns back up much earlier, where
# the $O(h^2)$ curvature term takes over. The tests of refimpl use $h = 10^{-6}$ and
# additionally check that no probe changed the activation pattern.
#
# ## Parameter gradients and Eqs. (7.3)-(7.4)
#
# The same check works for the weights: perturb one weight in place, re-score. And for the
# top layer we can write Eqs. (7.3)-(7.4) directly: the top-layer gradient is the
# correlation of the top activation map $\delta^{(L)}$ with the layer below (what lesson 1's
# `conv2d_weight_grad` computes), and the bias gradient counts the active units.

# %%
rng = np.random.default_rng(0)
h = FINITE_DIFFERENCE_STEP
for l, (layer, (dW, _)) in enumerate(zip(net.layers, grads), start=1):
    flat = layer.weight.reshape(-1)  # a view: perturbing it perturbs the network
    worst = 0.0
    for p in rng.choice(flat.size, size=5, replace=False):
        saved = flat[p]
        flat[p] = saved + h
        up = float(net.score(image)[0])
        flat[p] = saved - h
        down = float(net.score(image)[0])
        flat[p] = saved
        worst = max(
            worst,  # (+ 1e-12: a weight whose gradient is exactly 0 reports its absolute error)
            abs((up - down) / (2 * h) - dW.reshape(-1)[p]) / (abs(dW.reshape(-1)[p]) + 1e-12),
        )
    print(
        f"layer {l}: 5 weights, largest relative error of df/dw vs finite differences {worst:.1e}"
    )

fwd = net.forward(image)
top = net.layers[-1]
delta_top = net.activation_pattern(image)[-1].astype(float)
dW_73 = conv2d_weight_grad(fwd.inputs[-1], delta_top, top.kernel_size, top.stride, top.pad)
db_74 = conv2d_bias_grad(delta_top)
print(
    f"top layer: |dW - Eq. (7.3)| = {np.abs(grads[-1][0] - dW_73).max():.1e}, "
    f"|db - Eq. (7.4)| = {np.abs(grads[-1][1] - db_74).max():.1e}; "
    f"db counts active units: {db_74.tolist()}"
)

# %% [markdown]
# ## Representation = back-propagation
#
# Now compare backprop's recursion with lesson 2's top-down deconvolution, Eq. (6.7),
# $\mathbf{B}^{(l-1)} = \mathrm{conv}^\top(\mathbf{B}^{(l)} \odot \delta^{(l)})$ with $\mathbf{B}^{(L)} = 1$.
# It *is* the recursion for $g^{(l-1)}$ above: $\mathbf{B}^{(l)} = \partial f / \partial x^{(l)}$
# at every layer. Section 9 states it as Eq. (9.2),
#
# $$\mathbf{B}_{w,\delta(\mathbf{I}; w)} = \frac{\partial}{\partial \mathbf{I}} f(\mathbf{I}; w),$$
#
# "the top-down generation is actually the back-propagation derivative of the bottom-up
# recognition, i.e., representation = back-propagation". For ReLU it is also clear without
# algebra: on a piece $f = \alpha + \langle \mathbf{I}, \mathbf{B}\rangle$, whose gradient is
# $\mathbf{B}$. For a smooth $h$, with the real-valued $\delta = h'(z)$ of Eq. (9.1), Eq. (9.2)
# still holds — but $f = \alpha + \langle \mathbf{I}, \mathbf{B}\rangle$ no longer does: there
# are no pieces.

# %%
_, B = net.linear_piece(image)  # top-down deconvolution, Eq. (6.7)
print(
    f"ReLU:     relative error of df/dI (backprop) vs B (deconvolution): {relative_error(grad_I, B):.1e}"
)
alpha_s, B_s = smooth.linear_piece(image)
print(
    f"softplus: relative error of df/dI vs B: {relative_error(smooth.grad_input(image), B_s):.1e}, "
    f"but f - (alpha + <I, B>) = {float(smooth.score(image)[0] - alpha_s[0] - (image * B_s).sum()):.2f}"
)

# %%
fig, axes = plotting.figure(1, 4, figsize=(13, 3.6))
plotting.show_image(axes[0], image[0], "image I")
plotting.show_image(axes[1], grad_I[0], "df/dI by backprop (9.2)", signed=True)
plotting.show_image(axes[2], B[0], "B by top-down deconvolution (6.7)", signed=True)
plotting.show_image(
    axes[3],
    grad_I[0] - B[0],
    f"backprop - deconvolution: max |.| = {np.abs(grad_I - B).max():.1e}",
    signed=True,
)
fig.tight_layout()
save(fig, __file__, "representation_is_backprop")

# %% [markdown]
# ## What it costs
#
# Backprop costs about one more pass of the same size as the forward pass (an adjoint
# convolution per layer, plus a weight-gradient correlation when $\partial f/\partial w$ is
# wanted); finite differences cost two full passes *per coordinate*.


# %%
def seconds(fn, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


repeats = pick(20, 3)
t_f = seconds(lambda: net.score(image), repeats)
t_b = seconds(lambda: net.score_and_grad_input(image), repeats)
t_p = seconds(lambda: net.score_and_grad_params(image), repeats)
t_fd = seconds(lambda: central_differences(net.score, image, FINITE_DIFFERENCE_STEP), 1)
print(
    f"forward {t_f * 1e3:.2f} ms | forward + df/dI {t_b * 1e3:.2f} ms | forward + df/dw {t_p * 1e3:.2f} ms | "
    f"finite differences for df/dI ({2 * image.size} forwards, batched) {t_fd * 1e3:.0f} ms"
)

# %% [markdown]
# ## Summary
#
# * Backprop runs the chain rule top-down: multiply by $h'(z) = \delta$ (Eqs. (6.4), (9.1)),
#   spread back with the adjoint convolution; weight and bias gradients are correlations and
#   sums of $\partial f / \partial z$, which at the top layer are Eqs. (7.3)-(7.4).
# * Central differences check it. For a ReLU network they are exact up to rounding until a
#   probe crosses a kink; for a smooth network they carry an $O(h^2)$ error.
# * The top-down deconvolution of Eq. (6.7) and backprop are the same recursion:
#   $\mathbf{B}_{w,\delta(\mathbf{I})} = \partial f / \partial \mathbf{I}$, Eq. (9.2) —
#   representation = back-propagation. For smooth $h$ Eq. (9.2) survives, Eq. (6.8) does not.
# * One backward pass costs about as much as a forward pass; finite differences cost two per
#   coordinate.
#
# ## Exercises
#
# 1. Derive $\partial f / \partial b_{l,k}$ for a layer *below* the top and check that
#    `grad_params` agrees with finite differences for it.
# 2. Max pooling: section 9 says its derivative is "arg-max retrieval". Write the backward
#    pass of a 2 x 2 max pooling and check it with central differences.
# 3. In the finite-difference plot, find the smallest $h$ at which some probe changes the
#    activation pattern (compare `activation_pattern` of the probes with that of the image).
#    How does it relate to the smallest $|z^{(l)}_{k,x}|$ divided by the size of the basis image?
# 4. Show that `grad_params` of a batch is the sum of the per-image gradients, and explain
#    why that makes $H^{\rm obs}$ in Algorithm 1 one backward pass.
# 5. **Assignment:** `python -m lessons.assign 3 --out assignment3` — write `ConvNet._backprop`
#    from its docstring, then run `python grade.py` in that folder.
