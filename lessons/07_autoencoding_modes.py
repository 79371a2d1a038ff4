# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 7. Auto-encoding modes and the Hopfield view
#
# Drop the noise from Langevin dynamics (6.10) and what is left is gradient ascent on
# $\log p$, the **GRADE attractor dynamics** (the "Gibbs Reaction And Diffusion Equation" of
# the FRAME model, section 6):
#
# $$\mathbf{I}_{\tau+1} = \mathbf{I}_\tau + \frac{\epsilon^2}{2}\Big[\mathbf{B}_{w,\delta(\mathbf{I}_\tau; w)} - \frac{\mathbf{I}_\tau}{\sigma^2}\Big].$$
#
# It climbs to a local maximum $\hat{\mathbf{I}}$ of $p$ (a local energy minimum). Where $p$ is
# differentiable the gradient vanishes there, $\mathbf{B}_{w,\delta(\hat{\mathbf{I}})} = \hat{\mathbf{I}} / \sigma^2$,
# which is Eq. (5.7) for the prototype model and **Proposition 2**, Eq. (6.11), for the
# generative ConvNet:
#
# $$\text{bottom-up encoding: } \delta = \delta(\hat{\mathbf{I}}; w), \qquad
#   \text{top-down decoding: } \hat{\mathbf{I}} = \sigma^2 \mathbf{B}_{w,\delta}.$$
#
# A mode **auto-encodes** itself: the filters that fire on it, used again as basis functions,
# rebuild it exactly. In the prototype model the encoder is
# $\delta_k = 1(\langle\hat{\mathbf{I}}, \mathbf{w}_k\rangle + b_k > 0)$ and the decoder
# $\hat{\mathbf{I}} = \sigma^2 \sum_k \delta_k \mathbf{w}_k$ (the paper's $\sigma = 1$ drops the
# $\sigma^2$). In the language of lesson 5, the modes are the Gaussian pieces' means that lie
# inside their own piece.
#
# The same equation suggests a second algorithm: instead of creeping uphill, **jump** to the
# mean of the current piece, $\mathbf{I} \leftarrow \sigma^2 \mathbf{B}_{w,\delta(\mathbf{I})}$,
# and stop when the pattern no longer changes. This lesson runs both, uses them as a
# content-addressable memory (the Hopfield network the paper connects them to), and ends
# with a case the proposition does not cover: modes on the kinks of a multi-layer ConvNet.

# %%
import itertools

import numpy as np
from _lesson import pick, save

from refimpl import ConvLayer, ConvNet, plotting
from refimpl.data import load_digits
from refimpl.exact import exact_distribution
from refimpl.models import GenerativeModel, PrototypeModel
from refimpl.numerics import EXACT, relative_error
from refimpl.sampling import fixed_point, grade
from refimpl.theorems import instances, structure

# %% [markdown]
# ## GRADE on the plane
#
# The 2-D prototype model of lesson 5. Its modes, found by brute force: of the $2^3$
# patterns, keep those whose mean $\sigma^2 \mathbf{B}_\delta$ has pattern $\delta$ itself, i.e.
# the self-consistent, auto-encoding ones.

# %%
W = np.array([[1.5, 0.5], [-1.0, 1.5], [0.3, -1.6]])
b = np.array([0.5, 0.5, 0.5])
proto = PrototypeModel(W, b)
model = GenerativeModel(proto, sigma=1.0)
patterns = np.array(list(itertools.product([False, True], repeat=3)))
_, B_all = proto.piece_from_pattern(patterns)
means = model.sigma**2 * B_all
self_consistent = (proto.activation_pattern(means) == patterns).all(axis=1)
modes = means[self_consistent]
print(
    "auto-encoding patterns:",
    [("".join(str(int(d)) for d in p)) for p in patterns[self_consistent]],
)
print("modes:\n", modes)

# %% [markdown]
# `grade(model, I0, n_steps, step_size)` runs every row of `I0` until its update is below
# `tol` (relative), reporting `converged` and `chain_steps` per chain. We start it from every
# point of a grid and colour each start by the mode it reaches: the **basins of attraction**.
# A step $\epsilon = \sigma$ halves the distance to the current piece's mean at every step.

# %%
lim, n_grid = 4.0, pick(161, 61)
axis = np.linspace(-lim, lim, n_grid)
starts = np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
run = grade(model, starts, 500, model.sigma)
end = run.samples
print(
    f"{len(starts)} chains: all converged: {bool(run.converged.all())}, "
    f"steps: median {int(np.median(run.chain_steps))}, max {int(run.chain_steps.max())}"
)
gap = np.linalg.norm(end - model.piece_mean(end), axis=1) / np.linalg.norm(end, axis=1)
print(f"auto-encoding at the endpoints: max |I - sigma^2 B| / |I| = {gap.max():.1e}")
basin = np.argmin(((end[:, None, :] - modes[None]) ** 2).sum(2), axis=1)
print("distance of every endpoint to its mode:", np.linalg.norm(end - modes[basin], axis=1).max())

# %% [markdown]
# Every chain stops at one of the brute-force modes, and there $\mathbf{I} = \sigma^2
# \mathbf{B}_{w,\delta(\mathbf{I})}$ to rounding: Eq. (5.7).
#
# ## Jumping instead of creeping: the fixed-point iteration
#
# `fixed_point(model, I0)` replaces each image by the mean of its piece until the pattern
# repeats. For the prototype model every jump *raises* $\log p$. The reason is convexity: $f$
# is a sum of ReLUs of linear functions, so it lies above each of its tangent planes,
# $f(\mathbf{J}) \ge f(\mathbf{I}) + \langle \mathbf{B}, \mathbf{J} - \mathbf{I}\rangle$ with
# $\mathbf{B} = \mathbf{B}_{w,\delta(\mathbf{I})}$. Put $\mathbf{J} = \sigma^2 \mathbf{B}$ and
# complete the square:
#
# $$\log p(\mathbf{J}) - \log p(\mathbf{I}) \ \ge\ \langle \mathbf{B}, \mathbf{J} - \mathbf{I}\rangle - \frac{\|\mathbf{J}\|^2 - \|\mathbf{I}\|^2}{2\sigma^2}
#   = \frac{\|\mathbf{I} - \sigma^2\mathbf{B}\|^2}{2\sigma^2} \ \ge 0 .$$
#
# There are finitely many patterns and $\log p$ rises strictly until the point reconstructs
# itself, so the iteration stops after finitely many jumps, at a mode.

# %%
log_p = model.log_density_unnormalised
jumps = fixed_point(model, starts, record=lambda step, I: log_p(I))
trace = np.stack([log_p(starts)] + jumps.trace)
print(
    f"all stopped: {bool(jumps.converged.all())}; jumps per chain: max {int(jumps.chain_steps.max())}, "
    f"mean {jumps.chain_steps.mean():.2f}"
)
print(
    f"largest decrease of log p over all jumps: {max(0.0, float((trace[:-1] - trace[1:]).max())):.1e}"
)
basin_fp = np.argmin(((jumps.samples[:, None, :] - modes[None]) ** 2).sum(2), axis=1)
print(f"starts whose two algorithms end at different modes: {np.mean(basin != basin_fp):.1%}")

# %% [markdown]
# Both end at auto-encoding modes, and on this model at the same mode from every start, so
# the two basin maps below coincide, although the routes differ: GRADE follows the gradient
# through the pieces, the fixed-point iteration leaps from piece mean to piece mean, here in at
# most two jumps. On other models the two can part ways from a few starts (exercise 2).

# %%
fig, axes = plotting.figure(1, 2, figsize=(11, 5.2))
paths_from = np.array(
    [[-3.5, 3.5], [3.5, 3.5], [-3.5, -3.5], [3.5, -1.0], [0.0, -3.8], [-3.8, 0.5]]
)
for ax, labels, title in (
    (axes[0], basin, "GRADE: basins and paths"),
    (axes[1], basin_fp, "fixed point: basins and jumps"),
):
    ax.imshow(
        labels.reshape(n_grid, n_grid),
        origin="lower",
        extent=(-lim, lim, -lim, lim),
        cmap="Pastel1",
        vmin=0,
        vmax=8,
        interpolation="nearest",
    )
    ax.plot(
        modes[:, 0],
        modes[:, 1],
        "k*",
        ms=12,
        label="modes $\\hat I = \\sigma^2 B_{\\delta(\\hat I)}$",
    )
    for w, bk in zip(W, b):
        t = np.linspace(-3 * lim, 3 * lim, 2)
        foot = -bk * w / (w @ w)
        line = foot + t[:, None] * np.array([-w[1], w[0]]) / np.linalg.norm(w)
        ax.plot(line[:, 0], line[:, 1], color="0.4", lw=0.8)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(title, fontsize=10)
path = grade(model, paths_from, 60, 0.5 * model.sigma, record=lambda step, I: I.copy())
path = np.array(path.trace)
for i in range(len(paths_from)):
    axes[0].plot(path[:, i, 0], path[:, i, 1], "-", color="k", lw=1)
hops = fixed_point(model, paths_from, record=lambda step, I: I.copy())
hops = np.array([paths_from] + hops.trace)
for i in range(len(paths_from)):
    axes[1].plot(hops[:, i, 0], hops[:, i, 1], "o--", color="k", lw=1, ms=3)
axes[0].legend(loc="lower right", fontsize=8)
fig.tight_layout()
save(fig, __file__, "attractors_2d")

# %% [markdown]
# The same two claims are checked by `refimpl.theorems.structure` on random prototype models
# in higher dimensions (and by `python -m refimpl verify`), with residuals at rounding level:

# %%
rng = np.random.default_rng(0)
random_proto = instances.prototype(rng, 8, 10)
random_starts = 3 * random_proto.sigma * rng.standard_normal((pick(64, 16), 8))
for check in (
    structure.check_proposition2_grade(
        random_proto, random_starts, 0.5 * random_proto.sigma, 20000
    ),
    structure.check_fixed_point_prototype(random_proto, random_starts),
):
    print(f"{check.claim}: residual {check.residual:.1e} (bound {check.bound})")

# %% [markdown]
# ## A content-addressable memory
#
# The Hopfield network stores memories as the local minima of an energy; a corrupted memory
# is recalled by running downhill from it (an *attractor dynamics*). Proposition 2 says the
# minima of the generative ConvNet's energy are auto-encoders, and section 7 adds that
# contrastive divergence learns exactly such a memory (lesson 11). Here we build one by
# hand with the prototype model. To store images $\mathbf{x}_1, \dots, \mathbf{x}_K$, take
#
# $$\mathbf{w}_k = \mathbf{x}_k / \sigma^2, \qquad b_k = -c\,\|\mathbf{x}_k\|^2 / \sigma^2 .$$
#
# At $\mathbf{I} = \mathbf{x}_k$ filter $k$ responds with $(1 - c)\|\mathbf{x}_k\|^2/\sigma^2 > 0$
# and filter $j \neq k$ with $(\langle \mathbf{x}_k, \mathbf{x}_j\rangle - c\|\mathbf{x}_j\|^2)/\sigma^2$,
# negative as long as the memories overlap by less than $c$. Then $\delta(\mathbf{x}_k) = e_k$
# and $\sigma^2 \mathbf{B}_{e_k} = \mathbf{x}_k$: every memory is an auto-encoding mode. We store
# ten 8 x 8 digits, one per class, centred pixel by pixel, chosen so that they overlap
# little (crosstalk between similar memories is what limits a Hopfield network's capacity).

# %%
images, labels = load_digits()
X_all = images.reshape(len(images), -1)
pixel_mean = X_all.mean(axis=0)
X_all = X_all - pixel_mean  # centre each pixel over the data set
unit = X_all / np.linalg.norm(X_all, axis=1, keepdims=True)
chosen = []
for digit in range(
    10
):  # per class, of its first 40 examples the one least like those already chosen
    candidates = np.nonzero(labels == digit)[0][:40]
    overlap = [max([float(unit[c] @ unit[o]) for o in chosen], default=-1.0) for c in candidates]
    chosen.append(int(candidates[int(np.argmin(overlap))]))
X = X_all[chosen]
norms = np.linalg.norm(X, axis=1)
sigma, c = 4.0, 0.35
memory = GenerativeModel(PrototypeModel(X / sigma**2, -c * norms**2 / sigma**2), sigma)
print(
    "largest overlap <x_j, x_k> / |x_k|^2 between memories:",
    round(float(((X @ X.T) / norms**2 - 2 * np.eye(10)).max()), 3),
)
print(
    "every memory is its own piece's mean:",
    relative_error(memory.piece_mean(X), X) <= EXACT,  # equal up to rounding (refimpl.numerics)
)

# %% [markdown]
# Now corrupt the memories, in two ways: hide the bottom half (replace it by the average
# digit, i.e. 0 after centring), or add strong noise, and let the dynamics recall. (The
# figure adds the average digit back for display.)

# %%
hidden = X.reshape(10, 8, 8).copy()
hidden[:, 4:, :] = 0.0
hidden = hidden.reshape(10, -1)
noisy = X + 3.0 * np.random.default_rng(1).standard_normal(X.shape)
recalled = {}
for name, corrupted in (("half hidden", hidden), ("noisy", noisy)):
    by_jumps = fixed_point(memory, corrupted)
    by_grade = grade(memory, corrupted, 2000, memory.sigma)
    recalled[name] = by_jumps.samples
    err = np.linalg.norm(by_jumps.samples - X, axis=1) / norms
    err_grade = np.linalg.norm(by_grade.samples - X, axis=1) / norms
    start_err = np.linalg.norm(corrupted - X, axis=1) / norms
    print(
        f"{name:11s}: error before {start_err.mean():.2f}; after the fixed point {err.max():.1e} "
        f"({int(by_jumps.chain_steps.max())} jumps at most); after GRADE {err_grade.max():.1e}"
    )
grid = [X, hidden, recalled["half hidden"], noisy, recalled["noisy"]]
rows = ["stored", "half hidden", "recalled", "noisy", "recalled"]
fig = plotting.image_grid(
    [(pixel_mean + g[i]).reshape(1, 8, 8) for g in grid for i in range(10)],
    [f"{rows[r]}" if i == 0 else "" for r in range(5) for i in range(10)],
    columns=10,
    scale=1.1,
)
save(fig, __file__, "hopfield_recall")

# %% [markdown]
# A start too far from every memory recalls nothing: if no filter fires, the piece is
# $\delta = 0$ with mean $0$, itself a mode (the "I don't know" state, since all $b_k < 0$);
# if two fire, the mean $\mathbf{x}_j + \mathbf{x}_k$ may be a *spurious* mode, a blend of two
# memories, as in Hopfield networks.
#
# ## When the proposition needs care: modes on kinks
#
# Proposition 2 assumes the mode is a point where $p$ is differentiable. For the prototype
# $f$ is convex, its kinks are convex, and $\log p$ has no maximum on a kink, so every mode is
# interior and auto-encoding. A ConvNet with two layers can have **concave** kinks: a
# negative weight above the first layer turns a ReLU's corner upside down. The smallest
# example, on the line: two first-layer units $\mathrm{relu}(\pm(I - \tfrac12))$ and a linear top
# with weights $-1.5$ and $-0.8$,
#
# $$f(I) = -1.5\,\mathrm{relu}(I - \tfrac12) - 0.8\,\mathrm{relu}(\tfrac12 - I).$$
#
# Left of the kink the piece's Gaussian has mean $\sigma^2 B = 0.8$, *right* of the kink;
# right of the kink its mean is $-1.5$, *left* of it. Each side rises towards the other, and
# $p$ peaks on the kink $I = \frac12$, where $I \ne \sigma^2 B$ on either side. What does hold
# is the Clarke-subgradient form: $\hat I = \sigma^2 (\lambda B_{\text{left}} + (1 - \lambda) B_{\text{right}})$
# for some $\lambda \in [0, 1]$ (here $\lambda = 2/2.3$).

# %%
net = ConvNet(
    [
        ConvLayer(np.array([1.0, -1.0]).reshape(2, 1, 1, 1), np.array([-0.5, 0.5])),
        ConvLayer(np.array([-1.5, -0.8]).reshape(1, 2, 1, 1), np.zeros(1), activation="linear"),
    ]
)
kinked = GenerativeModel(net, sigma=1.0)
exact = exact_distribution(kinked, (1, 1, 1))
xs = np.linspace(-3, 3, 601)
pdf = np.exp(exact.log_density(xs[:, None]))
print(
    "the piece means sigma^2 B:",
    [float(kinked.piece_mean(np.array([[[[v]]]]))[0, 0, 0, 0]) for v in (0.0, 1.0)],
)
print("the mode of p (on a fine grid):", xs[np.argmax(pdf)])
runs = {}
for eps in (0.5, 0.1):
    r = grade(
        kinked, np.full((1, 1, 1, 1), 2.5), 400, eps, record=lambda step, I: float(I[0, 0, 0, 0])
    )
    runs[eps] = np.array(r.trace)
    print(
        f"GRADE, eps = {eps}: converged {bool(r.converged[0])}, the last 20 steps span "
        f"[{runs[eps][-20:].min():.4f}, {runs[eps][-20:].max():.4f}]"
    )
fig, axes = plotting.figure(1, 2, figsize=(11, 4))
axes[0].plot(xs, pdf, "k", lw=2, label="exact $p(I)$")
for lo, hi, mu, color in ((-3, 0.5, 0.8, "C0"), (0.5, 3, -1.5, "C1")):
    side = (xs >= lo) & (xs <= hi)
    at = np.argmin(np.abs(xs - 0.5))
    g = np.exp(-((xs - mu) ** 2) / 2)
    axes[0].plot(
        xs,
        pdf[at] / g[at] * g,
        "--",
        color=color,
        lw=1,
        label=f"Gaussian of the piece $I {'<' if hi == 0.5 else '>'} 1/2$, mean {mu}",
    )
    axes[0].plot([mu], [0], "|", ms=14, mew=2, color=color)
axes[0].axvline(0.5, color="0.6", lw=0.8)
axes[0].set_xlabel("$I$")
axes[0].set_ylim(0, 1.3 * pdf.max())
axes[0].legend(fontsize=8)
axes[0].set_title("a concave kink: the mode sits on it", fontsize=10)
for eps, values in runs.items():
    axes[1].plot(values, lw=1, label=f"GRADE, $\\epsilon = {eps}$")
axes[1].axhline(0.5, color="0.6", lw=0.8)
axes[1].set_ylim(0.2, 2.6)
axes[1].set_xlabel("step")
axes[1].set_ylabel("$I_\\tau$")
axes[1].legend(fontsize=8)
axes[1].set_title("GRADE chatters across the kink, within $O(\\epsilon^2)$", fontsize=10)
fig.tight_layout()
save(fig, __file__, "concave_kink")

# %% [markdown]
# GRADE never "converges" there: each step overshoots the kink, and it chatters within a band
# of width $O(\epsilon^2)$, so shrinking the step (annealing) homes in on the maximum.
#
# For random multi-layer ReLU ConvNets this is not a curiosity but the rule, as the
# project's checks found (README, "Checked theory"): GRADE, annealed onto its endpoints,
# stops at local maxima of $p$ (no rise of $\log p$ in 400 random directions) that are *not*
# auto-encoding, with $|\mathbf{I} - \sigma^2\mathbf{B}| / |\mathbf{I}|$ of 0.1-0.5, and where
# dozens to hundreds of pieces meet. `check_proposition2_kink_maxima` runs exactly this; for
# contrast, a *convex* ConvNet (non-negative weights above the first layer, so $f$ is convex
# like the prototype's) has only interior, auto-encoding modes.

# %%
rng = np.random.default_rng(6)
general, shape = instances.image_convnet(rng, 1, 6, 2)
kinks = structure.check_proposition2_kink_maxima(
    general, 2 * general.sigma * rng.standard_normal((2,) + shape), rng
)
d = kinks.details
print(
    f"{kinks.claim}: rise ratio {kinks.residual:.2g} (bound {kinks.bound}) {'PASS' if kinks.passed else 'FAIL'}"
)
print(
    f"  endpoints {d['endpoints']}: on kinks {d['on_kinks']}, interior auto-encoding {d['interior_autoencoding']}; "
    f"smallest |I - sigma^2 B| / |I| on a kink {d['smallest_gap_on_kinks']:.2f}; "
    f"pieces meeting there {d['pieces_meeting_at_endpoints']}"
)
convex, cshape = instances.image_convnet(rng, 1, 6, 3, convex=True)
check = structure.check_proposition2_grade(
    convex, 2 * convex.sigma * rng.standard_normal((4,) + cshape), 0.5 * convex.sigma, 20000
)
print(f"convex 3-layer ConvNet: {check.claim}: residual {check.residual:.1e}")

# %% [markdown]
# ## Summary
#
# * GRADE, the noise-free part of (6.10), climbs to local modes of $p$; where $p$ is smooth
#   they satisfy $\hat{\mathbf{I}} = \sigma^2 \mathbf{B}_{w,\delta(\hat{\mathbf{I}})}$, Eqs. (5.7), (6.11):
#   encode bottom-up, decode top-down, get the image back.
# * The fixed-point iteration $\mathbf{I} \leftarrow \sigma^2\mathbf{B}_{w,\delta(\mathbf{I})}$ jumps from
#   piece mean to piece mean; for the prototype (convex $f$) every jump raises $\log p$ by at
#   least $\|\mathbf{I} - \sigma^2\mathbf{B}\|^2/2\sigma^2$ and it stops at a mode.
# * Modes are memories: a prototype with $\mathbf{w}_k = \mathbf{x}_k/\sigma^2$ recalls stored
#   images from corrupted ones, a Hopfield network whose minima are auto-encoders.
# * Concave kinks (multi-layer ConvNets with negative weights) carry modes where
#   $\mathbf{I} \ne \sigma^2\mathbf{B}$; there only the convex-combination (Clarke) form holds.
#
# ## Exercises
#
# 1. Show that GRADE with $\epsilon = \sqrt{2}\,\sigma$ *is* the fixed-point iteration. What
#    does GRADE do for $\sqrt{2}\,\sigma < \epsilon < 2\sigma$ on a single Gaussian piece?
# 2. For random 2-D models, `PrototypeModel.random(5, 2, seed=5, scale=3.0)` for instance,
#    find starts from which GRADE and the fixed-point iteration reach different modes. Why
#    are they so rare?
# 3. Store more digits (two or three per class) in the memory. When does recall fail, and
#    which spurious modes appear? Try larger and smaller $c$.
# 4. In the concave-kink example, compute $\lambda$ and check
#    $\hat I = \sigma^2(\lambda B_{\text{left}} + (1-\lambda)B_{\text{right}})$ for another $\sigma$.
# 5. **Assignment:** `python -m lessons.assign 7 --out assignment7` — write the loops of
#    `refimpl.sampling.samplers.grade` (per-chain stopping, `converged`, `chain_steps`,
#    `_record`, and a `FloatingPointError` via `_check_finite_chains` if a chain diverges) and
#    `fixed_point` (jump, count the jumps, stop each chain when its pattern repeats), then run
#    `python grade.py` in that folder.
