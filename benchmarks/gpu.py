"""The device check: refimpl on a GPU (CuPy), in one command sized to finish within 8 minutes.

    python benchmarks/gpu.py                         # a machine with an NVIDIA GPU and CuPy
    python benchmarks/gpu.py --backend strict --quick   # the same code path on the CPU (tests)
    python benchmarks/gpu.py --flops                 # the presets' FLOP counts (no device)

Stages, each announced by a progress line and kept within a time budget (``--budget``,
default 420 s: stages that would not fit are skipped and reported as skipped):

1. **identities on the device**: Eq. (6.8) ``f = alpha + <I, B>``, ``B`` by backprop =
   top-down deconvolution (6.7) = basis functions (6.13), the adjoint identity
   ``<conv(x), y> = <x, conv^T(y)>`` and naive == fast for the three kernels, on small
   random networks with strides and padding (bound ``refimpl.numerics.EXACT``); float32
   against float64 (bound ``FLOAT32``).
2. **NumPy vs device**: the texture preset's network (3 layers, 64 x 64, 16 chains), the
   same parameters, images and injected noise on both backends: score, df/dI, df/dw, 10
   Langevin steps and one learning iteration. Bound: the worst-case rounding of the sums
   involved (:func:`device_tolerance`), as two correct implementations may order them
   differently (cuBLAS vs OpenBLAS).
3. **throughput**: the convolution kernels at the paper's three layer shapes (batch 16)
   and one learning iteration of the ``texture-paper`` network (all 3 layers), in float32
   and float64, in GFLOP/s (``2 N O C k^2 H_out W_out`` per kernel), next to the device's
   square-GEMM rate and, when PyTorch with CUDA is installed, PyTorch's.
4. **texture-paper, timed**: the preset for ``--iterations`` iterations per growing stage
   (a real run folder under ``--run-dir``, samples included), each iteration timed; the
   projected time of the full preset (700 iterations per layer) from the per-stage medians.
5. **verify --quick on the device**: every theorem check, with the models on the device.
6. **peak device memory** of each stage (CuPy's memory pool high-water mark; not
   measured on the CPU stand-in).

Results go to ``benchmarks/results/gpu.{md,json}`` (``gpu-quick.*`` for ``--quick``) with
the device's name. Exit status: 0 when every check passed, 1 when one failed, 2 when CuPy
or the GPU is missing (nothing is written then).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import shlex
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a clone: refimpl without installing
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py, when imported
from common import cpu_model, iteration_flops  # noqa: E402  (shared with the other benchmarks)

from refimpl import ConvNet, backend, conv  # noqa: E402
from refimpl.conv import naive  # noqa: E402
from refimpl.conv.geometry import ConvGeometry  # noqa: E402
from refimpl.convnet import basis_functions, piece_from_basis  # noqa: E402
from refimpl.learning import Trainer, runs  # noqa: E402
from refimpl.learning.presets import PRESETS, preset_config  # noqa: E402
from refimpl.models import GenerativeModel  # noqa: E402
from refimpl.numerics import (  # noqa: E402
    EXACT,
    FLOAT32,
    inner_residual,
    piece_residual,
    relative_error,
    sum_rounding_bound,
)
from refimpl.sampling import langevin  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_BUDGET = 420.0  # seconds: 7 of the 8 minutes, the rest for start-up and kernel builds
PAPER_LAYERS = {  # the paper's first texture network, batch 16 (as benchmarks/conv.py)
    "L1": ((16, 3, 224, 224), (100, 3, 15, 15), 3),
    "L2": ((16, 100, 70, 70), (64, 100, 5, 5), 1),
    "L3": ((16, 64, 66, 66), (30, 64, 3, 3), 1),
}
QUICK_LAYERS = {
    "L1": ((2, 3, 48, 48), (8, 3, 15, 15), 3),
    "L2": ((2, 8, 12, 12), (8, 8, 5, 5), 1),
    "L3": ((2, 8, 8, 8), (4, 8, 3, 3), 1),
}
OPS = {"forward": "forward", "grad_input": "adjoint", "grad_weight": "weight_grad"}
DTYPES = ("float64", "float32")
LANGEVIN_STEPS = 10
STAGES = (
    "identities",
    "numpy_vs_device",
    "conv_throughput",
    "iteration_throughput",
    "preset",
    "verify",
)


# --- the device ------------------------------------------------------------------------------


@dataclass
class Device:
    """The backend under test: its namespace, a synchronising barrier, name and memory probe."""

    name: str  # backend name
    xp: object
    description: str
    total_memory: float | None  # bytes
    details: dict = field(default_factory=dict)

    def sync(self):
        """Wait for the device to finish queued work (timings must include it)."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def reset_peak(self):
        """Start a new peak-memory measurement (frees CuPy's cached blocks)."""
        if self.name == "cupy":
            self.sync()
            self.xp.get_default_memory_pool().free_all_blocks()

    def peak_bytes(self) -> float | None:
        """Peak device memory since :meth:`reset_peak`: CuPy's pool total (the pool keeps
        freed blocks until ``free_all_blocks``, so its total is at least the peak in use).
        None on the CPU stand-in, which has no device memory."""
        if self.name == "cupy":
            self.sync()
            return float(self.xp.get_default_memory_pool().total_bytes())
        return None


class NoDevice(RuntimeError):
    """CuPy or the GPU is missing: the message says what to do."""


def open_device(name: str) -> Device:
    """The backend ``name`` ("cupy", or "strict", the CPU stand-in of tests/strict_backend.py)."""
    if name == "strict":
        sys.path.insert(0, str(ROOT / "tests"))
        import strict_backend

        strict_backend.register()
        return Device(
            "strict",
            strict_backend.namespace,
            f"strict backend: CuPy stand-in on the CPU ({cpu_model()})",
            None,
            {"note": "no GPU: numbers show the code path works, not GPU speed"},
        )
    try:
        xp = backend.get_namespace(name)
    except backend.BackendError as exc:
        raise NoDevice(str(exc)) from exc
    runtime = xp.cuda.runtime
    device_id = xp.cuda.Device().id
    props = runtime.getDeviceProperties(device_id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    total = float(props["totalGlobalMem"])
    details = {
        "gpu": gpu,
        "compute_capability": f"{props['major']}.{props['minor']}",
        "memory_gib": total / 2**30,
        "cuda_runtime": runtime.runtimeGetVersion(),
        "cuda_driver": runtime.driverGetVersion(),
        "cupy": xp.__version__,
    }
    return Device(name, xp, f"{gpu} ({total / 2**30:.1f} GiB)", total, details)


def load_torch(enabled: bool, device: Device):
    """PyTorch when installed with CUDA and the device is a GPU; else None and the reason."""
    if not enabled:
        return None, "disabled (--no-torch)"
    if device.name != "cupy":
        return None, "not compared on the CPU stand-in"
    try:
        import torch
    except ImportError:
        return None, "not installed"
    if not torch.cuda.is_available():
        return None, f"{torch.__version__} without CUDA"
    # like for like: refimpl's float32 is full float32 (CuPy uses TF32 only with CUPY_TF32=1),
    # while PyTorch's cuDNN convolutions default to TF32 (a 10-bit mantissa)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch, f"{torch.__version__}, CUDA {torch.version.cuda}, TF32 off"


# --- timing and the budget -------------------------------------------------------------------


class Budget:
    """Wall-clock budget of the whole run; stages ask before starting work they cannot finish."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


def timed(fn, sync, repeats: int, budget: Budget | None = None) -> dict:
    """Seconds of ``fn()`` (device synchronised before and after): one warm-up, then up to
    ``repeats`` samples (fewer if the budget runs short; at least one). Best and median."""
    sync()
    t0 = time.perf_counter()
    result = fn()
    sync()
    warmup = time.perf_counter() - t0
    samples = []
    while len(samples) < repeats and (not samples or budget is None or budget.allows(2 * warmup)):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return dict(
        warmup_s=warmup,
        best_s=min(samples),
        median_s=statistics.median(samples),
        samples=len(samples),
        result=result,
    )


def progress(text: str):
    print(text, flush=True)


# --- FLOP counts (host arithmetic only) ------------------------------------------------------


def preset_flops(name: str) -> dict:
    """FLOPs of every growing stage of preset ``name`` and of the whole run."""
    config = preset_config(name)
    images = runs.load_training_images(config)
    per_stage = [
        iteration_flops(config, s, images.shape, len(images)) for s in range(1, config.stages + 1)
    ]
    return dict(
        preset=name,
        images=list(images.shape),
        iterations_per_stage=config.iterations_per_layer,
        flops_per_iteration=per_stage,
        total_flops=sum(f * config.iterations_per_layer for f in per_stage),
    )


# --- checks ----------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    residual: float
    bound: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.residual) and self.residual <= self.bound


def identity_networks(name: str, quick: bool):
    """Small random networks on the device with strides, padding and a linear top, and images."""
    specs = [
        [(4, 3, 1, 1), (5, 3, 2, 0), (3, 2, 1, 0, "linear")],
        [(6, 5, 2, 2), (4, 3, 1, 1), (2, 3, 1, 0)],
    ]
    shapes = [(3, 2, 11, 11), (2, 1, 12, 12)]
    rng = np.random.default_rng(0)
    for i, (spec, shape) in enumerate(zip(specs, shapes)):
        net = ConvNet.random(shape[1], spec, seed=i, bias_std=0.3, backend=name)
        for layer in net.layers:  # a positive bias mean keeps units alive (tests/strategies.py)
            layer.bias += 0.1
        yield net, backend.to_backend(rng.standard_normal(shape), name)
        if quick:
            return


def stage_identities(device: Device, quick: bool) -> list:
    """Stage 1: the engine's identities and naive == fast, on the device."""
    xp, checks = device.xp, []
    worst = {"piece": 0.0, "three": 0.0, "adjoint": 0.0, "naive": 0.0, "f32": 0.0}
    for net, I in identity_networks(device.name, quick):
        f = net.score(I)
        alpha, B = net.linear_piece(I)
        worst["piece"] = max(worst["piece"], piece_residual(f, alpha, B, I))
        top = net.activation_pattern(I)[-1]
        alpha_b, B_b = piece_from_basis(basis_functions(net, I)[-1], top)
        B_bp = net.grad_input(I)
        worst["three"] = max(
            worst["three"],
            relative_error(B, B_bp),
            relative_error(B_b, B_bp),
            relative_error(alpha_b, alpha),
        )
        rng = np.random.default_rng(1)
        shape = I.shape
        for layer, geom in zip(net.layers, net.geometries(I.shape)):
            x = backend.to_backend(rng.standard_normal(shape), xp)
            y = backend.to_backend(rng.standard_normal(geom.output_shape), xp)
            w = layer.weight
            fx = conv.conv2d(x, w, stride=geom.stride, pad=geom.pad)
            aty = conv.conv2d_adjoint(y, w, shape[2:], geom.stride, geom.pad)
            worst["adjoint"] = max(worst["adjoint"], inner_residual(fx * y, x * aty))
            # naive loops launch kernels per output position: a slice of batch 1, 2 filters
            out = min(2, geom.out_channels)
            small = ConvGeometry(
                1,
                geom.in_channels,
                geom.height,
                geom.width,
                out,
                geom.kernel,
                geom.stride,
                geom.pad,
            )
            xs, ws, ys = x[:1], w[:out], y[:1, :out]
            for op in OPS.values():
                args = {"forward": (xs, ws), "adjoint": (ys, ws), "weight_grad": (xs, ys)}[op]
                fast_out = getattr(conv.fast, op)(small, *args)
                naive_out = getattr(naive, op)(small, *args)
                worst["naive"] = max(worst["naive"], relative_error(fast_out, naive_out))
            shape = geom.output_shape
        single = net.to(dtype="float32")
        worst["f32"] = max(
            worst["f32"], relative_error(single.grad_input(I.astype("float32")), B_bp)
        )
    checks += [
        Check("f = alpha + <I, B>, Eq. (6.8)", worst["piece"], EXACT),
        Check("B: backprop = deconvolution (6.7) = basis functions (6.13)", worst["three"], EXACT),
        Check("<conv(x), y> = <x, conv^T(y)>", worst["adjoint"], EXACT),
        Check("naive == fast (forward, adjoint, weight gradient)", worst["naive"], EXACT),
        Check("float32 vs float64 df/dI", worst["f32"], FLOAT32),
    ]
    return checks


def device_tolerance(net, batch: int, image_shape) -> float:
    """Worst-case float64 rounding gap of two orderings of this network's sums (Higham's
    ``gamma_n``, :func:`refimpl.numerics.sum_rounding_bound`): per layer the ``C k^2`` products
    of an output and the ``M H_l W_l`` terms of a weight gradient, twice (two computations)."""
    total = 0.0
    for g in net.geometries((batch,) + tuple(image_shape)):
        products = g.in_channels * g.kernel**2
        total += sum_rounding_bound(products) + sum_rounding_bound(
            batch * g.out_height * g.out_width
        )
    return max(EXACT, 2 * total)


def _flat_pairs(pairs) -> list:
    return [a for pair in pairs for a in pair]


def stage_numpy_vs_device(device: Device, quick: bool) -> list:
    """Stage 2: the same network, images and noise on NumPy and on the device."""
    xp = device.xp
    size = 8 if quick else 64
    config = preset_config("texture", size=size, iterations_per_layer=1, dtype="float64")
    config.chains = 2 if quick else 16
    data, _, _ = runs.prepare(config)
    host_trainer = Trainer(config, data)
    config_device = preset_config("texture", size=size, iterations_per_layer=1, dtype="float64")
    config_device.chains, config_device.backend = config.chains, device.name
    dev_trainer = Trainer(config_device, data)
    for trainer in (host_trainer, dev_trainer):  # the full 3-layer network
        for stage in range(2, config.stages + 1):
            trainer.enter_stage(stage)
    net, dnet = host_trainer.net, dev_trainer.net
    rng = np.random.default_rng(0)
    images = float(data.std()) * rng.standard_normal((config.chains,) + data.shape[1:])
    dimages = backend.to_backend(images, xp)
    tol = device_tolerance(net, config.chains, data.shape[1:])
    tol_chains = (LANGEVIN_STEPS + 1) * tol  # each step adds one engine error; the rest contracts

    def gap(ours, theirs):
        return relative_error(ours, backend.to_numpy(theirs))

    checks = [
        Check("score f(I)", gap(net.score(images), dnet.score(dimages)), tol),
        Check("df/dI", gap(net.grad_input(images), dnet.grad_input(dimages)), tol),
        Check(
            "df/dw",
            max(
                gap(a, b)
                for a, b in zip(
                    _flat_pairs(net.grad_params(images)), _flat_pairs(dnet.grad_params(dimages))
                )
            ),
            tol,
        ),
    ]
    noise = rng.standard_normal((LANGEVIN_STEPS,) + images.shape)
    eps = config.step_size
    ours = langevin(GenerativeModel(net, config.sigma), images, LANGEVIN_STEPS, eps, noise=noise)
    theirs = langevin(
        GenerativeModel(dnet, config.sigma),
        dimages,
        LANGEVIN_STEPS,
        eps,
        noise=backend.to_backend(noise, xp),
    )
    checks.append(
        Check("10 Langevin steps (chains)", gap(ours.samples, theirs.samples), tol_chains)
    )
    noise = rng.standard_normal((config.langevin_steps,) + host_trainer.chains.shape)
    it, _, params, _ = host_trainer.compute_step(noise)
    dit, _, dparams, _ = dev_trainer.compute_step(backend.to_backend(noise, xp))
    # the ascent direction is a difference of moments: its gap is measured against H_obs
    scale = math.sqrt(
        sum(float((w**2).sum() + (b**2).sum()) for w, b in host_trainer.net.grad_params(data))
    )
    direction_gap = math.sqrt(
        sum(
            float(((a - backend.to_numpy(b)) ** 2).sum())
            for a, b in zip(_flat_pairs(it.mismatch), _flat_pairs(dit.mismatch))
        )
    ) / max(scale / len(data), 1e-300)
    checks += [
        Check("learning iteration: chains", gap(it.chains, dit.chains), tol_chains),
        Check("learning iteration: H_obs - H_syn (vs |H_obs|)", direction_gap, tol_chains),
        Check(
            "learning iteration: new parameters",
            max(gap(a, b) for a, b in zip(_flat_pairs(params), _flat_pairs(dparams))),
            tol_chains,
        ),
    ]
    return checks


# --- throughput ------------------------------------------------------------------------------


def torch_conv(torch, op: str, x, w, y, stride: int):
    fn = torch.nn.functional.conv2d
    if op == "forward":
        return lambda: fn(x, w, stride=stride)
    if op == "grad_input":
        return lambda: torch.nn.grad.conv2d_input(x.shape, w, y, stride=stride)
    return lambda: torch.nn.grad.conv2d_weight(x, w.shape, y, stride=stride)


def stage_conv_throughput(device: Device, torch, quick: bool, budget: Budget) -> list:
    """Stage 3a: GFLOP/s of the three kernels at the paper's layer shapes, and square GEMM."""
    xp, rows = device.xp, []
    layers = QUICK_LAYERS if quick else PAPER_LAYERS
    repeats = 2 if quick else 5
    for dtype in DTYPES:
        n = 256 if quick else 4096
        a = backend.to_backend(np.random.default_rng(0).standard_normal((n, n)), xp, dtype)
        gemm = timed(lambda a=a: xp.matmul(a, a), device.sync, repeats, budget)
        gemm_rate = 2 * n**3 / gemm["best_s"] / 1e9
        for layer, (x_shape, w_shape, stride) in layers.items():
            if not budget.allows(20):
                return rows
            geom = conv.conv_geometry(x_shape, w_shape, stride, 0)
            rng = np.random.default_rng(1)
            x = backend.to_backend(rng.standard_normal(x_shape), xp, dtype)
            w = backend.to_backend(rng.standard_normal(w_shape), xp, dtype)
            y = backend.to_backend(rng.standard_normal(geom.output_shape), xp, dtype)
            for op, kernel in OPS.items():
                args = {"forward": (x, w), "grad_input": (y, w), "grad_weight": (x, y)}[op]
                fn = getattr(conv.fast, kernel)
                t = timed(
                    lambda fn=fn, args=args, geom=geom: fn(geom, *args),
                    device.sync,
                    repeats,
                    budget,
                )
                row = dict(
                    layer=layer,
                    dtype=dtype,
                    op=op,
                    flops=geom.flops,
                    best_s=t["best_s"],
                    median_s=t["median_s"],
                    gflops=geom.flops / t["best_s"] / 1e9,
                    gemm_gflops=gemm_rate,
                    torch_gflops=None,
                )
                if torch is not None:
                    tx, tw, ty = (torch.as_tensor(a, device="cuda") for a in (x, w, y))
                    tf = torch_conv(torch, op, tx, tw, ty, stride)
                    with torch.no_grad():
                        tt = timed(tf, torch.cuda.synchronize, repeats, budget)
                    row["torch_gflops"] = geom.flops / tt["best_s"] / 1e9
                rows.append(row)
        device.reset_peak()  # frees CuPy's cached blocks between the dtypes
    return rows


def torch_iteration(torch, net, data, chains, noise, sigma: float, eps: float):
    """One Algorithm 1 iteration written plainly in PyTorch (autograd), on the GPU: the
    Langevin chains and the summed df/dw of the data and of the chains."""
    params = [
        (torch.as_tensor(layer.weight, device="cuda"), torch.as_tensor(layer.bias, device="cuda"))
        for layer in net.layers
    ]
    for w, b in params:
        w.requires_grad_(True)
        b.requires_grad_(True)
    layers = [(layer.stride, layer.pad, layer.activation.name) for layer in net.layers]

    def score(x):
        for (w, b), (stride, pad, activation) in zip(params, layers):
            x = torch.nn.functional.conv2d(x, w, b, stride=stride, padding=pad)
            if activation == "relu":
                x = torch.relu(x)
        return x.sum()

    I = torch.as_tensor(chains, device="cuda")
    Z = torch.as_tensor(noise, device="cuda")
    for t in range(len(Z)):
        I = I.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(score(I), I)
        I = I.detach() + 0.5 * eps**2 * (grad - I.detach() / sigma**2) + eps * Z[t]
    flat = [p for pair in params for p in pair]
    obs = torch.autograd.grad(score(torch.as_tensor(data, device="cuda")), flat)
    syn = torch.autograd.grad(score(I.detach()), flat)
    return I.detach(), [o / len(data) - s / len(I) for o, s in zip(obs, syn)]


def stage_iteration_throughput(device: Device, torch, quick: bool, budget: Budget) -> list:
    """Stage 3b: one learning iteration of the texture-paper network (3 layers), per dtype."""
    rows = []
    for dtype in DTYPES:
        if not budget.allows(30):
            break
        config = paper_config(device, quick, dtype=dtype)
        data, _, _ = runs.prepare(config)
        trainer = Trainer(config, data)
        for stage in range(2, config.stages + 1):
            trainer.enter_stage(stage)
        noise = trainer.noise()
        step = lambda trainer=trainer, noise=noise: trainer.compute_step(noise)  # noqa: E731
        t = timed(step, device.sync, 2 if quick else 3, budget)
        flops = iteration_flops(config, config.stages, data.shape, len(data))
        row = dict(
            dtype=dtype,
            image=config.size,
            chains=config.chains,
            flops=flops,
            best_s=t["best_s"],
            median_s=t["median_s"],
            warmup_s=t["warmup_s"],
            gflops=flops / t["best_s"] / 1e9,
            torch_s=None,
            torch_chains_gap=None,
        )
        if torch is not None:
            it = t["result"][0]

            def run(trainer=trainer, noise=noise, config=config):
                return torch_iteration(
                    torch,
                    trainer.net,
                    trainer.data,
                    trainer.chains,
                    noise,
                    config.sigma,
                    config.step_size,
                )

            tt = timed(run, torch.cuda.synchronize, 3, budget)
            row["torch_s"] = tt["best_s"]
            chains = tt["result"][0].cpu().numpy()
            row["torch_chains_gap"] = relative_error(chains, backend.to_numpy(it.chains))
        rows.append(row)
    return rows


# --- the preset, timed -----------------------------------------------------------------------


def paper_config(device: Device, quick: bool, **overrides):
    """texture-paper on ``device``; ``--quick`` shrinks it to 48 x 48 and 2 chains."""
    config = preset_config("texture-paper", backend=device.name, **overrides)
    if quick:
        config.size, config.chains = 48, 2
    return config


def stage_preset(device: Device, quick: bool, iterations: int, run_dir: Path, budget: Budget):
    """Stage 4: texture-paper for ``iterations`` per growing stage, each iteration timed.

    A real run (``runs.start_run``, checkpoint, samples) in ``run_dir``; a previous check's
    run folder there is replaced. If the budget runs short the run stops early and no
    projection is made.
    """
    config = paper_config(device, quick, iterations_per_layer=iterations)
    full = PRESETS["texture-paper"]["config"]["iterations_per_layer"]
    if (run_dir / runs.CHECKPOINT).is_file() and (run_dir / runs.CONFIG).is_file():
        shutil.rmtree(run_dir)
    with runs.start_run(config, run_dir, preset="texture-paper") as run:
        trainer, out = run.trainer, run.out
        per_stage, truncated = {}, False
        while not trainer.finished:
            times = per_stage.setdefault(trainer.stage, [])
            if times and not budget.allows(3 * max(times) + 30):
                truncated = True
                break
            device.sync()
            t0 = time.perf_counter()
            trainer.step()
            device.sync()
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run.seconds = sum(map(sum, per_stage.values()))
        run.save(runs.boundary_state(trainer, run.seconds))
        checkpoint_s = time.perf_counter() - t0
        summary = runs.write_outputs(run)
    stages = []
    for stage, times in sorted(per_stage.items()):
        steady = times[1:] if len(times) > 1 else times  # the first includes kernel builds
        stages.append(
            dict(
                stage=stage,
                iterations=len(times),
                first_s=times[0],
                median_s=statistics.median(steady),
            )
        )
    saves = config.stages * full // config.checkpoint_every
    complete = not truncated and len(stages) == config.stages
    projected = sum(full * s["median_s"] for s in stages) + saves * checkpoint_s
    return dict(
        dtype=config.dtype,
        image=config.size,
        chains=config.chains,
        stages=stages,
        checkpoint_s=checkpoint_s,
        projected_full_s=projected if complete else None,
        iterations_per_stage_full=full,
        truncated_by_budget=truncated,
        run_folder=str(out),
        final_mismatch=summary["final_mismatch"],
    )


def stage_verify(device: Device) -> dict:
    """Stage 5: ``verify --quick`` with the models on the device."""
    from refimpl.theorems import run_all

    results, timings = run_all(0, True, backend=device.name)
    failed = [r.name for r in results if not r.passed]
    return dict(count=len(results), failed=failed, seconds_per_group=timings)


# --- the report ------------------------------------------------------------------------------


def fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def table(headers, rows) -> list:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def report(payload: dict) -> str:
    env, stages = payload["environment"], payload["stages"]
    lines = ["# refimpl on a GPU: the device check (`benchmarks/gpu.py`)", ""]
    if env["quick"]:
        lines += ["**QUICK RUN: shrunken shapes, numbers not to be quoted.**", ""]
    lines += [
        f"Device: **{env['device']}**; backend `{env['backend']}`.",
        "",
        f"Details: {json.dumps(env['device_details'])}; host: {env['host']}; "
        f"NumPy {env['numpy']}; PyTorch: {env['torch']}; {env['date']}; "
        f"`{env['command']}`; {payload['seconds']:.0f} s in all.",
        "",
    ]
    for key, title in (
        ("identities", "1. Engine identities on the device"),
        ("numpy_vs_device", "2. NumPy vs device: same network, images and noise (float64)"),
    ):
        lines += [f"## {title}", ""]
        stage = stages.get(key)
        if not_run(stage):
            lines += [stage_note(stage), ""]
            continue
        lines += table(
            ["check", "residual", "bound", "result"],
            [
                [c["name"], f"{c['residual']:.2e}", f"{c['bound']:.1e}", verdict(c)]
                for c in stage["checks"]
            ],
        )
        lines += ["", f"({stage['seconds']:.1f} s)", ""]
    lines += ["## 3. Throughput", "", "Convolution kernels (GFLOP/s, best of the repeats):", ""]
    conv_stage = stages.get("conv_throughput")
    if not_run(conv_stage):
        lines += [stage_note(conv_stage), ""]
    else:
        lines += table(
            ["layer", "dtype", "op", "refimpl", "PyTorch", "refimpl / PyTorch", "square GEMM"],
            [
                [
                    r["layer"],
                    r["dtype"],
                    r["op"],
                    fmt(r["gflops"], ".0f"),
                    fmt(r["torch_gflops"], ".0f"),
                    fmt(r["torch_gflops"] and r["gflops"] / r["torch_gflops"], ".2f"),
                    fmt(r["gemm_gflops"], ".0f"),
                ]
                for r in conv_stage["rows"]
            ],
        )
        lines.append("")
    it_stage = stages.get("iteration_throughput")
    lines += ["One learning iteration of the texture-paper network (all 3 layers, L = 10):", ""]
    if not_run(it_stage):
        lines += [stage_note(it_stage), ""]
    else:
        lines += table(
            ["dtype", "image", "chains", "seconds", "GFLOP", "GFLOP/s", "PyTorch s", "PyTorch gap"],
            [
                [
                    r["dtype"],
                    f"{r['image']} x {r['image']}",
                    r["chains"],
                    f"{r['best_s']:.3f}",
                    f"{r['flops'] / 1e9:.3g}",
                    f"{r['gflops']:.0f}",
                    fmt(r["torch_s"], ".3f"),
                    fmt(r["torch_chains_gap"], ".1e"),
                ]
                for r in it_stage["rows"]
            ],
        )
        lines.append("")
    lines += ["## 4. texture-paper, timed", ""]
    preset = stages.get("preset")
    if not_run(preset):
        lines += [stage_note(preset), ""]
    else:
        lines += table(
            ["stage", "iterations timed", "first (s)", "median (s)", "projected 700 (min)"],
            [
                [
                    s["stage"],
                    s["iterations"],
                    f"{s['first_s']:.2f}",
                    f"{s['median_s']:.3f}",
                    f"{preset['iterations_per_stage_full'] * s['median_s'] / 60:.1f}",
                ]
                for s in preset["stages"]
            ],
        )
        projected = preset["projected_full_s"]
        lines += [
            "",
            f"{preset['dtype']}, {preset['image']} x {preset['image']}, {preset['chains']} "
            f"chains; checkpoint {preset['checkpoint_s']:.2f} s. **Projected full preset: "
            + (f"{projected / 60:.1f} min**." if projected else "not projected** (budget).")
            + f" Run folder: `{preset['run_folder']}`.",
            "",
        ]
    lines += ["## 5. verify --quick on the device", ""]
    ver = stages.get("verify")
    if not_run(ver):
        lines += [stage_note(ver), ""]
    else:
        passed = ver["count"] - len(ver["failed"])
        lines += [
            f"{passed}/{ver['count']} checks passed in {ver['seconds']:.1f} s"
            + (f"; FAILED: {', '.join(ver['failed'])}" if ver["failed"] else "."),
            "",
        ]
    lines += ["## 6. Peak device memory", ""]
    peaks = [(k, v["peak_bytes"]) for k, v in stages.items() if v.get("peak_bytes") is not None]
    if peaks:
        lines += table(["stage", "peak (GiB)"], [[k, f"{b / 2**30:.2f}"] for k, b in peaks])
    else:
        lines += ["Not measured (no device memory on the CPU stand-in)."]
    lines += ["", f"Overall: **{'PASS' if payload['passed'] else 'FAIL'}**.", ""]
    return "\n".join(lines)


def verdict(check: dict) -> str:
    return "PASS" if check["passed"] else "FAIL"


def stage_note(stage) -> str:
    if stage is None:
        return "Not run."
    if "error" in stage:
        return f"**ERROR**: `{stage['error']}` (traceback in the JSON file)."
    return f"Skipped: {stage['skipped']}."


def not_run(stage) -> bool:
    return stage is None or "skipped" in stage or "error" in stage


# --- main ------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Check refimpl on a GPU (CuPy) and time it; see the module docstring."
    )
    p.add_argument(
        "--backend",
        default="cupy",
        choices=["cupy", "strict"],
        help="cupy (a GPU), or strict: the CPU stand-in of tests/strict_backend.py (tests)",
    )
    p.add_argument("--quick", action="store_true", help="shrunken shapes: a smoke run")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds (default 420)")
    p.add_argument(
        "--iterations", type=int, default=4, help="texture-paper iterations per stage (default 4)"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where gpu.md/gpu.json go")
    p.add_argument(
        "--run-dir", type=Path, default=ROOT / "runs" / "gpu-check", help="texture-paper run folder"
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparisons")
    p.add_argument(
        "--skip",
        default="",
        help=f"comma-separated stages not to run: {', '.join(STAGES)}",
    )
    p.add_argument("--flops", action="store_true", help="print the presets' FLOP counts and exit")
    args = p.parse_args(argv)
    if args.iterations < 1 or args.budget <= 0:
        p.error("--iterations must be >= 1 and --budget > 0")
    args.skip = [name for name in args.skip.split(",") if name]
    unknown = sorted(set(args.skip) - set(STAGES))
    if unknown:
        p.error(f"--skip: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    return args


def run_stage(stages: dict, key: str, title: str, index: int, fn, device, budget, minimum: float):
    """Run one stage with its progress lines, time and memory; skip it when the budget is short."""
    progress(f"[{index}/6] {title} ...")
    if not budget.allows(minimum):
        stages[key] = {"skipped": f"time budget ({budget.left():.0f} s left, needs ~{minimum:.0f})"}
        progress(f"      skipped: {stages[key]['skipped']}")
        return None
    device.reset_peak()
    t0 = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # one broken stage must not cost the others their device time
        stages[key] = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - t0,
        }
        progress(f"      ERROR: {stages[key]['error']}")
        return None
    entry = result if isinstance(result, dict) else {"rows": result}
    if isinstance(result, list) and result and isinstance(result[0], Check):
        entry = {
            "checks": [
                dict(name=c.name, residual=c.residual, bound=c.bound, passed=c.passed)
                for c in result
            ]
        }
    entry["seconds"] = time.perf_counter() - t0
    entry["peak_bytes"] = device.peak_bytes()
    stages[key] = entry
    failed = [c["name"] for c in entry.get("checks", []) if not c["passed"]]
    progress(
        f"      done in {entry['seconds']:.1f} s"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return entry


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.flops:
        for name in PRESETS:
            f = preset_flops(name)
            per = ", ".join(f"{x / 1e9:.3g}" for x in f["flops_per_iteration"])
            print(
                f"{name:18s} images {tuple(f['images'])}: GFLOP per iteration by stage [{per}], "
                f"{f['iterations_per_stage']} iterations per stage, "
                f"total {f['total_flops'] / 1e12:.3g} TFLOP"
            )
        return 0
    try:
        device = open_device(args.backend)
    except NoDevice as exc:
        print(f"error: {exc}\nNothing was run or written.", file=sys.stderr)
        return 2
    torch, torch_text = load_torch(not args.no_torch, device)
    budget = Budget(args.budget)
    argv_text = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    progress(f"device: {device.description}; budget {args.budget:.0f} s")
    stages: dict = {}
    quick = args.quick
    plan = [
        ("identities", "engine identities on the device", 1, 10,
         lambda: stage_identities(device, quick)),
        ("numpy_vs_device", "NumPy vs device", 2, 30,
         lambda: stage_numpy_vs_device(device, quick)),
        ("conv_throughput", "convolution throughput", 3, 30,
         lambda: stage_conv_throughput(device, torch, quick, budget)),
        ("iteration_throughput", "learning-iteration throughput", 3, 40,
         lambda: stage_iteration_throughput(device, torch, quick, budget)),
        ("preset", "texture-paper, timed", 4, 60,
         lambda: stage_preset(device, quick, args.iterations, args.run_dir, budget)),
        ("verify", "verify --quick on the device", 5, 120, lambda: stage_verify(device)),
    ]  # fmt: skip
    for key, title, index, minimum, fn in plan:
        if key in args.skip:
            progress(f"[{index}/6] {title}: skipped (--skip)")
            stages[key] = {"skipped": "--skip"}
            continue
        run_stage(stages, key, title, index, fn, device, budget, minimum)
    progress("[6/6] peak device memory: recorded per stage")
    checks = [c for s in stages.values() for c in s.get("checks", [])]
    verify_ok = not stages.get("verify", {}).get("failed")
    errors = [key for key, s in stages.items() if "error" in s]
    payload = dict(
        environment=dict(
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            backend=device.name,
            device=device.description,
            device_details=device.details,
            host=f"{platform.machine()}, Python {platform.python_version()}",
            numpy=np.__version__,
            torch=torch_text,
            command=argv_text,
            quick=quick,
            budget_s=args.budget,
        ),
        stages=stages,
        seconds=time.perf_counter() - budget.start,
        passed=all(c["passed"] for c in checks) and verify_ok and not errors,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "gpu-quick" if quick else "gpu"
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str))
    (args.out / f"{stem}.md").write_text(report(payload))
    progress(f"wrote {args.out / stem}.md and .json: {'PASS' if payload['passed'] else 'FAIL'}")
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
