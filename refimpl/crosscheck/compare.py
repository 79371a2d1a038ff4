"""Comparing a user's results with the golden vectors: a verdict per case and quantity, with hints.

The user writes, for each case, ``RESULTS/CASE.npz`` holding the case's outputs under their
manifest names, in the golden set's layout. For every output:

* ``close`` arrays pass when ``|actual - expected| <= atol + rtol |expected|`` everywhere,
  with the manifest's ``rtol`` and ``atol = rtol * scale`` for the precision of the user's
  array (float32 arrays get the float32 tolerances unless ``precision`` says otherwise);
  the table shows the largest absolute error and the largest relative error
  ``|actual - expected| / (|expected| + scale)``, which passes exactly when it is ``<= rtol``;
* ``exact`` arrays (activation patterns, step counts) must be equal;
* ``ks`` arrays (samples of a sampler without shared noise) pass when their
  Kolmogorov-Smirnov distance to the exact law is within the critical value
  (:mod:`refimpl.crosscheck.statistical`).

When an array fails, the comparison looks for a common mistake that explains it: the values
with the axes in another order (NHWC for NCHW, HWIO for OIHW, height and width swapped),
transposed data reshaped into the golden shape, float32 accuracy saved as float64, and the
mistakes of :mod:`refimpl.crosscheck.mistakes`, each recomputed by refimpl from the case's
inputs.

Host-only (reads files, NumPy).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refimpl.crosscheck import fileformat
from refimpl.crosscheck.cases import compute_case, get_case
from refimpl.crosscheck.mistakes import HINTS
from refimpl.crosscheck.statistical import ks_check

PRECISIONS = ("auto", "float64", "float32")


def elementwise_error(actual, expected, scale: float) -> tuple[float, float]:
    """``(max |a - b|, max |a - b| / (|b| + scale))`` in float64; ``(0, 0)`` for empty arrays."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    gap = np.abs(a - b)
    return float(gap.max()), float((gap / (np.abs(b) + scale)).max())


def within(actual, expected, rtol: float, atol: float) -> bool:
    """``|actual - expected| <= atol + rtol |expected|`` everywhere (shapes must agree)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


@dataclass
class Row:
    """The verdict on one quantity of one case.

    ``kind`` is ``close``, ``exact``, ``ks`` or ``missing``; the numbers that apply to it are
    set (errors and tolerances; the number of differing entries; KS distance and critical
    value).
    ``message`` says what went wrong in words; ``hints`` the mistakes that explain it.
    """

    case: str
    quantity: str
    kind: str
    passed: bool
    precision: str = "-"
    max_abs: float | None = None
    max_rel: float | None = None
    rtol: float | None = None
    atol: float | None = None
    distance: float | None = None
    critical: float | None = None
    differing: int | None = None
    message: str = ""
    hints: list = field(default_factory=list)

    def cells(self) -> list:
        def g(x):
            return "-" if x is None else f"{x:.2e}"

        if self.kind == "ks":
            return [self.case, self.quantity, "KS", g(self.distance), "-", g(self.critical)]
        if self.kind == "exact":
            count = "-" if self.differing is None else f"{self.differing} differ"
            return [self.case, self.quantity, "exact", count, "-", "equal"]
        return [self.case, self.quantity, self.precision, g(self.max_abs), g(self.max_rel)] + [
            g(self.rtol)
        ]


HEADER = ["case", "quantity", "precision", "max abs err", "max rel err", "tolerance"]


@dataclass
class Report:
    """All rows of a comparison; ``passed`` when there is at least one row and all pass."""

    rows: list
    golden: str = ""
    results: str = ""
    layout: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list:
        return [r for r in self.rows if not r.passed]

    def table(self) -> str:
        """The table of verdicts, then each failure's message and hints."""
        body = [r.cells() + ["PASS" if r.passed else "FAIL"] for r in self.rows]
        header = HEADER + ["verdict"]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]

        def line(cells):
            return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

        lines = [line(header), line(["-" * w for w in widths])] + [line(b) for b in body]
        groups: dict = {}  # one note per message and hints, listing the quantities it covers
        for r in self.failures:
            groups.setdefault((r.message or "outside the tolerance", tuple(r.hints)), []).append(r)
        if groups:
            lines += ["", "Failures:"]
        for (message, hints), rows in groups.items():
            by_case: dict = {}
            for r in rows:
                by_case.setdefault(r.case, []).append(r.quantity)
            where = "; ".join(f"{case}: {', '.join(q)}" for case, q in by_case.items())
            lines.append(f"  {where}\n    {message}")
            lines += [f"    hint: {h}" for h in hints]
        n_pass = sum(r.passed for r in self.rows)
        lines += ["", f"{n_pass}/{len(self.rows)} quantities passed"]
        return "\n".join(lines)


# --- the golden side ------------------------------------------------------------------------


class GoldenSet:
    """A golden directory: its manifest, and each case's arrays (read when first needed)."""

    def __init__(self, directory):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"golden directory not found: {self.directory}")
        self.manifest = fileformat.read_manifest(self.directory)
        self.layout = fileformat.check_layout(self.manifest["layout"])
        self._arrays: dict = {}
        self._mistaken: dict = {}

    @property
    def case_names(self) -> list:
        return list(self.manifest["cases"])

    def entry(self, case: str) -> dict:
        try:
            return self.manifest["cases"][case]
        except KeyError:
            raise KeyError(
                f"the golden set in {self.directory} has no case {case!r}; its cases are "
                f"{', '.join(self.case_names)}"
            ) from None

    def arrays(self, case: str) -> dict:
        """The case's arrays as stored (the golden set's layout)."""
        if case not in self._arrays:
            path = self.directory / self.entry(case)["file"]
            self._arrays[case] = fileformat.read_npz(path, f"golden file of case {case!r}")
        return self._arrays[case]

    def canonical_inputs(self, case: str) -> dict:
        """The case's inputs (and references) in refimpl's NCHW/OIHW order."""
        spec = get_case(case)
        stored = self.arrays(case)
        return {
            a.name: fileformat.from_layout(stored[a.name], a.axes, self.layout)
            for a in spec.arrays
            if a.role != "output" and a.name in stored
        }

    def mistaken_outputs(self, case: str, mistake: str) -> dict:
        """The case's outputs with ``mistake`` (refimpl recomputes them), in the file layout."""
        key = (case, mistake)
        if key not in self._mistaken:
            spec = get_case(case)
            settings = self.entry(case)["settings"]
            try:
                outputs, _ = compute_case(spec, settings, self.canonical_inputs(case), mistake)
            except (ValueError, FloatingPointError):  # the mistake itself diverges
                outputs = {}
            self._mistaken[key] = {
                name: fileformat.to_layout(np.asarray(v), spec.spec(name).axes, self.layout)
                for name, v in outputs.items()
            }
        return self._mistaken[key]


# --- hints ----------------------------------------------------------------------------------------


def _permutation_hints(actual, expected, axes: str, match, other: tuple) -> list:
    """Axis orders under which ``actual`` holds the expected values, in words.

    ``other`` is ``(axes, layout)``: the array's axes in the other layout, and that layout.
    """
    other_axes, other_layout = other
    hints = []
    ndim = expected.ndim
    if actual.ndim != ndim or ndim < 2 or len(axes) != ndim:
        return hints
    for perm in itertools.permutations(range(ndim)):
        if perm == tuple(range(ndim)):
            continue
        moved = np.transpose(expected, perm)
        if moved.shape != actual.shape or not match(actual, moved):
            continue
        order = "".join(axes[i] for i in perm)
        text = (
            f"matches the expected values with the axes in the order {order} instead of the "
            f"golden set's {axes}"
        )
        if order == other_axes:
            text += (
                f" (the other layout: transpose your array, or write the golden set in the layout "
                f"you compute in: `python -m refimpl golden --layout {other_layout}`)"
            )
        elif order == axes.translate(str.maketrans("HW", "WH")):
            text += " (height and width swapped)"
        hints.append(text)
        if len(hints) >= 2:
            break
    return hints


def _reshape_hints(actual, expected, axes: str, match, other: tuple) -> list:
    """``actual`` = the expected values transposed to the other layout, then *reshaped* back."""
    other_axes = other[0]
    perm = [axes.index(c) for c in other_axes] if sorted(axes) == sorted(other_axes) else None
    if perm is None or other_axes == axes or actual.shape != expected.shape:
        return []
    for p in (perm, list(np.argsort(perm))):
        if match(actual, np.transpose(expected, p).reshape(expected.shape)):
            return [
                f"matches the expected values laid out as {other_axes} and reshaped to the "
                f"{axes} shape: change layouts with a transpose (permute), not a reshape"
            ]
    return []


def _mistake_hints(golden: GoldenSet, case: str, name: str, actual, match) -> list:
    hints = []
    for mistake in get_case(case).mistakes:
        other = golden.mistaken_outputs(case, mistake).get(name)
        if other is not None and other.shape == actual.shape and match(actual, other):
            hints.append(HINTS[mistake])
    return hints


# --- one case -------------------------------------------------------------------------------------


def _precision_of(actual, precision: str) -> str:
    if precision != "auto":
        return precision
    return "float32" if actual.dtype in (np.float32, np.float16) else "float64"


def _check_close(golden, case, name, info, actual, expected, precision) -> Row:
    prec = _precision_of(actual, precision)
    tol = info["tolerance"][prec]
    rtol, atol = tol["rtol"], tol["atol"]
    max_abs, max_rel = elementwise_error(actual, expected, atol / rtol)
    row = Row(case, name, "close", within(actual, expected, rtol, atol), prec, max_abs, max_rel)
    row.rtol, row.atol = rtol, atol
    if row.passed:
        return row
    row.message = f"outside the {prec} tolerance"

    def match(a, b):
        return within(a, b, rtol, atol)

    if prec == "float64":
        f32 = info["tolerance"]["float32"]
        if within(actual, expected, f32["rtol"], f32["atol"]):
            row.hints.append(
                "matches to float32 accuracy: compute in float64, or if you mean to compute "
                "in float32, save float32 arrays (or pass --precision float32)"
            )
    row.hints += _mistake_hints(golden, case, name, actual, match)
    axes = info["axes"]
    other = _other_layout(case, name, golden.layout)
    row.hints += _permutation_hints(actual, expected, axes, match, other)
    row.hints += _reshape_hints(actual, expected, axes, match, other)
    return row


def _other_layout(case: str, name: str, layout: str) -> tuple:
    """``(axes, layout)``: how the other layout than ``layout`` stores this array."""
    other = "nhwc" if layout == "nchw" else "nchw"
    return fileformat.file_axes(get_case(case).spec(name).axes, other), other


def _check_exact(golden, case, name, info, actual, expected) -> Row:
    if expected.dtype == np.bool_ and actual.dtype != np.bool_:
        if not np.all((actual == 0) | (actual == 1)):
            return Row(
                case,
                name,
                "exact",
                False,
                message="a boolean quantity: write booleans, or the numbers 0 and 1",
            )
        actual = actual != 0
    differ = int(np.count_nonzero(np.asarray(actual) != expected))
    row = Row(case, name, "exact", differ == 0, differing=differ)
    if differ:
        row.message = f"{differ} of {expected.size} entries differ"

        def match(a, b):
            return bool(np.array_equal(a, b))

        row.hints += _mistake_hints(golden, case, name, actual, match)
    return row


def _check_ks(golden, case, name, info, actual) -> Row:
    alpha = golden.entry(case)["settings"]["alpha"]
    try:
        result = ks_check(actual, golden.canonical_inputs(case), alpha)
    except ValueError as exc:
        return Row(case, name, "ks", False, message=str(exc))
    row = Row(case, name, "ks", result.passed, distance=result.distance, critical=result.critical)
    if not result.passed:
        row.message = (
            f"{result.detail}: distance {result.distance:.4f} > critical value "
            f"{result.critical:.4f} (n = {result.n}, alpha = {alpha:g}): the samples are not "
            "distributed as p"
        )
        row.hints.append(
            "a correct sampler fails with probability alpha only. Common causes: no "
            "Metropolis-Hastings correction (unadjusted Langevin has an O(eps^2) bias, plain at "
            "this step size), a drift coefficient other than eps^2 / 2, sigma taken as 1, or "
            "chains that do not start at the given exact draws"
        )
    return row


def check_case(golden, case: str, results: dict, precision: str = "auto") -> list:
    """Rows for every output of ``case``, comparing ``results`` (name -> array) with the golden set.

    Args:
        golden: a golden directory (path) or a :class:`GoldenSet`.
        case: the case's name.
        results: the user's arrays, in the golden set's layout (extra entries are ignored).
        precision: ``"auto"`` (float32 arrays get float32 tolerances), ``"float64"`` or
            ``"float32"``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    golden = golden if isinstance(golden, GoldenSet) else GoldenSet(golden)
    entry = golden.entry(case)
    rows = []
    stored = None
    for name, info in entry["arrays"].items():
        if info["role"] != "output":
            continue
        expected_shape = tuple(info["shape"])
        if name not in results:
            rows.append(
                Row(
                    case,
                    name,
                    "missing",
                    False,
                    message=(
                        f"missing: no array {name!r} in the results (expected shape "
                        f"{expected_shape}, axes {info['axes'] or 'scalar'}, dtype {info['dtype']})"
                    ),
                )
            )
            continue
        actual = np.asarray(results[name])
        if actual.dtype.kind not in "biuf":
            rows.append(
                Row(
                    case,
                    name,
                    "missing",
                    False,
                    message=f"dtype {actual.dtype} is not numeric (write float, int or bool)",
                )
            )
            continue
        if info["compare"] != "exact" and actual.dtype.kind == "f":
            bad = int(np.count_nonzero(~np.isfinite(actual)))
            if bad:
                rows.append(
                    Row(
                        case,
                        name,
                        info["compare"],
                        False,
                        message=f"{bad} of {actual.size} entries are NaN or inf",
                    )
                )
                continue
        if info["compare"] == "ks":
            rows.append(_check_ks(golden, case, name, info, actual))
            continue
        stored = golden.arrays(case) if stored is None else stored
        expected = stored[name]
        if actual.shape != expected.shape:
            row = Row(
                case,
                name,
                info["compare"],
                False,
                message=f"shape {actual.shape}, expected {expected.shape} (axes {info['axes']})",
            )
            if info["compare"] == "close":
                tol = info["tolerance"][_precision_of(actual, precision)]

                def match(a, b, tol=tol):
                    return within(a, b, tol["rtol"], tol["atol"])

            else:

                def match(a, b):
                    return bool(np.array_equal(a, b))

            other = _other_layout(case, name, golden.layout)
            row.hints = _permutation_hints(actual, expected, info["axes"], match, other)
            rows.append(row)
            continue
        if info["compare"] == "exact":
            rows.append(_check_exact(golden, case, name, info, actual, expected))
        else:
            rows.append(_check_close(golden, case, name, info, actual, expected, precision))
    return rows


# --- whole directories --------------------------------------------------------------------------


def _selected(golden: GoldenSet, cases) -> list:
    if cases is None:
        return golden.case_names
    names = [cases] if isinstance(cases, str) else list(cases)
    unknown = [name for name in names if name not in golden.case_names]
    if unknown:
        raise ValueError(
            f"the golden set in {golden.directory} has no case(s) {', '.join(unknown)}; its "
            f"cases are {', '.join(golden.case_names)}"
        )
    return names


def compare(golden_dir, results, cases=None, precision: str = "auto") -> Report:
    """Compare results with a golden set: a :class:`Report` with one row per case and quantity.

    Args:
        golden_dir: a directory written by ``python -m refimpl golden``.
        results: a directory of ``CASE.npz`` files, or a dict ``{case: {name: array}}``.
        cases: the cases to check (default: all of the golden set's); a missing one fails.
        precision: ``"auto"``, ``"float64"`` or ``"float32"`` (see :func:`check_case`).
    """
    golden = GoldenSet(golden_dir)
    in_memory = isinstance(results, dict)
    if not in_memory and not Path(results).is_dir():
        raise FileNotFoundError(f"results directory not found: {results}")
    rows = []
    for case in _selected(golden, cases):
        if in_memory:
            arrays = results.get(case)
            where = "the results"
        else:
            path = Path(results) / golden.entry(case)["file"]
            where = str(path)
            try:
                arrays = fileformat.read_npz(path, f"results of case {case!r}")
            except FileNotFoundError:
                arrays = None
            except fileformat.GoldenFormatError as exc:
                rows.append(Row(case, "(file)", "missing", False, message=str(exc)))
                continue
        if arrays is None:
            rows.append(
                Row(
                    case,
                    "(case)",
                    "missing",
                    False,
                    message=(
                        f"missing: no results for this case in {where} (compute it, or leave "
                        "it out with --cases)"
                    ),
                )
            )
            continue
        rows += check_case(golden, case, arrays, precision)
    return Report(
        rows, str(golden_dir), "(in memory)" if in_memory else str(results), golden.layout
    )


def assert_matches(golden_dir, results, cases=None, precision: str = "auto") -> Report:
    """:func:`compare`, raising ``AssertionError`` with the table when anything fails.

    For a user's own test suite: ``assert_matches("golden", {"langevin": {"samples": s}},
    cases=["langevin"])``.
    """
    report = compare(golden_dir, results, cases, precision)
    if not report.passed:
        raise AssertionError("results differ from the golden vectors:\n" + report.table())
    return report


def load_case(golden_dir, case: str) -> tuple[dict, dict]:
    """``(settings, arrays)`` of one golden case, arrays in the golden set's layout.

    ``settings`` are the case's scalars from the manifest (step size, sigma, layers, ...).
    """
    golden = GoldenSet(golden_dir)
    return golden.entry(case)["settings"], golden.arrays(case)
