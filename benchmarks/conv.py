"""Benchmark the convolution kernels of :mod:`refimpl.conv` on the paper's and the preset's layers.

What is measured
----------------
For each layer shape, the paper's architecture (pad 0)::

    L1: x (16, 3, 224, 224),  w (100, 3, 15, 15), stride 3
    L2: x (16, 100, 70, 70),  w (64, 100, 5, 5),  stride 1
    L3: x (16, 64, 66, 66),   w (30, 64, 3, 3),   stride 1

and the CPU ``texture`` preset's, whose small channel counts and images make the memory
passes around the GEMM weigh more (16 chains of 64 x 64, padded to keep the size)::

    T1: x (16, 1, 64, 64),    w (32, 1, 7, 7),     stride 2, pad 3
    T2: x (16, 32, 32, 32),   w (32, 32, 5, 5),    stride 1, pad 2
    T3: x (16, 32, 32, 32),   w (16, 32, 3, 3),    stride 1, pad 1

each operation (``forward`` = Eq. (2.1), ``grad_input`` = the adjoint / transposed
convolution, ``grad_weight`` = Eq. (7.3)) and each dtype (float64, float32), the script
reports a rate in GFLOP/s = ``ConvGeometry.flops / seconds / 1e9``, where ``flops`` is the
true convolution count ``2 N O C k^2 H_out W_out`` (identical for the three operations):

* **naive**: :mod:`refimpl.conv.naive`, one run on a *slice* (batch 1, the first 2 output
  channels, full spatial size), rated with the slice's own flop count;
* **fast best / median**: :mod:`refimpl.conv.fast` with its default plan, one warm-up, then
  the minimum and the median of ``--repeats`` runs;
* **torch**: PyTorch CPU (``torch.nn.functional.conv2d``, ``torch.nn.grad.conv2d_input``,
  ``torch.nn.grad.conv2d_weight`` under ``torch.no_grad()``), timed the same way;
* **square GEMM**: ``np.matmul`` of two 2048 x 2048 matrices of the same dtype, the
  machine's practical peak;
* **same-shape GEMM**: the matrix product the fast plan runs for one sample of this
  operation (forward ``(M,K)@(K,N)``, grad_input ``(K,M)@(M,N)`` with a transposed view,
  grad_weight ``(M,N)@(N,K)`` with a transposed view; ``M, K`` from ``plan_weight`` and
  ``N = plan.gather_length``), rated with its own ``2 M K N`` flops.

How to read the table
---------------------
``fast/peak`` is the fraction of the square-GEMM rate the convolution reaches (target
>= 0.5); ``fast/GEMM`` compares with the GEMM the plan actually runs, so what is missing
is the plan's extra flops ("rows" computes some dropped output rows) plus the memory
passes outside the GEMM (gather, shift-add, scatter-add); ``fast/torch`` is the speed-up
over PyTorch CPU (target >= 1.0 in float64, >= 0.7 in float32). The ``targets`` column
says PASS/FAIL for each target; a summary follows the table.

Noise: best-of-N removes noise *within* the process, not between processes. On a shared
2-core VM, L1 (large fresh arrays, page faults) was seen to vary by up to ~1.5x from one
process to the next; the summary flags rows whose median is far above their best, and
the footer gives the process's system CPU time and the host's steal time. Compare runs,
not single numbers.

Memory: a fresh subprocess (``--memory-only``) runs one forward + grad_input +
grad_weight at L1 in float64 and reports the tracemalloc peak (NumPy reports its data
buffers to tracemalloc) and the growth of ``ru_maxrss`` after the inputs were created.

Run ``python benchmarks/conv.py`` (about a minute on 2 cores) or ``--quick`` for a smoke
run whose numbers must not be quoted. Results go to ``benchmarks/results/conv.{md,json}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from common import (  # benchmarks/common.py: shared with benchmarks/learning.py
    SQUARE_SIZE,
    PartClock,
    Timing,
    cpu_usage,
    fmt,
    gflops,
    load_torch,
    machine,
    markdown_table,
    maxrss_mb,
    measure_gemm,
    measure_square_gemm,
    steal_seconds,
    time_call,
    verdict,
    vm_hwm_mb,
)

from refimpl.conv import conv_geometry, fast, naive
from refimpl.conv.plan import make_plan
from refimpl.threads import keep_freed_memory

# name -> (input shape, weight shape, stride, pad): the paper's layers, then the texture preset's
LAYERS = {
    "L1": ((16, 3, 224, 224), (100, 3, 15, 15), 3, 0),
    "L2": ((16, 100, 70, 70), (64, 100, 5, 5), 1, 0),
    "L3": ((16, 64, 66, 66), (30, 64, 3, 3), 1, 0),
    "T1": ((16, 1, 64, 64), (32, 1, 7, 7), 2, 3),
    "T2": ((16, 32, 32, 32), (32, 32, 5, 5), 1, 2),
    "T3": ((16, 32, 32, 32), (16, 32, 3, 3), 1, 1),
}
OPS = ("forward", "grad_input", "grad_weight")
DTYPES = ("float64", "float32")
KERNEL_NAME = {"forward": "forward", "grad_input": "adjoint", "grad_weight": "weight_grad"}

QUICK_BATCH = 2
QUICK_REPEATS = 2
DEFAULT_REPEATS = 5
NAIVE_OUT_CHANNELS = 2
NOISY_SPREAD = 1.25  # a median this much above the best flags a disturbed measurement

TARGET_PEAK_FRACTION = 0.5
TARGET_TORCH_RATIO = {"float64": 1.0, "float32": 0.7}
TARGET_MEMORY_MB = 2000.0
MEMORY_LAYER = "L1"
MEMORY_DTYPE = "float64"

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --- timing --------------------------------------------------------------------------------


# --- the environment -----------------------------------------------------------------------


def environment(args, torch) -> dict:
    """Everything the header reports: the machine (``common.machine``) and the settings."""
    if torch is not None:
        torch_text = f"{torch.__version__}, {torch.get_num_threads()} threads"
    else:
        torch_text = "disabled (--no-torch)" if args.no_torch else "absent (import torch failed)"
    return {
        **machine(),
        "torch": torch_text,
        "quick": args.quick,
        "batch": args.batch,
        "repeats": args.repeats,
    }


# --- problem set-up ------------------------------------------------------------------------


@dataclass
class Problem:
    """One layer at one dtype: the geometry, its arrays and the fast plan chosen for it."""

    layer: str
    dtype: str
    geom: object
    x: np.ndarray
    w: np.ndarray
    y: np.ndarray
    plan: object


def make_problem(layer: str, dtype: str, batch: int) -> Problem:
    """``layer`` with batch ``batch``: random ``x``, ``w`` and output gradient ``y``."""
    (_, c, h, w), w_shape, stride, pad = LAYERS[layer]
    x_shape = (batch, c, h, w)
    geom = conv_geometry(x_shape, w_shape, stride, pad)
    rng = np.random.default_rng(0)  # drawn in ``dtype`` directly: no temporary copies
    x = rng.standard_normal(x_shape, dtype=dtype)
    w = rng.standard_normal(w_shape, dtype=dtype)
    y = rng.standard_normal(geom.output_shape, dtype=dtype)
    return Problem(layer, dtype, geom, x, w, y, make_plan(geom))


def op_args(op: str, x, w, y) -> tuple:
    """The arrays a kernel of ``op`` takes after the geometry."""
    return {"forward": (x, w), "grad_input": (y, w), "grad_weight": (x, y)}[op]


def kernel(module, op: str):
    """The function of ``module`` (``fast`` or ``naive``) that computes ``op``."""
    return getattr(module, KERNEL_NAME[op])


# --- the measurements ----------------------------------------------------------------------


def measure_fast(p: Problem, op: str, repeats: int) -> Timing:
    """Time :mod:`refimpl.conv.fast` with its default plan."""
    fn, args = kernel(fast, op), op_args(op, p.x, p.w, p.y)
    return time_call(lambda: fn(p.geom, *args), repeats)


def measure_naive(p: Problem, op: str) -> dict:
    """One run of :mod:`refimpl.conv.naive` on batch 1 and the first output channels."""
    o = min(NAIVE_OUT_CHANNELS, p.geom.out_channels)
    x = np.ascontiguousarray(p.x[:1])
    w = np.ascontiguousarray(p.w[:o])
    y = np.ascontiguousarray(p.y[:1, :o])
    geom = conv_geometry(x.shape, w.shape, p.geom.stride, p.geom.pad)
    fn, args = kernel(naive, op), op_args(op, x, w, y)
    timing = time_call(lambda: fn(geom, *args), repeats=1, warmup=False)
    return {"seconds": timing.best, "flops": geom.flops, "gflops": gflops(geom.flops, timing.best)}


def torch_call(torch, p: Problem, op: str):
    """A zero-argument callable running ``op`` in PyTorch on tensors sharing ``p``'s memory."""
    x, w, y = (torch.from_numpy(a) for a in (p.x, p.w, p.y))
    s, pad = p.geom.stride, p.geom.pad
    if op == "forward":
        return lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=pad)
    if op == "grad_input":
        return lambda: torch.nn.grad.conv2d_input(x.shape, w, y, stride=s, padding=pad)
    return lambda: torch.nn.grad.conv2d_weight(x, w.shape, y, stride=s, padding=pad)


def measure_torch(torch, p: Problem, op: str, repeats: int) -> dict:
    """Time PyTorch CPU's version of ``op`` under ``torch.no_grad()``; check it matches fast.

    ``max_rel_diff`` is ``max |fast - torch| / max |torch|``: a sanity check that both
    compute the same thing (rounding level: ~1e-15 in float64, ~1e-6 in float32).
    """
    fn = torch_call(torch, p, op)
    with torch.no_grad():
        timing = time_call(fn, repeats)
        reference = fn().numpy()
    ours = kernel(fast, op)(p.geom, *op_args(op, p.x, p.w, p.y))
    diff = np.max(np.abs(ours - reference)) / np.max(np.abs(reference))
    return {
        **asdict(timing),
        "gflops_best": gflops(p.geom.flops, timing.best),
        "max_rel_diff": float(diff),
    }


def gemm_operands(rng, op: str, m: int, k: int, n: int, dtype: str):
    """The two matrix operands of the per-sample GEMM that ``fast`` runs for ``op``.

    forward: ``W (M,K) @ S (K,N)``; grad_input: ``W.T (K,M) @ dY (M,N)``;
    grad_weight: ``dY (M,N) @ S.T (N,K)``. Transposes are views, as in ``fast``.
    """

    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    if op == "forward":
        return rand(m, k), rand(k, n)
    if op == "grad_input":
        return rand(m, k).T, rand(m, n)
    return rand(m, n), rand(k, n).T


def measure_plan_gemm(p: Problem, op: str, repeats: int) -> dict:
    """Rate of the per-sample GEMM the fast plan runs for ``op`` (see :func:`gemm_operands`)."""
    m, k = fast.plan_weight(np, p.plan, p.w).shape
    a, b = gemm_operands(np.random.default_rng(0), op, m, k, p.plan.gather_length, p.dtype)
    return measure_gemm(a, b, repeats)


# --- one table row -------------------------------------------------------------------------


def ratio(a, b):
    """``a / b``, or None when either is missing."""
    return None if a is None or b is None else a / b


def check_targets(row: dict) -> dict:
    """PASS/FAIL (True/False, None when unmeasured) of the two speed targets for one row."""
    torch_ratio = row["fast_over_torch"]
    return {
        "peak": row["fast_over_peak"] >= TARGET_PEAK_FRACTION,
        "torch": None if torch_ratio is None else torch_ratio >= TARGET_TORCH_RATIO[row["dtype"]],
    }


def measure_row(p: Problem, op: str, args, torch, peak: dict, clock: PartClock) -> dict:
    """All measurements of one (layer, dtype, op)."""
    flops = p.geom.flops
    timing = clock.run("fast", measure_fast, p, op, args.repeats)
    naive_result = None if args.no_naive else clock.run("naive", measure_naive, p, op)
    torch_result = (
        None if torch is None else clock.run("torch", measure_torch, torch, p, op, args.repeats)
    )
    plan_gemm = clock.run("gemm", measure_plan_gemm, p, op, args.repeats)
    fast_rate = gflops(flops, timing.best)
    torch_rate = None if torch_result is None else torch_result["gflops_best"]
    row = {
        "layer": p.layer,
        "dtype": p.dtype,
        "op": op,
        "geometry": asdict(p.geom),
        "flops": flops,
        "plan": p.plan.name,
        "plan_overhead": p.plan.overhead,
        "naive": naive_result,
        "fast": {
            **asdict(timing),
            "gflops_best": fast_rate,
            "gflops_median": gflops(flops, timing.median),
        },
        "torch": torch_result,
        "square_gemm": peak,
        "plan_gemm": plan_gemm,
        "fast_over_peak": fast_rate / peak["gflops"],
        "fast_over_gemm": fast_rate / plan_gemm["gflops"],
        "fast_over_torch": ratio(fast_rate, torch_rate),
    }
    row["targets"] = check_targets(row)
    return row


def run_speed(args, torch, clock: PartClock) -> list:
    """Measure every selected (layer, dtype, op); prints progress to stderr."""
    peaks = {
        dtype: clock.run("gemm", measure_square_gemm, dtype, args.repeats) for dtype in args.dtypes
    }
    rows = []
    for layer in args.layers:
        for dtype in args.dtypes:
            problem = make_problem(layer, dtype, args.batch)
            for op in args.ops:
                rows.append(measure_row(problem, op, args, torch, peaks[dtype], clock))
                r = rows[-1]
                print(
                    f"  {layer} {dtype} {op}: fast {r['fast']['gflops_best']:.1f} GFLOP/s",
                    file=sys.stderr,
                    flush=True,
                )
            del problem  # free the big arrays before the next shape
            gc.collect()
    return rows


# --- memory (run in a fresh subprocess) ----------------------------------------------------


def memory_probe(batch: int) -> dict:
    """Peak memory of forward + grad_input + grad_weight at L1 in float64, in this process.

    The three results stay alive (as in a training step). ``tracemalloc_peak_mb`` counts
    allocations made during the three calls; ``maxrss_growth_mb`` is the growth of the
    process's high-water RSS over its value right after the inputs were created.

    Linux carries a parent's ``ru_maxrss`` over fork + exec: start this probe from a small
    parent (the main run does it before importing torch). ``vmhwm_growth_mb`` is the same
    growth measured with ``VmHWM``, which is immune to that.
    """
    p = make_problem(MEMORY_LAYER, MEMORY_DTYPE, batch)
    gc.collect()
    rss_before, hwm_before = maxrss_mb(), vm_hwm_mb()
    tracemalloc.start()
    results = [kernel(fast, op)(p.geom, *op_args(op, p.x, p.w, p.y)) for op in OPS]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = maxrss_mb() - rss_before
    hwm_after = vm_hwm_mb()
    del results
    return {
        "layer": MEMORY_LAYER,
        "dtype": MEMORY_DTYPE,
        "input_shape": list(p.geom.input_shape),
        "inputs_mb": (p.x.nbytes + p.w.nbytes + p.y.nbytes) / 2**20,
        "tracemalloc_peak_mb": peak / 2**20,
        "maxrss_growth_mb": rss_growth,
        "maxrss_before_mb": rss_before,
        "vmhwm_growth_mb": None if hwm_before is None else hwm_after - hwm_before,
        "target_mb": TARGET_MEMORY_MB,
        "pass": max(peak / 2**20, rss_growth) < TARGET_MEMORY_MB,
    }


def run_memory_subprocess(args) -> dict:
    """Run ``memory_probe`` in a fresh interpreter (``--memory-only``) and parse its JSON."""
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-only"]
    if args.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-2000:]}"}
    return json.loads(done.stdout)


# --- output --------------------------------------------------------------------------------


def table_row(r: dict) -> list:
    """The formatted cells of one measured row."""
    naive_rate = None if r["naive"] is None else r["naive"]["gflops"]
    torch_rate = None if r["torch"] is None else r["torch"]["gflops_best"]
    targets = f"peak {verdict(r['targets']['peak'])}, torch {verdict(r['targets']['torch'])}"
    return [
        r["layer"],
        r["dtype"],
        r["op"],
        r["plan"],
        fmt(naive_rate, 3),
        fmt(r["fast"]["gflops_best"]),
        fmt(r["fast"]["gflops_median"]),
        fmt(torch_rate),
        fmt(r["square_gemm"]["gflops"]),
        fmt(r["plan_gemm"]["gflops"]),
        fmt(r["fast_over_peak"], 2),
        fmt(r["fast_over_gemm"], 2),
        fmt(r["fast_over_torch"], 2),
        targets,
    ]


TABLE_HEADERS = [
    "layer",
    "dtype",
    "op",
    "plan",
    "naive*",
    "fast (best)",
    "fast (median)",
    "torch",
    "square GEMM",
    "same-shape GEMM",
    "fast/peak",
    "fast/GEMM",
    "fast/torch",
    "targets",
]


def noisy_rows(rows: list) -> list:
    """Rows where fast, torch or the same-shape GEMM has median > ``NOISY_SPREAD`` x best."""
    flagged = []
    for r in rows:
        spreads = {
            "fast": r["fast"]["median"] / r["fast"]["best"],
            "GEMM": r["plan_gemm"]["median_s"] / r["plan_gemm"]["best_s"],
        }
        if r["torch"] is not None:
            spreads["torch"] = r["torch"]["median"] / r["torch"]["best"]
        noisy = [
            f"{name} {spread:.2f}x" for name, spread in spreads.items() if spread > NOISY_SPREAD
        ]
        if noisy:
            flagged.append(f"{r['layer']} {r['dtype']} {r['op']} ({', '.join(noisy)})")
    return flagged


def summary_lines(rows: list, memory: dict | None) -> list:
    """Counts of rows meeting each target, and the memory verdict."""
    lines = []
    for name, text in (
        ("peak", f"fast >= {TARGET_PEAK_FRACTION:.0%} of square GEMM"),
        ("torch", "fast >= 1.0x torch (float64) / 0.7x (float32)"),
    ):
        measured = [r for r in rows if r["targets"][name] is not None]
        passed = sum(r["targets"][name] for r in measured)
        failed = [
            f"{r['layer']} {r['dtype']} {r['op']}" for r in measured if not r["targets"][name]
        ]
        line = f"- {text}: {passed}/{len(measured)} rows PASS"
        if not measured:
            line = f"- {text}: not measured"
        elif failed:
            line += "; FAIL: " + ", ".join(failed)
        lines.append(line)
    checked = [r for r in rows if r["torch"] is not None]
    if checked:
        worst = {
            dtype: max(r["torch"]["max_rel_diff"] for r in checked if r["dtype"] == dtype)
            for dtype in dict.fromkeys(r["dtype"] for r in checked)
        }
        lines.append(
            "- fast vs torch results, max relative difference: "
            + ", ".join(f"{diff:.1e} ({dtype})" for dtype, diff in worst.items())
        )
    noisy = noisy_rows(rows)
    lines.append(
        f"- timing noise (median > {NOISY_SPREAD}x best): "
        + ("; ".join(noisy) + "; rerun before quoting these rows" if noisy else "none")
    )
    if memory is not None:
        lines.append(
            f"- memory at {MEMORY_LAYER} {MEMORY_DTYPE} < {TARGET_MEMORY_MB:.0f} MB: "
            + ("error" if "error" in memory else verdict(memory["pass"]))
        )
    return lines


def plan_notes(rows: list) -> list:
    """One line per layer/dtype: the plan, its per-sample GEMM shape and extra flops."""
    seen, lines = set(), []
    for r in rows:
        key = (r["layer"], r["dtype"])
        if key in seen or r["op"] != "forward":
            continue
        seen.add(key)
        g = r["geometry"]
        lines.append(
            f"- {r['layer']} {r['dtype']}: x ({g['batch']},{g['in_channels']},{g['height']},"
            f"{g['width']}), w ({g['out_channels']},{g['in_channels']},{g['kernel']},"
            f"{g['kernel']}), stride {g['stride']}; plan {r['plan']}, forward GEMM "
            f"{r['plan_gemm']['shape']} per sample, plan flops {r['plan_overhead']:.2f}x true"
        )
    return lines


def memory_lines(memory: dict | None) -> list:
    """The memory section of the report."""
    if memory is None:
        return ["Memory: not measured (--no-memory)."]
    if "error" in memory:
        return [f"Memory: the subprocess failed: {memory['error']}"]
    return [
        f"Memory, one forward + grad_input + grad_weight at {memory['layer']} "
        f"{memory['dtype']}, x {tuple(memory['input_shape'])}, fresh subprocess "
        f"(inputs x, w, y: {memory['inputs_mb']:.1f} MB, not counted):",
        "",
        f"- tracemalloc peak during the three calls: {memory['tracemalloc_peak_mb']:.1f} MB",
        f"- ru_maxrss growth after the inputs were created: {memory['maxrss_growth_mb']:.1f} MB",
        f"- target < {memory['target_mb']:.0f} MB: {verdict(memory['pass'])}",
    ]


def report(env: dict, rows: list, memory: dict | None, parts: dict, total: float, cpu: dict) -> str:
    """The whole Markdown report: header, table, notes, memory, summary, run time."""
    title = "# Convolution benchmark" + (
        " (QUICK RUN: smoke test, do not quote)" if env["quick"] else ""
    )
    header = [
        f"- {key}: {env[key]}"
        for key in ("date", "cpu", "cpu_count", "python", "numpy", "blas", "torch")
    ]
    header.append(f"- command: `{env['command']}`")
    header.append(f"- load average (1 min) at start: {fmt(env['load_average_at_start'], 2)}")
    header.append(f"- batch {env['batch']}, best/median of {env['repeats']} runs after 1 warm-up")
    notes = [
        "Rates in GFLOP/s of the true convolution flops 2·N·O·C·k²·H_out·W_out "
        "(same count for the three ops).",
        "",
        f"- \\* naive was timed on a slice (batch 1, first {NAIVE_OUT_CHANNELS} output "
        "channels, full spatial size), one run, rated with the slice's own flop count.",
        f"- square GEMM: np.matmul {SQUARE_SIZE}x{SQUARE_SIZE} @ {SQUARE_SIZE}x{SQUARE_SIZE}; "
        "same-shape GEMM: the per-sample matrix product the fast plan runs for this op, "
        "rated with its own flops (M, K from plan_weight, N = gather_length).",
        f"- targets: fast/peak >= {TARGET_PEAK_FRACTION}; fast/torch >= "
        f"{TARGET_TORCH_RATIO['float64']} (float64), >= {TARGET_TORCH_RATIO['float32']} (float32).",
        *plan_notes(rows),
    ]
    timing = ", ".join(f"{part} {sec:.1f} s" for part, sec in parts.items())
    cpu_text = (
        f"CPU time of this process: user {cpu['user_s']:.1f} s, system "
        f"{cpu['sys_s']:.1f} s; host steal during the run: {fmt(cpu['steal_s'], 1, ' s')}; "
        f"load average (1 min) at the end: {fmt(cpu['load_average_at_end'], 2)} "
        "(this run alone adds up to ~2 on 2 cores)."
    )
    lines = [
        title,
        "",
        *header,
        "",
        markdown_table(TABLE_HEADERS, [table_row(r) for r in rows]),
        "",
        *notes,
        "",
        *memory_lines(memory),
        "",
        "Summary:",
        "",
        *summary_lines(rows, memory),
        "",
        f"Total run time: {total:.1f} s ({timing}).",
        cpu_text,
        "",
    ]
    return "\n".join(lines)


def write_results(out_dir: Path, markdown: str, payload: dict):
    """Write ``conv.md`` and ``conv.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "conv.md").write_text(markdown, encoding="utf-8")
    (out_dir / "conv.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


# --- command line --------------------------------------------------------------------------


def csv_choice(allowed):
    """An argparse type: a comma-separated subset of ``allowed``, kept in the given order."""

    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if item not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return items

    return parse


def parse_args(argv=None):
    """Parse and normalise the command line (quick mode sets batch and repeats)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("How to read")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: batch {QUICK_BATCH}, {QUICK_REPEATS} repeats "
        "(output marked QUICK; do not quote the numbers)",
    )
    parser.add_argument(
        "--dtypes",
        type=csv_choice(DTYPES),
        default=",".join(DTYPES),
        help="comma-separated dtypes (default: %(default)s)",
    )
    parser.add_argument(
        "--layers",
        type=csv_choice(tuple(LAYERS)),
        default=",".join(LAYERS),
        help="comma-separated layers (default: %(default)s)",
    )
    parser.add_argument(
        "--ops",
        type=csv_choice(OPS),
        default=",".join(OPS),
        help="comma-separated operations (default: %(default)s)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch CPU")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive kernels")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocess")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed runs after the warm-up (default {DEFAULT_REPEATS}, "
        f"{QUICK_REPEATS} with --quick)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="folder for conv.md and conv.json (default: %(default)s)",
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help=f"only measure the memory of {MEMORY_LAYER} {MEMORY_DTYPE} in this "
        "process and print it as JSON (used by the main run, in a "
        "fresh subprocess)",
    )
    args = parser.parse_args(argv)
    args.batch = QUICK_BATCH if args.quick else LAYERS["L1"][0][0]
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        parser.error("--repeats must be positive")
    return args


def main(argv=None) -> int:
    """Run the benchmark (or, with ``--memory-only``, just the memory probe)."""
    args = parse_args(argv)
    keep_freed_memory()  # as the learning commands do (refimpl.threads), for both libraries
    if args.memory_only:
        print(json.dumps(memory_probe(args.batch)))
        return 0
    start, steal_at_start = time.perf_counter(), steal_seconds()
    clock = PartClock()
    print(
        f"benchmarking {','.join(args.layers)} x {','.join(args.dtypes)} x "
        f"{','.join(args.ops)} ...",
        file=sys.stderr,
        flush=True,
    )
    # before importing torch: the child inherits this process's ru_maxrss (see memory_probe)
    memory = None if args.no_memory else clock.run("memory", run_memory_subprocess, args)
    torch = load_torch(not args.no_torch)
    env = environment(args, torch)
    rows = run_speed(args, torch, clock)
    total = time.perf_counter() - start
    cpu = cpu_usage(steal_at_start)
    markdown = report(env, rows, memory, clock.seconds, total, cpu)
    print(markdown)
    payload = {
        "environment": env,
        "rows": rows,
        "memory": memory,
        "part_seconds": clock.seconds,
        "total_seconds": total,
        "cpu": cpu,
    }
    write_results(args.out, markdown, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
