"""How a convolution is lowered to matrix multiplies: the plans and the cost model that picks one.

:mod:`refimpl.conv.fast` runs every convolution as ``Y = W_plan @ S`` on a flattened,
phase-split copy of the input (see its docstring). This module decides the shape of that
product and nothing else:

* ``"im2col"``: gather all ``k*k`` taps (``K = C k^2``, ``M = O``), no shift-add. The classic
  lowering; best when the output is small next to the kernel (a fully connected top layer).
* ``"rows"``: gather the taps ``(dy mod s, dx)`` of one band of kernel rows (``K = C s k``)
  and stack the ``kq = ceil(k/s)`` row offsets ``dy // s`` as ``M = O kq`` output rows.
  The gather copies ``k/s`` times less and the GEMM is taller, at the price of
  ``kq - 1`` extra output rows; used when those are few (``H_out`` large).

:func:`make_plan` picks the cheaper by the memory each moves outside the GEMM
(:func:`moved_per_column`), and :func:`batch_chunks` sizes the batch chunks so that the work
buffers stay bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from refimpl.backend import is_device
from refimpl.conv.geometry import ConvGeometry

PLANS = ("im2col", "rows")

# Largest number of array elements the per-chunk work buffers (S and Y) may hold. Chunks of
# the batch are sized to stay under it: big enough for the GEMM to run at full speed, small
# enough that memory stays bounded (the paper's first layer needs < 0.3 GB in float64). On a
# device (CuPy) the chunks are larger: one GEMM launch must fill thousands of GPU cores.
CHUNK_ELEMENTS = {"host": 2**21, "device": 2**27}

# Batches at least this large are split into this many chunks or more, for the worker
# threads of refimpl.threads (two cores get two chunks each: uneven timing still balances).
MIN_CHUNKS = 4

# "rows" is only considered when its extra work (output rows computed and dropped,
# zero-padded kernel rows) costs at most this factor over im2col's GEMM, which computes
# junk columns of its own. Relative, not absolute: on the texture preset's 32 x 32 maps
# (5 x 5, pad 2) rows computes 1.26x the true flops and im2col 1.12x, and rows was
# measured faster (forward 12.5 against 15.2 ms, adjoint 13.2 against 18.0 ms, float64).
ROWS_MAX_OVERHEAD = 1.25


@dataclass(frozen=True)
class Plan:
    """How one convolution is lowered to ``Y = W_plan @ S`` (see the module docstring).

    ``taps[g] = (phase, shift)`` are the gathered input slices (``G`` of them, ``K = C G``);
    ``out_shifts[r]`` the output offsets (``R`` of them, ``M = O R``); the pair ``(r, g)``
    carries kernel tap ``(tap_dy[r][g], tap_dx[g])``, where rows ``>= k`` are zero padding.
    """

    name: str
    geom: ConvGeometry
    hq: int
    wq: int
    taps: tuple
    out_shifts: tuple
    tap_dy: tuple
    tap_dx: tuple

    @property
    def length(self) -> int:
        """Wide-layout output length ``L = (H_out - 1) wq + W_out``."""
        return (self.geom.out_height - 1) * self.wq + self.geom.out_width

    @property
    def gather_length(self) -> int:
        """Columns of ``S``: ``L`` plus the largest output shift."""
        return self.length + self.out_shifts[-1]

    @property
    def kernel_rows(self) -> int:
        """Kernel rows including zero padding: ``max(tap_dy) + 1``."""
        return max(max(row) for row in self.tap_dy) + 1

    @property
    def overhead(self) -> float:
        """Flops of this plan's GEMM over the convolution's true flop count."""
        g = self.geom
        plan_flops = (
            2
            * g.batch
            * g.out_channels
            * len(self.out_shifts)
            * g.in_channels
            * len(self.taps)
            * self.gather_length
        )
        return plan_flops / g.flops


def phase_size(geom: ConvGeometry) -> tuple[int, int]:
    s = geom.stride
    return -(-(geom.height + 2 * geom.pad) // s), -(-(geom.width + 2 * geom.pad) // s)


def tap_location(dy: int, dx: int, s: int, wq: int) -> tuple[int, int]:
    """``(phase, flat shift)`` of kernel tap ``(dy, dx)`` in the flattened phase layout."""
    return (dy % s) * s + dx % s, (dy // s) * wq + dx // s


def im2col_plan(geom: ConvGeometry) -> Plan:
    """Gather all ``k*k`` taps: ``K = C k^2``, ``M = O``, one output block."""
    hq, wq = phase_size(geom)
    k, s = geom.kernel, geom.stride
    taps = tuple(tap_location(dy, dx, s, wq) for dy in range(k) for dx in range(k))
    tap_dy = (tuple(dy for dy in range(k) for _ in range(k)),)
    tap_dx = tuple(dx for _ in range(k) for dx in range(k))
    return Plan("im2col", geom, hq, wq, taps, (0,), tap_dy, tap_dx)


def rows_plan(geom: ConvGeometry) -> Plan:
    """Gather taps ``(a, dx)``, ``a = dy mod s``; stack row offsets ``r = dy // s`` on output."""
    hq, wq = phase_size(geom)
    k, s = geom.kernel, geom.stride
    kq = -(-k // s)
    band = [(a, dx) for a in range(s) for dx in range(k)]
    taps = tuple(tap_location(a, dx, s, wq) for a, dx in band)
    out_shifts = tuple(r * wq for r in range(kq))
    tap_dy = tuple(tuple(r * s + a for a, _ in band) for r in range(kq))
    tap_dx = tuple(dx for _, dx in band)
    return Plan("rows", geom, hq, wq, taps, out_shifts, tap_dy, tap_dx)


def moved_per_column(plan: Plan) -> int:
    """Elements a plan writes and reads outside the GEMM per output column.

    im2col copies ``C k^2`` gathered rows; rows copies ``C s k`` and then reads and adds
    ``O kq`` rows of ``Y``. On a CPU these memory passes, not the GEMM, decide the race.
    """
    g = plan.geom
    gathered = g.in_channels * len(plan.taps)
    shifted = 2 * g.out_channels * len(plan.out_shifts) if len(plan.out_shifts) > 1 else 0
    return gathered + shifted + g.out_channels


@lru_cache(maxsize=256)
def make_plan(geom: ConvGeometry, name: str | None = None) -> Plan:
    """The plan ``name`` for ``geom``, or when None the cheaper of the two (cached per geometry).

    "rows" is chosen when its GEMM is at most ``ROWS_MAX_OVERHEAD`` times im2col's and it
    moves less memory than "im2col" (see :func:`moved_per_column`); else "im2col".
    """
    if name is None:
        rows, im2col = rows_plan(geom), im2col_plan(geom)
        cheaper = moved_per_column(rows) < moved_per_column(im2col)
        small = rows.overhead <= ROWS_MAX_OVERHEAD * im2col.overhead
        return rows if cheaper and small else im2col
    if name not in PLANS:
        raise ValueError(f"plan must be one of {PLANS} or None; got {name!r}")
    return im2col_plan(geom) if name == "im2col" else rows_plan(geom)


@lru_cache(maxsize=256)
def batch_chunks(plan: Plan, xp) -> list:
    """Batch ranges ``(n0, n1)``: each chunk's work buffers stay under ``CHUNK_ELEMENTS``, and
    a batch of ``MIN_CHUNKS`` or more is split into at least that many chunks, so that
    worker threads (:mod:`refimpl.threads`) have work to share.

    The split does not depend on how many threads run it, so neither does any result: the
    weight gradient, a sum over the batch, adds its per-chunk sums in chunk order.
    """
    g = plan.geom
    per_sample = plan.gather_length * (
        g.in_channels * len(plan.taps) + g.out_channels * len(plan.out_shifts)
    )
    device = is_device(xp)
    size = max(1, min(g.batch, CHUNK_ELEMENTS["device" if device else "host"] // per_sample))
    if not device:  # on a GPU one launch per chunk wants the chunks large, not many
        size = min(size, max(1, g.batch // MIN_CHUNKS))
    return [(n0, min(n0 + size, g.batch)) for n0 in range(0, g.batch, size)]
