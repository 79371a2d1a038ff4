"""The golden cases: what each one computes, its arrays, and how refimpl computes it.

A case is drawn (:attr:`Case.build`, from a NumPy generator), computed
(:func:`compute_case`, with refimpl's public functions), and described in the manifest
(:func:`describe`). The same :func:`compute_case` recomputes a case from the inputs read
back from a golden file, with one of the common mistakes of :mod:`refimpl.crosscheck.mistakes`
applied, which is how the comparison recognises them.

Every image-space case uses one tiny ReLU ConvNet with strides and padding (2 input
channels, 8 x 7 images, layers 4 x 3 x 3 stride 2 pad 1, 3 x 3 x 3 pad 1, 2 x 2 x 2; at
most 36 products per output), images uniform in [-1, 1] (the scale of lab code; centred),
and ``sigma = 0.8`` for the reference ``q = N(0, sigma^2 I)`` (not 1, so that an
implementation that drops sigma is caught). Arrays here are canonical, NCHW images and OIHW
filters; :mod:`refimpl.crosscheck.fileformat` rearranges them for an NHWC golden set.

Host-only (NumPy generators, SciPy quantiles for the statistical cases).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from refimpl import conv
from refimpl.convnet import ConvLayer, ConvNet, basis_functions
from refimpl.crosscheck.mistakes import DRIFT_COEFFICIENT, sampler_model, scoring_for
from refimpl.exact import exact_distribution
from refimpl.learning import learning_iteration
from refimpl.learning.optimizers import sgd_step
from refimpl.models import (
    GenerativeModel,
    discriminative_log_likelihood,
    discriminative_score_gradient,
    generative_log_likelihood,
    generative_score_gradient,
    softmax_posterior,
)
from refimpl.numerics import CROSSCHECK_KS_ALPHA, DECISION_MARGIN
from refimpl.sampling import grade, langevin, mala

SIGMA = 0.8
IMAGE_SCALE = "pixels uniform in [-1, 1] (centred, the scale of lab code)"
IMAGE_SHAPE = (2, 8, 7)  # (C, H, W): two channels and H != W, so layout mistakes show
NET_LAYERS = (  # (out_channels, kernel, stride, pad, activation)
    (4, 3, 2, 1, "relu"),
    (3, 3, 1, 1, "relu"),
    (2, 2, 1, 0, "relu"),
)

LANGEVIN_STEP = "I[t+1] = I[t] + (eps**2 / 2) * (df/dI(I[t]) - I[t] / sigma**2) + eps * noise[t]"
LANGEVIN_UPDATE = (
    f"{LANGEVIN_STEP}, t = 0, ..., n_steps - 1 (Xie et al., Eq. (6.10)); eps = step_size"
)


@dataclass(frozen=True)
class ArraySpec:
    """One array of a case: its name, role, canonical axes and meaning.

    ``role`` is ``"input"`` (given to the implementation), ``"output"`` (compared) or
    ``"reference"`` (given, not compared: exact references for the user's own tests).
    ``compare`` says how an output is compared: ``"close"`` (to the tolerances),
    ``"exact"`` (booleans and integers), ``"ks"`` (statistically, against the exact law).
    """

    name: str
    role: str
    axes: str
    description: str
    compare: str = "close"


@dataclass(frozen=True)
class Case:
    """A golden case: the manifest text and the two functions behind it.

    ``build(rng) -> (settings, inputs)`` draws an instance; ``compute(settings, inputs,
    mistake) -> (outputs, scales)`` computes its outputs (``scales`` overrides the default
    ``max |output|`` where the output is a difference of larger terms); ``robustness(settings,
    inputs)`` returns the instance's margins to every discrete decision (pre-activations near
    0, MALA decisions, GRADE stops), all of which must be at least the limits of
    :mod:`refimpl.numerics`.
    """

    name: str
    computes: str
    equation: str
    arrays: tuple
    build: Callable
    compute: Callable
    mistakes: tuple = ()
    update: str | None = None
    robustness: Callable | None = None
    statistical: bool = False

    def specs(self, role: str | None = None) -> list:
        return [a for a in self.arrays if role is None or a.role == role]

    def spec(self, name: str) -> ArraySpec:
        for a in self.arrays:
            if a.name == name:
                return a
        raise KeyError(name)


# --- networks ------------------------------------------------------------------------------


def layer_arrays(n_layers: int, what: str = "the network's") -> list:
    """``W1, b1, ..., WL, bL``: the parameters of an ``n_layers`` network, as inputs."""
    out = []
    for l in range(1, n_layers + 1):
        out.append(ArraySpec(f"W{l}", "input", "OIHW", f"layer {l} filters of {what} ConvNet"))
        out.append(ArraySpec(f"b{l}", "input", "O", f"layer {l} biases"))
    return out


def layer_settings(layers) -> list:
    return [
        dict(out_channels=o, kernel=k, stride=s, pad=p, activation=a) for o, k, s, p, a in layers
    ]


def network(settings: dict, inputs: dict) -> ConvNet:
    """The ConvNet of a case: ``W1, b1, ...`` from ``inputs``, strides etc. from ``settings``."""
    return ConvNet(
        [
            ConvLayer(inputs[f"W{l}"], inputs[f"b{l}"], s["stride"], s["pad"], s["activation"])
            for l, s in enumerate(settings["layers"], start=1)
        ]
    )


def draw_network(rng, in_channels: int, layers, bias_shift: float = 0.1) -> dict:
    """He-initialised weights and ``N(0.1, 0.1^2)`` biases: ``{"W1": ..., "b1": ..., ...}``.

    The small positive bias shift keeps most units alive on images in [-1, 1].
    """
    net = ConvNet.random(in_channels, layers, seed=rng)
    out = {}
    for l, layer in enumerate(net.layers, start=1):
        out[f"W{l}"], out[f"b{l}"] = layer.weight, layer.bias + bias_shift
    return out


def images(rng, n: int, shape=IMAGE_SHAPE):
    return rng.uniform(-1.0, 1.0, (n,) + tuple(shape))


def kink_margin(net: ConvNet, batches) -> float:
    """Smallest ``|z| / max |z|`` over the ReLU pre-activations of every image in ``batches``.

    The maximum is taken per layer and batch; a float32 implementation cannot flip a unit
    whose pre-activation is this far from 0 (see :data:`refimpl.numerics.KINK_MARGIN`).
    """
    worst = math.inf
    for batch in batches:
        fwd = net.forward(batch)
        for layer, z in zip(net.layers, fwd.pre_activations):
            if layer.activation.name != "relu":
                continue
            top = float(np.abs(z).max())
            if top > 0:
                worst = min(worst, float(np.abs(z).min()) / top)
    return worst


def _states(model, I0, n_steps, step_size, noise):
    """The chains of a Langevin run at every step, ``[I_0, ..., I_n]``."""
    trace = []
    langevin(model, I0, n_steps, step_size, noise=noise, record=lambda t, I: trace.append(I))
    return trace


def _terms_max(*arrays) -> float:
    return max(float(np.abs(a).max()) for a in arrays)


# --- conv: Eq. (2.1), its adjoint and weight gradient ----------------------------------------


def _build_conv(rng):
    settings = dict(stride=2, pad=1, kernel=3, image_scale=IMAGE_SCALE)
    inputs = dict(
        x=rng.uniform(-1, 1, (2, 3, 8, 9)),
        weight=rng.normal(0, 1 / math.sqrt(27), (4, 3, 3, 3)),
        bias=rng.normal(0, 0.1, 4),
        y_grad=rng.normal(0, 1, (2, 4, 4, 5)),
    )
    return settings, inputs


def _compute_conv(settings, inputs, mistake=None):
    s, p, k = settings["stride"], settings["pad"], settings["kernel"]
    x, w, y_grad = inputs["x"], inputs["weight"], inputs["y_grad"]
    outputs = dict(
        y=conv.conv2d(x, w, inputs["bias"], s, p),
        x_grad=conv.conv2d_adjoint(y_grad, w, x.shape[2:], s, p),
        weight_grad=conv.conv2d_weight_grad(x, y_grad, k, s, p),
        bias_grad=conv.conv2d_bias_grad(y_grad),
    )
    return outputs, {}


CONV = Case(
    name="conv",
    computes=(
        "one strided, zero-padded convolution: forward y = w * x + b, its adjoint (the "
        "gradient of <y, y_grad> with respect to x: transposed convolution) and the gradients "
        "of <y, y_grad> with respect to w and b"
    ),
    equation=(
        "Xie et al., Eq. (2.1): y[n,o,i,j] = sum_{c,dy,dx} w[o,c,dy,dx] "
        "x_pad[n, c, stride*i + dy, stride*j + dx] + b[o]; adjoint as in (6.7); "
        "weight gradient as in (7.3)"
    ),
    arrays=(
        ArraySpec("x", "input", "NCHW", "input images (8 x 9: the last padded row is unused)"),
        ArraySpec("weight", "input", "OIHW", "filters"),
        ArraySpec("bias", "input", "O", "biases"),
        ArraySpec("y_grad", "input", "NCHW", "a gradient arriving at the output"),
        ArraySpec("y", "output", "NCHW", "conv2d(x, weight, bias)"),
        ArraySpec("x_grad", "output", "NCHW", "adjoint: d<conv2d(x, weight), y_grad>/dx"),
        ArraySpec("weight_grad", "output", "OIHW", "d<conv2d(x, weight), y_grad>/dweight"),
        ArraySpec("bias_grad", "output", "O", "sum of y_grad over n, i, j"),
    ),
    build=_build_conv,
    compute=_compute_conv,
    mistakes=("flip",),
)


# --- convnet: score, class scores, df/dI, df/dw ------------------------------------------------


def _build_convnet(rng):
    settings = dict(layers=layer_settings(NET_LAYERS), image_scale=IMAGE_SCALE)
    inputs = draw_network(rng, IMAGE_SHAPE[0], NET_LAYERS)
    inputs["I"] = images(rng, 3)
    inputs["class_weights"] = rng.normal(0, 1, (3, NET_LAYERS[-1][0]))
    return settings, inputs


def _compute_convnet(settings, inputs, mistake=None):
    net = network(settings, inputs)
    scoring = scoring_for(net, mistake)
    I, V = inputs["I"], inputs["class_weights"]
    f, grads = scoring.score_and_grad_params(I)
    if mistake == "batch-mean":
        grads = [(dW / len(I), db / len(I)) for dW, db in grads]
    outputs = dict(score=f, class_scores=net.class_scores(I, V), grad_I=scoring.grad_input(I))
    for l, (dW, db) in enumerate(grads, start=1):
        outputs[f"grad_W{l}"], outputs[f"grad_b{l}"] = dW, db
    # class scores are sums of features times weights of either sign: scale by |terms|
    features = net.forward(I).outputs[-1].sum(axis=(2, 3))
    return outputs, dict(class_scores=float((np.abs(features) @ np.abs(V).T).max()))


def _robust_images(settings, inputs):
    return dict(kink=kink_margin(network(settings, inputs), [inputs["I"]]))


def _grad_param_specs(n_layers: int, prefix: str, what: str) -> list:
    out = []
    for l in range(1, n_layers + 1):
        out.append(ArraySpec(f"{prefix}W{l}", "output", "OIHW", f"{what}, layer {l} filters"))
        out.append(ArraySpec(f"{prefix}b{l}", "output", "O", f"{what}, layer {l} biases"))
    return out


CONVNET = Case(
    name="convnet",
    computes=(
        "the scoring function f(I) of a 3-layer ReLU ConvNet with strides and padding, class "
        "scores, df/dI per image, and the gradients of sum_m f(I_m) with respect to every "
        "layer's filters and biases"
    ),
    equation=(
        "Xie et al., Eqs. (2.1), (2.2), (3.5): f(I) = sum_{k,x} [F_k^(L) * I](x), the sum of "
        "the top layer's outputs over channels and positions; df/dI = B, Eq. (9.2); "
        "df/dw, Eqs. (7.3)-(7.4)"
    ),
    arrays=tuple(
        layer_arrays(len(NET_LAYERS))
        + [
            ArraySpec("I", "input", "NCHW", "images"),
            ArraySpec("class_weights", "input", "KC", "class weights w_{c,k} on the top maps"),
            ArraySpec("score", "output", "N", "f(I_m; w) per image"),
            ArraySpec(
                "class_scores",
                "output",
                "NK",
                "f_c(I_m) = sum_k class_weights[c, k] sum_x [F_k^(L) * I_m](x), Eq. (2.2)",
            ),
            ArraySpec("grad_I", "output", "NCHW", "df(I_m)/dI_m per image"),
        ]
        + _grad_param_specs(len(NET_LAYERS), "grad_", "d(sum_m f(I_m))/dw, summed over the batch")
    ),
    build=_build_convnet,
    compute=_compute_convnet,
    mistakes=("flip", "relu-mask", "batch-mean"),
    robustness=_robust_images,
)


# --- pieces: activation patterns, the linear piece (alpha, B), basis functions -------------------


def _compute_pieces(settings, inputs, mistake=None):
    net = network(settings, inputs)
    I = inputs["I"]
    pattern = net.activation_pattern(I)
    if mistake == "relu-mask":
        alpha, B = net.piece_from_pattern([np.ones_like(d) for d in pattern], I.shape[1:])
    else:
        alpha, B = net.linear_piece(I)
    outputs = dict(alpha=alpha, B=B)
    for l, d in enumerate(pattern, start=1):
        outputs[f"pattern{l}"] = d
    for l, (a, b) in enumerate(basis_functions(net, I), start=1):
        outputs[f"basis_a{l}"], outputs[f"basis_b{l}"] = a, b
    return outputs, {}


def _piece_specs(n_layers: int) -> list:
    out = [
        ArraySpec("alpha", "output", "N", "alpha_{w,delta} of each image's piece, Eq. (6.8)"),
        ArraySpec("B", "output", "NCHW", "B_{w,delta} by top-down deconvolution, Eq. (6.7)"),
    ]
    for l in range(1, n_layers + 1):
        out.append(ArraySpec(f"pattern{l}", "output", "NCHW", f"delta^({l}) = 1(z > 0)", "exact"))
    for l in range(1, n_layers + 1):
        out.append(ArraySpec(f"basis_a{l}", "output", "NCHW", f"offsets a^({l}), Eq. (6.12)"))
        out.append(
            ArraySpec(
                f"basis_b{l}",
                "output",
                "NCHWchw",
                f"basis images b^({l})_(k,x): one image per unit, Eq. (6.13)",
            )
        )
    return out


PIECES = Case(
    name="pieces",
    computes=(
        "the piecewise-linear structure of section 6 on the same kind of network: activation "
        "patterns, the linear piece f(I) = alpha + <I, B> of each image, and the basis "
        "functions (offsets a and basis images b) of every layer"
    ),
    equation=(
        "Xie et al., Eqs. (6.4)-(6.8) (delta, top-down deconvolution, f = alpha + <I, B>) "
        "and (6.12)-(6.14) (basis functions: z^(l)_(k,x) = a^(l)_(k,x) + <I, b^(l)_(k,x)>)"
    ),
    arrays=tuple(
        layer_arrays(len(NET_LAYERS))
        + [ArraySpec("I", "input", "NCHW", "images")]
        + _piece_specs(len(NET_LAYERS))
    ),
    build=lambda rng: _build_convnet(rng),
    compute=_compute_pieces,
    mistakes=("flip", "relu-mask"),
    robustness=_robust_images,
)


# --- Langevin with given noise -------------------------------------------------------------------


def _build_langevin(rng, n_chains=4, n_steps=8, step_size=0.3):
    settings = dict(
        layers=layer_settings(NET_LAYERS),
        sigma=SIGMA,
        step_size=step_size,
        n_steps=n_steps,
        image_scale=IMAGE_SCALE,
    )
    inputs = draw_network(rng, IMAGE_SHAPE[0], NET_LAYERS)
    inputs["I0"] = images(rng, n_chains)
    inputs["noise"] = rng.standard_normal((n_steps, n_chains) + IMAGE_SHAPE)
    return settings, inputs


def _compute_langevin(settings, inputs, mistake=None):
    eps = settings["step_size"]
    model = sampler_model(network(settings, inputs), settings["sigma"], eps, mistake)
    noise = inputs["noise"] / eps if mistake == "noise-unscaled" else inputs["noise"]
    samples = langevin(model, inputs["I0"], settings["n_steps"], eps, noise=noise).samples
    return dict(samples=samples), {}


def _robust_langevin(settings, inputs):
    net = network(settings, inputs)
    model = GenerativeModel(net, settings["sigma"])
    states = _states(
        model, inputs["I0"], settings["n_steps"], settings["step_size"], inputs["noise"]
    )
    return dict(kink=kink_margin(net, states))


SAMPLER_MISTAKES = ("drift-eps2", "drift-eps", "drift-one", "sigma-one", "flip", "relu-mask")

LANGEVIN = Case(
    name="langevin",
    computes=(
        "n_steps of unadjusted Langevin dynamics on p(I) ~ exp(f(I)) q(I), q = N(0, sigma^2 I), "
        "for every chain of I0, with the given standard normal noise"
    ),
    equation="Xie et al., Eqs. (3.4), (5.6), (6.10)",
    update=LANGEVIN_UPDATE,
    arrays=tuple(
        layer_arrays(len(NET_LAYERS))
        + [
            ArraySpec("I0", "input", "NCHW", "start of each chain"),
            ArraySpec("noise", "input", "TNCHW", "standard normal draws noise[t] of step t"),
            ArraySpec("samples", "output", "NCHW", "I[n_steps]"),
        ]
    ),
    build=_build_langevin,
    compute=_compute_langevin,
    mistakes=SAMPLER_MISTAKES + ("noise-unscaled",),
    robustness=_robust_langevin,
)


# --- MALA with given noise and uniforms -------------------------------------------------------

MALA_UPDATE = (
    "J = I[t] + (eps**2 / 2) * g(I[t]) + eps * noise[t] with g(I) = df/dI - I / sigma**2; "
    "log r = U(I[t]) - U(J) + (|J - I[t] - (eps**2/2) g(I[t])|**2 - "
    "|I[t] - J - (eps**2/2) g(J)|**2) / (2 eps**2) with the energy U(I) = -f(I) + "
    "|I|**2 / (2 sigma**2); I[t+1] = J if log(uniforms[t]) < log r else I[t]; "
    "acceptance = (number of accepted proposals) / n_steps per chain"
)


def _build_mala(rng):
    settings, inputs = _build_langevin(rng, n_chains=4, n_steps=6, step_size=0.5)
    inputs["uniforms"] = rng.random((settings["n_steps"], len(inputs["I0"])))
    return settings, inputs


def _compute_mala(settings, inputs, mistake=None):
    eps, n = settings["step_size"], settings["n_steps"]
    model = sampler_model(network(settings, inputs), settings["sigma"], eps, mistake)
    if mistake == "no-metropolis":
        samples = langevin(model, inputs["I0"], n, eps, noise=inputs["noise"]).samples
        return dict(samples=samples, acceptance=np.ones(len(samples))), {}
    result = mala(model, inputs["I0"], n, eps, noise=inputs["noise"], uniforms=inputs["uniforms"])
    return dict(samples=result.samples, acceptance=result.acceptance), {}


def _robust_mala(settings, inputs):
    """Decisions: unchanged when log U moves by +-DECISION_MARGIN; kinks at states and proposals."""
    net = network(settings, inputs)
    model = GenerativeModel(net, settings["sigma"])
    eps, n = settings["step_size"], settings["n_steps"]
    trace = []
    base = mala(
        model,
        inputs["I0"],
        n,
        eps,
        noise=inputs["noise"],
        uniforms=inputs["uniforms"],
        record=lambda t, I: trace.append(I),
    )
    same = True
    for shift in (-DECISION_MARGIN, DECISION_MARGIN):
        moved = mala(
            model,
            inputs["I0"],
            n,
            eps,
            noise=inputs["noise"],
            uniforms=inputs["uniforms"] * math.exp(shift),
        )
        same = same and bool(np.array_equal(moved.acceptance, base.acceptance))
    # a MALA proposal from I[t] is one Langevin step with noise[t]
    proposals = [
        langevin(model, trace[t], 1, eps, noise=inputs["noise"][t : t + 1]).samples
        for t in range(n)
    ]
    accepted = float(base.acceptance.mean())
    return dict(
        kink=kink_margin(net, trace + proposals),
        decisions_robust=same,
        mixed=0.2 <= accepted <= 0.9,  # accepts and rejects, so both paths are tested
    )


MALA = Case(
    name="mala",
    computes=(
        "n_steps of Metropolis-adjusted Langevin on p(I) ~ exp(f(I)) q(I) for every chain of "
        "I0, with the given proposal noise and uniforms"
    ),
    equation="Xie et al., Eqs. (3.4), (6.10) as the proposal; Metropolis-Hastings correction",
    update=MALA_UPDATE,
    arrays=tuple(
        layer_arrays(len(NET_LAYERS))
        + [
            ArraySpec("I0", "input", "NCHW", "start of each chain"),
            ArraySpec("noise", "input", "TNCHW", "proposal noise noise[t] of step t"),
            ArraySpec("uniforms", "input", "TN", "uniform [0, 1) draw of step t and chain n"),
            ArraySpec("samples", "output", "NCHW", "I[n_steps]"),
            ArraySpec("acceptance", "output", "N", "fraction of accepted proposals per chain"),
        ]
    ),
    build=_build_mala,
    compute=_compute_mala,
    mistakes=("drift-eps2", "sigma-one", "flip", "relu-mask", "no-metropolis"),
    robustness=_robust_mala,
)


# --- GRADE to convergence ------------------------------------------------------------------------

GRADE_UPDATE = (
    "u[t] = (eps**2 / 2) * (df/dI(I[t]) - I[t] / sigma**2); a chain stops for good at the first "
    "t with |u[t]| <= tol * (|I[t]| + sigma) (norms over the whole image), without applying "
    "u[t]; otherwise I[t+1] = I[t] + u[t]; steps = updates applied; converged = stopped "
    "within max_steps"
)


def _build_grade(rng):
    settings = dict(
        layers=layer_settings(NET_LAYERS),
        sigma=SIGMA,
        step_size=0.9,
        tol=1e-4,
        max_steps=200,
        image_scale=IMAGE_SCALE,
    )
    inputs = draw_network(rng, IMAGE_SHAPE[0], NET_LAYERS)
    # Non-negative weights above the first layer make f convex (a ReLU of a non-negative
    # combination of convex functions is convex); with a general ReLU net GRADE can bounce
    # across a kink for ever, with f convex it settles in one piece.
    for l in range(2, len(NET_LAYERS) + 1):
        inputs[f"W{l}"] = np.abs(inputs[f"W{l}"])
    inputs["I0"] = images(rng, 3)
    return settings, inputs


def _run_grade(model, settings, inputs, tol):
    return grade(model, inputs["I0"], settings["max_steps"], settings["step_size"], tol=tol)


def _compute_grade(settings, inputs, mistake=None):
    net = network(settings, inputs)
    model = sampler_model(net, settings["sigma"], settings["step_size"], mistake)
    result = _run_grade(model, settings, inputs, settings["tol"])
    return dict(
        samples=result.samples,
        steps=result.chain_steps.astype(np.int64),
        converged=result.converged,
    ), {}


def _robust_grade(settings, inputs):
    net = network(settings, inputs)
    model = GenerativeModel(net, settings["sigma"])
    trace = []
    base = grade(
        model,
        inputs["I0"],
        settings["max_steps"],
        settings["step_size"],
        tol=settings["tol"],
        record=lambda t, I: trace.append(I),
    )
    same = True
    for factor in (1 - DECISION_MARGIN, 1 + DECISION_MARGIN):
        moved = _run_grade(model, settings, inputs, settings["tol"] * factor)
        same = same and bool(np.array_equal(moved.chain_steps, base.chain_steps))
    return dict(
        kink=kink_margin(net, trace), decisions_robust=same, mixed=bool(base.converged.all())
    )


GRADE = Case(
    name="grade",
    computes=(
        "GRADE attractor dynamics (the noise-free part of Langevin) from every chain of I0 "
        "until the stopping rule holds: gradient ascent on log p to an auto-encoding local "
        "mode (the filters above layer 1 are non-negative, so f is convex and GRADE settles)"
    ),
    equation="Xie et al., section 6 (GRADE after Eq. (6.10)), Proposition 2",
    update=GRADE_UPDATE,
    arrays=tuple(
        layer_arrays(len(NET_LAYERS))
        + [
            ArraySpec("I0", "input", "NCHW", "start of each chain"),
            ArraySpec("samples", "output", "NCHW", "where each chain stopped"),
            ArraySpec("steps", "output", "N", "updates applied per chain (int64)", "exact"),
            ArraySpec("converged", "output", "N", "stopping rule met per chain (bool)", "exact"),
        ]
    ),
    build=_build_grade,
    compute=_compute_grade,
    mistakes=("drift-eps2", "sigma-one", "flip", "relu-mask"),
    robustness=_robust_grade,
)


# --- one learning iteration: Algorithm 1 and contrastive divergence ------------------------------


def _learning_update(method: str) -> str:
    start = "chains" if method == "ml" else "data (contrastive divergence restarts there)"
    return (
        f"1. from {start}, n_steps Langevin steps {LANGEVIN_STEP} (eps = step_size) give "
        "synthesized; 2. H_obs = (1/M) sum_m df(data_m)/dw and H_syn = (1/M~) sum_m "
        "df(synthesized_m)/dw (both at the current w); mismatch = H_obs - H_syn; "
        "3. w_next = w + learning_rate * mismatch for every layer's filters and biases"
    )


def _build_learning(rng, method: str):
    n_data, n_chains, n_steps = (3, 4, 4) if method == "ml" else (3, 3, 2)
    settings = dict(
        layers=layer_settings(NET_LAYERS),
        method=method,
        sigma=SIGMA,
        step_size=0.3,
        n_steps=n_steps,
        learning_rate=0.05,
        normalise_by_area=False,
        image_scale=IMAGE_SCALE,
    )
    inputs = draw_network(rng, IMAGE_SHAPE[0], NET_LAYERS)
    inputs["data"] = images(rng, n_data)
    if method == "ml":  # persistent chains in the middle of a run (Algorithm 1 starts at 0)
        inputs["chains"] = 0.5 * images(rng, n_chains)
    inputs["noise"] = rng.standard_normal((n_steps, n_chains) + IMAGE_SHAPE)
    return settings, inputs


def _langevin_arguments(settings, inputs, mistake):
    """``(step_size, noise, sigma)`` that make refimpl's Langevin step commit ``mistake``.

    ``eps' = sqrt(2 c)`` turns the drift ``(eps'^2 / 2) g`` into ``c g``, and the noise
    ``noise * eps / eps'`` keeps ``eps' * noise' = eps * noise``.
    """
    eps, noise, sigma = settings["step_size"], inputs["noise"], settings["sigma"]
    if mistake in DRIFT_COEFFICIENT:
        new_eps = math.sqrt(2 * DRIFT_COEFFICIENT[mistake](eps))
        return new_eps, noise * (eps / new_eps), sigma
    if mistake == "noise-unscaled":
        return eps, noise / eps, sigma
    if mistake == "sigma-one":
        return eps, noise, 1.0
    return eps, noise, sigma


def _compute_learning_iteration(settings, inputs, mistake=None):
    net = network(settings, inputs)
    data = inputs["data"]
    chains = inputs.get("chains", data)
    eps, noise, sigma = _langevin_arguments(settings, inputs, mistake)
    it = learning_iteration(
        scoring_for(net, mistake),
        data,
        chains,
        noise,
        sigma,
        eps,
        settings["method"],
        normalise_by_area=settings["normalise_by_area"] or mistake == "area",
    )
    gradient = it.gradient
    if mistake == "descent":
        gradient = [(-gW, -gb) for gW, gb in gradient]
    rate = settings["learning_rate"]
    params = sgd_step(net.parameters(), gradient, [rate] * net.depth)
    outputs, scales = dict(synthesized=it.chains), {}
    # H_obs and H_syn are larger than their difference: scale the mismatch by them
    h_obs = net.grad_params(data)
    h_syn = net.grad_params(it.chains)
    for l, ((mW, mb), (W, b), (oW, ob), (sW, sb), layer) in enumerate(
        zip(it.mismatch, params, h_obs, h_syn, net.layers), start=1
    ):
        outputs[f"mismatch_W{l}"], outputs[f"mismatch_b{l}"] = mW, mb
        outputs[f"W{l}_next"], outputs[f"b{l}_next"] = W, b
        scale_W = _terms_max(oW / len(data), sW / len(it.chains))
        scale_b = _terms_max(ob / len(data), sb / len(it.chains))
        scales[f"mismatch_W{l}"], scales[f"mismatch_b{l}"] = scale_W, scale_b
        scales[f"W{l}_next"] = _terms_max(layer.weight) + rate * scale_W
        scales[f"b{l}_next"] = _terms_max(layer.bias) + rate * scale_b
    return outputs, scales


def _robust_learning(settings, inputs):
    net = network(settings, inputs)
    model = GenerativeModel(net, settings["sigma"])
    start = inputs.get("chains", inputs["data"])
    states = _states(model, start, settings["n_steps"], settings["step_size"], inputs["noise"])
    return dict(kink=kink_margin(net, [inputs["data"]] + states))


def _learning_arrays(method: str) -> tuple:
    n = len(NET_LAYERS)
    chains = (
        [ArraySpec("chains", "input", "NCHW", "the persistent chains I~ before the iteration")]
        if method == "ml"
        else []
    )
    out = (
        layer_arrays(n)
        + [ArraySpec("data", "input", "NCHW", "observed images I_m")]
        + chains
        + [
            ArraySpec("noise", "input", "TNCHW", "Langevin noise of the iteration"),
            ArraySpec("synthesized", "output", "NCHW", "the chains after n_steps"),
        ]
    )
    for l in range(1, n + 1):
        out.append(
            ArraySpec(f"mismatch_W{l}", "output", "OIHW", f"H_obs - H_syn, layer {l} filters")
        )
        out.append(ArraySpec(f"mismatch_b{l}", "output", "O", f"H_obs - H_syn, layer {l} biases"))
    for l in range(1, n + 1):
        out.append(ArraySpec(f"W{l}_next", "output", "OIHW", f"updated layer {l} filters"))
        out.append(ArraySpec(f"b{l}_next", "output", "O", f"updated layer {l} biases"))
    return tuple(out)


LEARNING_MISTAKES = SAMPLER_MISTAKES + ("noise-unscaled", "descent", "area")

LEARNING_ML = Case(
    name="learning_ml",
    computes=(
        "one iteration of Algorithm 1 (maximum likelihood): Langevin from the persistent "
        "chains, the moment mismatch H_obs - H_syn, the updated parameters"
    ),
    equation="Xie et al., Eqs. (7.2)-(7.4), Algorithm 1",
    update=_learning_update("ml"),
    arrays=_learning_arrays("ml"),
    build=lambda rng: _build_learning(rng, "ml"),
    compute=_compute_learning_iteration,
    mistakes=LEARNING_MISTAKES,
    robustness=_robust_learning,
)

LEARNING_CD = Case(
    name="learning_cd",
    computes=(
        "one iteration of contrastive divergence: Langevin started at the observed images, "
        "the moment mismatch H_obs - H_syn, the updated parameters"
    ),
    equation="Xie et al., section 7 (contrastive divergence, Eq. (7.5)), Eqs. (7.2)-(7.4)",
    update=_learning_update("cd"),
    arrays=_learning_arrays("cd"),
    build=lambda rng: _build_learning(rng, "cd"),
    compute=_compute_learning_iteration,
    mistakes=LEARNING_MISTAKES,
    robustness=_robust_learning,
)


# --- softmax and the batch log-likelihoods of Dai, Lu & Wu -------------------------------------


def _build_softmax(rng):
    n, k = 6, 3
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n - k)]).astype(np.int64)
    inputs = dict(
        scores=rng.normal(0, 2, (n, k)),
        labels=rng.permutation(labels),
        biases=rng.normal(0, 1, k),
    )
    return dict(), inputs


def _compute_softmax(settings, inputs, mistake=None):
    S, y = inputs["scores"], inputs["labels"]
    disc = (discriminative_log_likelihood, discriminative_score_gradient)
    gen = (generative_log_likelihood, generative_score_gradient)
    if mistake == "softmax-axis":
        disc, gen = gen, disc
    outputs = dict(
        posterior=softmax_posterior(S, None if mistake == "no-bias" else inputs["biases"]),
        # the log-likelihoods come back as Python floats: keep the scores' precision
        log_likelihood_discriminative=np.array(disc[0](S, y), dtype=S.dtype),
        log_likelihood_generative=np.array(gen[0](S, y), dtype=S.dtype),
        grad_discriminative=disc[1](S, y),
        grad_generative=gen[1](S, y),
    )
    # log-likelihoods are sums of scores and log-normalisers of either sign
    terms = float(np.abs(S).sum() + len(S) * np.log(S.shape[1]))
    scales = dict(log_likelihood_discriminative=terms, log_likelihood_generative=terms)
    return outputs, scales


SOFTMAX = Case(
    name="softmax",
    computes=(
        "the softmax posterior of the discriminative ConvNet, and Dai, Lu & Wu's "
        "discriminative and generative batch log-likelihoods with their gradients with "
        "respect to the scores"
    ),
    equation=(
        "Xie et al., Eq. (2.3): p(c | I) = exp(f_c + b_c) / sum_c' exp(f_c' + b_c'); Dai, Lu & "
        "Wu (2015), supplementary section A: l_D = sum_i log(exp S[i, y_i] / sum_c exp "
        "S[i, c]), l_G = sum_i log(exp S[i, y_i] / sum_j exp S[j, y_i])"
    ),
    arrays=(
        ArraySpec("scores", "input", "NK", "class scores S[i, c] = f_c(I_i)"),
        ArraySpec("labels", "input", "N", "labels y_i in [0, K) (int64)"),
        ArraySpec("biases", "input", "K", "biases b_c"),
        ArraySpec("posterior", "output", "NK", "p(c | I_i) with the biases, Eq. (2.3)"),
        ArraySpec("log_likelihood_discriminative", "output", "", "l_D (no biases)"),
        ArraySpec("log_likelihood_generative", "output", "", "l_G"),
        ArraySpec("grad_discriminative", "output", "NK", "dl_D/dS = 1(y_i = c) - p(c | I_i)"),
        ArraySpec(
            "grad_generative",
            "output",
            "NK",
            "dl_G/dS = 1(y_i = c) - n_c exp S[i, c] / sum_j exp S[j, c]",
        ),
    ),
    build=_build_softmax,
    compute=_compute_softmax,
    mistakes=("softmax-axis", "no-bias"),
)


# --- samplers without shared noise: statistical checks against the exact law ----------------------

SAMPLER_CHAINS = 10_000
SAMPLER_STEPS = 20
SAMPLER_STEP_FACTOR = 1.5  # eps = 1.5 sigma: ULA's O(eps^2) bias is plain at this n
SAMPLER_HIDDEN = 4  # hidden 1x1 ReLU filters per direction (top: one linear 1x1 filter)
CDF_POINTS = 8001
CDF_TAIL = 1e-12  # the tabulated range: where the CDF rises from 1e-12 to 1 - 1e-12
QUANTILE_LEVELS = np.arange(1, 1000) / 1000.0


def _factor_net(a, b, v, c) -> ConvNet:
    """The 1-D model ``g(t) = sum_u v_u relu(a_u t + b_u) + c`` as a ConvNet on 1x1 images."""
    h = len(a)
    return ConvNet(
        [
            ConvLayer(a.reshape(h, 1, 1, 1), b, activation="relu"),
            ConvLayer(v.reshape(1, h, 1, 1), np.array([c]), activation="linear"),
        ]
    )


def _build_sampler(rng, dim: int):
    """A generative ConvNet of 1x1 filters on ``dim``-channel 1x1 images whose exact law is known.

    ``f(I) = sum_j g_j(<d_j, I>)`` for orthonormal directions ``d_j`` (a random rotation in
    2-D) and 1-D ReLU models ``g_j`` (``SAMPLER_HIDDEN`` hidden units each). The reference
    ``q = N(0, sigma^2 I)`` factorises in the rotated coordinates, so ``p`` is the product of
    the 1-D laws ``p_j(t) ~ exp(g_j(t)) N(t; 0, sigma^2)``, each exact by
    :func:`refimpl.exact.exact_distribution` (with several pieces of real mass). The network
    is one hidden layer of ``dim * SAMPLER_HIDDEN`` 1x1 ReLU filters ``a_u d_j`` and a linear
    1x1 top filter.
    """
    if dim == 1:
        directions = np.ones((1, 1))
    else:
        theta = rng.uniform(0, np.pi / 2)
        directions = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    h = SAMPLER_HIDDEN
    laws, factors = [], []
    for _ in directions:
        while True:
            a, b = rng.normal(0, 1.5, h), rng.normal(0.3, 0.5, h)
            v, c = rng.normal(0, 1, h), 0.0
            law = exact_distribution(GenerativeModel(_factor_net(a, b, v, c), SIGMA), (1, 1, 1))
            if (law.probs > 0.05).sum() >= 3:  # at least three pieces carry real mass
                break
        laws.append(law)
        factors.append((a, b, v))
    inputs = dict(
        W1=np.concatenate([a[:, None] * d[None] for (a, _, _), d in zip(factors, directions)])[
            :, :, None, None
        ],
        b1=np.concatenate([b for _, b, _ in factors]),
        W2=np.concatenate([v for _, _, v in factors])[None, :, None, None],
        b2=np.zeros(1),
    )
    n = SAMPLER_CHAINS
    coordinates = np.stack([law.sample(n, rng)[:, 0] for law in laws], axis=1)  # (n, dim)
    inputs["start"] = (coordinates @ directions).reshape(n, dim, 1, 1)
    radius = max(law.radius for law in laws)
    coarse = np.linspace(-radius, radius, 20001)  # law.radius reaches e^-100: far too wide
    lo, hi = [], []
    for law in laws:
        F = law.cdf(coarse)
        lo.append(coarse[max(np.searchsorted(F, CDF_TAIL) - 1, 0)])
        hi.append(coarse[min(np.searchsorted(F, 1 - CDF_TAIL), len(coarse) - 1)])
    x = np.linspace(min(lo), max(hi), CDF_POINTS)
    inputs["projections"] = directions
    inputs["cdf_x"] = x
    inputs["cdf"] = np.stack([law.cdf(x) for law in laws])
    inputs["quantile_levels"] = QUANTILE_LEVELS
    inputs["quantiles"] = np.stack([np.interp(QUANTILE_LEVELS, F, x) for F in inputs["cdf"]])
    layers = [(dim * h, 1, 1, 0, "relu"), (1, 1, 1, 0, "linear")]
    settings = dict(
        layers=layer_settings(layers),
        sigma=SIGMA,
        step_size=SAMPLER_STEP_FACTOR * SIGMA,
        n_steps=SAMPLER_STEPS,
        n_chains=n,
        alpha=CROSSCHECK_KS_ALPHA,
        critical_value=float(stats.kstwo.isf(CROSSCHECK_KS_ALPHA / dim, n)),
        image_scale=f"1x1 images: points of R^{dim} as (n, {dim}, 1, 1) arrays",
    )
    return settings, inputs


def _compute_sampler(settings, inputs, mistake=None):
    return {}, {}


def _sampler_arrays(dim: int) -> tuple:
    return tuple(
        layer_arrays(2, "the low-dimensional")
        + [
            ArraySpec("start", "input", "NCHW", "exact draws from p: start each chain at one"),
            ArraySpec(
                "samples",
                "output",
                "NCHW",
                "each chain after n_steps of your sampler (your own random numbers)",
                "ks",
            ),
            ArraySpec(
                "projections",
                "reference",
                "PD",
                "orthonormal directions d_j, p a product along them",
            ),
            ArraySpec(
                "cdf_x",
                "reference",
                "X",
                "grid of points t (F < 1e-12 before it, > 1 - 1e-12 after)",
            ),
            ArraySpec(
                "cdf", "reference", "PX", "exact P(<d_j, I> <= t) on the grid, per direction"
            ),
            ArraySpec("quantile_levels", "reference", "Q", "levels 0.001, ..., 0.999"),
            ArraySpec("quantiles", "reference", "PQ", "exact quantiles of <d_j, I>"),
        ]
    )


def _sampler_case(dim: int) -> Case:
    law = "the exact law" if dim == 1 else "the product of exact 1-D laws along 2 directions"
    return Case(
        name=f"sampler_{dim}d",
        computes=(
            f"a statistical check of a sampler whose random numbers cannot be injected: a "
            f"{dim}-D generative ConvNet (1x1 filters on {dim}-channel 1x1 images; p is {law}); "
            "run n_steps of your sampler (MALA, or any sampler that leaves p invariant) with "
            "step_size from each exact start point, with your own random numbers; the final "
            "samples' projections <d_j, I> are compared with their exact CDFs by the "
            "Kolmogorov-Smirnov distance sup_t |F_n(t) - F(t)|, against critical_value, the "
            "(1 - alpha / P) quantile of its exact law for n_chains samples (P directions)"
        ),
        equation="Xie et al., Eq. (3.4); the exact law of Theorem 1 in one dimension",
        arrays=_sampler_arrays(dim),
        build=lambda rng: _build_sampler(rng, dim),
        compute=_compute_sampler,
        statistical=True,
    )


CASES = (
    CONV,
    CONVNET,
    PIECES,
    LANGEVIN,
    MALA,
    GRADE,
    LEARNING_ML,
    LEARNING_CD,
    SOFTMAX,
    _sampler_case(1),
    _sampler_case(2),
)
CASES_BY_NAME = {case.name: case for case in CASES}


def get_case(name: str) -> Case:
    """The :class:`Case` called ``name``; ``KeyError`` naming the cases otherwise."""
    try:
        return CASES_BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"no golden case {name!r}; the cases are {', '.join(CASES_BY_NAME)}"
        ) from None


# --- computing a case, with or without a mistake ---------------------------------------------


def flip_filters(arrays: dict, case: Case) -> dict:
    """Every OIHW array flipped in both spatial axes (the others as they are)."""
    out = dict(arrays)
    for spec in case.arrays:
        if spec.axes == "OIHW" and spec.name in out:
            out[spec.name] = np.ascontiguousarray(out[spec.name][..., ::-1, ::-1])
    return out


def compute_case(case: Case, settings: dict, inputs: dict, mistake: str | None = None):
    """``(outputs, scales)`` of ``case`` on ``inputs``, as refimpl computes it or with ``mistake``.

    ``flip`` is the same for every case: flip the filters going in, compute, and flip every
    weight-shaped result coming out (the gradient with respect to a kernel used flipped is
    the flipped gradient). The other mistakes are the case's own (:attr:`Case.mistakes`).
    """
    if mistake == "flip":
        outputs, scales = case.compute(settings, flip_filters(inputs, case), None)
        return flip_filters(outputs, case), scales
    return case.compute(settings, inputs, mistake)


def as_float32(inputs: dict) -> dict:
    """The inputs a float32 implementation computes with: floats cast, integers kept."""
    return {
        k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in inputs.items()
    }


def describe(case: Case) -> dict:
    """The manifest's text for ``case`` (without the arrays' shapes and tolerances)."""
    out = dict(computes=case.computes, equation=case.equation)
    if case.update:
        out["update"] = case.update
    if case.mistakes:
        out["recognised_mistakes"] = list(case.mistakes)
    return out
