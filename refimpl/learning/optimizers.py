"""Gradient *ascent* on the log-likelihood, Xie et al. Eq. (7.2): the paper's plain step and Adam.

Pure functions: parameters are a list of ``(W, b)`` pairs (one per layer, bottom to top),
and each step returns new arrays instead of updating them in place, so that a learning
iteration can be computed completely before anything of the run changes (an interruption
then always finds the state of an iteration boundary).

Adam's state is a dict ``{layer: AdamMoments}``, kept per layer index so that layers can be
added (growing) or re-created (the top filter) without disturbing the others.
"""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adam")
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


def sgd_step(params, gradient, rates) -> list:
    """``w <- w + eta_l g_l`` per layer (Algorithm 1's update); a rate of 0 keeps a layer as is.

    Args:
        params: ``[(W, b), ...]``; not modified.
        gradient: ``[(gW, gb), ...]``, the ascent direction (e.g. the scaled ``H_obs - H_syn``).
        rates: one learning rate per layer.

    Returns:
        the new ``[(W, b), ...]`` (the same array objects for frozen layers).
    """
    return [
        (W, b) if rate == 0 else (W + rate * gW, b + rate * gb)
        for (W, b), (gW, gb), rate in zip(params, gradient, rates)
    ]


@dataclass(frozen=True)
class AdamMoments:
    """One layer's Adam state: the step count and the moment estimates of ``W`` and ``b``."""

    steps: int
    m_W: object
    v_W: object
    m_b: object
    v_b: object


def adam_step(
    params, gradient, rates, state: dict, beta1=ADAM_BETA1, beta2=ADAM_BETA2, eps=ADAM_EPS
):
    """Adam (Kingma & Ba) along the ascent direction, per layer: ``(new params, new state)``.

    ``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2``,
    ``w <- w + eta m_hat / (sqrt(v_hat) + eps)`` with the bias corrections
    ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)``. Layers with rate 0 are
    frozen and keep their state. Neither ``params`` nor ``state`` is modified.
    """
    new_params, new_state = [], dict(state)
    for layer, ((W, b), (gW, gb), rate) in enumerate(zip(params, gradient, rates)):
        if rate == 0:
            new_params.append((W, b))
            continue
        old = state.get(layer) or AdamMoments(0, 0 * W, 0 * W, 0 * b, 0 * b)
        t = old.steps + 1
        m_W, v_W = beta1 * old.m_W + (1 - beta1) * gW, beta2 * old.v_W + (1 - beta2) * gW * gW
        m_b, v_b = beta1 * old.m_b + (1 - beta1) * gb, beta2 * old.v_b + (1 - beta2) * gb * gb
        c1, c2 = 1 - beta1**t, 1 - beta2**t
        new_params.append(
            (
                W + rate * (m_W / c1) / ((v_W / c2) ** 0.5 + eps),
                b + rate * (m_b / c1) / ((v_b / c2) ** 0.5 + eps),
            )
        )
        new_state[layer] = AdamMoments(t, m_W, v_W, m_b, v_b)
    return new_params, new_state


def ascent_step(kind: str, params, gradient, rates, state: dict):
    """``(new params, new state)`` of optimizer ``kind`` (``"sgd"``: the state stays empty)."""
    if kind == "sgd":
        return sgd_step(params, gradient, rates), state
    if kind == "adam":
        return adam_step(params, gradient, rates, state)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {kind!r}")


def forget_layers(state: dict, layers) -> dict:
    """The state without the given layer indices (those layers were re-created)."""
    return {k: v for k, v in state.items() if k not in set(layers)}


def state_arrays(state: dict) -> dict:
    """Arrays to checkpoint: ``adam_{layer}_{W|b}_{m|v}``."""
    out = {}
    for layer, s in state.items():
        out[f"adam_{layer}_W_m"], out[f"adam_{layer}_W_v"] = s.m_W, s.v_W
        out[f"adam_{layer}_b_m"], out[f"adam_{layer}_b_v"] = s.m_b, s.v_b
    return out


def state_meta(kind: str, state: dict) -> dict:
    """The JSON part of the state: the optimizer and each layer's step count."""
    return {"kind": kind, "steps": {str(k): v.steps for k, v in state.items()}}


def load_state(meta: dict, arrays: dict, to_device) -> dict:
    """Rebuild the state from :func:`state_meta` and :func:`state_arrays`.

    ``to_device`` places the arrays. Raises ``KeyError`` naming the missing array when the
    checkpoint lacks one.
    """
    state = {}
    for key, steps in meta.get("steps", {}).items():
        layer = int(key)
        names = [f"adam_{layer}_{p}_{m}" for p in ("W", "b") for m in ("m", "v")]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise KeyError(f"optimizer state arrays missing: {', '.join(missing)}")
        m_W, v_W, m_b, v_b = (to_device(arrays[n]) for n in names)
        state[layer] = AdamMoments(int(steps), m_W, v_W, m_b, v_b)
    return state
