"""A generative ConvNet in PyTorch, checked against refimpl's golden vectors.

Xie, Lu, Zhu & Wu, "A Theory of Generative ConvNet": the scoring function f(I) (Eq. (3.5)),
Langevin dynamics on p(I) ~ exp(f(I)) N(I; 0, sigma^2) (Eq. (6.10)) with injected noise,
and one learning iteration of Algorithm 1 / contrastive divergence (Eqs. (7.2)-(7.4)).
Gradients come from autograd. It reads the golden inputs and writes its outputs in the
kit's format (RESULTS/CASE.npz, arrays named as in manifest.json):

    python -m refimpl golden --out golden
    python examples/torch_generative_convnet.py golden results [--float32]
    python -m refimpl crosscheck golden results \
        --cases conv,convnet,langevin,learning_ml,learning_cd

--broken makes one classic mistake, which crosscheck then names in a hint:
drift (Langevin drift eps^2 instead of eps^2 / 2), flip (true convolution instead of
cross-correlation), nhwc (outputs written channels-last into an NCHW golden set, or the
reverse), mask (a ReLU whose backward pass forgets the mask 1(z > 0)).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CASES = ("conv", "convnet", "langevin", "learning_ml", "learning_cd")
BROKEN = ("drift", "flip", "nhwc", "mask")
TORCH_AXES = {"NHWC": "NCHW", "TNHWC": "TNCHW", "HWIO": "OIHW"}  # file layout -> PyTorch's


def rearrange(array, source: str, target: str):
    """Move the axes named in ``source`` to the order named in ``target`` (e.g. NHWC -> NCHW)."""
    return np.transpose(array, [source.index(axis) for axis in target])


class GenerativeConvNet:
    """f(I; w) = sum of the top layer's outputs, each layer h(conv(x, W) + b), Eq. (2.1)."""

    def __init__(self, layers, params, broken=None):
        self.layers, self.params, self.broken = layers, params, broken

    def conv(self, x, W, b, stride, pad):
        if self.broken == "flip":
            W = W.flip(-2, -1)
        return F.conv2d(x, W, b, stride=stride, padding=pad)  # cross-correlation, as Eq. (2.1)

    def relu(self, z):
        if self.broken == "mask":  # forward max(0, z), backward the identity: the mask is lost
            return z + (F.relu(z) - z).detach()
        return F.relu(z)

    def top(self, I):
        """The top layer's feature maps F^(L) * I."""
        x = I
        for layer, (W, b) in zip(self.layers, self.params):
            x = self.conv(x, W, b, layer["stride"], layer["pad"])
            x = self.relu(x) if layer["activation"] == "relu" else x
        return x

    def score(self, I):
        return self.top(I).sum(dim=(1, 2, 3))  # f(I) = sum_{k,x} [F_k^(L) * I](x), Eq. (3.5)

    def grad_input(self, I):
        I = I.detach().requires_grad_()
        return torch.autograd.grad(self.score(I).sum(), I)[0]

    def grad_params(self, I):
        """d(sum_m f(I_m))/dw for every layer: [[dW, db], ...]."""
        flat = [p.detach().requires_grad_() for pair in self.params for p in pair]
        net = GenerativeConvNet(self.layers, list(zip(flat[::2], flat[1::2])), self.broken)
        grads = torch.autograd.grad(net.score(I).sum(), flat)
        return [list(grads[i : i + 2]) for i in range(0, len(grads), 2)]

    def langevin(self, I, noise, eps, sigma):
        """I <- I + (eps^2 / 2) (df/dI - I / sigma^2) + eps Z, Eq. (6.10)."""
        drift = eps**2 if self.broken == "drift" else eps**2 / 2
        for Z in noise:
            I = I + drift * (self.grad_input(I) - I / sigma**2) + eps * Z
        return I

    def learning_iteration(self, data, chains, noise, eps, sigma, rate):
        """Algorithm 1 (chains = the persistent chains) or CD (chains = data): one iteration."""
        synthesized = self.langevin(chains, noise, eps, sigma)
        h_obs, h_syn = self.grad_params(data), self.grad_params(synthesized)
        mismatch = [
            [o / len(data) - s / len(synthesized) for o, s in zip(po, ps)]
            for po, ps in zip(h_obs, h_syn)
        ]
        new = [[p + rate * m for p, m in zip(pp, mm)] for pp, mm in zip(self.params, mismatch)]
        return synthesized, mismatch, new


def run_case(name, settings, x, broken):
    """The outputs of case ``name`` from its inputs ``x`` (tensors in PyTorch's layouts)."""
    if name == "conv":
        inputs = [x["x"].requires_grad_(), x["weight"].requires_grad_(), x["bias"].requires_grad_()]
        net = GenerativeConvNet([], [], broken)
        y = net.conv(*inputs, settings["stride"], settings["pad"])
        grads = torch.autograd.grad((y * x["y_grad"]).sum(), inputs)
        return dict(zip(("y", "x_grad", "weight_grad", "bias_grad"), (y, *grads)))
    layers = settings["layers"]
    params = [[x[f"W{l}"], x[f"b{l}"]] for l in range(1, len(layers) + 1)]
    net = GenerativeConvNet(layers, params, broken)
    if name == "convnet":
        I = x["I"]
        out = dict(score=net.score(I), grad_I=net.grad_input(I))
        out["class_scores"] = net.top(I).sum(dim=(2, 3)) @ x["class_weights"].T  # Eq. (2.2)
        for l, (dW, db) in enumerate(net.grad_params(I), start=1):
            out[f"grad_W{l}"], out[f"grad_b{l}"] = dW, db
        return out
    eps, sigma = settings["step_size"], settings["sigma"]
    if name == "langevin":
        return dict(samples=net.langevin(x["I0"], x["noise"], eps, sigma))
    chains = x["chains"] if settings["method"] == "ml" else x["data"]
    synthesized, mismatch, new = net.learning_iteration(
        x["data"], chains, x["noise"], eps, sigma, settings["learning_rate"]
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
    dtype = torch.float32 if args.float32 else torch.float64
    args.out.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        case = manifest["cases"][name]
        arrays = np.load(args.golden / case["file"])
        axes = {k: v["axes"] for k, v in case["arrays"].items()}
        mine = {k: TORCH_AXES.get(a, a) for k, a in axes.items()}
        x = {
            k: torch.from_numpy(np.ascontiguousarray(rearrange(arrays[k], axes[k], mine[k])))
            for k in arrays.files
            if case["arrays"][k]["role"] == "input"
        }
        x = {k: v.to(dtype) if v.is_floating_point() else v for k, v in x.items()}
        results = {}
        for k, value in run_case(name, case["settings"], x, args.broken).items():
            target = axes[k]
            if args.broken == "nhwc":  # forgets to convert back: the other layout
                target = {"NCHW": "NHWC", "NHWC": "NCHW"}.get(target, target)
            results[k] = rearrange(value.detach().numpy(), mine[k], target)
        np.savez(args.out / case["file"], **results)
    print(f"wrote {', '.join(CASES)} to {args.out}")


if __name__ == "__main__":
    main()
