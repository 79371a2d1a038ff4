# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 12. General non-linearity and max pooling
#
# Everything so far rested on the rectifier $h(r) = \max(0, r)$. Its derivative is the
# binary activation variable of Eq. (6.4), $\delta = 1(r > 0)$, and because $h(r) = \delta\, r$
# the network is linear once $\delta$ is fixed: $f(\mathbf{I}; w) = \alpha_{w,\delta} +
# \langle \mathbf{I}, \mathbf{B}_{w,\delta}\rangle$ on each piece, Eq. (6.8), which made the
# model piecewise Gaussian (**Theorem 1**, Eq. (6.9)). Section 9 of Xie et al. asks what
# survives a general, smooth $h$. Define the activation variables as the derivative,
# Eq. (9.1),
#
# $$\delta^{(l)}_{k,x}(\mathbf{I}; w) = h'\big(\langle \mathbf{w}^{(l)}_{k,x}, \mathbf{F}^{(l-1)} * \mathbf{I}\rangle + b_{l,k}\big),$$
#
# now a number in $(0, 1)$ rather than a bit, and run the same top-down deconvolution
# Eq. (6.7) with these $\delta$. What comes out is still the gradient, Eq. (9.2):
#
# $$\mathbf{B}_{w,\delta(\mathbf{I};w)} = \frac{\partial}{\partial \mathbf{I}} f(\mathbf{I}; w).$$
#
# "Representation = back-propagation": the top-down generative pass *is* backprop with
# respect to the image. Langevin dynamics (6.10) and the auto-encoding modes of
# Proposition 2 (6.11) only need this gradient, so they survive. What does not survive is
# Theorem 1: $f$ is no longer piecewise linear, so $p$ is no longer piecewise Gaussian.
#
# The section ends with one sentence on **max pooling**: "whose derivative is arg-max
# retrieval in the top-down reconstruction". The arg-max of a pooling window is a discrete
# switch, like $\delta$, so a ReLU network with max pooling *stays* piecewise linear. This
# lesson checks both halves numerically, with the smooth non-linearity refimpl offers,
# softplus $h(r) = \log(1 + e^r)$.

# %%
import numpy as np
from _lesson import pick, save

from refimpl import ConvLayer, ConvNet, plotting
from refimpl.activations import ACTIVATIONS
from refimpl.conv import conv2d, conv2d_adjoint, max_pool2d, max_pool2d_adjoint
from refimpl.convnet.pieces import line_through_pieces
from refimpl.data import load_texture
from refimpl.models import GenerativeModel
from refimpl.numerics import EXACT, FINITE_DIFFERENCE_STEP
from refimpl.theorems import instances, smooth

# %% [markdown]
# ## Softplus: a smooth rectifier
#
# $$h(r) = \log(1 + e^r), \qquad h'(r) = \frac{1}{1 + e^{-r}} \quad\text{(the logistic sigmoid)}.$$
#
# Softplus lies above the ReLU and approaches it at both ends:
# $h(r) - \max(0, r) = \log(1 + e^{-|r|}) \in (0, \log 2]$. Written as it reads, it is a
# trap: $e^{1000}$ overflows, and `log1p(exp(1000))` is `inf` although the answer is 1000.
# refimpl's `softplus` and `sigmoid` (your assignment) must give the right numbers for
# every finite $r$. `ACTIVATIONS` holds each non-linearity with its derivative.

# %%
relu, softplus = ACTIVATIONS["relu"], ACTIVATIONS["softplus"]
r = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
with np.errstate(over="ignore"):
    written_as_it_reads = np.log1p(np.exp(r))
print("r               ", r)
print("softplus h(r)   ", softplus.h(np, r))
print("log1p(exp(r))   ", written_as_it_reads, "<- overflows at r = 1000")
print("h'(r) (sigmoid) ", softplus.h_prime(np, r))
print(
    "h(0) = log 2:",
    softplus.h(np, np.array(0.0)) == np.log(2.0),
    "  h'(0) = 1/2:",
    softplus.h_prime(np, np.array(0.0)) == 0.5,
)

grid = np.linspace(-5, 5, 401)
fig, axes = plotting.figure(1, 2, figsize=(10, 3.6))
axes[0].plot(grid, relu.h(np, grid), label="ReLU $\\max(0, r)$")
axes[0].plot(grid, softplus.h(np, grid), label="softplus $\\log(1 + e^r)$")
axes[0].set_title("$h(r)$", fontsize=10)
axes[1].plot(grid, relu.h_prime(np, grid).astype(float), label="ReLU: $1(r > 0)$, binary (6.4)")
axes[1].plot(grid, softplus.h_prime(np, grid), label="softplus: $1/(1 + e^{-r})$ (9.1)")
axes[1].set_title("activation variable $\\delta = h'(r)$", fontsize=10)
for ax in axes:
    ax.set_xlabel("$r$")
    ax.legend(fontsize=8)
fig.tight_layout()
save(fig, __file__, "activations")

# %% [markdown]
# ## Representation = back-propagation, Eq. (9.2)
#
# Two networks with the *same* filters and biases: a random three-layer ReLU ConvNet on
# $16 \times 16$ images (`instances.image_convnet`, the instances `python -m refimpl verify`
# checks), and its copy with every ReLU replaced by softplus.
# `ConvNet.linear_piece` runs the top-down deconvolution Eq. (6.7),
# $\mathbf{B}^{(l-1)} = \mathrm{conv}^\top(\mathbf{B}^{(l)} \cdot \delta^{(l)})$, with whatever
# $\delta = h'(z)$ the layers give it; `grad_input` is backprop. Under softplus the $\delta$
# are real numbers, and $\mathbf{B}$ is still $\partial f / \partial \mathbf{I}$:

# %%
rng = np.random.default_rng(0)
relu_model, shape = instances.image_convnet(rng, channels=1, size=16, depth=3, sig=1.0)
relu_net = relu_model.scoring
soft_net = ConvNet(
    [ConvLayer(l.weight, l.bias, l.stride, l.pad, activation="softplus") for l in relu_net.layers]
)
soft_model = GenerativeModel(soft_net, sigma=1.0)
print(relu_net)
images = rng.standard_normal((pick(8, 4),) + shape)
for name, net in (("ReLU", relu_net), ("softplus", soft_net)):
    delta = np.concatenate(
        [np.asarray(d, dtype=float).ravel() for d in net.activation_pattern(images)]
    )
    between = np.mean((delta > 0.01) & (delta < 0.99))
    print(
        f"{name:8s}: activation variables take {len(np.unique(delta))} distinct values; "
        f"{between:.0%} of them lie in (0.01, 0.99)"
    )

result = smooth.check_smooth_top_down_is_gradient(soft_model, images, np.random.default_rng(1))
print(
    f"softplus: |B - backprop| / |B| = {result.details['vs_backprop']:.1e}, "
    f"B vs central differences of f: {result.details['vs_finite_differences']:.1e} "
    f"-> {'PASS' if result.passed else 'FAIL'}"
)

# %% [markdown]
# The top-down pass gives the gradient to rounding, and central differences of $f$ agree to
# about $10^{-9}$ (their error is $O(h^2)$ for a smooth $f$, plus the rounding of $f$ divided
# by the step). So the Langevin step (6.10),
# $\mathbf{I} \leftarrow \mathbf{I} + \frac{\epsilon^2}{2}(\mathbf{B} - \mathbf{I}/\sigma^2) + \epsilon Z$,
# and GRADE (lesson 7) run unchanged on a softplus network, and a local mode still
# auto-encodes, $\hat{\mathbf{I}} = \sigma^2 \mathbf{B}_{w,\delta(\hat{\mathbf{I}})}$.
#
# But $\mathbf{B}$ is no longer the slope of a linear piece. With ReLU, $h(z) = h'(z)\, z$,
# which is why the bias recursion of `linear_piece` gives $f = \alpha + \langle\mathbf{I},
# \mathbf{B}\rangle$ exactly. Softplus has $h(z) \ne h'(z)\, z$ (at $z = 0$: $\log 2$ versus 0),
# and the same bookkeeping misses $f$:

# %%
for name, net in (("ReLU", relu_net), ("softplus", soft_net)):
    alpha, B = net.linear_piece(images)
    f = net.score(images)
    gap = np.abs(f - alpha - (images * B).sum(axis=(1, 2, 3))) / np.abs(f)
    print(f"{name:8s}: max |f - alpha - <I, B>| / |f| = {gap.max():.1e}")

# %% [markdown]
# ## Theorem 1 fails: curved, not piecewise flat
#
# Walk along a line $\mathbf{I}(t) = \mathbf{I}_0 + t\,\mathbf{d}$ and record three things:
#
# * $f(\mathbf{I}(t))$: straight segments joined at kinks for ReLU, a smooth curve for softplus;
# * the second differences $\Delta^2 f(t) = f(t + \Delta t) - 2 f(t) + f(t - \Delta t)$: zero to
#   rounding except at the kinks for ReLU (a straight line has none), and about
#   $f''(t)\, \Delta t^2$ everywhere for softplus;
# * Theorem 1's piece constant, Eq. (6.9),
#   $c(\mathbf{I}) = \log p(\mathbf{I}) + \|\mathbf{I} - \sigma^2\mathbf{B}\|^2 / 2\sigma^2$
#   (up to $\log Z$, `GenerativeModel.piece_log_constant`). For ReLU it depends on
#   $\mathbf{I}$ only through its piece, $c = \alpha + \sigma^2\|\mathbf{B}\|^2/2$, so it is a
#   staircase in $t$; that is the piecewise-Gaussian form. For softplus it drifts continuously.

# %%
I0 = images[:1]
d = rng.standard_normal(I0.shape)
d *= np.linalg.norm(I0) / np.linalg.norm(d)
ts = np.linspace(-0.05, 0.05, pick(1001, 401))
dt = ts[1] - ts[0]
line = I0 + ts[:, None, None, None] * d
walk = line_through_pieces(relu_net, I0, d, ts)
print(
    f"ReLU: {walk.pieces_crossed} pieces along the line, f linear on each to "
    f"{walk.max_residual:.1e} (relative)"
)
slices, second, constant = {}, {}, {}
for name, model in (("ReLU", relu_model), ("softplus", soft_model)):
    f = model.scoring.score(line)
    slices[name] = f
    second[name] = np.abs(f[2:] - 2 * f[1:-1] + f[:-2]) / np.abs(f).max()
    constant[name] = model.piece_log_constant(line)
inside_relu = ~(walk.kinks[1:-1] | walk.kinks[2:])  # t - dt, t, t + dt all in one piece
print(
    f"ReLU    : second differences inside pieces at most {second['ReLU'][inside_relu].max():.1e} "
    f"({inside_relu.sum()} points); next to the {int(walk.kinks.sum())} kinks up to "
    f"{second['ReLU'][~inside_relu].max():.1e}"
)
print(
    f"softplus: second differences below EXACT = {EXACT:.0e} at "
    f"{np.mean(second['softplus'] < EXACT):.1%} "
    f"of the points; median {np.median(second['softplus']):.1e} ~ f'' dt^2 with dt = {dt:.4f}"
)
steps = np.abs(np.diff(constant["ReLU"]))[~walk.kinks[1:]]
print(
    f"ReLU    : piece constant c changes by at most {steps.max():.1e} between neighbours "
    f"of one piece"
)
print(f"softplus: c varies by {np.ptp(constant['softplus']):.3f} along the line, smoothly")

# %% [markdown]
# refimpl's verifier makes the same point with a check that *must fail*:
# `check_theorem1_fails_for_smooth_h` moves each image a tiny step and compares $c$ before
# and after. Applied to the ReLU model too, it shows the contrast: a residual at rounding
# level means Theorem 1 holds there (so the "must fail" check does not pass).

# %%
for name, model in (("ReLU", relu_model), ("softplus", soft_model)):
    check = smooth.check_theorem1_fails_for_smooth_h(model, images, np.random.default_rng(2))
    print(
        f"{name:8s}: residual {check.residual:.1e}, must exceed {check.tolerance:.0e}: "
        f"{'yes, Theorem 1 is lost' if check.passed else 'no, Theorem 1 holds'}"
    )

# %% [markdown]
# ## Max pooling: another binary switch
#
# Max pooling keeps the largest value of each window,
# $y_{k}(i) = \max_{u \in \mathcal{W}(i)} x_k(u)$. Introduce a **switch** per window and
# position, $s_{k,i,u} = 1(u = \arg\max_{\mathcal{W}(i)} x_k)$, and it reads
#
# $$y_k(i) = \sum_{u \in \mathcal{W}(i)} s_{k,i,u}\; x_k(u),$$
#
# the same form as Eq. (6.5), $x = \delta\, z$: binary variables chosen bottom-up, times a
# linear function. `max_pool2d(x, size, stride)` returns the maxima *and* the switches, as
# the flat index $h W + w$ of each window's winner; ties go to the first maximum in
# row-major order. A $4 \times 4$ example with $2 \times 2$ windows:

# %%
x = np.array(
    [[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 7.0, 1.0], [0.0, 2.0, 6.0, 6.0], [9.0, 1.0, 3.0, 6.0]]
)[None, None]
y, argmax = max_pool2d(x, 2)
print("x:\n", x[0, 0])
print("max_pool2d:\n", y[0, 0])
print(
    "arg-max (flat index h * 4 + w):\n",
    argmax[0, 0],
    " -> the tie in the last window goes to 10 = (2, 2)",
)

# %% [markdown]
# Pooling is not linear, the sum of two maxima is not the maximum of the sum:

# %%
x2 = np.random.default_rng(3).standard_normal((1, 1, 4, 4))
print(
    "max_pool(x + x2) - max_pool(x) - max_pool(x2) =\n",
    (max_pool2d(x + x2, 2)[0] - max_pool2d(x, 2)[0] - max_pool2d(x2, 2)[0])[0, 0],
)

# %% [markdown]
# But with the switches held fixed it is: $P_a x = x[a]$, a selection of entries, linear in
# $x$. Its adjoint $P_a^\top$ puts each coefficient back where it was taken from, zeros
# elsewhere (summing when overlapping windows share a winner): that is **arg-max
# retrieval**, `max_pool2d_adjoint(dy, argmax, x.shape)`. The adjoint identity
# $\langle P_a x', y\rangle = \langle x', P_a^\top y\rangle$ holds for *every* $x'$, even one
# whose own maxima sit elsewhere, because it is a statement about the linear map $P_a$:

# %%
rng = np.random.default_rng(4)
x = rng.standard_normal((2, 3, 12, 12))
for size, stride in ((2, 2), (3, 2), (3, 1)):
    y, argmax = max_pool2d(x, size, stride)
    dy = rng.standard_normal(y.shape)
    other = rng.standard_normal(x.shape)  # any x', not just x
    P_a = lambda v, a=argmax: np.take_along_axis(
        v.reshape(2, 3, -1), a.reshape(2, 3, -1), axis=2
    ).reshape(a.shape)
    lhs, rhs = (
        float((P_a(other) * dy).sum()),
        float((other * max_pool2d_adjoint(dy, argmax, x.shape)).sum()),
    )
    # the gradient of <max_pool(x), dy> is the adjoint at x's own switches (no ties here):
    v, h = rng.standard_normal(x.shape), FINITE_DIFFERENCE_STEP
    numeric = (
        (max_pool2d(x + h * v, size, stride)[0] - max_pool2d(x - h * v, size, stride)[0]) * dy
    ).sum() / (2 * h)
    slope = float((max_pool2d_adjoint(dy, argmax, x.shape) * v).sum())
    print(
        f"{size}x{size} windows, stride {stride}: <P_a x', y> - <x', P_a^T y> = {lhs - rhs:+.1e}; "
        f"directional derivative {numeric:+.8f} vs <P_a^T y, v> {slope:+.8f}"
    )

# %% [markdown]
# ### Pooled feature maps
#
# The brick texture (block-averaged to 128 x 128), three filters as in lesson 1, a ReLU, then
# $4 \times 4$ max pooling with stride 4. The third column is arg-max retrieval applied to the
# pooled maps themselves, $P_a^\top y$: each pooled value put back at its winner, every other
# pixel zero; the fourth is the winners' pattern, the switch variables $s$ (white = won a
# window). Where the ReLU blocked a whole window, all sixteen values are 0, a tie, and the
# switch goes to the window's top-left pixel; it does not matter, since $\delta = 0$ there
# gates the coefficient that arg-max retrieval hands back.

# %%
image = load_texture("brick", factor=4)[None]
image = (image - image.mean()) / image.std()
bank = (
    np.array(
        [
            [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],  # vertical edges
            [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],  # horizontal edges
            [[0, 1, 0], [1, -4, 1], [0, 1, 0]],  # Laplacian
        ],
        dtype=float,
    )[:, None]
    / 4.0
)
responses = relu.h(np, conv2d(image, bank, pad=1))
pooled, winners = max_pool2d(responses, 4)
retrieved = max_pool2d_adjoint(pooled, winners, responses.shape)
switches = max_pool2d_adjoint(np.ones_like(pooled), winners, responses.shape)
print(
    f"responses {responses.shape[2:]} -> pooled {pooled.shape[2:]}; retrieval is exact at the winners: "
    f"{np.array_equal(retrieved[switches > 0], responses[switches > 0])}, and "
    f"{np.mean(switches > 0):.2%} of the pixels won a window (1 in 16)"
)
names = ["d/dx", "d/dy", "Laplacian"]
panels, titles = [], []
for k in range(3):
    panels += [
        responses[0, k][None],
        pooled[0, k][None],
        retrieved[0, k][None],
        (switches[0, k] > 0)[None],
    ]
    titles += [f"ReLU({names[k]})", "max-pooled 4x4", "arg-max retrieval $P_a^T y$", "switches s"]
fig = plotting.image_grid(panels, titles, columns=4, scale=2.4)
save(fig, __file__, "pooled_feature_maps")

# %% [markdown]
# ## ReLU + max pooling is still piecewise linear
#
# refimpl's `ConvNet` has no pooling layer, so we compose the pieces ourselves: a ReLU
# layer (5 filters of $3 \times 3$, padding 1), $2 \times 2$ max pooling, and a ReLU layer on
# top (4 filters of $3 \times 3$), each conv layer a one-layer refimpl `ConvNet`, with
# $f = $ the sum of the top layer as in Eq. (3.5). The bottom-up pass now computes two kinds
# of switches, the $\delta$ of both layers and the arg-max $a$ of the pooling. The top-down
# pass Eq. (6.7) goes through the pooling layer by arg-max retrieval:
#
# $$\mathbf{B}^{(\mathrm{pool})} = \text{top-down of the top layer},\quad
#   \mathbf{B}^{(1)} = P_a^\top \mathbf{B}^{(\mathrm{pool})},\quad
#   \mathbf{B} = \mathrm{conv}^\top\big(\mathbf{B}^{(1)} \cdot \delta^{(1)},\, w^{(1)}\big),$$
#
# and $\alpha$ collects $\sum_{k,x} \mathbf{B}^{(l)}_k(x)\, \delta^{(l)}_{k,x}\, b_{l,k}$ of both
# conv layers (pooling has no bias). On the piece where $\delta^{(1)}, a, \delta^{(2)}$ are all
# fixed, $f = \alpha + \langle \mathbf{I}, \mathbf{B}\rangle$ exactly, as Eq. (6.8).

# %%
bottom = ConvNet.random(1, [(5, 3, 1, 1)], seed=5)
top = ConvNet.random(5, [(4, 3)], seed=6)
w1, b1 = bottom.layers[0].weight, bottom.layers[0].bias


def pool_net(I):
    """Bottom-up: f, and the switches (delta1, arg-max, delta2) as one boolean/int key per image."""
    x1 = bottom.forward(I).outputs[0]
    p, a = max_pool2d(x1, 2)
    keys = [bottom.activation_pattern(I)[0], a, top.activation_pattern(p)[0]]
    return top.score(p), [k.reshape(len(I), -1) for k in keys]


def pool_net_piece(I):
    """Top-down: (alpha, B) of the piece of each image, arg-max retrieval through the pooling."""
    delta1 = bottom.activation_pattern(I)[0]
    x1 = bottom.forward(I).outputs[0]
    p, a = max_pool2d(x1, 2)
    alpha_top, B_pool = top.linear_piece(p)  # Eq. (6.7) above the pooling layer
    B1 = max_pool2d_adjoint(B_pool, a, x1.shape)  # arg-max retrieval
    gated = B1 * delta1
    alpha = alpha_top + gated.sum(axis=(2, 3)) @ b1
    B = conv2d_adjoint(gated, w1, I.shape[2:], stride=1, pad=1)  # Eq. (6.7), bottom layer
    return alpha, B


patch = load_texture("gravel", size=16, factor=8)[None]
I0 = (patch - patch.mean()) / patch.std()
f0, _ = pool_net(I0)
alpha, B = pool_net_piece(I0)
print(f"f(I) = {float(f0[0]):.10f}\nalpha + <I, B> = {float(alpha[0] + (I0 * B).sum()):.10f}")
v = rng.standard_normal(I0.shape)
h = FINITE_DIFFERENCE_STEP
numeric = float((pool_net(I0 + h * v)[0] - pool_net(I0 - h * v)[0])[0] / (2 * h))
print(
    f"directional derivative {numeric:.8f} vs <B, v> = {float((B * v).sum()):.8f}: B = df/dI, Eq. (9.2)"
)

# %% [markdown]
# Now the line test again, for this network: kinks where any switch flips, and we can say
# which kind flipped. Between kinks $f$ is exactly linear, so the second differences vanish.

# %%
d = rng.standard_normal(I0.shape)
d *= np.linalg.norm(I0) / np.linalg.norm(d)
ts_pool = np.linspace(-0.03, 0.03, pick(1001, 401))
points = I0 + ts_pool[:, None, None, None] * d
f_pool, keys = pool_net(points)
changed = [np.concatenate([[False], (k[1:] != k[:-1]).any(axis=1)]) for k in keys]
kinks = changed[0] | changed[1] | changed[2]
print(
    f"{int(kinks.sum())} kinks on {len(ts_pool)} points: {int(changed[0].sum())} flip a delta of layer 1, "
    f"{int(changed[1].sum())} move an arg-max, {int(changed[2].sum())} flip a delta of layer 2; "
    f"{int((changed[1] & ~changed[0] & ~changed[2]).sum())} move only an arg-max"
)
second_pool = np.abs(f_pool[2:] - 2 * f_pool[1:-1] + f_pool[:-2]) / np.abs(f_pool).max()
inside = ~(kinks[1:-1] | kinks[2:])  # t - dt, t, t + dt all in one piece
print(
    f"inside pieces: max relative second difference {second_pool[inside].max():.1e} "
    f"({inside.sum()} points); at kinks up to {second_pool[~inside].max():.1e}"
)
alphas, Bs = pool_net_piece(points)
residual = np.abs(f_pool - alphas - (points * Bs).sum(axis=(1, 2, 3))) / np.abs(f_pool).max()
print(f"f = alpha + <I, B> at every point of the line: max relative residual {residual.max():.1e}")
c_pool = f_pool - (points**2).sum(axis=(1, 2, 3)) / 2 + ((points - Bs) ** 2).sum(axis=(1, 2, 3)) / 2

fig, axes = plotting.figure(2, 3, figsize=(13, 7))
for col, (name, t, f, dd, c, kink) in enumerate(
    (
        ("ReLU ConvNet", ts, slices["ReLU"], second["ReLU"], constant["ReLU"], walk.kinks),
        (
            "softplus ConvNet",
            ts,
            slices["softplus"],
            second["softplus"],
            constant["softplus"],
            None,
        ),
        ("ReLU + max-pool", ts_pool, f_pool, second_pool, c_pool, kinks),
    )
):
    bent = f - (f[0] + (t - t[0]) * (f[-1] - f[0]) / (t[-1] - t[0]))  # f minus its chord
    axes[0, col].plot(t, bent, lw=1)
    if kink is not None:
        axes[0, col].plot(t[kink], bent[kink], "|", color="r", ms=8, label="kinks (a switch flips)")
        axes[0, col].legend(fontsize=8)
    axes[0, col].set_title(f"{name}: $f(I_0 + t\\,d)$ minus its chord", fontsize=10)
    axes[1, col].semilogy(
        t[1:-1], np.maximum(dd, 1e-18), ".", ms=2, label="$|\\Delta^2 f| / \\max|f|$"
    )
    ax2 = axes[1, col].twinx()
    ax2.plot(t, c - c[len(c) // 2], color="C1", lw=1)
    ax2.set_ylabel("piece constant $c(t) - c(0)$", color="C1", fontsize=9)
    axes[1, col].set_ylim(1e-18, 1)
    axes[1, col].set_title("second differences (dots), Theorem 1's $c$ (line)", fontsize=10)
    axes[1, col].set_xlabel("$t$")
fig.tight_layout()
save(fig, __file__, "slices")

# %% [markdown]
# Left and right, the piecewise-linear networks: flat second differences (at rounding level,
# $10^{-16}$) except at isolated kinks, and a staircase for the piece constant $c$, so each
# piece is a truncated Gaussian $N(\sigma^2\mathbf{B}_{w,\delta,a}, \sigma^2\mathbf{1})$ as in
# Theorem 1, with the arg-max switches $a$ as part of the pattern. Middle, softplus: the
# second differences are $f''\,\Delta t^2$ (a few $10^{-9}$ of $\max|f|$ here) at every point
# and $c$ drifts; there are no pieces at all. (Left, the kinks of a ReLU network look like a
# smooth curve from afar: only the second differences tell them apart.)
#
# ## Summary
#
# * With a smooth $h$ the activation variables are $\delta = h'(z)$, Eq. (9.1), real numbers
#   in $(0, 1)$ for softplus, and the top-down pass with them is still
#   $\mathbf{B} = \partial f / \partial \mathbf{I}$, Eq. (9.2): representation = back-propagation.
#   Langevin dynamics and the auto-encoding modes (Proposition 2) need only this.
# * Theorem 1 needs a piecewise-linear $h$ (for ReLU, $h(z) = h'(z)\, z$): under softplus $f$
#   curves, $f \ne \alpha + \langle\mathbf{I}, \mathbf{B}\rangle$, and the piece constant of
#   Eq. (6.9) varies from image to image.
# * Softplus must be computed stably: $\log(1 + e^r)$ as written overflows at $r \approx 710$.
# * Max pooling selects, with arg-max switches that are binary variables like $\delta$; at
#   fixed switches it is linear, its adjoint is arg-max retrieval,
#   $\langle P_a x, y\rangle = \langle x, P_a^\top y\rangle$, and a ReLU + max-pool network is
#   still piecewise linear (and its model piecewise Gaussian).
#
# ## Exercises
#
# 1. Softplus with a temperature, $h_\beta(r) = \beta^{-1}\log(1 + e^{\beta r})$, tends to the
#    ReLU as $\beta \to \infty$. Build it from `softplus.h` and show, on the line above, how
#    the second differences of $f$ concentrate at the ReLU kinks as $\beta$ grows.
# 2. Run GRADE (lesson 7) on `soft_model` and check that the endpoints satisfy
#    $\hat{\mathbf{I}} = \sigma^2 \partial f / \partial \mathbf{I}$ (Proposition 2 under section 9).
# 3. Average pooling is linear. What is its adjoint? Show that a ReLU network with average
#    pooling is piecewise linear with fewer switches than with max pooling.
# 4. With overlapping windows (size 3, stride 1) one pixel can win several windows. Find
#    such a pixel in the brick responses and check that $P_a^\top$ adds up its coefficients.
# 5. **Assignment:** `python -m lessons.assign 12 --out assignment12` — write the softplus
#    `refimpl.activations.softplus` and its derivative `sigmoid` (stable for every finite
#    $r$), and `refimpl.conv.pool.max_pool2d` and `max_pool2d_adjoint`, then run
#    `python grade.py` in that folder.
