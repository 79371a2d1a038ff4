# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 5. The prototype model: a piecewise Gaussian
#
# Before the full generative ConvNet, Xie et al. study the simplest model that has all its
# key properties, the **prototype model** of section 5. Images $\mathbf{I}$ live on a small
# domain $\mathcal{D}$ (think of a 10 x 10 patch, a vector in $\mathbb{R}^D$), and $K$ filters
# $\mathbf{w}_k \in \mathbb{R}^D$ with biases $b_k$ define, Eq. (5.1),
#
# $$p(\mathbf{I}; w) = \frac{1}{Z(w)} \exp\Big[\sum_{k=1}^{K} h(\langle \mathbf{I}, \mathbf{w}_k\rangle + b_k)\Big]\, q(\mathbf{I}),
#   \qquad h(r) = \max(r, 0),$$
#
# an exponential tilting of Gaussian white noise, Eq. (5.2),
# $q(\mathbf{I}) = (2\pi\sigma^2)^{-D/2} \exp(-\|\mathbf{I}\|^2 / 2\sigma^2)$. The exponent
# $f(\mathbf{I}; w) = \sum_k h(r_k)$, with responses $r_k = \langle \mathbf{I}, \mathbf{w}_k\rangle + b_k$,
# is the **scoring function**. It is a one-layer ConvNet whose filters cover the whole image.
#
# The ReLU can be written with a switch: $h(r) = \delta\, r$ with $\delta = 1(r > 0)$. The
# **binary activation variables**, Eq. (5.3),
#
# $$\delta_k(\mathbf{I}; w) = 1(\langle \mathbf{I}, \mathbf{w}_k\rangle + b_k > 0),$$
#
# give, Eq. (5.4), $h(\langle \mathbf{I}, \mathbf{w}_k\rangle + b_k) = \delta_k (\langle \mathbf{I}, \mathbf{w}_k\rangle + b_k)$.
# The $K$ hyperplanes $r_k = 0$ cut $\mathbb{R}^D$ into pieces
# $A(\delta; w) = \{\mathbf{I} : \delta(\mathbf{I}; w) = \delta\}$, one per activation
# pattern $\delta = (\delta_1, \dots, \delta_K)$. On a piece the pattern is fixed, so $f$ is
# *linear*, $f = \alpha_\delta + \langle \mathbf{I}, \mathbf{B}_\delta\rangle$ with
# $\mathbf{B}_\delta = \sum_k \delta_k \mathbf{w}_k$ and $\alpha_\delta = \sum_k \delta_k b_k$,
# and completing the square gives Eq. (5.5):
#
# $$p(\mathbf{I}; w, \delta) \propto \exp\Big[\alpha_\delta + \langle \mathbf{I}, \mathbf{B}_\delta\rangle - \frac{\|\mathbf{I}\|^2}{2\sigma^2}\Big]
#   \propto \exp\Big[-\frac{1}{2\sigma^2}\big\|\mathbf{I} - \sigma^2 \mathbf{B}_\delta\big\|^2\Big].$$
#
# On each piece $p$ is the Gaussian $N(\sigma^2 \mathbf{B}_\delta, \sigma^2 \mathbf{1})$
# truncated to the piece: the model is **piecewise Gaussian**. (The paper takes
# $\sigma^2 = 1$, where the mean is $\mathbf{B}_\delta$ itself; refimpl keeps $\sigma$ general.)
# The mean $\sigma^2 \sum_k \delta_k \mathbf{w}_k$ is a *reconstruction*: the filters that
# fire on $\mathbf{I}$ act again as basis functions. This lesson draws all of it in one and
# two dimensions, where `refimpl.exact` knows the density exactly.

# %%
import numpy as np
from _lesson import pick, save

from refimpl import plotting
from refimpl.backend import make_rng
from refimpl.exact import exact_distribution
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.theorems import structure

# %% [markdown]
# ## A model in the plane
#
# Three filters in $D = 2$ and the paper's $\sigma = 1$. `PrototypeModel` takes the filters
# as the rows of a $(K, D)$ array and images as the rows of an $(M, D)$ array; `score` is
# Eq. (5.1)'s exponent, `activation_pattern` Eq. (5.3), `linear_piece` the pair
# $(\alpha_\delta, \mathbf{B}_\delta)$ of each image's piece.

# %%
W = np.array([[1.5, 0.5], [-1.0, 1.5], [0.3, -1.6]])
b = np.array([0.5, 0.5, 0.5])
proto = PrototypeModel(W, b)
model = GenerativeModel(proto, sigma=1.0)

I = np.array([[1.0, 1.0], [2.0, -1.0], [-2.0, 0.0], [0.0, -2.0]])
alpha, B = proto.linear_piece(I)
print("responses r_k:\n", proto.responses(I))
print("pattern delta:\n", proto.activation_pattern(I).astype(int))
print("f(I)            :", proto.score(I))
print("alpha + <I, B>  :", alpha + (I * B).sum(1))

# %% [markdown]
# $f = \alpha + \langle \mathbf{I}, \mathbf{B}\rangle$ holds exactly, Eq. (5.4), because the
# pattern switches each filter on or off as a whole. Note that `piece_from_pattern` needs
# only the pattern, not the image: $\alpha_\delta$ and $\mathbf{B}_\delta$ belong to the
# piece.

# %%
for delta in ([1, 0, 0], [1, 1, 0], [1, 1, 1]):
    a, Bd = proto.piece_from_pattern(np.array([delta], dtype=bool))
    print(f"delta = {delta}: alpha = {a[0]:+.2f}, B = {Bd[0]}")

# %% [markdown]
# ## How many pieces?
#
# $K$ hyperplanes give at most $2^K$ patterns, but in $D$ dimensions lines in general
# position cut out only $\sum_{i=0}^{D} \binom{K}{i}$ regions: $1 + 3 + 3 = 7$ for three lines
# in the plane, so one of the eight patterns has no piece. `exact_distribution` walks the
# plane line by line, finds every piece that carries probability, and integrates the
# density exactly on each (closed-form normal integrals along lines, an adaptive integral
# across them): it returns $\log Z(w)$, each piece's pattern, mass $P(A)$ and conditional
# mean $E[\mathbf{I} \mid A]$.

# %%
exact = exact_distribution(model)
print(
    f"log Z(w) = {exact.log_Z:.6f}; {len(exact.probs)} pieces; masses sum to {exact.probs.sum():.12f}"
)
print("pattern   P(A)    E[I | A]          sigma^2 B        mean inside its piece?")
inside = []
for key, prob, mean in zip(exact.keys, exact.probs, exact.means):
    _, Bd = proto.piece_from_pattern(key[None])
    mu = model.sigma**2 * Bd
    inside.append(bool(np.array_equal(proto.activation_pattern(mu), key[None])))
    print(
        f"{key.astype(int)}  {prob:.4f}  {np.array2string(mean, precision=2):16s}  "
        f"{np.array2string(mu[0], precision=2):15s}  {inside[-1]}"
    )

# %% [markdown]
# The last column matters. The Gaussian of a piece has its mean $\sigma^2 \mathbf{B}_\delta$
# either **inside** the piece, and then that point is a local maximum of $p$ (a *mode*),
# or **outside**, and then the piece holds only a tail of its Gaussian: $p$ has no
# maximum inside it and keeps rising towards the piece's edge. The paper puts it as "the
# local modes are the means of the Gaussian pieces, but the converse is not true" (section
# 5, item (3)); lesson 7 shows that these modes are points that reconstruct themselves, an
# auto-encoder.
#
# ## Theorem 1 on a grid
#
# Eq. (5.5) is checked numerically by `refimpl.theorems.structure`: on each piece, the
# exact density normalised over the piece and $N(\sigma^2 \mathbf{B}_\delta, \sigma^2)$
# normalised over the same piece are compared point by point on a grid (total-variation
# distance); and for images drawn from $p$, the quantity
# $\log p + \|\mathbf{I} - \sigma^2\mathbf{B}\|^2 / 2\sigma^2$ must be one constant per piece.

# %%
tv = structure.check_theorem1_truncated_gaussian(model, exact, grid_points=pick(301, 151))
print(f"{tv.claim}: residual {tv.residual:.1e} ({tv.details['pieces_checked']} pieces)")
rng = np.random.default_rng(0)
visited = exact.sample(pick(40, 10), rng)
const = structure.check_theorem1_piece_constant(model, visited, rng)
print(f"{const.claim}: residual {const.residual:.1e} ({const.details['pieces_checked']} images)")

# %% [markdown]
# ## Drawing it
#
# Left: the exact log-density $\log p(\mathbf{I})$ (its top 6 nats, so that the small modes
# show) with the three lines $r_k = 0$ and each piece's
# Gaussian mean $\sigma^2 \mathbf{B}_\delta$ (filled: inside its piece, a mode; open: outside),
# joined by a grey line to the piece's own centre of mass $E[\mathbf{I} \mid A]$ (which
# always lies inside: pieces are convex). Right: exact samples (`ExactDistribution.sample`:
# pick a piece by its mass, then draw its truncated Gaussian), coloured by piece.

# %%
lim = 4.0
axis = np.linspace(-lim, lim, pick(301, 121))
grid = np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
log_p = exact.log_density(grid).reshape(len(axis), len(axis))
samples = exact.sample(pick(3000, 600), make_rng(1))
which = exact.piece_of(samples)


def draw_lines(ax):
    """The lines r_k = 0, each with an arrow into its half-plane r_k > 0."""
    t = np.linspace(-3 * lim, 3 * lim, 601)
    for k, (w, bk) in enumerate(zip(W, b)):
        normal = w / np.linalg.norm(w)
        foot = -bk * w / (w @ w)  # the point of r_k = 0 closest to the origin
        line = foot + t[:, None] * np.array([-normal[1], normal[0]])
        ax.plot(line[:, 0], line[:, 1], color="k", lw=1)
        # label near where the line leaves the picture, on its positive side
        shown = line[(np.abs(line) < 0.85 * lim).all(axis=1)]
        end = shown[-1]
        ax.annotate(
            "", xy=end + 0.5 * normal, xytext=end, arrowprops=dict(arrowstyle="->", color="k", lw=1)
        )
        ax.annotate(
            f"$r_{k + 1} > 0$",
            xy=end + 0.75 * normal,
            fontsize=9,
            ha="center",
            va="center",
            bbox=dict(boxstyle="round,pad=0.1", fc="w", ec="none", alpha=0.8),
        )
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")


fig, axes = plotting.figure(1, 2, figsize=(11, 5.2))
ax = axes[0]
ax.imshow(
    log_p, origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis", vmin=log_p.max() - 6
)
draw_lines(ax)
for key, mean, ins in zip(exact.keys, exact.means, inside):
    _, Bd = proto.piece_from_pattern(key[None])
    mu = model.sigma**2 * Bd[0]
    ax.plot([mean[0], mu[0]], [mean[1], mu[1]], color="0.8", lw=1)
    ax.plot(*mu, "o", ms=8, mfc="w" if ins else "none", mec="w", mew=1.5)
    ax.annotate(
        "".join(str(int(d)) for d in key),
        xy=mean,
        color="orange",
        fontsize=9,
        ha="center",
        va="center",
        weight="bold",
    )
ax.set_title(
    "exact $\\log p$ (6 nats of range), pieces (pattern), means $\\sigma^2 B_\\delta$\n"
    "(filled: inside its piece, open: outside)",
    fontsize=10,
)
ax = axes[1]
ax.scatter(samples[:, 0], samples[:, 1], c=which, cmap="tab10", s=3, vmin=0, vmax=9)
draw_lines(ax)
ax.set_title(f"{len(samples)} exact samples, coloured by piece", fontsize=10)
fig.tight_layout()
save(fig, __file__, "pieces_2d")

# %% [markdown]
# ## In one dimension: Gaussians cut and glued
#
# In $D = 1$ the pieces are intervals and the picture says everything at once. Below, three
# filters on the line: on each interval the density (black) coincides with a scaled Gaussian
# $N(\sigma^2 B_\delta, \sigma^2)$ (dashed, drawn over the whole line), whose mean (tick) may lie
# inside the interval (a mode) or outside it (the density is then monotone on the interval).
# The scoring function above it is piecewise linear, with slope $B_\delta$.

# %%
proto1 = PrototypeModel(np.array([[0.4], [-1.5], [2.0]]), np.array([-0.2, -1.5, -4.0]))
model1 = GenerativeModel(proto1, sigma=1.0)
exact1 = exact_distribution(model1)
x = np.linspace(-4, 5, 901)[:, None]
pdf = np.exp(exact1.log_density(x))
seg = exact1.segments
fig, axes = plotting.figure(
    2, 1, figsize=(8, 5.5), sharex=True, gridspec_kw=dict(height_ratios=[1, 2])
)
axes[0].plot(x[:, 0], proto1.score(x), color="k")
axes[0].set_ylabel("$f(I)$")
axes[1].plot(x[:, 0], pdf, color="k", lw=2, label="exact $p(I)$")
for key, lo, hi in zip(seg.keys, seg.bounds[:-1], seg.bounds[1:]):
    _, Bd = proto1.piece_from_pattern(key[None])
    mu = model1.sigma**2 * Bd[0, 0]
    piece = (x[:, 0] > lo) & (x[:, 0] < hi)
    mid = x[piece][len(x[piece]) // 2]
    # scale the piece's Gaussian so that it meets the density inside the piece
    gauss = np.exp(-((x[:, 0] - mu) ** 2) / (2 * model1.sigma**2))
    scale = pdf[piece][len(x[piece]) // 2] / gauss[piece][len(x[piece]) // 2]
    (line,) = axes[1].plot(x[:, 0], scale * gauss, "--", lw=1)
    axes[1].plot([mu], [0], "|", ms=14, mew=2, color=line.get_color())
    for ax in axes:
        if np.isfinite(lo):
            ax.axvline(lo, color="0.7", lw=0.8)
    axes[1].annotate(
        "".join(str(int(d)) for d in key),
        xy=(mid[0], 0.02),
        ha="center",
        fontsize=8,
        color=line.get_color(),
    )
axes[1].set_ylim(0, 1.3 * pdf.max())
axes[1].set_xlabel("$I$")
axes[1].set_ylabel("density")
axes[1].legend(loc="upper left", fontsize=8)
fig.suptitle(
    "1-D prototype: on each piece p is a truncated Gaussian $N(\\sigma^2 B_\\delta, \\sigma^2)$",
    fontsize=10,
)
fig.tight_layout()
save(fig, __file__, "pieces_1d")
for key, lo, hi in zip(seg.keys, seg.bounds[:-1], seg.bounds[1:]):
    _, Bd = proto1.piece_from_pattern(key[None])
    mu = model1.sigma**2 * Bd[0, 0]
    print(
        f"piece {key.astype(int)} = ({lo:+.2f}, {hi:+.2f}): mean sigma^2 B = {mu:+.2f}, "
        f"{'inside (a mode)' if lo < mu < hi else 'outside'}"
    )

# %% [markdown]
# ## The prototype is a one-layer ConvNet
#
# A filter that covers the whole image has a single position, so the prototype model is the
# generative ConvNet of Eq. (3.4) with one layer and a $D$-pixel kernel:
# `as_convnet((C, H, W))` lays each $\mathbf{w}_k$ out as a $C \times H \times W$ kernel.
# Section 6 of the paper "unfolds" this model horizontally (filters slide over positions)
# and vertically (layers); everything in this lesson then holds piece by piece, with
# $\mathbf{B}_\delta$ computed by the top-down pass of lesson 2. Both views agree, on images
# now ($D = 3 \cdot 6 \cdot 6$, eight filters):

# %%
big = PrototypeModel.random(8, 3 * 6 * 6, seed=2, scale=2.0)
images = np.random.default_rng(3).standard_normal((16, 3 * 6 * 6))
net = big.as_convnet((3, 6, 6))
print("ConvNet:", [layer.weight.shape for layer in net.layers])
print(
    "max |f_prototype - f_ConvNet| =",
    np.abs(big.score(images) - net.score(images.reshape(16, 3, 6, 6))).max(),
)
check = structure.check_prototype_is_convnet(GenerativeModel(big), images, (3, 6, 6))
print(f"{check.claim}: residual {check.residual:.1e} (scores, patterns, alpha, B)")

# %% [markdown]
# ## How $f$ depends on the parameters
#
# Learning (lesson 8) needs $\partial f / \partial w$. On a piece, $f = \sum_k \delta_k
# (\langle \mathbf{I}, \mathbf{w}_k\rangle + b_k)$, so
#
# $$\frac{\partial f}{\partial \mathbf{w}_k} = \delta_k(\mathbf{I}; w)\, \mathbf{I}, \qquad
#   \frac{\partial f}{\partial b_k} = \delta_k(\mathbf{I}; w):$$
#
# a filter learns only from the images it fires on. `grad_params` returns these summed over
# a batch, which are the statistics that Eq. (5.8) matches between data and model. Backprop
# through the ConvNet gives the same numbers:

# %%
dW, db = big.grad_params(images)
((dW_net, db_net),) = net.grad_params(images.reshape(16, 3, 6, 6))
print("sum_m delta_k(I_m) per filter:", db)
print(
    "max |dW - dW_backprop| =",
    np.abs(dW - dW_net.reshape(8, -1)).max(),
    "; max |db - db_backprop| =",
    np.abs(db - db_net).max(),
)

# %% [markdown]
# ## Summary
#
# * The prototype model, Eq. (5.1), tilts white noise $q$, Eq. (5.2), by
#   $f = \sum_k \max(\langle \mathbf{I}, \mathbf{w}_k\rangle + b_k, 0)$.
# * Binary activations $\delta_k$, Eq. (5.3), cut image space into pieces by $K$
#   hyperplanes; on a piece $f = \alpha_\delta + \langle \mathbf{I}, \mathbf{B}_\delta\rangle$, Eq. (5.4).
# * On each piece $p$ is $N(\sigma^2 \mathbf{B}_\delta, \sigma^2 \mathbf{1})$ truncated,
#   Eq. (5.5): piecewise Gaussian. The mean reconstructs the image from the filters that
#   fire; it may lie inside its piece (a mode) or outside it.
# * The model is a one-layer ConvNet; the generative ConvNet unfolds it.
# * $\partial f / \partial \mathbf{w}_k = \delta_k \mathbf{I}$, $\partial f / \partial b_k = \delta_k$.
#
# ## Exercises
#
# 1. Show that the prototype model is integrable for any $w$ (hint: $f$ grows at most
#    linearly, $q$ decays like a Gaussian). What goes wrong with $q$ replaced by the uniform
#    measure on $\mathbb{R}^D$?
# 2. Change the biases of the 2-D model so that the pattern $(0, 0, 0)$ gets a piece. Which
#    pattern then loses its piece? Is the origin a mode?
# 3. Using `exact.probs` and `exact.keys`, compute $E[\delta_k]$ for each filter and compare
#    with the fraction of the exact samples on which filter $k$ fires.
# 4. Replace `activation="relu"` by `"softplus"` (section 9): is
#    $\log p + \|\mathbf{I} - \sigma^2 \mathbf{B}\|^2 / 2\sigma^2$ still constant on a piece?
#    (`structure.check_theorem1_piece_constant`.)
# 5. **Assignment:** `python -m lessons.assign 5 --out assignment5` — write
#    `PrototypeModel.score`, `activation_pattern`, `piece_from_pattern` and `grad_params`
#    in `refimpl/models/prototype.py`, then run `python grade.py` in that folder.
