"""Gradient *ascent* on the log-likelihood: the paper's plain step and Adam.

Parameters are a list of ``(W, b)`` pairs (one per layer, bottom to top), updated in place.
State is kept per layer index so that layers can be added (growing) or re-created (the top
filter) without disturbing the others.
"""

from __future__ import annotations


class Ascent:
    """``w <- w + eta_l * step(g)`` per layer ``l``: ``step(g) = g`` (SGD, Algorithm 1) or Adam's.

    Adam (Kingma & Ba) with the usual ``beta1 = 0.9``, ``beta2 = 0.999``, ``eps = 1e-8``, applied
    to the ascent direction ``g = H_obs - H_syn``, the Monte Carlo estimate of Eq. (7.2).
    """

    def __init__(
        self, kind: str = "sgd", beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ):
        if kind not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {kind!r}")
        self.kind, self.beta1, self.beta2, self.eps = kind, beta1, beta2, eps
        self.moments: dict = {}  # layer -> [(m_W, v_W), (m_b, v_b)]
        self.steps: dict = {}  # layer -> Adam step count

    def reset_layer(self, layer: int):
        """Forget the state of one layer (it was re-created)."""
        self.moments.pop(layer, None)
        self.steps.pop(layer, None)

    def step(self, params, grads, rates):
        """Update ``params`` in place along ``grads`` with per-layer ``rates`` (0 = frozen)."""
        for layer, ((W, b), (gW, gb), rate) in enumerate(zip(params, grads, rates)):
            if rate == 0:
                continue
            if self.kind == "sgd":
                W += rate * gW
                b += rate * gb
                continue
            t = self.steps.get(layer, 0) + 1
            self.steps[layer] = t
            state = self.moments.setdefault(layer, [(0 * W, 0 * W), (0 * b, 0 * b)])
            for i, (p, g) in enumerate(((W, gW), (b, gb))):
                m, v = state[i]
                m = self.beta1 * m + (1 - self.beta1) * g
                v = self.beta2 * v + (1 - self.beta2) * g * g
                state[i] = (m, v)
                m_hat = m / (1 - self.beta1**t)
                v_hat = v / (1 - self.beta2**t)
                p += rate * m_hat / (v_hat**0.5 + self.eps)

    def state_arrays(self) -> dict:
        """Arrays to checkpoint: ``adam_{layer}_{W|b}_{m|v}``."""
        out = {}
        for layer, pairs in self.moments.items():
            for name, (m, v) in zip(("W", "b"), pairs):
                out[f"adam_{layer}_{name}_m"] = m
                out[f"adam_{layer}_{name}_v"] = v
        return out

    def state_meta(self) -> dict:
        return {"kind": self.kind, "steps": {str(k): v for k, v in self.steps.items()}}

    def load(self, meta: dict, arrays: dict, to_device):
        """Restore from :meth:`state_meta` and :meth:`state_arrays` (``to_device`` places arrays)."""
        self.steps = {int(k): int(v) for k, v in meta.get("steps", {}).items()}
        self.moments = {}
        for layer in self.steps:
            self.moments[layer] = [
                (to_device(arrays[f"adam_{layer}_{n}_m"]), to_device(arrays[f"adam_{layer}_{n}_v"]))
                for n in ("W", "b")
            ]
