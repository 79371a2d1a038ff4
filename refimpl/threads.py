"""How refimpl uses the CPU's cores: its own worker threads over batch chunks, BLAS on one thread.

The fast convolution kernels (:mod:`refimpl.conv.fast`) split every batch into chunks.
By default the chunks run one after the other and the BLAS library (OpenBLAS, MKL) uses its
own threads inside each matrix multiply: the right choice for one big GEMM. At the shapes
of a learning iteration on a CPU (16 chains of 64 x 64, a few dozen channels) it is not:

* the GEMMs are small, so BLAS threads spend much of their time starting and waiting, and
  the memory-bound passes around each GEMM (gathers, shift-adds, scatter-adds) run on one
  core anyway;
* beside another busy process, BLAS threads that spin-wait for each other collapse: one
  iteration of the texture preset measured 5x slower beside two busy processes, where a
  fair share of two cores predicts 2x (``benchmarks/learning.py``).

Inside :func:`parallel` (the learning loop enters it for each iteration) BLAS runs
single-threaded and the kernels run their chunks on ``workers`` threads instead. NumPy
releases the GIL in matrix multiplies and array copies, so the chunks, gathers and
scatters included, run in parallel; a thread that loses its core simply waits, without
spinning. Outside :func:`parallel` nothing changes.

The number of workers: ``REFIMPL_THREADS`` if set, else the number of CPUs this process
may run on. BLAS is limited with ``threadpoolctl``, the standard tool for it (scikit-learn
uses it).

No equation of the papers lives here: this module changes how fast the kernels run, never
what they compute (results are bit for bit the same on any number of workers).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

ENV_THREADS = "REFIMPL_THREADS"

_local = threading.local()  # .workers inside parallel(); unset (sequential) outside
_pools: dict = {}
_pools_lock = threading.Lock()
_controller = None


def default_workers() -> int:
    """``$REFIMPL_THREADS``, else the CPUs this process may use (at least 1)."""
    text = os.environ.get(ENV_THREADS, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{ENV_THREADS} must be a positive integer; got {text!r}") from None
        if value < 1:
            raise ValueError(f"{ENV_THREADS} must be a positive integer; got {text!r}")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def workers() -> int:
    """Worker threads the kernels use now: 1 outside :func:`parallel`."""
    return getattr(_local, "workers", 1)


def _pool(n: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if n not in _pools:
            _pools[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="refimpl")
        return _pools[n]


def _blas_limit(limit: int):
    global _controller
    from threadpoolctl import ThreadpoolController  # imported when first needed

    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=limit, user_api="blas")


@contextmanager
def parallel(n_workers: int | None = None):
    """Run the fast kernels' chunks on ``n_workers`` threads, with single-threaded BLAS.

    ``n_workers`` defaults to :func:`default_workers`. Nested use keeps the outer setting.
    Results do not depend on the number of workers, bit for bit: the chunks are the same
    whoever runs them (:func:`refimpl.conv.plan.batch_chunks`), each computes the same
    numbers on any thread, and sums over chunks are added in chunk order.
    """
    if getattr(_local, "workers", None) is not None:  # already inside
        yield
        return
    n = default_workers() if n_workers is None else int(n_workers)
    if n < 1:
        raise ValueError(f"n_workers must be >= 1; got {n_workers!r}")
    _local.workers = n
    try:
        with _blas_limit(1):
            yield
    finally:
        del _local.workers


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_MMAP_BELOW = 256 * 2**20  # arrays below this come from the heap, not fresh mappings
KEEP_TRIM_BELOW = 512 * 2**20  # freed memory below this stays with the process


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse (the learning commands call this).

    A learning iteration makes and frees hundreds of arrays of a few MB. By default glibc
    maps large ones afresh and hands freed memory back to the system, so every iteration
    pays page faults again, and worker threads fault one after another: the texture
    preset's float32 iteration measured 0.46 s, against 0.24 s with these two settings
    (``benchmarks/learning.py`` uses them too). The cost: the process keeps its peak
    memory until it ends, which a learning command does soon after. Returns False where it
    does not apply (not glibc, e.g. macOS). Process-wide, so the library never calls it on
    its own; the command line does, for the processes it runs.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_MMAP_BELOW)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_BELOW)
    )


def map_chunks(fn, chunks) -> list:
    """``[fn(n0, n1) for (n0, n1) in chunks]``, on the worker threads when there are several.

    ``fn`` must only write to its own part of any shared output (its batch slice).
    """
    n = workers()
    if n == 1 or len(chunks) == 1:
        return [fn(n0, n1) for n0, n1 in chunks]
    return list(_pool(n).map(lambda c: fn(*c), chunks))
