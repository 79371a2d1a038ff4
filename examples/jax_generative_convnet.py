"""A generative ConvNet in JAX (channels-last), checked against refimpl's golden vectors.

Xie, Lu, Zhu & Wu, "A Theory of Generative ConvNet": the scoring function f(I) (Eq. (3.5)),
Langevin dynamics on p(I) ~ exp(f(I)) N(I; 0, sigma^2) (Eq. (6.10)) with injected noise,
and one learning iteration of Algorithm 1 / contrastive divergence (Eqs. (7.2)-(7.4)).
Pure functions of (params, images); gradients by jax.grad. JAX convolves NHWC images with
HWIO filters, so the natural golden set is written in that layout:

    python -m refimpl golden --out golden --layout nhwc
    python examples/jax_generative_convnet.py golden results [--float32]
    python -m refimpl crosscheck golden results \
        --cases conv,convnet,langevin,learning_ml,learning_cd

(an NCHW golden set works too: inputs and outputs are transposed). --broken makes one classic
mistake, which crosscheck then names in a hint: drift (Langevin drift eps^2 instead of
eps^2 / 2), flip (true convolution instead of cross-correlation), nhwc (outputs left in the
other layout than the golden set's), mask (a ReLU whose backward pass forgets 1(z > 0)).
"""

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)  # float64 unless --float32

CASES = ("conv", "convnet", "langevin", "learning_ml", "learning_cd")
BROKEN = ("drift", "flip", "nhwc", "mask")
JAX_AXES = {"NCHW": "NHWC", "TNCHW": "TNHWC", "OIHW": "HWIO"}  # file layout -> JAX's


def rearrange(array, source: str, target: str):
    """Move the axes named in ``source`` to the order named in ``target`` (e.g. NCHW -> NHWC)."""
    return np.transpose(array, [source.index(axis) for axis in target])


def model(layers, broken=None):
    """``(conv, top, score)`` of a ConvNet with ``layers`` (stride, pad, activation per layer)."""

    def conv(x, W, b, stride, pad):
        if broken == "flip":
            W = W[::-1, ::-1]  # HWIO: flip H and W
        y = jax.lax.conv_general_dilated(  # cross-correlation, as Eq. (2.1)
            x, W, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + b

    def relu(z):
        if broken == "mask":  # forward max(0, z), backward the identity: the mask is lost
            return z + jax.lax.stop_gradient(jnp.maximum(z, 0) - z)
        return jnp.maximum(z, 0)

    def top(params, I):
        x = I
        for layer, (W, b) in zip(layers, params):
            x = conv(x, W, b, layer["stride"], layer["pad"])
            x = relu(x) if layer["activation"] == "relu" else x
        return x

    def score(params, I):
        return top(params, I).sum(axis=(1, 2, 3))  # f(I) = sum_{k,x} [F_k^(L) * I](x), (3.5)

    return conv, top, score


def langevin(score, params, I, noise, eps, sigma, broken=None):
    """I <- I + (eps^2 / 2) (df/dI - I / sigma^2) + eps Z, Eq. (6.10)."""
    grad_input = jax.grad(lambda J: score(params, J).sum())
    drift = eps**2 if broken == "drift" else eps**2 / 2
    for Z in noise:
        I = I + drift * (grad_input(I) - I / sigma**2) + eps * Z
    return I


def learning_iteration(score, params, data, chains, noise, eps, sigma, rate, broken=None):
    """Algorithm 1 (chains = the persistent chains) or CD (chains = data): one iteration."""
    synthesized = langevin(score, params, chains, noise, eps, sigma, broken)
    mean_grad = jax.grad(lambda p, I: score(p, I).mean())  # H = (1/M) sum_m df(I_m)/dw
    mismatch = jax.tree.map(jnp.subtract, mean_grad(params, data), mean_grad(params, synthesized))
    return synthesized, mismatch, jax.tree.map(lambda p, m: p + rate * m, params, mismatch)


def run_case(name, settings, x, broken):
    """The outputs of case ``name`` from its inputs ``x`` (arrays in JAX's layouts)."""
    layers = settings.get("layers", [])
    conv, top, score = model(layers, broken)
    if name == "conv":
        s, p = settings["stride"], settings["pad"]
        y, pullback = jax.vjp(lambda *a: conv(*a, s, p), x["x"], x["weight"], x["bias"])
        return dict(zip(("y", "x_grad", "weight_grad", "bias_grad"), (y, *pullback(x["y_grad"]))))
    params = [(x[f"W{l}"], x[f"b{l}"]) for l in range(1, len(layers) + 1)]
    if name == "convnet":
        I = x["I"]
        out = dict(score=score(params, I), grad_I=jax.grad(lambda J: score(params, J).sum())(I))
        out["class_scores"] = top(params, I).sum(axis=(1, 2)) @ x["class_weights"].T  # (2.2)
        grads = jax.grad(lambda p: score(p, I).sum())(params)
        for l, (dW, db) in enumerate(grads, start=1):
            out[f"grad_W{l}"], out[f"grad_b{l}"] = dW, db
        return out
    eps, sigma = settings["step_size"], settings["sigma"]
    if name == "langevin":
        return dict(samples=langevin(score, params, x["I0"], x["noise"], eps, sigma, broken))
    chains = x["chains"] if settings["method"] == "ml" else x["data"]
    synthesized, mismatch, new = learning_iteration(
        score, params, x["data"], chains, x["noise"], eps, sigma, settings["learning_rate"], broken
    )
    out = dict(synthesized=synthesized)
    for l, ((mW, mb), (W, b)) in enumerate(zip(mismatch, new), start=1):
        out[f"mismatch_W{l}"], out[f"mismatch_b{l}"] = mW, mb
        out[f"W{l}_next"], out[f"b{l}_next"] = W, b
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("golden", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--float32", action="store_true", help="compute in float32")
    parser.add_argument("--broken", choices=BROKEN, help="make one classic mistake")
    args = parser.parse_args(argv)
    manifest = json.loads((args.golden / "manifest.json").read_text())
    dtype = jnp.float32 if args.float32 else jnp.float64
    args.out.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        case = manifest["cases"][name]
        arrays = np.load(args.golden / case["file"])
        axes = {k: v["axes"] for k, v in case["arrays"].items()}
        mine = {k: JAX_AXES.get(a, a) for k, a in axes.items()}
        x = {
            k: jnp.asarray(rearrange(arrays[k], axes[k], mine[k]), dtype=dtype)
            for k in arrays.files
            if case["arrays"][k]["role"] == "input"
        }
        results = {}
        for k, value in run_case(name, case["settings"], x, args.broken).items():
            target = axes[k]
            if args.broken == "nhwc":  # forgets to convert back: the other layout
                target = {"NCHW": "NHWC", "NHWC": "NCHW"}.get(target, target)
            results[k] = rearrange(np.asarray(value), mine[k], target)
        np.savez(args.out / case["file"], **results)
    print(f"wrote {', '.join(CASES)} to {args.out}")


if __name__ == "__main__":
    main()
