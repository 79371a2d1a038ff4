# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lesson 14. Hybrid generative-discriminative training
#
# A classifier built from class densities can be trained two ways. Take class-conditional
# densities $p(x \mid y = k, w)$ and class probabilities $\pi_k$, and write the class
# scores $S_k(x; w) = \log p(x, y = k \mid w) = \log \pi_k + \log p(x \mid y = k, w)$. Bayes'
# rule turns them into the softmax of Eq. (2.3), with $f_k = \log p(x \mid k, w)$ and
# $b_k = \log \pi_k$:
#
# $$p(y = k \mid x, w) = \frac{\exp S_k(x; w)}{\sum_j \exp S_j(x; w)}.$$
#
# *Generative* training maximises the likelihood of everything the model describes, the
# inputs included; *discriminative* training maximises the likelihood of the labels given the
# inputs. With a training set of labelled pairs $(x_n, y_n)$ and unlabelled points $x_m$ (the
# lecture slides on hybrid models, after Bishop & Lasserre 2007):
#
# $$L_G(w) = \log p(w) + \sum_{n} \log p(x_n, y_n \mid w) + \sum_{m} \log p(x_m \mid w), \qquad
#   L_D(w) = \log p(w) + \sum_{n} \log p(y_n \mid x_n, w),$$
#
# with $p(x \mid w) = \sum_k p(x, y = k \mid w)$. $L_G$ can use the unlabelled points, $L_D$
# cannot; $L_G$ pays for it by trusting the model of $x$, which $L_D$ never uses. Which wins,
# with two labelled points per class and a few hundred unlabelled ones? It depends on how
# wrong the model of $x$ is, and this lesson measures exactly that, on a toy where every
# number has an exact answer. Then it interpolates, two ways:
#
# * the slides' heuristic **blend** $\lambda L_G + (1 - \lambda) L_D$;
# * Bishop & Lasserre's **hybrid**: two parameter vectors, $w_D$ for $p(y \mid x, w_D)$ and
#   $w_G$ for $p(x \mid w_G)$, tied by a prior that keeps them close.

# %%
import math

import numpy as np
from _lesson import figure_folder, pick, save

from refimpl import plotting
from refimpl.hybrid import experiment, fit, toy
from refimpl.hybrid import objectives as obj

# %% [markdown]
# ## The toy and the model
#
# **The truth.** Two equally likely classes, Gaussians centred at $(-1, 0)$ and $(1, 0)$ that
# share one covariance $\Sigma$, elongated at 45 degrees (standard deviation 0.9 along
# $(1, 1)/\sqrt 2$, 0.5 across). With a shared covariance the Bayes rule is linear (linear
# discriminant analysis): class 1 iff $\Sigma^{-1}(\mu_1 - \mu_0) \cdot x + c > 0$, a line
# *tilted* away from the perpendicular bisector of the means.
#
# **The model.** The slides' $p(x \mid y = k, w) = N(w_m^k, w_s^k)$ with *isotropic* classes,
# $N(m_k, s_k^2 \mathbf{1})$, and a class probability. The parameters are one unconstrained
# vector, means, log widths and the log-odds $a = \log \pi_1 / \pi_0$:
# $w = (m_0, m_1, \log s_0, \log s_1, a)$, seven numbers. The model cannot represent the
# elongated $\Sigma$: it is **misspecified**. Its discriminative twin is not: the log-odds
#
# $$S_1 - S_0 = \Big(\frac{1}{2 s_0^2} - \frac{1}{2 s_1^2}\Big)|x|^2
#   + \Big(\frac{m_1}{s_1^2} - \frac{m_0}{s_0^2}\Big)\cdot x + \text{const}$$
#
# is linear whenever $s_0 = s_1$, in *any* direction, the Bayes rule's included.

# %%
problem = toy.default_toy()
rng = np.random.default_rng(0)
data = toy.draw_training_set(problem, labelled_per_class=2, n_unlabelled=200, rng=rng)
normal, offset = toy.bayes_rule(problem)
print(f"Bayes rule: normal {normal.round(3)}, offset {offset:.3f}")
print(f"Bayes error: {toy.bayes_error(problem):.4f}")

grid = np.linspace(-3, 3, 241)
gx, gy = np.meshgrid(grid, grid)
points = np.column_stack([gx.ravel(), gy.ravel()])
x_show, y_show = problem.sample([300, 300], np.random.default_rng(1))
fig, axes = plotting.figure(1, 2, figsize=(10, 4.6))
for k, colour in ((0, "C0"), (1, "C3")):
    axes[0].scatter(*x_show[y_show == k].T, s=4, color=colour, alpha=0.5, label=f"class {k}")
axes[0].contour(gx, gy, (points @ normal + offset).reshape(gx.shape), [0], colors="k")
axes[0].set_title("the truth: 300 points per class, Bayes boundary", fontsize=10)
axes[0].legend(fontsize=8)
axes[1].scatter(*data.x_unlabelled.T, s=4, color="0.6")
for k, colour in ((0, "C0"), (1, "C3")):
    axes[1].scatter(*data.x_labelled[data.y_labelled == k].T, s=70, color=colour, edgecolor="k")
axes[1].set_title("what the learner gets: 2 labelled points per class, 200 unlabelled", fontsize=10)
for ax in axes:
    ax.set_aspect("equal")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
fig.tight_layout()
save(fig, __file__, "toy")

# %% [markdown]
# ## Two predictions
#
# **The generative end is biased.** Fitted by maximum likelihood to many labelled points, the
# isotropic model matches the moments it can: $m_k = \mu_k$,
# $s_k^2 = \operatorname{tr}\Sigma / D$ (the same for both classes) and $\pi_k$. Equal widths
# make its boundary the perpendicular bisector of the means, the line $x_1 = 0$, whatever the
# tilt of $\Sigma$. Along the normal $(1, 0)$ each class is Gaussian with standard deviation
# $\sqrt{\Sigma_{11}}$, so the error of this rule is
# $\Phi(-1 / \sqrt{\Sigma_{11}})$: **8.48%**, against the Bayes error of **5.29%**. More
# labelled data cannot close that gap; only a better model can.
#
# **The discriminative end is unbiased.** The Bayes rule is one of the model's conditionals,
# so maximising $L_D$ on many labelled points tends to the Bayes error. With two labelled
# points per class, though, $L_D$ knows almost nothing: it has large **variance**.
#
# We check both numbers with 2 x 20 000 labelled points and a test set of 2 x 100 000
# (binomial standard error about 0.1%). `toy.isotropic_limit` gives the limiting fit and
# `toy.linear_rule_error` the exact error of a linear rule.

# %%
n_big = pick(20000, 2000)
big_x, big_y = problem.sample([n_big, n_big], np.random.default_rng(2))
big = toy.SemiSupervised(big_x, big_y, np.zeros((0, 2)))
test_x, test_y = problem.sample([pick(100000, 10000)] * 2, np.random.default_rng(3))


def measured(w):
    e = toy.error_rate(w, test_x, test_y)
    return e, math.sqrt(e * (1 - e) / len(test_y))


limit = toy.isotropic_limit(problem)
exact_gen = toy.linear_rule_error(problem, *toy.linear_rule(limit))
gen_big = fit.closed_form_generative(big)
disc_big = fit.fit_discriminative(big, prior_scale=None, w0=gen_big).w
for name, w, exact in (
    ("generative (closed form)", gen_big, exact_gen),
    ("discriminative (max L_D)", disc_big, toy.bayes_error(problem)),
):
    e, se = measured(w)
    print(f"{name}: test error {e:.4f} +- {se:.4f}; predicted limit {exact:.4f}")

# %% [markdown]
# Both land on their predictions to within the test set's standard error and the fit's own
# estimation error (which shrinks like $1/\sqrt{n}$). With many labels the discriminative
# fit is simply better. The question is what happens with four.
#
# ## The objectives, their gradients, and the fits
#
# All four objectives are sums of three likelihoods of the class scores $S[m, k]$:
# the joint $\sum_n S[n, y_n]$, the marginal $\sum_m \log\sum_k e^{S[m, k]}$ and the
# conditional $\sum_n (S[n, y_n] - \log\sum_k e^{S[n, k]})$. Their derivatives with respect to
# the scores are the one-hot labels, the responsibilities $p(k \mid x_m, w)$ and
# $1(k = y_n) - p(k \mid x_n, w)$; one chain rule, `toy.class_log_joint_vjp`, takes any of
# them to $w$:
#
# $$\frac{\partial S[m, k]}{\partial m_k} = \frac{x_m - m_k}{s_k^2}, \qquad
#   \frac{\partial S[m, k]}{\partial \log s_k} = -D + \frac{|x_m - m_k|^2}{s_k^2}, \qquad
#   \frac{\partial S[m, k]}{\partial a} = 1(k = 1) - \pi_1.$$
#
# A central-difference check of one of them, and the generative fit three ways: EM
# (closed-form M-steps, no gradient), our L-BFGS on $L_G$ (`fit.maximize`), and the number
# of steps each takes.

# %%
w0 = fit.default_start(data)
value, g_G, g_D = obj.hybrid_objective(w0 + 0.1, w0, data, sigma=0.7, prior_scale=3.0)
h = 1e-6
fd = np.array(
    [
        (
            obj.hybrid_objective(w0 + 0.1, w0 + h * e, data, 0.7, 3.0)[0]
            - obj.hybrid_objective(w0 + 0.1, w0 - h * e, data, 0.7, 3.0)[0]
        )
        / (2 * h)
        for e in np.eye(len(w0))
    ]
)
rel = np.linalg.norm(g_D - fd) / np.linalg.norm(fd)
print(f"dH/dw_D: hand-written vs central differences, relative error {rel:.1e}")
em = fit.em_generative(data)
lbfgs = fit.fit_generative(data)
print(
    f"EM: {em.iterations} steps; L-BFGS: {lbfgs.iterations} steps; "
    f"largest parameter difference {np.abs(em.w - lbfgs.w).max():.1e}"
)

# %% [markdown]
# EM climbs slowly (each step is cheap and safe, and the rate is set by how much the classes
# overlap); L-BFGS gets there in a few dozen steps. The graded tests of this lesson check
# every gradient by finite differences, and `tests/test_hybrid.py` checks that EM, our
# L-BFGS and SciPy's BFGS reach the same maximum.
#
# ## Bishop & Lasserre's hybrid
#
# The slides' blend $\lambda L_G + (1 - \lambda) L_D$ is a heuristic: "it does not give us ML
# results, nor MAP". Bishop & Lasserre instead write *one* model with two parameter vectors,
#
# $$p(x, y, w_G, w_D) = p(y \mid x, w_D)\, p(x \mid w_G)\, p(w_G, w_D),$$
#
# and maximise its posterior: labelled pairs contribute $p(y_n \mid x_n, w_D)\, p(x_n \mid w_G)$,
# unlabelled points $p(x_m \mid w_G)$. The prior decides what the model is:
# $p(w_G)\, p(w_D)$ makes the two independent and $w_D$ the discriminative fit;
# $p(w_G)\, \delta(w_G - w_D)$ forces one $w$, and since
# $p(y \mid x, w)\, p(x \mid w) = p(x, y \mid w)$ that is the generative fit. In between,
# a Gaussian coupling. We use $p(w_G, w_D) = p(w_D)\, N(w_G \mid w_D, \sigma^2 \mathbf{1})$, so
#
# $$H(w_G, w_D) = \log p(w_D) + \log N(w_G \mid w_D, \sigma^2\mathbf{1})
#   + \sum_n \log p(y_n \mid x_n, w_D) + \sum_{\text{all } x} \log p(x \mid w_G).$$
#
# (The slides' trade-off prior is $\propto p(w_G)\, p(w_D)\, e^{-|w_G - w_D|^2 / 2\sigma^2}$;
# ours is that with a flat $p(w_G)$, which keeps one copy of the prior in the $\delta$ limit,
# as in the slides' own $\delta$ line.)
#
# **The limits.** With $A(w) = L_D(w)$ and $C(w) = \sum_{\text{all } x} \log p(x \mid w)$, a
# maximum of $H$ has $\nabla A(w_D) = -(w_G - w_D)/\sigma^2$ and
# $\nabla C(w_G) = (w_G - w_D)/\sigma^2$. As $\sigma \to 0$, $w_G - w_D = O(\sigma^2)$ and
# the two add up to $\nabla (A + C)(w) = \nabla L_G(w) = 0$: $w_D$ tends to the generative fit
# at distance $O(\sigma^2)$. As $\sigma \to \infty$, $\nabla A(w_D) = O(1/\sigma^2)$: $w_D$
# tends to the discriminative fit at distance $O(1/\sigma^2)$. The slides index the hybrids
# by $\alpha \in [0, 1]$, $\alpha = 0$ generative and $\alpha = 1$ discriminative; we map
# $\sigma = \alpha / (1 - \alpha)$. Predicted slopes on a log-log plot: $+2$ and $-2$.

# %%
tau = 3.0
gen = fit.fit_generative(data, tau, gtol=1e-12).w
disc = fit.fit_discriminative(data, tau, w0=gen, gtol=1e-12).w
near_gen = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3]
near_disc = [1 - a for a in near_gen]
rows = {}
for name, alphas, target in (("generative", near_gen, gen), ("discriminative", near_disc, disc)):
    fits = [fit.fit_hybrid(data, a, tau, start=(gen, gen), gtol=1e-11) for a in alphas]
    sig = np.array([f.sigma for f in fits])
    dist = np.array([np.linalg.norm(f.w_D - target) for f in fits])
    slope = np.polyfit(np.log(sig[2:]), np.log(dist[2:]), 1)[0]
    rows[name] = (sig, dist)
    print(f"|w_D - {name} fit| against sigma: log-log slope {slope:+.3f}")
fig, ax = plotting.figure(figsize=(6, 4))
for name, (sig, dist) in rows.items():
    ax.loglog(sig, dist, "o-", label=f"distance to the {name} fit")
ax.loglog(
    rows["generative"][0], 0.5 * rows["generative"][0] ** 2, ":", color="0.5", label="slope 2"
)
ax.loglog(
    rows["discriminative"][0],
    5 / rows["discriminative"][0] ** 2,
    "--",
    color="0.5",
    label="slope -2",
)
ax.set_xlabel("$\\sigma = \\alpha / (1 - \\alpha)$")
ax.set_ylabel("$|w_D - $ limit$|$")
ax.legend(fontsize=8)
ax.set_title("the hybrid's two limits", fontsize=10)
fig.tight_layout()
save(fig, __file__, "limits")

# %% [markdown]
# ## The slides' figure, and the curve that motivates it all
#
# `experiment.run_toy` fits both families on `draws` training sets of the toy (each: 2
# labelled points per class, 200 unlabelled), every fit starting from that set's generative
# fit, and measures each on one test set of 20 000 points. The prior is $N(0, 3^2)$ on every
# coordinate of $w$ ($w_D$ in the hybrid): without it $L_D$ has no maximum, because four
# points can be separated and the fit then runs off to zero widths. `boundaries.png` is the
# slides' figure for the first training set; `error_vs_alpha.png` the sweep, with error bars
# of one standard error and the medians dotted, and underneath each setting's *paired*
# difference from the better end (the luck of the training set is shared by all settings of
# a draw and cancels).

# %%
draws = pick(100, 6)
metrics = experiment.run_toy(figure_folder(__file__), seed=0, draws=draws, progress=False)
print(f"figures: {figure_folder(__file__)}/boundaries.png, error_vs_alpha.png")
for family, key in (("hybrid", "alpha"), ("blend", "lambda")):
    f = metrics[family]
    print(f"{f['label']}:")
    for v, e, s, med in zip(f[key], f["error_mean"], f["error_se"], f["error_median"], strict=True):
        print(f"  {key} = {v:<6g} test error {e:.4f} +- {s:.4f}, median {med:.4f}")
    b = f["best_inner"]
    print(
        f"  best in between: {key} = {b[key]:g}, error {b['error']:.4f}; minus the generative "
        f"end {b['minus_generative']:+.4f} +- {b['minus_generative_se']:.4f}, minus the "
        f"discriminative end {b['minus_discriminative']:+.4f} +- {b['minus_discriminative_se']:.4f}"
    )
print(f"{metrics['nonconverged_fits']} of {metrics['fits']} fits did not converge")

# %% [markdown]
# What the figures say (seed 0, 100 draws; your numbers are printed above):
#
# * The generative end (11.4%) is better than the discriminative one (13.0%) on average but
#   far above its own large-sample limit (8.5%): 200 unlabelled points through a wrong model
#   pull the fit around. The discriminative end has the widest error bars: four labels.
# * **The hybrid beats both ends.** Around $\alpha = 0.3$ its mean error is 10.7%, better
#   than the generative end by 0.7 points (six standard errors of the paired difference) and
#   than the discriminative end by 2.3 points (2.5 standard errors), as Bishop & Lasserre
#   report for their toy. Near $\alpha = 0$ the labels can nudge $w_D$ where the model of $x$
#   has it wrong, while $w_G$ keeps it anchored to the unlabelled points.
# * **Heavy tails.** Errors over training sets are far from Gaussian: in about one draw in
#   twenty the four labels sit so badly that the discriminative fit errs on more than 30% of
#   the test set, and those draws dominate its mean. The medians (dotted) tell the other half
#   of the story: the discriminative end's median (about 10%) is *below* the generative
#   end's (11%), and the best median is at $\alpha \approx 0.9$. The hybrid still beats both
#   ends, but where depends on what you average. Margins of two or three standard errors
#   also deserve a second look: with other seeds (`seed=1, 2`) the hybrid beats the
#   generative end by 0.8 points again but the discriminative end by only one to two
#   standard errors; with 300 draws (`draws=300`) the margins are 0.69 +- 0.07 and
#   1.7 +- 0.65 points.
# * **The blend does not.** It stays at the generative fit until $\lambda$ is of the order of
#   $4/204$, the ratio of labelled to all points, because $L_G$ sums over 204 points and $L_D$
#   over 4; below that it slides to the discriminative fit without a dip that stands out from
#   its error bars, in the mean or in the median. The blend reweights two objectives of one
#   $w$; the hybrid lets the classifier's parameters differ from the density model's by a
#   controlled amount, which is exactly what a misspecified model needs.
#
# ## When does generative training help?
#
# Everything above hangs on how wrong the model of $x$ is. We repeat the $\alpha$ sweep on
# three toys that differ only in the elongation of $\Sigma$: round classes (the model is
# right), the default, and long thin classes (the model is badly wrong).

# %%
toys = {
    "round (0.7 x 0.7): model right": toy.elongated_toy(0.7, 0.7),
    "default (0.9 x 0.5): mildly wrong": toy.elongated_toy(0.9, 0.5),
    "long (1.5 x 0.3): badly wrong": toy.elongated_toy(1.5, 0.3),
}
alphas = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0)
fig, ax = plotting.figure(figsize=(7, 4.5))
for i, (name, p) in enumerate(toys.items()):
    settings = experiment.ToySettings(
        problem=p, alphas=alphas, lambdas=(1.0, 0.0), test_per_class=5000
    )
    streams = np.random.SeedSequence(1).spawn(pick(40, 3) + 1)
    xt, yt = p.sample([settings.test_per_class] * 2, np.random.default_rng(streams[0]))
    train = [toy.draw_training_set(p, 2, 200, np.random.default_rng(st)) for st in streams[1:]]
    errors = experiment.sweep(
        lambda d, settings=settings, train=train, xt=xt, yt=yt: experiment.toy_draw(
            settings, train[d], xt, yt
        ),
        len(train),
        progress=False,
    )["hybrid"]
    s = experiment.summarize(errors)
    ax.errorbar(
        alphas, s["mean"], yerr=s["se"], fmt="o-", ms=4, capsize=2, color=f"C{i}", label=name
    )
    ax.axhline(toy.bayes_error(p), color=f"C{i}", ls=":", lw=1)
    print(
        f"{name}: " + ", ".join(f"{a:g}: {m:.3f}" for a, m in zip(alphas, s["mean"], strict=True))
    )
ax.set_xlabel("$\\alpha$ (0 generative, 1 discriminative)")
ax.set_ylabel("test error (dotted: Bayes error)")
ax.legend(fontsize=8)
ax.set_title(f"the hybrid on three toys, {len(train)} draws each, bars 1 SE", fontsize=10)
fig.tight_layout()
save(fig, __file__, "regimes")

# %% [markdown]
# Three regimes, one knob:
#
# * **Model right** (round classes): the generative end is close to the Bayes error and every
#   step towards $\alpha = 1$ costs accuracy. Generative training with unlabelled points is
#   the right tool; the four labels are only needed to name the clusters.
# * **Model mildly wrong** (the default): the hybrid's dip, as above.
# * **Model badly wrong** (long classes): an isotropic mixture fitted to long diagonal
#   clusters splits them the wrong way, and the generative end is far worse than four labels
#   used discriminatively. The curve falls all the way to $\alpha = 1$: here generative
#   training hurts, and the hybrid's best is to ignore it.
#
# ## On real digits
#
# *To be written with the generative ConvNet classifiers.* The same two sweeps on
# handwritten digits with a few labels per class: the generative batch gradient of Dai, Lu &
# Wu (lesson 4's $\ell_G$) blended with the discriminative one, and the coupled hybrid, on the
# ConvNet classifiers of lessons 4 and 13, drawn with the same `experiment.sweep` and
# `experiment.plot_sweep`.
#
# ## Summary
#
# * A classifier made of class densities can be trained generatively ($L_G$: all inputs,
#   labelled or not, through the model of $x$) or discriminatively ($L_D$: labels given
#   inputs). Its posterior is the softmax of the class scores, Eq. (2.3).
# * A misspecified model of $x$ biases the generative end however much data it sees (8.5%
#   against the Bayes 5.3% on the toy, exactly); the discriminative end is unbiased but, with
#   two labels per class, has a large variance.
# * The blend $\lambda L_G + (1 - \lambda) L_D$ only moves when $\lambda$ is comparable to
#   the ratio of labelled to all points, and on the toy never beats both ends.
# * Bishop & Lasserre's hybrid couples $w_D$ to $w_G$ by a prior of width $\sigma$; $w_D$
#   goes to the generative fit like $\sigma^2$ and to the discriminative one like
#   $1/\sigma^2$. With a mildly wrong model an intermediate $\alpha$ beats both ends; with a
#   right model the generative end is best, with a badly wrong one the discriminative end.
#
# ## Exercises
#
# 1. Show that $L_D$ is unchanged when both means move by the same vector $v$ and the
#    log-odds by $(|m_1 + v|^2 - |m_1|^2 - |m_0 + v|^2 + |m_0|^2) / 2s^2$ (equal widths).
#    How many such flat directions does $L_D$ have for two classes in 2-D, and what picks a
#    point on them?
# 2. Run the sweep with `prior_scale` 1 and 10 (`experiment.ToySettings`). Which end moves,
#    and why?
# 3. Replace $\sigma = \alpha/(1 - \alpha)$ by $\sigma^2 = \alpha/(1 - \alpha)$. Which
#    numbers of the sweep change, and which cannot?
# 4. With the default toy, give the learner 10 labelled points per class. Does the hybrid
#    still beat both ends?
# 5. Turn the long axis of $\Sigma$ to 0 degrees (`toy.elongated_toy(0.9, 0.5, 0.0)`): the
#    isotropic model's large-sample boundary is then the Bayes boundary. Is the model still
#    wrong for the generative end with unlabelled points? Measure it.
# 6. **Assignment:** `python -m lessons.assign 14 --out lesson14` — write the class scores
#    and their chain rule (`refimpl.hybrid.toy.class_log_joint`, `class_log_joint_vjp`), the
#    prior, the three likelihoods, $L_G$, $L_D$, the blend, the coupling prior and the hybrid
#    (`refimpl.hybrid.objectives`), each with its gradient; then run `python grade.py` in
#    that folder.
