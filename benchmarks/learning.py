"""Benchmark one learning iteration (Algorithm 1 / CD) of the CPU presets' networks.

What is timed
-------------
For each CPU preset (``texture``, ``object``, ``reconstruct``) the network of its *last*
growing stage (all layers active, the most expensive iteration of the run) on the preset's
training data, with the preset's chains, Langevin steps and step size:

* **refimpl**: :meth:`refimpl.learning.Trainer.compute_step` (everything one iteration
  computes: ``L`` Langevin steps on the chains, ``H_obs - H_syn`` by backprop, the scaled
  gradient, the energies and the reconstruction error of the data; nothing is applied),
  in float64 and float32;
* **torch**: the same iteration written plainly in PyTorch CPU, autograd for ``df/dI`` and
  ``df/dw`` (:func:`torch_iteration`); its chains and gradient are checked against
  refimpl's (``max_rel_diff``), so both compute the same thing;
* **GEMM peak**: ``np.matmul`` of two 2048 x 2048 matrices of the same dtype, the
  machine's practical matrix-multiply throughput.

The FLOP count is exact: every convolution refimpl runs during one iteration is counted
with its geometry (``2 N O C k^2 H_out W_out`` per forward, adjoint or weight gradient);
the PyTorch iteration runs the same convolutions. Reported: seconds per iteration (best
and median of ``--repeats`` after a warm-up), GFLOP/s, the fraction of the GEMM peak, the
ratio to PyTorch (``torch seconds / refimpl seconds``: above 1 is faster than PyTorch), and
each case's peak resident memory (every case runs in a fresh subprocess).

Threads. The texture case is also timed beside one and two busy single-threaded processes
(``--load``), the common state of a student's laptop: a fair share of 2 cores would make
it 1.5x and 2x slower.

Run ``python benchmarks/learning.py`` (a few minutes; needs PyTorch for its baseline
column: ``pip install torch==2.13.0``; without it the column is empty). It writes
``benchmarks/results/learning.md`` and ``learning.json``. ``--quick`` is a smoke run
(2 repeats, the object preset only): its output is marked QUICK.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import (  # benchmarks/common.py: shared with benchmarks/conv.py and gpu.py
    counted_flops,
    fmt,
    gflops,
    load_torch,
    machine,
    markdown_table,
    maxrss_mb,
    measure_square_gemm,
    time_call,
)

from refimpl.learning import Trainer, runs
from refimpl.learning.presets import preset_config
from refimpl.threads import keep_freed_memory

PRESETS = ("texture", "object", "reconstruct")
DTYPES = ("float64", "float32")
DEFAULT_REPEATS = 5
QUICK_REPEATS = 2
LOADS = (0, 1, 2)
TARGET_TORCH_RATIO = {"float64": 1.0, "float32": 0.7}
TARGET_PEAK_FRACTION = 0.4  # for the texture preset's iteration
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --- the iteration, refimpl and PyTorch --------------------------------------------------------


def last_stage_trainer(preset: str, dtype: str) -> Trainer:
    """A trainer of ``preset`` at its last growing stage, chains started at 0 then moved once."""
    config = preset_config(preset, dtype=dtype)
    data, _, _ = runs.prepare(config)
    trainer = Trainer(config, data)
    for stage in range(2, config.stages + 1):
        trainer.enter_stage(stage)
    trainer.step()  # chains away from 0, as in a run (their values do not change the cost)
    return trainer


def torch_iteration(torch, net, data, chains, noise, config):
    """One iteration in plain PyTorch with autograd: ``(chains, gradient, recon_error)``.

    The same computation as :func:`refimpl.learning.algorithm.learning_iteration`: ``L``
    Langevin steps ``I + (eps^2/2)(df/dI - I/sigma^2) + eps Z`` from the chains (ML) or the
    data (CD), ``H_obs - H_syn`` by autograd, divided by each layer's output area, and the
    data's energies and relative reconstruction error ``|I - sigma^2 df/dI| / |I|``.
    """
    F = torch.nn.functional
    params = [
        (torch.from_numpy(np.array(W)), torch.from_numpy(np.array(b))) for W, b in net.parameters()
    ]
    flat = [p.requires_grad_(True) for pair in params for p in pair]
    layers = [(layer.stride, layer.pad, layer.activation.name) for layer in net.layers]

    def top(x):
        for (W, b), (stride, pad, activation) in zip(params, layers):
            x = F.conv2d(x, W, b, stride=stride, padding=pad)
            if activation == "relu":
                x = F.relu(x)
        return x

    def grad_input(x):
        x = x.detach().requires_grad_(True)
        f = top(x).sum(dim=(1, 2, 3))
        (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g

    sigma2, eps = config.sigma**2, config.step_size
    x_obs = torch.from_numpy(np.asarray(data))
    x = x_obs if config.method == "cd" else torch.from_numpy(np.asarray(chains))
    for z in torch.from_numpy(np.asarray(noise)):
        _, g = grad_input(x)
        x = x + 0.5 * eps**2 * (g - x / sigma2) + eps * z
    grads_obs = torch.autograd.grad(top(x_obs).sum(), flat)
    f_syn = top(x)
    grads_syn = torch.autograd.grad(f_syn.sum(), flat)
    shapes = net.feature_shapes(tuple(data.shape))
    gradient = []
    for l, (_, h, w) in enumerate(shapes):
        area = h * w if config.normalise_by_area else 1
        pair = []
        for i in (2 * l, 2 * l + 1):
            pair.append((grads_obs[i] / len(x_obs) - grads_syn[i] / len(x)) / area)
        gradient.append(tuple(pair))
    _, B = grad_input(x_obs)
    resid = (x_obs - sigma2 * B).flatten(1).norm(dim=1) / x_obs.flatten(1).norm(dim=1)
    return x.detach(), gradient, float(resid.mean())


def max_rel_diff(ours, theirs) -> float:
    """``max |a - b| / max |b|`` over the chains and every gradient array."""
    worst = 0.0
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a), b.detach().numpy()
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


# --- one case, in its own process ---------------------------------------------------------------


def busy_loop():  # pragma: no cover - runs in a child process
    while True:
        pass


def measure_case(preset: str, dtype: str, impl: str, repeats: int, load: int) -> dict:
    """Time one (preset, dtype, implementation) in this process, beside ``load`` busy processes.

    The process keeps its freed memory (:func:`refimpl.threads.keep_freed_memory`), as the
    learning commands' processes do, for both implementations.
    """
    keep_freed_memory()
    trainer = last_stage_trainer(preset, dtype)
    flops, calls = counted_flops(trainer)
    noise = trainer.noise()
    busy = [multiprocessing.Process(target=busy_loop, daemon=True) for _ in range(load)]
    for process in busy:
        process.start()
    try:
        if impl == "refimpl":
            timing = time_call(lambda: trainer.compute_step(noise), repeats)
            check = None
        else:
            torch = load_torch(True)
            if torch is None:
                return {"error": "PyTorch is not installed"}
            cfg = trainer.config
            run = lambda: torch_iteration(
                torch, trainer.net, trainer.data, trainer.chains, noise, cfg
            )
            timing = time_call(run, repeats)
            chains, gradient, _ = run()
            it = trainer.compute_step(noise)[0]
            ours = [it.chains] + [a for pair in it.gradient for a in pair]
            theirs = [chains] + [a for pair in gradient for a in pair]
            check = max_rel_diff(ours, theirs)
    finally:
        for process in busy:
            process.terminate()
    return {
        "preset": preset,
        "dtype": dtype,
        "impl": impl,
        "load": load,
        "flops": flops,
        "conv_calls": calls,
        "best_s": timing.best,
        "median_s": timing.median,
        "samples": timing.samples,
        "gflops": gflops(flops, timing.best),
        "max_rel_diff": check,
        "peak_rss_mb": maxrss_mb(),
        "shapes": {
            "data": list(trainer.data.shape),
            "chains": list(trainer.chains.shape),
            "langevin_steps": trainer.config.langevin_steps,
            "layers": [list(s) for s in trainer.net.spec()],
        },
    }


def run_case(preset: str, dtype: str, impl: str, repeats: int, load: int) -> dict:
    """:func:`measure_case` in a fresh interpreter (its own peak memory and thread pools)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--case",
        f"{preset}:{dtype}:{impl}:{load}",
        "--repeats",
        str(repeats),
    ]
    print(f"  {preset} {dtype} {impl} (load {load}) ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {
            "preset": preset,
            "dtype": dtype,
            "impl": impl,
            "load": load,
            "error": f"exit {done.returncode}: {done.stderr.strip()[-2000:]}",
        }
    return json.loads(done.stdout)


# --- the report ----------------------------------------------------------------------------------


def environment(args, torch_version: str) -> dict:
    return {
        **machine(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "torch": torch_version,
        "quick": args.quick,
        "repeats": args.repeats,
    }


def summarise(cases: list, peaks: dict) -> list:
    """One row per (preset, dtype) at load 0: refimpl and torch side by side, with the targets."""
    rows = []
    by_key = {(c.get("preset"), c.get("dtype"), c.get("impl"), c.get("load")): c for c in cases}
    for (preset, dtype, impl, load), case in by_key.items():
        if impl != "refimpl" or load != 0 or "error" in case:
            continue
        torch_case = by_key.get((preset, dtype, "torch", 0), {})
        torch_s = torch_case.get("best_s")
        ratio = None if torch_s is None else torch_s / case["best_s"]
        peak = peaks[dtype]["gflops"]
        rows.append(
            {
                "preset": preset,
                "dtype": dtype,
                "gflop": case["flops"] / 1e9,
                "refimpl_s": case["best_s"],
                "refimpl_median_s": case["median_s"],
                "refimpl_gflops": case["gflops"],
                "torch_s": torch_s,
                "torch_gflops": torch_case.get("gflops"),
                "max_rel_diff": torch_case.get("max_rel_diff"),
                "peak_gflops": peak,
                "fraction_of_peak": case["gflops"] / peak,
                "ratio_to_torch": ratio,
                "peak_rss_mb": case["peak_rss_mb"],
                "torch_peak_rss_mb": torch_case.get("peak_rss_mb"),
                "target_torch": None if ratio is None else ratio >= TARGET_TORCH_RATIO[dtype],
                "target_peak": (case["gflops"] / peak >= TARGET_PEAK_FRACTION)
                if preset == "texture"
                else None,
            }
        )
    return rows


def load_rows(cases: list) -> list:
    quiet = {
        (c["preset"], c["dtype"], c["impl"]): c["best_s"]
        for c in cases
        if c.get("load") == 0 and "error" not in c
    }
    rows = []
    for c in cases:
        if c.get("load", 0) == 0 or "error" in c:
            continue
        base = quiet.get((c["preset"], c["dtype"], c["impl"]))
        rows.append(
            {
                "preset": c["preset"],
                "dtype": c["dtype"],
                "impl": c["impl"],
                "load": c["load"],
                "best_s": c["best_s"],
                "median_s": c["median_s"],
                "slowdown": None if base is None else c["median_s"] / base,
                # our threads share the cores with the busy processes: (cores + load) / cores
                "fair_share": ((os.cpu_count() or 1) + c["load"]) / (os.cpu_count() or 1),
            }
        )
    return rows


def verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(env: dict, peaks: dict, rows: list, loads: list, errors: list) -> str:
    lines = ["# Learning-iteration benchmark", ""]
    if env["quick"]:
        lines += ["**QUICK RUN: smoke test, do not quote these numbers.**", ""]
    lines += [
        f"- date: {env['date']}; CPU: {env['cpu']} ({env['cpu_count']} cores); Python "
        f"{env['python']}, NumPy {env['numpy']} ({env['blas']}, threads: {env['blas_threads']})",
        f"- PyTorch: {env['torch']}; command: `{env['command']}`; load average at start: "
        f"{fmt(env['load_average_at_start'], 2)}",
        "- GEMM peak (np.matmul 2048^2): "
        + ", ".join(f"{d} {p['gflops']:.1f} GFLOP/s" for d, p in peaks.items()),
        "",
    ]
    headers = [
        "preset",
        "dtype",
        "GFLOP/iter",
        "refimpl s (best)",
        "refimpl GFLOP/s",
        "torch s",
        "torch GFLOP/s",
        "refimpl/peak",
        "refimpl vs torch",
        "same result",
        "peak RSS MB",
        "targets",
    ]
    table = []
    for r in rows:
        targets = f"torch {verdict(r['target_torch'])}"
        if r["target_peak"] is not None:
            targets += f", peak {verdict(r['target_peak'])}"
        table.append(
            [
                r["preset"],
                r["dtype"],
                fmt(r["gflop"], 2),
                fmt(r["refimpl_s"], 3),
                fmt(r["refimpl_gflops"]),
                fmt(r["torch_s"], 3),
                fmt(r["torch_gflops"]),
                fmt(r["fraction_of_peak"], 2),
                fmt(r["ratio_to_torch"], 2) + "x",
                "n/a" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}",
                fmt(r["peak_rss_mb"], 0),
                targets,
            ]
        )
    lines += [markdown_table(headers, table), ""]
    lines += [
        f"Targets: refimpl >= {TARGET_TORCH_RATIO['float64']}x PyTorch in float64 and "
        f">= {TARGET_TORCH_RATIO['float32']}x in float32; >= {TARGET_PEAK_FRACTION:.0%} of the "
        "same-dtype GEMM peak for the texture preset. 'same result': max |refimpl - torch| / "
        "max |torch| over the chains and each gradient array (rounding level: ~1e-14 in "
        "float64; in float32 ~1e-5 for the chains, where different summation orders amplify "
        "through 10 Langevin steps, and up to ~1e-3 for the gradient H_obs - H_syn, a "
        "difference of two moments that agree to a few percent, so their rounding errors "
        "are divided by that difference).",
        "",
    ]
    if loads:
        headers = [
            "preset",
            "dtype",
            "impl",
            "busy processes",
            "s (median)",
            "slowdown",
            "fair share",
        ]
        table = [
            [
                r["preset"],
                r["dtype"],
                r["impl"],
                r["load"],
                fmt(r["median_s"], 3),
                fmt(r["slowdown"], 2) + "x",
                fmt(r["fair_share"], 2) + "x",
            ]
            for r in loads
        ]
        lines += [
            "Beside busy single-threaded processes (a fair share of the cores gives the "
            "last column):",
            "",
            markdown_table(headers, table),
            "",
        ]
    for e in errors:
        lines.append(f"- error: {e.get('preset')} {e.get('dtype')} {e.get('impl')}: {e['error']}")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("Run ``python")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: the object preset, 2 repeats, marked QUICK"
    )
    parser.add_argument(
        "--presets",
        default=",".join(PRESETS),
        help="comma-separated presets (default: %(default)s)",
    )
    parser.add_argument(
        "--dtypes", default=",".join(DTYPES), help="comma-separated dtypes (default: %(default)s)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed iterations after a warm-up (default {DEFAULT_REPEATS})",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    parser.add_argument(
        "--no-load", action="store_true", help="skip the runs beside busy processes"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="folder for learning.md and learning.json (default: %(default)s)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # PRESET:DTYPE:IMPL:LOAD, internal
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.no_load = "object", True
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be positive")
    for name, allowed in (("presets", PRESETS), ("dtypes", DTYPES)):
        values = [v for v in getattr(args, name).split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            parser.error(f"--{name}: choose from {','.join(allowed)}; got {getattr(args, name)!r}")
        setattr(args, name, values)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.case:
        preset, dtype, impl, load = args.case.split(":")
        print(json.dumps(measure_case(preset, dtype, impl, args.repeats, int(load))))
        return 0
    torch = None if args.no_torch else load_torch(True)
    torch_version = (
        "disabled (--no-torch)"
        if args.no_torch
        else (
            "absent" if torch is None else f"{torch.__version__}, {torch.get_num_threads()} threads"
        )
    )
    env = environment(args, torch_version)
    peaks = {d: measure_square_gemm(d, args.repeats) for d in args.dtypes}
    cases = []
    for preset in args.presets:
        for dtype in args.dtypes:
            cases.append(run_case(preset, dtype, "refimpl", args.repeats, 0))
            if torch is not None:
                cases.append(run_case(preset, dtype, "torch", args.repeats, 0))
    if not args.no_load and "texture" in args.presets:
        for load in LOADS[1:]:
            for dtype in args.dtypes:
                cases.append(run_case("texture", dtype, "refimpl", args.repeats, load))
                if torch is not None:
                    cases.append(run_case("texture", dtype, "torch", args.repeats, load))
    errors = [c for c in cases if "error" in c]
    rows, loads = summarise(cases, peaks), load_rows(cases)
    markdown = report(env, peaks, rows, loads, errors)
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "learning-quick" if args.quick else "learning"
    (args.out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    payload = {"environment": env, "gemm_peak": peaks, "rows": rows, "loads": loads, "cases": cases}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
