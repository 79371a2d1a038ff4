"""What the benchmark scripts share: timing, the machine, GEMM peak, memory, tables.

``benchmarks/conv.py`` (the convolution kernels) and ``benchmarks/learning.py`` (one learning
iteration) measure the same way: best and median of repeated ``time.perf_counter`` samples
after a warm-up, rates in GFLOP/s against the machine's own matrix-multiply throughput for
the same dtype, PyTorch CPU as the outside baseline, and the environment in the header.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from refimpl.conv import fast
from refimpl.learning.runs import iteration_flops  # noqa: F401  (the formula the benchmarks use)

MIN_SAMPLE_SECONDS = 0.01  # calls shorter than this are repeated inside one timing sample
SQUARE_SIZE = 2048


# --- timing --------------------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds per call: the best and median of the timed samples, and all of them."""

    best: float
    median: float
    samples: list
    calls_per_sample: int


def time_call(fn, repeats: int, warmup: bool = True) -> Timing:
    """Time ``fn()`` with ``time.perf_counter``: an optional warm-up, then ``repeats`` samples.

    A call faster than ``MIN_SAMPLE_SECONDS`` (measured in the warm-up) is repeated inside
    each sample, so the timer's resolution and call overhead do not dominate; the result is
    always seconds per single call.
    """
    number = 1
    if warmup:
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
        if first < MIN_SAMPLE_SECONDS:
            number = math.ceil(MIN_SAMPLE_SECONDS / max(first, 1e-9))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return Timing(min(samples), statistics.median(samples), samples, number)


def gflops(flops: int, seconds: float) -> float:
    """Rate in GFLOP/s."""
    return flops / seconds / 1e9


class PartClock:
    """Wall time spent in each part of the run (fast, naive, torch, gemm, memory)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def run(self, part: str, fn, *args, **kwargs):
        """Call ``fn(*args, **kwargs)``, adding its wall time to ``part``."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start


# --- the environment -----------------------------------------------------------------------


def steal_seconds() -> float | None:
    """CPU time the hypervisor gave to other guests so far (/proc/stat ``steal``), or None."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_usage(steal_at_start: float | None) -> dict:
    """This process's user and system CPU seconds, and the machine's steal time since start.

    A large system share means page faults (fresh large arrays); steal means a busy host.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    steal = steal_seconds()
    return {
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "steal_s": None if steal is None or steal_at_start is None else steal - steal_at_start,
        "load_average_at_end": load_average(),
    }


def load_average() -> float | None:
    """The 1-minute load average: above ~0.5 on an idle box, something else shares the cores."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def numpy_blas() -> str:
    """NumPy's BLAS, from ``np.show_config(mode="dicts")`` when this NumPy supports it."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # older NumPy: no mode argument, or a different layout
        return "unknown"
    text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    config = blas.get("openblas configuration")
    return f"{text} ({config})" if config else text


def machine() -> dict:
    """What every benchmark's header reports: date, CPU, libraries, threads, command, load."""
    import scipy

    from refimpl import __version__

    argv = getattr(sys, "orig_argv", [sys.executable, *sys.argv])
    threads = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "REFIMPL_THREADS")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": numpy_blas(),
        "refimpl": __version__,
        "thread_settings": {k: os.environ.get(k) for k in threads},
        "command": shlex.join(argv),
        "load_average_at_start": load_average(),
    }


def load_torch(enabled: bool):
    """The ``torch`` module, or None when disabled or not installed."""
    if not enabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


# --- GEMM throughput -----------------------------------------------------------------------


def measure_gemm(a, b, repeats: int) -> dict:
    """Rate of ``np.matmul(a, b)`` (into a preallocated output), best and median."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    timing = time_call(lambda: np.matmul(a, b, out=out), repeats)
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    return {
        "shape": f"({a.shape[0]}x{a.shape[1]})@({b.shape[0]}x{b.shape[1]})",
        "flops": flops,
        "best_s": timing.best,
        "median_s": timing.median,
        "gflops": gflops(flops, timing.best),
    }


def measure_square_gemm(dtype: str, repeats: int) -> dict:
    """The machine's practical peak: ``np.matmul`` of two square ``SQUARE_SIZE`` matrices."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((SQUARE_SIZE, SQUARE_SIZE)).astype(dtype)
    b = rng.standard_normal((SQUARE_SIZE, SQUARE_SIZE)).astype(dtype)
    return measure_gemm(a, b, repeats)


# --- memory --------------------------------------------------------------------------------


def maxrss_mb() -> float:
    """``ru_maxrss`` of this process in MB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss * 1024 / 2**20


def vm_hwm_mb() -> float | None:
    """``VmHWM`` of /proc/self/status in MB (Linux): the peak RSS of this process's own memory.

    Unlike ``ru_maxrss`` it does not inherit the parent's peak across fork + exec, so it
    cross-checks the baseline of :func:`memory_probe`.
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


# --- output --------------------------------------------------------------------------------


def markdown_table(headers: list, rows: list) -> str:
    """A GitHub Markdown table; numbers should already be formatted as strings."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value, digits: int = 1, suffix: str = "") -> str:
    """A number with ``digits`` decimals, or "n/a" for None."""
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def verdict(ok) -> str:
    """ "PASS", "FAIL" or "n/a" (None: not measured)."""
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


# --- FLOP counts ---------------------------------------------------------------------------


class FlopCounter:
    """Counts the flops of every fast convolution call (forward, adjoint, weight gradient)."""

    def __init__(self):
        self.flops = 0
        self.calls = 0
        self._saved = {}

    def __enter__(self):
        for name in ("forward", "adjoint", "weight_grad"):
            original = getattr(fast, name)
            self._saved[name] = original

            def counted(geom, *args, _original=original, **kwargs):
                self.flops += geom.flops
                self.calls += 1
                return _original(geom, *args, **kwargs)

            setattr(fast, name, counted)
        return self

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(fast, name, original)


def counted_flops(trainer) -> tuple[int, int]:
    """``(flops, convolution calls)`` of one ``Trainer.compute_step``, counted as it runs.

    The check of :func:`iteration_flops`' formula (``tests/test_benchmarks.py``)."""
    with FlopCounter() as counter:
        trainer.compute_step(trainer.noise())
    return counter.flops, counter.calls
