"""Writing a golden set: every case drawn, computed, checked for robustness, and saved.

:func:`write_golden` draws each case of :data:`refimpl.crosscheck.cases.CASES` from a seed,
computes it with refimpl in float64, and keeps the instance only if it is robust: every
discrete decision it makes (ReLU patterns, MALA decisions, GRADE stops) has the margins of
:mod:`refimpl.numerics`, and refimpl's own float32 run of it stays within the float32
tolerance divided by :data:`~refimpl.numerics.CROSSCHECK_HEADROOM` with the same decisions.
Otherwise it draws the next instance (attempt 1, 2, ...; the manifest records which), so a
correct implementation never fails on an unlucky instance.

Host-only (NumPy generators, files).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

import refimpl
from refimpl.crosscheck import fileformat
from refimpl.crosscheck.cases import CASES, Case, as_float32, compute_case, describe
from refimpl.crosscheck.compare import elementwise_error
from refimpl.numerics import (
    CROSSCHECK_FLOAT32,
    CROSSCHECK_FLOAT64,
    CROSSCHECK_HEADROOM,
    DECISION_MARGIN,
    KINK_MARGIN,
)

MAX_ATTEMPTS = 50

TOLERANCES = {"float64": CROSSCHECK_FLOAT64, "float32": CROSSCHECK_FLOAT32}

CONVENTIONS = {
    "filtering": (
        "cross-correlation, not convolution: y[n,o,i,j] = sum_{c,dy,dx} w[o,c,dy,dx] "
        "x_pad[n, c, stride*i + dy, stride*j + dx] + b[o] (Xie et al., Eq. (2.1)); "
        "x_pad is x with `pad` zeros on every side; output size (size + 2 pad - k) // stride + 1"
    ),
    "nonlinearity": "ReLU h(z) = max(0, z) unless a layer says 'linear'",
    "score": (
        "f(I) = sum over channels and positions of the top layer's outputs (Xie et al., Eq. (3.5))"
    ),
    "reference": "q(I) = N(0, sigma^2 I) with the case's sigma; p(I) ~ exp(f(I)) q(I), Eq. (3.4)",
    "langevin": (
        "I <- I + (eps^2 / 2) (df/dI - I / sigma^2) + eps Z, Eq. (6.10): drift eps^2 / 2, noise eps"
    ),
    "learning": "gradient ascent w <- w + eta (H_obs - H_syn), Eq. (7.2) and Algorithm 1",
    "axes": (
        "N batch, C channels, H height, W width, T Langevin step, O/I filter output/input "
        "channels, K classes, X grid points, Q quantile levels, P directions, D dimensions; "
        "lower-case c h w: the image axes of a basis function"
    ),
}

COMPARISON = {
    "rule": (
        "an output passes when |actual - expected| <= atol + rtol |expected| for every entry; "
        "atol = rtol * scale, scale = the size of the terms the output sums (max |expected| "
        "unless the array lists another); exact outputs must be equal; ks outputs pass when "
        "their Kolmogorov-Smirnov distance is within the case's critical_value"
    ),
    "rtol": dict(TOLERANCES),
    "reasons": (
        "refimpl.numerics.CROSSCHECK_FLOAT64 and CROSSCHECK_FLOAT32; docs/crosscheck.md, "
        "'Tolerances'"
    ),
}


def instance_seed(seed: int, case: str, attempt: int) -> np.random.SeedSequence:
    """The seed of a case's ``attempt``-th instance: the same for a case wherever it is listed."""
    return np.random.SeedSequence([int(seed), zlib.crc32(case.encode()), int(attempt)])


def float32_deviation(case: Case, settings, inputs, outputs, scales) -> tuple[float, bool]:
    """refimpl's own float32 run of the case: ``(largest relative error, same decisions)``."""
    outputs32, _ = compute_case(case, settings, as_float32(inputs))
    worst, same = 0.0, True
    for spec in case.specs("output"):
        expected, actual = np.asarray(outputs[spec.name]), np.asarray(outputs32[spec.name])
        if spec.compare == "exact":
            same = same and bool(np.array_equal(expected, actual))
        else:
            scale = array_scale(expected, scales.get(spec.name))
            worst = max(worst, elementwise_error(actual, expected, scale)[1])
    return worst, same


def array_scale(expected, override=None) -> float:
    """The ``scale`` of an output: ``override`` if given, else ``max |expected|`` (1 if all 0)."""
    if override is not None:
        return float(override)
    top = float(np.abs(np.asarray(expected, dtype=np.float64)).max()) if np.size(expected) else 0.0
    return top if top > 0 else 1.0


def robust(margins: dict) -> bool:
    """Whether an instance's margins (from :attr:`Case.robustness`) meet refimpl.numerics'."""
    return (
        margins.get("kink", np.inf) >= KINK_MARGIN
        and margins.get("decisions_robust", True)
        and margins.get("mixed", True)
    )


def draw_case(case: Case, seed: int):
    """A robust instance of ``case``: ``(attempt, settings, inputs, outputs, scales, facts)``.

    Raises ``RuntimeError`` if none of :data:`MAX_ATTEMPTS` instances is robust (a sign that
    the case's design, not the seed, is at fault).
    """
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng(instance_seed(seed, case.name, attempt))
        settings, inputs = case.build(rng)
        if case.statistical:
            return attempt, settings, inputs, {}, {}, {}
        outputs, scales = compute_case(case, settings, inputs)
        margins = case.robustness(settings, inputs) if case.robustness else {}
        if not robust(margins):
            continue
        deviation, same = float32_deviation(case, settings, inputs, outputs, scales)
        if same and deviation <= CROSSCHECK_FLOAT32 / CROSSCHECK_HEADROOM:
            facts = {"float32_deviation": float(f"{deviation:.3g}")}
            if "kink" in margins:
                facts["kink_margin"] = float(f"{margins['kink']:.3g}")
            if "decisions_robust" in margins:
                facts["decision_margin"] = DECISION_MARGIN
            return attempt, settings, inputs, outputs, scales, facts
    raise RuntimeError(
        f"case {case.name!r}: no robust instance in {MAX_ATTEMPTS} attempts from seed {seed}"
    )


def _array_entry(spec, array, layout: str, scale=None) -> dict:
    entry = dict(
        role=spec.role,
        shape=list(fileformat.layout_shape(np.shape(array), spec.axes, layout)),
        dtype=str(np.asarray(array).dtype),
        axes=fileformat.file_axes(spec.axes, layout),
        description=spec.description,
    )
    if spec.role == "output":
        entry["compare"] = spec.compare
        if spec.compare == "close":
            entry["scale"] = scale
            entry["tolerance"] = {
                precision: dict(rtol=rtol, atol=rtol * scale)
                for precision, rtol in TOLERANCES.items()
            }
    return entry


def write_case(directory: Path, case: Case, seed: int, layout: str) -> dict:
    """Draw, compute and write one case; returns its manifest entry."""
    attempt, settings, inputs, outputs, scales, facts = draw_case(case, seed)
    arrays, entries = {}, {}
    for spec in case.arrays:
        if spec.role == "output" and case.statistical:  # the user's samples, shaped like start
            entries[spec.name] = _array_entry(spec, inputs["start"], layout)
            entries[spec.name]["dtype"] = "float64 or float32"
            continue
        value = np.asarray(outputs[spec.name] if spec.role == "output" else inputs[spec.name])
        scale = array_scale(value, scales.get(spec.name)) if spec.role == "output" else None
        entries[spec.name] = _array_entry(spec, value, layout, scale)
        arrays[spec.name] = fileformat.to_layout(value, spec.axes, layout)
    fileformat.write_npz(directory / f"{case.name}.npz", arrays)
    entry = dict(file=f"{case.name}.npz", **describe(case))
    entry.update(settings=settings, instance=attempt)
    if facts:
        entry["robustness"] = facts
    entry["arrays"] = entries
    return entry


def write_golden(out, seed: int = 0, layout: str = "nchw", cases=None, progress=None) -> dict:
    """Write the golden set (one ``CASE.npz`` per case and ``manifest.json``) to ``out``.

    Args:
        out: the directory (created if needed; files of the same names are replaced).
        seed: the seed every case is drawn from; the same seed gives byte-identical files.
        layout: ``"nchw"`` (refimpl's, PyTorch's) or ``"nhwc"`` (TensorFlow's and JAX's:
            NHWC images, HWIO filters).
        cases: names of the cases to write (default: all).
        progress: optional ``progress(case_name)`` called before each case.

    Returns:
        the manifest (as written).
    """
    layout = fileformat.check_layout(layout)
    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"--out {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    wanted = [c for c in CASES if cases is None or c.name in cases]
    unknown = set(cases or ()) - {c.name for c in CASES}
    if unknown:
        raise ValueError(
            f"unknown case(s) {sorted(unknown)}; the cases are {[c.name for c in CASES]}"
        )
    manifest = dict(
        format=fileformat.FORMAT,
        format_version=fileformat.FORMAT_VERSION,
        refimpl_version=refimpl.__version__,
        seed=int(seed),
        layout=layout,
        conventions=CONVENTIONS,
        comparison=COMPARISON,
        cases={},
    )
    for case in wanted:
        if progress is not None:
            progress(case.name)
        manifest["cases"][case.name] = write_case(directory, case, seed, layout)
    fileformat.write_manifest(directory, manifest)
    return manifest
